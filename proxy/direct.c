/* Direct: destinations that no mesh peer routes, and that Direct's policy
 * allows (direct_policy.c), are connected from the host (as Tailscale's
 * userspace mode does), and the client socket is relayed to the host
 * socket here, without the netstack.
 *
 * A relay has two directions (up: client -> host, down: host -> client).
 * Each reads its source only while nothing is waiting to be written: it
 * reads into a stack buffer of at most min(BufferSize, 64 KiB), writes what
 * the destination takes, and keeps the rest on the heap until it is
 * written. So a relay holds at most one such chunk per direction, nothing
 * at all while idle, and a slow reader stops its writer (the kernel's
 * socket buffers fill and TCP closes the window). What it keeps is charged
 * to the node's memory budget (ns_mem_charge).
 *
 * EOF on one side becomes shutdown(SHUT_WR) on the other once the pending
 * bytes are written; when both directions are shut the relay closes. A
 * reset (recv or send failing) resets both sides (SO_LINGER 0). With
 * IdleTimeout, a relay that moved no byte for that long is reset; a
 * half-closed relay whose open direction is quiet for
 * NS_HALF_CLOSED_IDLE_MS is reset too, as splices are. */
#include "core/util/slab.h"
#include "proxy/internal.h"

#include "core/util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PX_RELAY_CHUNK (64 * 1024)

/* A relay lives as long as its connection, often long after the burst that
 * opened it; from malloc's heap, freed relays left holes between
 * libevent's per-descriptor entries that never went back to the system. So
 * a relay and its five events (event_assign) are one slab object, and the
 * slab unmaps its chunks as they empty. */
#define PX_RELAY_EVENTS 5

struct px_relay_dir {
	int from, to;
	struct event *rev; /* from readable (persistent; added while reading) */
	struct event *wev; /* to writable (once, while bytes wait) */
	uint8_t *pend;     /* bytes read but not yet written (heap) */
	size_t pend_off, pend_len;
	bool eof;  /* from said EOF */
	bool shut; /* shutdown(to, SHUT_WR) done */
	bool up;   /* client -> host */
};

struct px_relay {
	struct px_front *f;
	struct px_relay *next, *prev;
	struct px_relay_dir up, down;
	struct event *timer;
	struct timeval last; /* when a byte last moved */
	size_t chunk;
};

enum px_err px_err_from_host_errno(int e)
{
	switch (e) {
	case 0:
		return PX_OK;
	case ECONNREFUSED:
	case ECONNRESET:
		return PX_E_REFUSED;
	case ETIMEDOUT:
		return PX_E_TIMEOUT;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return PX_E_UNREACHABLE;
	default:
		return PX_E_GENERAL;
	}
}

int px_direct_connect(const struct ns_addr *a, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a->addr, 4);
		sin->sin_port = htons(port);
		sl = sizeof(*sin);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a->addr, 16);
		sin6->sin6_port = htons(port);
		sl = sizeof(*sin6);
	} else {
		return -EAFNOSUPPORT;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sl) == 0 || errno == EINPROGRESS)
		return fd;
	int e = errno;
	close(fd);
	return -e;
}

/* ---- the relay ---- */

static struct slab px_relay_slab;
static size_t px_relay_ev_off, px_relay_ev_size;

static size_t px_relay_round(size_t n)
{
	return (n + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
}

static struct px_relay *px_relay_alloc(void)
{
	if (!px_relay_ev_size) {
		px_relay_ev_size = px_relay_round(event_get_struct_event_size());
		px_relay_ev_off = px_relay_round(sizeof(struct px_relay));
		if (slab_init(&px_relay_slab,
		              px_relay_ev_off + PX_RELAY_EVENTS * px_relay_ev_size,
		              0) < 0) {
			px_relay_ev_size = 0;
			return NULL;
		}
	}
	return slab_alloc(&px_relay_slab);
}

/* The i-th event slot of r's object. */
static struct event *px_relay_ev(struct px_relay *r, int i)
{
	return (struct event *)((uint8_t *)r + px_relay_ev_off +
	                        (size_t)i * px_relay_ev_size);
}

static void px_relay_ev_drop(struct event *ev)
{
	if (ev)
		event_del(ev);
}

static void px_relay_free(struct px_relay *r, bool rst)
{
	struct px_front *f = r->f;
	if (r->prev)
		r->prev->next = r->next;
	else
		f->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	f->n_relays--;
	f->stats.active--;
	struct px_relay_dir *d[2] = {&r->up, &r->down};
	for (int i = 0; i < 2; i++) {
		px_relay_ev_drop(d[i]->rev);
		px_relay_ev_drop(d[i]->wev);
		if (d[i]->pend)
			ns_mem_uncharge(d[i]->pend_off + d[i]->pend_len);
		free(d[i]->pend);
	}
	px_relay_ev_drop(r->timer);
	int fds[2] = {r->up.from, r->up.to};
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		if (rst) {
			struct linger lg = {1, 0};
			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(fds[i]);
	}
	slab_free(&px_relay_slab, r);
}

static void px_relay_touch(struct px_relay *r)
{
	event_base_gettimeofday_cached(r->f->env.base, &r->last);
}

static struct px_relay *px_relay_of(struct px_relay_dir *d)
{
	if (d->up)
		return (struct px_relay *)((uint8_t *)d - offsetof(struct px_relay, up));
	return (struct px_relay *)((uint8_t *)d - offsetof(struct px_relay, down));
}

static unsigned px_relay_deadline_ms(const struct px_relay *r)
{
	unsigned ms = r->f->lim.idle_timeout_ms;
	if ((r->up.shut || r->down.shut) && (!ms || ms > NS_HALF_CLOSED_IDLE_MS))
		ms = NS_HALF_CLOSED_IDLE_MS;
	return ms;
}

static void px_relay_rearm(struct px_relay *r);

/* After any progress on d: shut its destination once the source ended and
 * everything is written, close the relay when both ways are done, and
 * decide whether to read. False if r was freed. */
static bool px_relay_settle(struct px_relay *r, struct px_relay_dir *d)
{
	if (d->eof && d->pend_len == 0 && !d->shut) {
		shutdown(d->to, SHUT_WR);
		d->shut = true;
		if (!(r->up.shut && r->down.shut))
			px_relay_rearm(r); /* the half-closed deadline applies */
	}
	if (r->up.shut && r->down.shut) {
		px_relay_free(r, false);
		return false;
	}
	if (!d->eof && d->pend_len == 0)
		event_add(d->rev, NULL);
	else
		event_del(d->rev);
	return true;
}

/* Writes p[0..n) to d->to; keeps what does not fit. False if r was freed. */
static bool px_relay_write(struct px_relay *r, struct px_relay_dir *d, const uint8_t *p,
                           size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = send(d->to, p + done, n - done, MSG_NOSIGNAL);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* The destination reset (or is gone): reset the source too. */
		log_debug("%s: direct relay: send: %s", r->f->kind, strerror(errno));
		px_relay_free(r, true);
		return false;
	}
	if (done) {
		if (d->up)
			r->f->stats.bytes_up += done;
		else
			r->f->stats.bytes_down += done;
		px_relay_touch(r);
	}
	if (done < n) {
		uint8_t *keep = malloc(n - done);
		if (!keep) {
			r->f->stats.err_other++;
			px_relay_free(r, true);
			return false;
		}
		memcpy(keep, p + done, n - done);
		ns_mem_charge(n - done); /* the node's memory budget */
		d->pend = keep;
		d->pend_off = 0;
		d->pend_len = n - done;
		event_add(d->wev, NULL);
	}
	return px_relay_settle(r, d);
}

static void px_relay_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct px_relay_dir *d = arg;
	struct px_relay *r = px_relay_of(d);
	uint8_t *p = d->pend;
	size_t off = d->pend_off, n = d->pend_len;
	d->pend = NULL;
	d->pend_off = d->pend_len = 0;
	/* px_relay_write keeps a fresh copy of whatever is still left. */
	ns_mem_uncharge(off + n);
	px_relay_write(r, d, p + off, n);
	free(p);
}

static void px_relay_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct px_relay_dir *d = arg;
	struct px_relay *r = px_relay_of(d);
	uint8_t buf[PX_RELAY_CHUNK];
	if (d->pend_len || d->eof) {
		event_del(d->rev);
		return;
	}
	ssize_t n = recv(d->from, buf, r->chunk, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		/* A reset from this side: pass it on. */
		log_debug("%s: direct relay: recv: %s", r->f->kind, strerror(errno));
		px_relay_free(r, true);
		return;
	}
	if (n == 0) {
		d->eof = true;
		px_relay_touch(r);
		px_relay_settle(r, d);
		return;
	}
	px_relay_write(r, d, buf, (size_t)n);
}

/* Arms the idle timer for the time left until the relay would be idle
 * (no timer when no deadline applies). */
static void px_relay_rearm(struct px_relay *r)
{
	unsigned ms = px_relay_deadline_ms(r);
	if (!ms) {
		evtimer_del(r->timer);
		return;
	}
	struct timeval now, idle;
	event_base_gettimeofday_cached(r->f->env.base, &now);
	evutil_timersub(&now, &r->last, &idle);
	long left = (long)ms - (idle.tv_sec * 1000 + idle.tv_usec / 1000);
	if (left < 1)
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	evtimer_add(r->timer, &tv);
}

/* Resets the relay if nothing moved for its deadline, else looks again
 * when it could be idle. */
static void px_relay_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct px_relay *r = arg;
	unsigned ms = px_relay_deadline_ms(r);
	struct timeval now, idle;
	event_base_gettimeofday_cached(r->f->env.base, &now);
	evutil_timersub(&now, &r->last, &idle);
	long idle_ms = idle.tv_sec * 1000 + idle.tv_usec / 1000;
	if (ms && idle_ms >= (long)ms) {
		r->f->stats.err_idle++;
		log_debug("%s: direct relay idle for %ld ms: reset", r->f->kind, idle_ms);
		px_relay_free(r, true);
		return;
	}
	px_relay_rearm(r);
}

/* Sets up d with event slots i and i + 1 of r. */
static int px_relay_dir_init(struct px_relay *r, struct px_relay_dir *d, int from, int to,
                             bool up, int i)
{
	struct event_base *base = r->f->env.base;
	d->from = from;
	d->to = to;
	d->up = up;
	if (event_assign(px_relay_ev(r, i), base, from, EV_READ | EV_PERSIST,
	                 px_relay_on_read, d) < 0)
		return -EINVAL;
	d->rev = px_relay_ev(r, i);
	if (event_assign(px_relay_ev(r, i + 1), base, to, EV_WRITE, px_relay_on_write,
	                 d) < 0)
		return -EINVAL;
	d->wev = px_relay_ev(r, i + 1);
	return 0;
}

int px_relay_start(struct px_front *f, int client_fd, int host_fd, const uint8_t *head,
                   size_t head_len)
{
	struct px_relay *r = px_relay_alloc();
	if (!r) {
		close(client_fd);
		close(host_fd);
		return -ENOMEM;
	}
	r->f = f;
	r->next = f->relays;
	if (f->relays)
		f->relays->prev = r;
	f->relays = r;
	f->n_relays++;
	f->stats.active++;
	f->stats.direct++;
	r->up.from = r->down.to = client_fd;
	r->up.to = r->down.from = host_fd;
	r->chunk = f->lim.buffer_bytes && f->lim.buffer_bytes < PX_RELAY_CHUNK
	               ? f->lim.buffer_bytes
	               : PX_RELAY_CHUNK;
	int rc = evtimer_assign(px_relay_ev(r, 4), f->env.base, px_relay_on_timer, r);
	if (rc == 0)
		r->timer = px_relay_ev(r, 4);
	if (rc < 0 || px_relay_dir_init(r, &r->up, client_fd, host_fd, true, 0) < 0 ||
	    px_relay_dir_init(r, &r->down, host_fd, client_fd, false, 2) < 0) {
		px_relay_free(r, true);
		return -EINVAL;
	}
	int one = 1;
	setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	px_relay_touch(r);
	px_relay_rearm(r);
	if (!px_relay_settle(r, &r->down))
		return 0;
	if (head_len)
		px_relay_write(r, &r->up, head, head_len); /* may reset: still 0 */
	else
		px_relay_settle(r, &r->up);
	return 0;
}

void px_relay_close_all(struct px_front *f)
{
	while (f->relays)
		px_relay_free(f->relays, false);
}
