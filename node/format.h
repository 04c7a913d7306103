/* How the node writes values: for people (status text, log lines) and
 * for scripts (status JSON, built with jansson). */
#ifndef MESH_NODE_FORMAT_H
#define MESH_NODE_FORMAT_H

#include <jansson.h>
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

/* A JSON string for any C string: jansson escapes quotes, backslashes and
 * control characters; bytes that are not UTF-8 become '?'. NULL s is "". */
json_t *fmt_json_str(const char *s);
/* A JSON integer for a counter (clamped to INT64_MAX). */
json_t *fmt_json_u64(uint64_t v);
/* Sets o[key] = v, taking v. A value that could not be allocated (NULL)
 * leaves the member out and marks o "incomplete": true, rather than
 * losing the whole answer. */
void fmt_json_set(json_t *o, const char *key, json_t *v);

#endif
