/* Fuzzes the control client's map merge: the input is NUL-separated JSON
 * bodies, the first a MAP_FULL, the rest MAP_DELTAs, decoded with
 * ctl_msg_decode and applied in order with ctl_map_apply_delta (a delta
 * whose base does not match is checked to leave the map unchanged, then
 * applied again rebased so the merge itself gets exercised). After every
 * step: peers strictly sorted by id; every delta peer present byte for
 * byte; removed ids gone unless re-added; other peers untouched; the count
 * adds up with ctl_map_delta_changes' lists. */
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
	for (size_t i = 0; i < d->n_peers; i++)
		if (!ctl_map_find(map, d->peers[i].id))
			added++;
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
	if (map->version != d->version || nch != d->n_peers ||
	    map->n_peers != old.n_peers + added - nrm)
		abort();
	free(ch);
	free(rm);
	check_sorted(map);
	for (size_t i = 0; i < d->n_peers; i++) {
		const struct ctl_peer *p = ctl_map_find(map, d->peers[i].id);
		if (!p || memcmp(p, &d->peers[i], sizeof(*p)))
			abort();
	}
	for (size_t i = 0; i < old.n_peers; i++) {
		const struct ctl_peer *o = &old.peers[i], *p = ctl_map_find(map, o->id);
		if (in_delta(d, o->id))
			continue;
		if (in_removed(d, o->id) ? p != NULL : (!p || memcmp(p, o, sizeof(*p))))
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
	ctl_map_sort(&map);
	check_sorted(&map); /* and unique: the decoder refuses duplicates */
	while (n < size) {
		data += n + 1;
		size -= n + 1;
		n = next_chunk(data, size);
		if (ctl_msg_decode(CTL_MSG_MAP_DELTA, data, n, &m, NULL) != 0)
			continue;
		apply_checked(&map, &m.u.delta);
		ctl_msg_free(&m);
	}
	ctl_map_clear(&map);
	return 0;
}
