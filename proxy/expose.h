/* Expose: inbound mesh TCP connections to the node's own address on the
 * ports the spec names are bridged to 127.0.0.1 (for IPv4 and IPv6
 * destinations). Runs on ns_tcp_listen_any, so [TCPServerTunnel] ports keep
 * their own target.
 *
 * Spec (--expose), comma-separated:
 *   none           nothing (the default; SYNs to unlisted ports get RST)
 *   all            every port to the same local port
 *   22             mesh port 22 -> 127.0.0.1:22
 *   8000-8100      a range, same local ports
 *   80=8080        mesh port 80 -> 127.0.0.1:8080
 *   22:pp2         any item (all included) with ":pp2": the local service
 *                  first gets a PROXY protocol v2 header naming the caller
 * "all" and "none" stand alone. Duplicated ports are an error.
 *
 * The node's own listeners (its SOCKS5, HTTP proxy and client tunnels:
 * px_expose_opts.never) are never exposed, whatever the spec says, so no
 * peer can use this node's front-ends as a hop. A local connect that fails
 * resets the mesh connection (counted as refused). Limits and counters as
 * any TCP front-end (struct cfg_limits, px_stats). */
#ifndef MESH_EXPOSE_H
#define MESH_EXPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/proxy.h"

#define EXPOSE_MAX_RULES 64

struct expose_rule {
	uint16_t lo, hi; /* mesh ports lo..hi */
	uint16_t target; /* 0: same port */
	bool pp2;        /* a PROXY v2 header first */
};
struct expose_spec {
	bool all; /* every port, same number */
	bool all_pp2;
	size_t n;
	struct expose_rule rules[EXPOSE_MAX_RULES];
};

/* Parses spec; false with a readable message in err ("--expose 80=: ..."). */
bool expose_parse(const char *spec, struct expose_spec *out, char *err, size_t errlen);
/* The local port for a mesh port, 0 if not exposed; *pp2 (may be NULL)
 * whether its rule asks for a PROXY v2 header. */
uint16_t expose_lookup(const struct expose_spec *s, uint16_t port, bool *pp2);
/* True if the spec exposes anything. */
bool expose_any(const struct expose_spec *s);
/* "all", "none", "22,80=8080:pp2" (for status). */
void expose_describe(const struct expose_spec *s, char *buf, size_t len);

/* Told of each exposed connection once it is accepted (src is the mesh
 * peer's address): for the node's log and its counters per peer. */
typedef void (*px_expose_conn_fn)(void *ctx, const struct ns_addr *src, uint16_t port,
                                  uint16_t local_port);

#define EXPOSE_NEVER_MAX 256
struct px_expose_opts {
	/* Local ports never exposed: the node's own TCP listeners. */
	uint16_t never[EXPOSE_NEVER_MAX];
	size_t n_never;
	px_expose_conn_fn on_conn; /* may be NULL */
	void *ctx;
};

struct px_expose;
/* Installs the netstack handler (ns_tcp_listen_any). A spec that exposes
 * nothing installs none. limits NULL: defaults; opts NULL: none. */
struct px_expose *px_expose_new(const struct px_env *env, const struct expose_spec *spec,
                                const struct cfg_limits *limits,
                                const struct px_expose_opts *opts, char *err,
                                size_t errlen);
void px_expose_free(struct px_expose *x); /* accepts NULL; removes the handler */
void px_expose_get_stats(const struct px_expose *x, struct px_stats *st);

#endif
