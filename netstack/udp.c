/* UDP ports on our mesh addresses (ns_udp), through lwIP udp_pcbs bound
 * dual-stack (IPv4 and IPv6 on one pcb). Datagrams arrive flat: a chain
 * (a reassembled datagram) is copied into one buffer. Sending copies into
 * one pbuf; lwIP fragments above the tunnel MTU. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lwip/ip.h"
#include "lwip/pbuf.h"
#include "lwip/udp.h"

#include "ns_priv.h"

/* Largest payload: an IPv4 datagram of 65535 bytes. lwIP's pbuf length
 * (u16) also counts the IP header, so over IPv6 it is 65535 - 40 - 8. */
#define NS_UDP_MAX4 65507
#define NS_UDP_MAX6 65487

struct ns_udp {
	struct ns_udp *prev, *next; /* open ports (for shutdown) */
	struct udp_pcb *pcb;        /* NULL once closed or after ns_shutdown */
	bool linked;
	bool closed; /* ns_udp_close() ran inside its own callback */
	int busy;    /* callback frames on the stack */
	uint16_t port;
	ns_udp_recv_fn cb;
	void *ctx;
};

static struct ns_udp *udps;
static uint8_t ns_udp_flat[0xffff];

static void ns_udp_unlink(struct ns_udp *u)
{
	if (!u->linked)
		return;
	if (u->prev != NULL)
		u->prev->next = u->next;
	else
		udps = u->next;
	if (u->next != NULL)
		u->next->prev = u->prev;
	u->prev = u->next = NULL;
	u->linked = false;
}

/* Lets go of the pcb: lwIP never calls back about it again. */
static void ns_udp_drop_pcb(struct ns_udp *u)
{
	if (u->pcb == NULL)
		return;
	udp_recv(u->pcb, NULL, NULL);
	udp_remove(u->pcb);
	u->pcb = NULL;
}

static void ns_udp_on_recv(void *arg, struct udp_pcb *pcb, struct pbuf *p,
                           const ip_addr_t *addr, u16_t port)
{
	struct ns_udp *u = arg;
	struct ns_addr src, dst;
	const uint8_t *data;

	(void)pcb;
	if (u == NULL || u->closed || u->cb == NULL) {
		pbuf_free(p);
		return;
	}
	/* lwIP's input is not re-entrant (ns_input defers), so the flat
	 * buffer is never in use twice. */
	if (p->len == p->tot_len) {
		data = p->payload;
	} else {
		pbuf_copy_partial(p, ns_udp_flat, p->tot_len, 0);
		data = ns_udp_flat;
	}
	ns_addr_from_ip(&src, addr);
	ns_addr_from_ip(&dst, ip_current_dest_addr());
	ns_ctx.st.udp_rx++;
	u->busy++;
	u->cb(u->ctx, u, &src, port, &dst, data, p->tot_len);
	u->busy--;
	pbuf_free(p);
	if (u->closed && u->busy == 0)
		free(u);
}

struct ns_udp *ns_udp_open(uint16_t port, ns_udp_recv_fn cb, void *ctx, int *err)
{
	struct ns_udp *u;
	int dummy;
	err_t e;

	if (err == NULL)
		err = &dummy;
	if (!ns_ctx.up || ns_ctx.closing) {
		*err = -ENETDOWN;
		return NULL;
	}
	if (cb == NULL) {
		*err = -EINVAL;
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		*err = -ENOMEM;
		return NULL;
	}
	u->pcb = udp_new_ip_type(IPADDR_TYPE_ANY);
	if (u->pcb == NULL) {
		free(u);
		*err = -ENOMEM;
		return NULL;
	}
	/* Port 0: lwIP picks from UDP_LOCAL_PORT_RANGE_START (0xc000) to
	 * 0xffff, from a random start (LWIP_RANDOMIZE_INITIAL_LOCAL_PORTS). */
	e = udp_bind(u->pcb, IP_ANY_TYPE, port);
	if (e != ERR_OK) {
		udp_remove(u->pcb);
		free(u);
		*err = e == ERR_USE ? -EADDRINUSE : ns_err_to_errno(e);
		return NULL;
	}
	u->port = u->pcb->local_port;
	u->cb = cb;
	u->ctx = ctx;
	udp_recv(u->pcb, ns_udp_on_recv, u);
	u->next = udps;
	if (udps != NULL)
		udps->prev = u;
	udps = u;
	u->linked = true;
	*err = 0;
	return u;
}

uint16_t ns_udp_port(const struct ns_udp *u)
{
	return u != NULL ? u->port : 0;
}

int ns_udp_send(struct ns_udp *u, const struct ns_addr *dst, uint16_t dport,
                const uint8_t *data, size_t len)
{
	struct pbuf *p;
	ip_addr_t ip;
	err_t e;

	if (u == NULL || u->pcb == NULL || u->closed || !ns_ctx.up)
		return -ENETDOWN;
	if (dst == NULL || !ns_ip_from_addr(&ip, dst))
		return -EAFNOSUPPORT;
	if (IP_IS_V6(&ip) ? !ns_ctx.have_v6 : !ns_ctx.have_v4)
		return -EAFNOSUPPORT;
	if (len > (IP_IS_V6(&ip) ? NS_UDP_MAX6 : NS_UDP_MAX4))
		return -EMSGSIZE;
	if (dport == 0 || ip_addr_isany(&ip) || (len > 0 && data == NULL))
		return -EINVAL;
	p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
	if (p == NULL)
		return -ENOMEM;
	if (len > 0)
		memcpy(p->payload, data, len);
	/* Output runs our callback synchronously; a packet it feeds back
	 * with ns_input() is deferred, so no recv callback runs in here. */
	e = udp_sendto(u->pcb, p, &ip, dport);
	pbuf_free(p);
	if (e != ERR_OK)
		return ns_err_to_errno(e);
	ns_ctx.st.udp_tx++;
	ns_timers_kick();
	return 0;
}

void ns_udp_close(struct ns_udp *u)
{
	if (u == NULL || u->closed)
		return;
	ns_udp_drop_pcb(u);
	ns_udp_unlink(u);
	if (u->busy > 0)
		u->closed = true; /* freed when its callback returns */
	else
		free(u);
}

/* The pcbs go (lwIP is reset for the next ns_init); the structs stay with
 * their owners until ns_udp_close(). */
void ns_udp_shutdown_all(void)
{
	struct ns_udp *u;

	while ((u = udps) != NULL) {
		ns_udp_drop_pcb(u);
		ns_udp_unlink(u);
	}
}
