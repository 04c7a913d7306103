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
/* Resets every connection (splices drop their ns_acct references), fails
 * pending dials and pings, unbinds every ns_udp (still to be closed by its
 * owner). Not from inside a netstack callback. */
void ns_shutdown(void);

/* Feeds one decrypted IP packet into lwIP (copied). */
void ns_input(const uint8_t *pkt, size_t len);

/* True if lwIP holds a TCP connection (any state but LISTEN, TIME_WAIT
 * included) from our local:lport to remote:rport (conn.c; the inbound
 * filter asks it for every TCP segment that is not a bare SYN). */
bool ns_tcp_conn_exists(const struct ns_addr *local, uint16_t lport,
                        const struct ns_addr *remote, uint16_t rport);
/* Whether the remote of an inbound connection may still have opened it. */
typedef bool (*ns_tcp_keep_fn)(void *ctx, const struct ns_addr *remote,
                               uint16_t lport);
/* Aborts (RST to the peer, the local socket reset) every connection lwIP
 * holds that the remote opened (accepted by a listener, or half open) and
 * keep refuses; returns how many (conn.c; the node calls it when a new
 * access-policy filter arrives). Connections this node dialled are left. */
unsigned ns_tcp_revoke(ns_tcp_keep_fn keep, void *ctx);

/* ---- TCP through lwIP ---- */

struct ns_tcp; /* one lwIP TCP connection, before it is spliced */

/* err is 0, or -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -ENOMEM. On error c is
 * NULL and already gone. */
typedef void (*ns_tcp_connected_fn)(void *ctx, struct ns_tcp *c, int err);

/* Starts a connection from our mesh address to dst:port. Returns 0 (the
 * callback will run later, never from inside this call) or -errno. */
int ns_tcp_dial(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                void *ctx);
/* As ns_tcp_dial(), and *dial (when not NULL) is the connection being
 * dialled, for ns_tcp_dial_cancel(): valid until cb runs. */
int ns_tcp_dial_ex(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                   void *ctx, struct ns_tcp **dial);
/* Gives up a dial whose callback has not run yet: cb never runs, the
 * attempt is reset and its connection freed now (it no longer counts
 * toward NS_TCP_MAX). Accepts NULL. Not from inside that dial's cb. */
void ns_tcp_dial_cancel(struct ns_tcp *dial);

/* A new inbound connection to one of our addresses on a listened port. The
 * callee must eventually ns_splice_start() or ns_tcp_abort() it. Data that
 * arrives meanwhile is held by lwIP (the window closes; it is at most
 * 64 KiB until the splice). Refused before this callback, with RST and a
 * counter: over 7/8 of the memory budget while the source holds its share
 * of it, or over the source's connection cap (ns_limits). */
typedef void (*ns_tcp_accept_fn)(void *ctx, struct ns_tcp *c, const struct ns_addr *src,
                                 uint16_t sport, uint16_t dport);
/* Returns 0 or -errno (-EADDRINUSE). */
int ns_tcp_listen(uint16_t port, ns_tcp_accept_fn cb, void *ctx);

/* Stops listening on port: later SYNs to it get a RST, and so does a
 * handshake still half-open (its final ACK is answered with RST, the
 * accept callback never runs). Connections already accepted are not
 * touched. No-op if the port is not listened. */
void ns_tcp_unlisten(uint16_t port);

/* Resets the connection (RST to the mesh side) and frees it. */
void ns_tcp_abort(struct ns_tcp *c);

/* Our address and port of c (for an accepted connection: the destination
 * the mesh peer dialled), e.g. for a PROXY protocol header. Valid until c
 * is spliced or aborted; zeroes if unknown. */
void ns_tcp_local(const struct ns_tcp *c, struct ns_addr *addr, uint16_t *port);

/* Splices a connected local stream socket (non-blocking) and a lwIP
 * connection until both directions close; takes ownership of both. head (may
 * be NULL) is sent to the mesh side first. Flow control both ways: lwIP's
 * window opens only as the socket drains, the socket is read only while lwIP
 * has send buffer. FIN and RST propagate both ways. Returns 0; on -errno both
 * are closed. */
int ns_splice_start(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len);

/* Byte counters shared by the splices of one front-end. The owner creates
 * it (refs 1), reads the fields at any time, and releases it when it goes
 * away; each splice started with it holds a reference from
 * ns_splice_start_ex() returning 0 until the connection is freed (both
 * directions closed, a reset, or ns_shutdown()), so it is freed by
 * whichever of owner and last splice lets go last. The owner must not read
 * it after its own release. Counted like ns_stats: bytes_in as they are
 * written to the socket, bytes_out as they are read from it (the head
 * passed to ns_splice_start_ex is not counted). */
struct ns_acct {
	uint64_t bytes_in;    /* mesh -> socket */
	uint64_t bytes_out;   /* socket -> mesh */
	uint64_t active;      /* splices running now */
	uint64_t idle_closed; /* splices reset by idle_ms or the half-closed rule */
	unsigned refs;        /* private */
};
struct ns_acct *ns_acct_new(void);       /* NULL when out of memory */
void ns_acct_release(struct ns_acct *a); /* accepts NULL */

struct ns_splice_opts {
	struct ns_acct *acct; /* NULL: global counters only */
	/* Reset both sides (RST to the mesh, SO_LINGER 0 locally) when no byte
	 * moved either way (written to or read from the local socket) for this
	 * long. 0: never. One coarse sweep timer checks every splice: the reset
	 * comes between idle_ms and idle_ms + idle_ms / 8 (at least 10 ms, at
	 * most 1 s late). A half-closed splice (one direction done: the mesh
	 * FIN passed on to the socket, or the socket's EOF sent as FIN) whose
	 * other direction moved no byte for NS_HALF_CLOSED_IDLE_MS, counted
	 * from the later of its last byte and the half-close, is reset even
	 * when idle_ms is 0 (checked every 5 s). Both resets count in
	 * ns_stats.idle_reset and tcp_reset and in acct->idle_closed. */
	unsigned idle_ms;
	/* Bound on bytes held for this connection in each direction: received
	 * mesh data not yet written to the socket (lwIP's receive window is
	 * lowered to it, and the window it advertises with it), and bytes read
	 * from the socket still queued in lwIP's send buffer (the socket is
	 * read only while they are under it). 0 or more than the compiled
	 * window (1 MiB): the compiled window. Below NS_BUF_LIMIT_MIN:
	 * NS_BUF_LIMIT_MIN. A peer without window scaling gets at most 65535.
	 * Data the peer was allowed to send before the splice started beyond
	 * the lowered window is dropped by lwIP and retransmitted. */
	size_t buf_limit;
};
#define NS_HALF_CLOSED_IDLE_MS (5 * 60 * 1000)
#define NS_BUF_LIMIT_MIN       (16 * 1024)
/* ns_splice_start() with options (o may be NULL; copied, not kept). */
int ns_splice_start_ex(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len,
                       const struct ns_splice_opts *o);

/* ---- Path changes ---- */

/* A mesh peer's path changed (relay <-> direct, or another direct
 * address). For each TCP connection whose remote address match accepts
 * (match runs only for connections there is something to do for), in one
 * walk of lwIP's connections: one with unacknowledged data whose
 * retransmission timer fired, or that saw no ACK for more than two
 * smoothed round trips plus 40 ms, or any with data in flight when
 * old_path_dead (a direct path given up for the relay), retransmits now
 * with its backoff reset and congestion control started over
 * (netstack/kick.c says why); another that heard from its peer within
 * NS_KICK_RX_MS sends an ACK now. res (may be NULL) gets the counts. Not
 * from inside a netstack callback. */
#define NS_KICK_RX_MS 10000
struct ns_kick_result {
	size_t rexmit, acked;
};
void ns_tcp_path_changed(bool (*match)(void *ctx, const struct ns_addr *remote),
                         void *ctx, bool old_path_dead, struct ns_kick_result *res);

/* ---- UDP through lwIP ---- */

struct ns_udp; /* one bound UDP port on our mesh addresses */

/* A datagram for the port: src is the mesh sender, dst the address of ours
 * it was sent to (IPv4 as AF_INET). data is the whole datagram in one
 * buffer (reassembled from fragments), valid only during the call; len may
 * be 0. The callback may call ns_udp_send() on any socket and may
 * ns_udp_close() its own (it is freed when the callback returns); no other
 * ns_udp callback runs inside it. */
typedef void (*ns_udp_recv_fn)(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                               uint16_t sport, const struct ns_addr *dst,
                               const uint8_t *data, size_t len);

/* Binds port (0: an ephemeral port from 49152-65535, lwIP's range from a
 * random start) on all our mesh addresses, IPv4 and IPv6 on one socket.
 * Returns NULL with *err (err may be NULL) = -EADDRINUSE (port bound by
 * another ns_udp), -ENOMEM, -ENETDOWN (no stack, or inside ns_shutdown) or
 * -EINVAL (cb NULL). */
struct ns_udp *ns_udp_open(uint16_t port, ns_udp_recv_fn cb, void *ctx, int *err);
uint16_t ns_udp_port(const struct ns_udp *u);
/* Sends one datagram from u's port and our address of dst's family
 * (::ffff:a.b.c.d is IPv4); lwIP fragments above the MTU. Up to 65507
 * bytes over IPv4, 65487 over IPv6 (lwIP's packet length includes the
 * 40-byte header). The output callback runs inside this call; a packet it
 * feeds back with ns_input() is processed later, so no ns_udp callback
 * ever runs inside ns_udp_send(). Returns 0 or -errno: -EMSGSIZE,
 * -EAFNOSUPPORT (we have no address of that family, or a bad family),
 * -EINVAL (port 0, unspecified address), -ENETDOWN (u closed by
 * ns_shutdown), -ENOMEM, -EHOSTUNREACH. */
int ns_udp_send(struct ns_udp *u, const struct ns_addr *dst, uint16_t dport,
                const uint8_t *data, size_t len);
/* Unbinds and frees u; accepts NULL. ns_shutdown() unbinds every ns_udp
 * but does not free it: the owner still calls ns_udp_close() (safe at any
 * time after, also after a new ns_init()), and until then ns_udp_send()
 * returns -ENETDOWN and no datagram arrives. */
void ns_udp_close(struct ns_udp *u);

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
	uint64_t udp_rx, udp_tx; /* datagrams delivered to / sent from ns_udp */
	/* Inbound datagrams to no bound port (lwIP's MIB2 udpNoPorts since
	 * ns_init; 32 bits, wraps). Those to a unicast address of ours are
	 * answered with ICMP port unreachable by lwIP. */
	uint64_t udp_drop;
	uint64_t idle_reset; /* splices reset by idle_ms or the half-closed rule */
	/* SYNs dropped because NS_TCP_HALF_OPEN_MAX (lwipopts.h) connections
	 * were half-open, or their source had NS_TCP_HALF_OPEN_PER_SRC; the
	 * peer retransmits them. syn_drop_src: those of the second kind. */
	uint64_t tcp_syn_drop;
	uint64_t syn_drop_src;
	/* Refusals of new connections (inbound from the mesh: RST; proxy
	 * clients through ns_mem_admit: the front-end's error): over 7/8 of
	 * the memory budget while the source (or local) holds its share, or
	 * over the per-source connection cap. */
	uint64_t tcp_refused_mem, tcp_refused_peer, front_refused_mem;
	/* Times a connection was held back by the budget: a window left
	 * closed (rx) or the local socket left unread (tx). */
	uint64_t mem_throttle_rx, mem_throttle_tx;
	uint64_t mem_used, mem_peak, mem_limit; /* bytes, see ns_limits */
	/* Orphans (connections closed here whose peer has not acknowledged
	 * the end) reset: no progress for a minute, too many retries, or
	 * over the budget. */
	uint64_t orphan_reset;
	/* ns_mem_uncharge() of more than was charged (a bug; never wraps). */
	uint64_t mem_uncharge_excess;
};
void ns_get_stats(struct ns_stats *st);

/* ---- Limits against hostile peers ---- */

/* mem_limit bounds the bytes held for all connections together: received
 * data not yet written to local sockets, data queued in lwIP's send
 * buffers, what lwIP holds on its own (out-of-order data, orphans' send
 * queues), and what the proxy charges (ns_mem_charge) for its own buffers.
 * It is shared fairly: each source with inbound connections, and the
 * node's own users together ("local"), get limit / (sources + 1). Over
 * the budget, the connections of whoever holds its share or more get
 * windows that stay nearly closed and local sockets left unread (each
 * keeps NS_MEM_FLOOR to move); from 7/8 of it, those are refused new
 * connections (RST, or ns_mem_admit() says no), the others are not.
 * max_conns_per_src caps inbound connections (expose, server tunnels),
 * and orphans still holding data, from one remote address; over it the
 * SYN's handshake ends with RST. */
struct ns_limits {
	size_t mem_limit;           /* bytes; 0: ns_mem_limit_default() */
	unsigned max_conns_per_src; /* 0: no cap */
};
#define NS_MEM_LIMIT_MIN         (16u * 1024 * 1024)
#define NS_MEM_LIMIT_MAX_DEFAULT ((size_t)1024 * 1024 * 1024)
#define NS_CONNS_PER_SRC_DEFAULT 1024
#define NS_MEM_FLOOR             (16 * 1024)
/* A quarter of the physical memory, at most 1 GiB, at least
 * NS_MEM_LIMIT_MIN. */
size_t ns_mem_limit_default(void);
/* Takes effect at once and survives ns_shutdown()/ns_init(). A mem_limit
 * below NS_MEM_LIMIT_MIN is raised to it. */
void ns_set_limits(const struct ns_limits *l);
void ns_get_limits(struct ns_limits *l); /* mem_limit as in force */
/* Bytes charged now, and whether that is over the budget. */
size_t ns_mem_used(void);
bool ns_mem_over(void);
/* A front-end asks before it takes on a new client: false (counted in
 * front_refused_mem) from 7/8 of the budget on while local users hold
 * their share; a mesh peer's flood does not make it say no. */
bool ns_mem_admit(void);
/* Buffers a front-end holds outside the netstack (direct relays, UDP
 * queues): charged while held, uncharged by the same amount. */
void ns_mem_charge(size_t bytes);
void ns_mem_uncharge(size_t bytes);

/* Parses "1.2.3.4" or "fd00::1" into a. Returns true on success. */
bool ns_addr_parse(struct ns_addr *a, const char *s);

/* ---- Any port, and local services (mesh-proxy up) ---- */

/* Inbound TCP connections to one of our addresses on a port that no
 * ns_tcp_listen() covers go to cb (which splices or aborts them as for
 * ns_tcp_listen), when filter(ctx, dport) returns true; otherwise the SYN is
 * answered with RST as before. A specific listener always wins. One
 * handler; cb NULL removes it (filter NULL: every port). The half-open cap
 * applies. ns_shutdown() removes it. Returns 0 or -errno (-ENETDOWN). */
typedef bool (*ns_tcp_port_filter_fn)(void *ctx, uint16_t dport);
int ns_tcp_listen_any(ns_tcp_port_filter_fn filter, ns_tcp_accept_fn cb, void *ctx);

/* A UDP service at an address that is not ours and not the mesh's, e.g.
 * MagicDNS at 100.100.100.100:53: datagrams that lwIP would send to
 * addr:port (from any ns_udp: SOCKS5 UDP ASSOCIATE, UDP tunnels) are handed
 * to fn instead of the output callback, later from the loop (never inside
 * ns_udp_send). The service answers, now or later, with ns_local_udp_reply,
 * which delivers the datagram to the sender's ns_udp as coming from
 * addr:port. Up to 4 services; fn NULL removes the one at addr:port.
 * Returns 0 or -errno (-ENOSPC, -EINVAL). Services stay across
 * ns_shutdown()/ns_init() (datagrams still queued are dropped). */
typedef void (*ns_local_udp_fn)(void *ctx, const struct ns_addr *src, uint16_t sport,
                                const uint8_t *data, size_t len);
int ns_local_udp_set(const struct ns_addr *addr, uint16_t port, ns_local_udp_fn fn,
                     void *ctx);
/* True when addr is a local service address (route checks use it). */
bool ns_local_udp_is(const struct ns_addr *addr);
/* Sends data from the service addr:port to dst:dport (one of our addresses,
 * as the src the service was given), later from the loop (never inside
 * this call). Returns 0 or -errno (-ENETDOWN, -EINVAL, -EAFNOSUPPORT,
 * -EADDRNOTAVAIL: dst not ours, -EMSGSIZE, -ENOBUFS, -ENOMEM). */
int ns_local_udp_reply(const struct ns_addr *addr, uint16_t port,
                       const struct ns_addr *dst, uint16_t dport, const uint8_t *data,
                       size_t len);

#endif
