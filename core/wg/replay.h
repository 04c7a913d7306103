/* Sliding-window replay protection for transport counters (RFC 6479 style,
 * as the Linux module's counter.c): a bitmap of WG_REPLAY_WINDOW recent
 * counters behind the greatest one seen. */
#ifndef MESH_WG_REPLAY_H
#define MESH_WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#define WG_REPLAY_BITS_PER_LONG (sizeof(unsigned long) * 8)
#define WG_REPLAY_BITMAP_LONGS  (8192 / WG_REPLAY_BITS_PER_LONG)
/* Counters this far behind the greatest one are still accepted once. */
#define WG_REPLAY_WINDOW ((WG_REPLAY_BITMAP_LONGS - 1) * WG_REPLAY_BITS_PER_LONG)

struct wg_replay {
	uint64_t greatest; /* one past the greatest counter accepted */
	unsigned long bitmap[WG_REPLAY_BITMAP_LONGS];
};

void wg_replay_init(struct wg_replay *r);
/* Call only after the packet authenticated. Returns true and records the
 * counter if it is new and below reject_after; false if replayed, too old or
 * too large. */
bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t reject_after);

#endif
