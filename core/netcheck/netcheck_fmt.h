/* A netcheck report for people (text) and for scripts (JSON through
 * jansson): what `mesh-proxy netcheck` prints, and what the node's API
 * answers with.
 *
 * Text (regions fastest first, those that did not answer last):
 *   UDP:            yes (IPv4 yes, IPv6 no)
 *   Public IPv4:    198.18.0.1:40213
 *   Mapping varies: no (same public address from 2 STUN servers)
 *   Home relay:     eu (eu-1, 1.2 ms)
 *   Regions:
 *     eu         1.2 ms   eu-1 198.18.1.1:443 stun 1.2 ms (sees ...), tcp 0.9 ms
 *     us         -        us-1 198.18.2.1:443 no answer
 *
 * JSON (stable keys; latencies in milliseconds, null when unmeasured):
 *   {udp, ipv4, ipv6: bool, mapping_varies: bool | null (fewer than two
 *    STUN servers at different addresses answered), global_v4, global_v6:
 *    "ip:port" | null, home: {id, region, name?, latency_ms} | null,
 *    regions: [{region, latency_ms, relays: [{id, name?, host, port,
 *    stun_port (null: none), stun_rtt_ms, tcp_rtt_ms, mapped}]}],
 *    ignored: {bad, source, txid}}
 * Dump it with JSON_REAL_PRECISION(6) (or so) for short numbers. */
#ifndef MESH_NETCHECK_FMT_H
#define MESH_NETCHECK_FMT_H

#include <jansson.h>

#include "core/netcheck/netcheck.h"

/* The text above, NUL-terminated; free with free(). NULL: out of memory. */
char *netcheck_fmt_text(const struct netcheck_report *r);

/* The JSON object above; NULL: out of memory. */
json_t *netcheck_fmt_json(const struct netcheck_report *r);

/* Its text (indented, members in the order above, short numbers) and a
 * newline; free with free(). NULL: out of memory. */
char *netcheck_fmt_json_text(const struct netcheck_report *r);

#endif
