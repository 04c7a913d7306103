/* Crafted IPv4/IPv6 packets for the inbound filter's tests
 * (test_node_acl*.c): TCP, UDP, ICMP and ICMPv6 with real headers
 * (checksums left zero: the filter does not read them). */
#ifndef MESH_TEST_ACL_PKT_H
#define MESH_TEST_ACL_PKT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define PKT_MAX 1600

struct pkt {
	uint8_t b[PKT_MAX];
	size_t len;
};

static inline void pkt_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* An IP header from src to dst (family by the text) carrying proto, with
 * l4[0..n) after it. */
static inline void pkt_ip(struct pkt *k, const char *src, const char *dst, uint8_t proto,
                          const uint8_t *l4, size_t n)
{
	memset(k, 0, sizeof(*k));
	if (strchr(src, ':')) {
		k->b[0] = 0x60;
		pkt_put16(k->b + 4, (uint16_t)n);
		k->b[6] = proto;
		k->b[7] = 64;
		inet_pton(AF_INET6, src, k->b + 8);
		inet_pton(AF_INET6, dst, k->b + 24);
		memcpy(k->b + 40, l4, n);
		k->len = 40 + n;
	} else {
		k->b[0] = 0x45;
		pkt_put16(k->b + 2, (uint16_t)(20 + n));
		k->b[8] = 64;
		k->b[9] = proto;
		inet_pton(AF_INET, src, k->b + 12);
		inet_pton(AF_INET, dst, k->b + 16);
		memcpy(k->b + 20, l4, n);
		k->len = 20 + n;
	}
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static inline void pkt_tcp(struct pkt *k, const char *src, uint16_t sport,
                           const char *dst, uint16_t dport, uint8_t flags)
{
	uint8_t t[20] = {0};
	pkt_put16(t, sport);
	pkt_put16(t + 2, dport);
	t[12] = 5 << 4;
	t[13] = flags;
	pkt_put16(t + 14, 65535);
	pkt_ip(k, src, dst, 6, t, sizeof(t));
}

static inline void pkt_udp(struct pkt *k, const char *src, uint16_t sport,
                           const char *dst, uint16_t dport)
{
	uint8_t u[12] = {0};
	pkt_put16(u, sport);
	pkt_put16(u + 2, dport);
	pkt_put16(u + 4, sizeof(u));
	memcpy(u + 8, "ping", 4);
	pkt_ip(k, src, dst, 17, u, sizeof(u));
}

/* ICMP (IPv4) or ICMPv6 (by the address family) of type, with id, and
 * body (a quoted packet for errors) after the 8-byte header. */
static inline void pkt_icmp(struct pkt *k, const char *src, const char *dst, uint8_t type,
                            uint16_t id, const uint8_t *body, size_t n)
{
	uint8_t m[PKT_MAX - 60] = {0};
	m[0] = type;
	pkt_put16(m + 4, id);
	pkt_put16(m + 6, 1);
	if (n)
		memcpy(m + 8, body, n);
	pkt_ip(k, src, dst, strchr(src, ':') ? 58 : 1, m, 8 + n);
}

#endif
