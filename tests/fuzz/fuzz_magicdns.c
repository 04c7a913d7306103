/* libFuzzer harness for the MagicDNS answerer (magicdns_answer) with a fixed
 * map (web, db, a name with many addresses) and reverse table. Input: byte
 * 0 picks the config (domain, forward), byte 1 the output capacity, the
 * rest is the query as it arrives over UDP. The output buffer is exactly
 * cap bytes on the heap, so ASan catches any write past it. Invariants
 * checked: the result is -1, 0 or a length in [12, cap]; an answer keeps
 * the query's id, has QR set, echoes the question byte for byte, and its
 * records parse to exactly its length with only the types and addresses
 * the map holds; a forwarded query (0) parses as a question and gets a
 * SERVFAIL built from it; a query dropped (-1) with room to answer was
 * shorter than a header or a response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "node/dns/magicdns.h"
#include "node/dns/magicdns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static const uint8_t web4[4] = {100, 64, 0, 2};
static const uint8_t db4[4] = {100, 64, 0, 3};
static const uint8_t web6[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0,
                                 0,    0,    0,    0,    0,    0,    0, 2};

static size_t f_lookup(void *ctx, const char *label, struct ns_addr *out, size_t max)
{
	size_t n = 0;
	(void)ctx;
	CHECK(strlen(label) >= 1 && strlen(label) <= 63);
	if (strcmp(label, "web") == 0 || strcmp(label, "many") == 0) {
		size_t want = label[0] == 'm' ? 40 : 2; /* more than max: clamped */
		for (size_t i = 0; i < want && n < max; i++, n++) {
			out[n].family = (i & 1) ? AF_INET6 : AF_INET;
			memcpy(out[n].addr, (i & 1) ? web6 : web4, (i & 1) ? 16 : 4);
		}
		return label[0] == 'm' ? want : n;
	}
	if (strcmp(label, "db") == 0 && max > 0) {
		out[0].family = AF_INET;
		memcpy(out[0].addr, db4, 4);
		return 1;
	}
	return 0;
}

static bool f_reverse(void *ctx, const struct ns_addr *a, char *out, size_t cap)
{
	(void)ctx;
	CHECK(cap >= 64);
	if (a->family == AF_INET && memcmp(a->addr, web4, 4) == 0) {
		strcpy(out, "web");
		return true;
	}
	if (a->family == AF_INET6 && memcmp(a->addr, web6, 16) == 0) {
		/* 63 letters: the longest label, still fits */
		memset(out, 'x', 63);
		out[63] = '\0';
		return true;
	}
	if (a->family == AF_INET && memcmp(a->addr, db4, 4) == 0) {
		memset(out, 'y', cap - 1); /* fills the whole buffer */
		out[cap - 1] = '\0';
		return true;
	}
	return false;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* A PTR target: labels only, ends at end. */
static void check_ptr_name(const uint8_t *p, size_t off, size_t end)
{
	while (off < end && p[off] != 0) {
		CHECK(p[off] <= 63);
		off += 1 + p[off];
	}
	CHECK(off + 1 == end && p[off] == 0);
}

static void check_answer(const uint8_t *q, size_t qlen, const uint8_t *r, size_t n)
{
	CHECK(n >= 12);
	CHECK(r[0] == q[0] && r[1] == q[1]);
	CHECK(r[2] & 0x80);
	uint16_t qd = rd16(r + 4), an = rd16(r + 6);
	CHECK(rd16(r + 8) == 0 && rd16(r + 10) == 0);
	if (qd == 0) {
		CHECK(n == 12 && an == 0);
		int rc = r[3] & 0xf;
		CHECK(rc == MAGICDNS_RCODE_FORMERR || rc == MAGICDNS_RCODE_NOTIMP);
		return;
	}
	CHECK(qd == 1);
	int ql = magicdns_question_len(q, qlen);
	CHECK(ql > 4 && (size_t)ql <= MAGICDNS_QUESTION_MAX);
	CHECK(n >= 12 + (size_t)ql);
	CHECK(memcmp(r + 12, q + 12, (size_t)ql) == 0);
	size_t off = 12 + (size_t)ql;
	for (uint16_t i = 0; i < an; i++) {
		CHECK(n - off >= 12);
		CHECK(rd16(r + off) == 0xC00C);
		uint16_t type = rd16(r + off + 2), rdlen = rd16(r + off + 10);
		CHECK(rd16(r + off + 4) == MAGICDNS_CLASS_IN);
		off += 12;
		CHECK(n - off >= rdlen);
		if (type == MAGICDNS_TYPE_A)
			CHECK(rdlen == 4 && (memcmp(r + off, web4, 4) == 0 ||
			                     memcmp(r + off, db4, 4) == 0));
		else if (type == MAGICDNS_TYPE_AAAA)
			CHECK(rdlen == 16 && memcmp(r + off, web6, 16) == 0);
		else if (type == MAGICDNS_TYPE_PTR)
			check_ptr_name(r, off, off + rdlen);
		else
			CHECK(0);
		off += rdlen;
	}
	CHECK(off == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *domains[] = {
	    "mesh.internal", "Mesh.Internal.", NULL, "x", "..", ""};
	if (size < 2)
		return 0;
	struct magicdns_config cfg = {
	    .domain = domains[(data[0] & 7) % 6],
	    .lookup = f_lookup,
	    .reverse = (data[0] & 8) ? NULL : f_reverse,
	    .forward = (data[0] & 16) != 0,
	    .ttl = data[0] & 32 ? 1 : 0,
	};
	size_t cap = data[1] < 200 ? MAGICDNS_UDP_MAX : (size_t)(data[1] - 200) * 10;
	const uint8_t *q = data + 2;
	size_t qlen = size - 2;
	/* An exact-size copy, so reads past the end are caught too. */
	uint8_t *qc = malloc(qlen ? qlen : 1);
	uint8_t *out = malloc(cap ? cap : 1);
	if (qc == NULL || out == NULL)
		abort();
	memcpy(qc, q, qlen);

	int r = magicdns_answer(&cfg, qc, qlen, out, cap);
	CHECK(r >= -1 && r <= (int)cap);
	if (r > 0) {
		check_answer(qc, qlen, out, (size_t)r);
	} else if (r == 0) {
		int ql = magicdns_question_len(qc, qlen);
		CHECK(ql > 4);
		if (cap >= 12 + (size_t)ql) {
			int e = magicdns_error_reply(qc, qlen, MAGICDNS_RCODE_SERVFAIL,
			                             true, out, cap);
			CHECK(e == 12 + ql);
			CHECK((out[3] & 0xf) == MAGICDNS_RCODE_SERVFAIL);
		}
	} else if (cap >= MAGICDNS_UDP_MAX && qlen >= 12) {
		CHECK(qc[2] & 0x80);
	}
	free(qc);
	free(out);
	return 0;
}
