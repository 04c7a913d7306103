#include "node/status.h"
#include "node/format.h"

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
#include "node/acl.h"
#include "node/api_server.h"
#include "node/checkalive.h"
#include "node/control.h"
#include "proxy/proxy.h"

static void format_prefix(const struct cfg_prefix *p, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(p->family, p->addr, a, sizeof(a));
	snprintf(out, len, "%s/%u", a, p->cidr);
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
	       ps->err_accept + ps->err_limit + ps->err_idle + ps->err_denied +
	       ps->err_busy + ps->err_policy;
}

/* The access policy: none (everything allowed) or active, with the
 * inbound drops by reason and the outbound connections failed fast. */
void status_write_policy_text(const struct node_acl *a, struct api_conn *c)
{
	struct acl_stats st;
	node_acl_stats(a, &st);
	if (!st.active) {
		api_conn_printf(c, "policy none (mesh-control has no policy: every peer "
		                   "may reach every exposed port)\n");
		return;
	}
	api_conn_printf(c,
	                "policy %s  inbound filter tcp %zu udp %zu icmp %zu source "
	                "block(s)  reach %zu peer(s)  flows %zu\n",
	                st.failed_closed ? "active, DENYING ALL (the map's filter "
	                                   "could not be used; see the log)"
	                                 : "active",
	                st.n_blocks[CTL_FILTER_TCP], st.n_blocks[CTL_FILTER_UDP],
	                st.n_blocks[CTL_FILTER_ICMP], st.n_reach, st.flows);
	api_conn_printf(c, "       dropped");
	for (int r = 0; r < ACL_DROP_N; r++)
		api_conn_printf(c, " %s %" PRIu64, acl_drop_name(r), st.drops[r]);
	api_conn_printf(c, "  fast-fail %" PRIu64 "  revoked %" PRIu64 "\n", st.fastfail,
	                st.revoked);
}

json_t *status_policy_json(const struct node_acl *a)
{
	struct acl_stats st;
	node_acl_stats(a, &st);
	json_t *o = json_object(), *d = json_object(), *b = json_object();
	if (!o || !d || !b) {
		json_decref(o);
		json_decref(d);
		json_decref(b);
		return NULL;
	}
	fmt_json_set(o, "active", json_boolean(st.active));
	fmt_json_set(o, "failed_closed", json_boolean(st.failed_closed));
	fmt_json_set(b, "tcp", fmt_json_u64(st.n_blocks[CTL_FILTER_TCP]));
	fmt_json_set(b, "udp", fmt_json_u64(st.n_blocks[CTL_FILTER_UDP]));
	fmt_json_set(b, "icmp", fmt_json_u64(st.n_blocks[CTL_FILTER_ICMP]));
	fmt_json_set(o, "filter_blocks", b);
	fmt_json_set(o, "reach_peers", fmt_json_u64(st.n_reach));
	for (int r = 0; r < ACL_DROP_N; r++)
		fmt_json_set(d, acl_drop_name(r), fmt_json_u64(st.drops[r]));
	fmt_json_set(o, "dropped", d);
	fmt_json_set(o, "fast_fail", fmt_json_u64(st.fastfail));
	fmt_json_set(o, "revoked", fmt_json_u64(st.revoked));
	fmt_json_set(o, "flows", fmt_json_u64(st.flows));
	fmt_json_set(o, "flows_evicted", fmt_json_u64(st.flows_evicted));
	return o;
}

/* The one walk of the front-ends every output shares (status.h). */
void status_for_each_frontend(const struct status_view *v, status_frontend_fn fn,
                              void *arg)
{
	char buf[160];
	struct px_stats ps;
	for (size_t i = 0; i < v->n_socks; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		px_socks_local_addr(v->socks[i], &ss, &sl);
		px_socks_get_stats(v->socks[i], &ps);
		fmt_sockaddr(&ss, buf, sizeof(buf));
		fn(arg, "socks5", buf, &ps);
	}
	for (size_t i = 0; i < v->n_http; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		px_http_local_addr(v->http[i], &ss, &sl);
		px_http_get_stats(v->http[i], &ps);
		fmt_sockaddr(&ss, buf, sizeof(buf));
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
	fmt_bytes(ps->bytes_up, up, sizeof(up));
	fmt_bytes(ps->bytes_down, down, sizeof(down));
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

/* The memory budget and what it, the per-peer cap and the half-open shares
 * refused. */
static void write_memory_line(struct api_conn *c)
{
	struct ns_stats ns;
	ns_get_stats(&ns);
	api_conn_printf(c,
	                "memory %" PRIu64 " of %" PRIu64 " KiB (peak %" PRIu64
	                "); refused: %" PRIu64 " over budget, %" PRIu64
	                " over the per-peer cap, %" PRIu64 " proxy clients; %" PRIu64
	                " SYNs dropped (%" PRIu64 " over a peer's share)\n",
	                ns.mem_used / 1024, ns.mem_limit / 1024, ns.mem_peak / 1024,
	                ns.tcp_refused_mem, ns.tcp_refused_peer, ns.front_refused_mem,
	                ns.tcp_syn_drop, ns.syn_drop_src);
}

void status_write_text(const struct status_view *v, struct api_conn *c)
{
	char key[64], buf[128];
	uint8_t pub[32];
	if (v->ctl) {
		node_ctl_status_text(v->ctl, v->wg, c);
		status_write_policy_text(node_ctl_acl(v->ctl), c);
	}
	if (!v->wg)
		return; /* joined, waiting for registration */
	crypto_scalarmult_base(pub, v->cfg->private_key);
	fmt_key_b64(pub, key, sizeof(key));
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
		fmt_key_b64(pi.public_key, key, sizeof(key));
		fmt_sockaddr(&pi.endpoint, ep, sizeof(ep));
		fmt_ago(pi.last_handshake_unix, hs, sizeof(hs));
		fmt_bytes(pi.rx_bytes, rx, sizeof(rx));
		fmt_bytes(pi.tx_bytes, tx, sizeof(tx));
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
	status_for_each_frontend(v, write_frontend_line, c);
	checkalive_write_text(v->checkalive, c);
	struct wg_device_stats st;
	wg_device_stats(v->wg, &st);
	uint64_t drops = st.rx_drop_short + st.rx_drop_type + st.rx_drop_mac +
	                 st.rx_drop_decrypt + st.rx_drop_replay + st.rx_drop_allowedips +
	                 st.rx_drop_nokey + st.rx_drop_ratelimit + st.rx_drop_relay_key;
	api_conn_printf(c,
	                "wg     rx %" PRIu64 " tx %" PRIu64 " packets, %" PRIu64
	                " rx dropped, %" PRIu64 " tx dropped\n",
	                st.rx_packets, st.tx_packets, drops,
	                st.tx_drop_noroute + st.tx_drop_queue + st.tx_drop_sock +
	                    st.tx_drop_relay);
	if (st.rx_relayed || st.tx_drop_relay)
		api_conn_printf(c,
		                "wg     %" PRIu64 " datagrams came through a relay, %" PRIu64
		                " sends the relay refused\n",
		                st.rx_relayed, st.tx_drop_relay);
	if (st.tx_gso_refused)
		api_conn_printf(c,
		                "wg     UDP GSO refused %" PRIu64
		                " times (that destination gets plain sends for 5 min)\n",
		                st.tx_gso_refused);
	write_memory_line(c);
}

/* ---- JSON: built with jansson, so no value can break the document ---- */

static void write_frontend_json(void *arg, const char *kind, const char *what,
                                const struct px_stats *ps)
{
	struct fmt_jw *w = arg;
	json_t *f = json_object(), *e = json_object();
	if (!f || !e) {
		json_decref(f);
		json_decref(e);
		fmt_jw_item(w, NULL);
		return;
	}
	fmt_json_set(f, "kind", fmt_json_str(kind));
	fmt_json_set(f, "listen", fmt_json_str(what));
	fmt_json_set(f, "accepted", fmt_json_u64(ps->accepted));
	fmt_json_set(f, "established", fmt_json_u64(ps->established));
	fmt_json_set(f, "pending", fmt_json_u64(ps->pending));
	fmt_json_set(f, "active", fmt_json_u64(ps->active));
	fmt_json_set(f, "direct", fmt_json_u64(ps->direct));
	fmt_json_set(f, "bytes_up", fmt_json_u64(ps->bytes_up));
	fmt_json_set(f, "bytes_down", fmt_json_u64(ps->bytes_down));
	fmt_json_set(f, "dgrams_up", fmt_json_u64(ps->dgrams_up));
	fmt_json_set(f, "dgrams_down", fmt_json_u64(ps->dgrams_down));
	fmt_json_set(f, "dgram_drops", fmt_json_u64(ps->dgram_drops));
	fmt_json_set(e, "auth", fmt_json_u64(ps->err_auth));
	fmt_json_set(e, "protocol", fmt_json_u64(ps->err_protocol));
	fmt_json_set(e, "handshake_timeout", fmt_json_u64(ps->err_handshake_timeout));
	fmt_json_set(e, "client_gone", fmt_json_u64(ps->err_client_gone));
	fmt_json_set(e, "no_route", fmt_json_u64(ps->err_no_route));
	fmt_json_set(e, "resolve", fmt_json_u64(ps->err_resolve));
	fmt_json_set(e, "refused", fmt_json_u64(ps->err_refused));
	fmt_json_set(e, "unreachable", fmt_json_u64(ps->err_unreachable));
	fmt_json_set(e, "timeout", fmt_json_u64(ps->err_timeout));
	fmt_json_set(e, "other", fmt_json_u64(ps->err_other));
	fmt_json_set(e, "accept", fmt_json_u64(ps->err_accept));
	fmt_json_set(e, "limit", fmt_json_u64(ps->err_limit));
	fmt_json_set(e, "idle", fmt_json_u64(ps->err_idle));
	fmt_json_set(e, "denied", fmt_json_u64(ps->err_denied));
	fmt_json_set(e, "busy", fmt_json_u64(ps->err_busy));
	fmt_json_set(e, "policy", fmt_json_u64(ps->err_policy));
	fmt_json_set(f, "errors", e);
	fmt_jw_item(w, f);
}

static json_t *json_prefixes(const struct cfg_prefix *p, size_t n)
{
	json_t *a = json_array();
	char buf[INET6_ADDRSTRLEN + 8];
	for (size_t i = 0; a && i < n; i++) {
		format_prefix(&p[i], buf, sizeof(buf));
		a = fmt_json_append(a, json_string(buf));
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
	fmt_key_b64(pub, key, sizeof(key));
	fmt_json_set(o, "public_key", json_string(key));
	fmt_json_set(o, "listen_port", json_integer(wg_device_port(v->wg)));
	fmt_json_set(o, "uptime_s", json_integer((json_int_t)(time(NULL) - v->started)));
	fmt_json_set(o, "addresses",
	             json_prefixes(v->cfg->addresses, v->cfg->n_addresses));
	return o;
}

static json_t *json_peer(const struct status_view *v, const struct wg_peer_info *pi)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	char ep[80], key[64];
	fmt_key_b64(pi->public_key, key, sizeof(key));
	fmt_sockaddr(&pi->endpoint, ep, sizeof(ep));
	const struct cfg_peer *cp = cfg_peer_by_key(v->cfg, pi->public_key);
	const char *name = cp ? cp->name : node_ctl_peer_name(v->ctl, pi->public_key);
	fmt_json_set(o, "name", name ? fmt_json_str(name) : json_null());
	fmt_json_set(o, "public_key", json_string(key));
	fmt_json_set(o, "endpoint",
	             pi->endpoint.ss_family ? json_string(ep) : json_null());
	fmt_json_set(o, "last_handshake_unix", json_integer(pi->last_handshake_unix));
	fmt_json_set(o, "rx_bytes", fmt_json_u64(pi->rx_bytes));
	fmt_json_set(o, "tx_bytes", fmt_json_u64(pi->tx_bytes));
	fmt_json_set(o, "persistent_keepalive", json_integer(pi->persistent_keepalive));
	fmt_json_set(o, "allowed_ips",
	             cp ? json_prefixes(cp->allowed_ips, cp->n_allowed_ips)
	                : json_array());
	return o;
}

static json_t *json_wireguard(const struct wg_device *wg)
{
	struct wg_device_stats st;
	json_t *o = json_object();
	if (!o)
		return NULL;
	wg_device_stats(wg, &st);
	fmt_json_set(o, "rx_packets", fmt_json_u64(st.rx_packets));
	fmt_json_set(o, "tx_packets", fmt_json_u64(st.tx_packets));
	fmt_json_set(o, "rx_drop_short", fmt_json_u64(st.rx_drop_short));
	fmt_json_set(o, "rx_drop_type", fmt_json_u64(st.rx_drop_type));
	fmt_json_set(o, "rx_drop_mac", fmt_json_u64(st.rx_drop_mac));
	fmt_json_set(o, "rx_drop_decrypt", fmt_json_u64(st.rx_drop_decrypt));
	fmt_json_set(o, "rx_drop_replay", fmt_json_u64(st.rx_drop_replay));
	fmt_json_set(o, "rx_drop_allowedips", fmt_json_u64(st.rx_drop_allowedips));
	fmt_json_set(o, "rx_drop_nokey", fmt_json_u64(st.rx_drop_nokey));
	fmt_json_set(o, "rx_drop_ratelimit", fmt_json_u64(st.rx_drop_ratelimit));
	fmt_json_set(o, "tx_drop_noroute", fmt_json_u64(st.tx_drop_noroute));
	fmt_json_set(o, "tx_drop_queue", fmt_json_u64(st.tx_drop_queue));
	fmt_json_set(o, "tx_drop_sock", fmt_json_u64(st.tx_drop_sock));
	fmt_json_set(o, "cookies_sent", fmt_json_u64(st.cookies_sent));
	fmt_json_set(o, "cookies_received", fmt_json_u64(st.cookies_received));
	fmt_json_set(o, "rx_gro_buffers", fmt_json_u64(st.rx_gro_buffers));
	fmt_json_set(o, "tx_gso_refused", fmt_json_u64(st.tx_gso_refused));
	fmt_json_set(o, "tx_src_refused", fmt_json_u64(st.tx_src_refused));
	fmt_json_set(o, "rx_relayed", fmt_json_u64(st.rx_relayed));
	fmt_json_set(o, "rx_drop_relay_key", fmt_json_u64(st.rx_drop_relay_key));
	fmt_json_set(o, "tx_drop_relay", fmt_json_u64(st.tx_drop_relay));
	fmt_json_set(o, "rx_other", fmt_json_u64(st.rx_other));
	return o;
}

static json_t *json_netstack(void)
{
	struct ns_stats ns;
	json_t *o = json_object();
	if (!o)
		return NULL;
	ns_get_stats(&ns);
	fmt_json_set(o, "tcp_active", fmt_json_u64(ns.tcp_active));
	fmt_json_set(o, "tcp_total", fmt_json_u64(ns.tcp_total));
	fmt_json_set(o, "tcp_refused", fmt_json_u64(ns.tcp_refused));
	fmt_json_set(o, "tcp_reset", fmt_json_u64(ns.tcp_reset));
	fmt_json_set(o, "bytes_in", fmt_json_u64(ns.splice_bytes_in));
	fmt_json_set(o, "bytes_out", fmt_json_u64(ns.splice_bytes_out));
	fmt_json_set(o, "udp_rx", fmt_json_u64(ns.udp_rx));
	fmt_json_set(o, "udp_tx", fmt_json_u64(ns.udp_tx));
	fmt_json_set(o, "udp_drop", fmt_json_u64(ns.udp_drop));
	fmt_json_set(o, "idle_reset", fmt_json_u64(ns.idle_reset));
	fmt_json_set(o, "syn_drop", fmt_json_u64(ns.tcp_syn_drop));
	fmt_json_set(o, "syn_drop_peer_share", fmt_json_u64(ns.syn_drop_src));
	fmt_json_set(o, "mem_used", fmt_json_u64(ns.mem_used));
	fmt_json_set(o, "mem_peak", fmt_json_u64(ns.mem_peak));
	fmt_json_set(o, "mem_limit", fmt_json_u64(ns.mem_limit));
	fmt_json_set(o, "refused_mem", fmt_json_u64(ns.tcp_refused_mem));
	fmt_json_set(o, "refused_peer_cap", fmt_json_u64(ns.tcp_refused_peer));
	fmt_json_set(o, "refused_proxy_mem", fmt_json_u64(ns.front_refused_mem));
	fmt_json_set(o, "throttled_rx", fmt_json_u64(ns.mem_throttle_rx));
	fmt_json_set(o, "throttled_tx", fmt_json_u64(ns.mem_throttle_tx));
	fmt_json_set(o, "orphans_reset", fmt_json_u64(ns.orphan_reset));
	return o;
}

void status_json_write(const struct status_view *v, struct fmt_jw *w)
{
	fmt_jw_raw(w, "{");
	if (v->ctl) {
		fmt_jw_raw(w, "\"mesh\":");
		node_ctl_status_json_write(v->ctl, v->wg, w);
		fmt_jw_raw(w, ",\"policy\":");
		fmt_jw_value(w, status_policy_json(node_ctl_acl(v->ctl)));
		if (!v->wg) /* joined, waiting for registration */
			goto out;
		fmt_jw_raw(w, ",");
	}
	fmt_jw_raw(w, "\"self\":");
	fmt_jw_value(w, json_self(v));
	fmt_jw_raw(w, ",\"peers\":[");
	size_t np = wg_device_peer_count(v->wg);
	w->n_items = 0;
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		if (wg_device_peer_info(v->wg, i, &pi) == 0)
			fmt_jw_item(w, json_peer(v, &pi));
	}
	fmt_jw_raw(w, "],\"wireguard\":");
	fmt_jw_value(w, json_wireguard(v->wg));
	fmt_jw_raw(w, ",\"frontends\":[");
	w->n_items = 0;
	status_for_each_frontend(v, write_frontend_json, w);
	fmt_jw_raw(w, "],\"netstack\":");
	fmt_jw_value(w, json_netstack());
	if (v->checkalive) {
		fmt_jw_raw(w, ",\"check_alive\":");
		fmt_jw_value(w, checkalive_json(v->checkalive));
	}
out:
	/* Last, so that it is known: some value was lost (out of memory). */
	if (w->failed)
		fmt_jw_raw(w, ",\"incomplete\":true");
	fmt_jw_raw(w, "}\n");
}

static int api_conn_jw_write(void *ctx, const char *p, size_t n)
{
	return api_conn_write(ctx, p, n);
}

void status_write_json(const struct status_view *v, struct api_conn *c)
{
	struct fmt_jw w = {.write = api_conn_jw_write, .ctx = c};
	status_json_write(v, &w);
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
	log_info(
	    "%s %s: accepted %" PRIu64 ", established %" PRIu64 " (direct %" PRIu64
	    "), bytes up %" PRIu64 " down %" PRIu64 "; errors: auth %" PRIu64
	    " protocol %" PRIu64 " handshake-timeout %" PRIu64 " client-gone %" PRIu64
	    " no-route %" PRIu64 " resolve %" PRIu64 " refused %" PRIu64
	    " unreachable %" PRIu64 " timeout %" PRIu64 " limit %" PRIu64 " idle %" PRIu64
	    " denied %" PRIu64 " policy %" PRIu64 " accept %" PRIu64 " other %" PRIu64,
	    kind, what, ps->accepted, ps->established, ps->direct, ps->bytes_up,
	    ps->bytes_down, ps->err_auth, ps->err_protocol, ps->err_handshake_timeout,
	    ps->err_client_gone, ps->err_no_route, ps->err_resolve, ps->err_refused,
	    ps->err_unreachable, ps->err_timeout, ps->err_limit, ps->err_idle,
	    ps->err_denied, ps->err_policy, ps->err_accept, ps->err_other);
	if (ps->dgrams_up || ps->dgrams_down || ps->dgram_drops)
		log_info("%s %s: udp datagrams up %" PRIu64 " down %" PRIu64
		         ", dropped %" PRIu64,
		         kind, what, ps->dgrams_up, ps->dgrams_down, ps->dgram_drops);
}

void status_log_frontends(const struct status_view *v)
{
	status_for_each_frontend(v, log_frontend, NULL);
}
