/* MagicDNS, the pure part (magicdns_answer): A / AAAA for "web",
 * "WEB.mesh.internal." and "web.mesh.internal"; NXDOMAIN for unknown names
 * under the domain; 0 (forward) for other names; PTR for mesh addresses
 * (IPv4 and IPv6); NOERROR empty for other types; FORMERR for malformed
 * questions (pointers, long labels and names, qdcount 0 or 2, truncated
 * question); drop for short headers and responses. Every answer is parsed
 * back by a small independent checker. The service part (netstack,
 * forwarding) is in test_magicdns_svc.c when the netstack has it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "node/dns/magicdns.h"
#include "node/dns/magicdns_int.h"

/* ---- the fake map ---- */

static size_t t_lookup(void *ctx, const char *label, struct ns_addr *out, size_t max)
{
	size_t n = 0;
	(void)ctx;
	if (strcmp(label, "web") == 0) {
		if (n < max) {
			out[n].family = AF_INET;
			inet_pton(AF_INET, "100.64.0.2", out[n++].addr);
		}
		if (n < max) {
			out[n].family = AF_INET6;
			inet_pton(AF_INET6, "fd7a:115c:a1e0::2", out[n++].addr);
		}
	} else if (strcmp(label, "db") == 0 && max > 0) {
		out[n].family = AF_INET;
		inet_pton(AF_INET, "100.64.0.3", out[n++].addr);
	}
	return n;
}

static bool t_reverse(void *ctx, const struct ns_addr *a, char *out, size_t cap)
{
	uint8_t w4[4], w6[16];
	(void)ctx;
	inet_pton(AF_INET, "100.64.0.2", w4);
	inet_pton(AF_INET6, "fd7a:115c:a1e0::2", w6);
	if ((a->family == AF_INET && memcmp(a->addr, w4, 4) == 0) ||
	    (a->family == AF_INET6 && memcmp(a->addr, w6, 16) == 0)) {
		snprintf(out, cap, "web");
		return true;
	}
	return false;
}

static struct magicdns_config cfg = {
    .domain = "mesh.internal",
    .lookup = t_lookup,
    .reverse = t_reverse,
    .forward = true,
    .ttl = 0,
};

/* ---- building queries ---- */

/* Appends "a.b.c" (trailing dot optional) as labels. */
static size_t put_name(uint8_t *w, const char *name)
{
	size_t len = 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		w[len++] = (uint8_t)l;
		memcpy(w + len, name, l);
		len += l;
		name += l;
		if (*name == '.')
			name++;
	}
	w[len++] = 0;
	return len;
}

static size_t make_query(uint8_t *b, uint16_t id, const char *name, uint16_t qtype)
{
	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8);
	b[1] = (uint8_t)id;
	b[2] = 0x01; /* RD */
	b[5] = 1;    /* qdcount */
	size_t len = 12 + put_name(b + 12, name);
	b[len++] = (uint8_t)(qtype >> 8);
	b[len++] = (uint8_t)qtype;
	b[len++] = 0;
	b[len++] = 1; /* IN */
	return len;
}

/* ---- an independent response checker ---- */

struct rr {
	uint16_t type, cls;
	uint32_t ttl;
	uint8_t rdata[256];
	size_t rdlen;
	char name[256];   /* owner name, dotted */
	char target[256]; /* PTR target, dotted */
};

struct resp {
	uint16_t id, flags, qd, an, ns, ar;
	char qname[256];
	uint16_t qtype, qclass;
	struct rr rrs[16];
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* Reads a name with pointers (legal in responses) into dotted form. */
static size_t read_name(const uint8_t *p, size_t len, size_t off, char *out)
{
	size_t end = 0, o = 0;
	int hops = 0;
	out[0] = '\0';
	for (;;) {
		assert_true(off < len);
		uint8_t l = p[off];
		if ((l & 0xC0) == 0xC0) {
			assert_true(off + 1 < len);
			if (end == 0)
				end = off + 2;
			off = (size_t)((l & 0x3f) << 8 | p[off + 1]);
			assert_true(++hops < 10);
			continue;
		}
		assert_true(l <= 63);
		if (l == 0) {
			if (end == 0)
				end = off + 1;
			break;
		}
		assert_true(off + 1 + l <= len);
		assert_true(o + l + 2 < 256);
		memcpy(out + o, p + off + 1, l);
		o += l;
		out[o++] = '.';
		out[o] = '\0';
		off += 1 + l;
	}
	return end;
}

static void parse_resp(const uint8_t *p, size_t len, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	assert_true(len >= 12);
	r->id = rd16(p);
	r->flags = rd16(p + 2);
	r->qd = rd16(p + 4);
	r->an = rd16(p + 6);
	r->ns = rd16(p + 8);
	r->ar = rd16(p + 10);
	assert_true(r->flags & 0x8000);
	size_t off = 12;
	if (r->qd == 1) {
		off = read_name(p, len, off, r->qname);
		assert_true(off + 4 <= len);
		r->qtype = rd16(p + off);
		r->qclass = rd16(p + off + 2);
		off += 4;
	}
	assert_true(r->an <= 16);
	for (size_t i = 0; i < r->an; i++) {
		struct rr *x = &r->rrs[i];
		off = read_name(p, len, off, x->name);
		assert_true(off + 10 <= len);
		x->type = rd16(p + off);
		x->cls = rd16(p + off + 2);
		x->ttl = (uint32_t)rd16(p + off + 4) << 16 | rd16(p + off + 6);
		x->rdlen = rd16(p + off + 8);
		off += 10;
		assert_true(off + x->rdlen <= len);
		assert_true(x->rdlen <= sizeof(x->rdata));
		memcpy(x->rdata, p + off, x->rdlen);
		if (x->type == 12)
			assert_int_equal(read_name(p, len, off, x->target),
			                 off + x->rdlen);
		off += x->rdlen;
	}
	assert_int_equal(off, len);
}

static int rcode(const struct resp *r)
{
	return r->flags & 0xf;
}

/* Asks name/qtype; returns magicdns_answer's result, response parsed into r. */
static int ask(const char *name, uint16_t qtype, struct resp *r)
{
	uint8_t q[600], out[512];
	size_t ql = make_query(q, 0x1234, name, qtype);
	int n = magicdns_answer(&cfg, q, ql, out, sizeof(out));
	if (n > 0) {
		parse_resp(out, (size_t)n, r);
		assert_int_equal(r->id, 0x1234);
		assert_true(r->flags & 0x0100); /* RD echoed */
		assert_true(r->flags & 0x0080); /* RA: we forward */
		assert_int_equal(r->qd, 1);
		assert_int_equal(r->qtype, qtype);
		assert_int_equal(r->qclass, 1);
	}
	return n;
}

static void check_a_aaaa(const char *name)
{
	struct resp r;
	char want[256];
	uint8_t a4[4], a6[16];
	inet_pton(AF_INET, "100.64.0.2", a4);
	inet_pton(AF_INET6, "fd7a:115c:a1e0::2", a6);
	snprintf(want, sizeof(want), "%s%s", name,
	         name[strlen(name) - 1] == '.' ? "" : ".");

	assert_true(ask(name, MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_true(r.flags & 0x0400);      /* AA */
	assert_string_equal(r.qname, want); /* echoed as asked */
	assert_int_equal(r.an, 1);
	assert_int_equal(r.rrs[0].type, MAGICDNS_TYPE_A);
	assert_int_equal(r.rrs[0].cls, 1);
	assert_int_equal(r.rrs[0].ttl, 60);
	assert_string_equal(r.rrs[0].name, want);
	assert_int_equal(r.rrs[0].rdlen, 4);
	assert_memory_equal(r.rrs[0].rdata, a4, 4);

	assert_true(ask(name, MAGICDNS_TYPE_AAAA, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 1);
	assert_int_equal(r.rrs[0].type, MAGICDNS_TYPE_AAAA);
	assert_int_equal(r.rrs[0].rdlen, 16);
	assert_memory_equal(r.rrs[0].rdata, a6, 16);
}

static void test_a_aaaa_for_mesh_names(void **state)
{
	(void)state;
	check_a_aaaa("web");
	check_a_aaaa("WEB.mesh.internal.");
	check_a_aaaa("web.mesh.internal");
	check_a_aaaa("Web.MESH.Internal");
}

static void test_any_gives_both_and_db_has_no_aaaa(void **state)
{
	struct resp r;
	(void)state;
	assert_true(ask("web.mesh.internal", MAGICDNS_TYPE_ANY, &r) > 0);
	assert_int_equal(r.an, 2);
	assert_true(ask("db", MAGICDNS_TYPE_AAAA, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 0);
}

static void test_nxdomain_under_domain(void **state)
{
	struct resp r;
	(void)state;
	assert_true(ask("nope.mesh.internal", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(rcode(&r), MAGICDNS_RCODE_NXDOMAIN);
	assert_int_equal(r.an, 0);
	assert_string_equal(r.qname, "nope.mesh.internal.");
	assert_true(ask("a.web.mesh.internal", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(rcode(&r), MAGICDNS_RCODE_NXDOMAIN);
	assert_true(ask("we\\b.mesh.internal", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(rcode(&r), MAGICDNS_RCODE_NXDOMAIN);
	/* The domain itself exists. */
	assert_true(ask("mesh.internal", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 0);
}

static void test_forward_other_names(void **state)
{
	struct resp r;
	(void)state;
	assert_int_equal(ask("example.com", MAGICDNS_TYPE_A, &r), 0);
	assert_int_equal(ask("nope", MAGICDNS_TYPE_A, &r), 0);
	assert_int_equal(ask("web.example.com", MAGICDNS_TYPE_A, &r), 0);
	assert_int_equal(ask("internal", MAGICDNS_TYPE_A, &r), 0);
	assert_int_equal(ask("9.9.9.9.in-addr.arpa", MAGICDNS_TYPE_PTR, &r), 0);
	assert_int_equal(ask("", MAGICDNS_TYPE_A, &r), 0);

	/* No domain: only bare mesh names are ours. */
	cfg.domain = NULL;
	assert_int_equal(ask("web.mesh.internal", MAGICDNS_TYPE_A, &r), 0);
	assert_true(ask("web", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(r.an, 1);
	cfg.domain = "mesh.internal";
}

static void test_ptr_for_mesh_addresses(void **state)
{
	struct resp r;
	(void)state;
	assert_true(ask("2.0.64.100.in-addr.arpa", MAGICDNS_TYPE_PTR, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 1);
	assert_int_equal(r.rrs[0].type, MAGICDNS_TYPE_PTR);
	assert_string_equal(r.rrs[0].target, "web.mesh.internal.");

	assert_true(ask("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f."
	                "IP6.ARPA.",
	                MAGICDNS_TYPE_PTR, &r) > 0);
	assert_int_equal(r.an, 1);
	assert_string_equal(r.rrs[0].target, "web.mesh.internal.");

	/* Known address, other type: empty. Leading zeros: not ours. */
	assert_true(ask("2.0.64.100.in-addr.arpa", MAGICDNS_TYPE_A, &r) > 0);
	assert_int_equal(r.an, 0);
	assert_int_equal(ask("02.0.64.100.in-addr.arpa", MAGICDNS_TYPE_PTR, &r), 0);
	assert_int_equal(ask("2.0.64.256.in-addr.arpa", MAGICDNS_TYPE_PTR, &r), 0);
}

static void test_other_types_empty(void **state)
{
	struct resp r;
	(void)state;
	assert_true(ask("web", 15 /* MX */, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 0);
	assert_true(ask("web.mesh.internal", 16 /* TXT */, &r) > 0);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 0);
}

/* FORMERR with a header only, id echoed. */
static void expect_formerr(const uint8_t *q, size_t ql)
{
	uint8_t out[512];
	struct resp r;
	int n = magicdns_answer(&cfg, q, ql, out, sizeof(out));
	assert_int_equal(n, 12);
	parse_resp(out, (size_t)n, &r);
	assert_int_equal(rcode(&r), MAGICDNS_RCODE_FORMERR);
	assert_int_equal(r.id, (q[0] << 8) | q[1]);
	assert_int_equal(r.qd, 0);
}

static void test_drop_junk_and_responses(void **state)
{
	uint8_t q[600], out[512];
	(void)state;
	size_t ql = make_query(q, 7, "web", MAGICDNS_TYPE_A);
	for (size_t i = 0; i < 12; i++)
		assert_int_equal(magicdns_answer(&cfg, q, i, out, sizeof(out)), -1);
	q[2] |= 0x80; /* QR */
	assert_int_equal(magicdns_answer(&cfg, q, ql, out, sizeof(out)), -1);
	q[2] &= 0x7f;
	/* Too small an output buffer: dropped, nothing written past cap. */
	memset(out, 0xAA, sizeof(out));
	assert_int_equal(magicdns_answer(&cfg, q, ql, out, 16), -1);
	assert_int_equal(out[16], 0xAA);
	assert_int_equal(magicdns_answer(NULL, q, ql, out, sizeof(out)), -1);
}

static void test_formerr(void **state)
{
	uint8_t q[600];
	(void)state;
	/* Compression pointer in the question. */
	size_t ql = make_query(q, 1, "web", MAGICDNS_TYPE_A);
	q[12] = 0xC0;
	q[13] = 12;
	expect_formerr(q, ql);
	/* Pointer after a first label. */
	ql = make_query(q, 2, "web.mesh", MAGICDNS_TYPE_A);
	q[16] = 0xC0;
	q[17] = 12;
	expect_formerr(q, ql);
	/* Reserved label types 01 and 10, i.e. a length above 63. */
	ql = make_query(q, 3, "web", MAGICDNS_TYPE_A);
	q[12] = 64;
	expect_formerr(q, ql);
	q[12] = 0x80;
	expect_formerr(q, ql);
	/* A 64-byte label. */
	char big[300];
	memset(big, 'a', 64);
	big[64] = '\0';
	ql = make_query(q, 4, big, MAGICDNS_TYPE_A);
	expect_formerr(q, ql);
	/* Labels of 63 are fine; a 256-byte name is not, 255 is. */
	memset(big, 'a', sizeof(big));
	big[63] = big[127] = big[191] = '.';
	big[191 + 62] = '\0'; /* 64*3 + 1+61 + 1 = 255 */
	ql = make_query(q, 5, big, MAGICDNS_TYPE_A);
	assert_int_equal(magicdns_question_len(q, ql), 255 + 4);
	big[191 + 62] = 'a';
	big[191 + 63] = '\0'; /* 256 */
	ql = make_query(q, 6, big, MAGICDNS_TYPE_A);
	expect_formerr(q, ql);
	/* qdcount 0 and 2. */
	ql = make_query(q, 7, "web", MAGICDNS_TYPE_A);
	q[5] = 0;
	expect_formerr(q, ql);
	q[5] = 2;
	expect_formerr(q, ql);
	q[4] = 1;
	q[5] = 1;
	expect_formerr(q, ql);
	q[4] = 0;
	/* Question cut short: in the name, in QTYPE/QCLASS. */
	expect_formerr(q, 14);
	expect_formerr(q, ql - 1);
	expect_formerr(q, 12);
	/* Another opcode: NOTIMP. */
	uint8_t out[512];
	q[5] = 1;
	q[2] = 0x10; /* opcode 2 */
	assert_int_equal(magicdns_answer(&cfg, q, ql, out, sizeof(out)), 12);
	assert_int_equal(out[3] & 0xf, MAGICDNS_RCODE_NOTIMP);
}

static void test_error_reply_for_forwarded(void **state)
{
	uint8_t q[600], out[512];
	struct resp r;
	(void)state;
	size_t ql = make_query(q, 0xBEEF, "example.com", MAGICDNS_TYPE_AAAA);
	int n =
	    magicdns_error_reply(q, ql, MAGICDNS_RCODE_SERVFAIL, true, out, sizeof(out));
	assert_int_equal(n, (int)ql);
	parse_resp(out, (size_t)n, &r);
	assert_int_equal(r.id, 0xBEEF);
	assert_int_equal(rcode(&r), MAGICDNS_RCODE_SERVFAIL);
	assert_string_equal(r.qname, "example.com.");
	assert_int_equal(r.qtype, MAGICDNS_TYPE_AAAA);
	assert_int_equal(magicdns_error_reply(q, ql, 2, true, out, 10), -1);
}

static void test_ttl_and_ra(void **state)
{
	uint8_t q[600], out[512];
	struct resp r;
	(void)state;
	cfg.ttl = 5;
	cfg.forward = false;
	size_t ql = make_query(q, 9, "web", MAGICDNS_TYPE_A);
	int n = magicdns_answer(&cfg, q, ql, out, sizeof(out));
	assert_true(n > 0);
	parse_resp(out, (size_t)n, &r);
	assert_int_equal(r.rrs[0].ttl, 5);
	assert_false(r.flags & 0x0080);
	cfg.ttl = 0;
	cfg.forward = true;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_aaaa_for_mesh_names),
	    cmocka_unit_test(test_any_gives_both_and_db_has_no_aaaa),
	    cmocka_unit_test(test_nxdomain_under_domain),
	    cmocka_unit_test(test_forward_other_names),
	    cmocka_unit_test(test_ptr_for_mesh_addresses),
	    cmocka_unit_test(test_other_types_empty),
	    cmocka_unit_test(test_drop_junk_and_responses),
	    cmocka_unit_test(test_formerr),
	    cmocka_unit_test(test_error_reply_for_forwarded),
	    cmocka_unit_test(test_ttl_and_ra),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
