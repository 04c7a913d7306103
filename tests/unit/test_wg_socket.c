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
 *   also in the next flush, and the refusal is counted once.
 * - A source that goes away while one flush holds datagrams to two peers
 *   that learnt it: all arrive, none dropped, no GSO refusal (IPv4, IPv6).
 * - Refusals by the destination's route (GSO too big, no route, blackhole)
 *   never mark our source gone; 17 destinations refusing GSO turn it off
 *   for the device instead of thrashing; a broadcast destination is never
 *   learnt as a source; sources compare equal whatever their padding. */
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

#define DEL_V4                                                                           \
	"ip addr del 198.18.0.3/32 dev lo && "                                           \
	"ip route del local 198.18.0.3 table local 2>/dev/null; true"
#define RESTORE_V4                                                                       \
	"ip addr add 198.18.0.3/32 dev lo && "                                           \
	"ip route replace local 198.18.0.3 dev lo table local src 198.18.0.2"
#define DEL_V6                                                                           \
	"ip addr del fd7a:115c:a1e0:ab12::3/128 dev lo && "                              \
	"ip -6 route del local fd7a:115c:a1e0:ab12::3 table local 2>/dev/null; true"
#define RESTORE_V6                                                                       \
	"ip addr add fd7a:115c:a1e0:ab12::3/128 dev lo nodad && "                        \
	"ip -6 route replace local fd7a:115c:a1e0:ab12::3 dev lo table local "           \
	"src fd7a:115c:a1e0:ab12::2"

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

/* b (allowed IP 100.64.0.<host_b>) writes to a at `a_addr`; a's handshake
 * response and data must come from a_addr, so b's endpoint for a (it
 * follows the source of a's authenticated datagrams) stays a_addr. */
static void reply_from_host(struct event_base *base, struct node *a, struct node *b,
                            int host_b, const char *a_addr)
{
	uint8_t pkt[64];
	size_t n;
	unsigned a_rx = a->rx_count, b_rx = b->rx_count;
	char ep[INET6_ADDRSTRLEN];

	add_peer(a, b, host_b, NULL, 0);
	add_peer(b, a, 1, a_addr, wg_device_port(a->dev));
	n = ip4_packet(pkt, host_b, 1);
	assert_int_equal(wg_device_send(b->dev, pkt, n), 0);
	assert_true(run_until(base, &a->rx_count, a_rx + 1, 3000));
	n = ip4_packet(pkt, 1, host_b);
	assert_int_equal(wg_device_send(a->dev, pkt, n), 0);
	assert_true(run_until(base, &b->rx_count, b_rx + 1, 3000));
	endpoint_of(b->dev, a->pub, ep, sizeof(ep));
	print_message("b sees a at %s (b wrote to %s)\n", ep, a_addr);
	assert_string_equal(ep, a_addr);
}

static void reply_from(struct event_base *base, struct node *a, struct node *b,
                       const char *a_addr)
{
	reply_from_host(base, a, b, 2, a_addr);
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
	assert_int_equal(system(DEL_V4), 0);
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
	assert_int_equal(system(RESTORE_V4), 0);
}

/* Two peers learnt the same source; it goes away while one flush holds
 * datagrams (four each, so coalesced) to both: every datagram still
 * arrives, from another address, nothing is dropped, and neither peer's
 * destination is taken for one that refuses GSO. Before, only the first
 * entry of the batch was rebuilt without the source: the second was refused
 * again and dropped (IPv4) or marked as refusing GSO (IPv6). */
/* Over IPv6 on lo, b and c wrote from ::3 itself (unlike IPv4, the local
 * route's src is not used), so a knows them at ::3, which the test takes
 * away. a's peers are moved to ::2 (their sockets are bound to the
 * wildcard address), keeping the source a learnt. */
static void ipv6_peers_at_2(struct node *a)
{
	for (size_t i = 0; i < a->dev->n_peers; i++) {
		struct wg_peer *p = a->dev->peers[i];
		struct sockaddr_in6 *ep = (struct sockaddr_in6 *)&p->endpoint;

		assert_int_equal(p->src.family, AF_INET6);
		assert_int_equal(
		    inet_pton(AF_INET6, "fd7a:115c:a1e0:ab12::2", &ep->sin6_addr), 1);
	}
}

static void source_gone_two_peers(const char *gone, const char *del, const char *restore)
{
	struct event_base *base;
	struct wg_device_stats st;
	struct node a, b, c;
	uint8_t pkt[64];
	size_t n;

	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	node_init(base, &b);
	node_init(base, &c);
	if (strchr(gone, ':') && a.dev->fd6 < 0) {
		wg_device_free(a.dev);
		wg_device_free(b.dev);
		wg_device_free(c.dev);
		event_base_free(base);
		skip();
	}
	reply_from_host(base, &a, &b, 2, gone);
	reply_from_host(base, &a, &c, 3, gone);
	if (strchr(gone, ':'))
		ipv6_peers_at_2(&a);
	assert_int_equal(system(del), 0);
	wg_device_tx_hold(a.dev);
	for (int to = 2; to <= 3; to++) {
		n = ip4_packet(pkt, 1, to);
		for (int i = 0; i < 4; i++)
			assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	}
	wg_device_tx_release(a.dev);
	run_until(base, &b.rx_count, 1 + 4, 3000);
	run_until(base, &c.rx_count, 1 + 4, 3000);
	wg_device_stats(a.dev, &st);
	print_message("b got %u, c got %u\n", b.rx_count - 1, c.rx_count - 1);
	print_message("src refused %llu, gso refused %llu, dropped %llu\n",
	              (unsigned long long)st.tx_src_refused,
	              (unsigned long long)st.tx_gso_refused,
	              (unsigned long long)st.tx_drop_sock);
	assert_int_equal(b.rx_count, 1 + 4);
	assert_int_equal(c.rx_count, 1 + 4);
	assert_int_equal(st.tx_drop_sock, 0);
	assert_int_equal(st.tx_gso_refused, 0);
	assert_int_equal(st.tx_src_refused, 1);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	wg_device_free(c.dev);
	event_base_free(base);
	assert_int_equal(system(restore), 0);
}

static void test_source_gone_two_peers_one_flush(void **state)
{
	(void)state;
	source_gone_two_peers("198.18.0.3", DEL_V4, RESTORE_V4);
}

static void test_source_gone_two_peers_one_flush_ipv6(void **state)
{
	(void)state;
	source_gone_two_peers("fd7a:115c:a1e0:ab12::3", DEL_V6, RESTORE_V6);
}

/* struct wg_src has padding after family: a mark with other bytes there
 * is still the same source. */
static void test_src_compare_ignores_padding(void **state)
{
	struct event_base *base = event_base_new();
	struct wg_src marked, asked;
	struct node a;

	(void)state;
	node_init(base, &a);
	memset(&marked, 0xa5, sizeof(marked));
	marked.family = AF_INET;
	marked.ifindex = 0;
	assert_int_equal(inet_pton(AF_INET, "198.18.0.3", &marked.addr.v4), 1);
	memset(&asked, 0, sizeof(asked));
	asked.family = AF_INET;
	asked.addr.v4 = marked.addr.v4;
	a.dev->src_gone[0] = marked;
	a.dev->n_src_gone = 1;
	assert_true(wg_socket_src_gone(a.dev, &asked));
	asked.addr.v4.s_addr ^= htonl(1);
	assert_false(wg_socket_src_gone(a.dev, &asked));
	wg_device_free(a.dev);
	event_base_free(base);
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

/* 8 datagrams of 1452 bytes to x, then 8 to y, in one flush, from src
 * (NULL: the kernel picks). */
static void burst_from(struct wg_device *d, const struct sockaddr_storage *x,
                       const struct sockaddr_storage *y, const struct wg_src *src)
{
	static uint8_t dgram[1452];

	memset(dgram, 0x42, sizeof(dgram));
	wg_device_tx_hold(d);
	for (int i = 0; i < 8; i++)
		assert_int_equal(wg_socket_send(d, (const struct sockaddr *)x, src, dgram,
		                                sizeof(dgram)),
		                 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(wg_socket_send(d, (const struct sockaddr *)y, src, dgram,
		                                sizeof(dgram)),
		                 0);
	wg_device_tx_release(d);
	usleep(50 * 1000);
}

static void burst(struct wg_device *d, const struct sockaddr_storage *x,
                  const struct sockaddr_storage *y)
{
	burst_from(d, x, y, NULL);
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

/* Refusals that are the destination's doing, not the source's, with a
 * source set (as for every peer that has written to us): a GSO send that
 * is too big for x's route (EINVAL on some kernels, EMSGSIZE on others), a
 * destination without a route (ENETUNREACH) and one with a blackhole route
 * (EINVAL). Our address is fine: it is not marked gone (a peer holding it
 * keeps it) and nothing is logged about it. Before, EINVAL and ENETUNREACH
 * marked the source gone for every peer on it. */
static void test_refusal_by_destination_does_not_blame_the_source(void **state)
{
	struct event_base *base;
	struct sockaddr_storage x, y, noroute, hole;
	struct wg_device_stats st;
	struct wg_src src;
	struct node a;
	uint8_t small[148];
	uint16_t px, py;
	unsigned most_x, most_y, nx, ny;
	int fx, fy;

	(void)state;
	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	assert_int_equal(system("ip route replace local 198.18.0.2 dev lo table local "
	                        "mtu lock 1400 && "
	                        "ip route replace blackhole 198.19.255.2/32"),
	                 0);
	fx = udp_receiver("198.18.0.2", &px);
	fy = udp_receiver("198.18.0.3", &py);
	sin4(&x, "198.18.0.2", px);
	sin4(&y, "198.18.0.3", py);
	sin4(&noroute, "198.19.255.1", 51820);
	sin4(&hole, "198.19.255.2", 51820);
	memset(&src, 0, sizeof(src));
	src.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "198.18.0.2", &src.addr.v4), 1);
	memset(small, 0x42, sizeof(small));
	wg_device_tx_hold(a.dev);
	assert_int_equal(wg_socket_send(a.dev, (const struct sockaddr *)&noroute, &src,
	                                small, sizeof(small)),
	                 0);
	assert_int_equal(wg_socket_send(a.dev, (const struct sockaddr *)&hole, &src,
	                                small, sizeof(small)),
	                 0);
	wg_device_tx_release(a.dev);
	burst_from(a.dev, &x, &y, &src);
	nx = drain(fx, &most_x);
	ny = drain(fy, &most_y);
	print_message("x got %u, y got %u (at most %u per buffer)\n", nx, ny, most_y);
	assert_int_equal(nx, 8);
	assert_int_equal(ny, 8);
	assert_true(most_y > 1);
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_src_refused, 0);
	assert_int_equal(st.tx_gso_refused, 1);
	assert_int_equal(st.tx_drop_sock, 2); /* the two without a route */
	/* A peer holding that source keeps it. */
	assert_false(wg_socket_src_gone(a.dev, &src));
	close(fx);
	close(fy);
	assert_int_equal(system("ip route replace local 198.18.0.2 dev lo table local && "
	                        "ip route del blackhole 198.19.255.2/32"),
	                 0);
	wg_device_free(a.dev);
	event_base_free(base);
}

/* stderr into a temporary file while a test counts log lines. */
static int stderr_saved = -1;

static FILE *capture_stderr(void)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	fflush(stderr);
	stderr_saved = dup(2);
	assert_true(stderr_saved >= 0);
	assert_int_equal(dup2(fileno(f), 2), 2);
	return f;
}

/* Restores stderr; returns the captured lines that contain `what`. */
static unsigned captured_lines(FILE *f, const char *what)
{
	char line[1200];
	unsigned n = 0;

	fflush(stderr);
	dup2(stderr_saved, 2);
	close(stderr_saved);
	rewind(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, what)) {
			n++;
			print_message("log: %s", line);
		}
	fclose(f);
	return n;
}

#define MANY_DESTS 17

/* More destinations refuse GSO than the device remembers one by one (as
 * on an uplink whose MTU is below the packets, or without checksum
 * offload, where every destination refuses): after a few, GSO is off for
 * the whole device for a while. Before, the 16-entry list thrashed: every
 * flush to a forgotten destination cost a refused send, a count and a log
 * line, for ever. */
static void test_gso_refused_by_many_turns_it_off(void **state)
{
	struct event_base *base;
	struct sockaddr_storage to[MANY_DESTS];
	struct wg_device_stats st;
	static uint8_t dgram[1452];
	int fd[MANY_DESTS];
	unsigned got = 0, lines;
	struct node a;
	char cmd[256], addr[32];
	FILE *log;

	(void)state;
	if (!own_netns)
		skip();
	base = event_base_new();
	node_init(base, &a);
	memset(dgram, 0x42, sizeof(dgram));
	for (int i = 0; i < MANY_DESTS; i++) {
		uint16_t port;

		snprintf(addr, sizeof(addr), "198.18.0.%d", 10 + i);
		snprintf(cmd, sizeof(cmd),
		         "ip addr add %s/32 dev lo && ip route replace local %s dev lo "
		         "table local mtu lock 1400",
		         addr, addr);
		assert_int_equal(system(cmd), 0);
		fd[i] = udp_receiver(addr, &port);
		sin4(&to[i], addr, port);
	}
	log = capture_stderr();
	for (int round = 0; round < 10; round++) {
		wg_device_tx_hold(a.dev);
		for (int i = 0; i < MANY_DESTS; i++)
			for (int k = 0; k < 2; k++)
				assert_int_equal(
				    wg_socket_send(a.dev, (const struct sockaddr *)&to[i],
				                   NULL, dgram, sizeof(dgram)),
				    0);
		wg_device_tx_release(a.dev);
		usleep(20 * 1000);
		for (int i = 0; i < MANY_DESTS; i++) {
			unsigned most;

			got += drain(fd[i], &most);
		}
	}
	lines = captured_lines(log, "GSO");
	wg_device_stats(a.dev, &st);
	print_message("%u datagrams arrived, %llu refusals, %u log lines\n", got,
	              (unsigned long long)st.tx_gso_refused, lines);
	assert_int_equal(got, 10 * MANY_DESTS * 2);
	assert_int_equal(st.tx_drop_sock, 0);
	assert_true(st.tx_gso_refused <= MANY_DESTS);
	assert_true(lines <= 6);
	for (int i = 0; i < MANY_DESTS; i++) {
		close(fd[i]);
		snprintf(cmd, sizeof(cmd), "ip addr del 198.18.0.%d/32 dev lo", 10 + i);
		assert_int_equal(system(cmd), 0);
	}
	wg_device_free(a.dev);
	event_base_free(base);
}

/* A handshake sent to a broadcast address is answered from one of our
 * unicast addresses: the broadcast address is never taken as the peer's
 * source. Before, IP_PKTINFO's ipi_addr (the header's destination) was
 * stored, and every reply was refused by the kernel first (marking the
 * "address" gone and logging it). */
static void test_broadcast_is_not_a_source(void **state)
{
	struct event_base *base;
	struct wg_device_stats st;
	struct in_addr bcast;
	struct node a, b;
	uint8_t pkt[64];
	size_t n;
	int one = 1;

	(void)state;
	if (!own_netns)
		skip();
	assert_int_equal(system("ip addr add 198.18.1.1/24 brd 198.18.1.255 dev lo"), 0);
	base = event_base_new();
	node_init(base, &a);
	node_init(base, &b);
	assert_int_equal(
	    setsockopt(b.dev->fd4, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)), 0);
	add_peer(&a, &b, 2, NULL, 0);
	add_peer(&b, &a, 1, "198.18.1.255", wg_device_port(a.dev));
	n = ip4_packet(pkt, 2, 1);
	assert_int_equal(wg_device_send(b.dev, pkt, n), 0);
	assert_true(run_until(base, &a.rx_count, 1, 3000));
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_src_refused, 0);
	assert_int_equal(inet_pton(AF_INET, "198.18.1.255", &bcast), 1);
	assert_true(a.dev->peers[0]->src.family == 0 ||
	            a.dev->peers[0]->src.addr.v4.s_addr != bcast.s_addr);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
	assert_int_equal(system("ip addr del 198.18.1.1/24 dev lo"), 0);
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

/* Before each test: the namespace as enter_netns made it, whatever an
 * earlier (failed) test left behind. */
static int ns_reset(void **state)
{
	(void)state;
	if (own_netns &&
	    system(
	        "ip addr replace 198.18.0.3/32 dev lo && "
	        "ip route replace local 198.18.0.3 dev lo table local src 198.18.0.2 && "
	        "ip route replace local 198.18.0.2 dev lo table local && "
	        "{ ip route del blackhole 198.19.255.2/32 2>/dev/null; true; } && "
	        "ip addr replace fd7a:115c:a1e0:ab12::3/128 dev lo nodad && "
	        "ip -6 route replace local fd7a:115c:a1e0:ab12::3 dev lo table local "
	        "src fd7a:115c:a1e0:ab12::2 && "
	        "{ ip addr del 198.18.1.1/24 dev lo 2>/dev/null; "
	        "for i in $(seq 10 26); do ip addr del 198.18.0.$i/32 dev lo; done; "
	        "} 2>/dev/null; true") != 0)
		return -1;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_reply_from_the_address_written_to, ns_reset),
	    cmocka_unit_test_setup(test_reply_from_the_address_written_to_ipv6, ns_reset),
	    cmocka_unit_test_setup(test_source_gone_falls_back, ns_reset),
	    cmocka_unit_test_setup(test_source_gone_two_peers_one_flush, ns_reset),
	    cmocka_unit_test_setup(test_source_gone_two_peers_one_flush_ipv6, ns_reset),
	    cmocka_unit_test_setup(test_src_compare_ignores_padding, ns_reset),
	    cmocka_unit_test_setup(test_gso_refusal_is_per_destination, ns_reset),
	    cmocka_unit_test_setup(test_refusal_by_destination_does_not_blame_the_source,
	                           ns_reset),
	    cmocka_unit_test_setup(test_gso_refused_by_many_turns_it_off, ns_reset),
	    cmocka_unit_test_setup(test_broadcast_is_not_a_source, ns_reset),
	};

	if (sodium_init() < 0)
		return 1;
	enter_netns();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
