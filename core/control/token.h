/* The join token: the one string a new node needs.
 *
 *   "mesh1" || base64url (RFC 4648 section 5, no padding) of
 *
 *   version      1 byte   CTL_TOKEN_VERSION (1) or CTL_TOKEN_VERSION2 (2)
 *   addresses    version 1: one address; version 2: a count byte
 *                (1..CTL_TOKEN_ADDRS_MAX) and that many addresses, in the
 *                order a node tries them. One address is:
 *     host_len   1 byte   1..CTL_TOKEN_HOST_MAX
 *     host       host_len bytes: DNS name or IP literal (IPv6 without
 *                brackets), printable ASCII, no spaces
 *     port       2 bytes  big endian, not 0
 *   server key   32 bytes the control server's static X25519 public key
 *   auth_len     1 byte   0..CTL_TOKEN_AUTH_MAX
 *   auth key     auth_len bytes, printable ASCII, no spaces (0: the node
 *                registers pending an admin's approval)
 *   checksum     4 bytes  BLAKE2s-32 of everything above, first 4 bytes
 *
 * A token with one address is always written as version 1, so nodes from
 * before version 2 keep reading it; several addresses (mesh-control
 * servers sharing one database) need version 2.
 *
 * The checksum catches typos and truncation when a token is copied by hand;
 * it is no authentication (the server key is pinned, the auth key checked
 * by the server). A token carries a secret: treat it like a password. */
#ifndef MESH_CTL_TOKEN_H
#define MESH_CTL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define CTL_TOKEN_PREFIX   "mesh1"
#define CTL_TOKEN_VERSION   1 /* one control address */
#define CTL_TOKEN_VERSION2  2 /* 1..CTL_TOKEN_ADDRS_MAX control addresses */
#define CTL_TOKEN_ADDRS_MAX 8
#define CTL_TOKEN_HOST_MAX 253
#define CTL_TOKEN_AUTH_MAX 255
#define CTL_TOKEN_KEY_LEN  32
#define CTL_TOKEN_SUM_LEN  4
/* Longest binary form and the longest token string (with its NUL). */
#define CTL_TOKEN_ADDR_BIN_MAX (1 + CTL_TOKEN_HOST_MAX + 2)
#define CTL_TOKEN_BIN_MAX                                                                \
	(1 + 1 + CTL_TOKEN_ADDRS_MAX * CTL_TOKEN_ADDR_BIN_MAX + CTL_TOKEN_KEY_LEN + 1 +  \
	 CTL_TOKEN_AUTH_MAX + CTL_TOKEN_SUM_LEN)
#define CTL_TOKEN_STR_MAX                                                                \
	(sizeof(CTL_TOKEN_PREFIX) - 1 + (CTL_TOKEN_BIN_MAX * 4 + 2) / 3 + 1)

struct ctl_token_addr {
	char host[CTL_TOKEN_HOST_MAX + 1];
	uint16_t port;
};

/* host/port is the first control address (the only one of most tokens);
 * more[0..n_more) are the others, in order. ctl_token_addr_count and
 * ctl_token_addr_get walk all of them; ctl_token_add_addr appends. */
struct ctl_token {
	char host[CTL_TOKEN_HOST_MAX + 1];
	uint16_t port;
	struct ctl_token_addr more[CTL_TOKEN_ADDRS_MAX - 1];
	uint8_t n_more;
	uint8_t server_key[CTL_TOKEN_KEY_LEN];
	char auth_key[CTL_TOKEN_AUTH_MAX + 1];
};

/* Errors (returned negated). */
enum ctl_token_err {
	CTL_TOKEN_OK = 0,
	CTL_TOKEN_E_PREFIX,    /* does not start with "mesh1" */
	CTL_TOKEN_E_BASE64,    /* a character outside base64url, or padding */
	CTL_TOKEN_E_TRUNCATED, /* shorter than its fields say */
	CTL_TOKEN_E_TRAILING,  /* longer than its fields say */
	CTL_TOKEN_E_CHECKSUM,  /* a character was changed */
	CTL_TOKEN_E_VERSION,   /* made by a newer mesh-control */
	CTL_TOKEN_E_TOO_LONG,  /* the string or a field exceeds its limit, or
	                        * more than CTL_TOKEN_ADDRS_MAX addresses */
	CTL_TOKEN_E_FIELD,     /* empty host, port 0, no address, or a bad
	                        * character */
	CTL_TOKEN_E_BUFFER,    /* encode: output buffer too small */
};

/* Writes the token string (NUL-terminated) to out; returns its length or
 * -CTL_TOKEN_E_*. out_cap >= CTL_TOKEN_STR_MAX always suffices. */
int ctl_token_encode(const struct ctl_token *tok, char *out, size_t out_cap);
/* Parses s (len bytes, surrounding whitespace ignored). Returns 0 or
 * -CTL_TOKEN_E_*; *tok is zeroed on error. */
int ctl_token_decode(const char *s, size_t len, struct ctl_token *tok);
/* A sentence for a user: "join token: the checksum does not match (a
 * character was changed?)". Takes the negative return value. */
const char *ctl_token_strerror(int err);
/* How many control addresses tok holds: 0 (no host yet) .. ADDRS_MAX. */
size_t ctl_token_addr_count(const struct ctl_token *tok);
/* Address i (0: tok->host/port) of ctl_token_addr_count. */
void ctl_token_addr_get(const struct ctl_token *tok, size_t i, const char **host,
                        uint16_t *port);
/* Appends an address (the first one goes to host/port). 0, -CTL_TOKEN_E_TOO_LONG
 * (host too long, or already CTL_TOKEN_ADDRS_MAX) or -CTL_TOKEN_E_FIELD
 * (empty host, port 0, a bad character). */
int ctl_token_add_addr(struct ctl_token *tok, const char *host, uint16_t port);
/* Wipes the auth key and everything else. */
void ctl_token_wipe(struct ctl_token *tok);

#endif
