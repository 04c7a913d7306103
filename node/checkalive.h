/* wireproxy's CheckAlive: the addresses of [Interface] CheckAlive are
 * pinged (ICMP echo through the mesh) every CheckAliveInterval seconds,
 * and `status` / `status --json` show, per address, the last answer and
 * whether it came within the last interval plus 2 seconds (wireproxy's
 * /readyz rule). */
#ifndef MESH_CHECKALIVE_H
#define MESH_CHECKALIVE_H

#include <jansson.h>
#include <stddef.h>

struct api_conn;
struct cfg_prefix;
struct event_base;
struct checkalive;

/* Starts pinging now, then every interval_s seconds. NULL when n is 0 or
 * out of memory. */
struct checkalive *checkalive_new(struct event_base *base, const struct cfg_prefix *a,
                                  size_t n, unsigned interval_s);
void checkalive_free(struct checkalive *c); /* accepts NULL */
/* How long one ping may take: less than the interval, so that a silent
 * address is asked again every round. */
unsigned checkalive_ping_timeout_ms(unsigned interval_s);

/* One status line per address. Accepts NULL (writes nothing). */
void checkalive_write_text(const struct checkalive *c, struct api_conn *conn);
/* {"interval_s", "ok", "addresses": [{"address", "ok", "sent", "received",
 * "last_pong_unix", "rtt_ms"}]}; NULL when out of memory. */
json_t *checkalive_json(const struct checkalive *c);

#endif
