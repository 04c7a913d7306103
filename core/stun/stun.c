/* STUN codec: see stun.h. */
#include "core/stun/stun.h"
#include "core/util/bytes.h"

#include <errno.h>
#include <string.h>

uint32_t stun_crc32(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
	}
	return ~c;
}

bool stun_is_message(const uint8_t *p, size_t len)
{
	return len >= STUN_HDR_LEN && (p[0] & 0xC0) == 0 &&
	       (size_t)be16_get(p + 2) + STUN_HDR_LEN == len && (be16_get(p + 2) & 3) == 0 &&
	       be32_get(p + 4) == STUN_MAGIC_COOKIE;
}

/* Decodes a (XOR-)MAPPED-ADDRESS value. */
static int parse_addr(const uint8_t *v, size_t n, bool xor, const uint8_t *id,
                      struct stun_addr *a)
{
	if (n < 4 || v[0] != 0)
		return -EBADMSG;
	memset(a, 0, sizeof *a);
	a->port = be16_get(v + 2);
	size_t alen;
	if (v[1] == 0x01) {
		a->family = 4;
		alen = 4;
	} else if (v[1] == 0x02) {
		a->family = 6;
		alen = 16;
	} else {
		return -EBADMSG;
	}
	if (n < 4 + alen)
		return -EBADMSG;
	memcpy(a->addr, v + 4, alen);
	if (xor) {
		/* Port with the cookie's top half; address with cookie || txid. */
		a->port ^= (uint16_t)(STUN_MAGIC_COOKIE >> 16);
		for (size_t i = 0; i < alen; i++)
			a->addr[i] ^= id[i];
	}
	return 0;
}

static bool known_attr(uint16_t t)
{
	switch (t) {
	case STUN_A_MAPPED_ADDRESS:
	case STUN_A_CHANGE_REQUEST:
	case STUN_A_USERNAME:
	case STUN_A_MESSAGE_INTEGRITY:
	case STUN_A_ERROR_CODE:
	case STUN_A_REALM:
	case STUN_A_NONCE:
	case STUN_A_XOR_MAPPED_ADDRESS:
	case 0x0024: /* PRIORITY (ICE) */
	case 0x0025: /* USE-CANDIDATE */
		return true;
	}
	return t >= 0x8000; /* comprehension-optional */
}

int stun_parse(const uint8_t *p, size_t len, struct stun_msg *m)
{
	memset(m, 0, sizeof *m);
	if (len < STUN_HDR_LEN || (p[0] & 0xC0) != 0)
		return -EBADMSG;
	size_t alen = be16_get(p + 2);
	if ((alen & 3) != 0 || alen + STUN_HDR_LEN != len)
		return -EBADMSG;
	m->type = be16_get(p);
	m->classic = be32_get(p + 4) != STUN_MAGIC_COOKIE;
	memcpy(m->id, p + 4, 16);
	size_t off = STUN_HDR_LEN;
	bool have_xor = false;
	while (off < len) {
		if (len - off < 4)
			return -EBADMSG;
		uint16_t t = be16_get(p + off);
		size_t n = be16_get(p + off + 2);
		size_t padded = (n + 3) & ~(size_t)3;
		if (padded > len - off - 4)
			return -EBADMSG;
		const uint8_t *v = p + off + 4;
		if (m->has_fingerprint)
			return -EBADMSG; /* FINGERPRINT must be the last attribute */
		if (t == STUN_A_FINGERPRINT) {
			if (n != 4)
				return -EBADMSG;
			m->has_fingerprint = true;
			m->fingerprint_ok =
			    (stun_crc32(p, off) ^ STUN_FINGERPRINT_X) == be32_get(v);
		} else if (m->has_integrity) {
			/* after MESSAGE-INTEGRITY: ignored */
		} else if (t == STUN_A_MESSAGE_INTEGRITY) {
			if (n != STUN_INTEGRITY_LEN)
				return -EBADMSG;
			m->has_integrity = true;
			m->integrity_off = off;
		} else if (t == STUN_A_XOR_MAPPED_ADDRESS || t == 0x8020) {
			/* 0x8020: the pre-RFC code point some servers still send */
			if (!have_xor) {
				if (parse_addr(v, n, true, m->id, &m->mapped) < 0)
					return -EBADMSG;
				have_xor = m->has_mapped = m->mapped_xor = true;
			}
		} else if (t == STUN_A_MAPPED_ADDRESS) {
			if (!m->has_mapped) {
				if (parse_addr(v, n, false, m->id, &m->mapped) < 0)
					return -EBADMSG;
				m->has_mapped = true;
			}
		} else if (t == STUN_A_CHANGE_REQUEST) {
			if (n != 4)
				return -EBADMSG;
			m->change_flags = be32_get(v);
		} else if (t == STUN_A_ERROR_CODE) {
			if (n < 4)
				return -EBADMSG;
			m->error_code = (uint16_t)((v[2] & 7) * 100 + v[3]);
		} else if (t == STUN_A_SOFTWARE) {
			m->software = v;
			m->software_len = n;
		} else if (t == STUN_A_USERNAME) {
			m->username = v;
			m->username_len = n;
		} else if (t == STUN_A_REALM) {
			m->realm = v;
			m->realm_len = n;
		} else if (t == STUN_A_NONCE) {
			m->nonce = v;
			m->nonce_len = n;
		} else if (!known_attr(t) && !m->unknown_required) {
			m->unknown_required = t;
		}
		off += 4 + padded;
	}
	return 0;
}

/* Appends an attribute at *off (zero padding); false if it does not fit. */
static bool put_attr(uint8_t *out, size_t cap, size_t *off, uint16_t t, const void *v,
                     size_t n)
{
	size_t padded = (n + 3) & ~(size_t)3;
	if (n > 0xFFFF || *off + 4 + padded > cap)
		return false;
	be16_put(out + *off, t);
	be16_put(out + *off + 2, (uint16_t)n);
	if (n)
		memcpy(out + *off + 4, v, n);
	memset(out + *off + 4 + n, 0, padded - n);
	*off += 4 + padded;
	return true;
}

static bool put_fingerprint(uint8_t *out, size_t cap, size_t *off)
{
	if (*off + 8 > cap)
		return false;
	be16_put(out + 2, (uint16_t)(*off + 8 - STUN_HDR_LEN));
	uint8_t v[4];
	be32_put(v, stun_crc32(out, *off) ^ STUN_FINGERPRINT_X);
	return put_attr(out, cap, off, STUN_A_FINGERPRINT, v, 4);
}

static size_t finish(uint8_t *out, size_t off)
{
	be16_put(out + 2, (uint16_t)(off - STUN_HDR_LEN));
	return off;
}

size_t stun_binding_request(uint8_t *out, size_t cap, const uint8_t *txid,
                            const char *software)
{
	if (cap < STUN_HDR_LEN)
		return 0;
	be16_put(out, STUN_BINDING_REQUEST);
	be16_put(out + 2, 0);
	be32_put(out + 4, STUN_MAGIC_COOKIE);
	memcpy(out + 8, txid, STUN_TXID_LEN);
	size_t off = STUN_HDR_LEN;
	if (software &&
	    !put_attr(out, cap, &off, STUN_A_SOFTWARE, software, strlen(software)))
		return 0;
	if (!put_fingerprint(out, cap, &off))
		return 0;
	return finish(out, off);
}

static size_t header(uint8_t *out, size_t cap, uint16_t type, const struct stun_msg *req)
{
	if (cap < STUN_HDR_LEN)
		return 0;
	be16_put(out, type);
	be16_put(out + 2, 0);
	memcpy(out + 4, req->id, 16);
	return STUN_HDR_LEN;
}

size_t stun_binding_response(uint8_t *out, size_t cap, const struct stun_msg *req,
                             const struct stun_addr *mapped, const char *software)
{
	size_t off = header(out, cap, STUN_BINDING_SUCCESS, req);
	if (!off)
		return 0;
	size_t alen = mapped->family == 6 ? 16 : 4;
	uint8_t v[20];
	v[0] = 0;
	v[1] = mapped->family == 6 ? 0x02 : 0x01;
	if (req->classic) {
		be16_put(v + 2, mapped->port);
		memcpy(v + 4, mapped->addr, alen);
		if (!put_attr(out, cap, &off, STUN_A_MAPPED_ADDRESS, v, 4 + alen))
			return 0;
		if (software && !put_attr(out, cap, &off, STUN_A_SOFTWARE, software,
		                          strlen(software)))
			return 0;
		return finish(out, off);
	}
	be16_put(v + 2, mapped->port ^ (uint16_t)(STUN_MAGIC_COOKIE >> 16));
	for (size_t i = 0; i < alen; i++)
		v[4 + i] = mapped->addr[i] ^ req->id[i];
	if (!put_attr(out, cap, &off, STUN_A_XOR_MAPPED_ADDRESS, v, 4 + alen))
		return 0;
	if (software &&
	    !put_attr(out, cap, &off, STUN_A_SOFTWARE, software, strlen(software)))
		return 0;
	if (!put_fingerprint(out, cap, &off))
		return 0;
	return finish(out, off);
}

size_t stun_error_response(uint8_t *out, size_t cap, const struct stun_msg *req,
                           uint16_t code, const char *reason)
{
	size_t off = header(out, cap, STUN_BINDING_ERROR, req);
	if (!off)
		return 0;
	uint8_t v[4 + 128];
	size_t rn = strlen(reason);
	if (rn > 128)
		rn = 128;
	v[0] = v[1] = 0;
	v[2] = (uint8_t)(code / 100);
	v[3] = (uint8_t)(code % 100);
	memcpy(v + 4, reason, rn);
	if (!put_attr(out, cap, &off, STUN_A_ERROR_CODE, v, 4 + rn))
		return 0;
	if (code == 420 && req->unknown_required) {
		uint8_t u[2];
		be16_put(u, req->unknown_required);
		if (!put_attr(out, cap, &off, 0x000A, u, 2))
			return 0;
	}
	if (!req->classic && !put_fingerprint(out, cap, &off))
		return 0;
	return finish(out, off);
}
