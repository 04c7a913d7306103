/* A mesh name with several routed addresses (a peer with an IPv4 and an
 * IPv6 mesh address): SOCKS5 tries them RFC 8305 style through the real
 * netstack, the hand-rolled mesh peer of ns_test_peer.h answering for the
 * addresses that are "up" and ignoring the others. Proves: a dead first
 * address costs 250 ms, not the connection; the name's order is kept
 * (through the mesh both families ride the same tunnel) and the second
 * address is tried only if the first has not connected within 250 ms; a
 * loser that connects late is reset; all failing gives the most meaningful error; an
 * IPv4-mapped mesh address goes through the mesh (review L12); at most
 * PX_RACE_MESH_MAX dials per session, all cancelled when it closes. */
#include "ns_test_peer.h"

#include "proxy/internal.h"

#include <poll.h>
#include <time.h>

/* ---- the mesh side ---- */

/* What the peer does with SYNs to each of its two addresses. */
enum answer { A_SILENT, A_ACCEPT, A_RESET };

struct mesh {
	enum answer ans[2]; /* [0] PEER4, [1] PEER6 */
	unsigned syns[2];
	bool up[2];        /* handshake answered (SYN-ACK sent) */
	struct peer pr[2]; /* valid once a SYN arrived */
	bool seen[2];
};
static struct mesh mesh;

static int fam_idx(int fam)
{
	return fam == AF_INET6;
}

static void mesh_reply_syn(int i)
{
	struct peer *pr = &mesh.pr[i];
	if (mesh.ans[i] == A_ACCEPT) {
		pr->synack = true;
		peer_send(pr, F_SYN | F_ACK, NULL, 0);
		mesh.up[i] = true;
	} else if (mesh.ans[i] == A_RESET) {
		peer_send(pr, F_RST | F_ACK, NULL, 0);
	}
}

/* Every packet the stack sent: SYNs answered as mesh.ans says, the rest
 * taken by the peer of its family (data, ACKs, RSTs). */
static void mesh_poll(void)
{
	struct pkt *k;
	struct seg s;
	while ((k = cap_pop()) != NULL) {
		assert_true(parse(k, &s));
		if (s.proto != 6) {
			free(k);
			continue;
		}
		int i = fam_idx(s.fam);
		if (s.flags == F_SYN) {
			mesh.syns[i]++;
			if (!mesh.seen[i]) {
				peer_init(&mesh.pr[i], s.fam, s.sport);
				mesh.pr[i].port = s.dport;
				mesh.pr[i].rcv_nxt = s.seq + 1;
				mesh.pr[i].it_ws = s.ws < 0 ? 0 : s.ws;
				mesh.seen[i] = true;
				mesh_reply_syn(i);
			}
		} else if (mesh.seen[i]) {
			uint32_t before = mesh.pr[i].rcv_nxt;
			peer_take(&mesh.pr[i], &s);
			if (mesh.pr[i].rcv_nxt != before)
				peer_send(&mesh.pr[i], F_ACK, NULL, 0);
		}
		free(k);
	}
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_ms(int ms)
{
	long end = now_ms() + ms;
	do {
		spin_ms(1);
		mesh_poll();
	} while (now_ms() < end);
}

/* ---- the proxy ---- */

static bool route_ok(void *ctx, const struct ns_addr *a)
{
	static const uint8_t ula[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
	if (a->family == AF_INET6)
		return memcmp(a->addr, ula, 6) == 0;
	return a->addr[0] == 100 && (a->addr[1] & 0xc0) == 64;
}

/* "peer" is the mesh peer, its addresses in the order of order[]. */
static const char *order[2];

static size_t resolve_mesh(void *ctx, const char *name, struct ns_addr *out, size_t max)
{
	if (strcmp(name, "many") == 0) { /* 16 routed addresses, all silent */
		size_t n = max < 16 ? max : 16;
		for (size_t i = 0; i < n; i++) {
			char t[32];
			snprintf(t, sizeof(t), "100.64.9.%zu", i + 1);
			assert_true(ns_addr_parse(&out[i], t));
		}
		return n;
	}
	if (strcmp(name, "peer") != 0 || max < 2)
		return 0;
	assert_true(ns_addr_parse(&out[0], order[0]));
	assert_true(ns_addr_parse(&out[1], order[1]));
	return 2;
}

static struct px_socks *socks;
static struct px_env env;

static int mesh_setup(void **st)
{
	setup(st);
	memset(&mesh, 0, sizeof(mesh));
	env = (struct px_env){.base = base,
	                      .route_ok = route_ok,
	                      .resolve_mesh = resolve_mesh,
	                      .handshake_timeout_ms = 2000,
	                      .connect_timeout_ms = 1500};
	struct cfg_socks5 c = {.direct = CFG_DIRECT_NO};
	struct sockaddr_in *sin = (struct sockaddr_in *)&c.bind.addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c.bind.addr_len = sizeof(*sin);
	char err[200];
	socks = px_socks_new(&env, &c, err, sizeof(err));
	if (!socks)
		fail_msg("%s", err);
	return 0;
}

static int mesh_teardown(void **st)
{
	px_socks_free(socks);
	socks = NULL;
	teardown(st); /* ns_shutdown(): dials still pending fail now */
	peer_free(&mesh.pr[0]);
	peer_free(&mesh.pr[1]);
	return 0;
}

/* SOCKS5 CONNECT peer:80; returns the reply code and the time it took,
 * the client socket in *fdp. */
static int connect_peer(int *fdp, long *ms)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(socks, &ss, &sl);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	const uint8_t req[] = {5, 1, 0, 5, 1, 0, 3, 4, 'p', 'e', 'e', 'r', 0, 80};
	assert_int_equal(send(fd, req, sizeof(req), 0), (ssize_t)sizeof(req));
	long t0 = now_ms();
	uint8_t rep[12];
	size_t got = 0;
	while (got < sizeof(rep) && now_ms() - t0 < 3000) {
		run_ms(1);
		ssize_t r = recv(fd, rep + got, sizeof(rep) - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			fail_msg("closed after %zu reply bytes", got);
	}
	if (got != sizeof(rep))
		fail_msg("no reply (%zu bytes)", got);
	*ms = now_ms() - t0;
	*fdp = fd;
	return rep[3];
}

/* IPv6 dead, IPv4 up (the resolver's order): IPv4 250 ms later wins, and
 * bytes flow through it. The IPv6 dial, answered late, is reset. */
static void test_mesh_v6_dead_v4_up(void **st)
{
	order[0] = PEER6;
	order[1] = PEER4;
	mesh.ans[0] = A_ACCEPT;
	mesh.ans[1] = A_SILENT;
	int fd;
	long ms;
	assert_int_equal(connect_peer(&fd, &ms), SOCKS5_REP_SUCCEEDED);
	assert_true(ms >= 200 && ms < 1000);
	assert_int_equal(mesh.syns[1] >= 1, true);
	assert_true(mesh.up[0]);
	assert_int_equal(send(fd, "hello", 5, 0), 5);
	run_ms(50);
	assert_int_equal(mesh.pr[0].rx_len, 5);
	assert_memory_equal(mesh.pr[0].rx, "hello", 5);
	peer_send(&mesh.pr[0], F_ACK | F_PSH, "world", 5);
	uint8_t b[8];
	assert_int_equal(read_all(fd, b, sizeof(b), 200), 5);
	assert_memory_equal(b, "world", 5);
	/* The IPv6 peer wakes up: its connection is no longer wanted. */
	mesh.pr[1].synack = true;
	peer_send(&mesh.pr[1], F_SYN | F_ACK, NULL, 0);
	run_ms(20);
	assert_true(mesh.pr[1].got_rst);
	assert_false(mesh.pr[0].got_rst); /* the winner is untouched */
	struct px_stats stt;
	px_socks_get_stats(socks, &stt);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.pending, 0);
	close(fd);
	run_ms(20);
}

/* Through the mesh the name's own order is kept (IPv4 first here): with
 * both up IPv4 wins at once and IPv6 is never tried; with IPv4 dead, IPv6
 * 250 ms later. */
static void test_mesh_v4_first_v6_fallback(void **st)
{
	order[0] = PEER4;
	order[1] = PEER6;
	mesh.ans[0] = A_ACCEPT;
	mesh.ans[1] = A_ACCEPT;
	int fd;
	long ms;
	assert_int_equal(connect_peer(&fd, &ms), SOCKS5_REP_SUCCEEDED);
	assert_true(ms < 200);
	assert_true(mesh.up[0]);
	run_ms(400);
	assert_int_equal(mesh.syns[1], 0);
	close(fd);
	run_ms(20);
	peer_free(&mesh.pr[0]);
	memset(&mesh, 0, sizeof(mesh));
	mesh.ans[0] = A_SILENT;
	mesh.ans[1] = A_ACCEPT;
	assert_int_equal(connect_peer(&fd, &ms), SOCKS5_REP_SUCCEEDED);
	assert_true(ms >= 200 && ms < 1000);
	assert_true(mesh.syns[0] >= 1);
	assert_true(mesh.up[1]);
	close(fd);
	run_ms(20);
}

/* Both fail, one silent and one refusing: "refused" is the answer (the
 * more meaningful one), given when the connect timeout ends the wait. */
static void test_mesh_all_fail(void **st)
{
	order[0] = PEER4;
	order[1] = PEER6;
	mesh.ans[0] = A_SILENT;
	mesh.ans[1] = A_RESET;
	int fd;
	long ms;
	assert_int_equal(connect_peer(&fd, &ms), SOCKS5_REP_REFUSED);
	assert_true(ms >= 1200);
	assert_int_equal(mesh.syns[1], 1);
	assert_true(mesh.syns[0] >= 1);
	struct px_stats stt;
	px_socks_get_stats(socks, &stt);
	assert_int_equal(stt.err_refused, 1);
	assert_int_equal(stt.err_timeout, 0);
	close(fd);
	/* Both refusing: answered at once. */
	memset(&mesh, 0, sizeof(mesh));
	mesh.ans[0] = A_RESET;
	mesh.ans[1] = A_RESET;
	assert_int_equal(connect_peer(&fd, &ms), SOCKS5_REP_REFUSED);
	assert_true(ms < 200);
	close(fd);
}

/* Review L12: CONNECT to [::ffff:<the peer's IPv4>] is the peer's IPv4
 * address, so it is routed and dialled through the mesh (before, the route
 * check saw an IPv6 address no peer routes: no route, or Direct). */
static void test_mesh_v4_mapped(void **st)
{
	mesh.ans[0] = A_ACCEPT;
	mesh.ans[1] = A_ACCEPT;
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(socks, &ss, &sl);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	uint8_t req[3 + 4 + 16 + 2] = {5, 1, 0, 5, 1, 0, 4};
	struct ns_addr peer4;
	assert_true(ns_addr_parse(&peer4, PEER4));
	req[7 + 10] = req[7 + 11] = 0xff;
	memcpy(req + 7 + 12, peer4.addr, 4);
	req[23] = 0, req[24] = 80;
	assert_int_equal(send(fd, req, sizeof(req), 0), (ssize_t)sizeof(req));
	uint8_t rep[12];
	size_t got = 0;
	long t0 = now_ms();
	while (got < sizeof(rep) && now_ms() - t0 < 3000) {
		run_ms(1);
		ssize_t r = recv(fd, rep + got, sizeof(rep) - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			break;
	}
	assert_int_equal(got, sizeof(rep));
	assert_int_equal(rep[3], SOCKS5_REP_SUCCEEDED);
	assert_int_equal(mesh.syns[0], 1); /* an IPv4 SYN to the peer */
	assert_int_equal(mesh.syns[1], 0);
	assert_true(mesh.up[0]);
	close(fd);
	run_ms(20);
}

static uint64_t tcp_active(void)
{
	struct ns_stats st;
	ns_get_stats(&st);
	return st.tcp_active;
}

/* Review M2: a name with 16 silent routed addresses. Each session has at
 * most PX_RACE_MESH_MAX dials in flight, and when its clients go away the
 * dials go with them at once (before, each stayed until its 20 s dial
 * timeout, holding a netstack connection). */
static void test_mesh_dials_bounded_and_cancelled(void **st)
{
	enum { N = 8 };
	mesh.ans[0] = mesh.ans[1] = A_SILENT;
	uint64_t base_active = tcp_active();
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(socks, &ss, &sl);
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&ss, sl), 0);
		const uint8_t req[] = {5, 1, 0, 5, 1, 0, 3, 4, 'm', 'a', 'n', 'y', 0, 80};
		assert_int_equal(send(fds[i], req, sizeof(req), 0), (ssize_t)sizeof(req));
	}
	run_ms(1200); /* 5 attempts each by now (one every 250 ms) */
	assert_true(mesh.syns[0] >= N * PX_RACE_MESH_MAX);
	assert_true(tcp_active() - base_active <= N * PX_RACE_MESH_MAX);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	run_ms(50);
	assert_int_equal(tcp_active(), base_active);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mesh_v6_dead_v4_up, mesh_setup,
	                                    mesh_teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_v4_first_v6_fallback, mesh_setup,
	                                    mesh_teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_all_fail, mesh_setup,
	                                    mesh_teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_v4_mapped, mesh_setup,
	                                    mesh_teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_dials_bounded_and_cancelled,
	                                    mesh_setup, mesh_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
