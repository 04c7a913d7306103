/* The insides of struct wg_device, shared by the files of core/wg (device.c,
 * socket.c, send.c, receive.c, peer.c, timers.c) and by tests and fuzzers.
 * Nothing outside core/wg and tests/ should include this. */
#ifndef MESH_WG_DEVICE_INTERNAL_H
#define MESH_WG_DEVICE_INTERNAL_H

#include "core/wg/cookie.h"
#include "core/wg/device.h"
#include "core/wg/noise.h"
#include "core/wg/peerlookup.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event;
struct mmsghdr;
struct wg_allowedips;
struct wg_ratelimiter;
struct wg_tx_queue;

#ifndef WG_RX_BATCH /* overridable with -D for A/B measurements */
#define WG_RX_BATCH 16
#endif
/* Transmit batching: datagrams written during one event-loop callback are
 * packed into an arena and leave in one sendmmsg when the callback returns
 * (or when the arena or the batch is full). Larger datagrams go out alone. */
#define WG_TX_BATCH        64
#define WG_TX_ARENA_BYTES  (64 * 1024)
#define WG_MAX_UDP_PAYLOAD 65536
/* Plaintext room: the largest IP packet plus padding. */
#define WG_MAX_PLAINTEXT (65535 + WG_MESSAGE_PADDING_MULTIPLE)
/* Handshake messages per second above which the device counts as under load
 * (then mac2 is required and the per-source rate limiter applies). */
#define WG_UNDER_LOAD_HANDSHAKES_PER_SEC 256

/* The local address a peer's datagrams arrived on, which replies to it are
 * sent from (the sticky source of the kernel's endpoint.src4/src6 and of
 * wireguard-go's Linux bind): on a host with several addresses the peer
 * then hears from the address it wrote to, as its NAT or firewall expects.
 * family 0: none, the kernel's routing picks the source. Compared field by
 * field (socket.c src_equal): never with memcmp, the struct has padding.
 * Never a broadcast or multicast address. */
struct wg_src {
	sa_family_t family;
	uint32_t ifindex; /* IPv6 link-local sources only, else 0 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};
/* Sources the kernel refused to send from (the address went away), kept
 * until a datagram arrives on them again; a peer holding one drops it. */
#define WG_SRC_GONE_MAX 4

struct wg_device {
	struct event_base *base;
	struct wg_noise_identity id;
	struct wg_cookie_checker cookie_checker;
	struct wg_ratelimiter *ratelimiter;
	struct wg_allowedips *aips;
	struct wg_index_table *index;
	struct wg_pubkey_table *pubkeys;

	struct wg_peer **peers; /* insertion order */
	size_t n_peers, cap_peers;

	int fd4, fd6; /* -1 when closed */
	struct event *ev4, *ev6;
	uint16_t mtu; /* tunnel MTU: padding never goes past it (0: unknown) */
	uint16_t port;

	wg_rx_fn rx;
	void *rx_ctx;
	/* Tests and fuzzers: when set, datagrams go here instead of a socket. */
	void (*tx_hook)(void *ctx, const struct sockaddr *to, const uint8_t *buf,
	                size_t len);
	void *tx_hook_ctx;
	struct wg_device_stats stats;

	/* Under-load detection: handshake messages in the current second. */
	uint64_t load_window_start_ns;
	unsigned load_window_count;
	uint64_t last_under_load_ns;
	int force_under_load; /* -1: automatic; 0/1: forced (tests) */

	uint8_t *tx_buf;   /* header + WG_MAX_PLAINTEXT + tag */
	uint8_t *rx_plain; /* WG_MAX_PLAINTEXT */
	uint8_t *rx_bufs;  /* WG_RX_BATCH * WG_MAX_UDP_PAYLOAD, for recvmmsg */
	struct mmsghdr *rx_msgs;
	struct iovec *rx_iovs;
	struct sockaddr_storage *rx_addrs;
	uint8_t *rx_ctl;      /* WG_RX_BATCH control buffers (UDP_GRO, PKTINFO) */
	struct wg_src rx_src; /* where the datagram being received arrived */
	struct wg_src src_gone[WG_SRC_GONE_MAX];
	unsigned n_src_gone;
	uint64_t src_log_window_ns; /* "cannot send from" lines: rate limit */
	unsigned src_logged;
	/* The last answer of socket.c's src_still_ours, kept for a second. */
	struct wg_src probe_src;
	uint64_t probe_ns;
	bool probe_ours;

	/* Transmit queue (socket.c): used while tx_hold > 0. */
	struct wg_tx_queue *txq;
	unsigned tx_hold;
	bool tx_defer;             /* wg_device_set_tx_defer */

	struct wg_path_hooks path; /* wg_device_set_path_hooks */
	/* The datagram being received came through the relay from this key
	 * (NULL: from the UDP socket). */
	const uint8_t *rx_relay_key;
	struct event *tx_flush_ev; /* flushes a deferred queue */
};

/* Monotonic clock (CLOCK_BOOTTIME) in nanoseconds. */
uint64_t wg_now_ns(void);

/* The receive path for one UDP payload from src (any of the four message
 * types; anything else is dropped and counted). Exposed for the fuzzer and
 * for a future socket demultiplexer. */
void wg_device_receive(struct wg_device *d, const uint8_t *p, size_t len,
                       const struct sockaddr *src);

/* Tests and fuzzers: capture outgoing datagrams instead of sending them. */
void wg_device_set_tx_hook(struct wg_device *d,
                           void (*fn)(void *ctx, const struct sockaddr *to,
                                      const uint8_t *buf, size_t len),
                           void *ctx);

/* Tests: force the under-load state (1 or 0), or back to automatic (-1). */
void wg_device_force_under_load(struct wg_device *d, int mode);

/* socket.c */
int wg_socket_open(struct wg_device *d, uint16_t port);
void wg_socket_close(struct wg_device *d);
/* Sends one datagram to sa, from src if it is set (NULL or family 0: the
 * kernel picks), or queues it while the device is held (see
 * wg_device_tx_hold). Returns 0 or -errno (counted in tx_drop_sock; a
 * queued datagram that fails is counted when the queue is flushed). A
 * source the kernel refuses (the address is gone) is dropped, the datagram
 * sent without it, and the source marked gone (wg_socket_src_gone). */
int wg_socket_send(struct wg_device *d, const struct sockaddr *sa,
                   const struct wg_src *src, const uint8_t *buf, size_t len);
/* True if the kernel refused to send from src since a datagram last
 * arrived on it. */
bool wg_socket_src_gone(const struct wg_device *d, const struct wg_src *src);
/* Sends what is queued now. */
void wg_socket_flush(struct wg_device *d);

/* send.c */
/* The padded plaintext length of a len-byte packet at this MTU (send.c). */
size_t wg_padded_len(size_t len, uint16_t mtu);
void wg_send_handshake_initiation(struct wg_peer *p, bool is_retry);
void wg_send_handshake_response(struct wg_peer *p);
void wg_send_cookie_reply(struct wg_device *d, const uint8_t *msg, size_t len,
                          uint32_t sender_index, const struct sockaddr *src);
void wg_send_keepalive(struct wg_peer *p);
/* Encrypts and sends the staged packets, or starts a handshake if there is
 * no usable session. */
void wg_send_staged(struct wg_peer *p);
/* The fast path of wg_device_send: encrypts pkt for p right away if p has a
 * usable session and nothing staged; else stages it. Returns 0, -ENOBUFS. */
int wg_send_packet(struct wg_peer *p, const uint8_t *pkt, size_t len);

#endif
