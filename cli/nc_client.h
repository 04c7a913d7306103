/* The `mesh-proxy nc` client (see nc_client.c). */
#ifndef MESH_NC_CLIENT_H
#define MESH_NC_CLIENT_H

#include <stdbool.h>

/* Returns the process exit code: 0 after the stream ended, 1 if the node
 * could not be reached or refused (message on stderr). */
int nc_client_run(const char *api_path, const char *host, const char *port);

#endif
