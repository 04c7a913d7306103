/* mesh-control and ephemeral nodes (containers without a state directory),
 * in process on 127.0.0.1:0 against the fixture's test client:
 *  - REGISTER_REQ ephemeral=true stores the node ephemeral although its
 *    auth key is not;
 *  - LOGOUT removes the node now: the server answers LOGOUT and closes,
 *    peers get the removal in a delta; LOGOUT before registration is
 *    refused from the type byte and removes nothing;
 *  - name reuse: an ephemeral newcomer takes its hostname back from an
 *    offline ephemeral node of the same auth key or the same user, never
 *    from an online node, another key's or user's node, a persistent node,
 *    and a persistent newcomer never takes one. */
#include "tests/unit/ctl_server_fixture.h"

static void reg_send(struct tc *c, const char *host, const char *key, bool eph)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *r = &m.u.reg_req;
	snprintf(r->auth_key, sizeof r->auth_key, "%s", key ? key : "");
	memcpy(r->node_key, c->mpub, 32);
	r->node_key[0] ^= 1;
	memcpy(r->disco_key, c->mpub, 32);
	r->disco_key[0] ^= 2;
	snprintf(r->hostname, sizeof r->hostname, "%s", host);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "test");
	/* no caps: single MAP_FULLs and whole entries, what the test reads */
	r->ephemeral = eph;
	tc_send(c, &m);
}

/* A fresh machine joins: the name it got; its MAP_FULL is consumed. */
static uint64_t join(struct t *t, struct tc *c, const char *host, const char *key,
                     bool eph, char name[CTL_LABEL_MAX])
{
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	reg_send(c, host, key, eph);
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &m);
	if (m.u.reg_resp.status != CTL_REG_OK)
		fail_msg("%s: not ok: %s", host, m.u.reg_resp.reason);
	uint64_t id = m.u.reg_resp.node_id;
	snprintf(name, CTL_LABEL_MAX, "%s", m.u.reg_resp.name);
	ctl_msg_free(&m);
	tc_expect(t, c, CTL_MSG_MAP_FULL, &m);
	ctl_msg_free(&m);
	return id;
}

static void make_key(struct t *t, bool eph, const char *user, char *out)
{
	struct ctl_authkey_params kp = {
	    .reusable = true, .ephemeral = eph, .user = user, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, out, CTL_SECRET_MAX, NULL), 0);
}

static bool stored_ephemeral(struct t *t, uint64_t id)
{
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)id, &nd), 0);
	return nd.ephemeral;
}

static bool gone(struct t *t, uint64_t id)
{
	struct ctl_node nd;
	return ctl_store_node_by_id(t->st, (int64_t)id, &nd) == CTL_STORE_ENOTFOUND;
}

/* Offline as the server sees it: the connection closed and the close read. */
static void go_offline(struct t *t, struct tc *c)
{
	tc_close(c);
	pump(t, 100);
}

static void ephemeral_flag_stored(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	char na[CTL_LABEL_MAX], nb[CTL_LABEL_MAX];
	uint64_t ia = join(t, a, "steady", t->key, false, na);
	uint64_t ib = join(t, b, "box", t->key, true, nb);
	assert_false(stored_ephemeral(t, ia)); /* the key is not ephemeral */
	assert_true(stored_ephemeral(t, ib));  /* the node asked */
	tc_free(a);
	tc_free(b);
}

static void logout_removes_now(void **state)
{
	struct t *t = *state;
	struct tc *o = tc_new(), *e = tc_new();
	char no[CTL_LABEL_MAX], ne[CTL_LABEL_MAX];
	struct ctl_msg m;
	join(t, o, "other", t->key, false, no);
	uint64_t ie = join(t, e, "box", t->key, true, ne);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* box joined */
	ctl_msg_free(&m);

	double t0 = now_ms();
	tc_send(e, &(struct ctl_msg){.type = CTL_MSG_LOGOUT});
	tc_expect(t, e, CTL_MSG_LOGOUT, &m); /* the answer, then the close */
	ctl_msg_free(&m);
	assert_int_equal(tc_recv(t, e, 1000, &m), -1);
	print_message("LOGOUT -> answer: %.1f ms\n", now_ms() - t0);
	assert_true(gone(t, ie));
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* peers: removed */
	print_message("LOGOUT -> removal at a peer: %.1f ms\n", now_ms() - t0);
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], ie);
	ctl_msg_free(&m);

	/* A persistent node may log out too: its own session decides. */
	struct tc *p = tc_new();
	char np[CTL_LABEL_MAX];
	uint64_t ip = join(t, p, "keeper", t->key, false, np);
	tc_send(p, &(struct ctl_msg){.type = CTL_MSG_LOGOUT});
	tc_expect(t, p, CTL_MSG_LOGOUT, &m);
	ctl_msg_free(&m);
	assert_true(gone(t, ip));

	/* Before registering, there is nobody to log out: closed, unanswered,
	 * and the other node stays. */
	struct tc *x = tc_new();
	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	tc_send(x, &(struct ctl_msg){.type = CTL_MSG_LOGOUT});
	assert_int_equal(tc_recv(t, x, 1000, &m), -1);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_name(t->st, "other", &nd), 0);
	tc_free(o);
	tc_free(e);
	tc_free(p);
	tc_free(x);
}

static void name_back_from_offline_same_key(void **state)
{
	struct t *t = *state;
	struct tc *o = tc_new(), *e1 = tc_new(), *e2 = tc_new(), *e3 = tc_new();
	char n[CTL_LABEL_MAX];
	struct ctl_msg m;
	join(t, o, "other", t->key, false, n);
	uint64_t i1 = join(t, e1, "web", t->key, true, n);
	assert_string_equal(n, "web");
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m);
	ctl_msg_free(&m);
	go_offline(t, e1); /* killed: no logout */
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m);
	ctl_msg_free(&m);

	/* a new container (new keys) under the same hostname and key */
	uint64_t i2 = join(t, e2, "web", t->key, true, n);
	assert_string_equal(n, "web");
	assert_true(i2 != i1);
	assert_true(gone(t, i1));
	/* the peer learns both: the old one removed, the new one added */
	bool removed = false, added = false;
	while (!(removed && added) && tc_recv(t, o, 2000, &m) == 1) {
		if (m.type == CTL_MSG_MAP_DELTA) {
			for (size_t i = 0; i < m.u.delta.n_removed; i++)
				removed |= m.u.delta.removed[i] == i1;
			for (size_t i = 0; i < m.u.delta.n_peers; i++)
				added |= m.u.delta.peers[i].id == i2;
		}
		ctl_msg_free(&m);
	}
	assert_true(removed && added);

	/* never from a node that is online: the newcomer gets web-2 */
	uint64_t i3 = join(t, e3, "web", t->key, true, n);
	assert_string_equal(n, "web-2");
	assert_false(gone(t, i2));
	assert_false(gone(t, i3));
	tc_free(o);
	tc_free(e1);
	tc_free(e2);
	tc_free(e3);
}

static void name_kept_from_others(void **state)
{
	struct t *t = *state;
	char k2[CTL_SECRET_MAX], ka1[CTL_SECRET_MAX], ka2[CTL_SECRET_MAX],
	    kb[CTL_SECRET_MAX], n[CTL_LABEL_MAX];
	make_key(t, false, NULL, k2);
	assert_int_equal(ctl_store_user_create(t->st, "alice", time(NULL), NULL), 0);
	assert_int_equal(ctl_store_user_create(t->st, "bob", time(NULL), NULL), 0);
	make_key(t, false, "alice", ka1);
	make_key(t, true, "alice", ka2);
	make_key(t, false, "bob", kb);
	struct tc *c[8];
	for (int i = 0; i < 8; i++)
		c[i] = tc_new();

	/* another key, neither with a user: not taken */
	uint64_t i0 = join(t, c[0], "db", t->key, true, n);
	go_offline(t, c[0]);
	join(t, c[1], "db", k2, true, n);
	assert_string_equal(n, "db-2");
	assert_false(gone(t, i0));

	/* another key of the same user: taken (the key's own ephemeral
	 * flag is enough for the newcomer) */
	uint64_t ia = join(t, c[2], "api", ka1, true, n);
	go_offline(t, c[2]);
	uint64_t ia2 = join(t, c[3], "api", ka2, false, n);
	assert_string_equal(n, "api");
	assert_true(gone(t, ia));
	assert_true(stored_ephemeral(t, ia2));
	go_offline(t, c[3]);

	/* another user's offline ephemeral node: never */
	join(t, c[4], "api", kb, true, n);
	assert_string_equal(n, "api-2");
	assert_false(gone(t, ia2));

	/* an offline persistent holder keeps its name, and a persistent
	 * newcomer takes none */
	uint64_t ip = join(t, c[5], "files", t->key, false, n);
	go_offline(t, c[5]);
	join(t, c[6], "files", t->key, true, n);
	assert_string_equal(n, "files-2");
	assert_false(gone(t, ip));
	go_offline(t, c[6]);
	join(t, c[7], "files-2", t->key, false, n);
	assert_string_equal(n, "files-2-2");
	for (int i = 0; i < 8; i++)
		tc_free(c[i]);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(ephemeral_flag_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(logout_removes_now, setup, teardown),
	    cmocka_unit_test_setup_teardown(name_back_from_offline_same_key, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(name_kept_from_others, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
