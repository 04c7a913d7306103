/* core/control/msg: the control protocol's JSON bodies.
 *  - every message type survives encode -> decode unchanged;
 *  - a MAP_FULL with 2,000 peers round-trips (time and bytes per peer are
 *    printed for the scale test);
 *  - addresses in every accepted form.
 * Bad input and the encoder's caps: test_control_msg_bad.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/control/msg.h"


static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#include "ctl_msg_fixture.h"

/* Encodes m, decodes the bytes as the same type, returns the copy. */
static void roundtrip(const struct ctl_msg *m, struct ctl_msg *back, uint8_t **json,
                      size_t *json_len)
{
	struct ctl_msg_err err;
	int r = ctl_msg_encode(m, json, json_len, &err);
	if (r != 0)
		fail_msg("encode: %d %s", r, err.text);
	r = ctl_msg_decode(m->type, *json, *json_len, back, &err);
	if (r != 0)
		fail_msg("decode: %d %s\n%.*s", r, err.text, (int)*json_len, *json);
	assert_int_equal(back->type, m->type);
}

static void test_register_req(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ}, back;
	struct ctl_register_req *q = &m.u.reg_req;
	uint8_t *json;
	size_t len;

	snprintf(q->auth_key, sizeof(q->auth_key), "mk-auth-0123456789abcdef");
	fill_key(q->node_key, 1);
	fill_key(q->disco_key, 2);
	snprintf(q->hostname, sizeof(q->hostname), "Laptop_7.local");
	snprintf(q->os, sizeof(q->os), "linux");
	snprintf(q->version, sizeof(q->version), "0.4.0 (git abc) \xc3\xa9t\xc3\xa9");
	q->n_tags = 2;
	snprintf(q->tags[0], sizeof(q->tags[0]), "tag:web");
	snprintf(q->tags[1], sizeof(q->tags[1]), "tag:db");
	roundtrip(&m, &back, &json, &len);
	assert_memory_equal(&back.u.reg_req, q, sizeof(*q));
	printf("  REGISTER_REQ: %.*s\n", (int)len, json);
	free(json);
	ctl_msg_free(&back);
	/* No auth key, no tags. */
	memset(q->auth_key, 0, sizeof(q->auth_key));
	memset(q->tags, 0, sizeof(q->tags));
	q->n_tags = 0;
	roundtrip(&m, &back, &json, &len);
	assert_memory_equal(&back.u.reg_req, q, sizeof(*q));
	free(json);
	ctl_msg_free(&back);
	/* ctl_msg_free wipes the secret. */
	snprintf(back.u.reg_req.auth_key, sizeof(back.u.reg_req.auth_key), "secret");
	back.type = CTL_MSG_REGISTER_REQ;
	ctl_msg_free(&back);
	assert_int_equal(back.u.reg_req.auth_key[0], 0);
}

static void test_register_resp(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP}, back;
	struct ctl_register_resp *s = &m.u.reg_resp;
	uint8_t *json;
	size_t len;

	s->status = CTL_REG_OK;
	s->node_id = 42;
	snprintf(s->name, sizeof(s->name), "laptop");
	snprintf(s->fqdn, sizeof(s->fqdn), "laptop.mesh.example");
	memcpy(s->ipv4, (uint8_t[]){100, 64, 0, 5}, 4);
	memcpy(s->ipv6, (uint8_t[]){0xfd, 0x7a, 0x11, 0x5c, [15] = 5}, 16);
	snprintf(s->domain, sizeof(s->domain), "mesh.example");
	roundtrip(&m, &back, &json, &len);
	assert_memory_equal(&back.u.reg_resp, s, sizeof(*s));
	printf("  REGISTER_RESP: %.*s\n", (int)len, json);
	free(json);
	ctl_msg_free(&back);

	for (int st = CTL_REG_PENDING; st <= CTL_REG_REFUSED; st++) {
		memset(s, 0, sizeof(*s));
		s->status = (enum ctl_reg_status)st;
		s->code = st == CTL_REG_REFUSED ? CTL_REASON_AUTH_KEY_EXPIRED : 0;
		snprintf(s->reason, sizeof(s->reason), "%s",
		         st == CTL_REG_REFUSED ? "auth key expired on 2026-11-01" : "");
		roundtrip(&m, &back, &json, &len);
		assert_memory_equal(&back.u.reg_resp, s, sizeof(*s));
		free(json);
		ctl_msg_free(&back);
	}
}

static void test_endpoints(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_ENDPOINTS}, back;
	struct ctl_endpoints *e = &m.u.endpoints;
	uint8_t *json;
	size_t len;

	for (unsigned i = 0; i < CTL_ENDPOINTS_MAX; i++) {
		char s[64];
		if (i % 2)
			snprintf(s, sizeof(s), "[2001:db8::%x]:%u", i, 1 + i * 4000);
		else
			snprintf(s, sizeof(s), "198.18.%u.1:%u", i, 65535 - i);
		assert_true(ctl_endpoint_parse(s, &e->ep[i]));
	}
	e->n = CTL_ENDPOINTS_MAX;
	e->home_relay = 7;
	roundtrip(&m, &back, &json, &len);
	assert_memory_equal(&back.u.endpoints, e, sizeof(*e));
	free(json);
	ctl_msg_free(&back);
}

static void assert_peers_equal(const struct ctl_peer *a, const struct ctl_peer *b,
                               size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_memory_equal(&a[i], &b[i], sizeof(a[i]));
}

static void assert_maps_equal(const struct ctl_map_full *a, const struct ctl_map_full *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->self_id, b->self_id);
	assert_string_equal(a->self_name, b->self_name);
	assert_int_equal(a->n_self_addrs, b->n_self_addrs);
	assert_memory_equal(a->self_addrs, b->self_addrs, sizeof(a->self_addrs));
	assert_string_equal(a->dns_domain, b->dns_domain);
	assert_memory_equal(&a->magic_dns, &b->magic_dns, sizeof(a->magic_dns));
	assert_int_equal(a->n_relays, b->n_relays);
	for (size_t i = 0; i < a->n_relays; i++)
		assert_memory_equal(&a->relays[i], &b->relays[i], sizeof(a->relays[i]));
	assert_int_equal(a->n_peers, b->n_peers);
	assert_peers_equal(a->peers, b->peers, a->n_peers);
}

static void test_map_full(void **state)
{
	struct ctl_msg m, back;
	uint8_t *json;
	size_t len;

	make_map(&m, 2);
	m.u.map.relays = calloc(1, sizeof(*m.u.map.relays));
	m.u.map.n_relays = 1;
	m.u.map.relays[0].id = 1;
	m.u.map.relays[0].port = 443;
	snprintf(m.u.map.relays[0].region, sizeof(m.u.map.relays[0].region), "fra");
	snprintf(m.u.map.relays[0].host, sizeof(m.u.map.relays[0].host),
	         "relay1.example");
	roundtrip(&m, &back, &json, &len);
	assert_maps_equal(&m.u.map, &back.u.map);
	assert_non_null(strstr((char *)json, "\"magic_dns\":\"100.100.100.100\""));
	printf("  MAP_FULL (2 peers, %zu bytes): %.*s\n", len, (int)len, json);
	free(json);
	ctl_msg_free(&back);
	ctl_msg_free(&m);

	/* No peers at all: an empty array, not a missing field. */
	make_map(&m, 0);
	roundtrip(&m, &back, &json, &len);
	assert_maps_equal(&m.u.map, &back.u.map);
	assert_null(back.u.map.peers);
	free(json);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
}

static void test_map_full_2000(void **state)
{
	struct ctl_msg m, back;
	struct ctl_msg_err err;
	uint8_t *json;
	size_t len;
	const size_t n = 2000;

	make_map(&m, n);
	double t0 = now_s();
	assert_int_equal(ctl_msg_encode(&m, &json, &len, &err), 0);
	double t1 = now_s();
	assert_int_equal(ctl_msg_decode(CTL_MSG_MAP_FULL, json, len, &back, &err), 0);
	double t2 = now_s();
	assert_maps_equal(&m.u.map, &back.u.map);
	printf(
	    "  MAP_FULL %zu peers: %zu bytes (%.0f bytes/peer), encode %.1f ms, decode "
	    "%.1f ms, struct %zu bytes/peer\n",
	    n, len, (double)len / (double)n, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
	    sizeof(struct ctl_peer));
	free(json);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
}

static void test_map_delta(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA}, back;
	struct ctl_map_delta *d = &m.u.delta;
	uint8_t *json;
	size_t len;

	d->version = 9;
	d->base_version = 8;
	d->peers = calloc(3, sizeof(*d->peers));
	d->n_peers = 3;
	for (unsigned i = 0; i < 3; i++)
		make_peer(&d->peers[i], 10 + i);
	d->removed = calloc(2, sizeof(*d->removed));
	d->n_removed = 2;
	d->removed[0] = 5;
	d->removed[1] = (uint64_t)INT64_MAX;
	roundtrip(&m, &back, &json, &len);
	assert_int_equal(back.u.delta.version, 9);
	assert_int_equal(back.u.delta.base_version, 8);
	assert_int_equal(back.u.delta.n_peers, 3);
	assert_peers_equal(d->peers, back.u.delta.peers, 3);
	assert_int_equal(back.u.delta.n_removed, 2);
	assert_memory_equal(d->removed, back.u.delta.removed, 2 * sizeof(uint64_t));
	free(json);
	ctl_msg_free(&back);
	ctl_msg_free(&m);

	/* An empty delta (version bump only); absent arrays decode as empty. */
	struct ctl_msg_err err;
	const char *s = "{\"version\":3,\"base_version\":2}";
	assert_int_equal(
	    ctl_msg_decode(CTL_MSG_MAP_DELTA, (const uint8_t *)s, strlen(s), &back, &err),
	    0);
	assert_int_equal(back.u.delta.n_peers, 0);
	assert_int_equal(back.u.delta.n_removed, 0);
	ctl_msg_free(&back);
}

static void test_keepalive_error(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE}, back;
	uint8_t *json;
	size_t len;

	roundtrip(&m, &back, &json, &len);
	assert_int_equal(len, 2);
	assert_memory_equal(json, "{}", 2);
	free(json);
	ctl_msg_free(&back);

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_ERROR;
	m.u.error.code = 400;
	snprintf(m.u.error.text, sizeof(m.u.error.text),
	         "frame type 0x99 is unknown \"here\"");
	roundtrip(&m, &back, &json, &len);
	assert_memory_equal(&back.u.error, &m.u.error, sizeof(m.u.error));
	free(json);
	ctl_msg_free(&back);
}

/* REGISTER_REQ's ephemeral flag: sent only when true (an older server
 * sees the same body as before otherwise), absent or false decodes as
 * false, anything but a boolean is refused; LOGOUT is an empty object both
 * ways and takes unknown fields like every body. */
static void test_ephemeral_logout(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ}, back;
	struct ctl_register_req *q = &m.u.reg_req;
	struct ctl_msg_err err;
	uint8_t *json;
	size_t len;

	(void)state;
	fill_key(q->node_key, 1);
	fill_key(q->disco_key, 2);
	snprintf(q->hostname, sizeof(q->hostname), "web");
	snprintf(q->os, sizeof(q->os), "linux");
	snprintf(q->version, sizeof(q->version), "0.1.0");
	roundtrip(&m, &back, &json, &len);
	assert_null(strstr((const char *)json, "ephemeral"));
	assert_false(back.u.reg_req.ephemeral);
	free(json);
	ctl_msg_free(&back);
	q->ephemeral = true;
	roundtrip(&m, &back, &json, &len);
	assert_non_null(strstr((const char *)json, "\"ephemeral\":true"));
	assert_true(back.u.reg_req.ephemeral);
	assert_memory_equal(&back.u.reg_req, q, sizeof(*q));
	free(json);
	ctl_msg_free(&back);
	/* false written out decodes as false; anything else is refused */
	char body[512];
	static const char *const forms[] = {"false", "\"yes\"", "1", "null"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(
		    body, sizeof(body),
		    "{\"node_key\":\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\","
		    "\"disco_key\":\"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\","
		    "\"hostname\":\"web\",\"hostinfo\":{\"os\":\"l\",\"version\":\"1\"},"
		    "\"ephemeral\":%s}",
		    forms[i]);
		int r = ctl_msg_decode(CTL_MSG_REGISTER_REQ, (const uint8_t *)body,
		                       strlen(body), &back, &err);
		if (i == 0) {
			assert_int_equal(r, 0);
			assert_false(back.u.reg_req.ephemeral);
			ctl_msg_free(&back);
		} else {
			assert_int_equal(r, -EBADMSG);
			assert_non_null(strstr(err.text, "ephemeral"));
		}
	}

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_LOGOUT;
	roundtrip(&m, &back, &json, &len);
	assert_int_equal(len, 2);
	assert_memory_equal(json, "{}", 2);
	assert_string_equal(ctl_msg_type_name(CTL_MSG_LOGOUT), "LOGOUT");
	free(json);
	ctl_msg_free(&back);
	static const char newer[] = "{\"reason\":\"shutdown\"}";
	assert_int_equal(ctl_msg_decode(CTL_MSG_LOGOUT, (const uint8_t *)newer,
	                                strlen(newer), &back, &err),
	                 0);
	ctl_msg_free(&back);
	static const char arr[] = "[]";
	assert_int_equal(
	    ctl_msg_decode(CTL_MSG_LOGOUT, (const uint8_t *)arr, 2, &back, &err),
	    -EBADMSG);
}

static void test_address_forms(void **state)
{
	struct ctl_endpoint ep;
	struct ctl_prefix pf;
	char s[CTL_ADDRSTR_MAX];

	assert_true(ctl_endpoint_parse("[::ffff:1.2.3.4]:1", &ep));
	ctl_endpoint_format(&ep, s);
	assert_string_equal(s, "[::ffff:1.2.3.4]:1");
	assert_false(ctl_endpoint_parse("[::1]", &ep));
	assert_false(ctl_endpoint_parse("[::1]:", &ep));
	assert_false(ctl_endpoint_parse("1.2.3.4:+1", &ep));
	assert_false(ctl_endpoint_parse(":80", &ep));
	assert_true(ctl_prefix_parse("0.0.0.0/0", &pf));
	assert_true(ctl_prefix_parse("::/0", &pf));
	assert_true(ctl_prefix_parse("100.96.0.0/11", &pf));
	assert_false(ctl_prefix_parse("100.112.0.0/11", &pf));
	ctl_prefix_format(&pf, s);
	assert_false(ctl_prefix_parse("100.64.0.0/", &pf));
	assert_false(ctl_prefix_parse("/8", &pf));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_req),     cmocka_unit_test(test_register_resp),
	    cmocka_unit_test(test_endpoints),        cmocka_unit_test(test_map_full),
	    cmocka_unit_test(test_map_full_2000),    cmocka_unit_test(test_map_delta),
	    cmocka_unit_test(test_keepalive_error),  cmocka_unit_test(test_address_forms),
	    cmocka_unit_test(test_ephemeral_logout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
