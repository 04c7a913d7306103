/* The proxy front-ends over real sockets and a real libevent loop, with the
 * netstack replaced by a fake that this file defines (ns_tcp_dial and
 * friends): the destination's last IPv4 byte picks the dial outcome.
 *   .1 connects   .2 refused   .3 timed out   .4 host unreachable
 *   .5 never answers (until the test fires it)
 * 10.9.0.0/16 has no mesh route. Names resolve through a real evdns_base:
 * a hosts file (answered synchronously) and a small DNS server on loopback
 * (answered asynchronously). End-to-end tests through lwIP live elsewhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/util/log.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

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
};

static struct event_base *base;
static int n_dials, n_aborts, n_splices;
static struct ns_tcp *hung; /* the last .5 dial */
static int spliced_fd = -1;
static uint8_t spliced_head[64 * 1024];
static size_t spliced_head_len;
static struct ns_addr last_dst;
static uint16_t last_port;
static ns_tcp_accept_fn listen_cb;
static void *listen_ctx;
static uint16_t listen_port;

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct ns_tcp *c = arg;
	int last = c->dst.family == AF_INET ? c->dst.addr[3] : 1;
	int err = last == 2   ? -ECONNREFUSED
	          : last == 3 ? -ETIMEDOUT
	          : last == 4 ? -EHOSTUNREACH
	                      : 0;
	ns_tcp_connected_fn cb = c->cb;
	void *ctx = c->ctx;
	if (err) {
		free(c);
		c = NULL;
	}
	cb(ctx, c, err);
}

int ns_tcp_dial(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                void *ctx)
{
	n_dials++;
	last_dst = *dst;
	last_port = port;
	struct ns_tcp *c = calloc(1, sizeof(*c));
	c->dst = *dst;
	c->port = port;
	c->cb = cb;
	c->ctx = ctx;
	if (dst->family == AF_INET && dst->addr[3] == 5) {
		hung = c;
		return 0;
	}
	struct timeval tv = {0, 1000};
	event_base_once(base, -1, EV_TIMEOUT, fake_fire, c, &tv);
	return 0;
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

/* ---- the loop and the client side ---- */

static bool route_ok(void *ctx, const struct ns_addr *a)
{
	return !(a->family == AF_INET && a->addr[0] == 10 && a->addr[1] == 9);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pump(int ms)
{
	long end = now_ms() + ms;
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(500);
	} while (now_ms() < end);
}

static int client(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)ss, len), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static void csend(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads exactly n bytes within 2 s while the loop runs. */
static void crecv(int fd, void *p, size_t n)
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
static int cclosed(int fd)
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

static void reset_fake(void)
{
	n_dials = n_aborts = n_splices = 0;
	hung = NULL;
	if (spliced_fd >= 0)
		close(spliced_fd);
	spliced_fd = -1;
	spliced_head_len = 0;
}

/* ---- a small DNS server for asynchronous answers ---- */

static struct evdns_server_port *dns_port;
static int dns_fd = -1;

static void dns_server_cb(struct evdns_server_request *req, void *arg)
{
	int rcode = 3; /* NXDOMAIN */
	for (int i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		uint32_t a = 0;
		if (strcasecmp(q->name, "async.mesh") == 0) /* 0x20 case mixing */
			a = htonl(0x0a000001);              /* 10.0.0.1 */
		else if (strcasecmp(q->name, "noroute.mesh") == 0)
			a = htonl(0x0a090001); /* 10.9.0.1 */
		if (a && q->type == EVDNS_TYPE_A) {
			evdns_server_request_add_a_reply(req, q->name, 1, &a, 60);
			rcode = 0;
		} else if (a) {
			rcode = 0; /* no AAAA */
		}
	}
	evdns_server_request_respond(req, rcode);
}

static int setup(void **st)
{
	log_set_level(LOG_ERROR);
	base = event_base_new();
	struct evdns_base *dns = evdns_base_new(base, 0);
	/* synchronous answers from a hosts file */
	char hosts[] = "/tmp/test_proxy_hosts.XXXXXX";
	int hfd = mkstemp(hosts);
	const char *h =
	    "10.0.0.1 sync.mesh\n10.0.0.2 refused.mesh\n10.9.0.7 offmesh.mesh\n";
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
	                      .connect_timeout_ms = 400};
	return 0;
}

static int teardown(void **st)
{
	reset_fake();
	evdns_base_free(env.dns, 1);
	evdns_close_server_port(dns_port);
	close(dns_fd);
	event_base_free(base);
	return 0;
}

static struct cfg_listen loopback_any_port(void)
{
	struct cfg_listen l;
	memset(&l, 0, sizeof(l));
	struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l.addr_len = sizeof(*sin);
	return l;
}

static struct px_socks *socks_new(const char *user, const char *pass)
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

static int socks_client(struct px_socks *s)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	assert_int_not_equal(((struct sockaddr_in *)&ss)->sin_port, 0);
	return client(&ss, sl);
}

static size_t req_v4(uint8_t *m, uint8_t last, uint16_t port)
{
	const uint8_t r[] = {5,
	                     1,
	                     0,
	                     1,
	                     10,
	                     last == 9 ? 9 : 0,
	                     0,
	                     last,
	                     (uint8_t)(port >> 8),
	                     (uint8_t)port};
	memcpy(m, r, sizeof(r));
	return sizeof(r);
}

static size_t req_name(uint8_t *m, const char *name, uint16_t port)
{
	size_t n = strlen(name);
	m[0] = 5, m[1] = 1, m[2] = 0, m[3] = 3, m[4] = (uint8_t)n;
	memcpy(m + 5, name, n);
	m[5 + n] = (uint8_t)(port >> 8);
	m[6 + n] = (uint8_t)port;
	return 7 + n;
}

/* ---- SOCKS5 ---- */

static void test_socks5_connect_pipelined(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_v4(m + 3, 1, 8080);
	memcpy(m + n, "hello", 5);
	csend(fd, m, n + 5); /* greeting, request and data in one segment */
	uint8_t r[12];
	crecv(fd, r, 12);
	assert_memory_equal(r, "\x05\x00", 2);
	assert_memory_equal(r + 2, "\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "hello", 5);
	assert_int_equal(last_port, 8080);
	assert_memory_equal(last_dst.addr, "\x0a\x00\x00\x01", 4);
	/* the spliced socket is the client's connection */
	csend(spliced_fd, "pong", 4);
	crecv(fd, r, 4);
	assert_memory_equal(r, "pong", 4);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.accepted, 1);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.head_bytes, 5);
	assert_int_equal(stt.pending, 0);
	close(fd);
	px_socks_free(s);
}

static void test_socks5_byte_by_byte(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_name(m + 3, "async.mesh", 443);
	uint8_t r[2];
	for (size_t i = 0; i < n; i++) {
		csend(fd, m + i, 1);
		pump(2);
		if (i == 2) {
			crecv(fd, r, 2);
			assert_memory_equal(r, "\x05\x00", 2);
		}
	}
	uint8_t rep[10];
	crecv(fd, rep, 10);
	assert_int_equal(rep[1], SOCKS5_REP_SUCCEEDED);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 0);
	assert_memory_equal(last_dst.addr, "\x0a\x00\x00\x01", 4);
	assert_int_equal(last_port, 443);
	close(fd);
	px_socks_free(s);
}

/* Sends a no-auth CONNECT (request bytes in m) and returns the reply code. */
static uint8_t socks_try(struct px_socks *s, const uint8_t *req, size_t n)
{
	int fd = socks_client(s);
	csend(fd, "\x05\x01\x00", 3);
	csend(fd, req, n);
	uint8_t r[12];
	crecv(fd, r, 12);
	assert_memory_equal(r, "\x05\x00\x05", 3);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	return r[3];
}

static void test_socks5_reply_codes(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	uint8_t m[300];
	assert_int_equal(socks_try(s, m, req_v4(m, 2, 80)), SOCKS5_REP_REFUSED);
	assert_int_equal(socks_try(s, m, req_v4(m, 3, 80)), SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(socks_try(s, m, req_v4(m, 4, 80)), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks_try(s, m, req_v4(m, 9, 80)), SOCKS5_REP_NET_UNREACH);
	assert_int_equal(n_dials, 3); /* no dial without a route */
	/* names: synchronous (hosts) and asynchronous (DNS server) answers */
	assert_int_equal(socks_try(s, m, req_name(m, "refused.mesh", 80)),
	                 SOCKS5_REP_REFUSED);
	assert_int_equal(socks_try(s, m, req_name(m, "offmesh.mesh", 80)),
	                 SOCKS5_REP_NET_UNREACH);
	assert_int_equal(socks_try(s, m, req_name(m, "noroute.mesh", 80)),
	                 SOCKS5_REP_NET_UNREACH);
	assert_int_equal(socks_try(s, m, req_name(m, "nxdomain.mesh", 80)),
	                 SOCKS5_REP_HOST_UNREACH);
	/* protocol */
	const uint8_t bind[] = {5, 2, 0, 1, 10, 0, 0, 1, 0, 80};
	assert_int_equal(socks_try(s, bind, sizeof(bind)), SOCKS5_REP_CMD_UNSUPPORTED);
	const uint8_t atyp[] = {5, 1, 0, 9};
	assert_int_equal(socks_try(s, atyp, sizeof(atyp)), SOCKS5_REP_ATYP_UNSUPPORTED);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_refused, 2);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.err_unreachable, 1);
	assert_int_equal(stt.err_no_route, 3);
	assert_int_equal(stt.err_resolve, 1);
	assert_int_equal(stt.err_protocol, 2);
	assert_int_equal(stt.established, 0);
	assert_int_equal(stt.pending, 0);
	/* without a resolver names fail with 0x04 */
	struct evdns_base *dns = env.dns;
	env.dns = NULL;
	struct px_socks *s2 = socks_new(NULL, NULL);
	assert_int_equal(socks_try(s2, m, req_name(m, "sync.mesh", 80)),
	                 SOCKS5_REP_HOST_UNREACH);
	env.dns = dns;
	px_socks_free(s2);
	px_socks_free(s);
}

static void test_socks5_auth(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new("alice", "secret");
	uint8_t r[12];
	/* a client without username/password support */
	int fd = socks_client(s);
	csend(fd, "\x05\x01\x00", 3);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\xff", 2);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	/* wrong password: 0x01 and close */
	fd = socks_client(s);
	csend(fd, "\x05\x02\x00\x02", 4);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\x02", 2);
	csend(fd,
	      "\x01\x05"
	      "alice"
	      "\x06"
	      "secreT",
	      14);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x01\x01", 2);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	/* right: everything in one go */
	fd = socks_client(s);
	uint8_t m[64];
	memcpy(m,
	       "\x05\x01\x02"
	       "\x01\x05"
	       "alice"
	       "\x06"
	       "secret",
	       17);
	size_t n = 17 + req_v4(m + 17, 1, 22);
	csend(fd, m, n);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\x02", 2);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x01\x00", 2);
	crecv(fd, r, 10);
	assert_int_equal(r[1], 0);
	assert_int_equal(n_splices, 1);
	close(fd);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_auth, 2);
	assert_int_equal(stt.established, 1);
	px_socks_free(s);
}

/* SOCKS4a on the SOCKS5 port, byte by byte with early data; BIND and
 * SOCKS4 under configured credentials get 91. */
static void test_socks4(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	const uint8_t req[] = {4,   1,   0x1f, 0x90, 0,   0,   0,   1,
	                       'u', 0,   '1',  '0',  '.', '0', '.', '0',
	                       '.', '1', 0,    'E',  'A', 'R', 'L', 'Y'};
	for (size_t i = 0; i + 6 < sizeof(req); i++) {
		csend(fd, req + i, 1);
		pump(1);
	}
	csend(fd, req + sizeof(req) - 6, 6); /* the last NUL and early data */
	uint8_t r[8];
	crecv(fd, r, 8);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], SOCKS4_REP_GRANTED);
	assert_int_equal(last_port, 8080);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "EARLY", 5);
	close(fd);
	fd = socks_client(s);
	csend(fd, "\x04\x02\x00\x50\x0a\x00\x00\x01\x00", 9); /* BIND */
	crecv(fd, r, 8);
	assert_int_equal(r[1], SOCKS4_REP_REJECTED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	px_socks_free(s);
	s = socks_new("alice", "secret");
	fd = socks_client(s);
	csend(fd, "\x04\x01\x00\x50\x0a\x00\x00\x01alice\x00", 14);
	crecv(fd, r, 8);
	assert_int_equal(r[1], SOCKS4_REP_REJECTED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_auth, 1);
	assert_int_equal(n_splices, 1);
	px_socks_free(s);
}

static void test_socks5_timeouts(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	/* a client that says nothing */
	int idle = socks_client(s);
	/* a client that stops halfway */
	int half = socks_client(s);
	csend(half, "\x05\x01\x00\x05\x01", 5);
	/* not SOCKS5 at all */
	int http = socks_client(s);
	csend(http, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_int_equal(cclosed(http), 0);
	assert_int_equal(cclosed(idle), 0);
	uint8_t r[2];
	crecv(half, r, 2);
	assert_int_equal(cclosed(half), 0);
	close(idle);
	close(half);
	close(http);
	/* a dial that never answers: 0x06 after connect_timeout_ms, and the
	 * late connection is reset */
	int fd = socks_client(s);
	uint8_t m[16] = {5, 1, 0};
	csend(fd, m, 3 + req_v4(m + 3, 5, 80));
	uint8_t rep[12];
	crecv(fd, rep, 12);
	assert_int_equal(rep[3], SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	assert_non_null(hung);
	struct ns_tcp *c = hung;
	hung = NULL;
	c->cb(c->ctx, c, 0); /* the dial completes after all */
	assert_int_equal(n_aborts, 1);
	assert_int_equal(n_splices, 0);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_handshake_timeout, 2); /* idle and half */
	assert_int_equal(stt.err_protocol, 1);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.pending, 0);
	px_socks_free(s);
}

/* Front-end freed while a dial and a name lookup are outstanding. */
static void test_socks5_free_while_pending(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int a = socks_client(s), b = socks_client(s), c = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	csend(a, m, 3 + req_v4(m + 3, 5, 80));
	csend(b, m, 3 + req_name(m + 3, "async.mesh", 80));
	csend(c, "\x05", 1);
	/* b's lookup goes out; free before the answer is processed */
	for (int i = 0; i < 20 && !hung; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	assert_non_null(hung);
	uint8_t r[2];
	crecv(a, r, 2);
	crecv(b, r, 2);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.pending, 3);
	px_socks_free(s);
	assert_int_equal(cclosed(a), 0);
	assert_int_equal(cclosed(c), 0);
	pump(50); /* the DNS answer or the cancellation arrives */
	struct ns_tcp *h = hung;
	hung = NULL;
	h->cb(h->ctx, h, 0);
	pump(20);
	assert_int_equal(n_splices, 0);
	assert_true(n_aborts >= 1);
	close(a);
	close(b);
	close(c);
}

/* A resolver that never answers: the connect timer answers 0x06, and
 * closing (or freeing the front-end) cancels the lookups. */
static void test_socks5_dns_cancel(void **st)
{
	reset_fake();
	int hole = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(hole, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t sl = sizeof(sin);
	getsockname(hole, (struct sockaddr *)&sin, &sl);
	struct evdns_base *dns = env.dns;
	env.dns = evdns_base_new(base, 0);
	evdns_base_nameserver_sockaddr_add(env.dns, (struct sockaddr *)&sin, sl, 0);
	struct px_socks *s = socks_new(NULL, NULL);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_name(m + 3, "silent.mesh", 80);
	int a = socks_client(s);
	csend(a, m, n);
	uint8_t r[12];
	crecv(a, r, 12);
	assert_int_equal(r[3], SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(cclosed(a), 0);
	close(a);
	pump(20);
	int b = socks_client(s);
	csend(b, m, n);
	crecv(b, r, 2);
	pump(20);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.pending, 1);
	px_socks_free(s); /* b is still resolving */
	assert_int_equal(cclosed(b), 0);
	close(b);
	pump(20);
	assert_int_equal(n_dials, 0);
	evdns_base_free(env.dns, 1);
	env.dns = dns;
	close(hole);
}

/* ---- HTTP CONNECT ---- */

static struct px_http *http_new(const char *user, const char *pass)
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

static int http_client(struct px_http *h)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_http_local_addr(h, &ss, &sl);
	return client(&ss, sl);
}

/* Sends req and returns the status of the response (whole head read). */
static int http_try(struct px_http *h, const char *req, bool expect_close)
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

static void test_http_proxy(void **st)
{
	reset_fake();
	struct px_http *h = http_new(NULL, NULL);
	assert_int_equal(
	    http_try(h, "CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\nEARLY", false),
	    200);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "EARLY", 5);
	assert_int_equal(http_try(h, "CONNECT sync.mesh:80 HTTP/1.1\r\n\r\n", false),
	                 200);
	assert_int_equal(http_try(h, "CONNECT [fd00::1]:80 HTTP/1.1\r\n\r\n", false),
	                 200);
	assert_int_equal(last_dst.family, AF_INET6);
	assert_int_equal(http_try(h, "CONNECT 10.0.0.2:80 HTTP/1.1\r\n\r\n", true), 502);
	assert_int_equal(http_try(h, "CONNECT 10.0.0.3:80 HTTP/1.1\r\n\r\n", true), 504);
	assert_int_equal(http_try(h, "CONNECT 10.0.0.4:80 HTTP/1.1\r\n\r\n", true), 502);
	assert_int_equal(http_try(h, "CONNECT 10.9.0.1:80 HTTP/1.1\r\n\r\n", true), 502);
	assert_int_equal(http_try(h, "CONNECT nxdomain.mesh:80 HTTP/1.1\r\n\r\n", true),
	                 502);
	assert_int_equal(http_try(h, "CONNECT 10.0.0.5:80 HTTP/1.1\r\n\r\n", true), 504);
	struct ns_tcp *c = hung;
	hung = NULL;
	c->cb(c->ctx, c, 0);
	assert_int_equal(http_try(h, "TRACE http://10.0.0.1/ HTTP/1.1\r\n\r\n", true),
	                 501);
	/* Plain forwarding: no answer of ours; the rewritten head and the body
	 * bytes that came with it are the splice head. */
	int fwd = http_client(h);
	const char *post =
	    "POST http://10.0.0.1:8080/x?y HTTP/1.1\r\nHost: h\r\n"
	    "Proxy-Connection: keep-alive\r\nContent-Length: 4\r\n\r\nBODY";
	const char *sent = "POST /x?y HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"
	                   "Content-Length: 4\r\nConnection: close\r\n\r\nBODY";
	csend(fwd, post, strlen(post));
	long until = now_ms() + 2000;
	while (spliced_head_len != strlen(sent) && now_ms() < until)
		pump(5);
	assert_int_equal(spliced_head_len, strlen(sent));
	assert_memory_equal(spliced_head, sent, strlen(sent));
	assert_int_equal(last_port, 8080);
	close(fwd);
	assert_int_equal(http_try(h, "CONNECT 10.0.0.1 HTTP/1.1\r\n\r\n", true), 400);
	char *big = malloc(PX_HTTP_MAX_HEADER + 64);
	size_t n = (size_t)sprintf(big, "CONNECT 10.0.0.1:80 HTTP/1.1\r\nX: ");
	memset(big + n, 'x', PX_HTTP_MAX_HEADER);
	strcpy(big + n + PX_HTTP_MAX_HEADER - 30, "\r\n\r\n"); /* ends past 8 KiB */
	assert_true(strlen(big) > PX_HTTP_MAX_HEADER);
	assert_int_equal(http_try(h, big, true), 431);
	free(big);
	/* byte by byte */
	int fd = http_client(h);
	const char *req = "CONNECT 10.0.0.1:8080 HTTP/1.1\r\n\r\n";
	for (size_t i = 0; req[i]; i++) {
		csend(fd, req + i, 1);
		pump(1);
	}
	char resp[64];
	crecv(fd, resp, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
	assert_memory_equal(resp, "HTTP/1.1 200", 12);
	assert_int_equal(last_port, 8080);
	close(fd);
	/* silence: closed after the handshake timeout */
	fd = http_client(h);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.established, 5);
	assert_int_equal(stt.err_protocol, 3);
	assert_int_equal(stt.err_handshake_timeout, 1);
	assert_int_equal(stt.err_timeout, 2);
	assert_int_equal(stt.pending, 0);
	px_http_free(h);
}

static void test_http_auth_required(void **st)
{
	reset_fake();
	struct px_http *h = http_new("alice", "secret");
	assert_int_equal(http_try(h, "CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n", true), 407);
	assert_int_equal(http_try(h,
	                          "CONNECT 10.0.0.1:443 HTTP/1.1\r\n"
	                          "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n",
	                          true),
	                 407);
	assert_int_equal(http_try(h,
	                          "CONNECT 10.0.0.1:443 HTTP/1.1\r\n"
	                          "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n",
	                          false),
	                 200);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_auth, 2);
	assert_int_equal(stt.established, 1);
	px_http_free(h);
}

/* ---- tunnels ---- */

static void test_client_tunnel(void **st)
{
	reset_fake();
	struct cfg_tcp_client_tunnel c = {
	    .bind = loopback_any_port(), .target_host = "10.0.0.1", .target_port = 22};
	char err[200];
	struct px_tunnel *t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	assert_non_null(t);
	char desc[200];
	px_tunnel_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "-> 10.0.0.1:22"));
	struct sockaddr_storage ss;
	socklen_t sl;
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	int fd = client(&ss, sl);
	csend(fd, "SSH-2.0", 7);
	pump(20);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 0); /* the data stays in the socket */
	char b[8];
	assert_int_equal(recv(spliced_fd, b, 7, 0), 7);
	assert_memory_equal(b, "SSH-2.0", 7);
	close(fd);
	px_tunnel_free(t);

	/* refused: the local client is reset */
	c.target_host = "10.0.0.2";
	t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	fd = client(&ss, sl);
	assert_int_equal(cclosed(fd), ECONNRESET);
	close(fd);
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.err_refused, 1);
	px_tunnel_free(t);

	/* a name target goes through the resolver */
	c.target_host = "async.mesh";
	t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	fd = client(&ss, sl);
	pump(100);
	assert_int_equal(n_splices, 2);
	close(fd);
	px_tunnel_free(t);
}

static void test_server_tunnel(void **st)
{
	reset_fake();
	/* a local service */
	int srv = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(srv, (struct sockaddr *)&sin, sizeof(sin)), 0);
	listen(srv, 8);
	socklen_t sl = sizeof(sin);
	getsockname(srv, (struct sockaddr *)&sin, &sl);
	struct cfg_tcp_server_tunnel c = {.listen_port = 8080,
	                                  .target_host = "127.0.0.1",
	                                  .target_port = ntohs(sin.sin_port)};
	char err[200];
	struct px_tunnel *t = px_tcp_server_tunnel_new(&env, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	assert_int_equal(listen_port, 8080);
	struct ns_addr src;
	px_addr_parse(&src, "10.0.0.9");
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &src, 40000, 8080);
	pump(20);
	assert_int_equal(n_splices, 1);
	int acc = accept(srv, NULL, NULL);
	assert_true(acc >= 0);
	csend(spliced_fd, "hi", 2);
	char b[2];
	assert_int_equal(recv(acc, b, 2, 0), 2);
	close(acc);
	close(srv); /* now the port refuses */
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &src, 40001, 8080);
	pump(20);
	assert_int_equal(n_aborts, 1); /* the mesh side is reset */
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.accepted, 2);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.err_refused, 1);
	assert_int_equal(stt.pending, 0);
	char desc[200];
	px_tunnel_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "tcp-server mesh:8080 -> 127.0.0.1:"));
	px_tunnel_free(t);
}

/* Out of descriptors: the listener pauses instead of spinning, and
 * accepts the waiting connections once descriptors are free again. */
static void test_emfile(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = socks_client(s);
	struct rlimit old, low;
	getrlimit(RLIMIT_NOFILE, &old);
	int probe = dup(0); /* the lowest free descriptor */
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe; /* no new descriptor can be made */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	pump(250);
	setrlimit(RLIMIT_NOFILE, &old);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_true(stt.err_accept >= 1 && stt.err_accept <= 5); /* ~1 per 100 ms */
	assert_int_equal(stt.accepted, 0);
	pump(200);
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.accepted, 8);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	px_socks_free(s);
}

static void test_bind_error(void **st)
{
	struct px_socks *s = socks_new(NULL, NULL);
	struct cfg_socks5 c = {.bind = loopback_any_port()};
	px_socks_local_addr(s, &c.bind.addr, &c.bind.addr_len);
	char err[200];
	assert_null(px_socks_new(&env, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "127.0.0.1:"));
	assert_non_null(strstr(err, "Address already in use"));
	px_socks_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socks5_connect_pipelined),
	    cmocka_unit_test(test_socks5_byte_by_byte),
	    cmocka_unit_test(test_socks5_reply_codes),
	    cmocka_unit_test(test_socks5_auth),
	    cmocka_unit_test(test_socks5_timeouts),
	    cmocka_unit_test(test_socks4),
	    cmocka_unit_test(test_socks5_free_while_pending),
	    cmocka_unit_test(test_socks5_dns_cancel),
	    cmocka_unit_test(test_http_proxy),
	    cmocka_unit_test(test_http_auth_required),
	    cmocka_unit_test(test_client_tunnel),
	    cmocka_unit_test(test_server_tunnel),
	    cmocka_unit_test(test_emfile),
	    cmocka_unit_test(test_bind_error),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
