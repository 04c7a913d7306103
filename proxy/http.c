/* [http]: an HTTP proxy. "CONNECT host:port HTTP/1.1", optional
 * Basic authentication (407 with Proxy-Authenticate when missing or
 * wrong), then "200 Connection established" and a raw tunnel. Errors: 400
 * malformed, 431 head over 8 KiB, 501 other methods, 505 other versions,
 * 502 no route / not resolved / refused / unreachable, 504 timed out. The
 * client has handshake_timeout_ms to send its head.
 *
 * Plain forwarding: "GET http://host[:port]/path HTTP/1.1" (also HEAD,
 * POST, PUT, DELETE, OPTIONS, PATCH) dials host:port (80 by default) the
 * same way, with the same 403/407/502/504 answers; once connected, the
 * client and origin connections go to http_forward.c, which forwards this
 * request and every later one on the connection, each framed and
 * rewritten, each to its own origin (a new origin is dialled here again,
 * through px_sess_resume). Request framing that a server could read
 * differently (Content-Length with Transfer-Encoding, lengths that
 * disagree, Connection naming either) gets 400. https:// gets 400 (clients
 * use CONNECT for it).
 *
 * Destinations outside the mesh are connected from the host when Direct
 * allows it, with the same answers: 502 refused or unreachable, 504 no
 * answer in time; 403 where Direct's policy refuses; with Direct = no
 * they get 502. */
#include "proxy/internal.h"

#include "config/config.h"
#include "core/util/log.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct px_http {
	struct px_front front; /* first: sessions point at it */
	char *user, *pass;
	unsigned response_ms; /* PX_HTTP_RESPONSE_MS unless configured */
};

/* The head (at most 8 KiB) plus early data such as a TLS ClientHello, a
 * request body or the next pipelined requests. */
#define HTTP_BUF PX_HTTP_READ_AHEAD

static void px_http_respond(struct px_sess *s, int status)
{
	char out[256];
	px_sess_send(s, out, px_http_response(out, sizeof(out), status));
}

int px_http_check(struct px_front *f, const uint8_t *p, size_t len,
                  struct px_http_request *req, size_t *used)
{
	struct px_http *h = (struct px_http *)f;
	int status = 400;
	enum px_parse r = px_http_parse_request(p, len, req, used, &status);
	if (r == PX_PARSE_MORE)
		return 0;
	if (r == PX_PARSE_ERROR) {
		f->stats.err_protocol++;
		return status;
	}
	if (h->user && !px_http_auth_ok(req->auth, req->auth_len, h->user, h->pass)) {
		f->stats.err_auth++;
		return 407;
	}
	return 200;
}

unsigned px_http_response_ms(const struct px_front *f)
{
	return ((const struct px_http *)f)->response_ms;
}

static enum px_parse px_http_on_data(struct px_sess *s)
{
	struct px_http_request req;
	size_t used = 0;
	/* Parse only when a line ended: byte-by-byte clients stay linear. */
	size_t from = (size_t)s->stage;
	s->stage = (int)s->len;
	if (!memchr(s->buf + from, '\n', s->len - from) && s->len < PX_HTTP_MAX_HEADER)
		return PX_PARSE_MORE;
	int status = px_http_check(s->front, s->buf, s->len, &req, &used);
	if (status == 0)
		return PX_PARSE_MORE;
	if (status != 200) {
		px_http_respond(s, status);
		return PX_PARSE_ERROR;
	}
	s->target = req.target;
	/* A forwarded request stays in the buffer: the forwarding connection
	 * (http_forward.c) takes it, framed, once the origin answers the dial. */
	s->consumed = req.forward ? 0 : used;
	if (req.forward)
		s->stage = PX_HTTP_STAGE_FORWARD;
	char t[300];
	px_target_format(&s->target, t, sizeof(t));
	log_debug("http: %s %s", req.forward ? "forward to" : "CONNECT", t);
	return PX_PARSE_OK;
}

/* 403 with a line that names the destination the mesh policy refuses
 * (a bare 403 would read like the proxy's own Direct refusal). */
static void px_http_respond_policy(struct px_sess *s)
{
	char t[160], body[200], out[sizeof(s->out)];
	px_target_format(&s->target, t, sizeof(t));
	int bn = snprintf(body, sizeof(body), "the mesh policy does not allow %s\n", t);
	int n = snprintf(out, sizeof(out),
	                 "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
	                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	                 bn, body);
	if (n > 0 && (size_t)n < sizeof(out))
		px_sess_send(s, out, (size_t)n);
	else
		px_http_respond(s, 403);
}

static void px_http_on_result(struct px_sess *s, enum px_err e)
{
	if (e == PX_OK && s->stage == PX_HTTP_STAGE_FORWARD)
		return; /* the origin server's response is the answer */
	if (e == PX_E_POLICY) {
		px_http_respond_policy(s);
		return;
	}
	px_http_respond(s, e == PX_OK          ? 200
	                   : e == PX_E_TIMEOUT ? 504
	                   : e == PX_E_DENIED  ? 403
	                   : e == PX_E_BUSY    ? 503
	                                       : 502);
}

static bool px_http_on_established(struct px_sess *s)
{
	return s->stage == PX_HTTP_STAGE_FORWARD && px_hfwd_take(s);
}

static const struct px_sess_ops px_http_ops = {
    .on_data = px_http_on_data,
    .on_result = px_http_on_result,
    .on_established = px_http_on_established,
    .buf_size = HTTP_BUF,
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
	h->response_ms =
	    cfg->response_timeout_ms ? cfg->response_timeout_ms : PX_HTTP_RESPONSE_MS;
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
	px_hfwd_close_all(&h->front);
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
