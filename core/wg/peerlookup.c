/* Chained hash tables that grow by doubling. Indices are random, so they
 * hash to themselves; public keys go through SipHash with a per-table key so
 * that chain lengths do not depend on the keys' values. */
#include "core/wg/peerlookup.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 64

struct wg_index_table {
	struct wg_index_entry **buckets;
	size_t mask;
	size_t count;
};

struct wg_pubkey_table {
	struct wg_pubkey_entry **buckets;
	size_t mask;
	size_t count;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

struct wg_index_table *wg_index_table_new(void)
{
	struct wg_index_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	t->mask = INITIAL_BUCKETS - 1;
	return t;
}

void wg_index_table_free(struct wg_index_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i <= t->mask; i++)
		for (struct wg_index_entry *e = t->buckets[i]; e; e = e->next)
			e->in_table = false;
	free(t->buckets);
	free(t);
}

static void index_grow(struct wg_index_table *t)
{
	size_t n = (t->mask + 1) * 2;
	struct wg_index_entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return; /* keep the longer chains */
	for (size_t i = 0; i <= t->mask; i++) {
		struct wg_index_entry *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = nb[e->index & (n - 1)];
			nb[e->index & (n - 1)] = e;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->mask = n - 1;
}

struct wg_index_entry *wg_index_table_lookup(const struct wg_index_table *t,
                                             uint32_t index)
{
	struct wg_index_entry *e = t->buckets[index & t->mask];

	for (; e; e = e->next)
		if (e->index == index)
			return e;
	return NULL;
}

void wg_index_table_remove(struct wg_index_table *t, struct wg_index_entry *e)
{
	struct wg_index_entry **pp;

	if (!e->in_table)
		return;
	for (pp = &t->buckets[e->index & t->mask]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			t->count--;
			break;
		}
	}
	e->next = NULL;
	e->in_table = false;
}

uint32_t wg_index_table_insert(struct wg_index_table *t, struct wg_index_entry *e)
{
	uint32_t idx;

	wg_index_table_remove(t, e);
	if (t->count >= t->mask + 1)
		index_grow(t);
	do {
		idx = randombytes_random();
	} while (idx == 0 || wg_index_table_lookup(t, idx));
	e->index = idx;
	e->next = t->buckets[idx & t->mask];
	t->buckets[idx & t->mask] = e;
	e->in_table = true;
	t->count++;
	return idx;
}

void wg_index_table_replace(struct wg_index_table *t, struct wg_index_entry *old,
                            struct wg_index_entry *new_entry)
{
	struct wg_index_entry **pp;

	wg_index_table_remove(t, new_entry);
	if (!old->in_table)
		return;
	for (pp = &t->buckets[old->index & t->mask]; *pp; pp = &(*pp)->next) {
		if (*pp == old) {
			new_entry->index = old->index;
			new_entry->next = old->next;
			new_entry->in_table = true;
			*pp = new_entry;
			old->next = NULL;
			old->in_table = false;
			return;
		}
	}
}

size_t wg_index_table_count(const struct wg_index_table *t)
{
	return t->count;
}

struct wg_pubkey_table *wg_pubkey_table_new(void)
{
	struct wg_pubkey_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	t->mask = INITIAL_BUCKETS - 1;
	crypto_shorthash_keygen(t->hash_key);
	return t;
}

void wg_pubkey_table_free(struct wg_pubkey_table *t)
{
	if (!t)
		return;
	free(t->buckets);
	sodium_memzero(t->hash_key, sizeof(t->hash_key));
	free(t);
}

static size_t pubkey_hash(const struct wg_pubkey_table *t, const uint8_t key[32])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, key, 32, t->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)v;
}

static void pubkey_grow(struct wg_pubkey_table *t)
{
	size_t n = (t->mask + 1) * 2;
	struct wg_pubkey_entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		struct wg_pubkey_entry *e = t->buckets[i], *next;
		for (; e; e = next) {
			size_t b = pubkey_hash(t, e->key) & (n - 1);
			next = e->next;
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->mask = n - 1;
}

struct wg_peer *wg_pubkey_table_lookup(const struct wg_pubkey_table *t,
                                       const uint8_t key[32])
{
	struct wg_pubkey_entry *e = t->buckets[pubkey_hash(t, key) & t->mask];

	for (; e; e = e->next)
		if (sodium_memcmp(e->key, key, 32) == 0)
			return e->peer;
	return NULL;
}

int wg_pubkey_table_insert(struct wg_pubkey_table *t, struct wg_pubkey_entry *e)
{
	size_t b;

	if (wg_pubkey_table_lookup(t, e->key))
		return -EEXIST;
	if (t->count >= t->mask + 1)
		pubkey_grow(t);
	b = pubkey_hash(t, e->key) & t->mask;
	e->next = t->buckets[b];
	t->buckets[b] = e;
	t->count++;
	return 0;
}

void wg_pubkey_table_remove(struct wg_pubkey_table *t, struct wg_pubkey_entry *e)
{
	struct wg_pubkey_entry **pp;

	for (pp = &t->buckets[pubkey_hash(t, e->key) & t->mask]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			e->next = NULL;
			t->count--;
			return;
		}
	}
}

size_t wg_pubkey_table_count(const struct wg_pubkey_table *t)
{
	return t->count;
}
