/* SOCKS5 UDP ASSOCIATE (RFC 1928 section 7).
 *
 * An association owns the client's TCP control connection and a UDP relay
 * socket bound on the control connection's local address (port 0; the
 * reply's BND tells the client where it is). Each datagram the client sends
 * there carries a header RSV RSV FRAG ATYP DST.ADDR DST.PORT; the payload
 * goes to DST and the answers come back with the same header naming their
 * source.
 *
 *  - Accepted only from the control connection's peer IP, and also from
 *    the request's DST.ADDR/DST.PORT where those are not zero. The first
 *    accepted datagram fixes the client's port; answers go there.
 *  - FRAG != 0 (fragmentation is optional in the RFC), bad headers,
 *    destinations nobody routes, and send failures are dropped and counted
 *    (dgram_drops).
 *  - A destination a mesh peer routes (env.route_ok) is sent through one
 *    ns_udp of the association (an ephemeral mesh port). Otherwise, where
 *    Direct's policy allows it, from a host UDP socket (one per family);
 *    refused datagrams are dropped and counted (denied). Answers from
 *    either are relayed to the client from whoever sent them
 *    (endpoint-independent, like a full-cone NAT).
 *  - IPv4-mapped destinations (::ffff:a.b.c.d) are taken as IPv4 before
 *    any route or policy decision, as the netstack and the host reach them.
 *  - Names: env.resolve_mesh first, then a small per-association cache,
 *    then evdns or env.lookup (asynchronous). A few datagrams wait for the answer; more
 *    are dropped. Of a name's addresses the first one routed is used, else
 *    the first Direct allows that the host has a route to.
 *  - The association ends when the control connection closes or fails,
 *    when no datagram moved either way for the idle time (5 min), or when
 *    the front-end is freed. At most MaxConnections associations per
 *    front-end.
 *
 * Lifetime: evdns requests cannot be taken back at once, so a lookup is its
 * own allocation that outlives a closed association (lk->a = NULL) and is
 * freed by its callback. */
#include "proxy/internal.h"

#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PX_UDP_CACHE       8     /* names remembered per association */
#define PX_UDP_CACHE_MS    60000 /* how long a resolved name is kept */
#define PX_UDP_NEG_MS      5000  /* how long a failed name is kept */
#define PX_UDP_QUEUE_MAX   8     /* datagrams waiting for names */
#define PX_UDP_QUEUE_BYTES 32768 /* and their payload bytes */
#define PX_UDP_LOOKUPS_MAX 4     /* names being resolved at once */
#define PX_UDP_BURST       64    /* datagrams read per socket wake-up */

struct px_udp_assoc;

struct px_udp_lookup {
	struct px_udp_assoc *a; /* NULL once the association is gone */
	struct px_udp_lookup *next;
	struct evdns_getaddrinfo_request *req;
	void *lh;     /* env.lookup's handle until its callback */
	bool in_call; /* inside evdns_getaddrinfo(): the answer is kept */
	bool answered;
	int result;
	struct evutil_addrinfo *ai;
	struct ns_addr got[8]; /* from env.lookup ([Interface] DNS) */
	size_t n_got;
	char name[256];
};

struct px_udp_queued {
	struct px_udp_queued *next;
	char name[256];
	uint16_t port;
	size_t len;
	uint8_t data[];
};

struct px_udp_name {
	char name[256]; /* "" = free slot */
	bool ok;
	struct ns_addr addr;
	uint64_t expires;
};

struct px_udp_assoc {
	struct px_front *f;
	struct px_udp_assocs *l;
	struct px_udp_assoc *next, *prev;
	int ctl, ufd;
	struct event *ctl_ev, *u_ev, *idle;
	int host[2]; /* direct sockets: [0] IPv4, [1] IPv6; -1 until used */
	struct event *host_ev[2];
	struct ns_udp *mesh;
	/* The last destination Direct's policy allowed: a stream of datagrams
	 * to it is not judged again each time (the check reads the host's
	 * interface addresses). */
	struct ns_addr direct_ok;
	bool direct_ok_set;
	/* who may send: the control peer's IP, and the request's DST */
	struct ns_addr peer_ip, req_ip;
	bool req_ip_set;
	uint16_t req_port;
	struct sockaddr_storage client; /* set by the first accepted datagram */
	socklen_t client_len;
	uint64_t last; /* ms, last datagram either way */
	struct px_udp_name names[PX_UDP_CACHE];
	struct px_udp_lookup *lookups;
	size_t n_lookups;
	struct px_udp_queued *queue;
	size_t n_queued, queued_bytes;
};

static uint8_t px_udp_buf[65536];

static unsigned px_udp_idle_ms(const struct px_udp_assoc *a)
{
	return a->l->idle_ms ? a->l->idle_ms : PX_UDP_ASSOC_IDLE_MS;
}

static void px_udp_drop(struct px_udp_assoc *a)
{
	a->f->stats.dgram_drops++;
}

/* A socket address as an ns_addr and port; IPv4-mapped IPv6 becomes IPv4. */
static bool px_udp_from_sa(const struct sockaddr_storage *ss, struct ns_addr *a,
                           uint16_t *port)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		a->family = AF_INET;
		memcpy(a->addr, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
		return true;
	}
	if (ss->ss_family != AF_INET6)
		return false;
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
	*port = ntohs(s->sin6_port);
	if (memcmp(&s->sin6_addr, mapped, 12) == 0) {
		a->family = AF_INET;
		memcpy(a->addr, (const uint8_t *)&s->sin6_addr + 12, 4);
	} else {
		a->family = AF_INET6;
		memcpy(a->addr, &s->sin6_addr, 16);
	}
	return true;
}

static socklen_t px_udp_to_sa(const struct ns_addr *a, uint16_t port,
                              struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, a->addr, 4);
		s->sin_port = htons(port);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
	s->sin6_family = AF_INET6;
	memcpy(&s->sin6_addr, a->addr, 16);
	s->sin6_port = htons(port);
	return sizeof(*s);
}

static bool px_udp_addr_eq(const struct ns_addr *x, const struct ns_addr *y)
{
	return x->family == y->family &&
	       memcmp(x->addr, y->addr, x->family == AF_INET ? 4 : 16) == 0;
}

static bool px_udp_addr_zero(const struct ns_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->addr, zero, a->family == AF_INET ? 4 : 16) == 0;
}

/* ---- teardown ---- */

static void px_udp_assoc_close(struct px_udp_assoc *a)
{
	struct px_udp_assocs *l = a->l;
	if (a->prev)
		a->prev->next = a->next;
	else
		l->head = a->next;
	if (a->next)
		a->next->prev = a->prev;
	l->n--;
	if (a->f->stats.active)
		a->f->stats.active--;
	struct event *evs[] = {a->ctl_ev, a->u_ev, a->idle, a->host_ev[0], a->host_ev[1]};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	int fds[] = {a->ctl, a->ufd, a->host[0], a->host[1]};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	ns_udp_close(a->mesh);
	while (a->lookups) {
		struct px_udp_lookup *lk = a->lookups;
		a->lookups = lk->next;
		lk->a = NULL;
		lk->next = NULL;
		if (lk->lh) { /* [Interface] DNS: taken back at once */
			a->f->env.lookup_cancel(a->f->env.lookup_ctx, lk->lh);
			free(lk);
			continue;
		}
		/* The callback comes later (evdns: EVUTIL_EAI_CANCEL) and
		 * frees lk. */
		if (lk->req)
			evdns_getaddrinfo_cancel(lk->req);
	}
	while (a->queue) {
		struct px_udp_queued *q = a->queue;
		a->queue = q->next;
		ns_mem_uncharge(sizeof(*q) + q->len);
		free(q);
	}
	free(a);
}

void px_udp_assoc_close_all(struct px_udp_assocs *l)
{
	while (l->head)
		px_udp_assoc_close(l->head);
}

/* ---- towards the client ---- */

/* Wraps data from src:sport in a header and sends it to the client. */
static void px_udp_to_client(struct px_udp_assoc *a, const struct ns_addr *src,
                             uint16_t sport, const uint8_t *data, size_t len)
{
	if (!a->client_len) {
		px_udp_drop(a); /* the client has not sent anything yet */
		return;
	}
	uint8_t hdr[SOCKS5_UDP_HDR_IPV6];
	struct iovec iov[2] = {{hdr, px_socks5_udp_header(hdr, src, sport)},
	                       {(void *)data, len}};
	struct msghdr m = {.msg_name = &a->client,
	                   .msg_namelen = a->client_len,
	                   .msg_iov = iov,
	                   .msg_iovlen = 2};
	if (sendmsg(a->ufd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		px_udp_drop(a);
		return;
	}
	a->last = mono_now_ms();
	a->f->stats.dgrams_down++;
	a->f->stats.bytes_down += len;
}

static void px_udp_on_mesh(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                           uint16_t sport, const struct ns_addr *dst, const uint8_t *data,
                           size_t len)
{
	px_udp_to_client(ctx, src, sport, data, len);
}

static void px_udp_on_host(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_assoc *a = arg;
	for (int i = 0; i < PX_UDP_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(fd, px_udp_buf, sizeof(px_udp_buf), MSG_DONTWAIT,
		                     (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return; /* EAGAIN, or an ICMP error queued on the socket */
		struct ns_addr src;
		uint16_t sport;
		if (px_udp_from_sa(&ss, &src, &sport))
			px_udp_to_client(a, &src, sport, px_udp_buf, (size_t)n);
	}
}

/* ---- towards the destination ---- */

static bool px_udp_routed(const struct px_front *f, const struct ns_addr *a)
{
	return !f->env.route_ok || f->env.route_ok(f->env.route_ctx, a);
}

static int px_udp_host_socket(struct px_udp_assoc *a, int fam)
{
	int i = fam == AF_INET6;
	if (a->host[i] >= 0)
		return a->host[i];
	int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (fam == AF_INET6) {
		int one = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	struct event *ev =
	    event_new(a->f->env.base, fd, EV_READ | EV_PERSIST, px_udp_on_host, a);
	if (!ev || event_add(ev, NULL) < 0) {
		if (ev)
			event_free(ev);
		close(fd);
		return -1;
	}
	a->host[i] = fd;
	a->host_ev[i] = ev;
	return fd;
}

/* Sends one payload to dst:port: through the mesh if a peer routes dst,
 * else from the host if Direct allows, else drops it. */
static void px_udp_send(struct px_udp_assoc *a, const struct ns_addr *dst, uint16_t port,
                        const uint8_t *data, size_t len)
{
	int r;
	if (px_udp_routed(a->f, dst)) {
		const struct px_env *env = &a->f->env;
		if (env->reach_ok && !env->reach_ok(env->reach_ctx, PX_REACH_UDP, dst, port)) {
			/* the peer would drop it: count it here, where it shows */
			if (a->f->stats.err_policy++ == 0)
				log_info("socks5 udp: a datagram dropped: the mesh policy does "
				         "not allow this node to reach that peer's UDP port "
				         "(counted in status as policy)");
			px_udp_drop(a);
			return;
		}
		if (!a->mesh) {
			int err = 0;
			a->mesh = ns_udp_open(0, px_udp_on_mesh, a, &err);
			if (!a->mesh) {
				log_debug("socks5 udp: mesh socket: %s", strerror(-err));
				px_udp_drop(a);
				return;
			}
		}
		r = ns_udp_send(a->mesh, dst, port, data, len);
	} else if ((a->direct_ok_set && px_udp_addr_eq(dst, &a->direct_ok)) ||
	           !px_direct_refusal(a->f->direct, dst, &a->f->env)) {
		a->direct_ok = *dst;
		a->direct_ok_set = true;
		int fd = px_udp_host_socket(a, dst->family);
		struct sockaddr_storage ss;
		socklen_t sl = px_udp_to_sa(dst, port, &ss);
		r = fd >= 0 && sendto(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
		                      (struct sockaddr *)&ss, sl) >= 0
		        ? 0
		        : -1;
	} else {
		if (a->f->direct == CFG_DIRECT_PUBLIC || a->f->direct == CFG_DIRECT_ALL)
			a->f->stats.err_denied++; /* Direct may not send there */
		r = -ENETUNREACH;
	}
	if (r < 0) {
		px_udp_drop(a);
		return;
	}
	a->last = mono_now_ms();
	a->f->stats.dgrams_up++;
	a->f->stats.bytes_up += len;
}

/* True if the host has a route to a (connecting a UDP socket sends
 * nothing): an IPv6 answer on a host without IPv6, or the other way round,
 * is not worth picking. */
static bool px_udp_reachable(const struct ns_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = px_udp_to_sa(a, 9, &ss);
	int fd = socket(a->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&ss, sl) == 0;
	close(fd);
	return ok;
}

/* Of n addresses, the first a mesh peer routes, else (from_dns: not a
 * mesh name) the first Direct may send to from the host and the host has a
 * route to (failing that, the first Direct allows). The same rules as
 * CONNECT's: a name from the host's DNS never leads into the mesh's own
 * ranges ([Interface] DNS, the tunnel's resolver, may), and
 * every address is judged by Direct's policy; UDP does not race (there is
 * no handshake to wait for), it skips what cannot work. */
static bool px_udp_pick(const struct px_udp_assoc *a, const struct ns_addr *in, size_t n,
                        struct ns_addr *out, bool from_dns)
{
	bool host_dns = from_dns && !a->f->env.lookup;
	for (size_t i = 0; i < n; i++) {
		struct ns_addr x = in[i];
		px_addr_unmap(&x);
		if (px_udp_routed(a->f, &x) &&
		    !(host_dns && px_in_own_prefixes(&x, &a->f->env))) {
			*out = x;
			return true;
		}
	}
	bool found = false;
	for (size_t i = 0; from_dns && i < n; i++) {
		struct ns_addr x = in[i];
		px_addr_unmap(&x);
		if (px_direct_refusal(a->f->direct, &x, &a->f->env))
			continue;
		if (px_udp_reachable(&x)) {
			*out = x;
			return true;
		}
		if (!found)
			*out = x;
		found = true;
	}
	return found;
}

static struct px_udp_name *px_udp_cache_find(struct px_udp_assoc *a, const char *name)
{
	uint64_t now = mono_now_ms();
	for (size_t i = 0; i < PX_UDP_CACHE; i++) {
		struct px_udp_name *e = &a->names[i];
		if (e->name[0] && strcasecmp(e->name, name) == 0) {
			if (e->expires > now)
				return e;
			e->name[0] = 0;
		}
	}
	return NULL;
}

static void px_udp_cache_put(struct px_udp_assoc *a, const char *name, bool ok,
                             const struct ns_addr *addr)
{
	struct px_udp_name *e = &a->names[0];
	for (size_t i = 0; i < PX_UDP_CACHE; i++) {
		if (!a->names[i].name[0]) {
			e = &a->names[i];
			break;
		}
		if (a->names[i].expires < e->expires)
			e = &a->names[i];
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->ok = ok;
	if (ok)
		e->addr = *addr;
	e->expires = mono_now_ms() + (ok ? PX_UDP_CACHE_MS : PX_UDP_NEG_MS);
}

/* A lookup finished: remember the answer and send what waited for it. */
static void px_udp_resolved(struct px_udp_assoc *a, struct px_udp_lookup *lk)
{
	struct ns_addr found[8];
	size_t n = 0;
	for (struct evutil_addrinfo *i = lk->result == 0 ? lk->ai : NULL; i && n < 8;
	     i = i->ai_next) {
		struct ns_addr x;
		uint16_t port;
		if (i->ai_addrlen <= sizeof(struct sockaddr_storage) &&
		    px_udp_from_sa((const struct sockaddr_storage *)i->ai_addr, &x,
		                   &port))
			found[n++] = x;
	}
	for (size_t i = 0; lk->result == 0 && i < lk->n_got && n < 8; i++)
		found[n++] = lk->got[i];
	struct ns_addr pick = {0};
	bool ok = px_udp_pick(a, found, n, &pick, true);
	if (!ok)
		log_debug("socks5 udp: %s: %s", lk->name,
		          n ? "no mesh route" : "did not resolve");
	px_udp_cache_put(a, lk->name, ok, &pick);
	struct px_udp_queued **pp = &a->queue;
	while (*pp) {
		struct px_udp_queued *q = *pp;
		if (strcasecmp(q->name, lk->name) != 0) {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		a->n_queued--;
		a->queued_bytes -= q->len;
		if (ok)
			px_udp_send(a, &pick, q->port, q->data, q->len);
		else
			px_udp_drop(a);
		ns_mem_uncharge(sizeof(*q) + q->len);
		free(q);
	}
}

static void px_udp_lookup_done(struct px_udp_lookup *lk)
{
	struct px_udp_assoc *a = lk->a;
	if (a) {
		struct px_udp_lookup **pp = &a->lookups;
		while (*pp && *pp != lk)
			pp = &(*pp)->next;
		if (*pp) {
			*pp = lk->next;
			a->n_lookups--;
		}
		px_udp_resolved(a, lk);
	}
	if (lk->ai)
		evutil_freeaddrinfo(lk->ai);
	free(lk);
}

static void px_udp_on_dns(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct px_udp_lookup *lk = arg;
	lk->req = NULL;
	lk->answered = true;
	lk->result = result;
	lk->ai = ai;
	if (!lk->in_call)
		px_udp_lookup_done(lk);
}

static void px_udp_on_lookup(void *arg, int err, const struct ns_addr *a, size_t n)
{
	struct px_udp_lookup *lk = arg;
	lk->lh = NULL;
	lk->answered = true;
	lk->result = err;
	if (err == 0)
		lk->n_got = px_addrs_take(a, n, lk->got, 8);
	px_udp_lookup_done(lk);
}

/* Queues a datagram for a name and starts its lookup unless one runs. */
static void px_udp_queue(struct px_udp_assoc *a, const struct px_target *t,
                         const uint8_t *data, size_t len)
{
	struct px_udp_lookup *lk = a->lookups;
	while (lk && strcasecmp(lk->name, t->host) != 0)
		lk = lk->next;
	if (a->n_queued >= PX_UDP_QUEUE_MAX || (!a->f->env.dns && !a->f->env.lookup) ||
	    len > PX_UDP_QUEUE_BYTES - a->queued_bytes ||
	    (!lk && a->n_lookups >= PX_UDP_LOOKUPS_MAX)) {
		px_udp_drop(a);
		return;
	}
	struct px_udp_queued *q = malloc(sizeof(*q) + len);
	if (!q) {
		px_udp_drop(a);
		return;
	}
	ns_mem_charge(sizeof(*q) + len); /* the node's memory budget */
	snprintf(q->name, sizeof(q->name), "%s", t->host);
	q->port = t->port;
	q->next = NULL;
	q->len = len;
	memcpy(q->data, data, len);
	struct px_udp_queued **tail = &a->queue; /* in arrival order */
	while (*tail)
		tail = &(*tail)->next;
	*tail = q;
	a->n_queued++;
	a->queued_bytes += len;
	if (lk)
		return;
	lk = calloc(1, sizeof(*lk));
	if (!lk) {
		struct px_udp_lookup tmp = {.result = -1};
		snprintf(tmp.name, sizeof(tmp.name), "%s", t->host);
		px_udp_resolved(a, &tmp); /* drops what waited */
		return;
	}
	lk->a = a;
	snprintf(lk->name, sizeof(lk->name), "%s", t->host);
	lk->next = a->lookups;
	a->lookups = lk;
	a->n_lookups++;
	const struct px_env *env = &a->f->env;
	if (env->lookup) { /* [Interface] DNS: through the mesh */
		if (env->lookup(env->lookup_ctx, lk->name, px_udp_on_lookup, lk, &lk->lh) !=
		    0) {
			lk->lh = NULL;
			lk->answered = true;
			lk->result = -1;
			px_udp_lookup_done(lk);
		}
		return;
	}
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_protocol = IPPROTO_UDP;
	lk->in_call = true;
	lk->req =
	    evdns_getaddrinfo(a->f->env.dns, lk->name, NULL, &hints, px_udp_on_dns, lk);
	lk->in_call = false;
	if (!lk->answered && !lk->req) {
		lk->answered = true; /* failed without a callback */
		lk->result = -1;
	}
	if (lk->answered)
		px_udp_lookup_done(lk); /* answered from the hosts file, or failed */
}

/* One datagram from the client, header and all. */
static void px_udp_from_client(struct px_udp_assoc *a, const uint8_t *p, size_t n)
{
	struct px_target t;
	uint8_t frag = 0;
	size_t hl = 0;
	if (!px_socks5_udp_parse(p, n, &frag, &t, &hl) || frag != 0) {
		px_udp_drop(a);
		return;
	}
	const uint8_t *data = p + hl;
	size_t len = n - hl;
	if (!t.is_name) {
		px_addr_unmap(&t.addr); /* ::ffff:<mesh v4> goes through the mesh */
		px_udp_send(a, &t.addr, t.port, data, len);
		return;
	}
	const struct px_env *env = &a->f->env;
	struct ns_addr mesh[8], pick;
	size_t nm =
	    env->resolve_mesh ? env->resolve_mesh(env->resolve_ctx, t.host, mesh, 8) : 0;
	if (nm > 8)
		nm = 8;
	if (nm) {
		if (px_udp_pick(a, mesh, nm, &pick, false))
			px_udp_send(a, &pick, t.port, data, len);
		else
			px_udp_drop(a);
		return;
	}
	struct px_udp_name *e = px_udp_cache_find(a, t.host);
	if (e) {
		if (e->ok)
			px_udp_send(a, &e->addr, t.port, data, len);
		else
			px_udp_drop(a);
		return;
	}
	px_udp_queue(a, &t, data, len);
}

/* True if a datagram from src:port may use the association. */
static bool px_udp_client_ok(const struct px_udp_assoc *a, const struct ns_addr *src,
                             uint16_t port)
{
	if (!px_udp_addr_eq(src, &a->peer_ip))
		return false;
	if (a->req_ip_set && !px_udp_addr_eq(src, &a->req_ip))
		return false;
	if (a->req_port && port != a->req_port)
		return false;
	if (a->client_len) {
		struct ns_addr c;
		uint16_t cport;
		px_udp_from_sa(&a->client, &c, &cport);
		if (port != cport)
			return false;
	}
	return true;
}

static void px_udp_on_client(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_assoc *a = arg;
	for (int i = 0; i < PX_UDP_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(fd, px_udp_buf, sizeof(px_udp_buf), MSG_DONTWAIT,
		                     (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return;
		struct ns_addr src;
		uint16_t sport;
		if (!px_udp_from_sa(&ss, &src, &sport) ||
		    !px_udp_client_ok(a, &src, sport)) {
			px_udp_drop(a);
			continue;
		}
		if (!a->client_len) {
			a->client = ss;
			a->client_len = sl;
		}
		px_udp_from_client(a, px_udp_buf, (size_t)n);
	}
}

/* ---- control connection and idle timer ---- */

static void px_udp_on_ctl(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_assoc *a = arg;
	uint8_t junk[512];
	ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
	if (n > 0 ||
	    (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
		return; /* the RFC gives the client nothing to say here */
	log_debug("socks5 udp: control connection closed");
	px_udp_assoc_close(a);
}

static void px_udp_arm(struct px_udp_assoc *a, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(a->idle, &tv);
}

static void px_udp_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_assoc *a = arg;
	uint64_t now = mono_now_ms(), idle = px_udp_idle_ms(a);
	if (now - a->last < idle) {
		px_udp_arm(a, idle - (now - a->last));
		return;
	}
	log_debug("socks5 udp: idle for %u ms, closing", (unsigned)idle);
	a->f->stats.err_idle++;
	px_udp_assoc_close(a);
}

/* ---- setup ---- */

/* Sends pre and a reply on ctl (a new socket: it fits the send buffer). */
static bool px_udp_reply(int ctl, const uint8_t *pre, size_t pre_len, uint8_t rep,
                         const struct sockaddr_storage *bnd)
{
	uint8_t out[512];
	if (pre_len > sizeof(out) - SOCKS5_REPLY_MAX)
		pre_len = 0;
	if (pre_len)
		memcpy(out, pre, pre_len);
	size_t n = pre_len + px_socks5_reply(out + pre_len, rep, bnd);
	return send(ctl, out, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

/* Binds the relay socket next to the control connection's local address. */
static int px_udp_bind_relay(struct px_udp_assoc *a, struct sockaddr_storage *bnd)
{
	struct sockaddr_storage local;
	socklen_t sl = sizeof(local);
	struct ns_addr la;
	uint16_t lport;
	if (getsockname(a->ctl, (struct sockaddr *)&local, &sl) < 0 ||
	    !px_udp_from_sa(&local, &la, &lport))
		return -1;
	sl = px_udp_to_sa(&la, 0, &local);
	int fd = socket(la.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	a->ufd = fd;
	socklen_t bl = sizeof(*bnd);
	if (bind(fd, (struct sockaddr *)&local, sl) < 0 ||
	    getsockname(fd, (struct sockaddr *)bnd, &bl) < 0)
		return -1;
	return 0;
}

static int px_udp_setup(struct px_udp_assoc *a, const struct px_target *req,
                        struct sockaddr_storage *bnd)
{
	struct sockaddr_storage peer;
	socklen_t sl = sizeof(peer);
	uint16_t pport;
	if (getpeername(a->ctl, (struct sockaddr *)&peer, &sl) < 0 ||
	    !px_udp_from_sa(&peer, &a->peer_ip, &pport))
		return -1;
	if (req && !req->is_name && req->addr.family && !px_udp_addr_zero(&req->addr)) {
		a->req_ip = req->addr;
		a->req_ip_set = true;
	}
	a->req_port = req ? req->port : 0;
	if (px_udp_bind_relay(a, bnd) < 0)
		return -1;
	struct event_base *base = a->f->env.base;
	a->ctl_ev = event_new(base, a->ctl, EV_READ | EV_PERSIST, px_udp_on_ctl, a);
	a->u_ev = event_new(base, a->ufd, EV_READ | EV_PERSIST, px_udp_on_client, a);
	a->idle = evtimer_new(base, px_udp_on_idle, a);
	if (!a->ctl_ev || !a->u_ev || !a->idle || event_add(a->ctl_ev, NULL) < 0 ||
	    event_add(a->u_ev, NULL) < 0)
		return -1;
	a->last = mono_now_ms();
	px_udp_arm(a, px_udp_idle_ms(a));
	return 0;
}

void px_udp_assoc_start(struct px_front *f, struct px_udp_assocs *l, int ctl,
                        const struct px_target *req, const uint8_t *pre, size_t pre_len)
{
	size_t max =
	    f->lim.max_connections ? f->lim.max_connections : CFG_DEFAULT_MAX_CONNECTIONS;
	if (l->n >= max) {
		f->stats.err_limit++;
		px_udp_reply(ctl, pre, pre_len, SOCKS5_REP_GENERAL, NULL);
		close(ctl);
		return;
	}
	struct px_udp_assoc *a = calloc(1, sizeof(*a));
	if (!a) {
		f->stats.err_other++;
		px_udp_reply(ctl, pre, pre_len, SOCKS5_REP_GENERAL, NULL);
		close(ctl);
		return;
	}
	a->f = f;
	a->l = l;
	a->ctl = ctl;
	a->ufd = a->host[0] = a->host[1] = -1;
	/* Linked first so that close() can undo a half-done setup. */
	a->next = l->head;
	if (l->head)
		l->head->prev = a;
	l->head = a;
	l->n++;
	f->stats.active++;
	struct sockaddr_storage bnd;
	if (px_udp_setup(a, req, &bnd) < 0) {
		log_debug("socks5 udp: relay socket: %s", strerror(errno));
		f->stats.err_other++;
		px_udp_reply(ctl, pre, pre_len, SOCKS5_REP_GENERAL, NULL);
		px_udp_assoc_close(a);
		return;
	}
	if (!px_udp_reply(ctl, pre, pre_len, SOCKS5_REP_SUCCEEDED, &bnd)) {
		f->stats.err_client_gone++;
		px_udp_assoc_close(a);
		return;
	}
	f->stats.established++;
	char b[80];
	sockaddr_format(&bnd, b, sizeof(b));
	log_debug("socks5: UDP ASSOCIATE relay %s", b);
}
