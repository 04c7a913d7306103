/* mesh-proxy's client of a running node's local API (node/api_server.h). */
#ifndef MESH_CLI_API_CLIENT_H
#define MESH_CLI_API_CLIENT_H

#include <stddef.h>

/* Sends line to the server at path and copies the answer to out
 * as it arrives. Returns 0, or -errno with a message in err. last_line gets
 * the final line of the answer (may be NULL). */
int api_client_request(const char *path, const char *line, int out_fd, char *last_line,
                       size_t last_len, char *err, size_t errlen);

#endif
