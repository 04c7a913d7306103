/* A mesh peer's path changed (relay <-> direct, or to another direct
 * address): the TCP connections to it retransmit now instead of when
 * lwIP's backed-off timer says.
 *
 * Why: while a dead direct path is still trusted (up to 6.5 s after its
 * last pong) the segments sent on it are lost, and lwIP's retransmission
 * timer backs off, doubling per timeout up to 2^7 smoothed RTOs (~7.7 s on
 * a LAN). Without this the stream waits out the next timeout on the new
 * path, seconds after the switch. And the ACKs of the receiving side were
 * lost on the dead path too: the sender's data may have arrived through
 * the relay while the receiver's ACKs still went the dead way.
 *
 * Each connection ns_tcp_path_changed() selects (ns_tcp_kick_wanted):
 *  - a sender in trouble (unacknowledged data whose retransmission timer
 *    fired, or no ACK for more than two smoothed round trips plus 40 ms),
 *    or any sender with data in flight when the old path is dead (a
 *    direct path given up: what was sent on it since its last ACK is
 *    lost, also the segments a late ACK let out just before the switch)
 *    does what a retransmission timeout does, with the backoff reset: all
 *    unacknowledged data goes back to the send queue and leaves now, the
 *    next timeout is the first step of a fresh backoff, and congestion
 *    control starts over as on a new connection (a new path; RFC 9000
 *    9.4 does the same for QUIC);
 *  - a connection that received data in the last NS_KICK_RX_MS sends a
 *    plain ACK of what it holds now (at worst a duplicate ACK, which
 *    alone changes nothing at the sender).
 * A healthy sender (ACKs coming, no timeout) whose old path still works
 * (relay -> direct, a faster direct address) is left alone: a spurious
 * retransmission would only cost it its window.
 *
 * Cost: one walk of tcp_active_pcbs, cheap checks first; the caller's
 * match function runs only for a connection there is something to do for,
 * and lwIP only for the selected ones. */
#include <stdbool.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

/* Ticks of lwIP's retransmission clock (TCP_SLOW_INTERVAL ms each). */
#define KICK_TICKS(ms) ((ms) / TCP_SLOW_INTERVAL)
/* The initial window of a connection (RFC 5681 3.1, as tcp_in.c's
 * LWIP_TCP_CALC_INITIAL_CWND, which is private to that file). */
#define KICK_INITIAL_CWND(mss)                                                           \
	((tcpwnd_size_t)LWIP_MIN(4U * (mss), LWIP_MAX(2U * (mss), 4380U)))

enum ns_kick ns_tcp_kick_wanted(const struct tcp_pcb *pcb, bool old_path_dead)
{
	bool sends = pcb->state == ESTABLISHED || pcb->state == FIN_WAIT_1 ||
	             pcb->state == CLOSE_WAIT || pcb->state == CLOSING ||
	             pcb->state == LAST_ACK;
	bool receives = pcb->state == ESTABLISHED || pcb->state == FIN_WAIT_1 ||
	                pcb->state == FIN_WAIT_2;
	if (sends && pcb->unacked != NULL && pcb->rtime >= 0 &&
	    (old_path_dead || pcb->nrtx > 0 ||
	     pcb->rtime > 2 * (pcb->sa >> 3) + KICK_TICKS(40)))
		return NS_KICK_REXMIT;
	if (receives && (u32_t)(tcp_ticks - pcb->tmr) <= KICK_TICKS(NS_KICK_RX_MS))
		return NS_KICK_ACK;
	return NS_KICK_NONE;
}

/* A retransmission timeout now (tcp.c, tcp_slowtmr) with the backoff
 * reset: the next timeout comes after lwIP's first backoff step. */
static bool kick_rexmit(struct tcp_pcb *pcb)
{
	if (tcp_rexmit_rto_prepare(pcb) != ERR_OK)
		return false; /* a segment still in the driver's hands */
	int rto = ((pcb->sa >> 3) + pcb->sv) << 1; /* tcp_backoff[0] */
	pcb->nrtx = 0;
	pcb->rto = (s16_t)LWIP_MIN(rto, 0x7FFF);
	pcb->rtime = 0;
	/* A new path: congestion control starts over (the values of a new
	 * connection, tcp_alloc and tcp_in.c). */
	pcb->cwnd = KICK_INITIAL_CWND(pcb->mss);
	pcb->ssthresh = TCP_SND_BUF;
	pcb->bytes_acked = 0;
	tcp_clear_flags(pcb, TF_INFR);
	pcb->dupacks = 0;
	tcp_rexmit_rto_commit(pcb); /* counts it (nrtx 1) and sends */
	return true;
}

void ns_tcp_path_changed(bool (*match)(void *ctx, const struct ns_addr *remote),
                         void *ctx, bool old_path_dead, struct ns_kick_result *res)
{
	struct ns_kick_result r = {0, 0};
	struct tcp_pcb *pcb, *next;
	struct ns_addr a;

	if (ns_ctx.up)
		for (pcb = tcp_active_pcbs; pcb != NULL; pcb = next) {
			next = pcb->next;
			enum ns_kick k = ns_tcp_kick_wanted(pcb, old_path_dead);
			if (k == NS_KICK_NONE)
				continue;
			ns_addr_from_ip(&a, &pcb->remote_ip);
			if (!match(ctx, &a))
				continue;
			if (k == NS_KICK_REXMIT && kick_rexmit(pcb)) {
				r.rexmit++;
			} else {
				tcp_ack_now(pcb);
				tcp_output(pcb);
				r.acked++;
			}
		}
	if (r.rexmit || r.acked)
		ns_timers_kick();
	if (res)
		*res = r;
}
