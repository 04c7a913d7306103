/* Status of a joined node: self and a table of map peers, as text (like
 * `tailscale status`) and JSON; `mesh-proxy ip`. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/magicsock/magicsock.h"
#include "core/portmap/portmap.h"
#include "core/relay/client.h"
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

/* "direct", "direct (birthday) 1.2ms", "relay region-a", "-". */
static void nctl_path_text(const struct node_ctl *m, const uint8_t *key, char *out,
                           size_t cap)
{
	struct magicsock_peer_path pp;
	snprintf(out, cap, "-");
	if (!m->ms || magicsock_peer_path(m->ms, key, &pp) != 0 || !pp.path)
		return;
	if (pp.path == MS_PATH_RELAY)
		snprintf(out, cap, "relay %s", pp.relay_region[0] ? pp.relay_region : "?");
	else if (pp.latency_us)
		snprintf(out, cap, "direct%s %.1fms", pp.birthday ? " (birthday)" : "",
		         pp.latency_us / 1000.0);
	else
		snprintf(out, cap, "direct%s", pp.birthday ? " (birthday)" : "");
}

/* "relay  home region-a (relay-1 198.18.0.1:443) connected, rtt 0.4 ms" */
static void nctl_relays_text(const struct node_ctl *m, struct api_conn *c)
{
	struct magicsock_conn_status cs[MS_CONNS_MAX];
	struct relay_client_status rs[MS_CONNS_MAX];
	if (!m->ms)
		return;
	size_t n = magicsock_conns(m->ms, cs, rs, MS_CONNS_MAX);
	if (!n) {
		api_conn_printf(c, "       relay  %s\n",
		                magicsock_relay_count(m->ms)
		                    ? "none connected yet"
		                    : "none (the map lists no relay: peers need a direct path)");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char detail[sizeof(rs[i].detail)];
		fmt_text_safe(rs[i].detail, detail, sizeof(detail));
		api_conn_printf(c, "       relay  %s%s (%s %s:%u) %s", cs[i].home ? "home " : "",
		                cs[i].region, cs[i].name[0] ? cs[i].name : "?", cs[i].host,
		                cs[i].port, relay_client_state_name(rs[i].state));
		if (rs[i].rtt_us)
			api_conn_printf(c, ", rtt %.1f ms", rs[i].rtt_us / 1000.0);
		if (rs[i].state != RELAY_CLIENT_CONNECTED && detail[0])
			api_conn_printf(c, " (%s)", detail);
		api_conn_printf(c, "\n");
	}
}

/* "portmap  upnp 198.18.10.8:41641, lease 2h" or "portmap  none (why)". */
static void nctl_portmap_text(const struct node_ctl *m, struct api_conn *c)
{
	if (!m->dataplane)
		return;
	if (!m->pm) {
		api_conn_printf(c, "       portmap  off%s\n",
		                m->portmap_off ? " (--no-portmap or PortMapping = no)" : "");
		return;
	}
	struct portmap_status st;
	char d[PM_ERR_MAX + 64], safe[sizeof(d)];
	portmap_get_status(m->pm, &st);
	portmap_describe(&st, d, sizeof(d));
	fmt_text_safe(d, safe, sizeof(safe)); /* a router's words may be in it */
	api_conn_printf(c, "       portmap  %s\n", safe);
}

/* "birthday  off (...)" when birthday probing is switched off; nothing
 * when it is on (the default), as with the peers' "direct (birthday)". */
static void nctl_birthday_text(const struct node_ctl *m, struct api_conn *c)
{
	if (m->dataplane && m->ms && m->birthday_off)
		api_conn_printf(c,
		                "       birthday  off (--no-birthday or BirthdayProbing = no)\n");
}

/* "portmap" in paths: null when off. */
static json_t *nctl_json_portmap(const struct node_ctl *m)
{
	json_t *o;
	if (!m->pm || !(o = json_object()))
		return json_null();
	struct portmap_status st;
	char a[80];
	portmap_get_status(m->pm, &st);
	fmt_sockaddr(&st.external, a, sizeof(a));
	fmt_json_set(o, "protocol", st.proto ? json_string(portmap_proto_name(st.proto))
	                                     : json_null());
	fmt_json_set(o, "external", st.proto ? json_string(a) : json_null());
	fmt_json_set(o, "lease_s", json_integer(st.lease_s));
	fmt_json_set(o, "expires_in_s", json_integer(st.expires_ms / 1000));
	fmt_json_set(o, "gateway", st.gateway[0] ? json_string(st.gateway) : json_null());
	fmt_json_set(o, "probing", json_boolean(st.probing));
	fmt_json_set(o, "probes", fmt_json_u64(st.probes));
	fmt_json_set(o, "mapped", fmt_json_u64(st.mapped));
	fmt_json_set(o, "renewed", fmt_json_u64(st.renewed));
	fmt_json_set(o, "failures", fmt_json_u64(st.failures));
	fmt_json_set(o, "bad_replies", fmt_json_u64(st.bad_replies));
	fmt_json_set(o, "last_error", st.last_error[0] ? fmt_json_str(st.last_error)
	                                               : json_null());
	return o;
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
	if (m->client && cs.addr[0]) { /* the mesh-control server it is on */
		char safe[sizeof(cs.addr)];
		fmt_text_safe(cs.addr, safe, sizeof(safe));
		api_conn_printf(c, "       control %s", safe);
		if (cs.n_addrs > 1)
			api_conn_printf(c, " (address %u of %u)", cs.addr_index + 1u,
			                (unsigned)cs.n_addrs);
		api_conn_printf(c, "\n");
	}
	if (m->np.version) /* whose node this is, from the map */
		api_conn_printf(c, "       owner %s, tags %s\n",
		                m->np.self_user[0] ? m->np.self_user : "(none)",
		                m->np.self_tags[0] ? m->np.self_tags : "(none)");
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
	nctl_relays_text(m, c);
	nctl_portmap_text(m, c);
	nctl_birthday_text(m, c);
	if (!m->np.n)
		return;
	api_conn_printf(c, "       %-16s %-36s %-7s %-24s %-10s %-10s %-10s %s\n", "NAME",
	                "ADDRESSES", "ONLINE", "PATH", "ENDPOINT", "HANDSHAKE", "RX", "TX");
	for (size_t i = 0; i < m->np.n; i++) {
		const struct np_entry *e = &m->np.e[i];
		struct wg_peer_info pi = {0};
		char ep[80] = "-", hs[32] = "-", rx[32] = "-", tx[32] = "-", path[80] = "-";
		nctl_addrs(e->p.addrs, e->p.n_addrs, addrs, sizeof(addrs));
		nctl_path_text(m, e->p.node_key, path, sizeof(path));
		bool relayed = strncmp(path, "relay", 5) == 0;
		if (wg && e->in_wg &&
		    wg_device_peer_info_by_key(wg, e->p.node_key, &pi) == 0) {
			if (!relayed)
				fmt_sockaddr(&pi.endpoint, ep, sizeof(ep));
			fmt_ago(pi.last_handshake_unix, hs, sizeof(hs));
			fmt_bytes(pi.rx_bytes, rx, sizeof(rx));
			fmt_bytes(pi.tx_bytes, tx, sizeof(tx));
		} else if (!e->in_wg && m->dataplane) {
			snprintf(ep, sizeof(ep), "(static peer)");
		}
		api_conn_printf(c, "       %-16s %-36s %-7s %-24s %-24s %-10s %-10s %s\n",
		                e->p.name, addrs, e->p.online ? "yes" : "no", path, ep, hs,
		                rx, tx);
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
	/* Every control address of the token, in order, and the one in use
	 * (or dialled next): "host:port", "[v6]:port". */
	json_t *addrs = json_array();
	for (size_t i = 0; addrs && i <= m->p->server.n_more; i++) {
		const char *h = i ? m->p->server.more[i - 1].host : m->p->server.host;
		uint16_t port = i ? m->p->server.more[i - 1].port : m->p->server.port;
		char a[CTL_CLIENT_ADDR_TEXT];
		bool v6 = strchr(h, ':') != NULL;
		snprintf(a, sizeof(a), "%s%s%s:%u", v6 ? "[" : "", h, v6 ? "]" : "",
		         port);
		json_array_append_new(addrs, fmt_json_str(a));
	}
	fmt_json_set(o, "addresses", addrs);
	fmt_json_set(o, "address", m->client ? fmt_json_str(cs.addr) : json_null());
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
	fmt_json_set(o, "maps_compressed", fmt_json_u64(cs.zmaps));
	fmt_json_set(o, "maps_compressed_refused", fmt_json_u64(cs.zmaps_refused));
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
	struct magicsock_peer_path pp = {0};
	bool ms_ok = have && m->ms && magicsock_peer_path(m->ms, e->p.node_key, &pp) == 0;
	if (!ms_ok && have && pi.endpoint.ss_family && pi.last_direct_rx_ms >= 0)
		pp.path = MS_PATH_DIRECT; /* no path layer: plain WireGuard */
	/* The UDP address packets go to; none while they go through a relay
	 * (the endpoint WireGuard keeps then is only a candidate). */
	fmt_json_set(o, "endpoint", have && pi.endpoint.ss_family && pp.path != MS_PATH_RELAY
	                                ? json_string(ep)
	                                : json_null());
	const char *pn = ms_path_name(pp.path);
	fmt_json_set(o, "path", pn ? json_string(pn) : json_null());
	/* The direct path was found by birthday probing. */
	fmt_json_set(o, "birthday", json_boolean(pp.path == MS_PATH_DIRECT && pp.birthday));
	fmt_json_set(o, "relay_region", pp.path == MS_PATH_RELAY && pp.relay_region[0]
	                                    ? fmt_json_str(pp.relay_region)
	                                    : json_null());
	fmt_json_set(o, "home_relay", fmt_json_u64(e->p.home_relay));
	fmt_json_set(o, "direct_latency_ms",
	             pp.latency_us ? json_real(pp.latency_us / 1000.0) : json_null());
	fmt_json_set(o, "relay_tx_bytes", fmt_json_u64(pi.relay_tx_bytes));
	fmt_json_set(o, "relay_rx_bytes", fmt_json_u64(pi.relay_rx_bytes));
	fmt_json_set(o, "last_handshake_unix", json_integer(pi.last_handshake_unix));
	fmt_json_set(o, "rx_bytes", fmt_json_u64(pi.rx_bytes));
	fmt_json_set(o, "tx_bytes", fmt_json_u64(pi.tx_bytes));
	fmt_json_set(o, "exposed_conns", fmt_json_u64(e->exposed));
	return o;
}

/* "paths": the home relay, the relay connections, the public addresses
 * and the path layer's counters. */
static json_t *nctl_json_paths(const struct node_ctl *m)
{
	json_t *o = json_object(), *conns = json_array();
	if (!o || !conns || !m->ms) {
		json_decref(o);
		json_decref(conns);
		return json_null();
	}
	uint32_t home = magicsock_home(m->ms);
	const struct ctl_relay *hr = magicsock_relay(m->ms, home);
	fmt_json_set(o, "home_relay", home ? fmt_json_u64(home) : json_null());
	fmt_json_set(o, "home_region", hr ? fmt_json_str(hr->region) : json_null());
	struct sockaddr_storage g4, g6;
	char a[80];
	magicsock_public_addrs(m->ms, &g4, &g6);
	fmt_sockaddr(&g4, a, sizeof(a));
	fmt_json_set(o, "public_v4", g4.ss_family ? json_string(a) : json_null());
	fmt_sockaddr(&g6, a, sizeof(a));
	fmt_json_set(o, "public_v6", g6.ss_family ? json_string(a) : json_null());
	struct magicsock_conn_status cs[MS_CONNS_MAX];
	struct relay_client_status rs[MS_CONNS_MAX];
	size_t n = magicsock_conns(m->ms, cs, rs, MS_CONNS_MAX);
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_object();
		if (!r)
			break;
		fmt_json_set(r, "id", fmt_json_u64(cs[i].relay_id));
		fmt_json_set(r, "name", fmt_json_str(cs[i].name));
		fmt_json_set(r, "region", fmt_json_str(cs[i].region));
		fmt_json_set(r, "host", fmt_json_str(cs[i].host));
		fmt_json_set(r, "port", json_integer(cs[i].port));
		fmt_json_set(r, "home", json_boolean(cs[i].home));
		fmt_json_set(r, "state", json_string(relay_client_state_name(rs[i].state)));
		fmt_json_set(r, "detail", fmt_json_str(rs[i].detail));
		fmt_json_set(r, "rtt_ms", rs[i].rtt_us ? json_real(rs[i].rtt_us / 1000.0)
		                                       : json_null());
		fmt_json_set(r, "connected_since", json_integer(rs[i].connected_since));
		fmt_json_set(r, "reconnects", fmt_json_u64(rs[i].reconnects));
		fmt_json_set(r, "tx_packets", fmt_json_u64(rs[i].tx_packets));
		fmt_json_set(r, "rx_packets", fmt_json_u64(rs[i].rx_packets));
		fmt_json_set(r, "tx_bytes", fmt_json_u64(rs[i].tx_bytes));
		fmt_json_set(r, "rx_bytes", fmt_json_u64(rs[i].rx_bytes));
		fmt_json_set(r, "tx_drop_notconn", fmt_json_u64(rs[i].tx_drop_notconn));
		fmt_json_set(r, "tx_drop_queue", fmt_json_u64(rs[i].tx_drop_queue));
		fmt_json_set(r, "rx_drop_bad", fmt_json_u64(rs[i].rx_drop_bad));
		fmt_json_set(r, "tx_drop_ctl", fmt_json_u64(rs[i].tx_drop_ctl));
		fmt_json_set(r, "keepalive_ms", json_integer(rs[i].keepalive_ms));
		conns = fmt_json_append(conns, r);
	}
	fmt_json_set(o, "relays", conns);
	fmt_json_set(o, "portmap", nctl_json_portmap(m));
	fmt_json_set(o, "birthday_probing", json_boolean(!m->birthday_off));
	struct magicsock_stats st;
	magicsock_get_stats(m->ms, &st);
	json_t *d = json_object();
	if (d) {
		fmt_json_set(d, "disco_rx", fmt_json_u64(st.disco_rx));
		fmt_json_set(d, "disco_tx", fmt_json_u64(st.disco_tx));
		fmt_json_set(d, "disco_drop_unknown", fmt_json_u64(st.disco_drop_unknown));
		fmt_json_set(d, "disco_drop_bad", fmt_json_u64(st.disco_drop_bad));
		fmt_json_set(d, "disco_drop_rate", fmt_json_u64(st.disco_drop_rate));
		fmt_json_set(d, "pings_rx", fmt_json_u64(st.pings_rx));
		fmt_json_set(d, "pongs_rx", fmt_json_u64(st.pongs_rx));
		fmt_json_set(d, "pongs_unmatched", fmt_json_u64(st.pongs_unmatched));
		fmt_json_set(d, "call_me_maybe_rx", fmt_json_u64(st.call_me_maybe_rx));
		fmt_json_set(d, "call_me_maybe_tx", fmt_json_u64(st.call_me_maybe_tx));
		fmt_json_set(d, "stun_rx", fmt_json_u64(st.stun_rx));
		fmt_json_set(d, "stun_drop", fmt_json_u64(st.stun_drop));
		fmt_json_set(d, "other_drop", fmt_json_u64(st.other_drop));
		fmt_json_set(d, "relay_rx_unknown", fmt_json_u64(st.relay_rx_unknown));
		fmt_json_set(d, "netchecks", fmt_json_u64(st.netchecks));
		fmt_json_set(d, "home_changes", fmt_json_u64(st.home_changes));
		fmt_json_set(d, "birthday_attempts", fmt_json_u64(st.birthday_attempts));
		fmt_json_set(d, "birthday_wins", fmt_json_u64(st.birthday_wins));
		fmt_json_set(d, "birthday_probes_sent", fmt_json_u64(st.birthday_probes_sent));
		fmt_json_set(d, "birthday_socks_opened", fmt_json_u64(st.birthday_socks_opened));
		fmt_json_set(d, "birthday_refused", fmt_json_u64(st.birthday_refused));
		fmt_json_set(d, "path_changes", fmt_json_u64(m->path_changes));
		fmt_json_set(d, "tcp_kick_rexmit", fmt_json_u64(m->kick_rexmit));
		fmt_json_set(d, "tcp_kick_acked", fmt_json_u64(m->kick_acked));
	}
	fmt_json_set(o, "counters", d);
	return o;
}

/* "self": this node's owner from the map (user null: none or no map) */
static json_t *nctl_json_self(const struct node_ctl *m)
{
	json_t *o = json_object(), *tags = json_array();
	if (!o || !tags) {
		json_decref(o);
		json_decref(tags);
		return NULL;
	}
	char buf[CTL_PEER_TAGS_MAX];
	snprintf(buf, sizeof(buf), "%s", m->np.self_tags);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		tags = fmt_json_append(tags, fmt_json_str(t));
	fmt_json_set(o, "user",
	             m->np.self_user[0] ? fmt_json_str(m->np.self_user) : json_null());
	fmt_json_set(o, "tags", tags);
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
		fmt_json_set(o, "self", nctl_json_self(m));
		fmt_json_set(o, "control", nctl_json_control(m));
		nctl_json_services(m, o);
		fmt_json_set(o, "endpoint_rotations", fmt_json_u64(m->np.rotations));
		fmt_json_set(o, "paths", nctl_json_paths(m));
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
