/* PCP, the Port Control Protocol (RFC 6887): the MAP opcode only, which
 * asks the router for an inbound mapping of one UDP port. Pure: no I/O, no
 * allocation; shared by the port mapper (portmap_job.c) and its fuzzer.
 *
 * Request (60 bytes): version 2 || opcode MAP (R bit 0) || reserved (2) ||
 * requested lifetime u32 || client IP (16, IPv4-mapped for IPv4) || MAP
 * data: nonce (12) || protocol (17 for UDP) || reserved (3) || internal
 * port u16 || suggested external port u16 || suggested external IP (16).
 *
 * Response (at least 60 bytes, at most PCP_MAX_MSG): version || opcode
 * with the R bit || reserved || result code || lifetime u32 || epoch u32
 * || reserved (12) || the MAP data, with the assigned external port and
 * address. Options may follow; they are not read. A NAT-PMP-only server
 * answers a version 2 request with a version 0 message (RFC 6887 section
 * 9): PCP_DEC_VERSION tells the caller to speak NAT-PMP instead. */
#ifndef MESH_PCP_H
#define MESH_PCP_H

#include <stddef.h>
#include <stdint.h>

#define PCP_PORT        5351 /* the server's port on the router */
#define PCP_VERSION     2
#define PCP_OP_ANNOUNCE 0
#define PCP_OP_MAP      1
#define PCP_R_BIT       0x80
#define PCP_HDR_LEN     24
#define PCP_MAP_LEN     36
#define PCP_MAP_MSG_LEN (PCP_HDR_LEN + PCP_MAP_LEN) /* 60 */
#define PCP_MAX_MSG     1100 /* RFC 6887 section 7: no message is longer */
#define PCP_NONCE_LEN   12
#define PCP_PROTO_UDP   17

/* Result codes (RFC 6887 section 7.4). */
enum pcp_result {
	PCP_SUCCESS = 0,
	PCP_UNSUPP_VERSION = 1,
	PCP_NOT_AUTHORIZED = 2,
	PCP_MALFORMED_REQUEST = 3,
	PCP_UNSUPP_OPCODE = 4,
	PCP_UNSUPP_OPTION = 5,
	PCP_MALFORMED_OPTION = 6,
	PCP_NETWORK_FAILURE = 7,
	PCP_NO_RESOURCES = 8,
	PCP_UNSUPP_PROTOCOL = 9,
	PCP_USER_EX_QUOTA = 10,
	PCP_CANNOT_PROVIDE_EXTERNAL = 11,
	PCP_ADDRESS_MISMATCH = 12,
	PCP_EXCESSIVE_REMOTE_PEERS = 13,
};

struct pcp_map {
	uint8_t nonce[PCP_NONCE_LEN];
	uint8_t protocol;
	uint16_t internal_port;
	uint16_t external_port; /* suggested (request) or assigned (response) */
	uint8_t external_ip[16]; /* IPv4-mapped for IPv4; ::ffff:0.0.0.0: no wish for IPv4 (:: asks for IPv6) */
};

struct pcp_map_response {
	uint8_t result; /* enum pcp_result */
	uint32_t lifetime_s;
	uint32_t epoch_s;
	struct pcp_map map;
};

/* Writes a MAP request into out (at least PCP_MAP_MSG_LEN bytes). client_ip
 * is our address as the router sees it (IPv4-mapped for IPv4). Lifetime 0
 * deletes the mapping the nonce names. Returns PCP_MAP_MSG_LEN, or 0 when
 * cap is too small. */
size_t pcp_map_request(uint8_t *out, size_t cap, uint32_t lifetime_s,
                       const uint8_t client_ip[16], const struct pcp_map *m);

enum pcp_decode {
	PCP_DEC_OK = 0,
	PCP_DEC_SHORT = -1,     /* shorter than a MAP response, or longer than PCP_MAX_MSG */
	PCP_DEC_VERSION = -2,   /* not version 2 (0: the server speaks NAT-PMP only) */
	PCP_DEC_NOT_RESP = -3,  /* the R bit is clear: a request, not an answer */
	PCP_DEC_OPCODE = -4,    /* an answer to another opcode */
	PCP_DEC_ERROR_RESULT = -5, /* a non-zero result code: out->result says which */
};

/* Decodes a MAP response. A response with a result code other than
 * success needs only the 24-byte header (RFC 6887 section 7.2: an error
 * answer may be truncated): out->result and lifetime are filled and
 * PCP_DEC_ERROR_RESULT returned. The caller matches the nonce, protocol
 * and internal port with what it asked. */
int pcp_map_response_decode(const uint8_t *p, size_t len, struct pcp_map_response *out);

/* Writes a MAP response (for tests and the fuzzer's round trip). Returns
 * PCP_MAP_MSG_LEN or 0. */
size_t pcp_map_response_encode(uint8_t *out, size_t cap, const struct pcp_map_response *r);

/* "SUCCESS", "NOT_AUTHORIZED", ..., or "unknown". */
const char *pcp_result_name(uint8_t result);

/* The IPv4-mapped IPv6 form of a 4-byte address, and back (0, or -1 when
 * the address is not IPv4-mapped). */
void pcp_v4_mapped(const uint8_t v4[4], uint8_t out[16]);
int pcp_v4_unmapped(const uint8_t in[16], uint8_t v4[4]);

#endif
