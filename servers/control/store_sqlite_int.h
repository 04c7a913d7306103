/* Private to the SQLite control store (store_sqlite*.c): the store object,
 * the statement and transaction plumbing, and the backend functions that the
 * ops table in store_sqlite.c collects from store_sqlite_keys.c,
 * store_sqlite_apikeys.c, store_sqlite_nodes.c and store_sqlite_users.c.
 * Nothing outside these files includes it. */
#ifndef MESH_CTL_STORE_SQLITE_INT_H
#define MESH_CTL_STORE_SQLITE_INT_H

#include "servers/control/store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQ_CACHE 96

struct sq_store {
	struct ctl_store base; /* first: ctl_store * <-> sq_store * */
	sqlite3 *db;
	int64_t server_id;  /* ctl_store_set_server; 0: none (one server) */
	int64_t last_beat;  /* now of this handle's last successful beat; 0: none */
	int64_t sweep_after; /* after a stale beat: no sweep before this (its clock) */
	bool warned_future; /* another server's beat ahead of now: said */
	ctl_store_fault_fn fault;
	void *fault_arg;
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} cache[SQ_CACHE];
};

static inline struct sq_store *SQ(struct ctl_store *st)
{
	return (struct sq_store *)st;
}

/* ---- plumbing (store_sqlite.c) ---------------------------------------- */

/* Sets the store's message from fmt; returns code. */
int ctl_sq_fail(struct sq_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* EIO with "what: <sqlite's message>". */
int ctl_sq_dberr(struct sq_store *s, const char *what);
/* A cached prepared statement, keyed by the SQL text's address; NULL with
 * the message set on failure. */
sqlite3_stmt *ctl_sq_prep(struct sq_store *s, const char *sql);
/* Resets a statement and clears its bindings for the next use. */
void ctl_sq_done(sqlite3_stmt *st);
int ctl_sq_exec(struct sq_store *s, const char *sql);
/* BEGIN IMMEDIATE. */
int ctl_sq_begin(struct sq_store *s);
/* Ends a transaction: COMMIT if rc == 0 (a failed COMMIT rolls back and
 * returns EIO), else ROLLBACK keeping rc and its message. */
int ctl_sq_end(struct sq_store *s, int rc);
/* EIO if the test hook asks for a failure at point, else 0. */
int ctl_sq_fault(struct sq_store *s, const char *point);
/* Runs a statement expecting no rows (or ignoring them); UNIQUE violations
 * become EEXISTS (ECONFLICT for node_key). Resets the statement. */
int ctl_sq_step_done(struct sq_store *s, sqlite3_stmt *st, const char *what);
void ctl_sq_text(char *dst, size_t cap, sqlite3_stmt *st, int col);
void ctl_sq_blob(uint8_t *dst, size_t len, sqlite3_stmt *st, int col);
/* True if t is NULL or at most max characters. */
bool ctl_sq_len_ok(const char *t, size_t max);
/* Bumps the map version; the new value in *v. */
int ctl_sq_bump(struct sq_store *s, int64_t *v);
int ctl_sq_get_meta(struct ctl_store *st, struct ctl_meta *m);

/* ---- auth keys (store_sqlite_keys.c) ---------------------------------- */

int ctl_sq_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                      char *secret, size_t secretlen, struct ctl_authkey *out);
int ctl_sq_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n);
int ctl_sq_key_revoke(struct ctl_store *st, int64_t id);
/* Inside a transaction: check the secret and count a use. */
int ctl_sq_key_use_tx(struct sq_store *s, const char *secret, int64_t now,
                      struct ctl_authkey *k);
int ctl_sq_key_use(struct ctl_store *st, const char *secret, int64_t now,
                   struct ctl_authkey *out);

/* ---- relays (store_sqlite_relays.c) ----------------------------------- */

int ctl_sq_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                            size_t secretlen, int64_t *id);
int ctl_sq_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                          struct ctl_relay_rec *out);
int ctl_sq_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n);
int ctl_sq_relay_remove(struct ctl_store *st, const char *name);

/* ---- API keys (store_sqlite_apikeys.c) -------------------------------- */

int ctl_sq_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                         char *secret, size_t secretlen, struct ctl_apikey *out);
int ctl_sq_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n);
int ctl_sq_apikey_revoke(struct ctl_store *st, int64_t id);
int ctl_sq_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                        struct ctl_apikey *out);

/* ---- nodes (store_sqlite_nodes.c) ------------------------------------- */

int ctl_sq_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                         struct ctl_node *out, bool *created);
int ctl_sq_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                    struct ctl_node *out);
int ctl_sq_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                     size_t *n);
int ctl_sq_node_approve(struct ctl_store *st, int64_t id);
int ctl_sq_node_rename(struct ctl_store *st, int64_t id, const char *name);
int ctl_sq_node_remove(struct ctl_store *st, int64_t id);
int ctl_sq_node_reap(struct ctl_store *st, int64_t id, int64_t cutoff);
int ctl_sq_node_logout(struct ctl_store *st, int64_t id);
int ctl_sq_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n);
int ctl_sq_node_pending_count(struct ctl_store *st, int64_t *n);
int ctl_sq_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved);
int ctl_sq_node_expire(struct ctl_store *st, int64_t id, int64_t now);
int ctl_sq_node_update(struct ctl_store *st, int64_t id, const struct ctl_node_update *u);

/* ---- users and the policy (store_sqlite_users.c) --------------------- */

int ctl_sq_user_create(struct ctl_store *st, const char *name, int64_t now,
                       struct ctl_user *out);
int ctl_sq_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n);
int ctl_sq_user_remove(struct ctl_store *st, const char *name);
/* Inside a transaction: EINVAL for a name that is not a user name,
 * ENOTFOUND (with what to do) when no such user exists. */
int ctl_sq_user_exists_tx(struct sq_store *s, const char *name);
int ctl_sq_policy_get(struct ctl_store *st, struct ctl_policy_rec *out);
int ctl_sq_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                      int64_t *revision);
int ctl_sq_policy_clear(struct ctl_store *st);
int ctl_sq_node_owners(struct ctl_store *st, int64_t now,
                       int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg);

/* ---- volatile fields in batches (store_sqlite_volatile.c) ------------- */

int ctl_sq_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v, size_t n,
                            size_t *changed);
int ctl_sq_node_offline_all(struct ctl_store *st, int64_t now, size_t *n);

/* ---- several servers on one store (store_sqlite_volatile.c) ---------- */

void ctl_sq_set_server(struct ctl_store *st, int64_t server_id);
int ctl_sq_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                       size_t *swept);
int ctl_sq_server_leave(struct ctl_store *st, int64_t now, size_t *n);

#endif
