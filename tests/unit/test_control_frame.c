/* core/control/frame and core/control/token.
 * Frames:
 *  - a handshake over frames, then transport frames following the server's
 *    HS2 in the same read: the decoder stops at the frame end so the caller
 *    can switch phase;
 *  - a stream of frames split at every byte boundary, and one byte at a
 *    time, decodes to the same frames;
 *  - zero, oversize (each phase) and too-short frames are refused, a
 *    tampered frame fails to decrypt, errors are sticky;
 *  - memory follows the bytes received, not the length announced; a maximal
 *    frame round-trips and its buffer is released afterwards.
 * Join tokens:
 *  - round trips (name, IPv4, IPv6, empty and longest fields);
 *  - several control addresses (version 2): round trips from 2 to 8 in
 *    order, one address still written as version 1, the longest token;
 *    the count, every address field, truncation, trailing bytes and every
 *    character changed are checked as in version 1;
 *  - every error: prefix, base64, truncated at every length, every
 *    character changed, trailing bytes, version, too-long fields and
 *    strings, invalid fields, small buffers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/control/frame.h"
#include "core/control/token.h"
#include "core/crypto/blake2s.h"

/* ---------- frames ---------- */

struct duo {
	struct ctl_noise_transport ti, tr; /* node, server */
	uint8_t m1[256], m2[256];
	size_t m1_len, m2_len;
	struct ctl_noise_handshake ini, res;
	uint8_t sv[32], sv_pub[32];
};

/* Node and server up to message 2 written (not yet read). */
static void duo_start(struct duo *d)
{
	uint8_t ci[32], ci_pub[32];
	size_t n;

	memset(d, 0, sizeof(*d));
	ctl_noise_keypair(ci, ci_pub);
	ctl_noise_keypair(d->sv, d->sv_pub);
	assert_int_equal(ctl_noise_init_initiator(&d->ini, ci, d->sv_pub, NULL, 0), 0);
	assert_int_equal(ctl_noise_init_responder(&d->res, d->sv, NULL, 0), 0);
	assert_int_equal(
	    ctl_noise_write_msg1(&d->ini, NULL, 0, d->m1, sizeof(d->m1), &d->m1_len), 0);
	assert_int_equal(ctl_noise_read_msg1(&d->res, d->m1, d->m1_len, NULL, 0, &n), 0);
	assert_int_equal(
	    ctl_noise_write_msg2(&d->res, NULL, 0, d->m2, sizeof(d->m2), &d->m2_len), 0);
	assert_int_equal(ctl_noise_split(&d->res, &d->tr), 0);
}

static void duo_finish(struct duo *d)
{
	size_t n;

	assert_int_equal(ctl_noise_read_msg2(&d->ini, d->m2, d->m2_len, NULL, 0, &n), 0);
	assert_int_equal(ctl_noise_split(&d->ini, &d->ti), 0);
}

static void test_handshake_then_transport_in_one_read(void **state)
{
	struct duo d;
	struct ctl_frame_decoder node, server;
	struct ctl_frame f;
	uint8_t wire[2048];
	size_t len = 0, n, used;

	(void)state;
	duo_start(&d);
	/* node -> server: HS1 */
	ctl_frame_decoder_init(&server);
	assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS1, d.m1, d.m1_len, wire,
	                                            sizeof(wire), &len),
	                 0);
	assert_int_equal(len, ctl_frame_handshake_size(d.m1_len));
	assert_int_equal(ctl_frame_decode(&server, wire, len, &used, &f),
	                 CTL_FRAME_READY);
	assert_int_equal(used, len);
	assert_int_equal(f.type, CTL_FRAME_HS1);
	assert_int_equal(f.len, d.m1_len);
	assert_memory_equal(f.body, d.m1, d.m1_len);

	/* server -> node: HS2 and two transport frames in one write */
	assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS2, d.m2, d.m2_len, wire,
	                                            sizeof(wire), &len),
	                 0);
	assert_int_equal(ctl_frame_seal(&d.tr, 0x20, (const uint8_t *)"map", 3,
	                                wire + len, sizeof(wire) - len, &n),
	                 0);
	assert_int_equal(n, ctl_frame_sealed_size(3));
	len += n;
	assert_int_equal(
	    ctl_frame_seal(&d.tr, 0x21, NULL, 0, wire + len, sizeof(wire) - len, &n), 0);
	len += n;

	ctl_frame_decoder_init(&node);
	assert_int_equal(ctl_frame_decode(&node, wire, len, &used, &f), CTL_FRAME_READY);
	assert_int_equal(f.type, CTL_FRAME_HS2);
	assert_int_equal(used, ctl_frame_handshake_size(d.m2_len));
	assert_memory_equal(f.body, d.m2, d.m2_len);
	duo_finish(&d);
	ctl_frame_decoder_set_transport(&node, &d.ti);
	size_t off = used;
	assert_int_equal(ctl_frame_decode(&node, wire + off, len - off, &used, &f),
	                 CTL_FRAME_READY);
	assert_int_equal(f.type, 0x20);
	assert_int_equal(f.len, 3);
	assert_memory_equal(f.body, "map", 3);
	off += used;
	assert_int_equal(ctl_frame_decode(&node, wire + off, len - off, &used, &f),
	                 CTL_FRAME_READY);
	assert_int_equal(f.type, 0x21);
	assert_int_equal(f.len, 0);
	off += used;
	assert_int_equal(off, len);
	assert_int_equal(ctl_frame_decode(&node, wire, 0, &used, &f), CTL_FRAME_MORE);
	ctl_frame_decoder_free(&node);
	ctl_frame_decoder_free(&server);
	ctl_noise_transport_wipe(&d.ti);
	ctl_noise_transport_wipe(&d.tr);
}

#define MAXF 8
struct got {
	uint8_t type[MAXF];
	uint8_t body[MAXF][600];
	size_t len[MAXF];
	size_t n;
};

/* Feeds everything; every error fails the test. */
static void feed(struct ctl_frame_decoder *dec, const uint8_t *p, size_t len,
                 struct got *g)
{
	struct ctl_frame f;
	size_t used;
	int rc;

	while (len > 0) {
		rc = ctl_frame_decode(dec, p, len, &used, &f);
		assert_true(rc >= 0);
		assert_true(used <= len);
		p += used;
		len -= used;
		if (rc == CTL_FRAME_MORE) {
			assert_int_equal(len, 0);
			break;
		}
		assert_true(g->n < MAXF);
		assert_true(f.len <= sizeof(g->body[0]));
		g->type[g->n] = f.type;
		memcpy(g->body[g->n], f.body, f.len);
		g->len[g->n++] = f.len;
	}
}

static const size_t body_lens[] = {0, 1, 15, 16, 17, 300, 599};

static size_t build_stream(struct ctl_noise_transport *t, uint8_t *wire, size_t cap)
{
	uint8_t body[600];
	size_t len = 0, n;

	for (size_t i = 0; i < sizeof(body_lens) / sizeof(body_lens[0]); i++) {
		memset(body, (int)(0x40 + i), body_lens[i]);
		assert_int_equal(ctl_frame_seal(t, (uint8_t)(0x10 + i), body,
		                                body_lens[i], wire + len, cap - len, &n),
		                 0);
		len += n;
	}
	return len;
}

static void check_stream(const struct got *g)
{
	assert_int_equal(g->n, sizeof(body_lens) / sizeof(body_lens[0]));
	for (size_t i = 0; i < g->n; i++) {
		assert_int_equal(g->type[i], 0x10 + i);
		assert_int_equal(g->len[i], body_lens[i]);
		for (size_t j = 0; j < g->len[i]; j++)
			assert_int_equal(g->body[i][j], 0x40 + i);
	}
}

static void test_split_at_every_boundary(void **state)
{
	struct duo d;
	static uint8_t wire[4096];
	static struct got g;
	size_t len;

	(void)state;
	duo_start(&d);
	duo_finish(&d);
	len = build_stream(&d.tr, wire, sizeof(wire));
	for (size_t split = 0; split <= len; split++) {
		struct ctl_noise_transport t = d.ti; /* the same nonces each time */
		struct ctl_frame_decoder dec;

		memset(&g, 0, sizeof(g));
		ctl_frame_decoder_init(&dec);
		ctl_frame_decoder_set_transport(&dec, &t);
		feed(&dec, wire, split, &g);
		feed(&dec, wire + split, len - split, &g);
		check_stream(&g);
		ctl_frame_decoder_free(&dec);
	}
	/* one byte at a time */
	struct ctl_noise_transport t = d.ti;
	struct ctl_frame_decoder dec;
	memset(&g, 0, sizeof(g));
	ctl_frame_decoder_init(&dec);
	ctl_frame_decoder_set_transport(&dec, &t);
	for (size_t i = 0; i < len; i++)
		feed(&dec, wire + i, 1, &g);
	check_stream(&g);
	ctl_frame_decoder_free(&dec);
}

static int decode_hdr(struct ctl_noise_transport *t, uint32_t announced)
{
	struct ctl_frame_decoder dec;
	struct ctl_frame f;
	uint8_t hdr[4] = {(uint8_t)(announced >> 24), (uint8_t)(announced >> 16),
	                  (uint8_t)(announced >> 8), (uint8_t)announced};
	size_t used;
	int rc, again;

	ctl_frame_decoder_init(&dec);
	ctl_frame_decoder_set_transport(&dec, t);
	rc = ctl_frame_decode(&dec, hdr, 4, &used, &f);
	/* an error is sticky */
	again = ctl_frame_decode(&dec, hdr, 4, &used, &f);
	if (rc < 0) {
		assert_int_equal(again, rc);
		assert_int_equal(used, 0);
	}
	ctl_frame_decoder_free(&dec);
	return rc;
}

static void test_bad_lengths(void **state)
{
	struct duo d;

	(void)state;
	duo_start(&d);
	duo_finish(&d);
	/* handshake phase */
	assert_int_equal(decode_hdr(NULL, 0), -EPROTO);
	assert_int_equal(decode_hdr(NULL, 1), CTL_FRAME_MORE);
	assert_int_equal(decode_hdr(NULL, CTL_FRAME_HS_MAX), CTL_FRAME_MORE);
	assert_int_equal(decode_hdr(NULL, CTL_FRAME_HS_MAX + 1), -EMSGSIZE);
	assert_int_equal(decode_hdr(NULL, CTL_FRAME_MAX), -EMSGSIZE);
	assert_int_equal(decode_hdr(NULL, UINT32_MAX), -EMSGSIZE);
	/* transport phase */
	assert_int_equal(decode_hdr(&d.ti, 0), -EPROTO);
	assert_int_equal(decode_hdr(&d.ti, CTL_NOISE_TAG_LEN), -EPROTO);
	assert_int_equal(decode_hdr(&d.ti, CTL_NOISE_TAG_LEN + 1), CTL_FRAME_MORE);
	assert_int_equal(decode_hdr(&d.ti, CTL_FRAME_MAX), CTL_FRAME_MORE);
	assert_int_equal(decode_hdr(&d.ti, CTL_FRAME_MAX + 1), -EMSGSIZE);
	assert_int_equal(decode_hdr(&d.ti, UINT32_MAX), -EMSGSIZE);
}

static void test_tampered_frame(void **state)
{
	struct duo d;
	uint8_t wire[64];
	size_t len, used;
	struct ctl_frame f;

	(void)state;
	duo_start(&d);
	duo_finish(&d);
	assert_int_equal(ctl_frame_seal(&d.tr, 7, (const uint8_t *)"hello", 5, wire,
	                                sizeof(wire), &len),
	                 0);
	for (size_t i = 4; i < len; i++) {
		struct ctl_noise_transport t = d.ti;
		struct ctl_frame_decoder dec;

		ctl_frame_decoder_init(&dec);
		ctl_frame_decoder_set_transport(&dec, &t);
		wire[i] ^= 0x04;
		assert_int_equal(ctl_frame_decode(&dec, wire, len, &used, &f), -EBADMSG);
		assert_int_equal(ctl_frame_decode(&dec, wire, len, &used, &f), -EBADMSG);
		wire[i] ^= 0x04;
		ctl_frame_decoder_free(&dec);
	}
	/* A frame sealed by the node itself (the other direction's key). */
	struct ctl_frame_decoder dec;
	ctl_frame_decoder_init(&dec);
	ctl_frame_decoder_set_transport(&dec, &d.ti);
	assert_int_equal(ctl_frame_seal(&d.ti, 7, (const uint8_t *)"hello", 5, wire,
	                                sizeof(wire), &len),
	                 0);
	assert_int_equal(ctl_frame_decode(&dec, wire, len, &used, &f), -EBADMSG);
	ctl_frame_decoder_free(&dec);
}

static void test_memory_bounded_and_big_frame(void **state)
{
	struct duo d;
	struct ctl_frame_decoder dec;
	struct ctl_frame f;
	uint8_t *wire, *body;
	size_t len, used, cap = ctl_frame_sealed_size(CTL_FRAME_BODY_MAX);

	(void)state;
	duo_start(&d);
	duo_finish(&d);
	wire = malloc(cap);
	body = malloc(CTL_FRAME_BODY_MAX);
	assert_non_null(wire);
	assert_non_null(body);
	randombytes_buf(body, CTL_FRAME_BODY_MAX);
	assert_int_equal(
	    ctl_frame_seal(&d.tr, 9, body, CTL_FRAME_BODY_MAX + 1, wire, cap + 1, &len),
	    -EMSGSIZE);
	assert_int_equal(ctl_frame_seal(&d.tr, 9, body, 10, wire, 4 + 1 + 10 + 15, &len),
	                 -EMSGSIZE);
	assert_int_equal(
	    ctl_frame_seal(&d.tr, 9, body, CTL_FRAME_BODY_MAX, wire, cap, &len), 0);
	assert_int_equal(len, 4 + CTL_FRAME_MAX);

	ctl_frame_decoder_init(&dec);
	ctl_frame_decoder_set_transport(&dec, &d.ti);
	/* header and 10 bytes: memory stays small */
	assert_int_equal(ctl_frame_decode(&dec, wire, 14, &used, &f), CTL_FRAME_MORE);
	assert_true(dec.cap <= 4096);
	size_t off = 14;
	while (off < len) {
		size_t chunk = len - off < 70000 ? len - off : 70000;
		int rc = ctl_frame_decode(&dec, wire + off, chunk, &used, &f);
		assert_int_equal(used, chunk);
		off += used;
		assert_int_equal(rc, off == len ? CTL_FRAME_READY : CTL_FRAME_MORE);
		assert_true(dec.cap <= CTL_FRAME_MAX);
	}
	assert_int_equal(f.type, 9);
	assert_int_equal(f.len, CTL_FRAME_BODY_MAX);
	assert_memory_equal(f.body, body, CTL_FRAME_BODY_MAX);
	/* the next call releases the large buffer */
	assert_int_equal(ctl_frame_decode(&dec, wire, 0, &used, &f), CTL_FRAME_MORE);
	assert_int_equal(dec.cap, 0);
	ctl_frame_decoder_free(&dec);
	ctl_frame_decoder_free(&dec); /* twice is fine */
	free(wire);
	free(body);
}

static void test_handshake_frame_limits(void **state)
{
	static uint8_t msg[CTL_FRAME_HS_MAX], wire[CTL_FRAME_HS_MAX + 8];
	size_t len;

	(void)state;
	assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS1, msg, CTL_NOISE_MAX_MSG,
	                                            wire, sizeof(wire), &len),
	                 0);
	assert_int_equal(len, 4 + CTL_FRAME_HS_MAX);
	assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS1, msg,
	                                            CTL_NOISE_MAX_MSG + 1, wire,
	                                            sizeof(wire), &len),
	                 -EMSGSIZE);
	assert_int_equal(
	    ctl_frame_encode_handshake(CTL_FRAME_HS1, msg, 10, wire, 4 + 10, &len),
	    -EMSGSIZE);
}

/* ---------- tokens ---------- */

static struct ctl_token sample(const char *host, uint16_t port, const char *auth)
{
	struct ctl_token t;

	memset(&t, 0, sizeof(t));
	snprintf(t.host, sizeof(t.host), "%s", host);
	t.port = port;
	for (int i = 0; i < 32; i++)
		t.server_key[i] = (uint8_t)(i * 7 + 1);
	snprintf(t.auth_key, sizeof(t.auth_key), "%s", auth);
	return t;
}

static void round_trip(const struct ctl_token *t)
{
	char s[CTL_TOKEN_STR_MAX];
	struct ctl_token back;
	int n = ctl_token_encode(t, s, sizeof(s));

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(s));
	assert_memory_equal(s, "mesh1", 5);
	assert_int_equal(ctl_token_decode(s, (size_t)n, &back), 0);
	assert_string_equal(back.host, t->host);
	assert_int_equal(back.port, t->port);
	assert_memory_equal(back.server_key, t->server_key, 32);
	assert_string_equal(back.auth_key, t->auth_key);
	assert_int_equal(back.n_more, t->n_more);
	for (size_t i = 0; i < t->n_more; i++) {
		assert_string_equal(back.more[i].host, t->more[i].host);
		assert_int_equal(back.more[i].port, t->more[i].port);
	}
	/* surrounding whitespace (a pasted line) is fine */
	char padded[CTL_TOKEN_STR_MAX + 8];
	snprintf(padded, sizeof(padded), "  %s\r\n", s);
	assert_int_equal(ctl_token_decode(padded, strlen(padded), &back), 0);
	assert_int_equal(back.port, t->port);
	ctl_token_wipe(&back);
}

static void test_token_round_trip(void **state)
{
	char host[CTL_TOKEN_HOST_MAX + 1], auth[CTL_TOKEN_AUTH_MAX + 1];
	struct ctl_token t;

	(void)state;
	t = sample("control.example.com", 443, "mkey-0123456789abcdef");
	round_trip(&t);
	t = sample("198.18.0.1", 7443, "");
	round_trip(&t);
	t = sample("fd7a:115c:a1e0::1", 65535, "k");
	round_trip(&t);
	memset(host, 'h', CTL_TOKEN_HOST_MAX);
	host[CTL_TOKEN_HOST_MAX] = '\0';
	memset(auth, '~', CTL_TOKEN_AUTH_MAX);
	auth[CTL_TOKEN_AUTH_MAX] = '\0';
	t = sample(host, 1, auth);
	round_trip(&t);
	/* the longest one-address token: version 1's size */
	char s[CTL_TOKEN_STR_MAX];
	size_t v1_bin = 1 + 1 + CTL_TOKEN_HOST_MAX + 2 + 32 + 1 + CTL_TOKEN_AUTH_MAX + 4;
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), 5 + (v1_bin * 4 + 2) / 3);
}

/* The version byte of an encoded token. */
static uint8_t version_of(const char *s)
{
	uint8_t bin[CTL_TOKEN_BIN_MAX];
	size_t n = 0;

	assert_int_equal(sodium_base642bin(bin, sizeof(bin), s + 5, strlen(s + 5), NULL,
	                                   &n, NULL,
	                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	                 0);
	return bin[0];
}

static void test_token_several_addresses(void **state)
{
	char host[CTL_TOKEN_HOST_MAX + 1], auth[CTL_TOKEN_AUTH_MAX + 1];
	char s[CTL_TOKEN_STR_MAX];
	struct ctl_token t;
	const char *h;
	uint16_t port;

	(void)state;
	/* one address: version 1, as every node before version 2 reads it */
	t = sample("198.18.0.1", 7443, "k");
	assert_int_equal(ctl_token_addr_count(&t), 1);
	assert_true(ctl_token_encode(&t, s, sizeof(s)) > 0);
	assert_int_equal(version_of(s), CTL_TOKEN_VERSION);
	/* two, in order: version 2 */
	assert_int_equal(ctl_token_add_addr(&t, "fd7a:115c:a1e0::2", 7444), 0);
	assert_int_equal(ctl_token_addr_count(&t), 2);
	ctl_token_addr_get(&t, 1, &h, &port);
	assert_string_equal(h, "fd7a:115c:a1e0::2");
	assert_int_equal(port, 7444);
	round_trip(&t);
	assert_true(ctl_token_encode(&t, s, sizeof(s)) > 0);
	assert_int_equal(version_of(s), CTL_TOKEN_VERSION2);
	/* 3..8 */
	for (int i = 3; i <= CTL_TOKEN_ADDRS_MAX; i++) {
		char name[32];
		snprintf(name, sizeof(name), "ctl%d.example", i);
		assert_int_equal(ctl_token_add_addr(&t, name, (uint16_t)(7440 + i)), 0);
		round_trip(&t);
	}
	assert_int_equal(ctl_token_addr_count(&t), CTL_TOKEN_ADDRS_MAX);
	ctl_token_addr_get(&t, CTL_TOKEN_ADDRS_MAX - 1, &h, &port);
	assert_string_equal(h, "ctl8.example");
	assert_int_equal(port, 7448);
	/* a ninth is refused; the token is unchanged */
	assert_int_equal(ctl_token_add_addr(&t, "ctl9.example", 7449),
	                 -CTL_TOKEN_E_TOO_LONG);
	assert_int_equal(ctl_token_addr_count(&t), CTL_TOKEN_ADDRS_MAX);
	/* add_addr checks like the encoder */
	assert_int_equal(ctl_token_add_addr(&t, "", 1), -CTL_TOKEN_E_FIELD);
	t = sample("a.b", 1, "k");
	assert_int_equal(ctl_token_add_addr(&t, "a b", 1), -CTL_TOKEN_E_FIELD);
	assert_int_equal(ctl_token_add_addr(&t, "c.d", 0), -CTL_TOKEN_E_FIELD);
	memset(host, 'h', CTL_TOKEN_HOST_MAX);
	host[CTL_TOKEN_HOST_MAX] = '\0';
	assert_int_equal(ctl_token_add_addr(&t, host, 1), 0);
	char longer[CTL_TOKEN_HOST_MAX + 2];
	memset(longer, 'h', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(ctl_token_add_addr(&t, longer, 1), -CTL_TOKEN_E_TOO_LONG);
	/* an empty token gets its first address in host/port */
	memset(&t, 0, sizeof(t));
	assert_int_equal(ctl_token_addr_count(&t), 0);
	assert_int_equal(ctl_token_add_addr(&t, "x.y", 9), 0);
	assert_string_equal(t.host, "x.y");
	assert_int_equal(t.port, 9);
	assert_int_equal(t.n_more, 0);

	/* the longest token of all: 8 longest hosts, longest auth key */
	memset(auth, '~', CTL_TOKEN_AUTH_MAX);
	auth[CTL_TOKEN_AUTH_MAX] = '\0';
	t = sample(host, 65535, auth);
	for (int i = 1; i < CTL_TOKEN_ADDRS_MAX; i++) {
		host[0] = (char)('a' + i);
		assert_int_equal(ctl_token_add_addr(&t, host, (uint16_t)i), 0);
	}
	round_trip(&t);
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), CTL_TOKEN_STR_MAX - 1);
	ctl_token_wipe(&t);
}

static void test_token_several_encode_errors(void **state)
{
	struct ctl_token t;
	char s[CTL_TOKEN_STR_MAX];

	(void)state;
	t = sample("a.b", 1, "k");
	t.n_more = CTL_TOKEN_ADDRS_MAX; /* one past the array */
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_TOO_LONG);
	t = sample("a.b", 1, "k");
	t.n_more = 1; /* an empty second address */
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	snprintf(t.more[0].host, sizeof(t.more[0].host), "c.d");
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	t.more[0].port = 2;
	assert_true(ctl_token_encode(&t, s, sizeof(s)) > 0);
	t.more[0].host[1] = '\t';
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	memset(t.more[0].host, 'x', sizeof(t.more[0].host)); /* no NUL */
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_TOO_LONG);
}

static void test_token_encode_errors(void **state)
{
	struct ctl_token t;
	char s[CTL_TOKEN_STR_MAX];

	(void)state;
	t = sample("", 443, "k");
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	t = sample("a.b", 0, "k");
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	t = sample("a b", 1, "k");
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	t = sample("a.b", 1, "k\n");
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_FIELD);
	t = sample("a.b", 1, "k");
	memset(t.host, 'x', sizeof(t.host)); /* no NUL: 254 characters */
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_TOO_LONG);
	t = sample("a.b", 1, "k");
	memset(t.auth_key, 'x', sizeof(t.auth_key));
	assert_int_equal(ctl_token_encode(&t, s, sizeof(s)), -CTL_TOKEN_E_TOO_LONG);
	t = sample("a.b", 1, "k");
	int n = ctl_token_encode(&t, s, sizeof(s));
	assert_true(n > 0);
	assert_int_equal(ctl_token_encode(&t, s, (size_t)n), -CTL_TOKEN_E_BUFFER);
	assert_int_equal(ctl_token_encode(&t, s, (size_t)n + 1), n);
}

static int dec(const char *s)
{
	struct ctl_token t;
	int rc = ctl_token_decode(s, strlen(s), &t);

	if (rc != 0) /* zeroed on error */
		assert_true(sodium_is_zero((const uint8_t *)&t, sizeof(t)));
	return rc;
}

/* A token from raw bytes (valid checksum appended when sum is set). */
static void craft(char *out, size_t cap, const uint8_t *bin, size_t len, int sum)
{
	uint8_t buf[1024];

	memcpy(buf, bin, len);
	if (sum) {
		blake2s(buf + len, 4, buf, len, NULL, 0);
		len += 4;
	}
	memcpy(out, "mesh1", 5);
	sodium_bin2base64(out + 5, cap - 5, buf, len,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void test_token_decode_errors(void **state)
{
	struct ctl_token t = sample("ctl.example", 8443, "secret");
	char s[CTL_TOKEN_STR_MAX], m[CTL_TOKEN_STR_MAX + 16];
	int n, rc, checksum_hits = 0;

	(void)state;
	n = ctl_token_encode(&t, s, sizeof(s));
	assert_true(n > 0);

	assert_int_equal(dec(""), -CTL_TOKEN_E_PREFIX);
	assert_int_equal(dec("mesh"), -CTL_TOKEN_E_PREFIX);
	snprintf(m, sizeof(m), "mesh2%s", s + 5);
	assert_int_equal(dec(m), -CTL_TOKEN_E_PREFIX);
	assert_int_equal(dec("mesh1"), -CTL_TOKEN_E_TRUNCATED);

	/* base64: standard alphabet, padding, a space inside */
	for (const char *bad = "+/= .!"; *bad; bad++) {
		snprintf(m, sizeof(m), "%s", s);
		m[10] = *bad;
		assert_int_equal(dec(m), -CTL_TOKEN_E_BASE64);
	}

	/* cut short at every length */
	for (int len = 5; len < n; len++) {
		memcpy(m, s, (size_t)len);
		m[len] = '\0';
		assert_int_equal(dec(m), -CTL_TOKEN_E_TRUNCATED);
	}

	/* every character changed: never accepted, nearly always "checksum" */
	for (int i = 5; i < n; i++) {
		snprintf(m, sizeof(m), "%s", s);
		m[i] = m[i] == 'A' ? 'B' : 'A';
		rc = dec(m);
		assert_true(rc < 0);
		checksum_hits += rc == -CTL_TOKEN_E_CHECKSUM;
	}
	assert_true(checksum_hits >= n - 5 - 4); /* length bytes may say truncated */

	/* something appended */
	snprintf(m, sizeof(m), "%sAAAA", s);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRAILING);

	/* far too long */
	char *big = malloc(4096);
	memcpy(big, "mesh1", 5);
	memset(big + 5, 'A', 4000);
	big[4005] = '\0';
	assert_int_equal(dec(big), -CTL_TOKEN_E_TOO_LONG);
	free(big);

	/* crafted with a valid checksum */
	uint8_t bin[400];
	size_t k;
#define HDR(ver, hl)                                                                     \
	do {                                                                             \
		k = 0;                                                                   \
		bin[k++] = (ver);                                                        \
		bin[k++] = (uint8_t)(hl);                                                \
		memset(bin + k, 'h', (hl));                                              \
		k += (hl);                                                               \
	} while (0)
#define TAIL(port, keybyte, al)                                                          \
	do {                                                                             \
		bin[k++] = (uint8_t)((port) >> 8);                                       \
		bin[k++] = (uint8_t)(port);                                              \
		memset(bin + k, (keybyte), 32);                                          \
		k += 32;                                                                 \
		bin[k++] = (uint8_t)(al);                                                \
		memset(bin + k, 'a', (al));                                              \
		k += (al);                                                               \
	} while (0)
	HDR(1, 3);
	TAIL(80, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), 0); /* the crafting itself is right */
	HDR(3, 3);                   /* a version from the future */
	TAIL(80, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_VERSION);
	HDR(1, 254);
	TAIL(80, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TOO_LONG);
	HDR(1, 0);
	TAIL(80, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	HDR(1, 3);
	TAIL(0, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	HDR(1, 3);
	TAIL(80, 0, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	HDR(1, 3);
	bin[3] = ' ';
	TAIL(80, 1, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	HDR(1, 3);
	TAIL(80, 1, 2);
	bin[k - 1] = 0x01;
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	/* fields say more than there is, checksum valid over what is there */
	HDR(1, 3);
	TAIL(80, 1, 2);
	bin[k - 3] = 9; /* auth_len 9, only 2 bytes follow */
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRUNCATED);
	HDR(1, 3);
	TAIL(80, 1, 2);
	bin[k++] = 'z'; /* a byte more than the fields say */
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRAILING);
#undef HDR
#undef TAIL

	for (int e = 0; e <= CTL_TOKEN_E_BUFFER + 1; e++)
		assert_non_null(strstr(ctl_token_strerror(-e), "join token"));
}

/* Version 2 from raw bytes: count, then addresses "h<i>" port 80+i, key,
 * auth "aa"; edit() changes the bytes before the checksum. */
static size_t v2_bin(uint8_t *bin, unsigned count, unsigned addrs)
{
	size_t k = 0;

	bin[k++] = 2;
	bin[k++] = (uint8_t)count;
	for (unsigned i = 0; i < addrs; i++) {
		bin[k++] = 2;
		bin[k++] = 'h';
		bin[k++] = (uint8_t)('0' + i);
		bin[k++] = 0;
		bin[k++] = (uint8_t)(80 + i);
	}
	memset(bin + k, 1, 32);
	k += 32;
	bin[k++] = 2;
	bin[k++] = 'a';
	bin[k++] = 'a';
	return k;
}

static void test_token_several_decode_errors(void **state)
{
	char m[CTL_TOKEN_STR_MAX + 16], s[CTL_TOKEN_STR_MAX];
	uint8_t bin[600];
	struct ctl_token t;
	size_t k;
	int n, rc, checksum_hits = 0;

	(void)state;
	/* crafted right: 2 and 8 addresses, and a count of 1 (an encoder
	 * writes version 1 then, but the layout is valid) */
	for (unsigned c = 1; c <= CTL_TOKEN_ADDRS_MAX; c++) {
		k = v2_bin(bin, c, c);
		craft(m, sizeof(m), bin, k, 1);
		assert_int_equal(ctl_token_decode(m, strlen(m), &t), 0);
		assert_int_equal(ctl_token_addr_count(&t), c);
		assert_string_equal(t.host, "h0");
		assert_int_equal(t.port, 80);
		if (c > 1) {
			char want[3] = {'h', (char)('0' + c - 1), 0};
			assert_string_equal(t.more[c - 2].host, want);
			assert_int_equal(t.more[c - 2].port, 80 + c - 1);
		}
		assert_string_equal(t.auth_key, "aa");
	}
	/* count 0: no address */
	k = v2_bin(bin, 0, 0);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	/* count 9, with 9 addresses there: too many */
	k = v2_bin(bin, 9, 9);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TOO_LONG);
	k = v2_bin(bin, 255, 100); /* says 255, has 100 */
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRUNCATED);
	/* count 3, 2 addresses: the fields run past the end */
	k = v2_bin(bin, 3, 2);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRUNCATED);
	/* count 2, 3 addresses: bytes left over */
	k = v2_bin(bin, 2, 3);
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRAILING);
	/* the second address: empty host, port 0, a space, a NUL, 254 long */
	k = v2_bin(bin, 2, 2);
	bin[7] = 0; /* its host_len; then its 2 host bytes are read as port and key */
	craft(m, sizeof(m), bin, k, 1);
	assert_true(dec(m) < 0);
	k = v2_bin(bin, 2, 2);
	bin[7 + 3] = 0; /* port 0 */
	bin[7 + 4] = 0;
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	k = v2_bin(bin, 2, 2);
	bin[7 + 1] = ' ';
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	k = v2_bin(bin, 2, 2);
	bin[7 + 2] = 0; /* "h\0": must not be read as "h" */
	craft(m, sizeof(m), bin, k, 1);
	assert_int_equal(dec(m), -CTL_TOKEN_E_FIELD);
	{
		size_t j = 0;
		bin[j++] = 2;
		bin[j++] = 2;
		bin[j++] = 1;
		bin[j++] = 'a';
		bin[j++] = 0;
		bin[j++] = 1;
		bin[j++] = 254; /* a host longer than any */
		memset(bin + j, 'h', 254);
		j += 254;
		bin[j++] = 0;
		bin[j++] = 1;
		memset(bin + j, 1, 32);
		j += 32;
		bin[j++] = 0;
		craft(m, sizeof(m), bin, j, 1);
		assert_int_equal(dec(m), -CTL_TOKEN_E_TOO_LONG);
	}

	/* an encoded two-address token: cut at every length, every character
	 * changed, something appended */
	t = sample("ctl-a.example", 7443, "secret");
	assert_int_equal(ctl_token_add_addr(&t, "198.18.0.2", 7444), 0);
	n = ctl_token_encode(&t, s, sizeof(s));
	assert_true(n > 0);
	for (int len = 5; len < n; len++) {
		memcpy(m, s, (size_t)len);
		m[len] = '\0';
		assert_int_equal(dec(m), -CTL_TOKEN_E_TRUNCATED);
	}
	for (int i = 5; i < n; i++) {
		snprintf(m, sizeof(m), "%s", s);
		m[i] = m[i] == 'A' ? 'B' : 'A';
		rc = dec(m);
		assert_true(rc < 0);
		checksum_hits += rc == -CTL_TOKEN_E_CHECKSUM;
	}
	/* the length and count bytes may say truncated */
	assert_true(checksum_hits >= n - 5 - 8);
	snprintf(m, sizeof(m), "%sAAAA", s);
	assert_int_equal(dec(m), -CTL_TOKEN_E_TRAILING);
	ctl_token_wipe(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handshake_then_transport_in_one_read),
	    cmocka_unit_test(test_split_at_every_boundary),
	    cmocka_unit_test(test_bad_lengths),
	    cmocka_unit_test(test_tampered_frame),
	    cmocka_unit_test(test_memory_bounded_and_big_frame),
	    cmocka_unit_test(test_handshake_frame_limits),
	    cmocka_unit_test(test_token_round_trip),
	    cmocka_unit_test(test_token_encode_errors),
	    cmocka_unit_test(test_token_decode_errors),
	    cmocka_unit_test(test_token_several_addresses),
	    cmocka_unit_test(test_token_several_encode_errors),
	    cmocka_unit_test(test_token_several_decode_errors),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
