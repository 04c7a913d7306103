/* Destinations as clients write them, and the errors of reaching them. */
#include "core/util/hostname.h"
#include "proxy/proxy_int.h"

#include <arpa/inet.h>
#include <errno.h>
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

const char *px_err_str(enum px_err e)
{
	switch (e) {
	case PX_OK:
		return "ok";
	case PX_E_GENERAL:
		return "failed";
	case PX_E_NO_ROUTE:
		return "no mesh route";
	case PX_E_RESOLVE:
		return "name did not resolve";
	case PX_E_UNREACHABLE:
		return "host unreachable";
	case PX_E_REFUSED:
		return "connection refused";
	case PX_E_TIMEOUT:
		return "timed out";
	}
	return "?";
}

enum px_err px_err_from_errno(int neg_errno)
{
	switch (neg_errno) {
	case 0:
		return PX_OK;
	case -ECONNREFUSED:
	case -ECONNRESET:
		return PX_E_REFUSED;
	case -ETIMEDOUT:
		return PX_E_TIMEOUT;
	case -EHOSTUNREACH:
		return PX_E_UNREACHABLE;
	case -ENETUNREACH:
		return PX_E_NO_ROUTE;
	default:
		return PX_E_GENERAL;
	}
}

void px_front_count_err(struct px_front *f, enum px_err e)
{
	if (!f)
		return;
	switch (e) {
	case PX_OK:
		break;
	case PX_E_GENERAL:
		f->stats.err_other++;
		break;
	case PX_E_NO_ROUTE:
		f->stats.err_no_route++;
		break;
	case PX_E_RESOLVE:
		f->stats.err_resolve++;
		break;
	case PX_E_UNREACHABLE:
		f->stats.err_unreachable++;
		break;
	case PX_E_REFUSED:
		f->stats.err_refused++;
		break;
	case PX_E_TIMEOUT:
		f->stats.err_timeout++;
		break;
	}
}
