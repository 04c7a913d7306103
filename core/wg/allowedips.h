/* Allowed-IPs: a longest-prefix-match table from IPv4/IPv6 prefixes to peers.
 * Used for the send path (destination -> peer) and the receive check
 * (source must map back to the peer the packet came from). */
#ifndef MESH_WG_ALLOWEDIPS_H
#define MESH_WG_ALLOWEDIPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wg_allowedips;

struct wg_allowedips *wg_allowedips_new(void);
void wg_allowedips_free(struct wg_allowedips *t); /* accepts NULL */

/* family is AF_INET (addr: 4 bytes) or AF_INET6 (16 bytes). cidr <= 32/128.
 * Host bits beyond cidr are ignored (masked). Inserting an existing prefix
 * replaces its peer, as `wg set` does. Returns 0 or -EINVAL/-ENOMEM. */
int wg_allowedips_insert(struct wg_allowedips *t, int family, const uint8_t *addr,
                         uint8_t cidr, void *peer);
/* Longest match, or NULL. */
void *wg_allowedips_lookup(const struct wg_allowedips *t, int family,
                           const uint8_t *addr);
/* A deep copy (same peers), or NULL on allocation failure. Lets a caller
 * build a changed table aside and swap it in whole. */
struct wg_allowedips *wg_allowedips_clone(const struct wg_allowedips *t);
/* Number of configured prefixes. */
size_t wg_allowedips_count(const struct wg_allowedips *t);
/* Removes every prefix that maps to peer. */
void wg_allowedips_remove_by_peer(struct wg_allowedips *t, void *peer);

#endif
