/* The merged network map: MAP_FULL replaces it, MAP_DELTA is merged into it
 * (peers kept sorted by id so lookups are binary searches and the merge is
 * one pass). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/client_int.h"

static int cmp_peer(const void *a, const void *b)
{
	uint64_t x = ((const struct ctl_peer *)a)->id,
	         y = ((const struct ctl_peer *)b)->id;
	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_peer_ptr(const void *a, const void *b)
{
	return cmp_peer(*(const struct ctl_peer *const *)a,
	                *(const struct ctl_peer *const *)b);
}

static int cmp_reach(const void *a, const void *b)
{
	uint64_t x = ((const struct ctl_reach *)a)->id, y = ((const struct ctl_reach *)b)->id;
	return x < y ? -1 : x > y;
}

void ctl_map_sort(struct ctl_map_full *map)
{
	if (map->n_peers > 1)
		qsort(map->peers, map->n_peers, sizeof(*map->peers), cmp_peer);
	if (map->n_reach > 1)
		qsort(map->reach, map->n_reach, sizeof(*map->reach), cmp_reach);
}

void ctl_map_clear(struct ctl_map_full *map)
{
	free(map->peers);
	free(map->relays);
	ctl_filter_clear(&map->filter);
	ctl_reach_free(map->reach, map->n_reach);
	memset(map, 0, sizeof(*map));
}

const struct ctl_peer *ctl_map_find(const struct ctl_map_full *map, uint64_t id)
{
	size_t lo = 0, hi = map->n_peers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->peers[mid].id == id)
			return &map->peers[mid];
		if (map->peers[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool u64_in(const uint64_t *sorted, size_t n, uint64_t id)
{
	return n && bsearch(&id, sorted, n, sizeof(*sorted), cmp_u64) != NULL;
}

/* n * size without overflow, and below what we would ever hold. */
static bool size_ok(size_t n, size_t size)
{
	return n <= (SIZE_MAX / 4) / size;
}

/* Sets the fields a patch carries on the peer with its id; a patch for an id
 * the map does not hold (the node itself, or a peer it never saw) is
 * dropped. In place: no copy of the map. */
static void apply_patches(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                          struct ctl_map_work *w)
{
	for (size_t k = 0; k < delta->n_patches; k++) {
		const struct ctl_peer_patch *pp = &delta->patches[k];
		struct ctl_peer *p = (struct ctl_peer *)ctl_map_find(map, pp->id);
		if (!p)
			continue;
		w->peers_patched++;
		if (pp->fields & CTL_PATCH_ENDPOINTS) {
			uint8_t n =
			    pp->n_eps < CTL_ENDPOINTS_MAX ? pp->n_eps : CTL_ENDPOINTS_MAX;
			memset(p->eps, 0, sizeof(p->eps));
			memcpy(p->eps, pp->eps, n * sizeof(*p->eps));
			p->n_eps = n;
		}
		if (pp->fields & CTL_PATCH_HOME_RELAY)
			p->home_relay = pp->home_relay;
		if (pp->fields & CTL_PATCH_ONLINE)
			p->online = pp->online;
		if (pp->fields & CTL_PATCH_LAST_SEEN)
			p->last_seen = pp->last_seen;
		if (pp->fields & CTL_PATCH_SEEN_IP)
			p->seen_ip = pp->seen_ip;
	}
}

static bool patch_ids_unique(const struct ctl_map_delta *delta)
{
	size_t n = delta->n_peers + delta->n_patches;
	uint64_t *ids;
	bool ok = true;

	if (n < 2)
		return true;
	if (!(ids = malloc(n * sizeof(*ids))))
		return false;
	for (size_t k = 0; k < delta->n_peers; k++)
		ids[k] = delta->peers[k].id;
	for (size_t k = 0; k < delta->n_patches; k++)
		ids[delta->n_peers + k] = delta->patches[k].id;
	qsort(ids, n, sizeof(*ids), cmp_u64);
	for (size_t k = 1; k < n && ok; k++)
		ok = ids[k] != ids[k - 1];
	free(ids);
	return ok;
}

/* Index of the first peer with an id >= id in peers[lo, hi). */
static size_t lower_bound(const struct ctl_peer *peers, size_t lo, size_t hi, uint64_t id)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (peers[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool peer_ptr_in(const struct ctl_peer *const *sorted, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sorted[mid]->id == id)
			return true;
		if (sorted[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Drops the peers at the ascending positions pos[0..k) in one pass: each
 * run between two of them moves once. */
static void drop_positions(struct ctl_map_full *map, const size_t *pos, size_t k,
                           struct ctl_map_work *w)
{
	size_t dst = pos[0];
	for (size_t q = 0; q < k; q++) {
		size_t from = pos[q] + 1, to = q + 1 < k ? pos[q + 1] : map->n_peers;
		memmove(&map->peers[dst], &map->peers[from],
		        (to - from) * sizeof(*map->peers));
		w->peers_moved += to - from;
		dst += to - from;
	}
	map->n_peers -= k;
}

/* Inserts the new peers add[0..k) (ascending ids, none in the map; room
 * for them already allocated) from the back: each run of the map moves
 * once, by the number of new peers before it. */
static void insert_sorted(struct ctl_map_full *map, const struct ctl_peer *const *add,
                          size_t k, struct ctl_map_work *w)
{
	size_t src = map->n_peers;
	for (size_t j = k; j-- > 0;) {
		size_t pos = lower_bound(map->peers, 0, src, add[j]->id);
		memmove(&map->peers[pos + j + 1], &map->peers[pos],
		        (src - pos) * sizeof(*map->peers));
		w->peers_moved += src - pos;
		map->peers[pos + j] = *add[j];
		w->peers_written++;
		src = pos;
	}
	map->n_peers += k;
}


/* In place: a peer the map holds is overwritten where it is, a patch sets
 * fields where they are; only joins and removals move the peers after
 * them (one memmove per run, no copy of the map, no sort). Everything that
 * can fail (allocations, checks) happens before the map is touched. */
static int apply_peers(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                       struct ctl_map_work *work)
{
	const struct ctl_peer **add = NULL, **fresh = NULL;
	uint64_t *rm = NULL;
	size_t *pos = NULL;
	size_t na = 0, nf = 0, nr = delta->n_removed, np = 0;
	struct ctl_map_work dummy;
	struct ctl_map_work *w = work ? work : &dummy;
	int rc = -ENOMEM;

	memset(w, 0, sizeof(*w));
	if (delta->base_version != map->version)
		return -EINVAL;
	if ((delta->n_peers && !delta->peers) || (nr && !delta->removed) ||
	    (delta->n_patches && !delta->patches))
		return -EINVAL;
	if (delta->n_patches && !patch_ids_unique(delta)) /* the decoder refuses it */
		return -EINVAL;
	if (!size_ok(delta->n_peers, sizeof(*add)) || !size_ok(nr, sizeof(*rm)) ||
	    !size_ok(map->n_peers + delta->n_peers, sizeof(*map->peers)) ||
	    map->n_peers > SIZE_MAX / 4)
		return -ENOMEM;
	if ((delta->n_peers && (!(add = malloc(delta->n_peers * sizeof(*add))) ||
	                        !(fresh = malloc(delta->n_peers * sizeof(*fresh))))) ||
	    (nr &&
	     (!(rm = malloc(nr * sizeof(*rm))) || !(pos = malloc(nr * sizeof(*pos))))))
		goto out;
	/* The node itself is never its own peer (a server may name it in a
	 * delta shared by every node). */
	for (size_t k = 0; k < delta->n_peers; k++)
		if (delta->peers[k].id != map->self_id)
			add[na++] = &delta->peers[k];
	if (na > 1)
		qsort(add, na, sizeof(*add), cmp_peer_ptr);
	rc = -EINVAL;
	for (size_t k = 1; k < na; k++)
		if (add[k]->id == add[k - 1]->id) /* the decoder refuses this too */
			goto out;
	/* Removed ids the map holds, once each; a peer in the delta wins over
	 * the same id in removed. */
	if (nr) {
		memcpy(rm, delta->removed, nr * sizeof(*rm));
		qsort(rm, nr, sizeof(*rm), cmp_u64);
	}
	for (size_t k = 0; k < nr; k++) {
		if (k && rm[k] == rm[k - 1])
			continue;
		if (peer_ptr_in(add, na, rm[k]))
			continue;
		size_t at = lower_bound(map->peers, 0, map->n_peers, rm[k]);
		if (at < map->n_peers && map->peers[at].id == rm[k])
			pos[np++] = at; /* ascending: rm is sorted */
	}
	for (size_t k = 0; k < na; k++)
		if (!ctl_map_find(map, add[k]->id))
			fresh[nf++] = add[k]; /* ascending: add is sorted */
	/* what a full map may hold, also here */
	rc = -E2BIG;
	if (map->n_peers - np + nf > CTL_MAP_PEERS_MAX)
		goto out;
	if (nf > np) {
		struct ctl_peer *grown =
		    realloc(map->peers, (map->n_peers - np + nf) * sizeof(*grown));
		rc = -ENOMEM;
		if (!grown)
			goto out;
		map->peers = grown;
	}
	/* Nothing fails from here on. */
	for (size_t k = 0; k < na; k++) {
		struct ctl_peer *p = (struct ctl_peer *)ctl_map_find(map, add[k]->id);
		if (p) {
			*p = *add[k];
			w->peers_written++;
		}
	}
	if (np)
		drop_positions(map, pos, np, w);
	if (nf)
		insert_sorted(map, fresh, nf, w);
	apply_patches(map, delta, w);
	map->version = delta->version;
	rc = 0;
out:
	free(add);
	free(fresh);
	free(rm);
	free(pos);
	return rc;
}

int ctl_map_apply_delta(struct ctl_map_full *map, const struct ctl_map_delta *delta)
{
	return ctl_map_apply_delta_policy(map, delta, NULL, NULL);
}

int ctl_map_apply_delta_work(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                             struct ctl_map_work *work)
{
	return ctl_map_apply_delta_policy(map, delta, work, NULL);
}

/* The peers as in apply_peers, then a changed relay list (the whole new
 * list) and the policy part (client_policy.c), all or nothing: what can
 * fail is done before the map is touched. */
int ctl_map_apply_delta_policy(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                               struct ctl_map_work *work, bool *policy_changed)
{
	struct ctl_relay *rel = NULL;
	struct ctl_policy_step st;
	size_t nrel = delta->has_relays ? delta->n_relays : 0;

	if (policy_changed)
		*policy_changed = false;
	if (delta->base_version != map->version) {
		if (work)
			memset(work, 0, sizeof(*work));
		return -EINVAL;
	}
	if (nrel > CTL_RELAYS_MAX || (nrel && !delta->relays))
		return -EINVAL;
	if (nrel) {
		if (!(rel = malloc(nrel * sizeof(*rel))))
			return -ENOMEM;
		memcpy(rel, delta->relays, nrel * sizeof(*rel));
	}
	int r = ctl_map_policy_prepare(map, delta, &st);
	if (r < 0) {
		free(rel);
		return r;
	}
	r = apply_peers(map, delta, work);
	if (r < 0) {
		ctl_map_policy_abort(&st);
		free(rel);
		return r;
	}
	/* the node's own owner: whole, as sent (the decoder checked it) */
	if (delta->has_self &&
	    (strcmp(map->self_user, delta->self_user) != 0 ||
	     strcmp(map->self_tags, delta->self_tags) != 0)) {
		memcpy(map->self_user, delta->self_user, sizeof(map->self_user));
		memcpy(map->self_tags, delta->self_tags, sizeof(map->self_tags));
		st.changed = true;
	}
	if (policy_changed)
		*policy_changed = st.changed;
	ctl_map_policy_commit(map, &st);
	if (delta->has_relays) {
		free(map->relays);
		map->relays = rel;
		map->n_relays = nrel;
	}
	return 0;
}

int ctl_map_delta_changes(const struct ctl_map_full *map, const struct ctl_map_delta *d,
                          uint64_t **changed, size_t *n_changed, uint64_t **removed,
                          size_t *n_removed)
{
	uint64_t *ch = NULL, *rm = NULL;
	size_t nr = 0;

	*changed = *removed = NULL;
	*n_changed = *n_removed = 0;
	size_t nch = 0, cap = d->n_peers + d->n_patches;
	if (cap < d->n_peers || !size_ok(cap, sizeof(*ch)) ||
	    !size_ok(d->n_removed, sizeof(*rm)))
		return -ENOMEM;
	if ((cap && !(ch = malloc(cap * sizeof(*ch)))) ||
	    (d->n_removed && !(rm = malloc(d->n_removed * sizeof(*rm))))) {
		free(ch);
		return -ENOMEM;
	}
	for (size_t k = 0; k < d->n_peers; k++)
		if (d->peers[k].id != map->self_id)
			ch[nch++] = d->peers[k].id;
	/* Removals and peers are sorted once each (copies): every check is a
	 * binary search, so a delta costs O((R + P + Q) log) for R removals,
	 * P peers and Q patches, not O(R * (P + R)). */
	uint64_t *rs = NULL, *ps = NULL;
	bool *taken = NULL;
	size_t nps = 0;
	if (d->n_removed && (!(rs = malloc(d->n_removed * sizeof(*rs))) ||
	                     !(taken = calloc(d->n_removed, sizeof(*taken))) ||
	                     (d->n_peers && !(ps = malloc(d->n_peers * sizeof(*ps)))))) {
		free(rs);
		free(taken);
		free(ch);
		free(rm);
		return -ENOMEM;
	}
	if (d->n_removed) {
		memcpy(rs, d->removed, d->n_removed * sizeof(*rs));
		qsort(rs, d->n_removed, sizeof(*rs), cmp_u64);
		for (size_t k = 0; k < d->n_peers; k++) /* itself is never kept */
			if (d->peers[k].id != map->self_id)
				ps[nps++] = d->peers[k].id;
		if (nps)
			qsort(ps, nps, sizeof(*ps), cmp_u64);
	}
	/* only peers it has and keeps: a removal wins over a patch of the
	 * same id (the patch finds nothing to apply to after the merge) */
	for (size_t k = 0; k < d->n_patches; k++)
		if (ctl_map_find(map, d->patches[k].id) &&
		    !u64_in(rs, d->n_removed, d->patches[k].id))
			ch[nch++] = d->patches[k].id;
	/* removed: in the map, not back in the same delta as a peer, once
	 * (the first of equal ids in rs marks it taken) */
	for (size_t k = 0; k < d->n_removed; k++) {
		uint64_t id = d->removed[k];
		if (!ctl_map_find(map, id) || u64_in(ps, nps, id))
			continue;
		size_t lo = 0, hi = d->n_removed;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (rs[mid] < id)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (taken[lo])
			continue;
		taken[lo] = true;
		rm[nr++] = id;
	}
	free(rs);
	free(ps);
	free(taken);
	*changed = ch;
	*n_changed = nch;
	*removed = rm;
	*n_removed = nr;
	return 0;
}

/* The array grows geometrically (an exact realloc per chunk may copy the
 * whole map each time: O(n^2) at tens of MB); ctl_map_finish trims it. A
 * server can send chunks without peers forever: more than
 * CTL_MAP_EMPTY_CHUNKS_MAX of them is an error (every other chunk adds a
 * peer, so the peer limit bounds them). */
int ctl_map_append_chunk(struct ctl_map_full *map, const struct ctl_map_peers *chunk)
{
	size_t n = map->n_peers + chunk->n_peers;
	size_t cap = map->cap_peers > map->n_peers ? map->cap_peers : map->n_peers;
	struct ctl_peer *np;

	if (chunk->n_peers && !chunk->peers)
		return -EINVAL;
	if (n > CTL_MAP_PEERS_MAX || n < map->n_peers)
		return -E2BIG;
	if (chunk->n_peers == 0)
		return ++map->n_empty_chunks > CTL_MAP_EMPTY_CHUNKS_MAX ? -EPROTO : 0;
	if (n > cap) {
		size_t nc = cap * 2 > n ? cap * 2 : n;
		if (nc < 256)
			nc = 256;
		if (nc > CTL_MAP_PEERS_MAX)
			nc = CTL_MAP_PEERS_MAX;
		if (!(np = realloc(map->peers, nc * sizeof(*np))))
			return -ENOMEM;
		map->peers = np;
		map->cap_peers = nc;
	}
	memcpy(map->peers + map->n_peers, chunk->peers,
	       chunk->n_peers * sizeof(*map->peers));
	map->n_peers = n;
	return 0;
}

/* The node itself is never its own peer: a server that names it in a
 * full map is ignored for that entry (as in deltas). */
static void drop_self(struct ctl_map_full *map)
{
	size_t n = 0;
	for (size_t k = 0; k < map->n_peers; k++)
		if (map->peers[k].id != map->self_id)
			map->peers[n++] = map->peers[k];
	map->n_peers = n;
}

int ctl_map_finish(struct ctl_map_full *map)
{
	drop_self(map);
	/* trimmed to its size: the map is kept, and later replaced whole */
	if (map->cap_peers > map->n_peers && map->n_peers) {
		struct ctl_peer *np =
		    realloc(map->peers, map->n_peers * sizeof(*map->peers));
		if (np)
			map->peers = np;
	}
	map->cap_peers = 0;
	map->n_empty_chunks = 0;
	ctl_map_sort(map);
	for (size_t k = 1; k < map->n_peers; k++)
		if (map->peers[k].id == map->peers[k - 1].id)
			return -EINVAL;
	ctl_map_policy_tidy(map);
	return 0;
}

int ctl_client_map_replace(struct ctl_client *c, struct ctl_map_full *full,
                           uint64_t **changed, size_t *n_changed, uint64_t **removed,
                           size_t *n_removed)
{
	uint64_t *ch = NULL, *rm = NULL;
	size_t nr = 0, i = 0, j = 0;
	const struct ctl_map_full *old = &c->map;

	*changed = *removed = NULL;
	*n_changed = *n_removed = 0;
	if (!size_ok(full->n_peers, sizeof(*ch)) || !size_ok(old->n_peers, sizeof(*rm)))
		return -ENOMEM;
	if ((full->n_peers && !(ch = malloc(full->n_peers * sizeof(*ch)))) ||
	    (c->have_map && old->n_peers && !(rm = malloc(old->n_peers * sizeof(*rm))))) {
		free(ch);
		return -ENOMEM;
	}
	drop_self(full);
	ctl_map_sort(full);
	ctl_map_policy_tidy(full);
	for (size_t k = 0; k < full->n_peers; k++)
		ch[k] = full->peers[k].id;
	/* removed = old ids not in the new map; both sorted */
	while (c->have_map && i < old->n_peers) {
		while (j < full->n_peers && full->peers[j].id < old->peers[i].id)
			j++;
		if (j == full->n_peers || full->peers[j].id != old->peers[i].id)
			rm[nr++] = old->peers[i].id;
		i++;
	}
	ctl_map_clear(&c->map);
	c->map = *full;
	memset(full, 0, sizeof(*full));
	c->have_map = true;
	*changed = ch;
	*n_changed = c->map.n_peers;
	*removed = rm;
	*n_removed = nr;
	return 0;
}
