/* The PostgreSQL control store: node registration (store.h,
 * ctl_store_node_register), the twin of the registration half of
 * store_sqlite_nodes.c with the same rules, codes and messages. It all
 * runs in one transaction that holds the meta row (ctl_pg_begin), so
 * registrations through several servers are serialised as SQLite's one
 * writer serialises them: the name scan, the address cursor and the key
 * use cannot interleave. */
#include "servers/control/alloc.h"
#include "servers/control/store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 if name belongs to a node other than self, 0 if free, <0 on error.
 * Names are unique among all rows; an authorised node (approved) may take
 * a pending one's name (the pending row is renamed), so it checks against
 * approved rows only. */
static int pg_name_taken(struct pg_store *s, const char *name, int64_t self,
                         bool approved_only)
{
	static const char all[] = "SELECT 1 FROM nodes WHERE name = $1 AND id <> $2";
	static const char appr[] = "SELECT 1 FROM nodes WHERE name = $1 AND id <> $2 "
	                           "AND approved = 1";
	struct pg_params p = {.n = 0};
	int rc;
	ctl_pg_p_text(&p, name);
	ctl_pg_p_int(&p, self);
	PGresult *q = ctl_pg_query(s, "name check", approved_only ? appr : all, &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	PQclear(q);
	return rows > 0;
}

/* The smallest n >= 2 with no node named "base-n", from one scan of the
 * names in ["base-", "base.") (so 3,000 "laptop"s cost one query per
 * registration, not a lookup per candidate). The range is compared
 * byte-wise (COLLATE "C") whatever the database's collation: in a
 * natural-language one '-' and '.' sort as if absent. The answer is at
 * most rows + 2, so only suffixes up to that are remembered. */
static int pg_first_free_suffix(struct pg_store *s, const char *base, unsigned *out,
                                bool approved_only)
{
	static const char all[] =
	    "SELECT name FROM nodes WHERE (name COLLATE \"C\") > $1 "
	    "AND (name COLLATE \"C\") < $2";
	static const char appr[] = "SELECT name FROM nodes WHERE (name COLLATE \"C\") > "
	                           "$1 AND (name COLLATE \"C\") < $2 AND approved = 1";
	struct pg_params p = {.n = 0};
	char lo[72], hi[72];
	size_t bl = strlen(base);
	int rc;

	snprintf(lo, sizeof lo, "%s-", base);
	snprintf(hi, sizeof hi, "%s.", base);
	ctl_pg_p_text(&p, lo);
	ctl_pg_p_text(&p, hi);
	PGresult *q = ctl_pg_query(s, "name scan", approved_only ? appr : all, &p, &rc);
	if (!q)
		return rc;
	size_t rows = (size_t)PQntuples(q);
	uint8_t *used = calloc(rows + 3, 1);
	if (!used) {
		PQclear(q);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < rows; i++) {
		const char *nm = PQgetvalue(q, (int)i, 0);
		char *end;
		if (strlen(nm) <= bl + 1)
			continue;
		nm += bl + 1;
		unsigned long k = strtoul(nm, &end, 10);
		if (!*end && nm[0] >= '1' && nm[0] <= '9' && k < rows + 3)
			used[k] = 1;
	}
	PQclear(q);
	*out = 2;
	while (used[*out])
		(*out)++;
	free(used);
	return 0;
}

static int pg_unique_name(struct pg_store *s, const char *hostname, char out[64],
                          bool approved_only)
{
	char base[64];
	ctl_alloc_name_from_host(hostname, base);
	snprintf(out, 64, "%s", base);
	int t = pg_name_taken(s, out, 0, approved_only);
	if (t <= 0)
		return t;
	unsigned n = 2;
	t = pg_first_free_suffix(s, base, &n, approved_only);
	if (t)
		return t;
	/* A base cut to fit the suffix ("aaa...a-2") can still collide: walk. */
	for (;; n++) {
		ctl_alloc_name_suffix(base, n, out);
		t = pg_name_taken(s, out, 0, approved_only);
		if (t <= 0)
			return t;
		if (n > 1000000)
			return ctl_pg_fail(s, CTL_STORE_EFULL, "no free name for %s",
			                   base);
	}
}

/* Next free IPv4 offset after the persisted cursor; moves the cursor. */
static int pg_alloc_v4(struct pg_store *s, uint32_t *off_out)
{
	int rc;
	PGresult *q = ctl_pg_query(s, "v4 cursor",
	                           "SELECT v4_cursor FROM meta WHERE id = 1", NULL, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	int64_t start = rows ? ctl_pg_int(q, 0, 0) : 0;
	PQclear(q);
	if (!rows)
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	uint32_t off = (uint32_t)((uint64_t)start % CTL_ALLOC_V4_SIZE);
	for (uint32_t i = 0; i < CTL_ALLOC_V4_SIZE; i++) {
		struct pg_params p = {.n = 0};
		off = ctl_alloc_v4_next(off);
		ctl_pg_p_int(&p, (int64_t)CTL_V4_PREFIX + off);
		q = ctl_pg_query(s, "v4 allocation",
		                 "SELECT 1 FROM nodes WHERE ipv4 = $1", &p, &rc);
		if (!q)
			return rc;
		rows = PQntuples(q);
		PQclear(q);
		if (!rows)
			break;
		if (i + 1 == CTL_ALLOC_V4_SIZE)
			return ctl_pg_fail(s, CTL_STORE_EFULL, "no free IPv4 address");
	}
	struct pg_params p = {.n = 0};
	ctl_pg_p_int(&p, off);
	*off_out = off;
	return ctl_pg_cmd(s, "v4 cursor", "UPDATE meta SET v4_cursor = $1 WHERE id = 1",
	                  &p, NULL);
}

/* A pending row that holds name gives it up to an authorised node: it is
 * renamed (unique among all rows; it is approved under its new name). */
static int pg_pending_yield_name(struct pg_store *s, const char *name)
{
	struct pg_params p = {.n = 0};
	char host[CTL_HOSTNAME_MAX + 1] = "";
	int rc;

	ctl_pg_p_text(&p, name);
	PGresult *q = ctl_pg_query(s, "pending name check",
	                           "SELECT id, hostname FROM nodes WHERE name = $1 AND "
	                           "approved = 0",
	                           &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	int64_t id = rows ? ctl_pg_int(q, 0, 0) : 0;
	if (rows)
		ctl_pg_text(host, sizeof host, q, 0, 1);
	PQclear(q);
	if (!rows)
		return 0;
	char nn[64];
	rc = pg_unique_name(s, host, nn, false);
	if (rc)
		return rc;
	struct pg_params u = {.n = 0};
	ctl_pg_p_int(&u, id);
	ctl_pg_p_text(&u, nn);
	return ctl_pg_cmd(s, "pending rename", "UPDATE nodes SET name = $2 WHERE id = $1",
	                  &u, NULL);
}

/* Node and disco keys are unique among approved nodes: ECONFLICT when an
 * approved node of another machine holds one. A pending node that holds
 * one loses it to an authorised registration (its row is dropped; its
 * connection is told to retry) and is EPENDING_BUSY for a pending one. */
static int pg_keys_claim(struct pg_store *s, const struct ctl_store_reg *reg,
                         int64_t self_id, bool authorised)
{
	struct pg_params p = {.n = 0};
	int rc;

	ctl_pg_p_blob(&p, reg->node_key, CTL_KEY_LEN);
	ctl_pg_p_blob(&p, reg->disco_key, CTL_KEY_LEN);
	ctl_pg_p_int(&p, self_id);
	PGresult *q = ctl_pg_query(s, "key check",
	                           "SELECT MAX(approved) FROM nodes WHERE "
	                           "(node_key = $1 OR disco_key = $2) AND id <> $3",
	                           &p, &rc);
	if (!q)
		return rc;
	int held =
	    PQntuples(q) == 1 && !PQgetisnull(q, 0, 0) ? (int)ctl_pg_int(q, 0, 0) : -1;
	PQclear(q);
	if (held == 1)
		return ctl_pg_fail(s, CTL_STORE_ECONFLICT,
		                   "node or disco key in use by another node");
	if (held < 0)
		return 0;
	if (!authorised)
		return ctl_pg_fail(s, CTL_STORE_EPENDING_BUSY,
		                   "node or disco key held by a pending node");
	return ctl_pg_cmd(s, "pending key drop",
	                  "DELETE FROM nodes WHERE approved = 0 AND "
	                  "(node_key = $1 OR disco_key = $2) AND id <> $3",
	                  &p, NULL);
}

/* EPENDING_FULL when max pending nodes wait, or max_src came from src. */
static int pg_pending_room(struct pg_store *s, const struct ctl_store_reg *r)
{
	struct pg_params p = {.n = 0};
	int rc;

	ctl_pg_p_text(&p, r->source ? r->source : "");
	PGresult *q = ctl_pg_query(s, "pending count",
	                           "SELECT COUNT(*), COUNT(*) FILTER (WHERE source = $1) "
	                           "FROM nodes WHERE approved = 0",
	                           &p, &rc);
	if (!q)
		return rc;
	int64_t n = PQntuples(q) == 1 ? ctl_pg_int(q, 0, 0) : 0;
	int64_t src = PQntuples(q) == 1 ? ctl_pg_int(q, 0, 1) : 0;
	PQclear(q);
	if (r->max_pending && n >= (int64_t)r->max_pending)
		return ctl_pg_fail(s, CTL_STORE_EPENDING_FULL,
		                   "%lld nodes wait for approval (the limit)",
		                   (long long)n);
	if (r->max_per_source && r->source && r->source[0] &&
	    src >= (int64_t)r->max_per_source)
		return ctl_pg_fail(s, CTL_STORE_EPENDING_FULL,
		                   "%lld nodes from %s wait for approval (the limit)",
		                   (long long)src, r->source);
	return 0;
}

/* 1 when this machine's node was removed (and not registered since), and
 * key is NULL or an auth key that existed at the removal (say the reusable
 * key the node's launcher still passes): only a newer one brings it back. */
static int pg_machine_removed(struct pg_store *s, const uint8_t *mk,
                              const struct ctl_authkey *key)
{
	struct pg_params p = {.n = 0};
	int rc;

	ctl_pg_p_blob(&p, mk, CTL_KEY_LEN);
	PGresult *q = ctl_pg_query(s, "removed machine check",
	                           "SELECT key_seq FROM removed_machines WHERE "
	                           "machine_key = $1",
	                           &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	int64_t seq = rows ? ctl_pg_int(q, 0, 0) : 0;
	PQclear(q);
	return rows ? !key || key->id <= seq : 0;
}

/* 1 when key existed when node id was expired (only a newer key
 * re-authorises it). */
static int pg_key_after_expiry(struct pg_store *s, int64_t id,
                               const struct ctl_authkey *key)
{
	struct pg_params p = {.n = 0};
	int rc;

	ctl_pg_p_int(&p, id);
	PGresult *q = ctl_pg_query(
	    s, "expiry check", "SELECT expiry_key_seq FROM nodes WHERE id = $1", &p, &rc);
	if (!q)
		return rc;
	int rows = PQntuples(q);
	int64_t seq = rows ? ctl_pg_int(q, 0, 0) : 0;
	PQclear(q);
	if (!rows)
		return ctl_pg_fail(s, CTL_STORE_EIO, "expiry check: node %lld vanished",
		                   (long long)id);
	return key->id <= seq;
}

/* Gives node id, an ephemeral holder of a name being reused, the next
 * free suffix of its own hostname (a map change: peers and the node
 * itself get it as a rename): its registration, keys and addresses stay.
 * Inside a transaction. */
static int pg_reclaim_rename(struct pg_store *s, int64_t id, const char *host)
{
	char nn[64];
	int64_t v;
	int rc = pg_unique_name(s, host, nn, false);
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	if (rc)
		return rc;
	struct pg_params p = {.n = 0};
	ctl_pg_p_int(&p, id);
	ctl_pg_p_text(&p, nn);
	ctl_pg_p_int(&p, v);
	return ctl_pg_cmd(s, "name reclaim rename",
	                  "UPDATE nodes SET name = $2, version = $3 WHERE id = $1", &p,
	                  NULL);
}

/* Name reuse (struct ctl_store_reg.reclaim_ids): renames the first of the
 * candidates that is still an approved ephemeral node that registered the
 * hostname r's gives (the same name from it: a node that asked for "db-2"
 * never loses it to one asking for "db"), holds that name or a suffixed
 * form of it, and joined with key k, or (both owned) as k's user: the same
 * users row (user_id), so that a user removed and created again under the
 * old name owns none of the old nodes. Never another user's node. 0 also
 * when none qualifies. */
static int pg_name_reclaim(struct pg_store *s, const struct ctl_store_reg *r,
                           const struct ctl_authkey *k)
{
	char base[64], hb[64];
	ctl_alloc_name_from_host(r->hostname, base);
	for (unsigned i = 0; i < r->n_reclaim && i < CTL_RECLAIM_MAX; i++) {
		struct pg_params p = {.n = 0};
		char host[CTL_HOSTNAME_MAX + 1] = "";
		int rc;
		ctl_pg_p_int(&p, r->reclaim_ids[i]);
		ctl_pg_p_text(&p, base);
		ctl_pg_p_int(&p, k->id);
		ctl_pg_p_text(&p, k->user);
		/* the caller judged it gone from what it saw, but the node may
		 * have come back through another server since: that one holds
		 * it online, so it keeps its name */
		ctl_pg_p_int(&p, s->server_id);
		PGresult *q = ctl_pg_query(
		    s, "name reclaim check",
		    "SELECT hostname FROM nodes WHERE id = $1 AND (name = $2 OR "
		    "substr(name, 1, length($2) + 1) = $2 || '-') AND approved = 1 AND "
		    "ephemeral = 1 AND (auth_key_id = $3 OR ($4 <> '' AND \"user\" = $4 "
		    "AND user_id <> 0 AND user_id = (SELECT id FROM users WHERE name = "
		    "$4))) AND NOT (online = 1 AND online_server NOT IN (0, $5))",
		    &p, &rc);
		if (!q)
			return rc;
		int rows = PQntuples(q);
		if (rows)
			ctl_pg_text(host, sizeof host, q, 0, 0);
		PQclear(q);
		if (!rows)
			continue;
		ctl_alloc_name_from_host(host, hb);
		if (strcmp(hb, base) == 0)
			return pg_reclaim_rename(s, r->reclaim_ids[i], host);
	}
	return 0;
}

static int pg_node_insert(struct pg_store *s, const struct ctl_store_reg *r,
                          const struct ctl_authkey *k)
{
	struct ctl_meta m;
	char name[64];
	uint8_t v6[16];
	uint32_t off = 0;
	int64_t v;
	int rc = ctl_pg_get_meta(&s->base, &m);

	if (rc == 0 && !k)
		rc = pg_pending_room(s, r);
	if (rc == 0)
		rc = pg_unique_name(s, r->hostname, name, k != NULL);
	if (rc == 0 && k)
		rc = pg_pending_yield_name(s, name);
	if (rc == 0)
		rc = pg_alloc_v4(s, &off);
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	if (rc)
		return rc;
	ctl_alloc_v6(m.ula, CTL_V4_PREFIX + off, v6);
	struct pg_params p = {.n = 0};
	ctl_pg_p_blob(&p, r->machine_key, CTL_KEY_LEN);
	ctl_pg_p_blob(&p, r->node_key, CTL_KEY_LEN);
	ctl_pg_p_blob(&p, r->disco_key, CTL_KEY_LEN);
	ctl_pg_p_text(&p, r->hostname ? r->hostname : "");
	ctl_pg_p_text(&p, name);
	ctl_pg_p_int(&p, (int64_t)CTL_V4_PREFIX + off);
	ctl_pg_p_blob(&p, v6, sizeof v6);
	if (k)
		ctl_pg_p_int(&p, k->id);
	else
		ctl_pg_p_text(&p, NULL); /* admitted by an admin later: no key */
	ctl_pg_p_int(&p, k != NULL);
	ctl_pg_p_int(&p, (k && k->ephemeral) || r->ephemeral);
	ctl_pg_p_text(&p, k ? k->tags : "");
	ctl_pg_p_int(&p, r->now);
	ctl_pg_p_int(&p, v);
	ctl_pg_p_text(&p, r->source ? r->source : "");
	ctl_pg_p_text(&p, k ? k->user : "");
	rc = ctl_pg_cmd(s, "node insert",
	                "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, "
	                "name, ipv4, ipv6, auth_key_id, approved, ephemeral, tags, "
	                "created, last_seen, version, source, \"user\", user_id) "
	                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bigint, $9, $10, $11, "
	                "$12, $12, $13, $14, $15, COALESCE((SELECT id FROM users WHERE "
	                "name = $15), 0))",
	                &p, NULL);
	if (rc || !k)
		return rc;
	struct pg_params pm = {.n = 0};
	ctl_pg_p_blob(&pm, r->machine_key, CTL_KEY_LEN);
	return ctl_pg_cmd(s, "removed machine",
	                  "DELETE FROM removed_machines WHERE machine_key = $1", &pm,
	                  NULL);
}

/* A known machine: new keys and hostname; a secret re-authorises it. */
static int pg_node_refresh(struct pg_store *s, const struct ctl_store_reg *r,
                           const struct ctl_node *old, const struct ctl_authkey *k)
{
	bool keys = memcmp(old->node_key, r->node_key, CTL_KEY_LEN) != 0 ||
	            memcmp(old->disco_key, r->disco_key, CTL_KEY_LEN) != 0;
	int64_t v = old->version;
	int rc = 0;

	if (keys || k)
		rc = ctl_pg_bump(s, &v);
	if (rc)
		return rc;
	struct pg_params p = {.n = 0};
	ctl_pg_p_int(&p, old->id);
	ctl_pg_p_blob(&p, r->node_key, CTL_KEY_LEN);
	ctl_pg_p_blob(&p, r->disco_key, CTL_KEY_LEN);
	ctl_pg_p_text(&p, r->hostname ? r->hostname : "");
	ctl_pg_p_int(&p, r->now);
	ctl_pg_p_int(&p, v);
	rc = ctl_pg_cmd(s, "node refresh",
	                "UPDATE nodes SET node_key = $2, disco_key = $3, hostname = $4, "
	                "last_seen = $5, version = $6 WHERE id = $1",
	                &p, NULL);
	if (rc || !k)
		return rc;
	/* The key's owner and tags replace the node's: it is who the key
	 * says from now on. */
	struct pg_params a = {.n = 0};
	ctl_pg_p_int(&a, old->id);
	ctl_pg_p_int(&a, k->id);
	ctl_pg_p_int(&a, k->ephemeral || r->ephemeral);
	ctl_pg_p_text(&a, k->tags);
	ctl_pg_p_text(&a, k->user);
	return ctl_pg_cmd(s, "node reauth",
	                  "UPDATE nodes SET approved = 1, expiry = 0, auth_key_id = $2, "
	                  "ephemeral = $3, tags = $4, \"user\" = $5, user_id = "
	                  "COALESCE((SELECT id FROM users WHERE name = $5), 0) "
	                  "WHERE id = $1",
	                  &a, NULL);
}

/* Inside register's transaction: online now, if approved and not expired
 * (a map change only when it was offline), held by this server. */
static int pg_node_set_online(struct pg_store *s, const struct ctl_store_reg *r)
{
	struct ctl_node *n = malloc(sizeof *n);
	if (!n)
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	int rc = ctl_pg_node_get(&s->base, CTL_NODE_BY_MACHINE_KEY, r->machine_key, n);
	if (rc == 0 && n->approved && !(n->expiry && n->expiry <= r->now)) {
		int64_t v = n->version;
		if (!n->online)
			rc = ctl_pg_bump(s, &v);
		if (rc == 0) {
			struct pg_params p = {.n = 0};
			ctl_pg_p_int(&p, n->id);
			ctl_pg_p_int(&p, r->now);
			ctl_pg_p_int(&p, v);
			ctl_pg_p_int(&p, s->server_id);
			rc = ctl_pg_cmd(s, "node online",
			                "UPDATE nodes SET online = 1, last_seen = $2, "
			                "version = $3, online_server = $4 WHERE id = $1",
			                &p, NULL);
		}
	}
	free(n);
	return rc;
}

/* The checks of a registration before anything is written (the same order
 * as SQLite's): *use is the key spent, NULL when none is. */
static int pg_reg_admit(struct pg_store *s, const struct ctl_store_reg *r, bool isnew,
                        const struct ctl_node *old, bool good, struct ctl_authkey *k,
                        const struct ctl_authkey **use)
{
	int rc = 0;
	*use = NULL;
	if (r->auth_secret && !good) {
		rc = ctl_pg_key_use_tx(s, r->auth_secret, r->now, k);
		*use = k;
		/* A retry with the single-use key this very machine was
		 * registered with (say the first answer was lost) resumes. */
		if (rc == CTL_STORE_EKEY_USED && !isnew && k->id == old->auth_key_id)
			rc = 0, *use = NULL;
	}
	if (rc == 0 && isnew) {
		rc = pg_machine_removed(s, r->machine_key, *use);
		if (rc == 1)
			rc = ctl_pg_fail(s, CTL_STORE_EREMOVED,
			                 "register: this machine's node was removed (an "
			                 "auth key made after the removal readmits it)");
		else if (rc == 0 && !*use && r->no_pending)
			rc = ctl_pg_fail(s, CTL_STORE_EAUTH_REQUIRED,
			                 "register: no auth key and pending is off");
	}
	/* No pending: a row left pending from before waits no longer. */
	if (rc == 0 && !isnew && !old->approved && !*use && r->no_pending)
		rc = ctl_pg_fail(s, CTL_STORE_EAUTH_REQUIRED,
		                 "register: no auth key and pending is off");
	/* An expired node comes back only with a key made after its expiry
	 * (not the reusable one its launcher still passes). */
	if (rc == 0 && *use && !isnew && old->approved && old->expiry &&
	    old->expiry <= r->now) {
		rc = pg_key_after_expiry(s, old->id, *use);
		if (rc == 1)
			rc = ctl_pg_fail(s, CTL_STORE_EEXPIRED,
			                 "register: node expired; the auth key is older "
			                 "than the expiry");
	}
	return rc;
}

int ctl_pg_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                         struct ctl_node *out, bool *created)
{
	static const uint8_t zero[CTL_KEY_LEN];
	struct pg_store *s = PG(st);
	struct ctl_authkey k;
	const struct ctl_authkey *use = NULL;
	struct ctl_node *old = malloc(sizeof *old);
	int rc;

	if (!old)
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	if (!memcmp(r->machine_key, zero, CTL_KEY_LEN) ||
	    !memcmp(r->node_key, zero, CTL_KEY_LEN))
		rc = ctl_pg_fail(s, CTL_STORE_EINVAL,
		                 "register: zero machine or node key");
	else if (!ctl_pg_len_ok(r->hostname, CTL_HOSTNAME_MAX))
		rc = ctl_pg_fail(s, CTL_STORE_EINVAL, "register: hostname longer than %d",
		                 CTL_HOSTNAME_MAX);
	else
		rc = ctl_pg_begin(s);
	if (rc) {
		free(old);
		return rc;
	}
	rc = ctl_pg_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, old);
	bool isnew = rc == CTL_STORE_ENOTFOUND;
	if (isnew)
		rc = 0;
	/* An approved, unexpired node needs no key: it is not spent. */
	bool good =
	    !isnew && rc == 0 && old->approved && !(old->expiry && old->expiry <= r->now);
	if (rc == 0)
		rc = pg_reg_admit(s, r, isnew, old, good, &k, &use);
	if (rc == 0 && isnew && use && (r->ephemeral || use->ephemeral) && r->n_reclaim)
		rc = pg_name_reclaim(s, r, use);
	/* Pending or expired without a valid key: nothing is stored. */
	bool write = isnew || good || use;
	if (rc == 0 && write)
		rc = pg_keys_claim(s, r, isnew ? 0 : old->id, good || use);
	if (rc == 0 && write)
		rc = isnew ? pg_node_insert(s, r, use) : pg_node_refresh(s, r, old, use);
	if (rc == 0 && r->set_online)
		rc = pg_node_set_online(s, r);
	if (rc == 0)
		rc = ctl_pg_fault(s, "register:before-commit");
	if (rc == 0 && out)
		rc = ctl_pg_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, out);
	rc = ctl_pg_end(s, rc);
	free(old);
	if (rc == 0 && created)
		*created = isnew;
	return rc;
}
