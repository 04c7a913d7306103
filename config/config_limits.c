/* Values of the keys that shape a front-end rather than the mesh: the
 * limits of every TCP front-end (MaxConnections, HandshakeTimeout,
 * IdleTimeout, BufferSize), Direct, ProxyProtocol, the UDP tunnels'
 * IdleTimeout and MaxFlows, and the node-wide MemoryLimit and
 * MaxConnectionsPerPeer. Same rules as config_value.c: each error names
 * section, key, value and what was expected. */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The limits of the TCP front-end section being read. */
static struct cfg_limits *cfg_cur_limits(struct cfg_parser *p)
{
	struct config *c = p->cfg;
	switch (p->sect) {
	case CFG_SECT_SOCKS5:
		return &c->socks5[c->n_socks5 - 1].limits;
	case CFG_SECT_HTTP:
		return &c->http[c->n_http - 1].limits;
	case CFG_SECT_TCP_CLIENT:
		return &c->tcp_client_tunnels[c->n_tcp_client_tunnels - 1].limits;
	default:
		return &c->tcp_server_tunnels[c->n_tcp_server_tunnels - 1].limits;
	}
}

int cfg_v_max_connections(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long n;
	if (!cfg_parse_uint(v, 1, 1000000, &n)) {
		cfg_value_err(p, key, v, "is not a number of connections (1-1000000)");
		return -1;
	}
	cfg_cur_limits(p)->max_connections = (uint32_t)n;
	return 0;
}

int cfg_v_handshake_timeout(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long n;
	if (!cfg_parse_uint(v, 1, 3600, &n)) {
		cfg_value_err(p, key, v, "is not a number of seconds (1-3600)");
		return -1;
	}
	cfg_cur_limits(p)->handshake_timeout_ms = (uint32_t)n * 1000;
	return 0;
}

/* IdleTimeout: TCP front-ends 0-604800 s (0 never), UDP tunnels 1-86400 s. */
int cfg_v_idle_timeout(struct cfg_parser *p, const char *key, const char *v)
{
	struct config *c = p->cfg;
	bool udp = p->sect == CFG_SECT_UDP_CLIENT || p->sect == CFG_SECT_UDP_SERVER;
	unsigned long n;
	if (!cfg_parse_uint(v, udp ? 1 : 0, udp ? 86400 : 604800, &n)) {
		cfg_value_err(p, key, v,
		              udp ? "is not a number of seconds (1-86400)"
		                  : "is not a number of seconds (0-604800; 0 = never)");
		return -1;
	}
	uint32_t ms = (uint32_t)n * 1000;
	if (p->sect == CFG_SECT_UDP_CLIENT)
		c->udp_client_tunnels[c->n_udp_client_tunnels - 1].idle_timeout_ms = ms;
	else if (p->sect == CFG_SECT_UDP_SERVER)
		c->udp_server_tunnels[c->n_udp_server_tunnels - 1].idle_timeout_ms = ms;
	else
		cfg_cur_limits(p)->idle_timeout_ms = ms;
	return 0;
}

/* BufferSize: bytes, or with a K or M suffix (1024, 1048576). */
int cfg_v_buffer_size(struct cfg_parser *p, const char *key, const char *v)
{
	char num[16];
	size_t n = strlen(v);
	unsigned long mult = 1, val;
	if (n > 0 && (v[n - 1] == 'K' || v[n - 1] == 'k'))
		mult = 1024, n--;
	else if (n > 0 && (v[n - 1] == 'M' || v[n - 1] == 'm'))
		mult = 1024 * 1024, n--;
	bool ok = n > 0 && n < sizeof(num);
	if (ok) {
		memcpy(num, v, n);
		num[n] = 0;
		ok = cfg_parse_uint(num, 1, 1048576, &val) && val * mult >= 16384 &&
		     val * mult <= 1048576;
	}
	if (!ok) {
		cfg_value_err(p, key, v,
		              "is not a buffer size (16384-1048576 bytes, or with K or "
		              "M: 16K-1M)");
		return -1;
	}
	cfg_cur_limits(p)->buffer_bytes = (uint32_t)(val * mult);
	return 0;
}

const char *cfg_direct_name(enum cfg_direct d)
{
	switch (d) {
	case CFG_DIRECT_NO:
		return "no";
	case CFG_DIRECT_PUBLIC:
		return "public";
	case CFG_DIRECT_ALL:
		return "all";
	case CFG_DIRECT_UNSET:
		break;
	}
	return "default";
}

bool cfg_direct_parse(const char *v, enum cfg_direct *out)
{
	static const struct {
		const char *word;
		enum cfg_direct d;
	} words[] = {
	    {"no", CFG_DIRECT_NO},    {"off", CFG_DIRECT_NO},
	    {"false", CFG_DIRECT_NO}, {"public", CFG_DIRECT_PUBLIC},
	    {"all", CFG_DIRECT_ALL},  {"yes", CFG_DIRECT_ALL},
	    {"on", CFG_DIRECT_ALL},   {"true", CFG_DIRECT_ALL},
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(v, words[i].word) == 0) {
			*out = words[i].d;
			return true;
		}
	return false;
}

int cfg_v_direct(struct cfg_parser *p, const char *key, const char *v)
{
	enum cfg_direct d;
	if (!cfg_direct_parse(v, &d)) {
		cfg_value_err(p, key, v,
		              "is not public, all or no (yes means all; loopback, "
		              "link-local and metadata addresses are never allowed)");
		return -1;
	}
	struct config *c = p->cfg;
	if (p->sect == CFG_SECT_SOCKS5)
		c->socks5[c->n_socks5 - 1].direct = d;
	else
		c->http[c->n_http - 1].direct = d;
	return 0;
}

int cfg_v_allow_open(struct cfg_parser *p, const char *key, const char *v)
{
	bool on;
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
	    strcasecmp(v, "on") == 0)
		on = true;
	else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
	         strcasecmp(v, "off") == 0)
		on = false;
	else {
		cfg_value_err(p, key, v, "is not yes or no");
		return -1;
	}
	struct config *c = p->cfg;
	if (p->sect == CFG_SECT_SOCKS5)
		c->socks5[c->n_socks5 - 1].allow_open = on;
	else
		c->http[c->n_http - 1].allow_open = on;
	return 0;
}

bool cfg_listen_is_loopback(const struct cfg_listen *l)
{
	if (l->addr.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)&l->addr;
		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (l->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&l->addr;
		return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
	}
	return false;
}

int cfg_v_proxy_protocol(struct cfg_parser *p, const char *key, const char *v)
{
	int pp;
	if (strcasecmp(v, "v2") == 0)
		pp = 2;
	else if (strcasecmp(v, "off") == 0)
		pp = 0;
	else {
		cfg_value_err(p, key, v, "is not v2 or off");
		return -1;
	}
	struct config *c = p->cfg;
	c->tcp_server_tunnels[c->n_tcp_server_tunnels - 1].proxy_protocol = pp;
	return 0;
}

int cfg_v_max_flows(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long n;
	if (!cfg_parse_uint(v, 1, 16384, &n)) {
		cfg_value_err(p, key, v, "is not a number of flows (1-16384)");
		return -1;
	}
	struct config *c = p->cfg;
	if (p->sect == CFG_SECT_UDP_CLIENT)
		c->udp_client_tunnels[c->n_udp_client_tunnels - 1].max_flows =
		    (uint32_t)n;
	else
		c->udp_server_tunnels[c->n_udp_server_tunnels - 1].max_flows =
		    (uint32_t)n;
	return 0;
}

/* The node-wide keys may be given once, in [Interface] or before any
 * section; a second time is an error naming the first. */
static bool cfg_node_key_once(struct cfg_parser *p, const char *key, int *line)
{
	if (*line != 0) {
		cfg_errf(p, "%s given twice (first at line %d)", key, *line);
		return false;
	}
	*line = p->src->line;
	return true;
}

/* MemoryLimit: bytes, or with K, M or G (16M-1T); 0: the default. */
int cfg_v_memory_limit(struct cfg_parser *p, const char *key, const char *v)
{
	static const uint64_t min = 16u << 20, max = (uint64_t)1 << 40;
	size_t n = strlen(v);
	uint64_t mult = 1, val;
	bool ok;

	if (!cfg_node_key_once(p, key, &p->cfg->memory_limit_line))
		return -1;
	if (n > 0 && (v[n - 1] == 'K' || v[n - 1] == 'k'))
		mult = 1024, n--;
	else if (n > 0 && (v[n - 1] == 'M' || v[n - 1] == 'm'))
		mult = 1024 * 1024, n--;
	else if (n > 0 && (v[n - 1] == 'G' || v[n - 1] == 'g'))
		mult = 1024 * 1024 * 1024, n--;
	/* Up to 13 digits: 1T in bytes is 1099511627776 (cfg_parse_uint
	 * stops at 9). */
	ok = n > 0 && n <= 13;
	val = 0;
	for (size_t i = 0; ok && i < n; i++) {
		ok = v[i] >= '0' && v[i] <= '9';
		val = val * 10 + (uint64_t)(v[i] - '0');
	}
	ok = ok && (val == 0 || (val <= max && val * mult >= min && val * mult <= max));
	if (!ok) {
		cfg_value_err(p, key, v,
		              "is not a memory size (16M-1T: bytes, or with K, M or G, "
		              "e.g. 512M; 0 for the default)");
		return -1;
	}
	p->cfg->memory_limit = (uint64_t)val * mult;
	return 0;
}

int cfg_v_max_conns_per_peer(struct cfg_parser *p, const char *key, const char *v)
{
	unsigned long n;

	if (!cfg_node_key_once(p, key, &p->cfg->max_conns_per_peer_line))
		return -1;
	if (!cfg_parse_uint(v, 0, 1000000, &n)) {
		cfg_value_err(p, key, v,
		              "is not a number of connections (0-1000000; 0 = no cap)");
		return -1;
	}
	p->cfg->max_conns_per_peer = (uint32_t)n;
	return 0;
}

/* A node-wide yes/no switch, once: *out 1 (yes, true, on) or -1 (no,
 * false, off); what defines the error's explanation. */
static int cfg_node_switch(struct cfg_parser *p, const char *key, const char *v, int *out,
                           int *line, const char *what)
{
	if (!cfg_node_key_once(p, key, line))
		return -1;
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
	    strcasecmp(v, "on") == 0)
		*out = 1;
	else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
	         strcasecmp(v, "off") == 0)
		*out = -1;
	else {
		char why[160];
		snprintf(why, sizeof(why), "is not yes or no (%s)", what);
		cfg_value_err(p, key, v, why);
		return -1;
	}
	return 0;
}

/* PortMapping: yes or no (node-wide, once). */
int cfg_v_portmap(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_node_switch(p, key, v, &p->cfg->portmap, &p->cfg->portmap_line,
	                       "whether to ask the router for a port mapping: UPnP, "
	                       "NAT-PMP, PCP");
}

/* BirthdayProbing: yes or no (node-wide, once). */
int cfg_v_birthday(struct cfg_parser *p, const char *key, const char *v)
{
	return cfg_node_switch(p, key, v, &p->cfg->birthday, &p->cfg->birthday_line,
	                       "whether to try birthday-paradox port probing against "
	                       "a symmetric NAT");
}
