/* mesh-control's network map: an in-memory snapshot of the store's nodes
 * (kept current from the store's version-ordered changes and tombstones),
 * MAP_FULL for one connection, and the coalesced MAP_DELTA broadcast. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

/* --- snapshot ----------------------------------------------------------- */

static size_t snap_index(const struct ctl_server *s, int64_t id, bool *found)
{
	size_t lo = 0, hi = s->n_nodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->n_nodes && s->nodes[lo].id == id;
	return lo;
}

const struct srv_node *srv_snap_find(const struct ctl_server *s, int64_t id)
{
	bool f;
	size_t i = snap_index(s, id, &f);
	return f ? &s->nodes[i] : NULL;
}

bool srv_node_visible(const struct srv_node *n, int64_t now)
{
	return n->approved && !(n->expiry && n->expiry <= now);
}

void srv_node_to_peer(const struct ctl_node *nd, struct ctl_peer *p)
{
	memset(p, 0, sizeof *p);
	p->id = (uint64_t)nd->id;
	snprintf(p->name, sizeof p->name, "%s", nd->name);
	memcpy(p->node_key, nd->node_key, CTL_KEY_LEN);
	memcpy(p->disco_key, nd->disco_key, CTL_KEY_LEN);
	p->n_addrs = 2;
	p->addrs[0].family = 4;
	p->addrs[0].addr[0] = (uint8_t)(nd->ipv4 >> 24);
	p->addrs[0].addr[1] = (uint8_t)(nd->ipv4 >> 16);
	p->addrs[0].addr[2] = (uint8_t)(nd->ipv4 >> 8);
	p->addrs[0].addr[3] = (uint8_t)nd->ipv4;
	p->addrs[1].family = 6;
	memcpy(p->addrs[1].addr, nd->ipv6, 16);
	p->n_allowed = 2;
	p->allowed[0].family = 4;
	p->allowed[0].bits = 32;
	memcpy(p->allowed[0].addr, p->addrs[0].addr, 4);
	p->allowed[1].family = 6;
	p->allowed[1].bits = 128;
	memcpy(p->allowed[1].addr, nd->ipv6, 16);
	char buf[CTL_STORE_ENDPOINTS_MAX + 1];
	snprintf(buf, sizeof buf, "%s", nd->endpoints);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t && p->n_eps < CTL_ENDPOINTS_MAX;
	     t = strtok_r(NULL, ",", &save))
		if (ctl_endpoint_parse(t, &p->eps[p->n_eps]))
			p->n_eps++;
	p->home_relay = nd->home_relay > 0 ? (uint32_t)nd->home_relay : 0;
	p->online = nd->online;
	p->last_seen = nd->last_seen > 0 ? nd->last_seen : 0;
}

static int snap_upsert(struct ctl_server *s, const struct ctl_node *nd)
{
	bool f;
	size_t i = snap_index(s, nd->id, &f);
	if (!f) {
		if (s->n_nodes == s->cap_nodes) {
			size_t nc = s->cap_nodes ? s->cap_nodes * 2 : 64;
			struct srv_node *nn = realloc(s->nodes, nc * sizeof *nn);
			if (!nn)
				return -ENOMEM;
			s->nodes = nn;
			s->cap_nodes = nc;
		}
		memmove(&s->nodes[i + 1], &s->nodes[i],
		        (s->n_nodes - i) * sizeof *s->nodes);
		s->n_nodes++;
		s->nodes[i].pj = NULL;
	}
	struct srv_node *n = &s->nodes[i];
	free(n->pj);
	n->pj = NULL;
	n->pj_len = 0;
	n->id = nd->id;
	n->version = nd->version;
	n->expiry = nd->expiry;
	n->approved = nd->approved;
	n->ephemeral = nd->ephemeral;
	memcpy(n->machine_key, nd->machine_key, CTL_KEY_LEN);
	srv_node_to_peer(nd, &n->peer);
	/* One encode per change, shared by every map that carries it. */
	struct ctl_msg_err me;
	if (ctl_msg_encode_peer(&n->peer, &n->pj, &n->pj_len, &me) < 0)
		log_warn("mesh-control: node %lld left out of maps: %s", (long long)n->id,
		         me.text);
	return 0;
}

static int snap_remove(struct ctl_server *s, int64_t id, int64_t version)
{
	bool f;
	size_t i = snap_index(s, id, &f);
	if (f) {
		/* A node never approved was in nobody's map: no tombstone, so
		 * dropped pending registrations reach no node. */
		bool in_maps = s->nodes[i].approved;
		free(s->nodes[i].pj);
		memmove(&s->nodes[i], &s->nodes[i + 1],
		        (s->n_nodes - i - 1) * sizeof *s->nodes);
		s->n_nodes--;
		if (!in_maps)
			return 0;
	}
	if (s->n_tombs == s->cap_tombs) {
		size_t nc = s->cap_tombs ? s->cap_tombs * 2 : 64;
		struct srv_tomb *nt = realloc(s->tombs, nc * sizeof *nt);
		if (!nt)
			return -ENOMEM;
		s->tombs = nt;
		s->cap_tombs = nc;
	}
	s->tombs[s->n_tombs++] = (struct srv_tomb){id, version};
	return 0;
}

/* A pending node's removal leaves no tombstone (it was in no map): when
 * the store holds fewer pending nodes than the snapshot, the snapshot's
 * pending nodes that are gone are dropped. At most max_pending lookups,
 * and only when one went. */
static int snap_prune_pending(struct ctl_server *s, int64_t v)
{
	size_t have = 0;
	for (size_t i = 0; i < s->n_nodes; i++)
		have += !s->nodes[i].approved;
	if (!have)
		return 0;
	int64_t n;
	if (ctl_store_node_pending_count(s->cfg.store, &n) < 0)
		return -EIO;
	if (n >= (int64_t)have)
		return 0;
	struct ctl_node *nd = malloc(sizeof *nd);
	if (!nd)
		return -ENOMEM;
	int r = 0;
	for (size_t i = s->n_nodes; i-- > 0 && r == 0;) {
		if (s->nodes[i].approved)
			continue;
		int g = ctl_store_node_by_id(s->cfg.store, s->nodes[i].id, nd);
		if (g == CTL_STORE_ENOTFOUND)
			r = snap_remove(s, s->nodes[i].id, v);
		else if (g < 0)
			r = -EIO;
	}
	free(nd);
	return r;
}

/* Reads what changed in the store since the snapshot's version. The version
 * is read first: changes racing with the reads are read again next time
 * (applying them twice is harmless). */
int srv_snap_refresh(struct ctl_server *s)
{
	struct ctl_store *st = s->cfg.store;
	int64_t v;
	if (ctl_store_map_version(st, &v) < 0)
		return -EIO;
	if (v == s->snap_version && s->nodes)
		return 0;
	struct ctl_node *list = NULL;
	int64_t *ids = NULL;
	size_t n = 0, nr = 0;
	int r = 0;
	if (ctl_store_node_list(st, s->snap_version, &list, &n) < 0 ||
	    ctl_store_node_removed(st, s->snap_version, &ids, &nr) < 0) {
		r = -EIO;
		goto out;
	}
	for (size_t i = 0; i < n && r == 0; i++)
		r = snap_upsert(s, &list[i]);
	for (size_t i = 0; i < nr && r == 0; i++)
		r = snap_remove(s, ids[i], v);
	if (r == 0)
		r = snap_prune_pending(s, v);
	if (r == 0)
		s->snap_version = v;
	if (!s->nodes && r == 0) {
		s->nodes = malloc(sizeof *s->nodes); /* marks "loaded" */
		s->cap_nodes = s->nodes ? 1 : 0;
	}
out:
	free(list);
	free(ids);
	return r;
}

void srv_snap_free(struct ctl_server *s)
{
	for (size_t i = 0; i < s->n_nodes; i++)
		free(s->nodes[i].pj);
	free(s->nodes);
	free(s->tombs);
	s->nodes = NULL;
	s->tombs = NULL;
	s->n_nodes = s->cap_nodes = s->n_tombs = s->cap_tombs = 0;
}

/* --- MAP_FULL ----------------------------------------------------------- */

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int srv_send_full(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	const struct srv_node *self = srv_snap_find(s, c->node_id);
	if (!self)
		return -ENOENT;
	int64_t now = (int64_t)time(NULL);
	struct ctl_msg m = {.type = CTL_MSG_MAP_FULL};
	struct ctl_map_full *mf = &m.u.map;
	mf->version = (uint64_t)s->snap_version;
	mf->self_id = (uint64_t)self->id;
	snprintf(mf->self_name, sizeof mf->self_name, "%s", self->peer.name);
	mf->n_self_addrs = self->peer.n_addrs;
	memcpy(mf->self_addrs, self->peer.addrs, sizeof mf->self_addrs);
	snprintf(mf->dns_domain, sizeof mf->dns_domain, "%s", s->meta.domain);
	mf->relays = s->relays;
	mf->n_relays = s->n_relays;
	mf->magic_dns.family = 4;
	memcpy(mf->magic_dns.addr, (const uint8_t[]){100, 100, 100, 100}, 4);
	struct ctl_msg_text *t = malloc((s->n_nodes ? s->n_nodes : 1) * sizeof *t);
	if (!t)
		return -ENOMEM;
	size_t nt = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (n->id != c->node_id && n->pj && srv_node_visible(n, now))
			t[nt++] = (struct ctl_msg_text){n->pj, n->pj_len};
	}
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	int r = ctl_msg_encode_map_texts(&m, t, nt, &body, &len, &me);
	free(t);
	if (r < 0) {
		log_warn("mesh-control: MAP_FULL encode: %s", me.text);
		return r;
	}
	s->st.last_full_ms = ms_since(&t0);
	s->st.last_full_bytes = len;
	r = srv_send_body(c, CTL_MSG_MAP_FULL, body, len);
	free(body);
	if (r == 0) {
		s->st.maps_full++;
		c->sent_version = s->snap_version;
	}
	return r;
}

/* --- MAP_DELTA broadcast ------------------------------------------------ */

void srv_broadcast_schedule(struct ctl_server *s)
{
	if (!s->bcast || evtimer_pending(s->bcast, NULL))
		return;
	struct timeval tv = {s->cfg.coalesce_ms / 1000,
	                     (s->cfg.coalesce_ms % 1000) * 1000};
	evtimer_add(s->bcast, &tv);
}

struct delta_set {
	const struct srv_node **peers;
	size_t n_peers;
	uint64_t *removed;
	size_t n_removed;
};

/* Changes since base: visible nodes changed after it, and ids that left the
 * map (tombstones, or nodes no longer approved / expired). */
static int delta_collect(struct ctl_server *s, int64_t base, int64_t now,
                         struct delta_set *d)
{
	size_t np = 0, nrm = 0;
	for (size_t i = 0; i < s->n_nodes; i++)
		if (s->nodes[i].version > base)
			np++;
	for (size_t i = 0; i < s->n_tombs; i++)
		if (s->tombs[i].version > base)
			nrm++;
	d->peers = malloc((np ? np : 1) * sizeof *d->peers);
	d->removed = malloc((np + nrm ? np + nrm : 1) * sizeof *d->removed);
	d->n_peers = d->n_removed = 0;
	if (!d->peers || !d->removed)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (n->version <= base)
			continue;
		if (srv_node_visible(n, now)) {
			if (n->pj)
				d->peers[d->n_peers++] = n;
		} else if (n->approved) { /* pending: in nobody's map yet */
			d->removed[d->n_removed++] = (uint64_t)n->id;
		}
	}
	/* Tombstones may name an id twice; the map drops unknown ids anyway,
	 * but keep the list unique. */
	for (size_t i = 0; i < s->n_tombs; i++) {
		if (s->tombs[i].version <= base)
			continue;
		uint64_t id = (uint64_t)s->tombs[i].id;
		bool dup = false;
		for (size_t k = 0; k < d->n_removed && !dup; k++)
			dup = d->removed[k] == id;
		if (!dup)
			d->removed[d->n_removed++] = id;
	}
	return 0;
}

static int encode_delta(struct ctl_server *s, int64_t base, const struct delta_set *d,
                        int64_t skip_id, uint8_t **body, size_t *len)
{
	struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA};
	struct ctl_map_delta *md = &m.u.delta;
	md->version = (uint64_t)s->snap_version;
	md->base_version = (uint64_t)base;
	md->removed = d->removed;
	md->n_removed = d->n_removed;
	struct ctl_msg_text *t = malloc((d->n_peers ? d->n_peers : 1) * sizeof *t);
	if (!t)
		return -ENOMEM;
	size_t nt = 0;
	for (size_t i = 0; i < d->n_peers; i++) /* not the receiver itself */
		if (d->peers[i]->id != skip_id)
			t[nt++] =
			    (struct ctl_msg_text){d->peers[i]->pj, d->peers[i]->pj_len};
	struct ctl_msg_err me;
	int r = ctl_msg_encode_map_texts(&m, t, nt, body, len, &me);
	free(t);
	if (r < 0)
		log_warn("mesh-control: MAP_DELTA encode: %s", me.text);
	return r;
}

static bool delta_has(const struct delta_set *d, int64_t id)
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (d->peers[i]->id == id)
			return true;
	return false;
}

/* A delta at least as big as the full map (every node in it, plus the
 * removed ids at a few bytes each) is sent as a full map. */
static bool delta_too_big(const struct ctl_server *s, const struct delta_set *d)
{
	return d->n_peers + d->n_removed / 32 >= s->n_nodes &&
	       d->n_peers + d->n_removed > 16;
}

int srv_send_update(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	int64_t base = c->sent_version;
	if (base >= s->snap_version)
		return 0;
	if (base < s->tomb_floor)
		return srv_send_full(c);
	int64_t now = (int64_t)time(NULL);
	struct delta_set d = {0};
	int r = delta_collect(s, base, now, &d);
	if (r == 0 && delta_too_big(s, &d))
		r = 1;
	if (r == 0 && d.n_removed + d.n_peers > 0 &&
	    !(d.n_removed == 0 && d.n_peers == 1 && d.peers[0]->id == c->node_id)) {
		uint8_t *body = NULL;
		size_t len = 0;
		if (encode_delta(s, base, &d, c->node_id, &body, &len) < 0) {
			r = 1; /* send a full map instead */
		} else {
			r = srv_send_body(c, CTL_MSG_MAP_DELTA, body, len);
			if (r == 0) {
				s->st.maps_delta++;
				c->sent_version = s->snap_version;
			}
		}
		free(body);
	}
	free(d.peers);
	free(d.removed);
	if (r > 0 || r == -ENOMEM)
		r = srv_send_full(c);
	return r;
}

/* Checks each registered connection's own node; true if c survives. */
static bool conn_check_self(struct srv_conn *c, int64_t now)
{
	const struct srv_node *n = srv_snap_find(c->s, c->node_id);
	if (c->state == SRV_PENDING) {
		/* Its row is gone (the admin rejected it, or an authorised
		 * node took its keys): not final, the node registers again
		 * and is told where it stands then. */
		if (!n) {
			log_info("mesh-control: pending node %lld dropped; its node "
			         "will retry",
			         (long long)c->node_id);
			srv_conn_error_close(c, CTL_REASON_INTERNAL,
			                     "no longer waiting for approval (rejected "
			                     "or replaced); retrying");
			return false;
		}
		if (srv_node_visible(n, now)) {
			/* Freed from the loop: the caller walks the list. */
			if (srv_go_online(c, n) < 0) {
				srv_conn_drop(c);
				return false;
			}
		}
		return true;
	}
	if (!n) {
		log_info("mesh-control: node %lld removed; closing its connection",
		         (long long)c->node_id);
		srv_conn_error_close(c, CTL_REASON_NODE_REMOVED, "node removed");
		return false;
	}
	if (!srv_node_visible(n, now)) {
		bool exp = n->approved;
		log_info("mesh-control: node %lld (%s) %s; closing its connection",
		         (long long)c->node_id, n->peer.name,
		         exp ? "expired" : "no longer approved");
		srv_conn_error_close(
		    c, exp ? CTL_REASON_NODE_EXPIRED : CTL_REASON_AUTH_REQUIRED,
		    exp ? "node expired" : "node not approved");
		return false;
	}
	return true;
}

static void broadcast(struct ctl_server *s)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (srv_snap_refresh(s) < 0) {
		log_warn("mesh-control: reading the store: %s",
		         ctl_store_errmsg(s->cfg.store));
		return;
	}
	/* A changed relay list reaches nodes in a MAP_FULL (deltas carry
	 * peers only). */
	srv_relays_refresh(s);
	bool relays_changed =
	    sodium_memcmp(s->relays_hash, s->nodes_relays_hash, sizeof s->relays_hash) != 0;
	memcpy(s->nodes_relays_hash, s->relays_hash, sizeof s->relays_hash);
	int64_t now = (int64_t)time(NULL);
	for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->state == SRV_ONLINE || c->state == SRV_PENDING)
			conn_check_self(c, now);
		/* Every online node needs a MAP_FULL now, also one that is
		 * behind and catches up later (srv_send_update). */
		if (relays_changed && c->state == SRV_ONLINE)
			c->sent_version = SRV_NEED_FULL;
	}
	/* The list may have changed (go_online closes older connections);
	 * walk it again for the deltas, one distinct base at a time. */
	bool sent = false;
	uint64_t gen = ++s->bcast_gen;
	for (;;) {
		int64_t base = 0;
		bool any = false;
		for (struct srv_conn *c = s->conns; c; c = c->next)
			if (c->state == SRV_ONLINE && c->sent_version < s->snap_version &&
			    (!any || c->sent_version > base) && c->bcast_gen != gen &&
			    !srv_conn_behind(c)) {
				base = c->sent_version;
				any = true;
			}
		if (!any)
			break;
		sent = true;
		struct delta_set d = {0};
		uint8_t *body = NULL;
		size_t len = 0;
		bool full = base < s->tomb_floor;
		if (!full &&
		    (delta_collect(s, base, now, &d) < 0 || delta_too_big(s, &d) ||
		     encode_delta(s, base, &d, 0, &body, &len) < 0))
			full = true;
		for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
			nx = c->next;
			if (c->state != SRV_ONLINE || c->sent_version != base ||
			    c->bcast_gen == gen)
				continue;
			c->bcast_gen = gen;
			if (srv_conn_behind(c))
				continue;
			int r;
			if (full) {
				r = srv_send_full(c);
			} else if (d.n_removed == 0 &&
			           (d.n_peers == 0 ||
			            (d.n_peers == 1 && d.peers[0]->id == c->node_id))) {
				/* Nothing it can see changed (only itself, or
				 * pending nodes): nothing to send. The next
				 * delta starts from the version it has. */
				continue;
			} else if (delta_has(&d, c->node_id)) {
				uint8_t *own = NULL;
				size_t olen = 0;
				r = encode_delta(s, base, &d, c->node_id, &own, &olen);
				if (r == 0)
					r = srv_send_body(c, CTL_MSG_MAP_DELTA, own,
					                  olen);
				free(own);
			} else {
				r = srv_send_body(c, CTL_MSG_MAP_DELTA, body, len);
			}
			if (r < 0) {
				srv_conn_free(c);
				continue;
			}
			if (!full)
				s->st.maps_delta++;
			c->sent_version = s->snap_version;
		}
		free(body);
		free(d.peers);
		free(d.removed);
	}
	/* Tombstones every connection has seen are no longer needed. */
	int64_t floor = s->snap_version;
	for (struct srv_conn *c = s->conns; c; c = c->next)
		if (c->state == SRV_ONLINE && c->sent_version < floor)
			floor = c->sent_version;
	size_t k = 0;
	for (size_t i = 0; i < s->n_tombs; i++)
		if (s->tombs[i].version > floor)
			s->tombs[k++] = s->tombs[i];
	s->n_tombs = k;
	if (floor > s->tomb_floor)
		s->tomb_floor = floor;
	srv_relays_broadcast(s);
	if (sent) {
		s->st.broadcasts++;
		s->st.last_broadcast_ms = ms_since(&t0);
	}
}

void srv_broadcast_cb(int fd, short ev, void *arg)
{
	broadcast(arg);
}

/* Every poll_ms: writes by other processes, expiry, ephemeral nodes. */
void srv_poll_cb(int fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	int64_t v = 0;
	if (ctl_store_map_version(s->cfg.store, &v) == 0 && v != s->snap_version)
		srv_broadcast_schedule(s);
	int64_t now = (int64_t)time(NULL);
	for (struct srv_conn *c = s->conns; c; c = c->next) {
		if (c->state != SRV_ONLINE)
			continue;
		const struct srv_node *n = srv_snap_find(s, c->node_id);
		if (!n || !srv_node_visible(n, now))
			srv_broadcast_schedule(s);
	}
	/* A node whose expiry passed since the last poll leaves every map and
	 * every relay's admission list now, connected to us or not (an
	 * offline node stayed admitted on relays until some other change). */
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (n->approved && n->expiry && n->expiry <= now &&
		    n->expiry > s->last_poll_s) {
			srv_broadcast_schedule(s);
			break;
		}
	}
	s->last_poll_s = now;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (!n->ephemeral || n->peer.online || n->peer.last_seen <= 0 ||
		    n->peer.last_seen + (int64_t)s->cfg.ephemeral_timeout_s >= now)
			continue;
		bool connected = false;
		for (struct srv_conn *c = s->conns; c && !connected; c = c->next)
			connected = c->node_id == n->id && c->state != SRV_CLOSING;
		if (connected)
			continue;
		int64_t id = n->id;
		if (ctl_store_node_remove(s->cfg.store, id) == 0) {
			log_info("mesh-control: ephemeral node %lld removed after %u s "
			         "offline",
			         (long long)id, s->cfg.ephemeral_timeout_s);
			srv_broadcast_schedule(s);
		}
	}
}
