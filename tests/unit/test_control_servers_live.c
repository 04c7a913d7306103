/* Two mesh-control servers on one store: two ctl_servers in this process,
 * each on its own store handle of one store (a SQLite directory, or a
 * PostgreSQL database under MESH_TEST_PG_URL; as two `serve` processes
 * would have), on 127.0.0.1 ports of their own, against the test
 * client of ctl_server_fixture.h. Nodes on either see each other; a change
 * made through the store reaches a node on the other server within a
 * second; a server that stops without a word (its last writes fail, as a
 * crash loses them) leaves its nodes online until the other's beat sweeps
 * them after dead_after; a clean stop takes only its own nodes offline; a
 * node that moves from one server to the other stays online when the
 * first closes its old connection; a server whose nodes were swept while
 * it ran writes them online again; a pending node approved through the
 * other server's store handle is told at once; a node's seen_ip reaches
 * the nodes of the other server and follows it when it moves. */
#include "tests/unit/ctl_server_fixture.h"

struct two {
	struct ctl_store *st2;
	struct ctl_server *srv2;
	uint16_t port2;
};

/* Fast beats: dead after 2 s of silence. */
static const struct ctl_server_config fast = {.beat_ms = 200, .dead_after_s = 2};

/* Server 1 again with over (the fast beat and more), then server 2 beside
 * it with the same. */
static void start_two_with(struct t *t, struct two *w,
                           const struct ctl_server_config *over)
{
	restart_with(t, over);
	w->st2 = test_store_reopen(&t->ts);
	struct ctl_store *st1 = t->st;
	struct ctl_server *s1 = t->srv;
	uint16_t p1 = t->port;
	t->st = w->st2;
	start_server(t);
	w->srv2 = t->srv;
	w->port2 = t->port;
	t->st = st1;
	t->srv = s1;
	t->port = p1;
}

static void start_two(struct t *t, struct two *w)
{
	start_two_with(t, w, &fast);
}

static void stop_two(struct two *w)
{
	ctl_server_free(w->srv2);
	ctl_store_close(w->st2);
}

/* tc_join on server 2. */
static void join2(struct t *t, struct two *w, struct tc *c, const char *host,
                  const char *key, struct ctl_register_resp *r)
{
	uint16_t p1 = t->port;
	t->port = w->port2;
	tc_join(t, c, host, key, r);
	t->port = p1;
}

/* A client with the machine key of c (the same node on a new connection). */
static struct tc *tc_same(const struct tc *c)
{
	struct tc *n = tc_new();
	memcpy(n->mpriv, c->mpriv, 32);
	memcpy(n->mpub, c->mpub, 32);
	return n;
}

/* Waits for a map (full or delta) that carries peer id with online as
 * wanted and, if name, that name; ms it took, or -1. */
static double wait_peer(struct t *t, struct tc *c, uint64_t id, bool online,
                        const char *name, int ms)
{
	double t0 = now_ms();
	while (now_ms() - t0 < ms) {
		struct ctl_msg m;
		int r = tc_recv(t, c, (int)(ms - (now_ms() - t0)) + 1, &m);
		if (r != 1)
			return -1;
		const struct ctl_peer *p = NULL;
		size_t n = 0;
		if (m.type == CTL_MSG_MAP_DELTA) {
			p = m.u.delta.peers;
			n = m.u.delta.n_peers;
		} else if (m.type == CTL_MSG_MAP_FULL) {
			p = m.u.map.peers;
			n = m.u.map.n_peers;
		}
		bool hit = false;
		for (size_t i = 0; i < n; i++)
			hit = hit || (p[i].id == id && p[i].online == online &&
			              (!name || !strcmp(p[i].name, name)));
		ctl_msg_free(&m);
		if (hit)
			return now_ms() - t0;
	}
	return -1;
}

static struct ctl_node node_of(struct t *t, uint64_t id)
{
	struct ctl_node n;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)id, &n), 0);
	return n;
}

/* Pumps both servers for ms. */
static void settle(struct t *t, int ms)
{
	double t0 = now_ms();
	while (now_ms() - t0 < ms)
		pump(t, 10);
}

static void nodes_on_two_servers_see_each_other(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	assert_int_equal(ra.status, CTL_REG_OK);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	join2(t, &w, b, "bravo", t->key, &rb);
	assert_int_equal(rb.status, CTL_REG_OK);
	/* b's server read a from the store: a is in b's first map, online */
	tc_expect(t, b, CTL_MSG_MAP_FULL, &m);
	assert_int_equal(m.u.map.n_peers, 1);
	assert_int_equal(m.u.map.peers[0].id, ra.node_id);
	assert_true(m.u.map.peers[0].online);
	ctl_msg_free(&m);
	/* and a hears of b through its own server's poll */
	double lat = wait_peer(t, a, rb.node_id, true, NULL, 2000);
	print_message("join on server 2 -> delta on server 1: %.1f ms\n", lat);
	assert_true(lat >= 0 && lat < 1000);

	/* a rename through the store (as the admin CLI or server 2's admin
	 * API writes it) reaches a's server within a second */
	double t0 = now_ms();
	assert_int_equal(ctl_store_node_rename(w.st2, (int64_t)rb.node_id, "bravo-x"), 0);
	ctl_server_notify(w.srv2);
	lat = wait_peer(t, a, rb.node_id, true, "bravo-x", 2000);
	print_message("rename via server 2's store -> node on server 1: %.1f ms\n",
	              lat < 0 ? -1 : now_ms() - t0);
	assert_true(lat >= 0 && now_ms() - t0 < 1000);
	/* each holds its own */
	assert_int_equal(node_of(t, ra.node_id).online_server,
	                 node_of(t, ra.node_id).online_server);
	assert_int_not_equal(node_of(t, ra.node_id).online_server, 0);
	assert_int_not_equal(node_of(t, rb.node_id).online_server,
	                     node_of(t, ra.node_id).online_server);
	tc_free(a);
	tc_free(b);
	stop_two(&w);
}

/* Server 1's store fails every write from now on, so that its stop writes
 * nothing: the store is left as a crash (kill -9, power cut) leaves it. */
static int fail_writes(const char *point, void *arg)
{
	(void)arg;
	return strstr(point, "before-commit") != NULL;
}

static void crashed_server_nodes_swept_after_dead_after(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	join2(t, &w, b, "bravo", t->key, &rb);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	settle(t, 300);

	ctl_store_set_fault(t->st, fail_writes, NULL);
	ctl_server_free(t->srv);
	t->srv = NULL;
	ctl_store_set_fault(t->st, NULL, NULL);
	double t0 = now_ms();
	/* its node stays online for now: server 1 may only be slow */
	settle(t, 1000);
	assert_true(node_of(t, ra.node_id).online);
	/* server 2's beat: server 1 silent for dead_after (2 s; beats are
	 * whole seconds, so at most a second more), then b hears it */
	double lat = wait_peer(t, b, ra.node_id, false, NULL, 5000);
	double since = now_ms() - t0;
	print_message("crashed server's node offline after %.0f ms (dead_after 2 s)\n",
	              since);
	assert_true(lat >= 0);
	assert_true(since >= 1000 && since < 4500);
	struct ctl_node n = node_of(t, ra.node_id);
	assert_false(n.online);
	assert_true(node_of(t, rb.node_id).online);
	struct ctl_server_stats st;
	ctl_server_get_stats(w.srv2, &st);
	assert_int_equal(st.nodes_swept, 1);
	assert_int_equal(st.beat_failures, 0);
	assert_int_equal(st.server_id, node_of(t, rb.node_id).online_server);
	tc_free(a);
	tc_free(b);
	stop_two(&w);
}

static void clean_stop_takes_only_its_nodes(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	join2(t, &w, b, "bravo", t->key, &rb);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	ctl_server_free(t->srv);
	t->srv = NULL;
	assert_false(node_of(t, ra.node_id).online);
	double lat = wait_peer(t, b, ra.node_id, false, NULL, 2000);
	assert_true(lat >= 0 && lat < 1000);
	/* and a server starting now sweeps nothing of server 2 */
	start_server(t);
	settle(t, 500);
	assert_true(node_of(t, rb.node_id).online);
	tc_free(a);
	tc_free(b);
	stop_two(&w);
}

static void node_moving_servers_stays_online(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb, ra2;
	struct ctl_msg m;
	tc_join(t, b, "bravo", t->key, &rb);
	expect_full(t, b, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 1, &m);
	ctl_msg_free(&m);
	settle(t, 300);
	int64_t s1 = node_of(t, ra.node_id).online_server;
	/* a reaches server 2 while its connection to server 1 is still up
	 * (server 1 unreachable from where a is now, say) */
	struct tc *a2 = tc_same(a);
	join2(t, &w, a2, "alpha", NULL, &ra2);
	assert_int_equal(ra2.status, CTL_REG_OK);
	assert_int_equal(ra2.node_id, ra.node_id);
	expect_full(t, a2, 1, &m);
	ctl_msg_free(&m);
	settle(t, 300);
	assert_int_not_equal(node_of(t, ra.node_id).online_server, s1);
	/* server 1 sees the old connection close: its offline is not for a
	 * node that server 2 holds now */
	tc_close(a);
	settle(t, 1000);
	struct ctl_node n = node_of(t, ra.node_id);
	assert_true(n.online);
	assert_int_not_equal(n.online_server, s1);
	/* b, on server 1, never saw a go offline */
	for (;;) {
		int r = tc_recv(t, b, 100, &m);
		if (r != 1)
			break;
		if (m.type == CTL_MSG_MAP_DELTA)
			for (size_t i = 0; i < m.u.delta.n_peers; i++)
				if (m.u.delta.peers[i].id == ra.node_id)
					assert_true(m.u.delta.peers[i].online);
		ctl_msg_free(&m);
	}
	/* when a leaves server 2 for good, it goes offline */
	tc_close(a2);
	assert_true(wait_peer(t, b, ra.node_id, false, NULL, 2000) >= 0);
	assert_false(node_of(t, ra.node_id).online);
	tc_free(a);
	tc_free(a2);
	tc_free(b);
	stop_two(&w);
}

/* Whether ip (IPv4, host order) is what m says peer id's seen_ip is (a
 * whole entry or a patch). */
static bool seen_is(const struct ctl_msg *m, uint64_t id, uint32_t ip)
{
	const struct ctl_ip *got = NULL;
	if (m->type == CTL_MSG_MAP_FULL)
		for (size_t i = 0; i < m->u.map.n_peers; i++)
			if (m->u.map.peers[i].id == id)
				got = &m->u.map.peers[i].seen_ip;
	if (m->type == CTL_MSG_MAP_DELTA) {
		for (size_t i = 0; i < m->u.delta.n_peers; i++)
			if (m->u.delta.peers[i].id == id)
				got = &m->u.delta.peers[i].seen_ip;
		for (size_t i = 0; i < m->u.delta.n_patches; i++)
			if (m->u.delta.patches[i].id == id &&
			    (m->u.delta.patches[i].fields & CTL_PATCH_SEEN_IP))
				got = &m->u.delta.patches[i].seen_ip;
	}
	uint8_t want[4] = {ip >> 24, ip >> 16 & 0xff, ip >> 8 & 0xff, ip & 0xff};
	return got && got->family == 4 && !memcmp(got->addr, want, 4);
}

/* Waits for a map that says peer id's seen_ip is ip; ms it took, or -1. */
static double wait_seen(struct t *t, struct tc *c, uint64_t id, uint32_t ip, int ms)
{
	double t0 = now_ms();
	while (now_ms() - t0 < ms) {
		struct ctl_msg m;
		if (tc_recv(t, c, (int)(ms - (now_ms() - t0)) + 1, &m) != 1)
			return -1;
		bool hit = seen_is(&m, id, ip);
		ctl_msg_free(&m);
		if (hit)
			return now_ms() - t0;
	}
	return -1;
}

/* seen_ip (where a node's control connection comes from, for birthday
 * probing) goes through the store: a node on server 1 gets the seen_ip of
 * a node on server 2 and the other way round, and when that node moves to
 * server 1 from another address, its new seen_ip replaces the old one in
 * every map. */
static void seen_ip_crosses_servers(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb, rb2;
	struct ctl_msg m;
	tc_src = 0x7f000015; /* 127.0.0.21 */
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_src = 0x7f000016; /* 127.0.0.22 */
	join2(t, &w, b, "bravo", t->key, &rb);
	tc_expect(t, b, CTL_MSG_MAP_FULL, &m);
	assert_true(seen_is(&m, ra.node_id, 0x7f000015)); /* a, through the store */
	ctl_msg_free(&m);
	double took = wait_seen(t, a, rb.node_id, 0x7f000016, 3000);
	print_message("b's seen_ip (server 2) in a's map (server 1) after %.1f ms\n",
	              took);
	assert_true(took >= 0);
	assert_string_equal(node_of(t, rb.node_id).seen_ip, "127.0.0.22");

	/* b moves to server 1 from another address: a (and the store) get
	 * the new one, not server 2's stale one */
	struct tc *b2 = tc_same(b);
	tc_src = 0x7f000017; /* 127.0.0.23 */
	tc_join(t, b2, "bravo", NULL, &rb2);
	tc_src = 0;
	assert_int_equal(rb2.node_id, rb.node_id);
	took = wait_seen(t, a, rb.node_id, 0x7f000017, 3000);
	print_message("b's new seen_ip after the move: %.1f ms\n", took);
	assert_true(took >= 0);
	assert_string_equal(node_of(t, rb.node_id).seen_ip, "127.0.0.23");
	tc_free(a);
	tc_free(b);
	tc_free(b2);
	stop_two(&w);
}

/* A node moved from server 1 to server 2, and its old connection to
 * server 1 is a silent leftover (half-open: nothing from it for longer
 * than a keepalive interval). When the node then goes offline on server 2,
 * server 1 does not write it online again through the leftover: it stays
 * offline (a flap otherwise, and a holder that is not where the node is). */
static void stale_connection_does_not_take_the_node_back(void **state)
{
	struct t *t = *state;
	struct two w;
	static const struct ctl_server_config quick_ka = {
	    .beat_ms = 200, .dead_after_s = 2, .keepalive_ms = 400, .behind_ms = 60000};
	start_two_with(t, &w, &quick_ka);
	struct tc *a = tc_new();
	struct ctl_register_resp ra, ra2;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	int64_t s1 = node_of(t, ra.node_id).online_server;
	struct tc *a2 = tc_same(a);
	join2(t, &w, a2, "alpha", NULL, &ra2);
	assert_int_equal(ra2.node_id, ra.node_id);
	settle(t, 300);
	int64_t s2 = node_of(t, ra.node_id).online_server;
	assert_int_not_equal(s2, s1);
	settle(t, 600); /* a, on server 1, silent for more than a keepalive */
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	assert_int_equal(st.nodes_online, 1); /* the leftover is still open */
	tc_close(a2);
	settle(t, 1500);
	struct ctl_node n = node_of(t, ra.node_id);
	print_message("after the node left server 2: %s, held by %lld\n",
	              n.online ? "online" : "offline", (long long)n.online_server);
	assert_false(n.online);
	tc_free(a);
	tc_free(a2);
	stop_two(&w);
}

/* Another server took this one for stopped (it was paused, its beats did
 * not reach the store) and swept its nodes: they are written online again,
 * held by this one, and the others see them online. */
static void swept_while_running_comes_back(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	join2(t, &w, b, "bravo", t->key, &rb);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	settle(t, 300);
	int64_t s1 = node_of(t, ra.node_id).online_server;
	/* both servers' beats 100 s old, as a pause leaves them, and a third
	 * server beats now: both look silent to it. (Aged in the store, not
	 * told by a clock far ahead: on PostgreSQL a beat is by the database's
	 * clock whatever the caller says.) Neither server is pumped until its
	 * nodes are swept. */
	test_store_exec(&t->ts, "UPDATE servers SET beat = beat - 100");
	struct ctl_store *st3 = test_store_reopen(&t->ts);
	ctl_store_set_server(st3, 777);
	size_t swept = 0;
	assert_int_equal(ctl_store_server_beat(st3, (int64_t)time(NULL), 10, &swept), 0);
	assert_int_equal(swept, 2);
	assert_false(node_of(t, ra.node_id).online);
	/* server 3 leaves (its row would make server 1 look alive forever) */
	assert_int_equal(ctl_store_server_leave(st3, (int64_t)time(NULL), NULL), 0);
	ctl_store_close(st3);
	/* both servers write their nodes online again */
	double t0 = now_ms();
	while (now_ms() - t0 < 3000 &&
	       !(node_of(t, ra.node_id).online && node_of(t, rb.node_id).online))
		pump(t, 10);
	print_message("swept nodes online again after %.0f ms\n", now_ms() - t0);
	struct ctl_node n = node_of(t, ra.node_id);
	assert_true(n.online);
	assert_int_equal(n.online_server, s1);
	assert_true(node_of(t, rb.node_id).online);
	/* stays so over the next beats */
	settle(t, 1000);
	assert_true(node_of(t, ra.node_id).online);
	assert_true(node_of(t, rb.node_id).online);
	tc_free(a);
	tc_free(b);
	stop_two(&w);
}

static void pending_approved_through_other_server(void **state)
{
	struct t *t = *state;
	struct two w;
	start_two(t, &w);
	struct tc *p = tc_new();
	struct ctl_register_resp rp;
	struct ctl_msg m;
	tc_join(t, p, "pend", NULL, &rp);
	assert_int_equal(rp.status, CTL_REG_PENDING);
	/* approved through server 2 (its admin API: store, then notify) */
	assert_int_equal(ctl_store_node_approve(w.st2, (int64_t)rp.node_id), 0);
	ctl_server_notify(w.srv2);
	double t0 = now_ms();
	tc_expect(t, p, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	print_message("approval via server 2 -> pending node on server 1: %.1f ms\n",
	              now_ms() - t0);
	assert_true(now_ms() - t0 < 1000);
	expect_full(t, p, 0, &m);
	ctl_msg_free(&m);
	settle(t, 200);
	assert_true(node_of(t, rp.node_id).online);
	tc_free(p);
	stop_two(&w);
}

static int freeze_reads(const char *point, void *arg)
{
	(void)arg;
	return strcmp(point, "map_version:read") == 0;
}

/* Server 1's view of an offline ephemeral node is older than the store's
 * (here: its reads of the map version fail, so it never refreshes; in life
 * the node came back through server 2 since server 1's last refresh): its
 * ephemeral timeout does not remove a node the store has online. */
static void ephemeral_back_on_other_server_not_reaped(void **state)
{
	struct t *t = *state;
	struct ctl_server_config over = fast;
	over.ephemeral_timeout_s = 1;
	struct two w;
	start_two_with(t, &w, &over);
	char eph[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {
	    .ephemeral = true, .reusable = true, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, eph, sizeof eph, NULL), 0);
	struct tc *e = tc_new();
	struct ctl_register_resp re, re2;
	struct ctl_msg m;
	tc_join(t, e, "eph", eph, &re);
	assert_int_equal(re.status, CTL_REG_OK);
	expect_full(t, e, 0, &m);
	ctl_msg_free(&m);
	settle(t, 200);
	tc_close(e); /* offline on server 1, which reads that */
	settle(t, 300);
	assert_false(node_of(t, re.node_id).online);
	ctl_store_set_fault(t->st, freeze_reads, NULL);
	struct tc *e2 = tc_same(e);
	join2(t, &w, e2, "eph", NULL, &re2);
	assert_int_equal(re2.status, CTL_REG_OK);
	assert_int_equal(re2.node_id, re.node_id);
	expect_full(t, e2, 0, &m);
	ctl_msg_free(&m);
	settle(t, 2500); /* past the timeout, by server 1's old view */
	struct ctl_node n;
	assert_int_equal(ctl_store_node_by_id(w.st2, (int64_t)re.node_id, &n), 0);
	assert_true(n.online);
	ctl_store_set_fault(t->st, NULL, NULL);
	tc_free(e);
	tc_free(e2);
	stop_two(&w);
}

/* With a store that announces changes (PostgreSQL), a change through
 * server 2 reaches server 1's node at once, not at server 1's next poll
 * (here 10 s away). Skipped on a store without (SQLite: the poll is all). */
static void change_notification_beats_the_poll(void **state)
{
	struct t *t = *state;
	if (ctl_store_watch_fd(t->st) < 0)
		skip();
	struct ctl_server_config over = fast;
	over.poll_ms = 10000;
	struct two w;
	start_two_with(t, &w, &over);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &ra);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	join2(t, &w, b, "bravo", t->key, &rb);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	double lat = wait_peer(t, a, rb.node_id, true, NULL, 2000);
	print_message("join on server 2 -> server 1 by notification: %.1f ms\n", lat);
	assert_true(lat >= 0 && lat < 1000);
	double t0 = now_ms();
	assert_int_equal(ctl_store_node_rename(w.st2, (int64_t)rb.node_id, "bravo-x"), 0);
	lat = wait_peer(t, a, rb.node_id, true, "bravo-x", 2000);
	print_message("rename via server 2's store -> server 1 by notification: "
	              "%.1f ms\n",
	              now_ms() - t0);
	assert_true(lat >= 0 && now_ms() - t0 < 1000);
	tc_free(a);
	tc_free(b);
	stop_two(&w);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(seen_ip_crosses_servers, setup, teardown),
	    cmocka_unit_test_setup_teardown(stale_connection_does_not_take_the_node_back,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(nodes_on_two_servers_see_each_other, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(crashed_server_nodes_swept_after_dead_after,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(clean_stop_takes_only_its_nodes, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(node_moving_servers_stays_online, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(swept_while_running_comes_back, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(pending_approved_through_other_server, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(ephemeral_back_on_other_server_not_reaped,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(change_notification_beats_the_poll, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
