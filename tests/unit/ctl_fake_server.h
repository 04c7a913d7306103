/* A fake mesh-control for tests/unit/test_control_client.c: Noise IK
 * responder + frames + messages on the test's event loop, scriptable
 * (register ok / pending / refused, close at accept, mute handshake) and
 * counting what the client sends. Static functions: include it once. */
#ifndef MESH_CTL_FAKE_SERVER_H
#define MESH_CTL_FAKE_SERVER_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <time.h>

#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "core/control/zmsg.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- fake server ---- */

/* FS_REFUSED_INTERNAL: "refused" with code INTERNAL, as servers before
 * control review M2 sent a busy database or a full disk. */
enum fs_reg { FS_OK, FS_PENDING, FS_REFUSED, FS_REFUSED_INTERNAL };

struct fconn {
	struct fsrv *s;
	struct bufferevent *bev;
	struct ctl_noise_handshake hs;
	struct ctl_noise_transport t;
	bool transport;
	struct ctl_frame_decoder dec;
};

struct fsrv {
	struct event_base *base;
	struct evconnlistener *lis;
	uint16_t port;
	uint8_t priv[32], pub[32];
	struct fconn *conn;
	int accepts;
	uint64_t accept_ms[32];
	enum fs_reg reg;
	bool close_at_once, send_full_on_ok, mute;
	bool zstd; /* map messages go compressed (ZMAP) */
	int n_reg, n_eps, n_ka, hs_fail;
	int n_logout;
	bool logout_close; /* LOGOUT: close unanswered (an older server) */
	struct ctl_endpoints last_eps;
	struct ctl_register_req last_req;
	uint64_t full_version;
};

static void fconn_free(struct fconn *fc)
{
	if (!fc)
		return;
	if (fc->s->conn == fc)
		fc->s->conn = NULL;
	bufferevent_free(fc->bev);
	ctl_frame_decoder_free(&fc->dec);
	ctl_noise_handshake_wipe(&fc->hs);
	free(fc);
}

/* One sealed frame of any type and body (a test's own bytes). */
static void fs_send_raw(struct fsrv *s, uint8_t type, const uint8_t *body, size_t blen)
{
	uint8_t *fr;
	size_t flen;

	assert_non_null(s->conn);
	fr = malloc(ctl_frame_sealed_size(blen));
	assert_int_equal(ctl_frame_seal(&s->conn->t, type, body, blen, fr,
	                                ctl_frame_sealed_size(blen), &flen),
	                 0);
	bufferevent_write(s->conn->bev, fr, flen);
	free(fr);
}

static void fs_send(struct fsrv *s, const struct ctl_msg *m)
{
	uint8_t *body, *z;
	size_t blen, zlen;
	struct ctl_msg_err err;

	assert_int_equal(ctl_msg_encode(m, &body, &blen, &err), 0);
	if (s->zstd && (m->type == CTL_MSG_MAP_FULL || m->type == CTL_MSG_MAP_DELTA ||
	                m->type == CTL_MSG_MAP_PEERS)) {
		assert_int_equal(
		    ctl_zmsg_wrap(NULL, 1, (uint8_t)m->type, body, blen, &z, &zlen), 0);
		fs_send_raw(s, CTL_MSG_ZMAP, z, zlen);
		free(z);
	} else {
		fs_send_raw(s, (uint8_t)m->type, body, blen);
	}
	free(body);
}

static void fill_peer(struct ctl_peer *p, uint64_t id, const char *name)
{
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->name, sizeof(p->name), "%s", name);
	memset(p->node_key, (int)id, CTL_KEY_LEN);
	memset(p->disco_key, (int)id + 1, CTL_KEY_LEN);
	p->n_addrs = 1;
	p->addrs[0].family = 4;
	p->addrs[0].addr[0] = 100;
	p->addrs[0].addr[1] = 64;
	p->addrs[0].addr[3] = (uint8_t)id;
	p->n_allowed = 1;
	p->allowed[0].family = 4;
	p->allowed[0].bits = 32;
	memcpy(p->allowed[0].addr, p->addrs[0].addr, 4);
	p->online = true;
}

static void fs_send_full(struct fsrv *s, uint64_t version, const uint64_t *ids, size_t n)
{
	struct ctl_msg m;
	struct ctl_peer peers[8];
	char name[16];

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_FULL;
	m.u.map.version = version;
	m.u.map.self_id = 100;
	snprintf(m.u.map.self_name, sizeof(m.u.map.self_name), "me");
	m.u.map.n_self_addrs = 1;
	ctl_ip_parse("100.64.0.100", &m.u.map.self_addrs[0]);
	snprintf(m.u.map.dns_domain, sizeof(m.u.map.dns_domain), "mesh.test");
	ctl_ip_parse("100.100.100.100", &m.u.map.magic_dns);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "n%llu", (unsigned long long)ids[i]);
		fill_peer(&peers[i], ids[i], name);
	}
	m.u.map.n_peers = n;
	m.u.map.peers = peers;
	fs_send(s, &m);
}

static void fs_send_delta(struct fsrv *s, uint64_t version, uint64_t base,
                          const uint64_t *ids, size_t n, const char *name,
                          const uint64_t *removed, size_t nr)
{
	struct ctl_msg m;
	struct ctl_peer peers[8];

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.version = version;
	m.u.delta.base_version = base;
	for (size_t i = 0; i < n; i++)
		fill_peer(&peers[i], ids[i], name);
	m.u.delta.n_peers = n;
	m.u.delta.peers = n ? peers : NULL;
	m.u.delta.n_removed = nr;
	m.u.delta.removed = (uint64_t *)removed;
	fs_send(s, &m);
}

static void fs_send_resp(struct fsrv *s, enum ctl_reg_status st, uint32_t code,
                         const char *reason)
{
	struct ctl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_REGISTER_RESP;
	struct ctl_register_resp *r = &m.u.reg_resp;
	r->status = st;
	r->code = code;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	if (st == CTL_REG_OK) {
		r->node_id = 100;
		snprintf(r->name, sizeof(r->name), "me");
		snprintf(r->fqdn, sizeof(r->fqdn), "me.mesh.test");
		snprintf(r->domain, sizeof(r->domain), "mesh.test");
		r->ipv4[0] = 100;
		r->ipv4[1] = 64;
		r->ipv4[3] = 100;
		r->ipv6[0] = 0xfd;
	}
	fs_send(s, &m);
}

static void fs_on_msg(struct fsrv *s, const struct ctl_frame *f)
{
	struct ctl_msg m;
	struct ctl_msg_err err;

	assert_int_equal(ctl_msg_decode(f->type, f->body, f->len, &m, &err), 0);
	switch (m.type) {
	case CTL_MSG_REGISTER_REQ:
		s->n_reg++;
		s->last_req = m.u.reg_req;
		if (s->reg == FS_OK) {
			fs_send_resp(s, CTL_REG_OK, 0, "");
			if (s->send_full_on_ok) {
				uint64_t ids[] = {1, 2};
				fs_send_full(s, s->full_version, ids, 2);
			}
		} else if (s->reg == FS_PENDING) {
			fs_send_resp(s, CTL_REG_PENDING, 0, "waiting for approval");
		} else if (s->reg == FS_REFUSED_INTERNAL) {
			fs_send_resp(s, CTL_REG_REFUSED, CTL_REASON_INTERNAL,
			             "internal error");
		} else {
			fs_send_resp(s, CTL_REG_REFUSED, CTL_REASON_AUTH_KEY_EXPIRED,
			             "auth key expired");
		}
		break;
	case CTL_MSG_ENDPOINTS:
		s->n_eps++;
		s->last_eps = m.u.endpoints;
		break;
	case CTL_MSG_KEEPALIVE:
		s->n_ka++;
		break;
	case CTL_MSG_LOGOUT:
		s->n_logout++;
		if (s->logout_close) {
			ctl_msg_free(&m);
			fconn_free(s->conn);
			return;
		}
		fs_send(s, &(struct ctl_msg){.type = CTL_MSG_LOGOUT});
		break;
	default:
		fail_msg("unexpected message type %u", m.type);
	}
	ctl_msg_free(&m);
}

static void fs_read(struct bufferevent *bev, void *arg)
{
	struct fconn *fc = arg;
	struct fsrv *s = fc->s;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!s->mute && evbuffer_get_length(in) > 0) {
		size_t len = evbuffer_get_length(in), used;
		uint8_t *p = evbuffer_pullup(in, -1);
		struct ctl_frame f;
		int rc = ctl_frame_decode(&fc->dec, p, len, &used, &f);
		evbuffer_drain(in, used);
		if (rc < 0) {
			fconn_free(fc);
			return;
		}
		if (rc != CTL_FRAME_READY)
			continue;
		if (!fc->transport) {
			uint8_t msg2[CTL_NOISE_MSG2_MIN], fr[CTL_NOISE_MSG2_MIN + 8];
			size_t plen, mlen, flen;
			ctl_noise_init_responder(&fc->hs, s->priv, NULL, 0);
			if (f.type != CTL_FRAME_HS1 ||
			    ctl_noise_read_msg1(&fc->hs, f.body, f.len, NULL, 0, &plen) <
			        0) {
				s->hs_fail++;
				fconn_free(fc);
				return;
			}
			assert_int_equal(ctl_noise_write_msg2(&fc->hs, NULL, 0, msg2,
			                                      sizeof(msg2), &mlen),
			                 0);
			assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS2, msg2,
			                                            mlen, fr, sizeof(fr),
			                                            &flen),
			                 0);
			bufferevent_write(bev, fr, flen);
			assert_int_equal(ctl_noise_split(&fc->hs, &fc->t), 0);
			fc->transport = true;
			ctl_frame_decoder_set_transport(&fc->dec, &fc->t);
		} else {
			fs_on_msg(s, &f);
			if (s->conn != fc) /* it closed the connection */
				return;
		}
	}
}

static void fs_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		fconn_free(arg);
}

static void fs_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct fsrv *s = arg;
	struct fconn *fc;

	(void)l;
	(void)sa;
	(void)salen;
	if (s->accepts < 32)
		s->accept_ms[s->accepts] = now_ms();
	s->accepts++;
	if (s->close_at_once) {
		evutil_closesocket(fd);
		return;
	}
	fconn_free(s->conn);
	fc = calloc(1, sizeof(*fc));
	fc->s = s;
	ctl_frame_decoder_init(&fc->dec);
	fc->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(fc->bev, fs_read, NULL, fs_event, fc);
	bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
	s->conn = fc;
}

#endif
