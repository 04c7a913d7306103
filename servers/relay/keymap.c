/* Key -> pointer map: see keymap.h. */
#include "servers/relay/keymap.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void rly_keymap_init(struct rly_keymap *m)
{
	memset(m, 0, sizeof *m);
	randombytes_buf(m->seed, sizeof m->seed);
}

void rly_keymap_free(struct rly_keymap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

static size_t slot_of(const struct rly_keymap *m, const uint8_t *key)
{
	uint8_t h[8];
	crypto_shorthash(h, key, 32, (const uint8_t *)m->seed);
	uint64_t v;
	memcpy(&v, h, 8);
	return (size_t)v & (m->cap - 1);
}

static int grow(struct rly_keymap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct rly_keymap_slot *old = m->slots, *ns = calloc(ncap, sizeof *ns);
	if (!ns)
		return -ENOMEM;
	size_t ocap = m->cap;
	m->slots = ns;
	m->cap = ncap;
	m->n = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].val)
			rly_keymap_put(m, old[i].key, old[i].val);
	free(old);
	return 0;
}

int rly_keymap_put(struct rly_keymap *m, const uint8_t *key, void *val)
{
	if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
		return -ENOMEM;
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		struct rly_keymap_slot *s = &m->slots[i];
		if (!s->val) {
			memcpy(s->key, key, 32);
			s->val = val;
			m->n++;
			return 0;
		}
		if (memcmp(s->key, key, 32) == 0) {
			s->val = val;
			return 0;
		}
	}
}

void *rly_keymap_get(const struct rly_keymap *m, const uint8_t *key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		const struct rly_keymap_slot *s = &m->slots[i];
		if (!s->val)
			return NULL;
		if (memcmp(s->key, key, 32) == 0)
			return s->val;
	}
}

size_t rly_keymap_del_val(struct rly_keymap *m, const void *val)
{
	size_t before = m->n;
	struct rly_keymap_slot *old = m->slots,
	                       *ns = m->cap ? calloc(m->cap, sizeof *ns) : NULL;
	if (!ns) {
		for (size_t i = 0; i < m->cap; i++)
			while (m->slots[i].val == val) {
				uint8_t k[32];
				memcpy(k, m->slots[i].key, 32);
				rly_keymap_del(m, k, m->slots[i].val);
			}
		return before - m->n;
	}
	m->slots = ns;
	m->n = 0;
	for (size_t i = 0; i < m->cap; i++)
		if (old[i].val && old[i].val != val)
			rly_keymap_put(m, old[i].key, old[i].val); /* cannot grow */
	free(old);
	return before - m->n;
}

void rly_keymap_del(struct rly_keymap *m, const uint8_t *key, void *val)
{
	if (!m->cap)
		return;
	size_t i = slot_of(m, key);
	for (;; i = (i + 1) & (m->cap - 1)) {
		struct rly_keymap_slot *s = &m->slots[i];
		if (!s->val)
			return;
		if (memcmp(s->key, key, 32) == 0) {
			if (val && s->val != val)
				return;
			break;
		}
	}
	/* Backward-shift deletion keeps probe chains intact. */
	m->slots[i].val = NULL;
	m->n--;
	for (size_t j = (i + 1) & (m->cap - 1); m->slots[j].val;
	     j = (j + 1) & (m->cap - 1)) {
		struct rly_keymap_slot tmp = m->slots[j];
		m->slots[j].val = NULL;
		m->n--;
		rly_keymap_put(m, tmp.key, tmp.val);
	}
}
