/* SHA-1 and HMAC-SHA1: see sha1.h. */
#include "core/crypto/sha1.h"

#include <sodium.h>
#include <string.h>

struct sha1_ctx {
	uint32_t h[5];
	uint64_t total;
	uint8_t buf[64];
	size_t n;
};

static uint32_t rol(uint32_t x, int k)
{
	return x << k | x >> (32 - k);
}

static void block(struct sha1_ctx *c, const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = c->h[0], b = c->h[1], d = c->h[3], e = c->h[4], cc = c->h[2];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & cc) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ cc ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & cc) | (b & d) | (cc & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ cc ^ d;
			k = 0xCA62C1D6;
		}
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = cc;
		cc = rol(b, 30);
		b = a;
		a = t;
	}
	c->h[0] += a;
	c->h[1] += b;
	c->h[2] += cc;
	c->h[3] += d;
	c->h[4] += e;
}

static void init(struct sha1_ctx *c)
{
	static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476,
	                               0xC3D2E1F0};
	memcpy(c->h, iv, sizeof iv);
	c->total = 0;
	c->n = 0;
}

static void update(struct sha1_ctx *c, const uint8_t *p, size_t len)
{
	c->total += len;
	while (len) {
		size_t k = 64 - c->n < len ? 64 - c->n : len;
		memcpy(c->buf + c->n, p, k);
		c->n += k;
		p += k;
		len -= k;
		if (c->n == 64) {
			block(c, c->buf);
			c->n = 0;
		}
	}
}

static void final(struct sha1_ctx *c, uint8_t out[SHA1_LEN])
{
	uint64_t bits = c->total * 8;
	uint8_t pad = 0x80, zero = 0, len[8];
	update(c, &pad, 1);
	while (c->n != 56)
		update(c, &zero, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	update(c, len, 8);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(c->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)c->h[i];
	}
	sodium_memzero(c, sizeof *c);
}

void sha1(uint8_t out[SHA1_LEN], const uint8_t *in, size_t len)
{
	struct sha1_ctx c;
	init(&c);
	update(&c, in, len);
	final(&c, out);
}

void hmac_sha1(uint8_t out[SHA1_LEN], const uint8_t *key, size_t keylen,
               const uint8_t *in1, size_t len1, const uint8_t *in2, size_t len2)
{
	uint8_t k[64] = {0}, pad[64], inner[SHA1_LEN];
	struct sha1_ctx c;
	if (keylen > 64)
		sha1(k, key, keylen);
	else if (keylen)
		memcpy(k, key, keylen);
	for (int i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x36;
	init(&c);
	update(&c, pad, 64);
	update(&c, in1, len1);
	if (len2)
		update(&c, in2, len2);
	final(&c, inner);
	for (int i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x5c;
	init(&c);
	update(&c, pad, 64);
	update(&c, inner, SHA1_LEN);
	final(&c, out);
	sodium_memzero(k, sizeof k);
	sodium_memzero(pad, sizeof pad);
	sodium_memzero(inner, sizeof inner);
}
