/* A node's visibility set: the nodes it may reach or that may reach it
 * under some rule, read from the rules' selector objects (compile.c). */
#include <stdlib.h>
#include <string.h>

#include "core/policy/compile_int.h"

static void bits_add(uint64_t *bits, size_t n, const struct pol_nset *s)
{
	if (s->all) {
		memset(bits, 0xff, (n + 63) / 64 * sizeof *bits);
	} else if (s->bits) {
		for (size_t w = 0; w < (n + 63) / 64; w++)
			bits[w] |= s->bits[w];
	} else {
		for (uint32_t k = 0; k < s->n; k++)
			bits[s->idx[k] / 64] |= 1ull << (s->idx[k] % 64);
	}
}

/* Each selector object is ORed in once, however many rules name it. */
int policy_node_visible(const struct policy_compiled *cp, size_t i, size_t **out,
                        size_t *n)
{
	*out = NULL;
	*n = 0;
	if (i >= cp->n)
		return 0;
	size_t words = (cp->n + 63) / 64 + 1;
	uint64_t *bits = calloc(words, sizeof *bits);
	uint64_t *mark = calloc(cp->n_sobj / 64 + 1, sizeof *mark);
	if (!bits || !mark) {
		free(bits);
		free(mark);
		return -1;
	}
	if (!cp->p) {
		struct pol_nset all = {.all = true};
		bits_add(bits, cp->n, &all);
	} else {
		for (uint32_t r = 0; r < cp->p->n_rules; r++) {
			const struct pol_crule *cr = &cp->rules[r];
			bool in_src = false, in_dst = false;
			for (uint32_t k = 0; k < cr->n_src && !in_src; k++)
				in_src = pol_nset_has(&cp->sobj[cr->src[k]].set, i);
			for (uint32_t k = 0; k < cr->n_dst && !in_dst; k++)
				in_dst = pol_nset_has(&cp->sobj[cr->dst[k].sobj].set, i);
			if (in_src)
				for (uint32_t k = 0; k < cr->n_dst; k++)
					mark[cr->dst[k].sobj / 64] |= 1ull << (cr->dst[k].sobj % 64);
			if (in_dst)
				for (uint32_t k = 0; k < cr->n_src; k++)
					mark[cr->src[k] / 64] |= 1ull << (cr->src[k] % 64);
		}
		for (size_t w = 0; w <= cp->n_sobj / 64; w++)
			for (uint64_t b = mark[w]; b; b &= b - 1)
				bits_add(bits, cp->n,
				         &cp->sobj[w * 64 + (size_t)__builtin_ctzll(b)].set);
	}
	free(mark);
	bits[i / 64] &= ~(1ull << (i % 64));
	if (cp->n % 64)
		bits[cp->n / 64] &= (1ull << (cp->n % 64)) - 1;
	size_t cnt = 0;
	for (size_t w = 0; w < (cp->n + 63) / 64; w++)
		cnt += (size_t)__builtin_popcountll(bits[w]);
	if (cnt && !(*out = malloc(cnt * sizeof **out))) {
		free(bits);
		return -1;
	}
	for (size_t w = 0; w < (cp->n + 63) / 64; w++)
		for (uint64_t b = bits[w]; b; b &= b - 1) {
			(*out)[(*n)++] = w * 64 + (size_t)__builtin_ctzll(b);
		}
	free(bits);
	return 0;
}
