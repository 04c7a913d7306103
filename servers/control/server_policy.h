/* mesh-control serve's access policy (server_policy.c): the entry that
 * puts a policy in force (the store's, read on each map version change, or
 * a text given directly, as tests do) and what the server holds per node. */
#ifndef MESH_CTL_SERVER_POLICY_H
#define MESH_CTL_SERVER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/msg.h"

struct ctl_server;

/* Parses text[0..len) and puts it in force (NULL: no policy): every node's
 * map follows within a broadcast. A policy that does not parse changes
 * nothing (-EINVAL, err says where); one that does not compile against the
 * nodes is in force but keeps the last good compiled state, or with none
 * lets every node see nobody (-EINVAL). */
int ctl_server_policy_apply_text(struct ctl_server *s, const char *text, size_t len,
                                 char *err, size_t errlen);

struct ctl_server_policy_stats {
	bool active;   /* a policy is in force */
	bool compiled; /* some compile of it succeeded */
	uint64_t gen;  /* bumped by every change of the compiled state */
	uint64_t compiles, compile_failures;
	uint64_t compiles_deferred; /* node changes waited for the compile gap */
	uint64_t filters_denied;    /* a node's filter sent as deny-all (fail closed) */
	uint64_t read_failures;     /* reading the stored policy failed (retried) */
	size_t nodes, classes;      /* compiled nodes, distinct visibility classes */
	double last_compile_ms;
};
void ctl_server_policy_get_stats(const struct ctl_server *s,
                                 struct ctl_server_policy_stats *st);

/* Node id as the server holds it: the peers it sees (ids, ascending, not
 * itself), its filter (borrowed, valid until the next compile), what it
 * may reach on each visible peer (entries with something only), the tags
 * its map entry publishes, and whether its online connection's map is
 * current with all that. -ENOENT if id is not a node. */
struct ctl_server_policy_node {
	bool has_filter; /* a policy is in force */
	bool compiled;   /* false: joined since the last compile (sees nobody) */
	const struct ctl_filter *filter;
	uint64_t *visible;
	size_t n_visible;
	struct ctl_reach *reach;
	size_t n_reach;
	char tags[CTL_PEER_TAGS_MAX];
	bool online, map_current;
	/* the last policy MAP_DELTA its connection got: filter_op
	 * (CTL_FILTER_*), reach entries, the first one's peer */
	int last_filter_op;
	size_t last_reach;
	uint64_t last_reach_id;
};
int ctl_server_policy_node_get(const struct ctl_server *s, int64_t id,
                               struct ctl_server_policy_node *out);
void ctl_server_policy_node_free(struct ctl_server_policy_node *n);

#endif
