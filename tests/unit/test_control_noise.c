/* core/control/noise_ik: Noise_IK_25519_ChaChaPoly_BLAKE2s.
 *  - the cacophony test vector for this protocol (prologue "John Galt", fixed
 *    keys): both handshake messages, the handshake hash and four transport
 *    messages are byte-identical;
 *  - round trips with the TAI64N convention, payloads both ways, transport
 *    both ways; a client pinning a different server key fails cleanly at
 *    the responder; every flipped byte of either message is refused;
 *  - a replayed message 1 is recognisable by its timestamp;
 *  - nonce exhaustion is refused; a failed decrypt does not consume a nonce;
 *  - state misuse (wrong order, wrong role) is refused. */
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

#include "core/control/noise_ik.h"

static size_t unhex(uint8_t *out, const char *hex)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

/* From cacophony's vectors (Noise_IK_25519_ChaChaPoly_BLAKE2s). */
#define V_PROLOGUE "John Galt"
#define V_INIT_S   "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"
#define V_INIT_E   "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
#define V_RESP_S   "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"
#define V_RESP_E   "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
#define V_RESP_PUB "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62"
#define V_HASH     "48f3cb8bc9319da4ba1e9933991b1c4ed4034f1f126a76d3a1fbcfd7f94248d4"

static const char *const v_msgs[][2] = {
    {"4c756477696720766f6e204d69736573",
     "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79440b03ddc7aac5123d"
     "06a1b23b71670e32e76c28239a7ca4ac8f784de7e44c1adbfc6e83fef7352a58d9d56157400c0a73"
     "7b1d171ce368229c7b752ac25b8faf4eca690f6d896f543be02c996ab2b86b76"},
    {"4d757272617920526f746862617264",
     "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d9b5a8927f0ac965"
     "5ef76833bc7e5561f42e691ac8404efd6fbd6308b6a27c"},
    {"462e20412e20486179656b", "2c256ed08fcd08c2980f954ee4beaccb61c9581340f5dd2fd1cf3b"},
    {"4361726c204d656e676572", "d6033f70eee20945c7c9dba304e397ee3b284ff5e00fd9efb095d3"},
    {"4a65616e2d426170746973746520536179",
     "a9c068ca5d8babf72560652d8e851adbfac35c8a66e810d560863173e96adf4cfe"},
    {"457567656e2042f6686d20766f6e2042617765726b",
     "2a09d8f459e5927e40fdd2eddc99bdafb04e13a26f145cb5cfe9e6ba34c94331ebc17d5156"},
};

static void test_cacophony_vector(void **state)
{
	uint8_t is[32], ie[32], rs[32], re[32], rpub[32], want_pub[32], hash[32];
	uint8_t pl[64], want[256], got[256], back[256];
	struct ctl_noise_handshake ini, res;
	struct ctl_noise_transport ti, tr;
	size_t pl_len, want_len, got_len, back_len;
	const uint8_t *pro = (const uint8_t *)V_PROLOGUE;

	(void)state;
	unhex(is, V_INIT_S);
	unhex(ie, V_INIT_E);
	unhex(rs, V_RESP_S);
	unhex(re, V_RESP_E);
	unhex(want_pub, V_RESP_PUB);
	assert_int_equal(ctl_noise_public_key(rpub, rs), 0);
	assert_memory_equal(rpub, want_pub, 32);

	assert_int_equal(
	    ctl_noise_init_initiator(&ini, is, rpub, pro, strlen(V_PROLOGUE)), 0);
	assert_int_equal(ctl_noise_init_responder(&res, rs, pro, strlen(V_PROLOGUE)), 0);
	assert_int_equal(ctl_noise_set_ephemeral(&ini, ie), 0);
	assert_int_equal(ctl_noise_set_ephemeral(&res, re), 0);

	/* message 1 */
	pl_len = unhex(pl, v_msgs[0][0]);
	want_len = unhex(want, v_msgs[0][1]);
	assert_int_equal(
	    ctl_noise_write_msg1_raw(&ini, pl, pl_len, got, sizeof(got), &got_len), 0);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
	assert_int_equal(
	    ctl_noise_read_msg1_raw(&res, got, got_len, back, sizeof(back), &back_len),
	    0);
	assert_int_equal(back_len, pl_len);
	assert_memory_equal(back, pl, pl_len);
	uint8_t ipub[32];
	ctl_noise_public_key(ipub, is);
	assert_memory_equal(ctl_noise_remote_static(&res), ipub, 32);

	/* message 2 */
	pl_len = unhex(pl, v_msgs[1][0]);
	want_len = unhex(want, v_msgs[1][1]);
	assert_int_equal(
	    ctl_noise_write_msg2(&res, pl, pl_len, got, sizeof(got), &got_len), 0);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
	assert_int_equal(
	    ctl_noise_read_msg2(&ini, got, got_len, back, sizeof(back), &back_len), 0);
	assert_int_equal(back_len, pl_len);
	assert_memory_equal(back, pl, pl_len);

	unhex(hash, V_HASH);
	assert_memory_equal(ctl_noise_handshake_hash(&ini), hash, 32);
	assert_memory_equal(ctl_noise_handshake_hash(&res), hash, 32);
	assert_int_equal(ctl_noise_split(&ini, &ti), 0);
	assert_int_equal(ctl_noise_split(&res, &tr), 0);

	/* transport: even messages initiator -> responder */
	for (size_t i = 2; i < sizeof(v_msgs) / sizeof(v_msgs[0]); i++) {
		struct ctl_noise_transport *tx = i % 2 == 0 ? &ti : &tr;
		struct ctl_noise_transport *rx = i % 2 == 0 ? &tr : &ti;

		pl_len = unhex(pl, v_msgs[i][0]);
		want_len = unhex(want, v_msgs[i][1]);
		assert_int_equal(ctl_noise_encrypt(tx, pl, pl_len, got), 0);
		assert_int_equal(pl_len + CTL_NOISE_TAG_LEN, want_len);
		assert_memory_equal(got, want, want_len);
		assert_int_equal(ctl_noise_decrypt(rx, got, want_len, back), 0);
		assert_memory_equal(back, pl, pl_len);
	}
	ctl_noise_transport_wipe(&ti);
	ctl_noise_transport_wipe(&tr);
	ctl_noise_handshake_wipe(&ini);
	ctl_noise_handshake_wipe(&res);
}

struct pair {
	uint8_t ci[32], ci_pub[32]; /* client machine key */
	uint8_t sv[32], sv_pub[32]; /* server control key */
	struct ctl_noise_handshake ini, res;
	uint8_t m1[512], m2[512];
	size_t m1_len, m2_len;
};

static void pair_init(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	ctl_noise_keypair(p->ci, p->ci_pub);
	ctl_noise_keypair(p->sv, p->sv_pub);
	assert_int_equal(ctl_noise_init_initiator(&p->ini, p->ci, p->sv_pub, NULL, 0), 0);
	assert_int_equal(ctl_noise_init_responder(&p->res, p->sv, NULL, 0), 0);
}

static void test_round_trip_with_payloads(void **state)
{
	struct pair p;
	struct ctl_noise_transport ti, tr;
	uint8_t buf[512], out[512];
	size_t n;
	const char *hello = "register me", *welcome = "welcome";

	(void)state;
	pair_init(&p);
	assert_int_equal(ctl_noise_write_msg1(&p.ini, (const uint8_t *)hello,
	                                      strlen(hello), p.m1, sizeof(p.m1),
	                                      &p.m1_len),
	                 0);
	assert_int_equal(p.m1_len, CTL_NOISE_MSG1_MIN + strlen(hello));
	assert_int_equal(
	    ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, strlen(hello));
	assert_memory_equal(buf, hello, n);
	assert_memory_equal(ctl_noise_remote_static(&p.res), p.ci_pub, 32);

	uint8_t now[12];
	ctl_tai64n_now(now);
	assert_false(ctl_tai64n_newer(ctl_noise_timestamp(&p.res), now));

	assert_int_equal(ctl_noise_write_msg2(&p.res, (const uint8_t *)welcome,
	                                      strlen(welcome), p.m2, sizeof(p.m2),
	                                      &p.m2_len),
	                 0);
	assert_int_equal(
	    ctl_noise_read_msg2(&p.ini, p.m2, p.m2_len, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, strlen(welcome));
	assert_memory_equal(buf, welcome, n);
	assert_memory_equal(ctl_noise_handshake_hash(&p.ini),
	                    ctl_noise_handshake_hash(&p.res), 32);

	assert_int_equal(ctl_noise_split(&p.ini, &ti), 0);
	assert_int_equal(ctl_noise_split(&p.res, &tr), 0);
	for (int i = 0; i < 100; i++) {
		size_t len = (size_t)i * 3;
		struct ctl_noise_transport *tx = i % 3 ? &ti : &tr;
		struct ctl_noise_transport *rx = i % 3 ? &tr : &ti;

		randombytes_buf(buf, len);
		memcpy(out, buf, len);
		/* in place */
		assert_int_equal(ctl_noise_encrypt(tx, out, len, out), 0);
		assert_int_equal(ctl_noise_decrypt(rx, out, len + 16, out), 0);
		assert_memory_equal(out, buf, len);
	}
	ctl_noise_transport_wipe(&ti);
	ctl_noise_transport_wipe(&tr);
}

static void test_empty_payloads(void **state)
{
	struct pair p;
	size_t n = 99;

	(void)state;
	pair_init(&p);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(p.m1_len, CTL_NOISE_MSG1_MIN);
	assert_int_equal(ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(
	    ctl_noise_write_msg2(&p.res, NULL, 0, p.m2, sizeof(p.m2), &p.m2_len), 0);
	assert_int_equal(p.m2_len, CTL_NOISE_MSG2_MIN);
	n = 99;
	assert_int_equal(ctl_noise_read_msg2(&p.ini, p.m2, p.m2_len, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
}

static void test_wrong_server_key(void **state)
{
	struct pair p;
	uint8_t other[32], other_pub[32], buf[64];
	size_t n;

	(void)state;
	pair_init(&p);
	/* The client pinned another server's key. */
	ctl_noise_keypair(other, other_pub);
	assert_int_equal(ctl_noise_init_initiator(&p.ini, p.ci, other_pub, NULL, 0), 0);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(
	    ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, buf, sizeof(buf), &n), -EBADMSG);
	/* The failed state refuses to go on. */
	assert_int_equal(
	    ctl_noise_write_msg2(&p.res, NULL, 0, p.m2, sizeof(p.m2), &p.m2_len),
	    -EINVAL);
}

static void test_wrong_prologue(void **state)
{
	struct pair p;
	size_t n;

	(void)state;
	pair_init(&p);
	assert_int_equal(
	    ctl_noise_init_responder(&p.res, p.sv, (const uint8_t *)"other", 5), 0);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, NULL, 0, &n),
	                 -EBADMSG);
}

static void test_tampered_msg1_every_byte(void **state)
{
	struct pair p;
	uint8_t m[512], buf[64];
	size_t n;

	(void)state;
	pair_init(&p);
	assert_int_equal(ctl_noise_write_msg1(&p.ini, (const uint8_t *)"x", 1, p.m1,
	                                      sizeof(p.m1), &p.m1_len),
	                 0);
	for (size_t i = 0; i < p.m1_len; i++) {
		struct ctl_noise_handshake res;

		assert_int_equal(ctl_noise_init_responder(&res, p.sv, NULL, 0), 0);
		memcpy(m, p.m1, p.m1_len);
		m[i] ^= 0x01;
		assert_int_equal(
		    ctl_noise_read_msg1(&res, m, p.m1_len, buf, sizeof(buf), &n),
		    -EBADMSG);
	}
	/* truncated and extended */
	for (size_t len = 0; len < p.m1_len; len++) {
		struct ctl_noise_handshake res;

		assert_int_equal(ctl_noise_init_responder(&res, p.sv, NULL, 0), 0);
		assert_true(ctl_noise_read_msg1(&res, p.m1, len, buf, sizeof(buf), &n) <
		            0);
	}
	/* the original still works */
	assert_int_equal(
	    ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, buf, sizeof(buf), &n), 0);
}

static void test_tampered_msg2_every_byte(void **state)
{
	struct pair p;
	uint8_t m[512], buf[64];
	size_t n;

	(void)state;
	pair_init(&p);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, NULL, 0, &n), 0);
	assert_int_equal(ctl_noise_write_msg2(&p.res, (const uint8_t *)"ok", 2, p.m2,
	                                      sizeof(p.m2), &p.m2_len),
	                 0);
	for (size_t i = 0; i < p.m2_len; i++) {
		struct ctl_noise_handshake ini = p.ini; /* a copy at step 1 */

		memcpy(m, p.m2, p.m2_len);
		m[i] ^= 0x80;
		assert_int_equal(
		    ctl_noise_read_msg2(&ini, m, p.m2_len, buf, sizeof(buf), &n),
		    -EBADMSG);
		ctl_noise_handshake_wipe(&ini);
	}
	assert_int_equal(
	    ctl_noise_read_msg2(&p.ini, p.m2, p.m2_len, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 2);
}

static void test_replayed_msg1_detectable(void **state)
{
	struct pair p;
	struct ctl_noise_handshake res2;
	uint8_t last_seen[12], ts2[12];
	size_t n;

	(void)state;
	pair_init(&p);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(ctl_noise_read_msg1(&p.res, p.m1, p.m1_len, NULL, 0, &n), 0);
	memcpy(last_seen, ctl_noise_timestamp(&p.res), 12);

	/* The same bytes again: decrypts fine, but the timestamp is not newer. */
	assert_int_equal(ctl_noise_init_responder(&res2, p.sv, NULL, 0), 0);
	assert_int_equal(ctl_noise_read_msg1(&res2, p.m1, p.m1_len, NULL, 0, &n), 0);
	memcpy(ts2, ctl_noise_timestamp(&res2), 12);
	assert_false(ctl_tai64n_newer(ts2, last_seen));

	/* A fresh handshake from the same client is newer. */
	struct ctl_noise_handshake ini2, res3;
	uint8_t m[256];
	size_t mlen;
	assert_int_equal(ctl_noise_init_initiator(&ini2, p.ci, p.sv_pub, NULL, 0), 0);
	assert_int_equal(ctl_noise_write_msg1(&ini2, NULL, 0, m, sizeof(m), &mlen), 0);
	assert_int_equal(ctl_noise_init_responder(&res3, p.sv, NULL, 0), 0);
	assert_int_equal(ctl_noise_read_msg1(&res3, m, mlen, NULL, 0, &n), 0);
	assert_true(ctl_tai64n_newer(ctl_noise_timestamp(&res3), last_seen));
}

static void test_tai64n_order(void **state)
{
	uint8_t a[12] = {0x40, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5};
	uint8_t b[12];

	(void)state;
	memcpy(b, a, 12);
	assert_false(ctl_tai64n_newer(a, b));
	b[11] = 4;
	assert_true(ctl_tai64n_newer(a, b));
	assert_false(ctl_tai64n_newer(b, a));
	b[11] = 0xff;
	b[7] = 0; /* an earlier second with more nanoseconds is older */
	assert_true(ctl_tai64n_newer(a, b));
	ctl_tai64n_now(b);
	assert_int_equal(b[0], 0x40);
	assert_true(ctl_tai64n_newer(b, a));
}

static void finish(struct pair *p, struct ctl_noise_transport *ti,
                   struct ctl_noise_transport *tr)
{
	size_t n;

	assert_int_equal(
	    ctl_noise_write_msg1(&p->ini, NULL, 0, p->m1, sizeof(p->m1), &p->m1_len), 0);
	assert_int_equal(ctl_noise_read_msg1(&p->res, p->m1, p->m1_len, NULL, 0, &n), 0);
	assert_int_equal(
	    ctl_noise_write_msg2(&p->res, NULL, 0, p->m2, sizeof(p->m2), &p->m2_len), 0);
	assert_int_equal(ctl_noise_read_msg2(&p->ini, p->m2, p->m2_len, NULL, 0, &n), 0);
	assert_int_equal(ctl_noise_split(&p->ini, ti), 0);
	assert_int_equal(ctl_noise_split(&p->res, tr), 0);
}

static void test_nonces(void **state)
{
	struct pair p;
	struct ctl_noise_transport ti, tr;
	uint8_t c1[32], c2[32], c3[32], out[16];

	(void)state;
	pair_init(&p);
	finish(&p, &ti, &tr);
	/* The same plaintext twice gives different ciphertexts (nonce 0, 1). */
	assert_int_equal(ctl_noise_encrypt(&ti, (const uint8_t *)"abcd", 4, c1), 0);
	assert_int_equal(ctl_noise_encrypt(&ti, (const uint8_t *)"abcd", 4, c2), 0);
	assert_memory_not_equal(c1, c2, 20);
	/* Out of order is refused (TCP never reorders), a failure does not
	 * consume the nonce, then in order works. */
	assert_int_equal(ctl_noise_decrypt(&tr, c2, 20, out), -EBADMSG);
	assert_int_equal(tr.recv.n, 0);
	assert_int_equal(ctl_noise_decrypt(&tr, c1, 20, out), 0);
	assert_int_equal(ctl_noise_decrypt(&tr, c1, 20, out), -EBADMSG); /* replay */
	assert_int_equal(ctl_noise_decrypt(&tr, c2, 20, out), 0);
	assert_int_equal(ctl_noise_decrypt(&tr, c2, 15, out), -EBADMSG); /* short */
	/* The direction keys differ: the responder's own message is not
	 * accepted back by itself. */
	assert_int_equal(ctl_noise_encrypt(&tr, (const uint8_t *)"abcd", 4, c3), 0);
	assert_int_equal(ctl_noise_decrypt(&tr, c3, 20, out), -EBADMSG);

	/* Exhaustion: nonce 2^64-2 is the last usable one. */
	ti.send.n = UINT64_MAX - 1;
	tr.recv.n = UINT64_MAX - 1;
	assert_int_equal(ctl_noise_encrypt(&ti, (const uint8_t *)"z", 1, c1), 0);
	assert_int_equal(ctl_noise_decrypt(&tr, c1, 17, out), 0);
	assert_int_equal(ctl_noise_encrypt(&ti, (const uint8_t *)"z", 1, c1), -EOVERFLOW);
	assert_int_equal(ctl_noise_decrypt(&tr, c1, 17, out), -EOVERFLOW);
	ctl_noise_transport_wipe(&ti);
	assert_int_equal(ctl_noise_encrypt(&ti, (const uint8_t *)"z", 1, c1), -EINVAL);
	ctl_noise_transport_wipe(&tr);
}

static void test_misuse(void **state)
{
	struct pair p;
	struct ctl_noise_transport t;
	uint8_t small[CTL_NOISE_MSG1_MIN - 1];
	size_t n;
	uint8_t zero[32] = {0};

	(void)state;
	pair_init(&p);
	/* wrong role / order */
	assert_int_equal(ctl_noise_write_msg1(&p.res, NULL, 0, p.m1, sizeof(p.m1), &n),
	                 -EINVAL);
	assert_int_equal(ctl_noise_write_msg2(&p.ini, NULL, 0, p.m2, sizeof(p.m2), &n),
	                 -EINVAL);
	assert_int_equal(ctl_noise_split(&p.ini, &t), -EINVAL);
	/* output buffer too small leaves the state usable */
	assert_int_equal(ctl_noise_write_msg1(&p.ini, NULL, 0, small, sizeof(small), &n),
	                 -EMSGSIZE);
	assert_int_equal(
	    ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &p.m1_len), 0);
	assert_int_equal(ctl_noise_write_msg1(&p.ini, NULL, 0, p.m1, sizeof(p.m1), &n),
	                 -EINVAL);
	/* payload larger than the caller's buffer */
	struct ctl_noise_handshake ini2, res2;
	uint8_t m[256];
	assert_int_equal(ctl_noise_init_initiator(&ini2, p.ci, p.sv_pub, NULL, 0), 0);
	assert_int_equal(
	    ctl_noise_write_msg1(&ini2, (const uint8_t *)"abc", 3, m, sizeof(m), &n), 0);
	assert_int_equal(ctl_noise_init_responder(&res2, p.sv, NULL, 0), 0);
	uint8_t two[2];
	size_t got;
	assert_int_equal(ctl_noise_read_msg1(&res2, m, n, two, sizeof(two), &got),
	                 -EMSGSIZE);
	/* a low-order (all-zero) ephemeral is refused */
	assert_int_equal(ctl_noise_init_responder(&res2, p.sv, NULL, 0), 0);
	memcpy(m, p.m1, p.m1_len);
	memcpy(m, zero, 32);
	assert_int_equal(ctl_noise_read_msg1(&res2, m, p.m1_len, NULL, 0, &got),
	                 -EBADMSG);
	/* a client pinning a low-order server key cannot even write message 1 */
	assert_int_equal(ctl_noise_init_initiator(&ini2, p.ci, zero, NULL, 0), 0);
	assert_int_equal(ctl_noise_write_msg1(&ini2, NULL, 0, m, sizeof(m), &n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cacophony_vector),
	    cmocka_unit_test(test_round_trip_with_payloads),
	    cmocka_unit_test(test_empty_payloads),
	    cmocka_unit_test(test_wrong_server_key),
	    cmocka_unit_test(test_wrong_prologue),
	    cmocka_unit_test(test_tampered_msg1_every_byte),
	    cmocka_unit_test(test_tampered_msg2_every_byte),
	    cmocka_unit_test(test_replayed_msg1_detectable),
	    cmocka_unit_test(test_tai64n_order),
	    cmocka_unit_test(test_nonces),
	    cmocka_unit_test(test_misuse),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
