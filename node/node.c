#include "node/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/util/clock.h"
#include "core/util/healthd.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "node/acl.h"
#include "node/api_server.h"
#include "node/checkalive.h"
#include "node/control.h"
#include "node/format.h"
#include "node/health.h"
#include "node/node_int.h"
#include "node/status.h"
#include "proxy/proxy.h"

/* lwIP output -> WireGuard. Under an access policy the UDP datagrams and
 * pings we send open flows their replies may use (node/acl.h). */
static void node_ns_output(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;
	if (n->acl && node_acl_active(n->acl))
		node_acl_outbound(n->acl, pkt, len, (int64_t)mono_now_ms());
	wg_device_send(n->wg, pkt, len);
}

/* WireGuard (authenticated, allowed-IPs checked) -> the access policy's
 * inbound filter (a map with a policy) -> lwIP. */
static void node_wg_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;
	if (n->acl && node_acl_active(n->acl) &&
	    !node_acl_inbound(n->acl, pkt, len, (int64_t)mono_now_ms()))
		return; /* dropped silently, counted */
	ns_input(pkt, len);
}

static bool node_route_ok(void *ctx, const struct ns_addr *a)
{
	struct node *n = ctx;
	if (n->ctl && node_ctl_route_local(a))
		return true; /* MagicDNS at 100.100.100.100 */
	return n->wg && wg_device_has_route(n->wg, a->family, a->addr);
}

/* The access policy's reach (px_env.reach_ok): may we open port there? */
static bool node_reach_ok(void *ctx, int proto, const struct ns_addr *a, uint16_t port)
{
	struct node *n = ctx;
	return node_ctl_reach_ok(n->ctl, proto, a, port);
}

/* The map's owner of a mesh source, for PROXY v2 TLVs (px_env.identify). */
static bool node_identify(void *ctx, const struct ns_addr *src, struct px_identity *id)
{
	struct node *n = ctx;
	return node_ctl_identify(n->ctl, src, id);
}

/* Mesh names: a [Peer] Name resolves to the peer's host AllowedIPs. The
 * name may carry a trailing dot and any letter case. */
static size_t node_resolve_mesh(void *ctx, const char *name, struct ns_addr *out,
                                size_t max)
{
	struct node *n = ctx;
	size_t len = strlen(name);
	if (len && name[len - 1] == '.')
		len--;
	for (size_t i = 0; i < n->cfg.n_peers; i++) {
		const struct cfg_peer *p = &n->cfg.peers[i];
		if (!p->name || strlen(p->name) != len || strncasecmp(p->name, name, len))
			continue;
		size_t k = 0;
		for (size_t j = 0; j < p->n_allowed_ips && k < max; j++) {
			const struct cfg_prefix *a = &p->allowed_ips[j];
			if (a->cidr != (a->family == AF_INET ? 32 : 128))
				continue;
			out[k].family = a->family;
			memset(out[k].addr, 0, sizeof(out[k].addr));
			memcpy(out[k].addr, a->addr, a->family == AF_INET ? 4 : 16);
			k++;
		}
		return k;
	}
	return node_ctl_resolve(n->ctl, name, out, max); /* map peers */
}

static void node_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct node *n = arg;
	(void)what;
	if (sig == SIGHUP) {
		node_resolv_reload(n, "SIGHUP received");
		if (n->ctl) {
			log_info("SIGHUP received: reconnecting to mesh-control");
			node_ctl_reconnect(n->ctl);
		}
		return;
	}
	log_info("%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	/* /readyz answers 503 "stopping" from now on, while the logout wait
	 * runs, so that a Service stops sending new work here. */
	node_health_set_stopping(n->health);
	/* An ephemeral node leaves the mesh first, waiting a bounded time so
	 * that a pod's shutdown never hangs on an unanswering server; a
	 * second signal ends the wait. */
	if (node_ctl_logout(n->ctl) == 0) {
		struct timeval tv = {NODE_CTL_LOGOUT_WAIT_S, 0};
		log_info("logging out of mesh-control (waiting at most %d s)",
		         NODE_CTL_LOGOUT_WAIT_S);
		event_base_loopexit(n->base, &tv);
		return;
	}
	event_base_loopexit(n->base, NULL);
}

/* Once a second: log handshakes that completed since the last look, so the
 * log shows when a peer becomes reachable. */
/* Connections come and go in bursts; each holds buffers (lwIP pbufs,
 * queues) of many sizes, and glibc keeps what they leave behind in its
 * heap, so after 1,000 busy connections close a node would stay at tens of
 * MiB. Once a second, if malloc holds more than NODE_TRIM_SLACK free
 * bytes, give them back (malloc_trim also releases free pages in the
 * middle of the heap). */
#define NODE_TRIM_SLACK (4u << 20)

static void node_trim_heap(void)
{
	struct mallinfo2 mi = mallinfo2();
	if (mi.fordblks > NODE_TRIM_SLACK)
		malloc_trim(256 * 1024);
}

static void node_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	(void)fd, (void)what;
	node_trim_heap();
	if (n->ctl)
		node_ctl_tick(n->ctl);
	if (!n->wg)
		return;
	size_t np = wg_device_peer_count(n->wg);
	if (np > n->n_seen) { /* map peers come and go */
		int64_t *s = realloc(n->seen_handshake, np * sizeof(*s));
		if (!s)
			return;
		memset(s + n->n_seen, 0, (np - n->n_seen) * sizeof(*s));
		n->seen_handshake = s;
		n->n_seen = np;
	}
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		if (pi.last_handshake_unix != 0 &&
		    pi.last_handshake_unix != n->seen_handshake[i]) {
			char key[64], ep[INET6_ADDRSTRLEN + 8];
			fmt_key_b64(pi.public_key, key, sizeof(key));
			fmt_sockaddr(&pi.endpoint, ep, sizeof(ep));
			const char *nm = node_ctl_peer_name(n->ctl, pi.public_key);
			if (n->seen_handshake[i] == 0)
				log_info("peer %s%s%s: handshake complete, endpoint %s",
				         nm ? nm : "", nm ? " " : "", key, ep);
			else
				log_debug(
				    "peer %s: handshake complete (rekey), endpoint %s",
				    key, ep);
			n->seen_handshake[i] = pi.last_handshake_unix;
		}
	}
}

static uint16_t node_sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

/* The TCP ports this node's own front-ends listen on (any address): never
 * exposed to the mesh, so no peer can use them as a hop. */
static size_t node_own_ports(const struct node *n, uint16_t *out, size_t max)
{
	size_t k = 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	for (size_t i = 0; i < n->n_socks && k < max; i++) {
		sl = sizeof(ss);
		px_socks_local_addr(n->socks[i], &ss, &sl);
		out[k++] = node_sockaddr_port(&ss);
	}
	for (size_t i = 0; i < n->n_http && k < max; i++) {
		sl = sizeof(ss);
		px_http_local_addr(n->http[i], &ss, &sl);
		out[k++] = node_sockaddr_port(&ss);
	}
	for (size_t i = 0; i < n->n_tunnels && k < max; i++) {
		uint16_t p = px_tunnel_local_port(n->tunnels[i]);
		if (p)
			out[k++] = p;
	}
	return k;
}

/* True if a server tunnel's target is one of this node's own listeners on
 * this host (loopback, unspecified or "localhost" at one of own ports). */
static bool node_target_is_own(const char *host, uint16_t port, const uint16_t *own,
                               size_t n_own)
{
	bool ours = false;
	for (size_t i = 0; i < n_own; i++)
		ours |= own[i] == port;
	if (!ours)
		return false;
	uint8_t a[16];
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127 || (a[0] | a[1] | a[2] | a[3]) == 0;
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const uint8_t any[16], lo[16] = {[15] = 1};
		return memcmp(a, any, 16) == 0 || memcmp(a, lo, 16) == 0;
	}
	return false;
}

/* True if a server tunnel's resolved target is one of this node's own
 * listeners: a loopback or unspecified address (IPv4-mapped too) at one
 * of own ports. Catches names the check above cannot judge (the host's
 * name at 127.0.1.1, ip6-localhost). */
static bool node_tunnel_target_is_own(const struct px_tunnel *t, const uint16_t *own,
                                      size_t n_own)
{
	const struct sockaddr_storage *ss;
	size_t n = px_tunnel_target_addrs(t, &ss);
	for (size_t i = 0; i < n; i++) {
		uint16_t port = node_sockaddr_port(&ss[i]);
		bool ours = false;
		for (size_t k = 0; k < n_own; k++)
			ours |= own[k] == port;
		if (!ours)
			continue;
		if (ss[i].ss_family == AF_INET) {
			const uint8_t *a =
			    (const uint8_t *)&((const struct sockaddr_in *)&ss[i])->sin_addr;
			if (a[0] == 127 || (a[0] | a[1] | a[2] | a[3]) == 0)
				return true;
		} else if (ss[i].ss_family == AF_INET6) {
			const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss[i])->sin6_addr;
			if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
			    (IN6_IS_ADDR_V4MAPPED(a) &&
			     (a->s6_addr[12] == 127 || (a->s6_addr[12] | a->s6_addr[13] |
			                                a->s6_addr[14] | a->s6_addr[15]) == 0)))
				return true;
		}
	}
	return false;
}

/* Adds a prefix of this mesh's own addresses to the front-ends' env. */
static void node_own_prefix(struct px_env *env, int family, const uint8_t *addr,
                            uint8_t bits)
{
	if (env->n_own >= PX_OWN_PREFIXES_MAX)
		return;
	struct px_prefix *p = &env->own[env->n_own++];
	*p = (struct px_prefix){.family = family, .bits = bits};
	memcpy(p->addr, addr, family == AF_INET ? 4 : 16);
}

/* What Direct may never reach from the host: our own addresses (with
 * their configured prefix length) and, joined to mesh-control, the whole
 * range it gives out (100.64.0.0/10 and the mesh's IPv6 /48). */
static void node_own_prefixes(struct node *n)
{
	const struct config *c = &n->cfg;
	for (size_t i = 0; i < c->n_addresses; i++)
		node_own_prefix(&n->env, c->addresses[i].family, c->addresses[i].addr,
		                c->addresses[i].cidr);
	if (!n->ctl)
		return;
	static const uint8_t cgnat[4] = {100, 64, 0, 0};
	node_own_prefix(&n->env, AF_INET, cgnat, 10);
	for (size_t i = 0; i < c->n_addresses; i++)
		if (c->addresses[i].family == AF_INET6)
			node_own_prefix(&n->env, AF_INET6, c->addresses[i].addr, 48);
}

static int node_start_frontends(struct node *n)
{
	char err[256];
	struct config *c = &n->cfg;
	n->env = (struct px_env){.base = n->base,
	                         .dns = n->dns,
	                         .route_ok = node_route_ok,
	                         .route_ctx = n,
	                         .resolve_mesh = node_resolve_mesh,
	                         .resolve_ctx = n,
	                         .reach_ok = n->ctl ? node_reach_ok : NULL,
	                         .reach_ctx = n,
	                         .identify = n->ctl ? node_identify : NULL,
	                         .identify_ctx = n};
	node_own_prefixes(n);
	if (node_dns_start(n) != 0)
		return -1;
	/* Direct's default: as Tailscale's userspace mode with `up` (but
	 * never loopback, link-local, metadata or the mesh itself), and as
	 * wireproxy with a configuration file alone (nothing leaves the
	 * tunnel). */
	enum cfg_direct mode_direct = n->ctl ? node_ctl_direct(n->ctl) : CFG_DIRECT_NO;
	for (size_t i = 0; i < c->n_socks5; i++)
		if (c->socks5[i].direct == CFG_DIRECT_UNSET)
			c->socks5[i].direct = mode_direct;
	for (size_t i = 0; i < c->n_http; i++)
		if (c->http[i].direct == CFG_DIRECT_UNSET)
			c->http[i].direct = mode_direct;
	n->socks = calloc(c->n_socks5 + 1, sizeof(*n->socks));
	n->http = calloc(c->n_http + 1, sizeof(*n->http));
	n->tunnels = calloc(c->n_tcp_client_tunnels + c->n_tcp_server_tunnels + 1,
	                    sizeof(*n->tunnels));
	n->udp_tunnels = calloc(c->n_udp_client_tunnels + c->n_udp_server_tunnels + 1,
	                        sizeof(*n->udp_tunnels));
	if (!n->socks || !n->http || !n->tunnels || !n->udp_tunnels) {
		log_error("out of memory for the front-ends");
		return -1;
	}
	for (size_t i = 0; i < c->n_socks5; i++) {
		struct px_socks *s =
		    px_socks_new(&n->env, &c->socks5[i], err, sizeof(err));
		if (!s) {
			log_error("[Socks5]: %s", err);
			return -1;
		}
		n->socks[n->n_socks++] = s;
	}
	for (size_t i = 0; i < c->n_http; i++) {
		struct px_http *h = px_http_new(&n->env, &c->http[i], err, sizeof(err));
		if (!h) {
			log_error("[http]: %s", err);
			return -1;
		}
		n->http[n->n_http++] = h;
	}
	for (size_t i = 0; i < c->n_tcp_client_tunnels; i++) {
		struct px_tunnel *t = px_tcp_client_tunnel_new(
		    &n->env, &c->tcp_client_tunnels[i], err, sizeof(err));
		if (!t) {
			log_error("[TCPClientTunnel]: %s", err);
			return -1;
		}
		n->tunnels[n->n_tunnels++] = t;
	}
	size_t max_own = n->n_socks + n->n_http + n->n_tunnels;
	uint16_t *own = calloc(max_own + 1, sizeof(*own));
	if (!own) {
		log_error("out of memory for the front-ends");
		return -1;
	}
	size_t n_own = node_own_ports(n, own, max_own);
	for (size_t i = 0; i < c->n_tcp_server_tunnels; i++) {
		const struct cfg_tcp_server_tunnel *st = &c->tcp_server_tunnels[i];
		struct px_tunnel *t = NULL;
		if (node_target_is_own(st->target_host, st->target_port, own, n_own) ||
		    ((t = px_tcp_server_tunnel_new(&n->env, st, err, sizeof(err))) &&
		     node_tunnel_target_is_own(t, own, n_own))) {
			px_tunnel_free(t);
			log_error(
			    "[TCPServerTunnel] ListenPort %u: Target %s:%u is this "
			    "node's "
			    "own proxy or tunnel: every mesh peer could use it as a hop "
			    "into this host; point it at a service instead",
			    st->listen_port, st->target_host, st->target_port);
			free(own);
			return -1;
		}
		if (!t) {
			log_error("[TCPServerTunnel]: %s", err);
			free(own);
			return -1;
		}
		n->tunnels[n->n_tunnels++] = t;
	}
	free(own);
	for (size_t i = 0; i < c->n_udp_client_tunnels; i++) {
		struct px_udp_tunnel *t = px_udp_client_tunnel_new(
		    &n->env, &c->udp_client_tunnels[i], err, sizeof(err));
		if (!t) {
			log_error("[UDPClientTunnel]: %s", err);
			return -1;
		}
		n->udp_tunnels[n->n_udp_tunnels++] = t;
	}
	for (size_t i = 0; i < c->n_udp_server_tunnels; i++) {
		struct px_udp_tunnel *t = px_udp_server_tunnel_new(
		    &n->env, &c->udp_server_tunnels[i], err, sizeof(err));
		if (!t) {
			log_error("[UDPServerTunnel]: %s", err);
			return -1;
		}
		n->udp_tunnels[n->n_udp_tunnels++] = t;
	}
	n->nc = px_nc_new(&n->env, mode_direct);
	if (!n->nc)
		log_warn("mesh-proxy nc disabled: out of memory");
	return 0;
}

static int node_start_wg(struct node *n)
{
	struct config *c = &n->cfg;
	n->wg = wg_device_new(n->base, c->private_key);
	if (!n->wg) {
		log_error("cannot create the WireGuard device");
		return -1;
	}
	/* Every send of ours happens inside a loop callback: datagrams queue
	 * and leave together (sendmmsg, UDP GSO) when the callback returns. */
	wg_device_set_tx_defer(n->wg, true);
	wg_device_set_mtu(n->wg, c->mtu);
	int r = wg_device_listen(n->wg, c->listen_port);
	if (r != 0) {
		log_error("%s: [Interface] ListenPort %u: cannot bind UDP: %s%s", c->path,
		          c->listen_port, strerror(-r),
		          r == -EADDRINUSE ? " (another process uses it; pick another "
		                             "port or omit ListenPort)"
		                           : "");
		return -1;
	}
	wg_device_set_rx(n->wg, node_wg_rx, n);
	n->seen_handshake = calloc(c->n_peers + 1, sizeof(int64_t));
	if (!n->seen_handshake)
		return -1;
	n->n_seen = c->n_peers + 1;
	for (size_t i = 0; i < c->n_peers; i++) {
		struct cfg_peer *p = &c->peers[i];
		struct wg_allowed_ip *ips = calloc(p->n_allowed_ips + 1, sizeof(*ips));
		if (!ips)
			return -1;
		for (size_t k = 0; k < p->n_allowed_ips; k++) {
			ips[k].family = p->allowed_ips[k].family;
			memcpy(ips[k].addr, p->allowed_ips[k].addr, 16);
			ips[k].cidr = p->allowed_ips[k].cidr;
		}
		struct wg_peer_config pc = {
		    .has_preshared_key = p->has_preshared_key,
		    .endpoint = p->endpoint,
		    .allowed_ips = ips,
		    .n_allowed_ips = p->n_allowed_ips,
		    .persistent_keepalive = p->persistent_keepalive,
		};
		memcpy(pc.public_key, p->public_key, WG_KEY_LEN);
		memcpy(pc.preshared_key, p->preshared_key, WG_KEY_LEN);
		int err = 0;
		struct wg_peer *wp = wg_device_add_peer(n->wg, &pc, &err);
		sodium_memzero(pc.preshared_key, sizeof(pc.preshared_key));
		free(ips);
		if (!wp) {
			log_error("%s:%d: [Peer]: %s", p->file ? p->file : c->path,
			          p->line,
			          err == -EEXIST   ? "the same PublicKey appears twice"
			          : err == -EINVAL ? "PublicKey is this node's own key"
			                           : strerror(-err));
			return -1;
		}
	}
	return 0;
}

/* MemoryLimit and MaxConnectionsPerPeer: the netstack keeps the budget
 * for itself and the front-ends. */
static void node_set_limits(const struct config *c)
{
	struct ns_limits lim = {.mem_limit = (size_t)c->memory_limit,
	                        .max_conns_per_src = c->max_conns_per_peer};
	ns_set_limits(&lim);
	ns_get_limits(&lim);
	log_info("memory budget %zu MiB%s; at most %u inbound connections per peer%s",
	         lim.mem_limit >> 20,
	         c->memory_limit ? "" : " (default: RAM/4, max 1 GiB)",
	         lim.max_conns_per_src, lim.max_conns_per_src ? "" : " (no cap)");
}

static int node_start_netstack(struct node *n)
{
	struct config *c = &n->cfg;
	struct ns_config nc = {.mtu = c->mtu};
	bool have4 = false;
	size_t n6 = 0;
	for (size_t i = 0; i < c->n_addresses && nc.n_addrs < 4; i++) {
		struct cfg_prefix *a = &c->addresses[i];
		if (a->family == AF_INET ? have4 : n6 >= 3) {
			char s[INET6_ADDRSTRLEN];
			inet_ntop(a->family, a->addr, s, sizeof(s));
			log_warn(
			    "[Interface] Address %s: ignored (one IPv4 and three IPv6 "
			    "addresses are supported)",
			    s);
			continue;
		}
		if (a->family == AF_INET)
			have4 = true;
		else
			n6++;
		nc.addrs[nc.n_addrs].family = a->family;
		memcpy(nc.addrs[nc.n_addrs].addr, a->addr, 16);
		nc.n_addrs++;
	}
	int r = ns_init(n->base, &nc, node_ns_output, n);
	if (r != 0) {
		log_error("cannot start the netstack: %s", strerror(-r));
		return -1;
	}
	node_set_limits(c);
	return 0;
}

static void node_log_summary(struct node *n)
{
	struct wg_device_stats st;
	wg_device_stats(n->wg, &st);
	log_info(
	    "wireguard: rx %llu tx %llu packets; drops: short %llu type %llu mac %llu "
	    "decrypt %llu replay %llu allowedips %llu nokey %llu ratelimit %llu "
	    "noroute %llu queue %llu sock %llu relay %llu relay-key %llu; relayed in %llu",
	    (unsigned long long)st.rx_packets, (unsigned long long)st.tx_packets,
	    (unsigned long long)st.rx_drop_short, (unsigned long long)st.rx_drop_type,
	    (unsigned long long)st.rx_drop_mac, (unsigned long long)st.rx_drop_decrypt,
	    (unsigned long long)st.rx_drop_replay,
	    (unsigned long long)st.rx_drop_allowedips,
	    (unsigned long long)st.rx_drop_nokey,
	    (unsigned long long)st.rx_drop_ratelimit,
	    (unsigned long long)st.tx_drop_noroute, (unsigned long long)st.tx_drop_queue,
	    (unsigned long long)st.tx_drop_sock, (unsigned long long)st.tx_drop_relay,
	    (unsigned long long)st.rx_drop_relay_key, (unsigned long long)st.rx_relayed);
	struct ns_stats ns;
	ns_get_stats(&ns);
	log_info("netstack: tcp %llu total, %llu refused, %llu reset; spliced %llu bytes "
	         "in, %llu out",
	         (unsigned long long)ns.tcp_total, (unsigned long long)ns.tcp_refused,
	         (unsigned long long)ns.tcp_reset, (unsigned long long)ns.splice_bytes_in,
	         (unsigned long long)ns.splice_bytes_out);
	struct acl_stats as;
	node_acl_stats(n->acl, &as);
	if (as.active)
		log_info("policy: dropped tcp_syn %llu tcp_no_conn %llu udp %llu icmp %llu "
		         "fragment %llu malformed %llu proto %llu; fast-fail %llu",
		         (unsigned long long)as.drops[ACL_DROP_TCP_SYN],
		         (unsigned long long)as.drops[ACL_DROP_TCP_NO_CONN],
		         (unsigned long long)as.drops[ACL_DROP_UDP],
		         (unsigned long long)as.drops[ACL_DROP_ICMP],
		         (unsigned long long)as.drops[ACL_DROP_FRAGMENT],
		         (unsigned long long)as.drops[ACL_DROP_MALFORMED],
		         (unsigned long long)as.drops[ACL_DROP_PROTO],
		         (unsigned long long)as.fastfail);
}

/* Every proxied connection costs a descriptor or two; the usual soft limit
 * of 1024 would cap a node near 500 connections. Raise it to the hard
 * limit (no privilege needed). */
static void node_raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t want = rl.rlim_max;
	if (want == RLIM_INFINITY || want > 1048576)
		want = 1048576;
	if (want <= rl.rlim_cur)
		return;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_debug("descriptor limit raised to %llu", (unsigned long long)want);
}

/* The data plane: WireGuard, netstack, front-ends (and the map, MagicDNS
 * and expose when joined). */
static int node_start_dataplane(struct node *n)
{
	if (node_start_wg(n) != 0 || node_start_netstack(n) != 0 ||
	    node_start_frontends(n) != 0 || (!n->ctl && node_stdio_start(n) != 0))
		return -1;
	if (!n->ctl && n->cfg.n_check_alive) /* wireproxy's health check */
		n->checkalive = checkalive_new(n->base, n->cfg.check_alive,
		                               n->cfg.n_check_alive,
		                               n->cfg.check_alive_interval_s);
	n->dataplane = true;
	if (n->ctl) {
		size_t max_own = n->n_socks + n->n_http + n->n_tunnels;
		uint16_t *own = calloc(max_own + 1, sizeof(*own));
		if (!own)
			return -1;
		size_t n_own = node_own_ports(n, own, max_own);
		node_ctl_attach(n->ctl, n->wg, &n->env, own, n_own);
		free(own);
	}
	char self[64];
	uint8_t pub[32];
	crypto_scalarmult_base(pub, n->cfg.private_key);
	fmt_key_b64(pub, self, sizeof(self));
	log_info("mesh-proxy up: public key %s, udp port %u, %zu peer(s), api %s", self,
	         wg_device_port(n->wg), wg_device_peer_count(n->wg),
	         n->api ? n->api_path : "off");
	wg_device_handshake_all(n->wg);
	return 0;
}

/* Control runtime hooks: registered for the first time -> start with the
 * addresses mesh-control gave us. */
static int node_on_ctl_start(void *ctx, const struct node_self *self)
{
	struct node *n = ctx;
	char err[512];
	struct config cfg;
	if (node_ctl_config(n->ctl, self, &cfg, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return -1;
	}
	config_free(&n->cfg);
	n->cfg = cfg;
	return node_start_dataplane(n);
}

static void node_on_ctl_stop(void *ctx, int rc)
{
	struct node *n = ctx;
	n->rc = rc;
	event_base_loopexit(n->base, NULL);
}

/* Configuration: a file, or (mesh-proxy up --state) built from the state
 * directory. Returns 0 or an exit code. */
static int node_load(struct node *n, const struct node_opts *o,
                     struct node_ctl_prep **prep)
{
	char err[768];
	if (!o->ctl) {
		if (config_load(o->config_path, &n->cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "mesh-proxy: %s\n", err);
			return 2;
		}
		return 0;
	}
	bool usage = false;
	*prep = node_ctl_prepare(o->ctl, err, sizeof(err), &usage);
	if (!*prep) {
		fprintf(stderr, "mesh-proxy: %s\n", err);
		return usage ? 2 : 1;
	}
	if (node_ctl_build_config(*prep, node_ctl_prep_self(*prep), &n->cfg, err,
	                          sizeof(err)) != 0) {
		fprintf(stderr, "mesh-proxy: %s\n", err);
		node_ctl_prep_free(*prep);
		*prep = NULL;
		return 2;
	}
	return 0;
}

static int node_signals_start(struct node *n)
{
	n->ev_int = evsignal_new(n->base, SIGINT, node_on_signal, n);
	n->ev_term = evsignal_new(n->base, SIGTERM, node_on_signal, n);
	n->ev_hup = evsignal_new(n->base, SIGHUP, node_on_signal, n);
	if (!n->ev_int || !n->ev_term || !n->ev_hup)
		return -1;
	event_add(n->ev_int, NULL);
	event_add(n->ev_term, NULL);
	event_add(n->ev_hup, NULL);
	return 0;
}

static void node_signals_free(struct node *n)
{
	if (n->ev_int)
		event_free(n->ev_int);
	if (n->ev_term)
		event_free(n->ev_term);
	if (n->ev_hup)
		event_free(n->ev_hup);
	n->ev_int = n->ev_term = n->ev_hup = NULL;
}

int node_run(const struct node_opts *o)
{
	struct node n0 = {0}, *n = &n0;
	struct node_ctl_prep *prep = NULL;
	char err[512];
	struct sockaddr_storage hss;
	socklen_t hlen;
	if (o->health_listen &&
	    healthd_parse_listen(o->health_listen, &hss, &hlen, err, sizeof(err)) != 0) {
		fprintf(stderr, "mesh-proxy: %s\n", err); /* before anything starts */
		return 2;
	}
	/* The signal handlers come first: a SIGTERM while the node starts (an
	 * ephemeral one has made its temporary state directory already in
	 * node_load) then ends the loop as soon as it runs, and the teardown
	 * below removes what was made. */
	n->base = event_base_new();
	if (!n->base || node_signals_start(n) != 0) {
		fprintf(stderr, "mesh-proxy: out of memory\n");
		node_signals_free(n);
		if (n->base)
			event_base_free(n->base);
		return 1;
	}
	int rc = node_load(n, o, &prep);
	if (rc) {
		node_signals_free(n);
		event_base_free(n->base);
		return rc;
	}
	rc = 1;
	bool start_now = !prep || node_ctl_prep_self(prep);
	if (getuid() == 0)
		log_warn("running as root is not needed: mesh-proxy uses no TUN and no "
		         "privileged ports unless you configure them");
	signal(SIGPIPE, SIG_IGN);
	node_raise_fd_limit();
	n->started = time(NULL);
	n->dns = evdns_base_new(n->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	                                     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!n->dns) /* no resolv.conf: names fail, addresses still work */
		n->dns = evdns_base_new(n->base, 0);

	if (o->api_path)
		snprintf(n->api_path, sizeof(n->api_path), "%s", o->api_path);
	else if (o->ctl && !o->ctl->ephemeral)
		snprintf(n->api_path, sizeof(n->api_path), "%s/api.sock",
		         o->ctl->state_dir);
	else if (api_default_path(n->api_path, sizeof(n->api_path), true, err,
	                          sizeof(err)) != 0)
		n->api_path[0] = 0;
	if (n->api_path[0])
		n->api = api_server_new(n->base, n->api_path, node_api_handle, n, err,
		                        sizeof(err));
	if (!n->api)
		log_warn("local API disabled: %s", err);

	if (prep) {
		struct node_ctl_hooks hooks = {.start_dataplane = node_on_ctl_start,
		                               .stop = node_on_ctl_stop,
		                               .ctx = n};
		n->ctl = node_ctl_new(n->base, n->dns, prep, &n->cfg, &hooks, err,
		                      sizeof(err));
		prep = NULL;
		if (!n->ctl) {
			log_error("cannot start the control client: %s", err);
			goto out;
		}
		n->acl = node_ctl_acl(n->ctl);
	}
	if (start_now && node_start_dataplane(n) != 0)
		goto out;
	n->health =
	    node_health_new(n, o->health_listen, o->metrics_peers, err, sizeof(err));
	if (!n->health) {
		log_error("%s", err);
		goto out;
	}

	n->ev_tick = event_new(n->base, -1, EV_PERSIST, node_on_tick, n);
	struct timeval sec = {1, 0};
	event_add(n->ev_tick, &sec);
	node_resolv_watch_start(n);
	event_base_dispatch(n->base);
	if (n->wg) {
		node_log_summary(n);
		struct status_view v;
		node_status_view(n, &v);
		status_log_frontends(&v);
	}
	rc = n->rc;
out:
	for (size_t i = 0; i < n->n_socks; i++)
		px_socks_free(n->socks[i]);
	for (size_t i = 0; i < n->n_http; i++)
		px_http_free(n->http[i]);
	for (size_t i = 0; i < n->n_tunnels; i++)
		px_tunnel_free(n->tunnels[i]);
	for (size_t i = 0; i < n->n_udp_tunnels; i++)
		px_udp_tunnel_free(n->udp_tunnels[i]);
	node_stdio_free(n);
	checkalive_free(n->checkalive);
	free(n->socks);
	free(n->http);
	free(n->tunnels);
	free(n->udp_tunnels);
	px_nc_free(n->nc);
	node_dns_stop(n);
	node_health_free(n->health);
	n->acl = NULL; /* node_ctl's */
	node_ctl_free(n->ctl);
	node_ctl_prep_free(prep);
	api_server_free(n->api);
	node_signals_free(n);
	if (n->ev_tick)
		event_free(n->ev_tick);
	/* Let callbacks of front-ends freed mid-lookup run, so their sessions
	 * are released before the resolver and the netstack go away. */
	if (n->base)
		event_base_loop(n->base, EVLOOP_NONBLOCK);
	ns_shutdown();
	wg_device_free(n->wg);
	node_resolver_free(n->dns);
	if (n->base)
		event_base_free(n->base);
	free(n->seen_handshake);
	config_free(&n->cfg);
	return rc;
}
