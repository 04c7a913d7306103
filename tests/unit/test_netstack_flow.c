/* netstack flow control and lwIP's corner cases, with the peer in
 * ns_test_peer.h. Proves: a local reader that does not read closes the
 * advertised window and the queue stays within it, then everything arrives
 * in order; a mesh peer that does not ACK stops the local socket being read,
 * then the flow resumes intact; peers that are odd but possible (zero-window
 * SYN, mid-stream MSS option, SYN with window scaling to an established
 * connection, an ACKed zero-window probe) trip no lwIP assertion; no packet
 * leaves from an address not ours; garbage
 * input is dropped and counted. */
#include "ns_test_peer.h"

static void test_slow_reader_closes_window(void **state)
{
	static uint8_t chunk[1380], got[1 << 16];
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	uint64_t sent = 0, checked = 0;
	int sv[2], idle = 0;

	(void)state;
	assert_int_equal(ns_tcp_listen(84, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 84);
	handshake_in(&pr, &acc);
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	while (idle < 100) {
		uint64_t inflight = (uint64_t)(pr.snd_nxt - pr.snd_una);
		int burst = 0;

		while (inflight + sizeof(chunk) <= pr.wnd && burst++ < 64) {
			for (size_t i = 0; i < sizeof(chunk); i++)
				chunk[i] = (uint8_t)((sent + i) * 7 + 1);
			peer_send(&pr, F_ACK, chunk, sizeof(chunk));
			sent += sizeof(chunk);
			inflight += sizeof(chunk);
		}
		spin_ms(burst ? 1 : 5);
		peer_poll(&pr, false);
		idle = burst ? 0 : idle + 1;
		assert_true(ns_debug_rxq_bytes() <= TCP_WND);
	}
	ns_get_stats(&st);
	assert_true(pr.wnd < sizeof(chunk)); /* closed (to below one segment) */
	assert_int_equal((uint32_t)(pr.snd_nxt - pr.snd_una), 0); /* all acked */
	/* Everything acked is in the socket or in the ring, the ring <= window. */
	assert_int_equal(sent, st.splice_bytes_in + ns_debug_rxq_bytes());
	assert_true(ns_debug_rxq_bytes() <= TCP_WND);
	assert_true(ns_debug_rxq_bytes() > TCP_WND / 2);
	print_message("slow reader: %llu bytes acked, %zu queued, %llu in the socket\n",
	              (unsigned long long)sent, ns_debug_rxq_bytes(),
	              (unsigned long long)st.splice_bytes_in);

	/* Drain while the peer keeps sending: the window reopens and every
	 * byte arrives in order. */
	for (int i = 0; i < 20000 && !(checked == sent && sent >= (uint64_t)TCP_WND * 3);
	     i++) {
		ssize_t r = read(sv[1], got, sizeof(got));
		int burst = 0;

		for (ssize_t j = 0; j < r; j++)
			if (got[j] != (uint8_t)((checked + (uint64_t)j) * 7 + 1))
				fail_msg("byte %llu differs",
				         (unsigned long long)(checked + j));
		if (r > 0)
			checked += (uint64_t)r;
		while (sent < (uint64_t)TCP_WND * 3 && burst++ < 64 &&
		       (uint64_t)(pr.snd_nxt - pr.snd_una) + sizeof(chunk) <= pr.wnd) {
			for (size_t j = 0; j < sizeof(chunk); j++)
				chunk[j] = (uint8_t)((sent + j) * 7 + 1);
			peer_send(&pr, F_ACK, chunk, sizeof(chunk));
			sent += sizeof(chunk);
		}
		spin_ms(r > 0 ? 0 : 1);
		peer_poll(&pr, false);
	}
	assert_int_equal(checked, sent);
	assert_true(pr.wnd >= TCP_WND / 2);
	close(sv[1]);
	spin_ms(5);
	peer_free(&pr);
}

/* The peer does not ACK: lwIP's send buffer fills, the socket stops being
 * read, and the local writer blocks; then ACKs resume the flow intact. */
static void test_unacked_peer_stops_socket_reads(void **state)
{
	static uint8_t blk[16384];
	const uint64_t total = 6u << 20;
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	uint64_t written = 0;
	int sv[2], sndbuf = 0;
	socklen_t sl = sizeof(sndbuf);

	(void)state;
	assert_int_equal(ns_tcp_listen(85, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 85);
	handshake_in(&pr, &acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	for (int i = 0; i < 400; i++) {
		ssize_t w;

		for (size_t j = 0; j < sizeof(blk); j++)
			blk[j] = (uint8_t)((written + j) * 13 + 5);
		w = write(sv[1], blk, sizeof(blk));
		if (w > 0)
			written += (uint64_t)w;
		spin_ms(w > 0 ? 0 : 1);
		peer_poll(&pr, false); /* take segments, never ACK */
	}
	ns_get_stats(&st);
	getsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl);
	print_message("stalled: local wrote %llu, stack read %llu (TCP_SND_BUF %d)\n",
	              (unsigned long long)written,
	              (unsigned long long)st.splice_bytes_out, TCP_SND_BUF);
	assert_true(st.splice_bytes_out <= (uint64_t)TCP_SND_BUF + sizeof(blk));
	assert_true(st.splice_bytes_out >= (uint64_t)TCP_SND_BUF / 2);
	assert_true(written <
	            st.splice_bytes_out + 16u * 1024 * 1024); /* socket buffers */
	/* Resume: ACK what arrived so far, then as data arrives; check every byte. */
	peer_send(&pr, F_ACK, NULL, 0);
	for (int i = 0; i < 20000 && pr.rx_len < total; i++) {
		if (written < total) {
			size_t n = sizeof(blk);
			ssize_t w;

			if (total - written < n)
				n = (size_t)(total - written);
			for (size_t j = 0; j < n; j++)
				blk[j] = (uint8_t)((written + j) * 13 + 5);
			w = write(sv[1], blk, n);
			if (w > 0)
				written += (uint64_t)w;
		}
		spin_ms(0);
		peer_poll(&pr, true);
		if (i % 16 == 15)
			spin_ms(1);
	}
	assert_int_equal(pr.rx_len, total);
	for (uint64_t j = 0; j < total; j++)
		if (pr.rx[j] != (uint8_t)(j * 13 + 5))
			fail_msg("byte %llu differs", (unsigned long long)j);
	close(sv[1]);
	spin_ms(5);
	peer_free(&pr);
}

/* Peers that are odd but possible must not trip lwIP 2.1.3 assertions (see
 * netstack/ns_hooks.h): a SYN announcing a zero window, then a window
 * smaller than two segments; an MSS option in the middle of the connection;
 * a SYN with window scaling to a connection that did not negotiate it. The
 * data still arrives intact in segments no larger than the MSS. */
static void test_hostile_options_and_windows(void **state)
{
	static const uint8_t mss536[4] = {2, 4, 536 >> 8, 536 & 255};
	static const uint8_t mss100[4] = {2, 4, 0, 100};
	static const uint8_t ws14[4] = {1, 3, 3, 14};
	static uint8_t blk[4096];
	const size_t total = 2 + 64 * 1024;
	struct accepted acc;
	struct peer pr;
	size_t written = 0;
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(86, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 86);
	pr.opts = mss536;
	pr.optlen = sizeof(mss536);
	pr.win = 0;
	handshake_in(&pr, &acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], (const uint8_t *)"hi", 2), 0);
	for (size_t j = 0; j < sizeof(blk); j++)
		blk[j] = (uint8_t)(j * 3 + 1);
	assert_int_equal(write(sv[1], blk, 1024), 1024);
	written = 1024;
	spin_ms(5);
	peer_poll(&pr, false);
	assert_int_equal(pr.rx_len, 0); /* zero window: nothing sent */
	pr.win = 793;
	peer_send(&pr, F_ACK, NULL, 0);
	for (int i = 0; i < 20000 && pr.rx_len < total; i++) {
		if (written + 2 < total) {
			size_t n = total - 2 - written < sizeof(blk) ? total - 2 - written
			                                             : sizeof(blk);
			uint8_t tmp[sizeof(blk)];
			ssize_t w;

			for (size_t j = 0; j < n; j++)
				tmp[j] = (uint8_t)((written + j) * 3 + 1);
			w = write(sv[1], tmp, n);
			if (w > 0)
				written += (size_t)w;
		}
		if (i == 20) { /* mid-connection MSS option, then a SYN with WS */
			pr.opts = mss100;
			peer_send(&pr, F_ACK, NULL, 0);
			pr.opts = ws14;
			peer_send(&pr, F_SYN | F_ACK, NULL, 0);
			pr.snd_nxt--;
			pr.opts = NULL;
		}
		if (i == 200)
			pr.win = -1;
		spin_ms(i % 8 == 7 ? 1 : 0);
		peer_poll(&pr, true);
	}
	assert_int_equal(pr.rx_len, total);
	assert_memory_equal(pr.rx, "hi", 2);
	for (size_t j = 0; j < total - 2; j++)
		if (pr.rx[2 + j] != (uint8_t)(j * 3 + 1))
			fail_msg("byte %zu differs", j);
	assert_true(pr.max_dlen <= 536);
	assert_false(pr.got_rst);
	close(sv[1]);
	spin_ms(5);
	peer_free(&pr);
}

/* Jumps lwIP's clock by ms in timer ticks, running its timers each time. */
static void advance_lwip_ms(unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 250) {
		ns_clock_offset_ms += 250;
		ns_check_timeouts();
	}
}

/* A peer with a zero window that accepts the probe byte: the ACK takes the
 * last unsent segment while lwIP's persist timer runs (lwIP 2.1.3 then
 * asserts "persist ticking with empty send buffer" on its next tick). */
static void test_zero_window_probe_acked(void **state)
{
	struct accepted acc;
	struct peer pr;
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(87, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 87);
	handshake_in(&pr, &acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	/* lwIP takes a window update only from a newer seq: a byte first. */
	peer_send(&pr, F_ACK | F_PSH, "p", 1);
	pr.win = 0;
	peer_send(&pr, F_ACK, NULL, 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	spin_ms(5);
	peer_poll(&pr, false);
	assert_int_equal(pr.rx_len, 0);
	for (int i = 0; i < 40 && pr.rx_len == 0; i++) {
		advance_lwip_ms(250);
		peer_poll(&pr, false);
	}
	assert_int_equal(pr.rx_len, 1); /* the probe carried the byte */
	peer_send(&pr, F_ACK, NULL, 0); /* ACK it, window still 0 */
	advance_lwip_ms(5000);
	/* The connection still works once the window opens. */
	pr.win = -1;
	peer_send(&pr, F_ACK, NULL, 0);
	assert_int_equal(write(sv[1], "yz", 2), 2);
	spin_ms(5);
	peer_poll(&pr, true);
	assert_int_equal(pr.rx_len, 3);
	assert_memory_equal(pr.rx, "xyz", 3);
	close(sv[1]);
	spin_ms(5);
	peer_free(&pr);
}

/* lwIP answers a timed-out IPv6 reassembly with an ICMPv6 "time exceeded"
 * sourced from the datagram's destination; for a multicast destination
 * that packet must not leave (nothing leaves from an address not ours). */
static void test_no_output_from_foreign_source(void **state)
{
	uint8_t b[64] = {0x60};
	struct ns_addr me;
	struct pkt *k;
	struct seg s;

	(void)state;
	assert_true(ns_addr_parse(&me, PEER6));
	b[5] = 8 + 16; /* payload: fragment header + 16 bytes */
	b[6] = 44;
	b[7] = 64;
	memcpy(b + 8, me.addr, 16);
	b[24] = 0xff, b[25] = 0x02, b[39] = 1; /* ff02::1 */
	b[40] = 58;
	b[43] = 1; /* offset 0, more fragments */
	b[47] = 9;
	b[48] = 128; /* the start of an echo request */
	ns_input(b, 40 + 8 + 16);
	advance_lwip_ms(65000);
	while ((k = cap_pop()) != NULL) {
		assert_true(parse(k, &s));
		fail_msg("a packet left (proto %u) after the reassembly timed out",
		         s.proto);
	}
	assert_int_equal(ns_ctx.output_drop, 1);
}

static void test_garbage_input_dropped(void **state)
{
	static const uint8_t short4[] = {0x45, 0, 0, 20};
	uint8_t junk[1500];
	struct ns_stats st;

	(void)state;
	ns_input(short4, sizeof(short4));
	ns_input(junk, 0);
	memset(junk, 0, 60);
	junk[0] = 0x60; /* IPv6, 39 bytes */
	ns_input(junk, 39);
	junk[0] = 0x75; /* version 7 */
	ns_input(junk, 60);
	ns_get_stats(&st);
	assert_int_equal(st.input_drop, 4);
	srand(1);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(rand() % (int)sizeof(junk));

		for (size_t j = 0; j < n; j++)
			junk[j] = (uint8_t)rand();
		if (n > 0)
			junk[0] = (uint8_t)((rand() & 1 ? 0x40 : 0x60) | (junk[0] & 15));
		ns_input(junk, n);
	}
	cap_clear();
	spin_ms(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_slow_reader_closes_window, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_unacked_peer_stops_socket_reads, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_options_and_windows, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_zero_window_probe_acked, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_no_output_from_foreign_source, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_input_dropped, setup, teardown),
	};

	srand(12345);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
