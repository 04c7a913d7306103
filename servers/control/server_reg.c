/* mesh-control's node protocol: registration (admission of nodes with an
 * auth key, pending ones without) and endpoints. */
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
#include "servers/control/alloc.h"
#include "servers/control/server_int.h"

/* --- registration ------------------------------------------------------- */

static void flush_close_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		srv_conn_free(arg);
}

/* Sends m, then closes once flushed. A negative return (send failed)
 * leaves c to the caller to free. */
static int reg_send_close(struct srv_conn *c, const struct ctl_msg *m)
{
	srv_conn_set_node(c, 0);
	int r = srv_send_msg(c, m);
	if (r < 0)
		return r;
	c->state = SRV_CLOSING;
	c->opened_ms = srv_now_ms();
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, flush_close_cb, NULL, c);
	return 0;
}

/* REGISTER_RESP refused: a definite answer, final for the node. */
static int reg_refuse(struct srv_conn *c, enum ctl_reason code, const char *text)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP};
	m.u.reg_resp.status = CTL_REG_REFUSED;
	m.u.reg_resp.code = code;
	snprintf(m.u.reg_resp.reason, sizeof m.u.reg_resp.reason, "%s", text);
	log_info("mesh-control: %s: registration refused: %s", c->peer, text);
	c->s->st.registrations_refused++;
	return reg_send_close(c, &m);
}

/* ERROR internal: not an answer (busy database, disk, memory); every node
 * version takes it as "retry with backoff". */
static const char *reason_text(int err);

static int reg_retry_later(struct srv_conn *c, int err)
{
	struct ctl_msg m = {.type = CTL_MSG_ERROR};
	m.u.error.code = CTL_REASON_INTERNAL;
	snprintf(m.u.error.text, sizeof m.u.error.text, "%s", reason_text(err));
	if (err == CTL_STORE_EPENDING_FULL || err == CTL_STORE_EPENDING_BUSY)
		log_info("mesh-control: %s: not held for approval: %s; the node will "
		         "retry",
		         c->peer, ctl_store_errmsg(c->s->cfg.store));
	else
		log_warn("mesh-control: %s: registration failed: %s; the node will "
		         "retry",
		         c->peer, ctl_store_errmsg(c->s->cfg.store));
	c->s->st.registrations_retry++;
	return reg_send_close(c, &m);
}

/* A node that reconnects replaces its older connections. */
static void replace_older(struct srv_conn *c, int64_t id)
{
	for (struct srv_conn *o = srv_conn_first_of(c->s, id), *nx; o; o = nx) {
		nx = srv_conn_next_of(o);
		c->s->st.conns_walked++;
		if (o != c && (o->state == SRV_ONLINE || o->state == SRV_PENDING))
			srv_conn_kill(o);
	}
}

/* The refusal a store error means, or CTL_REASON_INTERNAL for a failure
 * that is not an answer (the node is told to retry, never refused). */
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
	case CTL_STORE_EAUTH_REQUIRED:
		return CTL_REASON_AUTH_REQUIRED;
	case CTL_STORE_EREMOVED:
		return CTL_REASON_NODE_REMOVED;
	case CTL_STORE_ECONFLICT:
		return CTL_REASON_KEY_CONFLICT;
	case CTL_STORE_EEXPIRED:
		return CTL_REASON_NODE_EXPIRED;
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
	case CTL_STORE_EAUTH_REQUIRED:
		return "this server admits nodes with an auth key only; join with a "
		       "token that carries one";
	case CTL_STORE_EREMOVED:
		return "this node was removed; it may join again only with an auth key "
		       "created after the removal";
	case CTL_STORE_EEXPIRED:
		return "node expired; join again with an auth key created after the "
		       "expiry (mesh-proxy up --join TOKEN, same --state)";
	case CTL_STORE_EPENDING_FULL:
		return "too many nodes waiting for approval; join with an auth key or "
		       "ask the admin";
	case CTL_STORE_EPENDING_BUSY:
		return "a node waiting for approval holds this node's keys; retrying";
	case CTL_STORE_ECONFLICT:
		return "node key or disco key already belongs to another node (a "
		       "copied state directory?)";
	default:
		return "temporary server error; retrying";
	}
}

static int reg_pending(struct srv_conn *c, const struct ctl_node *nd)
{
	struct ctl_server *s = c->s;
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_RESP};
	struct ctl_register_resp *rr = &m.u.reg_resp;
	rr->status = CTL_REG_PENDING;
	rr->node_id = (uint64_t)nd->id;
	/* The name the server gave it (not the one it asked for): the
	 * admin approves this one. */
	snprintf(rr->name, sizeof rr->name, "%s", nd->name);
	snprintf(rr->reason, sizeof rr->reason,
	         "waiting for an admin to approve node %lld (%s)", (long long)nd->id,
	         nd->name);
	replace_older(c, nd->id);
	srv_conn_set_node(c, nd->id);
	c->state = SRV_PENDING;
	s->st.registrations_pending++;
	log_info("mesh-control: node %lld (%s) pending approval", (long long)nd->id,
	         nd->name);
	return srv_send_msg(c, &m);
}

/* Peers take seen_ip, never an address the node reports, as where it is
 * when they probe it (docs/disco.md). A node new to the snapshot gets it
 * as it goes in; one whose row the store just changed gets it when the
 * refresh reads that change; otherwise (a reconnect from another address
 * while still online, an approval) the row's version is bumped at the next
 * flush, so that others get it in a delta. */
void srv_note_seen(struct ctl_server *s, int64_t id, const struct ctl_ip *ip,
                   int64_t stored_version)
{
	struct ctl_ip pub = {0}; /* published: none */
	if (!s->cfg.no_seen_ip && !srv_seen_shared(s, ip))
		pub = *ip;
	bool f;
	size_t i = srv_snap_index(s, id, &f);
	if (!f) {
		s->seen_hint_id = id;
		s->seen_hint = pub;
		return;
	}
	if (!memcmp(&s->nodes[i].seen, &pub, sizeof pub))
		return;
	s->nodes[i].seen = pub;
	if (stored_version <= s->nodes[i].version)
		srv_wb_touch(s, id);
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
	srv_conn_set_node(c, id);
	bool f; /* back: its last close no longer says it is gone */
	size_t ni = srv_snap_index(s, id, &f);
	if (f) {
		s->nodes[ni].closed_by_node_ms = 0;
		s->nodes[ni].reclaimed = false; /* online again: fair game */
	}
	/* Online first: if the answer cannot be sent, the caller's
	 * srv_conn_free marks the node offline again. */
	c->state = SRV_ONLINE;
	s->st.nodes_online++;
	srv_seen_up(s, &c->ip);
	/* register marked it online, through this server */
	bool was_online = n->peer.online && n->online_server == s->server_id;
	int r = srv_send_msg(c, &m);
	if (r < 0)
		return r;
	/* approved while it waited: online with the next write batch */
	if (!was_online)
		srv_wb_set_online(s, id);
	s->st.registrations_ok++;
	log_info("mesh-control: node %lld (%s, %s) online from %s", (long long)id,
	         n->peer.name, v4, c->peer);
	srv_note_seen(s, id, &c->ip, 0);
	srv_snap_refresh(s);
	srv_broadcast_schedule(s);
	return srv_send_full(c);
}

/* Whether the map node self (0: a new one) would get is too big for one
 * MAP_FULL: more than CTL_PEERS_MAX peers, or a body over a frame. The
 * body is counted as it would be built: the header (self, DNS, the relay
 * list; self's name and addresses at their longest) plus every visible
 * peer's entry but its own, so that a node admitted here is never closed
 * when its map fails. */
static bool map_too_big_for_one(const struct ctl_server *s, int64_t self, int64_t now)
{
	size_t n = 0, bytes = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *nd = &s->nodes[i];
		if (!nd->pj || nd->id == self || !srv_node_visible(nd, now))
			continue;
		n++;
		bytes += nd->pj_len + 1; /* its text and a comma */
	}
	if (n > (size_t)CTL_PEERS_MAX)
		return true;
	struct ctl_msg m = {.type = CTL_MSG_MAP_FULL};
	struct ctl_map_full *mf = &m.u.map;
	mf->version = (uint64_t)INT64_MAX;
	mf->self_id = (uint64_t)INT64_MAX;
	memset(mf->self_name, 'x', sizeof mf->self_name - 1);
	/* the longest owner: a 63-byte user, four 63-byte tags */
	memset(mf->self_user, 'a', sizeof mf->self_user - 1);
	for (int k = 0; k < 4; k++)
		snprintf(mf->self_tags + strlen(mf->self_tags),
		         sizeof mf->self_tags - strlen(mf->self_tags), "%stag:%059d",
		         k ? "," : "", 0);
	mf->n_self_addrs = 2;
	mf->self_addrs[0].family = 4;
	memset(mf->self_addrs[0].addr, 0xff, 4);
	mf->self_addrs[1].family = 6;
	memset(mf->self_addrs[1].addr, 0xff, 16);
	snprintf(mf->dns_domain, sizeof mf->dns_domain, "%s", s->meta.domain);
	mf->relays = s->relays;
	mf->n_relays = s->n_relays;
	mf->magic_dns.family = 4;
	memcpy(mf->magic_dns.addr, (const uint8_t[]){100, 100, 100, 100}, 4);
	uint8_t *body = NULL;
	size_t head = 0;
	struct ctl_msg_err me;
	if (ctl_msg_encode_map_texts(&m, NULL, 0, &body, &head, &me) < 0)
		return true; /* cannot even encode the header */
	free(body);
	return head + bytes > CTL_FRAME_BODY_MAX;
}

/* A known node's REGISTER bucket: false (and nothing taken) when empty. */
static bool reg_token(struct srv_node *n, uint64_t now)
{
	if (n->reg_ms == 0 || now < n->reg_ms) {
		if (n->reg_ms == 0)
			n->reg_tokens = SRV_REG_BURST;
	} else {
		double t = n->reg_tokens + (double)(now - n->reg_ms) / SRV_REG_REFILL_MS;
		n->reg_tokens = t > SRV_REG_BURST ? SRV_REG_BURST : t;
	}
	n->reg_ms = now;
	if (n->reg_tokens < 1)
		return false;
	n->reg_tokens -= 1;
	return true;
}

/* A known node registering again faster than its bucket allows: not an
 * answer, a retry later (ERROR INTERNAL; every node version backs off on
 * it). Costs no store access. */
static int reg_slow_down(struct srv_conn *c, int64_t id)
{
	struct ctl_msg m = {.type = CTL_MSG_ERROR};
	m.u.error.code = CTL_REASON_INTERNAL;
	snprintf(m.u.error.text, sizeof m.u.error.text,
	         "slow down: this node registered more than %d times in a few "
	         "seconds; retrying later",
	         (int)SRV_REG_BURST);
	log_debug("mesh-control: %s: node %lld registers too often; told to slow "
	          "down",
	          c->peer, (long long)id);
	c->s->st.registrations_throttled++;
	return reg_send_close(c, &m);
}

/* Whether a REGISTER_REQ of known node nd changes nothing the store keeps
 * but its online state: approved, unexpired, same keys and hostname (its
 * auth key, if any, is ignored then, as the store would). */
static bool reg_unchanged(const struct ctl_node *nd, const struct ctl_register_req *req,
                          int64_t now)
{
	return nd->approved && !(nd->expiry && nd->expiry <= now) &&
	       !memcmp(nd->node_key, req->node_key, CTL_KEY_LEN) &&
	       !memcmp(nd->disco_key, req->disco_key, CTL_KEY_LEN) &&
	       !strcmp(nd->hostname, req->hostname);
}

/* Whether node n is gone for name reuse: no live connection, and either
 * its last connection here ended with the node closing it (it logged
 * off without LOGOUT, its process died, or it is reconnecting on
 * purpose: a live one then comes back under a suffix name, it is not
 * removed) or nothing was heard of it for cfg.reclaim_after_s, counted
 * from when it was last seen or this server started, whichever is later:
 * after a restart (what ended a connection is kept in memory only) the
 * nodes in reconnect backoff get that long to come back. A node
 * reconnecting has no node id on its new connection yet: it is not
 * counted as connected, and only the rules above keep its name. */
static bool reg_holder_gone(const struct ctl_server *s, const struct srv_node *n,
                            int64_t now)
{
	for (struct srv_conn *o = srv_conn_first_of(s, n->id); o; o = srv_conn_next_of(o))
		if (o->state == SRV_ONLINE || o->state == SRV_PENDING)
			return false;
	/* online through another server: connected there (what ended its
	 * connection here says nothing then); the store checks again, as
	 * this may be older than the last refresh */
	if (n->peer.online && n->online_server && n->online_server != s->server_id)
		return false;
	if (n->closed_by_node_ms)
		return true;
	int64_t seen = n->peer.last_seen > n->gone_s ? n->peer.last_seen : n->gone_s;
	if (seen < s->start_s)
		seen = s->start_s;
	/* online in the store, and no close seen here: treat as just seen */
	if (n->peer.online && n->gone_s == 0)
		seen = now;
	return seen + (int64_t)s->cfg.reclaim_after_s < now;
}

/* k when name is base (0) or base-k (k >= 2, no leading zero), else -1. */
static long reg_suffix_of(const char *name, const char *base)
{
	size_t bl = strlen(base);
	if (strncmp(name, base, bl) != 0)
		return -1;
	if (!name[bl])
		return 0;
	if (name[bl] != '-' || name[bl + 1] < '1' || name[bl + 1] > '9')
		return -1;
	char *end;
	long k = strtol(name + bl + 1, &end, 10);
	return *end || k < 2 || k > 1000000 ? -1 : k;
}

struct reg_holder {
	long k;
	int64_t id;
	bool gone; /* ephemeral and reg_holder_gone */
};

static int reg_holder_cmp(const void *a, const void *b)
{
	long x = ((const struct reg_holder *)a)->k, y = ((const struct reg_holder *)b)->k;
	return (x > y) - (x < y);
}

/* Name reuse for an ephemeral newcomer (a container back under its
 * hostname after a crash, with fresh keys): the names its hostname gives,
 * in order (base, base-2, base-3...) up to the first free one, and for
 * each the holder if it is an ephemeral node that registered the same
 * hostname and is gone (reg_holder_gone): replicas sharing a hostname get
 * back the suffix their crashed predecessor had instead of piling up new
 * ones. The store then renames the first of those that joined with the
 * newcomer's auth key or user, if the newcomer is ephemeral, to the next
 * free suffix (ctl_store_reg.reclaim_ids): a dead one goes with the
 * ephemeral timeout, a live one that was only reconnecting comes back
 * under that name. One pass over the snapshot, for new machines with an
 * auth key only. */
static unsigned reg_reclaim_candidates(const struct ctl_server *s, const char *hostname,
                                       int64_t out[CTL_RECLAIM_MAX])
{
	char base[64];
	ctl_alloc_name_from_host(hostname, base);
	int64_t now = (int64_t)time(NULL);
	struct reg_holder *h = NULL;
	size_t cnt = 0, cap = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		long k = n->approved ? reg_suffix_of(n->peer.name, base) : -1;
		if (k < 0)
			continue; /* a pending holder yields its name anyway */
		/* a holder of base-k that asked for another hostname (its own
		 * "db-2") keeps it: it only holds a place in the order */
		bool same = !strcmp(n->host_base, base);
		if (cnt == cap) {
			size_t nc = cap ? 2 * cap : 8;
			struct reg_holder *nh = realloc(h, nc * sizeof *nh);
			if (!nh)
				break; /* fewer candidates: a suffix, as without */
			h = nh;
			cap = nc;
		}
		h[cnt++] =
		    (struct reg_holder){.k = k,
		                        .id = n->id,
		                        .gone = same && n->ephemeral && !n->reclaimed &&
		                                reg_holder_gone(s, n, now)};
	}
	if (cnt > 1)
		qsort(h, cnt, sizeof *h, reg_holder_cmp);
	unsigned n_out = 0;
	long want = 0; /* the next name in order */
	for (size_t i = 0; i < cnt && n_out < CTL_RECLAIM_MAX; i++) {
		if (h[i].k != want)
			break; /* want is free: the newcomer takes that one */
		if (h[i].gone)
			out[n_out++] = h[i].id;
		want = want ? want + 1 : 2;
	}
	free(h);
	return n_out;
}

int srv_on_register(struct srv_conn *c, struct ctl_register_req *req)
{
	struct ctl_server *s = c->s;
	int64_t now = (int64_t)time(NULL);
	c->caps = req->caps & CTL_CAPS_ALL;
	/* the relay list rides on patch deltas only */
	if (!(c->caps & CTL_CAP_PEER_PATCH))
		c->caps &= ~CTL_CAP_RELAYS_DELTA;
	/* shared chunks name the receiver too (it drops itself: a chunked
	 * map), and compressed deltas carry it as patches: only together
	 * (control review 3 M3) */
	const uint32_t zneeds = CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH;
	if ((c->caps & zneeds) != zneeds)
		c->caps &= ~CTL_CAP_ZSTD;
	srv_conn_set_legacy(c, !(c->caps & CTL_CAP_MAP_CHUNKS));
	/* Under an access policy a node must enforce its filter and take a
	 * map of only the peers it may see: an older one is refused (final:
	 * it stops until upgraded), before any store access. */
	if (srv_policy_on(s) && !(c->caps & CTL_CAP_POLICY)) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		return reg_refuse(c, CTL_REASON_UPGRADE_REQUIRED, SRV_POLICY_UPGRADE);
	}
	struct ctl_node *nd = malloc(sizeof *nd);
	if (!nd) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		return -ENOMEM;
	}
	/* A known machine (one indexed read, no transaction): its bucket
	 * first, so that one stuck in a reconnect loop costs next to nothing. */
	int g = ctl_store_node_by_machine_key(s->cfg.store, c->machine_key, nd);
	if (g < 0 && g != CTL_STORE_ENOTFOUND) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		free(nd);
		return reg_retry_later(c, g);
	}
	bool known = g == 0;
	struct srv_node *sn = NULL;
	if (known) {
		bool f;
		size_t i = srv_snap_index(s, nd->id, &f);
		sn = f ? &s->nodes[i] : NULL;
		if (sn && !reg_token(sn, srv_now_ms())) {
			sodium_memzero(req->auth_key, sizeof req->auth_key);
			int64_t id = nd->id;
			free(nd);
			return reg_slow_down(c, id);
		}
	}
	/* A node that takes its map only in one message cannot get this one:
	 * refused before it is marked online (no store writes, no broadcasts),
	 * and a refusal is final for a node: it does not retry in a loop. */
	if (!(c->caps & CTL_CAP_MAP_CHUNKS) &&
	    map_too_big_for_one(s, known ? nd->id : 0, now)) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		free(nd);
		return reg_refuse(c, CTL_REASON_UPGRADE_REQUIRED,
		                  "this mesh's map is too big for this node's version "
		                  "of meshproxy; upgrade it (to a version that takes "
		                  "maps in chunks) and start it again");
	}
	/* Nodes and relays hold at most CTL_MAP_PEERS_MAX peers (keys): a
	 * mesh that size admits no new machine (not final: the node retries,
	 * and joins once the admin removed some). */
	if (s->n_nodes >= s->cfg.max_nodes && !known) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		free(nd);
		struct ctl_msg m = {.type = CTL_MSG_ERROR};
		m.u.error.code = CTL_REASON_INTERNAL;
		snprintf(m.u.error.text, sizeof m.u.error.text,
		         "this mesh has its maximum of %u nodes; retrying (the admin "
		         "can remove nodes: mesh-control nodes remove)",
		         s->cfg.max_nodes);
		log_warn("mesh-control: %s: a new node refused: the mesh has its "
		         "maximum of %u nodes",
		         c->peer, s->cfg.max_nodes);
		s->st.registrations_retry++;
		return reg_send_close(c, &m);
	}
	/* Back with nothing changed (a reconnect): no transaction of its own,
	 * its online state goes with the next write batch (none if the store
	 * has it online and nothing waits to change that). Keys, hostname, an
	 * approval or an expiry go through the store at once, below. */
	if (known && sn && sn->approved && srv_node_visible(sn, now) &&
	    reg_unchanged(nd, req, now)) {
		sodium_memzero(req->auth_key, sizeof req->auth_key);
		/* The row just read decides, not the snapshot: a refresh that
		 * failed after a flush leaves the snapshot saying online while
		 * the store says offline (control review 3 M2). */
		bool stored_online = nd->online;
		/* online through another server (it moved here): held by this
		 * one from now on, or that one's close takes it offline */
		bool ours = nd->online_server == s->server_id;
		free(nd);
		s->st.registrations_batched++;
		if (!stored_online || !ours || sn->wb_idx)
			srv_wb_set_online(s, sn->id);
		return srv_go_online(c, sn);
	}
	struct ctl_store_reg reg = {.hostname = req->hostname,
	                            .auth_secret =
	                                req->auth_key[0] ? req->auth_key : NULL,
	                            .now = now,
	                            .set_online = true,
	                            .no_pending = s->cfg.no_pending,
	                            .max_pending = s->cfg.max_pending,
	                            .max_per_source = s->cfg.max_pending_per_source,
	                            .source = c->source,
	                            .ephemeral = req->ephemeral};
	char was[CTL_RECLAIM_MAX][CTL_LABEL_MAX]; /* the candidates' names */
	if (!known && req->auth_key[0]) /* the store knows if the key is ephemeral */
		reg.n_reclaim = reg_reclaim_candidates(s, req->hostname, reg.reclaim_ids);
	for (unsigned i = 0; i < reg.n_reclaim; i++) {
		const struct srv_node *h = srv_snap_find(s, reg.reclaim_ids[i]);
		snprintf(was[i], sizeof was[i], "%s", h ? h->peer.name : "");
	}
	memcpy(reg.machine_key, c->machine_key, CTL_KEY_LEN);
	memcpy(reg.node_key, req->node_key, CTL_KEY_LEN);
	memcpy(reg.disco_key, req->disco_key, CTL_KEY_LEN);
	bool created = false;
	int r = ctl_store_node_register(s->cfg.store, &reg, nd, &created);
	sodium_memzero(req->auth_key, sizeof req->auth_key);
	if (r < 0 && reason_of(r) == CTL_REASON_INTERNAL) {
		free(nd);
		return reg_retry_later(c, r);
	}
	if (r < 0) {
		free(nd);
		return reg_refuse(c, reason_of(r), reason_text(r));
	}
	int64_t id = nd->id;
	/* the store has it online now: an offline still waiting is stale */
	if (nd->online)
		srv_wb_online(s, id);
	bool approved = nd->approved;
	bool expired = nd->expiry && nd->expiry <= now;
	if (created)
		log_info("mesh-control: node %lld (%s) registered from %s%s",
		         (long long)id, nd->name, c->peer,
		         approved ? "" : ", pending approval");
	if (expired) {
		free(nd);
		return reg_refuse(c, CTL_REASON_NODE_EXPIRED,
		                  "node expired; join again with a new auth key "
		                  "(mesh-proxy up --join TOKEN, same --state)");
	}
	if (!approved) {
		r = reg_pending(c, nd);
		free(nd);
		return r;
	}
	srv_note_seen(s, id, &c->ip, nd->version);
	srv_snap_refresh(s);
	for (unsigned i = 0; created && i < reg.n_reclaim; i++) {
		bool hf;
		size_t hi = srv_snap_index(s, reg.reclaim_ids[i], &hf);
		struct srv_node *h = hf ? &s->nodes[hi] : NULL;
		if (!h || strcmp(was[i], nd->name) || !strcmp(h->peer.name, nd->name))
			continue; /* not the one renamed */
		h->reclaimed = true;
		s->st.names_reclaimed++;
		log_info("mesh-control: node %lld takes the name %s of gone "
		         "ephemeral node %lld (same hostname, auth key or user), "
		         "now %s",
		         (long long)id, nd->name, (long long)reg.reclaim_ids[i],
		         h->peer.name);
		break;
	}
	free(nd);
	s->seen_hint_id = 0;
	srv_broadcast_schedule(s);
	const struct srv_node *n = srv_snap_find(s, id);
	if (!n) { /* the snapshot could not be read: not online after all */
		srv_set_offline(s, id);
		return reg_retry_later(c, CTL_STORE_EIO);
	}
	return srv_go_online(c, n);
}

/* Kept in memory and written in the next batch (server_writes.c): an
 * unchanged set costs nothing, a node sending many is rate-limited and its
 * latest set wins. */
int srv_on_endpoints(struct srv_conn *c, const struct ctl_endpoints *eps)
{
	int r = srv_wb_endpoints(c->s, c->node_id, eps);
	if (r == -ENOMEM) {
		log_warn("mesh-control: node %lld endpoints: out of memory",
		         (long long)c->node_id);
		return 0;
	}
	return r;
}

int srv_on_logout(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	int64_t id = c->node_id;
	const struct srv_node *n = srv_snap_find(s, id);
	char name[CTL_LABEL_MAX];
	snprintf(name, sizeof name, "%s", n ? n->peer.name : "?");
	int r = ctl_store_node_logout(s->cfg.store, id);
	if (r < 0 && r != CTL_STORE_ENOTFOUND) {
		/* closed unanswered: it goes offline, and an ephemeral node
		 * goes after the ephemeral timeout */
		log_warn("mesh-control: node %lld (%s) logs out but cannot be "
		         "removed: %s",
		         (long long)id, name, ctl_store_errmsg(s->cfg.store));
		return -EIO;
	}
	s->st.logouts++;
	log_info("mesh-control: node %lld (%s) logged out: removed", (long long)id, name);
	/* Out of the snapshot first, so that the close does not queue an
	 * offline write for a row that is gone. */
	srv_snap_refresh(s);
	srv_broadcast_schedule(s);
	struct ctl_msg m = {.type = CTL_MSG_LOGOUT};
	srv_conn_send_close(c, &m);
	return 0;
}
