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

void ctl_map_sort(struct ctl_map_full *map)
{
	if (map->n_peers > 1)
		qsort(map->peers, map->n_peers, sizeof(*map->peers), cmp_peer);
}

void ctl_map_clear(struct ctl_map_full *map)
{
	free(map->peers);
	free(map->relays);
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

int ctl_map_apply_delta(struct ctl_map_full *map, const struct ctl_map_delta *delta)
{
	const struct ctl_peer **add = NULL;
	uint64_t *rm = NULL;
	struct ctl_peer *out = NULL;
	size_t nd = delta->n_peers, nr = delta->n_removed, n = 0, i = 0, j = 0;

	if (delta->base_version != map->version)
		return -EINVAL;
	if ((nd && !delta->peers) || (nr && !delta->removed))
		return -EINVAL;
	if (!size_ok(nd, sizeof(*add)) || !size_ok(nr, sizeof(*rm)) ||
	    !size_ok(map->n_peers + nd, sizeof(*out)) || map->n_peers > SIZE_MAX / 4)
		return -ENOMEM;
	if ((nd && !(add = malloc(nd * sizeof(*add)))) ||
	    (nr && !(rm = malloc(nr * sizeof(*rm)))) ||
	    (map->n_peers + nd && !(out = malloc((map->n_peers + nd) * sizeof(*out))))) {
		free(add);
		free(rm);
		return -ENOMEM;
	}
	for (size_t k = 0; k < nd; k++)
		add[k] = &delta->peers[k];
	if (nd > 1)
		qsort(add, nd, sizeof(*add), cmp_peer_ptr);
	for (size_t k = 1; k < nd; k++) {
		if (add[k]->id == add[k - 1]->id) { /* the decoder refuses this too */
			free(add);
			free(rm);
			free(out);
			return -EINVAL;
		}
	}
	if (nr) {
		memcpy(rm, delta->removed, nr * sizeof(*rm));
		qsort(rm, nr, sizeof(*rm), cmp_u64);
	}
	/* One merge pass: a peer in the delta replaces the map's one with its id
	 * (and wins over the same id in removed); removed ids are dropped. */
	while (i < map->n_peers || j < nd) {
		if (j < nd && (i == map->n_peers || add[j]->id <= map->peers[i].id)) {
			if (i < map->n_peers && add[j]->id == map->peers[i].id)
				i++;
			out[n++] = *add[j++];
		} else {
			if (!u64_in(rm, nr, map->peers[i].id))
				out[n++] = map->peers[i];
			i++;
		}
	}
	free(add);
	free(rm);
	free(map->peers);
	map->peers = out;
	map->n_peers = n;
	map->version = delta->version;
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
	if (!size_ok(d->n_peers, sizeof(*ch)) || !size_ok(d->n_removed, sizeof(*rm)))
		return -ENOMEM;
	if ((d->n_peers && !(ch = malloc(d->n_peers * sizeof(*ch)))) ||
	    (d->n_removed && !(rm = malloc(d->n_removed * sizeof(*rm))))) {
		free(ch);
		return -ENOMEM;
	}
	for (size_t k = 0; k < d->n_peers; k++)
		ch[k] = d->peers[k].id;
	for (size_t k = 0; k < d->n_removed; k++) {
		bool readded = false;
		if (!ctl_map_find(map, d->removed[k]))
			continue;
		for (size_t q = 0; q < d->n_peers && !readded; q++)
			readded = d->peers[q].id == d->removed[k];
		for (size_t q = 0; q < nr && !readded; q++) /* listed twice */
			readded = rm[q] == d->removed[k];
		if (!readded)
			rm[nr++] = d->removed[k];
	}
	*changed = ch;
	*n_changed = d->n_peers;
	*removed = rm;
	*n_removed = nr;
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
	ctl_map_sort(full);
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
