/* The node's readiness (the /readyz page, the local API's "health"
 * request, `mesh-proxy health`) and its health listener (--health-listen:
 * /livez, /readyz, /metrics; core/util/healthd.h).
 *
 * Ready means the node can carry traffic, not merely that it has an
 * address:
 *
 * - joined to mesh-control (mesh-proxy up): registered and the data plane
 *   up, and either the control connection online or at least one peer
 *   answering. A peer answers when a WireGuard handshake with it completed
 *   within NODE_HEALTH_PEER_S (180 s, when WireGuard stops using a
 *   session) and no handshake initiation to it has gone unanswered for
 *   more than NODE_HEALTH_UNANSWERED_S. So with mesh-control gone the node
 *   turns not ready at the latest 180 s after its last handshake, and
 *   within about 25 s of traffic to peers that stopped answering
 *   (WireGuard initiates a new handshake 15 s after data went unanswered).
 * - from a configuration file alone (no mesh-control): the data plane up
 *   and either no [Peer] at all (nothing to wait for) or at least one peer
 *   that has completed a handshake since the start and has no initiation
 *   unanswered for more than NODE_HEALTH_UNANSWERED_S. An idle peer stays
 *   ready: without mesh-control nothing else says it is gone.
 *
 * Live means the event loop answers: the local API or /livez replied. */
#ifndef MESH_NODE_HEALTH_H
#define MESH_NODE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node;
struct node_health;

#define NODE_HEALTH_PEER_S       180
#define NODE_HEALTH_UNANSWERED_S 10

/* Starts the per-peer tracking (a 1 s timer on n->base) and, with listen
 * (ADDR:PORT), the health listener. NULL with a one-line message in err. */
struct node_health *node_health_new(struct node *n, const char *listen, char *err,
                                    size_t errlen);
void node_health_free(struct node_health *h); /* accepts NULL */

/* true: ready; false with a one-line reason in why. */
bool node_health_ready(const struct node_health *h, char *why, size_t cap);

/* Peers that answer now (see above), and peers seen at all. */
size_t node_health_answering(const struct node_health *h);

#endif
