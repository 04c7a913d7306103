/* How the node writes values: for people (status text, log lines) and
 * for scripts (status JSON, built with jansson). */
#ifndef MESH_NODE_FORMAT_H
#define MESH_NODE_FORMAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A WireGuard key in standard base64 (44 characters). */
void fmt_key_b64(const uint8_t key[32], char *out, size_t len);
/* "1.2.3.4:51820", "[fd00::1]:51820", or "(none)" for no address. */
void fmt_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len);
/* "512 B", "1.5 KiB", "3.2 GiB". */
void fmt_bytes(uint64_t n, char *out, size_t len);
/* "12s ago", "5m ago", "3h ago", "never" (then = 0). */
void fmt_ago(int64_t then, char *out, size_t len);

/* Someone else's text (a server's message) made safe to print: invalid
 * UTF-8, control characters and bidirectional controls become '?'.
 * Truncates to cap - 1 bytes at a character boundary. */
void fmt_text_safe(const char *s, char *out, size_t cap);

/* A JSON string for any C string: jansson escapes quotes, backslashes and
 * control characters; each invalid UTF-8 sequence becomes U+FFFD. NULL s
 * is "". NULL when out of memory. */
json_t *fmt_json_str(const char *s);
/* A JSON integer for a counter (clamped to INT64_MAX). */
json_t *fmt_json_u64(uint64_t v);
/* Appends v to arr, taking both; returns arr, or NULL (arr freed) if v is
 * NULL or could not be added: an array is whole or missing, and the
 * member it would fill says "incomplete". */
json_t *fmt_json_append(json_t *arr, json_t *v);
/* Sets o[key] = v, taking v. A value that could not be allocated (NULL)
 * leaves the member out and marks o "incomplete": true, rather than
 * losing the whole answer. */
void fmt_json_set(json_t *o, const char *key, json_t *v);

/* A JSON document written piece by piece, so that it costs one peer's
 * worth of memory whatever the size of the map: the envelope (fixed member
 * names) as literals, every value built and encoded by jansson. */
struct fmt_jw {
	/* Appends n bytes to the output; 0, or -1 if they were lost. */
	int (*write)(void *ctx, const char *p, size_t n);
	void *ctx;
	bool failed;    /* a value was lost (out of memory) */
	bool broken;    /* bytes were lost: nothing more is written */
	size_t n_items; /* items written into the open array (fmt_jw_item) */
};
/* Writes a literal piece of the envelope. */
void fmt_jw_raw(struct fmt_jw *w, const char *lit);
/* Writes v compactly, in ASCII, and frees it (v NULL: writes null, marks
 * failed). */
void fmt_jw_value(struct fmt_jw *w, json_t *v);
/* Writes v as the next item of the open array (a comma first unless it is
 * the first: set n_items to 0 when the array opens) and frees it; v NULL
 * is left out (marks failed). */
void fmt_jw_item(struct fmt_jw *w, json_t *v);
/* Writes object o without its closing brace and frees it, so that more
 * members can follow; returns true if o had members (the next one needs a
 * comma first). */
bool fmt_jw_open_object(struct fmt_jw *w, json_t *o);

#endif
