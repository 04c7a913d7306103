/* STUN codec against the four RFC 5769 test vectors (section 2.1 pads with
 * spaces, not zeros; their MESSAGE-INTEGRITY checked here with libcrypto's
 * HMAC-SHA1, which the codec itself does not carry), CRC-32, and our own
 * request/response round trips, plus hostile inputs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/stun/stun.h"

/* m's MESSAGE-INTEGRITY against key (short-term: the password; long-term:
 * MD5(user:realm:password)): HMAC-SHA1 over the message up to the
 * attribute, with the header's length as if it ended right after it. */
static bool stun_check_integrity(const uint8_t *p, size_t len, const struct stun_msg *m,
                                 const uint8_t *key, size_t keylen)
{
	if (!m->has_integrity || m->integrity_off + 4 + STUN_INTEGRITY_LEN > len)
		return false;
	uint8_t buf[1500];
	memcpy(buf, p, m->integrity_off);
	size_t body = m->integrity_off + 4 + STUN_INTEGRITY_LEN - STUN_HDR_LEN;
	buf[2] = (uint8_t)(body >> 8);
	buf[3] = (uint8_t)body;
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned ml = 0;
	if (!HMAC(EVP_sha1(), key, (int)keylen, buf, m->integrity_off, mac, &ml) ||
	    ml != STUN_INTEGRITY_LEN)
		return false;
	return memcmp(mac, p + m->integrity_off + 4, STUN_INTEGRITY_LEN) == 0;
}

static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
	size_t n = strlen(hex) / 2;
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static const char pw[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* RFC 5769 2.1: request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
 * MESSAGE-INTEGRITY, FINGERPRINT; SOFTWARE and USERNAME pad with 0x20. */
static const char v21[] = "000100582112a442b7e7a701bc34d686fa87dfae"
                          "80220010"
                          "5354554e207465737420636c69656e74"
                          "00240004"
                          "6e0001ff"
                          "80290008"
                          "932ff9b151263b36"
                          "00060009"
                          "6576746a3a68367659202020"
                          "00080014"
                          "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
                          "80280004"
                          "e57a3bcf";
/* 2.2: IPv4 response, 192.0.2.1:32853. */
static const char v22[] = "0101003c2112a442b7e7a701bc34d686fa87dfae"
                          "8022000b"
                          "7465737420766563746f7220"
                          "00200008"
                          "0001a147e112a643"
                          "00080014"
                          "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"
                          "80280004"
                          "c07d4c96";
/* 2.3: IPv6 response, [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const char v23[] = "010100482112a442b7e7a701bc34d686fa87dfae"
                          "8022000b"
                          "7465737420766563746f7220"
                          "00200014"
                          "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
                          "00080014"
                          "a382954e4be67bf11784c97c8292c275bfe3ed41"
                          "80280004"
                          "c8fb0b4c";
/* 2.4: long-term credentials, no FINGERPRINT. */
static const char v24[] = "000100602112a44278ad3433c6ad72c029da412e"
                          "00060012"
                          "e3839ee38388e383aae38383e382afe382b90000"
                          "0015001c"
                          "662f2f3439396b39353464364f4c33346f4c394653547679363473"
                          "41"
                          "0014000b"
                          "6578616d706c652e6f726700"
                          "00080014"
                          "f67024656dd64a3e02b8e0712e85c9a28ca89666";

static void rfc5769_request(void **state)
{
	uint8_t p[256];
	size_t n = unhex(p, sizeof p, v21);
	struct stun_msg m;
	assert_int_equal(stun_parse(p, n, &m), 0);
	assert_int_equal(m.type, STUN_BINDING_REQUEST);
	assert_false(m.classic);
	assert_true(m.has_fingerprint);
	assert_true(m.fingerprint_ok);
	assert_true(m.has_integrity);
	assert_true(stun_check_integrity(p, n, &m, (const uint8_t *)pw, strlen(pw)));
	assert_false(stun_check_integrity(p, n, &m, (const uint8_t *)"wrong", 5));
	assert_int_equal(m.software_len, 16);
	assert_memory_equal(m.software, "STUN test client", 16);
	assert_int_equal(m.username_len, 9);
	assert_memory_equal(m.username, "evtj:h6vY", 9);
	assert_int_equal(m.unknown_required,
	                 0); /* PRIORITY is known, ICE-CONTROLLED optional */
	/* The padding is spaces; a zero-requiring parser would fail here. */
	assert_int_equal(p[20 + 4 + 16 + 8 + 12 + 4 + 9], 0x20);
	/* One flipped bit in the body breaks both checks. */
	p[30] ^= 1;
	assert_int_equal(stun_parse(p, n, &m), 0);
	assert_false(m.fingerprint_ok);
	assert_false(stun_check_integrity(p, n, &m, (const uint8_t *)pw, strlen(pw)));
}

static void rfc5769_ipv4_response(void **state)
{
	uint8_t p[256];
	size_t n = unhex(p, sizeof p, v22);
	struct stun_msg m;
	assert_int_equal(stun_parse(p, n, &m), 0);
	assert_int_equal(m.type, STUN_BINDING_SUCCESS);
	assert_true(m.fingerprint_ok);
	assert_true(stun_check_integrity(p, n, &m, (const uint8_t *)pw, strlen(pw)));
	assert_true(m.has_mapped && m.mapped_xor);
	assert_int_equal(m.mapped.family, 4);
	assert_int_equal(m.mapped.port, 32853);
	const uint8_t want[4] = {192, 0, 2, 1};
	assert_memory_equal(m.mapped.addr, want, 4);
	assert_int_equal(m.software_len, 11);
	assert_memory_equal(m.software, "test vector", 11);
}

static void rfc5769_ipv6_response(void **state)
{
	uint8_t p[256];
	size_t n = unhex(p, sizeof p, v23);
	struct stun_msg m;
	assert_int_equal(stun_parse(p, n, &m), 0);
	assert_true(m.fingerprint_ok);
	assert_true(stun_check_integrity(p, n, &m, (const uint8_t *)pw, strlen(pw)));
	assert_int_equal(m.mapped.family, 6);
	assert_int_equal(m.mapped.port, 32853);
	uint8_t want[16];
	unhex(want, 16, "20010db8123456780011223344556677");
	assert_memory_equal(m.mapped.addr, want, 16);
}

static void rfc5769_long_term(void **state)
{
	uint8_t p[256];
	size_t n = unhex(p, sizeof p, v24);
	struct stun_msg m;
	assert_int_equal(stun_parse(p, n, &m), 0);
	assert_false(m.has_fingerprint);
	assert_int_equal(m.realm_len, 11);
	assert_memory_equal(m.realm, "example.org", 11);
	assert_int_equal(m.nonce_len, 28);
	assert_memory_equal(m.nonce, "f//499k954d6OL34oL9FSTvy64sA", 28);
	assert_int_equal(m.username_len, 18);
	/* key = MD5("マトリックス:example.org:TheMatrIX") (the password after
	 * SASLprep), computed with Python's hashlib.md5. */
	uint8_t real[16];
	unhex(real, sizeof real, "e8ca7ad59d5eb0518e312911d2dab2a9");
	assert_true(stun_check_integrity(p, n, &m, real, 16));
	real[0] ^= 1;
	assert_false(stun_check_integrity(p, n, &m, real, 16));
}

static void crc32_check(void **state)
{
	assert_int_equal(stun_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
}

static void request_response_round_trip(void **state)
{
	uint8_t txid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	uint8_t req[128], resp[128];
	size_t n = stun_binding_request(req, sizeof req, txid, "meshproxy");
	assert_true(n > STUN_HDR_LEN);
	assert_true(stun_is_message(req, n));
	struct stun_msg m, r;
	assert_int_equal(stun_parse(req, n, &m), 0);
	assert_true(m.fingerprint_ok);
	assert_int_equal(m.type, STUN_BINDING_REQUEST);
	assert_memory_equal(m.id + 4, txid, 12);
	struct stun_addr a = {.family = 4, .port = 40000, .addr = {198, 18, 0, 7}};
	size_t rn = stun_binding_response(resp, sizeof resp, &m, &a, "mesh-relay");
	assert_true(rn > 0);
	assert_int_equal(stun_parse(resp, rn, &r), 0);
	assert_true(r.fingerprint_ok && r.mapped_xor);
	assert_int_equal(r.mapped.port, 40000);
	assert_memory_equal(r.mapped.addr, a.addr, 4);
	/* IPv6 */
	struct stun_addr a6 = {
	    .family = 6, .port = 1, .addr = {0x20, 0x01, 0x0d, 0xb8, 9}};
	rn = stun_binding_response(resp, sizeof resp, &m, &a6, NULL);
	assert_int_equal(stun_parse(resp, rn, &r), 0);
	assert_int_equal(r.mapped.family, 6);
	assert_memory_equal(r.mapped.addr, a6.addr, 16);
	/* Too small a buffer: 0, never an overflow. */
	for (size_t cap = 0; cap < rn; cap++)
		assert_int_equal(stun_binding_response(resp, cap, &m, &a6, NULL), 0);
}

static void classic_request(void **state)
{
	/* RFC 3489: no cookie, 16-byte id, answered with MAPPED-ADDRESS. */
	uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef};
	struct stun_msg m, r;
	assert_false(stun_is_message(req, 20));
	assert_int_equal(stun_parse(req, 20, &m), 0);
	assert_true(m.classic);
	struct stun_addr a = {.family = 4, .port = 5555, .addr = {100, 64, 1, 2}};
	uint8_t resp[64];
	size_t rn = stun_binding_response(resp, sizeof resp, &m, &a, NULL);
	assert_int_equal(stun_parse(resp, rn, &r), 0);
	assert_true(r.has_mapped);
	assert_false(r.mapped_xor);
	assert_int_equal(r.mapped.port, 5555);
	assert_memory_equal(resp + 4, req + 4, 16);
}

static void hostile(void **state)
{
	uint8_t p[256];
	size_t n = unhex(p, sizeof p, v22);
	struct stun_msg m;
	/* every truncation is refused cleanly */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(stun_parse(p, k, &m), -EBADMSG);
	/* header length too long / not a multiple of 4 */
	p[3] += 4;
	assert_int_equal(stun_parse(p, n, &m), -EBADMSG);
	p[3] -= 3;
	assert_int_equal(stun_parse(p, n, &m), -EBADMSG);
	p[3] -= 1;
	/* an attribute length running past the end */
	p[22] = 0xff;
	assert_int_equal(stun_parse(p, n, &m), -EBADMSG);
	n = unhex(p, sizeof p, v22);
	/* a bad address family */
	p[20 + 16 + 5] = 0x07;
	assert_int_equal(stun_parse(p, n, &m), -EBADMSG);
	/* an attribute after FINGERPRINT */
	uint8_t q[64];
	uint8_t txid[12] = {0};
	size_t qn = stun_binding_request(q, sizeof q - 8, txid, NULL);
	memcpy(q + qn, "\x80\x22\x00\x04xxxx", 8);
	q[3] += 8;
	assert_int_equal(stun_parse(q, qn + 8, &m), -EBADMSG);
	/* an unknown comprehension-required attribute is reported */
	qn = stun_binding_request(q, sizeof q, txid, NULL);
	uint8_t u[32];
	memcpy(u, q, 20);
	memcpy(u + 20, "\x00\x77\x00\x00", 4);
	u[2] = 0;
	u[3] = 4;
	assert_int_equal(stun_parse(u, 24, &m), 0);
	assert_int_equal(m.unknown_required, 0x0077);
	size_t en = stun_error_response(q, sizeof q, &m, 420, "Unknown Attribute");
	assert_true(en > 0);
	struct stun_msg e;
	assert_int_equal(stun_parse(q, en, &e), 0);
	assert_int_equal(e.type, STUN_BINDING_ERROR);
	assert_int_equal(e.error_code, 420);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rfc5769_request),
	    cmocka_unit_test(rfc5769_ipv4_response),
	    cmocka_unit_test(rfc5769_ipv6_response),
	    cmocka_unit_test(rfc5769_long_term),
	    cmocka_unit_test(crc32_check),
	    cmocka_unit_test(request_response_round_trip),
	    cmocka_unit_test(classic_request),
	    cmocka_unit_test(hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
