/* `mesh-proxy ping --disco PEER`: disco pings to a map peer through the
 * path layer (magicsock_ping), one answer line per probe saying which way
 * the pong came (a direct address or a relay region) and how fast, like
 * `tailscale ping`. The request is
 *   "disco PEER COUNT TIMEOUT_MS INTERVAL_MS FLAGS"
 * (FLAGS: "-", or letters: u = until direct, j = JSON lines). The last line
 * says ok or fail (text), or is a JSON summary with "ok". */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/magicsock/magicsock.h"
#include "core/util/sockaddr.h"
#include "node/api_server.h"
#include "node/control_int.h"
#include "node/format.h"

#define DPING_MAX_COUNT       1000
#define DPING_MIN_INTERVAL_MS 100 /* each probe may ping every candidate */

/* Owned by its node_ctl (m->dpings) until dping_done. */
struct dping_job {
	struct node_ctl *m;
	struct dping_job *prev, *next;
	struct api_conn *conn;
	uint8_t key[32];
	char name[CTL_LABEL_MAX], ip[CTL_ADDRSTR_MAX];
	unsigned count, sent, received, direct, timeout_ms, interval_ms;
	bool until_direct, json, outstanding, stop, shutdown;
	double rtt_sum, rtt_min, rtt_max;
	struct event *ev;
};

/* One JSON object on its own line. Takes o. */
static void dping_json_line(struct api_conn *c, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	json_decref(o);
	if (s)
		api_conn_printf(c, "%s\n", s);
	free(s);
}

static void dping_error(struct api_conn *c, bool json, const char *msg)
{
	if (json) {
		json_t *o = json_object();
		if (o)
			json_object_set_new(o, "error", json_string(msg));
		dping_json_line(c, o);
	} else {
		api_conn_printf(c, "error: %s\nfail\n", msg);
	}
	api_conn_finish(c);
}

static void dping_done(struct dping_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		j->m->dpings = j->next;
	if (j->next)
		j->next->prev = j->prev;
	if (j->shutdown) {
		if (j->json) {
			json_t *o = json_object();
			if (o)
				json_object_set_new(
				    o, "error",
				    json_string("the node stopped (or restarts) before "
				                "all pings were sent"));
			dping_json_line(j->conn, o);
		} else {
			api_conn_printf(j->conn,
			                "stopped: the node is shutting down or restarting "
			                "(run the ping again once it is up)\n");
		}
	}
	bool ok = j->received > 0 && (!j->until_direct || j->direct > 0);
	if (j->json) {
		json_t *o = json_object();
		if (o) {
			json_object_set_new(o, "peer", json_string(j->name));
			json_object_set_new(o, "sent", json_integer(j->sent));
			json_object_set_new(o, "received", json_integer(j->received));
			json_object_set_new(o, "direct", json_integer(j->direct));
			json_object_set_new(o, "ok", json_boolean(ok));
		}
		dping_json_line(j->conn, o);
	} else {
		api_conn_printf(j->conn, "%u sent, %u received, %u direct", j->sent,
		                j->received, j->direct);
		if (j->received)
			api_conn_printf(j->conn, ", rtt min/avg/max %.3f/%.3f/%.3f ms",
			                j->rtt_min, j->rtt_sum / j->received, j->rtt_max);
		api_conn_printf(j->conn, "\n");
		if (j->until_direct && !j->direct)
			api_conn_printf(
			    j->conn,
			    "direct connection not established after %u pings%s; "
			    "the relay carries the traffic meanwhile\n",
			    j->sent, j->received ? "" : " (and no pong at all)");
		api_conn_printf(j->conn, "%s\n", ok ? "ok" : "fail");
	}
	api_conn_finish(j->conn);
	event_free(j->ev);
	free(j);
}

/* Why a probe got no answer, in words (not strerror: "No such file or
 * directory" says nothing here). */
static const char *dping_reason(int err)
{
	switch (err) {
	case -ETIMEDOUT:
		return "timeout";
	case -ENOTCONN:
		return "no address or relay yet";
	case -ENOENT:
		return "the peer left the map (or its key changed); stopped";
	case -EINVAL:
		return "its disco key in the map is not usable";
	case -ENOMEM:
		return "out of memory";
	default:
		return strerror(-err);
	}
}

static void dping_print(struct dping_job *j, const struct magicsock_pong *r)
{
	char via[96] = "";
	double ms_ = r->latency_us / 1000.0;
	if (!r->err && r->path == MS_PATH_DIRECT)
		sockaddr_format(&r->from, via, sizeof(via));
	if (j->json) {
		json_t *o = json_object();
		if (!o)
			return;
		json_object_set_new(o, "seq", json_integer(j->sent));
		json_object_set_new(o, "peer", json_string(j->name));
		json_object_set_new(o, "ip", json_string(j->ip));
		if (r->err) {
			json_object_set_new(o, "error",
			                    json_string(dping_reason(r->err)));
		} else {
			json_object_set_new(o, "path",
			                    json_string(ms_path_name(r->path)));
			if (r->path == MS_PATH_DIRECT) {
				json_object_set_new(o, "endpoint", json_string(via));
			} else {
				json_object_set_new(o, "relay_region",
				                    fmt_json_str(r->relay_region));
				json_object_set_new(o, "relay_name",
				                    fmt_json_str(r->relay_name));
			}
			json_object_set_new(o, "latency_ms", json_real(ms_));
		}
		dping_json_line(j->conn, o);
		return;
	}
	if (r->err == -ETIMEDOUT)
		api_conn_printf(j->conn, "no pong from %s (%s) within %.1f s\n", j->name,
		                j->ip, j->timeout_ms / 1000.0);
	else if (r->err == -ENOTCONN)
		api_conn_printf(
		    j->conn,
		    "cannot ping %s (%s) yet: no address of it known and no relay "
		    "connected (see mesh-proxy status)\n",
		    j->name, j->ip);
	else if (r->err)
		api_conn_printf(j->conn, "no pong from %s (%s): %s\n", j->name, j->ip,
		                dping_reason(r->err));
	else if (r->path == MS_PATH_DIRECT)
		api_conn_printf(j->conn, "pong from %s (%s) via %s in %.1fms\n", j->name,
		                j->ip, via, ms_);
	else
		api_conn_printf(j->conn, "pong from %s (%s) via relay \"%s\" in %.1fms\n",
		                j->name, j->ip,
		                r->relay_region[0] ? r->relay_region : "?", ms_);
}

static void dping_on_pong(void *ctx, const struct magicsock_pong *r)
{
	struct dping_job *j = ctx;
	j->outstanding = false;
	if (r->err != -ECANCELED)
		dping_print(j, r);
	if (r->err == -ECANCELED) {
		/* the path layer went away (shutdown): said in dping_done */
		j->stop = j->shutdown = true;
	} else if (!r->err) {
		double ms_ = r->latency_us / 1000.0;
		j->received++;
		j->rtt_sum += ms_;
		if (j->received == 1 || ms_ < j->rtt_min)
			j->rtt_min = ms_;
		if (ms_ > j->rtt_max)
			j->rtt_max = ms_;
		if (r->path == MS_PATH_DIRECT) {
			j->direct++;
			if (j->until_direct)
				j->stop = true;
		}
	}
	if (j->stop || j->sent >= j->count)
		dping_done(j);
}

static void dping_next(struct dping_job *j)
{
	if (j->stop || j->sent >= j->count || api_conn_gone(j->conn) || !j->m->ms) {
		if (!j->outstanding)
			dping_done(j);
		else
			j->stop = true;
		return;
	}
	j->sent++;
	int r = magicsock_ping(j->m->ms, j->key, j->timeout_ms, dping_on_pong, j);
	if (r == 0) {
		j->outstanding = true;
	} else {
		struct magicsock_pong e = {.err = r};
		dping_print(j, &e);
		if (r == -ENOENT)
			j->stop = true; /* gone: the next ones would say the same */
	}
	if (j->stop) {
		dping_done(j);
		return;
	}
	if (j->sent < j->count) {
		struct timeval tv = {(time_t)(j->interval_ms / 1000),
		                     (suseconds_t)(j->interval_ms % 1000) * 1000};
		evtimer_add(j->ev, &tv);
	} else if (!j->outstanding) {
		dping_done(j);
	}
}

static void dping_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dping_job *j = arg;
	/* The previous probe is still out: its answer (or timeout) comes
	 * first, then the next one, so answers stay in order. */
	if (j->outstanding) {
		struct timeval tv = {0, 20 * 1000};
		evtimer_add(j->ev, &tv);
		return;
	}
	dping_next(j);
}

void nctl_dping_stop_all(struct node_ctl *m)
{
	while (m->dpings) {
		struct dping_job *j = m->dpings;
		/* Its probe is already answered (magicsock_free cancels those
		 * still out): only its interval timer is pending. */
		j->outstanding = false;
		j->shutdown = true;
		dping_done(j);
	}
}

/* The map peer PEER names: a mesh address, a name (or full name), or a
 * prefix (at least 4 characters) of its node key in base64 as status shows
 * it. NULL with a sentence in err. */
static const struct np_entry *dping_find(struct node_ctl *m, const char *arg, char *err,
                                         size_t errlen)
{
	struct ns_addr a[8];
	size_t k = 0;
	if (ns_addr_parse(&a[0], arg))
		k = 1;
	else
		k = node_peers_resolve(&m->np, arg, a, 8);
	for (size_t i = 0; i < k; i++) {
		const struct np_entry *e = node_peers_by_addr(&m->np, &a[i]);
		if (e)
			return e;
	}
	for (size_t i = 0; i < k; i++)
		for (size_t s = 0; s < m->np.n_self_addrs; s++) {
			const struct ctl_ip *o = &m->np.self_addrs[s];
			if ((o->family == 4 ? AF_INET : AF_INET6) == a[i].family &&
			    memcmp(o->addr, a[i].addr, o->family == 4 ? 4 : 16) == 0) {
				snprintf(err, errlen, "%s is this node itself", arg);
				return NULL;
			}
		}
	size_t n = strlen(arg);
	const struct np_entry *found = NULL;
	unsigned matches = 0;
	for (size_t i = 0; n >= 4 && i < m->np.n; i++) {
		char b64[64];
		fmt_key_b64(m->np.e[i].p.node_key, b64, sizeof(b64));
		if (strncmp(b64, arg, n) == 0) {
			found = &m->np.e[i];
			matches++;
		}
	}
	if (matches == 1)
		return found;
	if (matches > 1)
		snprintf(
		    err, errlen,
		    "%s is the start of %u peers' keys; give more of the key, or a name",
		    arg, matches);
	else
		snprintf(err, errlen,
		         "no peer in the map is named %s or has that address or key "
		         "(see mesh-proxy status)",
		         arg);
	return NULL;
}

void node_ctl_disco_ping(struct node_ctl *m, struct api_conn *conn, const char *args)
{
	char peer[256], flags[8] = "-";
	unsigned count = 0, timeout_ms = 0, interval_ms = 0;
	bool json = strchr(args, ' ') && strchr(strrchr(args, ' '), 'j');
	char err[640];
	if (sscanf(args, "%255s %u %u %u %7s", peer, &count, &timeout_ms, &interval_ms,
	           flags) != 5 ||
	    count == 0 || count > DPING_MAX_COUNT || timeout_ms == 0 ||
	    interval_ms > 60000) {
		dping_error(conn, json,
		            "usage: disco PEER COUNT(1-1000) TIMEOUT_MS(1-5000) "
		            "INTERVAL_MS FLAGS");
		return;
	}
	/* A pong later than MS_PING_TIMEOUT_MS is not matched any more (its
	 * ping is forgotten): a longer wait could only report it lost. */
	if (timeout_ms > MS_PING_TIMEOUT_MS) {
		snprintf(err, sizeof(err),
		         "-W %.1f: a disco ping waits at most %.0f s for its pong; "
		         "give -W 5 or less (and -c for more tries)",
		         timeout_ms / 1000.0, MS_PING_TIMEOUT_MS / 1000.0);
		dping_error(conn, json, err);
		return;
	}
	if (!m || !m->dataplane || !m->ms) {
		dping_error(
		    conn, json,
		    m ? "the path layer is not running yet (not registered, or no map); "
		        "see mesh-proxy status"
		      : "--disco needs a node joined to a mesh (mesh-proxy up); "
		        "this node runs from a configuration file: ping without --disco "
		        "sends ICMP through the tunnel");
		return;
	}
	const struct np_entry *e = dping_find(m, peer, err, sizeof(err));
	if (!e) {
		dping_error(conn, json, err);
		return;
	}
	struct magicsock_peer_path pp;
	if (magicsock_peer_path(m->ms, e->p.node_key, &pp) != 0) {
		snprintf(err, sizeof(err),
		         "%s is a static [Peer] of the configuration (no disco there): "
		         "ping it without --disco",
		         e->p.name);
		dping_error(conn, json, err);
		return;
	}
	if (!e->in_wg) {
		snprintf(err, sizeof(err),
		         "%s is in the map but could not be added to WireGuard here "
		         "(the node's log says why, \"map peer %s: cannot add\"); "
		         "nothing to ping until it is",
		         e->p.name, e->p.name);
		dping_error(conn, json, err);
		return;
	}
	struct dping_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->ev = evtimer_new(m->base, dping_on_timer, j))) {
		free(j);
		dping_error(conn, json, "out of memory");
		return;
	}
	j->m = m;
	j->next = m->dpings;
	if (m->dpings)
		m->dpings->prev = j;
	m->dpings = j;
	j->conn = conn;
	memcpy(j->key, e->p.node_key, 32);
	snprintf(j->name, sizeof(j->name), "%s", e->p.name);
	if (e->p.n_addrs)
		ctl_ip_format(&e->p.addrs[0], j->ip);
	else
		snprintf(j->ip, sizeof(j->ip), "-");
	j->count = count;
	j->timeout_ms = timeout_ms;
	j->interval_ms =
	    interval_ms < DPING_MIN_INTERVAL_MS ? DPING_MIN_INTERVAL_MS : interval_ms;
	j->until_direct = strchr(flags, 'u') != NULL;
	j->json = strchr(flags, 'j') != NULL;
	dping_next(j);
}
