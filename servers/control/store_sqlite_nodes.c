/* The SQLite control store: nodes (registration, lookups, lists, changes
 * that bump the map version, tombstones for deltas). */
#include "servers/control/alloc.h"
#include "servers/control/store_sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- nodes ----------------------------------------------------------- */

#define SQ_NODE_COLS                                                                     \
	"id, machine_key, node_key, disco_key, hostname, name, ipv4, ipv6, endpoints, "  \
	"home_relay, hostinfo, auth_key_id, approved, ephemeral, online, tags, "         \
	"created, "                                                                      \
	"last_seen, expiry, version, user, online_server"

static void sq_node_row(sqlite3_stmt *q, struct ctl_node *n)
{
	memset(n, 0, sizeof *n);
	n->id = sqlite3_column_int64(q, 0);
	ctl_sq_blob(n->machine_key, CTL_KEY_LEN, q, 1);
	ctl_sq_blob(n->node_key, CTL_KEY_LEN, q, 2);
	ctl_sq_blob(n->disco_key, CTL_KEY_LEN, q, 3);
	ctl_sq_text(n->hostname, sizeof n->hostname, q, 4);
	ctl_sq_text(n->name, sizeof n->name, q, 5);
	n->ipv4 = (uint32_t)sqlite3_column_int64(q, 6);
	ctl_sq_blob(n->ipv6, sizeof n->ipv6, q, 7);
	ctl_sq_text(n->endpoints, sizeof n->endpoints, q, 8);
	n->home_relay = sqlite3_column_int(q, 9);
	ctl_sq_text(n->hostinfo, sizeof n->hostinfo, q, 10);
	n->auth_key_id = sqlite3_column_int64(q, 11);
	n->approved = sqlite3_column_int(q, 12);
	n->ephemeral = sqlite3_column_int(q, 13);
	n->online = sqlite3_column_int(q, 14);
	ctl_sq_text(n->tags, sizeof n->tags, q, 15);
	n->created = sqlite3_column_int64(q, 16);
	n->last_seen = sqlite3_column_int64(q, 17);
	n->expiry = sqlite3_column_int64(q, 18);
	n->version = sqlite3_column_int64(q, 19);
	ctl_sq_text(n->user, sizeof n->user, q, 20);
	n->online_server = sqlite3_column_int64(q, 21);
}

int ctl_sq_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                    struct ctl_node *out)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q;

	switch (by) {
	case CTL_NODE_BY_ID:
		q = ctl_sq_prep(s, "SELECT " SQ_NODE_COLS " FROM nodes WHERE id = ?1");
		if (q)
			sqlite3_bind_int64(q, 1, *(const int64_t *)key);
		break;
	case CTL_NODE_BY_MACHINE_KEY:
		q = ctl_sq_prep(s, "SELECT " SQ_NODE_COLS
		                   " FROM nodes WHERE machine_key = ?1");
		if (q)
			sqlite3_bind_blob(q, 1, key, CTL_KEY_LEN, SQLITE_TRANSIENT);
		break;
	case CTL_NODE_BY_NODE_KEY:
		q = ctl_sq_prep(s,
		                "SELECT " SQ_NODE_COLS " FROM nodes WHERE node_key = ?1");
		if (q)
			sqlite3_bind_blob(q, 1, key, CTL_KEY_LEN, SQLITE_TRANSIENT);
		break;
	case CTL_NODE_BY_NAME:
		q = ctl_sq_prep(s, "SELECT " SQ_NODE_COLS " FROM nodes WHERE name = ?1");
		if (q)
			sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
		break;
	default:
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "bad lookup");
	}
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW && out)
		sq_node_row(q, out);
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "no such node");
	return ctl_sq_dberr(s, "node lookup");
}

int ctl_sq_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                     size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_node *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT " SQ_NODE_COLS
	                                 " FROM nodes WHERE version > ?1 ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, since);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 64;
			struct ctl_node *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		sq_node_row(q, &v[cnt++]);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "node list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* 1 if name belongs to a node other than self, 0 if free, <0 on error. */
/* Names are unique among all rows; an authorised node (approved) may take
 * a pending one's name (the pending row is renamed), so it checks against
 * approved rows only. */
static int sq_name_taken(struct sq_store *s, const char *name, int64_t self,
                         bool approved_only)
{
	static const char all[] = "SELECT 1 FROM nodes WHERE name = ?1 AND id != ?2";
	static const char appr[] = "SELECT 1 FROM nodes WHERE name = ?1 AND id != ?2 "
	                           "AND approved = 1";
	sqlite3_stmt *q = ctl_sq_prep(s, approved_only ? appr : all);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, self);
	int r = sqlite3_step(q);
	ctl_sq_done(q);
	if (r == SQLITE_ROW || r == SQLITE_DONE)
		return r == SQLITE_ROW;
	return ctl_sq_dberr(s, "name check");
}

/* The smallest n >= 2 with no node named "base-n", from one range scan of
 * the name index over ["base-", "base.") (so 3,000 "laptop"s cost one scan
 * per registration, not a lookup per candidate). The answer is at most
 * rows + 2, so only suffixes up to that are remembered. */
static int sq_first_free_suffix(struct sq_store *s, const char *base, unsigned *out,
                                bool approved_only)
{
	static const char all[] = "SELECT name FROM nodes WHERE name > ?1 AND name < ?2";
	static const char appr[] = "SELECT name FROM nodes WHERE name > ?1 AND "
	                           "name < ?2 AND approved = 1";
	char lo[72], hi[72];
	size_t bl = strlen(base), cnt = 0, cap = 0;
	unsigned long *seen = NULL;
	int r;

	snprintf(lo, sizeof lo, "%s-", base);
	snprintf(hi, sizeof hi, "%s.", base);
	sqlite3_stmt *q = ctl_sq_prep(s, approved_only ? appr : all);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, lo, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 2, hi, -1, SQLITE_TRANSIENT);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		const char *nm = (const char *)sqlite3_column_text(q, 0) + bl + 1;
		char *end;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 64;
			unsigned long *ns = realloc(seen, cap * sizeof *seen);
			if (!ns) {
				r = SQLITE_NOMEM;
				break;
			}
			seen = ns;
		}
		seen[cnt] = strtoul(nm, &end, 10);
		if (!*end && nm[0] >= '1' && nm[0] <= '9')
			cnt++;
	}
	ctl_sq_done(q);
	uint8_t *used = r == SQLITE_DONE ? calloc(cnt + 3, 1) : NULL;
	if (used) {
		for (size_t i = 0; i < cnt; i++)
			if (seen[i] < cnt + 3)
				used[seen[i]] = 1;
		*out = 2;
		while (used[*out])
			(*out)++;
	}
	free(seen);
	free(used);
	if (r != SQLITE_DONE && r != SQLITE_NOMEM)
		return ctl_sq_dberr(s, "name scan");
	return used ? 0 : ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
}

static int sq_unique_name(struct sq_store *s, const char *hostname, char out[64],
                          bool approved_only)
{
	char base[64];
	ctl_alloc_name_from_host(hostname, base);
	snprintf(out, 64, "%s", base);
	int t = sq_name_taken(s, out, 0, approved_only);
	if (t <= 0)
		return t;
	unsigned n = 2;
	t = sq_first_free_suffix(s, base, &n, approved_only);
	if (t)
		return t;
	/* A base cut to fit the suffix ("aaa...a-2") can still collide: walk. */
	for (;; n++) {
		ctl_alloc_name_suffix(base, n, out);
		t = sq_name_taken(s, out, 0, approved_only);
		if (t <= 0)
			return t;
		if (n > 1000000)
			return ctl_sq_fail(s, CTL_STORE_EFULL, "no free name for %s",
			                   base);
	}
}

/* Next free IPv4 offset after the persisted cursor; moves the cursor. */
static int sq_alloc_v4(struct sq_store *s, uint32_t *off_out)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT v4_cursor FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	uint32_t start = r == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (r != SQLITE_ROW)
		return r == SQLITE_DONE ? ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
		                                      "store not initialised (run init)")
		                        : ctl_sq_dberr(s, "v4 cursor");
	q = ctl_sq_prep(s, "SELECT 1 FROM nodes WHERE ipv4 = ?1");
	if (!q)
		return CTL_STORE_EIO;
	uint32_t off = start % CTL_ALLOC_V4_SIZE;
	for (uint32_t i = 0; i < CTL_ALLOC_V4_SIZE; i++) {
		off = ctl_alloc_v4_next(off);
		sqlite3_bind_int64(q, 1, CTL_V4_PREFIX + off);
		r = sqlite3_step(q);
		ctl_sq_done(q);
		if (r == SQLITE_DONE)
			break;
		if (r != SQLITE_ROW)
			return ctl_sq_dberr(s, "v4 allocation");
		if (i + 1 == CTL_ALLOC_V4_SIZE)
			return ctl_sq_fail(s, CTL_STORE_EFULL, "no free IPv4 address");
	}
	q = ctl_sq_prep(s, "UPDATE meta SET v4_cursor = ?1 WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, off);
	*off_out = off;
	return ctl_sq_step_done(s, q, "v4 cursor");
}

/* A pending row that holds name gives it up to an authorised node: it is
 * renamed (unique among all rows; it is approved under its new name). */
static int sq_pending_yield_name(struct sq_store *s, const char *name)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT id, hostname FROM nodes WHERE "
	                                 "name = ?1 AND approved = 0");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(q);
	int64_t id = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	char host[CTL_HOSTNAME_MAX + 1] = "";
	if (r == SQLITE_ROW)
		snprintf(host, sizeof host, "%s",
		         (const char *)sqlite3_column_text(q, 1));
	ctl_sq_done(q);
	if (r == SQLITE_DONE)
		return 0;
	if (r != SQLITE_ROW)
		return ctl_sq_dberr(s, "pending name check");
	char nn[64];
	int rc = sq_unique_name(s, host, nn, false);
	if (rc)
		return rc;
	q = ctl_sq_prep(s, "UPDATE nodes SET name = ?2 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_text(q, 2, nn, -1, SQLITE_TRANSIENT);
	return ctl_sq_step_done(s, q, "pending rename");
}

/* Node and disco keys are unique among approved nodes: ECONFLICT when an
 * approved node of another machine holds one. A pending node that holds
 * one loses it to an authorised registration (its row is dropped; its
 * connection is told to retry) and is EPENDING_BUSY for a pending one. */
static int sq_keys_claim(struct sq_store *s, const struct ctl_store_reg *reg,
                         int64_t self_id, bool authorised)
{
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT MAX(approved) FROM nodes WHERE "
	                   "(node_key = ?1 OR disco_key = ?2) AND id != ?3");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, reg->node_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 2, reg->disco_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 3, self_id);
	int r = sqlite3_step(q);
	int held = r == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL
	               ? (int)sqlite3_column_int64(q, 0)
	               : -1;
	ctl_sq_done(q);
	if (r != SQLITE_ROW)
		return ctl_sq_dberr(s, "key check");
	if (held == 1)
		return ctl_sq_fail(s, CTL_STORE_ECONFLICT,
		                   "node or disco key in use by another node");
	if (held < 0)
		return 0;
	if (!authorised)
		return ctl_sq_fail(s, CTL_STORE_EPENDING_BUSY,
		                   "node or disco key held by a pending node");
	q = ctl_sq_prep(s, "DELETE FROM nodes WHERE approved = 0 AND "
	                   "(node_key = ?1 OR disco_key = ?2) AND id != ?3");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, reg->node_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 2, reg->disco_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 3, self_id);
	return ctl_sq_step_done(s, q, "pending key drop");
}

/* ECONFLICT when another node holds this disco key (a direct update). */
static int sq_disco_free(struct sq_store *s, const uint8_t *disco, int64_t self_id)
{
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT 1 FROM nodes WHERE disco_key = ?1 AND id != ?2");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, disco, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, self_id);
	int r = sqlite3_step(q);
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return ctl_sq_fail(s, CTL_STORE_ECONFLICT,
		                   "disco key in use by another node");
	return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "disco key check");
}

/* EPENDING_FULL when max pending nodes wait, or max_src came from src. */
static int sq_pending_room(struct sq_store *s, const struct ctl_store_reg *r)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT COUNT(*), COALESCE(SUM(source = ?1), 0) "
	                                 "FROM nodes WHERE approved = 0");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, r->source ? r->source : "", -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(q);
	int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	int64_t src = rc == SQLITE_ROW ? sqlite3_column_int64(q, 1) : 0;
	ctl_sq_done(q);
	if (rc != SQLITE_ROW)
		return ctl_sq_dberr(s, "pending count");
	if (r->max_pending && n >= (int64_t)r->max_pending)
		return ctl_sq_fail(s, CTL_STORE_EPENDING_FULL,
		                   "%lld nodes wait for approval (the limit)",
		                   (long long)n);
	if (r->max_per_source && r->source && r->source[0] &&
	    src >= (int64_t)r->max_per_source)
		return ctl_sq_fail(s, CTL_STORE_EPENDING_FULL,
		                   "%lld nodes from %s wait for approval (the limit)",
		                   (long long)src, r->source);
	return 0;
}

/* 1 when this machine's node was removed (and not registered since), and
 * key is NULL or an auth key that existed at the removal (say the reusable
 * key the node's launcher still passes): only a newer one brings it back. */
static int sq_machine_removed(struct sq_store *s, const uint8_t *mk,
                              const struct ctl_authkey *key)
{
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT key_seq FROM removed_machines WHERE machine_key = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, mk, CTL_KEY_LEN, SQLITE_TRANSIENT);
	int r = sqlite3_step(q);
	int64_t seq = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return !key || key->id <= seq;
	return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "removed machine check");
}

/* 1 when key existed when node id was expired (only a newer key
 * re-authorises it). */
static int sq_key_after_expiry(struct sq_store *s, int64_t id,
                               const struct ctl_authkey *key)
{
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT expiry_key_seq FROM nodes WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	int r = sqlite3_step(q);
	int64_t seq = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (r != SQLITE_ROW)
		return ctl_sq_dberr(s, "expiry check");
	return key->id <= seq;
}

/* Deletes node id (a map change: its tombstone at a new version, so that
 * deltas name it) without the removed-machine entry the delete trigger
 * makes: a logged-out node is not banned (its
 * keys are gone with it; removed_machines would only grow with container
 * churn). Inside a transaction. */
static int sq_node_delete_free(struct sq_store *s, int64_t id, const char *what)
{
	uint8_t mk[CTL_KEY_LEN];
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT machine_key FROM nodes WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	int rc = sqlite3_step(q);
	bool ok = rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == CTL_KEY_LEN;
	if (ok)
		memcpy(mk, sqlite3_column_blob(q, 0), CTL_KEY_LEN);
	ctl_sq_done(q);
	if (rc == SQLITE_DONE)
		return ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "%s: node %lld: no such node",
		                   what, (long long)id);
	if (!ok)
		return ctl_sq_dberr(s, what);
	int64_t v;
	rc = ctl_sq_bump(s, &v);
	q = rc ? NULL : ctl_sq_prep(s, "DELETE FROM nodes WHERE id = ?1");
	if (!q)
		return rc ? rc : CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	rc = ctl_sq_step_done(s, q, what);
	q = rc ? NULL
	       : ctl_sq_prep(s, "DELETE FROM removed_machines WHERE machine_key = ?1");
	if (!q)
		return rc ? rc : CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, mk, CTL_KEY_LEN, SQLITE_TRANSIENT);
	return ctl_sq_step_done(s, q, what);
}

/* Gives node id, an ephemeral holder of a name being reused, the next
 * free suffix of its own hostname (a map change: peers and the node
 * itself get it as a rename): its registration, keys and addresses stay.
 * Inside a transaction. */
static int sq_reclaim_rename(struct sq_store *s, int64_t id, const char *host)
{
	char nn[64];
	int64_t v;
	int rc = sq_unique_name(s, host, nn, false);
	if (rc == 0)
		rc = ctl_sq_bump(s, &v);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "UPDATE nodes SET name = ?2, version = ?3 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_text(q, 2, nn, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 3, v);
	return ctl_sq_step_done(s, q, "name reclaim rename");
}

/* Name reuse (struct ctl_store_reg.reclaim_ids): renames the first of the
 * candidates that is still an approved ephemeral node that registered the
 * hostname r's gives (the same name from it: a node that asked for "db-2"
 * never loses it to one asking for "db"), holds that name or a suffixed
 * form of it, and joined with key k, or (both owned) as k's user: the same
 * users row (user_id), so that a user removed and created again under the
 * old name owns none of the old nodes. Never another user's node. 0 also
 * when none qualifies. */
static int sq_name_reclaim(struct sq_store *s, const struct ctl_store_reg *r,
                           const struct ctl_authkey *k)
{
	char base[64], hb[64];
	ctl_alloc_name_from_host(r->hostname, base);
	sqlite3_stmt *q = ctl_sq_prep(
	    s, "SELECT hostname FROM nodes WHERE id = ?1 AND (name = ?2 OR "
	       "substr(name, 1, length(?2) + 1) = ?2 || '-') AND approved = 1 AND "
	       "ephemeral = 1 AND (auth_key_id = ?3 OR (?4 != '' AND user = ?4 AND "
	       "user_id != 0 AND user_id = (SELECT id FROM users WHERE name = ?4))) "
	       "AND NOT (online = 1 AND online_server NOT IN (0, ?5))");
	if (!q)
		return CTL_STORE_EIO;
	for (unsigned i = 0; i < r->n_reclaim && i < CTL_RECLAIM_MAX; i++) {
		sqlite3_bind_int64(q, 1, r->reclaim_ids[i]);
		sqlite3_bind_text(q, 2, base, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 3, k->id);
		sqlite3_bind_text(q, 4, k->user, -1, SQLITE_TRANSIENT);
		/* the caller judged it gone from what it saw, but the node may
		 * have come back through another server since: that one holds
		 * it online, so it keeps its name */
		sqlite3_bind_int64(q, 5, s->server_id);
		int rc = sqlite3_step(q);
		char host[CTL_HOSTNAME_MAX + 1] = "";
		if (rc == SQLITE_ROW && sqlite3_column_text(q, 0))
			snprintf(host, sizeof host, "%s",
			         (const char *)sqlite3_column_text(q, 0));
		ctl_sq_done(q);
		if (rc == SQLITE_ROW) {
			ctl_alloc_name_from_host(host, hb);
			if (strcmp(hb, base) == 0)
				return sq_reclaim_rename(s, r->reclaim_ids[i], host);
			continue;
		}
		if (rc != SQLITE_DONE)
			return ctl_sq_dberr(s, "name reclaim check");
	}
	return 0;
}

static int sq_node_insert(struct sq_store *s, const struct ctl_store_reg *r,
                          const struct ctl_authkey *k)
{
	struct ctl_meta m;
	char name[64];
	uint8_t v6[16];
	uint32_t off = 0;
	int64_t v;
	int rc = ctl_sq_get_meta(&s->base, &m);

	if (rc == 0 && !k)
		rc = sq_pending_room(s, r);
	if (rc == 0)
		rc = sq_unique_name(s, r->hostname, name, k != NULL);
	if (rc == 0 && k)
		rc = sq_pending_yield_name(s, name);
	if (rc == 0)
		rc = sq_alloc_v4(s, &off);
	if (rc == 0)
		rc = ctl_sq_bump(s, &v);
	if (rc)
		return rc;
	ctl_alloc_v6(m.ula, CTL_V4_PREFIX + off, v6);
	sqlite3_stmt *q = ctl_sq_prep(
	    s,
	    "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name, ipv4, "
	    "ipv6, auth_key_id, approved, ephemeral, tags, created, last_seen, version, "
	    "source, user, user_id) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, "
	    "?15, COALESCE((SELECT id FROM users WHERE name = ?15), 0))");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, r->machine_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 2, r->node_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 3, r->disco_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 4, r->hostname ? r->hostname : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 5, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 6, CTL_V4_PREFIX + off);
	sqlite3_bind_blob(q, 7, v6, sizeof v6, SQLITE_TRANSIENT);
	if (k)
		sqlite3_bind_int64(q, 8, k->id);
	else
		sqlite3_bind_null(q, 8);
	sqlite3_bind_int(q, 9, k != NULL);
	sqlite3_bind_int(q, 10, (k && k->ephemeral) || r->ephemeral);
	sqlite3_bind_text(q, 11, k ? k->tags : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 12, r->now);
	sqlite3_bind_int64(q, 13, v);
	sqlite3_bind_text(q, 14, r->source ? r->source : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 15, k ? k->user : "", -1, SQLITE_TRANSIENT);
	rc = ctl_sq_step_done(s, q, "node insert");
	if (rc || !k)
		return rc;
	q = ctl_sq_prep(s, "DELETE FROM removed_machines WHERE machine_key = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, r->machine_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	return ctl_sq_step_done(s, q, "removed machine");
}

/* A known machine: new keys and hostname; a secret re-authorises it. */
static int sq_node_refresh(struct sq_store *s, const struct ctl_store_reg *r,
                           const struct ctl_node *old, const struct ctl_authkey *k)
{
	bool keys = memcmp(old->node_key, r->node_key, CTL_KEY_LEN) != 0 ||
	            memcmp(old->disco_key, r->disco_key, CTL_KEY_LEN) != 0;
	int64_t v = old->version;
	int rc = 0;

	if (keys || k)
		rc = ctl_sq_bump(s, &v);
	if (rc)
		return rc;
	sqlite3_stmt *q = ctl_sq_prep(
	    s, "UPDATE nodes SET node_key = ?2, disco_key = ?3, hostname = ?4, "
	       "last_seen = ?5, version = ?6 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, old->id);
	sqlite3_bind_blob(q, 2, r->node_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 3, r->disco_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 4, r->hostname ? r->hostname : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 5, r->now);
	sqlite3_bind_int64(q, 6, v);
	rc = ctl_sq_step_done(s, q, "node refresh");
	if (rc || !k)
		return rc;
	/* The key's owner and tags replace the node's: it is who the key
	 * says from now on. */
	q = ctl_sq_prep(s, "UPDATE nodes SET approved = 1, expiry = 0, auth_key_id = ?2, "
	                   "ephemeral = ?3, tags = ?4, user = ?5, user_id = "
	                   "COALESCE((SELECT id FROM users WHERE name = ?5), 0) "
	                   "WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, old->id);
	sqlite3_bind_int64(q, 2, k->id);
	sqlite3_bind_int(q, 3, k->ephemeral || r->ephemeral);
	sqlite3_bind_text(q, 4, k->tags, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 5, k->user, -1, SQLITE_TRANSIENT);
	return ctl_sq_step_done(s, q, "node reauth");
}

/* Inside register's transaction: online now, if approved and not expired
 * (a map change only when it was offline), held by this server (a node
 * that moved here from another server is ours from now on). */
static int sq_node_set_online(struct sq_store *s, const struct ctl_store_reg *r)
{
	struct ctl_node *n = malloc(sizeof *n);
	if (!n)
		return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
	int rc = ctl_sq_node_get(&s->base, CTL_NODE_BY_MACHINE_KEY, r->machine_key, n);
	int64_t v = 0;
	if (rc == 0 && n->approved && !(n->expiry && n->expiry <= r->now)) {
		v = n->version;
		if (!n->online)
			rc = ctl_sq_bump(s, &v);
		sqlite3_stmt *q = rc ? NULL
		                     : ctl_sq_prep(s, "UPDATE nodes SET online = 1, "
		                                      "last_seen = ?2, version = ?3, "
		                                      "online_server = ?4 WHERE id = ?1");
		if (q) {
			sqlite3_bind_int64(q, 1, n->id);
			sqlite3_bind_int64(q, 2, r->now);
			sqlite3_bind_int64(q, 3, v);
			sqlite3_bind_int64(q, 4, s->server_id);
			rc = ctl_sq_step_done(s, q, "node online");
		} else if (rc == 0) {
			rc = CTL_STORE_EIO;
		}
	}
	free(n);
	return rc;
}

int ctl_sq_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                         struct ctl_node *out, bool *created)
{
	static const uint8_t zero[CTL_KEY_LEN];
	struct sq_store *s = SQ(st);
	struct ctl_authkey k;
	struct ctl_node *old = malloc(sizeof *old);
	bool isnew = false;
	int rc;

	if (!old)
		return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
	if (!memcmp(r->machine_key, zero, CTL_KEY_LEN) ||
	    !memcmp(r->node_key, zero, CTL_KEY_LEN))
		rc = ctl_sq_fail(s, CTL_STORE_EINVAL,
		                 "register: zero machine or node key");
	else if (!ctl_sq_len_ok(r->hostname, CTL_HOSTNAME_MAX))
		rc = ctl_sq_fail(s, CTL_STORE_EINVAL, "register: hostname longer than %d",
		                 CTL_HOSTNAME_MAX);
	else
		rc = ctl_sq_begin(s);
	if (rc) {
		free(old);
		return rc;
	}
	rc = ctl_sq_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, old);
	isnew = rc == CTL_STORE_ENOTFOUND;
	if (isnew)
		rc = 0;
	/* An approved, unexpired node needs no key: it is not spent. */
	bool good =
	    !isnew && rc == 0 && old->approved && !(old->expiry && old->expiry <= r->now);
	const struct ctl_authkey *use = NULL;
	if (rc == 0 && r->auth_secret && !good) {
		rc = ctl_sq_key_use_tx(s, r->auth_secret, r->now, &k);
		use = &k;
		/* A retry with the single-use key this very machine was
		 * registered with (say the first answer was lost) resumes. */
		if (rc == CTL_STORE_EKEY_USED && !isnew && k.id == old->auth_key_id)
			rc = 0, use = NULL;
	}
	if (rc == 0 && isnew) {
		rc = sq_machine_removed(s, r->machine_key, use);
		if (rc == 1)
			rc = ctl_sq_fail(s, CTL_STORE_EREMOVED,
			                 "register: this machine's node was removed (an "
			                 "auth key made after the removal readmits it)");
		else if (rc == 0 && !use && r->no_pending)
			rc = ctl_sq_fail(s, CTL_STORE_EAUTH_REQUIRED,
			                 "register: no auth key and pending is off");
	}
	/* No pending: a row left pending from before waits no longer. */
	if (rc == 0 && !isnew && !old->approved && !use && r->no_pending)
		rc = ctl_sq_fail(s, CTL_STORE_EAUTH_REQUIRED,
		                 "register: no auth key and pending is off");
	/* An expired node comes back only with a key made after its expiry
	 * (not the reusable one its launcher still passes). */
	if (rc == 0 && use && !isnew && old->approved && old->expiry &&
	    old->expiry <= r->now) {
		rc = sq_key_after_expiry(s, old->id, use);
		if (rc == 1)
			rc = ctl_sq_fail(s, CTL_STORE_EEXPIRED,
			                 "register: node expired; the auth key is older "
			                 "than the expiry");
	}
	if (rc == 0 && isnew && use && (r->ephemeral || use->ephemeral) && r->n_reclaim)
		rc = sq_name_reclaim(s, r, use);
	/* Pending or expired without a valid key: nothing is stored. */
	bool write = isnew || good || use;
	if (rc == 0 && write)
		rc = sq_keys_claim(s, r, isnew ? 0 : old->id, good || use);
	if (rc == 0 && write)
		rc = isnew ? sq_node_insert(s, r, use) : sq_node_refresh(s, r, old, use);
	if (rc == 0 && r->set_online)
		rc = sq_node_set_online(s, r);
	if (rc == 0)
		rc = ctl_sq_fault(s, "register:before-commit");
	if (rc == 0 && out)
		rc = ctl_sq_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, out);
	rc = ctl_sq_end(s, rc);
	free(old);
	if (rc == 0 && created)
		*created = isnew;
	return rc;
}

/* One-statement changes of a node that bump the map version: ?1 the new
 * version, ?2 the node id, ?3 an optional argument. */
static int sq_node_change(struct sq_store *s, const char *sql, int64_t id, int64_t arg,
                          const char *what)
{
	int64_t v;
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = ctl_sq_bump(s, &v);
	sqlite3_stmt *q = rc ? NULL : ctl_sq_prep(s, sql);
	if (q) {
		sqlite3_bind_int64(q, 1, v);
		sqlite3_bind_int64(q, 2, id);
		if (sqlite3_bind_parameter_count(q) >= 3)
			sqlite3_bind_int64(q, 3, arg);
		rc = ctl_sq_step_done(s, q, what);
		if (rc == 0 && sqlite3_changes(s->db) == 0)
			rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
			                 "%s: node %lld: no such node", what,
			                 (long long)id);
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	if (rc == 0)
		rc = ctl_sq_fault(s, what);
	return ctl_sq_end(s, rc);
}

int ctl_sq_node_approve(struct ctl_store *st, int64_t id)
{
	return sq_node_change(SQ(st),
	                      "UPDATE nodes SET approved = 1, version = ?1 WHERE id = ?2",
	                      id, 0, "approve");
}

int ctl_sq_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return sq_node_change(SQ(st),
	                      "UPDATE nodes SET expiry = ?3, version = ?1, "
	                      "expiry_key_seq = COALESCE((SELECT seq FROM "
	                      "sqlite_sequence WHERE name = 'auth_keys'), 0) "
	                      "WHERE id = ?2",
	                      id, now, "expire");
}

int ctl_sq_node_remove(struct ctl_store *st, int64_t id)
{
	return sq_node_change(SQ(st), "DELETE FROM nodes WHERE id = ?2 AND ?1 > 0", id, 0,
	                      "remove");
}

int ctl_sq_node_logout(struct ctl_store *st, int64_t id)
{
	struct sq_store *s = SQ(st);
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = sq_node_delete_free(s, id, "logout");
	if (rc == 0)
		rc = ctl_sq_fault(s, "logout");
	return ctl_sq_end(s, rc);
}

int ctl_sq_node_pending_count(struct ctl_store *st, int64_t *n)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT COUNT(*) FROM nodes WHERE approved = 0");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	*n = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	return r == SQLITE_ROW ? 0 : ctl_sq_dberr(s, "pending count");
}

int ctl_sq_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q = ctl_sq_prep(
	    s, "SELECT COUNT(*), COALESCE(SUM(approved != 0), 0) FROM nodes");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	*total = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	*approved = r == SQLITE_ROW ? sqlite3_column_int64(q, 1) : 0;
	ctl_sq_done(q);
	return r == SQLITE_ROW ? 0 : ctl_sq_dberr(s, "node counts");
}

int ctl_sq_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	int64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT node_id FROM node_removals WHERE version > ?1 "
	                   "ORDER BY version, node_id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, since);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			int64_t *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		v[cnt++] = sqlite3_column_int64(q, 0);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "removed nodes");
	}
	*out = v;
	*n = cnt;
	return 0;
}

int ctl_sq_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	struct sq_store *s = SQ(st);
	int64_t v;

	if (!ctl_alloc_name_valid(name))
		return ctl_sq_fail(
		    s, CTL_STORE_EINVAL,
		    "name \"%.64s\": 1-63 of a-z, 0-9, '-', not starting or "
		    "ending with '-', and not a reserved name (localhost, wpad, "
		    "metadata...)",
		    name ? name : "");
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = ctl_sq_bump(s, &v);
	/* UNIQUE(name) refuses a taken name. */
	sqlite3_stmt *q =
	    rc ? NULL
	       : ctl_sq_prep(s, "UPDATE nodes SET name = ?3, version = ?1 WHERE id = ?2");
	if (q) {
		sqlite3_bind_int64(q, 1, v);
		sqlite3_bind_int64(q, 2, id);
		sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
		rc = ctl_sq_step_done(s, q, "rename");
		if (rc == CTL_STORE_EEXISTS)
			ctl_sq_fail(s, rc, "name %s is taken", name);
		else if (rc == 0 && sqlite3_changes(s->db) == 0)
			rc =
			    ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
			                "rename: node %lld: no such node", (long long)id);
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	return ctl_sq_end(s, rc);
}

/* 1 when node id is online through another server (an offline write of
 * this one is not for it: the node moved), 0 when not, or EIO. Always 0
 * without a server id (one server). */
static int sq_held_elsewhere(struct sq_store *s, int64_t id)
{
	if (!s->server_id)
		return 0;
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT 1 FROM nodes WHERE id = ?1 AND "
	                                 "online = 1 AND online_server != ?2");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_int64(q, 2, s->server_id);
	int r = sqlite3_step(q);
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return 1;
	return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "node holder");
}

/* UPDATE nodes SET <col> = ?2 WHERE id = ?1 with a text, key or integer
 * (?3, if the statement has it: this server's id). */
static int sq_set(struct sq_store *s, const char *sql, int64_t id, char type,
                  const void *p, int64_t i)
{
	sqlite3_stmt *q = ctl_sq_prep(s, sql);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	if (type == 't')
		sqlite3_bind_text(q, 2, p ? p : "", -1, SQLITE_TRANSIENT);
	else if (type == 'k')
		sqlite3_bind_blob(q, 2, p, CTL_KEY_LEN, SQLITE_TRANSIENT);
	else
		sqlite3_bind_int64(q, 2, i);
	if (sqlite3_bind_parameter_count(q) >= 3)
		sqlite3_bind_int64(q, 3, s->server_id);
	return ctl_sq_step_done(s, q, "node update");
}

int ctl_sq_node_update(struct ctl_store *st, int64_t id, const struct ctl_node_update *u)
{
	struct sq_store *s = SQ(st);
	unsigned m = u->mask;
	int64_t v;

	if ((m & CTL_UPD_ENDPOINTS) &&
	    !ctl_sq_len_ok(u->endpoints, CTL_STORE_ENDPOINTS_MAX))
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "endpoints longer than %d",
		                   CTL_STORE_ENDPOINTS_MAX);
	if ((m & CTL_UPD_HOSTINFO) && !ctl_sq_len_ok(u->hostinfo, CTL_HOSTINFO_MAX))
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "hostinfo longer than %d",
		                   CTL_HOSTINFO_MAX);
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = ctl_sq_node_get(st, CTL_NODE_BY_ID, &id, NULL);
	/* Offline only while this server holds it (the rest applies). */
	if (rc == 0 && (m & CTL_UPD_ONLINE) && !u->online) {
		rc = sq_held_elsewhere(s, id);
		if (rc == 1)
			m &= ~(unsigned)CTL_UPD_ONLINE;
		rc = rc < 0 ? rc : 0;
	}
	/* last_seen alone does not change anyone's map. */
	if (rc == 0 && (m & ~(unsigned)CTL_UPD_LAST_SEEN)) {
		rc = ctl_sq_bump(s, &v);
		if (rc == 0)
			rc = sq_set(s, "UPDATE nodes SET version = ?2 WHERE id = ?1", id,
			            'i', NULL, v);
	}
	if (rc == 0 && (m & CTL_UPD_ENDPOINTS))
		rc = sq_set(s, "UPDATE nodes SET endpoints = ?2 WHERE id = ?1", id, 't',
		            u->endpoints, 0);
	if (rc == 0 && (m & CTL_UPD_DISCO))
		rc = sq_disco_free(s, u->disco_key, id);
	if (rc == 0 && (m & CTL_UPD_DISCO))
		rc = sq_set(s, "UPDATE nodes SET disco_key = ?2 WHERE id = ?1", id, 'k',
		            u->disco_key, 0);
	if (rc == 0 && (m & CTL_UPD_NODE_KEY))
		rc = sq_set(s, "UPDATE nodes SET node_key = ?2 WHERE id = ?1", id, 'k',
		            u->node_key, 0);
	if (rc == 0 && (m & CTL_UPD_HOSTINFO))
		rc = sq_set(s, "UPDATE nodes SET hostinfo = ?2 WHERE id = ?1", id, 't',
		            u->hostinfo, 0);
	if (rc == 0 && (m & CTL_UPD_HOME_RELAY))
		rc = sq_set(s, "UPDATE nodes SET home_relay = ?2 WHERE id = ?1", id, 'i',
		            NULL, u->home_relay);
	if (rc == 0 && (m & CTL_UPD_LAST_SEEN))
		rc = sq_set(s, "UPDATE nodes SET last_seen = ?2 WHERE id = ?1", id, 'i',
		            NULL, u->last_seen);
	/* online: held by this server from now on; offline: by none */
	if (rc == 0 && (m & CTL_UPD_ONLINE))
		rc = sq_set(s, "UPDATE nodes SET online = ?2, online_server = ?2 * ?3 "
		               "WHERE id = ?1",
		            id, 'i', NULL, u->online);
	if (rc == 0)
		rc = ctl_sq_fault(s, "update:before-commit");
	return ctl_sq_end(s, rc);
}
