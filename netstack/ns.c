/* The lwIP instance: one point-to-point netif holding the node's mesh
 * addresses, packet input and output, lwIP's timers on a libevent timer.
 * TCP lives in tcp.c/splice.c, UDP in udp.c, ICMP echo in ping.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip4_addr.h"
#include "lwip/ip4_frag.h"
#include "lwip/ip6_addr.h"
#include "lwip/ip6_frag.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/timeouts.h"

#include "ns_priv.h"

struct ns_ctx ns_ctx;

/* Packets handed to ns_input() while lwIP is already on the stack (an
 * output callback feeding a packet straight back in) wait here and are fed
 * from an event, because lwIP's input path is not re-entrant. */
#define NS_DEFER_MAX   256
#define NS_INPUT_SLACK 16
struct ns_deferred {
	struct ns_deferred *next;
	size_t len;
	uint8_t pkt[];
};
static struct ns_deferred *defer_head, *defer_tail;
static unsigned defer_n;
static bool defer_running; /* inside ns_defer_cb */
static int in_input;

uint32_t ns_clock_offset_ms;
u32_t ns_tcp_half_open; /* see ns_hooks.h */
u32_t ns_tcp_syn_drop;

/* lwIP's only clock with NO_SYS=1: milliseconds, wrapping is handled. */
u32_t sys_now(void)
{
	struct timespec ts;

#ifdef MESH_FUZZING
	/* Reproducible runs: lwIP's time moves only when the harness says. */
	return (u32_t)1000000u + ns_clock_offset_ms;
#endif
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) +
	       ns_clock_offset_ms;
}

/* An ACK of a zero-window probe can take the last unsent segment while the
 * persist timer runs; lwIP 2.1.3's tcp_receive does not stop the timer then,
 * and tcp_slowtmr asserts "persist ticking with empty send buffer" (found by
 * fuzz_netstack, reproduced by test_zero_window_probe_acked). Stopping it
 * is what lwIP does itself when output resumes. */
/* How often ns_mem_sweep (limits.c) resets expired orphans and measures
 * what lwIP holds: lwIP counts retransmissions at RTO pace, so a second
 * late is nothing. */
#define NS_SWEEP_MS 1000

/* Set by packet input: only an ACK we received can leave the persist timer
 * running over an empty send queue (see above). */
static bool ns_fixup_due;
static uint32_t ns_swept_ms;
static size_t ns_mem_left; /* see ns_debug_mem_left */

/* lwIP walks every pcb in its fast and slow timers already; ours walks
 * them only when there is a reason (a packet came in since the last tick),
 * and once a second for the budget's sweep and the half-open recount:
 * with thousands of idle connections every walk costs, 100 times a second
 * (bench/results/conn-scale.md). */
void ns_check_timeouts(void)
{
	struct tcp_pcb *pcb;
	uint32_t now = sys_now();
	bool sweep = now - ns_swept_ms >= NS_SWEEP_MS;

	if (ns_fixup_due) {
		ns_fixup_due = false;
		for (pcb = tcp_active_pcbs; pcb != NULL; pcb = pcb->next)
			if (pcb->persist_backoff > 0 &&
			    (pcb->unsent == NULL || pcb->unacked != NULL))
				pcb->persist_backoff = 0;
	}
	if (sweep) {
		ns_swept_ms = now;
		ns_mem_sweep();
	}
	sys_check_timeouts();
	/* Exact again: the hook's counts drift when lwIP drops a half-open
	 * connection (timeout, RST) without telling us. Once a second, or at
	 * once when half the stack's handshakes are pending (the shares count
	 * from there on). */
	if (sweep || ns_tcp_half_open >= NS_TCP_HALF_OPEN_MAX / 2)
		ns_src_recount();
}

static void ns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ns_ctx.timer_pending = false;
	ns_check_timeouts();
	ns_timers_kick();
}

void ns_timers_kick(void)
{
	u32_t ms, now, deadline;
	struct timeval tv;

	if (!ns_ctx.up)
		return;
	ms = sys_timeouts_sleeptime();
	if (ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE)
		return;
	now = sys_now();
	deadline = now + ms;
	/* An earlier wake-up than needed is harmless (the callback re-arms);
	 * only move the timer when lwIP now needs it sooner. */
	if (ns_ctx.timer_pending && (int32_t)(deadline - ns_ctx.timer_deadline) >= 0)
		return;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ns_ctx.timer, &tv);
	ns_ctx.timer_pending = true;
	ns_ctx.timer_deadline = deadline;
}

/* lwIP's output for both families. TCP keeps its pbufs for retransmission,
 * so the packet is only read: passed as is when it is one pbuf, else
 * flattened into a buffer. */
/* Only packets from one of our addresses leave. lwIP 2.1.3 answers an IPv6
 * reassembly that timed out with an ICMPv6 "time exceeded" whose source is
 * the datagram's destination, which may be a multicast address (found by
 * fuzz_netstack); nothing else we send should ever fail this. */
bool ns_ip_is_ours(int family, const uint8_t *a)
{
	int i;

	if (family == AF_INET)
		return ns_ctx.have_v4 &&
		       memcmp(a, &netif_ip4_addr(&ns_ctx.netif)->addr, 4) == 0;
	for (i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++)
		if (ip6_addr_isvalid(netif_ip6_addr_state(&ns_ctx.netif, i)) &&
		    memcmp(a, netif_ip6_addr(&ns_ctx.netif, i)->addr, 16) == 0)
			return true;
	return false;
}

static bool ns_output_src_ok(const struct pbuf *p)
{
	const uint8_t *h = p->payload;

	if (p->len >= 20 && h[0] >> 4 == 4)
		return ns_ip_is_ours(AF_INET, h + 12);
	if (p->len < 40 || h[0] >> 4 != 6)
		return false;
	return ns_ip_is_ours(AF_INET6, h + 8);
}

static err_t ns_output(struct pbuf *p)
{
	static uint8_t flat[0xffff];
	uint8_t *buf = flat;

	if (ns_ctx.out == NULL)
		return ERR_OK;
	if (ns_local_udp_intercept(p))
		return ERR_OK;
	if (!ns_output_src_ok(p)) {
		ns_ctx.output_drop++;
		return ERR_OK;
	}
	ns_ctx.in_output++;
	if (p->len == p->tot_len) {
		ns_ctx.out(ns_ctx.out_ctx, p->payload, p->len);
	} else {
		if (ns_ctx.in_output > 1)
			buf = malloc(p->tot_len); /* nested: flat is in use */
		if (buf != NULL) {
			pbuf_copy_partial(p, buf, p->tot_len, 0);
			ns_ctx.out(ns_ctx.out_ctx, buf, p->tot_len);
			if (buf != flat)
				free(buf);
		}
	}
	ns_ctx.in_output--;
	return ERR_OK;
}

static err_t ns_output4(struct netif *netif, struct pbuf *p, const ip4_addr_t *dst)
{
	(void)netif;
	(void)dst;
	return ns_output(p);
}

static err_t ns_output6(struct netif *netif, struct pbuf *p, const ip6_addr_t *dst)
{
	(void)netif;
	(void)dst;
	return ns_output(p);
}

static err_t ns_netif_init(struct netif *netif)
{
	netif->name[0] = 'w';
	netif->name[1] = 'g';
	netif->output = ns_output4;
	netif->output_ip6 = ns_output6;
	/* No NETIF_FLAG_BROADCAST / ETHARP: a point-to-point tunnel. */
	netif->flags = 0;
	return ERR_OK;
}

static void ns_input_now(const uint8_t *pkt, size_t len)
{
	struct pbuf *p;

	ns_any_syn_check(pkt, len);
	/* Zeroed slack after the packet: lwIP 2.1.3's tcp_parseopt() reads the
	 * length byte of an option whose kind is the last header byte, one
	 * past the segment (found by fuzz_netstack). Like Linux's skb
	 * tailroom, the slack keeps that read inside our allocation;
	 * pbuf_realloc() only shortens the lengths (mem_trim is a no-op with
	 * MEM_LIBC_MALLOC). */
	p = pbuf_alloc(PBUF_RAW, (u16_t)(len + NS_INPUT_SLACK), PBUF_RAM);
	if (p == NULL) {
		ns_ctx.st.input_drop++;
		return;
	}
	memcpy(p->payload, pkt, len);
	memset((uint8_t *)p->payload + len, 0, NS_INPUT_SLACK);
	pbuf_realloc(p, (u16_t)len);
	in_input++;
	ns_fixup_due = true;
	if (ns_ctx.netif.input(p, &ns_ctx.netif) != ERR_OK) {
		pbuf_free(p);
		ns_ctx.st.input_drop++;
	}
	in_input--;
}

static void ns_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ns_deferred *d;
	unsigned n = defer_n;

	(void)fd;
	(void)what;
	(void)arg;
	/* Only the packets queued before this event: ones fed back while
	 * processing them (an output callback that loops to ns_input, a UDP
	 * callback replying to ourselves) wait for the next round, or this
	 * would never return. */
	defer_running = true;
	while (n-- > 0 && (d = defer_head) != NULL && ns_ctx.up) {
		defer_head = d->next;
		if (defer_head == NULL)
			defer_tail = NULL;
		defer_n--;
		ns_input_now(d->pkt, d->len);
		free(d);
	}
	defer_running = false;
	if (defer_head != NULL && ns_ctx.up) {
		/* Through the timer heap, so the loop polls and checks its
		 * exit between rounds (an active event re-activated from its
		 * own callback runs again in the same pass). */
		struct timeval zero = {0, 0};

		event_add(ns_ctx.defer_ev, &zero);
	}
	ns_timers_kick();
}

static void ns_defer_clear(void)
{
	struct ns_deferred *d;

	while ((d = defer_head) != NULL) {
		defer_head = d->next;
		free(d);
	}
	defer_tail = NULL;
	defer_n = 0;
}

static int ns_defer(const uint8_t *pkt, size_t len)
{
	struct ns_deferred *d;

	if (defer_n >= NS_DEFER_MAX || (d = malloc(sizeof(*d) + len)) == NULL) {
		ns_ctx.st.input_drop++;
		return -ENOBUFS;
	}
	d->next = NULL;
	d->len = len;
	memcpy(d->pkt, pkt, len);
	if (defer_tail != NULL)
		defer_tail->next = d;
	else
		defer_head = d;
	defer_tail = d;
	defer_n++;
	if (!defer_running)
		event_active(ns_ctx.defer_ev, EV_TIMEOUT, 0);
	return 0;
}

int ns_input_later(const uint8_t *pkt, size_t len)
{
	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	if (len < 20 || len > 0xffff - NS_INPUT_SLACK)
		return -EINVAL;
	return ns_defer(pkt, len);
}

void ns_input(const uint8_t *pkt, size_t len)
{
	unsigned version;

	if (!ns_ctx.up)
		return;
	/* lwIP reads the fixed IP header before checking lengths: check here. */
	if (len < 20 || len > 0xffff - NS_INPUT_SLACK) {
		ns_ctx.st.input_drop++;
		return;
	}
	version = pkt[0] >> 4;
	if ((version == 4 && !ns_ctx.have_v4) ||
	    (version == 6 && (!ns_ctx.have_v6 || len < 40)) ||
	    (version != 4 && version != 6)) {
		ns_ctx.st.input_drop++;
		return;
	}
	if (in_input > 0 || ns_ctx.in_output > 0) {
		(void)ns_defer(pkt, len);
		return;
	}
	ns_input_now(pkt, len);
	ns_timers_kick();
}

bool ns_ip_from_addr(ip_addr_t *ip, const struct ns_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	u32_t v4;

	if (a->family == AF_INET6 && memcmp(a->addr, mapped, 12) != 0) {
		ip_addr_set_zero_ip6(ip);
		memcpy(ip_2_ip6(ip)->addr, a->addr, 16);
		ip6_addr_clear_zone(ip_2_ip6(ip));
		return true;
	}
	if (a->family == AF_INET)
		memcpy(&v4, a->addr, 4);
	else if (a->family == AF_INET6)
		memcpy(&v4, a->addr + 12, 4);
	else
		return false;
	ip_addr_set_zero_ip4(ip);
	ip4_addr_set_u32(ip_2_ip4(ip), v4);
	return true;
}

void ns_addr_from_ip(struct ns_addr *a, const ip_addr_t *ip)
{
	memset(a, 0, sizeof(*a));
	if (IP_IS_V6(ip)) {
		a->family = AF_INET6;
		memcpy(a->addr, ip_2_ip6(ip)->addr, 16);
	} else {
		u32_t v4 = ip4_addr_get_u32(ip_2_ip4(ip));

		a->family = AF_INET;
		memcpy(a->addr, &v4, 4);
	}
}

int ns_err_to_errno(err_t err)
{
	switch (err) {
	case ERR_OK:
		return 0;
	case ERR_MEM:
	case ERR_BUF:
		return -ENOMEM;
	case ERR_TIMEOUT:
	case ERR_ABRT:
		return -ETIMEDOUT;
	case ERR_RTE:
		return -EHOSTUNREACH;
	case ERR_USE:
		return -EADDRINUSE;
	case ERR_RST:
		return -ECONNRESET;
	case ERR_CLSD:
		return -ENOTCONN;
	case ERR_CONN:
		return -ENOTCONN;
	case ERR_VAL:
	case ERR_ARG:
		return -EINVAL;
	default:
		return -EIO;
	}
}

bool ns_addr_parse(struct ns_addr *a, const char *s)
{
	memset(a, 0, sizeof(*a));
	if (s == NULL)
		return false;
	if (inet_pton(AF_INET, s, a->addr) == 1) {
		a->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, a->addr) == 1) {
		a->family = AF_INET6;
		return true;
	}
	memset(a, 0, sizeof(*a));
	return false;
}

static int ns_netif_up(const struct ns_config *cfg)
{
	ip4_addr_t v4 = {0}, mask, gw = {0};
	bool have_v4 = false;
	size_t i, n6 = 0;

	for (i = 0; i < cfg->n_addrs && i < 4; i++) {
		if (cfg->addrs[i].family == AF_INET && !have_v4) {
			memcpy(&v4.addr, cfg->addrs[i].addr, 4);
			have_v4 = true;
		}
	}
	/* A /32: everything else is routed to the one netif (netif_default). */
	ip4_addr_set_u32(&mask, 0xffffffffu);
	if (netif_add(&ns_ctx.netif, have_v4 ? &v4 : NULL, have_v4 ? &mask : NULL, &gw,
	              NULL, ns_netif_init, ip_input) == NULL)
		return -ENOMEM;
	ns_ctx.netif.mtu = cfg->mtu;
	for (i = 0; i < cfg->n_addrs && i < 4 && n6 < LWIP_IPV6_NUM_ADDRESSES; i++) {
		ip6_addr_t a6;
		s8_t idx;

		if (cfg->addrs[i].family != AF_INET6)
			continue;
		memcpy(a6.addr, cfg->addrs[i].addr, 16);
		ip6_addr_clear_zone(&a6);
		if (ip6_addr_islinklocal(&a6))
			ip6_addr_assign_zone(&a6, IP6_UNICAST, &ns_ctx.netif);
		if (netif_add_ip6_address(&ns_ctx.netif, &a6, &idx) != ERR_OK)
			continue;
		/* No duplicate address detection on a tunnel: usable at once. */
		netif_ip6_addr_set_state(&ns_ctx.netif, idx, IP6_ADDR_PREFERRED);
		n6++;
	}
	ns_ctx.have_v4 = have_v4;
	ns_ctx.have_v6 = n6 > 0;
	netif_set_default(&ns_ctx.netif);
	netif_set_up(&ns_ctx.netif);
	netif_set_link_up(&ns_ctx.netif);
	return 0;
}

int ns_init(struct event_base *base, const struct ns_config *cfg, ns_output_fn out,
            void *ctx)
{
	static bool lwip_ready;
	int err;

	if (ns_ctx.up)
		return -EALREADY;
	if (base == NULL || cfg == NULL || out == NULL || cfg->n_addrs == 0)
		return -EINVAL;
	if (cfg->mtu < 576)
		return -EINVAL;
	if (!lwip_ready) {
		lwip_init(); /* once per process: lwIP cannot be torn down */
		lwip_ready = true;
	}
	memset(&ns_ctx, 0, sizeof(ns_ctx));
	ns_tcp_half_open = 0;
	ns_tcp_syn_drop = 0;
	ns_ctx.base = base;
	ns_ctx.out = out;
	ns_ctx.out_ctx = ctx;
	ns_ctx.dial_timeout_ms = NS_TCP_DIAL_TIMEOUT_MS;
	ns_ctx.timer = evtimer_new(base, ns_timer_cb, NULL);
	ns_ctx.defer_ev = event_new(base, -1, 0, ns_defer_cb, NULL);
	ns_ctx.idle_ev = evtimer_new(base, ns_splice_idle_cb, NULL);
	ns_ctx.udp_noports_base = lwip_stats.mib2.udpnoports;
	if (ns_ctx.timer == NULL || ns_ctx.defer_ev == NULL || ns_ctx.idle_ev == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	err = ns_netif_up(cfg);
	if (err < 0)
		goto fail;
	if (!ns_ctx.have_v4 && !ns_ctx.have_v6) {
		netif_remove(&ns_ctx.netif);
		err = -EINVAL;
		goto fail;
	}
	err = ns_ping_init();
	if (err < 0) {
		netif_remove(&ns_ctx.netif);
		goto fail;
	}
	ns_ctx.up = true;
	ns_timers_kick();
	return 0;
fail:
	if (ns_ctx.timer != NULL)
		event_free(ns_ctx.timer);
	if (ns_ctx.defer_ev != NULL)
		event_free(ns_ctx.defer_ev);
	if (ns_ctx.idle_ev != NULL)
		event_free(ns_ctx.idle_ev);
	memset(&ns_ctx, 0, sizeof(ns_ctx));
	return err;
}

/* Every connection is reset (RSTs go out through the output callback, so
 * call this before tearing down what that callback uses), pending dials and
 * pings get their callback with an error, and every ns_tcp pointer held by a
 * caller is invalid afterwards. Not to be called from a netstack callback. */
void ns_shutdown(void)
{
	if (!ns_ctx.up)
		return;
	ns_ctx.closing = true;
	ns_tcp_shutdown_all();
	/* Every connection is gone: what is still charged was not uncharged. */
	ns_mem_left = ns_ctx.mem_rx + ns_ctx.mem_tx + ns_ctx.mem_in;
	ns_udp_shutdown_all();
	ns_ping_shutdown();
	ns_local_udp_shutdown();
	ns_defer_clear();
	ns_src_clear();
	netif_remove(&ns_ctx.netif);
	/* Half-reassembled datagrams hold pbufs in lwIP's static lists: age
	 * them out now (with no netif, no ICMP "time exceeded" leaves). */
	for (int i = 0; i <= LWIP_MAX(IP_REASS_MAXAGE, IPV6_REASS_MAXAGE) + 1; i++) {
		ip_reass_tmr();
		ip6_reass_tmr();
	}
	event_free(ns_ctx.timer);
	event_free(ns_ctx.defer_ev);
	event_free(ns_ctx.idle_ev);
	memset(&ns_ctx, 0, sizeof(ns_ctx));
}

void ns_get_stats(struct ns_stats *st)
{
	struct ns_limits l;

	*st = ns_ctx.st;
	st->tcp_syn_drop = ns_tcp_syn_drop;
	ns_mem_get_stats(st);
	ns_get_limits(&l);
	st->mem_limit = l.mem_limit;
	st->mem_used = ns_mem_used();
	/* lwIP counts datagrams no pcb took (MIB2 udpNoPorts, a u32 that
	 * wraps); only counted while the stack is up. */
	if (ns_ctx.up)
		st->udp_drop =
		    (uint32_t)(lwip_stats.mib2.udpnoports - ns_ctx.udp_noports_base);
}

size_t ns_debug_mem_left(void)
{
	return ns_mem_left;
}

size_t ns_debug_rxq_bytes(void)
{
	return ns_ctx.rxq_bytes;
}
