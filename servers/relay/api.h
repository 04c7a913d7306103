/* mesh-relay's local API socket (see api.c). */
#ifndef MESH_RELAY_API_H
#define MESH_RELAY_API_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct rly_api;

/* Returns a malloc'd answer (text or JSON, ending in a newline). */
typedef char *(*rly_api_status_fn)(void *ctx, bool json);

struct rly_api *rly_api_new(struct event_base *base, const char *path,
                            rly_api_status_fn fn, void *ctx, char *err, size_t errlen);
void rly_api_free(struct rly_api *a);

#endif
