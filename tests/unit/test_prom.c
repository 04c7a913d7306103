/* The Prometheus text writer: the exact text of families and samples,
 * label value escaping, and the refusals (bad names, counters without
 * _total, a family twice, samples outside a family, repeated labels). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/util/prom.h"

static void writes_help_type_and_samples(void **state)
{
	(void)state;
	struct prom p;
	prom_init(&p);
	assert_int_equal(prom_family(&p, "meshproxy_peers", PROM_GAUGE, "Peers."), 0);
	assert_int_equal(prom_sample_u64(&p, NULL, 0, 3), 0);
	assert_int_equal(prom_family(&p, "meshproxy_drops_total", PROM_COUNTER,
	                             "Dropped packets, by reason."),
	                 0);
	const char *l1[] = {"reason", "replay"};
	const char *l2[] = {"reason", "mac", "dir", "rx"};
	assert_int_equal(prom_sample_u64(&p, l1, 1, 18446744073709551615ull), 0);
	assert_int_equal(prom_sample_u64(&p, l2, 2, 0), 0);
	assert_int_equal(prom_gauge(&p, "meshproxy_rtt_seconds", "RTT.", 0.25), 0);
	assert_string_equal(p.buf,
	                    "# HELP meshproxy_peers Peers.\n"
	                    "# TYPE meshproxy_peers gauge\n"
	                    "meshproxy_peers 3\n"
	                    "# HELP meshproxy_drops_total Dropped packets, by reason.\n"
	                    "# TYPE meshproxy_drops_total counter\n"
	                    "meshproxy_drops_total{reason=\"replay\"} "
	                    "18446744073709551615\n"
	                    "meshproxy_drops_total{reason=\"mac\",dir=\"rx\"} 0\n"
	                    "# HELP meshproxy_rtt_seconds RTT.\n"
	                    "# TYPE meshproxy_rtt_seconds gauge\n"
	                    "meshproxy_rtt_seconds 0.25\n");
	assert_int_equal(p.refused, 0);
	prom_free(&p);
}

/* A peer named by someone else: backslash, quote and newline escaped in
 * label values; in HELP only backslash and newline; bad UTF-8 replaced. */
static void escapes_label_values_and_help(void **state)
{
	(void)state;
	struct prom p;
	prom_init(&p);
	assert_int_equal(prom_family(&p, "x_total", PROM_COUNTER, "a \\ \"b\"\nc"), 0);
	const char *l[] = {"peer", "ev\\il\"\nname\xff"};
	assert_int_equal(prom_sample_u64(&p, l, 1, 1), 0);
	assert_string_equal(p.buf,
	                    "# HELP x_total a \\\\ \"b\"\\nc\n"
	                    "# TYPE x_total counter\n"
	                    "x_total{peer=\"ev\\\\il\\\"\\nname\xef\xbf\xbd\"} 1\n");
	prom_free(&p);
}

static void refuses_bad_names(void **state)
{
	(void)state;
	struct prom p;
	prom_init(&p);
	assert_int_equal(prom_family(&p, "9lives", PROM_GAUGE, ""), -EINVAL);
	assert_int_equal(prom_family(&p, "a-b", PROM_GAUGE, ""), -EINVAL);
	assert_int_equal(prom_family(&p, "", PROM_GAUGE, ""), -EINVAL);
	assert_int_equal(prom_family(&p, "a b", PROM_GAUGE, ""), -EINVAL);
	/* counters end in _total, gauges do not */
	assert_int_equal(prom_family(&p, "bytes", PROM_COUNTER, ""), -EINVAL);
	assert_int_equal(prom_family(&p, "bytes_total", PROM_GAUGE, ""), -EINVAL);
	/* a refused family takes its samples with it */
	assert_int_equal(prom_sample_u64(&p, NULL, 0, 1), -EINVAL);
	char longname[PROM_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(prom_family(&p, longname, PROM_GAUGE, ""), -EINVAL);
	assert_null(p.buf); /* nothing written */
	assert_int_equal(p.refused, 8);

	assert_int_equal(prom_family(&p, "ns:ok_total", PROM_COUNTER, ""), 0);
	const char *bad1[] = {"__name__", "x"};
	const char *bad2[] = {"a:b", "x"};
	const char *bad3[] = {"peer", "x", "peer", "y"};
	const char *bad4[] = {"peer", NULL};
	assert_int_equal(prom_sample_u64(&p, bad1, 1, 1), -EINVAL);
	assert_int_equal(prom_sample_u64(&p, bad2, 1, 1), -EINVAL);
	assert_int_equal(prom_sample_u64(&p, bad3, 2, 1), -EINVAL);
	assert_int_equal(prom_sample_u64(&p, bad4, 1, 1), -EINVAL);
	assert_int_equal(prom_sample_u64(&p, bad1, PROM_LABELS_MAX + 1, 1), -EINVAL);
	assert_int_equal(prom_sample_f64(&p, NULL, 0, -1.0), -EINVAL);
	assert_string_equal(p.buf, "# HELP ns:ok_total \n# TYPE ns:ok_total counter\n");
	prom_free(&p);
}

static void refuses_a_family_twice(void **state)
{
	(void)state;
	struct prom p;
	prom_init(&p);
	assert_int_equal(prom_counter(&p, "a_total", "A.", 1), 0);
	assert_int_equal(prom_gauge(&p, "b", "B.", 2), 0);
	assert_int_equal(prom_counter(&p, "a_total", "A again.", 3), -EEXIST);
	assert_int_equal(prom_sample_u64(&p, NULL, 0, 4), -EINVAL);
	assert_null(strstr(p.buf, "A again"));
	assert_null(strstr(p.buf, " 3\n"));
	assert_int_equal(p.refused, 2);
	/* many families: the list grows */
	char name[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		assert_int_equal(prom_gauge(&p, name, "", i), 0);
	}
	assert_int_equal(prom_gauge(&p, "g299", "", 0), -EEXIST);
	prom_free(&p);
}

static void special_values(void **state)
{
	(void)state;
	struct prom p;
	prom_init(&p);
	assert_int_equal(prom_gauge(&p, "n", "", 0.0 / 0.0), 0);
	assert_int_equal(prom_gauge(&p, "i", "", 1.0 / 0.0), 0);
	assert_int_equal(prom_gauge(&p, "m", "", -1.5), 0);
	assert_non_null(strstr(p.buf, "\nn NaN\n"));
	assert_non_null(strstr(p.buf, "\ni +Inf\n"));
	assert_non_null(strstr(p.buf, "\nm -1.5\n"));
	prom_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(writes_help_type_and_samples),
	    cmocka_unit_test(escapes_label_values_and_help),
	    cmocka_unit_test(refuses_bad_names),
	    cmocka_unit_test(refuses_a_family_twice),
	    cmocka_unit_test(special_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
