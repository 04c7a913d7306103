/* netstack flow control and lwIP's corner cases, with the peer in
 * ns_test_peer.h. Proves: a local reader that does not read closes the
 * advertised window and the queue stays within it, then everything arrives
 * in order; a mesh peer that does not ACK stops the local socket being read,
 * then the flow resumes intact; peers that are odd but possible (zero-window
 * SYN, mid-stream MSS option, SYN with window scaling to an established
 * connection, an ACKed zero-window probe) trip no lwIP assertion; no packet
 * leaves from an address not ours; garbage
 * input is dropped and counted. Splice options: ns_acct counters and
 * lifetime (owner or splices letting go last, ns_shutdown); idle_ms resets
 * a quiet splice both ways; half-closed splices are reset after
 * NS_HALF_CLOSED_IDLE_MS; buf_limit bounds the receive queue, the window
 * and the bytes read from the socket. */
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

/* ---- splice options ---- */

static struct accepted opt_acc; /* the listeners' context below */

/* Accepts one connection from a fresh peer on port and splices it to one
 * end of a loopback TCP pair (the other end in *local) with o. */
static struct ns_tcp *splice_opts(struct peer *pr, int fam, uint16_t port, uint16_t pport,
                                  const struct ns_splice_opts *o, int *local)
{
	int sv[2];

	peer_init(pr, fam, port);
	pr->port = pport;
	handshake_in(pr, &opt_acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start_ex(opt_acc.c, sv[0], NULL, 0, o), 0);
	*local = sv[1];
	return opt_acc.c;
}

/* The local end saw a reset: reading fails with ECONNRESET, or, when it
 * had already read EOF, sending fails. */
static void expect_local_reset(int fd)
{
	uint8_t b[64];
	ssize_t r = read_all(fd, b, sizeof(b), 500);

	if (r == 0)
		assert_true(send(fd, "z", 1, MSG_NOSIGNAL) < 0 &&
		            (errno == EPIPE || errno == ECONNRESET));
	else
		assert_int_equal(r, -ECONNRESET);
	close(fd);
}

/* Counters move with the bytes, active follows the splices, and the
 * struct lives until both the owner and the last splice let go: owner
 * first, splices first, and splices closed by ns_shutdown (ASan checks the
 * frees). */
static void test_acct_counters_and_lifetime(void **state)
{
	struct ns_acct *a = ns_acct_new(), *b = ns_acct_new();
	struct ns_splice_opts o = {.acct = a};
	struct peer p1, p2, p3;
	struct peer *both[2] = {&p1, &p2};
	struct ns_stats st;
	uint8_t buf[256];
	int l1, l2, l3;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->refs, 1);
	assert_int_equal(ns_tcp_listen(90, on_accept, &opt_acc), 0);
	splice_opts(&p1, AF_INET, 90, 41001, &o, &l1);
	splice_opts(&p2, AF_INET6, 90, 41002, &o, &l2);
	assert_int_equal(a->active, 2);
	assert_int_equal(a->refs, 3);
	memset(buf, 'm', sizeof(buf));
	peer_send(&p1, F_ACK | F_PSH, buf, 100);
	peer_send(&p2, F_ACK | F_PSH, buf, 7);
	assert_int_equal(read_all(l1, buf, sizeof(buf), 200), 100);
	assert_int_equal(read_all(l2, buf, sizeof(buf), 200), 7);
	assert_int_equal(write(l1, "0123456789", 10), 10);
	assert_int_equal(write(l2, "abcde", 5), 5);
	spin_ms(5);
	peers_poll(both, 2, true);
	assert_int_equal(p1.rx_len, 10);
	assert_int_equal(p2.rx_len, 5);
	assert_int_equal(a->bytes_in, 107);
	assert_int_equal(a->bytes_out, 15);
	ns_get_stats(&st);
	assert_int_equal(st.splice_bytes_in, 107);
	assert_int_equal(st.splice_bytes_out, 15);

	/* p1 ends with FIN both ways. */
	peer_send(&p1, F_ACK | F_FIN, NULL, 0);
	assert_int_equal(read_all(l1, buf, sizeof(buf), 200), 0);
	shutdown(l1, SHUT_WR);
	spin_ms(5);
	peers_poll(both, 2, true);
	assert_true(p1.got_fin);
	assert_int_equal(a->active, 1);
	assert_int_equal(a->refs, 2);
	/* The owner lets go first: p2's splice keeps it. */
	ns_acct_release(a);
	assert_int_equal(a->refs, 1);
	assert_int_equal(a->active, 1);
	peer_send(&p2, F_ACK | F_PSH, "zz", 2);
	assert_int_equal(read_all(l2, buf, sizeof(buf), 200), 2);
	assert_int_equal(a->bytes_in, 109);
	peer_send(&p2, F_ACK | F_RST, NULL, 0); /* frees a */
	expect_local_reset(l2);
	close(l1);

	/* b: the splice ends first, then the owner lets go. */
	o.acct = b;
	splice_opts(&p3, AF_INET, 90, 41003, &o, &l3);
	assert_int_equal(b->refs, 2);
	close(l3);
	spin_ms(5);
	peer_poll(&p3, true);
	peer_send(&p3, F_ACK | F_FIN, NULL, 0);
	spin_ms(5);
	assert_int_equal(b->active, 0);
	assert_int_equal(b->refs, 1);
	ns_acct_release(b);
	ns_acct_release(NULL);
	cap_clear();
	peer_free(&p1);
	peer_free(&p2);
	peer_free(&p3);

	/* c: a splice still running at ns_shutdown lets go there. */
	struct ns_acct *c = ns_acct_new();

	o.acct = c;
	splice_opts(&p1, AF_INET, 90, 41004, &o, &l1);
	assert_int_equal(c->refs, 2);
	ns_shutdown();
	assert_int_equal(c->refs, 1);
	assert_int_equal(c->active, 0);
	ns_acct_release(c);
	close(l1);
	cap_clear();
	peer_free(&p1);
	event_base_free(base);
	setup(state);
}

/* idle_ms: a splice with a byte every 50 ms lives past its idle_ms of 200;
 * once quiet it is reset both ways within idle_ms + 1/8; one with idle_ms
 * 0 is untouched. */
static void test_idle_reset(void **state)
{
	struct ns_acct *a = ns_acct_new();
	struct ns_splice_opts o = {.acct = a, .idle_ms = 200}, o0 = {.acct = a};
	struct peer p1, p2;
	struct peer *both[2] = {&p1, &p2};
	struct ns_stats st;
	struct timespec t0, t1;
	uint8_t buf[16];
	double ms;
	int l1, l2;

	(void)state;
	assert_int_equal(ns_tcp_listen(91, on_accept, &opt_acc), 0);
	splice_opts(&p1, AF_INET, 91, 41011, &o, &l1);
	splice_opts(&p2, AF_INET, 91, 41012, &o0, &l2);
	for (int i = 0; i < 10; i++) {
		if (i % 2)
			peer_send(&p1, F_ACK | F_PSH, "x", 1);
		else
			assert_int_equal(write(l1, "y", 1), 1);
		spin_ms(50);
		peers_poll(both, 2, true);
		read_all(l1, buf, sizeof(buf), 1);
	}
	assert_false(p1.got_rst);
	ns_get_stats(&st);
	assert_int_equal(st.idle_reset, 0);
	assert_int_equal(write(l1, "y", 1), 1); /* the last byte moves now */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 100 && !p1.got_rst; i++) {
		spin_ms(10);
		peers_poll(both, 2, false);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1000 +
	     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	print_message("idle reset after %.0f ms quiet (idle_ms 200)\n", ms);
	assert_true(p1.got_rst);
	assert_true(ms >= 190 && ms <= 600);
	expect_local_reset(l1);
	assert_false(p2.got_rst);
	ns_get_stats(&st);
	assert_int_equal(st.idle_reset, 1);
	assert_int_equal(st.tcp_active, 1);
	assert_int_equal(a->idle_closed, 1);
	assert_int_equal(a->active, 1);
	/* The other one still works. */
	peer_send(&p2, F_ACK | F_PSH, "ok", 2);
	assert_int_equal(read_all(l2, buf, sizeof(buf), 200), 2);
	close(l2);
	ns_acct_release(a);
	spin_ms(5);
	cap_clear();
	peer_free(&p1);
	peer_free(&p2);
}

/* Half-closed splices with idle_ms 0: one whose local side sent EOF (the
 * mesh side in FIN_WAIT_2 never answers) and one whose mesh side sent FIN
 * are reset once the open direction has been idle NS_HALF_CLOSED_IDLE_MS;
 * bytes on the open direction restart its clock; a quiet splice open both
 * ways is never reset. */
static void test_half_closed_reset(void **state)
{
	struct ns_acct *a = ns_acct_new();
	struct ns_splice_opts o = {.acct = a};
	struct peer p1, p2, p3;
	struct peer *all[3] = {&p1, &p2, &p3};
	struct ns_stats st;
	uint8_t buf[16];
	int l1, l2, l3;

	(void)state;
	assert_int_equal(ns_tcp_listen(92, on_accept, &opt_acc), 0);
	splice_opts(&p1, AF_INET, 92, 41021, &o, &l1);
	splice_opts(&p2, AF_INET6, 92, 41022, &o, &l2);
	splice_opts(&p3, AF_INET, 92, 41023, &o, &l3);
	shutdown(l1, SHUT_WR); /* -> FIN to p1, which never sends its own */
	peer_send(&p2, F_ACK | F_FIN, NULL, 0); /* p2 done sending */
	spin_ms(5);
	peers_poll(all, 3, true);
	assert_true(p1.got_fin);
	assert_int_equal(read_all(l2, buf, sizeof(buf), 200), 0);

	ns_clock_offset_ms += 4 * 60 * 1000;
	ns_splice_idle_sweep();
	/* p1's open direction (mesh -> local) moves: its clock restarts. */
	peer_send(&p1, F_ACK | F_PSH, "late", 4);
	assert_int_equal(read_all(l1, buf, sizeof(buf), 200), 4);
	ns_clock_offset_ms += NS_HALF_CLOSED_IDLE_MS - 4 * 60 * 1000 + 1000;
	ns_splice_idle_sweep();
	peers_poll(all, 3, true);
	assert_false(p1.got_rst);
	assert_true(p2.got_rst); /* 5 min + 1 s since its FIN */
	assert_false(p3.got_rst);
	expect_local_reset(l2);
	ns_clock_offset_ms += 4 * 60 * 1000;
	ns_splice_idle_sweep();
	peers_poll(all, 3, true);
	assert_true(p1.got_rst);
	expect_local_reset(l1);
	ns_clock_offset_ms += 60 * 60 * 1000;
	ns_splice_idle_sweep();
	peers_poll(all, 3, true);
	assert_false(p3.got_rst);
	ns_get_stats(&st);
	assert_int_equal(st.idle_reset, 2);
	assert_int_equal(a->idle_closed, 2);
	assert_int_equal(a->active, 1);
	assert_int_equal(st.tcp_active, 1);
	/* The quiet open one still carries data. */
	peer_send(&p3, F_ACK | F_PSH, "ok", 2);
	assert_int_equal(read_all(l3, buf, sizeof(buf), 200), 2);
	close(l3);
	ns_acct_release(a);
	spin_ms(5);
	cap_clear();
	peer_free(&p1);
	peer_free(&p2);
	peer_free(&p3);
}

/* buf_limit 64 KiB: a local reader that stops leaves at most 64 KiB queued
 * mesh -> socket and the advertised window shrinks to it; a mesh peer that
 * stops ACKing gets at most 64 KiB read from the socket; both flows then
 * finish intact. A limit under 16 KiB is raised to 16 KiB. */
static void test_buf_limit_bounds_queues(void **state)
{
	static uint8_t chunk[1380], got[1 << 16], blk[16384];
	const size_t lim = 64 * 1024;
	struct ns_splice_opts o = {.buf_limit = lim}, o16 = {.buf_limit = 1000};
	struct peer pr, pt, ps;
	struct ns_stats st;
	uint64_t sent = 0, checked = 0, written = 0, max_wnd = 0;
	size_t max_q = 0;
	int l, lt, ls, idle = 0;

	(void)state;
	assert_int_equal(ns_tcp_listen(93, on_accept, &opt_acc), 0);
	/* mesh -> socket, the reader stopped (its socket buffer fills first). */
	splice_opts(&pr, AF_INET, 93, 41031, &o, &l);
	while (idle < 100) {
		int burst = 0;

		while ((uint64_t)(pr.snd_nxt - pr.snd_una) + sizeof(chunk) <= pr.wnd &&
		       burst++ < 64) {
			for (size_t i = 0; i < sizeof(chunk); i++)
				chunk[i] = (uint8_t)((sent + i) * 7 + 1);
			peer_send(&pr, F_ACK, chunk, sizeof(chunk));
			sent += sizeof(chunk);
		}
		spin_ms(burst ? 1 : 5);
		peer_poll(&pr, false);
		if (pr.wnd > max_wnd)
			max_wnd = pr.wnd;
		if (ns_debug_rxq_bytes() > max_q)
			max_q = ns_debug_rxq_bytes();
		assert_true(ns_debug_rxq_bytes() <= lim);
		idle = burst ? 0 : idle + 1;
	}
	ns_get_stats(&st);
	print_message("buf_limit %zu: %llu bytes acked, max queued %zu, max window %llu, "
	              "%llu in the socket\n",
	              lim, (unsigned long long)sent, max_q, (unsigned long long)max_wnd,
	              (unsigned long long)st.splice_bytes_in);
	assert_true(max_wnd <= lim);
	assert_true(max_q > lim / 2);
	assert_int_equal(sent, st.splice_bytes_in + ns_debug_rxq_bytes());
	for (int i = 0; i < 20000 && checked < sent; i++) {
		ssize_t r = read(l, got, sizeof(got));

		for (ssize_t j = 0; j < r; j++)
			if (got[j] != (uint8_t)((checked + (uint64_t)j) * 7 + 1))
				fail_msg("byte %llu differs",
				         (unsigned long long)(checked + j));
		if (r > 0)
			checked += (uint64_t)r;
		else
			spin_ms(1);
		peer_poll(&pr, false);
	}
	assert_int_equal(checked, sent);
	close(l);
	spin_ms(5);
	cap_clear();

	/* socket -> mesh, the mesh peer stopped ACKing. */
	splice_opts(&pt, AF_INET, 93, 41032, &o, &lt);
	ns_get_stats(&st);
	uint64_t out0 = st.splice_bytes_out;
	for (int i = 0; i < 300; i++) {
		ssize_t w;

		for (size_t j = 0; j < sizeof(blk); j++)
			blk[j] = (uint8_t)((written + j) * 13 + 5);
		w = write(lt, blk, sizeof(blk));
		if (w > 0)
			written += (uint64_t)w;
		spin_ms(w > 0 ? 0 : 1);
		peer_poll(&pt, false);
	}
	ns_get_stats(&st);
	print_message("buf_limit %zu: local wrote %llu, stack read %llu while unacked\n",
	              lim, (unsigned long long)written,
	              (unsigned long long)(st.splice_bytes_out - out0));
	assert_true(st.splice_bytes_out - out0 <= lim);
	assert_true(st.splice_bytes_out - out0 >= lim / 2);
	peer_send(&pt, F_ACK, NULL, 0);
	for (int i = 0; i < 20000 && pt.rx_len < written; i++) {
		spin_ms(0);
		peer_poll(&pt, true);
		if (i % 16 == 15)
			spin_ms(1);
	}
	assert_int_equal(pt.rx_len, written);
	for (uint64_t j = 0; j < written; j++)
		if (pt.rx[j] != (uint8_t)(j * 13 + 5))
			fail_msg("byte %llu differs", (unsigned long long)j);
	close(lt);
	spin_ms(5);
	cap_clear();

	/* 1000 is raised to 16 KiB: the window announced after one byte. */
	splice_opts(&ps, AF_INET, 93, 41033, &o16, &ls);
	peer_send(&ps, F_ACK | F_PSH, "1", 1);
	for (int i = 0; i < 200 && ps.snd_una != ps.snd_nxt; i++) {
		spin_ms(1);
		peer_poll(&ps, false);
	}
	assert_int_equal(ps.snd_una, ps.snd_nxt); /* the byte's ACK came */
	print_message("buf_limit 1000: window %llu\n", (unsigned long long)ps.wnd);
	assert_true(ps.wnd <= NS_BUF_LIMIT_MIN);
	assert_true(ps.wnd >= NS_BUF_LIMIT_MIN - 2 * 1380);
	close(ls);
	spin_ms(5);
	cap_clear();
	peer_free(&pr);
	peer_free(&pt);
	peer_free(&ps);
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
	    cmocka_unit_test_setup_teardown(test_acct_counters_and_lifetime, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_idle_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_half_closed_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_buf_limit_bounds_queues, setup,
	                                    teardown),
	};

	srand(12345);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
