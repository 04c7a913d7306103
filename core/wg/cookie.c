/* MAC1/MAC2 and cookie replies, written from the WireGuard paper (5.4.4,
 * 5.4.7). mac1 = MAC(HASH("mac1----" || Spub_receiver), msg up to mac1);
 * mac2 = MAC(cookie, msg up to mac2); cookie = MAC(secret, source address and
 * port); the reply carries it sealed with XChaCha20-Poly1305 under
 * HASH("cookie--" || Spub_sender_of_reply), mac1 as associated data. */
#include "core/wg/cookie.h"

#include "core/crypto/blake2s.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

#define NS_PER_SEC 1000000000ULL

static void derive_key(uint8_t out[WG_NOISE_SYMMETRIC_KEY_LEN], const char *label,
                       const uint8_t pub[WG_NOISE_PUBLIC_KEY_LEN])
{
	struct blake2s_state s;

	blake2s_init(&s, WG_NOISE_SYMMETRIC_KEY_LEN);
	blake2s_update(&s, (const uint8_t *)label, strlen(label));
	blake2s_update(&s, pub, WG_NOISE_PUBLIC_KEY_LEN);
	blake2s_final(&s, out);
}

/* The MACs sit at the end of every handshake message. */
static void compute_mac1(uint8_t out[WG_COOKIE_LEN], const uint8_t *msg, size_t len,
                         const uint8_t key[WG_NOISE_SYMMETRIC_KEY_LEN])
{
	blake2s(out, WG_COOKIE_LEN, msg, len - sizeof(struct wg_msg_macs), key,
	        WG_NOISE_SYMMETRIC_KEY_LEN);
}

static void compute_mac2(uint8_t out[WG_COOKIE_LEN], const uint8_t *msg, size_t len,
                         const uint8_t cookie[WG_COOKIE_LEN])
{
	blake2s(out, WG_COOKIE_LEN, msg, len - WG_COOKIE_LEN, cookie, WG_COOKIE_LEN);
}

static bool expired(uint64_t birth_ns, uint64_t now_ns, uint64_t age_s)
{
	return now_ns >= birth_ns + age_s * NS_PER_SEC;
}

void wg_cookie_checker_init(struct wg_cookie_checker *c,
                            const uint8_t our_public[WG_NOISE_PUBLIC_KEY_LEN])
{
	memset(c, 0, sizeof(*c));
	derive_key(c->mac1_key, WG_LABEL_MAC1, our_public);
	derive_key(c->cookie_key, WG_LABEL_COOKIE, our_public);
}

void wg_cookie_checker_wipe(struct wg_cookie_checker *c)
{
	sodium_memzero(c, sizeof(*c));
}

/* cookie = MAC(secret, address || port); the secret rotates lazily. */
static void make_cookie(struct wg_cookie_checker *c, uint8_t out[WG_COOKIE_LEN],
                        const struct sockaddr *src, uint64_t now_ns)
{
	struct blake2s_state s;

	if (!c->has_secret ||
	    expired(c->secret_birthdate_ns, now_ns, WG_COOKIE_SECRET_MAX_AGE)) {
		randombytes_buf(c->secret, sizeof(c->secret));
		c->secret_birthdate_ns = now_ns;
		c->has_secret = true;
	}
	blake2s_init_key(&s, WG_COOKIE_LEN, c->secret, sizeof(c->secret));
	if (src->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)src;
		blake2s_update(&s, (const uint8_t *)&a->sin_addr, 4);
		blake2s_update(&s, (const uint8_t *)&a->sin_port, 2);
	} else if (src->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)src;
		blake2s_update(&s, (const uint8_t *)&a->sin6_addr, 16);
		blake2s_update(&s, (const uint8_t *)&a->sin6_port, 2);
	}
	blake2s_final(&s, out);
}

enum wg_cookie_mac_state wg_cookie_validate(struct wg_cookie_checker *c,
                                            const uint8_t *msg, size_t len,
                                            const struct sockaddr *src, bool check_cookie,
                                            uint64_t now_ns)
{
	const struct wg_msg_macs *macs;
	uint8_t computed[WG_COOKIE_LEN], cookie[WG_COOKIE_LEN];
	enum wg_cookie_mac_state ret = WG_COOKIE_INVALID_MAC;

	if (len < sizeof(struct wg_msg_header) + sizeof(struct wg_msg_macs))
		return WG_COOKIE_INVALID_MAC;
	macs = (const struct wg_msg_macs *)(msg + len - sizeof(*macs));

	compute_mac1(computed, msg, len, c->mac1_key);
	if (sodium_memcmp(computed, macs->mac1, WG_COOKIE_LEN) != 0)
		goto out;
	ret = WG_COOKIE_VALID_MAC_BUT_NO_COOKIE;
	if (!check_cookie)
		goto out;
	make_cookie(c, cookie, src, now_ns);
	compute_mac2(computed, msg, len, cookie);
	if (sodium_memcmp(computed, macs->mac2, WG_COOKIE_LEN) != 0)
		goto out;
	ret = WG_COOKIE_VALID_MAC_WITH_COOKIE;
out:
	sodium_memzero(cookie, sizeof(cookie));
	return ret;
}

void wg_cookie_reply_create(struct wg_cookie_checker *c, struct wg_msg_cookie *out,
                            const uint8_t *msg, size_t len, uint32_t sender_index,
                            const struct sockaddr *src, uint64_t now_ns)
{
	const struct wg_msg_macs *macs =
	    (const struct wg_msg_macs *)(msg + len - sizeof(*macs));
	uint8_t cookie[WG_COOKIE_LEN];

	memset(out, 0, sizeof(*out));
	wg_put_le32(out->header.type, WG_MSG_HANDSHAKE_COOKIE);
	wg_put_le32(out->receiver_index, sender_index);
	randombytes_buf(out->nonce, sizeof(out->nonce));
	make_cookie(c, cookie, src, now_ns);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    out->encrypted_cookie, NULL, cookie, sizeof(cookie), macs->mac1,
	    WG_COOKIE_LEN, NULL, out->nonce, c->cookie_key);
	sodium_memzero(cookie, sizeof(cookie));
}

void wg_cookie_maker_init(struct wg_cookie_maker *m,
                          const uint8_t peer_public[WG_NOISE_PUBLIC_KEY_LEN])
{
	memset(m, 0, sizeof(*m));
	derive_key(m->mac1_key, WG_LABEL_MAC1, peer_public);
	derive_key(m->cookie_key, WG_LABEL_COOKIE, peer_public);
}

void wg_cookie_maker_wipe(struct wg_cookie_maker *m)
{
	sodium_memzero(m, sizeof(*m));
}

void wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len,
                        uint64_t now_ns)
{
	struct wg_msg_macs *macs = (struct wg_msg_macs *)(msg + len - sizeof(*macs));

	compute_mac1(macs->mac1, msg, len, m->mac1_key);
	memcpy(m->last_mac1_sent, macs->mac1, WG_COOKIE_LEN);
	m->have_sent_mac1 = true;

	/* A cookie is good for 120 s after the responder made its secret; we
	 * do not know when that was, so allow for latency. */
	if (m->cookie_valid &&
	    !expired(m->cookie_birthdate_ns, now_ns,
	             WG_COOKIE_SECRET_MAX_AGE - WG_COOKIE_SECRET_LATENCY))
		compute_mac2(macs->mac2, msg, len, m->cookie);
	else
		memset(macs->mac2, 0, WG_COOKIE_LEN);
}

int wg_cookie_reply_consume(struct wg_cookie_maker *m, const struct wg_msg_cookie *msg,
                            uint64_t now_ns)
{
	uint8_t cookie[WG_COOKIE_LEN];

	if (!m->have_sent_mac1)
		return -EINVAL;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	        cookie, NULL, NULL, msg->encrypted_cookie, sizeof(msg->encrypted_cookie),
	        m->last_mac1_sent, WG_COOKIE_LEN, msg->nonce, m->cookie_key) != 0)
		return -EBADMSG;
	memcpy(m->cookie, cookie, sizeof(cookie));
	m->cookie_birthdate_ns = now_ns;
	m->cookie_valid = true;
	m->have_sent_mac1 = false;
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}
