/* mesh-control's network map: an in-memory snapshot of the store's nodes
 * (kept current from the store's version-ordered changes and tombstones),
 * and the coalesced MAP_DELTA broadcast (whole entries for what changed as a
 * whole, patches for endpoints and online, nothing for a write that changed
 * nothing). MAP_FULL is in server_full.c. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <time.h>

#include "core/control/zmsg.h"
#include "core/util/log.h"
#include "servers/control/alloc.h"
#include "servers/control/server_int.h"

/* --- snapshot ----------------------------------------------------------- */

size_t srv_snap_index(const struct ctl_server *s, int64_t id, bool *found)
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
	size_t i = srv_snap_index(s, id, &f);
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
	/* owner: its user, and its tags as stored (under a policy, snap_upsert
	 * publishes the tags the policy accepts instead) */
	snprintf(p->user, sizeof p->user, "%s", nd->user);
	snprintf(p->tags, sizeof p->tags, "%s", nd->tags);
}

/* Whether what a peer entry says apart from endpoints, home relay, online
 * and last seen changed (or whether others may see it at all). */
static bool entry_changed(const struct srv_node *n, const struct ctl_node *nd,
                          const struct ctl_peer *np)
{
	const struct ctl_peer *op = &n->peer;
	return n->approved != nd->approved || n->expiry != nd->expiry ||
	       strcmp(op->name, np->name) != 0 ||
	       memcmp(op->node_key, np->node_key, CTL_KEY_LEN) != 0 ||
	       memcmp(op->disco_key, np->disco_key, CTL_KEY_LEN) != 0 ||
	       op->n_addrs != np->n_addrs ||
	       memcmp(op->addrs, np->addrs, sizeof op->addrs) != 0 ||
	       op->n_allowed != np->n_allowed ||
	       memcmp(op->allowed, np->allowed, sizeof op->allowed) != 0 ||
	       strcmp(op->user, np->user) != 0 || strcmp(op->tags, np->tags) != 0;
}

/* Whether n's mesh addresses differ from np's (an input of the policy). */
static bool policy_addrs_changed(const struct srv_node *n, const struct ctl_peer *np)
{
	return n->peer.n_addrs != np->n_addrs ||
	       memcmp(n->peer.addrs, np->addrs, sizeof np->addrs) != 0;
}

/* The newest change of n others would see. */
static int64_t node_changed_at(const struct srv_node *n)
{
	int64_t v = n->v_full;
	if (n->v_eps > v)
		v = n->v_eps;
	if (n->v_seen > v)
		v = n->v_seen;
	return n->v_online > v ? n->v_online : v;
}

/* --- change log --------------------------------------------------------- */

static int cmp_change(const void *a, const void *b)
{
	const struct srv_change *x = a, *y = b;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Rebuilds the log as one entry per node at its newest change (dropping
 * entries of nodes changed again since, and of removed nodes, which the
 * tombstones cover). Amortised: runs once per ~n_nodes logged changes. */
static void chlog_compact(struct ctl_server *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n_nodes && k < s->cap_chlog; i++)
		s->chlog[k++] =
		    (struct srv_change){node_changed_at(&s->nodes[i]), s->nodes[i].id};
	qsort(s->chlog, k, sizeof *s->chlog, cmp_change);
	s->n_chlog = k;
}

/* Room for one more entry (called before the snapshot is touched, so a
 * failed allocation leaves both as they were). */
static int chlog_reserve(struct ctl_server *s)
{
	if (s->n_chlog > 2 * s->n_nodes + 1024)
		chlog_compact(s);
	if (s->n_chlog < s->cap_chlog && s->n_nodes + 1 <= s->cap_chlog)
		return 0;
	size_t nc = s->cap_chlog ? s->cap_chlog * 2 : 1024;
	while (nc < s->n_nodes + 1)
		nc *= 2;
	struct srv_change *nl = realloc(s->chlog, nc * sizeof *nl);
	if (!nl)
		return -ENOMEM;
	s->chlog = nl;
	s->cap_chlog = nc;
	return 0;
}

/* Appends (version, id), kept in version order: versions from the store
 * arrive in order, except a change read again after a racing write, which
 * moves back the few places it needs. */
static void chlog_add(struct ctl_server *s, int64_t version, int64_t id)
{
	size_t i = s->n_chlog++;
	struct srv_change e = {version, id};
	while (i > 0 && cmp_change(&s->chlog[i - 1], &e) > 0) {
		s->chlog[i] = s->chlog[i - 1];
		i--;
	}
	s->chlog[i] = e;
}

/* Index of the first entry newer than base. */
static size_t chlog_after(const struct ctl_server *s, int64_t base)
{
	size_t lo = 0, hi = s->n_chlog;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->chlog[mid].version <= base)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int snap_upsert(struct ctl_server *s, const struct ctl_node *nd)
{
	if (chlog_reserve(s) < 0)
		return -ENOMEM;
	bool f;
	size_t i = srv_snap_index(s, nd->id, &f);
	int64_t was = f ? node_changed_at(&s->nodes[i]) : INT64_MIN;
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
		/* whole before anything reads it: srv_seen_update below may
		 * withdraw an address, a walk over every entry, this one too
		 * (its id, wb_idx and peer were the shifted neighbour's copy, or
		 * whatever realloc gave) */
		memset(&s->nodes[i], 0, sizeof s->nodes[i]);
		s->nodes[i].id = nd->id;
	}
	struct srv_node *n = &s->nodes[i];
	bool stags_changed = strcmp(n->stags ? n->stags : "", nd->tags) != 0;
	if (stags_changed) {
		char *t = nd->tags[0] ? strdup(nd->tags) : NULL;
		if (nd->tags[0] && !t)
			return -ENOMEM;
		free(n->stags);
		n->stags = t;
	}
	struct ctl_peer np;
	srv_node_to_peer(nd, &np);
	snprintf(np.tags, sizeof np.tags, "%s", srv_policy_pub_tags(s, nd->id, nd->tags));
	/* visible to others or not: an expiry that passed is a change too
	 * (its version was bumped for it: srv_wb_touch) */
	int64_t now = (int64_t)time(NULL);
	bool shown = nd->approved && !(nd->expiry && nd->expiry <= now);
	np.seen_ip = srv_seen_update(s, n, nd->seen_ip, nd->online);
	/* what the policy reads (server_policy.c inputs_build): the node
	 * set, whether it is shown, expiry, addresses, user, stored tags */
	bool pol_input = !f || stags_changed || shown != n->shown ||
	                 n->expiry != nd->expiry || policy_addrs_changed(n, &np) ||
	                 strcmp(n->peer.user, np.user) != 0;
	if (!f) {
		n->v_full = n->v_eps = n->v_online = n->v_seen = nd->version;
		n->tokens = SRV_WB_BURST;
		n->tok_ms = 0;
		n->wb_idx = 0;
		n->reg_tokens = SRV_REG_BURST;
		n->reg_ms = 0;
		n->closed_by_node_ms = 0;
		n->gone_s = 0;
		n->reclaimed = false;
	} else {
		if (entry_changed(n, nd, &np) || shown != n->shown)
			n->v_full = nd->version;
		if (np.n_eps != n->peer.n_eps ||
		    memcmp(np.eps, n->peer.eps, sizeof np.eps) != 0 ||
		    np.home_relay != n->peer.home_relay)
			n->v_eps = nd->version;
		/* last_seen of a node that stays online is news to nobody: it
		 * rides along with its next real change. */
		if (np.online != n->peer.online ||
		    (!np.online && np.last_seen != n->peer.last_seen))
			n->v_online = nd->version;
		if (memcmp(&np.seen_ip, &n->peer.seen_ip, sizeof np.seen_ip) != 0)
			n->v_seen = nd->version;
		/* withdrawn (server_seen.c): a patch cannot say "none", the
		 * whole entry without it can */
		if (!np.seen_ip.family && n->peer.seen_ip.family)
			n->v_full = nd->version;
	}
	if (n->pj)
		s->map_bytes -= n->pj_len + 1;
	free(n->pj);
	n->pj = NULL;
	n->pj_len = 0;
	n->id = nd->id;
	n->version = nd->version;
	n->expiry = nd->expiry;
	n->approved = nd->approved;
	n->ephemeral = nd->ephemeral;
	n->online_server = nd->online_server;
	ctl_alloc_name_from_host(nd->hostname, n->host_base);
	n->shown = shown;
	memcpy(n->machine_key, nd->machine_key, CTL_KEY_LEN);
	n->peer = np;
	/* One encode per change, shared by every map that carries it. */
	struct ctl_msg_err me;
	if (ctl_msg_encode_peer(&n->peer, &n->pj, &n->pj_len, &me) < 0)
		log_warn("mesh-control: node %lld left out of maps: %s", (long long)n->id,
		         me.text);
	else
		s->map_bytes += n->pj_len + 1;
	if (node_changed_at(n) > was)
		chlog_add(s, node_changed_at(n), n->id);
	srv_zc_touch(s, n->id);
	/* new, shown or hidden, readdressed, its owner or tags: the policy
	 * compiles again (server_policy.c); keys, name, endpoints, seen_ip
	 * and online do not count (control review H2) */
	if (pol_input)
		s->pol_dirty = true;
	return 0;
}

void srv_snap_set_tags(struct ctl_server *s, size_t i, const char *tags)
{
	struct srv_node *n = &s->nodes[i];
	if (!strcmp(n->peer.tags, tags))
		return;
	if (chlog_reserve(s) < 0) {
		log_warn("mesh-control: node %lld: tags not updated in maps: out of "
		         "memory",
		         (long long)n->id);
		return;
	}
	snprintf(n->peer.tags, sizeof n->peer.tags, "%s", tags);
	int64_t was = node_changed_at(n);
	if (n->pj)
		s->map_bytes -= n->pj_len + 1;
	free(n->pj);
	n->pj = NULL;
	n->pj_len = 0;
	struct ctl_msg_err me;
	if (ctl_msg_encode_peer(&n->peer, &n->pj, &n->pj_len, &me) < 0)
		log_warn("mesh-control: node %lld left out of maps: %s", (long long)n->id,
		         me.text);
	else
		s->map_bytes += n->pj_len + 1;
	n->v_full = s->snap_version;
	if (node_changed_at(n) > was)
		chlog_add(s, node_changed_at(n), n->id);
	srv_zc_touch(s, n->id);
	srv_dsets_clear(s); /* deltas built at this version miss it */
}

static int snap_remove(struct ctl_server *s, int64_t id, int64_t version)
{
	bool f;
	size_t i = srv_snap_index(s, id, &f);
	if (f) {
		/* A node never approved was in nobody's map: no tombstone, so
		 * dropped pending registrations reach no node. */
		bool in_maps = s->nodes[i].approved;
		if (s->nodes[i].seen_counted)
			srv_seen_down(s, &s->nodes[i].seen);
		srv_zc_touch(s, id);
		s->pol_dirty = true;
		if (s->nodes[i].pj)
			s->map_bytes -= s->nodes[i].pj_len + 1;
		free(s->nodes[i].pj);
		free(s->nodes[i].stags);
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
	srv_dsets_clear(s); /* they point into the snapshot */
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
	srv_zc_free(s);
	srv_dsets_free(s);
	for (size_t i = 0; i < s->n_nodes; i++) {
		free(s->nodes[i].pj);
		free(s->nodes[i].stags);
	}
	free(s->nodes);
	free(s->tombs);
	free(s->chlog);
	s->nodes = NULL;
	s->tombs = NULL;
	s->chlog = NULL;
	s->n_nodes = s->cap_nodes = s->n_tombs = s->cap_tombs = 0;
	s->n_chlog = s->cap_chlog = s->map_bytes = 0;
}

/* --- MAP_DELTA broadcast ------------------------------------------------ */

double srv_ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

void srv_broadcast_schedule(struct ctl_server *s)
{
	if (!s->bcast || evtimer_pending(s->bcast, NULL))
		return;
	struct timeval tv = {s->cfg.coalesce_ms / 1000,
	                     (s->cfg.coalesce_ms % 1000) * 1000};
	evtimer_add(s->bcast, &tv);
}


static void delta_free(struct delta_set *d)
{
	free(d->whole);
	free(d->part);
	free(d->removed);
	free(d->patch_body);
	free(d->legacy_body);
	free(d->rel_body);
	free(d->patch_z);
	free(d->rel_z);
	memset(d, 0, sizeof *d);
}

static int cmp_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* An upper bound of a patch's JSON: id, fields, home relay, online, last
 * seen, seen_ip, and each endpoint at its longest ("[v6%zone]:port"
 * quoted). */
static size_t patch_bytes_max(const struct srv_node *n)
{
	return 160 + (size_t)(CTL_ADDRSTR_MAX + 3) * (n->peer.n_eps + 1u);
}

/* Whether n belongs in a delta from base, and as what. */
static void delta_take(struct delta_set *d, const struct srv_node *n, int64_t base,
                       int64_t now)
{
	if (node_changed_at(n) <= base)
		return;
	if (!srv_node_visible(n, now)) {
		if (n->approved) /* pending: in nobody's map yet */
			d->removed[d->n_removed++] = (uint64_t)n->id;
	} else if (!n->pj)
		return;
	else if (n->v_full > base)
		d->whole[d->n_whole++] = n, d->est_bytes += n->pj_len + 1;
	else
		d->part[d->n_part++] = n, d->est_bytes += patch_bytes_max(n);
}

static int cmp_node_id(const void *a, const void *b)
{
	const struct srv_node *x = *(const struct srv_node *const *)a;
	const struct srv_node *y = *(const struct srv_node *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Changes since base: visible nodes changed after it (whole or in part),
 * and ids that left the map (tombstones, or nodes no longer approved /
 * expired). A store write that changed nothing is no change here. The
 * nodes are found from the change log: a delta visits the changes after
 * its base, not every node (a join storm builds hundreds of thousands of
 * catch-up deltas); a base so old that more changes than nodes follow it
 * scans the nodes instead. Entries come out in id order either way. */
static int delta_collect(struct ctl_server *s, int64_t base, int64_t now,
                         struct delta_set *d)
{
	size_t nrm = 0;
	memset(d, 0, sizeof *d);
	d->base = base;
	d->map_bytes = s->map_bytes;
	size_t from = chlog_after(s, base);
	bool scan = s->n_chlog - from > s->n_nodes;
	size_t np = scan ? s->n_nodes : s->n_chlog - from;
	for (size_t i = 0; i < s->n_tombs; i++)
		if (s->tombs[i].version > base)
			nrm++;
	d->whole = malloc((np ? np : 1) * sizeof *d->whole);
	d->part = malloc((np ? np : 1) * sizeof *d->part);
	d->removed = malloc((np + nrm ? np + nrm : 1) * sizeof *d->removed);
	if (!d->whole || !d->part || !d->removed)
		return -ENOMEM;
	if (scan) {
		s->st.delta_nodes_visited += s->n_nodes;
		for (size_t i = 0; i < s->n_nodes; i++)
			delta_take(d, &s->nodes[i], base, now);
	} else {
		s->st.delta_nodes_visited += np;
		for (size_t k = from; k < s->n_chlog; k++) {
			const struct srv_node *n = srv_snap_find(s, s->chlog[k].id);
			/* removed (a tombstone says so), or changed again
			 * later (its newer entry counts) */
			if (n && node_changed_at(n) == s->chlog[k].version)
				delta_take(d, n, base, now);
		}
		if (d->n_whole > 1)
			qsort(d->whole, d->n_whole, sizeof *d->whole, cmp_node_id);
		if (d->n_part > 1)
			qsort(d->part, d->n_part, sizeof *d->part, cmp_node_id);
	}
	/* Tombstones may name an id twice (and a removed id may also be one
	 * no longer visible); the map drops unknown ids anyway, but keep the
	 * list unique: sorted, in O(n log n) however many piled up. */
	for (size_t i = 0; i < s->n_tombs; i++)
		if (s->tombs[i].version > base)
			d->removed[d->n_removed++] = (uint64_t)s->tombs[i].id;
	if (d->n_removed > 1) {
		qsort(d->removed, d->n_removed, sizeof *d->removed, cmp_id);
		size_t k = 1;
		for (size_t i = 1; i < d->n_removed; i++)
			if (d->removed[i] != d->removed[k - 1])
				d->removed[k++] = d->removed[i];
		d->n_removed = k;
	}
	d->est_bytes += 12 * d->n_removed;
	return 0;
}

static bool delta_empty(const struct delta_set *d)
{
	return d->n_whole + d->n_part + d->n_removed == 0;
}

/* The patch that brings n from base to now: the fields changed after it. */
void srv_make_patch(const struct srv_node *n, int64_t base, struct ctl_peer_patch *pp)
{
	memset(pp, 0, sizeof *pp);
	pp->id = (uint64_t)n->id;
	if (n->v_eps > base) {
		pp->fields |= CTL_PATCH_ENDPOINTS | CTL_PATCH_HOME_RELAY;
		pp->n_eps = n->peer.n_eps;
		memcpy(pp->eps, n->peer.eps, sizeof pp->eps);
		pp->home_relay = n->peer.home_relay;
	}
	if (n->v_online > base) {
		pp->fields |= CTL_PATCH_ONLINE | CTL_PATCH_LAST_SEEN;
		pp->online = n->peer.online;
		pp->last_seen = n->peer.last_seen;
	}
	if (n->v_seen > base && n->peer.seen_ip.family) {
		pp->fields |= CTL_PATCH_SEEN_IP;
		pp->seen_ip = n->peer.seen_ip;
	}
}

/* Encodes the delta. patches: for a node with CTL_CAP_PEER_PATCH (partial
 * changes as patches; the receiver itself may be named, it ignores
 * itself); otherwise every changed peer whole, without skip_id. */
static int encode_delta(struct ctl_server *s, const struct delta_set *d, bool patches,
                        bool relays, int64_t skip_id, uint8_t **body, size_t *len)
{
	struct ctl_msg m = {.type = CTL_MSG_MAP_DELTA};
	struct ctl_map_delta *md = &m.u.delta;
	md->version = (uint64_t)s->snap_version;
	md->base_version = (uint64_t)d->base;
	md->has_relays = relays;
	md->relays = s->relays;
	md->n_relays = s->n_relays;
	md->removed = d->removed;
	md->n_removed = d->n_removed;
	size_t cap = d->n_whole + d->n_part;
	struct ctl_msg_text *t = malloc((cap ? cap : 1) * sizeof *t);
	struct ctl_peer_patch *pp =
	    patches ? malloc((d->n_part ? d->n_part : 1) * sizeof *pp) : NULL;
	if (!t || (patches && !pp)) {
		free(t);
		free(pp);
		return -ENOMEM;
	}
	size_t nt = 0;
	for (size_t i = 0; i < d->n_whole; i++)
		if (d->whole[i]->id != skip_id)
			t[nt++] =
			    (struct ctl_msg_text){d->whole[i]->pj, d->whole[i]->pj_len};
	for (size_t i = 0; i < d->n_part; i++) {
		if (patches)
			srv_make_patch(d->part[i], d->base, &pp[md->n_patches++]);
		else if (d->part[i]->id != skip_id)
			t[nt++] =
			    (struct ctl_msg_text){d->part[i]->pj, d->part[i]->pj_len};
	}
	md->patches = pp;
	struct ctl_msg_err me;
	int r = ctl_msg_encode_map_texts(&m, t, nt, body, len, &me);
	free(t);
	free(pp);
	if (r < 0)
		log_warn("mesh-control: MAP_DELTA encode: %s", me.text);
	return r;
}

static bool delta_has(const struct delta_set *d, int64_t id)
{
	for (size_t i = 0; i < d->n_whole; i++)
		if (d->whole[i]->id == id)
			return true;
	for (size_t i = 0; i < d->n_part; i++)
		if (d->part[i]->id == id)
			return true;
	return false;
}

/* A delta at least as big as the full map (every node in it, plus the
 * removed ids at a few bytes each), or with more entries than one message
 * may carry, is sent as a full map (decided here, before any encoding:
 * at 20,000 nodes a catch-up past CTL_PEERS_MAX otherwise failed to encode,
 * and logged so, for every base). */
static bool delta_too_big(const struct ctl_server *s, const struct delta_set *d)
{
	if (d->n_whole + d->n_part > CTL_PEERS_MAX || d->n_removed > CTL_REMOVED_MAX)
		return true;
	size_t n = d->n_whole + d->n_part / 4 + d->n_removed / 32;
	return n >= s->n_nodes && d->n_whole + d->n_part + d->n_removed > 16;
}

/* The shared patch body (rel: the one with the relay list) to c:
 * compressed once for every node with CTL_CAP_ZSTD when it is big enough,
 * else (or if that failed) plain. */
static int send_patch_body(struct srv_conn *c, struct delta_set *d, bool rel)
{
	const uint8_t *body = rel ? d->rel_body : d->patch_body;
	size_t len = rel ? d->rel_len : d->patch_len;
	uint8_t **z = rel ? &d->rel_z : &d->patch_z;
	size_t *zlen = rel ? &d->rel_zlen : &d->patch_zlen;
	bool *zfail = rel ? &d->rel_zfail : &d->patch_zfail;
	if (!(c->caps & CTL_CAP_ZSTD) || len < CTL_ZMSG_MIN_LEN)
		return srv_send_body(c, CTL_MSG_MAP_DELTA, body, len);
	if (!*z && !*zfail &&
	    srv_zwrap(c->s, CTL_ZMSG_LEVEL_FAST, CTL_MSG_MAP_DELTA, body, len, z, zlen) <
	        0)
		*zfail = true;
	if (*zfail)
		return srv_send_body(c, CTL_MSG_MAP_DELTA, body, len);
	return srv_send_zbody(c, *z, *zlen, len);
}

static int send_delta(struct srv_conn *c, struct delta_set *d);

/* Built deltas, by base, for the snapshot's version: in a join storm many
 * nodes catch up from the same base (those whose maps began in the same
 * broadcast), each from its own write callback; they share one collect,
 * one encode and one compression. Emptied whenever the snapshot changes
 * (the sets point into it). */
void srv_dsets_clear(struct ctl_server *s)
{
	for (size_t i = 0; i < s->n_dsets; i++)
		delta_free(&s->dsets[i]);
}

void srv_dsets_free(struct ctl_server *s)
{
	srv_dsets_clear(s);
	free(s->dsets);
	s->dsets = NULL;
	s->n_dsets = 0;
}

/* The delta from base to the snapshot, from the cache or collected now;
 * NULL when out of memory.
 * Shared: keyed by base and version only, so one set serves every node at
 * that base: it lists what changed, for everyone. Its encoded bodies are
 * sent only to nodes that see every peer (no policy); a node under a
 * policy gets the set filtered by what it sees, encoded for it alone
 * (srv_policy_send_delta). */
static struct delta_set *dset_get(struct ctl_server *s, int64_t base, int64_t now)
{
	if (!s->dsets) {
		s->dsets = calloc(SRV_DSETS, sizeof *s->dsets);
		if (!s->dsets)
			return NULL;
		s->n_dsets = SRV_DSETS;
	}
	for (size_t i = 0; i < s->n_dsets; i++) {
		struct delta_set *d = &s->dsets[i];
		if (d->used && d->base == base && d->snap == s->snap_version) {
			s->st.deltas_reused++;
			return d;
		}
	}
	struct delta_set *d = &s->dsets[s->dset_next];
	s->dset_next = (s->dset_next + 1) % s->n_dsets;
	delta_free(d);
	if (delta_collect(s, base, now, d) < 0) {
		delta_free(d);
		return NULL;
	}
	d->used = true;
	d->snap = s->snap_version;
	d->too_big = delta_too_big(s, d);
	return d;
}

/* Sends c the delta d (built for c->sent_version). 0 sent or nothing to
 * send (then c keeps its version: the next delta starts from it), 1 when
 * c needs a full map instead, or a negative errno from sending. */
static int send_delta(struct srv_conn *c, struct delta_set *d)
{
	struct ctl_server *s = c->s;
	int r;
	/* Under a policy each node's delta is its own (server_pmap.c): the
	 * bodies below are shared by every node of this base; so is a delta
	 * that tells the node its own new user or tags. */
	if ((c->caps & CTL_CAP_POLICY) &&
	    (c->pol_sent || srv_policy_on(s) || srv_own_owner_changed(c)))
		return srv_policy_send_delta(c, d);
	/* A big catch-up (a node that was behind a long time): as a chunked
	 * map when that is not much bigger, else when the queues have room. */
	if (d->est_bytes > SRV_CHUNK_BYTES) {
		/* not right after a chunked map, though: in a join storm that
		 * would stream the whole map again, and again */
		if ((c->caps & CTL_CAP_MAP_CHUNKS) && d->est_bytes > d->map_bytes / 2 &&
		    !c->fresh_full)
			return 1;
		if (srv_over_budget(c))
			return 0; /* keeps its version; srv_resume_cb */
	}
	if (c->caps & CTL_CAP_PEER_PATCH) {
		/* relays_stale only with CTL_CAP_RELAYS_DELTA (srv_on_register) */
		bool rel = c->relays_stale;
		uint8_t **body = rel ? &d->rel_body : &d->patch_body;
		size_t *len = rel ? &d->rel_len : &d->patch_len;
		bool *full = rel ? &d->rel_full : &d->patch_full;
		if (delta_empty(d) && !rel)
			return 0;
		if (!*body && !*full &&
		    (encode_delta(s, d, true, rel, 0, body, len) < 0 ||
		     *len > CTL_FRAME_BODY_MAX))
			*full = true;
		if (*full)
			return 1;
		r = send_patch_body(c, d, rel);
		if (r == 0)
			c->relays_stale = false;
	} else if (d->n_removed == 0 && d->n_whole + d->n_part == 1 &&
	           delta_has(d, c->node_id)) {
		return 0; /* only itself changed */
	} else if (delta_empty(d)) {
		return 0;
	} else if (delta_has(d, c->node_id)) {
		uint8_t *own = NULL;
		size_t olen = 0;
		if (d->legacy_full)
			return 1;
		if (encode_delta(s, d, false, false, c->node_id, &own, &olen) < 0 ||
		    olen > CTL_FRAME_BODY_MAX) {
			free(own);
			d->legacy_full = true; /* the shared body is no smaller */
			return 1;
		}
		r = srv_send_body(c, CTL_MSG_MAP_DELTA, own, olen);
		free(own);
	} else {
		if (!d->legacy_body && !d->legacy_full &&
		    (encode_delta(s, d, false, false, 0, &d->legacy_body, &d->legacy_len) < 0 ||
		     d->legacy_len > CTL_FRAME_BODY_MAX))
			d->legacy_full = true;
		if (d->legacy_full)
			return 1;
		r = srv_send_body(c, CTL_MSG_MAP_DELTA, d->legacy_body, d->legacy_len);
	}
	if (r == 0) {
		s->st.maps_delta++;
		c->sent_version = s->snap_version;
		c->fresh_full = false;
	}
	return r;
}

int srv_send_update(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	int64_t base = c->sent_version;
	if (!srv_conn_needs_update(c))
		return 0;
	if (base < s->tomb_floor)
		return srv_send_full(c);
	int64_t now = (int64_t)time(NULL);
	struct delta_set *d = dset_get(s, base, now);
	int r = !d || d->too_big ? 1 : send_delta(c, d);
	if (r > 0)
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
		if (srv_node_visible(n, now) && srv_policy_on(c->s) &&
		    !(c->caps & CTL_CAP_POLICY)) {
			srv_conn_error_close(c, CTL_REASON_UPGRADE_REQUIRED,
			                     SRV_POLICY_UPGRADE);
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
	if (srv_policy_on(c->s) && !(c->caps & CTL_CAP_POLICY)) {
		/* set while it was online: it could not enforce the policy
		 * and would go on seeing every peer */
		log_info("mesh-control: node %lld (%s) cannot take the access policy; "
		         "closing its connection",
		         (long long)c->node_id, n->peer.name);
		srv_conn_error_close(c, CTL_REASON_UPGRADE_REQUIRED, SRV_POLICY_UPGRADE);
		return false;
	}
	/* Online here, offline in the store: another server took this one
	 * for stopped (it was paused, or its beats failed) and swept its
	 * nodes. Written online again, held by this server: but only from a
	 * connection that is alive (it heard from its node within two
	 * keepalive intervals: a live idle connection hears the keepalive
	 * answer a moment after each interval, so one would fail it now and
	 * then; a half-open leftover of a node that moved hears nothing), and only as a re-assertion, which the store applies when no
	 * other live server holds the node (the node's newer connection
	 * there wins; the leftover times out). */
	if (!n->peer.online && srv_node_visible(n, now) &&
	    srv_now_ms() - c->last_recv_ms <= 2 * (uint64_t)c->s->cfg.keepalive_ms) {
		const struct ctl_node_vol *w =
		    n->wb_idx ? &c->s->wb[n->wb_idx - 1] : NULL;
		if (!w || !(w->mask & CTL_UPD_ONLINE) || !w->online)
			srv_wb_reassert_online(c->s, n->id);
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
	/* node-driven writes since the last one, in one transaction */
	srv_wb_flush(s, false);
	if (srv_snap_refresh(s) < 0) {
		log_warn("mesh-control: reading the store: %s",
		         ctl_store_errmsg(s->cfg.store));
		return;
	}
	/* the store's policy, and a compile when the nodes changed */
	srv_policy_refresh(s);
	/* A changed relay list reaches a node in its next delta (the whole
	 * list, a few hundred bytes), or in a MAP_FULL for an older node. */
	srv_relays_refresh(s);
	bool relays_changed =
	    sodium_memcmp(s->relays_hash, s->nodes_relays_hash, sizeof s->relays_hash) != 0;
	memcpy(s->nodes_relays_hash, s->relays_hash, sizeof s->relays_hash);
	if (relays_changed)
		srv_dsets_clear(s); /* their bodies with relays carry the old list */
	int64_t now = (int64_t)time(NULL);
	for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->state == SRV_ONLINE || c->state == SRV_PENDING)
			conn_check_self(c, now);
		/* Every online node needs the new list now, also one that is
		 * behind and catches up later (srv_send_update). */
		if (relays_changed && c->state == SRV_ONLINE) {
			if (c->caps & CTL_CAP_RELAYS_DELTA)
				c->relays_stale = true;
			else
				c->sent_version = SRV_NEED_FULL;
		}
	}
	/* The list may have changed (go_online closes older connections);
	 * walk it again for the deltas, one distinct base at a time. A
	 * connection that is behind is skipped and judged alone: it gets one
	 * update when its own queue drains (write_cb), nobody waits for it. */
	bool sent = false;
	uint64_t gen = ++s->bcast_gen;
	for (;;) {
		int64_t base = 0;
		bool any = false;
		for (struct srv_conn *c = s->conns; c; c = c->next)
			if (c->state == SRV_ONLINE && srv_conn_needs_update(c) &&
			    (!any || c->sent_version > base) && c->bcast_gen != gen &&
			    !srv_conn_behind(c)) {
				base = c->sent_version;
				any = true;
			}
		if (!any)
			break;
		sent = true;
		struct delta_set *d = NULL;
		bool full = base < s->tomb_floor;
		if (!full && (!(d = dset_get(s, base, now)) || d->too_big))
			full = true;
		for (struct srv_conn *c = s->conns, *nx; c; c = nx) {
			nx = c->next;
			if (c->state != SRV_ONLINE || c->sent_version != base ||
			    c->bcast_gen == gen)
				continue;
			c->bcast_gen = gen;
			if (srv_conn_behind(c))
				continue;
			int r = full ? 1 : send_delta(c, d);
			if (r > 0)
				r = srv_send_full(c);
			if (r < 0) {
				log_info("mesh-control: %s: node %lld: map update failed "
				         "(%s); closing",
				         c->peer, (long long)c->node_id, strerror(-r));
				srv_conn_free(c);
			}
		}
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
		s->st.last_broadcast_ms = srv_ms_since(&t0);
	}
}

void srv_broadcast_cb(int fd, short ev, void *arg)
{
	broadcast(arg);
}

void srv_resume_cb(int fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	for (struct srv_conn *c = s->conns, *nx;
	     c && !(s->out_waiting && s->legacy_waiting); c = nx) {
		nx = c->next;
		if (c->state != SRV_ONLINE || (c->legacy ? s->legacy_waiting : s->out_waiting))
			continue;
		int r = 0;
		if (c->streaming)
			r = srv_stream_pump(c);
		else if (srv_conn_needs_update(c) && !srv_conn_behind(c))
			r = srv_send_update(c);
		if (r < 0)
			srv_conn_free(c);
	}
}

/* Whether ephemeral node id is online in the store, or was seen within
 * the timeout (through another server: the snapshot has not caught up
 * yet). Errors count as back: removal waits for the next poll. */
static bool ephemeral_back(struct ctl_server *s, int64_t id, int64_t now)
{
	struct ctl_node *nd = malloc(sizeof *nd);
	if (!nd)
		return true;
	int r = ctl_store_node_by_id(s->cfg.store, id, nd);
	bool back = r < 0 || nd->online ||
	            nd->last_seen + (int64_t)s->cfg.ephemeral_timeout_s >= now;
	free(nd);
	if (back && r == 0)
		srv_broadcast_schedule(s); /* the snapshot is behind */
	return back;
}

/* Every poll_ms: writes by other processes (also announced by the store's
 * change notification, when it has one), expiry, ephemeral nodes. */
void srv_poll_cb(int fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	int64_t v = 0;
	if (ctl_store_map_version(s->cfg.store, &v) == 0 && v != s->snap_version)
		srv_broadcast_schedule(s);
	srv_ha_watch_try(s);
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
	 * offline node stayed admitted on relays until some other change).
	 * Its version is bumped (in the next write batch) so that deltas
	 * carry its removal: expiry by time writes nothing by itself. */
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct srv_node *n = &s->nodes[i];
		if (n->approved && n->expiry && n->expiry <= now &&
		    n->expiry > s->last_poll_s)
			srv_wb_touch(s, n->id);
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
		/* The snapshot is as of the last refresh: the node may have
		 * come back through another server since. The store decides:
		 * the read spares a node seen lately (and schedules a refresh),
		 * and the removal itself is conditional, so a registration
		 * through another server after that read still keeps it. */
		if (ephemeral_back(s, id, now))
			continue;
		int64_t cutoff = now - (int64_t)s->cfg.ephemeral_timeout_s;
		int rr = ctl_store_node_reap(s->cfg.store, id, cutoff);
		if (rr == CTL_STORE_ENOTFOUND) {
			log_debug("mesh-control: %s", ctl_store_errmsg(s->cfg.store));
			srv_broadcast_schedule(s);
		} else if (rr == 0) {
			log_info("mesh-control: ephemeral node %lld removed after %u s "
			         "offline",
			         (long long)id, s->cfg.ephemeral_timeout_s);
			srv_broadcast_schedule(s);
		}
	}
}
