/* Fuzzes core/control/msg: the first byte picks the message type, the rest
 * is the JSON body as it would arrive in a transport frame. Every input must
 * decode cleanly or be refused with an error text; whatever decodes must
 * encode, decode again, and encode to the same bytes (a stable round trip). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/msg.h"

static const unsigned types[] = {
    CTL_MSG_REGISTER_REQ, CTL_MSG_REGISTER_RESP, CTL_MSG_ENDPOINTS,
    CTL_MSG_MAP_FULL,     CTL_MSG_MAP_DELTA,     CTL_MSG_KEEPALIVE,
    CTL_MSG_ERROR,        CTL_MSG_MAP_PEERS,     CTL_MSG_LOGOUT,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_msg m, m2;
	struct ctl_msg_err err;
	uint8_t *e1 = NULL, *e2 = NULL;
	size_t l1, l2;

	if (size < 1)
		return 0;
	/* Values past the table test the unknown-type path. */
	unsigned type = data[0] < 9 ? types[data[0]] : data[0];
	if (ctl_msg_decode(type, data + 1, size - 1, &m, &err) != 0) {
		if (err.code == CTL_MSG_E_NONE || err.text[0] == '\0')
			abort(); /* a refusal must say why */
		ctl_msg_free(&m);
		return 0;
	}
	if (ctl_msg_encode(&m, &e1, &l1, &err) != 0)
		abort();
	if (ctl_msg_decode(type, e1, l1, &m2, &err) != 0)
		abort();
	if (ctl_msg_encode(&m2, &e2, &l2, &err) != 0)
		abort();
	if (l1 != l2 || memcmp(e1, e2, l1) != 0)
		abort();
	free(e1);
	free(e2);
	ctl_msg_free(&m);
	ctl_msg_free(&m2);
	return 0;
}
