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
 * In probe mode (the health listeners) requests do not move the deadline,
 * and at the cap the oldest connection is shut down for the new one, so
 * that no set of clients can hold the listener. */
#include "core/util/http_conns.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "core/util/log.h"

#define HTTP_CONNS_RETRY_MS 100

struct http_sock {
	int fd;
	dev_t dev;
	ino_t ino;
	int64_t deadline_ms; /* monotonic; 0: shut down already */
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

static void stop(struct http_conns *ac)
{
	struct timeval tv = {0, HTTP_CONNS_RETRY_MS * 1000};
	if (!ac->stopped)
		evconnlistener_disable(ac->lis);
	ac->stopped = true;
	evtimer_add(ac->retry, &tv);
}

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct http_conns *ac = arg;
	if (sweep(ac) >= ac->cap && !(ac->probe_mode && ac->n_socks)) {
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
		if (s >= 0 && ac->n_socks < ac->cap && fstat(s, &sb) == 0)
			ac->socks[ac->n_socks++] = (struct http_sock){
			    .fd = s,
			    .dev = sb.st_dev,
			    .ino = sb.st_ino,
			    .deadline_ms = mono_ms() + HTTP_CONNS_REQUEST_S * 1000};
		bufferevent_decref(bev); /* evhttp's, or freed if it let go */
	}
	ac->n_fresh = 0;
}

/* Probe mode at the cap: the oldest noted connection makes room (the list
 * is in the order of opening; it leaves the list now, evhttp frees it when
 * it sees the end). false when none can go (all are this turn's). */
static bool replace_oldest(struct http_conns *ac)
{
	if (!ac->n_socks)
		return false;
	(void)shutdown(ac->socks[0].fd, SHUT_RDWR);
	memmove(&ac->socks[0], &ac->socks[1], (ac->n_socks - 1) * sizeof(ac->socks[0]));
	ac->n_socks--;
	if (ac->replaced++ % 1000 == 0)
		log_info("%s: %zu connections open (the most); closing the oldest for a "
		         "new one",
		         ac->what, ac->cap);
	return true;
}

struct bufferevent *http_conns_bevcb(struct event_base *base, void *arg)
{
	struct http_conns *ac = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL; /* evhttp makes its own; not counted */
	if (ac->n_fresh < ac->cap) {
		bufferevent_incref(bev);
		ac->fresh[ac->n_fresh++] = bev;
		event_active(ac->note, 0, 0);
	}
	/* Called from the listener's accept loop: stopping it here keeps the
	 * next connection in the backlog. */
	size_t open = sweep(ac); /* this one included */
	if (!ac->probe_mode && open >= ac->cap)
		stop(ac);
	else if (ac->probe_mode && open > ac->cap && !replace_oldest(ac))
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
	stop(ac);
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
