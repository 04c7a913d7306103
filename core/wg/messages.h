/* WireGuard wire formats and protocol constants, named as in the WireGuard
 * paper (section 5.4) and laid out byte for byte as on the wire. Integers on
 * the wire are little-endian; the structs keep the raw bytes and callers use
 * wg_le32/wg_le64 helpers to read or write them. */
#ifndef MESH_WG_MESSAGES_H
#define MESH_WG_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

/* Noise parameters. */
#define WG_CONSTRUCTION "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
#define WG_IDENTIFIER   "WireGuard v1 zx2c4 Jason@zx2c4.com"
#define WG_LABEL_MAC1   "mac1----"
#define WG_LABEL_COOKIE "cookie--"

#define WG_NOISE_PUBLIC_KEY_LEN       32
#define WG_NOISE_SYMMETRIC_KEY_LEN    32
#define WG_NOISE_HASH_LEN             32
#define WG_NOISE_TIMESTAMP_LEN        12
#define WG_AUTHTAG_LEN                16
#define WG_COOKIE_LEN                 16
#define WG_COOKIE_NONCE_LEN           24
#define WG_NOISE_ENCRYPTED_LEN(plain) ((plain) + WG_AUTHTAG_LEN)

/* Timers and limits (paper, section 6). Times in seconds. */
#define WG_REKEY_AFTER_MESSAGES        (1ULL << 60)
#define WG_REJECT_AFTER_MESSAGES       (UINT64_MAX - (1ULL << 13)) /* 2^64 - 2^13 - 1 */
#define WG_REKEY_TIMEOUT               5
#define WG_REKEY_TIMEOUT_JITTER_MAX_MS 334 /* jitter in [0, 333] ms */
#define WG_KEEPALIVE_TIMEOUT           10
#define WG_REKEY_AFTER_TIME            120
#define WG_REJECT_AFTER_TIME           180
#define WG_REKEY_ATTEMPT_TIME          90
/* Our one departure from the paper's timers: the first initiations to a
 * peer we have never reached are retried after 1 s, not REKEY_TIMEOUT, so
 * a peer that was not listening yet (both ends started together) or a
 * crossed pair of first initiations costs a second rather than five. Then
 * the paper's timer. Each retry carries a new timestamp; responders' rate
 * limits (ours: WG_INITIATIONS_PER_SECOND) allow far more. */
#define WG_QUICK_RETRIES       3
#define WG_QUICK_RETRY_TIMEOUT 1
#define WG_MAX_TIMER_HANDSHAKES                                                          \
	(WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT + WG_QUICK_RETRIES)
#define WG_INITIATIONS_PER_SECOND   50
#define WG_MAX_PEERS                (1U << 20)
#define WG_COOKIE_SECRET_MAX_AGE    120
#define WG_COOKIE_SECRET_LATENCY    5
#define WG_MAX_STAGED_PACKETS       128
#define WG_MESSAGE_PADDING_MULTIPLE 16

enum wg_message_type {
	WG_MSG_INVALID = 0,
	WG_MSG_HANDSHAKE_INITIATION = 1,
	WG_MSG_HANDSHAKE_RESPONSE = 2,
	WG_MSG_HANDSHAKE_COOKIE = 3,
	WG_MSG_DATA = 4,
};

/* The type byte is followed by three zero bytes: read as one LE uint32. */
struct wg_msg_header {
	uint8_t type[4];
} __attribute__((packed));

struct wg_msg_macs {
	uint8_t mac1[WG_COOKIE_LEN];
	uint8_t mac2[WG_COOKIE_LEN];
} __attribute__((packed));

struct wg_msg_initiation {
	struct wg_msg_header header;
	uint8_t sender_index[4];
	uint8_t unencrypted_ephemeral[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t encrypted_static[WG_NOISE_ENCRYPTED_LEN(WG_NOISE_PUBLIC_KEY_LEN)];
	uint8_t encrypted_timestamp[WG_NOISE_ENCRYPTED_LEN(WG_NOISE_TIMESTAMP_LEN)];
	struct wg_msg_macs macs;
} __attribute__((packed));

struct wg_msg_response {
	struct wg_msg_header header;
	uint8_t sender_index[4];
	uint8_t receiver_index[4];
	uint8_t unencrypted_ephemeral[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t encrypted_nothing[WG_NOISE_ENCRYPTED_LEN(0)];
	struct wg_msg_macs macs;
} __attribute__((packed));

struct wg_msg_cookie {
	struct wg_msg_header header;
	uint8_t receiver_index[4];
	uint8_t nonce[WG_COOKIE_NONCE_LEN];
	uint8_t encrypted_cookie[WG_NOISE_ENCRYPTED_LEN(WG_COOKIE_LEN)];
} __attribute__((packed));

struct wg_msg_data {
	struct wg_msg_header header;
	uint8_t receiver_index[4];
	uint8_t counter[8];
	/* followed by the encrypted, padded packet and its tag */
} __attribute__((packed));

#define WG_MSG_INITIATION_LEN  148
#define WG_MSG_RESPONSE_LEN    92
#define WG_MSG_COOKIE_LEN      64
#define WG_MSG_DATA_HEADER_LEN 16
#define WG_MSG_DATA_MIN_LEN    (WG_MSG_DATA_HEADER_LEN + WG_AUTHTAG_LEN) /* a keepalive */
#define WG_MSG_DATA_LEN(plain) (WG_MSG_DATA_HEADER_LEN + WG_NOISE_ENCRYPTED_LEN(plain))

_Static_assert(sizeof(struct wg_msg_initiation) == WG_MSG_INITIATION_LEN, "initiation");
_Static_assert(sizeof(struct wg_msg_response) == WG_MSG_RESPONSE_LEN, "response");
_Static_assert(sizeof(struct wg_msg_cookie) == WG_MSG_COOKIE_LEN, "cookie reply");
_Static_assert(sizeof(struct wg_msg_data) == WG_MSG_DATA_HEADER_LEN, "data header");

static inline uint32_t wg_le32(const uint8_t p[4])
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void wg_put_le32(uint8_t p[4], uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t wg_le64(const uint8_t p[8])
{
	return (uint64_t)wg_le32(p) | (uint64_t)wg_le32(p + 4) << 32;
}

static inline void wg_put_le64(uint8_t p[8], uint64_t v)
{
	wg_put_le32(p, (uint32_t)v);
	wg_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* The message type of a UDP payload, or WG_MSG_INVALID if it is too short or
 * the three reserved bytes are not zero. */
static inline uint32_t wg_msg_type(const uint8_t *p, size_t len)
{
	if (len < sizeof(struct wg_msg_header))
		return WG_MSG_INVALID;
	return wg_le32(p);
}

#endif
