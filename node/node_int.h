/* Internal to node/: the running node, shared by its lifecycle (node.c)
 * and the handlers of its local API (api_handlers.c). */
#ifndef MESH_NODE_INT_H
#define MESH_NODE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "proxy/proxy.h"

struct api_conn;
struct evdns_base;
struct node_acl;
struct status_view;

struct node {
	struct config cfg;
	struct event_base *base;
	struct evdns_base *dns;
	struct wg_device *wg;
	struct api_server *api;
	struct event *ev_int, *ev_term, *ev_hup, *ev_tick;
	int64_t *seen_handshake; /* per peer, to log new handshakes */
	struct px_env env;
	/* The front-ends, one array of each kind sized to the configuration
	 * (config_load caps the total: CFG_MAX_FRONTENDS). */
	struct px_socks **socks;
	size_t n_socks;
	struct px_http **http;
	size_t n_http;
	struct px_tunnel **tunnels; /* TCP client tunnels, then server tunnels */
	size_t n_tunnels;
	struct px_udp_tunnel **udp_tunnels;
	size_t n_udp_tunnels;
	struct px_nc *nc;
	time_t started;
	size_t n_seen;        /* entries in seen_handshake */
	struct node_ctl *ctl; /* mesh-proxy up --state: the control runtime */
	bool dataplane;       /* wg, netstack and front-ends are up */
	int rc;               /* exit code asked for by the control side */
	char api_path[256];
	struct dnsc *dnsc; /* [Interface] DNS (node_dns.c); NULL: evdns */
	struct node_stdio *stdio; /* [STDIOTunnel] (node_stdio.c) */
	struct resolv_watch *resolv_watch; /* /etc/resolv.conf (node_dns.c) */
	struct checkalive *checkalive;     /* [Interface] CheckAlive */
	struct node_acl *acl; /* the map's access policy (node_ctl's); NULL: none */
	struct node_health *health; /* readiness, --health-listen (health.c) */
};

/* Fills v with the node's current view for status output. */
void node_status_view(const struct node *n, struct status_view *v);

/* [Interface] DNS with a configuration file alone: checks that the
 * servers are routed through the mesh and points n->env's lookups at them
 * (call before the front-ends start). 0 or -1 (logged). */
int node_dns_start(struct node *n);
/* Ends the lookups still pending (after the front-ends are freed) and the
 * resolv.conf watch. */
void node_dns_stop(struct node *n);
/* Frees the host's resolver at shutdown, after every lookup of ours has
 * been cancelled and its callback has run (NULL is fine). */
void node_resolver_free(struct evdns_base *dns);
/* Re-reads /etc/resolv.conf for evdns and MagicDNS's forwarder (why: for
 * the log), and watches it for changes. */
void node_resolv_reload(struct node *n, const char *why);
void node_resolv_watch_start(struct node *n);

/* [STDIOTunnel]: connects stdin/stdout to its Target through n->nc (after
 * the front-ends start). 0 or -1 (logged). */
int node_stdio_start(struct node *n);
void node_stdio_free(struct node *n); /* flushes stdout */

/* The local API's request handler (api_handler_fn; ctx is the node). */
void node_api_handle(void *ctx, struct api_conn *conn, const char *line);

#endif
