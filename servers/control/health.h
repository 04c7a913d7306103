/* mesh-control serve --health-listen ADDR:PORT: /livez, /readyz (ready
 * while the store answers a query) and /metrics (meshcontrol_*: nodes,
 * connections, handshakes, registrations, maps and deltas, the policy's
 * compiles, store errors). The listener is core/util/healthd.h. */
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
