/* Shared by the proxy front-end tests (test_proxy*.c, test_session_limits.c,
 * test_direct.c, test_proxyv2.c): real sockets and a real libevent loop,
 * with the netstack replaced by a fake defined here (ns_tcp_dial and
 * friends): the destination's last IPv4 byte picks the dial outcome.
 *   .1 connects   .2 refused   .3 timed out   .4 host unreachable
 *   .5 never answers (until the test fires it)
 * 100.73.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 192.168.0.0/16 (RFC 1918 on purpose:
 * for the tests about Direct and private ranges), 198.18.0.0/15 and
 * ::ffff:0:0/96 have no mesh route. Names resolve through a real evdns_base: a hosts file
 * (answered synchronously) and a small DNS server on loopback (answered asynchronously).
 * Mesh names (env.resolve_mesh) are "web" (100.64.0.1) and "two" (100.73.0.3,
 * 100.64.0.1). Everything is static: include this once per test program. */
#ifndef PX_TEST_FAKE_H
#define PX_TEST_FAKE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/util/log.h"
#include "proxy/internal.h"
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the fake netstack ---- */

struct ns_tcp {
	struct ns_addr dst;
	uint16_t port;
	ns_tcp_connected_fn cb;
	void *ctx;
	struct event *ev; /* the pending outcome; NULL for .5 */
};

static struct event_base *base;
static int n_dials, n_aborts, n_splices, n_cancels;
static struct ns_tcp *hung; /* the last .5 dial */
static int spliced_fd = -1;
static uint8_t spliced_head[64 * 1024];
static size_t spliced_head_len;
static struct ns_addr last_dst;
static uint16_t last_port;
static ns_tcp_accept_fn listen_cb;
static void *listen_ctx;
static uint16_t listen_port;

static inline void fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct ns_tcp *c = arg;
	int last = c->dst.family == AF_INET ? c->dst.addr[3] : 1;
	int err = last == 2   ? -ECONNREFUSED
	          : last == 3 ? -ETIMEDOUT
	          : last == 4 ? -EHOSTUNREACH
	                      : 0;
	ns_tcp_connected_fn cb = c->cb;
	void *ctx = c->ctx;
	event_free(c->ev);
	c->ev = NULL;
	if (err) {
		free(c);
		c = NULL;
	}
	cb(ctx, c, err);
}

int ns_tcp_dial_ex(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                   void *ctx, struct ns_tcp **dial)
{
	n_dials++;
	last_dst = *dst;
	last_port = port;
	struct ns_tcp *c = calloc(1, sizeof(*c));
	c->dst = *dst;
	c->port = port;
	c->cb = cb;
	c->ctx = ctx;
	if (dial)
		*dial = c;
	if (dst->family == AF_INET && dst->addr[3] == 5) {
		hung = c;
		return 0;
	}
	struct timeval tv = {0, 1000};
	c->ev = evtimer_new(base, fake_fire, c);
	evtimer_add(c->ev, &tv);
	return 0;
}

int ns_tcp_dial(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                void *ctx)
{
	return ns_tcp_dial_ex(dst, port, cb, ctx, NULL);
}

void ns_tcp_dial_cancel(struct ns_tcp *c)
{
	if (!c)
		return;
	n_cancels++;
	if (c == hung)
		hung = NULL;
	if (c->ev)
		event_free(c->ev);
	free(c);
}

void ns_tcp_abort(struct ns_tcp *c)
{
	n_aborts++;
	free(c);
}

int ns_splice_start(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len)
{
	n_splices++;
	free(c);
	if (spliced_fd >= 0)
		close(spliced_fd);
	spliced_fd = fd;
	spliced_head_len = head_len;
	if (head_len)
		memcpy(spliced_head, head, head_len);
	return 0;
}

static struct ns_splice_opts last_opts;

int ns_splice_start_ex(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len,
                       const struct ns_splice_opts *o)
{
	memset(&last_opts, 0, sizeof(last_opts));
	if (o)
		last_opts = *o;
	if (o && o->acct)
		o->acct->active++; /* tests take it back to play a closed splice */
	return ns_splice_start(c, fd, head, head_len);
}

struct ns_acct *ns_acct_new(void)
{
	return calloc(1, sizeof(struct ns_acct));
}

void ns_acct_release(struct ns_acct *a)
{
	free(a);
}

/* UDP is tested elsewhere: no mesh UDP here. */
struct ns_udp *ns_udp_open(uint16_t port, ns_udp_recv_fn cb, void *ctx, int *err)
{
	*err = -ENETDOWN;
	return NULL;
}

uint16_t ns_udp_port(const struct ns_udp *u)
{
	return 0;
}

int ns_udp_send(struct ns_udp *u, const struct ns_addr *dst, uint16_t dport,
                const uint8_t *data, size_t len)
{
	return -ENETDOWN;
}

void ns_udp_close(struct ns_udp *u)
{
}

/* What ns_tcp_local() answers: our mesh address for accepted connections. */
static struct ns_addr fake_local = {.family = AF_INET, .addr = {100, 64, 0, 2}};

void ns_tcp_local(const struct ns_tcp *c, struct ns_addr *addr, uint16_t *port)
{
	*addr = fake_local;
	*port = listen_port;
}

void ns_tcp_unlisten(uint16_t port)
{
	if (port == listen_port)
		listen_cb = NULL;
}

int ns_tcp_listen(uint16_t port, ns_tcp_accept_fn cb, void *ctx)
{
	listen_cb = cb;
	listen_ctx = ctx;
	listen_port = port;
	return 0;
}

/* The memory budget: admitted unless a test sets fake_mem_full; charges
 * are summed in fake_mem_charged. */
static bool fake_mem_full;
static size_t fake_mem_charged;

bool ns_mem_admit(void)
{
	return !fake_mem_full;
}

void ns_mem_charge(size_t bytes)
{
	fake_mem_charged += bytes;
}

void ns_mem_uncharge(size_t bytes)
{
	fake_mem_charged -= bytes;
}

/* ---- the loop and the client side ---- */

static inline bool route_ok(void *ctx, const struct ns_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (a->family == AF_INET6) /* ::ffff:a.b.c.d is not the mesh's */
		return memcmp(a->addr, mapped, 12) != 0;
	/* 192.168/16: RFC 1918 on purpose, the Direct tests are about it */
	return !((a->addr[0] == 100 && a->addr[1] == 73) || a->addr[0] == 127 ||
	         (a->addr[0] == 198 && (a->addr[1] & 0xfe) == 18) ||
	         (a->addr[0] == 169 && a->addr[1] == 254) ||
	         (a->addr[0] == 192 && a->addr[1] == 168));
}

static inline long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void pump(int ms)
{
	long end = now_ms() + ms;
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(500);
	} while (now_ms() < end);
}

static inline int client(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)ss, len), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static inline void csend(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads exactly n bytes within 2 s while the loop runs. */
static inline void crecv(int fd, void *p, size_t n)
{
	size_t got = 0;
	long end = now_ms() + 2000;
	while (got < n && now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		ssize_t r = recv(fd, (uint8_t *)p + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			fail_msg("closed after %zu of %zu bytes", got, n);
		else
			usleep(500);
	}
	if (got != n)
		fail_msg("got %zu of %zu bytes", got, n);
}

/* Waits until the proxy closes fd; returns 0 (FIN) or the recv errno (RST). */
static inline int cclosed(int fd)
{
	long end = now_ms() + 3000;
	while (now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		uint8_t b[256];
		ssize_t r = recv(fd, b, sizeof(b), 0);
		if (r == 0)
			return 0;
		if (r < 0 && errno != EAGAIN)
			return errno;
		if (r > 0)
			fail_msg("unexpected %zd bytes (first 0x%02x)", r, b[0]);
		usleep(500);
	}
	fail_msg("not closed");
	return -1;
}

static struct px_env env;

static inline void reset_fake(void)
{
	n_dials = n_aborts = n_splices = n_cancels = 0;
	hung = NULL;
	if (spliced_fd >= 0)
		close(spliced_fd);
	spliced_fd = -1;
	spliced_head_len = 0;
}

/* ---- mesh names ---- */

static int n_mesh_lookups;

static inline size_t resolve_mesh(void *ctx, const char *name, struct ns_addr *out,
                                  size_t max)
{
	n_mesh_lookups++;
	size_t n = 0;
	if (strcasecmp(name, "web") == 0 || strcasecmp(name, "web.") == 0) {
		px_addr_parse(&out[n++], "100.64.0.1");
	} else if (strcasecmp(name, "two") == 0 && max >= 2) {
		px_addr_parse(&out[n++], "100.73.0.3"); /* not routed */
		px_addr_parse(&out[n++], "100.64.0.1");
	} else if (strcasecmp(name, "lost") == 0) {
		px_addr_parse(&out[n++], "100.73.0.4"); /* not routed at all */
	}
	return n;
}

/* ---- a small DNS server for asynchronous answers ---- */

static struct evdns_server_port *dns_port;
static int dns_fd = -1;

static inline void dns_server_cb(struct evdns_server_request *req, void *arg)
{
	int rcode = 3; /* NXDOMAIN */
	for (int i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		uint32_t a = 0;
		if (strcasecmp(q->name, "async.mesh") == 0) /* 0x20 case mixing */
			a = htonl(0x64400001);              /* 100.64.0.1 */
		else if (strcasecmp(q->name, "noroute.mesh") == 0)
			a = htonl(0x64490001); /* 100.73.0.1 */
		if (a && q->type == EVDNS_TYPE_A) {
			evdns_server_request_add_a_reply(req, q->name, 1, &a, 60);
			rcode = 0;
		} else if (a) {
			rcode = 0; /* no AAAA */
		}
	}
	evdns_server_request_respond(req, rcode);
}

static inline int setup(void **st)
{
	log_set_level(LOG_ERROR);
	base = event_base_new();
	struct evdns_base *dns = evdns_base_new(base, 0);
	/* synchronous answers from a hosts file */
	char hosts[] = "/tmp/test_proxy_hosts.XXXXXX";
	int hfd = mkstemp(hosts);
	const char *h =
	    "100.64.0.1 sync.mesh\n100.64.0.2 refused.mesh\n100.73.0.7 offmesh.mesh\n"
	    "127.0.0.1 local.test\n";
	assert_int_equal(write(hfd, h, strlen(h)), (ssize_t)strlen(h));
	close(hfd);
	assert_int_equal(evdns_base_load_hosts(dns, hosts), 0);
	unlink(hosts);
	/* asynchronous answers from our server */
	dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(dns_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t sl = sizeof(sin);
	getsockname(dns_fd, (struct sockaddr *)&sin, &sl);
	dns_port = evdns_add_server_port_with_base(base, dns_fd, 0, dns_server_cb, NULL);
	assert_non_null(dns_port);
	assert_int_equal(
	    evdns_base_nameserver_sockaddr_add(dns, (struct sockaddr *)&sin, sl, 0), 0);
	evdns_base_set_option(dns, "timeout:", "1");
	env = (struct px_env){.base = base,
	                      .dns = dns,
	                      .route_ok = route_ok,
	                      .handshake_timeout_ms = 300,
	                      .connect_timeout_ms = 400,
	                      /* Direct's relays are tested against 127.0.0.1 */
	                      .direct_loopback_for_tests = true};
	return 0;
}

static inline int teardown(void **st)
{
	reset_fake();
	evdns_base_free(env.dns, 1);
	evdns_close_server_port(dns_port);
	close(dns_fd);
	event_base_free(base);
	return 0;
}

static inline struct cfg_listen loopback_any_port(void)
{
	struct cfg_listen l;
	memset(&l, 0, sizeof(l));
	struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l.addr_len = sizeof(*sin);
	return l;
}

static inline struct px_socks *socks_new(const char *user, const char *pass)
{
	struct cfg_socks5 c = {.bind = loopback_any_port(),
	                       .username = (char *)user,
	                       .password = (char *)pass};
	char err[200];
	struct px_socks *s = px_socks_new(&env, &c, err, sizeof(err));
	if (!s)
		fail_msg("%s", err);
	return s;
}

static inline int socks_client(struct px_socks *s)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	assert_int_not_equal(((struct sockaddr_in *)&ss)->sin_port, 0);
	return client(&ss, sl);
}

static inline size_t req_v4(uint8_t *m, uint8_t last, uint16_t port)
{
	const uint8_t r[] = {5,
	                     1,
	                     0,
	                     1,
	                     100,
	                     last == 9 ? 73 : 64,
	                     0,
	                     last,
	                     (uint8_t)(port >> 8),
	                     (uint8_t)port};
	memcpy(m, r, sizeof(r));
	return sizeof(r);
}

static inline size_t req_name(uint8_t *m, const char *name, uint16_t port)
{
	size_t n = strlen(name);
	m[0] = 5, m[1] = 1, m[2] = 0, m[3] = 3, m[4] = (uint8_t)n;
	memcpy(m + 5, name, n);
	m[5 + n] = (uint8_t)(port >> 8);
	m[6 + n] = (uint8_t)port;
	return 7 + n;
}

/* ---- HTTP CONNECT ---- */

static inline struct px_http *http_new(const char *user, const char *pass)
{
	struct cfg_http c = {.bind = loopback_any_port(),
	                     .username = (char *)user,
	                     .password = (char *)pass};
	char err[200];
	struct px_http *h = px_http_new(&env, &c, err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	return h;
}

static inline int http_client(struct px_http *h)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_http_local_addr(h, &ss, &sl);
	return client(&ss, sl);
}

/* Sends req and returns the status of the response (whole head read). */
static inline int http_try(struct px_http *h, const char *req, bool expect_close)
{
	int fd = http_client(h);
	csend(fd, req, strlen(req));
	char buf[512];
	size_t n = 0;
	while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
		crecv(fd, buf + n, 1);
		n++;
		assert_true(n < sizeof(buf));
	}
	buf[n] = 0;
	int status = atoi(buf + 9);
	if (status == 407)
		assert_non_null(strstr(buf, "Proxy-Authenticate: Basic"));
	if (expect_close)
		assert_int_equal(cclosed(fd), 0);
	close(fd);
	return status;
}

#endif
