/* libFuzzer harness for the tunnel DNS client's answer parser
 * (dnsc_answer_parse), which reads what a DNS server, or anyone on the path
 * to it, sends back. Input: byte 0 picks the query (name, A or AAAA) and
 * whether the answer gets the query's header id and question spliced in
 * (so most inputs reach the records); the rest is the answer, copied to a
 * heap buffer of exactly its size. Checks: the result is 0 or -1; on 0 at
 * most DNSC_ADDRS_MAX addresses, all of the queried family and each found
 * in the answer's bytes; the query built is parsed back unchanged by a
 * second build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "node/dns/dnsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static const char *const names[] = {"web.example", "a.b.c.d.example.", "X-Y.example",
                                    "n"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	const char *name = names[sel & 3];
	uint16_t qtype = (sel & 4) ? DNSC_TYPE_AAAA : DNSC_TYPE_A;
	uint8_t q[300];
	int ql = dnsc_query_build(name, 0x4d50, qtype, q, sizeof(q));
	CHECK(ql > 12);
	uint8_t q2[300];
	CHECK(dnsc_query_build(name, 0x4d50, qtype, q2, sizeof(q2)) == ql);
	CHECK(memcmp(q, q2, (size_t)ql) == 0);
	size_t len = size - 1;
	uint8_t *p = malloc(len ? len : 1);
	if (!p)
		return 0;
	memcpy(p, data + 1, len);
	if ((sel & 8) && len >= (size_t)ql) { /* the query's id and question */
		memcpy(p, q, 2);
		p[4] = 0;
		p[5] = 1;
		memcpy(p + 12, q + 12, (size_t)ql - 12);
	}
	struct dnsc_answer a;
	int r = dnsc_answer_parse(q, (size_t)ql, p, len, &a);
	CHECK(r == 0 || r == -1);
	if (r == 0) {
		CHECK(a.n <= DNSC_ADDRS_MAX);
		int fam = qtype == DNSC_TYPE_A ? AF_INET : AF_INET6;
		size_t alen = fam == AF_INET ? 4 : 16;
		for (size_t i = 0; i < a.n; i++) {
			CHECK(a.addrs[i].family == fam);
			CHECK(memmem(p, len, a.addrs[i].addr, alen) != NULL);
		}
	}
	free(p);
	return 0;
}
