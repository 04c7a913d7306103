#include "node/api_server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define API_MAX_CONNS 64

struct api_server {
	struct event_base *base;
	struct evconnlistener *lis;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	api_handler_fn fn;
	void *ctx;
	int nconns;
	struct api_conn *conns; /* all of them, so api_server_free ends them */
};

struct api_conn {
	struct api_server *srv; /* NULL: the server was freed first */
	struct api_conn *prev, *next;
	struct bufferevent *bev;
	int gone;       /* client closed or errored */
	int finished;   /* handler called finish */
	int dispatched; /* request line seen */
};

/* The private directory for the socket when XDG_RUNTIME_DIR is not set:
 * ${TMPDIR:-/tmp}/mesh-proxy-UID. Anyone may create names in /tmp, so the
 * directory is trusted only if it is one (lstat: not a symlink), belongs to
 * this user and nobody else may enter it; otherwise another user could
 * plant a socket there and answer our CLI. */
static int api_private_dir(char *dir, size_t len, bool create, char *err, size_t errlen)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || tmp[0] != '/')
		tmp = "/tmp";
	uid_t uid = getuid();
	int n = snprintf(dir, len, "%s/mesh-proxy-%u", tmp, (unsigned)uid);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "TMPDIR is too long for the API socket path");
		return -ENAMETOOLONG;
	}
	if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "cannot create %s for the API socket: %s", dir,
		         strerror(e));
		return -e;
	}
	struct stat st;
	if (lstat(dir, &st) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != uid || (st.st_mode & 077) != 0) {
		snprintf(err, errlen,
		         "%s is not a private directory of this user (%s, owner uid "
		         "%u, mode %04o; it must be a directory of uid %u with mode "
		         "0700): remove it, set XDG_RUNTIME_DIR, or pass --api PATH",
		         dir,
		         S_ISLNK(st.st_mode)   ? "a symlink"
		         : S_ISDIR(st.st_mode) ? "a directory"
		                               : "not a directory",
		         (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
		         (unsigned)uid);
		return -EPERM;
	}
	return 0;
}

int api_default_path(char *buf, size_t len, bool create, char *err, size_t errlen)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int n;
	if (rt && rt[0] == '/') {
		n = snprintf(buf, len, "%s/mesh-proxy.sock", rt);
	} else {
		char dir[256];
		int r = api_private_dir(dir, sizeof(dir), create, err, errlen);
		if (r != 0) {
			snprintf(buf, len, "%s/api.sock", dir);
			return r;
		}
		n = snprintf(buf, len, "%s/api.sock", dir);
	}
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "the API socket path is too long: %s", buf);
		return -ENAMETOOLONG;
	}
	return 0;
}

static void conn_free(struct api_conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->srv) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->srv->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->srv->nconns--;
	}
	free(c);
}

static void conn_write_done(struct bufferevent *bev, void *arg)
{
	struct api_conn *c = arg;
	(void)bev;
	if (c->finished)
		conn_free(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct api_conn *c = arg;
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		c->gone = 1;
		/* A handler still holding the conn frees it in api_conn_finish. */
		if (c->finished || !c->dispatched)
			conn_free(c);
		else
			bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	}
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct api_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->dispatched) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
	if (!line) {
		if (evbuffer_get_length(in) > API_MAX_LINE) {
			c->dispatched = 1;
			api_conn_printf(c, "error: request too long\n");
			api_conn_finish(c);
		}
		return;
	}
	c->dispatched = 1;
	/* The 5 s timeout is for a client that never sends its request; an
	 * answer may take longer (ping -c 1000), so it ends here. */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	if (n > API_MAX_LINE) {
		api_conn_printf(c, "error: request too long\n");
		api_conn_finish(c);
	} else {
		c->srv->fn(c->srv->ctx, c, line);
	}
	free(line);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct api_server *s = arg;
	(void)lis, (void)sa, (void)salen;
	if (s->nconns >= API_MAX_CONNS) {
		close(fd);
		return;
	}
	struct api_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	s->nconns++;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	struct timeval tv = {5, 0};
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	bufferevent_setcb(c->bev, conn_read, conn_write_done, conn_event, c);
	bufferevent_enable(c->bev, EV_READ);
}

struct api_server *api_server_new(struct event_base *base, const char *path,
                                  api_handler_fn fn, void *ctx, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "API socket path too long (max %zu): %s",
		         sizeof(sun.sun_path) - 1, path);
		return NULL;
	}
	strcpy(sun.sun_path, path);

	/* Only a socket is ever replaced: --api pointing at a file by mistake
	 * (the config, say) must not delete it. */
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(
		    err, errlen,
		    "--api %s: it exists and is not a socket; refusing to replace it "
		    "(pass another --api PATH)",
		    path);
		return NULL;
	}

	/* A socket that nobody answers on is stale: replace it. A live one means
	 * another node uses this path. */
	int probe = socket(AF_UNIX, SOCK_STREAM, 0);
	if (probe >= 0) {
		if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(probe);
			snprintf(err, errlen,
			         "API socket %s is in use by a running node; stop it or "
			         "pass another --api PATH",
			         path);
			return NULL;
		}
		close(probe);
	}
	unlink(path);

	struct api_server *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = base;
	s->fn = fn;
	s->ctx = ctx;
	snprintf(s->path, sizeof(s->path), "%s", path);
	mode_t old = umask(0177);
	s->lis = evconnlistener_new_bind(base, on_accept, s,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	                                 16, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (!s->lis) {
		snprintf(err, errlen, "cannot create API socket %s: %s", path,
		         strerror(errno));
		free(s);
		return NULL;
	}
	chmod(path, 0600);
	return s;
}

void api_server_free(struct api_server *s)
{
	if (!s)
		return;
	if (s->lis)
		evconnlistener_free(s->lis);
	unlink(s->path);
	/* A finished answer still being written goes out now, as far as the
	 * client's socket takes it without waiting; a connection that sent no
	 * request yet is closed; one a handler still holds is cut off from
	 * the server and freed by that handler's api_conn_finish (its output
	 * is discarded). */
	while (s->conns) {
		struct api_conn *c = s->conns;
		s->conns = c->next;
		c->srv = NULL;
		c->prev = c->next = NULL;
		if (c->dispatched && !c->finished) {
			c->gone = 1;
			bufferevent_disable(c->bev, EV_READ | EV_WRITE);
			continue;
		}
		/* (by hand: evbuffer_write on a bufferevent's output fails) */
		struct evbuffer *out = bufferevent_get_output(c->bev);
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		size_t len = evbuffer_get_length(out), off = 0;
		const unsigned char *p = len ? evbuffer_pullup(out, -1) : NULL;
		while (fd >= 0 && p && off < len) {
			ssize_t w = send(fd, p + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		conn_free(c);
	}
	free(s);
}

void api_conn_printf(struct api_conn *c, const char *fmt, ...)
{
	if (c->gone)
		return;
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	bufferevent_enable(c->bev, EV_WRITE);
}

int api_conn_take_fd(struct api_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int fd = -1;
	/* The client must wait for our answer before sending stream data, so
	 * nothing may be buffered beyond the request line. */
	if (!c->gone && evbuffer_get_length(in) == 0) {
		fd = fcntl(bufferevent_getfd(c->bev), F_DUPFD_CLOEXEC, 3);
		if (fd >= 0)
			evutil_make_socket_nonblocking(fd);
	}
	c->finished = 1;
	conn_free(c); /* closes the original descriptor */
	return fd;
}

int api_conn_write(struct api_conn *c, const void *p, size_t n)
{
	if (c->gone)
		return 0; /* nobody to read it: not a loss worth reporting */
	return bufferevent_write(c->bev, p, n) == 0 ? 0 : -1;
}

int api_conn_gone(const struct api_conn *c)
{
	return c->gone;
}

void api_conn_finish(struct api_conn *c)
{
	c->finished = 1;
	if (c->gone || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
	/* otherwise conn_write_done frees it once the output drained */
}
