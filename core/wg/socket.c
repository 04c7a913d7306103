/* The device's UDP sockets: one IPv4, one IPv6 (V6ONLY, optional), both
 * bound to the wildcard address, non-blocking on the event loop, read in
 * batches with recvmmsg; written in batches with sendmmsg when the loop
 * callback that produced the datagrams returns. Each datagram's local
 * address is read (IP_PKTINFO / IPV6_RECVPKTINFO) and replies leave from it
 * (sticky source, struct wg_src). GSO (UDP_SEGMENT) is given up per
 * destination, for WG_GSO_RETRY_SEC, when that destination's route refuses
 * it, and for the whole device when many destinations do. */
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "core/wg/device_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCK_BUF_BYTES (4 << 20)
/* Batches read per wake-up before yielding to other events. */
#define MAX_ROUNDS 8
#ifndef WG_TX_GSO
#define WG_TX_GSO 1 /* coalesce runs with UDP_SEGMENT */
#endif
/* Linux takes at most 64 segments (UDP_MAX_SEGMENTS, 128 since 6.x) and one
 * IP datagram's worth of payload per GSO send. */
#ifndef WG_RX_GRO
#define WG_RX_GRO 1 /* UDP_GRO on the receive sockets */
#endif
/* Room for the UDP_GRO cmsg (an int) and a PKTINFO per received message. */
#define RX_CTL_BYTES    128
#define WG_TX_GSO_SEGS  64
#define WG_TX_GSO_BYTES 65000
/* A destination whose route refused a GSO send gets plain sends for this
 * long, then GSO is tried again (a new endpoint is tried at once). */
#define WG_GSO_RETRY_SEC 300
#define WG_NOGSO_MAX     16
/* This many refusals within WG_GSO_RETRY_SEC (more destinations than one
 * route: the uplink's MTU, no checksum offload) turn GSO off for every
 * destination for WG_GSO_RETRY_SEC; then it is tried again. */
#define WG_GSO_OFF_AFTER 8
/* Per-destination refusal lines logged per WG_GSO_RETRY_SEC. */
#define WG_GSO_LOG_MAX 3
/* "Cannot send from" lines logged per minute. */
#define WG_SRC_LOG_MAX 4
#define NS_PER_SEC     1000000000ULL
/* A PKTINFO and a UDP_SEGMENT. */
#define TX_CTL_BYTES                                                                     \
	(CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t)))

struct wg_tx_queue {
	int fd; /* of the queued datagrams */
	unsigned n;
	size_t used; /* bytes of arena */
	struct mmsghdr msgs[WG_TX_BATCH];
	struct iovec iovs[WG_TX_BATCH];
	struct sockaddr_storage addrs[WG_TX_BATCH];
	struct wg_src srcs[WG_TX_BATCH];
	/* The same datagrams coalesced for GSO; first[k] is the queue index of
	 * out[k]'s first datagram, first[count] == n. */
	struct mmsghdr out[WG_TX_BATCH];
	struct iovec oiovs[WG_TX_BATCH];
	union {
		char buf[TX_CTL_BYTES];
		struct cmsghdr align;
	} ctl[WG_TX_BATCH];
	uint16_t gso_size[WG_TX_BATCH]; /* of out[k], 0: one datagram */
	unsigned first[WG_TX_BATCH + 1];
	/* Destinations that refused GSO, until when (wg_now_ns). */
	struct {
		struct sockaddr_storage to;
		socklen_t len;
		uint64_t until_ns;
	} nogso[WG_NOGSO_MAX];
	/* Refusals (and the lines logged) since refuse_window_ns; GSO is off
	 * for every destination until gso_off_until_ns. */
	uint64_t refuse_window_ns, gso_off_until_ns;
	unsigned refusals, refusals_logged;
	uint8_t arena[WG_TX_ARENA_BYTES];
};

uint64_t wg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void read_batches(struct wg_device *d, evutil_socket_t fd);

/* Field by field: the struct has padding, which assignment need not copy. */
static bool src_equal(const struct wg_src *a, const struct wg_src *b)
{
	if (a->family != b->family || a->ifindex != b->ifindex)
		return false;
	if (a->family == AF_INET)
		return a->addr.v4.s_addr == b->addr.v4.s_addr;
	if (a->family == AF_INET6)
		return IN6_ARE_ADDR_EQUAL(&a->addr.v6, &b->addr.v6);
	return true;
}

/* True unless binding to src fails with EADDRNOTAVAIL: the kernel's own
 * word on whether the address is still ours. The errors of a refused send
 * cannot tell (EINVAL and ENETUNREACH also come from the destination's
 * route). The answer is kept for a second: a flood of refused sends costs
 * one probe. */
static bool src_still_ours(struct wg_device *d, const struct wg_src *src)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	uint64_t now = wg_now_ns();
	int fd;

	if (d->probe_ns && now - d->probe_ns < NS_PER_SEC &&
	    src_equal(&d->probe_src, src))
		return d->probe_ours;
	memset(&ss, 0, sizeof(ss));
	if (src->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr = src->addr.v4;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = src->addr.v6;
		a->sin6_scope_id = src->ifindex;
		sl = sizeof(*a);
	}
	d->probe_src = *src;
	d->probe_ns = now;
	d->probe_ours = true;
	fd = socket(src->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true; /* cannot tell: keep it */
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0 && errno == EADDRNOTAVAIL)
		d->probe_ours = false;
	close(fd);
	return d->probe_ours;
}

bool wg_socket_src_gone(const struct wg_device *d, const struct wg_src *src)
{
	for (unsigned i = 0; i < d->n_src_gone; i++)
		if (src_equal(&d->src_gone[i], src))
			return true;
	return false;
}

/* The kernel would not send from src: remember it (the oldest mark gives
 * way) so that peers holding it let it go. */
static void src_mark_gone(struct wg_device *d, const struct wg_src *src)
{
	char a[INET6_ADDRSTRLEN] = "?";
	uint64_t now = wg_now_ns();

	d->stats.tx_src_refused++;
	if (wg_socket_src_gone(d, src))
		return;
	if (d->n_src_gone == WG_SRC_GONE_MAX) {
		memmove(&d->src_gone[0], &d->src_gone[1],
		        (WG_SRC_GONE_MAX - 1) * sizeof(d->src_gone[0]));
		d->n_src_gone--;
	}
	d->src_gone[d->n_src_gone++] = *src;
	if (now - d->src_log_window_ns >= 60 * NS_PER_SEC) {
		d->src_log_window_ns = now;
		d->src_logged = 0;
	}
	if (d->src_logged++ >= WG_SRC_LOG_MAX)
		return;
	inet_ntop(src->family, &src->addr, a, sizeof(a));
	log_info("wg: %s is no longer one of our addresses; replies to the peers "
	         "that wrote to it leave from the address the routing table picks",
	         a);
}

/* The local address of a received datagram (its PKTINFO), into d->rx_src;
 * a datagram arriving on an address marked gone clears the mark. Returns
 * the UDP_GRO segment size (0: none). */
static size_t read_control(struct wg_device *d, const struct msghdr *h)
{
	size_t seg = 0;

	memset(&d->rx_src, 0, sizeof(d->rx_src));
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)h); c;
	     c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		int v;

		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(v))) {
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			if (v > 0)
				seg = (size_t)v;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		           c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;

			/* ipi_spec_dst: the local address replies leave from
			 * (the header's destination, ipi_addr, may be a
			 * broadcast or multicast address, never a source). */
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			if (pi.ipi_spec_dst.s_addr == htonl(INADDR_ANY) ||
			    pi.ipi_spec_dst.s_addr == htonl(INADDR_BROADCAST) ||
			    IN_MULTICAST(ntohl(pi.ipi_spec_dst.s_addr)))
				continue;
			d->rx_src.family = AF_INET;
			d->rx_src.addr.v4 = pi.ipi_spec_dst;
		} else if (c->cmsg_level == IPPROTO_IPV6 &&
		           c->cmsg_type == IPV6_PKTINFO &&
		           c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			if (IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr) ||
			    IN6_IS_ADDR_UNSPECIFIED(&pi.ipi6_addr))
				continue; /* not a source (see IPv4) */
			d->rx_src.family = AF_INET6;
			d->rx_src.addr.v6 = pi.ipi6_addr;
			if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
				d->rx_src.ifindex = pi.ipi6_ifindex;
		}
	}
	if (d->n_src_gone && d->rx_src.family) {
		for (unsigned i = 0; i < d->n_src_gone; i++) {
			if (!src_equal(&d->src_gone[i], &d->rx_src))
				continue;
			d->src_gone[i] = d->src_gone[--d->n_src_gone];
			d->probe_ns = 0; /* it is back */
			break;
		}
	}
	return seg;
}

static void receive_coalesced(struct wg_device *d, const struct msghdr *h,
                              const uint8_t *buf, size_t len)
{
	const struct sockaddr *src = h->msg_name;
	size_t seg = read_control(d, h);

	if (seg == 0 || seg >= len) {
		wg_device_receive(d, buf, len, src); /* one datagram (maybe empty) */
	} else {
		d->stats.rx_gro_buffers++;
		for (size_t off = 0; off < len; off += seg)
			wg_device_receive(d, buf + off, len - off < seg ? len - off : seg,
			                  src);
	}
	memset(&d->rx_src, 0, sizeof(d->rx_src));
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct wg_device *d = arg;

	/* What the datagrams read here make us send (acknowledgements, data
	 * the acknowledgements let go) leaves in batches. */
	wg_device_tx_hold(d);
	read_batches(d, fd);
	wg_device_tx_release(d);
}

void wg_device_tx_hold(struct wg_device *d)
{
	d->tx_hold++;
}

void wg_device_tx_release(struct wg_device *d)
{
	if (d->tx_hold && --d->tx_hold == 0)
		wg_socket_flush(d);
}

static void read_batches(struct wg_device *d, evutil_socket_t fd)
{
	for (int round = 0; round < MAX_ROUNDS; round++) {
		for (int i = 0; i < WG_RX_BATCH; i++) {
			d->rx_msgs[i].msg_hdr.msg_namelen = sizeof(d->rx_addrs[i]);
			d->rx_msgs[i].msg_hdr.msg_flags = 0;
			d->rx_msgs[i].msg_hdr.msg_control =
			    d->rx_ctl + (size_t)i * RX_CTL_BYTES;
			d->rx_msgs[i].msg_hdr.msg_controllen = RX_CTL_BYTES;
			d->rx_msgs[i].msg_len = 0;
		}
		int n = recvmmsg(fd, d->rx_msgs, WG_RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			if (d->rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				d->stats.rx_drop_short++;
				continue;
			}
			receive_coalesced(d, &d->rx_msgs[i].msg_hdr,
			                  d->rx_bufs + (size_t)i * WG_MAX_UDP_PAYLOAD,
			                  d->rx_msgs[i].msg_len);
		}
		if (n < WG_RX_BATCH)
			return;
	}
}

static int rx_buffers_alloc(struct wg_device *d)
{
	if (d->rx_bufs)
		return 0;
	d->rx_bufs = malloc((size_t)WG_RX_BATCH * WG_MAX_UDP_PAYLOAD);
	d->rx_msgs = calloc(WG_RX_BATCH, sizeof(*d->rx_msgs));
	d->rx_iovs = calloc(WG_RX_BATCH, sizeof(*d->rx_iovs));
	d->rx_addrs = calloc(WG_RX_BATCH, sizeof(*d->rx_addrs));
	d->rx_ctl = calloc(WG_RX_BATCH, RX_CTL_BYTES);
	if (!d->rx_bufs || !d->rx_msgs || !d->rx_iovs || !d->rx_addrs || !d->rx_ctl)
		return -ENOMEM;
	for (int i = 0; i < WG_RX_BATCH; i++) {
		d->rx_iovs[i].iov_base = d->rx_bufs + (size_t)i * WG_MAX_UDP_PAYLOAD;
		d->rx_iovs[i].iov_len = WG_MAX_UDP_PAYLOAD;
		d->rx_msgs[i].msg_hdr.msg_iov = &d->rx_iovs[i];
		d->rx_msgs[i].msg_hdr.msg_iovlen = 1;
		d->rx_msgs[i].msg_hdr.msg_name = &d->rx_addrs[i];
	}
	return 0;
}

static int open_one(int family, uint16_t port, uint16_t *bound_port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, buf = SOCK_BUF_BYTES, ret;

	fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_ANY);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_any;
		sl = sizeof(*a);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	/* The local address of each datagram (sticky source); without it
	 * replies simply leave from the address the kernel picks. */
	if (family == AF_INET)
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	else
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	/* Larger buffers absorb bursts; the kernel may clamp them. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
#if WG_RX_GRO
	/* Coalesced receive (split again in receive_coalesced); an old kernel
	 * without it just delivers datagrams one by one. */
	setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
#endif
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*bound_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

static void on_tx_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	wg_socket_flush(arg);
}

void wg_device_set_tx_defer(struct wg_device *d, bool on)
{
	d->tx_defer = on;
}

static int tx_queue_alloc(struct wg_device *d)
{
	if (!d->tx_flush_ev) {
		d->tx_flush_ev = event_new(d->base, -1, 0, on_tx_flush, d);
		if (!d->tx_flush_ev)
			return -ENOMEM;
	}
	if (!d->txq) {
		d->txq = calloc(1, sizeof(*d->txq));
		if (!d->txq)
			return -ENOMEM;
	}
	return 0;
}

int wg_socket_open(struct wg_device *d, uint16_t port)
{
	uint16_t bound = 0, bound6 = 0;
	int fd, ret;

	wg_socket_close(d);
	ret = rx_buffers_alloc(d);
	if (!ret)
		ret = tx_queue_alloc(d);
	if (ret)
		return ret;
	fd = open_one(AF_INET, port, &bound);
	if (fd < 0)
		return fd;
	d->fd4 = fd;
	d->port = bound;
	d->ev4 = event_new(d->base, fd, EV_READ | EV_PERSIST, on_readable, d);
	if (!d->ev4 || event_add(d->ev4, NULL) != 0) {
		wg_socket_close(d);
		return -ENOMEM;
	}
	/* IPv6 on the same port if the host has it; not having it is fine. */
	fd = open_one(AF_INET6, bound, &bound6);
	if (fd < 0) {
		log_debug("wg: no IPv6 socket on port %u (%s)", bound, strerror(-fd));
		return 0;
	}
	d->fd6 = fd;
	d->ev6 = event_new(d->base, fd, EV_READ | EV_PERSIST, on_readable, d);
	if (!d->ev6 || event_add(d->ev6, NULL) != 0) {
		wg_socket_close(d);
		return -ENOMEM;
	}
	return 0;
}

void wg_socket_close(struct wg_device *d)
{
	wg_socket_flush(d);
	free(d->txq);
	d->txq = NULL;
	if (d->tx_flush_ev)
		event_free(d->tx_flush_ev);
	d->tx_flush_ev = NULL;
	if (d->ev4)
		event_free(d->ev4);
	if (d->ev6)
		event_free(d->ev6);
	d->ev4 = d->ev6 = NULL;
	if (d->fd4 >= 0)
		close(d->fd4);
	if (d->fd6 >= 0)
		close(d->fd6);
	d->fd4 = d->fd6 = -1;
	d->port = 0;
}

void wg_device_set_tx_hook(struct wg_device *d,
                           void (*fn)(void *ctx, const struct sockaddr *to,
                                      const uint8_t *buf, size_t len),
                           void *ctx)
{
	d->tx_hook = fn;
	d->tx_hook_ctx = ctx;
}

/* h's control data: a PKTINFO for src (if set) and a UDP_SEGMENT of
 * gso_size (if not 0), in buf (TX_CTL_BYTES, aligned for a cmsghdr). */
static void set_control(struct msghdr *h, char *buf, const struct wg_src *src,
                        uint16_t gso_size)
{
	size_t used = 0;

	memset(buf, 0, TX_CTL_BYTES);
	if (src && src->family == AF_INET) {
		struct cmsghdr *c = (struct cmsghdr *)buf;
		struct in_pktinfo pi;

		memset(&pi, 0, sizeof(pi));
		pi.ipi_spec_dst = src->addr.v4;
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		used = CMSG_SPACE(sizeof(pi));
	} else if (src && src->family == AF_INET6) {
		struct cmsghdr *c = (struct cmsghdr *)buf;
		struct in6_pktinfo pi;

		memset(&pi, 0, sizeof(pi));
		pi.ipi6_addr = src->addr.v6;
		pi.ipi6_ifindex = src->ifindex;
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		used = CMSG_SPACE(sizeof(pi));
	}
	if (gso_size) {
		struct cmsghdr *c = (struct cmsghdr *)(buf + used);

		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(gso_size));
		memcpy(CMSG_DATA(c), &gso_size, sizeof(gso_size));
		used += CMSG_SPACE(sizeof(gso_size));
	}
	h->msg_control = used ? buf : NULL;
	h->msg_controllen = used;
}

/* The errors with which the kernel refuses a source address that is no
 * longer ours (EINVAL for IPv6 and older kernels, ENETUNREACH from the IPv4
 * route lookup of newer ones). The destination's route gives the same
 * ones: src_still_ours tells which. */
static bool src_refused(int err)
{
	return err == EINVAL || err == EADDRNOTAVAIL || err == ENETUNREACH;
}

/* The errors of a GSO send its route or device cannot take (too big for
 * the route, no checksum offload, IPsec). */
static bool gso_error(int err)
{
	return err == EIO || err == EINVAL || err == EMSGSIZE;
}

/* src is not ours any more: marked gone, and no datagram of the queue from
 * index `from` on is sent from it (they are coalesced again). */
static void src_forget(struct wg_device *d, struct wg_tx_queue *q, unsigned from,
                       const struct wg_src *src)
{
	struct wg_src gone = *src;

	src_mark_gone(d, &gone);
	for (unsigned u = from; u < q->n; u++)
		if (src_equal(&q->srcs[u], &gone))
			memset(&q->srcs[u], 0, sizeof(q->srcs[u]));
}

enum tx_stop {
	TX_DONE,
	TX_GSO_REFUSED, /* the destination of entry *at refused a GSO send */
	TX_SRC_GONE,    /* entry *at's source went away; queue sources cleared */
};

/* Sends out[0..cnt) on q->fd; first[k]..first[k+1] are the queued
 * datagrams in out[k]. Stops at an entry that must be coalesced again
 * (*at: its index), see enum tx_stop. */
static enum tx_stop send_entries(struct wg_device *d, struct wg_tx_queue *q, unsigned cnt,
                                 unsigned *at)
{
	unsigned off = 0;
	bool bare = false; /* out[off] was retried without its source */

	while (off < cnt) {
		int r = sendmmsg(q->fd, q->out + off, cnt - off, MSG_DONTWAIT);
		int err = errno;
		unsigned k = q->first[off + 1] - q->first[off];
		struct wg_src *src = &q->srcs[q->first[off]];

		if (r > 0) {
			off += (unsigned)r;
			bare = false;
			continue;
		}
		if (r < 0 && err == EINTR)
			continue;
		if (r == 0 || err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
			/* The socket buffer is full: the rest is lost, as it would
			 * have been one sendto at a time. */
			d->stats.tx_drop_sock += q->first[cnt] - q->first[off];
			break;
		}
		if (src->family && !bare && (src_refused(err) || gso_error(err))) {
			if (!src_still_ours(d, src)) {
				/* Every later entry from it is rebuilt without it. */
				src_forget(d, q, q->first[off], src);
				*at = off;
				return TX_SRC_GONE;
			}
			if (!(k > 1 && gso_error(err))) {
				/* Our address is fine: the destination's route
				 * refused it. Once more without it, as the kernel
				 * does (only this entry: the peer keeps it). */
				set_control(&q->out[off].msg_hdr, q->ctl[off].buf, NULL,
				            q->gso_size[off]);
				bare = true;
				continue;
			}
		}
		if (k > 1 && gso_error(err)) {
			*at = off;
			return TX_GSO_REFUSED;
		}
		/* Refused (unreachable, too big...): skip it. */
		d->stats.tx_drop_sock += k;
		log_debug("wg: sendmmsg: %s", strerror(err));
		off++;
		bare = false;
	}
	return TX_DONE;
}

/* True while the destination at queue index i is one that refused GSO. */
static bool gso_refused(struct wg_tx_queue *q, unsigned i, uint64_t now)
{
	for (unsigned j = 0; j < WG_NOGSO_MAX; j++)
		if (q->nogso[j].until_ns > now &&
		    q->nogso[j].len == q->msgs[i].msg_hdr.msg_namelen &&
		    memcmp(&q->nogso[j].to, &q->addrs[i], q->nogso[j].len) == 0)
			return true;
	return false;
}

/* Remembers that the destination at queue index i refused GSO (the entry
 * that expires first gives way). After WG_GSO_OFF_AFTER refusals within
 * WG_GSO_RETRY_SEC, GSO is off for every destination that long: refusals
 * that many come from the uplink or its device, and a per-destination list
 * would only thrash (a refused send, a count and a log line per flush). */
static void gso_refuse(struct wg_device *d, struct wg_tx_queue *q, unsigned i,
                       uint64_t now)
{
	unsigned slot = 0;
	char a[INET6_ADDRSTRLEN + 8];

	for (unsigned j = 1; j < WG_NOGSO_MAX; j++)
		if (q->nogso[j].until_ns < q->nogso[slot].until_ns)
			slot = j;
	q->nogso[slot].to = q->addrs[i];
	q->nogso[slot].len = q->msgs[i].msg_hdr.msg_namelen;
	q->nogso[slot].until_ns = now + WG_GSO_RETRY_SEC * NS_PER_SEC;
	d->stats.tx_gso_refused++;
	if (!q->refuse_window_ns ||
	    now - q->refuse_window_ns >= WG_GSO_RETRY_SEC * NS_PER_SEC) {
		q->refuse_window_ns = now;
		q->refusals = q->refusals_logged = 0;
	}
	if (++q->refusals >= WG_GSO_OFF_AFTER) {
		q->gso_off_until_ns = now + WG_GSO_RETRY_SEC * NS_PER_SEC;
		q->refuse_window_ns = 0;
		log_info("wg: UDP GSO refused towards %d destinations within %d s (the "
		         "uplink's MTU or its device?); sending one datagram at a time "
		         "to every peer for %d s, then trying GSO again",
		         WG_GSO_OFF_AFTER, WG_GSO_RETRY_SEC, WG_GSO_RETRY_SEC);
		return;
	}
	if (q->refusals_logged++ >= WG_GSO_LOG_MAX)
		return;
	sockaddr_format(&q->addrs[i], a, sizeof(a));
	log_info("wg: UDP GSO refused towards %s; sending to it one datagram at a "
	         "time for %d s (other peers keep GSO)",
	         a, WG_GSO_RETRY_SEC);
}

/* Runs of datagrams to one address from one source, all of one size but
 * the last (which may be shorter), become one UDP GSO send (UDP_SEGMENT),
 * unless gso is false or the destination refused GSO lately. */
static unsigned coalesce(struct wg_tx_queue *q, unsigned from, bool gso, uint64_t now)
{
	unsigned k = 0, i = from;

	while (i < q->n) {
		struct mmsghdr *o = &q->out[k];
		size_t seg = q->iovs[i].iov_len, total = seg;
		unsigned j = i + 1;
		bool may = gso && !gso_refused(q, i, now);

		while (may && j < q->n && j - i < WG_TX_GSO_SEGS &&
		       q->msgs[j].msg_hdr.msg_namelen == q->msgs[i].msg_hdr.msg_namelen &&
		       memcmp(&q->addrs[j], &q->addrs[i],
		              q->msgs[i].msg_hdr.msg_namelen) == 0 &&
		       src_equal(&q->srcs[j], &q->srcs[i]) && q->iovs[j].iov_len <= seg &&
		       total + q->iovs[j].iov_len <= WG_TX_GSO_BYTES) {
			total += q->iovs[j].iov_len;
			if (q->iovs[j++].iov_len < seg)
				break;
		}
		memset(o, 0, sizeof(*o));
		o->msg_hdr.msg_name = &q->addrs[i];
		o->msg_hdr.msg_namelen = q->msgs[i].msg_hdr.msg_namelen;
		q->oiovs[k].iov_base = q->iovs[i].iov_base;
		q->oiovs[k].iov_len = total;
		o->msg_hdr.msg_iov = &q->oiovs[k];
		o->msg_hdr.msg_iovlen = 1;
		q->gso_size[k] = j - i > 1 ? (uint16_t)seg : 0;
		set_control(&o->msg_hdr, q->ctl[k].buf, &q->srcs[i], q->gso_size[k]);
		q->first[k++] = i;
		i = j;
	}
	q->first[k] = q->n;
	return k;
}

void wg_socket_flush(struct wg_device *d)
{
	struct wg_tx_queue *q = d->txq;
	uint64_t now;
	unsigned from = 0;

	if (!q || !q->n)
		return;
	now = wg_now_ns();
	while (from < q->n) {
		unsigned at = 0,
		         k = coalesce(q, from, WG_TX_GSO && now >= q->gso_off_until_ns,
		                      now);
		enum tx_stop stop = send_entries(d, q, k, &at);

		if (stop == TX_DONE)
			break;
		/* That destination (its route or its device) cannot take GSO
		 * sends: plain ones to it for a while, the rest as before. A
		 * source gone: the rest again without it. */
		if (stop == TX_GSO_REFUSED)
			gso_refuse(d, q, q->first[at], now);
		from = q->first[at];
	}
	q->n = 0;
	q->used = 0;
}

static int send_one(struct wg_device *d, int fd, const struct sockaddr *sa, socklen_t sl,
                    const struct wg_src *src, const uint8_t *buf, size_t len)
{
	union {
		char buf[TX_CTL_BYTES];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr h;
	int err;

	memset(&h, 0, sizeof(h));
	h.msg_name = (void *)sa;
	h.msg_namelen = sl;
	h.msg_iov = &iov;
	h.msg_iovlen = 1;
	set_control(&h, ctl.buf, src, 0);
	if (sendmsg(fd, &h, 0) >= 0)
		return 0;
	err = errno;
	if (src && src->family && src_refused(err)) {
		/* Without the source, as the kernel does; marked gone only if
		 * the address really went away (not the destination's route). */
		if (!src_still_ours(d, src))
			src_mark_gone(d, src);
		set_control(&h, ctl.buf, NULL, 0);
		if (sendmsg(fd, &h, 0) >= 0)
			return 0;
		err = errno;
	}
	d->stats.tx_drop_sock++;
	log_debug("wg: sendto: %s", strerror(err));
	return -err;
}

int wg_socket_send(struct wg_device *d, const struct sockaddr *sa,
                   const struct wg_src *src, const uint8_t *buf, size_t len)
{
	int fd = sa->sa_family == AF_INET    ? d->fd4
	         : sa->sa_family == AF_INET6 ? d->fd6
	                                     : -1;
	socklen_t sl = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
	                                        : sizeof(struct sockaddr_in6);
	struct wg_tx_queue *q = d->txq;
	struct mmsghdr *m;

	if (d->tx_hook) {
		d->tx_hook(d->tx_hook_ctx, sa, buf, len);
		return 0;
	}
	if (fd < 0) {
		d->stats.tx_drop_sock++;
		return -EAFNOSUPPORT;
	}
	if (src && src->family != sa->sa_family)
		src = NULL; /* cannot happen: both come from one datagram */
	if (!q || !(d->tx_hold || d->tx_defer) || len > WG_TX_ARENA_BYTES / 4) {
		wg_socket_flush(d); /* keep the order */
		return send_one(d, fd, sa, sl, src, buf, len);
	}
	if (q->n &&
	    (q->fd != fd || q->n == WG_TX_BATCH || q->used + len > WG_TX_ARENA_BYTES))
		wg_socket_flush(d);
	if (!q->n && !d->tx_hold && d->tx_flush_ev)
		event_active(d->tx_flush_ev, EV_TIMEOUT, 0);
	q->fd = fd;
	m = &q->msgs[q->n];
	memcpy(q->arena + q->used, buf, len);
	memcpy(&q->addrs[q->n], sa, sl);
	if (src)
		q->srcs[q->n] = *src;
	else
		memset(&q->srcs[q->n], 0, sizeof(q->srcs[q->n]));
	q->iovs[q->n].iov_base = q->arena + q->used;
	q->iovs[q->n].iov_len = len;
	memset(m, 0, sizeof(*m));
	m->msg_hdr.msg_name = &q->addrs[q->n];
	m->msg_hdr.msg_namelen = sl;
	m->msg_hdr.msg_iov = &q->iovs[q->n];
	m->msg_hdr.msg_iovlen = 1;
	q->n++;
	q->used += len;
	return 0;
}
