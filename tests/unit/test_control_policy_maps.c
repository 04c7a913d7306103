/* mesh-control distributes the access policy: the real server on
 * 127.0.0.1:0 with a temporary store, real ctl_client nodes (all caps)
 * and the fixture's raw test client for older or partial caps. A policy is
 * put in force with ctl_server_policy_apply_text (the store's `policy set`
 * reaches the same code); what each node holds is read from its client's
 * assembled map (peers), and its filter and reach from the server's
 * per-node state (ctl_server_policy_node_get: the node-side codec for
 * those fields is not part of this test).
 *  - under a policy each node sees only the peers it may talk to or that
 *    may talk to it; its filter and reach are what the policy says;
 *  - a policy change moves visibility with a delta within a second;
 *    clearing it gives every node every peer back;
 *  - a node that joins appears only in the maps of nodes that may see it;
 *  - a node without CTL_CAP_POLICY is refused under a policy, and one
 *    online when a policy is set is closed; both told to upgrade;
 *  - older map forms (one MAP_FULL; chunks without compression) and a
 *    compressed chunked map after a reconnect carry only visible peers;
 *  - a policy that does not parse changes nothing;
 *  - 1,000 nodes in one class; a filter too big for a map goes deny-all. */
#include "ctl_server_fixture.h"

#include "core/control/client.h"
#include "servers/control/policy_srv.h"
#include "servers/control/server_policy.h"

#define N_NODES 5

struct node {
	struct ctl_client *c;
	enum ctl_client_state st;
	uint64_t id;
	char v4[16];
	uint64_t peers[32];
	size_t n_peers, n_total;
	char self_user[CTL_USER_MAX], self_tags[CTL_PEER_TAGS_MAX];
	unsigned n_full; /* full maps so far */
};

static struct node nodes[N_NODES];

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	struct node *n = ctx;
	(void)detail;
	n->st = st;
	if (resp && st == CTL_CLIENT_ONLINE) {
		n->id = resp->node_id;
		snprintf(n->v4, sizeof n->v4, "%u.%u.%u.%u", resp->ipv4[0], resp->ipv4[1],
		         resp->ipv4[2], resp->ipv4[3]);
	}
}

static void on_map(void *ctx, const struct ctl_map_full *map,
                   const struct ctl_map_change *chg)
{
	struct node *n = ctx;
	n->n_full += chg->full;
	snprintf(n->self_user, sizeof n->self_user, "%s", map->self_user);
	snprintf(n->self_tags, sizeof n->self_tags, "%s", map->self_tags);
	n->n_total = map->n_peers;
	n->n_peers = map->n_peers < 32 ? map->n_peers : 32;
	for (size_t i = 0; i < n->n_peers; i++)
		n->peers[i] = map->peers[i].id;
}

static const struct ctl_client_callbacks cbs = {.on_state = on_state, .on_map = on_map};

static void start_node(struct t *t, int i)
{
	struct node *n = &nodes[i];
	struct ctl_client_config cfg;
	char host[16], err[256];
	uint8_t pub[32];
	memset(n, 0, sizeof *n);
	snprintf(host, sizeof host, "pnode%d", i);
	memset(&cfg, 0, sizeof cfg);
	cfg.base = t->base;
	cfg.host = "127.0.0.1";
	cfg.port = t->port;
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, pub);
	randombytes_buf(cfg.node_key, 32);
	randombytes_buf(cfg.disco_key, 32);
	cfg.hostname = host;
	cfg.version = "policy-test";
	cfg.auth_key = t->key;
	cfg.backoff_min_ms = 20;
	cfg.backoff_max_ms = 100;
	cfg.cb = &cbs;
	cfg.ctx = n;
	n->c = ctl_client_new(&cfg, err, sizeof err);
	if (!n->c)
		fail_msg("client %d: %s", i, err);
	sodium_memzero(cfg.machine_priv, 32);
}

static void stop_nodes(void)
{
	for (int i = 0; i < N_NODES; i++) {
		ctl_client_free(nodes[i].c);
		nodes[i].c = NULL;
	}
}

static bool sees(const struct node *n, uint64_t id)
{
	for (size_t i = 0; i < n->n_peers; i++)
		if (n->peers[i] == id)
			return true;
	return false;
}

/* Node i sees exactly the nodes whose bit is set in mask (never itself). */
static bool sees_exactly(int i, unsigned mask)
{
	const struct node *n = &nodes[i];
	size_t want = 0;
	if (n->st != CTL_CLIENT_ONLINE)
		return false;
	for (int j = 0; j < N_NODES; j++) {
		if (!nodes[j].c || j == i)
			continue;
		bool w = (mask >> j) & 1;
		want += w;
		if (sees(n, nodes[j].id) != w)
			return false;
	}
	return n->n_peers == want;
}

/* Pumps until every started node i sees exactly masks[i]; the time it
 * took, or -1 after ms. */
static double until_views(struct t *t, const unsigned *masks, int ms)
{
	double t0 = now_ms();
	while (now_ms() - t0 < ms) {
		bool ok = true;
		for (int i = 0; i < N_NODES && ok; i++)
			if (nodes[i].c)
				ok = sees_exactly(i, masks[i]);
		if (ok)
			return now_ms() - t0;
		pump(t, 2);
	}
	return -1;
}

static void start_mesh(struct t *t, int k)
{
	for (int i = 0; i < k; i++)
		start_node(t, i);
	unsigned all = (1u << k) - 1, masks[N_NODES];
	for (int i = 0; i < N_NODES; i++)
		masks[i] = all & ~(1u << i);
	if (until_views(t, masks, 5000) < 0)
		fail_msg("the %d nodes did not all see each other", k);
}

static void apply(struct t *t, const char *fmt, ...)
{
	char text[2048], err[600] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (ctl_server_policy_apply_text(t->srv, text, strlen(text), err, sizeof err) < 0)
		fail_msg("policy %s: %s", text, err);
}

/* The server's view of node i: visible ids, filter, reach. */
static void pnode(struct t *t, int i, struct ctl_server_policy_node *pn)
{
	assert_int_equal(ctl_server_policy_node_get(t->srv, (int64_t)nodes[i].id, pn), 0);
}

static bool port_in(const struct ctl_port_range *r, size_t n, uint16_t p)
{
	for (size_t i = 0; i < n; i++)
		if (r[i].lo <= p && p <= r[i].hi)
			return true;
	return false;
}

static size_t filter_blocks(const struct ctl_filter *f)
{
	return f->n_blocks[0] + f->n_blocks[1] + f->n_blocks[2];
}

/* Pumps until every online node's map is current with the policy. */
static void settle(struct t *t)
{
	double t0 = now_ms();
	while (now_ms() - t0 < 2000) {
		bool ok = true;
		for (int i = 0; i < N_NODES && ok; i++) {
			if (!nodes[i].c || nodes[i].st != CTL_CLIENT_ONLINE)
				continue;
			struct ctl_server_policy_node pn;
			pnode(t, i, &pn);
			ok = pn.map_current || !pn.has_filter;
			ctl_server_policy_node_free(&pn);
		}
		if (ok)
			return;
		pump(t, 2);
	}
	fail_msg("maps not current with the policy after 2 s");
}

/* A (0) may open tcp/udp 22 on B (1): they see each other, C (2) sees
 * nobody; B's filter lets A's address in on 22 only, A's lets nobody in;
 * A may reach 22 on B, B nothing on A. */
static void test_policy_views_filter_reach(void **state)
{
	struct t *t = *state;
	start_mesh(t, 3);
	double t0 = now_ms();
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}]}",
	      nodes[0].v4, nodes[1].v4);
	unsigned want[N_NODES] = {1u << 1, 1u << 0, 0};
	double ms = until_views(t, want, 1000);
	if (ms < 0)
		fail_msg("views not as the policy says within 1 s (A %zu, B %zu, C %zu "
		         "peers)",
		         nodes[0].n_peers, nodes[1].n_peers, nodes[2].n_peers);
	print_message("policy set: every map as it says after %.1f ms\n", now_ms() - t0);
	settle(t);

	struct ctl_server_policy_node a, b, c;
	pnode(t, 0, &a);
	pnode(t, 1, &b);
	pnode(t, 2, &c);
	assert_true(a.has_filter && b.has_filter && c.has_filter);
	assert_true(a.compiled && b.compiled && c.compiled);
	/* visibility */
	assert_int_equal(a.n_visible, 1);
	assert_int_equal(a.visible[0], nodes[1].id);
	assert_int_equal(b.n_visible, 1);
	assert_int_equal(b.visible[0], nodes[0].id);
	assert_int_equal(c.n_visible, 0);
	/* filters: only B lets anyone in, A's v4 on 22 (TCP and UDP) */
	assert_int_equal(filter_blocks(a.filter), 0);
	assert_int_equal(filter_blocks(c.filter), 0);
	assert_int_equal(b.filter->n_blocks[CTL_FILTER_TCP], 1);
	const struct ctl_filter_block *blk = &b.filter->blocks[CTL_FILTER_TCP][0];
	char lo[CTL_ADDRSTR_MAX], hi[CTL_ADDRSTR_MAX];
	ctl_ip_format(&blk->lo, lo);
	ctl_ip_format(&blk->hi, hi);
	assert_string_equal(lo, nodes[0].v4);
	assert_string_equal(hi, nodes[0].v4);
	assert_int_equal(blk->n_ports, 1);
	assert_int_equal(blk->ports[0].lo, 22);
	assert_int_equal(blk->ports[0].hi, 22);
	assert_int_equal(b.filter->n_blocks[CTL_FILTER_UDP], 1);
	/* no "proto": ICMP too (ping), whatever the ports */
	assert_int_equal(b.filter->n_blocks[CTL_FILTER_ICMP], 1);
	/* reach: A on B is 22; B on A nothing (no entry) */
	assert_int_equal(a.n_reach, 1);
	assert_int_equal(a.reach[0].id, nodes[1].id);
	assert_true(port_in(a.reach[0].tcp, a.reach[0].n_tcp, 22));
	assert_false(port_in(a.reach[0].tcp, a.reach[0].n_tcp, 23));
	assert_true(port_in(a.reach[0].udp, a.reach[0].n_udp, 22));
	assert_true(a.reach[0].icmp);
	assert_int_equal(b.n_reach, 0);
	assert_int_equal(c.n_reach, 0);
	ctl_server_policy_node_free(&a);
	ctl_server_policy_node_free(&b);
	ctl_server_policy_node_free(&c);
	stop_nodes();
}

/* A policy change moves visibility in a delta within a second (no node
 * reconnects); clearing the policy gives everyone everyone back. */
static void test_policy_change_and_clear(void **state)
{
	struct t *t = *state;
	start_mesh(t, 3);
	struct ctl_server_stats s0, s1;
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}]}",
	      nodes[0].v4, nodes[1].v4);
	unsigned first[N_NODES] = {1u << 1, 1u << 0, 0};
	assert_true(until_views(t, first, 1000) >= 0);
	settle(t);
	ctl_server_get_stats(t->srv, &s0);

	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:80\"], \"proto\": \"tcp\"}]}",
	      nodes[0].v4, nodes[2].v4);
	unsigned second[N_NODES] = {1u << 2, 0, 1u << 0};
	double ms = until_views(t, second, 1000);
	if (ms < 0)
		fail_msg("a policy change did not reach the maps within 1 s");
	print_message("policy changed: maps follow after %.1f ms\n", ms);
	settle(t);
	ctl_server_get_stats(t->srv, &s1);
	assert_int_equal(s1.maps_full, s0.maps_full); /* deltas, not new maps */
	assert_true(s1.maps_delta > s0.maps_delta);
	struct ctl_server_policy_node a, c, b0;
	pnode(t, 0, &a);
	pnode(t, 1, &b0);
	pnode(t, 2, &c);
	/* the deltas: A keeps its (empty) filter and gets its reach on C; B's
	 * filter is SET (to nothing) and it has no reach; C's filter is SET
	 * (A on 80) and it may reach nothing on A (no entry) */
	assert_int_equal(a.last_filter_op, CTL_FILTER_KEEP);
	assert_int_equal(a.last_reach, 1);
	assert_int_equal(a.last_reach_id, nodes[2].id);
	assert_int_equal(b0.last_filter_op, CTL_FILTER_SET);
	assert_int_equal(b0.last_reach, 0);
	assert_int_equal(c.last_filter_op, CTL_FILTER_SET);
	assert_int_equal(c.last_reach, 0);
	ctl_server_policy_node_free(&b0);
	assert_int_equal(a.n_reach, 1);
	assert_int_equal(a.reach[0].id, nodes[2].id);
	assert_true(port_in(a.reach[0].tcp, a.reach[0].n_tcp, 80));
	assert_int_equal(a.reach[0].n_udp, 0);
	assert_int_equal(c.filter->n_blocks[CTL_FILTER_TCP], 1);
	assert_int_equal(c.filter->n_blocks[CTL_FILTER_UDP], 0);
	ctl_server_policy_node_free(&a);
	ctl_server_policy_node_free(&c);

	char err[64];
	assert_int_equal(ctl_server_policy_apply_text(t->srv, NULL, 0, err, sizeof err),
	                 0);
	unsigned all[N_NODES] = {6, 5, 3};
	ms = until_views(t, all, 1000);
	if (ms < 0)
		fail_msg("clearing the policy did not give every map every peer within "
		         "1 s");
	print_message("policy cleared: full mesh again after %.1f ms\n", ms);
	struct ctl_server_stats s2;
	ctl_server_get_stats(t->srv, &s2);
	assert_int_equal(s2.maps_full, s0.maps_full);
	for (int i = 0; i < 3; i++) {
		struct ctl_server_policy_node b;
		pnode(t, i, &b);
		assert_false(b.has_filter);
		assert_int_equal(b.last_filter_op, CTL_FILTER_CLEAR); /* its last delta */
		assert_int_equal(b.last_reach, 0);
		ctl_server_policy_node_free(&b);
	}
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_false(ps.active);
	stop_nodes();
}

/* A may reach port 22 on every node: A sees everyone and everyone A, the
 * others not each other. A node that joins appears in A's map only, and
 * its own map holds A only. */
static void test_policy_join_seen_only_by_allowed(void **state)
{
	struct t *t = *state;
	start_mesh(t, 3);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"100.64.0.0/10:22\"]}]}",
	      nodes[0].v4);
	unsigned want[N_NODES] = {6, 1, 1};
	assert_true(until_views(t, want, 1000) >= 0);
	settle(t);
	double t0 = now_ms();
	start_node(t, 3);
	unsigned after[N_NODES] = {(1u << 1) | (1u << 2) | (1u << 3), 1, 1, 1};
	double ms = until_views(t, after, 3000);
	if (ms < 0)
		fail_msg("joining node: A %zu peers, B %zu, C %zu, D %zu",
		         nodes[0].n_peers, nodes[1].n_peers, nodes[2].n_peers,
		         nodes[3].n_peers);
	print_message("joined under a policy: in the allowed maps after %.1f ms\n",
	              now_ms() - t0);
	/* and B, C never had it: give them time, they still have A only */
	pump(t, 200);
	assert_true(sees_exactly(1, 1) && sees_exactly(2, 1) && sees_exactly(3, 1));
	settle(t);
	struct ctl_server_policy_node d;
	pnode(t, 3, &d);
	assert_true(d.compiled);
	assert_int_equal(d.n_visible, 1);
	assert_int_equal(d.n_reach, 0); /* A's filter lets nobody in */
	assert_int_equal(d.filter->n_blocks[CTL_FILTER_TCP], 1);
	ctl_server_policy_node_free(&d);
	stop_nodes();
}

/* The raw test client with given caps: joins and returns the response. */
static void tc_join_caps(struct t *t, struct tc *c, const char *host, uint32_t caps,
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
}

/* Peers of a whole map (MAP_FULL and its chunks), ids into out. */
static size_t tc_map_ids(struct t *t, struct tc *c, uint64_t *out, size_t cap)
{
	struct ctl_msg m;
	size_t n = 0;
	tc_expect(t, c, CTL_MSG_MAP_FULL, &m);
	bool more = m.u.map.more;
	for (size_t i = 0; i < m.u.map.n_peers && n < cap; i++)
		out[n++] = m.u.map.peers[i].id;
	ctl_msg_free(&m);
	while (more) {
		tc_expect(t, c, CTL_MSG_MAP_PEERS, &m);
		for (size_t i = 0; i < m.u.chunk.n_peers && n < cap; i++)
			out[n++] = m.u.chunk.peers[i].id;
		more = m.u.chunk.more;
		ctl_msg_free(&m);
	}
	return n;
}

/* Under a policy, a node without CTL_CAP_POLICY is refused with a reason
 * that says why and what to do; one that was online when the policy was
 * set is closed the same way. */
static void test_policy_old_node_refused(void **state)
{
	struct t *t = *state;
	struct tc *old = tc_new(), *late = tc_new();
	struct ctl_register_resp rr;
	tc_join_caps(t, old, "old-online", CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH, &rr);
	assert_int_equal(rr.status, CTL_REG_OK);
	uint64_t ids[8];
	assert_int_equal(tc_map_ids(t, old, ids, 8), 0);

	apply(t, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	         "[\"*:*\"]}]}");
	struct ctl_msg m;
	int r;
	do
		r = tc_recv(t, old, 2000, &m);
	while (r == 1 && m.type != CTL_MSG_ERROR && (ctl_msg_free(&m), 1));
	assert_int_equal(r, 1);
	assert_int_equal(m.type, CTL_MSG_ERROR);
	assert_int_equal(m.u.error.code, CTL_REASON_UPGRADE_REQUIRED);
	assert_non_null(strstr(m.u.error.text, "access policy"));
	assert_non_null(strstr(m.u.error.text, "upgrade"));

	tc_join_caps(t, late, "old-late", CTL_CAPS_ALL & ~CTL_CAP_POLICY, &rr);
	assert_int_equal(rr.status, CTL_REG_REFUSED);
	assert_int_equal(rr.code, CTL_REASON_UPGRADE_REQUIRED);
	assert_non_null(strstr(rr.reason, "access policy"));
	print_message("refused: %s\n", rr.reason);
	tc_free(old);
	tc_free(late);
}

/* Older map forms under a policy: one MAP_FULL (no chunks), chunks without
 * compression, and a compressed chunked map after a reconnect (once the
 * node is compiled): each holds only the peers it may see. */
static void test_policy_map_forms(void **state)
{
	struct t *t = *state;
	start_mesh(t, 3);
	/* A and B see each other; raw nodes E1..E3 (by CIDR: any 100.64/10
	 * address may reach A on 443) see A only */
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}, {\"action\": \"accept\", \"src\": [\"100.64.0.0/10\"], "
	      "\"dst\": [\"%s:443\"]}]}",
	      nodes[0].v4, nodes[1].v4, nodes[0].v4);
	settle(t);
	const uint32_t forms[3] = {
	    CTL_CAP_POLICY, CTL_CAP_POLICY | CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH,
	    CTL_CAPS_ALL};
	for (int f = 0; f < 3; f++) {
		struct tc *c = tc_new();
		struct ctl_register_resp rr;
		char host[16];
		snprintf(host, sizeof host, "form%d", f);
		tc_join_caps(t, c, host, forms[f], &rr);
		assert_int_equal(rr.status, CTL_REG_OK);
		uint64_t ids[16];
		/* first map: not compiled yet, fail closed: nobody */
		size_t n = tc_map_ids(t, c, ids, 16);
		assert_int_equal(n, 0);
		/* compiled at the next broadcast; the map once it is: A only */
		settle(t);
		tc_close(c);
		pump(t, 20);
		tc_join_caps(t, c, host, forms[f], &rr);
		assert_int_equal(rr.status, CTL_REG_OK);
		n = tc_map_ids(t, c, ids, 16);
		assert_int_equal(n, 1);
		assert_int_equal(ids[0], nodes[0].id);
		tc_free(c);
	}
	/* A sees B, C and the three raw nodes (gone now, or going); B and C
	 * see A only */
	pump(t, 100);
	assert_true(nodes[0].n_peers >= 2);
	assert_true(sees_exactly(1, 1) && sees_exactly(2, 1));
	stop_nodes();
}

/* A policy that does not parse changes nothing: the error names the place,
 * every node keeps every peer. */
static void test_policy_bad_text_changes_nothing(void **state)
{
	struct t *t = *state;
	start_mesh(t, 2);
	char err[600] = "";
	const char *bad = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"]]}";
	assert_int_equal(
	    ctl_server_policy_apply_text(t->srv, bad, strlen(bad), err, sizeof err),
	    -EINVAL);
	assert_non_null(strstr(err, "line 1"));
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_false(ps.active);
	pump(t, 100);
	unsigned all[N_NODES] = {2, 1};
	assert_true(until_views(t, all, 100) >= 0);
	stop_nodes();
}

/* 1,000 nodes under a policy that lets everyone reach everyone: one
 * visibility class, compiled in a time printed here; a node that joins
 * gets all of them (after its first, fail-closed map, in a delta). */
static void test_policy_thousand_nodes(void **state)
{
	struct t *t = *state;
	bulk_nodes(t, 1000, false);
	pump(t, 200);
	apply(t, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	         "[\"*:*\"]}]}");
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_true(ps.active && ps.compiled);
	assert_int_equal(ps.nodes, 1000);
	assert_int_equal(ps.classes, 1);
	print_message("1,000 nodes, one class: compiled in %.1f ms\n",
	              ps.last_compile_ms);
	double t0 = now_ms();
	start_node(t, 0);
	while (now_ms() - t0 < 10000 && nodes[0].n_total != 1000)
		pump(t, 5);
	assert_int_equal(nodes[0].n_total, 1000);
	ctl_server_policy_get_stats(t->srv, &ps);
	print_message("a joiner had all 1,000 after %.1f ms (last compile %.1f ms, %llu "
	              "compile(s) for node changes waited for the gap)\n",
	              now_ms() - t0, ps.last_compile_ms,
	              (unsigned long long)ps.compiles_deferred);
	assert_int_equal(ps.classes, 1);
	assert_int_equal(ps.filters_denied, 0);
	stop_nodes();
}

/* A node's filter past what a map carries goes as deny-all (fail closed),
 * counted: 20,000 separate sources (no two adjacent) that may reach A's
 * port 22 make about 60,000 blocks, over 2 MiB as text. B, one of the
 * sources, then may reach nothing on A. */
static void test_policy_filter_too_big_denies(void **state)
{
	struct t *t = *state;
	start_mesh(t, 2);
	size_t cap = 20000 * 18 + 512, len = 0;
	char *text = malloc(cap);
	len += (size_t)snprintf(text + len, cap - len,
	                        "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"",
	                        nodes[1].v4);
	for (unsigned i = 0; i < 20000; i++)
		len += (size_t)snprintf(text + len, cap - len, ",\"100.%u.%u.%u\"",
		                        65 + (2 * i) / 65536, ((2 * i) / 256) % 256,
		                        (2 * i) % 256);
	len += (size_t)snprintf(text + len, cap - len, "], \"dst\": [\"%s:22\"]}]}",
	                        nodes[0].v4);
	/* policy set refuses it: the server would send A's filter as
	 * deny-all (control review H3) */
	struct ctl_policy_result res;
	assert_int_equal(ctl_policy_validate(t->st, text, len, &res), CTL_POLICY_REJECTED);
	print_message("refused: %s\n", res.error.msg);
	assert_non_null(strstr(res.error.msg, "more than a map carries"));
	assert_non_null(strstr(res.error.msg, "deny-all"));
	assert_non_null(strstr(res.error.msg, "pnode0"));
	ctl_policy_result_free(&res);
	/* one in force anyway (set before the nodes grew): deny-all */
	char err[600] = "";
	int r = ctl_server_policy_apply_text(t->srv, text, len, err, sizeof err);
	free(text);
	if (r < 0)
		fail_msg("policy: %s", err);
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_true(ps.filters_denied >= 1);
	print_message("20,000 sources: compiled in %.1f ms, %llu filter(s) denied\n",
	              ps.last_compile_ms, (unsigned long long)ps.filters_denied);
	unsigned want[N_NODES] = {2, 1};
	assert_true(until_views(t, want, 1000) >= 0);
	settle(t);
	struct ctl_server_policy_node a, b;
	pnode(t, 0, &a);
	pnode(t, 1, &b);
	assert_int_equal(filter_blocks(a.filter), 0); /* deny-all */
	assert_int_equal(b.n_reach, 0);               /* so B may reach nothing */
	ctl_server_policy_node_free(&a);
	ctl_server_policy_node_free(&b);
	stop_nodes();
}

/* Under a policy a node gets deltas only for what it sees: B's endpoints
 * reach A (which sees B) and not C (which sees nobody: no delta at all). */
static void test_policy_invisible_changes_stay_away(void **state)
{
	struct t *t = *state;
	start_mesh(t, 3);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}]}",
	      nodes[0].v4, nodes[1].v4);
	unsigned want[N_NODES] = {1u << 1, 1u << 0, 0};
	assert_true(until_views(t, want, 1000) >= 0);
	settle(t);
	pump(t, 100);
	struct ctl_client_status c0, c1;
	ctl_client_get_status(nodes[2].c, &c0);
	struct ctl_endpoints eps = {.n = 1};
	assert_true(ctl_endpoint_parse("198.18.0.7:41641", &eps.ep[0]));
	assert_int_equal(ctl_client_set_endpoints(nodes[1].c, &eps), 0);
	double t0 = now_ms();
	bool seen = false;
	while (!seen && now_ms() - t0 < 3000) {
		const struct ctl_map_full *m = ctl_client_map(nodes[0].c);
		for (size_t k = 0; m && k < m->n_peers; k++)
			seen |= m->peers[k].id == nodes[1].id && m->peers[k].n_eps == 1 &&
			        m->peers[k].eps[0].port == 41641;
		pump(t, 2);
	}
	assert_true(seen);
	pump(t, 200);
	ctl_client_get_status(nodes[2].c, &c1);
	assert_int_equal(c1.maps_full, c0.maps_full);
	assert_int_equal(nodes[2].n_total, 0);
	/* C's map is still current (an empty delta at most moved its
	 * version): a change it does see later comes as a delta it applies,
	 * not as a reconnect for a full map. */
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}, {\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}]}",
	      nodes[0].v4, nodes[1].v4, nodes[2].v4, nodes[1].v4);
	t0 = now_ms();
	while (nodes[2].n_total != 1 && now_ms() - t0 < 3000)
		pump(t, 2);
	assert_int_equal(nodes[2].n_total, 1);
	pump(t, 100);
	ctl_client_get_status(nodes[2].c, &c1);
	assert_int_equal(c1.maps_full, c0.maps_full);
	assert_int_equal(c1.reconnects, c0.reconnects);
	stop_nodes();
}

/* A node without patches (caps: the policy only) gets whole entries in
 * its deltas: a policy change that moves it from A to B sends B's entry
 * and removes A. */
static void test_policy_delta_without_patches(void **state)
{
	struct t *t = *state;
	start_mesh(t, 2);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"100.64.0.0/10\"], "
	      "\"dst\": [\"%s:443\"]}]}",
	      nodes[0].v4);
	settle(t);
	struct tc *c = tc_new();
	struct ctl_register_resp rr;
	uint64_t ids[8];
	tc_join_caps(t, c, "nopatch", CTL_CAP_POLICY, &rr);
	assert_int_equal(rr.status, CTL_REG_OK);
	assert_int_equal(tc_map_ids(t, c, ids, 8), 0); /* not compiled yet */
	struct ctl_msg m;
	tc_expect(t, c, CTL_MSG_MAP_DELTA, &m); /* compiled: A */
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, nodes[0].id);
	ctl_msg_free(&m);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"100.64.0.0/10\"], "
	      "\"dst\": [\"%s:443\"]}]}",
	      nodes[1].v4);
	tc_expect(t, c, CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, nodes[1].id);
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], nodes[0].id);
	assert_int_equal(m.u.delta.n_patches, 0);
	ctl_msg_free(&m);
	tc_free(c);
	stop_nodes();
}

/* A and B may reach each other (A on B's 22, B on A's 80); then only A
 * may reach B: they still see each other, and B's delta carries an empty
 * reach entry for A (what it may open there went to nothing), A's none. */
static void test_policy_reach_to_nothing(void **state)
{
	struct t *t = *state;
	start_mesh(t, 2);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}, {\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:80\"]}]}",
	      nodes[0].v4, nodes[1].v4, nodes[1].v4, nodes[0].v4);
	settle(t);
	struct ctl_server_policy_node a, b;
	pnode(t, 1, &b);
	assert_int_equal(b.n_reach, 1);
	assert_true(port_in(b.reach[0].tcp, b.reach[0].n_tcp, 80));
	ctl_server_policy_node_free(&b);
	apply(t,
	      "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": "
	      "[\"%s:22\"]}]}",
	      nodes[0].v4, nodes[1].v4);
	settle(t);
	pnode(t, 0, &a);
	pnode(t, 1, &b);
	assert_int_equal(b.n_visible, 1);
	assert_int_equal(b.n_reach, 0);
	assert_int_equal(b.last_reach, 1); /* the empty entry */
	assert_int_equal(b.last_reach_id, nodes[0].id);
	assert_int_equal(b.last_filter_op, CTL_FILTER_KEEP); /* B's own: still 22 */
	assert_int_equal(a.last_filter_op, CTL_FILTER_SET);  /* A's: 80 went */
	assert_int_equal(a.last_reach, 0);
	ctl_server_policy_node_free(&a);
	ctl_server_policy_node_free(&b);
	stop_nodes();
}

/* Changes node id's row with set (an SQL assignment) at a new version. */
static void node_sql(struct t *t, uint64_t id, const char *set)
{
	char sql[512];
	snprintf(sql, sizeof sql,
	         "UPDATE meta SET map_version = map_version + 1;"
	         "UPDATE nodes SET %s, version = (SELECT map_version FROM meta) "
	         "WHERE id = %llu",
	         set, (unsigned long long)id);
	test_store_exec(&t->ts, sql); /* as another process would */
}

/* Control review H2: a change the policy does not read (node and disco
 * key, name, endpoints) compiles nothing; an address change does. Before
 * the fix any change of a whole entry compiled again (it failed here at
 * the key change). */
static void test_policy_compiles_only_for_its_inputs(void **state)
{
	struct t *t = *state;
	start_mesh(t, 2);
	apply(t, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	         "[\"*:*\"]}]}");
	settle(t);
	pump(t, 200);
	struct ctl_server_policy_stats a, b;
	ctl_server_policy_get_stats(t->srv, &a);
	char set[256];
	snprintf(set, sizeof set, "node_key = %s, disco_key = %s, name = 'renamed'",
	         test_store_sql_random32(&t->ts), test_store_sql_random32(&t->ts));
	node_sql(t, nodes[1].id, set);
	pump(t, 300);
	ctl_server_policy_get_stats(t->srv, &b);
	assert_int_equal(b.compiles, a.compiles);
	assert_int_equal(b.compiles_deferred, a.compiles_deferred);
	/* an input: a new address (in 100.64/10) */
	node_sql(t, nodes[1].id, "ipv4 = ipv4 + 1000");
	double t0 = now_ms();
	do {
		pump(t, 20);
		ctl_server_policy_get_stats(t->srv, &b);
	} while (b.compiles == a.compiles && now_ms() - t0 < 3000);
	assert_true(b.compiles > a.compiles);
	stop_nodes();
}

/* Control review M2: a map begun before a policy was set carries in the
 * rest of it only peers the node may see under that policy (here: none);
 * before the fix it went on with every node (all N). Both forms: chunks
 * built for the node and the shared compressed chunks. */
static void test_policy_stream_begun_before_policy(void **state)
{
	struct t *t = *state;
	enum { N = 5000 };
	bulk_nodes(t, N, false);
	restart_with(t, &(struct ctl_server_config){.sndbuf = 4096});
	const uint32_t forms[2] = {CTL_CAPS_ALL & ~CTL_CAP_ZSTD, CTL_CAPS_ALL};
	for (int f = 0; f < 2; f++) {
		if (f) /* back to no policy for the second form */
			assert_int_equal(ctl_server_policy_apply_text(t->srv, NULL, 0, NULL, 0),
			                 0);
		pump(t, 100);
		tc_rcvbuf = 4096;
		struct tc *c = tc_new();
		struct ctl_register_resp rr;
		tc_join_caps(t, c, f ? "stream-z" : "stream", forms[f], &rr);
		tc_rcvbuf = 0;
		assert_int_equal(rr.status, CTL_REG_OK);
		pump(t, 50);
		apply(t, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"%s\"], "
		         "\"dst\": [\"%s:22\"]}]}",
		         "100.127.255.1", "100.127.255.2");
		uint64_t *ids = calloc(N + 8, sizeof *ids);
		size_t n = tc_map_ids(t, c, ids, N + 8);
		print_message("form %d: %zu of %d peers in a map begun before the policy\n",
		              f, n, N);
		assert_true(n < N / 2);
		free(ids);
		tc_free(c);
	}
}

/* A raw node's view of its map for test_policy_stream_spans_two_compiles:
 * which ids it holds and the range each one's address is in (1: the
 * policy H's 100.64.16.0/20, 2: A's 100.64.32.0/22, 0: elsewhere). */
#define SPAN_IDS 16384
struct span_view {
	bool has[SPAN_IDS];
	uint8_t range[SPAN_IDS];
	bool streaming; /* a chunked map's chunks follow */
	uint64_t max_id;
};

static uint8_t span_range(const struct ctl_peer *p)
{
	for (size_t i = 0; i < p->n_addrs; i++) {
		const uint8_t *a = p->addrs[i].addr;
		if (p->addrs[i].family != 4 || a[0] != 100 || a[1] != 64)
			continue;
		if (a[2] >= 16 && a[2] < 32)
			return 1;
		if (a[2] >= 32 && a[2] < 36)
			return 2;
	}
	return 0;
}

static void span_add(struct span_view *v, const struct ctl_peer *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_true(p[i].id < SPAN_IDS);
		v->has[p[i].id] = true;
		v->range[p[i].id] = span_range(&p[i]);
		if (p[i].id > v->max_id)
			v->max_id = p[i].id;
	}
}

/* Applies one map message as a node does; returns the largest id a chunk
 * (or MAP_FULL) carried, 0 for others. */
static uint64_t span_apply(struct span_view *v, const struct ctl_msg *m)
{
	v->max_id = 0;
	switch (m->type) {
	case CTL_MSG_MAP_FULL:
		memset(v->has, 0, sizeof v->has);
		span_add(v, m->u.map.peers, m->u.map.n_peers);
		v->streaming = m->u.map.more;
		return v->max_id;
	case CTL_MSG_MAP_PEERS:
		assert_true(v->streaming);
		span_add(v, m->u.chunk.peers, m->u.chunk.n_peers);
		v->streaming = m->u.chunk.more;
		return v->max_id;
	case CTL_MSG_MAP_DELTA:
		assert_false(v->streaming);
		for (size_t i = 0; i < m->u.delta.n_removed; i++)
			if (m->u.delta.removed[i] < SPAN_IDS)
				v->has[m->u.delta.removed[i]] = false;
		span_add(v, m->u.delta.peers, m->u.delta.n_peers);
		for (size_t i = 0; i < m->u.delta.n_patches; i++) {
			assert_true(m->u.delta.patches[i].id < SPAN_IDS);
			assert_true(v->has[m->u.delta.patches[i].id]);
		}
		return 0;
	default:
		return 0;
	}
}

/* Review M1': a node's chunked map spans two compiles that move its class
 * H -> A -> H: the chunks built under A carry A's peers (after the cursor),
 * the rest under H nothing more (the cursor is past H's ids). Its map once
 * the catch-up is in must hold every peer of H and none of A. Before the
 * fix the catch-up compared the header's class (H) with the class now (H),
 * found them the same and sent nothing: A's ~400 peers stayed and most of
 * H's never came. */
static void test_policy_stream_spans_two_compiles(void **state)
{
	struct t *t = *state;
	enum { N = 5000 };
	const char *h = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	                "[\"100.64.16.0/20:22\"]}]}",
	           *a = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	                "[\"100.64.32.0/22:22\"]}]}";
	bulk_nodes(t, N, false); /* 100.64.16.1 upward in id order */
	restart_with(t, &(struct ctl_server_config){.sndbuf = 4096});
	apply(t, "%s", h);
	pump(t, 50);
	struct tc *c = tc_new();
	struct ctl_register_resp rr;
	tc_rcvbuf = 4096;
	tc_join_caps(t, c, "span", CTL_CAPS_ALL, &rr);
	assert_int_equal(rr.status, CTL_REG_OK);
	/* joined after the compile: nobody, until the next one */
	uint64_t none[4];
	assert_int_equal(tc_map_ids(t, c, none, 4), 0);
	struct ctl_server_policy_node pn = {0};
	double t0 = now_ms();
	for (;;) {
		assert_int_equal(ctl_server_policy_node_get(t->srv, (int64_t)rr.node_id, &pn),
		                 0);
		/* 5,000 nodes under ASan beside make test's other stages
		 * took over 5 s once: the bound is for a hang, not speed */
		if (pn.compiled || now_ms() - t0 > 60000)
			break;
		ctl_server_policy_node_free(&pn);
		pump(t, 20);
	}
	assert_true(pn.compiled);
	size_t want_h = pn.n_visible;
	ctl_server_policy_node_free(&pn);
	/* its own address is outside both ranges (else every node could
	 * reach it and it would see them all): H's peers are the 4,095 bulk
	 * nodes in 100.64.16.0/20 */
	print_message("the node: %u.%u.%u.%u\n", rr.ipv4[0], rr.ipv4[1], rr.ipv4[2],
	              rr.ipv4[3]);
	assert_false(rr.ipv4[0] == 100 && rr.ipv4[1] == 64 && rr.ipv4[2] >= 16 &&
	             rr.ipv4[2] < 36);
	assert_int_equal(want_h, 4095);

	/* a fresh map under H, read slowly */
	tc_close(c);
	pump(t, 20);
	tc_join_caps(t, c, "span", CTL_CAPS_ALL, &rr);
	tc_rcvbuf = 0;
	assert_int_equal(rr.status, CTL_REG_OK);
	struct span_view *v = calloc(1, sizeof *v);
	struct ctl_msg m;
	tc_expect(t, c, CTL_MSG_MAP_FULL, &m);
	span_apply(v, &m);
	ctl_msg_free(&m);
	assert_true(v->streaming);
	int chunks = 0, phase = 0; /* 0: under H, 1: under A, 2: H again */
	while (v->streaming) {
		tc_expect(t, c, CTL_MSG_MAP_PEERS, &m);
		uint64_t top = span_apply(v, &m);
		ctl_msg_free(&m);
		chunks++;
		if (phase == 0 && chunks == 2) {
			apply(t, "%s", a);
			phase = 1;
		} else if (phase == 1 && top && v->range[top] == 2) {
			/* A's peers are in the stream: back to H */
			apply(t, "%s", h);
			phase = 2;
		}
	}
	size_t a_in = 0;
	for (size_t i = 0; i < SPAN_IDS; i++)
		a_in += v->has[i] && v->range[i] == 2;
	print_message("stream: %d chunks, phase %d at its end, %zu of A's peers\n",
	              chunks, phase, a_in);
	assert_int_equal(phase, 2); /* A's peers did come in the stream */
	/* the catch-up: deltas, or a whole map again */
	t0 = now_ms();
	while (now_ms() - t0 < 1000 || v->streaming) {
		int r = tc_recv(t, c, v->streaming ? 3000 : 100, &m);
		if (r == 0 && !v->streaming)
			continue;
		assert_int_equal(r, 1);
		print_message("catch-up: %s\n", ctl_msg_type_name(m.type));
		span_apply(v, &m);
		ctl_msg_free(&m);
	}
	size_t n_h = 0, n_a = 0, n_other = 0;
	for (size_t i = 0; i < SPAN_IDS; i++) {
		if (!v->has[i])
			continue;
		if (v->range[i] == 1)
			n_h++;
		else if (v->range[i] == 2)
			n_a++;
		else
			n_other++;
	}
	print_message("after the catch-up: %zu of H's %zu peers, %zu of A's, %zu "
	              "others\n",
	              n_h, want_h, n_a, n_other);
	assert_int_equal(n_a, 0);
	assert_int_equal(n_other, 0);
	assert_int_equal(n_h, want_h);
	free(v);
	tc_free(c);
}

static int fault_policy_read(const char *point, void *arg)
{
	(void)arg;
	return !strcmp(point, "policy:read");
}

/* Control review M3: reading the stored policy fails at startup: every
 * node sees nobody (fail closed, not allow-all), and the server tries
 * again without any store change; once it reads, the policy is in force.
 * Before the fix the nodes saw each other (no policy in force) until an
 * unrelated change. */
static void test_policy_read_failure_fails_closed(void **state)
{
	struct t *t = *state;
	int64_t rev;
	static const char pol[] = "{\"acls\": [{\"action\": \"accept\", \"src\": "
	                          "[\"*\"], \"dst\": [\"*:22\"]}]}";
	assert_int_equal(ctl_store_policy_set(t->st, pol, strlen(pol), time(NULL), &rev),
	                 0);
	ctl_store_set_fault(t->st, fault_policy_read, NULL);
	restart_with(t, &(struct ctl_server_config){0});
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_true(ps.active);
	assert_false(ps.compiled);
	assert_true(ps.read_failures >= 1);
	start_node(t, 0);
	start_node(t, 1);
	double t0 = now_ms();
	while ((nodes[0].st != CTL_CLIENT_ONLINE || nodes[1].st != CTL_CLIENT_ONLINE) &&
	       now_ms() - t0 < 3000)
		pump(t, 5);
	pump(t, 300);
	unsigned none[N_NODES] = {0, 0};
	assert_true(until_views(t, none, 10) >= 0);
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_false(ps.compiled);
	/* the store answers again: retried on a timer, then in force */
	ctl_store_set_fault(t->st, NULL, NULL);
	unsigned both[N_NODES] = {2, 1};
	assert_true(until_views(t, both, 3000) >= 0);
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_true(ps.active && ps.compiled);
	stop_nodes();
}

/* Starts node i with auth key key (not the fixture's). */
static void start_node_key(struct t *t, int i, const char *key)
{
	char save[CTL_SECRET_MAX];
	memcpy(save, t->key, sizeof save);
	snprintf(t->key, sizeof t->key, "%s", key);
	start_node(t, i);
	memcpy(t->key, save, sizeof save);
}

static void make_key(struct t *t, const char *user, const char *tags, char *out)
{
	struct ctl_authkey_params kp = {
	    .reusable = true, .now = time(NULL), .user = user, .tags = tags};
	assert_int_equal(ctl_store_key_create(t->st, &kp, out, CTL_SECRET_MAX, NULL), 0);
}

/* Control review M1: a policy in force names a host alias like a user who
 * then joins (the policy was set before the user existed, or by hand).
 * Only that user's node stays out (sees nobody, accepts nothing); the
 * rest of the mesh compiles. Before the fix the whole compile failed:
 * with nothing compiled before, every node saw nobody. */
static void test_policy_alias_user_conflict_stays_with_its_node(void **state)
{
	struct t *t = *state;
	char ak[CTL_SECRET_MAX];
	assert_int_equal(ctl_store_user_create(t->st, "alice", time(NULL), NULL), 0);
	make_key(t, "alice", NULL, ak);
	start_mesh(t, 2);
	start_node_key(t, 2, ak);
	unsigned all[N_NODES] = {6, 5, 3};
	assert_true(until_views(t, all, 3000) >= 0);
	apply(t, "{\"hosts\": {\"alice\": \"100.64.0.9\"}, \"acls\": "
	         "[{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}");
	struct ctl_server_policy_stats ps;
	ctl_server_policy_get_stats(t->srv, &ps);
	assert_true(ps.compiled);
	assert_int_equal(ps.nodes, 2);
	unsigned want[N_NODES] = {2, 1, 0};
	assert_true(until_views(t, want, 2000) >= 0);
	struct ctl_server_policy_node pn;
	pnode(t, 2, &pn);
	assert_false(pn.compiled);
	assert_int_equal(filter_blocks(pn.filter), 0);
	ctl_server_policy_node_free(&pn);
	stop_nodes();
}

/* Control review H1, the reviewer's case: tagOwners gives tag:prod to bob
 * only; alice's node carries tag:prod from a key made before any policy.
 * Her tag counts for nothing: alice's laptop and bob's prod-db do not see
 * each other, and her node publishes no tags. */
static void test_policy_unowned_tag_grants_nothing(void **state)
{
	struct t *t = *state;
	char ak[CTL_SECRET_MAX], bk[CTL_SECRET_MAX];
	assert_int_equal(ctl_store_user_create(t->st, "alice", time(NULL), NULL), 0);
	assert_int_equal(ctl_store_user_create(t->st, "bob", time(NULL), NULL), 0);
	make_key(t, "alice", "tag:prod", ak);
	make_key(t, "bob", "tag:prod", bk);
	start_node_key(t, 0, ak);
	start_node_key(t, 1, bk);
	unsigned all[N_NODES] = {2, 1};
	assert_true(until_views(t, all, 3000) >= 0);
	apply(t, "{\"tagOwners\": {\"tag:prod\": [\"bob@\"]}, \"acls\": ["
	         "{\"action\": \"accept\", \"src\": [\"tag:prod\"], \"dst\": "
	         "[\"tag:prod:*\"]}, {\"action\": \"accept\", \"src\": [\"alice@\"], "
	         "\"dst\": [\"alice@:*\"]}]}");
	unsigned none[N_NODES] = {0, 0};
	assert_true(until_views(t, none, 2000) >= 0);
	settle(t);
	struct ctl_server_policy_node a, b;
	pnode(t, 0, &a);
	pnode(t, 1, &b);
	assert_string_equal(a.tags, "");
	assert_string_equal(b.tags, "tag:prod");
	ctl_server_policy_node_free(&a);
	ctl_server_policy_node_free(&b);
	stop_nodes();
}

/* Node i's map names it as owned by user with tags, within ms. */
static bool until_self(struct t *t, int i, const char *user, const char *tags, int ms)
{
	double t0 = now_ms();
	while (now_ms() - t0 < ms) {
		if (!strcmp(nodes[i].self_user, user) && !strcmp(nodes[i].self_tags, tags))
			return true;
		pump(t, 2);
	}
	fail_msg("node %d: self user \"%s\" tags \"%s\", want \"%s\" \"%s\"", i,
	         nodes[i].self_user, nodes[i].self_tags, user, tags);
	return false;
}

/* A node's map names its own user and tags: its stored tags without a
 * policy, the ones the policy accepts under one; a policy change that
 * drops one of them reaches it in a delta (no full map, no reconnect),
 * and clearing the policy gives the stored tags back. */
static void test_policy_self_owner(void **state)
{
	struct t *t = *state;
	char bk[CTL_SECRET_MAX];
	assert_int_equal(ctl_store_user_create(t->st, "bob", time(NULL), NULL), 0);
	make_key(t, "bob", "tag:web,tag:db", bk);
	start_node_key(t, 0, bk);
	start_node(t, 1);
	unsigned all[N_NODES] = {2, 1};
	assert_true(until_views(t, all, 3000) >= 0);
	until_self(t, 0, "bob", "tag:web,tag:db", 2000);
	assert_string_equal(nodes[1].self_tags, "");
	apply(t, "{\"tagOwners\": {\"tag:web\": [\"bob@\"], \"tag:db\": [\"bob@\"]}, "
	         "\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": "
	         "[\"*:*\"]}]}");
	settle(t);
	until_self(t, 0, "bob", "tag:web,tag:db", 2000);
	unsigned fulls = nodes[0].n_full;
	/* tag:db loses its owner: bob's node no longer carries it */
	apply(t, "{\"tagOwners\": {\"tag:web\": [\"bob@\"]}, \"acls\": [{\"action\": "
	         "\"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}");
	until_self(t, 0, "bob", "tag:web", 2000);
	assert_int_equal(nodes[0].n_full, fulls);
	/* no policy: the stored tags again */
	assert_int_equal(ctl_server_policy_apply_text(t->srv, NULL, 0, NULL, 0), 0);
	until_self(t, 0, "bob", "tag:web,tag:db", 2000);
	stop_nodes();
}

static int teardown_nodes(void **state)
{
	stop_nodes();
	return teardown(state);
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_policy_views_filter_reach, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_change_and_clear, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_join_seen_only_by_allowed, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_old_node_refused, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_map_forms, setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_bad_text_changes_nothing, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_thousand_nodes, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_filter_too_big_denies, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_invisible_changes_stay_away,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_delta_without_patches, setup,
	                                    teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_compiles_only_for_its_inputs,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_stream_begun_before_policy,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_stream_spans_two_compiles,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_read_failure_fails_closed,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(
	        test_policy_alias_user_conflict_stays_with_its_node, setup,
	        teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_unowned_tag_grants_nothing,
	                                    setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_self_owner, setup, teardown_nodes),
	    cmocka_unit_test_setup_teardown(test_policy_reach_to_nothing, setup,
	                                    teardown_nodes),
	};
	if (argc > 1) /* one test by name, for checking a finding alone */
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
