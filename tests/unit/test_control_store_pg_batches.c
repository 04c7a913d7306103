/* mesh-control's store, volatile fields and several servers, on both
 * engines (store_engines_fixture.h): batches (one version bump, only real
 * changes, hostile endpoint text, a node twice in a batch, 10,000 nodes in
 * a few statements on PostgreSQL), offline_all, and several servers on one
 * store (the holder of an online node, offline writes by another server
 * ignored, the beat's sweep of dead, forgotten and legacy holders with one
 * version bump, leave). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "servers/control/alloc.h"
#include "servers/control/store.h"
#include "servers/control/store_pg_int.h"
#include "tests/unit/store_engines_fixture.h"

static void ten_thousand_in_one_batch(void **state)
{
	struct t *t = T(state);
	enum { N = 10000 };
	if (!t->e->pg)
		skip();
	PGconn *c = PQconnectdb(t->url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(
	    c, "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name, "
	       "ipv4, ipv6, approved, ephemeral, created, version) SELECT "
	       "sha256(('m' || g)::bytea), sha256(('n' || g)::bytea), "
	       "sha256(('d' || g)::bytea), 'h' || g, 'h' || g, 1681915904 + g, "
	       "substring(sha256(('6' || g)::bytea) from 1 for 16), 1, 0, 1700000000, 0 "
	       "FROM generate_series(1, 10000) g");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("insert: %s", PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);

	struct ctl_node *all;
	size_t cnt;
	assert_int_equal(ctl_store_node_list(t->st, -1, &all, &cnt), 0);
	assert_int_equal(cnt, N);
	struct ctl_node_vol *b = calloc(N, sizeof *b);
	for (size_t i = 0; i < N; i++) {
		b[i].id = all[i].id;
		b[i].mask = CTL_UPD_ENDPOINTS | CTL_UPD_ONLINE | CTL_UPD_HOME_RELAY;
		snprintf(b[i].endpoints, sizeof b[i].endpoints,
		         "198.18.%zu.%zu:41641,[2001:db8::%zx]:41641", i / 250,
		         i % 250 + 1, i);
		b[i].online = true;
		b[i].home_relay = 1;
	}
	free(all);
	int64_t v = version(t);
	size_t changed = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ctl_store_node_update_many(t->st, b, N, &changed), 0);
	print_message("postgresql: a batch of %d nodes in %.3f s\n", N, since(&t0));
	assert_int_equal(changed, N);
	assert_int_equal(version(t), v + 1);
	/* the same batch again changes nothing */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ctl_store_node_update_many(t->st, b, N, &changed), 0);
	print_message("postgresql: the same again in %.3f s\n", since(&t0));
	assert_int_equal(changed, 0);
	assert_int_equal(version(t), v + 1);
	struct ctl_node n = node(t, b[N - 1].id);
	assert_string_equal(n.endpoints, b[N - 1].endpoints);
	assert_int_equal(n.version, v + 1);
	free(b);
}

/* ---- batches ------------------------------------------------------------ */

static void batches_bump_once(void **state)
{
	struct t *t = T(state);
	struct ctl_node a, b;
	size_t changed = 99;

	assert_int_equal(reg(t, 1, "a", NULL, &a), 0);
	assert_int_equal(reg(t, 2, "b", NULL, &b), 0);
	struct ctl_node_vol v[4] = {
	    {.id = a.id, .mask = CTL_UPD_ENDPOINTS | CTL_UPD_ONLINE, .online = true},
	    {.id = b.id,
	     .mask = CTL_UPD_ONLINE | CTL_UPD_HOME_RELAY,
	     .online = true,
	     .home_relay = 2},
	    {.id = 999, .mask = CTL_UPD_ONLINE, .online = true},
	};
	/* text that must not break an array literal or a statement */
	strcpy(v[0].endpoints, "198.18.0.1:1,\"x\\\"},{NULL}\\ ',\xc3\xa9");
	int64_t ver = version(t);
	assert_int_equal(ctl_store_node_update_many(t->st, v, 3, &changed), 0);
	assert_int_equal(changed, 2);
	assert_int_equal(version(t), ver + 1);
	a = node(t, a.id);
	assert_string_equal(a.endpoints, v[0].endpoints);
	assert_int_equal(a.version, ver + 1);
	assert_int_equal(node(t, b.id).home_relay, 2);

	/* The same again: no change, no bump. last_seen of an online node is
	 * written but is in nobody's map. */
	v[1].mask |= CTL_UPD_LAST_SEEN;
	v[1].last_seen = NOW + 9;
	assert_int_equal(ctl_store_node_update_many(t->st, v, 3, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(version(t), ver + 1);
	assert_int_equal(node(t, b.id).last_seen, NOW + 9);

	/* touch: a bump without a change. */
	struct ctl_node_vol tv = {.id = b.id, .touch = true};
	assert_int_equal(ctl_store_node_update_many(t->st, &tv, 1, &changed), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(version(t), ver + 2);
	assert_int_equal(node(t, b.id).version, ver + 2);

	/* A node twice in one batch: written in order, one bump. */
	struct ctl_node_vol d[3] = {
	    {.id = a.id, .mask = CTL_UPD_ENDPOINTS, .endpoints = "198.18.0.2:2"},
	    {.id = b.id, .mask = CTL_UPD_ONLINE, .online = false},
	    {.id = a.id, .mask = CTL_UPD_ENDPOINTS, .endpoints = "198.18.0.3:3"},
	};
	assert_int_equal(ctl_store_node_update_many(t->st, d, 3, &changed), 0);
	assert_int_equal(changed, 3);
	assert_int_equal(version(t), ver + 3);
	assert_string_equal(node(t, a.id).endpoints, "198.18.0.3:3");
	assert_false(node(t, b.id).online);

	/* Endpoints not terminated within the field: refused, nothing written. */
	struct ctl_node_vol bad = {.id = a.id, .mask = CTL_UPD_ENDPOINTS};
	memset(bad.endpoints, 'x', sizeof bad.endpoints);
	assert_int_equal(ctl_store_node_update_many(t->st, &bad, 1, &changed),
	                 CTL_STORE_EINVAL);
	assert_int_equal(version(t), ver + 3);

	/* offline_all: every online node, one bump; none: no bump. */
	size_t n = 0;
	assert_int_equal(ctl_store_node_offline_all(t->st, NOW + 20, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(version(t), ver + 4);
	assert_int_equal(node(t, a.id).last_seen, NOW + 20);
	assert_int_equal(ctl_store_node_offline_all(t->st, NOW + 21, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(version(t), ver + 4);
}

/* ---- several servers ----------------------------------------------------- */

static bool has_servers(struct t *t)
{
	if (t->st->ops->server_beat && t->st->ops->set_server)
		return true;
	print_message("%s: no several-servers ops in this build\n", t->e->name);
	return false;
}

static void online(struct ctl_store *st, int64_t id, bool on, const char *eps)
{
	struct ctl_node_update u = {.mask =
	                                CTL_UPD_ONLINE | (eps ? CTL_UPD_ENDPOINTS : 0),
	                            .online = on,
	                            .endpoints = eps};
	assert_int_equal(ctl_store_node_update(st, id, &u), 0);
}

/* Logical time for the beats below: SQLite beats at NOW + at. PostgreSQL
 * beats by the database's clock whatever the caller says, so time passing
 * is played by ageing every server's beat (and the handles' memory of
 * their last beat) by the logical seconds since the previous beat. */
static int64_t g_at;

static void age_beats(struct t *t, int64_t secs, struct ctl_store *a, struct ctl_store *b)
{
	char sql[128];
	snprintf(sql, sizeof sql, "UPDATE servers SET beat = beat - %lld",
	         (long long)secs);
	PGconn *c = PQconnectdb(t->url);
	PGresult *r = PQexec(c, sql);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
	struct ctl_store *h[] = {a, b};
	for (int i = 0; i < 2; i++)
		if (h[i] && PG(h[i])->last_beat)
			PG(h[i])->last_beat -= secs;
}

static int beat_at(struct t *t, struct ctl_store *st, int64_t at, int64_t dead, size_t *n,
                   struct ctl_store *other)
{
	if (!t->e->pg)
		return ctl_store_server_beat(st, NOW + at, dead, n);
	if (at > g_at)
		age_beats(t, at - g_at, st, other);
	g_at = at;
	/* the caller's clock is ignored: a wrong one changes nothing */
	return ctl_store_server_beat(st, 12345, dead, n);
}

/* last_seen written by a beat: NOW + at on SQLite, the database's clock
 * (this host's, give or take) on PostgreSQL. */
static void assert_beat_time(struct t *t, int64_t v, int64_t at)
{
	if (!t->e->pg) {
		assert_int_equal(v, NOW + at);
		return;
	}
	int64_t now = (int64_t)time(NULL);
	assert_in_range(v, now - 5, now + 5);
}

static void several_servers(void **state)
{
	struct t *t = T(state);
	if (!has_servers(t))
		skip();
	char sec[CTL_SECRET_MAX];
	struct ctl_node a, b, c, d;
	size_t n = 99;

	struct ctl_store *s1 = t->st, *s2 = open_store(t);
	ctl_store_set_server(s1, 111);
	ctl_store_set_server(s2, 222);
	g_at = 0;
	assert_int_equal(beat_at(t, s1, 0, 10, &n, s2), 0);
	assert_int_equal(n, 0);
	assert_int_equal(beat_at(t, s2, 0, 10, &n, s1), 0);
	key(t, true, false, NULL, sec);

	/* a registers through server 1 online: server 2 marking it offline
	 * changes nothing but the rest of its write. */
	struct ctl_store_reg r = req(1, "a", sec);
	r.set_online = true;
	assert_int_equal(ctl_store_node_register(s1, &r, &a, NULL), 0);
	assert_true(a.online);
	assert_int_equal(a.online_server, 111);
	online(s2, a.id, false, "198.18.0.1:1");
	a = node(t, a.id);
	assert_true(a.online);
	assert_int_equal(a.online_server, 111);
	assert_string_equal(a.endpoints, "198.18.0.1:1");
	/* an ignored offline alone is no map change */
	int64_t ver = version(t);
	online(s2, a.id, false, NULL);
	assert_int_equal(version(t), ver);
	struct ctl_node_vol v = {.id = a.id,
	                         .mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN,
	                         .online = false,
	                         .last_seen = NOW + 1};
	assert_int_equal(ctl_store_node_update_many(s2, &v, 1, &n), 0);
	a = node(t, a.id);
	assert_true(a.online);
	assert_int_equal(a.last_seen, NOW + 1);

	/* a moves to server 2 (online there): server 1's late offline is
	 * ignored; server 2's applies. */
	v.online = true;
	assert_int_equal(ctl_store_node_update_many(s2, &v, 1, &n), 0);
	assert_int_equal(node(t, a.id).online_server, 222);
	online(s1, a.id, false, NULL);
	assert_true(node(t, a.id).online);
	online(s2, a.id, false, NULL);
	assert_false(node(t, a.id).online);
	assert_int_equal(node(t, a.id).online_server, 0);

	/* b and c online on server 2, d on server 1, plus a row from before
	 * servers had ids (holder 0). */
	assert_int_equal(reg(t, 2, "b", sec, &b), 0);
	assert_int_equal(reg(t, 3, "c", sec, &c), 0);
	assert_int_equal(reg(t, 4, "d", sec, &d), 0);
	online(s2, a.id, true, NULL);
	online(s2, b.id, true, NULL);
	online(s1, d.id, true, NULL);
	struct ctl_store *s0 = open_store(t); /* no set_server: id 0 */
	online(s0, c.id, true, NULL);
	ctl_store_close(s0);

	/* Server 1 beats on time, server 2 stopped beating at NOW: within
	 * dead_after nothing is swept. */
	ver = version(t);
	assert_int_equal(beat_at(t, s1, 5, 0, &n, s2), CTL_STORE_EINVAL);
	assert_int_equal(beat_at(t, s1, 5, 10, &n, s2), 0);
	assert_int_equal(n, 1); /* only c, held by nobody */
	assert_false(node(t, c.id).online);
	assert_true(node(t, a.id).online);
	assert_int_equal(version(t), ver + 1);
	ver = version(t);
	assert_int_equal(beat_at(t, s1, 8, 10, &n, s2), 0);
	assert_int_equal(n, 0);
	assert_int_equal(version(t), ver);

	/* Past dead_after: a and b offline (last_seen = now), one bump for
	 * both; d, server 1's own, stays. */
	assert_int_equal(beat_at(t, s1, 11, 10, &n, s2), 0);
	assert_int_equal(n, 2);
	assert_int_equal(version(t), ver + 1);
	a = node(t, a.id);
	assert_false(a.online);
	assert_beat_time(t, a.last_seen, 11);
	assert_int_equal(a.version, ver + 1);
	assert_false(node(t, b.id).online);
	assert_true(node(t, d.id).online);
	/* ... and server 2's row is gone: its own late beat starts over and
	 * sweeps nothing of server 1. */
	assert_int_equal(beat_at(t, s2, 12, 10, &n, s1), 0);
	assert_int_equal(n, 0);
	assert_true(node(t, d.id).online);

	/* A server the store has no row for (taken for dead earlier, or one
	 * that never beat) holds nothing at the next beat (server 1's:
	 * server 2, back from a stale beat, sweeps nothing for dead_after). */
	struct ctl_store *s3 = open_store(t);
	ctl_store_set_server(s3, 333);
	online(s3, c.id, true, NULL);
	ctl_store_close(s3);
	assert_int_equal(beat_at(t, s2, 12, 10, &n, s1), 0);
	assert_int_equal(n, 0);
	assert_true(node(t, c.id).online);
	assert_int_equal(beat_at(t, s1, 12, 10, &n, s2), 0);
	assert_int_equal(n, 1);
	assert_false(node(t, c.id).online);

	/* Leave: server 1's nodes offline, one bump; server 2's stay. */
	online(s2, b.id, true, NULL);
	ver = version(t);
	assert_int_equal(ctl_store_server_leave(s1, NOW + 13, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(version(t), ver + 1);
	assert_false(node(t, d.id).online);
	assert_int_equal(node(t, d.id).last_seen, NOW + 13);
	assert_true(node(t, b.id).online);
	/* With server 1 gone, server 2's beat long after sweeps nothing of its
	 * own. */
	assert_int_equal(beat_at(t, s2, 100, 10, &n, s1), 0);
	assert_int_equal(n, 0);
	assert_true(node(t, b.id).online);
	ctl_store_close(s2);
}

/* One node's online write in a batch of store st. */
static void vol_on(struct ctl_store *st, int64_t id, unsigned extra)
{
	struct ctl_node_vol v = {
	    .id = id, .mask = CTL_UPD_ONLINE | extra, .online = true};
	assert_int_equal(ctl_store_node_update_many(st, &v, 1, NULL), 0);
}

/* A re-assertion (CTL_UPD_REASSERT: a connection of server 1 that
 * outlived a sweep, or a leftover of a node that moved) does not take a
 * node that live server 2 holds; it does when the row is offline or its
 * holder has no servers row; a fresh online write (a registration) always
 * takes it. */
static void reassert_does_not_steal(void **state)
{
	struct t *t = T(state);
	if (!has_servers(t))
		skip();
	char sec[CTL_SECRET_MAX];
	struct ctl_node a;
	size_t n;

	struct ctl_store *s1 = t->st, *s2 = open_store(t);
	ctl_store_set_server(s1, 111);
	ctl_store_set_server(s2, 222);
	assert_int_equal(ctl_store_server_beat(s1, NOW, 10, &n), 0);
	assert_int_equal(ctl_store_server_beat(s2, NOW, 10, &n), 0);
	key(t, true, false, NULL, sec);
	struct ctl_store_reg r = req(1, "a", sec);
	r.set_online = true;
	assert_int_equal(ctl_store_node_register(s1, &r, &a, NULL), 0);
	/* a moved: it registered through server 2 */
	assert_int_equal(ctl_store_node_register(s2, &r, &a, NULL), 0);
	assert_int_equal(node(t, a.id).online_server, 222);

	/* server 1's leftover re-asserts: server 2 keeps it */
	int64_t v = version(t);
	vol_on(s1, a.id, CTL_UPD_REASSERT);
	assert_true(node(t, a.id).online);
	assert_int_equal(node(t, a.id).online_server, 222);
	assert_int_equal(version(t), v);

	/* a fresh online write through server 1 takes it */
	vol_on(s1, a.id, 0);
	assert_int_equal(node(t, a.id).online_server, 111);
	vol_on(s2, a.id, 0);
	assert_int_equal(node(t, a.id).online_server, 222);

	/* offline (server 2 let it go): a re-assertion takes it */
	struct ctl_node_vol off = {.id = a.id, .mask = CTL_UPD_ONLINE, .online = false};
	assert_int_equal(ctl_store_node_update_many(s2, &off, 1, NULL), 0);
	assert_false(node(t, a.id).online);
	vol_on(s1, a.id, CTL_UPD_REASSERT);
	assert_true(node(t, a.id).online);
	assert_int_equal(node(t, a.id).online_server, 111);

	/* held by a server without a servers row (gone, forgotten): taken */
	vol_on(s2, a.id, 0);
	assert_int_equal(ctl_store_server_leave(s2, NOW + 1, &n), 0);
	vol_on(s2, a.id, 0); /* (a straggler write after the leave) */
	assert_int_equal(node(t, a.id).online_server, 222);
	vol_on(s1, a.id, CTL_UPD_REASSERT);
	assert_int_equal(node(t, a.id).online_server, 111);
	ctl_store_close(s2);
}

/* seen_ip is the holder's: node a is online through server 1, seen at X;
 * a late batch from server 2 (offline with seen_ip Y: a leftover of a
 * connection the node left) leaves X, and so does server 2's re-assertion
 * blocked by live server 1; a fresh online write through server 2 (it
 * becomes the holder) writes it. */
static void seen_ip_only_from_the_holder(void **state)
{
	struct t *t = T(state);
	if (!has_servers(t))
		skip();
	char sec[CTL_SECRET_MAX];
	struct ctl_node a;
	size_t n;

	struct ctl_store *s1 = t->st, *s2 = open_store(t);
	ctl_store_set_server(s1, 111);
	ctl_store_set_server(s2, 222);
	assert_int_equal(ctl_store_server_beat(s1, NOW, 10, &n), 0);
	assert_int_equal(ctl_store_server_beat(s2, NOW, 10, &n), 0);
	key(t, true, false, NULL, sec);
	struct ctl_store_reg r = req(1, "a", sec);
	r.set_online = true;
	assert_int_equal(ctl_store_node_register(s1, &r, &a, NULL), 0);
	struct ctl_node_vol x = {.id = a.id, .mask = CTL_UPD_ONLINE | CTL_UPD_SEEN,
	                         .online = true};
	snprintf(x.seen_ip, sizeof x.seen_ip, "198.18.0.1");
	assert_int_equal(ctl_store_node_update_many(s1, &x, 1, NULL), 0);
	assert_int_equal(node(t, a.id).online_server, 111);
	assert_string_equal(node(t, a.id).seen_ip, "198.18.0.1");

	struct ctl_node_vol y = {.id = a.id, .mask = CTL_UPD_ONLINE | CTL_UPD_SEEN,
	                         .online = false};
	snprintf(y.seen_ip, sizeof y.seen_ip, "198.18.0.2");
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_update_many(s2, &y, 1, NULL), 0);
	assert_true(node(t, a.id).online);
	assert_int_equal(node(t, a.id).online_server, 111);
	assert_string_equal(node(t, a.id).seen_ip, "198.18.0.1");
	assert_int_equal(version(t), v);

	y.mask = CTL_UPD_SEEN; /* seen_ip alone from a non-holder */
	assert_int_equal(ctl_store_node_update_many(s2, &y, 1, NULL), 0);
	assert_string_equal(node(t, a.id).seen_ip, "198.18.0.1");

	y.mask = CTL_UPD_ONLINE | CTL_UPD_REASSERT | CTL_UPD_SEEN;
	y.online = true; /* blocked: server 1 is alive and holds it */
	assert_int_equal(ctl_store_node_update_many(s2, &y, 1, NULL), 0);
	assert_int_equal(node(t, a.id).online_server, 111);
	assert_string_equal(node(t, a.id).seen_ip, "198.18.0.1");

	y.mask = CTL_UPD_ONLINE | CTL_UPD_SEEN; /* fresh: server 2 takes it */
	assert_int_equal(ctl_store_node_update_many(s2, &y, 1, NULL), 0);
	assert_int_equal(node(t, a.id).online_server, 222);
	assert_string_equal(node(t, a.id).seen_ip, "198.18.0.2");
	ctl_store_close(s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    STORE_BOTH(batches_bump_once),
	    STORE_BOTH(several_servers),
	    STORE_BOTH(reassert_does_not_steal),
	    STORE_BOTH(seen_ip_only_from_the_holder),
	    STORE_PG_ONLY(ten_thousand_in_one_batch),
	};
	return cmocka_run_group_tests_name("control_store_pg_batches", tests, group_setup,
	                                   group_teardown);
}
