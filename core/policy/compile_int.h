/* The compiled policy, shared by compile.c, filter.c and ptest.c. */
#ifndef MESH_POLICY_COMPILE_INT_H
#define MESH_POLICY_COMPILE_INT_H

#include "core/policy/policy_int.h"

/* A set of node indices: all of them, or idx[0..n) ascending. */
struct pol_nset {
	bool all;
	uint32_t n;
	uint32_t *idx;
};

struct pol_cnode {
	uint64_t id;
	const char *name, *user; /* user NULL when none */
	const char **tags;
	size_t n_tags;
	bool has4, has6;
	struct pol_u128 a4, a6;
};

struct pol_crule {
	struct pol_nset src_nodes; /* nodes any src selector matches */
	struct pol_iv *src_iv;     /* the source addresses, merged */
	size_t n_src_iv;
	struct pol_nset *dst_nodes; /* per dst entry */
};

struct policy_compiled {
	const struct policy *p; /* NULL: no policy, all allowed */
	struct pol_arena arena;
	struct pol_cnode *nodes;
	size_t n;
	struct pol_crule *rules;
};

bool pol_nset_has(const struct pol_nset *s, size_t i);
/* Does selector sel match node i (its user unless tagged, tags, addresses)? */
bool pol_node_matches(const struct policy_compiled *cp, const struct pol_sel *sel,
                      size_t i);

#endif
