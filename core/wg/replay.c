/* Replay window over a ring of bitmap words (RFC 6479). Counter c lives at
 * bit (c+1) % bits of the ring; r->greatest is one past the greatest counter
 * accepted so that 0 means "nothing seen yet". When the greatest counter
 * moves forward, the words it skips over are cleared; the ring holds one
 * word more than the window so that clearing never touches a counter that is
 * still inside the window. */
#include "core/wg/replay.h"

#include <string.h>

#define WG_REPLAY_RING_BITS (WG_REPLAY_BITMAP_LONGS * WG_REPLAY_BITS_PER_LONG)

void wg_replay_init(struct wg_replay *r)
{
	memset(r, 0, sizeof(*r));
}

bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t reject_after)
{
	if (counter >= reject_after)
		return false;
	/* counter < reject_after <= UINT64_MAX, so this cannot wrap. */
	uint64_t c = counter + 1;

	/* Too old: more than WINDOW behind the greatest counter seen. */
	if (r->greatest > c && r->greatest - c > WG_REPLAY_WINDOW)
		return false;

	uint64_t word = c / WG_REPLAY_BITS_PER_LONG;
	if (c > r->greatest) {
		uint64_t cur = r->greatest / WG_REPLAY_BITS_PER_LONG;
		uint64_t skip = word - cur;
		if (skip > WG_REPLAY_BITMAP_LONGS)
			skip = WG_REPLAY_BITMAP_LONGS;
		for (uint64_t i = 1; i <= skip; i++)
			r->bitmap[(cur + i) % WG_REPLAY_BITMAP_LONGS] = 0;
		r->greatest = c;
	}

	unsigned long *w = &r->bitmap[word % WG_REPLAY_BITMAP_LONGS];
	unsigned long bit = 1UL << (c % WG_REPLAY_BITS_PER_LONG);
	if (*w & bit)
		return false;
	*w |= bit;
	return true;
}
