/* HTTP proxy plain forwarding as pure functions: which absolute-form
 * requests px_http_parse_request() accepts for forwarding, and how
 * px_http_rewrite() turns them into origin-form heads (hop-by-hop headers
 * dropped, Host rebuilt, "Connection: close"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/proto/proto.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum px_parse parse(const char *m, struct px_http_request *r, size_t *used,
                           int *status)
{
	return px_http_parse_request((const uint8_t *)m, strlen(m), r, used, status);
}

/* Parses m (which must be a forward request) and checks its rewrite. */
static void expect_rewrite(const char *m, const char *want)
{
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	if (parse(m, &r, &used, &status) != PX_PARSE_OK || !r.forward)
		fail_msg("\"%s\": not a forward request (status %d)", m, status);
	uint8_t out[PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK];
	size_t n = px_http_rewrite((const uint8_t *)m, used, false, out, sizeof(out));
	if (n != strlen(want) || memcmp(out, want, n) != 0)
		fail_msg("\"%s\"\nrewritten to \"%.*s\"\nwant \"%s\"", m, (int)n, out,
		         want);
	/* Never longer than the promised slack; one byte short of the
	 * result does not fit. */
	assert_true(n <= used + PX_HTTP_REWRITE_SLACK);
	assert_int_equal(px_http_rewrite((const uint8_t *)m, used, false, out, n - 1), 0);
}

static void test_forward_parse(void **st)
{
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	const char *m = "GET http://100.77.0.2:8080/index.html HTTP/1.1\r\n"
	                "Host: 100.77.0.2:8080\r\n\r\nX";
	assert_int_equal(parse(m, &r, &used, &status), PX_PARSE_OK);
	assert_true(r.forward);
	assert_int_equal(used, strlen(m) - 1);
	assert_false(r.target.is_name);
	assert_string_equal(r.target.host, "100.77.0.2");
	assert_int_equal(r.target.port, 8080);
	for (size_t k = 0; k < used; k++)
		assert_int_equal(
		    px_http_parse_request((const uint8_t *)m, k, &r, &used, &status),
		    PX_PARSE_MORE);
	/* Default port, names, IPv6, every method, any scheme case. */
	static const char *methods[] = {"GET",    "HEAD",    "POST", "PUT",
	                                "DELETE", "OPTIONS", "PATCH"};
	char buf[128];
	for (size_t i = 0; i < 7; i++) {
		snprintf(buf, sizeof(buf), "%s HTTP://web.mesh HTTP/1.0\r\n\r\n",
		         methods[i]);
		assert_int_equal(parse(buf, &r, &used, &status), PX_PARSE_OK);
		assert_true(r.forward);
		assert_true(r.target.is_name);
		assert_string_equal(r.target.host, "web.mesh");
		assert_int_equal(r.target.port, 80);
	}
	assert_int_equal(
	    parse("GET http://[fd77::2]/ HTTP/1.1\r\n\r\n", &r, &used, &status),
	    PX_PARSE_OK);
	assert_int_equal(r.target.addr.family, AF_INET6);
	assert_int_equal(r.target.port, 80);
	assert_int_equal(
	    parse("GET http://[fd77::2]:81?q HTTP/1.1\r\n\r\n", &r, &used, &status),
	    PX_PARSE_OK);
	assert_int_equal(r.target.port, 81);
	assert_int_equal(parse("GET http://a:/ HTTP/1.1\r\n\r\n", &r, &used, &status),
	                 PX_PARSE_OK);
	assert_int_equal(r.target.port, 80);
	/* CONNECT is not forwarding. */
	assert_int_equal(parse("CONNECT a:1 HTTP/1.1\r\n\r\n", &r, &used, &status),
	                 PX_PARSE_OK);
	assert_false(r.forward);
}

static void expect_status(const char *m, int want)
{
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	enum px_parse p = parse(m, &r, &used, &status);
	if (p != PX_PARSE_ERROR || status != want)
		fail_msg("\"%s\": want error %d, got %d/%d", m, want, p, status);
}

static void test_forward_errors(void **st)
{
	expect_status("GET https://a/ HTTP/1.1\r\n\r\n", 400); /* use CONNECT */
	expect_status("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET * HTTP/1.1\r\n\r\n", 400);
	expect_status("GET ftp://a/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http:// HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http:///x HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://u:p@a/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://a:0/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://a:65536/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://a b/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://fd77::2/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://[a]/ HTTP/1.1\r\n\r\n", 400);
	expect_status("GET http://a/\x01 HTTP/1.1\r\n\r\n", 400);
	expect_status("get http://a/ HTTP/1.1\r\n\r\n", 501);
	expect_status("TRACE http://a/ HTTP/1.1\r\n\r\n", 501);
	expect_status("GET http://a/ HTTP/2.0\r\n\r\n", 505);
}

/* Body framing of requests (RFC 9112 section 6): what is forwarded, and
 * what is refused because a server could read another length into it. */
static void test_request_framing(void **st)
{
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	assert_int_equal(parse("POST http://a/ HTTP/1.1\r\nContent-Length: 12\r\n\r\n",
	                       &r, &used, &status),
	                 PX_PARSE_OK);
	assert_int_equal(r.body, PX_HTTP_BODY_LENGTH);
	assert_int_equal(r.length, 12);
	assert_true(r.keep_alive);
	assert_false(r.head);
	/* Equal values, in one list or repeated, are one length. */
	assert_int_equal(parse("PUT http://a/ HTTP/1.1\r\nContent-Length: 7 , 7\r\n"
	                       "content-length: 7\r\n\r\n",
	                       &r, &used, &status),
	                 PX_PARSE_OK);
	assert_int_equal(r.length, 7);
	assert_int_equal(parse("POST http://a/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r,
	                       &used, &status),
	                 PX_PARSE_OK);
	assert_int_equal(r.body, PX_HTTP_BODY_NONE);
	assert_int_equal(
	    parse("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &r,
	          &used, &status),
	    PX_PARSE_OK);
	assert_int_equal(r.body, PX_HTTP_BODY_CHUNKED);
	assert_int_equal(parse("HEAD http://a/ HTTP/1.1\r\nConnection: x, close\r\n\r\n",
	                       &r, &used, &status),
	                 PX_PARSE_OK);
	assert_true(r.head);
	assert_false(r.keep_alive);
	assert_int_equal(r.body, PX_HTTP_BODY_NONE);
	/* HTTP/1.0 is never kept alive by the proxy. */
	assert_int_equal(parse("GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	                       &r, &used, &status),
	                 PX_PARSE_OK);
	assert_false(r.keep_alive);
	assert_int_equal(r.minor, 0);
	/* Review L2: Connection must not name the framing headers. */
	expect_status("POST http://a/ HTTP/1.1\r\nConnection: content-length\r\n"
	              "Content-Length: 5\r\n\r\n",
	              400);
	expect_status(
	    "POST http://a/ HTTP/1.1\r\nConnection: close, Transfer-Encoding\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n",
	    400);
	/* Both framing headers, lengths that disagree or are not numbers. */
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n"
	              "Transfer-Encoding: chunked\r\n\r\n",
	              400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n"
	              "Content-Length: 6\r\n\r\n",
	              400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length:\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nContent-Length: 5,\r\n\r\n", 400);
	expect_status(
	    "POST http://a/ HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
	    400);
	/* Transfer-Encoding: chunked must be last and once; other codings 501;
	 * HTTP/1.0 has none. */
	expect_status(
	    "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
	expect_status("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	              "Transfer-Encoding: chunked\r\n\r\n",
	              400);
	expect_status(
	    "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	expect_status("POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	              400);
}

static void test_rewrite_keep_alive(void **st)
{
	const char *m = "GET http://a/x HTTP/1.1\r\nConnection: keep-alive\r\n"
	                "Proxy-Connection: keep-alive\r\n\r\n";
	uint8_t out[256];
	size_t n = px_http_rewrite((const uint8_t *)m, strlen(m), true, out, sizeof(out));
	const char *want = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
}

static void test_rewrite(void **st)
{
	expect_rewrite("GET http://100.77.0.2:8080/index.html HTTP/1.1\r\n"
	               "Host: 100.77.0.2:8080\r\n"
	               "User-Agent: curl/7.88.1\r\n"
	               "Accept: */*\r\n"
	               "Proxy-Connection: Keep-Alive\r\n"
	               "\r\n",
	               "GET /index.html HTTP/1.1\r\n"
	               "Host: 100.77.0.2:8080\r\n"
	               "User-Agent: curl/7.88.1\r\n"
	               "Accept: */*\r\n"
	               "Connection: close\r\n"
	               "\r\n");
	/* Empty path, query only, fragment, HTTP/1.0, no Host, bare LF. */
	expect_rewrite("\r\nHEAD http://web.mesh HTTP/1.0\n\n",
	               "HEAD / HTTP/1.0\r\nHost: web.mesh\r\nConnection: close\r\n\r\n");
	expect_rewrite("GET http://a?x=1 HTTP/1.1\r\n\r\n",
	               "GET /?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	expect_rewrite("GET http://a/p#frag HTTP/1.1\r\n\r\n",
	               "GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	expect_rewrite("OPTIONS http://[fd77::2]:8080/ HTTP/1.1\r\nX-A: 1\n\r\n",
	               "OPTIONS / HTTP/1.1\r\nHost: [fd77::2]:8080\r\nX-A: 1\r\n"
	               "Connection: close\r\n\r\n");
	/* Review L7: OPTIONS to the server itself is "OPTIONS *" (RFC 9112
	 * section 3.2.4), not to its root. */
	expect_rewrite("OPTIONS http://a:81 HTTP/1.1\r\n\r\n",
	               "OPTIONS * HTTP/1.1\r\nHost: a:81\r\nConnection: close\r\n\r\n");
	expect_rewrite("OPTIONS http://a#f HTTP/1.1\r\n\r\n",
	               "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	expect_rewrite("OPTIONS http://a?q HTTP/1.1\r\n\r\n",
	               "OPTIONS /?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	expect_rewrite("GET http://a HTTP/1.1\r\n\r\n",
	               "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	/* Every hop-by-hop header goes, and so do the ones Connection names
	 * (any case, several Connection headers, odd spacing). */
	expect_rewrite("POST http://a/up HTTP/1.1\r\n"
	               "Host: other\r\n"
	               "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
	               "connection: keep-alive, X-Secret ,\tX-Other\r\n"
	               "Connection: x-third\r\n"
	               "Keep-Alive: timeout=5\r\n"
	               "TE: trailers\r\n"
	               "Trailer: X-Sum\r\n"
	               "Upgrade: websocket\r\n"
	               "x-secret: 1\r\n"
	               "X-OTHER: 2\r\n"
	               "X-Third: 3\r\n"
	               "X-Kept: 4\r\n"
	               "Content-Length: 3\r\n"
	               "\r\n",
	               "POST /up HTTP/1.1\r\n"
	               "Host: a\r\n"
	               "X-Kept: 4\r\n"
	               "Content-Length: 3\r\n"
	               "Connection: close\r\n"
	               "\r\n");
}

/* Review L2: every line leaves with CR LF, so a server that ends lines
 * only at CR LF reads the same headers (here: sees Content-Length). */
static void test_rewrite_bare_lf(void **st)
{
	expect_rewrite("POST http://a/ HTTP/1.1\nX: a\nContent-Length: 5\n\n",
	               "POST / HTTP/1.1\r\nHost: a\r\nX: a\r\nContent-Length: 5\r\n"
	               "Connection: close\r\n\r\n");
	expect_rewrite("GET http://a/ HTTP/1.1\r\nX: a\nY: b\r\n\n",
	               "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\nY: b\r\n"
	               "Connection: close\r\n\r\n");
}

/* Review L3 and M2: the framing headers are sent once, normalised, so that
 * no server behind us can read another length or coding into them. */
static void test_rewrite_framing(void **st)
{
	expect_rewrite("PUT http://a/ HTTP/1.1\r\nContent-Length: 5, 5\r\nX: 1\r\n"
	               "content-length:5\r\n\r\n",
	               "PUT / HTTP/1.1\r\nHost: a\r\nX: 1\r\nContent-Length: 5\r\n"
	               "Connection: close\r\n\r\n");
	expect_rewrite("PUT http://a/ HTTP/1.1\r\nContent-Length: 010\r\n\r\n",
	               "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
	               "Connection: close\r\n\r\n");
	expect_rewrite("POST http://a/ HTTP/1.1\r\nTransfer-Encoding:  CHUNKED \r\n"
	               "X: 1\r\n\r\n",
	               "POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n"
	               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	/* Parameters on chunked and empty list members are refused. */
	static const char *const bad[] = {
	    "Transfer-Encoding: chunked;x\r\n",
	    "Transfer-Encoding: chunked; q=1\r\n",
	    "Transfer-Encoding:\r\n",
	    "Transfer-Encoding: ,\r\n",
	    "Transfer-Encoding: , chunked\r\n",
	    "Transfer-Encoding: chunked,\r\n",
	    "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n",
	    "Transfer-Encoding: chunked ;\r\n",
	    "Transfer-Encoding: \"chunked\"\r\n",
	};
	char m[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(m, sizeof(m), "POST http://a/ HTTP/1.1\r\n%s\r\n", bad[i]);
		expect_status(m, 400);
	}
}

static void test_rewrite_limits(void **st)
{
	/* Connection naming more than 64 options is refused. */
	char m[2048];
	size_t n = (size_t)sprintf(m, "GET http://a/ HTTP/1.1\r\nConnection: ");
	for (int i = 0; i < 65; i++)
		n += (size_t)sprintf(m + n, "o%d,", i);
	strcpy(m + n, "\r\n\r\n");
	struct px_http_request r;
	size_t used = 0;
	int status = 0;
	assert_int_equal(parse(m, &r, &used, &status), PX_PARSE_OK);
	uint8_t out[4096];
	assert_int_equal(px_http_rewrite((uint8_t *)m, used, false, out, sizeof(out)), 0);
	/* Not a forward head at all: 0, no crash. */
	assert_int_equal(px_http_rewrite((const uint8_t *)"CONNECT a:1 HTTP/1.1\r\n\r\n",
	                                 24, false, out, sizeof(out)),
	                 0);
	assert_int_equal(px_http_rewrite((const uint8_t *)"", 0, true, out, sizeof(out)),
	                 0);
	/* The largest head that parses still fits head + slack. */
	char *big = malloc(PX_HTTP_MAX_HEADER + 1);
	n = (size_t)sprintf(big, "GET http://a HTTP/1.1\nX:");
	memset(big + n, 'v', PX_HTTP_MAX_HEADER - n - 2);
	strcpy(big + PX_HTTP_MAX_HEADER - 2, "\n\n");
	assert_int_equal(
	    px_http_parse_request((uint8_t *)big, PX_HTTP_MAX_HEADER, &r, &used, &status),
	    PX_PARSE_OK);
	uint8_t *o = malloc(PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK);
	size_t w = px_http_rewrite((uint8_t *)big, used, false, o,
	                           PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK);
	assert_true(w > used);
	free(o);
	free(big);
}

static void test_forward_random(void **st)
{
	static const char *pieces[] = {
	    "GET ",      "http://",       "a",  ":8",    "/p",           "?q",   "#f",
	    " HTTP/1.1", "\r\n",          "\n", "[::1]", "Connection: ", "x, y", "X: y",
	    "Host: h",   "Keep-Alive: 1", "@",  " "};
	const size_t np = sizeof(pieces) / sizeof(pieces[0]);
	char buf[512];
	uint8_t out[512 + PX_HTTP_REWRITE_SLACK];
	srand(7);
	for (int iter = 0; iter < 100000; iter++) {
		size_t len = 0;
		int k = rand() % 16;
		for (int i = 0; i < k; i++) {
			const char *p = pieces[rand() % np];
			size_t pl = strlen(p);
			if (len + pl >= sizeof(buf))
				break;
			memcpy(buf + len, p, pl);
			len += pl;
		}
		if (rand() % 4 == 0 && len > 0)
			buf[rand() % len] = (char)rand();
		struct px_http_request r;
		size_t used = 0;
		int status = 0;
		if (px_http_parse_request((uint8_t *)buf, len, &r, &used, &status) !=
		    PX_PARSE_OK)
			continue;
		size_t w = px_http_rewrite((uint8_t *)buf, used, false, out, sizeof(out));
		if (!r.forward) {
			assert_int_equal(w, 0);
			continue;
		}
		assert_true(w > 0 && w <= used + PX_HTTP_REWRITE_SLACK);
		/* The rewrite is itself a well-formed head (origin-form, so the
		 * proxy parser refuses it with 400, not with MORE). */
		assert_int_equal(px_http_parse_request(out, w, &r, &used, &status),
		                 PX_PARSE_ERROR);
		assert_int_equal(status, 400);
		assert_memory_equal(out + w - 21, "Connection: close\r\n\r\n", 21);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forward_parse),
	    cmocka_unit_test(test_forward_errors),
	    cmocka_unit_test(test_rewrite),
	    cmocka_unit_test(test_rewrite_limits),
	    cmocka_unit_test(test_rewrite_bare_lf),
	    cmocka_unit_test(test_rewrite_framing),
	    cmocka_unit_test(test_forward_random),
	    cmocka_unit_test(test_request_framing),
	    cmocka_unit_test(test_rewrite_keep_alive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
