/* The tunnel DNS client's runtime (node/dns/dnsc.c) on the real netstack:
 * queries leave through lwIP as UDP to the server's port 53 (what lwIP
 * sends is captured, answers are hand-made datagrams from the mesh side,
 * px_udp_test.h). Proves: A and AAAA go out at once with random ids; an
 * answer from another address or port, with another id, or malformed is
 * dropped and counted; the right answer completes the lookup (A first);
 * a silent server is left for the next one after the timeout; SERVFAIL
 * moves on at once; all silent: -ETIMEDOUT after attempts x servers
 * tries; NXDOMAIN: -ENOENT; a name that is not a DNS name: -EINVAL, never
 * inside dnsc_resolve; dnsc_cancel: no callback; dnsc_free: -ECANCELED. */
#include "px_udp_test.h"

#include <errno.h>

#include "node/dns/dnsc.h"

#define S1 "100.64.0.53"
#define S2 "100.64.0.54"

struct res {
	int calls, err;
	size_t n;
	struct ns_addr a[2 * DNSC_ADDRS_MAX];
};

static void on_res(void *arg, int err, const struct ns_addr *a, size_t n)
{
	struct res *r = arg;
	r->calls++;
	r->err = err;
	r->n = n;
	if (n)
		memcpy(r->a, a, n * sizeof(*a));
}

static struct dnsc *client(unsigned timeout_ms, const char *s1, const char *s2)
{
	struct dnsc_config c = {.base = base, .timeout_ms = timeout_ms, .attempts = 2};
	assert_true(ns_addr_parse(&c.servers[c.n_servers++], s1));
	if (s2)
		assert_true(ns_addr_parse(&c.servers[c.n_servers++], s2));
	struct dnsc *d = dnsc_new(&c);
	assert_non_null(d);
	return d;
}

/* Next query lwIP sent; checks it goes to server:53 and returns its type. */
static uint16_t next_query(struct mesh_dgram *m, const char *server, int ms)
{
	assert_true(mesh_udp_out(m, ms));
	struct ns_addr s;
	assert_true(ns_addr_parse(&s, server));
	assert_memory_equal(m->dst, s.addr, 4);
	assert_int_equal(m->dport, 53);
	assert_true(m->len > 16);
	return (uint16_t)(m->data[m->len - 4] << 8 | m->data[m->len - 3]);
}

/* An answer to query q: rcode, and one record (A 198.18.7.1 or AAAA
 * fd77::1) unless rcode or empty. */
static size_t answer(const struct mesh_dgram *q, int rcode, bool empty, uint8_t *p)
{
	memcpy(p, q->data, q->len);
	p[2] = 0x81;
	p[3] = (uint8_t)(0x80 | rcode);
	size_t off = q->len;
	uint16_t type = (uint16_t)(q->data[q->len - 4] << 8 | q->data[q->len - 3]);
	if (rcode || empty)
		return off;
	p[7] = 1;
	static const uint8_t a4[4] = {198, 18, 7, 1};
	static const uint8_t a6[16] = {0xfd, 0x77, [15] = 1};
	uint8_t rr[12] = {0xc0, 12, 0, (uint8_t)type,
	                  0,    1,  0, 0,
	                  0,    60, 0, type == DNSC_TYPE_A ? 4 : 16};
	memcpy(p + off, rr, 12);
	off += 12;
	memcpy(p + off, type == DNSC_TYPE_A ? a4 : a6, type == DNSC_TYPE_A ? 4 : 16);
	return off + (type == DNSC_TYPE_A ? 4 : 16);
}

static void reply(const struct mesh_dgram *q, const char *from, uint16_t sport,
                  const uint8_t *p, size_t len)
{
	mesh_udp_in(from, sport, OUR4, q->sport, p, len);
}

static void wait_res(struct res *r, int ms)
{
	for (int t = 0; t < ms && r->calls == 0; t += 5)
		spin_ms(5);
}

static void test_answer_matched_and_hostile_dropped(void **state)
{
	(void)state;
	struct dnsc *d = client(2000, S1, NULL);
	struct res r = {0};
	assert_non_null(dnsc_resolve(d, "web.test", on_res, &r));
	struct mesh_dgram qa, qb, *qv4, *qv6;
	uint16_t t1 = next_query(&qa, S1, 500), t2 = next_query(&qb, S1, 500);
	assert_true(t1 != t2);
	qv4 = t1 == DNSC_TYPE_A ? &qa : &qb;
	qv6 = t1 == DNSC_TYPE_A ? &qb : &qa;
	assert_int_equal(qv4->sport, qv6->sport); /* one port for both */
	uint8_t p[600];
	size_t n = answer(qv4, 0, false, p);
	reply(qv4, S2, 53, p, n);   /* another server */
	reply(qv4, S1, 5353, p, n); /* another port */
	p[1] ^= 0x5a;
	reply(qv4, S1, 53, p, n); /* another id */
	p[1] ^= 0x5a;
	reply(qv4, S1, 53, p, n - 1); /* cut short: malformed */
	spin_ms(30);
	assert_int_equal(r.calls, 0);
	struct dnsc_stats st;
	dnsc_get_stats(d, &st);
	assert_int_equal(st.dropped, 4);
	reply(qv4, S1, 53, p, n);
	n = answer(qv6, 0, false, p);
	reply(qv6, S1, 53, p, n);
	wait_res(&r, 500);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.a[0].family, AF_INET); /* A first */
	assert_int_equal(r.a[1].family, AF_INET6);
	dnsc_get_stats(d, &st);
	assert_int_equal(st.answered, 1);
	assert_int_equal(st.queries_udp, 2);
	dnsc_free(d);
}

static void test_failover_and_timeout(void **state)
{
	(void)state;
	struct dnsc *d = client(100, S1, S2);
	struct res r = {0};
	assert_non_null(dnsc_resolve(d, "web.test", on_res, &r));
	struct mesh_dgram q[2];
	next_query(&q[0], S1, 200);
	next_query(&q[1], S1, 200);
	/* S1 stays silent: after 100 ms both go to S2. */
	next_query(&q[0], S2, 400);
	next_query(&q[1], S2, 400);
	uint8_t p[600];
	for (int i = 0; i < 2; i++) {
		size_t n = answer(&q[i], 0, i == 1, p); /* AAAA: no records */
		reply(&q[i], S2, 53, p, n);
	}
	wait_res(&r, 500);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.n, 1);

	/* Nobody answers: 2 attempts x 2 servers, then -ETIMEDOUT. */
	cap_clear();
	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "silent.test", on_res, &r));
	int sent = 0;
	struct mesh_dgram m;
	for (int t = 0; t < 1000 && r.calls == 0; t += 5) {
		while (mesh_udp_out(&m, 0))
			sent++;
		spin_ms(5);
	}
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, -ETIMEDOUT);
	assert_int_equal(sent, 8);
	dnsc_free(d);
}

static void test_servfail_nxdomain_and_errors(void **state)
{
	(void)state;
	struct dnsc *d = client(2000, S1, S2);
	struct res r = {0};
	assert_non_null(dnsc_resolve(d, "nx.test", on_res, &r));
	struct mesh_dgram q[2];
	next_query(&q[0], S1, 200);
	next_query(&q[1], S1, 200);
	uint8_t p[600];
	for (int i = 0; i < 2; i++) { /* SERVFAIL: S2 at once, not in 2 s */
		size_t n = answer(&q[i], 2, false, p);
		reply(&q[i], S1, 53, p, n);
	}
	next_query(&q[0], S2, 200);
	next_query(&q[1], S2, 200);
	for (int i = 0; i < 2; i++) {
		size_t n = answer(&q[i], 3, false, p);
		reply(&q[i], S2, 53, p, n);
	}
	wait_res(&r, 500);
	assert_int_equal(r.err, -ENOENT);
	assert_int_equal(r.n, 0);

	/* Not a DNS name: the error comes later, never inside the call. */
	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "a..b", on_res, &r));
	assert_int_equal(r.calls, 0);
	wait_res(&r, 200);
	assert_int_equal(r.err, -EINVAL);

	/* Cancelled: no callback. Pending at dnsc_free: -ECANCELED. */
	memset(&r, 0, sizeof(r));
	dnsc_cancel(dnsc_resolve(d, "web.test", on_res, &r));
	spin_ms(30);
	assert_int_equal(r.calls, 0);
	assert_non_null(dnsc_resolve(d, "web.test", on_res, &r));
	dnsc_free(d);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, -ECANCELED);
}

/* The next TCP SYN lwIP sent (other packets are dropped). */
static bool next_syn(struct seg *out, int ms)
{
	for (int waited = 0; waited <= ms; waited += 5) {
		struct pkt *k;
		while ((k = cap_pop()) != NULL) {
			struct seg s;
			bool ok = parse(k, &s) && s.proto == 6 && (s.flags & F_SYN);
			if (ok) {
				*out = s;
				out->l4 = out->data = NULL;
			}
			free(k);
			if (ok)
				return true;
		}
		spin_ms(5);
	}
	return false;
}

static uint64_t tcp_active(void)
{
	struct ns_stats st;
	ns_get_stats(&st);
	return st.tcp_active;
}

/* Review H1: A answered, AAAA SERVFAIL on every try: the A address is
 * the answer, not -EIO. */
static void test_one_type_failing_keeps_the_other(void **state)
{
	(void)state;
	struct dnsc *d = client(2000, S1, NULL); /* 2 attempts x 1 server */
	struct res r = {0};
	assert_non_null(dnsc_resolve(d, "half.test", on_res, &r));
	struct mesh_dgram q[2];
	uint8_t p[600];
	uint16_t t0 = next_query(&q[0], S1, 200);
	next_query(&q[1], S1, 200);
	struct mesh_dgram *qa = t0 == DNSC_TYPE_A ? &q[0] : &q[1];
	struct mesh_dgram *q6 = t0 == DNSC_TYPE_A ? &q[1] : &q[0];
	size_t n = answer(qa, 0, false, p);
	reply(qa, S1, 53, p, n);
	n = answer(q6, 2, false, p);
	reply(q6, S1, 53, p, n);
	struct mesh_dgram again; /* AAAA alone, asked again at once */
	assert_int_equal(next_query(&again, S1, 200), DNSC_TYPE_AAAA);
	n = answer(&again, 2, false, p);
	reply(&again, S1, 53, p, n);
	wait_res(&r, 300);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.a[0].family, AF_INET);
	dnsc_free(d);
}

/* Review L2, M1, L3: a TC answer goes to TCP even when its records are
 * cut short; a lookup cancelled while its TCP dial is pending frees the
 * netstack connection at once; a TCP dial refused moves to the next
 * server at once (not after the 2 x timeout TCP gets). */
static void test_tcp_fallback_bounded(void **state)
{
	(void)state;
	struct dnsc *d = client(2000, S1, S2);
	struct res r = {0};
	struct dnsc_lookup *l = dnsc_resolve(d, "big.test", on_res, &r);
	assert_non_null(l);
	struct mesh_dgram q[2];
	uint8_t p[600];
	next_query(&q[0], S1, 200);
	next_query(&q[1], S1, 200);
	size_t n = answer(&q[0], 0, false, p);
	p[2] |= 0x02; /* TC */
	p[7] = 9;     /* nine records claimed, one there */
	reply(&q[0], S1, 53, p, n);
	struct seg syn;
	assert_true(next_syn(&syn, 300));
	assert_int_equal(syn.dport, 53);
	uint64_t before = tcp_active();
	assert_true(before >= 1);
	dnsc_cancel(l); /* the SYN is never answered */
	assert_int_equal(tcp_active(), before - 1);
	spin_ms(20);
	assert_int_equal(r.calls, 0);

	/* Refused over TCP: S2 at once. */
	cap_clear();
	assert_non_null(dnsc_resolve(d, "big.test", on_res, &r));
	next_query(&q[0], S1, 200);
	next_query(&q[1], S1, 200);
	for (int i = 0; i < 2; i++) {
		n = answer(&q[i], 0, false, p);
		p[2] |= 0x02;
		reply(&q[i], S1, 53, p, n);
	}
	for (int i = 0; i < 2; i++) {
		assert_true(next_syn(&syn, 300));
		struct peer pr;
		peer_init(&pr, AF_INET, syn.sport);
		struct ns_addr s1;
		assert_true(ns_addr_parse(&s1, S1));
		memcpy(pr.me, s1.addr, 4);
		pr.port = 53;
		pr.snd_nxt = 0;
		pr.rcv_nxt = syn.seq + 1;
		peer_send(&pr, F_RST | F_ACK, NULL, 0);
	}
	struct mesh_dgram m;
	assert_true(mesh_udp_out(&m, 400)); /* long before 4 s */
	struct ns_addr s2;
	assert_true(ns_addr_parse(&s2, S2));
	assert_memory_equal(m.dst, s2.addr, 4);
	dnsc_free(d);
	assert_int_equal(r.err, -ECANCELED);
}

/* Answers both queries of a fresh lookup from S1 (rcode; ttl for the
 * records). */
static void answer_both(int rcode, uint8_t ttl)
{
	struct mesh_dgram q[2];
	uint8_t p[600];
	for (int i = 0; i < 2; i++)
		next_query(&q[i], S1, 200);
	for (int i = 0; i < 2; i++) {
		size_t n = answer(&q[i], rcode, false, p);
		if (!rcode)
			p[q[i].len + 9] = ttl; /* the record's TTL, low byte */
		reply(&q[i], S1, 53, p, n);
	}
}

/* Review dns M4's cache: a whole answer is kept for its TTL (any letter
 * case, with or without the final dot), NXDOMAIN for a short while, TTL 0
 * never; a hit sends nothing and still answers from the loop. */
static void test_cache(void **state)
{
	(void)state;
	struct dnsc *d = client(2000, S1, NULL);
	struct res r = {0};
	struct dnsc_stats st;
	assert_non_null(dnsc_resolve(d, "web.test", on_res, &r));
	answer_both(0, 60);
	wait_res(&r, 300);
	assert_int_equal(r.err, 0);
	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "WEB.test.", on_res, &r));
	assert_int_equal(r.calls, 0); /* never inside the call */
	wait_res(&r, 300);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.n, 2);
	struct mesh_dgram m;
	assert_false(mesh_udp_out(&m, 50));
	dnsc_get_stats(d, &st);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.queries_udp, 2);

	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "nx.test", on_res, &r));
	answer_both(3, 0);
	wait_res(&r, 300);
	assert_int_equal(r.err, -ENOENT);
	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "nx.test", on_res, &r));
	wait_res(&r, 300);
	assert_int_equal(r.err, -ENOENT);
	assert_false(mesh_udp_out(&m, 50));

	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "zero.test", on_res, &r));
	answer_both(0, 0);
	wait_res(&r, 300);
	assert_int_equal(r.err, 0);
	memset(&r, 0, sizeof(r));
	assert_non_null(dnsc_resolve(d, "zero.test", on_res, &r));
	answer_both(0, 0); /* asked again: TTL 0 is not kept */
	wait_res(&r, 300);
	assert_int_equal(r.err, 0);
	dnsc_get_stats(d, &st);
	assert_int_equal(st.cache_hits, 2);
	dnsc_free(d);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_answer_matched_and_hostile_dropped,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failover_and_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_servfail_nxdomain_and_errors, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_one_type_failing_keeps_the_other, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_tcp_fallback_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
