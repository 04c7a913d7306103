/* Flow tables for the UDP forwards (udp_tunnel.c): senders keyed by address
 * and port, found by hash, kept in least-recently-used order so that idle
 * expiry and eviction at the limit look only at the oldest end. The table
 * does not allocate flows: callers embed struct px_flow first in their own
 * and set addr/port before px_flows_insert(). */
#ifndef MESH_PX_UDP_FLOW_H
#define MESH_PX_UDP_FLOW_H

#include "netstack/ns.h"

#include <stddef.h>
#include <stdint.h>

struct px_flow {
	struct px_flow *hnext;         /* hash chain */
	struct px_flow *newer, *older; /* LRU list */
	struct ns_addr addr;           /* the key: the sender */
	uint16_t port;
	uint64_t last; /* ms (mono_now_ms) of the last datagram either way */
};

struct px_flows {
	struct px_flow **buckets;
	size_t mask; /* buckets - 1 (a power of two) */
	size_t n;
	struct px_flow *newest, *oldest;
	uint32_t seed;
};

/* Sizes the hash for about max flows. Returns 0 or -ENOMEM. */
int px_flows_init(struct px_flows *t, size_t max);
/* Frees the buckets; the flows must have been removed. */
void px_flows_fini(struct px_flows *t);
struct px_flow *px_flows_find(const struct px_flows *t, const struct ns_addr *a,
                              uint16_t port);
/* Adds f (addr and port set) as the newest. */
void px_flows_insert(struct px_flows *t, struct px_flow *f, uint64_t now);
/* Marks f used now: it becomes the newest. */
void px_flows_touch(struct px_flows *t, struct px_flow *f, uint64_t now);
void px_flows_remove(struct px_flows *t, struct px_flow *f);
#endif
