/* What a peer can make mesh-control serve spend by repeating itself (the
 * real server and SQLite store in process, ctl_server_fixture.h):
 *  - an approved node registering again and again, nothing changed: no
 *    store transaction of its own (its online state rides in the write
 *    batch), and past a burst of SRV_REG_BURST one REGISTER a second, the
 *    rest told to slow down (a retry, not a refusal);
 *  - the same node with new keys: still written at once;
 *  - one saved handshake message 1 replayed in a loop from one address:
 *    answered at most 64 + 32 a second (the defaults),
 *    the rest closed before any X25519; another address is unaffected;
 *  - an older node (single MAP_FULL) joining a mesh of exactly 10,001
 *    visible nodes is refused with "upgrade" instead of admitted and
 *    closed when its map fails. */
#include "tests/unit/ctl_server_fixture.h"

#include "servers/control/server_int.h" /* srv_hs_allow: its own clock */

static int n_reg_commits, n_update_commits;

static int count_commits(const char *point, void *arg)
{
	(void)arg;
	if (!strcmp(point, "register:before-commit"))
		n_reg_commits++;
	if (!strcmp(point, "update:before-commit"))
		n_update_commits++;
	return 0;
}

/* Connect, handshake and REGISTER_REQ (keyless) with c's keys; the first
 * message back: 1 REGISTER_RESP ok, 2 ERROR (in *err), -1 anything else. */
static int reregister(struct t *t, struct tc *c, struct ctl_msg *err)
{
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_send(c, "alpha", NULL);
	struct ctl_msg m;
	if (tc_recv(t, c, 3000, &m) != 1)
		return -1;
	int r = -1;
	if (m.type == CTL_MSG_REGISTER_RESP && m.u.reg_resp.status == CTL_REG_OK)
		r = 1;
	else if (m.type == CTL_MSG_ERROR) {
		*err = m;
		return 2;
	}
	ctl_msg_free(&m);
	return r;
}

/* Second review M-1: each REGISTER of an approved node was a synchronous
 * (synchronous=FULL) transaction, unthrottled: 30 reconnects of one node
 * were 30 fdatasyncs. Now a reconnect with nothing changed is no register
 * transaction at all, the write batches it causes are at most the burst
 * plus one a second, and the rest are told to slow down, which the node
 * retries. */
static void reregister_is_batched_and_rate_limited(void **state)
{
	struct t *t = *state;
	enum { N = 30 };
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp r;
	tc_join(t, a, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	int64_t id = (int64_t)r.node_id;
	tc_join(t, b, "bravo", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	pump(t, 100);

	n_reg_commits = n_update_commits = 0;
	ctl_store_set_fault(t->st, count_commits, NULL);
	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	int ok = 0, slow = 0;
	double t0 = now_ms();
	for (int i = 0; i < N; i++) {
		struct ctl_msg e;
		int k = reregister(t, a, &e);
		assert_true(k == 1 || k == 2);
		if (k == 2) {
			/* a retry (code 8), never a final refusal */
			assert_int_equal(e.u.error.code, CTL_REASON_INTERNAL);
			assert_non_null(strstr(e.u.error.text, "slow down"));
			assert_int_equal(tc_recv(t, a, 1000, &e), -1); /* closed */
			slow++;
		} else {
			ok++;
		}
	}
	double secs = (now_ms() - t0) / 1000.0;
	pump(t, 100); /* the last batch */
	ctl_server_get_stats(t->srv, &s1);
	ctl_store_set_fault(t->st, NULL, NULL);
	print_message("%d re-registers in %.2f s: %d answered, %d told to slow "
	              "down; %d register transactions, %d write batches\n",
	              N, secs, ok, slow, n_reg_commits, n_update_commits);
	assert_int_equal(n_reg_commits, 0);
	assert_true(n_update_commits <= 5 + (int)secs + 2);
	assert_true(ok <= 5 + (int)secs + 1);
	assert_true(slow >= 1);
	assert_int_equal(s1.registrations_throttled - s0.registrations_throttled,
	                 (uint64_t)slow);

	/* a second later the node is welcome again, and online in the store */
	pump(t, 1100);
	struct ctl_msg e;
	assert_int_equal(reregister(t, a, &e), 1);
	pump(t, 100);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &nd), 0);
	assert_true(nd.online);
	tc_free(a);
	tc_free(b);
}

/* The other half of M-1: what the store keeps besides the online state
 * (here the disco key) is still written at once, in the register
 * transaction, and reaches the other node. */
static void reregister_with_new_keys_commits_at_once(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, b, "bravo", t->key, &r);
	expect_full(t, b, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, a, "alpha", t->key, &r);
	int64_t id = (int64_t)r.node_id;
	pump(t, 100);

	n_reg_commits = 0;
	ctl_store_set_fault(t->st, count_commits, NULL);
	tc_connect(t, a);
	assert_int_equal(tc_handshake(t, a, t->spub), 0);
	m = (struct ctl_msg){.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *q = &m.u.reg_req;
	memcpy(q->node_key, a->mpub, 32);
	q->node_key[0] ^= 1;
	memcpy(q->disco_key, a->mpub, 32);
	q->disco_key[0] ^= 4; /* a new disco key */
	snprintf(q->hostname, sizeof q->hostname, "alpha");
	tc_send(a, &m);
	tc_expect(t, a, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(n_reg_commits, 1);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &nd), 0);
	assert_int_equal(nd.disco_key[0], a->mpub[0] ^ 4);
	/* b hears of it */
	bool seen = false;
	double end = now_ms() + 3000;
	while (!seen && now_ms() < end && tc_recv(t, b, 500, &m) == 1) {
		for (size_t i = 0; m.type == CTL_MSG_MAP_DELTA && i < m.u.delta.n_peers;
		     i++)
			if ((int64_t)m.u.delta.peers[i].id == id &&
			    m.u.delta.peers[i].disco_key[0] == (uint8_t)(a->mpub[0] ^ 4))
				seen = true;
		ctl_msg_free(&m);
	}
	assert_true(seen);
	tc_free(a);
	tc_free(b);
}

static bool fail_version_reads;

static int fail_version(const char *point, void *arg)
{
	(void)arg;
	return fail_version_reads && !strcmp(point, "map_version:read");
}

/* Third review M2: the batched reconnect asked the snapshot whether the
 * node was online. A close flushed online=0 to the store, the refresh
 * after it failed (the store busy), so the snapshot still said online;
 * the node came back, nothing was queued, and the next refresh published
 * it offline for good. Now the row the reconnect read decides. */
static void batched_reconnect_after_failed_refresh_is_online(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp r;
	tc_join(t, a, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	int64_t id = (int64_t)r.node_id;
	tc_join(t, b, "bravo", t->key, &r);
	pump(t, 200);

	fail_version_reads = true;
	ctl_store_set_fault(t->st, fail_version, NULL);
	tc_close(a);
	pump(t, 300); /* the offline write is flushed, the refresh fails */
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &nd), 0);
	assert_false(nd.online);
	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	struct ctl_msg e;
	assert_int_equal(reregister(t, a, &e), 1);
	ctl_server_get_stats(t->srv, &s1);
	assert_int_equal(s1.registrations_batched - s0.registrations_batched, 1);
	fail_version_reads = false;
	pump(t, 300);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(ctl_store_node_by_id(t->st, id, &nd), 0);
	assert_true(nd.online);
	tc_free(a);
	tc_free(b);
}

/* A connection from src (host order) that sends hs1 right away; 1 when
 * the server answered with HS2, -1 when it closed. */
static int replay_hs1(struct t *t, uint32_t src, const uint8_t *hs1, size_t len)
{
	struct tc *x = tc_new();
	x->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in b = {.sin_family = AF_INET};
	b.sin_addr.s_addr = htonl(src);
	assert_int_equal(bind(x->fd, (struct sockaddr *)&b, sizeof b), 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(t->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(x->fd, (struct sockaddr *)&a, sizeof a), 0);
	ctl_frame_decoder_init(&x->dec);
	x->buf = malloc(CTL_FRAME_MAX + 64);
	tc_raw(x, hs1, len);
	struct ctl_frame f;
	int r = tc_frame(t, x, 2000, &f);
	assert_true(r == 1 || r == -1);
	if (r == 1)
		assert_int_equal(f.type, CTL_FRAME_HS2);
	tc_free(x);
	return r;
}

/* Second review M-5: a saved message 1, sent again on new connections
 * from one address, was answered every time (five X25519 each, for the
 * price of a connect). Now one source gets at most its burst plus its
 * rate a second, the rest are closed before any X25519 and counted, and
 * a node from another address joins as usual meanwhile. */
static void replayed_handshake_capped_per_source(void **state)
{
	struct t *t = *state;
	enum { N = 300 };
	const uint32_t flood = 0x7f000002, other = 0x7f000003; /* 127.0.0.x */
	restart_with(t, &(struct ctl_server_config){.hs_per_source = UINT32_MAX});
	struct tc *c = tc_new();
	tc_src = flood;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	uint8_t hs1[256];
	size_t len = c->hs1_len;
	memcpy(hs1, c->hs1, len);
	tc_close(c);
	tc_src = 0;

	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	int answered = 1, closed = 0; /* the one above */
	double t0 = now_ms();
	for (int i = 0; i < N; i++) {
		if (replay_hs1(t, flood, hs1, len) == 1)
			answered++;
		else
			closed++;
	}
	double secs = (now_ms() - t0) / 1000.0;
	ctl_server_get_stats(t->srv, &s1);
	print_message("%d replays of one HS1 from one address in %.2f s: %d "
	              "answered, %d closed unanswered\n",
	              N + 1, secs, answered, closed);
	assert_true(answered <= 64 + (int)(32 * secs) + 4);
	assert_true(closed >= 1);
	assert_int_equal(s1.handshakes_limited - s0.handshakes_limited, (uint64_t)closed);

	/* another address: answered at once, and its node registers */
	struct ctl_register_resp r;
	tc_src = other;
	for (int i = 0; i < 8; i++)
		assert_int_equal(replay_hs1(t, other, hs1, len), 1);
	tc_join(t, c, "other", t->key, &r);
	tc_src = 0;
	assert_int_equal(r.status, CTL_REG_OK);
	tc_free(c);
}

/* Replays hs1 on n connections at once, the i-th from src(i) (host
 * order); returns how many the server answered with HS2 (the others it
 * closed). */
static int replay_many(struct t *t, uint32_t (*src)(int), int n, const uint8_t *hs1,
                       size_t len)
{
	struct tc **x = calloc((size_t)n, sizeof *x);
	assert_non_null(x);
	for (int i = 0; i < n; i++) {
		x[i] = tc_new();
		x[i]->fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in b = {.sin_family = AF_INET};
		b.sin_addr.s_addr = htonl(src(i));
		assert_int_equal(bind(x[i]->fd, (struct sockaddr *)&b, sizeof b), 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_port = htons(t->port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(x[i]->fd, (struct sockaddr *)&a, sizeof a), 0);
		ctl_frame_decoder_init(&x[i]->dec);
		x[i]->buf = malloc(CTL_FRAME_MAX + 64);
		tc_raw(x[i], hs1, len);
	}
	int answered = 0;
	for (int i = 0; i < n; i++) {
		struct ctl_frame f;
		int r = tc_frame(t, x[i], 3000, &f);
		assert_true(r == 1 || r == -1);
		answered += r == 1;
		tc_free(x[i]);
	}
	free(x);
	return answered;
}

static uint32_t src_many(int i) /* 127.1.x.y, as ctl-scale spreads nodes */
{
	return 0x7f010000u | ((uint32_t)(i / 250) << 8) | (uint32_t)(1 + i % 250);
}

static int src_base;
static uint32_t src_from_base(int i)
{
	return src_many(src_base + i);
}

static int flood_k;
static uint32_t src_one(int i)
{
	(void)i;
	return src_many(flood_k);
}

/* M-5's ceiling for all sources together: the same replay from 200
 * addresses, each far under its own rate, is answered at most the
 * global burst plus its rate a second (here hs_total 50: 100, then 50 a
 * second). */
static void replayed_handshake_capped_in_all(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.hs_total = 50});
	struct tc *c = tc_new();
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	uint8_t hs1[256];
	size_t len = c->hs1_len;
	memcpy(hs1, c->hs1, len);
	tc_free(c);
	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	double t0 = now_ms();
	int answered = 1;
	for (int round = 0; round < 4; round++)
		answered += replay_many(t, src_many, 200, hs1, len);
	double secs = (now_ms() - t0) / 1000.0;
	ctl_server_get_stats(t->srv, &s1);
	print_message("800 replays from 200 addresses in %.2f s: %d answered\n", secs,
	              answered);
	assert_true(answered <= 100 + (int)(50 * secs) + 4);
	assert_int_equal(s1.handshakes_limited - s0.handshakes_limited,
	                 (uint64_t)(801 - answered));
}

/* The table of sources is bounded (4,096 slots, filled to three
 * quarters): 3,100 addresses once each are all answered (past the table's
 * room a source is judged by the global bucket only), and once their
 * buckets refilled a sweep frees the slots, so a flooding address is held
 * to its own rate again. */
static void source_table_fills_and_recovers(void **state)
{
	struct t *t = *state;
	enum { N = 3100 };
	restart_with(t, &(struct ctl_server_config){.hs_per_source = UINT32_MAX});
	struct tc *c = tc_new();
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	uint8_t hs1[256];
	size_t len = c->hs1_len;
	memcpy(hs1, c->hs1, len);
	tc_free(c);
	int answered = 0;
	for (src_base = 0; src_base < N; src_base += 100)
		answered += replay_many(t, src_from_base, 100, hs1, len);
	assert_int_equal(answered, N);
	pump(t, 2200);   /* every bucket full again */
	flood_k = N - 1; /* found no slot before */
	double t0 = now_ms();
	int got = replay_many(t, src_one, 150, hs1, len);
	double secs = (now_ms() - t0) / 1000.0;
	print_message("%d sources once each: all answered; then 150 replays from "
	              "the last one: %d answered in %.2f s\n",
	              N, got, secs);
	assert_true(got <= 64 + (int)(32 * secs) + 4);
}

/* Third review M1: a sweep that freed anything allowed the next at once,
 * so sources rotating at about 1,500 a second, each gone after two, kept
 * the table at three quarters and made nearly every new connection pay
 * for a rebuild of all 4,096 slots. Now at most one every 100 ms. Driven
 * on the limiter's own clock: 6,000 sources over 3.9 s, timed so that
 * the table reaches three quarters just as the first source's bucket is
 * full again (each sweep then frees only the one or two before). */
static void rotating_sources_sweep_bounded(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.hs_total = 1000000});
	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	const uint64_t base = 1000000000;
	char src[32];
	for (int i = 0; i < 6000; i++) {
		snprintf(src, sizeof src, "198.18.%d.%d", i / 256, i % 256);
		srv_hs_allow(t->srv, src, base + (uint64_t)i * 2001 / 3072);
	}
	ctl_server_get_stats(t->srv, &s1);
	uint64_t sweeps = s1.hs_sweeps - s0.hs_sweeps;
	print_message("6000 sources in 3.9 s: %llu sweeps of the source table\n",
	              (unsigned long long)sweeps);
	assert_true(sweeps >= 1);
	assert_true(sweeps <= (3910 - 2001) / SRV_HS_SWEEP_MS + 2);
}

/* Maps review C-L1: the one-message estimate counted the peers less the
 * largest entry and allowed 10,001 of them (the node itself might be one).
 * A new older node is in no snapshot: with exactly 10,001 visible nodes it
 * was admitted (REGISTER_RESP ok, marked online), then its MAP_FULL failed
 * and closed it, and it came back in a loop. Now it is refused at once. */
static void older_node_refused_at_10001_peers(void **state)
{
	struct t *t = *state;
	bulk_nodes(t, CTL_PEERS_MAX + 1, false);
	/* without endpoints: 10,001 entries are well under 4 MiB, so only
	 * their count is over what one MAP_FULL may carry */
	test_store_exec(&t->ts, "UPDATE nodes SET endpoints = ''");
	restart_with(t, &(struct ctl_server_config){0});
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	tc_join(t, c, "old", t->key, &r); /* no caps: one MAP_FULL only */
	print_message("%d visible nodes, an older node joining: %s\n", CTL_PEERS_MAX + 1,
	              r.status == CTL_REG_REFUSED ? "refused" : "admitted");
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_UPGRADE_REQUIRED);
	tc_free(c);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(reregister_is_batched_and_rate_limited, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(reregister_with_new_keys_commits_at_once,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        batched_reconnect_after_failed_refresh_is_online, setup, teardown),
	    cmocka_unit_test_setup_teardown(replayed_handshake_capped_per_source, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(replayed_handshake_capped_in_all, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(source_table_fills_and_recovers, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(rotating_sources_sweep_bounded, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(older_node_refused_at_10001_peers, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
