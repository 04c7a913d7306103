/* The public face of core/wg: device and peer set-up, the send entry point,
 * introspection. The protocol lives in noise.c, cookie.c, send.c, receive.c
 * and timers.c. */
#include "core/wg/device.h"

#include "core/wg/allowedips.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "core/wg/ratelimiter.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS  1000000ULL
#define NS_PER_SEC 1000000000ULL

struct wg_device *wg_device_new(struct event_base *base,
                                const uint8_t private_key[WG_KEY_LEN])
{
	struct wg_device *d;

	if (!base || sodium_init() < 0)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->base = base;
	d->fd4 = d->fd6 = -1;
	d->force_under_load = -1;
	if (wg_noise_identity_init(&d->id, private_key) != 0) {
		free(d);
		return NULL;
	}
	wg_cookie_checker_init(&d->cookie_checker, d->id.public_key);
	d->ratelimiter = wg_ratelimiter_new();
	d->aips = wg_allowedips_new();
	d->index = wg_index_table_new();
	d->pubkeys = wg_pubkey_table_new();
	d->tx_buf = malloc(WG_MSG_DATA_LEN(WG_MAX_PLAINTEXT));
	d->rx_plain = malloc(WG_MAX_PLAINTEXT);
	if (!d->ratelimiter || !d->aips || !d->index || !d->pubkeys || !d->tx_buf ||
	    !d->rx_plain) {
		wg_device_free(d);
		return NULL;
	}
	return d;
}

void wg_device_free(struct wg_device *d)
{
	if (!d)
		return;
	wg_socket_close(d);
	for (size_t i = 0; i < d->n_peers; i++)
		wg_peer_free(d->peers[i]);
	free(d->peers);
	wg_pubkey_table_free(d->pubkeys);
	wg_index_table_free(d->index);
	wg_allowedips_free(d->aips);
	wg_ratelimiter_free(d->ratelimiter);
	wg_noise_identity_wipe(&d->id);
	wg_cookie_checker_wipe(&d->cookie_checker);
	if (d->tx_buf)
		sodium_memzero(d->tx_buf, WG_MSG_DATA_LEN(WG_MAX_PLAINTEXT));
	if (d->rx_plain)
		sodium_memzero(d->rx_plain, WG_MAX_PLAINTEXT);
	free(d->tx_buf);
	free(d->rx_plain);
	free(d->rx_bufs);
	free(d->rx_msgs);
	free(d->rx_iovs);
	free(d->rx_addrs);
	free(d->rx_ctl);
	free(d);
}

static bool listening(const struct wg_device *d)
{
	return d->fd4 >= 0 || d->fd6 >= 0;
}

int wg_device_listen(struct wg_device *d, uint16_t port)
{
	int ret = wg_socket_open(d, port);

	if (ret != 0)
		return ret;
	/* Peers with a persistent keepalive announce themselves right away. */
	for (size_t i = 0; i < d->n_peers; i++) {
		struct wg_peer *p = d->peers[i];
		if (p->persistent_keepalive && p->endpoint.ss_family)
			wg_send_keepalive(p);
	}
	return 0;
}

void wg_device_set_mtu(struct wg_device *d, uint16_t mtu)
{
	d->mtu = mtu;
}

uint16_t wg_device_port(const struct wg_device *d)
{
	return d->port;
}

void wg_device_set_rx(struct wg_device *d, wg_rx_fn fn, void *ctx)
{
	d->rx = fn;
	d->rx_ctx = ctx;
}

static bool allowed_ip_ok(const struct wg_allowed_ip *a)
{
	return (a->family == AF_INET && a->cidr <= 32) ||
	       (a->family == AF_INET6 && a->cidr <= 128);
}

static struct wg_peer *fail(int *err, int code)
{
	if (err)
		*err = code;
	return NULL;
}

struct wg_peer *wg_device_add_peer(struct wg_device *d, const struct wg_peer_config *cfg,
                                   int *err)
{
	struct wg_peer *p;
	int ret;

	if (!d || !cfg || (cfg->n_allowed_ips && !cfg->allowed_ips))
		return fail(err, -EINVAL);
	if (sodium_memcmp(cfg->public_key, d->id.public_key, WG_KEY_LEN) == 0)
		return fail(err, -EINVAL);
	if (wg_pubkey_table_lookup(d->pubkeys, cfg->public_key))
		return fail(err, -EEXIST);
	if (d->n_peers >= WG_MAX_PEERS)
		return fail(err, -ENOSPC);
	for (size_t i = 0; i < cfg->n_allowed_ips; i++)
		if (!allowed_ip_ok(&cfg->allowed_ips[i]))
			return fail(err, -EINVAL);
	if (d->n_peers == d->cap_peers) {
		size_t cap = d->cap_peers ? d->cap_peers * 2 : 8;
		struct wg_peer **np = realloc(d->peers, cap * sizeof(*np));
		if (!np)
			return fail(err, -ENOMEM);
		d->peers = np;
		d->cap_peers = cap;
	}
	p = wg_peer_new(d, cfg, &ret);
	if (!p)
		return fail(err, ret);
	for (size_t i = 0; i < cfg->n_allowed_ips; i++) {
		const struct wg_allowed_ip *a = &cfg->allowed_ips[i];
		ret = wg_allowedips_insert(d->aips, a->family, a->addr, a->cidr, p);
		if (ret != 0) {
			wg_allowedips_remove_by_peer(d->aips, p);
			wg_peer_free(p);
			return fail(err, ret);
		}
	}
	p->n_allowed_ips = cfg->n_allowed_ips;
	ret = wg_pubkey_table_insert(d->pubkeys, &p->pubkey_entry);
	if (ret != 0) {
		wg_allowedips_remove_by_peer(d->aips, p);
		wg_peer_free(p);
		return fail(err, ret);
	}
	d->peers[d->n_peers++] = p;
	if (listening(d) && p->persistent_keepalive && p->endpoint.ss_family)
		wg_send_keepalive(p);
	if (err)
		*err = 0;
	return p;
}

/* Destination address of an IP packet, or NULL if malformed. */
static const uint8_t *packet_dst(const uint8_t *pkt, size_t len, int *family)
{
	if (len >= 20 && pkt[0] >> 4 == 4) {
		*family = AF_INET;
		return pkt + 16;
	}
	if (len >= 40 && pkt[0] >> 4 == 6) {
		*family = AF_INET6;
		return pkt + 24;
	}
	return NULL;
}

int wg_device_send(struct wg_device *d, const uint8_t *pkt, size_t len)
{
	const uint8_t *dst;
	struct wg_peer *p;
	int family = 0;

	if (!pkt || len == 0 || len > 65535)
		return -EINVAL;
	dst = packet_dst(pkt, len, &family);
	if (!dst)
		return -EINVAL;
	p = wg_allowedips_lookup(d->aips, family, dst);
	if (!p) {
		d->stats.tx_drop_noroute++;
		return -EHOSTUNREACH;
	}
	return wg_send_packet(p, pkt, len);
}

bool wg_device_has_route(const struct wg_device *d, int family, const uint8_t *addr)
{
	if (family != AF_INET && family != AF_INET6)
		return false;
	return wg_allowedips_lookup(d->aips, family, addr) != NULL;
}

const uint8_t *wg_device_route_key(const struct wg_device *d, int family,
                                   const uint8_t *addr)
{
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	const struct wg_peer *p = wg_allowedips_lookup(d->aips, family, addr);
	return p ? p->pubkey_entry.key : NULL;
}

void wg_device_handshake_all(struct wg_device *d)
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (wg_peer_reachable(d->peers[i]))
			wg_send_handshake_initiation(d->peers[i], false);
}

static bool peer_in_use(const struct wg_peer *p, uint64_t now, uint64_t active_ns)
{
	const struct wg_session *s = p->current;
	if (s && s->kp.send_valid &&
	    now - s->kp.birthdate_ns < (uint64_t)WG_REJECT_AFTER_TIME * NS_PER_SEC)
		return true;
	uint64_t rx = p->last_direct_rx_ns > p->last_relay_rx_ns ? p->last_direct_rx_ns
	                                                         : p->last_relay_rx_ns;
	return rx && now - rx < active_ns;
}

size_t wg_device_handshake_active(struct wg_device *d, uint32_t active_ms)
{
	uint64_t now = wg_now_ns();
	size_t n = 0;
	for (size_t i = 0; i < d->n_peers; i++)
		if (wg_peer_reachable(d->peers[i]) &&
		    peer_in_use(d->peers[i], now, (uint64_t)active_ms * NS_PER_MS)) {
			wg_send_handshake_initiation(d->peers[i], false);
			n++;
		}
	return n;
}

size_t wg_device_peer_count(const struct wg_device *d)
{
	return d->n_peers;
}

static void fill_info(const struct wg_peer *p, struct wg_peer_info *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->public_key, p->hs.remote_static, WG_KEY_LEN);
	info->endpoint = p->endpoint;
	info->last_handshake_unix = p->walltime_last_handshake;
	info->rx_bytes = p->rx_bytes;
	info->tx_bytes = p->tx_bytes;
	info->handshakes_sent = p->handshakes_sent;
	info->handshakes_completed = p->handshakes_completed;
	info->persistent_keepalive = p->persistent_keepalive;
	info->n_allowed_ips = p->n_allowed_ips;
	uint64_t now = wg_now_ns();
	info->relay_ok = p->relay_ok;
	info->via_relay = wg_peer_via_relay(p, now);
	info->direct_trusted = p->endpoint.ss_family && now < p->direct_trust_until_ns;
	info->relay_tx_bytes = p->relay_tx_bytes;
	info->relay_rx_bytes = p->relay_rx_bytes;
	info->last_direct_rx_ms =
	    p->last_direct_rx_ns ? (int64_t)((now - p->last_direct_rx_ns) / 1000000) : -1;
	info->last_relay_rx_ms =
	    p->last_relay_rx_ns ? (int64_t)((now - p->last_relay_rx_ns) / 1000000) : -1;
	info->last_handshake_ms =
	    p->last_handshake_ns ? (int64_t)((now - p->last_handshake_ns) / 1000000) : -1;
}

int wg_device_peer_info(const struct wg_device *d, size_t i, struct wg_peer_info *info)
{
	if (i >= d->n_peers)
		return -ENOENT;
	fill_info(d->peers[i], info);
	return 0;
}

void wg_device_stats(const struct wg_device *d, struct wg_device_stats *st)
{
	*st = d->stats;
}

/* ---- Peers that change at run time ----
 * Nothing outside the loop's current call stack keeps a peer pointer: the
 * receive path looks the peer up afresh for every datagram (index table,
 * pubkey table, allowed IPs) and the only deferred work is the peer's own
 * timers. So taking the peer out of the three tables and the array, then
 * freeing its timers (event_free also un-schedules them), leaves no way
 * back to it. */

static struct wg_peer *find_peer(const struct wg_device *d, const uint8_t *key)
{
	if (!d || !key)
		return NULL;
	return wg_pubkey_table_lookup(d->pubkeys, key);
}

int wg_device_remove_peer(struct wg_device *d, const uint8_t public_key[WG_KEY_LEN])
{
	struct wg_peer *p = find_peer(d, public_key);
	size_t i;

	if (!p)
		return -ENOENT;
	for (i = 0; i < d->n_peers && d->peers[i] != p; i++)
		;
	if (i < d->n_peers) {
		memmove(&d->peers[i], &d->peers[i + 1],
		        (d->n_peers - i - 1) * sizeof(d->peers[0]));
		d->peers[--d->n_peers] = NULL;
	}
	wg_pubkey_table_remove(d->pubkeys, &p->pubkey_entry);
	wg_allowedips_remove_by_peer(d->aips, p);
	d->stats.tx_drop_queue += p->staged_count;
	/* Its counters live on in the device's, so that totals over the
	 * peers never go down when the map drops one. */
	d->stats.retired_rx_bytes += p->rx_bytes;
	d->stats.retired_tx_bytes += p->tx_bytes;
	d->stats.retired_handshakes_sent += p->handshakes_sent;
	d->stats.retired_handshakes_completed += p->handshakes_completed;
	/* Timers, sessions and handshake (their indices leave the table),
	 * staged packets, keys. */
	wg_peer_free(p);
	return 0;
}

/* Builds the new allowed-IPs table aside and swaps it in, so that on any
 * failure the old one stays untouched. */
static int replace_allowed_ips(struct wg_device *d, struct wg_peer *p,
                               const struct wg_peer_config *cfg)
{
	struct wg_allowedips *t = wg_allowedips_clone(d->aips);

	if (!t)
		return -ENOMEM;
	wg_allowedips_remove_by_peer(t, p);
	for (size_t i = 0; i < cfg->n_allowed_ips; i++) {
		const struct wg_allowed_ip *a = &cfg->allowed_ips[i];
		int ret = wg_allowedips_insert(t, a->family, a->addr, a->cidr, p);
		if (ret != 0) {
			wg_allowedips_free(t);
			return ret;
		}
	}
	wg_allowedips_free(d->aips);
	d->aips = t;
	p->n_allowed_ips = cfg->n_allowed_ips;
	return 0;
}

int wg_device_update_peer(struct wg_device *d, const struct wg_peer_config *cfg,
                          unsigned mask)
{
	struct wg_peer *p;
	bool announce = false;
	int ret;

	if (!d || !cfg)
		return -EINVAL;
	p = find_peer(d, cfg->public_key);
	if (!p)
		return -ENOENT;
	/* Check everything first: a refused update changes nothing. */
	if ((mask & WG_PEER_UPD_ENDPOINT) && cfg->endpoint.ss_family != 0 &&
	    cfg->endpoint.ss_family != AF_INET && cfg->endpoint.ss_family != AF_INET6)
		return -EINVAL;
	if (mask & WG_PEER_UPD_ALLOWED_IPS) {
		if (cfg->n_allowed_ips && !cfg->allowed_ips)
			return -EINVAL;
		for (size_t i = 0; i < cfg->n_allowed_ips; i++)
			if (!allowed_ip_ok(&cfg->allowed_ips[i]))
				return -EINVAL;
		ret = replace_allowed_ips(d, p, cfg);
		if (ret != 0)
			return ret;
	}
	if (mask & WG_PEER_UPD_ENDPOINT) {
		if (cfg->endpoint.ss_family == 0) {
			memset(&p->endpoint, 0, sizeof(p->endpoint));
			memset(&p->src, 0, sizeof(p->src));
		} else {
			/* The same endpoint again (a map refresh) keeps the
			 * sticky source; a new one starts without. */
			size_t n = cfg->endpoint.ss_family == AF_INET
			               ? sizeof(struct sockaddr_in)
			               : sizeof(struct sockaddr_in6);
			if (memcmp(&p->endpoint, &cfg->endpoint, n) != 0)
				wg_peer_set_endpoint(
				    p, (const struct sockaddr *)&cfg->endpoint);
			announce = true;
			/* Packets waited for an endpoint: a handshake now,
			 * not when the retransmit timer next fires (up to
			 * REKEY_TIMEOUT later). */
			if (p->handshake_unsent && p->staged_count && listening(d)) {
				p->last_sent_handshake_ns = 0;
				wg_send_staged(p);
			}
		}
	}
	if (mask & WG_PEER_UPD_KEEPALIVE) {
		announce =
		    announce || cfg->persistent_keepalive != p->persistent_keepalive;
		p->persistent_keepalive = cfg->persistent_keepalive;
		if (!p->persistent_keepalive)
			evtimer_del(p->timer_persistent_keepalive);
	}
	/* As wg_device_add_peer: a peer with a persistent keepalive announces
	 * itself at once at its (new) endpoint. */
	if (announce && listening(d) && p->persistent_keepalive && p->endpoint.ss_family)
		wg_send_keepalive(p);
	return 0;
}

int wg_device_peer_info_by_key(const struct wg_device *d,
                               const uint8_t public_key[WG_KEY_LEN],
                               struct wg_peer_info *info)
{
	const struct wg_peer *p = find_peer(d, public_key);

	if (!p || !info)
		return -ENOENT;
	fill_info(p, info);
	return 0;
}
