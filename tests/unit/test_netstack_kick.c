/* ns_tcp_path_changed (netstack/kick.c): after a peer's path changed, its
 * stalled connections retransmit at once with their backoff reset, the
 * others of that peer ACK, and no other peer's connection is touched.
 * Real lwIP against the hand-rolled TCP peer of ns_test_peer.h; segments
 * "lost on the old path" are captured and thrown away. */
#include "ns_test_peer.h"

/* The remote address ns_tcp_path_changed asks about must be this one. */
struct match_ctx {
	struct ns_addr want;
	unsigned calls;
};

static bool match_addr(void *ctx, const struct ns_addr *remote)
{
	struct match_ctx *m = ctx;

	m->calls++;
	return remote->family == m->want.family &&
	       memcmp(remote->addr, m->want.addr, remote->family == AF_INET ? 4 : 16) ==
	           0;
}

static void fill(uint8_t *b, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((off + i) * 11 + 3);
}

/* Writes n pattern bytes (from *off) into the local end of a splice. */
static void local_write(int fd, size_t n, uint64_t *off)
{
	static uint8_t b[8192];

	assert_true(n <= sizeof(b));
	fill(b, n, *off);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	*off += n;
}

/* Rounds of a little data, each ACKed after more than a tick, so lwIP's
 * smoothed RTT and variance come down from their initial 3 s. */
static void settle_rtt(struct peer **prs, int n, int *fds, uint64_t *offs)
{
	for (int r = 0; r < 25; r++) {
		for (int i = 0; i < n; i++)
			local_write(fds[i], 100, &offs[i]);
		spin_ms(25);
		peers_poll(prs, n, true);
	}
	spin_ms(30);
	peers_poll(prs, n, false);
}

/* Data segments captured now, per peer (by port), all taken by the peers
 * (take) or thrown away (lost on the old path). */
static void count_segs(struct peer **prs, int n, unsigned *data, unsigned *acks,
                       bool take)
{
	struct pkt *k;
	struct seg s;

	for (int i = 0; i < n; i++)
		data[i] = acks[i] = 0;
	while ((k = cap_pop()) != NULL) {
		int i;

		assert_true(parse(k, &s));
		for (i = 0; i < n; i++)
			if (s.dport == prs[i]->port && s.fam == prs[i]->fam)
				break;
		assert_true(i < n);
		if (s.dlen)
			data[i]++;
		else
			acks[i]++;
		if (take)
			peer_take(prs[i], &s);
		free(k);
	}
}

static void check_rx(const struct peer *pr, uint64_t total)
{
	assert_int_equal(pr->rx_len, total);
	for (uint64_t j = 0; j < total; j++)
		if (pr->rx[j] != (uint8_t)(j * 11 + 3))
			fail_msg("byte %llu differs", (unsigned long long)j);
}

/* Two connections (a v4 and a v6 peer) send into a dead path until lwIP
 * has backed off; the v4 peer's path changes: its connection retransmits
 * in the same call, and again soon after (the backoff starts over); the
 * v6 peer's connection sends nothing. Then the v4 peer takes the data and
 * the stream goes on intact. */
static void test_stalled_peer_retransmits_now(void **state)
{
	struct accepted acc;
	struct peer pa, pb, *prs[2] = {&pa, &pb};
	int sa[2], sb[2], fds[2];
	uint64_t offs[2] = {0, 0};
	unsigned data[2], acks[2], rexmits_seen = 0;
	struct match_ctx mc = {0};
	struct ns_kick_result r;

	(void)state;
	assert_int_equal(ns_tcp_listen(90, on_accept, &acc), 0);
	peer_init(&pa, AF_INET, 90);
	handshake_in(&pa, &acc);
	tcp_pair(sa);
	assert_int_equal(ns_splice_start(acc.c, sa[0], NULL, 0), 0);
	peer_init(&pb, AF_INET6, 90);
	handshake_in(&pb, &acc);
	tcp_pair(sb);
	assert_int_equal(ns_splice_start(acc.c, sb[0], NULL, 0), 0);
	fds[0] = sa[1];
	fds[1] = sb[1];
	settle_rtt(prs, 2, fds, offs);
	check_rx(&pa, offs[0]);
	check_rx(&pb, offs[1]);

	/* The path dies: 2 s of segments lost, retransmissions backing off. */
	local_write(sa[1], 1000, &offs[0]);
	local_write(sb[1], 1000, &offs[1]);
	for (int i = 0; i < 200; i++) {
		spin_ms(10);
		count_segs(prs, 2, data, acks, false);
		rexmits_seen += data[0];
	}
	print_message("dead path: %u sends of the v4 connection in 2 s\n", rexmits_seen);
	assert_true(rexmits_seen >= 3); /* the first send and retransmissions */

	/* The v4 peer's path changed: its data leaves in this very call. */
	assert_true(ns_addr_parse(&mc.want, PEER4));
	ns_tcp_path_changed(match_addr, &mc, false, &r);
	assert_int_equal(r.rexmit, 1);
	assert_int_equal(r.acked, 0);
	assert_true(mc.calls >= 1 && mc.calls <= 2);
	count_segs(prs, 2, data, acks, false);
	assert_true(data[0] >= 1);
	assert_int_equal(data[1] + acks[1], 0);

	/* Lost again (the far side had not switched yet): the next try comes
	 * after the first step of a fresh backoff, not seconds later. */
	int waited = 0;
	for (; waited < 500; waited += 5) {
		spin_ms(5);
		count_segs(prs, 2, data, acks, false);
		if (data[0])
			break;
	}
	print_message("next retransmission %d ms after the kick\n", waited);
	assert_true(waited < 500);

	/* The new path works: the stream goes on, every byte in order. */
	uint64_t more = offs[0] + 20000;
	for (int i = 0; i < 3000 && pa.rx_len < more; i++) {
		if (offs[0] < more && i % 10 == 0)
			local_write(sa[1], 2000, &offs[0]);
		spin_ms(5);
		count_segs(prs, 2, data, acks, true);
		peer_send(&pa, F_ACK, NULL, 0);
	}
	check_rx(&pa, more);

	close(sa[1]);
	close(sb[1]);
	spin_ms(5);
	cap_clear();
	peer_free(&pa);
	peer_free(&pb);
}

/* A connection whose ACKs come (data just sent, no timeout) is not made to
 * retransmit when its old path still works: it only ACKs what it holds,
 * because it heard from its peer lately. A connection of a peer that did
 * not change gets nothing. When the old path is dead, its data in flight
 * goes again at once. */
static void test_healthy_connection_only_acks(void **state)
{
	struct accepted acc;
	struct peer pa, *prs[1] = {&pa};
	int sa[2], fds[1];
	uint64_t offs[1] = {0};
	unsigned data[1], acks[1];
	struct match_ctx mc = {0}, other = {0};
	struct ns_kick_result r;
	struct pkt *k;
	struct seg s;

	(void)state;
	assert_int_equal(ns_tcp_listen(91, on_accept, &acc), 0);
	peer_init(&pa, AF_INET, 91);
	handshake_in(&pa, &acc);
	tcp_pair(sa);
	assert_int_equal(ns_splice_start(acc.c, sa[0], NULL, 0), 0);
	fds[0] = sa[1];
	settle_rtt(prs, 1, fds, offs);

	/* Data in flight this moment, its ACK not due yet. */
	local_write(sa[1], 3000, &offs[0]);
	spin_ms(1);
	count_segs(prs, 1, data, acks, true);
	assert_true(data[0] >= 1);

	/* Another peer's path changed: nothing. */
	assert_true(ns_addr_parse(&other.want, PEER6));
	ns_tcp_path_changed(match_addr, &other, false, &r);
	assert_int_equal(r.rexmit + r.acked, 0);
	assert_int_equal(cap_n, 0);

	/* This peer's: one pure ACK of everything received, no data again. */
	assert_true(ns_addr_parse(&mc.want, PEER4));
	ns_tcp_path_changed(match_addr, &mc, false, &r);
	assert_int_equal(r.rexmit, 0);
	assert_int_equal(r.acked, 1);
	assert_int_equal(cap_n, 1);
	k = cap_pop();
	assert_true(parse(k, &s));
	assert_int_equal(s.dlen, 0);
	assert_true(s.flags & F_ACK);
	assert_int_equal(s.ack, pa.snd_nxt);
	free(k);

	peer_send(&pa, F_ACK, NULL, 0);
	spin_ms(5);
	cap_clear();
	check_rx(&pa, offs[0]);

	/* The same connection when the old path is dead (a direct path given
	 * up for the relay): what is in flight was sent on it, so it goes
	 * again now, from the first byte not acknowledged. */
	uint32_t first = pa.rcv_nxt;
	local_write(sa[1], 3000, &offs[0]);
	spin_ms(1);
	count_segs(prs, 1, data, acks, false); /* lost on the dead path */
	assert_true(data[0] >= 1);
	ns_tcp_path_changed(match_addr, &mc, true, &r);
	assert_int_equal(r.rexmit, 1);
	assert_int_equal(r.acked, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_true(s.dlen > 0);
	assert_int_equal(s.seq, first);
	free(k);
	cap_clear();
	for (int i = 0; i < 400 && pa.rx_len < offs[0]; i++) {
		spin_ms(5);
		count_segs(prs, 1, data, acks, true);
		peer_send(&pa, F_ACK, NULL, 0);
	}
	check_rx(&pa, offs[0]);
	close(sa[1]);
	spin_ms(5);
	cap_clear();
	peer_free(&pa);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stalled_peer_retransmits_now, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_healthy_connection_only_acks, setup,
	                                    teardown),
	};

	srand(4242);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
