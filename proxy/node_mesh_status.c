/* Status of a joined node: self and a table of map peers, as text (like
 * `tailscale status`) and JSON; `mesh-proxy ip`. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/wg/device.h"
#include "proxy/api.h"
#include "proxy/expose.h"
#include "proxy/magicdns.h"
#include "proxy/node_mesh_int.h"
#include "proxy/status.h"

static void nm_addrs(const struct ctl_ip *a, size_t n, char *out, size_t cap)
{
	size_t k = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && k < cap; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_ip_format(&a[i], s);
		k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "", s);
	}
}

static void nm_self_addrs(const struct node_mesh *m, char *out, size_t cap)
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

void node_mesh_status_text(const struct node_mesh *m, const struct wg_device *wg,
                           struct api_conn *c)
{
	struct ctl_client_status cs = {0};
	char addrs[160];
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	nm_self_addrs(m, addrs, sizeof(addrs));
	api_conn_printf(c, "mesh   %s  %s  control %s", m->have_self ? m->self.fqdn : "-",
	                addrs, m->client ? ctl_client_state_name(cs.state) : "stopped");
	if (cs.map_version || m->np.version)
		api_conn_printf(c, ", map v%" PRIu64,
		                cs.map_version ? cs.map_version : m->np.version);
	if (cs.state == CTL_CLIENT_BACKOFF || cs.state == CTL_CLIENT_PENDING ||
	    cs.state == CTL_CLIENT_REFUSED)
		api_conn_printf(c, " (%s)", cs.detail);
	api_conn_printf(c, "\n");
	if (m->expose || m->mdns) {
		struct px_stats ps = {0};
		struct mdns_stats ms = {0};
		char desc[128], up[32], down[32];
		if (m->expose)
			px_expose_get_stats(m->expose, &ps);
		if (m->mdns)
			mdns_get_stats(m->mdns, &ms);
		expose_describe(&m->p->expose, desc, sizeof(desc));
		status_format_bytes(ps.bytes_up, up, sizeof(up));
		status_format_bytes(ps.bytes_down, down, sizeof(down));
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
		nm_addrs(e->p.addrs, e->p.n_addrs, addrs, sizeof(addrs));
		if (wg && e->in_wg &&
		    wg_device_peer_info_by_key(wg, e->p.node_key, &pi) == 0) {
			status_format_sockaddr(&pi.endpoint, ep, sizeof(ep));
			status_format_ago(pi.last_handshake_unix, hs, sizeof(hs));
			status_format_bytes(pi.rx_bytes, rx, sizeof(rx));
			status_format_bytes(pi.tx_bytes, tx, sizeof(tx));
		} else if (!e->in_wg && m->dataplane) {
			snprintf(ep, sizeof(ep), "(static peer)");
		}
		api_conn_printf(c, "       %-16s %-36s %-7s %-24s %-10s %-10s %s\n",
		                e->p.name, addrs, e->p.online ? "yes" : "no", ep, hs, rx,
		                tx);
	}
}

static void nm_json_ips(struct api_conn *c, const struct ctl_ip *a, size_t n)
{
	api_conn_printf(c, "[");
	for (size_t i = 0; i < n; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_ip_format(&a[i], s);
		api_conn_printf(c, "%s\"%s\"", i ? "," : "", s);
	}
	api_conn_printf(c, "]");
}

/* The "mesh" member of status json (names are DNS labels/names checked by
 * the message decoder, the detail text may need escaping). */
void node_mesh_status_json(const struct node_mesh *m, const struct wg_device *wg,
                           struct api_conn *c)
{
	struct ctl_client_status cs = {0};
	char v4[INET_ADDRSTRLEN] = "", v6[INET6_ADDRSTRLEN] = "",
	     detail[2 * CTL_TEXT_MAX];
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	size_t k = 0;
	for (const char *s = cs.detail; *s && k + 7 < sizeof(detail); s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			detail[k++] = '\\', detail[k++] = (char)ch;
		else if (ch >= 0x20)
			detail[k++] = (char)ch;
	}
	detail[k] = 0;
	if (m->have_self) {
		inet_ntop(AF_INET, m->self.ipv4, v4, sizeof(v4));
		inet_ntop(AF_INET6, m->self.ipv6, v6, sizeof(v6));
	}
	api_conn_printf(
	    c,
	    "{\"name\":\"%s\",\"fqdn\":\"%s\",\"domain\":\"%s\","
	    "\"node_id\":%" PRIu64 ",\"addresses\":[",
	    m->have_self ? m->self.name : "", m->have_self ? m->self.fqdn : "",
	    m->have_self ? m->self.domain : "", m->have_self ? m->self.node_id : 0);
	if (m->have_self)
		api_conn_printf(c, "\"%s\",\"%s\"", v4, v6);
	api_conn_printf(c,
	                "],\"control\":{\"host\":\"%s\",\"port\":%u,\"state\":\"%s\","
	                "\"detail\":\"%s\",\"map_version\":%" PRIu64
	                ",\"sessions\":%" PRIu64 ",\"reconnects\":%" PRIu64
	                ",\"maps_full\":%" PRIu64 ",\"maps_delta\":%" PRIu64
	                ",\"connected_since\":%" PRId64 ",\"last_map\":%" PRId64 "},",
	                m->p->ctl.host, m->p->ctl.port,
	                m->client ? ctl_client_state_name(cs.state) : "stopped", detail,
	                cs.map_version ? cs.map_version : m->np.version, cs.sessions,
	                cs.reconnects, cs.maps_full, cs.maps_delta, cs.connected_since,
	                cs.last_map);
	struct px_stats ps = {0};
	struct mdns_stats ms = {0};
	char desc[128];
	if (m->expose)
		px_expose_get_stats(m->expose, &ps);
	if (m->mdns)
		mdns_get_stats(m->mdns, &ms);
	expose_describe(&m->p->expose, desc, sizeof(desc));
	api_conn_printf(c,
	                "\"expose\":{\"spec\":\"%s\",\"on\":%s,\"accepted\":%" PRIu64
	                ",\"active\":%" PRIu64 ",\"refused\":%" PRIu64
	                ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64 "},",
	                desc, m->expose ? "true" : "false", ps.accepted, ps.active,
	                ps.err_refused, ps.bytes_up, ps.bytes_down);
	api_conn_printf(c,
	                "\"magicdns\":{\"on\":%s,\"queries\":%" PRIu64
	                ",\"answered\":%" PRIu64 ",\"nxdomain\":%" PRIu64
	                ",\"forwarded\":%" PRIu64 ",\"servfail\":%" PRIu64
	                ",\"formerr\":%" PRIu64 ",\"dropped\":%" PRIu64 "},",
	                m->mdns ? "true" : "false", ms.queries, ms.answered, ms.nxdomain,
	                ms.forwarded, ms.servfail, ms.formerr, ms.dropped);
	api_conn_printf(c, "\"endpoint_rotations\":%" PRIu64 ",\"peers\":[",
	                m->np.rotations);
	for (size_t i = 0; i < m->np.n; i++) {
		const struct np_entry *e = &m->np.e[i];
		struct wg_peer_info pi = {0};
		char ep[80], key[64];
		bool have = wg && e->in_wg &&
		            wg_device_peer_info_by_key(wg, e->p.node_key, &pi) == 0;
		status_format_sockaddr(&pi.endpoint, ep, sizeof(ep));
		status_key_b64(e->p.node_key, key, sizeof(key));
		api_conn_printf(
		    c,
		    "%s{\"id\":%" PRIu64 ",\"name\":\"%s\",\"fqdn\":\"%s%s%s\","
		    "\"public_key\":\"%s\",\"online\":%s,\"last_seen\":%" PRId64
		    ",\"addresses\":",
		    i ? "," : "", e->p.id, e->p.name, e->p.name,
		    m->np.domain[0] ? "." : "", m->np.domain, key,
		    e->p.online ? "true" : "false", e->p.last_seen);
		nm_json_ips(c, e->p.addrs, e->p.n_addrs);
		api_conn_printf(c, ",\"endpoints\":[");
		for (size_t j = 0; j < e->p.n_eps; j++) {
			char s[CTL_ADDRSTR_MAX];
			ctl_endpoint_format(&e->p.eps[j], s);
			api_conn_printf(c, "%s\"%s\"", j ? "," : "", s);
		}
		api_conn_printf(c,
		                "],\"configured\":%s,\"endpoint\":%s%s%s,"
		                "\"last_handshake_unix\":%" PRId64
		                ",\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
		                e->in_wg ? "true" : "false",
		                have && pi.endpoint.ss_family ? "\"" : "",
		                have && pi.endpoint.ss_family ? ep : "null",
		                have && pi.endpoint.ss_family ? "\"" : "",
		                pi.last_handshake_unix, pi.rx_bytes, pi.tx_bytes);
	}
	api_conn_printf(c, "]}");
}

const char *node_mesh_peer_name(const struct node_mesh *m, const uint8_t key[32])
{
	const struct np_entry *e = m ? node_peers_by_key(&m->np, key) : NULL;
	return e && e->in_wg ? e->p.name : NULL;
}

void node_mesh_write_ip(const struct node_mesh *m, struct api_conn *c, int family)
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
