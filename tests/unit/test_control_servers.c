/* Several mesh-control servers on one store (ctl_store_set_server; SQLite,
 * or PostgreSQL under MESH_TEST_PG_URL, store_fixture.h):
 * every online write records the holding server; an offline write of a
 * server that does not hold the node leaves it online (the rest of that
 * write applies); a beat sweeps the nodes of silent servers, of none and
 * of forgotten ones with one version bump and forgets those servers; a
 * leave takes one server's nodes offline; name reuse spares a node that is
 * online through another server. Each server is its own store handle on
 * one store, as two processes would have.
 *
 * Time: SQLite beats by the caller's clock, so a beat "at NOW + 11" is
 * one. PostgreSQL beats by the database's clock whatever the caller says
 * (store_pg_volatile.c), so there the seconds between beats are played by
 * ageing every stored beat by them (beat_at). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "servers/control/store.h"
#include "store_fixture.h"

#define NOW   1700000000
#define SRV_A 101
#define SRV_B 202

struct t {
	char tmp[64];
	char dir[96];
	struct test_store ts;
	struct ctl_store *a, *b, *plain; /* servers A and B; no id (admin CLI) */
	char key[CTL_SECRET_MAX];
	int64_t at; /* logical seconds since NOW of the latest beat_at */
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
	return t->plain ? test_store_reopen(&t->ts)
	                : test_store_open_fresh(&t->ts, t->dir);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	strcpy(t->tmp, "/tmp/ctlservers-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	t->plain = open_store(t);
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->plain, &p), 0);
	struct ctl_authkey_params kp = {.reusable = true, .ephemeral = true, .now = NOW};
	assert_int_equal(ctl_store_key_create(t->plain, &kp, t->key, sizeof t->key, NULL),
	                 0);
	t->a = open_store(t);
	t->b = open_store(t);
	ctl_store_set_server(t->a, SRV_A);
	ctl_store_set_server(t->b, SRV_B);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_store_close(t->a);
	ctl_store_close(t->b);
	ctl_store_close(t->plain);
	test_store_drop(&t->ts);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* Registers machine i (approved, ephemeral by the key) through st, online
 * if asked; returns its id. */
static int64_t join(struct t *t, struct ctl_store *st, uint32_t i, const char *host,
                    bool online)
{
	struct ctl_store_reg r = {
	    .hostname = host, .auth_secret = t->key, .now = NOW, .set_online = online};
	memset(r.machine_key, 0x11, CTL_KEY_LEN);
	memset(r.node_key, 0x22, CTL_KEY_LEN);
	memset(r.disco_key, 0x33, CTL_KEY_LEN);
	memcpy(r.machine_key, &i, sizeof i);
	memcpy(r.node_key, &i, sizeof i);
	memcpy(r.disco_key, &i, sizeof i);
	struct ctl_node n;
	assert_int_equal(ctl_store_node_register(st, &r, &n, NULL), 0);
	return n.id;
}

static struct ctl_node get(struct t *t, int64_t id)
{
	struct ctl_node n;
	assert_int_equal(ctl_store_node_by_id(t->plain, id, &n), 0);
	return n;
}

static int64_t version(struct t *t)
{
	int64_t v = -1;
	assert_int_equal(ctl_store_map_version(t->plain, &v), 0);
	return v;
}

/* Rows in the servers table with this id (0 or 1). */
static int server_rows(struct t *t, int64_t id)
{
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM servers WHERE id = %lld",
	         (long long)id);
	return (int)test_store_int(&t->ts, sql);
}

/* A beat through st at NOW + at. On PostgreSQL every stored beat is first
 * aged by the logical seconds since the previous beat_at, and the caller's
 * clock is given wrong on purpose: the store must not use it. A handle's
 * memory of its own last beat (the stale-server rule) is not aged: it
 * stays within a second of real time, so no handle here is ever stale
 * (test_control_store_pg_robust proves that rule). */
static int beat_at(struct t *t, struct ctl_store *st, int64_t at, int64_t dead,
                   size_t *swept)
{
	if (!t->ts.db[0])
		return ctl_store_server_beat(st, NOW + at, dead, swept);
	if (at > t->at) {
		char sql[96];
		snprintf(sql, sizeof sql, "UPDATE servers SET beat = beat - %lld",
		         (long long)(at - t->at));
		test_store_exec(&t->ts, sql);
	}
	t->at = at;
	return ctl_store_server_beat(st, 12345, dead, swept);
}

/* The last_seen a beat's sweep writes: NOW + at on SQLite; on PostgreSQL
 * the database's clock, which is this host's (the same machine) give or
 * take the test's own run time. */
static void assert_beat_time(struct t *t, int64_t seen, int64_t at)
{
	if (!t->ts.db[0]) {
		assert_int_equal(seen, NOW + at);
		return;
	}
	int64_t now = (int64_t)time(NULL);
	assert_in_range(seen, now - 5, now + 5);
}

static void vol_online(struct ctl_store *st, int64_t id, bool online, int64_t seen)
{
	struct ctl_node_vol v = {.id = id,
	                         .mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN,
	                         .online = online,
	                         .last_seen = seen};
	assert_int_equal(ctl_store_node_update_many(st, &v, 1, NULL), 0);
}

static void online_writes_record_the_holder(void **state)
{
	struct t *t = *state;
	int64_t id = join(t, t->a, 1, "one", true);
	struct ctl_node n = get(t, id);
	assert_true(n.online);
	assert_int_equal(n.online_server, SRV_A);

	/* it moves to B (a batch write): held by B, no map change */
	int64_t v0 = version(t);
	vol_online(t->b, id, true, NOW + 1);
	n = get(t, id);
	assert_true(n.online);
	assert_int_equal(n.online_server, SRV_B);
	assert_int_equal(version(t), v0);

	/* and back to A through node_update */
	struct ctl_node_update u = {.mask = CTL_UPD_ONLINE, .online = true};
	assert_int_equal(ctl_store_node_update(t->a, id, &u), 0);
	assert_int_equal(get(t, id).online_server, SRV_A);

	/* registering again through B with set_online: B holds it */
	join(t, t->b, 1, "one", true);
	assert_int_equal(get(t, id).online_server, SRV_B);

	/* without an id (one server, or the admin CLI): held by none */
	n = get(t, join(t, t->plain, 2, "two", true));
	assert_true(n.online);
	assert_int_equal(n.online_server, 0);
}

static void offline_by_another_server_is_ignored(void **state)
{
	struct t *t = *state;
	int64_t id = join(t, t->a, 1, "one", true);
	vol_online(t->b, id, true, NOW + 1); /* moved to B */
	int64_t v0 = version(t);

	/* A closes its old connection: offline and endpoints in one write;
	 * the endpoints apply, the node stays online through B */
	struct ctl_node_vol v = {.id = id,
	                         .mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN |
	                                 CTL_UPD_ENDPOINTS,
	                         .online = false,
	                         .last_seen = NOW + 2};
	snprintf(v.endpoints, sizeof v.endpoints, "198.18.0.1:41641");
	size_t changed = 9;
	assert_int_equal(ctl_store_node_update_many(t->a, &v, 1, &changed), 0);
	struct ctl_node n = get(t, id);
	assert_true(n.online);
	assert_int_equal(n.online_server, SRV_B);
	assert_string_equal(n.endpoints, "198.18.0.1:41641");
	assert_int_equal(changed, 1); /* the endpoints */
	assert_true(version(t) > v0);

	/* an offline alone from A changes nothing, bumps nothing */
	v0 = version(t);
	vol_online(t->a, id, false, NOW + 3);
	assert_true(get(t, id).online);
	assert_int_equal(version(t), v0);

	/* node_update from A: the hostinfo applies, offline does not */
	struct ctl_node_update u = {.mask = CTL_UPD_ONLINE | CTL_UPD_HOSTINFO,
	                            .online = false,
	                            .hostinfo = "{\"os\":\"linux\"}"};
	assert_int_equal(ctl_store_node_update(t->a, id, &u), 0);
	n = get(t, id);
	assert_true(n.online);
	assert_int_equal(n.online_server, SRV_B);
	assert_string_equal(n.hostinfo, "{\"os\":\"linux\"}");

	/* B, the holder, takes it offline: held by none */
	vol_online(t->b, id, false, NOW + 4);
	n = get(t, id);
	assert_false(n.online);
	assert_int_equal(n.online_server, 0);
	assert_int_equal(n.last_seen, NOW + 4);

	/* a store without an id marks anyone offline (one server) */
	vol_online(t->b, id, true, NOW + 5);
	u = (struct ctl_node_update){.mask = CTL_UPD_ONLINE, .online = false};
	assert_int_equal(ctl_store_node_update(t->plain, id, &u), 0);
	assert_false(get(t, id).online);
}

static void beat_sweeps_silent_servers_once(void **state)
{
	struct t *t = *state;
	size_t swept = 99;
	assert_int_equal(beat_at(t, t->a, 0, 10, &swept), 0);
	assert_int_equal(swept, 0);
	assert_int_equal(beat_at(t, t->b, 0, 10, &swept), 0);
	assert_int_equal(swept, 0);
	assert_int_equal(server_rows(t, SRV_A), 1);
	assert_int_equal(server_rows(t, SRV_B), 1);
	int64_t a1 = join(t, t->a, 1, "a1", true);
	int64_t a2 = join(t, t->a, 2, "a2", true);
	int64_t b1 = join(t, t->b, 3, "b1", true);
	int64_t old = join(t, t->plain, 4, "old", true); /* from before: none */
	int64_t off = join(t, t->a, 5, "off", false);
	int64_t off_seen = get(t, off).last_seen;

	/* B at NOW + 5: A beat 5 s ago, alive; the node held by none goes */
	int64_t v0 = version(t);
	assert_int_equal(beat_at(t, t->b, 5, 10, &swept), 0);
	assert_int_equal(swept, 1);
	assert_false(get(t, old).online);
	assert_beat_time(t, get(t, old).last_seen, 5);
	assert_true(get(t, a1).online);
	assert_int_equal(version(t), v0 + 1);

	/* B at NOW + 11: A silent for 11 s: both its nodes, one bump */
	v0 = version(t);
	assert_int_equal(beat_at(t, t->b, 11, 10, &swept), 0);
	assert_int_equal(swept, 2);
	assert_int_equal(version(t), v0 + 1);
	struct ctl_node n = get(t, a1);
	assert_false(n.online);
	assert_int_equal(n.online_server, 0);
	assert_beat_time(t, n.last_seen, 11);
	assert_int_equal(n.version, v0 + 1);
	assert_false(get(t, a2).online);
	assert_true(get(t, b1).online); /* its own */
	assert_false(get(t, off).online);
	assert_int_equal(get(t, off).last_seen, off_seen); /* not touched */
	assert_int_equal(server_rows(t, SRV_A), 0);        /* forgotten */
	assert_int_equal(server_rows(t, SRV_B), 1);

	/* again: nothing left, no bump */
	v0 = version(t);
	assert_int_equal(beat_at(t, t->b, 12, 10, &swept), 0);
	assert_int_equal(swept, 0);
	assert_int_equal(version(t), v0);

	/* A was only paused: it writes a node online again before its next
	 * beat (no row now): a forgotten server's node goes too, then A's
	 * beat brings its row back and its next nodes stay */
	vol_online(t->a, a1, true, NOW + 13);
	assert_int_equal(beat_at(t, t->b, 13, 10, &swept), 0);
	assert_int_equal(swept, 1);
	assert_int_equal(beat_at(t, t->a, 14, 10, &swept), 0);
	assert_int_equal(server_rows(t, SRV_A), 1);
	vol_online(t->a, a1, true, NOW + 14);
	assert_int_equal(beat_at(t, t->b, 15, 10, &swept), 0);
	assert_int_equal(swept, 0);
	assert_true(get(t, a1).online);

	/* a beat needs a sensible dead_after */
	assert_int_equal(beat_at(t, t->b, 16, 0, &swept), CTL_STORE_EINVAL);
	assert_non_null(strstr(ctl_store_errmsg(t->b), "dead_after"));
}

/* A failed beat writes nothing: not its row, not the sweep. */
static int fail_beat(const char *point, void *arg)
{
	(void)arg;
	return strcmp(point, "update:before-commit") == 0;
}

static void failed_beat_leaves_nothing(void **state)
{
	struct t *t = *state;
	size_t swept = 0;
	int64_t old = join(t, t->plain, 4, "old", true);
	int64_t v0 = version(t);
	ctl_store_set_fault(t->b, fail_beat, NULL);
	assert_int_equal(ctl_store_server_beat(t->b, NOW, 10, &swept), CTL_STORE_EIO);
	assert_int_equal(swept, 0);
	assert_true(get(t, old).online);
	assert_int_equal(version(t), v0);
	assert_int_equal(server_rows(t, SRV_B), 0);
	ctl_store_set_fault(t->b, NULL, NULL);
	assert_int_equal(ctl_store_server_beat(t->b, NOW, 10, &swept), 0);
	assert_int_equal(swept, 1);
}

static void leave_takes_only_its_nodes(void **state)
{
	struct t *t = *state;
	size_t n = 99;
	assert_int_equal(ctl_store_server_beat(t->a, NOW, 10, NULL), 0);
	assert_int_equal(ctl_store_server_beat(t->b, NOW, 10, NULL), 0);
	int64_t a1 = join(t, t->a, 1, "a1", true);
	int64_t b1 = join(t, t->b, 2, "b1", true);
	int64_t b2 = join(t, t->b, 3, "b2", true);
	int64_t v0 = version(t);
	assert_int_equal(ctl_store_server_leave(t->b, NOW + 1, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(version(t), v0 + 1);
	assert_false(get(t, b1).online);
	assert_int_equal(get(t, b2).last_seen, NOW + 1);
	assert_true(get(t, a1).online);
	assert_int_equal(server_rows(t, SRV_B), 0);
	assert_int_equal(server_rows(t, SRV_A), 1);
	/* nothing of its own left: no bump */
	v0 = version(t);
	assert_int_equal(ctl_store_server_leave(t->b, NOW + 2, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(version(t), v0);
}

/* Name reuse: the caller found the holder gone, but it is online through
 * another server by now: it keeps its name. Offline, it gives it up. */
static void reclaim_spares_node_online_elsewhere(void **state)
{
	struct t *t = *state;
	int64_t h = join(t, t->a, 1, "app", true);
	vol_online(t->b, h, true, NOW + 1); /* back through B */
	struct ctl_store_reg r = {.hostname = "app",
	                          .auth_secret = t->key,
	                          .now = NOW + 2,
	                          .set_online = true,
	                          .ephemeral = true,
	                          .n_reclaim = 1,
	                          .reclaim_ids = {h}};
	memset(r.machine_key, 0x44, CTL_KEY_LEN);
	memset(r.node_key, 0x45, CTL_KEY_LEN);
	memset(r.disco_key, 0x46, CTL_KEY_LEN);
	struct ctl_node n;
	assert_int_equal(ctl_store_node_register(t->a, &r, &n, NULL), 0);
	assert_string_equal(n.name, "app-2");
	assert_string_equal(get(t, h).name, "app");

	/* B holds it: B's judgement stands (say its close is not written
	 * yet), the holder is renamed and the newcomer takes the name */
	r.machine_key[0] = 0x47;
	r.node_key[0] = 0x48;
	r.disco_key[0] = 0x49;
	assert_int_equal(ctl_store_node_register(t->b, &r, &n, NULL), 0);
	assert_string_equal(n.name, "app");
	assert_string_equal(get(t, h).name, "app-3");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(online_writes_record_the_holder, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(offline_by_another_server_is_ignored, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(beat_sweeps_silent_servers_once, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(failed_beat_leaves_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(leave_takes_only_its_nodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(reclaim_spares_node_online_elsewhere, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
