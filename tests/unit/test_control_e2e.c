/* The control client against the real server, in process: ctl_server on
 * 127.0.0.1:0 with a temporary SQLite store and four ctl_client instances
 * on one event loop.
 *  - three nodes join with a reusable auth key: all ONLINE, each map holds
 *    exactly the other two (not itself);
 *  - a fourth joins: the first three see it in a MAP_DELTA (latency printed);
 *  - endpoints set on a client reach the others' maps;
 *  - a node removed through a second store handle (as the admin CLI does)
 *    disappears from the others' maps; its own client gets the server's
 *    ERROR, reconnects and ends PENDING (the store takes its machine key,
 *    now without an auth key, as a new node waiting for approval) or
 *    REFUSED, and does not reappear in the others' maps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "core/control/client.h"
#include "core/control/noise_ik.h"
#include "servers/control/server.h"
#include "servers/control/store.h"
#include "store_fixture.h"

#define N_NODES 4

struct node {
	struct e2e *t;
	struct ctl_client *c;
	int idx;
	enum ctl_client_state st;
	uint32_t reason;
	uint64_t id;
	int n_maps;
	uint64_t peers[16];
	size_t n_peers;
	double saw_at[N_NODES]; /* when node i's id first appeared in our map */
	struct ctl_endpoint first_ep[16];
};

struct e2e {
	char tmp[64], dir[96];
	struct test_store ts; /* SQLite, or PostgreSQL under MESH_TEST_PG_URL */
	struct ctl_store *st;
	struct event_base *base;
	struct ctl_server *srv;
	uint8_t spriv[32], spub[32];
	uint16_t port;
	char key[CTL_SECRET_MAX];
	struct node n[N_NODES];
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	struct node *n = ctx;

	n->st = st;
	if (resp && st == CTL_CLIENT_ONLINE)
		n->id = resp->node_id;
	if (resp && st == CTL_CLIENT_REFUSED)
		n->reason = resp->code;
	(void)detail;
}

static void on_map(void *ctx, const struct ctl_map_full *map,
                   const struct ctl_map_change *chg)
{
	struct node *n = ctx;

	(void)chg;
	n->n_maps++;
	n->n_peers = map->n_peers < 16 ? map->n_peers : 16;
	for (size_t i = 0; i < n->n_peers; i++) {
		n->peers[i] = map->peers[i].id;
		n->first_ep[i] =
		    map->peers[i].n_eps ? map->peers[i].eps[0] : (struct ctl_endpoint){0};
		for (int j = 0; j < N_NODES; j++)
			if (n->t->n[j].id == map->peers[i].id && n->saw_at[j] == 0)
				n->saw_at[j] = now_ms();
	}
}

static const struct ctl_client_callbacks cbs = {.on_state = on_state, .on_map = on_map};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static bool run_until(struct e2e *t, bool (*cond)(struct e2e *), double ms)
{
	double end = now_ms() + ms;
	struct timeval tv = {0, 2000};
	struct event *tick = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);

	event_add(tick, &tv);
	while (!(cond && cond(t)) && now_ms() < end)
		event_base_loop(t->base, EVLOOP_ONCE);
	event_free(tick);
	return cond ? cond(t) : true;
}

static int setup(void **state)
{
	struct e2e *t = calloc(1, sizeof(*t));
	char err[256] = "";

	strcpy(t->tmp, "/tmp/ctle2e-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof(t->dir), "%s/data", t->tmp);
	t->st = test_store_open_fresh(&t->ts, t->dir);
	ctl_noise_keypair(t->spriv, t->spub);
	struct ctl_init_params p = {.now = time(NULL)};
	memcpy(p.server_public, t->spub, 32);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	struct ctl_authkey_params kp = {.reusable = true, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, t->key, sizeof(t->key), NULL),
	                 0);
	t->base = event_base_new();

	struct ctl_server_config cfg = {.base = t->base,
	                                .store = t->st,
	                                .poll_ms = 50,
	                                .coalesce_ms = 10,
	                                .handshake_ms = 2000};
	memcpy(cfg.server_priv, t->spriv, 32);
	struct sockaddr_in *a = (struct sockaddr_in *)&cfg.listen;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfg.listen_len = sizeof(*a);
	t->srv = ctl_server_new(&cfg, err, sizeof(err));
	if (!t->srv)
		fail_msg("server: %s", err);
	struct sockaddr_storage ss;
	socklen_t sl;
	ctl_server_local(t->srv, &ss, &sl);
	t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct e2e *t = *state;

	for (int i = 0; i < N_NODES; i++)
		ctl_client_free(t->n[i].c);
	ctl_server_free(t->srv);
	event_base_free(t->base);
	ctl_store_close(t->st);
	test_store_drop(&t->ts);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static void start_node(struct e2e *t, int i)
{
	struct node *n = &t->n[i];
	struct ctl_client_config cfg;
	char host[16], err[256];
	uint8_t pub[32];

	snprintf(host, sizeof(host), "node%d", i + 1);
	memset(&cfg, 0, sizeof(cfg));
	cfg.base = t->base;
	cfg.host = "127.0.0.1";
	cfg.port = t->port;
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, pub);
	randombytes_buf(cfg.node_key, 32);
	randombytes_buf(cfg.disco_key, 32);
	cfg.hostname = host;
	cfg.version = "e2e";
	cfg.auth_key = t->key;
	cfg.backoff_min_ms = 20;
	cfg.backoff_max_ms = 100;
	cfg.cb = &cbs;
	cfg.ctx = n;
	n->t = t;
	n->idx = i;
	n->c = ctl_client_new(&cfg, err, sizeof(err));
	if (!n->c)
		fail_msg("client %d: %s", i, err);
	sodium_memzero(cfg.machine_priv, 32);
}

static bool has(const struct node *n, uint64_t id)
{
	for (size_t i = 0; i < n->n_peers; i++)
		if (n->peers[i] == id)
			return true;
	return false;
}

/* every node in [0, k) online and seeing exactly the others in [0, k) */
static bool mesh_of(struct e2e *t, int k)
{
	for (int i = 0; i < k; i++) {
		if (t->n[i].st != CTL_CLIENT_ONLINE || t->n[i].n_peers != (size_t)k - 1)
			return false;
		for (int j = 0; j < k; j++)
			if (has(&t->n[i], t->n[j].id) != (i != j))
				return false;
	}
	return true;
}

static bool mesh_of_3(struct e2e *t)
{
	return mesh_of(t, 3);
}
static bool mesh_of_4(struct e2e *t)
{
	return mesh_of(t, 4);
}

static bool eps_seen(struct e2e *t)
{
	for (int i = 1; i < 4; i++) {
		const struct ctl_map_full *m = ctl_client_map(t->n[i].c);
		bool ok = false;
		for (size_t k = 0; m && k < m->n_peers; k++)
			ok |= m->peers[k].id == t->n[0].id && m->peers[k].n_eps == 1 &&
			      m->peers[k].eps[0].port == 41641;
		if (!ok)
			return false;
	}
	return true;
}

static bool removed_2(struct e2e *t)
{
	for (int i = 0; i < 4; i++)
		if (i != 2 && (t->n[i].n_peers != 2 || has(&t->n[i], t->n[2].id)))
			return false;
	/* the removed node: after the server's ERROR it reconnects without an
	 * auth key (spent on its first "ok"); the store then holds it as a new
	 * node waiting for approval (or a server may refuse it outright) */
	return t->n[2].st == CTL_CLIENT_REFUSED || t->n[2].st == CTL_CLIENT_PENDING;
}

static void test_three_then_four_then_remove(void **state)
{
	struct e2e *t = *state;
	double t0;

	t0 = now_ms();
	for (int i = 0; i < 3; i++)
		start_node(t, i);
	assert_true(run_until(t, mesh_of_3, 5000));
	print_message("3 nodes online, full mesh in maps: %.1f ms\n", now_ms() - t0);

	t0 = now_ms();
	start_node(t, 3);
	assert_true(run_until(t, mesh_of_4, 5000));
	double worst = 0;
	for (int i = 0; i < 3; i++) {
		double d = t->n[i].saw_at[3] - t0;
		worst = d > worst ? d : worst;
	}
	print_message("4th node: seen by the other three within %.1f ms of its start\n",
	              worst);

	/* endpoints travel: node 1's reach the other three */
	struct ctl_endpoints eps = {.n = 1};
	assert_true(ctl_endpoint_parse("198.18.0.1:41641", &eps.ep[0]));
	t0 = now_ms();
	assert_int_equal(ctl_client_set_endpoints(t->n[0].c, &eps), 0);
	assert_true(run_until(t, eps_seen, 5000));
	print_message("endpoints in the others' maps after %.1f ms\n", now_ms() - t0);

	/* removal from another store handle (the admin CLI's way) */
	struct ctl_store *st2 = test_store_reopen(&t->ts);
	t0 = now_ms();
	assert_int_equal(ctl_store_node_remove(st2, (int64_t)t->n[2].id), 0);
	ctl_store_close(st2);
	assert_true(run_until(t, removed_2, 5000));
	print_message("removed node gone from the others' maps after %.1f ms; its "
	              "client is now %s\n",
	              now_ms() - t0, ctl_client_state_name(t->n[2].st));
	if (t->n[2].st == CTL_CLIENT_REFUSED)
		assert_int_equal(t->n[2].reason, CTL_REASON_NODE_REMOVED);
	/* and it is not in anyone's map while pending */
	run_until(t, NULL, 200);
	for (int i = 0; i < 4; i++)
		if (i != 2)
			assert_int_equal(t->n[i].n_peers, 2);
	for (int i = 0; i < 4; i++) {
		struct ctl_client_status cs;
		ctl_client_get_status(t->n[i].c, &cs);
		if (i != 2) {
			assert_int_equal(cs.state, CTL_CLIENT_ONLINE);
			assert_true(cs.maps_full >= 1);
			assert_true(cs.map_version > 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_three_then_four_then_remove, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
