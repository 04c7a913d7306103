/* Shared by test_socks5_udp.c and test_udp_tunnel.c: the real netstack
 * (ns_test_peer.h captures what lwIP sends), UDP datagrams from the mesh
 * peer built by hand, and loopback UDP sockets on the host side. Each test
 * program gets its own copy (everything is static). */
#ifndef MESH_TEST_PX_UDP_H
#define MESH_TEST_PX_UDP_H

#include "ns_test_peer.h"

#include "config/config.h"
#include "core/util/log.h"
#include "proxy/internal.h"
#include "proxy/proxy.h"

#include <poll.h>

/* A UDP datagram from src:sport (a peer address as text) to one of ours. */
static inline void mesh_udp_in(const char *src, uint16_t sport, const char *dst,
                               uint16_t dport, const void *data, size_t len)
{
	static uint8_t t[70000];
	struct ns_addr s, d;
	assert_true(ns_addr_parse(&s, src));
	assert_true(ns_addr_parse(&d, dst));
	t[0] = (uint8_t)(sport >> 8), t[1] = (uint8_t)sport;
	t[2] = (uint8_t)(dport >> 8), t[3] = (uint8_t)dport;
	t[4] = (uint8_t)((len + 8) >> 8), t[5] = (uint8_t)(len + 8);
	t[6] = t[7] = 0;
	memcpy(t + 8, data, len);
	uint16_t c = l4_sum(s.family, s.addr, d.addr, 17, t, len + 8, true);
	if (c == 0)
		c = 0xffff;
	t[6] = (uint8_t)(c >> 8), t[7] = (uint8_t)c;
	send_ip(s.family, s.addr, d.addr, 17, t, len + 8);
}

/* One UDP datagram lwIP sent. */
struct mesh_dgram {
	int fam;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	uint8_t data[2048];
	size_t len;
};

/* Runs the loop until lwIP sends a UDP datagram (other packets, such as
 * ICMP, are skipped). false after ms without one. */
static inline bool mesh_udp_out(struct mesh_dgram *m, int ms)
{
	for (int waited = 0; waited <= ms; waited += 5) {
		struct pkt *k;
		while ((k = cap_pop()) != NULL) {
			struct seg s;
			bool ok = parse(k, &s) && s.proto == 17 && s.l4len >= 8;
			if (ok) {
				assert_int_equal(
				    l4_sum(s.fam, s.src, s.dst, 17, s.l4, s.l4len, true),
				    0);
				m->fam = s.fam;
				memcpy(m->src, s.src, 16);
				memcpy(m->dst, s.dst, 16);
				m->sport = (uint16_t)(s.l4[0] << 8 | s.l4[1]);
				m->dport = (uint16_t)(s.l4[2] << 8 | s.l4[3]);
				m->len = s.l4len - 8;
				assert_true(m->len <= sizeof(m->data));
				memcpy(m->data, s.l4 + 8, m->len);
			}
			free(k);
			if (ok)
				return true;
		}
		spin_ms(5);
	}
	return false;
}

/* A non-blocking UDP socket bound to 127.0.0.1 (port 0: any); its port. */
static inline int host_udp(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	if (port)
		*port = ntohs(sin.sin_port);
	return fd;
}

static inline void host_sendto(int fd, uint16_t port, const void *p, size_t n)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(sendto(fd, p, n, 0, (struct sockaddr *)&sin, sizeof(sin)),
	                 (ssize_t)n);
}

/* Runs the loop until fd has a datagram; its length, or -1 after ms. */
static inline ssize_t host_recv(int fd, void *buf, size_t cap, uint16_t *from_port,
                                int ms)
{
	for (int waited = 0; waited <= ms; waited += 5) {
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);
		ssize_t n =
		    recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&sin, &sl);
		if (n >= 0) {
			if (from_port)
				*from_port = ntohs(sin.sin_port);
			return n;
		}
		spin_ms(5);
	}
	return -1;
}

static inline struct cfg_listen loopback_listen(void)
{
	struct cfg_listen l;
	memset(&l, 0, sizeof(l));
	struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l.addr_len = sizeof(*sin);
	return l;
}

#endif
