/* The tunnel's DNS client ([Interface] DNS): names the node's front-ends
 * resolve (SOCKS5 and HTTP hosts, tunnel targets, Direct names) are looked
 * up by queries sent through the netstack, over WireGuard, to the
 * configured servers; the host's resolver is never asked.
 *
 * Two parts:
 *  - the codec (dnsc_wire.c): builds an A/AAAA query and parses the answer
 *    to it. Pure: no I/O, no allocation. Every answer is hostile: reads
 *    are bounds-checked, compression pointers may only point backwards (so
 *    they cannot loop) and are followed at most DNSC_PTR_HOPS times, at
 *    most DNSC_RR_MAX records are read (the rest are ignored), and an answer counts only when it
 *    repeats the query's id and its question byte for byte (letter case
 *    aside).
 *  - the runtime (dnsc.c): one lookup asks A and AAAA at once from one
 *    ephemeral mesh UDP port, with random ids (libsodium), and accepts an
 *    answer only from the server it asked, from port 53. No answer within
 *    the timeout: the next server, round the list `attempts` times. A
 *    truncated answer (TC, whatever follows it) is asked again over TCP
 *    through the netstack; a TCP dial is cancelled with its lookup.
 *    SERVFAIL, REFUSED or a TCP failure: the next server at once. When
 *    one type has addresses and the other failed on every server, the
 *    addresses are the answer. Everything that does not match is dropped
 *    and counted. */
#ifndef MESH_DNSC_H
#define MESH_DNSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netstack/ns.h"

#define DNSC_PORT       53
#define DNSC_ADDRS_MAX  16  /* addresses one answer may give */
#define DNSC_RR_MAX     64  /* records read from one answer; the rest are not read */
#define DNSC_PTR_HOPS   16  /* compression pointers followed in one name */
#define DNSC_CNAME_HOPS 8   /* CNAME links followed in one answer */
#define DNSC_UDP_MAX    512 /* we send no EDNS: answers over UDP fit 512 */
/* Longest answer taken over TCP (64 records fit with room to spare); a
 * longer one fails that server. Its buffer is allocated only once the
 * answer's length has arrived. */
#define DNSC_TCP_MAX    16384

#define DNSC_TYPE_A     1
#define DNSC_TYPE_CNAME 5
#define DNSC_TYPE_AAAA  28

/* ---- codec ---- */

/* Writes a query for name ("host.example", a trailing dot optional) of
 * type qtype with id and RD set into out. Returns its length, or -1 when
 * the name is not a valid DNS name (empty label, label over 63 bytes,
 * over 253 characters) or cap is too small. */
int dnsc_query_build(const char *name, uint16_t id, uint16_t qtype, uint8_t *out,
                     size_t cap);

struct dnsc_answer {
	int rcode;      /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ... */
	bool truncated; /* TC: ask again over TCP */
	struct ns_addr addrs[DNSC_ADDRS_MAX];
	size_t n; /* addresses of the query's type for its name (CNAMEs followed) */
	uint32_t ttl; /* the lowest TTL of the records used (UINT32_MAX: none) */
};

/* Parses p (len bytes), the answer to query q (qlen bytes, as built by
 * dnsc_query_build). Returns 0 with out filled, or -1 when p is not an
 * answer to q (another id, not a response, another question) or is
 * malformed (truncated records, a forward or looping pointer, too many
 * records, a name over 255 bytes, an A record not 4 bytes long...). */
int dnsc_answer_parse(const uint8_t *q, size_t qlen, const uint8_t *p, size_t len,
                      struct dnsc_answer *out);

/* ---- runtime ---- */

struct event_base;
struct dnsc;
struct dnsc_lookup;

#define DNSC_SERVERS_MAX 8

struct dnsc_config {
	struct event_base *base;
	struct ns_addr servers[DNSC_SERVERS_MAX];
	size_t n_servers;
	uint16_t port;       /* 0: 53 */
	unsigned timeout_ms; /* per try; 0: 2000 */
	unsigned attempts;   /* rounds over the servers; 0: 2 */
};

/* NULL when out of memory or n_servers is 0. */
struct dnsc *dnsc_new(const struct dnsc_config *cfg);
/* Accepts NULL. Every lookup still pending gets its callback now, with
 * -ECANCELED. */
void dnsc_free(struct dnsc *d);

/* err 0 with n >= 1 addresses (A first, then AAAA); or -ENOENT (no such
 * name, or no address), -ETIMEDOUT (no server answered), -EIO (every
 * server failed), -ECANCELED (dnsc_free), -ENOMEM, -EINVAL (not a DNS
 * name), -EAGAIN (too many lookups at once). a is valid during the call. */
typedef void (*dnsc_cb)(void *arg, int err, const struct ns_addr *a, size_t n);

/* Starts a lookup. The callback runs exactly once, later from the loop,
 * never inside this call. Returns the lookup (for dnsc_cancel), or NULL
 * when the callback is already scheduled with an error. */
struct dnsc_lookup *dnsc_resolve(struct dnsc *d, const char *name, dnsc_cb cb, void *arg);
/* The callback will not run; accepts NULL. */
void dnsc_cancel(struct dnsc_lookup *l);

/* At most this many lookups at once; more fail with -EAGAIN. */
#define DNSC_LOOKUPS_MAX 1024

/* A small cache of whole answers (both types answered), so every
 * connection to a name does not cost two queries: addresses for their
 * lowest TTL, at most DNSC_CACHE_TTL_MAX; "no such name" or "no address"
 * for DNSC_CACHE_NEG_TTL. Timeouts and failures are not kept. When full,
 * the entry that expires first makes room. */
#define DNSC_CACHE_MAX     256
#define DNSC_CACHE_TTL_MAX 300 /* s */
#define DNSC_CACHE_NEG_TTL 30  /* s */

struct dnsc_stats {
	uint64_t lookups, answered, nxdomain, failed, timeouts;
	uint64_t cache_hits; /* lookups answered from the cache (no query) */
	uint64_t queries_udp, queries_tcp; /* sent */
	uint64_t dropped; /* datagrams that matched no query, or malformed */
};
void dnsc_get_stats(const struct dnsc *d, struct dnsc_stats *st);

#endif
