/* mesh-control's MAP_DELTA for a node under an access policy (or whose map
 * still holds one: the policy was just removed). What changed since its
 * base (the shared delta set, server_map.c) is filtered by what the node
 * sees, and what the policy changed since its map was current is added:
 * peers it now sees (whole entries), ids it no longer sees, its filter
 * (SET, or CLEAR when the policy went), and the reach entries that changed
 * (a peer's filter changed, or the peer is new to it). Encoded for this
 * node alone: under a policy no two nodes need share a body. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

struct pdelta {
	const struct srv_node **whole;
	size_t n_whole, cap_whole;
	const struct srv_node **part;
	size_t n_part, cap_part;
	uint64_t *removed;
	size_t n_removed, cap_removed;
	struct ctl_reach *reach;
	size_t n_reach, cap_reach;
	size_t est;
};

static void pdelta_free(struct pdelta *p)
{
	free(p->whole);
	free(p->part);
	free(p->removed);
	for (size_t i = 0; i < p->n_reach; i++)
		srv_reach_clear(&p->reach[i]);
	free(p->reach);
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	void *nv = realloc(*v, nc * size);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = nc;
	return 0;
}

static int add_whole(struct pdelta *p, const struct srv_node *n)
{
	if (grow((void **)&p->whole, &p->cap_whole, p->n_whole, sizeof *p->whole) < 0)
		return -ENOMEM;
	p->whole[p->n_whole++] = n;
	p->est += n->pj_len + 1;
	return 0;
}

static int add_part(struct pdelta *p, const struct srv_node *n)
{
	if (grow((void **)&p->part, &p->cap_part, p->n_part, sizeof *p->part) < 0)
		return -ENOMEM;
	p->part[p->n_part++] = n;
	p->est += 160 + (size_t)(CTL_ADDRSTR_MAX + 3) * (n->peer.n_eps + 1u);
	return 0;
}

static int add_removed(struct pdelta *p, int64_t id)
{
	if (grow((void **)&p->removed, &p->cap_removed, p->n_removed,
	         sizeof *p->removed) < 0)
		return -ENOMEM;
	p->removed[p->n_removed++] = (uint64_t)id;
	p->est += 12;
	return 0;
}

static int cmp_node(const void *a, const void *b)
{
	const struct srv_node *x = *(const struct srv_node *const *)a;
	const struct srv_node *y = *(const struct srv_node *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool has_node(const struct srv_node *const *v, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo]->id == id;
}

/* Sorted, unique; a peer both whole and patched goes whole. */
static void pdelta_normalise(struct pdelta *p)
{
	if (p->n_whole > 1)
		qsort(p->whole, p->n_whole, sizeof *p->whole, cmp_node);
	size_t k = 0;
	for (size_t i = 0; i < p->n_whole; i++)
		if (!k || p->whole[i] != p->whole[k - 1])
			p->whole[k++] = p->whole[i];
	p->n_whole = k;
	if (p->n_part > 1)
		qsort(p->part, p->n_part, sizeof *p->part, cmp_node);
	k = 0;
	for (size_t i = 0; i < p->n_part; i++)
		if ((!k || p->part[i] != p->part[k - 1]) &&
		    !has_node(p->whole, p->n_whole, p->part[i]->id))
			p->part[k++] = p->part[i];
	p->n_part = k;
	if (p->n_removed > 1)
		qsort(p->removed, p->n_removed, sizeof *p->removed, cmp_u64);
	k = 0;
	for (size_t i = 0; i < p->n_removed; i++)
		if (!k || p->removed[i] != p->removed[k - 1])
			p->removed[k++] = p->removed[i];
	p->n_removed = k;
}

/* Whether a map whose class is cl (all: every peer, no policy) has id. */
static bool sees(bool all, const struct srv_pclass *cl, int64_t id)
{
	return all || srv_pclass_has(cl, id);
}

/* Peer id as the policy changed it for c: its whole entry when the tags
 * it publishes changed, its reach when its filter changed (even to
 * nothing) or it is new to c (only with something), or every peer's when
 * the policy is new to c's map. */
static int peer_policy(struct srv_conn *c, struct pdelta *p, const struct srv_node *me,
                       int64_t id, bool had, int64_t now)
{
	struct ctl_server *s = c->s;
	const struct srv_pnode *pn = srv_policy_node(s, id);
	const struct srv_node *n = srv_snap_find(s, id);
	if (had && pn && pn->gen_entry > c->pol_gen && n && n->pj &&
	    srv_node_visible(n, now) && add_whole(p, n) < 0)
		return -ENOMEM;
	bool changed = !c->pol_sent || !pn || pn->gen_filter > c->pol_gen;
	if (had && !changed)
		return 0;
	if (grow((void **)&p->reach, &p->cap_reach, p->n_reach, sizeof *p->reach) < 0)
		return -ENOMEM;
	int r = srv_policy_reach(s, me, id, &p->reach[p->n_reach]);
	if (r < 0)
		return r;
	if (r > 0 || (had && c->pol_sent)) {
		const struct ctl_reach *e = &p->reach[p->n_reach++];
		p->est += 40 + 12 * (e->n_tcp + e->n_udp);
	}
	return 0;
}

/* What the policy changed for c since its map was current: peers in and
 * out, entries whose published tags changed, reach entries. A map current
 * before the latest compile looks at the peers it added or removed (one
 * diff per pair of classes, shared by every node of the class) and the
 * nodes that compile changed, not at every peer. */
static int policy_part(struct srv_conn *c, bool on, struct srv_pclass *ncl,
                       struct pdelta *p)
{
	struct ctl_server *s = c->s;
	int64_t now = (int64_t)time(NULL), self = c->node_id;
	bool oall = !c->pol_sent, nall = !on, mixed = c->pol_mixed;
	struct srv_pclass *ocl = c->pol_cls;
	bool same = !mixed && !oall && !nall &&
	            (ocl == ncl || (ocl && ncl && ocl->n == ncl->n &&
	                            !memcmp(ocl->hash, ncl->hash, sizeof ocl->hash)));
	const int64_t *add = NULL, *rm = NULL;
	size_t n_add = 0, n_rm = 0;
	bool diff = !mixed && !same && !oall && !nall && ocl && ncl;
	if (diff && srv_policy_class_diff(s, ocl, ncl, &add, &n_add, &rm, &n_rm) < 0)
		return -ENOMEM;
	if (diff) {
		for (size_t i = 0; i < n_add; i++) {
			const struct srv_node *n = srv_snap_find(s, add[i]);
			if (n && n->id != self && n->pj && srv_node_visible(n, now) &&
			    add_whole(p, n) < 0)
				return -ENOMEM;
		}
		for (size_t i = 0; i < n_rm; i++)
			if (rm[i] != self && add_removed(p, rm[i]) < 0)
				return -ENOMEM;
	} else if (!same) {
		/* now sees: whole entries of those it did not */
		if (nall) {
			for (size_t i = 0; i < s->n_nodes; i++) {
				const struct srv_node *n = &s->nodes[i];
				if (n->id != self && n->pj && srv_node_visible(n, now) &&
				    (mixed || !sees(oall, ocl, n->id)) && add_whole(p, n) < 0)
					return -ENOMEM;
			}
		} else {
			for (size_t i = 0; ncl && i < ncl->n; i++) {
				const struct srv_node *n = srv_snap_find(s, ncl->ids[i]);
				if (n && n->id != self && n->pj &&
				    srv_node_visible(n, now) &&
				    (mixed || !sees(oall, ocl, n->id)) && add_whole(p, n) < 0)
					return -ENOMEM;
			}
		}
		/* no longer sees (a mixed map: anything it does not see now) */
		if (oall || mixed) {
			for (size_t i = 0; i < s->n_nodes; i++) {
				const struct srv_node *n = &s->nodes[i];
				if (n->id != self && n->approved &&
				    !sees(nall, ncl, n->id) && add_removed(p, n->id) < 0)
					return -ENOMEM;
			}
		} else {
			for (size_t i = 0; ocl && i < ocl->n; i++)
				if (ocl->ids[i] != self &&
				    !sees(nall, ncl, ocl->ids[i]) &&
				    add_removed(p, ocl->ids[i]) < 0)
					return -ENOMEM;
		}
	}
	if (!on)
		return 0;
	const struct srv_node *me = srv_snap_find(s, self);
	if (!me || !ncl)
		return 0;
	const int64_t *chg;
	size_t n_chg;
	int r = 0;
	if (c->pol_sent && (same || diff) &&
	    srv_policy_changed_since(s, c->pol_gen, &chg, &n_chg)) {
		for (size_t i = 0; i < n_add && r == 0; i++)
			if (add[i] != self)
				r = peer_policy(c, p, me, add[i], false, now);
		for (size_t i = 0; i < n_chg && r == 0; i++)
			if (chg[i] != self && srv_pclass_has(ncl, chg[i]) &&
			    srv_pclass_has(ocl, chg[i]))
				r = peer_policy(c, p, me, chg[i], true, now);
		return r;
	}
	for (size_t i = 0; i < ncl->n && r == 0; i++)
		if (ncl->ids[i] != self)
			r = peer_policy(c, p, me, ncl->ids[i],
			                sees(oall, ocl, ncl->ids[i]), now);
	return r;
}

static int encode_send(struct srv_conn *c, const struct delta_set *d, struct pdelta *p,
                       int op, const struct ctl_filter *filter)
{
	struct ctl_server *s = c->s;
	bool patches = (c->caps & CTL_CAP_PEER_PATCH) != 0;
	struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA};
	struct ctl_map_delta *md = &m.u.delta;
	md->version = (uint64_t)s->snap_version;
	md->base_version = (uint64_t)d->base;
	md->has_relays = c->relays_stale;
	md->relays = s->relays;
	md->n_relays = s->n_relays;
	md->removed = p->removed;
	md->n_removed = p->n_removed;
	md->filter_op = op;
	if (op == CTL_FILTER_SET)
		md->filter = *filter; /* borrowed */
	md->reach = p->reach;
	md->n_reach = p->n_reach;
	const struct srv_node *own = srv_snap_find(s, c->node_id);
	if (own && srv_own_owner_changed(c)) { /* its own new user or tags */
		md->has_self = true;
		memcpy(md->self_user, own->peer.user, sizeof md->self_user);
		memcpy(md->self_tags, own->peer.tags, sizeof md->self_tags);
	}
	size_t cap = p->n_whole + p->n_part;
	struct ctl_msg_text *t = malloc((cap ? cap : 1) * sizeof *t);
	struct ctl_peer_patch *pp = malloc((p->n_part ? p->n_part : 1) * sizeof *pp);
	if (!t || !pp) {
		free(t);
		free(pp);
		return -ENOMEM;
	}
	size_t nt = 0;
	for (size_t i = 0; i < p->n_whole; i++)
		t[nt++] = (struct ctl_msg_text){p->whole[i]->pj, p->whole[i]->pj_len};
	for (size_t i = 0; i < p->n_part; i++) {
		if (patches)
			srv_make_patch(p->part[i], d->base, &pp[md->n_patches++]);
		else
			t[nt++] =
			    (struct ctl_msg_text){p->part[i]->pj, p->part[i]->pj_len};
	}
	md->patches = pp;
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	int r = ctl_msg_encode_map_texts(&m, t, nt, &body, &len, &me);
	free(t);
	free(pp);
	if (r < 0) {
		log_warn(
		    "mesh-control: node %lld: MAP_DELTA encode: %s; a full map instead",
		    (long long)c->node_id, me.text);
		return 1;
	}
	if (len > CTL_FRAME_BODY_MAX) {
		free(body);
		return 1;
	}
	r = srv_send_map_body(c, CTL_MSG_MAP_DELTA, body, len);
	free(body);
	if (r == 0 && md->has_self) {
		memcpy(c->own_user, md->self_user, sizeof c->own_user);
		memcpy(c->own_tags, md->self_tags, sizeof c->own_tags);
	}
	return r;
}

bool srv_own_owner_changed(const struct srv_conn *c)
{
	const struct srv_node *me = srv_snap_find(c->s, c->node_id);
	return me && (strcmp(me->peer.user, c->own_user) != 0 ||
	              strcmp(me->peer.tags, c->own_tags) != 0);
}

int srv_policy_send_delta(struct srv_conn *c, struct delta_set *d)
{
	struct ctl_server *s = c->s;
	int64_t self = c->node_id;
	bool on = srv_policy_on(s);
	const struct srv_pnode *me = on ? srv_policy_node(s, self) : NULL;
	struct srv_pclass *ncl = me ? me->cls : NULL;
	bool oall = !c->pol_sent, nall = !on;
	struct pdelta p = {0};
	int r = 0;
	/* what changed since its base, as far as it sees */
	for (size_t i = 0; i < d->n_whole && r == 0; i++) {
		const struct srv_node *n = d->whole[i];
		if (n->id == self)
			continue;
		if (sees(nall, ncl, n->id))
			r = add_whole(&p, n);
		else if (sees(oall, c->pol_cls, n->id))
			r = add_removed(&p, n->id);
	}
	for (size_t i = 0; i < d->n_part && r == 0; i++) {
		const struct srv_node *n = d->part[i];
		if (n->id == self)
			continue;
		bool had = sees(oall, c->pol_cls, n->id);
		if (sees(nall, ncl, n->id))
			r = had ? add_part(&p, n) : add_whole(&p, n);
		else if (had)
			r = add_removed(&p, n->id);
	}
	for (size_t i = 0; i < d->n_removed && r == 0; i++)
		if (sees(oall, c->pol_cls, (int64_t)d->removed[i]))
			r = add_removed(&p, (int64_t)d->removed[i]);
	/* what the policy changed since its map was current */
	bool policy_moved = c->pol_gen != s->pol_gen || c->pol_sent != on;
	if (r == 0 && policy_moved)
		r = policy_part(c, on, ncl, &p);
	int op = CTL_FILTER_KEEP;
	const struct srv_pfilter *f = on ? srv_policy_filter_of(s, self) : NULL;
	if (!on && c->pol_sent)
		op = CTL_FILTER_CLEAR;
	else if (on && (!c->pol_sent || memcmp(c->pol_fhash, f->hash, sizeof f->hash)))
		op = CTL_FILTER_SET;
	if (r < 0)
		goto out;
	pdelta_normalise(&p);
	bool empty = !p.n_whole && !p.n_part && !p.n_removed && !p.n_reach &&
	             op == CTL_FILTER_KEEP && !c->relays_stale &&
	             !srv_own_owner_changed(c);
	if (empty && c->sent_version == s->snap_version) {
		srv_policy_conn_record(c);
		goto out;
	}
	/* Nothing it sees changed, but the map version moved: an empty delta
	 * (version and base only) keeps its version the server's, or the next
	 * delta's base would not be the version it holds and it would
	 * reconnect for a full map. */
	if (p.n_whole + p.n_part > CTL_PEERS_MAX || p.n_removed > CTL_REMOVED_MAX) {
		r = 1;
		goto out;
	}
	/* A big catch-up: as in send_delta (server_map.c). */
	if (p.est > SRV_CHUNK_BYTES) {
		if ((c->caps & CTL_CAP_MAP_CHUNKS) && p.est > d->map_bytes / 2 &&
		    !c->fresh_full) {
			r = 1;
			goto out;
		}
		if (srv_over_budget(c))
			goto out; /* keeps its version; srv_resume_cb */
	}
	r = encode_send(c, d, &p, op, f ? &f->f : NULL);
	if (r == 0) {
		s->st.maps_delta++;
		c->sent_version = s->snap_version;
		c->fresh_full = false;
		c->relays_stale = false;
		c->pol_last_op = (uint8_t)op;
		c->pol_last_reach = (uint32_t)p.n_reach;
		c->pol_last_reach_id = p.n_reach ? (int64_t)p.reach[0].id : 0;
		srv_policy_conn_record(c);
	}
out:
	pdelta_free(&p);
	return r;
}
