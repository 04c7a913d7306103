/* Someone else's text made safe: valid UTF-8 for a JSON encoder, or
 * harmless on a terminal. */
#ifndef MESH_UTF8_H
#define MESH_UTF8_H

#include <stddef.h>

enum utf8_mode {
	/* Each invalid byte becomes U+FFFD (RFC 3629: no overlong forms, no
	 * surrogates, nothing above U+10FFFF). */
	UTF8_REPLACE_INVALID,
	/* Each invalid byte, C0/C1 control, DEL, bidirectional control, line
	 * separator and invisible format character becomes '?'. */
	UTF8_FOR_TERMINAL,
};

/* Copies s into out (cap bytes, NUL-terminated unless cap is 0) cleaned
 * as mode says, cut at a character boundary if it does not fit. Returns
 * the length written. */
size_t utf8_clean(const char *s, char *out, size_t cap, enum utf8_mode mode);

#endif
