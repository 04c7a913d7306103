/* The inbound filter, reach and flow bookkeeping of a node under an access
 * policy (node/acl.h says what passes and why). */
#include "node/acl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util/log.h"
#include "node/acl_flows.h"

/* One source block, addresses as 16 bytes (IPv4 as ::ffff:a.b.c.d, the
 * order the policy compiler uses), its port ranges in the filter's
 * ranges[first..first+n). */
struct acl_block {
	uint8_t lo[16], hi[16];
	uint32_t first, n;
};

struct acl_reach {
	uint64_t id;
	bool icmp;
	uint32_t tcp_first, n_tcp, udp_first, n_udp;
};

struct node_acl {
	bool active;
	bool failed_closed;
	struct acl_block *blocks[CTL_FILTER_NPROTO];
	size_t n_blocks[CTL_FILTER_NPROTO];
	struct ctl_port_range *ranges; /* every block's, then every reach's */
	struct acl_reach *reach;       /* by id */
	size_t n_reach;
	struct acl_flows *flows; /* while active (NULL: no memory; replies drop) */
	struct acl_frags frags;
	acl_tcp_conn_fn conn;
	void *conn_ctx;
	uint64_t drops[ACL_DROP_N];
	uint64_t fastfail;
	uint64_t revoked;
};

static const char *const acl_drop_names[ACL_DROP_N] = {
    "tcp_syn", "tcp_no_conn", "udp", "icmp", "fragment", "malformed", "proto"};

const char *acl_drop_name(enum acl_drop r)
{
	return (unsigned)r < ACL_DROP_N ? acl_drop_names[r] : "?";
}

struct node_acl *node_acl_new(acl_tcp_conn_fn conn, void *conn_ctx)
{
	struct node_acl *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->conn = conn;
	a->conn_ctx = conn_ctx;
	return a;
}

static void acl_clear(struct node_acl *a)
{
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		free(a->blocks[p]);
		a->blocks[p] = NULL;
		a->n_blocks[p] = 0;
	}
	free(a->ranges);
	free(a->reach);
	a->ranges = NULL;
	a->reach = NULL;
	a->n_reach = 0;
}

void node_acl_free(struct node_acl *a)
{
	if (!a)
		return;
	acl_clear(a);
	acl_flows_free(a->flows);
	free(a);
}

bool node_acl_active(const struct node_acl *a)
{
	return a && a->active;
}

/* ---- building from the map ---- */

static void acl_ip16(uint8_t out[16], uint8_t family, const uint8_t *addr)
{
	if (family == 4) {
		static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
		memcpy(out, mapped, 12);
		memcpy(out + 12, addr, 4);
	} else {
		memcpy(out, addr, 16);
	}
}

static int acl_block_cmp(const void *x, const void *y)
{
	const struct acl_block *a = x, *b = y;
	return memcmp(a->lo, b->lo, 16);
}

static int acl_range_cmp(const void *x, const void *y)
{
	const struct ctl_port_range *a = x, *b = y;
	return (int)a->lo - (int)b->lo;
}

/* Copies r[0..n) to out (room for n), sorted and merged; returns how many. */
static uint32_t acl_ranges_copy(struct ctl_port_range *out,
                                const struct ctl_port_range *r, uint32_t n)
{
	if (n == 0)
		return 0;
	memcpy(out, r, n * sizeof(*r));
	qsort(out, n, sizeof(*out), acl_range_cmp);
	uint32_t k = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (out[i].lo > out[i].hi)
			continue;
		if (k > 0 && (uint32_t)out[i].lo <= (uint32_t)out[k - 1].hi + 1) {
			if (out[i].hi > out[k - 1].hi)
				out[k - 1].hi = out[i].hi;
			continue;
		}
		out[k++] = out[i];
	}
	return k;
}

/* The filter and reach into a (empty): -EINVAL for blocks that are not
 * proper (mixed families, lo > hi, overlapping), -ENOMEM. */
static int acl_build(struct node_acl *a, const struct ctl_filter *f,
                     const struct ctl_reach *reach, size_t n_reach)
{
	size_t total = 0;
	for (int p = 0; p < CTL_FILTER_NPROTO; p++)
		for (size_t i = 0; i < f->n_blocks[p]; i++)
			total += f->blocks[p][i].n_ports;
	for (size_t i = 0; i < n_reach; i++)
		total += (size_t)reach[i].n_tcp + reach[i].n_udp;
	if (total > UINT32_MAX / 2)
		return -EINVAL;
	a->ranges = calloc(total + 1, sizeof(*a->ranges));
	if (!a->ranges)
		return -ENOMEM;
	uint32_t used = 0;
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		size_t n = f->n_blocks[p];
		a->blocks[p] = calloc(n + 1, sizeof(struct acl_block));
		if (!a->blocks[p])
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			const struct ctl_filter_block *in = &f->blocks[p][i];
			struct acl_block *b = &a->blocks[p][i];
			/* Families are compared in the 16-byte form (IPv4 as
			 * ::ffff:a.b.c.d, as the policy compiler orders them), so
			 * a block from an IPv4 to an IPv6 address is well defined. */
			if ((in->lo.family != 4 && in->lo.family != 6) ||
			    (in->hi.family != 4 && in->hi.family != 6) ||
			    (in->n_ports && !in->ports))
				return -EINVAL;
			acl_ip16(b->lo, in->lo.family, in->lo.addr);
			acl_ip16(b->hi, in->hi.family, in->hi.addr);
			if (memcmp(b->lo, b->hi, 16) > 0)
				return -EINVAL;
			b->first = used;
			b->n = acl_ranges_copy(a->ranges + used, in->ports, in->n_ports);
			used += b->n;
		}
		qsort(a->blocks[p], n, sizeof(struct acl_block), acl_block_cmp);
		for (size_t i = 1; i < n; i++)
			if (memcmp(a->blocks[p][i - 1].hi, a->blocks[p][i].lo, 16) >= 0)
				return -EINVAL; /* overlapping: which one holds? */
		a->n_blocks[p] = n;
	}
	a->reach = calloc(n_reach + 1, sizeof(*a->reach));
	if (!a->reach)
		return -ENOMEM;
	for (size_t i = 0; i < n_reach; i++) {
		const struct ctl_reach *in = &reach[i];
		struct acl_reach *r = &a->reach[i];
		if ((in->n_tcp && !in->tcp) || (in->n_udp && !in->udp))
			return -EINVAL;
		r->id = in->id;
		r->icmp = in->icmp;
		r->tcp_first = used;
		r->n_tcp = acl_ranges_copy(a->ranges + used, in->tcp, in->n_tcp);
		used += r->n_tcp;
		r->udp_first = used;
		r->n_udp = acl_ranges_copy(a->ranges + used, in->udp, in->n_udp);
		used += r->n_udp;
	}
	a->n_reach = n_reach;
	return 0;
}

static int acl_reach_cmp(const void *x, const void *y)
{
	const struct acl_reach *a = x, *b = y;
	return a->id < b->id ? -1 : a->id > b->id;
}

int node_acl_set(struct node_acl *a, bool has_filter, const struct ctl_filter *f,
                 const struct ctl_reach *reach, size_t n_reach)
{
	acl_clear(a);
	a->failed_closed = false;
	if (!has_filter) {
		a->active = false;
		acl_flows_free(a->flows);
		a->flows = NULL;
		memset(&a->frags, 0, sizeof(a->frags));
		return 0;
	}
	a->active = true;
	if (!a->flows && !(a->flows = acl_flows_new()))
		log_warn("policy: out of memory for the flow table: replies to UDP and "
		         "pings this node sends are dropped until the next map");
	int r = acl_build(a, f, reach, n_reach);
	if (r != 0) {
		acl_clear(a);
		a->failed_closed = true;
		log_error("policy: the map's filter %s: denying every inbound packet and "
		          "every outbound connection until the next map",
		          r == -ENOMEM ? "does not fit in memory" : "is not well formed");
		return r;
	}
	qsort(a->reach, a->n_reach, sizeof(*a->reach), acl_reach_cmp);
	return 0;
}

/* ---- matching ---- */

static const struct ctl_port_range *acl_ports_find(const struct ctl_port_range *r,
                                                   uint32_t n, uint16_t port)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) { /* first range with hi >= port */
		uint32_t mid = lo + (hi - lo) / 2;
		if (r[mid].hi < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && r[lo].lo <= port ? &r[lo] : NULL;
}

/* The filter's verdict for src16 (16-byte form) opening port. */
static bool acl_match(const struct node_acl *a, int proto, const uint8_t src[16],
                      uint16_t port)
{
	const struct acl_block *b = a->blocks[proto];
	size_t lo = 0, hi = a->n_blocks[proto];
	while (lo < hi) { /* first block with hi >= src */
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(b[mid].hi, src, 16) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == a->n_blocks[proto] || memcmp(b[lo].lo, src, 16) > 0)
		return false;
	if (proto == CTL_FILTER_ICMP)
		return b[lo].n > 0;
	return acl_ports_find(a->ranges + b[lo].first, b[lo].n, port) != NULL;
}

bool node_acl_filter_allows(const struct node_acl *a, int proto,
                            const struct ns_addr *src, uint16_t port)
{
	if (!a || !a->active)
		return true;
	if (proto < 0 || proto >= CTL_FILTER_NPROTO)
		return false;
	uint8_t s[16];
	acl_ip16(s, src->family == AF_INET ? 4 : 6, src->addr);
	return acl_match(a, proto, s, port);
}

bool node_acl_reach(const struct node_acl *a, uint64_t peer_id, int proto, uint16_t port)
{
	if (!a || !a->active)
		return true;
	size_t lo = 0, hi = a->n_reach;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->reach[mid].id < peer_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == a->n_reach || a->reach[lo].id != peer_id)
		return false;
	const struct acl_reach *r = &a->reach[lo];
	switch (proto) {
	case CTL_FILTER_TCP:
		return acl_ports_find(a->ranges + r->tcp_first, r->n_tcp, port) != NULL;
	case CTL_FILTER_UDP:
		return acl_ports_find(a->ranges + r->udp_first, r->n_udp, port) != NULL;
	case CTL_FILTER_ICMP:
		return r->icmp;
	}
	return false;
}

void node_acl_count_fastfail(struct node_acl *a)
{
	if (a)
		a->fastfail++;
}

void node_acl_count_revoked(struct node_acl *a, unsigned n)
{
	if (a)
		a->revoked += n;
}

void node_acl_stats(const struct node_acl *a, struct acl_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!a)
		return;
	st->active = a->active;
	st->failed_closed = a->failed_closed;
	for (int p = 0; p < CTL_FILTER_NPROTO; p++)
		st->n_blocks[p] = a->n_blocks[p];
	st->n_reach = a->n_reach;
	memcpy(st->drops, a->drops, sizeof(st->drops));
	st->fastfail = a->fastfail;
	st->revoked = a->revoked;
	st->flows = acl_flows_count(a->flows);
	st->flows_evicted = acl_flows_evicted(a->flows);
}

/* ---- packets ---- */

#define ACL_IPPROTO_ICMP   1
#define ACL_IPPROTO_TCP    6
#define ACL_IPPROTO_UDP    17
#define ACL_IPPROTO_ICMPV6 58
#define ACL_TCP_SYN        0x02
#define ACL_TCP_ACK        0x10

/* One IP packet's header, as far as the filter needs it. */
struct acl_pkt {
	bool v6;
	uint8_t src[16], dst[16]; /* 16-byte form */
	struct ns_addr nsrc, ndst;
	uint8_t proto;
	const uint8_t *l4; /* the transport header (first fragment or whole) */
	size_t l4len;
	bool frag;       /* a fragment (first or later) */
	bool frag_later; /* not the first: no transport header */
	uint32_t frag_id;
	/* IPv6: the fragment header's own next header, the value lwIP keeps
	 * for the whole datagram (from whichever fragment starts its
	 * reassembly); IPv4: the protocol. Fragments are keyed by it. */
	uint8_t frag_nh;
};

static uint16_t acl_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void acl_addrs(struct acl_pkt *k, const uint8_t *s, const uint8_t *d, size_t alen)
{
	k->nsrc.family = k->ndst.family = alen == 4 ? AF_INET : AF_INET6;
	memset(k->nsrc.addr, 0, 16);
	memset(k->ndst.addr, 0, 16);
	memcpy(k->nsrc.addr, s, alen);
	memcpy(k->ndst.addr, d, alen);
	acl_ip16(k->src, alen == 4 ? 4 : 6, s);
	acl_ip16(k->dst, alen == 4 ? 4 : 6, d);
}

static int acl_parse4(const uint8_t *p, size_t len, struct acl_pkt *k)
{
	if (len < 20)
		return -1;
	size_t ihl = (size_t)(p[0] & 0x0f) * 4, tot = acl_be16(p + 2);
	if (ihl < 20 || tot < ihl || tot > len)
		return -1;
	uint16_t fo = acl_be16(p + 6);
	k->v6 = false;
	k->proto = p[9];
	acl_addrs(k, p + 12, p + 16, 4);
	k->frag = (fo & 0x3fff) != 0; /* MF or an offset */
	k->frag_later = (fo & 0x1fff) != 0;
	k->frag_id = acl_be16(p + 4);
	k->frag_nh = k->proto;
	k->l4 = p + ihl;
	k->l4len = tot - ihl;
	return 0;
}

/* IPv6: the extension headers a packet may carry before its transport
 * header are walked (at most 8); a fragment header marks a fragment. */
static int acl_parse6(const uint8_t *p, size_t len, struct acl_pkt *k)
{
	if (len < 40)
		return -1;
	size_t plen = acl_be16(p + 4), end = 40 + plen, off = 40;
	if (plen == 0 || end > len) /* 0: a jumbogram, never over WireGuard */
		return -1;
	k->v6 = true;
	acl_addrs(k, p + 8, p + 24, 16);
	uint8_t nh = p[6];
	for (int i = 0;; i++) {
		if (i == 8)
			return -1;
		if (nh == 0 || nh == 43 || nh == 60) { /* hop-by-hop, routing, dest */
			if (off + 8 > end)
				return -1;
			size_t hl = ((size_t)p[off + 1] + 1) * 8;
			if (off + hl > end)
				return -1;
			nh = p[off];
			off += hl;
		} else if (nh == 44) { /* fragment */
			if (off + 8 > end || k->frag)
				return -1;
			uint16_t fo = acl_be16(p + off + 2);
			uint32_t id = (uint32_t)p[off + 4] << 24 |
			              (uint32_t)p[off + 5] << 16 |
			              (uint32_t)p[off + 6] << 8 | p[off + 7];
			/* offset 0 without M: an atomic fragment, a whole packet */
			k->frag = (fo & 0xfff9) != 0;
			k->frag_later = (fo & 0xfff8) != 0;
			k->frag_id = id;
			k->frag_nh = p[off];
			nh = p[off];
			off += 8;
			if (k->frag_later)
				break; /* what follows is not a header */
		} else {
			break;
		}
	}
	k->proto = nh;
	k->l4 = p + off;
	k->l4len = end - off;
	return 0;
}

static int acl_parse(const uint8_t *p, size_t len, struct acl_pkt *k)
{
	memset(k, 0, sizeof(*k));
	if (len < 1)
		return -1;
	if (p[0] >> 4 == 4)
		return acl_parse4(p, len, k);
	if (p[0] >> 4 == 6)
		return acl_parse6(p, len, k);
	return -1;
}

static bool acl_drop(struct node_acl *a, enum acl_drop r)
{
	a->drops[r]++;
	return false;
}

static bool acl_tcp_conn(const struct node_acl *a, const struct ns_addr *local,
                         uint16_t lport, const struct ns_addr *remote, uint16_t rport)
{
	return a->conn && a->conn(a->conn_ctx, local, lport, remote, rport);
}

static bool acl_flow_match(struct node_acl *a, const uint8_t local[16], uint16_t lport,
                           const uint8_t remote[16], uint16_t rport, uint8_t proto,
                           int64_t now_ms)
{
	if (!a->flows)
		return false;
	struct acl_flow_key fk = {.lport = lport, .rport = rport, .proto = proto};
	memcpy(fk.local, local, 16);
	memcpy(fk.remote, remote, 16);
	return acl_flows_match(a->flows, &fk, now_ms);
}

static bool acl_is_echo_request(bool v6, uint8_t type)
{
	return v6 ? type == 128 : type == 8;
}

/* An ICMP error's quoted packet q[0..n): one this node sent (source us,
 * destination the far end) for a connection or flow of ours, and sent to
 * from: in a mesh no router stands between two peers, so only the far end
 * itself may report on a packet to it. Only the first 8 bytes of its
 * transport header are needed (RFC 792). */
static bool acl_quoted_ours(struct node_acl *a, bool v6, const uint8_t from[16],
                            const uint8_t *q, size_t n, int64_t now_ms)
{
	struct acl_pkt in;
	memset(&in, 0, sizeof(in));
	size_t hl;
	if (!v6) {
		if (n < 20 || q[0] >> 4 != 4 || (hl = (size_t)(q[0] & 0x0f) * 4) < 20 ||
		    (acl_be16(q + 6) & 0x1fff) != 0)
			return false;
		acl_addrs(&in, q + 12, q + 16, 4);
		in.proto = q[9];
	} else {
		if (n < 40 || q[0] >> 4 != 6)
			return false;
		hl = 40; /* extension headers in a quote: not ours (we send none) */
		acl_addrs(&in, q + 8, q + 24, 16);
		in.proto = q[6];
	}
	if (n < hl + 8 || memcmp(in.dst, from, 16) != 0)
		return false;
	const uint8_t *t = q + hl;
	switch (in.proto) {
	case ACL_IPPROTO_TCP:
		return acl_tcp_conn(a, &in.nsrc, acl_be16(t), &in.ndst, acl_be16(t + 2));
	case ACL_IPPROTO_UDP:
		return acl_flow_match(a, in.src, acl_be16(t), in.dst, acl_be16(t + 2),
		                      ACL_FLOW_UDP, now_ms);
	case ACL_IPPROTO_ICMP:
	case ACL_IPPROTO_ICMPV6:
		if ((in.proto == ACL_IPPROTO_ICMPV6) != v6 ||
		    !acl_is_echo_request(v6, t[0]))
			return false;
		return acl_flow_match(a, in.src, acl_be16(t + 4), in.dst, 0,
		                      ACL_FLOW_ECHO, now_ms);
	}
	return false;
}

static bool acl_icmp_in(struct node_acl *a, const struct acl_pkt *k, int64_t now_ms)
{
	if (k->l4len < 8)
		return acl_drop(a, ACL_DROP_MALFORMED);
	uint8_t type = k->l4[0];
	bool error;
	if (acl_is_echo_request(k->v6, type))
		return acl_match(a, CTL_FILTER_ICMP, k->src, 0) ||
		       acl_drop(a, ACL_DROP_ICMP);
	if (type == (k->v6 ? 129 : 0)) /* echo reply */
		return acl_flow_match(a, k->dst, acl_be16(k->l4 + 4), k->src, 0,
		                      ACL_FLOW_ECHO, now_ms) ||
		       acl_drop(a, ACL_DROP_ICMP);
	if (k->v6) /* unreachable, too big, time exceeded, parameter problem */
		error = type >= 1 && type <= 4;
	else /* unreachable, time exceeded, parameter problem */
		error = type == 3 || type == 11 || type == 12;
	/* A path MTU below the minimum of the family (IPv6 1280, IPv4 576)
	 * would only shrink lwIP's segments towards a peer to nothing. */
	uint32_t mtu = (uint32_t)acl_be16(k->l4 + 4) << 16 | acl_be16(k->l4 + 6);
	if ((k->v6 && type == 2 && mtu < 1280) ||
	    (!k->v6 && type == 3 && k->l4[1] == 4 && (mtu & 0xffff) < 576))
		return acl_drop(a, ACL_DROP_ICMP);
	if (error && acl_quoted_ours(a, k->v6, k->src, k->l4 + 8, k->l4len - 8, now_ms))
		return true;
	return acl_drop(a, ACL_DROP_ICMP);
}

/* The verdict for a whole packet or a first fragment. */
static bool acl_l4_in(struct node_acl *a, const struct acl_pkt *k, int64_t now_ms)
{
	const uint8_t *t = k->l4;
	switch (k->proto) {
	case ACL_IPPROTO_TCP:
		if (k->l4len < 20 || (size_t)(t[12] >> 4) * 4 < 20 ||
		    (size_t)(t[12] >> 4) * 4 > k->l4len)
			return acl_drop(a,
			                k->frag ? ACL_DROP_FRAGMENT : ACL_DROP_MALFORMED);
		if ((t[13] & (ACL_TCP_SYN | ACL_TCP_ACK)) == ACL_TCP_SYN)
			return acl_match(a, CTL_FILTER_TCP, k->src, acl_be16(t + 2)) ||
			       acl_drop(a, ACL_DROP_TCP_SYN);
		return acl_tcp_conn(a, &k->ndst, acl_be16(t + 2), &k->nsrc,
		                    acl_be16(t)) ||
		       acl_drop(a, ACL_DROP_TCP_NO_CONN);
	case ACL_IPPROTO_UDP:
		if (k->l4len < 8)
			return acl_drop(a,
			                k->frag ? ACL_DROP_FRAGMENT : ACL_DROP_MALFORMED);
		return acl_match(a, CTL_FILTER_UDP, k->src, acl_be16(t + 2)) ||
		       acl_flow_match(a, k->dst, acl_be16(t + 2), k->src, acl_be16(t),
		                      ACL_FLOW_UDP, now_ms) ||
		       acl_drop(a, ACL_DROP_UDP);
	case ACL_IPPROTO_ICMP:
	case ACL_IPPROTO_ICMPV6:
		if ((k->proto == ACL_IPPROTO_ICMPV6) != k->v6)
			return acl_drop(a, ACL_DROP_PROTO);
		if (k->frag && k->l4len < 8)
			return acl_drop(a, ACL_DROP_FRAGMENT);
		return acl_icmp_in(a, k, now_ms);
	}
	return acl_drop(a, ACL_DROP_PROTO);
}

static void acl_frag_key(struct acl_frag_key *fk, const struct acl_pkt *k)
{
	memcpy(fk->src, k->src, 16);
	memcpy(fk->dst, k->dst, 16);
	fk->id = k->frag_id;
	fk->proto = k->frag_nh;
}

bool node_acl_inbound(struct node_acl *a, const uint8_t *pkt, size_t len, int64_t now_ms)
{
	if (!a->active)
		return true;
	struct acl_pkt k;
	if (acl_parse(pkt, len, &k) != 0)
		return acl_drop(a, ACL_DROP_MALFORMED);
	struct acl_frag_key fk;
	/* IPv6 fragments, first or later: dropped. lwIP reassembles an IPv6
	 * datagram with the next header of whichever fragment starts it and
	 * keeps half-built ones for 60 s, so two first fragments of one id
	 * with different protocols (or a replayed later one) make it read a
	 * header this filter never judged (an ICMPv6 echo's checksum as a TCP
	 * port). Nothing over WireGuard needs them: TCP segments fit the
	 * tunnel's MTU, and a sender's IPv4 address works for big datagrams. */
	if (k.frag && k.v6)
		return acl_drop(a, ACL_DROP_FRAGMENT);
	if (k.frag_later) {
		acl_frag_key(&fk, &k);
		return acl_frags_match(&a->frags, &fk, now_ms) ||
		       acl_drop(a, ACL_DROP_FRAGMENT);
	}
	if (!acl_l4_in(a, &k, now_ms))
		return false;
	if (k.frag) {
		acl_frag_key(&fk, &k);
		acl_frags_note(&a->frags, &fk, now_ms);
	}
	return true;
}

void node_acl_outbound(struct node_acl *a, const uint8_t *pkt, size_t len, int64_t now_ms)
{
	if (!a->active || !a->flows)
		return;
	struct acl_pkt k;
	if (acl_parse(pkt, len, &k) != 0 || k.frag_later || k.l4len < 8)
		return;
	struct acl_flow_key fk;
	memcpy(fk.local, k.src, 16);
	memcpy(fk.remote, k.dst, 16);
	if (k.proto == ACL_IPPROTO_UDP) {
		fk.lport = acl_be16(k.l4);
		fk.rport = acl_be16(k.l4 + 2);
		fk.proto = ACL_FLOW_UDP;
		/* A datagram from a port the filter lets the far end reach (a
		 * service answering an allowed peer) opens no flow: that
		 * conversation lives on the filter alone, so a filter that takes
		 * the port away ends it. Flows are what this node started. */
		if (acl_match(a, CTL_FILTER_UDP, k.dst, fk.lport))
			return;
	} else if ((k.proto == ACL_IPPROTO_ICMP && !k.v6 && k.l4[0] == 8) ||
	           (k.proto == ACL_IPPROTO_ICMPV6 && k.v6 && k.l4[0] == 128)) {
		fk.lport = acl_be16(k.l4 + 4);
		fk.rport = 0;
		fk.proto = ACL_FLOW_ECHO;
	} else {
		return;
	}
	acl_flows_note(a->flows, &fk, now_ms);
}
