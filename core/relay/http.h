/* The HTTP/1.1 upgrade that opens a relay connection, so the relay's port
 * passes HTTP-aware middleboxes (and TLS terminating proxies that know
 * Upgrade). Pure: no I/O, no allocation.
 *
 *   client: GET /relay HTTP/1.1\r\n
 *           Host: HOST\r\n
 *           Upgrade: meshrelay\r\n
 *           Connection: Upgrade\r\n
 *           \r\n
 *   server: HTTP/1.1 101 Switching Protocols\r\n
 *           Upgrade: meshrelay\r\n
 *           Connection: Upgrade\r\n
 *           \r\n
 *   then relay frames (frame.h) both ways, the server's SERVER_KEY first.
 *
 * Anything else gets a plain HTTP answer and is closed: 426 for GET /relay
 * without the upgrade, 404 for another path, 400 for a malformed head, 405
 * for another method. */
#ifndef MESH_RELAY_HTTP_H
#define MESH_RELAY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define RELAY_HTTP_PATH     "/relay"
#define RELAY_HTTP_UPGRADE  "meshrelay"
#define RELAY_HTTP_HEAD_MAX 4096 /* a longer head is refused (431/400) */

/* Results of relay_http_parse_request: > 0 is the head's length in bytes
 * (the relay protocol starts after it); 0: incomplete, read more; < 0: the
 * HTTP status to answer with, negated (-400, -404, -405, -426, -431). */
int relay_http_parse_request(const uint8_t *p, size_t len);

/* The client's side: 0 incomplete; > 0 the head's length when the answer is
 * 101 with Upgrade: meshrelay; < 0 the status code negated (-101 if the 101
 * names another protocol, -1 if it is not HTTP at all or its status line is
 * malformed, a status under 100 included). */
int relay_http_parse_response(const uint8_t *p, size_t len);

/* Writes the client's request for host (no CR/LF allowed); returns its
 * length, or 0 if it does not fit. */
size_t relay_http_request(char *out, size_t cap, const char *host);
/* The server's 101 answer (a constant). */
extern const char relay_http_101[];
/* A short complete HTTP answer for an error status ("HTTP/1.1 426 Upgrade
 * Required\r\n...\r\n\r\nthis port speaks the mesh relay protocol\n"). */
const char *relay_http_error(int status);

#endif
