/* The health listener of mesh-proxy, mesh-control and mesh-relay
 * (--health-listen ADDR:PORT): plain HTTP for orchestrators' probes and
 * Prometheus, on its own socket, on the program's loop.
 *
 *   GET /livez    200 "ok": the event loop runs (it answered)
 *   GET /readyz   200 "ready", or 503 "not ready: WHY" (ops.ready)
 *   GET /metrics  200, the Prometheus text format: ops.metrics, then the
 *                 process_* families and meshproxy_build_info
 *                 (procmetrics.h) and PREFIX_metrics_refused_total
 *   other paths 404; methods other than GET and HEAD 405.
 *
 * It serves no secrets, so any address may be given (a probe comes to the
 * pod's address); the metrics name peers only when asked to
 * (--metrics-peers). Limits: HEALTHD_MAX_CONNS connections, and at that
 * cap a new connection replaces the oldest (so keep-alive scrapers cannot
 * starve a probe); a connection lives at most HTTP_CONNS_REQUEST_S from
 * its opening, whatever it sends; headers up to HEALTHD_MAX_HEADER bytes;
 * HEALTHD_TIMEOUT_S per read or write. */
#ifndef MESH_HEALTHD_H
#define MESH_HEALTHD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct prom;
struct healthd;

#define HEALTHD_MAX_CONNS  32
#define HEALTHD_MAX_HEADER 4096
#define HEALTHD_MAX_BODY   1024
#define HEALTHD_TIMEOUT_S  5
/* The longest reason /readyz gives. */
#define HEALTHD_WHY_MAX 200

struct healthd_ops {
	/* true when ready; else a one-line reason in why (cap bytes), without
	 * the "not ready: " prefix. */
	bool (*ready)(void *ctx, char *why, size_t cap);
	/* Writes the program's metric families into p. */
	void (*metrics)(void *ctx, struct prom *p);
	void *ctx;
};

/* "ADDR:PORT" with a numeric IPv4 address or a bracketed IPv6 one
 * ("127.0.0.1:9090", "0.0.0.0:9090", "[::]:9090"); port 1-65535. 0, or -1
 * with a one-line message naming the value and the form. */
int healthd_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                         char *err, size_t errlen);

/* Binds listen and serves; what names the program in the log and errors
 * ("mesh-proxy"). NULL with a one-line message in err. */
struct healthd *healthd_new(struct event_base *base, const char *listen, const char *what,
                            const struct healthd_ops *ops, char *err, size_t errlen);
void healthd_free(struct healthd *h); /* accepts NULL */

/* Requests answered, by kind (livez, readyz, metrics, others). */
struct healthd_stats {
	unsigned long long livez, readyz, metrics, other;
};
void healthd_get_stats(const struct healthd *h, struct healthd_stats *st);
/* Its connection cap (for the counts: http_conns_open, _replaced). */
struct http_conns *healthd_conns(struct healthd *h);

#endif
