/* The node's front-ends: local sockets bridged into the mesh through the
 * netstack (netstack/ns.h).
 *
 *   [Socks5]          px_socks_new()   SOCKS5 CONNECT and UDP ASSOCIATE (RFC
 *                                      1928, RFC 1929 auth), SOCKS4/4a
 *                                      CONNECT on the same port
 *   [http]            px_http_new()    HTTP proxy: CONNECT and absolute-URI
 *                                      forwarding (Basic auth optional)
 *   [TCPClientTunnel] px_tcp_client_tunnel_new()  local listener -> mesh target
 *   [TCPServerTunnel] px_tcp_server_tunnel_new()  mesh port -> local target
 *                                      (optionally PROXY protocol v2)
 *   [UDPClientTunnel] px_udp_client_tunnel_new()  local UDP port -> mesh target
 *   [UDPServerTunnel] px_udp_server_tunnel_new()  mesh UDP port -> local target
 *   mesh-proxy nc     px_nc_new()      stdio streams handed over by the API
 *
 * Targets: IP literals, mesh names (px_env.resolve_mesh), then DNS: evdns,
 * or px_env.lookup when [Interface] DNS sends queries through the mesh.
 * A destination no mesh peer routes is connected from the host when the
 * front-end's Direct allows it (enum cfg_direct: no, public, all; never
 * loopback, link-local, metadata, multicast or the mesh's own prefixes).
 *
 * Everything runs on the caller's event_base and nothing blocks, except
 * the server tunnels' constructors, which resolve a host-name Target with
 * getaddrinfo() once (startup only). Each front-end keeps counters (struct
 * px_stats): connections, errors by kind, and the bytes of its established
 * connections (through an ns_acct shared with its splices) and datagrams.
 *
 * Shutdown order: free the front-ends, then ns_shutdown(), then the
 * evdns_base. Connection attempts (race.c) end with their session
 * (netstack dials are cancelled); splices outlive the front-end (until
 * ns_shutdown()). */
#ifndef MESH_PROXY_H
#define MESH_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h" /* enum cfg_direct */

struct event_base;
struct evdns_base;
struct ns_addr;
struct cfg_socks5;
struct cfg_http;
struct cfg_tcp_client_tunnel;
struct cfg_tcp_server_tunnel;
struct cfg_udp_client_tunnel;
struct cfg_udp_server_tunnel;

/* An address prefix (this mesh's own addresses, for Direct). */
struct px_prefix {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t bits;
};
#define PX_OWN_PREFIXES_MAX 8

/* A mesh source's identity (px_env.identify), NUL-terminated. */
struct px_identity {
	char name[256]; /* the node's full name, "web.mesh.internal" */
	char user[64];
	char tags[256]; /* "tag:a,tag:b" */
};

/* What the front-ends need from the node. Copied by each *_new(); base and
 * dns must outlive the front-ends. */
struct px_env {
	struct event_base *base;
	/* Resolves host names in SOCKS5/HTTP requests and tunnel targets
	 * (evdns_getaddrinfo). NULL: names fail (SOCKS5 0x04, HTTP 502). */
	struct evdns_base *dns;
	/* True if a mesh peer routes a (its AllowedIPs cover a). NULL: all
	 * destinations are tried. A false answer is SOCKS5 0x03 / HTTP 502. */
	bool (*route_ok)(void *ctx, const struct ns_addr *a);
	void *route_ctx;
	/* Mesh names, asked before DNS: fills up to max addresses for name
	 * (as the client wrote it) and returns how many (0: not a mesh name,
	 * go on to evdns). NULL: no mesh names. */
	size_t (*resolve_mesh)(void *ctx, const char *name, struct ns_addr *out,
	                       size_t max);
	void *resolve_ctx;
	/* The mesh's access policy: true if this node may open port (proto
	 * PX_REACH_TCP or PX_REACH_UDP) at a, an address a mesh peer routes.
	 * False fails the connection at once instead of a dial that the peer
	 * would drop: SOCKS5 0x02, HTTP 403 saying so, a client tunnel's or
	 * nc's client told; a datagram is dropped. NULL: no policy. */
	bool (*reach_ok)(void *ctx, int proto, const struct ns_addr *a, uint16_t port);
	void *reach_ctx;
	/* Who holds the mesh address src (the map's node name, user, tags),
	 * for the PROXY v2 header's TLVs: fills what is known ("" for the
	 * rest) and returns true, or false for an unknown source. NULL: no
	 * identity TLVs. */
	bool (*identify)(void *ctx, const struct ns_addr *src, struct px_identity *id);
	void *identify_ctx;
	/* [Interface] DNS: names that are not mesh names are looked up with
	 * this instead of evdns (the node sends the queries through the
	 * mesh). Returns 0, sets *handle, and calls cb exactly once, later
	 * from the loop (never inside this call), with 0 and the addresses
	 * (valid during the call) or -errno, unless lookup_cancel(handle)
	 * comes first; or returns -errno at once and never calls cb.
	 * NULL: evdns. */
	int (*lookup)(void *ctx, const char *name,
	              void (*cb)(void *arg, int err, const struct ns_addr *a, size_t n),
	              void *arg, void **handle);
	/* Takes back a lookup whose cb has not run (cb never runs). Required
	 * with lookup: a client that goes away takes its lookup with it. */
	void (*lookup_cancel)(void *ctx, void *handle);
	void *lookup_ctx;
	/* Time a client has to finish its SOCKS5/HTTP request, and the limit
	 * for a TCPServerTunnel's local connect. 0: 10000 ms. */
	unsigned handshake_timeout_ms;
	/* Limit for name resolution plus dial, a safety net over the
	 * netstack's own SYN timeout (SOCKS5 0x06, HTTP 504). 0: 30000 ms. */
	unsigned connect_timeout_ms;
	/* This mesh's own prefixes (our addresses, the mesh's ranges): never
	 * connected from the host, even when no peer routes them. */
	struct px_prefix own[PX_OWN_PREFIXES_MAX];
	size_t n_own;
	/* Unit tests only: Direct may reach 127.0.0.0/8 and ::1, the
	 * addresses a test process can count on. The node never sets it. */
	bool direct_loopback_for_tests;
};

/* reach_ok's proto (the values of CTL_FILTER_TCP and CTL_FILTER_UDP). */
enum { PX_REACH_TCP = 0, PX_REACH_UDP = 1 };

/* Counters of one front-end. */
struct px_stats {
	uint64_t accepted;    /* connections accepted (mesh side for server tunnels) */
	uint64_t pending;     /* now in handshake, name resolution or dial */
	uint64_t established; /* handed to the netstack splice */
	uint64_t head_bytes;  /* client bytes sent along with the handshake */
	/* Failures by kind. */
	uint64_t err_auth;     /* missing or wrong credentials */
	uint64_t err_protocol; /* malformed, unsupported or over-long requests */
	uint64_t err_handshake_timeout;
	uint64_t err_client_gone; /* client closed before we were done */
	uint64_t err_no_route;    /* no mesh peer routes the destination */
	uint64_t err_resolve;     /* host name did not resolve */
	uint64_t err_refused;     /* destination refused (RST) */
	uint64_t err_unreachable; /* host unreachable */
	uint64_t err_timeout;     /* destination did not answer */
	uint64_t err_other;       /* out of memory, splice failure, ... */
	uint64_t err_accept;      /* accept() failures (EMFILE, ...) */
	uint64_t err_limit;       /* closed at MaxConnections (oldest handshake
	                           * evicted, or the new one refused) */
	uint64_t err_idle;        /* established, reset by IdleTimeout */
	uint64_t err_denied;      /* Direct may not connect there (loopback,
	                           * metadata, private with Direct = public...) */
	uint64_t err_busy;        /* refused: the node is over its memory budget
	                           * (SOCKS5 0x01, SOCKS4 0x5b, HTTP 503) */
	uint64_t err_policy;      /* the mesh policy does not let this node
	                           * reach the destination (SOCKS5 0x02,
	                           * HTTP 403); datagrams: dgram_drops */
	/* Traffic. TCP: bytes of established connections (mesh and direct),
	 * up = client -> destination. UDP: payload bytes and datagrams. */
	uint64_t active; /* established and still open */
	uint64_t direct; /* established to a non-mesh destination from
	                  * the host (Direct) */
	uint64_t bytes_up, bytes_down;
	uint64_t dgrams_up, dgrams_down;
	uint64_t dgram_drops; /* datagrams dropped (bad header, no route,
	                       * fragment, flow limit, send failure) */
};

/* ---- SOCKS5 ---- */
struct px_socks;
/* Binds cfg->bind and starts accepting. NULL with a message in err on
 * failure (e.g. "127.0.0.1:1080: Address already in use"). */
struct px_socks *px_socks_new(const struct px_env *env, const struct cfg_socks5 *cfg,
                              char *err, size_t errlen);
void px_socks_free(struct px_socks *s); /* accepts NULL; closes pending clients */
void px_socks_get_stats(const struct px_socks *s, struct px_stats *st);
/* The bound address (the real port when the config said :0). */
void px_socks_local_addr(const struct px_socks *s, struct sockaddr_storage *ss,
                         socklen_t *len);

/* ---- HTTP CONNECT ---- */
struct px_http;
struct px_http *px_http_new(const struct px_env *env, const struct cfg_http *cfg,
                            char *err, size_t errlen);
void px_http_free(struct px_http *h);
void px_http_get_stats(const struct px_http *h, struct px_stats *st);
void px_http_local_addr(const struct px_http *h, struct sockaddr_storage *ss,
                        socklen_t *len);

/* ---- port forwards ---- */
struct px_tunnel;
/* Local listener; each connection is dialled to cfg->target through the
 * mesh and spliced. A refused or failed dial resets the local client. */
struct px_tunnel *px_tcp_client_tunnel_new(const struct px_env *env,
                                           const struct cfg_tcp_client_tunnel *cfg,
                                           char *err, size_t errlen);
/* ns_tcp_listen(cfg->listen_port); each mesh connection gets a
 * non-blocking connect to cfg->target on the host and is spliced to it; if
 * that connect fails or times out the mesh side gets a RST. */
struct px_tunnel *px_tcp_server_tunnel_new(const struct px_env *env,
                                           const struct cfg_tcp_server_tunnel *cfg,
                                           char *err, size_t errlen);
void px_tunnel_free(struct px_tunnel *t);
void px_tunnel_get_stats(const struct px_tunnel *t, struct px_stats *st);
/* One line for status, e.g. "tcp-client 127.0.0.1:2222 -> 10.0.0.1:22". */
void px_tunnel_describe(const struct px_tunnel *t, char *buf, size_t len);
/* A client tunnel's local TCP port (0 for a server tunnel). */
uint16_t px_tunnel_local_port(const struct px_tunnel *t);
/* A server tunnel's local target as resolved at start: its n addresses
 * (with port) in *ss; 0 for a client tunnel. */
size_t px_tunnel_target_addrs(const struct px_tunnel *t,
                              const struct sockaddr_storage **ss);

/* ---- UDP forwards (udp_tunnel.c) ---- */
struct px_udp_tunnel;
/* Local UDP socket; datagrams go to cfg->target through the mesh, one
 * mesh source port per local sender, replies return to that sender. */
struct px_udp_tunnel *px_udp_client_tunnel_new(const struct px_env *env,
                                               const struct cfg_udp_client_tunnel *cfg,
                                               char *err, size_t errlen);
/* ns_udp_open(cfg->listen_port); each mesh sender gets a host UDP socket
 * connected to cfg->target; replies return to the mesh sender. */
struct px_udp_tunnel *px_udp_server_tunnel_new(const struct px_env *env,
                                               const struct cfg_udp_server_tunnel *cfg,
                                               char *err, size_t errlen);
void px_udp_tunnel_free(struct px_udp_tunnel *t);
void px_udp_tunnel_get_stats(const struct px_udp_tunnel *t, struct px_stats *st);
/* "udp-client 127.0.0.1:5353 -> 10.0.0.1:53 (3 flows)". */
void px_udp_tunnel_describe(const struct px_udp_tunnel *t, char *buf, size_t len);

/* ---- mesh-proxy nc: stdio tunnels through the local API (nc.c) ---- */
struct px_nc;
/* direct as a [Socks5] section's Direct. */
struct px_nc *px_nc_new(const struct px_env *env, enum cfg_direct direct);
void px_nc_free(struct px_nc *n);
/* Takes fd (a connected local API socket whose request line was
 * "nc HOST PORT"): dials HOST:PORT like a SOCKS5 CONNECT (mesh names, then
 * DNS; direct when no mesh peer routes it), answers "ok\n" or
 * "error: REASON\n", then splices. */
void px_nc_accept(struct px_nc *n, int fd, const char *host, uint16_t port);
void px_nc_get_stats(const struct px_nc *n, struct px_stats *st);

#endif
