/* The PostgreSQL control store: nodes (lookups, lists, the changes that
 * bump the map version, tombstones for deltas). Registration is in
 * store_pg_register.c. Each function is the twin of the one of the same
 * name in store_sqlite_nodes.c: same behaviour, codes and messages. The
 * delete trigger of the schema writes the tombstone (node_removals) and
 * the removed-machine entry, as SQLite's does. */
#include "servers/control/alloc.h"
#include "servers/control/store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_NODE_COLS                                                                     \
	"id, machine_key, node_key, disco_key, hostname, name, ipv4, ipv6, endpoints, "  \
	"home_relay, hostinfo, COALESCE(auth_key_id, 0), approved, ephemeral, online, "  \
	"tags, created, last_seen, expiry, version, \"user\", online_server"

/* One row of PG_NODE_COLS; every text is cut to its field and every key
 * must be exactly 32 bytes (ctl_pg_text, ctl_pg_blob), so a damaged row
 * cannot overrun the struct. */
static void pg_node_row(const PGresult *q, int row, struct ctl_node *n)
{
	memset(n, 0, sizeof *n);
	n->id = ctl_pg_int(q, row, 0);
	ctl_pg_blob(n->machine_key, CTL_KEY_LEN, q, row, 1);
	ctl_pg_blob(n->node_key, CTL_KEY_LEN, q, row, 2);
	ctl_pg_blob(n->disco_key, CTL_KEY_LEN, q, row, 3);
	ctl_pg_text(n->hostname, sizeof n->hostname, q, row, 4);
	ctl_pg_text(n->name, sizeof n->name, q, row, 5);
	n->ipv4 = (uint32_t)ctl_pg_int(q, row, 6);
	ctl_pg_blob(n->ipv6, sizeof n->ipv6, q, row, 7);
	ctl_pg_text(n->endpoints, sizeof n->endpoints, q, row, 8);
	n->home_relay = (int)ctl_pg_int(q, row, 9);
	ctl_pg_text(n->hostinfo, sizeof n->hostinfo, q, row, 10);
	n->auth_key_id = ctl_pg_int(q, row, 11);
	n->approved = ctl_pg_int(q, row, 12) != 0;
	n->ephemeral = ctl_pg_int(q, row, 13) != 0;
	n->online = ctl_pg_int(q, row, 14) != 0;
	ctl_pg_text(n->tags, sizeof n->tags, q, row, 15);
	n->created = ctl_pg_int(q, row, 16);
	n->last_seen = ctl_pg_int(q, row, 17);
	n->expiry = ctl_pg_int(q, row, 18);
	n->version = ctl_pg_int(q, row, 19);
	ctl_pg_text(n->user, sizeof n->user, q, row, 20);
	n->online_server = ctl_pg_int(q, row, 21);
}

int ctl_pg_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                    struct ctl_node *out)
{
	struct pg_store *s = PG(st);
	struct pg_params p = {.n = 0};
	const char *sql;
	int rc;

	switch (by) {
	case CTL_NODE_BY_ID:
		sql = "SELECT " PG_NODE_COLS " FROM nodes WHERE id = $1";
		ctl_pg_p_int(&p, *(const int64_t *)key);
		break;
	case CTL_NODE_BY_MACHINE_KEY:
		sql = "SELECT " PG_NODE_COLS " FROM nodes WHERE machine_key = $1";
		ctl_pg_p_blob(&p, key, CTL_KEY_LEN);
		break;
	case CTL_NODE_BY_NODE_KEY:
		sql = "SELECT " PG_NODE_COLS " FROM nodes WHERE node_key = $1";
		ctl_pg_p_blob(&p, key, CTL_KEY_LEN);
		break;
	case CTL_NODE_BY_NAME:
		sql = "SELECT " PG_NODE_COLS " FROM nodes WHERE name = $1";
		ctl_pg_p_text(&p, key);
		break;
	default:
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "bad lookup");
	}
	PGresult *q = ctl_pg_query(s, "node lookup", sql, &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	if (rows > 0 && out)
		pg_node_row(q, 0, out);
	PQclear(q);
	return rows > 0 ? 0 : ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "no such node");
}

int ctl_pg_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                     size_t *n)
{
	struct pg_store *s = PG(st);
	struct pg_params p = {.n = 0};
	int rc;

	*out = NULL;
	*n = 0;
	ctl_pg_p_int(&p, since);
	PGresult *q = ctl_pg_query(
	    s, "node list",
	    "SELECT " PG_NODE_COLS " FROM nodes WHERE version > $1 ORDER BY id", &p, &rc);
	if (!q)
		return rc;
	size_t rows = (size_t)PQntuples(q);
	struct ctl_node *v = rows ? malloc(rows * sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(q);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < rows; i++)
		pg_node_row(q, (int)i, &v[i]);
	PQclear(q);
	*out = v;
	*n = rows;
	return 0;
}

/* Deletes node id (a map change: its tombstone at a new version, so that
 * deltas name it) without the removed-machine entry the delete trigger
 * makes: a logged-out node is not banned (its keys are gone with it;
 * removed_machines would only grow with container churn). Inside a
 * transaction. */
static int pg_node_delete_free(struct pg_store *s, int64_t id, const char *what)
{
	struct pg_params p = {.n = 0};
	uint8_t mk[CTL_KEY_LEN];
	int64_t v;
	int rc;

	ctl_pg_p_int(&p, id);
	PGresult *q = ctl_pg_query(s, what,
	                           "SELECT machine_key, length(machine_key) FROM nodes "
	                           "WHERE id = $1",
	                           &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	bool ok = rows == 1 && ctl_pg_int(q, 0, 1) == CTL_KEY_LEN;
	if (ok)
		ctl_pg_blob(mk, CTL_KEY_LEN, q, 0, 0);
	PQclear(q);
	if (rows == 0)
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "%s: node %lld: no such node",
		                   what, (long long)id);
	if (!ok)
		return ctl_pg_fail(s, CTL_STORE_EIO, "%s: node %lld: bad machine key",
		                   what, (long long)id);
	rc = ctl_pg_bump(s, &v);
	if (rc == 0)
		rc = ctl_pg_cmd(s, what, "DELETE FROM nodes WHERE id = $1", &p, NULL);
	if (rc)
		return rc;
	struct pg_params pk = {.n = 0};
	ctl_pg_p_blob(&pk, mk, CTL_KEY_LEN);
	return ctl_pg_cmd(s, what, "DELETE FROM removed_machines WHERE machine_key = $1",
	                  &pk, NULL);
}

/* One-statement changes of a node that bump the map version: $1 the new
 * version, $2 the node id, $3 (when with_arg) an argument. */
static int pg_node_change(struct pg_store *s, const char *sql, int64_t id, bool with_arg,
                          int64_t arg, const char *what)
{
	int64_t v, rows = 0;
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_bump(s, &v);
	if (rc == 0) {
		struct pg_params p = {.n = 0};
		ctl_pg_p_int(&p, v);
		ctl_pg_p_int(&p, id);
		if (with_arg)
			ctl_pg_p_int(&p, arg);
		rc = ctl_pg_cmd(s, what, sql, &p, &rows);
		if (rc == 0 && rows == 0)
			rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
			                 "%s: node %lld: no such node", what,
			                 (long long)id);
	}
	if (rc == 0)
		rc = ctl_pg_fault(s, what);
	return ctl_pg_end(s, rc);
}

int ctl_pg_node_approve(struct ctl_store *st, int64_t id)
{
	return pg_node_change(PG(st),
	                      "UPDATE nodes SET approved = 1, version = $1 WHERE id = $2",
	                      id, false, 0, "approve");
}

/* expiry_key_seq: the newest auth key id at the expiry (auth keys are never
 * deleted, so max(id) is the last one issued, read in this transaction, as
 * SQLite's sqlite_sequence): only a key made after it re-authorises. */
int ctl_pg_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return pg_node_change(PG(st),
	                      "UPDATE nodes SET expiry = $3, version = $1, "
	                      "expiry_key_seq = COALESCE((SELECT max(id) FROM "
	                      "auth_keys), 0) WHERE id = $2",
	                      id, true, now, "expire");
}

int ctl_pg_node_remove(struct ctl_store *st, int64_t id)
{
	return pg_node_change(PG(st),
	                      "DELETE FROM nodes WHERE id = $2 AND $1::bigint > 0", id,
	                      false, 0, "remove");
}

int ctl_pg_node_logout(struct ctl_store *st, int64_t id)
{
	struct pg_store *s = PG(st);
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = pg_node_delete_free(s, id, "logout");
	if (rc == 0)
		rc = ctl_pg_fault(s, "logout");
	return ctl_pg_end(s, rc);
}

int ctl_pg_node_pending_count(struct ctl_store *st, int64_t *n)
{
	struct pg_store *s = PG(st);
	int rc;
	*n = 0;
	PGresult *q =
	    ctl_pg_query(s, "pending count",
	                 "SELECT COUNT(*) FROM nodes WHERE approved = 0", NULL, &rc);
	if (!q)
		return rc;
	if (PQntuples(q) == 1)
		*n = ctl_pg_int(q, 0, 0);
	PQclear(q);
	return 0;
}

int ctl_pg_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved)
{
	struct pg_store *s = PG(st);
	int rc;
	*total = *approved = 0;
	PGresult *q = ctl_pg_query(s, "node counts",
	                           "SELECT COUNT(*), COUNT(*) FILTER (WHERE approved "
	                           "<> 0) FROM nodes",
	                           NULL, &rc);
	if (!q)
		return rc;
	if (PQntuples(q) == 1) {
		*total = ctl_pg_int(q, 0, 0);
		*approved = ctl_pg_int(q, 0, 1);
	}
	PQclear(q);
	return 0;
}

int ctl_pg_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n)
{
	struct pg_store *s = PG(st);
	struct pg_params p = {.n = 0};
	int rc;

	*out = NULL;
	*n = 0;
	ctl_pg_p_int(&p, since);
	PGresult *q = ctl_pg_query(s, "removed nodes",
	                           "SELECT node_id FROM node_removals WHERE version > $1 "
	                           "ORDER BY version, node_id",
	                           &p, &rc);
	if (!q)
		return rc;
	size_t rows = (size_t)PQntuples(q);
	int64_t *v = rows ? malloc(rows * sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(q);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < rows; i++)
		v[i] = ctl_pg_int(q, (int)i, 0);
	PQclear(q);
	*out = v;
	*n = rows;
	return 0;
}

int ctl_pg_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	struct pg_store *s = PG(st);
	int64_t v, rows = 0;

	if (!ctl_alloc_name_valid(name))
		return ctl_pg_fail(
		    s, CTL_STORE_EINVAL,
		    "name \"%.64s\": 1-63 of a-z, 0-9, '-', not starting or "
		    "ending with '-', and not a reserved name (localhost, wpad, "
		    "metadata...)",
		    name ? name : "");
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_bump(s, &v);
	if (rc == 0) {
		/* UNIQUE(name) refuses a taken name. */
		struct pg_params p = {.n = 0};
		ctl_pg_p_int(&p, v);
		ctl_pg_p_int(&p, id);
		ctl_pg_p_text(&p, name);
		rc = ctl_pg_cmd(s, "rename",
		                "UPDATE nodes SET name = $3, version = $1 WHERE id = $2",
		                &p, &rows);
		if (rc == CTL_STORE_EEXISTS)
			ctl_pg_fail(s, rc, "name %s is taken", name);
		else if (rc == 0 && rows == 0)
			rc =
			    ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
			                "rename: node %lld: no such node", (long long)id);
	}
	return ctl_pg_end(s, rc);
}

/* ECONFLICT when another node holds this disco key (a direct update). */
static int pg_disco_free(struct pg_store *s, const uint8_t *disco, int64_t self_id)
{
	struct pg_params p = {.n = 0};
	int rc;
	ctl_pg_p_blob(&p, disco, CTL_KEY_LEN);
	ctl_pg_p_int(&p, self_id);
	PGresult *q = ctl_pg_query(
	    s, "disco key check", "SELECT 1 FROM nodes WHERE disco_key = $1 AND id <> $2",
	    &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	PQclear(q);
	return rows ? ctl_pg_fail(s, CTL_STORE_ECONFLICT,
	                          "disco key in use by another node")
	            : 0;
}

/* Every field of the mask in one UPDATE ($3: the mask; a field outside it
 * keeps its value). Online makes this server ($11) the holder, offline
 * makes it none (store.h, ctl_store_set_server); an offline write for a
 * node held by another server has been taken out of the mask already. */
static const char pg_update_sql[] =
    "UPDATE nodes SET "
    "version = CASE WHEN $2::bigint > 0 THEN $2::bigint ELSE version END, "
    "endpoints = CASE WHEN $3::int & 1 <> 0 THEN $4::text ELSE endpoints END, "
    "disco_key = CASE WHEN $3::int & 2 <> 0 THEN $5::bytea ELSE disco_key END, "
    "hostinfo = CASE WHEN $3::int & 4 <> 0 THEN $7::text ELSE hostinfo END, "
    "home_relay = CASE WHEN $3::int & 8 <> 0 THEN $8::int ELSE home_relay END, "
    "last_seen = CASE WHEN $3::int & 16 <> 0 THEN $9::bigint ELSE last_seen END, "
    "online = CASE WHEN $3::int & 32 <> 0 THEN $10::int ELSE online END, "
    "online_server = CASE WHEN $3::int & 32 = 0 THEN online_server "
    "WHEN $10::int <> 0 THEN $11::bigint ELSE 0 END, "
    "node_key = CASE WHEN $3::int & 64 <> 0 THEN $6::bytea ELSE node_key END "
    "WHERE id = $1";

/* 1 when node id is online through another server (an offline write of
 * this one is not for it: the node moved), 0 when not, <0 on error.
 * Always 0 without a server id (one server). */
static int pg_held_elsewhere(struct pg_store *s, int64_t id)
{
	struct pg_params p = {.n = 0};
	int rc;
	if (!s->server_id)
		return 0;
	ctl_pg_p_int(&p, id);
	ctl_pg_p_int(&p, s->server_id);
	PGresult *q = ctl_pg_query(s, "node holder",
	                           "SELECT 1 FROM nodes WHERE id = $1 AND online = 1 "
	                           "AND online_server <> $2",
	                           &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	PQclear(q);
	return rows > 0;
}

int ctl_pg_node_update(struct ctl_store *st, int64_t id, const struct ctl_node_update *u)
{
	struct pg_store *s = PG(st);
	unsigned m = u->mask;
	int64_t v = 0;

	if ((m & CTL_UPD_ENDPOINTS) &&
	    !ctl_pg_len_ok(u->endpoints, CTL_STORE_ENDPOINTS_MAX))
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "endpoints longer than %d",
		                   CTL_STORE_ENDPOINTS_MAX);
	if ((m & CTL_UPD_HOSTINFO) && !ctl_pg_len_ok(u->hostinfo, CTL_HOSTINFO_MAX))
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "hostinfo longer than %d",
		                   CTL_HOSTINFO_MAX);
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_node_get(st, CTL_NODE_BY_ID, &id, NULL);
	/* Offline only while this server holds it (the rest applies). */
	if (rc == 0 && (m & CTL_UPD_ONLINE) && !u->online) {
		rc = pg_held_elsewhere(s, id);
		if (rc == 1)
			m &= ~(unsigned)CTL_UPD_ONLINE;
		rc = rc < 0 ? rc : 0;
	}
	/* last_seen alone does not change anyone's map. */
	if (rc == 0 && (m & ~(unsigned)CTL_UPD_LAST_SEEN))
		rc = ctl_pg_bump(s, &v);
	if (rc == 0 && (m & CTL_UPD_DISCO))
		rc = pg_disco_free(s, u->disco_key, id);
	if (rc == 0) {
		struct pg_params p = {.n = 0};
		ctl_pg_p_int(&p, id);
		ctl_pg_p_int(&p, v);
		ctl_pg_p_int(&p, m);
		ctl_pg_p_text(&p, (m & CTL_UPD_ENDPOINTS) && u->endpoints ? u->endpoints
		                                                          : "");
		ctl_pg_p_blob(&p, u->disco_key, CTL_KEY_LEN);
		ctl_pg_p_blob(&p, u->node_key, CTL_KEY_LEN);
		ctl_pg_p_text(&p,
		              (m & CTL_UPD_HOSTINFO) && u->hostinfo ? u->hostinfo : "");
		ctl_pg_p_int(&p, u->home_relay);
		ctl_pg_p_int(&p, u->last_seen);
		ctl_pg_p_int(&p, u->online);
		ctl_pg_p_int(&p, s->server_id);
		rc = ctl_pg_cmd(s, "node update", pg_update_sql, &p, NULL);
	}
	if (rc == 0)
		rc = ctl_pg_fault(s, "update:before-commit");
	return ctl_pg_end(s, rc);
}
