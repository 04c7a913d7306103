/* mesh-control's address and name allocation: the pure parts (which IPv4
 * offsets are never handed out, the IPv6 derived from the IPv4, DNS labels
 * from host names). The store walks the pool with these and its own index. */
#ifndef MESH_CTL_ALLOC_H
#define MESH_CTL_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Host offsets inside 100.64.0.0/10: 1 .. CTL_ALLOC_V4_SIZE - 2. */
#define CTL_ALLOC_V4_SIZE (1u << 22)

/* True for offsets never given to a node: the network and last address,
 * any x.x.x.0 and x.x.x.255 (old stacks treat them as broadcast),
 * 100.100.100.0/24 (mesh services: MagicDNS 100.100.100.100) and
 * 100.115.92.0/23 (used by ChromeOS's ARC, as Tailscale also avoids). */
bool ctl_alloc_v4_reserved(uint32_t off);

/* The next usable offset after off, wrapping at the end of the pool. */
uint32_t ctl_alloc_v4_next(uint32_t off);

/* IPv6 for a node: the mesh's ULA /48, then zeros, then the IPv4 address in
 * the last 32 bits (fdXX:XXXX:XXXX::6440:1 for 100.64.0.1): unique when the
 * IPv4 is, and stable with it. */
void ctl_alloc_v6(const uint8_t ula[16], uint32_t ipv4, uint8_t out[16]);

/* A DNS label from a reported host name: first label only, lowercase,
 * anything but [a-z0-9-] becomes '-', runs of '-' collapse, no '-' at either
 * end, at most 63 characters; "node" if nothing is left. out: 64 bytes. */
void ctl_alloc_name_from_host(const char *hostname, char out[64]);

/* base with "-n" appended (n >= 2), base cut so the result fits 63. */
void ctl_alloc_name_suffix(const char *base, unsigned n, char out[64]);

/* True if s is a valid node name: 1-63 of [a-z0-9-], not starting or
 * ending with '-'. (Renames must already be in this form.) */
bool ctl_alloc_name_valid(const char *s);

#endif
