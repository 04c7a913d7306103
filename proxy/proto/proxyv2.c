/* PROXY protocol version 2 (haproxy's doc/proxy-protocol.txt, section
 * 2.2): the binary header a TCPServerTunnel with ProxyProtocol = v2 sends
 * to its local target before any data, so that the service sees the mesh
 * source address instead of ours. Only the PROXY command over TCP is
 * needed; no TLVs. */
#include "proxy/proto/proto.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t px_proxyv2_sig[PX_PROXYV2_SIG_LEN] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define PX_PROXYV2_VER_CMD_PROXY 0x21 /* version 2 (high nibble), PROXY (low) */
#define PX_PROXYV2_FAM_TCP4      0x11 /* AF_INET (high nibble), STREAM (low) */
#define PX_PROXYV2_FAM_TCP6      0x21 /* AF_INET6, STREAM */
#define PX_PROXYV2_HDR_LEN       16   /* signature, ver_cmd, fam, len */
#define PX_PROXYV2_IPV4_LEN      12   /* src, dst, sport, dport */
#define PX_PROXYV2_IPV6_LEN      36

size_t px_proxyv2_header(uint8_t *out, size_t outlen, const struct ns_addr *src,
                         uint16_t sport, const struct ns_addr *dst, uint16_t dport)
{
	size_t alen, body;
	uint8_t fam;
	if (src->family != dst->family)
		return 0;
	if (src->family == AF_INET) {
		alen = 4;
		body = PX_PROXYV2_IPV4_LEN;
		fam = PX_PROXYV2_FAM_TCP4;
	} else if (src->family == AF_INET6) {
		alen = 16;
		body = PX_PROXYV2_IPV6_LEN;
		fam = PX_PROXYV2_FAM_TCP6;
	} else {
		return 0;
	}
	if (outlen < PX_PROXYV2_HDR_LEN + body)
		return 0;
	uint8_t *p = out;
	memcpy(p, px_proxyv2_sig, PX_PROXYV2_SIG_LEN);
	p += PX_PROXYV2_SIG_LEN;
	*p++ = PX_PROXYV2_VER_CMD_PROXY;
	*p++ = fam;
	*p++ = (uint8_t)(body >> 8);
	*p++ = (uint8_t)body;
	memcpy(p, src->addr, alen);
	p += alen;
	memcpy(p, dst->addr, alen);
	p += alen;
	*p++ = (uint8_t)(sport >> 8);
	*p++ = (uint8_t)sport;
	*p++ = (uint8_t)(dport >> 8);
	*p++ = (uint8_t)dport;
	return (size_t)(p - out);
}
