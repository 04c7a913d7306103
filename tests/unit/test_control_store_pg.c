/* mesh-control's store on PostgreSQL (store_pg*.c), against a real server:
 * tests/pg.sh starts a throwaway cluster unless MESH_TEST_PG_URL names one
 * (skipped, exit 77, when PostgreSQL is not installed). Covers the schema
 * (versions recorded, a second open migrates nothing, a newer schema is
 * refused, the removal triggers), init/meta/map version, auth keys (a
 * single-use key raced by two processes on two connections is spent
 * once), API keys, relays, users, the policy, unique violations mapped to
 * EEXISTS/ECONFLICT, notifications of every map version bump (LISTEN and
 * the store's watch), a reconnect, DIR/store.url, and finally runs the
 * store tests written for both engines (test_control_users,
 * test_control_store_apikeys) with MESH_TEST_PG_URL set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "servers/control/store.h"
#include "servers/control/store_pg_int.h"
#include "servers/control/store_schema.h"
#include "store_fixture.h"

#define NOW 1700000000

/* The cluster this run started ("" if MESH_TEST_PG_URL was given). */
static struct {
	char dir[64];
	bool skip; /* PostgreSQL is not installed */
} g;

struct t {
	char tmp[64];
	struct test_store ts;
	struct ctl_store *st;
};

/* ---- cluster and fixtures -------------------------------------------- */

/* tests/pg.sh of this tree: run.sh exports ROOT; by hand, the binary sits
 * in BUILD/tests/ of the tree. */
static void pg_script(char *out, size_t cap)
{
	const char *root = getenv("ROOT");
	char exe[PATH_MAX];
	ssize_t n;
	if (root && *root) {
		snprintf(out, cap, "%s/tests/pg.sh", root);
		if (access(out, X_OK) == 0)
			return;
	}
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		snprintf(out, cap, "%s/../../tests/pg.sh", dirname(exe));
		if (access(out, X_OK) == 0)
			return;
	}
	snprintf(out, cap, "tests/pg.sh");
}

static int group_setup(void **state)
{
	(void)state;
	if (sodium_init() < 0)
		return -1;
	if (test_store_is_pg())
		return 0;
	char script[PATH_MAX + 32], cmd[PATH_MAX + 128], url[1024] = "";
	pg_script(script, sizeof script);
	strcpy(g.dir, "/tmp/ctlpg-XXXXXX");
	if (!mkdtemp(g.dir))
		return -1;
	snprintf(cmd, sizeof cmd, "%s start %s", script, g.dir);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	if (!fgets(url, sizeof url, p))
		url[0] = '\0';
	int st = pclose(p);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		g.skip = true;
		rmdir(g.dir);
		g.dir[0] = '\0';
		return 0;
	}
	url[strcspn(url, "\n")] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !url[0]) {
		fprintf(stderr, "%s: failed (status %d)\n", cmd, st);
		return -1;
	}
	setenv("MESH_TEST_PG_URL", url, 1);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (!g.dir[0])
		return 0;
	char script[PATH_MAX + 32], cmd[PATH_MAX + 128];
	pg_script(script, sizeof script);
	snprintf(cmd, sizeof cmd, "%s stop %s", script, g.dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

/* A fresh database, not initialised (none when PostgreSQL is missing:
 * cmocka counts a skip() in a setup as an error, so T() skips). */
static int setup(void **state)
{
	*state = NULL;
	if (g.skip)
		return 0;
	struct t *t = calloc(1, sizeof *t);
	strcpy(t->tmp, "/tmp/ctlpgt-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	t->st = test_store_open_fresh(&t->ts, t->tmp);
	assert_string_equal(ctl_store_kind(t->st), "postgresql");
	*state = t;
	return 0;
}

static void init_store(struct ctl_store *st)
{
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(st, &p), 0);
}

static int setup_init(void **state)
{
	setup(state);
	if (*state)
		init_store(((struct t *)*state)->st);
	return 0;
}

static struct t *T(void **state)
{
	if (!*state)
		skip();
	return *state;
}

static int teardown(void **state)
{
	struct t *t = *state;
	if (!t)
		return 0;
	ctl_store_close(t->st);
	test_store_drop(&t->ts);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static int64_t version(struct ctl_store *st)
{
	int64_t v = -1;
	assert_int_equal(ctl_store_map_version(st, &v), 0);
	return v;
}

/* ---- schema ---------------------------------------------------------- */

static void schema_recorded_once_newer_refused(void **state)
{
	struct t *t = T(state);
	char err[512];
	PGconn *c = test_store_raw(&t->ts);

	assert_int_equal(ctl_schema_version, 7);
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM schema_version"), 7);
	assert_int_equal(test_store_pg_int(c, "SELECT max(version) FROM schema_version"),
	                 ctl_schema_version);
	long long applied =
	    test_store_pg_int(c, "SELECT sum(applied) FROM schema_version");
	/* Every table of the SQLite schema exists here too. */
	static const char *const tables[] = {
	    "meta",     "auth_keys",  "nodes",  "node_removals",
	    "api_keys", "relay_keys", "relays", "removed_machines",
	    "users",    "policy",     "servers"};
	for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
		char sql[128];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[i]);
		assert_int_equal(test_store_pg_int(c, sql), 0);
	}

	/* A second open (and a second handle at once) migrates nothing. */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	ctl_store_close(t->st);
	t->st = test_store_reopen(&t->ts);
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM schema_version"), 7);
	assert_int_equal(test_store_pg_int(c, "SELECT sum(applied) FROM schema_version"),
	                 applied);
	ctl_store_close(st2);

	/* A database from a newer program is refused, by version. */
	test_store_pg_exec(c, "INSERT INTO schema_version VALUES (8, 0)");
	assert_null(ctl_store_open_pg(t->ts.url, err, sizeof err));
	assert_non_null(strstr(err, "schema version 8 is newer than this program's 7"));
	PQfinish(c);
}

/* Two servers starting on an empty database at once: the advisory lock
 * lets one migrate, the other finds the schema made. */
static void concurrent_first_opens_migrate_once(void **state)
{
	struct t *t = T(state);
	ctl_store_close(t->st);
	t->st = NULL;
	test_store_drop(&t->ts);
	t->st = test_store_open_fresh(&t->ts, t->tmp);
	ctl_store_close(t->st);
	t->st = NULL;
	PGconn *c = test_store_raw(&t->ts);
	test_store_pg_exec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");

	pid_t kids[4];
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			char err[512];
			struct ctl_store *st =
			    ctl_store_open_pg(t->ts.url, err, sizeof err);
			if (!st)
				fprintf(stderr, "open: %s\n", err);
			_exit(st ? 0 : 1);
		}
	}
	for (int i = 0; i < 4; i++) {
		int status;
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM schema_version"), 7);
	PQfinish(c);
	t->st = test_store_reopen(&t->ts);
}

/* A migration that fails leaves nothing behind (one transaction) and the
 * message names the version. */
static void failed_migration_rolls_back(void **state)
{
	struct t *t = T(state);
	char err[512];
	ctl_store_close(t->st);
	t->st = NULL;
	PGconn *c = test_store_raw(&t->ts);
	test_store_pg_exec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
	                      " CREATE TABLE meta (x INTEGER)");
	assert_null(ctl_store_open_pg(t->ts.url, err, sizeof err));
	assert_non_null(
	    strstr(err, "schema version 1: relation \"meta\" already exists"));
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM pg_tables WHERE"
	                                      " schemaname = 'public'"),
	                 1);
	test_store_pg_exec(c, "DROP TABLE meta");
	PQfinish(c);
	t->st = test_store_reopen(&t->ts);
}

/* The removal triggers: a tombstone at the current map version, and the
 * machine remembered with the largest auth key id issued (key_seq) and
 * the time as unix seconds. */
static void removal_triggers(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.reusable = true, .now = NOW};
	for (int i = 0; i < 3; i++)
		assert_int_equal(ctl_store_key_create(t->st, &kp, sec, sizeof sec, NULL),
		                 0);
	PGconn *c = test_store_raw(&t->ts);
	test_store_pg_exec(
	    c, "UPDATE meta SET map_version = 41;"
	       "INSERT INTO nodes (machine_key, node_key, disco_key, hostname,"
	       " name, ipv4, ipv6, approved, ephemeral, created, version) VALUES"
	       " ('\\x01', '\\x02', '\\x03', 'a', 'a', 1, '\\x04', 1, 0, 0, 1),"
	       " ('\\x11', '\\x12', '\\x13', 'b', 'b', 2, '\\x14', 0, 0, 0, 1);"
	       "DELETE FROM nodes");
	/* Only the approved node leaves a tombstone and a removed machine. */
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM node_removals"), 1);
	assert_int_equal(test_store_pg_int(c, "SELECT version FROM node_removals"), 41);
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM removed_machines"),
	                 1);
	assert_int_equal(test_store_pg_int(c, "SELECT key_seq FROM removed_machines"
	                                      " WHERE machine_key = '\\x01'"),
	                 3);
	long long removed = test_store_pg_int(c, "SELECT removed FROM removed_machines");
	long long now = (long long)time(NULL);
	assert_true(removed >= now - 60 && removed <= now + 60);
	/* Removed again later: replaced, with the newer key_seq. */
	assert_int_equal(ctl_store_key_create(t->st, &kp, sec, sizeof sec, NULL), 0);
	test_store_pg_exec(c, "INSERT INTO nodes (machine_key, node_key, disco_key,"
	                      " hostname, name, ipv4, ipv6, approved, ephemeral, created,"
	                      " version) VALUES ('\\x01', '\\x02', '\\x03', 'a', 'a', 1,"
	                      " '\\x04', 1, 0, 0, 1); DELETE FROM nodes");
	assert_int_equal(test_store_pg_int(c, "SELECT count(*) FROM removed_machines"),
	                 1);
	assert_int_equal(test_store_pg_int(c, "SELECT key_seq FROM removed_machines"), 4);
	PQfinish(c);
}

/* ---- plumbing -------------------------------------------------------- */

static void unique_violations_mapped(void **state)
{
	static const char *const ins =
	    "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name, ipv4,"
	    " ipv6, approved, ephemeral, created, version)"
	    " VALUES ($1, $2, '\\x00', 'h', $3, $4, $5, 1, 0, 0, 1)";
	struct t *t = T(state);
	struct pg_store *s = PG(t->st);
	uint8_t a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c6[4] = {9, 9, 9, 9};
	struct pg_params p = {0};

	ctl_pg_p_blob(&p, a, 4);
	ctl_pg_p_blob(&p, a, 4);
	ctl_pg_p_text(&p, "one");
	ctl_pg_p_int(&p, 1);
	ctl_pg_p_blob(&p, a, 4);
	assert_int_equal(ctl_pg_cmd(s, "node insert", ins, &p, NULL), 0);
	/* The same node key: ECONFLICT, as SQLite's nodes.node_key. */
	struct pg_params q = {0};
	ctl_pg_p_blob(&q, b, 4);
	ctl_pg_p_blob(&q, a, 4);
	ctl_pg_p_text(&q, "two");
	ctl_pg_p_int(&q, 2);
	ctl_pg_p_blob(&q, b, 4);
	assert_int_equal(ctl_pg_cmd(s, "node insert", ins, &q, NULL),
	                 CTL_STORE_ECONFLICT);
	assert_string_equal(ctl_store_errmsg(t->st), "node insert: node key in use");
	/* Another unique column (the name): EEXISTS with the server's words. */
	struct pg_params r = {0};
	ctl_pg_p_blob(&r, b, 4);
	ctl_pg_p_blob(&r, b, 4);
	ctl_pg_p_text(&r, "one");
	ctl_pg_p_int(&r, 2);
	ctl_pg_p_blob(&r, c6, 4);
	assert_int_equal(ctl_pg_cmd(s, "node insert", ins, &r, NULL), CTL_STORE_EEXISTS);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "node insert: duplicate key"));
	/* Any other error: EIO. Too many parameters: refused before the server. */
	assert_int_equal(ctl_pg_exec(s, "SELECT * FROM no_such_table"), CTL_STORE_EIO);
	struct pg_params many = {0};
	for (int i = 0; i < PG_MAXP + 1; i++)
		ctl_pg_p_int(&many, i);
	assert_int_equal(ctl_pg_cmd(s, "many", ins, &many, NULL), CTL_STORE_EIO);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "more than"));
	/* Users: EEXISTS with the store's own message. */
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL), 0);
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL),
	                 CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st), "user alice exists already");
}

/* bytea hex output decoding: exactly len bytes, else zeros. */
static void blob_decoding(void **state)
{
	static const char *const sel =
	    "SELECT '\\x00ff10'::bytea, '\\x00ff'::bytea, NULL::bytea, 'abc'::text";
	struct t *t = T(state);
	int rc;
	uint8_t out[3] = {7, 7, 7}, zero[3] = {0};
	PGresult *r = ctl_pg_query(PG(t->st), "blobs", sel, NULL, &rc);
	assert_non_null(r);
	ctl_pg_blob(out, 3, r, 0, 0);
	assert_memory_equal(out, "\x00\xff\x10", 3);
	ctl_pg_blob(out, 3, r, 0, 1); /* too short */
	assert_memory_equal(out, zero, 3);
	memset(out, 7, 3);
	ctl_pg_blob(out, 3, r, 0, 2); /* NULL */
	assert_memory_equal(out, zero, 3);
	memset(out, 7, 3);
	ctl_pg_blob(out, 3, r, 0, 3); /* not hex output */
	assert_memory_equal(out, zero, 3);
	memset(out, 7, 3);
	ctl_pg_blob(out, 3, r, 5, 0); /* no such row */
	assert_memory_equal(out, zero, 3);
	assert_int_equal(ctl_pg_int(r, 0, 3), 0); /* not a number */
	PQclear(r);
}

/* The server drops the connection: the statement in flight fails, the
 * next one reconnects and prepares its statements again. */
static void reconnects_after_a_lost_connection(void **state)
{
	struct t *t = T(state);
	struct ctl_meta m;
	assert_int_equal(ctl_store_get_meta(t->st, &m), 0);
	PGconn *c = test_store_raw(&t->ts);
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)",
	         PQbackendPID(PG(t->st)->db));
	test_store_pg_exec(c, sql);
	PQfinish(c);
	int rc = ctl_store_get_meta(t->st, &m);
	if (rc != 0) /* the usual case: the loss is noticed here */
		assert_int_equal(rc, CTL_STORE_EIO);
	assert_int_equal(ctl_store_get_meta(t->st, &m), 0);
	assert_int_equal(m.created, NOW);
	int64_t rev;
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev), 0);
}

/* ---- meta ------------------------------------------------------------ */

static void init_meta_and_map_version(void **state)
{
	struct t *t = T(state);
	struct ctl_meta m;
	int64_t rev;

	assert_int_equal(ctl_store_get_meta(t->st, &m), CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "run init"));
	assert_int_equal(version(t->st), 0);
	/* A write before init: refused by the meta lock, nothing written. */
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev),
	                 CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "run init"));

	struct ctl_init_params p = {.domain = "Bad Domain", .now = NOW};
	assert_int_equal(ctl_store_init(t->st, &p), CTL_STORE_EINVAL);
	p.domain = "corp.example";
	memset(p.server_public, 0xab, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	assert_int_equal(ctl_store_init(t->st, &p), CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st), "store already initialised");

	/* Another handle (another server) reads the same meta. */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	assert_int_equal(ctl_store_init(st2, &p), CTL_STORE_EEXISTS);
	assert_int_equal(ctl_store_get_meta(st2, &m), 0);
	assert_int_equal(strlen(m.mesh_id), CTL_MESH_ID_LEN);
	assert_int_equal(m.v4_prefix, CTL_V4_PREFIX);
	assert_int_equal(m.v4_bits, CTL_V4_BITS);
	assert_int_equal(m.ula[0], 0xfd);
	assert_int_equal(m.ula_bits, CTL_V6_BITS);
	assert_string_equal(m.domain, "corp.example");
	assert_int_equal(m.server_public[0], 0xab);
	assert_int_equal(m.server_public[31], 0xab);
	assert_int_equal(m.created, NOW);
	struct ctl_meta m1;
	assert_int_equal(ctl_store_get_meta(t->st, &m1), 0);
	assert_memory_equal(&m, &m1, sizeof m);

	assert_int_equal(version(t->st), 0);
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev), 0);
	assert_int_equal(version(t->st), 1);
	assert_int_equal(version(st2), 1);
	ctl_store_close(st2);
}

/* ---- auth keys ------------------------------------------------------- */

static int key(struct ctl_store *st, bool reusable, int64_t expiry, char *sec,
               struct ctl_authkey *k)
{
	struct ctl_authkey_params p = {
	    .reusable = reusable, .expiry = expiry, .tags = "tag:a,tag:b", .now = NOW};
	return ctl_store_key_create(st, &p, sec, CTL_SECRET_MAX, k);
}

static void keys_use_revoke_expire(void **state)
{
	struct t *t = T(state);
	char once[CTL_SECRET_MAX], multi[CTL_SECRET_MAX], old[CTL_SECRET_MAX];
	struct ctl_authkey k;

	assert_int_equal(key(t->st, false, 0, once, &k), 0);
	assert_int_equal(k.id, 1);
	assert_int_equal(strncmp(once, "mkey-1-", 7), 0);
	assert_int_equal(strlen(once), 7 + 48);
	assert_string_equal(k.tags, "tag:a,tag:b");
	assert_int_equal(key(t->st, true, 0, multi, &k), 0);
	assert_int_equal(key(t->st, true, NOW + 10, old, &k), 0);
	assert_int_equal(k.id, 3);

	/* Single use: spent once. */
	assert_int_equal(ctl_store_key_use(t->st, once, NOW, &k), 0);
	assert_int_equal(k.uses, 1);
	assert_false(k.reusable);
	assert_int_equal(ctl_store_key_use(t->st, once, NOW, &k), CTL_STORE_EKEY_USED);
	assert_string_equal(ctl_store_errmsg(t->st), "auth key 1: already used");
	for (int i = 0; i < 3; i++)
		assert_int_equal(ctl_store_key_use(t->st, multi, NOW, &k), 0);
	assert_int_equal(k.uses, 3);
	/* Expired at its expiry. */
	assert_int_equal(ctl_store_key_use(t->st, old, NOW + 9, NULL), 0);
	assert_int_equal(ctl_store_key_use(t->st, old, NOW + 10, NULL),
	                 CTL_STORE_EKEY_EXPIRED);
	/* Wrong, malformed, unknown. */
	char bad[CTL_SECRET_MAX];
	strcpy(bad, multi);
	bad[strlen(bad) - 1] ^= 1;
	assert_int_equal(ctl_store_key_use(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_string_equal(ctl_store_errmsg(t->st), "auth key: unknown key");
	snprintf(bad, sizeof bad, "mkey-99-%.48s", multi + 7);
	assert_int_equal(ctl_store_key_use(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	static const char *const junk[] = {
	    "",           "mkey-",
	    "mkey-2",     "mkey-2-",
	    "mkey--2-ab", "mapi-2-000000000000000000000000000000000000000000000000"};
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
		assert_int_equal(ctl_store_key_use(t->st, junk[i], NOW, NULL),
		                 CTL_STORE_EKEY_UNKNOWN);
		assert_string_equal(ctl_store_errmsg(t->st), "auth key: not a key");
	}
	assert_int_equal(ctl_store_key_use(t->st, NULL, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	/* Revoked: only the right secret learns it. */
	assert_int_equal(ctl_store_key_revoke(t->st, 2), 0);
	assert_int_equal(ctl_store_key_use(t->st, multi, NOW, NULL),
	                 CTL_STORE_EKEY_REVOKED);
	assert_int_equal(ctl_store_key_revoke(t->st, 42), CTL_STORE_ENOTFOUND);
	assert_string_equal(ctl_store_errmsg(t->st), "auth key 42: no such key");

	struct ctl_authkey *v;
	size_t n;
	assert_int_equal(ctl_store_key_list(t->st, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].id, 1);
	assert_int_equal(v[0].uses, 1);
	assert_false(v[0].revoked);
	assert_true(v[1].revoked);
	assert_int_equal(v[1].uses, 3);
	assert_int_equal(v[2].expiry, NOW + 10);
	assert_int_equal(v[2].created, NOW);
	assert_string_equal(v[2].tags, "tag:a,tag:b");
	assert_string_equal(v[2].user, "");
	free(v);

	/* Only the BLAKE2b hash is stored. */
	uint8_t h[32];
	char hex[65], sql[256];
	crypto_generichash(h, sizeof h, (const uint8_t *)once, strlen(once), NULL, 0);
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	snprintf(
	    sql, sizeof sql,
	    "SELECT count(*) FROM auth_keys WHERE id = 1 AND encode(hash, 'hex') = '%s'",
	    hex);
	PGconn *c = test_store_raw(&t->ts);
	assert_int_equal(test_store_pg_int(c, sql), 1);
	PQfinish(c);

	/* Bad arguments. */
	struct ctl_authkey_params p = {.tags = "tag:a b", .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &p, bad, sizeof bad, NULL),
	                 CTL_STORE_EINVAL);
	p.tags = NULL;
	assert_int_equal(ctl_store_key_create(t->st, &p, bad, 10, NULL),
	                 CTL_STORE_EINVAL);
	p.user = "nobody";
	assert_int_equal(ctl_store_key_create(t->st, &p, bad, sizeof bad, NULL),
	                 CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "users create nobody"));
}

/* Two servers (two processes, two connections) spend one single-use key at
 * the same moment: exactly one wins, the other gets EKEY_USED. Without the
 * meta row lock both read uses = 0 and both win. */
static void single_use_key_raced_by_two_servers(void **state)
{
	struct t *t = T(state);
	for (int round = 0; round < 20; round++) {
		char sec[CTL_SECRET_MAX];
		int go[2];
		pid_t kids[2];
		assert_int_equal(key(t->st, false, 0, sec, NULL), 0);
		assert_int_equal(pipe(go), 0);
		for (int i = 0; i < 2; i++) {
			kids[i] = fork();
			assert_true(kids[i] >= 0);
			if (kids[i] == 0) {
				char err[512], c;
				close(go[1]);
				/* Its own connection, made before the start. */
				struct ctl_store *st =
				    ctl_store_open_pg(t->ts.url, err, sizeof err);
				if (!st)
					_exit(100);
				if (read(go[0], &c, 1) != 0)
					_exit(101);
				int rc = ctl_store_key_use(st, sec, NOW, NULL);
				_exit(-rc);
			}
		}
		close(go[0]);
		usleep(100 * 1000); /* both connected and waiting */
		close(go[1]);       /* go: both reads return at once */
		int wins = 0, used = 0;
		for (int i = 0; i < 2; i++) {
			int status;
			assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
			assert_true(WIFEXITED(status));
			int code = WEXITSTATUS(status);
			if (code == 0)
				wins++;
			else if (code == -CTL_STORE_EKEY_USED)
				used++;
			else
				fail_msg("round %d: child exit %d", round, code);
		}
		assert_int_equal(wins, 1);
		assert_int_equal(used, 1);
	}
	struct ctl_authkey *v;
	size_t n;
	assert_int_equal(ctl_store_key_list(t->st, &v, &n), 0);
	assert_int_equal(n, 20);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].uses, 1);
	free(v);
}

/* ---- API keys -------------------------------------------------------- */

static void apikeys(void **state)
{
	struct t *t = T(state);
	char s1[CTL_SECRET_MAX], s2[CTL_SECRET_MAX];
	struct ctl_apikey k, got;

	assert_int_equal(ctl_store_apikey_create(t->st, "ci", NOW, s1, sizeof s1, &k), 0);
	assert_int_equal(k.id, 1);
	assert_int_equal(strncmp(s1, "mapi-1-", 7), 0);
	assert_int_equal(ctl_store_apikey_create(t->st, NULL, NOW, s2, sizeof s2, &k), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 5, &got), 0);
	assert_int_equal(got.last_used, NOW + 5);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 30, &got), 0);
	assert_int_equal(got.last_used, NOW + 5); /* at most once a minute */
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 65, &got), 0);
	assert_int_equal(got.last_used, NOW + 65);
	char bad[CTL_SECRET_MAX];
	strcpy(bad, s1);
	bad[9] = bad[9] == 'a' ? 'b' : 'a';
	assert_int_equal(ctl_store_apikey_check(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_apikey_check(t->st, "mapi-1-", NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_apikey_revoke(t->st, 1), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW, NULL),
	                 CTL_STORE_EKEY_REVOKED);
	assert_int_equal(ctl_store_apikey_revoke(t->st, 9), CTL_STORE_ENOTFOUND);
	/* An auth key's check does not open an API key, nor the reverse. */
	assert_int_equal(ctl_store_key_use(t->st, s2, NOW, NULL), CTL_STORE_EKEY_UNKNOWN);
	struct ctl_apikey *v;
	size_t n;
	assert_int_equal(ctl_store_apikey_list(t->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].description, "ci");
	assert_true(v[0].revoked);
	assert_int_equal(v[0].last_used, NOW + 65);
	assert_string_equal(v[1].description, "");
	free(v);
	/* Seen by another handle. */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	assert_int_equal(ctl_store_apikey_check(st2, s2, NOW, NULL), 0);
	ctl_store_close(st2);
}

/* ---- relays ---------------------------------------------------------- */

static struct ctl_relay_reg relay_req(uint8_t id, const char *secret)
{
	struct ctl_relay_reg r = {.secret = secret,
	                          .region = "eu",
	                          .host = "relay.example",
	                          .port = 443,
	                          .stun_port = 3478,
	                          .tls = true,
	                          .now = NOW};
	memset(r.key, id, sizeof r.key);
	return r;
}

static void relays(void **state)
{
	struct t *t = T(state);
	char s1[CTL_SECRET_MAX], s2[CTL_SECRET_MAX], s3[CTL_SECRET_MAX];
	int64_t id, v0 = version(t->st);
	struct ctl_relay_rec rec;

	assert_int_equal(ctl_store_relay_key_create(t->st, NOW, s1, sizeof s1, &id), 0);
	assert_int_equal(id, 1);
	assert_int_equal(strncmp(s1, "rkey-1-", 7), 0);
	assert_int_equal(ctl_store_relay_key_create(t->st, NOW, s2, sizeof s2, NULL), 0);
	assert_int_equal(ctl_store_relay_key_create(t->st, NOW, s3, sizeof s3, NULL), 0);
	assert_int_equal(version(t->st), v0); /* keys are not in the map */

	/* New: the name "<region>-<n>", a version bump. */
	struct ctl_relay_reg r1 = relay_req(1, s1);
	assert_int_equal(ctl_store_relay_register(t->st, &r1, &rec), 0);
	assert_string_equal(rec.name, "eu-1");
	assert_string_equal(rec.host, "relay.example");
	assert_int_equal(rec.port, 443);
	assert_int_equal(rec.stun_port, 3478);
	assert_true(rec.tls);
	assert_int_equal(rec.key[0], 1);
	assert_int_equal(version(t->st), v0 + 1);
	/* Resume without a secret: same name; unchanged fields, no bump. */
	r1.secret = NULL;
	r1.now = NOW + 5;
	assert_int_equal(ctl_store_relay_register(t->st, &r1, &rec), 0);
	assert_string_equal(rec.name, "eu-1");
	assert_int_equal(version(t->st), v0 + 1);
	r1.port = 8443;
	assert_int_equal(ctl_store_relay_register(t->st, &r1, &rec), 0);
	assert_int_equal(rec.port, 8443);
	assert_int_equal(version(t->st), v0 + 2);
	/* The spent key does not admit another relay. */
	struct ctl_relay_reg r2 = relay_req(2, s1);
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), CTL_STORE_EKEY_USED);
	assert_string_equal(ctl_store_errmsg(t->st), "relay key 1: already used");
	r2.secret = NULL;
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "token --relay"));
	r2.secret = "rkey-x";
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);
	r2.secret = s2;
	r2.region = "bad region";
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), CTL_STORE_EINVAL);
	r2.region = "eu";
	r2.port = 0;
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), CTL_STORE_EINVAL);
	r2.port = 443;
	/* A failed registration spent nothing: s2 still works. */
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), 0);
	assert_string_equal(rec.name, "eu-2");
	/* The lowest free number is reused. */
	assert_int_equal(ctl_store_relay_remove(t->st, "eu-1"), 0);
	assert_int_equal(ctl_store_relay_remove(t->st, "eu-1"), CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "relays list"));
	struct ctl_relay_reg r3 = relay_req(3, s3);
	r3.region = NULL; /* the default region */
	assert_int_equal(ctl_store_relay_register(t->st, &r3, &rec), 0);
	assert_string_equal(rec.name, "default-1");
	/* The removed relay is gone for good: its key is unknown now. */
	r1.secret = NULL;
	assert_int_equal(ctl_store_relay_register(t->st, &r1, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);

	struct ctl_relay_rec *v;
	size_t n;
	assert_int_equal(ctl_store_relay_list(t->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "eu-2");
	assert_string_equal(v[1].name, "default-1");
	assert_string_equal(v[1].region, "default");
	free(v);
}

/* ---- users and the policy -------------------------------------------- */

static void users_and_policy(void **state)
{
	struct t *t = T(state);
	struct ctl_user u, *v;
	size_t n;

	assert_int_equal(ctl_store_user_create(t->st, "Bob", NOW, &u), CTL_STORE_EINVAL);
	/* Listed in byte order whatever the database's collation: give the
	 * column ICU's root collation where the server has it (it sorts
	 * "a_b" before "a-b" before "a.b"). */
	PGconn *c = test_store_raw(&t->ts);
	if (test_store_pg_int(c, "SELECT count(*) FROM pg_collation"
	                         " WHERE collname = 'und-x-icu'") == 1)
		test_store_pg_exec(c, "ALTER TABLE users ALTER COLUMN name"
		                      " TYPE TEXT COLLATE \"und-x-icu\"");
	static const char *const names[] = {"ab", "a_b", "a.b", "a-b"};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(ctl_store_user_create(t->st, names[i], NOW + (int)i, &u),
		                 0);
		assert_int_equal(u.created, NOW + (int)i);
	}
	assert_int_equal(ctl_store_user_list(t->st, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(v[0].name, "a-b");
	assert_string_equal(v[1].name, "a.b");
	assert_string_equal(v[2].name, "a_b");
	assert_string_equal(v[3].name, "ab");
	free(v);

	/* A key for the user keeps it; revoked, the user goes. */
	char sec[CTL_SECRET_MAX];
	struct ctl_authkey k;
	struct ctl_authkey_params p = {.user = "ab", .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &p, sec, sizeof sec, &k), 0);
	assert_string_equal(k.user, "ab");
	assert_int_equal(ctl_store_user_remove(t->st, "ab"), CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st),
	                    "user ab still owns 0 nodes and 1 auth key not revoked (1): "
	                    "revoke its keys first");
	assert_int_equal(ctl_store_key_revoke(t->st, k.id), 0);
	assert_int_equal(ctl_store_user_remove(t->st, "ab"), 0);
	assert_int_equal(ctl_store_user_remove(t->st, "ab"), CTL_STORE_ENOTFOUND);
	assert_string_equal(ctl_store_errmsg(t->st), "no user ab (see users list)");
	/* Nine keys: eight ids and an ellipsis. */
	p.user = "a-b";
	for (int i = 0; i < 9; i++)
		assert_int_equal(ctl_store_key_create(t->st, &p, sec, sizeof sec, NULL),
		                 0);
	assert_int_equal(ctl_store_user_remove(t->st, "a-b"), CTL_STORE_EEXISTS);
	assert_non_null(strstr(ctl_store_errmsg(t->st),
	                       "9 auth keys not revoked (2, 3, 4, 5, 6, 7, 8, 9, ...)"));

	/* The policy: bytes as given (any bytes: bytea), revisions, bumps. */
	static const char text[] = "// caf\xc3\xa9\r\n{\"acls\": [],}\xff\x01";
	struct ctl_policy_rec r;
	int64_t rev, v0 = version(t->st);
	assert_int_equal(ctl_store_policy_get(t->st, &r), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_policy_set(t->st, text, sizeof text - 1, NOW, &rev),
	                 0);
	assert_int_equal(rev, 1);
	assert_int_equal(version(t->st), v0 + 1);
	assert_int_equal(ctl_store_policy_get(t->st, &r), 0);
	assert_int_equal(r.len, sizeof text - 1);
	assert_memory_equal(r.text, text, sizeof text);
	assert_int_equal(r.revision, 1);
	ctl_policy_rec_free(&r);
	assert_int_equal(ctl_store_policy_clear(t->st), 0);
	assert_int_equal(ctl_store_policy_clear(t->st), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev), 0);
	assert_int_equal(rev, 2);
	assert_int_equal(version(t->st), v0 + 3);

	/* An unreadable stored text is an error, not a crash. */
	char sql[128];
	snprintf(sql, sizeof sql,
	         "UPDATE policy SET text = decode(repeat('20', %d), 'hex')",
	         1024 * 1024 + 1);
	test_store_pg_exec(c, sql);
	PQfinish(c);
	assert_int_equal(ctl_store_policy_get(t->st, &r), CTL_STORE_EIO);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "set the policy again"));
	assert_null(r.text);
}

/* ---- notifications --------------------------------------------------- */

/* Waits up to ms for c's socket, then returns the next notification's
 * payload as a number (-1: none). */
static long long next_notify(PGconn *c, int ms)
{
	struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
	PGnotify *n = NULL;
	if (!PQconsumeInput(c))
		return -2;
	n = PQnotifies(c);
	if (!n && poll(&pfd, 1, ms) > 0) {
		assert_true(PQconsumeInput(c));
		n = PQnotifies(c);
	}
	if (!n)
		return -1;
	assert_string_equal(n->relname, CTL_STORE_CHANNEL);
	long long v = strtoll(n->extra, NULL, 10);
	PQfreemem(n);
	return v;
}

static int fault_policy(const char *point, void *arg)
{
	(void)arg;
	return !strcmp(point, "policy:before-commit");
}

static void bump_notifies(void **state)
{
	struct t *t = T(state);
	int64_t rev, v0 = version(t->st);
	PGconn *c = test_store_raw(&t->ts);
	test_store_pg_exec(c, "LISTEN " CTL_STORE_CHANNEL);

	/* Another server's watch: a descriptor and a drain. */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	int fd = ctl_store_watch_fd(st2);
	assert_true(fd >= 0);
	assert_int_equal(ctl_store_watch_fd(st2), fd);
	assert_int_equal(ctl_store_watch_drain(st2), 0);

	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev), 0);
	assert_int_equal(next_notify(c, 5000), v0 + 1);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_int_equal(ctl_store_watch_drain(st2), 1);
	assert_int_equal(ctl_store_watch_drain(st2), 0);

	/* Rolled back: no notification. */
	ctl_store_set_fault(t->st, fault_policy, NULL);
	assert_int_equal(ctl_store_policy_set(t->st, "{ }", 3, NOW, &rev), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(next_notify(c, 300), -1);
	assert_int_equal(version(t->st), v0 + 1);
	/* A relay registration, a relay removal: one each, in order. */
	char sec[CTL_SECRET_MAX];
	struct ctl_relay_rec rec;
	assert_int_equal(ctl_store_relay_key_create(t->st, NOW, sec, sizeof sec, NULL),
	                 0);
	struct ctl_relay_reg rr = relay_req(7, sec);
	assert_int_equal(ctl_store_relay_register(t->st, &rr, &rec), 0);
	assert_int_equal(ctl_store_relay_remove(t->st, rec.name), 0);
	assert_int_equal(next_notify(c, 5000), v0 + 2);
	assert_int_equal(next_notify(c, 5000), v0 + 3);

	/* The watch connection lost: drain says so, watch_fd reconnects. */
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)",
	         PQbackendPID(PG(st2)->watch));
	test_store_pg_exec(c, sql);
	int lost = 0;
	for (int i = 0; i < 50 && lost >= 0; i++) /* as an event loop would */
		if (poll(&pfd, 1, 100) == 1)
			lost = ctl_store_watch_drain(st2);
	assert_true(lost < 0);
	fd = ctl_store_watch_fd(st2);
	assert_true(fd >= 0);
	assert_int_equal(ctl_store_policy_clear(t->st), 0);
	pfd.fd = fd;
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_int_equal(ctl_store_watch_drain(st2), 1);
	ctl_store_close(st2);
	PQfinish(c);
}

/* ---- DIR/store.url --------------------------------------------------- */

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void store_url_file(void **state)
{
	struct t *t = T(state);
	char dir[128], path[192], url[4200], err[512], line[2200];
	snprintf(dir, sizeof dir, "%s/data", t->tmp);
	snprintf(path, sizeof path, "%s/" CTL_STORE_URL_FILE, dir);
	assert_int_equal(mkdir(dir, 0700), 0);

	/* None: SQLite. */
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 1);
	struct ctl_store *st = ctl_store_open(dir, err, sizeof err);
	assert_non_null(st);
	assert_string_equal(ctl_store_kind(st), "sqlite");
	ctl_store_close(st);

	/* Ours, 0600, one line: PostgreSQL, the newline stripped. */
	snprintf(line, sizeof line, "%s\n", t->ts.url);
	write_file(path, line, 0600);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 0);
	assert_string_equal(url, t->ts.url);
	st = ctl_store_open(dir, err, sizeof err);
	assert_non_null(st);
	assert_string_equal(ctl_store_kind(st), "postgresql");
	struct ctl_meta m;
	assert_int_equal(ctl_store_get_meta(st, &m), 0);
	ctl_store_close(st);
	write_file(path, "postgresql://mesh@/x?host=/nonexistent", 0600);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 0);
	write_file(path, "postgres://u@h/db\r\n", 0400);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 0);
	assert_string_equal(url, "postgres://u@h/db");

	/* Readable by others: refused, and the message says the fix. */
	write_file(path, line, 0640);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(ctl_store_open(dir, err, sizeof err));
	assert_non_null(strstr(err, "chmod 600"));
	write_file(path, line, 0604);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);

	/* Not a URL, two lines, empty, too long, a NUL. */
	static const char *const bad[] = {
	    "mysql://x\n", "postgresql://a\npostgresql://b\n", "\n", "", "=x",
	    "host /tmp"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		write_file(path, bad[i], 0600);
		assert_int_equal(
		    ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	}
	write_file(path, "host=/run/pg dbname=mesh\n", 0600);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 0);
	assert_string_equal(url, "host=/run/pg dbname=mesh");
	char *big = malloc(5000);
	strcpy(big, "postgresql://mesh@/mesh?application_name=");
	memset(big + strlen(big), 'a', 4096);
	big[4096] = '\0'; /* exactly 4096 bytes: fits */
	write_file(path, big, 0600);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), 0);
	assert_int_equal(ctl_store_url_read(dir, url, 100, err, sizeof err), -1);
	strcat(big, "a\n"); /* 4098 with its newline */
	write_file(path, big, 0600);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	assert_non_null(strstr(err, "longer than 4096"));
	free(big);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_int_equal(write(fd, "postgresql://a\0b", 16), 16);
	close(fd);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	assert_non_null(strstr(err, "NUL"));

	/* A symlink or a directory: refused. */
	char target[200];
	snprintf(target, sizeof target, "%s/real", t->tmp);
	write_file(target, line, 0600);
	unlink(path);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	assert_non_null(strstr(err, "symbolic link"));
	unlink(path);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(ctl_store_url_read(dir, url, sizeof url, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a regular file"));
	rmdir(path);
}

/* A password in the URL is not repeated in an error. */
static void open_error_hides_the_password(void **state)
{
	struct t *t = T(state);
	char url[2300], err[1024];
	snprintf(url, sizeof url, "%s password='s3cr3t-pw' dbname=no_such_db_here",
	         t->ts.url);
	assert_null(ctl_store_open_pg(url, err, sizeof err));
	assert_non_null(strstr(err, "no_such_db_here"));
	assert_null(strstr(err, "s3cr3t-pw"));
	assert_null(ctl_store_open_pg(
	    "postgresql://u:s3cr3t-pw@/db?host=/nonexistent&port=x", err, sizeof err));
	assert_null(strstr(err, "s3cr3t-pw"));
	/* libpq quotes a badly encoded part of a URI: here the password. */
	assert_null(ctl_store_open_pg("postgresql://u:s3cr3t%zz@/db?host=/nonexistent",
	                              err, sizeof err));
	assert_non_null(strstr(err, "***"));
	assert_null(strstr(err, "s3cr3t"));
}

/* ---- the tests written for both engines ------------------------------- */

static void run_beside(const char *name)
{
	char exe[PATH_MAX], bin[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	snprintf(bin, sizeof bin, "%s/%s", dirname(exe), name);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(bin, bin, (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s with MESH_TEST_PG_URL: status %d", name, status);
}

static void shared_store_tests_on_postgresql(void **state)
{
	(void)state;
	if (g.skip)
		skip();
	run_beside("test_control_users");
	run_beside("test_control_store_apikeys");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(schema_recorded_once_newer_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(concurrent_first_opens_migrate_once, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(failed_migration_rolls_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(removal_triggers, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(unique_violations_mapped, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(blob_decoding, setup, teardown),
	    cmocka_unit_test_setup_teardown(reconnects_after_a_lost_connection,
	                                    setup_init, teardown),
	    cmocka_unit_test_setup_teardown(init_meta_and_map_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(keys_use_revoke_expire, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(single_use_key_raced_by_two_servers,
	                                    setup_init, teardown),
	    cmocka_unit_test_setup_teardown(apikeys, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(relays, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(users_and_policy, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(bump_notifies, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(store_url_file, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(open_error_hides_the_password, setup,
	                                    teardown),
	    cmocka_unit_test(shared_store_tests_on_postgresql),
	};
	int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
	if (g.skip) {
		fprintf(stderr, "PostgreSQL is not installed (make deps): skipped\n");
		return 77;
	}
	return failed;
}
