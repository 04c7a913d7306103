/* A fresh control store for a unit test, on either engine: SQLite in the
 * test's directory, or, when MESH_TEST_PG_URL names a PostgreSQL server
 * (any database on it that we may CREATE DATABASE from), a new database
 * t_<pid>_<n> on that server, dropped again at teardown. The same test
 * then proves both stores keep the contract of store.h.
 *
 * test_control_store_pg starts a throwaway server (tests/pg.sh) and runs
 * the other store tests with MESH_TEST_PG_URL set; by hand:
 *   MESH_TEST_PG_URL=$(tests/pg.sh start /tmp/pg) build/tests/test_control_users
 *
 * Include after <cmocka.h>. */
#ifndef MESH_TEST_STORE_FIXTURE_H
#define MESH_TEST_STORE_FIXTURE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Drops the database (close every store handle on it first). */
static inline void test_store_drop(struct test_store *ts)
{
	if (!ts->db[0])
		return;
	char sql[128];
	PGconn *c = test_store_pg_connect(NULL);
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s%s", ts->db,
	         PQserverVersion(c) >= 130000 ? " WITH (FORCE)" : "");
	test_store_pg_exec(c, sql);
	PQfinish(c);
	ts->db[0] = '\0';
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
