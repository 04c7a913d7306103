/* The PostgreSQL control store: users (the owners of nodes, through the
 * auth key a node joins with) and the access policy (one row: the text
 * byte for byte, its revision and when it was set), as
 * store_sqlite_users.c. */
#include "core/policy/policy.h"
#include "servers/control/store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- users ----------------------------------------------------------- */

static int pg_user_name_err(struct pg_store *s, const char *name)
{
	return ctl_pg_fail(s, CTL_STORE_EINVAL,
	                   "user name \"%.64s\": expected 1 to 63 of a-z, 0-9, '.', '_' "
	                   "and '-', starting with a letter or a digit (e.g. alice)",
	                   name ? name : "");
}

int ctl_pg_user_exists_tx(struct pg_store *s, const char *name)
{
	static const char *const sel = "SELECT 1 FROM users WHERE name = $1";
	if (!ctl_store_user_name_ok(name))
		return pg_user_name_err(s, name);
	struct pg_params p = {0};
	int rc;
	ctl_pg_p_text(&p, name);
	PGresult *r = ctl_pg_query(s, "user lookup", sel, &p, &rc);
	if (!r)
		return rc;
	bool found = PQntuples(r) > 0;
	PQclear(r);
	if (!found)
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                   "no user %s: create it first (users create %s)", name,
		                   name);
	return 0;
}

int ctl_pg_user_create(struct ctl_store *st, const char *name, int64_t now,
                       struct ctl_user *out)
{
	static const char *const ins =
	    "INSERT INTO users (name, created) VALUES ($1, $2) RETURNING id";
	struct pg_store *s = PG(st);
	if (!ctl_store_user_name_ok(name))
		return pg_user_name_err(s, name);
	struct pg_params p = {0};
	int rc;
	ctl_pg_p_text(&p, name);
	ctl_pg_p_int(&p, now);
	/* In a transaction although it is one statement: outside one, a
	 * connection lost after the INSERT committed runs it once more
	 * (ctl_pg_query), which would report "exists already" for the user
	 * just created. users.name's unique index settles a race. */
	if ((rc = ctl_pg_begin(s)) != 0)
		return rc;
	PGresult *r = ctl_pg_query(s, "user create", ins, &p, &rc);
	if (rc == CTL_STORE_EEXISTS)
		ctl_pg_fail(s, rc, "user %s exists already", name);
	int64_t id = r ? ctl_pg_int(r, 0, 0) : 0;
	PQclear(r);
	if ((rc = ctl_pg_end(s, r ? 0 : rc)) != 0)
		return rc;
	if (out) {
		memset(out, 0, sizeof *out);
		out->id = id;
		snprintf(out->name, sizeof out->name, "%s", name);
		out->created = now;
	}
	return 0;
}

int ctl_pg_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n)
{
	/* COLLATE "C": byte order, as SQLite sorts, whatever the database's
	 * locale ('.', '_' and '-' are not ignored). */
	static const char *const sel =
	    "SELECT u.id, u.name, u.created,"
	    " (SELECT COUNT(*) FROM nodes WHERE nodes.\"user\" = u.name)"
	    " FROM users u ORDER BY u.name COLLATE \"C\"";
	struct pg_store *s = PG(st);
	int rc;

	*out = NULL;
	*n = 0;
	PGresult *r = ctl_pg_query(s, "user list", sel, NULL, &rc);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	struct ctl_user *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < rows; i++) {
		v[i].id = ctl_pg_int(r, i, 0);
		ctl_pg_text(v[i].name, sizeof v[i].name, r, i, 1);
		v[i].created = ctl_pg_int(r, i, 2);
		v[i].n_nodes = ctl_pg_int(r, i, 3);
	}
	PQclear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

/* Up to 8 ids of a result's first column as "3, 7" (", ..." after). */
static void pg_id_list(const PGresult *r, char *ids, size_t cap)
{
	size_t o = 0;
	int rows = PQntuples(r);
	ids[0] = 0;
	for (int i = 0; i < rows && o < cap; i++) {
		int w = i < 8 ? snprintf(ids + o, cap - o, "%s%lld", i ? ", " : "",
		                         (long long)ctl_pg_int(r, i, 0))
		              : snprintf(ids + o, cap - o, ", ...");
		o += w > 0 ? (size_t)w : 0;
		if (i == 8)
			break;
	}
}

/* What a user still owns: nodes, and auth keys not revoked (up to 8 of
 * their ids as "3, 7" in ids). */
static int pg_user_owns(struct pg_store *s, const char *name, int64_t *nodes,
                        int64_t *keys, char *ids, size_t cap)
{
	static const char *const cnt = "SELECT COUNT(*) FROM nodes WHERE \"user\" = $1";
	static const char *const sel =
	    "SELECT id FROM auth_keys WHERE \"user\" = $1 AND revoked = 0 ORDER BY id";
	struct pg_params p = {0};
	int rc;
	ctl_pg_p_text(&p, name);
	PGresult *r = ctl_pg_query(s, "user nodes", cnt, &p, &rc);
	if (!r)
		return rc;
	*nodes = ctl_pg_int(r, 0, 0);
	PQclear(r);
	r = ctl_pg_query(s, "user keys", sel, &p, &rc);
	if (!r)
		return rc;
	*keys = PQntuples(r);
	pg_id_list(r, ids, cap);
	PQclear(r);
	return 0;
}

/* One transaction under the meta lock: a node joining with one of the
 * user's keys, or a key made for it, cannot slip in between the check
 * and the delete. */
int ctl_pg_user_remove(struct ctl_store *st, const char *name)
{
	static const char *const del = "DELETE FROM users WHERE name = $1";
	struct pg_store *s = PG(st);
	int64_t nodes = 0, keys = 0;
	char ids[96];

	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_user_exists_tx(s, name);
	if (rc == CTL_STORE_ENOTFOUND)
		ctl_pg_fail(s, rc, "no user %.64s (see users list)", name);
	if (rc == 0)
		rc = pg_user_owns(s, name, &nodes, &keys, ids, sizeof ids);
	if (rc == 0 && (nodes || keys))
		rc = ctl_pg_fail(s, CTL_STORE_EEXISTS,
		                 "user %s still owns %lld node%s and %lld auth key%s not "
		                 "revoked%s%s%s: "
		                 "%s first",
		                 name, (long long)nodes, nodes == 1 ? "" : "s",
		                 (long long)keys, keys == 1 ? "" : "s", keys ? " (" : "",
		                 keys ? ids : "", keys ? ")" : "",
		                 nodes && keys ? "remove its nodes and revoke its keys"
		                 : nodes       ? "remove its nodes"
		                               : "revoke its keys");
	if (rc == 0) {
		struct pg_params p = {0};
		ctl_pg_p_text(&p, name);
		rc = ctl_pg_cmd(s, "user remove", del, &p, NULL);
	}
	return ctl_pg_end(s, rc);
}

int ctl_pg_node_owners(struct ctl_store *st, int64_t now,
                       int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg)
{
	static const char *const sel =
	    "SELECT id, name, \"user\", tags, ipv4, ipv6 FROM nodes"
	    " WHERE approved = 1 AND (expiry = 0 OR expiry > $1) ORDER BY id";
	struct pg_store *s = PG(st);
	struct pg_params p = {0};
	int rc;
	ctl_pg_p_int(&p, now);
	PGresult *r = ctl_pg_query(s, "node owners", sel, &p, &rc);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	for (int i = 0; rc == 0 && i < rows; i++) {
		uint8_t v6[16];
		ctl_pg_blob(v6, sizeof v6, r, i, 5); /* zeros if not 16 bytes */
		struct ctl_node_owner o = {
		    .id = ctl_pg_int(r, i, 0),
		    .name = PQgetvalue(r, i, 1),
		    .user = PQgetvalue(r, i, 2),
		    .tags = PQgetvalue(r, i, 3),
		    .ipv4 = (uint32_t)ctl_pg_int(r, i, 4),
		    .ipv6 = v6,
		};
		rc = fn(arg, &o);
	}
	PQclear(r);
	return rc;
}

/* ---- the policy ------------------------------------------------------ */

/* A bytea column (hex output) as a malloc'ed NUL-terminated copy of at
 * most max bytes; NULL if it is not hex output, too long, or no memory. */
static char *pg_bytea_dup(const PGresult *r, int row, int col, size_t max, size_t *len)
{
	const char *v = PQgetvalue(r, row, col);
	size_t n = (size_t)PQgetlength(r, row, col);
	if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) % 2 || (n - 2) / 2 > max)
		return NULL;
	size_t out_n = 0;
	unsigned char *b = PQunescapeBytea((const unsigned char *)v, &out_n);
	if (!b || out_n != (n - 2) / 2) {
		PQfreemem(b);
		return NULL;
	}
	char *t = malloc(out_n + 1);
	if (t) {
		if (out_n)
			memcpy(t, b, out_n);
		t[out_n] = 0;
		*len = out_n;
	}
	PQfreemem(b);
	return t;
}

int ctl_pg_policy_get(struct ctl_store *st, struct ctl_policy_rec *out)
{
	static const char *const sel =
	    "SELECT text, revision, set_at FROM policy WHERE id = 1";
	struct pg_store *s = PG(st);
	int rc;
	memset(out, 0, sizeof *out);
	if (ctl_pg_fault(s, "policy:read") < 0)
		return CTL_STORE_EIO;
	PGresult *r = ctl_pg_query(s, "policy", sel, NULL, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "no policy is set");
	}
	out->text = pg_bytea_dup(r, 0, 0, POLICY_MAX_BYTES, &out->len);
	if (out->text) {
		out->revision = ctl_pg_int(r, 0, 1);
		out->set_at = ctl_pg_int(r, 0, 2);
	} else {
		rc =
		    ctl_pg_fail(s, CTL_STORE_EIO,
		                "policy: the stored text is unreadable or over %d bytes; "
		                "set the policy again",
		                POLICY_MAX_BYTES);
	}
	PQclear(r);
	return rc;
}

/* Inside a transaction: the next revision (counted in meta, so it keeps
 * counting across a clear) and the row itself. */
static int pg_policy_write(struct pg_store *s, const char *text, size_t len, int64_t now,
                           int64_t *rev)
{
	static const char *const next =
	    "UPDATE meta SET policy_revision = policy_revision + 1 WHERE id = 1"
	    " RETURNING policy_revision";
	static const char *const put =
	    "INSERT INTO policy (id, text, revision, set_at) VALUES (1, $1, $2, $3)"
	    " ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text,"
	    " revision = EXCLUDED.revision, set_at = EXCLUDED.set_at";
	int rc;
	PGresult *r = ctl_pg_query(s, "policy revision", next, NULL, &rc);
	if (!r)
		return rc;
	bool found = PQntuples(r) == 1;
	*rev = found ? ctl_pg_int(r, 0, 0) : 0;
	PQclear(r);
	if (!found)
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	struct pg_params p = {0};
	ctl_pg_p_blob(&p, (const uint8_t *)text, len);
	ctl_pg_p_int(&p, *rev);
	ctl_pg_p_int(&p, now);
	return ctl_pg_cmd(s, "policy set", put, &p, NULL);
}

int ctl_pg_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                      int64_t *revision)
{
	struct pg_store *s = PG(st);
	int64_t rev = 0, v;

	if (!text || len == 0)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "policy: empty");
	if (len > POLICY_MAX_BYTES)
		return ctl_pg_fail(s, CTL_STORE_EINVAL,
		                   "policy: %zu bytes, over the limit of %d", len,
		                   POLICY_MAX_BYTES);
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = pg_policy_write(s, text, len, now, &rev);
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	if (rc == 0)
		rc = ctl_pg_fault(s, "policy:before-commit");
	rc = ctl_pg_end(s, rc);
	if (rc == 0 && revision)
		*revision = rev;
	return rc;
}

int ctl_pg_policy_clear(struct ctl_store *st)
{
	static const char *const del = "DELETE FROM policy WHERE id = 1";
	struct pg_store *s = PG(st);
	int64_t rows = 0, v;
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_cmd(s, "policy clear", del, NULL, &rows);
	if (rc == 0 && rows == 0)
		rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "no policy is set");
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	if (rc == 0)
		rc = ctl_pg_fault(s, "policy:before-commit");
	return ctl_pg_end(s, rc);
}
