/* Replay window: the cases of the Linux module's counter self-test (in order,
 * reordered within the window, the window edge, too old, duplicates, jumps,
 * the reject_after limit) plus a randomized check against a plain model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/wg/replay.h"

#define W     ((uint64_t)WG_REPLAY_WINDOW)
#define T_LIM (W + 1)
/* WireGuard's REJECT_AFTER_MESSAGES: 2^64 - 2^13 - 1. */
#define REJECT (UINT64_MAX - 8192 - 1)

static struct wg_replay r;

#define OK(c) assert_true(wg_replay_check(&r, (c), REJECT))
#define NO(c) assert_false(wg_replay_check(&r, (c), REJECT))

static void window_is_at_least_2048(void **state)
{
	assert_true(W >= 2048);
	assert_int_equal(W, 8192 - WG_REPLAY_BITS_PER_LONG);
}

static void in_order_and_duplicates(void **state)
{
	wg_replay_init(&r);
	for (uint64_t i = 0; i < 3 * W; i++)
		OK(i);
	for (uint64_t i = 2 * W; i < 3 * W; i++)
		NO(i);
}

static void linux_selftest_sequence(void **state)
{
	wg_replay_init(&r);
	OK(0);
	OK(1);
	NO(1);
	OK(9);
	OK(8);
	OK(7);
	NO(7);
	OK(T_LIM);
	OK(T_LIM - 1);
	NO(T_LIM - 1);
	OK(T_LIM - 2);
	OK(2);
	NO(2);
	OK(T_LIM + 16);
	NO(3); /* now more than W behind */
	NO(T_LIM + 16);
	OK(T_LIM * 4);               /* a jump far beyond the window */
	OK(T_LIM * 4 - (T_LIM - 1)); /* exactly W behind: the edge, accepted */
	NO(10);
	NO(T_LIM * 4 - T_LIM); /* W + 1 behind */
	NO(T_LIM * 4 - (T_LIM + 1));
	OK(T_LIM * 4 - (T_LIM - 2));
	NO(T_LIM * 4 + 1 - T_LIM); /* the edge counter again: duplicate */
	NO(0);
	NO(REJECT);
	OK(REJECT - 1);
	NO(REJECT);
	NO(REJECT - 1);
	OK(REJECT - 2);
	NO(REJECT + 1);
	NO(REJECT + 2);
	NO(REJECT - 2);
	OK(REJECT - 3);
	NO(0);
}

static void full_window_then_edges(void **state)
{
	/* 1..W, then 0 sits exactly at the edge. */
	wg_replay_init(&r);
	for (uint64_t i = 1; i <= W; i++)
		OK(i);
	OK(0);
	NO(0);

	/* 2..W+1: 1 is at the edge, 0 just past it. */
	wg_replay_init(&r);
	for (uint64_t i = 2; i <= W + 1; i++)
		OK(i);
	OK(1);
	NO(0);

	/* Descending through the whole window is all accepted. */
	wg_replay_init(&r);
	for (uint64_t i = W + 1; i > 0; i--)
		OK(i);
	OK(W + 2);
	NO(0);
	NO(1);         /* W + 1 behind */
	OK(2 * W + 2); /* W + 2 is now exactly at the edge */
	NO(W + 1);
	NO(W + 2); /* at the edge, but already seen */
	OK(W + 3);

	/* Descending to 2, then the edge from the other side. */
	wg_replay_init(&r);
	for (uint64_t i = W + 1; i > 1; i--)
		OK(i);
	NO(0);
	OK(1);
	NO(1);
}

static void jumps_clear_stale_bits(void **state)
{
	/* After a jump of any size, counters never seen must be accepted once
	 * even if their bit positions in the ring were used before. */
	static const uint64_t jumps[] = {1,    63,   64,   65,   127,  128,   4095,  8000,
	                                 8128, 8129, 8191, 8192, 8193, 16384, 100000};
	for (size_t j = 0; j < sizeof(jumps) / sizeof(jumps[0]); j++) {
		wg_replay_init(&r);
		for (uint64_t i = 0; i < 8192; i++)
			OK(i);
		uint64_t top = 8191 + jumps[j];
		OK(top);
		/* Everything within the window and above 8191 is new. */
		uint64_t lo = top >= W ? top - W : 0;
		for (uint64_t c = lo; c < top; c++) {
			if (c > 8191)
				OK(c);
			else
				NO(c);
		}
		if (top > W)
			NO(top - W - 1);
	}
}

static void reject_after_is_a_hard_limit(void **state)
{
	wg_replay_init(&r);
	assert_false(wg_replay_check(&r, 100, 100));
	assert_true(wg_replay_check(&r, 99, 100));
	assert_false(wg_replay_check(&r, 0, 0));
	/* The largest counters do not overflow the arithmetic. */
	wg_replay_init(&r);
	assert_true(wg_replay_check(&r, UINT64_MAX - 1, UINT64_MAX));
	assert_false(wg_replay_check(&r, UINT64_MAX - 1, UINT64_MAX));
	assert_false(wg_replay_check(&r, UINT64_MAX, UINT64_MAX));
	assert_true(wg_replay_check(&r, UINT64_MAX - 1 - W, UINT64_MAX));
	assert_false(wg_replay_check(&r, UINT64_MAX - 2 - W, UINT64_MAX));
	assert_false(wg_replay_check(&r, 0, UINT64_MAX));
}

static uint64_t rng_state = 0xda3e39cb94b95bdbULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Model: accept iff below the limit, never accepted before, and no more
 * than W behind the greatest accepted counter. */
static void random_matches_model(void **state)
{
	const uint64_t space = 1u << 24;
	uint8_t *seen = test_calloc(space, 1);
	bool any = false;
	uint64_t greatest = 0, base = 0, accepted = 0;

	wg_replay_init(&r);
	for (int i = 0; i < 200000; i++) {
		uint64_t c;
		switch (rng() % 64) {
		case 0: /* a jump, often beyond the window */
			base += rng() % (2 * W);
			c = base;
			break;
		case 1:
		case 2: /* far in the past */
			c = base > 2 * W ? base - W - rng() % W : 0;
			break;
		default: /* reordering around the front */
			c = base + rng() % 64;
			c = c > W + 64 ? c - rng() % (W + 64) : c;
			base += rng() % 3;
			break;
		}
		if (c >= space - 1 || base >= space - 4 * W)
			break;
		bool want = !seen[c] && (!any || c + W >= greatest);
		assert_int_equal(wg_replay_check(&r, c, space - 1), want);
		if (want) {
			seen[c] = 1;
			accepted++;
			if (!any || c > greatest)
				greatest = c;
			any = true;
		}
	}
	assert_true(accepted > 10000);
	test_free(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(window_is_at_least_2048),
	    cmocka_unit_test(in_order_and_duplicates),
	    cmocka_unit_test(linux_selftest_sequence),
	    cmocka_unit_test(full_window_then_edges),
	    cmocka_unit_test(jumps_clear_stale_bits),
	    cmocka_unit_test(reject_after_is_a_hard_limit),
	    cmocka_unit_test(random_matches_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
