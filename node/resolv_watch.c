/* inotify on the resolver configuration and its directory; see
 * resolv_watch.h. libevent has no inotify wrapper: the inotify descriptor
 * is an ordinary readable fd on the loop. */
#include "node/resolv_watch.h"

#include <errno.h>
#include <event2/event.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/util/clock.h"
#include "core/util/log.h"

#define RW_DEBOUNCE_MS 200
#define RW_MIN_GAP_MS  1000

struct resolv_watch {
	struct event_base *base;
	resolv_watch_fn fn;
	void *ctx;
	char path[PATH_MAX];
	const char *name; /* the file's name within its directory */
	int fd, wd_dir, wd_file;
	struct event *ev, *timer;
	int64_t last_ms;
};

static void rw_watch_file(struct resolv_watch *w)
{
	if (w->wd_file >= 0)
		inotify_rm_watch(w->fd, w->wd_file);
	w->wd_file = inotify_add_watch(w->fd, w->path,
	                               IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB |
	                                   IN_DELETE_SELF | IN_MOVE_SELF);
}

static void rw_schedule(struct resolv_watch *w)
{
	int64_t now = mono_now_ms(), at = now + RW_DEBOUNCE_MS;
	if (w->last_ms && at < w->last_ms + RW_MIN_GAP_MS)
		at = w->last_ms + RW_MIN_GAP_MS;
	struct timeval tv = {(at - now) / 1000, ((at - now) % 1000) * 1000};
	evtimer_add(w->timer, &tv);
}

static void rw_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct resolv_watch *w = arg;
	(void)fd, (void)what;
	w->last_ms = mono_now_ms();
	rw_watch_file(w); /* a rename brought a new inode */
	w->fn(w->ctx);
}

static void rw_on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct resolv_watch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	(void)what;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const void *)p;
			if (e->mask & IN_Q_OVERFLOW) /* events lost: ours may be one */
				hit = true;
			else if (e->wd == w->wd_file)
				hit = true;
			else if (e->wd == w->wd_dir && e->len &&
			         strcmp(e->name, w->name) == 0)
				hit = true;
			p += sizeof(*e) + e->len;
		}
	}
	if (hit)
		rw_schedule(w);
}

struct resolv_watch *resolv_watch_new(struct event_base *base, const char *path,
                                      resolv_watch_fn fn, void *ctx)
{
	struct resolv_watch *w = calloc(1, sizeof(*w));
	if (!w || strlen(path) >= sizeof(w->path)) {
		free(w);
		return NULL;
	}
	w->base = base;
	w->fn = fn;
	w->ctx = ctx;
	w->wd_file = -1;
	snprintf(w->path, sizeof(w->path), "%s", path);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(w->path, '/');
	w->name = slash ? slash + 1 : w->path;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		log_debug("resolv.conf changes not watched: inotify: %s",
		          strerror(errno));
		free(w);
		return NULL;
	}
	w->wd_dir = inotify_add_watch(w->fd, dirname(dir),
	                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
	                                  IN_DELETE | IN_MOVED_FROM);
	rw_watch_file(w);
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, rw_on_inotify, w);
	w->timer = evtimer_new(base, rw_on_timer, w);
	if (w->wd_dir < 0 || !w->ev || !w->timer || event_add(w->ev, NULL) != 0) {
		log_debug("resolv.conf changes not watched: %s", strerror(errno));
		resolv_watch_free(w);
		return NULL;
	}
	return w;
}

void resolv_watch_free(struct resolv_watch *w)
{
	if (!w)
		return;
	if (w->ev)
		event_free(w->ev);
	if (w->timer)
		event_free(w->timer);
	close(w->fd);
	free(w);
}
