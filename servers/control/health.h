/* mesh-control serve --health-listen ADDR:PORT: /livez, /readyz (ready
 * while the store answers a one-row query, asked at most once a second,
 * and the last write of node state did not fail (a later write that
 * succeeds clears it; a failure with no write after it counts 30 s): a
 * full or read-only disk; 503 "not ready: store unavailable", the details
 * in the log) and /metrics (meshcontrol_*: nodes, pending and online nodes as
 * separate gauges, connections accepted / refused / closed, handshakes,
 * registrations, logouts, names reclaimed, maps and deltas, the policy's
 * compiles, store probe and write failures), from the server's counters
 * in memory: no store scan per request. The listener is
 * core/util/healthd.h. */
#ifndef MESH_CTL_HEALTH_H
#define MESH_CTL_HEALTH_H

#include <stddef.h>

struct event_base;
struct ctl_server;
struct ctl_store;
struct ctl_health;

/* NULL with a one-line message in err. */
struct ctl_health *ctl_health_new(struct event_base *base, const char *listen,
                                  struct ctl_server *srv, struct ctl_store *st, char *err,
                                  size_t errlen);
void ctl_health_free(struct ctl_health *h); /* accepts NULL */

#endif
