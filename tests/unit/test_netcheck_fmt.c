/* netcheck's report for people and scripts (core/netcheck/netcheck_fmt.c):
 * the text lines the issue shows (regions fastest first, the silent ones
 * last, each relay's STUN and TCP times and the address it saw), the
 * unknown / yes / no forms of the mapping and the UDP line, and the JSON
 * object's keys, nulls and short numbers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/netcheck/netcheck.h"
#include "core/netcheck/netcheck_fmt.h"

static struct sockaddr_in lo(const char *ip, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static void set_lat(struct netcheck_report *r, size_t i, uint32_t id, const char *region,
                    long stun_ms, long tcp_ms)
{
	struct netcheck_relay_result *x = &r->r[i];
	memset(x, 0, sizeof *x);
	x->id = id;
	snprintf(x->region, sizeof x->region, "%s", region);
	x->udp_ok = stun_ms >= 0;
	x->stun_rtt_us = stun_ms >= 0 ? (uint32_t)(stun_ms * 1000) : 0;
	x->tcp_ok = tcp_ms >= 0;
	x->tcp_rtt_us = tcp_ms >= 0 ? (uint32_t)(tcp_ms * 1000) : 0;
	if (i >= r->n)
		r->n = i + 1;
}

static void report_sample(struct netcheck_report *r)
{
	memset(r, 0, sizeof *r);
	set_lat(r, 0, 1, "region-b", -1, -1);
	set_lat(r, 1, 2, "region-a", 1, 0);
	r->r[1].tcp_rtt_us = 900;
	for (size_t i = 0; i < 2; i++) {
		struct netcheck_relay_result *x = &r->r[i];
		x->resolved = true;
		x->stun_port = 3478;
		x->port = 443;
		x->tcp_tried = true;
		snprintf(x->name, sizeof x->name, "relay-%zu", i + 1);
		snprintf(x->host, sizeof x->host, "198.18.%zu.1", i + 1);
	}
	r->r[1].stun_rtt_us = 1200;
	struct sockaddr_in *g = (struct sockaddr_in *)&r->global_v4;
	*g = lo("198.18.0.1", 40213);
	r->r[1].has_mapped = true;
	r->r[1].mapped = r->global_v4;
	r->udp = r->ipv4 = true;
	netcheck_pick_home(r, 0);
}

static void text_report(void **state)
{
	static struct netcheck_report r;
	report_sample(&r);
	char *t = netcheck_fmt_text(&r);
	assert_non_null(t);
	assert_non_null(strstr(t, "UDP:            yes (IPv4 yes, IPv6 no)\n"));
	assert_int_equal(strncmp(t, "UDP:", 4), 0);
	assert_non_null(strstr(t, "Public IPv4:    198.18.0.1:40213\n"));
	assert_non_null(
	    strstr(t, "Mapping varies: unknown (one STUN server answered)\n"));
	assert_non_null(strstr(t, "Home relay:     region-a (relay-2, 1.2 ms)\n"));
	/* Fastest region first, the silent one last. */
	char *a = strstr(t, "  region-a   1.2 ms   relay-2 198.18.2.1:443 stun 1.2 ms "
	                    "(sees 198.18.0.1:40213), tcp 0.90 ms\n");
	char *b = strstr(t, "  region-b   -        relay-1 198.18.1.1:443 no answer\n");
	assert_non_null(a);
	assert_non_null(b);
	assert_true(a < b);
	free(t);
	r.has_mapping_varies = r.mapping_varies = true;
	r.udp = false;
	r.home_id = 0;
	t = netcheck_fmt_text(&r);
	assert_non_null(strstr(t, "Mapping varies: yes: a hard NAT"));
	assert_non_null(strstr(t, "UDP:            no (no STUN server answered"));
	assert_non_null(strstr(t, "Home relay:     none"));
	free(t);
}

static void json_report(void **state)
{
	static struct netcheck_report r;
	report_sample(&r);
	char *s = netcheck_fmt_json_text(&r);
	assert_non_null(s);
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "udp")));
	assert_true(json_is_true(json_object_get(j, "ipv4")));
	assert_true(json_is_false(json_object_get(j, "ipv6")));
	assert_true(json_is_null(json_object_get(j, "mapping_varies")));
	assert_string_equal(json_string_value(json_object_get(j, "global_v4")),
	                    "198.18.0.1:40213");
	assert_true(json_is_null(json_object_get(j, "global_v6")));
	json_t *home = json_object_get(j, "home");
	assert_int_equal(json_integer_value(json_object_get(home, "id")), 2);
	assert_string_equal(json_string_value(json_object_get(home, "region")),
	                    "region-a");
	assert_true(json_real_value(json_object_get(home, "latency_ms")) == 1.2);
	json_t *regs = json_object_get(j, "regions");
	assert_int_equal(json_array_size(regs), 2);
	json_t *r0 = json_array_get(regs, 0);
	assert_string_equal(json_string_value(json_object_get(r0, "region")), "region-a");
	json_t *x = json_array_get(json_object_get(r0, "relays"), 0);
	assert_string_equal(json_string_value(json_object_get(x, "name")), "relay-2");
	assert_string_equal(json_string_value(json_object_get(x, "host")), "198.18.2.1");
	assert_true(json_real_value(json_object_get(x, "stun_rtt_ms")) == 1.2);
	assert_true(json_real_value(json_object_get(x, "tcp_rtt_ms")) == 0.9);
	assert_string_equal(json_string_value(json_object_get(x, "mapped")),
	                    "198.18.0.1:40213");
	json_t *r1 = json_array_get(regs, 1);
	assert_true(json_is_null(json_object_get(r1, "latency_ms")));
	x = json_array_get(json_object_get(r1, "relays"), 0);
	assert_true(json_is_null(json_object_get(x, "stun_rtt_ms")));
	assert_true(json_is_null(json_object_get(x, "mapped")));
	assert_non_null(json_object_get(json_object_get(j, "ignored"), "txid"));
	/* Short numbers, not 1.2000000000000002. */
	assert_non_null(strstr(s, "\"latency_ms\": 1.2,"));
	json_decref(j);
	free(s);
	r.has_mapping_varies = true;
	r.home_id = 0;
	j = netcheck_fmt_json(&r);
	assert_true(json_is_false(json_object_get(j, "mapping_varies")));
	assert_true(json_is_null(json_object_get(j, "home")));
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(text_report),
	    cmocka_unit_test(json_report),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
