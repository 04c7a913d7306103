/* Access control in mesh-control's store (issue 16, part 2): users (names,
 * create, list with node counts, every refusal of remove), the user on auth
 * keys and its copy onto the nodes they admit (and on re-authorisation),
 * the stored policy (byte-exact round trip, revisions that keep counting
 * across a clear, the map version bumped in the same transaction, rollback
 * on a fault), the migration of a database made by the schema before users
 * (v4, its SQL below as that version wrote it), and policy_srv.c: node lists
 * from the store (pending and expired nodes left out), validation against
 * the store's nodes, and the user and tag checks against the stored policy.
 * Each test gets a fresh directory under /tmp, removed afterwards, and a
 * fresh store: SQLite, or PostgreSQL under MESH_TEST_PG_URL (store_fixture.h;
 * the SQLite migration test is skipped there). */
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
#include <time.h>
#include <unistd.h>

#include "core/policy/policy.h"
#include "servers/control/policy_srv.h"
#include "servers/control/store.h"
#include "store_fixture.h"

#define NOW 1700000000


struct t {
	char tmp[64];
	char dir[96];
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
	strcpy(t->tmp, "/tmp/ctlusers-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	*state = t;
	return 0;
}

static int setup_init(void **state)
{
	setup(state);
	struct t *t = *state;
	t->st = open_store(t);
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
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

static struct ctl_store_reg req(uint32_t i, const char *host, const char *secret)
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

static int key(struct t *t, const char *user, const char *tags, char *secret,
               struct ctl_authkey *k)
{
	struct ctl_authkey_params p = {
	    .reusable = true, .user = user, .tags = tags, .now = NOW};
	return ctl_store_key_create(t->st, &p, secret, CTL_SECRET_MAX, k);
}

static int64_t version(struct t *t)
{
	int64_t v = -1;
	assert_int_equal(ctl_store_map_version(t->st, &v), 0);
	return v;
}

static void user_names_and_create(void **state)
{
	struct t *t = *state;
	struct ctl_user u;
	static const char *const bad[] = {
	    "",
	    "Alice",
	    "-alice",
	    ".alice",
	    "_alice",
	    "al ice",
	    "alice@",
	    "al/ice",
	    "alicé",
	    "a\n",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(ctl_store_user_create(t->st, bad[i], NOW, &u),
		                 CTL_STORE_EINVAL);
		assert_non_null(
		    strstr(ctl_store_errmsg(t->st), "starting with a letter"));
	}
	assert_int_equal(ctl_store_user_create(t->st, NULL, NOW, &u), CTL_STORE_EINVAL);
	static const char *const good[] = {
	    "alice",
	    "42bob",
	    "a",
	    "x.y_z-1",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 63 */
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(ctl_store_user_create(t->st, good[i], NOW + (int)i, &u),
		                 0);
		assert_string_equal(u.name, good[i]);
		assert_int_equal(u.created, NOW + (int)i);
		assert_true(u.id > 0);
	}
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, &u),
	                 CTL_STORE_EEXISTS);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "user alice exists"));

	struct ctl_user *v;
	size_t n;
	assert_int_equal(ctl_store_user_list(t->st, &v, &n), 0);
	assert_int_equal(n, 5);
	/* by name */
	assert_string_equal(v[0].name, "42bob");
	assert_string_equal(v[1].name, "a");
	assert_string_equal(v[2].name, good[4]);
	assert_string_equal(v[3].name, "alice");
	assert_string_equal(v[4].name, "x.y_z-1");
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].n_nodes, 0);
	free(v);

	/* A user who owns nothing goes; then the name is free again. */
	assert_int_equal(ctl_store_user_remove(t->st, "a"), 0);
	assert_int_equal(ctl_store_user_remove(t->st, "a"), CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "no user a"));
	assert_int_equal(ctl_store_user_remove(t->st, "Bad Name"), CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_user_create(t->st, "a", NOW, NULL), 0);
	/* Users change no map. */
	assert_int_equal(version(t), 0);
}

static void key_user_reaches_its_nodes(void **state)
{
	struct t *t = *state;
	char sa[CTL_SECRET_MAX], sb[CTL_SECRET_MAX], sx[CTL_SECRET_MAX];
	struct ctl_authkey k;
	struct ctl_node n;
	test_store_skip_without_nodes(t->st);


	/* A key for a user that does not exist, or a bad name: no key. */
	assert_int_equal(key(t, "alice", NULL, sx, &k), CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "users create alice"));
	assert_int_equal(key(t, "Alice", NULL, sx, &k), CTL_STORE_EINVAL);
	struct ctl_authkey *ks;
	size_t nk;
	assert_int_equal(ctl_store_key_list(t->st, &ks, &nk), 0);
	assert_int_equal(nk, 0);
	free(ks);

	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL), 0);
	assert_int_equal(ctl_store_user_create(t->st, "bob", NOW, NULL), 0);
	assert_int_equal(key(t, "alice", "tag:web", sa, &k), 0);
	assert_string_equal(k.user, "alice");
	assert_int_equal(key(t, NULL, NULL, sx, &k), 0);
	assert_string_equal(k.user, "");
	assert_int_equal(ctl_store_key_list(t->st, &ks, &nk), 0);
	assert_int_equal(nk, 2);
	assert_string_equal(ks[0].user, "alice");
	assert_string_equal(ks[0].tags, "tag:web");
	assert_string_equal(ks[1].user, "");
	free(ks);

	/* Registration copies the key's user onto the node. */
	struct ctl_store_reg r1 = req(1, "laptop", sa), r2 = req(2, "spare", sx);
	assert_int_equal(ctl_store_node_register(t->st, &r1, &n, NULL), 0);
	assert_string_equal(n.user, "alice");
	assert_string_equal(n.tags, "tag:web");
	int64_t laptop = n.id;
	assert_int_equal(ctl_store_node_register(t->st, &r2, &n, NULL), 0);
	assert_string_equal(n.user, "");
	/* A node an admin approved (no key) has no user. */
	struct ctl_store_reg r3 = req(3, "pending", NULL);
	assert_int_equal(ctl_store_node_register(t->st, &r3, &n, NULL), 0);
	assert_false(n.approved);
	assert_int_equal(ctl_store_node_approve(t->st, n.id), 0);
	assert_int_equal(ctl_store_node_by_id(t->st, n.id, &n), 0);
	assert_string_equal(n.user, "");
	int64_t approved = n.id;
	struct ctl_node *all;
	size_t nn;
	assert_int_equal(ctl_store_node_list(t->st, 0, &all, &nn), 0);
	assert_int_equal(nn, 3);
	assert_string_equal(all[0].user, "alice");
	free(all);

	struct ctl_user *v;
	size_t n_u;
	assert_int_equal(ctl_store_user_list(t->st, &v, &n_u), 0);
	assert_int_equal(n_u, 2);
	assert_string_equal(v[0].name, "alice");
	assert_int_equal(v[0].n_nodes, 1);
	assert_int_equal(v[1].n_nodes, 0);
	free(v);

	/* A user who owns a node or a key that is not revoked stays, and the
	 * message says how many and what to do. */
	int64_t ver = version(t);
	assert_int_equal(ctl_store_user_remove(t->st, "alice"), CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st),
	                    "user alice still owns 1 node and 1 auth key not revoked "
	                    "(1): remove its nodes and revoke its keys first");
	assert_int_equal(ctl_store_key_revoke(t->st, 1), 0);
	assert_int_equal(ctl_store_user_remove(t->st, "alice"), CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st),
	                    "user alice still owns 1 node and 0 auth keys not revoked: "
	                    "remove its nodes first");
	char sb2[CTL_SECRET_MAX];
	assert_int_equal(key(t, "bob", NULL, sb, &k), 0);
	assert_int_equal(key(t, "bob", NULL, sb2, &k), 0);
	assert_int_equal(ctl_store_user_remove(t->st, "bob"), CTL_STORE_EEXISTS);
	assert_string_equal(ctl_store_errmsg(t->st),
	                    "user bob still owns 0 nodes and 2 auth keys not revoked "
	                    "(3, 4): revoke its keys first");

	/* The node re-authorised with bob's key (after an expiry) is bob's. */
	assert_int_equal(ctl_store_node_expire(t->st, laptop, NOW), 0);
	char sb3[CTL_SECRET_MAX];
	assert_int_equal(key(t, "bob", NULL, sb3, &k), 0);
	r1 = req(1, "laptop", sb3);
	r1.now = NOW + 10;
	assert_int_equal(ctl_store_node_register(t->st, &r1, &n, NULL), 0);
	assert_int_equal(n.id, laptop);
	assert_true(n.approved);
	assert_string_equal(n.user, "bob");
	assert_string_equal(n.tags, "");
	assert_true(version(t) > ver);
	/* Now alice owns nothing: she goes. */
	assert_int_equal(ctl_store_user_remove(t->st, "alice"), 0);
	assert_int_equal(ctl_store_node_remove(t->st, approved), 0);
}

static int fault_policy(const char *point, void *arg)
{
	(void)arg;
	return !strcmp(point, "policy:before-commit");
}

static void policy_round_trip_and_revisions(void **state)
{
	struct t *t = *state;
	struct ctl_policy_rec r;
	int64_t rev = 0, v0 = version(t);
	/* Bytes as written: comments, CRLF, UTF-8, no trailing newline. */
	static const char text[] = "// caf\xc3\xa9\r\n{\"acls\": [],}  ";
	static const char text2[] = "{}\n";

	assert_int_equal(ctl_store_policy_get(t->st, &r), CTL_STORE_ENOTFOUND);
	assert_null(r.text);
	assert_int_equal(ctl_store_policy_clear(t->st), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), v0);

	assert_int_equal(ctl_store_policy_set(t->st, text, sizeof text - 1, NOW, &rev),
	                 0);
	assert_int_equal(rev, 1);
	assert_int_equal(version(t), v0 + 1);
	assert_int_equal(ctl_store_policy_get(t->st, &r), 0);
	assert_int_equal(r.len, sizeof text - 1);
	assert_memory_equal(r.text, text, sizeof text); /* with its NUL */
	assert_int_equal(r.revision, 1);
	assert_int_equal(r.set_at, NOW);
	ctl_policy_rec_free(&r);
	assert_null(r.text);

	assert_int_equal(ctl_store_policy_set(t->st, text2, 3, NOW + 5, &rev), 0);
	assert_int_equal(rev, 2);
	assert_int_equal(version(t), v0 + 2);

	/* A failure at commit changes nothing: text, revision, version. */
	ctl_store_set_fault(t->st, fault_policy, NULL);
	assert_int_equal(ctl_store_policy_set(t->st, text, sizeof text - 1, NOW, &rev),
	                 CTL_STORE_EIO);
	assert_int_equal(ctl_store_policy_clear(t->st), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(version(t), v0 + 2);
	assert_int_equal(ctl_store_policy_get(t->st, &r), 0);
	assert_int_equal(r.len, 3);
	assert_string_equal(r.text, text2);
	assert_int_equal(r.revision, 2);
	assert_int_equal(r.set_at, NOW + 5);
	ctl_policy_rec_free(&r);

	/* Refused before anything: empty, NULL, over 1 MiB. */
	assert_int_equal(ctl_store_policy_set(t->st, "", 0, NOW, &rev), CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_policy_set(t->st, NULL, 5, NOW, &rev),
	                 CTL_STORE_EINVAL);
	char *big = malloc(POLICY_MAX_BYTES + 1);
	memset(big, ' ', POLICY_MAX_BYTES + 1);
	assert_int_equal(
	    ctl_store_policy_set(t->st, big, POLICY_MAX_BYTES + 1, NOW, &rev),
	    CTL_STORE_EINVAL);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "over the limit"));
	/* Exactly the limit is stored (the store does not parse). */
	assert_int_equal(ctl_store_policy_set(t->st, big, POLICY_MAX_BYTES, NOW, &rev),
	                 0);
	assert_int_equal(rev, 3);
	free(big);
	assert_int_equal(version(t), v0 + 3);

	/* Clear bumps the version; the revision keeps counting after it. */
	assert_int_equal(ctl_store_policy_clear(t->st), 0);
	assert_int_equal(version(t), v0 + 4);
	assert_int_equal(ctl_store_policy_get(t->st, &r), CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "no policy is set"));
	assert_int_equal(ctl_store_policy_clear(t->st), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), v0 + 4);
	assert_int_equal(ctl_store_policy_set(t->st, text2, 3, NOW, &rev), 0);
	assert_int_equal(rev, 4);

	/* It survives a reopen. */
	ctl_store_close(t->st);
	t->st = open_store(t);
	assert_int_equal(ctl_store_policy_get(t->st, &r), 0);
	assert_int_equal(r.revision, 4);
	assert_string_equal(r.text, text2);
	ctl_policy_rec_free(&r);
	ctl_policy_rec_free(NULL);
}

static void policy_needs_an_initialised_store(void **state)
{
	struct t *t = *state;
	int64_t rev = 0;
	t->st = open_store(t);
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev),
	                 CTL_STORE_ENOTFOUND);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "init"));
}

/* The schema as version 4 (the last before users) made it, with a mesh, an
 * auth key with tags, an API key and two nodes (one joined with the key,
 * one approved by an admin). */
static const char v4_db[] =
    "CREATE TABLE api_keys ( id INTEGER PRIMARY KEY AUTOINCREMENT, hash BLOB NOT "
    "NULL, description TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL, revoked "
    "INTEGER NOT NULL DEFAULT 0, last_used INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO api_keys VALUES(1,X'1DCDE44F659DB72CA35CE71E4F4E684B0254960432EEB4"
    "8E9961741CCFBE82A4','x',1796625867,0,0);"
    "CREATE TABLE auth_keys ( id INTEGER PRIMARY KEY AUTOINCREMENT, hash BLOB NOT "
    "NULL, reusable INTEGER NOT NULL, ephemeral INTEGER NOT NULL, expiry INTEGER NOT "
    "NULL, tags TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, uses INTEGER NOT "
    "NULL DEFAULT 0, created INTEGER NOT NULL);"
    "INSERT INTO auth_keys VALUES(1,X'CE73C840FCC230A1DE1C34BDF479099F1BD4D7D9E6495A"
    "04F749AFD827847869',0,0,0,'tag:web',0,1,1796625867);"
    "CREATE TABLE meta ( id INTEGER PRIMARY KEY CHECK (id = 1), mesh_id TEXT NOT "
    "NULL, v4_prefix INTEGER NOT NULL, v4_bits INTEGER NOT NULL, ula BLOB NOT NULL, "
    "ula_bits INTEGER NOT NULL, domain TEXT NOT NULL, server_public BLOB NOT NULL, "
    "created INTEGER NOT NULL, map_version INTEGER NOT NULL DEFAULT 0, v4_cursor "
    "INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO meta VALUES(1,'9406df21c25e5286bbc9b055e16b5c77',1681915904,10,"
    "X'FD7239E85EB400000000000000000000',48,'mesh.internal',X'6DA4112C1EE55C14899A5"
    "C280A9388142713CA7F415B5120EF0118F73F371409',1796625867,2,2);"
    "CREATE TABLE node_removals (node_id INTEGER NOT NULL, version INTEGER NOT NULL);"
    "CREATE TABLE nodes ( id INTEGER PRIMARY KEY AUTOINCREMENT, machine_key BLOB NOT "
    "NULL UNIQUE, node_key BLOB NOT NULL UNIQUE, disco_key BLOB NOT NULL, hostname "
    "TEXT NOT NULL, name TEXT NOT NULL UNIQUE, ipv4 INTEGER NOT NULL UNIQUE, ipv6 "
    "BLOB NOT NULL UNIQUE, endpoints TEXT NOT NULL DEFAULT '', home_relay INTEGER NOT "
    "NULL DEFAULT 0, hostinfo TEXT NOT NULL DEFAULT '', auth_key_id INTEGER "
    "REFERENCES auth_keys(id) ON DELETE SET NULL, approved INTEGER NOT NULL, "
    "ephemeral INTEGER NOT NULL, online INTEGER NOT NULL DEFAULT 0, tags TEXT NOT "
    "NULL DEFAULT '', created INTEGER NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0, "
    "expiry INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL, source TEXT NOT "
    "NULL DEFAULT '', expiry_key_seq INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO nodes (id, machine_key, node_key, disco_key, hostname, name, ipv4, "
    "ipv6, auth_key_id, approved, ephemeral, tags, created, version) VALUES "
    "(1, zeroblob(31) || X'01', zeroblob(31) || X'02', zeroblob(31) || X'03', 'web', "
    "'web', 1681915905, X'FD7239E85EB400000000000064400001', 1, 1, 0, 'tag:web', "
    "1796625867, 1),"
    "(2, zeroblob(31) || X'11', zeroblob(31) || X'12', zeroblob(31) || X'13', 'db', "
    "'db', 1681915906, X'FD7239E85EB400000000000064400002', NULL, 1, 0, '', "
    "1796625867, 2);"
    "CREATE TABLE relay_keys ( id INTEGER PRIMARY KEY AUTOINCREMENT, hash BLOB NOT "
    "NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, uses INTEGER "
    "NOT NULL DEFAULT 0);"
    "CREATE TABLE relays ( id INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL "
    "UNIQUE, name TEXT NOT NULL UNIQUE, region TEXT NOT NULL, host TEXT NOT NULL, "
    "port INTEGER NOT NULL, stun_port INTEGER NOT NULL, tls INTEGER NOT NULL, created "
    "INTEGER NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE removed_machines ( machine_key BLOB PRIMARY KEY, removed INTEGER "
    "NOT NULL, key_seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX nodes_version ON nodes(version);"
    "CREATE INDEX node_removals_version ON node_removals(version);"
    "CREATE TRIGGER nodes_removed_machine AFTER DELETE ON nodes WHEN OLD.approved = 1 "
    "BEGIN INSERT OR REPLACE INTO removed_machines (machine_key, removed, key_seq) "
    "VALUES (OLD.machine_key, CAST(strftime('%s', 'now') AS INTEGER), COALESCE((SELECT "
    "seq FROM sqlite_sequence WHERE name = 'auth_keys'), 0)); END;"
    "CREATE TRIGGER nodes_removed AFTER DELETE ON nodes WHEN OLD.approved = 1 BEGIN "
    "INSERT INTO node_removals (node_id, version) SELECT OLD.id, map_version FROM "
    "meta WHERE id = 1; END;"
    "CREATE INDEX nodes_disco ON nodes(disco_key);"
    "CREATE INDEX nodes_pending ON nodes(source) WHERE approved = 0;"
    "PRAGMA user_version = 4;";

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

static void migrates_a_v4_database(void **state)
{
	struct t *t = *state;
	char p[160];
	sqlite3 *db;

	if (test_store_is_pg())
		skip(); /* a SQLite file of schema v4 */
	assert_int_equal(mkdir(t->dir, 0700), 0);
	snprintf(p, sizeof p, "%s/control.db", t->dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	char *err = NULL;
	if (sqlite3_exec(db, v4_db, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("v4 schema: %s", err);
	sqlite3_close(db);
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 4);

	t->st = open_store(t);
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 7);
	/* v6: the owner's users row (0 for the old rows: no user) */
	assert_int_equal(raw_int(p, "SELECT count(*) FROM nodes WHERE user_id = 0"), 2);
	struct ctl_meta m;
	assert_int_equal(ctl_store_get_meta(t->st, &m), 0);
	assert_string_equal(m.mesh_id, "9406df21c25e5286bbc9b055e16b5c77");
	assert_int_equal(version(t), 2);

	/* Old rows: no user, everything else as it was. */
	struct ctl_node *ns;
	size_t n;
	assert_int_equal(ctl_store_node_list(t->st, 0, &ns, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ns[0].name, "web");
	assert_string_equal(ns[0].tags, "tag:web");
	assert_string_equal(ns[0].user, "");
	assert_int_equal(ns[0].auth_key_id, 1);
	assert_string_equal(ns[1].user, "");
	free(ns);
	struct ctl_authkey *ks;
	assert_int_equal(ctl_store_key_list(t->st, &ks, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ks[0].tags, "tag:web");
	assert_string_equal(ks[0].user, "");
	assert_int_equal(ks[0].uses, 1);
	free(ks);
	struct ctl_user *us;
	assert_int_equal(ctl_store_user_list(t->st, &us, &n), 0);
	assert_int_equal(n, 0);
	free(us);
	struct ctl_policy_rec r;
	assert_int_equal(ctl_store_policy_get(t->st, &r), CTL_STORE_ENOTFOUND);

	/* And the new parts work on it: a user, a key, a node, a policy
	 * (revision 1), without disturbing the old nodes' addresses. */
	char sec[CTL_SECRET_MAX];
	struct ctl_node nd;
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL), 0);
	assert_int_equal(key(t, "alice", NULL, sec, NULL), 0);
	struct ctl_store_reg rg = req(7, "laptop", sec);
	assert_int_equal(ctl_store_node_register(t->st, &rg, &nd, NULL), 0);
	assert_string_equal(nd.user, "alice");
	assert_int_equal(nd.ipv4, 0x64400003);
	int64_t rev;
	assert_int_equal(ctl_store_policy_set(t->st, "{}", 2, NOW, &rev), 0);
	assert_int_equal(rev, 1);
	ctl_store_close(t->st);
	t->st = open_store(t); /* at v6 already: nothing to do */
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 7);
	/* a node registered with alice's key has her users row */
	assert_int_equal(raw_int(p, "SELECT count(*) FROM nodes WHERE user = 'alice' "
	                            "AND user_id = (SELECT id FROM users WHERE name = "
	                            "'alice')"),
	                 1);
	assert_int_equal(ctl_store_policy_get(t->st, &r), 0);
	assert_int_equal(r.revision, 1);
	ctl_policy_rec_free(&r);
}

/* ---- policy_srv.c ---------------------------------------------------- */

static int stop_at_first(void *arg, const struct ctl_node_owner *o)
{
	assert_int_equal(o->id, 1);
	assert_string_equal(o->user, "alice");
	assert_string_equal(o->tags, "tag:web");
	(*(int *)arg)++;
	return 7;
}

static void node_lists(void **state)
{
	struct t *t = *state;
	struct ctl_policy_nodes ns = {0};
	static const uint8_t v6[16] = {0xfd, 1};
	test_store_skip_without_nodes(t->st);


	assert_int_equal(ctl_policy_nodes_add(&ns, 7, "web", 0x64400007, v6, "alice",
	                                      "tag:a,,web,tag:,tag:b,"),
	                 0);
	assert_int_equal(ctl_policy_nodes_add(&ns, 8, NULL, 0x64400008, NULL, "", "ci"),
	                 0);
	assert_int_equal(ctl_policy_nodes_add(&ns, 9, "x", 0x64400009, NULL, NULL, NULL),
	                 0);
	assert_int_equal(ns.n, 3);
	assert_int_equal(ns.v[0].id, 7);
	assert_string_equal(ns.v[0].name, "web");
	assert_true(ns.v[0].has_v6);
	assert_memory_equal(ns.v[0].v6, v6, 16);
	assert_string_equal(ns.v[0].user, "alice");
	assert_int_equal(ns.v[0].n_tags, 2);
	assert_string_equal(ns.v[0].tags[0], "tag:a");
	assert_string_equal(ns.v[0].tags[1], "tag:b");
	assert_null(ns.v[1].name);
	assert_null(ns.v[1].user);
	assert_false(ns.v[1].has_v6);
	assert_int_equal(ns.v[1].n_tags, 0);
	assert_null(ns.v[2].user);
	/* Many: the array grows, the earlier strings stay put. */
	for (int i = 0; i < 500; i++)
		assert_int_equal(ctl_policy_nodes_add(&ns, 100 + (uint64_t)i, "n", 1,
		                                      NULL, "bob", "tag:x"),
		                 0);
	assert_string_equal(ns.v[0].tags[1], "tag:b");
	assert_string_equal(ns.v[502].tags[0], "tag:x");
	ctl_policy_nodes_free(&ns);
	ctl_policy_nodes_free(&ns);
	ctl_policy_nodes_free(NULL);

	/* From the store: approved, unexpired nodes only. */
	char sec[CTL_SECRET_MAX];
	struct ctl_node n;
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL), 0);
	assert_int_equal(key(t, "alice", "tag:web", sec, NULL), 0);
	struct ctl_store_reg r1 = req(1, "web", sec), r2 = req(2, "old", sec),
	                     r3 = req(3, "waiting", NULL);
	assert_int_equal(ctl_store_node_register(t->st, &r1, &n, NULL), 0);
	assert_int_equal(ctl_store_node_register(t->st, &r2, &n, NULL), 0);
	assert_int_equal(ctl_store_node_expire(t->st, n.id, NOW), 0);
	assert_int_equal(ctl_store_node_register(t->st, &r3, &n, NULL), 0);
	assert_int_equal(ctl_policy_nodes_from_store(t->st, NOW + 1, &ns), 0);
	assert_int_equal(ns.n, 1);
	assert_int_equal(ns.v[0].id, 1);
	assert_string_equal(ns.v[0].name, "web");
	assert_string_equal(ns.v[0].user, "alice");
	assert_int_equal(ns.v[0].n_tags, 1);
	assert_string_equal(ns.v[0].tags[0], "tag:web");
	assert_int_equal(ns.v[0].v4, 0x64400001);
	assert_true(ns.v[0].has_v6);
	ctl_policy_nodes_free(&ns);
	/* Before the expiry the expired one counts too. */
	assert_int_equal(ctl_policy_nodes_from_store(t->st, NOW - 1, &ns), 0);
	assert_int_equal(ns.n, 2);
	ctl_policy_nodes_free(&ns);
	/* The walk stops at the callback's first nonzero answer. */
	int calls = 0;
	assert_int_equal(ctl_store_node_owners(t->st, NOW - 1, stop_at_first, &calls), 7);
	assert_int_equal(calls, 1);
}

static const char good_policy[] =
    "{\n"
    "  \"tagOwners\": {\"tag:web\": [\"alice@\"]},\n"
    "  \"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": "
    "[\"tag:web:80\"]}],\n"
    "  \"tests\": [{\"src\": \"alice@\", \"accept\": [\"tag:web:80\"], \"deny\": "
    "[\"tag:web:22\"]}],\n"
    "}\n";

static void validate_against_the_store(void **state)
{
	struct t *t = *state;
	struct ctl_policy_result res;
	char sec[CTL_SECRET_MAX];
	struct ctl_node n;
	test_store_skip_without_nodes(t->st);


	assert_int_equal(
	    ctl_policy_validate(t->st, good_policy, strlen(good_policy), &res), 0);
	assert_int_equal(res.tests_passed, 2);
	assert_int_equal(res.stats.rules, 1);
	assert_int_equal(res.n_nodes, 0);
	ctl_policy_result_free(&res);

	/* A failing test: rejected, with its line and column. */
	char *bad = strdup(good_policy);
	memcpy(strstr(bad, "tag:web:22"), "tag:web:80", 10);
	assert_int_equal(ctl_policy_validate(t->st, bad, strlen(bad), &res),
	                 CTL_POLICY_REJECTED);
	assert_int_equal(res.error.line, 4);
	assert_true(res.error.column > 0);
	assert_non_null(strstr(res.error.msg, "tests[0]"));
	ctl_policy_result_free(&res);
	free(bad);
	/* A syntax error. */
	assert_int_equal(ctl_policy_validate(t->st, "{\n  \"acls\": [1,,2]\n}", 19, &res),
	                 CTL_POLICY_REJECTED);
	assert_int_equal(res.error.line, 2);
	ctl_policy_result_free(&res);
	/* Over the size limit: refused before parsing. */
	assert_int_equal(
	    ctl_policy_validate(t->st, good_policy, POLICY_MAX_BYTES + 1, &res),
	    CTL_POLICY_REJECTED);
	assert_non_null(strstr(res.error.msg, "over the limit"));
	ctl_policy_result_free(&res);

	/* The store's nodes count: a host alias named like a node's user is
	 * fine without nodes and refused once alice has one. */
	static const char alias[] = "{\"hosts\": {\"alice\": \"100.64.0.9\"}, \"acls\": "
	                            "[{\"action\": \"accept\", \"src\": [\"*\"], "
	                            "\"dst\": [\"alice:22\"]}]}";
	assert_int_equal(ctl_policy_validate(t->st, alias, strlen(alias), &res), 0);
	ctl_policy_result_free(&res);
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, NULL), 0);
	/* Control review M1: a user without nodes counts too (her first node
	 * would otherwise break every compile); before the fix this passed. */
	assert_int_equal(ctl_policy_validate(t->st, alias, strlen(alias), &res),
	                 CTL_POLICY_REJECTED);
	assert_int_equal(res.n_nodes, 0);
	assert_non_null(strstr(res.error.msg, "alice"));
	assert_non_null(strstr(res.error.msg, "has no node"));
	ctl_policy_result_free(&res);
	assert_int_equal(key(t, "alice", NULL, sec, NULL), 0);
	struct ctl_store_reg r1 = req(1, "laptop", sec);
	r1.now = (int64_t)time(NULL);
	assert_int_equal(ctl_store_node_register(t->st, &r1, &n, NULL), 0);
	assert_int_equal(ctl_policy_validate(t->st, alias, strlen(alias), &res),
	                 CTL_POLICY_REJECTED);
	assert_int_equal(res.n_nodes, 1);
	assert_non_null(strstr(res.error.msg, "alice"));
	ctl_policy_result_free(&res);
	/* ... and the same user check refuses creating such a user while the
	 * policy is stored. */
	int64_t rev;
	char msg[512];
	assert_int_equal(ctl_store_policy_set(t->st, alias, strlen(alias), NOW, &rev), 0);
	assert_int_equal(ctl_policy_check_new_user(t->st, "bob", msg, sizeof msg), 0);
	assert_int_equal(ctl_policy_check_new_user(t->st, "alice", msg, sizeof msg),
	                 CTL_POLICY_REJECTED);
	assert_non_null(strstr(msg, "revision 1"));
	assert_int_equal(ctl_store_policy_clear(t->st), 0);
	assert_int_equal(ctl_policy_check_new_user(t->st, "alice", msg, sizeof msg), 0);

	/* A node whose tag its user does not own (the key was made before
	 * any policy): the policy is accepted, the tag counts for nothing, and
	 * validation says so by node and tag. */
	assert_int_equal(ctl_store_user_create(t->st, "bob", NOW, NULL), 0);
	assert_int_equal(key(t, "bob", "tag:web", sec, NULL), 0);
	struct ctl_store_reg r2 = req(2, "bobsrv", sec);
	r2.now = (int64_t)time(NULL);
	assert_int_equal(ctl_store_node_register(t->st, &r2, &n, NULL), 0);
	assert_int_equal(
	    ctl_policy_validate(t->st, good_policy, strlen(good_policy), &res), 0);
	bool warned = false;
	for (size_t i = 0; i < res.n_warnings; i++)
		warned |= strstr(res.warnings[i].msg, "bobsrv") &&
		          strstr(res.warnings[i].msg, "tag:web");
	assert_true(warned);
	ctl_policy_result_free(&res);
}

static void key_tags_under_the_policy(void **state)
{
	struct t *t = *state;
	char msg[512];
	int64_t rev;

	/* No policy: any tags, with or without a user. */
	assert_int_equal(
	    ctl_policy_check_key_tags(t->st, NULL, "tag:web", msg, sizeof msg), 0);
	assert_int_equal(
	    ctl_policy_check_key_tags(t->st, "alice", "tag:nobody", msg, sizeof msg), 0);
	assert_int_equal(
	    ctl_store_policy_set(t->st, good_policy, strlen(good_policy), NOW, &rev), 0);
	/* No tags: nothing to check. */
	assert_int_equal(ctl_policy_check_key_tags(t->st, NULL, "", msg, sizeof msg), 0);
	assert_int_equal(ctl_policy_check_key_tags(t->st, "bob", NULL, msg, sizeof msg),
	                 0);
	/* Tags without a user own nothing under a policy. */
	assert_int_equal(
	    ctl_policy_check_key_tags(t->st, NULL, "tag:web", msg, sizeof msg),
	    CTL_POLICY_REJECTED);
	assert_non_null(strstr(msg, "tag:web: under the policy (revision 1)"));
	assert_non_null(strstr(msg, "give the key a user"));
	assert_int_equal(ctl_policy_check_key_tags(t->st, "", "tag:web", msg, sizeof msg),
	                 CTL_POLICY_REJECTED);
	/* The owner may. */
	assert_int_equal(
	    ctl_policy_check_key_tags(t->st, "alice", "tag:web", msg, sizeof msg), 0);
	assert_int_equal(
	    ctl_policy_check_key_tags(t->st, "bob", "tag:web", msg, sizeof msg),
	    CTL_POLICY_REJECTED);
	assert_non_null(strstr(msg, "tag:web: user bob does not own it"));
	assert_non_null(strstr(msg, "add \"bob@\""));
	assert_int_equal(ctl_policy_check_key_tags(t->st, "alice", "tag:web,tag:other",
	                                           msg, sizeof msg),
	                 CTL_POLICY_REJECTED);
	assert_non_null(strstr(msg, "tag:other: user alice"));
}

static void user_arg(void **state)
{
	(void)state;
	char out[CTL_NAME_MAX + 1];
	assert_true(ctl_policy_user_arg("alice@", out, sizeof out));
	assert_string_equal(out, "alice");
	assert_true(ctl_policy_user_arg("alice", out, sizeof out));
	assert_string_equal(out, "alice");
	assert_true(ctl_policy_user_arg("@", out, sizeof out));
	assert_string_equal(out, "");
	char long_name[80];
	memset(long_name, 'a', 64);
	long_name[64] = 0;
	assert_false(ctl_policy_user_arg(long_name, out, sizeof out));
	long_name[63] = '@';
	assert_true(ctl_policy_user_arg(long_name, out, sizeof out));
	assert_int_equal(strlen(out), 63);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(user_names_and_create, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(key_user_reaches_its_nodes, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(policy_round_trip_and_revisions, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(policy_needs_an_initialised_store, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(migrates_a_v4_database, setup, teardown),
	    cmocka_unit_test_setup_teardown(node_lists, setup_init, teardown),
	    cmocka_unit_test_setup_teardown(validate_against_the_store, setup_init,
	                                    teardown),
	    cmocka_unit_test(user_arg),
	    cmocka_unit_test_setup_teardown(key_tags_under_the_policy, setup_init,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
