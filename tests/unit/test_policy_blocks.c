/* core/policy's part-2 functions: a filter rebuilt from its blocks (what a
 * node receives in its map) gives the same verdicts as the compiled one on
 * many probes of both address families, every protocol and edge ports;
 * policy_filter_from_blocks refuses malformed blocks with a clear error;
 * policy_filter_ports_for reads the ports one source may open; and
 * policy_node_tags keeps only the tags a node's user owns under tagOwners
 * (directly, through a group, or through a tag it keeps), with a warning
 * for each one dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/policy/policy.h"

static struct policy *parse_ok(const char *s)
{
	struct policy_error e;
	struct policy *p = policy_parse(s, strlen(s), &e);
	if (!p)
		fail_msg("unexpected error: line %d, column %d: %s", e.line, e.column,
		         e.msg);
	return p;
}

static unsigned rs = 99;
static unsigned rnd(unsigned n)
{
	rs = rs * 1103515245u + 12345u;
	return (rs >> 8) % n;
}

static const uint8_t protos[3] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};

/* Every block of f, per protocol, as policy_filter_from_blocks takes them. */
struct blocks {
	struct policy_filter_block_in *b[3];
	size_t n[3];
};

static void blocks_of(const struct policy_filter *f, struct blocks *bl)
{
	for (int t = 0; t < 3; t++) {
		size_t nb = policy_filter_n_blocks(f, protos[t]);
		bl->b[t] = calloc(nb + 1, sizeof *bl->b[t]);
		bl->n[t] = 0;
		assert_non_null(bl->b[t]);
		for (size_t k = 0; k < nb; k++) {
			struct policy_filter_block_in *o = &bl->b[t][bl->n[t]];
			policy_filter_block(f, protos[t], k, &o->lo, &o->hi, &o->ports,
			                    &o->n_ports);
			bl->n[t] += o->n_ports > 0; /* gaps are left out, as on the wire */
		}
	}
}

static void blocks_free(struct blocks *bl)
{
	for (int t = 0; t < 3; t++)
		free(bl->b[t]);
}

#define N_NODES 40

/* Nodes with IPv4 and (most) IPv6 addresses, users and owned tags. */
static void make_nodes(struct policy_node *nd, char (*names)[16])
{
	static const char *const users[] = {"alice", "bob", "carol", "ops"};
	static const char *const t1[] = {"tag:web"}, *const t2[] = {"tag:db", "tag:web"};
	for (int i = 0; i < N_NODES; i++) {
		uint32_t a = 0x64400000u + (uint32_t)(3 * i + 1);
		snprintf(names[i], sizeof names[i], "n%d", i);
		memset(&nd[i], 0, sizeof nd[i]);
		nd[i].id = (uint64_t)i + 1;
		nd[i].name = names[i];
		nd[i].v4 = a;
		nd[i].user = users[i % 4];
		if (i % 5) {
			static const uint8_t pre[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
			memcpy(nd[i].v6, pre, sizeof pre);
			nd[i].v6[14] = (uint8_t)(a >> 8);
			nd[i].v6[15] = (uint8_t)a;
			nd[i].has_v6 = true;
		}
		if (i % 4 == 3) { /* ops's nodes are servers */
			nd[i].tags = i % 8 == 3 ? t1 : t2;
			nd[i].n_tags = i % 8 == 3 ? 1 : 2;
		}
	}
}

static const char round_trip_policy[] =
    "{\"groups\": {\"group:dev\": [\"alice@\", \"bob@\"]},\n"
    " \"tagOwners\": {\"tag:web\": [\"ops@\"], \"tag:db\": [\"ops@\"]},\n"
    " \"hosts\": {\"lab\": \"100.64.0.16/28\"},\n"
    " \"acls\": [\n"
    "  {\"action\": \"accept\", \"src\": [\"group:dev\"], \"dst\": "
    "[\"tag:web:22,80-90,443\"]},\n"
    "  {\"action\": \"accept\", \"src\": [\"tag:web\"], \"dst\": [\"tag:db:5432\"], "
    "\"proto\": \"tcp\"},\n"
    "  {\"action\": \"accept\", \"src\": [\"lab\", \"carol@\"], \"dst\": [\"*:*\"]},\n"
    "  {\"action\": \"accept\", \"src\": [\"fd7a:115c:a1e0::a/127\"], \"dst\": "
    "[\"alice@:1000-2000\"], \"proto\": \"udp\"},\n"
    "  {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"100.64.0.4:53\"], "
    "\"proto\": \"udp\"},\n"
    "  {\"action\": \"accept\", \"src\": [\"bob@\"], \"dst\": [\"tag:db:*\"], "
    "\"proto\": \"icmp\"}]}";

static void probe_same(const struct policy_filter *a, const struct policy_filter *b,
                       const struct policy_ip *ip, size_t *accepted)
{
	static const uint8_t all_protos[] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP,
	                                     POLICY_ICMPV6, 99};
	const uint16_t ports[] = {0, 1, 22, 23, 53, 79, 80, 90, 91, 443, 999, 1000,
	                          2000, 2001, 5432, 65535, (uint16_t)rnd(65536)};
	for (size_t p = 0; p < sizeof all_protos; p++)
		for (size_t q = 0; q < sizeof ports / sizeof *ports; q++) {
			enum policy_verdict x = policy_filter_match(a, all_protos[p], ip, ports[q]),
			                    y = policy_filter_match(b, all_protos[p], ip, ports[q]);
			if (x != y)
				fail_msg("proto %u port %u: compiled %d, from blocks %d",
				         all_protos[p], ports[q], x, y);
			*accepted += x == POLICY_ACCEPT;
		}
}

/* compile -> policy_node_filter -> blocks -> policy_filter_from_blocks:
 * the same verdict for every node's filter on every probe. */
static void filter_round_trips_through_its_blocks(void **state)
{
	struct policy_node nd[N_NODES];
	char names[N_NODES][16];
	make_nodes(nd, names);
	struct policy *p = parse_ok(round_trip_policy);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, N_NODES, &e);
	assert_non_null(cp);
	assert_int_equal(policy_compiled_n_warnings(cp), 0);
	size_t accepted = 0, probes = 0;
	for (size_t i = 0; i < N_NODES; i++) {
		struct policy_filter *f = policy_node_filter(cp, i, &e);
		assert_non_null(f);
		struct blocks bl;
		blocks_of(f, &bl);
		const struct policy_filter_block_in *b[3] = {bl.b[0], bl.b[1], bl.b[2]};
		struct policy_filter *g = policy_filter_from_blocks(b, bl.n, &e);
		if (!g)
			fail_msg("node %zu: %s", i, e.msg);
		for (size_t j = 0; j < N_NODES; j++) {
			struct policy_ip ip;
			for (int d = -1; d <= 1; d++) { /* the address and its neighbours */
				policy_ip_v4(&ip, nd[j].v4 + (uint32_t)d);
				probe_same(f, g, &ip, &accepted);
				if (nd[j].has_v6) {
					uint8_t v6[16];
					memcpy(v6, nd[j].v6, 16);
					v6[15] = (uint8_t)(v6[15] + d);
					policy_ip_v6(&ip, v6);
					probe_same(f, g, &ip, &accepted);
				}
				probes += 2;
			}
		}
		for (int k = 0; k < 50; k++) { /* anywhere */
			struct policy_ip ip;
			for (int q = 0; q < 16; q++)
				ip.b[q] = (uint8_t)rnd(256);
			probe_same(f, g, &ip, &accepted);
			policy_ip_v4(&ip, 0x64400000u + rnd(1 << 22));
			probe_same(f, g, &ip, &accepted);
		}
		policy_filter_free(g);
		blocks_free(&bl);
		policy_filter_free(f);
	}
	assert_true(accepted > 100); /* the probes saw both verdicts */
	assert_true(probes > 1000);
	policy_compiled_free(cp);
	policy_free(p);
}

/* "*" in the rules is ports 1-65535 in a TCP or UDP filter (port 0 is no
 * port), so its blocks pass from_blocks' check. */
static void star_ports_are_one_to_65535(void **state)
{
	struct policy_node nd[N_NODES];
	char names[N_NODES][16];
	make_nodes(nd, names);
	struct policy *p = parse_ok("{\"acls\": [{\"action\": \"accept\", \"src\": "
	                            "[\"*\"], \"dst\": [\"*:*\"]}]}");
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, N_NODES, &e);
	struct policy_filter *f = policy_node_filter(cp, 0, &e);
	struct policy_ip ip;
	const struct policy_ports *pr;
	size_t n;
	policy_ip_v4(&ip, nd[1].v4);
	policy_filter_ports_for(f, POLICY_TCP, &ip, &pr, &n);
	assert_int_equal(n, 1);
	assert_int_equal(pr[0].lo, 1);
	assert_int_equal(pr[0].hi, 65535);
	policy_filter_ports_for(f, POLICY_ICMP, &ip, &pr, &n);
	assert_int_equal(n, 1);
	assert_int_equal(pr[0].lo, 0);
	assert_int_equal(pr[0].hi, 65535);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 0), POLICY_DENY);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 1), POLICY_ACCEPT);
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
}

static void ports_for_reads_one_sources_ports(void **state)
{
	struct policy_node nd[N_NODES];
	char names[N_NODES][16];
	make_nodes(nd, names);
	struct policy *p = parse_ok(round_trip_policy);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, N_NODES, &e);
	/* node 3: ops's tag:web server; from alice's node 0 */
	struct policy_filter *f = policy_node_filter(cp, 3, &e);
	struct policy_ip ip;
	const struct policy_ports *pr;
	size_t n;
	policy_ip_v4(&ip, nd[0].v4);
	policy_filter_ports_for(f, POLICY_TCP, &ip, &pr, &n);
	assert_int_equal(n, 3);
	assert_int_equal(pr[0].lo, 22);
	assert_int_equal(pr[1].lo, 80);
	assert_int_equal(pr[1].hi, 90);
	assert_int_equal(pr[2].lo, 443);
	policy_filter_ports_for(f, POLICY_ICMP, &ip, &pr, &n); /* dev: all protocols */
	assert_int_equal(n, 1);
	policy_filter_ports_for(f, 99, &ip, &pr, &n);
	assert_int_equal(n, 0);
	assert_null(pr);
	policy_ip_v4(&ip, nd[3].v4 + 1); /* an address no node holds */
	policy_filter_ports_for(f, POLICY_TCP, &ip, &pr, &n);
	assert_int_equal(n, 0);
	policy_filter_free(f);
	policy_compiled_free(cp);
	/* no policy: everything */
	cp = policy_compile(NULL, nd, N_NODES, &e);
	f = policy_node_filter(cp, 3, &e);
	policy_filter_ports_for(f, POLICY_UDP, &ip, &pr, &n);
	assert_int_equal(n, 1);
	assert_int_equal(pr[0].lo, 0);
	assert_int_equal(pr[0].hi, 65535);
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
}

static void from_blocks_refuses(const struct policy_filter_block_in *tcp, size_t n,
                                int proto_index, const char *sub)
{
	const struct policy_filter_block_in *b[3] = {NULL, NULL, NULL};
	size_t ns[3] = {0, 0, 0};
	b[proto_index] = tcp;
	ns[proto_index] = n;
	struct policy_error e;
	struct policy_filter *f = policy_filter_from_blocks(b, ns, &e);
	if (f) {
		policy_filter_free(f);
		fail_msg("accepted, wanted: %s", sub);
	}
	if (!strstr(e.msg, sub))
		fail_msg("got '%s', wanted '%s'", e.msg, sub);
}

static void from_blocks_checks_its_input(void **state)
{
	const struct policy_ports p22[] = {{22, 22}}, p2[] = {{22, 80}, {80, 90}},
	                          p0[] = {{0, 80}}, rev[] = {{90, 80}},
	                          icmp_bad[] = {{1, 65535}}, icmp[] = {{0, 65535}},
	                          desc[] = {{80, 80}, {22, 22}};
	struct policy_filter_block_in b[2];
	memset(b, 0, sizeof b);
	policy_ip_v4(&b[0].lo, 0x64400001);
	policy_ip_v4(&b[0].hi, 0x64400005);
	policy_ip_v4(&b[1].lo, 0x64400004);
	policy_ip_v4(&b[1].hi, 0x64400009);
	b[0].ports = b[1].ports = p22;
	b[0].n_ports = b[1].n_ports = 1;
	from_blocks_refuses(b, 2, 0, "tcp block 1: it starts at or before the end");
	policy_ip_v4(&b[1].lo, 0x64400006);
	b[1].ports = p2;
	b[1].n_ports = 2;
	from_blocks_refuses(b, 2, 1, "udp block 1: its port ranges must ascend");
	b[1].ports = desc;
	from_blocks_refuses(b, 2, 0, "must ascend and not overlap");
	b[1].ports = p0;
	b[1].n_ports = 1;
	from_blocks_refuses(b, 2, 0, "port 0 is not a TCP or UDP port");
	b[1].ports = rev;
	from_blocks_refuses(b, 2, 0, "a port range ends before it starts");
	b[1].n_ports = 0;
	from_blocks_refuses(b, 2, 0, "tcp block 1: it has no ports");
	b[1].ports = icmp_bad;
	b[1].n_ports = 1;
	from_blocks_refuses(b + 1, 1, 2, "icmp block 0: an ICMP block's ports must be "
	                                 "exactly 0-65535");
	policy_ip_v4(&b[1].lo, 0x64400010);
	from_blocks_refuses(b + 1, 1, 0, "its first address is after its last");
	const struct policy_filter_block_in *none[3] = {NULL, NULL, NULL};
	size_t one[3] = {1, 0, 0};
	struct policy_error e;
	assert_null(policy_filter_from_blocks(none, one, &e));
	/* a good one: ICMP 0-65535, TCP 22 from .1-.5 */
	b[1].ports = icmp;
	policy_ip_v4(&b[1].lo, 0x64400001);
	policy_ip_v4(&b[1].hi, 0x64400001);
	const struct policy_filter_block_in *ok[3] = {b, NULL, b + 1};
	size_t nok[3] = {1, 0, 1};
	struct policy_filter *f = policy_filter_from_blocks(ok, nok, &e);
	assert_non_null(f);
	struct policy_ip ip;
	policy_ip_v4(&ip, 0x64400001);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 22), POLICY_ACCEPT);
	assert_int_equal(policy_filter_match(f, POLICY_UDP, &ip, 22), POLICY_DENY);
	assert_int_equal(policy_filter_match(f, POLICY_ICMPV6, &ip, 0), POLICY_ACCEPT);
	policy_ip_v4(&ip, 0x64400006);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 22), POLICY_DENY);
	policy_ip_v4(&ip, 0x64400000);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 22), POLICY_DENY);
	policy_filter_free(f);
}

/* n all 0: a filter that denies everything (a policy with no rule for the
 * node), not one that allows all. */
static void from_no_blocks_denies_everything(void **state)
{
	const struct policy_filter_block_in *b[3] = {NULL, NULL, NULL};
	size_t n[3] = {0, 0, 0};
	struct policy_error e;
	struct policy_filter *f = policy_filter_from_blocks(b, n, &e);
	assert_non_null(f);
	assert_false(policy_filter_allows_all(f));
	struct policy_ip ip;
	for (int k = 0; k < 100; k++) {
		policy_ip_v4(&ip, 0x64400000u + rnd(1 << 22));
		for (int t = 0; t < 3; t++)
			assert_int_equal(policy_filter_match(f, protos[t], &ip,
			                                     (uint16_t)rnd(65536)),
			                 POLICY_DENY);
	}
	policy_filter_free(f);
}

static bool is_v4(const struct policy_ip *ip)
{
	static const uint8_t map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return !memcmp(ip->b, map, 12);
}

/* A source of "*" opens one range from everywhere, but the compiled
 * blocks end at the IPv4 space's edges, so each lies within one family (a
 * map carries them so); from_blocks refuses one that does not. */
static void blocks_lie_within_one_family(void **state)
{
	struct policy_node nd[N_NODES];
	char names[N_NODES][16];
	make_nodes(nd, names);
	struct policy *p = parse_ok("{\"acls\": [{\"action\": \"accept\", \"src\": "
	                            "[\"*\"], \"dst\": [\"*:22\"]}, {\"action\": "
	                            "\"accept\", \"src\": [\"fd7a:115c:a1e0::/48\"], "
	                            "\"dst\": [\"*:80\"]}]}");
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, N_NODES, &e);
	struct policy_filter *f = policy_node_filter(cp, 0, &e);
	size_t with_ports = 0;
	for (int t = 0; t < 3; t++)
		for (size_t k = 0; k < policy_filter_n_blocks(f, protos[t]); k++) {
			struct policy_ip lo, hi;
			const struct policy_ports *pr;
			size_t n;
			policy_filter_block(f, protos[t], k, &lo, &hi, &pr, &n);
			if (!n)
				continue;
			with_ports++;
			assert_int_equal(is_v4(&lo), is_v4(&hi));
		}
	assert_true(with_ports >= 3 * 3); /* below, in and above the IPv4 space */
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
	/* from an IPv4 address to the top of the IPv6 space */
	static const struct policy_ports p22[] = {{22, 22}};
	struct policy_filter_block_in all = {.ports = p22, .n_ports = 1};
	policy_ip_v4(&all.lo, 0x64400001);
	memset(all.hi.b, 0xff, 16);
	from_blocks_refuses(&all, 1, 0, "not of one family");
	/* from below the IPv4 space to above it, both ends IPv6 */
	policy_ip_v4(&all.lo, 0);
	all.lo.b[10] = all.lo.b[11] = 0;
	from_blocks_refuses(&all, 1, 0, "not of one family");
}

/* --- tags that count ------------------------------------------------- */

static size_t warnings_with(const struct policy_compiled *cp, const char *a,
                            const char *b)
{
	size_t n = 0;
	for (size_t k = 0; k < policy_compiled_n_warnings(cp); k++) {
		const char *m = policy_compiled_warning(cp, k)->msg;
		n += strstr(m, a) && strstr(m, b);
	}
	return n;
}

static void only_owned_tags_count(void **state)
{
	static const char *const srv_ci[] = {"tag:srv", "tag:ci"}, *const srv[] = {"tag:srv"},
	                         *const nope[] = {"tag:nope"}, *const x[] = {"tag:x"},
	                         *const ci[] = {"tag:ci"};
	const struct policy_node nd[] = {
	    {.id = 1, .name = "a", .v4 = 0x64400001, .user = "alice", .tags = srv_ci, .n_tags = 2},
	    {.id = 2, .name = "b", .v4 = 0x64400002, .user = "bob", .tags = srv, .n_tags = 1},
	    {.id = 3, .name = "c", .v4 = 0x64400003, .user = "dave", .tags = nope, .n_tags = 1},
	    {.id = 4, .name = "d", .v4 = 0x64400004, .tags = x, .n_tags = 1},
	    {.id = 5, .name = "e", .v4 = 0x64400005, .user = "carol", .tags = ci, .n_tags = 1},
	    {.id = 6, .name = "f", .v4 = 0x64400006, .user = "carol", .tags = x, .n_tags = 1},
	};
	const char *text =
	    "{\"groups\": {\"group:ops\": [\"alice@\"]},\n"
	    " \"tagOwners\": {\"tag:srv\": [\"group:ops\"], \"tag:ci\": [\"tag:srv\"],\n"
	    "               \"tag:x\": [\"carol@\"]},\n"
	    " \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	    "[\"tag:srv:22\", \"bob@:80\"]}]}";
	struct policy *p = parse_ok(text);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, 6, &e);
	assert_non_null(cp);
	const char *const *tags;
	assert_int_equal(policy_node_tags(cp, 0, &tags), 2); /* via group, via tag */
	assert_string_equal(tags[0], "tag:srv");
	assert_string_equal(tags[1], "tag:ci");
	assert_int_equal(policy_node_tags(cp, 1, &tags), 0);
	assert_int_equal(policy_node_tags(cp, 2, &tags), 0);
	assert_int_equal(policy_node_tags(cp, 3, &tags), 0);
	assert_int_equal(policy_node_tags(cp, 4, &tags), 0);
	assert_int_equal(policy_node_tags(cp, 5, &tags), 1); /* carol owns tag:x */
	assert_string_equal(tags[0], "tag:x");
	assert_int_equal(policy_node_tags(cp, 99, &tags), 0);
	assert_int_equal(warnings_with(cp, "node b: tag 'tag:srv' is ignored",
	                               "its user 'bob' does not own it"),
	                 1);
	assert_int_equal(warnings_with(cp, "node c: tag 'tag:nope'", "not declared"), 1);
	assert_int_equal(warnings_with(cp, "node d: tag 'tag:x'", "no user"), 1);
	assert_int_equal(warnings_with(cp, "node e: tag 'tag:ci'", "carol"), 1);
	assert_int_equal(policy_compiled_n_warnings(cp), 4);
	/* b is bob's again: port 80 open, the tag's 22 not */
	struct policy_filter *f = policy_node_filter(cp, 1, &e);
	struct policy_ip ip;
	policy_ip_v4(&ip, 0x64400001);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 80), POLICY_ACCEPT);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 22), POLICY_DENY);
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
	/* taking alice out of group:ops revokes both her node's tags */
	p = parse_ok("{\"groups\": {\"group:ops\": []},\n"
	             " \"tagOwners\": {\"tag:srv\": [\"group:ops\"], \"tag:ci\": "
	             "[\"tag:srv\"], \"tag:x\": []},\n"
	             " \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	             "[\"tag:srv:22\", \"alice@:80\"]}]}");
	cp = policy_compile(p, nd, 6, &e);
	assert_int_equal(policy_node_tags(cp, 0, &tags), 0);
	f = policy_node_filter(cp, 0, &e);
	policy_ip_v4(&ip, 0x64400002);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 80), POLICY_ACCEPT);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &ip, 22), POLICY_DENY);
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
}

/* Filters are shared between nodes the rules treat alike: each stays valid
 * after the compiled policy is freed, and frees on its own. */
static void shared_filters_outlive_the_compile(void **state)
{
	struct policy_node nd[N_NODES];
	char names[N_NODES][16];
	make_nodes(nd, names);
	struct policy *p = parse_ok(round_trip_policy);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nd, N_NODES, &e);
	struct policy_filter *a = policy_node_filter(cp, 3, &e),
	                     *b = policy_node_filter(cp, 11, &e); /* both tag:web */
	policy_compiled_free(cp);
	policy_free(p);
	struct policy_ip ip;
	policy_ip_v4(&ip, nd[0].v4);
	assert_int_equal(policy_filter_match(a, POLICY_TCP, &ip, 443), POLICY_ACCEPT);
	policy_filter_free(a);
	assert_int_equal(policy_filter_match(b, POLICY_TCP, &ip, 443), POLICY_ACCEPT);
	assert_int_equal(policy_filter_match(b, POLICY_TCP, &ip, 444), POLICY_DENY);
	policy_filter_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(filter_round_trips_through_its_blocks),
	    cmocka_unit_test(star_ports_are_one_to_65535),
	    cmocka_unit_test(ports_for_reads_one_sources_ports),
	    cmocka_unit_test(from_blocks_checks_its_input),
	    cmocka_unit_test(from_no_blocks_denies_everything),
	    cmocka_unit_test(blocks_lie_within_one_family),
	    cmocka_unit_test(only_owned_tags_count),
	    cmocka_unit_test(shared_filters_outlive_the_compile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
