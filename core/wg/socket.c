/* The device's UDP sockets: one IPv4, one IPv6 (V6ONLY, optional), both
 * non-blocking on the event loop, read in batches with recvmmsg; written in
 * batches with sendmmsg when the loop callback that produced the datagrams
 * returns. */
#include "core/util/log.h"
#include "core/wg/device_internal.h"

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
/* Room for the UDP_GRO cmsg (an int) per received message. */
#define RX_CTL_BYTES    64
#define WG_TX_GSO_SEGS  64
#define WG_TX_GSO_BYTES 65000

struct wg_tx_queue {
	int fd; /* of the queued datagrams */
	unsigned n;
	size_t used; /* bytes of arena */
	struct mmsghdr msgs[WG_TX_BATCH];
	struct iovec iovs[WG_TX_BATCH];
	struct sockaddr_storage addrs[WG_TX_BATCH];
	bool gso_off; /* the kernel refused a GSO send once */
	/* The same datagrams coalesced for GSO; first[k] is the queue index of
	 * out[k]'s first datagram, first[count] == n. */
	struct mmsghdr out[WG_TX_BATCH];
	struct iovec oiovs[WG_TX_BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl[WG_TX_BATCH];
	unsigned first[WG_TX_BATCH + 1];
	uint8_t arena[WG_TX_ARENA_BYTES];
};

uint64_t wg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void read_batches(struct wg_device *d, evutil_socket_t fd);

/* With UDP_GRO the kernel may hand us several datagrams of one sender in one
 * buffer, all gso_size long but the last: split them again. */
static void receive_coalesced(struct wg_device *d, const struct msghdr *h,
                              const uint8_t *buf, size_t len)
{
	const struct sockaddr *src = h->msg_name;
	size_t seg = len;

	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)h); c;
	     c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		int v;

		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(v))) {
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			if (v > 0)
				seg = (size_t)v;
		}
	}
	if (seg >= len) {
		wg_device_receive(d, buf, len, src); /* one datagram (maybe empty) */
		return;
	}
	d->rx_gro_buffers++;
	for (size_t off = 0; off < len; off += seg)
		wg_device_receive(d, buf + off, len - off < seg ? len - off : seg, src);
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

/* Sends m[0..cnt) on fd; first[k]..first[k+1] are the queued datagrams in
 * m[k]. Returns the index of an entry the kernel refused as a GSO send
 * (EIO/EINVAL on a coalesced entry), or cnt when done. */
static unsigned send_entries(struct wg_device *d, int fd, struct mmsghdr *m, unsigned cnt,
                             const unsigned *first, bool gso)
{
	unsigned off = 0;

	while (off < cnt) {
		int r = sendmmsg(fd, m + off, cnt - off, MSG_DONTWAIT);
		int err = errno;
		unsigned k = first[off + 1] - first[off];

		if (r > 0) {
			off += (unsigned)r;
			continue;
		}
		if (r < 0 && err == EINTR)
			continue;
		if (r == 0 || err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
			/* The socket buffer is full: the rest is lost, as it would
			 * have been one sendto at a time. */
			d->stats.tx_drop_sock += first[cnt] - first[off];
			break;
		}
		if (gso && k > 1 && (err == EIO || err == EINVAL))
			return off;
		/* Refused (unreachable, too big...): skip it. */
		d->stats.tx_drop_sock += k;
		log_debug("wg: sendmmsg: %s", strerror(err));
		off++;
	}
	return cnt;
}

/* Runs of datagrams to one address, all of one size but the last (which
 * may be shorter), become one UDP GSO send (UDP_SEGMENT). */
static unsigned coalesce(struct wg_tx_queue *q, unsigned from)
{
	unsigned k = 0, i = from;

	while (i < q->n) {
		struct mmsghdr *o = &q->out[k];
		size_t seg = q->iovs[i].iov_len, total = seg;
		unsigned j = i + 1;

		while (j < q->n && j - i < WG_TX_GSO_SEGS &&
		       q->msgs[j].msg_hdr.msg_namelen == q->msgs[i].msg_hdr.msg_namelen &&
		       memcmp(&q->addrs[j], &q->addrs[i],
		              q->msgs[i].msg_hdr.msg_namelen) == 0 &&
		       q->iovs[j].iov_len <= seg &&
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
		if (j - i > 1) {
			struct cmsghdr *c = (struct cmsghdr *)q->ctl[k].buf;
			uint16_t gso_size = (uint16_t)seg;

			o->msg_hdr.msg_control = q->ctl[k].buf;
			o->msg_hdr.msg_controllen = sizeof(q->ctl[k].buf);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(gso_size));
			memcpy(CMSG_DATA(c), &gso_size, sizeof(gso_size));
		}
		q->first[k++] = i;
		i = j;
	}
	q->first[k] = q->n;
	return k;
}

void wg_socket_flush(struct wg_device *d)
{
	struct wg_tx_queue *q = d->txq;
	unsigned from = 0;

	if (!q || !q->n)
		return;
	if (WG_TX_GSO && !q->gso_off) {
		unsigned k = coalesce(q, 0),
		         at = send_entries(d, q->fd, q->out, k, q->first, true);

		if (at == k)
			goto done;
		/* The kernel or the route cannot segment: plain batches from now. */
		q->gso_off = true;
		d->tx_gso_refused++;
		log_info("wg: UDP GSO refused, sending datagrams one by one");
		from = q->first[at];
	}
	for (unsigned i = from; i <= q->n; i++)
		q->first[i - from] = i;
	send_entries(d, q->fd, q->msgs + from, q->n - from, q->first, false);
done:
	q->n = 0;
	q->used = 0;
}

static int send_one(struct wg_device *d, int fd, const struct sockaddr *sa, socklen_t sl,
                    const uint8_t *buf, size_t len)
{
	if (sendto(fd, buf, len, 0, sa, sl) < 0) {
		int err = errno;
		d->stats.tx_drop_sock++;
		log_debug("wg: sendto: %s", strerror(err));
		return -err;
	}
	return 0;
}

int wg_socket_send(struct wg_device *d, const struct sockaddr *sa, const uint8_t *buf,
                   size_t len)
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
	if (!q || !(d->tx_hold || d->tx_defer) || len > WG_TX_ARENA_BYTES / 4) {
		wg_socket_flush(d); /* keep the order */
		return send_one(d, fd, sa, sl, buf, len);
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
