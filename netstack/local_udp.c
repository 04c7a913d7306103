/* Local UDP services (ns_local_udp_*): an address:port that is neither ours
 * nor a mesh peer's, served inside this process (MagicDNS at
 * 100.100.100.100:53). A datagram lwIP outputs to it never reaches the
 * output callback: ns_output() hands the packet here, it is copied and
 * delivered to the service from an event (so never inside ns_udp_send).
 * A reply is built as an IP packet from the service to our address and fed
 * to lwIP as input from the loop, so the sender's ns_udp receives it like
 * any datagram. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ns_priv.h"

#define NS_LOCAL_UDP_MAX   4
#define NS_LOCAL_QUEUE_MAX 256

struct ns_local_svc {
	bool used;
	struct ns_addr addr; /* IPv4 as AF_INET */
	uint16_t port;
	ns_local_udp_fn fn;
	void *ctx;
};

struct ns_local_dgram {
	struct ns_local_dgram *next;
	struct ns_addr svc, src;
	uint16_t svc_port, sport;
	size_t len;
	uint8_t data[];
};

static struct ns_local_svc svcs[NS_LOCAL_UDP_MAX];
static struct ns_local_dgram *q_head, *q_tail;
static unsigned q_n;
static struct event *q_ev;

/* IPv4-mapped IPv6 becomes IPv4, as everywhere in the netstack. */
static bool ns_local_canon(struct ns_addr *out, const struct ns_addr *a)
{
	ip_addr_t ip;

	if (a == NULL || !ns_ip_from_addr(&ip, a) || ip_addr_isany(&ip))
		return false;
	ns_addr_from_ip(out, &ip);
	return true;
}

static size_t ns_alen(int family)
{
	return family == AF_INET ? 4 : 16;
}

static struct ns_local_svc *ns_local_find(int family, const uint8_t *a, uint16_t port,
                                          bool any_port)
{
	int i;

	for (i = 0; i < NS_LOCAL_UDP_MAX; i++)
		if (svcs[i].used && svcs[i].addr.family == family &&
		    memcmp(svcs[i].addr.addr, a, ns_alen(family)) == 0 &&
		    (any_port || svcs[i].port == port))
			return &svcs[i];
	return NULL;
}

int ns_local_udp_set(const struct ns_addr *addr, uint16_t port, ns_local_udp_fn fn,
                     void *ctx)
{
	struct ns_local_svc *s, *free_slot = NULL;
	struct ns_addr a;
	int i;

	if (port == 0 || !ns_local_canon(&a, addr))
		return -EINVAL;
	s = ns_local_find(a.family, a.addr, port, false);
	if (s != NULL) {
		if (fn == NULL)
			memset(s, 0, sizeof(*s));
		else {
			s->fn = fn;
			s->ctx = ctx;
		}
		return 0;
	}
	if (fn == NULL)
		return 0;
	for (i = 0; i < NS_LOCAL_UDP_MAX && free_slot == NULL; i++)
		if (!svcs[i].used)
			free_slot = &svcs[i];
	if (free_slot == NULL)
		return -ENOSPC;
	free_slot->used = true;
	free_slot->addr = a;
	free_slot->port = port;
	free_slot->fn = fn;
	free_slot->ctx = ctx;
	return 0;
}

bool ns_local_udp_is(const struct ns_addr *addr)
{
	struct ns_addr a;

	if (!ns_local_canon(&a, addr))
		return false;
	return ns_local_find(a.family, a.addr, 0, true) != NULL;
}

/* ---- datagrams to a service ---- */

static void ns_local_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ns_local_dgram *d;
	struct ns_local_svc *s;
	unsigned n = q_n;

	(void)fd;
	(void)what;
	(void)arg;
	/* Only those queued before this round: a service that sends to
	 * itself again waits for the next one. */
	while (n-- > 0 && (d = q_head) != NULL) {
		q_head = d->next;
		if (q_head == NULL)
			q_tail = NULL;
		q_n--;
		s = ns_local_find(d->svc.family, d->svc.addr, d->svc_port, false);
		if (s != NULL)
			s->fn(s->ctx, &d->src, d->sport, d->data, d->len);
		free(d);
	}
	if (q_head != NULL && q_ev != NULL) {
		struct timeval zero = {0, 0};

		event_add(q_ev, &zero);
	}
	ns_timers_kick();
}

static void ns_local_queue(const struct ns_local_svc *s, int family, const uint8_t *src,
                           uint16_t sport, const uint8_t *data, size_t len)
{
	struct ns_local_dgram *d;

	if (q_ev == NULL)
		q_ev = event_new(ns_ctx.base, -1, 0, ns_local_deliver_cb, NULL);
	if (q_ev == NULL || q_n >= NS_LOCAL_QUEUE_MAX ||
	    (d = malloc(sizeof(*d) + len)) == NULL)
		return; /* dropped, as a full socket buffer would */
	memset(d, 0, sizeof(*d));
	d->svc = s->addr;
	d->svc_port = s->port;
	d->src.family = family;
	memcpy(d->src.addr, src, ns_alen(family));
	d->sport = sport;
	d->len = len;
	memcpy(d->data, data, len);
	if (q_tail != NULL)
		q_tail->next = d;
	else
		q_head = d;
	q_tail = d;
	q_n++;
	/* Through the timer heap, not event_active: a sender that answers
	 * each reply at once (a ping-pong with the service) then takes one
	 * loop round per exchange instead of starving the loop. */
	if (!event_pending(q_ev, EV_TIMEOUT, NULL)) {
		struct timeval zero = {0, 0};

		event_add(q_ev, &zero);
	}
}

bool ns_local_udp_intercept(struct pbuf *p)
{
	uint8_t hdr[48], *pkt;
	const struct ns_local_svc *s;
	size_t h, ulen;
	int family;
	uint8_t proto;
	const uint8_t *src, *dst;

	if (!svcs[0].used && !svcs[1].used && !svcs[2].used && !svcs[3].used)
		return false;
	if (pbuf_copy_partial(p, hdr, sizeof(hdr) < p->tot_len ? sizeof(hdr) : p->tot_len,
	                      0) < 20)
		return false;
	if (hdr[0] >> 4 == 4) {
		family = AF_INET;
		h = (size_t)(hdr[0] & 15) * 4;
		proto = hdr[9];
		src = hdr + 12;
		dst = hdr + 16;
		if (ns_local_find(family, dst, 0, true) == NULL)
			return false;
		if ((hdr[6] & 0x3f) != 0 || hdr[7] != 0)
			return true; /* a fragment: the service takes whole datagrams */
	} else if (hdr[0] >> 4 == 6 && p->tot_len >= 40) {
		family = AF_INET6;
		h = 40;
		proto = hdr[6];
		src = hdr + 8;
		dst = hdr + 24;
		if (ns_local_find(family, dst, 0, true) == NULL)
			return false;
		if (proto == 44)
			return true; /* a fragment */
	} else {
		return false;
	}
	if (proto != 17)
		return false;
	if (h < 20 || p->tot_len < h + 8 || h + 8 > sizeof(hdr))
		return true;
	s = ns_local_find(family, dst, (uint16_t)(hdr[h + 2] << 8 | hdr[h + 3]), false);
	if (s == NULL)
		return false; /* another port of that address: out as before */
	ulen = (size_t)p->tot_len - h - 8;
	pkt = malloc(p->tot_len);
	if (pkt == NULL)
		return true;
	pbuf_copy_partial(p, pkt, p->tot_len, 0);
	ns_local_queue(s, family, src, (uint16_t)(hdr[h] << 8 | hdr[h + 1]), pkt + h + 8,
	               ulen);
	free(pkt);
	return true;
}

void ns_local_udp_shutdown(void)
{
	struct ns_local_dgram *d;

	while ((d = q_head) != NULL) {
		q_head = d->next;
		free(d);
	}
	q_tail = NULL;
	q_n = 0;
	if (q_ev != NULL)
		event_free(q_ev);
	q_ev = NULL;
}

/* ---- replies ---- */

static uint32_t ns_sum16(uint32_t s, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static uint16_t ns_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

int ns_local_udp_reply(const struct ns_addr *addr, uint16_t port,
                       const struct ns_addr *dst, uint16_t dport, const uint8_t *data,
                       size_t len)
{
	struct ns_addr a, d;
	size_t h, alen, ulen;
	uint8_t *pkt, *u;
	uint16_t c;
	uint32_t s;
	int r;

	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	if (port == 0 || dport == 0 || (data == NULL && len > 0) ||
	    !ns_local_canon(&a, addr) || !ns_local_canon(&d, dst))
		return -EINVAL;
	if (a.family != d.family)
		return -EAFNOSUPPORT;
	if (!ns_ip_is_ours(d.family, d.addr))
		return -EADDRNOTAVAIL;
	h = a.family == AF_INET ? 20 : 40;
	alen = ns_alen(a.family);
	ulen = 8 + len;
	if (h + ulen > 0xffff - 16)
		return -EMSGSIZE;
	pkt = calloc(1, h + ulen);
	if (pkt == NULL)
		return -ENOMEM;
	if (a.family == AF_INET) {
		pkt[0] = 0x45;
		pkt[2] = (uint8_t)((h + ulen) >> 8);
		pkt[3] = (uint8_t)(h + ulen);
		pkt[6] = 0x40; /* DF */
		pkt[8] = 64;
		pkt[9] = 17;
		memcpy(pkt + 12, a.addr, 4);
		memcpy(pkt + 16, d.addr, 4);
		c = ns_fold(ns_sum16(0, pkt, 20));
		pkt[10] = (uint8_t)(c >> 8);
		pkt[11] = (uint8_t)c;
	} else {
		pkt[0] = 0x60;
		pkt[4] = (uint8_t)(ulen >> 8);
		pkt[5] = (uint8_t)ulen;
		pkt[6] = 17;
		pkt[7] = 64;
		memcpy(pkt + 8, a.addr, 16);
		memcpy(pkt + 24, d.addr, 16);
	}
	u = pkt + h;
	u[0] = (uint8_t)(port >> 8);
	u[1] = (uint8_t)port;
	u[2] = (uint8_t)(dport >> 8);
	u[3] = (uint8_t)dport;
	u[4] = (uint8_t)(ulen >> 8);
	u[5] = (uint8_t)ulen;
	if (len > 0)
		memcpy(u + 8, data, len);
	s = ns_sum16(0, a.addr, alen);
	s = ns_sum16(s, d.addr, alen);
	s += 17 + (uint32_t)ulen;
	c = ns_fold(ns_sum16(s, u, ulen));
	if (c == 0)
		c = 0xffff; /* 0 means "no checksum" in UDP */
	u[6] = (uint8_t)(c >> 8);
	u[7] = (uint8_t)c;
	r = ns_input_later(pkt, h + ulen);
	free(pkt);
	return r;
}
