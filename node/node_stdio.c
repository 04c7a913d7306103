/* [STDIOTunnel] (wireproxy): the node's stdin and stdout are one
 * connection to Target through the mesh, as `mesh-proxy nc` gives through
 * the local API, so a configuration with it serves as ssh's ProxyCommand:
 *   ssh -o ProxyCommand='mesh-proxy --config stdio.ini' user@host
 * The connection is made by px_nc (mesh names, [Interface] DNS or the
 * host's resolver, Direct as configured) over a socketpair; this file
 * relays between that socketpair and fds 0 and 1. The log stays on
 * stderr. The node exits 0 when the connection ends, 1 when it could not
 * be made.
 *
 * fds 0 and 1 are shared with whoever started us: their O_NONBLOCK flags
 * are put back as they were when the node stops. A regular file or
 * /dev/null cannot be polled (epoll refuses them): stdin is then read
 * from a timer, a chunk at a time, and stdout written at once (a file
 * does not block for long). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util/log.h"
#include "node/node_int.h"

#define STDIO_HIGH  (1u << 20) /* bytes queued one way before reading stops */
#define STDIO_CHUNK (64u << 10) /* read from a file stdin per turn */

struct node_stdio {
	struct node *n;
	struct bufferevent *in, *out, *mesh; /* in/out NULL: a file (see above) */
	struct event *in_file;               /* reads a file stdin */
	int fl[2];                           /* fds 0 and 1's flags at start */
	bool status_seen, in_eof;
};

/* A regular file, /dev/null or another device epoll cannot poll? */
static bool stdio_is_file(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return false;
	return S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode) ||
	       (S_ISCHR(st.st_mode) && !isatty(fd));
}

static void stdio_in_eof(struct node_stdio *s);

static void stdio_end(struct node_stdio *s, int rc)
{
	s->n->rc = rc;
	event_base_loopexit(s->n->base, NULL);
}

/* Flow control: stop reading a side while the other one's output is full. */
static void stdio_on_drained(struct bufferevent *bev, void *arg)
{
	struct node_stdio *s = arg;
	if (bev == s->mesh && !s->in_eof && s->in)
		bufferevent_enable(s->in, EV_READ);
	else if (bev == s->mesh && !s->in_eof)
		event_active(s->in_file, EV_TIMEOUT, 0);
	else if (bev == s->out)
		bufferevent_enable(s->mesh, EV_READ);
}

static void stdio_on_in(struct bufferevent *bev, void *arg)
{
	struct node_stdio *s = arg;
	struct evbuffer *o = bufferevent_get_output(s->mesh);
	evbuffer_add_buffer(o, bufferevent_get_input(bev));
	if (evbuffer_get_length(o) >= STDIO_HIGH)
		bufferevent_disable(bev, EV_READ);
}

static void stdio_on_mesh(struct bufferevent *bev, void *arg)
{
	struct node_stdio *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (!s->status_seen) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		if (!line)
			return;
		s->status_seen = true;
		if (strcmp(line, "ok") != 0) {
			log_error("[STDIOTunnel] Target %s:%u: %s",
			          s->n->cfg.stdio_target_host,
			          s->n->cfg.stdio_target_port,
			          strncmp(line, "error: ", 7) == 0 ? line + 7 : line);
			free(line);
			stdio_end(s, 1);
			return;
		}
		free(line);
		log_info("[STDIOTunnel] connected to %s:%u", s->n->cfg.stdio_target_host,
		         s->n->cfg.stdio_target_port);
	}
	if (!s->out) { /* a file: written now */
		while (evbuffer_get_length(in) > 0)
			if (evbuffer_write(in, 1) <= 0) {
				stdio_end(s, 0); /* nobody takes it any more */
				return;
			}
		return;
	}
	struct evbuffer *o = bufferevent_get_output(s->out);
	evbuffer_add_buffer(o, in);
	if (evbuffer_get_length(o) >= STDIO_HIGH)
		bufferevent_disable(bev, EV_READ);
}

/* A file stdin: one chunk per turn while the mesh side takes it. */
static void stdio_on_in_file(evutil_socket_t fd, short what, void *arg)
{
	struct node_stdio *s = arg;
	(void)fd, (void)what;
	struct evbuffer *o = bufferevent_get_output(s->mesh);
	if (s->in_eof || evbuffer_get_length(o) >= STDIO_HIGH)
		return; /* stdio_on_drained wakes us */
	int r = evbuffer_read(o, 0, STDIO_CHUNK);
	if (r <= 0) {
		if (r < 0)
			log_warn("[STDIOTunnel] stdin: %s", strerror(errno));
		stdio_in_eof(s);
		return;
	}
	event_active(s->in_file, EV_TIMEOUT, 0);
}

static void stdio_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct node_stdio *s = arg;
	if (bev == s->in) {
		stdio_in_eof(s);
		return;
	}
	if (bev == s->out) { /* stdout closed: nobody reads any more */
		stdio_end(s, 0);
		return;
	}
	/* The connection ended (or failed before its status line). */
	if (!s->status_seen) {
		log_error(
		    "[STDIOTunnel] Target %s:%u: the connection ended before it was "
		    "made",
		    s->n->cfg.stdio_target_host, s->n->cfg.stdio_target_port);
		stdio_end(s, 1);
		return;
	}
	(void)what;
	stdio_end(s, 0);
}

/* stdin ended: half-close towards the target. */
static void stdio_in_eof(struct node_stdio *s)
{
	s->in_eof = true;
	if (s->in)
		bufferevent_disable(s->in, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->mesh)) == 0)
		shutdown(bufferevent_getfd(s->mesh), SHUT_WR);
	/* else stdio_mesh_write_done does it once flushed */
}

/* Written out before the loop exits: flush what stdout still holds. */
static void stdio_flush(struct node_stdio *s)
{
	if (!s->out)
		return;
	struct evbuffer *o = bufferevent_get_output(s->out);
	int fd = 1;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	evbuffer_write(o, fd);
	while (evbuffer_get_length(o) > 0 && evbuffer_write(o, fd) > 0)
		;
}

static void stdio_mesh_write_done(struct bufferevent *bev, void *arg)
{
	struct node_stdio *s = arg;
	if (s->in_eof && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
	else
		stdio_on_drained(bev, arg);
}

/* Frees s and everything it holds; fds 0 and 1 get their flags back. */
static void stdio_free(struct node_stdio *s)
{
	if (s->in)
		bufferevent_free(s->in);
	if (s->out)
		bufferevent_free(s->out);
	if (s->mesh)
		bufferevent_free(s->mesh);
	if (s->in_file)
		event_free(s->in_file);
	for (int fd = 0; fd < 2; fd++)
		if (s->fl[fd] >= 0)
			fcntl(fd, F_SETFL, s->fl[fd]);
	free(s);
}

int node_stdio_start(struct node *n)
{
	const struct config *c = &n->cfg;
	if (!c->stdio_target_host)
		return 0;
	if (!n->nc) {
		log_error("[STDIOTunnel]: out of memory");
		return -1;
	}
	struct node_stdio *s = calloc(1, sizeof(*s));
	int sp[2];
	if (!s || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		free(s);
		log_error("[STDIOTunnel]: %s", strerror(errno));
		return -1;
	}
	s->n = n;
	s->fl[0] = fcntl(0, F_GETFL);
	s->fl[1] = fcntl(1, F_GETFL);
	if (s->fl[0] < 0 || s->fl[1] < 0) {
		log_error("[STDIOTunnel]: stdin or stdout is not open (%s); it needs "
		          "both, as ssh's ProxyCommand gives them",
		          strerror(errno));
		close(sp[0]);
		close(sp[1]);
		s->fl[0] = s->fl[1] = -1;
		stdio_free(s);
		return -1;
	}
	evutil_make_socket_nonblocking(sp[0]);
	evutil_make_socket_nonblocking(sp[1]);
	s->mesh = bufferevent_socket_new(n->base, sp[1], BEV_OPT_CLOSE_ON_FREE);
	if (!s->mesh)
		close(sp[1]);
	bool ok = s->mesh != NULL;
	if (stdio_is_file(0)) {
		s->in_file = event_new(n->base, -1, 0, stdio_on_in_file, s);
		ok &= s->in_file != NULL;
	} else {
		evutil_make_socket_nonblocking(0);
		s->in = bufferevent_socket_new(n->base, 0, 0);
		ok &= s->in != NULL;
	}
	if (!stdio_is_file(1)) {
		evutil_make_socket_nonblocking(1);
		s->out = bufferevent_socket_new(n->base, 1, 0);
		ok &= s->out != NULL;
	}
	if (!ok) {
		log_error("[STDIOTunnel]: out of memory");
		close(sp[0]);
		stdio_free(s);
		return -1;
	}
	if (s->in)
		bufferevent_setcb(s->in, stdio_on_in, NULL, stdio_on_event, s);
	if (s->out)
		bufferevent_setcb(s->out, NULL, stdio_on_drained, stdio_on_event, s);
	bufferevent_setcb(s->mesh, stdio_on_mesh, stdio_mesh_write_done, stdio_on_event,
	                  s);
	bufferevent_setwatermark(s->mesh, EV_WRITE, STDIO_HIGH / 2, 0);
	bufferevent_enable(s->mesh, EV_READ | EV_WRITE);
	if (s->in)
		bufferevent_enable(s->in, EV_READ);
	else
		event_active(s->in_file, EV_TIMEOUT, 0);
	if (s->out) {
		bufferevent_setwatermark(s->out, EV_WRITE, STDIO_HIGH / 2, 0);
		bufferevent_enable(s->out, EV_WRITE);
	}
	n->stdio = s;
	px_nc_accept(n->nc, sp[0], c->stdio_target_host, c->stdio_target_port);
	return 0;
}

void node_stdio_free(struct node *n)
{
	struct node_stdio *s = n->stdio;
	if (!s)
		return;
	stdio_flush(s);
	stdio_free(s);
	n->stdio = NULL;
}
