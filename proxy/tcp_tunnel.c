/* Port forwards.
 *
 * [TCPClientTunnel]: a local listener; each connection is dialled to the
 * mesh target (a name is resolved with evdns each time) and spliced. The
 * client's bytes wait in its socket meanwhile. A failed dial resets the
 * client, so it sees "connection refused/reset" rather than an empty reply.
 *
 * [TCPServerTunnel]: the netstack listens on the mesh port; each mesh
 * connection gets a non-blocking connect to the local target (each of its
 * addresses in turn, the next as soon as one fails) and is spliced to it.
 * If the local connect fails or times out, the mesh side is reset (as a
 * closed port would be). With ProxyProtocol = v2 the local
 * target first receives a PROXY protocol v2 header naming the mesh client
 * (proxyv2.c). MaxConnections counts local connects in progress and
 * established splices; a mesh connection over the limit is reset.
 *
 * Both have the limits of their section (MaxConnections, IdleTimeout,
 * BufferSize; HandshakeTimeout bounds a server tunnel's local connect) and
 * count bytes through an ns_acct. */
#include "proxy/internal.h"

#include "config/config.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum px_tunnel_kind { PX_TUNNEL_CLIENT, PX_TUNNEL_SERVER };

struct px_tunnel {
	struct px_front front; /* first: sessions point at it */
	enum px_tunnel_kind kind;
	struct px_target target; /* client tunnel: the mesh destination */
	uint16_t listen_port;    /* server tunnel */
	bool listening;
	bool proxy_v2;               /* server tunnel: ProxyProtocol = v2 */
	struct px_local_addrs local; /* server tunnel: the local target */
	char desc[400];
};

/* ---- client tunnel ---- */

static const struct px_sess_ops px_tunnel_ops = {.buf_size = 0};

static void px_tunnel_on_accept(void *ctx, int fd)
{
	struct px_tunnel *t = ctx;
	struct px_sess *s = px_sess_new(&t->front, fd, &px_tunnel_ops);
	if (!s)
		return;
	s->target = t->target;
	s->rst_on_fail = true;
	px_sess_connect(s);
}

struct px_tunnel *px_tcp_client_tunnel_new(const struct px_env *env,
                                           const struct cfg_tcp_client_tunnel *cfg,
                                           char *err, size_t errlen)
{
	struct px_tunnel *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "tcp-client: out of memory");
		return NULL;
	}
	t->kind = PX_TUNNEL_CLIENT;
	if (px_front_init(&t->front, env, "tcp-client", &cfg->limits, CFG_DIRECT_NO) <
	    0) {
		snprintf(err, errlen, "tcp-client: out of memory");
		px_tunnel_free(t);
		return NULL;
	}
	if (!cfg->target_host ||
	    !px_target_set(&t->target, cfg->target_host, strlen(cfg->target_host),
	                   cfg->target_port)) {
		snprintf(err, errlen, "tcp-client: bad target \"%s\"",
		         cfg->target_host ? cfg->target_host : "");
		px_tunnel_free(t);
		return NULL;
	}
	t->front.lst = px_listener_new(env->base, &cfg->bind, px_tunnel_on_accept, t,
	                               &t->front.stats.err_accept, err, errlen);
	if (!t->front.lst) {
		px_tunnel_free(t);
		return NULL;
	}
	char a[80], b[300];
	struct sockaddr_storage ss;
	socklen_t sl;
	px_listener_addr(t->front.lst, &ss, &sl);
	sockaddr_format(&ss, a, sizeof(a));
	px_target_format(&t->target, b, sizeof(b));
	snprintf(t->desc, sizeof(t->desc), "tcp-client %s -> %s", a, b);
	return t;
}

/* ---- server tunnel ---- */

static void px_tunnel_on_mesh_accept(void *ctx, struct ns_tcp *c,
                                     const struct ns_addr *src, uint16_t sport,
                                     uint16_t dport)
{
	struct px_tunnel *t = ctx;
	t->front.stats.accepted++;
	if (px_front_open(&t->front) + t->front.stats.pending >=
	    t->front.lim.max_connections) {
		t->front.stats.err_limit++;
		ns_tcp_abort(c);
		return;
	}
	uint8_t pp[PX_PROXYV2_MAX];
	size_t pp_len = 0;
	if (t->proxy_v2) {
		struct ns_addr dst;
		uint16_t lport = dport;
		memset(&dst, 0, sizeof(dst));
		ns_tcp_local(c, &dst, &lport);
		if (dst.family != src->family) /* unknown: the family's any address */
			dst.family = src->family;
		pp_len = px_proxyv2_for(&t->front.env, pp, sizeof(pp), src, sport, &dst,
		                        lport);
	}
	px_local_dial_addrs(&t->front, c, &t->local, pp, pp_len, t->desc);
}

/* Resolves the local target once, at startup (getaddrinfo may block), and
 * keeps up to PX_LOCAL_ADDRS of its addresses, tried in turn: "localhost"
 * is often ::1 first, while the service listens on 127.0.0.1 only. */
static int px_tunnel_resolve_local(struct px_tunnel *t, const char *host, uint16_t port,
                                   char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	char p[8];
	snprintf(p, sizeof(p), "%u", port);
	int r = getaddrinfo(host, p, &hints, &res);
	if (r != 0 || !res) {
		snprintf(err, errlen, "tcp-server: target \"%s\": %s", host,
		         r ? gai_strerror(r) : "no address");
		return -1;
	}
	t->local.n = 0;
	for (struct addrinfo *i = res; i && t->local.n < PX_LOCAL_ADDRS; i = i->ai_next) {
		if (i->ai_addrlen > sizeof(t->local.ss[0]))
			continue;
		memcpy(&t->local.ss[t->local.n], i->ai_addr, i->ai_addrlen);
		t->local.len[t->local.n++] = i->ai_addrlen;
	}
	freeaddrinfo(res);
	if (t->local.n == 0) {
		snprintf(err, errlen, "tcp-server: target \"%s\": no usable address",
		         host);
		return -1;
	}
	return 0;
}

struct px_tunnel *px_tcp_server_tunnel_new(const struct px_env *env,
                                           const struct cfg_tcp_server_tunnel *cfg,
                                           char *err, size_t errlen)
{
	struct px_tunnel *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "tcp-server: out of memory");
		return NULL;
	}
	t->kind = PX_TUNNEL_SERVER;
	t->listen_port = cfg->listen_port;
	t->proxy_v2 = cfg->proxy_protocol == 2;
	if (px_front_init(&t->front, env, "tcp-server", &cfg->limits, CFG_DIRECT_NO) <
	    0) {
		snprintf(err, errlen, "tcp-server: out of memory");
		px_tunnel_free(t);
		return NULL;
	}
	if (!cfg->target_host ||
	    px_tunnel_resolve_local(t, cfg->target_host, cfg->target_port, err, errlen) <
	        0) {
		if (!cfg->target_host)
			snprintf(err, errlen, "tcp-server: no target");
		px_tunnel_free(t);
		return NULL;
	}
	int r = ns_tcp_listen(cfg->listen_port, px_tunnel_on_mesh_accept, t);
	if (r < 0) {
		snprintf(err, errlen, "tcp-server: mesh port %u: %s", cfg->listen_port,
		         strerror(-r));
		px_tunnel_free(t);
		return NULL;
	}
	t->listening = true;
	char a[80];
	sockaddr_format(&t->local.ss[0], a, sizeof(a));
	snprintf(t->desc, sizeof(t->desc), "tcp-server mesh:%u -> %s%s", cfg->listen_port,
	         a, t->proxy_v2 ? " (PROXY v2)" : "");
	return t;
}

/* ---- both ---- */

void px_tunnel_free(struct px_tunnel *t)
{
	if (!t)
		return;
	if (t->listening)
		ns_tcp_unlisten(t->listen_port);
	px_local_dial_abort_all(&t->front);
	px_front_fini(&t->front);
	free(t);
}

void px_tunnel_get_stats(const struct px_tunnel *t, struct px_stats *st)
{
	px_front_stats(&t->front, st);
	if (t->kind == PX_TUNNEL_SERVER) {
		/* The client is on the mesh side: up is mesh -> local target. */
		uint64_t up = st->bytes_down;
		st->bytes_down = st->bytes_up;
		st->bytes_up = up;
	}
}

uint16_t px_tunnel_local_port(const struct px_tunnel *t)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (t->kind != PX_TUNNEL_CLIENT || !t->front.lst)
		return 0;
	px_listener_addr(t->front.lst, &ss, &sl);
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                      : ((struct sockaddr_in *)&ss)->sin_port);
}

size_t px_tunnel_target_addrs(const struct px_tunnel *t,
                              const struct sockaddr_storage **ss)
{
	*ss = t->local.ss;
	return t->kind == PX_TUNNEL_CLIENT ? 0 : t->local.n;
}

void px_tunnel_describe(const struct px_tunnel *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s", t->desc);
}
