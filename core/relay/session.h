/* The relay protocol's session: after the handshake (frame.h) both sides
 * hold a pair of keys only they can know, and every frame from then on is
 * sealed with ChaCha20-Poly1305 (IETF) under them. An on-path proxy that
 * passed the handshake through can then neither read, inject, drop
 * silently, reorder nor replay a frame: the first frame it touches fails to
 * open and the reader closes the connection. Pure: no I/O, no allocation;
 * shared by mesh-relay and the node's relay client.
 *
 * Keys. Each side makes a fresh X25519 key pair per connection: the
 * client's public half travels inside CLIENT_INFO's box (sealed between the
 * client's node key and the relay key), the relay's inside SERVER_INFO's
 * box. Only the holder of one of the two static private keys can make or
 * open those boxes, so neither ephemeral key can be swapped on the way.
 * Then
 *
 *   q     = X25519(own ephemeral private, peer's ephemeral public)
 *   h     = BLAKE2b-512(key = q, "meshrelay v1 session" || client static
 *           || relay static || client ephemeral || relay ephemeral ||
 *           challenge || client challenge || settings)
 *   c2s   = h[0..32), s2c = h[32..64)
 *
 * settings are SERVER_INFO's first 6 bytes as sent (version, flags,
 * queue_packets, keepalive_s: RELAY_SETTINGS_LEN), which travel outside its
 * box: a box on the path that changes them leaves the two sides with
 * different keys, and the first sealed frame fails to open.
 *
 * The session is bound to both static keys, both ephemeral keys, both
 * challenges and the relay's settings; the ephemeral keys are wiped when
 * the session is set up, so a later theft of the relay key does not open
 * recorded sessions.
 *
 * A sealed frame keeps the 5-byte header (type, then the body length, which
 * now counts the tag) in clear and seals the body:
 *
 *   +---------+-------------+-------------------------+-----------+
 *   | type u8 | len u32 BE  | ChaCha20 of the body    | tag (16)  |
 *   +---------+-------------+-------------------------+-----------+
 *
 * The header is the AEAD's associated data; the nonce is 4 zero bytes and
 * the frame's number in its direction (u64 little-endian, from 0), never
 * sent: TCP keeps the order, so both sides count. Overhead: 16 bytes a
 * frame. */
#ifndef MESH_RELAY_SESSION_H
#define MESH_RELAY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/relay/frame.h" /* RELAY_TAG_LEN */

#define RELAY_SESSION_KEY 32

struct relay_session {
	uint8_t tx[RELAY_SESSION_KEY], rx[RELAY_SESSION_KEY];
	uint64_t tx_n, rx_n; /* frames sealed / opened so far */
};

/* Sets up s from this side's ephemeral private key and the peer's
 * ephemeral public key, the handshake's static keys and challenges (32
 * bytes each) and SERVER_INFO's settings (RELAY_SETTINGS_LEN bytes, from
 * relay_encode_settings: the relay passes what it sends, a client what it
 * received). is_client picks the direction (the client sends with c2s).
 * Wipes eph_priv. 0, or -EINVAL when the shared point is degenerate (a
 * low-order public key). */
int relay_session_init(struct relay_session *s, bool is_client, uint8_t *eph_priv,
                       const uint8_t *peer_eph_pub, const uint8_t *client_static,
                       const uint8_t *relay_static, const uint8_t *challenge,
                       const uint8_t *client_challenge, const uint8_t *settings);

/* Seals, in place, the whole plain frame (header and body) in frame[0..len):
 * the body is encrypted, the tag appended, the header's length grown by
 * RELAY_TAG_LEN. Returns the sealed size (len + RELAY_TAG_LEN), or 0 when
 * cap is too small, len is not a whole frame, or the counter is spent. */
size_t relay_seal(struct relay_session *s, uint8_t *frame, size_t len, size_t cap);

/* Opens, in place, one sealed frame of len bytes (header included). On
 * success returns the plain frame's size (len - RELAY_TAG_LEN) with the
 * header's length set back to the plain body's; -EBADMSG when the tag does
 * not verify (a forged, altered, replayed, reordered or dropped frame: the
 * stream is unusable) or the frame is too short to hold a tag. */
int relay_open(struct relay_session *s, uint8_t *frame, size_t len);

/* Wipes the keys. */
void relay_session_wipe(struct relay_session *s);

#endif
