/* --forward specs (node/forward.h). Hostile input: every length is
 * checked before a copy; the config parser checks the result again. */
#include "node/forward.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hostname.h"

static bool fwd_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;
	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* A host: a DNS name (hostname_valid) or an IPv4 address, or
 * an IPv6 address in brackets (stored without them). */
static bool fwd_host(const char *s, size_t n, char *out, size_t cap, bool need_ip)
{
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		struct in6_addr a6;
		char tmp[64];
		if (n - 2 >= sizeof(tmp) || n - 2 >= cap)
			return false;
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = 0;
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return false;
		memcpy(out, tmp, n - 1);
		return true;
	}
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, s, n);
	out[n] = 0;
	struct in_addr a4;
	if (inet_pton(AF_INET, out, &a4) == 1)
		return true;
	/* a name as the configuration parser takes it (cfg_v_target) */
	return !need_ip && hostname_valid(out, n);
}

/* HOST:PORT with the last ':' outside brackets as the split. */
static bool fwd_hostport(const char *s, size_t n, char *host, size_t cap, uint16_t *port,
                         bool need_ip)
{
	const char *colon = NULL;
	for (size_t i = 0; i < n; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon)
		return false;
	size_t hn = (size_t)(colon - s);
	if (hn && s[0] != '[' && memchr(s, ':', hn))
		return false; /* a bare IPv6 address: brackets needed */
	return fwd_host(s, hn, host, cap, need_ip) &&
	       fwd_port(colon + 1, n - hn - 1, port);
}

static bool fwd_item_parse(const char *s, size_t n, struct fwd_item *f)
{
	memset(f, 0, sizeof(*f));
	if (n >= 4 && !strncmp(s, "udp/", 4))
		f->udp = true, s += 4, n -= 4;
	else if (n >= 4 && !strncmp(s, "tcp/", 4))
		s += 4, n -= 4;
	const char *eq = memchr(s, '=', n);
	if (!eq)
		return false;
	size_t ln = (size_t)(eq - s);
	const char *r = eq + 1;
	size_t rn = n - ln - 1;
	if (memchr(s, ':', ln)) {
		if (!fwd_hostport(s, ln, f->addr, sizeof(f->addr), &f->port, true))
			return false;
	} else {
		snprintf(f->addr, sizeof(f->addr), "127.0.0.1");
		if (!fwd_port(s, ln, &f->port))
			return false;
	}
	return fwd_hostport(r, rn, f->host, sizeof(f->host), &f->host_port, false);
}

bool fwd_parse(const char *spec, struct fwd_list *l, char *err, size_t errlen)
{
	l->n = 0;
	size_t len = strlen(spec);
	if (len > FWD_SPEC_MAX) {
		snprintf(err, errlen, "%zu bytes long (at most %d)", len, FWD_SPEC_MAX);
		return false;
	}
	if (!strcmp(spec, "off"))
		return true;
	const char *p = spec;
	for (;;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (l->n == FWD_MAX) {
			snprintf(err, errlen, "more than %d forwards", FWD_MAX);
			return false;
		}
		if (!fwd_item_parse(p, n, &l->item[l->n])) {
			snprintf(err, errlen,
			         "\"%.*s\" is not [udp/][ADDR:]PORT=HOST:PORT (e.g. "
			         "8080=web:80 or udp/127.0.0.1:5353=dns:53)",
			         (int)(n > 80 ? 80 : n), p);
			return false;
		}
		for (size_t i = 0; i < l->n; i++) {
			const struct fwd_item *o = &l->item[i];
			if (o->udp == l->item[l->n].udp &&
			    o->port == l->item[l->n].port &&
			    !strcmp(o->addr, l->item[l->n].addr)) {
				snprintf(err, errlen, "%s/%s port %u is forwarded twice",
				         o->udp ? "udp" : "tcp", o->addr, o->port);
				return false;
			}
		}
		l->n++;
		if (!end)
			return true;
		p = end + 1;
	}
}

bool fwd_loopback(const struct fwd_item *f)
{
	struct in_addr a4;
	if (inet_pton(AF_INET, f->addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return !strcmp(f->addr, "::1");
}

size_t fwd_ini(const struct fwd_list *l, char *buf, size_t cap)
{
	size_t n = 0;
	if (cap)
		buf[0] = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct fwd_item *f = &l->item[i];
		bool v6a = strchr(f->addr, ':') != NULL,
		     v6h = strchr(f->host, ':') != NULL;
		int k = snprintf(buf + n, cap - n,
		                 "[%s]\nBindAddress = %s%s%s:%u\nTarget = %s%s%s:%u\n",
		                 f->udp ? "UDPClientTunnel" : "TCPClientTunnel",
		                 v6a ? "[" : "", f->addr, v6a ? "]" : "", f->port,
		                 v6h ? "[" : "", f->host, v6h ? "]" : "", f->host_port);
		if (k < 0 || (size_t)k >= cap - n)
			return 0;
		n += (size_t)k;
	}
	return n;
}

/* Digits only, 1-65535: no sign, no spaces, no leading garbage. */
static bool fwd_port_ok(const char *s, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

bool fwd_listen_spec_ok(const char *s)
{
	if (!s)
		return false;
	size_t len = strlen(s);
	if (!strcmp(s, "off") || fwd_port_ok(s, len))
		return true;
	char addr[INET6_ADDRSTRLEN];
	const char *port;
	uint8_t a[16];
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(addr))
			return false;
		memcpy(addr, s + 1, (size_t)(close - s - 1));
		addr[close - s - 1] = 0;
		port = close + 2;
		if (inet_pton(AF_INET6, addr, a) != 1)
			return false;
	} else {
		const char *colon = strchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(addr))
			return false;
		memcpy(addr, s, (size_t)(colon - s));
		addr[colon - s] = 0;
		port = colon + 1;
		if (inet_pton(AF_INET, addr, a) != 1)
			return false;
	}
	return fwd_port_ok(port, strlen(port));
}
