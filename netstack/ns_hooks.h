/* lwIP hooks (LWIP_HOOK_FILENAME): compiled into lwIP's own sources, so
 * they are static inline and use only lwIP types. */
#ifndef MESH_NS_HOOKS_H
#define MESH_NS_HOOKS_H

#include <string.h>

#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/prot/tcp.h"
#include "lwip/tcp.h"

/* Two lwIP 2.1.3 assertions that a mesh peer can fire, defused here before
 * lwIP processes a segment for an existing connection:
 *
 * 1. lwIP parses TCP options on every segment (tcp_process calls
 *    tcp_parseopt), not only on SYNs. An MSS option in the middle of a
 *    connection lowers our send MSS below segments already queued
 *    ("mss_local is too small" in tcp_write); a SYN with a window-scale
 *    option to a connection that did not negotiate scaling hits "window not
 *    at default value". Once the handshake has started (SYN_RCVD and later)
 *    nothing in the options is for us (no timestamps, and 2.1.3 has no SACK
 *    input), so they are blanked into NOPs. The pbuf is our own copy.
 *
 * 2. tcp_write sizes segments to min(MSS, largest window seen / 2). A peer
 *    whose SYN announced a zero window and which later announces a small one
 *    makes that size shrink below queued segments (the same assertion).
 *    Treating the largest window seen as at least 2 MSS keeps segments at
 *    the MSS; a peer with a window below one segment is still served, by
 *    lwIP's persist timer splitting the segment. */
/* Half-open connections (SYN_RCVD), counted for the whole stack and per
 * source address (netstack/limits.c): the hook asks for each SYN to a
 * listener, the accept callback takes one off, and ns.c recounts them on
 * the timer while any exist. A SYN beyond NS_TCP_HALF_OPEN_MAX, or beyond
 * its source's NS_TCP_HALF_OPEN_PER_SRC once half the stack's are pending,
 * is dropped (and counted); the peer retransmits it, as with a full
 * backlog. So one peer's SYN flood does not stop another peer's
 * handshakes. */
extern u32_t ns_tcp_half_open;
extern u32_t ns_tcp_syn_drop;
int ns_tcp_syn_admit(const ip_addr_t *src); /* 1: let it through */

/* Out-of-order data a connection may hold: the window, and 16 KiB
 * (NS_MEM_FLOOR) once the memory budget refuses new connections. What is
 * held is charged to the budget once a second (ns_mem_sweep), so a peer
 * that withholds one byte pays for what it parks. A smaller constant cap
 * (256 KiB) cost a single stream 40% here: at 2 Gbit/s the path loses
 * datagrams, and lwIP's sender recovers one segment at a time
 * (bench/conn_scale.sh: 1,380 against 2,411 Mbit/s). */
#define NS_OOSEQ_MAX_BYTES TCP_WND
int ns_mem_pressure(void); /* netstack/limits.c: 1 from 7/8 of the budget */
static inline u32_t ns_hook_ooseq_bytes_limit(const struct tcp_pcb *pcb)
{
	(void)pcb;
	return ns_mem_pressure() ? 16 * 1024 : NS_OOSEQ_MAX_BYTES;
}

static inline err_t ns_hook_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr,
                                         u16_t optlen, u16_t opt1len, u8_t *opt2,
                                         struct pbuf *p)
{
	(void)p;
	if (pcb->state == LISTEN) {
		if ((TCPH_FLAGS(hdr) & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN &&
		    !ns_tcp_syn_admit(ip_current_src_addr()))
			return ERR_MEM;
		return ERR_OK;
	}
	if (pcb->state < SYN_RCVD)
		return ERR_OK;
	/* An orphan (closed here, callbacks cleared) lives while the peer
	 * takes its data: an ACK that does take some restarts its clock
	 * (limits.c; lwIP no longer moves tmr once the pcb is closed). */
	if (pcb->callback_arg == NULL && (pcb->flags & TF_RXCLOSED) &&
	    (TCPH_FLAGS(hdr) & TCP_ACK) && TCP_SEQ_GT(hdr->ackno, pcb->lastack))
		pcb->tmr = tcp_ticks;
	if (optlen > 0) {
		memset((u8_t *)hdr + TCP_HLEN, 1 /* NOP */, opt1len);
		if (opt2 != NULL && optlen > opt1len)
			memset(opt2, 1 /* NOP */, (size_t)(optlen - opt1len));
	}
	if (pcb->snd_wnd_max < 2u * pcb->mss)
		pcb->snd_wnd_max = 2u * pcb->mss;
	return ERR_OK;
}

#endif
