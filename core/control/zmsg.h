/* Compressed map messages (CTL_CAP_ZSTD): a map body (MAP_FULL, MAP_PEERS
 * or MAP_DELTA) wrapped in one zstd frame.
 *
 *   ZMAP body = inner type (1 byte: 0x13, 0x14 or 0x19) || one zstd frame
 *
 * The frame declares its content size, which is the inner body's length:
 * at most CTL_MSG_MAX_LEN, as for a plain body. The server compresses each
 * body once and sends the same bytes to every node that takes them (a
 * chunk of the map holds every node of its id range, the receiver too: a
 * node drops itself from its map).
 *
 * Unwrapping treats the bytes as hostile: a frame that declares more than
 * the limit is refused before anything is allocated (a zstd bomb: a few KB
 * that would expand to GBs), one without a declared size is decoded
 * streaming into a buffer that grows only up to the limit, the output must
 * be exactly what the frame declares, one frame and nothing after it, and
 * the decoder's window is bounded (ZSTD_d_windowLogMax). */
#ifndef MESH_CTL_ZMSG_H
#define MESH_CTL_ZMSG_H

#include <stddef.h>
#include <stdint.h>

#include "core/control/msg.h"

/* Bodies shorter than this are sent plain even to a node with the cap:
 * a single patch (~150 bytes) gains nothing. */
#define CTL_ZMSG_MIN_LEN 512
/* zstd's levels for map bodies. A map chunk, compressed once for every
 * node: level 1 (a chunk of peer entries 4.2x at ~650 MB/s; the keys,
 * random base64, are most of what is left, and higher levels gain under
 * 1 %). A delta, which fewer nodes share: level -1 (3.3x at ~1.1 GB/s, so
 * compressing it costs less than sealing the bytes it saves). */
#define CTL_ZMSG_LEVEL_SHARED 1
#define CTL_ZMSG_LEVEL_FAST   (-1)
/* Largest decoder window accepted (2^22 = 4 MiB = the body limit). */
#define CTL_ZMSG_WINDOW_LOG_MAX 22

/* Why an unwrap failed (struct ctl_msg_err.code is CTL_MSG_E_*; these are
 * the returned errno values). */
/* -EPROTO   inner type is not a map message, or the body is too short
 * -E2BIG    declared or produced size over the limit (a bomb)
 * -EBADMSG  not a valid zstd frame, trailing bytes, size mismatch
 * -ENOMEM */

/* A reusable decompression context (a node keeps one; ~100 KiB). */
struct ctl_zdec;
struct ctl_zdec *ctl_zdec_new(void);
void ctl_zdec_free(struct ctl_zdec *z);

/* A reusable compression context (the server keeps one). */
struct ctl_zenc;
struct ctl_zenc *ctl_zenc_new(void);
void ctl_zenc_free(struct ctl_zenc *z);

/* Wraps body[0..len) of message type `type` (a map message), compressed
 * at zstd level `level`, into a ZMAP
 * body: *out (malloc'd, free()) of *out_len bytes. z may be NULL (a
 * context is made for the call). -EINVAL for another type or a body over
 * CTL_MSG_MAX_LEN, -ENOMEM, -EIO if zstd failed. */
int ctl_zmsg_wrap(struct ctl_zenc *z, int level, uint8_t type, const uint8_t *body,
                  size_t len, uint8_t **out, size_t *out_len);

/* Unwraps a ZMAP body p[0..len): the inner type and its body (*out,
 * malloc'd, free(); at most max_out bytes, itself at most CTL_MSG_MAX_LEN).
 * z may be NULL (a context is made for the call). Errors above, with err
 * (may be NULL) saying what was wrong. Nothing is left to free on error. */
int ctl_zmsg_unwrap(struct ctl_zdec *z, const uint8_t *p, size_t len, size_t max_out,
                    uint8_t *type, uint8_t **out, size_t *out_len,
                    struct ctl_msg_err *err);

#endif
