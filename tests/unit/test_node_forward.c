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
 *    refused; a short password kept from before the 8-byte minimum is
 *    warned on loopback and refused on an address other hosts reach. */
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
#include "node/control_int.h"
#include "node/forward.h"
#include "tests/unit/tmpdir_fixture.h"

TMPDIR_FIXTURE("test_node_forward")

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
	    "80=web:80,80=db:80",
	    "80=a..b:1",
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

static void capture_stderr(char *out, size_t cap, struct node_ctl_args *a);

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
	a.proxy_password = "pw-0123456";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "no ':'"));

	a.proxy_user = "app";
	a.http_proxy = "0.0.0.0:8118";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	assert_int_equal(cfg.n_http, 1);
	assert_string_equal(cfg.socks5[0].username, "app");
	assert_string_equal(cfg.socks5[0].password, "pw-0123456");
	assert_string_equal(cfg.http[0].username, "app");
	assert_string_equal(cfg.http[0].password, "pw-0123456");
	config_free(&cfg);
	node_ctl_prep_free(p);
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* kept: a restart without flags has the credentials */
	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg);
	assert_string_equal(cfg.socks5[0].password, "pw-0123456");
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

/* Finding: a --socks5 / --http-proxy value went into the generated INI as
 * "BindAddress = %.150s": a line end injected an open [Socks5] section. */
static void test_listen_value_injection(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/inj", root);
	make_token(tok, sizeof(tok));
	static const char evil[] =
	    "0.0.0.0:1080\nAllowOpen=yes\n[Socks5]\nBindAddress=127.0.0.1:1081";
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .socks5 = evil,
	                          .proxy_user = "app",
	                          .proxy_password = "pw-0123456"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--socks5 ("));
	assert_non_null(strstr(err, "want PORT, IPV4:PORT, [IPV6]:PORT or off"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(access(dir, F_OK), -1);
	a.socks5 = NULL;
	a.http_proxy = "8118\n[http]\nBindAddress=0.0.0.0:8119";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--http-proxy ("));
	a.http_proxy = "0.0.0.0:8118 ";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	a.http_proxy = "0.0.0.0:65536";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	a.http_proxy = "web.example:8118";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	a.direct = "all\n[Socks5]";
	a.http_proxy = NULL;
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--direct"));

	/* node_ctl_build_config itself refuses, whatever the source (a
	 * prefs.json edited by hand, a caller that skipped the checks) */
	a.direct = NULL;
	a.socks5 = "[::1]:1080";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	config_free(&cfg);
	p->a.socks5 = evil;
	assert_int_equal(node_ctl_build_config(p, NULL, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "want PORT"));
	p->a.socks5 = "1080";
	p->a.direct = "no\nAllowOpen = yes";
	assert_int_equal(node_ctl_build_config(p, NULL, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--direct"));
	node_ctl_prep_free(p);

	/* a value longer than prefs.json keeps is refused, not cut */
	char big[1100];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	struct node_ctl_args b = {.state_dir = dir, .expose = big};
	assert_null(node_ctl_prepare(&b, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--expose (1099 bytes, not shown"));
}

/* A user's --config file with an open [Socks5] of its own keeps it; every
 * section we generate is checked (there is one of each kind). */
static void test_creds_every_generated_section(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600], ini[400];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/sec", root);
	make_token(tok, sizeof(tok));
	snprintf(ini, sizeof(ini), "%s/user.ini", root);
	FILE *f = fopen(ini, "w");
	assert_non_null(f);
	fputs("[Socks5]\nBindAddress = 127.0.0.1:1090\n", f);
	fclose(f);
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .config_path = ini,
	                          .socks5 = "0.0.0.0:1080"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--socks5 0.0.0.0:1080 can be reached"));
	a.proxy_user = "app";
	a.proxy_password = "pw-0123456";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 2);
	assert_null(cfg.socks5[0].username); /* the user's, as written */
	assert_string_equal(cfg.socks5[1].username, "app");
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* sections the parser accepts and a text scan missed: a BOM before
	 * the first, a vertical tab before the second */
	f = fopen(ini, "w");
	assert_non_null(f);
	fputs("\xef\xbb\xbf[Socks5]\nBindAddress = 127.0.0.1:1090\n"
	      "\v[http]\nBindAddress = 127.0.0.1:1091\n",
	      f);
	fclose(f);
	a.http_proxy = "0.0.0.0:8118";
	p = prep(&a, &cfg);
	assert_int_equal(cfg.n_socks5, 2);
	assert_int_equal(cfg.n_http, 2);
	assert_null(cfg.socks5[0].username);
	assert_null(cfg.http[0].username);
	assert_string_equal(cfg.socks5[1].username, "app");
	assert_string_equal(cfg.http[1].username, "app");
	config_free(&cfg);
	node_ctl_prep_free(p);
}

/* Forwards other hosts reach need the waiver of open proxies. */
static void test_open_forward_needs_waiver(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/fw", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {
	    .state_dir = dir, .join_token = tok, .forwards = "0.0.0.0:2222=web:22"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--forward: 0.0.0.0:2222 can be reached from other "
	                            "hosts"));
	assert_non_null(strstr(err, "--proxy-open"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(access(dir, F_OK), -1);
	a.proxy_open = "yes";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	assert_int_equal(cfg.n_tcp_client_tunnels, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);
}

/* Settings from MESH_* variables (transient) apply to this run only; a
 * sidecar (no_prefs) neither reads nor writes prefs.json. */
static void test_transient_and_no_prefs(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/tr", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {.state_dir = dir, .join_token = tok, .socks5 = "1080"};
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg); /* a flag: kept */
	config_free(&cfg);
	node_ctl_prep_free(p);

	struct node_ctl_args env = {.state_dir = dir,
	                            .socks5 = "0.0.0.0:1081",
	                            .proxy_open = "yes",
	                            .http_proxy = "3128",
	                            .transient = NODE_ARG_SOCKS5 | NODE_ARG_PROXY_OPEN |
	                                         NODE_ARG_HTTP_PROXY};
	p = prep(&env, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	const struct sockaddr_in *s = (const void *)&cfg.socks5[0].bind.addr;
	assert_int_equal(ntohs(s->sin_port), 1081);
	assert_int_equal(cfg.n_http, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);

	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg); /* the flag's value, none of the variables' */
	assert_int_equal(cfg.n_socks5, 1);
	s = (const void *)&cfg.socks5[0].bind.addr;
	assert_int_equal(ntohs(s->sin_port), 1080);
	assert_int_equal(cfg.n_http, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);
	/* and the waiver was not kept: an open bind is refused */
	struct node_ctl_args open = {.state_dir = dir, .socks5 = "0.0.0.0:1082"};
	assert_null(node_ctl_prepare(&open, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "has no credentials"));

	/* sidecar: what prefs.json holds does not apply, nothing is written */
	char path[400];
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	struct stat before, after;
	assert_int_equal(stat(path, &before), 0);
	struct node_ctl_args side = {
	    .state_dir = dir, .no_prefs = true, .http_proxy = "3129"};
	p = prep(&side, &cfg);
	assert_int_equal(cfg.n_socks5, 0);
	assert_int_equal(cfg.n_http, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	assert_int_equal(before.st_ino, after.st_ino);
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_http, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);
}

/* Credentials: a password of 8 bytes or more, UTF-8 text without control
 * characters; a prefs.json with one bad field applies not at all. */
static void test_credential_text(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/cr", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .socks5 = "0.0.0.0:1080",
	                          .proxy_user = "app",
	                          .proxy_password = "short"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "want 8 to 255 bytes"));
	a.proxy_password = "long enough\x01";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	a.proxy_password = "long enough \xff\xfe";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	a.proxy_password = "long enough";
	a.proxy_user = "ap\tp";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--proxy-user"));
	a.proxy_user = "\xc3\xa9t\xc3\xa9";
	struct config cfg;
	struct node_ctl_prep *p = prep(&a, &cfg);
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* prefs.json with a bad password and a good socks5: nothing applies */
	char path[400];
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"socks5\":\"1090\",\"http_proxy\":\"3128\",\"proxy_user\":\"app\","
	      "\"proxy_password\":\"x\\u0001\"}",
	      f);
	fclose(f);
	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_socks5 + cfg.n_http, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* a short password kept before the 8-byte minimum still applies (an
	 * upgrade does not drop the kept settings); new input must meet it */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"socks5\":\"1090\",\"http_proxy\":\"3128\",\"proxy_user\":\"app\","
	      "\"proxy_password\":\"x\"}",
	      f);
	fclose(f);
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	assert_int_equal(cfg.n_http, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);
	struct node_ctl_args again = {.state_dir = dir, .proxy_password = "short"};
	assert_null(node_ctl_prepare(&again, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "want 8 to 255 bytes"));
}

/* The proxy user and password come from one place: both this run's
 * (MESH_PROXY_*) or both kept; a mix is refused with one line, except
 * --proxy-user off, which forgets both whatever password comes with it. */
static void test_credentials_one_source(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/cm", root);
	make_token(tok, sizeof(tok));
	struct config cfg;
	/* a kept user with this run's password: refused (the next plain run
	 * would have the user and no password) */
	struct node_ctl_args mix = {.state_dir = dir,
	                            .join_token = tok,
	                            .socks5 = "0.0.0.0:1080",
	                            .proxy_user = "app",
	                            .proxy_password = "pw-0123456",
	                            .transient = NODE_ARG_PROXY_PASSWORD};
	assert_null(node_ctl_prepare(&mix, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "must come from the same place"));
	/* both kept: fine, and a plain run has both */
	mix.transient = 0;
	struct node_ctl_prep *p = prep(&mix, &cfg);
	config_free(&cfg);
	node_ctl_prep_free(p);
	struct node_ctl_args bare = {.state_dir = dir};
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	config_free(&cfg);
	node_ctl_prep_free(p);
	/* this run's user alone would pair with the kept password: refused */
	struct node_ctl_args u = {
	    .state_dir = dir, .proxy_user = "other", .transient = NODE_ARG_PROXY_USER};
	assert_null(node_ctl_prepare(&u, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "must come from the same place"));
	/* this run's password alone, with the kept user: refused */
	struct node_ctl_args w = {.state_dir = dir,
	                          .proxy_password = "pw-9876543",
	                          .transient = NODE_ARG_PROXY_PASSWORD};
	assert_null(node_ctl_prepare(&w, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "must come from the same place"));
	/* both for this run: fine */
	struct node_ctl_args both = {.state_dir = dir,
	                             .proxy_user = "other",
	                             .proxy_password = "pw-9876543",
	                             .transient =
	                                 NODE_ARG_PROXY_USER | NODE_ARG_PROXY_PASSWORD};
	p = prep(&both, &cfg);
	config_free(&cfg);
	node_ctl_prep_free(p);
	/* --proxy-user off with this run's password: off wins (the intent is
	 * to forget), the variable is warned about and not used, and the
	 * kept user and password are both gone */
	char log[4096], path[400], prefs[4096];
	struct node_ctl_args off = {.state_dir = dir,
	                            .socks5 = "1080",
	                            .proxy_user = "off",
	                            .proxy_password = "pw-9876543",
	                            .transient = NODE_ARG_PROXY_PASSWORD};
	capture_stderr(log, sizeof(log), &off);
	assert_non_null(strstr(log, "--proxy-user off: the proxy password given "
	                            "(MESH_PROXY_PASSWORD) is not used"));
	p = prep(&bare, &cfg);
	assert_int_equal(cfg.n_socks5, 1);
	assert_null(cfg.socks5[0].username);
	assert_null(cfg.socks5[0].password);
	config_free(&cfg);
	node_ctl_prep_free(p);
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(prefs, 1, sizeof(prefs) - 1, f);
	prefs[n] = 0;
	fclose(f);
	assert_null(strstr(prefs, "pw-0123456"));
	assert_null(strstr(prefs, "pw-9876543"));
	assert_null(strstr(prefs, "\"app\""));
}

/* realpath(3) wrote up to PATH_MAX bytes into a 1024-byte buffer. */
static void test_long_config_path(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[600], cwd[4096];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/lp", root);
	make_token(tok, sizeof(tok));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(root), 0);
	char rel[2000] = "";
	/* under 1024 bytes as given, over 1023 once made absolute */
	for (int i = 0; i < 10; i++) {
		char part[120];
		memset(part, 'd', 100);
		part[100] = 0;
		strcat(rel, part);
		assert_true(mkdir(rel, 0700) == 0);
		strcat(rel, "/");
	}
	strcat(rel, "f.ini");
	FILE *f = fopen(rel, "w");
	assert_non_null(f);
	fclose(f);
	struct node_ctl_args a = {
	    .state_dir = dir, .join_token = tok, .config_path = rel};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_int_equal(chdir(cwd), 0);
	assert_true(strlen(rel) < 1024);
	assert_non_null(
	    strstr(err, "--config: the file's full path is longer than 1023"));
}

/* The log (stderr) of preparing a node with a, in out. */
static void capture_stderr(char *out, size_t cap, struct node_ctl_args *a)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr.txt", root);
	fflush(stderr);
	int saved = dup(2);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	dup2(fileno(f), 2);
	struct config cfg;
	struct node_ctl_prep *p = prep(a, &cfg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	config_free(&cfg);
	node_ctl_prep_free(p);
	rewind(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	fclose(f);
}

/* A kept --proxy-open leaving a proxy open to other hosts is said at
 * every start; given this run, it is not (the user just asked). */
static void test_kept_open_warned(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], log[4096];
	snprintf(dir, sizeof(dir), "%s/ko", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .socks5 = "0.0.0.0:1080",
	                          .proxy_open = "yes"};
	capture_stderr(log, sizeof(log), &a);
	assert_null(strstr(log, "kept from an earlier --proxy-open"));
	struct node_ctl_args bare = {.state_dir = dir};
	capture_stderr(log, sizeof(log), &bare);
	assert_non_null(strstr(log, "the SOCKS5 proxy 0.0.0.0:1080 is open without "
	                            "credentials: kept from an earlier --proxy-open; "
	                            "--no-proxy-open ends it"));
}

/* A proxy password kept in prefs.json from before the 8-byte minimum:
 * warned on loopback binds, refused (one line: set a new one) when a
 * proxy binds an address other hosts reach (the front-ends do not limit
 * failed logins: it could be guessed online). */
static void test_short_kept_password_by_bind(void **state)
{
	(void)state;
	char dir[300], path[400], log[4096], err[600], tok[CTL_TOKEN_STR_MAX];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/sk", root);
	make_token(tok, sizeof(tok));
	struct node_ctl_args join = {.state_dir = dir, .join_token = tok};
	struct config cfg;
	struct node_ctl_prep *p = prep(&join, &cfg);
	config_free(&cfg);
	node_ctl_prep_free(p);
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"socks5\":\"1090\",\"http_proxy\":\"127.0.0.1:3128\","
	      "\"proxy_user\":\"app\",\"proxy_password\":\"x\"}",
	      f);
	fclose(f);
	struct node_ctl_args bare = {.state_dir = dir};
	capture_stderr(log, sizeof(log), &bare);
	assert_non_null(strstr(log, "the kept proxy password is shorter than 8 bytes"));

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"socks5\":\"1090\",\"http_proxy\":\"0.0.0.0:3128\","
	      "\"proxy_user\":\"app\",\"proxy_password\":\"x\"}",
	      f);
	fclose(f);
	assert_null(node_ctl_prepare(&bare, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "--http-proxy 0.0.0.0:3128 can be reached from "
	                            "other hosts and the kept proxy password is "
	                            "shorter than 8 bytes: set a new one with "
	                            "--proxy-password-file"));
	assert_null(strchr(err, '\n'));
	/* a new one, long enough: fine, and kept */
	struct node_ctl_args fix = {.state_dir = dir, .proxy_password = "pw-0123456"};
	p = prep(&fix, &cfg);
	assert_int_equal(cfg.n_http, 1);
	assert_string_equal(cfg.http[0].password, "pw-0123456");
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
	    cmocka_unit_test(test_listen_value_injection),
	    cmocka_unit_test(test_creds_every_generated_section),
	    cmocka_unit_test(test_open_forward_needs_waiver),
	    cmocka_unit_test(test_transient_and_no_prefs),
	    cmocka_unit_test(test_credentials_one_source),
	    cmocka_unit_test(test_credential_text),
	    cmocka_unit_test(test_short_kept_password_by_bind),
	    cmocka_unit_test(test_long_config_path),
	    cmocka_unit_test(test_kept_open_warned),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
