/* mesh-control's node protocol server at scale, in process (fixture in
 * ctl_server_fixture.h): MAP_FULL build time and size for 2,000 nodes, 200
 * live connections and the delta fan-out, and a slow reader that catches
 * up with one delta instead of a backlog. */
#include "tests/unit/ctl_server_fixture.h"

static void map_full_2000_nodes(void **state)
{
	struct t *t = *state;
	for (uint32_t i = 0; i < 2000; i++) {
		struct ctl_store_reg r = {
		    .hostname = "n", .auth_secret = t->key, .now = time(NULL)};
		memset(r.machine_key, 0x11, 32);
		memset(r.node_key, 0x22, 32);
		memset(r.disco_key, 0x33, 32);
		memcpy(r.machine_key, &i, 4);
		memcpy(r.node_key, &i, 4);
		memcpy(r.disco_key, &i, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
		                            .endpoints =
		                                "198.18.0.9:41641,[fd00::9]:41641"};
		assert_int_equal(ctl_store_node_update(t->st, nd.id, &u), 0);
	}
	struct tc *c = tc_new(), *d = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	double t0 = now_ms();
	tc_join(t, c, "big", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	expect_full(t, c, 2000, &m);
	ctl_msg_free(&m);
	double total = now_ms() - t0;
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	print_message("MAP_FULL of 2000 peers: build+encode %.1f ms, %zu bytes; join "
	              "round trip %.1f ms\n",
	              s.last_full_ms, s.last_full_bytes, total);
	t0 = now_ms();
	tc_join(t, d, "big2", t->key, &r);
	tc_expect(t, c, CTL_MSG_MAP_DELTA, &m);
	ctl_msg_free(&m);
	ctl_server_get_stats(t->srv, &s);
	print_message("second join -> delta: %.1f ms (broadcast %.2f ms)\n",
	              now_ms() - t0, s.last_broadcast_ms);
	tc_free(c);
	tc_free(d);
}

/* A node that does not read while the whole map changes 20 times (each a
 * map-sized update): the server queues nothing more for it once it is
 * behind (no pile of updates), and when it reads it gets its MAP_FULL,
 * then fewer updates that bring it to the current version. */
static void slow_reader_catches_up(void **state)
{
	struct t *t = *state;
	enum { N = 1000, ROUNDS = 20 };
	int64_t *ids = calloc(N, sizeof *ids);
	for (uint32_t i = 0; i < N; i++) {
		struct ctl_store_reg r = {
		    .hostname = "n", .auth_secret = t->key, .now = time(NULL)};
		memset(r.machine_key, 0x11, 32);
		memset(r.node_key, 0x22, 32);
		memset(r.disco_key, 0x33, 32);
		memcpy(r.machine_key, &i, 4);
		memcpy(r.node_key, &i, 4);
		memcpy(r.disco_key, &i, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		ids[i] = nd.id;
	}
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_rcvbuf = 4096;
	tc_join(t, c, "slow", t->key, &r);
	tc_rcvbuf = 0;
	assert_int_equal(r.status, CTL_REG_OK);
	/* not reading: every node changes, ROUNDS times, each broadcast */
	for (int k = 0; k < ROUNDS; k++) {
		char ep[64];
		snprintf(ep, sizeof ep, "198.18.0.%d:41641,[fd00::%d]:41641", k + 1,
		         k + 1);
		for (int i = 0; i < N; i++) {
			struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
			                            .endpoints = ep};
			assert_int_equal(ctl_store_node_update(t->st, ids[i], &u), 0);
		}
		ctl_server_notify(t->srv);
		pump(t, 30);
	}
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	expect_full(t, c, N, &m);
	uint64_t v = m.u.map.version;
	ctl_msg_free(&m);
	int n_upd = 0;
	while (tc_recv(t, c, 300, &m) == 1) {
		if (m.type == CTL_MSG_MAP_DELTA) {
			assert_int_equal(m.u.delta.base_version, v);
			v = m.u.delta.version;
		} else {
			assert_int_equal(m.type, CTL_MSG_MAP_FULL);
			assert_int_equal(m.u.map.n_peers, N);
			v = m.u.map.version;
		}
		n_upd++;
		ctl_msg_free(&m);
	}
	ctl_server_get_stats(t->srv, &s);
	print_message("slow reader: %d update(s) after its first full map for %d "
	              "map-wide changes\n",
	              n_upd, ROUNDS);
	assert_int_equal(v, s.map_version);
	assert_true(n_upd >= 1 && n_upd <= ROUNDS - 5);
	tc_free(c);
	free(ids);
}

/* 200 live connections join one after another; then one node's endpoints
 * change and every other node gets the delta. */
static void two_hundred_live_nodes(void **state)
{
	struct t *t = *state;
	enum { N = 200 };
	struct tc **c = calloc(N, sizeof *c);
	struct ctl_register_resp r;
	struct ctl_msg m;
	double t0 = now_ms();
	for (int i = 0; i < N; i++) {
		char host[32];
		snprintf(host, sizeof host, "n%d", i);
		c[i] = tc_new();
		tc_join(t, c[i], host, t->key, &r);
		assert_int_equal(r.status, CTL_REG_OK);
		expect_full(t, c[i], (size_t)i, &m);
		ctl_msg_free(&m);
	}
	pump(t, 100);
	double join = now_ms() - t0;
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	print_message("%d nodes joined in %.0f ms (%.2f ms each); last MAP_FULL %.2f ms "
	              "%zu bytes; %llu deltas sent\n",
	              N, join, join / N, s.last_full_ms, s.last_full_bytes,
	              (unsigned long long)s.maps_delta);
	/* drain what the first node has queued, then one change */
	while (tc_recv(t, c[0], 50, &m) == 1)
		ctl_msg_free(&m);
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	ep.u.endpoints.n = 1;
	assert_true(ctl_endpoint_parse("198.18.0.7:41641", &ep.u.endpoints.ep[0]));
	t0 = now_ms();
	tc_send(c[N - 1], &ep);
	tc_expect(t, c[0], CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_peers, 1);
	ctl_msg_free(&m);
	ctl_server_get_stats(t->srv, &s);
	print_message("endpoints -> delta at node 0 of %d: %.1f ms (broadcast to all "
	              "%.2f ms)\n",
	              N, now_ms() - t0, s.last_broadcast_ms);
	assert_int_equal(s.nodes_online, N);
	for (int i = 0; i < N; i++)
		tc_free(c[i]);
	free(c);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(map_full_2000_nodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(two_hundred_live_nodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(slow_reader_catches_up, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
