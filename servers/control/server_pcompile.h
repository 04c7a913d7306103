/* mesh-control's access policy, compiling: the pieces of one compile
 * (server_pcompile.c) that server_policy.c puts together. Internal to
 * servers/control. */
#ifndef MESH_SERVERS_CONTROL_SERVER_PCOMPILE_H
#define MESH_SERVERS_CONTROL_SERVER_PCOMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/policy/policy.h"
#include "servers/control/server_int.h"

/* Objects of one compile by hash (classes and filters met before are
 * reused, so an unchanged class stays the same object). */
struct srv_pc_dedup {
	void **slot;
	size_t cap;
};

/* One compile's memo: core/policy hands nodes that share a filter the same
 * object, so each is converted and hashed once, not once per node (control
 * review H2); the references are held until the compile ends, so a pointer
 * stays unique. Classes: the last few built are compared before one is
 * hashed (nodes in one class have the same list). Filters over the map
 * caps are counted and logged once per compile (L4). */
#define SRV_PC_RECENT 8
struct srv_pc_memo {
	struct policy_filter **pf;
	struct srv_pfilter **out; /* NULL: over the caps (deny) */
	size_t cap, n;
	struct srv_pclass *recent[SRV_PC_RECENT];
	size_t next_recent;
	size_t denied;
	int64_t denied_first;
	char denied_msg[600];
};

/* The policy's view of the snapshot's approved, unexpired nodes. The tag
 * strings live in *bufs (one per node; free both with srv_pc_inputs_free). */
struct srv_pc_inputs {
	struct policy_node *n;
	size_t len;
	size_t n_bufs;
	char **bufs;
	const char **tagv;
	size_t *snap_idx;
};

int srv_pc_dedup_init(struct srv_pc_dedup *d, size_t n);
/* The object equal to cl met before (cl itself when none: it is added). */
struct srv_pclass *srv_pc_class_find(struct srv_pc_dedup *d, struct srv_pclass *cl);
struct srv_pfilter *srv_pc_filter_find(struct srv_pc_dedup *d, struct srv_pfilter *f);
void srv_pc_pnodes_free(struct srv_pnode *v, size_t n);

int srv_pc_memo_init(struct srv_pc_memo *m, size_t n);
void srv_pc_memo_free(struct srv_pc_memo *m); /* accepts a zeroed one */

/* in[i]'s state into *out: its class (through dc), its filter (through df
 * and m; deny, counted in *n_denied, past the map's caps) and its tags. */
int srv_pc_pnode_build(struct srv_pfilter *deny, uint64_t *n_denied,
                       const struct policy_compiled *cp, const struct policy_node *in,
                       size_t n_in, size_t i, const char *stored, struct srv_pc_dedup *dc,
                       struct srv_pc_dedup *df, struct srv_pc_memo *m,
                       struct srv_pnode *out);

int srv_pc_inputs_build(const struct ctl_server *s, struct srv_pc_inputs *in);
void srv_pc_inputs_free(struct srv_pc_inputs *in);
int srv_pc_inputs_drop_refused(struct srv_pc_inputs *in, const struct policy *p);
size_t srv_pc_count_classes(const struct srv_pnode *v, size_t n);

#endif
