/* Fuzzes the control client's map merge: the input is NUL-separated JSON
 * bodies, the first a MAP_FULL; while a map says more, the next bodies are
 * MAP_PEERS chunks (assembled with ctl_map_append_chunk / ctl_map_finish,
 * which must refuse an id named twice); the rest are MAP_DELTAs, decoded
 * with ctl_msg_decode and applied in order with ctl_map_apply_delta (a delta
 * whose base does not match is checked to leave the map unchanged, then
 * applied again rebased so the merge itself gets exercised). After every
 * step: peers strictly sorted by id; every delta peer present byte for
 * byte, except the node itself, never present (not even from the full
 * map); patches set exactly their fields on peers the map had and are
 * dropped for others (and reported changed only when not also removed);
 * removed ids gone unless re-added; other peers untouched; the count adds
 * up with ctl_map_delta_changes' lists. The policy part (CTL_CAP_POLICY):
 * reach entries strictly sorted, each for a peer the map holds, none
 * without a filter; a delta's SET filter held as sent, CLEAR drops it;
 * a delta's reach entry for a peer kept is held as sent; the others are
 * the ones from before, untouched. The node's own user and tags: a
 * delta's self as sent, else unchanged. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/client_int.h"
#include "core/control/msg.h"

static size_t next_chunk(const uint8_t *p, size_t len)
{
	const uint8_t *z = memchr(p, 0, len);
	return z ? (size_t)(z - p) : len;
}

static void check_sorted(const struct ctl_map_full *m)
{
	for (size_t i = 1; i < m->n_peers; i++)
		if (m->peers[i - 1].id >= m->peers[i].id)
			abort();
}

/* The policy part of a whole map (after ctl_map_finish or a delta). */
static void check_policy(const struct ctl_map_full *m)
{
	if (!m->has_filter) {
		if (m->n_reach || m->reach)
			abort();
		for (int p = 0; p < CTL_FILTER_NPROTO; p++)
			if (m->filter.n_blocks[p] || m->filter.blocks[p])
				abort();
	}
	for (size_t i = 0; i < m->n_reach; i++) {
		if ((i && m->reach[i - 1].id >= m->reach[i].id) ||
		    m->reach[i].id == m->self_id || !ctl_map_find(m, m->reach[i].id) ||
		    ctl_map_find_reach(m, m->reach[i].id) != &m->reach[i])
			abort();
	}
}

static bool ranges_eq(const struct ctl_port_range *a, uint32_t na,
                      const struct ctl_port_range *b, uint32_t nb)
{
	return na == nb && (!na || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool reach_eq(const struct ctl_reach *a, const struct ctl_reach *b)
{
	return a->id == b->id && a->icmp == b->icmp &&
	       ranges_eq(a->tcp, a->n_tcp, b->tcp, b->n_tcp) &&
	       ranges_eq(a->udp, a->n_udp, b->udp, b->n_udp);
}

static bool filter_eq(const struct ctl_filter *a, const struct ctl_filter *b)
{
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		if (a->n_blocks[p] != b->n_blocks[p])
			return false;
		for (size_t i = 0; i < a->n_blocks[p]; i++) {
			const struct ctl_filter_block *x = &a->blocks[p][i], *y = &b->blocks[p][i];
			if (memcmp(&x->lo, &y->lo, sizeof(x->lo)) ||
			    memcmp(&x->hi, &y->hi, sizeof(x->hi)) ||
			    !ranges_eq(x->ports, x->n_ports, y->ports, y->n_ports))
				return false;
		}
	}
	return true;
}

static const struct ctl_reach *delta_reach(const struct ctl_map_delta *d, uint64_t id)
{
	for (size_t i = 0; i < d->n_reach; i++)
		if (d->reach[i].id == id)
			return &d->reach[i];
	return NULL;
}

/* After a delta: its filter op and reach as the rules say; old entries
 * (shallow copies taken before) untouched where the delta left them. */
static void check_policy_delta(const struct ctl_map_full *m, const struct ctl_map_delta *d,
                               const struct ctl_reach *old, size_t n_old)
{
	check_policy(m);
	if (d->filter_op == CTL_FILTER_SET &&
	    (!m->has_filter || !filter_eq(&m->filter, &d->filter)))
		abort();
	if (d->filter_op == CTL_FILTER_CLEAR && m->has_filter)
		abort();
	if (!m->has_filter)
		return;
	for (size_t i = 0; i < d->n_reach; i++) {
		const struct ctl_reach *r = ctl_map_find_reach(m, d->reach[i].id);
		bool peer = ctl_map_find(m, d->reach[i].id) != NULL;
		if (peer != (r != NULL) || (r && !reach_eq(r, &d->reach[i])))
			abort();
	}
	for (size_t i = 0; i < n_old; i++) {
		if (delta_reach(d, old[i].id))
			continue;
		const struct ctl_reach *r = ctl_map_find_reach(m, old[i].id);
		bool peer = ctl_map_find(m, old[i].id) != NULL;
		/* kept entries are moved, not copied: same arrays */
		if (peer != (r != NULL) ||
		    (r && (r->tcp != old[i].tcp || r->udp != old[i].udp ||
		           r->n_tcp != old[i].n_tcp || r->n_udp != old[i].n_udp ||
		           r->icmp != old[i].icmp)))
			abort();
	}
}

static bool in_delta(const struct ctl_map_delta *d, uint64_t id)
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (d->peers[i].id == id)
			return true;
	return false;
}

static const struct ctl_peer_patch *patch_of(const struct ctl_map_delta *d, uint64_t id)
{
	for (size_t i = 0; i < d->n_patches; i++)
		if (d->patches[i].id == id)
			return &d->patches[i];
	return NULL;
}

/* What o becomes under patch pp. */
static struct ctl_peer patched(const struct ctl_peer *o, const struct ctl_peer_patch *pp)
{
	struct ctl_peer p = *o;
	if (pp->fields & CTL_PATCH_ENDPOINTS) {
		memset(p.eps, 0, sizeof(p.eps));
		memcpy(p.eps, pp->eps, pp->n_eps * sizeof(*p.eps));
		p.n_eps = pp->n_eps;
	}
	if (pp->fields & CTL_PATCH_HOME_RELAY)
		p.home_relay = pp->home_relay;
	if (pp->fields & CTL_PATCH_ONLINE)
		p.online = pp->online;
	if (pp->fields & CTL_PATCH_LAST_SEEN)
		p.last_seen = pp->last_seen;
	if (pp->fields & CTL_PATCH_SEEN_IP)
		p.seen_ip = pp->seen_ip;
	return p;
}

static bool in_removed(const struct ctl_map_delta *d, uint64_t id)
{
	for (size_t i = 0; i < d->n_removed; i++)
		if (d->removed[i] == id)
			return true;
	return false;
}

static void apply_checked(struct ctl_map_full *map, struct ctl_map_delta *d)
{
	struct ctl_map_full old = *map;
	uint64_t *ch, *rm;
	size_t nch, nrm, added = 0;
	int rc;

	old.peers = NULL;
	old.reach = NULL;
	if (map->n_peers) {
		old.peers = malloc(map->n_peers * sizeof(*old.peers));
		if (!old.peers)
			return;
		memcpy(old.peers, map->peers, map->n_peers * sizeof(*old.peers));
	}
	if (map->n_reach) {
		old.reach = malloc(map->n_reach * sizeof(*old.reach));
		if (!old.reach) {
			free(old.peers);
			return;
		}
		memcpy(old.reach, map->reach, map->n_reach * sizeof(*old.reach));
	}
	/* the change lists and the count, from the map before the delta */
	if (ctl_map_delta_changes(map, d, &ch, &nch, &rm, &nrm) != 0)
		abort();
	size_t want_ch = 0;
	for (size_t i = 0; i < d->n_peers; i++) {
		if (d->peers[i].id == map->self_id)
			continue;
		want_ch++;
		if (!ctl_map_find(map, d->peers[i].id))
			added++;
	}
	for (size_t i = 0; i < d->n_patches; i++) /* a removal wins */
		if (ctl_map_find(map, d->patches[i].id) &&
		    !in_removed(d, d->patches[i].id))
			want_ch++;
	char old_user[CTL_USER_MAX], old_tags[CTL_PEER_TAGS_MAX];
	memcpy(old_user, map->self_user, sizeof(old_user));
	memcpy(old_tags, map->self_tags, sizeof(old_tags));
	rc = ctl_map_apply_delta(map, d);
	if (rc == -EINVAL && d->base_version != old.version) {
		/* unchanged on a base mismatch; then rebased */
		if (map->version != old.version || map->n_peers != old.n_peers ||
		    (old.n_peers &&
		     memcmp(map->peers, old.peers, old.n_peers * sizeof(*old.peers))))
			abort();
		d->base_version = map->version;
		rc = ctl_map_apply_delta(map, d);
	}
	if (rc != 0) /* the decoder refuses duplicate ids */
		abort();
	if (map->version != d->version || nch != want_ch ||
	    map->n_peers != old.n_peers + added - nrm)
		abort();
	free(ch);
	free(rm);
	check_sorted(map);
	/* the node's own owner: a delta's self as sent, else as it was */
	if (strcmp(map->self_user, d->has_self ? d->self_user : old_user) ||
	    strcmp(map->self_tags, d->has_self ? d->self_tags : old_tags))
		abort();
	/* the node itself is never among its peers (a full map that names it
	 * loses that entry in ctl_map_finish; a delta never adds it) */
	if (ctl_map_find(map, map->self_id))
		abort();
	for (size_t i = 0; i < d->n_peers; i++) {
		const struct ctl_peer *p = ctl_map_find(map, d->peers[i].id);
		if (d->peers[i].id == map->self_id)
			continue; /* the node itself: left as it was */
		if (!p || memcmp(p, &d->peers[i], sizeof(*p)))
			abort();
	}
	for (size_t i = 0; i < old.n_peers; i++) {
		const struct ctl_peer *o = &old.peers[i], *p = ctl_map_find(map, o->id);
		const struct ctl_peer_patch *pp = patch_of(d, o->id);
		if (in_delta(d, o->id))
			continue;
		if (in_removed(d, o->id)) {
			if (p)
				abort();
			continue;
		}
		struct ctl_peer want = pp ? patched(o, pp) : *o;
		if (!p || memcmp(p, &want, sizeof(*p)))
			abort();
	}
	/* a patch never adds a peer */
	for (size_t i = 0; i < d->n_patches; i++)
		if (ctl_map_find(map, d->patches[i].id) &&
		    !in_delta(d, d->patches[i].id)) {
			bool had = false;
			for (size_t k = 0; k < old.n_peers && !had; k++)
				had = old.peers[k].id == d->patches[i].id;
			if (!had)
				abort();
		}
	check_policy_delta(map, d, old.reach, old.n_reach);
	free(old.peers);
	free(old.reach);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_msg full, m;
	struct ctl_map_full map;
	size_t n = next_chunk(data, size);

	if (ctl_msg_decode(CTL_MSG_MAP_FULL, data, n, &full, NULL) != 0)
		return 0;
	map = full.u.map;
	memset(&full.u.map, 0, sizeof(full.u.map));
	bool more = map.more;
	while (more && n < size) { /* chunks of a MAP_FULL */
		data += n + 1;
		size -= n + 1;
		n = next_chunk(data, size);
		if (ctl_msg_decode(CTL_MSG_MAP_PEERS, data, n, &m, NULL) != 0)
			continue;
		size_t before = map.n_peers;
		int rc = ctl_map_append_chunk(&map, &m.u.chunk);
		if (rc == 0 ? map.n_peers != before + m.u.chunk.n_peers
		            : map.n_peers != before)
			abort();
		more = m.u.chunk.more;
		ctl_msg_free(&m);
		if (rc != 0)
			goto out;
	}
	if (ctl_map_finish(&map) != 0) {
		/* refused only for an id named twice */
		bool dup = false;
		for (size_t i = 1; i < map.n_peers && !dup; i++)
			dup = map.peers[i].id == map.peers[i - 1].id;
		if (!dup)
			abort();
		goto out;
	}
	check_sorted(&map); /* and unique */
	if (ctl_map_find(&map, map.self_id)) /* never its own peer */
		abort();
	check_policy(&map);
	while (n < size) {
		data += n + 1;
		size -= n + 1;
		n = next_chunk(data, size);
		if (ctl_msg_decode(CTL_MSG_MAP_DELTA, data, n, &m, NULL) != 0)
			continue;
		apply_checked(&map, &m.u.delta);
		ctl_msg_free(&m);
	}
out:
	ctl_map_clear(&map);
	return 0;
}
