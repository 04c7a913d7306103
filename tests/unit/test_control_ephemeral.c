/* mesh-control and ephemeral nodes (containers without a state directory),
 * in process on 127.0.0.1:0 against the fixture's test client:
 *  - REGISTER_REQ ephemeral=true stores the node ephemeral although its
 *    auth key is not;
 *  - LOGOUT removes the node now: the server answers LOGOUT and closes,
 *    peers get the removal in a delta; LOGOUT before registration is
 *    refused from the type byte and removes nothing;
 *  - LOGOUT from a pending node closes it and changes nothing: its row
 *    keeps its max_pending slot (no keyless churn around the limit);
 *  - a node that logged out may join again (no removed-machine entry:
 *    that is for the admin's removals);
 *  - name reuse: an ephemeral newcomer takes its hostname back from an
 *    offline ephemeral node of the same auth key or the same user, never
 *    from an online node, another key's or user's node, a persistent node,
 *    a node that registered another hostname ("db-2" is not "db"'s), and
 *    a persistent newcomer never takes one;
 *  - the holder is renamed, not removed: it keeps its registration, keys
 *    and addresses under the next free suffix, peers get the rename, and
 *    a live holder that was only reconnecting (it closed its connection
 *    itself) comes back with its keys alone and sees its new name;
 *  - only from a node that is gone: it closed its connection itself (FIN,
 *    RST) or was last seen over reclaim_after_s (60 s) ago, counted from
 *    the server's start at the earliest; a live node whose connection the
 *    server closed (say a timeout: it is in reconnect backoff) or that
 *    reconnects after a server restart keeps its name;
 *  - replicas sharing a hostname: the one back after a crash gets the
 *    suffix its predecessor had (app-2), not a new one;
 *  - a holder renamed by a reuse and not online since is not renamed
 *    again: the next newcomer gets the next free suffix;
 *  - a user removed and created again under the same name owns none of
 *    the old user's nodes. */
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
	assert_string_equal(m.u.map.self_name, name); /* its map says so too */
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

/* Node id's name in the store (it must exist). */
static const char *name_of(struct t *t, uint64_t id)
{
	static struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)id, &nd), 0);
	return nd.name;
}

/* Offline as the server sees it: the connection closed and the close read. */
static void go_offline(struct t *t, struct tc *c)
{
	tc_close(c);
	pump(t, 100);
}

static struct ctl_server_stats stats(struct t *t)
{
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	return st;
}

static void restart(struct t *t)
{
	ctl_server_free(t->srv);
	start_server(t);
}

/* A REGISTER_REQ's answer: its type, and the status of a REGISTER_RESP. */
static int reg_answer(struct t *t, struct tc *c, const char *host, const char *key,
                      uint32_t *status)
{
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	reg_send(c, host, key, false);
	assert_int_equal(tc_recv(t, c, 2000, &m), 1);
	int type = m.type;
	if (type == CTL_MSG_REGISTER_RESP)
		*status = m.u.reg_resp.status;
	ctl_msg_free(&m);
	return type;
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
	/* not banned: the same machine may join again with the same key */
	join(t, p, "keeper", t->key, false, np);
	assert_string_equal(np, "keeper");

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
	/* the holder is renamed, not removed */
	assert_false(gone(t, i1));
	assert_string_equal(name_of(t, i1), "web-2");
	/* the peer learns both: the old one renamed, the new one added */
	bool renamed = false, added = false, removed = false;
	while (!(renamed && added) && tc_recv(t, o, 2000, &m) == 1) {
		if (m.type == CTL_MSG_MAP_DELTA) {
			for (size_t i = 0; i < m.u.delta.n_removed; i++)
				removed |= m.u.delta.removed[i] == i1;
			for (size_t i = 0; i < m.u.delta.n_peers; i++) {
				const struct ctl_peer *p = &m.u.delta.peers[i];
				added |= p->id == i2;
				renamed |= p->id == i1 && !strcmp(p->name, "web-2");
			}
		}
		ctl_msg_free(&m);
	}
	assert_true(renamed && added);
	assert_false(removed);

	/* e1 was alive, only reconnecting (its FIN was its own): it comes
	 * back with its keys alone (its client wiped the auth key after its
	 * first OK) under its new name, the same node */
	assert_int_equal(join(t, e1, "web", NULL, true, n), i1);
	assert_string_equal(n, "web-2");
	go_offline(t, e1);

	/* never from a node that is online: the newcomer gets web-2, taken
	 * back from e1 (gone again, now web-3), not web itself */
	uint64_t i3 = join(t, e3, "web", t->key, true, n);
	assert_string_equal(n, "web-2");
	assert_string_equal(name_of(t, i2), "web");
	assert_string_equal(name_of(t, i1), "web-3");
	assert_int_equal(stats(t).names_reclaimed, 2);
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
	assert_string_equal(name_of(t, ia), "api-2");
	assert_true(stored_ephemeral(t, ia2));
	go_offline(t, c[3]);

	/* another user's offline ephemeral nodes: never */
	join(t, c[4], "api", kb, true, n);
	assert_string_equal(n, "api-3");
	assert_string_equal(name_of(t, ia2), "api");
	assert_string_equal(name_of(t, ia), "api-2");

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

/* handshake, REGISTER without a key, LOGOUT, again with a new machine:
 * the pending row stays, so the second is over max_pending_per_source. */
static void pending_logout_keeps_slot(void **state)
{
	struct t *t = *state;
	t->over.max_pending_per_source = 1;
	restart(t);
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_msg m;
	uint32_t st = 0;
	assert_int_equal(reg_answer(t, a, "churn", NULL, &st), CTL_MSG_REGISTER_RESP);
	assert_int_equal(st, CTL_REG_PENDING);
	int64_t pending = 0;
	assert_int_equal(ctl_store_node_pending_count(t->st, &pending), 0);
	assert_int_equal(pending, 1);
	tc_send(a, &(struct ctl_msg){.type = CTL_MSG_LOGOUT});
	assert_int_equal(tc_recv(t, a, 1000, &m), -1); /* closed, unanswered */
	assert_int_equal(ctl_store_node_pending_count(t->st, &pending), 0);
	assert_int_equal(pending, 1);
	assert_int_equal(stats(t).logouts, 0);
	/* a new machine from the same source: no room */
	assert_int_equal(reg_answer(t, b, "churn", NULL, &st), CTL_MSG_ERROR);
	assert_int_equal(ctl_store_node_pending_count(t->st, &pending), 0);
	assert_int_equal(pending, 1);
	tc_free(a);
	tc_free(b);
}

/* The server closes a live node's connection (here its idle timeout: the
 * node is in reconnect backoff, its FIN never came): a same-key newcomer
 * does not take its name. */
static void live_node_in_backoff_keeps_name(void **state)
{
	struct t *t = *state;
	t->over.idle_ms = 300;
	restart(t);
	struct tc *e1 = tc_new(), *e2 = tc_new();
	char n[CTL_LABEL_MAX];
	struct ctl_msg m;
	uint64_t i1 = join(t, e1, "web", t->key, true, n);
	assert_string_equal(n, "web");
	int r;
	while ((r = tc_recv(t, e1, 3000, &m)) == 1) /* keepalives, then the close */
		ctl_msg_free(&m);
	assert_int_equal(r, -1);
	pump(t, 50);
	assert_true(stats(t).idle_closed > 0);
	uint64_t i2 = join(t, e2, "web", t->key, true, n);
	assert_string_equal(n, "web-2");
	assert_false(gone(t, i1));
	assert_false(gone(t, i2));
	assert_int_equal(stats(t).names_reclaimed, 0);
	tc_free(e1);
	tc_free(e2);
}

/* After a restart of mesh-control nothing says how a connection ended:
 * a node seen within the last reclaim_after_s keeps its name, and so does
 * one last seen longer ago until this server has run that long (it may be
 * in reconnect backoff, waiting for this server); then it gives it up. */
static void restart_only_last_seen_decides(void **state)
{
	struct t *t = *state;
	t->over.reclaim_after_s = 2;
	restart(t);
	struct tc *e1 = tc_new(), *e2 = tc_new(), *e3 = tc_new(), *e4 = tc_new();
	char n[CTL_LABEL_MAX];
	uint64_t i1 = join(t, e1, "db", t->key, true, n);
	go_offline(t, e1); /* its FIN: gone, but only in memory */
	restart(t);
	uint64_t i2 = join(t, e2, "db", t->key, true, n);
	assert_string_equal(n, "db-2");
	assert_false(gone(t, i1));
	go_offline(t, e2);
	/* e1 last seen two minutes ago (the stop wrote every node's
	 * last_seen, and the restart reads it) */
	ctl_server_free(t->srv);
	struct ctl_node_update u = {.mask = CTL_UPD_LAST_SEEN,
	                            .last_seen = (int64_t)time(NULL) - 120};
	assert_int_equal(ctl_store_node_update(t->st, (int64_t)i1, &u), 0);
	start_server(t);
	/* just started: e1 may be about to reconnect */
	join(t, e3, "db", t->key, true, n);
	assert_string_equal(n, "db-3");
	assert_string_equal(name_of(t, i1), "db");
	/* reclaim_after_s after the start nobody came back for db */
	pump(t, 3200);
	join(t, e4, "db", t->key, true, n);
	assert_string_equal(n, "db");
	assert_string_equal(name_of(t, i1), "db-4");
	assert_string_equal(name_of(t, i2), "db-2");
	tc_free(e1);
	tc_free(e2);
	tc_free(e3);
	tc_free(e4);
}

/* The holder's hostname decides, not its name's form: a node that asked
 * for "db-2" never loses it to a newcomer asking for "db". */
static void own_hostname_not_a_suffix(void **state)
{
	struct t *t = *state;
	struct tc *x = tc_new(), *y = tc_new(), *z = tc_new();
	char n[CTL_LABEL_MAX];
	uint64_t ix = join(t, x, "db-2", t->key, true, n);
	assert_string_equal(n, "db-2");
	join(t, y, "db", t->key, true, n);
	assert_string_equal(n, "db");
	go_offline(t, x); /* gone (its FIN), same key, ephemeral */
	join(t, z, "db", t->key, true, n);
	assert_string_equal(n, "db-3");
	assert_string_equal(name_of(t, ix), "db-2");
	assert_int_equal(stats(t).names_reclaimed, 0);
	tc_free(x);
	tc_free(y);
	tc_free(z);
}

/* Replicas sharing MESH_HOSTNAME: a online as app, b as app-2; b is
 * killed and its successor gets app-2 back, not app-3. */
static void replica_gets_its_suffix_back(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new(), *b2 = tc_new(), *c = tc_new();
	char n[CTL_LABEL_MAX];
	uint64_t ia = join(t, a, "app", t->key, true, n);
	assert_string_equal(n, "app");
	uint64_t ib = join(t, b, "app", t->key, true, n);
	assert_string_equal(n, "app-2");
	uint64_t ic = join(t, c, "app", t->key, true, n);
	assert_string_equal(n, "app-3");
	go_offline(t, b); /* killed */
	uint64_t ib2 = join(t, b2, "app", t->key, true, n);
	assert_string_equal(n, "app-2");
	assert_string_equal(name_of(t, ib), "app-4"); /* until its timeout */
	assert_false(gone(t, ia));
	assert_false(gone(t, ic));
	assert_false(gone(t, ib2));
	assert_int_equal(stats(t).names_reclaimed, 1);
	tc_free(a);
	tc_free(b);
	tc_free(b2);
	tc_free(c);
}

/* A holder renamed by a reuse is renamed once: h is gone, n1 takes app
 * (h becomes app-2), then n2 comes with the same hostname and key while
 * n1 is online: h, not online since, keeps app-2 and n2 gets the next
 * free suffix, app-3 (not app-2 with h renamed again to app-3, and so on
 * with every newcomer: a whole-entry change to every peer each time). */
static void reclaimed_holder_renamed_once(void **state)
{
	struct t *t = *state;
	struct tc *h = tc_new(), *n1 = tc_new(), *n2 = tc_new();
	char n[CTL_LABEL_MAX];
	uint64_t ih = join(t, h, "app", t->key, true, n);
	assert_string_equal(n, "app");
	go_offline(t, h); /* killed */
	join(t, n1, "app", t->key, true, n);
	assert_string_equal(n, "app");
	assert_string_equal(name_of(t, ih), "app-2");
	join(t, n2, "app", t->key, true, n);
	assert_string_equal(n, "app-3");
	assert_string_equal(name_of(t, ih), "app-2");
	assert_int_equal(stats(t).names_reclaimed, 1);
	tc_free(h);
	tc_free(n1);
	tc_free(n2);
}

/* alice's ephemeral node is gone; alice is removed and a new alice made
 * (here by hand in the database: the admin commands refuse to remove a
 * user who owns nodes). The new alice's key does not take the name. */
static void recreated_user_cannot_reclaim(void **state)
{
	struct t *t = *state;
	char ka[CTL_SECRET_MAX], kb[CTL_SECRET_MAX], n[CTL_LABEL_MAX];
	assert_int_equal(ctl_store_user_create(t->st, "alice", time(NULL), NULL), 0);
	make_key(t, true, "alice", ka);
	struct tc *x = tc_new(), *y = tc_new();
	uint64_t ix = join(t, x, "svc", ka, true, n);
	go_offline(t, x);
	/* "user" quoted: a reserved word on PostgreSQL */
	test_store_exec(&t->ts, "UPDATE auth_keys SET revoked = 1 WHERE \"user\" = "
	                        "'alice'; DELETE FROM users WHERE name = 'alice'");
	assert_int_equal(ctl_store_user_create(t->st, "alice", time(NULL), NULL), 0);
	make_key(t, true, "alice", kb);
	join(t, y, "svc", kb, true, n);
	assert_string_equal(n, "svc-2");
	assert_false(gone(t, ix));
	tc_free(x);
	tc_free(y);
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
	    cmocka_unit_test_setup_teardown(pending_logout_keeps_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(live_node_in_backoff_keeps_name, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(restart_only_last_seen_decides, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(own_hostname_not_a_suffix, setup, teardown),
	    cmocka_unit_test_setup_teardown(replica_gets_its_suffix_back, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(reclaimed_holder_renamed_once, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(recreated_user_cannot_reclaim, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
