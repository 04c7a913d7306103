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
#include "core/util/utf8.h"

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

void fmt_text_safe(const char *s, char *out, size_t cap)
{
	utf8_clean(s ? s : "", out, cap, UTF8_FOR_TERMINAL);
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
	utf8_clean(s, t, cap, UTF8_REPLACE_INVALID);
	if (strcmp(t, s) != 0)
		j = json_string(t);
	free(t);
	return j;
}
json_t *fmt_json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

json_t *fmt_json_append(json_t *arr, json_t *v)
{
	if (arr && json_array_append_new(arr, v) == 0)
		return arr;
	if (!arr)
		json_decref(v);
	json_decref(arr);
	return NULL;
}

void fmt_json_set(json_t *o, const char *key, json_t *v)
{
	if (json_object_set_new(o, key, v) != 0)
		json_object_set_new(o, "incomplete", json_true());
}

/* ---- a document written piece by piece ---- */

static void jw_write(struct fmt_jw *w, const char *p, size_t n)
{
	if (w->broken)
		return; /* bytes were lost: a cut document, not a corrupt one */
	if (w->write(w->ctx, p, n) != 0)
		w->failed = w->broken = true;
}

void fmt_jw_raw(struct fmt_jw *w, const char *lit)
{
	jw_write(w, lit, strlen(lit));
}

/* True if v, or an object inside it, says a member was lost. */
static bool jw_lost(json_t *v, int depth)
{
	const char *k;
	json_t *x;
	size_t i;
	if (depth > 8)
		return false;
	if (json_is_object(v)) {
		if (json_object_get(v, "incomplete"))
			return true;
		json_object_foreach(v, k, x)
		{
			if (jw_lost(x, depth + 1))
				return true;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
		{
			if (jw_lost(x, depth + 1))
				return true;
		}
	}
	return false;
}

/* Writes v compactly and in ASCII (\uXXXX for the rest, so a terminal is
 * handed no one's raw characters), minus skip_tail bytes at its end.
 * Returns false, writing nothing, if it cannot be encoded. */
static bool jw_dump(struct fmt_jw *w, const json_t *v, size_t skip_tail)
{
	char buf[2048];
	size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII;
	size_t n = json_dumpb(v, buf, sizeof(buf), flags);
	if (n > skip_tail && n <= sizeof(buf)) {
		jw_write(w, buf, n - skip_tail);
		return true;
	}
	char *s = n > sizeof(buf) ? json_dumps(v, flags) : NULL;
	bool ok = s && strlen(s) > skip_tail;
	if (ok)
		jw_write(w, s, strlen(s) - skip_tail);
	free(s);
	return ok;
}

void fmt_jw_value(struct fmt_jw *w, json_t *v)
{
	if (!v || jw_lost(v, 0))
		w->failed = true;
	if (!v || !jw_dump(w, v, 0)) {
		w->failed = true;
		fmt_jw_raw(w, "null");
	}
	json_decref(v);
}

void fmt_jw_item(struct fmt_jw *w, json_t *v)
{
	if (!v) {
		w->failed = true; /* left out rather than a null element */
		return;
	}
	if (w->n_items++)
		fmt_jw_raw(w, ",");
	fmt_jw_value(w, v);
}

bool fmt_jw_open_object(struct fmt_jw *w, json_t *o)
{
	bool members = false;
	if (o && json_is_object(o)) {
		if (jw_lost(o, 0))
			w->failed = true;
		/* Without its closing brace. */
		if (jw_dump(w, o, 1))
			members = json_object_size(o) > 0;
		else
			o = (json_decref(o), NULL);
	}
	if (!o || !json_is_object(o)) {
		w->failed = true;
		fmt_jw_raw(w, "{");
	}
	json_decref(o);
	return members;
}
