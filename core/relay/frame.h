/* The relay protocol's wire format: typed, length-prefixed frames on one TCP
 * (or TLS) stream, after an HTTP/1.1 upgrade (http.h). Pure: no I/O, no
 * allocation; shared by mesh-relay and the node's relay client.
 *
 * Every frame:
 *
 *   +---------+-------------+---------------------+
 *   | type u8 | len u32 BE  | len bytes of body   |
 *   +---------+-------------+---------------------+
 *
 * with len <= RELAY_FRAME_BODY_MAX. A reader refuses a larger length as soon
 * as the 5-byte header is in, before any body arrives. SERVER_KEY,
 * CLIENT_INFO, SERVER_INFO and REFUSED-instead-of-SERVER_INFO travel as
 * they are; every frame after SERVER_INFO, both ways, is sealed with the
 * session keys the handshake set up (session.h): the body is encrypted and
 * a 16-byte tag follows it (counted in len).
 *
 * Bodies (keys are 32-byte X25519 public keys; integers big-endian):
 *
 *   SERVER_KEY    0x01  magic "MESHRLY1" (8) || server key || challenge (32)
 *   CLIENT_INFO   0x02  client key || nonce (24) || crypto_box of
 *                       challenge (32) || version u8 || flags u8 ||
 *                       client challenge (32) || client ephemeral key (32)
 *                       (sealed with the client's private key to the server
 *                       key: opening it proves the client holds the private
 *                       half of the key it claims; the challenge is fresh per
 *                       connection, so a recorded CLIENT_INFO is useless)
 *   SERVER_INFO   0x03  version u8 || flags u8 || queue_packets u16 ||
 *                       keepalive_s u16 || nonce (24) || crypto_box of the
 *                       client challenge || relay ephemeral key (32),
 *                       sealed with the server's private key to the
 *                       client's key: the relay proves it holds the key the
 *                       client sealed to. A proxy that passes both frames
 *                       on unchanged passes both proofs too, which is why
 *                       the ephemeral keys set up a session (session.h) and
 *                       every later frame is sealed: the proxy cannot join
 *                       in.
 *   SEND_PACKET   0x04  dst key || payload (1..RELAY_PACKET_MAX)
 *   RECV_PACKET   0x05  src key || payload (1..RELAY_PACKET_MAX)
 *   KEEPALIVE     0x06  (empty)
 *   PEER_GONE     0x08  key || reason u8 (RELAY_GONE_*)
 *   PEER_PRESENT  0x09  key
 *   FORWARD       0x0a  src key || dst key || payload: relay mesh only, from a
 *                       sibling relay of the same region
 *   PEERS_RESET   0x0b  (empty) relay mesh only, to a sibling: forget every
 *                       key this link announced; the full set of
 *                       PEER_PRESENT follows (after the announcements
 *                       overflowed their lane)
 *   PING          0x12  8 opaque bytes
 *   PONG          0x13  the 8 bytes of the PING it answers
 *   HEALTH        0x14  UTF-8 text, 0..RELAY_TEXT_MAX bytes ("" = healthy)
 *   RESTARTING    0x15  reconnect_in_ms u32 || try_for_ms u32
 *   REFUSED       0x16  reason u8 (RELAY_REFUSED_*) || UTF-8 text: sent
 *                       instead of SERVER_INFO, then the server closes
 *
 * Fixed-size bodies may carry extra bytes after the fields above (room for
 * later versions); they are ignored. A frame of an unknown type decodes
 * with its type and body only (no typed view), so the caller can skip it; a
 * known type with a body too short for its fields is an error.
 * Frame types are stable and never reused. */
#ifndef MESH_RELAY_FRAME_H
#define MESH_RELAY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_MAGIC          "MESHRLY1"
#define RELAY_MAGIC_LEN      8
#define RELAY_PROTO_VERSION  2 /* 2: sealed frames after the handshake */
#define RELAY_KEY_LEN        32
#define RELAY_CHALLENGE_LEN  32
#define RELAY_NONCE_LEN      24 /* crypto_box_NONCEBYTES */
#define RELAY_BOX_MAC_LEN    16 /* crypto_box_MACBYTES */
#define RELAY_HDR_LEN        5
#define RELAY_PACKET_MAX     65535 /* largest payload of a send/recv/forward */
#define RELAY_TAG_LEN        16    /* a sealed frame's tag (session.h) */
#define RELAY_FRAME_BODY_MAX (2 * RELAY_KEY_LEN + RELAY_PACKET_MAX + RELAY_TAG_LEN)
#define RELAY_FRAME_MAX      (RELAY_HDR_LEN + RELAY_FRAME_BODY_MAX)
#define RELAY_TEXT_MAX       256
#define RELAY_PING_LEN       8
/* Before admission a reader takes only handshake frames, and none longer
 * than this (CLIENT_INFO is 139 bytes today; room for later versions). */
#define RELAY_HANDSHAKE_BODY_MAX 512

/* Plaintext inside CLIENT_INFO's box, and the whole CLIENT_INFO body. */
#define RELAY_CLIENT_PLAIN_LEN (2 * RELAY_CHALLENGE_LEN + 2 + RELAY_KEY_LEN)
/* The shortest box that still says which version sealed it (version 1). */
#define RELAY_CLIENT_PLAIN_MIN (2 * RELAY_CHALLENGE_LEN + 2)
#define RELAY_CLIENT_INFO_LEN                                                            \
	(RELAY_KEY_LEN + RELAY_NONCE_LEN + RELAY_BOX_MAC_LEN + RELAY_CLIENT_PLAIN_LEN)
#define RELAY_SERVER_KEY_LEN (RELAY_MAGIC_LEN + RELAY_KEY_LEN + RELAY_CHALLENGE_LEN)
/* SERVER_INFO: 6 bytes of settings (bound into the session, session.h),
 * then the nonce and the sealed proof. */
#define RELAY_SETTINGS_LEN 6
#define RELAY_SERVER_INFO_LEN                                                            \
	(RELAY_SETTINGS_LEN + RELAY_NONCE_LEN + RELAY_BOX_MAC_LEN +                      \
	 RELAY_CHALLENGE_LEN + RELAY_KEY_LEN)

enum relay_frame_type {
	RELAY_FRAME_SERVER_KEY = 0x01,
	RELAY_FRAME_CLIENT_INFO = 0x02,
	RELAY_FRAME_SERVER_INFO = 0x03,
	RELAY_FRAME_SEND_PACKET = 0x04,
	RELAY_FRAME_RECV_PACKET = 0x05,
	RELAY_FRAME_KEEPALIVE = 0x06,
	RELAY_FRAME_PEER_GONE = 0x08,
	RELAY_FRAME_PEER_PRESENT = 0x09,
	RELAY_FRAME_FORWARD = 0x0a,
	RELAY_FRAME_PEERS_RESET = 0x0b,
	RELAY_FRAME_PING = 0x12,
	RELAY_FRAME_PONG = 0x13,
	RELAY_FRAME_HEALTH = 0x14,
	RELAY_FRAME_RESTARTING = 0x15,
	RELAY_FRAME_REFUSED = 0x16,
};

/* CLIENT_INFO flags. */
#define RELAY_CLIENT_MESH                                                                \
	0x01 /* a sibling relay: wants PEER_PRESENT/GONE of                              \
	      * every local client, may send FORWARD */

/* PEER_GONE reasons. */
enum relay_gone_reason {
	RELAY_GONE_DISCONNECTED = 0, /* the peer's connection closed */
	RELAY_GONE_NOT_HERE = 1,     /* a packet was sent to a key not connected */
};

/* REFUSED reasons. */
enum relay_refused_reason {
	RELAY_REFUSED_NOT_ADMITTED = 1, /* key is not a node of this mesh */
	RELAY_REFUSED_BAD_AUTH = 2,     /* CLIENT_INFO did not open */
	RELAY_REFUSED_FULL = 3,         /* too many clients */
	RELAY_REFUSED_VERSION = 4,      /* protocol version not supported */
	RELAY_REFUSED_NOT_READY = 5,    /* the relay has no admission list yet */
};

struct relay_frame {
	uint8_t type;
	const uint8_t *body; /* points into the caller's buffer */
	size_t len;
	union {
		struct {
			const uint8_t *key, *challenge;
		} server_key;
		struct {
			const uint8_t *key, *nonce, *box; /* box: len - 56 bytes */
			size_t box_len;
		} client_info;
		struct {
			uint8_t version, flags;
			uint16_t queue_packets, keepalive_s;
			const uint8_t *nonce, *box; /* the proof */
		} server_info;
		struct {
			const uint8_t *key; /* dst (SEND) or src (RECV) */
			const uint8_t *src; /* FORWARD only */
			const uint8_t *dst; /* FORWARD only */
			const uint8_t *data;
			size_t data_len;
		} packet;
		struct {
			const uint8_t *key;
			uint8_t reason; /* PEER_GONE */
		} peer;
		struct {
			const uint8_t *data; /* PING / PONG */
		} ping;
		struct {
			uint8_t reason;   /* REFUSED */
			const char *text; /* not NUL-terminated */
			size_t text_len;
		} text;
		struct {
			uint32_t reconnect_in_ms, try_for_ms;
		} restarting;
	} u;
};

/* Decode results (errors are negative errno values). */
#define RELAY_DECODE_MORE  0 /* p holds no complete frame yet */
#define RELAY_DECODE_READY 1 /* *f holds one frame of *consumed bytes */

/* Decodes the first frame of p[0..len). Returns RELAY_DECODE_MORE (read
 * more; *need, if not NULL, says how many bytes the frame takes in all once
 * the header is in, else RELAY_HDR_LEN), RELAY_DECODE_READY, or -EMSGSIZE (a
 * length above RELAY_FRAME_BODY_MAX: the stream is unusable), -EBADMSG (a
 * known type whose body is too short or malformed: a payload of 0 bytes or
 * over RELAY_PACKET_MAX, text over RELAY_TEXT_MAX). Pointers in *f point
 * into p. */
int relay_frame_decode(const uint8_t *p, size_t len, struct relay_frame *f,
                       size_t *consumed, size_t *need);

/* "SEND_PACKET", ..., or NULL for an unknown type. */
const char *relay_frame_type_name(unsigned type);

/* Encoders write one whole frame into out and return its size, or 0 when
 * out_cap is too small or an argument is out of range (payload 0 or over
 * RELAY_PACKET_MAX, text too long). */
size_t relay_encode_header(uint8_t *out, size_t out_cap, uint8_t type, size_t body_len);
size_t relay_encode_server_key(uint8_t *out, size_t out_cap, const uint8_t *key,
                               const uint8_t *challenge);
/* SERVER_INFO with its proof: client_challenge (from CLIENT_INFO) and the
 * relay's ephemeral public key, sealed from server_priv to client_pub under
 * a random nonce. */
size_t relay_encode_server_info(uint8_t *out, size_t out_cap, uint8_t flags,
                                uint16_t queue_packets, uint16_t keepalive_s,
                                const uint8_t *server_priv, const uint8_t *client_pub,
                                const uint8_t *client_challenge,
                                const uint8_t *relay_eph_pub);
/* SERVER_INFO's settings as on the wire (version || flags ||
 * queue_packets || keepalive_s), for relay_session_init. */
void relay_encode_settings(uint8_t *out, uint8_t version, uint8_t flags,
                           uint16_t queue_packets, uint16_t keepalive_s);
/* The same, from a decoded SERVER_INFO: what a client binds. */
void relay_server_info_settings(const struct relay_frame *f, uint8_t *out);
/* SEND_PACKET (key = dst) or RECV_PACKET (key = src). */
size_t relay_encode_packet(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *key,
                           const uint8_t *data, size_t data_len);
size_t relay_encode_forward(uint8_t *out, size_t out_cap, const uint8_t *src,
                            const uint8_t *dst, const uint8_t *data, size_t data_len);
size_t relay_encode_keepalive(uint8_t *out, size_t out_cap);
size_t relay_encode_peer(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *key,
                         uint8_t reason);
/* PING or PONG. */
size_t relay_encode_ping(uint8_t *out, size_t out_cap, uint8_t type, const uint8_t *data);
size_t relay_encode_health(uint8_t *out, size_t out_cap, const char *text);
size_t relay_encode_restarting(uint8_t *out, size_t out_cap, uint32_t reconnect_in_ms,
                               uint32_t try_for_ms);
size_t relay_encode_refused(uint8_t *out, size_t out_cap, uint8_t reason,
                            const char *text);

/* CLIENT_INFO, built by a client: picks a random client challenge (written
 * to client_challenge, for relay_server_info_open) and an ephemeral key
 * pair (its private half written to eph_priv, 32 bytes, for
 * relay_session_init), and seals challenge || version || flags || client
 * challenge || ephemeral public key with crypto_box from (client_pub,
 * client_priv) to server_pub under a random nonce. Returns the frame's size
 * or 0. */
size_t relay_client_info_seal(uint8_t *out, size_t out_cap, const uint8_t *client_pub,
                              const uint8_t *client_priv, const uint8_t *server_pub,
                              const uint8_t *challenge, uint8_t flags,
                              uint8_t *client_challenge, uint8_t *eph_priv);
/* On the server: opens a decoded CLIENT_INFO with the server's private key
 * and checks that it was sealed with f's client key and carries challenge.
 * Returns 0 with *version, *flags, client_challenge and client_eph_pub (32
 * bytes each) set; -EBADMSG when the box does not open (wrong key: the
 * client does not hold the private key it claims), the challenge differs
 * (a replay) or a version-2 box is short. A box of another version that
 * opens returns 0 with only *version and *flags set: the caller refuses it
 * by version. Constant-time compare; wipes the plaintext. */
int relay_client_info_open(const struct relay_frame *f, const uint8_t *server_priv,
                           const uint8_t *challenge, uint8_t *version, uint8_t *flags,
                           uint8_t *client_challenge, uint8_t *client_eph_pub);
/* On the client: checks a decoded SERVER_INFO's proof: sealed from the
 * server_pub it sealed CLIENT_INFO to, to this client, over its
 * client_challenge; writes the relay's ephemeral public key (32 bytes) to
 * relay_eph_pub. 0, or -EBADMSG (the relay does not hold server_pub's
 * private key). */
int relay_server_info_open(const struct relay_frame *f, const uint8_t *client_priv,
                           const uint8_t *server_pub, const uint8_t *client_challenge,
                           uint8_t *relay_eph_pub);

/* The body length a 5-byte header announces (before anything is decoded:
 * a reader checks it against RELAY_FRAME_BODY_MAX first). */
static inline uint32_t relay_hdr_len(const uint8_t *h)
{
	return (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
}

#endif
