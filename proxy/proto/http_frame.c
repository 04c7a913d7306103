/* HTTP/1.1 message framing for the forwarding proxy (RFC 9112): response
 * heads from origin servers (status line, headers, how the body ends) and
 * their rewrite for the client, and a scanner that finds where a chunked
 * body ends without changing it. Pure: no I/O, no allocation. */
#include "proxy/proto/http_priv.h"
#include "proxy/proto/proto.h"

#include <string.h>

/* "HTTP/1.x NNN[ reason]": the version's minor digit and the status. */
static bool px_http_status_line(const uint8_t *l, size_t n, struct px_http_resp *r)
{
	if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' ||
	    l[8] != ' ')
		return false;
	int st = 0;
	for (size_t i = 9; i < 12; i++) {
		if (l[i] < '0' || l[i] > '9')
			return false;
		st = st * 10 + (l[i] - '0');
	}
	if (st < 100 || st > 599 || (n > 12 && l[12] != ' '))
		return false;
	for (size_t i = 12; i < n; i++) /* the reason phrase */
		if ((l[i] < 0x20 && l[i] != '\t') || l[i] == 0x7f)
			return false;
	r->minor = (uint8_t)(l[7] - '0');
	r->status = st;
	return true;
}

/* How the body of a response ends (RFC 9112 section 6.3). */
static bool px_http_response_frame(const struct px_http_frame *fr, bool head_request,
                                   struct px_http_resp *r)
{
	if (fr->conn_bad || fr->cl_bad || fr->te_bad || (fr->te_seen && fr->cl_seen))
		return false;
	r->keep_alive =
	    r->minor >= 1 ? !fr->conn_close : fr->conn_keep && !fr->conn_close;
	if (head_request || r->status < 200 || r->status == 204 || r->status == 304) {
		r->body = PX_HTTP_BODY_NONE;
	} else if (fr->te_seen) {
		/* Transfer-Encoding in an HTTP/1.0 response: the framing is
		 * faulty (RFC 9112 section 6.1): read it up to the close. */
		r->body = fr->te_chunked_last && r->minor >= 1 ? PX_HTTP_BODY_CHUNKED
		                                               : PX_HTTP_BODY_CLOSE;
	} else if (fr->cl_seen) {
		r->body = fr->cl ? PX_HTTP_BODY_LENGTH : PX_HTTP_BODY_NONE;
		r->length = fr->cl;
	} else {
		r->body = PX_HTTP_BODY_CLOSE;
	}
	if (r->body == PX_HTTP_BODY_CLOSE || (fr->te_seen && r->minor == 0))
		r->keep_alive = false;
	return true;
}

enum px_parse px_http_parse_response(const uint8_t *p, size_t len, bool head_request,
                                     struct px_http_resp *r, size_t *used)
{
	memset(r, 0, sizeof(*r));
	size_t lim =
	    len < PX_HTTP_MAX_RESPONSE_HEADER ? len : PX_HTTP_MAX_RESPONSE_HEADER;
	size_t i = 0, n, next;
	bool have_line = false;
	struct px_http_frame fr;
	memset(&fr, 0, sizeof(fr));
	for (;;) {
		next = px_http_line(p, lim, i, &n);
		if (!next)
			return len >= PX_HTTP_MAX_RESPONSE_HEADER ? PX_PARSE_ERROR
			                                          : PX_PARSE_MORE;
		const uint8_t *l = p + i;
		if (memchr(l, 0, n) || memchr(l, '\r', n)) /* NUL, bare CR */
			return PX_PARSE_ERROR;
		if (!have_line) {
			if (!px_http_status_line(l, n, r))
				return PX_PARSE_ERROR;
			have_line = true;
		} else if (n == 0) {
			if (!px_http_response_frame(&fr, head_request, r))
				return PX_PARSE_ERROR;
			*used = next;
			return PX_PARSE_OK;
		} else {
			const uint8_t *name, *v;
			size_t nlen, vlen;
			if (!px_http_field_split(l, n, &name, &nlen, &v, &vlen))
				return PX_PARSE_ERROR;
			px_http_frame_field(&fr, name, nlen, v, vlen);
		}
		i = next;
	}
}

size_t px_http_rewrite_response(const uint8_t *p, size_t head_len, bool keep_alive,
                                uint8_t *out, size_t outlen)
{
	size_t n, next = px_http_line(p, head_len, 0, &n);
	if (!next || n < 12 || n + 2 > outlen)
		return 0;
	memcpy(out, p, n); /* the status line, ended with CR LF */
	memcpy(out + n, "\r\n", 2);
	bool interim = p[9] == '1';
	return px_http_copy_fields(p, next, head_len,
	                           interim      ? NULL
	                           : keep_alive ? "keep-alive"
	                                        : "close",
	                           out, n + 2, outlen);
}

/* ---- chunked bodies ---- */

enum {
	PX_CH_SIZE,         /* hex digits of a chunk size */
	PX_CH_EXT,          /* after the digits: extensions up to CR */
	PX_CH_SIZE_LF,      /* LF ending the size line */
	PX_CH_DATA,         /* chunk data */
	PX_CH_DATA_CR,      /* CR after the data */
	PX_CH_DATA_LF,      /* LF after the data */
	PX_CH_TRAILER,      /* at the start of a trailer line or the final CR */
	PX_CH_TRAILER_NAME, /* in a trailer field's name, up to its colon */
	PX_CH_TRAILER_IN,   /* in a trailer field's value */
	PX_CH_TRAILER_LF,   /* LF ending a trailer line */
	PX_CH_END_LF,       /* LF of the final empty line */
};

void px_http_chunked_init(struct px_http_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = PX_CH_SIZE;
}

static int px_http_hex(uint8_t b)
{
	if (b >= '0' && b <= '9')
		return b - '0';
	if (b >= 'a' && b <= 'f')
		return b - 'a' + 10;
	if (b >= 'A' && b <= 'F')
		return b - 'A' + 10;
	return -1;
}

/* One byte of the framing (not of chunk data). -1: malformed, 1: the body
 * ended with this byte, 0: go on. */
static int px_http_chunk_byte(struct px_http_chunked *c, uint8_t b)
{
	switch (c->state) {
	case PX_CH_SIZE: {
		int h = px_http_hex(b);
		if (++c->line > PX_HTTP_CHUNK_LINE_MAX)
			return -1;
		if (h >= 0) {
			/* At most 2^62 - 1: no reader behind us (a signed 64-bit
			 * size) can see a negative or wrapped length. */
			if (c->digits == 16 || c->left >> 58)
				return -1;
			c->left = (c->left << 4) | (uint64_t)h;
			c->digits++;
			return 0;
		}
		if (c->digits == 0)
			return -1;
		if (b == '\r')
			c->state = PX_CH_SIZE_LF;
		else if (b == ';' || b == ' ' || b == '\t')
			c->state = PX_CH_EXT;
		else
			return -1;
		return 0;
	}
	case PX_CH_EXT:
		if (++c->line > PX_HTTP_CHUNK_LINE_MAX)
			return -1;
		if (b == '\r')
			c->state = PX_CH_SIZE_LF;
		else if ((b < 0x20 && b != '\t') || b == 0x7f)
			return -1;
		return 0;
	case PX_CH_SIZE_LF:
		if (b != '\n')
			return -1;
		c->line = 0;
		c->digits = 0;
		c->state = c->left ? PX_CH_DATA : PX_CH_TRAILER;
		return 0;
	case PX_CH_DATA_CR:
		if (b != '\r')
			return -1;
		c->state = PX_CH_DATA_LF;
		return 0;
	case PX_CH_DATA_LF:
		if (b != '\n')
			return -1;
		c->state = PX_CH_SIZE;
		return 0;
	case PX_CH_TRAILER:
		if (++c->trailers > PX_HTTP_MAX_HEADER)
			return -1;
		if (b == '\r') {
			c->state = PX_CH_END_LF;
			return 0;
		}
		if (!px_http_tchar(b)) /* a field name starts the line */
			return -1;
		c->state = PX_CH_TRAILER_NAME;
		return 0;
	case PX_CH_TRAILER_NAME: /* "name:" as in a header (no "name :") */
		if (++c->trailers > PX_HTTP_MAX_HEADER)
			return -1;
		if (b == ':')
			c->state = PX_CH_TRAILER_IN;
		else if (!px_http_tchar(b))
			return -1;
		return 0;
	case PX_CH_TRAILER_IN:
		if (++c->trailers > PX_HTTP_MAX_HEADER)
			return -1;
		if (b == '\r')
			c->state = PX_CH_TRAILER_LF;
		else if ((b < 0x20 && b != '\t') || b == 0x7f)
			return -1;
		return 0;
	case PX_CH_TRAILER_LF:
		if (b != '\n')
			return -1;
		c->state = PX_CH_TRAILER;
		return 0;
	case PX_CH_END_LF:
		return b == '\n' ? 1 : -1;
	default:
		return -1;
	}
}

enum px_parse px_http_chunked_scan(struct px_http_chunked *c, const uint8_t *p,
                                   size_t len, size_t *used)
{
	size_t i = 0;
	while (i < len) {
		if (c->state == PX_CH_DATA) {
			size_t take = len - i;
			if ((uint64_t)take > c->left)
				take = (size_t)c->left;
			c->left -= take;
			i += take;
			if (c->left == 0)
				c->state = PX_CH_DATA_CR;
			continue;
		}
		int r = px_http_chunk_byte(c, p[i++]);
		if (r < 0)
			return PX_PARSE_ERROR;
		if (r > 0) {
			*used = i;
			return PX_PARSE_OK;
		}
	}
	*used = len;
	return PX_PARSE_MORE;
}
