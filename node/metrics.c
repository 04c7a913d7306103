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

/* The name of a peer: its [Peer] Name or map name, else its key. */
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
enum m_peer_kind { MP_HANDSHAKE, MP_RX, MP_TX, MP_DIRECT, MP_N };

static void m_peer_family(const struct node *n, struct prom *p, enum m_peer_kind k,
                          size_t np)
{
	static const struct {
		const char *name, *help;
		enum prom_type type;
	} f[MP_N] = {
	    {"meshproxy_peer_last_handshake_timestamp_seconds",
	     "When the last WireGuard handshake with the peer completed (unix time; "
	     "peers with one).",
	     PROM_GAUGE},
	    {"meshproxy_peer_rx_bytes_total", "WireGuard bytes received from the peer.",
	     PROM_COUNTER},
	    {"meshproxy_peer_tx_bytes_total", "WireGuard bytes sent to the peer.",
	     PROM_COUNTER},
	    {"meshproxy_peer_direct",
	     "1 when the peer is reached directly, 0 through a relay or not yet.",
	     PROM_GAUGE},
	};
	char kb[64], k8[64];
	prom_family(p, f[k].name, f[k].type, f[k].help);
	for (size_t i = 0; i < np && i < NODE_METRICS_PEERS_MAX; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		/* key: two peers of one name (a [Peer] Name equal to a map
		 * name) stay two series */
		fmt_key_b64(pi.public_key, k8, sizeof(k8));
		k8[8] = 0;
		const char *lab[] = {
		    "peer", m_peer_label(n, pi.public_key, kb, sizeof(kb)), "key", k8};
		if (k == MP_HANDSHAKE && pi.last_handshake_unix > 0)
			prom_sample_u64(p, lab, 2, (uint64_t)pi.last_handshake_unix);
		else if (k == MP_RX)
			prom_sample_u64(p, lab, 2, pi.rx_bytes);
		else if (k == MP_TX)
			prom_sample_u64(p, lab, 2, pi.tx_bytes);
		else if (k == MP_DIRECT)
			prom_sample_u64(p, lab, 2,
			                !pi.via_relay && pi.last_handshake_unix);
	}
}

/* Totals over the peers count those the map removed too (the device's
 * retired counters), so that they never go down. */
void node_metrics_wg_totals(const struct wg_device *wg, struct prom *p)
{
	size_t np = wg_device_peer_count(wg);
	struct wg_device_stats st;
	wg_device_stats(wg, &st);
	uint64_t sent = st.retired_handshakes_sent,
	         done = st.retired_handshakes_completed;
	uint64_t rx = st.retired_rx_bytes, tx = st.retired_tx_bytes;
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(wg, i, &pi) != 0)
			continue;
		sent += pi.handshakes_sent;
		done += pi.handshakes_completed;
		rx += pi.rx_bytes;
		tx += pi.tx_bytes;
	}
	prom_family(p, "meshproxy_handshakes_total", PROM_COUNTER,
	            "WireGuard handshake initiations sent, and handshakes completed.");
	SAMPLE(p, sent, "result", "initiated");
	SAMPLE(p, done, "result", "completed");
	prom_family(p, "meshproxy_wg_bytes_total", PROM_COUNTER,
	            "WireGuard transport payload bytes with all peers, by direction.");
	SAMPLE(p, rx, "dir", "rx");
	SAMPLE(p, tx, "dir", "tx");
}

static void m_peers(const struct node *n, const struct node_health *h, bool per_peer,
                    struct prom *p)
{
	size_t np = wg_device_peer_count(n->wg);
	uint64_t paths[3] = {0};
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		paths[!pi.last_handshake_unix ? 2 : pi.via_relay ? 1 : 0]++;
	}
	prom_gauge(p, "meshproxy_peers", "WireGuard peers (map and [Peer]).", (double)np);
	prom_gauge(p, "meshproxy_peers_answering",
	           "Peers that answer (a recent handshake, none unanswered).",
	           (double)node_health_answering(h));
	if (per_peer)
		prom_gauge(p, "meshproxy_peers_unlabelled",
		           "Peers past the per-peer series limit (no peer-labelled "
		           "series).",
		           np > NODE_METRICS_PEERS_MAX
		               ? (double)(np - NODE_METRICS_PEERS_MAX)
		               : 0);
	node_metrics_wg_totals(n->wg, p);
	prom_family(p, "meshproxy_paths", PROM_GAUGE,
	            "Peers by the path their next datagram takes (none: no handshake "
	            "yet).");
	SAMPLE(p, paths[0], "path", "direct");
	SAMPLE(p, paths[1], "path", "relay");
	SAMPLE(p, paths[2], "path", "none");
	for (int k = 0; per_peer && k < MP_N; k++)
		m_peer_family(n, p, (enum m_peer_kind)k, np);
}

/* ---- front-ends: collected once, written per family ---- */

/* A front-end's labels: its kind and its index among that kind, and with
 * --metrics-peers its description (listen address and mesh target). */
struct m_front {
	char kind[8], idx[24], listen[160];
	struct px_stats ps;
};

struct m_fronts {
	struct m_front *f;
	size_t n, cap;
	bool detail;
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
	size_t idx = 0;
	for (size_t i = 0; i < fs->n; i++)
		idx += !strcmp(fs->f[i].kind, kind);
	struct m_front *f = &fs->f[fs->n++];
	snprintf(f->kind, sizeof(f->kind), "%s", kind);
	snprintf(f->idx, sizeof(f->idx), "%zu", idx);
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
			const char *lab[8] = {"frontend", f->kind, "index", f->idx};
			size_t nl = 2;
			if (lname) {
				lab[2 * nl] = lname;
				lab[2 * nl++ + 1] = lvals ? lvals[k] : "";
			}
			if (fs->detail) {
				lab[2 * nl] = "listen";
				lab[2 * nl++ + 1] = f->listen;
			}
			prom_sample_u64(p, lab, nl, m_px(&f->ps, offs[k]));
		}
}

static void m_frontends(const struct node *n, bool detail, struct prom *p)
{
	struct status_view v;
	struct m_fronts fs = {.detail = detail};
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

/* The control connection and the relays (joined nodes). A relay is
 * labelled by its index, region and home state; its name only with
 * --metrics-peers. */
static void m_control(const struct node_ctl *m, bool detail, struct prom *p)
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
	prom_gauge(p, "meshproxy_control_address_index",
	           "Which of the join token's control addresses the node is on or "
	           "dials next (0: the first).",
	           cs.addr_index);
	prom_family(p, "meshproxy_control_maps_total", PROM_COUNTER,
	            "Network maps received, by kind.");
	SAMPLE(p, cs.maps_full, "kind", "full");
	SAMPLE(p, cs.maps_delta, "kind", "delta");
	prom_counter(p, "meshproxy_network_changes_total",
	             "Changes of the host's network (addresses, routes) the node "
	             "reacted to.",
	             m->net_changes);
	struct magicsock_conn_status c[MS_CONNS_MAX];
	struct relay_client_status rs[MS_CONNS_MAX];
	size_t n = m->ms ? magicsock_conns(m->ms, c, rs, MS_CONNS_MAX) : 0;
	/* magicsock swap-removes relay connections: a position is no name for
	 * a series. Per relay (by its name) with --metrics-peers, totals
	 * otherwise. */
	if (!detail) {
		size_t up = 0;
		struct magicsock_stats st = {0};
		if (m->ms)
			magicsock_get_stats(m->ms, &st);
		uint64_t rx = st.relay_closed_rx_bytes, tx = st.relay_closed_tx_bytes;
		bool home = false;
		for (size_t i = 0; i < n; i++) {
			bool on = rs[i].state == RELAY_CLIENT_CONNECTED;
			up += on;
			home |= on && c[i].home;
			rx += rs[i].rx_bytes;
			tx += rs[i].tx_bytes;
		}
		prom_gauge(p, "meshproxy_relays_connected",
		           "Relay connections up (per relay with --metrics-peers).",
		           (double)up);
		prom_gauge(p, "meshproxy_relay_home_connected",
		           "1 while the connection to the home relay is up.", home);
		prom_family(p, "meshproxy_relay_bytes_total", PROM_COUNTER,
		            "Bytes through relay connections, by direction (closed "
		            "ones included).");
		SAMPLE(p, rx, "dir", "rx");
		SAMPLE(p, tx, "dir", "tx");
		return;
	}
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

void node_metrics_write(const struct node *n, const struct node_health *h, bool per_peer,
                        struct prom *p)
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
		m_control(n->ctl, per_peer, p);
	if (!n->wg)
		return; /* registration pending: nothing more yet */
	m_peers(n, h, per_peer, p);
	m_wireguard(n->wg, p);
	m_policy(n->acl, p);
	m_frontends(n, per_peer, p);
	m_netstack(p);
}
