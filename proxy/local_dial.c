/* A mesh connection handed to a local service: non-blocking connect, then
 * the splice (shared by [TCPServerTunnel] and expose). A target name may
 * have several addresses (localhost is often ::1 and 127.0.0.1, and a
 * service may listen on only one of them): they are tried in turn, the
 * next as soon as one fails, all within the handshake timeout. No racing:
 * a local service answers or refuses at once. */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/clock.h"
#include "core/util/log.h"
#include "netstack/ns.h"
#include "proxy/internal.h"

struct px_local_dial {
	struct px_front *f;
	struct px_local_dial *next, *prev;
	struct ns_tcp *c;
	int fd;
	struct event *ev;
	struct px_local_addrs dst;
	size_t at;         /* the address being tried */
	uint64_t deadline; /* mono_now_ms() at which the dial gives up */
	int err;           /* the most telling failure so far (errno) */
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

/* Keeps the more telling of two failures (as race.c ranks them). */
static int px_local_worse(int have, int e)
{
	if (!have)
		return e;
	return px_race_worst(px_err_from_host_errno(have), px_err_from_host_errno(e)) ==
	               px_err_from_host_errno(have)
	           ? have
	           : e;
}

static void px_local_on_connect(evutil_socket_t fd, short what, void *arg);

/* Starts a connect to the next address that does not fail at once.
 * Returns 1 (in progress, d->ev waits for it), 0 (connected: d->fd), or
 * -1 (none left; d->err says why). */
static int px_local_connect_next(struct px_local_dial *d)
{
	while (d->at < d->dst.n) {
		const struct sockaddr_storage *ss = &d->dst.ss[d->at];
		socklen_t sl = d->dst.len[d->at];
		d->at++;
		int fd =
		    socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			d->err = px_local_worse(d->err, errno);
			continue;
		}
		if (connect(fd, (const struct sockaddr *)ss, sl) == 0) {
			d->fd = fd;
			return 0;
		}
		if (errno != EINPROGRESS) {
			d->err = px_local_worse(d->err, errno);
			if (d->at < d->dst.n)
				log_debug(
				    "%s: local connect: %s, trying the next address",
				    d->desc, strerror(errno));
			close(fd);
			continue;
		}
		uint64_t now = mono_now_ms();
		uint64_t left = d->deadline > now ? d->deadline - now : 1;
		struct timeval tv = {(time_t)(left / 1000),
		                     (suseconds_t)(left % 1000) * 1000};
		if (d->ev)
			event_free(d->ev);
		d->ev = event_new(d->f->env.base, fd, EV_WRITE, px_local_on_connect, d);
		if (!d->ev || event_add(d->ev, &tv) < 0) {
			d->err = px_local_worse(d->err, ENOMEM);
			close(fd);
			continue;
		}
		d->fd = fd;
		return 1;
	}
	if (!d->err)
		d->err = EHOSTUNREACH;
	return -1;
}

/* Every address failed (or the time is up): reset the mesh side. */
static void px_local_give_up(struct px_local_dial *d)
{
	px_front_count_err(d->f, px_err_from_host_errno(d->err));
	log_debug("%s: local connect: %s", d->desc, strerror(d->err));
	px_local_dial_free(d, true);
}

/* The connect finished: splice, or try the next address. */
static void px_local_done(struct px_local_dial *d)
{
	struct px_front *f = d->f;
	struct ns_tcp *c = d->c;
	int fd = d->fd;
	uint8_t head[PX_PROXYV2_MAX];
	size_t head_len = d->head_len;
	char desc[sizeof(d->desc)];
	memcpy(head, d->head, head_len);
	memcpy(desc, d->desc, sizeof(desc));
	d->c = NULL;
	d->fd = -1;
	px_local_dial_free(d, false);
	px_local_splice(f, c, fd, head, head_len, desc);
}

static void px_local_on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct px_local_dial *d = arg;
	int e = ETIMEDOUT;
	if (what & EV_WRITE) {
		socklen_t el = sizeof(e);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
	}
	if (e == 0) {
		px_local_done(d);
		return;
	}
	d->err = px_local_worse(d->err, e);
	close(d->fd);
	d->fd = -1;
	if (e == ETIMEDOUT) { /* the time is up for all of them */
		px_local_give_up(d);
		return;
	}
	if (d->at < d->dst.n)
		log_debug("%s: local connect: %s, trying the next address", d->desc,
		          strerror(e));
	int r = px_local_connect_next(d);
	if (r == 0)
		px_local_done(d);
	else if (r < 0)
		px_local_give_up(d);
}

void px_local_dial_addrs(struct px_front *f, struct ns_tcp *c,
                         const struct px_local_addrs *dst, const uint8_t *head,
                         size_t head_len, const char *desc)
{
	if (head_len > PX_PROXYV2_MAX || dst->n == 0 || dst->n > PX_LOCAL_ADDRS) {
		f->stats.err_other++;
		ns_tcp_abort(c);
		return;
	}
	struct px_local_dial *d = calloc(1, sizeof(*d));
	if (!d) {
		f->stats.err_other++;
		ns_tcp_abort(c);
		return;
	}
	d->f = f;
	d->c = c;
	d->fd = -1;
	d->dst = *dst;
	d->deadline = mono_now_ms() + f->lim.handshake_timeout_ms;
	if (head_len)
		memcpy(d->head, head, head_len);
	d->head_len = head_len;
	snprintf(d->desc, sizeof(d->desc), "%s", desc);
	d->next = f->local_dials;
	if (f->local_dials)
		f->local_dials->prev = d;
	f->local_dials = d;
	f->stats.pending++;
	int r = px_local_connect_next(d);
	if (r == 0)
		px_local_done(d);
	else if (r < 0)
		px_local_give_up(d);
}

size_t px_proxyv2_for(const struct px_env *env, uint8_t *out, size_t cap,
                      const struct ns_addr *src, uint16_t sport, const struct ns_addr *dst,
                      uint16_t dport)
{
	struct px_identity id;
	struct px_pp2_tlv tlv[PX_PP2_TLVS_MAX];
	size_t n = 0;
	memset(&id, 0, sizeof(id));
	if (env->identify && env->identify(env->identify_ctx, src, &id)) {
		static const uint8_t types[PX_PP2_TLVS_MAX] = {
		    PX_PP2_TYPE_MESH_NAME, PX_PP2_TYPE_MESH_USER, PX_PP2_TYPE_MESH_TAGS};
		const char *v[PX_PP2_TLVS_MAX] = {id.name, id.user, id.tags};
		for (size_t i = 0; i < PX_PP2_TLVS_MAX; i++) {
			size_t l = strnlen(v[i], PX_PP2_VALUE_MAX + 1);
			if (l == 0 || l > PX_PP2_VALUE_MAX)
				continue; /* unknown (or too long to be a name): left out */
			tlv[n++] = (struct px_pp2_tlv){
			    .type = types[i], .len = (uint16_t)l, .value = (const uint8_t *)v[i]};
		}
	}
	return px_proxyv2_header_tlv(out, cap, src, sport, dst, dport, tlv, n);
}

void px_local_dial(struct px_front *f, struct ns_tcp *c, const struct sockaddr *dst,
                   socklen_t dst_len, const uint8_t *head, size_t head_len,
                   const char *desc)
{
	struct px_local_addrs a = {.n = 1};
	if (dst_len > sizeof(a.ss[0])) {
		f->stats.err_other++;
		ns_tcp_abort(c);
		return;
	}
	memcpy(&a.ss[0], dst, dst_len);
	a.len[0] = dst_len;
	px_local_dial_addrs(f, c, &a, head, head_len, desc);
}
