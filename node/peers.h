/* The network map as the node uses it: WireGuard peers reconciled with the
 * map by node key, endpoint candidates tried in turn, and names.
 *
 * Reconcile (after each map): map peers not in the device are added
 * (allowed IPs = the peer's allowed_ips, endpoint = its first candidate),
 * changed ones updated (allowed IPs, endpoint when the list changed and no
 * handshake works yet), peers gone from the map removed. Peers whose key
 * is a static [Peer] of the configuration (or our own key) are left alone.
 *
 * Candidates (node_peers_tick, once a second): a map peer without a
 * handshake within NP_CANDIDATE_MS of the first attempt on its current
 * endpoint candidate moves to the next one; the one that completes a
 * handshake is kept. An idle peer (no attempts) stays where it is. */
#ifndef MESH_NODE_PEERS_H
#define MESH_NODE_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/msg.h"
#include "netstack/ns.h"

struct wg_device;
struct ctl_map_change;

#define NP_CANDIDATE_MS 5000
#define NP_SESSION_S    180 /* a handshake younger than this: the endpoint works */

struct np_entry {
	struct ctl_peer p;     /* as in the map */
	uint8_t cand;          /* endpoint candidate in use (index into p.eps) */
	bool in_wg;            /* added to the device (false: skipped) */
	bool working;          /* a handshake completed on this candidate */
	int64_t cand_since_ms; /* first handshake attempt on this candidate */
	uint64_t hs_sent_mark; /* handshakes_sent when the candidate was set */
	uint64_t exposed;      /* connections it made to our exposed ports */
};

struct node_peers {
	struct np_entry *e; /* sorted by peer id */
	size_t n;
	uint8_t (*static_keys)[CTL_KEY_LEN]; /* [Peer] keys and our own: skipped */
	size_t n_static;
	/* From the map: */
	uint64_t version;
	char domain[CTL_DNSNAME_MAX];
	char self_name[CTL_LABEL_MAX];
	/* this node's owner: user and comma-joined tags ("" = none) */
	char self_user[CTL_USER_MAX];
	char self_tags[CTL_PEER_TAGS_MAX];
	uint8_t n_self_addrs;
	struct ctl_ip self_addrs[CTL_ADDRS_MAX];
	uint64_t rotations; /* endpoint candidate changes */
	/* Work done by node_peers_update (tests and benches: a delta costs
	 * what it changes): entries looked at for a change, entries shifted
	 * to open or close a gap for a join or a removal. */
	uint64_t touched, moved;
};

struct np_result {
	size_t added, updated, removed, skipped, failed;
};

/* keys: the static [Peer] keys and our own public key (copied). */
int node_peers_init(struct node_peers *np, const uint8_t (*keys)[CTL_KEY_LEN],
                    size_t n_keys);
void node_peers_free(struct node_peers *np);

/* Makes the device's map peers match map. wg may be NULL (only the view
 * is updated; call node_peers_apply when the device exists). */
int node_peers_reconcile(struct node_peers *np, struct wg_device *wg,
                         const struct ctl_map_full *map, int64_t now_ms,
                         struct np_result *res);
/* After a map update: only the peers chg names are looked at (changed ids
 * found in map and added or updated, removed ids dropped), with the same
 * rules as node_peers_reconcile; O(changes x log N), plus one memmove of
 * the entries after a join or a removal. chg->full: node_peers_reconcile.
 * -ENOMEM leaves the view and the device unchanged. */
int node_peers_update(struct node_peers *np, struct wg_device *wg,
                      const struct ctl_map_full *map, const struct ctl_map_change *chg,
                      int64_t now_ms, struct np_result *res);
/* Before node_peers_update: the node keys that update takes out of the
 * view (removed ids, and ids whose key changed) into out, which has room
 * for chg->n_removed + chg->n_changed keys; returns how many. */
size_t node_peers_gone_keys(const struct node_peers *np, const struct ctl_map_full *map,
                            const struct ctl_map_change *chg,
                            uint8_t (*out)[CTL_KEY_LEN]);
/* Adds every map peer to a new device (after a start from the saved map). */
void node_peers_apply(struct node_peers *np, struct wg_device *wg, int64_t now_ms,
                      struct np_result *res);
/* Endpoint candidate rotation; now_unix for handshake ages. */
void node_peers_tick(struct node_peers *np, struct wg_device *wg, int64_t now_ms,
                     int64_t now_unix);

/* "name", "name.<domain>" (any case, trailing dot): the peer's (or our own)
 * mesh addresses, up to max. 0 when unknown. */
size_t node_peers_resolve(const struct node_peers *np, const char *name,
                          struct ns_addr *out, size_t max);
/* The name of the node owning addr (ours included); false if none. */
bool node_peers_reverse(const struct node_peers *np, const struct ns_addr *addr,
                        char *out, size_t cap);
/* The map peer that owns a mesh address (one of its addresses), or NULL. */
struct np_entry *node_peers_by_addr(struct node_peers *np, const struct ns_addr *addr);
const struct np_entry *node_peers_by_key(const struct node_peers *np,
                                         const uint8_t key[CTL_KEY_LEN]);

#endif
