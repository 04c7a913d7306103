/* One local client on its way into the mesh: read the request (SOCKS5 or
 * HTTP; nothing for a tunnel), resolve the name, check the mesh route, dial
 * through the netstack, send the reply, then hand socket and lwIP
 * connection to ns_splice_start() together with any bytes the client sent
 * early.
 *
 * Lifetime: a session is freed when it is closed, except while a name
 * lookup or a dial is outstanding: neither can be taken back at once, so the
 * session turns DEAD (socket closed, out of its front-end's list) and the
 * callback frees it. Output never closes a session from inside a protocol
 * callback; px_sess_check() decides afterwards. */
#include "proxy/proxy_int.h"

#include "core/util/log.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void px_sess_on_read(evutil_socket_t fd, short what, void *arg);
static void px_sess_on_write(evutil_socket_t fd, short what, void *arg);
static void px_sess_on_timer(evutil_socket_t fd, short what, void *arg);
static void px_sess_result(struct px_sess *s, enum px_err e);

static void px_sess_arm(struct px_sess *s, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->timer, &tv);
}

static unsigned px_handshake_ms(const struct px_front *f)
{
	return f && f->env.handshake_timeout_ms ? f->env.handshake_timeout_ms
	                                        : PX_DEFAULT_HANDSHAKE_MS;
}

struct px_sess *px_sess_new(struct px_front *f, int fd, const struct px_sess_ops *ops)
{
	f->stats.accepted++;
	if (f->n_sessions >= PX_MAX_SESSIONS) {
		f->stats.err_accept++;
		close(fd);
		return NULL;
	}
	struct px_sess *s = calloc(1, sizeof(*s));
	if (s && ops->buf_size)
		s->buf = malloc(ops->buf_size);
	struct event_base *base = f->env.base;
	if (s && (!ops->buf_size || s->buf)) {
		s->rev = event_new(base, fd, EV_READ | EV_PERSIST, px_sess_on_read, s);
		s->wev = event_new(base, fd, EV_WRITE, px_sess_on_write, s);
		s->timer = evtimer_new(base, px_sess_on_timer, s);
	}
	if (!s || !s->rev || !s->wev || !s->timer) {
		f->stats.err_other++;
		if (s) {
			if (s->rev)
				event_free(s->rev);
			if (s->wev)
				event_free(s->wev);
			if (s->timer)
				event_free(s->timer);
			free(s->buf);
			free(s);
		}
		close(fd);
		return NULL;
	}
	s->front = f;
	s->ops = ops;
	s->fd = fd;
	s->state = PX_S_HANDSHAKE;
	s->next = f->sessions;
	if (f->sessions)
		f->sessions->prev = s;
	f->sessions = s;
	f->n_sessions++;
	f->stats.pending++;
	s->pending = true;
	if (ops->on_data) {
		event_add(s->rev, NULL);
		px_sess_arm(s, px_handshake_ms(f));
	}
	return s;
}

static void px_sess_unlink(struct px_sess *s)
{
	struct px_front *f = s->front;
	if (!f)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		f->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	f->n_sessions--;
	if (s->pending)
		f->stats.pending--;
	s->pending = false;
	s->front = NULL;
	s->next = s->prev = NULL;
}

static void px_sess_free_mem(struct px_sess *s)
{
	if (s->dns_sync_ai)
		evutil_freeaddrinfo(s->dns_sync_ai);
	if (s->buf) /* may hold credentials */
		sodium_memzero(s->buf, s->ops->buf_size);
	free(s->buf);
	free(s);
}

/* Closes the client (with a RST if asked) and frees the session, or leaves
 * it DEAD for an outstanding callback. s must not be used afterwards. */
static void px_sess_close(struct px_sess *s, bool rst)
{
	if (s->state == PX_S_DEAD)
		return;
	px_sess_unlink(s);
	if (s->rev) {
		event_free(s->rev);
		event_free(s->wev);
		event_free(s->timer);
		s->rev = s->wev = s->timer = NULL;
	}
	if (s->fd >= 0) {
		if (rst) {
			struct linger lg = {1, 0};
			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(s->fd);
		s->fd = -1;
	}
	if (s->conn) {
		ns_tcp_abort(s->conn);
		s->conn = NULL;
	}
	s->state = PX_S_DEAD;
	if (s->dns_pending) {
		/* The callback comes later with EVUTIL_EAI_CANCEL and frees s. */
		evdns_getaddrinfo_cancel(s->dns_req);
		return;
	}
	if (s->dial_pending)
		return; /* freed in px_sess_on_dial */
	px_sess_free_mem(s);
}

/* Hands the client and the mesh connection to the netstack. */
static void px_sess_splice(struct px_sess *s)
{
	struct px_front *f = s->front;
	struct ns_tcp *c = s->conn;
	int fd = s->fd;
	size_t head = s->len - s->consumed;
	event_free(s->rev);
	event_free(s->wev);
	event_free(s->timer);
	s->rev = s->wev = s->timer = NULL;
	s->conn = NULL;
	s->fd = -1;
	int r = ns_splice_start(c, fd, head ? s->buf + s->consumed : NULL, head);
	if (f) {
		if (r < 0) {
			f->stats.err_other++;
		} else {
			f->stats.established++;
			f->stats.head_bytes += head;
		}
	}
	if (r < 0)
		log_debug("%s: splice failed: %s", f ? f->kind : "proxy", strerror(-r));
	px_sess_close(s, false); /* frees: fd and conn now belong to the netstack */
}

/* After any output or state change: close, splice or wait for the socket. */
static void px_sess_not_pending(struct px_sess *s)
{
	if (s->pending && s->front)
		s->front->stats.pending--;
	s->pending = false;
}

static void px_sess_check(struct px_sess *s)
{
	if (s->broken) {
		PX_STAT(s, err_client_gone);
		px_sess_close(s, false);
		return;
	}
	if (s->out_off < s->out_len) {
		event_add(s->wev, NULL);
		return;
	}
	s->out_off = s->out_len = 0;
	if (s->state == PX_S_REPLY_OK) {
		px_sess_splice(s);
	} else if (s->state == PX_S_REPLY_CLOSE) {
		/* Closing with unread input would send a RST that can destroy the
		 * reply in flight: shut the write side and drain for a while. */
		shutdown(s->fd, SHUT_WR);
		s->state = PX_S_LINGER;
		event_add(s->rev, NULL);
		px_sess_arm(s, PX_LINGER_MS);
	}
}

static void px_sess_flush(struct px_sess *s)
{
	while (s->out_off < s->out_len) {
		ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off,
		                 MSG_NOSIGNAL);
		if (n > 0) {
			s->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				s->broken = true;
			return;
		}
	}
}

void px_sess_send(struct px_sess *s, const void *p, size_t n)
{
	if (s->fd < 0 || s->broken)
		return;
	if (n > sizeof(s->out) - s->out_len) {
		s->broken = true; /* cannot happen with our reply sizes */
		return;
	}
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
	px_sess_flush(s);
}

static void px_sess_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct px_sess *s = arg;
	px_sess_flush(s);
	px_sess_check(s);
}

static void px_sess_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct px_sess *s = arg;
	switch (s->state) {
	case PX_S_HANDSHAKE:
		PX_STAT(s, err_handshake_timeout);
		px_sess_close(s, false);
		break;
	case PX_S_CONNECT:
		px_sess_result(s, PX_E_TIMEOUT);
		break;
	case PX_S_REPLY_OK:
		PX_STAT(s, err_client_gone);
		px_sess_close(s, false);
		break;
	default:
		px_sess_close(s, false);
		break;
	}
}

static void px_sess_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct px_sess *s = arg;
	size_t cap = s->ops->buf_size - s->ops->buf_reserve;
	if (s->state == PX_S_LINGER) {
		uint8_t junk[4096];
		ssize_t n = recv(fd, junk, sizeof(junk), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			px_sess_close(s, false);
		return;
	}
	if (s->len >= cap) {
		/* Early data fills the buffer: wait for the dial (flow control). */
		event_del(s->rev);
		return;
	}
	ssize_t n = recv(fd, s->buf + s->len, cap - s->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == 0 && s->state != PX_S_HANDSHAKE) {
			/* A half-close after the request: the splice will see it. */
			s->read_eof = true;
			event_del(s->rev);
			return;
		}
		PX_STAT(s, err_client_gone);
		px_sess_close(s, false);
		return;
	}
	s->len += (size_t)n;
	if (s->state != PX_S_HANDSHAKE)
		return; /* early data, kept for the splice */
	enum px_parse r = s->ops->on_data(s);
	if (r == PX_PARSE_MORE && s->len >= cap) {
		PX_STAT(s, err_protocol); /* cannot happen: buffers exceed requests */
		s->broken = true;
	}
	if (r == PX_PARSE_ERROR) {
		s->state = PX_S_REPLY_CLOSE;
		px_sess_not_pending(s);
		event_del(s->rev);
	}
	if (r == PX_PARSE_OK && !s->broken) {
		if (s->out_off < s->out_len)
			event_add(s->wev, NULL);
		px_sess_connect(s);
		return;
	}
	px_sess_check(s);
}

/* Terminal error during connect: reply, then close (or reset a tunnel). */
static void px_sess_result(struct px_sess *s, enum px_err e)
{
	if (s->front) {
		px_front_count_err(s->front, e);
		char t[300];
		px_target_format(&s->target, t, sizeof(t));
		log_debug("%s: %s: %s", s->front->kind, t, px_err_str(e));
	}
	if (!s->ops->on_result) {
		px_sess_close(s, s->rst_on_fail);
		return;
	}
	s->state = PX_S_REPLY_CLOSE;
	px_sess_not_pending(s);
	event_del(s->rev);
	s->ops->on_result(s, e);
	px_sess_check(s);
}

static void px_sess_on_dial(void *ctx, struct ns_tcp *c, int err)
{
	struct px_sess *s = ctx;
	s->dial_pending = false;
	if (s->state != PX_S_CONNECT) {
		/* Closed, or already answered (the connect timer fired). */
		if (c)
			ns_tcp_abort(c);
		if (s->state == PX_S_DEAD)
			px_sess_free_mem(s);
		return;
	}
	if (err || !c) {
		px_sess_result(s, err ? px_err_from_errno(err) : PX_E_GENERAL);
		return;
	}
	s->conn = c;
	s->state = PX_S_REPLY_OK;
	px_sess_arm(s, px_handshake_ms(s->front));
	if (s->ops->on_result)
		s->ops->on_result(s, PX_OK);
	px_sess_check(s);
}

static void px_sess_dial(struct px_sess *s, const struct ns_addr *a)
{
	int r = ns_tcp_dial(a, s->target.port, px_sess_on_dial, s);
	if (r < 0) {
		px_sess_result(s, px_err_from_errno(r));
		return;
	}
	s->dial_pending = true;
}

static bool px_route_ok(const struct px_front *f, const struct ns_addr *a)
{
	return !f->env.route_ok || f->env.route_ok(f->env.route_ctx, a);
}

static void px_sess_resolved(struct px_sess *s, int result, struct evutil_addrinfo *ai)
{
	if (s->state != PX_S_CONNECT) {
		if (ai)
			evutil_freeaddrinfo(ai);
		if (s->state == PX_S_DEAD)
			px_sess_free_mem(s);
		return;
	}
	struct ns_addr a, pick;
	bool found = false, any = false;
	for (struct evutil_addrinfo *i = result == 0 ? ai : NULL; i && !found;
	     i = i->ai_next) {
		memset(&a, 0, sizeof(a));
		if (i->ai_family == AF_INET) {
			a.family = AF_INET;
			memcpy(a.addr, &((struct sockaddr_in *)i->ai_addr)->sin_addr, 4);
		} else if (i->ai_family == AF_INET6) {
			a.family = AF_INET6;
			memcpy(a.addr, &((struct sockaddr_in6 *)i->ai_addr)->sin6_addr,
			       16);
		} else {
			continue;
		}
		any = true;
		if (px_route_ok(s->front, &a)) {
			pick = a;
			found = true;
		}
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	if (!found) {
		px_sess_result(s, any ? PX_E_NO_ROUTE : PX_E_RESOLVE);
		return;
	}
	px_sess_dial(s, &pick);
}

static void px_sess_on_dns(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct px_sess *s = arg;
	s->dns_pending = false;
	s->dns_req = NULL;
	if (s->dns_sync) {
		/* Answered from inside evdns_getaddrinfo(): finish there. */
		s->dns_sync_result = result;
		s->dns_sync_ai = ai;
		return;
	}
	px_sess_resolved(s, result, ai);
}

void px_sess_connect(struct px_sess *s)
{
	struct px_front *f = s->front;
	s->state = PX_S_CONNECT;
	px_sess_arm(s, f->env.connect_timeout_ms ? f->env.connect_timeout_ms
	                                         : PX_CONNECT_TIMEOUT_MS);
	if (!s->target.is_name) {
		if (!px_route_ok(f, &s->target.addr)) {
			px_sess_result(s, PX_E_NO_ROUTE);
			return;
		}
		px_sess_dial(s, &s->target.addr);
		return;
	}
	if (!f->env.dns) {
		px_sess_result(s, PX_E_RESOLVE);
		return;
	}
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	s->dns_sync = true;
	s->dns_pending = true;
	s->dns_req = evdns_getaddrinfo(f->env.dns, s->target.host, NULL, &hints,
	                               px_sess_on_dns, s);
	s->dns_sync = false;
	if (!s->dns_pending) {
		struct evutil_addrinfo *ai = s->dns_sync_ai;
		s->dns_sync_ai = NULL;
		px_sess_resolved(s, s->dns_sync_result, ai);
	}
}

void px_front_close_all(struct px_front *f)
{
	while (f->sessions)
		px_sess_close(f->sessions, false);
}
