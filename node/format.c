/* How the node writes values for people and for scripts. */
#include "node/format.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/sockaddr.h"

void fmt_key_b64(const uint8_t key[32], char *out, size_t len)
{
	char b[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b, sizeof(b), key, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, len, "%s", b);
}

void fmt_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		sockaddr_format(ss, out, len);
	else
		snprintf(out, len, "(none)");
}

void fmt_bytes(uint64_t n, char *out, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%" PRIu64 " B", n);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}

void fmt_ago(int64_t then, char *out, size_t len)
{
	if (then == 0) {
		snprintf(out, len, "never");
		return;
	}
	int64_t d = (int64_t)time(NULL) - then;
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, len, "%" PRId64 "s ago", d);
	else if (d < 7200)
		snprintf(out, len, "%" PRId64 "m ago", d / 60);
	else
		snprintf(out, len, "%" PRId64 "h ago", d / 3600);
}

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
 * and C1 controls, DEL, and the bidirectional controls that reorder what
 * follows (a name that displays as another). */
static bool unsafe_for_terminal(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x061c || c == 0x200e ||
	       c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
	       (c >= 0x2066 && c <= 0x2069);
}

/* Copies s into out (cap >= 1) with every invalid UTF-8 sequence (and, if
 * text, every character unsafe for a terminal) replaced: by U+FFFD, or by
 * '?' for text. Returns the length written; stops before overflowing. */
static size_t utf8_clean(const char *s, char *out, size_t cap, bool text)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
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

void fmt_text_safe(const char *s, char *out, size_t cap)
{
	utf8_clean(s ? s : "", out, cap, true);
}

json_t *fmt_json_str(const char *s)
{
	if (!s)
		return json_string("");
	json_t *j = json_string(s);
	if (j)
		return j;
	/* jansson refuses what is not UTF-8: each bad sequence becomes U+FFFD
	 * (at most 3 bytes for 1). If nothing was bad, it was out of memory. */
	size_t n = strlen(s), cap = 3 * n + 1;
	char *t = malloc(cap);
	if (!t)
		return NULL;
	utf8_clean(s, t, cap, false);
	if (strcmp(t, s) != 0)
		j = json_string(t);
	free(t);
	return j;
}
json_t *fmt_json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

void fmt_json_set(json_t *o, const char *key, json_t *v)
{
	if (json_object_set_new(o, key, v) != 0)
		json_object_set_new(o, "incomplete", json_true());
}

/* ---- a document written piece by piece ---- */

static void jw_write(struct fmt_jw *w, const char *p, size_t n)
{
	if (w->write(w->ctx, p, n) != 0)
		w->failed = true;
}

void fmt_jw_raw(struct fmt_jw *w, const char *lit)
{
	jw_write(w, lit, strlen(lit));
}

/* json_dumpb into a buffer on the stack for the usual small value, else
 * json_dumps. */
static void jw_dump(struct fmt_jw *w, const json_t *v, size_t skip_tail)
{
	char buf[2048];
	size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	size_t n = json_dumpb(v, buf, sizeof(buf), flags);
	if (n == 0) {
		w->failed = true;
		fmt_jw_raw(w, "null");
	} else if (n <= sizeof(buf)) {
		jw_write(w, buf, n - skip_tail);
	} else {
		char *s = json_dumps(v, flags);
		if (!s) {
			w->failed = true;
			fmt_jw_raw(w, "null");
			return;
		}
		jw_write(w, s, strlen(s) - skip_tail);
		free(s);
	}
}

void fmt_jw_value(struct fmt_jw *w, json_t *v)
{
	if (!v) {
		w->failed = true;
		fmt_jw_raw(w, "null");
		return;
	}
	if (json_is_object(v) && json_object_get(v, "incomplete"))
		w->failed = true;
	jw_dump(w, v, 0);
	json_decref(v);
}

bool fmt_jw_open_object(struct fmt_jw *w, json_t *o)
{
	if (!o || !json_is_object(o)) {
		w->failed = true;
		json_decref(o);
		fmt_jw_raw(w, "{");
		return false;
	}
	if (json_object_get(o, "incomplete"))
		w->failed = true;
	bool members = json_object_size(o) > 0;
	jw_dump(w, o, 1); /* without the closing brace */
	json_decref(o);
	return members;
}
