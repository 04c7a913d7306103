/* A node's inbound filter: per protocol, the source address space cut into
 * blocks (each starting where the last one ends), each block holding the
 * merged destination port ranges that its sources may reach. A lookup is
 * two binary searches.
 *
 * Building one: the rules whose destinations hold the node give, per
 * source selector object, the union of the ports it may reach. A sweep
 * over those objects' address intervals keeps, per elementary port
 * segment, how many active objects open it; a block's ranges are read
 * from the open segments only when one opened or closed. Nodes the rules
 * treat alike (the same rules' destinations hold them) get the same
 * filter, built once and shared (filters are immutable, counted). */
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
	unsigned refs;
	struct pf_table t[T_N];
	size_t cap[T_N];
	struct policy_ports *ranges;
	size_t n_ranges, cap_ranges;
};

/* Segment increments one filter build may do; past it the build is
 * refused like an oversized filter. */
#define PF_MAX_WORK ((size_t)1 << 28)

static struct policy_filter *filter_new(void)
{
	struct policy_filter *f = calloc(1, sizeof *f);
	if (f)
		f->refs = 1;
	return f;
}

/* -1 no memory, -2 over the range cap. force: a new block even if it
 * holds what the one before holds (at a family boundary; gaps need not
 * end there: no map carries them). */
static int block_add(struct policy_filter *f, int ti, struct pol_u128 lo,
                     const struct policy_ports *r, size_t n, bool force)
{
	struct pf_table *t = &f->t[ti];
	/* The same set as the block before: that block goes on. */
	if ((!force || n == 0) && t->n && t->cnt[t->n - 1] == n &&
	    (n == 0 || !memcmp(f->ranges + t->off[t->n - 1], r, n * sizeof *r)))
		return 0;
	if (f->n_ranges + n > POLICY_FILTER_MAX_RANGES)
		return -2;
	if (t->n == f->cap[ti]) {
		size_t c = f->cap[ti] ? f->cap[ti] * 2 : 16;
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
		f->cap[ti] = c;
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

/* --- the sweep ------------------------------------------------------- */

/* A source selector object and the ports it opens on this node. */
struct pf_pair {
	uint32_t sobj;
	struct policy_ports pr;
};

struct pf_ev {
	struct pol_u128 at;
	uint32_t src; /* index into the distinct sources; PF_FAMILY: none */
	bool add;
};

/* The IPv4 addresses (::ffff:0.0.0.0/96) start and end a block, so that
 * each block lies within one family, as a map carries them. */
#define PF_FAMILY UINT32_MAX
static const struct pol_u128 pf_v4_lo = {0, 0x0000ffff00000000ull},
                             pf_v4_end = {0, 0x0001000000000000ull};

static int pair_cmp(const void *a, const void *b)
{
	const struct pf_pair *x = a, *y = b;
	if (x->sobj != y->sobj)
		return x->sobj < y->sobj ? -1 : 1;
	if (x->pr.lo != y->pr.lo)
		return x->pr.lo < y->pr.lo ? -1 : 1;
	return (x->pr.hi > y->pr.hi) - (x->pr.hi < y->pr.hi);
}

static int ev_cmp(const void *a, const void *b)
{
	const struct pf_ev *x = a, *y = b;
	return pol_u128_cmp(x->at, y->at);
}

static int u32c(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

struct sweep {
	struct pf_pair *pairs;
	size_t n_pairs, cap_pairs;
	/* distinct sources: sobj, their segment spans [sa, sb) */
	uint32_t *sobj, *span_off, *span_n;
	uint32_t *sa, *sb;
	size_t n_src;
	uint32_t *cut; /* segment k is ports [cut[k], cut[k+1]) */
	size_t n_cut;
	uint32_t *cnt;
	uint64_t *open;
	struct pf_ev *ev;
	struct policy_ports *out;
};

static void sweep_free(struct sweep *s)
{
	free(s->pairs);
	free(s->sobj);
	free(s->span_off);
	free(s->span_n);
	free(s->sa);
	free(s->sb);
	free(s->cut);
	free(s->cnt);
	free(s->open);
	free(s->ev);
	free(s->out);
	memset(s, 0, sizeof *s);
}

static int pair_add(struct sweep *s, uint32_t sobj, struct policy_ports pr)
{
	if (s->n_pairs >= POLICY_FILTER_MAX_RANGES * (size_t)4)
		return -2;
	if (s->n_pairs == s->cap_pairs) {
		size_t c = s->cap_pairs ? s->cap_pairs * 2 : 64;
		struct pf_pair *p = realloc(s->pairs, c * sizeof *p);
		if (!p)
			return -1;
		s->pairs = p;
		s->cap_pairs = c;
	}
	s->pairs[s->n_pairs++] = (struct pf_pair){sobj, pr};
	return 0;
}

/* (rule, destination) pairs holding node i: its signature. */
struct pf_sig {
	uint32_t *v; /* r, d, r, d, ... */
	size_t n, cap;
};

static int sig_of(const struct policy_compiled *cp, size_t i, struct pf_sig *sg)
{
	for (uint32_t r = 0; r < cp->p->n_rules; r++) {
		const struct pol_crule *cr = &cp->rules[r];
		for (uint32_t d = 0; d < cr->n_dst; d++) {
			if (!pol_nset_has(&cp->sobj[cr->dst[d].sobj].set, i))
				continue;
			if (sg->n + 2 > sg->cap) {
				size_t c = sg->cap ? sg->cap * 2 : 64;
				uint32_t *v = realloc(sg->v, c * sizeof *v);
				if (!v)
					return -1;
				sg->v = v;
				sg->cap = c;
			}
			sg->v[sg->n++] = r;
			sg->v[sg->n++] = d;
		}
	}
	return 0;
}

/* The (source object, ports) pairs of proto bit, merged per source. */
static int gather(const struct policy_compiled *cp, const struct pf_sig *sg, uint8_t bit,
                  struct sweep *s)
{
	static const struct policy_ports all = {0, 65535};
	int rc;
	for (size_t k = 0; k < sg->n;) {
		uint32_t r = sg->v[k];
		const struct pol_crule *cr = &cp->rules[r];
		size_t end = k;
		while (end < sg->n && sg->v[end] == r)
			end += 2;
		if (cp->p->rules[r].protos & bit)
			for (uint32_t q = 0; q < cr->n_src; q++) {
				if (bit == POL_ICMP) {
					if ((rc = pair_add(s, cr->src[q], all)))
						return rc;
					continue;
				}
				for (size_t e = k; e < end; e += 2) {
					const struct pol_cdst *d = &cr->dst[sg->v[e + 1]];
					for (uint32_t p = 0; p < d->n_ports; p++) {
						/* TCP and UDP ports are 1-65535 ("*" is
						 * 0-65535 in the rules) */
						struct policy_ports pr = d->ports[p];
						if (pr.lo == 0 && pr.hi == 0)
							continue;
						pr.lo = pr.lo ? pr.lo : 1;
						if ((rc = pair_add(s, cr->src[q], pr)))
							return rc;
					}
				}
			}
		k = end;
	}
	if (s->n_pairs > 1)
		qsort(s->pairs, s->n_pairs, sizeof *s->pairs, pair_cmp);
	/* merge per source, in place */
	size_t o = 0;
	for (size_t k = 0; k < s->n_pairs; k++) {
		struct pf_pair *p = &s->pairs[k];
		if (o && s->pairs[o - 1].sobj == p->sobj &&
		    (uint32_t)p->pr.lo <= (uint32_t)s->pairs[o - 1].pr.hi + 1) {
			if (p->pr.hi > s->pairs[o - 1].pr.hi)
				s->pairs[o - 1].pr.hi = p->pr.hi;
		} else {
			s->pairs[o++] = *p;
		}
	}
	s->n_pairs = o;
	return 0;
}

static size_t cut_find(const uint32_t *cut, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cut[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Sources, segments, events. */
static int prepare(const struct policy_compiled *cp, struct sweep *s, size_t *nev)
{
	size_t np = s->n_pairs, ne = 0;
	s->sobj = malloc((np + 1) * sizeof *s->sobj);
	s->span_off = malloc((np + 1) * sizeof *s->span_off);
	s->span_n = calloc(np + 1, sizeof *s->span_n);
	s->sa = malloc((np + 1) * sizeof *s->sa);
	s->sb = malloc((np + 1) * sizeof *s->sb);
	s->cut = malloc((2 * np + 2) * sizeof *s->cut);
	if (!s->sobj || !s->span_off || !s->span_n || !s->sa || !s->sb || !s->cut)
		return -1;
	for (size_t k = 0; k < np; k++) {
		s->cut[s->n_cut++] = s->pairs[k].pr.lo;
		s->cut[s->n_cut++] = (uint32_t)s->pairs[k].pr.hi + 1;
	}
	qsort(s->cut, s->n_cut, sizeof *s->cut, u32c);
	size_t o = 0;
	for (size_t k = 0; k < s->n_cut; k++)
		if (!o || s->cut[o - 1] != s->cut[k])
			s->cut[o++] = s->cut[k];
	s->n_cut = o;
	for (size_t k = 0; k < np; k++) {
		const struct pf_pair *p = &s->pairs[k];
		if (!s->n_src || s->sobj[s->n_src - 1] != p->sobj) {
			s->sobj[s->n_src] = p->sobj;
			s->span_off[s->n_src] = (uint32_t)k;
			ne += 2 * cp->sobj[p->sobj].n_iv;
			s->n_src++;
		}
		s->span_n[s->n_src - 1]++;
		s->sa[k] = (uint32_t)cut_find(s->cut, s->n_cut, p->pr.lo);
		s->sb[k] = (uint32_t)cut_find(s->cut, s->n_cut, (uint32_t)p->pr.hi + 1);
	}
	size_t nseg = s->n_cut ? s->n_cut - 1 : 0;
	s->cnt = calloc(nseg + 1, sizeof *s->cnt);
	s->open = calloc(nseg / 64 + 1, sizeof *s->open);
	s->out = malloc((nseg + 1) * sizeof *s->out);
	s->ev = malloc((ne + 3) * sizeof *s->ev);
	if (!s->cnt || !s->open || !s->out || !s->ev)
		return -1;
	*nev = 0;
	s->ev[(*nev)++] = (struct pf_ev){pf_v4_lo, PF_FAMILY, false};
	s->ev[(*nev)++] = (struct pf_ev){pf_v4_end, PF_FAMILY, false};
	for (size_t q = 0; q < s->n_src; q++) {
		const struct pol_sobj *so = &cp->sobj[s->sobj[q]];
		for (size_t k = 0; k < so->n_iv; k++) {
			const struct pol_iv *iv = &so->iv[k];
			s->ev[(*nev)++] = (struct pf_ev){iv->lo, (uint32_t)q, true};
			if (iv->hi.hi != UINT64_MAX || iv->hi.lo != UINT64_MAX) {
				struct pol_u128 end = iv->hi;
				if (++end.lo == 0)
					end.hi++;
				s->ev[(*nev)++] = (struct pf_ev){end, (uint32_t)q, false};
			}
		}
	}
	if (*nev > 1)
		qsort(s->ev, *nev, sizeof *s->ev, ev_cmp);
	return 0;
}

/* The open segments as merged port ranges into s->out. */
static size_t open_ranges(const struct sweep *s)
{
	size_t n = 0, nseg = s->n_cut ? s->n_cut - 1 : 0;
	for (size_t w = 0; w <= nseg / 64; w++)
		for (uint64_t b = s->open[w]; b; b &= b - 1) {
			size_t k = w * 64 + (size_t)__builtin_ctzll(b);
			uint32_t lo = s->cut[k], hi = s->cut[k + 1] - 1;
			if (n && (uint32_t)s->out[n - 1].hi + 1 == lo)
				s->out[n - 1].hi = (uint16_t)hi;
			else
				s->out[n++] = (struct policy_ports){(uint16_t)lo, (uint16_t)hi};
		}
	return n;
}

/* -1 no memory, -2 too many ranges (or too much work). */
static int table_build(const struct policy_compiled *cp, const struct pf_sig *sg,
                       uint8_t bit, struct policy_filter *f, int ti)
{
	struct sweep s = {0};
	size_t nev = 0, work = 0;
	int rc;
	struct pol_u128 zero = {0, 0};
	if ((rc = gather(cp, sg, bit, &s)) || (rc = prepare(cp, &s, &nev)))
		goto out;
	if ((!nev || pol_u128_cmp(s.ev[0].at, zero) > 0) &&
	    (rc = block_add(f, ti, zero, NULL, 0, false)))
		goto out;
	for (size_t k = 0; k < nev;) {
		struct pol_u128 at = s.ev[k].at;
		bool dirty = false, force = false;
		for (; k < nev && !pol_u128_cmp(s.ev[k].at, at); k++) {
			uint32_t q = s.ev[k].src;
			if (q == PF_FAMILY) {
				force = true;
				continue;
			}
			for (uint32_t p = 0; p < s.span_n[q]; p++) {
				uint32_t pi = s.span_off[q] + p;
				work += s.sb[pi] - s.sa[pi];
				for (uint32_t g = s.sa[pi]; g < s.sb[pi]; g++) {
					if (s.ev[k].add ? s.cnt[g]++ == 0 : --s.cnt[g] == 0) {
						s.open[g / 64] ^= 1ull << (g % 64);
						dirty = true;
					}
				}
			}
		}
		if (work > PF_MAX_WORK) {
			rc = -2;
			goto out;
		}
		if ((dirty || force) &&
		    (rc = block_add(f, ti, at, s.out, open_ranges(&s), force)))
			goto out;
	}
	rc = 0;
out:
	sweep_free(&s);
	return rc;
}

/* --- the cache of built filters ------------------------------------- */

struct pf_centry {
	uint64_t h;
	uint32_t *sig;
	size_t n;
	struct policy_filter *f;
};

struct pol_fcache {
	struct pf_centry *v;
	size_t cap, used, units; /* units: blocks and ranges held */
};

/* What the cache may hold, in blocks and ranges, over all its filters. */
#define PF_CACHE_UNITS ((size_t)1 << 22)

static uint64_t sig_hash(const struct pf_sig *sg)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t k = 0; k < sg->n; k++)
		h = (h ^ sg->v[k]) * 1099511628211ull;
	return h ^ (h >> 29);
}

static size_t filter_units(const struct policy_filter *f)
{
	return f->t[0].n + f->t[1].n + f->t[2].n + f->n_ranges;
}

static struct policy_filter *cache_find(const struct pol_fcache *fc,
                                        const struct pf_sig *sg, uint64_t h)
{
	if (!fc || !fc->cap)
		return NULL;
	for (size_t k = h & (fc->cap - 1); fc->v[k].f; k = (k + 1) & (fc->cap - 1))
		if (fc->v[k].h == h && fc->v[k].n == sg->n &&
		    (!sg->n || !memcmp(fc->v[k].sig, sg->v, sg->n * sizeof *sg->v)))
			return fc->v[k].f;
	return NULL;
}

static void cache_put(struct policy_compiled *cp, const struct pf_sig *sg, uint64_t h,
                      struct policy_filter *f)
{
	struct pol_fcache *fc = cp->fcache;
	if (!fc && !(fc = cp->fcache = calloc(1, sizeof *fc)))
		return;
	size_t u = filter_units(f);
	if (fc->units + u > PF_CACHE_UNITS)
		return;
	if (2 * (fc->used + 1) > fc->cap) {
		size_t c = fc->cap ? fc->cap * 2 : 64;
		struct pf_centry *v = calloc(c, sizeof *v);
		if (!v)
			return;
		for (size_t k = 0; k < fc->cap; k++)
			if (fc->v[k].f) {
				size_t j = fc->v[k].h & (c - 1);
				while (v[j].f)
					j = (j + 1) & (c - 1);
				v[j] = fc->v[k];
			}
		free(fc->v);
		fc->v = v;
		fc->cap = c;
	}
	uint32_t *copy = malloc((sg->n + 1) * sizeof *copy);
	if (!copy)
		return;
	if (sg->n)
		memcpy(copy, sg->v, sg->n * sizeof *copy);
	size_t j = h & (fc->cap - 1);
	while (fc->v[j].f)
		j = (j + 1) & (fc->cap - 1);
	fc->v[j] = (struct pf_centry){h, copy, sg->n, f};
	__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	fc->used++;
	fc->units += u;
}

void pol_fcache_free(struct pol_fcache *fc)
{
	if (!fc)
		return;
	for (size_t k = 0; k < fc->cap; k++)
		if (fc->v[k].f) {
			free(fc->v[k].sig);
			policy_filter_free(fc->v[k].f);
		}
	free(fc->v);
	free(fc);
}

/* --- the API ------------------------------------------------------- */

static struct policy_filter *build(const struct policy_compiled *cp, size_t i,
                                   const struct pf_sig *sg, struct policy_error *err)
{
	static const uint8_t bits[T_N] = {POL_TCP, POL_UDP, POL_ICMP};
	struct policy_filter *f = filter_new();
	int rc = f ? 0 : -1;
	for (int t = 0; t < T_N && !rc; t++)
		rc = table_build(cp, sg, bits[t], f, t);
	if (!rc)
		return f;
	policy_filter_free(f);
	if (rc == -2) {
		char nb[100];
		pol_set_err(err, 0, 0,
		            "node %s: its filter would hold more than %u port ranges; "
		            "write fewer distinct sources and ports for it",
		            pol_show(cp->nodes[i].name, nb, sizeof nb),
		            POLICY_FILTER_MAX_RANGES);
	} else {
		pol_set_err(err, 0, 0, "out of memory");
	}
	return NULL;
}

/* Not safe to call from two threads at once on one cp (it fills cp's
 * cache); the filters it returns may be used and freed anywhere. */
struct policy_filter *policy_node_filter(const struct policy_compiled *cp, size_t i,
                                         struct policy_error *err)
{
	memset(err, 0, sizeof *err);
	struct pf_sig sg = {0};
	struct policy_filter *f;
	if (!cp->p) {
		if ((f = filter_new()))
			f->all = true;
		else
			pol_set_err(err, 0, 0, "out of memory");
		return f;
	}
	if (i < cp->n && sig_of(cp, i, &sg)) {
		free(sg.v);
		pol_set_err(err, 0, 0, "out of memory");
		return NULL;
	}
	uint64_t h = sig_hash(&sg);
	if ((f = cache_find(cp->fcache, &sg, h))) {
		__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	} else if ((f = build(cp, i < cp->n ? i : 0, &sg, err))) {
		/* the cache is cp's, filled through a const pointer by design */
		cache_put((struct policy_compiled *)cp, &sg, h, f);
	}
	free(sg.v);
	return f;
}

void policy_filter_free(struct policy_filter *f)
{
	if (!f || __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL))
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

/* The block holding src in table ti: its ranges (*n 0 in a gap). */
static const struct policy_ports *lookup(const struct policy_filter *f, int ti,
                                         const struct policy_ip *src, size_t *n)
{
	const struct pf_table *t = &f->t[ti];
	struct pol_u128 v = pol_u128_from_ip(src);
	size_t lo = 0, hi = t->n; /* the last block starting at or before v */
	*n = 0;
	if (!t->n)
		return NULL;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (pol_u128_cmp(t->lo[mid], v) <= 0)
			lo = mid;
		else
			hi = mid;
	}
	*n = t->cnt[lo];
	return *n ? f->ranges + t->off[lo] : NULL;
}

enum policy_verdict policy_filter_match(const struct policy_filter *f, uint8_t proto,
                                        const struct policy_ip *src, uint16_t dst_port)
{
	if (f->all)
		return POLICY_ACCEPT;
	int ti = table_of(proto);
	if (ti < 0)
		return POLICY_DENY;
	size_t b;
	const struct policy_ports *r = lookup(f, ti, src, &b);
	if (!b) /* a gap */
		return POLICY_DENY;
	if (ti == T_ICMP)
		return POLICY_ACCEPT;
	size_t a = 0; /* the last range starting at or before the port */
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

void policy_filter_ports_for(const struct policy_filter *f, uint8_t proto,
                             const struct policy_ip *src,
                             const struct policy_ports **ports, size_t *n)
{
	static const struct policy_ports all = {0, 65535};
	int ti = table_of(proto);
	*ports = NULL;
	*n = 0;
	if (f->all) {
		*ports = &all;
		*n = 1;
	} else if (ti >= 0) {
		*ports = lookup(f, ti, src, n);
	}
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
	int ti = table_of(proto);
	memset(lo, 0, sizeof *lo);
	memset(hi, 0, sizeof *hi);
	*ports = NULL;
	*n_ports = 0;
	if (ti < 0 || f->all || k >= f->t[ti].n)
		return;
	const struct pf_table *t = &f->t[ti];
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

/* --- a filter from blocks (what a node receives) --------------------- */

static int bad_block(struct policy_error *err, int ti, size_t k, const char *why)
{
	static const char *const names[T_N] = {"tcp", "udp", "icmp"};
	pol_set_err(err, 0, 0, "filter %s block %zu: %s", names[ti], k, why);
	return -1;
}

static int check_blocks(int ti, const struct policy_filter_block_in *b, size_t n,
                        struct policy_error *err)
{
	for (size_t k = 0; k < n; k++) {
		struct pol_u128 lo = pol_u128_from_ip(&b[k].lo),
		                hi = pol_u128_from_ip(&b[k].hi);
		if (pol_u128_cmp(lo, hi) > 0)
			return bad_block(err, ti, k, "its first address is after its last");
		bool v4lo = pol_u128_cmp(lo, pf_v4_lo) >= 0 && pol_u128_cmp(lo, pf_v4_end) < 0,
		     v4hi = pol_u128_cmp(hi, pf_v4_lo) >= 0 && pol_u128_cmp(hi, pf_v4_end) < 0;
		if (v4lo != v4hi || (!v4lo && pol_u128_cmp(lo, pf_v4_lo) < 0 &&
		                     pol_u128_cmp(hi, pf_v4_end) >= 0))
			return bad_block(err, ti, k,
			                 "its first and last addresses are not of one "
			                 "family (IPv4 or IPv6)");
		if (k && pol_u128_cmp(pol_u128_from_ip(&b[k - 1].hi), lo) >= 0)
			return bad_block(err, ti, k,
			                 "it starts at or before the end of the block "
			                 "before it (blocks must ascend and not overlap)");
		if (!b[k].n_ports || !b[k].ports)
			return bad_block(err, ti, k, "it has no ports");
		for (size_t p = 0; p < b[k].n_ports; p++) {
			const struct policy_ports *r = &b[k].ports[p];
			if (ti == T_ICMP && (b[k].n_ports != 1 || r->lo != 0 || r->hi != 65535))
				return bad_block(err, ti, k,
				                 "an ICMP block's ports must be exactly 0-65535");
			if (ti != T_ICMP && r->lo == 0)
				return bad_block(err, ti, k,
				                 "port 0 is not a TCP or UDP port (ports are "
				                 "1-65535)");
			if (r->lo > r->hi)
				return bad_block(err, ti, k, "a port range ends before it starts");
			if (p && r->lo <= b[k].ports[p - 1].hi)
				return bad_block(err, ti, k,
				                 "its port ranges must ascend and not overlap");
		}
	}
	return 0;
}

struct policy_filter *policy_filter_from_blocks(const struct policy_filter_block_in *b[3],
                                                const size_t n[3],
                                                struct policy_error *err)
{
	memset(err, 0, sizeof *err);
	for (int ti = 0; ti < T_N; ti++)
		if (n[ti] && (!b[ti] || check_blocks(ti, b[ti], n[ti], err))) {
			if (!b[ti])
				pol_set_err(err, 0, 0, "filter: %zu blocks and no list", n[ti]);
			return NULL;
		}
	struct policy_filter *f = filter_new();
	int rc = f ? 0 : -1;
	struct pol_u128 zero = {0, 0};
	for (int ti = 0; ti < T_N && !rc; ti++) {
		struct pol_u128 next = zero; /* where the last block ended, plus one */
		bool to_end = false;         /* the last block reached the top */
		for (size_t k = 0; k < n[ti] && !rc; k++) {
			struct pol_u128 lo = pol_u128_from_ip(&b[ti][k].lo),
			                hi = pol_u128_from_ip(&b[ti][k].hi);
			if (pol_u128_cmp(lo, next) > 0 || (k == 0 && pol_u128_cmp(lo, zero) > 0))
				rc = block_add(f, ti, next, NULL, 0, false); /* the gap before */
			if (!rc)
				rc = block_add(f, ti, lo, b[ti][k].ports, b[ti][k].n_ports,
				               false);
			next = hi;
			if (++next.lo == 0 && ++next.hi == 0)
				to_end = true;
		}
		if (!rc && !to_end)
			rc = block_add(f, ti, next, NULL, 0, false); /* denies the rest */
	}
	if (!rc)
		return f;
	policy_filter_free(f);
	if (rc == -2)
		pol_set_err(err, 0, 0, "filter: more than %u port ranges",
		            POLICY_FILTER_MAX_RANGES);
	else
		pol_set_err(err, 0, 0, "out of memory");
	return NULL;
}
