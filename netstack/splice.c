/* The pump between a local stream socket and an lwIP connection.
 *
 * mesh -> socket: lwIP hands received pbufs to on_recv; they wait in a ring
 * and go to the socket with one sendmsg() per batch. Only what the socket
 * took is tcp_recved(), so a slow reader closes the TCP window and the ring
 * never holds more than the window.
 *
 * socket -> mesh: the socket is read only while tcp_sndbuf() has room, and
 * never more than that room; tcp_write() copies (checksumming on the way).
 * If lwIP still refuses (ERR_MEM: segment queue full), the rest waits in a
 * small buffer until the sent/poll callback.
 *
 * Close: a local EOF becomes tcp_shutdown(tx) after the data; the peer's FIN
 * becomes shutdown(fd, SHUT_WR) after the queued data. Once both FINs are
 * exchanged the pcb is handed back to lwIP (it frees TIME_WAIT pcbs without
 * telling anyone, so we must not keep one). A RST from the mesh closes the
 * socket with SO_LINGER 0 (the local side sees a reset); a local error
 * tcp_abort()s (the mesh side sees a RST).
 *
 * Options (ns_splice_start_ex): buf_limit sets the receive window at the
 * start (an accepted connection waited with 64 KiB and is raised to it; a
 * dialled one is lowered, the part lwIP already granted taken back by
 * withholding tcp_recved) and caps the send-buffer room the socket is read
 * into; the node's memory budget (limits.c) may hold both back; an
 * ns_acct is counted next to the global counters; idleness is checked by
 * one coarse sweep over all connections (ns_splice_idle_sweep) against two
 * timestamps per connection, written only when bytes move. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lwip/priv/tcp_priv.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"

#include "ns_priv.h"

#define NS_IOV_MAX     64
#define NS_READ_BUDGET (256 * 1024) /* per readable event, for fairness */

static uint8_t ns_read_buf[0xffff];

static void ns_splice_pump(struct ns_tcp *c);

/* ---- byte accounting ---- */

struct ns_acct *ns_acct_new(void)
{
	struct ns_acct *a = calloc(1, sizeof(*a));

	if (a != NULL)
		a->refs = 1;
	return a;
}

void ns_acct_release(struct ns_acct *a)
{
	if (a != NULL && --a->refs == 0)
		free(a);
}

/* Room lwIP's send buffer has for this connection: its free space less
 * what is queued beyond tx_limit. pcb->snd_buf directly: tcp_sndbuf()
 * caps it at 0xffff. */
static size_t ns_tx_room(const struct ns_tcp *c)
{
	size_t room = c->pcb->snd_buf, queued, cap = SIZE_MAX;

	/* Over the memory budget a connection whose source holds its share
	 * reads its socket only up to NS_MEM_FLOOR queued. */
	if (ns_mem_hold(c)) {
		if (c->mem_tx >= NS_MEM_FLOOR)
			return 0;
		cap = NS_MEM_FLOOR - c->mem_tx;
	}
	if (room >= TCP_SND_BUF) {
		room = c->tx_limit;
	} else {
		queued = TCP_SND_BUF - room;
		if (queued >= c->tx_limit)
			return 0;
		if (room > c->tx_limit - queued)
			room = c->tx_limit - queued;
	}
	return room < cap ? room : cap;
}

/* The budget's share of c's sending side: what lwIP queues for it (bytes
 * and a header per segment) and the stash. */
static void ns_mem_tx_sync(struct ns_tcp *c)
{
	size_t now = 0;

	if (c->pcb != NULL)
		now = (size_t)(TCP_SND_BUF - c->pcb->snd_buf) +
		      (size_t)c->pcb->snd_queuelen * NS_PBUF_OVERHEAD;
	if (c->txp != NULL)
		now += c->txp_off + c->txp_len;
	ns_ctx.mem_tx -= c->mem_tx;
	ns_ctx.mem_tx += now;
	ns_src_mem_move(c->src, c->mem_tx, now);
	c->mem_tx = now;
	ns_mem_note_peak();
}

/* The budget's share of c's receiving side moves by add - sub. */
static void ns_mem_rx_move(struct ns_tcp *c, size_t add, size_t sub)
{
	size_t now = c->mem_rx + add - sub;

	ns_ctx.mem_rx = ns_ctx.mem_rx - c->mem_rx + now;
	ns_src_mem_move(c->src, c->mem_rx, now);
	c->mem_rx = now;
}

/* ---- the receive ring ---- */

static bool rxq_reserve(struct ns_tcp *c, uint32_t more)
{
	struct pbuf **ring;
	uint32_t cap, i;

	if (c->rxq_n + more <= c->rxq_cap)
		return true;
	cap = c->rxq_cap ? c->rxq_cap : 16;
	while (cap < c->rxq_n + more)
		cap *= 2;
	ring = malloc(cap * sizeof(*ring));
	if (ring == NULL)
		return false;
	for (i = 0; i < c->rxq_n; i++)
		ring[i] = c->rxq[(c->rxq_head + i) % c->rxq_cap];
	/* The ring itself (up to 32 KiB) is charged too. */
	ns_mem_rx_move(c, cap * sizeof(*ring), c->rxq_cap * sizeof(*ring));
	free(c->rxq);
	c->rxq = ring;
	c->rxq_cap = cap;
	c->rxq_head = 0;
	return true;
}

/* Takes p (a chain) apart into single pbufs at the tail of the ring. Each
 * link of a chain holds one reference to the next pbuf; after the split the
 * ring holds it instead. */
static void rxq_take(struct ns_tcp *c, struct pbuf *p)
{
	while (p != NULL) {
		struct pbuf *next = p->next;

		p->next = NULL;
		p->tot_len = p->len;
		if (p->len == 0) {
			pbuf_free(p);
		} else {
			c->rxq[(c->rxq_head + c->rxq_n) % c->rxq_cap] = p;
			c->rxq_n++;
			c->rxq_bytes += p->len;
			ns_ctx.rxq_bytes += p->len;
			ns_mem_rx_move(c, p->len + NS_PBUF_OVERHEAD, 0);
		}
		p = next;
	}
}

static void rxq_consume(struct ns_tcp *c, size_t n)
{
	while (n > 0) {
		struct pbuf *q = c->rxq[c->rxq_head];
		size_t left = q->len - c->rxq_off;

		if (n < left) {
			c->rxq_off += n;
			c->rxq_bytes -= n;
			ns_ctx.rxq_bytes -= n;
			return;
		}
		n -= left;
		c->rxq_bytes -= left;
		ns_ctx.rxq_bytes -= left;
		c->rxq_off = 0;
		c->rxq_head = (c->rxq_head + 1) % c->rxq_cap;
		c->rxq_n--;
		ns_mem_rx_move(c, 0, q->len + NS_PBUF_OVERHEAD);
		pbuf_free(q);
	}
}

void ns_splice_free_queues(struct ns_tcp *c)
{
	while (c->rxq_n > 0) {
		pbuf_free(c->rxq[c->rxq_head]);
		c->rxq_head = (c->rxq_head + 1) % c->rxq_cap;
		c->rxq_n--;
	}
	ns_ctx.rxq_bytes -= c->rxq_bytes;
	c->rxq_bytes = 0;
	ns_mem_rx_move(c, 0, c->mem_rx);
	ns_ctx.mem_tx -= c->mem_tx;
	ns_src_mem_move(c->src, c->mem_tx, 0);
	c->mem_tx = 0;
	free(c->rxq);
	c->rxq = NULL;
	c->rxq_cap = 0;
	free(c->txp);
	c->txp = NULL;
	c->txp_len = c->txp_off = 0;
}

/* ---- closing ---- */

/* Closes the local socket; with rst, so that its peer sees a reset. */
void ns_splice_close_fd(struct ns_tcp *c, bool rst)
{
	if (c->fd < 0)
		return;
	event_del(&c->ev_read);
	event_del(&c->ev_write);
	c->reading = false;
	if (rst) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
}

/* The local side failed (reset, EPIPE, ...): reset the mesh side too. */
static void ns_splice_reset_local(struct ns_tcp *c)
{
	ns_ctx.st.tcp_reset++;
	ns_tcp_abort_pcb(c);
	ns_splice_close_fd(c, true);
	ns_tcp_finish(c);
}

/* ---- lwIP callbacks (attached from accept/dial on) ---- */

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct ns_tcp *c = arg;

	(void)err;
	if (c == NULL) { /* detached: cannot happen, behave like tcp_recv_null */
		if (p != NULL) {
			tcp_recved(pcb, p->tot_len);
			pbuf_free(p);
		}
		return ERR_OK;
	}
	if (p == NULL) {
		c->rx_fin = true;
	} else {
		uint32_t n = pbuf_clen(p);

		/* Too many pbufs queued: lwIP keeps p and offers it again
		 * (every 250 ms or when we drained the ring). */
		if (c->rxq_n > 0 && c->rxq_n + n > NS_RXQ_MAX_PBUFS)
			return ERR_MEM;
		/* Over the memory budget a connection that holds
		 * NS_MEM_FLOOR, of a source holding its share, takes
		 * nothing more: lwIP keeps p the same way (one chain per
		 * connection, charged by ns_mem_sweep; later segments are
		 * not acknowledged) until the budget has room. */
		if (c->mem_rx >= NS_MEM_FLOOR && ns_mem_hold(c))
			return ERR_MEM;
		if (!rxq_reserve(c, n))
			return ERR_MEM;
		rxq_take(c, p);
	}
	ns_tcp_enter(c);
	if (c->spliced)
		ns_splice_pump(c);
	return ns_tcp_leave(c);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct ns_tcp *c = arg;

	(void)pcb;
	(void)len;
	if (c == NULL)
		return ERR_OK;
	ns_tcp_enter(c);
	if (c->spliced)
		ns_splice_pump(c);
	return ns_tcp_leave(c);
}

/* Every 40 ms (2 slow-timer ticks of 20 ms): retries what is waiting when
 * no ACK may come to call on_sent: bytes lwIP refused (the stash), a FIN
 * it refused, a socket left unread (no room in lwIP, or the memory
 * budget), a window the budget held back. With thousands of idle connections this runs
 * thousands of times per tick, so a connection with nothing waiting costs
 * one test here and no pump (bench/results/conn-scale.md). */
static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
	struct ns_tcp *c = arg;

	if (c != NULL && c->spliced && c->txp_len == 0 && c->unacked_recv == 0 &&
	    (c->reading || c->fd < 0 || c->tx_done))
		return ERR_OK;
	return on_sent(arg, pcb, 0);
}

static void on_err(void *arg, err_t err)
{
	struct ns_tcp *c = arg;

	if (c == NULL)
		return;
	c->pcb = NULL; /* lwIP has freed it */
	if (c->dialing) {
		int e = err == ERR_RST ? -ECONNREFUSED : ns_err_to_errno(err);

		ns_tcp_dial_failed(c, e);
		return;
	}
	if (err == ERR_CLSD) {
		/* An orderly end lwIP completed on its own: both FINs are
		 * through. Deliver what is queued, then close. */
		c->rx_fin = true;
		c->tx_eof = c->tx_done = true;
		if (c->spliced) {
			ns_tcp_enter(c);
			ns_splice_pump(c);
			ns_tcp_leave(c);
		}
		return;
	}
	ns_ctx.st.tcp_reset++;
	if (!c->spliced) {
		c->pcb_dead = true; /* the owner still has to splice or abort */
		return;
	}
	ns_splice_close_fd(c, true);
	ns_tcp_finish(c);
}

void ns_splice_attach(struct ns_tcp *c)
{
	tcp_recv(c->pcb, on_recv);
	tcp_sent(c->pcb, on_sent);
	tcp_err(c->pcb, on_err);
	tcp_poll(c->pcb, on_poll, 2);
}

/* ---- the pump ---- */

/* Writes queued mesh data to the socket; tcp_recved() for what it took.
 * Returns 0 (all written, or the socket is full) or -errno. */
static int ns_splice_rx_flush(struct ns_tcp *c)
{
	size_t total = 0, give;

	while (c->rxq_n > 0) {
		struct iovec iov[NS_IOV_MAX];
		struct msghdr msg = {0};
		size_t want = 0;
		uint32_t i, n = 0;
		ssize_t w;

		for (i = 0; i < c->rxq_n && n < NS_IOV_MAX; i++, n++) {
			struct pbuf *q = c->rxq[(c->rxq_head + i) % c->rxq_cap];
			size_t off = i == 0 ? c->rxq_off : 0;

			iov[n].iov_base = (uint8_t *)q->payload + off;
			iov[n].iov_len = q->len - off;
			want += iov[n].iov_len;
		}
		msg.msg_iov = iov;
		msg.msg_iovlen = n;
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == ENOTSOCK)
			w = writev(c->fd, iov, (int)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		rxq_consume(c, (size_t)w);
		total += (size_t)w;
		if ((size_t)w < want)
			break; /* the socket buffer is full */
	}
	if (total > 0) {
		ns_ctx.st.splice_bytes_in += total;
		if (c->acct != NULL)
			c->acct->bytes_in += total;
		c->last_rx_ms = sys_now();
	}
	c->unacked_recv += total;
	/* A window lowered below what lwIP had granted shrinks by withholding
	 * tcp_recved() for that much. */
	if (c->wnd_debt > 0) {
		size_t k = c->wnd_debt < c->unacked_recv ? c->wnd_debt : c->unacked_recv;

		c->wnd_debt -= k;
		c->unacked_recv -= k;
	}
	/* The window opens by exactly what the socket took; over the memory
	 * budget only as far as NS_MEM_FLOOR, the rest is given back by a
	 * later flush (the next segment, or the socket draining) that finds
	 * the budget under its limit. */
	if (c->pcb != NULL && c->rx_limit < c->rx_target && !ns_mem_hold(c))
		ns_splice_set_window(c, c->rx_target); /* the budget has room again */
	give = c->unacked_recv;
	if (c->pcb != NULL && give > 0 && ns_mem_hold(c)) {
		size_t wnd = c->pcb->rcv_wnd;

		give = wnd >= NS_MEM_FLOOR ? 0 : NS_MEM_FLOOR - wnd;
		if (give > c->unacked_recv)
			give = c->unacked_recv;
		if (give < c->unacked_recv)
			ns_ctx.st.mem_throttle_rx++;
	}
	while (c->pcb != NULL && give > 0) {
		u16_t k = give > 0xffff ? 0xffff : (u16_t)give;

		tcp_recved(c->pcb, k);
		c->unacked_recv -= k;
		give -= k;
	}
	return 0;
}

/* Hands bytes to lwIP; returns how many it took, or -1 on a hard error. */
static ssize_t ns_splice_tx_feed(struct ns_tcp *c, const uint8_t *d, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t room = ns_tx_room(c);
		u16_t k;
		err_t err;

		k = (u16_t)(len - off > 0xffff ? 0xffff : len - off);
		if (k > room)
			k = (u16_t)room;
		if (k == 0)
			break;
		err = tcp_write(c->pcb, d + off, k, TCP_WRITE_FLAG_COPY);
		if (err == ERR_MEM)
			break; /* wait for on_sent */
		if (err != ERR_OK)
			return -1;
		off += k;
	}
	return (ssize_t)off;
}

static int ns_splice_tx_stash(struct ns_tcp *c, const uint8_t *d, size_t len)
{
	c->txp = malloc(len);
	if (c->txp == NULL)
		return -1;
	memcpy(c->txp, d, len);
	c->txp_len = len;
	c->txp_off = 0;
	return 0;
}

static void ns_splice_update_read(struct ns_tcp *c)
{
	bool want = false;

	if (c->fd >= 0 && c->pcb != NULL && !c->tx_eof && c->txp_len == 0 &&
	    tcp_sndqueuelen(c->pcb) < TCP_SND_QUEUELEN) {
		/* Hysteresis: resume only with a useful amount of room. */
		size_t room = ns_tx_room(c), lowat = TCP_SNDLOWAT;

		if (lowat > c->tx_limit / 4)
			lowat = c->tx_limit / 4;
		want = c->reading ? room > 0 : room >= lowat;
		if (!want && c->reading && c->mem_tx >= NS_MEM_FLOOR && ns_mem_hold(c))
			ns_ctx.st.mem_throttle_tx++;
	}
	if (want && !c->reading)
		event_add(&c->ev_read, NULL);
	else if (!want && c->reading)
		event_del(&c->ev_read);
	c->reading = want;
}

/* Moves whatever can move; called with c entered (busy). */
static void ns_splice_pump(struct ns_tcp *c)
{
	if (c->finished)
		return;
	if (!c->rx_done) {
		if (ns_splice_rx_flush(c) < 0) {
			ns_splice_reset_local(c);
			return;
		}
		if (c->rxq_n > 0) {
			event_add(&c->ev_write, NULL);
		} else if (c->rx_fin) {
			shutdown(c->fd, SHUT_WR);
			c->rx_done = true;
			if (c->half_ms == 0)
				c->half_ms = sys_now() | 1;
		}
	}
	if (!c->tx_done && c->pcb != NULL) {
		if (c->txp_len > 0) {
			ssize_t k = ns_splice_tx_feed(c, c->txp + c->txp_off, c->txp_len);

			if (k < 0) {
				ns_splice_reset_local(c);
				return;
			}
			c->txp_off += (size_t)k;
			c->txp_len -= (size_t)k;
			if (c->txp_len == 0) {
				free(c->txp);
				c->txp = NULL;
				c->txp_off = 0;
			}
		}
		if (c->tx_eof && c->txp_len == 0) {
			err_t err = tcp_shutdown(c->pcb, 0, 1);

			if (err == ERR_OK) {
				c->tx_done = true;
				if (c->half_ms == 0)
					c->half_ms = sys_now() | 1;
			} else if (err != ERR_MEM) {
				ns_splice_reset_local(c);
				return;
			}
		}
		tcp_output(c->pcb);
	}
	ns_splice_update_read(c);
	if (c->pcb != NULL && c->rx_fin && c->tx_done) {
		/* Both FINs are through: lwIP completes the close alone. */
		struct tcp_pcb *pcb = c->pcb;

		ns_tcp_detach(c);
		ns_mem_orphan_begin(c, pcb); /* charged until the sweep */
		if (tcp_close(pcb) == ERR_OK) {
			c->pcb = NULL;
		} else {
			ns_tcp_abort_pcb(c);
		}
	}
	if (c->rx_done && c->tx_done) {
		ns_splice_close_fd(c, false);
		ns_tcp_finish(c);
	}
	ns_mem_tx_sync(c);
}

/* ---- socket events ---- */

static void on_fd_read(evutil_socket_t fd, short what, void *arg)
{
	struct ns_tcp *c = arg;
	size_t budget = NS_READ_BUDGET;

	(void)what;
	ns_tcp_enter(c);
	while (!c->finished && c->pcb != NULL && !c->tx_eof && c->txp_len == 0 &&
	       budget > 0) {
		size_t n = ns_tx_room(c);
		ssize_t r, k;

		if (n == 0 || tcp_sndqueuelen(c->pcb) >= TCP_SND_QUEUELEN)
			break;
		if (n > sizeof(ns_read_buf))
			n = sizeof(ns_read_buf);
		if (n > budget)
			n = budget;
		r = read(fd, ns_read_buf, n);
		if (r > 0) {
			ns_ctx.st.splice_bytes_out += (size_t)r;
			if (c->acct != NULL)
				c->acct->bytes_out += (size_t)r;
			c->last_tx_ms = sys_now();
			budget -= (size_t)r;
			k = ns_splice_tx_feed(c, ns_read_buf, (size_t)r);
			if (k < 0 || (k < r && ns_splice_tx_stash(c, ns_read_buf + k,
			                                          (size_t)(r - k)) < 0)) {
				ns_splice_reset_local(c);
				break;
			}
			ns_mem_tx_sync(c);
		} else if (r == 0) {
			c->tx_eof = true;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			ns_splice_reset_local(c);
			break;
		}
	}
	ns_splice_pump(c);
	ns_tcp_leave(c);
	ns_timers_kick();
}

static void on_fd_write(evutil_socket_t fd, short what, void *arg)
{
	struct ns_tcp *c = arg;

	(void)fd;
	(void)what;
	ns_tcp_enter(c);
	ns_splice_pump(c);
	/* Data lwIP held back because the ring was full: take it now rather
	 * than at lwIP's next fast timer. */
	if (!c->finished && c->pcb != NULL && c->pcb->refused_data != NULL &&
	    c->rxq_n < NS_RXQ_MAX_PBUFS / 2)
		tcp_process_refused_data(c->pcb);
	ns_tcp_leave(c);
	ns_timers_kick();
}

/* ---- idleness ---- */

/* How often the sweep must run for c: an eighth of idle_ms (a reset comes
 * at most 12% late), between 10 ms and 1 s; 5 s for the half-closed rule
 * alone. */
static uint32_t ns_idle_period(const struct ns_tcp *c)
{
	uint32_t p = c->idle_ms / 8;

	if (c->idle_ms == 0)
		return 5000;
	return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

static void ns_idle_arm(uint32_t period)
{
	struct timeval tv;

	if (ns_ctx.idle_ev == NULL)
		return;
	if (ns_ctx.idle_pending && ns_ctx.idle_period_ms <= period)
		return;
	tv.tv_sec = period / 1000;
	tv.tv_usec = (period % 1000) * 1000;
	evtimer_add(ns_ctx.idle_ev, &tv);
	ns_ctx.idle_pending = true;
	ns_ctx.idle_period_ms = period;
}

static bool ns_idle_due(const struct ns_tcp *c, uint32_t now)
{
	uint32_t last =
	    (int32_t)(c->last_rx_ms - c->last_tx_ms) > 0 ? c->last_rx_ms : c->last_tx_ms;
	uint32_t other;

	if (c->idle_ms > 0 && now - last >= c->idle_ms)
		return true;
	if (c->half_ms == 0 || (c->rx_done && c->tx_done))
		return false;
	/* One direction is done: the other's last byte or the half-close,
	 * whichever is later, starts the clock. */
	other = c->rx_done ? c->last_tx_ms : c->last_rx_ms;
	if ((int32_t)(c->half_ms - other) > 0)
		other = c->half_ms;
	return now - other >= NS_HALF_CLOSED_IDLE_MS;
}

void ns_splice_idle_sweep(void)
{
	uint32_t now = sys_now(), period = 0;
	struct ns_tcp *c, *next;
	bool reset = false;

	for (c = ns_tcp_first(); c != NULL; c = next) {
		next = c->next;
		if (!c->spliced || c->finished)
			continue;
		if (ns_idle_due(c, now)) {
			ns_ctx.st.idle_reset++;
			if (c->acct != NULL)
				c->acct->idle_closed++;
			ns_tcp_enter(c);
			ns_splice_reset_local(c);
			ns_tcp_leave(c); /* frees c */
			reset = true;
			continue;
		}
		if (period == 0 || ns_idle_period(c) < period)
			period = ns_idle_period(c);
	}
	if (period > 0)
		ns_idle_arm(period);
	if (reset)
		ns_timers_kick();
}

void ns_splice_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ns_ctx.idle_pending = false;
	ns_splice_idle_sweep();
}

/* ---- starting ---- */

/* Sets the bytes lwIP may hold for c (queued here, refused, out of order)
 * to limit, at most lwIP's window for the pcb. Lowering shrinks the window
 * at once by what it has left and the rest by withholding tcp_recved(); the
 * advertised window is cut to match, and data the peer had already been
 * allowed beyond it is trimmed by lwIP and retransmitted later. Raising
 * pays back what is withheld first, then opens the window. */
void ns_splice_set_window(struct ns_tcp *c, size_t limit)
{
	struct tcp_pcb *pcb = c->pcb;
	size_t max, cur, k;

	if (pcb == NULL)
		return;
	max = TCP_WND_MAX(pcb);
	cur = c->rx_limit != 0 && c->rx_limit < max ? c->rx_limit : max;
	if (limit > max)
		limit = max;
	if (limit < cur) {
		size_t cut = cur - limit;

		k = cut < pcb->rcv_wnd ? cut : pcb->rcv_wnd;
		pcb->rcv_wnd = (tcpwnd_size_t)(pcb->rcv_wnd - k);
		c->wnd_debt += cut - k;
		if (pcb->rcv_ann_wnd > pcb->rcv_wnd) {
			pcb->rcv_ann_wnd = pcb->rcv_wnd;
			pcb->rcv_ann_right_edge = pcb->rcv_nxt + pcb->rcv_ann_wnd;
		}
	} else if (limit > cur) {
		size_t grow = limit - cur;

		k = grow < c->wnd_debt ? grow : c->wnd_debt;
		c->wnd_debt -= k;
		grow -= k;
		/* No window update of its own: the next segment we send
		 * (an ACK of data, of a window probe) announces it. */
		pcb->rcv_wnd =
		    (tcpwnd_size_t)(pcb->rcv_wnd + grow > max ? max
		                                              : pcb->rcv_wnd + grow);
		tcp_update_rcv_ann_wnd(pcb);
	}
	c->rx_limit = limit;
}

int ns_splice_start(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len)
{
	return ns_splice_start_ex(c, fd, head, head_len, NULL);
}

int ns_splice_start_ex(struct ns_tcp *c, int fd, const uint8_t *head, size_t head_len,
                       const struct ns_splice_opts *o)
{
	size_t limit = o != NULL ? o->buf_limit : 0;
	int fl;

	if (c == NULL || fd < 0) {
		if (fd >= 0)
			close(fd);
		ns_tcp_abort(c);
		return -EINVAL;
	}
	if (c->spliced || c->finished || c->dialing)
		return -EINVAL; /* a caller bug: touch nothing */
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	c->fd = fd;
	c->spliced = true;
	event_assign(&c->ev_read, ns_ctx.base, fd, EV_READ | EV_PERSIST, on_fd_read, c);
	event_assign(&c->ev_write, ns_ctx.base, fd, EV_WRITE, on_fd_write, c);
	if (c->pcb == NULL) { /* reset before the splice: pass it on */
		ns_splice_close_fd(c, true);
		ns_tcp_finish(c);
		return -ECONNRESET;
	}
	if (head_len > 0 && ns_splice_tx_stash(c, head, head_len) < 0) {
		ns_tcp_abort(c);
		return -ENOMEM;
	}
	if (limit == 0 || limit > TCP_WND)
		limit = TCP_WND;
	if (limit < NS_BUF_LIMIT_MIN)
		limit = NS_BUF_LIMIT_MIN;
	c->tx_limit = limit < TCP_SND_BUF ? limit : TCP_SND_BUF;
	/* Over the memory budget the window starts at NS_MEM_FLOOR and opens
	 * to limit when a flush finds room (ns_splice_rx_flush). */
	c->rx_target = limit;
	ns_splice_set_window(c, ns_mem_hold(c) && limit > NS_MEM_FLOOR ? NS_MEM_FLOOR
	                                                                : limit);
	if (o != NULL) {
		c->idle_ms = o->idle_ms;
		c->acct = o->acct;
	}
	if (c->acct != NULL) {
		c->acct->refs++;
		c->acct->active++;
	}
	c->last_rx_ms = c->last_tx_ms = sys_now();
	ns_idle_arm(ns_idle_period(c));
	ns_tcp_enter(c);
	ns_splice_pump(c);
	ns_tcp_leave(c);
	ns_timers_kick();
	return 0;
}
