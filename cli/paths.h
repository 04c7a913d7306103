/* Where the mesh-proxy command finds a node's state directory when
 * --state is not given, and makes it for `mesh-proxy up`. */
#ifndef MESH_CLI_PATHS_H
#define MESH_CLI_PATHS_H

#include <stddef.h>

/* The default state directory, first that applies:
 *   $STATE_DIRECTORY (set by systemd's StateDirectory=; of a
 *     colon-separated list, the first), then
 *   $XDG_STATE_HOME/mesh-proxy, then
 *   $HOME/.local/state/mesh-proxy.
 * Relative values are ignored, as the XDG base directory specification
 * asks. Returns 0, or -errno with a sentence in err (no HOME, too long). */
int cli_state_default(char *out, size_t len, char *err, size_t errlen);

/* For `up` with the default state directory: creates dir and its missing
 * parents (mode 0700), then refuses a directory that belongs to another
 * user or that group or others may write to (another user could replace
 * the node's keys). Returns 0, or -errno with a sentence in err that says
 * what to do. */
int cli_state_prepare(const char *dir, char *err, size_t errlen);

#endif
