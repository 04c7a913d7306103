/* The node's metrics; see metrics.h. Every family is written whole (its
 * samples together), so the front-ends and peers are walked once per
 * family. */
#include "node/metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/magicsock/magicsock.h"
#include "core/relay/client.h"
#include "core/util/prom.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "node/acl.h"
#include "node/control_int.h"
#include "node/format.h"
#include "node/health.h"
#include "node/node_int.h"
#include "node/status.h"
#include "proxy/proxy.h"

#define L(...)            ((const char *const[]){__VA_ARGS__})
#define NL(...)           (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *) / 2)
#define SAMPLE(p, v, ...) prom_sample_u64(p, L(__VA_ARGS__), NL(__VA_ARGS__), v)

static void m_wireguard(const struct wg_device *wg, struct prom *p)
{
	struct wg_device_stats st;
	wg_device_stats(wg, &st);
	prom_family(p, "meshproxy_wg_packets_total", PROM_COUNTER,
	            "WireGuard transport packets, by direction.");
	SAMPLE(p, st.rx_packets, "dir", "rx");
	SAMPLE(p, st.tx_packets, "dir", "tx");
	prom_family(p, "meshproxy_wg_drops_total", PROM_COUNTER,
	            "WireGuard datagrams dropped, by direction and reason.");
	const struct {
		const char *dir, *reason;
		uint64_t v;
	} d[] = {
	    {"rx", "short", st.rx_drop_short},
	    {"rx", "type", st.rx_drop_type},
	    {"rx", "mac", st.rx_drop_mac},
	    {"rx", "decrypt", st.rx_drop_decrypt},
	    {"rx", "replay", st.rx_drop_replay},
	    {"rx", "allowedips", st.rx_drop_allowedips},
	    {"rx", "nokey", st.rx_drop_nokey},
	    {"rx", "ratelimit", st.rx_drop_ratelimit},
	    {"rx", "relay_key", st.rx_drop_relay_key},
	    {"tx", "noroute", st.tx_drop_noroute},
	    {"tx", "queue", st.tx_drop_queue},
	    {"tx", "sock", st.tx_drop_sock},
	    {"tx", "relay", st.tx_drop_relay},
	};
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		SAMPLE(p, d[i].v, "dir", d[i].dir, "reason", d[i].reason);
	prom_counter(p, "meshproxy_wg_cookies_sent_total",
	             "Cookie replies sent (the node was under load).", st.cookies_sent);
	prom_counter(p, "meshproxy_wg_relayed_rx_total",
	             "WireGuard datagrams that came through a relay.", st.rx_relayed);
}

/* The label of a peer: its [Peer] Name or map name, else its key. */
static const char *m_peer_label(const struct node *n, const uint8_t *key, char *buf,
                                size_t cap)
{
	for (size_t i = 0; i < n->cfg.n_peers; i++)
		if (n->cfg.peers[i].name && !memcmp(n->cfg.peers[i].public_key, key, 32))
			return n->cfg.peers[i].name;
	const char *nm = node_ctl_peer_name(n->ctl, key);
	if (nm)
		return nm;
	fmt_key_b64(key, buf, cap);
	return buf;
}

/* Which per-peer family m_peers is writing. */
enum m_peer_kind { MP_AGE, MP_RX, MP_TX, MP_DIRECT, MP_N };

static void m_peer_family(const struct node *n, struct prom *p, enum m_peer_kind k,
                          size_t np)
{
	static const struct {
		const char *name, *help;
		enum prom_type type;
	} f[MP_N] = {
	    {"meshproxy_peer_handshake_age_seconds",
	     "Seconds since the last WireGuard handshake with the peer (peers with one).",
	     PROM_GAUGE},
	    {"meshproxy_peer_rx_bytes_total", "WireGuard bytes received from the peer.",
	     PROM_COUNTER},
	    {"meshproxy_peer_tx_bytes_total", "WireGuard bytes sent to the peer.",
	     PROM_COUNTER},
	    {"meshproxy_peer_direct",
	     "1 when the peer is reached directly, 0 through a relay or not yet.",
	     PROM_GAUGE},
	};
	char kb[64];
	time_t now = time(NULL);
	prom_family(p, f[k].name, f[k].type, f[k].help);
	for (size_t i = 0; i < np && i < NODE_METRICS_PEERS_MAX; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		const char *lab[] = {"peer",
		                     m_peer_label(n, pi.public_key, kb, sizeof(kb))};
		if (k == MP_AGE && pi.last_handshake_unix)
			prom_sample_u64(p, lab, 1,
			                now > pi.last_handshake_unix
			                    ? (uint64_t)(now - pi.last_handshake_unix)
			                    : 0);
		else if (k == MP_RX)
			prom_sample_u64(p, lab, 1, pi.rx_bytes);
		else if (k == MP_TX)
			prom_sample_u64(p, lab, 1, pi.tx_bytes);
		else if (k == MP_DIRECT)
			prom_sample_u64(p, lab, 1,
			                !pi.via_relay && pi.last_handshake_unix);
	}
}

static void m_peers(const struct node *n, const struct node_health *h, struct prom *p)
{
	size_t np = wg_device_peer_count(n->wg);
	uint64_t sent = 0, done = 0, paths[3] = {0};
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		sent += pi.handshakes_sent;
		done += pi.handshakes_completed;
		paths[!pi.last_handshake_unix ? 2 : pi.via_relay ? 1 : 0]++;
	}
	prom_gauge(p, "meshproxy_peers", "WireGuard peers (map and [Peer]).", (double)np);
	prom_gauge(p, "meshproxy_peers_answering",
	           "Peers that answer (a recent handshake, none unanswered).",
	           (double)node_health_answering(h));
	prom_gauge(p, "meshproxy_peers_unlabelled",
	           "Peers past the per-peer series limit (no peer-labelled series).",
	           np > NODE_METRICS_PEERS_MAX ? (double)(np - NODE_METRICS_PEERS_MAX)
	                                       : 0);
	prom_family(p, "meshproxy_handshakes_total", PROM_COUNTER,
	            "WireGuard handshake initiations sent, and handshakes completed.");
	SAMPLE(p, sent, "result", "initiated");
	SAMPLE(p, done, "result", "completed");
	prom_family(p, "meshproxy_paths", PROM_GAUGE,
	            "Peers by the path their next datagram takes (none: no handshake "
	            "yet).");
	SAMPLE(p, paths[0], "path", "direct");
	SAMPLE(p, paths[1], "path", "relay");
	SAMPLE(p, paths[2], "path", "none");
	for (int k = 0; k < MP_N; k++)
		m_peer_family(n, p, (enum m_peer_kind)k, np);
}

/* ---- front-ends: collected once, written per family ---- */

struct m_front {
	char kind[8], listen[160];
	struct px_stats ps;
};

struct m_fronts {
	struct m_front *f;
	size_t n, cap;
};

static void m_collect(void *arg, const char *kind, const char *what,
                      const struct px_stats *ps)
{
	struct m_fronts *fs = arg;
	if (fs->n == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 16;
		struct m_front *f = realloc(fs->f, cap * sizeof(*f));
		if (!f)
			return;
		fs->f = f;
		fs->cap = cap;
	}
	struct m_front *f = &fs->f[fs->n++];
	snprintf(f->kind, sizeof(f->kind), "%s", kind);
	snprintf(f->listen, sizeof(f->listen), "%s", what);
	f->ps = *ps;
}

#define PX_FIELD(fld) offsetof(struct px_stats, fld)

static uint64_t m_px(const struct px_stats *ps, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)ps + off, sizeof(v));
	return v;
}

static void m_front_family(struct prom *p, const struct m_fronts *fs, const char *name,
                           enum prom_type t, const char *help, const char *lname,
                           const char *const *lvals, const size_t *offs, size_t nv)
{
	prom_family(p, name, t, help);
	for (size_t i = 0; i < fs->n; i++)
		for (size_t k = 0; k < nv; k++) {
			const struct m_front *f = &fs->f[i];
			const char *lab[] = {"frontend", f->kind, "listen",
			                     f->listen,  lname,   lvals ? lvals[k] : ""};
			prom_sample_u64(p, lab, lname ? 3 : 2, m_px(&f->ps, offs[k]));
		}
}

static void m_frontends(const struct node *n, struct prom *p)
{
	struct status_view v;
	struct m_fronts fs = {0};
	node_status_view(n, &v);
	status_for_each_frontend(&v, m_collect, &fs);
	static const char *const conn_l[] = {"accepted", "established"};
	static const size_t conn_o[] = {PX_FIELD(accepted), PX_FIELD(established)};
	m_front_family(p, &fs, "meshproxy_frontend_connections_total", PROM_COUNTER,
	               "Front-end connections accepted and established.", "state", conn_l,
	               conn_o, 2);
	static const size_t act_o[] = {PX_FIELD(active)};
	m_front_family(p, &fs, "meshproxy_frontend_active_connections", PROM_GAUGE,
	               "Front-end connections established and open now.", NULL, NULL,
	               act_o, 1);
	static const char *const dir_l[] = {"up", "down"};
	static const size_t bytes_o[] = {PX_FIELD(bytes_up), PX_FIELD(bytes_down)};
	m_front_family(p, &fs, "meshproxy_frontend_bytes_total", PROM_COUNTER,
	               "Front-end bytes (up: client to destination).", "dir", dir_l,
	               bytes_o, 2);
	static const size_t dg_o[] = {PX_FIELD(dgrams_up), PX_FIELD(dgrams_down)};
	m_front_family(p, &fs, "meshproxy_frontend_datagrams_total", PROM_COUNTER,
	               "Front-end UDP datagrams (up: client to destination).", "dir",
	               dir_l, dg_o, 2);
	static const char *const err_l[] = {
	    "auth",        "protocol",    "handshake_timeout",
	    "client_gone", "no_route",    "resolve",
	    "refused",     "unreachable", "timeout",
	    "other",       "accept",      "limit",
	    "idle",        "denied",      "busy",
	    "policy",      "dgram_drops"};
	static const size_t err_o[] = {PX_FIELD(err_auth),
	                               PX_FIELD(err_protocol),
	                               PX_FIELD(err_handshake_timeout),
	                               PX_FIELD(err_client_gone),
	                               PX_FIELD(err_no_route),
	                               PX_FIELD(err_resolve),
	                               PX_FIELD(err_refused),
	                               PX_FIELD(err_unreachable),
	                               PX_FIELD(err_timeout),
	                               PX_FIELD(err_other),
	                               PX_FIELD(err_accept),
	                               PX_FIELD(err_limit),
	                               PX_FIELD(err_idle),
	                               PX_FIELD(err_denied),
	                               PX_FIELD(err_busy),
	                               PX_FIELD(err_policy),
	                               PX_FIELD(dgram_drops)};
	m_front_family(p, &fs, "meshproxy_frontend_errors_total", PROM_COUNTER,
	               "Front-end failures and drops, by reason.", "reason", err_l, err_o,
	               sizeof(err_o) / sizeof(err_o[0]));
	free(fs.f);
}

static void m_netstack(struct prom *p)
{
	struct ns_stats ns;
	ns_get_stats(&ns);
	prom_gauge(p, "meshproxy_netstack_tcp_active", "Mesh TCP connections open now.",
	           (double)ns.tcp_active);
	prom_family(p, "meshproxy_netstack_tcp_connections_total", PROM_COUNTER,
	            "Mesh TCP connections, by outcome.");
	SAMPLE(p, ns.tcp_total, "result", "opened");
	SAMPLE(p, ns.tcp_refused, "result", "refused");
	SAMPLE(p, ns.tcp_reset, "result", "reset");
	prom_family(p, "meshproxy_netstack_bytes_total", PROM_COUNTER,
	            "Bytes spliced between the mesh and sockets (in: from the mesh).");
	SAMPLE(p, ns.splice_bytes_in, "dir", "in");
	SAMPLE(p, ns.splice_bytes_out, "dir", "out");
	prom_gauge(p, "meshproxy_netstack_memory_bytes", "Memory the netstack holds.",
	           (double)ns.mem_used);
	prom_gauge(p, "meshproxy_netstack_memory_limit_bytes",
	           "The netstack's memory budget.", (double)ns.mem_limit);
}

static void m_policy(const struct node_acl *a, struct prom *p)
{
	struct acl_stats st;
	node_acl_stats(a, &st);
	prom_gauge(p, "meshproxy_policy_active",
	           "1 when mesh-control's access policy filters inbound packets.",
	           st.active);
	prom_family(p, "meshproxy_policy_drops_total", PROM_COUNTER,
	            "Inbound packets the access policy dropped, by reason.");
	for (int r = 0; r < ACL_DROP_N; r++)
		SAMPLE(p, st.drops[r], "reason", acl_drop_name((enum acl_drop)r));
}

/* The control connection and the relays (joined nodes). */
static void m_control(const struct node_ctl *m, struct prom *p)
{
	struct ctl_client_status cs = {0};
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	prom_gauge(p, "meshproxy_control_connected",
	           "1 while the connection to mesh-control is online.",
	           cs.state == CTL_CLIENT_ONLINE);
	prom_counter(p, "meshproxy_control_reconnects_total",
	             "Connection attempts to mesh-control after the first.",
	             cs.reconnects);
	prom_family(p, "meshproxy_control_maps_total", PROM_COUNTER,
	            "Network maps received, by kind.");
	SAMPLE(p, cs.maps_full, "kind", "full");
	SAMPLE(p, cs.maps_delta, "kind", "delta");
	struct magicsock_conn_status c[MS_CONNS_MAX];
	struct relay_client_status rs[MS_CONNS_MAX];
	size_t n = m->ms ? magicsock_conns(m->ms, c, rs, MS_CONNS_MAX) : 0;
	prom_family(p, "meshproxy_relay_connected", PROM_GAUGE,
	            "1 while the relay connection is up (home: the home relay).");
	for (size_t i = 0; i < n; i++) {
		const char *lab[] = {"relay",  c[i].name,
		                     "region", c[i].region,
		                     "home",   c[i].home ? "true" : "false"};
		prom_sample_u64(p, lab, 3, rs[i].state == RELAY_CLIENT_CONNECTED);
	}
	prom_family(p, "meshproxy_relay_bytes_total", PROM_COUNTER,
	            "Bytes through the relay connection, by direction.");
	for (size_t i = 0; i < n; i++) {
		const char *rx[] = {"relay", c[i].name, "dir", "rx"};
		const char *tx[] = {"relay", c[i].name, "dir", "tx"};
		prom_sample_u64(p, rx, 2, rs[i].rx_bytes);
		prom_sample_u64(p, tx, 2, rs[i].tx_bytes);
	}
}

void node_metrics_write(const struct node *n, const struct node_health *h, struct prom *p)
{
	char why[200];
	prom_gauge(p, "meshproxy_ready", "1 when /readyz answers 200.",
	           node_health_ready(h, why, sizeof(why)));
	prom_gauge(p, "meshproxy_start_time_seconds",
	           "When the node started (unix time).", (double)n->started);
	prom_gauge(p, "meshproxy_joined",
	           "1 for a node joined to mesh-control, 0 from a configuration file.",
	           n->ctl != NULL);
	if (n->ctl)
		m_control(n->ctl, p);
	if (!n->wg)
		return; /* registration pending: nothing more yet */
	m_peers(n, h, p);
	m_wireguard(n->wg, p);
	m_policy(n->acl, p);
	m_frontends(n, p);
	m_netstack(p);
}
