/* The control client with several control addresses, against two real
 * mesh-control servers (ctl_server on 127.0.0.1, each with its own handle
 * on one SQLite store, as two `serve` processes on one database):
 *  - the client starts on the first address;
 *  - the first server dies: the client is online on the second within a
 *    fraction of its backoff (the next address is tried at once), as the
 *    same node (same id; the machine key is the same);
 *  - a network change (ctl_client_redial) dials the address in use again;
 *  - both dead: the client backs off between rounds (few attempts, the
 *    wait reported, the detail says every address failed), not a busy loop;
 *  - a server back on the second address: the client returns after the
 *    backoff, again as the same node;
 *  - a first address that refuses connections from the start: online on
 *    the second at once. */
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
#include <unistd.h>

#include "core/control/client.h"
#include "core/control/noise_ik.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

/* The client's backoff: long enough that "moved at once" and "waited"
 * cannot be confused on a loaded machine. */
#define BACKOFF_MIN_MS 2000
#define BACKOFF_MAX_MS 4000

struct fo {
	char tmp[64], dir[96];
	struct ctl_store *st[2];
	struct ctl_server *srv[2];
	uint16_t port[2];
	struct event_base *base;
	uint8_t spriv[32], spub[32];
	char key[CTL_SECRET_MAX];
	struct ctl_client *c;
	enum ctl_client_state st_now;
	uint64_t node_id;
	int onlines;
	char detail[CTL_TEXT_MAX];
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
	struct fo *t = ctx;

	t->st_now = st;
	snprintf(t->detail, sizeof(t->detail), "%s", detail ? detail : "");
	if (resp && st == CTL_CLIENT_ONLINE) {
		t->node_id = resp->node_id;
		t->onlines++;
	}
}

static const struct ctl_client_callbacks cbs = {.on_state = on_state};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static bool run_until(struct fo *t, bool (*cond)(struct fo *), double ms)
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

/* Server i on its own store handle, on port (0: any). */
static void start_server(struct fo *t, int i, uint16_t port)
{
	char err[256] = "";
	struct ctl_server_config cfg = {.base = t->base,
	                                .store = t->st[i],
	                                .poll_ms = 50,
	                                .coalesce_ms = 10,
	                                .handshake_ms = 2000};
	struct sockaddr_in *a = (struct sockaddr_in *)&cfg.listen;
	struct sockaddr_storage ss;
	socklen_t sl;

	memcpy(cfg.server_priv, t->spriv, 32);
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = htons(port);
	cfg.listen_len = sizeof(*a);
	t->srv[i] = ctl_server_new(&cfg, err, sizeof(err));
	if (!t->srv[i])
		fail_msg("server %d: %s", i, err);
	ctl_server_local(t->srv[i], &ss, &sl);
	t->port[i] = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void stop_server(struct fo *t, int i)
{
	ctl_server_free(t->srv[i]); /* listener and connections */
	t->srv[i] = NULL;
}

static int setup(void **state)
{
	struct fo *t = calloc(1, sizeof(*t));
	char err[256] = "";

	strcpy(t->tmp, "/tmp/ctlfo-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof(t->dir), "%s/data", t->tmp);
	t->st[0] = ctl_store_open_sqlite(t->dir, err, sizeof(err));
	if (!t->st[0])
		fail_msg("open: %s", err);
	ctl_noise_keypair(t->spriv, t->spub);
	struct ctl_init_params p = {.now = time(NULL)};
	memcpy(p.server_public, t->spub, 32);
	assert_int_equal(ctl_store_init(t->st[0], &p), 0);
	t->st[1] = ctl_store_open_sqlite(t->dir, err, sizeof(err));
	if (!t->st[1])
		fail_msg("open 2: %s", err);
	struct ctl_authkey_params kp = {.reusable = true, .now = time(NULL)};
	assert_int_equal(
	    ctl_store_key_create(t->st[0], &kp, t->key, sizeof(t->key), NULL), 0);
	t->base = event_base_new();
	start_server(t, 0, 0);
	start_server(t, 1, 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct fo *t = *state;

	ctl_client_free(t->c);
	for (int i = 0; i < 2; i++) {
		ctl_server_free(t->srv[i]);
		ctl_store_close(t->st[i]);
	}
	event_base_free(t->base);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* A client for the addresses first_port, then second_port. */
static void start_client(struct fo *t, uint16_t first_port, uint16_t second_port)
{
	struct ctl_client_addr more[1] = {{"127.0.0.1", second_port}};
	struct ctl_client_config cfg;
	char err[256];
	uint8_t pub[32];

	memset(&cfg, 0, sizeof(cfg));
	cfg.base = t->base;
	cfg.host = "127.0.0.1";
	cfg.port = first_port;
	cfg.more = more;
	cfg.n_more = 1;
	memcpy(cfg.server_key, t->spub, 32);
	ctl_noise_keypair(cfg.machine_priv, pub);
	randombytes_buf(cfg.node_key, 32);
	randombytes_buf(cfg.disco_key, 32);
	cfg.hostname = "failover";
	cfg.version = "test";
	cfg.auth_key = t->key;
	cfg.backoff_min_ms = BACKOFF_MIN_MS;
	cfg.backoff_max_ms = BACKOFF_MAX_MS;
	cfg.connect_timeout_ms = 2000;
	cfg.cb = &cbs;
	cfg.ctx = t;
	t->c = ctl_client_new(&cfg, err, sizeof(err));
	if (!t->c)
		fail_msg("client: %s", err);
	sodium_memzero(cfg.machine_priv, 32);
}

static bool online(struct fo *t)
{
	return t->st_now == CTL_CLIENT_ONLINE;
}

static bool backoff_waiting(struct fo *t)
{
	struct ctl_client_status cs;
	ctl_client_get_status(t->c, &cs);
	return cs.state == CTL_CLIENT_BACKOFF && cs.next_attempt_ms > 0;
}

static struct ctl_client_status status(struct fo *t)
{
	struct ctl_client_status cs;
	ctl_client_get_status(t->c, &cs);
	return cs;
}

static void expect_on(struct fo *t, int i)
{
	struct ctl_client_status cs = status(t);
	char want[32];

	snprintf(want, sizeof(want), "127.0.0.1:%u", t->port[i]);
	assert_int_equal(cs.state, CTL_CLIENT_ONLINE);
	assert_int_equal(cs.addr_index, i);
	assert_int_equal(cs.n_addrs, 2);
	assert_string_equal(cs.addr, want);
}

static void test_moves_to_the_second_and_backs_off_when_all_dead(void **state)
{
	struct fo *t = *state;
	double t0;

	start_client(t, t->port[0], t->port[1]);
	assert_true(run_until(t, online, 5000));
	expect_on(t, 0); /* the first address first */
	uint64_t id = t->node_id;
	assert_true(id > 0);

	/* the first server dies: the second at once, the same node */
	t0 = now_ms();
	stop_server(t, 0);
	t->st_now = 0;
	assert_true(run_until(t, online, 5000));
	double took = now_ms() - t0;
	print_message("first server gone: online on the second after %.1f ms\n", took);
	assert_true(took < BACKOFF_MIN_MS / 2); /* the backoff's shortest wait */
	expect_on(t, 1);
	assert_int_equal(t->node_id, id);
	assert_int_equal(t->onlines, 2);
	assert_int_equal(status(t).sessions, 2);

	/* our network changed: the address in use is dialled again */
	ctl_client_redial(t->c);
	t->st_now = 0;
	assert_true(run_until(t, online, 2 * BACKOFF_MAX_MS + 2000));
	expect_on(t, 1);
	assert_int_equal(t->node_id, id);

	/* both dead: one round (the second, then the first), then a wait */
	stop_server(t, 1);
	t->st_now = 0;
	assert_true(run_until(t, backoff_waiting, 5000));
	struct ctl_client_status cs = status(t);
	print_message("both gone: backoff %u ms (%s)\n", cs.next_attempt_ms, cs.detail);
	assert_non_null(strstr(cs.detail, "all 2 control addresses failed"));
	assert_true(cs.next_attempt_ms <= BACKOFF_MAX_MS);
	assert_int_equal(cs.addr_index, 0); /* the next round starts at the first */
	uint64_t attempts = cs.reconnects;
	run_until(t, NULL, 1500);
	cs = status(t);
	/* within 1.5 s at most the round in progress and one more (waits of
	 * at least BACKOFF_MIN_MS / 2): a busy loop would make thousands */
	print_message("attempts in 1.5 s while both are dead: %llu\n",
	              (unsigned long long)(cs.reconnects - attempts));
	assert_true(cs.reconnects - attempts <= 4);
	assert_int_not_equal(cs.state, CTL_CLIENT_ONLINE);

	/* a server back on the second address: found after the backoff */
	start_server(t, 1, t->port[1]);
	t0 = now_ms();
	assert_true(run_until(t, online, 2 * BACKOFF_MAX_MS + 3000));
	print_message("second server back: online again after %.1f ms\n", now_ms() - t0);
	expect_on(t, 1);
	assert_int_equal(t->node_id, id);
}

/* The first address refuses from the start: the second one at once. */
static void test_first_address_dead_from_the_start(void **state)
{
	struct fo *t = *state;

	stop_server(t, 0);
	double t0 = now_ms();
	start_client(t, t->port[0], t->port[1]);
	assert_true(run_until(t, online, 5000));
	print_message("online on the second address after %.1f ms\n", now_ms() - t0);
	assert_true(now_ms() - t0 < BACKOFF_MIN_MS / 2);
	expect_on(t, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_moves_to_the_second_and_backs_off_when_all_dead, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_address_dead_from_the_start, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
