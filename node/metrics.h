/* The node's Prometheus metrics (the health listener's /metrics): what
 * `status --json` counts, as families named meshproxy_*. Per-peer series
 * (handshake age, bytes, path) carry a peer label (the peer's name, else
 * its key) for the first NODE_METRICS_PEERS_MAX peers only, so that a big
 * mesh cannot blow up a scraper; meshproxy_peers_unlabelled counts the
 * rest, which still count in the totals. */
#ifndef MESH_NODE_METRICS_H
#define MESH_NODE_METRICS_H

struct node;
struct node_health;
struct prom;

#define NODE_METRICS_PEERS_MAX 1000

void node_metrics_write(const struct node *n, const struct node_health *h,
                        struct prom *p);

#endif
