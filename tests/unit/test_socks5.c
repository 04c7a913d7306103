/* SOCKS5 (RFC 1928/1929) and HTTP CONNECT request parsers as pure
 * functions: complete messages, every prefix (byte-by-byte arrival),
 * trailing early data, malformed and oversized inputs, and random bytes;
 * the SOCKS5 UDP datagram header (every ATYP, truncation at each byte,
 * FRAG, unknown ATYP, oversized names) and its builder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every strict prefix of a complete message must ask for more. */
#define ASSERT_PREFIXES_MORE(call_with_len, full_len)                                    \
	do {                                                                             \
		for (size_t k_ = 0; k_ < (full_len); k_++) {                             \
			size_t len = k_;                                                 \
			if ((call_with_len) != PX_PARSE_MORE)                            \
				fail_msg("prefix of %zu bytes is not MORE", k_);         \
		}                                                                        \
	} while (0)

/* ---- greeting ---- */

static void test_greeting(void **st)
{
	struct px_socks5_greeting g;
	size_t used = 0;
	const uint8_t m[] = {5, 2, 0, 2, 0xaa}; /* + one byte of what follows */
	assert_int_equal(px_socks5_parse_greeting(m, sizeof(m), &g, &used), PX_PARSE_OK);
	assert_int_equal(used, 4);
	assert_true(g.no_auth);
	assert_true(g.userpass);
	ASSERT_PREFIXES_MORE(px_socks5_parse_greeting(m, len, &g, &used), 4);

	const uint8_t only_gssapi[] = {5, 1, 1};
	assert_int_equal(px_socks5_parse_greeting(only_gssapi, 3, &g, &used),
	                 PX_PARSE_OK);
	assert_false(g.no_auth);
	assert_false(g.userpass);

	const uint8_t v4[] = {4, 1, 0};
	assert_int_equal(px_socks5_parse_greeting(v4, 1, &g, &used), PX_PARSE_ERROR);
	const uint8_t none[] = {5, 0};
	assert_int_equal(px_socks5_parse_greeting(none, 2, &g, &used), PX_PARSE_ERROR);

	uint8_t big[2 + 255];
	big[0] = 5;
	big[1] = 255;
	memset(big + 2, 0x80, 255);
	big[256] = 0;
	assert_int_equal(px_socks5_parse_greeting(big, sizeof(big), &g, &used),
	                 PX_PARSE_OK);
	assert_int_equal(used, SOCKS5_GREETING_MAX);
	assert_true(g.no_auth);
	assert_int_equal(px_socks5_parse_greeting(big, sizeof(big) - 1, &g, &used),
	                 PX_PARSE_MORE);
}

/* ---- RFC 1929 ---- */

static void test_auth(void **st)
{
	struct px_socks5_auth a;
	size_t used = 0;
	const uint8_t m[] = {1,   5,   'a', 'l', 'i', 'c', 'e', 6,
	                     's', 'e', 'c', 'r', 'e', 't', 5};
	assert_int_equal(px_socks5_parse_auth(m, sizeof(m), &a, &used), PX_PARSE_OK);
	assert_int_equal(used, 14);
	assert_int_equal(a.ulen, 5);
	assert_string_equal(a.user, "alice");
	assert_int_equal(a.plen, 6);
	assert_string_equal(a.pass, "secret");
	ASSERT_PREFIXES_MORE(px_socks5_parse_auth(m, len, &a, &used), 14);

	const uint8_t empty[] = {1, 0, 0};
	assert_int_equal(px_socks5_parse_auth(empty, 3, &a, &used), PX_PARSE_OK);
	assert_int_equal(used, 3);
	const uint8_t badver[] = {5, 1, 'a', 1, 'b'};
	assert_int_equal(px_socks5_parse_auth(badver, sizeof(badver), &a, &used),
	                 PX_PARSE_ERROR);

	uint8_t big[SOCKS5_AUTH_MAX];
	big[0] = 1;
	big[1] = 255;
	memset(big + 2, 'u', 255);
	big[257] = 255;
	memset(big + 258, 'p', 255);
	assert_int_equal(px_socks5_parse_auth(big, sizeof(big), &a, &used), PX_PARSE_OK);
	assert_int_equal(used, SOCKS5_AUTH_MAX);
	assert_int_equal(strlen(a.user), 255);
	assert_int_equal(strlen(a.pass), 255);
	ASSERT_PREFIXES_MORE(px_socks5_parse_auth(big, len, &a, &used), sizeof(big));
}

/* ---- request ---- */

static void test_request_ipv4(void **st)
{
	const uint8_t m[] = {5, 1, 0, 1, 100, 64, 0, 1, 0x1f, 0x90, 'G', 'E', 'T'};
	struct px_target t;
	uint8_t cmd = 0, rep = 0xee;
	size_t used = 0;
	assert_int_equal(px_socks5_parse_request(m, sizeof(m), &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(used, 10); /* the early "GET" is not part of it */
	assert_int_equal(cmd, SOCKS5_CMD_CONNECT);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET);
	assert_memory_equal(t.addr.addr, "\x64\x40\x00\x01", 4);
	assert_int_equal(t.port, 8080);
	assert_string_equal(t.host, "100.64.0.1");
	char buf[64];
	px_target_format(&t, buf, sizeof(buf));
	assert_string_equal(buf, "100.64.0.1:8080");
	ASSERT_PREFIXES_MORE(px_socks5_parse_request(m, len, &cmd, &t, &used, &rep), 10);
}

static void test_request_ipv6(void **st)
{
	uint8_t m[22] = {5, 1, 0, 4};
	inet_pton(AF_INET6, "fd00::7", m + 4);
	m[20] = 0;
	m[21] = 22;
	struct px_target t;
	uint8_t cmd, rep;
	size_t used;
	assert_int_equal(px_socks5_parse_request(m, sizeof(m), &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(used, 22);
	assert_int_equal(t.addr.family, AF_INET6);
	assert_memory_equal(t.addr.addr, m + 4, 16);
	assert_int_equal(t.port, 22);
	char buf[64];
	px_target_format(&t, buf, sizeof(buf));
	assert_string_equal(buf, "[fd00::7]:22");
	ASSERT_PREFIXES_MORE(px_socks5_parse_request(m, len, &cmd, &t, &used, &rep), 22);
}

static size_t build_domain(uint8_t *m, const char *name, uint16_t port)
{
	size_t n = strlen(name);
	m[0] = 5;
	m[1] = 1;
	m[2] = 0;
	m[3] = 3;
	m[4] = (uint8_t)n;
	memcpy(m + 5, name, n);
	m[5 + n] = (uint8_t)(port >> 8);
	m[6 + n] = (uint8_t)port;
	return 7 + n;
}

static void test_request_domain(void **st)
{
	uint8_t m[300];
	struct px_target t;
	uint8_t cmd, rep;
	size_t used, n = build_domain(m, "web.mesh.example", 443);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(used, n);
	assert_true(t.is_name);
	assert_string_equal(t.host, "web.mesh.example");
	assert_int_equal(t.port, 443);
	ASSERT_PREFIXES_MORE(px_socks5_parse_request(m, len, &cmd, &t, &used, &rep), n);

	/* curl --socks5-hostname sends IP literals as names */
	n = build_domain(m, "100.77.0.1", 80);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET);
	n = build_domain(m, "fd00::1", 80);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET6);
	n = build_domain(m, "fqdn.example.", 80);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_true(t.is_name);

	/* the longest name */
	char name[256];
	for (int i = 0; i < 255; i++)
		name[i] = (i % 64 == 63) ? '.' : 'a';
	name[255] = 0;
	n = build_domain(m, name, 80);
	assert_int_equal(n, SOCKS5_REQUEST_MAX);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	assert_int_equal(rep, SOCKS5_REP_HOST_UNREACH); /* 255 > 253: not a DNS name */
	name[253] = 0;
	n = build_domain(m, name, 80);
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);

	/* names that cannot be resolved: 0x04 */
	const char *bad[] = {"a b", "a..b", ".", "x\x01y", "-"};
	for (size_t i = 0; i < 4; i++) {
		n = build_domain(m, bad[i], 80);
		assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
		                 PX_PARSE_ERROR);
		assert_int_equal(rep, SOCKS5_REP_HOST_UNREACH);
	}
	n = build_domain(m, "ok", 80);
	m[5] = 0; /* NUL inside the name */
	assert_int_equal(px_socks5_parse_request(m, n, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	const uint8_t empty[] = {5, 1, 0, 3, 0, 0, 80};
	assert_int_equal(px_socks5_parse_request(empty, 7, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	assert_int_equal(rep, SOCKS5_REP_GENERAL);
}

static void test_request_errors(void **st)
{
	struct px_target t;
	uint8_t cmd, rep;
	size_t used;
	const uint8_t badver[] = {4, 1, 0, 1};
	assert_int_equal(px_socks5_parse_request(badver, 1, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	assert_int_equal(rep, SOCKS5_REP_GENERAL);
	/* an unknown command is known after two bytes */
	const uint8_t badcmd[] = {5, 9};
	assert_int_equal(px_socks5_parse_request(badcmd, 2, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	assert_int_equal(rep, SOCKS5_REP_CMD_UNSUPPORTED);
	/* an unknown address type after four */
	const uint8_t badatyp[] = {5, 1, 0, 2};
	assert_int_equal(px_socks5_parse_request(badatyp, 4, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	assert_int_equal(rep, SOCKS5_REP_ATYP_UNSUPPORTED);
	const uint8_t port0[] = {5, 1, 0, 1, 100, 64, 0, 1, 0, 0};
	assert_int_equal(px_socks5_parse_request(port0, 10, &cmd, &t, &used, &rep),
	                 PX_PARSE_ERROR);
	/* BIND and UDP ASSOCIATE parse; the server answers 0x07 itself */
	const uint8_t bind[] = {5, 2, 0, 1, 0, 0, 0, 0, 0, 1};
	assert_int_equal(px_socks5_parse_request(bind, 10, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(cmd, SOCKS5_CMD_BIND);
	const uint8_t udp[] = {5, 3, 0, 1, 0, 0, 0, 0, 0, 1};
	assert_int_equal(px_socks5_parse_request(udp, 10, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(cmd, SOCKS5_CMD_UDP_ASSOCIATE);
	/* UDP ASSOCIATE names the client's source: 0.0.0.0:0 means "any" */
	const uint8_t udp0[] = {5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
	assert_int_equal(px_socks5_parse_request(udp0, 10, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
	assert_int_equal(t.port, 0);
	/* non-zero RSV is tolerated */
	const uint8_t rsv[] = {5, 1, 7, 1, 1, 2, 3, 4, 0, 1};
	assert_int_equal(px_socks5_parse_request(rsv, 10, &cmd, &t, &used, &rep),
	                 PX_PARSE_OK);
}

static void test_reply(void **st)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	assert_int_equal(px_socks5_reply(out, SOCKS5_REP_REFUSED, NULL), 10);
	assert_memory_equal(out, "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 10);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	s6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "fd00::2", &s6->sin6_addr);
	s6->sin6_port = htons(1080);
	assert_int_equal(px_socks5_reply(out, 0, &ss), 22);
	assert_int_equal(out[3], SOCKS5_ATYP_IPV6);
	assert_int_equal(out[20], 1080 >> 8);
	assert_int_equal(out[21], 1080 & 0xff);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	memset(&ss, 0, sizeof(ss));
	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(0x64400002);
	s4->sin_port = htons(9);
	assert_int_equal(px_socks5_reply(out, 0, &ss), 10);
	assert_memory_equal(out, "\x05\x00\x00\x01\x64\x40\x00\x02\x00\x09", 10);
}

/* Random bytes: never a crash, and OK never claims more than it was given. */
static void test_socks5_random(void **st)
{
	uint8_t buf[600];
	srand(1234);
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		if (len > 0 && rand() % 2)
			buf[0] = (iter & 1) ? 5 : 1; /* get past the version check */
		if (len > 3 && rand() % 2)
			buf[3] = (uint8_t)(1 + rand() % 4);
		struct px_socks5_greeting g;
		struct px_socks5_auth a;
		struct px_target t;
		uint8_t cmd, rep;
		size_t used = 999999;
		if (px_socks5_parse_greeting(buf, len, &g, &used) == PX_PARSE_OK)
			assert_true(used <= len && used >= 3);
		used = 999999;
		if (px_socks5_parse_auth(buf, len, &a, &used) == PX_PARSE_OK)
			assert_true(used <= len && used >= 3);
		used = 999999;
		if (px_socks5_parse_request(buf, len, &cmd, &t, &used, &rep) ==
		    PX_PARSE_OK) {
			assert_true(used <= len && used >= 10);
			assert_true(t.port != 0 || cmd == SOCKS5_CMD_UDP_ASSOCIATE);
			assert_true(strlen(t.host) < sizeof(t.host));
		}
	}
}

/* ---- UDP ASSOCIATE datagram header (RFC 1928 section 7) ---- */

static bool udp_parse(const uint8_t *p, size_t len, uint8_t *frag, struct px_target *t,
                      size_t *hl)
{
	return px_socks5_udp_parse(p, len, frag, t, hl);
}

/* A whole header parses; every truncation of it is refused. */
static void assert_udp_truncations_fail(const uint8_t *m, size_t hdr_len)
{
	struct px_target t;
	uint8_t frag;
	size_t hl;
	for (size_t k = 0; k < hdr_len; k++)
		if (udp_parse(m, k, &frag, &t, &hl))
			fail_msg("header cut at %zu of %zu bytes parsed", k, hdr_len);
}

static void test_udp_header_ipv4(void **st)
{
	const uint8_t m[] = {0, 0, 0, 1, 100, 64, 0, 7, 0, 53, 'q', 'r', 'y'};
	struct px_target t;
	uint8_t frag = 0xee;
	size_t hl = 0;
	assert_true(udp_parse(m, sizeof(m), &frag, &t, &hl));
	assert_int_equal(frag, 0);
	assert_int_equal(hl, SOCKS5_UDP_HDR_IPV4);
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET);
	assert_memory_equal(t.addr.addr, "\x64\x40\x00\x07", 4);
	assert_int_equal(t.port, 53);
	assert_string_equal(t.host, "100.64.0.7");
	assert_udp_truncations_fail(m, hl);
	/* an empty payload is a valid datagram */
	assert_true(udp_parse(m, hl, &frag, &t, &hl));
	/* RSV is not checked (clients are known to put junk there) */
	const uint8_t rsv[] = {0xff, 0xff, 0, 1, 100, 64, 0, 7, 0, 53};
	assert_true(udp_parse(rsv, sizeof(rsv), &frag, &t, &hl));
}

static void test_udp_header_ipv6(void **st)
{
	uint8_t m[SOCKS5_UDP_HDR_IPV6 + 2] = {0, 0, 0, 4};
	inet_pton(AF_INET6, "fd7a:115c:a1e0::9", m + 4);
	m[20] = 0x13;
	m[21] = 0x88; /* 5000 */
	m[22] = 'h', m[23] = 'i';
	struct px_target t;
	uint8_t frag;
	size_t hl;
	assert_true(udp_parse(m, sizeof(m), &frag, &t, &hl));
	assert_int_equal(hl, SOCKS5_UDP_HDR_IPV6);
	assert_int_equal(t.addr.family, AF_INET6);
	assert_memory_equal(t.addr.addr, m + 4, 16);
	assert_int_equal(t.port, 5000);
	assert_string_equal(t.host, "fd7a:115c:a1e0::9");
	assert_udp_truncations_fail(m, hl);
}

static size_t udp_domain(uint8_t *m, const char *name, size_t n, uint16_t port)
{
	m[0] = m[1] = m[2] = 0;
	m[3] = SOCKS5_ATYP_DOMAIN;
	m[4] = (uint8_t)n;
	memcpy(m + 5, name, n);
	m[5 + n] = (uint8_t)(port >> 8);
	m[6 + n] = (uint8_t)port;
	return 7 + n;
}

static void test_udp_header_domain(void **st)
{
	uint8_t m[SOCKS5_UDP_HDR_MAX + 16];
	struct px_target t;
	uint8_t frag;
	size_t hl, n = udp_domain(m, "dns.mesh", 8, 53);
	memcpy(m + n, "payload", 7);
	assert_true(udp_parse(m, n + 7, &frag, &t, &hl));
	assert_int_equal(hl, n);
	assert_true(t.is_name);
	assert_string_equal(t.host, "dns.mesh");
	assert_int_equal(t.port, 53);
	assert_udp_truncations_fail(m, n);
	/* IP literals written as names come back as addresses */
	n = udp_domain(m, "100.65.2.3", 10, 9);
	assert_true(udp_parse(m, n, &frag, &t, &hl));
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET);
	n = udp_domain(m, "::1", 3, 9);
	assert_true(udp_parse(m, n, &frag, &t, &hl));
	assert_int_equal(t.addr.family, AF_INET6);
	/* the longest name the length byte allows, but not a DNS name (> 253) */
	char name[255];
	for (int i = 0; i < 255; i++)
		name[i] = (i % 64 == 63) ? '.' : 'a';
	n = udp_domain(m, name, 255, 53);
	assert_int_equal(n, SOCKS5_UDP_HDR_MAX);
	assert_false(udp_parse(m, n + 4, &frag, &t, &hl));
	n = udp_domain(m, name, 253, 53);
	assert_true(udp_parse(m, n, &frag, &t, &hl));
	assert_int_equal(strlen(t.host), 253);
	/* a length byte that promises more than the datagram holds */
	n = udp_domain(m, "abc", 3, 53);
	m[4] = 200;
	assert_false(udp_parse(m, n, &frag, &t, &hl));
	/* empty, NUL inside, not a host name */
	n = udp_domain(m, "", 0, 53);
	assert_false(udp_parse(m, n, &frag, &t, &hl));
	n = udp_domain(m, "a\0b", 3, 53);
	assert_false(udp_parse(m, n, &frag, &t, &hl));
	n = udp_domain(m, "a b", 3, 53);
	assert_false(udp_parse(m, n, &frag, &t, &hl));
}

static void test_udp_header_errors(void **st)
{
	struct px_target t;
	uint8_t frag = 0;
	size_t hl;
	/* FRAG is reported; the relay drops anything but 0 */
	const uint8_t fr[] = {0, 0, 3, 1, 100, 64, 0, 7, 0, 53, 'x'};
	assert_true(udp_parse(fr, sizeof(fr), &frag, &t, &hl));
	assert_int_equal(frag, 3);
	/* unknown address types */
	for (int atyp = 0; atyp < 256; atyp++) {
		if (atyp == 1 || atyp == 3 || atyp == 4)
			continue;
		uint8_t m[32] = {0, 0, 0, (uint8_t)atyp, 100, 64, 0, 7, 0, 53};
		assert_false(udp_parse(m, sizeof(m), &frag, &t, &hl));
	}
	/* port 0 */
	const uint8_t p0[] = {0, 0, 0, 1, 100, 64, 0, 7, 0, 0, 'x'};
	assert_false(udp_parse(p0, sizeof(p0), &frag, &t, &hl));
	assert_false(udp_parse(NULL, 0, &frag, &t, &hl));
}

static void test_udp_header_build(void **st)
{
	uint8_t out[SOCKS5_UDP_HDR_IPV6];
	struct ns_addr a = {.family = AF_INET, .addr = {192, 0, 2, 1}};
	assert_int_equal(px_socks5_udp_header(out, &a, 53), SOCKS5_UDP_HDR_IPV4);
	assert_memory_equal(out, "\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x35", 10);
	struct px_target t;
	uint8_t frag;
	size_t hl;
	assert_true(udp_parse(out, 10, &frag, &t, &hl));
	assert_int_equal(t.port, 53);
	assert_memory_equal(t.addr.addr, a.addr, 4);
	a.family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::5", a.addr);
	assert_int_equal(px_socks5_udp_header(out, &a, 65535), SOCKS5_UDP_HDR_IPV6);
	assert_true(udp_parse(out, sizeof(out), &frag, &t, &hl));
	assert_int_equal(hl, SOCKS5_UDP_HDR_IPV6);
	assert_int_equal(frag, 0);
	assert_int_equal(t.addr.family, AF_INET6);
	assert_memory_equal(t.addr.addr, a.addr, 16);
	assert_int_equal(t.port, 65535);
}

/* Random datagrams: never a crash; a header never claims more than it got. */
static void test_udp_header_random(void **st)
{
	uint8_t buf[300];
	srand(4321);
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		if (len > 3 && rand() % 2)
			buf[3] = (uint8_t)(1 + rand() % 4);
		if (len > 4 && buf[3] == 3 && rand() % 2)
			buf[4] = (uint8_t)(rand() % 16);
		struct px_target t;
		uint8_t frag;
		size_t hl = 999999;
		if (udp_parse(buf, len, &frag, &t, &hl)) {
			assert_true(hl <= len && hl >= 8 && /* one-letter name */
			            hl <= SOCKS5_UDP_HDR_MAX);
			assert_true(t.port != 0);
			assert_true(strlen(t.host) < sizeof(t.host));
		}
	}
}

/* ---- HTTP CONNECT ---- */

static enum px_parse http(const char *s, struct px_http_request *r, size_t *used,
                          int *status)
{
	return px_http_parse_request((const uint8_t *)s, strlen(s), r, used, status);
}

static void test_http_connect(void **st)
{
	const char *m = "CONNECT web.mesh.example:443 HTTP/1.1\r\n"
	                "Host: web.mesh.example:443\r\n"
	                "User-Agent: curl/7.88.1\r\n"
	                "Proxy-Connection: Keep-Alive\r\n"
	                "\r\n"
	                "\x16\x03\x01"; /* an early TLS ClientHello */
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	assert_int_equal(http(m, &r, &used, &status), PX_PARSE_OK);
	assert_int_equal(used, strlen(m) - 3);
	assert_int_equal(status, 200);
	assert_true(r.target.is_name);
	assert_string_equal(r.target.host, "web.mesh.example");
	assert_int_equal(r.target.port, 443);
	assert_null(r.auth);
	size_t head = strlen(m) - 3;
	ASSERT_PREFIXES_MORE(
	    px_http_parse_request((const uint8_t *)m, len, &r, &used, &status), head);

	assert_int_equal(http("CONNECT 100.64.0.1:22 HTTP/1.0\n\n", &r, &used, &status),
	                 PX_PARSE_OK);
	assert_false(r.target.is_name);
	assert_int_equal(r.target.addr.family, AF_INET);
	assert_int_equal(used, 32);
	assert_int_equal(
	    http("\r\nCONNECT [fd00::1]:8443 HTTP/1.1\r\n\r\n", &r, &used, &status),
	    PX_PARSE_OK);
	assert_int_equal(r.target.addr.family, AF_INET6);
	assert_int_equal(r.target.port, 8443);
}

static void expect_http_status(const char *m, int want)
{
	struct px_http_request r;
	size_t used;
	int status = 0;
	enum px_parse p = http(m, &r, &used, &status);
	if (p != PX_PARSE_ERROR || status != want)
		fail_msg("\"%s\": want error %d, got %d/%d", m, want, p, status);
}

static void test_http_errors(void **st)
{
	expect_http_status(
	    "TRACE http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 501);
	expect_http_status("connect a:1 HTTP/1.1\r\n\r\n",
	                   501); /* methods are case-sensitive */
	expect_http_status("CONNECT a:1 HTTP/2.0\r\n\r\n", 505);
	expect_http_status("CONNECT a:1 HTTP/1.1x\r\n\r\n", 400);
	expect_http_status("CONNECT a:1 HTTP/1.1 \r\n\r\n", 400);
	expect_http_status("CONNECT a:1\r\n\r\n", 400);
	expect_http_status("CONNECT  a:1 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a: HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a:0 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a:65536 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a:+80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT :80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT fd00::1:80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT [100.64.0.1]:80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT [fd00::1]80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a_b c:80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT http://a:80 HTTP/1.1\r\n\r\n", 400);
	expect_http_status("CONNECT a:80 HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	expect_http_status("CONNECT a:80 HTTP/1.1\r\nHost : a\r\n\r\n", 400);
	expect_http_status("CONNECT a:80 HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400);
	expect_http_status("CONNECT a:80 HTTP/1.1\r\nX: a\x01\r\n\r\n", 400);
	expect_http_status("CONNECT a:80 HTTP/1.1\r\nProxy-Authorization: a\r\n"
	                   "proxy-authorization: b\r\n\r\n",
	                   400);
	expect_http_status("\x16\x03\x01\x02\x01\x01\xfc\x03\x03\n", 400); /* binary */
	/* NUL inside a line */
	struct px_http_request r;
	size_t used;
	int status;
	const uint8_t nul[] = "CONNECT a:1 HTTP/1.1\r\nX: \0\r\n\r\n";
	assert_int_equal(px_http_parse_request(nul, sizeof(nul) - 1, &r, &used, &status),
	                 PX_PARSE_ERROR);
	assert_int_equal(status, 400);
}

static void test_http_size_limit(void **st)
{
	char *m = malloc(PX_HTTP_MAX_HEADER + 100);
	struct px_http_request r;
	size_t used;
	int status;
	/* a head of exactly the limit is fine */
	size_t n = (size_t)sprintf(m, "CONNECT a:1 HTTP/1.1\r\nX-Pad: ");
	size_t pad = PX_HTTP_MAX_HEADER - n - 4;
	memset(m + n, 'x', pad);
	memcpy(m + n + pad, "\r\n\r\n", 5);
	assert_int_equal(strlen(m), PX_HTTP_MAX_HEADER);
	assert_int_equal(http(m, &r, &used, &status), PX_PARSE_OK);
	assert_int_equal(used, PX_HTTP_MAX_HEADER);
	/* one byte more is 431, as is a limit's worth of bytes without an end */
	memset(m + n, 'x', pad + 1);
	memcpy(m + n + pad + 1, "\r\n\r\n", 5);
	expect_http_status(m, 431);
	memset(m, 'A', PX_HTTP_MAX_HEADER);
	m[PX_HTTP_MAX_HEADER] = 0;
	expect_http_status(m, 431);
	m[PX_HTTP_MAX_HEADER - 1] = 0;
	assert_int_equal(http(m, &r, &used, &status), PX_PARSE_MORE);
	free(m);
}

static void test_http_auth(void **st)
{
	struct px_http_request r;
	size_t used;
	int status;
	/* alice:secret */
	assert_int_equal(http("CONNECT a:1 HTTP/1.1\r\nProxy-Authorization:  Basic "
	                      "YWxpY2U6c2VjcmV0 \r\n\r\n",
	                      &r, &used, &status),
	                 PX_PARSE_OK);
	assert_non_null(r.auth);
	assert_int_equal(r.auth_len, strlen("Basic YWxpY2U6c2VjcmV0"));
	assert_true(px_http_auth_ok(r.auth, r.auth_len, "alice", "secret"));
	assert_false(px_http_auth_ok(r.auth, r.auth_len, "alice", "secreT"));
	assert_false(px_http_auth_ok(r.auth, r.auth_len, "alic", "esecret"));
	assert_false(px_http_auth_ok(r.auth, r.auth_len, "alice", "secret2"));
	const char *v = "basic YWxpY2U6c2VjcmV0";
	assert_true(px_http_auth_ok((const uint8_t *)v, strlen(v), "alice", "secret"));
	v = "Bearer YWxpY2U6c2VjcmV0";
	assert_false(px_http_auth_ok((const uint8_t *)v, strlen(v), "alice", "secret"));
	v = "Basic YWxpY2U6c2VjcmV0!";
	assert_false(px_http_auth_ok((const uint8_t *)v, strlen(v), "alice", "secret"));
	v = "Basic ";
	assert_false(px_http_auth_ok((const uint8_t *)v, strlen(v), "alice", "secret"));
	assert_false(px_http_auth_ok(NULL, 0, "alice", "secret"));
	/* a password with ':' in it: only the first ':' separates */
	v = "Basic dTpwOnE="; /* u:p:q */
	assert_true(px_http_auth_ok((const uint8_t *)v, strlen(v), "u", "p:q"));
}

static void test_http_responses(void **st)
{
	char out[256];
	size_t n = px_http_response(out, sizeof(out), 200);
	assert_int_equal(n, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
	assert_string_equal(out, "HTTP/1.1 200 Connection established\r\n\r\n");
	n = px_http_response(out, sizeof(out), 407);
	assert_non_null(strstr(out, "HTTP/1.1 407 Proxy Authentication Required\r\n"));
	assert_non_null(
	    strstr(out, "\r\nProxy-Authenticate: Basic realm=\"meshproxy\"\r\n"));
	assert_int_equal(n, strlen(out));
	assert_string_equal(out + n - 4, "\r\n\r\n");
	int codes[] = {400, 431, 501, 502, 504, 505};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		px_http_response(out, sizeof(out), codes[i]);
		char want[16];
		snprintf(want, sizeof(want), "HTTP/1.1 %d ", codes[i]);
		assert_memory_equal(out, want, strlen(want));
		assert_non_null(strstr(out, "Connection: close\r\n\r\n"));
	}
}

static void test_http_random(void **st)
{
	static const char *pieces[] = {"CONNECT ",
	                               "a:1",
	                               " HTTP/1.1",
	                               "\r\n",
	                               "\n",
	                               "X: y",
	                               "[",
	                               "]",
	                               ":",
	                               " ",
	                               "Proxy-Authorization: Basic x"};
	char buf[512];
	srand(99);
	for (int iter = 0; iter < 100000; iter++) {
		size_t len = 0;
		int k = rand() % 12;
		for (int i = 0; i < k; i++) {
			const char *p = pieces[rand() % 11];
			size_t pl = strlen(p);
			if (len + pl >= sizeof(buf))
				break;
			memcpy(buf + len, p, pl);
			len += pl;
		}
		if (rand() % 4 == 0 && len > 0)
			buf[rand() % len] = (char)rand();
		struct px_http_request r;
		size_t used = 999999;
		int status = 0;
		enum px_parse p =
		    px_http_parse_request((uint8_t *)buf, len, &r, &used, &status);
		if (p == PX_PARSE_OK) {
			assert_true(used <= len);
			assert_true(r.target.port != 0);
			if (r.auth)
				assert_true(r.auth >= (uint8_t *)buf &&
				            r.auth + r.auth_len <= (uint8_t *)buf + len);
		} else if (p == PX_PARSE_ERROR) {
			assert_true(status == 400 || status == 431 || status == 501 ||
			            status == 505);
		}
	}
}

static void test_target(void **st)
{
	struct px_target t;
	assert_true(px_target_set(&t, "example.com", 11, 80));
	assert_true(t.is_name);
	assert_true(px_target_set(&t, "::ffff:1.2.3.4", 14, 80));
	assert_false(t.is_name);
	assert_int_equal(t.addr.family, AF_INET6);
	assert_false(px_target_set(&t, "", 0, 80));
	assert_false(px_target_set(&t, "a b", 3, 80));
	assert_false(px_target_set(&t, "a/b", 3, 80));
	char label64[80];
	memset(label64, 'a', 64);
	assert_false(px_target_set(&t, label64, 64, 80));
	assert_true(px_target_set(&t, label64, 63, 80));
	assert_int_equal(px_err_from_errno(-111), PX_E_REFUSED);
	assert_int_equal(px_err_from_errno(-110), PX_E_TIMEOUT);
	assert_int_equal(px_err_from_errno(-113), PX_E_UNREACHABLE);
	assert_int_equal(px_err_from_errno(-12), PX_E_GENERAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_greeting),
	    cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_request_ipv4),
	    cmocka_unit_test(test_request_ipv6),
	    cmocka_unit_test(test_request_domain),
	    cmocka_unit_test(test_request_errors),
	    cmocka_unit_test(test_reply),
	    cmocka_unit_test(test_socks5_random),
	    cmocka_unit_test(test_udp_header_ipv4),
	    cmocka_unit_test(test_udp_header_ipv6),
	    cmocka_unit_test(test_udp_header_domain),
	    cmocka_unit_test(test_udp_header_errors),
	    cmocka_unit_test(test_udp_header_build),
	    cmocka_unit_test(test_udp_header_random),
	    cmocka_unit_test(test_http_connect),
	    cmocka_unit_test(test_http_errors),
	    cmocka_unit_test(test_http_size_limit),
	    cmocka_unit_test(test_http_auth),
	    cmocka_unit_test(test_http_responses),
	    cmocka_unit_test(test_http_random),
	    cmocka_unit_test(test_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
