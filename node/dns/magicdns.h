/* MagicDNS: the node answers DNS for mesh names itself.
 *
 * Two ways in: (1) names given to SOCKS5 / HTTP / tunnel targets go through
 * px_env.resolve_mesh (the node's map lookup); (2) DNS queries over UDP to
 * 100.100.100.100:53 inside the node's netstack (from SOCKS5 UDP ASSOCIATE
 * or a [UDPClientTunnel]) are answered here: A / AAAA for "name" and
 * "name.<domain>" (any case, trailing dot optional) from the lookup
 * callback; a name under <domain> that is not in the map gets NXDOMAIN;
 * other names are forwarded to the first nameserver of /etc/resolv.conf
 * (read again by magicdns_reload_upstream when it changes)
 * over a host UDP socket and its answer relayed (SERVFAIL after 5 s, or at
 * once when there is no nameserver). Types other than A/AAAA for a mesh
 * name: an empty NOERROR answer. PTR for mesh addresses (x.x.x.x.in-addr.arpa
 * / ip6.arpa) answers the peer's fqdn.
 *
 * The DNS message parser treats every query as hostile: bounds-checked,
 * compression pointers refused in queries (they are legal only in answers),
 * one question, at most 512 bytes of question section; malformed queries
 * get FORMERR when a header could be read, else are dropped and counted. */
#ifndef MESH_MAGICDNS_H
#define MESH_MAGICDNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netstack/ns.h"

struct event_base;
struct magicdns;

#define MAGICDNS_ADDR "100.100.100.100"
#define MAGICDNS_PORT 53

/* The map lookup: addresses of a mesh name (a single label, without the
 * domain, lowercase), up to max; returns how many (0: unknown). */
typedef size_t (*magicdns_lookup_fn)(void *ctx, const char *label, struct ns_addr *out,
                                     size_t max);
/* Reverse: the label of the node owning addr, into out (cap >= 64); false if
 * none. */
typedef bool (*magicdns_reverse_fn)(void *ctx, const struct ns_addr *addr, char *out,
                                    size_t cap);

struct magicdns_config {
	struct event_base *base;
	const char *domain; /* "mesh.internal"; copied. NULL: mesh names only */
	magicdns_lookup_fn lookup;
	magicdns_reverse_fn reverse; /* may be NULL */
	void *ctx;
	bool forward; /* forward other names to the system resolver */
	uint32_t ttl; /* answer TTL, seconds; 0: 60 */
};

/* Registers the service at 100.100.100.100:53 with ns_local_udp_set (the
 * netstack must be up). NULL with err filled on failure. */
struct magicdns *magicdns_new(const struct magicdns_config *cfg, char *err,
                              size_t errlen);
void magicdns_free(struct magicdns *m); /* accepts NULL; unregisters */
/* Reads the upstream nameserver again (the resolver configuration
 * changed). 0, or -1 when its socket cannot be opened (logged). */
int magicdns_reload_upstream(struct magicdns *m);
/* The domain may change with a new map. */
int magicdns_set_domain(struct magicdns *m, const char *domain);

struct magicdns_stats {
	uint64_t queries, answered, nxdomain, forwarded, servfail, formerr, dropped;
};
void magicdns_get_stats(const struct magicdns *m, struct magicdns_stats *st);

/* The pure part, exported for tests and the fuzzer: answers query q (qlen
 * bytes) for the mesh into out. Returns the answer length; 0 when the name
 * is not a mesh name and not under domain (forward it); -1 to drop
 * (unparseable, or a response rather than a query). */
int magicdns_answer(const struct magicdns_config *cfg, const uint8_t *q, size_t qlen,
                    uint8_t *out, size_t cap);

#endif
