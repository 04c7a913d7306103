/* libFuzzer harness for the SOCKS5 UDP ASSOCIATE datagram header (RFC 1928
 * section 7), as the relay reads every datagram a client sends. Checks: a
 * header that parses lies inside the datagram and within
 * SOCKS5_UDP_HDR_MAX; every truncation of it is refused; an address header
 * written back by px_socks5_udp_header() is byte-identical (RSV and FRAG
 * aside) and parses to the same destination. */
#include "proxy/proto/proto.h"

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct px_target t, t2;
	uint8_t frag = 0, frag2;
	size_t hl = 0, hl2;
	if (!px_socks5_udp_parse(data, size, &frag, &t, &hl))
		return 0;
	CHECK(hl <= size && hl >= 8 && hl <= SOCKS5_UDP_HDR_MAX);
	CHECK(t.port != 0 && memchr(t.host, 0, sizeof(t.host)));
	CHECK(frag == data[2]);
	for (size_t k = 0; k < hl; k++)
		CHECK(!px_socks5_udp_parse(data, k, &frag2, &t2, &hl2));
	if (t.is_name)
		return 0;
	CHECK(t.addr.family == AF_INET || t.addr.family == AF_INET6);
	uint8_t out[SOCKS5_UDP_HDR_IPV6];
	size_t n = px_socks5_udp_header(out, &t.addr, t.port);
	CHECK(n ==
	      (t.addr.family == AF_INET ? SOCKS5_UDP_HDR_IPV4 : SOCKS5_UDP_HDR_IPV6));
	if (data[3] != SOCKS5_ATYP_DOMAIN) /* a literal written as a name differs */
		CHECK(n == hl && memcmp(out + 3, data + 3, n - 3) == 0);
	CHECK(px_socks5_udp_parse(out, n, &frag2, &t2, &hl2));
	CHECK(frag2 == 0 && hl2 == n && t2.port == t.port && !t2.is_name);
	CHECK(t2.addr.family == t.addr.family &&
	      memcmp(t2.addr.addr, t.addr.addr, sizeof(t.addr.addr)) == 0);
	return 0;
}
