/* MagicDNS, the pure part: parse one DNS query (RFC 1035 4.1) and answer it
 * for the mesh, or say it must be forwarded or dropped. Every query is
 * hostile: all reads are bounds-checked, compression pointers in the
 * question are refused, one question only. No state, no I/O. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "node/dns/magicdns.h"
#include "core/util/bytes.h"
#include "node/dns/magicdns_int.h"

#define MAGICDNS_FLAG_QR   0x8000
#define MAGICDNS_FLAG_AA   0x0400
#define MAGICDNS_FLAG_TC   0x0200
#define MAGICDNS_FLAG_RD   0x0100
#define MAGICDNS_FLAG_RA   0x0080
#define MAGICDNS_OPCODE(f) (((f) >> 11) & 0xf)

#define MAGICDNS_ADDRS_MAX  8
#define MAGICDNS_LABELS_MAX 128 /* a 255-byte name has at most 127 labels */

/* A parsed query: offsets into the message, nothing copied. */
struct magicdns_query {
	uint16_t id, flags;
	size_t qend; /* offset just past QTYPE/QCLASS */
	size_t nlabels;
	uint16_t loff[MAGICDNS_LABELS_MAX]; /* offset of each label's length byte */
	uint16_t qtype, qclass;
};

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Parses the question name at off: labels only (no pointers: a query has
 * nothing to point back to), each <= 63 bytes, the whole <= 255. Returns
 * the offset after the root label or 0 when malformed. */
static size_t parse_name(const uint8_t *p, size_t len, size_t off,
                         struct magicdns_query *qq)
{
	size_t start = off;
	qq->nlabels = 0;
	for (;;) {
		if (off >= len)
			return 0;
		uint8_t l = p[off];
		if (l == 0)
			break;
		/* Over 63: 0xC0 pointers and the reserved 01/10 kinds. */
		if (l > MAGICDNS_LABEL_MAX)
			return 0;
		if (qq->nlabels >= MAGICDNS_LABELS_MAX)
			return 0;
		qq->loff[qq->nlabels++] = (uint16_t)off;
		off += 1 + (size_t)l;
		if (off - start + 1 > MAGICDNS_NAME_MAX)
			return 0;
	}
	off++;
	if (off - start > MAGICDNS_NAME_MAX)
		return 0;
	return off;
}

/* 1: parsed; 0: malformed, *rcode says how to answer; -1: drop. */
static int parse_query(const uint8_t *p, size_t len, struct magicdns_query *qq,
                       int *rcode)
{
	if (len < MAGICDNS_HDR_LEN)
		return -1;
	qq->id = be16_get(p);
	qq->flags = be16_get(p + 2);
	if (qq->flags & MAGICDNS_FLAG_QR)
		return -1;
	*rcode = MAGICDNS_RCODE_FORMERR;
	if (MAGICDNS_OPCODE(qq->flags) != 0) {
		*rcode = MAGICDNS_RCODE_NOTIMP;
		return 0;
	}
	if (be16_get(p + 4) != 1)
		return 0;
	size_t off = parse_name(p, len, MAGICDNS_HDR_LEN, qq);
	if (off == 0 || len - off < 4)
		return 0;
	qq->qtype = be16_get(p + off);
	qq->qclass = be16_get(p + off + 2);
	qq->qend = off + 4;
	return 1;
}

int magicdns_question_len(const uint8_t *q, size_t qlen)
{
	struct magicdns_query qq;
	int rcode;
	if (parse_query(q, qlen, &qq, &rcode) != 1)
		return -1;
	return (int)(qq.qend - MAGICDNS_HDR_LEN);
}

/* Header of a response to qq; counts filled in by the caller. */
static void put_header(uint8_t *out, const struct magicdns_query *qq, bool aa, bool ra,
                       int rcode, uint16_t qdcount)
{
	uint16_t f = MAGICDNS_FLAG_QR | (uint16_t)(qq->flags & 0x7800) |
	             (uint16_t)(qq->flags & MAGICDNS_FLAG_RD) | (uint16_t)(rcode & 0xf);
	if (aa)
		f |= MAGICDNS_FLAG_AA;
	if (ra)
		f |= MAGICDNS_FLAG_RA;
	memset(out, 0, MAGICDNS_HDR_LEN);
	be16_put(out, qq->id);
	be16_put(out + 2, f);
	be16_put(out + 4, qdcount);
}

/* A header-only error (the question could not be read). */
static int header_error(const struct magicdns_query *qq, int rcode, bool ra, uint8_t *out,
                        size_t cap)
{
	if (cap < MAGICDNS_HDR_LEN)
		return -1;
	put_header(out, qq, false, ra, rcode, 0);
	return MAGICDNS_HDR_LEN;
}

int magicdns_error_reply(const uint8_t *q, size_t qlen, int rcode, bool ra, uint8_t *out,
                         size_t cap)
{
	struct magicdns_query qq;
	int rc;
	if (parse_query(q, qlen, &qq, &rc) != 1 || cap < qq.qend)
		return -1;
	put_header(out, &qq, false, ra, rcode, 1);
	memcpy(out + MAGICDNS_HDR_LEN, q + MAGICDNS_HDR_LEN, qq.qend - MAGICDNS_HDR_LEN);
	return (int)qq.qend;
}

/* ---- names ---- */

struct magicdns_labels {
	const char *s[MAGICDNS_LABELS_MAX];
	size_t len[MAGICDNS_LABELS_MAX];
	size_t n;
};

/* Splits "mesh.internal." into labels; false if empty or malformed. */
static bool split_domain(const char *d, struct magicdns_labels *dl)
{
	dl->n = 0;
	if (d == NULL)
		return false;
	size_t total = 0;
	while (*d) {
		const char *dot = strchr(d, '.');
		size_t l = dot ? (size_t)(dot - d) : strlen(d);
		if (l == 0 || l > MAGICDNS_LABEL_MAX || dl->n >= MAGICDNS_LABELS_MAX)
			return false;
		total += l + 1;
		dl->s[dl->n] = d;
		dl->len[dl->n++] = l;
		d += l;
		if (*d == '.')
			d++;
	}
	return dl->n > 0 && total + 1 <= MAGICDNS_NAME_MAX;
}

/* Question label i equals s (ASCII case-insensitive)? */
static bool label_eq(const uint8_t *p, const struct magicdns_query *qq, size_t i,
                     const char *s, size_t slen)
{
	const uint8_t *l = p + qq->loff[i];
	if (l[0] != slen)
		return false;
	for (size_t k = 0; k < slen; k++)
		if (lower((char)l[1 + k]) != lower(s[k]))
			return false;
	return true;
}

/* The last dl->n labels of the question are the domain? */
static bool ends_with(const uint8_t *p, const struct magicdns_query *qq,
                      const struct magicdns_labels *dl)
{
	if (dl->n == 0 || qq->nlabels < dl->n)
		return false;
	size_t base = qq->nlabels - dl->n;
	for (size_t i = 0; i < dl->n; i++)
		if (!label_eq(p, qq, base + i, dl->s[i], dl->len[i]))
			return false;
	return true;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Question label i as a lowercase C string into out[64]; false if it holds
 * anything a mesh name cannot (so no NUL or dot reaches the lookup). */
static bool label_str(const uint8_t *p, const struct magicdns_query *qq, size_t i,
                      char *out)
{
	const uint8_t *l = p + qq->loff[i];
	for (size_t k = 0; k < l[0]; k++) {
		char c = lower((char)l[1 + k]);
		if (!host_char(c))
			return false;
		out[k] = c;
	}
	out[l[0]] = '\0';
	return l[0] > 0;
}

/* "2.0.64.100.in-addr.arpa" or the 34-label ip6.arpa form into a. */
static bool parse_reverse(const uint8_t *p, const struct magicdns_query *qq,
                          struct ns_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (qq->nlabels == 6 && label_eq(p, qq, 4, "in-addr", 7) &&
	    label_eq(p, qq, 5, "arpa", 4)) {
		for (size_t i = 0; i < 4; i++) {
			const uint8_t *l = p + qq->loff[i];
			if (l[0] < 1 || l[0] > 3 || (l[0] > 1 && l[1] == '0'))
				return false;
			unsigned v = 0;
			for (size_t k = 0; k < l[0]; k++) {
				if (l[1 + k] < '0' || l[1 + k] > '9')
					return false;
				v = v * 10 + (unsigned)(l[1 + k] - '0');
			}
			if (v > 255)
				return false;
			a->addr[3 - i] = (uint8_t)v;
		}
		a->family = AF_INET;
		return true;
	}
	if (qq->nlabels == 34 && label_eq(p, qq, 32, "ip6", 3) &&
	    label_eq(p, qq, 33, "arpa", 4)) {
		uint8_t nib[32];
		for (size_t i = 0; i < 32; i++) {
			const uint8_t *l = p + qq->loff[i];
			if (l[0] != 1)
				return false;
			char c = lower((char)l[1]);
			if (c >= '0' && c <= '9')
				nib[i] = (uint8_t)(c - '0');
			else if (c >= 'a' && c <= 'f')
				nib[i] = (uint8_t)(c - 'a' + 10);
			else
				return false;
		}
		for (size_t i = 0; i < 16; i++)
			a->addr[i] = (uint8_t)((nib[31 - 2 * i] << 4) | nib[30 - 2 * i]);
		a->family = AF_INET6;
		return true;
	}
	return false;
}

/* ---- building the answer ---- */

struct magicdns_out {
	uint8_t *p;
	size_t cap, len;
	uint16_t ancount;
	bool truncated;
	uint32_t ttl;
};

/* Appends one RR for the question name (a pointer to offset 12). */
static void put_rr(struct magicdns_out *o, uint16_t type, const uint8_t *rdata,
                   size_t rdlen)
{
	size_t need = 2 + 10 + rdlen;
	if (o->truncated || o->cap - o->len < need) {
		o->truncated = true;
		return;
	}
	uint8_t *w = o->p + o->len;
	be16_put(w, 0xC000 | MAGICDNS_HDR_LEN);
	be16_put(w + 2, type);
	be16_put(w + 4, MAGICDNS_CLASS_IN);
	be16_put(w + 6, (uint16_t)(o->ttl >> 16));
	be16_put(w + 8, (uint16_t)o->ttl);
	be16_put(w + 10, (uint16_t)rdlen);
	memcpy(w + 12, rdata, rdlen);
	o->len += need;
	o->ancount++;
}

/* Starts a response with the question echoed as received. -1 if cap is
 * too small for that. */
static int start_reply(struct magicdns_out *o, const struct magicdns_config *cfg,
                       const uint8_t *q, const struct magicdns_query *qq, uint8_t *out,
                       size_t cap)
{
	if (cap < qq->qend)
		return -1;
	o->p = out;
	o->cap = cap;
	o->len = qq->qend;
	o->ancount = 0;
	o->truncated = false;
	o->ttl = cfg->ttl ? cfg->ttl : 60;
	memcpy(out + MAGICDNS_HDR_LEN, q + MAGICDNS_HDR_LEN, qq->qend - MAGICDNS_HDR_LEN);
	return 0;
}

static int finish_reply(struct magicdns_out *o, const struct magicdns_config *cfg,
                        const struct magicdns_query *qq, int rcode)
{
	put_header(o->p, qq, true, cfg->forward, rcode, 1);
	be16_put(o->p + 6, o->ancount);
	if (o->truncated)
		o->p[2] |= MAGICDNS_FLAG_TC >> 8;
	return (int)o->len;
}

static bool class_ok(const struct magicdns_query *qq)
{
	return qq->qclass == MAGICDNS_CLASS_IN || qq->qclass == MAGICDNS_TYPE_ANY;
}

/* A / AAAA (or both for ANY) for addresses a[0..n). */
static void put_addrs(struct magicdns_out *o, const struct magicdns_query *qq,
                      const struct ns_addr *a, size_t n)
{
	if (!class_ok(qq))
		return;
	bool want4 = qq->qtype == MAGICDNS_TYPE_A || qq->qtype == MAGICDNS_TYPE_ANY;
	bool want6 = qq->qtype == MAGICDNS_TYPE_AAAA || qq->qtype == MAGICDNS_TYPE_ANY;
	for (size_t i = 0; i < n; i++) {
		if (a[i].family == AF_INET && want4)
			put_rr(o, MAGICDNS_TYPE_A, a[i].addr, 4);
		else if (a[i].family == AF_INET6 && want6)
			put_rr(o, MAGICDNS_TYPE_AAAA, a[i].addr, 16);
	}
}

/* PTR target "label.<domain>." in wire form; 0 if it does not fit. */
static size_t ptr_name(const char *label, const struct magicdns_labels *dl, uint8_t *w,
                       size_t cap)
{
	size_t l = strlen(label), len = 0;
	if (l == 0 || l > MAGICDNS_LABEL_MAX)
		return 0;
	for (size_t k = 0; k < l; k++)
		if (!host_char(lower(label[k])))
			return 0;
	if (cap < l + 2)
		return 0;
	w[len++] = (uint8_t)l;
	for (size_t k = 0; k < l; k++)
		w[len++] = (uint8_t)lower(label[k]);
	for (size_t i = 0; i < dl->n; i++) {
		if (cap - len < dl->len[i] + 2)
			return 0;
		w[len++] = (uint8_t)dl->len[i];
		for (size_t k = 0; k < dl->len[i]; k++)
			w[len++] = (uint8_t)lower(dl->s[i][k]);
	}
	w[len++] = 0;
	return len;
}

/* Reverse lookups of mesh addresses. 0: not ours (forward). */
static int answer_ptr(const struct magicdns_config *cfg, const uint8_t *q,
                      const struct magicdns_query *qq, const struct magicdns_labels *dl,
                      uint8_t *out, size_t cap, enum magicdns_kind *kind)
{
	struct ns_addr a;
	char label[65];
	if (cfg->reverse == NULL || !parse_reverse(q, qq, &a))
		return 0;
	memset(label, 0, sizeof(label));
	if (!cfg->reverse(cfg->ctx, &a, label, 64))
		return 0;
	label[64] = '\0';
	uint8_t rdata[MAGICDNS_NAME_MAX];
	size_t rdlen = ptr_name(label, dl, rdata, sizeof(rdata));
	if (rdlen == 0)
		return 0;
	struct magicdns_out o;
	if (start_reply(&o, cfg, q, qq, out, cap) < 0) {
		*kind = MAGICDNS_KIND_DROP;
		return -1;
	}
	if (class_ok(qq) &&
	    (qq->qtype == MAGICDNS_TYPE_PTR || qq->qtype == MAGICDNS_TYPE_ANY))
		put_rr(&o, MAGICDNS_TYPE_PTR, rdata, rdlen);
	*kind = MAGICDNS_KIND_ANSWER;
	return finish_reply(&o, cfg, qq, MAGICDNS_RCODE_NOERROR);
}

int magicdns_answer_kind(const struct magicdns_config *cfg, const uint8_t *q, size_t qlen,
                         uint8_t *out, size_t cap, enum magicdns_kind *kind)
{
	struct magicdns_query qq;
	int rcode = MAGICDNS_RCODE_FORMERR;
	*kind = MAGICDNS_KIND_DROP;
	if (cfg == NULL || q == NULL || out == NULL)
		return -1;
	int r = parse_query(q, qlen, &qq, &rcode);
	if (r < 0)
		return -1;
	if (r == 0) {
		r = header_error(&qq, rcode, cfg->forward, out, cap);
		if (r > 0)
			*kind = MAGICDNS_KIND_FORMERR;
		return r;
	}

	struct magicdns_labels dl;
	bool have_domain = split_domain(cfg->domain, &dl);
	if (!have_domain)
		dl.n = 0;
	bool under = have_domain && ends_with(q, &qq, &dl);
	size_t n = qq.nlabels;
	char label[MAGICDNS_LABEL_MAX + 1];

	/* A mesh name: "label" alone or "label.<domain>". */
	bool candidate =
	    (n == 1 || (under && n == dl.n + 1)) && label_str(q, &qq, 0, label);
	size_t naddr = 0;
	struct ns_addr addrs[MAGICDNS_ADDRS_MAX];
	if (candidate && cfg->lookup) {
		naddr = cfg->lookup(cfg->ctx, label, addrs, MAGICDNS_ADDRS_MAX);
		if (naddr > MAGICDNS_ADDRS_MAX)
			naddr = MAGICDNS_ADDRS_MAX;
	}

	if (!under && naddr == 0) {
		*kind = MAGICDNS_KIND_FORWARD;
		r = answer_ptr(cfg, q, &qq, &dl, out, cap, kind);
		return r;
	}

	struct magicdns_out o;
	if (start_reply(&o, cfg, q, &qq, out, cap) < 0)
		return -1;
	if (naddr > 0) {
		put_addrs(&o, &qq, addrs, naddr);
		*kind = MAGICDNS_KIND_ANSWER;
		return finish_reply(&o, cfg, &qq, MAGICDNS_RCODE_NOERROR);
	}
	if (n == dl.n) { /* the domain itself: it exists, no records of ours */
		*kind = MAGICDNS_KIND_ANSWER;
		return finish_reply(&o, cfg, &qq, MAGICDNS_RCODE_NOERROR);
	}
	*kind = MAGICDNS_KIND_NXDOMAIN;
	return finish_reply(&o, cfg, &qq, MAGICDNS_RCODE_NXDOMAIN);
}

int magicdns_answer(const struct magicdns_config *cfg, const uint8_t *q, size_t qlen,
                    uint8_t *out, size_t cap)
{
	enum magicdns_kind kind;
	return magicdns_answer_kind(cfg, q, qlen, out, cap, &kind);
}
