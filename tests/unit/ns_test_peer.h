/* Shared by the netstack unit tests (test_netstack*.c): lwIP is
 * single-instance, so each test brings up one stack whose output callback
 * captures packets, and a small hand-rolled TCP peer (seq/ack/window
 * bookkeeping) plays the mesh side. Everything here is static: each test
 * program gets its own copy. */
#ifndef MESH_TEST_NS_PEER_H
#define MESH_TEST_NS_PEER_H

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

#define OUR4  "100.64.0.1"
#define PEER4 "100.64.0.2"
#define OUR6  "fd7a:115c:a1e0::1"
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

static inline void cap_out(void *ctx, const uint8_t *p, size_t len)
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

static inline struct pkt *cap_pop(void)
{
	struct pkt *k;

	if (cap_n == 0)
		return NULL;
	k = capq[cap_head];
	cap_head = (cap_head + 1) % 8192;
	cap_n--;
	return k;
}

static inline void cap_clear(void)
{
	struct pkt *k;

	while ((k = cap_pop()) != NULL)
		free(k);
}

static inline void spin_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* ---- checksums and packet building ---- */

static inline uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static inline uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* Checksum over a pseudo-header (TCP, ICMPv6) or none (ICMPv4). */
static inline uint16_t l4_sum(int fam, const uint8_t *src, const uint8_t *dst,
                              uint8_t proto, const uint8_t *l4, size_t len, bool pseudo)
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
static inline void send_ip(int fam, const uint8_t *src, const uint8_t *dst, uint8_t proto,
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

static inline bool parse(const struct pkt *k, struct seg *s)
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
	s->ack =
	    (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
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
	size_t optlen;       /* (a multiple of 4) */
	int win;             /* window field we send; -1: 65535 */
};

static inline void peer_init(struct peer *pr, int fam, uint16_t it_port)
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

static inline void peer_free(struct peer *pr)
{
	free(pr->rx);
	pr->rx = NULL;
}

/* Sends one segment; options: pr->opts if set, else MSS 1380 and window
 * scale 7 on a SYN. */
static inline void peer_send(struct peer *pr, uint8_t flags, const void *data, size_t len)
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

static inline void peer_take(struct peer *pr, const struct seg *s)
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
static inline unsigned peer_poll(struct peer *pr, bool ack)
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

/* Like peer_poll for several connections: each packet goes to the peer
 * whose port it is addressed to. */
static inline void peers_poll(struct peer **prs, int n, bool ack)
{
	uint32_t before[16];
	struct pkt *k;
	struct seg s;
	int i;

	assert_true(n <= 16);
	for (i = 0; i < n; i++)
		before[i] = prs[i]->rcv_nxt;
	while ((k = cap_pop()) != NULL) {
		assert_true(parse(k, &s));
		assert_int_equal(s.proto, 6);
		for (i = 0; i < n; i++)
			if (s.dport == prs[i]->port && s.sport == prs[i]->it_port &&
			    s.fam == prs[i]->fam)
				break;
		assert_true(i < n);
		peer_take(prs[i], &s);
		free(k);
	}
	for (i = 0; i < n; i++)
		if (ack && prs[i]->synack && prs[i]->rcv_nxt != before[i])
			peer_send(prs[i], F_ACK, NULL, 0);
}

/* ---- fixture ---- */

static inline int setup(void **state)
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

static inline int teardown(void **state)
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

static inline void on_accept(void *ctx, struct ns_tcp *c, const struct ns_addr *src,
                             uint16_t sport, uint16_t dport)
{
	struct accepted *a = ctx;

	a->c = c;
	a->src = *src;
	a->sport = sport;
	a->dport = dport;
	a->calls++;
}

/* Listens on port, runs the handshake from pr, returns the accepted conn. */
static inline struct ns_tcp *handshake_in(struct peer *pr, struct accepted *acc)
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

static inline void nonblock_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
}

/* A connected TCP pair on loopback: SO_LINGER 0 makes real resets. */
static inline void tcp_pair(int sv[2])
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(0x7f000001)};
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

static inline ssize_t read_all(int fd, uint8_t *buf, size_t cap, int ms)
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

#endif
