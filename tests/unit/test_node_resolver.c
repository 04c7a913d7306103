/* The node's host resolver at shutdown (node_resolver_free, node_dns.c).
 *
 * A nameserver that never answers (a UDP socket of the test that reads
 * and stays silent, as when the host has no working DNS): a lookup times
 * out until evdns marks the server down and starts probing it with its
 * own request. The node is then shut down the way node_run does it: our
 * lookup cancelled, its callback run, the resolver freed, the event base
 * freed. Every block libevent allocated must have been given back (counted
 * with event_set_mem_functions, so the test fails in the normal build as
 * well as under LeakSanitizer): freeing with fail_requests = 1 left the
 * probe's scheduled callback and its handle behind, the leak seen when a
 * node that could not resolve names was stopped with SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/node_int.h"

/* ---- libevent's allocations, counted ---- */

static long ev_live; /* blocks libevent holds */

static void *count_malloc(size_t n)
{
	void *p = malloc(n);
	if (p)
		ev_live++;
	return p;
}

static void *count_realloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (q && !p)
		ev_live++;
	return q;
}

static void count_free(void *p)
{
	if (p)
		ev_live--;
	free(p);
}

/* ---- the silent nameserver ---- */

struct silent_ns {
	int fd;
	struct event *ev;
	unsigned queries, probes; /* probes: queries for another name */
	const char *ours;         /* the name our lookup asks for */
};

/* The question's name of a DNS query as a dotted string; false if the
 * packet is not one. */
static bool query_name(const uint8_t *p, size_t len, char *out, size_t cap)
{
	size_t i = 12, o = 0;
	if (len < 12)
		return false;
	while (i < len && p[i] != 0) {
		size_t l = p[i++];
		if (l > 63 || i + l > len || o + l + 2 > cap)
			return false;
		if (o)
			out[o++] = '.';
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	if (i >= len)
		return false;
	out[o] = 0;
	return true;
}

static void silent_on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct silent_ns *s = arg;
	uint8_t buf[512];
	char name[256];
	ssize_t r;
	while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
		if (!query_name(buf, (size_t)r, name, sizeof(name)))
			continue;
		s->queries++;
		if (strcasecmp(name, s->ours) != 0)
			s->probes++;
	}
}

static void silent_start(struct silent_ns *s, struct event_base *base, char *addr,
                         size_t cap)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(addr, cap, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	s->ev = event_new(base, s->fd, EV_READ | EV_PERSIST, silent_on_read, s);
	assert_non_null(s->ev);
	assert_int_equal(event_add(s->ev, NULL), 0);
}

static void silent_stop(struct silent_ns *s)
{
	event_free(s->ev);
	close(s->fd);
}

/* ---- the lookup ---- */

struct lookup {
	bool done;
	int result;
};

static void lookup_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct lookup *l = arg;
	l->done = true;
	l->result = result;
	if (ai)
		evutil_freeaddrinfo(ai);
}

/* Runs the loop until *flag is nonzero or max_ms pass. */
static void run_until(struct event_base *base, const unsigned *flag, int max_ms)
{
	for (int waited = 0; !*flag && waited < max_ms; waited += 20) {
		struct timeval tv = {0, 20000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static void test_free_with_probe_in_flight_leaks_nothing(void **state)
{
	(void)state;
	assert_int_equal(ev_live, 0);
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct evdns_base *dns = evdns_base_new(base, 0);
	assert_non_null(dns);

	struct silent_ns ns = {.ours = "nothing-answers.test"};
	char addr[64];
	silent_start(&ns, base, addr, sizeof(addr));
	assert_int_equal(evdns_base_nameserver_ip_add(dns, addr), 0);
	/* Quick timeouts so that the server is marked down within a second;
	 * many attempts so that the probe stays in flight once sent. */
	assert_int_equal(evdns_base_set_option(dns, "timeout:", "0.2"), 0);
	assert_int_equal(evdns_base_set_option(dns, "max-timeouts:", "1"), 0);
	assert_int_equal(evdns_base_set_option(dns, "initial-probe-timeout:", "1"), 0);
	assert_int_equal(evdns_base_set_option(dns, "attempts:", "200"), 0);

	struct evutil_addrinfo hints = {.ai_family = AF_INET,
	                                .ai_socktype = SOCK_STREAM};
	struct lookup lk = {0};
	struct evdns_getaddrinfo_request *req =
	    evdns_getaddrinfo(dns, ns.ours, NULL, &hints, lookup_cb, &lk);
	assert_non_null(req);
	assert_false(lk.done);

	/* Generous bound: the probe goes out about 1.4 s in. */
	run_until(base, &ns.probes, 20000);
	assert_true(ns.probes > 0);
	assert_false(lk.done);

	/* Shutdown as in node_run: the front-ends cancel their lookups, one
	 * loop pass delivers the cancellations, then the resolver goes. */
	evdns_getaddrinfo_cancel(req);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_true(lk.done);
	assert_int_equal(lk.result, EVUTIL_EAI_CANCEL);
	silent_stop(&ns);
	node_resolver_free(dns);
	event_base_free(base);
	assert_int_equal(ev_live, 0);
}

/* The same shutdown with nothing in flight (the counting itself is sound:
 * a base and a resolver give back everything they took). */
static void test_free_idle_leaks_nothing(void **state)
{
	(void)state;
	long before = ev_live;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct evdns_base *dns = evdns_base_new(base, 0);
	assert_non_null(dns);
	assert_true(ev_live > before);
	node_resolver_free(dns);
	node_resolver_free(NULL);
	event_base_free(base);
	assert_int_equal(ev_live, before);
}

int main(void)
{
	/* Before libevent allocates anything. */
	event_set_mem_functions(count_malloc, count_realloc, count_free);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_free_idle_leaks_nothing),
	    cmocka_unit_test(test_free_with_probe_in_flight_leaks_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
