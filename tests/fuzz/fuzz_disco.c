/* Fuzzes the disco codec (core/disco). The two key pairs are fixed (private
 * keys 32 x 0x41 for A, the sender, and 32 x 0x42 for B), so seeds sealed
 * with them open. The first input byte chooses what the rest is:
 *
 *  even: a datagram off the wire, opened by B: disco_open never reads past
 *        it, answers one of its four results, and a message it opens seals
 *        again and opens to the same message.
 *  odd:  a plaintext (type, version, body), sealed from A to B, so the body
 *        parser is reached and not only the tag check: it opens (never
 *        -EBADMSG); opened, the message seals to a plaintext that is a
 *        prefix of the input (decode then encode is the identity on what
 *        was read); the datagram cut short by (first byte >> 1) bytes, or
 *        with one byte changed, does not open.
 *
 * Seeds: seeds/disco/wire-* are datagrams sealed with these keys (first
 * byte 0x00), seeds/disco/plain-* plaintexts (first byte 0x01). */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/disco/disco.h"

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static uint8_t a_pub[32], b_pub[32], shared[DISCO_SHARED_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t a_priv[32], b_priv[32], other[DISCO_SHARED_LEN];
	if (sodium_init() < 0)
		abort();
	memset(a_priv, 0x41, sizeof a_priv);
	memset(b_priv, 0x42, sizeof b_priv);
	if (crypto_scalarmult_base(a_pub, a_priv) != 0 ||
	    crypto_scalarmult_base(b_pub, b_priv) != 0 ||
	    disco_shared(shared, a_pub, b_priv) != 0 ||
	    disco_shared(other, b_pub, a_priv) != 0 ||
	    memcmp(shared, other, sizeof other))
		abort();
	return 0;
}

static bool msg_equal(const struct disco_msg *x, const struct disco_msg *y)
{
	if (x->type != y->type || x->version != y->version)
		return false;
	switch (x->type) {
	case DISCO_PING:
		return !memcmp(x->txid, y->txid, DISCO_TXID_LEN) &&
		       !memcmp(x->node_key, y->node_key, DISCO_NODE_KEY_LEN);
	case DISCO_PONG:
		return !memcmp(x->txid, y->txid, DISCO_TXID_LEN) &&
		       disco_addr_equal(&x->src, &y->src);
	case DISCO_CALL_ME_MAYBE:
		if (x->n_eps != y->n_eps)
			return false;
		for (unsigned i = 0; i < x->n_eps; i++)
			if (!disco_addr_equal(&x->eps[i], &y->eps[i]))
				return false;
		return x->nat == y->nat &&
		       (x->nat == DISCO_NAT_UNKNOWN || disco_addr_equal(&x->pub, &y->pub));
	case DISCO_BIRTHDAY:
		return disco_addr_equal(&x->pub, &y->pub) && x->socks == y->socks &&
		       x->probes == y->probes;
	}
	return false;
}

/* An opened message: its fields are in range, it seals again (as A, to B)
 * and opens to itself. Its plaintext goes to plain (DISCO_PLAIN_MAX), its
 * length is returned. */
static size_t reseal(const struct disco_msg *m, uint8_t *plain)
{
	CHECK(m->version == DISCO_VERSION && disco_type_name(m->type));
	CHECK(m->n_eps <= DISCO_CALLMEMAYBE_MAX);
	CHECK(m->nat <= DISCO_NAT_HARD);
	uint8_t d[DISCO_MAX_LEN];
	size_t n = disco_seal(d, sizeof d, a_pub, shared, m);
	CHECK(n >= DISCO_MIN_LEN && n <= DISCO_MAX_LEN && disco_is_message(d, n));
	CHECK(memcmp(disco_sender_key(d), a_pub, 32) == 0);
	struct disco_msg back;
	CHECK(disco_open(d, n, shared, &back) == 0 && msg_equal(m, &back));
	CHECK(crypto_box_open_easy_afternm(plain, d + DISCO_HDR_LEN, n - DISCO_HDR_LEN,
	                                   d + DISCO_MAGIC_LEN + DISCO_KEY_LEN,
	                                   shared) == 0);
	return n - DISCO_MIN_LEN;
}

static void wire(const uint8_t *p, size_t len)
{
	/* A copy of exactly len bytes, so ASan sees any read past it. */
	uint8_t *q = malloc(len ? len : 1);
	CHECK(q);
	memcpy(q, p, len);
	struct disco_msg m;
	int r = disco_open(q, len, shared, &m);
	CHECK(r == 0 || r == -EBADMSG || r == -EPROTO || r == -EINVAL);
	if (r == -EBADMSG)
		CHECK(m.type == 0 && m.version == 0);
	if (r != -EBADMSG)
		CHECK(disco_is_message(q, len) && len <= DISCO_OPEN_MAX);
	if (disco_is_message(q, len))
		CHECK(disco_sender_key(q) == q + DISCO_MAGIC_LEN);
	if (r == 0) {
		uint8_t plain[DISCO_PLAIN_MAX];
		reseal(&m, plain);
	}
	free(q);
}

static void plaintext(uint8_t mode, const uint8_t *plain, size_t plain_len)
{
	static const uint8_t nonce[DISCO_NONCE_LEN] = {0};
	uint8_t d[DISCO_OPEN_MAX];
	size_t n = disco_seal_plain(d, sizeof d, a_pub, shared, nonce, plain, plain_len);
	if (plain_len > DISCO_OPEN_MAX - DISCO_MIN_LEN) {
		CHECK(n == 0);
		return;
	}
	CHECK(n == DISCO_MIN_LEN + plain_len);
	struct disco_msg m;
	int r = disco_open(d, n, shared, &m);
	CHECK(r == 0 || r == -EPROTO || r == -EINVAL);
	if (plain_len >= 2 && r != 0)
		CHECK(m.type == plain[0] && m.version == plain[1]);
	if (r == -EPROTO)
		CHECK(plain[1] != DISCO_VERSION || !disco_type_name(plain[0]));
	if (r == 0) {
		uint8_t again[DISCO_PLAIN_MAX];
		size_t k = reseal(&m, again);
		CHECK(k <= plain_len && memcmp(again, plain, k) == 0);
	}
	/* Cut short, or one byte changed: refused. */
	size_t cut = mode >> 1;
	struct disco_msg x;
	if (cut > 0 && cut <= n)
		CHECK(disco_open(d, n - cut, shared, &x) == -EBADMSG);
	size_t at = (size_t)mode * 7 % n;
	d[at] ^= (uint8_t)(mode | 1);
	CHECK(disco_open(d, n, shared, &x) == -EBADMSG ||
	      (at >= DISCO_MAGIC_LEN && at < DISCO_MAGIC_LEN + DISCO_KEY_LEN));
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t len)
{
	if (len == 0)
		return 0;
	if (p[0] & 1)
		plaintext(p[0], p + 1, len - 1);
	else
		wire(p + 1, len - 1);
	return 0;
}
