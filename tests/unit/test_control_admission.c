/* mesh-control admission: who gets in, who waits, and what a registration
 * may store, over real sockets against the in-process server (fixture
 * ctl_server_fixture.h) and, for retries, the real ctl_client.
 *  - a flood of keyless registrations keeps at most max_pending nodes
 *    waiting, at most max_pending_per_source from one address; a new one
 *    beyond that is told to retry (nothing that waits is dropped), and the
 *    online nodes hear nothing;
 *  - a pending node whose row goes is told to retry, never "removed";
 *  - a pending node's ENDPOINTS are not stored;
 *  - node key, disco key and name are unique among approved nodes: a
 *    pending row loses them to an authorised registration;
 *  - a pending node that goes leaves no tombstone;
 *  - serve --no-pending refuses keyless registrations (AUTH_REQUIRED) and
 *    stores nothing;
 *  - a pending node is told the name and id the server gave it, not the
 *    name it asked for;
 *  - a removed node's machine cannot queue itself again without a key, nor
 *    come back with a key older than the removal (same for an expiry);
 *  - a disco key another node holds is refused (KEY_CONFLICT), at
 *    registration and in an update;
 *  - a node whose clock went backwards after a handshake is not locked out;
 *  - a store failure during registration is an ERROR the node retries (its
 *    ctl_client backs off and gets in), never a final refusal;
 *  - an expired or pending node's keyless re-registration stores nothing;
 *  - an expired node re-authenticates in place with a new auth key and
 *    keeps its id, name and addresses. */
#include "ctl_server_fixture.h"

#include "core/control/client.h"

static void reg_keys(struct tc *c, const char *host, const char *key,
                     const uint8_t *node_key, const uint8_t *disco_key)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *r = &m.u.reg_req;
	snprintf(r->auth_key, sizeof r->auth_key, "%s", key ? key : "");
	memcpy(r->node_key, node_key, 32);
	memcpy(r->disco_key, disco_key, 32);
	snprintf(r->hostname, sizeof r->hostname, "%s", host);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "test");
	tc_send(c, &m);
}

static size_t count_pending(struct t *t)
{
	struct ctl_node *ns;
	size_t n, p = 0;
	assert_int_equal(ctl_store_node_list(t->st, 0, &ns, &n), 0);
	for (size_t i = 0; i < n; i++)
		p += !ns[i].approved;
	free(ns);
	return p;
}

static size_t count_nodes(struct t *t)
{
	struct ctl_node *ns;
	size_t n;
	assert_int_equal(ctl_store_node_list(t->st, 0, &ns, &n), 0);
	free(ns);
	return n;
}

/* Connect, handshake, register; expects the retryable ERROR INTERNAL
 * (with text in it), then the close. */
static void join_told_retry(struct t *t, struct tc *c, const char *host, const char *key,
                            const char *text)
{
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_send(c, host, key);
	assert_int_equal(tc_recv(t, c, 3000, &m), 1);
	if (m.type != CTL_MSG_ERROR)
		fail_msg("expected ERROR, got %s", ctl_msg_type_name(m.type));
	assert_int_equal(m.u.error.code, CTL_REASON_INTERNAL);
	if (!strstr(m.u.error.text, text))
		fail_msg("error text \"%s\" lacks \"%s\"", m.u.error.text, text);
	ctl_msg_free(&m);
	assert_int_equal(tc_recv(t, c, 1000, &m), -1);
}

/* H1, H-A1: keyless registrations are bounded, reach no online node, and
 * a full queue refuses the new ones (retry later) instead of dropping the
 * ones that wait. */
static void pending_full_refuses_new_keeps_old(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_pending = 5});
	struct tc *a = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);

	enum { FLOOD = 20, MAX = 5 };
	struct tc *p[FLOOD];
	for (int i = 0; i < FLOOD; i++) {
		p[i] = tc_new();
		if (i < MAX) {
			tc_join(t, p[i], "db", NULL, &r);
			assert_int_equal(r.status, CTL_REG_PENDING);
		} else {
			join_told_retry(t, p[i], "db", NULL,
			                "too many nodes waiting for approval; join "
			                "with an auth key or ask the admin");
		}
	}
	/* the online node hears nothing of them; those that wait still do */
	assert_int_equal(tc_recv(t, a, 300, &m), 0);
	assert_int_equal(count_pending(t), MAX);
	for (int i = 0; i < MAX; i++)
		assert_int_equal(tc_recv(t, p[i], 50, &m), 0);
	/* one approved: room for one more */
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, p[0]->mpub, &nd), 0);
	assert_int_equal(ctl_store_node_approve(t->st, nd.id), 0);
	tc_join(t, p[MAX], "db", NULL, &r);
	assert_int_equal(r.status, CTL_REG_PENDING);
	for (int i = 0; i < FLOOD; i++)
		tc_free(p[i]);
	tc_free(a);
}

/* H-A1: at most max_pending_per_source nodes wait from one address. */
static void pending_limit_per_source(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_pending_per_source = 3});
	struct tc *p[5];
	struct ctl_register_resp r;
	for (int i = 0; i < 5; i++)
		p[i] = tc_new();
	for (int i = 0; i < 3; i++) {
		tc_join(t, p[i], "db", NULL, &r);
		assert_int_equal(r.status, CTL_REG_PENDING);
	}
	join_told_retry(t, p[3], "db", NULL, "too many nodes waiting");
	tc_src = 0x7f000002; /* another address: its own share */
	tc_join(t, p[4], "db", NULL, &r);
	tc_src = 0;
	assert_int_equal(r.status, CTL_REG_PENDING);
	assert_int_equal(count_pending(t), 4);
	for (int i = 0; i < 5; i++)
		tc_free(p[i]);
}

/* H1: serve --no-pending refuses keyless registrations, storing nothing. */
static void no_pending_refuses_keyless(void **state)
{
	struct t *t = *state;
	/* L-A3: a node left pending from before is not held either */
	struct tc *old = tc_new();
	struct ctl_register_resp ro;
	tc_join(t, old, "old", NULL, &ro);
	assert_int_equal(ro.status, CTL_REG_PENDING);
	tc_close(old);
	restart_with(t, &(struct ctl_server_config){.no_pending = true});
	tc_join(t, old, "old", NULL, &ro);
	assert_int_equal(ro.status, CTL_REG_REFUSED);
	assert_int_equal(ro.code, CTL_REASON_AUTH_REQUIRED);
	tc_free(old);
	struct ctl_node *ns;
	size_t nn;
	assert_int_equal(ctl_store_node_list(t->st, 0, &ns, &nn), 0);
	for (size_t i = 0; i < nn; i++)
		assert_int_equal(ctl_store_node_remove(t->st, ns[i].id), 0);
	free(ns);
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	tc_join(t, c, "db", NULL, &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_AUTH_REQUIRED);
	assert_non_null(strstr(r.reason, "auth key"));
	assert_int_equal(count_nodes(t), 0);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0);
	tc_join(t, c, "db", t->key, &r); /* with a key: in */
	assert_int_equal(r.status, CTL_REG_OK);
	tc_free(c);
}

/* H2: the pending answer carries the name the server gave and the id. */
static void pending_told_its_given_name(void **state)
{
	struct t *t = *state;
	struct tc *x = tc_new(), *y = tc_new();
	struct ctl_register_resp rx, ry;
	tc_join(t, x, "alice-laptop", NULL, &rx);
	tc_join(t, y, "alice-laptop", NULL, &ry);
	assert_int_equal(rx.status, CTL_REG_PENDING);
	assert_int_equal(ry.status, CTL_REG_PENDING);
	assert_string_equal(rx.name, "alice-laptop");
	assert_string_equal(ry.name, "alice-laptop-2");
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, y->mpub, &nd), 0);
	assert_int_equal(ry.node_id, (uint64_t)nd.id);
	assert_string_equal(nd.name, "alice-laptop-2");
	tc_free(x);
	tc_free(y);
}

/* H2: a removed node that was offline cannot queue itself again without
 * an auth key; with one it joins as a new node. */
static void removed_node_does_not_requeue(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	tc_join(t, c, "db", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_close(c);
	pump(t, 50);
	assert_int_equal(ctl_store_node_remove(t->st, (int64_t)r.node_id), 0);
	tc_join(t, c, "db", NULL, &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_NODE_REMOVED);
	assert_int_equal(count_nodes(t), 0);
	/* M-A1: the reusable key it joined with (its launcher still passes
	 * the token) does not undo the removal */
	tc_join(t, c, "db", t->key, &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_NODE_REMOVED);
	assert_non_null(strstr(r.reason, "created after the removal"));
	assert_int_equal(count_nodes(t), 0);
	char fresh[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, fresh, sizeof fresh, NULL), 0);
	tc_join(t, c, "db", fresh, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_free(c);
}

/* L1: disco keys are unique among nodes. */
static void disco_key_must_be_unique(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	uint8_t nk_a[32], nk_b[32], dk[32], dk2[32];
	randombytes_buf(nk_a, 32);
	randombytes_buf(nk_b, 32);
	randombytes_buf(dk, 32);
	randombytes_buf(dk2, 32);
	struct ctl_msg m;
	tc_connect(t, a);
	assert_int_equal(tc_handshake(t, a, t->spub), 0);
	reg_keys(a, "a", t->key, nk_a, dk);
	tc_expect(t, a, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	int64_t ida = (int64_t)m.u.reg_resp.node_id;

	tc_connect(t, b); /* a's disco key: refused, nothing stored */
	assert_int_equal(tc_handshake(t, b, t->spub), 0);
	reg_keys(b, "b", t->key, nk_b, dk);
	tc_expect(t, b, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_REFUSED);
	assert_int_equal(m.u.reg_resp.code, CTL_REASON_KEY_CONFLICT);
	assert_non_null(strstr(m.u.reg_resp.reason, "disco key"));
	assert_int_equal(count_nodes(t), 1);

	tc_connect(t, b); /* its own: in */
	assert_int_equal(tc_handshake(t, b, t->spub), 0);
	reg_keys(b, "b", t->key, nk_b, dk2);
	tc_expect(t, b, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	int64_t idb = (int64_t)m.u.reg_resp.node_id;

	/* a key update to another node's disco key is refused too */
	struct ctl_node_update u = {.mask = CTL_UPD_DISCO};
	memcpy(u.disco_key, dk2, 32);
	assert_int_equal(ctl_store_node_update(t->st, ida, &u), CTL_STORE_ECONFLICT);
	memcpy(u.disco_key, dk2, 32); /* its own again: fine */
	assert_int_equal(ctl_store_node_update(t->st, idb, &u), 0);
	tc_free(a);
	tc_free(b);
}

/* M1: a handshake stamped an hour ahead, then the clock goes back: the
 * next handshake with the same machine key still gets in. */
static void clock_went_backwards_not_locked_out(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	uint8_t ts[CTL_NOISE_TIMESTAMP_LEN], m1[CTL_NOISE_MSG1_MIN], fr[256];
	size_t m1l = 0, frl = 0;
	ctl_tai64n_now(ts);
	uint64_t sec = 0;
	for (int i = 0; i < 8; i++)
		sec = sec << 8 | ts[i];
	sec += 3600;
	for (int i = 7; i >= 0; i--, sec >>= 8)
		ts[i] = (uint8_t)sec;
	tc_connect(t, c);
	assert_int_equal(ctl_noise_init_initiator(&c->hs, c->mpriv, t->spub, NULL, 0), 0);
	assert_int_equal(
	    ctl_noise_write_msg1_raw(&c->hs, ts, sizeof ts, m1, sizeof m1, &m1l), 0);
	assert_int_equal(
	    ctl_frame_encode_handshake(CTL_FRAME_HS1, m1, m1l, fr, sizeof fr, &frl), 0);
	tc_raw(c, fr, frl);
	struct ctl_frame f;
	assert_int_equal(tc_frame(t, c, 2000, &f), 1);
	assert_int_equal(f.type, CTL_FRAME_HS2);

	struct ctl_register_resp r;
	tc_join(t, c, "db", t->key, &r); /* now: an hour earlier */
	assert_int_equal(r.status, CTL_REG_OK);
	tc_free(c);
}

static int fails_left;
static int fail_register(const char *point, void *arg)
{
	(void)arg;
	if (strcmp(point, "register:before-commit") || fails_left <= 0)
		return 0;
	fails_left--;
	return 1;
}

struct seen {
	bool backoff, refused, online, pending;
	enum ctl_client_state last;
	uint32_t code; /* of the refusal */
};

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	struct seen *s = ctx;
	(void)detail;
	s->backoff |= st == CTL_CLIENT_BACKOFF;
	s->refused |= st == CTL_CLIENT_REFUSED;
	s->online |= st == CTL_CLIENT_ONLINE;
	s->pending |= st == CTL_CLIENT_PENDING;
	s->last = st;
	if (st == CTL_CLIENT_REFUSED && resp)
		s->code = resp->code;
}

/* M2: a store failure is an ERROR (retry), not REGISTER_RESP refused; the
 * real client backs off and gets in once the store works again. */
static void internal_error_is_retried(void **state)
{
	struct t *t = *state;
	ctl_store_set_fault(t->st, fail_register, NULL);
	fails_left = 1;
	struct tc *c = tc_new();
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_send(c, "db", t->key);
	assert_int_equal(tc_recv(t, c, 2000, &m), 1);
	assert_int_equal(m.type, CTL_MSG_ERROR);
	assert_int_equal(m.u.error.code, CTL_REASON_INTERNAL);
	ctl_msg_free(&m);
	assert_int_equal(tc_recv(t, c, 1000, &m), -1);
	assert_int_equal(count_nodes(t), 0);

	fails_left = 2;
	struct seen s = {0};
	static const struct ctl_client_callbacks cbs = {.on_state = on_state};
	struct ctl_client_config cfg = {.base = t->base,
	                                .host = "127.0.0.1",
	                                .port = t->port,
	                                .hostname = "web",
	                                .version = "test",
	                                .auth_key = t->key,
	                                .backoff_min_ms = 20,
	                                .backoff_max_ms = 50,
	                                .cb = &cbs,
	                                .ctx = &s};
	uint8_t pub[32];
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, pub);
	randombytes_buf(cfg.node_key, 32);
	randombytes_buf(cfg.disco_key, 32);
	char err[256];
	struct ctl_client *cl = ctl_client_new(&cfg, err, sizeof err);
	if (!cl)
		fail_msg("client: %s", err);
	for (int i = 0; i < 200 && !s.online && !s.refused; i++)
		pump(t, 10);
	assert_false(s.refused);
	assert_true(s.backoff);
	assert_true(s.online);
	assert_int_equal(fails_left, 0);
	ctl_client_free(cl);
	ctl_store_set_fault(t->st, NULL, NULL);
	tc_free(c);
}

/* L2: an expired node's or a pending node's keyless re-registration with
 * new keys stores nothing and bumps no version. */
static void unauthorised_reregistration_stores_nothing(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new(), *p = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, c, "db", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	int64_t id = (int64_t)r.node_id;
	tc_close(c);
	tc_join(t, p, "pend", NULL, &r);
	assert_int_equal(r.status, CTL_REG_PENDING);
	tc_close(p);
	assert_int_equal(ctl_store_node_expire(t->st, id, (int64_t)time(NULL)), 0);
	pump(t, 100);
	struct ctl_node before, pbefore, after;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &before), 0);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, p->mpub, &pbefore), 0);
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);

	uint8_t nk[32], dk[32];
	randombytes_buf(nk, 32);
	randombytes_buf(dk, 32);
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	reg_keys(c, "renamed", NULL, nk, dk);
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_REFUSED);
	assert_int_equal(m.u.reg_resp.code, CTL_REASON_NODE_EXPIRED);
	assert_int_equal(ctl_store_node_by_id(t->st, id, &after), 0);
	assert_memory_equal(after.node_key, before.node_key, 32);
	assert_memory_equal(after.disco_key, before.disco_key, 32);
	assert_string_equal(after.hostname, before.hostname);

	randombytes_buf(nk, 32);
	randombytes_buf(dk, 32);
	tc_connect(t, p);
	assert_int_equal(tc_handshake(t, p, t->spub), 0);
	reg_keys(p, "other", NULL, nk, dk);
	tc_expect(t, p, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_PENDING);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, p->mpub, &after), 0);
	assert_memory_equal(after.node_key, pbefore.node_key, 32);
	assert_string_equal(after.hostname, pbefore.hostname);
	pump(t, 100);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0);
	tc_free(c);
	tc_free(p);
}

static struct ctl_client *keyless_client(struct t *t, struct seen *s,
                                         uint8_t machine_pub[32])
{
	static const struct ctl_client_callbacks cbs = {.on_state = on_state};
	struct ctl_client_config cfg = {.base = t->base,
	                                .host = "127.0.0.1",
	                                .port = t->port,
	                                .hostname = "alice-laptop",
	                                .version = "test",
	                                .backoff_min_ms = 20,
	                                .backoff_max_ms = 50,
	                                .cb = &cbs,
	                                .ctx = s};
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, machine_pub);
	randombytes_buf(cfg.node_key, 32);
	randombytes_buf(cfg.disco_key, 32);
	char err[256];
	struct ctl_client *cl = ctl_client_new(&cfg, err, sizeof err);
	if (!cl)
		fail_msg("client: %s", err);
	for (int i = 0; i < 200 && !s->pending && !s->refused; i++)
		pump(t, 10);
	return cl;
}

/* H-A1: a keyless flood does not push out a node that waits (the real
 * client stays pending), and a pending node whose row goes (the admin
 * rejected it) is told to retry, never "removed" (final). */
static void waiting_node_survives_flood(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_pending = 3});
	struct seen s = {0};
	uint8_t mpub[32];
	struct ctl_client *cl = keyless_client(t, &s, mpub);
	assert_true(s.pending);
	assert_false(s.refused);

	struct tc *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = tc_new();
		tc_connect(t, p[i]);
		assert_int_equal(tc_handshake(t, p[i], t->spub), 0);
		tc_register_send(p[i], "alice-laptop", NULL);
		struct ctl_msg m;
		assert_int_equal(tc_recv(t, p[i], 3000, &m), 1);
		ctl_msg_free(&m);
		tc_close(p[i]);
	}
	pump(t, 300);
	assert_false(s.refused);
	assert_false(s.backoff);
	assert_int_equal(s.last, CTL_CLIENT_PENDING);
	assert_int_equal(count_pending(t), 3); /* the client and two others */

	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, mpub, &nd), 0);
	assert_int_equal(ctl_store_node_remove(t->st, nd.id), 0);
	for (int i = 0; i < 100 && !s.backoff && !s.refused; i++)
		pump(t, 10);
	assert_false(s.refused);
	assert_true(s.backoff);
	s.pending = false;
	for (int i = 0; i < 200 && !s.pending && !s.refused; i++)
		pump(t, 10);
	assert_false(s.refused);
	assert_true(s.pending); /* queued again */
	ctl_client_free(cl);
	for (int i = 0; i < 3; i++)
		tc_free(p[i]);
}

/* M-A2: a pending node's ENDPOINTS are not stored and bump no version. */
static void pending_endpoints_not_stored(void **state)
{
	struct t *t = *state;
	struct tc *p = tc_new();
	struct ctl_register_resp r;
	tc_join(t, p, "pend", NULL, &r);
	assert_int_equal(r.status, CTL_REG_PENDING);
	pump(t, 50);
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	struct ctl_msg m = {.type = CTL_MSG_ENDPOINTS};
	m.u.endpoints.n = 1;
	m.u.endpoints.ep[0].family = 4;
	m.u.endpoints.ep[0].port = 41641;
	memcpy(m.u.endpoints.ep[0].addr, (uint8_t[]){198, 18, 0, 7}, 4);
	m.u.endpoints.home_relay = 1;
	for (int i = 0; i < 500; i++) {
		m.u.endpoints.ep[0].port = (uint16_t)(1000 + i);
		tc_send(p, &m);
		if (i % 50 == 0)
			pump(t, 1);
	}
	pump(t, 300);
	struct ctl_msg got;
	assert_int_equal(tc_recv(t, p, 50, &got), 0); /* still waiting, not closed */
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, p->mpub, &nd), 0);
	assert_string_equal(nd.endpoints, "");
	tc_free(p);
}

/* M-A3: keys and names are unique among approved nodes; a pending row
 * holding an authorised node's node key, disco key or name loses it. */
static void pending_rows_do_not_squat(void **state)
{
	struct t *t = *state;
	struct tc *v = tc_new(), *x = tc_new(), *y = tc_new(), *z = tc_new();
	uint8_t nk[32], dk[32], other[32], other2[32];
	randombytes_buf(nk, 32);
	randombytes_buf(dk, 32);
	randombytes_buf(other, 32);
	randombytes_buf(other2, 32);
	struct ctl_msg m;
	/* x squats V's disco key, y V's node key, z the name "mail" */
	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	reg_keys(x, "x", NULL, other, dk);
	tc_expect(t, x, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_PENDING);
	tc_connect(t, y);
	assert_int_equal(tc_handshake(t, y, t->spub), 0);
	reg_keys(y, "y", NULL, nk, other2);
	tc_expect(t, y, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_PENDING);
	struct ctl_register_resp r;
	tc_join(t, z, "mail", NULL, &r);
	assert_int_equal(r.status, CTL_REG_PENDING);
	assert_string_equal(r.name, "mail");
	assert_int_equal(count_pending(t), 3);

	/* V with an auth key: in, with its keys and the name */
	tc_connect(t, v);
	assert_int_equal(tc_handshake(t, v, t->spub), 0);
	reg_keys(v, "mail", t->key, nk, dk);
	tc_expect(t, v, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	assert_string_equal(m.u.reg_resp.name, "mail");
	assert_int_equal(count_pending(t), 1);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, z->mpub, &nd), 0);
	assert_string_equal(nd.name, "mail-2");
	assert_false(nd.approved);
	/* the squatters' connections are told to retry, not refused */
	assert_int_equal(tc_recv(t, x, 2000, &m), 1);
	assert_int_equal(m.type, CTL_MSG_ERROR);
	assert_int_equal(m.u.error.code, CTL_REASON_INTERNAL);
	ctl_msg_free(&m);

	/* now V's keys are an approved node's: a keyless one is refused */
	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	reg_keys(x, "x", NULL, other, dk);
	tc_expect(t, x, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_REFUSED);
	assert_int_equal(m.u.reg_resp.code, CTL_REASON_KEY_CONFLICT);
	/* and a pending node's keys: retry, not a conflict */
	struct tc *w = tc_new();
	tc_connect(t, w);
	assert_int_equal(tc_handshake(t, w, t->spub), 0);
	uint8_t znk[32], zdk[32];
	memcpy(znk, nd.node_key, 32);
	randombytes_buf(zdk, 32);
	reg_keys(w, "w", NULL, znk, zdk);
	assert_int_equal(tc_recv(t, w, 3000, &m), 1);
	assert_int_equal(m.type, CTL_MSG_ERROR);
	assert_int_equal(m.u.error.code, CTL_REASON_INTERNAL);
	ctl_msg_free(&m);
	tc_free(v);
	tc_free(x);
	tc_free(y);
	tc_free(z);
	tc_free(w);
}

/* M-A4: a pending node that goes leaves no tombstone and sends the online
 * nodes nothing. */
static void pending_removal_leaves_no_tombstone(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	for (int i = 0; i < 8; i++) {
		struct tc *p = tc_new();
		tc_join(t, p, "pend", NULL, &r);
		assert_int_equal(r.status, CTL_REG_PENDING);
		assert_int_equal(ctl_store_node_remove(t->st, (int64_t)r.node_id), 0);
		tc_free(p);
	}
	assert_int_equal(tc_recv(t, a, 300, &m), 0);
	int64_t *gone;
	size_t n;
	assert_int_equal(ctl_store_node_removed(t->st, 0, &gone, &n), 0);
	free(gone);
	assert_int_equal(n, 0);
	tc_free(a);
}

/* L-A2: an ERROR that cannot be queued (here: over max_outbuf) inside the
 * read callback does not free the connection under it (the old code did,
 * and read_cb then read the freed connection: ASan's heap-use-after-free);
 * it is closed, and the server goes on. */
static void error_close_in_read_cb_is_deferred(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_outbuf = 32});
	struct tc *c = tc_new();
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	struct ctl_msg m = {.type = CTL_MSG_RELAY_REGISTER};
	struct ctl_relay *rl = &m.u.relay_reg.relay;
	snprintf(rl->region, sizeof rl->region, "eu");
	snprintf(rl->host, sizeof rl->host, "relay.example");
	rl->port = 443;
	rl->has_key = true;
	randombytes_buf(rl->key, sizeof rl->key); /* not its handshake key */
	tc_send(c, &m);
	struct ctl_msg got;
	int r;
	while ((r = tc_recv(t, c, 2000, &got)) == 1)
		ctl_msg_free(&got);
	assert_int_equal(r, -1); /* closed */
	pump(t, 50);
	restart_with(t, &(struct ctl_server_config){0});
	struct ctl_register_resp rr;
	tc_join(t, c, "db", t->key, &rr);
	assert_int_equal(rr.status, CTL_REG_OK);
	tc_free(c);
}

/* M7: an expired node comes back with a new auth key (mesh-proxy up --join
 * TOKEN on its old state): same id, name and addresses. An approved node's
 * key is not needed and not spent. */
static void expired_node_reauths_in_place(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	struct ctl_register_resp r1, r2;
	tc_join(t, c, "db", t->key, &r1);
	assert_int_equal(r1.status, CTL_REG_OK);
	tc_close(c);
	pump(t, 50);
	assert_int_equal(
	    ctl_store_node_expire(t->st, (int64_t)r1.node_id, (int64_t)time(NULL)), 0);
	/* M-A1: not with the reusable key it joined with (made before) */
	tc_join(t, c, "db", t->key, &r2);
	assert_int_equal(r2.status, CTL_REG_REFUSED);
	assert_int_equal(r2.code, CTL_REASON_NODE_EXPIRED);
	assert_non_null(strstr(r2.reason, "created after the expiry"));
	char one[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.now = time(NULL)};
	struct ctl_authkey k;
	assert_int_equal(ctl_store_key_create(t->st, &kp, one, sizeof one, &k), 0);
	tc_join(t, c, "db", one, &r2);
	assert_int_equal(r2.status, CTL_REG_OK);
	assert_int_equal(r2.node_id, r1.node_id);
	assert_string_equal(r2.name, r1.name);
	assert_memory_equal(r2.ipv4, r1.ipv4, 4);
	assert_memory_equal(r2.ipv6, r1.ipv6, 16);
	tc_close(c);
	pump(t, 50);

	/* healthy now: another single-use key is ignored, not spent */
	char two[CTL_SECRET_MAX];
	assert_int_equal(ctl_store_key_create(t->st, &kp, two, sizeof two, &k), 0);
	tc_join(t, c, "db", two, &r2);
	assert_int_equal(r2.status, CTL_REG_OK);
	struct ctl_authkey *ks;
	size_t n;
	assert_int_equal(ctl_store_key_list(t->st, &ks, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (ks[i].id == k.id)
			assert_int_equal(ks[i].uses, 0);
	free(ks);
	tc_free(c);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(pending_full_refuses_new_keeps_old, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(pending_limit_per_source, setup, teardown),
	    cmocka_unit_test_setup_teardown(waiting_node_survives_flood, setup, teardown),
	    cmocka_unit_test_setup_teardown(pending_endpoints_not_stored, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(pending_rows_do_not_squat, setup, teardown),
	    cmocka_unit_test_setup_teardown(pending_removal_leaves_no_tombstone, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(error_close_in_read_cb_is_deferred, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(no_pending_refuses_keyless, setup, teardown),
	    cmocka_unit_test_setup_teardown(pending_told_its_given_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(removed_node_does_not_requeue, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(disco_key_must_be_unique, setup, teardown),
	    cmocka_unit_test_setup_teardown(clock_went_backwards_not_locked_out, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(internal_error_is_retried, setup, teardown),
	    cmocka_unit_test_setup_teardown(unauthorised_reregistration_stores_nothing,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(expired_node_reauths_in_place, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
