/* libFuzzer harness for the access policy: any bytes go through the HuJSON
 * scanner, jansson and the section parser; a policy that parses is
 * compiled against seven fixed nodes (most with IPv4 and IPv6 addresses,
 * some tagged, one tag not owned), its tests are run, and every node's
 * filter is checked, from every other node's IPv4 and IPv6 address, for
 * every protocol and a few ports, against a plain reading of the rules
 * (with tagOwners read plainly too); the filter rebuilt from its blocks
 * must give the same verdicts; visibility must be symmetric.
 * Build: clang -fsanitize=fuzzer,address (tests/fuzz/fuzz.mk). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/policy.h"
#include "core/policy/policy_int.h"

static const char *const tags_a[] = {"tag:a"};
static const char *const tags_ab[] = {"tag:a", "tag:b"};
static const char *const tags_b[] = {"tag:b"};
#define V6(x) {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0, 0, 0, 0, 0, 0x64, 0x40, 0, x}
static const struct policy_node nodes[] = {
    {.id = 1, .name = "n1", .v4 = 0x64400001, .has_v6 = true, .v6 = V6(1), .user = "alice"},
    {.id = 2, .name = "n2", .v4 = 0x64400002, .user = "bob"},
    {.id = 3,
     .name = "n3",
     .v4 = 0x64400003,
     .has_v6 = true,
     .v6 = V6(3),
     .user = "carol@example.com"},
    {.id = 4,
     .name = "n4",
     .v4 = 0x64400004,
     .has_v6 = true,
     .v6 = V6(4),
     .user = "alice",
     .tags = tags_a,
     .n_tags = 1},
    {.id = 5,
     .name = "n5",
     .v4 = 0x64400105,
     .user = "dave",
     .tags = tags_ab,
     .n_tags = 2},
    {.id = 6, .name = "n6", .v4 = 0x64400006, .has_v6 = true, .v6 = V6(6)},
    {.id = 7,
     .name = "n7",
     .v4 = 0x64400007,
     .has_v6 = true,
     .v6 = V6(7),
     .user = "bob",
     .tags = tags_b,
     .n_tags = 1},
};
#define N_NODES (sizeof nodes / sizeof nodes[0])

/* --- a plain reading of the policy ------------------------------------ */

static bool in_group(const struct policy *p, uint32_t g, const char *user)
{
	for (uint32_t k = 0; k < p->groups[g].n; k++)
		if (!strcmp(p->groups[g].members[k], user))
			return true;
	return false;
}

/* kept[t]: does node i keep its t-th tag (owned, maybe through a kept tag)? */
static void plain_tags(const struct policy *p, size_t i, bool kept[16])
{
	const struct policy_node *n = &nodes[i];
	memset(kept, 0, 16);
	for (bool more = true; more;) {
		more = false;
		for (size_t t = 0; t < n->n_tags; t++) {
			const struct pol_tagowner *to = NULL;
			for (uint32_t k = 0; k < p->n_tagowners; k++)
				if (!strcmp(p->tagowners[k].tag, n->tags[t]))
					to = &p->tagowners[k];
			for (uint32_t k = 0; to && !kept[t] && k < to->n; k++) {
				const struct pol_sel *o = &to->owners[k];
				bool own = false;
				if (o->kind == SEL_USER)
					own = n->user && !strcmp(o->name, n->user);
				else if (o->kind == SEL_GROUP)
					own = n->user && in_group(p, o->group, n->user);
				else if (o->kind == SEL_TAG)
					for (size_t u = 0; u < n->n_tags; u++)
						own |= kept[u] && !strcmp(n->tags[u], o->name);
				if (own)
					kept[t] = more = true;
			}
		}
	}
}

static bool plain_node(const struct policy *p, const struct pol_sel *s, size_t i)
{
	const struct policy_node *n = &nodes[i];
	bool kept[16], tagged = false, has = false;
	plain_tags(p, i, kept);
	for (size_t t = 0; t < n->n_tags; t++) {
		tagged |= kept[t];
		if (s->kind == SEL_TAG && kept[t] && !strcmp(n->tags[t], s->name))
			has = true;
	}
	struct policy_ip ip;
	switch (s->kind) {
	case SEL_ANY:
		return true;
	case SEL_USER:
		return !tagged && n->user && !strcmp(n->user, s->name);
	case SEL_GROUP:
		return !tagged && n->user && in_group(p, s->group, n->user);
	case SEL_TAG:
		return has;
	default:
		policy_ip_v4(&ip, n->v4);
		if (pol_iv_contains(&s->iv, pol_u128_from_ip(&ip)))
			return true;
		policy_ip_v6(&ip, n->v6);
		return n->has_v6 && pol_iv_contains(&s->iv, pol_u128_from_ip(&ip));
	}
}

/* Does a rule accept a packet from node s's address a to node d? */
static bool plain_accept(const struct policy *p, size_t s, const struct policy_ip *a,
                         size_t d, uint8_t bit, uint16_t port)
{
	if (bit != POL_ICMP && port == 0)
		return false;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *ru = &p->rules[r];
		bool src = false;
		if (!(ru->protos & bit))
			continue;
		for (uint32_t k = 0; k < ru->n_src && !src; k++)
			src = ru->src[k].kind == SEL_PREFIX
			          ? pol_iv_contains(&ru->src[k].iv, pol_u128_from_ip(a))
			          : plain_node(p, &ru->src[k], s);
		if (!src)
			continue;
		for (uint32_t k = 0; k < ru->n_dst; k++) {
			if (!plain_node(p, &ru->dst[k].sel, d))
				continue;
			if (bit == POL_ICMP)
				return true;
			for (uint32_t q = 0; q < ru->dst[k].n_ports; q++)
				if (ru->dst[k].ports[q].lo <= port &&
				    port <= ru->dst[k].ports[q].hi)
					return true;
		}
	}
	return false;
}

static void check_error(const struct policy_error *e)
{
	if (!memchr(e->msg, 0, sizeof e->msg) || !e->msg[0] || e->line < 0 ||
	    (e->line > 0 && e->column < 1))
		__builtin_trap();
}

static const uint8_t protos[3] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};

/* f's blocks into a filter of its own. */
static struct policy_filter *rebuilt(const struct policy_filter *f)
{
	struct policy_filter_block_in *b[3] = {NULL, NULL, NULL};
	size_t n[3] = {0, 0, 0};
	struct policy_error e;
	for (int t = 0; t < 3; t++) {
		size_t nb = policy_filter_n_blocks(f, protos[t]);
		if (!(b[t] = calloc(nb + 1, sizeof *b[t])))
			abort();
		for (size_t k = 0; k < nb; k++) {
			struct policy_filter_block_in *o = &b[t][n[t]];
			policy_filter_block(f, protos[t], k, &o->lo, &o->hi, &o->ports,
			                    &o->n_ports);
			n[t] += o->n_ports > 0;
		}
	}
	const struct policy_filter_block_in *cb[3] = {b[0], b[1], b[2]};
	struct policy_filter *g = policy_filter_from_blocks(cb, n, &e);
	if (!g && !strstr(e.msg, "out of memory"))
		__builtin_trap(); /* a compiled filter's blocks are always valid */
	for (int t = 0; t < 3; t++)
		free(b[t]);
	return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t bits[3] = {POL_TCP, POL_UDP, POL_ICMP};
	static const uint16_t ports[] = {0, 1, 22, 80, 443, 1000, 5432, 65535};
	struct policy_error e;
	struct policy *p = policy_parse((const char *)data, size, &e);
	if (!p) {
		check_error(&e);
		return 0;
	}
	for (size_t i = 0; i < policy_n_warnings(p); i++)
		check_error(policy_warning(p, i));
	struct policy_compiled *cp = policy_compile(p, nodes, N_NODES, &e);
	if (!cp) {
		check_error(&e);
		policy_free(p);
		return 0;
	}
	for (size_t i = 0; i < policy_compiled_n_warnings(cp); i++)
		check_error(policy_compiled_warning(cp, i));
	for (size_t i = 0; i < N_NODES; i++) { /* the tags kept, as read plainly */
		const char *const *tags;
		size_t n = policy_node_tags(cp, i, &tags), want = 0;
		bool kept[16];
		plain_tags(p, i, kept);
		for (size_t t = 0; t < nodes[i].n_tags; t++)
			want += kept[t];
		if (n != want)
			__builtin_trap();
	}
	size_t passed;
	if (policy_run_tests(cp, &passed, &e))
		check_error(&e);
	for (size_t d = 0; d < N_NODES; d++) {
		struct policy_filter *f = policy_node_filter(cp, d, &e);
		if (!f) {
			check_error(&e);
			continue;
		}
		struct policy_filter *g = rebuilt(f);
		for (size_t s = 0; s < N_NODES; s++)
			for (int fam = 0; fam < 2; fam++) {
				struct policy_ip ip;
				if (fam && !nodes[s].has_v6)
					continue;
				if (fam)
					policy_ip_v6(&ip, nodes[s].v6);
				else
					policy_ip_v4(&ip, nodes[s].v4);
				for (int t = 0; t < 3; t++)
					for (size_t q = 0; q < sizeof ports / sizeof ports[0];
					     q++) {
						enum policy_verdict v = policy_filter_match(
						    f, protos[t], &ip, ports[q]);
						if ((v == POLICY_ACCEPT) !=
						    plain_accept(p, s, &ip, d, bits[t], ports[q]))
							__builtin_trap();
						if (g && policy_filter_match(g, protos[t], &ip,
						                             ports[q]) != v)
							__builtin_trap();
					}
			}
		policy_filter_free(g);
		policy_filter_free(f);
	}
	/* i sees j exactly when j sees i */
	bool seen[N_NODES][N_NODES] = {{0}};
	for (size_t i = 0; i < N_NODES; i++) {
		size_t *v, n;
		if (policy_node_visible(cp, i, &v, &n))
			continue;
		for (size_t k = 0; k < n; k++) {
			if (v[k] >= N_NODES || v[k] == i || (k && v[k] <= v[k - 1]))
				__builtin_trap();
			seen[i][v[k]] = true;
		}
		free(v);
	}
	for (size_t i = 0; i < N_NODES; i++)
		for (size_t j = 0; j < N_NODES; j++)
			if (seen[i][j] != seen[j][i])
				__builtin_trap();
	policy_compiled_free(cp);
	policy_free(p);
	return 0;
}
