/* Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it, written from
 * the WireGuard paper (section 5.4). Every intermediate key is wiped. */
#include "core/wg/noise.h"

#include "core/crypto/blake2s.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

/* HASH(in1 || in2) */
static void hash2(uint8_t out[WG_NOISE_HASH_LEN], const uint8_t *in1, size_t len1,
                  const uint8_t *in2, size_t len2)
{
	struct blake2s_state s;

	blake2s_init(&s, WG_NOISE_HASH_LEN);
	blake2s_update(&s, in1, len1);
	blake2s_update(&s, in2, len2);
	blake2s_final(&s, out);
}

/* H = HASH(H || data) */
static void mix_hash(uint8_t h[WG_NOISE_HASH_LEN], const uint8_t *data, size_t len)
{
	hash2(h, h, WG_NOISE_HASH_LEN, data, len);
}

/* C = KDF1(C, data) */
static void mix_key(uint8_t ck[WG_NOISE_HASH_LEN], const uint8_t *data, size_t len)
{
	uint8_t t[WG_NOISE_HASH_LEN];

	blake2s_kdf(t, NULL, NULL, data, len, ck);
	memcpy(ck, t, sizeof(t));
	sodium_memzero(t, sizeof(t));
}

/* (C, key) = KDF2(C, data) */
static void mix_key2(uint8_t ck[WG_NOISE_HASH_LEN],
                     uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN], const uint8_t *data,
                     size_t len)
{
	uint8_t t[WG_NOISE_HASH_LEN];

	blake2s_kdf(t, key, NULL, data, len, ck);
	memcpy(ck, t, sizeof(t));
	sodium_memzero(t, sizeof(t));
}

/* X25519, refusing the all-zero result of a low-order point. */
static int dh(uint8_t out[WG_NOISE_PUBLIC_KEY_LEN],
              const uint8_t priv[WG_NOISE_PUBLIC_KEY_LEN],
              const uint8_t pub[WG_NOISE_PUBLIC_KEY_LEN])
{
	if (crypto_scalarmult(out, priv, pub) != 0 ||
	    sodium_is_zero(out, WG_NOISE_PUBLIC_KEY_LEN)) {
		sodium_memzero(out, WG_NOISE_PUBLIC_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

/* (C, key) = KDF2(C, DH(priv, pub)) */
static int mix_dh(uint8_t ck[WG_NOISE_HASH_LEN], uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN],
                  const uint8_t priv[WG_NOISE_PUBLIC_KEY_LEN],
                  const uint8_t pub[WG_NOISE_PUBLIC_KEY_LEN])
{
	uint8_t shared[WG_NOISE_PUBLIC_KEY_LEN];

	if (dh(shared, priv, pub) != 0)
		return -EINVAL;
	if (key)
		mix_key2(ck, key, shared, sizeof(shared));
	else
		mix_key(ck, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return 0;
}

static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

/* AEAD(key, 0, plain, H); then H = HASH(H || ciphertext). */
static void encrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t len,
                             const uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN],
                             uint8_t h[WG_NOISE_HASH_LEN])
{
	crypto_aead_chacha20poly1305_ietf_encrypt(
	    dst, NULL, src, len, h, WG_NOISE_HASH_LEN, NULL, zero_nonce, key);
	mix_hash(h, dst, len + WG_AUTHTAG_LEN);
}

static int decrypt_and_hash(uint8_t *dst, const uint8_t *src, size_t enc_len,
                            const uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN],
                            uint8_t h[WG_NOISE_HASH_LEN])
{
	if (crypto_aead_chacha20poly1305_ietf_decrypt(dst, NULL, NULL, src, enc_len, h,
	                                              WG_NOISE_HASH_LEN, zero_nonce,
	                                              key) != 0)
		return -EBADMSG;
	mix_hash(h, src, enc_len);
	return 0;
}

/* C = HASH(CONSTRUCTION); H = HASH(HASH(C || IDENTIFIER) || responder_static) */
static void handshake_start(uint8_t ck[WG_NOISE_HASH_LEN], uint8_t h[WG_NOISE_HASH_LEN],
                            const uint8_t responder_static[WG_NOISE_PUBLIC_KEY_LEN])
{
	blake2s(ck, WG_NOISE_HASH_LEN, (const uint8_t *)WG_CONSTRUCTION,
	        strlen(WG_CONSTRUCTION), NULL, 0);
	hash2(h, ck, WG_NOISE_HASH_LEN, (const uint8_t *)WG_IDENTIFIER,
	      strlen(WG_IDENTIFIER));
	mix_hash(h, responder_static, WG_NOISE_PUBLIC_KEY_LEN);
}

static void new_ephemeral(uint8_t priv[WG_NOISE_PUBLIC_KEY_LEN],
                          uint8_t pub[WG_NOISE_PUBLIC_KEY_LEN])
{
	do {
		randombytes_buf(priv, WG_NOISE_PUBLIC_KEY_LEN);
		priv[0] &= 248;
		priv[31] = (priv[31] & 127) | 64;
	} while (crypto_scalarmult_base(pub, priv) != 0);
}

int wg_noise_identity_init(struct wg_noise_identity *id,
                           const uint8_t private_key[WG_NOISE_PUBLIC_KEY_LEN])
{
	memcpy(id->private_key, private_key, WG_NOISE_PUBLIC_KEY_LEN);
	/* Clamp as `wg` does so that the stored key is canonical. */
	id->private_key[0] &= 248;
	id->private_key[31] = (id->private_key[31] & 127) | 64;
	if (crypto_scalarmult_base(id->public_key, id->private_key) != 0 ||
	    sodium_is_zero(id->public_key, WG_NOISE_PUBLIC_KEY_LEN)) {
		wg_noise_identity_wipe(id);
		return -EINVAL;
	}
	return 0;
}

void wg_noise_identity_wipe(struct wg_noise_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}

int wg_noise_handshake_init(struct wg_handshake *hs, const struct wg_noise_identity *id,
                            const uint8_t remote_static[WG_NOISE_PUBLIC_KEY_LEN],
                            const uint8_t *psk)
{
	memset(hs, 0, sizeof(*hs));
	memcpy(hs->remote_static, remote_static, WG_NOISE_PUBLIC_KEY_LEN);
	if (psk)
		memcpy(hs->preshared_key, psk, WG_NOISE_SYMMETRIC_KEY_LEN);
	if (dh(hs->precomputed_static_static, id->private_key, remote_static) != 0) {
		wg_noise_handshake_wipe(hs);
		return -EINVAL;
	}
	return 0;
}

void wg_noise_handshake_clear(struct wg_handshake *hs)
{
	hs->state = WG_HS_ZEROED;
	hs->local_index = 0;
	hs->remote_index = 0;
	sodium_memzero(hs->ephemeral_private, sizeof(hs->ephemeral_private));
	sodium_memzero(hs->remote_ephemeral, sizeof(hs->remote_ephemeral));
	sodium_memzero(hs->hash, sizeof(hs->hash));
	sodium_memzero(hs->chaining_key, sizeof(hs->chaining_key));
}

void wg_noise_handshake_wipe(struct wg_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}

void wg_noise_tai64n_now(uint8_t out[WG_NOISE_TIMESTAMP_LEN])
{
	struct timespec ts;
	uint64_t sec;
	uint32_t nsec;

	clock_gettime(CLOCK_REALTIME, &ts);
	sec = 0x400000000000000aULL + (uint64_t)ts.tv_sec;
	nsec = (uint32_t)ts.tv_nsec & ~((1U << 24) - 1);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(sec >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

int wg_noise_create_initiation(struct wg_handshake *hs,
                               const struct wg_noise_identity *id, uint32_t local_index,
                               struct wg_msg_initiation *msg)
{
	uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN];
	uint8_t ts[WG_NOISE_TIMESTAMP_LEN];
	int ret = -EINVAL;

	wg_noise_handshake_clear(hs);
	memset(msg, 0, sizeof(*msg));
	wg_put_le32(msg->header.type, WG_MSG_HANDSHAKE_INITIATION);

	handshake_start(hs->chaining_key, hs->hash, hs->remote_static);

	/* e */
	new_ephemeral(hs->ephemeral_private, msg->unencrypted_ephemeral);
	mix_key(hs->chaining_key, msg->unencrypted_ephemeral, WG_NOISE_PUBLIC_KEY_LEN);
	mix_hash(hs->hash, msg->unencrypted_ephemeral, WG_NOISE_PUBLIC_KEY_LEN);

	/* es */
	if (mix_dh(hs->chaining_key, key, hs->ephemeral_private, hs->remote_static) != 0)
		goto out;
	/* s */
	encrypt_and_hash(msg->encrypted_static, id->public_key, WG_NOISE_PUBLIC_KEY_LEN,
	                 key, hs->hash);
	/* ss */
	mix_key2(hs->chaining_key, key, hs->precomputed_static_static,
	         WG_NOISE_PUBLIC_KEY_LEN);
	/* {t} */
	wg_noise_tai64n_now(ts);
	encrypt_and_hash(msg->encrypted_timestamp, ts, sizeof(ts), key, hs->hash);

	wg_put_le32(msg->sender_index, local_index);
	hs->local_index = local_index;
	hs->state = WG_HS_CREATED_INITIATION;
	ret = 0;
out:
	if (ret != 0)
		wg_noise_handshake_clear(hs);
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_consume_initiation(const struct wg_noise_identity *id,
                                const struct wg_msg_initiation *msg, uint64_t now_ns,
                                wg_noise_lookup_fn lookup, void *ctx,
                                struct wg_handshake **out)
{
	uint8_t ck[WG_NOISE_HASH_LEN], h[WG_NOISE_HASH_LEN];
	uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN];
	uint8_t s[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t ts[WG_NOISE_TIMESTAMP_LEN];
	const uint8_t *e = msg->unencrypted_ephemeral;
	struct wg_handshake *hs = NULL;
	int ret = -EBADMSG;

	*out = NULL;
	handshake_start(ck, h, id->public_key);

	/* e */
	mix_key(ck, e, WG_NOISE_PUBLIC_KEY_LEN);
	mix_hash(h, e, WG_NOISE_PUBLIC_KEY_LEN);
	/* es */
	if (mix_dh(ck, key, id->private_key, e) != 0)
		goto out;
	/* s */
	if (decrypt_and_hash(s, msg->encrypted_static, sizeof(msg->encrypted_static), key,
	                     h))
		goto out;
	hs = lookup(ctx, s);
	if (!hs) {
		ret = -ENOENT;
		goto out;
	}
	/* ss */
	mix_key2(ck, key, hs->precomputed_static_static, WG_NOISE_PUBLIC_KEY_LEN);
	/* {t} */
	if (decrypt_and_hash(ts, msg->encrypted_timestamp,
	                     sizeof(msg->encrypted_timestamp), key, h))
		goto out;

	if (memcmp(ts, hs->latest_timestamp, sizeof(ts)) <= 0) {
		ret = -EALREADY;
		goto out;
	}
	if (hs->last_initiation_consumption_ns != 0 &&
	    now_ns < hs->last_initiation_consumption_ns +
	                 1000000000ULL / WG_INITIATIONS_PER_SECOND) {
		ret = -EBUSY;
		goto out;
	}

	/* Accepted: this replaces any handshake in flight with this peer. */
	wg_noise_handshake_clear(hs);
	memcpy(hs->remote_ephemeral, e, WG_NOISE_PUBLIC_KEY_LEN);
	memcpy(hs->latest_timestamp, ts, sizeof(ts));
	memcpy(hs->hash, h, sizeof(h));
	memcpy(hs->chaining_key, ck, sizeof(ck));
	hs->remote_index = wg_le32(msg->sender_index);
	hs->last_initiation_consumption_ns = now_ns;
	hs->state = WG_HS_CONSUMED_INITIATION;
	*out = hs;
	ret = 0;
out:
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(key, sizeof(key));
	sodium_memzero(s, sizeof(s));
	sodium_memzero(ts, sizeof(ts));
	return ret;
}

/* (C, tau, key) = KDF3(C, psk); H = HASH(H || tau) */
static void mix_psk(struct wg_handshake *hs, uint8_t ck[WG_NOISE_HASH_LEN],
                    uint8_t h[WG_NOISE_HASH_LEN], uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN])
{
	uint8_t t0[WG_NOISE_HASH_LEN], tau[WG_NOISE_HASH_LEN];

	blake2s_kdf(t0, tau, key, hs->preshared_key, WG_NOISE_SYMMETRIC_KEY_LEN, ck);
	memcpy(ck, t0, sizeof(t0));
	mix_hash(h, tau, sizeof(tau));
	sodium_memzero(t0, sizeof(t0));
	sodium_memzero(tau, sizeof(tau));
}

int wg_noise_create_response(struct wg_handshake *hs, uint32_t local_index,
                             struct wg_msg_response *msg)
{
	uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN];
	int ret = -EINVAL;

	if (hs->state != WG_HS_CONSUMED_INITIATION)
		return -EINVAL;
	memset(msg, 0, sizeof(*msg));
	wg_put_le32(msg->header.type, WG_MSG_HANDSHAKE_RESPONSE);
	wg_put_le32(msg->receiver_index, hs->remote_index);

	/* e */
	new_ephemeral(hs->ephemeral_private, msg->unencrypted_ephemeral);
	mix_key(hs->chaining_key, msg->unencrypted_ephemeral, WG_NOISE_PUBLIC_KEY_LEN);
	mix_hash(hs->hash, msg->unencrypted_ephemeral, WG_NOISE_PUBLIC_KEY_LEN);
	/* ee */
	if (mix_dh(hs->chaining_key, NULL, hs->ephemeral_private, hs->remote_ephemeral))
		goto out;
	/* se */
	if (mix_dh(hs->chaining_key, NULL, hs->ephemeral_private, hs->remote_static))
		goto out;
	/* psk */
	mix_psk(hs, hs->chaining_key, hs->hash, key);
	/* {} */
	encrypt_and_hash(msg->encrypted_nothing, NULL, 0, key, hs->hash);

	wg_put_le32(msg->sender_index, local_index);
	hs->local_index = local_index;
	hs->state = WG_HS_CREATED_RESPONSE;
	ret = 0;
out:
	if (ret != 0)
		wg_noise_handshake_clear(hs);
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_consume_response(struct wg_handshake *hs, const struct wg_noise_identity *id,
                              const struct wg_msg_response *msg)
{
	uint8_t ck[WG_NOISE_HASH_LEN], h[WG_NOISE_HASH_LEN];
	uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN];
	const uint8_t *e = msg->unencrypted_ephemeral;
	int ret = -EBADMSG;

	if (hs->state != WG_HS_CREATED_INITIATION ||
	    hs->local_index != wg_le32(msg->receiver_index))
		return -EINVAL;
	memcpy(ck, hs->chaining_key, sizeof(ck));
	memcpy(h, hs->hash, sizeof(h));

	/* e */
	mix_key(ck, e, WG_NOISE_PUBLIC_KEY_LEN);
	mix_hash(h, e, WG_NOISE_PUBLIC_KEY_LEN);
	/* ee */
	if (mix_dh(ck, NULL, hs->ephemeral_private, e))
		goto out;
	/* se */
	if (mix_dh(ck, NULL, id->private_key, e))
		goto out;
	/* psk */
	mix_psk(hs, ck, h, key);
	/* {} */
	if (decrypt_and_hash(NULL, msg->encrypted_nothing, sizeof(msg->encrypted_nothing),
	                     key, h))
		goto out;

	memcpy(hs->remote_ephemeral, e, WG_NOISE_PUBLIC_KEY_LEN);
	memcpy(hs->chaining_key, ck, sizeof(ck));
	memcpy(hs->hash, h, sizeof(h));
	hs->remote_index = wg_le32(msg->sender_index);
	hs->state = WG_HS_CONSUMED_RESPONSE;
	ret = 0;
out:
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(key, sizeof(key));
	return ret;
}

int wg_noise_begin_session(struct wg_handshake *hs, struct wg_keypair *kp,
                           uint64_t now_ns)
{
	memset(kp, 0, sizeof(*kp));
	if (hs->state == WG_HS_CONSUMED_RESPONSE) {
		blake2s_kdf(kp->send_key, kp->recv_key, NULL, NULL, 0, hs->chaining_key);
		kp->i_am_the_initiator = true;
	} else if (hs->state == WG_HS_CREATED_RESPONSE) {
		blake2s_kdf(kp->recv_key, kp->send_key, NULL, NULL, 0, hs->chaining_key);
		kp->i_am_the_initiator = false;
	} else {
		return -EINVAL;
	}
	wg_replay_init(&kp->replay);
	kp->birthdate_ns = now_ns;
	kp->local_index = hs->local_index;
	kp->remote_index = hs->remote_index;
	kp->send_valid = true;
	kp->recv_valid = true;
	wg_noise_handshake_clear(hs);
	return 0;
}

void wg_noise_keypair_wipe(struct wg_keypair *kp)
{
	sodium_memzero(kp, sizeof(*kp));
}

static void data_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES],
                       uint64_t counter)
{
	memset(nonce, 0, 4);
	wg_put_le64(nonce + 4, counter);
}

size_t wg_noise_seal(const struct wg_keypair *kp, uint64_t counter, uint8_t *buf,
                     size_t plain_len)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	struct wg_msg_data *hdr = (struct wg_msg_data *)buf;
	uint8_t *payload = buf + WG_MSG_DATA_HEADER_LEN;

	wg_put_le32(hdr->header.type, WG_MSG_DATA);
	wg_put_le32(hdr->receiver_index, kp->remote_index);
	wg_put_le64(hdr->counter, counter);
	data_nonce(nonce, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt(payload, NULL, payload, plain_len, NULL,
	                                          0, NULL, nonce, kp->send_key);
	return WG_MSG_DATA_LEN(plain_len);
}

int wg_noise_open(const struct wg_keypair *kp, const uint8_t *msg, size_t len,
                  uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

	if (len < WG_MSG_DATA_MIN_LEN)
		return -EBADMSG;
	data_nonce(nonce, wg_le64(((const struct wg_msg_data *)msg)->counter));
	if (crypto_aead_chacha20poly1305_ietf_decrypt(
	        out, NULL, NULL, msg + WG_MSG_DATA_HEADER_LEN,
	        len - WG_MSG_DATA_HEADER_LEN, NULL, 0, nonce, kp->recv_key) != 0)
		return -EBADMSG;
	return 0;
}
