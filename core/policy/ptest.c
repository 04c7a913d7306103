/* The policy's tests. A test's source and each destination name one
 * identity: a user, a tag, or an address. Each stands for itself and for
 * the nodes of it in the node list; an address that is a node's stands
 * for that node only. "accept" holds when every pair of those is accepted
 * (so a user's test holds for any node of the user, present or future),
 * "deny" when no pair is.
 *
 * A pair of nodes is checked against the destination's compiled filter,
 * from each source address the test means (an address test: that address;
 * otherwise every address of the node, IPv4 and IPv6), so a test passes
 * exactly when the traffic does. A pair with an identity and no node (a
 * user who has none yet) is checked against the rules. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

#define NO_NODE SIZE_MAX

static bool ident_matches(const struct policy *p, const struct pol_sel *sel,
                          const struct pol_sel *id)
{
	switch (sel->kind) {
	case SEL_ANY:
		return true;
	case SEL_USER:
		return id->kind == SEL_USER && !strcmp(id->name, sel->name);
	case SEL_GROUP:
		return id->kind == SEL_USER && pol_group_has(p, sel->group, id->name);
	case SEL_TAG:
		return id->kind == SEL_TAG && !strcmp(id->name, sel->name);
	default:
		return id->kind == SEL_PREFIX && pol_iv_contains(&sel->iv, id->iv.lo);
	}
}

static bool matches(const struct policy_compiled *cp, uint32_t sobj, size_t m,
                    const struct pol_sel *id)
{
	const struct pol_sobj *o = &cp->sobj[sobj];
	return m == NO_NODE ? ident_matches(cp->p, o->sel, id) : pol_nset_has(&o->set, m);
}

/* The first rule accepting s -> d on proto bit and port, or -1. */
static int accepting_rule(const struct policy_compiled *cp, size_t s,
                          const struct pol_sel *sid, size_t d, const struct pol_sel *did,
                          uint8_t bit, uint16_t port)
{
	const struct policy *p = cp->p;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_crule *cr = &cp->rules[r];
		bool src = false;
		if (!(p->rules[r].protos & bit))
			continue;
		for (uint32_t k = 0; k < cr->n_src && !src; k++)
			src = matches(cp, cr->src[k], s, sid);
		if (!src)
			continue;
		for (uint32_t k = 0; k < cr->n_dst; k++) {
			const struct pol_cdst *dst = &cr->dst[k];
			bool port_ok = bit == POL_ICMP;
			for (uint32_t q = 0; q < dst->n_ports && !port_ok; q++)
				port_ok = dst->ports[q].lo <= port && port <= dst->ports[q].hi;
			if (port_ok && matches(cp, dst->sobj, d, did))
				return (int)r;
		}
	}
	return -1;
}

/* The members an identity stands for: its nodes, then itself (unless it
 * is an address that a node holds). cap is cp->n + 1. */
static size_t members(const struct policy_compiled *cp, uint32_t sobj, size_t *out)
{
	const struct pol_sobj *o = &cp->sobj[sobj];
	size_t n = 0;
	if (o->set.all)
		for (size_t i = 0; i < cp->n; i++)
			out[n++] = i;
	else
		for (uint32_t k = 0; k < o->set.n; k++)
			out[n++] = o->set.idx[k];
	if (o->sel->kind != SEL_PREFIX || n == 0)
		out[n++] = NO_NODE;
	return n;
}

static uint8_t proto_of(uint8_t bit)
{
	return bit == POL_TCP ? POLICY_TCP : bit == POL_UDP ? POLICY_UDP : POLICY_ICMP;
}

static const char *proto_name(uint8_t bit)
{
	return bit == POL_TCP ? "tcp" : bit == POL_UDP ? "udp" : "icmp";
}

/* The source addresses a member sends from, as the test means them: an
 * address test its address (within the node), else the node's. */
static size_t src_addrs(const struct policy_compiled *cp, const struct pol_sel *id,
                        size_t m, struct pol_u128 out[2])
{
	size_t n = 0;
	if (m == NO_NODE) {
		if (id->kind == SEL_PREFIX)
			out[n++] = id->iv.lo;
		return n;
	}
	const struct pol_cnode *nd = &cp->nodes[m];
	if (nd->has4 && (id->kind != SEL_PREFIX || pol_iv_contains(&id->iv, nd->a4)))
		out[n++] = nd->a4;
	if (nd->has6 && (id->kind != SEL_PREFIX || pol_iv_contains(&id->iv, nd->a6)))
		out[n++] = nd->a6;
	return n;
}

static void addr_text(struct pol_u128 v, char *out, size_t cap)
{
	struct policy_ip ip;
	pol_u128_to_ip(v, &ip);
	static const uint8_t map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (!memcmp(ip.b, map, 12))
		inet_ntop(AF_INET, ip.b + 12, out, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, ip.b, out, (socklen_t)cap);
}

struct tctx {
	const struct policy_compiled *cp;
	size_t ti;
	const struct pol_test *t;
	const struct pol_case *c;
	size_t probes;
	struct policy_error *err;
};

static int fail_case(struct tctx *x, size_t s, size_t d, int r, const char *from)
{
	const struct policy_compiled *cp = x->cp;
	const struct pol_test *t = x->t;
	const struct pol_case *c = x->c;
	char s1[100], s2[100], w1[200] = "", w2[120] = "", port[8] = "*", why[200], b[100];
	if (s != NO_NODE)
		snprintf(w1, sizeof w1, " node %s%s", pol_show(cp->nodes[s].name, b, sizeof b),
		         from);
	if (d != NO_NODE)
		snprintf(w2, sizeof w2, " node %s", pol_show(cp->nodes[d].name, b, sizeof b));
	if (t->proto != POL_ICMP)
		snprintf(port, sizeof port, "%u", c->port);
	if (c->accept)
		snprintf(why, sizeof why, "%s",
		         "is denied (no rule accepts it), but the test expects it accepted");
	else if (r >= 0)
		snprintf(why, sizeof why,
		         "is accepted by acls[%d] (line %d), but the test expects it denied",
		         r, cp->p->rules[r].line);
	else
		snprintf(why, sizeof why, "%s",
		         "is accepted by the node's filter, but the test expects it denied");
	pol_set_err(x->err, c->line, c->col, "tests[%zu] failed: %s%s -> %s%s:%s (%s) %s%s",
	            x->ti, pol_show(t->src.text, s1, sizeof s1), w1,
	            pol_show(c->dst.text, s2, sizeof s2), w2, port, proto_name(t->proto),
	            why,
	            c->accept && c->dst.kind == SEL_PREFIX && d == NO_NODE
	                ? "; an address no node holds is matched only by addresses "
	                  "and * (give a node list to test the node)"
	                : "");
	return -1;
}

static int too_many(struct tctx *x)
{
	pol_set_err(x->err, x->c->line, x->c->col,
	            "tests[%zu]: the tests would check more than %u (source address, "
	            "destination node) pairs against %zu nodes; test users or tags "
	            "with fewer nodes, or single addresses",
	            x->ti, POLICY_TESTS_MAX_PROBES, x->cp->n);
	return -1;
}

/* One (source member, destination member) pair. */
static int check_pair(struct tctx *x, size_t s, size_t d, const struct policy_filter *f)
{
	const struct policy_compiled *cp = x->cp;
	const struct pol_test *t = x->t;
	const struct pol_case *c = x->c;
	struct pol_u128 a[2];
	size_t na = d == NO_NODE ? 0 : src_addrs(cp, &t->src, s, a);
	if (!na) { /* no address to send from, or no node to receive: the rules */
		int r = accepting_rule(cp, s, &t->src, d, &c->dst, t->proto, c->port);
		return (r >= 0) == c->accept ? 0 : fail_case(x, s, d, r, "");
	}
	for (size_t k = 0; k < na; k++) {
		struct policy_ip ip;
		if (++x->probes > POLICY_TESTS_MAX_PROBES)
			return too_many(x);
		pol_u128_to_ip(a[k], &ip);
		bool acc =
		    policy_filter_match(f, proto_of(t->proto), &ip, c->port) == POLICY_ACCEPT;
		if (acc == c->accept)
			continue;
		char from[80] = "", ab[INET6_ADDRSTRLEN];
		if (s != NO_NODE && (na > 1 || t->src.kind != SEL_PREFIX)) {
			addr_text(a[k], ab, sizeof ab);
			snprintf(from, sizeof from, " from %s", ab);
		}
		int r = acc ? accepting_rule(cp, s, &t->src, d, &c->dst, t->proto, c->port)
		            : -1;
		return fail_case(x, s, d, r, from);
	}
	return 0;
}

static int check_case(struct tctx *x, size_t *ms, size_t ns, size_t *md)
{
	const struct policy_compiled *cp = x->cp;
	size_t nd = members(cp, cp->case_dst[x->ti][x->c - x->t->cases], md);
	for (size_t b = 0; b < nd; b++) {
		struct policy_filter *f = NULL;
		if (md[b] != NO_NODE && !(f = policy_node_filter(cp, md[b], x->err)))
			return -1;
		int rc = 0;
		for (size_t a = 0; a < ns && !rc; a++)
			if (ms[a] == NO_NODE || ms[a] != md[b]) /* not a node to itself */
				rc = check_pair(x, ms[a], md[b], f);
		policy_filter_free(f);
		if (rc)
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
	size_t *ms = calloc(2 * (cp->n + 1), sizeof *ms);
	if (!ms) {
		pol_set_err(err, 0, 0, "out of memory");
		return -1;
	}
	size_t *md = ms + cp->n + 1;
	struct tctx x = {.cp = cp, .err = err};
	for (uint32_t ti = 0; ti < cp->p->n_tests; ti++) {
		x.ti = ti;
		x.t = &cp->p->tests[ti];
		size_t ns = members(cp, cp->test_src[ti], ms);
		for (uint32_t k = 0; k < x.t->n_cases; k++) {
			x.c = &x.t->cases[k];
			if (check_case(&x, ms, ns, md)) {
				free(ms);
				return -1;
			}
			(*passed)++;
		}
	}
	free(ms);
	return 0;
}
