/* Framing of the control channel's TCP stream.
 *
 * Every frame is a 4-byte big-endian length L, then L bytes:
 *
 *   +--------+-----------------------------------------------+
 *   | L (u32)| L bytes                                       |
 *   +--------+-----------------------------------------------+
 *
 * Handshake phase (before transport keys exist), the L bytes are in clear:
 *   type (1 byte: CTL_FRAME_HS1 or CTL_FRAME_HS2) || Noise handshake message
 *   with 1 <= L <= CTL_FRAME_HS_MAX. Only the node sends HS1 and only the
 *   server sends HS2, once each; the first frame each way is a handshake.
 *
 * Transport phase (after ctl_noise_split), the L bytes are one transport
 *   message: ChaCha20-Poly1305 ciphertext (empty associated data, the next
 *   nonce of that direction) of type (1 byte) || body, so
 *   CTL_NOISE_TAG_LEN + 1 <= L <= CTL_FRAME_MAX. The type byte is the
 *   application's (control message types are defined by its protocol); the
 *   framing does not interpret it.
 *
 * A length of zero, above the phase's limit, or a frame that fails to
 * decrypt ends the connection (a receiver may lower the transport limit:
 * ctl_frame_decoder_set_max): the decoder reports it once and then keeps
 * returning the same error. */
#ifndef MESH_CTL_FRAME_H
#define MESH_CTL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/control/noise_ik.h"

#define CTL_FRAME_HDR_LEN 4
/* Largest type || body in a transport frame, and its ciphertext. */
#define CTL_FRAME_PLAIN_MAX                                                              \
	(4 * 1024 * 1024) /* = CTL_MSG_MAX_LEN; bigger maps go in chunks */
#define CTL_FRAME_BODY_MAX (CTL_FRAME_PLAIN_MAX - 1)
#define CTL_FRAME_MAX      (CTL_FRAME_PLAIN_MAX + CTL_NOISE_TAG_LEN)
/* Largest transport frame a node sends the server (its largest message,
 * REGISTER_REQ, is under 2 KiB; the limit leaves room for newer fields).
 * The server's decoder refuses a longer announced length at once, before
 * it buffers any of it (ctl_frame_decoder_set_max). */
#define CTL_FRAME_NODE_PLAIN_MAX (64 * 1024)
#define CTL_FRAME_NODE_MAX       (CTL_FRAME_NODE_PLAIN_MAX + CTL_NOISE_TAG_LEN)
/* Largest handshake frame payload: type byte || Noise message. */
#define CTL_FRAME_HS_MAX (1 + CTL_NOISE_MAX_MSG)

/* Handshake frame types (clear text, handshake phase only). */
#define CTL_FRAME_HS1 0x01
#define CTL_FRAME_HS2 0x02

/* ctl_frame_decode results (errors are negative errno values). */
#define CTL_FRAME_MORE  0 /* all input consumed, no complete frame yet */
#define CTL_FRAME_READY 1 /* *out holds one frame; more input may remain */

struct ctl_frame {
	uint8_t type;
	const uint8_t *body; /* inside the decoder; valid until its next call */
	size_t len;
};

/* Incremental decoder. Memory grows with the bytes actually received (not
 * the announced length), so a peer that announces a large frame and stalls
 * costs only what it sent; the buffer is capped at CTL_FRAME_MAX. */
struct ctl_frame_decoder {
	struct ctl_noise_transport *t; /* NULL: handshake phase; borrowed */
	uint8_t hdr[CTL_FRAME_HDR_LEN];
	size_t hdr_have;
	size_t len; /* announced length of the frame in progress */
	size_t max; /* transport-phase limit; 0: CTL_FRAME_MAX */
	uint8_t *buf;
	size_t cap, have;
	int err;       /* sticky error, 0 while healthy */
	int delivered; /* buf holds the frame returned last time */
};

void ctl_frame_decoder_init(struct ctl_frame_decoder *d);
/* Switch to the transport phase: later frames are decrypted with t (which
 * must outlive the decoder's use of it). Call after the handshake frame has
 * been returned and before feeding the bytes that follow it. */
void ctl_frame_decoder_set_transport(struct ctl_frame_decoder *d,
                                     struct ctl_noise_transport *t);
/* Lowers the transport-phase limit to max bytes (ciphertext, tag
 * included; at most CTL_FRAME_MAX): a longer announced length fails with
 * -EMSGSIZE before any of the frame is buffered. The server sets
 * CTL_FRAME_NODE_MAX: what nodes send is small, what it sends them is not. */
void ctl_frame_decoder_set_max(struct ctl_frame_decoder *d, size_t max);
/* Wipes and frees the buffer. Safe on a zeroed or already freed decoder. */
void ctl_frame_decoder_free(struct ctl_frame_decoder *d);

/* Feeds len bytes. *consumed says how many were used: all of them on
 * CTL_FRAME_MORE; up to the end of the frame on CTL_FRAME_READY (call again
 * with the rest, after switching phase if the frame ended the handshake).
 * Errors: -EPROTO (zero length, or a transport frame shorter than a tag and
 * a type), -EMSGSIZE (length above the phase's limit), -EBADMSG (failed to
 * decrypt), -ENOMEM, -EOVERFLOW (receive nonces exhausted). */
int ctl_frame_decode(struct ctl_frame_decoder *d, const uint8_t *p, size_t len,
                     size_t *consumed, struct ctl_frame *out);

/* Bytes a handshake frame / a sealed transport frame takes on the wire. */
size_t ctl_frame_handshake_size(size_t msg_len);
size_t ctl_frame_sealed_size(size_t body_len);

/* Writes a clear handshake frame: header, type, msg. -EMSGSIZE when msg is
 * too long or out_cap too small. */
int ctl_frame_encode_handshake(uint8_t type, const uint8_t *msg, size_t msg_len,
                               uint8_t *out, size_t out_cap, size_t *out_len);
/* Writes an encrypted transport frame (uses t's next send nonce). */
int ctl_frame_seal(struct ctl_noise_transport *t, uint8_t type, const uint8_t *body,
                   size_t body_len, uint8_t *out, size_t out_cap, size_t *out_len);

#endif
