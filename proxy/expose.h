/* Expose: inbound mesh TCP connections to the node's own address are
 * bridged to 127.0.0.1 on the same port (for IPv4 and IPv6 destinations), as Tailscale's
 * userspace mode does, unless narrowed. Runs on ns_tcp_listen_any, so [TCPServerTunnel]
 * ports keep their own target.
 *
 * Spec (--expose / [Mesh] Expose), comma-separated:
 *   all            every port to the same local port (the default)
 *   none           nothing (SYNs to unlisted ports get RST)
 *   22             mesh port 22 -> 127.0.0.1:22
 *   8000-8100      a range, same local ports
 *   80=8080        mesh port 80 -> 127.0.0.1:8080
 * "all" and "none" stand alone. Duplicated ports are an error.
 *
 * A local connect that fails resets the mesh connection (counted as
 * refused). Limits and counters as any TCP front-end (struct cfg_limits,
 * px_stats). */
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
};
struct expose_spec {
	bool all; /* every port, same number */
	size_t n;
	struct expose_rule rules[EXPOSE_MAX_RULES];
};

/* Parses spec; false with a readable message in err ("--expose 80=: ..."). */
bool expose_parse(const char *spec, struct expose_spec *out, char *err, size_t errlen);
/* The local port for a mesh port, 0 if not exposed. */
uint16_t expose_lookup(const struct expose_spec *s, uint16_t port);
/* "all", "none", "22,80=8080" (for status). */
void expose_describe(const struct expose_spec *s, char *buf, size_t len);

struct px_expose;
/* Installs the netstack handler (ns_tcp_listen_any). A spec that exposes
 * nothing installs none. limits NULL: defaults. */
struct px_expose *px_expose_new(const struct px_env *env, const struct expose_spec *spec,
                                const struct cfg_limits *limits, char *err,
                                size_t errlen);
void px_expose_free(struct px_expose *x); /* accepts NULL; removes the handler */
void px_expose_get_stats(const struct px_expose *x, struct px_stats *st);

#endif
