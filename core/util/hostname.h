/* Host-name syntax shared by the config parser and the proxy front-ends. */
#ifndef MESH_HOSTNAME_H
#define MESH_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..n) is a plausible DNS host name: 1-253 characters, labels of
 * 1-63 letters, digits, '-' or '_' separated by single dots (a trailing dot
 * is allowed). Says nothing about whether it resolves. */
bool hostname_valid(const char *s, size_t n);

/* True if label (one DNS label, any case) is a name a mesh node may not
 * take: names programs resolve for themselves or trust without asking
 * (localhost and *-localhost forms, wpad, isatap, metadata...). A node
 * named so would capture every other node's connections to it. */
bool hostname_reserved(const char *label);

#endif
