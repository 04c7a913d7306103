/* The tunnel DNS client's codec: an A/AAAA query out, its answer in
 * (RFC 1035 4.1). No state, no I/O. The answer is hostile: see dnsc.h. */
#include <string.h>
#include <sys/socket.h>

#include "node/dns/dnsc.h"
#include "core/util/bytes.h"

#define DNSC_HDR_LEN  12
#define DNSC_NAME_MAX 255 /* wire length of a name, length bytes included */
#define DNSC_FLAG_QR  0x8000
#define DNSC_FLAG_TC  0x0200
#define DNSC_FLAG_RD  0x0100
#define DNSC_CLASS_IN 1

static uint8_t lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

int dnsc_query_build(const char *name, uint16_t id, uint16_t qtype, uint8_t *out,
                     size_t cap)
{
	size_t len = strlen(name);
	if (len && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || cap < DNSC_HDR_LEN + len + 2 + 4)
		return -1;
	memset(out, 0, DNSC_HDR_LEN);
	be16_put(out, id);
	be16_put(out + 2, DNSC_FLAG_RD);
	be16_put(out + 4, 1); /* QDCOUNT */
	size_t w = DNSC_HDR_LEN, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && name[i] != '.')
			continue;
		size_t l = i - start;
		if (l == 0 || l > 63)
			return -1;
		out[w++] = (uint8_t)l;
		memcpy(out + w, name + start, l);
		w += l;
		start = i + 1;
	}
	out[w++] = 0;
	be16_put(out + w, qtype);
	be16_put(out + w + 2, DNSC_CLASS_IN);
	return (int)(w + 4);
}

/* Reads the name at *off into out (lowercase wire form, at most
 * DNSC_NAME_MAX bytes) and moves *off past it. Pointers must point before
 * the label that holds them, and at most DNSC_PTR_HOPS are followed.
 * Returns the name's length or 0 when malformed. */
static size_t read_name(const uint8_t *p, size_t len, size_t *off, uint8_t *out)
{
	size_t pos = *off, w = 0, end = 0;
	unsigned hops = 0;
	for (;;) {
		if (pos >= len)
			return 0;
		uint8_t l = p[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++hops > DNSC_PTR_HOPS)
				return 0;
			size_t to = ((size_t)(l & 0x3f) << 8) | p[pos + 1];
			if (to >= pos) /* forward or self: could loop */
				return 0;
			if (!end)
				end = pos + 2;
			pos = to;
			continue;
		}
		if (l & 0xc0) /* 0x40 and 0x80: reserved label types */
			return 0;
		if (w + 1 + l > DNSC_NAME_MAX || pos + 1 + l > len)
			return 0;
		out[w++] = l;
		for (size_t i = 0; i < l; i++)
			out[w++] = lower(p[pos + 1 + i]);
		pos += 1 + l;
		if (l == 0)
			break;
	}
	*off = end ? end : pos;
	return w;
}

int dnsc_answer_parse(const uint8_t *q, size_t qlen, const uint8_t *p, size_t len,
                      struct dnsc_answer *out)
{
	memset(out, 0, sizeof(*out));
	out->ttl = UINT32_MAX;
	if (qlen < DNSC_HDR_LEN + 5 || len < DNSC_HDR_LEN)
		return -1;
	uint16_t flags = be16_get(p + 2);
	if (be16_get(p) != be16_get(q) || !(flags & DNSC_FLAG_QR) || ((flags >> 11) & 0xf) != 0)
		return -1;
	if (be16_get(p + 4) != 1) /* the question must come back */
		return -1;
	/* The question, byte for byte but for letter case (0x20 bits are
	 * only ever letters in our own query, which has no pointers). */
	size_t qsec = qlen - DNSC_HDR_LEN;
	if (len < DNSC_HDR_LEN + qsec)
		return -1;
	for (size_t i = 0; i < qsec; i++)
		if (lower(p[DNSC_HDR_LEN + i]) != lower(q[DNSC_HDR_LEN + i]))
			return -1;
	uint16_t qtype = be16_get(q + qlen - 4);
	out->rcode = flags & 0xf;
	out->truncated = (flags & DNSC_FLAG_TC) != 0;
	unsigned an = be16_get(p + 6);
	if (an > DNSC_RR_MAX)
		an = DNSC_RR_MAX; /* the rest is not read (64 records are plenty) */
	/* The name answers are for: the question's, then each CNAME target. */
	uint8_t cur[DNSC_NAME_MAX], owner[DNSC_NAME_MAX], target[DNSC_NAME_MAX];
	size_t qoff = DNSC_HDR_LEN;
	size_t cur_len = read_name(q, qlen, &qoff, cur);
	if (!cur_len)
		return -1;
	unsigned cnames = 0;
	size_t off = DNSC_HDR_LEN + qsec;
	for (unsigned i = 0; i < an; i++) {
		size_t ol = read_name(p, len, &off, owner);
		if (!ol || off + 10 > len)
			return -1;
		uint16_t type = be16_get(p + off), cls = be16_get(p + off + 2);
		uint32_t ttl = be32_get(p + off + 4) & 0x7fffffff; /* RFC 2181 8 */
		size_t rdlen = be16_get(p + off + 8);
		off += 10;
		if (off + rdlen > len)
			return -1;
		size_t rd = off;
		off += rdlen;
		bool ours = ol == cur_len && memcmp(owner, cur, ol) == 0;
		if (cls != DNSC_CLASS_IN || !ours)
			continue;
		if (type == DNSC_TYPE_CNAME) {
			size_t toff = rd;
			size_t tl = read_name(p, rd + rdlen, &toff, target);
			if (!tl || toff != rd + rdlen || ++cnames > DNSC_CNAME_HOPS)
				return -1;
			memcpy(cur, target, tl);
			cur_len = tl;
			if (ttl < out->ttl)
				out->ttl = ttl;
			continue;
		}
		if (type != qtype || (type != DNSC_TYPE_A && type != DNSC_TYPE_AAAA))
			continue;
		size_t alen = type == DNSC_TYPE_A ? 4 : 16;
		if (rdlen != alen)
			return -1;
		if (out->n >= DNSC_ADDRS_MAX)
			continue;
		if (ttl < out->ttl)
			out->ttl = ttl;
		struct ns_addr *a = &out->addrs[out->n++];
		memset(a, 0, sizeof(*a));
		a->family = type == DNSC_TYPE_A ? AF_INET : AF_INET6;
		memcpy(a->addr, p + rd, alen);
	}
	return 0;
}
