/* mesh-control's access policy in map form (server_policy.c compiles it):
 * a node's filter from core/policy's blocks as a map carries it (one
 * address family per block, adjacent equal blocks joined, limits checked),
 * its hash and sharing, and reach: what a node's addresses may open under
 * a peer's filter, from the same blocks the peer enforces. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/policy.h"
#include "servers/control/server_int.h"

/* A node's filter on the wire, at most: a block ["LO","HI","PORTS"] of
 * IPv4 or IPv6 addresses as text, and each port range ("65535-65535,");
 * a filter over SRV_FILTER_BYTES_MAX goes as deny-all (its map's first
 * message must fit a frame, with its reach entries and the relay list). */
#define SRV_FILTER_V4_BYTES    (2u * (15u + 3u) + 6u)
#define SRV_FILTER_V6_BYTES    (2u * (39u + 3u) + 6u)
#define SRV_FILTER_RANGE_BYTES 12u

void srv_filter_clear(struct ctl_filter *f)
{
	for (int t = 0; t < CTL_FILTER_NPROTO; t++) {
		for (size_t k = 0; k < f->n_blocks[t]; k++)
			free(f->blocks[t][k].ports);
		free(f->blocks[t]);
	}
	memset(f, 0, sizeof *f);
}

struct srv_pfilter *srv_pfilter_ref(struct srv_pfilter *f)
{
	if (f)
		f->refs++;
	return f;
}

void srv_pfilter_unref(struct srv_pfilter *f)
{
	if (!f || --f->refs)
		return;
	srv_filter_clear(&f->f);
	free(f);
}

void srv_pfilter_hash(struct srv_pfilter *pf)
{
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, sizeof pf->hash);
	for (int t = 0; t < CTL_FILTER_NPROTO; t++) {
		uint64_t n = pf->f.n_blocks[t];
		crypto_generichash_update(&h, (const uint8_t *)&n, sizeof n);
		for (size_t k = 0; k < pf->f.n_blocks[t]; k++) {
			const struct ctl_filter_block *b = &pf->f.blocks[t][k];
			crypto_generichash_update(&h, &b->lo.family, 1);
			crypto_generichash_update(&h, b->lo.addr, 16);
			crypto_generichash_update(&h, b->hi.addr, 16);
			uint32_t np = b->n_ports;
			crypto_generichash_update(&h, (const uint8_t *)&np, sizeof np);
			for (size_t j = 0; j < b->n_ports; j++) {
				uint16_t r[2] = {b->ports[j].lo, b->ports[j].hi};
				crypto_generichash_update(&h, (const uint8_t *)r,
				                          sizeof r);
			}
		}
	}
	crypto_generichash_final(&h, pf->hash, sizeof pf->hash);
}

/* --- addresses ---------------------------------------------------------- */

/* IPv4 as ::ffff:a.b.c.d, as core/policy orders addresses. */
static const uint8_t v4_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
static const uint8_t v4_hi[16] = {0, 0, 0,    0,    0,    0,    0,    0,
                                  0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void key_of(const struct ctl_ip *ip, uint8_t k[16])
{
	if (ip->family == 4) {
		memcpy(k, v4_lo, 12);
		memcpy(k + 12, ip->addr, 4);
	} else {
		memcpy(k, ip->addr, 16);
	}
}

static void ip_of_key(const uint8_t k[16], bool v4, struct ctl_ip *ip)
{
	memset(ip, 0, sizeof *ip);
	ip->family = v4 ? 4 : 6;
	memcpy(ip->addr, v4 ? k + 12 : k, v4 ? 4 : 16);
}

static void key_add(uint8_t k[16], int d) /* d = +1 or -1, no wrap asked */
{
	for (int i = 15; i >= 0; i--) {
		uint8_t was = k[i];
		k[i] = (uint8_t)(k[i] + d);
		if ((d > 0 && was != 0xff) || (d < 0 && was != 0))
			break;
	}
}

/* --- filter conversion -------------------------------------------------- */

struct fconv {
	struct ctl_filter *f;
	size_t cap[CTL_FILTER_NPROTO];
	size_t blocks, ranges, bytes;
};

static bool ports_equal(const struct ctl_filter_block *b, const struct policy_ports *p,
                        size_t n)
{
	if (b->n_ports != n)
		return false;
	for (size_t j = 0; j < n; j++)
		if (b->ports[j].lo != p[j].lo || b->ports[j].hi != p[j].hi)
			return false;
	return true;
}

/* Appends [lo, hi] (one family) with ports to protocol t, joined to the
 * block before when adjacent with the same ports. */
static int fconv_add(struct fconv *cv, int t, const uint8_t lo[16], const uint8_t hi[16],
                     bool v4, const struct policy_ports *p, size_t n)
{
	struct ctl_filter *f = cv->f;
	if (f->n_blocks[t]) {
		struct ctl_filter_block *b = &f->blocks[t][f->n_blocks[t] - 1];
		uint8_t next[16];
		key_of(&b->hi, next);
		key_add(next, 1);
		if ((b->lo.family == 4) == v4 && !memcmp(next, lo, 16) &&
		    ports_equal(b, p, n)) {
			ip_of_key(hi, v4, &b->hi);
			return 0;
		}
	}
	cv->bytes +=
	    (v4 ? SRV_FILTER_V4_BYTES : SRV_FILTER_V6_BYTES) + n * SRV_FILTER_RANGE_BYTES;
	if (++cv->blocks > CTL_FILTER_BLOCKS_MAX ||
	    (cv->ranges += n) > CTL_FILTER_RANGES_MAX || cv->bytes > SRV_FILTER_BYTES_MAX)
		return -E2BIG;
	if (f->n_blocks[t] == cv->cap[t]) {
		size_t nc = cv->cap[t] ? cv->cap[t] * 2 : 8;
		struct ctl_filter_block *nb = realloc(f->blocks[t], nc * sizeof *nb);
		if (!nb)
			return -ENOMEM;
		f->blocks[t] = nb;
		cv->cap[t] = nc;
	}
	struct ctl_filter_block *b = &f->blocks[t][f->n_blocks[t]];
	memset(b, 0, sizeof *b);
	b->ports = malloc(n * sizeof *b->ports);
	if (!b->ports)
		return -ENOMEM;
	for (size_t j = 0; j < n; j++)
		b->ports[j] = (struct ctl_port_range){p[j].lo, p[j].hi};
	b->n_ports = (uint32_t)n;
	ip_of_key(lo, v4, &b->lo);
	ip_of_key(hi, v4, &b->hi);
	f->n_blocks[t]++;
	return 0;
}

/* A source block of core/policy's filter in map form: split where IPv4
 * (::ffff:0:0/96) begins and ends, so each block is of one family. */
static int fconv_block(struct fconv *cv, int t, const uint8_t lo[16],
                       const uint8_t hi[16], const struct policy_ports *p, size_t n)
{
	uint8_t a[16], b[16];
	int r = 0;
	if (memcmp(lo, v4_lo, 16) < 0) { /* below IPv4 */
		memcpy(a, lo, 16);
		memcpy(b, v4_lo, 16);
		key_add(b, -1);
		if (memcmp(hi, b, 16) < 0)
			memcpy(b, hi, 16);
		r = fconv_add(cv, t, a, b, false, p, n);
	}
	if (r == 0 && memcmp(hi, v4_lo, 16) >= 0 && memcmp(lo, v4_hi, 16) <= 0) {
		memcpy(a, memcmp(lo, v4_lo, 16) > 0 ? lo : v4_lo, 16);
		memcpy(b, memcmp(hi, v4_hi, 16) < 0 ? hi : v4_hi, 16);
		r = fconv_add(cv, t, a, b, true, p, n);
	}
	if (r == 0 && memcmp(hi, v4_hi, 16) > 0) { /* above IPv4 */
		memcpy(a, v4_hi, 16);
		key_add(a, 1);
		if (memcmp(lo, a, 16) > 0)
			memcpy(a, lo, 16);
		r = fconv_add(cv, t, a, hi, false, p, n);
	}
	return r;
}

static const uint8_t proto_of[CTL_FILTER_NPROTO] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};

/* core/policy's filter as a map carries it: the blocks with ports, per
 * protocol (ICMP: 0-65535 when accepted). -E2BIG past the map's limits. */
int srv_filter_convert(const struct policy_filter *pf, struct ctl_filter *out)
{
	struct fconv cv = {.f = out};
	static const struct policy_ports all = {0, 65535};
	static const uint8_t zero[16],
	    ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	memset(out, 0, sizeof *out);
	int r = 0;
	for (int t = 0; t < CTL_FILTER_NPROTO && r == 0; t++) {
		if (policy_filter_allows_all(pf)) {
			r = fconv_block(&cv, t, zero, ones, &all, 1);
			continue;
		}
		size_t nb = policy_filter_n_blocks(pf, proto_of[t]);
		for (size_t k = 0; k < nb && r == 0; k++) {
			struct policy_ip lo, hi;
			const struct policy_ports *p;
			size_t np;
			policy_filter_block(pf, proto_of[t], k, &lo, &hi, &p, &np);
			if (!np)
				continue;
			r = fconv_block(&cv, t, lo.b, hi.b,
			                t == CTL_FILTER_ICMP ? &all : p,
			                t == CTL_FILTER_ICMP ? 1 : np);
		}
	}
	if (r < 0)
		srv_filter_clear(out);
	return r;
}

/* --- reach -------------------------------------------------------------- */

/* The ports src may open under f for protocol t: the block holding it. */
static const struct ctl_filter_block *block_for(const struct ctl_filter *f, int t,
                                                const struct ctl_ip *src)
{
	uint8_t k[16], a[16];
	key_of(src, k);
	size_t lo = 0, hi = f->n_blocks[t];
	while (lo < hi) { /* the first block ending at or after k */
		size_t mid = lo + (hi - lo) / 2;
		key_of(&f->blocks[t][mid].hi, a);
		if (memcmp(a, k, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == f->n_blocks[t])
		return NULL;
	key_of(&f->blocks[t][lo].lo, a);
	return memcmp(a, k, 16) <= 0 ? &f->blocks[t][lo] : NULL;
}

static int cmp_range(const void *a, const void *b)
{
	const struct ctl_port_range *x = a, *y = b;
	return x->lo != y->lo ? (x->lo < y->lo ? -1 : 1)
	                      : (x->hi < y->hi ? -1 : x->hi > y->hi);
}

/* The union of the ports of blocks a and b (either NULL), merged; past
 * CTL_REACH_RANGES_MAX, the span from the lowest to the highest (reach
 * only saves a node a timeout: the peer's filter decides). */
static int ports_union(const struct ctl_filter_block *a, const struct ctl_filter_block *b,
                       struct ctl_port_range **out, uint32_t *n)
{
	size_t na = a ? a->n_ports : 0, nb = b ? b->n_ports : 0;
	*out = NULL;
	*n = 0;
	if (!na && !nb)
		return 0;
	struct ctl_port_range *r = malloc((na + nb) * sizeof *r);
	if (!r)
		return -ENOMEM;
	if (na)
		memcpy(r, a->ports, na * sizeof *r);
	if (nb)
		memcpy(r + na, b->ports, nb * sizeof *r);
	size_t k = na + nb;
	if (na && nb) {
		qsort(r, k, sizeof *r, cmp_range);
		size_t m = 0;
		for (size_t i = 1; i < k; i++) {
			if ((uint32_t)r[i].lo <= (uint32_t)r[m].hi + 1) {
				if (r[i].hi > r[m].hi)
					r[m].hi = r[i].hi;
			} else {
				r[++m] = r[i];
			}
		}
		k = m + 1;
	}
	if (k > CTL_REACH_RANGES_MAX) {
		r[0].hi = r[k - 1].hi;
		k = 1;
	}
	*out = r;
	*n = (uint32_t)k;
	return 0;
}

void srv_reach_clear(struct ctl_reach *r)
{
	free(r->tcp);
	free(r->udp);
	memset(r, 0, sizeof *r);
}

int srv_policy_reach(const struct ctl_server *s, const struct srv_node *self,
                     int64_t peer_id, struct ctl_reach *out)
{
	memset(out, 0, sizeof *out);
	out->id = (uint64_t)peer_id;
	const struct ctl_filter *f = &srv_policy_filter_of(s, peer_id)->f;
	const struct ctl_ip *a4 = NULL, *a6 = NULL;
	for (size_t i = 0; i < self->peer.n_addrs && i < CTL_ADDRS_MAX; i++) {
		if (self->peer.addrs[i].family == 4 && !a4)
			a4 = &self->peer.addrs[i];
		else if (self->peer.addrs[i].family == 6 && !a6)
			a6 = &self->peer.addrs[i];
	}
	const struct ctl_filter_block *b[CTL_FILTER_NPROTO][2];
	for (int t = 0; t < CTL_FILTER_NPROTO; t++) {
		b[t][0] = a4 ? block_for(f, t, a4) : NULL;
		b[t][1] = a6 ? block_for(f, t, a6) : NULL;
	}
	out->icmp = b[CTL_FILTER_ICMP][0] || b[CTL_FILTER_ICMP][1];
	if (ports_union(b[CTL_FILTER_TCP][0], b[CTL_FILTER_TCP][1], &out->tcp,
	                &out->n_tcp) < 0 ||
	    ports_union(b[CTL_FILTER_UDP][0], b[CTL_FILTER_UDP][1], &out->udp,
	                &out->n_udp) < 0) {
		srv_reach_clear(out);
		return -ENOMEM;
	}
	return out->icmp || out->n_tcp || out->n_udp;
}
