/* mesh-relay up --health-listen ADDR:PORT: /livez, /readyz (ready once
 * mesh-control has sent the admitted key list, so nodes can connect) and
 * /metrics (meshrelay_*: the counters of `mesh-relay status`). The
 * listener is core/util/healthd.h. */
#ifndef MESH_RLY_HEALTH_H
#define MESH_RLY_HEALTH_H

#include <stddef.h>

struct event_base;
struct rly_server;
struct rly_health;

/* ctl_state: the control connection's state as text, owned by the caller
 * and read at each request. NULL with a one-line message in err. */
struct rly_health *rly_health_new(struct event_base *base, const char *listen,
                                  const struct rly_server *srv, const char *ctl_state,
                                  char *err, size_t errlen);
void rly_health_free(struct rly_health *h); /* accepts NULL */

#endif
