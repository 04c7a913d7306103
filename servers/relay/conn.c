/* mesh-relay's connection plumbing: the packet queue and the control lane
 * into the socket (sealing each frame as it enters the stream), and whole
 * frames out of it (opening sealed ones in place). See relay_int.h. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "servers/relay/relay_int.h"

static void free_frame(const void *data, size_t len, void *extra)
{
	free((void *)data);
}

/* Every key connected here, as PEER_PRESENT, into c's control lane. */
void rly_conn_full_set(struct rly_conn *c)
{
	struct rly_server *s = c->s;
	for (size_t i = 0; i < s->clients.cap; i++) {
		if (!s->clients.slots[i].val)
			continue;
		uint8_t pf[RELAY_HDR_LEN + 32];
		size_t pn = relay_encode_peer(pf, sizeof pf, RELAY_FRAME_PEER_PRESENT,
		                              s->clients.slots[i].key, 0);
		evbuffer_add(c->ctl, pf, pn);
	}
}

void rly_conn_send_ctl(struct rly_conn *c, const uint8_t *frame, size_t len)
{
	if (c->dead || c->state == RC_CLOSING)
		return;
	if (!c->ctl) {
		rly_conn_send(c, frame, len, NULL, 0);
		return;
	}
	if (evbuffer_get_length(c->ctl) + len > RLY_CTL_MAX) {
		/* The sibling reads too slowly to follow every change: start
		 * over with the whole set, which already holds this change. */
		c->s->st.mesh_resyncs++;
		evbuffer_drain(c->ctl, evbuffer_get_length(c->ctl));
		static const uint8_t reset[RELAY_HDR_LEN] = {RELAY_FRAME_PEERS_RESET, 0,
		                                             0, 0, 0};
		evbuffer_add(c->ctl, reset, sizeof reset);
		rly_conn_full_set(c);
	} else {
		evbuffer_add(c->ctl, frame, len);
	}
	rly_conn_pump(c);
}

int rly_conn_link_queue(struct rly_conn *c)
{
	struct rly_queue q;
	if (rly_queue_init(&q, RLY_LINK_QUEUE_PACKETS, RLY_LINK_QUEUE_BYTES) < 0)
		return -ENOMEM;
	c->s->queued -= c->q.bytes;
	rly_queue_free(&c->q);
	c->q = q;
	return 0;
}

/* Control frames (small) from the lane, sealed one by one. */
static bool pump_ctl(struct rly_conn *c, struct evbuffer *out)
{
	while (evbuffer_get_length(out) < RLY_OUT_LOW &&
	       evbuffer_get_length(c->ctl) >= RELAY_HDR_LEN) {
		uint8_t fr[RELAY_HDR_LEN + 64 + RELAY_TAG_LEN];
		evbuffer_copyout(c->ctl, fr, RELAY_HDR_LEN);
		size_t n = RELAY_HDR_LEN + (size_t)relay_hdr_len(fr);
		if (n > RELAY_HDR_LEN + 64) /* only we write the lane */
			return false;
		evbuffer_remove(c->ctl, fr, n);
		if (c->sealed)
			n = relay_seal(&c->sess, fr, n, sizeof fr);
		if (!n || evbuffer_add(out, fr, n) < 0)
			return false;
	}
	return true;
}

void rly_conn_pump(struct rly_conn *c)
{
	if (c->dead || c->state == RC_CLOSING)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (c->ctl && !pump_ctl(c, out)) {
		rly_conn_close(c, "cannot send a control frame");
		return;
	}
	size_t before = c->q.bytes;
	while (evbuffer_get_length(out) < RLY_OUT_LOW) {
		struct rly_qitem *it = (struct rly_qitem *)rly_queue_peek(&c->q);
		if (!it)
			break;
		/* Sealed here, in the order frames enter the stream (a frame the
		 * queue drops was never sealed, so no gap in the count). */
		size_t n = it->len;
		if (c->sealed)
			n = relay_seal(&c->sess, it->buf, it->len,
			               it->len + RLY_QUEUE_ROOM);
		if (!n) {
			c->s->queued -= before - c->q.bytes;
			rly_conn_close(c, "cannot seal a frame");
			return;
		}
		/* Hand the frame's buffer to libevent: no copy. A sealed frame
		 * that cannot be sent leaves a gap the peer cannot get past. */
		if (evbuffer_add_reference(out, it->buf, n, free_frame, NULL) == 0) {
			it->buf = NULL;
		} else {
			c->s->st.drop_nomem++;
			if (c->sealed) {
				c->s->queued -= before - c->q.bytes;
				rly_conn_close(c, "out of memory");
				return;
			}
		}
		rly_queue_pop(&c->q);
	}
	c->s->queued -= before - c->q.bytes;
}

int rly_conn_send(struct rly_conn *c, const uint8_t *hdr, size_t hdr_len,
                  const uint8_t *body, size_t body_len)
{
	if (c->dead || c->state == RC_CLOSING)
		return -EPIPE;
	struct rly_server *s = c->s;
	/* All queues together stay under the budget: past it the new packet
	 * is dropped (a queue that is itself full drops its oldest instead,
	 * which frees as much as it takes). */
	if (s->queued + hdr_len + body_len > s->cfg.queue_budget &&
	    c->q.bytes + hdr_len + body_len <= c->q.max_bytes &&
	    c->q.n < c->q.max_items) {
		s->st.drop_budget++;
		return -ENOBUFS;
	}
	size_t before = c->q.bytes;
	int r = rly_queue_push(&c->q, hdr, hdr_len, body, body_len);
	s->queued += c->q.bytes;
	s->queued -= before;
	if (r == -ENOMEM)
		c->s->st.drop_nomem++;
	else if (r == -EMSGSIZE)
		c->s->st.drop_oversize++;
	else if (r > 0)
		c->s->st.drop_queue_full += (uint64_t)r;
	if (r < 0)
		return r;
	rly_conn_pump(c);
	return 0;
}

bool rly_conn_read_frames(struct rly_conn *c,
                          bool (*fn)(struct rly_conn *c, const struct relay_frame *f))
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (!c->dead && c->state != RC_CLOSING) {
		size_t have = evbuffer_get_length(in);
		uint8_t hdr[RELAY_HDR_LEN];
		if (have < RELAY_HDR_LEN)
			return true;
		evbuffer_copyout(in, hdr, RELAY_HDR_LEN);
		uint32_t blen = relay_hdr_len(hdr);
		if (blen > RELAY_FRAME_BODY_MAX) {
			c->s->st.drop_oversize++;
			if (rly_log_ok())
				log_info("mesh-relay: %s: frame of %u bytes announced "
				         "(limit %u); "
				         "closing",
				         c->peer, blen, RELAY_FRAME_BODY_MAX);
			rly_conn_close(c, "oversized frame");
			return false;
		}
		/* Before admission: handshake frames only, and small ones, so an
		 * unadmitted peer cannot make us buffer a whole frame. */
		if (c->deadline_ms &&
		    (blen > RELAY_HANDSHAKE_BODY_MAX ||
		     (c->state == RC_WAIT_INFO && hdr[0] != RELAY_FRAME_CLIENT_INFO))) {
			c->s->st.drop_bad_frame++;
			if (rly_log_ok())
				log_info(
				    "mesh-relay: %s: %s frame of %u bytes during the "
				    "handshake; closing",
				    c->peer,
				    relay_frame_type_name(hdr[0])
				        ? relay_frame_type_name(hdr[0])
				        : "unknown",
				    blen);
			rly_conn_close(c, "not a handshake frame");
			return false;
		}
		size_t total = RELAY_HDR_LEN + (size_t)blen;
		if (have < total)
			return true;
		uint8_t *p = evbuffer_pullup(in, (ssize_t)total);
		struct relay_frame f;
		size_t used = 0;
		size_t plain = total;
		if (p && c->sealed) {
			/* Opened in place, in the input buffer. */
			int o = relay_open(&c->sess, p, total);
			if (o < 0) {
				c->s->st.drop_bad_seal++;
				if (rly_log_ok())
					log_info(
					    "mesh-relay: %s: a frame failed "
					    "authentication (altered, injected or out "
					    "of order); closing",
					    c->peer);
				rly_conn_close(c, "frame failed authentication");
				return false;
			}
			plain = (size_t)o;
		}
		int r = p ? relay_frame_decode(p, plain, &f, &used, NULL) : -ENOMEM;
		if (r != RELAY_DECODE_READY) {
			c->s->st.drop_bad_frame++;
			if (rly_log_ok())
				log_info("mesh-relay: %s: bad frame (type 0x%02x, %u "
				         "bytes); closing",
				         c->peer, hdr[0], blen);
			rly_conn_close(c, "bad frame");
			return false;
		}
		bool ok = fn(c, &f);
		if (c->dead)
			return false;
		evbuffer_drain(in, total);
		if (!ok)
			return false;
	}
	return false;
}
