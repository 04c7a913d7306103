/* Handshake rate limiter: burst, limit, refill at the configured rate,
 * per-source independence (IPv4 address, IPv6 /64), and bounded memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/wg/ratelimiter.h"

#define SEC  1000000000ULL
#define COST (SEC / WG_RATELIMIT_PER_SEC)
/* An arbitrary non-zero monotonic start. */
#define T0 (1000 * SEC)

static struct sockaddr_in v4(uint32_t host_order)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(51820)};
	s.sin_addr.s_addr = htonl(host_order);
	return s;
}

static struct sockaddr_in6 v6(const char *ip)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(51820)};
	assert_int_equal(inet_pton(AF_INET6, ip, &s.sin6_addr), 1);
	return s;
}

static bool allow(struct wg_ratelimiter *rl, const void *sa, uint64_t now)
{
	return wg_ratelimiter_allow(rl, (const struct sockaddr *)sa, now);
}

static void burst_then_limit_then_refill(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	assert_non_null(rl);
	struct sockaddr_in a = v4(0xc6120001); /* 198.18.0.1 */

	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &a, T0));
	assert_false(allow(rl, &a, T0));
	assert_false(allow(rl, &a, T0 + COST - 1));
	/* One packet's worth of time buys exactly one packet. */
	assert_true(allow(rl, &a, T0 + COST));
	assert_false(allow(rl, &a, T0 + COST));
	assert_true(allow(rl, &a, T0 + 2 * COST));
	assert_false(allow(rl, &a, T0 + 2 * COST));

	/* A long pause refills only up to the burst. */
	uint64_t t = T0 + 60 * SEC;
	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &a, t));
	assert_false(allow(rl, &a, t));

	/* Sustained: over 10 s at a steady 100/s, about PER_SEC/s get through. */
	int passed = 0;
	for (uint64_t k = 1; k <= 1000; k++)
		passed += allow(rl, &a, t + k * (SEC / 100));
	assert_in_range(passed, 10 * WG_RATELIMIT_PER_SEC - 1,
	                10 * WG_RATELIMIT_PER_SEC + WG_RATELIMIT_BURST);
	wg_ratelimiter_free(rl);
}

static void clock_going_backwards_earns_nothing(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	struct sockaddr_in a = v4(0xc6120002);
	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &a, T0));
	assert_false(allow(rl, &a, T0 - SEC));
	assert_false(allow(rl, &a, T0));
	assert_true(allow(rl, &a, T0 + COST));
	wg_ratelimiter_free(rl);
}

static void sources_are_independent(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	struct sockaddr_in a = v4(0xc6120001), b = v4(0xc6120002);
	struct sockaddr_in a_other_port = a;
	a_other_port.sin_port = htons(1);

	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &a, T0));
	assert_false(allow(rl, &a, T0));
	assert_false(allow(rl, &a_other_port, T0)); /* the port does not matter */
	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &b, T0));
	assert_false(allow(rl, &b, T0));
	wg_ratelimiter_free(rl);
}

static void ipv6_is_keyed_by_slash64(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	struct sockaddr_in6 a1 = v6("2001:db8:1:2::1"), a2 = v6("2001:db8:1:2:ffff::9");
	struct sockaddr_in6 b = v6("2001:db8:1:3::1");
	/* An IPv4 address whose bytes equal the IPv6 prefix's top bytes. */
	struct sockaddr_in c = v4(0x20010db8);

	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, i % 2 ? &a1 : &a2, T0));
	assert_false(allow(rl, &a1, T0));
	assert_false(allow(rl, &a2, T0)); /* same /64 shares the bucket */
	assert_true(allow(rl, &b, T0));   /* the next /64 does not */
	assert_true(allow(rl, &c, T0));   /* nor does IPv4 */
	wg_ratelimiter_free(rl);
}

static void unknown_family_is_refused(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	struct sockaddr_un u = {.sun_family = AF_UNIX};
	assert_false(allow(rl, &u, T0));
	assert_false(wg_ratelimiter_allow(rl, NULL, T0));
	wg_ratelimiter_free(rl);
	wg_ratelimiter_free(NULL);
}

static void full_table_does_not_grow(void **state)
{
	struct wg_ratelimiter *rl = wg_ratelimiter_new();
	struct sockaddr_in keep = v4(0xc6120009); /* 198.18.0.9 */

	/* Warm up so any lazy allocation would already have happened. */
	assert_true(allow(rl, &keep, T0));
	struct mallinfo2 before = mallinfo2();

	/* A flood from 200,000 distinct sources, far more than the table holds.
	 * Every new source gets its first packet (a fresh bucket). */
	for (uint32_t i = 0; i < 200000; i++) {
		struct sockaddr_in s = v4(0x64400000 + i);
		assert_true(allow(rl, &s, T0 + i));
	}
	for (uint32_t i = 0; i < 50000; i++) {
		struct sockaddr_in6 s = v6("2001:db8::1");
		s.sin6_addr.s6_addr[4] = (uint8_t)(i >> 8);
		s.sin6_addr.s6_addr[5] = (uint8_t)i;
		assert_true(allow(rl, &s, T0 + 200000 + i));
	}
	struct mallinfo2 after = mallinfo2();
	assert_int_equal(after.uordblks, before.uordblks);
	assert_int_equal(after.arena, before.arena);

	/* Still working afterwards: a source gets its burst and no more. */
	struct sockaddr_in x = v4(0xc6130101); /* 198.19.1.1 */
	uint64_t t = T0 + SEC;
	for (int i = 0; i < WG_RATELIMIT_BURST; i++)
		assert_true(allow(rl, &x, t));
	assert_false(allow(rl, &x, t));
	wg_ratelimiter_free(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(burst_then_limit_then_refill),
	    cmocka_unit_test(clock_going_backwards_earns_nothing),
	    cmocka_unit_test(sources_are_independent),
	    cmocka_unit_test(ipv6_is_keyed_by_slash64),
	    cmocka_unit_test(unknown_family_is_refused),
	    cmocka_unit_test(full_table_does_not_grow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
