/* mesh-control's store: API keys for the admin API. Create, list, revoke,
 * check (unknown / wrong / malformed / revoked are refused with distinct
 * errors), last_used, only a hash on disk (the secret is not in the database
 * file), and the migration of a schema v1 database (no api_keys table) that
 * keeps its data. Each test gets a fresh directory under /tmp and a fresh
 * store: SQLite, or PostgreSQL under MESH_TEST_PG_URL (store_fixture.h; the
 * SQLite migration test is skipped there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "servers/control/store.h"
#include "store_fixture.h"

#define NOW 1700000000

struct t {
	char tmp[64];
	char dir[96];
	char db[128];
	struct ctl_store *st;
	struct test_store ts;
	bool opened;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

/* The first open makes a fresh store, later ones reopen it. */
static struct ctl_store *open_store(struct t *t)
{
	if (t->opened)
		return test_store_reopen(&t->ts);
	t->opened = true;
	return test_store_open_fresh(&t->ts, t->dir);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	strcpy(t->tmp, "/tmp/ctlapikeys-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	snprintf(t->db, sizeof t->db, "%s/control.db", t->dir);
	t->st = open_store(t);
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_store_close(t->st);
	test_store_drop(&t->ts);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* True if needle occurs in the file's bytes (the database and its WAL). */
static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t cap = 1 << 20, n = 0, nl = strlen(needle);
	char *buf = malloc(cap);
	size_t r;
	bool found = false;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	fclose(f);
	for (size_t i = 0; !found && i + nl <= n; i++)
		found = !memcmp(buf + i, needle, nl);
	free(buf);
	return found;
}

static void create_list_check_revoke(void **state)
{
	struct t *t = *state;
	char s1[CTL_SECRET_MAX], s2[CTL_SECRET_MAX];
	struct ctl_apikey k1, k2, got;

	assert_int_equal(
	    ctl_store_apikey_create(t->st, "ci robot", NOW, s1, sizeof s1, &k1), 0);
	assert_int_equal(
	    ctl_store_apikey_create(t->st, NULL, NOW + 1, s2, sizeof s2, &k2), 0);
	assert_int_equal(k1.id, 1);
	assert_int_equal(k2.id, 2);
	assert_string_equal(k1.description, "ci robot");
	assert_string_equal(k2.description, "");
	assert_int_equal(strncmp(s1, "mapi-1-", 7), 0);
	assert_int_equal(strlen(s1), 7 + 48);
	assert_int_equal(strncmp(s2, "mapi-2-", 7), 0);
	assert_string_not_equal(s1 + 7, s2 + 7);

	struct ctl_apikey *v;
	size_t n;
	assert_int_equal(ctl_store_apikey_list(t->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, 1);
	assert_string_equal(v[0].description, "ci robot");
	assert_false(v[0].revoked);
	assert_int_equal(v[0].last_used, 0);
	assert_int_equal(v[1].created, NOW + 1);
	free(v);

	/* Good secrets pass and record last_used (at most once a minute). */
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 10, &got), 0);
	assert_int_equal(got.id, 1);
	assert_int_equal(got.last_used, NOW + 10);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 20, &got), 0);
	assert_int_equal(got.last_used, NOW + 10);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW + 100, &got), 0);
	assert_int_equal(got.last_used, NOW + 100);
	assert_int_equal(ctl_store_apikey_check(t->st, s2, NOW, NULL), 0);

	/* Wrong secret for a real id, another key's id, malformed, unknown. */
	char bad[CTL_SECRET_MAX];
	strcpy(bad, s1);
	bad[strlen(bad) - 1] ^= 1;
	assert_int_equal(ctl_store_apikey_check(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	memcpy(bad, "mapi-2-", 7); /* key 2's id with key 1's random part */
	strcpy(bad + 7, s1 + 7);
	assert_int_equal(ctl_store_apikey_check(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	snprintf(bad, sizeof bad, "mapi-99-%.48s", s1 + 7);
	assert_int_equal(ctl_store_apikey_check(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	const char *junk[] = {
	    "",          "mapi-",
	    "mapi-1",    "mapi-1-",
	    "mapi--abc", "mkey-1-000000000000000000000000000000000000000000000000",
	    "mapi-1-00", "Bearer"};
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
		assert_int_equal(ctl_store_apikey_check(t->st, junk[i], NOW, NULL),
		                 CTL_STORE_EKEY_UNKNOWN);
	char longer[CTL_SECRET_MAX + 8];
	snprintf(longer, sizeof longer, "%s0", s1);
	assert_int_equal(ctl_store_apikey_check(t->st, longer, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);

	/* Revoked: distinct error, only for the right secret. */
	assert_int_equal(ctl_store_apikey_revoke(t->st, 1), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW, NULL),
	                 CTL_STORE_EKEY_REVOKED);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "revoked"));
	strcpy(bad, s1);
	bad[10] = bad[10] == 'a' ? 'b' : 'a';
	assert_int_equal(ctl_store_apikey_check(t->st, bad, NOW, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_apikey_check(t->st, s2, NOW, NULL), 0);
	assert_int_equal(ctl_store_apikey_revoke(t->st, 1), 0); /* idempotent */
	assert_int_equal(ctl_store_apikey_revoke(t->st, 42), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_apikey_list(t->st, &v, &n), 0);
	assert_true(v[0].revoked);
	assert_false(v[1].revoked);
	free(v);

	/* Bad arguments. */
	char desc[CTL_APIKEY_DESC_MAX + 2];
	memset(desc, 'a', sizeof desc - 1);
	desc[sizeof desc - 1] = 0;
	assert_int_equal(ctl_store_apikey_create(t->st, desc, NOW, bad, sizeof bad, NULL),
	                 CTL_STORE_EINVAL);
	assert_int_equal(
	    ctl_store_apikey_create(t->st, "tab\there", NOW, bad, sizeof bad, NULL),
	    CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_apikey_create(t->st, "x", NOW, bad, 10, NULL),
	                 CTL_STORE_EINVAL);
	desc[CTL_APIKEY_DESC_MAX] = 0;
	assert_int_equal(ctl_store_apikey_create(t->st, desc, NOW, bad, sizeof bad, NULL),
	                 0);

	/* Keys survive a reopen; auth keys and API keys are separate. */
	ctl_store_close(t->st);
	t->st = open_store(t);
	assert_int_equal(ctl_store_apikey_check(t->st, s2, NOW, NULL), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s1, NOW, NULL),
	                 CTL_STORE_EKEY_REVOKED);
	struct ctl_authkey ak;
	assert_int_equal(ctl_store_key_use(t->st, s2, NOW, &ak), CTL_STORE_EKEY_UNKNOWN);
}

/* PostgreSQL: the row holds the secret's BLAKE2b hash and no trace of the
 * secret's random part. */
static void only_a_hash_is_stored_pg(struct t *t, const char *s)
{
	uint8_t h[32];
	char hex[65], sql[512];
	crypto_generichash(h, sizeof h, (const uint8_t *)s, strlen(s), NULL, 0);
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	PGconn *c = test_store_raw(&t->ts);
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM api_keys WHERE id = 1 AND length(hash) = 32"
	         " AND encode(hash, 'hex') = '%s'",
	         hex);
	assert_int_equal(test_store_pg_int(c, sql), 1);
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM api_keys WHERE strpos(encode(hash, 'hex') ||"
	         " encode(hash, 'escape') || description, '%.48s') > 0",
	         s + 7);
	assert_int_equal(test_store_pg_int(c, sql), 0);
	PQfinish(c);
}

static void only_a_hash_is_stored(void **state)
{
	struct t *t = *state;
	char s[CTL_SECRET_MAX], wal[160];
	assert_int_equal(
	    ctl_store_apikey_create(t->st, "hash test", NOW, s, sizeof s, NULL), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s, NOW, NULL), 0);
	if (test_store_is_pg()) {
		only_a_hash_is_stored_pg(t, s);
		return;
	}
	ctl_store_close(t->st); /* checkpoints the WAL into the file */
	t->st = NULL;
	snprintf(wal, sizeof wal, "%s-wal", t->db);
	assert_true(file_has(t->db, "hash test")); /* the scan works */
	assert_false(file_has(t->db, s + 7));
	assert_false(file_has(wal, s + 7));
	assert_int_equal(raw_int(t->db, "SELECT length(hash) FROM api_keys WHERE id = 1"),
	                 32);
	t->st = open_store(t);
	assert_int_equal(ctl_store_apikey_check(t->st, s, NOW, NULL), 0);
}

static void migrates_from_version_1(void **state)
{
	struct t *t = *state;
	char sec[CTL_SECRET_MAX], s[CTL_SECRET_MAX];
	struct ctl_authkey_params p = {.reusable = true, .now = NOW};
	struct ctl_meta m1, m2;

	if (test_store_is_pg())
		skip(); /* SQLite's own schema history */
	assert_int_equal(ctl_store_key_create(t->st, &p, sec, sizeof sec, NULL), 0);
	assert_int_equal(ctl_store_get_meta(t->st, &m1), 0);
	ctl_store_close(t->st);
	t->st = NULL;
	assert_int_equal(raw_int(t->db, "PRAGMA user_version"), 7);
	/* Make it a v1 database: the schema before API keys (and relays, v3,
	 * admission, v4, users and the policy, v5, and the owner's users row,
	 * v6, several servers, v7), with its data. */
	raw_exec(
	    t->db,
	    "ALTER TABLE nodes DROP COLUMN online_server; DROP TABLE servers; "
	    "ALTER TABLE nodes DROP COLUMN user_id; "
	    "DROP TABLE users; DROP TABLE policy; DROP INDEX nodes_user; "
	    "DROP INDEX auth_keys_user; ALTER TABLE meta DROP COLUMN policy_revision; "
	    "ALTER TABLE auth_keys DROP COLUMN user; ALTER TABLE nodes DROP COLUMN user; "
	    "DROP TABLE api_keys; DROP TABLE relay_keys; DROP TABLE relays; "
	    "DROP TRIGGER nodes_removed_machine; DROP TABLE removed_machines; "
	    "DROP INDEX nodes_disco; DROP INDEX nodes_pending; "
	    "ALTER TABLE nodes DROP COLUMN source; "
	    "ALTER TABLE nodes DROP COLUMN expiry_key_seq; DROP TRIGGER nodes_removed; "
	    "CREATE TRIGGER nodes_removed AFTER DELETE ON nodes BEGIN"
	    " INSERT INTO node_removals (node_id, version)"
	    " SELECT OLD.id, map_version FROM meta WHERE id = 1; END; "
	    "PRAGMA user_version = 1");
	assert_int_equal(
	    raw_int(t->db, "SELECT count(*) FROM sqlite_master WHERE name = 'api_keys'"),
	    0);

	t->st = open_store(t);
	assert_int_equal(raw_int(t->db, "PRAGMA user_version"), 7);
	assert_int_equal(
	    raw_int(t->db, "SELECT count(*) FROM sqlite_master WHERE name = 'api_keys'"),
	    1);
	assert_int_equal(ctl_store_get_meta(t->st, &m2), 0);
	assert_string_equal(m1.mesh_id, m2.mesh_id);
	assert_int_equal(ctl_store_key_use(t->st, sec, NOW, NULL), 0);
	assert_int_equal(ctl_store_apikey_create(t->st, NULL, NOW, s, sizeof s, NULL), 0);
	assert_int_equal(ctl_store_apikey_check(t->st, s, NOW, NULL), 0);

	/* Reopening at v7 changes nothing; a newer schema is refused. */
	ctl_store_close(t->st);
	t->st = open_store(t);
	assert_int_equal(ctl_store_apikey_check(t->st, s, NOW, NULL), 0);
	ctl_store_close(t->st);
	t->st = NULL;
	raw_exec(t->db, "PRAGMA user_version = 99");
	char err[256];
	assert_null(ctl_store_open_sqlite(t->dir, err, sizeof err));
	assert_non_null(strstr(err, "newer"));
}

static int fail_at(const char *point, void *arg)
{
	return !strcmp(point, (const char *)arg);
}

static void failed_create_leaves_nothing(void **state)
{
	struct t *t = *state;
	char s[CTL_SECRET_MAX] = "";
	ctl_store_set_fault(t->st, fail_at, "apikey_create:before-commit");
	assert_int_equal(ctl_store_apikey_create(t->st, "x", NOW, s, sizeof s, NULL),
	                 CTL_STORE_EIO);
	assert_string_equal(s, "");
	ctl_store_set_fault(t->st, NULL, NULL);
	struct ctl_apikey *v;
	size_t n;
	assert_int_equal(ctl_store_apikey_list(t->st, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(create_list_check_revoke, setup, teardown),
	    cmocka_unit_test_setup_teardown(only_a_hash_is_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(migrates_from_version_1, setup, teardown),
	    cmocka_unit_test_setup_teardown(failed_create_leaves_nothing, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
