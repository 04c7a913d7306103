/* One local client on its way into the mesh: read the request (SOCKS5 or
 * HTTP; nothing for a tunnel), resolve the name, check the mesh route, dial
 * through the netstack, send the reply, then hand socket and lwIP
 * connection to ns_splice_start() together with any bytes the client sent
 * early.
 *
 * Lifetime: a session is freed when it is closed, except while an evdns
 * lookup is outstanding: it cannot be taken back at once, so the session
 * turns DEAD (socket closed, out of its front-end's list) and the callback
 * frees it. An [Interface] DNS lookup (env.lookup) is cancelled with the
 * session; at most PX_LOOKUPS_MAX run at once per front-end. Connection attempts (race.c) are cancelled with the session,
 * netstack dials included.
 * Output never closes a session from inside a protocol callback;
 * px_sess_check() decides afterwards.
 *
 * Where a connection goes: a name is looked up among the mesh names first
 * (env.resolve_mesh), then with evdns (or env.lookup, [Interface] DNS
 * through the tunnel). IPv4-mapped IPv6 (::ffff:a.b.c.d) is
 * taken as the IPv4 address, as the netstack and the host reach it. If a
 * mesh peer routes any of the addresses, those are dialled through the
 * netstack; else, if the front-end's Direct allows it, every address the
 * policy allows (direct_policy.c; a refused one is never dialled) is
 * connected from the host and relayed by direct.c; none allowed is "not
 * allowed", Direct = no is "no route". Either way all the candidates are
 * tried RFC 8305 style (race.c: families alternating, IPv6 first from the
 * host, the name's first family first through the mesh; the next attempt
 * 250 ms after the last or as soon as it fails; the first to connect
 * wins) within the connect timeout; when all fail the answer is
 * the most meaningful failure (refused, unreachable, ..., timed out). A
 * name from the host's DNS never leads into the mesh's own prefixes
 * ([Interface] DNS, the tunnel's own resolver, may: split horizon).
 *
 * MaxConnections counts sessions (handshake, resolution, dial, reply),
 * established splices (f->acct->active) and direct relays. At the limit a
 * new client evicts the oldest session still in its handshake or lingering
 * after an error reply (so that slow, silent or broken clients cannot hold
 * the port), or is closed at once. */
#include "core/util/slab.h"
#include "proxy/internal.h"

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
static void px_sess_close(struct px_sess *s, bool rst);

/* Addresses taken from one name (mesh names or DNS). */
#define PX_MAX_ADDRS PX_RACE_MAX

static void px_sess_arm(struct px_sess *s, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->timer, &tv);
}

static unsigned px_handshake_ms(const struct px_front *f)
{
	if (f && f->lim.handshake_timeout_ms)
		return f->lim.handshake_timeout_ms;
	return f && f->env.handshake_timeout_ms ? f->env.handshake_timeout_ms
	                                        : PX_DEFAULT_HANDSHAKE_MS;
}

/* ---- the front-end ---- */

int px_front_init(struct px_front *f, const struct px_env *env, const char *kind,
                  const struct cfg_limits *lim, enum cfg_direct direct)
{
	f->env = *env;
	f->kind = kind;
	if (lim)
		f->lim = *lim;
	else
		memset(&f->lim, 0, sizeof(f->lim));
	if (!f->lim.max_connections)
		f->lim.max_connections = CFG_DEFAULT_MAX_CONNECTIONS;
	if (!f->lim.handshake_timeout_ms)
		f->lim.handshake_timeout_ms = env->handshake_timeout_ms
		                                  ? env->handshake_timeout_ms
		                                  : CFG_DEFAULT_HANDSHAKE_MS;
	if (!f->lim.buffer_bytes)
		f->lim.buffer_bytes = CFG_DEFAULT_BUFFER_BYTES;
	f->direct = direct;
	f->acct = ns_acct_new();
	return f->acct ? 0 : -ENOMEM;
}

void px_front_fini(struct px_front *f)
{
	px_listener_free(f->lst);
	f->lst = NULL;
	px_front_close_all(f);
	px_relay_close_all(f);
	ns_acct_release(f->acct);
	f->acct = NULL;
}

size_t px_front_open(const struct px_front *f)
{
	return f->n_sessions + f->n_relays + f->n_forwards +
	       (f->acct ? (size_t)f->acct->active : 0);
}

void px_front_stats(const struct px_front *f, struct px_stats *st)
{
	*st = f->stats;
	if (f->acct) {
		st->bytes_up += f->acct->bytes_out;
		st->bytes_down += f->acct->bytes_in;
		st->active += f->acct->active;
		st->err_idle += f->acct->idle_closed;
	}
}

static size_t px_front_max(const struct px_front *f)
{
	return f->lim.max_connections ? f->lim.max_connections
	                              : CFG_DEFAULT_MAX_CONNECTIONS;
}

/* Closes the oldest session still in its handshake (or lingering after an
 * error reply, which is as good as done), else the HTTP client connection
 * idle the longest between requests; false if there is none. */
static bool px_front_evict(struct px_front *f)
{
	for (struct px_sess *s = f->sessions_tail; s; s = s->prev) {
		if ((s->state == PX_S_HANDSHAKE && s->ops->on_data) ||
		    s->state == PX_S_LINGER) {
			f->stats.err_limit++;
			px_sess_close(s, false);
			return true;
		}
	}
	return f->forwards && px_hfwd_evict_idle(f);
}

/* ---- sessions ---- */

/* ---- session memory ----
 * A session lives in one block: the struct, its three events (event_assign)
 * and its buffer. Handshakes come in bursts and end within a second or two,
 * while what they set up (relays, splices, libevent's entry for every
 * descriptor) stays; from the heap, 1,000 handshakes at once left ~3 MiB of
 * holes that those survivors pinned for good. Blocks come from a slab per
 * block size (one per kind of front-end), which unmaps its chunks as they
 * empty and keeps one spare, so steady traffic makes no system calls and a
 * burst of handshakes maps ~25 blocks at a time. */
#define PX_ALIGN(n) (((n) + 15) & ~(size_t)15)

#define PX_SESS_SLABS 8 /* distinct block sizes (front-end kinds) */
static struct {
	size_t len;
	struct slab slab;
} px_sess_slabs[PX_SESS_SLABS];

static size_t px_blk_ev_size(void)
{
	return PX_ALIGN(event_get_struct_event_size());
}

/* Offset of the buffer (after the struct and three events). */
static size_t px_blk_buf_off(void)
{
	return PX_ALIGN(sizeof(struct px_sess)) + 3 * px_blk_ev_size();
}

/* The slab for ops' blocks (set up on first use), or NULL. */
static struct slab *px_sess_slab(const struct px_sess_ops *ops)
{
	size_t len = px_blk_buf_off() + ops->buf_size;
	for (size_t i = 0; i < PX_SESS_SLABS; i++) {
		if (px_sess_slabs[i].len == len)
			return &px_sess_slabs[i].slab;
		if (px_sess_slabs[i].len)
			continue;
		if (slab_init(&px_sess_slabs[i].slab, len, 0) < 0)
			return NULL;
		px_sess_slabs[i].len = len;
		return &px_sess_slabs[i].slab;
	}
	return NULL;
}

/* The i-th event slot of s's block (0-2: rev, wev, timer). */
static struct event *px_sess_ev_slot(struct px_sess *s, int i)
{
	return (struct event *)((char *)s + PX_ALIGN(sizeof(*s)) +
	                        (size_t)i * px_blk_ev_size());
}

/* Stops an event of the block (its memory goes with the block). */
static void px_ev_drop(struct event **ev)
{
	if (*ev) {
		event_del(*ev);
		*ev = NULL;
	}
}

static struct px_sess *px_sess_alloc(struct px_front *f, int fd,
                                     const struct px_sess_ops *ops)
{
	struct slab *slab = px_sess_slab(ops);
	struct px_sess *s = slab ? slab_alloc(slab) : NULL;
	if (!s) {
		f->stats.err_other++;
		close(fd);
		return NULL;
	}
	struct event_base *base = f->env.base;
	if (ops->buf_size)
		s->buf = (uint8_t *)s + px_blk_buf_off();
	s->rev = px_sess_ev_slot(s, 0);
	s->wev = px_sess_ev_slot(s, 1);
	s->timer = px_sess_ev_slot(s, 2);
	event_assign(s->rev, base, fd, EV_READ | EV_PERSIST, px_sess_on_read, s);
	event_assign(s->wev, base, fd, EV_WRITE, px_sess_on_write, s);
	evtimer_assign(s->timer, base, px_sess_on_timer, s);
	s->front = f;
	s->ops = ops;
	s->fd = fd;
	s->direct_fd = -1;
	s->state = PX_S_HANDSHAKE;
	s->next = f->sessions;
	if (f->sessions)
		f->sessions->prev = s;
	else
		f->sessions_tail = s;
	f->sessions = s;
	f->n_sessions++;
	f->stats.pending++;
	s->pending = true;
	return s;
}

struct px_sess *px_sess_new(struct px_front *f, int fd, const struct px_sess_ops *ops)
{
	f->stats.accepted++;
	if (px_front_open(f) >= px_front_max(f) && !px_front_evict(f)) {
		f->stats.err_limit++;
		close(fd);
		return NULL;
	}
	struct px_sess *s = px_sess_alloc(f, fd, ops);
	if (s && ops->on_data) {
		event_add(s->rev, NULL);
		px_sess_arm(s, px_handshake_ms(f));
	}
	return s;
}

struct px_sess *px_sess_resume(struct px_front *f, int fd, const struct px_sess_ops *ops,
                               const uint8_t *early, size_t n, bool read_eof)
{
	struct px_sess *s = px_sess_alloc(f, fd, ops);
	if (!s)
		return NULL;
	memcpy(s->buf, early, n);
	s->len = n;
	s->read_eof = read_eof;
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
	else
		f->sessions_tail = s->prev;
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
	slab_free(px_sess_slab(s->ops), s);
}

/* Cancels the connection attempts, drops a host socket not yet relayed;
 * returns what the attempts had found (px_race_cancel), or PX_E_TIMEOUT. */
static enum px_err px_sess_drop_direct(struct px_sess *s)
{
	enum px_err e = PX_E_TIMEOUT;
	if (s->race) {
		e = px_race_cancel(s->race);
		s->race = NULL;
	}
	if (s->direct_fd >= 0) {
		close(s->direct_fd);
		s->direct_fd = -1;
	}
	return e;
}

/* Closes the client (with a RST if asked) and frees the session, or leaves
 * it DEAD for an outstanding callback. s must not be used afterwards. */
static void px_sess_close(struct px_sess *s, bool rst)
{
	if (s->state == PX_S_DEAD)
		return;
	if (s->dns_pending && s->lookup && s->front) {
		/* [Interface] DNS: the lookup goes with the client. */
		struct px_front *f = s->front;
		f->env.lookup_cancel(f->env.lookup_ctx, s->lookup);
		f->n_lookups--;
		s->lookup = NULL;
		s->dns_pending = false;
	}
	px_sess_unlink(s);
	px_sess_drop_direct(s);
	px_ev_drop(&s->rev);
	px_ev_drop(&s->wev);
	px_ev_drop(&s->timer);
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
		/* The callback comes later (evdns: with EVUTIL_EAI_CANCEL) and
		 * frees s. */
		if (s->dns_req)
			evdns_getaddrinfo_cancel(s->dns_req);
		return;
	}
	px_sess_free_mem(s);
}

/* Hands the client and the mesh connection to the netstack (or the host
 * connection to a direct relay). */
static void px_sess_splice(struct px_sess *s)
{
	if (s->ops->on_established && s->ops->on_established(s)) {
		px_sess_close(s, false); /* frees: the front-end has the rest */
		return;
	}
	struct px_front *f = s->front;
	struct ns_tcp *c = s->conn;
	int fd = s->fd, host_fd = s->direct_fd;
	size_t head = s->len - s->consumed;
	const uint8_t *hp = head ? s->buf + s->consumed : NULL;
	px_ev_drop(&s->rev);
	px_ev_drop(&s->wev);
	px_ev_drop(&s->timer);
	s->conn = NULL;
	s->fd = -1;
	s->direct_fd = -1;
	int r;
	if (host_fd >= 0) {
		r = px_relay_start(f, fd, host_fd, hp, head);
	} else {
		struct ns_splice_opts o = {
		    .acct = f ? f->acct : NULL,
		    .idle_ms = f ? f->lim.idle_timeout_ms : 0,
		    .buf_limit = f ? f->lim.buffer_bytes : 0,
		};
		r = ns_splice_start_ex(c, fd, hp, head, &o);
	}
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
		/* The attempts' best failure so far (a refusal says more than
		 * our giving up), else timed out. */
		px_sess_result(s, px_sess_drop_direct(s));
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

/* on_data returned PX_PARSE_DETACH: the front-end takes the socket. */
static void px_sess_detach(struct px_sess *s)
{
	int fd = s->fd;
	px_ev_drop(&s->rev);
	px_ev_drop(&s->wev);
	px_ev_drop(&s->timer);
	s->fd = -1;
	if (s->ops->on_detach)
		s->ops->on_detach(s, fd);
	else
		close(fd);
	px_sess_close(s, false); /* frees: nothing else is outstanding */
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
	if (r == PX_PARSE_DETACH && !s->broken) {
		px_sess_detach(s);
		return;
	}
	if (r == PX_PARSE_DETACH)
		r = PX_PARSE_ERROR; /* the client is gone already */
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
	px_sess_drop_direct(s);
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

/* The attempts are over: the winner goes to the reply and the splice, a
 * failure to the error reply. */
static void px_sess_on_race(void *ctx, enum px_err e, struct ns_tcp *c, int fd)
{
	struct px_sess *s = ctx;
	s->race = NULL;
	if (e != PX_OK) {
		px_sess_result(s, e);
		return;
	}
	if (c)
		s->conn = c;
	else
		s->direct_fd = fd;
	s->state = PX_S_REPLY_OK;
	px_sess_arm(s, px_handshake_ms(s->front));
	if (s->ops->on_result)
		s->ops->on_result(s, PX_OK);
	px_sess_check(s);
}

/* Starts the attempts at a[0..n) (through the mesh, or from the host). */
static void px_sess_race(struct px_sess *s, const struct ns_addr *a, size_t n, bool mesh)
{
	struct px_front *f = s->front;
	s->race = px_race_start(f->env.base, f->kind, a, n, s->target.port, mesh,
	                        f->env.direct_loopback_for_tests, px_sess_on_race, s);
	if (!s->race)
		px_sess_result(s, PX_E_GENERAL);
}

static bool px_route_ok(const struct px_front *f, const struct ns_addr *a)
{
	return !f->env.route_ok || f->env.route_ok(f->env.route_ctx, a);
}

static bool px_reach_ok(const struct px_front *f, const struct ns_addr *a, uint16_t port)
{
	return !f->env.reach_ok || f->env.reach_ok(f->env.reach_ctx, PX_REACH_TCP, a, port);
}

/* Chooses among a's n addresses (IPv4-mapped ones taken as IPv4): those a
 * mesh peer routes, else (Direct and may_direct) those Direct may connect
 * from the host, and tries them all (race.c); if Direct allows none of
 * them the client is told it is not allowed. */
static void px_sess_pick(struct px_sess *s, const struct ns_addr *in, size_t n,
                         bool may_direct)
{
	struct px_front *f = s->front;
	struct ns_addr a[PX_MAX_ADDRS], ok[PX_MAX_ADDRS];
	size_t k = 0;
	if (n > PX_MAX_ADDRS)
		n = PX_MAX_ADDRS;
	if (n == 0) {
		px_sess_result(s, PX_E_RESOLVE);
		return;
	}
	size_t routed = 0;
	for (size_t i = 0; i < n; i++) {
		a[i] = in[i];
		px_addr_unmap(&a[i]);
		if (!px_route_ok(f, &a[i]))
			continue;
		routed++;
		if (px_reach_ok(f, &a[i], s->target.port))
			ok[k++] = a[i];
	}
	if (k > 0) {
		px_sess_race(s, ok, k, true);
		return;
	}
	if (routed > 0) { /* the peer would drop the SYN: say so now */
		char t[300];
		px_target_format(&s->target, t, sizeof(t));
		log_info("%s: %s: refused: the mesh policy does not allow this node "
		         "to reach it (mesh-proxy whois %s)",
		         f->kind, t, t);
		px_sess_result(s, PX_E_POLICY);
		return;
	}
	if (!may_direct ||
	    (f->direct != CFG_DIRECT_PUBLIC && f->direct != CFG_DIRECT_ALL)) {
		px_sess_result(s, PX_E_NO_ROUTE);
		return;
	}
	const char *why = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *no = px_direct_refusal(f->direct, &a[i], &f->env);
		if (!no)
			ok[k++] = a[i];
		else
			why = no;
	}
	char t[300];
	px_target_format(&s->target, t, sizeof(t));
	if (k == 0) {
		log_info("%s: %s refused: %s%s", f->kind, t, why,
		         n > 1 ? " (and so are its other addresses)" : "");
		px_sess_result(s, PX_E_DENIED);
		return;
	}
	if (why)
		log_debug("%s: %s: skipping an address: %s", f->kind, t, why);
	log_debug("%s: %s: not in the mesh, connecting from the host", f->kind, t);
	px_sess_race(s, ok, k, false);
}

static void px_sess_dns_addrs(struct px_sess *s, struct ns_addr *a, size_t n);

static void px_sess_resolved(struct px_sess *s, int result, struct evutil_addrinfo *ai)
{
	if (s->state != PX_S_CONNECT) {
		if (ai)
			evutil_freeaddrinfo(ai);
		if (s->state == PX_S_DEAD)
			px_sess_free_mem(s);
		return;
	}
	struct ns_addr a[2 * PX_MAX_ADDRS], b[PX_MAX_ADDRS];
	size_t n = 0;
	for (struct evutil_addrinfo *i = result == 0 ? ai : NULL;
	     i && n < 2 * PX_MAX_ADDRS; i = i->ai_next) {
		memset(&a[n], 0, sizeof(a[n]));
		if (i->ai_family == AF_INET) {
			a[n].family = AF_INET;
			memcpy(a[n].addr, &((struct sockaddr_in *)i->ai_addr)->sin_addr,
			       4);
		} else if (i->ai_family == AF_INET6) {
			a[n].family = AF_INET6;
			memcpy(a[n].addr, &((struct sockaddr_in6 *)i->ai_addr)->sin6_addr,
			       16);
		} else {
			continue;
		}
		n++;
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	n = px_addrs_take(a, n, b, PX_MAX_ADDRS);
	px_sess_dns_addrs(s, b, n);
}

/* The addresses DNS (evdns or [Interface] DNS) gave for s's name. */
static void px_sess_dns_addrs(struct px_sess *s, struct ns_addr *a, size_t n)
{
	/* A name from the host's DNS never leads into the mesh's own ranges:
	 * only mesh names and addresses do. Otherwise a web page could rebind
	 * its name to a peer's address and read the peer's services as this
	 * node. [Interface] DNS is the tunnel's own resolver, chosen by the
	 * user: its answers may point into the tunnel (split horizon is what
	 * it is for). */
	bool host_dns = !s->front->env.lookup;
	size_t kept = 0, n_dns = n;
	for (size_t i = 0; i < n; i++) {
		px_addr_unmap(&a[i]); /* judged, routed and dialled as IPv4 */
		if (!host_dns || !px_in_own_prefixes(&a[i], &s->front->env))
			a[kept++] = a[i];
	}
	if (n_dns > 0 && kept == 0) {
		log_info("%s: %s: refused: DNS answers with the mesh's own addresses "
		         "(only mesh names reach peers)",
		         s->front->kind, s->target.host);
		px_sess_result(s, PX_E_DENIED);
		return;
	}
	px_sess_pick(s, a, kept, true);
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

/* [Interface] DNS answered (px_env.lookup). */
static void px_sess_on_lookup(void *arg, int err, const struct ns_addr *a, size_t n)
{
	struct px_sess *s = arg;
	s->dns_pending = false;
	s->lookup = NULL;
	if (s->front)
		s->front->n_lookups--;
	if (s->state != PX_S_CONNECT) {
		if (s->state == PX_S_DEAD)
			px_sess_free_mem(s);
		return;
	}
	struct ns_addr b[PX_MAX_ADDRS];
	n = err == 0 ? px_addrs_take(a, n, b, PX_MAX_ADDRS) : 0;
	px_sess_dns_addrs(s, b, n);
}

void px_sess_connect(struct px_sess *s)
{
	struct px_front *f = s->front;
	s->state = PX_S_CONNECT;
	if (!ns_mem_admit()) { /* counted by the netstack too */
		px_sess_result(s, PX_E_BUSY);
		return;
	}
	px_sess_arm(s, f->env.connect_timeout_ms ? f->env.connect_timeout_ms
	                                         : PX_CONNECT_TIMEOUT_MS);
	if (!s->target.is_name) {
		px_sess_pick(s, &s->target.addr, 1, true);
		return;
	}
	if (f->env.resolve_mesh) {
		/* Mesh names never leave the mesh (no DNS, no direct). */
		struct ns_addr a[PX_MAX_ADDRS];
		size_t n = f->env.resolve_mesh(f->env.resolve_ctx, s->target.host, a,
		                               PX_MAX_ADDRS);
		if (n > 0) {
			px_sess_pick(s, a, n > PX_MAX_ADDRS ? PX_MAX_ADDRS : n, false);
			return;
		}
	}
	if (f->env.lookup) { /* through the mesh: the host is never asked */
		if (f->n_lookups >= PX_LOOKUPS_MAX) {
			log_debug("%s: %s: too many names being looked up at once",
			          f->kind, s->target.host);
			px_sess_result(s, PX_E_RESOLVE);
			return;
		}
		s->dns_pending = true;
		if (f->env.lookup(f->env.lookup_ctx, s->target.host, px_sess_on_lookup,
		                  s, &s->lookup) != 0) {
			s->dns_pending = false;
			s->lookup = NULL;
			px_sess_result(s, PX_E_RESOLVE);
			return;
		}
		f->n_lookups++;
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
