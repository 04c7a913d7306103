/* netstack UDP (ns_udp_*), with hand-made datagrams from the mesh side
 * (ns_test_peer.h). Proves: datagrams to a bound port arrive flat with the
 * sender and our address, over IPv4 and IPv6, and replies leave from our
 * address with correct checksums; port 0 binds an ephemeral port; a taken
 * port is -EADDRINUSE; datagrams to no bound port are answered with ICMP
 * port unreachable and counted; 8000-byte datagrams cross both ways in
 * fragments; sizes and families are checked; no callback runs inside
 * ns_udp_send(); ns_udp_close() is safe inside the callback and after
 * ns_shutdown(). */
#include "ns_test_peer.h"

struct udp_got {
	int calls;
	struct ns_udp *u;
	struct ns_addr src, dst;
	uint16_t sport;
	uint8_t data[70000];
	size_t len;
	bool reply;       /* echo back from inside the callback */
	bool close_in_cb; /* ns_udp_close() its own socket in the callback */
	int reply_err;
};

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	struct udp_got *g = ctx;

	g->calls++;
	g->u = u;
	g->src = *src;
	g->dst = *dst;
	g->sport = sport;
	assert_true(len <= sizeof(g->data));
	if (len > 0)
		memcpy(g->data, data, len);
	g->len = len;
	if (g->reply)
		g->reply_err = ns_udp_send(u, src, sport, data, len);
	if (g->close_in_cb)
		ns_udp_close(u);
}

/* A UDP header and checksum around data, from the peer to us. */
static size_t udp_build(uint8_t *t, int fam, const uint8_t *src, const uint8_t *dst,
                        uint16_t sport, uint16_t dport, const uint8_t *data, size_t len)
{
	uint16_t c;

	t[0] = (uint8_t)(sport >> 8), t[1] = (uint8_t)sport;
	t[2] = (uint8_t)(dport >> 8), t[3] = (uint8_t)dport;
	t[4] = (uint8_t)((len + 8) >> 8), t[5] = (uint8_t)(len + 8);
	t[6] = t[7] = 0;
	if (len > 0)
		memcpy(t + 8, data, len);
	c = l4_sum(fam, src, dst, 17, t, len + 8, true);
	if (c == 0)
		c = 0xffff;
	t[6] = (uint8_t)(c >> 8), t[7] = (uint8_t)c;
	return len + 8;
}

static void addrs(int fam, struct ns_addr *peer, struct ns_addr *ours)
{
	assert_true(ns_addr_parse(peer, fam == AF_INET ? PEER4 : PEER6));
	assert_true(ns_addr_parse(ours, fam == AF_INET ? OUR4 : OUR6));
}

static void peer_udp(int fam, uint16_t sport, uint16_t dport, const uint8_t *data,
                     size_t len)
{
	static uint8_t t[70000];
	struct ns_addr p, o;

	addrs(fam, &p, &o);
	send_ip(fam, p.addr, o.addr, 17, t,
	        udp_build(t, fam, p.addr, o.addr, sport, dport, data, len));
}

/* The same datagram in IP fragments of up to 1232 bytes, last first. */
static void peer_udp_frags(int fam, uint16_t sport, uint16_t dport, const uint8_t *data,
                           size_t len, uint16_t id)
{
	static uint8_t t[70000];
	const size_t fs = 1232; /* a multiple of 8 */
	struct ns_addr p, o;
	size_t total, off;

	addrs(fam, &p, &o);
	total = udp_build(t, fam, p.addr, o.addr, sport, dport, data, len);
	off = (total - 1) / fs * fs;
	for (;;) {
		uint8_t b[1400];
		size_t n = total - off < fs ? total - off : fs,
		       h = fam == AF_INET ? 20 : 48;
		bool more = off + n < total;

		memset(b, 0, h);
		if (fam == AF_INET) {
			uint16_t fo = (uint16_t)(off / 8) | (more ? 0x2000 : 0), c;

			b[0] = 0x45;
			b[2] = (uint8_t)((h + n) >> 8), b[3] = (uint8_t)(h + n);
			b[4] = (uint8_t)(id >> 8), b[5] = (uint8_t)id;
			b[6] = (uint8_t)(fo >> 8), b[7] = (uint8_t)fo;
			b[8] = 64;
			b[9] = 17;
			memcpy(b + 12, p.addr, 4);
			memcpy(b + 16, o.addr, 4);
			c = fold(sum16(0, b, 20));
			b[10] = (uint8_t)(c >> 8), b[11] = (uint8_t)c;
		} else {
			uint16_t fo = (uint16_t)off | (more ? 1 : 0);

			b[0] = 0x60;
			b[4] = (uint8_t)((n + 8) >> 8), b[5] = (uint8_t)(n + 8);
			b[6] = 44;
			b[7] = 64;
			memcpy(b + 8, p.addr, 16);
			memcpy(b + 24, o.addr, 16);
			b[40] = 17;
			b[42] = (uint8_t)(fo >> 8), b[43] = (uint8_t)fo;
			b[46] = (uint8_t)(id >> 8), b[47] = (uint8_t)id;
		}
		memcpy(b + h, t + off, n);
		ns_input(b, h + n);
		if (off == 0)
			break;
		off -= fs;
	}
}

/* Checks one UDP packet we sent (unfragmented) and returns its payload. */
static const uint8_t *check_udp_out(const struct pkt *k, int fam, uint16_t sport,
                                    uint16_t dport, size_t *len)
{
	struct ns_addr p, o;
	struct seg s;

	addrs(fam, &p, &o);
	assert_true(parse(k, &s));
	assert_int_equal(s.fam, fam);
	assert_int_equal(s.proto, 17);
	assert_memory_equal(s.src, o.addr, fam == AF_INET ? 4 : 16);
	assert_memory_equal(s.dst, p.addr, fam == AF_INET ? 4 : 16);
	assert_true(s.l4len >= 8);
	assert_int_equal(s.l4[0] << 8 | s.l4[1], sport);
	assert_int_equal(s.l4[2] << 8 | s.l4[3], dport);
	assert_int_equal((size_t)(s.l4[4] << 8 | s.l4[5]), s.l4len);
	assert_int_equal(l4_sum(fam, s.src, s.dst, 17, s.l4, s.l4len, true), 0);
	*len = s.l4len - 8;
	return s.l4 + 8;
}

static void udp_roundtrip(int fam)
{
	static struct udp_got g;
	struct ns_addr p, o;
	struct ns_stats st0, st;
	const uint8_t *d;
	struct ns_udp *u;
	struct pkt *k;
	size_t n;
	int err = 1;

	addrs(fam, &p, &o);
	memset(&g, 0, sizeof(g));
	g.reply = true;
	ns_get_stats(&st0);
	u = ns_udp_open(5300, on_udp, &g, &err);
	assert_non_null(u);
	assert_int_equal(err, 0);
	assert_int_equal(ns_udp_port(u), 5300);
	peer_udp(fam, 4444, 5300, (const uint8_t *)"ping over udp", 13);
	assert_int_equal(g.calls, 1);
	assert_ptr_equal(g.u, u);
	assert_int_equal(g.src.family, fam);
	assert_memory_equal(g.src.addr, p.addr, fam == AF_INET ? 4 : 16);
	assert_int_equal(g.dst.family, fam);
	assert_memory_equal(g.dst.addr, o.addr, fam == AF_INET ? 4 : 16);
	assert_int_equal(g.sport, 4444);
	assert_int_equal(g.len, 13);
	assert_memory_equal(g.data, "ping over udp", 13);
	assert_int_equal(g.reply_err, 0);
	/* The reply from the callback. */
	k = cap_pop();
	assert_non_null(k);
	d = check_udp_out(k, fam, 5300, 4444, &n);
	assert_int_equal(n, 13);
	assert_memory_equal(d, "ping over udp", 13);
	free(k);
	/* An empty datagram both ways. */
	g.reply = false;
	peer_udp(fam, 4445, 5300, NULL, 0);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.len, 0);
	assert_int_equal(ns_udp_send(u, &p, 4445, NULL, 0), 0);
	k = cap_pop();
	assert_non_null(k);
	check_udp_out(k, fam, 5300, 4445, &n);
	assert_int_equal(n, 0);
	free(k);
	assert_null(cap_pop());
	ns_get_stats(&st);
	assert_int_equal(st.udp_rx - st0.udp_rx, 2);
	assert_int_equal(st.udp_tx - st0.udp_tx, 2);
	assert_int_equal(st.udp_drop, st0.udp_drop);
	ns_udp_close(u);
	ns_udp_close(NULL);
}

static void test_udp_v4_v6_roundtrip(void **state)
{
	(void)state;
	udp_roundtrip(AF_INET);
	udp_roundtrip(AF_INET6);
}

/* Port 0 is ephemeral; a bound port is taken for both families; after
 * close it is free again and its datagrams are unreachable. */
static void test_udp_ephemeral_in_use_unreachable(void **state)
{
	static struct udp_got g;
	struct ns_udp *a, *b, *c;
	struct ns_stats st;
	struct pkt *k;
	struct seg s;
	int err;

	(void)state;
	a = ns_udp_open(0, on_udp, &g, &err);
	b = ns_udp_open(0, on_udp, &g, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(ns_udp_port(a) >= 49152);
	assert_true(ns_udp_port(b) >= 49152);
	assert_int_not_equal(ns_udp_port(a), ns_udp_port(b));
	assert_null(ns_udp_open(ns_udp_port(a), on_udp, &g, &err));
	assert_int_equal(err, -EADDRINUSE);
	c = ns_udp_open(7000, on_udp, &g, &err);
	assert_non_null(c);
	assert_null(ns_udp_open(7000, on_udp, &g, &err));
	assert_int_equal(err, -EADDRINUSE);
	assert_null(ns_udp_open(7001, NULL, &g, &err));
	assert_int_equal(err, -EINVAL);
	ns_udp_close(c);
	/* Closed: ICMP port unreachable (v4 type 3 code 3, v6 type 1 code 4). */
	for (int fam = AF_INET; fam <= AF_INET6; fam += AF_INET6 - AF_INET) {
		peer_udp(fam, 1234, 7000, (const uint8_t *)"x", 1);
		k = cap_pop();
		assert_non_null(k);
		assert_true(parse(k, &s));
		assert_int_equal(s.proto, fam == AF_INET ? 1 : 58);
		assert_int_equal(s.l4[0], fam == AF_INET ? 3 : 1);
		assert_int_equal(s.l4[1], fam == AF_INET ? 3 : 4);
		free(k);
	}
	assert_int_equal(g.calls, 0);
	ns_get_stats(&st);
	assert_int_equal(st.udp_drop, 2);
	assert_int_equal(st.udp_rx, 0);
	c = ns_udp_open(7000, on_udp, &g, &err);
	assert_non_null(c);
	peer_udp(AF_INET, 1234, 7000, (const uint8_t *)"y", 1);
	assert_int_equal(g.calls, 1);
	ns_udp_close(a);
	ns_udp_close(b);
	ns_udp_close(c);
}

/* Collects the fragments of one datagram we sent; returns the UDP payload
 * length and copies it to out. */
static size_t collect_frags(int fam, uint8_t *out, size_t cap, uint16_t sport,
                            uint16_t dport)
{
	static uint8_t r[70000];
	size_t got = 0, total = 0;
	unsigned nfr = 0;
	struct pkt *k;

	while ((k = cap_pop()) != NULL) {
		const uint8_t *p = k->b, *data;
		size_t off, n;
		bool more;

		assert_true(k->len <= 1420);
		if (fam == AF_INET) {
			assert_int_equal(p[9], 17);
			off = (size_t)((p[6] << 8 | p[7]) & 0x1fff) * 8;
			more = p[6] & 0x20;
			data = p + 20, n = k->len - 20;
		} else {
			assert_int_equal(p[6], 44);
			assert_int_equal(p[40], 17);
			off = (size_t)((p[42] << 8 | p[43]) & 0xfff8);
			more = p[43] & 1;
			data = p + 48, n = k->len - 48;
		}
		assert_true(off + n <= sizeof(r));
		memcpy(r + off, data, n);
		got += n;
		if (!more)
			total = off + n;
		nfr++;
		free(k);
	}
	assert_true(nfr > 1);
	assert_int_equal(got, total);
	assert_int_equal(r[0] << 8 | r[1], sport);
	assert_int_equal(r[2] << 8 | r[3], dport);
	assert_int_equal((size_t)(r[4] << 8 | r[5]), total);
	struct ns_addr p, o;
	addrs(fam, &p, &o);
	assert_int_equal(l4_sum(fam, o.addr, p.addr, 17, r, total, true), 0);
	assert_true(total - 8 <= cap);
	memcpy(out, r + 8, total - 8);
	return total - 8;
}

static void large_both_ways(int fam)
{
	static struct udp_got g;
	static uint8_t m[8000], back[70000];
	struct ns_addr p, o;
	struct ns_udp *u;
	int err;

	addrs(fam, &p, &o);
	memset(&g, 0, sizeof(g));
	for (size_t i = 0; i < sizeof(m); i++)
		m[i] = (uint8_t)(i * 31 + fam);
	u = ns_udp_open(5301, on_udp, &g, &err);
	assert_non_null(u);
	peer_udp_frags(fam, 999, 5301, m, sizeof(m), (uint16_t)(0x100 + fam));
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.len, sizeof(m));
	assert_memory_equal(g.data, m, sizeof(m));
	assert_null(cap_pop());
	assert_int_equal(ns_udp_send(u, &p, 999, m, sizeof(m)), 0);
	assert_int_equal(collect_frags(fam, back, sizeof(back), 5301, 999), sizeof(m));
	assert_memory_equal(back, m, sizeof(m));
	ns_udp_close(u);
}

static void test_udp_large_datagrams_fragmented(void **state)
{
	static uint8_t big[65508], back[70000];
	struct ns_addr p, o;
	struct ns_udp *u;
	int err;

	(void)state;
	large_both_ways(AF_INET);
	large_both_ways(AF_INET6);
	/* The largest datagrams each family carries; one more is refused. */
	u = ns_udp_open(5302, on_udp, NULL, &err);
	assert_non_null(u);
	addrs(AF_INET, &p, &o);
	assert_int_equal(ns_udp_send(u, &p, 9, big, 65508), -EMSGSIZE);
	assert_int_equal(ns_udp_send(u, &p, 9, big, 65507), 0);
	assert_int_equal(collect_frags(AF_INET, back, sizeof(back), 5302, 9), 65507);
	addrs(AF_INET6, &p, &o);
	assert_int_equal(ns_udp_send(u, &p, 9, big, 65488), -EMSGSIZE);
	assert_int_equal(ns_udp_send(u, &p, 9, big, 65487), 0);
	assert_int_equal(collect_frags(AF_INET6, back, sizeof(back), 5302, 9), 65487);
	/* Port 0 and the unspecified address are refused. */
	assert_int_equal(ns_udp_send(u, &p, 0, big, 1), -EINVAL);
	memset(&p.addr, 0, sizeof(p.addr));
	assert_int_equal(ns_udp_send(u, &p, 9, big, 1), -EINVAL);
	ns_udp_close(u);
}

/* A stack with only an IPv4 address: IPv6 destinations are refused. */
static int setup_v4_only(void **state)
{
	struct ns_config cfg = {0};

	(void)state;
	base = event_base_new();
	assert_non_null(base);
	assert_true(ns_addr_parse(&cfg.addrs[0], OUR4));
	cfg.n_addrs = 1;
	cfg.mtu = 1420;
	assert_int_equal(ns_init(base, &cfg, cap_out, NULL), 0);
	return 0;
}

static void test_udp_v6_without_v6_address(void **state)
{
	struct ns_addr p, o, bad = {.family = 99};
	struct ns_udp *u;
	struct pkt *k;
	size_t n;
	int err;

	(void)state;
	u = ns_udp_open(53, on_udp, NULL, &err);
	assert_non_null(u);
	addrs(AF_INET6, &p, &o);
	assert_int_equal(ns_udp_send(u, &p, 53, (const uint8_t *)"q", 1), -EAFNOSUPPORT);
	assert_int_equal(ns_udp_send(u, &bad, 53, (const uint8_t *)"q", 1),
	                 -EAFNOSUPPORT);
	assert_null(cap_pop());
	/* An IPv4-mapped IPv6 address is IPv4. */
	assert_true(ns_addr_parse(&p, "::ffff:" PEER4));
	assert_int_equal(ns_udp_send(u, &p, 53, (const uint8_t *)"q", 1), 0);
	k = cap_pop();
	assert_non_null(k);
	check_udp_out(k, AF_INET, 53, 53, &n);
	assert_int_equal(n, 1);
	free(k);
	ns_udp_close(u);
}

/* The output callback feeds every packet straight back in (a loop to our
 * own address): the datagram must arrive after ns_udp_send() returned,
 * never inside it. */
static bool in_send;
static int cb_inside_send;

static void loop_out(void *ctx, const uint8_t *p, size_t len)
{
	(void)ctx;
	ns_input(p, len);
}

static void on_udp_loop(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                        uint16_t sport, const struct ns_addr *dst, const uint8_t *data,
                        size_t len)
{
	if (in_send)
		cb_inside_send++;
	on_udp(ctx, u, src, sport, dst, data, len);
}

static void test_udp_callback_not_reentrant(void **state)
{
	static struct udp_got g;
	struct ns_config cfg = {0};
	struct ns_addr o;
	struct ns_udp *u;
	int err;

	(void)state;
	ns_shutdown(); /* replace the fixture's stack by a looping one */
	assert_true(ns_addr_parse(&cfg.addrs[0], OUR4));
	cfg.n_addrs = 1;
	cfg.mtu = 1420;
	assert_int_equal(ns_init(base, &cfg, loop_out, NULL), 0);
	memset(&g, 0, sizeof(g));
	u = ns_udp_open(6000, on_udp_loop, &g, &err);
	assert_non_null(u);
	assert_true(ns_addr_parse(&o, OUR4));
	in_send = true;
	assert_int_equal(ns_udp_send(u, &o, 6000, (const uint8_t *)"loop", 4), 0);
	in_send = false;
	assert_int_equal(g.calls, 0);
	spin_ms(5);
	assert_int_equal(g.calls, 1);
	assert_int_equal(cb_inside_send, 0);
	assert_int_equal(g.sport, 6000);
	assert_memory_equal(g.data, "loop", 4);
	/* The callback may reply; the reply loops back later, not inside. */
	g.reply = true;
	in_send = true;
	assert_int_equal(ns_udp_send(u, &o, 6000, (const uint8_t *)"loop", 4), 0);
	in_send = false;
	spin_ms(5); /* "loop" -> callback replies -> "loop" again, ... */
	assert_true(g.calls >= 3);
	assert_int_equal(cb_inside_send, 0);
	g.reply = false;
	spin_ms(5);
	ns_udp_close(u);
}

/* ns_udp_close() inside the socket's own callback, and after ns_shutdown(). */
static void test_udp_close_in_callback_and_after_shutdown(void **state)
{
	static struct udp_got g;
	struct ns_udp *u, *v;
	struct ns_addr p, o;
	struct pkt *k;
	int err;

	(void)state;
	memset(&g, 0, sizeof(g));
	g.close_in_cb = true;
	u = ns_udp_open(5400, on_udp, &g, &err);
	assert_non_null(u);
	peer_udp(AF_INET, 1, 5400, (const uint8_t *)"a", 1);
	assert_int_equal(g.calls, 1);
	/* Closed: the next datagram is unreachable, the port free again. */
	peer_udp(AF_INET, 1, 5400, (const uint8_t *)"b", 1);
	assert_int_equal(g.calls, 1);
	k = cap_pop();
	assert_non_null(k);
	free(k);
	u = ns_udp_open(5400, on_udp, &g, &err);
	assert_non_null(u);
	v = ns_udp_open(0, on_udp, &g, &err);
	assert_non_null(v);
	ns_udp_close(u);
	ns_shutdown();
	addrs(AF_INET, &p, &o);
	assert_int_equal(ns_udp_send(v, &p, 1, (const uint8_t *)"c", 1), -ENETDOWN);
	assert_null(ns_udp_open(0, on_udp, &g, &err));
	assert_int_equal(err, -ENETDOWN);
	ns_udp_close(v); /* freed here (ASan checks) */
	cap_clear();
	/* A new stack starts with no ports bound. */
	event_base_free(base);
	setup(state);
	u = ns_udp_open(5400, on_udp, &g, &err);
	assert_non_null(u);
	ns_udp_close(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_udp_v4_v6_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_udp_ephemeral_in_use_unreachable, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_udp_large_datagrams_fragmented, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_udp_v6_without_v6_address, setup_v4_only,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_udp_callback_not_reentrant, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_udp_close_in_callback_and_after_shutdown,
	                                    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
