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
 * a datagram was reassembled. */
#include "ns_test_peer.h"

#include <signal.h>
#include <sys/wait.h>

#include "lwip/debug.h"

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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
