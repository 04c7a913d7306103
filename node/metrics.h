/* The node's Prometheus metrics (the health listener's /metrics): what
 * `status --json` counts, as families named meshproxy_*.
 *
 * By default nothing names the mesh: no peer names or keys, front-ends
 * labelled by kind and index (frontend="socks5", index="0") without their
 * listen address or mesh target, relays by index, region and home state.
 * Totals over the peers (handshakes, bytes) count the peers the map
 * removed too, so they never go down.
 *
 * per_peer (--metrics-peers): per-peer series (last handshake time, bytes,
 * path) labelled peer=NAME (its [Peer] Name or map name, else its key) and
 * key=the first 8 base64 characters of its public key, for the first
 * NODE_METRICS_PEERS_MAX peers only, so that a big mesh cannot blow up a
 * scraper (meshproxy_peers_unlabelled counts the rest, which still count
 * in the totals); front-ends also get listen="<description>" and relays
 * relay="<name>". */
#ifndef MESH_NODE_METRICS_H
#define MESH_NODE_METRICS_H

#include <stdbool.h>

struct node;
struct node_health;
struct prom;
struct wg_device;

#define NODE_METRICS_PEERS_MAX 1000

void node_metrics_write(const struct node *n, const struct node_health *h, bool per_peer,
                        struct prom *p);

/* meshproxy_handshakes_total and meshproxy_wg_bytes_total: over the
 * current peers and those removed since the start (never going down). */
void node_metrics_wg_totals(const struct wg_device *wg, struct prom *p);

#endif
