/* BLAKE2s per RFC 7693 (sequential mode, no salt/personalisation), plus the
 * HMAC and KDF constructions WireGuard uses. Written from the RFC. */
#include "core/crypto/blake2s.h"

#include <sodium.h>
#include <string.h>

static const uint32_t blake2s_iv[8] = {
    0x6A09E667UL, 0xBB67AE85UL, 0x3C6EF372UL, 0xA54FF53AUL,
    0x510E527FUL, 0x9B05688CUL, 0x1F83D9ABUL, 0x5BE0CD19UL,
};

static const uint8_t blake2s_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint32_t rotr32(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static inline uint32_t load32_le(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline void store32_le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#define G(a, b, c, d, x, y)                                                              \
	do {                                                                             \
		v[a] = v[a] + v[b] + (x);                                                \
		v[d] = rotr32(v[d] ^ v[a], 16);                                          \
		v[c] = v[c] + v[d];                                                      \
		v[b] = rotr32(v[b] ^ v[c], 12);                                          \
		v[a] = v[a] + v[b] + (y);                                                \
		v[d] = rotr32(v[d] ^ v[a], 8);                                           \
		v[c] = v[c] + v[d];                                                      \
		v[b] = rotr32(v[b] ^ v[c], 7);                                           \
	} while (0)

/* The compression function F over `nblocks` consecutive 64-byte blocks;
 * the counter advances by `inc` per block (64, or the final partial size). */
static void blake2s_compress(struct blake2s_state *s, const uint8_t *block,
                             size_t nblocks, uint32_t inc)
{
	uint32_t m[16], v[16];

	while (nblocks-- > 0) {
		s->t[0] += inc;
		if (s->t[0] < inc)
			s->t[1]++;
		for (int i = 0; i < 16; i++)
			m[i] = load32_le(block + 4 * i);
		for (int i = 0; i < 8; i++) {
			v[i] = s->h[i];
			v[i + 8] = blake2s_iv[i];
		}
		v[12] ^= s->t[0];
		v[13] ^= s->t[1];
		v[14] ^= s->f[0];
		v[15] ^= s->f[1];
		for (int r = 0; r < 10; r++) {
			const uint8_t *sg = blake2s_sigma[r];
			G(0, 4, 8, 12, m[sg[0]], m[sg[1]]);
			G(1, 5, 9, 13, m[sg[2]], m[sg[3]]);
			G(2, 6, 10, 14, m[sg[4]], m[sg[5]]);
			G(3, 7, 11, 15, m[sg[6]], m[sg[7]]);
			G(0, 5, 10, 15, m[sg[8]], m[sg[9]]);
			G(1, 6, 11, 12, m[sg[10]], m[sg[11]]);
			G(2, 7, 8, 13, m[sg[12]], m[sg[13]]);
			G(3, 4, 9, 14, m[sg[14]], m[sg[15]]);
		}
		for (int i = 0; i < 8; i++)
			s->h[i] ^= v[i] ^ v[i + 8];
		block += BLAKE2S_BLOCKBYTES;
	}
	sodium_memzero(m, sizeof(m));
	sodium_memzero(v, sizeof(v));
}

#undef G

void blake2s_init_key(struct blake2s_state *s, size_t outlen, const uint8_t *key,
                      size_t keylen)
{
	/* Out-of-range parameters are caller bugs; clamp rather than overflow. */
	if (outlen == 0 || outlen > BLAKE2S_OUTBYTES)
		outlen = BLAKE2S_OUTBYTES;
	if (keylen > BLAKE2S_KEYBYTES || key == NULL)
		keylen = key == NULL ? 0 : BLAKE2S_KEYBYTES;

	memset(s, 0, sizeof(*s));
	memcpy(s->h, blake2s_iv, sizeof(s->h));
	/* Parameter block word 0: digest length, key length, fanout 1, depth 1. */
	s->h[0] ^= 0x01010000UL ^ ((uint32_t)keylen << 8) ^ (uint32_t)outlen;
	s->outlen = outlen;
	if (keylen > 0) {
		/* The key, zero-padded to a full block, is the first block. */
		memcpy(s->buf, key, keylen);
		s->buflen = BLAKE2S_BLOCKBYTES;
	}
}

void blake2s_init(struct blake2s_state *s, size_t outlen)
{
	blake2s_init_key(s, outlen, NULL, 0);
}

void blake2s_update(struct blake2s_state *s, const uint8_t *in, size_t inlen)
{
	if (inlen == 0)
		return;
	/* Keep the last block (even a full one) buffered: it must be compressed
	 * with the final flag set. */
	size_t fill = BLAKE2S_BLOCKBYTES - s->buflen;
	if (inlen > fill) {
		memcpy(s->buf + s->buflen, in, fill);
		blake2s_compress(s, s->buf, 1, BLAKE2S_BLOCKBYTES);
		s->buflen = 0;
		in += fill;
		inlen -= fill;
		if (inlen > BLAKE2S_BLOCKBYTES) {
			size_t nblocks = (inlen - 1) / BLAKE2S_BLOCKBYTES;
			blake2s_compress(s, in, nblocks, BLAKE2S_BLOCKBYTES);
			in += nblocks * BLAKE2S_BLOCKBYTES;
			inlen -= nblocks * BLAKE2S_BLOCKBYTES;
		}
	}
	memcpy(s->buf + s->buflen, in, inlen);
	s->buflen += inlen;
}

void blake2s_final(struct blake2s_state *s, uint8_t *out)
{
	uint8_t full[BLAKE2S_OUTBYTES];

	s->f[0] = 0xFFFFFFFFUL;
	memset(s->buf + s->buflen, 0, BLAKE2S_BLOCKBYTES - s->buflen);
	blake2s_compress(s, s->buf, 1, (uint32_t)s->buflen);
	for (int i = 0; i < 8; i++)
		store32_le(full + 4 * i, s->h[i]);
	memcpy(out, full, s->outlen);
	sodium_memzero(full, sizeof(full));
	sodium_memzero(s, sizeof(*s));
}

void blake2s(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen,
             const uint8_t *key, size_t keylen)
{
	struct blake2s_state s;

	blake2s_init_key(&s, outlen, key, keylen);
	blake2s_update(&s, in, inlen);
	blake2s_final(&s, out);
}

void blake2s_hmac(uint8_t out[BLAKE2S_OUTBYTES], const uint8_t *in, size_t inlen,
                  const uint8_t *key, size_t keylen)
{
	struct blake2s_state s;
	uint8_t kpad[BLAKE2S_BLOCKBYTES] = {0};
	uint8_t inner[BLAKE2S_OUTBYTES];

	if (keylen > BLAKE2S_BLOCKBYTES)
		blake2s(kpad, BLAKE2S_OUTBYTES, key, keylen, NULL, 0);
	else if (keylen > 0)
		memcpy(kpad, key, keylen);

	for (size_t i = 0; i < sizeof(kpad); i++)
		kpad[i] ^= 0x36;
	blake2s_init(&s, BLAKE2S_OUTBYTES);
	blake2s_update(&s, kpad, sizeof(kpad));
	blake2s_update(&s, in, inlen);
	blake2s_final(&s, inner);

	/* 0x36 ^ 0x5c turns the ipad key into the opad key. */
	for (size_t i = 0; i < sizeof(kpad); i++)
		kpad[i] ^= 0x36 ^ 0x5c;
	blake2s_init(&s, BLAKE2S_OUTBYTES);
	blake2s_update(&s, kpad, sizeof(kpad));
	blake2s_update(&s, inner, sizeof(inner));
	blake2s_final(&s, out);

	sodium_memzero(kpad, sizeof(kpad));
	sodium_memzero(inner, sizeof(inner));
}

void blake2s_kdf(uint8_t *out1, uint8_t *out2, uint8_t *out3, const uint8_t *in,
                 size_t inlen, const uint8_t ck[BLAKE2S_OUTBYTES])
{
	uint8_t prk[BLAKE2S_OUTBYTES];
	uint8_t t[BLAKE2S_OUTBYTES + 1];

	blake2s_hmac(prk, in, inlen, ck, BLAKE2S_OUTBYTES);

	/* t1 = HMAC(prk, 0x01) */
	t[0] = 1;
	blake2s_hmac(t, t, 1, prk, sizeof(prk));
	if (out1)
		memcpy(out1, t, BLAKE2S_OUTBYTES);
	if (out1 == NULL || out2 == NULL)
		goto out;

	/* t2 = HMAC(prk, t1 || 0x02) */
	t[BLAKE2S_OUTBYTES] = 2;
	blake2s_hmac(t, t, sizeof(t), prk, sizeof(prk));
	memcpy(out2, t, BLAKE2S_OUTBYTES);
	if (out3 == NULL)
		goto out;

	/* t3 = HMAC(prk, t2 || 0x03) */
	t[BLAKE2S_OUTBYTES] = 3;
	blake2s_hmac(t, t, sizeof(t), prk, sizeof(prk));
	memcpy(out3, t, BLAKE2S_OUTBYTES);
out:
	sodium_memzero(prk, sizeof(prk));
	sodium_memzero(t, sizeof(t));
}
