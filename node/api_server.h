/* The node's local API: a Unix stream socket (mode 0600) that speaks one
 * request line per connection ("status", "status json",
 * "ping ADDR|NAME N MS [INTERVAL_MS]", "disco PEER N MS INTERVAL_MS FLAGS",
 * "nc HOST PORT", "whois [json ]ADDR[:PORT]") and answers with text
 * until it closes ("nc" answers one line, then the connection carries the
 * stream). The CLI (`mesh-proxy status`, `mesh-proxy ping`) is its client:
 * cli/api_client.h. */
#ifndef MESH_NODE_API_SERVER_H
#define MESH_NODE_API_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest request line the server reads (without its newline). */
#define API_MAX_LINE 512

struct event_base;
struct api_server;
struct api_conn;

/* Runs for each request line (without the newline). The handler writes with
 * api_conn_printf and ends with api_conn_finish; it may keep conn across
 * loop iterations (a ping answers as replies come) until api_conn_finish. */
typedef void (*api_handler_fn)(void *ctx, struct api_conn *conn, const char *line);

/* Creates the socket at path (an existing stale socket is replaced; a live
 * one is an error, and so is anything at path that is not a socket: it is
 * never removed). Returns NULL and fills err on failure. */
struct api_server *api_server_new(struct event_base *base, const char *path,
                                  api_handler_fn fn, void *ctx, char *err, size_t errlen);
void api_server_free(struct api_server *s); /* accepts NULL; unlinks the socket */

void api_conn_printf(struct api_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends n bytes; 0, or -1 if they could not be queued (out of memory). */
int api_conn_write(struct api_conn *c, const void *p, size_t n);
/* True if the client went away (further output is discarded). */
int api_conn_gone(const struct api_conn *c);
/* Takes the client's socket out of conn (for `nc`: the connection becomes
 * a raw stream). Returns a non-blocking descriptor the caller owns, or -1
 * if the client is gone or sent bytes after its request line; conn is
 * freed either way. Only before anything was written to conn. */
int api_conn_take_fd(struct api_conn *c);
/* Flushes and closes; conn must not be used afterwards. */
void api_conn_finish(struct api_conn *c);

/* The socket of a node without a state directory (mesh-proxy --config):
 * $XDG_RUNTIME_DIR/mesh-proxy.sock when XDG_RUNTIME_DIR is set (an
 * absolute path), else api.sock in ${TMPDIR:-/tmp}/mesh-proxy-UID/, a
 * directory made 0700 when create is true and trusted only if it is a
 * directory (not a symlink) of this user that no one else may enter.
 * Returns 0, or -errno with a sentence in err saying what to do (buf still
 * gets the path, for messages). */
int api_default_path(char *buf, size_t len, bool create, char *err, size_t errlen);

#endif
