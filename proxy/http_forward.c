/* HTTP forwarding: the client connection of the HTTP proxy after its first
 * absolute-form request reached an origin server. Each request is parsed
 * (proxy/proto/http_codec.c), rewritten to origin-form without hop-by-hop
 * headers and Proxy-Authorization, and sent with exactly the body its
 * framing gives (Content-Length or chunked); then the response head is
 * parsed (http_frame.c) and rewritten without hop-by-hop headers, a 100
 * Continue passes through when the client sent Expect: 100-continue (other
 * 1xx are dropped), and the body is passed on as far as its
 * framing goes (Content-Length, chunked with trailers, none for HEAD, 204
 * and 304, or up to the server's close). Only then is the next request
 * taken: pipelined requests wait in the read-ahead buffer, and the client
 * is not read while it is full.
 *
 * The next request reuses the origin connection when it is for the same
 * host:port and the server kept it open; otherwise the connection goes
 * back to a session (px_sess_resume) that resolves, checks and dials the
 * new origin exactly as for a first request (403, 502, 504 answers) and
 * hands it back here. A CONNECT on a kept-alive connection goes the same
 * way and ends in a tunnel.
 *
 * The proxy decides the client connection's fate itself: it stays open
 * (Connection: keep-alive) unless the client asked to close, spoke
 * HTTP/1.0, the response is delimited by the server's close, or the
 * response came before the request body was sent. An error before any
 * byte of a response went out is answered (400 for a bad request, 502 for
 * a bad or missing response); after that the client connection is closed,
 * never given a second status line. Timeouts: a partial request head gets
 * the handshake timeout, an idle keep-alive connection is closed after
 * PX_HTTP_KEEPALIVE_MS (or IdleTimeout if shorter); a request under way
 * gets the response timeout (PX_HTTP_RESPONSE_MS, 60 s): from the last
 * byte sent to the origin to its response head (504 if the client has
 * nothing yet), and while a body moves, from the last byte moved either
 * way (then both connections are reset); and IdleTimeout if set and
 * shorter. So an origin that never answers, a client that never reads
 * and a body that trickles cannot hold the buffers for ever.
 *
 * The origin side is always a socket: a Direct connection from the host,
 * or for mesh destinations one end of a socketpair whose other end is
 * spliced to the netstack connection (ns_splice_start_ex), so both go
 * through the same code with back-pressure both ways. Memory per client
 * connection: four fixed buffers, about 56 KiB (not yet charged to a
 * node-wide memory budget). */
#include "proxy/internal.h"

#include "core/util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HF_CIN  PX_HTTP_READ_AHEAD                           /* client bytes read ahead */
#define HF_OOUT (PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK) /* to the origin */
#define HF_OIN  PX_HTTP_MAX_RESPONSE_HEADER                  /* from the origin */
#define HF_COUT                                                                          \
	(PX_HTTP_MAX_RESPONSE_HEADER + PX_HTTP_REWRITE_SLACK) /* to the client           \
	                                                       */

enum hf_up { HF_UP_HEAD, HF_UP_BODY, HF_UP_DONE };
enum hf_down { HF_DOWN_IDLE, HF_DOWN_HEAD, HF_DOWN_BODY };

struct px_hfwd {
	struct px_front *f;
	const struct px_sess_ops *ops; /* the HTTP front-end's, to dial anew */
	struct px_hfwd *next, *prev;
	int cfd, ofd; /* client; origin (-1 when closed) */
	struct px_target origin;
	struct event *crev, *cwev, *orev, *owev, *timer;
	enum hf_up up;
	enum hf_down down;
	enum px_http_body up_body, down_body;
	uint64_t up_left, down_left;
	struct px_http_chunked up_ch, down_ch;
	bool req_head;    /* the request is HEAD */
	bool client_keep; /* keep the client connection after this response */
	bool origin_keep; /* the origin keeps its connection */
	bool interim_ok;  /* the client expects a 100 Continue: pass one on */
	bool sent;        /* bytes of the final response went to the client */
	size_t held;      /* a bodiless request's head, kept at the front of cin
	                   * until the origin answers (for a retry) */
	unsigned uses;    /* requests sent on this origin connection */
	bool cin_eof, oin_eof;
	bool closing;   /* no more requests: shut the client once cout is out */
	bool lingering; /* write side shut: discarding client bytes until EOF */
	long since;     /* ms: idle since / head since / last byte moved */
	long moved;     /* ms: this exchange last moved a byte (see hf_deadline) */
	size_t cin_len, oout_off, oout_len, oin_len, cout_off, cout_len;
	uint8_t cin[HF_CIN], oout[HF_OOUT], oin[HF_OIN], cout[HF_COUT];
};

static void hf_run(struct px_hfwd *h);

static long hf_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hf_origin_close(struct px_hfwd *h)
{
	if (h->ofd < 0)
		return;
	event_del(h->orev);
	event_del(h->owev);
	close(h->ofd);
	h->ofd = -1;
	h->oin_len = h->oout_len = h->oout_off = 0;
	h->oin_eof = false;
}

/* Frees h and closes what it still holds (the client with a RST if asked). */
static void hf_free(struct px_hfwd *h, bool rst)
{
	struct px_front *f = h->f;
	if (h->prev)
		h->prev->next = h->next;
	else
		f->forwards = h->next;
	if (h->next)
		h->next->prev = h->prev;
	f->n_forwards--;
	f->stats.active--;
	struct event *ev[] = {h->crev, h->cwev, h->orev, h->owev, h->timer};
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		if (ev[i])
			event_free(ev[i]);
	if (h->ofd >= 0)
		close(h->ofd);
	if (h->cfd >= 0) {
		if (rst) {
			struct linger lg = {1, 0};
			setsockopt(h->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(h->cfd);
	}
	/* Request heads carry cookies and credentials, responses Set-Cookie
	 * and tokens: no buffer outlives h uncleared. */
	sodium_memzero(h->cin, sizeof(h->cin));
	sodium_memzero(h->oout, sizeof(h->oout));
	sodium_memzero(h->oin, sizeof(h->oin));
	sodium_memzero(h->cout, sizeof(h->cout));
	ns_mem_uncharge(sizeof(*h));
	free(h);
}

static void hf_consume(uint8_t *buf, size_t *len, size_t n)
{
	memmove(buf, buf + n, *len - n);
	*len -= n;
}

/* Answers the current request with status and closes afterwards. */
static void hf_reply_close(struct px_hfwd *h, int status)
{
	char out[256];
	size_t n = px_http_response(out, sizeof(out), status);
	if (h->cout_off) {
		hf_consume(h->cout, &h->cout_len, h->cout_off);
		h->cout_off = 0;
	}
	if (n <= sizeof(h->cout) - h->cout_len) {
		memcpy(h->cout + h->cout_len, out, n);
		h->cout_len += n;
	}
	h->closing = true;
	h->down = HF_DOWN_IDLE;
	hf_origin_close(h);
}

static void hf_describe(const struct px_hfwd *h, char *t, size_t n)
{
	px_target_format(&h->origin, t, n);
}

/* The origin broke the exchange: 502 if the client has no byte of the
 * response yet, else the client connection ends. False: h was freed. */
static bool hf_origin_fail(struct px_hfwd *h, const char *why)
{
	char t[300];
	hf_describe(h, t, sizeof(t));
	log_info("http: %s: %s", t, why);
	h->f->stats.err_other++;
	if (h->sent) {
		hf_free(h, false);
		return false;
	}
	hf_reply_close(h, 502);
	return true;
}

/* The next request goes to another origin (or is a CONNECT): a session
 * dials it as for a first request, then gives the connection back. */
static void hf_redial(struct px_hfwd *h, const struct px_http_request *req, size_t used)
{
	struct px_front *f = h->f;
	hf_origin_close(h);
	int cfd = h->cfd;
	h->cfd = -1;
	struct px_sess *s =
	    px_sess_resume(f, cfd, h->ops, h->cin, h->cin_len, h->cin_eof);
	hf_free(h, false);
	if (!s)
		return;
	s->target = req->target;
	s->consumed = req->forward ? 0 : used;
	s->stage = req->forward ? PX_HTTP_STAGE_FORWARD : 0;
	char t[300];
	px_target_format(&s->target, t, sizeof(t));
	log_debug("http: %s %s (same client connection)",
	          req->forward ? "forward to" : "CONNECT", t);
	px_sess_connect(s);
}

/* Whether the next request may go on the origin connection we hold: the
 * same host:port, and the server sent nothing since its last response
 * (bytes nobody asked for would be read as the next answer). */
static bool hf_same_origin(const struct px_hfwd *h, const struct px_target *t)
{
	return h->ofd >= 0 && !h->oin_eof && h->oin_len == 0 &&
	       t->port == h->origin.port && t->is_name == h->origin.is_name &&
	       strcasecmp(t->host, h->origin.host) == 0;
}

/* ---- client -> origin ---- */

/* Takes the next request head from cin. 1: progress, 0: waiting, -1: h
 * is gone (freed or handed to a session). */
static int hf_up_head(struct px_hfwd *h)
{
	/* One request at a time: the previous response is written out. */
	if (h->down != HF_DOWN_IDLE || h->cout_len || h->oout_len || h->cin_len == 0)
		return 0;
	struct px_http_request req;
	size_t used = 0;
	int st = px_http_check(h->f, h->cin, h->cin_len, &req, &used);
	if (st == 0) {
		if (!h->cin_eof)
			return 0;
		h->f->stats.err_client_gone++; /* a partial head, then EOF */
		hf_free(h, false);
		return -1;
	}
	if (st != 200) {
		hf_reply_close(h, st);
		return 1;
	}
	if (!req.forward || !hf_same_origin(h, &req.target)) {
		hf_redial(h, &req, used);
		return -1;
	}
	size_t n =
	    px_http_rewrite(h->cin, used, req.keep_alive, h->oout, sizeof(h->oout));
	if (!n) {
		h->f->stats.err_protocol++;
		hf_reply_close(h, 400);
		return 1;
	}
	h->oout_off = 0;
	h->oout_len = n;
	h->uses++;
	/* A bodiless GET, HEAD or OPTIONS (or one with an Idempotency-Key)
	 * stays in cin until the origin answers: a reused connection that the
	 * server closed meanwhile gets it again on a new one, as Go's
	 * transport does. Any other request is never sent twice (RFC 9110
	 * section 9.2.2): the client gets 502 and decides. */
	h->held = req.body == PX_HTTP_BODY_NONE && req.replayable ? used : 0;
	if (!h->held)
		hf_consume(h->cin, &h->cin_len, used);
	h->up_body = req.body;
	h->up_left = req.length;
	px_http_chunked_init(&h->up_ch);
	h->up = req.body == PX_HTTP_BODY_NONE ? HF_UP_DONE : HF_UP_BODY;
	h->down = HF_DOWN_HEAD;
	h->sent = false;
	h->req_head = req.head;
	h->client_keep = req.keep_alive;
	h->interim_ok = req.minor >= 1 && req.expect_continue;
	h->since = h->moved = hf_now();
	return 1;
}

/* Moves request body bytes from cin to oout as far as the framing goes. */
static int hf_up_body(struct px_hfwd *h)
{
	if (h->oout_off) {
		hf_consume(h->oout, &h->oout_len, h->oout_off);
		h->oout_off = 0;
	}
	size_t n = sizeof(h->oout) - h->oout_len;
	if (n > h->cin_len)
		n = h->cin_len;
	if (n == 0) {
		if (h->cin_len == 0 && h->cin_eof) {
			h->f->stats.err_client_gone++; /* the body ended early */
			hf_free(h, false);
			return -1;
		}
		return 0;
	}
	bool done = false;
	if (h->up_body == PX_HTTP_BODY_LENGTH) {
		if ((uint64_t)n > h->up_left)
			n = (size_t)h->up_left;
		h->up_left -= n;
		done = h->up_left == 0;
	} else {
		size_t used = 0;
		enum px_parse r = px_http_chunked_scan(&h->up_ch, h->cin, n, &used);
		if (r == PX_PARSE_ERROR) {
			h->f->stats.err_protocol++;
			if (h->sent) {
				hf_free(h, false);
				return -1;
			}
			hf_reply_close(h, 400);
			return 1;
		}
		n = used;
		done = r == PX_PARSE_OK;
	}
	memcpy(h->oout + h->oout_len, h->cin, n);
	h->oout_len += n;
	hf_consume(h->cin, &h->cin_len, n);
	if (done)
		h->up = HF_UP_DONE;
	return 1;
}

/* ---- origin -> client ---- */

/* The response is complete: keep or close either side. */
static void hf_exchange_done(struct px_hfwd *h)
{
	h->down = HF_DOWN_IDLE;
	if (!h->origin_keep || h->oin_len || h->oin_eof)
		hf_origin_close(h); /* bytes after the response: not reusable */
	if (!h->client_keep || h->up != HF_UP_DONE)
		h->closing = true;
	else
		h->up = HF_UP_HEAD;
	h->since = hf_now();
}

static int hf_down_head(struct px_hfwd *h)
{
	if (h->held && h->oin_len) { /* the origin answers: no retry */
		hf_consume(h->cin, &h->cin_len, h->held);
		h->held = 0;
	}
	if (h->cout_len)
		return 0;
	struct px_http_resp r;
	size_t used = 0;
	enum px_parse p =
	    px_http_parse_response(h->oin, h->oin_len, h->req_head, &r, &used);
	if (p == PX_PARSE_MORE) {
		if (!h->oin_eof)
			return 0;
		if (h->held && h->oin_len == 0 && h->uses > 1) {
			/* Closed while idle, as our request was on its way. */
			struct px_http_request again = {.target = h->origin,
			                                .forward = true};
			log_debug("http: the origin closed a kept-alive connection: "
			          "sending the request on a new one");
			hf_redial(h, &again, 0);
			return -1;
		}
		return hf_origin_fail(h, h->oin_len
		                             ? "closed in the middle of its response head"
		                             : "closed without a response")
		           ? 1
		           : -1;
	}
	if (p == PX_PARSE_ERROR || r.status == 101 || r.status == 407)
		return hf_origin_fail(h, p == PX_PARSE_ERROR ? "malformed response head"
		                         : r.status == 101
		                             ? "switched protocols (not forwarded)"
		                             /* for a proxy's client: the browser
		                              * would ask for proxy credentials */
		                             : "answered 407 (only a proxy may)")
		           ? 1
		           : -1;
	bool keep = h->client_keep && h->up == HF_UP_DONE && r.body != PX_HTTP_BODY_CLOSE;
	size_t n = px_http_rewrite_response(h->oin, used, keep, h->cout, sizeof(h->cout));
	if (!n)
		return hf_origin_fail(h, "response head too large") ? 1 : -1;
	hf_consume(h->oin, &h->oin_len, used);
	if (r.status < 200) { /* 1xx: interim, the final response follows */
		/* Only the 100 Continue a client asked for goes on. Other 1xx
		 * (102, 103 Early Hints) are dropped, against RFC 9110 section
		 * 15.2's "MUST forward": clients such as Python's http.client
		 * take any 1xx but 100 for the final response, and the real one
		 * would then answer their next request, maybe to another host. */
		if (h->interim_ok && r.status == 100) {
			h->cout_len = n;
			h->interim_ok = false;
		}
		return 1;
	}
	h->cout_len = n;
	h->cout_off = 0;
	h->sent = true;
	h->moved = hf_now();
	h->client_keep = keep;
	h->origin_keep = r.keep_alive;
	h->down_body = r.body;
	h->down_left = r.length;
	px_http_chunked_init(&h->down_ch);
	h->down = HF_DOWN_BODY;
	if (r.body == PX_HTTP_BODY_NONE)
		hf_exchange_done(h);
	return 1;
}

static int hf_down_body(struct px_hfwd *h)
{
	if (h->cout_off) {
		hf_consume(h->cout, &h->cout_len, h->cout_off);
		h->cout_off = 0;
	}
	size_t n = sizeof(h->cout) - h->cout_len;
	if (n > h->oin_len)
		n = h->oin_len;
	bool done = false;
	if (h->down_body == PX_HTTP_BODY_LENGTH) {
		if ((uint64_t)n > h->down_left)
			n = (size_t)h->down_left;
		h->down_left -= n;
		done = h->down_left == 0;
	} else if (h->down_body == PX_HTTP_BODY_CHUNKED) {
		size_t used = 0;
		enum px_parse r = px_http_chunked_scan(&h->down_ch, h->oin, n, &used);
		if (r == PX_PARSE_ERROR)
			return hf_origin_fail(h, "malformed chunked body") ? 1 : -1;
		n = used;
		done = r == PX_PARSE_OK;
	} else {
		done = h->oin_eof && n == h->oin_len;
	}
	if (n == 0 && !done) {
		if (h->oin_len == 0 && h->oin_eof)
			return hf_origin_fail(h,
			                      "closed in the middle of its response body")
			           ? 1
			           : -1;
		return 0;
	}
	memcpy(h->cout + h->cout_len, h->oin, n);
	h->cout_len += n;
	hf_consume(h->oin, &h->oin_len, n);
	if (n)
		h->moved = hf_now();
	if (done)
		hf_exchange_done(h);
	return 1;
}

static int hf_down_idle(struct px_hfwd *h)
{
	if (h->ofd >= 0 && (h->oin_len || h->oin_eof)) {
		/* Bytes nobody asked for, or the server closed: not reusable. */
		hf_origin_close(h);
		return 1;
	}
	return 0;
}

/* ---- I/O ---- */

/* Reads fd into buf as far as it fits. False on a reset or error. */
static bool hf_read(int fd, uint8_t *buf, size_t cap, size_t *len, bool *eof)
{
	while (*len < cap && !*eof) {
		ssize_t n = recv(fd, buf + *len, cap - *len, 0);
		if (n > 0) {
			*len += (size_t)n;
		} else if (n == 0) {
			*eof = true;
		} else if (errno == EINTR) {
			continue;
		} else {
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
	}
	return true;
}

/* Writes buf[*off..*len) to fd as far as it takes; counts into *bytes.
 * False on an error. */
static bool hf_write(int fd, const uint8_t *buf, size_t *off, size_t *len,
                     uint64_t *bytes)
{
	while (*off < *len) {
		ssize_t n = send(fd, buf + *off, *len - *off, MSG_NOSIGNAL);
		if (n > 0) {
			*off += (size_t)n;
			*bytes += (uint64_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
		}
	}
	*off = *len = 0;
	return true;
}

/* Writes what is pending both ways. False: h was freed. */
static bool hf_flush_io(struct px_hfwd *h)
{
	if (!hf_write(h->cfd, h->cout, &h->cout_off, &h->cout_len,
	              &h->f->stats.bytes_down)) {
		h->f->stats.err_client_gone++;
		hf_free(h, false);
		return false;
	}
	if (h->ofd >= 0 && !hf_write(h->ofd, h->oout, &h->oout_off, &h->oout_len,
	                             &h->f->stats.bytes_up)) {
		/* The origin stopped reading (it may have answered early and
		 * closed): what it sent is still read; this client connection
		 * ends after the response. */
		h->oout_len = h->oout_off = 0;
		h->client_keep = false;
		h->origin_keep = false;
		if (h->up == HF_UP_BODY)
			h->up = HF_UP_DONE;
	}
	return true;
}

/* hf_flush_io, and a byte written either way is progress. */
static bool hf_flush(struct px_hfwd *h)
{
	uint64_t before = h->f->stats.bytes_down + h->f->stats.bytes_up;
	if (!hf_flush_io(h))
		return false;
	if (h->f->stats.bytes_down + h->f->stats.bytes_up != before)
		h->moved = hf_now();
	return true;
}

static void hf_on_client_read(evutil_socket_t fd, short what, void *arg)
{
	struct px_hfwd *h = arg;
	if (h->lingering) {
		uint8_t junk[4096];
		ssize_t n = recv(fd, junk, sizeof(junk), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			hf_free(h, false);
		return;
	}
	size_t before = h->cin_len;
	if (!hf_read(fd, h->cin, sizeof(h->cin), &h->cin_len, &h->cin_eof)) {
		h->f->stats.err_client_gone++;
		hf_free(h, false);
		return;
	}
	if (before == 0 && h->cin_len && h->up == HF_UP_HEAD && h->down == HF_DOWN_IDLE)
		h->since = hf_now(); /* a new head starts: the handshake timeout runs */
	else if (h->up != HF_UP_HEAD || h->down != HF_DOWN_IDLE)
		h->since = hf_now();
	hf_run(h);
}

static void hf_on_origin_read(evutil_socket_t fd, short what, void *arg)
{
	struct px_hfwd *h = arg;
	if (!hf_read(fd, h->oin, sizeof(h->oin), &h->oin_len, &h->oin_eof))
		h->oin_eof = true; /* a reset: what came before it still counts */
	if (h->down != HF_DOWN_IDLE)
		h->since = hf_now();
	hf_run(h);
}

static void hf_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct px_hfwd *h = arg;
	h->since = hf_now(); /* pending output moves */
	hf_run(h);
}

/* ---- timers ---- */

/* Between requests: no request under way and nothing left to write. */
static bool hf_between(const struct px_hfwd *h)
{
	return h->up == HF_UP_HEAD && h->down == HF_DOWN_IDLE && !h->closing &&
	       h->cout_len == 0;
}

/* When the current state times out (hf_now's clock). Between requests: the
 * handshake timeout for a partial head, else the keep-alive limit. During
 * an exchange (also while its last bytes are written, or an error reply):
 * the response timeout from the last byte moved (h->moved: the request
 * taken, a byte written to either side, the response head or a body byte
 * taken from the origin; bytes from the origin that are only buffered
 * do not count, nor do a client's read-ahead bytes), or IdleTimeout if
 * set and sooner. */
static long hf_deadline(const struct px_hfwd *h)
{
	long idle = (long)h->f->lim.idle_timeout_ms;
	if (h->lingering)
		return h->since + PX_LINGER_MS;
	if (hf_between(h)) {
		if (h->cin_len)
			return h->since + (long)h->f->lim.handshake_timeout_ms;
		return h->since + (idle && idle < PX_HTTP_KEEPALIVE_MS
		                       ? idle
		                       : PX_HTTP_KEEPALIVE_MS);
	}
	long t = h->moved + (long)px_http_response_ms(h->f);
	if (idle && h->since + idle < t)
		t = h->since + idle;
	return t;
}

static void hf_arm(struct px_hfwd *h)
{
	long left = hf_deadline(h) - hf_now();
	if (left < 1)
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	evtimer_add(h->timer, &tv);
}

/* A request under way timed out. The origin kept the client waiting
 * (for its response head, or not reading the request body): 504 while
 * the client has nothing of the response; a client that stopped sending
 * its body, or a body stuck after the response started: both connections
 * are reset. */
static void hf_timed_out(struct px_hfwd *h)
{
	char t[300];
	hf_describe(h, t, sizeof(t));
	bool client_stalled = h->up == HF_UP_BODY && h->oout_len == 0;
	if (!h->sent && h->down == HF_DOWN_HEAD && !client_stalled) {
		log_info("http: %s: no response in %ld ms: 504", t, hf_now() - h->moved);
		h->f->stats.err_timeout++;
		hf_reply_close(h, 504);
		hf_run(h);
		return;
	}
	log_info("http: %s: no progress in %ld ms: connection reset", t,
	         hf_now() - h->moved);
	h->f->stats.err_idle++;
	hf_free(h, true);
}

static void hf_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct px_hfwd *h = arg;
	if (hf_now() < hf_deadline(h)) {
		hf_arm(h);
		return;
	}
	if (h->lingering) {
		hf_free(h, false);
	} else if (hf_between(h)) {
		if (h->cin_len)
			h->f->stats.err_handshake_timeout++;
		hf_free(h, false); /* an idle keep-alive connection ends */
	} else {
		hf_timed_out(h);
	}
}

/* ---- the loop ---- */

static void hf_events(struct px_hfwd *h)
{
	bool read_client =
	    !h->cin_eof && (h->lingering || (!h->closing && h->cin_len < sizeof(h->cin)));
	if (read_client)
		event_add(h->crev, NULL);
	else
		event_del(h->crev);
	if (h->cout_len)
		event_add(h->cwev, NULL);
	if (h->ofd >= 0) {
		if (!h->oin_eof && h->oin_len < sizeof(h->oin))
			event_add(h->orev, NULL);
		else
			event_del(h->orev);
		if (h->oout_len)
			event_add(h->owev, NULL);
	}
	hf_arm(h);
}

/* Moves everything that can move, then waits for the sockets. */
static void hf_run(struct px_hfwd *h)
{
	for (int rounds = 0; rounds < 1000; rounds++) {
		int p = 0, r;
		if (!hf_flush(h))
			return;
		if (!h->closing) {
			r = h->up == HF_UP_HEAD   ? hf_up_head(h)
			    : h->up == HF_UP_BODY ? hf_up_body(h)
			                          : 0;
			if (r < 0)
				return;
			p |= r;
		}
		r = h->down == HF_DOWN_HEAD   ? hf_down_head(h)
		    : h->down == HF_DOWN_BODY ? hf_down_body(h)
		                              : hf_down_idle(h);
		if (r < 0)
			return;
		p |= r;
		/* Bytes (or the close) that came in while we worked are work
		 * for another round: the origin's read event fired already and
		 * will not fire for them again. */
		size_t had = h->oin_len;
		bool eof = h->oin_eof;
		if (h->ofd >= 0 && !h->oin_eof && h->oin_len < sizeof(h->oin) &&
		    !hf_read(h->ofd, h->oin, sizeof(h->oin), &h->oin_len, &h->oin_eof))
			h->oin_eof = true;
		if (h->oin_len != had || h->oin_eof != eof)
			p = 1;
		if (!p)
			break;
	}
	if (!hf_flush(h))
		return;
	if (h->closing && !h->lingering && h->cout_len == 0) {
		/* Closing with unread input would send a RST that can destroy
		 * the response in flight: shut the write side and drain. */
		hf_origin_close(h);
		shutdown(h->cfd, SHUT_WR);
		h->lingering = true;
		h->since = hf_now();
		if (h->cin_eof) {
			hf_free(h, false);
			return;
		}
	}
	if (!h->closing && h->cin_eof && h->cin_len == 0 && h->up == HF_UP_HEAD &&
	    h->down == HF_DOWN_IDLE && h->cout_len == 0) {
		hf_free(h, false); /* the client is done */
		return;
	}
	hf_events(h);
}

/* ---- taking over from a session ---- */

static bool hf_events_new(struct px_hfwd *h, struct event_base *base)
{
	h->crev = event_new(base, h->cfd, EV_READ | EV_PERSIST, hf_on_client_read, h);
	h->cwev = event_new(base, h->cfd, EV_WRITE, hf_on_write, h);
	h->orev = event_new(base, h->ofd, EV_READ | EV_PERSIST, hf_on_origin_read, h);
	h->owev = event_new(base, h->ofd, EV_WRITE, hf_on_write, h);
	h->timer = evtimer_new(base, hf_on_timer, h);
	return h->crev && h->cwev && h->orev && h->owev && h->timer;
}

/* The origin end of s as a socket: the Direct socket, or a socketpair
 * spliced to the mesh connection. -1 on failure (s->conn is gone then). */
static int hf_origin_fd(struct px_sess *s, struct px_front *f)
{
	if (!s->conn) {
		int fd = s->direct_fd;
		s->direct_fd = -1;
		f->stats.direct++;
		return fd;
	}
	struct ns_tcp *c = s->conn;
	s->conn = NULL;
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0) {
		ns_tcp_abort(c);
		return -1;
	}
	/* Idle and byte accounting are ours; the splice only moves bytes. */
	struct ns_splice_opts o = {.buf_limit = f->lim.buffer_bytes};
	if (ns_splice_start_ex(c, sp[1], NULL, 0, &o) < 0) {
		close(sp[0]);
		return -1;
	}
	return sp[0];
}

bool px_hfwd_take(struct px_sess *s)
{
	struct px_front *f = s->front;
	/* The front-end is going. Never false here: the caller would splice
	 * the client raw to the origin with the head unrewritten (its
	 * Proxy-Authorization too). True: the caller closes both, which are
	 * still in s. */
	if (!f)
		return true;
	int ofd = hf_origin_fd(s, f);
	int cfd = s->fd;
	s->fd = -1;
	struct px_hfwd *h = ofd >= 0 ? calloc(1, sizeof(*h)) : NULL;
	if (!h) {
		f->stats.err_other++;
		if (ofd >= 0)
			close(ofd);
		close(cfd);
		return true;
	}
	ns_mem_charge(sizeof(*h)); /* its buffers count in the node's budget */
	h->f = f;
	h->ops = s->ops;
	h->cfd = cfd;
	h->ofd = ofd;
	h->origin = s->target;
	h->next = f->forwards;
	if (f->forwards)
		f->forwards->prev = h;
	f->forwards = h;
	f->n_forwards++;
	f->stats.active++;
	f->stats.established++;
	size_t n = s->len - s->consumed;
	if (n > sizeof(h->cin))
		n = sizeof(h->cin); /* cannot happen: the session's buffer is as big */
	memcpy(h->cin, s->buf + s->consumed, n);
	h->cin_len = n;
	h->cin_eof = s->read_eof;
	h->since = hf_now();
	if (!hf_events_new(h, f->env.base)) {
		f->stats.err_other++;
		hf_free(h, true);
		return true;
	}
	int one = 1;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	hf_run(h);
	return true;
}

bool px_hfwd_evict_idle(struct px_front *f)
{
	struct px_hfwd *old = NULL;
	for (struct px_hfwd *h = f->forwards; h; h = h->next)
		if (h->up == HF_UP_HEAD && h->down == HF_DOWN_IDLE && !h->closing &&
		    h->cin_len == 0 && h->cout_len == 0 &&
		    (!old || h->since < old->since))
			old = h;
	if (!old)
		return false;
	f->stats.err_limit++;
	hf_free(old, false);
	return true;
}

void px_hfwd_close_all(struct px_front *f)
{
	while (f->forwards)
		hf_free(f->forwards, false);
}
