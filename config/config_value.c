/* Configuration values: one parser per key, the key table of each section,
 * and the checks run when a section ends. Every error names the section, the
 * key, the value (never a secret) and what was expected. */
#include "config/config_int.h"
#include "core/util/hostname.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_HOST_MAX 256

/* ---- generic pieces ---- */

bool cfg_parse_uint(const char *s, unsigned long min, unsigned long max,
                    unsigned long *out)
{
	unsigned long v = 0;
	size_t i = 0;
	if (!s[0])
		return false;
	for (; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 9)
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool cfg_parse_prefix(const char *s, size_t len, struct cfg_prefix *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = 0;
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->cidr = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		out->cidr = 128;
	} else {
		return false;
	}
	if (slash) {
		unsigned long c;
		if (!cfg_parse_uint(slash + 1, 0, out->cidr, &c) || strlen(slash + 1) > 3)
			return false;
		out->cidr = (uint8_t)c;
	}
	return true;
}

bool cfg_is_hostname(const char *s)
{
	return hostname_valid(s, strlen(s));
}

bool cfg_split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
                        bool allow_empty_host, bool allow_port0)
{
	const char *h = s, *colon;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return false;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		if (hl == 0)
			return false;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return false;
		hl = (size_t)(colon - s);
		if (memchr(s, ':', hl)) /* bare IPv6 needs brackets */
			return false;
	}
	if (hl >= hostlen || (hl == 0 && !allow_empty_host))
		return false;
	unsigned long p;
	if (!cfg_parse_uint(colon + 1, allow_port0 ? 0 : 1, 65535, &p))
		return false;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (uint16_t)p;
	return true;
}

/* Resolves host (IP literal, or a name with getaddrinfo: blocking, which is
 * acceptable at startup) into ss. Returns 0, or -1 after an error. */
static int cfg_resolve(struct cfg_parser *p, const char *key, const char *host,
                       uint16_t port, bool passive, struct sockaddr_storage *ss,
                       socklen_t *sslen)
{
	const char *sn = cfg_sect_name(p->sect);
	char q[80];
	struct in6_addr a6;
	struct in_addr a4;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &a4) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_addr = a4;
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = a6;
		sin6->sin6_port = htons(port);
		*sslen = sizeof(*sin6);
		return 0;
	}
	if (!cfg_is_hostname(host)) {
		cfg_errf(p, "[%s] %s: \"%s\" is neither an IP address nor a host name",
		         sn, key, cfg_quote(host, q, sizeof(q)));
		return -1;
	}
	if (p->opts.no_resolve) {
		cfg_errf(p, "[%s] %s: cannot resolve \"%s\" (name resolution is off)", sn,
		         key, cfg_quote(host, q, sizeof(q)));
		return -1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = passive ? SOCK_STREAM : SOCK_DGRAM,
	                         .ai_flags = passive ? AI_PASSIVE : 0};
	struct addrinfo *res = NULL;
	int r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0 || !res) {
		cfg_errf(p, "[%s] %s: cannot resolve \"%s\": %s", sn, key,
		         cfg_quote(host, q, sizeof(q)),
		         r ? gai_strerror(r) : "no address");
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	freeaddrinfo(res);
	return 0;
}

/* Calls fn for each non-empty comma-separated item of v. */
static int cfg_each_item(struct cfg_parser *p, const char *key, const char *v,
                         int (*fn)(struct cfg_parser *, const char *key, const char *item,
                                   size_t len))
{
	while (*v) {
		const char *comma = strchr(v, ',');
		size_t n = comma ? (size_t)(comma - v) : strlen(v);
		const char *a = v;
		size_t an = n;
		while (an > 0 && (*a == ' ' || *a == '\t'))
			a++, an--;
		while (an > 0 && (a[an - 1] == ' ' || a[an - 1] == '\t'))
			an--;
		if (an > 0 && fn(p, key, a, an) < 0)
			return -1;
		v += n + (comma ? 1 : 0);
	}
	return 0;
}

static void cfg_item_err(struct cfg_parser *p, const char *key, const char *item,
                         size_t len, const char *what)
{
	char tmp[64], q[80];
	snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 62 ? len : 62), item);
	if (p->sect == CFG_SECT_TOP) /* a node-wide key before any section */
		cfg_errf(p, "%s: \"%s\" %s", key, cfg_quote(tmp, q, sizeof(q)), what);
	else
		cfg_errf(p, "[%s] %s: \"%s\" %s", cfg_sect_name(p->sect), key,
		         cfg_quote(tmp, q, sizeof(q)), what);
}

void cfg_value_err(struct cfg_parser *p, const char *key, const char *v, const char *what)
{
	cfg_item_err(p, key, v, strlen(v), what);
}

static int cfg_strdup_to(struct cfg_parser *p, char **dst, const char *v)
{
	*dst = strdup(v);
	if (!*dst) {
		cfg_errf(p, "out of memory");
		return -1;
	}
	return 0;
}

static int cfg_prefix_append(struct cfg_parser *p, struct cfg_prefix **arr, size_t *n,
                             const struct cfg_prefix *pr)
{
	struct cfg_prefix *a = realloc(*arr, (*n + 1) * sizeof(*a));
	if (!a) {
		cfg_errf(p, "out of memory");
		return -1;
	}
	a[(*n)++] = *pr;
	*arr = a;
	return 0;
}

/* ---- [Interface] ---- */

static int cfg_v_private_key(struct cfg_parser *p, const char *key, const char *v)
{
	if (!config_parse_key(v, p->cfg->private_key)) {
		cfg_errf(p,
		         "[Interface] %s: not a WireGuard key (44 base64 characters, as "
		         "printed by `mesh-proxy genkey`)",
		         key);
		return -1;
	}
	return 0;
}

static int cfg_i_address(struct cfg_parser *p, const char *key, const char *s, size_t n)
{
	struct cfg_prefix pr;
	if (!cfg_parse_prefix(s, n, &pr)) {
		cfg_item_err(p, key, s, n,
		             "is not an IP address (e.g. 100.64.0.2 or 100.64.0.2/32)");
		return -1;
	}
	return cfg_prefix_append(p, &p->cfg->addresses, &p->cfg->n_addresses, &pr);
}

static int cfg_v_address(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_each_item(p, key, v, cfg_i_address);
}

static int cfg_v_listen_port(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long port;
	if (!cfg_parse_uint(v, 0, 65535, &port)) {
		cfg_value_err(p, key, v, "is not a port number (0-65535)");
		return -1;
	}
	if (p->sect == CFG_SECT_INTERFACE) {
		p->cfg->listen_port = (uint16_t)port;
	} else {
		if (port == 0) {
			cfg_value_err(p, key, v, "is not a port number (1-65535)");
			return -1;
		}
		struct config *c = p->cfg;
		if (p->sect == CFG_SECT_UDP_SERVER)
			c->udp_server_tunnels[c->n_udp_server_tunnels - 1].listen_port =
			    (uint16_t)port;
		else
			c->tcp_server_tunnels[c->n_tcp_server_tunnels - 1].listen_port =
			    (uint16_t)port;
	}
	return 0;
}

static int cfg_v_mtu(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long mtu;
	if (!cfg_parse_uint(v, 576, 65535, &mtu)) {
		cfg_value_err(p, key, v, "is not an MTU (576-65535; usually 1420)");
		return -1;
	}
	p->cfg->mtu = (uint16_t)mtu;
	return 0;
}

static int cfg_i_dns(struct cfg_parser *p, const char *key, const char *s, size_t n)
{
	struct cfg_prefix pr;
	char name[CFG_HOST_MAX];
	if (memchr(s, '/', n) == NULL && cfg_parse_prefix(s, n, &pr))
		return cfg_prefix_append(p, &p->cfg->dns, &p->cfg->n_dns, &pr);
	if (n < sizeof(name)) {
		memcpy(name, s, n);
		name[n] = 0;
		if (cfg_is_hostname(name)) {
			/* wg-quick reads names in DNS as search domains. */
			cfg_warnf(p, "[Interface] DNS: search domain \"%s\" ignored",
			          name);
			return 0;
		}
	}
	cfg_item_err(p, key, s, n, "is not an IP address (e.g. 1.1.1.1)");
	return -1;
}

static int cfg_v_dns(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_each_item(p, key, v, cfg_i_dns);
}

static int cfg_i_check_alive(struct cfg_parser *p, const char *key, const char *s,
                             size_t n)
{
	struct cfg_prefix pr;
	if (memchr(s, '/', n) == NULL && cfg_parse_prefix(s, n, &pr))
		return cfg_prefix_append(p, &p->cfg->check_alive, &p->cfg->n_check_alive,
		                         &pr);
	cfg_item_err(p, key, s, n, "is not an IP address (e.g. 1.1.1.1)");
	return -1;
}

static int cfg_v_check_alive(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_each_item(p, key, v, cfg_i_check_alive);
}

static int cfg_v_check_alive_interval(struct cfg_parser *p, const char *key,
                                      const char *v)
{
	unsigned long s;
	if (!cfg_parse_uint(v, 1, 3600, &s)) {
		cfg_value_err(p, key, v, "is not a number of seconds (1-3600)");
		return -1;
	}
	p->cfg->check_alive_interval_s = (uint32_t)s;
	return 0;
}

/* ---- [Peer] ---- */

static struct cfg_peer *cfg_cur_peer(struct cfg_parser *p)
{
	return &p->cfg->peers[p->cfg->n_peers - 1];
}

static int cfg_v_public_key(struct cfg_parser *p, const char *key, const char *v)
{
	if (!config_parse_key(v, cfg_cur_peer(p)->public_key)) {
		cfg_value_err(p, key, v, "is not a WireGuard key (44 base64 characters)");
		return -1;
	}
	return 0;
}

static int cfg_v_preshared_key(struct cfg_parser *p, const char *key, const char *v)
{
	struct cfg_peer *peer = cfg_cur_peer(p);
	if (!config_parse_key(v, peer->preshared_key)) {
		cfg_errf(
		    p,
		    "[Peer] %s: not a WireGuard key (44 base64 characters, as printed "
		    "by `wg genpsk`)",
		    key);
		return -1;
	}
	peer->has_preshared_key = true;
	return 0;
}

static int cfg_v_endpoint(struct cfg_parser *p, const char *key, const char *v)
{
	struct cfg_peer *peer = cfg_cur_peer(p);
	char host[CFG_HOST_MAX];
	socklen_t sl;
	if (!cfg_split_hostport(v, host, sizeof(host), &peer->endpoint_port, false,
	                        false)) {
		cfg_value_err(p, key, v, "is not host:port or [IPv6]:port");
		return -1;
	}
	if (cfg_resolve(p, key, host, peer->endpoint_port, false, &peer->endpoint, &sl) <
	    0)
		return -1;
	return cfg_strdup_to(p, &peer->endpoint_host, host);
}

static int cfg_i_allowed(struct cfg_parser *p, const char *key, const char *s, size_t n)
{
	struct cfg_prefix pr;
	if (!cfg_parse_prefix(s, n, &pr)) {
		cfg_item_err(p, key, s, n,
		             "is not an IP prefix (e.g. 100.64.0.0/24 or fd00::/64)");
		return -1;
	}
	/* Host bits are cleared, as wg does. */
	size_t alen = pr.family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < alen; i++) {
		int bits = (int)pr.cidr - (int)(i * 8);
		if (bits <= 0)
			pr.addr[i] = 0;
		else if (bits < 8)
			pr.addr[i] &= (uint8_t)(0xff00 >> bits);
	}
	struct cfg_peer *peer = cfg_cur_peer(p);
	return cfg_prefix_append(p, &peer->allowed_ips, &peer->n_allowed_ips, &pr);
}

static int cfg_v_allowed_ips(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_each_item(p, key, v, cfg_i_allowed);
}

static int cfg_v_keepalive(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long k = 0;
	if (strcasecmp(v, "off") != 0 && !cfg_parse_uint(v, 0, 65535, &k)) {
		cfg_value_err(p, key, v, "is not a number of seconds (0-65535, or off)");
		return -1;
	}
	cfg_cur_peer(p)->persistent_keepalive = (uint16_t)k;
	return 0;
}

/* Name: one DNS label, so that "name" and "name." resolve to the peer. */
static int cfg_v_peer_name(struct cfg_parser *p, const char *key, const char *v)
{
	size_t n = strlen(v);
	bool ok = n >= 1 && n <= 63 && v[0] != '-' && v[n - 1] != '-';
	for (size_t i = 0; ok && i < n; i++) {
		char ch = v[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '-';
	}
	if (!ok) {
		cfg_value_err(p, key, v,
		              "is not a host name label (1-63 letters, digits and '-', "
		              "not starting or ending with '-'; e.g. web)");
		return -1;
	}
	struct cfg_peer *peer = cfg_cur_peer(p);
	peer->name_line = p->src->line;
	return cfg_strdup_to(p, &peer->name, v);
}

/* ---- [Socks5], [http], tunnels ---- */

static int cfg_v_bind(struct cfg_parser *p, const char *key, const char *v)
{
	char host[CFG_HOST_MAX];
	uint16_t port;
	struct config *c = p->cfg;
	struct cfg_listen *l;
	if (p->sect == CFG_SECT_SOCKS5)
		l = &c->socks5[c->n_socks5 - 1].bind;
	else if (p->sect == CFG_SECT_HTTP)
		l = &c->http[c->n_http - 1].bind;
	else if (p->sect == CFG_SECT_UDP_CLIENT)
		l = &c->udp_client_tunnels[c->n_udp_client_tunnels - 1].bind;
	else
		l = &c->tcp_client_tunnels[c->n_tcp_client_tunnels - 1].bind;
	if (!cfg_split_hostport(v, host, sizeof(host), &port, true, true)) {
		cfg_value_err(
		    p, key, v,
		    "is not address:port (e.g. 127.0.0.1:1080, [::1]:1080 or :1080)");
		return -1;
	}
	return cfg_resolve(p, key, host[0] ? host : "0.0.0.0", port, true, &l->addr,
	                   &l->addr_len);
}

static int cfg_v_target(struct cfg_parser *p, const char *key, const char *v)
{
	char host[CFG_HOST_MAX];
	uint16_t port;
	struct in6_addr a;
	if (!cfg_split_hostport(v, host, sizeof(host), &port, false, false) ||
	    (inet_pton(AF_INET, host, &a) != 1 && inet_pton(AF_INET6, host, &a) != 1 &&
	     !cfg_is_hostname(host))) {
		cfg_value_err(p, key, v, "is not host:port or [IPv6]:port");
		return -1;
	}
	struct config *c = p->cfg;
	if (p->sect == CFG_SECT_STDIO) {
		c->stdio_target_port = port;
		return cfg_strdup_to(p, &c->stdio_target_host, host);
	}
	if (p->sect == CFG_SECT_TCP_CLIENT) {
		struct cfg_tcp_client_tunnel *t =
		    &c->tcp_client_tunnels[c->n_tcp_client_tunnels - 1];
		t->target_port = port;
		return cfg_strdup_to(p, &t->target_host, host);
	}
	if (p->sect == CFG_SECT_UDP_CLIENT) {
		struct cfg_udp_client_tunnel *t =
		    &c->udp_client_tunnels[c->n_udp_client_tunnels - 1];
		t->target_port = port;
		return cfg_strdup_to(p, &t->target_host, host);
	}
	if (p->sect == CFG_SECT_UDP_SERVER) {
		struct cfg_udp_server_tunnel *t =
		    &c->udp_server_tunnels[c->n_udp_server_tunnels - 1];
		t->target_port = port;
		return cfg_strdup_to(p, &t->target_host, host);
	}
	struct cfg_tcp_server_tunnel *t =
	    &c->tcp_server_tunnels[c->n_tcp_server_tunnels - 1];
	t->target_port = port;
	return cfg_strdup_to(p, &t->target_host, host);
}

/* Username and Password: 1-255 bytes (RFC 1929 field sizes). */
static int cfg_v_credential(struct cfg_parser *p, const char *key, const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 255) {
		cfg_errf(p, "[%s] %s must be 1 to 255 characters long",
		         cfg_sect_name(p->sect), key);
		return -1;
	}
	struct config *c = p->cfg;
	bool user = strcasecmp(key, "Username") == 0;
	char **dst;
	if (p->sect == CFG_SECT_SOCKS5)
		dst = user ? &c->socks5[c->n_socks5 - 1].username
		           : &c->socks5[c->n_socks5 - 1].password;
	else
		dst = user ? &c->http[c->n_http - 1].username
		           : &c->http[c->n_http - 1].password;
	return cfg_strdup_to(p, dst, v);
}

/* ---- top level ---- */

static int cfg_v_wgconfig(struct cfg_parser *p, const char *key, const char *v)
{
	if (p->src->is_include) {
		cfg_errf(p, "%s is not allowed inside a WGConfig file", key);
		return -1;
	}
	if (p->opts.no_include) {
		cfg_errf(p, "%s is not allowed here", key);
		return -1;
	}
	if (!v[0]) {
		cfg_errf(p, "%s: expected the path of a wg-quick file", key);
		return -1;
	}
	p->wgconfig_line = p->src->line;
	return cfg_strdup_to(p, &p->wgconfig, v);
}

/* ---- key tables ---- */

static const struct cfg_keydef keys_top[] = {
    {"WGConfig", cfg_v_wgconfig, false},
    {"MemoryLimit", cfg_v_memory_limit, true}, /* once: checked by the handler */
    {"MaxConnectionsPerPeer", cfg_v_max_conns_per_peer, true},
    {"PortMapping", cfg_v_portmap, true},
    {"BirthdayProbing", cfg_v_birthday, true},
    {NULL, NULL, false},
};

/* Index 0 and 1 are checked by cfg_section_check(). */
static const struct cfg_keydef keys_interface[] = {
    {"PrivateKey", cfg_v_private_key, false},
    {"Address", cfg_v_address, true},
    {"ListenPort", cfg_v_listen_port, false},
    {"MTU", cfg_v_mtu, false},
    {"DNS", cfg_v_dns, true},
    /* wireproxy's health check: pinged through the mesh, shown in status. */
    {"CheckAlive", cfg_v_check_alive, true},
    {"CheckAliveInterval", cfg_v_check_alive_interval, false},
    {"MemoryLimit", cfg_v_memory_limit, true},
    {"MaxConnectionsPerPeer", cfg_v_max_conns_per_peer, true},
    {"PortMapping", cfg_v_portmap, true},
    {"BirthdayProbing", cfg_v_birthday, true},
    /* wg-quick and wg(8) settings that mean nothing without a kernel
     * interface: accepted so wg-quick files load, with a warning. */
    {"PreUp", NULL, true},
    {"PostUp", NULL, true},
    {"PreDown", NULL, true},
    {"PostDown", NULL, true},
    {"Table", NULL, true},
    {"SaveConfig", NULL, true},
    {"FwMark", NULL, true},
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_peer[] = {
    {"PublicKey", cfg_v_public_key, false},
    {"PresharedKey", cfg_v_preshared_key, false},
    {"Endpoint", cfg_v_endpoint, false},
    {"AllowedIPs", cfg_v_allowed_ips, true},
    {"PersistentKeepalive", cfg_v_keepalive, false},
    {"Name", cfg_v_peer_name, false},
    {NULL, NULL, false},
};

/* The limits of every TCP front-end. */
#define CFG_LIMIT_KEYS                                                                   \
	{"MaxConnections", cfg_v_max_connections, false},                                \
	    {"HandshakeTimeout", cfg_v_handshake_timeout, false},                        \
	    {"IdleTimeout", cfg_v_idle_timeout, false},                                  \
	{                                                                                \
		"BufferSize", cfg_v_buffer_size, false                                   \
	}

static const struct cfg_keydef keys_proxy[] = {
    {"BindAddress", cfg_v_bind, false},
    {"Username", cfg_v_credential, false},
    {"Password", cfg_v_credential, false},
    {"Direct", cfg_v_direct, false},
    {"AllowOpen", cfg_v_allow_open, false},
    CFG_LIMIT_KEYS,
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_tcp_client[] = {
    {"BindAddress", cfg_v_bind, false},
    {"Target", cfg_v_target, false},
    CFG_LIMIT_KEYS,
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_tcp_server[] = {
    {"ListenPort", cfg_v_listen_port, false},
    {"Target", cfg_v_target, false},
    {"ProxyProtocol", cfg_v_proxy_protocol, false},
    CFG_LIMIT_KEYS,
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_udp_client[] = {
    {"BindAddress", cfg_v_bind, false},
    {"Target", cfg_v_target, false},
    {"IdleTimeout", cfg_v_idle_timeout, false},
    {"MaxFlows", cfg_v_max_flows, false},
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_stdio[] = {
    {"Target", cfg_v_target, false},
    {NULL, NULL, false},
};

static const struct cfg_keydef keys_udp_server[] = {
    {"ListenPort", cfg_v_listen_port, false},
    {"Target", cfg_v_target, false},
    {"IdleTimeout", cfg_v_idle_timeout, false},
    {"MaxFlows", cfg_v_max_flows, false},
    {NULL, NULL, false},
};

const struct cfg_keydef *cfg_keys(enum cfg_sect s)
{
	switch (s) {
	case CFG_SECT_INTERFACE:
		return keys_interface;
	case CFG_SECT_PEER:
		return keys_peer;
	case CFG_SECT_SOCKS5:
	case CFG_SECT_HTTP:
		return keys_proxy;
	case CFG_SECT_TCP_CLIENT:
		return keys_tcp_client;
	case CFG_SECT_TCP_SERVER:
		return keys_tcp_server;
	case CFG_SECT_UDP_CLIENT:
		return keys_udp_client;
	case CFG_SECT_UDP_SERVER:
		return keys_udp_server;
	case CFG_SECT_STDIO:
		return keys_stdio;
	case CFG_SECT_TOP:
		break;
	}
	return keys_top;
}

/* ---- required keys, checked when a section ends ---- */

static int cfg_missing(struct cfg_parser *p, const char *key, const char *hint)
{
	p->src->line = p->sect_line; /* name the section's first line */
	cfg_errf(p, "[%s] %s is missing%s", cfg_sect_name(p->sect), key, hint);
	return -1;
}

int cfg_section_check(struct cfg_parser *p)
{
	const int *seen = p->seen;
	struct config *c = p->cfg;
	switch (p->sect) {
	case CFG_SECT_INTERFACE:
		if (!seen[0])
			return cfg_missing(p, "PrivateKey",
			                   " (make one with `mesh-proxy genkey`)");
		if (c->n_addresses == 0)
			return cfg_missing(p, "Address",
			                   " (this node's mesh address, e.g. "
			                   "100.64.0.2/32)");
		break;
	case CFG_SECT_PEER:
		if (!seen[0])
			return cfg_missing(p, "PublicKey", "");
		break;
	case CFG_SECT_SOCKS5:
	case CFG_SECT_HTTP: {
		if (!seen[0])
			return cfg_missing(p, "BindAddress", " (e.g. 127.0.0.1:1080)");
		bool u = p->sect == CFG_SECT_SOCKS5 ? c->socks5[c->n_socks5 - 1].username
		                                    : c->http[c->n_http - 1].username;
		bool pw = p->sect == CFG_SECT_SOCKS5 ? c->socks5[c->n_socks5 - 1].password
		                                     : c->http[c->n_http - 1].password;
		if (u && !pw)
			return cfg_missing(p, "Password", " (Username is set)");
		if (pw && !u)
			return cfg_missing(p, "Username", " (Password is set)");
		const struct cfg_listen *b = p->sect == CFG_SECT_SOCKS5
		                                 ? &c->socks5[c->n_socks5 - 1].bind
		                                 : &c->http[c->n_http - 1].bind;
		bool open = p->sect == CFG_SECT_SOCKS5
		                ? c->socks5[c->n_socks5 - 1].allow_open
		                : c->http[c->n_http - 1].allow_open;
		if (!u && !open && !cfg_listen_is_loopback(b)) {
			cfg_errf(
			    p,
			    "[%s] BindAddress can be reached from other hosts and no "
			    "Username/Password is set: anyone who reaches it could use "
			    "this host (its LAN, the internet, the mesh); bind "
			    "127.0.0.1, "
			    "set Username and Password, or add AllowOpen = yes",
			    cfg_sect_name(p->sect));
			return -1;
		}
		break;
	}
	case CFG_SECT_TCP_CLIENT:
	case CFG_SECT_UDP_CLIENT:
		if (!seen[0])
			return cfg_missing(p, "BindAddress",
			                   p->sect == CFG_SECT_UDP_CLIENT
			                       ? " (e.g. 127.0.0.1:5353)"
			                       : " (e.g. 127.0.0.1:8080)");
		if (!seen[1])
			return cfg_missing(p, "Target", " (mesh address:port)");
		break;
	case CFG_SECT_STDIO:
		if (!seen[0])
			return cfg_missing(p, "Target",
			                   " (host:port through the mesh, e.g. "
			                   "gateway:22)");
		break;
	case CFG_SECT_UDP_SERVER:
	case CFG_SECT_TCP_SERVER:
		if (!seen[0])
			return cfg_missing(p, "ListenPort", "");
		if (!seen[1])
			return cfg_missing(p, "Target",
			                   " (local address:port, e.g. "
			                   "127.0.0.1:8080)");
		break;
	case CFG_SECT_TOP:
		break;
	}
	return 0;
}
