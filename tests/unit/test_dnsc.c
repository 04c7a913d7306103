/* The tunnel DNS client's codec (node/dns/dnsc_wire.c): queries are built
 * as RFC 1035 says; answers are taken only when they repeat the query's id
 * and question; A and AAAA records of the name (after CNAMEs, with
 * compression pointers) are collected; NXDOMAIN, SERVFAIL and TC are
 * reported; and hostile answers (forward or looping pointers, records
 * running past the end, too many records, A records of the wrong length,
 * other questions, queries instead of answers) are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "node/dns/dnsc.h"

/* A query for name/type with id 0x1234 into q; returns its length. */
static size_t t_query(const char *name, uint16_t type, uint8_t *q)
{
	int n = dnsc_query_build(name, 0x1234, type, q, 300);
	assert_true(n > 0);
	return (size_t)n;
}

/* An answer header + the question of q; returns the write offset. */
static size_t t_head(const uint8_t *q, size_t qlen, uint16_t flags, uint16_t an,
                     uint8_t *p)
{
	memcpy(p, q, qlen);
	p[2] = (uint8_t)(flags >> 8);
	p[3] = (uint8_t)flags;
	p[6] = (uint8_t)(an >> 8);
	p[7] = (uint8_t)an;
	return qlen;
}

/* A record: owner (wire bytes), type, rdata. */
static size_t t_rr(uint8_t *p, size_t off, const uint8_t *owner, size_t olen,
                   uint16_t type, const uint8_t *rd, size_t rdlen)
{
	memcpy(p + off, owner, olen);
	off += olen;
	uint8_t f[10] = {(uint8_t)(type >> 8),  (uint8_t)type, 0, 1, 0, 0, 0, 60,
	                 (uint8_t)(rdlen >> 8), (uint8_t)rdlen};
	memcpy(p + off, f, 10);
	off += 10;
	memcpy(p + off, rd, rdlen);
	return off + rdlen;
}

static const uint8_t ptr_q[2] = {0xc0, 12}; /* the question's name */
static const uint8_t v4[4] = {198, 18, 7, 1};
static const uint8_t v4b[4] = {198, 18, 7, 2};

static void test_query_build(void **st)
{
	(void)st;
	uint8_t q[300];
	size_t n = t_query("Web.Example.", DNSC_TYPE_AAAA, q);
	static const uint8_t want[] = {
	    0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,   0, 0, 0,  3, 'W', 'e',
	    'b',  7,    'E',  'x',  'a', 'm', 'p', 'l', 'e', 0, 0, 28, 0, 1};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(q, want, sizeof(want));
	char long_label[70];
	memset(long_label, 'a', 64);
	long_label[64] = 0;
	assert_int_equal(dnsc_query_build(long_label, 1, 1, q, sizeof(q)), -1);
	assert_int_equal(dnsc_query_build("a..b", 1, 1, q, sizeof(q)), -1);
	assert_int_equal(dnsc_query_build("", 1, 1, q, sizeof(q)), -1);
	assert_int_equal(dnsc_query_build(".", 1, 1, q, sizeof(q)), -1);
	assert_int_equal(dnsc_query_build("example", 1, 1, q, 10), -1);
}

static void test_answer_a_records(void **st)
{
	(void)st;
	uint8_t q[300], p[2048];
	size_t ql = t_query("web.example", DNSC_TYPE_A, q);
	size_t off = t_head(q, ql, 0x8180, 3, p);
	off = t_rr(p, off, ptr_q, 2, DNSC_TYPE_A, v4, 4);
	/* Another name's record is not ours. */
	static const uint8_t other[] = {5, 'o', 't', 'h', 'e', 'r', 0};
	off = t_rr(p, off, other, sizeof(other), DNSC_TYPE_A, v4b, 4);
	/* The owner spelt in another case, without a pointer. */
	static const uint8_t upper[] = {3,   'W', 'E', 'B', 7,   'E', 'X',
	                                'A', 'M', 'P', 'L', 'E', 0};
	off = t_rr(p, off, upper, sizeof(upper), DNSC_TYPE_A, v4b, 4);
	struct dnsc_answer a;
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	assert_int_equal(a.rcode, 0);
	assert_false(a.truncated);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.addrs[0].family, AF_INET);
	assert_memory_equal(a.addrs[0].addr, v4, 4);
	assert_memory_equal(a.addrs[1].addr, v4b, 4);
}

static void test_answer_cname_chain(void **st)
{
	(void)st;
	uint8_t q[300], p[2048];
	size_t ql = t_query("alias.example", DNSC_TYPE_AAAA, q);
	size_t off = t_head(q, ql, 0x8180, 3, p);
	/* alias.example CNAME web.<pointer to "example" in the question> */
	size_t target_at = off + 2 + 10;
	static const uint8_t tgt[] = {3, 'w', 'e', 'b', 0xc0, 12 + 6};
	off = t_rr(p, off, ptr_q, 2, DNSC_TYPE_CNAME, tgt, sizeof(tgt));
	/* An AAAA for alias.example itself no longer counts (the chain moved). */
	uint8_t v6[16] = {0xfd, 0x77, [15] = 9};
	off = t_rr(p, off, ptr_q, 2, DNSC_TYPE_AAAA, v6, 16);
	uint8_t ptr_t[2] = {0xc0, (uint8_t)target_at};
	uint8_t v6b[16] = {0xfd, 0x77, [15] = 2};
	off = t_rr(p, off, ptr_t, 2, DNSC_TYPE_AAAA, v6b, 16);
	struct dnsc_answer a;
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.addrs[0].family, AF_INET6);
	assert_memory_equal(a.addrs[0].addr, v6b, 16);
}

static void test_answer_rcodes_and_tc(void **st)
{
	(void)st;
	uint8_t q[300], p[2048];
	size_t ql = t_query("nothing.example", DNSC_TYPE_A, q);
	struct dnsc_answer a;
	size_t off = t_head(q, ql, 0x8183, 0, p);
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	assert_int_equal(a.rcode, 3);
	assert_int_equal(a.n, 0);
	off = t_head(q, ql, 0x8182, 0, p);
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	assert_int_equal(a.rcode, 2);
	off = t_head(q, ql, 0x8380, 0, p);
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	assert_true(a.truncated);
}

static void test_answer_mismatch_refused(void **st)
{
	(void)st;
	uint8_t q[300], p[2048];
	size_t ql = t_query("web.example", DNSC_TYPE_A, q);
	struct dnsc_answer a;
	size_t off = t_head(q, ql, 0x8180, 1, p);
	off = t_rr(p, off, ptr_q, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, off, &a), 0);
	uint8_t b[2048];
	memcpy(b, p, off);
	b[1] ^= 1; /* another id */
	assert_int_equal(dnsc_answer_parse(q, ql, b, off, &a), -1);
	memcpy(b, p, off);
	b[2] &= 0x7f; /* a query, not a response */
	assert_int_equal(dnsc_answer_parse(q, ql, b, off, &a), -1);
	memcpy(b, p, off);
	b[13] = 'x'; /* another name in the question */
	assert_int_equal(dnsc_answer_parse(q, ql, b, off, &a), -1);
	memcpy(b, p, off);
	b[ql - 3] = 28; /* another type in the question */
	assert_int_equal(dnsc_answer_parse(q, ql, b, off, &a), -1);
	memcpy(b, p, off);
	b[5] = 2; /* two questions */
	assert_int_equal(dnsc_answer_parse(q, ql, b, off, &a), -1);
	assert_int_equal(dnsc_answer_parse(q, ql, p, 11, &a), -1); /* short */
	/* Every cut of the answer is refused or parses to no address. */
	for (size_t cut = 0; cut < off; cut++) {
		int r = dnsc_answer_parse(q, ql, p, cut, &a);
		assert_true(r == -1 || a.n == 0);
	}
}

static void test_answer_hostile_refused(void **st)
{
	(void)st;
	uint8_t q[300], p[2048];
	size_t ql = t_query("web.example", DNSC_TYPE_A, q);
	struct dnsc_answer a;
	/* A pointer to itself (a loop) as the owner. */
	size_t off = t_head(q, ql, 0x8180, 1, p);
	uint8_t self[2] = {0xc0, (uint8_t)off};
	size_t end = t_rr(p, off, self, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* A pointer forward. */
	uint8_t fwd[2] = {0xc0, (uint8_t)(off + 20)};
	end = t_rr(p, off, fwd, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* A reserved label type (0x40). */
	uint8_t ext[2] = {0x41, 'x'};
	end = t_rr(p, off, ext, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* An A record of 5 bytes. */
	uint8_t five[5] = {1, 2, 3, 4, 5};
	end = t_rr(p, off, ptr_q, 2, DNSC_TYPE_A, five, 5);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* RDLENGTH past the end. */
	end = t_rr(p, off, ptr_q, 2, DNSC_TYPE_A, v4, 4);
	p[end - 5] = 200;
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* More records than we read (a big answer over TCP): the first
	 * DNSC_RR_MAX are read, the rest (here: cut short) never looked at. */
	off = t_head(q, ql, 0x8180, DNSC_RR_MAX + 6, p);
	end = off;
	for (int i = 0; i < DNSC_RR_MAX; i++)
		end = t_rr(p, end, ptr_q, 2, i < 2 ? DNSC_TYPE_A : 99, v4, i < 2 ? 4 : 0);
	p[end++] = 0xc0; /* a 65th record, cut short */
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), 0);
	assert_int_equal(a.n, 2);
	/* TC with records cut short: malformed, but TC and rcode are known
	 * (the runtime asks again over TCP). */
	off = t_head(q, ql, 0x8380, 3, p);
	end = t_rr(p, off, ptr_q, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	assert_true(a.truncated);
	/* A CNAME loop: web CNAME web, over and over: bounded. */
	off = t_head(q, ql, 0x8180, DNSC_CNAME_HOPS + 1, p);
	end = off;
	for (int i = 0; i < DNSC_CNAME_HOPS + 1; i++)
		end = t_rr(p, end, ptr_q, 2, DNSC_TYPE_CNAME, ptr_q, 2);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), -1);
	/* Many addresses: at most DNSC_ADDRS_MAX kept. */
	off = t_head(q, ql, 0x8180, 40, p);
	end = off;
	for (int i = 0; i < 40; i++)
		end = t_rr(p, end, ptr_q, 2, DNSC_TYPE_A, v4, 4);
	assert_int_equal(dnsc_answer_parse(q, ql, p, end, &a), 0);
	assert_int_equal(a.n, DNSC_ADDRS_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_query_build),
	    cmocka_unit_test(test_answer_a_records),
	    cmocka_unit_test(test_answer_cname_chain),
	    cmocka_unit_test(test_answer_rcodes_and_tc),
	    cmocka_unit_test(test_answer_mismatch_refused),
	    cmocka_unit_test(test_answer_hostile_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
