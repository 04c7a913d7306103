/* mesh-control's node protocol server: listener, connections, handshake,
 * framing, timers and stats. Registration is in server_reg.c, the network
 * map and its broadcast in server_map.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "servers/control/server_int.h"

uint64_t srv_now_ms(void)
{
	return mono_now_ms();
}

/* --- sending ------------------------------------------------------------ */

int srv_send_body(struct srv_conn *c, uint8_t type, const uint8_t *body, size_t len)
{
	struct ctl_server *s = c->s;
	if (c->state == SRV_CLOSING)
		return -EINVAL;
	if (len > CTL_FRAME_BODY_MAX) {
		log_warn("mesh-control: %s: %s of %zu bytes is over the frame limit "
		         "(%u); closing",
		         c->peer, ctl_msg_type_name(type), len,
		         (unsigned)CTL_FRAME_BODY_MAX);
		return -EMSGSIZE;
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t need = ctl_frame_sealed_size(len);
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) < 1 || v.iov_len < need)
		return -ENOMEM;
	size_t wrote = 0;
	int r = ctl_frame_seal(&c->tr, type, body, len, v.iov_base, v.iov_len, &wrote);
	if (r < 0)
		return r;
	v.iov_len = wrote;
	if (evbuffer_commit_space(out, &v, 1) < 0)
		return -ENOMEM;
	s->st.bytes_out += wrote;
	c->last_send_ms = srv_now_ms();
	if (evbuffer_get_length(out) > s->cfg.max_outbuf) {
		s->st.slow_closed++;
		log_info("mesh-control: %s: output queue over %zu bytes; closing slow "
		         "reader",
		         c->peer, s->cfg.max_outbuf);
		return -ENOBUFS;
	}
	return 0;
}

int srv_send_msg(struct srv_conn *c, const struct ctl_msg *m)
{
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	int r = ctl_msg_encode(m, &body, &len, &me);
	if (r < 0) {
		log_warn("mesh-control: encoding %s failed: %s",
		         ctl_msg_type_name(m->type), me.text);
		return r;
	}
	r = srv_send_body(c, (uint8_t)m->type, body, len);
	free(body);
	return r;
}

/* --- connection lifecycle ----------------------------------------------- */

/* Whether c's node has another connection that keeps it online. */
static bool other_conn_of(struct ctl_server *s, const struct srv_conn *c)
{
	for (const struct srv_conn *o = srv_conn_first_of(s, c->node_id); o;
	     o = srv_conn_next_of(o)) {
		s->st.conns_walked++;
		if (o != c && (o->state == SRV_ONLINE || o->state == SRV_PENDING))
			return true;
	}
	return false;
}

/* Written with the next batch (server_writes.c); at stop, every node in
 * one statement (ctl_server_free). */
static struct srv_node *snap_node(struct ctl_server *s, int64_t id)
{
	bool f;
	size_t i = srv_snap_index(s, id, &f);
	return f ? &s->nodes[i] : NULL;
}

void srv_set_offline(struct ctl_server *s, int64_t node_id)
{
	if (s->stopping)
		return;
	struct srv_node *n = snap_node(s, node_id);
	if (n) { /* not by the node unless the caller says so */
		n->closed_by_node_ms = 0;
		n->gone_s = (int64_t)time(NULL);
	}
	srv_wb_offline(s, node_id);
}

/* The budget's split (server_int.h, srv_over_budget): older nodes' half,
 * what the others' queues may hold, and what those hold now. */
static size_t legacy_limit(const struct ctl_server *s)
{
	return s->cfg.out_budget / 2;
}

static size_t current_limit(const struct ctl_server *s)
{
	size_t l = legacy_limit(s);
	return s->cfg.out_budget - (s->out_legacy < l ? s->out_legacy : l);
}

static size_t out_current(const struct ctl_server *s)
{
	return s->out_total > s->out_legacy ? s->out_total - s->out_legacy : 0;
}

static size_t sub_sat(size_t a, size_t b)
{
	return b < a ? a - b : 0;
}

/* Maps that waited go when their kind's queues are under limit: half the
 * limit as they drain (some room before the next wait), the limit itself
 * after stallers were closed. */
static void budget_resume(struct ctl_server *s, bool at_limit)
{
	bool go = false;
	size_t cl = current_limit(s), ll = legacy_limit(s);
	if (s->out_waiting && out_current(s) < (at_limit ? cl + 1 : cl / 2)) {
		s->out_waiting = false;
		go = true;
	}
	if (s->legacy_waiting && s->out_legacy < (at_limit ? ll + 1 : ll / 2)) {
		s->legacy_waiting = false;
		go = true;
	}
	if (go)
		event_active(s->resume, 0, 0);
}

static void out_count_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                         void *arg)
{
	struct srv_conn *c = arg;
	struct ctl_server *s = c->s;
	s->out_total = sub_sat(s->out_total + info->n_added, info->n_deleted);
	if (c->legacy)
		s->out_legacy = sub_sat(s->out_legacy + info->n_added, info->n_deleted);
	if (info->n_deleted) {
		c->drained_ms = srv_now_ms();
		c->drained_bytes += info->n_deleted;
	}
	budget_resume(s, false);
}

/* Whether c's kind is over its part of the budget now (no side effects). */
static bool budget_over(const struct srv_conn *c)
{
	const struct ctl_server *s = c->s;
	if (c->legacy)
		return s->legacy_waiting || s->out_legacy > legacy_limit(s);
	return s->out_waiting || out_current(s) > current_limit(s);
}

bool srv_over_budget(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	if (c->legacy) {
		if (s->out_legacy <= legacy_limit(s))
			return false;
		s->legacy_waiting = true;
		return true;
	}
	if (out_current(s) <= current_limit(s))
		return false;
	s->out_waiting = true;
	return true;
}

void srv_conn_set_legacy(struct srv_conn *c, bool legacy)
{
	struct ctl_server *s = c->s;
	if (c->legacy == legacy)
		return;
	if (c->out_cb) {
		size_t q = evbuffer_get_length(bufferevent_get_output(c->bev));
		s->out_legacy = legacy ? s->out_legacy + q : sub_sat(s->out_legacy, q);
	}
	c->legacy = legacy;
}

bool srv_conn_behind(struct srv_conn *c)
{
	return c->streaming ||
	       evbuffer_get_length(bufferevent_get_output(c->bev)) > SRV_OUT_LOW;
}

static void out_count_stop(struct srv_conn *c)
{
	if (!c->out_cb)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t n = evbuffer_get_length(out);
	evbuffer_remove_cb_entry(out, c->out_cb);
	c->out_cb = NULL;
	struct ctl_server *s = c->s;
	s->out_total = sub_sat(s->out_total, n);
	if (c->legacy)
		s->out_legacy = sub_sat(s->out_legacy, n);
	budget_resume(s, false);
}

/* c leaves SRV_ONLINE (the caller changes its state). */
static void srv_online_down(struct srv_conn *c)
{
	c->s->st.nodes_online--;
	srv_seen_down(c->s, &c->ip);
}

void srv_conn_free(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	if (c->state == SRV_ONLINE) {
		c->state = SRV_CLOSING;
		srv_online_down(c);
		if (!other_conn_of(s, c)) {
			struct srv_node *n = snap_node(s, c->node_id);
			log_info("mesh-control: node %lld (%s) offline%s",
			         (long long)c->node_id, n ? n->peer.name : "?",
			         c->peer_closed ? " (closed by the node)" : "");
			srv_set_offline(s, c->node_id);
			if (n && c->peer_closed && !s->stopping)
				n->closed_by_node_ms = srv_now_ms();
		}
	}
	srv_unreg_unlink(c);
	srv_conn_set_node(c, 0);
	srv_policy_conn_free(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->st.conns_active--;
	if (c->dead)
		s->n_dying--;
	out_count_stop(c);
	bufferevent_free(c->bev);
	ctl_frame_decoder_free(&c->dec);
	ctl_noise_handshake_wipe(&c->hs);
	ctl_noise_transport_wipe(&c->tr);
	sodium_memzero(c, sizeof *c);
	free(c);
}

void srv_source_of(const struct sockaddr *sa, char out[64])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	char a[INET6_ADDRSTRLEN];
	out[0] = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		if (inet_ntop(AF_INET, &in->sin_addr, a, sizeof a))
			snprintf(out, 64, "%s", a);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;
		if (!memcmp(b, mapped, sizeof mapped)) {
			if (inet_ntop(AF_INET, b + 12, a, sizeof a))
				snprintf(out, 64, "%s", a);
			return;
		}
		struct in6_addr p = in6->sin6_addr;
		memset(p.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &p, a, sizeof a))
			snprintf(out, 64, "%s/64", a);
	}
}

void srv_ip_of(const struct sockaddr *sa, struct ctl_ip *out)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		out->family = 4;
		memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		bool v4 = !memcmp(b, mapped, sizeof mapped);
		out->family = v4 ? 4 : 6;
		memcpy(out->addr, v4 ? b + 12 : b, v4 ? 4 : 16);
	}
}

void srv_conn_drop(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	if (c->state == SRV_ONLINE) {
		c->state = SRV_CLOSING;
		srv_online_down(c);
		if (!other_conn_of(s, c))
			srv_set_offline(s, c->node_id);
	}
	srv_conn_kill(c);
}

void srv_conn_kill(struct srv_conn *c)
{
	if (c->dead)
		return;
	if (c->state == SRV_ONLINE)
		srv_online_down(c);
	c->state = SRV_CLOSING;
	c->dead = true;
	c->s->n_dying++;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	event_active(c->s->reap, 0, 0);
}

static void reap_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->dead)
			srv_conn_free(c);
	}
}

static void closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct srv_conn *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		srv_conn_free(c);
}

/* Sends ERROR, then closes once it is flushed (or at the next tick). */
void srv_conn_error_close(struct srv_conn *c, uint32_t code, const char *text)
{
	struct ctl_msg m = {.type = CTL_MSG_ERROR};
	m.u.error.code = code;
	snprintf(m.u.error.text, sizeof m.u.error.text, "%s", text);
	srv_conn_send_close(c, &m);
}

void srv_conn_send_close(struct srv_conn *c, const struct ctl_msg *m)
{
	if (c->state == SRV_CLOSING)
		return;
	int r = (c->state == SRV_HANDSHAKE) ? -EINVAL : srv_send_msg(c, m);
	if (c->state == SRV_ONLINE)
		srv_online_down(c);
	/* mark offline now; the flush may take a while */
	if (c->node_id && (c->state == SRV_ONLINE) && !other_conn_of(c->s, c)) {
		const struct srv_node *n = srv_snap_find(c->s, c->node_id);
		if (n && n->peer.online)
			srv_set_offline(c->s, c->node_id);
	}
	c->state = SRV_CLOSING;
	srv_conn_set_node(c, 0);
	if (r < 0) { /* freed by the reaper: the caller may be read_cb */
		srv_conn_kill(c);
		return;
	}
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, closing_write_cb, NULL, c);
	c->opened_ms = srv_now_ms(); /* closing deadline base */
}

/* --- receiving ---------------------------------------------------------- */

static int on_hs1(struct srv_conn *c, const struct ctl_frame *f)
{
	struct ctl_server *s = c->s;
	if (f->type != CTL_FRAME_HS1) {
		s->st.bad_frames++;
		return -EPROTO;
	}
	/* before any X25519: a saved message 1 sent in a loop costs the
	 * sender a TCP connect and the server five scalar multiplications */
	if (!srv_hs_allow(s, c->source, srv_now_ms())) {
		s->st.handshakes_limited++;
		log_debug("mesh-control: %s: over the handshake rate; closing", c->peer);
		return -EAGAIN;
	}
	uint8_t pl[64];
	size_t pl_len = 0;
	/* the state after the pre-message is the same for every node */
	c->hs = s->hs_template;
	int r = ctl_noise_read_msg1(&c->hs, f->body, f->len, pl, sizeof pl, &pl_len);
	if (r < 0) {
		s->st.handshakes_failed++;
		log_debug("mesh-control: %s: handshake failed (%s)", c->peer,
		          strerror(-r));
		return r;
	}
	/* No replay table for message 1's timestamp: a replayed message 1
	 * yields a session only the holder of the initiator's private keys can
	 * use, and nothing changes before its first transport message. A
	 * table only locked out nodes whose clock went backwards. */
	memcpy(c->machine_key, ctl_noise_remote_static(&c->hs), CTL_KEY_LEN);
	uint8_t m2[CTL_NOISE_MSG2_MIN], fr[CTL_NOISE_MSG2_MIN + 8];
	size_t m2_len = 0, fr_len = 0;
	r = ctl_noise_write_msg2(&c->hs, NULL, 0, m2, sizeof m2, &m2_len);
	if (r == 0)
		r = ctl_frame_encode_handshake(CTL_FRAME_HS2, m2, m2_len, fr, sizeof fr,
		                               &fr_len);
	if (r == 0)
		r = ctl_noise_split(&c->hs, &c->tr);
	if (r < 0) {
		s->st.handshakes_failed++;
		return r;
	}
	bufferevent_write(c->bev, fr, fr_len);
	s->st.bytes_out += fr_len;
	c->last_send_ms = srv_now_ms();
	ctl_frame_decoder_set_transport(&c->dec, &c->tr);
	ctl_frame_decoder_set_max(&c->dec, CTL_FRAME_NODE_MAX);
	c->state = SRV_WAIT_REG;
	s->st.handshakes_ok++;
	return 0;
}

/* May a connection in state st send a message of this type? Judged from
 * the frame's type byte, before anything is decoded: what a state does not
 * take is never parsed. ENDPOINTS from a pending node are taken but not
 * decoded (nothing a pending node says is stored; its client sends them
 * again once online). */
static bool type_allowed(enum srv_conn_state st, uint8_t type)
{
	switch (type) {
	case CTL_MSG_KEEPALIVE:
	case CTL_MSG_ERROR:
		return st == SRV_WAIT_REG || st == SRV_PENDING || st == SRV_ONLINE ||
		       st == SRV_RELAY;
	case CTL_MSG_REGISTER_REQ:
	case CTL_MSG_RELAY_REGISTER:
		return st == SRV_WAIT_REG;
	case CTL_MSG_ENDPOINTS:
		return st == SRV_PENDING || st == SRV_ONLINE;
	case CTL_MSG_LOGOUT:
		/* a pending node's is taken but changes nothing (on_msg) */
		return st == SRV_PENDING || st == SRV_ONLINE;
	default:
		return false;
	}
}

static int on_msg(struct srv_conn *c, const struct ctl_frame *f)
{
	struct ctl_server *s = c->s;
	struct ctl_msg m;
	struct ctl_msg_err me;
	if (!type_allowed(c->state, f->type)) {
		s->st.bad_messages++;
		log_debug("mesh-control: %s: unexpected message type 0x%02x (%s)",
		          c->peer, f->type,
		          ctl_msg_type_name(f->type) ? ctl_msg_type_name(f->type)
		                                     : "unknown");
		return -EPROTO;
	}
	if (f->type == CTL_MSG_KEEPALIVE) {
		/* carries nothing: not parsed, but it must stay small */
		if (f->len <= SRV_KEEPALIVE_MAX)
			return 0;
		s->st.bad_messages++;
		log_debug("mesh-control: %s: KEEPALIVE of %zu bytes", c->peer, f->len);
		return -EPROTO;
	}
	if (f->type == CTL_MSG_LOGOUT) {
		/* carries nothing either (a newer node may add fields) */
		/* Only an approved node's LOGOUT touches the store. A pending
		 * one is just closed and its row stays until it times out:
		 * removing it would free its max_pending slot for the next
		 * keyless registration, so that handshake, REGISTER, LOGOUT
		 * in a loop would churn the store past the limit. */
		if (f->len <= SRV_KEEPALIVE_MAX && c->state == SRV_PENDING)
			return -ECONNRESET;
		if (f->len <= SRV_KEEPALIVE_MAX)
			return srv_on_logout(c);
		s->st.bad_messages++;
		log_debug("mesh-control: %s: LOGOUT of %zu bytes", c->peer, f->len);
		return -EPROTO;
	}
	if (f->type == CTL_MSG_ENDPOINTS && c->state == SRV_PENDING) {
		s->st.pending_ignored++;
		return 0;
	}
	int r = ctl_msg_decode_limited(f->type, f->body, f->len, SRV_NODE_MAX_TOKENS, &m,
	                               &me);
	if (r < 0) {
		s->st.bad_messages++;
		log_debug("mesh-control: %s: bad message type 0x%02x: %s", c->peer,
		          f->type, me.text);
		return r;
	}
	switch (m.type) {
	case CTL_MSG_REGISTER_REQ:
		r = srv_on_register(c, &m.u.reg_req);
		break;
	case CTL_MSG_RELAY_REGISTER:
		r = srv_on_relay_register(c, &m.u.relay_reg);
		break;
	case CTL_MSG_ENDPOINTS:
		r = srv_on_endpoints(c, &m.u.endpoints);
		break;
	case CTL_MSG_ERROR:
		log_info("mesh-control: %s: node says error %u: %s", c->peer,
		         m.u.error.code, m.u.error.text);
		r = -ECONNRESET;
		break;
	default:
		r = -EPROTO;
		break;
	}
	ctl_msg_free(&m);
	return r;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct srv_conn *c = arg;
	struct ctl_server *s = c->s;
	struct evbuffer *in = bufferevent_get_input(bev);
	int r = 0;
	while (r >= 0 && c->state != SRV_CLOSING && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t off = 0;
		while (off < v.iov_len && r >= 0 && c->state != SRV_CLOSING) {
			size_t used = 0;
			struct ctl_frame f;
			int d =
			    ctl_frame_decode(&c->dec, (const uint8_t *)v.iov_base + off,
			                     v.iov_len - off, &used, &f);
			off += used;
			if (d < 0) {
				s->st.bad_frames++;
				if (d == -EMSGSIZE)
					s->st.frames_too_big++;
				log_debug("mesh-control: %s: bad frame (%s)", c->peer,
				          strerror(-d));
				r = d;
			} else if (d == CTL_FRAME_READY) {
				c->last_recv_ms = srv_now_ms();
				r = c->state == SRV_HANDSHAKE ? on_hs1(c, &f)
				                              : on_msg(c, &f);
			}
		}
		s->st.bytes_in += off;
		evbuffer_drain(in, off);
	}
	if (r < 0 && c->state != SRV_CLOSING)
		srv_conn_free(c);
}

/* The output queue drained below SRV_OUT_LOW: the next chunks of a map
 * under way, then, for a node held back from map updates while it was
 * behind, one update to the current version (its missed deltas are not
 * queued anywhere: it gets what changed since the version it has). */
static void write_cb(struct bufferevent *bev, void *arg)
{
	struct srv_conn *c = arg;
	if (c->state == SRV_RELAY) {
		if (srv_relay_update(c) < 0)
			srv_conn_free(c);
		return;
	}
	if (c->state != SRV_ONLINE)
		return;
	if (c->streaming && srv_stream_pump(c) < 0) {
		srv_conn_free(c);
		return;
	}
	if (!srv_conn_needs_update(c) || srv_conn_behind(c))
		return;
	if (srv_send_update(c) < 0)
		srv_conn_free(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct srv_conn *c = arg;
	/* The node's FIN, or its kernel's RST (its process died): the node
	 * ended this connection, not a timeout or a fault of ours. */
	int e = EVUTIL_SOCKET_ERROR();
	c->peer_closed = (what & BEV_EVENT_EOF) ||
	                 ((what & BEV_EVENT_ERROR) && (e == ECONNRESET || e == EPIPE));
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		srv_conn_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct ctl_server *s = arg;
	s->st.conns_total++;
	char source[64];
	srv_source_of(sa, source);
	if (!srv_unreg_admit(s, source)) {
		evutil_closesocket(fd);
		return;
	}
	if (s->cfg.sndbuf) /* best effort: the kernel may round it */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.sndbuf,
		                 sizeof s->cfg.sndbuf);
	struct srv_conn *c = calloc(1, sizeof *c);
	struct bufferevent *bev =
	    bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !bev) {
		free(c);
		if (bev)
			bufferevent_free(bev);
		else
			evutil_closesocket(fd);
		return;
	}
	c->s = s;
	c->bev = bev;
	c->state = SRV_HANDSHAKE;
	c->opened_ms = c->last_recv_ms = c->last_send_ms = srv_now_ms();
	sockaddr_format((const struct sockaddr_storage *)sa, c->peer, sizeof c->peer);
	memcpy(c->source, source, sizeof c->source);
	srv_ip_of(sa, &c->ip);
	ctl_frame_decoder_init(&c->dec);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	srv_unreg_add(c);
	s->st.conns_active++;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, SRV_OUT_LOW, 0);
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_count_cb, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Bytes a connection that is behind must drain per second, on average
 * since it fell behind, once it has been behind for behind_ms: a node on
 * a slow link that reads is never closed (it would only start its map
 * again), one that trickles a few bytes to stay open is. */
#define SRV_MIN_DRAIN_PER_S 1024u
/* True when c has not read its map updates for too long, judged by how
 * much left its queue, not by how long the queue stayed over SRV_OUT_LOW
 * (a map going out refills it as it drains):
 * - nothing drained for behind_ms (50 s by default), or less than
 *   SRV_MIN_DRAIN_PER_S on average since it fell behind, after behind_ms;
 * - while maps for others wait for the queues' budget (over): nothing
 *   drained for a fifth of behind_ms (10 s; TCP's own retries take less)
 *   from a queue over SRV_OUT_LOW + SRV_CHUNK_BYTES (more than a node
 *   streaming its map holds: one that holds less frees next to nothing of
 *   the budget, and in a join storm of 10,000 such closes were of nodes
 *   that read, starting their maps again).
 * Not judged by the queue's size beyond that: an older node's single
 * MAP_FULL, a relay's key list or a catch-up delta after a chunked map (up
 * to a frame) can each be MBs, and bytes leave the queue only when the
 * kernel's send buffer has room again, in bursts seconds apart for a slow
 * but steady reader; a shorter quiet time closes those, and they would only
 * start their maps again. */
static bool conn_stalled(struct srv_conn *c, uint64_t now, bool over)
{
	struct ctl_server *s = c->s;
	size_t q = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (q <= SRV_OUT_LOW) {
		c->behind_ms = 0;
		return false;
	}
	if (!c->behind_ms) {
		c->behind_ms = now;
		c->behind_drained = c->drained_bytes;
		if (c->drained_ms < now)
			c->drained_ms = now; /* judged from when it fell behind */
		return false;
	}
	uint64_t since = now - c->behind_ms;
	uint64_t quiet =
	    now - (c->drained_ms > c->behind_ms ? c->drained_ms : c->behind_ms);
	uint64_t drained = c->drained_bytes - c->behind_drained;
	bool stalled =
	    quiet > s->cfg.behind_ms ||
	    (since > s->cfg.behind_ms && drained < since * SRV_MIN_DRAIN_PER_S / 1000) ||
	    (over && q > SRV_OUT_LOW + SRV_CHUNK_BYTES && quiet > s->cfg.behind_ms / 5);
	if (stalled) {
		s->st.slow_closed++;
		log_info("mesh-control: %s: %s %lld read %llu bytes of its updates in "
		         "%llu ms, none in the last %llu ms (%zu bytes queued); closing",
		         c->peer, c->state == SRV_RELAY ? "relay" : "node",
		         (long long)(c->state == SRV_RELAY ? c->relay_id : c->node_id),
		         (unsigned long long)drained, (unsigned long long)since,
		         (unsigned long long)quiet, q);
	}
	return stalled;
}

/* Every tick: handshake deadline, idle close, keepalives, stuck closers,
 * nodes that stopped reading. */
static void tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	uint64_t now = srv_now_ms();
	struct ctl_msg ka = {.type = CTL_MSG_KEEPALIVE};
	/* judged once per kind (older nodes, the others), and while maps wait
	 * for the budget: every staller goes, not just enough to dip under it */
	struct srv_conn cur = {.s = s}, old = {.s = s, .legacy = true};
	bool over_cur = budget_over(&cur), over_old = budget_over(&old);
	size_t closed = 0;
	for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->state == SRV_CLOSING) {
			if (now - c->opened_ms > 5000)
				srv_conn_free(c);
		} else if (c->state == SRV_HANDSHAKE || c->state == SRV_WAIT_REG) {
			if (now - c->opened_ms > s->cfg.handshake_ms) {
				s->st.idle_closed++;
				srv_conn_free(c);
			}
		} else if ((c->state == SRV_ONLINE || c->state == SRV_PENDING ||
		            c->state == SRV_RELAY) &&
		           conn_stalled(c, now, c->legacy ? over_old : over_cur)) {
			srv_conn_free(c);
			closed++;
		} else if (now - c->last_recv_ms > s->cfg.idle_ms) {
			s->st.idle_closed++;
			log_info("mesh-control: %s: silent for %u ms; closing", c->peer,
			         s->cfg.idle_ms);
			srv_conn_free(c);
		} else if (now - c->last_send_ms >= s->cfg.keepalive_ms) {
			if (srv_send_msg(c, &ka) < 0)
				srv_conn_free(c);
		}
	}
	/* what the stallers held is free: the maps that waited go now */
	if (closed)
		budget_resume(s, true);
}

/* --- public ------------------------------------------------------------- */

static uint32_t dflt(uint32_t v, uint32_t d)
{
	return v ? v : d;
}

struct ctl_server *ctl_server_new(const struct ctl_server_config *cfg, char *err,
                                  size_t errlen)
{
	struct ctl_server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	s->cfg.max_conns = dflt(cfg->max_conns, 10000);
	s->cfg.handshake_ms = dflt(cfg->handshake_ms, 10000);
	s->cfg.idle_ms = dflt(cfg->idle_ms, 90000);
	s->cfg.keepalive_ms = dflt(cfg->keepalive_ms, 25000);
	s->cfg.poll_ms = dflt(cfg->poll_ms, 500);
	s->cfg.coalesce_ms = dflt(cfg->coalesce_ms, 100);
	s->cfg.ephemeral_timeout_s = dflt(cfg->ephemeral_timeout_s, 300);
	s->cfg.reclaim_after_s = dflt(cfg->reclaim_after_s, 60);
	s->cfg.behind_ms = dflt(cfg->behind_ms, 2 * s->cfg.keepalive_ms);
	s->cfg.beat_ms = dflt(cfg->beat_ms, 2000);
	s->cfg.dead_after_s = dflt(cfg->dead_after_s, 10);
	if (!s->cfg.max_nodes || s->cfg.max_nodes > CTL_MAP_PEERS_MAX)
		s->cfg.max_nodes = CTL_MAP_PEERS_MAX;
	s->cfg.max_pending = dflt(cfg->max_pending, 100);
	s->cfg.max_pending_per_source = dflt(cfg->max_pending_per_source, 8);
	s->cfg.max_unreg = dflt(cfg->max_unreg, 1024);
	if (s->cfg.max_unreg > s->cfg.max_conns / 2)
		s->cfg.max_unreg = s->cfg.max_conns / 2 ? s->cfg.max_conns / 2 : 1;
	s->cfg.max_unreg_per_source = dflt(cfg->max_unreg_per_source, 256);
	s->cfg.hs_per_source = dflt(cfg->hs_per_source, SRV_HS_SOURCE_RATE);
	s->cfg.hs_total = dflt(cfg->hs_total, SRV_HS_RATE);
	if (!s->cfg.max_outbuf)
		s->cfg.max_outbuf = (size_t)64 << 20;
	if (!s->cfg.out_budget)
		s->cfg.out_budget = SRV_OUT_BUDGET;
	char addr[80];
	sockaddr_format(&cfg->listen, addr, sizeof addr);

	int r = ctl_noise_init_responder(&s->hs_template, s->cfg.server_priv, NULL, 0);
	if (r < 0) {
		snprintf(err, errlen, "the server key is not a valid X25519 key");
		goto fail;
	}
	r = ctl_store_get_meta(cfg->store, &s->meta);
	if (r < 0) {
		snprintf(err, errlen, "store: %s", ctl_store_errmsg(cfg->store));
		goto fail;
	}
	/* Nodes left online by a previous run, or by a server that stopped,
	 * are offline now: one statement, one version (not a transaction per
	 * node before we listen); those of servers that run stay online. */
	s->last_poll_s = (int64_t)time(NULL);
	s->start_s = s->last_poll_s;
	if (srv_ha_start(s, err, errlen) < 0)
		goto fail;
	if (s->cfg.no_seen_ip)
		log_info("mesh-control: --no-seen-ip: no node's address is published "
		         "(no birthday probing in this mesh)");
	if (srv_snap_refresh(s) < 0) {
		snprintf(err, errlen, "store: %s", ctl_store_errmsg(cfg->store));
		goto fail;
	}
	s->tomb_floor = s->snap_version;
	/* a policy in the store is in force before any node connects */
	srv_policy_refresh(s);
	srv_relays_refresh(s);
	memcpy(s->nodes_relays_hash, s->relays_hash, sizeof s->relays_hash);
	s->lis = evconnlistener_new_bind(
	    cfg->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	    (const struct sockaddr *)&cfg->listen, (int)cfg->listen_len);
	if (!s->lis) {
		int e = errno;
		snprintf(err, errlen, "%s: %s%s", addr, strerror(e),
		         e == EADDRINUSE ? " (is another mesh-control running?)" : "");
		goto fail;
	}
	uint32_t t = s->cfg.handshake_ms;
	if (s->cfg.idle_ms < t)
		t = s->cfg.idle_ms;
	if (s->cfg.keepalive_ms < t)
		t = s->cfg.keepalive_ms;
	t /= 4;
	if (t > 1000)
		t = 1000;
	if (t < 5)
		t = 5;
	struct timeval tv = {t / 1000, (t % 1000) * 1000};
	struct timeval pv = {s->cfg.poll_ms / 1000, (s->cfg.poll_ms % 1000) * 1000};
	s->tick = event_new(cfg->base, -1, EV_PERSIST, tick_cb, s);
	s->poll = event_new(cfg->base, -1, EV_PERSIST, srv_poll_cb, s);
	s->bcast = evtimer_new(cfg->base, srv_broadcast_cb, s);
	s->reap = event_new(cfg->base, -1, 0, reap_cb, s);
	s->resume = event_new(cfg->base, -1, 0, srv_resume_cb, s);
	s->accept_resume = evtimer_new(cfg->base, srv_accept_resume_cb, s);
	s->wb_timer = evtimer_new(cfg->base, srv_wb_timer_cb, s);
	if (!s->tick || !s->poll || !s->bcast || !s->reap || !s->resume ||
	    !s->accept_resume || !s->wb_timer || srv_byid_init(s) < 0 ||
	    srv_ha_timers(s) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	evconnlistener_set_error_cb(s->lis, srv_accept_error_cb);
	event_add(s->tick, &tv);
	event_add(s->poll, &pv);
	return s;
fail:
	ctl_server_free(s);
	return NULL;
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	/* Offline in one statement after the last write batch, not one
	 * transaction per connection: this server's nodes only (the others'
	 * stay online through them). */
	s->stopping = true;
	while (s->conns)
		srv_conn_free(s->conns);
	if (s->lis) {
		/* offline even when the last batch failed: the store must not
		 * show nodes online while the server is down */
		if (srv_wb_flush(s, true) < 0)
			log_warn("mesh-control: at stop: the last writes are lost: %s",
			         ctl_store_errmsg(s->cfg.store));
		srv_ha_stop(s);
	}
	srv_ha_free(s);
	srv_wb_free(s);
	srv_hs_free(s);
	srv_seen_free(s);
	if (s->wb_timer)
		event_free(s->wb_timer);
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->tick)
		event_free(s->tick);
	if (s->poll)
		event_free(s->poll);
	if (s->bcast)
		event_free(s->bcast);
	if (s->reap)
		event_free(s->reap);
	if (s->resume)
		event_free(s->resume);
	if (s->accept_resume)
		event_free(s->accept_resume);
	ctl_noise_handshake_wipe(&s->hs_template);
	srv_snap_free(s);
	srv_policy_free(s);
	srv_byid_free(s);
	srv_relays_free(s);
	sodium_memzero(s->cfg.server_priv, sizeof s->cfg.server_priv);
	free(s);
}

void ctl_server_local(const struct ctl_server *s, struct sockaddr_storage *ss,
                      socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	*len = sizeof *ss;
	if (getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)ss, len) < 0)
		*len = 0;
}

void ctl_server_notify(struct ctl_server *s)
{
	srv_broadcast_schedule(s);
}

void srv_note_write_fail(struct ctl_server *s)
{
	s->st.store_write_failures++;
	s->write_fail_ms = srv_now_ms();
	if (!s->write_fail_ms)
		s->write_fail_ms = 1;
}

void srv_note_write_ok(struct ctl_server *s)
{
	s->write_fail_ms = 0;
}

void ctl_server_get_stats(const struct ctl_server *s, struct ctl_server_stats *st)
{
	*st = s->st;
	st->nodes_known = s->n_nodes;
	st->nodes_approved = 0;
	for (size_t i = 0; i < s->n_nodes; i++)
		st->nodes_approved += s->nodes[i].approved;
	st->store_write_fail_age_s =
	    s->write_fail_ms ? (double)(srv_now_ms() - s->write_fail_ms) / 1000.0 : -1;
	st->map_version = s->snap_version;
	st->server_id = s->server_id;
	st->out_queued = s->out_total;
	st->zchunk_bytes = srv_zc_bytes(s);
}
