/* Names for the front-ends that are not mesh names.
 *
 * [Interface] DNS in a node run from a configuration file (wireproxy
 * mode): the front-ends' names are looked up through the tunnel by the
 * DNS client (node/dns/dnsc.h), never by the host's resolver. Every
 * server must be reached through the mesh: a server no [Peer] AllowedIPs
 * covers stops the node at start instead of leaking to the host.
 *
 * Otherwise the host's resolver (evdns, and MagicDNS's forwarder), whose
 * configuration is read again on SIGHUP and when /etc/resolv.conf
 * changes (resolv_watch.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "node/control.h"
#include "node/dns/dnsc.h"
#include "node/node_int.h"
#include "node/resolv_watch.h"

#include <event2/dns.h>

static int node_dns_lookup(void *ctx, const char *name,
                           void (*cb)(void *arg, int err, const struct ns_addr *a,
                                      size_t n),
                           void *arg, void **handle)
{
	struct node *n = ctx;
	struct dnsc_lookup *l = dnsc_resolve(n->dnsc, name, cb, arg);
	*handle = l;
	return l ? 0 : -ENOMEM;
}

static void node_dns_lookup_cancel(void *ctx, void *handle)
{
	(void)ctx;
	dnsc_cancel(handle);
}

/* True for a literal address (a UDP tunnel target that needs no lookup). */
static bool node_dns_is_literal(const char *host)
{
	uint8_t a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* ::ffff:a.b.c.d becomes a.b.c.d: the netstack sends it as IPv4, and
 * the answer comes back from the IPv4 address. */
static void node_dns_unmap(struct cfg_prefix *p)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (p->family != AF_INET6 || memcmp(p->addr, mapped, 12) != 0)
		return;
	uint8_t v4[4];
	memcpy(v4, p->addr + 12, 4);
	memset(p->addr, 0, sizeof(p->addr));
	memcpy(p->addr, v4, 4);
	p->family = AF_INET;
}

/* Has the node an [Interface] Address of this family to send from? */
static bool node_dns_have_family(const struct config *c, int family)
{
	for (size_t i = 0; i < c->n_addresses; i++)
		if (c->addresses[i].family == family)
			return true;
	return false;
}

int node_dns_start(struct node *n)
{
	const struct config *c = &n->cfg;
	if (n->ctl || c->n_dns == 0)
		return 0;
	struct dnsc_config dc = {.base = n->base};
	for (size_t i = 0; i < c->n_dns; i++) {
		struct cfg_prefix dd = c->dns[i];
		const struct cfg_prefix *d = &dd;
		char s[INET6_ADDRSTRLEN];
		inet_ntop(d->family, d->addr, s, sizeof(s));
		node_dns_unmap(&dd); /* ::ffff:a.b.c.d is a.b.c.d, as it is sent */
		if (!node_dns_have_family(c, d->family)) {
			log_warn("%s: [Interface] DNS %s: ignored, no [Interface] Address "
			         "is %s, so the node cannot send to it; add one, or "
			         "use a server of the other family",
			         c->path, s, d->family == AF_INET ? "IPv4" : "IPv6");
			continue;
		}
		if (!wg_device_has_route(n->wg, d->family, d->addr)) {
			log_error("%s: [Interface] DNS %s: no [Peer] AllowedIPs covers "
			          "it. Names are resolved through the tunnel only (never "
			          "by this host's resolver): add %s to the AllowedIPs of "
			          "the peer that reaches it, or remove it from DNS",
			          c->path, s, s);
			return -1;
		}
		if (dc.n_servers == DNSC_SERVERS_MAX) {
			log_warn(
			    "[Interface] DNS %s: ignored (at most %d servers are used)",
			    s, DNSC_SERVERS_MAX);
			continue;
		}
		dc.servers[dc.n_servers].family = d->family;
		memcpy(dc.servers[dc.n_servers].addr, d->addr, 16);
		dc.n_servers++;
	}
	if (dc.n_servers == 0) {
		log_error("%s: [Interface] DNS: none of the servers can be reached "
		          "(see above); names could not be resolved",
		          c->path);
		return -1;
	}
	/* A UDP client tunnel resolves its target once, at start, and
	 * synchronously: it cannot wait for the tunnel's DNS. */
	for (size_t i = 0; i < c->n_udp_client_tunnels; i++) {
		const char *h = c->udp_client_tunnels[i].target_host;
		struct ns_addr a[1];
		if (node_dns_is_literal(h) || n->env.resolve_mesh(n, h, a, 1) > 0)
			continue;
		log_error("%s: [UDPClientTunnel] Target %s: with [Interface] DNS, names "
		          "are resolved through the tunnel, which a UDP tunnel's target "
		          "cannot wait for; write its address (or a [Peer] Name)",
		          c->path, h);
		return -1;
	}
	n->dnsc = dnsc_new(&dc);
	if (!n->dnsc) {
		log_error("[Interface] DNS: out of memory");
		return -1;
	}
	n->env.lookup = node_dns_lookup;
	n->env.lookup_cancel = node_dns_lookup_cancel;
	n->env.lookup_ctx = n;
	log_info("names resolve through the tunnel: %zu DNS server(s) from [Interface] "
	         "DNS; this host's resolver is not used",
	         dc.n_servers);
	return 0;
}

/* ---- the host's resolver: re-read when /etc/resolv.conf changes ---- */

#define NODE_RESOLV_CONF "/etc/resolv.conf"

void node_resolv_reload(struct node *n, const char *why)
{
	if (n->dns) {
		/* Queued lookups wait for the new servers (resume resends them). */
		evdns_base_clear_nameservers_and_suspend(n->dns);
		int r = evdns_base_resolv_conf_parse(
		    n->dns, DNS_OPTION_NAMESERVERS | DNS_OPTION_MISC, NODE_RESOLV_CONF);
		evdns_base_resume(n->dns);
		log_info("%s: %s read again: %d nameserver(s)%s", why, NODE_RESOLV_CONF,
		         evdns_base_count_nameservers(n->dns),
		         r == 0 ? "" : " (the file is missing or unreadable)");
	}
	node_ctl_resolv_changed(n->ctl);
}

static void node_resolv_on_change(void *ctx)
{
	node_resolv_reload(ctx, "resolver configuration changed");
}

void node_resolv_watch_start(struct node *n)
{
	n->resolv_watch =
	    resolv_watch_new(n->base, NODE_RESOLV_CONF, node_resolv_on_change, n);
}

void node_dns_stop(struct node *n)
{
	resolv_watch_free(n->resolv_watch);
	n->resolv_watch = NULL;
	dnsc_free(n->dnsc); /* pending lookups get their callbacks now */
	n->dnsc = NULL;
}

/* Why not evdns_base_free(dns, 1): our own lookups are over by now, but
 * evdns may have its own request in flight, the probe it sends every few
 * seconds to a nameserver it marked down after timeouts (a name that never
 * resolves, as when there is no DNS). With fail_requests = 1 evdns schedules
 * that probe's "shut down" callback on the event loop (an object of about
 * 600 bytes holding the request's handle); the loop never runs again, so
 * both leak, and if it did run, the callback would touch the nameserver
 * freed just before it. With 0, evdns frees its requests and their handles
 * at once and calls nothing; a lookup of ours still pending here would
 * never hear back, which is why the front-ends and the control client are
 * freed, and their cancellations delivered, first (node_run). */
void node_resolver_free(struct evdns_base *dns)
{
	if (dns)
		evdns_base_free(dns, 0);
}
