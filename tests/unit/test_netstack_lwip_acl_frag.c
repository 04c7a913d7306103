/* IPv6 fragments through the node's inbound filter (node/acl.c) and the
 * real lwIP, in the order node.c uses them. lwIP reassembles a datagram
 * with the next header of the fragment that starts its reassembly, which
 * need not be the first fragment; so:
 *  - a first fragment with an extension header after its fragment header
 *    is dropped under a policy: the header the filter would judge need not
 *    be the one lwIP reads. The attack this stops: with only TCP 22 (or
 *    UDP 53) allowed, a replayed later fragment starts a reassembly with
 *    next header TCP, and a first fragment whose "destination options"
 *    the filter skips is then read by lwIP as a TCP SYN to port 23 (or a
 *    datagram to port 9999);
 *  - a later fragment passes only with the next header its first fragment
 *    had (the key is the fragment header's own next header);
 *  - a plainly fragmented SYN to the allowed port still connects. */
#include "netstack/ns.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/acl.h"

static void acl_then_ns_input(const uint8_t *p, size_t len);
#define ns_input(p, n) acl_then_ns_input(p, n)
#include "ns_test_peer.h"

#include <sodium.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

static struct node_acl *acl;

static bool real_conn(void *ctx, const struct ns_addr *l, uint16_t lp,
                      const struct ns_addr *r, uint16_t rp)
{
	(void)ctx;
	return ns_tcp_conn_exists(l, lp, r, rp);
}

static void acl_then_ns_input(const uint8_t *p, size_t len)
{
	if (acl && node_acl_active(acl) && !node_acl_inbound(acl, p, len, 1000))
		return;
	(ns_input)(p, len);
}

static uint8_t peer6[16], our6[16];
static struct ctl_filter_block blk[1];

/* PEER6 may open port on proto (CTL_FILTER_*) and nothing else. */
static void policy_only(int proto, uint16_t port)
{
	static struct ctl_port_range r[1];
	struct ns_addr a;
	r[0].lo = r[0].hi = port;
	assert_true(sodium_init() >= 0);
	assert_true(ctl_ip_parse(PEER6, &blk[0].lo));
	blk[0].hi = blk[0].lo;
	blk[0].ports = r;
	blk[0].n_ports = 1;
	struct ctl_filter f = {0};
	f.n_blocks[proto] = 1;
	f.blocks[proto] = blk;
	acl = node_acl_new(real_conn, NULL);
	assert_non_null(acl);
	assert_int_equal(node_acl_set(acl, true, &f, NULL, 0), 0);
	assert_true(ns_addr_parse(&a, PEER6));
	memcpy(peer6, a.addr, 16);
	assert_true(ns_addr_parse(&a, OUR6));
	memcpy(our6, a.addr, 16);
}

static int frag_teardown(void **state)
{
	node_acl_free(acl);
	acl = NULL;
	return teardown(state);
}

static uint64_t frag_drops(void)
{
	struct acl_stats st;
	node_acl_stats(acl, &st);
	return st.drops[ACL_DROP_FRAGMENT];
}

/* An IPv6 packet from PEER6 with one fragment header (next header fnh,
 * offset in 8-byte units, M) and body. */
static void send_frag(uint8_t fnh, uint16_t off8, bool more, uint32_t id,
                      const uint8_t *body, size_t blen)
{
	static uint8_t b[2000];
	size_t len = 8 + blen;
	uint16_t fo = (uint16_t)(off8 << 3 | (more ? 1 : 0));
	memset(b, 0, 48);
	b[0] = 0x60;
	b[4] = (uint8_t)(len >> 8);
	b[5] = (uint8_t)len;
	b[6] = 44;
	b[7] = 64;
	memcpy(b + 8, peer6, 16);
	memcpy(b + 24, our6, 16);
	b[40] = fnh;
	b[42] = (uint8_t)(fo >> 8);
	b[43] = (uint8_t)fo;
	b[44] = (uint8_t)(id >> 24);
	b[45] = (uint8_t)(id >> 16);
	b[46] = (uint8_t)(id >> 8);
	b[47] = (uint8_t)id;
	memcpy(b + 48, body, blen);
	ns_input(b, 40 + len);
}

/* Whether lwIP sent a TCP segment from sport with these flags (the queue
 * is emptied). */
static bool sent_from(uint16_t sport, uint8_t flags)
{
	struct pkt *k;
	struct seg s;
	bool seen = false;
	while ((k = cap_pop()) != NULL) {
		if (parse(k, &s) && s.proto == 6 && s.sport == sport && s.flags == flags)
			seen = true;
		free(k);
	}
	return seen;
}

static void test_tcp_nexthdr_confusion(void **state)
{
	(void)state;
	struct accepted acc = {0};
	uint32_t id = 0x1234;
	uint8_t pad[8] = {0};
	policy_only(CTL_FILTER_TCP, 22);
	assert_int_equal(ns_tcp_listen(23, on_accept, &acc), 0);

	/* 1. destination options, then a SYN to 22, as a first fragment;
	 * then its last fragment */
	uint8_t f0[32] = {0};
	f0[0] = 6;
	f0[2] = 1; /* PadN, 4 bytes */
	f0[3] = 4;
	uint8_t *t = f0 + 8;
	t[0] = 0x9c, t[1] = 0x41, t[3] = 22, t[7] = 1, t[12] = 0x60, t[13] = F_SYN;
	t[14] = t[15] = 0xff;
	t[20] = t[21] = t[22] = t[23] = 1;
	uint64_t d0 = frag_drops();
	send_frag(60, 0, true, id, f0, 32);
	assert_int_equal(frag_drops(), d0 + 1); /* extension header after it */
	send_frag(6, 4, false, id, pad, 8);
	spin_ms(2);
	cap_clear();
	/* 2. the same later fragment again: a new reassembly in lwIP with
	 * next header TCP (were the filter to let it through) */
	send_frag(6, 4, false, id, pad, 8);
	/* 3. a first fragment the filter would read as destination options
	 * and a SYN to 22, and lwIP as a SYN to 23 */
	uint8_t g[32] = {0};
	g[0] = 6;              /* lwIP: sport 0x0600 */
	g[3] = 23;             /* lwIP: dport 23 */
	g[6] = 0x10;           /* lwIP: seq */
	t = g + 8;             /* the filter's TCP header */
	t[0] = 0x12, t[1] = 0x34, t[3] = 22;
	t[4] = 0x50, t[5] = F_SYN; /* lwIP: data offset 5, SYN */
	t[6] = t[7] = 0xff;
	t[12] = 0x60, t[13] = F_SYN, t[14] = t[15] = 0xff;
	t[20] = t[21] = t[22] = t[23] = 1;
	send_frag(60, 0, true, id, g, 32);
	spin_ms(2);
	assert_false(sent_from(23, F_SYN | F_ACK));
	assert_int_equal(acc.calls, 0);
	ns_tcp_unlisten(23);
}

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	(void)u, (void)src, (void)sport, (void)dst, (void)data, (void)len;
	(*(int *)ctx)++;
}

static void test_udp_nexthdr_confusion(void **state)
{
	(void)state;
	int got = 0, err = 0;
	uint32_t id = 0x777;
	uint8_t pad[8] = {0};
	policy_only(CTL_FILTER_UDP, 53);
	struct ns_udp *u = ns_udp_open(9999, on_udp, &got, &err);
	assert_non_null(u);
	uint8_t f0[16] = {0};
	f0[0] = 17, f0[2] = 1, f0[3] = 4; /* destination options, PadN */
	f0[8] = 0x9c, f0[9] = 0x40, f0[11] = 53, f0[13] = 16;
	send_frag(60, 0, true, id, f0, 16);
	send_frag(17, 2, false, id, pad, 8);
	spin_ms(2);
	send_frag(17, 2, false, id, pad, 8);
	uint8_t g[16] = {0};
	g[0] = 17, g[2] = 9999 >> 8, g[3] = 9999 & 255; /* lwIP: to 9999 */
	g[5] = 24;                                      /* lwIP: length, no sum */
	g[8] = 0x9c, g[9] = 0x40, g[11] = 53, g[13] = 16; /* the filter: to 53 */
	send_frag(60, 0, true, id, g, 16);
	spin_ms(2);
	assert_int_equal(got, 0);
	ns_udp_close(u);
	cap_clear();
}

/* A SYN to 22 in two IPv6 fragments (no header after the fragment header),
 * from a source the policy lets open 22: dropped all the same (under a
 * policy no IPv6 fragment passes: review H1'), so lwIP answers nothing. */
static void test_plain_fragments6_dropped(void **state)
{
	(void)state;
	struct accepted acc = {0};
	uint32_t id = 0x4242;
	policy_only(CTL_FILTER_TCP, 22);
	assert_int_equal(ns_tcp_listen(22, on_accept, &acc), 0);
	uint8_t syn[32] = {0};
	syn[0] = 0x9c, syn[1] = 0x41, syn[3] = 22, syn[7] = 1;
	syn[12] = 0x50, syn[13] = F_SYN, syn[14] = syn[15] = 0xff; /* and 12 bytes */
	memcpy(syn + 20, "hello, mesh!", 12);
	uint16_t c = l4_sum(AF_INET6, peer6, our6, 6, syn, 32, true);
	syn[16] = (uint8_t)(c >> 8), syn[17] = (uint8_t)c;
	uint64_t d0 = frag_drops();
	send_frag(6, 0, true, id, syn, 24);
	send_frag(6, 3, false, id, syn + 24, 8);
	spin_ms(2);
	assert_int_equal(frag_drops(), d0 + 2);
	assert_false(sent_from(22, F_SYN | F_ACK));
	ns_tcp_unlisten(22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_tcp_nexthdr_confusion, setup,
	                                    frag_teardown),
	    cmocka_unit_test_setup_teardown(test_udp_nexthdr_confusion, setup,
	                                    frag_teardown),
	    cmocka_unit_test_setup_teardown(test_plain_fragments6_dropped, setup,
	                                    frag_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
