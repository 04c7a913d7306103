/* PCP MAP codec (RFC 6887 sections 7 and 11); see pcp.h. */
#include "core/portmap/pcp.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static void map_put(uint8_t *d, const struct pcp_map *m)
{
	memcpy(d, m->nonce, PCP_NONCE_LEN);
	d[12] = m->protocol;
	memset(d + 13, 0, 3);
	put16(d + 16, m->internal_port);
	put16(d + 18, m->external_port);
	memcpy(d + 20, m->external_ip, 16);
}

size_t pcp_map_request(uint8_t *out, size_t cap, uint32_t lifetime_s,
                       const uint8_t client_ip[16], const struct pcp_map *m)
{
	if (cap < PCP_MAP_MSG_LEN)
		return 0;
	out[0] = PCP_VERSION;
	out[1] = PCP_OP_MAP;
	out[2] = out[3] = 0;
	put32(out + 4, lifetime_s);
	memcpy(out + 8, client_ip, 16);
	map_put(out + PCP_HDR_LEN, m);
	return PCP_MAP_MSG_LEN;
}

size_t pcp_map_response_encode(uint8_t *out, size_t cap, const struct pcp_map_response *r)
{
	if (cap < PCP_MAP_MSG_LEN)
		return 0;
	out[0] = PCP_VERSION;
	out[1] = PCP_OP_MAP | PCP_R_BIT;
	out[2] = 0;
	out[3] = r->result;
	put32(out + 4, r->lifetime_s);
	put32(out + 8, r->epoch_s);
	memset(out + 12, 0, 12);
	map_put(out + PCP_HDR_LEN, &r->map);
	return PCP_MAP_MSG_LEN;
}

int pcp_map_response_decode(const uint8_t *p, size_t len, struct pcp_map_response *out)
{
	memset(out, 0, sizeof(*out));
	/* A NAT-PMP answer is 8 bytes or more, and its first byte is 0. */
	if (len >= 2 && p[0] != PCP_VERSION)
		return PCP_DEC_VERSION;
	if (len < PCP_HDR_LEN || len > PCP_MAX_MSG)
		return PCP_DEC_SHORT;
	if (!(p[1] & PCP_R_BIT))
		return PCP_DEC_NOT_RESP;
	if ((p[1] & 0x7f) != PCP_OP_MAP)
		return PCP_DEC_OPCODE;
	out->result = p[3];
	out->lifetime_s = get32(p + 4);
	out->epoch_s = get32(p + 8);
	if (out->result != PCP_SUCCESS)
		return PCP_DEC_ERROR_RESULT;
	if (len < PCP_MAP_MSG_LEN)
		return PCP_DEC_SHORT;
	const uint8_t *d = p + PCP_HDR_LEN;
	memcpy(out->map.nonce, d, PCP_NONCE_LEN);
	out->map.protocol = d[12];
	out->map.internal_port = get16(d + 16);
	out->map.external_port = get16(d + 18);
	memcpy(out->map.external_ip, d + 20, 16);
	return PCP_DEC_OK;
}

const char *pcp_result_name(uint8_t result)
{
	static const char *const names[] = {
	    "SUCCESS",         "UNSUPP_VERSION",   "NOT_AUTHORIZED",
	    "MALFORMED_REQUEST", "UNSUPP_OPCODE",  "UNSUPP_OPTION",
	    "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES",
	    "UNSUPP_PROTOCOL", "USER_EX_QUOTA",    "CANNOT_PROVIDE_EXTERNAL",
	    "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS",
	};
	return result < sizeof(names) / sizeof(names[0]) ? names[result] : "unknown";
}

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void pcp_v4_mapped(const uint8_t v4[4], uint8_t out[16])
{
	memcpy(out, v4_prefix, 12);
	memcpy(out + 12, v4, 4);
}

int pcp_v4_unmapped(const uint8_t in[16], uint8_t v4[4])
{
	if (memcmp(in, v4_prefix, 12) != 0)
		return -1;
	memcpy(v4, in + 12, 4);
	return 0;
}
