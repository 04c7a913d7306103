/* The Noise_IKpsk2 handshake, transport, MACs and cookie replies of core/wg
 * (noise.c, cookie.c), in process, without sockets:
 *  - the chaining key and hash constants equal the values other
 *    implementations publish (boringtun's INITIAL_CHAIN_KEY/HASH);
 *  - a known-answer handshake: the initiation computed by
 *    tests/tools/wg_handshake_kat.py (Python, from the paper) is consumed, our
 *    response with the same ephemeral is byte-identical, and so are the
 *    transport keys and a data message;
 *  - full handshakes both ways with and without PSK, keys match, transport
 *    round trip; wrong PSK, tampering, replays, floods, unknown peers and
 *    low-order points are refused;
 *  - mac1 checks, and the cookie path under load. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sodium.h>

#include "core/crypto/blake2s.h"
#include "core/wg/cookie.h"
#include "core/wg/messages.h"
#include "core/wg/noise.h"

static const uint8_t kat_static_i[32] = {
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a,
    0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x6f,
};
static const uint8_t kat_static_r[32] = {
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55,
    0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
};
static const uint8_t kat_ephemeral_r[32] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa,
    0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
    0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0x7f,
};
static const uint8_t kat_psk[32] = {
    0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5,
    0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
};
static const uint8_t kat_initiation[148] = {
    0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x23, 0xb7, 0xbb, 0x8c, 0x91, 0xae,
    0x00, 0x87, 0x11, 0xfb, 0x12, 0x84, 0x67, 0x80, 0xbc, 0xdf, 0x1e, 0x06, 0x5f, 0x82,
    0x1b, 0xdf, 0xec, 0x49, 0xf5, 0x7e, 0x7c, 0x7d, 0xcd, 0x4c, 0x48, 0x23, 0x7c, 0x9f,
    0x08, 0x7a, 0x47, 0xc7, 0x77, 0x65, 0x66, 0x93, 0x6c, 0x12, 0xf6, 0x9c, 0xde, 0xfe,
    0xb0, 0x17, 0x2e, 0xed, 0x52, 0x25, 0xb2, 0x1f, 0xfd, 0x5b, 0x64, 0xd7, 0xcb, 0xdc,
    0xc0, 0x6f, 0x5d, 0xb9, 0x06, 0x7f, 0xfb, 0x75, 0x4a, 0x97, 0x05, 0x28, 0x51, 0xac,
    0x62, 0x8e, 0xdb, 0x82, 0xdd, 0x2c, 0x60, 0x1d, 0x87, 0x75, 0xe9, 0x3c, 0x60, 0x28,
    0xbd, 0x96, 0x86, 0x62, 0x1f, 0x41, 0x08, 0x7d, 0x16, 0x7f, 0xa2, 0x48, 0xe9, 0xcf,
    0xaf, 0x05, 0xa7, 0xb8, 0x0d, 0x78, 0x3e, 0xa0, 0xb8, 0xe5, 0xe1, 0xf6, 0x34, 0xf8,
    0x1e, 0xb0, 0xdb, 0xe1, 0x49, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t kat_response[92] = {
    0x02, 0x00, 0x00, 0x00, 0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0x02, 0x03, 0x04, 0x60, 0x5a,
    0x72, 0x5d, 0x2a, 0x4a, 0xdf, 0xee, 0xb1, 0xa2, 0x9e, 0x17, 0xed, 0xd6, 0x21, 0xc1,
    0xb7, 0x59, 0x3e, 0xe8, 0xcd, 0xbc, 0x44, 0xac, 0x6c, 0x4a, 0xb6, 0xe2, 0xf8, 0x05,
    0xd2, 0x3c, 0xe4, 0x9e, 0x80, 0x39, 0x13, 0xa3, 0x38, 0xec, 0xcc, 0x8f, 0x1c, 0x17,
    0xa0, 0x2d, 0xd0, 0xcc, 0x52, 0x6c, 0xe3, 0x13, 0xb3, 0xf0, 0x83, 0x8b, 0xb8, 0xbc,
    0xf3, 0x8a, 0xa3, 0xd7, 0xd4, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t kat_send_i[32] = {
    0x24, 0x53, 0x8f, 0xbb, 0x2f, 0x7b, 0x08, 0x40, 0x79, 0x0f, 0xf8,
    0xbf, 0x90, 0xb1, 0xba, 0x32, 0x7f, 0x60, 0xab, 0xf8, 0x0e, 0x70,
    0x03, 0x5d, 0x88, 0x14, 0x52, 0x84, 0x77, 0x20, 0x6e, 0x03,
};
static const uint8_t kat_recv_i[32] = {
    0x5d, 0x2d, 0x3f, 0xc0, 0xfc, 0x22, 0x1c, 0x39, 0xf0, 0xfa, 0x48,
    0x84, 0xd0, 0x50, 0x60, 0x95, 0x78, 0xdb, 0x6f, 0xd1, 0x01, 0xc6,
    0xea, 0xf5, 0x65, 0x60, 0x3d, 0x96, 0xf4, 0x6a, 0xc7, 0x56,
};
static const uint8_t kat_data[64] = {
    0x04, 0x00, 0x00, 0x00, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0xf5, 0xe3, 0xec, 0x73, 0x58, 0x00, 0x66, 0xbc, 0x09, 0x8e,
    0xde, 0x04, 0xc0, 0xbf, 0x9d, 0xab, 0x47, 0x08, 0x56, 0x9a, 0x13, 0xae, 0x86,
    0x8b, 0x91, 0x59, 0xb4, 0x16, 0x76, 0x6b, 0xbc, 0xb2, 0x8c, 0x9f, 0x51, 0x26,
    0x67, 0x73, 0xea, 0x55, 0xa8, 0x16, 0x97, 0x91, 0x96, 0xd6, 0xf7, 0x00,
};
#define KAT_INDEX_I 0x04030201U
#define KAT_INDEX_R 0x0d0c0b0aU

/* libsodium randomness that can be told the next 32-byte draw (an
 * ephemeral key), so that a response can be compared byte for byte. */
static uint8_t scripted[32];
static int have_script;

static void det_buf(void *buf, size_t n)
{
	if (have_script && n == sizeof(scripted)) {
		memcpy(buf, scripted, n);
		have_script = 0;
		return;
	}
	for (size_t done = 0; done < n;) {
		ssize_t r = getrandom((uint8_t *)buf + done, n - done, 0);
		if (r > 0)
			done += (size_t)r;
	}
}

static uint32_t det_random(void)
{
	uint32_t v;
	det_buf(&v, sizeof(v));
	return v;
}

static const char *det_name(void)
{
	return "test-scripted";
}

static struct randombytes_implementation det_impl = {
    .implementation_name = det_name,
    .random = det_random,
    .buf = det_buf,
};

/* Two parties, A and B, each with the other as its only peer. */
struct party {
	struct wg_noise_identity id;
	struct wg_handshake hs; /* for the other party */
	struct wg_cookie_checker checker;
	struct wg_cookie_maker maker; /* towards the other party */
};

static struct handshake_pair {
	struct party a, b;
} P;

static struct wg_handshake *lookup_a(void *ctx, const uint8_t key[32])
{
	struct handshake_pair *pp = ctx;
	return memcmp(key, pp->a.id.public_key, 32) == 0 ? &pp->b.hs : NULL;
}

static struct wg_handshake *lookup_b(void *ctx, const uint8_t key[32])
{
	struct handshake_pair *pp = ctx;
	return memcmp(key, pp->b.id.public_key, 32) == 0 ? &pp->a.hs : NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + 1000000000ULL;
}

static void pair_setup(const uint8_t *psk_a, const uint8_t *psk_b)
{
	uint8_t k[32];

	memset(&P, 0, sizeof(P));
	randombytes_buf(k, sizeof(k));
	assert_int_equal(wg_noise_identity_init(&P.a.id, k), 0);
	randombytes_buf(k, sizeof(k));
	assert_int_equal(wg_noise_identity_init(&P.b.id, k), 0);
	assert_int_equal(
	    wg_noise_handshake_init(&P.a.hs, &P.a.id, P.b.id.public_key, psk_a), 0);
	assert_int_equal(
	    wg_noise_handshake_init(&P.b.hs, &P.b.id, P.a.id.public_key, psk_b), 0);
	wg_cookie_checker_init(&P.a.checker, P.a.id.public_key);
	wg_cookie_checker_init(&P.b.checker, P.b.id.public_key);
	wg_cookie_maker_init(&P.a.maker, P.b.id.public_key);
	wg_cookie_maker_init(&P.b.maker, P.a.id.public_key);
}

static void test_constants(void **state)
{
	/* HASH(CONSTRUCTION) and HASH(that || IDENTIFIER), as published in
	 * boringtun (INITIAL_CHAIN_KEY, INITIAL_CHAIN_HASH). */
	static const uint8_t ck_want[32] = {
	    96, 226, 109, 174, 243, 39,  239, 192, 46, 195, 53,  226, 160, 37,  210, 208,
	    22, 235, 66,  6,   248, 114, 119, 245, 45, 56,  209, 152, 139, 120, 205, 54};
	static const uint8_t h_want[32] = {
	    34, 17,  179, 97,  8,  26,  197, 102, 105, 18,  67,  219, 69,  138, 213, 50,
	    45, 156, 108, 102, 34, 147, 232, 183, 14,  225, 156, 101, 186, 7,   158, 243};
	uint8_t ck[32], h[32];
	struct blake2s_state s;

	blake2s(ck, 32, (const uint8_t *)WG_CONSTRUCTION, strlen(WG_CONSTRUCTION), NULL,
	        0);
	assert_memory_equal(ck, ck_want, 32);
	blake2s_init(&s, 32);
	blake2s_update(&s, ck, 32);
	blake2s_update(&s, (const uint8_t *)WG_IDENTIFIER, strlen(WG_IDENTIFIER));
	blake2s_final(&s, h);
	assert_memory_equal(h, h_want, 32);
	assert_int_equal(sizeof(struct wg_msg_initiation), 148);
	assert_int_equal(sizeof(struct wg_msg_response), 92);
	assert_int_equal(sizeof(struct wg_msg_cookie), 64);
	assert_int_equal(WG_MSG_DATA_LEN(0), 32);
	assert_true(WG_REJECT_AFTER_MESSAGES == 18446744073709543423ULL);
}

static struct wg_handshake *kat_lookup(void *ctx, const uint8_t key[32])
{
	struct wg_handshake *hs = ctx;
	return memcmp(key, hs->remote_static, 32) == 0 ? hs : NULL;
}

static void test_known_answer_responder(void **state)
{
	struct wg_noise_identity r, i;
	struct wg_handshake hs, *got;
	struct wg_msg_initiation init;
	struct wg_msg_response resp;
	struct wg_cookie_maker maker;
	struct wg_cookie_checker checker;
	struct wg_keypair kp;
	uint8_t plain[32], want_plain[32] = {0};

	assert_int_equal(wg_noise_identity_init(&r, kat_static_r), 0);
	assert_int_equal(wg_noise_identity_init(&i, kat_static_i), 0);
	assert_int_equal(wg_noise_handshake_init(&hs, &r, i.public_key, kat_psk), 0);

	/* Their mac1 is right for our key. */
	wg_cookie_checker_init(&checker, r.public_key);
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(1)};
	assert_int_equal(wg_cookie_validate(&checker, kat_initiation,
	                                    sizeof(kat_initiation),
	                                    (struct sockaddr *)&src, false, now_ns()),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);

	memcpy(&init, kat_initiation, sizeof(init));
	assert_int_equal(
	    wg_noise_consume_initiation(&r, &init, now_ns(), kat_lookup, &hs, &got), 0);
	assert_ptr_equal(got, &hs);
	assert_int_equal(hs.remote_index, KAT_INDEX_I);

	memcpy(scripted, kat_ephemeral_r, 32);
	have_script = 1;
	assert_int_equal(wg_noise_create_response(&hs, KAT_INDEX_R, &resp), 0);
	assert_false(have_script);
	wg_cookie_maker_init(&maker, i.public_key);
	wg_cookie_add_macs(&maker, (uint8_t *)&resp, sizeof(resp), now_ns());
	assert_memory_equal(&resp, kat_response, sizeof(kat_response));

	assert_int_equal(wg_noise_begin_session(&hs, &kp, now_ns()), 0);
	assert_false(kp.i_am_the_initiator);
	assert_memory_equal(kp.recv_key, kat_send_i, 32);
	assert_memory_equal(kp.send_key, kat_recv_i, 32);
	assert_int_equal(kp.local_index, KAT_INDEX_R);
	assert_int_equal(kp.remote_index, KAT_INDEX_I);
	assert_int_equal(hs.state, WG_HS_ZEROED);

	assert_int_equal(wg_noise_open(&kp, kat_data, sizeof(kat_data), plain), 0);
	for (int n = 0; n < 20; n++)
		want_plain[n] = (uint8_t)n;
	assert_memory_equal(plain, want_plain, sizeof(plain));
	/* And the same message sealed by the initiator's side of our code. */
	struct wg_keypair ikp = {.remote_index = KAT_INDEX_R};
	uint8_t buf[sizeof(kat_data)];
	memcpy(ikp.send_key, kat_send_i, 32);
	memcpy(buf + WG_MSG_DATA_HEADER_LEN, want_plain, sizeof(want_plain));
	assert_int_equal(wg_noise_seal(&ikp, 0, buf, sizeof(want_plain)),
	                 sizeof(kat_data));
	assert_memory_equal(buf, kat_data, sizeof(kat_data));
}

/* A initiates to B. Returns the keypairs. */
static void do_handshake(struct party *ini, struct party *res, wg_noise_lookup_fn lookup,
                         struct wg_keypair *kpi, struct wg_keypair *kpr)
{
	struct wg_msg_initiation init;
	struct wg_msg_response resp;
	struct wg_handshake *got;
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(51820)};
	uint64_t t = now_ns();

	assert_int_equal(wg_noise_create_initiation(&ini->hs, &ini->id, 0x1111, &init),
	                 0);
	assert_int_equal(ini->hs.state, WG_HS_CREATED_INITIATION);
	wg_cookie_add_macs(&ini->maker, (uint8_t *)&init, sizeof(init), t);
	assert_int_equal(wg_cookie_validate(&res->checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	assert_int_equal(
	    wg_noise_consume_initiation(&res->id, &init, t, lookup, &P, &got), 0);
	assert_ptr_equal(got, &res->hs);
	assert_int_equal(res->hs.state, WG_HS_CONSUMED_INITIATION);
	assert_int_equal(wg_noise_create_response(&res->hs, 0x2222, &resp), 0);
	wg_cookie_add_macs(&res->maker, (uint8_t *)&resp, sizeof(resp), t);
	assert_int_equal(wg_cookie_validate(&ini->checker, (uint8_t *)&resp, sizeof(resp),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	assert_int_equal(wg_noise_consume_response(&ini->hs, &ini->id, &resp), 0);
	assert_int_equal(wg_noise_begin_session(&ini->hs, kpi, t), 0);
	assert_int_equal(wg_noise_begin_session(&res->hs, kpr, t), 0);
}

static void check_keys(const struct wg_keypair *kpi, const struct wg_keypair *kpr)
{
	uint8_t buf[WG_MSG_DATA_LEN(64)], out[64], msg[64];

	assert_true(kpi->i_am_the_initiator);
	assert_false(kpr->i_am_the_initiator);
	assert_memory_equal(kpi->send_key, kpr->recv_key, 32);
	assert_memory_equal(kpi->recv_key, kpr->send_key, 32);
	assert_memory_not_equal(kpi->send_key, kpi->recv_key, 32);
	assert_int_equal(kpi->local_index, kpr->remote_index);
	assert_int_equal(kpi->remote_index, kpr->local_index);

	randombytes_buf(msg, sizeof(msg));
	/* Both directions, several counters. */
	for (uint64_t c = 0; c < 3; c++) {
		memcpy(buf + WG_MSG_DATA_HEADER_LEN, msg, sizeof(msg));
		assert_int_equal(wg_noise_seal(kpi, c, buf, sizeof(msg)), sizeof(buf));
		assert_int_equal(wg_le32(buf), WG_MSG_DATA);
		assert_int_equal(wg_le32(buf + 4), kpr->local_index);
		assert_true(wg_le64(buf + 8) == c);
		assert_int_equal(wg_noise_open(kpr, buf, sizeof(buf), out), 0);
		assert_memory_equal(out, msg, sizeof(msg));
		/* The wrong direction does not open. */
		assert_int_equal(wg_noise_open(kpi, buf, sizeof(buf), out), -EBADMSG);

		memcpy(buf + WG_MSG_DATA_HEADER_LEN, msg, sizeof(msg));
		wg_noise_seal(kpr, c, buf, sizeof(msg));
		assert_int_equal(wg_noise_open(kpi, buf, sizeof(buf), out), 0);
		assert_memory_equal(out, msg, sizeof(msg));
	}
	/* Tampering with header counter, ciphertext or tag. */
	memcpy(buf + WG_MSG_DATA_HEADER_LEN, msg, sizeof(msg));
	wg_noise_seal(kpi, 7, buf, sizeof(msg));
	for (size_t off = 8; off < sizeof(buf); off += 5) {
		buf[off] ^= 0x20;
		assert_int_equal(wg_noise_open(kpr, buf, sizeof(buf), out), -EBADMSG);
		buf[off] ^= 0x20;
	}
	assert_int_equal(wg_noise_open(kpr, buf, sizeof(buf), out), 0);
	assert_int_equal(wg_noise_open(kpr, buf, WG_MSG_DATA_MIN_LEN - 1, out), -EBADMSG);
	/* A keepalive: 32 bytes on the wire. */
	assert_int_equal(wg_noise_seal(kpi, 8, buf, 0), WG_MSG_DATA_MIN_LEN);
	assert_int_equal(wg_noise_open(kpr, buf, WG_MSG_DATA_MIN_LEN, out), 0);
}

static void test_handshake_no_psk(void **state)
{
	struct wg_keypair kpi, kpr;

	pair_setup(NULL, NULL);
	do_handshake(&P.a, &P.b, lookup_a, &kpi, &kpr);
	check_keys(&kpi, &kpr);
	/* The handshake state is gone once the session exists. */
	assert_int_equal(P.a.hs.state, WG_HS_ZEROED);
	assert_int_equal(P.b.hs.state, WG_HS_ZEROED);
	assert_true(sodium_is_zero(P.a.hs.chaining_key, 32));
	assert_true(sodium_is_zero(P.a.hs.ephemeral_private, 32));
	wg_noise_keypair_wipe(&kpi);
	assert_true(sodium_is_zero((uint8_t *)&kpi, sizeof(kpi)));
}

static void test_handshake_psk_both_directions(void **state)
{
	uint8_t psk[32];
	struct wg_keypair kpi, kpr;

	randombytes_buf(psk, sizeof(psk));
	pair_setup(psk, psk);
	do_handshake(&P.a, &P.b, lookup_a, &kpi, &kpr);
	check_keys(&kpi, &kpr);
	usleep(20000); /* a newer timestamp and past the flood limit */
	do_handshake(&P.b, &P.a, lookup_b, &kpi, &kpr);
	check_keys(&kpi, &kpr);
}

static void test_psk_mismatch(void **state)
{
	uint8_t psk[32];
	struct wg_msg_initiation init;
	struct wg_msg_response resp;
	struct wg_handshake *got;

	randombytes_buf(psk, sizeof(psk));
	pair_setup(psk, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &init), 0);
	/* The PSK only enters with the response... */
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, now_ns(), lookup_a, &P, &got), 0);
	assert_int_equal(wg_noise_create_response(&P.b.hs, 2, &resp), 0);
	/* ...which then does not decrypt. */
	assert_int_equal(wg_noise_consume_response(&P.a.hs, &P.a.id, &resp), -EBADMSG);
	assert_int_equal(P.a.hs.state, WG_HS_CREATED_INITIATION);
}

static void test_tampered_initiation(void **state)
{
	struct wg_msg_initiation init, bad;
	struct wg_handshake *got;
	uint64_t t = now_ns();

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &init), 0);
	/* Every byte of ephemeral, static and timestamp matters. */
	for (size_t off = offsetof(struct wg_msg_initiation, unencrypted_ephemeral);
	     off < offsetof(struct wg_msg_initiation, macs); off++) {
		memcpy(&bad, &init, sizeof(bad));
		((uint8_t *)&bad)[off] ^= 1;
		assert_int_not_equal(
		    wg_noise_consume_initiation(&P.b.id, &bad, t, lookup_a, &P, &got), 0);
		assert_null(got);
	}
	assert_int_equal(P.b.hs.state, WG_HS_ZEROED);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, t, lookup_a, &P, &got), 0);
}

static void test_tampered_response(void **state)
{
	struct wg_msg_initiation init;
	struct wg_msg_response resp, bad;
	struct wg_handshake *got;
	struct wg_keypair kp;

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 0x77, &init), 0);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, now_ns(), lookup_a, &P, &got), 0);
	assert_int_equal(wg_noise_create_response(&P.b.hs, 0x88, &resp), 0);
	for (size_t off = offsetof(struct wg_msg_response, unencrypted_ephemeral);
	     off < offsetof(struct wg_msg_response, macs); off++) {
		memcpy(&bad, &resp, sizeof(bad));
		((uint8_t *)&bad)[off] ^= 0x80;
		assert_int_equal(wg_noise_consume_response(&P.a.hs, &P.a.id, &bad),
		                 -EBADMSG);
	}
	/* Naming another index of ours: not ours to consume. */
	memcpy(&bad, &resp, sizeof(bad));
	wg_put_le32(bad.receiver_index, 0x78);
	assert_int_equal(wg_noise_consume_response(&P.a.hs, &P.a.id, &bad), -EINVAL);
	/* The initiator's state survived all that. */
	assert_int_equal(wg_noise_consume_response(&P.a.hs, &P.a.id, &resp), 0);
	/* A second copy of the response finds no handshake waiting. */
	assert_int_equal(wg_noise_begin_session(&P.a.hs, &kp, now_ns()), 0);
	assert_int_equal(wg_noise_consume_response(&P.a.hs, &P.a.id, &resp), -EINVAL);
	/* Nor can a session begin twice. */
	assert_int_equal(wg_noise_begin_session(&P.a.hs, &kp, now_ns()), -EINVAL);
}

static void test_replayed_initiation(void **state)
{
	struct wg_msg_initiation init, older;
	struct wg_handshake *got;
	uint64_t t = now_ns();

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &older), 0);
	usleep(40000); /* the timestamp is whitened to 2^24 ns */
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 2, &init), 0);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, t, lookup_a, &P, &got), 0);
	/* The same message again, even much later: same timestamp. */
	assert_int_equal(wg_noise_consume_initiation(&P.b.id, &init, t + 10000000000ULL,
	                                             lookup_a, &P, &got),
	                 -EALREADY);
	assert_null(got);
	/* An older one (captured earlier, delivered late). */
	assert_int_equal(wg_noise_consume_initiation(&P.b.id, &older, t + 10000000000ULL,
	                                             lookup_a, &P, &got),
	                 -EALREADY);
	assert_int_equal(P.b.hs.state, WG_HS_CONSUMED_INITIATION);
}

static void test_initiation_flood(void **state)
{
	struct wg_msg_initiation m1, m2;
	struct wg_handshake *got;
	uint64_t t = now_ns();

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &m1), 0);
	usleep(40000);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 2, &m2), 0);
	assert_int_equal(wg_noise_consume_initiation(&P.b.id, &m1, t, lookup_a, &P, &got),
	                 0);
	/* A fresh one, but within 1/50 s of the last accepted: refused. */
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &m2, t + 5000000, lookup_a, &P, &got),
	    -EBUSY);
	/* After 20 ms it is fine. */
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &m2, t + 20000000, lookup_a, &P, &got),
	    0);
}

static struct wg_handshake *lookup_none(void *ctx, const uint8_t key[32])
{
	return NULL;
}

static void test_unknown_peer_and_low_order(void **state)
{
	struct wg_msg_initiation init;
	struct wg_handshake *got, hs;
	struct wg_noise_identity id;
	uint8_t zero[32] = {0}, k[32];

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &init), 0);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, now_ns(), lookup_none, &P, &got),
	    -ENOENT);
	/* Sent to someone else: the static key does not decrypt. */
	randombytes_buf(k, sizeof(k));
	assert_int_equal(wg_noise_identity_init(&id, k), 0);
	assert_int_equal(
	    wg_noise_consume_initiation(&id, &init, now_ns(), lookup_a, &P, &got),
	    -EBADMSG);
	/* A low-order ephemeral (all-zero DH) is refused. */
	memset(init.unencrypted_ephemeral, 0, 32);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &init, now_ns(), lookup_a, &P, &got),
	    -EBADMSG);
	/* A peer whose public key is a low-order point cannot be set up. */
	assert_int_equal(wg_noise_handshake_init(&hs, &P.a.id, zero, NULL), -EINVAL);
	/* Nor can an all-zero private key be ours... it clamps to a valid one. */
	assert_int_equal(wg_noise_identity_init(&id, zero), 0);
}

static void test_tai64n(void **state)
{
	uint8_t a[12], b[12];
	uint64_t sec = 0;

	wg_noise_tai64n_now(a);
	for (int i = 0; i < 8; i++)
		sec = sec << 8 | a[i];
	assert_true(sec > 0x400000000000000aULL + 1577836800ULL);
	assert_true(sec < 0x400000000000000aULL + 4102444800ULL);
	/* Nanoseconds are whitened to multiples of 2^24. */
	assert_int_equal(a[11], 0);
	assert_int_equal(a[10], 0);
	assert_int_equal(a[9], 0);
	usleep(40000);
	wg_noise_tai64n_now(b);
	assert_true(memcmp(b, a, 12) > 0);
}

static void test_mac1(void **state)
{
	struct wg_msg_initiation init;
	struct wg_cookie_maker other;
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(1000)};
	uint64_t t = now_ns();

	pair_setup(NULL, NULL);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 1, &init), 0);
	wg_cookie_add_macs(&P.a.maker, (uint8_t *)&init, sizeof(init), t);
	assert_true(sodium_is_zero(init.macs.mac2, 16));
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	/* mac1 wrong: dropped. */
	init.macs.mac1[3] ^= 1;
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_INVALID_MAC);
	init.macs.mac1[3] ^= 1;
	/* Any change to the body breaks mac1. */
	init.sender_index[0] ^= 1;
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_INVALID_MAC);
	init.sender_index[0] ^= 1;
	/* mac1 made for another receiver. */
	wg_cookie_maker_init(&other, P.a.id.public_key);
	wg_cookie_add_macs(&other, (uint8_t *)&init, sizeof(init), t);
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_INVALID_MAC);
	/* Too short to carry MACs. */
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, 20,
	                                    (struct sockaddr *)&src, false, t),
	                 WG_COOKIE_INVALID_MAC);
}

static void test_cookie_reply_under_load(void **state)
{
	struct wg_msg_initiation init, retry;
	struct wg_msg_cookie reply, bad;
	struct wg_handshake *got;
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in other = src;
	struct sockaddr_in6 src6 = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
	uint64_t t = now_ns();

	src.sin_addr.s_addr = htonl(0xc6120001);
	other.sin_addr.s_addr = htonl(0xc6120002);
	pair_setup(NULL, NULL);

	/* Under load, B wants mac2; A has no cookie yet. */
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 0xabc, &init), 0);
	wg_cookie_add_macs(&P.a.maker, (uint8_t *)&init, sizeof(init), t);
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&init, sizeof(init),
	                                    (struct sockaddr *)&src, true, t),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	wg_cookie_reply_create(&P.b.checker, &reply, (uint8_t *)&init, sizeof(init),
	                       wg_le32(init.sender_index), (struct sockaddr *)&src, t);
	assert_int_equal(wg_le32(reply.header.type), WG_MSG_HANDSHAKE_COOKIE);
	assert_int_equal(wg_le32(reply.receiver_index), 0xabc);

	/* A tampered reply does not decrypt; nor one for another message. */
	memcpy(&bad, &reply, sizeof(bad));
	bad.encrypted_cookie[0] ^= 1;
	assert_int_equal(wg_cookie_reply_consume(&P.a.maker, &bad, t), -EBADMSG);
	memcpy(&bad, &reply, sizeof(bad));
	bad.nonce[5] ^= 1;
	assert_int_equal(wg_cookie_reply_consume(&P.a.maker, &bad, t), -EBADMSG);
	assert_false(P.a.maker.cookie_valid);
	/* A reply from someone who is not B (other cookie key). */
	struct wg_cookie_maker third;
	wg_cookie_maker_init(&third, P.a.id.public_key);
	wg_cookie_add_macs(&third, (uint8_t *)&init, sizeof(init), t);
	assert_int_equal(wg_cookie_reply_consume(&third, &reply, t), -EBADMSG);

	assert_int_equal(wg_cookie_reply_consume(&P.a.maker, &reply, t), 0);
	assert_true(P.a.maker.cookie_valid);
	/* Only one reply per message sent. */
	assert_int_equal(wg_cookie_reply_consume(&P.a.maker, &reply, t), -EINVAL);

	/* The retry carries mac2 and is accepted, from the same address only. */
	usleep(40000);
	assert_int_equal(wg_noise_create_initiation(&P.a.hs, &P.a.id, 0xabd, &retry), 0);
	wg_cookie_add_macs(&P.a.maker, (uint8_t *)&retry, sizeof(retry), t + 1000);
	assert_false(sodium_is_zero(retry.macs.mac2, 16));
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&retry,
	                                    sizeof(retry), (struct sockaddr *)&src, true,
	                                    t + 1000),
	                 WG_COOKIE_VALID_MAC_WITH_COOKIE);
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&retry,
	                                    sizeof(retry), (struct sockaddr *)&other,
	                                    true, t + 1000),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	other = src;
	other.sin_port = htons(40001);
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&retry,
	                                    sizeof(retry), (struct sockaddr *)&other,
	                                    true, t + 1000),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&retry,
	                                    sizeof(retry), (struct sockaddr *)&src6, true,
	                                    t + 1000),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	assert_int_equal(
	    wg_noise_consume_initiation(&P.b.id, &retry, t + 1000, lookup_a, &P, &got),
	    0);

	/* After B's secret rotates (120 s), the old cookie no longer counts. */
	uint64_t later = t + (uint64_t)(WG_COOKIE_SECRET_MAX_AGE + 1) * 1000000000ULL;
	assert_int_equal(wg_cookie_validate(&P.b.checker, (uint8_t *)&retry,
	                                    sizeof(retry), (struct sockaddr *)&src, true,
	                                    later),
	                 WG_COOKIE_VALID_MAC_BUT_NO_COOKIE);
	/* And A stops using a cookie older than 115 s. */
	wg_cookie_add_macs(&P.a.maker, (uint8_t *)&retry, sizeof(retry), later);
	assert_true(sodium_is_zero(retry.macs.mac2, 16));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_constants),
	    cmocka_unit_test(test_known_answer_responder),
	    cmocka_unit_test(test_handshake_no_psk),
	    cmocka_unit_test(test_handshake_psk_both_directions),
	    cmocka_unit_test(test_psk_mismatch),
	    cmocka_unit_test(test_tampered_initiation),
	    cmocka_unit_test(test_tampered_response),
	    cmocka_unit_test(test_replayed_initiation),
	    cmocka_unit_test(test_initiation_flood),
	    cmocka_unit_test(test_unknown_peer_and_low_order),
	    cmocka_unit_test(test_tai64n),
	    cmocka_unit_test(test_mac1),
	    cmocka_unit_test(test_cookie_reply_under_load),
	};

	randombytes_set_implementation(&det_impl);
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
