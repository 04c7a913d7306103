/* mesh-control's map distribution (fixture in ctl_server_fixture.h, the
 * real server and store in process):
 *  - nodes that stop reading hold back nobody: a reader joins and gets its
 *    map, and a change reaches it within a second; what the server queues
 *    for the stalled ones stays bounded; one that reads again gets a whole
 *    map and is current;
 *  - a map of 20,000 peers reaches a real ctl_client (chunked MAP_FULL);
 *  - an endpoint change or an online flip goes out as a small patch, not a
 *    whole peer entry; a write that changes nothing sends nothing; bursts
 *    of changes are batched (at most one delta per coalesce interval);
 *  - seen_ip is the address of the node's control connection, patched when
 *    it reconnects from another;
 *  - the node's merge: patches in place, itself and unknown ids ignored. */
#include "tests/unit/ctl_map_fixture.h"

/* H3: with one output budget for all connections, about 40 joined nodes that
 * never read (each owed a ~0.8 MB map) froze every map update, and the
 * MAP_FULL of every node that joined after them. */
static void stalled_readers_hold_back_nobody(void **state)
{
	struct t *t = *state;
	enum { N = 1000, SLOW = 60 };
	int64_t *ids = calloc(N, sizeof *ids);
	store_nodes(t, N, 16, ids);
	server_sndbuf(t, 4096);
	struct tc *slow[SLOW];
	struct ctl_register_resp r;
	tc_rcvbuf = 4096;
	for (int i = 0; i < SLOW; i++) {
		char host[32];
		snprintf(host, sizeof host, "slow-%d", i);
		slow[i] = tc_new();
		tc_join_caps(t, slow[i], host, CTL_CAPS_ALL, &r);
	}
	tc_rcvbuf = 0;
	pump(t, 100);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	size_t queued = st.out_queued;

	struct tc *rd = tc_new();
	struct ctl_map_full map;
	tc_join_caps(t, rd, "reader", CTL_CAPS_ALL, &r);
	tc_read_map(t, rd, 2000, &map);
	assert_int_equal(map.n_peers, N + SLOW);
	uint64_t v = map.version;
	free_map(&map);

	/* one change: the reader sees it within a second */
	struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
	                            .endpoints = "198.18.7.7:41641"};
	assert_int_equal(ctl_store_node_update(t->st, ids[5], &u), 0);
	ctl_server_notify(t->srv);
	double t0 = now_ms();
	struct ctl_msg m;
	int got = tc_recv(t, rd, 1000, &m);
	double took = now_ms() - t0;
	if (got != 1)
		fail_msg("no delta for the reader within 1 s");
	assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
	assert_int_equal(m.u.delta.base_version, v);
	print_message("change reached the reader in %.1f ms\n", took);
	ctl_msg_free(&m);
	print_message("%d stalled readers: %zu bytes queued for them\n", SLOW, queued);
	/* each holds at most about a queue mark and one chunk */
	assert_true(queued <= (size_t)SLOW * (300u << 10));

	/* a stalled node reads again: a whole map, then it is current */
	struct ctl_map_full sm;
	tc_read_map(t, slow[0], 3000, &sm);
	while (tc_recv(t, slow[0], 500, &m) == 1) {
		assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
		assert_int_equal(ctl_map_apply_delta(&sm, &m.u.delta), 0);
		ctl_msg_free(&m);
	}
	ctl_server_get_stats(t->srv, &st);
	assert_int_equal(sm.version, st.map_version);
	assert_int_equal(sm.n_peers, N + SLOW); /* all but itself */
	const struct ctl_peer *p = ctl_map_find(&sm, (uint64_t)ids[5]);
	assert_non_null(p);
	assert_int_equal(p->n_eps, 1);
	assert_int_equal(p->eps[0].addr[2], 7);
	free_map(&sm);
	for (int i = 0; i < SLOW; i++)
		tc_free(slow[i]);
	tc_free(rd);
	free(ids);
}


/* --- H4: 20,000 peers through the real client --------------------------- */

struct big {
	size_t n_peers;
	int maps, online;
};

static void big_state(void *ctx, enum ctl_client_state st, const char *detail,
                      const struct ctl_register_resp *resp)
{
	struct big *b = ctx;
	if (st == CTL_CLIENT_ONLINE)
		b->online++;
}

static void big_map(void *ctx, const struct ctl_map_full *map,
                    const struct ctl_map_change *chg)
{
	struct big *b = ctx;
	b->n_peers = map->n_peers;
	b->maps++;
}

static void map_of_20000_peers_reaches_a_node(void **state)
{
	struct t *t = *state;
	enum { N = 20000 };
	store_nodes(t, N, 0, NULL);
	static const struct ctl_client_callbacks cb = {.on_state = big_state,
	                                               .on_map = big_map};
	struct big b = {0};
	struct ctl_client_config cfg = {.base = t->base,
	                                .host = "127.0.0.1",
	                                .port = t->port,
	                                .hostname = "big",
	                                .auth_key = t->key,
	                                .backoff_min_ms = 50,
	                                .backoff_max_ms = 200,
	                                .cb = &cb,
	                                .ctx = &b};
	uint8_t pub[32];
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, pub);
	memset(cfg.node_key, 7, 32);
	memset(cfg.disco_key, 8, 32);
	char err[256];
	struct ctl_client *c = ctl_client_new(&cfg, err, sizeof err);
	assert_non_null(c);
	double t0 = now_ms();
	while (b.n_peers < N && now_ms() - t0 < 60000)
		pump(t, 20);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("map of %zu peers after %.0f ms: %zu bytes in chunks, "
	              "built in %.1f ms; %d session(s)\n",
	              b.n_peers, now_ms() - t0, st.last_full_bytes, st.last_full_ms,
	              b.online);
	assert_int_equal(b.n_peers, N);
	assert_int_equal(b.online, 1); /* no reconnects on the way */
	assert_true(st.last_full_bytes > CTL_FRAME_BODY_MAX); /* past the old cliff */
	ctl_client_free(c);
}

/* --- M5 / H6: what a change costs --------------------------------------- */

static void send_eps(struct tc *c, const char *ep, uint16_t port)
{
	struct ctl_msg m = {.type = CTL_MSG_ENDPOINTS};
	m.u.endpoints.n = 1;
	assert_true(ctl_endpoint_parse(ep, &m.u.endpoints.ep[0]));
	m.u.endpoints.ep[0].port = port;
	tc_send(c, &m);
}

/* Frames of type MAP_DELTA within ms: their count and the body bytes. */
static int count_deltas(struct t *t, struct tc *c, int ms, size_t *bytes,
                        struct ctl_msg *last)
{
	int n = 0;
	struct ctl_frame f;
	*bytes = 0;
	while (tc_frame(t, c, ms, &f) == 1) {
		if (f.type != CTL_MSG_MAP_DELTA)
			continue;
		n++;
		*bytes += f.len;
		if (last) {
			ctl_msg_free(last);
			struct ctl_msg_err me;
			assert_int_equal(ctl_msg_decode(f.type, f.body, f.len, last, &me),
			                 0);
		}
	}
	return n;
}

static void endpoint_change_and_online_flip_are_patches(void **state)
{
	struct t *t = *state;
	store_nodes(t, 50, 8, NULL); /* peers with realistic entries */
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_map_full map;
	tc_join_caps(t, a, "a", CTL_CAPS_ALL, &ra);
	tc_read_map(t, a, 2000, &map);
	free_map(&map);
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &rb);
	tc_read_map(t, b, 2000, &map);
	free_map(&map);
	size_t bytes = 0;
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1); /* b joined */
	ctl_msg_free(&m);

	send_eps(b, "198.18.3.4:1", 41641);
	m.type = CTL_MSG_KEEPALIVE;
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1);
	print_message("endpoint change: a %zu-byte delta\n", bytes);
	assert_int_equal(m.u.delta.n_peers, 0);
	assert_int_equal(m.u.delta.n_patches, 1);
	assert_int_equal(m.u.delta.patches[0].id, rb.node_id);
	assert_true(m.u.delta.patches[0].fields & CTL_PATCH_ENDPOINTS);
	assert_false(m.u.delta.patches[0].fields & CTL_PATCH_ONLINE);
	assert_int_equal(m.u.delta.patches[0].n_eps, 1);
	assert_int_equal(m.u.delta.patches[0].eps[0].port, 41641);
	assert_true(bytes < 160);
	ctl_msg_free(&m);

	tc_close(b); /* offline */
	m.type = CTL_MSG_KEEPALIVE;
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1);
	print_message("online flip: a %zu-byte delta\n", bytes);
	assert_int_equal(m.u.delta.n_peers, 0);
	assert_int_equal(m.u.delta.n_patches, 1);
	assert_int_equal(m.u.delta.patches[0].fields,
	                 CTL_PATCH_ONLINE | CTL_PATCH_LAST_SEEN);
	assert_false(m.u.delta.patches[0].online);
	assert_true(bytes < 120);
	ctl_msg_free(&m);
	tc_free(a);
	tc_free(b);
}

/* A peer's seen_ip, written ip (host order), from the map or a patch. */
static void assert_ip4(const struct ctl_ip *ip, uint32_t want)
{
	assert_int_equal(ip->family, 4);
	uint32_t got = (uint32_t)ip->addr[0] << 24 | (uint32_t)ip->addr[1] << 16 |
	               (uint32_t)ip->addr[2] << 8 | ip->addr[3];
	assert_int_equal(got, want);
}

/* seen_ip (docs/disco.md, birthday probing) is where the server saw the
 * node's control connection come from, not what the node says: others get
 * it in the map and with a node that joins, endpoints the node reports do
 * not move it, and a reconnect from another address patches it (alone);
 * one from the same address sends nothing. */
static void seen_ip_is_the_connection_source(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new(), *b2 = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_map_full map;
	tc_src = 0x7f00000b; /* 127.0.0.11 */
	tc_join_caps(t, a, "a", CTL_CAPS_ALL, &ra);
	tc_read_map(t, a, 2000, &map);
	free_map(&map);
	tc_src = 0x7f00000c;
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &rb);
	tc_read_map(t, b, 2000, &map);
	assert_int_equal(map.n_peers, 1);
	assert_ip4(&map.peers[0].seen_ip, 0x7f00000b); /* a, as b's map has it */
	free_map(&map);
	size_t bytes = 0;
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1); /* b joined */
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_ip4(&m.u.delta.peers[0].seen_ip, 0x7f00000c);
	ctl_msg_free(&m);

	/* b claims to be elsewhere: its endpoints change, seen_ip does not */
	send_eps(b, "198.18.3.4:1", 41641);
	m.type = CTL_MSG_KEEPALIVE;
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1);
	assert_int_equal(m.u.delta.n_patches, 1);
	assert_false(m.u.delta.patches[0].fields & CTL_PATCH_SEEN_IP);
	ctl_msg_free(&m);

	/* b (same machine key) comes back from another address: the old
	 * connection is replaced, a hears of the new address in a patch */
	memcpy(b2->mpriv, b->mpriv, 32);
	memcpy(b2->mpub, b->mpub, 32);
	tc_src = 0x7f00000d;
	tc_join_caps(t, b2, "b", CTL_CAPS_ALL, &rb);
	tc_read_map(t, b2, 2000, &map);
	free_map(&map);
	m.type = CTL_MSG_KEEPALIVE;
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1);
	print_message("reconnect from a new address: a %zu-byte delta\n", bytes);
	assert_int_equal(m.u.delta.n_peers, 0);
	assert_int_equal(m.u.delta.n_patches, 1);
	assert_int_equal(m.u.delta.patches[0].id, rb.node_id);
	assert_int_equal(m.u.delta.patches[0].fields, CTL_PATCH_SEEN_IP);
	assert_ip4(&m.u.delta.patches[0].seen_ip, 0x7f00000d);
	assert_true(bytes < 120);
	ctl_msg_free(&m);

	/* and again from that address: nothing for anyone */
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &rb);
	tc_read_map(t, b, 2000, &map);
	free_map(&map);
	tc_src = 0;
	assert_int_equal(count_deltas(t, a, 300, &bytes, NULL), 0);
	tc_free(a);
	tc_free(b);
	tc_free(b2);
}

/* Third review H1, for a server behind a TCP proxy: `serve --no-seen-ip`
 * publishes no seen_ip, in the map or in a delta. */
static void no_seen_ip_publishes_none(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.no_seen_ip = true});
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_map_full map;
	tc_src = 0x7f00000b;
	tc_join_caps(t, a, "a", CTL_CAPS_ALL, &ra);
	tc_read_map(t, a, 2000, &map);
	free_map(&map);
	tc_src = 0x7f00000c;
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &rb);
	tc_src = 0;
	tc_read_map(t, b, 2000, &map);
	assert_int_equal(map.n_peers, 1);
	assert_int_equal(map.peers[0].seen_ip.family, 0);
	free_map(&map);
	size_t bytes = 0;
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
	assert_int_equal(count_deltas(t, a, 300, &bytes, &m), 1); /* b joined */
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].seen_ip.family, 0);
	ctl_msg_free(&m);
	tc_free(a);
	tc_free(b);
}

/* How many of map's peers have seen_ip ip (host order). */
static size_t n_seen_at(const struct ctl_map_full *map, uint32_t ip)
{
	size_t n = 0;
	for (size_t i = 0; i < map->n_peers; i++) {
		const struct ctl_ip *p = &map->peers[i].seen_ip;
		n += p->family == 4 &&
		     ((uint32_t)p->addr[0] << 24 | (uint32_t)p->addr[1] << 16 |
		      (uint32_t)p->addr[2] << 8 | p->addr[3]) == ip;
	}
	return n;
}

/* Third review H1, a proxy nobody configured: every node comes from its
 * address, which a member could then aim every peer's birthday probes at.
 * An address more than 32 online nodes come from is published for none of
 * them, also not for those that got it before the 33rd came. */
static void shared_source_not_published(void **state)
{
	struct t *t = *state;
	enum { N = 34, EARLY = 5 };
	const uint32_t proxy = 0x7f000015; /* 127.0.0.21 */
	struct tc *c[N], *o1 = tc_new(), *o2 = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map, m1;
	char host[16];
	const uint32_t plain = CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH |
	                       CTL_CAP_RELAYS_DELTA; /* its deltas unwrapped */
	tc_src = proxy;
	for (int i = 0; i < N; i++) {
		if (i == EARLY) { /* a few: published as usual */
			tc_src = 0x7f000016;
			tc_join_caps(t, o1, "obs1", plain, &r);
			tc_read_map(t, o1, 2000, &m1);
			assert_int_equal(n_seen_at(&m1, proxy), EARLY);
			tc_src = proxy;
		}
		c[i] = tc_new();
		snprintf(host, sizeof host, "s%d", i);
		tc_join_caps(t, c[i], host, CTL_CAPS_ALL, &r);
	}
	pump(t, 200);
	tc_src = 0x7f000017;
	tc_join_caps(t, o2, "obs2", CTL_CAPS_ALL, &r);
	tc_src = 0;
	tc_read_map(t, o2, 2000, &map);
	print_message("%d nodes from one address: %zu of %zu peers published "
	              "with it\n",
	              N, n_seen_at(&map, proxy), map.n_peers);
	assert_int_equal(map.n_peers, N + 1);
	assert_int_equal(n_seen_at(&map, proxy), 0);
	assert_int_equal(n_seen_at(&map, 0x7f000016), 1); /* obs1: its own */
	free_map(&map);
	/* obs1, there all along, hears it withdrawn (whole entries) */
	struct ctl_msg m;
	while (tc_recv(t, o1, 300, &m) == 1) {
		if (m.type == CTL_MSG_MAP_DELTA)
			assert_int_equal(ctl_map_apply_delta(&m1, &m.u.delta), 0);
		ctl_msg_free(&m);
	}
	assert_int_equal(m1.n_peers, N + 1);
	assert_int_equal(n_seen_at(&m1, proxy), 0);
	free_map(&m1);
	for (int i = 0; i < N; i++)
		tc_free(c[i]);
	tc_free(o1);
	tc_free(o2);
}

/* The same endpoints again and again: the store may count a write, but no
 * node hears of it, patch-capable or not. */
static void unchanged_endpoints_send_nothing(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *old = tc_new(), *b = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map;
	struct ctl_msg m;
	tc_join_caps(t, a, "a", CTL_CAPS_ALL, &r);
	tc_read_map(t, a, 2000, &map);
	free_map(&map);
	tc_join_caps(t, old, "old", 0, &r);
	expect_full(t, old, 1, &m);
	ctl_msg_free(&m);
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &r);
	tc_read_map(t, b, 2000, &map);
	free_map(&map);
	send_eps(b, "198.18.3.4:1", 41641);
	size_t bytes;
	count_deltas(t, a, 300, &bytes, NULL);
	count_deltas(t, old, 300, &bytes, NULL);
	struct ctl_server_stats s0, s1;
	ctl_server_get_stats(t->srv, &s0);
	for (int i = 0; i < 50; i++) {
		send_eps(b, "198.18.3.4:1", 41641);
		pump(t, 5);
	}
	int na = count_deltas(t, a, 400, &bytes, NULL);
	int no = count_deltas(t, old, 50, &bytes, NULL);
	ctl_server_get_stats(t->srv, &s1);
	print_message("50 identical ENDPOINTS: %d + %d deltas, %llu deltas sent\n", na,
	              no, (unsigned long long)(s1.maps_delta - s0.maps_delta));
	assert_int_equal(na, 0);
	assert_int_equal(no, 0);
	assert_int_equal(s1.maps_delta, s0.maps_delta);
	tc_free(a);
	tc_free(old);
	tc_free(b);
}

/* Changes every 10 ms for 300 ms reach a node as at most one delta per
 * 100 ms (the default coalescing), the last one current. */
static void bursts_are_batched(void **state)
{
	struct t *t = *state;
	struct ctl_server_config over = {.coalesce_ms = UINT32_MAX}; /* default */
	restart_with(t, &over);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp r;
	struct ctl_map_full map;
	tc_join_caps(t, a, "a", CTL_CAPS_ALL, &r);
	tc_read_map(t, a, 2000, &map);
	free_map(&map);
	tc_join_caps(t, b, "b", CTL_CAPS_ALL, &r);
	tc_read_map(t, b, 2000, &map);
	free_map(&map);
	size_t bytes;
	count_deltas(t, a, 300, &bytes, NULL);
	double t0 = now_ms();
	int n = 0;
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
	for (int i = 0; i < 30; i++) {
		send_eps(b, "198.18.3.4:1", (uint16_t)(1000 + i));
		/* pump 10 ms, reading a meanwhile */
		n += count_deltas(t, a, 10, &bytes, &m);
	}
	n += count_deltas(t, a, 300, &bytes, &m);
	double el = now_ms() - t0;
	print_message("30 changes in %.0f ms: %d deltas\n", el, n);
	assert_true(n >= 1);
	assert_true(n <= (int)(el / 100) + 1);
	assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
	assert_int_equal(m.u.delta.n_patches, 1);
	assert_int_equal(m.u.delta.patches[0].eps[0].port, 1029);
	ctl_msg_free(&m);
	tc_free(a);
	tc_free(b);
}

/* --- the node's merge ---------------------------------------------------- */

static void merge_applies_patches_in_place(void **state)
{
	(void)state;
	struct ctl_map_full map = {.version = 5, .self_id = 2};
	map.n_peers = 3;
	map.peers = calloc(3, sizeof *map.peers);
	for (int i = 0; i < 3; i++) {
		map.peers[i].id = (uint64_t)(i * 2 + 1); /* 1 3 5 */
		map.peers[i].online = true;
		map.peers[i].n_eps = 1;
		map.peers[i].eps[0].family = 4;
		map.peers[i].eps[0].port = 1;
	}
	struct ctl_peer *before = map.peers;
	struct ctl_peer_patch pp[3] = {
	    {.id = 3, .fields = CTL_PATCH_ONLINE | CTL_PATCH_LAST_SEEN, .last_seen = 99},
	    {.id = 5, .fields = CTL_PATCH_ENDPOINTS, .n_eps = 0},
	    {.id = 2, .fields = CTL_PATCH_ONLINE}, /* itself: ignored */
	};
	struct ctl_map_delta d = {
	    .version = 6, .base_version = 5, .n_patches = 3, .patches = pp};
	assert_int_equal(ctl_map_apply_delta(&map, &d), 0);
	assert_ptr_equal(map.peers, before); /* no copy */
	assert_int_equal(map.version, 6);
	assert_int_equal(map.n_peers, 3);
	assert_false(map.peers[1].online);
	assert_int_equal(map.peers[1].last_seen, 99);
	assert_int_equal(map.peers[1].n_eps, 1); /* not in the patch */
	assert_int_equal(map.peers[2].n_eps, 0);
	assert_true(map.peers[0].online);

	/* a shared delta naming the node itself as a whole peer */
	struct ctl_peer self = {.id = 2};
	struct ctl_peer_patch p7 = {.id = 7, .fields = CTL_PATCH_ONLINE}; /* unknown */
	struct ctl_map_delta d2 = {.version = 7,
	                           .base_version = 6,
	                           .n_peers = 1,
	                           .peers = &self,
	                           .n_patches = 1,
	                           .patches = &p7};
	assert_int_equal(ctl_map_apply_delta(&map, &d2), 0);
	assert_int_equal(map.n_peers, 3);
	assert_null(ctl_map_find(&map, 2));
	assert_null(ctl_map_find(&map, 7));

	/* one id as a peer and a patch: refused, map unchanged */
	struct ctl_peer p3 = {.id = 3};
	struct ctl_peer_patch q3 = {.id = 3, .fields = CTL_PATCH_ONLINE};
	struct ctl_map_delta d3 = {.version = 8,
	                           .base_version = 7,
	                           .n_peers = 1,
	                           .peers = &p3,
	                           .n_patches = 1,
	                           .patches = &q3};
	assert_int_equal(ctl_map_apply_delta(&map, &d3), -EINVAL);
	assert_int_equal(map.version, 7);

	/* a patch and a removal of one id: reported removed, not changed */
	uint64_t gone = 3;
	struct ctl_map_delta d4 = {.version = 8,
	                           .base_version = 7,
	                           .n_removed = 1,
	                           .removed = &gone,
	                           .n_patches = 1,
	                           .patches = &q3};
	uint64_t *ch, *rm;
	size_t nch, nrm;
	assert_int_equal(ctl_map_delta_changes(&map, &d4, &ch, &nch, &rm, &nrm), 0);
	assert_int_equal(nch, 0);
	assert_int_equal(nrm, 1);
	assert_int_equal(rm[0], 3);
	free(ch);
	free(rm);
	free(map.peers);

	/* a full or chunked map naming the node itself: that entry is dropped */
	struct ctl_map_full cm = {.version = 1, .self_id = 2, .n_peers = 3};
	cm.peers = calloc(3, sizeof *cm.peers);
	cm.peers[0].id = 4;
	cm.peers[1].id = 2;
	cm.peers[2].id = 1;
	assert_int_equal(ctl_map_finish(&cm), 0);
	assert_int_equal(cm.n_peers, 2);
	assert_null(ctl_map_find(&cm, 2));
	assert_int_equal(cm.peers[0].id, 1);
	free(cm.peers);
}

/* --- the new wire shapes ------------------------------------------------ */

static int dec(unsigned type, const char *body, struct ctl_msg *m)
{
	struct ctl_msg_err me;
	int r = ctl_msg_decode(type, (const uint8_t *)body, strlen(body), m, &me);
	if (r == 0)
		ctl_msg_free(m);
	return r;
}

static void wire_shapes_round_trip_and_refuse_bad_input(void **state)
{
	(void)state;
	/* a delta with a patch, and REGISTER_REQ caps, round trip */
	struct ctl_peer_patch pp = {.id = 9,
	                            .fields = CTL_PATCH_ENDPOINTS | CTL_PATCH_ONLINE,
	                            .n_eps = 1,
	                            .online = false};
	assert_true(ctl_endpoint_parse("[fd00::1]:41641", &pp.eps[0]));
	struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA};
	m.u.delta = (struct ctl_map_delta){
	    .version = 3, .base_version = 2, .n_patches = 1, .patches = &pp};
	uint8_t *out = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	assert_int_equal(ctl_msg_encode(&m, &out, &len, &me), 0);
	assert_non_null(strstr((char *)out, "\"patches\":[{\"id\":9,"));
	assert_null(strstr((char *)out, "home_relay")); /* only its fields */
	struct ctl_msg back;
	assert_int_equal(ctl_msg_decode(CTL_MSG_MAP_DELTA, out, len, &back, &me), 0);
	assert_int_equal(back.u.delta.n_patches, 1);
	assert_int_equal(back.u.delta.patches[0].fields,
	                 CTL_PATCH_ENDPOINTS | CTL_PATCH_ONLINE);
	assert_memory_equal(&back.u.delta.patches[0].eps[0], &pp.eps[0],
	                    sizeof pp.eps[0]);
	ctl_msg_free(&back);
	free(out);
	struct ctl_msg rq = {.type = CTL_MSG_REGISTER_REQ};
	snprintf(rq.u.reg_req.hostname, sizeof rq.u.reg_req.hostname, "h");
	rq.u.reg_req.caps = CTL_CAPS_ALL;
	assert_int_equal(ctl_msg_encode(&rq, &out, &len, &me), 0);
	assert_int_equal(ctl_msg_decode(CTL_MSG_REGISTER_REQ, out, len, &back, &me), 0);
	assert_int_equal(back.u.reg_req.caps, CTL_CAPS_ALL);
	ctl_msg_free(&back);
	free(out);

	/* hostile shapes are refused */
	const char *delta_bad[] = {
	    "{\"version\":2,\"base_version\":1,\"patches\":{}}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{}]}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{\"id\":-1}]}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{\"id\":1,"
	    "\"endpoints\":[\"1.2.3.4\"]}]}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{\"id\":1,"
	    "\"online\":1}]}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{\"id\":1},{\"id\":1}]}",
	    "{\"version\":2,\"base_version\":1,\"patches\":[{\"id\":1,"
	    "\"home_relay\":4294967296}]}",
	};
	for (size_t i = 0; i < sizeof delta_bad / sizeof *delta_bad; i++)
		assert_int_equal(dec(CTL_MSG_MAP_DELTA, delta_bad[i], &m), -EBADMSG);
	assert_int_equal(dec(CTL_MSG_MAP_PEERS, "{}", &m), -EBADMSG);
	assert_int_equal(dec(CTL_MSG_MAP_PEERS, "{\"peers\":[],\"more\":1}", &m),
	                 -EBADMSG);
	assert_int_equal(dec(CTL_MSG_MAP_PEERS, "{\"peers\":[],\"more\":true}", &m), 0);
	assert_int_equal(
	    dec(CTL_MSG_REGISTER_REQ,
	        "{\"node_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
	        "\"disco_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
	        "\"hostname\":\"h\",\"hostinfo\":{\"os\":\"l\",\"version\":\"1\"},"
	        "\"caps\":\"all\"}",
	        &m),
	    -EBADMSG);
	/* an id as a peer and a patch in one delta */
	const char *both =
	    "{\"version\":2,\"base_version\":1,\"peers\":[{\"id\":1,\"name\":\"a\","
	    "\"node_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
	    "\"disco_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
	    "\"addresses\":[],\"allowed_ips\":[]}],\"patches\":[{\"id\":1}]}";
	assert_int_equal(dec(CTL_MSG_MAP_DELTA, both, &m), -EBADMSG);
	/* a chunk that would take the map past CTL_MAP_PEERS_MAX */
	struct ctl_map_full big = {.n_peers = CTL_MAP_PEERS_MAX};
	struct ctl_peer one = {.id = 1};
	struct ctl_map_peers ch = {.n_peers = 1, .peers = &one};
	assert_int_equal(ctl_map_append_chunk(&big, &ch), -E2BIG);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(merge_applies_patches_in_place),
	    cmocka_unit_test(wire_shapes_round_trip_and_refuse_bad_input),
	    cmocka_unit_test_setup_teardown(endpoint_change_and_online_flip_are_patches,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(seen_ip_is_the_connection_source, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(no_seen_ip_publishes_none, setup, teardown),
	    cmocka_unit_test_setup_teardown(shared_source_not_published, setup, teardown),
	    cmocka_unit_test_setup_teardown(unchanged_endpoints_send_nothing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(bursts_are_batched, setup, teardown),
	    cmocka_unit_test_setup_teardown(stalled_readers_hold_back_nobody, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(map_of_20000_peers_reaches_a_node, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
