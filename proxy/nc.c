/* `mesh-proxy nc HOST PORT`, node side: the local API hands over a client
 * socket whose request line named a destination; it is dialled like a
 * SOCKS5 CONNECT (mesh names, then DNS; from the host when no mesh peer
 * routes it), answered with one line ("ok" or "error: REASON"), and then
 * spliced. The client (cli/nc_client.c) waits for that line before it sends. */
#include "proxy/internal.h"

#include "core/util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct px_nc {
	struct px_front front;
};

static void px_nc_on_result(struct px_sess *s, enum px_err e)
{
	char line[128];
	int n;
	if (e == PX_OK)
		n = snprintf(line, sizeof(line), "ok\n");
	else if (e == PX_E_POLICY) {
		char t[64];
		px_target_format(&s->target, t, sizeof(t));
		n = snprintf(line, sizeof(line),
		             "error: the mesh policy does not allow this node to reach %s\n", t);
	} else
		n = snprintf(line, sizeof(line), "error: %s\n", px_err_str(e));
	px_sess_send(s, line, (size_t)n);
}

static const struct px_sess_ops px_nc_ops = {
    .on_result = px_nc_on_result,
};

struct px_nc *px_nc_new(const struct px_env *env, enum cfg_direct direct)
{
	struct px_nc *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	struct cfg_limits lim = {
	    .max_connections = CFG_DEFAULT_MAX_CONNECTIONS,
	    .handshake_timeout_ms = CFG_DEFAULT_HANDSHAKE_MS,
	    .idle_timeout_ms = CFG_DEFAULT_IDLE_MS,
	    .buffer_bytes = CFG_DEFAULT_BUFFER_BYTES,
	};
	if (px_front_init(&n->front, env, "nc", &lim, direct) != 0) {
		free(n);
		return NULL;
	}
	return n;
}

void px_nc_free(struct px_nc *n)
{
	if (!n)
		return;
	px_front_fini(&n->front);
	free(n);
}

void px_nc_accept(struct px_nc *n, int fd, const char *host, uint16_t port)
{
	struct px_target t;
	if (!px_target_set(&t, host, strlen(host), port)) {
		static const char msg[] = "error: not an IP address or host name\n";
		n->front.stats.accepted++;
		n->front.stats.err_protocol++;
		if (write(fd, msg, sizeof(msg) - 1) < 0)
			log_debug("nc: client gone before the error reply");
		close(fd);
		return;
	}
	struct px_sess *s = px_sess_new(&n->front, fd, &px_nc_ops);
	if (!s)
		return;
	s->target = t;
	px_sess_connect(s);
}

void px_nc_get_stats(const struct px_nc *n, struct px_stats *st)
{
	px_front_stats(&n->front, st);
}
