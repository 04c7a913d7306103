/* UTF-8 checked by hand where text crosses a trust boundary: what a server
 * or a peer wrote, on its way to a terminal or a JSON document. */
#include "core/util/utf8.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	size_t len;
	uint32_t c, min;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, c = p[0] & 0x1f, min = 0x80;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, c = p[0] & 0x0f, min = 0x800;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, c = p[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Characters a terminal must not be handed from someone else's text: C0
 * and C1 controls, DEL, the bidirectional controls that reorder what
 * follows (a name that displays as another), line separators, and the
 * invisible format characters. */
static bool unsafe_for_terminal(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) ||        /* C0, DEL, C1 */
	       c == 0x00ad || c == 0x061c || c == 0x180e ||   /* invisible */
	       (c >= 0x200b && c <= 0x200f) ||                /* zero-width, marks */
	       (c >= 0x2028 && c <= 0x202e) ||                /* breaks, bidi */
	       (c >= 0x2060 && c <= 0x206f) ||                /* isolates, format */
	       c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) || /* BOM, annotations */
	       (c >= 0xe0000 && c <= 0xe007f);                /* tags */
}

size_t utf8_clean(const char *s, char *out, size_t cap, enum utf8_mode mode)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	bool text = mode == UTF8_FOR_TERMINAL;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = 0;
		size_t k = utf8_seq(p + i, n - i, &c);
		const char *rep = NULL;
		if (k == 0) {
			rep = text ? "?" : "\xef\xbf\xbd";
			k = 1;
		} else if (text && unsafe_for_terminal(c)) {
			rep = "?";
		}
		const char *src = rep ? rep : (const char *)p + i;
		size_t len = rep ? strlen(rep) : k;
		if (o + len >= cap)
			break;
		memcpy(out + o, src, len);
		o += len;
		i += k;
	}
	out[o] = 0;
	return o;
}
