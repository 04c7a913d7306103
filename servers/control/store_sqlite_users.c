/* The SQLite control store: users (the owners of nodes, through the auth
 * key a node joins with) and the access policy (one row: the text byte for
 * byte, its revision and when it was set). */
#include "core/policy/policy.h"
#include "servers/control/store_sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- users ----------------------------------------------------------- */

static int sq_user_name_err(struct sq_store *s, const char *name)
{
	return ctl_sq_fail(s, CTL_STORE_EINVAL,
	                   "user name \"%.64s\": expected 1 to 63 of a-z, 0-9, '.', '_' "
	                   "and '-', starting with a letter or a digit (e.g. alice)",
	                   name ? name : "");
}

int ctl_sq_user_exists_tx(struct sq_store *s, const char *name)
{
	if (!ctl_store_user_name_ok(name))
		return sq_user_name_err(s, name);
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT 1 FROM users WHERE name = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(q);
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
		                   "no user %s: create it first (users create %s)", name,
		                   name);
	return ctl_sq_dberr(s, "user lookup");
}

int ctl_sq_user_create(struct ctl_store *st, const char *name, int64_t now,
                       struct ctl_user *out)
{
	struct sq_store *s = SQ(st);
	if (!ctl_store_user_name_ok(name))
		return sq_user_name_err(s, name);
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "INSERT INTO users (name, created) VALUES (?1, ?2)");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, now);
	int rc = ctl_sq_step_done(s, q, "user create");
	if (rc == CTL_STORE_EEXISTS)
		return ctl_sq_fail(s, rc, "user %s exists already", name);
	if (rc == 0 && out) {
		memset(out, 0, sizeof *out);
		out->id = sqlite3_last_insert_rowid(s->db);
		snprintf(out->name, sizeof out->name, "%s", name);
		out->created = now;
	}
	return rc;
}

int ctl_sq_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_user *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT u.id, u.name, u.created, "
	                   "(SELECT COUNT(*) FROM nodes WHERE nodes.user = u.name) "
	                   "FROM users u ORDER BY u.name");
	if (!q)
		return CTL_STORE_EIO;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			struct ctl_user *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		struct ctl_user *u = &v[cnt++];
		memset(u, 0, sizeof *u);
		u->id = sqlite3_column_int64(q, 0);
		ctl_sq_text(u->name, sizeof u->name, q, 1);
		u->created = sqlite3_column_int64(q, 2);
		u->n_nodes = sqlite3_column_int64(q, 3);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "user list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* What a user still owns: nodes, and auth keys not revoked (up to 8 of
 * their ids as "3, 7" in ids). */
static int sq_user_owns(struct sq_store *s, const char *name, int64_t *nodes,
                        int64_t *keys, char *ids, size_t cap)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT COUNT(*) FROM nodes WHERE user = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(q);
	*nodes = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (r != SQLITE_ROW)
		return ctl_sq_dberr(s, "user nodes");
	q = ctl_sq_prep(s, "SELECT id FROM auth_keys WHERE user = ?1 AND revoked = 0 "
	                   "ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	size_t o = 0;
	ids[0] = 0;
	*keys = 0;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (*keys < 8 && o < cap) {
			int w = snprintf(ids + o, cap - o, "%s%lld", *keys ? ", " : "",
			                 (long long)sqlite3_column_int64(q, 0));
			o += w > 0 ? (size_t)w : 0;
		} else if (*keys == 8 && o < cap) {
			snprintf(ids + o, cap - o, ", ...");
			o = cap;
		}
		(*keys)++;
	}
	ctl_sq_done(q);
	return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "user keys");
}

int ctl_sq_user_remove(struct ctl_store *st, const char *name)
{
	struct sq_store *s = SQ(st);
	int64_t nodes = 0, keys = 0;
	char ids[96];

	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = ctl_sq_user_exists_tx(s, name);
	if (rc == CTL_STORE_ENOTFOUND)
		ctl_sq_fail(s, rc, "no user %.64s (see users list)", name);
	if (rc == 0)
		rc = sq_user_owns(s, name, &nodes, &keys, ids, sizeof ids);
	if (rc == 0 && (nodes || keys))
		rc = ctl_sq_fail(s, CTL_STORE_EEXISTS,
		                 "user %s still owns %lld node%s and %lld auth key%s not "
		                 "revoked%s%s%s: "
		                 "%s first",
		                 name, (long long)nodes, nodes == 1 ? "" : "s",
		                 (long long)keys, keys == 1 ? "" : "s", keys ? " (" : "",
		                 keys ? ids : "", keys ? ")" : "",
		                 nodes && keys ? "remove its nodes and revoke its keys"
		                 : nodes       ? "remove its nodes"
		                               : "revoke its keys");
	sqlite3_stmt *q = rc ? NULL : ctl_sq_prep(s, "DELETE FROM users WHERE name = ?1");
	if (q) {
		sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
		rc = ctl_sq_step_done(s, q, "user remove");
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	return ctl_sq_end(s, rc);
}

int ctl_sq_node_owners(struct ctl_store *st, int64_t now,
                       int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg)
{
	struct sq_store *s = SQ(st);
	static const uint8_t zero[16];
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT id, name, user, tags, ipv4, ipv6 FROM nodes "
	                   "WHERE approved = 1 AND (expiry = 0 OR "
	                   "expiry > ?1) ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, now);
	int r, rc = 0;
	while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *nm = sqlite3_column_text(q, 1);
		const unsigned char *us = sqlite3_column_text(q, 2);
		const unsigned char *tg = sqlite3_column_text(q, 3);
		const void *v6 = sqlite3_column_blob(q, 5);
		struct ctl_node_owner o = {
		    .id = sqlite3_column_int64(q, 0),
		    .name = nm ? (const char *)nm : "",
		    .user = us ? (const char *)us : "",
		    .tags = tg ? (const char *)tg : "",
		    .ipv4 = (uint32_t)sqlite3_column_int64(q, 4),
		    .ipv6 = v6 && sqlite3_column_bytes(q, 5) == 16 ? v6 : zero,
		};
		rc = fn(arg, &o);
	}
	ctl_sq_done(q);
	if (rc)
		return rc;
	return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "node owners");
}

/* ---- the policy ------------------------------------------------------ */

int ctl_sq_policy_get(struct ctl_store *st, struct ctl_policy_rec *out)
{
	struct sq_store *s = SQ(st);
	memset(out, 0, sizeof *out);
	if (ctl_sq_fault(s, "policy:read") < 0)
		return CTL_STORE_EIO;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT text, revision, set_at FROM policy WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q), rc = 0;
	if (r == SQLITE_ROW) {
		const void *b = sqlite3_column_blob(q, 0);
		size_t len = (size_t)sqlite3_column_bytes(q, 0);
		out->text = malloc(len + 1);
		if (out->text) {
			if (len)
				memcpy(out->text, b, len);
			out->text[len] = 0;
			out->len = len;
			out->revision = sqlite3_column_int64(q, 1);
			out->set_at = sqlite3_column_int64(q, 2);
		} else {
			rc = ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
		}
	} else if (r == SQLITE_DONE) {
		rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "no policy is set");
	} else {
		rc = ctl_sq_dberr(s, "policy");
	}
	ctl_sq_done(q);
	return rc;
}

int ctl_sq_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                      int64_t *revision)
{
	struct sq_store *s = SQ(st);
	int64_t rev = 0, v;

	if (!text || len == 0)
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "policy: empty");
	if (len > POLICY_MAX_BYTES)
		return ctl_sq_fail(s, CTL_STORE_EINVAL,
		                   "policy: %zu bytes, over the limit of %d", len,
		                   POLICY_MAX_BYTES);
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q = ctl_sq_prep(s, "UPDATE meta SET policy_revision = "
	                                 "policy_revision + 1 WHERE id = 1 "
	                                 "RETURNING policy_revision");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW)
		rev = sqlite3_column_int64(q, 0);
	ctl_sq_done(q);
	if (r == SQLITE_DONE)
		rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
		                 "store not initialised (run init)");
	else if (r != SQLITE_ROW)
		rc = ctl_sq_dberr(s, "policy revision");
	q = rc ? NULL
	       : ctl_sq_prep(s, "INSERT OR REPLACE INTO policy (id, text, revision, "
	                        "set_at) VALUES (1, ?1, ?2, ?3)");
	if (q) {
		sqlite3_bind_blob(q, 1, text, (int)len, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 2, rev);
		sqlite3_bind_int64(q, 3, now);
		rc = ctl_sq_step_done(s, q, "policy set");
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	if (rc == 0)
		rc = ctl_sq_bump(s, &v);
	if (rc == 0)
		rc = ctl_sq_fault(s, "policy:before-commit");
	rc = ctl_sq_end(s, rc);
	if (rc == 0 && revision)
		*revision = rev;
	return rc;
}

int ctl_sq_policy_clear(struct ctl_store *st)
{
	struct sq_store *s = SQ(st);
	int64_t v;
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q = ctl_sq_prep(s, "DELETE FROM policy WHERE id = 1");
	rc = q ? ctl_sq_step_done(s, q, "policy clear") : CTL_STORE_EIO;
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "no policy is set");
	if (rc == 0)
		rc = ctl_sq_bump(s, &v);
	if (rc == 0)
		rc = ctl_sq_fault(s, "policy:before-commit");
	return ctl_sq_end(s, rc);
}
