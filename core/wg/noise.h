/* The Noise_IKpsk2 handshake of WireGuard (paper, section 5.4) and the
 * transport keys it yields. Pure functions over caller-owned state: no
 * sockets, no timers, no tables. The caller allocates session indices, finds
 * peers and decides what to keep. */
#ifndef MESH_WG_NOISE_H
#define MESH_WG_NOISE_H

#include "core/wg/messages.h"
#include "core/wg/replay.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Our static key pair. */
struct wg_noise_identity {
	uint8_t private_key[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t public_key[WG_NOISE_PUBLIC_KEY_LEN];
};

enum wg_handshake_state {
	WG_HS_ZEROED = 0,
	WG_HS_CREATED_INITIATION,
	WG_HS_CONSUMED_INITIATION,
	WG_HS_CREATED_RESPONSE,
	WG_HS_CONSUMED_RESPONSE,
};

/* One per peer. The first block is the handshake in flight (wiped by
 * wg_noise_handshake_clear); the second lives as long as the peer. */
struct wg_handshake {
	enum wg_handshake_state state;
	uint32_t local_index; /* valid in CREATED_INITIATION / CREATED_RESPONSE */
	uint32_t remote_index;
	uint8_t ephemeral_private[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t remote_ephemeral[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t hash[WG_NOISE_HASH_LEN];
	uint8_t chaining_key[WG_NOISE_HASH_LEN];

	uint8_t remote_static[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t preshared_key[WG_NOISE_SYMMETRIC_KEY_LEN]; /* zeros when none */
	uint8_t precomputed_static_static[WG_NOISE_PUBLIC_KEY_LEN];
	uint8_t latest_timestamp[WG_NOISE_TIMESTAMP_LEN];
	uint64_t last_initiation_consumption_ns; /* 0: never */
};

/* A session: transport keys in both directions. */
struct wg_keypair {
	uint8_t send_key[WG_NOISE_SYMMETRIC_KEY_LEN];
	uint8_t recv_key[WG_NOISE_SYMMETRIC_KEY_LEN];
	uint64_t send_counter; /* next nonce to use */
	struct wg_replay replay;
	uint64_t birthdate_ns; /* monotonic */
	uint32_t local_index, remote_index;
	bool i_am_the_initiator;
	bool send_valid, recv_valid;
};

/* Derives the public key. Returns 0, or -EINVAL for a key whose public part
 * would be all-zero. */
int wg_noise_identity_init(struct wg_noise_identity *id,
                           const uint8_t private_key[WG_NOISE_PUBLIC_KEY_LEN]);
void wg_noise_identity_wipe(struct wg_noise_identity *id);

/* Sets up a peer's handshake. psk may be NULL. Returns 0, or -EINVAL when the
 * static-static Diffie-Hellman is all-zero (a low-order peer key). */
int wg_noise_handshake_init(struct wg_handshake *hs, const struct wg_noise_identity *id,
                            const uint8_t remote_static[WG_NOISE_PUBLIC_KEY_LEN],
                            const uint8_t *psk);
/* Forgets the handshake in flight; keeps the peer's keys and the replay
 * state of its timestamps. */
void wg_noise_handshake_clear(struct wg_handshake *hs);
/* Wipes everything. */
void wg_noise_handshake_wipe(struct wg_handshake *hs);

/* TAI64N of the current wall clock, nanoseconds rounded down to 2^24 so
 * that the timestamp does not leak fine timing. */
void wg_noise_tai64n_now(uint8_t out[WG_NOISE_TIMESTAMP_LEN]);

/* Initiator. Fills everything but the MACs. Returns 0 or -EINVAL. */
int wg_noise_create_initiation(struct wg_handshake *hs,
                               const struct wg_noise_identity *id, uint32_t local_index,
                               struct wg_msg_initiation *msg);

/* Responder. The lookup maps a decrypted static key to that peer's handshake
 * (NULL if unknown). On success *out is the peer's handshake, now in state
 * CONSUMED_INITIATION. Errors: -EBADMSG (does not decrypt), -ENOENT (unknown
 * peer), -EALREADY (timestamp not newer: a replay), -EBUSY (initiations
 * arriving faster than WG_INITIATIONS_PER_SECOND). */
typedef struct wg_handshake *(*wg_noise_lookup_fn)(
    void *ctx, const uint8_t public_key[WG_NOISE_PUBLIC_KEY_LEN]);
int wg_noise_consume_initiation(const struct wg_noise_identity *id,
                                const struct wg_msg_initiation *msg, uint64_t now_ns,
                                wg_noise_lookup_fn lookup, void *ctx,
                                struct wg_handshake **out);

/* Responder, after consuming an initiation. Fills everything but the MACs. */
int wg_noise_create_response(struct wg_handshake *hs, uint32_t local_index,
                             struct wg_msg_response *msg);

/* Initiator: hs is the handshake whose local index the response names.
 * Returns 0 (hs now CONSUMED_RESPONSE), -EINVAL (not waiting for a response)
 * or -EBADMSG. hs is untouched on failure. */
int wg_noise_consume_response(struct wg_handshake *hs, const struct wg_noise_identity *id,
                              const struct wg_msg_response *msg);

/* Derives the transport keys once the handshake is complete (initiator in
 * CONSUMED_RESPONSE, responder in CREATED_RESPONSE), fills kp and clears the
 * handshake. kp takes over hs->local_index. Returns 0 or -EINVAL. */
int wg_noise_begin_session(struct wg_handshake *hs, struct wg_keypair *kp,
                           uint64_t now_ns);
void wg_noise_keypair_wipe(struct wg_keypair *kp);

/* Transport. Seal: buf holds WG_MSG_DATA_HEADER_LEN bytes of room, then the
 * plaintext (plain_len bytes, already padded), then WG_AUTHTAG_LEN bytes of
 * room; writes the header and encrypts in place. Returns the message length. */
size_t wg_noise_seal(const struct wg_keypair *kp, uint64_t counter, uint8_t *buf,
                     size_t plain_len);
/* Open: msg is a whole data message (len >= WG_MSG_DATA_MIN_LEN); writes the
 * plaintext (len - 32 bytes) to out. Returns 0 or -EBADMSG. Does not check
 * the replay window. */
int wg_noise_open(const struct wg_keypair *kp, const uint8_t *msg, size_t len,
                  uint8_t *out);

#endif
