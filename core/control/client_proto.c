/* The control client's protocol: Noise IK handshake, framed messages,
 * registration, endpoints and maps. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/control/client_int.h"
#include "core/control/zmsg.h"
#include "core/util/log.h"

static int write_bytes(struct ctl_client *c, const uint8_t *p, size_t len)
{
	if (!c->bev || bufferevent_write(c->bev, p, len) < 0)
		return -EIO;
	c->bytes_out += len;
	c->last_tx_ms = ctl_client_now_ms();
	return 0;
}

void ctl_client_start_handshake(struct ctl_client *c)
{
	uint8_t msg[CTL_NOISE_MSG1_MIN], frame[CTL_NOISE_MSG1_MIN + 8];
	size_t mlen, flen;
	int rc;

	ctl_client_set_state(c, CTL_CLIENT_HANDSHAKE, "", NULL);
	if (c->dead || c->state != CTL_CLIENT_HANDSHAKE)
		return;
	rc = ctl_noise_init_initiator(&c->hs, c->machine_priv, c->server_key, NULL, 0);
	c->have_hs = true;
	if (rc == 0)
		rc = ctl_noise_write_msg1(&c->hs, NULL, 0, msg, sizeof(msg), &mlen);
	if (rc == 0)
		rc = ctl_frame_encode_handshake(CTL_FRAME_HS1, msg, mlen, frame,
		                                sizeof(frame), &flen);
	if (rc == 0)
		rc = write_bytes(c, frame, flen);
	if (rc < 0)
		ctl_client_fail(c, "handshake: cannot start (%s)", strerror(-rc));
}

int ctl_client_send(struct ctl_client *c, const struct ctl_msg *m)
{
	uint8_t *body = NULL, *frame = NULL;
	size_t blen = 0, flen = 0;
	struct ctl_msg_err err;
	int rc;

	rc = ctl_msg_encode(m, &body, &blen, &err);
	if (rc < 0) {
		/* our own message: a bug or bad input from the owner */
		ctl_client_fail(c, "cannot encode %s: %s", ctl_msg_type_name(m->type),
		                err.text);
		return rc;
	}
	frame = malloc(ctl_frame_sealed_size(blen));
	if (!frame)
		rc = -ENOMEM;
	else
		rc = ctl_frame_seal(&c->t, (uint8_t)m->type, body, blen, frame,
		                    ctl_frame_sealed_size(blen), &flen);
	sodium_memzero(body, blen);
	free(body);
	if (rc == 0)
		rc = write_bytes(c, frame, flen);
	free(frame);
	if (rc < 0)
		ctl_client_fail(c, "cannot send %s: %s", ctl_msg_type_name(m->type),
		                strerror(-rc));
	return rc;
}

static void send_register(struct ctl_client *c)
{
	struct ctl_msg m;

	memset(&m, 0, sizeof(m));
	if (c->relay_role) {
		m.type = CTL_MSG_RELAY_REGISTER;
		if (!c->registered)
			memcpy(m.u.relay_reg.auth_key, c->auth_key,
			       sizeof(m.u.relay_reg.auth_key));
		m.u.relay_reg.relay = c->relay;
		if (ctl_client_send(c, &m) == 0)
			ctl_client_set_state(c, CTL_CLIENT_REGISTERING, "", NULL);
		sodium_memzero(&m, sizeof(m));
		return;
	}
	m.type = CTL_MSG_REGISTER_REQ;
	struct ctl_register_req *r = &m.u.reg_req;
	if (!c->registered)
		memcpy(r->auth_key, c->auth_key, sizeof(r->auth_key));
	memcpy(r->node_key, c->node_key, CTL_KEY_LEN);
	memcpy(r->disco_key, c->disco_key, CTL_KEY_LEN);
	memcpy(r->hostname, c->hostname, sizeof(r->hostname));
	memcpy(r->os, c->os, sizeof(r->os));
	memcpy(r->version, c->version, sizeof(r->version));
	r->n_tags = c->n_tags;
	memcpy(r->tags, c->tags, sizeof(r->tags));
	r->caps = CTL_CAPS_ALL;
	r->ephemeral = c->ephemeral;
	if (ctl_client_send(c, &m) == 0)
		ctl_client_set_state(c, CTL_CLIENT_REGISTERING, "", NULL);
	sodium_memzero(&m, sizeof(m));
}

static bool eps_equal(const struct ctl_endpoints *a, const struct ctl_endpoints *b)
{
	if (a->n != b->n || a->home_relay != b->home_relay)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->ep[i].family != b->ep[i].family ||
		    a->ep[i].port != b->ep[i].port ||
		    memcmp(a->ep[i].addr, b->ep[i].addr, a->ep[i].family == 4 ? 4 : 16))
			return false;
	return true;
}

void ctl_client_send_endpoints(struct ctl_client *c, bool force)
{
	struct ctl_msg m;

	if (!c->have_eps ||
	    (!force && c->eps_sent_valid && eps_equal(&c->eps, &c->eps_sent)))
		return;
	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_ENDPOINTS;
	m.u.endpoints = c->eps;
	if (ctl_client_send(c, &m) == 0) {
		c->eps_sent = c->eps;
		c->eps_sent_valid = true;
	}
}

static const char *reason_text(uint32_t code)
{
	switch (code) {
	case CTL_REASON_AUTH_KEY_UNKNOWN:
		return "auth key unknown";
	case CTL_REASON_AUTH_KEY_EXPIRED:
		return "auth key expired";
	case CTL_REASON_AUTH_KEY_REVOKED:
		return "auth key revoked";
	case CTL_REASON_AUTH_KEY_USED:
		return "auth key already used";
	case CTL_REASON_NODE_REMOVED:
		return "node removed";
	case CTL_REASON_NODE_EXPIRED:
		return "node expired";
	case CTL_REASON_AUTH_REQUIRED:
		return "an auth key is required";
	case CTL_REASON_INTERNAL:
		return "temporary server error";
	case CTL_REASON_KEY_CONFLICT:
		return "node or disco key belongs to another node";
	case CTL_REASON_UPGRADE_REQUIRED:
		return "the mesh's map is too big for this version; upgrade meshproxy";
	}
	return "refused";
}

static void on_register_resp(struct ctl_client *c, const struct ctl_register_resp *r)
{
	char detail[CTL_TEXT_MAX + CTL_DNSNAME_MAX];

	if (r->status == CTL_REG_OK) {
		c->registered = true;
		sodium_memzero(c->auth_key, sizeof(c->auth_key));
		snprintf(detail, sizeof(detail), "registered as %s", r->fqdn);
		ctl_client_set_state(c, CTL_CLIENT_ONLINE, detail, r);
		if (!c->dead && c->state == CTL_CLIENT_ONLINE)
			ctl_client_send_endpoints(c, !c->eps_sent_valid);
	} else if (r->status == CTL_REG_PENDING) {
		snprintf(detail, sizeof(detail), "%s",
		         r->reason[0] ? r->reason : "waiting for an admin to approve");
		ctl_client_set_state(c, CTL_CLIENT_PENDING, detail, r);
	} else if (r->code == CTL_REASON_INTERNAL || r->code == CTL_REASON_NONE) {
		/* Not an answer (older servers sent their busy database or
		 * full disk this way): retry with backoff. */
		ctl_client_fail(c, "server error: %s",
		                r->reason[0] ? r->reason : reason_text(r->code));
	} else {
		snprintf(detail, sizeof(detail), "%s",
		         r->reason[0] ? r->reason : reason_text(r->code));
		log_warn("control %s:%u: registration refused: %s", c->host, c->port,
		         detail);
		ctl_client_stop(c);
		ctl_client_set_state(c, CTL_CLIENT_REFUSED, detail, r);
	}
}

static void emit_map(struct ctl_client *c, bool full, bool relays, bool policy,
                     uint64_t *ch, size_t nch, uint64_t *rm, size_t nrm)
{
	struct ctl_map_change chg = {.full = full,
	                             .relays = full || relays,
	                             .policy = full || policy,
	                             .changed = ch,
	                             .n_changed = nch,
	                             .removed = rm,
	                             .n_removed = nrm};

	c->last_map = (int64_t)time(NULL);
	if (c->cb.on_map && !c->dead) {
		c->depth++;
		c->cb.on_map(c->ctx, &c->map, &chg);
		c->depth--;
	}
	free(ch);
	free(rm);
}

static void on_map_full(struct ctl_client *c, struct ctl_map_full *full)
{
	uint64_t *ch, *rm;
	size_t nch, nrm;

	if (ctl_client_map_replace(c, full, &ch, &nch, &rm, &nrm) < 0) {
		ctl_client_fail(c, "out of memory for the map");
		return;
	}
	c->maps_full++;
	emit_map(c, true, true, true, ch, nch, rm, nrm);
}

/* A MAP_FULL with more set: its peers are the first chunk; MAP_PEERS bring
 * the rest, and the map replaces ours when the last one arrives. */
static void on_map_begin(struct ctl_client *c, struct ctl_map_full *full)
{
	/* (n_peers is at most CTL_PEERS_MAX here: the decoder's limit) */
	ctl_map_clear(&c->pending);
	c->pending = *full;
	memset(full, 0, sizeof(*full));
	c->assembling = true;
}

static void on_map_peers(struct ctl_client *c, const struct ctl_map_peers *chunk)
{
	int rc;

	if (!c->assembling) {
		ctl_client_fail(c, "map chunk without a map");
		return;
	}
	rc = ctl_map_append_chunk(&c->pending, chunk);
	if (rc == -E2BIG) {
		ctl_client_fail(c, "map from the server has more than %d peers",
		                CTL_MAP_PEERS_MAX);
		return;
	}
	if (rc == -EPROTO) {
		ctl_client_fail(c,
		                "map from the server came in more than %d chunks "
		                "without peers; reconnecting",
		                CTL_MAP_EMPTY_CHUNKS_MAX);
		return;
	}
	if (rc < 0) {
		ctl_client_fail(c, "out of memory for the map");
		return;
	}
	if (chunk->more)
		return;
	c->assembling = false;
	if (ctl_map_finish(&c->pending) < 0) {
		ctl_map_clear(&c->pending);
		ctl_client_fail(c, "map from the server names a peer twice");
		return;
	}
	struct ctl_map_full full = c->pending;
	memset(&c->pending, 0, sizeof(c->pending));
	on_map_full(c, &full);
	ctl_map_clear(&full); /* what on_map_full did not take */
}

static void on_map_delta(struct ctl_client *c, const struct ctl_map_delta *d)
{
	uint64_t *ch, *rm;
	size_t nch, nrm;
	bool policy = false;
	int rc;

	if (!c->have_map || d->base_version != c->map.version) {
		ctl_client_fail(c,
		                "map delta for version %llu but ours is %llu; "
		                "reconnecting for a full map",
		                (unsigned long long)d->base_version,
		                (unsigned long long)(c->have_map ? c->map.version : 0));
		return;
	}
	rc = ctl_map_delta_changes(&c->map, d, &ch, &nch, &rm, &nrm);
	if (rc == 0) {
		rc = ctl_map_apply_delta_policy(&c->map, d, NULL, &policy);
		if (rc < 0) {
			free(ch);
			free(rm);
		}
	}
	if (rc < 0) {
		ctl_client_fail(c, "cannot apply map delta: %s", strerror(-rc));
		return;
	}
	c->maps_delta++;
	emit_map(c, false, d->has_relays, policy, ch, nch, rm, nrm);
}

/* A ZMAP (CTL_CAP_ZSTD, which this client always asks for): the map body
 * inside, at most a frame's worth; a bomb or a corrupt frame is refused
 * (counted) and the session starts again, as for any bad map. */
static int unwrap_map(struct ctl_client *c, const struct ctl_frame *f,
                      struct ctl_frame *inner, uint8_t **buf)
{
	struct ctl_msg_err err;
	*buf = NULL;
	if (!c->zdec && !(c->zdec = ctl_zdec_new())) {
		ctl_client_fail(c, "out of memory for a compressed map");
		return -ENOMEM;
	}
	int rc = ctl_zmsg_unwrap(c->zdec, f->body, f->len, CTL_FRAME_BODY_MAX,
	                         &inner->type, buf, &inner->len, &err);
	if (rc < 0) {
		c->zmaps_refused++;
		ctl_client_fail(c, "bad compressed map from the server: %s", err.text);
		return rc;
	}
	c->zmaps++;
	inner->body = *buf;
	return 0;
}

static void on_message(struct ctl_client *c, const struct ctl_frame *f)
{
	struct ctl_msg m;
	struct ctl_msg_err err;
	struct ctl_frame inner;
	uint8_t *zbuf = NULL;
	if (f->type == CTL_MSG_ZMAP) {
		if (unwrap_map(c, f, &inner, &zbuf) < 0)
			return;
		f = &inner;
	}
	int rc = ctl_msg_decode(f->type, f->body, f->len, &m, &err);
	free(zbuf);
	zbuf = NULL;

	if (rc == -EPROTO) {
		log_debug("control: ignoring message type 0x%02x", f->type);
		return;
	}
	if (rc < 0) {
		ctl_client_fail(c, "bad %s from the server: %s",
		                ctl_msg_type_name(f->type), err.text);
		return;
	}
	bool online = c->state == CTL_CLIENT_ONLINE;
	switch (m.type) {
	case CTL_MSG_REGISTER_RESP:
		on_register_resp(c, &m.u.reg_resp);
		break;
	case CTL_MSG_MAP_FULL:
		if (!online)
			ctl_client_fail(c, "map before registration");
		else if (c->assembling)
			ctl_client_fail(c, "map interrupted by another map");
		else if (m.u.map.more)
			on_map_begin(c, &m.u.map);
		else
			on_map_full(c, &m.u.map);
		break;
	case CTL_MSG_MAP_PEERS:
		if (online)
			on_map_peers(c, &m.u.chunk);
		else
			ctl_client_fail(c, "map before registration");
		break;
	case CTL_MSG_MAP_DELTA:
		if (!online)
			ctl_client_fail(c, "map delta before registration");
		else if (c->assembling)
			ctl_client_fail(c, "map delta in the middle of a map");
		else
			on_map_delta(c, &m.u.delta);
		break;
	case CTL_MSG_RELAY_STATE:
		if (!c->relay_role) {
			ctl_client_fail(c, "relay state sent to a node");
			break;
		}
		if (c->state != CTL_CLIENT_ONLINE) {
			c->registered = true;
			sodium_memzero(c->auth_key, sizeof(c->auth_key));
			ctl_client_set_state(c, CTL_CLIENT_ONLINE, "relay registered", NULL);
		}
		if (!c->dead && c->cb.on_relay_state) {
			c->depth++;
			c->cb.on_relay_state(c->ctx, &m.u.relay_state);
			c->depth--;
		}
		break;
	case CTL_MSG_ERROR:
		if (m.u.error.code == CTL_REASON_NODE_REMOVED ||
		    m.u.error.code == CTL_REASON_NODE_EXPIRED ||
		    (c->relay_role && m.u.error.code >= CTL_REASON_AUTH_KEY_UNKNOWN &&
		     m.u.error.code <= CTL_REASON_AUTH_KEY_USED)) {
			/* Final: reconnecting without an auth key would only
			 * queue this machine as a new node awaiting approval. */
			struct ctl_register_resp r = {.status = CTL_REG_REFUSED,
			                              .code = m.u.error.code};
			snprintf(r.reason, sizeof(r.reason), "%s",
			         m.u.error.text[0] ? m.u.error.text
			                           : reason_text(m.u.error.code));
			log_warn("control %s:%u: %s", c->host, c->port, r.reason);
			ctl_client_stop(c);
			ctl_client_set_state(c, CTL_CLIENT_REFUSED, r.reason, &r);
			break;
		}
		ctl_client_fail(c, "server error %u: %s", m.u.error.code, m.u.error.text);
		break;
	case CTL_MSG_LOGOUT: /* the answer to ours: removed; the server closes */
		if (c->logging_out) {
			ctl_client_stop(c);
			ctl_client_set_state(c, CTL_CLIENT_LOGGED_OUT, "logged out",
			                     NULL);
		}
		break;
	default: /* KEEPALIVE; ENDPOINTS and REGISTER_REQ are not for us */
		break;
	}
	ctl_msg_free(&m);
}

static void on_hs2(struct ctl_client *c, const struct ctl_frame *f)
{
	size_t plen = 0;
	int rc;

	if (f->type != CTL_FRAME_HS2) {
		ctl_client_fail(c,
		                "handshake: unexpected frame type 0x%02x (not a "
		                "mesh-control server?)",
		                f->type);
		return;
	}
	rc = ctl_noise_read_msg2(&c->hs, f->body, f->len, NULL, 0, &plen);
	if (rc == 0)
		rc = ctl_noise_split(&c->hs, &c->t);
	if (rc < 0) {
		ctl_client_fail(c, "handshake failed: server key mismatch or not a "
		                   "mesh-control server");
		return;
	}
	c->have_hs = false;
	c->have_transport = true;
	ctl_frame_decoder_set_transport(&c->dec, &c->t);
	ctl_client_session_up(c);
	send_register(c);
}

void ctl_client_on_read(struct ctl_client *c)
{
	struct bufferevent *bev = c->bev;
	struct evbuffer *in;

	if (!bev)
		return;
	in = bufferevent_get_input(bev);
	while (c->bev == bev && !c->dead && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		struct ctl_frame f;
		size_t used = 0;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		int rc = ctl_frame_decode(&c->dec, v.iov_base, v.iov_len, &used, &f);
		c->bytes_in += used;
		evbuffer_drain(in, used);
		if (rc < 0) {
			ctl_client_fail(c, "bad frame from the server: %s",
			                strerror(-rc));
			return;
		}
		if (rc != CTL_FRAME_READY)
			continue;
		c->last_rx_ms = ctl_client_now_ms();
		if (c->state == CTL_CLIENT_HANDSHAKE)
			on_hs2(c, &f);
		else
			on_message(c, &f);
	}
}
