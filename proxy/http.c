/* [http]: an HTTP proxy. "CONNECT host:port HTTP/1.1", optional
 * Basic authentication (407 with Proxy-Authenticate when missing or
 * wrong), then "200 Connection established" and a raw tunnel. Errors: 400
 * malformed, 431 head over 8 KiB, 501 other methods, 505 other versions,
 * 502 no route / not resolved / refused / unreachable, 504 timed out. The
 * client has handshake_timeout_ms to send its head.
 *
 * Plain forwarding: "GET http://host[:port]/path HTTP/1.1" (also HEAD,
 * POST, PUT, DELETE, OPTIONS, PATCH) dials host:port (80 by default) the
 * same way, with the same 407/502/504 answers, and sends the head
 * rewritten by px_http_rewrite() (origin-form, hop-by-hop headers dropped,
 * "Connection: close") followed by whatever body bytes came with it; then
 * the connection is spliced and the origin server answers the client
 * directly. One request per client connection: the server closes after its
 * response, and so does the client's connection. https:// gets 400
 * (clients use CONNECT for it).
 *
 * Destinations outside the mesh are connected from the host when Direct
 * allows it, with the same answers: 502 refused or unreachable, 504 no
 * answer in time; 403 where Direct's policy refuses; with Direct = no
 * they get 502. */
#include "proxy/internal.h"

#include "config/config.h"
#include "core/util/log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct px_http {
	struct px_front front; /* first: sessions point at it */
	char *user, *pass;
};

/* The head (at most 8 KiB) plus early data such as a TLS ClientHello or a
 * request body, plus room for the rewrite of a forwarded head. */
#define HTTP_BUF (PX_HTTP_MAX_HEADER + 8192 + PX_HTTP_REWRITE_SLACK)

/* s->stage once a forward request has been accepted (before: the parse
 * position, never negative). */
#define HTTP_STAGE_FORWARD (-1)

/* Replaces the head s->buf[0..used) with its rewrite for the origin server
 * and makes the whole buffer the splice head. False: 400. */
static bool px_http_forward(struct px_sess *s, size_t used)
{
	uint8_t head[PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK];
	size_t n = px_http_rewrite(s->buf, used, head, sizeof(head));
	size_t early = s->len - used;
	bool ok = n > 0 && n + early <= s->ops->buf_size;
	if (ok) {
		memmove(s->buf + n, s->buf + used, early);
		memcpy(s->buf, head, n);
		s->len = n + early;
		s->consumed = 0;
		s->stage = HTTP_STAGE_FORWARD;
	}
	sodium_memzero(head, n); /* cookies and the like */
	return ok;
}

static void px_http_respond(struct px_sess *s, int status)
{
	char out[256];
	px_sess_send(s, out, px_http_response(out, sizeof(out), status));
}

static enum px_parse px_http_on_data(struct px_sess *s)
{
	struct px_http *h = (struct px_http *)s->front;
	struct px_http_request req;
	size_t used = 0;
	int status = 400;
	/* Parse only when a line ended: byte-by-byte clients stay linear. */
	size_t from = (size_t)s->stage;
	s->stage = (int)s->len;
	if (!memchr(s->buf + from, '\n', s->len - from) && s->len < PX_HTTP_MAX_HEADER)
		return PX_PARSE_MORE;
	enum px_parse r = px_http_parse_request(s->buf, s->len, &req, &used, &status);
	if (r == PX_PARSE_MORE)
		return r;
	if (r == PX_PARSE_ERROR) {
		px_http_respond(s, status);
		PX_STAT(s, err_protocol);
		return r;
	}
	if (h->user && !px_http_auth_ok(req.auth, req.auth_len, h->user, h->pass)) {
		px_http_respond(s, 407);
		PX_STAT(s, err_auth);
		return PX_PARSE_ERROR;
	}
	s->target = req.target;
	s->consumed = used;
	if (req.forward && !px_http_forward(s, used)) {
		px_http_respond(s, 400);
		PX_STAT(s, err_protocol);
		return PX_PARSE_ERROR;
	}
	char t[300];
	px_target_format(&s->target, t, sizeof(t));
	log_debug("http: %s %s", req.forward ? "forward to" : "CONNECT", t);
	return PX_PARSE_OK;
}

static void px_http_on_result(struct px_sess *s, enum px_err e)
{
	if (e == PX_OK && s->stage == HTTP_STAGE_FORWARD)
		return; /* the origin server's response is the answer */
	px_http_respond(s, e == PX_OK          ? 200
	                   : e == PX_E_TIMEOUT ? 504
	                   : e == PX_E_DENIED  ? 403
	                   : e == PX_E_BUSY    ? 503
	                                       : 502);
}

static const struct px_sess_ops px_http_ops = {
    .on_data = px_http_on_data,
    .on_result = px_http_on_result,
    .buf_size = HTTP_BUF,
    .buf_reserve = PX_HTTP_REWRITE_SLACK,
};

static void px_http_on_accept(void *ctx, int fd)
{
	struct px_http *h = ctx;
	px_sess_new(&h->front, fd, &px_http_ops);
}

static void px_http_free_secret(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

struct px_http *px_http_new(const struct px_env *env, const struct cfg_http *cfg,
                            char *err, size_t errlen)
{
	struct px_http *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "http: out of memory");
		return NULL;
	}
	if (px_front_init(&h->front, env, "http", &cfg->limits, cfg->direct) < 0) {
		snprintf(err, errlen, "http: out of memory");
		px_http_free(h);
		return NULL;
	}
	if (cfg->username && cfg->password) {
		h->user = strdup(cfg->username);
		h->pass = strdup(cfg->password);
		if (!h->user || !h->pass) {
			snprintf(err, errlen, "http: out of memory");
			px_http_free(h);
			return NULL;
		}
	}
	h->front.lst = px_listener_new(env->base, &cfg->bind, px_http_on_accept, h,
	                               &h->front.stats.err_accept, err, errlen);
	if (!h->front.lst) {
		px_http_free(h);
		return NULL;
	}
	return h;
}

void px_http_free(struct px_http *h)
{
	if (!h)
		return;
	px_front_fini(&h->front);
	px_http_free_secret(h->user);
	px_http_free_secret(h->pass);
	free(h);
}

void px_http_get_stats(const struct px_http *h, struct px_stats *st)
{
	px_front_stats(&h->front, st);
}

void px_http_local_addr(const struct px_http *h, struct sockaddr_storage *ss,
                        socklen_t *len)
{
	px_listener_addr(h->front.lst, ss, len);
}
