/* Birthday-paradox port probing, for a peer behind a hard NAT (mapping
 * varies by destination: symmetric) talking to one behind an easy NAT
 * (endpoint-independent mapping, port-restricted filtering), where plain
 * punching cannot work: the hard side's public port towards the easy side
 * is unknown, and the easy side's filter drops whatever it did not send
 * to first.
 *
 *  - The hard side opens BD_SOCKS extra UDP sockets and sends one PING
 *    from each to the easy side's public address: BD_SOCKS mappings on its
 *    NAT, each of which lets in exactly the easy side's address. Then it
 *    sends a BIRTHDAY message through the relay.
 *  - The easy side sends PINGs from its WireGuard socket to the hard
 *    side's public IP at random ports (1024..65535, no port twice), paced
 *    at BD_PROBES_PER_SEC, at most BD_PROBES_MAX. Each probe also opens
 *    the easy side's filter for that port. A probe that lands on one of
 *    the mappings reaches a hard socket, which answers (PONG) and pings
 *    back through it: both sides validate the path, and that socket
 *    carries the peer's WireGuard datagrams from then on. With 256 sockets,
 *    1,024 probes find one with probability 1 - (1 - 256/64512)^1024, about
 *    98 %.
 *  - Bounds: one attempt at a time per node, at most BD_SOCKS sockets and
 *    BD_PROBES_MAX probes in it; an attempt per peer at most once per
 *    BD_BACKOFF_MIN_MS, the gap doubling to BD_BACKOFF_MAX_MS while they
 *    fail; the losing sockets close the moment one wins, and all of them
 *    BD_HARD_MS after the start when none does.
 *
 * This file is the mechanism (sockets, pacing, ports); magicsock decides
 * when (magicsock.c, "birthday") and seals the PINGs. The sockets are
 * plain unprivileged UDP sockets bound to the wildcard address. */
#ifndef MESH_MAGICSOCK_BIRTHDAY_H
#define MESH_MAGICSOCK_BIRTHDAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;

#define BD_SOCKS          256  /* hard side: sockets per attempt */
#define BD_PROBES_MAX     1500 /* easy side: probes per attempt */
#define BD_PROBES_PER_SEC 400
#define BD_TICK_MS        10    /* the easy side's pacing timer */
#define BD_PORT_MIN       1024  /* probed ports: BD_PORT_MIN..65535 */
/* Between a hard and an easy side, plain punching wins within ~150 ms when
 * it can (the easy side's NAT is a full cone, or it has no NAT): a second
 * without a path means probing is needed. */
#define BD_AFTER_MS       1000  /* punching found no path this long: try */
#define BD_HARD_MS        12000 /* the hard side's sockets wait this long */
#define BD_GRACE_MS       1500  /* the easy side waits for late pongs */
#define BD_BACKOFF_MIN_MS 60000 /* per peer, doubling while attempts fail */
#define BD_BACKOFF_MAX_MS (32 * 60000)
#define BD_REQ_GAP_MS     20000 /* easy side: a peer's request this often */
#define BD_LINK_DEAD_MS   30000 /* a won socket untrusted this long closes */
/* Easy side: probes per BD_BUDGET_MS, node-wide, and one peer's share of
 * them (half: one whole attempt a minute; the rest is for the others). */
#define BD_BUDGET_PROBES  (2 * BD_PROBES_MAX)
#define BD_BUDGET_MS      60000
#define BD_BUDGET_PEER    (BD_BUDGET_PROBES / 2)
#define BD_PROBES_MIN     (BD_PROBES_PER_SEC / 2) /* fewer left: no attempt */
#define BD_TICK_BURST     8     /* probes per pacing tick at most: no burst */
#define BD_FD_HEADROOM    64    /* hard side: descriptors left for the rest */
#define BD_RX_MAX         65536 /* a link's datagrams, as the device's */

/* ---- pure parts (tests/unit/test_birthday.c) ---- */

/* Pacing: how many of max may have been sent by now, at rate per second
 * from start (one at once, so the first probe does not wait a tick). */
struct bd_pacer {
	int64_t start_ms;
	uint32_t rate, max, sent;
};
/* How many to send now (0..max - sent). */
uint32_t bd_pacer_due(const struct bd_pacer *pc, int64_t now_ms);

/* Per-peer backoff between attempts. Zeroed: an attempt is allowed now. */
struct bd_backoff {
	int64_t next_ms;
	uint32_t gap_ms; /* 0: BD_BACKOFF_MIN_MS next */
};
bool bd_backoff_allows(const struct bd_backoff *b, int64_t now_ms);
/* An attempt starts: the next no sooner than the gap from now; the gap
 * doubles (up to BD_BACKOFF_MAX_MS) for the one after. */
void bd_backoff_started(struct bd_backoff *b, int64_t now_ms);
/* A direct path was found: the next attempt (when it dies) waits only
 * BD_BACKOFF_MIN_MS from the last one. */
void bd_backoff_reset(struct bd_backoff *b);
/* As bd_backoff_started, with min_ms as the first gap. */
void bd_backoff_started_min(struct bd_backoff *b, int64_t now_ms, uint32_t min_ms);

/* What an easy side may probe: a public unicast IPv4 address (never
 * loopback, 0/8, private 10/8, 172.16/12, 192.168/16, CGNAT 100.64/10,
 * link-local, multicast, broadcast or reserved 240/4; IPv6 not yet: the
 * hard side only ever asks over IPv4). A BIRTHDAY names the IP to send
 * 1,500 datagrams to: anything else would let a peer aim them at a third
 * party or at our own network. */
bool bd_target_ok(const struct sockaddr_storage *ip);

/* The node-wide probe budget: at most BD_BUDGET_PROBES probes reserved in
 * any BD_BUDGET_MS, however many peers ask, and at most BD_BUDGET_PEER of
 * them for one peer, so that one peer asking as often as it may cannot
 * spend it for the others. Zeroed: all of it. */
#define BD_BUDGET_SLOTS 16
struct bd_budget {
	int64_t at_ms[BD_BUDGET_SLOTS];
	uint32_t n[BD_BUDGET_SLOTS];
	uint8_t peer[BD_BUDGET_SLOTS][32];
};
/* Probes that may still be reserved now, node-wide. */
uint32_t bd_budget_left(const struct bd_budget *b, int64_t now_ms);
/* The same for peer: also within its share. */
uint32_t bd_budget_left_for(const struct bd_budget *b, int64_t now_ms,
                            const uint8_t peer[32]);
/* Reserves n (<= bd_budget_left_for) for peer now. */
void bd_budget_take(struct bd_budget *b, int64_t now_ms, const uint8_t peer[32],
                    uint32_t n);

/* Random ports in BD_PORT_MIN..65535, none twice (one bit per port). */
struct bd_ports {
	uint8_t used[65536 / 8];
	uint32_t n;
};
void bd_ports_init(struct bd_ports *pp);
/* A port not picked before; 0 when all are used. */
uint16_t bd_ports_pick(struct bd_ports *pp);
bool bd_ports_used(const struct bd_ports *pp, uint16_t port);

/* ---- the attempts ---- */

struct birthday;

struct bd_ops {
	/* A datagram on a birthday socket (sock: its id, never 0; link: it
	 * won and carries the peer's WireGuard). */
	void (*rx)(void *ctx, uint32_t sock, bool link, const uint8_t *buf, size_t len,
	           const struct sockaddr_storage *from);
	/* Hard side: send a PING to the peer from sock (to: its public
	 * address). Easy side, sock 0: a probe PING with txid from the
	 * WireGuard socket. 0 or -errno. */
	int (*ping)(void *ctx, const uint8_t peer_key[32], uint32_t sock,
	            const uint8_t txid[12], const struct sockaddr_storage *to);
	/* An attempt ended without a win (sockets closed / probes done). */
	void (*ended)(void *ctx, const uint8_t peer_key[32], bool hard);
	void *ctx;
};

struct bd_stats {
	uint64_t attempts_hard, attempts_easy, wins_hard, wins_easy;
	uint64_t probes_sent, socks_opened;
	/* Requests (BIRTHDAY) and hard-side trailers not acted on: a foreign
	 * or non-public IP, too soon, the queue full or timed out, the
	 * budget spent (the owner counts them: bd_refused). */
	uint64_t requests_refused;
};

struct birthday *bd_new(struct event_base *base, const struct bd_ops *ops);
/* Closes every socket (the owner has cleared them from the device). */
void bd_free(struct birthday *bd);
/* An attempt is running (either side). */
bool bd_busy(const struct birthday *bd);
/* The peer an attempt is running for, or NULL. */
const uint8_t *bd_peer(const struct birthday *bd);

/* Hard side: opens up to n (<= BD_SOCKS) sockets of to's family and pings
 * the peer at to from each. The number opened (> 0), or -EBUSY, -errno
 * (none could be opened: err says why). */
int bd_hard_start(struct birthday *bd, const uint8_t peer_key[32],
                  const struct sockaddr_storage *to, uint32_t n, char *err,
                  size_t errlen);
/* Sends buf from birthday socket sock (an attempt's or a link). 0, -ENOENT
 * (no such socket any more) or -errno. */
int bd_send(struct birthday *bd, uint32_t sock, const struct sockaddr_storage *to,
            const uint8_t *buf, size_t len);
/* Hard side: sock (of the running attempt, for peer_key) validated a path:
 * every other socket closes now, sock becomes a link. Its fd, or -ENOENT. */
int bd_win(struct birthday *bd, uint32_t sock, const uint8_t peer_key[32]);
/* Closes a link (the owner cleared it from the device first). */
void bd_link_close(struct birthday *bd, uint32_t sock);
/* The fd of a link or attempt socket, -1 if none. */
int bd_fd(const struct birthday *bd, uint32_t sock);

/* Easy side: probes ip (its port is not used; family 4 or 6) with up to
 * probes (capped at BD_PROBES_MAX and at what the budget has left for
 * the peer: bd_budget_left_for) PINGs, all with txid. 0, -EBUSY (another
 * runs) or -EAGAIN (less than BD_PROBES_MIN left in the budget or in the
 * peer's share). */
int bd_easy_start(struct birthday *bd, const uint8_t peer_key[32],
                  const struct sockaddr_storage *ip, uint32_t probes,
                  const uint8_t txid[12]);
/* Easy side: a PONG with txid from `from` answers one of the running
 * attempt's probes for peer_key: the attempt ends (a win); *sent_us gets
 * the probe's send time (CLOCK_MONOTONIC us). */
bool bd_easy_match(struct birthday *bd, const uint8_t peer_key[32],
                   const uint8_t txid[12], const struct sockaddr_storage *from,
                   int64_t *sent_us);

/* Ends whatever runs for peer_key (it went direct another way, or left the
 * map), without calling ended. */
void bd_cancel(struct birthday *bd, const uint8_t peer_key[32]);

/* One request or trailer refused (counted in requests_refused). */
void bd_refused(struct birthday *bd);

void bd_get_stats(const struct birthday *bd, struct bd_stats *st);

#endif
