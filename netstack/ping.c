/* ICMP and ICMPv6 echo requests from our mesh address (ns_ping), through
 * lwIP raw pcbs. Replies are matched on the identifier (one per process),
 * sequence number and source address; the raw pcbs leave every other ICMP
 * packet to lwIP, which answers echo requests to us by itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "lwip/inet_chksum.h"
#include "lwip/ip.h"
#include "lwip/prot/icmp.h"
#include "lwip/prot/icmp6.h"
#include "lwip/raw.h"

#include "ns_priv.h"

#define NS_PING_MAX     1024 /* outstanding requests */
#define NS_PING_PAYLOAD 56

struct ns_ping_req {
	struct ns_ping_req *next;
	ip_addr_t dst;
	uint16_t seq;
	struct timespec t0;
	struct event ev;
	ns_ping_fn cb;
	void *ctx;
};

static struct raw_pcb *raw4, *raw6;
static struct ns_ping_req *pending;
static unsigned n_pending;
static uint16_t ping_id, ping_seq;

static void ns_ping_unlink(struct ns_ping_req *r)
{
	struct ns_ping_req **pp;

	for (pp = &pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			n_pending--;
			break;
		}
	}
	event_del(&r->ev);
}

static void ns_ping_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ns_ping_req *r = arg;
	ns_ping_fn cb = r->cb;
	void *ctx = r->ctx;

	(void)fd;
	(void)what;
	ns_ping_unlink(r);
	free(r);
	cb(ctx, -ETIMEDOUT, 0);
}

static double ns_ping_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Raw input: p->payload is the IP header; the ICMP message starts after
 * ip_current_header_tot_len() bytes. Returns 1 if the packet was ours. */
static u8_t ns_ping_recv(void *arg, struct raw_pcb *pcb, struct pbuf *p,
                         const ip_addr_t *src)
{
	uint16_t hlen = ip_current_header_tot_len();
	uint8_t hdr[8], want_type;
	struct ns_ping_req *r;
	uint16_t id, seq;

	(void)arg;
	want_type = pcb == raw6 ? ICMP6_TYPE_EREP : ICMP_ER;
	if (p->tot_len < hlen + 8 || pbuf_copy_partial(p, hdr, 8, hlen) != 8)
		return 0;
	if (hdr[0] != want_type || hdr[1] != 0)
		return 0;
	id = (uint16_t)(hdr[4] << 8 | hdr[5]);
	seq = (uint16_t)(hdr[6] << 8 | hdr[7]);
	if (id != ping_id)
		return 0;
	for (r = pending; r != NULL; r = r->next)
		if (r->seq == seq && ip_addr_cmp(&r->dst, src))
			break;
	if (r == NULL)
		return 0;
	pbuf_free(p);
	{
		ns_ping_fn cb = r->cb;
		void *ctx = r->ctx;
		double rtt = ns_ping_ms_since(&r->t0);

		ns_ping_unlink(r);
		free(r);
		cb(ctx, 0, rtt);
	}
	return 1;
}

int ns_ping_init(void)
{
	raw4 = raw_new_ip_type(IPADDR_TYPE_V4, IP_PROTO_ICMP);
	raw6 = raw_new_ip_type(IPADDR_TYPE_V6, IP6_NEXTH_ICMP6);
	if (raw4 == NULL || raw6 == NULL) {
		ns_ping_shutdown();
		return -ENOMEM;
	}
	/* lwIP fills in the ICMPv6 checksum (it covers a pseudo-header). */
	raw6->chksum_reqd = 1;
	raw6->chksum_offset = 2;
	raw_recv(raw4, ns_ping_recv, NULL);
	raw_recv(raw6, ns_ping_recv, NULL);
	ping_id = (uint16_t)arc4random();
	ping_seq = 0;
	return 0;
}

/* Pending pings are answered with -ECANCELED. */
void ns_ping_shutdown(void)
{
	struct ns_ping_req *r;

	while ((r = pending) != NULL) {
		ns_ping_fn cb = r->cb;
		void *ctx = r->ctx;

		ns_ping_unlink(r);
		free(r);
		cb(ctx, -ECANCELED, 0);
	}
	if (raw4 != NULL)
		raw_remove(raw4);
	if (raw6 != NULL)
		raw_remove(raw6);
	raw4 = raw6 = NULL;
}

int ns_ping(const struct ns_addr *dst, unsigned timeout_ms, ns_ping_fn cb, void *ctx)
{
	struct ns_ping_req *r;
	struct timeval tv;
	struct pbuf *p;
	uint8_t *m;
	ip_addr_t ip;
	bool v6;
	err_t err;
	int i;

	if (!ns_ctx.up || ns_ctx.closing)
		return -ENETDOWN;
	if (dst == NULL || cb == NULL || !ns_ip_from_addr(&ip, dst))
		return -EAFNOSUPPORT;
	v6 = IP_IS_V6(&ip);
	if (v6 ? !ns_ctx.have_v6 : !ns_ctx.have_v4)
		return -EHOSTUNREACH;
	if (n_pending >= NS_PING_MAX)
		return -ENOBUFS;
	r = calloc(1, sizeof(*r));
	p = pbuf_alloc(PBUF_IP, 8 + NS_PING_PAYLOAD, PBUF_RAM);
	if (r == NULL || p == NULL) {
		free(r);
		if (p != NULL)
			pbuf_free(p);
		return -ENOMEM;
	}
	r->seq = ping_seq++;
	m = p->payload;
	m[0] = v6 ? ICMP6_TYPE_EREQ : ICMP_ECHO;
	m[1] = 0;
	m[2] = m[3] = 0;
	m[4] = (uint8_t)(ping_id >> 8);
	m[5] = (uint8_t)ping_id;
	m[6] = (uint8_t)(r->seq >> 8);
	m[7] = (uint8_t)r->seq;
	for (i = 0; i < NS_PING_PAYLOAD; i++)
		m[8 + i] = (uint8_t)i;
	if (!v6) {
		u16_t sum = inet_chksum(m, 8 + NS_PING_PAYLOAD);

		memcpy(m + 2, &sum, 2);
	}
	ip_addr_copy(r->dst, ip);
	r->cb = cb;
	r->ctx = ctx;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	err = raw_sendto(v6 ? raw6 : raw4, p, &ip);
	pbuf_free(p);
	if (err != ERR_OK) {
		free(r);
		return ns_err_to_errno(err);
	}
	evtimer_assign(&r->ev, ns_ctx.base, ns_ping_on_timeout, r);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(&r->ev, &tv);
	r->next = pending;
	pending = r;
	n_pending++;
	ns_timers_kick();
	return 0;
}
