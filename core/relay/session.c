/* The relay session: see session.h. */
#include "core/relay/session.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "core/relay/frame.h"

#define LABEL "meshrelay v1 session"

int relay_session_init(struct relay_session *s, bool is_client, uint8_t *eph_priv,
                       const uint8_t *peer_eph_pub, const uint8_t *client_static,
                       const uint8_t *relay_static, const uint8_t *challenge,
                       const uint8_t *client_challenge, const uint8_t *settings)
{
	uint8_t own_pub[32], q[crypto_scalarmult_BYTES], h[64];
	memset(s, 0, sizeof *s);
	crypto_scalarmult_base(own_pub, eph_priv);
	int r = crypto_scalarmult(q, eph_priv, peer_eph_pub);
	sodium_memzero(eph_priv, 32);
	if (r != 0) {
		sodium_memzero(q, sizeof q);
		return -EINVAL;
	}
	const uint8_t *c_eph = is_client ? own_pub : peer_eph_pub;
	const uint8_t *r_eph = is_client ? peer_eph_pub : own_pub;
	crypto_generichash_state st;
	crypto_generichash_init(&st, q, sizeof q, sizeof h);
	crypto_generichash_update(&st, (const uint8_t *)LABEL, sizeof LABEL - 1);
	crypto_generichash_update(&st, client_static, 32);
	crypto_generichash_update(&st, relay_static, 32);
	crypto_generichash_update(&st, c_eph, 32);
	crypto_generichash_update(&st, r_eph, 32);
	crypto_generichash_update(&st, challenge, 32);
	crypto_generichash_update(&st, client_challenge, 32);
	crypto_generichash_update(&st, settings, RELAY_SETTINGS_LEN);
	crypto_generichash_final(&st, h, sizeof h);
	memcpy(is_client ? s->tx : s->rx, h, 32);
	memcpy(is_client ? s->rx : s->tx, h + 32, 32);
	sodium_memzero(q, sizeof q);
	sodium_memzero(h, sizeof h);
	sodium_memzero(&st, sizeof st);
	return 0;
}

static void nonce_of(uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t ctr)
{
	memset(n, 0, 4);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(ctr >> (8 * i));
}

static void put_len(uint8_t *hdr, uint32_t v)
{
	hdr[1] = (uint8_t)(v >> 24);
	hdr[2] = (uint8_t)(v >> 16);
	hdr[3] = (uint8_t)(v >> 8);
	hdr[4] = (uint8_t)v;
}

size_t relay_seal(struct relay_session *s, uint8_t *frame, size_t len, size_t cap)
{
	if (len < RELAY_HDR_LEN || cap < len + RELAY_TAG_LEN ||
	    relay_hdr_len(frame) != len - RELAY_HDR_LEN ||
	    len - RELAY_HDR_LEN + RELAY_TAG_LEN > RELAY_FRAME_BODY_MAX ||
	    s->tx_n == UINT64_MAX)
		return 0;
	size_t body = len - RELAY_HDR_LEN;
	put_len(frame, (uint32_t)(body + RELAY_TAG_LEN));
	uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	nonce_of(n, s->tx_n++);
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(
	    frame + RELAY_HDR_LEN, frame + len, NULL, frame + RELAY_HDR_LEN, body, frame,
	    RELAY_HDR_LEN, NULL, n, s->tx);
	return len + RELAY_TAG_LEN;
}

int relay_open(struct relay_session *s, uint8_t *frame, size_t len)
{
	if (len < RELAY_HDR_LEN + RELAY_TAG_LEN ||
	    relay_hdr_len(frame) != len - RELAY_HDR_LEN || s->rx_n == UINT64_MAX)
		return -EBADMSG;
	size_t body = len - RELAY_HDR_LEN - RELAY_TAG_LEN;
	uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	nonce_of(n, s->rx_n);
	if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
	        frame + RELAY_HDR_LEN, NULL, frame + RELAY_HDR_LEN, body,
	        frame + RELAY_HDR_LEN + body, frame, RELAY_HDR_LEN, n, s->rx) != 0)
		return -EBADMSG;
	s->rx_n++;
	put_len(frame, (uint32_t)body);
	return (int)(len - RELAY_TAG_LEN);
}

void relay_session_wipe(struct relay_session *s)
{
	sodium_memzero(s, sizeof *s);
}
