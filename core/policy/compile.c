/* The compiler. Identities are resolved once: the nodes' users (sorted,
 * each with its untagged nodes), the tags that count on each node (owned
 * under tagOwners), the nodes of each tag, the nodes sorted by address.
 * Each distinct selector then becomes one selector object in time linear
 * in what it matches, and rules hold selector objects, so a policy costs
 * its distinct selectors, not rules x nodes. A node's visibility set is
 * read in visible.c, its filter built in filter.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

#define POL_MAX_CWARNINGS 50

bool pol_nset_has(const struct pol_nset *s, size_t i)
{
	if (s->all)
		return true;
	if (s->bits)
		return (s->bits[i / 64] >> (i % 64)) & 1;
	uint32_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->idx[mid] == i)
			return true;
		if (s->idx[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool pol_group_has(const struct policy *p, uint32_t g, const char *user)
{
	const struct pol_group *gr = &p->groups[g];
	return gr->n && bsearch(&user, gr->sorted, gr->n, sizeof *gr->sorted, str_cmp);
}

/* --- the compiler's working state ------------------------------------- */

struct uentry {
	const char *name;
	uint32_t node;
};
struct aentry {
	struct pol_u128 a;
	uint32_t node;
};

struct cstate {
	struct policy_compiled *cp;
	struct policy_error *err;
	/* users: sorted names, each with its untagged nodes */
	const char **users;
	uint32_t n_users;
	uint32_t **user_nodes, *n_user_nodes;
	/* tags (by index in the policy): their nodes */
	uint32_t **tag_nodes, *n_tag_nodes;
	/* nodes by address */
	struct aentry *by4, *by6;
	size_t n4, n6;
	uint64_t *scratch; /* one bit per node, kept all zero between uses */
	size_t words;
	/* interning: selector identity -> selector object */
	uint32_t *ht;
	size_t ht_cap;
	uint32_t cap_sobj;
	size_t work;
};

static void cwarn(struct policy_compiled *cp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cwarn(struct policy_compiled *cp, const char *fmt, ...)
{
	if (cp->n_warnings >= POL_MAX_CWARNINGS)
		return;
	if (!cp->warnings &&
	    !(cp->warnings = pol_alloc(&cp->arena,
	                               POL_MAX_CWARNINGS * sizeof *cp->warnings)))
		return;
	va_list ap;
	va_start(ap, fmt);
	pol_vset_err(&cp->warnings[cp->n_warnings++], 0, 0, fmt, ap);
	va_end(ap);
}

static int copy_nodes(struct policy_compiled *cp, const struct policy_node *nodes,
                      size_t n)
{
	struct pol_arena *a = &cp->arena;
	cp->nodes = pol_alloc(a, (n + 1) * sizeof *cp->nodes);
	if (!cp->nodes)
		return -1;
	cp->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct policy_node *s = &nodes[i];
		struct pol_cnode *d = &cp->nodes[i];
		struct policy_ip ip;
		d->id = s->id;
		d->name = s->name ? pol_strndup(a, s->name, strlen(s->name)) : "";
		if (s->user && *s->user &&
		    !(d->user = pol_strndup(a, s->user, strlen(s->user))))
			return -1;
		if (!d->name ||
		    !(d->tags = pol_alloc(a, (s->n_tags + 1) * sizeof(char *))))
			return -1;
		for (size_t t = 0; t < s->n_tags; t++)
			if (!(d->tags[t] = pol_strndup(a, s->tags[t] ? s->tags[t] : "",
			                               s->tags[t] ? strlen(s->tags[t]) : 0)))
				return -1;
		d->n_tags = s->n_tags;
		if ((d->has4 = s->v4 != 0)) {
			policy_ip_v4(&ip, s->v4);
			d->a4 = pol_u128_from_ip(&ip);
		}
		if ((d->has6 = s->has_v6)) {
			policy_ip_v6(&ip, s->v6);
			d->a6 = pol_u128_from_ip(&ip);
		}
	}
	return 0;
}

/* --- tags that count --------------------------------------------------- */

static bool has_tag(const char *const *tags, size_t n, const char *t)
{
	for (size_t k = 0; k < n; k++)
		if (!strcmp(tags[k], t))
			return true;
	return false;
}

/* Does an owner of tag t (by index) own it for node nd, whose tags that
 * count so far are ok[0..nok)? */
static bool owned(const struct policy *p, uint32_t t, const struct pol_cnode *nd,
                  const char *const *ok, size_t nok)
{
	const struct pol_tagowner *to = &p->tagowners[t];
	for (uint32_t k = 0; k < to->n; k++) {
		const struct pol_sel *o = &to->owners[k];
		if (o->kind == SEL_USER && nd->user && !strcmp(o->name, nd->user))
			return true;
		if (o->kind == SEL_GROUP && nd->user && pol_group_has(p, o->group, nd->user))
			return true;
		if (o->kind == SEL_TAG && has_tag(ok, nok, o->name))
			return true;
	}
	return false;
}

/* Keeps each node's tags that are declared and owned by its user (or by a
 * tag it keeps); warns about the others. -1 on no memory (the compile
 * fails: dropping tags would make the node its user's). */
static int settle_tags(struct policy_compiled *cp)
{
	const struct policy *p = cp->p;
	for (size_t i = 0; i < cp->n; i++) {
		struct pol_cnode *nd = &cp->nodes[i];
		const char **raw = nd->tags;
		size_t nraw = nd->n_tags, nok = 0;
		if (!nraw)
			continue;
		const char **ok = calloc(nraw, sizeof *ok);
		bool *taken = calloc(nraw, sizeof *taken);
		if (!ok || !taken) {
			free(ok);
			free(taken);
			return -1;
		}
		for (bool more = true; more;) { /* a tag owned by a tag kept */
			more = false;
			for (size_t k = 0; k < nraw; k++) {
				int t = taken[k] ? -1 : pol_names_find(&p->tags_ix, raw[k]);
				if (t < 0 || has_tag(ok, nok, raw[k]) ||
				    !owned(p, (uint32_t)t, nd, ok, nok))
					continue;
				taken[k] = more = true;
				ok[nok++] = raw[k];
			}
		}
		for (size_t k = 0; k < nraw; k++) {
			char nb[100], tb[100], ub[100];
			if (taken[k] || has_tag(ok, nok, raw[k]))
				continue;
			pol_show(nd->name, nb, sizeof nb);
			pol_show(raw[k], tb, sizeof tb);
			if (pol_names_find(&p->tags_ix, raw[k]) < 0)
				cwarn(cp,
				      "node %s: tag '%s' is ignored: it is not declared under "
				      "\"tagOwners\"",
				      nb, tb);
			else if (!nd->user)
				cwarn(cp,
				      "node %s: tag '%s' is ignored: the node has no user to "
				      "own it",
				      nb, tb);
			else
				cwarn(cp,
				      "node %s: tag '%s' is ignored: its user '%s' does not "
				      "own it; add the user (or a group of it) to "
				      "tagOwners[\"%s\"]",
				      nb, tb, pol_show(nd->user, ub, sizeof ub), tb);
		}
		for (size_t k = 0; k < nok; k++)
			raw[k] = ok[k]; /* the same strings, in the arena */
		nd->n_tags = nok;
		free(ok);
		free(taken);
	}
	return 0;
}

/* --- identities -------------------------------------------------------- */

static int uentry_cmp(const void *a, const void *b)
{
	const struct uentry *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->node > y->node) - (x->node < y->node);
}

static int aentry_cmp(const void *a, const void *b)
{
	const struct aentry *x = a, *y = b;
	int c = pol_u128_cmp(x->a, y->a);
	return c ? c : (x->node > y->node) - (x->node < y->node);
}

static int build_identities(struct cstate *st)
{
	struct policy_compiled *cp = st->cp;
	struct pol_arena *a = &cp->arena;
	size_t n = cp->n, nu = 0;
	struct uentry *ue = malloc((n + 1) * sizeof *ue);
	if (!ue)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (cp->nodes[i].user)
			ue[nu++] = (struct uentry){cp->nodes[i].user, (uint32_t)i};
	qsort(ue, nu, sizeof *ue, uentry_cmp);
	st->users = pol_alloc(a, (nu + 1) * sizeof *st->users);
	st->user_nodes = pol_alloc(a, (nu + 1) * sizeof *st->user_nodes);
	st->n_user_nodes = pol_alloc(a, (nu + 1) * sizeof *st->n_user_nodes);
	uint32_t *flat = pol_alloc(a, (nu + 1) * sizeof *flat);
	if (!st->users || !st->user_nodes || !st->n_user_nodes || !flat) {
		free(ue);
		return -1;
	}
	size_t f = 0;
	for (size_t k = 0; k < nu; k++) {
		if (!st->n_users || strcmp(st->users[st->n_users - 1], ue[k].name)) {
			st->users[st->n_users] = ue[k].name;
			st->user_nodes[st->n_users] = flat + f;
			st->n_users++;
		}
		if (!cp->nodes[ue[k].node].n_tags) { /* a tagged node is not its user's */
			flat[f++] = ue[k].node;
			st->n_user_nodes[st->n_users - 1]++;
		}
	}
	free(ue);

	const struct policy *p = cp->p;
	st->tag_nodes = pol_alloc(a, (p->n_tagowners + 1) * sizeof *st->tag_nodes);
	st->n_tag_nodes = pol_alloc(a, (p->n_tagowners + 1) * sizeof *st->n_tag_nodes);
	if (!st->tag_nodes || !st->n_tag_nodes)
		return -1;
	for (size_t i = 0; i < n; i++) /* counted here, filled after tag_room */
		for (size_t k = 0; k < cp->nodes[i].n_tags; k++) {
			int t = pol_names_find(&p->tags_ix, cp->nodes[i].tags[k]);
			if (t >= 0)
				st->n_tag_nodes[t]++;
		}
	return 0;
}

/* The count pass above leaves the counts; this makes room and refills. */
static int tag_room(struct cstate *st)
{
	const struct policy *p = st->cp->p;
	for (uint32_t t = 0; t < p->n_tagowners; t++) {
		if (!(st->tag_nodes[t] = pol_alloc(&st->cp->arena,
		                                   (st->n_tag_nodes[t] + 1) * sizeof(uint32_t))))
			return -1;
		st->n_tag_nodes[t] = 0;
	}
	return 0;
}

static int build_addr_index(struct cstate *st)
{
	struct policy_compiled *cp = st->cp;
	st->by4 = malloc((cp->n + 1) * sizeof *st->by4);
	st->by6 = malloc((cp->n + 1) * sizeof *st->by6);
	st->words = (cp->n + 63) / 64 + 1;
	st->scratch = calloc(st->words, sizeof *st->scratch);
	if (!st->by4 || !st->by6 || !st->scratch)
		return -1;
	for (size_t i = 0; i < cp->n; i++) {
		if (cp->nodes[i].has4)
			st->by4[st->n4++] = (struct aentry){cp->nodes[i].a4, (uint32_t)i};
		if (cp->nodes[i].has6)
			st->by6[st->n6++] = (struct aentry){cp->nodes[i].a6, (uint32_t)i};
	}
	qsort(st->by4, st->n4, sizeof *st->by4, aentry_cmp);
	qsort(st->by6, st->n6, sizeof *st->by6, aentry_cmp);
	return 0;
}

static void mark_range(struct cstate *st, const struct aentry *v, size_t n,
                       const struct pol_iv *iv)
{
	size_t lo = 0, hi = n; /* the first at or after iv->lo */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pol_u128_cmp(v[mid].a, iv->lo) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && pol_u128_cmp(v[lo].a, iv->hi) <= 0; lo++)
		st->scratch[v[lo].node / 64] |= 1ull << (v[lo].node % 64);
}

/* --- selector objects --------------------------------------------------- */

static const uint32_t *user_find(const struct cstate *st, const char *name, uint32_t *n)
{
	const char **u = bsearch(&name, st->users, st->n_users, sizeof *st->users, str_cmp);
	if (!u) {
		*n = 0;
		return NULL;
	}
	*n = st->n_user_nodes[u - st->users];
	return st->user_nodes[u - st->users];
}

/* The set's index list from the scratch bits (which are cleared). */
static int set_from_scratch(struct cstate *st, struct pol_nset *s)
{
	size_t cnt = 0;
	for (size_t w = 0; w < st->words; w++)
		cnt += (size_t)__builtin_popcountll(st->scratch[w]);
	uint32_t *idx = pol_alloc(&st->cp->arena, (cnt + 1) * sizeof *idx);
	if (!idx)
		return -1;
	size_t k = 0;
	for (size_t w = 0; w < st->words; w++)
		for (uint64_t b = st->scratch[w]; b; b &= b - 1)
			idx[k++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(b));
	memset(st->scratch, 0, st->words * sizeof *st->scratch);
	s->idx = idx;
	s->n = (uint32_t)cnt;
	return 0;
}

static int resolve_set(struct cstate *st, const struct pol_sel *sel, struct pol_nset *s)
{
	const struct policy *p = st->cp->p;
	memset(s, 0, sizeof *s);
	switch (sel->kind) {
	case SEL_ANY:
		s->all = true;
		return 0;
	case SEL_USER:
		s->idx = user_find(st, sel->name, &s->n);
		return 0;
	case SEL_TAG: {
		int t = pol_names_find(&p->tags_ix, sel->name);
		if (t >= 0) {
			s->idx = st->tag_nodes[t];
			s->n = st->n_tag_nodes[t];
		}
		return 0;
	}
	case SEL_GROUP: {
		const struct pol_group *g = &p->groups[sel->group];
		for (uint32_t m = 0; m < g->n; m++) {
			uint32_t nn;
			const uint32_t *un = user_find(st, g->members[m], &nn);
			for (uint32_t k = 0; k < nn; k++)
				st->scratch[un[k] / 64] |= 1ull << (un[k] % 64);
		}
		return set_from_scratch(st, s);
	}
	default:
		mark_range(st, st->by4, st->n4, &sel->iv);
		mark_range(st, st->by6, st->n6, &sel->iv);
		return set_from_scratch(st, s);
	}
}

/* A dense set gets bits too (no bigger than its index list). */
static int set_bits(struct cstate *st, struct pol_nset *s)
{
	if (s->all || (size_t)s->n * 32 < st->cp->n)
		return 0;
	uint64_t *b = pol_alloc(&st->cp->arena, st->words * sizeof *b);
	if (!b)
		return -1;
	for (uint32_t k = 0; k < s->n; k++)
		b[s->idx[k] / 64] |= 1ull << (s->idx[k] % 64);
	s->bits = b;
	return 0;
}

static uint64_t sel_hash(const struct pol_sel *s)
{
	uint64_t h = 1469598103934665603ull ^ s->kind;
	const unsigned char *b;
	size_t n;
	switch (s->kind) {
	case SEL_USER:
	case SEL_TAG:
		b = (const unsigned char *)s->name;
		n = strlen(s->name);
		break;
	case SEL_GROUP:
		b = (const unsigned char *)&s->group;
		n = sizeof s->group;
		break;
	case SEL_PREFIX:
		b = (const unsigned char *)&s->iv;
		n = sizeof s->iv;
		break;
	default:
		n = 0;
		b = NULL;
	}
	for (size_t k = 0; k < n; k++)
		h = (h ^ b[k]) * 1099511628211ull;
	return h;
}

static bool sel_same(const struct pol_sel *a, const struct pol_sel *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case SEL_USER:
	case SEL_TAG:
		return !strcmp(a->name, b->name);
	case SEL_GROUP:
		return a->group == b->group;
	case SEL_PREFIX:
		return !memcmp(&a->iv, &b->iv, sizeof a->iv);
	default:
		return true;
	}
}

static int budget(struct cstate *st, size_t more)
{
	st->work += more;
	if (st->work <= POLICY_COMPILE_MAX_WORK)
		return 0;
	pol_set_err(st->err, 0, 0,
	            "resolving the policy against %zu nodes needs more than %u node "
	            "matches (summed over its distinct selectors); use fewer distinct "
	            "selectors, e.g. one group instead of many overlapping ones",
	            st->cp->n, POLICY_COMPILE_MAX_WORK);
	return -2;
}

/* The selector object of sel's identity (made on first use) into *id:
 * 0, -1 no memory, -2 over budget. */
static int intern(struct cstate *st, const struct pol_sel *sel, uint32_t *id)
{
	struct policy_compiled *cp = st->cp;
	size_t mask = st->ht_cap - 1, h = (size_t)sel_hash(sel) & mask;
	for (; st->ht[h] != UINT32_MAX; h = (h + 1) & mask)
		if (sel_same(cp->sobj[st->ht[h]].sel, sel)) {
			*id = st->ht[h];
			return 0;
		}
	if (cp->n_sobj == st->cap_sobj) {
		uint32_t c = st->cap_sobj ? st->cap_sobj * 2 : 64;
		struct pol_sobj *v = realloc(cp->sobj, c * sizeof *v);
		if (!v)
			return -1;
		cp->sobj = v;
		st->cap_sobj = c;
	}
	struct pol_sobj *o = &cp->sobj[cp->n_sobj];
	memset(o, 0, sizeof *o);
	o->sel = sel;
	if (resolve_set(st, sel, &o->set) || set_bits(st, &o->set))
		return -1;
	int rc = budget(st, o->set.n);
	if (rc)
		return rc;
	st->ht[h] = *id = cp->n_sobj++;
	return 0;
}

/* The source addresses of a selector object used as a source. */
static int sobj_iv(struct cstate *st, struct pol_sobj *o)
{
	struct policy_compiled *cp = st->cp;
	if (o->iv)
		return 0;
	if (o->sel->kind == SEL_ANY || o->sel->kind == SEL_PREFIX) {
		if (!(o->iv = pol_alloc(&cp->arena, sizeof *o->iv)))
			return -1;
		o->iv[0] = o->sel->kind == SEL_ANY
		               ? (struct pol_iv){{0, 0}, {UINT64_MAX, UINT64_MAX}}
		               : o->sel->iv;
		o->n_iv = 1;
		return 0;
	}
	size_t n = 0;
	struct pol_iv *iv = malloc((2 * (size_t)o->set.n + 1) * sizeof *iv);
	if (!iv)
		return -1;
	for (uint32_t k = 0; k < o->set.n; k++) {
		const struct pol_cnode *nd = &cp->nodes[o->set.idx[k]];
		if (nd->has4)
			iv[n++] = (struct pol_iv){nd->a4, nd->a4};
		if (nd->has6)
			iv[n++] = (struct pol_iv){nd->a6, nd->a6};
	}
	pol_iv_normalize(iv, &n);
	int rc = budget(st, n);
	if (!rc && !(o->iv = pol_alloc(&cp->arena, (n + 1) * sizeof *iv)))
		rc = -1;
	if (!rc)
		memcpy(o->iv, iv, n * sizeof *iv);
	o->n_iv = n;
	free(iv);
	return rc;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

struct dtmp {
	uint32_t sobj, d;
};
static int dtmp_cmp(const void *a, const void *b)
{
	const struct dtmp *x = a, *y = b;
	return x->sobj != y->sobj ? (x->sobj > y->sobj ? 1 : -1)
	                          : (x->d > y->d) - (x->d < y->d);
}

static int ports_cmp(const void *a, const void *b)
{
	const struct policy_ports *x = a, *y = b;
	return x->lo != y->lo ? (x->lo < y->lo ? -1 : 1)
	                      : (x->hi > y->hi) - (x->hi < y->hi);
}

size_t pol_ports_merge(struct policy_ports *r, size_t n)
{
	if (n < 2)
		return n;
	qsort(r, n, sizeof *r, ports_cmp);
	size_t o = 0;
	for (size_t i = 1; i < n; i++) {
		if ((uint32_t)r[i].lo <= (uint32_t)r[o].hi + 1) {
			if (r[i].hi > r[o].hi)
				r[o].hi = r[i].hi;
		} else {
			r[++o] = r[i];
		}
	}
	return o + 1;
}

static int compile_rule(struct cstate *st, const struct pol_rule *r, struct pol_crule *cr)
{
	struct policy_compiled *cp = st->cp;
	int rc;
	cr->src = pol_alloc(&cp->arena, (r->n_src + 1) * sizeof *cr->src);
	struct dtmp *dt = malloc((r->n_dst + 1) * sizeof *dt);
	if (!cr->src || !dt) {
		free(dt);
		return -1;
	}
	for (uint32_t k = 0; k < r->n_src; k++)
		if ((rc = intern(st, &r->src[k], &cr->src[k]))) {
			free(dt);
			return rc;
		}
	qsort(cr->src, r->n_src, sizeof *cr->src, u32_cmp);
	for (uint32_t k = 0; k < r->n_src; k++)
		if (!cr->n_src || cr->src[cr->n_src - 1] != cr->src[k])
			cr->src[cr->n_src++] = cr->src[k];
	for (uint32_t k = 0; k < cr->n_src; k++)
		if ((rc = sobj_iv(st, &cp->sobj[cr->src[k]]))) {
			free(dt);
			return rc;
		}
	for (uint32_t d = 0; d < r->n_dst; d++) {
		dt[d].d = d;
		if ((rc = intern(st, &r->dst[d].sel, &dt[d].sobj))) {
			free(dt);
			return rc;
		}
	}
	qsort(dt, r->n_dst, sizeof *dt, dtmp_cmp);
	cr->dst = pol_alloc(&cp->arena, (r->n_dst + 1) * sizeof *cr->dst);
	if (!cr->dst) {
		free(dt);
		return -1;
	}
	for (uint32_t a = 0, b; a < r->n_dst; a = b) {
		size_t np = 0;
		for (b = a; b < r->n_dst && dt[b].sobj == dt[a].sobj; b++)
			np += r->dst[dt[b].d].n_ports;
		struct pol_cdst *o = &cr->dst[cr->n_dst++];
		o->sobj = dt[a].sobj;
		if (!(o->ports = pol_alloc(&cp->arena, (np + 1) * sizeof *o->ports))) {
			free(dt);
			return -1;
		}
		np = 0;
		for (uint32_t k = a; k < b; k++) {
			const struct pol_dst *d = &r->dst[dt[k].d];
			memcpy(o->ports + np, d->ports, d->n_ports * sizeof *d->ports);
			np += d->n_ports;
		}
		o->n_ports = (uint32_t)pol_ports_merge(o->ports, np);
	}
	free(dt);
	return 0;
}

static int compile_tests(struct cstate *st)
{
	struct policy_compiled *cp = st->cp;
	const struct policy *p = cp->p;
	int rc;
	cp->test_src = pol_alloc(&cp->arena, (p->n_tests + 1) * sizeof *cp->test_src);
	cp->case_dst = pol_alloc(&cp->arena, (p->n_tests + 1) * sizeof *cp->case_dst);
	if (!cp->test_src || !cp->case_dst)
		return -1;
	for (uint32_t t = 0; t < p->n_tests; t++) {
		const struct pol_test *te = &p->tests[t];
		if ((rc = intern(st, &te->src, &cp->test_src[t])))
			return rc;
		cp->case_dst[t] =
		    pol_alloc(&cp->arena, (te->n_cases + 1) * sizeof *cp->case_dst[t]);
		if (!cp->case_dst[t])
			return -1;
		for (uint32_t k = 0; k < te->n_cases; k++)
			if ((rc = intern(st, &te->cases[k].dst, &cp->case_dst[t][k])))
				return rc;
	}
	return 0;
}

/* A host alias spelled like a user with nodes: a plain "alice" in the
 * rules means the alias, which is not what whoever wrote it meant. */
static int check_aliases(const struct policy_compiled *cp, struct policy_error *err)
{
	const struct policy *p = cp->p;
	for (size_t i = 0; i < cp->n; i++) {
		int h = cp->nodes[i].user
		            ? pol_names_find(&p->hosts_ix, cp->nodes[i].user)
		            : -1;
		if (h < 0)
			continue;
		char b[100], b2[100];
		pol_set_err(err, p->hosts[h].line, p->hosts[h].col,
		            "host alias '%s' is also the name of a user (of node %s): "
		            "in the rules a plain '%s' means the alias; rename the "
		            "alias and write the user as '%s@'",
		            pol_show(p->hosts[h].name, b, sizeof b),
		            pol_show(cp->nodes[i].name, b2, sizeof b2), b, b);
		return -1;
	}
	return 0;
}

static void cstate_free(struct cstate *st)
{
	free(st->by4);
	free(st->by6);
	free(st->scratch);
	free(st->ht);
}

static size_t n_selectors(const struct policy *p)
{
	size_t n = p->n_tests;
	for (uint32_t r = 0; r < p->n_rules; r++)
		n += p->rules[r].n_src + p->rules[r].n_dst;
	for (uint32_t t = 0; t < p->n_tests; t++)
		n += p->tests[t].n_cases;
	return n;
}

struct policy_compiled *policy_compile(const struct policy *p,
                                       const struct policy_node *nodes, size_t n,
                                       struct policy_error *err)
{
	memset(err, 0, sizeof *err);
	struct cstate st = {.err = err};
	int rc = -1;
	struct policy_compiled *cp = calloc(1, sizeof *cp);
	if (!cp || copy_nodes(cp, nodes, n))
		goto fail;
	cp->p = p;
	if (!p)
		return cp;
	st.cp = cp;
	if (check_aliases(cp, err)) {
		rc = -2;
		goto fail;
	}
	if (settle_tags(cp))
		goto fail;
	for (st.ht_cap = 64; st.ht_cap < 2 * n_selectors(p) + 2; st.ht_cap *= 2)
		;
	st.ht = malloc(st.ht_cap * sizeof *st.ht);
	cp->rules = pol_alloc(&cp->arena, (p->n_rules + 1) * sizeof *cp->rules);
	if (!st.ht || !cp->rules || build_identities(&st) || tag_room(&st))
		goto fail;
	/* build_identities counted each tag's nodes; fill them now */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < cp->nodes[i].n_tags; k++) {
			int t = pol_names_find(&p->tags_ix, cp->nodes[i].tags[k]);
			if (t >= 0)
				st.tag_nodes[t][st.n_tag_nodes[t]++] = (uint32_t)i;
		}
	memset(st.ht, 0xff, st.ht_cap * sizeof *st.ht);
	if (build_addr_index(&st))
		goto fail;
	for (uint32_t r = 0; r < p->n_rules; r++)
		if ((rc = compile_rule(&st, &p->rules[r], &cp->rules[r])))
			goto fail;
	if ((rc = compile_tests(&st)))
		goto fail;
	cstate_free(&st);
	return cp;
fail:
	cstate_free(&st);
	policy_compiled_free(cp);
	if (rc == -1)
		pol_set_err(err, 0, 0, "out of memory");
	return NULL;
}

void policy_compiled_free(struct policy_compiled *cp)
{
	if (!cp)
		return;
	pol_fcache_free(cp->fcache);
	free(cp->sobj);
	pol_arena_free(&cp->arena);
	free(cp);
}

size_t policy_compiled_n_warnings(const struct policy_compiled *cp)
{
	return cp->n_warnings;
}

const struct policy_error *policy_compiled_warning(const struct policy_compiled *cp,
                                                   size_t i)
{
	return i < cp->n_warnings ? &cp->warnings[i] : NULL;
}

size_t policy_node_tags(const struct policy_compiled *cp, size_t i,
                        const char *const **tags)
{
	*tags = NULL;
	if (i >= cp->n)
		return 0;
	*tags = cp->nodes[i].tags;
	return cp->nodes[i].n_tags;
}
