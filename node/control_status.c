/* Status of a joined node: self and a table of map peers, as text (like
 * `tailscale status`) and JSON; `mesh-proxy ip`. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/wg/device.h"
#include "node/api_server.h"
#include "node/control_int.h"
#include "node/dns/magicdns.h"
#include "node/format.h"
#include "proxy/expose.h"

static void nctl_addrs(const struct ctl_ip *a, size_t n, char *out, size_t cap)
{
	size_t k = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && k < cap; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_ip_format(&a[i], s);
		k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "", s);
	}
}

static void nctl_self_addrs(const struct node_ctl *m, char *out, size_t cap)
{
	char v4[INET_ADDRSTRLEN], v6[INET6_ADDRSTRLEN];
	if (!m->have_self) {
		snprintf(out, cap, "(not registered)");
		return;
	}
	inet_ntop(AF_INET, m->self.ipv4, v4, sizeof(v4));
	inet_ntop(AF_INET6, m->self.ipv6, v6, sizeof(v6));
	snprintf(out, cap, "%s %s", v4, v6);
}

void node_ctl_status_text(const struct node_ctl *m, const struct wg_device *wg,
                          struct api_conn *c)
{
	struct ctl_client_status cs = {0};
	char addrs[160];
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	nctl_self_addrs(m, addrs, sizeof(addrs));
	api_conn_printf(c, "mesh   %s  %s  control %s", m->have_self ? m->self.fqdn : "-",
	                addrs, m->client ? ctl_client_state_name(cs.state) : "stopped");
	if (cs.map_version || m->np.version)
		api_conn_printf(c, ", map v%" PRIu64,
		                cs.map_version ? cs.map_version : m->np.version);
	if (cs.state == CTL_CLIENT_BACKOFF || cs.state == CTL_CLIENT_PENDING ||
	    cs.state == CTL_CLIENT_REFUSED) {
		char safe[sizeof(cs.detail)];
		fmt_text_safe(cs.detail, safe, sizeof(safe)); /* the server's words */
		api_conn_printf(c, " (%s)", safe);
	}
	api_conn_printf(c, "\n");
	if (m->expose || m->magicdns) {
		struct px_stats ps = {0};
		struct magicdns_stats ms = {0};
		char desc[128], up[32], down[32];
		if (m->expose)
			px_expose_get_stats(m->expose, &ps);
		if (m->magicdns)
			magicdns_get_stats(m->magicdns, &ms);
		expose_describe(&m->p->expose, desc, sizeof(desc));
		fmt_bytes(ps.bytes_up, up, sizeof(up));
		fmt_bytes(ps.bytes_down, down, sizeof(down));
		api_conn_printf(
		    c,
		    "       expose %s  accepted %" PRIu64 "  active %" PRIu64
		    "  refused %" PRIu64 "  up %s  down %s;  magicdns queries %" PRIu64
		    " answered %" PRIu64 " nxdomain %" PRIu64 " forwarded %" PRIu64 "\n",
		    m->expose ? desc : "none", ps.accepted, ps.active, ps.err_refused, up,
		    down, ms.queries, ms.answered, ms.nxdomain, ms.forwarded);
	}
	if (!m->np.n)
		return;
	api_conn_printf(c, "       %-16s %-36s %-7s %-24s %-10s %-10s %s\n", "NAME",
	                "ADDRESSES", "ONLINE", "ENDPOINT", "HANDSHAKE", "RX", "TX");
	for (size_t i = 0; i < m->np.n; i++) {
		const struct np_entry *e = &m->np.e[i];
		struct wg_peer_info pi = {0};
		char ep[80] = "-", hs[32] = "-", rx[32] = "-", tx[32] = "-";
		nctl_addrs(e->p.addrs, e->p.n_addrs, addrs, sizeof(addrs));
		if (wg && e->in_wg &&
		    wg_device_peer_info_by_key(wg, e->p.node_key, &pi) == 0) {
			fmt_sockaddr(&pi.endpoint, ep, sizeof(ep));
			fmt_ago(pi.last_handshake_unix, hs, sizeof(hs));
			fmt_bytes(pi.rx_bytes, rx, sizeof(rx));
			fmt_bytes(pi.tx_bytes, tx, sizeof(tx));
		} else if (!e->in_wg && m->dataplane) {
			snprintf(ep, sizeof(ep), "(static peer)");
		}
		api_conn_printf(c, "       %-16s %-36s %-7s %-24s %-10s %-10s %s\n",
		                e->p.name, addrs, e->p.online ? "yes" : "no", ep, hs, rx,
		                tx);
	}
}

static json_t *nctl_json_ips(const struct ctl_ip *a, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_ip_format(&a[i], s);
		arr = fmt_json_append(arr, json_string(s));
	}
	return arr;
}

static json_t *nctl_json_control(const struct node_ctl *m)
{
	struct ctl_client_status cs = {0};
	json_t *o = json_object();
	if (!o)
		return NULL;
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	fmt_json_set(o, "host", fmt_json_str(m->p->server.host));
	fmt_json_set(o, "port", json_integer(m->p->server.port));
	fmt_json_set(
	    o, "state",
	    json_string(m->client ? ctl_client_state_name(cs.state) : "stopped"));
	/* The detail can carry the server's refusal text: any bytes. */
	fmt_json_set(o, "detail", fmt_json_str(cs.detail));
	fmt_json_set(o, "map_version",
	             fmt_json_u64(cs.map_version ? cs.map_version : m->np.version));
	fmt_json_set(o, "sessions", fmt_json_u64(cs.sessions));
	fmt_json_set(o, "reconnects", fmt_json_u64(cs.reconnects));
	fmt_json_set(o, "maps_full", fmt_json_u64(cs.maps_full));
	fmt_json_set(o, "maps_delta", fmt_json_u64(cs.maps_delta));
	fmt_json_set(o, "connected_since", json_integer(cs.connected_since));
	fmt_json_set(o, "last_map", json_integer(cs.last_map));
	return o;
}

static json_t *nctl_json_services(const struct node_ctl *m, json_t *root)
{
	struct px_stats ps = {0};
	struct magicdns_stats ms = {0};
	char desc[128];
	json_t *ex = json_object(), *dns = json_object();
	if (m->expose)
		px_expose_get_stats(m->expose, &ps);
	if (m->magicdns)
		magicdns_get_stats(m->magicdns, &ms);
	expose_describe(&m->p->expose, desc, sizeof(desc));
	if (ex) {
		fmt_json_set(ex, "spec", fmt_json_str(desc));
		fmt_json_set(ex, "on", json_boolean(m->expose));
		fmt_json_set(ex, "accepted", fmt_json_u64(ps.accepted));
		fmt_json_set(ex, "active", fmt_json_u64(ps.active));
		fmt_json_set(ex, "refused", fmt_json_u64(ps.err_refused));
		fmt_json_set(ex, "bytes_up", fmt_json_u64(ps.bytes_up));
		fmt_json_set(ex, "bytes_down", fmt_json_u64(ps.bytes_down));
		fmt_json_set(ex, "denied", fmt_json_u64(ps.err_denied));
	}
	fmt_json_set(root, "expose", ex);
	if (dns) {
		fmt_json_set(dns, "on", json_boolean(m->magicdns));
		fmt_json_set(dns, "queries", fmt_json_u64(ms.queries));
		fmt_json_set(dns, "answered", fmt_json_u64(ms.answered));
		fmt_json_set(dns, "nxdomain", fmt_json_u64(ms.nxdomain));
		fmt_json_set(dns, "forwarded", fmt_json_u64(ms.forwarded));
		fmt_json_set(dns, "servfail", fmt_json_u64(ms.servfail));
		fmt_json_set(dns, "formerr", fmt_json_u64(ms.formerr));
		fmt_json_set(dns, "dropped", fmt_json_u64(ms.dropped));
	}
	fmt_json_set(root, "magicdns", dns);
	return root;
}

static json_t *nctl_json_peer(const struct node_ctl *m, const struct np_entry *e,
                              const struct wg_device *wg)
{
	struct wg_peer_info pi = {0};
	char ep[80], key[64], fqdn[CTL_LABEL_MAX + 1 + CTL_DNSNAME_MAX];
	json_t *o = json_object(), *eps = json_array();
	if (!o || !eps) {
		json_decref(o);
		json_decref(eps);
		return NULL;
	}
	bool have =
	    wg && e->in_wg && wg_device_peer_info_by_key(wg, e->p.node_key, &pi) == 0;
	fmt_sockaddr(&pi.endpoint, ep, sizeof(ep));
	fmt_key_b64(e->p.node_key, key, sizeof(key));
	snprintf(fqdn, sizeof(fqdn), "%s%s%s", e->p.name, m->np.domain[0] ? "." : "",
	         m->np.domain);
	fmt_json_set(o, "id", fmt_json_u64(e->p.id));
	fmt_json_set(o, "name", fmt_json_str(e->p.name));
	fmt_json_set(o, "fqdn", fmt_json_str(fqdn));
	fmt_json_set(o, "public_key", json_string(key));
	fmt_json_set(o, "online", json_boolean(e->p.online));
	fmt_json_set(o, "last_seen", json_integer(e->p.last_seen));
	fmt_json_set(o, "addresses", nctl_json_ips(e->p.addrs, e->p.n_addrs));
	for (size_t j = 0; eps && j < e->p.n_eps; j++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_endpoint_format(&e->p.eps[j], s);
		eps = fmt_json_append(eps, json_string(s));
	}
	fmt_json_set(o, "endpoints", eps);
	fmt_json_set(o, "configured", json_boolean(e->in_wg));
	fmt_json_set(o, "endpoint",
	             have && pi.endpoint.ss_family ? json_string(ep) : json_null());
	fmt_json_set(o, "last_handshake_unix", json_integer(pi.last_handshake_unix));
	fmt_json_set(o, "rx_bytes", fmt_json_u64(pi.rx_bytes));
	fmt_json_set(o, "tx_bytes", fmt_json_u64(pi.tx_bytes));
	fmt_json_set(o, "exposed_conns", fmt_json_u64(e->exposed));
	return o;
}

void node_ctl_status_json_write(const struct node_ctl *m, const struct wg_device *wg,
                                struct fmt_jw *w)
{
	char v4[INET_ADDRSTRLEN] = "", v6[INET6_ADDRSTRLEN] = "";
	json_t *o = json_object(), *addrs = json_array();
	if (o && addrs && m->have_self) {
		inet_ntop(AF_INET, m->self.ipv4, v4, sizeof(v4));
		inet_ntop(AF_INET6, m->self.ipv6, v6, sizeof(v6));
		addrs = fmt_json_append(addrs, json_string(v4));
		addrs = fmt_json_append(addrs, json_string(v6));
	}
	if (o) {
		fmt_json_set(o, "name", fmt_json_str(m->have_self ? m->self.name : ""));
		fmt_json_set(o, "fqdn", fmt_json_str(m->have_self ? m->self.fqdn : ""));
		fmt_json_set(o, "domain",
		             fmt_json_str(m->have_self ? m->self.domain : ""));
		fmt_json_set(o, "node_id",
		             fmt_json_u64(m->have_self ? m->self.node_id : 0));
		fmt_json_set(o, "addresses", addrs);
		addrs = NULL;
		fmt_json_set(o, "control", nctl_json_control(m));
		nctl_json_services(m, o);
		fmt_json_set(o, "endpoint_rotations", fmt_json_u64(m->np.rotations));
	}
	json_decref(addrs);
	/* The map's peers follow one at a time: a map of thousands needs one
	 * peer's jansson values at a time, not the whole document's (the text
	 * still waits in the connection's output buffer, as it always did). */
	fmt_jw_raw(w, fmt_jw_open_object(w, o) ? ",\"peers\":[" : "\"peers\":[");
	w->n_items = 0;
	for (size_t i = 0; i < m->np.n; i++)
		fmt_jw_item(w, nctl_json_peer(m, &m->np.e[i], wg));
	fmt_jw_raw(w, "]}");
}

const char *node_ctl_peer_name(const struct node_ctl *m, const uint8_t key[32])
{
	const struct np_entry *e = m ? node_peers_by_key(&m->np, key) : NULL;
	return e && e->in_wg ? e->p.name : NULL;
}

void node_ctl_write_ip(const struct node_ctl *m, struct api_conn *c, int family)
{
	char v4[INET_ADDRSTRLEN], v6[INET6_ADDRSTRLEN];
	if (!m->have_self) {
		api_conn_printf(c, "error: not registered yet (control %s)\n",
		                m->client ? "connecting or pending" : "stopped");
		return;
	}
	inet_ntop(AF_INET, m->self.ipv4, v4, sizeof(v4));
	inet_ntop(AF_INET6, m->self.ipv6, v6, sizeof(v6));
	if (family != 6)
		api_conn_printf(c, "%s\n", v4);
	if (family != 4)
		api_conn_printf(c, "%s\n", v6);
}
