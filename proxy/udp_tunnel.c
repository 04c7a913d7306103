/* UDP port forwards.
 *
 * [UDPClientTunnel]: a local UDP socket. Each local sender (address and
 * port) gets a flow with its own ns_udp on an ephemeral mesh port; its
 * datagrams go from there to the target, and datagrams from the target
 * (address and port, as a connected socket would filter) to that mesh port
 * go back to the sender from the local socket. The target is fixed at
 * startup: a mesh name (env.resolve_mesh), an address, or a host name
 * resolved once with getaddrinfo().
 *
 * [UDPServerTunnel]: ns_udp_open(ListenPort). Each mesh sender gets a flow
 * with a host UDP socket connect()ed to the local target; the target's
 * answers go back to that sender from ListenPort.
 *
 * Flows end after IdleTimeout without a datagram either way. At MaxFlows a
 * new sender evicts the least recently used flow (counted in err_limit):
 * UDP clients such as resolvers use a fresh source port per query, so
 * refusing newcomers would stall them while old flows wait to expire.
 * Datagrams that cannot be delivered are dropped and counted
 * (dgram_drops). Stats: accepted = flows created, active = flows now,
 * up = towards the target. */
#include "proxy/internal.h"
#include "proxy/udp_flow.h"

#include "config/config.h"
#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PX_UDP_DEFAULT_FLOWS 1024
#define PX_UDP_TUNNEL_BURST  64 /* datagrams read per socket wake-up */

struct px_udp_tunnel;

struct px_uflow {
	struct px_flow k; /* first: the sender */
	struct px_udp_tunnel *t;
	/* client tunnel */
	struct ns_udp *mesh;
	struct sockaddr_storage sa; /* the local sender */
	socklen_t sa_len;
	/* server tunnel */
	int fd; /* connected to the local target */
	struct event *ev;
};

struct px_udp_tunnel {
	bool server;
	struct px_env env;
	struct px_stats stats;
	struct px_flows flows;
	size_t max_flows;
	unsigned idle_ms;
	struct event *sweep;
	/* client: the local socket and the mesh target */
	int fd;
	struct event *ev;
	struct ns_addr target;
	uint16_t target_port;
	/* server: the mesh port and the local target */
	struct ns_udp *mesh;
	struct sockaddr_storage local;
	socklen_t local_len;
	char desc[320];
};

static uint8_t px_ut_buf[65536];

/* A socket address as an ns_addr and port; IPv4-mapped IPv6 stays IPv6
 * (the local socket answers in its own family). */
static bool px_ut_from_sa(const struct sockaddr_storage *ss, struct ns_addr *a,
                          uint16_t *port)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		a->family = AF_INET;
		memcpy(a->addr, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		a->family = AF_INET6;
		memcpy(a->addr, &s->sin6_addr, 16);
		*port = ntohs(s->sin6_port);
		return true;
	}
	return false;
}

static bool px_ut_addr_eq(const struct ns_addr *x, const struct ns_addr *y)
{
	return x->family == y->family &&
	       memcmp(x->addr, y->addr, x->family == AF_INET ? 4 : 16) == 0;
}

/* ---- flows ---- */

static void px_uflow_free(struct px_uflow *f)
{
	struct px_udp_tunnel *t = f->t;
	px_flows_remove(&t->flows, &f->k);
	ns_udp_close(f->mesh);
	if (f->ev)
		event_free(f->ev);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

/* Room for one more flow: the least recently used one goes. */
static void px_uflow_make_room(struct px_udp_tunnel *t)
{
	while (t->flows.n >= t->max_flows && t->flows.oldest) {
		t->stats.err_limit++;
		px_uflow_free((struct px_uflow *)t->flows.oldest);
	}
}

static struct px_uflow *px_uflow_new(struct px_udp_tunnel *t, const struct ns_addr *a,
                                     uint16_t port)
{
	px_uflow_make_room(t);
	struct px_uflow *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->t = t;
	f->fd = -1;
	f->k.addr = *a;
	f->k.port = port;
	px_flows_insert(&t->flows, &f->k, mono_now_ms());
	t->stats.accepted++;
	return f;
}

static void px_ut_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_tunnel *t = arg;
	uint64_t now = mono_now_ms();
	while (t->flows.oldest && now - t->flows.oldest->last >= t->idle_ms)
		px_uflow_free((struct px_uflow *)t->flows.oldest);
}

/* ---- client tunnel ---- */

/* From the mesh to a flow's port: only the target answers. */
static void px_ut_client_on_mesh(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                                 uint16_t sport, const struct ns_addr *dst,
                                 const uint8_t *data, size_t len)
{
	struct px_uflow *f = ctx;
	struct px_udp_tunnel *t = f->t;
	if (sport != t->target_port || !px_ut_addr_eq(src, &t->target) ||
	    sendto(t->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
	           (const struct sockaddr *)&f->sa, f->sa_len) < 0) {
		t->stats.dgram_drops++;
		return;
	}
	t->stats.dgrams_down++;
	t->stats.bytes_down += len;
	px_flows_touch(&t->flows, &f->k, mono_now_ms());
}

static void px_ut_client_datagram(struct px_udp_tunnel *t,
                                  const struct sockaddr_storage *ss, socklen_t sl,
                                  const uint8_t *data, size_t len)
{
	struct ns_addr a;
	uint16_t port;
	if (!px_ut_from_sa(ss, &a, &port)) {
		t->stats.dgram_drops++;
		return;
	}
	if (t->env.reach_ok &&
	    !t->env.reach_ok(t->env.reach_ctx, PX_REACH_UDP, &t->target, t->target_port)) {
		if (t->stats.err_policy++ == 0)
			log_warn("%s: the mesh policy does not allow this node to reach the "
			         "target; its datagrams are dropped (mesh-proxy whois)",
			         t->desc);
		t->stats.dgram_drops++;
		return;
	}
	struct px_uflow *f = (struct px_uflow *)px_flows_find(&t->flows, &a, port);
	if (!f) {
		f = px_uflow_new(t, &a, port);
		int err = 0;
		if (f)
			f->mesh = ns_udp_open(0, px_ut_client_on_mesh, f, &err);
		if (!f || !f->mesh) {
			log_debug("%s: new flow: %s", t->desc,
			          strerror(f ? -err : ENOMEM));
			if (f)
				px_uflow_free(f);
			t->stats.err_other++;
			t->stats.dgram_drops++;
			return;
		}
		memcpy(&f->sa, ss, sl);
		f->sa_len = sl;
	}
	if (ns_udp_send(f->mesh, &t->target, t->target_port, data, len) < 0) {
		t->stats.dgram_drops++;
		return;
	}
	t->stats.dgrams_up++;
	t->stats.bytes_up += len;
	px_flows_touch(&t->flows, &f->k, mono_now_ms());
}

static void px_ut_client_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct px_udp_tunnel *t = arg;
	for (int i = 0; i < PX_UDP_TUNNEL_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(fd, px_ut_buf, sizeof(px_ut_buf), MSG_DONTWAIT,
		                     (struct sockaddr *)&ss, &sl);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			continue; /* an ICMP error for an earlier answer */
		}
		px_ut_client_datagram(t, &ss, sl, px_ut_buf, (size_t)n);
	}
}

/* ---- server tunnel ---- */

/* From the local target back to the mesh sender of the flow. */
static void px_ut_server_on_host(evutil_socket_t fd, short what, void *arg)
{
	struct px_uflow *f = arg;
	struct px_udp_tunnel *t = f->t;
	for (int i = 0; i < PX_UDP_TUNNEL_BURST; i++) {
		ssize_t n = recv(fd, px_ut_buf, sizeof(px_ut_buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			continue; /* ECONNREFUSED: nothing listens there (yet) */
		}
		if (ns_udp_send(t->mesh, &f->k.addr, f->k.port, px_ut_buf, (size_t)n) <
		    0) {
			t->stats.dgram_drops++;
			continue;
		}
		t->stats.dgrams_down++;
		t->stats.bytes_down += (uint64_t)n;
		px_flows_touch(&t->flows, &f->k, mono_now_ms());
	}
}

static struct px_uflow *px_ut_server_flow(struct px_udp_tunnel *t,
                                          const struct ns_addr *src, uint16_t sport)
{
	struct px_uflow *f = px_uflow_new(t, src, sport);
	if (!f)
		return NULL;
	f->fd = socket(t->local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd >= 0 &&
	    connect(f->fd, (const struct sockaddr *)&t->local, t->local_len) == 0)
		f->ev = event_new(t->env.base, f->fd, EV_READ | EV_PERSIST,
		                  px_ut_server_on_host, f);
	if (!f->ev || event_add(f->ev, NULL) < 0) {
		log_debug("%s: new flow: %s", t->desc, strerror(errno));
		px_uflow_free(f);
		return NULL;
	}
	return f;
}

static void px_ut_server_on_mesh(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                                 uint16_t sport, const struct ns_addr *dst,
                                 const uint8_t *data, size_t len)
{
	struct px_udp_tunnel *t = ctx;
	struct px_uflow *f = (struct px_uflow *)px_flows_find(&t->flows, src, sport);
	if (!f)
		f = px_ut_server_flow(t, src, sport);
	if (!f) {
		t->stats.err_other++;
		t->stats.dgram_drops++;
		return;
	}
	if (send(f->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		t->stats.dgram_drops++;
		return;
	}
	t->stats.dgrams_up++;
	t->stats.bytes_up += len;
	px_flows_touch(&t->flows, &f->k, mono_now_ms());
}

/* ---- both ---- */

static struct px_udp_tunnel *px_ut_alloc(const struct px_env *env, uint32_t idle_ms,
                                         uint32_t max_flows, const char *kind, char *err,
                                         size_t errlen)
{
	struct px_udp_tunnel *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "%s: out of memory", kind);
		return NULL;
	}
	t->env = *env;
	t->fd = -1;
	t->idle_ms = idle_ms ? idle_ms : CFG_DEFAULT_UDP_IDLE_MS;
	t->max_flows = max_flows ? max_flows : PX_UDP_DEFAULT_FLOWS;
	if (px_flows_init(&t->flows, t->max_flows) < 0) {
		snprintf(err, errlen, "%s: out of memory", kind);
		free(t);
		return NULL;
	}
	/* Sweep a few times per idle period (expiry is that much late). */
	unsigned every = t->idle_ms / 4;
	every = every < 100 ? 100 : every > 5000 ? 5000 : every;
	t->sweep = event_new(env->base, -1, EV_PERSIST, px_ut_on_sweep, t);
	struct timeval tv = {every / 1000, (every % 1000) * 1000};
	if (!t->sweep || event_add(t->sweep, &tv) < 0) {
		snprintf(err, errlen, "%s: cannot register with the event loop", kind);
		px_udp_tunnel_free(t);
		return NULL;
	}
	return t;
}

/* The client tunnel's target: a mesh name, an address, or a host name
 * (getaddrinfo, startup only). */
static int px_ut_client_target(struct px_udp_tunnel *t,
                               const struct cfg_udp_client_tunnel *cfg, char *err,
                               size_t errlen)
{
	const char *host = cfg->target_host;
	if (!host || !*host || !cfg->target_port) {
		snprintf(err, errlen, "udp-client: no target");
		return -1;
	}
	t->target_port = cfg->target_port;
	struct ns_addr found[4];
	if (t->env.resolve_mesh &&
	    t->env.resolve_mesh(t->env.resolve_ctx, host, found, 4)) {
		t->target = found[0];
		return 0;
	}
	if (px_addr_parse(&t->target, host))
		return 0;
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
	int r = getaddrinfo(host, NULL, &hints, &res);
	uint16_t port;
	bool ok = r == 0 && res && res->ai_addrlen <= sizeof(struct sockaddr_storage) &&
	          px_ut_from_sa((const struct sockaddr_storage *)res->ai_addr, &t->target,
	                        &port);
	if (res)
		freeaddrinfo(res);
	if (!ok) {
		snprintf(err, errlen, "udp-client: target \"%s\": %s", host,
		         r ? gai_strerror(r) : "no address");
		return -1;
	}
	return 0;
}

struct px_udp_tunnel *px_udp_client_tunnel_new(const struct px_env *env,
                                               const struct cfg_udp_client_tunnel *cfg,
                                               char *err, size_t errlen)
{
	struct px_udp_tunnel *t = px_ut_alloc(env, cfg->idle_timeout_ms, cfg->max_flows,
	                                      "udp-client", err, errlen);
	if (!t)
		return NULL;
	if (px_ut_client_target(t, cfg, err, errlen) < 0) {
		px_udp_tunnel_free(t);
		return NULL;
	}
	char a[80] = "?", b[80];
	sockaddr_format(&cfg->bind.addr, a, sizeof(a));
	t->fd = socket(cfg->bind.addr.ss_family,
	               SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (t->fd < 0 ||
	    bind(t->fd, (const struct sockaddr *)&cfg->bind.addr, cfg->bind.addr_len) <
	        0 ||
	    getsockname(t->fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(err, errlen, "udp-client %s: %s", a, strerror(errno));
		px_udp_tunnel_free(t);
		return NULL;
	}
	t->ev =
	    event_new(env->base, t->fd, EV_READ | EV_PERSIST, px_ut_client_on_read, t);
	if (!t->ev || event_add(t->ev, NULL) < 0) {
		snprintf(err, errlen,
		         "udp-client %s: cannot register with the event loop", a);
		px_udp_tunnel_free(t);
		return NULL;
	}
	struct px_target tt = {.addr = t->target, .port = t->target_port};
	inet_ntop(t->target.family, t->target.addr, tt.host, sizeof(tt.host));
	sockaddr_format(&ss, a, sizeof(a));
	px_target_format(&tt, b, sizeof(b));
	snprintf(t->desc, sizeof(t->desc), "udp-client %s -> %s", a, b);
	return t;
}

struct px_udp_tunnel *px_udp_server_tunnel_new(const struct px_env *env,
                                               const struct cfg_udp_server_tunnel *cfg,
                                               char *err, size_t errlen)
{
	struct px_udp_tunnel *t = px_ut_alloc(env, cfg->idle_timeout_ms, cfg->max_flows,
	                                      "udp-server", err, errlen);
	if (!t)
		return NULL;
	t->server = true;
	if (!cfg->target_host || !*cfg->target_host) {
		snprintf(err, errlen, "udp-server: no target");
		px_udp_tunnel_free(t);
		return NULL;
	}
	/* Resolved once, at startup (getaddrinfo may block). */
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
	char p[8];
	snprintf(p, sizeof(p), "%u", cfg->target_port);
	int r = getaddrinfo(cfg->target_host, p, &hints, &res);
	if (r != 0 || !res || res->ai_addrlen > sizeof(t->local)) {
		snprintf(err, errlen, "udp-server: target \"%s\": %s", cfg->target_host,
		         r ? gai_strerror(r) : "no address");
		if (res)
			freeaddrinfo(res);
		px_udp_tunnel_free(t);
		return NULL;
	}
	memcpy(&t->local, res->ai_addr, res->ai_addrlen);
	t->local_len = res->ai_addrlen;
	freeaddrinfo(res);
	int e = 0;
	t->mesh = ns_udp_open(cfg->listen_port, px_ut_server_on_mesh, t, &e);
	if (!t->mesh) {
		snprintf(err, errlen, "udp-server: mesh port %u: %s", cfg->listen_port,
		         strerror(-e));
		px_udp_tunnel_free(t);
		return NULL;
	}
	char a[80];
	sockaddr_format(&t->local, a, sizeof(a));
	snprintf(t->desc, sizeof(t->desc), "udp-server mesh:%u -> %s",
	         ns_udp_port(t->mesh), a);
	return t;
}

void px_udp_tunnel_free(struct px_udp_tunnel *t)
{
	if (!t)
		return;
	while (t->flows.oldest)
		px_uflow_free((struct px_uflow *)t->flows.oldest);
	px_flows_fini(&t->flows);
	if (t->sweep)
		event_free(t->sweep);
	if (t->ev)
		event_free(t->ev);
	if (t->fd >= 0)
		close(t->fd);
	ns_udp_close(t->mesh);
	free(t);
}

void px_udp_tunnel_get_stats(const struct px_udp_tunnel *t, struct px_stats *st)
{
	*st = t->stats;
	st->active = t->flows.n;
}

void px_udp_tunnel_describe(const struct px_udp_tunnel *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s (%zu flow%s)", t->desc, t->flows.n,
	         t->flows.n == 1 ? "" : "s");
}
