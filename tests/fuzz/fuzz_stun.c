/* Fuzzes the STUN codec (core/stun): any datagram parses cleanly or is
 * refused; a parsed message's pointers lie inside it; a Binding request is
 * answered with a response that parses back to the same mapped address and
 * transaction; a located MESSAGE-INTEGRITY lies inside the message. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/stun/stun.h"

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static bool inside(const uint8_t *q, size_t n, const uint8_t *p, size_t len)
{
	return !q || (q >= p && q + n <= p + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t len)
{
	struct stun_msg m;
	int r = stun_parse(p, len, &m);
	CHECK(r == 0 || r == -EBADMSG);
	if (r < 0)
		return 0;
	CHECK(inside(m.software, m.software_len, p, len));
	CHECK(inside(m.username, m.username_len, p, len));
	CHECK(inside(m.realm, m.realm_len, p, len));
	CHECK(inside(m.nonce, m.nonce_len, p, len));
	if (m.has_integrity)
		CHECK(m.integrity_off >= STUN_HDR_LEN &&
		      m.integrity_off + 4 + STUN_INTEGRITY_LEN <= len);
	if (stun_is_message(p, len))
		CHECK(!m.classic);
	struct stun_addr a = {.family = (uint8_t)(len & 1 ? 6 : 4),
	                      .port = (uint16_t)len};
	memcpy(a.addr, p, len < 16 ? len : 16);
	uint8_t out[256];
	size_t n = stun_binding_response(out, sizeof out, &m, &a, "mesh-relay");
	CHECK(n > 0);
	struct stun_msg back;
	CHECK(stun_parse(out, n, &back) == 0);
	CHECK(back.has_mapped && back.mapped.port == a.port &&
	      back.mapped.family == a.family);
	CHECK(memcmp(back.mapped.addr, a.addr, a.family == 6 ? 16 : 4) == 0);
	CHECK(memcmp(back.id, m.id, 16) == 0);
	if (!m.classic)
		CHECK(back.fingerprint_ok);
	n = stun_error_response(out, sizeof out, &m, 420, "Unknown Attribute");
	CHECK(n > 0 && stun_parse(out, n, &back) == 0);
	return 0;
}
