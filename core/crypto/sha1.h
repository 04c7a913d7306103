/* SHA-1 (FIPS 180-4) and HMAC-SHA1 (RFC 2104), only for STUN's
 * MESSAGE-INTEGRITY (RFC 5389 section 15.4), which is defined over them.
 * libsodium has no SHA-1. Never use it for anything new. */
#ifndef MESH_SHA1_H
#define MESH_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_LEN 20

void sha1(uint8_t out[SHA1_LEN], const uint8_t *in, size_t len);
/* HMAC-SHA1 of the concatenation in1 || in2 (in2 may be NULL with len2 0). */
void hmac_sha1(uint8_t out[SHA1_LEN], const uint8_t *key, size_t keylen,
               const uint8_t *in1, size_t len1, const uint8_t *in2, size_t len2);

#endif
