/* TCP connections through lwIP: dialing out, listening, the lifetime of a
 * struct ns_tcp, and the rules that keep lwIP's callbacks safe:
 *
 * - lwIP frees a pcb itself on RST, timeout or abort and then calls the err
 *   callback: from then on c->pcb is NULL and never touched.
 * - Before we let go of a pcb (tcp_close/tcp_abort) every callback is cleared
 *   (ns_tcp_detach), so lwIP can never call into a freed ns_tcp.
 * - tcp_abort() inside an lwIP callback about the same pcb requires that the
 *   callback return ERR_ABRT: c->abrt records it, ns_tcp_leave() returns it.
 * - c is freed only when no frame (lwIP callback, event handler) is using
 *   it: ns_tcp_finish() defers the free to the last ns_tcp_leave(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

struct ns_listener {
	struct ns_listener *next;
	struct tcp_pcb *pcb;
	uint16_t port;
	ns_tcp_accept_fn cb;
	void *ctx;
};

static struct ns_tcp *conns;
static struct ns_listener *listeners;

struct ns_tcp *ns_tcp_new(struct tcp_pcb *pcb)
{
	struct ns_tcp *c;

	if (ns_ctx.st.tcp_active >= NS_TCP_MAX)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->pcb = pcb;
	c->fd = -1;
	c->next = conns;
	if (conns != NULL)
		conns->prev = c;
	conns = c;
	ns_ctx.st.tcp_active++;
	ns_ctx.st.tcp_total++;
	/* Proxied connections: no Nagle delay (we write in large chunks
	 * anyway), and keepalive so a vanished peer frees the connection. */
	tcp_nagle_disable(pcb);
	ip_set_option(pcb, SOF_KEEPALIVE);
	tcp_arg(pcb, c);
	ns_splice_attach(c);
	return c;
}

static void ns_tcp_free(struct ns_tcp *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->dialing)
		event_del(&c->ev_dial);
	if (c->spliced) {
		event_del(&c->ev_read);
		event_del(&c->ev_write);
	}
	ns_splice_free_queues(c);
	ns_src_conn_end(c->src);
	if (c->acct != NULL) {
		c->acct->active--;
		ns_acct_release(c->acct);
	}
	ns_ctx.st.tcp_active--;
	free(c);
}

void ns_tcp_finish(struct ns_tcp *c)
{
	c->finished = true;
	if (c->busy == 0)
		ns_tcp_free(c);
}

void ns_tcp_enter(struct ns_tcp *c)
{
	c->busy++;
}

err_t ns_tcp_leave(struct ns_tcp *c)
{
	err_t ret = c->abrt ? ERR_ABRT : ERR_OK;

	if (--c->busy == 0) {
		c->abrt = false;
		if (c->finished)
			ns_tcp_free(c);
	}
	return ret;
}

void ns_tcp_detach(struct ns_tcp *c)
{
	struct tcp_pcb *pcb = c->pcb;

	if (pcb == NULL)
		return;
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	tcp_poll(pcb, NULL, 0);
	pcb->connected = NULL; /* no setter besides tcp_connect() */
}

void ns_tcp_abort_pcb(struct ns_tcp *c)
{
	if (c->pcb == NULL)
		return;
	ns_tcp_detach(c);
	tcp_abort(c->pcb);
	c->pcb = NULL;
	if (c->busy > 0)
		c->abrt = true;
}

void ns_tcp_abort(struct ns_tcp *c)
{
	if (c == NULL || c->finished)
		return;
	if (c->pcb != NULL)
		ns_ctx.st.tcp_reset++;
	ns_tcp_abort_pcb(c);
	ns_splice_close_fd(c, true);
	ns_tcp_finish(c);
	ns_timers_kick();
}

/* ---- dialing ---- */

void ns_tcp_dial_failed(struct ns_tcp *c, int err)
{
	ns_tcp_connected_fn cb = c->dial_cb;
	void *ctx = c->dial_ctx;

	if (err == -ECONNREFUSED)
		ns_ctx.st.tcp_refused++;
	event_del(&c->ev_dial);
	c->dialing = false;
	ns_tcp_finish(c);
	cb(ctx, NULL, err);
}

static err_t ns_tcp_on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct ns_tcp *c = arg;

	if (c == NULL) { /* cannot happen: detach clears the callback */
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	event_del(&c->ev_dial);
	c->dialing = false;
	ns_tcp_enter(c);
	c->dial_cb(c->dial_ctx, c, err == ERR_OK ? 0 : ns_err_to_errno(err));
	return ns_tcp_leave(c);
}

static void ns_tcp_on_dial_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ns_tcp *c = arg;

	(void)fd;
	(void)what;
	ns_tcp_abort_pcb(c);
	ns_tcp_dial_failed(c, -ETIMEDOUT);
	ns_timers_kick();
}

static bool ns_have_family(const ip_addr_t *ip)
{
	return IP_IS_V6(ip) ? ns_ctx.have_v6 : ns_ctx.have_v4;
}

int ns_tcp_dial(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                void *ctx)
{
	return ns_tcp_dial_ex(dst, port, cb, ctx, NULL);
}

int ns_tcp_dial_ex(const struct ns_addr *dst, uint16_t port, ns_tcp_connected_fn cb,
                   void *ctx, struct ns_tcp **dial)
{
	struct tcp_pcb *pcb;
	struct ns_tcp *c;
	struct timeval tv;
	ip_addr_t ip;
	err_t err;

	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	if (dst == NULL || cb == NULL || !ns_ip_from_addr(&ip, dst))
		return -EAFNOSUPPORT;
	if (!ns_have_family(&ip))
		return -EHOSTUNREACH;
	if (ip_addr_isany(&ip) || ip_addr_ismulticast(&ip) || port == 0)
		return -EINVAL;
	pcb = tcp_new_ip_type(IP_GET_TYPE(&ip));
	if (pcb == NULL)
		return -ENOMEM;
	/* lwIP starts with a 3 s retransmission timeout (RFC 1122); RFC 6298
	 * and Linux use 1 s, so a lost SYN (a peer's listen backlog full in
	 * a burst of connections) costs 1 s, not 3. The variance estimate
	 * seeds the timeout after the first RTT sample the same way. */
	pcb->rto = NS_TCP_INITIAL_RTO_MS / TCP_SLOW_INTERVAL;
	pcb->sv = NS_TCP_INITIAL_RTO_MS / TCP_SLOW_INTERVAL;
	c = ns_tcp_new(pcb);
	if (c == NULL) {
		tcp_close(pcb);
		return -ENOMEM;
	}
	c->dialing = true;
	c->dial_cb = cb;
	c->dial_ctx = ctx;
	evtimer_assign(&c->ev_dial, ns_ctx.base, ns_tcp_on_dial_timeout, c);
	err = tcp_connect(pcb, &ip, port, ns_tcp_on_connected);
	if (err != ERR_OK) {
		ns_tcp_detach(c);
		tcp_abort(pcb);
		c->pcb = NULL;
		c->dialing = false;
		ns_tcp_finish(c);
		return ns_err_to_errno(err);
	}
	tv.tv_sec = ns_ctx.dial_timeout_ms / 1000;
	tv.tv_usec = (ns_ctx.dial_timeout_ms % 1000) * 1000;
	evtimer_add(&c->ev_dial, &tv);
	ns_timers_kick();
	if (dial != NULL)
		*dial = c;
	return 0;
}

/* The ns_tcp exists from ns_tcp_dial() on, so a dial nobody wants any more
 * (a lost race, a session that closed) is reset at once instead of holding
 * its connection until the handshake or its timeout. */
void ns_tcp_dial_cancel(struct ns_tcp *c)
{
	if (c == NULL || !c->dialing || c->finished)
		return;
	event_del(&c->ev_dial);
	c->dialing = false;
	ns_tcp_abort_pcb(c);
	ns_tcp_finish(c);
	ns_timers_kick();
}

/* ---- listening ---- */

/* An accepted pcb becomes an ns_tcp handed to cb (listeners here and the
 * any-port ones in any.c). */
err_t ns_tcp_accepted(struct tcp_pcb *newpcb, err_t err, ns_tcp_accept_fn cb, void *ctx)
{
	struct ns_addr src;
	struct ns_src *s;
	struct ns_tcp *c;

	if (newpcb != NULL)
		ns_src_handshake_done(&newpcb->remote_ip); /* see ns_hooks.h */
	if (cb == NULL || newpcb == NULL || err != ERR_OK)
		return ERR_VAL;
	/* Over 7/8 of the memory budget, or the source's connection cap:
	 * refused (counted there). */
	s = ns_src_conn_begin(&newpcb->remote_ip);
	if (s == NULL) {
		ns_ctx.st.tcp_refused++;
		return ERR_MEM; /* lwIP aborts newpcb: the peer gets a RST */
	}
	c = ns_tcp_new(newpcb);
	if (c == NULL) {
		ns_src_conn_end(s);
		ns_ctx.st.tcp_refused++;
		return ERR_MEM;
	}
	c->src = s;
	/* A small window until the splice (ns_splice_start_ex opens it). */
	ns_splice_set_window(c, NS_WND_PRESPLICE);
	ns_addr_from_ip(&src, &newpcb->remote_ip);
	ns_tcp_enter(c);
	cb(ctx, c, &src, newpcb->remote_port, newpcb->local_port);
	return ns_tcp_leave(c);
}

static err_t ns_tcp_on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	struct ns_listener *l = arg;

	if (l == NULL)
		return ns_tcp_accepted(newpcb, err, NULL, NULL);
	return ns_tcp_accepted(newpcb, err, l->cb, l->ctx);
}

int ns_tcp_listen(uint16_t port, ns_tcp_accept_fn cb, void *ctx)
{
	struct tcp_pcb *pcb, *lpcb;
	struct ns_listener *l;
	err_t err;

	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	if (cb == NULL)
		return -EINVAL;
	for (l = listeners; l != NULL; l = l->next)
		if (port != 0 && l->port == port)
			return -EADDRINUSE;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	if (port != 0)
		ns_any_port_taken(port); /* a specific listener wins */
	/* One dual-stack pcb: every address of ours, IPv4 and IPv6. */
	pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
	if (pcb == NULL) {
		free(l);
		return -ENOMEM;
	}
	ip_set_option(pcb, SOF_KEEPALIVE); /* inherited by accepted pcbs */
	err = tcp_bind(pcb, IP_ANY_TYPE, port);
	if (err == ERR_OK) {
		lpcb = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG,
		                                       &err);
		if (lpcb == NULL && err == ERR_OK)
			err = ERR_MEM;
	}
	if (err != ERR_OK) {
		tcp_close(pcb);
		free(l);
		return ns_err_to_errno(err);
	}
	l->pcb = lpcb;
	l->port = lpcb->local_port;
	l->cb = cb;
	l->ctx = ctx;
	tcp_arg(lpcb, l);
	tcp_accept(lpcb, ns_tcp_on_accept);
	l->next = listeners;
	listeners = l;
	return 0;
}

/* Closing the listen pcb frees it; connections it accepted are separate
 * pcbs and carry on. A half-open one (SYN_RCVD) loses its listener and
 * lwIP resets it when the handshake's ACK arrives. */
void ns_tcp_unlisten(uint16_t port)
{
	struct ns_listener **pp, *l;

	for (pp = &listeners; (l = *pp) != NULL; pp = &l->next) {
		if (l->port != port)
			continue;
		*pp = l->next;
		tcp_arg(l->pcb, NULL);
		tcp_accept(l->pcb, NULL);
		tcp_close(l->pcb); /* a LISTEN pcb: always ERR_OK, freed */
		free(l);
		ns_timers_kick();
		return;
	}
}

void ns_tcp_local(const struct ns_tcp *c, struct ns_addr *addr, uint16_t *port)
{
	if (c == NULL || c->pcb == NULL) {
		if (addr != NULL)
			memset(addr, 0, sizeof(*addr));
		if (port != NULL)
			*port = 0;
		return;
	}
	if (addr != NULL)
		ns_addr_from_ip(addr, &c->pcb->local_ip);
	if (port != NULL)
		*port = c->pcb->local_port;
}

struct ns_tcp *ns_tcp_first(void)
{
	return conns;
}

/* ---- shutdown ---- */

/* Resets every connection, answers pending dials with -ECONNABORTED, closes
 * the listeners, and frees the pcbs lwIP still held after we let go of them
 * (closing, TIME_WAIT), so that a later ns_init() starts clean. */
void ns_tcp_shutdown_all(void)
{
	struct ns_listener *l;

	while (conns != NULL) {
		struct ns_tcp *c = conns;

		c->busy = 0; /* no lwIP frame is on the stack at shutdown */
		if (c->dialing) {
			ns_tcp_abort_pcb(c);
			ns_tcp_dial_failed(c, -ECONNABORTED);
			continue;
		}
		ns_tcp_abort_pcb(c);
		ns_splice_close_fd(c, true);
		ns_tcp_finish(c);
	}
	ns_any_shutdown();
	while ((l = listeners) != NULL) {
		listeners = l->next;
		tcp_arg(l->pcb, NULL);
		tcp_accept(l->pcb, NULL);
		tcp_close(l->pcb);
		free(l);
	}
	while (tcp_active_pcbs != NULL) {
		tcp_arg(tcp_active_pcbs, NULL);
		tcp_err(tcp_active_pcbs, NULL);
		tcp_abort(tcp_active_pcbs);
	}
	while (tcp_tw_pcbs != NULL)
		tcp_abort(tcp_tw_pcbs);
}
