/* The compiler: each rule's selectors resolved against the node list once
 * (which nodes each src and dst entry matches, and the rule's source
 * addresses as merged intervals), from which a node's visibility set is
 * read here and its filter is built in filter.c. */
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

bool pol_nset_has(const struct pol_nset *s, size_t i)
{
	if (s->all)
		return true;
	uint32_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->idx[mid] == i)
			return true;
		if (s->idx[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static bool group_has(const struct pol_group *g, const char *user)
{
	for (uint32_t i = 0; i < g->n; i++)
		if (!strcmp(g->members[i], user))
			return true;
	return false;
}

bool pol_node_matches(const struct policy_compiled *cp, const struct pol_sel *sel,
                      size_t i)
{
	const struct pol_cnode *n = &cp->nodes[i];
	switch (sel->kind) {
	case SEL_ANY:
		return true;
	case SEL_USER:
		return !n->n_tags && n->user && !strcmp(n->user, sel->name);
	case SEL_GROUP:
		return !n->n_tags && n->user &&
		       group_has(&cp->p->groups[sel->group], n->user);
	case SEL_TAG:
		for (size_t t = 0; t < n->n_tags; t++)
			if (!strcmp(n->tags[t], sel->name))
				return true;
		return false;
	default:
		return (n->has4 && pol_iv_contains(&sel->iv, n->a4)) ||
		       (n->has6 && pol_iv_contains(&sel->iv, n->a6));
	}
}

/* The nodes any of sels[0..ns) matches; scratch holds cp->n entries. */
static int nset_build(struct policy_compiled *cp, const struct pol_sel *sels, size_t ns,
                      uint32_t *scratch, struct pol_nset *out)
{
	memset(out, 0, sizeof *out);
	for (size_t k = 0; k < ns; k++)
		if (sels[k].kind == SEL_ANY) {
			out->all = true;
			return 0;
		}
	for (size_t i = 0; i < cp->n; i++) {
		bool m = false;
		for (size_t k = 0; k < ns && !m; k++)
			m = pol_node_matches(cp, &sels[k], i);
		if (m)
			scratch[out->n++] = (uint32_t)i;
	}
	if (!out->n)
		return 0;
	if (!(out->idx = pol_alloc(&cp->arena, out->n * sizeof *out->idx)))
		return -1;
	memcpy(out->idx, scratch, out->n * sizeof *out->idx);
	return 0;
}

/* The rule's source addresses: prefixes as written, and the addresses of
 * the nodes its users, groups and tags match. */
static int src_addresses(struct policy_compiled *cp, const struct pol_rule *r,
                         struct pol_crule *cr)
{
	size_t cap = r->n_src, n = 0;
	for (size_t k = 0; k < r->n_src; k++)
		if (r->src[k].kind != SEL_ANY && r->src[k].kind != SEL_PREFIX)
			cap += 2 * cp->n;
	struct pol_iv *iv = malloc((cap + 1) * sizeof *iv);
	if (!iv)
		return -1;
	for (size_t k = 0; k < r->n_src; k++) {
		const struct pol_sel *s = &r->src[k];
		if (s->kind == SEL_ANY) {
			iv[n++] = (struct pol_iv){{0, 0}, {UINT64_MAX, UINT64_MAX}};
		} else if (s->kind == SEL_PREFIX) {
			iv[n++] = s->iv;
		} else {
			for (size_t i = 0; i < cp->n; i++) {
				const struct pol_cnode *nd = &cp->nodes[i];
				if (!pol_node_matches(cp, s, i))
					continue;
				if (nd->has4)
					iv[n++] = (struct pol_iv){nd->a4, nd->a4};
				if (nd->has6)
					iv[n++] = (struct pol_iv){nd->a6, nd->a6};
			}
		}
	}
	pol_iv_normalize(iv, &n);
	cr->src_iv = pol_alloc(&cp->arena, (n + 1) * sizeof *iv);
	if (cr->src_iv)
		memcpy(cr->src_iv, iv, n * sizeof *iv);
	cr->n_src_iv = n;
	free(iv);
	return cr->src_iv ? 0 : -1;
}

static int copy_nodes(struct policy_compiled *cp, const struct policy_node *nodes,
                      size_t n)
{
	struct pol_arena *a = &cp->arena;
	cp->nodes = pol_alloc(a, (n + 1) * sizeof *cp->nodes);
	if (!cp->nodes)
		return -1;
	cp->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct policy_node *s = &nodes[i];
		struct pol_cnode *d = &cp->nodes[i];
		struct policy_ip ip;
		d->id = s->id;
		d->name = s->name ? pol_strndup(a, s->name, strlen(s->name)) : "";
		if (s->user && *s->user &&
		    !(d->user = pol_strndup(a, s->user, strlen(s->user))))
			return -1;
		if (!d->name ||
		    !(d->tags = pol_alloc(a, (s->n_tags + 1) * sizeof(char *))))
			return -1;
		for (size_t t = 0; t < s->n_tags; t++)
			if (!(d->tags[t] =
			          pol_strndup(a, s->tags[t], strlen(s->tags[t]))))
				return -1;
		d->n_tags = s->n_tags;
		if ((d->has4 = s->v4 != 0)) {
			policy_ip_v4(&ip, s->v4);
			d->a4 = pol_u128_from_ip(&ip);
		}
		if ((d->has6 = s->has_v6)) {
			policy_ip_v6(&ip, s->v6);
			d->a6 = pol_u128_from_ip(&ip);
		}
	}
	return 0;
}

/* A host alias spelled like a user with nodes: a plain "alice" in the
 * rules means the alias, which is not what whoever wrote it meant. */
static int check_aliases(const struct policy_compiled *cp, struct policy_error *err)
{
	const struct policy *p = cp->p;
	for (size_t i = 0; i < cp->n; i++) {
		int h = cp->nodes[i].user
		            ? pol_names_find(&p->hosts_ix, cp->nodes[i].user)
		            : -1;
		if (h < 0)
			continue;
		char b[100], b2[100];
		pol_set_err(err, 0, 0,
		            "host alias '%s' is also the name of a user (of node %s): "
		            "in the rules a plain '%s' means the alias; rename the "
		            "alias and write the user as '%s@'",
		            pol_show(p->hosts[h].name, b, sizeof b),
		            pol_show(cp->nodes[i].name, b2, sizeof b2), b, b);
		return -1;
	}
	return 0;
}

struct policy_compiled *policy_compile(const struct policy *p,
                                       const struct policy_node *nodes, size_t n,
                                       struct policy_error *err)
{
	memset(err, 0, sizeof *err);
	uint32_t *scratch = NULL;
	struct policy_compiled *cp = calloc(1, sizeof *cp);
	if (!cp || copy_nodes(cp, nodes, n))
		goto nomem;
	cp->p = p;
	if (!p)
		return cp;
	if (check_aliases(cp, err)) {
		policy_compiled_free(cp);
		return NULL;
	}
	cp->rules = pol_alloc(&cp->arena, (p->n_rules + 1) * sizeof *cp->rules);
	scratch = malloc((n + 1) * sizeof *scratch);
	if (!cp->rules || !scratch)
		goto nomem;
	for (uint32_t r = 0; r < p->n_rules; r++) {
		const struct pol_rule *rule = &p->rules[r];
		struct pol_crule *cr = &cp->rules[r];
		if (nset_build(cp, rule->src, rule->n_src, scratch, &cr->src_nodes) ||
		    src_addresses(cp, rule, cr))
			goto nomem;
		cr->dst_nodes =
		    pol_alloc(&cp->arena, (rule->n_dst + 1) * sizeof *cr->dst_nodes);
		if (!cr->dst_nodes)
			goto nomem;
		for (uint32_t d = 0; d < rule->n_dst; d++)
			if (nset_build(cp, &rule->dst[d].sel, 1, scratch,
			               &cr->dst_nodes[d]))
				goto nomem;
	}
	free(scratch);
	return cp;
nomem:
	free(scratch);
	policy_compiled_free(cp);
	pol_set_err(err, 0, 0, "out of memory");
	return NULL;
}

void policy_compiled_free(struct policy_compiled *cp)
{
	if (!cp)
		return;
	pol_arena_free(&cp->arena);
	free(cp);
}

/* --- visibility ------------------------------------------------------- */

static void bits_add(uint64_t *bits, size_t n, const struct pol_nset *s)
{
	if (s->all) {
		memset(bits, 0xff, (n + 63) / 64 * sizeof *bits);
		return;
	}
	for (uint32_t k = 0; k < s->n; k++)
		bits[s->idx[k] / 64] |= 1ull << (s->idx[k] % 64);
}

int policy_node_visible(const struct policy_compiled *cp, size_t i, size_t **out,
                        size_t *n)
{
	*out = NULL;
	*n = 0;
	if (i >= cp->n)
		return 0;
	uint64_t *bits = calloc((cp->n + 63) / 64 + 1, sizeof *bits);
	if (!bits)
		return -1;
	if (!cp->p) {
		struct pol_nset all = {.all = true};
		bits_add(bits, cp->n, &all);
	} else {
		for (uint32_t r = 0; r < cp->p->n_rules; r++) {
			const struct pol_crule *cr = &cp->rules[r];
			bool in_src = pol_nset_has(&cr->src_nodes, i), in_dst = false;
			for (uint32_t d = 0; d < cp->p->rules[r].n_dst; d++) {
				if (pol_nset_has(&cr->dst_nodes[d], i))
					in_dst = true;
				if (in_src)
					bits_add(bits, cp->n, &cr->dst_nodes[d]);
			}
			if (in_dst)
				bits_add(bits, cp->n, &cr->src_nodes);
		}
	}
	bits[i / 64] &= ~(1ull << (i % 64));
	size_t cnt = 0;
	for (size_t k = 0; k < cp->n; k++)
		cnt += (bits[k / 64] >> (k % 64)) & 1;
	if (cnt && !(*out = malloc(cnt * sizeof **out))) {
		free(bits);
		return -1;
	}
	for (size_t k = 0; k < cp->n; k++)
		if ((bits[k / 64] >> (k % 64)) & 1)
			(*out)[(*n)++] = k;
	free(bits);
	return 0;
}
