/* A mesh connection handed to a local service: non-blocking connect, then
 * the splice (shared by [TCPServerTunnel] and expose). */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/log.h"
#include "netstack/ns.h"
#include "proxy/internal.h"

struct px_local_dial {
	struct px_front *f;
	struct px_local_dial *next, *prev;
	struct ns_tcp *c;
	int fd;
	struct event *ev;
	uint8_t head[PX_PROXYV2_MAX];
	size_t head_len;
	char desc[64];
};

static void px_local_dial_free(struct px_local_dial *d, bool abort_both)
{
	struct px_front *f = d->f;
	if (d->prev)
		d->prev->next = d->next;
	else
		f->local_dials = d->next;
	if (d->next)
		d->next->prev = d->prev;
	f->stats.pending--;
	if (d->ev)
		event_free(d->ev);
	if (abort_both) {
		if (d->c)
			ns_tcp_abort(d->c);
		if (d->fd >= 0)
			close(d->fd);
	}
	free(d);
}

void px_local_dial_abort_all(struct px_front *f)
{
	while (f->local_dials)
		px_local_dial_free(f->local_dials, true);
}

/* Connected: the head first (a fresh socket takes its few dozen bytes at
 * once), then the splice. */
static void px_local_splice(struct px_front *f, struct ns_tcp *c, int fd,
                            const uint8_t *head, size_t head_len, const char *desc)
{
	if (head_len) {
		ssize_t n = send(fd, head, head_len, MSG_NOSIGNAL);
		if (n != (ssize_t)head_len) {
			log_debug("%s: header: %s", desc,
			          n < 0 ? strerror(errno) : "short write");
			f->stats.err_other++;
			close(fd);
			ns_tcp_abort(c);
			return;
		}
	}
	struct ns_splice_opts o = {.acct = f->acct,
	                           .idle_ms = f->lim.idle_timeout_ms,
	                           .buf_limit = f->lim.buffer_bytes};
	if (ns_splice_start_ex(c, fd, NULL, 0, &o) < 0)
		f->stats.err_other++;
	else
		f->stats.established++;
}

static void px_local_failed(struct px_front *f, int e, const char *desc)
{
	px_front_count_err(f, px_err_from_host_errno(e));
	log_debug("%s: local connect: %s", desc, strerror(e));
}

static void px_local_on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct px_local_dial *d = arg;
	struct px_front *f = d->f;
	int e = ETIMEDOUT;
	if (what & EV_WRITE) {
		socklen_t el = sizeof(e);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
	}
	if (e != 0) {
		px_local_failed(f, e, d->desc);
		px_local_dial_free(d, true);
		return;
	}
	struct ns_tcp *c = d->c;
	uint8_t head[PX_PROXYV2_MAX];
	size_t head_len = d->head_len;
	char desc[sizeof(d->desc)];
	memcpy(head, d->head, head_len);
	memcpy(desc, d->desc, sizeof(desc));
	d->c = NULL;
	d->fd = -1;
	px_local_dial_free(d, false);
	px_local_splice(f, c, (int)fd, head, head_len, desc);
}

void px_local_dial(struct px_front *f, struct ns_tcp *c, const struct sockaddr *dst,
                   socklen_t dst_len, const uint8_t *head, size_t head_len,
                   const char *desc)
{
	if (head_len > PX_PROXYV2_MAX) {
		f->stats.err_other++;
		ns_tcp_abort(c);
		return;
	}
	int fd = socket(dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		f->stats.err_other++;
		ns_tcp_abort(c);
		return;
	}
	if (connect(fd, dst, dst_len) == 0) {
		px_local_splice(f, c, fd, head, head_len, desc);
		return;
	}
	if (errno != EINPROGRESS) {
		px_local_failed(f, errno, desc);
		close(fd);
		ns_tcp_abort(c);
		return;
	}
	struct px_local_dial *d = calloc(1, sizeof(*d));
	if (d)
		d->ev = event_new(f->env.base, fd, EV_WRITE, px_local_on_connect, d);
	if (!d || !d->ev) {
		free(d);
		f->stats.err_other++;
		close(fd);
		ns_tcp_abort(c);
		return;
	}
	d->f = f;
	d->c = c;
	d->fd = fd;
	if (head_len)
		memcpy(d->head, head, head_len);
	d->head_len = head_len;
	snprintf(d->desc, sizeof(d->desc), "%s", desc);
	d->next = f->local_dials;
	if (f->local_dials)
		f->local_dials->prev = d;
	f->local_dials = d;
	f->stats.pending++;
	unsigned ms = f->lim.handshake_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(d->ev, &tv);
}
