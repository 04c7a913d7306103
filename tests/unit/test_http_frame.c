/* HTTP/1.1 framing as pure functions (proxy/proto/http_frame.c): response
 * heads from origin servers (status line, how the body ends, keep-alive),
 * their rewrite for the client, and the chunked body scanner, including
 * arrival in pieces of any size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum px_parse resp(const char *m, bool head, struct px_http_resp *r, size_t *used)
{
	return px_http_parse_response((const uint8_t *)m, strlen(m), head, r, used);
}

static void expect_body(const char *m, bool head, int status, enum px_http_body body,
                        uint64_t length, bool keep)
{
	struct px_http_resp r;
	size_t used = 0;
	if (resp(m, head, &r, &used) != PX_PARSE_OK)
		fail_msg("\"%s\": not parsed", m);
	assert_int_equal(used, strlen(m));
	assert_int_equal(r.status, status);
	if (r.body != body || r.length != length || r.keep_alive != keep)
		fail_msg("\"%s\": body %d length %llu keep %d", m, r.body,
		         (unsigned long long)r.length, r.keep_alive);
	/* Every strict prefix wants more. */
	for (size_t k = 0; k < used; k++)
		assert_int_equal(
		    px_http_parse_response((const uint8_t *)m, k, head, &r, &used),
		    PX_PARSE_MORE);
}

static void test_response_framing(void **st)
{
	expect_body("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false, 200,
	            PX_HTTP_BODY_LENGTH, 2, true);
	expect_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200,
	            PX_HTTP_BODY_CHUNKED, 0, true);
	expect_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n", false,
	            200, PX_HTTP_BODY_CHUNKED, 0, true);
	/* Not chunked last, or no length at all: until the server closes. */
	expect_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 200,
	            PX_HTTP_BODY_CLOSE, 0, false);
	expect_body("HTTP/1.1 200 OK\r\n\r\n", false, 200, PX_HTTP_BODY_CLOSE, 0, false);
	expect_body("HTTP/1.0 200 OK\r\n\r\n", false, 200, PX_HTTP_BODY_CLOSE, 0, false);
	/* Review L5: Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112
	 * section 6.1): up to the close, and the connection is not kept. */
	expect_body("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200,
	            PX_HTTP_BODY_CLOSE, 0, false);
	expect_body("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
	            "Transfer-Encoding: chunked\r\n\r\n",
	            false, 200, PX_HTTP_BODY_CLOSE, 0, false);
	expect_body("HTTP/1.0 204 OK\r\nConnection: keep-alive\r\n"
	            "Transfer-Encoding: chunked\r\n\r\n",
	            false, 204, PX_HTTP_BODY_NONE, 0, false);
	/* No body: HEAD, 1xx, 204, 304, length 0. */
	expect_body("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true, 200,
	            PX_HTTP_BODY_NONE, 0, true);
	expect_body("HTTP/1.1 100 Continue\r\n\r\n", false, 100, PX_HTTP_BODY_NONE, 0,
	            true);
	expect_body("HTTP/1.1 204 No Content\r\n\r\n", false, 204, PX_HTTP_BODY_NONE, 0,
	            true);
	expect_body("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, 304,
	            PX_HTTP_BODY_NONE, 0, true);
	expect_body("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 200,
	            PX_HTTP_BODY_NONE, 0, true);
	/* Keep-alive: 1.1 unless close; 1.0 only with keep-alive; bare LF
	 * and an empty reason phrase are fine. */
	expect_body(
	    "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
	    false, 404, PX_HTTP_BODY_LENGTH, 1, false);
	expect_body(
	    "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
	    false, 200, PX_HTTP_BODY_LENGTH, 1, true);
	expect_body("HTTP/1.1 200\nContent-Length: 3\n\n", false, 200,
	            PX_HTTP_BODY_LENGTH, 3, true);
	expect_body("HTTP/1.1 599 \r\nContent-Length: 3\r\n\r\n", false, 599,
	            PX_HTTP_BODY_LENGTH, 3, true);
}

static void expect_bad(const char *m)
{
	struct px_http_resp r;
	size_t used = 0;
	if (resp(m, false, &r, &used) != PX_PARSE_ERROR)
		fail_msg("\"%s\": accepted", m);
}

static void test_response_errors(void **st)
{
	expect_bad("HTTP/1.1 2OO OK\r\n\r\n");
	expect_bad("HTTP/2 200 OK\r\n\r\n");
	expect_bad("HTTP/1.1 099 x\r\n\r\n");
	expect_bad("HTTP/1.1 600 x\r\n\r\n");
	expect_bad("HTTP/1.1 2000 x\r\n\r\n");
	expect_bad("HTTP/1.1  200 x\r\n\r\n");
	expect_bad("http/1.1 200 x\r\n\r\n");
	expect_bad("ICY 200 OK\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\n folded\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nX : y\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n");
	expect_bad(
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
	expect_bad(
	    "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 1\r\n\r\n");
	/* Review M2: parameters on chunked, empty codings. */
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n");
	expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: a, b, c, d, chunked\r\n\r\n");
	/* A head longer than the bound. */
	size_t n = PX_HTTP_MAX_RESPONSE_HEADER + 100;
	char *big = malloc(n + 1);
	int k = sprintf(big, "HTTP/1.1 200 OK\r\nX: ");
	memset(big + k, 'v', n - (size_t)k);
	big[n] = 0;
	expect_bad(big);
	free(big);
}

static void test_response_nul(void **st)
{
	static const uint8_t m[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
	struct px_http_resp r;
	size_t used;
	assert_int_equal(px_http_parse_response(m, sizeof(m) - 1, false, &r, &used),
	                 PX_PARSE_ERROR);
}

static void expect_rewrite(const char *m, bool keep, const char *want)
{
	struct px_http_resp r;
	size_t used = 0;
	assert_int_equal(resp(m, false, &r, &used), PX_PARSE_OK);
	uint8_t out[512];
	size_t n =
	    px_http_rewrite_response((const uint8_t *)m, used, keep, out, sizeof(out));
	if (n != strlen(want) || memcmp(out, want, n) != 0)
		fail_msg("rewritten to \"%.*s\"\nwant \"%s\"", (int)n, out, want);
	assert_true(n <= used + PX_HTTP_REWRITE_SLACK);
	assert_int_equal(
	    px_http_rewrite_response((const uint8_t *)m, used, keep, out, n - 1), 0);
}

static void test_response_rewrite(void **st)
{
	expect_rewrite(
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true,
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
	/* Hop-by-hop headers go, also the ones Connection names. */
	expect_rewrite(
	    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: "
	    "timeout=5\r\n"
	    "X-Hop: 1\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\n"
	    "Transfer-Encoding: chunked\r\nSet-Cookie: a=b\r\n\r\n",
	    false,
	    "HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nTransfer-Encoding: chunked\r\n"
	    "Connection: close\r\n\r\n");
	/* Review L2, L3, M2: CR LF line ends, one normalised Content-Length
	 * and Transfer-Encoding. */
	expect_rewrite("HTTP/1.1 200 OK\nContent-Length: 2, 2\nX: y\n\n", true,
	               "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 2\r\n"
	               "Connection: keep-alive\r\n\r\n");
	expect_rewrite("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
	               "Transfer-Encoding:Chunked\r\n\r\n",
	               false,
	               "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
	               "Connection: close\r\n\r\n");
	/* Review L7: proxy authentication fields are for the client's proxy
	 * (us), never passed on from an origin. */
	expect_rewrite("HTTP/1.1 401 No\r\nProxy-Authenticate: Basic realm=\"x\"\r\n"
	               "WWW-Authenticate: Basic realm=\"y\"\r\n"
	               "Proxy-Authentication-Info: a=b\r\nContent-Length: 0\r\n\r\n",
	               true,
	               "HTTP/1.1 401 No\r\nWWW-Authenticate: Basic realm=\"y\"\r\n"
	               "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
	/* Interim responses get no Connection header. */
	expect_rewrite("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", true,
	               "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
}

/* Scans body in pieces of step bytes; returns how many bytes belong to
 * the body (OK), or -1 on ERROR, or -2 if it wants more at the end. */
static long scan(const char *body, size_t len, size_t step)
{
	struct px_http_chunked c;
	px_http_chunked_init(&c);
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < step ? len - off : step, used = 0;
		enum px_parse r =
		    px_http_chunked_scan(&c, (const uint8_t *)body + off, n, &used);
		if (r == PX_PARSE_ERROR)
			return -1;
		if (r == PX_PARSE_OK)
			return (long)(off + used);
		assert_int_equal(used, n);
		off += n;
	}
	return -2;
}

static void expect_chunked(const char *body, long want)
{
	size_t len = strlen(body);
	for (size_t step = 1; step <= len + 1; step++) {
		long got = scan(body, len, step);
		if (got != want)
			fail_msg("\"%s\" in pieces of %zu: %ld, want %ld", body, step,
			         got, want);
	}
}

static void test_chunked(void **st)
{
	expect_chunked("0\r\n\r\n", 5);
	expect_chunked("0\r\n\r\nGET / HTTP/1.1\r\n\r\n", 5); /* the next message */
	expect_chunked("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", 24);
	expect_chunked(
	    "A;name=\"v\" \r\n0123456789\r\n000\r\nX-Sum: 1\r\nY: 2\r\n\r\nrest", 48);
	expect_chunked("a\r\n0123456789\r\n0\r\n\r\n", 20);
	expect_chunked("4\r\nWi", -2); /* more to come */
	expect_chunked("0\r\nX: 1\r\n", -2);
	/* Malformed: no digits, bare LF, data not followed by CR LF, a 17th
	 * digit, control bytes in an extension, a folded trailer. */
	expect_chunked("\r\n", -1);
	expect_chunked("x\r\n", -1);
	expect_chunked("4\nWiki\r\n0\r\n\r\n", -1);
	expect_chunked("4\r\nWikiX\r\n0\r\n\r\n", -1);
	expect_chunked("4\r\nWiki\n0\r\n\r\n", -1);
	expect_chunked("10000000000000000\r\n", -1);
	expect_chunked("4;\x01\r\nWiki\r\n", -1);
	expect_chunked("0\r\n folded\r\n\r\n", -1);
	expect_chunked("0\r\nX: 1\n\r\n", -1);
	expect_chunked("0\r\n\n", -1);
	expect_chunked("-1\r\n", -1);
	/* Review L7: a trailer line is "name:value". */
	expect_chunked("0\r\nX\r\n\r\n", -1);
	expect_chunked("0\r\nX-Sum 1\r\n\r\n", -1);
	expect_chunked("0\r\nX :1\r\n\r\n", -1);
	expect_chunked("0\r\nX:\r\n\r\n", 9);
	/* Sizes up to 2^62 - 1 are accepted (the length is counted, not
	 * buffered); review L4: from 2^62 on they are refused, so no reader
	 * behind us with a signed 64-bit length sees it negative. */
	struct px_http_chunked c;
	px_http_chunked_init(&c);
	size_t used;
	assert_int_equal(px_http_chunked_scan(
	                     &c, (const uint8_t *)"3fffffffffffffff\r\nab", 20, &used),
	                 PX_PARSE_MORE);
	px_http_chunked_init(&c);
	assert_int_equal(px_http_chunked_scan(
	                     &c, (const uint8_t *)"0003ffffffffffff\r\nab", 20, &used),
	                 PX_PARSE_MORE);
	expect_chunked("4000000000000000\r\n", -1);
	expect_chunked("ffffffffffffffff\r\n", -1);
	expect_chunked("8000000000000000\r\n", -1);
	/* Over-long size lines and trailer sections are refused. */
	char *line = malloc(PX_HTTP_CHUNK_LINE_MAX + 16);
	strcpy(line, "1;");
	memset(line + 2, 'e', PX_HTTP_CHUNK_LINE_MAX);
	line[PX_HTTP_CHUNK_LINE_MAX + 2] = 0;
	assert_int_equal(scan(line, strlen(line), 4096), -1);
	free(line);
	char *tr = malloc(PX_HTTP_MAX_HEADER + 64);
	strcpy(tr, "0\r\nX: ");
	memset(tr + 6, 'v', PX_HTTP_MAX_HEADER);
	strcpy(tr + 6 + PX_HTTP_MAX_HEADER, "\r\n\r\n");
	assert_int_equal(scan(tr, strlen(tr), 4096), -1);
	free(tr);
}

static void test_chunked_random(void **st)
{
	/* Random chunked bodies split at random points scan to their end. */
	srand(11);
	char body[4096];
	for (int iter = 0; iter < 2000; iter++) {
		size_t len = 0;
		int chunks = rand() % 5;
		for (int i = 0; i < chunks; i++) {
			int n = 1 + rand() % 200;
			len += (size_t)sprintf(body + len, "%x%s\r\n", n,
			                       rand() % 3 ? "" : ";x=y");
			for (int k = 0; k < n; k++)
				body[len++] = (char)(rand() % 256);
			body[len++] = '\r';
			body[len++] = '\n';
		}
		len += (size_t)sprintf(body + len, "0\r\n%s\r\n",
		                       rand() % 2 ? "T: v\r\n" : "");
		size_t total = len;
		struct px_http_chunked c;
		px_http_chunked_init(&c);
		size_t off = 0, used = 0;
		enum px_parse r = PX_PARSE_MORE;
		while (r == PX_PARSE_MORE) {
			size_t n = 1 + (size_t)rand() % 300;
			if (n > total - off)
				n = total - off;
			r = px_http_chunked_scan(&c, (uint8_t *)body + off, n, &used);
			off += used;
		}
		assert_int_equal(r, PX_PARSE_OK);
		assert_int_equal(off, total);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_response_framing),
	    cmocka_unit_test(test_response_errors),
	    cmocka_unit_test(test_response_nul),
	    cmocka_unit_test(test_response_rewrite),
	    cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_chunked_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
