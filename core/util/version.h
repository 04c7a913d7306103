/* The release version, one place for all three programs (--version, the
 * build_info metric, the control protocol's hostinfo). */
#ifndef MESH_UTIL_VERSION_H
#define MESH_UTIL_VERSION_H

#define MESH_VERSION "0.1.0"

#endif
