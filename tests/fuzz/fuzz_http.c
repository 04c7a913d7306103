/* libFuzzer harness for the HTTP forwarding codecs (proxy/proto/http_frame.c):
 * the input is read as an origin server's byte stream, a response head
 * (as the answer to GET and to HEAD) and its rewrite for the client, then
 * as a chunked body scanned in pieces whose sizes the first byte picks.
 * Invariants: OK never claims more than it got, every strict prefix of a
 * head that parsed is MORE, the rewrite stays within its slack, ends every
 * line in CR LF, names each framing header at most once and fails cleanly
 * one byte short, and the chunked scanner gives the same end
 * whatever the pieces. */
#include "proxy/proto/proto.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static size_t count_field(const uint8_t *p, size_t len, const char *f)
{
	size_t n = 0, fl = strlen(f);
	for (size_t i = 0; i + fl <= len; i++)
		if (memcmp(p + i, f, fl) == 0)
			n++;
	return n;
}

static void fuzz_response(const uint8_t *p, size_t len, bool head)
{
	static uint8_t out[PX_HTTP_MAX_RESPONSE_HEADER + PX_HTTP_REWRITE_SLACK];
	struct px_http_resp r;
	size_t used = 0, u2;
	enum px_parse res = px_http_parse_response(p, len, head, &r, &used);
	if (res == PX_PARSE_MORE) {
		CHECK(len < PX_HTTP_MAX_RESPONSE_HEADER);
		return;
	}
	if (res != PX_PARSE_OK)
		return;
	CHECK(used <= len && used <= PX_HTTP_MAX_RESPONSE_HEADER);
	CHECK(r.status >= 100 && r.status <= 599);
	CHECK(!head || r.body == PX_HTTP_BODY_NONE);
	CHECK(r.body != PX_HTTP_BODY_CLOSE || !r.keep_alive);
	struct px_http_resp r2;
	CHECK(px_http_parse_response(p, used - 1, head, &r2, &u2) == PX_PARSE_MORE);
	size_t w =
	    px_http_rewrite_response(p, used, true, out, used + PX_HTTP_REWRITE_SLACK);
	if (w == 0)
		return; /* Connection named too many options, or bare LFs grew it */
	CHECK(w <= used + PX_HTTP_REWRITE_SLACK);
	/* Every line leaves with CR LF; Content-Length and Transfer-Encoding
	 * at most once each. */
	for (size_t i = 0; i < w; i++)
		CHECK(out[i] != '\n' || (i > 0 && out[i - 1] == '\r'));
	CHECK(count_field(out, w, "\nContent-Length:") <= 1);
	CHECK(count_field(out, w, "\nTransfer-Encoding:") <= 1);
	/* The rewrite parses as the same kind of response. */
	CHECK(px_http_parse_response(out, w, head, &r2, &u2) == PX_PARSE_OK);
	CHECK(u2 == w && r2.status == r.status && r2.body == r.body);
	CHECK(px_http_rewrite_response(p, used, true, out, w - 1) == 0);
}

static void fuzz_chunked(const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	size_t step = 1 + p[0] % 64;
	p++, len--;
	struct px_http_chunked a, b;
	px_http_chunked_init(&a);
	px_http_chunked_init(&b);
	size_t used = 0, off = 0;
	enum px_parse whole = px_http_chunked_scan(&a, p, len, &used);
	CHECK(used <= len);
	enum px_parse r = PX_PARSE_MORE;
	while (r == PX_PARSE_MORE && off < len) {
		size_t n = len - off < step ? len - off : step, u = 0;
		r = px_http_chunked_scan(&b, p + off, n, &u);
		CHECK(u <= n);
		off += r == PX_PARSE_ERROR ? 0 : u;
	}
	CHECK(r == whole);
	if (r == PX_PARSE_OK)
		CHECK(off == used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_response(data, size, false);
	fuzz_response(data, size, true);
	fuzz_chunked(data, size);
	return 0;
}
