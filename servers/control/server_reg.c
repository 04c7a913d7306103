/* mesh-control's node protocol: registration, endpoints and the replay
 * table of handshake timestamps. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

#define REPLAY_MIN 1024u
#define REPLAY_MAX (1u << 18)

/* --- replay table ------------------------------------------------------- */

static uint8_t replay_hkey[crypto_shorthash_KEYBYTES];
static bool replay_hkey_set;

static size_t replay_slot(const struct srv_replay *t, size_t cap, const uint8_t *key)
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, key, CTL_KEY_LEN, replay_hkey);
	uint64_t v;
	memcpy(&v, h, sizeof v);
	size_t i = (size_t)(v & (cap - 1));
	while (t[i].used && memcmp(t[i].key, key, CTL_KEY_LEN))
		i = (i + 1) & (cap - 1);
	return i;
}

static int replay_grow(struct ctl_server *s)
{
	size_t ncap = s->replay_cap ? s->replay_cap * 2 : REPLAY_MIN;
	if (ncap > REPLAY_MAX) {
		/* Bounded: forget everything rather than grow without limit. A
		 * replay then needs a capture newer than the node's last
		 * handshake before this point anyway. */
		log_warn("mesh-control: replay table full (%zu machine keys); reset",
		         s->replay_used);
		memset(s->replay, 0, s->replay_cap * sizeof *s->replay);
		s->replay_used = 0;
		return 0;
	}
	struct srv_replay *n = calloc(ncap, sizeof *n);
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < s->replay_cap; i++)
		if (s->replay[i].used)
			n[replay_slot(n, ncap, s->replay[i].key)] = s->replay[i];
	free(s->replay);
	s->replay = n;
	s->replay_cap = ncap;
	return 0;
}

/* True (and remembered) when ts is newer than the last one from key. */
bool srv_replay_check(struct ctl_server *s, const uint8_t *key, const uint8_t *ts)
{
	if (!replay_hkey_set) {
		randombytes_buf(replay_hkey, sizeof replay_hkey);
		replay_hkey_set = true;
	}
	if ((s->replay_used + 1) * 2 > s->replay_cap && replay_grow(s) < 0)
		return false;
	size_t i = replay_slot(s->replay, s->replay_cap, key);
	struct srv_replay *e = &s->replay[i];
	if (e->used) {
		if (!ctl_tai64n_newer(ts, e->ts))
			return false;
	} else {
		e->used = true;
		memcpy(e->key, key, CTL_KEY_LEN);
		s->replay_used++;
	}
	memcpy(e->ts, ts, CTL_NOISE_TIMESTAMP_LEN);
	return true;
}

/* --- registration ------------------------------------------------------- */

static void flush_close_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		srv_conn_free(arg);
}

/* Sends REGISTER_RESP refused, then closes once flushed. A negative return
 * (send failed) leaves c to the caller to free. */
static int reg_refuse(struct srv_conn *c, enum ctl_reason code, const char *text)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP};
	m.u.reg_resp.status = CTL_REG_REFUSED;
	m.u.reg_resp.code = code;
	snprintf(m.u.reg_resp.reason, sizeof m.u.reg_resp.reason, "%s", text);
	c->s->st.registrations_refused++;
	log_info("mesh-control: %s: registration refused: %s", c->peer, text);
	c->node_id = 0;
	int r = srv_send_msg(c, &m);
	if (r < 0)
		return r;
	c->state = SRV_CLOSING;
	c->opened_ms = srv_now_ms();
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, flush_close_cb, NULL, c);
	return 0;
}

/* A node that reconnects replaces its older connections. */
static void replace_older(struct srv_conn *c, int64_t id)
{
	for (struct srv_conn *o = c->s->conns; o; o = o->next)
		if (o != c && o->node_id == id &&
		    (o->state == SRV_ONLINE || o->state == SRV_PENDING))
			srv_conn_kill(o);
}

static enum ctl_reason reason_of(int err)
{
	switch (err) {
	case CTL_STORE_EKEY_UNKNOWN:
		return CTL_REASON_AUTH_KEY_UNKNOWN;
	case CTL_STORE_EKEY_EXPIRED:
		return CTL_REASON_AUTH_KEY_EXPIRED;
	case CTL_STORE_EKEY_REVOKED:
		return CTL_REASON_AUTH_KEY_REVOKED;
	case CTL_STORE_EKEY_USED:
		return CTL_REASON_AUTH_KEY_USED;
	default:
		return CTL_REASON_INTERNAL;
	}
}

static const char *reason_text(int err)
{
	switch (err) {
	case CTL_STORE_EKEY_UNKNOWN:
		return "auth key unknown";
	case CTL_STORE_EKEY_EXPIRED:
		return "auth key expired";
	case CTL_STORE_EKEY_REVOKED:
		return "auth key revoked";
	case CTL_STORE_EKEY_USED:
		return "auth key already used";
	case CTL_STORE_ECONFLICT:
		return "node key already belongs to another node";
	case CTL_STORE_EFULL:
		return "address pool exhausted";
	default:
		return "internal error";
	}
}

int srv_go_online(struct srv_conn *c, const struct srv_node *n)
{
	struct ctl_server *s = c->s;
	int64_t id = n->id;
	replace_older(c, id);
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP};
	struct ctl_register_resp *rr = &m.u.reg_resp;
	rr->status = CTL_REG_OK;
	rr->node_id = (uint64_t)id;
	snprintf(rr->name, sizeof rr->name, "%s", n->peer.name);
	size_t nl = strlen(n->peer.name), dl = strlen(s->meta.domain);
	if (nl + 1 + dl < sizeof rr->fqdn) {
		memcpy(rr->fqdn, n->peer.name, nl);
		rr->fqdn[nl] = '.';
		memcpy(rr->fqdn + nl + 1, s->meta.domain, dl + 1);
	} else {
		snprintf(rr->fqdn, sizeof rr->fqdn, "%s", n->peer.name);
	}
	snprintf(rr->domain, sizeof rr->domain, "%s", s->meta.domain);
	memcpy(rr->ipv4, n->peer.addrs[0].addr, 4);
	memcpy(rr->ipv6, n->peer.addrs[1].addr, 16);
	char v4[CTL_ADDRSTR_MAX];
	ctl_ip_format(&n->peer.addrs[0], v4);
	c->node_id = id;
	/* Online first: if the answer cannot be sent, the caller's
	 * srv_conn_free marks the node offline again. */
	c->state = SRV_ONLINE;
	s->st.nodes_online++;
	bool was_online = n->peer.online; /* register marked it online */
	int r = srv_send_msg(c, &m);
	if (r < 0)
		return r;
	if (!was_online) { /* approved while it waited */
		struct ctl_node_update u = {.mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN,
		                            .online = true,
		                            .last_seen = (int64_t)time(NULL)};
		if (ctl_store_node_update(s->cfg.store, id, &u) < 0)
			log_warn("mesh-control: node %lld online: %s", (long long)id,
			         ctl_store_errmsg(s->cfg.store));
	}
	s->st.registrations_ok++;
	log_info("mesh-control: node %lld (%s, %s) online from %s", (long long)id,
	         n->peer.name, v4, c->peer);
	srv_snap_refresh(s);
	srv_broadcast_schedule(s);
	return srv_send_full(c);
}

/* Whether the map is surely too big for one MAP_FULL (more than
 * CTL_PEERS_MAX peers, or a body over a frame, whichever node asks). */
static bool map_too_big_for_one(const struct ctl_server *s, int64_t now)
{
	size_t n = 0, bytes = 0, largest = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *nd = &s->nodes[i];
		if (!nd->pj || !srv_node_visible(nd, now))
			continue;
		n++;
		bytes += nd->pj_len + 1;
		if (nd->pj_len + 1 > largest)
			largest = nd->pj_len + 1;
	}
	/* the node itself may be among them and is left out of its map */
	return n > (size_t)CTL_PEERS_MAX + 1 || bytes - largest > CTL_FRAME_BODY_MAX;
}

int srv_on_register(struct srv_conn *c, struct ctl_register_req *req)
{
	struct ctl_server *s = c->s;
	int64_t now = (int64_t)time(NULL);
	c->caps = req->caps & CTL_CAPS_ALL;
	/* A node that takes its map only in one message cannot get this one:
	 * refused before it is marked online (no store writes, no broadcasts),
	 * and a refusal is final for a node: it does not retry in a loop. */
	if (!(c->caps & CTL_CAP_MAP_CHUNKS) && map_too_big_for_one(s, now)) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		return reg_refuse(c, CTL_REASON_UPGRADE_REQUIRED,
		                  "this mesh's map is too big for this node's version "
		                  "of meshproxy; upgrade it (to a version that takes "
		                  "maps in chunks) and start it again");
	}
	struct ctl_store_reg reg = {.hostname = req->hostname,
	                            .auth_secret =
	                                req->auth_key[0] ? req->auth_key : NULL,
	                            .now = now,
	                            .set_online = true};
	memcpy(reg.machine_key, c->machine_key, CTL_KEY_LEN);
	memcpy(reg.node_key, req->node_key, CTL_KEY_LEN);
	memcpy(reg.disco_key, req->disco_key, CTL_KEY_LEN);
	struct ctl_node *nd = malloc(sizeof *nd);
	if (!nd)
		return -ENOMEM;
	bool created = false;
	int r = ctl_store_node_register(s->cfg.store, &reg, nd, &created);
	sodium_memzero(req->auth_key, sizeof req->auth_key);
	if (r < 0) {
		if (reason_of(r) == CTL_REASON_INTERNAL)
			log_warn("mesh-control: register: %s",
			         ctl_store_errmsg(s->cfg.store));
		free(nd);
		return reg_refuse(c, reason_of(r), reason_text(r));
	}
	int64_t id = nd->id;
	bool approved = nd->approved;
	bool expired = nd->expiry && nd->expiry <= now;
	if (created)
		log_info("mesh-control: node %lld (%s) registered from %s%s",
		         (long long)id, nd->name, c->peer,
		         approved ? "" : ", pending approval");
	free(nd);
	srv_snap_refresh(s);
	srv_broadcast_schedule(s);
	if (expired) {
		return reg_refuse(c, CTL_REASON_NODE_EXPIRED,
		                  "node expired; join again with an auth key");
	}
	const struct srv_node *n = srv_snap_find(s, id);
	if (!n) {
		return reg_refuse(c, CTL_REASON_INTERNAL, "internal error");
	}
	if (!approved) {
		struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP};
		m.u.reg_resp.status = CTL_REG_PENDING;
		snprintf(m.u.reg_resp.reason, sizeof m.u.reg_resp.reason,
		         "waiting for an admin to approve node %lld", (long long)id);
		replace_older(c, id);
		c->node_id = id;
		c->state = SRV_PENDING;
		s->st.registrations_pending++;
		log_info("mesh-control: node %lld (%s) pending approval", (long long)id,
		         n->peer.name);
		return srv_send_msg(c, &m);
	}
	return srv_go_online(c, n);
}

int srv_on_endpoints(struct srv_conn *c, const struct ctl_endpoints *eps)
{
	struct ctl_server *s = c->s;
	char buf[CTL_STORE_ENDPOINTS_MAX + 1];
	size_t off = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < eps->n && i < CTL_ENDPOINTS_MAX; i++) {
		char one[CTL_ADDRSTR_MAX];
		ctl_endpoint_format(&eps->ep[i], one);
		int w =
		    snprintf(buf + off, sizeof buf - off, "%s%s", off ? "," : "", one);
		if (w < 0 || (size_t)w >= sizeof buf - off)
			break;
		off += (size_t)w;
	}
	struct ctl_node_update u = {
	    .mask = CTL_UPD_ENDPOINTS | CTL_UPD_HOME_RELAY | CTL_UPD_LAST_SEEN,
	    .endpoints = buf,
	    .home_relay = (int)(eps->home_relay > 0x7fffffff ? 0 : eps->home_relay),
	    .last_seen = (int64_t)time(NULL)};
	int r = ctl_store_node_update(s->cfg.store, c->node_id, &u);
	if (r < 0) {
		log_warn("mesh-control: node %lld endpoints: %s", (long long)c->node_id,
		         ctl_store_errmsg(s->cfg.store));
		return r == CTL_STORE_ENOTFOUND ? -ENOENT : 0;
	}
	log_debug("mesh-control: node %lld endpoints %s relay %u", (long long)c->node_id,
	          buf, eps->home_relay);
	srv_broadcast_schedule(s);
	return 0;
}
