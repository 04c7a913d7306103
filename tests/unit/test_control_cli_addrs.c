/* servers/control/cli_util: lists of control addresses (init --listen,
 * control.conf's listen, token --control).
 *  - "A,B" in order, IPv6 in brackets, blanks around items, 8 at most;
 *  - refused with a sentence naming the item: empty items, no port, port 0
 *    or past 65535, an IPv6 literal without brackets, an address twice, a
 *    ninth, a host past 253 characters;
 *  - the first item of a list; listen lines appending, bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/control/token.h"
#include "servers/control/cli_util.h"

static bool parse(const char *list, struct ctl_token *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	err[0] = 0;
	return ctl_cli_parse_addrs(list, "--listen", t, err, errlen);
}

static void expect_addr(const struct ctl_token *t, size_t i, const char *host,
                        uint16_t port)
{
	const char *h;
	uint16_t p;

	assert_true(i < ctl_token_addr_count(t));
	ctl_token_addr_get(t, i, &h, &p);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void test_lists(void **state)
{
	struct ctl_token t;
	char err[600];

	(void)state;
	assert_true(parse("127.0.0.1:7443", &t, err, sizeof(err)));
	assert_int_equal(ctl_token_addr_count(&t), 1);
	expect_addr(&t, 0, "127.0.0.1", 7443);
	assert_true(parse("127.0.0.1:7443,[fd00::1]:7444, ctl.example:443 ", &t, err,
	                  sizeof(err)));
	assert_int_equal(ctl_token_addr_count(&t), 3);
	expect_addr(&t, 0, "127.0.0.1", 7443);
	expect_addr(&t, 1, "fd00::1", 7444);
	expect_addr(&t, 2, "ctl.example", 443);
	/* eight is the most */
	char eight[400] = "", nine[sizeof(eight) + 32];
	for (int i = 1; i <= CTL_TOKEN_ADDRS_MAX; i++) {
		size_t l = strlen(eight);
		snprintf(eight + l, sizeof(eight) - l, "%s198.18.0.%d:443",
		         i > 1 ? "," : "", i);
	}
	assert_true(parse(eight, &t, err, sizeof(err)));
	assert_int_equal(ctl_token_addr_count(&t), CTL_TOKEN_ADDRS_MAX);
	expect_addr(&t, 7, "198.18.0.8", 443);
	snprintf(nine, sizeof(nine), "%s,198.18.0.9:443", eight);
	assert_false(parse(nine, &t, err, sizeof(err)));
	assert_non_null(strstr(err, "at most 8"));
	/* the longest host */
	char longest[300];
	memset(longest, 'h', CTL_TOKEN_HOST_MAX);
	snprintf(longest + CTL_TOKEN_HOST_MAX, sizeof(longest) - CTL_TOKEN_HOST_MAX,
	         ":1,a:2");
	assert_true(parse(longest, &t, err, sizeof(err)));
	assert_int_equal(strlen(t.host), CTL_TOKEN_HOST_MAX);
	memset(longest, 'h', CTL_TOKEN_HOST_MAX + 1);
	snprintf(longest + CTL_TOKEN_HOST_MAX + 1,
	         sizeof(longest) - CTL_TOKEN_HOST_MAX - 1, ":1");
	assert_false(parse(longest, &t, err, sizeof(err)));
}

static void test_bad_items(void **state)
{
	static const struct {
		const char *list, *says;
	} bad[] = {
	    {"", "--listen : expected HOST:PORT"},
	    {",", "expected HOST:PORT"},
	    {"a:1,", "--listen : expected HOST:PORT"},
	    {"a:1,,b:2", "expected HOST:PORT"},
	    {"198.18.0.1", "--listen 198.18.0.1: expected HOST:PORT"},
	    {"a:1,198.18.0.1:0", "--listen 198.18.0.1:0: expected"},
	    {"a:65536", "expected HOST:PORT"},
	    {"a:-1", "expected HOST:PORT"},
	    {"fd00::1:7443", "expected HOST:PORT"},
	    {"a b:1", "expected HOST:PORT"},
	    {"a:1,a:1", "a:1 is listed twice"},
	    {"a:1, a:1", "is listed twice"},
	    {"[fd00::1]:1,[fd00::1]:1", "listed twice"},
	};
	struct ctl_token t;
	char err[600];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(parse(bad[i].list, &t, err, sizeof(err)));
		if (!strstr(err, bad[i].says))
			fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].list, err,
			         bad[i].says);
	}
	/* the same host on another port is another address */
	assert_true(parse("a:1,a:2", &t, err, sizeof(err)));
	/* an item longer than any address: cut in the message, not overflowed */
	char big[1200];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_false(parse(big, &t, err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
}

static void test_first_and_conf_lines(void **state)
{
	char out[CTL_TOKEN_HOST_MAX + 16], conf[CTL_CLI_ADDRS_TEXT_MAX] = "";

	(void)state;
	ctl_cli_first_addr("127.0.0.1:7443,127.0.0.1:7444", out, sizeof(out));
	assert_string_equal(out, "127.0.0.1:7443");
	ctl_cli_first_addr("127.0.0.1:7443 , b:1", out, sizeof(out));
	assert_string_equal(out, "127.0.0.1:7443");
	ctl_cli_first_addr("", out, sizeof(out));
	assert_string_equal(out, "");
	ctl_cli_first_addr("a:1", out, 3); /* cut, terminated */
	assert_string_equal(out, "a:");

	assert_true(ctl_cli_conf_listen_add(conf, sizeof(conf), "a:1"));
	assert_true(ctl_cli_conf_listen_add(conf, sizeof(conf), "b:2,c:3"));
	assert_string_equal(conf, "a:1,b:2,c:3");
	char small[8] = "";
	assert_true(ctl_cli_conf_listen_add(small, sizeof(small), "abc:1"));
	assert_false(ctl_cli_conf_listen_add(small, sizeof(small), "d:")); /* 9 */
	assert_string_equal(small, "abc:1");
	assert_true(ctl_cli_conf_listen_add(small, sizeof(small), "d")); /* 8 */
	assert_string_equal(small, "abc:1,d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_bad_items),
	    cmocka_unit_test(test_first_and_conf_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
