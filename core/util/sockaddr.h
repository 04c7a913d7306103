/* Socket addresses as people read them. */
#ifndef MESH_SOCKADDR_H
#define MESH_SOCKADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* "1.2.3.4:80" or "[fd00::1]:80"; "?" for any other family. */
void sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
