/* Fuzzes the compressed map codec (core/control/zmsg.c) as a node meets
 * it: the input is a ZMAP body (inner type byte || zstd frame). It must be
 * unwrapped within the limit or refused with a reason, never produce more
 * than the limit (a bomb is refused, not allocated: ASan's allocator
 * reports an allocation past its limit), and what it unwraps to must be a
 * map type whose body then decodes or is refused like any plain body; an
 * empty body (a skippable or empty frame) is refused, never unwrapped.
 * Whatever unwraps is wrapped again and must unwrap to the same bytes.
 * The first input byte's low bit picks a small limit (64 KiB: cheap
 * bombs) or the node's (the frame limit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/zmsg.h"

static struct ctl_zdec *zd;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!zd && !(zd = ctl_zdec_new()))
		abort();
	size_t max = (data[0] & 1) ? 65536 : CTL_FRAME_BODY_MAX;
	data++, size--;
	uint8_t type = 0, *out = NULL;
	size_t len = 0;
	struct ctl_msg_err err;
	int r = ctl_zmsg_unwrap(zd, data, size, max, &type, &out, &len, &err);
	if (r != 0) {
		if (out || len || err.code == CTL_MSG_E_NONE || err.text[0] == '\0')
			abort(); /* a refusal leaves nothing and says why */
		return 0;
	}
	if (len == 0 || len > max ||
	    (type != CTL_MSG_MAP_FULL && type != CTL_MSG_MAP_PEERS &&
	     type != CTL_MSG_MAP_DELTA))
		abort();
	struct ctl_msg m;
	if (ctl_msg_decode(type, out, len, &m, &err) == 0)
		ctl_msg_free(&m);
	else if (err.text[0] == '\0')
		abort();
	uint8_t *z = NULL, *again = NULL, t2 = 0;
	size_t zl = 0, l2 = 0;
	if (ctl_zmsg_wrap(NULL, CTL_ZMSG_LEVEL_FAST, type, out, len, &z, &zl) != 0)
		abort();
	if (ctl_zmsg_unwrap(zd, z, zl, max, &t2, &again, &l2, &err) != 0 || t2 != type ||
	    l2 != len || (len && memcmp(again, out, len) != 0))
		abort();
	free(z);
	free(again);
	free(out);
	return 0;
}
