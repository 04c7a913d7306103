/* --forward and the proxies' credentials of `mesh-proxy up`.
 *  - fwd_parse takes "[udp/][ADDR:]PORT=HOST:PORT" lists (ADDR 127.0.0.1
 *    by default, [IPv6] in brackets) and refuses malformed items, ports
 *    out of range, bare IPv6, names with odd characters and duplicates;
 *  - node_ctl_build_config turns them into [TCPClientTunnel] and
 *    [UDPClientTunnel] sections; they stick in prefs.json, "off" removes;
 *  - --socks5 PORT binds 127.0.0.1:PORT;
 *  - a proxy bound to a non-loopback address without credentials is a
 *    usage error in flag terms (nothing written); with --proxy-user and a
 *    password both front-ends require them; --proxy-open waives; the
 *    password sticks (prefs.json, 0600) and a user without a password is
 *    refused. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "config/config.h"
#include "node/control.h"
#include "node/forward.h"

static char root[256];

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/test_node_forward.XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void test_parse(void **state)
{
	(void)state;
	struct fwd_list l;
	char err[300];
	assert_true(fwd_parse("8080=web:80,udp/0.0.0.0:5353=100.64.0.9:53,"
	                      "[::1]:2222=[fd7a::3]:22,tcp/9000=db.example:9000",
	                      &l, err, sizeof(err)));
	assert_int_equal(l.n, 4);
	assert_false(l.item[0].udp);
	assert_string_equal(l.item[0].addr, "127.0.0.1");
	assert_int_equal(l.item[0].port, 8080);
	assert_string_equal(l.item[0].host, "web");
	assert_int_equal(l.item[0].host_port, 80);
	assert_true(fwd_loopback(&l.item[0]));
	assert_true(l.item[1].udp);
	assert_string_equal(l.item[1].addr, "0.0.0.0");
	assert_false(fwd_loopback(&l.item[1]));
	assert_string_equal(l.item[2].addr, "::1");
	assert_string_equal(l.item[2].host, "fd7a::3");
	assert_true(fwd_loopback(&l.item[2]));
	char ini[2000];
	assert_true(fwd_ini(&l, ini, sizeof(ini)) > 0);
	assert_non_null(strstr(ini, "[TCPClientTunnel]\nBindAddress = 127.0.0.1:8080\n"
	                            "Target = web:80\n"));
	assert_non_null(strstr(ini, "[UDPClientTunnel]\nBindAddress = 0.0.0.0:5353\n"));
	assert_non_null(strstr(ini, "BindAddress = [::1]:2222\nTarget = [fd7a::3]:22\n"));
	assert_int_equal(fwd_ini(&l, ini, 20), 0); /* too small: nothing */
	assert_true(fwd_parse("off", &l, err, sizeof(err)));
	assert_int_equal(l.n, 0);

	static const char *const bad[] = {
	    "",
	    "80",
	    "80=web",
	    "0=web:80",
	    "65536=w:1",
	    "80=web:0",
	    "80=web:99999",
	    "x=web:80",
	    "80=we b:1",
	    "80=w/b:1",
	    "::1:80=web:80",
	    "80=fd7a::3:22",
	    "web:80=w:1",
	    "8080=web:80,",
	    "udp/=w:1",
	    "[::1=w:1",
	    "80=web:80,80=db:80", "80=a..b:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (fwd_parse(bad[i], &l, err, sizeof(err)))
			fail_msg("accepted \"%s\"", bad[i]);
	assert_true(fwd_parse("80=web:80,udp/80=dns:53", &l, err, sizeof(err)));
	assert_false(fwd_parse("1=a:1,2=a:1,3=a:1,4=a:1,5=a:1,6=a:1,7=a:1,8=a:1,9=a:1,"
	                       "10=a:1,11=a:1,12=a:1,13=a:1,14=a:1,15=a:1,16=a:1,"
	                       "17=a:1,18=a:1,19=a:1,20=a:1,21=a:1,22=a:1,23=a:1,"
	                       "24=a:1,25=a:1,26=a:1,27=a:1,28=a:1,29=a:1,30=a:1,"
	                       "31=a:1,32=a:1,33=a:1",
	                       &l, err, sizeof(err)));
	assert_non_null(strstr(err, "more than 32"));
	char longspec[1100];
	memset(longspec, 'a', sizeof(longspec) - 1);
	longspec[sizeof(longspec) - 1] = 0;
	assert_false(fwd_parse(longspec, &l, err, sizeof(err)));
}

static void make_token(char *out, size_t cap)
{
	struct ctl_token t = {.port = 17443};
	snprintf(t.host, sizeof(t.host), "127.0.0.1");
	memset(t.server_key, 7, sizeof(t.server_key));
	snprintf(t.auth_key, sizeof(t.auth_key), "k1");
	assert_true(ctl_token_encode(&t, out, cap) > 0);
}

static struct node_ctl_prep *prep(struct node_ctl_args *a, struct config *cfg)
{
	char err[600];
	bool usage;
	struct node_ctl_prep *p = node_ctl_prepare(a, err, sizeof(err), &usage);
	if (!p)
		fail_msg("%s", err);
	if (node_ctl_build_config(p, NULL, cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	return p;
}

static void test_forwards_stick(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX];
	snprintf(dir, sizeof(dir), "%s/f", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .socks5 = "1080",
	                          .forwards = "2222=web:22,udp/5353=dns:53"};
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	const struct sockaddr_in *s = (const void *)&cfg.socks5[0].bind.addr;
	assert_int_equal(ntohs(s->sin_port), 1080);
	assert_int_equal(ntohl(s->sin_addr.s_addr), 0x7f000001);
	assert_null(cfg.socks5[0].username);
	assert_int_equal(cfg.n_tcp_client_tunnels, 1);
	assert_string_equal(cfg.tcp_client_tunnels[0].target_host, "web");
	assert_int_equal(cfg.tcp_client_tunnels[0].target_port, 22);
	assert_int_equal(cfg.n_udp_client_tunnels, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);

	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_tcp_client_tunnels, 1);
	assert_int_equal(cfg.n_udp_client_tunnels, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);

	struct node_ctl_args off = {.state_dir = dir, .forwards = "off"};
	p = prep(&off, &cfg);
	assert_int_equal(cfg.n_tcp_client_tunnels, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_tcp_client_tunnels + cfg.n_udp_client_tunnels, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* a bad spec: a usage error before the directory is touched */
	char fresh[300], err[600];
	bool usage;
	snprintf(fresh, sizeof(fresh), "%s/never", root);
	struct node_ctl_args bad = {
	    .state_dir = fresh, .join_token = tok, .forwards = "2222=web"};
	assert_null(node_ctl_prepare(&bad, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--forward: \"2222=web\" is not"));
	assert_int_equal(access(fresh, F_OK), -1);
}

static void test_open_bind_needs_credentials(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600], path[400];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/c", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {
	    .state_dir = dir, .join_token = tok, .socks5 = "0.0.0.0:1080"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--socks5 0.0.0.0:1080 can be reached from other "
	                            "hosts and has no credentials: give --proxy-user"));
	assert_non_null(strstr(err, "--proxy-open"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(access(dir, F_OK), -1); /* nothing touched */

	a.proxy_user = "app";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--proxy-user app needs a password"));
	a.proxy_user = "a:b";
	a.proxy_password = "pw";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "no ':'"));

	a.proxy_user = "app";
	a.http_proxy = "0.0.0.0:8118";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	assert_int_equal(cfg.n_http, 1);
	assert_string_equal(cfg.socks5[0].username, "app");
	assert_string_equal(cfg.socks5[0].password, "pw");
	assert_string_equal(cfg.http[0].username, "app");
	assert_string_equal(cfg.http[0].password, "pw");
	config_free(&cfg);
	node_ctl_prep_free(p);
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* kept: a restart without flags has the credentials */
	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg);
	assert_string_equal(cfg.socks5[0].password, "pw");
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* --proxy-user off forgets them: the open bind is refused again,
	 * unless --proxy-open waives it */
	struct node_ctl_args off = {.state_dir = dir, .proxy_user = "off"};
	assert_null(node_ctl_prepare(&off, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "has no credentials"));
	off.proxy_open = "yes";
	p = prep(&off, &cfg);
	assert_null(cfg.socks5[0].username);
	config_free(&cfg);
	node_ctl_prep_free(p);
	p = prep(&bare, &cfg); /* the waiver sticks too */
	assert_null(cfg.http[0].username);
	config_free(&cfg);
	node_ctl_prep_free(p);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_forwards_stick),
	    cmocka_unit_test(test_open_bind_needs_credentials),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
