/* Noise_IK_25519_ChaChaPoly_BLAKE2s (Noise spec revision 34) for the control
 * channel between a node (initiator) and mesh-control (responder).
 *
 *   <- s
 *   ...
 *   -> e, es, s, ss      message 1: payload = TAI64N (12) || app payload
 *   <- e, ee, se         message 2: payload = app payload
 *
 * The node pins the server's static public key (from the join token). The
 * server learns the node's machine key from message 1 and decides there
 * whether it knows it; it rejects a replayed message 1 by keeping, per machine
 * key, the newest timestamp seen (ctl_tai64n_newer). After message 2 both
 * sides call ctl_noise_split() and hold a ctl_noise_transport.
 *
 * Every function returns 0 or a negative errno: -EINVAL (bad state or
 * argument, low-order public key), -EMSGSIZE (output buffer too small or
 * message too long), -EBADMSG (message malformed or fails to authenticate).
 * A handshake that fails must be thrown away (ctl_noise_handshake_wipe). */
#ifndef MESH_CTL_NOISE_IK_H
#define MESH_CTL_NOISE_IK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_NOISE_KEY_LEN       32
#define CTL_NOISE_HASH_LEN      32
#define CTL_NOISE_TAG_LEN       16
#define CTL_NOISE_TIMESTAMP_LEN 12
/* The Noise spec's limit on any one message. */
#define CTL_NOISE_MAX_MSG 65535
/* Message sizes with an empty application payload. */
#define CTL_NOISE_MSG1_OVERHEAD                                                          \
	(CTL_NOISE_KEY_LEN + CTL_NOISE_KEY_LEN + CTL_NOISE_TAG_LEN + CTL_NOISE_TAG_LEN)
#define CTL_NOISE_MSG1_MIN (CTL_NOISE_MSG1_OVERHEAD + CTL_NOISE_TIMESTAMP_LEN)
#define CTL_NOISE_MSG2_MIN (CTL_NOISE_KEY_LEN + CTL_NOISE_TAG_LEN)
/* Largest application payload in message 1 / message 2. */
#define CTL_NOISE_MSG1_PAYLOAD_MAX (CTL_NOISE_MAX_MSG - CTL_NOISE_MSG1_MIN)
#define CTL_NOISE_MSG2_PAYLOAD_MAX (CTL_NOISE_MAX_MSG - CTL_NOISE_MSG2_MIN)

/* The prologue both sides mix in; a peer with another one fails message 1. */
#define CTL_NOISE_PROLOGUE "meshproxy control v1"

enum ctl_noise_role { CTL_NOISE_INITIATOR = 1, CTL_NOISE_RESPONDER = 2 };

/* Noise CipherState */
struct ctl_noise_cipher {
	uint8_t k[CTL_NOISE_KEY_LEN];
	uint64_t n;
	bool has_key;
};

/* HandshakeState (with its SymmetricState). Fields are private to
 * noise_ik.c; callers use the accessors. Plain data: may live on the stack
 * or inside a connection struct; wipe it with ctl_noise_handshake_wipe. */
struct ctl_noise_handshake {
	enum ctl_noise_role role;
	int step; /* messages processed so far: 0, 1, 2 */
	bool failed;
	bool fixed_e;
	uint8_t ck[CTL_NOISE_HASH_LEN];
	uint8_t h[CTL_NOISE_HASH_LEN];
	struct ctl_noise_cipher cs;
	uint8_t s_priv[CTL_NOISE_KEY_LEN];
	uint8_t s_pub[CTL_NOISE_KEY_LEN];
	uint8_t e_priv[CTL_NOISE_KEY_LEN];
	uint8_t e_pub[CTL_NOISE_KEY_LEN];
	uint8_t rs[CTL_NOISE_KEY_LEN];
	uint8_t re[CTL_NOISE_KEY_LEN];
	uint8_t timestamp[CTL_NOISE_TIMESTAMP_LEN]; /* responder: from message 1 */
};

/* The two CipherStates after Split(). Counters are 64-bit; the last nonce
 * (2^64 - 1) is reserved by Noise, so a side refuses (-EOVERFLOW) once it
 * has used 2^64 - 1 nonces: the connection must then be re-established. */
struct ctl_noise_transport {
	struct ctl_noise_cipher send;
	struct ctl_noise_cipher recv;
};

/* Public key for a private key (X25519 base point multiplication). */
int ctl_noise_public_key(uint8_t pub[CTL_NOISE_KEY_LEN],
                         const uint8_t priv[CTL_NOISE_KEY_LEN]);
/* A fresh key pair from the system's CSPRNG. */
void ctl_noise_keypair(uint8_t priv[CTL_NOISE_KEY_LEN], uint8_t pub[CTL_NOISE_KEY_LEN]);

/* prologue may be NULL for CTL_NOISE_PROLOGUE. The initiator's static key is
 * its machine key; server_pub is the pinned control key. */
int ctl_noise_init_initiator(struct ctl_noise_handshake *hs,
                             const uint8_t machine_priv[CTL_NOISE_KEY_LEN],
                             const uint8_t server_pub[CTL_NOISE_KEY_LEN],
                             const uint8_t *prologue, size_t prologue_len);
int ctl_noise_init_responder(struct ctl_noise_handshake *hs,
                             const uint8_t server_priv[CTL_NOISE_KEY_LEN],
                             const uint8_t *prologue, size_t prologue_len);

/* Tests only: use this ephemeral private key instead of a random one. */
int ctl_noise_set_ephemeral(struct ctl_noise_handshake *hs,
                            const uint8_t e_priv[CTL_NOISE_KEY_LEN]);

/* Message 1, initiator side: prepends the current TAI64N to payload. out
 * needs CTL_NOISE_MSG1_MIN + payload_len bytes. */
int ctl_noise_write_msg1(struct ctl_noise_handshake *hs, const uint8_t *payload,
                         size_t payload_len, uint8_t *out, size_t out_cap,
                         size_t *out_len);
/* Message 1, responder side. On success the initiator's static key and
 * timestamp are available (ctl_noise_remote_static / _timestamp) and the
 * application payload (after the timestamp) is copied to payload. payload
 * may be NULL when payload_cap is 0; a larger payload gives -EMSGSIZE. */
int ctl_noise_read_msg1(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                        uint8_t *payload, size_t payload_cap, size_t *payload_len);
/* Message 2: responder writes, initiator reads. out needs
 * CTL_NOISE_MSG2_MIN + payload_len bytes. */
int ctl_noise_write_msg2(struct ctl_noise_handshake *hs, const uint8_t *payload,
                         size_t payload_len, uint8_t *out, size_t out_cap,
                         size_t *out_len);
int ctl_noise_read_msg2(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                        uint8_t *payload, size_t payload_cap, size_t *payload_len);

/* Message 1 without the timestamp convention (the payload is passed through
 * as is): the Noise pattern exactly, for test vectors. */
int ctl_noise_write_msg1_raw(struct ctl_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t out_cap,
                             size_t *out_len);
int ctl_noise_read_msg1_raw(struct ctl_noise_handshake *hs, const uint8_t *p, size_t len,
                            uint8_t *payload, size_t payload_cap, size_t *payload_len);

/* After both messages: the transport keys (initiator sends with the first
 * key of Split()). Wipes the handshake state. */
int ctl_noise_split(struct ctl_noise_handshake *hs, struct ctl_noise_transport *t);

/* The remote static key (responder: after message 1; initiator: always). */
const uint8_t *ctl_noise_remote_static(const struct ctl_noise_handshake *hs);
/* Responder, after message 1: the initiator's TAI64N timestamp. */
const uint8_t *ctl_noise_timestamp(const struct ctl_noise_handshake *hs);
/* The handshake hash h (channel binding); final after message 2. */
const uint8_t *ctl_noise_handshake_hash(const struct ctl_noise_handshake *hs);
void ctl_noise_handshake_wipe(struct ctl_noise_handshake *hs);

/* Transport: out needs len + CTL_NOISE_TAG_LEN bytes; out may equal in.
 * Associated data is empty. Each call uses the next nonce. */
int ctl_noise_encrypt(struct ctl_noise_transport *t, const uint8_t *in, size_t len,
                      uint8_t *out);
/* in holds len bytes of ciphertext (>= CTL_NOISE_TAG_LEN); out gets
 * len - CTL_NOISE_TAG_LEN bytes; out may equal in. A failure (-EBADMSG)
 * does not consume the nonce, but the stream is then dead. */
int ctl_noise_decrypt(struct ctl_noise_transport *t, const uint8_t *in, size_t len,
                      uint8_t *out);
void ctl_noise_transport_wipe(struct ctl_noise_transport *t);

/* TAI64N: 8 bytes big-endian seconds (2^62 + 10 + Unix time) and 4 bytes
 * big-endian nanoseconds. */
void ctl_tai64n_now(uint8_t out[CTL_NOISE_TIMESTAMP_LEN]);
/* True when a is strictly later than b. */
bool ctl_tai64n_newer(const uint8_t a[CTL_NOISE_TIMESTAMP_LEN],
                      const uint8_t b[CTL_NOISE_TIMESTAMP_LEN]);

#endif
