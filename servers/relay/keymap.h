/* A map from 32-byte public keys to pointers (open addressing, linear
 * probing, grows at 1/2 load). The relay keeps three: admitted node keys,
 * connected clients, and which sibling relay has which client. Keys are
 * public, so a fast non-cryptographic hash seeded at random per map is
 * enough: a client cannot choose keys to collide (it must hold the private
 * key of each, and the seed is secret). */
#ifndef MESH_RELAY_KEYMAP_H
#define MESH_RELAY_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rly_keymap_slot {
	uint8_t key[32];
	void *val; /* NULL: empty */
};

struct rly_keymap {
	struct rly_keymap_slot *slots;
	size_t cap, n; /* cap: a power of two or 0 */
	uint64_t seed[2];
};

void rly_keymap_init(struct rly_keymap *m);
void rly_keymap_free(struct rly_keymap *m);
/* val must not be NULL. Replaces an existing entry. 0 or -ENOMEM. */
int rly_keymap_put(struct rly_keymap *m, const uint8_t *key, void *val);
void *rly_keymap_get(const struct rly_keymap *m, const uint8_t *key);
/* Removes key if present (and only if it maps to val, when val != NULL). */
void rly_keymap_del(struct rly_keymap *m, const uint8_t *key, void *val);
/* Removes every entry that maps to val, in one pass over the table (a
 * rebuild; with no memory for it, entry by entry). Returns how many. */
size_t rly_keymap_del_val(struct rly_keymap *m, const void *val);

#endif
