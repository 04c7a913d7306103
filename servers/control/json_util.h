/* JSON shapes shared by mesh-control's CLI (--json) and its HTTP admin API
 * (admin.h), so both print the same fields. Each returns a new reference
 * (NULL only when out of memory). */
#ifndef MESH_CTL_JSON_UTIL_H
#define MESH_CTL_JSON_UTIL_H

#include <jansson.h>
#include <stdint.h>

#include "servers/control/store.h"

/* A node as `nodes list --json` prints it: id, name, fqdn (name.domain),
 * hostname, ipv4, ipv6, online, last_seen, approved, ephemeral, expiry,
 * expired (expiry <= now), tags, user ("" = none), created, key. */
json_t *ctl_json_node(const struct ctl_node *nd, const char *domain, int64_t now);
/* "valid", "revoked", "expired" or "used". */
const char *ctl_json_key_state(const struct ctl_authkey *k, int64_t now);
/* An auth key as `keys list --json` prints it (never the secret): id,
 * reusable, ephemeral, revoked, uses, state, expiry, created, tags, user
 * ("" = none). */
json_t *ctl_json_authkey(const struct ctl_authkey *k, int64_t now);
/* An API key (never the secret): id, description, revoked, created,
 * last_used. */
json_t *ctl_json_apikey(const struct ctl_apikey *k);

#endif
