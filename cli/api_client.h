/* mesh-proxy's client of a running node's local API (node/api_server.h). */
#ifndef MESH_CLI_API_CLIENT_H
#define MESH_CLI_API_CLIENT_H

#include <stddef.h>

/* Connects to the node's API socket at path and checks who serves it
 * (SO_PEERCRED): only a node running as this user (the same uid) is
 * trusted, since the answer may be a stream for ssh (nc) or what the user
 * reads as the mesh's state. Returns the connected descriptor, or -errno
 * with a sentence in err: -ENOENT or -ECONNREFUSED (no node there), -EPERM
 * (a socket of another user: never used). */
int api_client_connect(const char *path, char *err, size_t errlen);
/* The same, with the connect and every later read and write bounded to
 * seconds (0: unbounded); -EAGAIN when the node did not accept in time. */
int api_client_connect_bounded(const char *path, unsigned seconds, char *err,
                               size_t errlen);

/* Sends line on fd (from api_client_connect; closed here) and copies the
 * answer to out_fd as it arrives. Returns 0, or -errno with a message in
 * err. last_line gets the final line of the answer (may be NULL). */
int api_client_request(int fd, const char *line, int out_fd, char *last_line,
                       size_t last_len, char *err, size_t errlen);

/* A bound on each read and write of fd's answer (SO_RCVTIMEO,
 * SO_SNDTIMEO): api_client_request then fails with -ETIMEDOUT and one
 * line instead of waiting for a stuck node. 0 or -errno. */
int api_client_timeout(int fd, unsigned seconds);

#endif
