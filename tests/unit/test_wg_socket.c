/* core/wg's sockets on real UDP: the sticky source address and GSO refusal
 * per destination.
 *
 * - A peer that writes to one of our addresses hears back from that
 *   address, not from the one the routing table would pick (127.0.0.2
 *   here, while replies to 127.0.0.1 would leave from 127.0.0.1), also
 *   after the same endpoint is configured again.
 * - As root, in a network namespace of its own (skipped otherwise): over
 *   IPv6 the address written to is learnt and replies from it arrive. When
 *   that address goes away, the next datagram leaves from another address
 *   (counted once), and the peer gets it.
 * - As root, same namespace: one destination's route refuses GSO sends
 *   (mtu lock 1400, 1452-byte datagrams); its datagrams still all arrive,
 *   sent one by one, while another destination keeps getting GSO batches,
 *   also in the next flush, and the refusal is counted once. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sodium.h>
#include <sys/socket.h>

#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "wg_test_node.h"

/* In a namespace of our own with 198.18.0.2 and 198.18.0.3 on lo. */
static bool own_netns;

/* d's endpoint address for the peer with key (no port). */
static void endpoint_of(struct wg_device *d, const uint8_t *key, char *buf, size_t len)
{
	struct wg_peer_info info;
	const void *a;

	assert_int_equal(wg_device_peer_info_by_key(d, key, &info), 0);
	if (info.endpoint.ss_family == AF_INET6)
		a = &((struct sockaddr_in6 *)&info.endpoint)->sin6_addr;
	else
		a = &((struct sockaddr_in *)&info.endpoint)->sin_addr;
	assert_non_null(inet_ntop(info.endpoint.ss_family, a, buf, (socklen_t)len));
}

/* b writes to a at `a_addr`; a's handshake response and data must come from
 * a_addr, so b's endpoint for a (it follows the source of a's
 * authenticated datagrams) stays a_addr. */
static void reply_from(struct event_base *base, struct node *a, struct node *b,
                       const char *a_addr)
{
	uint8_t pkt[64];
	size_t n;
	char ep[INET6_ADDRSTRLEN];

	add_peer(a, b, 2, NULL, 0);
	add_peer(b, a, 1, a_addr, wg_device_port(a->dev));
	n = ip4_packet(pkt, 2, 1);
	assert_int_equal(wg_device_send(b->dev, pkt, n), 0);
	assert_true(run_until(base, &a->rx_count, 1, 3000));
	n = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(a->dev, pkt, n), 0);
	assert_true(run_until(base, &b->rx_count, 1, 3000));
	endpoint_of(b->dev, a->pub, ep, sizeof(ep));
	print_message("b sees a at %s (b wrote to %s)\n", ep, a_addr);
	assert_string_equal(ep, a_addr);
}

static void test_reply_from_the_address_written_to(void **state)
{
	struct event_base *base = event_base_new();
	struct node a, b;

	(void)state;
	node_init(base, &a);
	node_init(base, &b);
	/* b's datagrams to 127.0.0.2 leave from 127.0.0.1 (the route's
	 * source); replies to 127.0.0.1 would leave from 127.0.0.1 too. */
	reply_from(base, &a, &b, "127.0.0.2");

	/* The same endpoint set again (a map refresh) keeps the source. */
	struct wg_peer_info info;
	struct wg_peer_config pc;
	uint8_t pkt[64];
	size_t n = ip4_packet(pkt, 1, 2);
	char ep[INET6_ADDRSTRLEN];

	assert_int_equal(wg_device_peer_info_by_key(a.dev, b.pub, &info), 0);
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, b.pub, 32);
	pc.endpoint = info.endpoint;
	assert_int_equal(wg_device_update_peer(a.dev, &pc, WG_PEER_UPD_ENDPOINT), 0);
	assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	assert_true(run_until(base, &b.rx_count, 2, 3000));
	endpoint_of(b.dev, a.pub, ep, sizeof(ep));
	assert_string_equal(ep, "127.0.0.2");
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

static void test_source_gone_falls_back(void **state)
{
	struct event_base *base;
	struct wg_device_stats st;
	struct node a, b;
	uint8_t pkt[64];
	size_t n;
	char ep[INET6_ADDRSTRLEN];

	(void)state;
	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	node_init(base, &b);
	/* b writes to 198.18.0.3 from 198.18.0.2 (the route's source). */
	reply_from(base, &a, &b, "198.18.0.3");
	assert_int_equal(
	    system("ip addr del 198.18.0.3/32 dev lo && "
	           "ip route del local 198.18.0.3 table local 2>/dev/null; true"),
	    0);
	n = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	assert_true(run_until(base, &b.rx_count, 2, 3000));
	endpoint_of(b.dev, a.pub, ep, sizeof(ep));
	assert_string_equal(ep, "198.18.0.2");
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_src_refused, 1);
	/* The peer let the address go: the next datagram is not refused. */
	assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	assert_true(run_until(base, &b.rx_count, 3, 3000));
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_src_refused, 1);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
	assert_int_equal(system("ip addr add 198.18.0.3/32 dev lo"), 0);
}

/* IPv6: a learns the address b wrote to from IPV6_PKTINFO and its
 * replies (sent with IPV6_PKTINFO) arrive. On lo b's source is the
 * address it writes to, so unlike IPv4 the peer's view cannot tell the
 * difference here; a's stored source is checked instead. */
static void test_reply_from_the_address_written_to_ipv6(void **state)
{
	struct event_base *base;
	struct node a, b;

	(void)state;
	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	node_init(base, &b);
	if (a.dev->fd6 < 0) {
		wg_device_free(a.dev);
		wg_device_free(b.dev);
		event_base_free(base);
		skip();
	}
	reply_from(base, &a, &b, "fd7a:115c:a1e0:ab12::3");
	struct in6_addr want;
	const struct wg_peer *p = a.dev->peers[0];

	assert_int_equal(inet_pton(AF_INET6, "fd7a:115c:a1e0:ab12::3", &want), 1);
	assert_int_equal(p->src.family, AF_INET6);
	assert_memory_equal(&p->src.addr.v6, &want, sizeof(want));
	assert_int_equal(p->src.ifindex, 0);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

static int udp_receiver(const char *addr, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int buf = 8 << 20;

	assert_true(fd >= 0);
	sin4(&ss, addr, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	assert_int_equal(setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	return fd;
}

/* Reads what fd has: the datagrams (GRO buffers split by their segment
 * size) and the most segments seen in one buffer (>1: sent with GSO). */
static unsigned drain(int fd, unsigned *most)
{
	static uint8_t buf[70000];
	unsigned count = 0;

	*most = 0;
	for (;;) {
		union {
			char b[64];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr h = {.msg_iov = &iov,
		                   .msg_iovlen = 1,
		                   .msg_control = ctl.b,
		                   .msg_controllen = sizeof(ctl.b)};
		ssize_t r = recvmsg(fd, &h, 0);
		unsigned segs = 1;

		if (r < 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
			if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
				int seg;

				memcpy(&seg, CMSG_DATA(c), sizeof(seg));
				segs = (unsigned)(((size_t)r + (size_t)seg - 1) /
				                  (size_t)seg);
			}
		}
		count += segs;
		if (segs > *most)
			*most = segs;
	}
	return count;
}

/* 8 datagrams of 1452 bytes to x, then 8 to y, in one flush. */
static void burst(struct wg_device *d, const struct sockaddr_storage *x,
                  const struct sockaddr_storage *y)
{
	static uint8_t dgram[1452];

	memset(dgram, 0x42, sizeof(dgram));
	wg_device_tx_hold(d);
	for (int i = 0; i < 8; i++)
		assert_int_equal(wg_socket_send(d, (const struct sockaddr *)x, NULL,
		                                dgram, sizeof(dgram)),
		                 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(wg_socket_send(d, (const struct sockaddr *)y, NULL,
		                                dgram, sizeof(dgram)),
		                 0);
	wg_device_tx_release(d);
	usleep(50 * 1000);
}

static void test_gso_refusal_is_per_destination(void **state)
{
	struct event_base *base;
	struct sockaddr_storage x, y;
	struct wg_device_stats st;
	struct node a;
	uint16_t px, py;
	unsigned most_x, most_y;
	int fx, fy;

	(void)state;
	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	/* x's route takes at most 1400 bytes: a GSO send of 1452-byte
	 * segments is refused there (EMSGSIZE or EINVAL, by kernel). */
	assert_int_equal(system("ip route replace local 198.18.0.2 dev lo table local "
	                        "mtu lock 1400"),
	                 0);
	fx = udp_receiver("198.18.0.2", &px);
	fy = udp_receiver("198.18.0.3", &py);
	sin4(&x, "198.18.0.2", px);
	sin4(&y, "198.18.0.3", py);
	for (int round = 0; round < 2; round++) {
		burst(a.dev, &x, &y);
		unsigned nx = drain(fx, &most_x), ny = drain(fy, &most_y);

		print_message("round %d: x got %u (at most %u per buffer), y got %u (at "
		              "most %u per buffer)\n",
		              round, nx, most_x, ny, most_y);
		assert_int_equal(nx, 8); /* sent one by one (and fragmented) */
		assert_int_equal(most_x, 1);
		assert_int_equal(ny, 8);
		assert_true(most_y > 1); /* y still gets GSO batches */
		wg_device_stats(a.dev, &st);
		assert_int_equal(st.tx_gso_refused, 1);
		assert_int_equal(st.tx_drop_sock, 0);
	}
	close(fx);
	close(fy);
	assert_int_equal(system("ip route replace local 198.18.0.2 dev lo table local"),
	                 0);
	wg_device_free(a.dev);
	event_base_free(base);
}

/* A network namespace of our own (as root): lo up with 198.18.0.2 and
 * 198.18.0.3, fd7a:115c:a1e0:ab12::2 and ::3; datagrams to .3 / ::3 leave
 * from .2 / ::2. */
static void enter_netns(void)
{
	if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
		print_message("not root (or no user namespaces): the namespace tests "
		              "are skipped\n");
		return;
	}
	if (system(
	        "ip link set lo up && ip addr add 198.18.0.2/32 dev lo && "
	        "ip addr add 198.18.0.3/32 dev lo && "
	        "ip route replace local 198.18.0.3 dev lo table local src 198.18.0.2 && "
	        "ip addr add fd7a:115c:a1e0:ab12::2/128 dev lo nodad && "
	        "ip addr add fd7a:115c:a1e0:ab12::3/128 dev lo nodad && "
	        "ip -6 route replace local fd7a:115c:a1e0:ab12::3 dev lo table local "
	        "src fd7a:115c:a1e0:ab12::2") != 0) {
		print_message("ip(8) failed: the namespace tests are skipped\n");
		return;
	}
	own_netns = true;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_from_the_address_written_to),
	    cmocka_unit_test(test_reply_from_the_address_written_to_ipv6),
	    cmocka_unit_test(test_source_gone_falls_back),
	    cmocka_unit_test(test_gso_refusal_is_per_destination),
	};

	if (sodium_init() < 0)
		return 1;
	enter_netns();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
