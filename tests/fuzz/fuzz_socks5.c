/* libFuzzer harness for the proxy request parsers. The input is read as a
 * client's byte stream: greeting, auth, request in sequence as the SOCKS5
 * server does; as a SOCKS4/4a request; and as an HTTP proxy head (CONNECT
 * or an absolute-form request, whose rewrite for the origin server is
 * checked too). Invariants checked: OK never claims more than it got, and
 * every strict prefix of a message that parsed OK is MORE (so byte-by-byte
 * arrival gives the same answer). */
#include "proxy/proto/proto.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static void fuzz_socks5(const uint8_t *p, size_t len)
{
	struct px_socks5_greeting g;
	struct px_socks5_auth a;
	struct px_target t;
	uint8_t cmd, rep;
	size_t used = 0, u2;
	/* The first byte picks whether an auth message sits in between. */
	bool with_auth = len > 0 && (p[0] & 1);
	if (len > 0)
		p++, len--;
	if (px_socks5_parse_greeting(p, len, &g, &used) != PX_PARSE_OK)
		return;
	CHECK(used <= len && used <= SOCKS5_GREETING_MAX);
	CHECK(px_socks5_parse_greeting(p, used - 1, &g, &u2) == PX_PARSE_MORE);
	p += used, len -= used;
	if (with_auth) {
		if (px_socks5_parse_auth(p, len, &a, &used) != PX_PARSE_OK)
			return;
		CHECK(used <= len && used <= SOCKS5_AUTH_MAX);
		CHECK(px_socks5_parse_auth(p, used - 1, &a, &u2) == PX_PARSE_MORE);
		p += used, len -= used;
	}
	enum px_parse r = px_socks5_parse_request(p, len, &cmd, &t, &used, &rep);
	if (r == PX_PARSE_OK) {
		CHECK(used <= len && used <= SOCKS5_REQUEST_MAX);
		CHECK(t.port != 0 || cmd == SOCKS5_CMD_UDP_ASSOCIATE);
		CHECK(memchr(t.host, 0, sizeof(t.host)));
		CHECK(t.is_name || t.addr.family == 2 || t.addr.family == 10);
		CHECK(px_socks5_parse_request(p, used - 1, &cmd, &t, &u2, &rep) ==
		      PX_PARSE_MORE);
		char buf[300];
		px_target_format(&t, buf, sizeof(buf));
	} else if (r == PX_PARSE_ERROR) {
		CHECK(rep == SOCKS5_REP_GENERAL || rep == SOCKS5_REP_HOST_UNREACH ||
		      rep == SOCKS5_REP_CMD_UNSUPPORTED ||
		      rep == SOCKS5_REP_ATYP_UNSUPPORTED);
	}
}

static void fuzz_socks4(const uint8_t *p, size_t len)
{
	struct px_target t;
	uint8_t cmd;
	size_t used = 0, u2;
	enum px_parse r = px_socks4_parse_request(p, len, &cmd, &t, &used);
	if (r == PX_PARSE_OK) {
		CHECK(used <= len && used <= SOCKS4_REQUEST_MAX);
		CHECK(t.port != 0 && memchr(t.host, 0, sizeof(t.host)));
		CHECK(t.is_name || t.addr.family == 2 || t.addr.family == 10);
		CHECK(cmd == SOCKS4_CMD_CONNECT || cmd == SOCKS4_CMD_BIND);
		CHECK(px_socks4_parse_request(p, used - 1, &cmd, &t, &u2) ==
		      PX_PARSE_MORE);
	} else if (r == PX_PARSE_MORE) {
		CHECK(len < SOCKS4_REQUEST_MAX);
	}
}

/* The rewrite of a forward head: within the slack, ends the head with
 * "Connection: close" (or keep-alive), and fails cleanly when the room is
 * one byte short. */
static void fuzz_http_rewrite(const uint8_t *p, size_t used, bool forward)
{
	static uint8_t out[PX_HTTP_MAX_HEADER + PX_HTTP_REWRITE_SLACK];
	size_t w = px_http_rewrite(p, used, true, out, used + PX_HTTP_REWRITE_SLACK);
	CHECK(w == 0 || (w >= 26 && memcmp(out + w - 26, "Connection: keep-alive\r\n\r\n",
	                                   26) == 0));
	w = px_http_rewrite(p, used, false, out, used + PX_HTTP_REWRITE_SLACK);
	if (!forward) {
		CHECK(w == 0);
		return;
	}
	if (w == 0)
		return; /* Connection named too many options */
	CHECK(w <= used + PX_HTTP_REWRITE_SLACK);
	CHECK(w >= 21 && memcmp(out + w - 21, "Connection: close\r\n\r\n", 21) == 0);
	CHECK(px_http_rewrite(p, used, false, out, w - 1) == 0);
}

static void fuzz_http(const uint8_t *p, size_t len)
{
	struct px_http_request r;
	size_t used = 0, u2;
	int status = 0, s2;
	enum px_parse res = px_http_parse_request(p, len, &r, &used, &status);
	if (res == PX_PARSE_OK) {
		CHECK(used <= len && used <= PX_HTTP_MAX_HEADER);
		CHECK(r.target.port != 0);
		CHECK(r.body != PX_HTTP_BODY_CLOSE);
		CHECK(r.body != PX_HTTP_BODY_LENGTH || r.length > 0);
		CHECK(px_http_parse_request(p, used - 1, &r, &u2, &s2) == PX_PARSE_MORE);
		res = px_http_parse_request(p, len, &r, &used, &status);
		fuzz_http_rewrite(p, used, r.forward);
		if (r.auth) {
			CHECK(r.auth >= p && r.auth + r.auth_len <= p + len);
			px_http_auth_ok(r.auth, r.auth_len, "user", "pass");
		}
	} else if (res == PX_PARSE_ERROR) {
		CHECK(status == 400 || status == 431 || status == 501 || status == 505);
	} else {
		CHECK(len < PX_HTTP_MAX_HEADER);
	}
	px_http_auth_ok(p, len, "alice", "secret");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_socks5(data, size);
	fuzz_socks4(data, size);
	fuzz_http(data, size);
	return 0;
}
