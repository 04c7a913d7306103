/* Listening sockets for the front-ends: non-blocking, SO_REUSEADDR, accept
 * until EAGAIN. When the process runs out of descriptors (EMFILE/ENFILE,
 * or the kernel of buffers) the listener stops for 100 ms instead of
 * waking up again at once for the same pending connection. */
#include "proxy/internal.h"

/* A burst of clients (a browser opening a page, a load test) must not
 * overflow the accept queue: that costs each dropped SYN a 1 s retransmit.
 * The kernel caps it at net.core.somaxconn (4096 on current kernels). */
#define PX_LISTEN_BACKLOG 4096

#include "config/config.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PX_ACCEPT_PAUSE_MS 100

struct px_listener {
	int fd;
	struct event *ev, *pause;
	px_accept_fn fn;
	void *ctx;
	uint64_t *err_accept;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	time_t last_warn; /* one warning per 10 s while descriptors run out */
};

static void px_listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct px_listener *l = arg;
	event_add(l->ev, NULL);
}

static void px_listener_pause(struct px_listener *l, int e)
{
	time_t now = time(NULL);
	if (now - l->last_warn >= 10) {
		char a[80];
		sockaddr_format(&l->addr, a, sizeof(a));
		log_warn("%s: accept: %s; pausing %d ms", a, strerror(e),
		         PX_ACCEPT_PAUSE_MS);
		l->last_warn = now;
	}
	event_del(l->ev);
	struct timeval tv = {0, PX_ACCEPT_PAUSE_MS * 1000};
	event_add(l->pause, &tv);
}

static void px_listener_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct px_listener *l = arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			l->fn(l->ctx, fd);
			continue;
		}
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return;
		if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM)
			continue;
		if (l->err_accept)
			(*l->err_accept)++;
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			px_listener_pause(l, e);
			return;
		}
		log_warn("accept: %s", strerror(e));
		return;
	}
}

struct px_listener *px_listener_new(struct event_base *base,
                                    const struct cfg_listen *addr, px_accept_fn fn,
                                    void *ctx, uint64_t *err_accept, char *err,
                                    size_t errlen)
{
	char name[80];
	sockaddr_format(&addr->addr, name, sizeof(name));
	struct px_listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	l->fn = fn;
	l->ctx = ctx;
	l->err_accept = err_accept;
	l->fd =
	    socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (l->fd < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l->fd, (const struct sockaddr *)&addr->addr, addr->addr_len) < 0 ||
	    listen(l->fd, PX_LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		goto fail;
	}
	l->addr_len = sizeof(l->addr);
	if (getsockname(l->fd, (struct sockaddr *)&l->addr, &l->addr_len) < 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		goto fail;
	}
	l->ev = event_new(base, l->fd, EV_READ | EV_PERSIST, px_listener_on_accept, l);
	l->pause = evtimer_new(base, px_listener_resume, l);
	if (!l->ev || !l->pause || event_add(l->ev, NULL) < 0) {
		snprintf(err, errlen, "%s: cannot register with the event loop", name);
		goto fail;
	}
	return l;
fail:
	px_listener_free(l);
	return NULL;
}

void px_listener_free(struct px_listener *l)
{
	if (!l)
		return;
	if (l->ev)
		event_free(l->ev);
	if (l->pause)
		event_free(l->pause);
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

void px_listener_addr(const struct px_listener *l, struct sockaddr_storage *ss,
                      socklen_t *len)
{
	*ss = l->addr;
	*len = l->addr_len;
}
