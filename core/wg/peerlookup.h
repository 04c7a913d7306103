/* The two lookups a WireGuard device needs: session index -> handshake or
 * keypair (every message after the initiation names one of our indices), and
 * public key -> peer (an initiation names its sender by static key). Both are
 * intrusive hash tables: the entries live inside their owners. */
#ifndef MESH_WG_PEERLOOKUP_H
#define MESH_WG_PEERLOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wg_peer;

enum wg_index_kind {
	WG_INDEX_HANDSHAKE = 1,
	WG_INDEX_KEYPAIR = 2,
};

struct wg_index_entry {
	uint32_t index;
	enum wg_index_kind kind;
	struct wg_peer *peer;
	struct wg_index_entry *next;
	bool in_table;
};

struct wg_pubkey_entry {
	uint8_t key[32];
	struct wg_peer *peer;
	struct wg_pubkey_entry *next;
};

struct wg_index_table;
struct wg_pubkey_table;

struct wg_index_table *wg_index_table_new(void);
void wg_index_table_free(
    struct wg_index_table *t); /* accepts NULL; entries stay with owners */
/* Gives e a fresh random index no other entry has (removing e first if it
 * is in the table). Returns the index, or 0 with e out of the table on
 * allocation failure (0 is never handed out). */
uint32_t wg_index_table_insert(struct wg_index_table *t, struct wg_index_entry *e);
/* Puts new in place of old, under old's index. */
void wg_index_table_replace(struct wg_index_table *t, struct wg_index_entry *old,
                            struct wg_index_entry *new_entry);
void wg_index_table_remove(struct wg_index_table *t, struct wg_index_entry *e);
struct wg_index_entry *wg_index_table_lookup(const struct wg_index_table *t,
                                             uint32_t index);
size_t wg_index_table_count(const struct wg_index_table *t);

struct wg_pubkey_table *wg_pubkey_table_new(void);
void wg_pubkey_table_free(struct wg_pubkey_table *t); /* accepts NULL */
/* Returns 0, -EEXIST or -ENOMEM. */
int wg_pubkey_table_insert(struct wg_pubkey_table *t, struct wg_pubkey_entry *e);
struct wg_peer *wg_pubkey_table_lookup(const struct wg_pubkey_table *t,
                                       const uint8_t key[32]);
/* Takes e out of the table if it is there (by identity, not by key). */
void wg_pubkey_table_remove(struct wg_pubkey_table *t, struct wg_pubkey_entry *e);
size_t wg_pubkey_table_count(const struct wg_pubkey_table *t);

#endif
