/* Private to netstack/: state shared by ns.c, tcp.c, splice.c, udp.c and
 * ping.c.
 * Nothing outside netstack/ (except its unit test) includes this. */
#ifndef MESH_NS_PRIV_H
#define MESH_NS_PRIV_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "ns.h"

/* At most this many ns_tcp connections at once; beyond it inbound SYNs are
 * answered with RST and ns_tcp_dial() fails with -ENOMEM. Each costs a pcb
 * (~250 bytes) plus its queues, which are bounded by the TCP window. */
#define NS_TCP_MAX 16384

/* The receive queue of one connection holds at most this many pbufs: the
 * window bounds the bytes, this bounds the per-pbuf overhead when a peer
 * sends tiny segments. Beyond it lwIP keeps the data ("refused") and the
 * sender retransmits. 1 MiB / 1380 bytes is 760 full segments. */
#define NS_RXQ_MAX_PBUFS 4096

/* What a queued pbuf costs beyond its payload (the pbuf struct, the IP and
 * TCP headers it still holds, malloc's header, the ring slot), and a queued
 * segment of lwIP's send queue likewise: charged to the memory budget so
 * that tiny segments cannot hide behind their byte count. */
#define NS_PBUF_OVERHEAD 192 /* a 1-byte IPv6 segment with options: ~160 */

/* An orphan (limits.c) is reset after this long without an ACK that takes
 * data off its queue. */
#define NS_ORPHAN_IDLE_MS 60000

/* Until the splice, an accepted connection's window is at most this: a
 * peer cannot park a full window per connection while the local side is
 * still being dialled. ns_splice_start_ex() opens it to buf_limit. */
#define NS_WND_PRESPLICE (64 * 1024)

/* Retransmission timeout of a dialled connection until RTT samples exist. */
#define NS_TCP_INITIAL_RTO_MS 1000

/* Half-open connections and SYNs dropped over NS_TCP_HALF_OPEN_MAX
 * (defined in ns.c, counted by the TCP input hook in ns_hooks.h). */
extern u32_t ns_tcp_half_open;
extern u32_t ns_tcp_syn_drop;

/* How long ns_tcp_dial() waits for the handshake. */
#define NS_TCP_DIAL_TIMEOUT_MS 20000

/* The single netstack instance (lwIP itself is single-instance). */
struct ns_ctx {
	bool up;
	bool closing; /* inside ns_shutdown(): no new dials, listens or pings */
	struct event_base *base;
	ns_output_fn out;
	void *out_ctx;
	struct netif netif;
	bool have_v4, have_v6;
	struct event *timer;
	bool timer_pending;
	uint32_t timer_deadline; /* sys_now() value the timer fires at */
	struct event *defer_ev;  /* drains packets fed in re-entrantly */
	int in_output;           /* depth of calls into the output callback */
	struct ns_stats st;
	uint64_t output_drop; /* packets lwIP sent from an address not ours */
	size_t rxq_bytes;     /* sum over connections of queued mesh->socket bytes */
	/* The memory budget (limits.c): charged bytes of receive queues (with
	 * NS_PBUF_OVERHEAD per pbuf), of lwIP's send queues and stashes, and
	 * of the proxy's buffers (ns_mem_charge). */
	size_t mem_rx, mem_tx;
	/* ... and of them, the inbound connections' part (charged to their
	 * sources) */
	size_t mem_in;
	/* What lwIP holds on its own (out-of-order and refused data, orphans'
	 * send queues), measured once a second by ns_mem_sweep; and of it the
	 * part that is local (not charged to a source). */
	size_t mem_lwip, mem_lwip_local;
	u32_t src_active; /* sources with inbound connections or orphans */
	unsigned dial_timeout_ms;
	/* The idle sweep (splice.c): one coarse timer for all splices. */
	struct event *idle_ev;
	bool idle_pending;
	uint32_t idle_period_ms;   /* period the timer is armed with */
	uint32_t udp_noports_base; /* lwIP's mib2.udpnoports at ns_init */
};
extern struct ns_ctx ns_ctx;

/* Runs lwIP's due timers (sys_check_timeouts), after fixing up the state
 * lwIP 2.1.3 gets wrong (see ns.c). The timer event calls it; tests and the
 * fuzzer call it after moving ns_clock_offset_ms. */
void ns_check_timeouts(void);

/* Re-arms the lwIP timer event from sys_timeouts_sleeptime(). Call after
 * anything that may have added an lwIP timeout (every entry point). */
void ns_timers_kick(void);

/* What ns_tcp_path_changed does for a connection (kick.c). */
enum ns_kick {
	NS_KICK_NONE = 0,
	NS_KICK_REXMIT, /* unacknowledged data overdue: retransmit now */
	NS_KICK_ACK,    /* received data within NS_KICK_RX_MS: ACK now */
};
enum ns_kick ns_tcp_kick_wanted(const struct tcp_pcb *pcb, bool old_path_dead);

/* Address conversion. ns_ip_from_addr maps ::ffff:a.b.c.d to IPv4. */
bool ns_ip_from_addr(ip_addr_t *ip, const struct ns_addr *a);
void ns_addr_from_ip(struct ns_addr *a, const ip_addr_t *ip);
int ns_err_to_errno(err_t err);

/* One TCP connection through lwIP, from accept/dial until both directions
 * are closed. Owned by the caller between the accept/connected callback and
 * ns_splice_start()/ns_tcp_abort(), by splice.c afterwards. */
struct ns_tcp {
	struct ns_tcp *prev, *next; /* all live connections (for shutdown) */
	struct tcp_pcb *pcb;        /* NULL once lwIP freed it or we let it go */
	int fd;                     /* local socket, -1 until spliced */

	/* lifecycle */
	bool dialing;  /* SYN sent, connected callback not yet run */
	bool spliced;  /* ns_splice_start() took it */
	bool pcb_dead; /* lwIP dropped the pcb before the splice */
	bool finished; /* to be freed when the last frame using it returns */
	bool abrt;     /* we tcp_abort()ed the pcb inside an lwIP callback */
	int busy;      /* frames (lwIP callbacks, event handlers) using it */

	/* mesh -> socket */
	bool rx_fin;       /* lwIP delivered the peer's FIN */
	bool rx_done;      /* ... and shutdown(fd, SHUT_WR) followed the data */
	struct pbuf **rxq; /* ring of single pbufs, payload not yet written */
	uint32_t rxq_cap, rxq_head, rxq_n;
	uint16_t rxq_off; /* bytes of rxq[head] already written */
	size_t rxq_bytes;
	size_t unacked_recv; /* written to the socket, tcp_recved() pending */

	/* socket -> mesh */
	bool tx_eof;  /* read() returned 0 */
	bool tx_done; /* FIN queued in lwIP */
	bool reading; /* ev_read is added */
	uint8_t *txp; /* bytes read (or head) that lwIP did not take yet */
	size_t txp_len, txp_off;

	/* splice options (ns_splice_start_ex) */
	struct ns_acct *acct; /* holds one reference while spliced */
	unsigned idle_ms;     /* 0: only the half-closed rule */
	size_t rx_limit;      /* bound on received bytes held (window); 0: lwIP's */
	size_t rx_target;     /* rx_limit wanted (buf_limit), once the budget allows */
	size_t tx_limit;      /* bound on bytes queued in lwIP's send buffer */
	size_t wnd_debt;      /* tcp_recved() still withheld to shrink the window */
	uint32_t last_rx_ms;  /* sys_now() when mesh->socket bytes last moved */
	uint32_t last_tx_ms;  /* ... socket->mesh */
	uint32_t half_ms;     /* when one direction finished (0: not yet) */

	/* the memory budget (limits.c) */
	size_t mem_rx;      /* charged for rxq (pbufs and the ring) */
	size_t mem_tx;      /* charged for lwIP's send queue and txp */
	struct ns_src *src; /* inbound: its source's entry (per-source cap) */

	struct event ev_read, ev_write, ev_dial;
	ns_tcp_connected_fn dial_cb;
	void *dial_ctx;
};

/* tcp.c */
struct ns_tcp *ns_tcp_new(struct tcp_pcb *pcb);
/* Drops the connection: frees it now, or when the last busy frame leaves. */
void ns_tcp_finish(struct ns_tcp *c);
/* Clears every lwIP callback so lwIP will never call back into c. */
void ns_tcp_detach(struct ns_tcp *c);
/* tcp_abort()s the pcb (RST to the mesh), noting it for the callback. */
void ns_tcp_abort_pcb(struct ns_tcp *c);
void ns_tcp_dial_failed(struct ns_tcp *c, int err);
/* Enter/leave a frame that uses c; leave returns what an lwIP callback
 * about c's pcb must return (ERR_ABRT if we aborted it). */
void ns_tcp_enter(struct ns_tcp *c);
err_t ns_tcp_leave(struct ns_tcp *c);
void ns_tcp_shutdown_all(void);
/* Turns a pcb accepted by a listener into an ns_tcp handed to cb; returns
 * what the lwIP accept callback must return. */
err_t ns_tcp_accepted(struct tcp_pcb *newpcb, err_t err, ns_tcp_accept_fn cb, void *ctx);
/* Head of the list of live connections (for the idle sweep). */
struct ns_tcp *ns_tcp_first(void);

/* splice.c: the lwIP callbacks of a connection (also used before the
 * splice: received data is queued and the window closes). */
void ns_splice_attach(struct ns_tcp *c);
void ns_splice_free_queues(struct ns_tcp *c);
/* Sets how many received bytes lwIP may hold for c (its window): an
 * accepted connection starts at NS_WND_PRESPLICE, the splice sets
 * buf_limit. */
void ns_splice_set_window(struct ns_tcp *c, size_t limit);
/* Closes c->fd (if any) after removing its events; rst: SO_LINGER 0. */
void ns_splice_close_fd(struct ns_tcp *c, bool rst);
/* Resets splices idle past idle_ms or half-closed and idle past
 * NS_HALF_CLOSED_IDLE_MS (the idle timer calls it; tests call it after
 * moving ns_clock_offset_ms). Re-arms the idle timer while splices exist. */
void ns_splice_idle_sweep(void);
void ns_splice_idle_cb(evutil_socket_t fd, short what, void *arg);

/* any.c: ns_input() shows it every packet before lwIP: a SYN for the
 * any-port handler gets its listening pcb here. */
void ns_any_syn_check(const uint8_t *pkt, size_t len);
/* Closes the on-demand listener of port (ns_tcp_listen takes it). */
void ns_any_port_taken(uint16_t port);
/* Closes every on-demand listener and forgets the handler. */
void ns_any_shutdown(void);

/* local_udp.c: true when p (an IP packet lwIP outputs) was for a local
 * service (queued for it, or dropped when it is a fragment). */
bool ns_local_udp_intercept(struct pbuf *p);
/* Drops queued datagrams and frees the delivery event (services stay). */
void ns_local_udp_shutdown(void);

/* ns.c */
/* True when a (4 or 16 bytes, network order) is one of our addresses. */
bool ns_ip_is_ours(int family, const uint8_t *a);
/* Queues a packet for input from the loop (never processed inside this
 * call). Returns 0, -ENETDOWN, -EINVAL or -ENOBUFS. */
int ns_input_later(const uint8_t *pkt, size_t len);

/* udp.c */
void ns_udp_shutdown_all(void);

/* ping.c */
int ns_ping_init(void);
void ns_ping_shutdown(void);

/* limits.c: the source table and the budget's bookkeeping. */
struct ns_src;
/* The handshake from src completed: one half-open fewer. */
void ns_src_handshake_done(const ip_addr_t *src);
/* Recounts half-open handshakes per source (from ns_check_timeouts). */
void ns_src_recount(void);
/* An accepted connection from src: NULL when refused (budget or per-source
 * cap; counted), else the entry to release with ns_src_conn_end(). */
struct ns_src *ns_src_conn_begin(const ip_addr_t *src);
void ns_src_conn_end(struct ns_src *s);
void ns_src_clear(void);
void ns_mem_note_peak(void);
/* A connection's charge moved from old to now bytes (its source's part). */
void ns_src_mem_move(struct ns_src *s, size_t old, size_t now);
/* Over the budget: true when c's source (or local) holds its share. */
bool ns_mem_hold(const struct ns_tcp *c);
/* c's pcb is handed to lwIP to finish closing (an orphan). */
void ns_mem_orphan_begin(struct ns_tcp *c, struct tcp_pcb *pcb);
/* Once a second: orphans, and what lwIP holds, charged per source. */
void ns_mem_sweep(void);
void ns_mem_get_stats(struct ns_stats *st);
/* For tests: how many times the half-open counts were recounted. */
uint64_t ns_debug_recounts(void);

/* For tests: bytes the last ns_shutdown() found still charged to
 * connections once all of them were freed (0 unless a path leaks). */
size_t ns_debug_mem_left(void);
/* For tests: bytes of mesh->socket data held by all connections. */
size_t ns_debug_rxq_bytes(void);
/* For tests and fuzzing: added to lwIP's clock (sys_now) to jump ahead;
 * then call sys_check_timeouts(). Only ever increased. */
extern uint32_t ns_clock_offset_ms;

#endif
