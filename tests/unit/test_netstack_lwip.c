/* lwIP as we build it: the assertion policy and our patches.
 *
 * An lwIP assertion logs one line naming the check, file:line and what to
 * do, then aborts (netstack/arch/cc.h says why abort).
 *
 * IPv6 reassembly against fragments that leave a hole. lwIP 2.1.3 checked
 * the gap before a fragment only when it arrived last in offset order, so a
 * fragment that fills in *between* two others hid the hole before it and the
 * datagram was delivered with bytes missing (upstream bug #64767, fixed
 * after 2.1.3; third_party/patches/lwip-0001-ip6-reass-holes.patch is our
 * fix). Fragment sets that disagree on where the datagram ends are not
 * delivered either (lwip-0002-ip6-reass-ends.patch). Each case sends a
 * 32-byte UDP datagram to a port nobody bound, in fragments of 8 bytes, and
 * looks at lwIP's udpNoPorts count (ns_stats.udp_drop): it goes up only when
 * a datagram was reassembled.
 *
 * TCP data the application refused, then aborted on (patch 0003,
 * lwip-0003-tcp-refused-abort.patch). When a receive callback refuses data
 * (ERR_MEM), lwIP keeps it and offers it again before the next segment; if
 * the callback aborts the connection then, lwIP 2.1.3's tcp_input went on
 * to read the freed pcb (rcv_ann_wnd, and could send an ACK from it). Our
 * netstack gets there when its memory budget refuses data and a splice
 * whose local side failed aborts from the receive callback.
 * test_refused_data_abort drives it with a raw lwIP pcb and the test peer.
 * The bad read is of freed memory, so what catches it is ASan
 * (heap-use-after-free in tcp_input): the test fails in build-asan without
 * the patch. In both builds it checks what the peer sees: the delayed ACK
 * of the refused data, then one RST, nothing after it. */
#include "ns_test_peer.h"

#include <signal.h>
#include <sys/wait.h>

#include "lwip/debug.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#define UDP_LEN 32

static uint32_t frag_id = 0x1000;

/* One fragment [off, off + 8) of the datagram udp, with id. */
static void send_frag(const uint8_t *udp, unsigned off, bool last, uint32_t id)
{
	struct ns_addr me, peer;
	uint8_t b[40 + 8 + 8] = {0x60};

	assert_true(ns_addr_parse(&me, OUR6));
	assert_true(ns_addr_parse(&peer, PEER6));
	b[5] = 8 + 8; /* payload: fragment header + 8 bytes */
	b[6] = 44;    /* fragment header */
	b[7] = 64;
	memcpy(b + 8, peer.addr, 16);
	memcpy(b + 24, me.addr, 16);
	b[40] = 17; /* UDP */
	b[42] = (uint8_t)(off >> 8);
	b[43] = (uint8_t)((off & 0xf8) | (last ? 0 : 1));
	b[44] = (uint8_t)(id >> 24);
	b[45] = (uint8_t)(id >> 16);
	b[46] = (uint8_t)(id >> 8);
	b[47] = (uint8_t)id;
	memcpy(b + 48, udp + off, 8);
	ns_input(b, sizeof(b));
}

static uint64_t udp_drops(void)
{
	struct ns_stats st;

	ns_get_stats(&st);
	return st.udp_drop;
}

struct frag {
	unsigned off;
	bool last; /* no "more fragments" flag */
};

/* Sends the fragments f (in that order) and says whether the datagram was
 * delivered. */
static bool deliver_frags(const struct frag *f, size_t n)
{
	struct ns_addr me, peer;
	uint8_t udp[UDP_LEN];
	uint64_t before = udp_drops();
	uint32_t id = frag_id++;
	uint16_t c;

	assert_true(ns_addr_parse(&me, OUR6));
	assert_true(ns_addr_parse(&peer, PEER6));
	for (size_t i = 0; i < sizeof(udp); i++)
		udp[i] = (uint8_t)(i * 3 + 1);
	udp[0] = 0x9c, udp[1] = 0x40; /* source port 40000 */
	udp[2] = 0, udp[3] = 9;       /* to port 9: nobody listens */
	udp[4] = 0, udp[5] = UDP_LEN;
	udp[6] = udp[7] = 0;
	c = l4_sum(AF_INET6, peer.addr, me.addr, 17, udp, sizeof(udp), true);
	udp[6] = (uint8_t)(c >> 8), udp[7] = (uint8_t)c;
	for (size_t i = 0; i < n; i++)
		send_frag(udp, f[i].off, f[i].last, id);
	spin_ms(1);
	cap_clear();
	return udp_drops() != before;
}

/* The fragments at offs, in that order; the one at 24 is the last. */
static bool deliver(const unsigned *offs, size_t n)
{
	struct frag f[8];

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		f[i].off = offs[i];
		f[i].last = offs[i] == UDP_LEN - 8;
	}
	return deliver_frags(f, n);
}

static void test_whole_datagram_reassembled(void **state)
{
	static const unsigned orders[][4] = {
	    {0, 8, 16, 24}, {24, 16, 8, 0}, {0, 24, 8, 16}, {16, 0, 24, 8}};

	(void)state;
	for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++)
		if (!deliver(orders[i], 4))
			fail_msg("order %zu: a complete datagram was not delivered", i);
}

/* The review's case: 0, 24 (last), then 16 slots in between and hides
 * the missing [8, 16). Every order of the three must stay undelivered. */
static void test_hole_never_delivered(void **state)
{
	static const unsigned orders[][3] = {{0, 16, 24}, {0, 24, 16}, {16, 0, 24},
	                                     {16, 24, 0}, {24, 0, 16}, {24, 16, 0}};

	(void)state;
	for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++)
		if (deliver(orders[i], 3))
			fail_msg("fragments at %u, %u, %u (8..16 missing) were delivered",
			         orders[i][0], orders[i][1], orders[i][2]);
	/* A hole further in: 0, 8, 24 (last), then 16 fills [16, 24) but
	 * [8, 16) is there and [24, 32) too; the datagram is whole. */
	static const unsigned whole[] = {0, 8, 24, 16};
	assert_true(deliver(whole, 4));
}

/* Fragment sets that disagree on where the datagram ends (patch 0002): a
 * fragment beyond the last fragment's end, a second last fragment with
 * another end. Linux discards them; lwIP 2.1.3 delivered them (the review's
 * case: 0, 24, 16 (last), 8 counted complete with a length of 24 over a
 * 32-byte chain). */
static void test_inconsistent_ends_never_delivered(void **state)
{
	static const struct {
		const char *what;
		struct frag f[4];
	} cases[] = {
	    {"0, 24, 16 (last), 8", {{0, false}, {24, false}, {16, true}, {8, false}}},
	    {"0, 16 (last), 24, 8", {{0, false}, {16, true}, {24, false}, {8, false}}},
	    {"0, 8, 24 (last), 16 (last)",
	     {{0, false}, {8, false}, {24, true}, {16, true}}},
	    {"24 (last), 16 (last), 0, 8",
	     {{24, true}, {16, true}, {0, false}, {8, false}}},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (deliver_frags(cases[i].f, 4))
			fail_msg("fragments %s were delivered", cases[i].what);
	/* Whole, consistent sets still are. */
	static const unsigned whole[] = {16, 24, 0, 8};
	assert_true(deliver(whole, 4));
}

/* ---- refused data, then abort (patch 0003) ---- */

#define REFUSE_PORT 7003

struct refuser {
	int recv_calls; /* with data */
	bool in_input;  /* the second offer came from the peer's segment */
	bool sending;   /* the test is inside peer_send of that segment */
	int err_calls;  /* lwIP's error callback: ERR_ABRT once */
	err_t err;
	char first[32]; /* what the first offer held */
	size_t first_len;
	bool same_again; /* the second offer held the same bytes */
};

/* First offer: refused (ERR_MEM), so lwIP keeps it as refused_data. Second
 * offer: what our netstack does when a splice's local side has failed (it
 * frees the data, aborts, says so). */
static err_t refuser_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct refuser *r = arg;

	assert_int_equal(err, ERR_OK);
	if (p == NULL)
		return ERR_OK; /* FIN: not sent here */
	r->recv_calls++;
	if (r->recv_calls == 1) {
		r->first_len = pbuf_copy_partial(p, r->first, sizeof(r->first), 0);
		return ERR_MEM;
	}
	r->in_input = r->sending;
	r->same_again = p->tot_len == r->first_len &&
	                pbuf_memcmp(p, 0, r->first, (u16_t)r->first_len) == 0;
	pbuf_free(p);
	tcp_abort(pcb);
	return ERR_ABRT;
}

static void refuser_err(void *arg, err_t err)
{
	struct refuser *r = arg;

	r->err_calls++;
	r->err = err;
}

static err_t refuser_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	if (newpcb == NULL || err != ERR_OK)
		return ERR_VAL;
	ns_src_handshake_done(&newpcb->remote_ip); /* as ns_tcp_accepted does */
	tcp_arg(newpcb, arg);
	tcp_recv(newpcb, refuser_recv);
	tcp_err(newpcb, refuser_err);
	return ERR_OK;
}

/* True when lwIP still holds an active pcb for the peer's port. */
static bool pcb_for_port(uint16_t port)
{
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb != NULL; pcb = pcb->next)
		if (pcb->remote_port == port)
			return true;
	return false;
}

static void refused_then_abort(int fam)
{
	static const char one[] = "refused first", two[] = "then this";
	struct refuser r = {0};
	struct tcp_pcb *pcb, *lpcb;
	struct peer pr;
	struct pkt *k;
	struct seg s;
	uint32_t after_one;
	bool rst = false;

	pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
	assert_non_null(pcb);
	assert_int_equal(tcp_bind(pcb, IP_ANY_TYPE, REFUSE_PORT), ERR_OK);
	lpcb = tcp_listen(pcb);
	assert_non_null(lpcb);
	tcp_arg(lpcb, &r);
	tcp_accept(lpcb, refuser_accept);

	peer_init(&pr, fam, REFUSE_PORT);
	peer_send(&pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN | F_ACK);
	peer_take(&pr, &s);
	free(k);
	peer_send(&pr, F_ACK, NULL, 0);
	assert_true(pcb_for_port(pr.port));

	/* Refused: acknowledged, held by lwIP. */
	peer_send(&pr, F_ACK | F_PSH, one, sizeof(one) - 1);
	after_one = pr.snd_nxt;
	assert_int_equal(r.recv_calls, 1);
	assert_memory_equal(r.first, one, sizeof(one) - 1);
	peer_poll(&pr, false);
	assert_false(pr.got_rst);

	/* The next segment, before any timer: lwIP offers the refused data
	 * first, and the callback aborts. tcp_input must stop there (without
	 * the patch it reads the freed pcb: ASan stops the test here). */
	r.sending = true;
	peer_send(&pr, F_ACK | F_PSH, two, sizeof(two) - 1);
	r.sending = false;
	assert_int_equal(r.recv_calls, 2);
	assert_true(r.in_input);
	assert_true(r.same_again);
	assert_int_equal(r.err_calls, 1);
	assert_int_equal(r.err, ERR_ABRT);
	assert_false(pcb_for_port(pr.port));

	/* The peer sees the delayed ACK of the refused segment (lwIP sends it
	 * while removing the pcb), then the abort's RST, and nothing after it
	 * (that would come from the freed pcb). The dropped segment is never
	 * acknowledged. */
	while ((k = cap_pop()) != NULL) {
		assert_false(rst);
		assert_true(parse(k, &s));
		assert_int_equal(s.dlen, 0);
		assert_true(s.flags & F_ACK);
		assert_int_equal(s.ack, after_one);
		rst = (s.flags & F_RST) != 0;
		free(k);
	}
	assert_true(rst);

	/* The timers find nothing left to offer or free twice. */
	spin_ms(600);
	assert_int_equal(r.recv_calls, 2);
	assert_int_equal(r.err_calls, 1);
	cap_clear();

	tcp_accept(lpcb, NULL);
	assert_int_equal(tcp_close(lpcb), ERR_OK);
	peer_free(&pr);
}

static void test_refused_data_abort(void **state)
{
	(void)state;
	refused_then_abort(AF_INET);
	refused_then_abort(AF_INET6);
}

static void test_assertion_logs_and_aborts(void **state)
{
	char out[1024] = {0};
	size_t n = 0;
	ssize_t r;
	int pfd[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 2);
		signal(SIGABRT, SIG_DFL);
		LWIP_ASSERT("a check that fails", 0);
		_exit(0);
	}
	close(pfd[1]);
	while (n < sizeof(out) - 1 &&
	       (r = read(pfd[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	print_message("%s", out);
	assert_non_null(strstr(out,
	                       " error lwip: assertion \"a check that fails\" failed at "
	                       "tests/unit/test_netstack_lwip.c:"));
	assert_non_null(strstr(out, "restart it, and report this line"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_assertion_logs_and_aborts),
	    cmocka_unit_test_setup_teardown(test_whole_datagram_reassembled, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_hole_never_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inconsistent_ends_never_delivered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_refused_data_abort, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
