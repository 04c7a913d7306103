/* Shared by the HTTP codecs (http_codec.c: request heads; http_frame.c:
 * response heads and chunked framing). Private to proxy/proto/. */
#ifndef MESH_PROXY_PROTO_HTTP_PRIV_H
#define MESH_PROXY_PROTO_HTTP_PRIV_H

#include "proxy/proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool px_http_tchar(uint8_t c);
/* The end of the line starting at p[i]: the index just past '\n' and the
 * content length without CR LF in *n; 0 if there is no '\n'. */
size_t px_http_line(const uint8_t *p, size_t len, size_t i, size_t *n);

/* One header line "name: value": checks the name (tchar only, so no
 * obs-fold and no "Name :") and the value (no control bytes but HTAB),
 * and returns the name and the value without surrounding white space. */
bool px_http_field_split(const uint8_t *l, size_t n, const uint8_t **name, size_t *nlen,
                         const uint8_t **v, size_t *vlen);
bool px_http_name_is(const uint8_t *name, size_t n, const char *want);

/* Transfer codings a head may name, over all its Transfer-Encoding lines. */
#define PX_HTTP_TE_MAX 4

/* What the framing headers of one head say (RFC 9112 section 6). */
struct px_http_frame {
	bool cl_seen, cl_bad; /* Content-Length; bad: not a number, or values differ */
	uint64_t cl;
	bool te_seen;         /* Transfer-Encoding */
	bool te_chunked_last; /* its last coding is chunked */
	/* chunked twice or not last, an empty list or member, a coding with
	 * parameters ("chunked;x") or more than PX_HTTP_TE_MAX codings */
	bool te_bad;
	bool te_other;                     /* a coding other than chunked */
	const uint8_t *te[PX_HTTP_TE_MAX]; /* the codings, in order, inside p */
	uint8_t te_len[PX_HTTP_TE_MAX];
	size_t te_n;
	bool conn_close, conn_keep;
	bool conn_bad; /* Connection names Content-Length or Transfer-Encoding */
};
/* Adds one header (name and trimmed value) to fr. */
void px_http_frame_field(struct px_http_frame *fr, const uint8_t *name, size_t nlen,
                         const uint8_t *v, size_t vlen);

/* Copies the header lines of p[hdr..head_len) that are not hop-by-hop
 * into out at *o (for requests and responses alike), each ending in CR LF
 * whatever it ended with; Content-Length and Transfer-Encoding are not
 * copied but sent once, normalised ("Content-Length: 5" for "5, 5" or
 * "05", "Transfer-Encoding: gzip, chunked" for the codings of all lines),
 * then the Connection header if conn is not NULL, then the empty line.
 * Returns the new length, or 0 when it does not fit in outlen, a line is
 * not a header, or Connection names over 64 options. */
size_t px_http_copy_fields(const uint8_t *p, size_t hdr, size_t head_len,
                           const char *conn, uint8_t *out, size_t o, size_t outlen);

#endif
