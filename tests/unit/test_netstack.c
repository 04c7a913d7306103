/* netstack (lwIP on libevent) by crafted packets: lwIP is single-instance,
 * so each test brings up one stack whose output callback captures packets,
 * and a small hand-rolled TCP peer (seq/ack/window bookkeeping) plays the
 * mesh side. Proves: ICMP echo answered (v4, v6) and ns_ping matched and
 * timed out; SYN -> SYN-ACK with MSS and window scale, accept only after the
 * handshake; data both ways through ns_splice_start with a head; FIN both
 * ways; RST both ways; RST for an unlistened port; dial refused, timed out
 * and connected; flow control: a local reader that does not read closes the
 * advertised window with the queue bounded by the window, a peer that does
 * not ACK stops the socket being read; garbage input is dropped. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lwipopts.h"
#include "netstack/ns.h"
#include "netstack/ns_priv.h"

#define OUR4 "100.64.0.1"
#define PEER4 "100.64.0.2"
#define OUR6 "fd7a:115c:a1e0::1"
#define PEER6 "fd7a:115c:a1e0::2"

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

/* ---- captured output ---- */

struct pkt {
	size_t len;
	uint8_t b[];
};
static struct pkt *capq[8192];
static size_t cap_head, cap_n;
static struct event_base *base;

static void cap_out(void *ctx, const uint8_t *p, size_t len)
{
	struct pkt *k;

	(void)ctx;
	assert_true(cap_n < 8192);
	k = malloc(sizeof(*k) + len);
	assert_non_null(k);
	k->len = len;
	memcpy(k->b, p, len);
	capq[(cap_head + cap_n++) % 8192] = k;
}

static struct pkt *cap_pop(void)
{
	struct pkt *k;

	if (cap_n == 0)
		return NULL;
	k = capq[cap_head];
	cap_head = (cap_head + 1) % 8192;
	cap_n--;
	return k;
}

static void cap_clear(void)
{
	struct pkt *k;

	while ((k = cap_pop()) != NULL)
		free(k);
}

static void spin_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* ---- checksums and packet building ---- */

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* Checksum over a pseudo-header (TCP, ICMPv6) or none (ICMPv4). */
static uint16_t l4_sum(int fam, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		       const uint8_t *l4, size_t len, bool pseudo)
{
	uint32_t s = 0;
	size_t alen = fam == AF_INET ? 4 : 16;

	if (pseudo) {
		s = sum16(s, src, alen);
		s = sum16(s, dst, alen);
		s += proto;
		s += (uint32_t)len;
	}
	return fold(sum16(s, l4, len));
}

/* Wraps l4 in an IP header and feeds it to the stack. */
static void send_ip(int fam, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		    const uint8_t *l4, size_t len)
{
	static uint8_t b[70000];
	size_t h = fam == AF_INET ? 20 : 40;

	memset(b, 0, h);
	if (fam == AF_INET) {
		b[0] = 0x45;
		b[2] = (uint8_t)((h + len) >> 8);
		b[3] = (uint8_t)(h + len);
		b[8] = 64;
		b[9] = proto;
		memcpy(b + 12, src, 4);
		memcpy(b + 16, dst, 4);
		uint16_t c = fold(sum16(0, b, 20));
		b[10] = (uint8_t)(c >> 8);
		b[11] = (uint8_t)c;
	} else {
		b[0] = 0x60;
		b[4] = (uint8_t)(len >> 8);
		b[5] = (uint8_t)len;
		b[6] = proto;
		b[7] = 64;
		memcpy(b + 8, src, 16);
		memcpy(b + 24, dst, 16);
	}
	memcpy(b + h, l4, len);
	ns_input(b, h + len);
}

struct seg {
	int fam;
	uint8_t src[16], dst[16];
	uint8_t proto;
	const uint8_t *l4;
	size_t l4len;
	uint16_t sport, dport, win;
	uint32_t seq, ack;
	uint8_t flags;
	int mss, ws;
	const uint8_t *data;
	size_t dlen;
};

static bool parse(const struct pkt *k, struct seg *s)
{
	const uint8_t *p = k->b;
	size_t h;

	memset(s, 0, sizeof(*s));
	s->mss = s->ws = -1;
	if (k->len >= 20 && p[0] >> 4 == 4) {
		h = (size_t)(p[0] & 15) * 4;
		s->fam = AF_INET;
		s->proto = p[9];
		memcpy(s->src, p + 12, 4);
		memcpy(s->dst, p + 16, 4);
		assert_int_equal(fold(sum16(0, p, h)), 0); /* header checksum */
		assert_int_equal((size_t)(p[2] << 8 | p[3]), k->len);
	} else if (k->len >= 40 && p[0] >> 4 == 6) {
		h = 40;
		s->fam = AF_INET6;
		s->proto = p[6];
		memcpy(s->src, p + 8, 16);
		memcpy(s->dst, p + 24, 16);
		assert_int_equal((size_t)(p[4] << 8 | p[5]) + 40, k->len);
	} else {
		return false;
	}
	s->l4 = p + h;
	s->l4len = k->len - h;
	if (s->proto != 6)
		return true;
	assert_true(s->l4len >= 20);
	/* lwIP must generate correct TCP checksums (CHECKSUM_GEN_TCP). */
	assert_int_equal(l4_sum(s->fam, s->src, s->dst, 6, s->l4, s->l4len, true), 0);
	const uint8_t *t = s->l4;
	size_t off = (size_t)(t[12] >> 4) * 4, i;
	s->sport = (uint16_t)(t[0] << 8 | t[1]);
	s->dport = (uint16_t)(t[2] << 8 | t[3]);
	s->seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
	s->ack = (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
	s->flags = t[13];
	s->win = (uint16_t)(t[14] << 8 | t[15]);
	for (i = 20; i < off;) {
		if (t[i] == 0)
			break;
		if (t[i] == 1) {
			i++;
			continue;
		}
		if (t[i] == 2)
			s->mss = t[i + 2] << 8 | t[i + 3];
		if (t[i] == 3)
			s->ws = t[i + 2];
		i += t[i + 1] ? t[i + 1] : 1;
	}
	s->data = t + off;
	s->dlen = s->l4len - off;
	return true;
}

/* ---- a minimal TCP peer on the mesh side ---- */

struct peer {
	int fam;
	uint8_t me[16], it[16]; /* peer address, stack address */
	uint16_t port, it_port;
	uint32_t snd_nxt, snd_una, rcv_nxt;
	uint64_t wnd; /* stack's advertised window, scaled */
	int it_ws;    /* stack's window shift */
	bool synack, got_fin, got_rst;
	uint8_t *rx;
	size_t rx_len, rx_cap;
	unsigned segs;
	size_t max_dlen;
	uint64_t min_wnd_seen;
	const uint8_t *opts; /* options for the segments we send, if set */
	size_t optlen;	     /* (a multiple of 4) */
	int win;	     /* window field we send; -1: 65535 */
};

static void peer_init(struct peer *pr, int fam, uint16_t it_port)
{
	struct ns_addr a;

	memset(pr, 0, sizeof(*pr));
	pr->fam = fam;
	assert_true(ns_addr_parse(&a, fam == AF_INET ? PEER4 : PEER6));
	memcpy(pr->me, a.addr, 16);
	assert_true(ns_addr_parse(&a, fam == AF_INET ? OUR4 : OUR6));
	memcpy(pr->it, a.addr, 16);
	pr->port = (uint16_t)(40000 + rand() % 20000);
	pr->it_port = it_port;
	pr->snd_nxt = pr->snd_una = (uint32_t)rand();
	pr->it_ws = 0;
	pr->min_wnd_seen = UINT64_MAX;
	pr->win = -1;
}

static void peer_free(struct peer *pr)
{
	free(pr->rx);
	pr->rx = NULL;
}

/* Sends one segment; options: pr->opts if set, else MSS 1380 and window
 * scale 7 on a SYN. */
static void peer_send(struct peer *pr, uint8_t flags, const void *data, size_t len)
{
	static const uint8_t syn_opts[8] = {2, 4, 1380 >> 8, 1380 & 255, 1, 3, 3, 7};
	static uint8_t t[70000];
	const uint8_t *opts = pr->opts;
	size_t optlen = pr->optlen, h;
	uint16_t c, win = pr->win < 0 ? 0xffff : (uint16_t)pr->win;

	if (opts == NULL && (flags & F_SYN)) {
		opts = syn_opts;
		optlen = sizeof(syn_opts);
	}
	h = 20 + (opts != NULL ? optlen : 0);
	memset(t, 0, h);
	t[0] = (uint8_t)(pr->port >> 8);
	t[1] = (uint8_t)pr->port;
	t[2] = (uint8_t)(pr->it_port >> 8);
	t[3] = (uint8_t)pr->it_port;
	for (int i = 0; i < 4; i++) {
		t[4 + i] = (uint8_t)(pr->snd_nxt >> (24 - 8 * i));
		t[8 + i] = (uint8_t)((flags & F_ACK ? pr->rcv_nxt : 0) >> (24 - 8 * i));
	}
	t[12] = (uint8_t)(h / 4) << 4;
	t[13] = flags;
	t[14] = (uint8_t)(win >> 8); /* by default 65535 << 7: 8 MiB */
	t[15] = (uint8_t)win;
	if (h > 20)
		memcpy(t + 20, opts, h - 20);
	if (len)
		memcpy(t + h, data, len);
	c = l4_sum(pr->fam, pr->me, pr->it, 6, t, h + len, true);
	t[16] = (uint8_t)(c >> 8);
	t[17] = (uint8_t)c;
	send_ip(pr->fam, pr->me, pr->it, 6, t, h + len);
	pr->snd_nxt += (uint32_t)len + (flags & F_SYN ? 1 : 0) + (flags & F_FIN ? 1 : 0);
}

static void peer_take(struct peer *pr, const struct seg *s)
{
	int32_t d = (int32_t)(s->seq - pr->rcv_nxt);

	pr->segs++;
	if (s->dlen > pr->max_dlen)
		pr->max_dlen = s->dlen;
	if (s->flags & F_RST) {
		pr->got_rst = true;
		return;
	}
	if (s->flags & F_SYN) {
		pr->synack = true;
		pr->rcv_nxt = s->seq + 1;
		pr->it_ws = s->ws < 0 ? 0 : s->ws;
		pr->wnd = s->win; /* never scaled in a SYN */
	} else if (d <= 0 && (int64_t)d + (int64_t)s->dlen > 0) {
		size_t skip = (size_t)-d, n = s->dlen - skip;

		if (pr->rx_len + n > pr->rx_cap) {
			pr->rx_cap = (pr->rx_len + n) * 2;
			pr->rx = realloc(pr->rx, pr->rx_cap);
			assert_non_null(pr->rx);
		}
		memcpy(pr->rx + pr->rx_len, s->data + skip, n);
		pr->rx_len += n;
		pr->rcv_nxt += (uint32_t)n;
	}
	if ((s->flags & F_FIN) && s->seq + s->dlen == pr->rcv_nxt) {
		pr->got_fin = true;
		pr->rcv_nxt++;
	}
	if (s->flags & F_ACK) {
		if ((int32_t)(s->ack - pr->snd_una) > 0)
			pr->snd_una = s->ack;
		if (!(s->flags & F_SYN))
			pr->wnd = (uint64_t)s->win << pr->it_ws;
		if (pr->wnd < pr->min_wnd_seen)
			pr->min_wnd_seen = pr->wnd;
	}
}

/* Processes every captured packet (all must belong to pr); ACKs new data
 * when ack is set. Returns the number of segments. */
static unsigned peer_poll(struct peer *pr, bool ack)
{
	uint32_t before = pr->rcv_nxt;
	unsigned n = 0;
	struct pkt *k;
	struct seg s;

	while ((k = cap_pop()) != NULL) {
		assert_true(parse(k, &s));
		assert_int_equal(s.proto, 6);
		assert_int_equal(s.sport, pr->it_port);
		assert_int_equal(s.dport, pr->port);
		peer_take(pr, &s);
		free(k);
		n++;
	}
	if (ack && pr->synack && pr->rcv_nxt != before)
		peer_send(pr, F_ACK, NULL, 0);
	return n;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	struct ns_config cfg = {0};

	(void)state;
	base = event_base_new();
	assert_non_null(base);
	assert_true(ns_addr_parse(&cfg.addrs[0], OUR4));
	assert_true(ns_addr_parse(&cfg.addrs[1], OUR6));
	cfg.n_addrs = 2;
	cfg.mtu = 1420;
	assert_int_equal(ns_init(base, &cfg, cap_out, NULL), 0);
	assert_int_equal(ns_init(base, &cfg, cap_out, NULL), -EALREADY);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ns_shutdown();
	cap_clear();
	event_base_free(base);
	base = NULL;
	return 0;
}

struct accepted {
	struct ns_tcp *c;
	struct ns_addr src;
	uint16_t sport, dport;
	int calls;
};

static void on_accept(void *ctx, struct ns_tcp *c, const struct ns_addr *src, uint16_t sport,
		      uint16_t dport)
{
	struct accepted *a = ctx;

	a->c = c;
	a->src = *src;
	a->sport = sport;
	a->dport = dport;
	a->calls++;
}

/* Listens on port, runs the handshake from pr, returns the accepted conn. */
static struct ns_tcp *handshake_in(struct peer *pr, struct accepted *acc)
{
	struct pkt *k;
	struct seg s;

	memset(acc, 0, sizeof(*acc));
	peer_send(pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN | F_ACK);
	assert_int_equal(s.ack, pr->snd_nxt);
	assert_true(s.mss > 0 && s.mss <= (pr->fam == AF_INET ? 1380 : 1360));
	if (pr->opts == NULL)
		assert_int_equal(s.ws, TCP_RCV_SCALE);
	peer_take(pr, &s);
	free(k);
	assert_int_equal(acc->calls, 0); /* not before the handshake completes */
	peer_send(pr, F_ACK, NULL, 0);
	assert_int_equal(acc->calls, 1);
	assert_non_null(acc->c);
	return acc->c;
}

static void nonblock_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

/* A connected TCP pair on loopback: SO_LINGER 0 makes real resets. */
static void tcp_pair(int sv[2])
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	sv[1] = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(sv[1], (struct sockaddr *)&sa, sizeof(sa)), 0);
	sv[0] = accept(l, NULL, NULL);
	assert_true(sv[0] >= 0);
	close(l);
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

static ssize_t read_all(int fd, uint8_t *buf, size_t cap, int ms)
{
	size_t got = 0;

	for (int i = 0; i < ms; i++) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return r == 0 ? (ssize_t)got : -errno;
		if (got > 0)
			break;
		spin_ms(1);
	}
	return (ssize_t)got;
}

/* ---- tests ---- */

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
	c = l4_sum(fam, me.addr, it.addr, fam == AF_INET ? 1 : 58, m, sizeof(m), fam != AF_INET);
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
	for (int i = 0; i < 20000 && !(checked == sent && sent >= (uint64_t)TCP_WND * 3); i++) {
		ssize_t r = read(sv[1], got, sizeof(got));
		int burst = 0;

		for (ssize_t j = 0; j < r; j++)
			if (got[j] != (uint8_t)((checked + (uint64_t)j) * 7 + 1))
				fail_msg("byte %llu differs", (unsigned long long)(checked + j));
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
		      (unsigned long long)written, (unsigned long long)st.splice_bytes_out,
		      TCP_SND_BUF);
	assert_true(st.splice_bytes_out <= (uint64_t)TCP_SND_BUF + sizeof(blk));
	assert_true(st.splice_bytes_out >= (uint64_t)TCP_SND_BUF / 2);
	assert_true(written < st.splice_bytes_out + 16u * 1024 * 1024); /* socket buffers */
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
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test_setup_teardown(test_icmp_echo_answered_v4_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ping_matched_and_timed_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syn_unlistened_port_gets_rst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_splice_v4_data_fin_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_splice_v6_data_fin_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rst_from_mesh_resets_local, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_reset_resets_mesh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_reset_before_splice, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dial_refused_connected_timed_out, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader_closes_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unacked_peer_stops_socket_reads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hostile_options_and_windows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_window_probe_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_input_dropped, setup, teardown),
	};

	srand(12345);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
