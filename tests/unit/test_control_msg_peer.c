/* core/control/msg: pre-encoded peers (ctl_msg_encode_peer and
 * ctl_msg_encode_map_texts), as mesh-control builds its maps:
 *  - a MAP_FULL and a MAP_DELTA built from peer texts are byte-identical to
 *    ctl_msg_encode's and decode to equal structs (0, 1 and 2,000 peers);
 *  - a bad peer is refused as ctl_msg_encode refuses it; a map that still
 *    holds peers, or another type, is refused;
 *  - building a 2,000-peer MAP_FULL from texts is timed (printed). */
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
#include "ctl_msg_fixture.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The fixture's peer, varied by i: no endpoints for every third peer,
 * alternating home relays, some never seen. */
static void make_varied_peer(struct ctl_peer *p, unsigned i)
{
	make_peer(p, i);
	p->n_eps = i % 3 ? 2 : 0;
	memset(&p->eps[p->n_eps], 0, sizeof(p->eps) - p->n_eps * sizeof(p->eps[0]));
	p->home_relay = i % 2;
	p->last_seen = i % 5 ? 1764100000 + i : 0;
	memset(&p->seen_ip, 0, sizeof(p->seen_ip)); /* every other one: seen at */
	if (i % 2) {
		p->seen_ip.family = 4;
		p->seen_ip.addr[0] = 198;
		p->seen_ip.addr[1] = 18;
		p->seen_ip.addr[3] = (uint8_t)i;
	}
}

/* Texts for peers[0..n): filled into t, owned strings in s. */
static void encode_texts(const struct ctl_peer *peers, size_t n, struct ctl_msg_text *t,
                         char **s)
{
	for (size_t i = 0; i < n; i++) {
		struct ctl_msg_err err;
		size_t len = 0;
		int r = ctl_msg_encode_peer(&peers[i], &s[i], &len, &err);
		if (r != 0)
			fail_msg("encode_peer %zu: %d %s", i, r, err.text);
		assert_int_equal(strlen(s[i]), len);
		t[i] = (struct ctl_msg_text){s[i], len};
	}
}

/* m holds its peers; encodes it both ways and checks bytes and decodes. */
static void both_ways(struct ctl_msg *m, struct ctl_peer *peers, size_t n)
{
	struct ctl_msg_err err;
	uint8_t *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	struct ctl_msg_text *t = calloc(n ? n : 1, sizeof(*t));
	char **s = calloc(n ? n : 1, sizeof(*s));
	assert_non_null(t);
	assert_non_null(s);
	encode_texts(peers, n, t, s);

	assert_int_equal(ctl_msg_encode(m, &a, &alen, &err), 0);
	/* a map still holding its peers is refused */
	if (n)
		assert_int_equal(ctl_msg_encode_map_texts(m, t, n, &b, &blen, &err),
		                 -EINVAL);
	if (m->type == CTL_MSG_MAP_FULL)
		m->u.map.n_peers = 0;
	else
		m->u.delta.n_peers = 0;
	double t0 = now_ms();
	int r = ctl_msg_encode_map_texts(m, t, n, &b, &blen, &err);
	double dt = now_ms() - t0;
	if (r != 0)
		fail_msg("encode_map_texts: %d %s", r, err.text);
	if (n >= 1000)
		print_message("map of %zu peers from texts: %.2f ms, %zu bytes\n", n, dt,
		              blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(b[blen], 0);

	struct ctl_msg da, db;
	assert_int_equal(ctl_msg_decode(m->type, a, alen, &da, &err), 0);
	assert_int_equal(ctl_msg_decode(m->type, b, blen, &db, &err), 0);
	if (m->type == CTL_MSG_MAP_FULL) {
		const struct ctl_map_full *x = &da.u.map, *y = &db.u.map;
		assert_int_equal(x->version, y->version);
		assert_int_equal(x->self_id, y->self_id);
		assert_string_equal(x->self_name, y->self_name);
		assert_memory_equal(x->self_addrs, y->self_addrs, sizeof(x->self_addrs));
		assert_string_equal(x->dns_domain, y->dns_domain);
		assert_int_equal(x->n_peers, n);
		assert_int_equal(y->n_peers, n);
		for (size_t i = 0; i < n; i++) {
			assert_memory_equal(&x->peers[i], &peers[i], sizeof(peers[i]));
			assert_memory_equal(&y->peers[i], &peers[i], sizeof(peers[i]));
		}
	} else {
		const struct ctl_map_delta *x = &da.u.delta, *y = &db.u.delta;
		assert_int_equal(x->version, y->version);
		assert_int_equal(x->base_version, y->base_version);
		assert_int_equal(y->n_peers, n);
		for (size_t i = 0; i < n; i++)
			assert_memory_equal(&y->peers[i], &peers[i], sizeof(peers[i]));
		assert_int_equal(x->n_removed, y->n_removed);
		assert_memory_equal(x->removed, y->removed,
		                    x->n_removed * sizeof(*x->removed));
	}
	ctl_msg_free(&da);
	ctl_msg_free(&db);
	for (size_t i = 0; i < n; i++)
		free(s[i]);
	free(s);
	free(t);
	free(a);
	free(b);
}

static void map_full_case(size_t n, bool relays)
{
	struct ctl_msg m;
	make_map(&m, n); /* the fixture's map, with the peers varied below */
	struct ctl_map_full *f = &m.u.map;
	if (relays) {
		f->relays = calloc(1, sizeof(*f->relays));
		assert_non_null(f->relays);
		f->n_relays = 1;
		f->relays[0].id = 1;
		f->relays[0].port = 3478;
		snprintf(f->relays[0].region, sizeof(f->relays[0].region), "peers");
		snprintf(f->relays[0].host, sizeof(f->relays[0].host), "peers.example");
	}
	for (size_t i = 0; i < n; i++)
		make_varied_peer(&f->peers[i], (unsigned)i);
	both_ways(&m, f->peers, n);
	ctl_msg_free(&m);
}

static void test_map_full_texts(void **state)
{
	map_full_case(0, false);
	map_full_case(1, true);
	map_full_case(5, false);
}

static void test_map_full_texts_2000(void **state)
{
	map_full_case(2000, false);
}

static void test_map_delta_texts(void **state)
{
	for (size_t n = 0; n < 4; n++) {
		struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA};
		struct ctl_map_delta *d = &m.u.delta;
		struct ctl_peer peers[3];
		d->version = 9;
		d->base_version = 8;
		for (unsigned i = 0; i < n && i < 3; i++)
			make_varied_peer(&peers[i], 10 + i);
		d->peers = peers;
		d->n_peers = n < 3 ? n : 3;
		uint64_t rm[2] = {5, (uint64_t)INT64_MAX};
		d->removed = rm;
		d->n_removed = n % 3;
		both_ways(&m, peers, d->n_peers);
	}
}

static void test_refusals(void **state)
{
	struct ctl_msg_err err;
	struct ctl_peer p;
	char *s = (char *)1;
	size_t len = 1;

	make_varied_peer(&p, 1);
	snprintf(p.name, sizeof(p.name), "bad name");
	assert_int_equal(ctl_msg_encode_peer(&p, &s, &len, &err), -EINVAL);
	assert_null(s);
	assert_int_equal(len, 0);
	assert_non_null(strstr(err.text, "name"));
	make_varied_peer(&p, 1);
	p.allowed[0].bits = 8; /* host bits set */
	assert_int_equal(ctl_msg_encode_peer(&p, &s, &len, &err), -EINVAL);
	assert_non_null(strstr(err.text, "allowed_ips"));

	uint8_t *out = (uint8_t *)1;
	struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
	assert_int_equal(ctl_msg_encode_map_texts(&m, NULL, 0, &out, &len, &err),
	                 -EINVAL);
	assert_null(out);
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.n_peers = 1;
	m.u.delta.peers = &p;
	assert_int_equal(ctl_msg_encode_map_texts(&m, NULL, 0, &out, &len, &err),
	                 -EINVAL);
	m.u.delta.n_peers = 0;
	struct ctl_msg_text t = {"{}", 2};
	assert_int_equal(
	    ctl_msg_encode_map_texts(&m, &t, CTL_PEERS_MAX + 1, &out, &len, &err),
	    -EINVAL);
	assert_int_equal(err.code, CTL_MSG_E_TOO_MANY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_full_texts),
	    cmocka_unit_test(test_map_full_texts_2000),
	    cmocka_unit_test(test_map_delta_texts),
	    cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
