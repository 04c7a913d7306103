/* HTTP proxy request heads (RFC 9110, RFC 9112): a pure parser over
 * (p, len) for CONNECT (section 9.3.6) and for absolute-form requests to
 * http:// URIs with their body framing, the rewrite of the latter to
 * origin-form, the Basic credential check and the few responses a proxy
 * sends. Response heads and chunked bodies are in http_frame.c. */
#include "proxy/proto/http_priv.h"
#include "proxy/proto/proto.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool px_http_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

size_t px_http_line(const uint8_t *p, size_t len, size_t i, size_t *n)
{
	const uint8_t *nl = memchr(p + i, '\n', len - i);
	if (!nl)
		return 0;
	size_t e = (size_t)(nl - p);
	*n = e - i;
	if (*n > 0 && p[e - 1] == '\r')
		(*n)--;
	return e + 1;
}

static enum px_parse px_http_fail(int *status, int code)
{
	*status = code;
	return PX_PARSE_ERROR;
}

/* "host:port" or "[v6]:port" into t. With def_port non-zero the port may
 * be left out ("host", "host:", "[v6]") and def_port is used. */
static bool px_http_authority(const uint8_t *s, size_t n, struct px_target *t,
                              uint16_t def_port)
{
	const uint8_t *host = s, *colon;
	size_t hl;
	if (n > 0 && s[0] == '[') {
		const uint8_t *close = memchr(s, ']', n);
		if (!close)
			return false;
		host = s + 1;
		hl = (size_t)(close - host);
		colon = close + 1 < s + n ? close + 1 : NULL;
		if ((colon && *colon != ':') || (!colon && !def_port))
			return false;
		if (!memchr(host, ':', hl)) /* brackets only around IPv6 */
			return false;
	} else {
		colon = NULL;
		for (size_t i = 0; i < n; i++)
			if (s[i] == ':')
				colon = s + i;
		if (!colon && !def_port)
			return false;
		hl = colon ? (size_t)(colon - s) : n;
		if (memchr(s, ':', hl))
			return false;
	}
	size_t plen = colon ? (size_t)(s + n - (colon + 1)) : 0;
	unsigned long port = 0;
	if (plen == 0 && def_port) {
		if (!px_target_set(t, (const char *)host, hl, def_port))
			return false;
		return (host != s) == (!t->is_name && t->addr.family == AF_INET6);
	}
	if (plen == 0 || plen > 5)
		return false;
	for (size_t i = 0; i < plen; i++) {
		uint8_t c = colon[1 + i];
		if (c < '0' || c > '9')
			return false;
		port = port * 10 + (c - '0');
	}
	if (port == 0 || port > 65535)
		return false;
	if (!px_target_set(t, (const char *)host, hl, (uint16_t)port))
		return false;
	/* An IPv6 literal must come in brackets and nothing else may. */
	return (host != s) == (!t->is_name && t->addr.family == AF_INET6);
}

/* The methods forwarded in absolute-form. */
static bool px_http_forward_method(const uint8_t *m, size_t n)
{
	static const char *const ok[] = {"GET",    "HEAD",    "POST", "PUT",
	                                 "DELETE", "OPTIONS", "PATCH"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strlen(ok[i]) == n && memcmp(m, ok[i], n) == 0)
			return true;
	return false;
}

/* For "http://authority/path?query": the authority (ends at '/', '?', '#'
 * or the end) and its length; NULL if the scheme is not http or the
 * authority is empty. */
static const uint8_t *px_http_uri_authority(const uint8_t *u, size_t n, size_t *alen)
{
	if (n < 7 || strncasecmp((const char *)u, "http://", 7) != 0)
		return NULL;
	size_t i = 7;
	while (i < n && u[i] != '/' && u[i] != '?' && u[i] != '#')
		i++;
	*alen = i - 7;
	return *alen ? u + 7 : NULL;
}

static enum px_parse px_http_request_line(const uint8_t *l, size_t n,
                                          struct px_http_request *r, int *status)
{
	const uint8_t *sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l)
		return px_http_fail(status, 400);
	for (const uint8_t *c = l; c < sp1; c++)
		if (!px_http_tchar(*c))
			return px_http_fail(status, 400);
	const uint8_t *tgt = sp1 + 1, *end = l + n;
	const uint8_t *sp2 = memchr(tgt, ' ', (size_t)(end - tgt));
	if (!sp2 || sp2 == tgt)
		return px_http_fail(status, 400);
	const uint8_t *ver = sp2 + 1;
	size_t vlen = (size_t)(end - ver);
	if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' ||
	    ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
		return px_http_fail(status, 400);
	if (ver[5] != '1')
		return px_http_fail(status, 505);
	r->minor = (uint8_t)(ver[7] - '0');
	size_t mlen = (size_t)(sp1 - l), tlen = (size_t)(sp2 - tgt);
	r->head = mlen == 4 && memcmp(l, "HEAD", 4) == 0;
	if (mlen == 7 && memcmp(l, "CONNECT", 7) == 0) {
		if (!px_http_authority(tgt, tlen, &r->target, 0))
			return px_http_fail(status, 400);
		return PX_PARSE_OK;
	}
	if (!px_http_forward_method(l, mlen))
		return px_http_fail(status, 501);
	/* Safe methods only: a proxy must not send a non-idempotent request
	 * twice on its own (RFC 9110 section 9.2.2); PUT and DELETE are
	 * idempotent, but replaying them is left to the client, as in Go. */
	r->replayable = r->head || (mlen == 3 && memcmp(l, "GET", 3) == 0) ||
	                (mlen == 7 && memcmp(l, "OPTIONS", 7) == 0);
	/* Absolute-form to http:// only: https:// goes through CONNECT, and
	 * origin-form ("/path") is for servers, not proxies. */
	size_t alen;
	const uint8_t *auth = px_http_uri_authority(tgt, tlen, &alen);
	if (!auth || memchr(auth, '@', alen)) /* no userinfo */
		return px_http_fail(status, 400);
	for (const uint8_t *c = tgt; c < sp2; c++)
		if (*c <= 0x20 || *c == 0x7f)
			return px_http_fail(status, 400);
	if (!px_http_authority(auth, alen, &r->target, 80))
		return px_http_fail(status, 400);
	r->forward = true;
	return PX_PARSE_OK;
}

bool px_http_field_split(const uint8_t *l, size_t n, const uint8_t **name, size_t *nlen,
                         const uint8_t **v, size_t *vlen)
{
	const uint8_t *colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return false;
	for (const uint8_t *c = l; c < colon; c++)
		if (!px_http_tchar(*c)) /* also refuses obs-fold and "Name :" */
			return false;
	const uint8_t *b = colon + 1, *end = l + n;
	for (const uint8_t *c = b; c < end; c++)
		if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
			return false;
	while (b < end && (*b == ' ' || *b == '\t'))
		b++;
	while (end > b && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*name = l;
	*nlen = (size_t)(colon - l);
	*v = b;
	*vlen = (size_t)(end - b);
	return true;
}

static enum px_parse px_http_header(const uint8_t *l, size_t n, struct px_http_request *r,
                                    struct px_http_frame *fr, int *status)
{
	const uint8_t *name, *v;
	size_t nlen, vlen;
	if (!px_http_field_split(l, n, &name, &nlen, &v, &vlen))
		return px_http_fail(status, 400);
	if (px_http_name_is(name, nlen, "Proxy-Authorization")) {
		if (r->auth)
			return px_http_fail(status, 400);
		r->auth = v;
		r->auth_len = vlen;
	} else if (px_http_name_is(name, nlen, "Expect")) {
		r->expect_continue = px_http_name_is(v, vlen, "100-continue");
	} else if (px_http_name_is(name, nlen, "Idempotency-Key") ||
	           px_http_name_is(name, nlen, "X-Idempotency-Key")) {
		r->replayable = true;
	}
	px_http_frame_field(fr, name, nlen, v, vlen);
	return PX_PARSE_OK;
}

/* The body framing of a request (RFC 9112 section 6.3). */
static enum px_parse px_http_request_frame(const struct px_http_frame *fr,
                                           struct px_http_request *r, int *status)
{
	if (fr->conn_bad || fr->cl_bad)
		return px_http_fail(status, 400);
	r->keep_alive = r->minor >= 1 && !fr->conn_close;
	if (fr->te_seen) {
		/* Both headers are a smuggling attempt; 1.0 has no chunked. */
		if (fr->cl_seen || r->minor == 0 || fr->te_bad || !fr->te_chunked_last)
			return px_http_fail(status, 400);
		if (fr->te_other)
			return px_http_fail(status, 501);
		r->body = PX_HTTP_BODY_CHUNKED;
	} else if (fr->cl_seen && fr->cl > 0) {
		r->body = PX_HTTP_BODY_LENGTH;
		r->length = fr->cl;
	}
	return PX_PARSE_OK;
}

enum px_parse px_http_parse_request(const uint8_t *p, size_t len,
                                    struct px_http_request *r, size_t *used, int *status)
{
	memset(r, 0, sizeof(*r));
	*status = 400;
	size_t lim = len < PX_HTTP_MAX_HEADER ? len : PX_HTTP_MAX_HEADER;
	size_t i = 0, n, next;
	/* Empty lines before the request line are ignored (RFC 9112 2.2). */
	while (i < lim && (p[i] == '\r' || p[i] == '\n'))
		i++;
	bool have_line = false;
	struct px_http_frame fr;
	memset(&fr, 0, sizeof(fr));
	for (;;) {
		next = px_http_line(p, lim, i, &n);
		if (!next)
			return len >= PX_HTTP_MAX_HEADER ? px_http_fail(status, 431)
			                                 : PX_PARSE_MORE;
		const uint8_t *l = p + i;
		if (memchr(l, 0, n))
			return px_http_fail(status, 400);
		if (!have_line) {
			if (px_http_request_line(l, n, r, status) != PX_PARSE_OK)
				return PX_PARSE_ERROR;
			have_line = true;
		} else if (n == 0) {
			if (px_http_request_frame(&fr, r, status) != PX_PARSE_OK)
				return PX_PARSE_ERROR;
			*used = next;
			*status = 200;
			return PX_PARSE_OK;
		} else if (px_http_header(l, n, r, &fr, status) != PX_PARSE_OK) {
			return PX_PARSE_ERROR;
		}
		i = next;
	}
}

/* ---- absolute-form rewrite ---- */

struct px_http_tok {
	const uint8_t *p;
	size_t n;
};

bool px_http_name_is(const uint8_t *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp((const char *)name, want, n) == 0;
}

/* Calls fn for each option of a Connection-style list (comma-separated,
 * with optional white space); stops when fn returns false. */
static void px_http_list(const uint8_t *v, size_t n,
                         bool (*fn)(void *ctx, const uint8_t *t, size_t tn), void *ctx)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t b = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (i > b && !fn(ctx, v + b, i - b))
			return;
	}
}

struct px_http_toks {
	struct px_http_tok *tok;
	size_t n, max;
	bool full;
};

static bool px_http_tok_add(void *ctx, const uint8_t *t, size_t tn)
{
	struct px_http_toks *k = ctx;
	if (k->n == k->max) {
		k->full = true;
		return false;
	}
	k->tok[k->n].p = t;
	k->tok[k->n++].n = tn;
	return true;
}

/* Whether a header is hop-by-hop: listed in RFC 9110 section 7.6.1 (and
 * the older Proxy-Connection, Trailer), named by Connection, the proxy
 * authentication fields (they are for the client's proxy, which is us:
 * an origin's Proxy-Authenticate would make a browser ask the user for
 * proxy credentials on the origin's behalf), or Host, which is rebuilt
 * from the request target (RFC 9112 section 3.2.2). */
static bool px_http_hop_header(const uint8_t *name, size_t n,
                               const struct px_http_tok *tok, size_t ntok)
{
	static const char *const hop[] = {"Connection",
	                                  "Proxy-Connection",
	                                  "Keep-Alive",
	                                  "TE",
	                                  "Trailer",
	                                  "Upgrade",
	                                  "Host",
	                                  "Proxy-Authorization",
	                                  "Proxy-Authenticate",
	                                  "Proxy-Authentication-Info"};
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (px_http_name_is(name, n, hop[i]))
			return true;
	for (size_t i = 0; i < ntok; i++)
		if (tok[i].n == n &&
		    strncasecmp((const char *)name, (const char *)tok[i].p, n) == 0)
			return true;
	return false;
}

/* ---- framing headers ---- */

static bool px_http_conn_opt(void *ctx, const uint8_t *t, size_t n)
{
	struct px_http_frame *fr = ctx;
	if (px_http_name_is(t, n, "close"))
		fr->conn_close = true;
	else if (px_http_name_is(t, n, "keep-alive"))
		fr->conn_keep = true;
	else if (px_http_name_is(t, n, "Content-Length") ||
	         px_http_name_is(t, n, "Transfer-Encoding"))
		fr->conn_bad = true; /* dropping them would reframe the body */
	return true;
}

/* One member of a Transfer-Encoding list: a bare token. Parameters are
 * refused ("chunked;x" is read as chunked by some servers, as something
 * else by others), and so is an empty member: the list is forwarded
 * rebuilt, so what we refuse no server behind us has to guess at. */
static void px_http_te_coding(struct px_http_frame *fr, const uint8_t *t, size_t n)
{
	if (n == 0 || n > UINT8_MAX || fr->te_n == PX_HTTP_TE_MAX) {
		fr->te_bad = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (!px_http_tchar(t[i])) {
			fr->te_bad = true;
			return;
		}
	if (fr->te_chunked_last)
		fr->te_bad = true; /* a coding after chunked */
	fr->te_chunked_last = px_http_name_is(t, n, "chunked");
	if (!fr->te_chunked_last)
		fr->te_other = true;
	fr->te[fr->te_n] = t;
	fr->te_len[fr->te_n++] = (uint8_t)n;
}

/* Transfer-Encoding: a comma-separated list (RFC 9110 section 5.6.1)
 * with optional white space around each member. */
static void px_http_te(struct px_http_frame *fr, const uint8_t *v, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t b = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (b < e && (v[b] == ' ' || v[b] == '\t'))
			b++;
		while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		px_http_te_coding(fr, v + b, e - b);
		if (i >= n)
			return;
		i++; /* the comma */
	}
}

/* Content-Length: one number, or a comma-separated list of equal numbers
 * (RFC 9110 section 8.6); across headers too. Nothing else: "1 1" or
 * "+1" are errors, so that no server can read another length into it. */
static void px_http_cl(struct px_http_frame *fr, const uint8_t *v, size_t n)
{
	size_t i = 0;
	do {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t b = i;
		uint64_t x = 0;
		while (i < n && v[i] >= '0' && v[i] <= '9' && i - b < 18)
			x = x * 10 + (uint64_t)(v[i++] - '0');
		if (i == b || (i < n && v[i] >= '0' && v[i] <= '9') ||
		    (fr->cl_seen && x != fr->cl))
			fr->cl_bad = true;
		fr->cl_seen = true;
		fr->cl = x;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i < n && v[i] != ',')
			fr->cl_bad = true;
	} while (i++ < n && !fr->cl_bad);
}

void px_http_frame_field(struct px_http_frame *fr, const uint8_t *name, size_t nlen,
                         const uint8_t *v, size_t vlen)
{
	if (px_http_name_is(name, nlen, "Connection")) {
		px_http_list(v, vlen, px_http_conn_opt, fr);
	} else if (px_http_name_is(name, nlen, "Transfer-Encoding")) {
		fr->te_seen = true;
		px_http_te(fr, v, vlen);
	} else if (px_http_name_is(name, nlen, "Content-Length")) {
		px_http_cl(fr, v, vlen);
	}
}

/* ---- copying headers ---- */

struct px_http_out {
	uint8_t *p;
	size_t len, cap;
	bool full;
};

static void px_http_put(struct px_http_out *o, const void *p, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
}

#define PX_HTTP_CONN_TOKENS 64

/* Content-Length and Transfer-Encoding as one normalised line each. */
static void px_http_put_framing(struct px_http_out *o, const struct px_http_frame *fr)
{
	if (fr->te_seen) {
		px_http_put(o, "Transfer-Encoding: ", 19);
		for (size_t i = 0; i < fr->te_n; i++) {
			if (i)
				px_http_put(o, ", ", 2);
			if (px_http_name_is(fr->te[i], fr->te_len[i], "chunked"))
				px_http_put(o, "chunked", 7);
			else
				px_http_put(o, fr->te[i], fr->te_len[i]);
		}
		px_http_put(o, "\r\n", 2);
	} else if (fr->cl_seen) {
		char num[40];
		int k = snprintf(num, sizeof(num), "Content-Length: %llu\r\n",
		                 (unsigned long long)fr->cl);
		px_http_put(o, num, (size_t)k);
	}
}

size_t px_http_copy_fields(const uint8_t *p, size_t hdr, size_t head_len,
                           const char *conn, uint8_t *out, size_t o_len, size_t outlen)
{
	struct px_http_out o = {out, o_len, outlen, o_len > outlen};
	struct px_http_tok tok[PX_HTTP_CONN_TOKENS];
	struct px_http_toks k = {tok, 0, PX_HTTP_CONN_TOKENS, false};
	struct px_http_frame fr;
	memset(&fr, 0, sizeof(fr));
	const uint8_t *name, *v;
	size_t nlen, vlen;
	size_t i, n, next = 0;
	/* First pass: the options Connection names, and the framing. */
	for (i = hdr; (next = px_http_line(p, head_len, i, &n)) && n > 0; i = next) {
		if (!px_http_field_split(p + i, n, &name, &nlen, &v, &vlen))
			return 0;
		if (px_http_name_is(name, nlen, "Connection"))
			px_http_list(v, vlen, px_http_tok_add, &k);
		px_http_frame_field(&fr, name, nlen, v, vlen);
		if (k.full)
			return 0;
	}
	if (!next)
		return 0; /* no empty line: not a head the parser accepted */
	/* Second pass: copy the end-to-end headers, each ending in CR LF: a
	 * server that only ends lines at CR LF must see what we saw. */
	for (i = hdr; (next = px_http_line(p, head_len, i, &n)) && n > 0; i = next) {
		px_http_field_split(p + i, n, &name, &nlen, &v, &vlen);
		if (px_http_hop_header(name, nlen, tok, k.n) ||
		    px_http_name_is(name, nlen, "Content-Length") ||
		    px_http_name_is(name, nlen, "Transfer-Encoding"))
			continue;
		px_http_put(&o, p + i, n);
		px_http_put(&o, "\r\n", 2);
	}
	px_http_put_framing(&o, &fr);
	if (conn) {
		px_http_put(&o, "Connection: ", 12);
		px_http_put(&o, conn, strlen(conn));
		px_http_put(&o, "\r\n", 2);
	}
	px_http_put(&o, "\r\n", 2);
	return o.full ? 0 : o.len;
}

size_t px_http_rewrite(const uint8_t *p, size_t head_len, bool keep_alive, uint8_t *out,
                       size_t outlen)
{
	struct px_http_out o = {out, 0, outlen, false};
	size_t i = 0, n, next;
	while (i < head_len && (p[i] == '\r' || p[i] == '\n'))
		i++;
	/* Request line: METHOD SP http://authority[path] SP HTTP/1.x */
	next = px_http_line(p, head_len, i, &n);
	const uint8_t *l = p + i, *sp1 = next ? memchr(l, ' ', n) : NULL;
	const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(l + n - sp1 - 1)) : NULL;
	size_t alen = 0;
	const uint8_t *auth =
	    sp2 ? px_http_uri_authority(sp1 + 1, (size_t)(sp2 - sp1 - 1), &alen) : NULL;
	if (!auth)
		return 0;
	const uint8_t *path = auth + alen, *pend = path;
	while (pend < sp2 && *pend != '#') /* a fragment is not sent */
		pend++;
	px_http_put(&o, l, (size_t)(sp1 - l) + 1);
	if (path == pend && sp1 - l == 7 && memcmp(l, "OPTIONS", 7) == 0)
		px_http_put(&o, "*", 1); /* the server itself (RFC 9112 3.2.4) */
	else if (path == pend || *path != '/')
		px_http_put(&o, "/", 1);
	px_http_put(&o, path, (size_t)(pend - path));
	px_http_put(&o, sp2, (size_t)(l + n - sp2));
	px_http_put(&o, "\r\nHost: ", 8);
	px_http_put(&o, auth, alen);
	px_http_put(&o, "\r\n", 2);
	if (o.full)
		return 0;
	return px_http_copy_fields(p, next, head_len, keep_alive ? "keep-alive" : "close",
	                           out, o.len, outlen);
}

bool px_http_auth_ok(const uint8_t *value, size_t len, const char *user, const char *pass)
{
	if (!value || len < 7 || strncasecmp((const char *)value, "Basic ", 6) != 0)
		return false;
	const char *b64 = (const char *)value + 6;
	size_t blen = len - 6;
	while (blen > 0 && *b64 == ' ')
		b64++, blen--;
	uint8_t got[520], want[520];
	size_t glen = 0, ulen = strlen(user), plen = strlen(pass);
	const char *end = NULL;
	bool ok = false;
	if (ulen + 1 + plen <= sizeof(want) && blen > 0 &&
	    sodium_base642bin(got, sizeof(got), b64, blen, NULL, &glen, &end,
	                      sodium_base64_VARIANT_ORIGINAL) == 0 &&
	    end == b64 + blen && glen == ulen + 1 + plen) {
		memcpy(want, user, ulen);
		want[ulen] = ':';
		memcpy(want + ulen + 1, pass, plen);
		ok = sodium_memcmp(got, want, glen) == 0;
	}
	sodium_memzero(got, sizeof(got));
	sodium_memzero(want, sizeof(want));
	return ok;
}

size_t px_http_response(char *out, size_t outlen, int status)
{
	const char *text;
	switch (status) {
	case 200:
		return (size_t)snprintf(out, outlen,
		                        "HTTP/1.1 200 Connection established\r\n\r\n");
	case 400:
		text = "Bad Request";
		break;
	case 403:
		text = "Forbidden";
		break;
	case 407:
		text = "Proxy Authentication Required";
		break;
	case 431:
		text = "Request Header Fields Too Large";
		break;
	case 501:
		text = "Not Implemented";
		break;
	case 503:
		text = "Service Unavailable";
		break;
	case 504:
		text = "Gateway Timeout";
		break;
	case 505:
		text = "HTTP Version Not Supported";
		break;
	default:
		status = 502;
		text = "Bad Gateway";
		break;
	}
	int n = snprintf(
	    out, outlen,
	    "HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", status,
	    text,
	    status == 407 ? "Proxy-Authenticate: Basic realm=\"meshproxy\"\r\n" : "");
	return n < 0 ? 0 : ((size_t)n < outlen ? (size_t)n : outlen - 1);
}
