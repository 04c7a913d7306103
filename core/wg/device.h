/* A WireGuard device in user space: the UDP sockets, the peers, handshakes,
 * sessions and timers, all on one libevent event_base. It moves IP packets:
 * wg_device_send() takes a plaintext IP packet, picks the peer by
 * allowed-IPs, encrypts and sends; received transport packets are decrypted,
 * checked (source address in the peer's allowed IPs) and handed to the rx
 * callback. It knows nothing about lwIP. */
#ifndef MESH_WG_DEVICE_H
#define MESH_WG_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct wg_device;
struct wg_peer;

#define WG_KEY_LEN 32

struct wg_allowed_ip {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t cidr;
};

struct wg_peer_config {
	uint8_t public_key[WG_KEY_LEN];
	uint8_t preshared_key[WG_KEY_LEN];
	bool has_preshared_key;
	struct sockaddr_storage endpoint; /* ss_family 0: none (wait to be contacted) */
	const struct wg_allowed_ip *allowed_ips;
	size_t n_allowed_ips;
	uint16_t persistent_keepalive; /* seconds, 0 = off */
};

/* Called with each authenticated, allowed-IPs-checked IP packet. The buffer is
 * only valid during the call. */
typedef void (*wg_rx_fn)(void *ctx, const uint8_t *pkt, size_t len);

struct wg_device *wg_device_new(struct event_base *base,
                                const uint8_t private_key[WG_KEY_LEN]);
void wg_device_free(struct wg_device *d); /* accepts NULL; wipes keys */

/* Binds the UDP sockets (IPv4 and, if the host has it, IPv6) on port
 * (0 = kernel picks). Returns 0 or -errno. */
int wg_device_listen(struct wg_device *d, uint16_t port);
uint16_t wg_device_port(const struct wg_device *d);
/* The tunnel MTU (the netstack's): message padding stops at it, as in the
 * kernel and wireguard-go. 0 (the default) pads to 16 always. */
void wg_device_set_mtu(struct wg_device *d, uint16_t mtu);

void wg_device_set_rx(struct wg_device *d, wg_rx_fn fn, void *ctx);

/* Returns the peer, or NULL (errno-style reason in *err if err != NULL:
 * -EEXIST for a duplicate key, -EINVAL for our own key or bad input). */
struct wg_peer *wg_device_add_peer(struct wg_device *d, const struct wg_peer_config *cfg,
                                   int *err);

/* Sends one plaintext IP packet (IPv4 or IPv6, len <= 65535). Returns 0 when
 * sent or queued behind a handshake, -EHOSTUNREACH when no peer's allowed IPs
 * cover the destination, -EINVAL for a malformed packet, -ENOBUFS when it
 * cannot be queued (no memory; dropped and counted). A peer's staging queue
 * holds WG_MAX_STAGED_PACKETS: when full, its oldest packet is dropped (and
 * counted in tx_drop_queue) for the new one, as in the kernel. */
int wg_device_send(struct wg_device *d, const uint8_t *pkt, size_t len);

/* True when some peer's allowed IPs cover the address. */
bool wg_device_has_route(const struct wg_device *d, int family, const uint8_t *addr);
/* The public key of the peer whose allowed IPs cover the address (the
 * longest match: where a packet to it goes), or NULL. Valid until the
 * peer is removed. */
const uint8_t *wg_device_route_key(const struct wg_device *d, int family,
                                   const uint8_t *addr);

/* Starts a handshake with every peer that has an endpoint (used at start-up
 * so a node is reachable at once; the paper's timers do the rest). */
void wg_device_handshake_all(struct wg_device *d);
/* After our address changed: a handshake (from the new address, which the
 * peer roams to) only with the peers in use: a current session still
 * valid, or a datagram from them in the last active_ms. An idle or offline
 * peer gets none (its timers handshake when there is data). Returns how
 * many were started. */
size_t wg_device_handshake_active(struct wg_device *d, uint32_t active_ms);

struct wg_peer_info {
	uint8_t public_key[WG_KEY_LEN];
	struct sockaddr_storage endpoint; /* ss_family 0: unknown */
	int64_t last_handshake_unix;      /* seconds since the epoch, 0 = never */
	uint64_t rx_bytes, tx_bytes;      /* transport payload bytes on the wire */
	uint64_t handshakes_sent, handshakes_completed;
	uint16_t persistent_keepalive;
	size_t n_allowed_ips;
	/* Paths (wg_device_set_peer_path). via_relay: the next datagram to
	 * this peer goes through the relay (no trusted direct path). */
	bool via_relay, relay_ok, direct_trusted;
	uint64_t relay_tx_bytes, relay_rx_bytes;
	int64_t last_direct_rx_ms, last_relay_rx_ms; /* ms ago, -1: never */
	/* The last handshake by the boot-time clock (a wall clock step does
	 * not move it): ms ago, -1: never. */
	int64_t last_handshake_ms;
};

struct wg_device_stats {
	uint64_t rx_packets, tx_packets;
	uint64_t rx_drop_short, rx_drop_type, rx_drop_mac, rx_drop_decrypt;
	uint64_t rx_drop_replay, rx_drop_allowedips, rx_drop_nokey, rx_drop_ratelimit;
	uint64_t tx_drop_noroute, tx_drop_queue, tx_drop_sock;
	uint64_t cookies_sent, cookies_received;
	/* Batching: received buffers that held several datagrams (UDP GRO);
	 * GSO sends a destination refused (that destination then gets plain
	 * sends for WG_GSO_RETRY_SEC, the others keep GSO). */
	uint64_t rx_gro_buffers, tx_gso_refused;
	/* Sticky sources the kernel refused (the local address went away);
	 * those datagrams left from the address the kernel chose. */
	uint64_t tx_src_refused;
	/* Paths: datagrams that came through the relay, relayed ones whose
	 * sender's relay key was not the key of the peer they authenticated
	 * as (dropped), sends the relay refused, and datagrams on the UDP
	 * socket that are not WireGuard, handed to the owner (disco, STUN). */
	uint64_t rx_relayed, rx_drop_relay_key, tx_drop_relay, rx_other;
	/* The per-peer counters of peers removed since the start
	 * (wg_device_remove_peer): a total over the current peers plus these
	 * never goes down. */
	uint64_t retired_rx_bytes, retired_tx_bytes;
	uint64_t retired_handshakes_sent, retired_handshakes_completed;
};

/* Transmit batching: between hold and release (nestable), the datagrams the
 * device sends are queued and leave together (sendmmsg) at the last release
 * or when the queue fills. The device holds itself while it reads its
 * sockets; a caller that sends many packets in one loop callback may wrap
 * them too. Release must follow in the same callback. */
void wg_device_tx_hold(struct wg_device *d);
void wg_device_tx_release(struct wg_device *d);
/* on: every send happens inside a callback of the device's event loop, so
 * datagrams sent outside a hold may wait until that callback returns (they
 * then leave together). Off (the default): they leave at once. */
void wg_device_set_tx_defer(struct wg_device *d, bool on);

size_t wg_device_peer_count(const struct wg_device *d);
/* Fills info for the i-th peer (in insertion order). Returns 0 or -ENOENT. */
int wg_device_peer_info(const struct wg_device *d, size_t i, struct wg_peer_info *info);
void wg_device_stats(const struct wg_device *d, struct wg_device_stats *st);

/* ---- Peers that change at run time (the network map) ----
 * All three are safe at any time from the loop (not from inside the rx
 * callback). */

/* Removes the peer with this public key: its timers stop, its sessions and
 * handshake are wiped and their indices leave the table, staged packets are
 * dropped, its allowed IPs are removed. A packet for one of its old
 * addresses then gets -EHOSTUNREACH. Returns 0 or -ENOENT. */
int wg_device_remove_peer(struct wg_device *d, const uint8_t public_key[WG_KEY_LEN]);

enum {
	WG_PEER_UPD_ENDPOINT = 1 << 0,    /* cfg->endpoint (family 0: forget it) */
	WG_PEER_UPD_ALLOWED_IPS = 1 << 1, /* replace the whole set */
	WG_PEER_UPD_KEEPALIVE = 1 << 2,   /* cfg->persistent_keepalive */
};
/* Changes the fields chosen by mask of the peer with cfg->public_key;
 * sessions survive. Returns 0, -ENOENT, -EINVAL (bad allowed IP), -ENOMEM
 * (the old allowed IPs then stay). */
int wg_device_update_peer(struct wg_device *d, const struct wg_peer_config *cfg,
                          unsigned mask);

/* wg_device_peer_info by public key. Returns 0 or -ENOENT. */
int wg_device_peer_info_by_key(const struct wg_device *d,
                               const uint8_t public_key[WG_KEY_LEN],
                               struct wg_peer_info *info);

/* ---- Paths: direct UDP and the relay ----
 * A map peer's datagrams go either straight to its UDP endpoint or through
 * a relay (by its public key). The owner (the node's path layer) decides
 * which, per peer, and keeps the device told:
 *
 *  - relay_ok: a relay reaches this peer now.
 *  - direct_trust_ms: the endpoint was validated both ways (a disco pong
 *    from it) and is trusted for this many ms from now (0: not trusted).
 *
 * Each datagram to the peer then goes:
 *  - to the endpoint alone, while the endpoint is trusted, or when no relay
 *    reaches the peer (the plain WireGuard behaviour: static peers never
 *    see a difference; in a mesh without relays the owner's disco pings
 *    may still move the endpoint to a validated address);
 *  - else through the relay; handshake messages also go to the endpoint,
 *    if there is one, so a working direct path is found at once.
 * Sending with no trusted path calls the untrusted hook (at most once a
 * second per peer) so the owner can start validating paths. */
typedef int (*wg_relay_tx_fn)(void *ctx, const uint8_t peer_key[WG_KEY_LEN],
                              const uint8_t *buf, size_t len);
typedef void (*wg_untrusted_fn)(void *ctx, const uint8_t peer_key[WG_KEY_LEN]);
/* Datagrams on the UDP socket that are not WireGuard messages. */
typedef void (*wg_other_rx_fn)(void *ctx, const uint8_t *buf, size_t len,
                               const struct sockaddr *src);

struct wg_path_hooks {
	wg_relay_tx_fn relay_tx;   /* 0 or -errno (counted in tx_drop_relay) */
	wg_untrusted_fn untrusted; /* may be NULL */
	wg_other_rx_fn other_rx;   /* may be NULL: such datagrams are dropped */
	void *ctx;
};
void wg_device_set_path_hooks(struct wg_device *d, const struct wg_path_hooks *h);

/* Sets a peer's path state (see above). Returns 0 or -ENOENT. A peer that
 * had packets waiting for somewhere to send them gets its handshake now. */
int wg_device_set_peer_path(struct wg_device *d, const uint8_t key[WG_KEY_LEN],
                            bool relay_ok, uint32_t direct_trust_ms);

/* One datagram that came through the relay from the node with src_key:
 * handled as one from the UDP socket, except that it never moves the
 * peer's endpoint, and one that authenticates as a peer other than src_key
 * is dropped (counted in rx_drop_relay_key). Not from inside the rx
 * callback. */
void wg_device_receive_relayed(struct wg_device *d, const uint8_t src_key[WG_KEY_LEN],
                               const uint8_t *buf, size_t len);

/* A socket of the owner's carries this peer's direct datagrams to `to`
 * instead of the device's socket (a birthday-probing socket: the NAT
 * mapping the peer's filter lets in is that socket's). Used while the
 * peer's endpoint is `to`; fd < 0 (or to NULL): the device's socket again.
 * The owner keeps fd open until it has cleared it here, reads it, and
 * hands WireGuard datagrams from it to wg_device_receive_side. 0 or
 * -ENOENT. */
int wg_device_set_peer_sock(struct wg_device *d, const uint8_t key[WG_KEY_LEN], int fd,
                            const struct sockaddr_storage *to);
/* One datagram from src that arrived on such a socket: handled as one from
 * the device's socket (the endpoint may roam to src). Not from inside the
 * rx callback. */
void wg_device_receive_side(struct wg_device *d, const uint8_t *buf, size_t len,
                            const struct sockaddr *src);

/* Sends a datagram that is not WireGuard (disco, STUN) from the UDP
 * socket. 0 or -errno. */
int wg_device_send_raw(struct wg_device *d, const struct sockaddr *to, const uint8_t *buf,
                       size_t len);

#endif
