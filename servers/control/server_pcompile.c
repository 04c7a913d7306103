/* mesh-control's access policy, compiling (server_pcompile.h): the
 * policy's view of the snapshot's nodes, and each node's class, filter in
 * map form and published tags, deduplicated across a compile and with the
 * previous one. server_policy.c holds the state and decides when. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/policy/policy.h"
#include "core/util/log.h"
#include "servers/control/server_int.h"
#include "servers/control/server_pcompile.h"

static void pclass_hash(struct srv_pclass *cl)
{
	crypto_generichash(cl->hash, sizeof cl->hash, (const uint8_t *)cl->ids,
	                   cl->n * sizeof *cl->ids, NULL, 0);
}

int srv_pc_dedup_init(struct srv_pc_dedup *d, size_t n)
{
	d->cap = 16;
	while (d->cap < 2 * n + 2)
		d->cap *= 2;
	d->slot = calloc(d->cap, sizeof *d->slot);
	return d->slot ? 0 : -ENOMEM;
}

struct srv_pclass *srv_pc_class_find(struct srv_pc_dedup *d, struct srv_pclass *cl)
{
	uint64_t h;
	memcpy(&h, cl->hash, sizeof h);
	for (size_t i = h & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
		struct srv_pclass *o = d->slot[i];
		if (!o) {
			d->slot[i] = cl;
			return cl;
		}
		if (o->n == cl->n && !memcmp(o->hash, cl->hash, sizeof o->hash) &&
		    !memcmp(o->ids, cl->ids, cl->n * sizeof *cl->ids))
			return o;
	}
}

struct srv_pfilter *srv_pc_filter_find(struct srv_pc_dedup *d, struct srv_pfilter *f)
{
	uint64_t h;
	memcpy(&h, f->hash, sizeof h);
	for (size_t i = h & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
		struct srv_pfilter *o = d->slot[i];
		if (!o) {
			d->slot[i] = f;
			return f;
		}
		if (!memcmp(o->hash, f->hash, sizeof o->hash))
			return o;
	}
}

void srv_pc_pnodes_free(struct srv_pnode *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		srv_pclass_unref(v[i].cls);
		srv_pfilter_unref(v[i].filter);
		free(v[i].src_tags);
		free(v[i].eff_tags);
	}
	free(v);
}

/* The tags of nodes[i] the policy accepts, comma-joined, malloc'd.
 * policy_node_tags is the policy module's (tags whose owner is the node's
 * user); until it is on this branch, the tags as stored. The one place to
 * switch. */
static char *effective_tags(const struct policy_compiled *cp, size_t i,
                            const struct policy_node *pn)
{
	(void)pn;
	const char *const *tags;
	size_t n = policy_node_tags(cp, i, &tags);
	size_t len = 0;
	for (size_t k = 0; k < n; k++)
		len += strlen(tags[k]) + 1;
	char *out = malloc(len + 1), *p = out;
	if (!out)
		return NULL;
	*p = 0;
	for (size_t k = 0; k < n; k++)
		p += sprintf(p, "%s%s", k ? "," : "", tags[k]);
	return out;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int srv_pc_memo_init(struct srv_pc_memo *m, size_t n)
{
	memset(m, 0, sizeof *m);
	m->cap = 16;
	while (m->cap < 2 * n + 2)
		m->cap *= 2;
	m->pf = calloc(m->cap, sizeof *m->pf);
	m->out = calloc(m->cap, sizeof *m->out);
	return m->pf && m->out ? 0 : -ENOMEM;
}

void srv_pc_memo_free(struct srv_pc_memo *m)
{
	for (size_t i = 0; m->pf && i < m->cap; i++)
		policy_filter_free(m->pf[i]);
	free(m->pf);
	free(m->out);
}

/* The slot of pf (empty when not met yet). */
static size_t memo_slot(const struct srv_pc_memo *m, const struct policy_filter *pf)
{
	uint64_t h = (uint64_t)(uintptr_t)pf * 0x9E3779B97F4A7C15ull;
	size_t i = (size_t)(h >> 20) & (m->cap - 1);
	while (m->pf[i] && m->pf[i] != pf)
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* nodes[i]'s class, deduplicated through dc (and the recent ones). */
static int class_build(const struct policy_compiled *cp, const struct policy_node *in,
                       size_t n_in, size_t i, struct srv_pc_dedup *dc,
                       struct srv_pc_memo *m, struct srv_pclass **outp)
{
	int64_t self = (int64_t)in[i].id;
	size_t *vis = NULL, nv = 0;
	if (policy_node_visible(cp, i, &vis, &nv) < 0)
		return -ENOMEM;
	int64_t *ids = malloc((nv + 1) * sizeof *ids);
	if (!ids) {
		free(vis);
		return -ENOMEM;
	}
	/* in[] is in id order (the snapshot's), vis ascending: merge self */
	size_t k = 0;
	bool put = false;
	for (size_t j = 0; j < nv; j++) {
		int64_t id = vis[j] < n_in ? (int64_t)in[vis[j]].id : self;
		if (!put && self <= id) {
			ids[k++] = self;
			put = true;
		}
		ids[k++] = id;
	}
	if (!put)
		ids[k++] = self;
	free(vis);
	bool sorted = true;
	for (size_t j = 1; j < k && sorted; j++)
		sorted = ids[j - 1] <= ids[j];
	if (!sorted)
		qsort(ids, k, sizeof *ids, cmp_i64);
	for (size_t r = 0; r < SRV_PC_RECENT; r++) {
		struct srv_pclass *o = m->recent[r];
		if (o && o->n == k && !memcmp(o->ids, ids, k * sizeof *ids)) {
			free(ids);
			*outp = o;
			return 0;
		}
	}
	struct srv_pclass *cl = calloc(1, sizeof *cl);
	if (!cl) {
		free(ids);
		return -ENOMEM;
	}
	cl->ids = ids;
	cl->n = k;
	pclass_hash(cl);
	struct srv_pclass *found = srv_pc_class_find(dc, cl);
	if (found != cl) {
		free(cl->ids);
		free(cl);
	}
	m->recent[m->next_recent++ % SRV_PC_RECENT] = found;
	*outp = found;
	return 0;
}

/* nodes[i]'s filter in map form, converted once per core/policy filter
 * and deduplicated through df; deny-all past the map's caps. */
static int filter_build(struct srv_pfilter *deny, uint64_t *n_denied,
                        const struct policy_compiled *cp, const struct policy_node *in,
                        size_t i, struct srv_pc_dedup *df, struct srv_pc_memo *m,
                        struct srv_pfilter **outp)
{
	struct policy_error pe;
	struct policy_filter *pf = policy_node_filter(cp, i, &pe);
	struct srv_pfilter *res = NULL;
	size_t slot = 0;
	if (pf) {
		slot = memo_slot(m, pf);
		if (m->pf[slot]) {
			policy_filter_free(pf); /* the memo holds one */
			res = m->out[slot];
			goto done;
		}
	}
	struct srv_pfilter *f = calloc(1, sizeof *f);
	if (!f) {
		policy_filter_free(pf);
		return -ENOMEM;
	}
	int r = pf ? srv_filter_convert(pf, &f->f) : -E2BIG;
	if (r == -ENOMEM) {
		policy_filter_free(pf);
		free(f);
		return r;
	}
	if (r < 0) {
		if (!m->denied_msg[0]) {
			if (!pf)
				policy_error_format(&pe, m->denied_msg,
				                    sizeof m->denied_msg);
			else
				snprintf(
				    m->denied_msg, sizeof m->denied_msg,
				    "more than a map carries (%u source blocks, %u "
				    "port ranges, %u bytes); the policy must name "
				    "fewer separate sources for it (a group, a tag or "
				    "a CIDR)",
				    CTL_FILTER_BLOCKS_MAX, CTL_FILTER_RANGES_MAX,
				    SRV_FILTER_BYTES_MAX);
		}
		free(f);
	} else {
		srv_pfilter_hash(f);
		res = srv_pc_filter_find(df, f);
		if (res != f) {
			srv_filter_clear(&f->f);
			free(f);
		}
	}
	if (pf) {
		m->pf[slot] = pf;
		m->out[slot] = res;
	}
done:
	if (!res) {
		if (!m->denied++)
			m->denied_first = (int64_t)in[i].id;
		(*n_denied)++;
		res = deny;
	}
	*outp = srv_pfilter_ref(res);
	return 0;
}

/* Builds nodes[i]'s state; its class and filter deduplicated through dc
 * and df (and m). */
int srv_pc_pnode_build(struct srv_pfilter *deny, uint64_t *n_denied,
                       const struct policy_compiled *cp, const struct policy_node *in,
                       size_t n_in, size_t i, const char *stored, struct srv_pc_dedup *dc,
                       struct srv_pc_dedup *df, struct srv_pc_memo *m,
                       struct srv_pnode *out)
{
	memset(out, 0, sizeof *out);
	out->id = (int64_t)in[i].id;
	struct srv_pclass *cl;
	int r = class_build(cp, in, n_in, i, dc, m, &cl);
	if (r < 0)
		return r;
	out->cls = srv_pclass_ref(cl);
	if ((r = filter_build(deny, n_denied, cp, in, i, df, m, &out->filter)) < 0)
		return r;
	out->eff_tags = effective_tags(cp, i, &in[i]);
	out->src_tags = strdup(stored ? stored : "");
	return out->eff_tags && out->src_tags ? 0 : -ENOMEM;
}

void srv_pc_inputs_free(struct srv_pc_inputs *in)
{
	for (size_t i = 0; in->bufs && i < in->n_bufs; i++)
		free(in->bufs[i]);
	free(in->bufs);
	free(in->tagv);
	free(in->n);
	free(in->snap_idx);
}

int srv_pc_inputs_build(const struct ctl_server *s, struct srv_pc_inputs *in)
{
	int64_t now = (int64_t)time(NULL);
	size_t n = 0, ntags = 0;
	memset(in, 0, sizeof *in);
	for (size_t i = 0; i < s->n_nodes; i++)
		if (srv_node_visible(&s->nodes[i], now)) {
			n++;
			ntags += CTL_TAGS_MAX;
		}
	in->n = calloc(n ? n : 1, sizeof *in->n);
	in->bufs = calloc(n ? n : 1, sizeof *in->bufs);
	in->tagv = calloc(ntags ? ntags : 1, sizeof *in->tagv);
	in->snap_idx = calloc(n ? n : 1, sizeof *in->snap_idx);
	if (!in->n || !in->bufs || !in->tagv || !in->snap_idx)
		return -ENOMEM;
	size_t tv = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *sn = &s->nodes[i];
		if (!srv_node_visible(sn, now))
			continue;
		struct policy_node *pn = &in->n[in->len];
		in->snap_idx[in->len] = i;
		pn->id = (uint64_t)sn->id;
		pn->name = sn->peer.name;
		for (size_t a = 0; a < sn->peer.n_addrs && a < CTL_ADDRS_MAX; a++) {
			const struct ctl_ip *ip = &sn->peer.addrs[a];
			if (ip->family == 4)
				pn->v4 = (uint32_t)ip->addr[0] << 24 |
				         (uint32_t)ip->addr[1] << 16 |
				         (uint32_t)ip->addr[2] << 8 | ip->addr[3];
			else if (ip->family == 6) {
				pn->has_v6 = true;
				memcpy(pn->v6, ip->addr, 16);
			}
		}
		pn->user = sn->peer.user;
		/* the stored tags, not the published ones */
		char *b = strdup(sn->stags ? sn->stags : "");
		in->bufs[in->len++] = b;
		in->n_bufs = in->len;
		if (!b)
			return -ENOMEM;
		pn->tags = &in->tagv[tv];
		char *save = NULL;
		/* only "tag:NAME", as policy set sees them (policy_srv.c):
		 * anything else would make the node "tagged" (no longer matched
		 * as its user) here alone (control review L1) */
		for (char *t = strtok_r(b, ",", &save); t && pn->n_tags < CTL_TAGS_MAX;
		     t = strtok_r(NULL, ",", &save))
			if (strlen(t) > 4 && !strncmp(t, "tag:", 4))
				in->tagv[tv + pn->n_tags++] = t;
		tv += pn->n_tags;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The policy did not compile against the nodes (a node's user named like
 * a host alias: policy_compile refuses the lot). Finds the users p refuses
 * on a node of their own, and drops their nodes from in, so that only they
 * stay uncompiled (see nobody, accept nothing) and the rest of the mesh
 * compiles (control review M1). The number dropped; 0 when no user is to
 * blame (the failure is something else), -ENOMEM. */
int srv_pc_inputs_drop_refused(struct srv_pc_inputs *in, const struct policy *p)
{
	const char **u = malloc((in->len ? in->len : 1) * sizeof *u);
	if (!u)
		return -ENOMEM;
	size_t nu = 0, nbad = 0;
	for (size_t i = 0; i < in->len; i++)
		if (in->n[i].user && in->n[i].user[0])
			u[nu++] = in->n[i].user;
	qsort(u, nu, sizeof *u, cmp_str);
	for (size_t i = 0; i < nu; i++) {
		if (i && !strcmp(u[i], u[i - 1]))
			continue;
		struct policy_node one = {.id = 1, .name = "probe", .user = u[i]};
		struct policy_error pe;
		struct policy_compiled *cp = policy_compile(p, &one, 1, &pe);
		if (!cp)
			u[nbad++] = u[i]; /* sorted still: nbad <= i */
		policy_compiled_free(cp);
	}
	size_t k = 0, dropped = 0;
	for (size_t i = 0; i < in->len; i++) {
		const char *user = in->n[i].user;
		if (user && *user && bsearch(&user, u, nbad, sizeof *u, cmp_str)) {
			if (dropped++ < 3)
				log_warn(
				    "mesh-control: access policy: node %lld (%s) of user "
				    "%s: the policy names a host alias like its user, so "
				    "it sees nobody and accepts nothing; rename the "
				    "alias "
				    "(and write the user as \"%s@\") and set the policy "
				    "again",
				    (long long)in->n[i].id,
				    in->n[i].name ? in->n[i].name : "?", user, user);
			continue;
		}
		in->n[k] = in->n[i];
		in->snap_idx[k++] = in->snap_idx[i];
	}
	if (dropped > 3)
		log_warn("mesh-control: access policy: %zu more nodes left out the same "
		         "way",
		         dropped - 3);
	in->len = k;
	free(u);
	return (int)dropped;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

size_t srv_pc_count_classes(const struct srv_pnode *v, size_t n)
{
	void **p = malloc((n ? n : 1) * sizeof *p);
	if (!p)
		return 0;
	for (size_t i = 0; i < n; i++)
		p[i] = v[i].cls;
	qsort(p, n, sizeof *p, cmp_ptr);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += p[i] && (i == 0 || p[i] != p[i - 1]);
	free(p);
	return k;
}
