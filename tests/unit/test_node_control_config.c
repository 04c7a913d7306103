/* node/control: what `mesh-proxy up` reads before its loop starts.
 *  - a join token binds the state directory to its mesh; a bad token, a
 *    bad --hostname, a bad --expose, a bad --socks5 are usage errors that
 *    leave no state directory behind;
 *  - resuming a directory that never joined says how to join;
 *  - a token of another mesh is refused, naming the mesh of the directory;
 *  - the configuration holds node.key, the registered addresses, the saved
 *    listen port, the --socks5 / --http-proxy front-ends and the --config
 *    file's peers; an [Interface] in that file is refused with its line;
 *  - `up --join TOKEN` on a directory that joined before keeps the token's
 *    auth key (an expired node re-authorises in place);
 *  - settings stick: a later `up` without flags resumes with the kept
 *    proxies, expose and Direct (prefs.json, mode 0600); a flag changes a
 *    kept setting for good, "off" removes a proxy. */
#include <errno.h>
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
#include "node/control_int.h" /* the expose spec in effect */
#include "tests/unit/tmpdir_fixture.h"

TMPDIR_FIXTURE("test_node_control_config")

static void make_token(char *out, size_t cap, uint8_t key_byte, const char *auth)
{
	struct ctl_token t = {.port = 17443};
	snprintf(t.host, sizeof(t.host), "127.0.0.1");
	memset(t.server_key, key_byte, sizeof(t.server_key));
	snprintf(t.auth_key, sizeof(t.auth_key), "%s", auth);
	assert_true(ctl_token_encode(&t, out, cap) > 0);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static void test_usage_errors(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[512];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/u", root);
	make_token(tok, sizeof(tok), 7, "k1");
	struct node_ctl_args a = {.state_dir = dir, .join_token = "mesh1AAAA"};
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--join: join token"));
	a.join_token = tok;
	a.hostname = "bad name";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--hostname"));
	a.hostname = "web";
	a.socks5 = "nonsense";
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "--socks5 nonsense: want PORT, IPV4:PORT"));
	assert_false(exists(dir)); /* nothing written for a usage error */
	a.socks5 = NULL;
	a.join_token = NULL; /* resume a directory that never joined */
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_true(usage);
	assert_non_null(strstr(err, "has not joined a mesh yet"));
}

static void test_join_and_config(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], other[CTL_TOKEN_STR_MAX], err[512],
	    ini[400];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/j", root);
	snprintf(ini, sizeof(ini), "%s/extra.ini", root);
	FILE *f = fopen(ini, "w");
	assert_non_null(f);
	fputs("[Peer]\nPublicKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
	      "AllowedIPs = 100.73.0.1/32\nName = legacy\n",
	      f);
	fclose(f);
	make_token(tok, sizeof(tok), 7, "k1");
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .hostname = "web",
	                          .socks5 = "127.0.0.1:1080",
	                          .http_proxy = "127.0.0.1:8080",
	                          .config_path = ini};
	struct node_ctl_prep *p = node_ctl_prepare(&a, err, sizeof(err), &usage);
	if (!p)
		fail_msg("%s", err);
	assert_null(node_ctl_prep_self(p));
	struct node_self self = {.node_id = 3, .listen_port = 0};
	snprintf(self.name, sizeof(self.name), "web");
	uint8_t v4[4] = {100, 64, 0, 3};
	memcpy(self.ipv4, v4, 4);
	self.ipv6[0] = 0xfd;
	self.ipv6[15] = 3;
	struct config cfg;
	if (node_ctl_build_config(p, &self, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.n_addresses, 2);
	assert_int_equal(cfg.addresses[0].addr[3], 3);
	assert_int_equal(cfg.addresses[0].cidr, 32);
	assert_int_equal(cfg.addresses[1].cidr, 128);
	assert_int_equal(cfg.n_socks5, 1);
	assert_int_equal(cfg.n_http, 1);
	assert_int_equal(cfg.n_peers, 1);
	assert_string_equal(cfg.peers[0].name, "legacy");
	assert_int_equal(cfg.listen_port, 0);
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* a saved registration with a port: used again */
	self.listen_port = 0; /* find a free port: bind 0 and read it back */
	assert_int_equal(node_state_save_self(dir, &self, err, sizeof(err)), 0);
	a.join_token = NULL;
	p = node_ctl_prepare(&a, err, sizeof(err), &usage);
	assert_non_null(p);
	assert_non_null(node_ctl_prep_self(p));
	self.listen_port = 45123;
	assert_int_equal(node_ctl_build_config(p, &self, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.listen_port, 45123);
	config_free(&cfg);
	node_ctl_prep_free(p);

	/* another mesh's token */
	make_token(other, sizeof(other), 8, "k2");
	a.join_token = other;
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_false(usage);
	assert_non_null(strstr(err, "already belongs to the mesh at 127.0.0.1:17443"));

	/* [Interface] in --config */
	f = fopen(ini, "w");
	fputs("; comment\n[Interface]\nPrivateKey = x\n", f);
	fclose(f);
	a.join_token = tok;
	assert_null(node_ctl_prepare(&a, err, sizeof(err), &usage));
	assert_non_null(strstr(err, "extra.ini:2:"));
	assert_non_null(strstr(err, "[Interface]"));
}

/* Control review M7: `up --join TOKEN` on a state directory that joined
 * before (say its node expired) keeps the token's auth key for the
 * registration, so the server can re-authorise the node in place. */
static void test_rejoin_keeps_auth_key(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], err[512];
	bool usage;
	snprintf(dir, sizeof(dir), "%s/rejoin", root);
	make_token(tok, sizeof(tok), 7, "mkey-1-aa");
	struct node_ctl_args a = {.state_dir = dir, .join_token = tok};
	struct node_ctl_prep *p = node_ctl_prepare(&a, err, sizeof(err), &usage);
	if (!p)
		fail_msg("%s", err);
	node_ctl_prep_free(p);
	struct node_self self = {.node_id = 3};
	snprintf(self.name, sizeof(self.name), "web");
	self.ipv4[0] = 100;
	self.ipv4[1] = 64;
	self.ipv4[3] = 3;
	self.ipv6[0] = 0xfd;
	assert_int_equal(node_state_save_self(dir, &self, err, sizeof(err)), 0);
	make_token(tok, sizeof(tok), 7, "mkey-2-bb"); /* a new key, same mesh */
	p = node_ctl_prepare(&a, err, sizeof(err), &usage);
	if (!p)
		fail_msg("%s", err);
	assert_non_null(node_ctl_prep_self(p));
	assert_string_equal(p->auth_key, "mkey-2-bb");
	node_ctl_prep_free(p);
}

static struct node_ctl_prep *prep_ok(struct node_ctl_args *a)
{
	char err[512];
	bool usage;
	struct node_ctl_prep *p = node_ctl_prepare(a, err, sizeof(err), &usage);
	if (!p)
		fail_msg("%s", err);
	return p;
}

/* The front-ends and expose a prep gives. */
static void effective(struct node_ctl_prep *p, size_t *n_socks, enum cfg_direct *direct,
                      char *expose, size_t cap)
{
	char err[512];
	struct node_self self = {.node_id = 3};
	snprintf(self.name, sizeof(self.name), "web");
	self.ipv4[0] = 100, self.ipv4[1] = 64, self.ipv4[3] = 3;
	self.ipv6[0] = 0xfd, self.ipv6[15] = 3;
	struct config cfg;
	if (node_ctl_build_config(p, &self, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	*n_socks = cfg.n_socks5;
	*direct = cfg.n_socks5 ? cfg.socks5[0].direct : CFG_DIRECT_UNSET;
	expose_describe(&p->expose, expose, cap);
	config_free(&cfg);
}

static void test_settings_stick(void **state)
{
	(void)state;
	char dir[300], tok[CTL_TOKEN_STR_MAX], path[400], x[64];
	size_t n;
	enum cfg_direct d;
	snprintf(dir, sizeof(dir), "%s/s", root);
	make_token(tok, sizeof(tok), 7, "k1");
	struct node_ctl_args a = {.state_dir = dir,
	                          .join_token = tok,
	                          .socks5 = "127.0.0.1:1080",
	                          .expose = "22,8080:pp2",
	                          .direct = "public"};
	struct node_ctl_prep *p = prep_ok(&a);
	effective(p, &n, &d, x, sizeof(x));
	assert_int_equal(n, 1);
	assert_int_equal(d, CFG_DIRECT_PUBLIC);
	assert_string_equal(x, "22,8080:pp2");
	node_ctl_prep_free(p);
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* A restart without flags: the same settings. */
	struct node_ctl_args bare = {.state_dir = dir};
	p = prep_ok(&bare);
	effective(p, &n, &d, x, sizeof(x));
	assert_int_equal(n, 1);
	assert_int_equal(d, CFG_DIRECT_PUBLIC);
	assert_string_equal(x, "22,8080:pp2");
	node_ctl_prep_free(p);

	/* Explicit flags change them for good; off removes the proxy. */
	struct node_ctl_args change = {
	    .state_dir = dir, .expose = "none", .socks5 = "off"};
	p = prep_ok(&change);
	effective(p, &n, &d, x, sizeof(x));
	assert_int_equal(n, 0);
	assert_string_equal(x, "none");
	node_ctl_prep_free(p);
	p = prep_ok(&bare);
	effective(p, &n, &d, x, sizeof(x));
	assert_int_equal(n, 0);
	assert_string_equal(x, "none");
	node_ctl_prep_free(p);

	/* --no-portmap sticks like the others; --portmap undoes it;
	 * PortMapping = no in a --config file switches it off too. */
	struct config cfg0 = {0};
	assert_true(node_ctl_portmap_on(p = prep_ok(&bare), &cfg0));
	node_ctl_prep_free(p);
	struct node_ctl_args nopm = {.state_dir = dir, .portmap = "no"};
	assert_false(node_ctl_portmap_on(p = prep_ok(&nopm), &cfg0));
	node_ctl_prep_free(p);
	assert_false(node_ctl_portmap_on(p = prep_ok(&bare), &cfg0));
	node_ctl_prep_free(p);
	struct node_ctl_args pm = {.state_dir = dir, .portmap = "yes"};
	assert_true(node_ctl_portmap_on(p = prep_ok(&pm), &cfg0));
	node_ctl_prep_free(p);
	p = prep_ok(&bare);
	assert_true(node_ctl_portmap_on(p, &cfg0));
	struct config cfg_no = {.portmap = -1};
	assert_false(node_ctl_portmap_on(p, &cfg_no));
	node_ctl_prep_free(p);

	/* --no-birthday the same way, independent of --no-portmap; and
	 * BirthdayProbing = no in a --config file. */
	assert_true(node_ctl_birthday_on(p = prep_ok(&bare), &cfg0));
	node_ctl_prep_free(p);
	struct node_ctl_args nobd = {.state_dir = dir, .birthday = "no"};
	p = prep_ok(&nobd);
	assert_false(node_ctl_birthday_on(p, &cfg0));
	assert_true(node_ctl_portmap_on(p, &cfg0));
	node_ctl_prep_free(p);
	p = prep_ok(&bare); /* kept in prefs.json */
	assert_false(node_ctl_birthday_on(p, &cfg0));
	node_ctl_prep_free(p);
	struct node_ctl_args bd = {.state_dir = dir, .birthday = "yes"};
	assert_true(node_ctl_birthday_on(p = prep_ok(&bd), &cfg0));
	node_ctl_prep_free(p);
	p = prep_ok(&bare);
	assert_true(node_ctl_birthday_on(p, &cfg0));
	struct config cfg_nobd = {.birthday = -1};
	assert_false(node_ctl_birthday_on(p, &cfg_nobd));
	assert_true(node_ctl_portmap_on(p, &cfg_nobd));
	node_ctl_prep_free(p);

	/* A corrupt prefs.json: a warning, and the flags alone. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"expose\": 7}", f);
	fclose(f);
	p = prep_ok(&bare);
	effective(p, &n, &d, x, sizeof(x));
	assert_string_equal(x, "none");
	node_ctl_prep_free(p);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_join_and_config),
	    cmocka_unit_test(test_rejoin_keeps_auth_key),
	    cmocka_unit_test(test_settings_stick),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
