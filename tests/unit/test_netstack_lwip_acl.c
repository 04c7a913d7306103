/* The node's inbound filter (node/acl.c) in front of the real lwIP, as
 * node.c puts it (after WireGuard, before ns_input), with lwIP's own
 * connections deciding what a non-SYN segment may be (ns_tcp_conn_exists):
 *  - a SYN the policy denies gets no answer at all (no SYN-ACK, no RST),
 *    and no connection is made, to a listened port or not; without a
 *    policy the same SYN to an unlistened port draws lwIP's RST, so the
 *    silence is the filter's;
 *  - an ACK scan (no connection) gets no RST either;
 *  - an allowed SYN connects, and the connection's later segments pass;
 *  - a connection this node dials to a peer the policy does not let in
 *    completes: its SYN-ACK belongs to lwIP's connection;
 *  - UDP: a reply to our datagram passes, another datagram does not. */
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
static unsigned dropped;

static bool real_conn(void *ctx, const struct ns_addr *l, uint16_t lp,
                      const struct ns_addr *r, uint16_t rp)
{
	(void)ctx;
	return ns_tcp_conn_exists(l, lp, r, rp);
}

static void acl_then_ns_input(const uint8_t *p, size_t len)
{
	if (acl && node_acl_active(acl) && !node_acl_inbound(acl, p, len, 0)) {
		dropped++;
		return;
	}
	(ns_input)(p, len);
}

/* PEER4 and PEER6 may open TCP 22 here; nothing else. */
static struct ctl_port_range ssh[] = {{22, 22}};
static struct ctl_filter_block blk[2];

static int acl_setup(void **state)
{
	setup(state);
	assert_true(sodium_init() >= 0);
	assert_true(ctl_ip_parse(PEER4, &blk[0].lo));
	blk[0].hi = blk[0].lo;
	assert_true(ctl_ip_parse(PEER6, &blk[1].lo));
	blk[1].hi = blk[1].lo;
	blk[0].ports = blk[1].ports = ssh;
	blk[0].n_ports = blk[1].n_ports = 1;
	struct ctl_filter f = {.n_blocks = {2, 0, 0}, .blocks = {blk, NULL, NULL}};
	acl = node_acl_new(real_conn, NULL);
	assert_int_equal(node_acl_set(acl, true, &f, NULL, 0), 0);
	dropped = 0;
	return 0;
}

static int acl_teardown(void **state)
{
	node_acl_free(acl);
	acl = NULL;
	return teardown(state);
}

static bool pcb_on_port(uint16_t port)
{
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
		if (pcb->local_port == port)
			return true;
	return false;
}

static void denied_syn_gets_nothing(int fam)
{
	struct accepted acc = {0};
	struct peer pr;
	assert_int_equal(ns_tcp_listen(23, on_accept, &acc), 0);
	/* without a policy an unlistened port answers RST: the stack is live */
	node_acl_set(acl, false, NULL, NULL, 0);
	peer_init(&pr, fam, 24);
	peer_send(&pr, F_SYN, NULL, 0);
	spin_ms(1);
	assert_int_equal(peer_poll(&pr, false), 1);
	assert_true(pr.got_rst);
	/* the policy: SYNs to 23 (listened) and 24 (not) get nothing */
	struct ctl_filter f = {.n_blocks = {2, 0, 0}, .blocks = {blk, NULL, NULL}};
	assert_int_equal(node_acl_set(acl, true, &f, NULL, 0), 0);
	for (uint16_t port = 23; port <= 24; port++) {
		peer_init(&pr, fam, port);
		peer_send(&pr, F_SYN, NULL, 0);
		spin_ms(5);
		assert_int_equal(peer_poll(&pr, false), 0);
		assert_false(pr.synack);
		assert_false(pr.got_rst);
		assert_false(pcb_on_port(port));
		/* nor to an ACK scan */
		peer_send(&pr, F_ACK, NULL, 0);
		peer_send(&pr, F_FIN | F_ACK, NULL, 0);
		spin_ms(5);
		assert_int_equal(peer_poll(&pr, false), 0);
	}
	assert_int_equal(acc.calls, 0);
	struct acl_stats st;
	node_acl_stats(acl, &st);
	assert_int_equal(st.drops[ACL_DROP_TCP_SYN], 2);
	assert_int_equal(st.drops[ACL_DROP_TCP_NO_CONN], 4);
	/* an ACK scan of the allowed port: no connection, no RST */
	peer_init(&pr, fam, 22);
	peer_send(&pr, F_ACK, NULL, 0);
	spin_ms(5);
	assert_int_equal(peer_poll(&pr, false), 0);
	ns_tcp_unlisten(23);
	peer_free(&pr);
}

static void test_denied_syn_gets_nothing_v4(void **state)
{
	(void)state;
	denied_syn_gets_nothing(AF_INET);
}

static void test_denied_syn_gets_nothing_v6(void **state)
{
	(void)state;
	denied_syn_gets_nothing(AF_INET6);
}

static void test_allowed_syn_connects(void **state)
{
	(void)state;
	struct accepted acc;
	struct peer pr;
	int sv[2];
	uint8_t buf[64];
	assert_int_equal(ns_tcp_listen(22, on_accept, &acc), 0);
	for (int fam = AF_INET; fam; fam = fam == AF_INET ? AF_INET6 : 0) {
		peer_init(&pr, fam, 22);
		struct ns_tcp *c = handshake_in(&pr, &acc); /* the ACK passed too */
		tcp_pair(sv);
		assert_int_equal(ns_splice_start(c, sv[0], NULL, 0), 0);
		peer_send(&pr, F_ACK | F_PSH, "SSH-2.0-x\r\n", 11);
		assert_int_equal(read_all(sv[1], buf, sizeof(buf), 200), 11);
		assert_memory_equal(buf, "SSH-2.0-x\r\n", 11);
		close(sv[1]);
		spin_ms(5);
		cap_clear();
		peer_free(&pr);
	}
	assert_int_equal(dropped, 0);
	ns_tcp_unlisten(22);
}

struct dialed {
	struct ns_tcp *c;
	int err, calls;
};

static void on_dial(void *ctx, struct ns_tcp *c, int err)
{
	struct dialed *d = ctx;
	d->c = c;
	d->err = err;
	d->calls++;
}

static void test_our_dial_completes(void **state)
{
	(void)state;
	struct dialed d = {0};
	struct ns_addr dst;
	struct peer pr;
	struct pkt *k;
	struct seg s;
	peer_init(&pr, AF_INET, 0);
	assert_true(ns_addr_parse(&dst, PEER4));
	assert_int_equal(ns_tcp_dial(&dst, 80, on_dial, &d), 0);
	k = cap_pop();
	assert_non_null(k);
	node_acl_outbound(acl, k->b, k->len, 0); /* as node_ns_output does */
	assert_true(parse(k, &s));
	pr.port = 80;
	pr.it_port = s.sport;
	free(k);
	pr.rcv_nxt = 0;
	pr.synack = true;
	/* a SYN-ACK from 80 to our port: lwIP's connection, so it passes */
	pr.rcv_nxt = s.seq + 1;
	peer_send(&pr, F_SYN | F_ACK, NULL, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);
	assert_non_null(d.c);
	ns_tcp_abort(d.c);
	cap_clear();
	/* the same SYN-ACK once the connection is gone: dropped, no RST */
	peer_send(&pr, F_SYN | F_ACK, NULL, 0);
	spin_ms(5);
	assert_int_equal(cap_n, 0);
	peer_free(&pr);
}

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	(void)u, (void)src, (void)sport, (void)dst, (void)data, (void)len;
	(*(int *)ctx)++;
}

static void test_udp_reply_passes(void **state)
{
	(void)state;
	int got = 0, err = 0;
	struct ns_udp *u = ns_udp_open(5353, on_udp, &got, &err);
	assert_non_null(u);
	struct ns_addr dst;
	assert_true(ns_addr_parse(&dst, PEER4));
	assert_true(ns_udp_send(u, &dst, 53, (const uint8_t *)"q", 1) >= 0);
	struct pkt *k = cap_pop();
	assert_non_null(k);
	node_acl_outbound(acl, k->b, k->len, 0);
	free(k);
	struct ns_addr me;
	assert_true(ns_addr_parse(&me, OUR4));
	uint8_t udp[9] = {0, 53, 5353 >> 8, 5353 & 255, 0, 9, 0, 0, 'a'};
	send_ip(AF_INET, dst.addr, me.addr, 17, udp, sizeof(udp)); /* the reply */
	spin_ms(1);
	assert_int_equal(got, 1);
	udp[1] = 54; /* from another port: not a reply, not allowed */
	send_ip(AF_INET, dst.addr, me.addr, 17, udp, sizeof(udp));
	spin_ms(1);
	assert_int_equal(got, 1);
	ns_udp_close(u);
	cap_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_denied_syn_gets_nothing_v4, acl_setup,
	                                    acl_teardown),
	    cmocka_unit_test_setup_teardown(test_denied_syn_gets_nothing_v6, acl_setup,
	                                    acl_teardown),
	    cmocka_unit_test_setup_teardown(test_allowed_syn_connects, acl_setup,
	                                    acl_teardown),
	    cmocka_unit_test_setup_teardown(test_our_dial_completes, acl_setup,
	                                    acl_teardown),
	    cmocka_unit_test_setup_teardown(test_udp_reply_passes, acl_setup,
	                                    acl_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
