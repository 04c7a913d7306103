/* The access-control policy: a HuJSON file (JSON with comments and
 * trailing commas) of groups, tagOwners, hosts, acls and tests, parsed with
 * every error at a line and column (policy_parse), compiled against a list
 * of nodes (policy_compile) into each node's inbound filter and visibility
 * set, and the filter's matcher. Pure: no I/O, no clock, no globals; the
 * store, its distribution to nodes and their enforcement come later
 * (DESIGN.md, Access control). The language: docs/policy.md. */
#ifndef MESH_POLICY_H
#define MESH_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what a policy may hold; each has its own error. */
#define POLICY_MAX_BYTES     (1024 * 1024) /* the file */
#define POLICY_MAX_DEPTH     16            /* nested [ and { */
#define POLICY_MAX_VALUES    200000        /* JSON values in all */
#define POLICY_MAX_RULES     10000         /* acls entries */
#define POLICY_MAX_SELECTORS 100000        /* src, dst, ports, members, owners in all */
#define POLICY_MAX_TESTS     1000          /* tests entries */
#define POLICY_MAX_NAME      64            /* a user, group, tag or host name */
/* A node's compiled filter holds at most this many port ranges (over all
 * its source address blocks); a policy that needs more is refused. */
#define POLICY_FILTER_MAX_RANGES (1u << 20)
/* Compiling resolves each distinct selector against the nodes once; the
 * nodes and source intervals so found, summed over the distinct selectors,
 * may not pass this (a bound on compile time and memory). */
#define POLICY_COMPILE_MAX_WORK (1u << 22)
/* The policy's tests check at most this many (source address, destination
 * node) pairs in all. */
#define POLICY_TESTS_MAX_PROBES (1u << 24)

/* IP protocol numbers as they appear in a packet. ICMPv6 (58) is matched
 * as ICMP. */
enum policy_proto {
	POLICY_ICMP = 1,
	POLICY_TCP = 6,
	POLICY_UDP = 17,
	POLICY_ICMPV6 = 58
};

enum policy_verdict { POLICY_DENY = 0, POLICY_ACCEPT = 1 };

/* An error or a warning: line and column are 1-based (0 when the problem
 * has no place in the file, e.g. its size); column counts characters. */
struct policy_error {
	int line, column;
	char msg[512];
};

/* "line 12, column 9: MSG", or MSG alone without a place. */
void policy_error_format(const struct policy_error *e, char *out, size_t cap);

/* An address: IPv6, with IPv4 as ::ffff:a.b.c.d. */
struct policy_ip {
	uint8_t b[16];
};
/* An inclusive port range. */
struct policy_ports {
	uint16_t lo, hi;
};
void policy_ip_v4(struct policy_ip *ip, uint32_t v4_host_order);
void policy_ip_v6(struct policy_ip *ip, const uint8_t v6[16]);

/* A node as the compiler sees it. A node with tags is matched by its tags
 * and no longer by its user (a tagged server is not its owner's laptop). */
struct policy_node {
	uint64_t id;
	const char *name; /* for messages; may be NULL */
	uint32_t v4;      /* host order; 0 = none */
	bool has_v6;
	uint8_t v6[16];
	const char *user;        /* NULL or "" = none */
	const char *const *tags; /* "tag:NAME" */
	size_t n_tags;
};

struct policy;

/* Parses text[0..len). NULL with *err filled on a bad policy or no memory. */
struct policy *policy_parse(const char *text, size_t len, struct policy_error *err);
void policy_free(struct policy *p);

/* Things that are allowed but probably not meant (a plain name read as a
 * user, a policy without acls), in file order. */
size_t policy_n_warnings(const struct policy *p);
const struct policy_error *policy_warning(const struct policy *p, size_t i);

struct policy_stats {
	size_t groups, tags, hosts, rules, tests;
};
void policy_get_stats(const struct policy *p, struct policy_stats *st);

struct policy_compiled;

/* Resolves p's selectors against nodes[0..n) (copied; they need not
 * outlive the result). p == NULL means no policy: every node accepts
 * everything and sees every other node. p must outlive the result. NULL
 * with *err filled on a conflict between the policy and the nodes (a host
 * alias that is also a user's name) or no memory. */
struct policy_compiled *policy_compile(const struct policy *p,
                                       const struct policy_node *nodes, size_t n,
                                       struct policy_error *err);
void policy_compiled_free(struct policy_compiled *cp);

/* Things the compile dropped (a node's tag its user does not own), at
 * most 50. */
size_t policy_compiled_n_warnings(const struct policy_compiled *cp);
const struct policy_error *policy_compiled_warning(const struct policy_compiled *cp,
                                                   size_t i);

/* Runs the policy's tests: 0 with *passed set (test entries checked), or
 * -1 with *err naming the first failing test, its source and destination,
 * and (for an unexpected accept) the rule that accepts it. */
int policy_run_tests(const struct policy_compiled *cp, size_t *passed,
                     struct policy_error *err);

/* The inbound filter of nodes[i]: what a packet to that node must match.
 * NULL with *err filled when it would exceed POLICY_FILTER_MAX_RANGES or
 * memory runs out. Free with policy_filter_free. */
struct policy_filter *policy_node_filter(const struct policy_compiled *cp, size_t i,
                                         struct policy_error *err);
void policy_filter_free(struct policy_filter *f);

/* Accept or deny a packet from src to this node's dst_port (ignored for
 * ICMP). Unknown protocols are denied under a policy. O(log n): a binary
 * search over source blocks, then over that block's port ranges. */
enum policy_verdict policy_filter_match(const struct policy_filter *f, uint8_t proto,
                                        const struct policy_ip *src, uint16_t dst_port);

/* The filter's contents, for printing: true if it accepts everything (no
 * policy); else, per protocol (POLICY_TCP, POLICY_UDP, POLICY_ICMP), the
 * source blocks [lo, hi] in address order that together cover every
 * address, each with the port ranges its sources may reach (none: a gap;
 * for ICMP, one range 0-65535 means accepted). */
bool policy_filter_allows_all(const struct policy_filter *f);
size_t policy_filter_n_blocks(const struct policy_filter *f, uint8_t proto);
void policy_filter_block(const struct policy_filter *f, uint8_t proto, size_t k,
                         struct policy_ip *lo, struct policy_ip *hi,
                         const struct policy_ports **ports, size_t *n_ports);

/* The nodes nodes[i] may talk to or that may talk to it: indices into the
 * compiled node list, ascending, without i. *out is malloc'ed (NULL when
 * *n is 0). -1 on no memory. */
int policy_node_visible(const struct policy_compiled *cp, size_t i, size_t **out,
                        size_t *n);

/* Tags of nodes[i] that the policy accepts: a tag counts only when the
 * node's user owns it under tagOwners (directly or through a group); the
 * others are dropped at compile time (with a warning naming the node), so
 * a tag nobody owns grants nothing and removing an owner revokes it at the
 * next compile. A node whose tags were all dropped is matched as its user.
 * The strings live as long as cp. */
size_t policy_node_tags(const struct policy_compiled *cp, size_t i,
                        const char *const **tags);

/* The port ranges that a packet from src may open under f for proto
 * (POLICY_TCP, POLICY_UDP; POLICY_ICMP: one range 0-65535 when accepted):
 * *ports points into f (valid while f lives), *n 0 when none. A filter
 * that allows all (no policy) gives one range 0-65535. */
void policy_filter_ports_for(const struct policy_filter *f, uint8_t proto,
                             const struct policy_ip *src,
                             const struct policy_ports **ports, size_t *n);

/* A filter built from blocks (what a node receives in its map): per
 * protocol index (0 TCP, 1 UDP, 2 ICMP) the blocks with ports, ascending
 * and disjoint (checked: -1 style NULL with *err otherwise); the gaps
 * between them deny. Also the filter that denies everything (n all 0). */
struct policy_filter_block_in {
	struct policy_ip lo, hi;
	const struct policy_ports *ports; /* ascending, disjoint */
	size_t n_ports;
};
struct policy_filter *policy_filter_from_blocks(const struct policy_filter_block_in *b[3],
                                                const size_t n[3],
                                                struct policy_error *err);

/* Failing closed: a compile or filter build can fail after a policy was
 * accepted, because of the nodes (a new user named like a host alias, a
 * node that pushes a filter past POLICY_FILTER_MAX_RANGES, no memory).
 * The caller must then keep the last good result or deny; never fall back
 * to p == NULL, which allows everything.
 *
 * Destinations: a mesh address or CIDR in a rule's dst selects the nodes
 * that hold it, and the rule opens those ports on the node (on its IPv4 and
 * IPv6 address alike: one host). Sources are matched by address as
 * written. */

/* Sharing: nodes that the same rules' destinations hold get the same
 * filter; policy_node_filter builds it once and hands out references
 * (filters are immutable; free each with policy_filter_free; they may
 * outlive cp). It fills a cache inside cp, so one cp must not be used by
 * two threads at once for it.
 *
 * Families: every block of a compiled filter lies within one family, IPv4
 * (::ffff:0.0.0.0/96) or IPv6 (the rest), so it can go into a map as it
 * is; policy_filter_from_blocks refuses a block whose ends differ in
 * family (or that spans the IPv4 space from below it to above it). */

#endif
