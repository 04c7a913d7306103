/* mesh-control's access policy (DESIGN.md, Access control): the policy in
 * force, compiled (core/policy) against the snapshot's approved nodes into
 * each node's visibility class (who it sees, itself included), its inbound
 * filter as a map carries it, and the tags it publishes. Compiled again
 * when the policy or the nodes it looks at (set, addresses, owner) change,
 * from the broadcast, so that a join storm compiles once per broadcast and
 * not once per node (and, when compiling takes long, at most a fifth of
 * the time: SRV_COMPILE_GAP): a node that joined since the last compile
 * sees nobody and accepts nothing until the next one (a delta then brings
 * its peers). A new policy compiles at once. Costs (-O2): a group policy
 * over interleaved users compiles in about 4 ms at 1,000 nodes, 70-100 ms
 * at 4,000 (each core/policy filter converted once: struct srv_pc_memo).
 *
 * Failing closed: a policy that cannot be compiled against the nodes keeps
 * the last good compiled state; with none, every node sees nobody and its
 * filter denies everything. A node's filter past what a map may carry
 * (CTL_FILTER_BLOCKS_MAX, CTL_FILTER_RANGES_MAX, or half a frame as
 * text) is sent as deny-all. A user the policy refuses (named like a host
 * alias) keeps only that user's nodes out of the compile. At startup a
 * policy that cannot be read from the store counts as set and uncompiled
 * (read again every SRV_POLICY_RETRY_MS). Each is logged and counted.
 * Never allow-all once a policy is set. */
#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/policy/policy.h"
#include "core/util/log.h"
#include "servers/control/server_int.h"
#include "servers/control/server_pcompile.h"
#include "servers/control/server_policy.h"

struct srv_policy {
	bool active;
	struct policy *pol;      /* in force (NULL: a stored one did not parse) */
	int64_t store_rev;       /* the store's revision applied (0: none) */
	struct srv_pnode *nodes; /* the last good compile, by id */
	size_t n_nodes;
	bool compiled;            /* a compile of some policy succeeded */
	struct srv_pfilter *deny; /* the deny-all filter */
	uint64_t next_compile_ms; /* a compile for node changes not before */
	/* The latest compile: the nodes (there before it) whose filter or
	 * published tags it changed, ascending, and s->pol_gen before it. */
	int64_t *changed;
	size_t n_changed;
	uint64_t changed_from;
	bool has_changed;
	/* The last class diff asked for (references keep the pointers
	 * unique while cached). */
	struct srv_pclass *d_old, *d_new;
	int64_t *d_ids; /* added, then removed */
	size_t d_add, d_rm;
	struct ctl_server_policy_stats st;
	size_t n_warned;  /* the compile warnings last logged */
	bool read_closed; /* active only because reading the store failed */
	bool read_ok;     /* the stored policy was read once */
};

/* A compile for node changes (not for a new policy) waits until this many
 * times the last compile's duration has passed since it: in a join storm
 * on a big mesh the loop spends at most a fifth of its time compiling,
 * and joiners wait for their peers a little longer instead. */
#define SRV_COMPILE_GAP 4u

/* Reading the stored policy failed: the next try. */
#define SRV_POLICY_RETRY_MS 1000u

/* --- classes and filters ------------------------------------------------ */

bool srv_policy_on(const struct ctl_server *s)
{
	return s->pol && s->pol->active;
}

const struct srv_pnode *srv_policy_node(const struct ctl_server *s, int64_t id)
{
	if (!srv_policy_on(s))
		return NULL;
	size_t lo = 0, hi = s->pol->n_nodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->pol->nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->pol->n_nodes && s->pol->nodes[lo].id == id ? &s->pol->nodes[lo]
	                                                          : NULL;
}

const struct srv_pfilter *srv_policy_filter_of(const struct ctl_server *s, int64_t id)
{
	const struct srv_pnode *pn = srv_policy_node(s, id);
	return pn ? pn->filter : s->pol->deny;
}

bool srv_pclass_has(const struct srv_pclass *cl, int64_t id)
{
	if (!cl)
		return false;
	size_t lo = 0, hi = cl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cl->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < cl->n && cl->ids[lo] == id;
}

struct srv_pclass *srv_pclass_ref(struct srv_pclass *cl)
{
	if (cl)
		cl->refs++;
	return cl;
}

void srv_pclass_unref(struct srv_pclass *cl)
{
	if (!cl || --cl->refs)
		return;
	free(cl->ids);
	free(cl);
}

/* --- what changed -------------------------------------------------------- */

bool srv_policy_changed_since(const struct ctl_server *s, uint64_t gen,
                              const int64_t **ids, size_t *n)
{
	const struct srv_policy *sp = s->pol;
	if (!sp || !sp->has_changed || gen < sp->changed_from)
		return false;
	*ids = sp->changed;
	*n = sp->n_changed;
	return true;
}

int srv_policy_class_diff(struct ctl_server *s, struct srv_pclass *o,
                          struct srv_pclass *n, const int64_t **add, size_t *n_add,
                          const int64_t **rm, size_t *n_rm)
{
	struct srv_policy *sp = s->pol;
	if (sp->d_old != o || sp->d_new != n) {
		size_t cap = o->n + n->n, i = 0, j = 0, na = 0, nr = 0;
		int64_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
		if (!ids)
			return -ENOMEM;
		/* added from the front, removed from the back (descending) */
		while (i < o->n || j < n->n) {
			if (j < n->n && (i == o->n || n->ids[j] < o->ids[i]))
				ids[na++] = n->ids[j++];
			else if (i < o->n && (j == n->n || o->ids[i] < n->ids[j]))
				ids[cap - ++nr] = o->ids[i++];
			else
				i++, j++;
		}
		for (size_t k = 0; k < nr; k++) /* ascending, after the added */
			ids[na + k] = ids[cap - 1 - k];
		srv_pclass_unref(sp->d_old);
		srv_pclass_unref(sp->d_new);
		free(sp->d_ids);
		sp->d_old = srv_pclass_ref(o);
		sp->d_new = srv_pclass_ref(n);
		sp->d_ids = ids;
		sp->d_add = na;
		sp->d_rm = nr;
	}
	*add = sp->d_ids;
	*n_add = sp->d_add;
	*rm = sp->d_ids + sp->d_add;
	*n_rm = sp->d_rm;
	return 0;
}

/* --- a connection's map ------------------------------------------------- */

void srv_policy_conn_record(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	srv_pclass_unref(c->pol_cls);
	c->pol_cls = NULL;
	c->pol_gen = s->pol_gen;
	c->pol_mixed = false;
	c->pol_sent = srv_policy_on(s);
	memset(c->pol_fhash, 0, sizeof c->pol_fhash);
	if (!c->pol_sent)
		return;
	const struct srv_pnode *pn = srv_policy_node(s, c->node_id);
	c->pol_cls = srv_pclass_ref(pn ? pn->cls : NULL);
	memcpy(c->pol_fhash, srv_policy_filter_of(s, c->node_id)->hash,
	       sizeof c->pol_fhash);
}

void srv_policy_conn_free(struct srv_conn *c)
{
	srv_pclass_unref(c->pol_cls);
	c->pol_cls = NULL;
}

void srv_policy_full_done(struct ctl_map_full *mf)
{
	for (size_t i = 0; i < mf->n_reach; i++)
		srv_reach_clear(&mf->reach[i]);
	free(mf->reach);
	mf->reach = NULL;
	mf->n_reach = 0;
	memset(&mf->filter, 0, sizeof mf->filter); /* borrowed */
	mf->has_filter = false;
}

int srv_policy_full(struct srv_conn *c, struct ctl_map_full *mf)
{
	struct ctl_server *s = c->s;
	srv_policy_conn_record(c);
	if (!c->pol_sent)
		return 0;
	mf->has_filter = true;
	mf->filter = srv_policy_filter_of(s, c->node_id)->f; /* borrowed */
	const struct srv_node *self = srv_snap_find(s, c->node_id);
	const struct srv_pclass *cl = c->pol_cls;
	if (!self || !cl || cl->n < 2)
		return 0;
	mf->reach = calloc(cl->n, sizeof *mf->reach);
	if (!mf->reach)
		return -ENOMEM;
	for (size_t i = 0; i < cl->n; i++) {
		if (cl->ids[i] == c->node_id)
			continue;
		int r = srv_policy_reach(s, self, cl->ids[i], &mf->reach[mf->n_reach]);
		if (r < 0) {
			srv_policy_full_done(mf);
			return r;
		}
		mf->n_reach += (size_t)r;
	}
	return 0;
}

/* Compiles p against the snapshot. On success the new state replaces the
 * old (classes and filters that did not change stay the same objects and
 * keep their generations) and the published tags are updated; on failure
 * nothing changes and err says why. */
static int compile_now(struct ctl_server *s, const struct policy *p, char *err,
                       size_t errlen)
{
	struct srv_policy *sp = s->pol;
	struct srv_pc_inputs in;
	struct policy_error pe;
	struct srv_pc_dedup dc = {0}, df = {0};
	struct srv_pc_memo memo = {0};
	struct srv_pnode *nv = NULL;
	struct policy_compiled *cp = NULL;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = srv_pc_inputs_build(s, &in);
	if (r == 0 && !(cp = policy_compile(p, in.n, in.len, &pe))) {
		/* a user the policy refuses: only their nodes stay out */
		int d = srv_pc_inputs_drop_refused(&in, p);
		if (d < 0)
			r = d;
		else if (d > 0)
			cp = policy_compile(p, in.n, in.len, &pe);
	}
	if (r == 0 && !cp) {
		char msg[600];
		policy_error_format(&pe, msg, sizeof msg);
		snprintf(err, errlen, "%s", msg);
		r = -EINVAL;
	}
	if (r == 0 && (srv_pc_dedup_init(&dc, in.len + sp->n_nodes) < 0 ||
	               srv_pc_dedup_init(&df, in.len + sp->n_nodes) < 0 ||
	               srv_pc_memo_init(&memo, in.len) < 0 ||
	               !(nv = calloc(in.len ? in.len : 1, sizeof *nv))))
		r = -ENOMEM;
	/* the previous objects first: an unchanged class or filter is kept */
	for (size_t i = 0; r == 0 && i < sp->n_nodes; i++) {
		if (sp->nodes[i].cls)
			srv_pc_class_find(&dc, sp->nodes[i].cls);
		if (sp->nodes[i].filter != sp->deny)
			srv_pc_filter_find(&df, sp->nodes[i].filter);
	}
	uint64_t gen = s->pol_gen + 1;
	int64_t *chg = NULL;
	size_t n_chg = 0;
	if (r == 0 && !(chg = malloc((in.len ? in.len : 1) * sizeof *chg)))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < in.len; i++) {
		r = srv_pc_pnode_build(sp->deny, &sp->st.filters_denied, cp, in.n, in.len,
		                       i, s->nodes[in.snap_idx[i]].stags, &dc, &df, &memo,
		                       &nv[i]);
		if (r < 0)
			break;
		const struct srv_pnode *old = srv_policy_node(s, nv[i].id);
		nv[i].gen_filter =
		    old && old->filter == nv[i].filter ? old->gen_filter : gen;
		nv[i].gen_entry =
		    old && old->eff_tags && !strcmp(old->eff_tags, nv[i].eff_tags)
		        ? old->gen_entry
		        : gen;
		if (old && (nv[i].gen_filter == gen || nv[i].gen_entry == gen))
			chg[n_chg++] = nv[i].id;
	}
	/* Tags dropped for want of an owner: logged when their number
	 * changes, the first three in full (not at every compile of a storm). */
	if (r == 0 && policy_compiled_n_warnings(cp) != sp->n_warned) {
		size_t nw = policy_compiled_n_warnings(cp);
		sp->n_warned = nw;
		for (size_t i = 0; i < nw && i < 3; i++) {
			char msg[600];
			policy_error_format(policy_compiled_warning(cp, i), msg,
			                    sizeof msg);
			log_warn("mesh-control: access policy: %s", msg);
		}
		if (nw > 3)
			log_warn(
			    "mesh-control: access policy: %zu more warnings like "
			    "these (mesh-control policy check --data DIR shows them all)",
			    nw - 3);
	}
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (r < 0) {
		srv_pc_pnodes_free(nv,
		                   nv ? in.len : 0); /* calloc'd: the rest are empty */
	} else {
		srv_pc_pnodes_free(sp->nodes, sp->n_nodes);
		sp->nodes = nv;
		sp->n_nodes = in.len;
		sp->compiled = true;
		sp->st.classes = srv_pc_count_classes(nv, in.len);
		free(sp->changed);
		sp->changed = chg;
		sp->n_changed = n_chg;
		sp->changed_from = s->pol_gen;
		sp->has_changed = true;
		chg = NULL;
		s->pol_gen = gen;
		for (size_t i = 0; i < in.len; i++)
			srv_snap_set_tags(s, in.snap_idx[i], nv[i].eff_tags);
	}
	if (r == 0 && memo.denied)
		log_warn("mesh-control: access policy: %zu node(s)' filters (the first: "
		         "node %lld): %s; they accept nothing until the policy changes "
		         "(fail closed)",
		         memo.denied, (long long)memo.denied_first, memo.denied_msg);
	srv_pc_memo_free(&memo);
	free(chg);
	free(dc.slot);
	free(df.slot);
	policy_compiled_free(cp);
	srv_pc_inputs_free(&in);
	sp->st.compiles++;
	sp->st.last_compile_ms = srv_ms_since(&t0);
	sp->next_compile_ms =
	    srv_now_ms() + (uint64_t)(SRV_COMPILE_GAP * sp->st.last_compile_ms);
	if (r < 0)
		sp->st.compile_failures++;
	return r;
}

static int policy_state_init(struct ctl_server *s)
{
	if (s->pol)
		return 0;
	struct srv_policy *sp = calloc(1, sizeof *sp);
	struct srv_pfilter *deny = calloc(1, sizeof *deny);
	if (!sp || !deny) {
		free(sp);
		free(deny);
		return -ENOMEM;
	}
	deny->refs = 1;
	srv_pfilter_hash(deny);
	sp->deny = deny;
	s->pol = sp;
	return 0;
}

/* Every node's map is brought to the new state soon. */
static void policy_changed(struct ctl_server *s)
{
	s->pol_gen++;
	srv_dsets_clear(s);
	srv_broadcast_schedule(s);
}

static void policy_clear(struct ctl_server *s)
{
	struct srv_policy *sp = s->pol;
	if (!sp || !sp->active)
		return;
	srv_pc_pnodes_free(sp->nodes, sp->n_nodes);
	sp->nodes = NULL;
	sp->n_nodes = 0;
	free(sp->changed);
	sp->changed = NULL;
	sp->n_changed = 0;
	sp->has_changed = false;
	policy_free(sp->pol);
	sp->pol = NULL;
	sp->active = false;
	sp->compiled = false;
	/* the tags as stored again */
	for (size_t i = 0; i < s->n_nodes; i++)
		srv_snap_set_tags(s, i, s->nodes[i].stags ? s->nodes[i].stags : "");
	log_info("mesh-control: access policy removed: every node sees and may reach "
	         "every other again");
	policy_changed(s);
}

/* Puts p (taken; NULL: a stored policy that did not parse) in force. A
 * compile failure keeps the last good state, or with none every node sees
 * nobody (never allow-all): -EINVAL with err. */
static int policy_install(struct ctl_server *s, struct policy *p, char *err,
                          size_t errlen)
{
	if (policy_state_init(s) < 0) {
		policy_free(p);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	struct srv_policy *sp = s->pol;
	int r = -EINVAL;
	if (p)
		r = compile_now(s, p, err, errlen);
	else
		snprintf(err, errlen, "the stored policy does not parse");
	policy_free(sp->pol);
	sp->pol = p;
	bool was = sp->active;
	sp->active = true;
	s->pol_dirty = false;
	if (r < 0)
		log_warn("mesh-control: access policy: %s; %s", err,
		         sp->compiled
		             ? "the last good policy state stays in force"
		             : "every node sees nobody and accepts nothing until "
		               "it is fixed (fail closed)");
	else
		log_info("mesh-control: access policy %s: %zu nodes, %zu visibility "
		         "classes, compiled in %.1f ms",
		         was ? "changed" : "set", sp->n_nodes, sp->st.classes,
		         sp->st.last_compile_ms);
	policy_changed(s);
	return r;
}

int ctl_server_policy_apply_text(struct ctl_server *s, const char *text, size_t len,
                                 char *err, size_t errlen)
{
	if (!text) {
		policy_clear(s);
		return 0;
	}
	struct policy_error pe;
	struct policy *p = policy_parse(text, len, &pe);
	if (!p) {
		policy_error_format(&pe, err, errlen);
		return -EINVAL;
	}
	return policy_install(s, p, err, errlen);
}

/* The store could not say whether a policy is set (busy, I/O, memory).
 * Never read yet (at startup): fail closed, a policy counts as set and
 * uncompiled, so every node sees nobody and accepts nothing (control
 * review M3). Read before: what was read stays in force. Tried again in
 * SRV_POLICY_RETRY_MS with or without a store change (pol_checked_v stays
 * behind, so every broadcast reads it too). */
static void policy_read_failed(struct ctl_server *s)
{
	bool closed = false;
	if (policy_state_init(s) == 0 && !s->pol->active && !s->pol->read_ok) {
		s->pol->active = true;
		s->pol->read_closed = true;
		closed = true;
		policy_changed(s);
	}
	if (s->pol)
		s->pol->st.read_failures++;
	log_warn("mesh-control: reading the access policy from the store: %s; %s; "
	         "trying again in %u ms",
	         ctl_store_errmsg(s->cfg.store),
	         closed ? "until it is read every node sees nobody and accepts "
	                  "nothing (fail closed)"
	                : "the policy in force stays",
	         SRV_POLICY_RETRY_MS);
	struct timeval tv = {SRV_POLICY_RETRY_MS / 1000,
	                     (SRV_POLICY_RETRY_MS % 1000) * 1000};
	if (s->bcast && !evtimer_pending(s->bcast, NULL))
		evtimer_add(s->bcast, &tv);
}

void srv_policy_refresh(struct ctl_server *s)
{
	char err[600];
	if (s->pol_checked_v != s->snap_version) {
		struct ctl_policy_rec rec = {0};
		int g = ctl_store_policy_get(s->cfg.store, &rec);
		int64_t rev = g == 0 ? rec.revision : 0;
		int64_t had = s->pol ? s->pol->store_rev : 0;
		if (g < 0 && g != CTL_STORE_ENOTFOUND) {
			policy_read_failed(s);
		} else {
			s->pol_checked_v = s->snap_version;
			bool closed = s->pol && s->pol->read_closed;
			if (policy_state_init(s) == 0) {
				s->pol->read_closed = false;
				s->pol->read_ok = true;
			}
			if (rev == 0 && (rev != had || closed)) {
				/* none set (also after a failed read closed it) */
				policy_clear(s);
				s->pol->store_rev = 0;
			} else if (rev != had) {
				struct policy_error pe;
				struct policy *p = policy_parse(rec.text, rec.len, &pe);
				if (!p) {
					char msg[600];
					policy_error_format(&pe, msg, sizeof msg);
					log_warn("mesh-control: the stored access policy "
					         "(revision %lld) does not parse: %s",
					         (long long)rev, msg);
				}
				policy_install(s, p, err, sizeof err);
				if (s->pol)
					s->pol->store_rev = rev;
			}
		}
		ctl_policy_rec_free(&rec);
	}
	if (!srv_policy_on(s) || !s->pol_dirty || !s->pol->pol)
		return;
	uint64_t now = srv_now_ms();
	if (now < s->pol->next_compile_ms) {
		/* the next broadcast when it may: no store change need come */
		uint64_t w = s->pol->next_compile_ms - now;
		struct timeval tv = {(time_t)(w / 1000), (suseconds_t)(w % 1000) * 1000};
		if (s->bcast && !evtimer_pending(s->bcast, NULL))
			evtimer_add(s->bcast, &tv);
		s->pol->st.compiles_deferred++;
		return;
	}
	s->pol_dirty = false;
	int r = compile_now(s, s->pol->pol, err, sizeof err);
	if (r < 0)
		log_warn("mesh-control: access policy: compiling against the nodes: %s; "
		         "%s",
		         err,
		         s->pol->compiled ? "the last good state stays in force (nodes "
		                            "that joined since see nobody)"
		                          : "every node sees nobody (fail closed)");
	else
		srv_dsets_clear(s);
}

const char *srv_policy_pub_tags(const struct ctl_server *s, int64_t id,
                                const char *stored)
{
	if (!srv_policy_on(s))
		return stored;
	const struct srv_pnode *pn = srv_policy_node(s, id);
	if (pn && !strcmp(pn->src_tags, stored))
		return pn->eff_tags;
	return ""; /* compiled since it changed: none until then */
}

void srv_policy_free(struct ctl_server *s)
{
	struct srv_policy *sp = s->pol;
	if (!sp)
		return;
	srv_pc_pnodes_free(sp->nodes, sp->n_nodes);
	policy_free(sp->pol);
	srv_pfilter_unref(sp->deny);
	free(sp->changed);
	srv_pclass_unref(sp->d_old);
	srv_pclass_unref(sp->d_new);
	free(sp->d_ids);
	free(sp);
	s->pol = NULL;
}

/* --- for tests and status ----------------------------------------------- */

void ctl_server_policy_get_stats(const struct ctl_server *s,
                                 struct ctl_server_policy_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!s->pol)
		return;
	*st = s->pol->st;
	st->active = s->pol->active;
	st->compiled = s->pol->compiled;
	st->gen = s->pol_gen;
	st->nodes = s->pol->n_nodes;
}

int ctl_server_policy_node_get(const struct ctl_server *s, int64_t id,
                               struct ctl_server_policy_node *out)
{
	memset(out, 0, sizeof *out);
	const struct srv_node *self = srv_snap_find(s, id);
	if (!self)
		return -ENOENT;
	snprintf(out->tags, sizeof out->tags, "%s", self->peer.tags);
	/* what its online connection's map holds */
	for (const struct srv_conn *c = srv_conn_first_of(s, id); c;
	     c = srv_conn_next_of(c))
		if (c->state == SRV_ONLINE) {
			out->online = true;
			out->last_filter_op = c->pol_last_op;
			out->last_reach = c->pol_last_reach;
			out->last_reach_id = (uint64_t)c->pol_last_reach_id;
			out->map_current = !c->streaming &&
			                   c->sent_version == s->snap_version &&
			                   c->pol_gen == s->pol_gen && c->pol_sent;
		}
	if (!srv_policy_on(s))
		return 0;
	out->has_filter = true;
	out->compiled = srv_policy_node(s, id) != NULL;
	out->filter = &srv_policy_filter_of(s, id)->f;
	const struct srv_pnode *pn = srv_policy_node(s, id);
	const struct srv_pclass *cl = pn ? pn->cls : NULL;
	size_t n = cl ? cl->n : 0;
	out->visible = calloc(n ? n : 1, sizeof *out->visible);
	out->reach = calloc(n ? n : 1, sizeof *out->reach);
	if (!out->visible || !out->reach) {
		ctl_server_policy_node_free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (cl->ids[i] == id)
			continue;
		out->visible[out->n_visible++] = (uint64_t)cl->ids[i];
		int r = srv_policy_reach(s, self, cl->ids[i], &out->reach[out->n_reach]);
		if (r < 0) {
			ctl_server_policy_node_free(out);
			return r;
		}
		out->n_reach += (size_t)r;
	}
	return 0;
}

void ctl_server_policy_node_free(struct ctl_server_policy_node *n)
{
	for (size_t i = 0; n->reach && i < n->n_reach; i++)
		srv_reach_clear(&n->reach[i]);
	free(n->reach);
	free(n->visible);
	memset(n, 0, sizeof *n);
}
