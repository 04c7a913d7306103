/* The `mesh-proxy nc` client (see nc_client.c). */
#ifndef MESH_NC_CLIENT_H
#define MESH_NC_CLIENT_H

#include <stdbool.h>

/* Asks the node on s (a connected API socket, api_client_connect; closed
 * here) for a stream to host:port and copies stdin and stdout through it.
 * Returns the process exit code: 0 after the stream ended, 1 if the node
 * refused (message on stderr). */
int nc_client_run(int s, const char *host, const char *port);

#endif
