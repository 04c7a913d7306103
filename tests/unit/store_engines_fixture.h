/* Store tests on both engines in one run: each test is listed once per
 * engine (STORE_BOTH) and gets a fresh, initialised store of its engine --
 * SQLite in a new directory, or a new database on PostgreSQL: the cluster
 * at MESH_TEST_PG_URL, else a throwaway one tests/pg.sh starts for the
 * group (its half is skipped when PostgreSQL is not installed). Used by
 * test_control_store_pg_nodes.c and test_control_store_pg_batches.c.
 *
 * Include after <cmocka.h>; one test file per binary (the cluster's state
 * is this file's). */
#ifndef MESH_TEST_STORE_ENGINES_H
#define MESH_TEST_STORE_ENGINES_H

#include <ftw.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "servers/control/store.h"

#define NOW 1700000000

struct engine {
	const char *name;
	bool pg;
};
static const struct engine E_SQ = {"sqlite", false}, E_PG = {"postgresql", true};

/* The PostgreSQL cluster of this run. */
static char g_pgdir[64]; /* "" when MESH_TEST_PG_URL was given */
static char g_url[512];  /* "" when there is none: the PG tests skip */
static int g_dbseq;

struct t {
	const struct engine *e;
	char tmp[64];
	char dir[96];
	char db[64];
	char url[1024];
	struct ctl_store *st;
};

/* ---- the cluster and a database per test ------------------------------ */

static inline const char *pg_sh(void)
{
	static char path[512];
	const char *root = getenv("ROOT");
	snprintf(path, sizeof path, "%s/tests/pg.sh", root && *root ? root : ".");
	return path;
}

static inline int group_setup(void **state)
{
	(void)state;
	const char *env = getenv("MESH_TEST_PG_URL");
	if (env && *env) {
		snprintf(g_url, sizeof g_url, "%s", env);
		return 0;
	}
	snprintf(g_pgdir, sizeof g_pgdir, "/tmp/ctlpgn-XXXXXX");
	if (!mkdtemp(g_pgdir))
		return -1;
	char cmd[700];
	snprintf(cmd, sizeof cmd, "%s start %s", pg_sh(), g_pgdir);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(g_url, sizeof g_url, f))
		g_url[0] = 0;
	int st = pclose(f);
	g_url[strcspn(g_url, "\n")] = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		print_message("PostgreSQL is not installed: its half is skipped\n");
		g_url[0] = 0;
		rmdir(g_pgdir);
		g_pgdir[0] = 0;
		return 0;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !g_url[0]) {
		print_error("tests/pg.sh start failed (status %d)\n", st);
		return -1;
	}
	return 0;
}

static inline int group_teardown(void **state)
{
	(void)state;
	if (g_pgdir[0]) {
		char cmd[700];
		snprintf(cmd, sizeof cmd, "%s stop %s", pg_sh(), g_pgdir);
		if (system(cmd) != 0)
			print_error("tests/pg.sh stop failed\n");
	}
	return 0;
}

/* Runs sql on the cluster's own database; false (said) on failure. */
static inline bool pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(g_url);
	PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		print_error("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok;
}

/* The cluster's URL with another database, as key=value words. */
static inline void pg_url_for(const char *db, char *out, size_t cap)
{
	char *err = NULL;
	PQconninfoOption *o = PQconninfoParse(g_url, &err);
	assert_non_null(o);
	size_t len = 0;
	out[0] = 0;
	for (PQconninfoOption *p = o; p->keyword; p++) {
		const char *v = strcmp(p->keyword, "dbname") == 0 ? db : p->val;
		if (!v)
			continue;
		len += (size_t)snprintf(out + len, cap - len, "%s%s='", len ? " " : "",
		                        p->keyword);
		for (const char *c = v; *c && len + 3 < cap; c++) {
			if (*c == '\'' || *c == '\\')
				out[len++] = '\\';
			out[len++] = *c;
		}
		len += (size_t)snprintf(out + len, cap - len, "'");
		assert_true(len < cap);
	}
	PQconninfoFree(o);
}

static inline struct ctl_store *open_store(struct t *t)
{
	char err[256] = "";
	struct ctl_store *st = t->e->pg ? ctl_store_open_pg(t->url, err, sizeof err)
	                                : ctl_store_open_sqlite(t->dir, err, sizeof err);
	if (!st)
		fail_msg("open (%s): %s", t->e->name, err);
	return st;
}

static inline int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	t->e = *state;
	*state = t;
	if (t->e->pg) {
		if (!g_url[0])
			return 0;
		snprintf(t->db, sizeof t->db, "t_%d_%d", (int)getpid(), ++g_dbseq);
		char sql[128];
		snprintf(sql, sizeof sql, "CREATE DATABASE %s", t->db);
		assert_true(pg_admin(sql));
		pg_url_for(t->db, t->url, sizeof t->url);
	} else {
		strcpy(t->tmp, "/tmp/ctlpgn-sq-XXXXXX");
		assert_non_null(mkdtemp(t->tmp));
		snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	}
	t->st = open_store(t);
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	return 0;
}

static inline int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static inline int teardown(void **state)
{
	struct t *t = *state;
	ctl_store_close(t->st);
	if (t->db[0]) {
		/* a failed test may leave a second handle open: end it first */
		char sql[256];
		snprintf(sql, sizeof sql,
		         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		         "WHERE datname = '%s' AND pid <> pg_backend_pid()",
		         t->db);
		pg_admin(sql);
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", t->db);
		pg_admin(sql);
	}
	if (t->tmp[0])
		nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* The test's state; skips a PostgreSQL test without a cluster. */
static inline struct t *T(void **state)
{
	struct t *t = *state;
	if (t->e->pg && !g_url[0])
		skip();
	return t;
}

/* ---- helpers ----------------------------------------------------------- */

/* A registration request for machine i (keys derived from i). */
static inline struct ctl_store_reg req(uint32_t i, const char *host, const char *secret)
{
	struct ctl_store_reg r = {.hostname = host, .auth_secret = secret, .now = NOW};
	memset(r.machine_key, 0x11, CTL_KEY_LEN);
	memset(r.node_key, 0x22, CTL_KEY_LEN);
	memset(r.disco_key, 0x33, CTL_KEY_LEN);
	memcpy(r.machine_key, &i, sizeof i);
	memcpy(r.node_key, &i, sizeof i);
	memcpy(r.disco_key, &i, sizeof i);
	return r;
}

static inline void key(struct t *t, bool reusable, bool eph, const char *user,
                       char *secret)
{
	struct ctl_authkey_params p = {
	    .reusable = reusable, .ephemeral = eph, .user = user, .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &p, secret, CTL_SECRET_MAX, NULL),
	                 0);
}

static inline int64_t version(struct t *t)
{
	int64_t v = -1;
	assert_int_equal(ctl_store_map_version(t->st, &v), 0);
	return v;
}

static inline int reg(struct t *t, uint32_t i, const char *host, const char *secret,
                      struct ctl_node *n)
{
	struct ctl_store_reg r = req(i, host, secret);
	return ctl_store_node_register(t->st, &r, n, NULL);
}

static inline struct ctl_node node(struct t *t, int64_t id)
{
	struct ctl_node n;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &n), 0);
	return n;
}

static inline double since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static inline int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* 3,000 nodes of one hostname: distinct names and addresses; then one
 * batch writing all of them (timed: a few statements, not 3,000). */

/* A test once per engine, named "<test>/sqlite" and "<test>/postgresql". */
/* clang-format off */
#define STORE_BOTH(f) \
	{#f "/sqlite", f, setup, teardown, (void *)&E_SQ}, \
	{#f "/postgresql", f, setup, teardown, (void *)&E_PG}
#define STORE_PG_ONLY(f) {#f "/postgresql", f, setup, teardown, (void *)&E_PG}
/* clang-format on */

#endif
