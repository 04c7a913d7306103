/* Status output for the local API: a human view and a JSON document. */
#ifndef MESH_STATUS_H
#define MESH_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

struct api_conn;
struct fmt_jw;
struct config;
struct wg_device;
struct px_socks;
struct px_http;
struct px_tunnel;
struct px_udp_tunnel;
struct px_nc;
struct node_ctl;
struct checkalive;

struct status_view {
	const struct config *cfg;
	const struct wg_device *wg;
	time_t started;
	struct px_socks *const *socks;
	size_t n_socks;
	struct px_http *const *http;
	size_t n_http;
	struct px_tunnel *const *tunnels;
	size_t n_tunnels;
	struct px_udp_tunnel *const *udp_tunnels;
	size_t n_udp_tunnels;
	const struct px_nc *nc;     /* may be NULL */
	const struct node_ctl *ctl; /* mesh-proxy up --state; may be NULL */
	const struct checkalive *checkalive; /* [Interface] CheckAlive; may be NULL */
	/* wg may be NULL with ctl set: registration pending */
};

void status_write_text(const struct status_view *v, struct api_conn *c);
/* The JSON document of `status --json` (one line), written as it is built:
 * every value encoded by jansson (fmt_json_str for strings), one peer at a
 * time. A value lost to a failed allocation adds "incomplete": true. */
void status_write_json(const struct status_view *v, struct api_conn *c);
/* The same, to any writer (tests). */
void status_json_write(const struct status_view *v, struct fmt_jw *w);
/* The access policy's part of status: "policy none (...)" or "policy
 * active ..." with the drop counters by reason and the fast-fail count
 * (a NULL acl: none), and the same as the "policy" JSON object (NULL when
 * out of memory). */
struct node_acl;
void status_write_policy_text(const struct node_acl *a, struct api_conn *c);
json_t *status_policy_json(const struct node_acl *a);
/* Calls fn for every front-end with its kind ("socks5", "http", "tunnel",
 * "udp", "nc"), its address (or tunnel description) and its counters: the
 * text and JSON status, the exit log and the metrics share it. */
struct px_stats;
typedef void (*status_frontend_fn)(void *arg, const char *kind, const char *what,
                                   const struct px_stats *ps);
void status_for_each_frontend(const struct status_view *v, status_frontend_fn fn,
                              void *arg);
/* One info log line per front-end with all its counters (at exit). */
void status_log_frontends(const struct status_view *v);

#endif
