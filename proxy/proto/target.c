/* Destinations as clients write them: an address or a host name, and a port. */
#include "core/util/hostname.h"
#include "proxy/proto/proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

bool px_addr_parse(struct ns_addr *a, const char *s)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->addr) == 1) {
		a->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, a->addr) == 1) {
		a->family = AF_INET6;
		return true;
	}
	return false;
}

bool px_target_set(struct px_target *t, const char *host, size_t hostlen, uint16_t port)
{
	memset(t, 0, sizeof(*t));
	if (hostlen == 0 || hostlen >= sizeof(t->host) || memchr(host, 0, hostlen))
		return false;
	memcpy(t->host, host, hostlen);
	t->host[hostlen] = 0;
	t->port = port;
	if (px_addr_parse(&t->addr, t->host))
		return true;
	/* A trailing dot (fully qualified) is fine. */
	size_t n = hostlen;
	if (n > 1 && host[n - 1] == '.')
		n--;
	if (!hostname_valid(host, n))
		return false;
	t->is_name = true;
	return true;
}

void px_target_format(const struct px_target *t, char *buf, size_t len)
{
	if (!t->is_name && t->addr.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", t->host, t->port);
	else
		snprintf(buf, len, "%s:%u", t->host, t->port);
}
