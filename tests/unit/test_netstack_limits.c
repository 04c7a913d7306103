/* Limits against a hostile mesh peer (netstack/limits.c): each source's
 * share of the half-open handshakes, the per-source connection cap, and
 * the memory budget (refusals, windows that stay nearly closed, the small
 * window before the splice), driven by the hand-rolled mesh peer of
 * ns_test_peer.h. */
#include "ns_test_peer.h"

#include "lwip/priv/tcp_priv.h"

/* Sets the peer's source address to 100.64.0.N. */
static void peer_from(struct peer *pr, uint8_t n)
{
	pr->me[3] = n;
}

/* Frees the captured packets; returns how many were SYN-ACKs and sets
 * *rsts to how many were resets (rsts may be NULL). */
static unsigned count_synacks(unsigned *rsts)
{
	struct pkt *k;
	struct seg s;
	unsigned n = 0;

	while ((k = cap_pop()) != NULL) {
		if (parse(k, &s) && s.flags == (F_SYN | F_ACK))
			n++;
		else if (rsts != NULL && (s.flags & F_RST))
			(*rsts)++;
		free(k);
	}
	return n;
}

/* 4096 SYNs from peer A fill A's share (half the stack while nobody else
 * competes), not the stack: a SYN from B still gets its SYN-ACK (review:
 * one global cap let 205 SYN/s from any peer block every inbound accept). */
static void test_half_open_share_per_source(void **state)
{
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	unsigned i, n = 0;

	(void)state;
	assert_int_equal(ns_tcp_listen(88, on_accept, &acc), 0);
	for (i = 0; i < NS_TCP_HALF_OPEN_MAX; i++) {
		peer_init(&pr, AF_INET, 88);
		peer_from(&pr, 2);
		pr.port = (uint16_t)(10000 + i);
		peer_send(&pr, F_SYN, NULL, 0);
		n += count_synacks(NULL);
		peer_free(&pr);
		if (i % 512 == 0)
			ns_check_timeouts(); /* the recount keeps the shares exact */
	}
	peer_init(&pr, AF_INET, 88);
	peer_from(&pr, 3);
	peer_send(&pr, F_SYN, NULL, 0);
	assert_int_equal(count_synacks(NULL), 1); /* B is not blocked by A */
	peer_free(&pr);
	/* A alone got half the stack's handshakes, then no more. */
	assert_int_equal(n, NS_TCP_HALF_OPEN_MAX / 2);
	ns_get_stats(&st);
	assert_int_equal(st.syn_drop_src, NS_TCP_HALF_OPEN_MAX / 2);
	assert_int_equal(st.tcp_syn_drop, st.syn_drop_src);
	/* A's handshakes time out: A's share comes back. */
	for (i = 0; i < 25000 / TCP_TMR_INTERVAL; i++) {
		ns_clock_offset_ms += TCP_TMR_INTERVAL;
		ns_check_timeouts();
		cap_clear();
	}
	assert_int_equal(ns_tcp_half_open, 0);
	peer_init(&pr, AF_INET, 88);
	peer_from(&pr, 2);
	peer_send(&pr, F_SYN, NULL, 0);
	assert_int_equal(count_synacks(NULL), 1);
	peer_free(&pr);
}

/* Runs the handshake from pr; true when accepted, false when the final ACK
 * was answered with RST (refused at accept). */
static bool handshake_ok(struct peer *pr, struct accepted *acc)
{
	struct pkt *k;
	struct seg s;
	unsigned rsts = 0;

	memset(acc, 0, sizeof(*acc));
	peer_send(pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN | F_ACK);
	peer_take(pr, &s);
	free(k);
	peer_send(pr, F_ACK, NULL, 0);
	(void)count_synacks(&rsts);
	if (acc->calls == 1)
		return true;
	assert_int_equal(rsts, 1);
	return false;
}

/* Inbound connections from one source stop at max_conns_per_src (RST,
 * counted); another source is not affected, and a closed connection gives
 * its place back. */
static void test_conns_per_source_cap(void **state)
{
	struct ns_limits l = {.mem_limit = 0, .max_conns_per_src = 3};
	struct ns_tcp *a[3];
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	int i;

	(void)state;
	ns_set_limits(&l);
	assert_int_equal(ns_tcp_listen(89, on_accept, &acc), 0);
	for (i = 0; i < 3; i++) {
		peer_init(&pr, AF_INET, 89);
		peer_from(&pr, 2);
		assert_true(handshake_ok(&pr, &acc));
		a[i] = acc.c;
		peer_free(&pr);
	}
	peer_init(&pr, AF_INET, 89);
	peer_from(&pr, 2);
	assert_false(handshake_ok(&pr, &acc));
	peer_free(&pr);
	peer_init(&pr, AF_INET, 89);
	peer_from(&pr, 3);
	assert_true(handshake_ok(&pr, &acc));
	ns_tcp_abort(acc.c);
	cap_clear();
	peer_free(&pr);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_refused_peer, 1);
	ns_tcp_abort(a[0]);
	cap_clear();
	peer_init(&pr, AF_INET, 89);
	peer_from(&pr, 2);
	assert_true(handshake_ok(&pr, &acc));
	ns_tcp_abort(acc.c);
	cap_clear();
	peer_free(&pr);
	ns_tcp_abort(a[1]);
	ns_tcp_abort(a[2]);
	cap_clear();
	l.max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT;
	ns_set_limits(&l);
}

/* Until the splice an accepted connection offers NS_WND_PRESPLICE, not the
 * compiled 1 MiB: a peer cannot park a full window per connection while
 * the local side is being dialled. The splice opens it. */
static void test_window_small_until_splice(void **state)
{
	struct accepted acc;
	struct peer pr;
	uint8_t data[1000];
	int sv[2];

	(void)state;
	memset(data, 'x', sizeof(data));
	assert_int_equal(ns_tcp_listen(90, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 90);
	handshake_in(&pr, &acc);
	peer_send(&pr, F_ACK | F_PSH, data, sizeof(data));
	ns_clock_offset_ms += 500; /* the delayed ACK */
	ns_check_timeouts();
	peer_poll(&pr, false);
	assert_true(pr.wnd > 0);
	assert_true(pr.wnd <= NS_WND_PRESPLICE);
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[1], NULL, 0), 0);
	for (int i = 0; i < 50 && pr.wnd <= NS_WND_PRESPLICE; i++) {
		spin_ms(1);
		ns_clock_offset_ms += 500;
		ns_check_timeouts();
		peer_poll(&pr, false);
	}
	assert_true(pr.wnd > 512 * 1024);
	close(sv[0]);
	peer_free(&pr);
}

/* Go-back-N from the peer: everything unacknowledged again, as far as the
 * window allows, in 1000-byte segments of data (iss: the first byte's
 * sequence number). Returns the offset reached. */
static size_t push_window(struct peer *pr, uint32_t iss, const uint8_t *data, size_t len)
{
	size_t off = pr->snd_una - iss;

	pr->snd_nxt = pr->snd_una;
	while (off + 1000 <= len && pr->snd_nxt - pr->snd_una + 1000 <= pr->wnd) {
		peer_send(pr, F_ACK | F_PSH, data + off, 1000);
		off += 1000;
	}
	ns_clock_offset_ms += 20; /* the delayed ACK */
	ns_check_timeouts();
	peer_poll(pr, false);
	return off;
}

/* Over the budget: new inbound connections and proxy clients are refused,
 * a connection whose reader is stuck holds no more than NS_MEM_FLOOR and
 * a segment, its window stays near NS_MEM_FLOOR, and it opens when the
 * budget has room again. */
static void test_budget_over(void **state)
{
	struct ns_limits l = {.mem_limit = NS_MEM_LIMIT_MIN,
	                      .max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT};
	static uint8_t data[512 * 1024], sink[256 * 1024];
	struct accepted acc;
	struct ns_stats st;
	struct ns_tcp *c;
	struct peer pr, pb;
	int sv[2], sz = 4096;
	uint32_t iss;
	size_t got = 0;

	(void)state;
	memset(data, 'y', sizeof(data));
	ns_set_limits(&l);
	assert_true(ns_mem_admit());
	assert_int_equal(ns_tcp_listen(91, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 91);
	c = handshake_in(&pr, &acc);
	iss = pr.snd_nxt;

	ns_mem_charge(NS_MEM_LIMIT_MIN); /* a proxy's buffers fill the budget */
	assert_true(ns_mem_over());
	assert_false(ns_mem_admit());
	peer_init(&pb, AF_INET, 91);
	peer_from(&pb, 3);
	assert_false(handshake_ok(&pb, &acc));
	peer_free(&pb);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_refused_mem, 1);
	assert_int_equal(st.front_refused_mem, 1);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start(c, sv[1], NULL, 0), 0);
	/* The peer pushes at a reader that does not read. */
	for (int round = 0; round < 100; round++)
		push_window(&pr, iss, data, sizeof(data));
	assert_true(ns_debug_rxq_bytes() <= NS_MEM_FLOOR + 2000);
	assert_true(pr.wnd <= NS_MEM_FLOOR + 2000);
	ns_get_stats(&st);
	assert_true(st.mem_used >= NS_MEM_LIMIT_MIN);

	/* The proxy lets go: the reader drains, the window opens wide. */
	ns_mem_uncharge(NS_MEM_LIMIT_MIN);
	assert_false(ns_mem_over());
	for (int round = 0; round < 400 && pr.wnd <= 256 * 1024; round++) {
		ssize_t r = read(sv[0], sink, sizeof(sink));

		if (r > 0)
			got += (size_t)r;
		spin_ms(1);
		push_window(&pr, iss, data, sizeof(data));
	}
	assert_true(got > 0);
	assert_true(pr.wnd > 256 * 1024);
	assert_true(ns_mem_admit());
	close(sv[0]);
	peer_free(&pr);
	l.mem_limit = 0;
	ns_set_limits(&l);
}

/* Tiny segments are charged for their pbufs, not only their bytes. */
static void test_budget_charges_pbufs(void **state)
{
	struct accepted acc;
	struct peer pr;
	int sv[2];
	size_t before;

	(void)state;
	assert_int_equal(ns_tcp_listen(92, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 92);
	handshake_in(&pr, &acc);
	before = ns_mem_used();
	for (int i = 0; i < 100; i++)
		peer_send(&pr, F_ACK | F_PSH, "z", 1);
	assert_true(ns_mem_used() >= before + 100 * (1 + NS_PBUF_OVERHEAD));
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[1], NULL, 0), 0);
	spin_ms(2);
	assert_int_equal(ns_mem_used(), before);
	close(sv[0]);
	peer_free(&pr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_half_open_share_per_source, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_conns_per_source_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_window_small_until_splice, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_budget_over, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_budget_charges_pbufs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
