/* cli/env: MESH_* settings for `mesh-proxy up` and `sidecar`.
 *  - each variable sets what its flag sets (yes/no variables accept
 *    true/false, 1/0, on/off); an empty variable is unset;
 *  - a variable and a flag that disagree are a conflict naming both; the
 *    same value twice is not;
 *  - secrets: X and X_FILE both set is a conflict; the file's first line
 *    is the secret (line end stripped), an empty, missing or over-long one
 *    is refused naming the variable;
 *  - MESH_EXTRA_ARGS splits with quotes and goes through the option
 *    parser; a flag there and on the command line must agree;
 *  - unknown MESH_* names are warned once each, the build and test
 *    harness's are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/env.h"
#include "node/control.h"
#include "tests/unit/tmpdir_fixture.h"

TMPDIR_FIXTURE("test_cli_env")

/* A file under root with these bytes; its path in out. */
static void write_file(char *out, size_t cap, const char *name, const char *data,
                       size_t len)
{
	snprintf(out, cap, "%s/%s", root, name);
	FILE *f = fopen(out, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static int apply(struct cli *c, char **envp, struct cli_env *e, char *err, size_t cap)
{
	memset(e, 0, sizeof(*e));
	err[0] = 0;
	return cli_env_apply(c, envp, e, err, cap);
}

static void test_variables_mirror_flags(void **state)
{
	(void)state;
	char *envp[] = {"MESH_STATE_DIR=/var/lib/mesh",
	                "MESH_HOSTNAME=web",
	                "MESH_SOCKS5=1080",
	                "MESH_HTTP_PROXY=127.0.0.1:8118",
	                "MESH_EXPOSE=22,8080",
	                "MESH_FORWARDS=5432=db:5432,udp/5353=dns:53",
	                "MESH_CONFIG=/etc/mesh.ini",
	                "MESH_DIRECT=public",
	                "MESH_HEALTH_LISTEN=127.0.0.1:9090",
	                "MESH_LOG_LEVEL=debug",
	                "MESH_API=/run/api.sock",
	                "MESH_PROXY_USER=app",
	                "MESH_PROXY_PASSWORD=s3cret",
	                "MESH_PROXY_OPEN=false",
	                "MESH_PORTMAP=0",
	                "MESH_BIRTHDAY=On",
	                "MESH_EPHEMERAL=true",
	                "MESH_JOIN=",
	                "PATH=/bin",
	                NULL};
	struct cli c = {0};
	struct cli_env e;
	char err[600];
	if (apply(&c, envp, &e, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.state, "/var/lib/mesh");
	assert_string_equal(c.hostname, "web");
	assert_string_equal(c.socks5, "1080");
	assert_string_equal(c.http_proxy, "127.0.0.1:8118");
	assert_string_equal(c.expose, "22,8080");
	assert_string_equal(c.forward, "5432=db:5432,udp/5353=dns:53");
	assert_string_equal(c.config, "/etc/mesh.ini");
	assert_string_equal(c.direct, "public");
	assert_string_equal(c.health_listen, "127.0.0.1:9090");
	assert_string_equal(c.log_level, "debug");
	assert_string_equal(c.api, "/run/api.sock");
	assert_string_equal(c.proxy_user, "app");
	assert_string_equal(c.proxy_password, "s3cret");
	assert_string_equal(c.proxy_open, "no");
	assert_string_equal(c.portmap, "no");
	assert_string_equal(c.birthday, "yes");
	assert_true(c.ephemeral);
	assert_null(c.join); /* empty: unset */
	cli_env_release(&e);
}

static void test_bad_values_name_the_variable(void **state)
{
	(void)state;
	static const struct {
		const char *var, *want;
	} cases[] = {
	    {"MESH_DIRECT=sometimes", "MESH_DIRECT=sometimes: want public, all or no"},
	    {"MESH_LOG_LEVEL=loud", "MESH_LOG_LEVEL=loud: want error"},
	    {"MESH_HOSTNAME=bad name", "MESH_HOSTNAME=bad name: not a host name"},
	    {"MESH_FORWARDS=80", "MESH_FORWARDS: \"80\" is not"},
	    {"MESH_PROXY_OPEN=maybe", "MESH_PROXY_OPEN=maybe: want yes or no"},
	    {"MESH_EPHEMERAL=2", "MESH_EPHEMERAL=2: want yes or no"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *envp[] = {(char *)cases[i].var, NULL};
		struct cli c = {0};
		struct cli_env e;
		char err[600];
		assert_int_equal(apply(&c, envp, &e, err, sizeof(err)), 2);
		if (!strstr(err, cases[i].want))
			fail_msg("%s: got \"%s\"", cases[i].var, err);
		assert_null(strchr(err, '\n')); /* one line */
		cli_env_release(&e);
	}
}

static void test_flag_and_variable_conflict(void **state)
{
	(void)state;
	char err[600];
	struct cli_env e;
	char *envp[] = {"MESH_HOSTNAME=b", NULL};
	struct cli c = {.hostname = "a"};
	assert_int_equal(apply(&c, envp, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_HOSTNAME=b conflicts with --hostname a"));
	cli_env_release(&e);

	struct cli same = {.hostname = "b"}; /* the same value: fine */
	assert_int_equal(apply(&same, envp, &e, err, sizeof(err)), 0);
	assert_string_equal(same.hostname, "b");
	cli_env_release(&e);

	char *pm[] = {"MESH_PORTMAP=yes", NULL};
	struct cli nopm = {.portmap = "no"};
	assert_int_equal(apply(&nopm, pm, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_PORTMAP=yes conflicts with --no-portmap"));
	cli_env_release(&e);

	char *eph[] = {"MESH_EPHEMERAL=no", NULL};
	struct cli ce = {.ephemeral = true};
	assert_int_equal(apply(&ce, eph, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "--ephemeral"));
	cli_env_release(&e);

	/* a secret's value is never printed */
	char *join[] = {"MESH_JOIN=tok-env", NULL};
	struct cli cj = {.join = "tok-flag"};
	assert_int_equal(apply(&cj, join, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_JOIN conflicts with --join"));
	assert_null(strstr(err, "tok-"));
	cli_env_release(&e);
}

static void test_secret_files(void **state)
{
	(void)state;
	char tok[300], pw[300], empty[300], big[300], env1[400], env2[400], err[600];
	struct cli_env e;
	write_file(tok, sizeof(tok), "join", "mesh1TOKEN\r\nsecond line\n", 24);
	write_file(pw, sizeof(pw), "pw", "pa ss;#word", 11); /* no newline */
	write_file(empty, sizeof(empty), "empty", "\n", 1);
	char *long_line = malloc(5000);
	memset(long_line, 'x', 5000);
	write_file(big, sizeof(big), "big", long_line, 5000);
	free(long_line);

	snprintf(env1, sizeof(env1), "MESH_JOIN_FILE=%s", tok);
	snprintf(env2, sizeof(env2), "MESH_PROXY_PASSWORD_FILE=%s", pw);
	char *ok[] = {env1, env2, "MESH_PROXY_USER=app", NULL};
	struct cli c = {0};
	if (apply(&c, ok, &e, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.join, "mesh1TOKEN");
	assert_string_equal(c.proxy_password, "pa ss;#word");
	cli_env_release(&e);

	/* X and X_FILE */
	char *both[] = {"MESH_JOIN=mesh1X", env1, NULL};
	struct cli c2 = {0};
	assert_int_equal(apply(&c2, both, &e, err, sizeof(err)), 2);
	assert_string_equal(
	    err, "MESH_JOIN and MESH_JOIN_FILE are both set: keep one of them");
	cli_env_release(&e);
	char *pboth[] = {"MESH_PROXY_PASSWORD=x", env2, NULL};
	struct cli c3 = {0};
	assert_int_equal(apply(&c3, pboth, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_PROXY_PASSWORD and MESH_PROXY_PASSWORD_FILE"));
	cli_env_release(&e);
	/* the variable and the flag's file */
	char *pvar[] = {"MESH_PROXY_PASSWORD=x", NULL};
	struct cli c4 = {.proxy_password_file = pw};
	assert_int_equal(apply(&c4, pvar, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "--proxy-password-file"));
	cli_env_release(&e);
	/* a file agreeing with --join is no conflict; another token is */
	char *jf[] = {env1, NULL};
	struct cli c5 = {.join = "mesh1TOKEN"};
	assert_int_equal(apply(&c5, jf, &e, err, sizeof(err)), 0);
	cli_env_release(&e);
	struct cli c6 = {.join = "mesh1OTHER"};
	assert_int_equal(apply(&c6, jf, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_JOIN_FILE conflicts with --join"));
	cli_env_release(&e);

	/* empty, missing, over-long */
	const char *bad[] = {empty, "/nonexistent/join", big};
	const char *want[] = {"first line is empty", "No such file",
	                      "longer than 4095 bytes"};
	for (int i = 0; i < 3; i++) {
		snprintf(env1, sizeof(env1), "MESH_JOIN_FILE=%s", bad[i]);
		char *b[] = {env1, NULL};
		struct cli cb = {0};
		assert_int_equal(apply(&cb, b, &e, err, sizeof(err)), 2);
		assert_non_null(strstr(err, "MESH_JOIN_FILE"));
		if (!strstr(err, want[i]))
			fail_msg("%s: %s", bad[i], err);
		assert_null(cb.join);
		cli_env_release(&e);
	}
}

static void split_ok(const char *s, int want_n, const char *const *want)
{
	char *buf, **argv, err[200];
	int argc;
	if (cli_env_split(s, &buf, &argv, &argc, err, sizeof(err)) != 0)
		fail_msg("%s: %s", s, err);
	assert_int_equal(argc, want_n + 1);
	assert_string_equal(argv[0], "mesh-proxy");
	for (int i = 0; i < want_n; i++)
		assert_string_equal(argv[i + 1], want[i]);
	assert_null(argv[argc]);
	free(buf);
	free(argv);
}

static void test_extra_args_split(void **state)
{
	(void)state;
	split_ok("", 0, NULL);
	split_ok("  \t\n ", 0, NULL);
	const char *w1[] = {"--hostname", "a b", "--no-portmap"};
	split_ok(" --hostname 'a b'\t--no-portmap ", 3, w1);
	const char *w2[] = {"say \"hi\" \\ 'x'", "c d", "e'f"};
	split_ok("\"say \\\"hi\\\" \\\\ 'x'\" c\\ d \"e'f\"", 3, w2);
	const char *w3[] = {"ab$c", ""};
	split_ok("a'b'\"$c\" ''", 2, w3);
	char *buf, **argv, err[200];
	int argc;
	assert_int_equal(
	    cli_env_split("--hostname 'web", &buf, &argv, &argc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "single quote is not closed"));
	char many[400] = "";
	for (int i = 0; i < 65; i++)
		strcat(many, "-4 ");
	assert_int_equal(cli_env_split(many, &buf, &argv, &argc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 64 words"));
}

static void test_extra_args_apply(void **state)
{
	(void)state;
	char err[600];
	struct cli_env e;
	char *envp[] = {"MESH_EXTRA_ARGS=--no-birthday --expose '22,80' --ephemeral",
	                "MESH_HOSTNAME=web", NULL};
	struct cli c = {.expose = "22,80"};
	if (apply(&c, envp, &e, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.birthday, "no");
	assert_string_equal(c.expose, "22,80");
	assert_string_equal(c.hostname, "web");
	assert_true(c.ephemeral);
	cli_env_release(&e);

	char *conflict[] = {"MESH_EXTRA_ARGS=--hostname a", NULL};
	struct cli c2 = {.hostname = "b"};
	assert_int_equal(apply(&c2, conflict, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_EXTRA_ARGS --hostname a conflicts with "
	                            "--hostname b"));
	cli_env_release(&e);

	char *vs_var[] = {"MESH_EXTRA_ARGS=--hostname a", "MESH_HOSTNAME=b", NULL};
	struct cli c3 = {0};
	assert_int_equal(apply(&c3, vs_var, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "from MESH_EXTRA_ARGS"));
	cli_env_release(&e);

	char *pos[] = {"MESH_EXTRA_ARGS=--no-portmap status", NULL};
	struct cli c4 = {0};
	assert_int_equal(apply(&c4, pos, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_EXTRA_ARGS: unexpected argument (6 characters, "
	                            "not shown"));
	cli_env_release(&e);

	char *quote[] = {"MESH_EXTRA_ARGS=--hostname \"web", NULL};
	struct cli c5 = {0};
	assert_int_equal(apply(&c5, quote, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_EXTRA_ARGS: a double quote is not closed"));
	cli_env_release(&e);

	/* a bad flag: the parser prints it (stderr), err stays empty */
	char *bad[] = {"MESH_EXTRA_ARGS=--frobnicate", NULL};
	struct cli c6 = {0};
	assert_int_equal(apply(&c6, bad, &e, err, sizeof(err)), 2);
	assert_string_equal(err, "");
	cli_env_release(&e);
}

static void test_unknown_variables_warned(void **state)
{
	(void)state;
	char *envp[] = {"MESH_HOSTANME=web",
	                "MESH_HOSTNAME=web",
	                "MESH_SKIP_DEPS=1",
	                "MESH_TEST_JOBS=3",
	                "MESH_E2E_ID=7",
	                "MESH_CONTROL_DATA=/d",
	                "MESH_RELAY_JOIN=x",
	                "MESH_JOIN_FILE=/f",
	                "MESH_EXTRA_ARGS=",
	                "MESH_HOSTANME=again",
	                "MESHY=1",
	                "MESH_SOCKS=1080",
	                NULL};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_non_null(f);
	assert_int_equal(cli_env_warn_unknown(envp, f), 2);
	fclose(f);
	assert_non_null(strstr(out, "MESH_HOSTANME is not a setting"));
	assert_non_null(strstr(out, "MESH_SOCKS is not a setting"));
	assert_null(strstr(out, "SKIP"));
	assert_null(strstr(out, "MESHY"));
	free(out);
}

/* MESH_SOCKS5 / MESH_HTTP_PROXY: PORT, IPV4:PORT, [IPV6]:PORT or off; a
 * line end in any value is refused before it reaches a generated file. */
static void test_listen_values_strict(void **state)
{
	(void)state;
	char err[600];
	struct cli_env e;
	char *inj[] = {"MESH_SOCKS5=0.0.0.0:1080\nAllowOpen=yes\n[Socks5]\nBindAddress="
	               "127.0.0.1:1081",
	               NULL};
	struct cli c = {0};
	assert_int_equal(apply(&c, inj, &e, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "MESH_SOCKS5 holds a control character"));
	assert_null(strchr(err, '\n'));
	cli_env_release(&e);
	char *bad[] = {"MESH_HTTP_PROXY=localhost:3128", NULL};
	struct cli c2 = {0};
	assert_int_equal(apply(&c2, bad, &e, err, sizeof(err)), 2);
	assert_non_null(
	    strstr(err, "MESH_HTTP_PROXY=localhost:3128: want PORT, IPV4:PORT"));
	cli_env_release(&e);
	char *hn[] = {"MESH_EXPOSE=22\n[Socks5]", NULL};
	struct cli c3 = {0};
	assert_int_equal(apply(&c3, hn, &e, err, sizeof(err)), 2);
	cli_env_release(&e);
	char *ok[] = {"MESH_SOCKS5=[::]:1080", "MESH_HTTP_PROXY=off", NULL};
	struct cli c4 = {0};
	assert_int_equal(apply(&c4, ok, &e, err, sizeof(err)), 0);
	cli_env_release(&e);
}

/* Which settings came from variables (never kept in prefs.json): those
 * set by a variable or MESH_EXTRA_ARGS, not those a flag also gave. */
static void test_env_only_bits(void **state)
{
	(void)state;
	char err[600];
	struct cli_env e;
	char *env[] = {"MESH_SOCKS5=1080", "MESH_PROXY_OPEN=yes", "MESH_EXPOSE=22",
	               "MESH_EXTRA_ARGS=--forward 2222=web:22", NULL};
	struct cli c = {.expose = "22"};
	assert_int_equal(apply(&c, env, &e, err, sizeof(err)), 0);
	assert_int_equal(c.env_only,
	                 NODE_ARG_SOCKS5 | NODE_ARG_PROXY_OPEN | NODE_ARG_FORWARDS);
	cli_env_release(&e);
	char *no[] = {"MESH_EPHEMERAL=no", NULL};
	struct cli c2 = {0};
	assert_int_equal(apply(&c2, no, &e, err, sizeof(err)), 0);
	assert_true(c2.no_ephemeral);
	assert_false(c2.ephemeral);
	cli_env_release(&e);
}

/* The secrets' bytes leave the environment block (what /proc/PID/environ
 * shows); the settings keep working from private copies. */
static void test_scrub_secrets(void **state)
{
	(void)state;
	char err[600];
	struct cli_env e;
	char v1[] = "MESH_PROXY_PASSWORD=s3cr3t-pass";
	char v2[] = "MESH_JOIN=mesh1SECRETTOKEN";
	char v3[] = "MESH_EXTRA_ARGS=--hostname web";
	char *env[] = {v1, v2, v3, NULL};
	struct cli c = {0};
	assert_int_equal(apply(&c, env, &e, err, sizeof(err)), 0);
	cli_env_scrub(env, &e);
	assert_null(strstr(v1 + 20, "s3cr3t"));
	assert_int_equal(v1[20], 0);
	assert_int_equal(v2[10], 0);
	assert_string_equal(v3, "MESH_EXTRA_ARGS=--hostname web"); /* no --join */
	assert_string_equal(c.proxy_password, "s3cr3t-pass");
	assert_string_equal(c.join, "mesh1SECRETTOKEN");
	cli_env_release(&e);

	char v4[] = "MESH_EXTRA_ARGS=--join mesh1SECRETTOKEN";
	char *env2[] = {v4, NULL};
	struct cli c2 = {0};
	assert_int_equal(apply(&c2, env2, &e, err, sizeof(err)), 0);
	cli_env_scrub(env2, &e);
	assert_null(strstr(v4 + 16, "mesh1"));
	assert_string_equal(c2.join, "mesh1SECRETTOKEN");
	/* the split copy is wiped whole, past the NUL after "--join" */
	assert_int_equal(e.xbuf_len, strlen("--join mesh1SECRETTOKEN") + 1);
	cli_env_wipe(&e);
	for (size_t i = 0; i < e.xbuf_len; i++)
		assert_int_equal(e.xbuf[i], 0);
	cli_env_release(&e);
}

/* A secret file with a NUL anywhere is refused (it was cut at the NUL
 * when it sat on the first line). */
static void test_secret_file_nul(void **state)
{
	(void)state;
	char pw[300], err[600];
	char *out;
	write_file(pw, sizeof(pw), "nul", "abc\0defghij\n", 12);
	assert_int_equal(
	    cli_secret_read(pw, "proxy password file", &out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "holds a NUL byte"));
}

/* An unexpected argument may be a token: not echoed. */
static void test_unexpected_argument_hidden(void **state)
{
	(void)state;
	char sb[48];
	struct cli c = {0};
	assert_string_equal(cli_arg_shown(&c, "status", sb, sizeof(sb)), "status");
	assert_string_equal(cli_arg_shown(&c, "mesh1abcdef", sb, sizeof(sb)),
	                    "(11 characters, not shown)");
	struct cli x = {.origin = "MESH_EXTRA_ARGS"};
	assert_string_equal(cli_arg_shown(&x, "status", sb, sizeof(sb)),
	                    "(6 characters, not shown)");
	/* the parser's own line (stderr) goes through it: checked by
	 * tests/e2e/sidecar_env.sh */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_variables_mirror_flags),
	    cmocka_unit_test(test_bad_values_name_the_variable),
	    cmocka_unit_test(test_flag_and_variable_conflict),
	    cmocka_unit_test(test_secret_files),
	    cmocka_unit_test(test_extra_args_split),
	    cmocka_unit_test(test_extra_args_apply),
	    cmocka_unit_test(test_unknown_variables_warned),
	    cmocka_unit_test(test_listen_values_strict),
	    cmocka_unit_test(test_env_only_bits),
	    cmocka_unit_test(test_scrub_secrets),
	    cmocka_unit_test(test_secret_file_nul),
	    cmocka_unit_test(test_unexpected_argument_hidden),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
