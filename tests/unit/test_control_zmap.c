/* mesh-control's compressed maps (CTL_CAP_ZSTD), against the real server
 * over TCP: a node without the cap gets plain JSON as before; a node with
 * it gets its MAP_FULL header and then ZMAP chunks that hold every node of
 * their id range (itself too), the same compressed bytes for every node
 * (compressed once: the server's chunk cache), and compressed deltas (the
 * same bytes for every node at one base), all of which decode to the map
 * the plain node has. */
#include "ctl_server_fixture.h"

#include "core/control/zmsg.h"

static void reg_caps(struct t *t, struct tc *c, const char *host, uint32_t caps,
                     struct ctl_register_resp *resp)
{
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *r = &m.u.reg_req;
	snprintf(r->auth_key, sizeof r->auth_key, "%s", t->key);
	memcpy(r->node_key, c->mpub, 32);
	r->node_key[0] ^= 1;
	memcpy(r->disco_key, c->mpub, 32);
	r->disco_key[0] ^= 2;
	snprintf(r->hostname, sizeof r->hostname, "%s", host);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "test");
	r->caps = caps;
	tc_send(c, &m);
	struct ctl_msg rm;
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &rm);
	*resp = rm.u.reg_resp;
	assert_int_equal(resp->status, CTL_REG_OK);
}

/* What a node received for one map: its peers' ids (itself left out, as a
 * node does), how many ZMAP and plain map messages, and the ZMAP bodies. */
struct got {
	uint64_t *ids;
	size_t n_ids, n_self;
	int zmaps, plain;
	uint8_t *zb[64];
	size_t zl[64];
	size_t nz;
};

static void got_free(struct got *g)
{
	free(g->ids);
	for (size_t i = 0; i < g->nz; i++)
		free(g->zb[i]);
	memset(g, 0, sizeof *g);
}

/* The next map message, unwrapped if it came compressed (its ZMAP body
 * kept in g). 1, or 0 on timeout. */
static int next_map(struct t *t, struct tc *c, struct got *g, struct ctl_msg *m)
{
	for (;;) {
		struct ctl_frame f;
		if (tc_frame(t, c, 3000, &f) != 1)
			return 0;
		uint8_t *buf = NULL, type = f.type;
		const uint8_t *body = f.body;
		size_t len = f.len;
		if (f.type == CTL_MSG_ZMAP) {
			struct ctl_msg_err err;
			assert_int_equal(ctl_zmsg_unwrap(NULL, f.body, f.len,
			                                 CTL_FRAME_BODY_MAX, &type, &buf,
			                                 &len, &err),
			                 0);
			g->zmaps++;
			if (g->nz < 64) {
				g->zb[g->nz] = malloc(f.len);
				memcpy(g->zb[g->nz], f.body, f.len);
				g->zl[g->nz++] = f.len;
			}
			body = buf;
		} else if (f.type != CTL_MSG_KEEPALIVE) {
			g->plain++;
		}
		struct ctl_msg_err me;
		assert_int_equal(ctl_msg_decode(type, body, len, m, &me), 0);
		free(buf);
		if (m->type != CTL_MSG_KEEPALIVE)
			return 1;
		ctl_msg_free(m);
	}
}

/* Reads (and drops) map updates until none came for 300 ms. */
static void drain(struct t *t, struct tc *c)
{
	struct ctl_frame f;
	while (tc_frame(t, c, 300, &f) == 1)
		;
}

static void add_ids(struct got *g, const struct ctl_peer *p, size_t n, uint64_t self)
{
	g->ids = realloc(g->ids, (g->n_ids + n + 1) * sizeof *g->ids);
	for (size_t i = 0; i < n; i++) {
		if (p[i].id == self)
			g->n_self++;
		else
			g->ids[g->n_ids++] = p[i].id;
	}
}

/* A whole map: MAP_FULL, then MAP_PEERS while more. */
static void recv_full(struct t *t, struct tc *c, uint64_t self, struct got *g)
{
	struct ctl_msg m;
	assert_int_equal(next_map(t, c, g, &m), 1);
	assert_int_equal(m.type, CTL_MSG_MAP_FULL);
	add_ids(g, m.u.map.peers, m.u.map.n_peers, self);
	bool more = m.u.map.more;
	ctl_msg_free(&m);
	while (more) {
		assert_int_equal(next_map(t, c, g, &m), 1);
		assert_int_equal(m.type, CTL_MSG_MAP_PEERS);
		add_ids(g, m.u.chunk.peers, m.u.chunk.n_peers, self);
		more = m.u.chunk.more;
		ctl_msg_free(&m);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void same_ids(struct got *a, struct got *b)
{
	qsort(a->ids, a->n_ids, sizeof *a->ids, cmp_u64);
	qsort(b->ids, b->n_ids, sizeof *b->ids, cmp_u64);
	assert_int_equal(a->n_ids, b->n_ids);
	assert_memory_equal(a->ids, b->ids, a->n_ids * sizeof *a->ids);
}

static void caps_decide_compression(void **state)
{
	struct t *t = *state;
	bulk_nodes(t, 1500, false);
	pump(t, 100);
	struct tc *plain = tc_new(), *z1 = tc_new(), *z2 = tc_new();
	struct ctl_register_resp rp, r1, r2;
	/* every node with the chunked map, only two with compression */
	uint32_t old = CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH | CTL_CAP_RELAYS_DELTA;
	reg_caps(t, plain, "plain", old, &rp);
	struct got gp = {0}, g1 = {0}, g2 = {0};
	recv_full(t, plain, rp.node_id, &gp);
	reg_caps(t, z1, "zone", CTL_CAPS_ALL, &r1);
	recv_full(t, z1, r1.node_id, &g1);
	reg_caps(t, z2, "ztwo", CTL_CAPS_ALL, &r2);
	recv_full(t, z2, r2.node_id, &g2);
	print_message("plain node: %d plain map messages, %d compressed; compressed "
	              "node: %d plain, %d compressed\n",
	              gp.plain, gp.zmaps, g1.plain, g1.zmaps);
	/* caps off: plain JSON only, the node not in its own map */
	assert_int_equal(gp.zmaps, 0);
	assert_true(gp.plain >= 2);
	assert_int_equal(gp.n_self, 0);
	assert_int_equal(gp.n_ids, 1500);
	/* caps on: the header plain, every chunk compressed; the node itself
	 * is in a shared chunk, once, and dropped */
	assert_int_equal(g1.plain, 1);
	assert_true(g1.zmaps >= 2);
	assert_int_equal(g1.n_self, 1);
	assert_int_equal(g1.n_ids, 1501); /* the bulk nodes and "plain" */
	assert_int_equal(g2.n_self, 1);
	assert_int_equal(g2.n_ids, 1502);
	/* the map the plain node has, plus the nodes that came after it */
	struct got want = {0};
	add_ids(&want, (struct ctl_peer[]){{.id = r1.node_id}}, 1, 0);
	for (size_t i = 0; i < gp.n_ids; i++)
		add_ids(&want, (struct ctl_peer[]){{.id = gp.ids[i]}}, 1, 0);
	add_ids(&want, (struct ctl_peer[]){{.id = rp.node_id}}, 1, 0);
	struct got want1 = {0};
	for (size_t i = 0; i < want.n_ids; i++)
		if (want.ids[i] != r1.node_id)
			add_ids(&want1, (struct ctl_peer[]){{.id = want.ids[i]}}, 1, 0);
	same_ids(&g1, &want1);
	/* compressed once: the chunks of ranges that did not change since
	 * are the same bytes for both nodes (z2's own range changed when it
	 * joined, so that one, the last, was built again) */
	size_t same = 0;
	for (size_t i = 0; i < g1.nz && i < g2.nz; i++)
		same += g1.zl[i] == g2.zl[i] && !memcmp(g1.zb[i], g2.zb[i], g1.zl[i]);
	print_message("%zu of %zu chunks byte-identical for two nodes\n", same, g2.nz);
	assert_int_equal(g1.nz, g2.nz);
	assert_true(same >= g2.nz - 1 && same >= 3);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	print_message("chunks built %llu, sent from the cache %llu\n",
	              (unsigned long long)st.zchunks_built,
	              (unsigned long long)st.zchunks_reused);
	assert_true(st.zchunks_reused >= 3);
	assert_true(st.zbytes_sent * 3 < st.zbytes_raw);

	/* A change of a few whole entries: a compressed delta, the same bytes
	 * for both compressed nodes; the plain node gets it plain. */
	/* all three at the same version first (the others' joins) */
	drain(t, plain), drain(t, z1), drain(t, z2);
	bulk_nodes(t, 6, true);
	struct got dp = {0}, d1 = {0}, d2 = {0};
	struct tc *cs[3] = {plain, z1, z2};
	struct got *gs[3] = {&dp, &d1, &d2};
	for (int k = 0; k < 3; k++) {
		struct ctl_msg m;
		assert_int_equal(next_map(t, cs[k], gs[k], &m), 1);
		assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
		assert_int_equal(m.u.delta.n_peers, 6);
		ctl_msg_free(&m);
	}
	assert_int_equal(dp.zmaps, 0);
	assert_int_equal(dp.plain, 1);
	assert_int_equal(d1.zmaps, 1);
	assert_int_equal(d2.zmaps, 1);
	assert_int_equal(d2.plain, 0);
	assert_int_equal(d1.zl[0], d2.zl[0]);
	assert_memory_equal(d1.zb[0], d2.zb[0], d2.zl[0]);

	got_free(&gp), got_free(&g1), got_free(&g2), got_free(&want), got_free(&want1);
	got_free(&dp), got_free(&d1), got_free(&d2);
	tc_free(plain), tc_free(z1), tc_free(z2);
}

/* Third review L1: a chunk's body was freed only when it was built again,
 * and a range whose nodes all went is never built again: ephemeral churn
 * kept one body per 384 ids for good. Now a change in the range frees it. */
static void emptied_range_frees_its_chunk(void **state)
{
	struct t *t = *state;
	bulk_nodes(t, 800, false);
	pump(t, 100);
	struct tc *z1 = tc_new(), *z2 = tc_new();
	struct ctl_register_resp r1, r2;
	struct got g1 = {0}, g2 = {0};
	reg_caps(t, z1, "zone", CTL_CAPS_ALL, &r1);
	recv_full(t, z1, r1.node_id, &g1);
	assert_int_equal(g1.n_ids, 800);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	size_t full = st.zchunk_bytes;

	test_store_exec(&t->ts, "UPDATE meta SET map_version = map_version + 1;"
	                        "DELETE FROM nodes WHERE hostname = 'bulk'");
	ctl_server_notify(t->srv);
	pump(t, 200);
	reg_caps(t, z2, "ztwo", CTL_CAPS_ALL, &r2);
	recv_full(t, z2, r2.node_id, &g2);
	assert_int_equal(g2.n_ids, 1);
	ctl_server_get_stats(t->srv, &st);
	print_message("chunk cache: %zu bytes with 800 nodes, %zu after they went\n",
	              full, st.zchunk_bytes);
	assert_true(full > 0);
	assert_true(st.zchunk_bytes * 4 < full);
	got_free(&g1), got_free(&g2);
	tc_free(z1), tc_free(z2);
}

/* Third review M3: the compression cap is only usable with the chunked
 * map and patches it relies on. A node that sets it alone, or without
 * patches, gets plain maps, and never itself as a peer. */
static void zstd_cap_alone_gets_plain_maps(void **state)
{
	struct t *t = *state;
	bulk_nodes(t, 500, false);
	pump(t, 100);
	const uint32_t caps[2] = {CTL_CAP_ZSTD, CTL_CAP_ZSTD | CTL_CAP_MAP_CHUNKS};
	const char *names[2] = {"zalone", "znopatch"};
	for (int k = 0; k < 2; k++) {
		struct tc *c = tc_new();
		struct ctl_register_resp r;
		struct got g = {0};
		reg_caps(t, c, names[k], caps[k], &r);
		recv_full(t, c, r.node_id, &g);
		print_message("caps 0x%x: %d plain map messages, %d compressed\n",
		              caps[k], g.plain, g.zmaps);
		assert_int_equal(g.zmaps, 0);
		assert_int_equal(g.n_self, 0);
		assert_int_equal(g.n_ids, 500 + (size_t)k);
		got_free(&g);
		tc_free(c);
	}
}

/* A small change (one endpoint patch) stays plain even for a node with
 * the cap: compressing ~100 bytes gains nothing. */
static void small_delta_stays_plain(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	reg_caps(t, a, "alpha", CTL_CAPS_ALL, &ra);
	struct got ga = {0}, gb = {0};
	recv_full(t, a, ra.node_id, &ga);
	reg_caps(t, b, "bravo", CTL_CAPS_ALL, &rb);
	recv_full(t, b, rb.node_id, &gb);
	assert_int_equal(gb.n_ids, 1);
	struct ctl_msg m;
	assert_int_equal(next_map(t, a, &ga, &m), 1); /* bravo joined */
	ctl_msg_free(&m);
	int z_before = ga.zmaps, p_before = ga.plain;
	struct ctl_msg e = {.type = CTL_MSG_ENDPOINTS};
	e.u.endpoints.n = 1;
	e.u.endpoints.ep[0].family = 4;
	e.u.endpoints.ep[0].port = 41641;
	memcpy(e.u.endpoints.ep[0].addr, (const uint8_t[]){198, 18, 3, 4}, 4);
	tc_send(b, &e);
	assert_int_equal(next_map(t, a, &ga, &m), 1);
	assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
	assert_int_equal(m.u.delta.n_patches, 1);
	ctl_msg_free(&m);
	assert_int_equal(ga.zmaps, z_before);
	assert_int_equal(ga.plain, p_before + 1);
	got_free(&ga), got_free(&gb);
	tc_free(a), tc_free(b);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(caps_decide_compression, setup, teardown),
	    cmocka_unit_test_setup_teardown(small_delta_stays_plain, setup, teardown),
	    cmocka_unit_test_setup_teardown(emptied_range_frees_its_chunk, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(zstd_cap_alone_gets_plain_maps, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
