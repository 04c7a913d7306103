/* mesh-control serve: relays (mesh-relay). A relay connects like a node
 * (Noise IK, its relay key as the static key), sends RELAY_REGISTER instead
 * of REGISTER_REQ, and from then on receives RELAY_STATE whenever what it
 * needs changes: the node keys it admits (every approved, unexpired node)
 * and every relay (it meshes with those of its region). Nodes get the relay
 * list in their MAP_FULL. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

static void rec_to_relay(const struct ctl_relay_rec *r, struct ctl_relay *o)
{
	memset(o, 0, sizeof *o);
	o->id = (uint32_t)r->id;
	o->port = r->port;
	o->stun_port = r->stun_port;
	o->tls = r->tls;
	o->has_key = true;
	memcpy(o->key, r->key, CTL_KEY_LEN);
	snprintf(o->name, sizeof o->name, "%s", r->name);
	snprintf(o->region, sizeof o->region, "%s", r->region);
	snprintf(o->host, sizeof o->host, "%s", r->host);
}

bool srv_relays_refresh(struct ctl_server *s)
{
	struct ctl_relay_rec *recs = NULL;
	size_t n = 0;
	if (ctl_store_relay_list(s->cfg.store, &recs, &n) < 0) {
		log_warn("mesh-control: reading relays: %s",
		         ctl_store_errmsg(s->cfg.store));
		return false;
	}
	struct ctl_relay *v = n ? calloc(n, sizeof *v) : NULL;
	if (n && !v) {
		free(recs);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		rec_to_relay(&recs[i], &v[i]);
	free(recs);
	uint8_t h[32];
	crypto_generichash(h, sizeof h, (const uint8_t *)v, n * sizeof *v, NULL, 0);
	bool changed = sodium_memcmp(h, s->relays_hash, sizeof h) != 0;
	free(s->relays);
	s->relays = v;
	s->n_relays = n;
	memcpy(s->relays_hash, h, sizeof h);
	return changed;
}

void srv_relays_free(struct ctl_server *s)
{
	free(s->relays);
	s->relays = NULL;
	s->n_relays = 0;
}

static const struct ctl_relay *find_relay(const struct ctl_server *s, int64_t id)
{
	for (size_t i = 0; i < s->n_relays; i++)
		if (s->relays[i].id == (uint32_t)id)
			return &s->relays[i];
	return NULL;
}

/* The admitted keys: every visible node's node key. */
static int collect_keys(struct ctl_server *s, uint8_t (**keys)[CTL_KEY_LEN], size_t *n)
{
	int64_t now = (int64_t)time(NULL);
	*keys = malloc((s->n_nodes ? s->n_nodes : 1) * sizeof **keys);
	if (!*keys)
		return -ENOMEM;
	*n = 0;
	for (size_t i = 0; i < s->n_nodes; i++)
		if (srv_node_visible(&s->nodes[i], now))
			memcpy((*keys)[(*n)++], s->nodes[i].peer.node_key, CTL_KEY_LEN);
	return 0;
}

/* Sends c its state if it differs from what it has. */
static int send_state(struct srv_conn *c, uint8_t (*keys)[CTL_KEY_LEN], size_t n_keys)
{
	struct ctl_server *s = c->s;
	const struct ctl_relay *self = find_relay(s, c->relay_id);
	if (!self)
		return -ENOENT;
	struct ctl_msg m = {.type = CTL_MSG_RELAY_STATE};
	m.u.relay_state.version = (uint64_t)s->snap_version;
	m.u.relay_state.self = *self;
	m.u.relay_state.keys = keys;
	m.u.relay_state.n_keys = n_keys;
	m.u.relay_state.relays = s->relays;
	m.u.relay_state.n_relays = s->n_relays;
	uint8_t h[32];
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, sizeof h);
	crypto_generichash_update(&st, (const uint8_t *)keys, n_keys * CTL_KEY_LEN);
	crypto_generichash_update(&st, s->relays_hash, sizeof s->relays_hash);
	crypto_generichash_final(&st, h, sizeof h);
	if (sodium_memcmp(h, c->relay_sent, sizeof h) == 0)
		return 0;
	int r = srv_send_msg(c, &m);
	if (r == 0)
		memcpy(c->relay_sent, h, sizeof h);
	return r;
}

void srv_relays_broadcast(struct ctl_server *s)
{
	uint8_t(*keys)[CTL_KEY_LEN] = NULL;
	size_t n = 0;
	bool any = false;
	for (struct srv_conn *c = s->conns; c && !any; c = c->next)
		any = c->state == SRV_RELAY;
	if (!any || collect_keys(s, &keys, &n) < 0)
		return;
	for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->state != SRV_RELAY)
			continue;
		if (!find_relay(s, c->relay_id)) {
			log_info(
			    "mesh-control: relay %lld removed; closing its connection",
			    (long long)c->relay_id);
			srv_conn_error_close(c, CTL_REASON_NODE_REMOVED, "relay removed");
			continue;
		}
		/* one that has not drained the last one gets the state
		 * then (srv_relay_update from its write callback) */
		if (!srv_conn_behind(c) && send_state(c, keys, n) < 0)
			srv_conn_free(c);
	}
	free(keys);
}

int srv_relay_update(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	uint8_t(*keys)[CTL_KEY_LEN] = NULL;
	size_t n = 0;
	if (srv_conn_behind(c) || !find_relay(s, c->relay_id))
		return 0; /* removed: srv_relays_broadcast closes it */
	if (collect_keys(s, &keys, &n) < 0)
		return -ENOMEM;
	int r = send_state(c, keys, n);
	free(keys);
	return r;
}

static uint32_t reason_of(int err)
{
	switch (err) {
	case CTL_STORE_EKEY_REVOKED:
		return CTL_REASON_AUTH_KEY_REVOKED;
	case CTL_STORE_EKEY_USED:
		return CTL_REASON_AUTH_KEY_USED;
	case CTL_STORE_EKEY_UNKNOWN:
		return CTL_REASON_AUTH_KEY_UNKNOWN;
	}
	return CTL_REASON_INTERNAL;
}

int srv_on_relay_register(struct srv_conn *c, struct ctl_relay_register *req)
{
	struct ctl_server *s = c->s;
	const struct ctl_relay *rl = &req->relay;
	if (rl->has_key && sodium_memcmp(rl->key, c->machine_key, CTL_KEY_LEN) != 0) {
		srv_conn_error_close(c, CTL_REASON_INTERNAL,
		                     "relay key differs from the handshake key");
		return 0;
	}
	struct ctl_relay_reg reg = {
	    .secret = req->auth_key[0] ? req->auth_key : NULL,
	    .region = rl->region,
	    .host = rl->host,
	    .port = rl->port,
	    .stun_port = rl->stun_port,
	    .tls = rl->tls,
	    .now = (int64_t)time(NULL),
	};
	memcpy(reg.key, c->machine_key, CTL_KEY_LEN);
	struct ctl_relay_rec rec;
	int r = ctl_store_relay_register(s->cfg.store, &reg, &rec);
	if (r < 0) {
		char text[CTL_TEXT_MAX];
		snprintf(text, sizeof text, "%s", ctl_store_errmsg(s->cfg.store));
		log_info("mesh-control: %s: relay refused: %s", c->peer, text);
		s->st.registrations_refused++;
		srv_conn_error_close(c, reason_of(r), text);
		return 0;
	}
	/* One connection per relay: an older one is replaced. */
	for (struct srv_conn *o = s->conns, *nx; o; o = nx) {
		nx = o->next;
		if (o != c && o->state == SRV_RELAY && o->relay_id == rec.id)
			srv_conn_error_close(
			    o, CTL_REASON_INTERNAL,
			    "replaced by a newer connection of this relay");
	}
	c->state = SRV_RELAY;
	c->relay_id = rec.id;
	s->st.registrations_ok++;
	log_info("mesh-control: relay %s (%s, %s:%u) online from %s", rec.name,
	         rec.region, rec.host, rec.port, c->peer);
	/* The store's version moved if the relay is new or changed: nodes and
	 * the other relays hear about it from the broadcast. */
	srv_relays_refresh(s);
	uint8_t(*keys)[CTL_KEY_LEN] = NULL;
	size_t n = 0;
	if (collect_keys(s, &keys, &n) < 0)
		return -ENOMEM;
	r = send_state(c, keys, n);
	free(keys);
	srv_broadcast_schedule(s);
	return r;
}
