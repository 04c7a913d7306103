/* libFuzzer harness for the PROXY protocol v2 codec (proxy/proto/
 * proxyv2.c). The input is parsed as a header a service would receive;
 * invariants: OK never claims more than it got nor less than 16 bytes,
 * every TLV it reports lies inside the header, and every strict prefix of
 * a header that parsed is MORE. Then the input drives the writer: a TCP4
 * or TCP6 header with up to three TLVs whose values come from the input
 * must parse back to the same addresses, ports and TLVs. */
#include "proxy/proto/proto.h"

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static void fuzz_parse(const uint8_t *p, size_t len)
{
	struct px_pp2_parsed pp;
	size_t used = 0, u2;
	if (px_proxyv2_parse(p, len, &pp, &used) != PX_PARSE_OK)
		return;
	CHECK(used >= 16 && used <= len);
	size_t shown =
	    pp.n_tlv < PX_PP2_PARSE_TLVS_MAX ? pp.n_tlv : PX_PP2_PARSE_TLVS_MAX;
	for (size_t i = 0; i < shown; i++)
		CHECK(pp.tlv[i].value >= p + 16 &&
		      pp.tlv[i].value + pp.tlv[i].len <= p + used);
	for (size_t k = 0; k < used; k++)
		CHECK(px_proxyv2_parse(p, k, &pp, &u2) == PX_PARSE_MORE);
}

static void fuzz_write(const uint8_t *p, size_t len)
{
	if (len < 6)
		return;
	struct ns_addr src = {0}, dst = {0};
	bool v6 = p[0] & 1;
	size_t n_tlv = (p[0] >> 1) % (PX_PP2_TLVS_MAX + 1);
	src.family = dst.family = v6 ? AF_INET6 : AF_INET;
	uint16_t sport = (uint16_t)(p[1] << 8 | p[2]),
	         dport = (uint16_t)(p[3] << 8 | p[4]);
	memcpy(src.addr, p + 1, len - 1 < 16 ? len - 1 : 16);
	p += 5, len -= 5;
	struct px_pp2_tlv tlv[PX_PP2_TLVS_MAX];
	for (size_t i = 0; i < n_tlv; i++) {
		size_t l = len ? p[0] : 0;
		if (len)
			p++, len--;
		if (l > len)
			l = len;
		tlv[i] = (struct px_pp2_tlv){
		    .type = (uint8_t)(0xe0 + i), .len = (uint16_t)l, .value = p};
		p += l, len -= l;
	}
	uint8_t out[PX_PROXYV2_MAX];
	size_t n =
	    px_proxyv2_header_tlv(out, sizeof(out), &src, sport, &dst, dport, tlv, n_tlv);
	CHECK(n > 0);
	struct px_pp2_parsed pp;
	size_t used = 0;
	CHECK(px_proxyv2_parse(out, n, &pp, &used) == PX_PARSE_OK && used == n);
	CHECK(pp.command == 1 && pp.sport == sport && pp.dport == dport);
	CHECK(!memcmp(pp.src.addr, src.addr, v6 ? 16 : 4));
	CHECK(pp.n_tlv == n_tlv);
	for (size_t i = 0; i < n_tlv; i++)
		CHECK(pp.tlv[i].type == tlv[i].type && pp.tlv[i].len == tlv[i].len &&
		      !memcmp(pp.tlv[i].value, tlv[i].value, tlv[i].len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse(data, size);
	fuzz_write(data, size);
	return 0;
}
