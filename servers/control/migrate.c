/* mesh-control migrate: a SQLite control store copied row by row into an
 * empty PostgreSQL one (see migrate.h). sqlite3 and libpq directly: the
 * stores' interface hides rows (ids, hashes, tombstones) that a copy must
 * keep exactly, so this file reads the tables themselves.
 *
 * Consistency: the SQLite file is opened in exclusive locking mode and
 * read inside BEGIN EXCLUSIVE, which fails while any other connection has
 * the file open (a serve, an admin command) and keeps every other process
 * out until ctl_mig_close; the PostgreSQL side is one transaction that
 * first locks meta (a concurrent init or write waits, then finds the
 * copied mesh). Types follow the PostgreSQL column: bytea gets the SQLite
 * value's bytes as a binary parameter, integers their decimal text, text
 * its text; anything else is refused by name, not guessed. */
#include "servers/control/migrate.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "servers/control/cli_store.h"
#include "servers/control/store_schema.h"

#define MIG_COLS_MAX 64
#define MIG_NAME_MAX 63

struct ctl_mig {
	sqlite3 *db;
	PGconn *pg;
	char file[4200];
	char where[CTL_CLI_WHERE_MAX];
};

enum mig_kind { K_INT, K_BOOL, K_TEXT, K_BYTEA };

struct mig_col {
	char name[MIG_NAME_MAX + 1];
	enum mig_kind kind;
};

struct mig_tab {
	char name[MIG_NAME_MAX + 1];
	struct mig_col col[MIG_COLS_MAX];
	int ncol;
	bool has_id;
	int64_t sq_rows, copied;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int pg_fail(struct ctl_mig *m, char *err, size_t errlen, const char *what)
{
	char line[400];
	ctl_cli_one_line(line, sizeof line, PQerrorMessage(m->pg));
	return fail(err, errlen, "%s: %s: %s", m->where, what, line);
}

/* Table and column names go into SQL text (quoted): only the characters
 * our schema uses. */
static bool ident_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MIG_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

/* One PostgreSQL statement with text parameters; the result (PQclear it)
 * or NULL after filling err. */
static PGresult *pg_run(struct ctl_mig *m, const char *sql, int n, const char *const *v,
                        ExecStatusType want, char *err, size_t errlen)
{
	PGresult *r = PQexecParams(m->pg, sql, n, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(r) == want)
		return r;
	char line[400];
	ctl_cli_one_line(line, sizeof line, PQresultErrorMessage(r));
	fail(err, errlen, "%s: %s", m->where, *line ? line : PQerrorMessage(m->pg));
	PQclear(r);
	return NULL;
}

static int64_t sq_int(struct ctl_mig *m, const char *sql, const char *arg, bool *ok)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;
	*ok = sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) == SQLITE_OK;
	if (*ok && arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	if (*ok) {
		int r = sqlite3_step(st);
		if (r == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
		else if (r != SQLITE_DONE)
			*ok = false;
	}
	sqlite3_finalize(st);
	return v;
}

/* ---- open ------------------------------------------------------------ */

static int sq_lock(struct ctl_mig *m, const char *dir, char *err, size_t errlen)
{
	snprintf(m->file, sizeof m->file, "%s/control.db", dir);
	if (sqlite3_open_v2(m->file, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW,
	                    NULL) != SQLITE_OK)
		return fail(err, errlen, "cannot open %s: %s", m->file,
		            m->db ? sqlite3_errmsg(m->db) : "out of memory");
	sqlite3_busy_timeout(m->db, 1000);
	/* Exclusive locking mode: the lock taken below is held until close,
	 * and in WAL mode it is only granted when no other connection has
	 * the file open at all. */
	if (sqlite3_exec(m->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	int r = sqlite3_exec(m->db, "BEGIN EXCLUSIVE", NULL, NULL, NULL);
	if (r == SQLITE_BUSY || r == SQLITE_LOCKED)
		return fail(err, errlen,
		            "%s is in use by another process: stop `mesh-control serve` "
		            "on %s (and wait for admin commands to end), then migrate",
		            m->file, dir);
	if (r != SQLITE_OK)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	bool ok;
	int64_t v = sq_int(m, "PRAGMA user_version", NULL, &ok);
	if (!ok || v != ctl_schema_version)
		return fail(err, errlen,
		            "%s is at schema version %lld, this mesh-control's is %d: "
		            "run this version's `mesh-control --data %s nodes list` "
		            "once to upgrade it, then migrate",
		            m->file, (long long)v, ctl_schema_version, dir);
	if (sq_int(m, "SELECT count(*) FROM meta", NULL, &ok) != 1 || !ok)
		return fail(err, errlen, "%s was never initialised: nothing to migrate",
		            m->file);
	return 0;
}

static int pg_connect(struct ctl_mig *m, const char *url, char *err, size_t errlen)
{
	m->pg = PQconnectdb(url);
	if (!m->pg)
		return fail(err, errlen, "%s: out of memory", m->where);
	if (PQstatus(m->pg) != CONNECTION_OK)
		return pg_fail(m, err, errlen, "cannot connect");
	PGresult *r = pg_run(m, "SELECT max(version) FROM schema_version", 0, NULL,
	                     PGRES_TUPLES_OK, err, errlen);
	if (!r)
		return -1;
	long long v = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
	PQclear(r);
	if (v != ctl_schema_version)
		return fail(err, errlen,
		            "the %s is at schema version %lld, this mesh-control's is "
		            "%d: both must be at the same version",
		            m->where, v, ctl_schema_version);
	return 0;
}

struct ctl_mig *ctl_mig_open(const char *dir, const char *url, char *err, size_t errlen)
{
	struct ctl_mig *m = calloc(1, sizeof *m);
	if (!m) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	ctl_cli_pg_where(url, m->where, sizeof m->where);
	if (sq_lock(m, dir, err, errlen) < 0 || pg_connect(m, url, err, errlen) < 0) {
		ctl_mig_close(m);
		return NULL;
	}
	return m;
}

void ctl_mig_close(struct ctl_mig *m)
{
	if (!m)
		return;
	if (m->db) {
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(m->db);
	}
	if (m->pg)
		PQfinish(m->pg);
	free(m);
}

/* ---- the tables ------------------------------------------------------ */

/* Foreign keys first (nodes name auth_keys); a table this list does not
 * know (a later schema's) follows in the file's order. */
static const char *const known_order[] = {
    "meta",     "users",      "auth_keys", "nodes",  "node_removals", "removed_machines",
    "api_keys", "relay_keys", "relays",    "policy", "servers",
};

static int rank(const char *name)
{
	for (size_t i = 0; i < sizeof known_order / sizeof *known_order; i++)
		if (!strcmp(name, known_order[i]))
			return (int)i;
	return (int)(sizeof known_order / sizeof *known_order);
}

/* The SQLite file's tables in copy order. */
static int list_tables(struct ctl_mig *m, struct mig_tab *t, int *n, char *err,
                       size_t errlen)
{
	sqlite3_stmt *st = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(
	        m->db,
	        "SELECT name FROM sqlite_master WHERE type = 'table' "
	        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
	        -1, &st, NULL) != SQLITE_OK)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!name || !ident_ok(name) || *n == CTL_MIG_TABLES_MAX) {
			sqlite3_finalize(st);
			return fail(err, errlen, "%s: table %s: %s", m->file,
			            name ? name : "(null)",
			            *n == CTL_MIG_TABLES_MAX
			                ? "too many tables"
			                : "not a name migrate knows");
		}
		int i = (*n)++;
		/* insertion by rank keeps the file's order within a rank */
		while (i > 0 && rank(t[i - 1].name) > rank(name)) {
			t[i] = t[i - 1];
			i--;
		}
		memset(&t[i], 0, sizeof t[i]);
		snprintf(t[i].name, sizeof t[i].name, "%s", name);
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	return 0;
}

static int pg_kind(const char *type, enum mig_kind *k)
{
	if (!strcmp(type, "bigint") || !strcmp(type, "integer") ||
	    !strcmp(type, "smallint"))
		*k = K_INT;
	else if (!strcmp(type, "boolean"))
		*k = K_BOOL;
	else if (!strcmp(type, "text") || !strncmp(type, "character varying", 17))
		*k = K_TEXT;
	else if (!strcmp(type, "bytea"))
		*k = K_BYTEA;
	else
		return -1;
	return 0;
}

/* Columns from PRAGMA table_info, each matched to the PostgreSQL table's
 * column of that name (refused when there is none: never dropped). */
static int columns(struct ctl_mig *m, struct mig_tab *t, char *err, size_t errlen)
{
	char sql[160], qname[80];
	sqlite3_stmt *st = NULL;
	snprintf(sql, sizeof sql, "PRAGMA table_info(\"%s\")", t->name);
	if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *c = (const char *)sqlite3_column_text(st, 1);
		if (!c || !ident_ok(c) || t->ncol == MIG_COLS_MAX) {
			sqlite3_finalize(st);
			return fail(err, errlen, "%s: table %s: column %s: %s", m->file,
			            t->name, c ? c : "(null)",
			            t->ncol == MIG_COLS_MAX ? "too many columns"
			                                    : "not a name migrate knows");
		}
		snprintf(t->col[t->ncol++].name, MIG_NAME_MAX + 1, "%s", c);
	}
	sqlite3_finalize(st);

	snprintf(qname, sizeof qname, "\"%s\"", t->name);
	const char *v[1] = {qname};
	PGresult *r = pg_run(m,
	                     "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
	                     "FROM pg_attribute a WHERE a.attrelid = to_regclass($1) "
	                     "AND a.attnum > 0 AND NOT a.attisdropped",
	                     1, v, PGRES_TUPLES_OK, err, errlen);
	if (!r)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return fail(err, errlen,
		            "the %s has no table %s (the SQLite store has): both must be "
		            "at the same schema version",
		            m->where, t->name);
	}
	for (int i = 0; i < t->ncol; i++) {
		int j, n = PQntuples(r);
		for (j = 0; j < n && strcmp(PQgetvalue(r, j, 0), t->col[i].name); j++)
			;
		if (j == n) {
			PQclear(r);
			return fail(
			    err, errlen,
			    "the %s has no column %s.%s (the SQLite store has): "
			    "refusing to drop it; both must be at the same schema "
			    "version",
			    m->where, t->name, t->col[i].name);
		}
		if (pg_kind(PQgetvalue(r, j, 1), &t->col[i].kind) < 0) {
			fail(err, errlen,
			     "the %s: column %s.%s has type %s, which migrate "
			     "does not copy",
			     m->where, t->name, t->col[i].name, PQgetvalue(r, j, 1));
			PQclear(r);
			return -1;
		}
		if (!strcmp(t->col[i].name, "id"))
			t->has_id = true;
	}
	PQclear(r);
	return 0;
}

/* INSERT for all of t's columns; ids as they are (OVERRIDING SYSTEM VALUE:
 * an identity column takes the copied id, not the next of its sequence). */
static int insert_sql(const struct mig_tab *t, char *sql, size_t cap)
{
	size_t o = (size_t)snprintf(sql, cap, "INSERT INTO \"%s\" (", t->name);
	for (int i = 0; i < t->ncol && o < cap; i++)
		o += (size_t)snprintf(sql + o, cap - o, "%s\"%s\"", i ? ", " : "",
		                      t->col[i].name);
	if (o < cap)
		o += (size_t)snprintf(sql + o, cap - o,
		                      ") OVERRIDING SYSTEM VALUE VALUES (");
	for (int i = 0; i < t->ncol && o < cap; i++)
		o += (size_t)snprintf(sql + o, cap - o, "%s$%d", i ? ", " : "", i + 1);
	if (o < cap)
		o += (size_t)snprintf(sql + o, cap - o, ")");
	return o < cap ? 0 : -1;
}

static int select_sql(const struct mig_tab *t, char *sql, size_t cap)
{
	size_t o = (size_t)snprintf(sql, cap, "SELECT ");
	for (int i = 0; i < t->ncol && o < cap; i++)
		o += (size_t)snprintf(sql + o, cap - o, "%s\"%s\"", i ? ", " : "",
		                      t->col[i].name);
	if (o < cap)
		o += (size_t)snprintf(sql + o, cap - o, " FROM \"%s\" ORDER BY rowid",
		                      t->name);
	return o < cap ? 0 : -1;
}

/* One SQLite value as the parameter of column c; 0, or -1 with err. */
static int param(struct ctl_mig *m, const struct mig_tab *t, int c, sqlite3_stmt *st,
                 char num[24], const char **v, int *len, int *fmt, char *err,
                 size_t errlen)
{
	int ty = sqlite3_column_type(st, c);
	*v = NULL;
	*len = 0;
	*fmt = 0;
	if (ty == SQLITE_NULL)
		return 0;
	switch (t->col[c].kind) {
	case K_INT:
	case K_BOOL:
		if (ty != SQLITE_INTEGER)
			break;
		if (t->col[c].kind == K_BOOL)
			snprintf(num, 24, "%s", sqlite3_column_int64(st, c) ? "t" : "f");
		else
			snprintf(num, 24, "%lld", (long long)sqlite3_column_int64(st, c));
		*v = num;
		return 0;
	case K_TEXT: {
		const char *s = (const char *)sqlite3_column_text(st, c);
		int n = sqlite3_column_bytes(st, c);
		if (!s || (size_t)n != strlen(s))
			return fail(err, errlen,
			            "%s: %s.%s holds text with a NUL byte, which "
			            "PostgreSQL text cannot store",
			            m->file, t->name, t->col[c].name);
		*v = s;
		return 0;
	}
	case K_BYTEA: {
		const void *b = sqlite3_column_blob(st, c);
		*len = sqlite3_column_bytes(st, c);
		*v = b ? b : "";
		*fmt = 1; /* binary: the bytes as they are */
		return 0;
	}
	}
	return fail(err, errlen, "%s: %s.%s holds a %s where PostgreSQL wants an integer",
	            m->file, t->name, t->col[c].name,
	            ty == SQLITE_TEXT   ? "text"
	            : ty == SQLITE_BLOB ? "blob"
	                                : "real");
}

static int copy_rows(struct ctl_mig *m, struct mig_tab *t, int idx,
                     ctl_mig_progress_fn fn, void *arg, char *err, size_t errlen)
{
	char sql[4096], stname[16], num[MIG_COLS_MAX][24];
	const char *v[MIG_COLS_MAX];
	int len[MIG_COLS_MAX], fmt[MIG_COLS_MAX];
	sqlite3_stmt *st = NULL;
	if (insert_sql(t, sql, sizeof sql) < 0)
		return fail(err, errlen, "table %s: too many columns", t->name);
	snprintf(stname, sizeof stname, "mig_%d", idx);
	PGresult *r = PQprepare(m->pg, stname, sql, t->ncol, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		PQclear(r);
		return pg_fail(m, err, errlen, t->name);
	}
	PQclear(r);
	if (select_sql(t, sql, sizeof sql) < 0 ||
	    sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(err, errlen, "%s: table %s: %s", m->file, t->name,
		            sqlite3_errmsg(m->db));
	int rc = 0, s;
	while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
		for (int c = 0; c < t->ncol && rc == 0; c++)
			rc = param(m, t, c, st, num[c], &v[c], &len[c], &fmt[c], err,
			           errlen);
		if (rc)
			break;
		r = PQexecPrepared(m->pg, stname, t->ncol, v, len, fmt, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			char line[400];
			ctl_cli_one_line(line, sizeof line, PQresultErrorMessage(r));
			rc = fail(err, errlen, "%s: copying %s row %lld: %s", m->where,
			          t->name, (long long)t->copied + 1, line);
		}
		PQclear(r);
		if (rc == 0 && ++t->copied % CTL_MIG_PROGRESS_ROWS == 0 && fn)
			fn(arg, t->name, t->copied, t->sq_rows);
	}
	if (rc == 0 && s != SQLITE_DONE)
		rc = fail(err, errlen, "%s: table %s: %s", m->file, t->name,
		          sqlite3_errmsg(m->db));
	sqlite3_finalize(st);
	if (rc == 0 && fn && t->copied > CTL_MIG_PROGRESS_ROWS &&
	    t->copied % CTL_MIG_PROGRESS_ROWS)
		fn(arg, t->name, t->copied, t->sq_rows);
	return rc;
}

/* A table's row count on the PostgreSQL side, -1 on error. */
static int64_t pg_count(struct ctl_mig *m, const char *table, char *err, size_t errlen)
{
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
	PGresult *r = pg_run(m, sql, 0, NULL, PGRES_TUPLES_OK, err, errlen);
	if (!r)
		return -1;
	int64_t n = atoll(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

static int prepare_table(struct ctl_mig *m, struct mig_tab *t, char *err, size_t errlen)
{
	char sql[128];
	bool ok;
	if (columns(m, t, err, errlen) < 0)
		return -1;
	snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", t->name);
	t->sq_rows = sq_int(m, sql, NULL, &ok);
	if (!ok)
		return fail(err, errlen, "%s: %s", m->file, sqlite3_errmsg(m->db));
	int64_t n = pg_count(m, t->name, err, errlen);
	if (n < 0)
		return -1;
	if (n > 0)
		return fail(err, errlen,
		            "the %s is not empty (table %s has %lld rows): migrate "
		            "copies into an empty database only; create a new one "
		            "(createdb) and migrate into that",
		            m->where, t->name, (long long)n);
	return 0;
}

/* The identity sequence of t.id (if it has one) past the largest id ever
 * issued: SQLite's AUTOINCREMENT counter, which remembers removed rows (a
 * node id must never come back: tombstones name it). */
static int set_sequence(struct ctl_mig *m, const struct mig_tab *t, char *err,
                        size_t errlen)
{
	char qname[80], sql[128], val[24];
	bool ok;
	if (!t->has_id)
		return 0;
	snprintf(qname, sizeof qname, "\"%s\"", t->name);
	const char *v[3] = {qname, NULL, NULL};
	PGresult *r = pg_run(m, "SELECT pg_get_serial_sequence($1, 'id')", 1, v,
	                     PGRES_TUPLES_OK, err, errlen);
	if (!r)
		return -1;
	if (PQgetisnull(r, 0, 0)) { /* id is not generated (meta, policy, servers) */
		PQclear(r);
		return 0;
	}
	snprintf(sql, sizeof sql, "SELECT max(id) FROM \"%s\"", t->name);
	int64_t top = sq_int(m, sql, NULL, &ok);
	int64_t seq =
	    sq_int(m, "SELECT seq FROM sqlite_sequence WHERE name = ?", t->name, &ok);
	if (ok && seq > top)
		top = seq;
	snprintf(val, sizeof val, "%lld", (long long)(top > 0 ? top : 1));
	char seqname[256];
	snprintf(seqname, sizeof seqname, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	v[0] = seqname;
	v[1] = val;
	v[2] = top > 0 ? "t" : "f"; /* 1, not yet called: the first id is 1 */
	r = pg_run(m, "SELECT setval($1::regclass, $2::bigint, $3::boolean)", 3, v,
	           PGRES_TUPLES_OK, err, errlen);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int copy_all(struct ctl_mig *m, struct mig_tab *t, int n, ctl_mig_progress_fn fn,
                    void *arg, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++)
		if (prepare_table(m, &t[i], err, errlen) < 0)
			return -1;
	for (int i = 0; i < n; i++)
		if (copy_rows(m, &t[i], i, fn, arg, err, errlen) < 0)
			return -1;
	for (int i = 0; i < n; i++) {
		if (set_sequence(m, &t[i], err, errlen) < 0)
			return -1;
		int64_t got = pg_count(m, t[i].name, err, errlen);
		if (got < 0)
			return -1;
		if (got != t[i].sq_rows || t[i].copied != t[i].sq_rows)
			return fail(err, errlen,
			            "table %s: %lld rows in SQLite, %lld copied, %lld in "
			            "PostgreSQL: not committed",
			            t[i].name, (long long)t[i].sq_rows,
			            (long long)t[i].copied, (long long)got);
	}
	return 0;
}

/* BEGIN, and lock meta: a server or an init on the target waits for the
 * copy, then finds the copied mesh. */
static int begin(struct ctl_mig *m, char *err, size_t errlen)
{
	PGresult *r = pg_run(m, "BEGIN", 0, NULL, PGRES_COMMAND_OK, err, errlen);
	if (!r)
		return -1;
	PQclear(r);
	r = pg_run(m, "LOCK TABLE meta IN EXCLUSIVE MODE", 0, NULL, PGRES_COMMAND_OK, err,
	           errlen);
	if (!r) {
		PQclear(PQexec(m->pg, "ROLLBACK"));
		return -1;
	}
	PQclear(r);
	return 0;
}

int ctl_mig_copy(struct ctl_mig *m, ctl_mig_progress_fn fn, void *arg,
                 struct ctl_mig_result *res, char *err, size_t errlen)
{
	struct mig_tab *t = calloc(CTL_MIG_TABLES_MAX, sizeof *t);
	int n = 0;
	double t0 = now_s();
	memset(res, 0, sizeof *res);
	if (!t)
		return fail(err, errlen, "out of memory");
	if (list_tables(m, t, &n, err, errlen) < 0 || begin(m, err, errlen) < 0) {
		free(t);
		return -1;
	}
	PGresult *r = NULL;
	if (copy_all(m, t, n, fn, arg, err, errlen) < 0 ||
	    !(r = pg_run(m, "COMMIT", 0, NULL, PGRES_COMMAND_OK, err, errlen))) {
		PQclear(PQexec(m->pg, "ROLLBACK"));
		free(t);
		return -1;
	}
	PQclear(r);
	for (int i = 0; i < n; i++) {
		snprintf(res->t[i].name, sizeof res->t[i].name, "%s", t[i].name);
		res->t[i].rows = t[i].copied;
		res->rows += t[i].copied;
	}
	res->n = n;
	free(t);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(m->db, "SELECT mesh_id FROM meta", -1, &st, NULL) ==
	        SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(res->mesh_id, sizeof res->mesh_id, "%s",
		         (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	res->seconds = now_s() - t0;
	return 0;
}
