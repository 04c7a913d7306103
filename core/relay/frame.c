/* Relay frames: see frame.h. */
#include "core/relay/frame.h"
#include "core/util/bytes.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

const char *relay_frame_type_name(unsigned type)
{
	switch (type) {
	case RELAY_FRAME_SERVER_KEY:
		return "SERVER_KEY";
	case RELAY_FRAME_CLIENT_INFO:
		return "CLIENT_INFO";
	case RELAY_FRAME_SERVER_INFO:
		return "SERVER_INFO";
	case RELAY_FRAME_SEND_PACKET:
		return "SEND_PACKET";
	case RELAY_FRAME_RECV_PACKET:
		return "RECV_PACKET";
	case RELAY_FRAME_KEEPALIVE:
		return "KEEPALIVE";
	case RELAY_FRAME_PEER_GONE:
		return "PEER_GONE";
	case RELAY_FRAME_PEER_PRESENT:
		return "PEER_PRESENT";
	case RELAY_FRAME_FORWARD:
		return "FORWARD";
	case RELAY_FRAME_PEERS_RESET:
		return "PEERS_RESET";
	case RELAY_FRAME_PING:
		return "PING";
	case RELAY_FRAME_PONG:
		return "PONG";
	case RELAY_FRAME_HEALTH:
		return "HEALTH";
	case RELAY_FRAME_RESTARTING:
		return "RESTARTING";
	case RELAY_FRAME_REFUSED:
		return "REFUSED";
	}
	return NULL;
}

/* Fills f's typed view of its body; -EBADMSG when the body cannot hold the
 * type's fields. */
static int decode_body(struct relay_frame *f)
{
	const uint8_t *b = f->body;
	size_t n = f->len;
	switch (f->type) {
	case RELAY_FRAME_SERVER_KEY:
		if (n < RELAY_SERVER_KEY_LEN ||
		    memcmp(b, RELAY_MAGIC, RELAY_MAGIC_LEN) != 0)
			return -EBADMSG;
		f->u.server_key.key = b + RELAY_MAGIC_LEN;
		f->u.server_key.challenge = b + RELAY_MAGIC_LEN + RELAY_KEY_LEN;
		return 0;
	case RELAY_FRAME_CLIENT_INFO:
		/* The box may grow in later versions; it must hold ours. */
		if (n < RELAY_CLIENT_INFO_LEN)
			return -EBADMSG;
		f->u.client_info.key = b;
		f->u.client_info.nonce = b + RELAY_KEY_LEN;
		f->u.client_info.box = b + RELAY_KEY_LEN + RELAY_NONCE_LEN;
		f->u.client_info.box_len = n - RELAY_KEY_LEN - RELAY_NONCE_LEN;
		return 0;
	case RELAY_FRAME_SERVER_INFO:
		if (n < RELAY_SERVER_INFO_LEN)
			return -EBADMSG;
		f->u.server_info.version = b[0];
		f->u.server_info.flags = b[1];
		f->u.server_info.queue_packets = be16_get(b + 2);
		f->u.server_info.keepalive_s = be16_get(b + 4);
		f->u.server_info.nonce = b + 6;
		f->u.server_info.box = b + 6 + RELAY_NONCE_LEN;
		return 0;
	case RELAY_FRAME_SEND_PACKET:
	case RELAY_FRAME_RECV_PACKET:
		if (n <= RELAY_KEY_LEN || n - RELAY_KEY_LEN > RELAY_PACKET_MAX)
			return -EBADMSG;
		f->u.packet.key = b;
		f->u.packet.src = f->u.packet.dst = NULL;
		f->u.packet.data = b + RELAY_KEY_LEN;
		f->u.packet.data_len = n - RELAY_KEY_LEN;
		return 0;
	case RELAY_FRAME_FORWARD:
		if (n <= 2 * RELAY_KEY_LEN || n - 2 * RELAY_KEY_LEN > RELAY_PACKET_MAX)
			return -EBADMSG;
		f->u.packet.src = b;
		f->u.packet.dst = b + RELAY_KEY_LEN;
		f->u.packet.key = f->u.packet.dst;
		f->u.packet.data = b + 2 * RELAY_KEY_LEN;
		f->u.packet.data_len = n - 2 * RELAY_KEY_LEN;
		return 0;
	case RELAY_FRAME_KEEPALIVE:
	case RELAY_FRAME_PEERS_RESET:
		return 0;
	case RELAY_FRAME_PEER_GONE:
		if (n < RELAY_KEY_LEN + 1)
			return -EBADMSG;
		f->u.peer.key = b;
		f->u.peer.reason = b[RELAY_KEY_LEN];
		return 0;
	case RELAY_FRAME_PEER_PRESENT:
		if (n < RELAY_KEY_LEN)
			return -EBADMSG;
		f->u.peer.key = b;
		f->u.peer.reason = 0;
		return 0;
	case RELAY_FRAME_PING:
	case RELAY_FRAME_PONG:
		if (n < RELAY_PING_LEN)
			return -EBADMSG;
		f->u.ping.data = b;
		return 0;
	case RELAY_FRAME_HEALTH:
		if (n > RELAY_TEXT_MAX)
			return -EBADMSG;
		f->u.text.reason = 0;
		f->u.text.text = (const char *)b;
		f->u.text.text_len = n;
		return 0;
	case RELAY_FRAME_REFUSED:
		if (n < 1 || n - 1 > RELAY_TEXT_MAX)
			return -EBADMSG;
		f->u.text.reason = b[0];
		f->u.text.text = (const char *)b + 1;
		f->u.text.text_len = n - 1;
		return 0;
	case RELAY_FRAME_RESTARTING:
		if (n < 8)
			return -EBADMSG;
		f->u.restarting.reconnect_in_ms = be32_get(b);
		f->u.restarting.try_for_ms = be32_get(b + 4);
		return 0;
	}
	return 0; /* unknown type: the caller skips it */
}

int relay_frame_decode(const uint8_t *p, size_t len, struct relay_frame *f,
                       size_t *consumed, size_t *need)
{
	memset(f, 0, sizeof *f);
	*consumed = 0;
	if (need)
		*need = RELAY_HDR_LEN;
	if (len < RELAY_HDR_LEN)
		return RELAY_DECODE_MORE;
	uint32_t blen = be32_get(p + 1);
	if (blen > RELAY_FRAME_BODY_MAX)
		return -EMSGSIZE;
	size_t total = RELAY_HDR_LEN + (size_t)blen;
	if (need)
		*need = total;
	if (len < total)
		return RELAY_DECODE_MORE;
	f->type = p[0];
	f->body = p + RELAY_HDR_LEN;
	f->len = blen;
	int r = decode_body(f);
	if (r < 0)
		return r;
	*consumed = total;
	return RELAY_DECODE_READY;
}

size_t relay_encode_header(uint8_t *out, size_t out_cap, uint8_t type, size_t body_len)
{
	if (body_len > RELAY_FRAME_BODY_MAX || out_cap < RELAY_HDR_LEN)
		return 0;
	out[0] = type;
	be32_put(out + 1, (uint32_t)body_len);
	return RELAY_HDR_LEN;
}

/* Header plus room check for a body of n bytes; returns the body's start or
 * NULL. */
static uint8_t *start(uint8_t *out, size_t out_cap, uint8_t type, size_t n)
{
	if (n > RELAY_FRAME_BODY_MAX || out_cap < RELAY_HDR_LEN + n)
		return NULL;
	relay_encode_header(out, out_cap, type, n);
	return out + RELAY_HDR_LEN;
}

size_t relay_encode_server_key(uint8_t *out, size_t out_cap, const uint8_t *key,
                               const uint8_t *challenge)
{
	uint8_t *b = start(out, out_cap, RELAY_FRAME_SERVER_KEY, RELAY_SERVER_KEY_LEN);
	if (!b)
		return 0;
	memcpy(b, RELAY_MAGIC, RELAY_MAGIC_LEN);
	memcpy(b + RELAY_MAGIC_LEN, key, RELAY_KEY_LEN);
	memcpy(b + RELAY_MAGIC_LEN + RELAY_KEY_LEN, challenge, RELAY_CHALLENGE_LEN);
	return RELAY_HDR_LEN + RELAY_SERVER_KEY_LEN;
}

void relay_encode_settings(uint8_t *out, uint8_t version, uint8_t flags,
                           uint16_t queue_packets, uint16_t keepalive_s)
{
	out[0] = version;
	out[1] = flags;
	be16_put(out + 2, queue_packets);
	be16_put(out + 4, keepalive_s);
}

void relay_server_info_settings(const struct relay_frame *f, uint8_t *out)
{
	relay_encode_settings(out, f->u.server_info.version, f->u.server_info.flags,
	                      f->u.server_info.queue_packets,
	                      f->u.server_info.keepalive_s);
}

size_t relay_encode_server_info(uint8_t *out, size_t out_cap, uint8_t flags,
                                uint16_t queue_packets, uint16_t keepalive_s,
                                const uint8_t *server_priv, const uint8_t *client_pub,
                                const uint8_t *client_challenge,
                                const uint8_t *relay_eph_pub)
{
	uint8_t *b = start(out, out_cap, RELAY_FRAME_SERVER_INFO, RELAY_SERVER_INFO_LEN);
	if (!b)
		return 0;
	relay_encode_settings(b, RELAY_PROTO_VERSION, flags, queue_packets, keepalive_s);
	uint8_t *nonce = b + RELAY_SETTINGS_LEN;
	uint8_t plain[RELAY_CHALLENGE_LEN + RELAY_KEY_LEN];
	memcpy(plain, client_challenge, RELAY_CHALLENGE_LEN);
	memcpy(plain + RELAY_CHALLENGE_LEN, relay_eph_pub, RELAY_KEY_LEN);
	randombytes_buf(nonce, RELAY_NONCE_LEN);
	int r = crypto_box_easy(nonce + RELAY_NONCE_LEN, plain, sizeof plain, nonce,
	                        client_pub, server_priv);
	sodium_memzero(plain, sizeof plain);
	return r == 0 ? RELAY_HDR_LEN + RELAY_SERVER_INFO_LEN : 0;
}

size_t relay_encode_packet(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *key,
                           const uint8_t *data, size_t data_len)
{
	if ((type != RELAY_FRAME_SEND_PACKET && type != RELAY_FRAME_RECV_PACKET) ||
	    data_len == 0 || data_len > RELAY_PACKET_MAX)
		return 0;
	uint8_t *b = start(out, out_cap, type, RELAY_KEY_LEN + data_len);
	if (!b)
		return 0;
	memcpy(b, key, RELAY_KEY_LEN);
	memcpy(b + RELAY_KEY_LEN, data, data_len);
	return RELAY_HDR_LEN + RELAY_KEY_LEN + data_len;
}

size_t relay_encode_forward(uint8_t *out, size_t out_cap, const uint8_t *src,
                            const uint8_t *dst, const uint8_t *data, size_t data_len)
{
	if (data_len == 0 || data_len > RELAY_PACKET_MAX)
		return 0;
	uint8_t *b =
	    start(out, out_cap, RELAY_FRAME_FORWARD, 2 * RELAY_KEY_LEN + data_len);
	if (!b)
		return 0;
	memcpy(b, src, RELAY_KEY_LEN);
	memcpy(b + RELAY_KEY_LEN, dst, RELAY_KEY_LEN);
	memcpy(b + 2 * RELAY_KEY_LEN, data, data_len);
	return RELAY_HDR_LEN + 2 * RELAY_KEY_LEN + data_len;
}

size_t relay_encode_keepalive(uint8_t *out, size_t out_cap)
{
	return start(out, out_cap, RELAY_FRAME_KEEPALIVE, 0) ? RELAY_HDR_LEN : 0;
}

size_t relay_encode_peer(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *key,
                         uint8_t reason)
{
	size_t n;
	if (type == RELAY_FRAME_PEER_GONE)
		n = RELAY_KEY_LEN + 1;
	else if (type == RELAY_FRAME_PEER_PRESENT)
		n = RELAY_KEY_LEN;
	else
		return 0;
	uint8_t *b = start(out, out_cap, type, n);
	if (!b)
		return 0;
	memcpy(b, key, RELAY_KEY_LEN);
	if (type == RELAY_FRAME_PEER_GONE)
		b[RELAY_KEY_LEN] = reason;
	return RELAY_HDR_LEN + n;
}

size_t relay_encode_ping(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *data)
{
	if (type != RELAY_FRAME_PING && type != RELAY_FRAME_PONG)
		return 0;
	uint8_t *b = start(out, out_cap, type, RELAY_PING_LEN);
	if (!b)
		return 0;
	memcpy(b, data, RELAY_PING_LEN);
	return RELAY_HDR_LEN + RELAY_PING_LEN;
}

size_t relay_encode_health(uint8_t *out, size_t out_cap, const char *text)
{
	size_t n = strlen(text);
	if (n > RELAY_TEXT_MAX)
		return 0;
	uint8_t *b = start(out, out_cap, RELAY_FRAME_HEALTH, n);
	if (!b)
		return 0;
	memcpy(b, text, n);
	return RELAY_HDR_LEN + n;
}

size_t relay_encode_restarting(uint8_t *out, size_t out_cap, uint32_t reconnect_in_ms,
                               uint32_t try_for_ms)
{
	uint8_t *b = start(out, out_cap, RELAY_FRAME_RESTARTING, 8);
	if (!b)
		return 0;
	be32_put(b, reconnect_in_ms);
	be32_put(b + 4, try_for_ms);
	return RELAY_HDR_LEN + 8;
}

size_t relay_encode_refused(uint8_t *out, size_t out_cap, uint8_t reason,
                            const char *text)
{
	size_t n = strlen(text);
	if (n > RELAY_TEXT_MAX)
		return 0;
	uint8_t *b = start(out, out_cap, RELAY_FRAME_REFUSED, 1 + n);
	if (!b)
		return 0;
	b[0] = reason;
	memcpy(b + 1, text, n);
	return RELAY_HDR_LEN + 1 + n;
}

size_t relay_client_info_seal(uint8_t *out, size_t out_cap, const uint8_t *client_pub,
                              const uint8_t *client_priv, const uint8_t *server_pub,
                              const uint8_t *challenge, uint8_t flags,
                              uint8_t *client_challenge, uint8_t *eph_priv)
{
	uint8_t *b = start(out, out_cap, RELAY_FRAME_CLIENT_INFO, RELAY_CLIENT_INFO_LEN);
	if (!b)
		return 0;
	uint8_t plain[RELAY_CLIENT_PLAIN_LEN];
	memcpy(plain, challenge, RELAY_CHALLENGE_LEN);
	plain[RELAY_CHALLENGE_LEN] = RELAY_PROTO_VERSION;
	plain[RELAY_CHALLENGE_LEN + 1] = flags;
	randombytes_buf(client_challenge, RELAY_CHALLENGE_LEN);
	memcpy(plain + RELAY_CHALLENGE_LEN + 2, client_challenge, RELAY_CHALLENGE_LEN);
	crypto_box_keypair(plain + 2 * RELAY_CHALLENGE_LEN + 2, eph_priv);
	memcpy(b, client_pub, RELAY_KEY_LEN);
	uint8_t *nonce = b + RELAY_KEY_LEN;
	randombytes_buf(nonce, RELAY_NONCE_LEN);
	int r = crypto_box_easy(nonce + RELAY_NONCE_LEN, plain, sizeof plain, nonce,
	                        server_pub, client_priv);
	sodium_memzero(plain, sizeof plain);
	return r == 0 ? RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN : 0;
}

int relay_client_info_open(const struct relay_frame *f, const uint8_t *server_priv,
                           const uint8_t *challenge, uint8_t *version, uint8_t *flags,
                           uint8_t *client_challenge, uint8_t *client_eph_pub)
{
	if (f->type != RELAY_FRAME_CLIENT_INFO ||
	    f->u.client_info.box_len < RELAY_BOX_MAC_LEN + RELAY_CLIENT_PLAIN_MIN ||
	    f->u.client_info.box_len > RELAY_BOX_MAC_LEN + 256)
		return -EBADMSG;
	uint8_t plain[256];
	size_t plen = f->u.client_info.box_len - RELAY_BOX_MAC_LEN;
	int r = -EBADMSG;
	if (crypto_box_open_easy(plain, f->u.client_info.box, f->u.client_info.box_len,
	                         f->u.client_info.nonce, f->u.client_info.key,
	                         server_priv) == 0 &&
	    sodium_memcmp(plain, challenge, RELAY_CHALLENGE_LEN) == 0) {
		*version = plain[RELAY_CHALLENGE_LEN];
		*flags = plain[RELAY_CHALLENGE_LEN + 1];
		if (*version != RELAY_PROTO_VERSION) {
			r = 0; /* the caller refuses it by version */
		} else if (plen >= RELAY_CLIENT_PLAIN_LEN) {
			memcpy(client_challenge, plain + RELAY_CHALLENGE_LEN + 2,
			       RELAY_CHALLENGE_LEN);
			memcpy(client_eph_pub, plain + 2 * RELAY_CHALLENGE_LEN + 2,
			       RELAY_KEY_LEN);
			r = 0;
		}
	}
	sodium_memzero(plain, plen);
	return r;
}

int relay_server_info_open(const struct relay_frame *f, const uint8_t *client_priv,
                           const uint8_t *server_pub, const uint8_t *client_challenge,
                           uint8_t *relay_eph_pub)
{
	if (f->type != RELAY_FRAME_SERVER_INFO || f->len < RELAY_SERVER_INFO_LEN)
		return -EBADMSG;
	uint8_t plain[RELAY_CHALLENGE_LEN + RELAY_KEY_LEN];
	int r = -EBADMSG;
	if (crypto_box_open_easy(plain, f->u.server_info.box,
	                         RELAY_BOX_MAC_LEN + sizeof plain, f->u.server_info.nonce,
	                         server_pub, client_priv) == 0 &&
	    sodium_memcmp(plain, client_challenge, RELAY_CHALLENGE_LEN) == 0) {
		memcpy(relay_eph_pub, plain + RELAY_CHALLENGE_LEN, RELAY_KEY_LEN);
		r = 0;
	}
	sodium_memzero(plain, sizeof plain);
	return r;
}
