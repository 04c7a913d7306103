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
 * up with ctl_map_delta_changes' lists. */
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
	if (map->n_peers) {
		old.peers = malloc(map->n_peers * sizeof(*old.peers));
		if (!old.peers)
			return;
		memcpy(old.peers, map->peers, map->n_peers * sizeof(*old.peers));
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
	free(old.peers);
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
