/* `mesh-proxy whois ADDR[:PORT] [--json]`: which node of the map (or this
 * node itself) holds a mesh address, its user and tags, and with a port
 * whether the access policy lets this node open it there (and lets that
 * node open it here). Answers from the map the node holds: a node the
 * policy hides from this one is not known here. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hostname.h"
#include "node/acl.h"
#include "node/api_server.h"
#include "node/control_int.h"
#include "node/format.h"

/* "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT", "V6", a name, "NAME:PORT":
 * the host part into host, *port 0 when none. False: not that shape. */
static bool whois_split(const char *arg, char *host, size_t cap, unsigned *port)
{
	*port = 0;
	const char *colon = NULL, *end = arg + strlen(arg);
	if (arg[0] == '[') {
		const char *rb = strchr(arg, ']');
		if (!rb || (rb[1] && rb[1] != ':'))
			return false;
		if ((size_t)(rb - arg - 1) >= cap)
			return false;
		memcpy(host, arg + 1, (size_t)(rb - arg - 1));
		host[rb - arg - 1] = 0;
		colon = rb[1] ? rb + 1 : NULL;
	} else {
		colon = strchr(arg, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* a bare IPv6 address */
		size_t n = colon ? (size_t)(colon - arg) : (size_t)(end - arg);
		if (n == 0 || n >= cap)
			return false;
		memcpy(host, arg, n);
		host[n] = 0;
	}
	if (colon) {
		char *e;
		unsigned long v = strtoul(colon + 1, &e, 10);
		if (!colon[1] || *e || v == 0 || v > 65535)
			return false;
		*port = (unsigned)v;
	}
	return true;
}

static bool whois_is_self(const struct node_ctl *m, const struct ns_addr *a)
{
	if (!m->have_self)
		return false;
	if (a->family == AF_INET)
		return memcmp(a->addr, m->self.ipv4, 4) == 0;
	static const uint8_t zero[16];
	return memcmp(m->self.ipv6, zero, 16) != 0 &&
	       memcmp(a->addr, m->self.ipv6, 16) == 0;
}

struct whois {
	char addr[INET6_ADDRSTRLEN];
	bool self;
	uint64_t id;
	char name[CTL_LABEL_MAX];
	char fqdn[CTL_DNSNAME_MAX + CTL_LABEL_MAX + 1];
	const char *user, *tags; /* NULL: not known (no map yet) */
	unsigned port;
	bool policy;
	bool reach_tcp, reach_udp, in_tcp, in_udp;
};

static void whois_text(const struct whois *w, struct api_conn *c)
{
	api_conn_printf(c, "address %s%s\n", w->addr, w->self ? "  (this node)" : "");
	api_conn_printf(c, "node    %s  %s  id %" PRIu64 "\n", w->name, w->fqdn, w->id);
	api_conn_printf(c, "user    %s\n",
	                !w->user     ? "(no map yet)"
	                : w->user[0] ? w->user
	                             : "(none)");
	api_conn_printf(c, "tags    %s\n",
	                !w->tags     ? "(no map yet)"
	                : w->tags[0] ? w->tags
	                             : "(none)");
	if (!w->port) {
		api_conn_printf(c, "policy  %s\nok\n", w->policy ? "active" : "none");
		return;
	}
	if (!w->policy) {
		api_conn_printf(c, "policy  none: everything is allowed\nok\n");
		return;
	}
	if (w->self) {
		api_conn_printf(c, "policy  active (this node's own ports: the policy "
		                   "filters what peers may open here)\nok\n");
		return;
	}
	api_conn_printf(c, "reach   tcp %u: %s; udp %u: %s  (this node -> %s)\n", w->port,
	                w->reach_tcp ? "allowed" : "not allowed", w->port,
	                w->reach_udp ? "allowed" : "not allowed", w->name);
	api_conn_printf(c, "inbound tcp %u: %s; udp %u: %s  (%s -> this node)\nok\n",
	                w->port, w->in_tcp ? "allowed" : "not allowed", w->port,
	                w->in_udp ? "allowed" : "not allowed", w->name);
}

static void whois_json(const struct whois *w, struct api_conn *c)
{
	json_t *o = json_object();
	if (!o) {
		api_conn_printf(c, "{\"error\":\"out of memory\"}\n");
		return;
	}
	fmt_json_set(o, "address", fmt_json_str(w->addr));
	fmt_json_set(o, "self", json_boolean(w->self));
	fmt_json_set(o, "id", fmt_json_u64(w->id));
	fmt_json_set(o, "name", fmt_json_str(w->name));
	fmt_json_set(o, "fqdn", fmt_json_str(w->fqdn));
	fmt_json_set(o, "user", w->user ? fmt_json_str(w->user) : json_null());
	json_t *tags = json_array();
	if (tags && w->tags && w->tags[0]) {
		char buf[CTL_PEER_TAGS_MAX], *save = NULL;
		snprintf(buf, sizeof(buf), "%s", w->tags);
		for (char *t = strtok_r(buf, ",", &save); t;
		     t = strtok_r(NULL, ",", &save))
			tags = fmt_json_append(tags, fmt_json_str(t));
	}
	fmt_json_set(o, "tags", w->tags ? tags : (json_decref(tags), json_null()));
	fmt_json_set(o, "policy", json_string(w->policy ? "active" : "none"));
	if (w->port) {
		fmt_json_set(o, "port", json_integer(w->port));
		bool all = !w->policy || w->self;
		json_t *r = json_object(), *in = json_object();
		if (r) {
			fmt_json_set(r, "tcp", json_boolean(all || w->reach_tcp));
			fmt_json_set(r, "udp", json_boolean(all || w->reach_udp));
		}
		if (in) {
			fmt_json_set(in, "tcp", json_boolean(all || w->in_tcp));
			fmt_json_set(in, "udp", json_boolean(all || w->in_udp));
		}
		fmt_json_set(o, "reach", r);
		fmt_json_set(o, "inbound", in);
	}
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	api_conn_printf(c, "%s\n", s ? s : "{\"error\":\"out of memory\"}");
	free(s);
}

static void whois_fail(struct api_conn *c, bool json, const char *msg)
{
	if (json) {
		json_t *o = json_pack("{s:s}", "error", msg);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		api_conn_printf(c, "%s\n", s ? s : "{\"error\":\"out of memory\"}");
		free(s);
		json_decref(o);
	} else {
		api_conn_printf(c, "error: %s\nfail\n", msg);
	}
}

void node_ctl_whois(struct node_ctl *m, struct api_conn *c, const char *args)
{
	bool json = false;
	if (strncmp(args, "json ", 5) == 0) {
		json = true;
		args += 5;
	}
	char host[256], msg[512];
	unsigned port;
	if (!m) {
		whois_fail(
		    c, json,
		    "whois needs a node joined to mesh-control (mesh-proxy up); the "
		    "peers of a configuration file have no owners");
		return;
	}
	if (!whois_split(args, host, sizeof(host), &port)) {
		snprintf(msg, sizeof(msg),
		         "'%.200s' is not ADDR, ADDR:PORT or [IPv6]:PORT (PORT 1-65535)",
		         args);
		whois_fail(c, json, msg);
		return;
	}
	struct ns_addr a;
	if (!ns_addr_parse(&a, host)) {
		struct ns_addr r[4];
		if (!hostname_valid(host, strlen(host)) ||
		    node_peers_resolve(&m->np, host, r, 4) == 0) {
			snprintf(
			    msg, sizeof(msg),
			    "%s is not a mesh address, and no node in this node's map "
			    "is named so (see mesh-proxy status)",
			    host);
			whois_fail(c, json, msg);
			return;
		}
		a = r[0];
	}
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
	if (a.family == AF_INET6 && !memcmp(a.addr, mapped, 12)) { /* ::ffff:a.b.c.d */
		memmove(a.addr, a.addr + 12, 4);
		memset(a.addr + 4, 0, 12);
		a.family = AF_INET;
	}
	struct whois w = {.port = port, .policy = node_acl_active(m->acl)};
	inet_ntop(a.family, a.addr, w.addr, sizeof(w.addr));
	if (whois_is_self(m, &a)) {
		w.self = true;
		w.id = m->self.node_id;
		snprintf(w.name, sizeof(w.name), "%s", m->self.name);
		snprintf(w.fqdn, sizeof(w.fqdn), "%s", m->self.fqdn);
		if (m->np.version) { /* its owner, from the map */
			w.user = m->np.self_user;
			w.tags = m->np.self_tags;
		}
	} else {
		const struct np_entry *e = node_peers_by_addr(&m->np, &a);
		if (!e) {
			snprintf(
			    msg, sizeof(msg),
			    "no node in this node's map holds %s (not a mesh address, "
			    "a node that left, or one the policy keeps out of sight)",
			    w.addr);
			whois_fail(c, json, msg);
			return;
		}
		w.id = e->p.id;
		w.user = e->p.user;
		w.tags = e->p.tags;
		snprintf(w.name, sizeof(w.name), "%s", e->p.name);
		snprintf(w.fqdn, sizeof(w.fqdn), "%s%s%s", e->p.name,
		         m->np.domain[0] ? "." : "", m->np.domain);
		if (port) {
			w.reach_tcp = node_acl_reach(m->acl, e->p.id, CTL_FILTER_TCP,
			                             (uint16_t)port);
			w.reach_udp = node_acl_reach(m->acl, e->p.id, CTL_FILTER_UDP,
			                             (uint16_t)port);
			w.in_tcp = node_acl_filter_allows(m->acl, CTL_FILTER_TCP, &a,
			                                  (uint16_t)port);
			w.in_udp = node_acl_filter_allows(m->acl, CTL_FILTER_UDP, &a,
			                                  (uint16_t)port);
		}
	}
	if (json)
		whois_json(&w, c);
	else
		whois_text(&w, c);
}
