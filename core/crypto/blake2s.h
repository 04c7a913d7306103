/* BLAKE2s (RFC 7693) and the HMAC/HKDF constructions WireGuard builds on it.
 * libsodium has no BLAKE2s, so it lives here. */
#ifndef MESH_BLAKE2S_H
#define MESH_BLAKE2S_H

#include <stddef.h>
#include <stdint.h>

#define BLAKE2S_OUTBYTES   32
#define BLAKE2S_BLOCKBYTES 64
#define BLAKE2S_KEYBYTES   32

struct blake2s_state {
	uint32_t h[8];
	uint32_t t[2];
	uint32_t f[2];
	uint8_t buf[BLAKE2S_BLOCKBYTES];
	size_t buflen;
	size_t outlen;
};

/* outlen in 1..32; keylen in 0..32 (key may be NULL when keylen is 0). */
void blake2s_init(struct blake2s_state *s, size_t outlen);
void blake2s_init_key(struct blake2s_state *s, size_t outlen, const uint8_t *key,
                      size_t keylen);
void blake2s_update(struct blake2s_state *s, const uint8_t *in, size_t inlen);
/* Writes s->outlen bytes and wipes the state. */
void blake2s_final(struct blake2s_state *s, uint8_t *out);
/* One-shot keyed or unkeyed hash. */
void blake2s(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen,
             const uint8_t *key, size_t keylen);

/* HMAC (RFC 2104) over BLAKE2s-256, as WireGuard's Hmac(). */
void blake2s_hmac(uint8_t out[BLAKE2S_OUTBYTES], const uint8_t *in, size_t inlen,
                  const uint8_t *key, size_t keylen);

/* WireGuard's KDF_n (HKDF with HMAC-BLAKE2s, chaining key as salt):
 *   t0 = HMAC(ck, in); t1 = HMAC(t0, 0x1); t2 = HMAC(t0, t1 || 0x2); t3 = ...
 * Any of out1/out2/out3 may be NULL to stop early (out1 must not be NULL).
 * Each output is 32 bytes. Intermediates are wiped. */
void blake2s_kdf(uint8_t *out1, uint8_t *out2, uint8_t *out3, const uint8_t *in,
                 size_t inlen, const uint8_t ck[BLAKE2S_OUTBYTES]);

#endif
