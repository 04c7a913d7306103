/* An evhttp server's connection cap (mesh-control's admin API, the
 * health listeners); see http_conns.h.
 *
 * evhttp creates a connection's bufferevent through our callback before it
 * attaches the accepted socket, and frees it without telling anyone. So a
 * new bufferevent is held (a reference) until the loop's next turn, when
 * its socket is known: we note the socket's descriptor with its device and
 * inode, and let go. A connection is open while fstat() of that descriptor
 * still finds the same inode (a closed descriptor that was reused belongs
 * to another socket, with another inode). The list is swept at each new
 * connection and while the listener is stopped: at most cap + a few
 * fstat() calls each time.
 *
 * Each connection has a deadline to complete a request: HTTP_CONNS_REQUEST_S
 * from when it was noted, and again from each request evhttp dispatched
 * (plus the write timeout, for the response to go out). libevent's own
 * timeout is per read, re-armed by every byte, so without it a byte every
 * few seconds held a connection for ever and 64 of them the whole API.
 * Past its deadline a connection is shut down (shutdown(2), not close:
 * the descriptor stays evhttp's, which sees the end and frees it).
 *
 * In probe mode (the health listeners) requests do not move the deadline.
 * At the cap the listener stops as in the default mode (so every accepted
 * connection is counted, however many arrive in one turn, and no more than
 * cap descriptors are ever held). While connections wait in the kernel's
 * accept queue it is looked at every millisecond or so, and open ones are
 * shut down to make room, at most one per waiting connection, and only of
 * a source (an IPv4 address, an IPv6 /64) holding more than its fair share:
 * cap / (sources holding connections + 1, for the newcomer). The source
 * holding the most loses first; within a source, a connection with no
 * request in flight before one with, then the oldest. A source's last
 * connection is never shut down, so a connect flood from one source evicts
 * its own connections, not a kubelet's probe, and the count of waiting
 * connections (which may include some the client already reset) costs the
 * flood, not others. "In flight" is peer-controlled (a peer that does not
 * ACK keeps its response in our send queue), so it only orders within a
 * source, and a response unacknowledged for HTTP_CONNS_STUCK_MS counts as
 * idle. With the queue empty nothing ticks: a one-shot read event on the
 * listening socket says when a connection queues. A shut-down connection
 * stays counted until evhttp closes its descriptor. */
#include "core/util/http_conns.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "core/util/log.h"

#define HTTP_CONNS_RETRY_MS 100
/* Probe mode at the cap, connections waiting: how often the accept queue
 * is looked at; doubled up to HTTP_CONNS_RETRY_MS while no room can be made. */
#define HTTP_CONNS_PROBE_RETRY_MS 1
/* A response unacknowledged this long is stuck: its connection counts as idle. */
#define HTTP_CONNS_STUCK_MS 1000

struct http_sock {
	int fd;
	dev_t dev;
	ino_t ino;
	int64_t deadline_ms; /* monotonic; 0: shut down already */
	int64_t outq_ms;     /* when its send queue was first seen non-empty; 0 */
	uint8_t src[16];     /* the peer's address, IPv4 in the first 4, IPv6 /64 */
	sa_family_t fam;     /* of src; AF_UNSPEC: unknown, its own source */
	/* make_room's, computed once per call: */
	bool busy;    /* a request in flight */
	size_t n_src; /* open connections of its source */
};

struct http_conns {
	struct evconnlistener *lis;
	size_t cap;
	struct http_sock *socks; /* open connections, cap of them at most */
	size_t n_socks;
	struct bufferevent **fresh; /* created this turn, socket not noted yet */
	size_t n_fresh;
	struct event *note, *retry, *deadline;
	struct event *wake; /* probe mode: the listening socket readable */
	int tick_ms;        /* probe mode: the retry's interval now */
	bool stopped;
	unsigned accept_errors;
	unsigned long long expired;
	int extra_s;     /* after a request: its response's time to go out */
	bool probe_mode; /* replace the oldest at the cap; fixed lifetime */
	unsigned long long replaced;
	struct http_conns *next_all;
	char what[64]; /* for the log: "mesh-control: admin API" */
};

/* The listener's error callback gets evhttp's argument, not ours: it finds
 * its http_conns here (one per server in the process). */
static struct http_conns *all;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_sock(const struct http_sock *s)
{
	struct stat sb;
	return fstat(s->fd, &sb) == 0 && sb.st_dev == s->dev && sb.st_ino == s->ino;
}

/* Drops the connections that closed; returns how many are open. */
static size_t sweep(struct http_conns *ac)
{
	size_t j = 0;
	for (size_t i = 0; i < ac->n_socks; i++) {
		if (same_sock(&ac->socks[i]))
			ac->socks[j++] = ac->socks[i];
	}
	ac->n_socks = j;
	return j + ac->n_fresh;
}

static void stop_ms(struct http_conns *ac, int ms)
{
	struct timeval tv = {0, ms * 1000};
	if (!ac->stopped)
		evconnlistener_disable(ac->lis);
	ac->stopped = true;
	evtimer_add(ac->retry, &tv);
}

static void stop(struct http_conns *ac)
{
	stop_ms(ac, ac->probe_mode ? ac->tick_ms : HTTP_CONNS_RETRY_MS);
}

/* Connections waiting in the kernel's accept queue (Linux reports it in
 * tcpi_unacked for a listening socket); 1 when it cannot tell. */
static size_t accept_queue(struct http_conns *ac)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd = (int)evconnlistener_get_fd(ac->lis);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_unacked) + sizeof(ti.tcpi_unacked))
		return 1;
	return ti.tcpi_unacked;
}

/* A request came in and is not read yet, or its response is not out (and
 * has not sat unacknowledged past HTTP_CONNS_STUCK_MS: a peer that does not
 * ACK must not make its connections look busy for ever). */
static bool in_flight(struct http_sock *s, int64_t now)
{
	int in = 0, out = 0;
	if (ioctl(s->fd, SIOCOUTQ, &out) != 0 || out <= 0)
		s->outq_ms = 0;
	else if (!s->outq_ms)
		s->outq_ms = now;
	if (ioctl(s->fd, FIONREAD, &in) == 0 && in > 0)
		return true;
	return s->outq_ms && now - s->outq_ms <= HTTP_CONNS_STUCK_MS;
}

static bool same_src(const struct http_sock *a, const struct http_sock *b)
{
	return a->fam != AF_UNSPEC && a->fam == b->fam &&
	       !memcmp(a->src, b->src, sizeof(a->src));
}

/* Fills busy and n_src of the open connections; returns how many sources
 * hold them. */
static size_t census(struct http_conns *ac)
{
	int64_t now = mono_ms();
	size_t sources = 0;
	for (size_t i = 0; i < ac->n_socks; i++) {
		struct http_sock *s = &ac->socks[i];
		if (!s->deadline_ms)
			continue;
		s->busy = in_flight(s, now);
		s->n_src = 0;
		bool first = true;
		for (size_t j = 0; j < ac->n_socks; j++) {
			const struct http_sock *o = &ac->socks[j];
			if (o->deadline_ms && (j == i || same_src(s, o))) {
				s->n_src++;
				first &= j >= i;
			}
		}
		sources += first;
	}
	return sources;
}

/* The connection to shut down for a newcomer: of a source holding more
 * than share (and more than one), the source holding the most; within it
 * one with no request in flight, then the oldest (the list is in the order
 * of opening). -1 when none may go. */
static ssize_t victim(const struct http_conns *ac, size_t share)
{
	ssize_t best = -1;
	for (size_t i = 0; i < ac->n_socks; i++) {
		const struct http_sock *s = &ac->socks[i], *b;
		if (!s->deadline_ms || s->n_src <= share || s->n_src < 2)
			continue;
		if (best < 0) {
			best = (ssize_t)i;
			continue;
		}
		b = &ac->socks[best];
		if (s->n_src > b->n_src || (s->n_src == b->n_src && b->busy && !s->busy))
			best = (ssize_t)i;
	}
	return best;
}

/* Probe mode at the cap, queued connections waiting: shuts down at most
 * one open connection per waiting one (less those already on their way
 * out), only of sources above their fair share. Returns how many are on
 * their way out: none, and no room comes until one closes by itself. */
static size_t make_room(struct http_conns *ac, size_t queued)
{
	size_t closing = 0;
	for (size_t i = 0; i < ac->n_socks; i++)
		closing += !ac->socks[i].deadline_ms;
	if (closing >= queued)
		return closing;
	size_t share = ac->cap / (census(ac) + 1);
	for (; closing < queued; closing++) {
		ssize_t v = victim(ac, share);
		if (v < 0)
			break;
		struct http_sock *s = &ac->socks[v];
		for (size_t i = 0; i < ac->n_socks; i++)
			if (i != (size_t)v && ac->socks[i].deadline_ms &&
			    same_src(s, &ac->socks[i]))
				ac->socks[i].n_src--;
		s->deadline_ms = 0;
		(void)shutdown(s->fd, SHUT_RDWR);
		if (ac->replaced++ % 1000 == 0)
			log_info("%s: %zu connections open (the most); closing one of "
			         "an address holding more than %zu for a new one",
			         ac->what, ac->cap, share);
	}
	return closing;
}

/* Probe mode, at the cap: makes room for queued connections, and looks
 * again soon (sooner while room is being made); with none queued, waits
 * for the listening socket to be readable instead of ticking. */
static void probe_at_cap(struct http_conns *ac)
{
	size_t queued = accept_queue(ac);
	if (!queued) {
		ac->tick_ms = HTTP_CONNS_PROBE_RETRY_MS;
		evtimer_del(ac->retry);
		event_add(ac->wake, NULL);
		return;
	}
	if (make_room(ac, queued))
		ac->tick_ms = HTTP_CONNS_PROBE_RETRY_MS;
	else if (ac->tick_ms < HTTP_CONNS_RETRY_MS)
		ac->tick_ms = ac->tick_ms * 2 > HTTP_CONNS_RETRY_MS ? HTTP_CONNS_RETRY_MS
		                                                    : ac->tick_ms * 2;
	stop(ac);
}

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	event_del(ac->wake);
	if (sweep(ac) >= ac->cap) {
		if (ac->probe_mode)
			probe_at_cap(ac);
		else
			stop(ac);
		return;
	}
	ac->tick_ms = HTTP_CONNS_PROBE_RETRY_MS;
	ac->stopped = false;
	evconnlistener_enable(ac->lis);
}

/* Every second: connections past their deadline are shut down. */
static void deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	int64_t now = mono_ms();
	sweep(ac);
	for (size_t i = 0; i < ac->n_socks; i++) {
		struct http_sock *s = &ac->socks[i];
		if (!s->deadline_ms || now < s->deadline_ms)
			continue;
		s->deadline_ms = 0;
		ac->expired++;
		log_debug(ac->probe_mode
		              ? "%s: a connection reached its %d s lifetime; closing it"
		              : "%s: a connection sent no complete request in %d s; "
		                "closing it",
		          ac->what, HTTP_CONNS_REQUEST_S);
		(void)shutdown(s->fd, SHUT_RDWR);
	}
}

/* The connection's source: an IPv4 address, or an IPv6 /64 (one host
 * usually has a whole /64, as mesh-control's own limits assume). A socket
 * whose peer is unknown (reset already) is shut down: evhttp frees it. */
static void note_source(struct http_sock *n, const struct sockaddr_storage *ss, int r)
{
	if (r == 0 && ss->ss_family == AF_INET) {
		memcpy(n->src, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		n->fam = AF_INET;
	} else if (r == 0 && ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(n->src, &a->s6_addr[12], 4);
			n->fam = AF_INET;
		} else {
			memcpy(n->src, a, 8);
			n->fam = AF_INET6;
		}
	} else {
		n->fam = AF_UNSPEC;
		n->deadline_ms = 0;
		(void)shutdown(n->fd, SHUT_RDWR);
	}
}

/* The loop's next turn: evhttp has attached each new bufferevent's socket. */
static void note_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	for (size_t i = 0; i < ac->n_fresh; i++) {
		struct bufferevent *bev = ac->fresh[i];
		int s = (int)bufferevent_getfd(bev);
		struct stat sb;
		struct sockaddr_storage ss = {0};
		socklen_t sl = sizeof(ss);
		if (s >= 0 && ac->n_socks < ac->cap && fstat(s, &sb) == 0) {
			struct http_sock *n = &ac->socks[ac->n_socks++];
			*n = (struct http_sock){
			    .fd = s,
			    .dev = sb.st_dev,
			    .ino = sb.st_ino,
			    .deadline_ms = mono_ms() + HTTP_CONNS_REQUEST_S * 1000};
			note_source(n, &ss, getpeername(s, (struct sockaddr *)&ss, &sl));
		}
		bufferevent_decref(bev); /* evhttp's, or freed if it let go */
	}
	ac->n_fresh = 0;
}

struct bufferevent *http_conns_bevcb(struct event_base *base, void *arg)
{
	struct http_conns *ac = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL; /* evhttp makes its own; not counted */
	/* The listener stops at the cap (below), so there is room: every
	 * connection is counted. */
	if (ac->n_fresh < ac->cap) {
		bufferevent_incref(bev);
		ac->fresh[ac->n_fresh++] = bev;
		event_active(ac->note, 0, 0);
	}
	/* Called from the listener's accept loop: stopping it here keeps the
	 * next connection in the backlog (in probe mode, until retry_cb has
	 * made room for it). */
	if (sweep(ac) >= ac->cap) /* this one included */
		stop(ac);
	return bev;
}

/* accept() failed with something other than EAGAIN / EINTR / ECONNABORTED
 * (EMFILE, ENFILE, ENOBUFS): the socket stays readable, so pause. */
static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
	struct http_conns *ac = all;
	int e = EVUTIL_SOCKET_ERROR();
	while (ac && ac->lis != lis)
		ac = ac->next_all;
	if (!ac)
		return;
	if (ac->accept_errors++ % 600 == 0)
		log_warn("%s: accepting connections: %s; pausing %d ms at a time",
		         ac->what, strerror(e), HTTP_CONNS_RETRY_MS);
	stop_ms(ac, HTTP_CONNS_RETRY_MS);
}

struct http_conns *http_conns_new(struct event_base *base, struct evconnlistener *lis,
                                  size_t cap, const char *what)
{
	struct http_conns *ac = calloc(1, sizeof *ac);
	if (!ac)
		return NULL;
	snprintf(ac->what, sizeof(ac->what), "%s", what);
	ac->lis = lis;
	ac->cap = cap ? cap : 1;
	ac->socks = calloc(ac->cap, sizeof *ac->socks);
	ac->fresh = calloc(ac->cap, sizeof *ac->fresh);
	ac->note = event_new(base, -1, 0, note_cb, ac);
	ac->retry = evtimer_new(base, retry_cb, ac);
	ac->deadline = event_new(base, -1, EV_PERSIST, deadline_cb, ac);
	ac->wake = event_new(base, evconnlistener_get_fd(lis), EV_READ, retry_cb, ac);
	ac->tick_ms = HTTP_CONNS_PROBE_RETRY_MS;
	if (!ac->socks || !ac->fresh || !ac->note || !ac->retry || !ac->deadline ||
	    !ac->wake) {
		http_conns_free(ac);
		return NULL;
	}
	struct timeval sec = {1, 0};
	event_add(ac->deadline, &sec);
	evconnlistener_set_error_cb(lis, accept_error_cb);
	ac->next_all = all;
	all = ac;
	return ac;
}

void http_conns_free(struct http_conns *ac)
{
	if (!ac)
		return;
	for (struct http_conns **pp = &all; *pp; pp = &(*pp)->next_all)
		if (*pp == ac) {
			*pp = ac->next_all;
			break;
		}
	for (size_t i = 0; i < ac->n_fresh; i++)
		bufferevent_decref(ac->fresh[i]);
	if (ac->note)
		event_free(ac->note);
	if (ac->retry)
		event_free(ac->retry);
	if (ac->deadline)
		event_free(ac->deadline);
	if (ac->wake)
		event_free(ac->wake);
	free(ac->socks);
	free(ac->fresh);
	free(ac);
}

size_t http_conns_open(struct http_conns *ac)
{
	return sweep(ac);
}

void http_conns_served(struct http_conns *ac, int fd)
{
	if (ac->probe_mode)
		return; /* the deadline stays the one from the opening */
	for (size_t i = 0; i < ac->n_socks; i++) {
		struct http_sock *s = &ac->socks[i];
		if (s->fd == fd && s->deadline_ms && same_sock(s))
			s->deadline_ms =
			    mono_ms() +
			    (int64_t)(HTTP_CONNS_REQUEST_S + ac->extra_s) * 1000;
	}
}

void http_conns_set_write_timeout(struct http_conns *ac, int s)
{
	ac->extra_s = s;
}

void http_conns_set_probe_mode(struct http_conns *ac)
{
	ac->probe_mode = true;
}

unsigned long long http_conns_replaced(struct http_conns *ac)
{
	return ac->replaced;
}

unsigned long long http_conns_expired(struct http_conns *ac)
{
	return ac->expired;
}
