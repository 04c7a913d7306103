/* The flows this node started, for the inbound filter (node/acl.c): a UDP
 * datagram or an ICMP echo reply that the policy would not let in passes
 * when it answers one of them. Addresses are 16 bytes, IPv4 as
 * ::ffff:a.b.c.d, so one key serves both families.
 *
 * A bounded table: at most ACL_FLOWS_MAX flows, each forgotten after
 * ACL_FLOW_IDLE_MS without a packet either way; when the table is full the
 * flow idle the longest makes room (counted), and one remote address holds
 * at most a quarter of the table (its own oldest flow makes room). A keyed hash (SipHash,
 * libsodium's crypto_shorthash, with a random key) finds them, so no one
 * can choose addresses that pile into one bucket.
 *
 * Fragments (acl_frags, IPv4 only: under a policy IPv6 fragments are
 * dropped, node/acl.c): the first fragment of a datagram carries the
 * transport header and is judged like a whole packet; when it passes, the
 * datagram's (source, destination, protocol, id) is kept for ACL_FRAG_MS,
 * and its later fragments pass only then; one source holds at most a
 * quarter of the table. */
#ifndef MESH_NODE_ACL_FLOWS_H
#define MESH_NODE_ACL_FLOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACL_FLOWS_MAX    4096
/* One remote address holds at most this many: beyond it its own oldest
 * flow makes room. */
#define ACL_FLOWS_PER_REMOTE (ACL_FLOWS_MAX / 4)
#define ACL_FLOW_IDLE_MS (120 * 1000)
#define ACL_FRAGS_MAX    256
#define ACL_FRAGS_PER_SRC (ACL_FRAGS_MAX / 4) /* likewise per source */
/* No longer than lwIP keeps a half-built IPv4 datagram (IP_REASS_MAXAGE,
 * 15 ticks of a second): a later fragment never outlives the reassembly its
 * first fragment was judged for by long. */
#define ACL_FRAG_MS      (15 * 1000)

/* What a flow is: UDP ports, or for an ICMP echo (ACL_FLOW_ECHO) lport is
 * the echo id and rport 0. */
#define ACL_FLOW_UDP  17
#define ACL_FLOW_ECHO 1

struct acl_flow_key {
	uint8_t local[16], remote[16];
	uint16_t lport, rport;
	uint8_t proto;
};

struct acl_flows;
struct acl_flows *acl_flows_new(void);    /* NULL: out of memory */
void acl_flows_free(struct acl_flows *t); /* accepts NULL */
/* Records (or refreshes) the flow k at now_ms. */
void acl_flows_note(struct acl_flows *t, const struct acl_flow_key *k, int64_t now_ms);
/* True if k is a live flow (refreshed then); an idle one is forgotten. */
bool acl_flows_match(struct acl_flows *t, const struct acl_flow_key *k, int64_t now_ms);
size_t acl_flows_count(const struct acl_flows *t);
uint64_t acl_flows_evicted(const struct acl_flows *t);

struct acl_frag_key {
	uint8_t src[16], dst[16];
	uint32_t id;
	uint8_t proto;
};
struct acl_frags {
	struct acl_frag_key k[ACL_FRAGS_MAX];
	int64_t t[ACL_FRAGS_MAX]; /* 0: free slot */
};
/* A first fragment passed: its later fragments may (the oldest entry
 * makes room when the table is full). */
void acl_frags_note(struct acl_frags *f, const struct acl_frag_key *k, int64_t now_ms);
bool acl_frags_match(const struct acl_frags *f, const struct acl_frag_key *k,
                     int64_t now_ms);

#endif
