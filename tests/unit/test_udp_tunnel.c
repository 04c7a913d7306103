/* UDP forwards (proxy/udp_tunnel.c) over the real netstack, with the mesh
 * peer played by hand-made datagrams (px_udp_test.h) and loopback sockets
 * on the host side. Proves: a client tunnel gives each local sender its own
 * mesh port and returns the target's answers (only the target's) to it; a
 * server tunnel gives each mesh sender (IPv4 and IPv6) its own host socket
 * and returns the target's answers from the listened port; flows expire
 * when idle; at MaxFlows the least recently used flow is evicted; free
 * closes the mesh ports; bad targets and taken ports fail with a message. */
#include "px_udp_test.h"

static struct px_env tenv;

static size_t mesh_names(void *ctx, const char *name, struct ns_addr *out, size_t max)
{
	if (strcasecmp(name, "dns") == 0 && max > 0) {
		assert_true(ns_addr_parse(&out[0], PEER4));
		return 1;
	}
	return 0;
}

static int tsetup(void **state)
{
	log_set_level(LOG_ERROR);
	setup(state);
	tenv = (struct px_env){.base = base, .resolve_mesh = mesh_names};
	return 0;
}

/* The local port of a client tunnel, from its description. */
static uint16_t client_port(const struct px_udp_tunnel *t)
{
	char d[200];
	px_udp_tunnel_describe(t, d, sizeof(d));
	const char *p = strstr(d, "127.0.0.1:");
	assert_non_null(p);
	return (uint16_t)atoi(p + 10);
}

static struct px_udp_tunnel *client_new(const char *target, uint32_t max_flows,
                                        uint32_t idle_ms)
{
	struct cfg_udp_client_tunnel c = {.bind = loopback_listen(),
	                                  .target_host = (char *)target,
	                                  .target_port = 53,
	                                  .idle_timeout_ms = idle_ms,
	                                  .max_flows = max_flows};
	char err[200];
	struct px_udp_tunnel *t = px_udp_client_tunnel_new(&tenv, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	return t;
}

/* Sends q from fd through the tunnel; the datagram lwIP sends for it. */
static void client_query(struct px_udp_tunnel *t, int fd, const char *q,
                         struct mesh_dgram *m)
{
	host_sendto(fd, client_port(t), q, strlen(q));
	assert_true(mesh_udp_out(m, 1000));
	struct ns_addr peer;
	assert_true(ns_addr_parse(&peer, PEER4));
	assert_int_equal(m->fam, AF_INET);
	assert_memory_equal(m->dst, peer.addr, 4);
	assert_int_equal(m->dport, 53);
	assert_int_equal(m->len, strlen(q));
	assert_memory_equal(m->data, q, m->len);
}

static void test_client_tunnel_flows_and_answers(void **state)
{
	struct px_udp_tunnel *t = client_new("dns", 0, 0); /* a mesh name */
	char d[200];
	px_udp_tunnel_describe(t, d, sizeof(d));
	assert_non_null(strstr(d, "udp-client 127.0.0.1:"));
	assert_non_null(strstr(d, "-> 100.64.0.2:53 (0 flows)"));
	int a = host_udp(NULL), b = host_udp(NULL);
	struct mesh_dgram ma, mb, m2;
	client_query(t, a, "query-a", &ma);
	client_query(t, b, "query-b", &mb);
	assert_int_not_equal(ma.sport, mb.sport); /* a mesh port per sender */
	client_query(t, a, "again-a", &m2);
	assert_int_equal(m2.sport, ma.sport); /* the same flow */
	px_udp_tunnel_describe(t, d, sizeof(d));
	assert_non_null(strstr(d, "(2 flows)"));

	/* answers go to their own sender */
	uint8_t buf[100];
	mesh_udp_in(PEER4, 53, OUR4, mb.sport, "answer-b", 8);
	assert_int_equal(host_recv(b, buf, sizeof(buf), NULL, 1000), 8);
	assert_memory_equal(buf, "answer-b", 8);
	mesh_udp_in(PEER4, 53, OUR4, ma.sport, "answer-a", 8);
	assert_int_equal(host_recv(a, buf, sizeof(buf), NULL, 1000), 8);
	assert_memory_equal(buf, "answer-a", 8);
	/* only the target answers: another port of the peer is dropped */
	mesh_udp_in(PEER4, 54, OUR4, ma.sport, "spoof", 5);
	assert_int_equal(host_recv(a, buf, sizeof(buf), NULL, 100), -1);

	struct px_stats st;
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.accepted, 2);
	assert_int_equal(st.active, 2);
	assert_int_equal(st.dgrams_up, 3);
	assert_int_equal(st.bytes_up, 21);
	assert_int_equal(st.dgrams_down, 2);
	assert_int_equal(st.bytes_down, 16);
	assert_int_equal(st.dgram_drops, 1);
	px_udp_tunnel_free(t);
	/* the flows' mesh ports are closed: no answer reaches anyone */
	mesh_udp_in(PEER4, 53, OUR4, ma.sport, "late", 4);
	assert_int_equal(host_recv(a, buf, sizeof(buf), NULL, 50), -1);
	close(a);
	close(b);
}

static void test_client_tunnel_idle_and_eviction(void **state)
{
	struct px_udp_tunnel *t = client_new(PEER4, 2, 300);
	int s[3];
	struct mesh_dgram m[3];
	for (int i = 0; i < 3; i++) {
		s[i] = host_udp(NULL);
		client_query(t, s[i], "q", &m[i]);
	}
	struct px_stats st;
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.accepted, 3);
	assert_int_equal(st.active, 2);    /* MaxFlows = 2 */
	assert_int_equal(st.err_limit, 1); /* the first sender was evicted */
	uint8_t buf[16];
	mesh_udp_in(PEER4, 53, OUR4, m[0].sport, "x", 1);
	assert_int_equal(host_recv(s[0], buf, sizeof(buf), NULL, 50), -1);
	mesh_udp_in(PEER4, 53, OUR4, m[2].sport, "y", 1);
	assert_int_equal(host_recv(s[2], buf, sizeof(buf), NULL, 500), 1);
	/* IdleTimeout 300 ms: both flows go */
	spin_ms(800);
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.active, 0);
	/* and a new datagram makes a new flow */
	struct mesh_dgram again;
	client_query(t, s[2], "q2", &again);
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.active, 1);
	assert_int_equal(st.accepted, 4);
	px_udp_tunnel_free(t);
	for (int i = 0; i < 3; i++)
		close(s[i]);
}

static void test_client_tunnel_bad_config(void **state)
{
	char err[200];
	struct cfg_udp_client_tunnel c = {.bind = loopback_listen(),
	                                  .target_host = "no-such-host.invalid",
	                                  .target_port = 53};
	assert_null(px_udp_client_tunnel_new(&tenv, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "no-such-host.invalid"));
	c.target_host = NULL;
	assert_null(px_udp_client_tunnel_new(&tenv, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "no target"));
	/* a taken local port */
	uint16_t port;
	int fd = host_udp(&port);
	c.target_host = PEER4;
	((struct sockaddr_in *)&c.bind.addr)->sin_port = htons(port);
	assert_null(px_udp_client_tunnel_new(&tenv, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "in use"));
	close(fd);
}

/* ---- server tunnel ---- */

static struct px_udp_tunnel *server_new(uint16_t listen, uint16_t target, uint32_t max)
{
	struct cfg_udp_server_tunnel c = {.listen_port = listen,
	                                  .target_host = "127.0.0.1",
	                                  .target_port = target,
	                                  .max_flows = max};
	char err[200];
	struct px_udp_tunnel *t = px_udp_server_tunnel_new(&tenv, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	return t;
}

static void test_server_tunnel_v4_v6_senders(void **state)
{
	uint16_t tport;
	int target = host_udp(&tport);
	struct px_udp_tunnel *t = server_new(5353, tport, 0);
	char d[200];
	px_udp_tunnel_describe(t, d, sizeof(d));
	char want[100];
	snprintf(want, sizeof(want), "udp-server mesh:5353 -> 127.0.0.1:%u (0 flows)",
	         tport);
	assert_string_equal(d, want);

	uint8_t buf[100];
	uint16_t from4 = 0, from6 = 0, again = 0;
	mesh_udp_in(PEER4, 40000, OUR4, 5353, "hello4", 6);
	assert_int_equal(host_recv(target, buf, sizeof(buf), &from4, 1000), 6);
	assert_memory_equal(buf, "hello4", 6);
	mesh_udp_in(PEER6, 40000, OUR6, 5353, "hello6", 6);
	assert_int_equal(host_recv(target, buf, sizeof(buf), &from6, 1000), 6);
	assert_memory_equal(buf, "hello6", 6);
	assert_int_not_equal(from4, from6); /* a host socket per mesh sender */
	mesh_udp_in(PEER4, 40000, OUR4, 5353, "more4", 5);
	assert_int_equal(host_recv(target, buf, sizeof(buf), &again, 1000), 5);
	assert_int_equal(again, from4);

	/* answers leave from the listened port to their mesh sender */
	struct mesh_dgram m;
	host_sendto(target, from6, "reply6", 6);
	assert_true(mesh_udp_out(&m, 1000));
	struct ns_addr p6;
	assert_true(ns_addr_parse(&p6, PEER6));
	assert_int_equal(m.fam, AF_INET6);
	assert_memory_equal(m.dst, p6.addr, 16);
	assert_int_equal(m.sport, 5353);
	assert_int_equal(m.dport, 40000);
	assert_int_equal(m.len, 6);
	assert_memory_equal(m.data, "reply6", 6);
	host_sendto(target, from4, "reply4", 6);
	assert_true(mesh_udp_out(&m, 1000));
	assert_int_equal(m.fam, AF_INET);
	assert_int_equal(m.sport, 5353);
	assert_memory_equal(m.data, "reply4", 6);

	struct px_stats st;
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.accepted, 2);
	assert_int_equal(st.active, 2);
	assert_int_equal(st.dgrams_up, 3);
	assert_int_equal(st.bytes_up, 17);
	assert_int_equal(st.dgrams_down, 2);
	assert_int_equal(st.bytes_down, 12);

	/* the port is taken while the tunnel lives, free again after */
	char err[200];
	struct cfg_udp_server_tunnel c = {
	    .listen_port = 5353, .target_host = "127.0.0.1", .target_port = tport};
	assert_null(px_udp_server_tunnel_new(&tenv, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "5353"));
	px_udp_tunnel_free(t);
	cap_clear();
	mesh_udp_in(PEER4, 40000, OUR4, 5353, "gone", 4);
	assert_int_equal(host_recv(target, buf, sizeof(buf), NULL, 50), -1);
	t = server_new(5353, tport, 0);
	px_udp_tunnel_free(t);
	close(target);
}

static void test_server_tunnel_max_flows(void **state)
{
	uint16_t tport;
	int target = host_udp(&tport);
	struct px_udp_tunnel *t = server_new(7000, tport, 3);
	uint8_t buf[16];
	for (uint16_t p = 1; p <= 5; p++) {
		mesh_udp_in(PEER4, (uint16_t)(30000 + p), OUR4, 7000, "x", 1);
		assert_int_equal(host_recv(target, buf, sizeof(buf), NULL, 1000), 1);
	}
	struct px_stats st;
	px_udp_tunnel_get_stats(t, &st);
	assert_int_equal(st.accepted, 5);
	assert_int_equal(st.active, 3);
	assert_int_equal(st.err_limit, 2);
	px_udp_tunnel_free(t);
	close(target);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_client_tunnel_flows_and_answers, tsetup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_client_tunnel_idle_and_eviction, tsetup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_client_tunnel_bad_config, tsetup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_server_tunnel_v4_v6_senders, tsetup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_server_tunnel_max_flows, tsetup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
