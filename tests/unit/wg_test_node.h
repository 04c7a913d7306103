/* Shared by the core/wg socket-level tests (test_wg_socket.c,
 * test_wg_staging.c): devices on one event_base with real UDP sockets,
 * peers with allowed IP 100.64.0.<host>/32, a loop runner and a small
 * IPv4 packet. Everything here is static: each test program gets its own
 * copy. Include after cmocka.h. */
#ifndef MESH_TEST_WG_TEST_NODE_H
#define MESH_TEST_WG_TEST_NODE_H

#include <arpa/inet.h>
#include <event2/event.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "core/wg/device.h"

struct node {
	struct wg_device *dev;
	uint8_t priv[32], pub[32];
	unsigned rx_count;
};

static inline void on_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;

	(void)pkt;
	(void)len;
	n->rx_count++;
}

static inline void node_init(struct event_base *base, struct node *n)
{
	memset(n, 0, sizeof(*n));
	randombytes_buf(n->priv, 32);
	n->priv[0] &= 248;
	n->priv[31] = (n->priv[31] & 127) | 64;
	crypto_scalarmult_base(n->pub, n->priv);
	n->dev = wg_device_new(base, n->priv);
	assert_non_null(n->dev);
	wg_device_set_rx(n->dev, on_rx, n);
	assert_int_equal(wg_device_listen(n->dev, 0), 0);
}

/* addr:port as a socket address: IPv6 when addr has a ':'. */
static inline void sin4(struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, addr, &s->sin_addr), 1);
	}
}

/* Adds `to` as a peer of n with allowed IP 100.64.0.<host>/32 and the
 * endpoint addr:port (addr NULL: none). */
static inline void add_peer(struct node *n, const struct node *to, int host,
                            const char *addr, uint16_t port)
{
	struct wg_allowed_ip ip;
	struct wg_peer_config pc;
	int err = 1;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, to->pub, 32);
	memset(&ip, 0, sizeof(ip));
	ip.family = AF_INET;
	ip.cidr = 32;
	ip.addr[0] = 100, ip.addr[1] = 64, ip.addr[3] = (uint8_t)host;
	pc.allowed_ips = &ip;
	pc.n_allowed_ips = 1;
	if (addr)
		sin4(&pc.endpoint, addr, port);
	assert_non_null(wg_device_add_peer(n->dev, &pc, &err));
	assert_int_equal(err, 0);
}

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline bool run_until(struct event_base *base, const unsigned *counter,
                             unsigned want, int ms)
{
	struct timeval tick = {0, 2000};
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end && *counter < want) {
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	return *counter >= want;
}

/* An IPv4/UDP packet 100.64.0.<from> -> 100.64.0.<to>. */
static inline size_t ip4_packet(uint8_t *pkt, int from, int to)
{
	size_t len = 20 + 8 + 16;

	memset(pkt, 0, len);
	pkt[0] = 0x45;
	pkt[3] = (uint8_t)len;
	pkt[8] = 64;
	pkt[9] = 17;
	pkt[12] = 100, pkt[13] = 64, pkt[15] = (uint8_t)from;
	pkt[16] = 100, pkt[17] = 64, pkt[19] = (uint8_t)to;
	pkt[25] = 8 + 16;
	return len;
}

#endif
