/* The relay client's protocol: the upgrade, the handshake (SERVER_KEY,
 * CLIENT_INFO, SERVER_INFO or REFUSED), frames read and opened in place,
 * packets sealed in place into the socket's output or queued (unsealed)
 * behind it. See client.h. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "core/relay/client_int.h"
#include "core/relay/http.h"
#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/utf8.h"

void rc_send_upgrade(struct relay_client *c)
{
	char req[512], host[300];
	if (c->addr_len && c->addr.ss_family == AF_INET6)
		snprintf(host, sizeof host, "[%s]:%u", c->host, c->port);
	else
		snprintf(host, sizeof host, "%s:%u", c->host, c->port);
	size_t n = relay_http_request(req, sizeof req, host);
	if (!n || bufferevent_write(c->bev, req, n) < 0) {
		rc_fail(c, false, "cannot send the upgrade request");
		return;
	}
	c->hs = RC_HS_101;
}

/* --- output --------------------------------------------------------------- */

/* One SEND_PACKET, plain, at p (room for it and the tag). */
static size_t put_packet(uint8_t *p, const uint8_t *dst, const uint8_t *data, size_t len)
{
	relay_encode_header(p, RELAY_HDR_LEN, RELAY_FRAME_SEND_PACKET,
	                    RELAY_KEY_LEN + len);
	memcpy(p + RELAY_HDR_LEN, dst, RELAY_KEY_LEN);
	memcpy(p + RELAY_HDR_LEN + RELAY_KEY_LEN, data, len);
	return RELAY_HDR_LEN + RELAY_KEY_LEN + len;
}

bool rc_write_ctl(struct relay_client *c, const uint8_t *frame, size_t len)
{
	uint8_t buf[RELAY_HDR_LEN + 64 + RELAY_TAG_LEN];
	if (!c->bev || !c->sealed || len > RELAY_HDR_LEN + 64)
		return false;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	/* How many control frames go out is up to the relay (a PONG per
	 * PING): they keep to the queue's bound like packets, or a relay
	 * that sends PINGs and never reads would grow our memory (review
	 * H1). Dropped before sealing: no gap in the count. */
	if (evbuffer_get_length(out) + c->pend_bytes + len + RELAY_TAG_LEN >
	    c->queue_bytes) {
		c->tx_drop_ctl++;
		return false;
	}
	memcpy(buf, frame, len);
	size_t n = relay_seal(&c->sess, buf, len, sizeof buf);
	if (!n || evbuffer_add(out, buf, n) < 0) {
		rc_fail(c, false, "cannot send a control frame (out of memory)");
		return false;
	}
	return true;
}

/* The oldest queued packet, dropped. */
static void drop_oldest(struct relay_client *c)
{
	uint8_t hdr[RELAY_HDR_LEN];
	evbuffer_copyout(c->pending, hdr, RELAY_HDR_LEN);
	size_t n = RELAY_HDR_LEN + relay_hdr_len(hdr);
	evbuffer_drain(c->pending, n);
	c->pend_n--;
	c->pend_bytes -= n + RELAY_TAG_LEN;
	c->tx_drop_queue++;
}

void rc_pending_clear(struct relay_client *c)
{
	if (!c->pending)
		return;
	c->tx_drop_notconn += c->pend_n;
	evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
	c->pend_n = c->pend_bytes = c->pend_room = 0;
}

/* Contiguous room for need bytes at the end of b (see out_room). */
static int reserve(struct evbuffer *b, size_t need, size_t *room,
                   struct evbuffer_iovec *v)
{
	size_t ask = *room >= need || need >= RC_CHUNK ? need : RC_CHUNK;
	if (evbuffer_reserve_space(b, (ev_ssize_t)ask, v, 1) < 1)
		return -1;
	*room = v->iov_len;
	return 0;
}

/* Commits the first n bytes of v. */
static int commit(struct evbuffer *b, struct evbuffer_iovec *v, size_t n, size_t *room)
{
	v->iov_len = n;
	*room = *room > n ? *room - n : 0;
	return evbuffer_commit_space(b, v, 1);
}

/* Seals plain[0..n) (with room for the tag) in place and commits it. */
static int seal_commit(struct relay_client *c, struct evbuffer *out,
                       struct evbuffer_iovec *v, size_t n)
{
	size_t s = relay_seal(&c->sess, v->iov_base, n, v->iov_len);
	if (!s) /* the counter is spent (2^64 frames) or a bug: start over */
		return -1;
	if (commit(out, v, s, &c->out_room) < 0)
		return -1;
	c->tx_packets++;
	c->tx_bytes += n - RELAY_HDR_LEN - RELAY_KEY_LEN;
	return 0;
}

void rc_pump(struct relay_client *c)
{
	if (!c->bev || !c->sealed)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	while (c->pend_n && evbuffer_get_length(out) < c->out_low) {
		uint8_t hdr[RELAY_HDR_LEN];
		evbuffer_copyout(c->pending, hdr, RELAY_HDR_LEN);
		size_t n = RELAY_HDR_LEN + relay_hdr_len(hdr);
		struct evbuffer_iovec v;
		if (reserve(out, n + RELAY_TAG_LEN, &c->out_room, &v) < 0)
			return; /* no memory now: try again on the next write */
		evbuffer_remove(c->pending, v.iov_base, n);
		c->pend_n--;
		c->pend_bytes -= n + RELAY_TAG_LEN;
		if (seal_commit(c, out, &v, n) < 0) {
			rc_fail(c, false, "cannot seal a frame");
			return;
		}
	}
}

int relay_client_send(struct relay_client *c, const uint8_t *dst_key, const uint8_t *data,
                      size_t len)
{
	if (!c || c->dead)
		return -ENOTCONN;
	if (len == 0 || len > RELAY_PACKET_MAX)
		return -EMSGSIZE;
	if (c->state != RELAY_CLIENT_CONNECTED || !c->bev || !c->sealed) {
		c->tx_drop_notconn++;
		return -ENOTCONN;
	}
	size_t plain = RELAY_HDR_LEN + RELAY_KEY_LEN + len;
	size_t sealed = plain + RELAY_TAG_LEN;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t out_len = evbuffer_get_length(out);
	struct evbuffer_iovec v;
	if (!c->pend_n && out_len < c->out_low) {
		/* The fast path: straight into the socket's output, sealed in
		 * place (out_low + a frame is well under queue_bytes). */
		if (reserve(out, sealed, &c->out_room, &v) < 0) {
			c->tx_drop_queue++;
			return -ENOBUFS;
		}
		put_packet(v.iov_base, dst_key, data, len);
		if (seal_commit(c, out, &v, plain) < 0) {
			c->tx_drop_queue++;
			return -ENOBUFS;
		}
		return 0;
	}
	/* Behind the queue: the oldest queued packets make room. */
	while (c->pend_n && out_len + c->pend_bytes + sealed > c->queue_bytes)
		drop_oldest(c);
	if (out_len + c->pend_bytes + sealed > c->queue_bytes ||
	    reserve(c->pending, plain, &c->pend_room, &v) < 0) {
		c->tx_drop_queue++;
		return -ENOBUFS;
	}
	put_packet(v.iov_base, dst_key, data, len);
	if (commit(c->pending, &v, plain, &c->pend_room) < 0) {
		c->tx_drop_queue++;
		return -ENOBUFS;
	}
	c->pend_n++;
	c->pend_bytes += sealed;
	return 0;
}

/* --- input ---------------------------------------------------------------- */

static const char *refused_why(uint8_t reason, bool *slow)
{
	*slow = true;
	switch (reason) {
	case RELAY_REFUSED_NOT_ADMITTED:
		return "not a node of this mesh";
	case RELAY_REFUSED_BAD_AUTH:
		return "the relay could not verify this node's key";
	case RELAY_REFUSED_VERSION:
		return "relay protocol version not supported";
	case RELAY_REFUSED_FULL:
		*slow = false;
		return "the relay is full";
	case RELAY_REFUSED_NOT_READY:
		*slow = false;
		return "the relay is not ready yet";
	}
	*slow = false;
	return "for a reason this client does not know";
}

/* The relay's text, harmless: valid UTF-8, no control characters. */
static void clean_text(const struct relay_frame *f, char *out, size_t cap)
{
	char raw[RELAY_TEXT_MAX + 1];
	size_t n =
	    f->u.text.text_len < RELAY_TEXT_MAX ? f->u.text.text_len : RELAY_TEXT_MAX;
	memcpy(raw, f->u.text.text, n);
	raw[n] = 0;
	utf8_clean(raw, out, cap, UTF8_FOR_TERMINAL);
}

static void on_refused(struct relay_client *c, const struct relay_frame *f)
{
	/* Any refusal ends a RESTARTING schedule: the relay is up and has
	 * answered, so the normal backoff applies (review M2). */
	c->restart_at_ms = c->restart_until_ms = 0;
	bool slow;
	const char *why = refused_why(f->u.text.reason, &slow);
	/* A node that just registered reaches the relay before mesh-control
	 * has told the relay its key (tens of ms): its first refusals take
	 * the normal backoff (0.5, 1, 2 s), only a lasting one the slow end. */
	if (f->u.text.reason == RELAY_REFUSED_NOT_ADMITTED &&
	    ++c->not_admitted <= RC_NOT_ADMITTED_QUICK)
		slow = false;
	char text[100];
	clean_text(f, text, sizeof text);
	rc_fail(c, slow, "refused: %s (relay: %s)", why,
	        text[0] ? text : "no reason given");
}

static void on_server_key(struct relay_client *c, const struct relay_frame *f)
{
	if (sodium_memcmp(f->u.server_key.key, c->relay_key, RELAY_KEY_LEN) != 0) {
		rc_fail(
		    c, true,
		    "relay key mismatch: %s:%u answers with a key the network map does "
		    "not name for it",
		    c->host, c->port);
		return;
	}
	memcpy(c->challenge, f->u.server_key.challenge, RELAY_CHALLENGE_LEN);
	uint8_t fr[RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN];
	size_t n =
	    relay_client_info_seal(fr, sizeof fr, c->node_pub, c->node_priv, c->relay_key,
	                           c->challenge, 0, c->client_chal, c->eph_priv);
	if (!n || bufferevent_write(c->bev, fr, n) < 0) {
		rc_fail(c, false, "cannot send CLIENT_INFO");
		return;
	}
	c->hs = RC_HS_INFO;
}

static void on_server_info(struct relay_client *c, const struct relay_frame *f)
{
	uint8_t relay_eph[32];
	if (relay_server_info_open(f, c->node_priv, c->relay_key, c->client_chal,
	                           relay_eph) < 0) {
		rc_fail(c, true,
		        "relay key mismatch: %s:%u could not prove it holds the pinned "
		        "relay key",
		        c->host, c->port);
		return;
	}
	/* The settings outside the box are bound into the session: changed on
	 * the way, the first sealed frame fails to open (review M1). */
	uint8_t settings[RELAY_SETTINGS_LEN];
	relay_server_info_settings(f, settings);
	if (relay_session_init(&c->sess, true, c->eph_priv, relay_eph, c->node_pub,
	                       c->relay_key, c->challenge, c->client_chal,
	                       settings) < 0) {
		rc_fail(c, false, "the relay sent an unusable session key");
		return;
	}
	c->sealed = true;
	rc_session_up(c, f->u.server_info.keepalive_s);
	c->not_admitted = 0;
	rc_set_state(c, RELAY_CLIENT_CONNECTED, "");
}

/* A frame during the handshake (only handshake types reach here). */
static void on_handshake(struct relay_client *c, const struct relay_frame *f)
{
	if (f->type == RELAY_FRAME_REFUSED)
		on_refused(c, f);
	else if (f->type == RELAY_FRAME_SERVER_KEY)
		on_server_key(c, f);
	else
		on_server_info(c, f);
}

static void on_health(struct relay_client *c, const struct relay_frame *f)
{
	char text[sizeof c->detail];
	clean_text(f, text, sizeof text);
	if (strcmp(text, c->detail) == 0)
		return;
	memcpy(c->detail, text, sizeof text);
	/* The relay decides how often this changes: logged at most once a
	 * minute (the status always shows the latest). */
	uint64_t now = mono_now_ms();
	if (c->health_log_ms && now - c->health_log_ms < RC_HEALTH_LOG_MS) {
		c->health_unlogged++;
		return;
	}
	c->health_log_ms = now;
	char more[48] = "";
	if (c->health_unlogged)
		snprintf(more, sizeof more, " (%llu changes not logged)",
		         (unsigned long long)c->health_unlogged);
	c->health_unlogged = 0;
	if (text[0])
		log_info("relay %s:%u: health: %s%s", c->host, c->port, text, more);
	else
		log_info("relay %s:%u: healthy again%s", c->host, c->port, more);
}

/* A frame once admitted; unknown and unexpected types are skipped. */
static void on_active(struct relay_client *c, const struct relay_frame *f)
{
	switch (f->type) {
	case RELAY_FRAME_RECV_PACKET:
		c->rx_packets++;
		c->rx_bytes += f->u.packet.data_len;
		if (c->cb.on_packet)
			c->cb.on_packet(c->ctx, c, f->u.packet.key, f->u.packet.data,
			                f->u.packet.data_len);
		break;
	case RELAY_FRAME_PING: {
		uint8_t fr[RELAY_HDR_LEN + RELAY_PING_LEN];
		size_t n =
		    relay_encode_ping(fr, sizeof fr, RELAY_FRAME_PONG, f->u.ping.data);
		rc_write_ctl(c, fr, n);
		break;
	}
	case RELAY_FRAME_PONG:
		if (c->ping_out &&
		    sodium_memcmp(f->u.ping.data, c->ping_data, RELAY_PING_LEN) == 0) {
			uint64_t us = rc_now_us() - c->ping_sent_us;
			c->rtt_us =
			    us ? (us > UINT32_MAX ? UINT32_MAX : (uint32_t)us) : 1;
			c->ping_out = false;
		}
		break;
	case RELAY_FRAME_KEEPALIVE:
	case RELAY_FRAME_PEER_PRESENT:
		break;
	case RELAY_FRAME_HEALTH:
		on_health(c, f);
		break;
	case RELAY_FRAME_RESTARTING:
		rc_plan_restart(c, f->u.restarting.reconnect_in_ms,
		                f->u.restarting.try_for_ms);
		break;
	case RELAY_FRAME_PEER_GONE:
		if (c->cb.on_peer_gone)
			c->cb.on_peer_gone(c->ctx, c, f->u.peer.key, f->u.peer.reason);
		break;
	case RELAY_FRAME_REFUSED: /* cut off: "removed from the mesh" */
		on_refused(c, f);
		break;
	default:
		c->rx_skipped++;
		break;
	}
}

static bool handshake_type(enum rc_hs hs, uint8_t type)
{
	if (type == RELAY_FRAME_REFUSED)
		return hs == RC_HS_KEY || hs == RC_HS_INFO;
	return (hs == RC_HS_KEY && type == RELAY_FRAME_SERVER_KEY) ||
	       (hs == RC_HS_INFO && type == RELAY_FRAME_SERVER_INFO);
}

/* Whole frames from the input, each opened in place and handled; stops
 * when a handler closed or replaced the connection (or freed c). */
static void read_frames(struct relay_client *c)
{
	uint64_t gen = c->gen;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (!c->dead && c->gen == gen) {
		size_t have = evbuffer_get_length(in);
		uint8_t hdr[RELAY_HDR_LEN];
		if (have < RELAY_HDR_LEN)
			return;
		evbuffer_copyout(in, hdr, RELAY_HDR_LEN);
		uint32_t blen = relay_hdr_len(hdr);
		const char *name = relay_frame_type_name(hdr[0]);
		if (blen > RELAY_FRAME_BODY_MAX ||
		    (!c->sealed && blen > RELAY_HANDSHAKE_BODY_MAX)) {
			c->rx_drop_bad++;
			c->rx_drop_oversize++;
			rc_fail(c, false,
			        "the relay announced a %s frame of %u bytes (limit %u)",
			        name ? name : "unknown", blen,
			        c->sealed ? RELAY_FRAME_BODY_MAX
			                  : RELAY_HANDSHAKE_BODY_MAX);
			return;
		}
		if (!c->sealed && !handshake_type(c->hs, hdr[0])) {
			c->rx_drop_bad++;
			rc_fail(c, false,
			        "the relay sent %s (type 0x%02x) during the handshake",
			        name ? name : "an unknown frame", hdr[0]);
			return;
		}
		size_t total = RELAY_HDR_LEN + (size_t)blen;
		if (have < total)
			return;
		uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
		if (!p) {
			rc_fail(c, false, "out of memory");
			return;
		}
		size_t plain = total;
		if (c->sealed) {
			int o = relay_open(&c->sess, p, total);
			if (o < 0) {
				c->rx_drop_bad++;
				c->rx_drop_seal++;
				rc_fail(c, false,
				        "a frame from the relay failed authentication "
				        "(altered or injected on the way)");
				return;
			}
			plain = (size_t)o;
			/* Liveness counts frames that open, not bytes. */
			c->last_rx_ms = mono_now_ms();
		}
		struct relay_frame f;
		size_t used;
		if (relay_frame_decode(p, plain, &f, &used, NULL) != RELAY_DECODE_READY) {
			c->rx_drop_bad++;
			rc_fail(c, false,
			        "the relay sent a malformed %s frame (%u bytes)",
			        name ? name : "unknown", blen);
			return;
		}
		if (c->sealed)
			on_active(c, &f);
		else
			on_handshake(c, &f);
		if (c->dead || c->gen != gen)
			return;
		evbuffer_drain(in, total);
	}
}

void rc_on_read(struct relay_client *c)
{
	if (!c->bev ||
	    (c->state != RELAY_CLIENT_HANDSHAKE && c->state != RELAY_CLIENT_CONNECTED))
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->state == RELAY_CLIENT_HANDSHAKE && c->hs == RC_HS_101) {
		size_t len = evbuffer_get_length(in);
		if (len > RELAY_HTTP_HEAD_MAX)
			len = RELAY_HTTP_HEAD_MAX;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
		int r = p ? relay_http_parse_response(p, len) : -1;
		if (r == 0)
			return;
		if (r < 0) {
			c->rx_drop_bad++;
			if (r == -1)
				rc_fail(c, false,
				        "%s:%u is not a mesh relay (its answer is not "
				        "HTTP%s)",
				        c->host, c->port,
				        c->tls ? "" : "; does it want TLS?");
			else
				rc_fail(
				    c, false,
				    "%s:%u is not a mesh relay (HTTP %d to the upgrade)",
				    c->host, c->port, -r);
			return;
		}
		evbuffer_drain(in, (size_t)r);
		c->hs = RC_HS_KEY;
	}
	read_frames(c);
	/* Packets may have been sent from a callback while the output was
	 * short. */
	if (!c->dead && c->bev && c->pend_n)
		rc_pump(c);
}
