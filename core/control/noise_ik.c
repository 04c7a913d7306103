/* Noise_IK_25519_ChaChaPoly_BLAKE2s, written from the Noise spec (rev 34):
 * CipherState / SymmetricState / HandshakeState with the IK pattern's tokens
 * spelled out. BLAKE2s and its HMAC/HKDF come from core/crypto; X25519 and
 * ChaCha20-Poly1305 (IETF, 96-bit nonce) from libsodium. */
#include "core/control/noise_ik.h"

#include "core/crypto/blake2s.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROTOCOL_NAME "Noise_IK_25519_ChaChaPoly_BLAKE2s"

/* ---- CipherState ---- */

/* Noise's ChaChaPoly nonce: 32 zero bits, then n as 64-bit little endian. */
static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES],
                       uint64_t n)
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

static int cipher_encrypt(struct ctl_noise_cipher *c, const uint8_t *ad, size_t ad_len,
                          const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

	if (!c->has_key)
		return -EINVAL;
	if (c->n == UINT64_MAX)
		return -EOVERFLOW;
	make_nonce(nonce, c->n);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, ad_len, NULL,
	                                          nonce, c->k);
	c->n++;
	return 0;
}

static int cipher_decrypt(struct ctl_noise_cipher *c, const uint8_t *ad, size_t ad_len,
                          const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

	if (!c->has_key)
		return -EINVAL;
	if (c->n == UINT64_MAX)
		return -EOVERFLOW;
	if (len < CTL_NOISE_TAG_LEN)
		return -EBADMSG;
	make_nonce(nonce, c->n);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad,
	                                              ad_len, nonce, c->k) != 0)
		return -EBADMSG;
	c->n++;
	return 0;
}

static void cipher_init(struct ctl_noise_cipher *c, const uint8_t k[CTL_NOISE_KEY_LEN])
{
	memcpy(c->k, k, CTL_NOISE_KEY_LEN);
	c->n = 0;
	c->has_key = true;
}

/* ---- SymmetricState ---- */

static void mix_hash(struct ctl_noise_handshake *hs, const uint8_t *data, size_t len)
{
	struct blake2s_state s;

	blake2s_init(&s, CTL_NOISE_HASH_LEN);
	blake2s_update(&s, hs->h, CTL_NOISE_HASH_LEN);
	blake2s_update(&s, data, len);
	blake2s_final(&s, hs->h);
}

/* ck, k = HKDF(ck, ikm, 2); n = 0 */
static void mix_key(struct ctl_noise_handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t ck[CTL_NOISE_HASH_LEN], k[CTL_NOISE_KEY_LEN];

	blake2s_kdf(ck, k, NULL, ikm, len, hs->ck);
	memcpy(hs->ck, ck, sizeof(ck));
	cipher_init(&hs->cs, k);
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(k, sizeof(k));
}

/* X25519, refusing the all-zero output of a low-order point. */
static int mix_dh(struct ctl_noise_handshake *hs, const uint8_t priv[CTL_NOISE_KEY_LEN],
                  const uint8_t pub[CTL_NOISE_KEY_LEN])
{
	uint8_t shared[CTL_NOISE_KEY_LEN];

	if (crypto_scalarmult(shared, priv, pub) != 0 ||
	    sodium_is_zero(shared, sizeof(shared))) {
		sodium_memzero(shared, sizeof(shared));
		return -EINVAL;
	}
	mix_key(hs, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return 0;
}

/* out gets len + tag bytes (or len when there is no key yet). */
static int encrypt_and_hash(struct ctl_noise_handshake *hs, const uint8_t *in, size_t len,
                            uint8_t *out, size_t *out_len)
{
	int rc;

	if (!hs->cs.has_key) {
		memmove(out, in, len);
		*out_len = len;
	} else {
		rc = cipher_encrypt(&hs->cs, hs->h, CTL_NOISE_HASH_LEN, in, len, out);
		if (rc != 0)
			return rc;
		*out_len = len + CTL_NOISE_TAG_LEN;
	}
	mix_hash(hs, out, *out_len);
	return 0;
}

/* in is len bytes of ciphertext; out gets the plaintext (len - tag). */
static int decrypt_and_hash(struct ctl_noise_handshake *hs, const uint8_t *in, size_t len,
                            uint8_t *out)
{
	int rc;

	if (!hs->cs.has_key) {
		memmove(out, in, len);
	} else {
		rc = cipher_decrypt(&hs->cs, hs->h, CTL_NOISE_HASH_LEN, in, len, out);
		if (rc != 0)
			return rc;
	}
	mix_hash(hs, in, len);
	return 0;
}

/* ---- keys ---- */

int ctl_noise_public_key(uint8_t pub[CTL_NOISE_KEY_LEN],
                         const uint8_t priv[CTL_NOISE_KEY_LEN])
{
	return crypto_scalarmult_base(pub, priv) == 0 ? 0 : -EINVAL;
}

void ctl_noise_keypair(uint8_t priv[CTL_NOISE_KEY_LEN], uint8_t pub[CTL_NOISE_KEY_LEN])
{
	do {
		randombytes_buf(priv, CTL_NOISE_KEY_LEN);
	} while (ctl_noise_public_key(pub, priv) != 0);
}

/* ---- HandshakeState ---- */

static int init_common(struct ctl_noise_handshake *hs, enum ctl_noise_role role,
                       const uint8_t s_priv[CTL_NOISE_KEY_LEN], const uint8_t *prologue,
                       size_t prologue_len)
{
	memset(hs, 0, sizeof(*hs));
	hs->role = role;
	if (ctl_noise_public_key(hs->s_pub, s_priv) != 0) {
		ctl_noise_handshake_wipe(hs);
		return -EINVAL;
	}
	memcpy(hs->s_priv, s_priv, CTL_NOISE_KEY_LEN);
	/* The name is longer than HASHLEN, so h = HASH(name). */
	blake2s(hs->h, CTL_NOISE_HASH_LEN, (const uint8_t *)PROTOCOL_NAME,
	        strlen(PROTOCOL_NAME), NULL, 0);
	memcpy(hs->ck, hs->h, CTL_NOISE_HASH_LEN);
	if (!prologue) {
		prologue = (const uint8_t *)CTL_NOISE_PROLOGUE;
		prologue_len = strlen(CTL_NOISE_PROLOGUE);
	}
	mix_hash(hs, prologue, prologue_len);
	return 0;
}

int ctl_noise_init_initiator(struct ctl_noise_handshake *hs,
                             const uint8_t machine_priv[CTL_NOISE_KEY_LEN],
                             const uint8_t server_pub[CTL_NOISE_KEY_LEN],
                             const uint8_t *prologue, size_t prologue_len)
{
	int rc =
	    init_common(hs, CTL_NOISE_INITIATOR, machine_priv, prologue, prologue_len);

	if (rc != 0)
		return rc;
	memcpy(hs->rs, server_pub, CTL_NOISE_KEY_LEN);
	mix_hash(hs, hs->rs, CTL_NOISE_KEY_LEN); /* pre-message "<- s" */
	return 0;
}

int ctl_noise_init_responder(struct ctl_noise_handshake *hs,
                             const uint8_t server_priv[CTL_NOISE_KEY_LEN],
                             const uint8_t *prologue, size_t prologue_len)
{
	int rc =
	    init_common(hs, CTL_NOISE_RESPONDER, server_priv, prologue, prologue_len);

	if (rc != 0)
		return rc;
	mix_hash(hs, hs->s_pub, CTL_NOISE_KEY_LEN); /* pre-message "<- s" */
	return 0;
}

int ctl_noise_set_ephemeral(struct ctl_noise_handshake *hs,
                            const uint8_t e_priv[CTL_NOISE_KEY_LEN])
{
	if (hs->step != 0 || ctl_noise_public_key(hs->e_pub, e_priv) != 0)
		return -EINVAL;
	memcpy(hs->e_priv, e_priv, CTL_NOISE_KEY_LEN);
	hs->fixed_e = true;
	return 0;
}

/* Token "e" on the writing side. */
static void write_e(struct ctl_noise_handshake *hs, uint8_t *out)
{
	if (!hs->fixed_e)
		ctl_noise_keypair(hs->e_priv, hs->e_pub);
	memcpy(out, hs->e_pub, CTL_NOISE_KEY_LEN);
	mix_hash(hs, hs->e_pub, CTL_NOISE_KEY_LEN);
}

static int fail(struct ctl_noise_handshake *hs, int rc)
{
	enum ctl_noise_role role = hs->role;

	ctl_noise_handshake_wipe(hs);
	hs->role = role;
	hs->failed = true;
	return rc;
}

static bool ready(const struct ctl_noise_handshake *hs, enum ctl_noise_role role,
                  int step)
{
	return !hs->failed && hs->role == role && hs->step == step;
}

int ctl_noise_write_msg1_raw(struct ctl_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t out_cap,
                             size_t *out_len)
{
	size_t n, off;
	int rc;

	if (!ready(hs, CTL_NOISE_INITIATOR, 0))
		return -EINVAL;
	if (payload_len > CTL_NOISE_MAX_MSG - CTL_NOISE_MSG1_OVERHEAD ||
	    out_cap < CTL_NOISE_MSG1_OVERHEAD + payload_len)
		return -EMSGSIZE;
	write_e(hs, out); /* -> e */
	off = CTL_NOISE_KEY_LEN;
	if ((rc = mix_dh(hs, hs->e_priv, hs->rs)) != 0) /* es */
		return fail(hs, rc);
	if ((rc = encrypt_and_hash(hs, hs->s_pub, CTL_NOISE_KEY_LEN, out + off, &n)) != 0)
		return fail(hs, rc); /* s */
	off += n;
	if ((rc = mix_dh(hs, hs->s_priv, hs->rs)) != 0) /* ss */
		return fail(hs, rc);
	if ((rc = encrypt_and_hash(hs, payload, payload_len, out + off, &n)) != 0)
		return fail(hs, rc);
	*out_len = off + n;
	hs->step = 1;
	return 0;
}

/* Decrypts message 1's payload into dst (len - overhead bytes). */
static int read_msg1(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                     uint8_t *dst)
{
	const size_t s_enc = CTL_NOISE_KEY_LEN + CTL_NOISE_TAG_LEN;
	int rc;

	memcpy(hs->re, p, CTL_NOISE_KEY_LEN); /* -> e */
	mix_hash(hs, hs->re, CTL_NOISE_KEY_LEN);
	if ((rc = mix_dh(hs, hs->s_priv, hs->re)) != 0) /* es */
		return fail(hs, -EBADMSG);
	p += CTL_NOISE_KEY_LEN;
	if ((rc = decrypt_and_hash(hs, p, s_enc, hs->rs)) != 0) /* s */
		return fail(hs, -EBADMSG);
	p += s_enc;
	if ((rc = mix_dh(hs, hs->s_priv, hs->rs)) != 0) /* ss */
		return fail(hs, -EBADMSG);
	if ((rc = decrypt_and_hash(hs, p, len - CTL_NOISE_KEY_LEN - s_enc, dst)) != 0)
		return fail(hs, -EBADMSG);
	hs->step = 1;
	return 0;
}

int ctl_noise_read_msg1_raw(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                            uint8_t *payload, size_t payload_cap, size_t *payload_len)
{
	uint8_t *tmp;
	size_t plen;
	int rc;

	if (!ready(hs, CTL_NOISE_RESPONDER, 0))
		return -EINVAL;
	if (len < CTL_NOISE_MSG1_OVERHEAD || len > CTL_NOISE_MAX_MSG)
		return fail(hs, -EBADMSG);
	plen = len - CTL_NOISE_MSG1_OVERHEAD;
	if (plen > payload_cap)
		return fail(hs, -EMSGSIZE);
	/* A scratch copy so a failed message leaves payload untouched. */
	tmp = malloc(plen ? plen : 1);
	if (!tmp)
		return fail(hs, -ENOMEM);
	rc = read_msg1(hs, p, len, tmp);
	if (rc == 0) {
		if (plen)
			memcpy(payload, tmp, plen);
		*payload_len = plen;
	}
	sodium_memzero(tmp, plen);
	free(tmp);
	return rc;
}

int ctl_noise_write_msg1(struct ctl_noise_handshake *hs, const uint8_t *payload,
                         size_t payload_len, uint8_t *out, size_t out_cap,
                         size_t *out_len)
{
	uint8_t *buf;
	int rc;

	if (payload_len > CTL_NOISE_MSG1_PAYLOAD_MAX)
		return -EMSGSIZE;
	buf = malloc(CTL_NOISE_TIMESTAMP_LEN + payload_len);
	if (!buf)
		return -ENOMEM;
	ctl_tai64n_now(buf);
	if (payload_len)
		memcpy(buf + CTL_NOISE_TIMESTAMP_LEN, payload, payload_len);
	rc = ctl_noise_write_msg1_raw(hs, buf, CTL_NOISE_TIMESTAMP_LEN + payload_len, out,
	                              out_cap, out_len);
	sodium_memzero(buf, CTL_NOISE_TIMESTAMP_LEN + payload_len);
	free(buf);
	return rc;
}

int ctl_noise_read_msg1(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                        uint8_t *payload, size_t payload_cap, size_t *payload_len)
{
	uint8_t *tmp;
	size_t plen;
	int rc;

	if (!ready(hs, CTL_NOISE_RESPONDER, 0))
		return -EINVAL;
	if (len < CTL_NOISE_MSG1_MIN || len > CTL_NOISE_MAX_MSG)
		return fail(hs, -EBADMSG);
	plen = len - CTL_NOISE_MSG1_OVERHEAD;
	if (plen - CTL_NOISE_TIMESTAMP_LEN > payload_cap)
		return fail(hs, -EMSGSIZE);
	tmp = malloc(plen);
	if (!tmp)
		return fail(hs, -ENOMEM);
	rc = read_msg1(hs, p, len, tmp);
	if (rc == 0) {
		memcpy(hs->timestamp, tmp, CTL_NOISE_TIMESTAMP_LEN);
		plen -= CTL_NOISE_TIMESTAMP_LEN;
		if (plen)
			memcpy(payload, tmp + CTL_NOISE_TIMESTAMP_LEN, plen);
		*payload_len = plen;
	}
	sodium_memzero(tmp, len - CTL_NOISE_MSG1_OVERHEAD);
	free(tmp);
	return rc;
}

int ctl_noise_write_msg2(struct ctl_noise_handshake *hs, const uint8_t *payload,
                         size_t payload_len, uint8_t *out, size_t out_cap,
                         size_t *out_len)
{
	size_t n;
	int rc;

	if (!ready(hs, CTL_NOISE_RESPONDER, 1))
		return -EINVAL;
	if (payload_len > CTL_NOISE_MSG2_PAYLOAD_MAX ||
	    out_cap < CTL_NOISE_MSG2_MIN + payload_len)
		return -EMSGSIZE;
	write_e(hs, out);                               /* <- e */
	if ((rc = mix_dh(hs, hs->e_priv, hs->re)) != 0) /* ee */
		return fail(hs, rc);
	if ((rc = mix_dh(hs, hs->e_priv, hs->rs)) != 0) /* se */
		return fail(hs, rc);
	if ((rc = encrypt_and_hash(hs, payload, payload_len, out + CTL_NOISE_KEY_LEN,
	                           &n)) != 0)
		return fail(hs, rc);
	*out_len = CTL_NOISE_KEY_LEN + n;
	hs->step = 2;
	return 0;
}

int ctl_noise_read_msg2(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                        uint8_t *payload, size_t payload_cap, size_t *payload_len)
{
	uint8_t *tmp;
	size_t plen;
	int rc = 0;

	if (!ready(hs, CTL_NOISE_INITIATOR, 1))
		return -EINVAL;
	if (len < CTL_NOISE_MSG2_MIN || len > CTL_NOISE_MAX_MSG)
		return fail(hs, -EBADMSG);
	plen = len - CTL_NOISE_MSG2_MIN;
	if (plen > payload_cap)
		return fail(hs, -EMSGSIZE);
	tmp = malloc(plen ? plen : 1);
	if (!tmp)
		return fail(hs, -ENOMEM);
	memcpy(hs->re, p, CTL_NOISE_KEY_LEN); /* <- e */
	mix_hash(hs, hs->re, CTL_NOISE_KEY_LEN);
	if (mix_dh(hs, hs->e_priv, hs->re) != 0 || /* ee */
	    mix_dh(hs, hs->s_priv, hs->re) != 0 || /* se */
	    decrypt_and_hash(hs, p + CTL_NOISE_KEY_LEN, len - CTL_NOISE_KEY_LEN, tmp) !=
	        0)
		rc = fail(hs, -EBADMSG);
	if (rc == 0) {
		if (plen)
			memcpy(payload, tmp, plen);
		*payload_len = plen;
		hs->step = 2;
	}
	sodium_memzero(tmp, plen);
	free(tmp);
	return rc;
}

int ctl_noise_split(struct ctl_noise_handshake *hs, struct ctl_noise_transport *t)
{
	uint8_t k1[CTL_NOISE_KEY_LEN], k2[CTL_NOISE_KEY_LEN];

	if (hs->failed || hs->step != 2)
		return -EINVAL;
	blake2s_kdf(k1, k2, NULL, NULL, 0, hs->ck);
	memset(t, 0, sizeof(*t));
	if (hs->role == CTL_NOISE_INITIATOR) {
		cipher_init(&t->send, k1);
		cipher_init(&t->recv, k2);
	} else {
		cipher_init(&t->send, k2);
		cipher_init(&t->recv, k1);
	}
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	/* Keep what callers may still read: h, rs and the timestamp. */
	sodium_memzero(hs->ck, sizeof(hs->ck));
	sodium_memzero(&hs->cs, sizeof(hs->cs));
	sodium_memzero(hs->s_priv, sizeof(hs->s_priv));
	sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
	hs->step = 3;
	return 0;
}

const uint8_t *ctl_noise_remote_static(const struct ctl_noise_handshake *hs)
{
	return hs->rs;
}

const uint8_t *ctl_noise_timestamp(const struct ctl_noise_handshake *hs)
{
	return hs->timestamp;
}

const uint8_t *ctl_noise_handshake_hash(const struct ctl_noise_handshake *hs)
{
	return hs->h;
}

void ctl_noise_handshake_wipe(struct ctl_noise_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}

/* ---- transport ---- */

int ctl_noise_encrypt(struct ctl_noise_transport *t, const uint8_t *in, size_t len,
                      uint8_t *out)
{
	return cipher_encrypt(&t->send, NULL, 0, in, len, out);
}

int ctl_noise_decrypt(struct ctl_noise_transport *t, const uint8_t *in, size_t len,
                      uint8_t *out)
{
	return cipher_decrypt(&t->recv, NULL, 0, in, len, out);
}

void ctl_noise_transport_wipe(struct ctl_noise_transport *t)
{
	sodium_memzero(t, sizeof(*t));
}

/* ---- TAI64N ---- */

void ctl_tai64n_now(uint8_t out[CTL_NOISE_TIMESTAMP_LEN])
{
	struct timespec ts;
	uint64_t secs;
	uint32_t nsec;

	clock_gettime(CLOCK_REALTIME, &ts);
	secs = 0x400000000000000aULL + (uint64_t)ts.tv_sec;
	nsec = (uint32_t)ts.tv_nsec;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(secs >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

bool ctl_tai64n_newer(const uint8_t a[CTL_NOISE_TIMESTAMP_LEN],
                      const uint8_t b[CTL_NOISE_TIMESTAMP_LEN])
{
	/* Both fields are big endian, so byte order is time order. */
	return memcmp(a, b, CTL_NOISE_TIMESTAMP_LEN) > 0;
}
