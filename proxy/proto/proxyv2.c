/* PROXY protocol version 2 (haproxy's doc/proxy-protocol.txt, section
 * 2.2): the binary header a TCPServerTunnel with ProxyProtocol = v2 (or an
 * expose port with :pp2) sends to its local target before any data, so
 * that the service sees the mesh source address instead of ours, and the
 * source's mesh identity in TLVs of the custom range (proto.h). The parser
 * is what a receiving service does: tests and the fuzzer check the writer
 * against it. */
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
#define PX_PROXYV2_UNIX_LEN      216

size_t px_proxyv2_header_tlv(uint8_t *out, size_t outlen, const struct ns_addr *src,
                             uint16_t sport, const struct ns_addr *dst, uint16_t dport,
                             const struct px_pp2_tlv *tlv, size_t n)
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
	for (size_t i = 0; i < n; i++) {
		if (tlv[i].len > PX_PP2_VALUE_MAX || (tlv[i].len && !tlv[i].value))
			return 0;
		body += 3 + (size_t)tlv[i].len;
	}
	if (body > 0xffff || outlen < PX_PROXYV2_HDR_LEN + body)
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
	for (size_t i = 0; i < n; i++) {
		*p++ = tlv[i].type;
		*p++ = (uint8_t)(tlv[i].len >> 8);
		*p++ = (uint8_t)tlv[i].len;
		if (tlv[i].len)
			memcpy(p, tlv[i].value, tlv[i].len);
		p += tlv[i].len;
	}
	return (size_t)(p - out);
}

size_t px_proxyv2_header(uint8_t *out, size_t outlen, const struct ns_addr *src,
                         uint16_t sport, const struct ns_addr *dst, uint16_t dport)
{
	return px_proxyv2_header_tlv(out, outlen, src, sport, dst, dport, NULL, 0);
}

enum px_parse px_proxyv2_parse(const uint8_t *p, size_t len, struct px_pp2_parsed *out,
                               size_t *used)
{
	memset(out, 0, sizeof(*out));
	size_t sig = len < PX_PROXYV2_SIG_LEN ? len : PX_PROXYV2_SIG_LEN;
	if (memcmp(p, px_proxyv2_sig, sig) != 0)
		return PX_PARSE_ERROR;
	if (len > 12 && (p[12] >> 4 != 2 || (p[12] & 0x0f) > 1))
		return PX_PARSE_ERROR; /* version 2; LOCAL or PROXY */
	if (len < PX_PROXYV2_HDR_LEN)
		return PX_PARSE_MORE;
	size_t body = (size_t)p[14] << 8 | p[15], total = PX_PROXYV2_HDR_LEN + body;
	out->command = p[12] & 0x0f;
	out->family = p[13];
	size_t alen; /* the address block the family needs */
	switch (p[13] >> 4) {
	case 0: /* AF_UNSPEC */
		alen = 0;
		break;
	case 1:
		alen = PX_PROXYV2_IPV4_LEN;
		break;
	case 2:
		alen = PX_PROXYV2_IPV6_LEN;
		break;
	case 3:
		alen = PX_PROXYV2_UNIX_LEN;
		break;
	default:
		return PX_PARSE_ERROR;
	}
	if ((p[13] & 0x0f) > 2 || body < alen)
		return PX_PARSE_ERROR;
	if (len < total)
		return PX_PARSE_MORE;
	const uint8_t *a = p + PX_PROXYV2_HDR_LEN;
	if (alen == PX_PROXYV2_IPV4_LEN || alen == PX_PROXYV2_IPV6_LEN) {
		size_t n = alen == PX_PROXYV2_IPV4_LEN ? 4 : 16;
		out->src.family = out->dst.family = n == 4 ? AF_INET : AF_INET6;
		memcpy(out->src.addr, a, n);
		memcpy(out->dst.addr, a + n, n);
		out->sport = (uint16_t)(a[2 * n] << 8 | a[2 * n + 1]);
		out->dport = (uint16_t)(a[2 * n + 2] << 8 | a[2 * n + 3]);
	}
	size_t off = PX_PROXYV2_HDR_LEN + alen;
	while (off < total) {
		if (total - off < 3)
			return PX_PARSE_ERROR;
		size_t vl = (size_t)p[off + 1] << 8 | p[off + 2];
		if (vl > total - off - 3)
			return PX_PARSE_ERROR;
		if (out->n_tlv < PX_PP2_PARSE_TLVS_MAX)
			out->tlv[out->n_tlv] = (struct px_pp2_tlv){
			    .type = p[off], .len = (uint16_t)vl, .value = p + off + 3};
		out->n_tlv++;
		off += 3 + vl;
	}
	*used = total;
	return PX_PARSE_OK;
}
