/* The embedded lwIP stack: one netif that holds the node's mesh addresses,
 * driven by a libevent loop (NO_SYS=1, lwIP timers on an event timer).
 * Packets in: ns_input(). Packets out: the output callback. lwIP is
 * single-instance, so this module is too. */
#ifndef MESH_NS_H
#define MESH_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

struct ns_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

struct ns_config {
	struct ns_addr addrs[4]; /* first IPv4 and up to 3 IPv6 are used */
	size_t n_addrs;
	uint16_t mtu; /* tunnel MTU, e.g. 1420 */
};

/* Called for every IP packet lwIP sends. The buffer is only valid during the
 * call (lwIP keeps TCP pbufs for retransmission: never modify it). */
typedef void (*ns_output_fn)(void *ctx, const uint8_t *pkt, size_t len);

int ns_init(struct event_base *base, const struct ns_config *cfg, ns_output_fn out,
	    void *ctx);
void ns_shutdown(void);

/* Feeds one decrypted IP packet into lwIP (copied). */
void ns_input(const uint8_t *pkt, size_t len);

/* ---- TCP through lwIP ---- */

struct ns_tcp; /* one lwIP TCP connection, before it is spliced */

/* err is 0, or -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -ENOMEM. On error c is
 * NULL and already gone. */
typedef void (*ns_tcp_connected_fn)(void *ctx, struct ns_tcp *c, int err);

/* Starts a connection from our mesh address to dst:port. Returns 0 (the
 * callback will run later, never from inside this call) or -errno. */
int ns_tcp_dial(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
		void *ctx);

/* A new inbound connection to one of our addresses on a listened port. The
 * callee must eventually ns_splice_start() or ns_tcp_abort() it. Data that
 * arrives meanwhile is held by lwIP (the window closes). */
typedef void (*ns_tcp_accept_fn)(void *ctx, struct ns_tcp *c, const struct ns_addr *src,
				 uint16_t sport, uint16_t dport);
/* Returns 0 or -errno (-EADDRINUSE). */
int ns_tcp_listen(uint16_t port, ns_tcp_accept_fn cb, void *ctx);

/* Resets the connection (RST to the mesh side) and frees it. */
void ns_tcp_abort(struct ns_tcp *c);

/* Splices a connected local stream socket (non-blocking) and a lwIP
 * connection until both directions close; takes ownership of both. head (may
 * be NULL) is sent to the mesh side first. Flow control both ways: lwIP's
 * window opens only as the socket drains, the socket is read only while lwIP
 * has send buffer. FIN and RST propagate both ways. Returns 0; on -errno both
 * are closed. */
int ns_splice_start(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len);

/* ---- ICMP ---- */
/* Echo requests to our addresses are answered by lwIP itself. */
typedef void (*ns_ping_fn)(void *ctx, int err, double rtt_ms);
/* Sends one ICMP (v4 or v6) echo request; cb runs with the RTT or -ETIMEDOUT
 * after timeout_ms. */
int ns_ping(const struct ns_addr *dst, unsigned timeout_ms, ns_ping_fn cb, void *ctx);

struct ns_stats {
	uint64_t tcp_active, tcp_total, tcp_refused, tcp_reset;
	uint64_t splice_bytes_in, splice_bytes_out; /* in: mesh->socket */
	uint64_t input_drop;
};
void ns_get_stats(struct ns_stats *st);

/* Parses "1.2.3.4" or "fd00::1" into a. Returns true on success. */
bool ns_addr_parse(struct ns_addr *a, const char *s);

#endif
