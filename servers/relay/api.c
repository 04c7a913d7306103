/* mesh-relay's local API: a Unix socket (relay.sock in the state
 * directory, mode 0600) answering one request line per connection:
 * "status" (text) or "status json". */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "servers/relay/api.h"

struct rly_api {
	struct evconnlistener *lis;
	rly_api_status_fn fn;
	void *ctx;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void done_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void ev_cb(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void req_cb(struct bufferevent *bev, void *arg)
{
	struct rly_api *a = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = 0;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
	if (!line) {
		if (evbuffer_get_length(in) > 256)
			bufferevent_free(bev);
		return;
	}
	bool json = !strcmp(line, "status json");
	char *text = NULL;
	if (!strcmp(line, "status") || json)
		text = a->fn(a->ctx, json);
	free(line);
	bufferevent_setcb(bev, NULL, done_cb, ev_cb, a);
	if (text) {
		bufferevent_write(bev, text, strlen(text));
		free(text);
	} else {
		const char *e = "error: unknown request (try: status, status json)\n";
		bufferevent_write(bev, e, strlen(e));
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct bufferevent *bev =
	    bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, req_cb, NULL, ev_cb, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

struct rly_api *rly_api_new(struct event_base *base, const char *path,
                            rly_api_status_fn fn, void *ctx, char *err, size_t errlen)
{
	struct rly_api *a = calloc(1, sizeof *a);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!a || strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errlen, "%s: %s", path,
		         a ? "path too long" : "out of memory");
		free(a);
		return NULL;
	}
	snprintf(a->path, sizeof a->path, "%s", path);
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	unlink(path);
	mode_t old = umask(077);
	a->lis = evconnlistener_new_bind(base, accept_cb, a, LEV_OPT_CLOSE_ON_FREE, 16,
	                                 (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (!a->lis) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(a);
		return NULL;
	}
	a->fn = fn;
	a->ctx = ctx;
	return a;
}

void rly_api_free(struct rly_api *a)
{
	if (!a)
		return;
	evconnlistener_free(a->lis);
	unlink(a->path);
	free(a);
}
