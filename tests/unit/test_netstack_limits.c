/* Limits against a hostile mesh peer (netstack/limits.c): each source's
 * share of the half-open handshakes, the per-source connection cap, and
 * the memory budget (refusals, windows that stay nearly closed, the small
 * window before the splice), driven by the hand-rolled mesh peer of
 * ns_test_peer.h. */
#include "ns_test_peer.h"

#include "lwip/priv/tcp_priv.h"
#include "ns_hooks.h" /* NS_OOSEQ_MAX_BYTES */

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

/* Like peer_poll, for pr's packets only (others are dropped). */
static void poll_port(struct peer *pr)
{
	struct pkt *k;
	struct seg sg;

	while ((k = cap_pop()) != NULL) {
		if (parse(k, &sg) && sg.dport == pr->port)
			peer_take(pr, &sg);
		free(k);
	}
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
	poll_port(pr);
	return off;
}

/* Connections from one source whose local readers are stuck, opened first
 * (all admitted) and then filled to their windows: together they take
 * more than the budget (NS_MEM_LIMIT_MIN), and their source holds more
 * than its share. */
#define FILL_N 18
struct filler {
	struct peer pr[FILL_N];
	int sv[FILL_N][2];
};

static void blast(struct peer *pr, const uint8_t *data, int n);

static void fill_budget(struct filler *f, uint16_t port, uint8_t src)
{
	static uint8_t data[1000];
	static struct accepted acc; /* the listener's, for the test's life */
	int sz = 4096, i;

	memset(data, 'a', sizeof(data));
	assert_int_equal(ns_tcp_listen(port, on_accept, &acc), 0);
	for (i = 0; i < FILL_N; i++) {
		struct ns_tcp *c;

		peer_init(&f->pr[i], AF_INET, port);
		peer_from(&f->pr[i], src);
		f->pr[i].port = (uint16_t)(20000 + i);
		c = handshake_in(&f->pr[i], &acc);
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sv[i]), 0);
		setsockopt(f->sv[i][1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		fcntl(f->sv[i][1], F_SETFL, fcntl(f->sv[i][1], F_GETFL) | O_NONBLOCK);
		assert_int_equal(ns_splice_start(c, f->sv[i][1], NULL, 0), 0);
	}
	for (i = 0; i < FILL_N; i++)
		blast(&f->pr[i], data, 1100);
	assert_true(ns_mem_over());
}

/* The stuck readers go away: their connections are reset, the budget
 * empties. */
static void fill_free(struct filler *f)
{
	for (int i = 0; i < FILL_N; i++) {
		close(f->sv[i][0]);
		peer_free(&f->pr[i]);
	}
	for (int i = 0; i < 50 && ns_ctx.st.tcp_active > 1; i++)
		spin_ms(1);
	for (int i = 0; i < 50 && ns_mem_over(); i++)
		spin_ms(1);
	ns_clock_offset_ms += 1000; /* the sweep measures again */
	ns_check_timeouts();
	cap_clear();
}

/* Over the budget: the source that holds it is refused new connections
 * (another source and the node's own proxy clients are not), its
 * connection whose reader is stuck holds no more than NS_MEM_FLOOR and a
 * segment, its window stays near NS_MEM_FLOOR, and it opens when the
 * budget has room again. */
static void test_budget_over(void **state)
{
	struct ns_limits l = {.mem_limit = NS_MEM_LIMIT_MIN,
	                      .max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT};
	static uint8_t data[512 * 1024], sink[256 * 1024];
	static struct filler f;
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

	fill_budget(&f, 191, 2); /* the same source as pr */
	cap_clear();
	assert_true(ns_mem_admit()); /* the node's own clients */
	peer_init(&pb, AF_INET, 91);
	peer_from(&pb, 2);
	assert_false(handshake_ok(&pb, &acc));
	peer_free(&pb);
	peer_init(&pb, AF_INET, 91);
	peer_from(&pb, 3);
	assert_true(handshake_ok(&pb, &acc));
	ns_tcp_abort(acc.c);
	cap_clear();
	peer_free(&pb);
	ns_get_stats(&st);
	assert_int_equal(st.tcp_refused_mem, 1);
	assert_int_equal(st.front_refused_mem, 0);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start(c, sv[1], NULL, 0), 0);
	/* The peer pushes at a reader that does not read. */
	for (int round = 0; round < 100; round++)
		push_window(&pr, iss, data, sizeof(data));
	assert_true(c->rxq_bytes <= NS_MEM_FLOOR + 2000);
	assert_true(pr.wnd <= NS_MEM_FLOOR + 2000);
	ns_get_stats(&st);
	assert_true(st.mem_used >= NS_MEM_LIMIT_MIN);

	/* The other connections go: the reader drains, the window opens. */
	fill_free(&f);
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

/* Tiny segments are charged for their pbufs, not only their bytes: at
 * least what a 1-byte IPv6 segment with options really costs (~160 bytes:
 * the pbuf, its headers, malloc's header, the ring slot). */
static void test_budget_charges_pbufs(void **state)
{
	static const uint8_t nops[20] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	                                 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
	struct accepted acc;
	struct peer pr;
	int sv[2];
	size_t before;

	(void)state;
	assert_int_equal(ns_tcp_listen(92, on_accept, &acc), 0);
	peer_init(&pr, AF_INET6, 92);
	handshake_in(&pr, &acc);
	before = ns_mem_used();
	pr.opts = nops;
	pr.optlen = sizeof(nops);
	for (int i = 0; i < 100; i++)
		peer_send(&pr, F_ACK | F_PSH, "z", 1);
	assert_true(ns_mem_used() >= before + 100 * (1 + 160));
	nonblock_pair(sv);
	assert_int_equal(ns_splice_start(acc.c, sv[1], NULL, 0), 0);
	spin_ms(2);
	/* Only the ring's slots stay charged while the connection lives. */
	assert_int_equal(ns_mem_used(), before + acc.c->rxq_cap * sizeof(struct pbuf *));
	close(sv[0]);
	peer_free(&pr);
}

/* The node-wide accounting is back to zero once every connection is gone
 * (each free path uncharges what it charged). */
static int teardown_zero(void **state)
{
	int r = teardown(state);

	assert_int_equal(ns_debug_mem_left(), 0);
	assert_int_equal(ns_mem_used(), 0);
	return r;
}

static struct tcp_pcb *find_pcb(uint16_t port)
{
	struct tcp_pcb *p;

	for (p = tcp_active_pcbs; p != NULL; p = p->next)
		if (p->local_port == port)
			return p;
	return NULL;
}

/* Answers every segment from the stack with an ACK that acknowledges
 * nothing new and a zero window (a peer keeping an orphan alive). */
static void answer_zero(struct peer *pr)
{
	struct pkt *k;
	struct seg s;

	while ((k = cap_pop()) != NULL) {
		if (parse(k, &s) && !(s.flags & F_RST))
			peer_send(pr, F_ACK, NULL, 0);
		free(k);
	}
}

/* A service behind port writes len bytes to a peer that announces a zero
 * window and closes; the peer then sends its FIN: both FINs are through,
 * the node forgets the connection, and lwIP keeps the pcb with the data
 * (an orphan). Returns the orphan. */
static struct tcp_pcb *make_orphan(struct peer *pr, uint16_t port, size_t len)
{
	static uint8_t buf[64 * 1024];
	struct accepted acc;
	struct ns_tcp *c;
	struct tcp_pcb *p;
	size_t written = 0;
	int sv[2];

	memset(buf, 'q', sizeof(buf));
	assert_int_equal(ns_tcp_listen(port, on_accept, &acc), 0);
	peer_init(pr, AF_INET, port);
	c = handshake_in(pr, &acc);
	pr->win = 0;
	peer_send(pr, F_ACK, NULL, 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start(c, sv[1], NULL, 0), 0);
	for (int i = 0; i < 5000 && written < len; i++) {
		size_t n = len - written > sizeof(buf) ? sizeof(buf) : len - written;
		ssize_t w = write(sv[0], buf, n);

		if (w > 0)
			written += (size_t)w;
		spin_ms(1);
		answer_zero(pr);
	}
	assert_int_equal(written, len);
	close(sv[0]); /* the service closes after its answer */
	for (int i = 0; i < 300; i++) {
		spin_ms(1);
		answer_zero(pr);
	}
	peer_send(pr, F_ACK | F_FIN, NULL, 0);
	for (int i = 0; i < 50; i++) {
		spin_ms(1);
		answer_zero(pr);
	}
	p = find_pcb(port);
	assert_non_null(p);
	assert_null(p->callback_arg); /* forgotten by the node */
	assert_int_equal(ns_ctx.st.tcp_active, 0);
	assert_true(TCP_SND_BUF - p->snd_buf >= len / 2);
	return p;
}

/* review mem C1: an orphan's send queue is charged to the budget, and a
 * peer that answers every probe with an ACK of nothing (which resets
 * lwIP's probe and retransmission counts) still loses it after
 * NS_ORPHAN_IDLE_MS. */
static void test_orphan_charged_and_reaped(void **state)
{
	struct ns_stats st;
	struct peer pr;
	size_t len = 300 * 1024;

	(void)state;
	make_orphan(&pr, 93, len);
	ns_clock_offset_ms += 1000; /* the sweep */
	ns_check_timeouts();
	assert_true(ns_mem_used() >= len);
	for (int i = 0; i < (NS_ORPHAN_IDLE_MS + 5000) / TCP_TMR_INTERVAL; i++) {
		ns_clock_offset_ms += TCP_TMR_INTERVAL;
		ns_check_timeouts();
		answer_zero(&pr);
	}
	assert_null(find_pcb(93));
	assert_int_equal(ns_mem_used(), 0);
	ns_get_stats(&st);
	assert_int_equal(st.orphan_reset, 1);
	peer_free(&pr);
}

/* An orphan whose peer keeps taking its data, slowly (a 128-byte window,
 * its ACKs once a second), lives on past NS_ORPHAN_IDLE_MS: only a minute
 * without progress ends it. */
static void test_orphan_with_progress_lives(void **state)
{
	struct ns_stats st;
	struct tcp_pcb *p;
	struct peer pr;
	struct pkt *k;
	struct seg sg;
	uint32_t start;

	(void)state;
	p = make_orphan(&pr, 95, 300 * 1024);
	start = p->lastack;
	pr.win = 1; /* << 7: 128 bytes */
	peer_send(&pr, F_ACK, NULL, 0);
	for (int i = 1; i <= 2 * NS_ORPHAN_IDLE_MS / TCP_TMR_INTERVAL; i++) {
		ns_clock_offset_ms += TCP_TMR_INTERVAL;
		ns_check_timeouts();
		if (i % (1000 / TCP_TMR_INTERVAL) != 0)
			continue;
		while ((k = cap_pop()) != NULL) {
			if (parse(k, &sg))
				peer_take(&pr, &sg);
			free(k);
		}
		peer_send(&pr, F_ACK, NULL, 0);
	}
	p = find_pcb(95);
	assert_non_null(p);
	assert_true(p->lastack != start);
	ns_get_stats(&st);
	assert_int_equal(st.orphan_reset, 0);
	peer_free(&pr);
}

/* Over the budget orphans holding data are the first to go. */
static void test_orphan_reset_over_budget(void **state)
{
	struct ns_stats st;
	struct peer pr;

	(void)state;
	make_orphan(&pr, 96, 64 * 1024);
	ns_mem_charge(NS_MEM_LIMIT_MAX_DEFAULT * 2); /* the proxy took it all */
	ns_clock_offset_ms += 1000;
	ns_check_timeouts();
	assert_null(find_pcb(96));
	ns_get_stats(&st);
	assert_int_equal(st.orphan_reset, 1);
	ns_mem_uncharge(NS_MEM_LIMIT_MAX_DEFAULT * 2);
	cap_clear();
	peer_free(&pr);
}

static size_t ooseq_bytes(void)
{
	size_t n = 0;

	for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
		for (struct tcp_seg *sg = p->ooseq; sg != NULL; sg = sg->next)
			n += sg->p->tot_len;
	return n;
}

/* review mem H1: a peer that sends everything but the byte at rcv_nxt
 * parks out-of-order data: at most NS_OOSEQ_MAX_BYTES (the window) per
 * connection, and charged to the budget; delivered and uncharged once the
 * byte comes. */
static void test_ooseq_capped_and_charged(void **state)
{
	static uint8_t data[1000];
	struct accepted acc;
	struct ns_tcp *c;
	struct peer pr;
	uint32_t sbase;
	size_t oo, got = 0;
	uint8_t sink[65536];
	int sv[2];

	(void)state;
	memset(data, 'o', sizeof(data));
	assert_int_equal(ns_tcp_listen(94, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 94);
	c = handshake_in(&pr, &acc);
	nonblock_pair(sv);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start(c, sv[1], NULL, 0), 0);
	cap_clear();
	sbase = pr.snd_nxt;
	for (int i = 0; i < 1040; i++) {
		pr.snd_nxt = sbase + 1 + (uint32_t)i * 1000;
		peer_send(&pr, F_ACK, data, sizeof(data));
		cap_clear();
	}
	oo = ooseq_bytes();
	assert_true(oo > 0);
	assert_true(oo <= NS_OOSEQ_MAX_BYTES);
	ns_clock_offset_ms += 1000; /* the sweep */
	ns_check_timeouts();
	cap_clear();
	assert_true(ns_mem_used() >= oo);
	/* The missing byte: the held segments are delivered. */
	pr.snd_nxt = sbase;
	peer_send(&pr, F_ACK, "!", 1);
	for (int i = 0; i < 200 && got < 1 + oo; i++) {
		ssize_t r = read(sv[0], sink, sizeof(sink));

		if (r > 0)
			got += (size_t)r;
		spin_ms(1);
		cap_clear();
	}
	assert_int_equal(got, 1 + oo);
	ns_clock_offset_ms += 1000;
	ns_check_timeouts();
	cap_clear();
	assert_int_equal(ns_mem_used(), c->rxq_cap * sizeof(struct pbuf *));
	close(sv[0]);
	peer_free(&pr);
}

/* Sends n in-order segments of 1000 bytes blindly (the stack keeps what
 * its window allows) and drops whatever the stack sends back. */
static void blast(struct peer *pr, const uint8_t *data, int n)
{
	for (int i = 0; i < n; i++)
		peer_send(pr, F_ACK | F_PSH, data, 1000);
	cap_clear();
}

/* review mem M3: a connection spliced before the budget filled. Over it,
 * it takes nothing more once it holds NS_MEM_FLOOR (on_recv refuses), and
 * when its reader drains, what it took is not given back to the window
 * (the flush's give limit); the accounting is back to zero after a
 * reset. */
static void test_budget_fills_after_splice(void **state)
{
	struct ns_limits l = {.mem_limit = NS_MEM_LIMIT_MIN,
	                      .max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT};
	struct ns_splice_opts o = {.buf_limit = 256 * 1024};
	static uint8_t data[1000], sink[256 * 1024];
	static struct filler f;
	struct accepted acc;
	struct ns_tcp *c;
	struct peer pr;
	int sv[2], sz = 4096;
	size_t held;

	(void)state;
	memset(data, 'f', sizeof(data));
	ns_set_limits(&l);
	assert_int_equal(ns_tcp_listen(97, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 97);
	c = handshake_in(&pr, &acc);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	assert_int_equal(ns_splice_start_ex(c, sv[1], NULL, 0, &o), 0);
	blast(&pr, data, 64); /* the reader is stuck: ~64 KB queued */
	held = c->rxq_bytes;
	assert_true(held >= 32 * 1024);

	fill_budget(&f, 197, 2); /* the same source fills the budget */
	blast(&pr, data, 150); /* within the window lwIP granted */
	assert_true(c->rxq_bytes <= held + 2000);

	/* The reader drains everything. */
	for (int i = 0; i < 200; i++) {
		while (read(sv[0], sink, sizeof(sink)) > 0)
			;
		spin_ms(1);
		ns_clock_offset_ms += 250;
		ns_check_timeouts();
		poll_port(&pr);
	}
	peer_send(&pr, F_ACK, NULL, 0);
	ns_clock_offset_ms += 20;
	ns_check_timeouts();
	poll_port(&pr);
	/* What the reader took is not given back: the window stays below the
	 * 256 KiB it would reopen to. */
	assert_true(pr.wnd <= 256 * 1024 - 48 * 1024);

	fill_free(&f);
	pr.snd_nxt = c->pcb->rcv_nxt; /* a reset the stack takes */
	peer_send(&pr, F_RST, NULL, 0);
	spin_ms(2);
	ns_clock_offset_ms += 1000;
	ns_check_timeouts();
	cap_clear();
	assert_int_equal(ns_mem_used(), 0);
	close(sv[0]);
	peer_free(&pr);
	l.mem_limit = 0;
	ns_set_limits(&l);
}

/* review mem H2: one source filling the budget is refused new connections;
 * another source, and the node's own proxy clients, are not. */
static void test_budget_fair_share(void **state)
{
	struct ns_limits l = {.mem_limit = NS_MEM_LIMIT_MIN,
	                      .max_conns_per_src = NS_CONNS_PER_SRC_DEFAULT};
	static struct filler f;
	struct accepted acc;
	struct ns_stats st;
	struct peer pb;

	(void)state;
	ns_set_limits(&l);
	assert_int_equal(ns_tcp_listen(98, on_accept, &acc), 0);
	fill_budget(&f, 198, 2);
	cap_clear();
	/* A holds more than its share: refused. */
	peer_init(&pb, AF_INET, 98);
	peer_from(&pb, 2);
	pb.port = 19999;
	assert_false(handshake_ok(&pb, &acc));
	peer_free(&pb);
	/* B and the node's own clients still get in. */
	peer_init(&pb, AF_INET, 98);
	peer_from(&pb, 3);
	assert_true(handshake_ok(&pb, &acc));
	ns_tcp_abort(acc.c);
	cap_clear();
	peer_free(&pb);
	assert_true(ns_mem_admit());
	ns_get_stats(&st);
	assert_int_equal(st.tcp_refused_mem, 1);
	assert_int_equal(st.front_refused_mem, 0);
	fill_free(&f);
	l.mem_limit = 0;
	ns_set_limits(&l);
}

/* review mem L5 and M3: the proxy's charges survive a netstack restart
 * (they are uncharged later), and an uncharge beyond them is counted, not
 * hidden. */
static void test_charges_survive_restart(void **state)
{
	struct ns_stats st;

	ns_mem_charge(1000);
	teardown(state);
	setup(state);
	assert_int_equal(ns_mem_used(), 1000);
	ns_mem_uncharge(1000);
	assert_int_equal(ns_mem_used(), 0);
	ns_get_stats(&st);
	assert_int_equal(st.mem_uncharge_excess, 0);
	ns_mem_uncharge(1);
	ns_get_stats(&st);
	assert_int_equal(st.mem_uncharge_excess, 1);
	assert_int_equal(ns_mem_used(), 0);
}

/* review mem L1: a pending handshake does not make every 10 ms tick walk
 * the connections; the half-open counts are redone once a second. */
static void test_recount_once_a_second(void **state)
{
	struct accepted acc;
	struct peer pr;
	uint64_t before;

	(void)state;
	assert_int_equal(ns_tcp_listen(99, on_accept, &acc), 0);
	peer_init(&pr, AF_INET, 99);
	peer_send(&pr, F_SYN, NULL, 0); /* never completed */
	cap_clear();
	assert_int_equal(ns_tcp_half_open, 1);
	ns_clock_offset_ms += 1000;
	ns_check_timeouts();
	before = ns_debug_recounts();
	for (int i = 0; i < 99; i++) {
		ns_clock_offset_ms += 10;
		ns_check_timeouts();
	}
	cap_clear();
	assert_true(ns_debug_recounts() - before <= 1);
	peer_free(&pr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_half_open_share_per_source, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_conns_per_source_cap, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_window_small_until_splice, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_budget_over, setup, teardown_zero),
	    cmocka_unit_test_setup_teardown(test_budget_charges_pbufs, setup, teardown_zero),
	    cmocka_unit_test_setup_teardown(test_orphan_charged_and_reaped, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_orphan_with_progress_lives, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_orphan_reset_over_budget, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_ooseq_capped_and_charged, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_budget_fills_after_splice, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_budget_fair_share, setup, teardown_zero),
	    cmocka_unit_test_setup_teardown(test_charges_survive_restart, setup,
	                                    teardown_zero),
	    cmocka_unit_test_setup_teardown(test_recount_once_a_second, setup,
	                                    teardown_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
