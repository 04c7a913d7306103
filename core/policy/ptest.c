/* The policy's tests. A test's source and each destination name one
 * identity: a user, a tag, or an address. Each stands for itself and for
 * the nodes of it in the node list; an address that is a node's stands
 * for that node only. "accept" holds when every pair of those is accepted
 * (so a user's test holds for any node of the user, present or future),
 * "deny" when no pair is: an address rule that lets one of alice's nodes
 * in fails "alice" in deny, while only a rule for alice passes her accept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

#define NO_NODE SIZE_MAX

struct memb {
	size_t node; /* NO_NODE: the identity itself */
	const struct pol_sel *id;
};

static bool ident_matches(const struct policy *p, const struct pol_sel *sel,
                          const struct pol_sel *id)
{
	switch (sel->kind) {
	case SEL_ANY:
		return true;
	case SEL_USER:
		return id->kind == SEL_USER && !strcmp(id->name, sel->name);
	case SEL_GROUP:
		if (id->kind != SEL_USER)
			return false;
		for (uint32_t i = 0; i < p->groups[sel->group].n; i++)
			if (!strcmp(p->groups[sel->group].members[i], id->name))
				return true;
		return false;
	case SEL_TAG:
		return id->kind == SEL_TAG && !strcmp(id->name, sel->name);
	default:
		return id->kind == SEL_PREFIX && pol_iv_contains(&sel->iv, id->iv.lo);
	}
}

static bool matches(const struct policy_compiled *cp, const struct pol_sel *sel,
                    const struct memb *m)
{
	return m->node == NO_NODE ? ident_matches(cp->p, sel, m->id)
	                          : pol_node_matches(cp, sel, m->node);
}

/* The first rule accepting s -> d on proto bit and port, or -1. */
static int accepting_rule(const struct policy_compiled *cp, const struct memb *s,
                          const struct memb *d, uint8_t bit, uint16_t port)
{
	const struct policy *p = cp->p;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *rule = &p->rules[r];
		bool src = false;
		if (!(rule->protos & bit))
			continue;
		for (uint32_t k = 0; k < rule->n_src && !src; k++)
			src = matches(cp, &rule->src[k], s);
		if (!src)
			continue;
		for (uint32_t k = 0; k < rule->n_dst; k++) {
			const struct pol_dst *dst = &rule->dst[k];
			bool port_ok = bit == POL_ICMP;
			for (uint32_t q = 0; q < dst->n_ports && !port_ok; q++)
				port_ok =
				    dst->ports[q].lo <= port && port <= dst->ports[q].hi;
			if (port_ok && matches(cp, &dst->sel, d))
				return (int)r;
		}
	}
	return -1;
}

/* The members an identity stands for: itself and its nodes (an address
 * held by a node: that node alone). Returns how many were written; cap is
 * cp->n + 1. */
static size_t members(const struct policy_compiled *cp, const struct pol_sel *id,
                      struct memb *out)
{
	size_t n = 0;
	for (size_t i = 0; i < cp->n; i++)
		if (pol_node_matches(cp, id, i))
			out[n++] = (struct memb){i, id};
	if (id->kind != SEL_PREFIX || n == 0)
		out[n++] = (struct memb){NO_NODE, id};
	return n;
}

static void describe(const struct policy_compiled *cp, const struct memb *m, char *out,
                     size_t cap)
{
	char b[100];
	if (m->node == NO_NODE)
		snprintf(out, cap, "%s", "");
	else
		snprintf(out, cap, " node %s",
		         pol_show(cp->nodes[m->node].name, b, sizeof b));
}

static const char *proto_name(uint8_t bit)
{
	return bit == POL_TCP ? "tcp" : bit == POL_UDP ? "udp" : "icmp";
}

static int check_case(const struct policy_compiled *cp, size_t ti,
                      const struct pol_test *t, const struct pol_case *c, struct memb *ms,
                      size_t ns, struct memb *md, struct policy_error *err)
{
	size_t nd = members(cp, &c->dst, md);
	for (size_t a = 0; a < ns; a++)
		for (size_t b = 0; b < nd; b++) {
			if (ms[a].node != NO_NODE && ms[a].node == md[b].node)
				continue; /* a node to itself */
			int r = accepting_rule(cp, &ms[a], &md[b], t->proto, c->port);
			if ((r >= 0) == c->accept)
				continue;
			char s1[100], s2[100], w1[120], w2[120], port[8] = "*", why[200];
			describe(cp, &ms[a], w1, sizeof w1);
			describe(cp, &md[b], w2, sizeof w2);
			if (t->proto != POL_ICMP)
				snprintf(port, sizeof port, "%u", c->port);
			if (c->accept)
				snprintf(why, sizeof why, "%s",
				         "is denied (no rule accepts it), but the test "
				         "expects it "
				         "accepted");
			else
				snprintf(why, sizeof why,
				         "is accepted by acls[%d] (line %d), but the "
				         "test expects it "
				         "denied",
				         r, cp->p->rules[r].line);
			pol_set_err(
			    err, c->line, c->col,
			    "tests[%zu] failed: %s%s -> %s%s:%s (%s) %s%s", ti,
			    pol_show(t->src.text, s1, sizeof s1), *w1 ? w1 : "",
			    pol_show(c->dst.text, s2, sizeof s2), w2, port,
			    proto_name(t->proto), why,
			    c->accept && c->dst.kind == SEL_PREFIX &&
			            md[b].node == NO_NODE
			        ? "; an address no node holds is matched only by "
			          "addresses and * (give a node list to test the node)"
			        : "");
			return -1;
		}
	return 0;
}

int policy_run_tests(const struct policy_compiled *cp, size_t *passed,
                     struct policy_error *err)
{
	*passed = 0;
	memset(err, 0, sizeof *err);
	if (!cp->p)
		return 0;
	struct memb *ms = calloc(2 * (cp->n + 1), sizeof *ms);
	if (!ms) {
		pol_set_err(err, 0, 0, "out of memory");
		return -1;
	}
	struct memb *md = ms + cp->n + 1;
	for (uint32_t ti = 0; ti < cp->p->n_tests; ti++) {
		const struct pol_test *t = &cp->p->tests[ti];
		size_t ns = members(cp, &t->src, ms);
		for (uint32_t k = 0; k < t->n_cases; k++) {
			if (check_case(cp, ti, t, &t->cases[k], ms, ns, md, err)) {
				free(ms);
				return -1;
			}
			(*passed)++;
		}
	}
	free(ms);
	return 0;
}
