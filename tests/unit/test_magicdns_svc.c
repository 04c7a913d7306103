/* MagicDNS as a service inside the netstack (magicdns_new): an ns_udp sends a
 * query to 100.100.100.100:53 and gets the answer from there; other names
 * are forwarded to a fake nameserver on 127.0.0.1 (resolv.conf override)
 * with a fresh id, its answer relayed with the original id, while answers
 * with a wrong id, a wrong question or from another port are ignored;
 * SERVFAIL after the (shortened) timeout, at once without a nameserver and
 * beyond MAGICDNS_FWD_MAX waiting queries; REFUSED when not forwarding;
 * the nameserver read again when resolv.conf changes; counters;
 * magicdns_free with queries in flight. */
#include "ns_test_peer.h"

#include "node/dns/magicdns.h"
#include "node/dns/magicdns_int.h"

struct got {
	int calls;
	struct ns_addr src;
	uint16_t sport;
	uint8_t data[4096];
	size_t len;
};

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	struct got *g = ctx;
	(void)u;
	(void)dst;
	g->calls++;
	g->src = *src;
	g->sport = sport;
	assert_true(len <= sizeof(g->data));
	memcpy(g->data, data, len);
	g->len = len;
}

static size_t t_lookup(void *ctx, const char *label, struct ns_addr *out, size_t max)
{
	(void)ctx;
	if (strcmp(label, "web") != 0 || max == 0)
		return 0;
	assert_true(ns_addr_parse(&out[0], PEER4));
	return 1;
}

static char resolv_path[64];
static int fake_ns = -1;
static uint16_t fake_port;

/* A fake nameserver on 127.0.0.1 and a resolv.conf naming it (or none). */
static void fake_ns_start(bool with_ns, unsigned timeout_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	fake_ns = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(fake_ns >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fake_ns, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fake_ns, (struct sockaddr *)&sa, &sl), 0);
	fake_port = ntohs(sa.sin_port);
	snprintf(resolv_path, sizeof(resolv_path), "/tmp/magicdns-test-resolv.%d",
	         getpid());
	FILE *f = fopen(resolv_path, "w");
	assert_non_null(f);
	fprintf(f, "# test\nsearch example\n%s\n",
	        with_ns ? "nameserver 127.0.0.1\nnameserver 100.73.9.9" : "");
	fclose(f);
	magicdns_int_set_upstream(resolv_path, fake_port, timeout_ms);
}

static void fake_ns_stop(void)
{
	close(fake_ns);
	fake_ns = -1;
	unlink(resolv_path);
	magicdns_int_set_upstream(NULL, 0, 0);
}

static size_t make_query(uint8_t *b, uint16_t id, const char *name, uint16_t qtype)
{
	size_t len = 12;
	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8);
	b[1] = (uint8_t)id;
	b[2] = 0x01;
	b[5] = 1;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		b[len++] = (uint8_t)l;
		memcpy(b + len, name, l);
		len += l;
		name += l + (dot ? 1 : 0);
	}
	b[len++] = 0;
	b[len++] = (uint8_t)(qtype >> 8);
	b[len++] = (uint8_t)qtype;
	b[len++] = 0;
	b[len++] = 1;
	return len;
}

static void wait_calls(struct got *g, int want, int ms)
{
	for (int t = 0; t < ms && g->calls < want; t += 5)
		spin_ms(5);
}

/* Receives one datagram at the fake nameserver, waiting up to ms. */
static ssize_t ns_recv(uint8_t *b, size_t cap, struct sockaddr_in *from, int ms)
{
	for (int t = 0; t <= ms; t += 5) {
		socklen_t fl = sizeof(*from);
		ssize_t n = recvfrom(fake_ns, b, cap, 0, (struct sockaddr *)from, &fl);
		if (n >= 0)
			return n;
		spin_ms(5);
	}
	return -1;
}

static struct magicdns *start(bool forward)
{
	struct magicdns_config c = {
	    .base = base,
	    .domain = "mesh.internal",
	    .lookup = t_lookup,
	    .forward = forward,
	};
	char err[128] = "";
	struct magicdns *m = magicdns_new(&c, err, sizeof(err));
	if (m == NULL)
		fail_msg("magicdns_new: %s", err);
	return m;
}

static struct ns_udp *client(struct got *g)
{
	int err = 0;
	struct ns_udp *u = ns_udp_open(0, on_udp, g, &err);
	assert_non_null(u);
	return u;
}

static void send_q(struct ns_udp *u, const uint8_t *q, size_t len)
{
	struct ns_addr dns;
	assert_true(ns_addr_parse(&dns, MAGICDNS_ADDR));
	assert_int_equal(ns_udp_send(u, &dns, MAGICDNS_PORT, q, len), 0);
}

static void test_mesh_name_through_netstack(void **state)
{
	struct got g = {0};
	uint8_t q[512];
	struct magicdns_stats st;
	struct ns_addr dns, web;
	(void)state;
	fake_ns_start(true, 0);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);

	send_q(u, q, make_query(q, 0x1111, "web.mesh.internal", 1));
	wait_calls(&g, 1, 1000);
	assert_int_equal(g.calls, 1);
	assert_true(ns_addr_parse(&dns, MAGICDNS_ADDR));
	assert_memory_equal(g.src.addr, dns.addr, 4);
	assert_int_equal(g.sport, 53);
	assert_true(g.len > 16);
	assert_int_equal(g.data[0], 0x11);
	assert_int_equal(g.data[3] & 0xf, 0);
	assert_int_equal(g.data[7], 1); /* ancount */
	assert_true(ns_addr_parse(&web, PEER4));
	assert_memory_equal(g.data + g.len - 4, web.addr, 4);

	send_q(u, q, make_query(q, 0x2222, "nope.mesh.internal", 1));
	wait_calls(&g, 2, 1000);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_NXDOMAIN);

	q[2] = 0x80; /* a response: dropped */
	send_q(u, q, 20);
	send_q(u, q, 5);
	spin_ms(50);
	assert_int_equal(g.calls, 2);

	magicdns_get_stats(m, &st);
	assert_int_equal(st.queries, 4);
	assert_int_equal(st.answered, 1);
	assert_int_equal(st.nxdomain, 1);
	assert_int_equal(st.dropped, 2);
	ns_udp_close(u);
	magicdns_free(m);
	fake_ns_stop();
}

static void test_forward_and_relay(void **state)
{
	struct got g = {0};
	uint8_t q[512], b[1024];
	struct sockaddr_in from;
	struct magicdns_stats st;
	(void)state;
	fake_ns_start(true, 0);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);

	size_t ql = make_query(q, 0x4242, "example.com", 1);
	send_q(u, q, ql);
	ssize_t n = ns_recv(b, sizeof(b), &from, 1000);
	assert_int_equal(n, (ssize_t)ql);
	assert_memory_equal(b + 2, q + 2, ql - 2); /* the same query, its own id */
	uint16_t id = (uint16_t)(b[0] << 8 | b[1]);

	/* The answer: example.com A 192.0.2.7. */
	b[2] = 0x81;
	b[3] = 0x80;
	b[7] = 1;
	static const uint8_t rr[] = {0xc0, 12, 0, 1, 0,   1, 0, 0,
	                             0,    30, 0, 4, 192, 0, 2, 7};
	memcpy(b + n, rr, sizeof(rr));
	size_t rl = (size_t)n + sizeof(rr);

	/* Wrong id; wrong question; right answer from another port: ignored. */
	b[0] = (uint8_t)((id + 1) >> 8);
	b[1] = (uint8_t)(id + 1);
	assert_true(sendto(fake_ns, b, rl, 0, (struct sockaddr *)&from, sizeof(from)) >
	            0);
	b[0] = (uint8_t)(id >> 8);
	b[1] = (uint8_t)id;
	b[13] = 'X';
	assert_true(sendto(fake_ns, b, rl, 0, (struct sockaddr *)&from, sizeof(from)) >
	            0);
	b[13] = 'E'; /* case may differ */
	int other = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(sendto(other, b, rl, 0, (struct sockaddr *)&from, sizeof(from)) > 0);
	close(other);
	spin_ms(50);
	assert_int_equal(g.calls, 0);

	assert_true(sendto(fake_ns, b, rl, 0, (struct sockaddr *)&from, sizeof(from)) >
	            0);
	wait_calls(&g, 1, 1000);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.len, rl);
	assert_int_equal(g.data[0], 0x42);
	assert_int_equal(g.data[1], 0x42);
	assert_memory_equal(g.data + 2, b + 2, rl - 2);

	/* A late duplicate is not relayed again. */
	assert_true(sendto(fake_ns, b, rl, 0, (struct sockaddr *)&from, sizeof(from)) >
	            0);
	spin_ms(50);
	assert_int_equal(g.calls, 1);

	magicdns_get_stats(m, &st);
	assert_int_equal(st.forwarded, 1);
	assert_int_equal(st.servfail, 0);
	ns_udp_close(u);
	magicdns_free(m);
	fake_ns_stop();
}

static void test_servfail_timeout(void **state)
{
	struct got g = {0};
	uint8_t q[512], b[1024];
	struct sockaddr_in from;
	struct magicdns_stats st;
	(void)state;
	fake_ns_start(true, 100);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);

	size_t ql = make_query(q, 0x5151, "example.org", 28);
	send_q(u, q, ql);
	assert_true(ns_recv(b, sizeof(b), &from, 1000) > 0);
	wait_calls(&g, 1, 2000);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.len, ql);
	assert_int_equal(g.data[0], 0x51);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_SERVFAIL);
	assert_memory_equal(g.data + 12, q + 12, ql - 12);
	magicdns_get_stats(m, &st);
	assert_int_equal(st.servfail, 1);
	ns_udp_close(u);
	magicdns_free(m);
	fake_ns_stop();
}

static void test_no_nameserver_and_not_forwarding(void **state)
{
	struct got g = {0};
	uint8_t q[512];
	(void)state;
	fake_ns_start(false, 0);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);
	send_q(u, q, make_query(q, 1, "example.com", 1));
	wait_calls(&g, 1, 1000);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_SERVFAIL);
	magicdns_free(m);

	/* forward = false: REFUSED without RA. */
	m = start(false);
	send_q(u, q, make_query(q, 2, "example.com", 1));
	wait_calls(&g, 2, 1000);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.data[3], MAGICDNS_RCODE_REFUSED);
	ns_udp_close(u);
	magicdns_free(m);
	fake_ns_stop();
}

/* The resolver configuration changed (magicdns_reload_upstream): no
 * nameserver at start (SERVFAIL), then one written to the file is used
 * for the next query without a restart, and removed again: SERVFAIL. */
static void test_reload_upstream(void **state)
{
	struct got g = {0};
	uint8_t q[512], b[1024];
	struct sockaddr_in from;
	(void)state;
	fake_ns_start(false, 0);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);
	send_q(u, q, make_query(q, 1, "example.com", 1));
	wait_calls(&g, 1, 1000);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_SERVFAIL);

	FILE *f = fopen(resolv_path, "w");
	assert_non_null(f);
	fprintf(f, "nameserver 127.0.0.1\n");
	fclose(f);
	assert_int_equal(magicdns_reload_upstream(m), 0);
	size_t ql = make_query(q, 2, "example.com", 1);
	send_q(u, q, ql);
	assert_int_equal(ns_recv(b, sizeof(b), &from, 1000), (ssize_t)ql);
	assert_memory_equal(b + 2, q + 2, ql - 2);

	f = fopen(resolv_path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(magicdns_reload_upstream(m), 0);
	send_q(u, q, make_query(q, 3, "example.com", 1));
	wait_calls(&g, 2, 1000);
	assert_int_equal(g.calls, 2);
	assert_int_equal(g.data[1], 3);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_SERVFAIL);
	ns_udp_close(u);
	magicdns_free(m);
	fake_ns_stop();
}

static void test_inflight_bound_and_free_pending(void **state)
{
	struct got g = {0};
	uint8_t q[512];
	struct magicdns_stats st;
	(void)state;
	fake_ns_start(true, 0);
	struct magicdns *m = start(true);
	struct ns_udp *u = client(&g);
	for (int i = 0; i < MAGICDNS_FWD_MAX + 1; i++) {
		send_q(u, q, make_query(q, (uint16_t)i, "example.com", 1));
		if (i % 32 == 31)
			spin_ms(5);
	}
	wait_calls(&g, 1, 1000);
	spin_ms(20);
	assert_int_equal(g.calls, 1); /* only the one over the bound */
	assert_int_equal(g.data[1], MAGICDNS_FWD_MAX & 0xff);
	assert_int_equal(g.data[3] & 0xf, MAGICDNS_RCODE_SERVFAIL);
	magicdns_get_stats(m, &st);
	assert_int_equal(st.forwarded, MAGICDNS_FWD_MAX);
	assert_int_equal(st.servfail, 1);
	magicdns_free(m); /* with 256 in flight */
	ns_udp_close(u);
	fake_ns_stop();
}

static void test_new_errors(void **state)
{
	char err[128] = "";
	struct magicdns_config c = {0};
	(void)state;
	assert_null(magicdns_new(&c, err, sizeof(err)));
	assert_true(strlen(err) > 0);
	magicdns_free(NULL);
	struct magicdns *m = start(false);
	assert_int_equal(magicdns_set_domain(m, "other.example"), 0);
	assert_int_equal(magicdns_set_domain(m, NULL), 0);
	magicdns_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mesh_name_through_netstack, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_forward_and_relay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_servfail_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_nameserver_and_not_forwarding, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_reload_upstream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inflight_bound_and_free_pending, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
