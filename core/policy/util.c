/* core/policy helpers: the arena, 128-bit address intervals, error text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/policy_int.h"
#include "core/util/utf8.h"

/* --- arena ------------------------------------------------------------ */

#define POL_CHUNK (64 * 1024)
struct pol_chunk {
	struct pol_chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

void *pol_alloc(struct pol_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	struct pol_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > POL_CHUNK / 4 ? n : POL_CHUNK;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		if (n > POL_CHUNK / 4 && a->head) {
			/* A big one goes behind the current chunk, which stays in use. */
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	void *p = c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

char *pol_strndup(struct pol_arena *a, const char *s, size_t n)
{
	char *d = pol_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

void pol_arena_free(struct pol_arena *a)
{
	struct pol_chunk *c = a->head;
	while (c) {
		struct pol_chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
}

/* --- addresses -------------------------------------------------------- */

void policy_ip_v4(struct policy_ip *ip, uint32_t v4)
{
	memset(ip->b, 0, 10);
	ip->b[10] = ip->b[11] = 0xff;
	ip->b[12] = (uint8_t)(v4 >> 24);
	ip->b[13] = (uint8_t)(v4 >> 16);
	ip->b[14] = (uint8_t)(v4 >> 8);
	ip->b[15] = (uint8_t)v4;
}

void policy_ip_v6(struct policy_ip *ip, const uint8_t v6[16])
{
	memcpy(ip->b, v6, 16);
}

int pol_u128_cmp(struct pol_u128 a, struct pol_u128 b)
{
	if (a.hi != b.hi)
		return a.hi < b.hi ? -1 : 1;
	if (a.lo != b.lo)
		return a.lo < b.lo ? -1 : 1;
	return 0;
}

struct pol_u128 pol_u128_from_ip(const struct policy_ip *ip)
{
	struct pol_u128 v = {0, 0};
	for (int i = 0; i < 8; i++) {
		v.hi = v.hi << 8 | ip->b[i];
		v.lo = v.lo << 8 | ip->b[8 + i];
	}
	return v;
}

void pol_u128_to_ip(struct pol_u128 v, struct policy_ip *ip)
{
	for (int i = 7; i >= 0; i--) {
		ip->b[i] = (uint8_t)v.hi;
		ip->b[8 + i] = (uint8_t)v.lo;
		v.hi >>= 8;
		v.lo >>= 8;
	}
}

struct pol_iv pol_iv_prefix(const struct policy_ip *ip, unsigned bits)
{
	struct pol_u128 v = pol_u128_from_ip(ip);
	uint64_t mhi, mlo; /* host bits */
	if (bits >= 128) {
		mhi = mlo = 0;
	} else if (bits >= 64) {
		mhi = 0;
		mlo = bits == 64 ? UINT64_MAX : (UINT64_MAX >> (bits - 64));
	} else {
		mlo = UINT64_MAX;
		mhi = bits == 0 ? UINT64_MAX : (UINT64_MAX >> bits);
	}
	struct pol_iv iv = {{v.hi & ~mhi, v.lo & ~mlo}, {v.hi | mhi, v.lo | mlo}};
	return iv;
}

bool pol_iv_contains(const struct pol_iv *iv, struct pol_u128 v)
{
	return pol_u128_cmp(iv->lo, v) <= 0 && pol_u128_cmp(v, iv->hi) <= 0;
}

static int iv_cmp(const void *a, const void *b)
{
	const struct pol_iv *x = a, *y = b;
	int c = pol_u128_cmp(x->lo, y->lo);
	return c ? c : pol_u128_cmp(x->hi, y->hi);
}

/* hi + 1 == lo, without overflow. */
static bool adjacent(struct pol_u128 hi, struct pol_u128 lo)
{
	if (hi.lo == UINT64_MAX)
		return hi.hi != UINT64_MAX && lo.hi == hi.hi + 1 && lo.lo == 0;
	return lo.hi == hi.hi && lo.lo == hi.lo + 1;
}

void pol_iv_normalize(struct pol_iv *iv, size_t *n)
{
	if (*n < 2)
		return;
	qsort(iv, *n, sizeof *iv, iv_cmp);
	size_t o = 0;
	for (size_t i = 1; i < *n; i++) {
		if (pol_u128_cmp(iv[i].lo, iv[o].hi) <= 0 ||
		    adjacent(iv[o].hi, iv[i].lo)) {
			if (pol_u128_cmp(iv[i].hi, iv[o].hi) > 0)
				iv[o].hi = iv[i].hi;
		} else {
			iv[++o] = iv[i];
		}
	}
	*n = o + 1;
}

/* --- names ------------------------------------------------------------ */

static int name_ix_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pol_name_ix *)a)->name,
	              ((const struct pol_name_ix *)b)->name);
}

void pol_names_sort(struct pol_names *ix)
{
	if (ix->n > 1)
		qsort(ix->v, ix->n, sizeof *ix->v, name_ix_cmp);
}

int pol_names_find(const struct pol_names *ix, const char *name)
{
	uint32_t lo = 0, hi = ix->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ix->v[mid].name, name);
		if (!c)
			return (int)ix->v[mid].idx;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* --- errors ----------------------------------------------------------- */

void pol_vset_err(struct policy_error *e, int line, int col, const char *fmt, va_list ap)
{
	e->line = line;
	e->column = col;
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

void pol_set_err(struct policy_error *e, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pol_vset_err(e, line, col, fmt, ap);
	va_end(ap);
}

void policy_error_format(const struct policy_error *e, char *out, size_t cap)
{
	if (e->line > 0)
		snprintf(out, cap, "line %d, column %d: %s", e->line, e->column, e->msg);
	else
		snprintf(out, cap, "%s", e->msg);
}

const char *pol_show(const char *s, char *buf, size_t cap)
{
	char tmp[84];
	size_t n = utf8_clean(s, tmp, sizeof tmp, UTF8_FOR_TERMINAL);
	if (n >= sizeof tmp - 4 && strlen(s) > n)
		snprintf(buf, cap, "%s...", tmp);
	else
		snprintf(buf, cap, "%s", tmp);
	return buf;
}
