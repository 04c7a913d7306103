/* A node's inbound filter: per protocol, the source address space cut into
 * blocks (each starting where the last one ends), each block holding the
 * merged destination port ranges that its sources may reach. A lookup is
 * two binary searches. Built by a sweep over the rules' (source interval,
 * port range) pairs: at each interval boundary the block's set is the
 * union of the pairs open there; a block with the same set as the one
 * before it is not started. */
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

enum { T_TCP, T_UDP, T_ICMP, T_N };

struct pf_table {
	size_t n;
	struct pol_u128 *lo; /* block k covers [lo[k], lo[k+1]) */
	uint32_t *off, *cnt; /* its ranges in the filter's ranges */
};

struct policy_filter {
	bool all;
	struct pf_table t[T_N];
	struct policy_ports *ranges;
	size_t n_ranges, cap_ranges;
};

struct pf_item {
	struct pol_iv iv;
	struct policy_ports pr;
};

struct pf_ev {
	struct pol_u128 at;
	uint32_t item;
	bool add;
};

struct pf_build {
	struct pf_item *items;
	size_t n, cap;
};

/* Pairs gathered for one protocol of one node before the sweep merges
 * them; past this the filter could not fit its range cap either. */
#define PF_MAX_ITEMS (4 * (size_t)POLICY_FILTER_MAX_RANGES)

/* -1 no memory, -2 too many. */
static int item_add(struct pf_build *b, const struct pol_iv *iv, struct policy_ports pr)
{
	if (b->n >= PF_MAX_ITEMS)
		return -2;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct pf_item *p = realloc(b->items, cap * sizeof *p);
		if (!p)
			return -1;
		b->items = p;
		b->cap = cap;
	}
	b->items[b->n++] = (struct pf_item){*iv, pr};
	return 0;
}

static int ev_cmp(const void *a, const void *b)
{
	const struct pf_ev *x = a, *y = b;
	return pol_u128_cmp(x->at, y->at);
}

static int ports_cmp(const void *a, const void *b)
{
	const struct policy_ports *x = a, *y = b;
	return x->lo != y->lo ? (x->lo < y->lo ? -1 : 1)
	                      : (x->hi > y->hi) - (x->hi < y->hi);
}

/* Sorts and merges r[0..n); returns the new count. */
static size_t ports_merge(struct policy_ports *r, size_t n)
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

static int block_add(struct policy_filter *f, struct pf_table *t, size_t *cap,
                     struct pol_u128 lo, const struct policy_ports *r, size_t n)
{
	/* The same set as the block before: that block goes on. */
	if (t->n && t->cnt[t->n - 1] == n &&
	    (n == 0 || !memcmp(f->ranges + t->off[t->n - 1], r, n * sizeof *r)))
		return 0;
	if (f->n_ranges + n > POLICY_FILTER_MAX_RANGES)
		return -2;
	if (t->n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct pol_u128 *l = realloc(t->lo, c * sizeof *l);
		if (l)
			t->lo = l;
		uint32_t *o = realloc(t->off, c * sizeof *o);
		if (o)
			t->off = o;
		uint32_t *k = realloc(t->cnt, c * sizeof *k);
		if (k)
			t->cnt = k;
		if (!l || !o || !k)
			return -1;
		*cap = c;
	}
	if (n && f->n_ranges + n > f->cap_ranges) {
		size_t c = f->cap_ranges ? f->cap_ranges : 64;
		while (c < f->n_ranges + n)
			c *= 2;
		struct policy_ports *p = realloc(f->ranges, c * sizeof *p);
		if (!p)
			return -1;
		f->ranges = p;
		f->cap_ranges = c;
	}
	if (n)
		memcpy(f->ranges + f->n_ranges, r, n * sizeof *r);
	t->lo[t->n] = lo;
	t->off[t->n] = (uint32_t)f->n_ranges;
	t->cnt[t->n] = (uint32_t)n;
	t->n++;
	f->n_ranges += n;
	return 0;
}

/* The sweep: -1 no memory, -2 too many ranges. */
static int table_build(struct policy_filter *f, struct pf_table *t,
                       const struct pf_build *b)
{
	size_t cap = 0, nev = 0, nact = 0;
	int rc = -1;
	struct pf_ev *ev = malloc((2 * b->n + 1) * sizeof *ev);
	uint32_t *act = malloc((b->n + 1) * sizeof *act),
	         *where = malloc((b->n + 1) * sizeof *where);
	struct policy_ports *tmp = malloc((b->n + 1) * sizeof *tmp);
	if (!ev || !act || !where || !tmp)
		goto out;
	for (size_t i = 0; i < b->n; i++) {
		const struct pol_iv *iv = &b->items[i].iv;
		ev[nev++] = (struct pf_ev){iv->lo, (uint32_t)i, true};
		if (iv->hi.hi != UINT64_MAX || iv->hi.lo != UINT64_MAX) {
			struct pol_u128 end = iv->hi;
			if (++end.lo == 0)
				end.hi++;
			ev[nev++] = (struct pf_ev){end, (uint32_t)i, false};
		}
	}
	qsort(ev, nev, sizeof *ev, ev_cmp);
	struct pol_u128 zero = {0, 0};
	if ((!nev || pol_u128_cmp(ev[0].at, zero) > 0) &&
	    (rc = block_add(f, t, &cap, zero, NULL, 0)))
		goto out;
	for (size_t k = 0; k < nev;) {
		struct pol_u128 at = ev[k].at;
		for (; k < nev && !pol_u128_cmp(ev[k].at, at); k++) {
			uint32_t it = ev[k].item;
			if (ev[k].add) {
				where[it] = (uint32_t)nact;
				act[nact++] = it;
			} else {
				uint32_t w = where[it], last = act[--nact];
				act[w] = last;
				where[last] = w;
			}
		}
		for (size_t a = 0; a < nact; a++)
			tmp[a] = b->items[act[a]].pr;
		size_t n = ports_merge(tmp, nact);
		if ((rc = block_add(f, t, &cap, at, tmp, n)))
			goto out;
	}
	rc = 0;
out:
	free(ev);
	free(act);
	free(where);
	free(tmp);
	return rc;
}

/* The (source interval, port range) pairs of proto bit for node i: 0, -1
 * no memory, -2 too many. */
static int collect(const struct policy_compiled *cp, size_t i, uint8_t bit,
                   struct pf_build *b)
{
	static const struct policy_ports all = {0, 65535};
	const struct policy *p = cp->p;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *rule = &p->rules[r];
		const struct pol_crule *cr = &cp->rules[r];
		if (!(rule->protos & bit))
			continue;
		for (uint32_t d = 0; d < rule->n_dst; d++) {
			if (!pol_nset_has(&cr->dst_nodes[d], i))
				continue;
			for (size_t s = 0; s < cr->n_src_iv; s++) {
				int rc;
				if (bit == POL_ICMP) {
					if ((rc = item_add(b, &cr->src_iv[s], all)))
						return rc;
					continue;
				}
				for (uint32_t k = 0; k < rule->dst[d].n_ports; k++)
					if ((rc = item_add(b, &cr->src_iv[s],
					                   rule->dst[d].ports[k])))
						return rc;
			}
			if (bit == POL_ICMP)
				break; /* one dst entry is enough: ports do not matter */
		}
	}
	return 0;
}

struct policy_filter *policy_node_filter(const struct policy_compiled *cp, size_t i,
                                         struct policy_error *err)
{
	static const uint8_t bits[T_N] = {POL_TCP, POL_UDP, POL_ICMP};
	memset(err, 0, sizeof *err);
	struct policy_filter *f = calloc(1, sizeof *f);
	if (!f)
		goto nomem;
	if (!cp->p) {
		f->all = true;
		return f;
	}
	for (int t = 0; t < T_N; t++) {
		struct pf_build b = {0};
		int rc = i < cp->n ? collect(cp, i, bits[t], &b) : 0;
		if (!rc)
			rc = table_build(f, &f->t[t], &b);
		free(b.items);
		if (rc == -2) {
			char nb[100];
			pol_set_err(
			    err, 0, 0,
			    "node %s: its filter would hold more than %u port ranges; "
			    "write fewer distinct sources and ports for it",
			    pol_show(cp->nodes[i].name, nb, sizeof nb),
			    POLICY_FILTER_MAX_RANGES);
			policy_filter_free(f);
			return NULL;
		}
		if (rc)
			goto nomem;
	}
	return f;
nomem:
	policy_filter_free(f);
	pol_set_err(err, 0, 0, "out of memory");
	return NULL;
}

void policy_filter_free(struct policy_filter *f)
{
	if (!f)
		return;
	for (int t = 0; t < T_N; t++) {
		free(f->t[t].lo);
		free(f->t[t].off);
		free(f->t[t].cnt);
	}
	free(f->ranges);
	free(f);
}

static int table_of(uint8_t proto)
{
	switch (proto) {
	case POLICY_TCP:
		return T_TCP;
	case POLICY_UDP:
		return T_UDP;
	case POLICY_ICMP:
	case POLICY_ICMPV6:
		return T_ICMP;
	default:
		return -1;
	}
}

enum policy_verdict policy_filter_match(const struct policy_filter *f, uint8_t proto,
                                        const struct policy_ip *src, uint16_t dst_port)
{
	if (f->all)
		return POLICY_ACCEPT;
	int ti = table_of(proto);
	if (ti < 0)
		return POLICY_DENY;
	const struct pf_table *t = &f->t[ti];
	struct pol_u128 v = pol_u128_from_ip(src);
	size_t lo = 0, hi = t->n; /* the last block starting at or before v */
	if (!t->n)
		return POLICY_DENY;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (pol_u128_cmp(t->lo[mid], v) <= 0)
			lo = mid;
		else
			hi = mid;
	}
	size_t a = 0, b = t->cnt[lo]; /* the last range starting at or before the port */
	if (!b) /* a gap (and f->ranges may be NULL: no pointer into it) */
		return POLICY_DENY;
	if (ti == T_ICMP)
		return POLICY_ACCEPT;
	const struct policy_ports *r = f->ranges + t->off[lo];
	if (r[0].lo > dst_port)
		return POLICY_DENY;
	while (b - a > 1) {
		size_t mid = a + (b - a) / 2;
		if (r[mid].lo <= dst_port)
			a = mid;
		else
			b = mid;
	}
	return dst_port <= r[a].hi ? POLICY_ACCEPT : POLICY_DENY;
}

bool policy_filter_allows_all(const struct policy_filter *f)
{
	return f->all;
}

size_t policy_filter_n_blocks(const struct policy_filter *f, uint8_t proto)
{
	int ti = table_of(proto);
	return ti < 0 || f->all ? 0 : f->t[ti].n;
}

void policy_filter_block(const struct policy_filter *f, uint8_t proto, size_t k,
                         struct policy_ip *lo, struct policy_ip *hi,
                         const struct policy_ports **ports, size_t *n_ports)
{
	const struct pf_table *t = &f->t[table_of(proto)];
	struct pol_u128 end = {UINT64_MAX, UINT64_MAX};
	if (k + 1 < t->n) {
		end = t->lo[k + 1];
		if (end.lo-- == 0)
			end.hi--;
	}
	pol_u128_to_ip(t->lo[k], lo);
	pol_u128_to_ip(end, hi);
	*ports = t->cnt[k] ? f->ranges + t->off[k] : NULL;
	*n_ports = t->cnt[k];
}
