/* Compressed map messages: one zstd frame around a map body, unwrapped
 * with a hard bound on what it may expand to (zmsg.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "core/control/zmsg.h"

struct ctl_zdec {
	ZSTD_DCtx *dctx;
};

struct ctl_zenc {
	ZSTD_CCtx *cctx;
};

struct ctl_zdec *ctl_zdec_new(void)
{
	struct ctl_zdec *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->dctx = ZSTD_createDCtx();
	if (!z->dctx || ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax,
	                                                    CTL_ZMSG_WINDOW_LOG_MAX))) {
		ctl_zdec_free(z);
		return NULL;
	}
	return z;
}

void ctl_zdec_free(struct ctl_zdec *z)
{
	if (!z)
		return;
	ZSTD_freeDCtx(z->dctx);
	free(z);
}

struct ctl_zenc *ctl_zenc_new(void)
{
	struct ctl_zenc *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->cctx = ZSTD_createCCtx();
	if (!z->cctx) {
		free(z);
		return NULL;
	}
	return z;
}

void ctl_zenc_free(struct ctl_zenc *z)
{
	if (!z)
		return;
	ZSTD_freeCCtx(z->cctx);
	free(z);
}

static bool is_map_type(unsigned type)
{
	return type == CTL_MSG_MAP_FULL || type == CTL_MSG_MAP_PEERS ||
	       type == CTL_MSG_MAP_DELTA;
}

int ctl_zmsg_wrap(struct ctl_zenc *z, int level, uint8_t type, const uint8_t *body,
                  size_t len, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (!is_map_type(type) || len > CTL_MSG_MAX_LEN || (len && !body))
		return -EINVAL;
	size_t cap = 1 + ZSTD_compressBound(len);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	buf[0] = type;
	ZSTD_CCtx *own = NULL, *cctx = z ? z->cctx : (own = ZSTD_createCCtx());
	if (!cctx) {
		free(buf);
		return -ENOMEM;
	}
	/* ZSTD_compressCCtx writes the content size into the frame header:
	 * the receiver checks it before it allocates anything. */
	size_t n = ZSTD_compressCCtx(cctx, buf + 1, cap - 1, body, len, level);
	ZSTD_freeCCtx(own);
	if (ZSTD_isError(n)) {
		free(buf);
		return -EIO;
	}
	/* trimmed: cached chunks live as long as their id range is unchanged */
	uint8_t *t = realloc(buf, 1 + n);
	*out = t ? t : buf;
	*out_len = 1 + n;
	return 0;
}

static int zfail(struct ctl_msg_err *err, enum ctl_msg_errcode code, int rc,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int zfail(struct ctl_msg_err *err, enum ctl_msg_errcode code, int rc,
                 const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof(err->text), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* A frame without a declared size: decoded streaming into a buffer that
 * grows (doubling from 64 KiB) only up to max; one byte more is a bomb. */
static int unwrap_stream(ZSTD_DCtx *d, const uint8_t *src, size_t n, size_t max,
                         uint8_t **out, size_t *out_len, struct ctl_msg_err *err)
{
	size_t cap = max < 65536 ? max + 1 : 65536;
	uint8_t *buf = malloc(cap ? cap : 1);
	if (!buf)
		return zfail(err, CTL_MSG_E_NOMEM, -ENOMEM, "out of memory");
	ZSTD_inBuffer in = {src, n, 0};
	ZSTD_outBuffer ob = {buf, cap, 0};
	size_t rem = 1;
	ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
	while (rem != 0) {
		if (ob.pos == ob.size) {
			if (ob.size > max) { /* already holds max + 1 bytes */
				free(buf);
				return zfail(err, CTL_MSG_E_TOO_BIG, -E2BIG,
				             "compressed map expands past %zu bytes",
				             max);
			}
			size_t nc = ob.size * 2 > max + 1 ? max + 1 : ob.size * 2;
			uint8_t *nb = realloc(buf, nc);
			if (!nb) {
				free(buf);
				return zfail(err, CTL_MSG_E_NOMEM, -ENOMEM,
				             "out of memory");
			}
			buf = nb;
			ob.dst = buf;
			ob.size = nc;
		}
		size_t was_in = in.pos, was_out = ob.pos;
		rem = ZSTD_decompressStream(d, &ob, &in);
		if (ZSTD_isError(rem)) {
			free(buf);
			return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
			             "compressed map: %s", ZSTD_getErrorName(rem));
		}
		if (rem != 0 && in.pos == in.size && ob.pos < ob.size &&
		    in.pos == was_in && ob.pos == was_out) {
			free(buf);
			return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
			             "compressed map is cut short");
		}
	}
	if (ob.pos > max) {
		free(buf);
		return zfail(err, CTL_MSG_E_TOO_BIG, -E2BIG,
		             "compressed map expands past %zu bytes", max);
	}
	if (in.pos != in.size) {
		free(buf);
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: %zu bytes after its frame",
		             in.size - in.pos);
	}
	*out = buf;
	*out_len = ob.pos;
	return 0;
}

int ctl_zmsg_unwrap(struct ctl_zdec *z, const uint8_t *p, size_t len, size_t max_out,
                    uint8_t *type, uint8_t **out, size_t *out_len,
                    struct ctl_msg_err *err)
{
	*out = NULL;
	*out_len = 0;
	if (err) {
		err->code = CTL_MSG_E_NONE;
		err->text[0] = 0;
	}
	if (max_out > CTL_MSG_MAX_LEN)
		max_out = CTL_MSG_MAX_LEN;
	if (len < 2)
		return zfail(err, CTL_MSG_E_SYNTAX, -EPROTO, "compressed map: too short");
	if (!is_map_type(p[0]))
		return zfail(err, CTL_MSG_E_TYPE_UNKNOWN, -EPROTO,
		             "compressed message of type 0x%02x (only maps are)", p[0]);
	const uint8_t *src = p + 1;
	size_t n = len - 1;
	/* exactly one frame, and nothing after it */
	size_t fsz = ZSTD_findFrameCompressedSize(src, n);
	if (ZSTD_isError(fsz))
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG, "compressed map: %s",
		             ZSTD_getErrorName(fsz));
	if (fsz != n)
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: %zu bytes after its frame", n - fsz);
	/* A skippable frame is one frame too, with no content: it would
	 * decode as an empty body (control review 3 L3). */
	if (n < 4)
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: too short");
	uint32_t magic = (uint32_t)src[0] | (uint32_t)src[1] << 8 |
	                 (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24;
	if ((magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START)
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: a skippable frame (no map in it)");
	unsigned long long csz = ZSTD_getFrameContentSize(src, n);
	if (csz == 0)
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: an empty frame");
	if (csz == ZSTD_CONTENTSIZE_ERROR)
		return zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		             "compressed map: not a zstd frame");
	if (csz != ZSTD_CONTENTSIZE_UNKNOWN && csz > max_out)
		return zfail(err, CTL_MSG_E_TOO_BIG, -E2BIG,
		             "compressed map declares %llu bytes (limit %zu)", csz,
		             max_out);
	ZSTD_DCtx *own = NULL, *d = z ? z->dctx : NULL;
	if (!d) {
		own = d = ZSTD_createDCtx();
		if (!d || ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax,
		                                              CTL_ZMSG_WINDOW_LOG_MAX))) {
			ZSTD_freeDCtx(own);
			return zfail(err, CTL_MSG_E_NOMEM, -ENOMEM, "out of memory");
		}
	}
	int rc;
	if (csz == ZSTD_CONTENTSIZE_UNKNOWN) {
		rc = unwrap_stream(d, src, n, max_out, out, out_len, err);
	} else {
		/* exactly the declared size; zstd stops at the buffer's end */
		uint8_t *buf = malloc(csz ? (size_t)csz : 1);
		if (!buf) {
			rc = zfail(err, CTL_MSG_E_NOMEM, -ENOMEM, "out of memory");
		} else {
			size_t got = ZSTD_decompressDCtx(d, buf, (size_t)csz, src, n);
			if (ZSTD_isError(got) || got != csz) {
				free(buf);
				rc = zfail(
				    err, CTL_MSG_E_SYNTAX, -EBADMSG, "compressed map: %s",
				    ZSTD_isError(got) ? ZSTD_getErrorName(got)
				                      : "shorter than it declares");
			} else {
				*out = buf;
				*out_len = got;
				rc = 0;
			}
		}
	}
	ZSTD_freeDCtx(own);
	if (rc == 0 && *out_len == 0) { /* a frame of unknown size, empty */
		free(*out);
		*out = NULL;
		rc = zfail(err, CTL_MSG_E_SYNTAX, -EBADMSG,
		           "compressed map: an empty frame");
	}
	if (rc == 0)
		*type = p[0];
	return rc;
}
