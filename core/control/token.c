/* Join tokens; the layout is in token.h. base64url is written out here
 * rather than taken from libsodium so that a token cut short still decodes
 * to a prefix (and is reported as truncated, not as bad base64). */
#include "core/control/token.h"

#include "core/crypto/blake2s.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#define STR_(x)       #x
#define STR(x)        STR_(x)
#define ADDRS_MAX_STR STR(CTL_TOKEN_ADDRS_MAX)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Without padding; out must hold (len * 4 + 2) / 3 + 1 bytes. */
static size_t b64_encode(char *out, const uint8_t *in, size_t len)
{
	size_t o = 0, i;
	uint32_t acc = 0;
	int bits = 0;

	for (i = 0; i < len; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = b64_alphabet[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = b64_alphabet[(acc << (6 - bits)) & 63];
	out[o] = '\0';
	return o;
}

/* Leftover bits at the end (fewer than 8) are dropped; *canonical says
 * whether they were zero and the length possible for an encoder's output.
 * Returns the byte count or -1 for a character outside the alphabet. */
static int b64_decode(uint8_t *out, size_t out_cap, const char *in, size_t len,
                      bool *canonical)
{
	uint32_t acc = 0;
	int bits = 0, v;
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if ((v = b64_value(in[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == out_cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	*canonical = len % 4 != 1 && (acc & ((1u << bits) - 1)) == 0;
	return (int)o;
}

static void checksum(uint8_t out[CTL_TOKEN_SUM_LEN], const uint8_t *p, size_t len)
{
	blake2s(out, CTL_TOKEN_SUM_LEN, p, len, NULL, 0);
}

static bool sum_ok(const uint8_t *p, size_t body_len)
{
	uint8_t sum[CTL_TOKEN_SUM_LEN];

	checksum(sum, p, body_len);
	return memcmp(sum, p + body_len, CTL_TOKEN_SUM_LEN) == 0;
}

/* Printable ASCII without spaces. */
static bool text_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* Whether one address may go into a token. */
static int addr_check(const char *host, uint16_t port)
{
	size_t hl = strnlen(host, CTL_TOKEN_HOST_MAX + 1);

	if (hl > CTL_TOKEN_HOST_MAX)
		return -CTL_TOKEN_E_TOO_LONG;
	if (hl == 0 || port == 0 || !text_ok(host, hl))
		return -CTL_TOKEN_E_FIELD;
	return 0;
}

size_t ctl_token_addr_count(const struct ctl_token *tok)
{
	if (!tok->host[0])
		return 0;
	return 1 + (tok->n_more < CTL_TOKEN_ADDRS_MAX ? tok->n_more
	                                              : CTL_TOKEN_ADDRS_MAX - 1);
}

void ctl_token_addr_get(const struct ctl_token *tok, size_t i, const char **host,
                        uint16_t *port)
{
	if (i == 0) {
		*host = tok->host;
		*port = tok->port;
	} else {
		*host = tok->more[i - 1].host;
		*port = tok->more[i - 1].port;
	}
}

int ctl_token_add_addr(struct ctl_token *tok, const char *host, uint16_t port)
{
	int rc = addr_check(host, port);
	struct ctl_token_addr *a;

	if (rc != 0)
		return rc;
	if (!tok->host[0]) {
		memcpy(tok->host, host, strlen(host) + 1);
		tok->port = port;
		return 0;
	}
	if (tok->n_more >= CTL_TOKEN_ADDRS_MAX - 1)
		return -CTL_TOKEN_E_TOO_LONG;
	a = &tok->more[tok->n_more++];
	memcpy(a->host, host, strlen(host) + 1);
	a->port = port;
	return 0;
}

static size_t put_addr(uint8_t *bin, const char *host, uint16_t port)
{
	size_t hl = strlen(host), n = 0;

	bin[n++] = (uint8_t)hl;
	memcpy(bin + n, host, hl);
	n += hl;
	bin[n++] = (uint8_t)(port >> 8);
	bin[n++] = (uint8_t)port;
	return n;
}

/* The binary form, checksum included, into bin (CTL_TOKEN_BIN_MAX). One
 * address: version 1, which every node reads; more: version 2. */
static int encode_bin(const struct ctl_token *tok, uint8_t *bin)
{
	size_t auth_len = strnlen(tok->auth_key, sizeof(tok->auth_key));
	size_t n = 0, count;
	const char *host;
	uint16_t port;
	int rc;

	if (tok->n_more > CTL_TOKEN_ADDRS_MAX - 1 || auth_len > CTL_TOKEN_AUTH_MAX)
		return -CTL_TOKEN_E_TOO_LONG;
	if ((rc = addr_check(tok->host, tok->port)) != 0)
		return rc;
	count = ctl_token_addr_count(tok);
	for (size_t i = 1; i < count; i++) {
		ctl_token_addr_get(tok, i, &host, &port);
		if ((rc = addr_check(host, port)) != 0)
			return rc;
	}
	if (!text_ok(tok->auth_key, auth_len))
		return -CTL_TOKEN_E_FIELD;
	if (count == 1) {
		bin[n++] = CTL_TOKEN_VERSION;
	} else {
		bin[n++] = CTL_TOKEN_VERSION2;
		bin[n++] = (uint8_t)count;
	}
	for (size_t i = 0; i < count; i++) {
		ctl_token_addr_get(tok, i, &host, &port);
		n += put_addr(bin + n, host, port);
	}
	memcpy(bin + n, tok->server_key, CTL_TOKEN_KEY_LEN);
	n += CTL_TOKEN_KEY_LEN;
	bin[n++] = (uint8_t)auth_len;
	memcpy(bin + n, tok->auth_key, auth_len);
	n += auth_len;
	checksum(bin + n, bin, n);
	return (int)(n + CTL_TOKEN_SUM_LEN);
}

int ctl_token_encode(const struct ctl_token *tok, char *out, size_t out_cap)
{
	uint8_t bin[CTL_TOKEN_BIN_MAX];
	int n = encode_bin(tok, bin);
	size_t need;

	if (n < 0) {
		sodium_memzero(bin, sizeof(bin));
		return n;
	}
	need = strlen(CTL_TOKEN_PREFIX) + ((size_t)n * 4 + 2) / 3 + 1;
	if (out_cap < need) {
		sodium_memzero(bin, sizeof(bin));
		return -CTL_TOKEN_E_BUFFER;
	}
	memcpy(out, CTL_TOKEN_PREFIX, strlen(CTL_TOKEN_PREFIX));
	b64_encode(out + strlen(CTL_TOKEN_PREFIX), bin, (size_t)n);
	sodium_memzero(bin, sizeof(bin));
	return (int)(need - 1);
}

/* Walks the layout (version 2 when p[0] says so, else version 1, as for
 * a token from before version 2). Returns the total length it implies
 * (checksum included), or 0 when p ends before the last length byte. */
static size_t implied_len(const uint8_t *p, size_t n)
{
	size_t off = 1, count = 1;

	if (n < 2)
		return 0;
	if (p[0] == CTL_TOKEN_VERSION2)
		count = p[off++];
	for (size_t i = 0; i < count; i++) { /* at host_len */
		if (off >= n)
			return 0;
		off += 1 + (size_t)p[off] + 2;
	}
	off += CTL_TOKEN_KEY_LEN; /* at auth_len */
	if (off >= n)
		return 0;
	return off + 1 + p[off] + CTL_TOKEN_SUM_LEN;
}

/* One address at p + *off (implied_len checked that it is all there). */
static int parse_addr(const uint8_t *p, size_t *off, struct ctl_token *tok)
{
	size_t hl = p[*off];
	char host[CTL_TOKEN_HOST_MAX + 1];
	uint16_t port;

	if (hl > CTL_TOKEN_HOST_MAX)
		return -CTL_TOKEN_E_TOO_LONG;
	memcpy(host, p + *off + 1, hl);
	host[hl] = '\0';
	*off += 1 + hl;
	port = (uint16_t)(p[*off] << 8 | p[*off + 1]);
	*off += 2;
	if (hl == 0 || memchr(host, '\0', hl))
		return -CTL_TOKEN_E_FIELD;
	return ctl_token_add_addr(tok, host, port);
}

/* The checksum matched: read the fields of version 1 or 2. */
static int parse(const uint8_t *p, size_t n, struct ctl_token *tok)
{
	size_t want = implied_len(p, n), off = 1, count = 1, al;
	int rc;

	if (want == 0 || want > n)
		return -CTL_TOKEN_E_TRUNCATED;
	if (want < n)
		return -CTL_TOKEN_E_TRAILING;
	if (p[0] == CTL_TOKEN_VERSION2) {
		count = p[off++];
		if (count == 0)
			return -CTL_TOKEN_E_FIELD;
		if (count > CTL_TOKEN_ADDRS_MAX)
			return -CTL_TOKEN_E_TOO_LONG;
	}
	for (size_t i = 0; i < count; i++)
		if ((rc = parse_addr(p, &off, tok)) != 0)
			return rc;
	memcpy(tok->server_key, p + off, CTL_TOKEN_KEY_LEN);
	off += CTL_TOKEN_KEY_LEN;
	if (sodium_is_zero(tok->server_key, CTL_TOKEN_KEY_LEN))
		return -CTL_TOKEN_E_FIELD;
	al = p[off++];
	if (!text_ok((const char *)p + off, al))
		return -CTL_TOKEN_E_FIELD;
	memcpy(tok->auth_key, p + off, al);
	tok->auth_key[al] = '\0';
	return 0;
}

/* The checksum did not match: say whether the token was cut short, had
 * something appended, or was changed. */
static int diagnose(const uint8_t *p, size_t n)
{
	size_t want = implied_len(p, n);

	if (want == 0 || want > n)
		return -CTL_TOKEN_E_TRUNCATED;
	if (want < n && want >= CTL_TOKEN_SUM_LEN + 1 &&
	    sum_ok(p, want - CTL_TOKEN_SUM_LEN))
		return -CTL_TOKEN_E_TRAILING;
	return -CTL_TOKEN_E_CHECKSUM;
}

static int decode(const char *s, size_t len, struct ctl_token *tok, uint8_t *bin)
{
	const size_t plen = strlen(CTL_TOKEN_PREFIX);
	bool canonical;
	int n;

	while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
	                   s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	if (len < plen || memcmp(s, CTL_TOKEN_PREFIX, plen) != 0)
		return -CTL_TOKEN_E_PREFIX;
	if (len >= CTL_TOKEN_STR_MAX)
		return -CTL_TOKEN_E_TOO_LONG;
	n = b64_decode(bin, CTL_TOKEN_BIN_MAX, s + plen, len - plen, &canonical);
	if (n < 0)
		return -CTL_TOKEN_E_BASE64;
	/* A changed last character can alter only the unused bits. */
	if (!canonical) {
		size_t want = implied_len(bin, (size_t)n);
		return want == 0 || want > (size_t)n ? -CTL_TOKEN_E_TRUNCATED
		                                     : -CTL_TOKEN_E_CHECKSUM;
	}
	if ((size_t)n < CTL_TOKEN_SUM_LEN + 1 ||
	    !sum_ok(bin, (size_t)n - CTL_TOKEN_SUM_LEN))
		return diagnose(bin, (size_t)n);
	if (bin[0] != CTL_TOKEN_VERSION && bin[0] != CTL_TOKEN_VERSION2)
		return -CTL_TOKEN_E_VERSION;
	return parse(bin, (size_t)n, tok);
}

int ctl_token_decode(const char *s, size_t len, struct ctl_token *tok)
{
	uint8_t bin[CTL_TOKEN_BIN_MAX];
	int rc;

	memset(tok, 0, sizeof(*tok));
	rc = decode(s, len, tok, bin);
	sodium_memzero(bin, sizeof(bin));
	if (rc != 0)
		ctl_token_wipe(tok);
	return rc;
}

const char *ctl_token_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case CTL_TOKEN_OK:
		return "join token: ok";
	case CTL_TOKEN_E_PREFIX:
		return "join token: does not start with \"" CTL_TOKEN_PREFIX
		       "\" (not a join token, or from another program)";
	case CTL_TOKEN_E_BASE64:
		return "join token: contains a character that cannot be in a token "
		       "(copied with extra characters?)";
	case CTL_TOKEN_E_TRUNCATED:
		return "join token: too short (cut off when copied?)";
	case CTL_TOKEN_E_TRAILING:
		return "join token: extra characters at the end";
	case CTL_TOKEN_E_CHECKSUM:
		return "join token: the checksum does not match (a character was "
		       "changed?)";
	case CTL_TOKEN_E_VERSION:
		return "join token: made by a newer mesh-control (upgrade mesh-proxy)";
	case CTL_TOKEN_E_TOO_LONG:
		return "join token: too long, a field in it is too long, or more "
		       "than " ADDRS_MAX_STR " control addresses";
	case CTL_TOKEN_E_FIELD:
		return "join token: a field is invalid (empty host, port 0, no "
		       "address, bad character or zero server key)";
	case CTL_TOKEN_E_BUFFER:
		return "join token: output buffer too small";
	default:
		return "join token: unknown error";
	}
}

void ctl_token_wipe(struct ctl_token *tok)
{
	sodium_memzero(tok, sizeof(*tok));
}
