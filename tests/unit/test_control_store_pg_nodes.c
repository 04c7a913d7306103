/* mesh-control's store, nodes, on both engines (SQLite and PostgreSQL,
 * through the same ops; store_engines_fixture.h): each test runs once per
 * engine, so the PostgreSQL port is held to the SQLite behaviour. Covered:
 * registration rules (known machine, pending, expiry, re-authorisation,
 * single-use keys, removed machines, logout, pending limits, keys and
 * names held by pending nodes, name reuse), unique names and addresses
 * over 3,000 nodes, deltas (node_list since, tombstones), rollback on a
 * fault and on a crash mid-registration, and registrations from two
 * processes at once (distinct names and addresses: writers serialise).
 * Batches and several servers: test_control_store_pg_batches.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "servers/control/alloc.h"
#include "servers/control/store.h"
#include "tests/unit/store_engines_fixture.h"

/* ---- registration rules ------------------------------------------------ */

static void register_known_pending_expired(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX], once[CTL_SECRET_MAX], fresh[CTL_SECRET_MAX];
	struct ctl_node a, b, c;
	bool created;

	key(t, true, false, NULL, sec);
	struct ctl_store_reg r = req(7, "box", sec);
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, &created), 0);
	assert_true(created);
	assert_true(a.approved);
	assert_int_equal(a.ipv4, CTL_V4_PREFIX + 1);
	assert_int_equal(ctl_store_node_register(t->st, &r, &b, &created), 0);
	assert_false(created);
	assert_int_equal(a.id, b.id);
	assert_int_equal(a.ipv4, b.ipv4);
	assert_memory_equal(a.ipv6, b.ipv6, 16);

	/* Known machine without a key, new node key and hostname: same node,
	 * same name, one map change. */
	r.auth_secret = NULL;
	r.hostname = "renamed-host";
	memset(r.node_key, 0x77, CTL_KEY_LEN);
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_register(t->st, &r, &c, &created), 0);
	assert_int_equal(c.id, a.id);
	assert_string_equal(c.name, "box");
	assert_string_equal(c.hostname, "renamed-host");
	assert_memory_equal(c.node_key, r.node_key, CTL_KEY_LEN);
	assert_int_equal(version(t), v + 1);

	/* No key: pending, then approved by an admin. */
	struct ctl_store_reg p = req(8, "pending", NULL);
	assert_int_equal(ctl_store_node_register(t->st, &p, &a, &created), 0);
	assert_true(created);
	assert_false(a.approved);
	assert_int_equal(a.auth_key_id, 0);
	int64_t pend = -1;
	assert_int_equal(ctl_store_node_pending_count(t->st, &pend), 0);
	assert_int_equal(pend, 1);
	assert_int_equal(ctl_store_node_approve(t->st, a.id), 0);
	assert_true(node(t, a.id).approved);
	assert_int_equal(ctl_store_node_approve(t->st, 999), CTL_STORE_ENOTFOUND);
	int64_t total = -1, appr = -1;
	assert_int_equal(ctl_store_node_counts(t->st, &total, &appr), 0);
	assert_int_equal(total, 2);
	assert_int_equal(appr, 2);

	/* Expired: a key from before the expiry is refused and not spent, a
	 * newer one re-authorises the same node; without a key nothing is
	 * written. */
	assert_int_equal(ctl_store_node_expire(t->st, a.id, NOW), 0);
	assert_int_equal(node(t, a.id).expiry, NOW);
	p.auth_secret = sec;
	assert_int_equal(ctl_store_node_register(t->st, &p, &c, NULL),
	                 CTL_STORE_EEXPIRED);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "older than the expiry"));
	v = version(t);
	p.auth_secret = NULL;
	assert_int_equal(ctl_store_node_register(t->st, &p, &c, NULL), 0);
	assert_int_equal(c.expiry, NOW);
	assert_int_equal(version(t), v);
	key(t, false, false, NULL, fresh);
	p.auth_secret = fresh;
	assert_int_equal(ctl_store_node_register(t->st, &p, &c, &created), 0);
	assert_false(created);
	assert_int_equal(c.expiry, 0);
	assert_int_equal(c.ipv4, a.ipv4);

	/* Single-use: a failed registration (node key of an approved node)
	 * does not spend it; a retry by its own machine resumes; another
	 * machine gets EKEY_USED and nothing is stored. */
	key(t, false, false, NULL, once);
	struct ctl_store_reg d = req(9, "d", once);
	memcpy(d.node_key, r.node_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &d, &c, NULL),
	                 CTL_STORE_ECONFLICT);
	d = req(9, "d", once);
	assert_int_equal(ctl_store_node_register(t->st, &d, &c, NULL), 0);
	int64_t did = c.id;
	assert_int_equal(ctl_store_node_register(t->st, &d, &c, NULL), 0);
	assert_int_equal(c.id, did);
	assert_int_equal(reg(t, 10, "e", once, &c), CTL_STORE_EKEY_USED);
	struct ctl_store_reg e = req(10, "e", NULL);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, e.machine_key, &c),
	                 CTL_STORE_ENOTFOUND);
	assert_int_equal(reg(t, 10, "e", "mkey-1-nonsense", &c), CTL_STORE_EKEY_UNKNOWN);

	/* Bad input. */
	struct ctl_store_reg z = req(11, "z", sec);
	memset(z.machine_key, 0, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &z, &c, NULL), CTL_STORE_EINVAL);
	char longhost[300];
	memset(longhost, 'h', sizeof longhost - 1);
	longhost[sizeof longhost - 1] = 0;
	assert_int_equal(reg(t, 11, longhost, sec, &c), CTL_STORE_EINVAL);
}

static void register_removed_logout_and_limits(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX], newer[CTL_SECRET_MAX];
	struct ctl_node a, b;

	key(t, true, false, NULL, sec);
	assert_int_equal(reg(t, 1, "a", sec, &a), 0);
	assert_int_equal(reg(t, 2, "b", sec, &b), 0);

	/* Removed by an admin: the old key does not readmit it, a newer one
	 * does; the removal is a tombstone. */
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_remove(t->st, a.id), 0);
	assert_int_equal(reg(t, 1, "a", sec, &a), CTL_STORE_EREMOVED);
	assert_int_equal(reg(t, 1, "a", NULL, &a), CTL_STORE_EREMOVED);
	key(t, false, false, NULL, newer);
	assert_int_equal(reg(t, 1, "a", newer, &a), 0);
	int64_t *gone;
	size_t n;
	assert_int_equal(ctl_store_node_removed(t->st, v, &gone, &n), 0);
	assert_int_equal(n, 1);
	free(gone);

	/* Logout: removed (tombstone) but not banned. */
	v = version(t);
	assert_int_equal(ctl_store_node_logout(t->st, b.id), 0);
	assert_int_equal(ctl_store_node_logout(t->st, b.id), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_node_removed(t->st, v, &gone, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(gone[0], b.id);
	free(gone);
	assert_int_equal(reg(t, 2, "b", sec, &b), 0);

	/* Pending limits: in all, and per source. */
	struct ctl_store_reg r = req(20, "p", NULL);
	r.max_pending = 3;
	r.max_per_source = 2;
	r.source = "198.18.0.1";
	for (uint32_t i = 20; i < 22; i++) {
		struct ctl_store_reg x = r;
		memcpy(x.machine_key, &i, sizeof i);
		memcpy(x.node_key, &i, sizeof i);
		memcpy(x.disco_key, &i, sizeof i);
		assert_int_equal(ctl_store_node_register(t->st, &x, &a, NULL), 0);
	}
	r = req(22, "p", NULL);
	r.max_pending = 3;
	r.max_per_source = 2;
	r.source = "198.18.0.1";
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, NULL),
	                 CTL_STORE_EPENDING_FULL);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "from 198.18.0.1"));
	r.source = "198.18.0.2";
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, NULL), 0);
	r = req(23, "p", NULL);
	r.max_pending = 3;
	r.source = "198.18.0.3";
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, NULL),
	                 CTL_STORE_EPENDING_FULL);
	r.no_pending = true;
	r.max_pending = 0;
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, NULL),
	                 CTL_STORE_EAUTH_REQUIRED);
	/* a row left pending from before waits no longer with no_pending */
	r = req(20, "p", NULL);
	r.no_pending = true;
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, NULL),
	                 CTL_STORE_EAUTH_REQUIRED);
}

/* Keys and names held by pending nodes: busy for another pending one,
 * taken by an authorised one (the pending row dropped or renamed). */
static void pending_holders_yield(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_node p, q, a;

	key(t, true, false, NULL, sec);
	assert_int_equal(reg(t, 1, "web", NULL, &p), 0);
	assert_string_equal(p.name, "web");
	struct ctl_store_reg r = req(2, "other", NULL);
	memcpy(r.disco_key, p.disco_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &r, &q, NULL),
	                 CTL_STORE_EPENDING_BUSY);
	r.auth_secret = sec;
	assert_int_equal(ctl_store_node_register(t->st, &r, &q, NULL), 0);
	assert_int_equal(ctl_store_node_by_id(t->st, p.id, &a), CTL_STORE_ENOTFOUND);

	/* The name: the authorised node gets "db", the pending holder moves. */
	assert_int_equal(reg(t, 3, "db", NULL, &p), 0);
	assert_string_equal(p.name, "db");
	assert_int_equal(reg(t, 4, "db", sec, &a), 0);
	assert_string_equal(a.name, "db");
	assert_string_equal(node(t, p.id).name, "db-2");
	/* An approved holder: a suffix, which a pending holder yields too. */
	assert_int_equal(reg(t, 5, "db", sec, &a), 0);
	assert_string_equal(a.name, "db-2");
	assert_string_equal(node(t, p.id).name, "db-3");
}

/* Name reuse: an ephemeral newcomer with the same key takes the name of a
 * gone ephemeral holder, which gets the next suffix; another user's node
 * and a node of another hostname keep theirs. */
static void ephemeral_name_reclaim(void **state)
{
	struct t *t = T(state);
	char eph[CTL_SECRET_MAX], bob[CTL_SECRET_MAX];
	struct ctl_node old, n, other;

	struct ctl_user u;
	assert_int_equal(ctl_store_user_create(t->st, "bob", NOW, &u), 0);
	key(t, true, true, NULL, eph);
	key(t, true, true, "bob", bob);
	assert_int_equal(reg(t, 1, "db", eph, &old), 0);
	assert_true(old.ephemeral);
	assert_int_equal(reg(t, 2, "cache", bob, &other), 0);

	struct ctl_store_reg r = req(3, "db", eph);
	r.reclaim_ids[0] = other.id; /* not "db"'s: skipped */
	r.reclaim_ids[1] = old.id;
	r.n_reclaim = 2;
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_register(t->st, &r, &n, NULL), 0);
	assert_string_equal(n.name, "db");
	assert_string_equal(node(t, old.id).name, "db-2");
	assert_int_equal(node(t, old.id).ipv4, old.ipv4);
	assert_int_equal(version(t), v + 2); /* the rename and the insert */

	/* bob's key may not take a node of the unowned key */
	r = req(4, "db", bob);
	r.reclaim_ids[0] = n.id;
	r.n_reclaim = 1;
	assert_int_equal(ctl_store_node_register(t->st, &r, &other, NULL), 0);
	assert_string_equal(other.name, "db-3");
	assert_string_equal(node(t, n.id).name, "db");
}

/* ---- names, addresses, deltas ------------------------------------------ */

static void names_unique_and_renames(void **state)
{
	struct t *t = T(state);
	struct ctl_node n, m;
	const char *want[] = {"laptop",    "laptop-2", "laptop-3",
	                      "my-laptop", "node",     "node-2"};
	const char *host[] = {"laptop", "laptop", "Laptop", "My Laptop.local", "", "..."};
	for (uint32_t i = 0; i < 6; i++) {
		assert_int_equal(reg(t, i + 1, host[i], NULL, &n), 0);
		assert_string_equal(n.name, want[i]);
	}
	assert_int_equal(ctl_store_node_by_name(t->st, "laptop-3", &n), 0);
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "laptop"), CTL_STORE_EEXISTS);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "taken"));
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "Bad_Name"),
	                 CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_node_rename(t->st, 999, "free"), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), v);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "work"), 0);
	assert_int_equal(ctl_store_node_by_name(t->st, "work", &m), 0);
	assert_int_equal(m.id, n.id);
	assert_int_equal(reg(t, 7, "laptop", NULL, &n), 0);
	assert_string_equal(n.name, "laptop-3"); /* the smallest free suffix */
	/* names sort around '-' and '.' differently in non-C collations: the
	 * scan must not miss these */
	assert_int_equal(ctl_store_node_by_name(t->st, "my-laptop", &n), 0);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "laptop-4"), 0);
	assert_int_equal(reg(t, 8, "laptop.x", NULL, &n), 0);
	assert_string_equal(n.name, "laptop-5");
}

static void three_thousand_nodes(void **state)
{
	struct t *t = T(state);
	enum { N = 3000 };
	char sec[CTL_SECRET_MAX];
	struct ctl_node n;
	struct timespec t0;

	key(t, true, false, NULL, sec);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 1; i <= N; i++)
		assert_int_equal(reg(t, i, "laptop", sec, &n), 0);
	print_message("%s: registered %d nodes in %.2f s\n", t->e->name, N, since(&t0));
	assert_string_equal(n.name, "laptop-3000");

	struct ctl_node *all;
	size_t cnt;
	assert_int_equal(ctl_store_node_list(t->st, 0, &all, &cnt), 0);
	assert_int_equal(cnt, N);
	uint32_t *v4 = malloc(N * sizeof *v4);
	for (size_t i = 0; i < cnt; i++) {
		v4[i] = all[i].ipv4;
		assert_false(ctl_alloc_v4_reserved(all[i].ipv4 - CTL_V4_PREFIX));
		if (i)
			assert_true(all[i].id > all[i - 1].id);
	}
	qsort(v4, N, sizeof *v4, cmp_u32);
	for (size_t i = 1; i < N; i++)
		assert_true(v4[i] != v4[i - 1]);
	free(v4);

	struct ctl_node_vol *b = calloc(N, sizeof *b);
	for (size_t i = 0; i < N; i++) {
		b[i].id = all[i].id;
		b[i].mask = CTL_UPD_ENDPOINTS | CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN;
		snprintf(b[i].endpoints, sizeof b[i].endpoints, "198.18.%zu.%zu:41641",
		         i / 250, i % 250 + 1);
		b[i].online = true;
		b[i].last_seen = NOW + 1;
	}
	int64_t v = version(t);
	size_t changed = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ctl_store_node_update_many(t->st, b, N, &changed), 0);
	print_message("%s: a batch of %d nodes in %.3f s\n", t->e->name, N, since(&t0));
	assert_int_equal(changed, N);
	assert_int_equal(version(t), v + 1);
	free(all);
	assert_int_equal(ctl_store_node_list(t->st, v, &all, &cnt), 0);
	assert_int_equal(cnt, N);
	assert_string_equal(all[N - 1].endpoints, b[N - 1].endpoints);
	assert_true(all[N - 1].online);
	free(all);
	free(b);
}

/* PostgreSQL: a batch of 10,000 nodes is a few statements (timed), with
 * one version bump. The rows are made with one INSERT (registering 10,000
 * nodes one by one would only time registration). */
static void versions_and_deltas(void **state)
{
	struct t *t = T(state);
	struct ctl_node a, b;
	struct ctl_node *list;
	int64_t *gone;
	size_t cnt;

	assert_int_equal(version(t), 0);
	assert_int_equal(reg(t, 1, "a", NULL, &a), 0);
	assert_int_equal(reg(t, 2, "b", NULL, &b), 0);
	assert_int_equal(version(t), 2);
	struct ctl_node_update u = {.mask = CTL_UPD_LAST_SEEN, .last_seen = NOW + 5};
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), 0);
	assert_int_equal(version(t), 2); /* last_seen alone: no map change */
	u = (struct ctl_node_update){.mask = CTL_UPD_ENDPOINTS | CTL_UPD_HOME_RELAY |
	                                     CTL_UPD_ONLINE | CTL_UPD_DISCO |
	                                     CTL_UPD_HOSTINFO,
	                             .endpoints = "198.18.0.9:1",
	                             .hostinfo = "{\"os\":\"linux\"}",
	                             .home_relay = 3,
	                             .online = true};
	memset(u.disco_key, 0x44, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), 0);
	a = node(t, a.id);
	assert_int_equal(version(t), 3);
	assert_int_equal(a.version, 3);
	assert_int_equal(a.home_relay, 3);
	assert_true(a.online);
	assert_int_equal(a.last_seen, NOW + 5);
	assert_int_equal(a.disco_key[0], 0x44);
	assert_string_equal(a.hostinfo, "{\"os\":\"linux\"}");
	assert_string_equal(a.endpoints, "198.18.0.9:1");
	assert_int_equal(ctl_store_node_list(t->st, 2, &list, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(list[0].id, a.id);
	free(list);

	/* Refusals leave the version alone. */
	u = (struct ctl_node_update){.mask = CTL_UPD_NODE_KEY};
	memcpy(u.node_key, b.node_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), CTL_STORE_ECONFLICT);
	u = (struct ctl_node_update){.mask = CTL_UPD_DISCO};
	memcpy(u.disco_key, b.disco_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), CTL_STORE_ECONFLICT);
	u = (struct ctl_node_update){.mask = CTL_UPD_ONLINE};
	assert_int_equal(ctl_store_node_update(t->st, 999, &u), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_node_remove(t->st, 999), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), 3);

	/* A pending node leaves no tombstone; an approved one does, at the
	 * version of its removal. */
	assert_int_equal(ctl_store_node_remove(t->st, b.id), 0);
	assert_int_equal(ctl_store_node_removed(t->st, 0, &gone, &cnt), 0);
	assert_int_equal(cnt, 0);
	free(gone);
	assert_int_equal(reg(t, 2, "b", NULL, &b), 0);
	assert_int_equal(ctl_store_node_approve(t->st, a.id), 0);
	assert_int_equal(ctl_store_node_approve(t->st, b.id), 0);
	assert_int_equal(ctl_store_node_remove(t->st, b.id), 0);
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_removed(t->st, v - 1, &gone, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(gone[0], b.id);
	free(gone);
	assert_int_equal(ctl_store_node_removed(t->st, v, &gone, &cnt), 0);
	assert_int_equal(cnt, 0);
	free(gone);
	assert_int_equal(ctl_store_node_list(t->st, v, &list, &cnt), 0);
	assert_int_equal(cnt, 0);
	free(list);
}

/* ---- two processes ------------------------------------------------------ */

enum { RACE_N = 120 };

/* Child: its own store handle, RACE_N registrations of "race" once the
 * parent opens the gate; exits with how many failed (0 = all fine). */
static void race_child(struct t *t, int gate, uint32_t base, const char *sec)
{
	char err[256], c;
	struct ctl_store *st = t->e->pg ? ctl_store_open_pg(t->url, err, sizeof err)
	                                : ctl_store_open_sqlite(t->dir, err, sizeof err);
	if (!st)
		_exit(100);
	if (read(gate, &c, 1) != 1)
		_exit(101);
	int bad = 0;
	for (uint32_t i = 0; i < RACE_N; i++) {
		struct ctl_store_reg r = req(base + i, "race", sec);
		struct ctl_node n;
		if (ctl_store_node_register(st, &r, &n, NULL) != 0) {
			fprintf(stderr, "child %u: %s\n", base, ctl_store_errmsg(st));
			bad++;
		}
	}
	ctl_store_close(st);
	_exit(bad > 99 ? 99 : bad);
}

static void two_processes_register_at_once(void **state)
{
	struct t *t = T(state);
	char sec[2][CTL_SECRET_MAX];
	int gate[2];
	pid_t pid[2];

	/* a key each: a shared one's use count would serialise them anyway */
	key(t, true, false, NULL, sec[0]);
	key(t, true, false, NULL, sec[1]);
	assert_int_equal(pipe(gate), 0);
	/* no handle across fork (SQLite forbids it; a libpq one would be
	 * shared) */
	ctl_store_close(t->st);
	t->st = NULL;
	fflush(NULL);
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] == 0) {
			close(gate[1]);
			race_child(t, gate[0], 1000 + 1000 * (uint32_t)k, sec[k]);
		}
	}
	close(gate[0]);
	assert_int_equal(write(gate[1], "go", 2), 2);
	close(gate[1]);
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	t->st = open_store(t);
	struct ctl_node *all;
	size_t cnt;
	assert_int_equal(ctl_store_node_list(t->st, 0, &all, &cnt), 0);
	assert_int_equal(cnt, 2 * RACE_N);
	/* names race, race-2 .. race-240 exactly, and distinct addresses */
	uint8_t *seen = calloc(2 * RACE_N + 1, 1);
	uint32_t *v4 = malloc(cnt * sizeof *v4);
	for (size_t i = 0; i < cnt; i++) {
		unsigned k = 1;
		if (strcmp(all[i].name, "race") != 0)
			assert_int_equal(sscanf(all[i].name, "race-%u", &k), 1);
		assert_true(k >= 1 && k <= 2 * RACE_N);
		assert_false(seen[k]);
		seen[k] = 1;
		v4[i] = all[i].ipv4;
	}
	qsort(v4, cnt, sizeof *v4, cmp_u32);
	for (size_t i = 1; i < cnt; i++)
		assert_true(v4[i] != v4[i - 1]);
	assert_int_equal(version(t), 2 * RACE_N);
	free(v4);
	free(seen);
	free(all);
}

/* ---- faults -------------------------------------------------------------- */

static int fault_fail(const char *point, void *arg)
{
	return strcmp(point, (const char *)arg) == 0;
}

static int fault_crash(const char *point, void *arg)
{
	(void)arg;
	if (strcmp(point, "register:before-commit") == 0)
		_exit(42);
	return 0;
}

static void assert_untouched(struct t *t, const struct ctl_store_reg *r, int64_t v)
{
	struct ctl_node n;
	struct ctl_authkey *keys;
	size_t nk;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, r->machine_key, &n),
	                 CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_key_list(t->st, &keys, &nk), 0);
	assert_int_equal(nk, 1);
	assert_int_equal(keys[0].uses, 0);
	free(keys);
	assert_int_equal(version(t), v);
}

static void fault_or_crash_mid_register(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_node first, n;

	key(t, false, false, NULL, sec);
	assert_int_equal(reg(t, 1, "first", NULL, &first), 0);
	int64_t v = version(t);
	struct ctl_store_reg r = req(2, "second", sec);
	ctl_store_set_fault(t->st, fault_fail, (void *)"register:before-commit");
	assert_int_equal(ctl_store_node_register(t->st, &r, &n, NULL), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_untouched(t, &r, v);

	ctl_store_close(t->st);
	t->st = NULL;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		struct ctl_store *c =
		    t->e->pg ? ctl_store_open_pg(t->url, err, sizeof err)
		             : ctl_store_open_sqlite(t->dir, err, sizeof err);
		if (!c)
			_exit(1);
		ctl_store_set_fault(c, fault_crash, NULL);
		ctl_store_node_register(c, &r, &n, NULL);
		_exit(2);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 42);
	t->st = open_store(t);
	assert_untouched(t, &r, v);
	assert_int_equal(ctl_store_node_register(t->st, &r, &n, NULL), 0);
	assert_int_equal(n.ipv4, first.ipv4 + 1);
	assert_int_equal(version(t), v + 1);

	ctl_store_set_fault(t->st, fault_fail, (void *)"remove");
	assert_int_equal(ctl_store_node_remove(t->st, n.id), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(ctl_store_node_by_id(t->st, n.id, &n), 0);
	assert_int_equal(version(t), v + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    STORE_BOTH(register_known_pending_expired),
	    STORE_BOTH(register_removed_logout_and_limits),
	    STORE_BOTH(pending_holders_yield),
	    STORE_BOTH(ephemeral_name_reclaim),
	    STORE_BOTH(names_unique_and_renames),
	    STORE_BOTH(versions_and_deltas),
	    STORE_BOTH(fault_or_crash_mid_register),
	    STORE_BOTH(two_processes_register_at_once),
	    STORE_BOTH(three_thousand_nodes),
	};
	return cmocka_run_group_tests_name("control_store_pg_nodes", tests, group_setup,
	                                   group_teardown);
}
