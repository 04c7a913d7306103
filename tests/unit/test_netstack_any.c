/* Any-port accept (ns_tcp_listen_any) and local UDP services
 * (ns_local_udp_*), driven by the hand-rolled mesh peer of ns_test_peer.h. */
#include "ns_test_peer.h"

/* ---- any-port accept ---- */

static bool filter_even(void *ctx, uint16_t dport)
{
	int *calls = ctx;

	(*calls)++;
	return dport % 2 == 0;
}

static bool filter_none(void *ctx, uint16_t dport)
{
	(void)ctx;
	(void)dport;
	return false;
}

static struct accepted any_acc;
static void on_any(void *ctx, struct ns_tcp *c, const struct ns_addr *src, uint16_t sport,
                   uint16_t dport)
{
	(void)ctx;
	on_accept(&any_acc, c, src, sport, dport);
}

/* A SYN to port from a fresh peer: true when answered with SYN-ACK, false
 * when with RST. */
static bool syn_answered(struct peer *pr, int fam, uint16_t port)
{
	struct pkt *k;
	struct seg s;
	bool ok;

	peer_init(pr, fam, port);
	peer_send(pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.dport, pr->port);
	ok = s.flags == (F_SYN | F_ACK);
	if (!ok)
		assert_true(s.flags & F_RST);
	else
		peer_take(pr, &s);
	free(k);
	assert_int_equal(cap_n, 0);
	return ok;
}

static void test_any_accepts_arbitrary_ports(void **state)
{
	static const uint16_t ports[] = {2, 22, 8080, 40000, 65534};
	int calls = 0, sv[2];
	struct peer pr;
	struct ns_addr a;
	uint16_t lport;
	uint8_t buf[16];

	(void)state;
	assert_int_equal(ns_tcp_listen_any(filter_even, on_any, &calls), 0);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		int fam = i % 2 ? AF_INET6 : AF_INET;

		peer_init(&pr, fam, ports[i]);
		handshake_in(&pr, &any_acc);
		assert_int_equal(any_acc.dport, ports[i]);
		assert_int_equal(any_acc.sport, pr.port);
		assert_int_equal(any_acc.src.family, fam);
		ns_tcp_local(any_acc.c, &a, &lport);
		assert_int_equal(lport, ports[i]);
		assert_int_equal(a.family, fam);
		assert_memory_equal(a.addr, pr.it, fam == AF_INET ? 4 : 16);
		ns_tcp_abort(any_acc.c);
		peer_poll(&pr, false);
		assert_true(pr.got_rst);
		peer_free(&pr);
	}
	/* Odd ports: the filter says no, the SYN gets a RST. */
	assert_false(syn_answered(&pr, AF_INET, 23));
	assert_false(syn_answered(&pr, AF_INET6, 8081));
	assert_true(calls >= 7);

	/* Data both ways through a splice on an any-port connection. */
	peer_init(&pr, AF_INET, 3000);
	handshake_in(&pr, &any_acc);
	nonblock_pair(sv);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start(any_acc.c, sv[1], NULL, 0), 0);
	peer_send(&pr, F_ACK | F_PSH, "ping", 4);
	assert_int_equal(read_all(sv[0], buf, sizeof(buf), 200), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(sv[0], "pong", 4), 4);
	for (int i = 0; i < 200 && pr.rx_len < 4; i++) {
		spin_ms(1);
		peer_poll(&pr, true);
	}
	assert_int_equal(pr.rx_len, 4);
	assert_memory_equal(pr.rx, "pong", 4);
	close(sv[0]);
	peer_free(&pr);
}

static void test_any_specific_listener_wins(void **state)
{
	struct accepted spec;
	int calls = 0;
	struct peer pr;

	(void)state;
	assert_int_equal(ns_tcp_listen_any(filter_even, on_any, &calls), 0);
	/* Port 4000 first gets an on-demand listener ... */
	peer_init(&pr, AF_INET, 4000);
	handshake_in(&pr, &any_acc);
	ns_tcp_abort(any_acc.c);
	cap_clear();
	peer_free(&pr);
	/* ... which a specific listener takes over. */
	assert_int_equal(ns_tcp_listen(4000, on_accept, &spec), 0);
	assert_int_equal(ns_tcp_listen(4002, on_accept, &spec), 0);
	memset(&any_acc, 0, sizeof(any_acc));
	for (uint16_t port = 4000; port <= 4002; port += 2) {
		peer_init(&pr, AF_INET, port);
		handshake_in(&pr, &spec);
		assert_int_equal(spec.dport, port);
		assert_int_equal(any_acc.calls, 0);
		ns_tcp_abort(spec.c);
		cap_clear();
		peer_free(&pr);
	}
	/* Unlistened: back to the any-port handler. */
	ns_tcp_unlisten(4000);
	peer_init(&pr, AF_INET6, 4000);
	handshake_in(&pr, &any_acc);
	assert_int_equal(any_acc.dport, 4000);
	ns_tcp_abort(any_acc.c);
	cap_clear();
	peer_free(&pr);
	/* A specific listener on a port the filter refuses still works. */
	assert_int_equal(ns_tcp_listen(4001, on_accept, &spec), 0);
	peer_init(&pr, AF_INET, 4001);
	handshake_in(&pr, &spec);
	ns_tcp_abort(spec.c);
	cap_clear();
	peer_free(&pr);
}

static void test_any_removed_and_filter_changed(void **state)
{
	int calls = 0;
	struct peer pr;

	(void)state;
	/* Without a handler nothing changes: RST. */
	assert_false(syn_answered(&pr, AF_INET, 5000));
	assert_int_equal(ns_tcp_listen_any(filter_even, on_any, &calls), 0);
	peer_init(&pr, AF_INET, 5000);
	handshake_in(&pr, &any_acc);
	ns_tcp_abort(any_acc.c);
	cap_clear();
	/* The listener made for 5000 asks the new filter on the next SYN. */
	assert_int_equal(ns_tcp_listen_any(filter_none, on_any, NULL), 0);
	assert_false(syn_answered(&pr, AF_INET, 5000));
	assert_false(syn_answered(&pr, AF_INET, 5002));
	/* NULL filter: every port. */
	assert_int_equal(ns_tcp_listen_any(NULL, on_any, NULL), 0);
	peer_init(&pr, AF_INET, 5001);
	handshake_in(&pr, &any_acc);
	ns_tcp_abort(any_acc.c);
	cap_clear();
	/* Removed: RST again, also on ports that had a listener. */
	assert_int_equal(ns_tcp_listen_any(NULL, NULL, NULL), 0);
	assert_false(syn_answered(&pr, AF_INET, 5001));
	assert_false(syn_answered(&pr, AF_INET6, 5004));
	/* A half-open handshake loses its listener with the handler. */
	assert_int_equal(ns_tcp_listen_any(NULL, on_any, NULL), 0);
	memset(&any_acc, 0, sizeof(any_acc));
	assert_true(syn_answered(&pr, AF_INET, 5006));
	assert_int_equal(ns_tcp_listen_any(NULL, NULL, NULL), 0);
	peer_send(&pr, F_ACK, NULL, 0);
	assert_int_equal(any_acc.calls, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	peer_free(&pr);
	/* Not without a stack. */
	ns_shutdown();
	assert_int_equal(ns_tcp_listen_any(NULL, on_any, NULL), -ENETDOWN);
	cap_clear();
	event_base_free(base);
	setup(state);
}

/* ---- local UDP services ---- */

#define SVC4 "100.100.100.100"
#define SVC6 "fd7a:115c:a1e0::53"

struct svc_got {
	int calls;
	struct ns_addr src;
	uint16_t sport;
	uint8_t data[64];
	size_t len;
	bool reply;
	int reply_err;
	struct ns_addr addr;
	uint16_t port;
};
static bool in_send;
static int inside_send;

static void on_svc(void *ctx, const struct ns_addr *src, uint16_t sport,
                   const uint8_t *data, size_t len)
{
	struct svc_got *g = ctx;

	if (in_send)
		inside_send++;
	g->calls++;
	g->src = *src;
	g->sport = sport;
	g->len = len < sizeof(g->data) ? len : sizeof(g->data);
	memcpy(g->data, data, g->len);
	if (g->reply)
		g->reply_err = ns_local_udp_reply(&g->addr, g->port, src, sport,
		                                  (const uint8_t *)"answer", 6);
}

struct udp_rx {
	int calls;
	struct ns_addr src, dst;
	uint16_t sport;
	uint8_t data[64];
	size_t len;
};

static void on_udp_rx(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                      uint16_t sport, const struct ns_addr *dst, const uint8_t *data,
                      size_t len)
{
	struct udp_rx *r = ctx;

	(void)u;
	r->calls++;
	r->src = *src;
	r->dst = *dst;
	r->sport = sport;
	r->len = len < sizeof(r->data) ? len : sizeof(r->data);
	memcpy(r->data, data, r->len);
}

static void svc_round_trip(const char *svc_s, const char *our_s)
{
	struct svc_got g = {0};
	struct udp_rx rx = {0};
	struct ns_addr svc, our;
	struct ns_udp *u;
	int err;

	assert_true(ns_addr_parse(&svc, svc_s));
	assert_true(ns_addr_parse(&our, our_s));
	g.reply = true;
	g.addr = svc;
	g.port = 53;
	assert_int_equal(ns_local_udp_set(&svc, 53, on_svc, &g), 0);
	u = ns_udp_open(0, on_udp_rx, &rx, &err);
	assert_non_null(u);
	in_send = true;
	assert_int_equal(ns_udp_send(u, &svc, 53, (const uint8_t *)"query", 5), 0);
	in_send = false;
	assert_int_equal(cap_n, 0); /* never to the output callback */
	assert_int_equal(g.calls, 0);
	for (int i = 0; i < 100 && rx.calls == 0; i++)
		spin_ms(1);
	assert_int_equal(inside_send, 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.len, 5);
	assert_memory_equal(g.data, "query", 5);
	assert_int_equal(g.src.family, our.family);
	assert_memory_equal(g.src.addr, our.addr, 16);
	assert_int_equal(g.sport, ns_udp_port(u));
	assert_int_equal(g.reply_err, 0);
	/* The reply comes from the service address and port. */
	assert_int_equal(rx.calls, 1);
	assert_int_equal(rx.len, 6);
	assert_memory_equal(rx.data, "answer", 6);
	assert_int_equal(rx.src.family, svc.family);
	assert_memory_equal(rx.src.addr, svc.addr, 16);
	assert_int_equal(rx.sport, 53);
	assert_memory_equal(rx.dst.addr, our.addr, 16);
	assert_int_equal(cap_n, 0);
	/* Another port of the service address goes out as before. */
	assert_int_equal(ns_udp_send(u, &svc, 54, (const uint8_t *)"x", 1), 0);
	assert_int_equal(cap_n, 1);
	cap_clear();
	/* Removed: datagrams go to the output callback. */
	assert_int_equal(ns_local_udp_set(&svc, 53, NULL, NULL), 0);
	assert_false(ns_local_udp_is(&svc));
	assert_int_equal(ns_udp_send(u, &svc, 53, (const uint8_t *)"query", 5), 0);
	assert_int_equal(cap_n, 1);
	cap_clear();
	spin_ms(2);
	assert_int_equal(g.calls, 1);
	ns_udp_close(u);
}

static void test_local_udp_round_trip_v4(void **state)
{
	(void)state;
	svc_round_trip(SVC4, OUR4);
}

static void test_local_udp_round_trip_v6(void **state)
{
	(void)state;
	svc_round_trip(SVC6, OUR6);
}

static void test_local_udp_is_and_limits(void **state)
{
	struct svc_got g = {0};
	struct ns_addr svc, mapped, other, our4, our6, peer;
	uint8_t big[70000] = {0};

	(void)state;
	assert_true(ns_addr_parse(&svc, SVC4));
	assert_true(ns_addr_parse(&mapped, "::ffff:100.100.100.100"));
	assert_true(ns_addr_parse(&other, "100.100.100.101"));
	assert_true(ns_addr_parse(&our4, OUR4));
	assert_true(ns_addr_parse(&our6, OUR6));
	assert_true(ns_addr_parse(&peer, PEER4));
	assert_false(ns_local_udp_is(&svc));
	assert_int_equal(ns_local_udp_set(&svc, 53, on_svc, &g), 0);
	assert_true(ns_local_udp_is(&svc));
	assert_true(ns_local_udp_is(&mapped));
	assert_false(ns_local_udp_is(&other));
	assert_false(ns_local_udp_is(NULL));
	/* Replacing the handler of the same addr:port takes no new slot. */
	assert_int_equal(ns_local_udp_set(&mapped, 53, on_svc, &g), 0);
	assert_int_equal(ns_local_udp_set(&svc, 5353, on_svc, &g), 0);
	assert_int_equal(ns_local_udp_set(&other, 53, on_svc, &g), 0);
	assert_int_equal(ns_local_udp_set(&other, 54, on_svc, &g), 0);
	assert_int_equal(ns_local_udp_set(&other, 55, on_svc, &g), -ENOSPC);
	assert_int_equal(ns_local_udp_set(&svc, 0, on_svc, &g), -EINVAL);
	assert_int_equal(ns_local_udp_set(NULL, 53, on_svc, &g), -EINVAL);
	/* Removing what is not there is fine. */
	assert_int_equal(ns_local_udp_set(&other, 99, NULL, NULL), 0);
	/* Replies: to one of our addresses, same family, sane size. */
	assert_int_equal(ns_local_udp_reply(&svc, 53, &peer, 1000, big, 1),
	                 -EADDRNOTAVAIL);
	assert_int_equal(ns_local_udp_reply(&svc, 53, &our6, 1000, big, 1),
	                 -EAFNOSUPPORT);
	assert_int_equal(ns_local_udp_reply(&svc, 53, &our4, 1000, big, sizeof(big)),
	                 -EMSGSIZE);
	assert_int_equal(ns_local_udp_reply(&svc, 53, &our4, 0, big, 1), -EINVAL);
	/* To a port nobody bound: lwIP answers with port unreachable, later. */
	assert_int_equal(ns_local_udp_reply(&svc, 53, &our4, 1000, big, 1), 0);
	assert_int_equal(cap_n, 0);
	spin_ms(2);
	cap_clear();
	assert_int_equal(ns_local_udp_set(&svc, 53, NULL, NULL), 0);
	assert_true(ns_local_udp_is(&svc)); /* 5353 is still there */
	assert_int_equal(ns_local_udp_set(&svc, 5353, NULL, NULL), 0);
	assert_false(ns_local_udp_is(&svc));
	assert_int_equal(ns_local_udp_set(&other, 53, NULL, NULL), 0);
	assert_int_equal(ns_local_udp_set(&other, 54, NULL, NULL), 0);
	assert_false(ns_local_udp_is(&other));
}

/* Datagrams queued for a service when the stack goes down are dropped. */
static void test_local_udp_pending_at_shutdown(void **state)
{
	struct svc_got g = {0};
	struct udp_rx rx = {0};
	struct ns_addr svc;
	struct ns_udp *u;
	int err;

	assert_true(ns_addr_parse(&svc, SVC4));
	assert_int_equal(ns_local_udp_set(&svc, 53, on_svc, &g), 0);
	u = ns_udp_open(0, on_udp_rx, &rx, &err);
	assert_non_null(u);
	assert_int_equal(ns_udp_send(u, &svc, 53, (const uint8_t *)"q", 1), 0);
	ns_shutdown();
	ns_udp_close(u);
	cap_clear();
	event_base_free(base);
	setup(state);
	spin_ms(2);
	assert_int_equal(g.calls, 0);
	assert_int_equal(ns_local_udp_set(&svc, 53, NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_any_accepts_arbitrary_ports, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_any_specific_listener_wins, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_any_removed_and_filter_changed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_local_udp_round_trip_v4, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_local_udp_round_trip_v6, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_local_udp_is_and_limits, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_local_udp_pending_at_shutdown, setup,
	                                    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
