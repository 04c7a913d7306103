/* A fresh control store for a unit test, on either engine: SQLite in the
 * test's directory, or, when MESH_TEST_PG_URL names a PostgreSQL server
 * (any database on it that we may CREATE DATABASE from), a new database
 * t_<pid>_<n> on that server, dropped again at teardown. The same test
 * then proves both stores keep the contract of store.h.
 *
 * test_control_store_pg starts a throwaway server (tests/pg.sh) and runs
 * the other store tests with MESH_TEST_PG_URL set; make test runs every
 * control unit test that way (tests/all.sh); by hand:
 *   MESH_TEST_PG_URL=$(tests/pg.sh start /tmp/pg) build/tests/test_control_users
 * MESH_TEST_PG_KEEP_DBS=1 (for a cluster thrown away after the run) leaves
 * the databases: see test_store_keep_dbs.
 *
 * Include after <cmocka.h>. */
#ifndef MESH_TEST_STORE_FIXTURE_H
#define MESH_TEST_STORE_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "servers/control/store.h"

struct test_store {
	char dir[256]; /* SQLite: the data directory */
	char db[64];   /* PostgreSQL: the database's name; "" for SQLite */
	char url[2048];
};

static inline const char *test_store_pg_url(void)
{
	const char *u = getenv("MESH_TEST_PG_URL");
	return u && *u ? u : NULL;
}

static inline bool test_store_is_pg(void)
{
	return test_store_pg_url() != NULL;
}

static inline void test_store_pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* A connection to the server of MESH_TEST_PG_URL, or to db on it. */
static inline PGconn *test_store_pg_connect(const char *db)
{
	const char *const keys[] = {"dbname", "dbname", NULL};
	const char *const vals[] = {test_store_pg_url(), db, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c || PQstatus(c) != CONNECTION_OK)
		fail_msg("PostgreSQL %s: %s", db ? db : "(MESH_TEST_PG_URL)",
		         c ? PQerrorMessage(c) : "out of memory");
	PQsetNoticeProcessor(c, test_store_pg_quiet,
	                     NULL); /* "does not exist, skipping" */
	return c;
}

static inline void test_store_pg_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType t = PQresultStatus(r);
	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* The first column of the first row of sql as a number (-1: no row). */
static inline long long test_store_pg_int(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	long long v = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
	PQclear(r);
	return v;
}

/* The conninfo of c's connection with dbname replaced: key='value' words,
 * so a store opened with it reaches the same server the same way. */
static inline void test_store_pg_url_of(PGconn *c, const char *db, char *out, size_t cap)
{
	PQconninfoOption *opts = PQconninfo(c);
	size_t o = 0;
	out[0] = '\0';
	for (PQconninfoOption *p = opts; p && p->keyword; p++) {
		const char *v = !strcmp(p->keyword, "dbname") ? db : p->val;
		if (!v || !*v)
			continue;
		o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%s='",
		                      o ? " " : "", p->keyword);
		for (; *v && o + 3 < cap; v++) {
			if (*v == '\'' || *v == '\\')
				out[o++] = '\\';
			out[o++] = *v;
		}
		o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "'");
	}
	PQconninfoFree(opts);
	if (o >= cap)
		fail_msg("conninfo longer than %zu bytes", cap);
}

static inline struct ctl_store *test_store_reopen(struct test_store *ts)
{
	char err[512] = "";
	struct ctl_store *st = ts->db[0]
	                           ? ctl_store_open_pg(ts->url, err, sizeof err)
	                           : ctl_store_open_sqlite(ts->dir, err, sizeof err);
	if (!st)
		fail_msg("open: %s", err);
	return st;
}

/* A new, empty store (not initialised): SQLite in dir, or a new database. */
static inline struct ctl_store *test_store_open_fresh(struct test_store *ts,
                                                      const char *dir)
{
	static unsigned n;
	memset(ts, 0, sizeof *ts);
	snprintf(ts->dir, sizeof ts->dir, "%s", dir);
	if (test_store_is_pg()) {
		char sql[128];
		snprintf(ts->db, sizeof ts->db, "t_%ld_%u", (long)getpid(), n++);
		PGconn *c = test_store_pg_connect(NULL);
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", ts->db);
		test_store_pg_exec(c, sql);
		snprintf(sql, sizeof sql, "CREATE DATABASE %s", ts->db);
		test_store_pg_exec(c, sql);
		test_store_pg_url_of(c, ts->db, ts->url, sizeof ts->url);
		PQfinish(c);
	}
	return test_store_reopen(ts);
}

/* A raw connection to the store's database (PostgreSQL only). */
static inline PGconn *test_store_raw(struct test_store *ts)
{
	return test_store_pg_connect(ts->db);
}

/* Whether to leave each test's database instead of dropping it. A DROP
 * DATABASE waits until every backend of the cluster has taken a signal
 * (PostgreSQL 15's smgr barrier), and a backend blocked writing to a
 * client that does not read -- the LISTEN connection of a test's server
 * whose loop is busy with a map of thousands of nodes -- takes it only
 * when that client reads again: with several tests side by side, every
 * teardown waited for another test's busy spell, and the control tests
 * took 10 minutes instead of 4. On a cluster that is removed after the
 * run (make test's), the databases are best left. */
static inline bool test_store_keep_dbs(void)
{
	const char *k = getenv("MESH_TEST_PG_KEEP_DBS");
	return k && !strcmp(k, "1");
}

/* Drops the database (close every store handle on it first). */
static inline void test_store_drop(struct test_store *ts)
{
	if (!ts->db[0])
		return;
	if (test_store_keep_dbs()) {
		ts->db[0] = '\0';
		return;
	}
	char sql[128];
	PGconn *c = test_store_pg_connect(NULL);
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s%s", ts->db,
	         PQserverVersion(c) >= 130000 ? " WITH (FORCE)" : "");
	test_store_pg_exec(c, sql);
	PQfinish(c);
	ts->db[0] = '\0';
}

/* Makes ts->dir a data directory of the store, as `mesh-control init`
 * would: on PostgreSQL, DIR/store.url (0600) names the database, so code
 * that opens a store by directory (ctl_store_open, the CLI) reaches it; on
 * SQLite the directory already is the store. */
static inline void test_store_write_dir(struct test_store *ts)
{
	if (!ts->db[0])
		return;
	char path[320];
	if (mkdir(ts->dir, 0700) < 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", ts->dir, strerror(errno));
	snprintf(path, sizeof path, "%s/store.url", ts->dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
	if (fd < 0)
		fail_msg("%s: %s", path, strerror(errno));
	size_t n = strlen(ts->url);
	if (write(fd, ts->url, n) != (ssize_t)n || write(fd, "\n", 1) != 1)
		fail_msg("%s: %s", path, strerror(errno));
	close(fd);
}

/* Runs sql (statements both engines understand; no BEGIN/COMMIT) in one
 * write transaction on the store's database, from a connection of its own
 * as another process would: the store sees it only by reading (its poll,
 * or ctl_server_notify), never by a notification. */
static inline void test_store_exec(struct test_store *ts, const char *sql)
{
	size_t n = strlen(sql) + 32;
	char *all = malloc(n);
	assert_non_null(all);
	if (ts->db[0]) {
		snprintf(all, n, "BEGIN; %s; COMMIT;", sql);
		PGconn *c = test_store_raw(ts);
		test_store_pg_exec(c, all);
		PQfinish(c);
	} else {
		char path[320], *err = NULL;
		sqlite3 *db = NULL;
		snprintf(all, n, "BEGIN IMMEDIATE; %s; COMMIT;", sql);
		snprintf(path, sizeof path, "%s/control.db", ts->dir);
		if (sqlite3_open(path, &db) != SQLITE_OK)
			fail_msg("%s: %s", path, sqlite3_errmsg(db));
		sqlite3_busy_timeout(db, 5000);
		if (sqlite3_exec(db, all, NULL, NULL, &err) != SQLITE_OK)
			fail_msg("%s: %s", sql, err);
		sqlite3_close(db);
	}
	free(all);
}

/* An SQL expression for 32 random bytes on the store's engine. */
static inline const char *test_store_sql_random32(const struct test_store *ts)
{
	return ts->db[0] ? "decode(md5(random()::text) || md5(random()::text), 'hex')"
	                 : "randomblob(32)";
}

/* The first column of the first row of sql on the store's database
 * (-1: no row). */
static inline long long test_store_int(struct test_store *ts, const char *sql)
{
	if (ts->db[0]) {
		PGconn *c = test_store_raw(ts);
		long long v = test_store_pg_int(c, sql);
		PQfinish(c);
		return v;
	}
	char path[320];
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	long long v = -1;
	snprintf(path, sizeof path, "%s/control.db", ts->dir);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		fail_msg("%s: %s", path, sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

/* Until the PostgreSQL store has its node functions (store_pg_nodes.c),
 * a test that registers nodes is skipped there; it runs once they land. */
static inline void test_store_skip_without_nodes(struct ctl_store *st)
{
	int64_t total, approved;
	if (ctl_store_node_counts(st, &total, &approved) == CTL_STORE_EIO &&
	    strstr(ctl_store_errmsg(st), "not implemented"))
		skip();
}

#endif
