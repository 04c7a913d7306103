/* Private to the PostgreSQL control store (store_pg*.c): the store object
 * and the query and transaction plumbing (store_pg.c) that the other files
 * use. Nothing outside these files includes it.
 *
 * Conventions, the same as store_sqlite*.c so each function reads like its
 * SQLite twin: every value goes through a parameter ($1, $2, ...), never
 * into the SQL text; every change of more than one statement runs between
 * ctl_pg_begin and ctl_pg_end; statements are prepared once per connection
 * (cached by the SQL text's address). Columns are the SQLite ones (same
 * names, 0/1 INTEGER flags, BIGINT numbers, BYTEA for blobs); "user" is a
 * reserved word in PostgreSQL and is always quoted. */
#ifndef MESH_CTL_STORE_PG_INT_H
#define MESH_CTL_STORE_PG_INT_H

#include "servers/control/store.h"
#include "servers/control/store_pg_conn.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_CACHE 128
#define PG_MAXP  16

struct pg_store {
	struct ctl_store base; /* first: ctl_store * <-> pg_store * */
	PGconn *db;
	PGconn *watch;         /* LISTEN connection (ctl_store_watch_fd); NULL: none */
	int watch_delay_s;     /* after a failed watch connect: 1, 2, 4 ... 30 */
	int64_t watch_next_ms; /* CLOCK_MONOTONIC: no watch connect before */
	int reset_delay_s;     /* after a failed reconnect: 1, 2, 4, 5 s; 0: none */
	int64_t reset_next_ms; /* CLOCK_MONOTONIC: no reconnect before */
	char *url;
	int64_t server_id;  /* ctl_store_set_server; 0: none */
	int64_t last_beat;  /* database clock of this handle's last beat; 0: none */
	int64_t sweep_after; /* after a stale beat: no sweep before this (its clock) */
	bool warned_future; /* another server's beat ahead of the clock: said */
	ctl_store_fault_fn fault;
	void *fault_arg;
	bool in_tx;
	bool limits_set; /* pg_session_limits ran on this connection */
	struct {
		const char *sql;
		char name[8];
	} cache[PG_CACHE];
};

static inline struct pg_store *PG(struct ctl_store *st)
{
	return (struct pg_store *)st;
}

/* Parameters of one statement: text (numbers as decimal) or binary (bytea). */
struct pg_params {
	int n;
	const char *v[PG_MAXP];
	int len[PG_MAXP];
	int fmt[PG_MAXP];
	char num[PG_MAXP][24];
};

void ctl_pg_p_int(struct pg_params *p, int64_t v);
void ctl_pg_p_text(struct pg_params *p, const char *s); /* NULL: SQL NULL */
void ctl_pg_p_blob(struct pg_params *p, const uint8_t *b, size_t n);

/* Sets the store's message from fmt; returns code. */
int ctl_pg_fail(struct pg_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Runs a prepared statement (p may be NULL) and returns its rows (text
 * format; PQclear it), or NULL with *rc set: EEXISTS for a unique
 * violation (ECONFLICT when the constraint is on node_key), EIO for
 * anything else, the message "what: <server's message>". A lost
 * connection is reset before the next statement outside a transaction. */
PGresult *ctl_pg_query(struct pg_store *s, const char *what, const char *sql,
                       const struct pg_params *p, int *rc);
/* The same for statements without rows: 0 or a negative code; *rows (may
 * be NULL) how many rows it changed. */
int ctl_pg_cmd(struct pg_store *s, const char *what, const char *sql,
               const struct pg_params *p, int64_t *rows);
int ctl_pg_exec(struct pg_store *s, const char *sql); /* no parameters */

int64_t ctl_pg_int(const PGresult *r, int row, int col);
void ctl_pg_text(char *dst, size_t cap, const PGresult *r, int row, int col);
/* A bytea column (hex output) of exactly len bytes; zeros otherwise. */
void ctl_pg_blob(uint8_t *dst, size_t len, const PGresult *r, int row, int col);

/* BEGIN, then lock the meta row (writers serialise: one writer at a time,
 * as in SQLite). ENOTFOUND "store not initialised (run init)" if it has
 * no meta row, except for init itself (ctl_pg_begin_init). */
int ctl_pg_begin(struct pg_store *s);
/* COMMIT if rc == 0 (a failed COMMIT returns EIO), else ROLLBACK keeping
 * rc and its message. */
int ctl_pg_end(struct pg_store *s, int rc);
/* EIO if the test hook asks for a failure at point, else 0. */
int ctl_pg_fault(struct pg_store *s, const char *point);
/* Inside a transaction: bumps the map version (the new value in *v) and
 * notifies CTL_STORE_CHANNEL with it (delivered at commit). */
int ctl_pg_bump(struct pg_store *s, int64_t *v);
bool ctl_pg_len_ok(const char *t, size_t max);
int ctl_pg_get_meta(struct ctl_store *st, struct ctl_meta *m);

/* ---- auth keys (store_pg_keys.c) ---------------------------------- */

int ctl_pg_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                      char *secret, size_t secretlen, struct ctl_authkey *out);
int ctl_pg_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n);
int ctl_pg_key_revoke(struct ctl_store *st, int64_t id);
/* Inside a transaction: check the secret and count a use. */
int ctl_pg_key_use_tx(struct pg_store *s, const char *secret, int64_t now,
                      struct ctl_authkey *k);
int ctl_pg_key_use(struct ctl_store *st, const char *secret, int64_t now,
                   struct ctl_authkey *out);

/* ---- relays (store_pg_relays.c) ----------------------------------- */

int ctl_pg_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                            size_t secretlen, int64_t *id);
int ctl_pg_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                          struct ctl_relay_rec *out);
int ctl_pg_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n);
int ctl_pg_relay_remove(struct ctl_store *st, const char *name);

/* ---- API keys (store_pg_apikeys.c) -------------------------------- */

int ctl_pg_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                         char *secret, size_t secretlen, struct ctl_apikey *out);
int ctl_pg_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n);
int ctl_pg_apikey_revoke(struct ctl_store *st, int64_t id);
int ctl_pg_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                        struct ctl_apikey *out);

/* ---- nodes (store_pg_nodes.c) ------------------------------------- */

int ctl_pg_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                         struct ctl_node *out, bool *created);
int ctl_pg_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                    struct ctl_node *out);
int ctl_pg_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                     size_t *n);
int ctl_pg_node_approve(struct ctl_store *st, int64_t id);
int ctl_pg_node_rename(struct ctl_store *st, int64_t id, const char *name);
int ctl_pg_node_remove(struct ctl_store *st, int64_t id);
int ctl_pg_node_reap(struct ctl_store *st, int64_t id, int64_t cutoff);
int ctl_pg_node_logout(struct ctl_store *st, int64_t id);
int ctl_pg_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n);
int ctl_pg_node_pending_count(struct ctl_store *st, int64_t *n);
int ctl_pg_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved);
int ctl_pg_node_expire(struct ctl_store *st, int64_t id, int64_t now);
int ctl_pg_node_update(struct ctl_store *st, int64_t id, const struct ctl_node_update *u);

/* ---- users and the policy (store_pg_users.c) --------------------- */

int ctl_pg_user_create(struct ctl_store *st, const char *name, int64_t now,
                       struct ctl_user *out);
int ctl_pg_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n);
int ctl_pg_user_remove(struct ctl_store *st, const char *name);
/* Inside a transaction: EINVAL for a name that is not a user name,
 * ENOTFOUND (with what to do) when no such user exists. */
int ctl_pg_user_exists_tx(struct pg_store *s, const char *name);
int ctl_pg_policy_get(struct ctl_store *st, struct ctl_policy_rec *out);
int ctl_pg_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                      int64_t *revision);
int ctl_pg_policy_clear(struct ctl_store *st);
int ctl_pg_node_owners(struct ctl_store *st, int64_t now,
                       int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg);

/* ---- volatile fields in batches (store_pg_volatile.c) ------------- */

int ctl_pg_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v, size_t n,
                            size_t *changed);
int ctl_pg_node_offline_all(struct ctl_store *st, int64_t now, size_t *n);

/* ---- several servers (store_pg_volatile.c) --------------------------- */

void ctl_pg_set_server(struct ctl_store *st, int64_t server_id);
int ctl_pg_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                       size_t *swept);
int ctl_pg_server_leave(struct ctl_store *st, int64_t now, size_t *n);

#endif
