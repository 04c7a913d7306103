/* mesh-control's side of the access policy (core/policy, docs/policy.md):
 * the node list the compiler needs, built from the store or from any
 * source of nodes; validating a policy text against the store's nodes
 * (what `policy set`, `policy check` with a store, and the admin API's
 * PUT /api/v1/policy and POST /api/v1/policy/check run before anything is
 * stored); and the checks that keep users and tags consistent with the
 * stored policy (a key's tags owned by its user, a new user not named like
 * a host alias).
 *
 * Everything here is synchronous: the caller's thread parses, compiles and
 * runs the tests (a large policy over a large mesh takes that long). */
#ifndef MESH_CTL_POLICY_SRV_H
#define MESH_CTL_POLICY_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/policy/policy.h"
#include "servers/control/store.h"

/* Nodes for policy_compile, with the strings they point to. Build with
 * ctl_policy_nodes_add (any source: the store's rows, the server's
 * in-memory peers) or ctl_policy_nodes_from_store; v[i].id is the node's
 * id. Zero-initialise before the first add; free with
 * ctl_policy_nodes_free (also after a failed add). */
struct ctl_policy_nodes {
	struct policy_node *v;
	size_t n, cap;
	void **mem; /* per node: one block holding its strings and tag array */
};

/* Appends a node: name and user may be NULL or "" (none), v6 NULL (none),
 * tags a comma list "tag:a,tag:b" as the store keeps it (NULL or "": none;
 * items that are not "tag:NAME", empty ones included, are skipped).
 * Everything is copied. 0, or -1 when out of memory (ns is left as it
 * was). */
int ctl_policy_nodes_add(struct ctl_policy_nodes *ns, uint64_t id, const char *name,
                         uint32_t v4, const uint8_t *v6, const char *user,
                         const char *tags);
/* The nodes that are in the network map at now: approved and not expired
 * (pending ones are in nobody's map), by id. A store error is returned as
 * such (its message in ctl_store_errmsg); ENOMEM when out of memory. */
int ctl_policy_nodes_from_store(struct ctl_store *st, int64_t now,
                                struct ctl_policy_nodes *out);
void ctl_policy_nodes_free(struct ctl_policy_nodes *ns); /* accepts NULL */

/* What validating a policy found. */
struct ctl_policy_result {
	struct policy_error error;     /* when rejected: line and column 0 when the
	                                * problem lies with the nodes, not a place */
	struct policy_error *warnings; /* malloc'd, n_warnings */
	size_t n_warnings;
	size_t tests_passed; /* test checks run, all passed */
	struct policy_stats stats;
	size_t n_nodes; /* the nodes it was compiled for */
};

/* Returned when the policy itself is refused (the reason in res->error). */
#define CTL_POLICY_REJECTED 1

/* Parses text[0..len), compiles it against the store's nodes in the map
 * now (ctl_policy_nodes_from_store), runs its tests and builds every
 * node's filter (so one that would not fit is refused now, not found when
 * the server compiles). 0 when it may be stored, CTL_POLICY_REJECTED with
 * res->error, or a negative store error. res is filled in every case
 * (warnings and stats as far as it got); free it with
 * ctl_policy_result_free. */
int ctl_policy_validate(struct ctl_store *st, const char *text, size_t len,
                        struct ctl_policy_result *res);
void ctl_policy_result_free(struct ctl_policy_result *res); /* accepts NULL */

/* Before an auth key with tags is made: under the stored policy a tag
 * counts only on a node whose user owns it (tagOwners, policy_node_tags),
 * so each tag must be owned by user (NULL or "": none, which owns
 * nothing). 0 when they are (or tags is empty, or no policy is set: tags
 * are then checked when a policy is compiled), CTL_POLICY_REJECTED with msg
 * naming the tag and the tagOwners entry to add, or a negative store
 * error. */
int ctl_policy_check_key_tags(struct ctl_store *st, const char *user, const char *tags,
                              char *msg, size_t cap);

/* Before a user is created: the stored policy must still compile with a
 * node of that user (a user named like one of its hosts would make every
 * compile fail, and the server then keeps the last good filters). 0 when
 * it does or no policy is set, CTL_POLICY_REJECTED with msg, or a negative
 * store error. */
int ctl_policy_check_new_user(struct ctl_store *st, const char *name, char *msg,
                              size_t cap);

/* "alice@" -> "alice" (the policy's spelling of a user, accepted on the
 * command line and in the admin API); other names unchanged. out holds
 * at most CTL_NAME_MAX characters; false if name does not fit. */
bool ctl_policy_user_arg(const char *name, char *out, size_t cap);

#endif
