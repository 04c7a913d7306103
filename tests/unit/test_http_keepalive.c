/* HTTP proxy forwarding on kept-alive and pipelined client connections
 * (review H1): every request goes to its own origin with hop-by-hop headers
 * and Proxy-Authorization stripped, every response is framed (Content-Length,
 * chunked, none for HEAD/204, close-delimited, 1xx interim), and errors
 * before a response are 502. Real sockets and a real loop: the origins are
 * listening sockets on 127.0.0.1 reached through Direct, and one is a mesh
 * peer of the fake netstack (px_test_fake.h) reached through the splice. */
#include "px_test_fake.h"

#include <poll.h>
#include <sys/wait.h>

/* "alice:secret" */
#define AUTH "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"

static int origin_listen(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	socklen_t sl = sizeof(sin);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	*port = ntohs(sin.sin_port);
	return fd;
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

/* Accepts the proxy's connection to an origin while the loop runs. */
static int origin_accept(int lfd)
{
	long end = now_ms() + 2000;
	while (now_ms() < end) {
		if (readable(lfd)) {
			int fd = accept(lfd, NULL, NULL);
			fcntl(fd, F_SETFL, O_NONBLOCK);
			return fd;
		}
		pump(1);
	}
	fail_msg("the proxy did not connect to the origin");
	return -1;
}

/* Reads up to and including the empty line into buf (NUL-terminated). */
static void read_head(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
		assert_true(n < cap - 1);
		crecv(fd, buf + n, 1);
		n++;
	}
	buf[n] = 0;
}

/* Reads exactly strlen(want) bytes from fd and compares. */
static void expect_bytes(int fd, const char *want)
{
	size_t n = strlen(want);
	char *got = malloc(n + 1);
	crecv(fd, got, n);
	got[n] = 0;
	if (memcmp(got, want, n) != 0)
		fail_msg("got\n%s\nwant\n%s", got, want);
	free(got);
}

/* Nothing arrives on fd for ms while the loop runs. */
static void expect_quiet(int fd, int ms)
{
	pump(ms);
	char b[256];
	ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
	if (r > 0)
		fail_msg("unexpected %zd bytes: %.*s", r, (int)r, b);
}

static struct px_http *proxy(const char *user, const char *pass, uint32_t idle_ms)
{
	if (getenv("TEST_DEBUG"))
		log_set_level(LOG_DEBUG);
	struct cfg_http c = {.bind = loopback_any_port(),
	                     .username = (char *)user,
	                     .password = (char *)pass,
	                     .direct = CFG_DIRECT_ALL};
	c.limits.idle_timeout_ms = idle_ms;
	char err[200];
	struct px_http *h = px_http_new(&env, &c, err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	return h;
}

static void csendf(int fd, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	csend(fd, buf, (size_t)n);
}

#define OK_KEEP "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"

/* The review's test: two absolute-form requests to two origins on one
 * client connection, the origins keeping their connections open. */
static void test_two_origins_keepalive(void **st)
{
	reset_fake();
	uint16_t pa, pb;
	int la = origin_listen(&pa), lb = origin_listen(&pb);
	struct px_http *h = proxy("alice", "secret", 0);
	int c = http_client(h);
	char head[2048];

	csendf(c,
	       "GET http://127.0.0.1:%u/a HTTP/1.1\r\nHost: x\r\n" AUTH
	       "Cookie: for-a\r\n\r\n",
	       pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "GET /a HTTP/1.1\r\n"));
	assert_null(strstr(head, "Proxy-Authorization"));
	assert_non_null(strstr(head, "Cookie: for-a"));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	char first[512];
	read_head(c, first, sizeof(first));
	expect_bytes(c, "ok");

	csendf(c,
	       "GET http://127.0.0.1:%u/b HTTP/1.1\r\nHost: x\r\n" AUTH
	       "Cookie: for-b\r\n\r\n",
	       pb);
	int b = origin_accept(lb);
	read_head(b, head, sizeof(head));
	assert_non_null(strstr(head, "GET /b HTTP/1.1\r\n"));
	assert_null(strstr(head, "Proxy-Authorization"));
	assert_null(strstr(head, "for-a"));
	/* A got nothing more: its connection was closed, not reused; and the
	 * client was told the proxy keeps its connection. */
	assert_int_equal(cclosed(a), 0);
	assert_string_equal(first, OK_KEEP);
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
	expect_bytes(c, OK_KEEP "OK");

	/* Back to B: the same origin connection is reused. */
	csendf(c, "GET http://127.0.0.1:%u/b2 HTTP/1.1\r\n" AUTH "\r\n", pb);
	read_head(b, head, sizeof(head));
	assert_non_null(strstr(head, "GET /b2 HTTP/1.1\r\n"));
	assert_false(readable(lb));
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nB2");
	expect_bytes(c, OK_KEEP "B2");

	/* A request without credentials on the same connection: 407. */
	csendf(c, "GET http://127.0.0.1:%u/c HTTP/1.1\r\n\r\n", pb);
	char resp[512];
	read_head(c, resp, sizeof(resp));
	assert_memory_equal(resp, "HTTP/1.1 407", 12);
	assert_int_equal(cclosed(c), 0);
	expect_quiet(b, 20);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_auth, 1);
	assert_int_equal(stt.established, 2);
	close(c);
	close(a);
	close(b);
	px_http_free(h);
	close(la);
	close(lb);
}

/* Both requests in one write: B gets its own, only after A answered. */
static void test_pipelined(void **st)
{
	reset_fake();
	uint16_t pa, pb;
	int la = origin_listen(&pa), lb = origin_listen(&pb);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "GET http://127.0.0.1:%u/1 HTTP/1.1\r\n" AUTH "\r\n"
	       "GET http://127.0.0.1:%u/2 HTTP/1.1\r\n" AUTH "\r\n"
	       "GET http://127.0.0.1:%u/3 HTTP/1.1\r\nConnection: close\r\n\r\n",
	       pa, pb, pb);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "GET /1 HTTP/1.1\r\n"));
	assert_null(strstr(head, "Proxy-Authorization"));
	expect_quiet(a, 30); /* not the pipelined requests */
	assert_false(readable(lb));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	int b = origin_accept(lb);
	read_head(b, head, sizeof(head));
	assert_non_null(strstr(head, "GET /2 HTTP/1.1\r\n"));
	assert_null(strstr(head, "Proxy-Authorization"));
	assert_null(strstr(head, "GET /3"));
	expect_quiet(b, 30);
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
	read_head(b, head, sizeof(head));
	assert_non_null(strstr(head, "GET /3 HTTP/1.1\r\n"));
	assert_non_null(strstr(head, "Connection: close\r\n"));
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n33");
	expect_bytes(
	    c, OK_KEEP
	    "ok" OK_KEEP "OK"
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n33");
	assert_int_equal(cclosed(c), 0);
	assert_int_equal(cclosed(a), 0);
	assert_int_equal(cclosed(b), 0);
	close(c);
	close(a);
	close(b);
	px_http_free(h);
	close(la);
	close(lb);
}

/* A chunked request body with trailers, a chunked response, then the next
 * request on the same origin connection: the framing ends each message. */
static void test_chunked_both_ways(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	const char *body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n";
	csendf(
	    c,
	    "POST http://127.0.0.1:%u/up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%s"
	    "GET http://127.0.0.1:%u/next HTTP/1.1\r\n\r\n",
	    pa, body, pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "POST /up HTTP/1.1\r\n"));
	assert_non_null(strstr(head, "Transfer-Encoding: chunked\r\n"));
	expect_bytes(a, body);
	expect_quiet(a, 30); /* the next request waits for the response */
	const char *resp = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
	                   "Keep-Alive: timeout=5\r\n\r\n"
	                   "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
	csend(a, resp, strlen(resp));
	expect_bytes(c, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
	                "Connection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "GET /next HTTP/1.1\r\n"));
	assert_false(readable(la)); /* reused */
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	expect_bytes(c, OK_KEEP "ok");
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

/* Expect: 100-continue: the interim response reaches the client, then the
 * body goes up, then the final response comes down. */
static void test_100_continue(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "PUT http://127.0.0.1:%u/f HTTP/1.1\r\nContent-Length: 4\r\n"
	       "Expect: 100-continue\r\n\r\n",
	       pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "Expect: 100-continue\r\n"));
	csendf(a, "%s", "HTTP/1.1 100 Continue\r\n\r\n");
	expect_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n");
	csendf(c, "%s", "BODY");
	expect_bytes(a, "BODY");
	csendf(a, "%s", "HTTP/1.1 204 No Content\r\n\r\n");
	expect_bytes(c, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

/* HEAD and 204 answers have no body whatever their headers say; a 304 too.
 * The next request on the connection is still read correctly. */
static void test_no_body_responses(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c, "HEAD http://127.0.0.1:%u/big HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "HEAD /big HTTP/1.1\r\n"));
	const char *r1 = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
	csend(a, r1, strlen(r1));
	expect_bytes(
	    c,
	    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: keep-alive\r\n\r\n");
	csendf(c, "DELETE http://127.0.0.1:%u/x HTTP/1.1\r\n\r\n", pa);
	read_head(a, head, sizeof(head));
	assert_non_null(strstr(head, "DELETE /x HTTP/1.1\r\n"));
	csendf(a, "%s", "HTTP/1.1 204 No Content\r\n\r\n");
	expect_bytes(c, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
	csendf(c, "GET http://127.0.0.1:%u/y HTTP/1.1\r\n\r\n", pa);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n");
	expect_bytes(
	    c,
	    "HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\nConnection: keep-alive\r\n\r\n");
	assert_false(readable(la));
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

/* A response without length ends with the server's close, and so does the
 * client connection (told so in Connection: close). */
static void test_close_delimited(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "GET http://127.0.0.1:%u/s HTTP/1.1\r\n\r\n"
	       "GET http://127.0.0.1:%u/never HTTP/1.1\r\n\r\n",
	       pa, pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nstream");
	pump(20);
	csendf(a, "%s", "ing");
	close(a);
	expect_bytes(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreaming");
	assert_int_equal(cclosed(c), 0);
	assert_false(readable(la)); /* the second request was not sent */
	close(c);
	px_http_free(h);
	close(la);
}

/* Bad or missing responses before anything went to the client: 502. */
static void test_bad_response_502(void **st)
{
	static const char *bad[] = {
	    "HTTP/1.1 2OO OK\r\n\r\n",
	    "HTTP/2 200 OK\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
	    "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	    "", /* closed without a response */
	};
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int c = http_client(h);
		char head[2048];
		csendf(c, "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", pa);
		int a = origin_accept(la);
		read_head(a, head, sizeof(head));
		if (bad[i][0])
			csend(a, bad[i], strlen(bad[i]));
		close(a);
		read_head(c, head, sizeof(head));
		if (strncmp(head, "HTTP/1.1 502 ", 13) != 0)
			fail_msg("response %zu: got %s", i, head);
		assert_int_equal(cclosed(c), 0);
		close(c);
	}
	/* A truncated body after the head went out: the client is closed,
	 * never given a second status line. */
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc");
	pump(20);
	close(a);
	expect_bytes(
	    c,
	    "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: keep-alive\r\n\r\nabc");
	assert_int_equal(cclosed(c), 0);
	close(c);
	px_http_free(h);
	close(la);
}

/* Bad request framing on a kept-alive connection: 400 (review L2). */
static void test_bad_request_framing(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "GET http://127.0.0.1:%u/ HTTP/1.1\r\nConnection: content-length\r\n"
	       "Content-Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
	       pa);
	read_head(c, head, sizeof(head));
	assert_memory_equal(head, "HTTP/1.1 400 ", 13);
	assert_int_equal(cclosed(c), 0);
	assert_false(readable(la)); /* never sent */
	close(c);
	px_http_free(h);
	close(la);
}

/* A mesh origin (the fake netstack's splice: the test holds the socket
 * the netstack would write to) followed by a Direct one. */
static void test_mesh_then_direct(void **st)
{
	reset_fake();
	uint16_t pb;
	int lb = origin_listen(&pb);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "GET http://100.64.0.1:8080/m HTTP/1.1\r\n" AUTH "\r\n"
	       "GET http://127.0.0.1:%u/d HTTP/1.1\r\n\r\n",
	       pb);
	long until = now_ms() + 2000;
	while (spliced_fd < 0 && now_ms() < until)
		pump(2);
	assert_int_equal(n_splices, 1);
	assert_int_equal(last_port, 8080);
	int m = spliced_fd;
	fcntl(m, F_SETFL, O_NONBLOCK);
	read_head(m, head, sizeof(head));
	assert_non_null(strstr(head, "GET /m HTTP/1.1\r\nHost: 100.64.0.1:8080\r\n"));
	assert_null(strstr(head, "Proxy-Authorization"));
	csendf(m, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nmm");
	int b = origin_accept(lb);
	read_head(b, head, sizeof(head));
	assert_non_null(strstr(head, "GET /d HTTP/1.1\r\n"));
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ndd");
	expect_bytes(c, OK_KEEP "mm" OK_KEEP "dd");
	assert_int_equal(cclosed(m), 0); /* the mesh side was closed */
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.established, 2);
	assert_int_equal(stt.direct, 1);
	close(c);
	close(b);
	px_http_free(h);
	close(lb);
}

/* The origin closes a kept-alive connection just as the next request is on
 * its way: a bodiless request is sent again on a new connection instead of
 * failing with 502. */
static void test_retry_on_closed_reused(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/1 HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	expect_bytes(c, OK_KEEP "ok");
	csendf(c, "GET http://127.0.0.1:%u/2 HTTP/1.1\r\n\r\n", pa);
	read_head(a, head, sizeof(head));
	close(a); /* read, never answered */
	int a2 = origin_accept(la);
	read_head(a2, head, sizeof(head));
	assert_non_null(strstr(head, "GET /2 HTTP/1.1\r\n"));
	csendf(a2, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n22");
	expect_bytes(c, OK_KEEP "22");
	/* Not for a fresh connection: that one gets 502. */
	close(a2);
	pump(20);
	csendf(c, "GET http://127.0.0.1:%u/3 HTTP/1.1\r\n\r\n", pa);
	int a3 = origin_accept(la);
	read_head(a3, head, sizeof(head));
	close(a3);
	read_head(c, head, sizeof(head));
	assert_memory_equal(head, "HTTP/1.1 502 ", 13);
	close(c);
	px_http_free(h);
	close(la);
}

/* Interim responses other than an expected 100 Continue are dropped (review
 * H1): a client such as Python's http.client takes a 103 for the final
 * response, and the origin's real 200 would then answer its next request,
 * sent to another origin. Here the client must get A's 200 for A and B's
 * body for B. */
static void test_1xx_dropped_two_origins(void **st)
{
	reset_fake();
	uint16_t pa, pb;
	int la = origin_listen(&pa), lb = origin_listen(&pb);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/a HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s",
	       "HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n"
	       "HTTP/1.1 102 Processing\r\n\r\n"
	       "HTTP/1.1 100 Continue\r\n\r\n"); /* no Expect: not asked for */
	expect_quiet(c, 50);
	csendf(a, "%s",
	       "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n<script>evil()</script>!!!");
	expect_bytes(
	    c, "HTTP/1.1 200 OK\r\nContent-Length: 26\r\nConnection: keep-alive\r\n\r\n"
	       "<script>evil()</script>!!!");
	csendf(c, "GET http://127.0.0.1:%u/b HTTP/1.1\r\n\r\n", pb);
	int b = origin_accept(lb);
	read_head(b, head, sizeof(head));
	csendf(b, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood");
	expect_bytes(
	    c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n"
	       "good");
	expect_quiet(c, 20);
	close(c);
	close(a);
	close(b);
	px_http_free(h);
	close(la);
	close(lb);
}

/* A request that is not GET, HEAD or OPTIONS is never sent twice (review
 * H2, RFC 9110 section 9.2.2): when a reused origin connection closes after
 * reading it, the client gets 502 and the origin saw it once. With an
 * Idempotency-Key it may be sent again. */
static void test_no_retry_non_idempotent(void **st)
{
	static const char *const req[] = {
	    "DELETE http://127.0.0.1:%u/account HTTP/1.1\r\n\r\n",
	    "POST http://127.0.0.1:%u/pay HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	    "PUT http://127.0.0.1:%u/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	};
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	char head[2048];
	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		int c = http_client(h);
		csendf(c, "GET http://127.0.0.1:%u/1 HTTP/1.1\r\n\r\n", pa);
		int a = origin_accept(la);
		read_head(a, head, sizeof(head));
		csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
		expect_bytes(c, OK_KEEP "ok");
		csendf(c, req[i], pa);
		read_head(a, head, sizeof(head));
		close(a); /* read it, maybe acted on it, never answered */
		read_head(c, head, sizeof(head));
		if (strncmp(head, "HTTP/1.1 502 ", 13) != 0)
			fail_msg("request %zu: got %s", i, head);
		assert_int_equal(cclosed(c), 0);
		pump(50);
		if (readable(la))
			fail_msg("request %zu was sent a second time", i);
		close(c);
	}
	/* With an Idempotency-Key the client says a replay is safe. */
	int c = http_client(h);
	csendf(c, "GET http://127.0.0.1:%u/1 HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	expect_bytes(c, OK_KEEP "ok");
	csendf(c,
	       "DELETE http://127.0.0.1:%u/k HTTP/1.1\r\nIdempotency-Key: \"k1\"\r\n\r\n",
	       pa);
	read_head(a, head, sizeof(head));
	close(a);
	int a2 = origin_accept(la);
	read_head(a2, head, sizeof(head));
	assert_non_null(strstr(head, "DELETE /k HTTP/1.1\r\n"));
	csendf(a2, "%s", "HTTP/1.1 204 No Content\r\n\r\n");
	expect_bytes(c, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
	close(c);
	close(a2);
	px_http_free(h);
	close(la);
}

static struct px_http *proxy_rt(uint32_t response_ms)
{
	struct cfg_http c = {.bind = loopback_any_port(), .direct = CFG_DIRECT_ALL};
	c.response_timeout_ms = response_ms;
	char err[200];
	struct px_http *h = px_http_new(&env, &c, err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	return h;
}

/* Review M1: an origin that reads the request and never answers gets the
 * client a 504 after the response timeout (here 300 ms; 60 s by default),
 * and both connections are freed. */
static void test_response_timeout_504(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy_rt(300);
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/slow HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	long t0 = now_ms();
	expect_quiet(c, 150);
	read_head(c, head, sizeof(head));
	assert_true(now_ms() - t0 >= 250);
	assert_memory_equal(head, "HTTP/1.1 504 ", 13);
	assert_int_equal(cclosed(c), 0);
	assert_int_equal(cclosed(a), 0);
	close(c); /* the proxy drained it: now it lets go */
	pump(50);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.active, 0);
	close(a);
	px_http_free(h);
	close(la);
}

/* Review M1: a client that never reads its response holds no buffers for
 * ever: once nothing moved for the response timeout (here 600 ms), both
 * connections are reset. A body that keeps moving, however slowly (a byte
 * every 100 ms for 800 ms), is not cut. */
static void test_stalled_body_reset(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy_rt(600);
	char head[2048];
	/* Slow but moving: a byte every 100 ms for 800 ms. */
	int c = http_client(h);
	csendf(c, "GET http://127.0.0.1:%u/trickle HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n");
	read_head(c, head, sizeof(head));
	for (int i = 0; i < 8; i++) {
		pump(100);
		csend(a, "x", 1);
	}
	expect_bytes(c, "xxxxxxxx");
	close(c);
	close(a);
	pump(20);
	/* Never read: the proxy's buffers and the sockets fill up. */
	c = http_client(h);
	csendf(c, "GET http://127.0.0.1:%u/big HTTP/1.1\r\n\r\n", pa);
	a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
	static char junk[65536];
	memset(junk, 'j', sizeof(junk));
	bool reset = false;
	long end = now_ms() + 5000;
	while (!reset && now_ms() < end) {
		pump(5);
		ssize_t n = send(a, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
		reset = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
	}
	assert_true(reset);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.active, 0);
	assert_int_equal(stt.err_idle, 1);
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

/* Review L1: bytes an origin sends after its response, nobody having asked,
 * are never read as the answer to the next request: that request goes on a
 * new connection. The response fills the origin read buffer (16 KiB)
 * exactly, so the stray bytes are read only after it was taken. */
static void test_stray_origin_bytes(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c,
	       "GET http://127.0.0.1:%u/1 HTTP/1.1\r\n\r\n"
	       "GET http://127.0.0.1:%u/2 HTTP/1.1\r\n\r\n",
	       pa, pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	enum { BODY = PX_HTTP_MAX_RESPONSE_HEADER };
	static char resp[BODY + 512];
	const char *stray = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil";
	int k = sprintf(resp, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BODY);
	memset(resp + k, 'b', BODY);
	memcpy(resp + k + BODY, stray, strlen(stray));
	csend(a, resp, (size_t)k + BODY + strlen(stray));
	char want[256];
	snprintf(
	    want, sizeof(want),
	    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n",
	    BODY);
	expect_bytes(c, want);
	static char body[BODY];
	crecv(c, body, BODY);
	int a2 = origin_accept(la);
	read_head(a2, head, sizeof(head));
	assert_non_null(strstr(head, "GET /2 HTTP/1.1\r\n"));
	csendf(a2, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood");
	expect_bytes(
	    c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n"
	       "good");
	close(c);
	close(a);
	close(a2);
	px_http_free(h);
	close(la);
}

/* Review L7: an origin's 407 is for a proxy's client, and its
 * Proxy-Authenticate would make a browser ask the user for proxy
 * credentials on the origin's behalf: the client gets 502. */
static void test_origin_407_is_502(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s",
	       "HTTP/1.1 407 Proxy Authentication Required\r\n"
	       "Proxy-Authenticate: Basic realm=\"give me your password\"\r\n"
	       "Content-Length: 0\r\n\r\n");
	read_head(c, head, sizeof(head));
	assert_memory_equal(head, "HTTP/1.1 502 ", 13);
	assert_null(strstr(head, "Proxy-Authenticate"));
	assert_int_equal(cclosed(c), 0);
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

/* Review L6: a session whose front-end is gone is never handed back for a
 * raw splice (which would pass the head unrewritten, Proxy-Authorization
 * and all): px_hfwd_take claims it, and the session's close frees both
 * connections. */
static void test_take_without_front(void **st)
{
	struct px_sess *s = calloc(1, sizeof(*s));
	s->front = NULL;
	s->fd = -1;
	s->direct_fd = -1;
	assert_true(px_hfwd_take(s));
	free(s);
}

/* An origin process that answers each request with its head and its body
 * in two writes, back to back (as Python's http.server does). */
static void origin_two_writes(int lfd, int n)
{
	int fd = accept(lfd, NULL, NULL);
	char buf[4096];
	size_t have = 0;
	for (int i = 0; i < n; i++) {
		while (have < 4 || !memmem(buf, have, "\r\n\r\n", 4)) {
			ssize_t r = recv(fd, buf + have, sizeof(buf) - have, 0);
			if (r <= 0)
				_exit(1);
			have += (size_t)r;
		}
		char *end = (char *)memmem(buf, have, "\r\n\r\n", 4) + 4;
		have -= (size_t)(end - buf);
		memmove(buf, end, have);
		const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
		if (send(fd, h, strlen(h), MSG_NOSIGNAL) < 0 ||
		    send(fd, "body!", 5, MSG_NOSIGNAL) < 0)
			_exit(1);
	}
	close(fd);
	_exit(0);
}

/* Bytes the origin sends while the proxy is busy with the same origin
 * event are still passed on: the body's write lands just after the head's
 * read, and must not sit in the proxy's buffer until some other event.
 * Many rounds on one connection: a lost wake-up stalls one of them. */
static void test_body_right_after_head(void **st)
{
	enum { ROUNDS = 400 };
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	pid_t pid = fork();
	if (pid == 0)
		origin_two_writes(la, ROUNDS);
	struct px_http *h = proxy(NULL, NULL, 0);
	int c = http_client(h);
	const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	                   "Connection: keep-alive\r\n\r\nbody!";
	char got[128];
	for (int i = 0; i < ROUNDS; i++) {
		csendf(c, "GET http://127.0.0.1:%u/%d HTTP/1.1\r\n\r\n", pa, i);
		size_t n = strlen(want), k = 0;
		long end = now_ms() + 2000;
		while (k < n && now_ms() < end) {
			event_base_loop(env.base, EVLOOP_NONBLOCK);
			ssize_t r = recv(c, got + k, n - k, 0);
			if (r > 0)
				k += (size_t)r;
		}
		if (k != n || memcmp(got, want, n) != 0)
			fail_msg("request %d: %zu of %zu bytes of the answer", i, k, n);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(c);
	px_http_free(h);
	close(la);
}

/* At MaxConnections a new client takes the place of the keep-alive client
 * idle the longest (not of one whose request is under way). */
static void test_idle_keepalive_evicted(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct cfg_http cfg = {.bind = loopback_any_port(), .direct = CFG_DIRECT_ALL};
	cfg.limits.max_connections = 2;
	char err[200];
	struct px_http *h = px_http_new(&env, &cfg, err, sizeof(err));
	assert_non_null(h);
	char head[2048];
	int c[3], o[3];
	for (int i = 0; i < 2; i++) {
		c[i] = http_client(h);
		csendf(c[i], "GET http://127.0.0.1:%u/%d HTTP/1.1\r\n\r\n", pa, i);
		o[i] = origin_accept(la);
		read_head(o[i], head, sizeof(head));
	}
	/* 0 is answered and idle; 1 waits for its response. */
	csendf(o[0], "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	expect_bytes(c[0], OK_KEEP "ok");
	c[2] = http_client(h);
	csendf(c[2], "GET http://127.0.0.1:%u/2 HTTP/1.1\r\n\r\n", pa);
	assert_int_equal(cclosed(c[0]), 0);
	o[2] = origin_accept(la);
	read_head(o[2], head, sizeof(head));
	assert_non_null(strstr(head, "GET /2 "));
	csendf(o[1], "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n11");
	expect_bytes(c[1], OK_KEEP "11");
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 1);
	for (int i = 0; i < 3; i++) {
		close(c[i]);
		close(o[i]);
	}
	px_http_free(h);
	close(la);
}

/* An idle keep-alive connection is closed after IdleTimeout (here shorter
 * than the keep-alive limit). */
static void test_idle_keepalive_closed(void **st)
{
	reset_fake();
	uint16_t pa;
	int la = origin_listen(&pa);
	struct px_http *h = proxy(NULL, NULL, 200);
	int c = http_client(h);
	char head[2048];
	csendf(c, "GET http://127.0.0.1:%u/ HTTP/1.1\r\n\r\n", pa);
	int a = origin_accept(la);
	read_head(a, head, sizeof(head));
	csendf(a, "%s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	expect_bytes(c, OK_KEEP "ok");
	long t0 = now_ms();
	assert_int_equal(cclosed(c), 0);
	assert_true(now_ms() - t0 >= 150);
	assert_int_equal(cclosed(a), 0);
	close(c);
	close(a);
	px_http_free(h);
	close(la);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_origins_keepalive),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_chunked_both_ways),
	    cmocka_unit_test(test_100_continue),
	    cmocka_unit_test(test_no_body_responses),
	    cmocka_unit_test(test_close_delimited),
	    cmocka_unit_test(test_bad_response_502),
	    cmocka_unit_test(test_bad_request_framing),
	    cmocka_unit_test(test_mesh_then_direct),
	    cmocka_unit_test(test_retry_on_closed_reused),
	    cmocka_unit_test(test_1xx_dropped_two_origins),
	    cmocka_unit_test(test_no_retry_non_idempotent),
	    cmocka_unit_test(test_response_timeout_504),
	    cmocka_unit_test(test_stalled_body_reset),
	    cmocka_unit_test(test_stray_origin_bytes),
	    cmocka_unit_test(test_origin_407_is_502),
	    cmocka_unit_test(test_take_without_front),
	    cmocka_unit_test(test_body_right_after_head),
	    cmocka_unit_test(test_idle_keepalive_closed),
	    cmocka_unit_test(test_idle_keepalive_evicted),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
