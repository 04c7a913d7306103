/* Any-port accept (ns_tcp_listen_any): lwIP answers a SYN to a port with no
 * listening pcb with RST before any hook sees it, so ns_input() looks at each
 * packet first: a SYN to one of our addresses on a port nobody listens on,
 * which the filter accepts, gets a listening pcb created on demand just before
 * lwIP processes the SYN. From then on lwIP does everything as for
 * ns_tcp_listen() (the half-open cap in ns_hooks.h included), and the accept
 * goes to the any-port handler.
 *
 * The on-demand listeners are kept (a listen pcb is ~50 bytes), most
 * recently used first, at most NS_ANY_LISTEN_MAX; beyond it the least
 * recently used one is closed. Each SYN to one of them asks the filter
 * again: a port it no longer accepts loses its listener, so the SYN gets a
 * RST. A specific ns_tcp_listen() takes the port over (ns_any_port_taken). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

#define NS_ANY_LISTEN_MAX 1024

struct ns_any_listener {
	struct ns_any_listener *next;
	struct tcp_pcb *pcb;
	uint16_t port;
};

static struct ns_any_listener *any_list; /* most recently used first */
static unsigned any_n;
static ns_tcp_port_filter_fn any_filter;
static ns_tcp_accept_fn any_cb;
static void *any_ctx;

static void ns_any_close(struct ns_any_listener *l)
{
	tcp_arg(l->pcb, NULL);
	tcp_accept(l->pcb, NULL);
	tcp_close(l->pcb); /* a LISTEN pcb: always ERR_OK, freed */
	free(l);
	any_n--;
}

static err_t ns_any_on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	(void)arg;
	return ns_tcp_accepted(newpcb, err, any_cb, any_ctx);
}

static void ns_any_evict_lru(void)
{
	struct ns_any_listener **pp = &any_list;

	if (*pp == NULL)
		return;
	while ((*pp)->next != NULL)
		pp = &(*pp)->next;
	ns_any_close(*pp);
	*pp = NULL;
}

static void ns_any_create(uint16_t port)
{
	struct ns_any_listener *l;
	struct tcp_pcb *pcb, *lpcb = NULL;
	err_t err;

	if (any_n >= NS_ANY_LISTEN_MAX)
		ns_any_evict_lru();
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return;
	pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
	if (pcb == NULL) {
		free(l);
		return;
	}
	ip_set_option(pcb, SOF_KEEPALIVE); /* inherited by accepted pcbs */
	/* Fails when a connection of ours uses the port (a dial's local
	 * port): then lwIP handles the SYN as before. */
	err = tcp_bind(pcb, IP_ANY_TYPE, port);
	if (err == ERR_OK)
		lpcb = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG,
		                                       &err);
	if (lpcb == NULL) {
		tcp_close(pcb);
		free(l);
		return;
	}
	l->pcb = lpcb;
	l->port = port;
	tcp_arg(lpcb, l);
	tcp_accept(lpcb, ns_any_on_accept);
	l->next = any_list;
	any_list = l;
	any_n++;
}

static bool ns_any_port_listened(uint16_t port)
{
	struct tcp_pcb_listen *lp;

	for (lp = tcp_listen_pcbs.listen_pcbs; lp != NULL; lp = lp->next)
		if (lp->local_port == port)
			return true;
	return false;
}

/* The destination port of a bare SYN (no ACK, no RST) to one of our
 * addresses, or 0. Unfragmented IPv4 and IPv6 without extension headers:
 * what any TCP stack sends for a SYN. */
static uint16_t ns_any_syn_port(const uint8_t *pkt, size_t len)
{
	const uint8_t *t;
	size_t h;

	if (len >= 20 && pkt[0] >> 4 == 4) {
		h = (size_t)(pkt[0] & 15) * 4;
		if (h < 20 || len < h + 20 || pkt[9] != 6)
			return 0;
		if ((pkt[6] & 0x3f) != 0 || pkt[7] != 0) /* MF or an offset */
			return 0;
		if (!ns_ip_is_ours(AF_INET, pkt + 16))
			return 0;
	} else if (len >= 60 && pkt[0] >> 4 == 6) {
		h = 40;
		if (pkt[6] != 6 || !ns_ip_is_ours(AF_INET6, pkt + 24))
			return 0;
	} else {
		return 0;
	}
	t = pkt + h;
	if ((t[13] & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		return 0;
	return (uint16_t)(t[2] << 8 | t[3]);
}

void ns_any_syn_check(const uint8_t *pkt, size_t len)
{
	struct ns_any_listener **pp, *l;
	uint16_t port;

	if (any_cb == NULL || (port = ns_any_syn_port(pkt, len)) == 0)
		return;
	for (pp = &any_list; (l = *pp) != NULL; pp = &l->next) {
		if (l->port != port)
			continue;
		*pp = l->next;
		if (any_filter != NULL && !any_filter(any_ctx, port)) {
			ns_any_close(l);
			return;
		}
		l->next = any_list; /* most recently used first */
		any_list = l;
		return;
	}
	if (ns_any_port_listened(port))
		return; /* a specific listener wins */
	if (any_filter != NULL && !any_filter(any_ctx, port))
		return;
	ns_any_create(port);
}

void ns_any_port_taken(uint16_t port)
{
	struct ns_any_listener **pp, *l;

	for (pp = &any_list; (l = *pp) != NULL; pp = &l->next) {
		if (l->port == port) {
			*pp = l->next;
			ns_any_close(l);
			return;
		}
	}
}

static void ns_any_close_all(void)
{
	struct ns_any_listener *l;

	while ((l = any_list) != NULL) {
		any_list = l->next;
		ns_any_close(l);
	}
}

void ns_any_shutdown(void)
{
	ns_any_close_all();
	any_filter = NULL;
	any_cb = NULL;
	any_ctx = NULL;
}

int ns_tcp_listen_any(ns_tcp_port_filter_fn filter, ns_tcp_accept_fn cb, void *ctx)
{
	if (cb == NULL) {
		ns_any_shutdown();
		ns_timers_kick();
		return 0;
	}
	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	/* Listeners already made stay; the next SYN to each asks the new
	 * filter. */
	any_filter = filter;
	any_cb = cb;
	any_ctx = ctx;
	return 0;
}
