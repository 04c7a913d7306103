/* Everything we put on the wire: handshake initiations and responses, cookie
 * replies, data and keepalives (as the Linux module's send.c). */
#include "core/util/log.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "core/wg/timers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_SEC 1000000000ULL
/* libevent's clock and ours may differ by a few ms: a retry that fires on
 * time must not be refused as "too soon". */
#define HANDSHAKE_RATE_SLACK_NS (100 * 1000000ULL)

static int send_to_peer(struct wg_peer *p, const void *buf, size_t len)
{
	return wg_peer_transmit(p, buf, len);
}

void wg_send_handshake_initiation(struct wg_peer *p, bool is_retry)
{
	struct wg_device *d = p->dev;
	struct wg_msg_initiation msg;
	uint64_t now = wg_now_ns();
	uint32_t idx;

	if (!is_retry)
		p->handshake_attempts = 0;
	/* At most one initiation per REKEY_TIMEOUT; per second for the first
	 * few to a peer never reached (wg_timers_retry_timeout). */
	unsigned gap = wg_timers_retry_timeout(p);
	if (p->last_sent_handshake_ns &&
	    now + HANDSHAKE_RATE_SLACK_NS < p->last_sent_handshake_ns + gap * NS_PER_SEC)
		return;
	if (!wg_peer_reachable(p)) {
		/* Nowhere to send it. As in the kernel the retransmit timer
		 * runs anyway: if the peer does not call within
		 * REKEY_ATTEMPT_TIME, what waits for it is dropped. It does not
		 * count as one of the quick retries (initiations): those are
		 * for when the endpoint arrives, and an endpoint that arrives
		 * with something staged gets an initiation at once
		 * (wg_device_update_peer). */
		p->handshake_unsent = true;
		p->last_sent_handshake_ns = now;
		wg_timers_handshake_initiated(p);
		return;
	}
	idx = wg_index_table_insert(d->index, &p->hs_entry);
	if (!idx)
		return;
	if (wg_noise_create_initiation(&p->hs, &d->id, idx, &msg) != 0) {
		wg_peer_clear_handshake(p);
		return;
	}
	wg_cookie_add_macs(&p->cookie, (uint8_t *)&msg, sizeof(msg), now);
	wg_timers_any_authenticated_packet_traversal(p);
	wg_timers_any_authenticated_packet_sent(p);
	p->last_sent_handshake_ns = now;
	p->initiations++;
	p->handshake_unsent = false;
	log_debug("wg: sending handshake initiation (index %08x)", idx);
	send_to_peer(p, &msg, sizeof(msg));
	p->handshakes_sent++;
	wg_timers_handshake_initiated(p);
}

void wg_send_handshake_response(struct wg_peer *p)
{
	struct wg_device *d = p->dev;
	struct wg_msg_response msg;
	uint64_t now = wg_now_ns();
	uint32_t idx;

	p->last_sent_handshake_ns = now;
	idx = wg_index_table_insert(d->index, &p->hs_entry);
	if (!idx || wg_noise_create_response(&p->hs, idx, &msg) != 0) {
		wg_peer_clear_handshake(p);
		return;
	}
	wg_cookie_add_macs(&p->cookie, (uint8_t *)&msg, sizeof(msg), now);
	if (!wg_peer_begin_session(p, now))
		return;
	wg_timers_session_derived(p);
	wg_timers_any_authenticated_packet_traversal(p);
	wg_timers_any_authenticated_packet_sent(p);
	log_debug("wg: sending handshake response (index %08x)", idx);
	send_to_peer(p, &msg, sizeof(msg));
}

void wg_send_cookie_reply(struct wg_device *d, const uint8_t *msg, size_t len,
                          uint32_t sender_index, const struct sockaddr *src)
{
	struct wg_msg_cookie reply;

	wg_cookie_reply_create(&d->cookie_checker, &reply, msg, len, sender_index, src,
	                       wg_now_ns());
	/* From the address the message arrived on, as every reply; through
	 * the relay to a relayed sender. */
	int ret;
	if (d->rx_relay_key)
		ret = d->path.relay_tx ? d->path.relay_tx(d->path.ctx, d->rx_relay_key,
		                                          (const uint8_t *)&reply,
		                                          sizeof(reply))
		                       : -ENOTCONN;
	else
		ret = wg_socket_send(d, src, &d->rx_src, (const uint8_t *)&reply,
		                     sizeof(reply));
	if (ret == 0)
		d->stats.cookies_sent++;
}

/* The current session, if it may still send. */
static struct wg_session *sending_session(struct wg_peer *p, uint64_t now)
{
	struct wg_session *s = p->current;

	if (!s || !s->kp.send_valid)
		return NULL;
	if (now >= s->kp.birthdate_ns + WG_REJECT_AFTER_TIME * NS_PER_SEC ||
	    s->kp.send_counter >= WG_REJECT_AFTER_MESSAGES) {
		s->kp.send_valid = false;
		return NULL;
	}
	return s;
}

/* The padded length of a len-byte packet, as the kernel's
 * calculate_skb_padding and wireguard-go: to a multiple of 16, but never
 * past the MTU (a full 1420-byte packet is a 1452-byte message, 1500 as
 * IPv6 + UDP, not 1456); a packet longer than the MTU pads its last
 * MTU-sized unit the same way. mtu 0: to 16 only. */
size_t wg_padded_len(size_t len, uint16_t mtu)
{
	size_t m = WG_MESSAGE_PADDING_MULTIPLE, last = len, padded_last;
	if (mtu == 0)
		return (len + m - 1) / m * m;
	if (last > mtu)
		last %= mtu;
	padded_last = (last + m - 1) / m * m;
	if (padded_last > mtu)
		padded_last = mtu;
	return len + (padded_last - last);
}

/* Pads, encrypts and sends one packet (len 0: a keepalive). */
static int encrypt_and_send(struct wg_peer *p, struct wg_session *s, const uint8_t *pkt,
                            size_t len)
{
	struct wg_device *d = p->dev;
	uint8_t *plain = d->tx_buf + WG_MSG_DATA_HEADER_LEN;
	size_t padded = wg_padded_len(len, d->mtu);
	size_t n;
	int ret;

	if (len)
		memcpy(plain, pkt, len);
	memset(plain + len, 0, padded - len);
	n = wg_noise_seal(&s->kp, s->kp.send_counter++, d->tx_buf, padded);
	ret = send_to_peer(p, d->tx_buf, n);
	wg_timers_any_authenticated_packet_traversal(p);
	wg_timers_any_authenticated_packet_sent(p);
	if (ret == 0 && len) {
		d->stats.tx_packets++;
		wg_timers_data_sent(p);
	}
	return ret;
}

/* Rekey when the session is old or worn (the initiator's job for age). */
static void keep_key_fresh(struct wg_peer *p, uint64_t now)
{
	struct wg_session *s = p->current;

	if (s && s->kp.send_valid &&
	    (s->kp.send_counter > WG_REKEY_AFTER_MESSAGES ||
	     (s->kp.i_am_the_initiator &&
	      now >= s->kp.birthdate_ns + WG_REKEY_AFTER_TIME * NS_PER_SEC)))
		wg_send_handshake_initiation(p, false);
}

void wg_send_staged(struct wg_peer *p)
{
	uint64_t now = wg_now_ns();
	struct wg_session *s = sending_session(p, now);

	if (!s) {
		wg_send_handshake_initiation(p, false);
		return;
	}
	while (p->staged_count) {
		struct wg_staged *st = &p->staged[p->staged_head];

		if (!sending_session(p, now)) {
			wg_send_handshake_initiation(p, false);
			return;
		}
		encrypt_and_send(p, s, st->data, st->len);
		free(st->data);
		st->data = NULL;
		p->staged_head = (p->staged_head + 1) % WG_MAX_STAGED_PACKETS;
		p->staged_count--;
	}
	p->staged_head = 0;
	keep_key_fresh(p, now);
}

int wg_send_packet(struct wg_peer *p, const uint8_t *pkt, size_t len)
{
	uint64_t now;
	struct wg_session *s;
	int ret;

	if (p->staged_count == 0) {
		now = wg_now_ns();
		s = sending_session(p, now);
		if (s) {
			encrypt_and_send(p, s, pkt, len);
			keep_key_fresh(p, now);
			return 0;
		}
	}
	ret = wg_peer_stage(p, pkt, len); /* a full ring drops its oldest */
	if (ret != 0) {
		p->dev->stats.tx_drop_queue++;
		return -ENOBUFS;
	}
	wg_send_staged(p);
	return 0;
}

void wg_send_keepalive(struct wg_peer *p)
{
	/* Anything staged confirms the session just as well. */
	if (p->staged_count == 0) {
		if (wg_peer_stage(p, NULL, 0) != 0)
			return;
	}
	wg_send_staged(p);
}
