/* acl-bench: what the node's inbound filter (node/acl.c) costs per packet
 * with a large policy, against the same packets with no policy.
 *
 *   build/tests/acl-bench [RULES] [PACKETS]     (default 1000, 2000000)
 *
 * A policy of RULES accept rules (each a different source /32 to a
 * different port range on the node, plus "*" on tcp 22) is parsed,
 * compiled for 2,000 nodes with core/policy, and the first node's filter
 * goes into a node_acl as the map would carry it. Then PACKETS packets go
 * through node_acl_inbound: TCP SYNs from sources spread over the rules
 * (two binary searches each), TCP data segments (a connection lookup,
 * here a stub that says yes, so only the filter's own work is timed: the
 * node's real lookup walks lwIP's list, which lwIP's own input walks
 * again), and UDP datagrams answering a flow of ours (a hash lookup).
 * Prints nanoseconds per packet for each, and for the same packets with no
 * policy (the one-flag path). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/policy/policy.h"
#include "node/acl.h"

static bool yes(void *ctx, const struct ns_addr *l, uint16_t lp, const struct ns_addr *r,
                uint16_t rp)
{
	(void)ctx, (void)l, (void)lp, (void)r, (void)rp;
	return true;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An IPv4 packet src -> 100.64.0.1, proto, ports, flags (TCP). */
static size_t pkt(uint8_t *b, uint32_t src, uint8_t proto, uint16_t sport, uint16_t dport,
                  uint8_t flags)
{
	size_t l4 = proto == 6 ? 20 : 8;
	memset(b, 0, 20 + l4 + 64);
	b[0] = 0x45;
	uint16_t tot = (uint16_t)(20 + l4 + 64);
	b[2] = (uint8_t)(tot >> 8);
	b[3] = (uint8_t)tot;
	b[8] = 64;
	b[9] = proto;
	uint32_t s = htonl(src), d = htonl(0x64400001);
	memcpy(b + 12, &s, 4);
	memcpy(b + 16, &d, 4);
	uint8_t *t = b + 20;
	t[0] = (uint8_t)(sport >> 8);
	t[1] = (uint8_t)sport;
	t[2] = (uint8_t)(dport >> 8);
	t[3] = (uint8_t)dport;
	if (proto == 6) {
		t[12] = 5 << 4;
		t[13] = flags;
	}
	return tot;
}

static void filter_from_policy(struct ctl_filter *out, const struct policy_filter *pf)
{
	static const uint8_t protos[CTL_FILTER_NPROTO] = {POLICY_TCP, POLICY_UDP,
	                                                  POLICY_ICMP};
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
	memset(out, 0, sizeof(*out));
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		size_t n = policy_filter_n_blocks(pf, protos[p]);
		out->blocks[p] = calloc(n + 1, sizeof(struct ctl_filter_block));
		for (size_t k = 0; k < n; k++) {
			struct policy_ip lo, hi;
			const struct policy_ports *ports;
			size_t np;
			policy_filter_block(pf, protos[p], k, &lo, &hi, &ports, &np);
			if (np == 0)
				continue;
			struct ctl_filter_block *b = &out->blocks[p][out->n_blocks[p]++];
			struct ctl_ip *side[2] = {&b->lo, &b->hi};
			const uint8_t *val[2] = {lo.b, hi.b};
			for (int i = 0; i < 2; i++) {
				if (!memcmp(val[i], mapped, 12)) {
					side[i]->family = 4;
					memcpy(side[i]->addr, val[i] + 12, 4);
				} else {
					side[i]->family = 6;
					memcpy(side[i]->addr, val[i], 16);
				}
			}
			b->ports = calloc(np, sizeof(*b->ports));
			b->n_ports = (uint32_t)np;
			for (size_t j = 0; j < np; j++)
				b->ports[j] =
				    (struct ctl_port_range){ports[j].lo, ports[j].hi};
		}
	}
}

static double run(struct node_acl *a, uint8_t (*pk)[160], const size_t *len, size_t n_pk,
                  size_t n, size_t *passed)
{
	double t0 = now_s();
	size_t ok = 0;
	for (size_t i = 0; i < n; i++)
		ok +=
		    node_acl_inbound(a, pk[i % n_pk], len[i % n_pk], (int64_t)(i >> 10));
	*passed = ok;
	return (now_s() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
	size_t rules = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000000;
	if (sodium_init() < 0 || rules == 0 || rules > 10000 || n == 0)
		return 2;
	/* the policy: rule i lets 100.65.i/32 open ports 1000+i*10 .. +5 */
	size_t cap = 200 + rules * 120;
	char *text = malloc(cap), *w = text;
	w += sprintf(w, "{\"hosts\": {");
	for (size_t i = 0; i < rules; i++)
		w += sprintf(w, "%s\"h%zu\": \"100.65.%zu.%zu/32\"", i ? ", " : "", i,
		             i / 250, i % 250 + 1);
	w += sprintf(w, "}, \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], "
	                "\"dst\": [\"*:22\"]}");
	for (size_t i = 0; i < rules; i++)
		w += sprintf(w,
		             ", {\"action\": \"accept\", \"src\": [\"h%zu\"], "
		             "\"dst\": [\"*:%zu-%zu\"]}",
		             i, 1000 + i * 10, 1005 + i * 10);
	w += sprintf(w, "]}");
	struct policy_error e;
	struct policy *p = policy_parse(text, (size_t)(w - text), &e);
	if (!p) {
		char m[600];
		policy_error_format(&e, m, sizeof(m));
		fprintf(stderr, "acl-bench: policy: %s\n", m);
		return 1;
	}
	size_t n_nodes = 2000;
	struct policy_node *nodes = calloc(n_nodes, sizeof(*nodes));
	for (size_t i = 0; i < n_nodes; i++) {
		nodes[i].id = i + 1;
		nodes[i].v4 = 0x64400001 + (uint32_t)i;
		nodes[i].user = "u";
	}
	double t0 = now_s();
	struct policy_compiled *cp = policy_compile(p, nodes, n_nodes, &e);
	struct policy_filter *pf = cp ? policy_node_filter(cp, 0, &e) : NULL;
	if (!pf) {
		fprintf(stderr, "acl-bench: compile failed: %s\n", e.msg);
		return 1;
	}
	struct ctl_filter f;
	filter_from_policy(&f, pf);
	printf("policy: %zu rules, %zu nodes; compile + filter %.1f ms; filter: tcp %zu "
	       "udp %zu icmp %zu blocks\n",
	       rules + 1, n_nodes, (now_s() - t0) * 1e3, f.n_blocks[0], f.n_blocks[1],
	       f.n_blocks[2]);
	struct node_acl *a = node_acl_new(yes, NULL);
	if (node_acl_set(a, true, &f, NULL, 0) != 0)
		return 1;
	enum { NPK = 4096 };
	static uint8_t syn[NPK][160], data[NPK][160], udp[NPK][160];
	static size_t lsyn[NPK], ldata[NPK], ludp[NPK];
	for (size_t i = 0; i < NPK; i++) {
		size_t r = (i * 7919) % rules;
		uint32_t src =
		    0x64410000 + (uint32_t)((r / 250) << 8) + (uint32_t)(r % 250 + 1);
		lsyn[i] =
		    pkt(syn[i], src, 6, 40000, (uint16_t)(1000 + r * 10 + i % 6), 0x02);
		ldata[i] = pkt(data[i], src, 6, 40000, 1000, 0x10);
		ludp[i] =
		    pkt(udp[i], 0x64400002, 17, 53, (uint16_t)(30000 + i % 1000), 0);
		uint8_t out[160];
		size_t lo = pkt(out, 0, 17, (uint16_t)(30000 + i % 1000), 53, 0);
		memcpy(out + 12, "\x64\x40\x00\x01\x64\x40\x00\x02",
		       8); /* ours -> peer */
		node_acl_outbound(a, out, lo, 0);
	}
	size_t ok;
	struct {
		const char *name;
		uint8_t (*pk)[160];
		size_t *len;
	} kinds[] = {{"tcp syn (rule lookup)", syn, lsyn},
	             {"tcp data (conn lookup stub)", data, ldata},
	             {"udp reply (flow table)", udp, ludp}};
	for (size_t k = 0; k < 3; k++) {
		double on = run(a, kinds[k].pk, kinds[k].len, NPK, n, &ok);
		size_t ok_on = ok;
		node_acl_set(a, false, NULL, NULL, 0);
		double off = run(a, kinds[k].pk, kinds[k].len, NPK, n, &ok);
		node_acl_set(a, true, &f, NULL, 0);
		for (size_t i = 0; i < NPK; i++) { /* the flows again */
			uint8_t out[160];
			size_t lo = pkt(out, 0, 17, (uint16_t)(30000 + i % 1000), 53, 0);
			memcpy(out + 12, "\x64\x40\x00\x01\x64\x40\x00\x02", 8);
			node_acl_outbound(a, out, lo, 0);
		}
		printf(
		    "%-28s policy %6.1f ns/packet (%zu of %zu passed)   no policy %5.1f "
		    "ns/packet\n",
		    kinds[k].name, on, ok_on, n, off);
	}
	node_acl_free(a);
	return 0;
}
