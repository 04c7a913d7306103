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
 * cap descriptors are ever held), but every few milliseconds it looks at
 * the kernel's accept queue: for each connection waiting there, one open
 * connection is shut down to make room. The one shut down belongs to the
 * source address holding the most connections (ties: the oldest), and
 * has no request in flight if another can go: a connect flood from one
 * address evicts its own connections, not a kubelet's probe. A shut-down
 * connection stays counted until evhttp closes its descriptor. */
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
/* Probe mode at the cap: how often the accept queue is looked at. */
#define HTTP_CONNS_PROBE_RETRY_MS 5

struct http_sock {
	int fd;
	dev_t dev;
	ino_t ino;
	int64_t deadline_ms; /* monotonic; 0: shut down already */
	uint8_t src[16];     /* the peer's address (IPv4 in the first 4) */
};

struct http_conns {
	struct evconnlistener *lis;
	size_t cap;
	struct http_sock *socks; /* open connections, cap of them at most */
	size_t n_socks;
	struct bufferevent **fresh; /* created this turn, socket not noted yet */
	size_t n_fresh;
	struct event *note, *retry, *deadline;
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
	stop_ms(ac, ac->probe_mode ? HTTP_CONNS_PROBE_RETRY_MS : HTTP_CONNS_RETRY_MS);
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

/* A request came in and is not read yet, or its response is not out. */
static bool in_flight(const struct http_sock *s)
{
	int in = 0, out = 0;
	return (ioctl(s->fd, FIONREAD, &in) == 0 && in > 0) ||
	       (ioctl(s->fd, SIOCOUTQ, &out) == 0 && out > 0);
}

static size_t same_src(const struct http_conns *ac, const struct http_sock *s)
{
	size_t n = 0;
	for (size_t i = 0; i < ac->n_socks; i++)
		n += ac->socks[i].deadline_ms &&
		     !memcmp(ac->socks[i].src, s->src, sizeof(s->src));
	return n;
}

/* The connection to shut down for a newcomer: of the source address with
 * the most open connections, the oldest (the list is in the order of
 * opening), skipping those with a request in flight unless all have one.
 * -1 when none is open (all are shut down already). */
static ssize_t victim(const struct http_conns *ac)
{
	ssize_t best = -1;
	size_t best_n = 0;
	bool best_busy = true;
	for (size_t i = 0; i < ac->n_socks; i++) {
		const struct http_sock *s = &ac->socks[i];
		if (!s->deadline_ms)
			continue;
		bool busy = in_flight(s);
		size_t n = same_src(ac, s);
		if (best < 0 || (best_busy && !busy) ||
		    (busy == best_busy && n > best_n)) {
			best = (ssize_t)i;
			best_n = n;
			best_busy = busy;
		}
	}
	return best;
}

/* Probe mode at the cap: one open connection shut down per connection
 * waiting in the accept queue (less those already on their way out). */
static void make_room(struct http_conns *ac)
{
	size_t closing = 0, want = accept_queue(ac);
	for (size_t i = 0; i < ac->n_socks; i++)
		closing += !ac->socks[i].deadline_ms;
	while (closing < want) {
		ssize_t v = victim(ac);
		if (v < 0)
			return;
		ac->socks[v].deadline_ms = 0;
		(void)shutdown(ac->socks[v].fd, SHUT_RDWR);
		closing++;
		if (ac->replaced++ % 1000 == 0)
			log_info("%s: %zu connections open (the most); closing one of "
			         "the address holding the most for a new one",
			         ac->what, ac->cap);
	}
}

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	if (sweep(ac) >= ac->cap) {
		if (ac->probe_mode)
			make_room(ac);
		stop(ac);
		return;
	}
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

/* The loop's next turn: evhttp has attached each new bufferevent's socket. */
static void note_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	for (size_t i = 0; i < ac->n_fresh; i++) {
		struct bufferevent *bev = ac->fresh[i];
		int s = (int)bufferevent_getfd(bev);
		struct stat sb;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (s >= 0 && ac->n_socks < ac->cap && fstat(s, &sb) == 0) {
			struct http_sock *n = &ac->socks[ac->n_socks++];
			*n = (struct http_sock){
			    .fd = s,
			    .dev = sb.st_dev,
			    .ino = sb.st_ino,
			    .deadline_ms = mono_ms() + HTTP_CONNS_REQUEST_S * 1000};
			if (getpeername(s, (struct sockaddr *)&ss, &sl) == 0 &&
			    ss.ss_family == AF_INET)
				memcpy(n->src, &((struct sockaddr_in *)&ss)->sin_addr, 4);
			else if (ss.ss_family == AF_INET6)
				memcpy(n->src, &((struct sockaddr_in6 *)&ss)->sin6_addr,
				       16);
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
	if (!ac->socks || !ac->fresh || !ac->note || !ac->retry || !ac->deadline) {
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
