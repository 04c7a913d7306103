/* The compiled policy, shared by compile.c, filter.c, ptest.c. Each
 * distinct selector (a user, a group, a tag, a prefix, *) is resolved
 * against the nodes once, into a "selector object": the nodes it matches
 * and, when it is used as a source, their addresses as merged intervals.
 * Rules refer to selector objects, so repeating a selector costs nothing. */
#ifndef MESH_POLICY_COMPILE_INT_H
#define MESH_POLICY_COMPILE_INT_H

#include "core/policy/policy_int.h"

/* A set of node indices: all of them, or idx[0..n) ascending; bits (one
 * per node) as well when the set is dense enough that it costs no more. */
struct pol_nset {
	bool all;
	uint32_t n;
	const uint32_t *idx;
	const uint64_t *bits;
};

struct pol_sobj {
	const struct pol_sel *sel; /* a selector with this identity */
	struct pol_nset set;
	bool need_iv;
	struct pol_iv *iv; /* the sources: the nodes' addresses or the prefix */
	size_t n_iv;
};

struct pol_cnode {
	uint64_t id;
	const char *name, *user; /* user NULL when none */
	const char **tags;       /* the tags that count (owned) */
	size_t n_tags;
	bool has4, has6;
	struct pol_u128 a4, a6;
};

/* A rule's destinations grouped by selector object, their ports merged. */
struct pol_cdst {
	uint32_t sobj;
	struct policy_ports *ports;
	uint32_t n_ports;
};

struct pol_crule {
	uint32_t *src; /* distinct selector objects */
	uint32_t n_src;
	struct pol_cdst *dst;
	uint32_t n_dst;
};

struct pol_fcache; /* filter.c: filters shared between nodes that get the same */

struct policy_compiled {
	const struct policy *p; /* NULL: no policy, all allowed */
	struct pol_arena arena;
	struct pol_cnode *nodes;
	size_t n;
	struct pol_crule *rules;
	struct pol_sobj *sobj;
	uint32_t n_sobj;
	uint32_t *test_src;  /* per test: its source's selector object */
	uint32_t **case_dst; /* per test, per case: its destination's */
	struct policy_error *warnings;
	uint32_t n_warnings;
	struct pol_fcache *fcache; /* filled by policy_node_filter */
};

bool pol_nset_has(const struct pol_nset *s, size_t i);
/* Is user in group g (its members, by binary search)? */
bool pol_group_has(const struct policy *p, uint32_t g, const char *user);
void pol_fcache_free(struct pol_fcache *fc);
/* Sorts and merges r[0..n) (overlapping and adjacent); the new count. */
size_t pol_ports_merge(struct policy_ports *r, size_t n);

#endif
