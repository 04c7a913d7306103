/* mesh-control's map distribution at its limits (fixture in
 * ctl_map_fixture.h, the real server and store in process):
 *  - a node on a slow link that keeps reading is never closed as stalled,
 *    also when its map takes many times behind_ms (with chunks, or an
 *    older node's single MAP_FULL); one that trickles is;
 *  - a changed relay list reaches a node with CTL_CAP_RELAYS_DELTA as a
 *    small delta, not a full map (an older node still gets a full map);
 *  - a relay that stops reading is closed, and what it is owed stays
 *    bounded;
 *  - a mesh at its node limit tells a new machine to retry; known ones
 *    still come back;
 *  - a node's map never grows past what a full map may hold;
 *  - older nodes that never read are paced by the queues' budget and
 *    closed; freed queues resume waiting maps at once; a delta over one
 *    frame goes as a full map; an older node past a one-message map is
 *    refused saying to upgrade. */
#include "tests/unit/ctl_map_fixture.h"

/* --- limits: old nodes, oversize deltas, freed queues ------------------- */

/* The same as SRV_OUT_BUDGET (private to the server). */
#define OUT_BUDGET ((size_t)64 << 20)

/* Old nodes (no caps) that never read: their single MAP_FULLs wait for the
 * queue budget like chunks, and one that stays behind while maps for others
 * wait is closed, so a chunked join still gets its map. (Before: each got
 * its whole map queued at once, 110 of them held 81 MB, and a caps node
 * joining after them got nothing.) */
static void legacy_stallers_are_paced_and_closed(void **state)
{
	struct t *t = *state;
	enum { N = 1000, SLOW = 110 };
	restart_with(t, &(struct ctl_server_config){.behind_ms = 5000});
	store_nodes(t, N, 16, NULL);
	server_sndbuf(t, 4096);
	struct tc *slow[SLOW];
	struct ctl_register_resp r;
	tc_rcvbuf = 4096;
	for (int i = 0; i < SLOW; i++) {
		char host[32];
		snprintf(host, sizeof host, "slow-%d", i);
		slow[i] = tc_new();
		tc_join_caps(t, slow[i], host, 0, &r);
	}
	tc_rcvbuf = 0;
	pump(t, 200);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("%d old stallers: %zu bytes queued (budget %zu), map %zu B\n", SLOW,
	              st.out_queued, OUT_BUDGET, st.last_full_bytes);
	assert_true(st.out_queued <= OUT_BUDGET + 2 * st.last_full_bytes);

	struct tc *rd = tc_new();
	struct ctl_map_full map;
	tc_join_caps(t, rd, "reader", CTL_CAPS_ALL, &r);
	double t0 = now_ms();
	tc_read_map(t, rd, 3000, &map);
	print_message("caps reader's map after %.0f ms\n", now_ms() - t0);
	assert_true(map.n_peers >= N);
	free_map(&map);
	ctl_server_get_stats(t->srv, &st);
	assert_true(st.slow_closed > 0);
	for (int i = 0; i < SLOW; i++)
		tc_free(slow[i]);
	tc_free(rd);
}

/* A queue freed when its connection closes lets the maps that waited for
 * the budget go out at once (before: they waited for the next keepalive).
 * Older nodes' maps have half the budget (a current node's map does not
 * wait for them: test_control_fairness), so it is another older node's
 * map that waits here. */
static void freed_queues_resume_waiting_maps(void **state)
{
	struct t *t = *state;
	enum { N = 1000, SLOW = 110 };
	/* nobody closed for stalling while the test runs */
	restart_with(t, &(struct ctl_server_config){.behind_ms = 600000});
	store_nodes(t, N, 16, NULL);
	server_sndbuf(t, 4096);
	struct tc *slow[SLOW];
	struct ctl_register_resp r;
	tc_rcvbuf = 4096;
	for (int i = 0; i < SLOW; i++) {
		char host[32];
		snprintf(host, sizeof host, "slow-%d", i);
		slow[i] = tc_new();
		tc_join_caps(t, slow[i], host, 0, &r);
	}
	tc_rcvbuf = 0;
	pump(t, 200);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("%d old stallers: %zu bytes queued (budget %zu), map %zu B\n", SLOW,
	              st.out_queued, OUT_BUDGET, st.last_full_bytes);
	/* over their half of the budget by at most about one map: the rest
	 * wait for it */
	assert_true(st.out_queued > OUT_BUDGET / 2);
	assert_true(st.out_queued <= OUT_BUDGET / 2 + 2 * st.last_full_bytes);
	struct tc *rd = tc_new();
	tc_join_caps(t, rd, "reader", 0, &r);
	struct ctl_msg m;
	assert_int_equal(tc_recv(t, rd, 300, &m), 0); /* waits for the budget */
	for (int i = 0; i < SLOW; i++)
		tc_free(slow[i]);
	struct ctl_map_full map;
	tc_read_map(t, rd, 2000, &map);
	free_map(&map);
	tc_free(rd);
}

/* A patch delta whose body is over one frame (16 long IPv6 endpoints each
 * for 5,500 of 6,000 nodes) goes as a chunked map; before, the estimate
 * said it fit, the send failed and the node was disconnected. */
static void oversize_delta_goes_as_full_map(void **state)
{
	struct t *t = *state;
	enum { N = 6000, M = 5500 };
	char a[CTL_STORE_ENDPOINTS_MAX + 1] = "", b[CTL_STORE_ENDPOINTS_MAX + 1] = "";
	size_t la = 0, lb = 0;
	for (int k = 0; k < 16; k++) {
		la += (size_t)snprintf(a + la, sizeof a - la,
		                       "%s[2001:db8:1234:5678:9abc:def0:1234:%04x]:%d",
		                       k ? "," : "", 0x1000 + k, 41641 + k);
		lb += (size_t)snprintf(b + lb, sizeof b - lb,
		                       "%s[2001:db8:4321:8765:cba9:fed:4321:%04x]:%d",
		                       k ? "," : "", 0x2000 + k, 42641 + k);
	}
	int64_t *ids = calloc(N, sizeof *ids);
	store_nodes(t, N, 0, ids);
	for (uint32_t i = 0; i < N; i++) {
		struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS, .endpoints = a};
		assert_int_equal(ctl_store_node_update(t->st, ids[i], &u), 0);
	}
	struct tc *rd = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map;
	tc_join_caps(t, rd, "reader", CTL_CAPS_ALL, &r);
	tc_read_map(t, rd, 3000, &map);
	assert_int_equal(map.n_peers, N);
	free_map(&map);
	struct ctl_msg m;
	while (tc_recv(t, rd, 300, &m) == 1)
		ctl_msg_free(&m); /* catch-up */
	for (int i = 0; i < M; i++) {
		struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS, .endpoints = b};
		assert_int_equal(ctl_store_node_update(t->st, ids[i], &u), 0);
	}
	ctl_server_notify(t->srv);
	tc_read_map(t, rd, 3000, &map); /* MAP_FULL, not a close */
	assert_int_equal(map.n_peers, N);
	const struct ctl_peer *p = ctl_map_find(&map, (uint64_t)ids[0]);
	assert_non_null(p);
	assert_int_equal(p->n_eps, 16);
	assert_int_equal(p->eps[0].port, 42641);
	free_map(&map);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	assert_int_equal(st.slow_closed, 0);
	tc_free(rd);
	free(ids);
}

/* More nodes joined since a reader's version than one message may carry
 * (CTL_PEERS_MAX whole entries), but fewer than the map holds: the reader
 * gets a full map. (It did before too, after the delta failed to encode
 * and logged so; now the size rule sends the map without trying.) */
static void delta_past_message_cap_goes_as_full_map(void **state)
{
	struct t *t = *state;
	enum { N = 1000, M = CTL_PEERS_MAX + 200 };
	store_nodes(t, N, 0, NULL);
	struct tc *rd = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map;
	tc_join_caps(t, rd, "reader", CTL_CAPS_ALL, &r);
	tc_read_map(t, rd, 3000, &map);
	assert_int_equal(map.n_peers, N);
	free_map(&map);
	struct ctl_msg m;
	while (tc_recv(t, rd, 300, &m) == 1)
		ctl_msg_free(&m); /* catch-up */
	store_nodes_from(t, N, M, 0, NULL);
	ctl_server_notify(t->srv);
	tc_read_map(t, rd, 10000, &map); /* MAP_FULL, not a close */
	assert_int_equal(map.n_peers, N + M);
	free_map(&map);
	tc_free(rd);
}

/* An old node (no caps) joining a mesh whose map cannot go in one message
 * is refused, finally and saying to upgrade, before anything is written
 * (before: registered, marked online, then closed when the map failed,
 * and again on every retry). */
static void old_node_past_one_message_map_is_refused(void **state)
{
	struct t *t = *state;
	store_nodes(t, CTL_PEERS_MAX + 2, 0, NULL);
	ctl_server_notify(t->srv);
	pump(t, 100);
	struct ctl_server_stats st0, st;
	ctl_server_get_stats(t->srv, &st0);
	struct tc *c = tc_new();
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_caps(c, "old", t->key, 0);
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &m);
	print_message("old node: %s\n", m.u.reg_resp.reason);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_REFUSED);
	assert_int_equal(m.u.reg_resp.code, CTL_REASON_UPGRADE_REQUIRED);
	assert_non_null(strstr(m.u.reg_resp.reason, "upgrade"));
	pump(t, 200);
	ctl_server_get_stats(t->srv, &st);
	assert_int_equal(st.map_version, st0.map_version); /* nothing written */
	tc_free(c);
	/* a node that takes chunks joins the same mesh */
	struct tc *n = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map;
	tc_join_caps(t, n, "new", CTL_CAPS_ALL, &r);
	tc_read_map(t, n, 3000, &map);
	assert_int_equal(map.n_peers, CTL_PEERS_MAX + 2);
	free_map(&map);
	tc_free(n);
}

/* Reads frames from c, about every pause_ms, until a whole map arrived
 * (true) or the connection closed / nothing came for 3 s (false). */
static bool read_map_slowly(struct t *t, struct tc *c, int pause_ms, size_t *peers)
{
	struct ctl_msg m;
	bool more = true;
	*peers = 0;
	while (more) {
		if (tc_recv(t, c, 3000, &m) != 1)
			return false;
		if (m.type == CTL_MSG_MAP_FULL) {
			*peers += m.u.map.n_peers;
			more = m.u.map.more;
		} else if (m.type == CTL_MSG_MAP_PEERS) {
			*peers += m.u.chunk.n_peers;
			more = m.u.chunk.more;
		}
		ctl_msg_free(&m);
		pump(t, pause_ms);
	}
	return true;
}

/* A chunked map that takes several times behind_ms to read at about
 * 100 KB/s arrives whole (before: the queue never looked drained at the
 * once-a-second check, so the node was closed behind_ms after its map
 * started, however fast it read, and started its map again forever). */
static void slow_reader_gets_whole_map(void **state)
{
	struct t *t = *state;
	enum { N = 3000 };
	restart_with(t, &(struct ctl_server_config){.behind_ms = 1000});
	store_nodes(t, N, 16, NULL);
	server_sndbuf(t, 4096);
	tc_rcvbuf = 4096;
	struct tc *rd = tc_new();
	struct ctl_register_resp r;
	/* plain JSON maps: compressed, the map would arrive before behind_ms
	 * and the test would prove nothing (the pacing is the same code) */
	tc_join_caps(t, rd, "slow", CTL_CAPS_ALL & ~CTL_CAP_ZSTD, &r);
	tc_rcvbuf = 0;
	double t0 = now_ms();
	size_t got;
	bool whole = read_map_slowly(t, rd, 150, &got);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("slow reader: %zu of %d peers in %.0f ms, slow_closed %llu\n", got,
	              N, now_ms() - t0, (unsigned long long)st.slow_closed);
	assert_true(whole);
	assert_int_equal(got, N);
	assert_true(now_ms() - t0 > 2 * 1000); /* it did take longer than behind_ms */
	assert_int_equal(st.slow_closed, 0);
	tc_free(rd);
}

/* Reads raw bytes from c at about rate bytes/s for ms; the bytes read, or
 * -1 if the server closed. */
static long read_raw_at(struct t *t, struct tc *c, size_t rate, int ms)
{
	double t0 = now_ms();
	long total = 0;
	uint8_t buf[4096];
	while (now_ms() - t0 < ms) {
		size_t want = rate / 20 < sizeof buf ? rate / 20 : sizeof buf;
		ssize_t n = recv(c->fd, buf, want ? want : 1, MSG_DONTWAIT);
		if (n == 0)
			return -1;
		if (n > 0)
			total += n;
		pump(t, 50);
	}
	return total;
}

/* The same for an older node's single MAP_FULL (about 770 KB) read at
 * about 80 KB/s; and one that reads a few bytes a second is closed. */
static void slow_old_reader_is_kept_trickler_closed(void **state)
{
	struct t *t = *state;
	enum { N = 1000 };
	restart_with(t, &(struct ctl_server_config){.behind_ms = 1000});
	store_nodes(t, N, 16, NULL);
	server_sndbuf(t, 4096);
	tc_rcvbuf = 4096;
	struct tc *slow = tc_new(), *trickle = tc_new();
	struct ctl_register_resp r;
	tc_join_caps(t, slow, "old-slow", 0, &r);
	tc_join_caps(t, trickle, "old-trickle", 0, &r);
	tc_rcvbuf = 0;
	long a = 0, b = 0;
	for (int i = 0; i < 40 && a >= 0; i++) { /* 4 s */
		long n = read_raw_at(t, slow, 80000, 100);
		a = n < 0 ? -1 : a + n;
		if (b >= 0 && i % 10 == 0) {
			uint8_t few[64];
			ssize_t k = recv(trickle->fd, few, sizeof few, MSG_DONTWAIT);
			b = k == 0 ? -1 : b + (k > 0 ? k : 0);
		}
	}
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("old slow reader: %ld bytes (map %zu B); trickler %s; slow_closed "
	              "%llu\n",
	              a, st.last_full_bytes, b < 0 ? "closed" : "open",
	              (unsigned long long)st.slow_closed);
	assert_true(a > 2 * 80000); /* still open, and it read */
	if (b >= 0) { /* the close may not have reached its socket yet */
		struct ctl_msg m;
		while (tc_recv(t, trickle, 50, &m) == 1)
			ctl_msg_free(&m);
	}
	assert_int_equal(st.slow_closed, 1);
	tc_free(slow);
	tc_free(trickle);
}

/* A relay registers with its own key; the relay list changes. */
static void add_relay(struct t *t, const char *host)
{
	char sec[CTL_SECRET_MAX];
	int64_t kid;
	assert_int_equal(
	    ctl_store_relay_key_create(t->st, time(NULL), sec, sizeof sec, &kid), 0);
	struct ctl_relay_reg rr = {.secret = sec,
	                           .region = "eu",
	                           .host = host,
	                           .port = 8443,
	                           .stun_port = 3478,
	                           .now = time(NULL)};
	randombytes_buf(rr.key, 32);
	struct ctl_relay_rec rec;
	assert_int_equal(ctl_store_relay_register(t->st, &rr, &rec), 0);
	ctl_server_notify(t->srv);
}

/* A new relay reaches a node that takes relay deltas in one MAP_DELTA of
 * a few hundred bytes that carries the list (before: every node got a
 * full map, minutes of the map budget at 10,000 nodes, and no deltas
 * meanwhile); an older node still gets a full map. */
static void relay_change_is_a_small_delta(void **state)
{
	struct t *t = *state;
	enum { N = 2000 };
	store_nodes(t, N, 4, NULL);
	struct tc *a = tc_new(), *old = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full ma, mo;
	tc_join_caps(t, a, "new", CTL_CAPS_ALL, &r);
	tc_read_map(t, a, 3000, &ma);
	tc_join_caps(t, old, "old", CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH, &r);
	tc_read_map(t, old, 3000, &mo);
	struct ctl_msg m;
	while (tc_recv(t, a, 300, &m) == 1) { /* old's join */
		assert_int_equal(ctl_map_apply_delta(&ma, &m.u.delta), 0);
		ctl_msg_free(&m);
	}
	while (tc_recv(t, old, 100, &m) == 1)
		ctl_msg_free(&m);
	size_t before = ma.n_relays;
	struct ctl_frame f;
	add_relay(t, "198.18.0.7");
	assert_int_equal(tc_frame(t, a, 2000, &f), 1);
	assert_int_equal(f.type, CTL_MSG_MAP_DELTA);
	print_message("relay change: a MAP_DELTA of %zu bytes (map %zu peers)\n", f.len,
	              ma.n_peers);
	assert_true(f.len < 2048);
	struct ctl_msg_err err;
	assert_int_equal(ctl_msg_decode(f.type, f.body, f.len, &m, &err), 0);
	assert_true(m.u.delta.has_relays);
	assert_int_equal(ctl_map_apply_delta(&ma, &m.u.delta), 0);
	ctl_msg_free(&m);
	assert_int_equal(ma.n_relays, before + 1);
	bool found = false;
	for (size_t i = 0; i < ma.n_relays; i++)
		found |= strcmp(ma.relays[i].host, "198.18.0.7") == 0;
	assert_true(found);
	assert_int_equal(ma.n_peers, N + 1);
	/* the older node: a full map with the new list */
	free_map(&mo); /* peers and relays */
	tc_read_map(t, old, 3000, &mo);
	assert_int_equal(mo.n_relays, before + 1);
	/* nothing more for the new one: the next delta is the next change */
	assert_int_equal(tc_recv(t, a, 300, &m), 0);
	free_map(&ma);
	free_map(&mo);
	tc_free(a);
	tc_free(old);
}

/* A relay that never reads while nodes join: it gets no new RELAY_STATE
 * while its queue is full (what it holds stays about one state), and it
 * is closed once nothing drained for behind_ms (before: a state per
 * change piled up, and it was never closed). */
static void stalled_relay_is_bounded_and_closed(void **state)
{
	struct t *t = *state;
	enum { N = 3000, JOINS = 60 };
	restart_with(t, &(struct ctl_server_config){.behind_ms = 1500});
	store_nodes(t, N, 0, NULL);
	ctl_server_notify(t->srv);
	pump(t, 50);
	server_sndbuf(t, 4096);
	char sec[CTL_SECRET_MAX];
	int64_t kid;
	assert_int_equal(
	    ctl_store_relay_key_create(t->st, time(NULL), sec, sizeof sec, &kid), 0);
	tc_rcvbuf = 4096;
	struct tc *rl = tc_new();
	tc_connect(t, rl);
	assert_int_equal(tc_handshake(t, rl, t->spub), 0);
	tc_rcvbuf = 0;
	struct ctl_msg m = {.type = CTL_MSG_RELAY_REGISTER};
	snprintf(m.u.relay_reg.auth_key, sizeof m.u.relay_reg.auth_key, "%s", sec);
	snprintf(m.u.relay_reg.relay.region, sizeof m.u.relay_reg.relay.region, "eu");
	snprintf(m.u.relay_reg.relay.host, sizeof m.u.relay_reg.relay.host,
	         "198.18.0.1");
	m.u.relay_reg.relay.port = 8443;
	randombytes_buf(m.u.relay_reg.relay.key, 32);
	tc_send(rl, &m);
	pump(t, 100);
	for (uint32_t i = 0; i < JOINS; i++) {
		struct ctl_store_reg r = {
		    .hostname = "j", .auth_secret = t->key, .now = time(NULL)};
		uint32_t k = 900000 + i;
		memset(r.machine_key, 0x44, 32);
		memset(r.node_key, 0x55, 32);
		memset(r.disco_key, 0x66, 32);
		memcpy(r.machine_key, &k, 4);
		memcpy(r.node_key, &k, 4);
		memcpy(r.disco_key, &k, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		ctl_server_notify(t->srv);
		pump(t, 15);
	}
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	size_t one = (size_t)(N + JOINS) * 48;
	print_message("after %d joins: %zu bytes queued (one state about %zu)\n", JOINS,
	              st.out_queued, one);
	assert_true(st.out_queued < 16 * 1024 + 2 * one);
	/* reading nothing (well inside idle_ms: only the stall rule closes) */
	for (int i = 0; i < 40 && !st.slow_closed; i++) {
		pump(t, 100);
		ctl_server_get_stats(t->srv, &st);
	}
	assert_int_equal(st.slow_closed, 1);
	tc_free(rl);
}

/* At max_nodes a new machine is told to retry (ERROR, code 8, naming the
 * limit) and nothing is stored; a known machine still comes back. */
static void full_mesh_admits_known_machines_only(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_nodes = 3});
	struct tc *a = tc_new(), *b = tc_new(), *c = tc_new(), *d = tc_new();
	struct ctl_msg m;
	struct ctl_register_resp r;
	tc_join(t, a, "a", t->key, &r);
	tc_join(t, b, "b", t->key, &r);
	tc_join(t, c, "c", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_connect(t, d);
	assert_int_equal(tc_handshake(t, d, t->spub), 0);
	tc_register_send(d, "d", t->key);
	tc_expect(t, d, CTL_MSG_ERROR, &m);
	assert_int_equal(m.u.error.code, CTL_REASON_INTERNAL);
	assert_non_null(strstr(m.u.error.text, "maximum of 3 nodes"));
	struct ctl_node *nodes = NULL;
	size_t n = 0;
	assert_int_equal(ctl_store_node_list(t->st, 0, &nodes, &n), 0);
	assert_int_equal(n, 3);
	free(nodes);
	/* a comes back (a new connection, the same machine key) */
	tc_close(a);
	tc_connect(t, a);
	assert_int_equal(tc_handshake(t, a, t->spub), 0);
	tc_register_send(a, "a", NULL);
	tc_expect(t, a, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	tc_free(a);
	tc_free(b);
	tc_free(c);
	tc_free(d);
}

/* A delta that would take the map past CTL_MAP_PEERS_MAX peers (only a
 * hostile server sends one) is refused and the map kept. */
static void delta_never_grows_map_past_limit(void **state)
{
	struct ctl_map_full map = {.version = 5};
	map.n_peers = CTL_MAP_PEERS_MAX;
	map.peers = calloc(map.n_peers, sizeof *map.peers);
	assert_non_null(map.peers);
	for (size_t i = 0; i < map.n_peers; i++)
		map.peers[i].id = 2 * (i + 1);
	struct ctl_peer add[2] = {{.id = 1}, {.id = 4}}; /* 1 new, 4 replaced */
	struct ctl_map_delta d = {
	    .version = 6, .base_version = 5, .peers = add, .n_peers = 2};
	assert_int_equal(ctl_map_apply_delta(&map, &d), -E2BIG);
	assert_int_equal(map.n_peers, CTL_MAP_PEERS_MAX);
	assert_int_equal(map.version, 5);
	/* one replaced and one removed for the new: fits */
	uint64_t rm = 6;
	d.removed = &rm;
	d.n_removed = 1;
	assert_int_equal(ctl_map_apply_delta(&map, &d), 0);
	assert_int_equal(map.n_peers, CTL_MAP_PEERS_MAX);
	assert_int_equal(map.peers[0].id, 1);
	free(map.peers);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(delta_never_grows_map_past_limit),
	    cmocka_unit_test_setup_teardown(legacy_stallers_are_paced_and_closed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(freed_queues_resume_waiting_maps, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(delta_past_message_cap_goes_as_full_map, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(oversize_delta_goes_as_full_map, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(old_node_past_one_message_map_is_refused,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(slow_reader_gets_whole_map, setup, teardown),
	    cmocka_unit_test_setup_teardown(slow_old_reader_is_kept_trickler_closed,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(relay_change_is_a_small_delta, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(stalled_relay_is_bounded_and_closed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(full_mesh_admits_known_machines_only, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
