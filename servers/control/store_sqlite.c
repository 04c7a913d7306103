/* The control store on SQLite: one file DIR/control.db in WAL mode. Every
 * change that takes more than one statement runs inside BEGIN IMMEDIATE ...
 * COMMIT and is rolled back on any error, so a crash leaves either all of it
 * or none. Statements are prepared once (cached by their SQL text's address)
 * and only ever see values through bound parameters.
 *
 * Durability: synchronous=FULL, so a committed registration survives a power
 * cut as well as a crash of the process. */
#include "servers/control/alloc.h"
#include "servers/control/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQ_CACHE     64
#define SQ_HASH_LEN  32
#define SQ_SECRET_RB 24 /* random bytes in a secret */

struct sq_store {
	struct ctl_store base; /* first: ctl_store * <-> sq_store * */
	sqlite3 *db;
	ctl_store_fault_fn fault;
	void *fault_arg;
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} cache[SQ_CACHE];
};

static struct sq_store *SQ(struct ctl_store *st)
{
	return (struct sq_store *)st;
}

/* ---- schema ---------------------------------------------------------- */

/* migrations[v] takes the schema from user_version v to v + 1. A v2 is one
 * more string here; nothing else changes. */
static const char *const sq_migrations[] = {
    /* v1 */
    "CREATE TABLE meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " mesh_id TEXT NOT NULL, v4_prefix INTEGER NOT NULL, v4_bits INTEGER NOT NULL,"
    " ula BLOB NOT NULL, ula_bits INTEGER NOT NULL, domain TEXT NOT NULL,"
    " server_public BLOB NOT NULL, created INTEGER NOT NULL,"
    " map_version INTEGER NOT NULL DEFAULT 0,"
    " v4_cursor INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE auth_keys ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, hash BLOB NOT NULL,"
    " reusable INTEGER NOT NULL, ephemeral INTEGER NOT NULL,"
    " expiry INTEGER NOT NULL, tags TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,"
    " uses INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE nodes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " machine_key BLOB NOT NULL UNIQUE, node_key BLOB NOT NULL UNIQUE,"
    " disco_key BLOB NOT NULL, hostname TEXT NOT NULL, name TEXT NOT NULL UNIQUE,"
    " ipv4 INTEGER NOT NULL UNIQUE, ipv6 BLOB NOT NULL UNIQUE,"
    " endpoints TEXT NOT NULL DEFAULT '', home_relay INTEGER NOT NULL DEFAULT 0,"
    " hostinfo TEXT NOT NULL DEFAULT '',"
    " auth_key_id INTEGER REFERENCES auth_keys(id) ON DELETE SET NULL,"
    " approved INTEGER NOT NULL, ephemeral INTEGER NOT NULL,"
    " online INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '',"
    " created INTEGER NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0,"
    " expiry INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL);"
    "CREATE INDEX nodes_version ON nodes(version);"
    /* Tombstones for deltas: the map version that removed each node. */
    "CREATE TABLE node_removals (node_id INTEGER NOT NULL, version INTEGER NOT NULL);"
    "CREATE INDEX node_removals_version ON node_removals(version);"
    "CREATE TRIGGER nodes_removed AFTER DELETE ON nodes BEGIN"
    " INSERT INTO node_removals (node_id, version)"
    " SELECT OLD.id, map_version FROM meta WHERE id = 1; END;",
};
#define SQ_SCHEMA_VERSION ((int)(sizeof sq_migrations / sizeof sq_migrations[0]))

/* ---- plumbing -------------------------------------------------------- */

static int sq_fail(struct sq_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sq_fail(struct sq_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->base.errmsg, sizeof s->base.errmsg, fmt, ap);
	va_end(ap);
	return code;
}

static int sq_dberr(struct sq_store *s, const char *what)
{
	return sq_fail(s, CTL_STORE_EIO, "%s: %s", what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *sq_prep(struct sq_store *s, const char *sql)
{
	int i;
	for (i = 0; i < SQ_CACHE && s->cache[i].sql; i++)
		if (s->cache[i].sql == sql)
			return s->cache[i].st;
	sqlite3_stmt *st = NULL;
	if (i == SQ_CACHE) { /* a programming error: raise SQ_CACHE */
		sq_fail(s, CTL_STORE_EIO, "statement cache full");
		return NULL;
	}
	if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
	    SQLITE_OK) {
		sq_dberr(s, "prepare");
		return NULL;
	}
	s->cache[i].sql = sql;
	s->cache[i].st = st;
	return st;
}

static void sq_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int sq_exec(struct sq_store *s, const char *sql)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq_dberr(s, sql);
	return 0;
}

static int sq_begin(struct sq_store *s)
{
	return sq_exec(s, "BEGIN IMMEDIATE");
}

/* Ends a transaction: COMMIT if rc == 0 (a failed COMMIT rolls back and
 * returns EIO), else ROLLBACK keeping rc and its message. */
static int sq_end(struct sq_store *s, int rc)
{
	if (rc == 0) {
		rc = sq_exec(s, "COMMIT");
		if (rc == 0)
			return 0;
	}
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int sq_fault(struct sq_store *s, const char *point)
{
	if (s->fault && s->fault(point, s->fault_arg))
		return sq_fail(s, CTL_STORE_EIO, "fault injected at %s", point);
	return 0;
}

/* Runs a statement expecting no rows (or ignoring them). */
static int sq_step_done(struct sq_store *s, sqlite3_stmt *st, const char *what)
{
	int r = sqlite3_step(st), rc = 0;
	int ext = sqlite3_extended_errcode(s->db);

	if (r == SQLITE_DONE || r == SQLITE_ROW)
		rc = 0;
	else if (ext != SQLITE_CONSTRAINT_UNIQUE && ext != SQLITE_CONSTRAINT_PRIMARYKEY)
		rc = sq_dberr(s, what);
	else if (strstr(sqlite3_errmsg(s->db), "node_key"))
		rc = sq_fail(s, CTL_STORE_ECONFLICT, "%s: node key in use", what);
	else
		rc = sq_fail(s, CTL_STORE_EEXISTS, "%s: %s", what, sqlite3_errmsg(s->db));
	sq_done(st);
	return rc;
}

static void sq_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void sq_blob(uint8_t *dst, size_t len, sqlite3_stmt *st, int col)
{
	const void *b = sqlite3_column_blob(st, col);
	if (b && (size_t)sqlite3_column_bytes(st, col) == len)
		memcpy(dst, b, len);
	else
		memset(dst, 0, len);
}

static bool sq_len_ok(const char *t, size_t max)
{
	return !t || strnlen(t, max + 1) <= max;
}

/* Bumps the map version; the new value in *v. */
static int sq_bump(struct sq_store *s, int64_t *v)
{
	sqlite3_stmt *st = sq_prep(s, "UPDATE meta SET map_version = map_version + 1 "
	                              "WHERE id = 1 RETURNING map_version");
	if (!st)
		return CTL_STORE_EIO;
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	sq_done(st);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return sq_fail(s, CTL_STORE_ENOTFOUND,
		               "store not initialised (run init)");
	return sq_dberr(s, "map version");
}

/* ---- open / migrate -------------------------------------------------- */

static int sq_pragma_int(struct sq_store *s, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_dberr(s, sql);
	int r = sqlite3_step(st);
	*out = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return r == SQLITE_ROW ? 0 : sq_dberr(s, sql);
}

static int sq_wal(struct sq_store *s)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_dberr(s, "journal_mode");
	const unsigned char *mode = NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		mode = sqlite3_column_text(st, 0);
	bool ok = mode && !strcmp((const char *)mode, "wal");
	sqlite3_finalize(st);
	return ok ? 0 : sq_fail(s, CTL_STORE_EIO, "cannot switch to WAL mode");
}

static int sq_migrate(struct sq_store *s)
{
	int v, rc = sq_begin(s);
	if (rc)
		return rc;
	rc = sq_pragma_int(s, "PRAGMA user_version", &v);
	if (rc == 0 && v > SQ_SCHEMA_VERSION)
		rc = sq_fail(s, CTL_STORE_ESCHEMA,
		             "schema version %d is newer than this program's %d", v,
		             SQ_SCHEMA_VERSION);
	for (; rc == 0 && v < SQ_SCHEMA_VERSION; v++) {
		char pragma[48];
		rc = sq_exec(s, sq_migrations[v]);
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (rc == 0)
			rc = sq_exec(s, pragma);
	}
	return sq_end(s, rc);
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
		rc = sq_exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL");
	if (rc == 0 && (rc = sq_pragma_int(s, "PRAGMA foreign_keys", &mode)) == 0 &&
	    mode != 1)
		rc = sq_fail(s, CTL_STORE_EIO, "foreign keys unsupported");
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

static bool sq_domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > CTL_DOMAIN_MAX || d[0] == '.' || d[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int sq_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	struct sq_store *s = SQ(st);
	const char *domain = p->domain ? p->domain : CTL_DEFAULT_DOMAIN;
	uint8_t id[16], ula[16] = {0xfd};
	char hex[CTL_MESH_ID_LEN + 1];

	if (!sq_domain_ok(domain))
		return sq_fail(
		    s, CTL_STORE_EINVAL,
		    "domain \"%.64s\": use lowercase letters, digits, '-', '.'", domain);
	randombytes_buf(id, sizeof id);
	randombytes_buf(ula + 1, 5);
	sodium_bin2hex(hex, sizeof hex, id, sizeof id);

	int rc = sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q = sq_prep(s, "INSERT INTO meta (id, mesh_id, v4_prefix, v4_bits, "
	                             "ula, ula_bits, domain, server_public, created) "
	                             "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (!q)
		return sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_text(q, 1, hex, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, CTL_V4_PREFIX);
	sqlite3_bind_int(q, 3, CTL_V4_BITS);
	sqlite3_bind_blob(q, 4, ula, sizeof ula, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 5, CTL_V6_BITS);
	sqlite3_bind_text(q, 6, domain, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 7, p->server_public, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 8, p->now);
	rc = sq_step_done(s, q, "init");
	if (rc == CTL_STORE_EEXISTS)
		sq_fail(s, rc, "store already initialised");
	return sq_end(s, rc);
}

static int sq_get_meta(struct ctl_store *st, struct ctl_meta *m)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q =
	    sq_prep(s, "SELECT mesh_id, v4_prefix, v4_bits, ula, ula_bits, "
	               "domain, server_public, created FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		memset(m, 0, sizeof *m);
		sq_text(m->mesh_id, sizeof m->mesh_id, q, 0);
		m->v4_prefix = (uint32_t)sqlite3_column_int64(q, 1);
		m->v4_bits = (uint8_t)sqlite3_column_int(q, 2);
		sq_blob(m->ula, sizeof m->ula, q, 3);
		m->ula_bits = (uint8_t)sqlite3_column_int(q, 4);
		sq_text(m->domain, sizeof m->domain, q, 5);
		sq_blob(m->server_public, CTL_KEY_LEN, q, 6);
		m->created = sqlite3_column_int64(q, 7);
	}
	sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return sq_fail(s, CTL_STORE_ENOTFOUND,
		               "store not initialised (run init)");
	return sq_dberr(s, "meta");
}

static int sq_map_version(struct ctl_store *st, int64_t *out)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q = sq_prep(s, "SELECT map_version FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	*out = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sq_done(q);
	return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : sq_dberr(s, "map version");
}

static void sq_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg)
{
	SQ(st)->fault = fn;
	SQ(st)->fault_arg = arg;
}

/* ---- auth keys ------------------------------------------------------- */

static bool sq_tags_ok(const char *t)
{
	if (!sq_len_ok(t, CTL_TAGS_MAX))
		return false;
	for (; t && *t; t++)
		if ((unsigned char)*t <= ' ' || *t == 0x7f)
			return false;
	return true;
}

static void sq_hash(uint8_t out[SQ_HASH_LEN], const char *secret)
{
	crypto_generichash(out, SQ_HASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

static int sq_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                         char *secret, size_t secretlen, struct ctl_authkey *out)
{
	struct sq_store *s = SQ(st);
	uint8_t rnd[SQ_SECRET_RB], hash[SQ_HASH_LEN] = {0};
	char hex[2 * SQ_SECRET_RB + 1];
	char sec[CTL_SECRET_MAX];
	int64_t id = 0;

	if (!sq_tags_ok(p->tags))
		return sq_fail(s, CTL_STORE_EINVAL,
		               "tags: at most %d characters, no spaces", CTL_TAGS_MAX);
	if (secretlen < CTL_SECRET_MAX)
		return sq_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    sq_prep(s, "INSERT INTO auth_keys (hash, reusable, ephemeral, "
	               "expiry, tags, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	if (!q)
		return sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 2, p->reusable);
	sqlite3_bind_int(q, 3, p->ephemeral);
	sqlite3_bind_int64(q, 4, p->expiry);
	sqlite3_bind_text(q, 5, p->tags ? p->tags : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 6, p->now);
	rc = sq_step_done(s, q, "key create");
	if (rc == 0) {
		id = sqlite3_last_insert_rowid(s->db);
		randombytes_buf(rnd, sizeof rnd);
		sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
		snprintf(sec, sizeof sec, "mkey-%lld-%s", (long long)id, hex);
		sq_hash(hash, sec);
		q = sq_prep(s, "UPDATE auth_keys SET hash = ?2 WHERE id = ?1");
		rc = q ? 0 : CTL_STORE_EIO;
	}
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_TRANSIENT);
		rc = sq_step_done(s, q, "key create");
	}
	rc = sq_end(s, rc);
	if (rc == 0) {
		memcpy(secret, sec, strlen(sec) + 1);
		if (out) {
			memset(out, 0, sizeof *out);
			out->id = id;
			out->reusable = p->reusable;
			out->ephemeral = p->ephemeral;
			out->expiry = p->expiry;
			out->created = p->now;
			snprintf(out->tags, sizeof out->tags, "%s",
			         p->tags ? p->tags : "");
		}
	}
	sodium_memzero(sec, sizeof sec);
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

#define SQ_KEY_COLS "id, reusable, ephemeral, revoked, expiry, uses, created, tags, hash"

static void sq_key_row(sqlite3_stmt *q, struct ctl_authkey *k)
{
	memset(k, 0, sizeof *k);
	k->id = sqlite3_column_int64(q, 0);
	k->reusable = sqlite3_column_int(q, 1);
	k->ephemeral = sqlite3_column_int(q, 2);
	k->revoked = sqlite3_column_int(q, 3);
	k->expiry = sqlite3_column_int64(q, 4);
	k->uses = sqlite3_column_int64(q, 5);
	k->created = sqlite3_column_int64(q, 6);
	sq_text(k->tags, sizeof k->tags, q, 7);
}

static int sq_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_authkey *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q = sq_prep(s, "SELECT " SQ_KEY_COLS " FROM auth_keys ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			struct ctl_authkey *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				sq_done(q);
				free(v);
				return sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		sq_key_row(q, &v[cnt++]);
	}
	sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return sq_dberr(s, "key list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int sq_key_revoke(struct ctl_store *st, int64_t id)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q = sq_prep(s, "UPDATE auth_keys SET revoked = 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	int rc = sq_step_done(s, q, "key revoke");
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = sq_fail(s, CTL_STORE_ENOTFOUND, "auth key %lld: no such key",
		             (long long)id);
	return rc;
}

/* "mkey-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t sq_secret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = 5, nd = 0;

	if (!sec || strncmp(sec, "mkey-", 5) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' || strlen(sec + i + 1) != 2 * SQ_SECRET_RB)
		return -1;
	return id;
}

/* Inside a transaction: check the secret and count a use. */
static int sq_key_use_tx(struct sq_store *s, const char *secret, int64_t now,
                         struct ctl_authkey *k)
{
	uint8_t want[SQ_HASH_LEN], have[SQ_HASH_LEN];
	int64_t id = sq_secret_id(secret);
	int r;

	if (id < 0)
		return sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: not a key");
	sqlite3_stmt *q =
	    sq_prep(s, "SELECT " SQ_KEY_COLS " FROM auth_keys WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		sq_key_row(q, k);
		sq_blob(have, sizeof have, q, 8);
	}
	sq_done(q);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return sq_dberr(s, "auth key");
	sq_hash(want, secret);
	if (r == SQLITE_DONE || sodium_memcmp(want, have, sizeof want) != 0)
		return sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: unknown key");
	/* Only a holder of the secret learns the key's state. */
	if (k->revoked)
		return sq_fail(s, CTL_STORE_EKEY_REVOKED, "auth key %lld: revoked",
		               (long long)id);
	if (k->expiry && k->expiry <= now)
		return sq_fail(s, CTL_STORE_EKEY_EXPIRED, "auth key %lld: expired",
		               (long long)id);
	if (!k->reusable && k->uses > 0)
		return sq_fail(s, CTL_STORE_EKEY_USED, "auth key %lld: already used",
		               (long long)id);
	q = sq_prep(s, "UPDATE auth_keys SET uses = uses + 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	k->uses++;
	return sq_step_done(s, q, "auth key use");
}

static int sq_key_use(struct ctl_store *st, const char *secret, int64_t now,
                      struct ctl_authkey *out)
{
	struct sq_store *s = SQ(st);
	struct ctl_authkey k;
	int rc = sq_begin(s);
	if (rc)
		return rc;
	rc = sq_key_use_tx(s, secret, now, &k);
	rc = sq_end(s, rc);
	if (rc == 0 && out)
		*out = k;
	return rc;
}

/* ---- nodes ----------------------------------------------------------- */

#define SQ_NODE_COLS                                                                     \
	"id, machine_key, node_key, disco_key, hostname, name, ipv4, ipv6, endpoints, "  \
	"home_relay, hostinfo, auth_key_id, approved, ephemeral, online, tags, "         \
	"created, "                                                                      \
	"last_seen, expiry, version"

static void sq_node_row(sqlite3_stmt *q, struct ctl_node *n)
{
	memset(n, 0, sizeof *n);
	n->id = sqlite3_column_int64(q, 0);
	sq_blob(n->machine_key, CTL_KEY_LEN, q, 1);
	sq_blob(n->node_key, CTL_KEY_LEN, q, 2);
	sq_blob(n->disco_key, CTL_KEY_LEN, q, 3);
	sq_text(n->hostname, sizeof n->hostname, q, 4);
	sq_text(n->name, sizeof n->name, q, 5);
	n->ipv4 = (uint32_t)sqlite3_column_int64(q, 6);
	sq_blob(n->ipv6, sizeof n->ipv6, q, 7);
	sq_text(n->endpoints, sizeof n->endpoints, q, 8);
	n->home_relay = sqlite3_column_int(q, 9);
	sq_text(n->hostinfo, sizeof n->hostinfo, q, 10);
	n->auth_key_id = sqlite3_column_int64(q, 11);
	n->approved = sqlite3_column_int(q, 12);
	n->ephemeral = sqlite3_column_int(q, 13);
	n->online = sqlite3_column_int(q, 14);
	sq_text(n->tags, sizeof n->tags, q, 15);
	n->created = sqlite3_column_int64(q, 16);
	n->last_seen = sqlite3_column_int64(q, 17);
	n->expiry = sqlite3_column_int64(q, 18);
	n->version = sqlite3_column_int64(q, 19);
}

static int sq_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                       struct ctl_node *out)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q;

	switch (by) {
	case CTL_NODE_BY_ID:
		q = sq_prep(s, "SELECT " SQ_NODE_COLS " FROM nodes WHERE id = ?1");
		if (q)
			sqlite3_bind_int64(q, 1, *(const int64_t *)key);
		break;
	case CTL_NODE_BY_MACHINE_KEY:
		q = sq_prep(s,
		            "SELECT " SQ_NODE_COLS " FROM nodes WHERE machine_key = ?1");
		if (q)
			sqlite3_bind_blob(q, 1, key, CTL_KEY_LEN, SQLITE_TRANSIENT);
		break;
	case CTL_NODE_BY_NODE_KEY:
		q = sq_prep(s, "SELECT " SQ_NODE_COLS " FROM nodes WHERE node_key = ?1");
		if (q)
			sqlite3_bind_blob(q, 1, key, CTL_KEY_LEN, SQLITE_TRANSIENT);
		break;
	case CTL_NODE_BY_NAME:
		q = sq_prep(s, "SELECT " SQ_NODE_COLS " FROM nodes WHERE name = ?1");
		if (q)
			sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
		break;
	default:
		return sq_fail(s, CTL_STORE_EINVAL, "bad lookup");
	}
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW && out)
		sq_node_row(q, out);
	sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return sq_fail(s, CTL_STORE_ENOTFOUND, "no such node");
	return sq_dberr(s, "node lookup");
}

static int sq_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                        size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_node *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q = sq_prep(s, "SELECT " SQ_NODE_COLS
	                             " FROM nodes WHERE version > ?1 ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, since);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 64;
			struct ctl_node *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				sq_done(q);
				free(v);
				return sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		sq_node_row(q, &v[cnt++]);
	}
	sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return sq_dberr(s, "node list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* 1 if name belongs to a node other than self, 0 if free, <0 on error. */
static int sq_name_taken(struct sq_store *s, const char *name, int64_t self)
{
	sqlite3_stmt *q = sq_prep(s, "SELECT 1 FROM nodes WHERE name = ?1 AND id != ?2");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, self);
	int r = sqlite3_step(q);
	sq_done(q);
	if (r == SQLITE_ROW || r == SQLITE_DONE)
		return r == SQLITE_ROW;
	return sq_dberr(s, "name check");
}

/* The smallest n >= 2 with no node named "base-n", from one range scan of
 * the name index over ["base-", "base.") (so 3,000 "laptop"s cost one scan
 * per registration, not a lookup per candidate). The answer is at most
 * rows + 2, so only suffixes up to that are remembered. */
static int sq_first_free_suffix(struct sq_store *s, const char *base, unsigned *out)
{
	char lo[72], hi[72];
	size_t bl = strlen(base), cnt = 0, cap = 0;
	unsigned long *seen = NULL;
	int r;

	snprintf(lo, sizeof lo, "%s-", base);
	snprintf(hi, sizeof hi, "%s.", base);
	sqlite3_stmt *q =
	    sq_prep(s, "SELECT name FROM nodes WHERE name > ?1 AND name < ?2");
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
	sq_done(q);
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
		return sq_dberr(s, "name scan");
	return used ? 0 : sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
}

static int sq_unique_name(struct sq_store *s, const char *hostname, char out[64])
{
	char base[64];
	ctl_alloc_name_from_host(hostname, base);
	snprintf(out, 64, "%s", base);
	int t = sq_name_taken(s, out, 0);
	if (t <= 0)
		return t;
	unsigned n = 2;
	t = sq_first_free_suffix(s, base, &n);
	if (t)
		return t;
	/* A base cut to fit the suffix ("aaa...a-2") can still collide: walk. */
	for (;; n++) {
		ctl_alloc_name_suffix(base, n, out);
		t = sq_name_taken(s, out, 0);
		if (t <= 0)
			return t;
		if (n > 1000000)
			return sq_fail(s, CTL_STORE_EFULL, "no free name for %s", base);
	}
}

/* Next free IPv4 offset after the persisted cursor; moves the cursor. */
static int sq_alloc_v4(struct sq_store *s, uint32_t *off_out)
{
	sqlite3_stmt *q = sq_prep(s, "SELECT v4_cursor FROM meta WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	int r = sqlite3_step(q);
	uint32_t start = r == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(q, 0) : 0;
	sq_done(q);
	if (r != SQLITE_ROW)
		return r == SQLITE_DONE ? sq_fail(s, CTL_STORE_ENOTFOUND,
		                                  "store not initialised (run init)")
		                        : sq_dberr(s, "v4 cursor");
	q = sq_prep(s, "SELECT 1 FROM nodes WHERE ipv4 = ?1");
	if (!q)
		return CTL_STORE_EIO;
	uint32_t off = start % CTL_ALLOC_V4_SIZE;
	for (uint32_t i = 0; i < CTL_ALLOC_V4_SIZE; i++) {
		off = ctl_alloc_v4_next(off);
		sqlite3_bind_int64(q, 1, CTL_V4_PREFIX + off);
		r = sqlite3_step(q);
		sq_done(q);
		if (r == SQLITE_DONE)
			break;
		if (r != SQLITE_ROW)
			return sq_dberr(s, "v4 allocation");
		if (i + 1 == CTL_ALLOC_V4_SIZE)
			return sq_fail(s, CTL_STORE_EFULL, "no free IPv4 address");
	}
	q = sq_prep(s, "UPDATE meta SET v4_cursor = ?1 WHERE id = 1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, off);
	*off_out = off;
	return sq_step_done(s, q, "v4 cursor");
}

static int sq_node_insert(struct sq_store *s, const struct ctl_register_req *r,
                          const struct ctl_authkey *k)
{
	struct ctl_meta m;
	char name[64];
	uint8_t v6[16];
	uint32_t off = 0;
	int64_t v;
	int rc = sq_get_meta(&s->base, &m);

	if (rc == 0)
		rc = sq_unique_name(s, r->hostname, name);
	if (rc == 0)
		rc = sq_alloc_v4(s, &off);
	if (rc == 0)
		rc = sq_bump(s, &v);
	if (rc)
		return rc;
	ctl_alloc_v6(m.ula, CTL_V4_PREFIX + off, v6);
	sqlite3_stmt *q = sq_prep(
	    s,
	    "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name, ipv4, "
	    "ipv6, auth_key_id, approved, ephemeral, tags, created, last_seen, version) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)");
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
	sqlite3_bind_int(q, 10, k && k->ephemeral);
	sqlite3_bind_text(q, 11, k ? k->tags : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 12, r->now);
	sqlite3_bind_int64(q, 13, v);
	return sq_step_done(s, q, "node insert");
}

/* A known machine: new keys and hostname; a secret re-authorises it. */
static int sq_node_refresh(struct sq_store *s, const struct ctl_register_req *r,
                           const struct ctl_node *old, const struct ctl_authkey *k)
{
	bool keys = memcmp(old->node_key, r->node_key, CTL_KEY_LEN) != 0 ||
	            memcmp(old->disco_key, r->disco_key, CTL_KEY_LEN) != 0;
	int64_t v = old->version;
	int rc = 0;

	if (keys || k)
		rc = sq_bump(s, &v);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    sq_prep(s, "UPDATE nodes SET node_key = ?2, disco_key = ?3, hostname = ?4, "
	               "last_seen = ?5, version = ?6 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, old->id);
	sqlite3_bind_blob(q, 2, r->node_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(q, 3, r->disco_key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 4, r->hostname ? r->hostname : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 5, r->now);
	sqlite3_bind_int64(q, 6, v);
	rc = sq_step_done(s, q, "node refresh");
	if (rc || !k)
		return rc;
	q = sq_prep(s, "UPDATE nodes SET approved = 1, expiry = 0, auth_key_id = ?2, "
	               "ephemeral = ?3, tags = ?4 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, old->id);
	sqlite3_bind_int64(q, 2, k->id);
	sqlite3_bind_int(q, 3, k->ephemeral);
	sqlite3_bind_text(q, 4, k->tags, -1, SQLITE_TRANSIENT);
	return sq_step_done(s, q, "node reauth");
}

static int sq_node_register(struct ctl_store *st, const struct ctl_register_req *r,
                            struct ctl_node *out, bool *created)
{
	static const uint8_t zero[CTL_KEY_LEN];
	struct sq_store *s = SQ(st);
	struct ctl_authkey k;
	struct ctl_node *old = malloc(sizeof *old);
	bool isnew = false;
	int rc;

	if (!old)
		return sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
	if (!memcmp(r->machine_key, zero, CTL_KEY_LEN) ||
	    !memcmp(r->node_key, zero, CTL_KEY_LEN))
		rc = sq_fail(s, CTL_STORE_EINVAL, "register: zero machine or node key");
	else if (!sq_len_ok(r->hostname, CTL_HOSTNAME_MAX))
		rc = sq_fail(s, CTL_STORE_EINVAL, "register: hostname longer than %d",
		             CTL_HOSTNAME_MAX);
	else
		rc = sq_begin(s);
	if (rc) {
		free(old);
		return rc;
	}
	rc = sq_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, old);
	isnew = rc == CTL_STORE_ENOTFOUND;
	if (isnew)
		rc = 0;
	const struct ctl_authkey *use = NULL;
	if (rc == 0 && r->auth_secret) {
		rc = sq_key_use_tx(s, r->auth_secret, r->now, &k);
		use = &k;
		/* A retry with the single-use key this very machine was
		 * registered with (say the first answer was lost) resumes. */
		if (rc == CTL_STORE_EKEY_USED && !isnew && k.id == old->auth_key_id)
			rc = 0, use = NULL;
	}
	if (rc == 0)
		rc = isnew ? sq_node_insert(s, r, use) : sq_node_refresh(s, r, old, use);
	if (rc == 0)
		rc = sq_fault(s, "register:before-commit");
	if (rc == 0 && out)
		rc = sq_node_get(st, CTL_NODE_BY_MACHINE_KEY, r->machine_key, out);
	rc = sq_end(s, rc);
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
	int rc = sq_begin(s);
	if (rc)
		return rc;
	rc = sq_bump(s, &v);
	sqlite3_stmt *q = rc ? NULL : sq_prep(s, sql);
	if (q) {
		sqlite3_bind_int64(q, 1, v);
		sqlite3_bind_int64(q, 2, id);
		if (sqlite3_bind_parameter_count(q) >= 3)
			sqlite3_bind_int64(q, 3, arg);
		rc = sq_step_done(s, q, what);
		if (rc == 0 && sqlite3_changes(s->db) == 0)
			rc = sq_fail(s, CTL_STORE_ENOTFOUND,
			             "%s: node %lld: no such node", what, (long long)id);
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	if (rc == 0)
		rc = sq_fault(s, what);
	return sq_end(s, rc);
}

static int sq_node_approve(struct ctl_store *st, int64_t id)
{
	return sq_node_change(SQ(st),
	                      "UPDATE nodes SET approved = 1, version = ?1 WHERE id = ?2",
	                      id, 0, "approve");
}

static int sq_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return sq_node_change(SQ(st),
	                      "UPDATE nodes SET expiry = ?3, version = ?1 WHERE id = ?2",
	                      id, now, "expire");
}

static int sq_node_remove(struct ctl_store *st, int64_t id)
{
	return sq_node_change(SQ(st), "DELETE FROM nodes WHERE id = ?2 AND ?1 > 0", id, 0,
	                      "remove");
}

static int sq_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	int64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q =
	    sq_prep(s, "SELECT node_id FROM node_removals WHERE version > ?1 "
	               "ORDER BY version, node_id");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, since);
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			int64_t *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				sq_done(q);
				free(v);
				return sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		v[cnt++] = sqlite3_column_int64(q, 0);
	}
	sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return sq_dberr(s, "removed nodes");
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int sq_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	struct sq_store *s = SQ(st);
	int64_t v;

	if (!ctl_alloc_name_valid(name))
		return sq_fail(s, CTL_STORE_EINVAL,
		               "name \"%.64s\": 1-63 of a-z, 0-9, '-', not starting or "
		               "ending with '-'",
		               name ? name : "");
	int rc = sq_begin(s);
	if (rc)
		return rc;
	rc = sq_bump(s, &v);
	/* UNIQUE(name) refuses a taken name. */
	sqlite3_stmt *q =
	    rc ? NULL
	       : sq_prep(s, "UPDATE nodes SET name = ?3, version = ?1 WHERE id = ?2");
	if (q) {
		sqlite3_bind_int64(q, 1, v);
		sqlite3_bind_int64(q, 2, id);
		sqlite3_bind_text(q, 3, name, -1, SQLITE_TRANSIENT);
		rc = sq_step_done(s, q, "rename");
		if (rc == CTL_STORE_EEXISTS)
			sq_fail(s, rc, "name %s is taken", name);
		else if (rc == 0 && sqlite3_changes(s->db) == 0)
			rc = sq_fail(s, CTL_STORE_ENOTFOUND,
			             "rename: node %lld: no such node", (long long)id);
	} else if (rc == 0) {
		rc = CTL_STORE_EIO;
	}
	return sq_end(s, rc);
}

/* UPDATE nodes SET <col> = ?2 WHERE id = ?1 with a text, key or integer. */
static int sq_set(struct sq_store *s, const char *sql, int64_t id, char type,
                  const void *p, int64_t i)
{
	sqlite3_stmt *q = sq_prep(s, sql);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	if (type == 't')
		sqlite3_bind_text(q, 2, p ? p : "", -1, SQLITE_TRANSIENT);
	else if (type == 'k')
		sqlite3_bind_blob(q, 2, p, CTL_KEY_LEN, SQLITE_TRANSIENT);
	else
		sqlite3_bind_int64(q, 2, i);
	return sq_step_done(s, q, "node update");
}

static int sq_node_update(struct ctl_store *st, int64_t id,
                          const struct ctl_node_update *u)
{
	struct sq_store *s = SQ(st);
	unsigned m = u->mask;
	int64_t v;

	if ((m & CTL_UPD_ENDPOINTS) && !sq_len_ok(u->endpoints, CTL_ENDPOINTS_MAX))
		return sq_fail(s, CTL_STORE_EINVAL, "endpoints longer than %d",
		               CTL_ENDPOINTS_MAX);
	if ((m & CTL_UPD_HOSTINFO) && !sq_len_ok(u->hostinfo, CTL_HOSTINFO_MAX))
		return sq_fail(s, CTL_STORE_EINVAL, "hostinfo longer than %d",
		               CTL_HOSTINFO_MAX);
	int rc = sq_begin(s);
	if (rc)
		return rc;
	rc = sq_node_get(st, CTL_NODE_BY_ID, &id, NULL);
	/* last_seen alone does not change anyone's map. */
	if (rc == 0 && (m & ~(unsigned)CTL_UPD_LAST_SEEN)) {
		rc = sq_bump(s, &v);
		if (rc == 0)
			rc = sq_set(s, "UPDATE nodes SET version = ?2 WHERE id = ?1", id,
			            'i', NULL, v);
	}
	if (rc == 0 && (m & CTL_UPD_ENDPOINTS))
		rc = sq_set(s, "UPDATE nodes SET endpoints = ?2 WHERE id = ?1", id, 't',
		            u->endpoints, 0);
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
	if (rc == 0 && (m & CTL_UPD_ONLINE))
		rc = sq_set(s, "UPDATE nodes SET online = ?2 WHERE id = ?1", id, 'i',
		            NULL, u->online);
	if (rc == 0)
		rc = sq_fault(s, "update:before-commit");
	return sq_end(s, rc);
}

static const struct ctl_store_ops sq_ops = {
    .close = sq_close,
    .init = sq_init,
    .get_meta = sq_get_meta,
    .map_version = sq_map_version,
    .key_create = sq_key_create,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .key_use = sq_key_use,
    .node_register = sq_node_register,
    .node_get = sq_node_get,
    .node_list = sq_node_list,
    .node_approve = sq_node_approve,
    .node_rename = sq_node_rename,
    .node_remove = sq_node_remove,
    .node_removed = sq_node_removed,
    .node_expire = sq_node_expire,
    .node_update = sq_node_update,
    .set_fault = sq_set_fault,
};

/* ---- the interface's thin wrappers ------------------------------------
 * (Backend-independent; they move to their own store.c when a second
 * backend arrives.) */

const char *ctl_store_strerror(int err)
{
	switch (err) {
	case CTL_STORE_OK:
		return "ok";
	case CTL_STORE_EIO:
		return "database error";
	case CTL_STORE_ENOTFOUND:
		return "not found";
	case CTL_STORE_EEXISTS:
		return "already exists";
	case CTL_STORE_EINVAL:
		return "invalid argument";
	case CTL_STORE_ENOMEM:
		return "out of memory";
	case CTL_STORE_EFULL:
		return "address pool exhausted";
	case CTL_STORE_EKEY_UNKNOWN:
		return "unknown auth key";
	case CTL_STORE_EKEY_REVOKED:
		return "auth key revoked";
	case CTL_STORE_EKEY_EXPIRED:
		return "auth key expired";
	case CTL_STORE_EKEY_USED:
		return "single-use auth key already used";
	case CTL_STORE_ESCHEMA:
		return "database schema is newer than this program";
	case CTL_STORE_ECONFLICT:
		return "node key belongs to another node";
	default:
		return "unknown error";
	}
}

void ctl_store_close(struct ctl_store *st)
{
	if (st)
		st->ops->close(st);
}

const char *ctl_store_errmsg(const struct ctl_store *st)
{
	return st->errmsg;
}

int ctl_store_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	return st->ops->init(st, p);
}

int ctl_store_get_meta(struct ctl_store *st, struct ctl_meta *out)
{
	return st->ops->get_meta(st, out);
}

int ctl_store_map_version(struct ctl_store *st, int64_t *out)
{
	return st->ops->map_version(st, out);
}

int ctl_store_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                         char *secret, size_t secretlen, struct ctl_authkey *out)
{
	return st->ops->key_create(st, p, secret, secretlen, out);
}

int ctl_store_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	return st->ops->key_list(st, out, n);
}

int ctl_store_key_revoke(struct ctl_store *st, int64_t id)
{
	return st->ops->key_revoke(st, id);
}

int ctl_store_key_use(struct ctl_store *st, const char *secret, int64_t now,
                      struct ctl_authkey *out)
{
	return st->ops->key_use(st, secret, now, out);
}

int ctl_store_node_register(struct ctl_store *st, const struct ctl_register_req *r,
                            struct ctl_node *out, bool *created)
{
	return st->ops->node_register(st, r, out, created);
}

int ctl_store_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                       struct ctl_node *out)
{
	return st->ops->node_get(st, by, key, out);
}

int ctl_store_node_by_id(struct ctl_store *st, int64_t id, struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_ID, &id, out);
}

int ctl_store_node_by_machine_key(struct ctl_store *st, const uint8_t *mk,
                                  struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_MACHINE_KEY, mk, out);
}

int ctl_store_node_by_node_key(struct ctl_store *st, const uint8_t *nk,
                               struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_NODE_KEY, nk, out);
}

int ctl_store_node_by_name(struct ctl_store *st, const char *name, struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_NAME, name, out);
}

int ctl_store_node_list(struct ctl_store *st, int64_t since_version,
                        struct ctl_node **out, size_t *n)
{
	return st->ops->node_list(st, since_version, out, n);
}

int ctl_store_node_approve(struct ctl_store *st, int64_t id)
{
	return st->ops->node_approve(st, id);
}

int ctl_store_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	return st->ops->node_rename(st, id, name);
}

int ctl_store_node_remove(struct ctl_store *st, int64_t id)
{
	return st->ops->node_remove(st, id);
}

int ctl_store_node_removed(struct ctl_store *st, int64_t since_version, int64_t **ids,
                           size_t *n)
{
	return st->ops->node_removed(st, since_version, ids, n);
}

int ctl_store_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return st->ops->node_expire(st, id, now);
}

int ctl_store_node_update(struct ctl_store *st, int64_t id,
                          const struct ctl_node_update *u)
{
	return st->ops->node_update(st, id, u);
}

void ctl_store_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg)
{
	st->ops->set_fault(st, fn, arg);
}
