/* The node's readiness (the /readyz page, the local API's "health"
 * request, `mesh-proxy health`) and its health listener (--health-listen:
 * /livez, /readyz, /metrics; core/util/healthd.h).
 *
 * Ready means the node can carry traffic, not merely that it has an
 * address:
 *
 * - joined to mesh-control (mesh-proxy up): registered and the data plane
 *   up, and either mesh-control answering or at least one peer answering.
 *   mesh-control answers while the control connection is online and for
 *   NODE_HEALTH_CTL_GRACE_S (30 s) after the last moment it was: a
 *   mesh-control restart, or a blip of its TCP connection, must not take
 *   every idle pod of a fleet out of its Service at once. So a joined node
 *   with no peer at all is ready while mesh-control answers. A peer
 *   answers when a WireGuard handshake with it completed within
 *   NODE_HEALTH_PEER_S (180 s, when WireGuard stops using a session) and
 *   no handshake initiation to it has gone unanswered for more than
 *   NODE_HEALTH_UNANSWERED_S. So with mesh-control gone for more than the
 *   grace the node turns not ready at the latest 180 s after its last
 *   handshake, and within about 25 s of traffic to peers that stopped
 *   answering (WireGuard initiates a new handshake 15 s after data went
 *   unanswered).
 * - from a configuration file alone (no mesh-control): the data plane up
 *   and either no [Peer] at all (nothing to wait for) or at least one peer
 *   that has completed a handshake since the start and has no initiation
 *   unanswered for more than NODE_HEALTH_UNANSWERED_S. An idle peer stays
 *   ready: without mesh-control nothing else says it is gone.
 * - stopping (SIGTERM or SIGINT received): never ready, so that a Service
 *   takes the pod out while an ephemeral node logs out.
 *
 * Every age here is measured on a monotonic clock (a wall clock step must
 * neither make a peer look answering nor mesh-control's grace run out),
 * and peers are tracked by public key (a map change that reorders them
 * keeps their history).
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
#define NODE_HEALTH_CTL_GRACE_S  30

/* Starts the per-peer tracking (a 1 s timer on n->base) and, with listen
 * (ADDR:PORT), the health listener; metrics_peers: /metrics has per-peer
 * series (node/metrics.h). NULL with a one-line message in err. */
struct node_health *node_health_new(struct node *n, const char *listen,
                                    bool metrics_peers, char *err, size_t errlen);
void node_health_free(struct node_health *h); /* accepts NULL */

/* true: ready; false with a one-line reason in why. */
bool node_health_ready(const struct node_health *h, char *why, size_t cap);

/* Peers that answer now (see above), and peers seen at all. */
size_t node_health_answering(const struct node_health *h);

/* From now on never ready: "not ready: stopping" (a signal came). */
void node_health_set_stopping(struct node_health *h);

/* ---- The rule itself, without the node (for the unit test) ----
 * now_ms: the monotonic clock (mono_now_ms). */

/* One peer as the device shows it. */
struct nh_obs {
	uint8_t key[32];
	uint64_t sent, completed; /* handshake initiations sent, completed */
	int64_t last_hs_ms;       /* ms since its last handshake, -1: never */
};

/* Per-peer history, by public key. */
struct nh_tracker {
	struct nh_peer *peers; /* sorted by key */
	size_t n, cap;
};

/* Looks at the device's peers (in any order): a peer not seen before starts
 * from now, one that left is forgotten. -ENOMEM leaves the tracker as it
 * was. */
int nh_tracker_look(struct nh_tracker *t, const struct nh_obs *obs, size_t n,
                    int64_t now_ms);
void nh_tracker_clear(struct nh_tracker *t);
/* Whether this peer answers now (see above). */
bool nh_tracker_answers(const struct nh_tracker *t, const struct nh_obs *o, bool joined,
                        int64_t now_ms);

struct nh_inputs {
	bool stopping;
	bool joined;
	/* joined only: */
	bool pending;    /* waiting for an admin's approval */
	bool have_self;  /* registered (has its own address) */
	const char *ctl; /* the control connection's state, for the reason */
	bool ctl_online;
	int64_t ctl_online_ms; /* the last moment it was online; 0: never */
	/* both: */
	bool dataplane;
	size_t peers, answering;
};

/* The verdict; false with a one-line reason in why. */
bool nh_rule(const struct nh_inputs *in, int64_t now_ms, char *why, size_t cap);

#endif
