/* Connection attempts over every address of a destination, as RFC 8305
 * ("Happy Eyeballs v2") describes them, for a session's dial: through the
 * netstack (addresses a mesh peer routes) or from the host (Direct).
 *
 * The addresses are put in order first: the families alternate, each
 * keeping the order the resolver gave. From the host IPv6 goes first
 * (RFC 6724 prefers it, and a host without it fails that attempt at
 * once); through the mesh the first address's family goes first (both
 * families ride the same tunnel, and the services behind a peer keep
 * seeing the source address they saw before: names list IPv4 first).
 * The first attempt
 * starts at once; each next one starts PX_RACE_DELAY_MS after the one
 * before, or at once when an attempt fails. The first to connect wins and
 * the others are dropped. When all have failed the answer is the most
 * meaningful failure: refused, then unreachable, then anything else, then
 * timed out. There is no deadline here: the session's connect timer
 * bounds the whole race and asks px_race_cancel() what to answer.
 *
 * Host attempts are sockets and are closed when dropped; netstack dials
 * are taken back with ns_tcp_dial_cancel(). At most PX_RACE_HOST_MAX
 * host attempts and PX_RACE_MESH_MAX netstack dials are in flight, and
 * when another must start the oldest is given up (as timed out). A race
 * that is over has nothing left in flight: it is freed at once, so a
 * closed session never leaves dials holding netstack connections.
 *
 * A race and its events are one slab object, like sessions and relays. */
#include "core/util/slab.h"
#include "proxy/internal.h"

#include "core/util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct px_race_host {
	int fd; /* -1: free slot */
	struct event *ev;
	unsigned seq; /* start order, to find the oldest */
	struct ns_addr addr;
};

struct px_race_dial {
	struct px_race *r; /* the dial's callback context is its slot */
	struct ns_tcp *c;  /* NULL: free slot */
	unsigned seq;
	struct ns_addr addr;
};

struct px_race {
	px_race_done_fn fn;
	void *ctx;
	const char *kind; /* for the log */
	struct ns_addr a[PX_RACE_MAX];
	size_t n, next;
	uint16_t port;
	bool mesh;
	bool self_ok;      /* unit tests: a host connection may end on this host */
	bool over;         /* answered or cancelled: fn is never called again */
	bool starting;     /* inside px_race_start(): answers wait for the timer */
	bool answer_due;   /* the timer answers (everything failed at once) */
	unsigned seq;
	enum px_err err; /* the most meaningful failure so far (PX_OK: none) */
	struct event *timer;
	struct px_race_host host[PX_RACE_HOST_MAX];
	struct px_race_dial dials[PX_RACE_MESH_MAX];
};

/* ---- memory ---- */

#define PX_RACE_EVENTS (1 + PX_RACE_HOST_MAX)

static struct slab px_race_slab;
static size_t px_race_ev_off, px_race_ev_size;

static size_t px_race_round(size_t n)
{
	return (n + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
}

static struct px_race *px_race_alloc(void)
{
	if (!px_race_ev_size) {
		px_race_ev_size = px_race_round(event_get_struct_event_size());
		px_race_ev_off = px_race_round(sizeof(struct px_race));
		if (slab_init(&px_race_slab,
		              px_race_ev_off + PX_RACE_EVENTS * px_race_ev_size, 0) < 0) {
			px_race_ev_size = 0;
			return NULL;
		}
	}
	struct px_race *r = slab_alloc(&px_race_slab);
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < PX_RACE_EVENTS; i++) {
		struct event *ev = (struct event *)((uint8_t *)r + px_race_ev_off +
		                                    (size_t)i * px_race_ev_size);
		if (i == 0)
			r->timer = ev;
		else
			r->host[i - 1].ev = ev;
	}
	for (int i = 0; i < PX_RACE_HOST_MAX; i++)
		r->host[i].fd = -1;
	for (int i = 0; i < PX_RACE_MESH_MAX; i++)
		r->dials[i].r = r;
	return r;
}

/* ---- order and ranking ---- */

size_t px_race_order(struct ns_addr *a, size_t n, bool v6_first)
{
	struct ns_addr v6[PX_RACE_MAX], v4[PX_RACE_MAX];
	size_t n6 = 0, n4 = 0, k = 0;
	if (n > PX_RACE_MAX)
		n = PX_RACE_MAX;
	for (size_t i = 0; i < n; i++) {
		if (a[i].family == AF_INET6)
			v6[n6++] = a[i];
		else if (a[i].family == AF_INET)
			v4[n4++] = a[i];
	}
	if (!v6_first && n > 0 && a[0].family == AF_INET) {
		for (size_t i = 0; i < n6 || i < n4; i++) {
			if (i < n4)
				a[k++] = v4[i];
			if (i < n6)
				a[k++] = v6[i];
		}
		return k;
	}
	for (size_t i = 0; i < n6 || i < n4; i++) {
		if (i < n6)
			a[k++] = v6[i];
		if (i < n4)
			a[k++] = v4[i];
	}
	return k;
}

size_t px_addrs_take(const struct ns_addr *in, size_t n, struct ns_addr *out, size_t max)
{
	if (n <= max) {
		memcpy(out, in, n * sizeof(*in));
		return n;
	}
	/* Too many: alternate the families from the first one, so a long list
	 * of one cannot push out every address of the other. */
	size_t k = 0, i4 = 0, i6 = 0;
	int fam = in[0].family;
	while (k < max && (i4 < n || i6 < n)) {
		size_t *i = fam == AF_INET ? &i4 : &i6;
		while (*i < n && in[*i].family != fam)
			(*i)++;
		if (*i < n)
			out[k++] = in[(*i)++];
		fam = fam == AF_INET ? AF_INET6 : AF_INET;
	}
	return k;
}

void px_addr_unmap(struct ns_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (a->family != AF_INET6 || memcmp(a->addr, mapped, 12) != 0)
		return;
	uint8_t v4[4];
	memcpy(v4, a->addr + 12, 4);
	memset(a->addr, 0, sizeof(a->addr));
	memcpy(a->addr, v4, 4);
	a->family = AF_INET;
}

/* How much a failure tells the client: refused (something answered) over
 * unreachable over other errors over silence. */
static int px_race_rank(enum px_err e)
{
	switch (e) {
	case PX_E_REFUSED:
		return 6;
	case PX_E_UNREACHABLE:
		return 5;
	case PX_E_NO_ROUTE:
		return 4;
	case PX_E_GENERAL:
		return 3;
	case PX_E_TIMEOUT:
		return 2;
	case PX_E_DENIED:
	case PX_E_POLICY:
		return 1;
	default:
		return 0;
	}
}

enum px_err px_race_worst(enum px_err have, enum px_err e)
{
	return px_race_rank(e) > px_race_rank(have) ? e : have;
}

/* ---- the race ---- */

static void px_race_log_fail(const struct px_race *r, const struct ns_addr *a,
                             enum px_err e)
{
	char t[INET6_ADDRSTRLEN];
	if (!inet_ntop(a->family, a->addr, t, sizeof(t)))
		snprintf(t, sizeof(t), "?");
	log_debug("%s: %s port %u: %s%s", r->kind, t, r->port, px_err_str(e),
	          r->next < r->n ? ", trying the next address" : "");
}

static void px_race_close_hosts(struct px_race *r)
{
	for (int i = 0; i < PX_RACE_HOST_MAX; i++) {
		struct px_race_host *h = &r->host[i];
		if (h->fd < 0)
			continue;
		event_del(h->ev);
		close(h->fd);
		h->fd = -1;
	}
}

static void px_race_cancel_dials(struct px_race *r)
{
	for (int i = 0; i < PX_RACE_MESH_MAX; i++) {
		ns_tcp_dial_cancel(r->dials[i].c);
		r->dials[i].c = NULL;
	}
}

static unsigned px_race_in_flight(const struct px_race *r)
{
	unsigned k = 0;
	for (int i = 0; i < PX_RACE_HOST_MAX; i++)
		k += r->host[i].fd >= 0;
	for (int i = 0; i < PX_RACE_MESH_MAX; i++)
		k += r->dials[i].c != NULL;
	return k;
}

/* Ends the race (no more attempts, no more answers), takes back what is
 * in flight and frees it. */
static void px_race_end(struct px_race *r)
{
	r->over = true;
	px_race_close_hosts(r);
	px_race_cancel_dials(r);
	evtimer_del(r->timer);
	slab_free(&px_race_slab, r);
}

/* Answers the session once. c or fd is the winner (PX_OK), else neither.
 * r is gone afterwards (or left to its outstanding dials). */
static void px_race_answer(struct px_race *r, enum px_err e, struct ns_tcp *c, int fd)
{
	px_race_done_fn fn = r->fn;
	void *ctx = r->ctx;
	px_race_end(r);
	fn(ctx, e, c, fd);
}

static void px_race_on_host(evutil_socket_t fd, short what, void *arg);
static void px_race_on_mesh(void *ctx, struct ns_tcp *c, int err);

/* A host socket connected to a..port ended on this host itself (an address
 * that became ours after the policy looked)? */
static bool px_race_on_self(int fd)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
	    me.ss_family != peer.ss_family)
		return false;
	if (me.ss_family == AF_INET)
		return ((struct sockaddr_in *)&me)->sin_addr.s_addr ==
		       ((struct sockaddr_in *)&peer)->sin_addr.s_addr;
	if (me.ss_family == AF_INET6)
		return memcmp(&((struct sockaddr_in6 *)&me)->sin6_addr,
		              &((struct sockaddr_in6 *)&peer)->sin6_addr, 16) == 0;
	return false;
}

/* A free host slot; when all are busy the oldest attempt is given up. */
static struct px_race_host *px_race_host_slot(struct px_race *r)
{
	struct px_race_host *old = NULL;
	for (int i = 0; i < PX_RACE_HOST_MAX; i++) {
		if (r->host[i].fd < 0)
			return &r->host[i];
		if (!old || r->host[i].seq < old->seq)
			old = &r->host[i];
	}
	event_del(old->ev);
	close(old->fd);
	old->fd = -1;
	r->err = px_race_worst(r->err, PX_E_TIMEOUT);
	return old;
}

/* A free dial slot; when all are busy the oldest dial is given up. */
static struct px_race_dial *px_race_mesh_slot(struct px_race *r)
{
	struct px_race_dial *old = NULL;
	for (int i = 0; i < PX_RACE_MESH_MAX; i++) {
		if (!r->dials[i].c)
			return &r->dials[i];
		if (!old || r->dials[i].seq < old->seq)
			old = &r->dials[i];
	}
	ns_tcp_dial_cancel(old->c);
	old->c = NULL;
	r->err = px_race_worst(r->err, PX_E_TIMEOUT);
	return old;
}

/* Starts an attempt at r->a[r->next]; false if it failed at once (the
 * failure is recorded). */
static bool px_race_try(struct px_race *r)
{
	const struct ns_addr *a = &r->a[r->next++];
	enum px_err e;
	if (r->mesh) {
		struct px_race_dial *d = px_race_mesh_slot(r);
		int rc = ns_tcp_dial_ex(a, r->port, px_race_on_mesh, d, &d->c);
		if (rc == 0) {
			d->seq = r->seq++;
			d->addr = *a;
			return true;
		}
		d->c = NULL;
		e = px_err_from_errno(rc);
	} else {
		int fd = px_direct_connect(a, r->port);
		if (fd >= 0) {
			struct px_race_host *h = px_race_host_slot(r);
			event_assign(h->ev, event_get_base(r->timer), fd, EV_WRITE,
			             px_race_on_host, r);
			if (event_add(h->ev, NULL) == 0) {
				h->fd = fd;
				h->seq = r->seq++;
				h->addr = *a;
				return true;
			}
			close(fd);
			e = PX_E_GENERAL;
		} else {
			e = px_err_from_host_errno(-fd);
		}
	}
	r->err = px_race_worst(r->err, e);
	px_race_log_fail(r, a, e);
	return false;
}

/* At the start, after a failure or when the timer fires: start the next
 * attempt (and the ones after it that fail at once), arm the timer for the
 * one after; answer when nothing is left. */
static void px_race_step(struct px_race *r)
{
	while (r->next < r->n && !px_race_try(r))
		;
	if (r->next < r->n) {
		struct timeval tv = {0, PX_RACE_DELAY_MS * 1000};
		evtimer_add(r->timer, &tv);
		return;
	}
	if (px_race_in_flight(r) > 0) {
		evtimer_del(r->timer);
		return;
	}
	enum px_err e = r->err != PX_OK ? r->err : PX_E_GENERAL;
	if (r->starting) {
		/* Never answer from inside px_race_start(). */
		r->err = e;
		r->answer_due = true;
		struct timeval tv = {0, 0};
		evtimer_add(r->timer, &tv);
		return;
	}
	px_race_answer(r, e, NULL, -1);
}

static void px_race_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct px_race *r = arg;
	if (r->answer_due) {
		px_race_answer(r, r->err, NULL, -1);
		return;
	}
	px_race_step(r);
}

static void px_race_on_host(evutil_socket_t fd, short what, void *arg)
{
	struct px_race *r = arg;
	struct px_race_host *h = NULL;
	for (int i = 0; i < PX_RACE_HOST_MAX && !h; i++)
		if (r->host[i].fd == (int)fd)
			h = &r->host[i];
	if (!h)
		return; /* cannot happen: a closed slot's event is deleted */
	int e = 0;
	socklen_t el = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
		e = errno;
	enum px_err pe = px_err_from_host_errno(e);
	if (e == 0 && !r->self_ok && px_race_on_self(fd)) {
		/* A backstop for the policy: a connection that ended on this
		 * host itself (an address that became ours meanwhile). */
		log_info("%s: refused: the connection ended on this host", r->kind);
		pe = PX_E_DENIED;
	}
	if (pe == PX_OK) {
		h->fd = -1; /* the session's now */
		px_race_answer(r, PX_OK, NULL, (int)fd);
		return;
	}
	close(h->fd);
	h->fd = -1;
	r->err = px_race_worst(r->err, pe);
	px_race_log_fail(r, &h->addr, pe);
	px_race_step(r);
}

static void px_race_on_mesh(void *ctx, struct ns_tcp *c, int err)
{
	struct px_race_dial *d = ctx;
	struct px_race *r = d->r;
	d->c = NULL; /* c, when connected, is the session's or aborted below */
	if (r->over) { /* cannot happen: px_race_end() cancels every dial */
		if (c)
			ns_tcp_abort(c);
		return;
	}
	if (!err && c) {
		px_race_answer(r, PX_OK, c, -1);
		return;
	}
	enum px_err e = err ? px_err_from_errno(err) : PX_E_GENERAL;
	r->err = px_race_worst(r->err, e);
	px_race_log_fail(r, &d->addr, e);
	px_race_step(r);
}

struct px_race *px_race_start(struct event_base *base, const char *kind,
                              const struct ns_addr *a, size_t n, uint16_t port, bool mesh,
                              bool self_ok, px_race_done_fn fn, void *ctx)
{
	struct px_race *r = px_race_alloc();
	if (!r)
		return NULL;
	evtimer_assign(r->timer, base, px_race_on_timer, r);
	r->fn = fn;
	r->ctx = ctx;
	r->kind = kind;
	r->port = port;
	r->mesh = mesh;
	r->self_ok = self_ok;
	r->n = n > PX_RACE_MAX ? PX_RACE_MAX : n;
	memcpy(r->a, a, r->n * sizeof(*a));
	r->n = px_race_order(r->a, r->n, !mesh);
	r->starting = true;
	px_race_step(r);
	r->starting = false;
	return r;
}

enum px_err px_race_cancel(struct px_race *r)
{
	enum px_err e = r->answer_due ? r->err : px_race_worst(r->err, PX_E_TIMEOUT);
	px_race_end(r);
	return e;
}
