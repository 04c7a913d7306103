/* netstack (lwIP on libevent) by crafted packets, with the peer in
 * ns_test_peer.h. Proves: ICMP echo answered (v4, v6); ns_ping matched on
 * id/seq and timed out; a SYN to an unlistened port gets a RST; SYN ->
 * SYN-ACK with MSS and window scale, accept only after the handshake; data
 * both ways through ns_splice_start with a head, data sent before the
 * splice kept; FIN both ways and everything freed; RST both ways;
 * ns_tcp_unlisten resets new and half-open handshakes but not accepted
 * connections; abort and reset before the splice; dial refused, connected
 * and timed out. Flow control, splice options and hostile peers:
 * test_netstack_flow.c; UDP: test_netstack_udp.c. */
#include "ns_test_peer.h"

static void test_addr_parse(void **state)
{
	struct ns_addr a;

	(void)state;
	assert_true(ns_addr_parse(&a, "100.64.0.1"));
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(a.addr[0], 100);
	assert_true(ns_addr_parse(&a, "fd00::1"));
	assert_int_equal(a.family, AF_INET6);
	assert_int_equal(a.addr[15], 1);
	assert_false(ns_addr_parse(&a, "100.64.0.300"));
	assert_false(ns_addr_parse(&a, "host.example"));
	assert_false(ns_addr_parse(&a, ""));
	assert_false(ns_addr_parse(&a, NULL));
}

static void echo_roundtrip(int fam)
{
	struct ns_addr me, it;
	uint8_t m[8 + 32];
	struct pkt *k;
	struct seg s;
	uint16_t c;

	assert_true(ns_addr_parse(&me, fam == AF_INET ? PEER4 : PEER6));
	assert_true(ns_addr_parse(&it, fam == AF_INET ? OUR4 : OUR6));
	memset(m, 0, sizeof(m));
	m[0] = fam == AF_INET ? 8 : 128;
	m[4] = 0x12, m[5] = 0x34, m[6] = 0, m[7] = 7;
	for (size_t i = 8; i < sizeof(m); i++)
		m[i] = (uint8_t)i;
	c = l4_sum(fam, me.addr, it.addr, fam == AF_INET ? 1 : 58, m, sizeof(m),
	           fam != AF_INET);
	m[2] = (uint8_t)(c >> 8);
	m[3] = (uint8_t)c;
	send_ip(fam, me.addr, it.addr, fam == AF_INET ? 1 : 58, m, sizeof(m));
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.proto, fam == AF_INET ? 1 : 58);
	assert_memory_equal(s.src, it.addr, fam == AF_INET ? 4 : 16);
	assert_memory_equal(s.dst, me.addr, fam == AF_INET ? 4 : 16);
	assert_int_equal(s.l4len, sizeof(m));
	assert_int_equal(s.l4[0], fam == AF_INET ? 0 : 129);
	assert_memory_equal(s.l4 + 4, m + 4, sizeof(m) - 4);
	assert_int_equal(l4_sum(fam, s.src, s.dst, 58, s.l4, s.l4len, fam != AF_INET), 0);
	free(k);
	assert_null(cap_pop());
}

static void test_icmp_echo_answered_v4_v6(void **state)
{
	(void)state;
	echo_roundtrip(AF_INET);
	echo_roundtrip(AF_INET6);
}

/* Sends bytes [off, off + n) of an ICMP message as one IP fragment. */
static void send_frag(int fam, const uint8_t *src, const uint8_t *dst, const uint8_t *m,
                      size_t off, size_t n, bool more)
{
	uint8_t b[1600];
	size_t h = fam == AF_INET ? 20 : 48;

	memset(b, 0, h);
	if (fam == AF_INET) {
		uint16_t fo = (uint16_t)(off / 8) | (more ? 0x2000 : 0), c;

		b[0] = 0x45;
		b[2] = (uint8_t)((h + n) >> 8);
		b[3] = (uint8_t)(h + n);
		b[4] = 0x12, b[5] = 0x34; /* identification */
		b[6] = (uint8_t)(fo >> 8), b[7] = (uint8_t)fo;
		b[8] = 64;
		b[9] = 1;
		memcpy(b + 12, src, 4);
		memcpy(b + 16, dst, 4);
		c = fold(sum16(0, b, 20));
		b[10] = (uint8_t)(c >> 8), b[11] = (uint8_t)c;
	} else {
		uint16_t fo = (uint16_t)off | (more ? 1 : 0);

		b[0] = 0x60;
		b[4] = (uint8_t)((n + 8) >> 8), b[5] = (uint8_t)(n + 8);
		b[6] = 44; /* fragment header */
		b[7] = 64;
		memcpy(b + 8, src, 16);
		memcpy(b + 24, dst, 16);
		b[40] = 58; /* ICMPv6 after reassembly */
		b[42] = (uint8_t)(fo >> 8), b[43] = (uint8_t)fo;
		b[47] = 0x77; /* identification */
	}
	memcpy(b + h, m + off, n);
	ns_input(b, h + n);
}

/* A 2000-byte echo request in two fragments (last one first) is reassembled
 * and answered; the reply, larger than the MTU, leaves in fragments. */
static void fragmented_echo(int fam)
{
	static uint8_t m[2000], r[2000];
	struct ns_addr me, it;
	size_t got = 0, total = 0;
	struct pkt *k;

	assert_true(ns_addr_parse(&me, fam == AF_INET ? PEER4 : PEER6));
	assert_true(ns_addr_parse(&it, fam == AF_INET ? OUR4 : OUR6));
	memset(m, 0, 8);
	m[0] = fam == AF_INET ? 8 : 128;
	m[4] = 0x42, m[7] = 9;
	for (size_t i = 8; i < sizeof(m); i++)
		m[i] = (uint8_t)(i * 5);
	uint16_t c = l4_sum(fam, me.addr, it.addr, fam == AF_INET ? 1 : 58, m, sizeof(m),
	                    fam != AF_INET);
	m[2] = (uint8_t)(c >> 8), m[3] = (uint8_t)c;
	send_frag(fam, me.addr, it.addr, m, 1200, sizeof(m) - 1200, false);
	assert_null(cap_pop());
	send_frag(fam, me.addr, it.addr, m, 0, 1200, true);
	while ((k = cap_pop()) != NULL) {
		const uint8_t *p = k->b, *data;
		size_t off, n;
		bool more;

		assert_true(k->len <= 1420);
		if (fam == AF_INET) {
			assert_int_equal(p[9], 1);
			off = (size_t)((p[6] << 8 | p[7]) & 0x1fff) * 8;
			more = p[6] & 0x20;
			data = p + 20, n = k->len - 20;
		} else {
			assert_int_equal(p[6], 44);
			off = (size_t)((p[42] << 8 | p[43]) & 0xfff8);
			more = p[43] & 1;
			data = p + 48, n = k->len - 48;
		}
		assert_true(off + n <= sizeof(r));
		memcpy(r + off, data, n);
		got += n;
		if (!more)
			total = off + n;
		free(k);
	}
	assert_int_equal(total, sizeof(m));
	assert_int_equal(got, sizeof(m));
	assert_int_equal(r[0], fam == AF_INET ? 0 : 129);
	assert_memory_equal(r + 4, m + 4, sizeof(m) - 4);
}

static void test_fragments_reassembled_and_sent(void **state)
{
	(void)state;
	fragmented_echo(AF_INET);
	fragmented_echo(AF_INET6);
}

struct ping_res {
	int calls, err;
	double rtt;
};

static void on_ping(void *ctx, int err, double rtt)
{
	struct ping_res *r = ctx;

	r->calls++;
	r->err = err;
	r->rtt = rtt;
}

static void ping_one(int fam)
{
	struct ping_res r = {0}, r2 = {0};
	struct ns_addr dst;
	struct pkt *k;
	struct seg s;
	uint8_t m[128];

	assert_true(ns_addr_parse(&dst, fam == AF_INET ? PEER4 : PEER6));
	assert_int_equal(ns_ping(&dst, 2000, on_ping, &r), 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.l4[0], fam == AF_INET ? 8 : 128);
	assert_int_equal(l4_sum(fam, s.src, s.dst, 58, s.l4, s.l4len, fam != AF_INET), 0);
	assert_true(s.l4len <= sizeof(m));
	memcpy(m, s.l4, s.l4len);
	/* A reply with the wrong sequence number is not ours. */
	m[0] = fam == AF_INET ? 0 : 129;
	m[7] ^= 1;
	send_ip(fam, dst.addr, s.src, fam == AF_INET ? 1 : 58, m, s.l4len);
	assert_int_equal(r.calls, 0);
	m[7] ^= 1;
	send_ip(fam, dst.addr, s.src, fam == AF_INET ? 1 : 58, m, s.l4len);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	assert_true(r.rtt >= 0 && r.rtt < 2000);
	free(k);
	cap_clear();
	/* No reply: -ETIMEDOUT after the timeout. */
	assert_int_equal(ns_ping(&dst, 50, on_ping, &r2), 0);
	spin_ms(20);
	assert_int_equal(r2.calls, 0);
	spin_ms(100);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.err, -ETIMEDOUT);
	cap_clear();
}

static void test_ping_matched_and_timed_out(void **state)
{
	(void)state;
	ping_one(AF_INET);
	ping_one(AF_INET6);
}

static void test_syn_unlistened_port_gets_rst(void **state)
{
	struct peer pr;
	struct pkt *k;
	struct seg s;

	(void)state;
	peer_init(&pr, AF_INET, 9999);
	peer_send(&pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_true(s.flags & F_RST);
	assert_int_equal(s.ack, pr.snd_nxt);
	free(k);
	peer_free(&pr);
}

/* Handshake, head, data both ways, FIN both ways, everything freed. */
static void splice_roundtrip(int fam)
{
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	uint8_t buf[256];
	int sv[2];

	assert_int_equal(ns_tcp_listen(8080, on_accept, &acc), 0);
	assert_int_equal(ns_tcp_listen(8080, on_accept, &acc), -EADDRINUSE);
	peer_init(&pr, fam, 8080);
	handshake_in(&pr, &acc);
	assert_int_equal(acc.src.family, fam);
	assert_memory_equal(acc.src.addr, pr.me, fam == AF_INET ? 4 : 16);
	assert_int_equal(acc.sport, pr.port);
	assert_int_equal(acc.dport, 8080);
	{
		struct ns_addr local;
		uint16_t lport = 0;

		ns_tcp_local(acc.c, &local, &lport);
		assert_int_equal(local.family, fam);
		assert_memory_equal(local.addr, pr.it, fam == AF_INET ? 4 : 16);
		assert_int_equal(lport, 8080);
		ns_tcp_local(NULL, &local, &lport);
		assert_int_equal(local.family, 0);
		assert_int_equal(lport, 0);
	}

	/* Data sent before the splice waits in lwIP. */
	peer_send(&pr, F_ACK | F_PSH, "early ", 6);
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], (const uint8_t *)"HEAD", 4), 0);
	spin_ms(5);
	peer_poll(&pr, true);
	assert_int_equal(pr.rx_len, 4);
	assert_memory_equal(pr.rx, "HEAD", 4);

	peer_send(&pr, F_ACK | F_PSH, "hello mesh", 10);
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), 16);
	assert_memory_equal(buf, "early hello mesh", 16);

	assert_int_equal(write(sv[1], "hello local", 11), 11);
	spin_ms(5);
	peer_poll(&pr, true);
	assert_int_equal(pr.rx_len, 15);
	assert_memory_equal(pr.rx + 4, "hello local", 11);

	/* Mesh FIN -> local EOF; local EOF -> mesh FIN. */
	peer_send(&pr, F_ACK | F_FIN, NULL, 0);
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), 0);
	assert_false(pr.got_fin);
	shutdown(sv[1], SHUT_WR);
	spin_ms(5);
	peer_poll(&pr, true);
	assert_true(pr.got_fin);
	assert_int_equal(pr.snd_una, pr.snd_nxt);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_active, 0);
	assert_int_equal(st.tcp_total, 1);
	assert_int_equal(st.splice_bytes_in, 16);
	assert_int_equal(st.splice_bytes_out, 11);
	assert_int_equal(st.tcp_reset, 0);
	assert_int_equal(ns_debug_rxq_bytes(), 0);
	close(sv[1]);
	peer_free(&pr);
}

static void test_splice_v4_data_fin_both_ways(void **state)
{
	(void)state;
	splice_roundtrip(AF_INET);
}

static void test_splice_v6_data_fin_both_ways(void **state)
{
	(void)state;
	splice_roundtrip(AF_INET6);
}

static void test_rst_from_mesh_resets_local(void **state)
{
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	uint8_t buf[16];
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(81, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 81);
	handshake_in(&pr, &acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	peer_send(&pr, F_ACK | F_RST, NULL, 0);
	spin_ms(5);
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), -ECONNRESET);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_active, 0);
	assert_int_equal(st.tcp_reset, 1);
	close(sv[1]);
	peer_free(&pr);
}

static void test_local_reset_resets_mesh(void **state)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(82, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 82);
	handshake_in(&pr, &acc);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(sv[1]);
	for (int i = 0; i < 200 && !pr.got_rst; i++) {
		spin_ms(1);
		peer_poll(&pr, false);
	}
	assert_true(pr.got_rst);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_active, 0);
	peer_free(&pr);
}

static void test_abort_and_reset_before_splice(void **state)
{
	struct accepted acc;
	struct ns_stats st;
	struct peer pr, pr2;
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(83, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 83);
	handshake_in(&pr, &acc);
	ns_tcp_abort(acc.c);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	/* The peer resets first: the splice reports it and closes the fd. */
	peer_init(&pr2, AF_INET, 83);
	handshake_in(&pr2, &acc);
	peer_send(&pr2, F_ACK | F_RST, NULL, 0);
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), -ECONNRESET);
	assert_int_equal(fcntl(sv[0], F_GETFD), -1);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_active, 0);
	close(sv[1]);
	peer_free(&pr);
	peer_free(&pr2);
}

/* Unlisten: new SYNs and a half-open handshake get RST, the connection
 * already accepted carries on both ways; the port can be listened again. */
/* SYNs answered with SYN-ACK among the captured packets (the rest freed). */
static unsigned count_synacks(void)
{
	struct pkt *k;
	struct seg s;
	unsigned n = 0;

	while ((k = cap_pop()) != NULL) {
		if (parse(k, &s) && s.flags == (F_SYN | F_ACK))
			n++;
		free(k);
	}
	return n;
}

/* A burst of SYNs to one port is not limited to lwIP's u8_t listen backlog
 * (255); half-open connections are capped for the whole stack at
 * NS_TCP_HALF_OPEN_MAX, beyond which SYNs are dropped and counted, and
 * room comes back as half-open connections time out. The SYNs come from 32
 * sources, each under its own share (test_netstack_limits.c). */
static void test_half_open_cap_not_per_listener(void **state)
{
	struct accepted acc;
	struct ns_stats st;
	struct peer pr;
	unsigned i, n;

	(void)state;
	assert_int_equal(ns_tcp_listen(87, on_accept, &acc), 0);
	for (i = 0, n = 0; i < 1000; i++) {
		peer_init(&pr, AF_INET, 87);
		pr.me[3] = (uint8_t)(10 + i % 32);
		pr.port = (uint16_t)(10000 + i);
		peer_send(&pr, F_SYN, NULL, 0);
		n += count_synacks();
		peer_free(&pr);
	}
	assert_int_equal(n, 1000); /* lwIP's backlog would have stopped at 255 */
	for (i = 1000, n = 0; i < NS_TCP_HALF_OPEN_MAX + 10; i++) {
		peer_init(&pr, AF_INET, 87);
		pr.me[3] = (uint8_t)(10 + i % 32);
		pr.port = (uint16_t)(10000 + i);
		peer_send(&pr, F_SYN, NULL, 0);
		n += count_synacks();
		peer_free(&pr);
		if (i % 512 == 0)
			ns_check_timeouts(); /* the recount keeps the cap exact */
	}
	assert_int_equal(n, NS_TCP_HALF_OPEN_MAX - 1000);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_syn_drop, 10);
	/* SYN_RCVD ends after lwIP's SYN-ACK retries or 20 s. lwIP's timers
	 * do not catch up after a jump, so step the clock tick by tick. */
	for (i = 0; i < 25000 / TCP_TMR_INTERVAL; i++) {
		ns_clock_offset_ms += TCP_TMR_INTERVAL;
		ns_check_timeouts();
		cap_clear(); /* the SYN-ACK retransmissions */
	}
	assert_int_equal(ns_tcp_half_open, 0);
	peer_init(&pr, AF_INET, 87);
	pr.port = 9000;
	peer_send(&pr, F_SYN, NULL, 0);
	assert_int_equal(count_synacks(), 1);
	peer_free(&pr);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_syn_drop, 10);
}

static void test_unlisten_rst_keeps_accepted(void **state)
{
	struct accepted acc;
	struct peer pa, pb, pc;
	struct pkt *k;
	struct seg s;
	uint8_t buf[64];
	int sv[2];

	(void)state;
	assert_int_equal(ns_tcp_listen(86, on_accept, &acc), 0);
	peer_init(&pa, AF_INET6, 86);
	handshake_in(&pa, &acc);
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[0], NULL, 0), 0);
	/* b: SYN answered, the handshake's ACK not yet sent. */
	peer_init(&pb, AF_INET, 86);
	peer_send(&pb, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN | F_ACK);
	peer_take(&pb, &s);
	free(k);

	ns_tcp_unlisten(86);
	ns_tcp_unlisten(86); /* no-op */
	ns_tcp_unlisten(87); /* never listened: no-op */
	peer_init(&pc, AF_INET, 86);
	peer_send(&pc, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_true(s.flags & F_RST);
	assert_int_equal(s.dport, pc.port);
	free(k);
	acc.calls = 0;
	peer_send(&pb, F_ACK, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_true(s.flags & F_RST);
	assert_int_equal(s.dport, pb.port);
	free(k);
	assert_int_equal(acc.calls, 0);
	assert_null(cap_pop());

	/* The accepted connection is untouched. */
	peer_send(&pa, F_ACK | F_PSH, "still here", 10);
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), 10);
	assert_memory_equal(buf, "still here", 10);
	assert_int_equal(write(sv[1], "yes", 3), 3);
	spin_ms(5);
	peer_poll(&pa, true);
	assert_int_equal(pa.rx_len, 3);
	assert_false(pa.got_rst);
	assert_int_equal(ns_tcp_listen(86, on_accept, &acc), 0);
	close(sv[1]);
	spin_ms(5);
	peer_free(&pa);
	peer_free(&pb);
	peer_free(&pc);
}

struct dialed {
	struct ns_tcp *c;
	int err, calls;
};

static void on_dial(void *ctx, struct ns_tcp *c, int err)
{
	struct dialed *d = ctx;

	d->c = c;
	d->err = err;
	d->calls++;
}

/* Starts a dial to the peer and returns the SYN it sent. */
static void dial_syn(struct peer *pr, int fam, struct dialed *d)
{
	struct ns_addr dst;
	struct pkt *k;
	struct seg s;

	memset(d, 0, sizeof(*d));
	assert_true(ns_addr_parse(&dst, fam == AF_INET ? PEER4 : PEER6));
	assert_int_equal(ns_tcp_dial(&dst, 80, on_dial, d), 0);
	assert_int_equal(d->calls, 0); /* never from inside the call */
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN);
	assert_int_equal(s.dport, 80);
	peer_init(pr, fam, s.sport);
	pr->port = 80;
	assert_memory_equal(s.src, pr->it, fam == AF_INET ? 4 : 16);
	pr->rcv_nxt = s.seq + 1;
	pr->it_ws = s.ws;
	free(k);
}

static void test_dial_refused_connected_timed_out(void **state)
{
	struct ns_addr nowhere;
	struct ns_stats st;
	struct dialed d;
	struct peer pr;
	uint8_t buf[32];
	int sv[2];

	(void)state;
	/* RST answer: -ECONNREFUSED. */
	dial_syn(&pr, AF_INET, &d);
	peer_send(&pr, F_RST | F_ACK, NULL, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, -ECONNREFUSED);
	assert_null(d.c);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_refused, 1);
	assert_int_equal(st.tcp_active, 0);

	/* SYN-ACK: connected, the stack ACKs; data flows once spliced. */
	dial_syn(&pr, AF_INET6, &d);
	pr.synack = true;
	peer_send(&pr, F_SYN | F_ACK, NULL, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);
	assert_non_null(d.c);
	peer_poll(&pr, false);
	assert_int_equal(pr.snd_una, pr.snd_nxt);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(d.c, sv[0], NULL, 0), 0);
	peer_send(&pr, F_ACK | F_PSH, "HTTP/1.0 200", 12);
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), 12);
	ns_shutdown(); /* resets it; teardown's ns_shutdown is then a no-op */
	assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), -ECONNRESET);
	close(sv[1]);
	cap_clear();
	teardown(state);
	setup(state);

	/* No answer: -ETIMEDOUT. */
	ns_ctx.dial_timeout_ms = 100;
	dial_syn(&pr, AF_INET, &d);
	spin_ms(50);
	assert_int_equal(d.calls, 0);
	spin_ms(150);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, -ETIMEDOUT);

	/* No address of that family, or not an address at all. */
	nowhere.family = AF_UNIX;
	assert_int_equal(ns_tcp_dial(&nowhere, 80, on_dial, &d), -EAFNOSUPPORT);
	peer_free(&pr);
}

/* The local end never reads; the peer sends all the window allows. The
 * window must close and what the stack holds stay within it; then the
 * reader drains and everything arrives in order. */

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_parse),
	    cmocka_unit_test_setup_teardown(test_icmp_echo_answered_v4_v6, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_fragments_reassembled_and_sent, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_ping_matched_and_timed_out, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_syn_unlistened_port_gets_rst, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_splice_v4_data_fin_both_ways, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_splice_v6_data_fin_both_ways, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_rst_from_mesh_resets_local, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_local_reset_resets_mesh, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_half_open_cap_not_per_listener, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_unlisten_rst_keeps_accepted, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_abort_and_reset_before_splice, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_dial_refused_connected_timed_out, setup,
	                                    teardown),
	};

	srand(12345);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
