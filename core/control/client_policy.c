/* The access-policy part of the merged map (CTL_CAP_POLICY): the node's
 * filter and its reach entries, kept sorted by peer id, merged from each
 * MAP_DELTA all or nothing (the peers' own user and tags travel with the
 * peer entries and are merged in client_map.c).
 *
 * Rules (msg.h): a delta's filter SET replaces the filter, CLEAR drops it
 * and every reach entry; reach entries are set or replaced by id; an entry
 * whose id is not a peer of the map after the delta (removed, never sent,
 * or the node itself) is dropped, as is every entry while there is no
 * filter. Dropped entries are not errors: a server may send one delta to
 * many nodes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/client_int.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_reach(const void *a, const void *b)
{
	uint64_t x = ((const struct ctl_reach *)a)->id, y = ((const struct ctl_reach *)b)->id;
	return x < y ? -1 : x > y;
}

static int cmp_reach_ptr(const void *a, const void *b)
{
	return cmp_reach(*(const struct ctl_reach *const *)a,
	                 *(const struct ctl_reach *const *)b);
}

const struct ctl_reach *ctl_map_find_reach(const struct ctl_map_full *map, uint64_t id)
{
	size_t lo = 0, hi = map->n_reach;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->reach[mid].id == id)
			return &map->reach[mid];
		if (map->reach[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void sort_reach(struct ctl_map_full *map)
{
	for (size_t i = 1; i < map->n_reach; i++) {
		if (map->reach[i - 1].id >= map->reach[i].id) {
			qsort(map->reach, map->n_reach, sizeof(*map->reach), cmp_reach);
			return;
		}
	}
}

void ctl_map_policy_tidy(struct ctl_map_full *map)
{
	size_t n = 0;

	if (!map->has_filter) {
		ctl_filter_clear(&map->filter);
		ctl_reach_free(map->reach, map->n_reach);
		map->reach = NULL;
		map->n_reach = 0;
		return;
	}
	sort_reach(map);
	for (size_t i = 0; i < map->n_reach; i++) {
		struct ctl_reach *r = &map->reach[i];
		bool dup = n && map->reach[n - 1].id == r->id;
		if (dup || r->id == map->self_id || !ctl_map_find(map, r->id)) {
			ctl_reach_clear(r);
			continue;
		}
		map->reach[n++] = *r;
	}
	map->n_reach = n;
	if (!n) {
		free(map->reach);
		map->reach = NULL;
	}
}

static bool ranges_equal(const struct ctl_port_range *a, uint32_t na,
                         const struct ctl_port_range *b, uint32_t nb)
{
	return na == nb && (!na || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool reach_equal(const struct ctl_reach *a, const struct ctl_reach *b)
{
	return a && b && a->icmp == b->icmp && ranges_equal(a->tcp, a->n_tcp, b->tcp, b->n_tcp) &&
	       ranges_equal(a->udp, a->n_udp, b->udp, b->n_udp);
}

static bool u64_in(const uint64_t *sorted, size_t n, uint64_t id)
{
	return n && bsearch(&id, sorted, n, sizeof(*sorted), cmp_u64) != NULL;
}

/* Whether peer id is in the map after delta d (a peer in d wins over the
 * same id in removed; the node itself never is). */
static bool in_after(const struct ctl_map_full *map, const struct ctl_map_delta *d,
                     const uint64_t *peers, size_t np, const uint64_t *rm, size_t nr,
                     uint64_t id)
{
	if (id == map->self_id)
		return false;
	if (u64_in(peers, np, id))
		return true;
	return ctl_map_find(map, id) && !u64_in(rm, nr, id);
}

/* A peer in d whose user or tags differ from what the map holds (a new
 * peer with either counts). */
static bool owners_changed(const struct ctl_map_full *map, const struct ctl_map_delta *d)
{
	for (size_t k = 0; k < d->n_peers; k++) {
		const struct ctl_peer *p = &d->peers[k];
		if (p->id == map->self_id)
			continue;
		const struct ctl_peer *o = ctl_map_find(map, p->id);
		if (o ? strcmp(o->user, p->user) != 0 || strcmp(o->tags, p->tags) != 0
		      : p->user[0] || p->tags[0])
			return true;
	}
	return false;
}

void ctl_map_policy_abort(struct ctl_policy_step *st)
{
	for (size_t i = 0; i < st->n_reach; i++)
		if (st->mode == CTL_REACH_INPLACE || (st->fresh && st->fresh[i]))
			ctl_reach_clear(&st->reach[i]);
	free(st->reach);
	free(st->at);
	free(st->fresh);
	free(st->old_kept);
	ctl_filter_clear(&st->filter);
	memset(st, 0, sizeof(*st));
}

/* The common delta under a policy: no reach entry comes or goes, at most
 * some are replaced. Then the map's entries are swapped where they are
 * (O(A log R) for A entries in the delta), not the list rebuilt. 1: done
 * (st->mode KEEP or INPLACE), 0: a rebuild is needed, -errno. */
static int try_in_place(const struct ctl_map_full *map, const struct ctl_map_delta *d,
                        const struct ctl_reach **add, size_t na, const uint64_t *peers,
                        size_t np, const uint64_t *rm, size_t nr,
                        struct ctl_policy_step *st)
{
	for (size_t k = 0; k < nr; k++) /* a removal that takes an entry */
		if (ctl_map_find_reach(map, rm[k]) &&
		    !in_after(map, d, peers, np, rm, nr, rm[k]))
			return 0;
	size_t n = 0;
	for (size_t k = 0; k < na; k++) {
		bool kept = in_after(map, d, peers, np, rm, nr, add[k]->id);
		bool had = ctl_map_find_reach(map, add[k]->id) != NULL;
		if (kept != had)
			return 0; /* an entry comes, or one goes */
		n += kept;
	}
	st->mode = CTL_REACH_KEEP;
	if (!n)
		return 1;
	if (!(st->reach = calloc(n, sizeof(*st->reach))) ||
	    !(st->at = malloc(n * sizeof(*st->at))))
		return -ENOMEM;
	st->mode = CTL_REACH_INPLACE;
	for (size_t k = 0; k < na; k++) {
		const struct ctl_reach *o = ctl_map_find_reach(map, add[k]->id);
		if (!o)
			continue;
		if (ctl_reach_copy(&st->reach[st->n_reach], add[k]) < 0)
			return -ENOMEM;
		st->at[st->n_reach++] = (size_t)(o - map->reach);
		st->changed |= !reach_equal(o, add[k]);
	}
	return 1;
}

/* The new reach list: old entries still wanted (shared with the map until
 * commit) and deep copies of the delta's, ascending by id. */
static int merge_reach(struct ctl_map_full *map, const struct ctl_map_delta *d,
                       const struct ctl_reach **add, size_t na, const uint64_t *peers,
                       size_t np, const uint64_t *rm, size_t nr, struct ctl_policy_step *st)
{
	size_t no = map->n_reach, i = 0, j = 0;

	st->mode = CTL_REACH_REBUILD;
	if (no + na && (!(st->reach = malloc((no + na) * sizeof(*st->reach))) ||
	                !(st->fresh = calloc(no + na, sizeof(*st->fresh)))))
		return -ENOMEM;
	if (no && !(st->old_kept = calloc(no, sizeof(*st->old_kept))))
		return -ENOMEM;
	while (i < no || j < na) {
		const struct ctl_reach *o = i < no ? &map->reach[i] : NULL;
		const struct ctl_reach *a = j < na ? add[j] : NULL;
		if (a && (!o || a->id <= o->id)) {
			bool same = o && o->id == a->id;
			if (same)
				i++; /* replaced: not kept */
			j++;
			if (!in_after(map, d, peers, np, rm, nr, a->id)) {
				st->changed |= same;
				continue;
			}
			st->changed |= !(same && reach_equal(o, a));
			if (ctl_reach_copy(&st->reach[st->n_reach], a) < 0)
				return -ENOMEM;
			st->fresh[st->n_reach++] = true;
			continue;
		}
		if (in_after(map, d, peers, np, rm, nr, o->id)) {
			st->reach[st->n_reach++] = *o;
			st->old_kept[i] = true;
		} else {
			st->changed = true;
		}
		i++;
	}
	return 0;
}

int ctl_map_policy_prepare(struct ctl_map_full *map, const struct ctl_map_delta *d,
                           struct ctl_policy_step *st)
{
	uint64_t *peers = NULL, *rm = NULL;
	const struct ctl_reach **add = NULL;
	size_t np = 0, nr = d->n_removed, na = d->n_reach;
	int rc = -ENOMEM;

	memset(st, 0, sizeof(*st));
	if ((unsigned)d->filter_op > CTL_FILTER_CLEAR || (d->n_reach && !d->reach) ||
	    (d->n_peers && !d->peers) || (nr && !d->removed))
		return -EINVAL;
	/* sizes the peer merge refuses as no memory: refused before their
	 * arrays are read */
	if (d->n_peers > (SIZE_MAX / 4) / sizeof(*d->peers) ||
	    nr > (SIZE_MAX / 4) / sizeof(*d->removed))
		return -ENOMEM;
	if (d->n_reach > CTL_MAP_PEERS_MAX)
		return -E2BIG;
	st->op = d->filter_op;
	st->changed = d->filter_op != CTL_FILTER_KEEP || owners_changed(map, d);
	if (d->filter_op == CTL_FILTER_SET && ctl_filter_copy(&st->filter, &d->filter) < 0)
		goto fail;
	bool filter_after = d->filter_op == CTL_FILTER_SET ||
	                    (d->filter_op == CTL_FILTER_KEEP && map->has_filter);
	if (!filter_after) {
		/* no policy after this delta: every entry goes */
		st->mode = CTL_REACH_NONE;
		st->changed |= map->n_reach > 0;
		return 0;
	}
	if ((d->n_peers && !(peers = malloc(d->n_peers * sizeof(*peers)))) ||
	    (nr && !(rm = malloc(nr * sizeof(*rm)))) ||
	    (na && !(add = malloc(na * sizeof(*add)))))
		goto fail;
	for (size_t k = 0; k < na; k++)
		add[k] = &d->reach[k];
	if (na > 1)
		qsort(add, na, sizeof(*add), cmp_reach_ptr);
	rc = -EINVAL;
	for (size_t k = 1; k < na; k++)
		if (add[k]->id == add[k - 1]->id) /* the decoder refuses this too */
			goto fail;
	for (size_t k = 0; k < d->n_peers; k++)
		peers[np++] = d->peers[k].id;
	if (np > 1)
		qsort(peers, np, sizeof(*peers), cmp_u64);
	if (nr) {
		memcpy(rm, d->removed, nr * sizeof(*rm));
		qsort(rm, nr, sizeof(*rm), cmp_u64);
	}
	/* The merged map keeps reach sorted (ctl_map_policy_tidy, ctl_map_sort,
	 * every merge); the in-place path relies on it. */
	rc = try_in_place(map, d, add, na, peers, np, rm, nr, st);
	if (rc == 0) {
		sort_reach(map); /* O(R) here anyway */
		rc = merge_reach(map, d, add, na, peers, np, rm, nr, st);
	}
	if (rc < 0)
		goto fail;
	free(peers);
	free(rm);
	free(add);
	return 0;
fail:
	free(peers);
	free(rm);
	free(add);
	ctl_map_policy_abort(st);
	return rc;
}

void ctl_map_policy_commit(struct ctl_map_full *map, struct ctl_policy_step *st)
{
	if (st->op == CTL_FILTER_SET) {
		ctl_filter_clear(&map->filter);
		map->filter = st->filter;
		map->has_filter = true;
		memset(&st->filter, 0, sizeof(st->filter));
	} else if (st->op == CTL_FILTER_CLEAR) {
		ctl_filter_clear(&map->filter);
		map->has_filter = false;
	}
	switch (st->mode) {
	case CTL_REACH_KEEP:
		break;
	case CTL_REACH_INPLACE:
		for (size_t i = 0; i < st->n_reach; i++) {
			ctl_reach_clear(&map->reach[st->at[i]]);
			map->reach[st->at[i]] = st->reach[i];
		}
		break;
	case CTL_REACH_NONE:
	case CTL_REACH_REBUILD:
		/* old entries not carried over are freed; kept ones moved */
		for (size_t i = 0; i < map->n_reach; i++)
			if (!st->old_kept || !st->old_kept[i])
				ctl_reach_clear(&map->reach[i]);
		free(map->reach);
		map->reach = NULL;
		map->n_reach = 0;
		if (st->mode == CTL_REACH_REBUILD && st->n_reach) {
			map->reach = st->reach;
			map->n_reach = st->n_reach;
			st->reach = NULL;
		}
		break;
	}
	free(st->reach);
	free(st->at);
	free(st->fresh);
	free(st->old_kept);
	memset(st, 0, sizeof(*st));
}
