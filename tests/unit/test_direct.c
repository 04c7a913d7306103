/* Direct = yes: destinations no mesh peer routes (here 127.0.0.0/8) are
 * connected from the host and relayed by direct.c. Against real listening
 * sockets on 127.0.0.1: bytes both ways with early data, half-close both
 * ways, RST propagation, refused / unreachable / timed out, IdleTimeout,
 * back-pressure, Direct = no, and teardown with live relays. The mesh side
 * is the fake netstack of px_test_fake.h. */
#include "px_test_fake.h"

#include <poll.h>

/* A listening socket on 127.0.0.1 (blocking); returns it, port in *port. */
static int server(uint16_t *port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	socklen_t sl = sizeof(sin);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Accepts on lfd while the loop runs (the relay connects meanwhile). */
static int accept_pumped(int lfd)
{
	long end = now_ms() + 2000;
	while (now_ms() < end) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1) {
			int fd = accept(lfd, NULL, NULL);
			fcntl(fd, F_SETFL, O_NONBLOCK);
			return fd;
		}
		pump(1);
	}
	fail_msg("no connection from the relay");
	return -1;
}

static struct px_http *http_direct(bool direct, uint32_t idle_ms, uint32_t buf)
{
	struct cfg_http c = {.bind = loopback_any_port(),
	                     .direct = direct ? CFG_DIRECT_ALL : CFG_DIRECT_NO};
	c.limits.idle_timeout_ms = idle_ms;
	c.limits.buffer_bytes = buf;
	char err[200];
	struct px_http *h = px_http_new(&env, &c, err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	return h;
}

static size_t front_relays(struct px_http *h)
{
	return ((struct px_front *)h)->n_relays; /* the front is its first member */
}

static int http_status(int fd)
{
	char buf[512];
	size_t n = 0;
	while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
		crecv(fd, buf + n, 1);
		n++;
		assert_true(n < sizeof(buf) - 1);
	}
	buf[n] = 0;
	return atoi(buf + 9);
}

/* CONNECT 127.0.0.1:port with early bytes; returns the client socket after
 * the 200 and the server side in *srv. */
static int relay_open(struct px_http *h, int lfd, uint16_t port, const char *early,
                      int *srv)
{
	int fd = http_client(h);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n%s", port,
	         early);
	csend(fd, req, strlen(req));
	*srv = accept_pumped(lfd);
	assert_int_equal(http_status(fd), 200);
	return fd;
}

static void test_direct_bytes_both_ways(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(true, 0, 0);
	int srv, fd = relay_open(h, lfd, port, "EARLY", &srv);
	assert_int_equal(n_dials, 0); /* not through the mesh */
	char b[16];
	crecv(srv, b, 5);
	assert_memory_equal(b, "EARLY", 5);
	csend(fd, "ping", 4);
	crecv(srv, b, 4);
	assert_memory_equal(b, "ping", 4);
	csend(srv, "pong!", 5);
	crecv(fd, b, 5);
	assert_memory_equal(b, "pong!", 5);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.direct, 1);
	assert_int_equal(stt.active, 1);
	assert_int_equal(stt.head_bytes, 5);
	assert_int_equal(stt.bytes_up, 9);
	assert_int_equal(stt.bytes_down, 5);
	assert_int_equal(stt.pending, 0);
	/* A name that DNS answers with a loopback address goes direct too. */
	int fd2 = http_client(h);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT local.test:%u HTTP/1.1\r\n\r\n", port);
	csend(fd2, req, strlen(req));
	int srv2 = accept_pumped(lfd);
	assert_int_equal(http_status(fd2), 200);
	/* Freeing the front-end closes its relays. */
	px_http_free(h);
	assert_int_equal(cclosed(fd), 0);
	assert_int_equal(cclosed(fd2), 0);
	assert_int_equal(recv(srv, b, 1, 0), 0);
	close(fd);
	close(fd2);
	close(srv);
	close(srv2);
	close(lfd);
}

/* EOF goes across as a half-close; the other direction keeps working. */
static void test_direct_half_close(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(true, 0, 0);
	int srv, fd = relay_open(h, lfd, port, "", &srv);
	/* client -> server EOF */
	csend(fd, "last", 4);
	shutdown(fd, SHUT_WR);
	char b[16];
	crecv(srv, b, 4);
	assert_int_equal(cclosed(srv), 0); /* EOF, not a reset */
	/* server -> client still flows */
	csend(srv, "reply", 5);
	crecv(fd, b, 5);
	assert_memory_equal(b, "reply", 5);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.active, 1);
	/* server EOF: both ways done, the relay closes */
	shutdown(srv, SHUT_WR);
	assert_int_equal(cclosed(fd), 0);
	pump(10);
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.active, 0);
	assert_int_equal(front_relays(h), 0);
	close(fd);
	close(srv);
	/* and the other way round: the server ends first */
	fd = relay_open(h, lfd, port, "", &srv);
	csend(srv, "bye", 3);
	shutdown(srv, SHUT_WR);
	crecv(fd, b, 3);
	assert_int_equal(cclosed(fd), 0);
	csend(fd, "late", 4);
	crecv(srv, b, 4);
	assert_memory_equal(b, "late", 4);
	close(fd);
	assert_int_equal(cclosed(srv), 0);
	pump(10);
	assert_int_equal(front_relays(h), 0);
	close(srv);
	px_http_free(h);
	close(lfd);
}

/* A reset on one side resets the other. */
static void test_direct_reset(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(true, 0, 0);
	int srv, fd = relay_open(h, lfd, port, "", &srv);
	struct linger lg = {1, 0};
	setsockopt(srv, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(srv);
	assert_int_equal(cclosed(fd), ECONNRESET);
	close(fd);
	fd = relay_open(h, lfd, port, "", &srv);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	assert_int_equal(cclosed(srv), ECONNRESET);
	close(srv);
	pump(10);
	assert_int_equal(front_relays(h), 0);
	px_http_free(h);
	close(lfd);
}

/* Failures map to 502 (refused, unreachable) and 504 (no answer). (This
 * machine's network may answer for any address, so unreachable is only
 * checked through the errno mapping.) */
static void test_direct_failures(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	close(lfd); /* now refused */
	struct px_http *h = http_direct(true, 0, 0);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", port);
	assert_int_equal(http_try(h, req, true), 502);
	/* A full accept queue drops the SYN: no answer before the connect
	 * timeout (400 ms here). */
	int full = server(&port, 0);
	int fill[4];
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons(port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	pump(50);
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", port);
	assert_int_equal(http_try(h, req, true), 504);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_refused, 1);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.established, 0);
	assert_int_equal(stt.pending, 0);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(full);
	px_http_free(h);
	assert_int_equal(px_err_from_host_errno(ECONNREFUSED), PX_E_REFUSED);
	assert_int_equal(px_err_from_host_errno(ENETUNREACH), PX_E_UNREACHABLE);
	assert_int_equal(px_err_from_host_errno(EHOSTUNREACH), PX_E_UNREACHABLE);
	assert_int_equal(px_err_from_host_errno(ETIMEDOUT), PX_E_TIMEOUT);
	assert_int_equal(px_err_from_host_errno(EACCES), PX_E_GENERAL);
}

/* Direct = no: the old answer, no route. */
static void test_direct_off(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(false, 0, 0);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", port);
	assert_int_equal(http_try(h, req, true), 502);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_no_route, 1);
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0); /* nobody connected */
	px_http_free(h);
	close(lfd);
}

/* The policy on the real path: without the unit tests' loopback leave,
 * 127.0.0.1 (a listening server) and the metadata address are refused
 * with 403 and counted, and no connection is attempted; with Direct =
 * public a private address is refused too. */
static void test_direct_policy_refuses(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	env.direct_loopback_for_tests = false;
	struct px_http *h = http_direct(true, 0, 0);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%u HTTP/1.1\r\n\r\n", port);
	assert_int_equal(http_try(h, req, true), 403);
	assert_int_equal(http_try(h, "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", true),
	                 403);
	assert_int_equal(
	    http_try(h, "CONNECT [::ffff:127.0.0.1]:80 HTTP/1.1\r\n\r\n", true), 403);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_denied, 3);
	assert_int_equal(stt.direct, 0);
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0); /* nobody connected */
	px_http_free(h);

	struct cfg_http c = {.bind = loopback_any_port(), .direct = CFG_DIRECT_PUBLIC};
	char err[200];
	h = px_http_new(&env, &c, err, sizeof(err));
	assert_non_null(h);
	/* RFC 1918 on purpose: the test is about private ranges */
	assert_int_equal(http_try(h, "CONNECT 192.168.1.1:80 HTTP/1.1\r\n\r\n", true),
	                 403);
	px_http_free(h);
	env.direct_loopback_for_tests = true;
	close(lfd);
}

/* IdleTimeout resets a quiet relay (both sides). */
static void test_direct_idle_timeout(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(true, 300, 0);
	int srv, fd = relay_open(h, lfd, port, "", &srv);
	/* traffic keeps it alive past the timeout */
	for (int i = 0; i < 5; i++) {
		pump(100);
		char b;
		csend(fd, "x", 1);
		crecv(srv, &b, 1);
	}
	long t0 = now_ms();
	assert_int_equal(cclosed(fd), ECONNRESET);
	long took = now_ms() - t0;
	assert_true(took >= 250 && took < 2000);
	assert_int_equal(cclosed(srv), ECONNRESET);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_idle, 1);
	assert_int_equal(stt.active, 0);
	close(fd);
	close(srv);
	px_http_free(h);
	close(lfd);
}

/* A destination that does not read stops the client: the relay holds at
 * most one chunk, so the client's writes soon block. */
static void test_direct_back_pressure(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = server(&port, 8);
	struct px_http *h = http_direct(true, 0, 16384);
	int srv, fd = relay_open(h, lfd, port, "", &srv);
	int small = 65536;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	static uint8_t chunk[65536];
	memset(chunk, 'z', sizeof(chunk));
	size_t sent = 0;
	int stuck = 0;
	while (stuck < 50 && sent < (64u << 20)) {
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			stuck = 0;
		} else {
			stuck++;
		}
		pump(1);
	}
	assert_true(sent < (16u << 20)); /* kernel buffers plus one chunk */
	/* The chunk the relay keeps is charged to the node's memory budget. */
	assert_true(fake_mem_charged > 0 && fake_mem_charged <= 16384);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_true(stt.bytes_up > 0 && stt.bytes_up <= sent);
	/* Reading at the destination drains everything, byte-exact count. */
	size_t got = 0;
	long end = now_ms() + 5000;
	while (got < sent && now_ms() < end) {
		ssize_t n = recv(srv, chunk, sizeof(chunk), 0);
		if (n > 0)
			got += (size_t)n;
		pump(0);
	}
	assert_int_equal(got, sent);
	assert_int_equal(fake_mem_charged, 0);
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.bytes_up, sent);
	close(fd);
	close(srv);
	px_http_free(h);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_direct_bytes_both_ways),
	    cmocka_unit_test(test_direct_half_close),
	    cmocka_unit_test(test_direct_reset),
	    cmocka_unit_test(test_direct_failures),
	    cmocka_unit_test(test_direct_off),
	    cmocka_unit_test(test_direct_policy_refuses),
	    cmocka_unit_test(test_direct_idle_timeout),
	    cmocka_unit_test(test_direct_back_pressure),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
