/* The control channel's length-prefixed frames; see frame.h for the format. */
#include "core/control/frame.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* A buffer grown past this for one large frame is released after it. */
#define KEEP_MAX (64 * 1024)
#define GROW_MIN 4096

void ctl_frame_decoder_init(struct ctl_frame_decoder *d)
{
	memset(d, 0, sizeof(*d));
}

void ctl_frame_decoder_set_transport(struct ctl_frame_decoder *d,
                                     struct ctl_noise_transport *t)
{
	d->t = t;
}

void ctl_frame_decoder_set_max(struct ctl_frame_decoder *d, size_t max)
{
	d->max = max < CTL_FRAME_MAX ? max : CTL_FRAME_MAX;
}

static void release(struct ctl_frame_decoder *d)
{
	if (d->buf) {
		sodium_memzero(d->buf, d->cap);
		free(d->buf);
	}
	d->buf = NULL;
	d->cap = 0;
	d->have = 0;
}

void ctl_frame_decoder_free(struct ctl_frame_decoder *d)
{
	release(d);
	d->delivered = 0;
}

/* Room for need bytes, growing geometrically but never past the frame. */
static int reserve(struct ctl_frame_decoder *d, size_t need)
{
	size_t cap;
	uint8_t *nb;

	if (need <= d->cap)
		return 0;
	cap = d->cap * 2;
	if (cap < GROW_MIN)
		cap = GROW_MIN;
	if (cap < need)
		cap = need;
	if (cap > d->len)
		cap = d->len;
	nb = malloc(cap);
	if (!nb)
		return -ENOMEM;
	if (d->have)
		memcpy(nb, d->buf, d->have);
	if (d->buf) {
		sodium_memzero(d->buf, d->cap);
		free(d->buf);
	}
	d->buf = nb;
	d->cap = cap;
	return 0;
}

/* The 4-byte header is complete: check the announced length. */
static int start_frame(struct ctl_frame_decoder *d)
{
	uint32_t len = (uint32_t)d->hdr[0] << 24 | (uint32_t)d->hdr[1] << 16 |
	               (uint32_t)d->hdr[2] << 8 | d->hdr[3];

	if (len == 0)
		return -EPROTO;
	if (len > (d->t ? (d->max ? d->max : CTL_FRAME_MAX) : CTL_FRAME_HS_MAX))
		return -EMSGSIZE;
	if (d->t && len < CTL_NOISE_TAG_LEN + 1)
		return -EPROTO;
	d->len = len;
	d->have = 0;
	return 0;
}

/* The frame's bytes are all in buf: open it. */
static int finish_frame(struct ctl_frame_decoder *d, struct ctl_frame *out)
{
	size_t plain = d->len;
	int rc;

	if (d->t) {
		rc = ctl_noise_decrypt(d->t, d->buf, d->len, d->buf);
		if (rc != 0)
			return rc;
		plain -= CTL_NOISE_TAG_LEN;
	}
	out->type = d->buf[0];
	out->body = d->buf + 1;
	out->len = plain - 1;
	d->hdr_have = 0;
	d->delivered = 1;
	return CTL_FRAME_READY;
}

int ctl_frame_decode(struct ctl_frame_decoder *d, const uint8_t *p, size_t len,
                     size_t *consumed, struct ctl_frame *out)
{
	size_t used = 0, take;
	int rc = CTL_FRAME_MORE;

	*consumed = 0;
	if (d->err)
		return d->err;
	if (d->delivered) {
		sodium_memzero(d->buf, d->have);
		d->have = 0;
		d->delivered = 0;
		if (d->cap > KEEP_MAX)
			release(d);
	}
	while (used < len) {
		if (d->hdr_have < CTL_FRAME_HDR_LEN) {
			take = CTL_FRAME_HDR_LEN - d->hdr_have;
			if (take > len - used)
				take = len - used;
			memcpy(d->hdr + d->hdr_have, p + used, take);
			d->hdr_have += take;
			used += take;
			if (d->hdr_have == CTL_FRAME_HDR_LEN &&
			    (rc = start_frame(d)) != 0)
				break;
			continue;
		}
		take = d->len - d->have;
		if (take > len - used)
			take = len - used;
		if ((rc = reserve(d, d->have + take)) != 0)
			break;
		memcpy(d->buf + d->have, p + used, take);
		d->have += take;
		used += take;
		if (d->have == d->len) {
			rc = finish_frame(d, out);
			break;
		}
	}
	*consumed = used;
	if (rc < 0) {
		d->err = rc;
		if (d->buf)
			sodium_memzero(d->buf, d->cap);
	}
	return rc;
}

size_t ctl_frame_handshake_size(size_t msg_len)
{
	return CTL_FRAME_HDR_LEN + 1 + msg_len;
}

size_t ctl_frame_sealed_size(size_t body_len)
{
	return CTL_FRAME_HDR_LEN + 1 + body_len + CTL_NOISE_TAG_LEN;
}

static void put_be32(uint8_t *out, size_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

int ctl_frame_encode_handshake(uint8_t type, const uint8_t *msg, size_t msg_len,
                               uint8_t *out, size_t out_cap, size_t *out_len)
{
	if (msg_len > CTL_FRAME_HS_MAX - 1 || out_cap < ctl_frame_handshake_size(msg_len))
		return -EMSGSIZE;
	put_be32(out, 1 + msg_len);
	out[CTL_FRAME_HDR_LEN] = type;
	if (msg_len)
		memmove(out + CTL_FRAME_HDR_LEN + 1, msg, msg_len);
	*out_len = ctl_frame_handshake_size(msg_len);
	return 0;
}

int ctl_frame_seal(struct ctl_noise_transport *t, uint8_t type, const uint8_t *body,
                   size_t body_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
	uint8_t *plain = out + CTL_FRAME_HDR_LEN;
	int rc;

	if (body_len > CTL_FRAME_BODY_MAX || out_cap < ctl_frame_sealed_size(body_len))
		return -EMSGSIZE;
	if (body_len)
		memmove(plain + 1, body, body_len);
	plain[0] = type;
	rc = ctl_noise_encrypt(t, plain, 1 + body_len, plain);
	if (rc != 0) {
		sodium_memzero(plain, 1 + body_len);
		return rc;
	}
	put_be32(out, 1 + body_len + CTL_NOISE_TAG_LEN);
	*out_len = ctl_frame_sealed_size(body_len);
	return 0;
}
