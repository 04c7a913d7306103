/* httpload: a small HTTP/1.0 server and load client for the benchmarks
 * (bench/latency.sh).
 *
 *   httpload serve PORT [ADDR]
 *       answers every request with one fixed 200 response (100-byte body)
 *       and closes the connection; epoll, non-blocking, runs until killed.
 *   httpload get [--socks5 H:P | --http-proxy H:P] [--timeout S] HOST PORT N
 *       N sequential GETs, a new TCP connection each; prints requests/s on
 *       stdout; exits 1 at the first request that fails (timeout, refused,
 *       bad answer), naming it on stderr.
 *   httpload first [--socks5 H:P] [--every MS] [--timeout S] HOST PORT
 *       starts a new GET attempt every MS (default 10) milliseconds, several
 *       in flight, until one of them receives the first byte of an answer;
 *       prints that moment on the CLOCK_MONOTONIC scale in ms. Exits 1 if
 *       nothing answered within S seconds (default 30).
 *   httpload now
 *       prints the CLOCK_MONOTONIC time in ms (the start of a ttfb span).
 *
 * HOST is an IPv4 address (sent to a SOCKS5 proxy as such) or a name (sent
 * as a domain name; resolved locally only without a proxy, numerically). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HL_BODY_LEN  100
#define HL_REQ_MAX   2048
#define HL_RESP_MAX  4096
#define HL_MAX_CONNS 64 /* attempts in flight in `first` */

static double hl_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int hl_usage(void)
{
	fprintf(stderr,
	        "usage: httpload serve PORT [ADDR]\n"
	        "       httpload get [--socks5 H:P | --http-proxy H:P] [--timeout S] "
	        "HOST PORT N\n"
	        "       httpload first [--socks5 H:P] [--every MS] [--timeout S] HOST "
	        "PORT\n"
	        "       httpload now\n");
	return 2;
}

static bool hl_parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* "A.B.C.D:PORT" -> sockaddr_in */
static bool hl_parse_hostport(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	uint16_t port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return false;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 ||
	    !hl_parse_port(colon + 1, &port))
		return false;
	sa->sin_port = htons(port);
	return true;
}

/* --- server ------------------------------------------------------------- */

struct hl_sconn {
	int fd;
	size_t got, sent;
	bool answering;
	char req[HL_REQ_MAX];
};

static char hl_answer[256];
static size_t hl_answer_len;

static void hl_sconn_close(int ep, struct hl_sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Writes what is left of the answer; true when the connection is finished
 * (answered or broken) and may be closed. */
static bool hl_sconn_write(int ep, struct hl_sconn *c)
{
	while (c->sent < hl_answer_len) {
		ssize_t n = send(c->fd, hl_answer + c->sent, hl_answer_len - c->sent,
		                 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};

			return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0;
		}
		if (n <= 0)
			return true;
		c->sent += (size_t)n;
	}
	return true;
}

/* Reads the request head; answers once it is complete. */
static bool hl_sconn_read(int ep, struct hl_sconn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->got, sizeof(c->req) - 1 - c->got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n <= 0)
			return true; /* the client went away before asking */
		c->got += (size_t)n;
		c->req[c->got] = '\0';
		if (strstr(c->req, "\r\n\r\n") != NULL ||
		    strstr(c->req, "\n\n") != NULL || c->got == sizeof(c->req) - 1) {
			c->answering = true;
			return hl_sconn_write(ep, c);
		}
	}
}

static int hl_serve(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct epoll_event evs[64];
	uint16_t port;
	int one = 1, lfd, ep;

	if (argc < 1 || argc > 2 || !hl_parse_port(argv[0], &port))
		return hl_usage();
	sa.sin_port = htons(port);
	if (argc == 2 && inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		return hl_usage();
	hl_answer_len =
	    (size_t)snprintf(hl_answer, sizeof(hl_answer),
	                     "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
	                     "Content-Length: %d\r\nConnection: close\r\n\r\n",
	                     HL_BODY_LEN);
	memset(hl_answer + hl_answer_len, 'x', HL_BODY_LEN - 1);
	hl_answer[hl_answer_len + HL_BODY_LEN - 1] = '\n';
	hl_answer_len += HL_BODY_LEN;

	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 1024) != 0) {
		fprintf(stderr, "httpload serve: port %u: %s\n", port, strerror(errno));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
		fprintf(stderr, "httpload serve: epoll: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "httpload serve: epoll_wait: %s\n",
			        strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct hl_sconn *c = evs[i].data.ptr;

			if (c == NULL) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
				                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
				       0) {
					c = calloc(1, sizeof(*c));
					struct epoll_event ev = {.events = EPOLLIN,
					                         .data.ptr = c};
					if (c == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
					           sizeof(one));
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
						close(fd);
						free(c);
					}
				}
				continue;
			}
			bool done =
			    c->answering ? hl_sconn_write(ep, c) : hl_sconn_read(ep, c);
			if (done)
				hl_sconn_close(ep, c);
		}
	}
}

/* --- client: one GET as a non-blocking state machine ------------------- */

enum hl_state { HL_CONNECTING, HL_SOCKS_HELLO, HL_SOCKS_REPLY, HL_ANSWER };

struct hl_target {
	const char *host;
	uint16_t port;
	struct sockaddr_in dst; /* where the TCP connection goes */
	int proxy;              /* 0 none, 1 SOCKS5, 2 HTTP proxy */
	char req[512];
	size_t req_len;
};

struct hl_conn {
	int fd;
	enum hl_state state;
	double deadline;
	size_t got;
	char buf[HL_RESP_MAX];
};

static int hl_target_init(struct hl_target *t, const char *proxy_kind, const char *proxy,
                          const char *host, const char *port)
{
	memset(t, 0, sizeof(*t));
	t->host = host;
	if (strlen(host) > 255 || !hl_parse_port(port, &t->port))
		return -1;
	if (proxy_kind == NULL) {
		t->dst.sin_family = AF_INET;
		t->dst.sin_port = htons(t->port);
		if (inet_pton(AF_INET, host, &t->dst.sin_addr) != 1)
			return -1;
	} else if (!hl_parse_hostport(proxy, &t->dst)) {
		return -1;
	} else {
		t->proxy = !strcmp(proxy_kind, "--socks5") ? 1 : 2;
	}
	if (t->proxy == 2)
		t->req_len =
		    (size_t)snprintf(t->req, sizeof(t->req),
		                     "GET http://%s:%u/ HTTP/1.0\r\nHost: %s:%u\r\n\r\n",
		                     host, t->port, host, t->port);
	else
		t->req_len = (size_t)snprintf(t->req, sizeof(t->req),
		                              "GET / HTTP/1.0\r\nHost: %s:%u\r\n\r\n",
		                              host, t->port);
	return 0;
}

/* Sends a whole small message; these go out on a fresh socket with an empty
 * send buffer, so a short write means the connection is broken. */
static int hl_send_all(int fd, const void *p, size_t len)
{
	ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int hl_conn_start(struct hl_conn *c, const struct hl_target *t, double timeout_ms)
{
	c->state = HL_CONNECTING;
	c->got = 0;
	c->deadline = hl_now_ms() + timeout_ms;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (const struct sockaddr *)&t->dst, sizeof(t->dst)) != 0 &&
	    errno != EINPROGRESS) {
		int e = -errno;

		close(c->fd);
		c->fd = -1;
		return e;
	}
	return 0;
}

static void hl_conn_close(struct hl_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The SOCKS5 CONNECT request for the target (IPv4 or domain name). */
static int hl_socks_request(int fd, const struct hl_target *t)
{
	uint8_t m[300];
	size_t n = 0;
	struct in_addr a;

	m[n++] = 5, m[n++] = 1, m[n++] = 0;
	if (inet_pton(AF_INET, t->host, &a) == 1) {
		m[n++] = 1;
		memcpy(m + n, &a, 4);
		n += 4;
	} else {
		size_t hl = strlen(t->host);

		m[n++] = 3;
		m[n++] = (uint8_t)hl;
		memcpy(m + n, t->host, hl);
		n += hl;
	}
	m[n++] = (uint8_t)(t->port >> 8);
	m[n++] = (uint8_t)t->port;
	return hl_send_all(fd, m, n);
}

/* Length of a whole SOCKS5 reply in p, 0 if more is needed, -1 if bad. */
static int hl_socks_reply_len(const uint8_t *p, size_t len)
{
	size_t need;

	if (len < 5)
		return 0;
	if (p[0] != 5 || p[1] != 0)
		return -1;
	switch (p[3]) {
	case 1:
		need = 4 + 4 + 2;
		break;
	case 4:
		need = 4 + 16 + 2;
		break;
	case 3:
		need = 4 + 1 + (size_t)p[4] + 2;
		break;
	default:
		return -1;
	}
	return len >= need ? (int)need : 0;
}

/* A complete answer: status 200 and a body as long as Content-Length. */
static bool hl_answer_ok(const char *p, size_t len)
{
	const char *end = memmem(p, len, "\r\n\r\n", 4), *cl;

	if (len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || strncmp(p + 8, " 200", 4) != 0 ||
	    end == NULL)
		return false;
	cl = memmem(p, (size_t)(end - p), "Content-Length:", 15);
	if (cl == NULL)
		cl = memmem(p, (size_t)(end - p), "content-length:", 15);
	if (cl == NULL)
		return true;
	return strtoul(cl + 15, NULL, 10) == (unsigned long)(len - (size_t)(end + 4 - p));
}

/* Advances c on a poll event. Returns 1 when the answer is complete (or,
 * with first_byte, when its first byte came), 0 to wait for more, or a
 * negative errno (-EPROTO: a bad answer). */
static int hl_conn_step(struct hl_conn *c, const struct hl_target *t, bool first_byte)
{
	int err = 0;
	socklen_t el = sizeof(err);
	ssize_t n;

	if (c->state == HL_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
			return -errno;
		if (err != 0)
			return -err;
		if (t->proxy == 1) {
			static const uint8_t hello[3] = {5, 1, 0};

			c->state = HL_SOCKS_HELLO;
			return hl_send_all(c->fd, hello, sizeof(hello));
		}
		c->state = HL_ANSWER;
		return hl_send_all(c->fd, t->req, t->req_len);
	}
	n = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0) {
		if (c->state == HL_ANSWER && hl_answer_ok(c->buf, c->got))
			return 1;
		return c->got == 0 && c->state == HL_ANSWER ? -ECONNRESET : -EPROTO;
	}
	c->got += (size_t)n;
	if (c->state == HL_SOCKS_HELLO) {
		if (c->got < 2)
			return 0;
		if (c->got > 2 || c->buf[0] != 5 || c->buf[1] != 0)
			return -EPROTO;
		c->got = 0;
		c->state = HL_SOCKS_REPLY;
		return hl_socks_request(c->fd, t);
	}
	if (c->state == HL_SOCKS_REPLY) {
		int rl = hl_socks_reply_len((const uint8_t *)c->buf, c->got);

		if (rl <= 0)
			return rl < 0 ? -ECONNREFUSED : 0;
		if ((size_t)rl != c->got)
			return -EPROTO;
		c->got = 0;
		c->state = HL_ANSWER;
		return hl_send_all(c->fd, t->req, t->req_len);
	}
	if (first_byte)
		return 1;
	return c->got == sizeof(c->buf) ? -EPROTO : 0;
}

static short hl_conn_events(const struct hl_conn *c)
{
	return c->state == HL_CONNECTING ? POLLOUT : POLLIN;
}

static int hl_get(int argc, char **argv)
{
	const char *kind = NULL, *proxy = NULL;
	double timeout_ms = 5000;
	struct hl_target t;
	struct hl_conn *c;
	unsigned long count;
	int i = 0;

	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (i + 1 >= argc)
			return hl_usage();
		if (!strcmp(argv[i], "--socks5") || !strcmp(argv[i], "--http-proxy"))
			kind = argv[i], proxy = argv[i + 1];
		else if (!strcmp(argv[i], "--timeout"))
			timeout_ms = strtod(argv[i + 1], NULL) * 1e3;
		else
			return hl_usage();
	}
	if (argc - i != 3 || timeout_ms <= 0 ||
	    hl_target_init(&t, kind, proxy, argv[i], argv[i + 1]) != 0)
		return hl_usage();
	count = strtoul(argv[i + 2], NULL, 10);
	if (count == 0)
		return hl_usage();
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return 1;

	double t0 = hl_now_ms();
	for (unsigned long k = 0; k < count; k++) {
		int r = hl_conn_start(c, &t, timeout_ms);

		while (r == 0) {
			struct pollfd pfd = {.fd = c->fd, .events = hl_conn_events(c)};
			double left = c->deadline - hl_now_ms();

			if (left <= 0) {
				r = -ETIMEDOUT;
				break;
			}
			int pr = poll(&pfd, 1, (int)left + 1);
			if (pr < 0 && errno != EINTR)
				r = -errno;
			else if (pr > 0)
				r = hl_conn_step(c, &t, false);
		}
		hl_conn_close(c);
		if (r < 0) {
			fprintf(stderr,
			        "httpload get: request %lu of %lu to %s:%u failed: %s\n",
			        k + 1, count, t.host, t.port,
			        r == -EPROTO ? "bad answer" : strerror(-r));
			free(c);
			return 1;
		}
	}
	double secs = (hl_now_ms() - t0) / 1e3;
	printf("%.1f\n", (double)count / secs);
	free(c);
	return 0;
}

static int hl_first(int argc, char **argv)
{
	const char *kind = NULL, *proxy = NULL;
	double every_ms = 10, timeout_ms = 30000, attempt_ms = 5000;
	struct hl_conn *cs;
	struct hl_target t;
	int i = 0, n = 0;

	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (i + 1 >= argc)
			return hl_usage();
		if (!strcmp(argv[i], "--socks5"))
			kind = argv[i], proxy = argv[i + 1];
		else if (!strcmp(argv[i], "--every"))
			every_ms = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--timeout"))
			timeout_ms = strtod(argv[i + 1], NULL) * 1e3;
		else
			return hl_usage();
	}
	if (argc - i != 2 || every_ms < 1 || timeout_ms <= 0 ||
	    hl_target_init(&t, kind, proxy, argv[i], argv[i + 1]) != 0)
		return hl_usage();
	cs = calloc(HL_MAX_CONNS, sizeof(*cs));
	if (cs == NULL)
		return 1;

	double end = hl_now_ms() + timeout_ms, next = 0;
	int last_err = 0;
	for (;;) {
		double now = hl_now_ms();
		struct pollfd pfd[HL_MAX_CONNS];

		if (now >= end)
			break;
		if (now >= next && n < HL_MAX_CONNS) {
			int r = hl_conn_start(&cs[n], &t, attempt_ms);

			if (r == 0)
				n++;
			else
				last_err = r;
			next = now + every_ms;
		}
		for (int k = 0; k < n; k++) {
			pfd[k].fd = cs[k].fd;
			pfd[k].events = hl_conn_events(&cs[k]);
			pfd[k].revents = 0;
		}
		double wait = next - hl_now_ms();
		int pr = poll(pfd, (nfds_t)n, wait > 0 ? (int)wait + 1 : 0);
		if (pr < 0 && errno != EINTR) {
			last_err = -errno;
			break;
		}
		now = hl_now_ms();
		for (int k = 0; k < n; k++) {
			int r = 0;

			if (pfd[k].revents != 0)
				r = hl_conn_step(&cs[k], &t, true);
			if (r == 1) {
				printf("%.3f\n", now);
				for (int m = 0; m < n; m++)
					hl_conn_close(&cs[m]);
				free(cs);
				return 0;
			}
			if (r == 0 && now >= cs[k].deadline)
				r = -ETIMEDOUT;
			if (r < 0) {
				/* drop this attempt; keep pfd in step with cs */
				last_err = r;
				hl_conn_close(&cs[k]);
				cs[k] = cs[n - 1];
				pfd[k] = pfd[n - 1];
				n--;
				k--;
			}
		}
	}
	for (int m = 0; m < n; m++)
		hl_conn_close(&cs[m]);
	free(cs);
	fprintf(stderr, "httpload first: no answer from %s:%u within %g s (last: %s)\n",
	        t.host, t.port, timeout_ms / 1e3,
	        last_err == -EPROTO ? "bad answer" : strerror(-last_err));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return hl_usage();
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "serve"))
		return hl_serve(argc - 2, argv + 2);
	if (!strcmp(argv[1], "get"))
		return hl_get(argc - 2, argv + 2);
	if (!strcmp(argv[1], "first"))
		return hl_first(argc - 2, argv + 2);
	if (!strcmp(argv[1], "now")) {
		printf("%.3f\n", hl_now_ms());
		return 0;
	}
	return hl_usage();
}
