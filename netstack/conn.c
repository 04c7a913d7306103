/* Whether lwIP holds a TCP connection for a 4-tuple, and ending the
 * inbound connections a new access policy takes away (ns_tcp_revoke).
 *
 * Whether lwIP holds a TCP connection for a 4-tuple: the node's inbound
 * filter (node/acl.c) lets a TCP segment that is not a bare SYN through
 * only when it belongs to a connection of ours, so that an ACK or FIN scan
 * of a port the policy closes is dropped silently instead of drawing a RST
 * from lwIP.
 *
 * Cost: one walk of tcp_active_pcbs (then tcp_tw_pcbs), ports compared
 * first. lwIP's own tcp_input walks the same list for every segment and
 * moves the pcb it finds to the front, so the walk for a busy connection
 * ends at once. Listening pcbs do not count: a segment for a listener that
 * is not a SYN has no connection. */
#include <stdbool.h>
#include <string.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

static bool ns_conn_in(struct tcp_pcb *list, const ip_addr_t *l, uint16_t lport,
                       const ip_addr_t *r, uint16_t rport)
{
	for (struct tcp_pcb *pcb = list; pcb != NULL; pcb = pcb->next)
		if (pcb->local_port == lport && pcb->remote_port == rport &&
		    ip_addr_cmp(&pcb->remote_ip, r) && ip_addr_cmp(&pcb->local_ip, l))
			return true;
	return false;
}

bool ns_tcp_conn_exists(const struct ns_addr *local, uint16_t lport,
                        const struct ns_addr *remote, uint16_t rport)
{
	ip_addr_t l, r;
	if (!ns_ip_from_addr(&l, local) || !ns_ip_from_addr(&r, remote))
		return false;
	return ns_conn_in(tcp_active_pcbs, &l, lport, &r, rport) ||
	       ns_conn_in(tcp_tw_pcbs, &l, lport, &r, rport);
}

/* An inbound connection: half open (a listener made it), or accepted
 * (ns_tcp_accepted gave it a source entry), or an orphan whose listener
 * is still known. A connection this node dialled has none of these. */
static bool ns_conn_inbound(const struct tcp_pcb *pcb)
{
	if (pcb->state == SYN_RCVD || pcb->listener != NULL)
		return true;
	if (pcb->state == SYN_SENT || pcb->callback_arg == NULL)
		return false;
	return ((const struct ns_tcp *)pcb->callback_arg)->src != NULL;
}

unsigned ns_tcp_revoke(ns_tcp_keep_fn keep, void *ctx)
{
	unsigned n = 0;
	struct tcp_pcb *pcb = tcp_active_pcbs, *next;
	for (; pcb != NULL; pcb = next) {
		next = pcb->next;
		struct ns_addr remote;
		if (!ns_conn_inbound(pcb))
			continue;
		ns_addr_from_ip(&remote, &pcb->remote_ip);
		if (keep(ctx, &remote, pcb->local_port))
			continue;
		n++;
		/* As for a RST from the peer: lwIP sends one, unlinks and frees
		 * only this pcb, and its error callback resets the local socket
		 * (spliced) or tells the owner (not yet). */
		tcp_abort(pcb);
	}
	if (n > 0)
		ns_timers_kick();
	return n;
}
