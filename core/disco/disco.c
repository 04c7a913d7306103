/* Disco messages: see disco.h. */
#include "core/disco/disco.h"
#include "core/util/bytes.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

/* The magic can never begin a WireGuard message (type 1..4, then three zero
 * bytes) nor a STUN message (top two bits of byte 0 zero; cookie 0x2112A442
 * in bytes 4..7). Each rule alone is enough; both hold. */
_Static_assert(DISCO_MAGIC_0<1 || DISCO_MAGIC_0> 4, "magic looks like a WireGuard type");
_Static_assert(DISCO_MAGIC_1 != 0 && DISCO_MAGIC_2 != 0 && DISCO_MAGIC_3 != 0,
               "magic looks like WireGuard's zero bytes");
_Static_assert((DISCO_MAGIC_0 & 0xC0) != 0, "magic looks like a STUN type");
_Static_assert(DISCO_MAGIC_4 != 0x21 || DISCO_MAGIC_5 != 0x12,
               "magic holds STUN's cookie");
_Static_assert(DISCO_NONCE_LEN == crypto_box_NONCEBYTES, "nonce size");
_Static_assert(DISCO_MAC_LEN == crypto_box_MACBYTES, "tag size");
_Static_assert(DISCO_SHARED_LEN == crypto_box_BEFORENMBYTES, "shared key size");
_Static_assert(DISCO_KEY_LEN == crypto_box_PUBLICKEYBYTES, "key size");
_Static_assert(DISCO_MAX_LEN <= DISCO_OPEN_MAX, "a datagram we write must open");

static const uint8_t disco_magic[DISCO_MAGIC_LEN] = {
    DISCO_MAGIC_0, DISCO_MAGIC_1, DISCO_MAGIC_2,
    DISCO_MAGIC_3, DISCO_MAGIC_4, DISCO_MAGIC_5,
};

bool disco_is_message(const uint8_t *p, size_t len)
{
	return len >= DISCO_MIN_LEN && memcmp(p, disco_magic, DISCO_MAGIC_LEN) == 0;
}

const uint8_t *disco_sender_key(const uint8_t *p)
{
	return p + DISCO_MAGIC_LEN;
}

/* X25519 ignores bit 255 of a public key and reduces values from p = 2^255 -
 * 19 up, so some keys have a second spelling. A key made by X25519 never
 * does; refusing the others gives every key one spelling, so a key field
 * changed into another spelling of the sender's key names no peer. */
static bool key_canonical(const uint8_t *k)
{
	if (k[31] & 0x80)
		return false;
	if (k[31] != 0x7f || k[0] < 0xed)
		return true;
	for (int i = 1; i < 31; i++)
		if (k[i] != 0xff)
			return true;
	return false;
}

int disco_shared(uint8_t *shared, const uint8_t *their_pub, const uint8_t *our_priv)
{
	/* libsodium refuses a low-order point (an all-zero X25519 result),
	 * which would give every such peer the same, public, key. */
	if (!key_canonical(their_pub) ||
	    crypto_box_beforenm(shared, their_pub, our_priv) != 0) {
		sodium_memzero(shared, DISCO_SHARED_LEN);
		return -EINVAL;
	}
	return 0;
}

const char *disco_type_name(unsigned type)
{
	switch (type) {
	case DISCO_PING:
		return "PING";
	case DISCO_PONG:
		return "PONG";
	case DISCO_CALL_ME_MAYBE:
		return "CALL_ME_MAYBE";
	case DISCO_BIRTHDAY:
		return "BIRTHDAY";
	}
	return NULL;
}

static size_t addr_len(uint8_t family)
{
	return family == 4 ? 4 : family == 6 ? 16 : 0;
}

/* Writes a at out (room for DISCO_ADDR_MAX_LEN); its length, 0 if a's
 * family is neither 4 nor 6. */
static size_t put_addr(uint8_t *out, const struct disco_addr *a)
{
	size_t n = addr_len(a->family);
	if (n == 0)
		return 0;
	out[0] = a->family;
	be16_put(out + 1, a->port);
	memcpy(out + 3, a->addr, n);
	return 3 + n;
}

/* Reads an addr from b[0..n); its length, or 0 when short or of another
 * family. */
static size_t get_addr(const uint8_t *b, size_t n, struct disco_addr *a)
{
	if (n < 3)
		return 0;
	size_t al = addr_len(b[0]);
	if (al == 0 || n < 3 + al)
		return 0;
	memset(a, 0, sizeof *a);
	a->family = b[0];
	a->port = be16_get(b + 1);
	memcpy(a->addr, b + 3, al);
	return 3 + al;
}

/* m's plaintext into out (DISCO_PLAIN_MAX bytes); its length, 0 if m is
 * invalid. */
static size_t encode_plain(uint8_t *out, const struct disco_msg *m)
{
	size_t n = 2, k;
	out[0] = m->type;
	out[1] = DISCO_VERSION;
	switch (m->type) {
	case DISCO_PING:
		memcpy(out + n, m->txid, DISCO_TXID_LEN);
		n += DISCO_TXID_LEN;
		memcpy(out + n, m->node_key, DISCO_NODE_KEY_LEN);
		return n + DISCO_NODE_KEY_LEN;
	case DISCO_PONG:
		memcpy(out + n, m->txid, DISCO_TXID_LEN);
		n += DISCO_TXID_LEN;
		k = put_addr(out + n, &m->src);
		return k ? n + k : 0;
	case DISCO_CALL_ME_MAYBE:
		if (m->n_eps > DISCO_CALLMEMAYBE_MAX)
			return 0;
		out[n++] = m->n_eps;
		for (unsigned i = 0; i < m->n_eps; i++) {
			if ((k = put_addr(out + n, &m->eps[i])) == 0)
				return 0;
			n += k;
		}
		if (m->nat == DISCO_NAT_UNKNOWN)
			return n;
		if (m->nat > DISCO_NAT_HARD)
			return 0;
		out[n++] = m->nat;
		k = put_addr(out + n, &m->pub);
		return k ? n + k : 0;
	case DISCO_BIRTHDAY:
		if ((k = put_addr(out + n, &m->pub)) == 0)
			return 0;
		n += k;
		be16_put(out + n, m->socks);
		be16_put(out + n + 2, m->probes);
		return n + 4;
	}
	return 0;
}

size_t disco_seal_plain(uint8_t *out, size_t out_cap, const uint8_t *our_pub,
                        const uint8_t *shared, const uint8_t *nonce, const uint8_t *plain,
                        size_t plain_len)
{
	if (plain_len > DISCO_OPEN_MAX - DISCO_MIN_LEN ||
	    out_cap < DISCO_MIN_LEN + plain_len)
		return 0;
	uint8_t *n = out + DISCO_MAGIC_LEN + DISCO_KEY_LEN;
	memcpy(out, disco_magic, DISCO_MAGIC_LEN);
	memcpy(out + DISCO_MAGIC_LEN, our_pub, DISCO_KEY_LEN);
	if (nonce)
		memcpy(n, nonce, DISCO_NONCE_LEN);
	else
		randombytes_buf(n, DISCO_NONCE_LEN);
	if (crypto_box_easy_afternm(out + DISCO_HDR_LEN, plain, plain_len, n, shared) !=
	    0)
		return 0;
	return DISCO_MIN_LEN + plain_len;
}

size_t disco_seal(uint8_t *out, size_t out_cap, const uint8_t *our_pub,
                  const uint8_t *shared, const struct disco_msg *m)
{
	uint8_t plain[DISCO_PLAIN_MAX];
	size_t n = encode_plain(plain, m), r = 0;
	if (n > 0)
		r = disco_seal_plain(out, out_cap, our_pub, shared, NULL, plain, n);
	sodium_memzero(plain, sizeof plain);
	return r;
}

/* The body b[0..n) of a known type and version into m: 0 or -EINVAL. */
static int decode_body(const uint8_t *b, size_t n, struct disco_msg *m)
{
	size_t k;
	switch (m->type) {
	case DISCO_PING:
		if (n < DISCO_TXID_LEN + DISCO_NODE_KEY_LEN)
			return -EINVAL;
		memcpy(m->txid, b, DISCO_TXID_LEN);
		memcpy(m->node_key, b + DISCO_TXID_LEN, DISCO_NODE_KEY_LEN);
		return 0;
	case DISCO_PONG:
		if (n < DISCO_TXID_LEN ||
		    get_addr(b + DISCO_TXID_LEN, n - DISCO_TXID_LEN, &m->src) == 0)
			return -EINVAL;
		memcpy(m->txid, b, DISCO_TXID_LEN);
		return 0;
	case DISCO_CALL_ME_MAYBE:
		if (n < 1 || b[0] > DISCO_CALLMEMAYBE_MAX)
			return -EINVAL;
		size_t off = 1;
		for (unsigned i = 0; i < b[0]; i++) {
			if ((k = get_addr(b + off, n - off, &m->eps[i])) == 0)
				return -EINVAL;
			off += k;
		}
		m->n_eps = b[0];
		/* The trailer, when there is one: a NAT kind we know, then the
		 * public addr. Another first byte is a later addition whose
		 * layout we cannot know: ignored, as bytes after a body are. */
		if (off < n && (b[off] == DISCO_NAT_EASY || b[off] == DISCO_NAT_HARD)) {
			if (get_addr(b + off + 1, n - off - 1, &m->pub) == 0)
				return -EINVAL;
			m->nat = b[off];
		}
		return 0;
	case DISCO_BIRTHDAY:
		if ((k = get_addr(b, n, &m->pub)) == 0 || n - k < 4)
			return -EINVAL;
		m->socks = be16_get(b + k);
		m->probes = be16_get(b + k + 2);
		return 0;
	}
	return -EPROTO;
}

int disco_open(const uint8_t *p, size_t len, const uint8_t *shared, struct disco_msg *m)
{
	memset(m, 0, sizeof *m);
	if (!disco_is_message(p, len) || len > DISCO_OPEN_MAX ||
	    !key_canonical(disco_sender_key(p)))
		return -EBADMSG;
	uint8_t plain[DISCO_OPEN_MAX - DISCO_MIN_LEN];
	size_t n = len - DISCO_MIN_LEN;
	int r;
	if (crypto_box_open_easy_afternm(plain, p + DISCO_HDR_LEN, len - DISCO_HDR_LEN,
	                                 p + DISCO_MAGIC_LEN + DISCO_KEY_LEN,
	                                 shared) != 0) {
		r = -EBADMSG;
	} else if (n < 2) {
		r = -EINVAL;
	} else {
		m->type = plain[0];
		m->version = plain[1];
		if (m->version != DISCO_VERSION || !disco_type_name(m->type))
			r = -EPROTO;
		else
			r = decode_body(plain + 2, n - 2, m);
		if (r == -EINVAL) {
			uint8_t type = m->type, version = m->version;
			memset(m, 0, sizeof *m);
			m->type = type;
			m->version = version;
		}
	}
	sodium_memzero(plain, sizeof plain);
	return r;
}

bool disco_addr_from_sockaddr(struct disco_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof *a);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		a->family = 4;
		a->port = be16_get((const uint8_t *)&s4->sin_port);
		memcpy(a->addr, &s4->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		a->port = be16_get((const uint8_t *)&s6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a->family = 4;
			memcpy(a->addr, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			a->family = 6;
			memcpy(a->addr, &s6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

socklen_t disco_addr_to_sockaddr(const struct disco_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		be16_put((uint8_t *)&s4->sin_port, a->port);
		memcpy(&s4->sin_addr, a->addr, 4);
		return sizeof *s4;
	}
	if (a->family == 6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		be16_put((uint8_t *)&s6->sin6_port, a->port);
		memcpy(&s6->sin6_addr, a->addr, 16);
		return sizeof *s6;
	}
	return 0;
}

bool disco_addr_equal(const struct disco_addr *a, const struct disco_addr *b)
{
	size_t n = addr_len(a->family);
	return n != 0 && a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, n) == 0;
}
