#include "proxy/status.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "proxy/api.h"
#include "proxy/node_mesh.h"
#include "proxy/proxy.h"

void status_key_b64(const uint8_t key[32], char *out, size_t len)
{
	char b[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b, sizeof(b), key, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, len, "%s", b);
}

void status_format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(out, len, "[%s]:%u", a, ntohs(s->sin6_port));
	} else {
		snprintf(out, len, "(none)");
	}
}

void status_format_bytes(uint64_t n, char *out, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%" PRIu64 " B", n);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}

static void format_prefix(const struct cfg_prefix *p, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(p->family, p->addr, a, sizeof(a));
	snprintf(out, len, "%s/%u", a, p->cidr);
}

void status_format_ago(int64_t then, char *out, size_t len)
{
	if (then == 0) {
		snprintf(out, len, "never");
		return;
	}
	int64_t d = (int64_t)time(NULL) - then;
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, len, "%" PRId64 "s ago", d);
	else if (d < 7200)
		snprintf(out, len, "%" PRId64 "m ago", d / 60);
	else
		snprintf(out, len, "%" PRId64 "h ago", d / 3600);
}

/* Finds the configured peer for a device peer, to show its allowed IPs. */
static const struct cfg_peer *cfg_peer_by_key(const struct config *c, const uint8_t *k)
{
	for (size_t i = 0; i < c->n_peers; i++)
		if (memcmp(c->peers[i].public_key, k, 32) == 0)
			return &c->peers[i];
	return NULL;
}

static uint64_t px_errors(const struct px_stats *ps)
{
	return ps->err_auth + ps->err_protocol + ps->err_handshake_timeout +
	       ps->err_client_gone + ps->err_no_route + ps->err_resolve +
	       ps->err_refused + ps->err_unreachable + ps->err_timeout + ps->err_other +
	       ps->err_accept + ps->err_limit + ps->err_idle;
}

typedef void (*frontend_fn)(void *arg, const char *kind, const char *what,
                            const struct px_stats *ps);

/* Calls fn for every front-end with its kind, its address (or tunnel
 * description) and its counters: the one walk both outputs share. */
static void for_each_frontend(const struct status_view *v, frontend_fn fn, void *arg)
{
	char buf[160];
	struct px_stats ps;
	for (size_t i = 0; i < v->n_socks; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		px_socks_local_addr(v->socks[i], &ss, &sl);
		px_socks_get_stats(v->socks[i], &ps);
		status_format_sockaddr(&ss, buf, sizeof(buf));
		fn(arg, "socks5", buf, &ps);
	}
	for (size_t i = 0; i < v->n_http; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		px_http_local_addr(v->http[i], &ss, &sl);
		px_http_get_stats(v->http[i], &ps);
		status_format_sockaddr(&ss, buf, sizeof(buf));
		fn(arg, "http", buf, &ps);
	}
	for (size_t i = 0; i < v->n_tunnels; i++) {
		px_tunnel_describe(v->tunnels[i], buf, sizeof(buf));
		px_tunnel_get_stats(v->tunnels[i], &ps);
		fn(arg, "tunnel", buf, &ps);
	}
	for (size_t i = 0; i < v->n_udp_tunnels; i++) {
		px_udp_tunnel_describe(v->udp_tunnels[i], buf, sizeof(buf));
		px_udp_tunnel_get_stats(v->udp_tunnels[i], &ps);
		fn(arg, "udp", buf, &ps);
	}
	if (v->nc) {
		px_nc_get_stats(v->nc, &ps);
		fn(arg, "nc", "local API", &ps);
	}
}

static void write_frontend_line(void *arg, const char *kind, const char *what,
                                const struct px_stats *ps)
{
	struct api_conn *c = arg;
	char up[32], down[32];
	status_format_bytes(ps->bytes_up, up, sizeof(up));
	status_format_bytes(ps->bytes_down, down, sizeof(down));
	if (strcmp(kind, "udp") == 0) {
		api_conn_printf(c,
		                "%-6s %s  datagrams up %" PRIu64 " (%s) down %" PRIu64
		                " (%s)  dropped %" PRIu64 "\n",
		                kind, what, ps->dgrams_up, up, ps->dgrams_down, down,
		                ps->dgram_drops);
		return;
	}
	api_conn_printf(c,
	                "%-6s %s  active %" PRIu64 "  accepted %" PRIu64
	                "  established %" PRIu64 "  pending %" PRIu64 "  up %s  down %s"
	                "  errors %" PRIu64 "\n",
	                kind, what, ps->active, ps->accepted, ps->established,
	                ps->pending, up, down, px_errors(ps));
	if (ps->dgrams_up || ps->dgrams_down || ps->dgram_drops)
		api_conn_printf(c,
		                "       udp datagrams up %" PRIu64 " down %" PRIu64
		                " dropped %" PRIu64 "\n",
		                ps->dgrams_up, ps->dgrams_down, ps->dgram_drops);
}

void status_write_text(const struct status_view *v, struct api_conn *c)
{
	char key[64], buf[128];
	uint8_t pub[32];
	if (v->mesh)
		node_mesh_status_text(v->mesh, v->wg, c);
	if (!v->wg)
		return; /* joined, waiting for registration */
	crypto_scalarmult_base(pub, v->cfg->private_key);
	status_key_b64(pub, key, sizeof(key));
	api_conn_printf(c, "self   %s  udp/%u  up %lds\n", key, wg_device_port(v->wg),
	                (long)(time(NULL) - v->started));
	api_conn_printf(c, "       addresses");
	for (size_t i = 0; i < v->cfg->n_addresses; i++) {
		format_prefix(&v->cfg->addresses[i], buf, sizeof(buf));
		api_conn_printf(c, " %s", buf);
	}
	api_conn_printf(c, "\n");
	size_t np = wg_device_peer_count(v->wg);
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(v->wg, i, &pi) != 0)
			continue;
		if (node_mesh_peer_name(v->mesh, pi.public_key))
			continue; /* in the mesh table above */
		char ep[80], hs[32], rx[32], tx[32];
		status_key_b64(pi.public_key, key, sizeof(key));
		status_format_sockaddr(&pi.endpoint, ep, sizeof(ep));
		status_format_ago(pi.last_handshake_unix, hs, sizeof(hs));
		status_format_bytes(pi.rx_bytes, rx, sizeof(rx));
		status_format_bytes(pi.tx_bytes, tx, sizeof(tx));
		const struct cfg_peer *cp = cfg_peer_by_key(v->cfg, pi.public_key);
		api_conn_printf(
		    c, "peer   %s%s%s  endpoint %s  handshake %s  rx %s  tx %s\n",
		    cp && cp->name ? cp->name : "", cp && cp->name ? " " : "", key, ep,
		    hs, rx, tx);
		if (cp) {
			api_conn_printf(c, "       allowed ips");
			for (size_t k = 0; k < cp->n_allowed_ips; k++) {
				format_prefix(&cp->allowed_ips[k], buf, sizeof(buf));
				api_conn_printf(c, " %s", buf);
			}
			if (pi.persistent_keepalive)
				api_conn_printf(c, "  keepalive %us",
				                pi.persistent_keepalive);
			api_conn_printf(c, "\n");
		}
	}
	for_each_frontend(v, write_frontend_line, c);
	struct wg_device_stats st;
	wg_device_stats(v->wg, &st);
	uint64_t drops = st.rx_drop_short + st.rx_drop_type + st.rx_drop_mac +
	                 st.rx_drop_decrypt + st.rx_drop_replay + st.rx_drop_allowedips +
	                 st.rx_drop_nokey + st.rx_drop_ratelimit;
	api_conn_printf(c,
	                "wg     rx %" PRIu64 " tx %" PRIu64 " packets, %" PRIu64
	                " rx dropped, %" PRIu64 " tx dropped\n",
	                st.rx_packets, st.tx_packets, drops,
	                st.tx_drop_noroute + st.tx_drop_queue + st.tx_drop_sock);
}

struct json_ctx {
	struct api_conn *c;
	size_t n;
};

static void write_frontend_json(void *arg, const char *kind, const char *what,
                                const struct px_stats *ps)
{
	struct json_ctx *jc = arg;
	struct api_conn *c = jc->c;
	size_t idx = jc->n++;
	/* what is an address or "tcp-client A -> B": no characters to escape
	 * except a quote, which addresses and host names never contain. */
	api_conn_printf(
	    c,
	    "%s{\"kind\":\"%s\",\"listen\":\"%s\",\"accepted\":%" PRIu64
	    ",\"established\":%" PRIu64 ",\"pending\":%" PRIu64 ",\"active\":%" PRIu64
	    ",\"direct\":%" PRIu64 ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64
	    ",\"dgrams_up\":%" PRIu64 ",\"dgrams_down\":%" PRIu64
	    ",\"dgram_drops\":%" PRIu64 ",\"errors\":{\"auth\":%" PRIu64
	    ",\"protocol\":%" PRIu64 ",\"handshake_timeout\":%" PRIu64
	    ",\"client_gone\":%" PRIu64 ",\"no_route\":%" PRIu64 ",\"resolve\":%" PRIu64
	    ",\"refused\":%" PRIu64 ",\"unreachable\":%" PRIu64 ",\"timeout\":%" PRIu64
	    ",\"other\":%" PRIu64 ",\"accept\":%" PRIu64 ",\"limit\":%" PRIu64
	    ",\"idle\":%" PRIu64 "}}",
	    idx ? "," : "", kind, what, ps->accepted, ps->established, ps->pending,
	    ps->active, ps->direct, ps->bytes_up, ps->bytes_down, ps->dgrams_up,
	    ps->dgrams_down, ps->dgram_drops, ps->err_auth, ps->err_protocol,
	    ps->err_handshake_timeout, ps->err_client_gone, ps->err_no_route,
	    ps->err_resolve, ps->err_refused, ps->err_unreachable, ps->err_timeout,
	    ps->err_other, ps->err_accept, ps->err_limit, ps->err_idle);
}

void status_write_json(const struct status_view *v, struct api_conn *c)
{
	char key[64], buf[128];
	uint8_t pub[32];
	api_conn_printf(c, "{");
	if (v->mesh) {
		api_conn_printf(c, "\"mesh\":");
		node_mesh_status_json(v->mesh, v->wg, c);
		if (!v->wg) {
			api_conn_printf(c, "}\n");
			return;
		}
		api_conn_printf(c, ",");
	}
	crypto_scalarmult_base(pub, v->cfg->private_key);
	status_key_b64(pub, key, sizeof(key));
	api_conn_printf(c,
	                "\"self\":{\"public_key\":\"%s\",\"listen_port\":%u,"
	                "\"uptime_s\":%ld,\"addresses\":[",
	                key, wg_device_port(v->wg), (long)(time(NULL) - v->started));
	for (size_t i = 0; i < v->cfg->n_addresses; i++) {
		format_prefix(&v->cfg->addresses[i], buf, sizeof(buf));
		api_conn_printf(c, "%s\"%s\"", i ? "," : "", buf);
	}
	api_conn_printf(c, "]},\"peers\":[");
	size_t np = wg_device_peer_count(v->wg);
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(v->wg, i, &pi) != 0)
			continue;
		char ep[80];
		status_key_b64(pi.public_key, key, sizeof(key));
		status_format_sockaddr(&pi.endpoint, ep, sizeof(ep));
		const struct cfg_peer *cp = cfg_peer_by_key(v->cfg, pi.public_key);
		const char *name =
		    cp ? cp->name : node_mesh_peer_name(v->mesh, pi.public_key);
		/* Names are DNS labels (checked by the config and the map
		 * decoder): nothing to escape. */
		api_conn_printf(c, "%s{\"name\":%s%s%s,", i ? "," : "", name ? "\"" : "",
		                name ? name : "null", name ? "\"" : "");
		api_conn_printf(c,
		                "\"public_key\":\"%s\",\"endpoint\":%s%s%s,"
		                "\"last_handshake_unix\":%" PRId64
		                ",\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64
		                ",\"persistent_keepalive\":%u,"
		                "\"allowed_ips\":[",
		                key, pi.endpoint.ss_family ? "\"" : "",
		                pi.endpoint.ss_family ? ep : "null",
		                pi.endpoint.ss_family ? "\"" : "", pi.last_handshake_unix,
		                pi.rx_bytes, pi.tx_bytes, pi.persistent_keepalive);
		for (size_t k = 0; cp && k < cp->n_allowed_ips; k++) {
			format_prefix(&cp->allowed_ips[k], buf, sizeof(buf));
			api_conn_printf(c, "%s\"%s\"", k ? "," : "", buf);
		}
		api_conn_printf(c, "]}");
	}
	struct wg_device_stats st;
	wg_device_stats(v->wg, &st);
	api_conn_printf(c,
	                "],\"wireguard\":{\"rx_packets\":%" PRIu64
	                ",\"tx_packets\":%" PRIu64 ",\"rx_drop_short\":%" PRIu64
	                ",\"rx_drop_type\":%" PRIu64 ",\"rx_drop_mac\":%" PRIu64
	                ",\"rx_drop_decrypt\":%" PRIu64 ",\"rx_drop_replay\":%" PRIu64
	                ",\"rx_drop_allowedips\":%" PRIu64 ",\"rx_drop_nokey\":%" PRIu64
	                ",\"rx_drop_ratelimit\":%" PRIu64 ",\"tx_drop_noroute\":%" PRIu64
	                ",\"tx_drop_queue\":%" PRIu64 ",\"tx_drop_sock\":%" PRIu64
	                ",\"cookies_sent\":%" PRIu64 ",\"cookies_received\":%" PRIu64 "}",
	                st.rx_packets, st.tx_packets, st.rx_drop_short, st.rx_drop_type,
	                st.rx_drop_mac, st.rx_drop_decrypt, st.rx_drop_replay,
	                st.rx_drop_allowedips, st.rx_drop_nokey, st.rx_drop_ratelimit,
	                st.tx_drop_noroute, st.tx_drop_queue, st.tx_drop_sock,
	                st.cookies_sent, st.cookies_received);
	api_conn_printf(c, ",\"frontends\":[");
	struct json_ctx jc = {c, 0};
	for_each_frontend(v, write_frontend_json, &jc);
	api_conn_printf(c, "]");
	struct ns_stats ns;
	ns_get_stats(&ns);
	api_conn_printf(c,
	                ",\"netstack\":{\"tcp_active\":%" PRIu64 ",\"tcp_total\":%" PRIu64
	                ",\"tcp_refused\":%" PRIu64 ",\"tcp_reset\":%" PRIu64
	                ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
	                ",\"udp_rx\":%" PRIu64 ",\"udp_tx\":%" PRIu64
	                ",\"udp_drop\":%" PRIu64 ",\"idle_reset\":%" PRIu64
	                ",\"syn_drop\":%" PRIu64 "}}\n",
	                ns.tcp_active, ns.tcp_total, ns.tcp_refused, ns.tcp_reset,
	                ns.splice_bytes_in, ns.splice_bytes_out, ns.udp_rx, ns.udp_tx,
	                ns.udp_drop, ns.idle_reset, ns.tcp_syn_drop);
}

static void log_frontend(void *arg, const char *kind, const char *what,
                         const struct px_stats *ps)
{
	(void)arg;
	if (strcmp(kind, "udp") == 0) {
		log_info("%s %s: datagrams up %" PRIu64 " down %" PRIu64
		         ", bytes up %" PRIu64 " down %" PRIu64 ", dropped %" PRIu64,
		         kind, what, ps->dgrams_up, ps->dgrams_down, ps->bytes_up,
		         ps->bytes_down, ps->dgram_drops);
		return;
	}
	log_info("%s %s: accepted %" PRIu64 ", established %" PRIu64 " (direct %" PRIu64
	         "), bytes up %" PRIu64 " down %" PRIu64 "; errors: auth %" PRIu64
	         " protocol %" PRIu64 " handshake-timeout %" PRIu64
	         " client-gone %" PRIu64 " no-route %" PRIu64 " resolve %" PRIu64
	         " refused %" PRIu64 " unreachable %" PRIu64 " timeout %" PRIu64
	         " limit %" PRIu64 " idle %" PRIu64 " accept %" PRIu64 " other %" PRIu64,
	         kind, what, ps->accepted, ps->established, ps->direct, ps->bytes_up,
	         ps->bytes_down, ps->err_auth, ps->err_protocol,
	         ps->err_handshake_timeout, ps->err_client_gone, ps->err_no_route,
	         ps->err_resolve, ps->err_refused, ps->err_unreachable, ps->err_timeout,
	         ps->err_limit, ps->err_idle, ps->err_accept, ps->err_other);
	if (ps->dgrams_up || ps->dgrams_down || ps->dgram_drops)
		log_info("%s %s: udp datagrams up %" PRIu64 " down %" PRIu64
		         ", dropped %" PRIu64,
		         kind, what, ps->dgrams_up, ps->dgrams_down, ps->dgram_drops);
}

void status_log_frontends(const struct status_view *v)
{
	for_each_frontend(v, log_frontend, NULL);
}
