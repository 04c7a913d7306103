/* mesh-control's node protocol server, in process on 127.0.0.1:0 with a
 * temporary SQLite store, against a small test client written here (Noise
 * IK + frames + messages over a plain non-blocking socket; the test pumps
 * the server's event loop while it waits). Covers registration (reusable,
 * single-use, bad, pending + approve, resume), MAP_FULL / MAP_DELTA with
 * latency, endpoints, removal by another store handle, wrong server key,
 * replayed handshake (no session), garbage / zero / oversized frames. The scale cases
 * are in test_control_server_scale.c. */
#include "tests/unit/ctl_server_fixture.h"

static void join_delta_endpoints_remove(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;

	tc_join(t, a, "alpha", t->key, &ra);
	assert_int_equal(ra.status, CTL_REG_OK);
	assert_string_equal(ra.name, "alpha");
	assert_string_equal(ra.fqdn, "alpha.mesh.internal");
	assert_int_equal(ra.ipv4[0], 100);
	expect_full(t, a, 0, &m);
	assert_string_equal(m.u.map.dns_domain, "mesh.internal");
	assert_int_equal(m.u.map.magic_dns.addr[0], 100);
	assert_int_equal(m.u.map.self_id, ra.node_id);
	uint64_t va = m.u.map.version;
	ctl_msg_free(&m);

	double t0 = now_ms();
	tc_join(t, b, "bravo", t->key, &rb);
	assert_int_equal(rb.status, CTL_REG_OK);
	expect_full(t, b, 1, &m);
	assert_int_equal(m.u.map.peers[0].id, ra.node_id);
	assert_true(m.u.map.peers[0].online);
	assert_int_equal(m.u.map.peers[0].n_allowed, 2);
	assert_int_equal(m.u.map.peers[0].allowed[0].bits, 32);
	ctl_msg_free(&m);

	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	double lat = now_ms() - t0;
	print_message("join -> delta to the other node: %.1f ms\n", lat);
	assert_true(lat < 1000);
	assert_int_equal(m.u.delta.base_version, va);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, rb.node_id);
	assert_true(m.u.delta.peers[0].online);
	ctl_msg_free(&m);

	/* endpoints from b reach a */
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	ep.u.endpoints.n = 2;
	assert_true(ctl_endpoint_parse("198.18.0.2:41641", &ep.u.endpoints.ep[0]));
	assert_true(ctl_endpoint_parse("[fd00::2]:41641", &ep.u.endpoints.ep[1]));
	ep.u.endpoints.home_relay = 3;
	t0 = now_ms();
	tc_send(b, &ep);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	print_message("endpoints -> delta: %.1f ms\n", now_ms() - t0);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].n_eps, 2);
	assert_int_equal(m.u.delta.peers[0].eps[0].port, 41641);
	assert_int_equal(m.u.delta.peers[0].home_relay, 3);
	ctl_msg_free(&m);
	/* b does not see itself (its own change alone sends it nothing) */
	assert_int_equal(tc_recv(t, b, 150, &m), 0);

	/* removed from outside (another store handle, as the admin CLI) */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	assert_int_equal(ctl_store_node_remove(st2, (int64_t)rb.node_id), 0);
	ctl_store_close(st2);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], rb.node_id);
	ctl_msg_free(&m);
	tc_expect(t, b, CTL_MSG_ERROR, &m);
	assert_int_equal(m.u.error.code, CTL_REASON_NODE_REMOVED);
	assert_int_equal(tc_recv(t, b, 1000, &m), -1);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.registrations_ok, 2);
	assert_int_equal(s.nodes_online, 1);
	assert_true(s.maps_delta >= 3);
	tc_free(a);
	tc_free(b);
}

static void wrong_server_key_fails(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	uint8_t bogus_priv[32], bogus_pub[32];
	ctl_noise_keypair(bogus_priv, bogus_pub);
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, bogus_pub), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.handshakes_failed, 1);
	assert_int_equal(s.handshakes_ok, 0);
	tc_free(c);
}

/* A replayed message 1 is answered (there is no timestamp table) but gives
 * no usable session: the replayer lacks the node's keys, so what it sends
 * next does not decrypt, the connection closes and nothing is stored. */
static void replayed_hs1_yields_nothing(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	tc_join(t, c, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	int64_t v0, v1;
	pump(t, 50);
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	uint8_t saved[256];
	size_t n = c->hs1_len;
	memcpy(saved, c->hs1, n);
	struct tc *e = tc_new();
	tc_connect(t, e);
	tc_raw(e, saved, n);
	struct ctl_frame f;
	assert_int_equal(tc_frame(t, e, 1000, &f), 1);
	assert_int_equal(f.type, CTL_FRAME_HS2);
	e->tr = c->tr; /* the replayer's best guess: the old session's keys */
	tc_register_send(e, "evil", NULL);
	assert_int_equal(tc_frame(t, e, 1000, &f), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.bad_frames, 1);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0);
	tc_free(c);
	tc_free(e);
}

static void bad_frames_close(void **state)
{
	struct t *t = *state;
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	struct tc *c = tc_new();
	struct ctl_frame f;

	tc_connect(t, c); /* garbage */
	tc_raw(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* zero length */
	tc_raw(c, "\0\0\0\0", 4);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* oversized, after the handshake */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_raw(c, "\xff\xff\xff\xff", 4);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* a frame that does not decrypt */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	uint8_t junk[4 + 40] = {0, 0, 0, 40};
	tc_raw(c, junk, sizeof junk);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* valid frame, a message out of order */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	tc_send(c, &ep);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.bad_frames, 4);
	assert_int_equal(s.bad_messages, 1);
	assert_int_equal(s.conns_active, 0);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v0, v1);
	tc_free(c);
}

static void bad_and_used_keys_refused(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new(), *c = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, a, "alpha", "mkey-99-000000000000000000000000000000000000000000000000",
	        &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_AUTH_KEY_UNKNOWN);
	assert_int_equal(tc_recv(t, a, 1000, &m), -1);

	char once[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, once, sizeof once, NULL), 0);
	tc_join(t, b, "bravo", once, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_join(t, c, "charlie", once, &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_AUTH_KEY_USED);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.registrations_refused, 2);
	tc_free(a);
	tc_free(b);
	tc_free(c);
}

static void pending_then_approved(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *p = tc_new();
	struct ctl_register_resp r, rp;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, p, "pend", NULL, &rp);
	assert_int_equal(rp.status, CTL_REG_PENDING);
	/* a may hear that the pending id is not in its map; never as a peer */
	int got = tc_recv(t, a, 200, &m);
	if (got == 1) {
		assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
		assert_int_equal(m.u.delta.n_peers, 0);
		ctl_msg_free(&m);
	}

	struct ctl_node nd;
	uint8_t mk[32];
	memcpy(mk, p->mpub, 32);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, mk, &nd), 0);
	assert_false(nd.approved);
	assert_int_equal(ctl_store_node_approve(t->st, nd.id), 0);
	ctl_server_notify(t->srv);
	tc_expect(t, p, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	assert_int_equal(m.u.reg_resp.node_id, nd.id);
	expect_full(t, p, 1, &m);
	ctl_msg_free(&m);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, nd.id);
	ctl_msg_free(&m);
	tc_free(a);
	tc_free(p);
}

static void reconnect_resumes_without_key(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *o = tc_new();
	struct ctl_register_resp r1, r2, ro;
	struct ctl_msg m;
	tc_join(t, o, "other", t->key, &ro);
	expect_full(t, o, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, a, "alpha", t->key, &r1);
	expect_full(t, a, 1, &m);
	ctl_msg_free(&m);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* a online */
	ctl_msg_free(&m);
	tc_close(a);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* a offline */
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_false(m.u.delta.peers[0].online);
	ctl_msg_free(&m);

	tc_join(t, a, "alpha", NULL, &r2);
	assert_int_equal(r2.status, CTL_REG_OK);
	assert_int_equal(r2.node_id, r1.node_id);
	assert_string_equal(r2.name, r1.name);
	assert_memory_equal(r2.ipv4, r1.ipv4, 4);
	assert_memory_equal(r2.ipv6, r1.ipv6, 16);
	expect_full(t, a, 1, &m);
	ctl_msg_free(&m);

	/* A second connection of the same machine replaces the first. */
	struct tc *a2 = tc_new();
	memcpy(a2->mpriv, a->mpriv, 32);
	memcpy(a2->mpub, a->mpub, 32);
	tc_join(t, a2, "alpha", NULL, &r2);
	assert_int_equal(r2.node_id, r1.node_id);
	assert_int_equal(tc_recv(t, a, 1000, &m), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.nodes_online, 2);
	tc_free(a);
	tc_free(a2);
	tc_free(o);
}

static void ephemeral_removed_after_offline(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.ephemeral_timeout_s = 1});
	char eph[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.ephemeral = true, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, eph, sizeof eph, NULL), 0);
	char again[CTL_SECRET_MAX]; /* reusable, made before the removal */
	kp.reusable = true;
	assert_int_equal(ctl_store_key_create(t->st, &kp, again, sizeof again, NULL), 0);
	struct tc *o = tc_new(), *e = tc_new();
	struct ctl_register_resp ro, re;
	struct ctl_msg m;
	tc_join(t, o, "other", t->key, &ro);
	expect_full(t, o, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, e, "eph", eph, &re);
	assert_int_equal(re.status, CTL_REG_OK);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* online */
	ctl_msg_free(&m);
	tc_close(e);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* offline */
	assert_false(m.u.delta.peers[0].online);
	ctl_msg_free(&m);
	double t0 = now_ms();
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* removed after 1-2 s */
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], re.node_id);
	ctl_msg_free(&m);
	print_message("ephemeral node removed %.0f ms after going offline\n",
	              now_ms() - t0);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)re.node_id, &nd),
	                 CTL_STORE_ENOTFOUND);
	/* Unlike a LOGOUT or a name taken back, this removal is final for
	 * the machine (it may have been cut off, not gone): it is told so. */
	tc_join(t, e, "eph", again, &re);
	assert_int_equal(re.status, CTL_REG_REFUSED);
	assert_int_equal(re.code, CTL_REASON_NODE_REMOVED);
	tc_free(o);
	tc_free(e);
}

static void limits_keepalive_idle_handshake(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_conns = 2,
	                                            .handshake_ms = 300,
	                                            .keepalive_ms = 100,
	                                            .idle_ms = 600});
	struct tc *a = tc_new(), *b = tc_new(), *x = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	struct ctl_frame f;
	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_connect(t, b); /* silent */
	tc_connect(t, x); /* third, over max_conns: b makes room for it */
	assert_int_equal(tc_frame(t, b, 500, &f), -1);
	assert_int_equal(tc_frame(t, x, 1000, &f), -1); /* handshake deadline */
	/* a sends nothing: keepalives arrive, then idle close */
	int kas = 0;
	double t0 = now_ms();
	for (;;) {
		int rr = tc_frame(t, a, 2000, &f);
		if (rr != 1)
			break;
		if (f.type == CTL_MSG_KEEPALIVE)
			kas++;
	}
	double idle = now_ms() - t0;
	print_message("idle close after %.0f ms, %d keepalives\n", idle, kas);
	assert_true(kas >= 2);
	assert_true(idle < 1500);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_refused_limit, 0);
	assert_int_equal(s.conns_evicted, 1);
	assert_int_equal(s.idle_closed, 2);
	assert_int_equal(s.nodes_online, 0);
	pump(t, 50); /* offline is written with the next broadcast's batch */
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)r.node_id, &nd), 0);
	assert_false(nd.online);
	tc_free(a);
	tc_free(b);
	tc_free(x);
}

/* 2,000 nodes in the store; one client joins and gets them all. */
int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(join_delta_endpoints_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(wrong_server_key_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(replayed_hs1_yields_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_frames_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_and_used_keys_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(pending_then_approved, setup, teardown),
	    cmocka_unit_test_setup_teardown(reconnect_resumes_without_key, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(ephemeral_removed_after_offline, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(limits_keepalive_idle_handshake, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
