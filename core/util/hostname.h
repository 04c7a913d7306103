/* Host-name syntax shared by the config parser and the proxy front-ends. */
#ifndef MESH_HOSTNAME_H
#define MESH_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..n) is a plausible DNS host name: 1-253 characters, labels of
 * 1-63 letters, digits, '-' or '_' separated by single dots (a trailing dot
 * is allowed). Says nothing about whether it resolves. */
bool hostname_valid(const char *s, size_t n);

#endif
