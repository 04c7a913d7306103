/* CheckAlive (node/checkalive.c) on the real netstack: echo requests go
 * out through lwIP (captured by ns_test_peer.h); nobody answers. Proves
 * (review dns L9) that a silent address is pinged every round, not every
 * other one (the ping's timeout ends before the next round), and that a
 * silent address is reported as not answering. */
#include "ns_test_peer.h"

#include "config/config.h"
#include "core/util/log.h"
#include "node/checkalive.h"

#include <time.h>

static unsigned pings_out(void)
{
	unsigned n = 0;
	struct pkt *k;
	while ((k = cap_pop()) != NULL) {
		struct seg s;
		if (parse(k, &s) && s.proto == 1 && s.l4len >= 8 && s.l4[0] == 8)
			n++; /* ICMP echo request */
		free(k);
	}
	return n;
}

static void test_silent_address_pinged_every_round(void **state)
{
	(void)state;
	struct cfg_prefix a = {.family = AF_INET, .cidr = 32};
	struct ns_addr x;
	assert_true(ns_addr_parse(&x, "100.64.0.9"));
	memcpy(a.addr, x.addr, 4);
	struct checkalive *c = checkalive_new(base, &a, 1, 1);
	assert_non_null(c);
	unsigned sent = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do { /* rounds at 0, 1, 2 and 3 s */
		spin_ms(10);
		sent += pings_out();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 3500);
	assert_int_equal(sent, 4);
	json_t *j = checkalive_json(c);
	assert_non_null(j);
	assert_false(json_is_true(json_object_get(j, "ok")));
	json_t *e = json_array_get(json_object_get(j, "addresses"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "sent")), 4);
	assert_int_equal(json_integer_value(json_object_get(e, "received")), 0);
	json_decref(j);
	checkalive_free(c);
}

static void test_ping_timeout_below_interval(void **state)
{
	(void)state;
	for (unsigned i = 1; i <= 3600; i++)
		assert_true(checkalive_ping_timeout_ms(i) < i * 1000);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_silent_address_pinged_every_round, setup,
	                                    teardown),
	    cmocka_unit_test(test_ping_timeout_below_interval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
