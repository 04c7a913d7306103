/* The node's side of the access policy (DESIGN.md "Access control"): the
 * inbound filter mesh-control compiled for this node, applied to every
 * decrypted packet before lwIP sees it, the flows this node started (their
 * replies pass), and what this node may reach on each peer (outbound
 * connections the peer would drop fail at once instead of timing out).
 *
 * Without a policy (no filter in the map) everything passes and nothing is
 * recorded: node_acl_inbound and node_acl_outbound return after one check.
 *
 * Under a policy, an inbound packet passes when:
 *  - TCP: a SYN without ACK from a source the filter lets open the
 *    destination port; any other segment only for a connection lwIP holds
 *    (so an ACK or FIN scan draws no RST either);
 *  - UDP: the filter lets the source reach the port, or the datagram
 *    answers a flow this node started (acl_flows.h);
 *  - ICMP and ICMPv6: an echo request from a source the filter accepts for
 *    ICMP; an echo reply to an echo this node sent; an error (unreachable,
 *    packet too big, time exceeded, parameter problem) whose quoted packet
 *    is one of this node's connections or flows. Neighbour discovery and
 *    every other type are dropped (WireGuard carries no link layer);
 *  - fragments: the first is judged as a whole packet (it must hold the
 *    whole transport header); the rest pass only after it did;
 *  - other protocols: never.
 * Everything else is dropped without an answer (no RST, no ICMP) and
 * counted by reason.
 *
 * The filter is copied out of the map (it lives only during the map
 * callback); a filter that cannot be used (overlapping blocks, no memory)
 * denies everything (failing closed) and is logged. */
#ifndef MESH_NODE_ACL_H
#define MESH_NODE_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/msg.h"
#include "netstack/ns.h"

enum acl_drop {
	ACL_DROP_TCP_SYN = 0, /* a new connection the filter does not allow */
	ACL_DROP_TCP_NO_CONN, /* a segment for no connection of ours */
	ACL_DROP_UDP,         /* not allowed and not a reply */
	ACL_DROP_ICMP,        /* echo not allowed, reply or error to nothing */
	ACL_DROP_FRAGMENT,    /* a later fragment of a datagram not let in */
	ACL_DROP_MALFORMED,   /* a header that does not parse */
	ACL_DROP_PROTO,       /* a protocol other than TCP, UDP, ICMP */
	ACL_DROP_N
};
/* "tcp_syn", "tcp_no_conn", "udp", "icmp", "fragment", "malformed",
 * "proto". */
const char *acl_drop_name(enum acl_drop r);

/* Whether lwIP holds this TCP connection (ns_tcp_conn_exists for the
 * node; tests pass their own). */
typedef bool (*acl_tcp_conn_fn)(void *ctx, const struct ns_addr *local, uint16_t lport,
                                const struct ns_addr *remote, uint16_t rport);

struct node_acl;
struct node_acl *node_acl_new(acl_tcp_conn_fn conn, void *conn_ctx);
void node_acl_free(struct node_acl *a); /* accepts NULL */

/* The policy part of the map: has_filter false drops the policy (allow
 * all); else f (CTL_FILTER_* blocks) and reach[0..n_reach) replace what
 * was there (all copied). 0, or -EINVAL / -ENOMEM: the node then denies
 * everything inbound and reaches nothing (logged). */
int node_acl_set(struct node_acl *a, bool has_filter, const struct ctl_filter *f,
                 const struct ctl_reach *reach, size_t n_reach);
bool node_acl_active(const struct node_acl *a);

/* A decrypted packet from the mesh: true to hand it to lwIP, false when
 * it is dropped (counted). */
bool node_acl_inbound(struct node_acl *a, const uint8_t *pkt, size_t len, int64_t now_ms);
/* A packet lwIP sends: UDP datagrams and ICMP echo requests open a flow
 * their replies may use, except a datagram from a port the filter lets
 * its destination reach (a reply of a service here: it opens nothing, so
 * that a new filter that closes the port ends the conversation). */
void node_acl_outbound(struct node_acl *a, const uint8_t *pkt, size_t len,
                       int64_t now_ms);

/* Whether the filter lets src open port (proto CTL_FILTER_*; ICMP: port
 * ignored). No policy: true. */
bool node_acl_filter_allows(const struct node_acl *a, int proto,
                            const struct ns_addr *src, uint16_t port);
/* Whether this node may open port (proto CTL_FILTER_*; ICMP: port ignored)
 * on the map peer peer_id under the policy. No policy: true; a peer
 * without a reach entry: false. */
bool node_acl_reach(const struct node_acl *a, uint64_t peer_id, int proto, uint16_t port);
/* An outbound connection or datagram refused by node_acl_reach. */
void node_acl_count_fastfail(struct node_acl *a);
/* n inbound TCP connections aborted because a new filter no longer lets
 * their remote open their port (ns_tcp_revoke). */
void node_acl_count_revoked(struct node_acl *a, unsigned n);

struct acl_stats {
	bool active;
	bool failed_closed; /* the last filter could not be used: deny all */
	size_t n_blocks[CTL_FILTER_NPROTO], n_reach;
	uint64_t drops[ACL_DROP_N];
	uint64_t fastfail;
	uint64_t revoked; /* inbound TCP connections a new filter ended */
	size_t flows;
	uint64_t flows_evicted;
};
void node_acl_stats(const struct node_acl *a, struct acl_stats *st);

#endif
