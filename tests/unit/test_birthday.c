/* Birthday-paradox probing's bounds (core/magicsock/birthday.h): the pacer
 * never allows more than its rate or its maximum, the per-peer backoff
 * doubles from a minute and stops at its cap, probed ports are in range and
 * never repeat; with real sockets, a hard attempt opens at most BD_SOCKS
 * sockets (each a distinct source port), one attempt runs at a time, the
 * losers close the moment one wins; an easy attempt sends at most
 * BD_PROBES_MAX probes at BD_PROBES_PER_SEC, and only a pong from a probed
 * port of the probed address, with the attempt's txid, matches. An easy
 * side probes public IPv4 addresses only, and at most BD_BUDGET_PROBES a
 * minute node-wide however many attempts; a hard side leaves descriptors
 * for the rest of the process. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/magicsock/birthday.h"
#include "core/util/clock.h"

static void pacer_bounds(void **state)
{
	struct bd_pacer pc = {.start_ms = 1000, .rate = 200, .max = 1500};
	/* One at once, then rate per second. */
	assert_int_equal(bd_pacer_due(&pc, 1000), 1);
	assert_int_equal(bd_pacer_due(&pc, 900), 1); /* a clock before start */
	pc.sent = 1;
	assert_int_equal(bd_pacer_due(&pc, 1004), 0);
	assert_int_equal(bd_pacer_due(&pc, 1005), 1);
	assert_int_equal(bd_pacer_due(&pc, 2000), 200);
	/* However late the tick, never past max. */
	assert_int_equal(bd_pacer_due(&pc, 1000 + 3600 * 1000), 1499);
	pc.sent = 1500;
	assert_int_equal(bd_pacer_due(&pc, 1000 + 3600 * 1000), 0);
	pc.sent = 1600; /* cannot happen; still nothing */
	assert_int_equal(bd_pacer_due(&pc, 1000 + 3600 * 1000), 0);
	/* Over any second, at most rate (+1, the first). */
	pc.sent = 0;
	for (int64_t t = 1000; t < 9000; t += 7) {
		pc.sent += bd_pacer_due(&pc, t);
		assert_true(pc.sent <=
		            1 + (uint64_t)(t - 1000) * 200 / 1000);
	}
	assert_int_equal(pc.sent, 1500);
}

static void backoff_doubles_to_cap(void **state)
{
	struct bd_backoff b;
	memset(&b, 0, sizeof(b));
	assert_true(bd_backoff_allows(&b, 0));
	int64_t now = 5000;
	uint32_t want = BD_BACKOFF_MIN_MS;
	for (int i = 0; i < 12; i++) {
		assert_true(bd_backoff_allows(&b, now));
		bd_backoff_started(&b, now);
		assert_false(bd_backoff_allows(&b, now));
		assert_false(bd_backoff_allows(&b, now + want - 1));
		assert_true(bd_backoff_allows(&b, now + want));
		now += want;
		want = want * 2 > BD_BACKOFF_MAX_MS ? BD_BACKOFF_MAX_MS : want * 2;
	}
	assert_int_equal(want, BD_BACKOFF_MAX_MS);
	/* Never more often than once a minute, even after a reset. */
	bd_backoff_reset(&b);
	bd_backoff_started(&b, now);
	assert_false(bd_backoff_allows(&b, now + BD_BACKOFF_MIN_MS - 1));
	assert_true(bd_backoff_allows(&b, now + BD_BACKOFF_MIN_MS));
}

static void ports_in_range_never_twice(void **state)
{
	struct bd_ports *pp = malloc(sizeof(*pp));
	assert_non_null(pp);
	bd_ports_init(pp);
	const uint32_t span = 65536 - BD_PORT_MIN;
	uint8_t *seen = calloc(65536, 1);
	assert_non_null(seen);
	for (uint32_t i = 0; i < span; i++) {
		uint16_t p = bd_ports_pick(pp);
		assert_true(p >= BD_PORT_MIN);
		assert_int_equal(seen[p], 0);
		seen[p] = 1;
		assert_true(bd_ports_used(pp, p));
	}
	/* All used: none left. */
	assert_int_equal(bd_ports_pick(pp), 0);
	free(seen);
	free(pp);
}

/* ---- real sockets ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

struct ctx {
	struct birthday *bd;
	struct event_base *base;
	unsigned pings, hard_pings, ended;
	uint16_t probe_port[BD_PROBES_MAX + 8];
	uint8_t txid[12];
	bool bad_txid;
};

static const uint8_t peer_a[32] = {1}, peer_b[32] = {2};

static void c_rx(void *ctx, uint32_t sock, bool link, const uint8_t *buf, size_t len,
                 const struct sockaddr_storage *from)
{
}

static int c_ping(void *ctx, const uint8_t key[32], uint32_t sock, const uint8_t txid[12],
                  const struct sockaddr_storage *to)
{
	struct ctx *c = ctx;
	if (sock) {
		c->hard_pings++;
		static const uint8_t hello[4] = "bday";
		return bd_send(c->bd, sock, to, hello, sizeof(hello));
	}
	if (c->pings < BD_PROBES_MAX + 8)
		c->probe_port[c->pings] =
		    ntohs(((const struct sockaddr_in *)to)->sin_port);
	if (memcmp(txid, c->txid, 12) != 0)
		c->bad_txid = true;
	c->pings++;
	return 0;
}

static void c_ended(void *ctx, const uint8_t key[32], bool hard)
{
	struct ctx *c = ctx;
	c->ended++;
	event_base_loopbreak(c->base);
}

static struct ctx *ctx_new(void)
{
	struct ctx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->base = event_base_new();
	assert_non_null(c->base);
	struct bd_ops ops = {.rx = c_rx, .ping = c_ping, .ended = c_ended, .ctx = c};
	c->bd = bd_new(c->base, &ops);
	assert_non_null(c->bd);
	return c;
}

static void ctx_free(struct ctx *c)
{
	bd_free(c->bd);
	event_base_free(c->base);
	free(c);
}

static struct sockaddr_storage loop4(uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return ss;
}

static void hard_side_opens_at_most_256_and_closes_losers(void **state)
{
	struct ctx *c = ctx_new();
	/* The easy side's "public address": a socket of ours on loopback. */
	int rx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(rx >= 0);
	struct sockaddr_storage at = loop4(0);
	assert_int_equal(bind(rx, (struct sockaddr *)&at, sizeof(struct sockaddr_in)), 0);
	socklen_t al = sizeof(at);
	assert_int_equal(getsockname(rx, (struct sockaddr *)&at, &al), 0);
	int rcv = 1 << 20;
	setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));

	int fds0 = count_fds();
	char err[128];
	assert_int_equal(bd_hard_start(c->bd, peer_a, &at, 1000, err, sizeof(err)),
	                 BD_SOCKS);
	assert_true(bd_busy(c->bd));
	assert_memory_equal(bd_peer(c->bd), peer_a, 32);
	assert_int_equal(count_fds(), fds0 + BD_SOCKS);
	assert_int_equal(c->hard_pings, BD_SOCKS);
	/* Each socket sent once, each from a port of its own. */
	uint8_t *ports = calloc(65536, 1);
	assert_non_null(ports);
	unsigned got = 0;
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		uint8_t b[16];
		if (recvfrom(rx, b, sizeof(b), 0, (struct sockaddr *)&from, &fl) < 0)
			break;
		assert_int_equal(ports[ntohs(from.sin_port)], 0);
		ports[ntohs(from.sin_port)] = 1;
		got++;
	}
	assert_int_equal(got, BD_SOCKS);
	free(ports);
	/* One attempt at a time, either side. */
	assert_int_equal(bd_hard_start(c->bd, peer_b, &at, 10, err, sizeof(err)), -EBUSY);
	uint8_t txid[12] = {0};
	assert_int_equal(bd_easy_start(c->bd, peer_b, &at, 10, txid), -EBUSY);
	struct bd_stats st;
	bd_get_stats(c->bd, &st);
	assert_int_equal(st.socks_opened, BD_SOCKS);
	assert_int_equal(st.attempts_hard, 1);
	assert_int_equal(st.requests_refused, 0); /* busy is not refused: it waits */

	/* A socket of the attempt wins: the 255 others close at once, the
	 * winner stays (a link) and still sends; the attempt is over. */
	assert_int_equal(bd_win(c->bd, 999999, peer_a), -ENOENT);
	uint32_t id = 0;
	for (uint32_t s = 1; s < 2 * BD_SOCKS + 2 && !id; s++)
		if (bd_fd(c->bd, s) >= 0)
			id = s;
	assert_true(id != 0);
	assert_int_equal(bd_win(c->bd, id, peer_b), -ENOENT); /* another peer's */
	int fd = bd_win(c->bd, id, peer_a);
	assert_true(fd >= 0);
	assert_false(bd_busy(c->bd));
	assert_int_equal(count_fds(), fds0 + 1);
	assert_int_equal(bd_fd(c->bd, id), fd);
	assert_int_equal(bd_send(c->bd, id, &at, (const uint8_t *)"x", 1), 0);
	bd_get_stats(c->bd, &st);
	assert_int_equal(st.wins_hard, 1);
	bd_link_close(c->bd, id);
	assert_int_equal(count_fds(), fds0);
	assert_int_equal(bd_send(c->bd, id, &at, (const uint8_t *)"x", 1), -ENOENT);
	/* A cancelled attempt closes everything too. */
	assert_int_equal(bd_hard_start(c->bd, peer_a, &at, 3, err, sizeof(err)), 3);
	assert_int_equal(count_fds(), fds0 + 3);
	bd_cancel(c->bd, peer_b); /* not its peer: nothing */
	assert_true(bd_busy(c->bd));
	bd_cancel(c->bd, peer_a);
	assert_false(bd_busy(c->bd));
	assert_int_equal(count_fds(), fds0);
	close(rx);
	ctx_free(c);
}

static int64_t mono_ms(void)
{
	return (int64_t)mono_now_ms();
}

/* The easy side's whole attempt: capped at BD_PROBES_MAX however many the
 * peer asks for, paced, no port twice, then over (ended) after the grace. */
static void easy_side_paced_and_capped(void **state)
{
	struct ctx *c = ctx_new();
	randombytes_buf(c->txid, sizeof(c->txid));
	struct sockaddr_storage ip = loop4(0);
	int64_t t0 = mono_ms();
	assert_int_equal(bd_easy_start(c->bd, peer_a, &ip, 65535, c->txid), 0);
	assert_int_equal(c->pings, 1); /* the first at once */
	/* Half a second in: about 100, never more than the rate allows. */
	struct timeval half = {0, 500000};
	event_base_loopexit(c->base, &half);
	event_base_dispatch(c->base);
	int64_t el = mono_ms() - t0;
	assert_true(c->pings <= 1 + (uint64_t)el * BD_PROBES_PER_SEC / 1000);
	assert_true(c->pings >= 40);
	/* To the end. */
	struct timeval most = {20, 0};
	event_base_loopexit(c->base, &most);
	event_base_dispatch(c->base);
	el = mono_ms() - t0;
	assert_int_equal(c->ended, 1);
	assert_false(bd_busy(c->bd));
	assert_int_equal(c->pings, BD_PROBES_MAX);
	assert_true(el >= (int64_t)(BD_PROBES_MAX - 1) * 1000 / BD_PROBES_PER_SEC);
	assert_false(c->bad_txid);
	uint8_t *seen = calloc(65536, 1);
	assert_non_null(seen);
	for (unsigned i = 0; i < c->pings; i++) {
		assert_true(c->probe_port[i] >= BD_PORT_MIN);
		assert_int_equal(seen[c->probe_port[i]], 0);
		seen[c->probe_port[i]] = 1;
	}
	free(seen);
	struct bd_stats st;
	bd_get_stats(c->bd, &st);
	assert_int_equal(st.probes_sent, BD_PROBES_MAX);
	assert_int_equal(st.attempts_easy, 1);
	assert_int_equal(st.wins_easy, 0);
	ctx_free(c);
}

/* Only a pong with the attempt's txid, from the probed address, at a port
 * that was probed, matches; it ends the attempt. */
static void easy_side_matches_only_its_probes(void **state)
{
	struct ctx *c = ctx_new();
	randombytes_buf(c->txid, sizeof(c->txid));
	struct sockaddr_storage ip = loop4(0), from;
	assert_int_equal(bd_easy_start(c->bd, peer_a, &ip, 100, c->txid), 0);
	struct timeval t = {0, 100000};
	event_base_loopexit(c->base, &t);
	event_base_dispatch(c->base);
	assert_true(c->pings >= 2);
	int64_t sent = -1;
	uint8_t other[12];
	memcpy(other, c->txid, 12);
	other[0] ^= 1;
	/* A port not probed. */
	uint16_t unprobed = BD_PORT_MIN;
	for (bool hit = true; hit; unprobed++) {
		hit = false;
		for (unsigned i = 0; i < c->pings; i++)
			hit |= c->probe_port[i] == unprobed;
		if (!hit)
			break;
	}
	from = loop4(unprobed);
	assert_false(bd_easy_match(c->bd, peer_a, c->txid, &from, &sent));
	from = loop4(c->probe_port[1]);
	assert_false(bd_easy_match(c->bd, peer_a, other, &from, &sent));
	assert_false(bd_easy_match(c->bd, peer_b, c->txid, &from, &sent));
	struct sockaddr_storage elsewhere = from;
	((struct sockaddr_in *)&elsewhere)->sin_addr.s_addr =
	    htonl(0xC6120001); /* 198.18.0.1 */
	assert_false(bd_easy_match(c->bd, peer_a, c->txid, &elsewhere, &sent));
	assert_true(bd_busy(c->bd));
	assert_true(bd_easy_match(c->bd, peer_a, c->txid, &from, &sent));
	assert_true(sent > 0);
	assert_false(bd_busy(c->bd));
	/* Over: the same pong again matches nothing. */
	assert_false(bd_easy_match(c->bd, peer_a, c->txid, &from, &sent));
	struct bd_stats st;
	bd_get_stats(c->bd, &st);
	assert_int_equal(st.wins_easy, 1);
	ctx_free(c);
}

static struct sockaddr_storage ip4(const char *a)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;
	s->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &s->sin_addr), 1);
	return ss;
}

/* Only public unicast IPv4 may be probed (1,500 datagrams): never our own
 * machine, a LAN, CGNAT, link-local, multicast or IPv6. The lab's
 * "internet" (198.18.0.0/15) is public here. */
static void target_only_public_ipv4(void **state)
{
	/* RFC 1918 on purpose: the test is about private ranges */
	const char *bad[] = {"0.0.0.0",         "0.1.2.3",         "127.0.0.1",
	                     "127.9.9.9",       "10.1.2.3",        "172.16.0.1",
	                     "172.31.255.254",  "192.168.1.1",     "100.64.0.1",
	                     "100.127.255.254", "169.254.169.254", "224.0.0.1",
	                     "239.1.1.1",       "240.0.0.1",       "255.255.255.255"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss = ip4(bad[i]);
		if (bd_target_ok(&ss))
			fail_msg("%s accepted", bad[i]);
	}
	const char *good[] = {"198.18.0.1",  "198.19.255.254", "8.8.8.8",
	                      "172.15.0.1",  "172.32.0.1",     "100.63.0.1",
	                      "100.128.0.1", "192.169.0.1"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sockaddr_storage ss = ip4(good[i]);
		if (!bd_target_ok(&ss))
			fail_msg("%s refused", good[i]);
	}
	struct sockaddr_storage v6;
	memset(&v6, 0, sizeof(v6));
	v6.ss_family = AF_INET6;
	((struct sockaddr_in6 *)&v6)->sin6_addr.s6_addr[0] = 0x20;
	((struct sockaddr_in6 *)&v6)->sin6_addr.s6_addr[15] = 1;
	assert_false(bd_target_ok(&v6));
}

static void budget_bounds_probes_over_time(void **state)
{
	static const uint8_t pa[32] = {1}, pb[32] = {2}, pc[32] = {3};
	struct bd_budget b;
	memset(&b, 0, sizeof(b));
	assert_int_equal(bd_budget_left(&b, 1000), BD_BUDGET_PROBES);
	assert_int_equal(bd_budget_left_for(&b, 1000, pa), BD_BUDGET_PEER);
	bd_budget_take(&b, 1000, pa, 700);
	assert_int_equal(bd_budget_left(&b, 1000), BD_BUDGET_PROBES - 700);
	assert_int_equal(bd_budget_left_for(&b, 1000, pa), BD_BUDGET_PEER - 700);
	assert_int_equal(bd_budget_left_for(&b, 1000, pb), BD_BUDGET_PEER);
	bd_budget_take(&b, 5000, pb, BD_BUDGET_PEER);
	assert_int_equal(bd_budget_left_for(&b, 5000 + 30000, pb), 0);
	/* what a third peer gets: the node-wide rest, below its share */
	assert_int_equal(bd_budget_left_for(&b, 5000 + 30000, pc),
	                 BD_BUDGET_PROBES - 700 - BD_BUDGET_PEER);
	/* The first reservation ages out a minute after it was made. */
	assert_int_equal(bd_budget_left_for(&b, 1000 + BD_BUDGET_MS - 1, pa),
	                 BD_BUDGET_PEER - 700);
	assert_int_equal(bd_budget_left_for(&b, 1000 + BD_BUDGET_MS, pa), BD_BUDGET_PEER);
	assert_int_equal(bd_budget_left(&b, 1000 + BD_BUDGET_MS),
	                 BD_BUDGET_PROBES - BD_BUDGET_PEER);
	assert_int_equal(bd_budget_left(&b, 5000 + BD_BUDGET_MS), BD_BUDGET_PROBES);
	/* Many small ones: the slots bound them too. */
	memset(&b, 0, sizeof(b));
	for (int i = 0; i < BD_BUDGET_SLOTS; i++)
		bd_budget_take(&b, 100 + i, pa, 1);
	assert_int_equal(bd_budget_left(&b, 200), 0);
}

/* Review M1, on the budget alone: peer A takes all it may every 20 s for
 * three minutes; whenever B asks, at least BD_PROBES_MIN are there for it
 * (before the share, A's first request took the whole budget). */
static void one_peer_leaves_the_rest_to_others(void **state)
{
	static const uint8_t pa[32] = {1}, pb[32] = {2};
	struct bd_budget b;
	memset(&b, 0, sizeof(b));
	uint64_t a_took = 0;
	for (int64_t t = 0; t <= 180000; t += 20000) {
		uint32_t n = bd_budget_left_for(&b, t, pa);
		if (n >= BD_PROBES_MIN) {
			bd_budget_take(&b, t, pa, n);
			a_took += n;
		}
		assert_true(bd_budget_left_for(&b, t, pb) >= BD_PROBES_MIN);
	}
	assert_true(a_took >= 3 * BD_BUDGET_PEER); /* A is not starved either */
	assert_true(a_took <= 4 * BD_BUDGET_PEER);
	assert_int_equal(bd_budget_left_for(&b, 180001, pb), BD_BUDGET_PEER);
}

/* Three attempts back to back (three hard peers, or one asking again and
 * again): together no more than BD_BUDGET_PROBES probes in a minute, and
 * no peer more than its share. */
static void easy_side_budget_is_node_wide(void **state)
{
	static const uint8_t peer_c[32] = {0xcc};
	struct ctx *c = ctx_new();
	randombytes_buf(c->txid, sizeof(c->txid));
	struct sockaddr_storage ip = loop4(0);
	assert_int_equal(bd_easy_start(c->bd, peer_a, &ip, 1000, c->txid), 0);
	bd_cancel(c->bd, peer_a);
	assert_int_equal(bd_easy_start(c->bd, peer_b, &ip, BD_PROBES_MAX, c->txid), 0);
	bd_cancel(c->bd, peer_b);
	/* What is left of A's share and of the budget, not what is asked. */
	assert_int_equal(bd_easy_start(c->bd, peer_a, &ip, BD_PROBES_MAX, c->txid), 0);
	struct timeval most = {5, 0};
	event_base_loopexit(c->base, &most);
	event_base_dispatch(c->base);
	assert_int_equal(c->ended, 1);
	assert_int_equal(c->pings, 2 + (BD_BUDGET_PROBES - 1000 - BD_PROBES_MAX));
	assert_int_equal(bd_easy_start(c->bd, peer_c, &ip, BD_PROBES_MAX, c->txid),
	                 -EAGAIN);
	assert_false(bd_busy(c->bd));
	struct bd_stats st;
	bd_get_stats(c->bd, &st);
	assert_int_equal(st.attempts_easy, 3);
	ctx_free(c);
}

/* With few descriptors left, a hard attempt opens fewer sockets and leaves
 * BD_FD_HEADROOM for the rest (accept(), relay reconnects). */
static void hard_side_leaves_descriptors(void **state)
{
	struct ctx *c = ctx_new();
	struct rlimit old, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int in_use = count_fds();
	low = old;
	low.rlim_cur = (rlim_t)(in_use + BD_FD_HEADROOM + 8);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct sockaddr_storage at = loop4(9);
	char err[128];
	int n = bd_hard_start(c->bd, peer_a, &at, BD_SOCKS, err, sizeof(err));
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_true(fd >= 0);
	close(fd);
	/* Some (the test's own descriptors are not contiguous: a few more
	 * than 8 fit in the holes), never up to the limit. */
	assert_true(n > 0 && n < 8 + BD_FD_HEADROOM);
	bd_cancel(c->bd, peer_a);
	ctx_free(c);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(pacer_bounds),
	    cmocka_unit_test(backoff_doubles_to_cap),
	    cmocka_unit_test(ports_in_range_never_twice),
	    cmocka_unit_test(hard_side_opens_at_most_256_and_closes_losers),
	    cmocka_unit_test(easy_side_paced_and_capped),
	    cmocka_unit_test(easy_side_matches_only_its_probes),
	    cmocka_unit_test(target_only_public_ipv4),
	    cmocka_unit_test(budget_bounds_probes_over_time),
	    cmocka_unit_test(one_peer_leaves_the_rest_to_others),
	    cmocka_unit_test(easy_side_budget_is_node_wide),
	    cmocka_unit_test(hard_side_leaves_descriptors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
