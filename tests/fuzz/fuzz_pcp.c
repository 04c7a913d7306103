/* Fuzzes the PCP MAP codec (core/portmap/pcp.c): any datagram from the
 * router decodes cleanly or is refused with one of the named codes, never
 * read past its end; a decoded MAP answer encodes back to the same fields;
 * an error answer names its result. */
#include <stdint.h>
#include <string.h>

#include "core/portmap/pcp.h"

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t len)
{
	struct pcp_map_response r;
	int d = pcp_map_response_decode(p, len, &r);
	CHECK(d == PCP_DEC_OK || d == PCP_DEC_SHORT || d == PCP_DEC_VERSION ||
	      d == PCP_DEC_NOT_RESP || d == PCP_DEC_OPCODE || d == PCP_DEC_ERROR_RESULT);
	CHECK(pcp_result_name(r.result) != NULL);
	if (d == PCP_DEC_ERROR_RESULT)
		CHECK(r.result != PCP_SUCCESS && len >= PCP_HDR_LEN);
	if (d != PCP_DEC_OK)
		return 0;
	CHECK(len >= PCP_MAP_MSG_LEN && len <= PCP_MAX_MSG);
	uint8_t out[PCP_MAP_MSG_LEN];
	CHECK(pcp_map_response_encode(out, sizeof(out), &r) == PCP_MAP_MSG_LEN);
	struct pcp_map_response back;
	CHECK(pcp_map_response_decode(out, sizeof(out), &back) == PCP_DEC_OK);
	CHECK(memcmp(&back.map, &r.map, sizeof(r.map)) == 0);
	CHECK(back.lifetime_s == r.lifetime_s && back.epoch_s == r.epoch_s);
	uint8_t v4[4];
	if (pcp_v4_unmapped(r.map.external_ip, v4) == 0)
		CHECK(memcmp(v4, r.map.external_ip + 12, 4) == 0);
	return 0;
}
