/* magicsock: the paths between this node and its map peers. It sits beside
 * the WireGuard device (core/wg) and tells it, per peer, whether a direct
 * UDP path is trusted or the relay must carry the datagrams (device.h,
 * "Paths"), and it owns what that takes:
 *
 *  - the relay connections (core/relay/client.h): one to the home relay,
 *    kept, and short-lived ones to a peer's home relay in another region,
 *    closed after MS_RELAY_IDLE_MS without use;
 *  - the home relay, chosen by netcheck (core/netcheck) over the device's
 *    own UDP socket at start and every 20-26 s (so the public address STUN
 *    sees is the WireGuard port's), and reported through on_change; a home
 *    relay whose connection stays down MS_HOME_DOWN_MS (refused, wrong
 *    key, TCP blocked) is left out of netcheck for a minute;
 *  - disco (core/disco): PING/PONG validate a direct path both ways and
 *    measure it, CALL_ME_MAYBE through the relay asks the peer to ping
 *    our endpoints at the same time (both NATs open).
 *
 * Path rules (numbers from Tailscale's magicsock, see DESIGN.md):
 *  - A PONG from address A for our PING to A makes A the peer's direct
 *    path (the lowest latency one wins) and trusts it for MS_TRUST_MS;
 *    while the peer is active (WireGuard bytes moved in the last
 *    MS_ACTIVE_MS) the path gets a heartbeat PING every MS_HEARTBEAT_MS,
 *    which renews the trust. A direct path that dies is no longer trusted
 *    MS_TRUST_MS after its last pong: the relay takes over.
 *  - Whenever WireGuard sends to a peer with no trusted path (the device's
 *    untrusted hook), every candidate address (the map's endpoints and the
 *    ones the peer's pings came from) is pinged and a CALL_ME_MAYBE goes
 *    through the relay. A relayed peer is thus re-tried as long as traffic
 *    flows, with backoff: MS_RETRY_MIN_MS after the first attempt, the gap
 *    doubling to MS_RETRY_MAX_MS (+-10 % jitter), never giving up; a pong,
 *    or a change of the peer's endpoints (map) or of ours, starts again
 *    from the minimum.
 *  - A PING is answered with a PONG to the address it came from (at most
 *    MS_PONGS_PER_SEC per peer); its source becomes a candidate.
 *  - A hard NAT (mapping varies by destination) against an easy one, with
 *    no direct path after BD_AFTER_MS of punching: birthday-paradox port
 *    probing (birthday.h); the socket that wins carries that peer's
 *    datagrams (wg_device_set_peer_sock) until its path dies.
 *
 * Everything runs on the caller's event_base; nothing blocks. */
#ifndef MESH_MAGICSOCK_H
#define MESH_MAGICSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/control/msg.h"

struct event_base;
struct evdns_base;
struct wg_device;
struct magicsock;
struct netcheck_report;
struct relay_client_status;

#define MS_TRUST_MS        6500
#define MS_HEARTBEAT_MS    3000
#define MS_PING_ALL_MS     5000
#define MS_RETRY_MIN_MS    5000  /* direct attempts on a relayed peer: first gap */
#define MS_RETRY_MAX_MS    60000 /* ... doubling up to this */
#define MS_PING_TIMEOUT_MS 5000
#define MS_ACTIVE_MS       45000
#define MS_RELAY_IDLE_MS   60000
#define MS_PONGS_PER_SEC   20
#define MS_LEARNED_MAX     8 /* candidates learned from pings, per peer */
#define MS_CONNS_MAX       16 /* relay connections at once */
#define MS_HOME_DOWN_MS    10000 /* home relay unusable this long: pick another */

struct magicsock_config {
	struct event_base *base;
	struct evdns_base *dns; /* NULL: relay hosts must be IP literals */
	struct wg_device *wg;   /* listening; magicsock sets its path hooks */
	uint8_t node_priv[32], node_pub[32];
	uint8_t disco_priv[32], disco_pub[32];
	/* The home relay or the public addresses changed (report them). */
	void (*on_change)(void *ctx);
	/* The device's path to a peer changed: relay <-> direct, or to another
	 * direct address (was_relay == via_relay then). Once per change, from
	 * the loop (at most a tick, 1 s, after a trust that ran out); a peer's
	 * first path is not a change. NULL: not told. */
	void (*on_path)(void *ctx, const uint8_t key[32], bool was_relay, bool via_relay);
	void *ctx;
	uint32_t netcheck_timeout_ms; /* 0: 3000 */
	/* Keys of static [Peer] sections (copied): such peers are left alone
	 * even when the map lists the same key, exactly as node/peers.c does. */
	const uint8_t (*skip_keys)[32];
	size_t n_skip_keys;
	/* No birthday probing (--no-birthday): our NAT kind is not sent, so
	 * no peer asks us, we never ask, and a request is refused. */
	bool no_birthday;
	/* Tests on one machine only (tests/unit/test_magicsock.c): birthday
	 * probing also accepts 127.0.0.0/8 as a peer's public address. Never
	 * set by a node. */
	bool birthday_loopback_for_tests;
	/* Tests on one machine only: a peer's CALL_ME_MAYBE may list
	 * 127.0.0.0/8 or ::1 (a node never pings loopback addresses a peer
	 * only claims). Never set by a node. */
	bool disco_loopback_for_tests;
};

struct magicsock *magicsock_new(const struct magicsock_config *cfg, char *err,
                                size_t errlen);
/* Accepts NULL; wipes keys; outstanding probes get -ECANCELED. */
void magicsock_free(struct magicsock *ms);

/* The map: relays and peers (by node key). Call after every map change;
 * peers gone from the map are forgotten; our own key and the skip keys are
 * ignored. A peer goes through a relay only once the map says it has a
 * home relay (it runs magicsock and is connected to one); until then, and
 * for a peer without one, plain WireGuard to its endpoint.
 * 0 or -ENOMEM (the previous map stays). */
int magicsock_set_map(struct magicsock *ms, const struct ctl_map_full *map);
/* After a map delta, instead of magicsock_set_map: map's relays (as
 * magicsock_set_map; nothing happens when they are unchanged), then only
 * these peers (added or changed entries of map, by node key) and the node
 * keys that left the map (removed peers, replaced keys; a key one of peers
 * still holds stays). O(changes x log N); what a peer learned (validated
 * path, candidates) is kept as with magicsock_set_map. -ENOMEM: the peers
 * before the failure are in, the rest as before. */
int magicsock_update_peers(struct magicsock *ms, const struct ctl_map_full *map,
                           const struct ctl_peer *const *peers, size_t n,
                           const uint8_t (*gone)[32], size_t n_gone);

/* Our own endpoints (local addresses with the WireGuard port), sent in
 * CALL_ME_MAYBE along with the public addresses STUN saw. */
void magicsock_set_local_endpoints(struct magicsock *ms, const struct ctl_endpoints *eps);

/* An address we announced is gone: the trust in every direct path ends
 * (each peer goes through the relay until a new pong), peers are probed
 * again and netcheck runs within a second. Not from inside a magicsock
 * callback. Accepts NULL. */
void magicsock_network_changed(struct magicsock *ms);
/* True if the local address (port aside) is one of ours that is gone. */
typedef bool (*magicsock_lost_fn)(void *ctx, const struct sockaddr_storage *local);
/* Redials (relay_client_redial) each relay connection whose local address
 * lost() says is gone: nothing tells its TCP socket, which would hang until
 * the keepalive timeout. Others are left alone. Returns how many. Not from
 * inside a magicsock callback. Accepts NULL. */
size_t magicsock_redial_relays(struct magicsock *ms, magicsock_lost_fn lost, void *ctx);

/* The home relay's id (0: none yet) and the public addresses STUN saw
 * (family 0: unknown). */
uint32_t magicsock_home(const struct magicsock *ms);
void magicsock_public_addrs(const struct magicsock *ms, struct sockaddr_storage *v4,
                            struct sockaddr_storage *v6);

enum ms_path {
	MS_PATH_NONE = 0,
	MS_PATH_DIRECT,
	MS_PATH_RELAY,
};
const char *ms_path_name(enum ms_path p); /* "direct", "relay", NULL */

struct magicsock_peer_path {
	enum ms_path path; /* what the next datagram to the peer takes */
	uint32_t relay_id; /* the relay it goes through (MS_PATH_RELAY) */
	char relay_region[CTL_LABEL_MAX];
	struct sockaddr_storage best; /* the validated direct address, if any */
	uint32_t latency_us;          /* of best (last pong) */
	bool trusted;
	/* best was found by birthday probing (and, on the hard NAT's side,
	 * is reached through the probing socket that won). */
	bool birthday;
	uint64_t pings_sent, pongs_received;
	unsigned n_candidates; /* addresses pinged while no path is trusted */
	/* where a PONG from it last came from by UDP (family 0: none) */
	struct sockaddr_storage seen_src;
};
/* The answer to one magicsock_ping probe. */
struct magicsock_pong {
	int err;           /* 0; -ETIMEDOUT (no pong in time), -ECANCELED (freed) */
	enum ms_path path; /* DIRECT: from is the address that answered */
	struct sockaddr_storage from;
	struct sockaddr_storage seen_as; /* where the peer saw our ping come from */
	uint32_t relay_id;               /* RELAY: the relay it came through */
	char relay_region[CTL_LABEL_MAX], relay_name[CTL_LABEL_MAX];
	uint32_t latency_us;
};
typedef void (*magicsock_pong_fn)(void *ctx, const struct magicsock_pong *r);

/* One probe (`mesh-proxy ping --disco`): a PING to the trusted direct path
 * if there is one, else to every candidate and through the relay (plus a
 * CALL_ME_MAYBE, as a send would). fn runs exactly once, for the first
 * PONG to any of them or after timeout_ms (or with -ECANCELED from
 * magicsock_free). A PONG
 * counts for the path exactly as any other does. 0; -ENOENT: not a peer
 * magicsock manages; -ENOTCONN: nothing to send to (no candidate and no
 * relay); -EINVAL: no usable disco key; -ENOMEM. */
int magicsock_ping(struct magicsock *ms, const uint8_t key[32], uint32_t timeout_ms,
                   magicsock_pong_fn fn, void *ctx);

/* 0, or -ENOENT for a key magicsock does not manage. */
int magicsock_peer_path(const struct magicsock *ms, const uint8_t key[32],
                        struct magicsock_peer_path *pp);

struct magicsock_conn_status {
	uint32_t relay_id;
	bool home;
	char region[CTL_LABEL_MAX], name[CTL_LABEL_MAX], host[CTL_DNSNAME_MAX];
	uint16_t port;
};
struct magicsock_stats {
	uint64_t disco_rx, disco_tx, disco_drop_unknown, disco_drop_bad, disco_drop_rate;
	uint64_t pings_rx, pongs_rx, pongs_unmatched, call_me_maybe_rx, call_me_maybe_tx;
	uint64_t stun_rx, stun_drop, other_drop;
	uint64_t relay_rx_unknown; /* relayed packets from keys that are not peers */
	uint64_t peer_gone;        /* a relay said a peer is not connected there */
	uint64_t netchecks, home_changes;
	/* Birthday probing (docs/disco.md): attempts on either side, the ones
	 * that found a path, probes sent (easy side), sockets opened (hard
	 * side), peers' requests refused while another attempt ran. */
	uint64_t birthday_attempts, birthday_wins, birthday_probes_sent;
	uint64_t birthday_socks_opened, birthday_refused;
	/* Bytes of the relay connections closed so far (what the open ones
	 * count is in their status): with those, a lifetime total. */
	uint64_t relay_closed_rx_bytes, relay_closed_tx_bytes;
};
void magicsock_get_stats(const struct magicsock *ms, struct magicsock_stats *st);
/* The relay connections open now (up to max): their identity and state. */
size_t magicsock_conns(const struct magicsock *ms, struct magicsock_conn_status *cs,
                       struct relay_client_status *rs, size_t max);
/* The last netcheck report, or NULL before the first. */
const struct netcheck_report *magicsock_report(const struct magicsock *ms);
/* Relays in the map. */
size_t magicsock_relay_count(const struct magicsock *ms);
/* Map peers it manages (ours and the static [Peer] keys left out). */
size_t magicsock_peer_count(const struct magicsock *ms);
/* The relay with this id in the map, or NULL. */
const struct ctl_relay *magicsock_relay(const struct magicsock *ms, uint32_t id);

#endif
