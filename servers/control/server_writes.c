/* mesh-control's node-driven writes: endpoints, home relay, online and last
 * seen are kept in memory and written to the store in batches (one
 * transaction for every node that changed, without an fsync of its own),
 * right before the coalesced broadcast that sends them.
 *
 * - A write equal to what the node already has (or has waiting) is
 *   dropped: no store write, no version, no delta.
 * - Each node's endpoint changes go through a token bucket (SRV_WB_BURST,
 *   one more every SRV_WB_REFILL_MS): past it they wait, and the latest
 *   value is written when a token comes back (never lost, only coalesced).
 * - Online/offline and "touch" (an expiry passed) are not rate-limited
 *   here (a node's registrations are: server_reg.c). A known node that
 *   registers again with nothing changed comes online through the batch
 *   too, not in a transaction of its own.
 *
 * A crash loses at most the writes not yet flushed: about coalesce_ms, or,
 * for a node over its bucket, the time until its next token. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

static struct srv_node *node_of(struct ctl_server *s, int64_t id)
{
	bool f;
	size_t i = srv_snap_index(s, id, &f);
	return f ? &s->nodes[i] : NULL;
}

static void refill(struct srv_node *n, uint64_t now)
{
	if (n->tok_ms == 0 || now < n->tok_ms) {
		n->tok_ms = now;
		return;
	}
	double add = (double)(now - n->tok_ms) / SRV_WB_REFILL_MS;
	n->tokens = n->tokens + add > SRV_WB_BURST ? SRV_WB_BURST : n->tokens + add;
	n->tok_ms = now;
}

/* The waiting write of node n, made if it has none (NULL: out of memory). */
static struct ctl_node_vol *entry_of(struct ctl_server *s, struct srv_node *n)
{
	if (n->wb_idx)
		return &s->wb[n->wb_idx - 1];
	if (s->n_wb == s->cap_wb) {
		size_t nc = s->cap_wb ? s->cap_wb * 2 : 16;
		struct ctl_node_vol *nw = realloc(s->wb, nc * sizeof *nw);
		if (!nw)
			return NULL;
		s->wb = nw;
		s->cap_wb = nc;
	}
	struct ctl_node_vol *v = &s->wb[s->n_wb++];
	memset(v, 0, sizeof *v);
	v->id = n->id;
	n->wb_idx = s->n_wb;
	return v;
}

/* eps as the store keeps them: "ip:port,ip:port" (cut at the store's
 * limit, at an endpoint's boundary). */
static void eps_join(const struct ctl_endpoint *ep, size_t n, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && i < CTL_ENDPOINTS_MAX; i++) {
		char one[CTL_ADDRSTR_MAX];
		ctl_endpoint_format(&ep[i], one);
		int w = snprintf(buf + off, cap - off, "%s%s", off ? "," : "", one);
		if (w < 0 || (size_t)w >= cap - off) {
			buf[off] = 0;
			break;
		}
		off += (size_t)w;
	}
}

int srv_wb_endpoints(struct ctl_server *s, int64_t id, const struct ctl_endpoints *eps)
{
	struct srv_node *n = node_of(s, id);
	if (!n)
		return -ENOENT;
	char buf[CTL_STORE_ENDPOINTS_MAX + 1], cur[CTL_STORE_ENDPOINTS_MAX + 1];
	eps_join(eps->ep, eps->n, buf, sizeof buf);
	int home = (int)(eps->home_relay > 0x7fffffff ? 0 : eps->home_relay);
	/* compared with what it will have: its waiting write, else its map
	 * entry (the store's value as of the last refresh, flushed before) */
	const struct ctl_node_vol *w = n->wb_idx ? &s->wb[n->wb_idx - 1] : NULL;
	if (w && (w->mask & CTL_UPD_ENDPOINTS)) {
		if (!strcmp(w->endpoints, buf) && w->home_relay == home) {
			s->st.writes_unchanged++;
			return 0;
		}
	} else {
		eps_join(n->peer.eps, n->peer.n_eps, cur, sizeof cur);
		if (!strcmp(cur, buf) && (int)n->peer.home_relay == home) {
			s->st.writes_unchanged++;
			return 0;
		}
	}
	struct ctl_node_vol *v = entry_of(s, n);
	if (!v)
		return -ENOMEM;
	if (v->mask & CTL_UPD_ENDPOINTS)
		s->st.writes_coalesced++; /* the one it replaces is never written */
	v->mask |= CTL_UPD_ENDPOINTS | CTL_UPD_HOME_RELAY;
	memcpy(v->endpoints, buf, sizeof buf);
	v->home_relay = home;
	log_debug("mesh-control: node %lld endpoints %s relay %d", (long long)id, buf,
	          home);
	srv_broadcast_schedule(s);
	return 0;
}

void srv_wb_offline(struct ctl_server *s, int64_t id)
{
	struct srv_node *n = node_of(s, id);
	struct ctl_node_vol *v = n ? entry_of(s, n) : NULL;
	if (!v) { /* not in the snapshot (or no memory): straight to the store */
		struct ctl_node_update u = {.mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN,
		                            .online = false,
		                            .last_seen = (int64_t)time(NULL)};
		/* a success here does not clear a failed batch (its rows are
		 * still waiting): only the batch's own success does */
		int r = ctl_store_node_update(s->cfg.store, id, &u);
		if (r < 0 && r != CTL_STORE_ENOTFOUND) {
			srv_note_write_fail(s);
			log_warn("mesh-control: node %lld offline: %s", (long long)id,
			         ctl_store_errmsg(s->cfg.store));
		}
	} else {
		v->mask |= CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN;
		/* an offline write carries no seen_ip: if the node moved to
		 * another server meanwhile, where it is seen is that one's */
		v->mask &= ~(unsigned)(CTL_UPD_REASSERT | CTL_UPD_SEEN);
		v->online = false;
		v->last_seen = (int64_t)time(NULL);
	}
	srv_broadcast_schedule(s);
}

void srv_wb_online(struct ctl_server *s, int64_t id)
{
	struct srv_node *n = node_of(s, id);
	if (n && n->wb_idx)
		s->wb[n->wb_idx - 1].mask &=
		    ~(unsigned)(CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN | CTL_UPD_REASSERT);
}

void srv_wb_reassert_online(struct ctl_server *s, int64_t id)
{
	struct srv_node *n = node_of(s, id);
	struct ctl_node_vol *v = n ? entry_of(s, n) : NULL;
	if (!v) /* (out of memory) the next check tries again */
		return;
	/* a waiting fresh online write stays fresh */
	if (!((v->mask & CTL_UPD_ONLINE) && v->online))
		v->mask |= CTL_UPD_REASSERT;
	v->mask |= CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN;
	v->online = true;
	v->last_seen = (int64_t)time(NULL);
	srv_broadcast_schedule(s);
}

void srv_wb_set_online(struct ctl_server *s, int64_t id)
{
	struct srv_node *n = node_of(s, id);
	struct ctl_node_vol *v = n ? entry_of(s, n) : NULL;
	int64_t now = (int64_t)time(NULL);
	if (!v) { /* not in the snapshot (or no memory): straight to the store */
		struct ctl_node_update u = {.mask = CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN,
		                            .online = true,
		                            .last_seen = now};
		if (ctl_store_node_update(s->cfg.store, id, &u) < 0) {
			srv_note_write_fail(s);
			log_warn("mesh-control: node %lld online: %s", (long long)id,
			         ctl_store_errmsg(s->cfg.store));
		} /* a success does not clear a failed batch (srv_wb_offline) */
	} else {
		v->mask |= CTL_UPD_ONLINE | CTL_UPD_LAST_SEEN;
		v->mask &= ~(unsigned)CTL_UPD_REASSERT; /* fresh: takes the node */
		v->online = true;
		v->last_seen = now;
	}
	srv_broadcast_schedule(s);
}

void srv_wb_touch(struct ctl_server *s, int64_t id)
{
	struct srv_node *n = node_of(s, id);
	struct ctl_node_vol *v = n ? entry_of(s, n) : NULL;
	if (v)
		v->touch = true;
	srv_broadcast_schedule(s);
}

void srv_wb_seen(struct ctl_server *s, int64_t id, const char *seen_ip)
{
	struct srv_node *n = node_of(s, id);
	struct ctl_node_vol *v = n ? entry_of(s, n) : NULL;
	if (!v) /* (out of memory) the next registration writes it */
		return;
	v->mask |= CTL_UPD_SEEN;
	snprintf(v->seen_ip, sizeof v->seen_ip, "%s", seen_ip);
	srv_broadcast_schedule(s);
}

/* Arms the timer for the first waiting node's next token. */
static void arm(struct ctl_server *s, uint64_t now, double wait_ms)
{
	if (!s->wb_timer || wait_ms < 0)
		return;
	uint64_t ms = (uint64_t)wait_ms + 1;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(s->wb_timer, &tv);
	(void)now;
}

int srv_wb_flush(struct ctl_server *s, bool all)
{
	if (s->n_wb == 0)
		return 0;
	uint64_t now = srv_now_ms();
	struct ctl_node_vol *batch = malloc(s->n_wb * sizeof *batch);
	if (!batch)
		return -ENOMEM;
	size_t nb = 0, keep = 0;
	double wait = -1;
	for (size_t i = 0; i < s->n_wb; i++) {
		struct ctl_node_vol *v = &s->wb[i];
		struct srv_node *n = node_of(s, v->id);
		if (!n || (!v->mask && !v->touch)) {
			if (n)
				n->wb_idx = 0;
			continue;
		}
		bool rated = v->mask & CTL_UPD_ENDPOINTS;
		if (rated) {
			refill(n, now);
			if (n->tokens < 1 && !all && !(v->mask & CTL_UPD_ONLINE) &&
			    !v->touch) {
				/* waits for its token; the latest value then */
				double w = (1 - n->tokens) * SRV_WB_REFILL_MS;
				if (wait < 0 || w < wait)
					wait = w;
				s->wb[keep] = *v;
				n->wb_idx = ++keep;
				continue;
			}
			n->tokens = n->tokens >= 1 ? n->tokens - 1 : 0;
		}
		batch[nb++] = *v;
		n->wb_idx = 0;
	}
	s->n_wb = keep;
	size_t changed = 0;
	int r = ctl_store_node_update_many(s->cfg.store, batch, nb, &changed);
	if (r < 0) {
		srv_note_write_fail(s);
		/* kept for the next try (a busy database, say) */
		log_warn("mesh-control: writing %zu nodes' endpoints and online "
		         "state: %s; retrying",
		         nb, ctl_store_errmsg(s->cfg.store));
		for (size_t i = 0; i < nb; i++) {
			struct srv_node *n = node_of(s, batch[i].id);
			if (!n || n->wb_idx)
				continue; /* a newer write took its place */
			struct ctl_node_vol *v = entry_of(s, n);
			if (v)
				*v = batch[i];
		}
		if (wait < 0 || wait > 1000)
			wait = 1000;
	} else if (nb) {
		srv_note_write_ok(s);
		s->st.store_batches++;
		s->st.store_batch_nodes += nb;
	}
	free(batch);
	arm(s, now, wait);
	return r < 0 ? -EIO : 0;
}

void srv_wb_timer_cb(int fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	srv_broadcast_schedule(arg);
}

void srv_wb_free(struct ctl_server *s)
{
	free(s->wb);
	s->wb = NULL;
	s->n_wb = s->cap_wb = 0;
}
