/* mesh-control's MAP_FULL for one connection: in one message for a node
 * without CTL_CAP_MAP_CHUNKS, else in chunks of about SRV_CHUNK_BYTES, each
 * built when the connection's queue has drained and the queues together
 * are under SRV_OUT_BUDGET (srv_stream_pump, from its write callback and
 * srv_resume_cb). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/control/zmsg.h"
#include "core/util/log.h"
#include "servers/control/server_int.h"

/* The MAP_FULL header for c: version, self, DNS, relays; no peers. */
int srv_full_header(struct srv_conn *c, struct ctl_msg *m)
{
	struct ctl_server *s = c->s;
	const struct srv_node *self = srv_snap_find(s, c->node_id);
	if (!self)
		return -ENOENT;
	memset(m, 0, sizeof *m);
	m->type = CTL_MSG_MAP_FULL;
	struct ctl_map_full *mf = &m->u.map;
	mf->version = (uint64_t)s->snap_version;
	mf->self_id = (uint64_t)self->id;
	snprintf(mf->self_name, sizeof mf->self_name, "%s", self->peer.name);
	/* its own owner: user and tags as its peers see them (the effective
	 * tags under a policy, srv_policy_pub_tags) */
	snprintf(mf->self_user, sizeof mf->self_user, "%s", self->peer.user);
	snprintf(mf->self_tags, sizeof mf->self_tags, "%s", self->peer.tags);
	snprintf(c->own_user, sizeof c->own_user, "%s", self->peer.user);
	snprintf(c->own_tags, sizeof c->own_tags, "%s", self->peer.tags);
	mf->n_self_addrs = self->peer.n_addrs;
	memcpy(mf->self_addrs, self->peer.addrs, sizeof mf->self_addrs);
	snprintf(mf->dns_domain, sizeof mf->dns_domain, "%s", s->meta.domain);
	mf->relays = s->relays;
	mf->n_relays = s->n_relays;
	c->relays_stale = false;
	mf->magic_dns.family = 4;
	memcpy(mf->magic_dns.addr, (const uint8_t[]){100, 100, 100, 100}, 4);
	/* under a policy: its filter and reach (per node, never in a shared
	 * body), and which peers it gets from here on (c->pol_cls) */
	return srv_policy_full(c, mf);
}

/* The peers of c's map from index i of the snapshot (its map's class under
 * a policy, else every visible node), up to max entries and about bytes:
 * appended to t; *cursor is the last id looked at. Returns the entries
 * added; *more whether peers may follow. */
static size_t map_peers(struct srv_conn *c, int64_t *cursor, size_t max, size_t bytes,
                        struct ctl_msg_text *t, bool *more)
{
	struct ctl_server *s = c->s;
	int64_t now = (int64_t)time(NULL);
	size_t nt = 0, b = 0;
	bool on = srv_policy_on(s);
	if (c->pol_sent || on) {
		/* Under a policy now: only peers it may see now, also in the rest
		 * of a map begun before that policy or compile (control review
		 * M2); the catch-up delta from the map's header fixes the view.
		 * A policy cleared meanwhile: the class the header went with. */
		const struct srv_pclass *cl = c->pol_cls;
		if (on) {
			const struct srv_pnode *pn = srv_policy_node(s, c->node_id);
			cl = pn ? pn->cls : NULL;
			if (cl != c->pol_cls || !c->pol_sent)
				c->pol_mixed = true; /* review M1' */
		}
		size_t lo = 0, hi = cl ? cl->n : 0;
		while (lo < hi) { /* the first id after the cursor */
			size_t mid = lo + (hi - lo) / 2;
			if (cl->ids[mid] <= *cursor)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; cl && lo < cl->n && nt < max && b < bytes; lo++) {
			*cursor = cl->ids[lo];
			const struct srv_node *n = srv_snap_find(s, cl->ids[lo]);
			if (!n || n->id == c->node_id || !n->pj || !srv_node_visible(n, now))
				continue;
			t[nt++] = (struct ctl_msg_text){n->pj, n->pj_len};
			b += n->pj_len + 1;
		}
		*more = cl && lo < cl->n;
		return nt;
	}
	bool found;
	size_t i = srv_snap_index(s, *cursor + 1, &found);
	for (; i < s->n_nodes && nt < max && b < bytes; i++) {
		const struct srv_node *n = &s->nodes[i];
		*cursor = n->id;
		if (n->id == c->node_id || !n->pj || !srv_node_visible(n, now))
			continue;
		t[nt++] = (struct ctl_msg_text){n->pj, n->pj_len};
		b += n->pj_len + 1;
	}
	*more = i < s->n_nodes;
	return nt;
}

/* The whole map in one MAP_FULL, for a node without CTL_CAP_MAP_CHUNKS
 * (fails past CTL_PEERS_MAX peers or a frame's size; srv_on_register
 * refuses such a node when the map already is that big). */
static int send_full_single(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	/* Paced like map chunks: while the queues are over the budget it
	 * waits (srv_resume_cb sends it when they drained). */
	if (srv_over_budget(c)) {
		c->sent_version = SRV_NEED_FULL;
		return 0;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct ctl_msg m;
	int r = srv_full_header(c, &m);
	if (r < 0)
		return r;
	struct ctl_msg_text *t = malloc((s->n_nodes ? s->n_nodes : 1) * sizeof *t);
	if (!t) {
		srv_policy_full_done(&m.u.map);
		return -ENOMEM;
	}
	int64_t cursor = -1;
	bool more;
	size_t nt = map_peers(c, &cursor, s->n_nodes, SIZE_MAX, t, &more);
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	r = ctl_msg_encode_map_texts(&m, t, nt, &body, &len, &me);
	srv_policy_full_done(&m.u.map);
	free(t);
	if (r < 0) {
		log_warn("mesh-control: MAP_FULL encode: %s", me.text);
		return r;
	}
	s->st.last_full_ms = srv_ms_since(&t0);
	s->st.last_full_bytes = len;
	r = srv_send_body(c, CTL_MSG_MAP_FULL, body, len);
	free(body);
	if (r == 0) {
		s->st.maps_full++;
		c->sent_version = s->snap_version;
	}
	return r;
}

/* One chunk of c's map: the visible peers after c->stream_cursor, up to
 * SRV_CHUNK_BYTES; the first chunk is the MAP_FULL itself. The snapshot may
 * change between chunks: a peer is sent as it is when its chunk is built,
 * and the catch-up delta from the map's version (after the last chunk)
 * sends every change since, so the node ends up current either way. */
static int stream_chunk(struct srv_conn *c, bool first)
{
	struct ctl_server *s = c->s;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct ctl_msg m = {.type = CTL_MSG_MAP_PEERS};
	int r = first ? srv_full_header(c, &m) : 0;
	if (r < 0)
		return r;
	if (first) { /* the map's version is the snapshot's now */
		c->sent_version = s->snap_version;
		c->stream_first = false;
	}
	size_t cap = s->n_nodes < CTL_PEERS_MAX ? s->n_nodes : CTL_PEERS_MAX;
	struct ctl_msg_text *t = malloc((cap ? cap : 1) * sizeof *t);
	if (!t) {
		if (first)
			srv_policy_full_done(&m.u.map);
		return -ENOMEM;
	}
	bool more;
	size_t nt = map_peers(c, &c->stream_cursor, cap, SRV_CHUNK_BYTES, t, &more);
	if (first)
		m.u.map.more = more;
	else
		m.u.chunk.more = more;
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	r = ctl_msg_encode_map_texts(&m, t, nt, &body, &len, &me);
	if (first)
		srv_policy_full_done(&m.u.map);
	free(t);
	if (r < 0) {
		log_warn("mesh-control: %s encode: %s", first ? "MAP_FULL" : "MAP_PEERS",
		         me.text);
		return r;
	}
	c->stream_ms += srv_ms_since(&t0);
	c->stream_bytes += len;
	/* compressed for this node alone (CTL_CAP_ZSTD under a policy: the
	 * shared chunks of server_zmap.c are for nodes that see everyone) */
	r = srv_send_map_body(c, first ? CTL_MSG_MAP_FULL : CTL_MSG_MAP_PEERS, body, len);
	free(body);
	if (r == 0 && !more) {
		c->streaming = false;
		c->fresh_full = true;
		s->st.last_full_ms = c->stream_ms;
		s->st.last_full_bytes = c->stream_bytes;
	}
	return r;
}

int srv_stream_pump(struct srv_conn *c)
{
	int r = 0;
	while (r == 0 && c->streaming && c->state == SRV_ONLINE &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) <= SRV_OUT_LOW &&
	       !srv_over_budget(c)) {
		/* the shared chunks only for a map without a policy (decided
		 * when its header goes, which records c->pol_sent) */
		bool pol = srv_policy_on(c->s) || (!c->stream_first && c->pol_sent);
		r = (c->caps & CTL_CAP_ZSTD) && !pol ? srv_stream_chunk_z(c, c->stream_first)
		                                     : stream_chunk(c, c->stream_first);
	}
	return r;
}

int srv_send_full(struct srv_conn *c)
{
	if (!(c->caps & CTL_CAP_MAP_CHUNKS))
		return send_full_single(c);
	c->streaming = true;
	c->stream_first = true;
	c->stream_cursor = -1;
	c->stream_ms = 0;
	c->stream_bytes = 0;
	/* for the tombstones until the first chunk names the version */
	c->sent_version = c->s->snap_version;
	c->s->st.maps_full++;
	return srv_stream_pump(c);
}
