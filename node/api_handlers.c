/* The node's local API requests: status (text and JSON), ip, ping (a job
 * that answers line by line as replies come), disco (control_ping.c), whois
 * (control_whois.c), and nc (the connection
 * becomes a stream through the mesh). The socket itself is api_server.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hostname.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "node/api_server.h"
#include "node/control.h"
#include "node/node_int.h"
#include "node/health.h"
#include "node/status.h"
#include "proxy/proxy.h"

struct ping_job {
	struct node *n;
	struct api_conn *conn;
	struct ns_addr dst;
	char dst_s[128];
	unsigned count, sent, received, timeout_ms, interval_ms, outstanding;
	double rtt_sum, rtt_min, rtt_max;
	struct event *ev;
};

static void ping_job_next(struct ping_job *j);

static void ping_job_done(struct ping_job *j)
{
	api_conn_printf(j->conn, "%u sent, %u received", j->sent, j->received);
	if (j->received)
		api_conn_printf(j->conn, ", rtt min/avg/max %.3f/%.3f/%.3f ms",
		                j->rtt_min, j->rtt_sum / j->received, j->rtt_max);
	api_conn_printf(j->conn, "\n%s\n", j->received ? "ok" : "fail");
	api_conn_finish(j->conn);
	event_free(j->ev);
	free(j);
}

static void ping_on_reply(void *ctx, int err, double rtt_ms)
{
	struct ping_job *j = ctx;
	j->outstanding--;
	if (err == 0) {
		j->received++;
		j->rtt_sum += rtt_ms;
		if (j->received == 1 || rtt_ms < j->rtt_min)
			j->rtt_min = rtt_ms;
		if (rtt_ms > j->rtt_max)
			j->rtt_max = rtt_ms;
		api_conn_printf(j->conn, "reply from %s: time=%.3f ms\n", j->dst_s,
		                rtt_ms);
	} else {
		api_conn_printf(j->conn, "no reply from %s: %s\n", j->dst_s,
		                err == -ETIMEDOUT ? "timed out" : strerror(-err));
	}
	if (j->sent == j->count && j->outstanding == 0)
		ping_job_done(j);
}

static void ping_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	ping_job_next(arg);
}

static void ping_job_next(struct ping_job *j)
{
	if (j->sent >= j->count || api_conn_gone(j->conn)) {
		j->count = j->sent;
		if (j->outstanding == 0)
			ping_job_done(j);
		return;
	}
	j->sent++;
	int r = ns_ping(&j->dst, j->timeout_ms, ping_on_reply, j);
	if (r == 0) {
		j->outstanding++;
	} else {
		api_conn_printf(j->conn, "cannot ping %s: %s\n", j->dst_s, strerror(-r));
	}
	if (j->sent < j->count) {
		struct timeval tv = {(time_t)(j->interval_ms / 1000),
		                     (suseconds_t)(j->interval_ms % 1000) * 1000};
		evtimer_add(j->ev, &tv);
	} else if (j->outstanding == 0) {
		ping_job_done(j);
	}
}

/* The address to ping for name: an IP literal, else a mesh name ([Peer]
 * Name, a map peer's name or full name) through the front-ends' resolver.
 * 0: dst is routed to a peer; -EHOSTUNREACH: dst is set but no peer's
 * AllowedIPs cover it; -ENOENT: no such name; -EINVAL: not a name. */
static int node_api_ping_dest(struct node *n, const char *name, struct ns_addr *dst)
{
	if (ns_addr_parse(dst, name))
		return wg_device_has_route(n->wg, dst->family, dst->addr) ? 0
		                                                          : -EHOSTUNREACH;
	if (!hostname_valid(name, strlen(name)))
		return -EINVAL;
	struct ns_addr a[8];
	size_t k =
	    n->env.resolve_mesh ? n->env.resolve_mesh(n->env.resolve_ctx, name, a, 8) : 0;
	if (k == 0)
		return -ENOENT;
	for (size_t i = 0; i < k; i++) {
		if (wg_device_has_route(n->wg, a[i].family, a[i].addr)) {
			*dst = a[i];
			return 0;
		}
	}
	*dst = a[0];
	return -EHOSTUNREACH;
}

static void node_api_ping(struct node *n, struct api_conn *conn, const char *args)
{
	char addr[128];
	unsigned count = 3, timeout_ms = 2000, interval_ms = 1000;
	if (sscanf(args, "%127s %u %u %u", addr, &count, &timeout_ms, &interval_ms) < 1 ||
	    count == 0 || count > 1000 || timeout_ms == 0 || timeout_ms > 60000 ||
	    interval_ms == 0 || interval_ms > 60000) {
		api_conn_printf(conn, "error: usage: ping ADDR [COUNT] [TIMEOUT_MS] "
		                      "[INTERVAL_MS]\nfail\n");
		api_conn_finish(conn);
		return;
	}
	struct ping_job *j = calloc(1, sizeof(*j));
	if (!j) {
		api_conn_printf(conn, "error: out of memory\nfail\n");
		api_conn_finish(conn);
		return;
	}
	int r = node_api_ping_dest(n, addr, &j->dst);
	if (r == -ENOENT || r == -EINVAL) {
		if (r == -EINVAL)
			api_conn_printf(
			    conn, "error: %s is not an IP address or a name\n", addr);
		else
			api_conn_printf(conn,
			                "error: %s is not an IP address, and no peer is "
			                "named '%s' (see mesh-proxy status)\n",
			                addr, addr);
		api_conn_printf(conn, "fail\n");
		api_conn_finish(conn);
		free(j);
		return;
	}
	char dst_s[INET6_ADDRSTRLEN];
	inet_ntop(j->dst.family, j->dst.addr, dst_s, sizeof(dst_s));
	if (r != 0) {
		api_conn_printf(
		    conn,
		    "error: no peer's AllowedIPs cover %s; add it to a [Peer]\nfail\n",
		    dst_s);
		api_conn_finish(conn);
		free(j);
		return;
	}
	j->n = n;
	j->conn = conn;
	j->count = count;
	j->timeout_ms = timeout_ms;
	j->interval_ms = interval_ms;
	snprintf(j->dst_s, sizeof(j->dst_s), "%s", dst_s);
	j->ev = evtimer_new(n->base, ping_on_timer, j);
	if (strcmp(addr, dst_s) == 0)
		api_conn_printf(conn, "PING %s from our mesh address\n", addr);
	else /* a name, or an address written another way */
		api_conn_printf(conn, "PING %s (%s) from our mesh address\n", addr,
		                dst_s);
	ping_job_next(j);
}

/* "nc HOST PORT": the API connection becomes a stream to HOST:PORT. */
static void node_api_nc(struct node *n, struct api_conn *conn, const char *args)
{
	char host[256];
	unsigned port;
	char extra;
	if (sscanf(args, "%255s %u %c", host, &port, &extra) != 2 || port == 0 ||
	    port > 65535) {
		api_conn_printf(conn, "error: usage: nc HOST PORT\n");
		api_conn_finish(conn);
		return;
	}
	if (!n->nc) {
		api_conn_printf(conn, n->wg ? "error: out of memory\n"
		                            : "error: not registered yet\n");
		api_conn_finish(conn);
		return;
	}
	int fd = api_conn_take_fd(conn);
	if (fd < 0)
		return; /* client gone, or it did not wait for the answer */
	px_nc_accept(n->nc, fd, host, (uint16_t)port);
}

void node_status_view(const struct node *n, struct status_view *v)
{
	*v = (struct status_view){
	    .cfg = &n->cfg,
	    .wg = n->wg,
	    .started = n->started,
	    .socks = n->socks,
	    .n_socks = n->n_socks,
	    .http = n->http,
	    .n_http = n->n_http,
	    .tunnels = n->tunnels,
	    .n_tunnels = n->n_tunnels,
	    .udp_tunnels = n->udp_tunnels,
	    .n_udp_tunnels = n->n_udp_tunnels,
	    .nc = n->nc,
	    .ctl = n->ctl,
	    .checkalive = n->checkalive,
	};
}

/* "health": "ready" or "not ready: WHY" as /readyz answers; "health
 * live": "live" (the loop answered). One line: mesh-proxy health prints
 * it and exits 0 on ready (live). */
static void node_api_health(struct node *n, struct api_conn *conn, bool live)
{
	char why[200] = "";
	if (live)
		api_conn_printf(conn, "live\n");
	else if (n->health && node_health_ready(n->health, why, sizeof(why)))
		api_conn_printf(conn, "ready\n");
	else
		api_conn_printf(conn, "not ready: %s\n", why[0] ? why : "starting");
	api_conn_finish(conn);
}

void node_api_handle(void *ctx, struct api_conn *conn, const char *line)
{
	struct node *n = ctx;
	struct status_view v;
	node_status_view(n, &v);
	if (strncmp(line, "nc ", 3) == 0) {
		node_api_nc(n, conn, line + 3);
		return;
	}
	if (strcmp(line, "health") == 0 || strcmp(line, "health live") == 0) {
		node_api_health(n, conn, line[6] != 0);
	} else if (strcmp(line, "status") == 0) {
		status_write_text(&v, conn);
		api_conn_finish(conn);
	} else if (strcmp(line, "status json") == 0) {
		status_write_json(&v, conn);
		api_conn_finish(conn);
	} else if (strncmp(line, "ip", 2) == 0 && n->ctl &&
	           (!line[2] || !strcmp(line + 2, " 4") || !strcmp(line + 2, " 6"))) {
		node_ctl_write_ip(n->ctl, conn, line[2] ? line[3] - '0' : 0);
		api_conn_finish(conn);
	} else if (strncmp(line, "whois ", 6) == 0) {
		node_ctl_whois(n->ctl, conn, line + 6);
		api_conn_finish(conn);
	} else if (strncmp(line, "disco ", 6) == 0) {
		node_ctl_disco_ping(n->ctl, conn, line + 6);
	} else if (strncmp(line, "ping ", 5) == 0 && !n->wg) {
		api_conn_printf(
		    conn, "error: not registered yet; see mesh-proxy status\nfail\n");
		api_conn_finish(conn);
	} else if (strncmp(line, "ping ", 5) == 0) {
		node_api_ping(n, conn, line + 5);
	} else {
		api_conn_printf(conn, "error: unknown request (try: status, status json, "
		                      "ping ADDR, disco PEER 3 2000 1000 -, nc HOST PORT, whois ADDR[:PORT], health)\n");
		api_conn_finish(conn);
	}
}
