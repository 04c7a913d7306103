/* Socket addresses as people read them. */
#ifndef MESH_SOCKADDR_H
#define MESH_SOCKADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "1.2.3.4:80" or "[fd00::1]:80"; "?" for any other family. */
void sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t len);

/* Same family and IP address (ports aside; the IPv6 scope id counts for
 * link-local addresses only). False for families other than IPv4/IPv6. */
bool sockaddr_ip_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* sockaddr_ip_equal, and the same port. */
bool sockaddr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
