/* The control store on SQLite: one file DIR/control.db in WAL mode. Every
 * change that takes more than one statement runs inside BEGIN IMMEDIATE ...
 * COMMIT and is rolled back on any error, so a crash leaves either all of it
 * or none. Statements are prepared once (cached by their SQL text's address)
 * and only ever see values through bound parameters.
 *
 * Durability: synchronous=FULL, so a committed registration survives a power
 * cut as well as a crash of the process. The batches of volatile fields
 * (endpoints, home relay, online, last seen: store_sqlite_volatile.c) are
 * the exception: written with synchronous=NORMAL, they survive a crash of
 * the process but a power cut may lose the last ones.
 *
 * This file: plumbing, open, migrations, meta and the ops table; auth keys
 * are in store_sqlite_keys.c, API keys in store_sqlite_apikeys.c, nodes in
 * store_sqlite_nodes.c, users and the policy in store_sqlite_users.c. */
#include "servers/control/store_sqlite_int.h"
#include "servers/control/store_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The schema is ctl_migrations[v].sqlite (store_schema.c). */

/* ---- plumbing -------------------------------------------------------- */

int ctl_sq_fail(struct sq_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->base.errmsg, sizeof s->base.errmsg, fmt, ap);
	va_end(ap);
	return code;
}

int ctl_sq_dberr(struct sq_store *s, const char *what)
{
	return ctl_sq_fail(s, CTL_STORE_EIO, "%s: %s", what, sqlite3_errmsg(s->db));
}

sqlite3_stmt *ctl_sq_prep(struct sq_store *s, const char *sql)
{
	int i;
	for (i = 0; i < SQ_CACHE && s->cache[i].sql; i++)
		if (s->cache[i].sql == sql)
			return s->cache[i].st;
	sqlite3_stmt *st = NULL;
	if (i == SQ_CACHE) { /* a programming error: raise SQ_CACHE */
		ctl_sq_fail(s, CTL_STORE_EIO, "statement cache full");
		return NULL;
	}
	if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
	    SQLITE_OK) {
		ctl_sq_dberr(s, "prepare");
		return NULL;
	}
	s->cache[i].sql = sql;
	s->cache[i].st = st;
	return st;
}

void ctl_sq_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int ctl_sq_exec(struct sq_store *s, const char *sql)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return ctl_sq_dberr(s, sql);
	return 0;
}

int ctl_sq_begin(struct sq_store *s)
{
	return ctl_sq_exec(s, "BEGIN IMMEDIATE");
}

/* Ends a transaction: COMMIT if rc == 0 (a failed COMMIT rolls back and
 * returns EIO), else ROLLBACK keeping rc and its message. */
int ctl_sq_end(struct sq_store *s, int rc)
{
	if (rc == 0) {
		rc = ctl_sq_exec(s, "COMMIT");
		if (rc == 0)
			return 0;
	}
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int ctl_sq_fault(struct sq_store *s, const char *point)
{
	if (s->fault && s->fault(point, s->fault_arg))
		return ctl_sq_fail(s, CTL_STORE_EIO, "fault injected at %s", point);
	return 0;
}

/* Runs a statement expecting no rows (or ignoring them). */
int ctl_sq_step_done(struct sq_store *s, sqlite3_stmt *st, const char *what)
{
	int r = sqlite3_step(st), rc = 0;
	int ext = sqlite3_extended_errcode(s->db);

	if (r == SQLITE_DONE || r == SQLITE_ROW)
		rc = 0;
	else if (ext != SQLITE_CONSTRAINT_UNIQUE && ext != SQLITE_CONSTRAINT_PRIMARYKEY)
		rc = ctl_sq_dberr(s, what);
	else if (strstr(sqlite3_errmsg(s->db), "node_key"))
		rc = ctl_sq_fail(s, CTL_STORE_ECONFLICT, "%s: node key in use", what);
	else
		rc = ctl_sq_fail(s, CTL_STORE_EEXISTS, "%s: %s", what,
		                 sqlite3_errmsg(s->db));
	ctl_sq_done(st);
	return rc;
}

void ctl_sq_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

void ctl_sq_blob(uint8_t *dst, size_t len, sqlite3_stmt *st, int col)
{
	const void *b = sqlite3_column_blob(st, col);
	if (b && (size_t)sqlite3_column_bytes(st, col) == len)
		memcpy(dst, b, len);
	else
		memset(dst, 0, len);
}

bool ctl_sq_len_ok(const char *t, size_t max)
{
	return !t || strnlen(t, max + 1) <= max;
}

/* Bumps the map version; the new value in *v. */
int ctl_sq_bump(struct sq_store *s, int64_t *v)
{
	sqlite3_stmt *st = ctl_sq_prep(s, "UPDATE meta SET map_version = map_version + 1 "
	                                  "WHERE id = 1 RETURNING map_version");
	if (!st)
		return CTL_STORE_EIO;
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	ctl_sq_done(st);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	return ctl_sq_dberr(s, "map version");
}

/* ---- open / migrate -------------------------------------------------- */

static int sq_pragma_int(struct sq_store *s, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return ctl_sq_dberr(s, sql);
	int r = sqlite3_step(st);
	*out = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return r == SQLITE_ROW ? 0 : ctl_sq_dberr(s, sql);
}

static int sq_wal(struct sq_store *s)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) !=
	    SQLITE_OK)
		return ctl_sq_dberr(s, "journal_mode");
	const unsigned char *mode = NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		mode = sqlite3_column_text(st, 0);
	bool ok = mode && !strcmp((const char *)mode, "wal");
	sqlite3_finalize(st);
	return ok ? 0 : ctl_sq_fail(s, CTL_STORE_EIO, "cannot switch to WAL mode");
}

static int sq_migrate(struct sq_store *s)
{
	int v, rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = sq_pragma_int(s, "PRAGMA user_version", &v);
	if (rc == 0 && v > ctl_schema_version)
		rc = ctl_sq_fail(s, CTL_STORE_ESCHEMA,
		                 "schema version %d is newer than this program's %d", v,
		                 ctl_schema_version);
	for (; rc == 0 && v < ctl_schema_version; v++) {
		char pragma[48];
		rc = ctl_sq_exec(s, ctl_migrations[v].sqlite);
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (rc == 0)
			rc = ctl_sq_exec(s, pragma);
	}
	return ctl_sq_end(s, rc);
}

static const struct ctl_store_ops sq_ops;

static void sq_close(struct ctl_store *st)
{
	struct sq_store *s = SQ(st);
	for (int i = 0; i < SQ_CACHE; i++)
		sqlite3_finalize(s->cache[i].st);
	sqlite3_close(s->db);
	free(s);
}

struct ctl_store *ctl_store_open_sqlite(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	int fd, mode, rc;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium init failed");
		return NULL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	if (snprintf(path, sizeof path, "%s/control.db", dir) >= (int)sizeof path) {
		snprintf(err, errlen, "%s: path too long", dir);
		return NULL;
	}
	/* Create the file ourselves so it is 0600 whatever the umask; SQLite
	 * gives the -wal and -shm files the same mode. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fchmod(fd, 0600) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);

	struct sq_store *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base.ops = &sq_ops;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		         s->db ? sqlite3_errmsg(s->db) : "cannot open");
		sqlite3_close(s->db);
		free(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 5000);
	sqlite3_extended_result_codes(s->db, 1);
	rc = sq_wal(s);
	if (rc == 0)
		rc =
		    ctl_sq_exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL");
	if (rc == 0 && (rc = sq_pragma_int(s, "PRAGMA foreign_keys", &mode)) == 0 &&
	    mode != 1)
		rc = ctl_sq_fail(s, CTL_STORE_EIO, "foreign keys unsupported");
	if (rc == 0)
		rc = sq_migrate(s);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, s->base.errmsg);
		sq_close(&s->base);
		return NULL;
	}
	return &s->base;
}

/* ---- meta ------------------------------------------------------------ */

static int sq_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	struct sq_store *s = SQ(st);
	const char *domain = p->domain ? p->domain : CTL_DEFAULT_DOMAIN;
	uint8_t id[16], ula[16] = {0xfd};
	char hex[CTL_MESH_ID_LEN + 1];

	if (!ctl_store_domain_ok(domain))
		return ctl_sq_fail(
		    s, CTL_STORE_EINVAL,
		    "domain \"%.64s\": use lowercase letters, digits, '-', '.'", domain);
	randombytes_buf(id, sizeof id);
	randombytes_buf(ula + 1, 5);
	sodium_bin2hex(hex, sizeof hex, id, sizeof id);

	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "INSERT INTO meta (id, mesh_id, v4_prefix, v4_bits, "
	                   "ula, ula_bits, domain, server_public, created) "
	                   "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_text(q, 1, hex, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, CTL_V4_PREFIX);
	sqlite3_bind_int(q, 3, CTL_V4_BITS);
	sqlite3_bind_blob(q, 4, ula, sizeof ula, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 5, CTL_V6_BITS);
	sqlite3_bind_text(q, 6, domain, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 7, p->server_public, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 8, p->now);
	rc = ctl_sq_step_done(s, q, "init");
	if (rc == CTL_STORE_EEXISTS)
		ctl_sq_fail(s, rc, "store already initialised");
	return ctl_sq_end(s, rc);
}

int ctl_sq_get_meta(struct ctl_store *st, struct ctl_meta *m)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT mesh_id, v4_prefix, v4_bits, ula, ula_bits, "
	                   "domain, server_public, created FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		memset(m, 0, sizeof *m);
		ctl_sq_text(m->mesh_id, sizeof m->mesh_id, q, 0);
		m->v4_prefix = (uint32_t)sqlite3_column_int64(q, 1);
		m->v4_bits = (uint8_t)sqlite3_column_int(q, 2);
		ctl_sq_blob(m->ula, sizeof m->ula, q, 3);
		m->ula_bits = (uint8_t)sqlite3_column_int(q, 4);
		ctl_sq_text(m->domain, sizeof m->domain, q, 5);
		ctl_sq_blob(m->server_public, CTL_KEY_LEN, q, 6);
		m->created = sqlite3_column_int64(q, 7);
	}
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return ctl_sq_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	return ctl_sq_dberr(s, "meta");
}

static int sq_map_version(struct ctl_store *st, int64_t *out)
{
	struct sq_store *s = SQ(st);
	if (ctl_sq_fault(s, "map_version:read") < 0)
		return CTL_STORE_EIO;
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT map_version FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	*out = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "map version");
}

static void sq_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg)
{
	SQ(st)->fault = fn;
	SQ(st)->fault_arg = arg;
}

static const struct ctl_store_ops sq_ops = {
    .close = sq_close,
    .init = sq_init,
    .get_meta = ctl_sq_get_meta,
    .map_version = sq_map_version,
    .key_create = ctl_sq_key_create,
    .key_list = ctl_sq_key_list,
    .key_revoke = ctl_sq_key_revoke,
    .key_use = ctl_sq_key_use,
    .node_register = ctl_sq_node_register,
    .node_get = ctl_sq_node_get,
    .node_list = ctl_sq_node_list,
    .node_approve = ctl_sq_node_approve,
    .node_rename = ctl_sq_node_rename,
    .node_remove = ctl_sq_node_remove,
    .node_reap = ctl_sq_node_reap,
    .node_logout = ctl_sq_node_logout,
    .node_removed = ctl_sq_node_removed,
    .node_pending_count = ctl_sq_node_pending_count,
    .node_counts = ctl_sq_node_counts,
    .node_expire = ctl_sq_node_expire,
    .node_update = ctl_sq_node_update,
    .set_fault = sq_set_fault,
    .node_update_many = ctl_sq_node_update_many,
    .node_offline_all = ctl_sq_node_offline_all,
    .apikey_create = ctl_sq_apikey_create,
    .apikey_list = ctl_sq_apikey_list,
    .apikey_revoke = ctl_sq_apikey_revoke,
    .apikey_check = ctl_sq_apikey_check,
    .relay_key_create = ctl_sq_relay_key_create,
    .relay_register = ctl_sq_relay_register,
    .relay_list = ctl_sq_relay_list,
    .relay_remove = ctl_sq_relay_remove,
    .user_create = ctl_sq_user_create,
    .user_list = ctl_sq_user_list,
    .user_remove = ctl_sq_user_remove,
    .policy_get = ctl_sq_policy_get,
    .policy_set = ctl_sq_policy_set,
    .policy_clear = ctl_sq_policy_clear,
    .node_owners = ctl_sq_node_owners,
    .kind = "sqlite",
    .set_server = ctl_sq_set_server,
    .server_beat = ctl_sq_server_beat,
    .server_leave = ctl_sq_server_leave,
};
