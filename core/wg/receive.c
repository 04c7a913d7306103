/* The receive path: dispatch by message type, handshakes (with mac1, and
 * under load mac2, cookie replies and the per-source rate limiter), cookie
 * replies, and transport data (decrypt, replay window, session rotation,
 * endpoint roaming, inner packet checks, allowed-IPs source check). */
#include "core/util/log.h"
#include "core/wg/allowedips.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "core/wg/ratelimiter.h"
#include "core/wg/timers.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#define NS_PER_SEC 1000000000ULL

void wg_device_force_under_load(struct wg_device *d, int mode)
{
	d->force_under_load = mode < 0 ? -1 : !!mode;
}

/* Under load when more handshake messages with a valid MAC1 than the
 * threshold arrived in the current second, and for one second after that. */
static bool under_load(struct wg_device *d, uint64_t now)
{
	if (d->force_under_load >= 0)
		return d->force_under_load;
	if (now - d->load_window_start_ns >= NS_PER_SEC) {
		d->load_window_start_ns = now;
		d->load_window_count = 0;
	}
	if (++d->load_window_count > WG_UNDER_LOAD_HANDSHAKES_PER_SEC) {
		d->last_under_load_ns = now;
		return true;
	}
	return d->last_under_load_ns && now - d->last_under_load_ns < NS_PER_SEC;
}

/* An authenticated datagram from p: the endpoint roams to where it came
 * from (UDP only: a relayed one never moves it). False when a relayed
 * datagram authenticated as a peer other than the key the relay said sent
 * it (dropped). */
static bool came_from(struct wg_device *d, struct wg_peer *p, const struct sockaddr *src,
                      size_t len)
{
	if (d->rx_relay_key) {
		if (memcmp(d->rx_relay_key, p->pubkey_entry.key, WG_KEY_LEN) != 0) {
			d->stats.rx_drop_relay_key++;
			return false;
		}
	} else {
		wg_peer_set_endpoint(p, src);
		p->src = d->rx_src;
	}
	wg_peer_note_rx(p, len);
	return true;
}

static struct wg_handshake *lookup_handshake(void *ctx, const uint8_t key[WG_KEY_LEN])
{
	struct wg_device *d = ctx;
	struct wg_peer *p = wg_pubkey_table_lookup(d->pubkeys, key);

	return p ? &p->hs : NULL;
}

static void receive_cookie(struct wg_device *d, const uint8_t *buf, size_t len,
                           uint64_t now)
{
	const struct wg_msg_cookie *msg = (const struct wg_msg_cookie *)buf;
	struct wg_index_entry *e;

	if (len != WG_MSG_COOKIE_LEN) {
		d->stats.rx_drop_short++;
		return;
	}
	e = wg_index_table_lookup(d->index, wg_le32(msg->receiver_index));
	if (!e) {
		d->stats.rx_drop_nokey++;
		return;
	}
	if (wg_cookie_reply_consume(&e->peer->cookie, msg, now) != 0) {
		d->stats.rx_drop_mac++;
		return;
	}
	d->stats.cookies_received++;
	log_debug("wg: received a cookie reply; the peer is under load");
}

static struct wg_peer *receive_initiation(struct wg_device *d, const uint8_t *buf,
                                          const struct sockaddr *src, uint64_t now)
{
	struct wg_handshake *hs;
	struct wg_peer *p;
	int ret;

	ret = wg_noise_consume_initiation(&d->id, (const struct wg_msg_initiation *)buf,
	                                  now, lookup_handshake, d, &hs);
	if (ret == -EALREADY || ret == -EBUSY) {
		d->stats.rx_drop_replay++;
		return NULL;
	}
	if (ret != 0) {
		d->stats.rx_drop_decrypt++;
		return NULL;
	}
	p = wg_peer_from_handshake(hs);
	log_debug("wg: received handshake initiation%s", d->rx_relay_key ? " (relayed)" : "");
	if (!came_from(d, p, src, WG_MSG_INITIATION_LEN))
		return NULL;
	wg_send_handshake_response(p);
	return p;
}

static struct wg_peer *receive_response(struct wg_device *d, const uint8_t *buf,
                                        const struct sockaddr *src, uint64_t now)
{
	const struct wg_msg_response *msg = (const struct wg_msg_response *)buf;
	struct wg_index_entry *e =
	    wg_index_table_lookup(d->index, wg_le32(msg->receiver_index));
	struct wg_peer *p;

	if (!e || e->kind != WG_INDEX_HANDSHAKE) {
		d->stats.rx_drop_nokey++;
		return NULL;
	}
	p = e->peer;
	if (wg_noise_consume_response(&p->hs, &d->id, msg) != 0) {
		d->stats.rx_drop_decrypt++;
		return NULL;
	}
	log_debug("wg: received handshake response%s", d->rx_relay_key ? " (relayed)" : "");
	if (!came_from(d, p, src, WG_MSG_RESPONSE_LEN))
		return NULL;
	if (wg_peer_begin_session(p, now)) {
		wg_timers_session_derived(p);
		wg_timers_handshake_complete(p);
		/* Sends what is staged, or a keepalive to confirm the session. */
		wg_send_keepalive(p);
	}
	return p;
}

static void receive_handshake(struct wg_device *d, const uint8_t *buf, size_t len,
                              uint32_t type, const struct sockaddr *src)
{
	uint64_t now = wg_now_ns();
	size_t want = type == WG_MSG_HANDSHAKE_INITIATION ? WG_MSG_INITIATION_LEN
	                                                  : WG_MSG_RESPONSE_LEN;
	enum wg_cookie_mac_state mac;
	struct wg_peer *p;
	bool load;

	if (len != want) {
		d->stats.rx_drop_short++;
		return;
	}
	/* Only messages with a valid MAC1 (whoever made them knew our public
	 * key) count towards "under load", a departure from the kernel and
	 * wireguard-go, which count their queue before MAC1: junk of the right
	 * size alone cannot force every real handshake through a cookie. */
	mac = wg_cookie_validate(&d->cookie_checker, buf, len, src, false, now);
	if (mac == WG_COOKIE_INVALID_MAC) {
		d->stats.rx_drop_mac++;
		return;
	}
	load = under_load(d, now);
	if (load)
		mac = wg_cookie_validate(&d->cookie_checker, buf, len, src, true, now);
	if (load && mac != WG_COOKIE_VALID_MAC_WITH_COOKIE) {
		/* Both messages carry their sender index at offset 4. */
		wg_send_cookie_reply(d, buf, len, wg_le32(buf + 4), src);
		return;
	}
	if (load && !wg_ratelimiter_allow(d->ratelimiter, src, now)) {
		d->stats.rx_drop_ratelimit++;
		return;
	}
	if (type == WG_MSG_HANDSHAKE_INITIATION)
		p = receive_initiation(d, buf, src, now);
	else
		p = receive_response(d, buf, src, now);
	if (!p)
		return;
	p->rx_bytes += len;
	wg_timers_any_authenticated_packet_received(p);
	wg_timers_any_authenticated_packet_traversal(p);
}

/* The initiator starts the next handshake a little before the session
 * expires, so that traffic does not stall (once per session). */
static void keep_key_fresh(struct wg_peer *p, uint64_t now)
{
	struct wg_session *s = p->current;

	if (s && s->kp.send_valid && s->kp.i_am_the_initiator &&
	    !p->sent_lastminute_handshake &&
	    now >= s->kp.birthdate_ns +
	               (WG_REJECT_AFTER_TIME - WG_KEEPALIVE_TIMEOUT - WG_REKEY_TIMEOUT) *
	                   NS_PER_SEC) {
		p->sent_lastminute_handshake = true;
		wg_send_handshake_initiation(p, false);
	}
}

/* Checks the inner IP header. Returns the packet's real length (without
 * padding) and its source address, or 0. */
static size_t inner_packet(const uint8_t *pkt, size_t len, int *family,
                           const uint8_t **saddr)
{
	size_t tot;

	if (len < 1)
		return 0;
	switch (pkt[0] >> 4) {
	case 4:
		if (len < 20)
			return 0;
		tot = (size_t)pkt[2] << 8 | pkt[3];
		if (tot < 20 || tot > len)
			return 0;
		*family = AF_INET;
		*saddr = pkt + 12;
		return tot;
	case 6:
		if (len < 40)
			return 0;
		tot = 40 + ((size_t)pkt[4] << 8 | pkt[5]);
		if (tot > len)
			return 0;
		*family = AF_INET6;
		*saddr = pkt + 8;
		return tot;
	default:
		return 0;
	}
}

static void receive_data(struct wg_device *d, const uint8_t *buf, size_t len,
                         const struct sockaddr *src)
{
	const struct wg_msg_data *msg = (const struct wg_msg_data *)buf;
	uint64_t now = wg_now_ns();
	struct wg_index_entry *e;
	struct wg_session *s;
	struct wg_peer *p;
	const uint8_t *saddr = NULL;
	size_t plain_len, n;
	int family = 0;

	if (len < WG_MSG_DATA_MIN_LEN || len - WG_MSG_DATA_MIN_LEN > WG_MAX_PLAINTEXT) {
		d->stats.rx_drop_short++;
		return;
	}
	e = wg_index_table_lookup(d->index, wg_le32(msg->receiver_index));
	if (!e || e->kind != WG_INDEX_KEYPAIR) {
		d->stats.rx_drop_nokey++;
		return;
	}
	s = (struct wg_session *)((char *)e - offsetof(struct wg_session, entry));
	p = e->peer;
	if (!s->kp.recv_valid ||
	    now >= s->kp.birthdate_ns + WG_REJECT_AFTER_TIME * NS_PER_SEC) {
		s->kp.recv_valid = false;
		d->stats.rx_drop_nokey++;
		return;
	}
	plain_len = len - WG_MSG_DATA_MIN_LEN;
	if (wg_noise_open(&s->kp, buf, len, d->rx_plain) != 0) {
		d->stats.rx_drop_decrypt++;
		return;
	}
	if (!wg_replay_check(&s->kp.replay, wg_le64(msg->counter),
	                     WG_REJECT_AFTER_MESSAGES)) {
		d->stats.rx_drop_replay++;
		return;
	}

	/* Authentic and fresh. The endpoint moves first (as the kernel):
	 * what this packet lets go (the staged packets, a rekey) goes where
	 * it came from. */
	if (!came_from(d, p, src, len))
		return;
	if (wg_peer_received_with_session(p, s)) {
		wg_timers_handshake_complete(p);
		wg_send_staged(p);
	}
	keep_key_fresh(p, now);
	wg_timers_any_authenticated_packet_received(p);
	wg_timers_any_authenticated_packet_traversal(p);
	p->rx_bytes += len;
	if (plain_len == 0)
		return; /* keepalive */
	wg_timers_data_received(p);

	n = inner_packet(d->rx_plain, plain_len, &family, &saddr);
	if (n == 0) {
		d->stats.rx_drop_type++;
		return;
	}
	if (wg_allowedips_lookup(d->aips, family, saddr) != p) {
		d->stats.rx_drop_allowedips++;
		return;
	}
	d->stats.rx_packets++;
	if (d->rx)
		d->rx(d->rx_ctx, d->rx_plain, n);
}

void wg_device_receive(struct wg_device *d, const uint8_t *buf, size_t len,
                       const struct sockaddr *src)
{
	if (src->sa_family != AF_INET && src->sa_family != AF_INET6) {
		d->stats.rx_drop_type++;
		return;
	}
	switch (wg_msg_type(buf, len)) {
	case WG_MSG_HANDSHAKE_INITIATION:
		receive_handshake(d, buf, len, WG_MSG_HANDSHAKE_INITIATION, src);
		break;
	case WG_MSG_HANDSHAKE_RESPONSE:
		receive_handshake(d, buf, len, WG_MSG_HANDSHAKE_RESPONSE, src);
		break;
	case WG_MSG_HANDSHAKE_COOKIE:
		receive_cookie(d, buf, len, wg_now_ns());
		break;
	case WG_MSG_DATA:
		receive_data(d, buf, len, src);
		break;
	default:
		/* Disco and STUN share the socket: the owner takes them (never
		 * what came through the relay: that is handed over there). */
		if (d->path.other_rx && !d->rx_relay_key && len > 0) {
			d->stats.rx_other++;
			d->path.other_rx(d->path.ctx, buf, len, src);
		} else if (len < sizeof(struct wg_msg_header))
			d->stats.rx_drop_short++;
		else
			d->stats.rx_drop_type++;
	}
}
