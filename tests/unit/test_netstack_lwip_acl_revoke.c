/* Taking access away ends access already granted (node/acl.c with the real
 * lwIP, as node.c and node/control.c use them):
 *  - UDP: a service's replies to an allowed peer open no flow, so once a
 *    new filter closes the port the peer's next datagram is dropped;
 *  - TCP: ns_tcp_revoke with the new filter's verdict aborts an inbound
 *    connection to a port the filter closed (RST to the peer, the local
 *    socket reset, later segments dropped), and leaves a connection the
 *    filter still allows and one this node dialled. */
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
	if (acl && node_acl_active(acl) && !node_acl_inbound(acl, p, len, 0))
		return;
	(ns_input)(p, len);
}

/* The captured output, each packet shown to the flow bookkeeping as
 * node_ns_output does; returns whether a TCP segment from sport with
 * flags was among them. */
static bool out_through_acl(uint16_t sport, uint8_t flags)
{
	struct pkt *k;
	struct seg s;
	bool seen = false;
	while ((k = cap_pop()) != NULL) {
		node_acl_outbound(acl, k->b, k->len, 0);
		if (parse(k, &s) && s.proto == 6 && s.sport == sport && s.flags == flags)
			seen = true;
		free(k);
	}
	return seen;
}

/* PEER4 and PEER6 may open these ports of proto here, nothing else. */
static void policy(int proto, struct ctl_port_range *ports, size_t n)
{
	static struct ctl_filter_block blk[2];
	assert_true(ctl_ip_parse(PEER4, &blk[0].lo));
	blk[0].hi = blk[0].lo;
	assert_true(ctl_ip_parse(PEER6, &blk[1].lo));
	blk[1].hi = blk[1].lo;
	blk[0].ports = blk[1].ports = ports;
	blk[0].n_ports = blk[1].n_ports = n;
	struct ctl_filter f = {0};
	f.n_blocks[proto] = 2;
	f.blocks[proto] = blk;
	assert_int_equal(node_acl_set(acl, true, &f, NULL, 0), 0);
}

static bool keep(void *ctx, const struct ns_addr *remote, uint16_t lport)
{
	return node_acl_filter_allows(ctx, CTL_FILTER_TCP, remote, lport);
}

static int rv_setup(void **state)
{
	setup(state);
	assert_true(sodium_init() >= 0);
	acl = node_acl_new(real_conn, NULL);
	assert_non_null(acl);
	return 0;
}

static int rv_teardown(void **state)
{
	node_acl_free(acl);
	acl = NULL;
	return teardown(state);
}

static void on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src, uint16_t sport,
                   const struct ns_addr *dst, const uint8_t *data, size_t len)
{
	(void)src, (void)dst;
	(*(int *)ctx)++;
	ns_udp_send(u, src, sport, data, len); /* an echo service */
}

static void test_udp_revoked(void **state)
{
	(void)state;
	static struct ctl_port_range p5000[] = {{5000, 5000}}, p6000[] = {{6000, 6000}};
	int got = 0, err = 0;
	policy(CTL_FILTER_UDP, p5000, 1);
	struct ns_udp *u = ns_udp_open(5000, on_udp, &got, &err);
	assert_non_null(u);
	struct ns_addr peer, me;
	assert_true(ns_addr_parse(&peer, PEER4));
	assert_true(ns_addr_parse(&me, OUR4));
	uint8_t udp[9] = {0x9c, 0x40, 5000 >> 8, 5000 & 255, 0, 9, 0, 0, 'a'};
	send_ip(AF_INET, peer.addr, me.addr, 17, udp, sizeof(udp));
	spin_ms(1);
	assert_int_equal(got, 1);
	assert_true(cap_n > 0); /* the echo */
	out_through_acl(0, 0);
	struct acl_stats st;
	node_acl_stats(acl, &st);
	assert_int_equal(st.flows, 0); /* a reply opens no flow */
	/* the new filter takes 5000 away: the next datagram is dropped */
	policy(CTL_FILTER_UDP, p6000, 1);
	send_ip(AF_INET, peer.addr, me.addr, 17, udp, sizeof(udp));
	spin_ms(1);
	assert_int_equal(got, 1);
	node_acl_stats(acl, &st);
	assert_int_equal(st.drops[ACL_DROP_UDP], 1);
	/* a datagram this node starts still opens a flow for its replies */
	assert_true(ns_udp_send(u, &peer, 7000, (const uint8_t *)"q", 1) >= 0);
	out_through_acl(0, 0);
	node_acl_stats(acl, &st);
	assert_int_equal(st.flows, 1);
	udp[0] = 7000 >> 8, udp[1] = 7000 & 255;
	send_ip(AF_INET, peer.addr, me.addr, 17, udp, sizeof(udp));
	spin_ms(1);
	assert_int_equal(got, 2);
	ns_udp_close(u);
	cap_clear();
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

static void tcp_revoked(int fam)
{
	static struct ctl_port_range both[] = {{22, 23}}, only23[] = {{23, 23}};
	struct accepted acc22, acc23;
	struct peer p22, p23, pout;
	int sv[2], sv23[2];
	uint8_t buf[64];
	policy(CTL_FILTER_TCP, both, 1);
	assert_int_equal(ns_tcp_listen(22, on_accept, &acc22), 0);
	assert_int_equal(ns_tcp_listen(23, on_accept, &acc23), 0);
	peer_init(&p22, fam, 22);
	struct ns_tcp *c22 = handshake_in(&p22, &acc22);
	tcp_pair(sv);
	assert_int_equal(ns_splice_start(c22, sv[0], NULL, 0), 0);
	peer_init(&p23, fam, 23);
	struct ns_tcp *c23 = handshake_in(&p23, &acc23);
	tcp_pair(sv23);
	assert_int_equal(ns_splice_start(c23, sv23[0], NULL, 0), 0);
	/* and one this node dials to the peer's port 22 */
	struct dialed d = {0};
	struct ns_addr dst;
	struct pkt *k;
	struct seg s;
	peer_init(&pout, fam, 0);
	assert_true(ns_addr_parse(&dst, fam == AF_INET ? PEER4 : PEER6));
	assert_int_equal(ns_tcp_dial(&dst, 22, on_dial, &d), 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	free(k);
	pout.port = 22;
	pout.it_port = s.sport;
	pout.synack = true;
	pout.rcv_nxt = s.seq + 1;
	peer_send(&pout, F_SYN | F_ACK, NULL, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, 0);
	spin_ms(2);
	cap_clear();

	/* the new filter leaves 23 only: the connection to 22 goes */
	policy(CTL_FILTER_TCP, only23, 1);
	assert_int_equal(ns_tcp_revoke(keep, acl), 1);
	assert_true(out_through_acl(22, F_RST | F_ACK));
	spin_ms(5);
	ssize_t r = read(sv[1], buf, sizeof(buf));
	assert_true(r <= 0); /* reset (or closed) */
	/* the peer's next segment is dropped: no connection, no answer */
	struct acl_stats st;
	node_acl_stats(acl, &st);
	uint64_t nc = st.drops[ACL_DROP_TCP_NO_CONN];
	peer_send(&p22, F_ACK | F_PSH, "x", 1);
	spin_ms(2);
	node_acl_stats(acl, &st);
	assert_int_equal(st.drops[ACL_DROP_TCP_NO_CONN], nc + 1);
	/* 23 and our own connection stay */
	peer_send(&p23, F_ACK | F_PSH, "hi", 2);
	assert_int_equal(read_all(sv23[1], buf, sizeof(buf), 200), 2);
	bool ours = false;
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
		if (pcb->local_port == s.sport && pcb->remote_port == 22)
			ours = true;
	assert_true(ours);
	/* no filter at all: nothing is revoked by the caller (control.c
	 * calls it only under a policy); a filter admitting nothing ends 23 */
	struct ctl_filter none = {0};
	assert_int_equal(node_acl_set(acl, true, &none, NULL, 0), 0);
	assert_int_equal(ns_tcp_revoke(keep, acl), 1);
	ns_tcp_abort(d.c);
	close(sv[1]);
	close(sv23[1]);
	spin_ms(2);
	cap_clear();
	ns_tcp_unlisten(22);
	ns_tcp_unlisten(23);
	peer_free(&p22);
	peer_free(&p23);
	peer_free(&pout);
}

static void test_tcp_revoked_v4(void **state)
{
	(void)state;
	tcp_revoked(AF_INET);
}

static void test_tcp_revoked_v6(void **state)
{
	(void)state;
	tcp_revoked(AF_INET6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_udp_revoked, rv_setup, rv_teardown),
	    cmocka_unit_test_setup_teardown(test_tcp_revoked_v4, rv_setup, rv_teardown),
	    cmocka_unit_test_setup_teardown(test_tcp_revoked_v6, rv_setup, rv_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
