/* The health listener over a real socket on 127.0.0.1: /livez, /readyz
 * following the ready callback (200 / 503 with the reason), /metrics with
 * the Prometheus content type, 404, 405 with Allow, oversized headers
 * refused; and --health-listen's address parsing. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/util/healthd.h"
#include "core/util/http_conns.h"
#include "core/util/procmetrics.h"
#include "core/util/prom.h"

static void parse_listen(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];
	assert_int_equal(
	    healthd_parse_listen("127.0.0.1:9090", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9090);
	assert_int_equal(healthd_parse_listen("[::1]:1", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(
	    healthd_parse_listen("0.0.0.0:65535", &ss, &len, err, sizeof(err)), 0);
	static const char *const bad[] = {"",
	                                  "9090",
	                                  ":9090",
	                                  "127.0.0.1",
	                                  "127.0.0.1:",
	                                  "127.0.0.1:0",
	                                  "127.0.0.1:65536",
	                                  "127.0.0.1:+80",
	                                  "localhost:80",
	                                  "[::1:80",
	                                  "::1:80",
	                                  "[127.0.0.1]:80",
	                                  "1.2.3.4:80 ",
	                                  "1.2.3.4:0080x",
	                                  "300.1.1.1:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(
		    healthd_parse_listen(bad[i], &ss, &len, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "--health-listen"));
		assert_null(strchr(err, '\n'));
	}
	char longs[600];
	memset(longs, '1', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	assert_int_equal(healthd_parse_listen(longs, &ss, &len, err, sizeof(err)), -1);
	assert_int_equal(healthd_parse_listen(NULL, &ss, &len, err, sizeof(err)), -1);
}

struct fixture {
	struct event_base *base;
	struct healthd *hd;
	uint16_t port;
	bool ready;
	int metrics_calls;
	bool bad_metric;
};

static bool t_ready(void *ctx, char *why, size_t cap)
{
	struct fixture *f = ctx;
	if (!f->ready)
		snprintf(why, cap, "mesh-control unreachable");
	return f->ready;
}

static void t_metrics(void *ctx, struct prom *p)
{
	struct fixture *f = ctx;
	f->metrics_calls++;
	prom_counter(p, "test_requests_total", "Requests.", 7);
	if (f->bad_metric) /* a gauge named like a counter: refused */
		prom_gauge(p, "test_bad_total", "Bad.", 1);
}

/* A free port on 127.0.0.1 (bound and let go: nothing else here takes it
 * in between). */
static uint16_t free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char listen[64], err[256];
	f->base = event_base_new();
	f->port = free_port();
	f->ready = true;
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", f->port);
	struct healthd_ops ops = {.ready = t_ready, .metrics = t_metrics, .ctx = f};
	f->hd = healthd_new(f->base, listen, "test", &ops, err, sizeof(err));
	if (!f->hd) {
		fprintf(stderr, "healthd_new: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	healthd_free(f->hd);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* Sends req and runs the loop until the server closes the connection (or
 * 3 s pass); the answer in out. */
static size_t exchange(struct fixture *f, const char *req, char *out, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(f->port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	assert_true(r == 0 || errno == EINPROGRESS);
	size_t sent = 0, got = 0, n = strlen(req);
	time_t end = time(NULL) + 3;
	while (time(NULL) < end) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		if (sent < n) {
			ssize_t w = send(fd, req + sent, n - sent, MSG_NOSIGNAL);
			if (w > 0)
				sent += (size_t)w;
		}
		ssize_t rd = recv(fd, out + got, cap - 1 - got, 0);
		if (rd == 0)
			break;
		if (rd > 0)
			got += (size_t)rd;
		else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
			break;
		usleep(1000);
	}
	out[got] = 0;
	close(fd);
	return got;
}

/* The answer's status line says code (the version follows the request's). */
static bool status_is(const char *buf, int code)
{
	char want[8];
	snprintf(want, sizeof(want), " %d ", code);
	return strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, want, 5) == 0;
}

static void livez_readyz_metrics(void **state)
{
	struct fixture *f = *state;
	char buf[8192];
	exchange(f, "GET /livez HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
	assert_non_null(strstr(buf, "\r\n\r\nok\n"));

	exchange(f, "GET /readyz HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
	assert_non_null(strstr(buf, "\r\n\r\nready\n"));
	f->ready = false;
	exchange(f, "GET /readyz?full HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 503));
	assert_non_null(strstr(buf, "\r\n\r\nnot ready: mesh-control unreachable\n"));
	/* liveness does not follow readiness */
	exchange(f, "GET /livez HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));

	exchange(f, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
	assert_non_null(strstr(buf, "Content-Type: " PROM_CONTENT_TYPE "\r\n"));
	assert_non_null(strstr(buf, "\ntest_requests_total 7\n"));
	assert_int_equal(f->metrics_calls, 1);
	/* the process metrics and the build info follow */
	static const char *const proc[] = {
	    "\nprocess_cpu_seconds_total ",
	    "\nprocess_resident_memory_bytes ",
	    "\nprocess_virtual_memory_bytes ",
	    "\nprocess_open_fds ",
	    "\nprocess_max_fds ",
	    "\nprocess_start_time_seconds ",
	    "\nmeshproxy_build_info{program=\"test\",version=\""};
	for (size_t i = 0; i < sizeof(proc) / sizeof(proc[0]); i++)
		assert_non_null(strstr(buf, proc[i]));
	double start = strtod(strstr(buf, "\nprocess_start_time_seconds ") + 28, NULL);
	assert_true(start > 1.6e9 && start <= (double)time(NULL) + 1);
	struct healthd_stats st;
	healthd_get_stats(f->hd, &st);
	assert_int_equal(st.livez, 2);
	assert_int_equal(st.readyz, 2);
	assert_int_equal(st.metrics, 1);
}

/* /proc/PID/stat: the command name may hold spaces and ')'; a cut or
 * garbled line is refused. */
static void proc_stat_parse(void **state)
{
	(void)state;
	struct proc_stat st;
	const char *ok = "123 (a) b) c) S 1 123 123 0 -1 4194560 100 0 0 0 "
	                 "250 50 0 0 20 0 1 0 9876 123456789 321 18446744073709551615";
	/* tpgid -1 (no terminal) is fine: not a field we read */
	assert_int_equal(procmetrics_parse_stat(ok, strlen(ok), &st), 0);
	assert_int_equal(st.rss, 321);
	const char *neg = "1 (x) S 1 1 1 0 0 0 0 0 0 0 -5 50 0 0 20 0 1 0 9 9 9";
	assert_int_equal(procmetrics_parse_stat(neg, strlen(neg), &st), -1);
	const char *good = "123 (a) b) c) S 1 123 123 0 0 4194560 100 0 0 0 "
	                   "250 50 0 0 20 0 1 0 9876 123456789 321 1844674407370955161";
	assert_int_equal(procmetrics_parse_stat(good, strlen(good), &st), 0);
	assert_int_equal(st.utime, 250);
	assert_int_equal(st.stime, 50);
	assert_int_equal(st.starttime, 9876);
	assert_int_equal(st.vsize, 123456789);
	assert_int_equal(st.rss, 321);
	assert_int_equal(procmetrics_parse_stat(good, 30, &st), -1);
	assert_int_equal(procmetrics_parse_stat("123 no paren", 12, &st), -1);
	assert_int_equal(procmetrics_parse_stat("", 0, &st), -1);
}

static void refusals(void **state)
{
	struct fixture *f = *state;
	char buf[8192];
	exchange(f, "POST /readyz HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", buf,
	         sizeof(buf));
	assert_true(status_is(buf, 405));
	assert_non_null(strstr(buf, "Allow: GET, HEAD\r\n"));
	exchange(f, "DELETE /livez HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 405));
	exchange(f, "GET /livezz HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 404));
	exchange(f, "GET / HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 404));
	exchange(f, "HEAD /readyz HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
	assert_null(strstr(buf, "ready\n")); /* no body, but its length */
	assert_non_null(strstr(buf, "Content-Length: 6\r\n"));
	/* Headers past HEALTHD_MAX_HEADER: not served. */
	char big[HEALTHD_MAX_HEADER + 256];
	int k = snprintf(big, sizeof(big), "GET /livez HTTP/1.0\r\nX-Pad: ");
	memset(big + k, 'a', sizeof(big) - (size_t)k - 5);
	memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
	exchange(f, big, buf, sizeof(buf));
	assert_false(status_is(buf, 200));
	/* and the listener still serves */
	exchange(f, "GET /livez HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
}

/* A refused metric line is counted in PREFIX_metrics_refused_total (the
 * prefix from the program's name, "test" here) on every scrape after. */
static void refused_lines_counted(void **state)
{
	struct fixture *f = *state;
	char buf[8192];
	exchange(f, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "\ntest_metrics_refused_total 0\n"));
	f->bad_metric = true;
	exchange(f, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_true(status_is(buf, 200));
	assert_null(strstr(buf, "test_bad_total"));
	assert_non_null(strstr(buf, "\ntest_metrics_refused_total 1\n"));
	exchange(f, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "\ntest_metrics_refused_total 2\n"));
}

/* A keep-alive client: connected, its requests' answers read and dropped. */
struct ka {
	int fd;
	size_t answers; /* "HTTP/1.1 200" seen */
	bool closed;
};

static int ka_open(const struct fixture *f)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(f->port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	assert_true(r == 0 || errno == EINPROGRESS);
	return fd;
}

static void ka_send(struct ka *k)
{
	static const char req[] = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
	if (!k->closed)
		(void)send(k->fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
}

static void ka_read(struct ka *k)
{
	char buf[4096];
	ssize_t rd;
	while (!k->closed && (rd = recv(k->fd, buf, sizeof(buf) - 1, 0)) != -1) {
		if (rd == 0) {
			k->closed = true;
			break;
		}
		buf[rd] = 0;
		for (char *s = buf; (s = strstr(s, "HTTP/1.1 200")) != NULL; s++)
			k->answers++;
	}
	if (!k->closed && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
		k->closed = true;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the server's loop and the clients' reads for ms (of the clock: a
 * loaded machine turns it fewer times, the test takes no longer). */
static void pump(struct fixture *f, struct ka *k, size_t n, int ms)
{
	for (int64_t end = now_ms() + ms; now_ms() < end;) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		for (size_t i = 0; i < n; i++)
			ka_read(&k[i]);
		usleep(2000);
	}
}

/* HEALTHD_MAX_CONNS keep-alive clients asking every 2 s hold every slot;
 * a fresh probe still gets its 200 within 1 s (the oldest connection
 * makes room), and a connection ends HTTP_CONNS_REQUEST_S after its
 * opening however often it asks. */
static void keepalive_clients_do_not_starve(void **state)
{
	struct fixture *f = *state;
	struct ka k[HEALTHD_MAX_CONNS + 1];
	const size_t n = HEALTHD_MAX_CONNS;
	for (size_t i = 0; i < n; i++) {
		k[i] = (struct ka){.fd = ka_open(f)};
		pump(f, k, i, 4); /* opened in order: k[0] is the oldest */
	}
	pump(f, k, n, 100);
	for (size_t i = 0; i < n; i++)
		ka_send(&k[i]);
	pump(f, k, n, 300);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(k[i].answers, 1);
	/* the probe: one more connection, GET /livez, 1 s */
	k[n] = (struct ka){.fd = ka_open(f)};
	pump(f, k, n + 1, 50);
	ka_send(&k[n]);
	for (int t = 0; t < 1000 && !k[n].answers; t += 10)
		pump(f, k, n + 1, 10);
	assert_int_equal(k[n].answers, 1);
	assert_true(k[0].closed); /* the oldest made room */
	/* the others keep asking every 2 s: none lives past its lifetime */
	for (int s = 0; s < HTTP_CONNS_REQUEST_S + 2; s += 2) {
		for (size_t i = 1; i <= n; i++)
			ka_send(&k[i]);
		pump(f, k, n + 1, 2000);
	}
	for (size_t i = 0; i <= n; i++) {
		assert_true(k[i].closed);
		close(k[i].fd);
	}
}

/* Sockets of this process now (the clients' and the server's). */
static int count_sockets(void)
{
	char path[64], link[64];
	int n = 0;
	for (int fd = 0; fd < 256; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		if (l > 0 && strncmp(link, "socket:", 7) == 0)
			n++;
	}
	return n;
}

/* 2 * HEALTHD_MAX_CONNS clients connected before the loop runs once (all
 * in the backlog, accepted in one turn), each asking every 2 s: the server
 * never holds more than HEALTHD_MAX_CONNS of them, and every one is closed
 * HTTP_CONNS_REQUEST_S after its opening (none escapes the count). */
static void backlog_burst_stays_bounded(void **state)
{
	struct fixture *f = *state;
	enum { N = 2 * HEALTHD_MAX_CONNS };
	struct ka k[N];
	int base = count_sockets(), most = 0;
	for (size_t i = 0; i < N; i++) {
		k[i] = (struct ka){.fd = ka_open(f)};
		ka_send(&k[i]);
	}
	int64_t t0 = (int64_t)time(NULL);
	for (int s = 0; s < HTTP_CONNS_REQUEST_S + 2; s += 2) {
		for (int64_t end = now_ms() + 2000; now_ms() < end;) {
			event_base_loop(f->base, EVLOOP_NONBLOCK);
			for (size_t i = 0; i < N; i++)
				ka_read(&k[i]);
			int held = count_sockets() - base - N;
			if (held > most)
				most = held;
			assert_true(http_conns_open(healthd_conns(f->hd)) <=
			            HEALTHD_MAX_CONNS);
			usleep(2000);
		}
		for (size_t i = 0; i < N; i++)
			ka_send(&k[i]);
	}
	/* ~12 s of loop above; by now all had their lifetime */
	pump(f, k, N, 1000);
	size_t open = 0;
	for (size_t i = 0; i < N; i++) {
		open += !k[i].closed;
		close(k[i].fd);
	}
	fprintf(stderr, "burst: at most %d held; %zu still open after %lld s\n", most,
	        open, (long long)(time(NULL) - t0));
	assert_true(most <= HEALTHD_MAX_CONNS);
	assert_int_equal(open, 0);
}

/* A client bound to src (127.0.0.x), connecting to the listener; rcvbuf:
 * its SO_RCVBUF (0: the default). */
static int open_src(const struct fixture *f, const char *src, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(f->port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in b = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, src, &b.sin_addr), 1);
	if (rcvbuf)
		assert_int_equal(
		    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0);
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	assert_true(r == 0 || errno == EINPROGRESS);
	return fd;
}

static int open_from(const struct fixture *f, const char *src)
{
	return open_src(f, src, 0);
}

/* A client from src that asks n times at once and never reads: its tiny
 * receive window keeps the answers in the server's send queue (a request
 * in flight, as the server sees it). */
static int stuck_open(const struct fixture *f, const char *src, int n)
{
	static const char req[] = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
	int fd = open_src(f, src, 1);
	for (int i = 0; i < n; i++)
		(void)send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
	return fd;
}

/* Opens n clients from src, one per turn of the loop (in order of age). */
static void open_many(struct fixture *f, struct ka *k, size_t n, const char *src)
{
	for (size_t i = 0; i < n; i++) {
		k[i] = (struct ka){.fd = open_from(f, src)};
		pump(f, k, i + 1, 4);
	}
}

/* At the cap, 31 idle connections from 127.0.0.2 and one from 127.0.0.1
 * whose answers sit in the send queue; 40 more from 127.0.0.2 wait in the
 * accept queue. Room is made from 127.0.0.2's alone: however many wait, a
 * source's last connection is never shut down. */
static void queue_does_not_evict_last_of_source(void **state)
{
	struct fixture *f = *state;
	struct ka idle[HEALTHD_MAX_CONNS - 1], more[40], st;
	open_many(f, idle, HEALTHD_MAX_CONNS - 1, "127.0.0.2");
	st = (struct ka){.fd = stuck_open(f, "127.0.0.1", 400)};
	pump(f, idle, HEALTHD_MAX_CONNS - 1, 300);
	assert_int_equal(http_conns_open(healthd_conns(f->hd)), HEALTHD_MAX_CONNS);
	for (size_t i = 0; i < 40; i++)
		more[i] = (struct ka){.fd = open_from(f, "127.0.0.2")};
	pump(f, more, 40, 300);
	assert_true(http_conns_replaced(healthd_conns(f->hd)) > 0);
	for (int t = 0; t < 300; t += 2) { /* drain st: a shutdown shows as its end */
		pump(f, &st, 1, 2);
		assert_false(st.closed);
	}
	close(st.fd);
	for (size_t i = 0; i < HEALTHD_MAX_CONNS - 1; i++)
		close(idle[i].fd);
	for (size_t i = 0; i < 40; i++)
		close(more[i].fd);
}

/* 31 connections from 127.0.0.2 with requests in flight (their answers
 * unread), one idle from 127.0.0.3, one more waiting: the room is made
 * from 127.0.0.2, which holds more (busy-ness is the peer's to choose). */
static void busy_source_loses_before_idle_one(void **state)
{
	struct fixture *f = *state;
	struct ka a[HEALTHD_MAX_CONNS - 1], b, c;
	for (size_t i = 0; i < HEALTHD_MAX_CONNS - 1; i++) {
		a[i] = (struct ka){.fd = stuck_open(f, "127.0.0.2", 400)};
		pump(f, a, 0, 4);
	}
	b = (struct ka){.fd = open_from(f, "127.0.0.3")};
	pump(f, &b, 1, 100);
	assert_int_equal(http_conns_open(healthd_conns(f->hd)), HEALTHD_MAX_CONNS);
	c = (struct ka){.fd = open_from(f, "127.0.0.4")};
	pump(f, &b, 1, 200); /* well under a second: 127.0.0.2's still look busy */
	assert_true(http_conns_replaced(healthd_conns(f->hd)) > 0);
	assert_false(b.closed);
	close(b.fd);
	close(c.fd);
	for (size_t i = 0; i < HEALTHD_MAX_CONNS - 1; i++)
		close(a[i].fd);
}

/* A flood that asks and hangs up at once (the server's answer meets a
 * closed socket: no TIME_WAIT is left on either side), in bursts of
 * RUSH_BURST while the loop does not turn (so faster than any accept
 * rate), each followed by a probe from 127.0.0.1 that must get its 200
 * within 1 s of its connect(): a SYN dropped by a full backlog is sent
 * again only after 1 s. At least 99 % do; 4 s of bursts at most. */
#define RUSH_BURST  200
#define RUSH_ROUNDS 50
static void rush_burst(const struct fixture *f)
{
	static const char req[] = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
	for (int i = 0; i < RUSH_BURST; i++) {
		int fd = open_from(f, "127.0.0.2");
		(void)send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		close(fd);
	}
}

static void rush_does_not_overflow_backlog(void **state)
{
	struct fixture *f = *state;
	unsigned probes = 0, ok = 0;
	int64_t t0 = now_ms();
	while (probes < RUSH_ROUNDS && now_ms() - t0 < 4000) {
		rush_burst(f);
		struct ka pr = {.fd = open_from(f, "127.0.0.1")};
		ka_send(&pr);
		for (int64_t start = now_ms(); now_ms() - start < 1000 && !pr.answers;) {
			event_base_loop(f->base, EVLOOP_NONBLOCK);
			ka_read(&pr);
			usleep(100);
		}
		probes++;
		ok += pr.answers > 0;
		close(pr.fd);
	}
	fprintf(stderr, "rush: %u bursts of %d in %lld ms; %u of %u probes answered\n",
	        probes, RUSH_BURST, (long long)(now_ms() - t0), ok, probes);
	assert_true(probes >= RUSH_ROUNDS / 2);
	assert_true(probes - ok <= probes / 100);
}

/* The flood: every turn FLOOD_RATE new connections (each asks for
 * /livez), held until the server closes them. */
#define FLOOD_SLOTS 192
#define FLOOD_RATE  8
static void flood_turn(const struct fixture *f, struct ka *fl)
{
	int opened = 0;
	for (size_t i = 0; i < FLOOD_SLOTS; i++) {
		if (fl[i].fd >= 0)
			ka_read(&fl[i]);
		if (fl[i].fd >= 0 && fl[i].closed) {
			close(fl[i].fd);
			fl[i].fd = -1;
		}
		if (fl[i].fd < 0 && opened < FLOOD_RATE) {
			fl[i] = (struct ka){.fd = open_from(f, "127.0.0.2")};
			ka_send(&fl[i]);
			opened++;
		}
	}
}

/* One source (127.0.0.2) opens FLOOD_RATE connections at every turn of
 * the loop and holds them (far more than the cap, and than the backlog),
 * while another (127.0.0.1) probes like a kubelet: a new connection, GET
 * /livez a few ms later, 1 s to answer. At least 99 of 100 probes get
 * their 200: the flood's own connections make room. (When the oldest
 * connection made room, the probe's was shut down before it was read.) */
static void connect_flood_does_not_evict_probe(void **state)
{
	struct fixture *f = *state;
	static struct ka fl[FLOOD_SLOTS];
	unsigned ok = 0;
	for (size_t i = 0; i < FLOOD_SLOTS; i++)
		fl[i] = (struct ka){.fd = -1};
	for (int t = 0; t < 200; t++) { /* the flood holds the listener */
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		flood_turn(f, fl);
		usleep(1000);
	}
	for (int p = 0; p < 100; p++) {
		struct ka pr = {.fd = open_from(f, "127.0.0.1")};
		for (int t = 0; t < 1000 && !pr.answers; t++) {
			if (t == 5) /* a round trip after the handshake */
				ka_send(&pr);
			event_base_loop(f->base, EVLOOP_NONBLOCK);
			flood_turn(f, fl);
			ka_read(&pr);
			usleep(1000);
		}
		ok += pr.answers > 0;
		close(pr.fd);
	}
	for (size_t i = 0; i < FLOOD_SLOTS; i++)
		if (fl[i].fd >= 0)
			close(fl[i].fd);
	fprintf(stderr, "flood: %u of 100 probes answered; %llu replaced\n", ok,
	        http_conns_replaced(healthd_conns(f->hd)));
	assert_true(ok >= 99);
}

static void port_in_use(void **state)
{
	struct fixture *f = *state;
	char listen[64], err[256] = "";
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", f->port);
	struct healthd_ops ops = {.ready = t_ready, .metrics = t_metrics, .ctx = f};
	assert_null(healthd_new(f->base, listen, "test", &ops, err, sizeof(err)));
	assert_non_null(strstr(err, "another process uses the port"));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the programs do: answers meet closed sockets */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_listen),
	    cmocka_unit_test(proc_stat_parse),
	    cmocka_unit_test_setup_teardown(livez_readyz_metrics, setup, teardown),
	    cmocka_unit_test_setup_teardown(refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(port_in_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(refused_lines_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(keepalive_clients_do_not_starve, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(backlog_burst_stays_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(connect_flood_does_not_evict_probe, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(queue_does_not_evict_last_of_source, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(busy_source_loses_before_idle_one, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(rush_does_not_overflow_backlog, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
