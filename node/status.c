#include "node/status.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "node/api_server.h"
#include "node/control.h"
#include "proxy/proxy.h"

void status_key_b64(const uint8_t key[32], char *out, size_t len)
{
	char b[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b, sizeof(b), key, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, len, "%s", b);
}

void status_format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		sockaddr_format(ss, out, len);
	else
		snprintf(out, len, "(none)");
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
	if (v->ctl)
		node_ctl_status_text(v->ctl, v->wg, c);
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
		if (node_ctl_peer_name(v->ctl, pi.public_key))
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

/* ---- JSON: built with jansson, so no value can break the document ---- */

json_t *status_json_str(const char *s)
{
	if (!s)
		return json_string("");
	json_t *j = json_string(s);
	if (j)
		return j;
	/* Not UTF-8 (jansson refuses it): every byte >= 0x80 becomes '?'. */
	size_t n = strlen(s);
	char *t = malloc(n + 1);
	if (!t)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		t[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	j = json_string(t);
	free(t);
	return j;
}

json_t *status_json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* Sets o[key] = v, taking v. A value that could not be allocated (NULL)
 * leaves the member out and marks the document "incomplete": true, rather
 * than losing the whole answer. */
static void jset(json_t *o, const char *key, json_t *v)
{
	if (json_object_set_new(o, key, v) != 0)
		json_object_set_new(o, "incomplete", json_true());
}

static void jappend(json_t *a, json_t *v)
{
	json_array_append_new(a, v);
}

static void write_frontend_json(void *arg, const char *kind, const char *what,
                                const struct px_stats *ps)
{
	json_t *arr = arg, *f = json_object(), *e = json_object();
	if (!f || !e) {
		json_decref(f);
		json_decref(e);
		return;
	}
	jset(f, "kind", status_json_str(kind));
	jset(f, "listen", status_json_str(what));
	jset(f, "accepted", status_json_u64(ps->accepted));
	jset(f, "established", status_json_u64(ps->established));
	jset(f, "pending", status_json_u64(ps->pending));
	jset(f, "active", status_json_u64(ps->active));
	jset(f, "direct", status_json_u64(ps->direct));
	jset(f, "bytes_up", status_json_u64(ps->bytes_up));
	jset(f, "bytes_down", status_json_u64(ps->bytes_down));
	jset(f, "dgrams_up", status_json_u64(ps->dgrams_up));
	jset(f, "dgrams_down", status_json_u64(ps->dgrams_down));
	jset(f, "dgram_drops", status_json_u64(ps->dgram_drops));
	jset(e, "auth", status_json_u64(ps->err_auth));
	jset(e, "protocol", status_json_u64(ps->err_protocol));
	jset(e, "handshake_timeout", status_json_u64(ps->err_handshake_timeout));
	jset(e, "client_gone", status_json_u64(ps->err_client_gone));
	jset(e, "no_route", status_json_u64(ps->err_no_route));
	jset(e, "resolve", status_json_u64(ps->err_resolve));
	jset(e, "refused", status_json_u64(ps->err_refused));
	jset(e, "unreachable", status_json_u64(ps->err_unreachable));
	jset(e, "timeout", status_json_u64(ps->err_timeout));
	jset(e, "other", status_json_u64(ps->err_other));
	jset(e, "accept", status_json_u64(ps->err_accept));
	jset(e, "limit", status_json_u64(ps->err_limit));
	jset(e, "idle", status_json_u64(ps->err_idle));
	jset(f, "errors", e);
	jappend(arr, f);
}

static json_t *json_prefixes(const struct cfg_prefix *p, size_t n)
{
	json_t *a = json_array();
	char buf[INET6_ADDRSTRLEN + 8];
	for (size_t i = 0; a && i < n; i++) {
		format_prefix(&p[i], buf, sizeof(buf));
		jappend(a, json_string(buf));
	}
	return a;
}

static json_t *json_self(const struct status_view *v)
{
	char key[64];
	uint8_t pub[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	crypto_scalarmult_base(pub, v->cfg->private_key);
	status_key_b64(pub, key, sizeof(key));
	jset(o, "public_key", json_string(key));
	jset(o, "listen_port", json_integer(wg_device_port(v->wg)));
	jset(o, "uptime_s", json_integer((json_int_t)(time(NULL) - v->started)));
	jset(o, "addresses", json_prefixes(v->cfg->addresses, v->cfg->n_addresses));
	return o;
}

static json_t *json_peers(const struct status_view *v)
{
	json_t *arr = json_array();
	size_t np = wg_device_peer_count(v->wg);
	for (size_t i = 0; arr && i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(v->wg, i, &pi) != 0)
			continue;
		json_t *o = json_object();
		if (!o)
			break;
		char ep[80], key[64];
		status_key_b64(pi.public_key, key, sizeof(key));
		status_format_sockaddr(&pi.endpoint, ep, sizeof(ep));
		const struct cfg_peer *cp = cfg_peer_by_key(v->cfg, pi.public_key);
		const char *name =
		    cp ? cp->name : node_ctl_peer_name(v->ctl, pi.public_key);
		jset(o, "name", name ? status_json_str(name) : json_null());
		jset(o, "public_key", json_string(key));
		jset(o, "endpoint",
		     pi.endpoint.ss_family ? json_string(ep) : json_null());
		jset(o, "last_handshake_unix", json_integer(pi.last_handshake_unix));
		jset(o, "rx_bytes", status_json_u64(pi.rx_bytes));
		jset(o, "tx_bytes", status_json_u64(pi.tx_bytes));
		jset(o, "persistent_keepalive", json_integer(pi.persistent_keepalive));
		jset(o, "allowed_ips",
		     cp ? json_prefixes(cp->allowed_ips, cp->n_allowed_ips)
		        : json_array());
		jappend(arr, o);
	}
	return arr;
}

static json_t *json_wireguard(const struct wg_device *wg)
{
	struct wg_device_stats st;
	json_t *o = json_object();
	if (!o)
		return NULL;
	wg_device_stats(wg, &st);
	jset(o, "rx_packets", status_json_u64(st.rx_packets));
	jset(o, "tx_packets", status_json_u64(st.tx_packets));
	jset(o, "rx_drop_short", status_json_u64(st.rx_drop_short));
	jset(o, "rx_drop_type", status_json_u64(st.rx_drop_type));
	jset(o, "rx_drop_mac", status_json_u64(st.rx_drop_mac));
	jset(o, "rx_drop_decrypt", status_json_u64(st.rx_drop_decrypt));
	jset(o, "rx_drop_replay", status_json_u64(st.rx_drop_replay));
	jset(o, "rx_drop_allowedips", status_json_u64(st.rx_drop_allowedips));
	jset(o, "rx_drop_nokey", status_json_u64(st.rx_drop_nokey));
	jset(o, "rx_drop_ratelimit", status_json_u64(st.rx_drop_ratelimit));
	jset(o, "tx_drop_noroute", status_json_u64(st.tx_drop_noroute));
	jset(o, "tx_drop_queue", status_json_u64(st.tx_drop_queue));
	jset(o, "tx_drop_sock", status_json_u64(st.tx_drop_sock));
	jset(o, "cookies_sent", status_json_u64(st.cookies_sent));
	jset(o, "cookies_received", status_json_u64(st.cookies_received));
	return o;
}

static json_t *json_netstack(void)
{
	struct ns_stats ns;
	json_t *o = json_object();
	if (!o)
		return NULL;
	ns_get_stats(&ns);
	jset(o, "tcp_active", status_json_u64(ns.tcp_active));
	jset(o, "tcp_total", status_json_u64(ns.tcp_total));
	jset(o, "tcp_refused", status_json_u64(ns.tcp_refused));
	jset(o, "tcp_reset", status_json_u64(ns.tcp_reset));
	jset(o, "bytes_in", status_json_u64(ns.splice_bytes_in));
	jset(o, "bytes_out", status_json_u64(ns.splice_bytes_out));
	jset(o, "udp_rx", status_json_u64(ns.udp_rx));
	jset(o, "udp_tx", status_json_u64(ns.udp_tx));
	jset(o, "udp_drop", status_json_u64(ns.udp_drop));
	jset(o, "idle_reset", status_json_u64(ns.idle_reset));
	jset(o, "syn_drop", status_json_u64(ns.tcp_syn_drop));
	return o;
}

json_t *status_json(const struct status_view *v)
{
	json_t *root = json_object();
	if (!root)
		return NULL;
	if (v->ctl) {
		jset(root, "mesh", node_ctl_status_json(v->ctl, v->wg));
		if (!v->wg)
			return root; /* joined, waiting for registration */
	}
	jset(root, "self", json_self(v));
	jset(root, "peers", json_peers(v));
	jset(root, "wireguard", json_wireguard(v->wg));
	json_t *fronts = json_array();
	if (fronts)
		for_each_frontend(v, write_frontend_json, fronts);
	jset(root, "frontends", fronts);
	jset(root, "netstack", json_netstack());
	return root;
}

void status_write_json(const struct status_view *v, struct api_conn *c)
{
	json_t *j = status_json(v);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		api_conn_printf(c, "{\"error\":\"out of memory\"}\n");
		return;
	}
	api_conn_printf(c, "%s\n", s);
	free(s);
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
