/* The policy's tests section: each test's source identity, protocol and
 * accept/deny destinations with one port each (see ptest.c for what they
 * mean). */
#include <stdio.h>
#include <string.h>

#include "core/policy/parse_int.h"

/* A test's src or destination: one identity (a user, a tag, one address). */
static int test_ident(struct pctx *c, const char *s, uint32_t pos, struct pol_sel *o)
{
	char b[100];
	if (pol_p_sel_resolve(c, s, pos, o))
		return -1;
	if (o->kind == SEL_ANY || o->kind == SEL_GROUP ||
	    (o->kind == SEL_PREFIX && pol_u128_cmp(o->iv.lo, o->iv.hi)))
		return pol_p_perr(
		    c, pos, false,
		    "'%s' in %s: a test names one user, tag, host or address, not a "
		    "group, * or a range",
		    pol_show(s, b, sizeof b), c->path);
	return 0;
}

static int parse_cases(struct pctx *c, json_t *v, uint32_t vp, bool accept,
                       struct pol_test *t)
{
	char sel[128], b[100];
	const char *port;
	if (pol_p_want_strings(c, v, vp))
		return -1;
	for (size_t j = 0; j < json_array_size(v); j++) {
		uint32_t ep = pol_scan_child(c->sc, vp, j);
		const char *s = json_string_value(json_array_get(v, j));
		struct pol_case *k = &t->cases[t->n_cases];
		size_t old = pol_p_path_push(c, "[%s%zu]", NULL, j);
		if (pol_p_count_sel(c, ep) ||
		    pol_p_split_dst(c, s, ep, sel, sizeof sel, &port))
			return -1;
		uint16_t lo = 0;
		uint32_t n = 0;
		struct policy_ports pr[1];
		if (t->proto == POL_ICMP) {
			if (strcmp(port, "*"))
				return pol_p_perr(c, ep, false,
				                  "'%s' in %s: ICMP has no ports; write "
				                  "the destination "
				                  "with :*",
				                  pol_show(s, b, sizeof b), c->path);
		} else if (pol_parse_ports(port, pr, 1, &n) || n != 1 ||
		           pr[0].lo != pr[0].hi) {
			return pol_p_perr(
			    c, ep, false,
			    "'%s' in %s: a test checks one port: write HOST:PORT, e.g. "
			    "web:443",
			    pol_show(s, b, sizeof b), c->path);
		} else {
			lo = pr[0].lo;
		}
		if (test_ident(c, sel, ep, &k->dst))
			return -1;
		k->accept = accept;
		k->port = lo;
		pol_p_pos_linecol(c, ep, false, &k->line, &k->col);
		t->n_cases++;
		pol_p_path_pop(c, old);
	}
	return 0;
}

static int parse_test(struct pctx *c, json_t *t, uint32_t tp, struct pol_test *out)
{
	json_t *src = NULL, *acc = NULL, *den = NULL;
	uint32_t sp = tp, ap = tp, dp = tp;
	char b[100];
	if (!json_is_object(t))
		return pol_p_perr(c, tp, false,
		                  "%s must be an object {\"src\", \"accept\", \"deny\"}, "
		                  "not %s",
		                  c->path, pol_p_type_name(t));
	pol_p_pos_linecol(c, tp, false, &out->line, &out->col);
	out->proto = POL_TCP;
	size_t i = 0;
	for (void *it = json_object_iter(t); it; it = json_object_iter_next(t, it), i++) {
		const char *k = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);
		uint32_t kp = pol_scan_child(c->sc, tp, i);
		if (!strcmp(k, "src")) {
			src = v;
			sp = kp;
		} else if (!strcmp(k, "accept")) {
			acc = v;
			ap = kp;
		} else if (!strcmp(k, "deny")) {
			den = v;
			dp = kp;
		} else if (!strcmp(k, "proto")) {
			if (pol_p_parse_proto(c, v, kp, &out->proto))
				return -1;
		} else {
			return pol_p_perr(
			    c, kp, true,
			    "unknown field '%s' in %s: a test has src, accept, deny and "
			    "optionally proto",
			    pol_show(k, b, sizeof b), c->path);
		}
	}
	if (!src)
		return pol_p_perr(c, tp, false, "%s has no \"src\"", c->path);
	if (!acc && !den)
		return pol_p_perr(c, tp, false, "%s has neither \"accept\" nor \"deny\"",
		                  c->path);
	if (!json_is_string(src))
		return pol_p_perr(c, sp, false, "%s.src must be a string, not %s",
		                  c->path, pol_p_type_name(src));
	size_t old = pol_p_path_push(c, ".src", NULL, 0);
	if (pol_p_count_sel(c, sp) ||
	    test_ident(c, json_string_value(src), sp, &out->src))
		return -1;
	pol_p_path_pop(c, old);
	size_t n = (acc && json_is_array(acc) ? json_array_size(acc) : 0) +
	           (den && json_is_array(den) ? json_array_size(den) : 0);
	out->cases = pol_alloc(&c->p->arena, (n + 1) * sizeof *out->cases);
	if (!out->cases)
		return pol_p_perr(c, tp, false, "out of memory");
	old = pol_p_path_push(c, ".accept", NULL, 0);
	if (acc && parse_cases(c, acc, ap, true, out))
		return -1;
	pol_p_path_pop(c, old);
	old = pol_p_path_push(c, ".deny", NULL, 0);
	if (den && parse_cases(c, den, dp, false, out))
		return -1;
	pol_p_path_pop(c, old);
	return 0;
}

int pol_p_parse_tests(struct pctx *c, json_t *v, uint32_t pos)
{
	struct policy *p = c->p;
	if (!json_is_array(v))
		return pol_p_perr(c, pos, false, "\"tests\" must be a list, not %s",
		                  pol_p_type_name(v));
	if (json_array_size(v) > POLICY_MAX_TESTS)
		return pol_p_perr(c, pos, false,
		                  "\"tests\" holds %zu tests; the limit is %d",
		                  json_array_size(v), POLICY_MAX_TESTS);
	p->tests = pol_alloc(&p->arena, (json_array_size(v) + 1) * sizeof *p->tests);
	if (!p->tests)
		return pol_p_perr(c, pos, false, "out of memory");
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t old = pol_p_path_push(c, "tests[%s%zu]", NULL, i);
		if (parse_test(c, json_array_get(v, i), pol_scan_child(c->sc, pos, i),
		               &p->tests[i]))
			return -1;
		pol_p_path_pop(c, old);
		p->n_tests++;
	}
	return 0;
}
