/* STUN (RFC 8489, wire-compatible with RFC 5389; classic RFC 3489 binding
 * requests are understood too): the Binding request and its success
 * response, XOR-MAPPED-ADDRESS / MAPPED-ADDRESS and FINGERPRINT. A
 * MESSAGE-INTEGRITY attribute is located (has_integrity, integrity_off) but
 * not verified: a binding server without credentials never needs it, so no
 * HMAC-SHA1 lives here. Pure: no I/O, no allocation; shared by mesh-relay's
 * STUN server and the node's netcheck.
 *
 * Header (20 bytes): type u16 (top two bits 0) || length u16 (of the
 * attributes, a multiple of 4) || magic cookie 0x2112A442 || transaction id
 * (12 bytes). A message without the cookie is a classic RFC 3489 one whose
 * transaction id is 16 bytes (cookie field included); it is answered with
 * MAPPED-ADDRESS only.
 *
 * Attributes: type u16 || length u16 || value, padded to 4 bytes; padding
 * content is ignored (RFC 5769's first vector pads with spaces). After
 * MESSAGE-INTEGRITY only FINGERPRINT counts; FINGERPRINT must be last. */
#ifndef MESH_STUN_H
#define MESH_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STUN_HDR_LEN       20
#define STUN_MAGIC_COOKIE  0x2112A442u
#define STUN_TXID_LEN      12
#define STUN_FINGERPRINT_X 0x5354554Eu
#define STUN_MAX_MSG       1500 /* larger datagrams are not STUN to us */
#define STUN_PORT          3478
#define STUN_INTEGRITY_LEN 20 /* MESSAGE-INTEGRITY's value: an HMAC-SHA1 */

enum stun_type {
	STUN_BINDING_REQUEST = 0x0001,
	STUN_BINDING_INDICATION = 0x0011,
	STUN_BINDING_SUCCESS = 0x0101,
	STUN_BINDING_ERROR = 0x0111,
};

enum stun_attr {
	STUN_A_MAPPED_ADDRESS = 0x0001,
	STUN_A_CHANGE_REQUEST = 0x0003, /* RFC 5780 / 3489 */
	STUN_A_USERNAME = 0x0006,
	STUN_A_MESSAGE_INTEGRITY = 0x0008,
	STUN_A_ERROR_CODE = 0x0009,
	STUN_A_REALM = 0x0014,
	STUN_A_NONCE = 0x0015,
	STUN_A_XOR_MAPPED_ADDRESS = 0x0020,
	STUN_A_SOFTWARE = 0x8022,
	STUN_A_FINGERPRINT = 0x8028,
};

struct stun_addr {
	uint8_t family; /* 4 or 6 */
	uint16_t port;
	uint8_t addr[16];
};

struct stun_msg {
	uint16_t type;
	bool classic;    /* no magic cookie: RFC 3489 */
	uint8_t id[16];  /* header bytes 4..20: cookie (or classic id) || txid */
	bool has_mapped; /* mapped holds XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS */
	bool mapped_xor; /* it came from XOR-MAPPED-ADDRESS */
	struct stun_addr mapped;
	uint32_t change_flags; /* CHANGE-REQUEST value, 0 if absent */
	uint16_t error_code;   /* ERROR-CODE class*100+number, 0 if absent */
	const uint8_t *software, *username, *realm, *nonce; /* into the message */
	size_t software_len, username_len, realm_len, nonce_len;
	bool has_integrity;
	size_t integrity_off; /* offset of the MESSAGE-INTEGRITY attribute */
	bool has_fingerprint;
	bool fingerprint_ok;
	/* A comprehension-required attribute (type < 0x8000) we do not know:
	 * a server answers a request carrying one with error 420. */
	uint16_t unknown_required;
};

/* Quick test for demultiplexing a datagram: at least a header, top two bits
 * zero, length consistent, and the magic cookie (classic messages are not
 * recognised here). */
bool stun_is_message(const uint8_t *p, size_t len);

/* Parses p[0..len). 0, or -EBADMSG (malformed: short, length mismatch, an
 * attribute running past the end, a bad address, FINGERPRINT not last). A
 * FINGERPRINT that does not match is reported in fingerprint_ok, not as an
 * error (the caller drops the message). */
int stun_parse(const uint8_t *p, size_t len, struct stun_msg *m);

/* CRC-32 (ISO-HDLC, as FINGERPRINT uses before its XOR). */
uint32_t stun_crc32(const uint8_t *p, size_t len);

/* A Binding request with the given 12-byte transaction id, SOFTWARE (NULL:
 * none) and FINGERPRINT. Returns its length, 0 if cap is too small. */
size_t stun_binding_request(uint8_t *out, size_t cap, const uint8_t *txid,
                            const char *software);

/* The success response to req: XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS for a
 * classic request, which gets only that) for mapped, SOFTWARE (NULL: none)
 * and FINGERPRINT (not for classic). Returns its length, 0 if too small. */
size_t stun_binding_response(uint8_t *out, size_t cap, const struct stun_msg *req,
                             const struct stun_addr *mapped, const char *software);

/* An error response (420 Unknown Attribute carries UNKNOWN-ATTRIBUTES). */
size_t stun_error_response(uint8_t *out, size_t cap, const struct stun_msg *req,
                           uint16_t code, const char *reason);

#endif
