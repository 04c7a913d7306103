/* Per-source token bucket for handshake initiations under load:
 * WG_RATELIMIT_PER_SEC packets per second with a burst of WG_RATELIMIT_BURST,
 * keyed by source IPv4 address or IPv6 /64. Bounded memory: the table has a
 * fixed number of entries; old entries are recycled (oldest first). */
#ifndef MESH_WG_RATELIMITER_H
#define MESH_WG_RATELIMITER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define WG_RATELIMIT_PER_SEC 20
#define WG_RATELIMIT_BURST   5

struct wg_ratelimiter;

struct wg_ratelimiter *wg_ratelimiter_new(void);
void wg_ratelimiter_free(struct wg_ratelimiter *rl); /* accepts NULL */
/* now_ns: a monotonic clock in nanoseconds. */
bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, const struct sockaddr *src,
                          uint64_t now_ns);

#endif
