/* SOCKS4 and SOCKS4a request parser and reply as pure functions: complete
 * requests, every prefix (byte-by-byte arrival), early data behind the
 * request, bounds on user id and name, malformed input, random bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/proto/proto.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static enum px_parse s4(const void *m, size_t len, uint8_t *cmd, struct px_target *t,
                        size_t *used)
{
	return px_socks4_parse_request(m, len, cmd, t, used);
}

/* Every strict prefix of m[0..full) must be MORE. */
static void assert_prefixes_more(const uint8_t *m, size_t full)
{
	struct px_target t;
	uint8_t cmd;
	size_t used;
	for (size_t k = 0; k < full; k++)
		if (s4(m, k, &cmd, &t, &used) != PX_PARSE_MORE)
			fail_msg("prefix of %zu bytes is not MORE", k);
}

static void test_socks4_ipv4(void **st)
{
	/* CONNECT 100.77.0.2:8080, user id "bob", then early data. */
	const uint8_t m[] = {4, 1, 0x1f, 0x90, 100, 77, 0, 2, 'b', 'o', 'b', 0, 'G', 'E'};
	struct px_target t;
	uint8_t cmd = 0;
	size_t used = 0;
	assert_int_equal(s4(m, sizeof(m), &cmd, &t, &used), PX_PARSE_OK);
	assert_int_equal(used, 12);
	assert_int_equal(cmd, SOCKS4_CMD_CONNECT);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET);
	assert_int_equal(t.port, 8080);
	assert_string_equal(t.host, "100.77.0.2");
	assert_prefixes_more(m, 12);
	/* An empty user id is what curl sends. */
	const uint8_t e[] = {4, 1, 0, 80, 1, 2, 3, 4, 0};
	assert_int_equal(s4(e, sizeof(e), &cmd, &t, &used), PX_PARSE_OK);
	assert_int_equal(used, 9);
	/* BIND parses; the server refuses it. */
	const uint8_t b[] = {4, 2, 0, 80, 1, 2, 3, 4, 0};
	assert_int_equal(s4(b, sizeof(b), &cmd, &t, &used), PX_PARSE_OK);
	assert_int_equal(cmd, SOCKS4_CMD_BIND);
}

static void test_socks4a_name(void **st)
{
	const uint8_t m[] = {4,   1,   0,   80,  0,   0,   0,   1,   'u', 0,
	                     'w', 'e', 'b', '.', 'm', 'e', 's', 'h', 0,   'X'};
	struct px_target t;
	uint8_t cmd = 0;
	size_t used = 0;
	assert_int_equal(s4(m, sizeof(m), &cmd, &t, &used), PX_PARSE_OK);
	assert_int_equal(used, sizeof(m) - 1);
	assert_true(t.is_name);
	assert_string_equal(t.host, "web.mesh");
	assert_int_equal(t.port, 80);
	assert_prefixes_more(m, sizeof(m) - 1);
	/* An address written as a name comes back as an address. */
	const uint8_t a[] = {4,   1,   0,   80,  0,   0,   0,   9, 0,
	                     'f', 'd', '0', '0', ':', ':', '2', 0};
	assert_int_equal(s4(a, sizeof(a), &cmd, &t, &used), PX_PARSE_OK);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET6);
}

static void expect_error(const uint8_t *m, size_t len)
{
	struct px_target t;
	uint8_t cmd;
	size_t used;
	if (s4(m, len, &cmd, &t, &used) != PX_PARSE_ERROR)
		fail_msg("not an error");
}

static void test_socks4_errors(void **st)
{
	const uint8_t v5[] = {5, 1, 0, 80, 1, 2, 3, 4, 0};
	expect_error(v5, sizeof(v5));
	expect_error(v5, 1); /* known from the first byte */
	const uint8_t cmd3[] = {4, 3, 0, 80, 1, 2, 3, 4, 0};
	expect_error(cmd3, 2);
	const uint8_t port0[] = {4, 1, 0, 0, 1, 2, 3, 4, 0};
	expect_error(port0, 8);
	const uint8_t ip0[] = {4, 1, 0, 80, 0, 0, 0, 0, 0};
	expect_error(ip0, 8);
	const uint8_t noname[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 0};
	expect_error(noname, sizeof(noname));
	const uint8_t badname[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', ' ', 'b', 0};
	expect_error(badname, sizeof(badname));
}

static void test_socks4_bounds(void **st)
{
	uint8_t m[SOCKS4_REQUEST_MAX + 16];
	struct px_target t;
	uint8_t cmd;
	size_t used;
	const uint8_t hdr[] = {4, 1, 0, 80, 1, 2, 3, 4};
	memcpy(m, hdr, 8);
	/* A 255-byte user id is fine, 256 bytes without a NUL is not. */
	memset(m + 8, 'u', SOCKS4_ID_MAX);
	assert_int_equal(s4(m, 8 + SOCKS4_ID_MAX, &cmd, &t, &used), PX_PARSE_MORE);
	m[8 + SOCKS4_ID_MAX] = 0;
	assert_int_equal(s4(m, 9 + SOCKS4_ID_MAX, &cmd, &t, &used), PX_PARSE_OK);
	m[8 + SOCKS4_ID_MAX] = 'u';
	assert_int_equal(s4(m, 9 + SOCKS4_ID_MAX, &cmd, &t, &used), PX_PARSE_ERROR);
	/* SOCKS4a: the name has the same bound (and a 253-byte DNS limit). */
	m[7] = 1;
	m[4] = m[5] = m[6] = 0;
	m[8 + SOCKS4_ID_MAX] = 0;
	size_t n0 = 9 + SOCKS4_ID_MAX;
	memset(m + n0, 'a', SOCKS4_NAME_MAX + 1);
	assert_int_equal(s4(m, n0 + SOCKS4_NAME_MAX, &cmd, &t, &used), PX_PARSE_MORE);
	assert_int_equal(s4(m, n0 + SOCKS4_NAME_MAX + 1, &cmd, &t, &used),
	                 PX_PARSE_ERROR);
	/* The longest request that parses fits SOCKS4_REQUEST_MAX. */
	const char *name = "a.example";
	memcpy(m + n0, name, strlen(name) + 1);
	assert_int_equal(s4(m, sizeof(m), &cmd, &t, &used), PX_PARSE_OK);
	assert_true(used <= SOCKS4_REQUEST_MAX);
}

static void test_socks4_reply(void **st)
{
	uint8_t out[SOCKS4_REPLY_LEN];
	assert_int_equal(px_socks4_reply(out, SOCKS4_REP_GRANTED), 8);
	const uint8_t want[8] = {0, 90, 0, 0, 0, 0, 0, 0};
	assert_memory_equal(out, want, 8);
	px_socks4_reply(out, SOCKS4_REP_REJECTED);
	assert_int_equal(out[1], 91);
}

static void test_socks4_random(void **st)
{
	uint8_t buf[600];
	srand(4);
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(rand() % 4 == 0 ? 0
			                   : rand() % 8    ? 'a' + rand() % 3
			                                   : rand());
		if (len > 0)
			buf[0] = 4;
		if (len > 1)
			buf[1] = 1;
		if (len > 4 && rand() % 2)
			buf[4] = buf[5] = buf[6] = 0;
		struct px_target t;
		uint8_t cmd;
		size_t used = 99999;
		enum px_parse r = s4(buf, len, &cmd, &t, &used);
		if (r == PX_PARSE_OK) {
			assert_true(used <= len && used <= SOCKS4_REQUEST_MAX);
			assert_true(t.port != 0);
			assert_non_null(memchr(t.host, 0, sizeof(t.host)));
			assert_int_equal(s4(buf, used - 1, &cmd, &t, &used),
			                 PX_PARSE_MORE);
		} else if (r == PX_PARSE_MORE) {
			assert_true(len < SOCKS4_REQUEST_MAX);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socks4_ipv4),   cmocka_unit_test(test_socks4a_name),
	    cmocka_unit_test(test_socks4_errors), cmocka_unit_test(test_socks4_bounds),
	    cmocka_unit_test(test_socks4_reply),  cmocka_unit_test(test_socks4_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
