/* libFuzzer harness for the access policy: any bytes go through the HuJSON
 * scanner, jansson and the section parser; a policy that parses is
 * compiled against six fixed nodes, its tests are run, and every node's
 * filter is checked against a plain reading of the rules for every other
 * node's address, protocol and a few ports; visibility must be symmetric.
 * Build: clang -fsanitize=fuzzer,address (tests/fuzz/fuzz.mk). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"
#include "core/policy/policy.h"

static const char *const tags_a[] = {"tag:a"};
static const char *const tags_ab[] = {"tag:a", "tag:b"};
static const struct policy_node nodes[] = {
    {.id = 1, .name = "n1", .v4 = 0x64400001, .user = "alice"},
    {.id = 2, .name = "n2", .v4 = 0x64400002, .user = "bob"},
    {.id = 3, .name = "n3", .v4 = 0x64400003, .user = "carol@example.com"},
    {.id = 4,
     .name = "n4",
     .v4 = 0x64400004,
     .user = "alice",
     .tags = tags_a,
     .n_tags = 1},
    {.id = 5,
     .name = "n5",
     .v4 = 0x64400105,
     .user = "dave",
     .tags = tags_ab,
     .n_tags = 2},
    {.id = 6, .name = "n6", .v4 = 0x64400006},
};
#define N_NODES (sizeof nodes / sizeof nodes[0])

/* Does a rule accept a packet from node s to node d? */
static bool plain_accept(const struct policy_compiled *cp, size_t s, size_t d,
                         uint8_t bit, uint16_t port)
{
	const struct policy *p = cp->p;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *ru = &p->rules[r];
		bool src = false;
		if (!(ru->protos & bit))
			continue;
		for (uint32_t k = 0; k < ru->n_src && !src; k++)
			src = pol_node_matches(cp, &ru->src[k], s);
		if (!src)
			continue;
		for (uint32_t k = 0; k < ru->n_dst; k++) {
			if (!pol_node_matches(cp, &ru->dst[k].sel, d))
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t protos[3] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};
	static const uint8_t bits[3] = {POL_TCP, POL_UDP, POL_ICMP};
	static const uint16_t ports[] = {1, 22, 80, 443, 1000, 5432, 65535};
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
	size_t passed;
	if (policy_run_tests(cp, &passed, &e))
		check_error(&e);
	for (size_t d = 0; d < N_NODES; d++) {
		struct policy_filter *f = policy_node_filter(cp, d, &e);
		if (!f) {
			check_error(&e);
			continue;
		}
		for (size_t s = 0; s < N_NODES; s++)
			for (int t = 0; t < 3; t++)
				for (size_t q = 0; q < sizeof ports / sizeof ports[0];
				     q++) {
					struct policy_ip ip;
					policy_ip_v4(&ip, nodes[s].v4);
					bool got = policy_filter_match(f, protos[t], &ip,
					                               ports[q]) ==
					           POLICY_ACCEPT;
					if (got !=
					    plain_accept(cp, s, d, bits[t], ports[q]))
						__builtin_trap();
				}
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
