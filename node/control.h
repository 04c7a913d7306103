/* The node's side of mesh-control (`mesh-proxy up --join TOKEN --state DIR`):
 * state directory, the control client, the network map applied to the
 * WireGuard device (node_peers), MagicDNS, expose, our endpoints, status.
 *
 * node.c owns the data plane (WireGuard device, netstack, front-ends) and
 * starts it through hooks.start_dataplane: at once when the state directory
 * holds a registration (self.json), so the node works while mesh-control is
 * down, else on the first REGISTER_RESP ok. node_ctl_attach then applies
 * the map. The data plane keeps the last map when the control connection is
 * down. */
#ifndef MESH_NODE_CTL_H
#define MESH_NODE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "netstack/ns.h"
#include "node/state.h"
#include "proxy/expose.h"

struct event_base;
struct evdns_base;
struct wg_device;
struct api_conn;
struct config;
struct px_env;
struct node_ctl;
struct fmt_jw;

/* What the command line gave for `up`. */
struct node_ctl_args {
	const char *state_dir;
	const char *join_token;  /* NULL: resume */
	const char *hostname;    /* NULL: gethostname() */
	const char *socks5;      /* ADDR:PORT or NULL */
	const char *http_proxy;  /* ADDR:PORT or NULL */
	const char *expose;      /* NULL: "none" */
	const char *direct;      /* Direct of --socks5/--http-proxy; NULL: all */
	const char *config_path; /* optional extra configuration */
	const char *portmap;     /* "yes" (--portmap), "no" (--no-portmap); NULL: kept */
	const char *birthday; /* "yes" (--birthday), "no" (--no-birthday); NULL: kept */
	/* --forward: local listeners into the mesh, "[udp/][ADDR:]PORT=HOST:PORT"
	 * items separated by commas ("off" removes them); NULL: kept. */
	const char *forwards;
	/* Credentials of the --socks5 / --http-proxy front-ends (SOCKS5
	 * user/password, HTTP Basic); NULL: kept. proxy_open "yes" waives the
	 * credentials a proxy bound to a non-loopback address needs. */
	const char *proxy_user;
	const char *proxy_password;
	const char *proxy_open;
	/* --ephemeral: no state kept (a fresh directory removed at exit),
	 * registered as ephemeral, logged out of mesh-control on SIGTERM. */
	bool ephemeral;
	/* The ephemeral directory when the caller made it (node_state_make_
	 * ephemeral; kept across in-process restarts, removed by the caller);
	 * NULL: node_ctl_prepare makes one and removes it with the prep. */
	const char *eph_dir;
	/* NODE_ARG_* bits: values given for this run only (MESH_* variables):
	 * used, never written to prefs.json, and what prefs.json kept stays. */
	unsigned transient;
	/* sidecar: prefs.json is neither read nor written; exactly these
	 * values apply. */
	bool no_prefs;
};

enum {
	NODE_ARG_SOCKS5 = 1u << 0,
	NODE_ARG_HTTP_PROXY = 1u << 1,
	NODE_ARG_EXPOSE = 1u << 2,
	NODE_ARG_DIRECT = 1u << 3,
	NODE_ARG_CONFIG = 1u << 4,
	NODE_ARG_PORTMAP = 1u << 5,
	NODE_ARG_BIRTHDAY = 1u << 6,
	NODE_ARG_FORWARDS = 1u << 7,
	NODE_ARG_PROXY_USER = 1u << 8,
	NODE_ARG_PROXY_PASSWORD = 1u << 9,
	NODE_ARG_PROXY_OPEN = 1u << 10,
};

struct node_ctl_hooks {
	/* Start WireGuard, netstack and front-ends with cfg (built by
	 * node_ctl_build_config for self); 0 or -1 (logged). */
	int (*start_dataplane)(void *ctx, const struct node_self *self);
	/* Stop the node with this exit code (REFUSED: 1). */
	void (*stop)(void *ctx, int rc);
	void *ctx;
};

/* Everything read before the loop starts: state dir, token, keys, saved
 * registration and map. -1 with a message (usage problems: *usage set). */
struct node_ctl_prep;
struct node_ctl_prep *node_ctl_prepare(const struct node_ctl_args *a, char *err,
                                       size_t errlen, bool *usage);
void node_ctl_prep_free(struct node_ctl_prep *p);
/* Saved registration or NULL. */
const struct node_self *node_ctl_prep_self(const struct node_ctl_prep *p);

/* The node's configuration for join mode: [Interface] from the state
 * (node.key; addresses of self, or a placeholder before registration),
 * --socks5 / --http-proxy front-ends, plus the --config file's peers and
 * sections when given. config_load's contract. */
int node_ctl_build_config(const struct node_ctl_prep *p, const struct node_self *self,
                          struct config *cfg, char *err, size_t errlen);

/* node_ctl_build_config with the prep the mesh holds. */
int node_ctl_config(const struct node_ctl *m, const struct node_self *self,
                    struct config *cfg, char *err, size_t errlen);

/* Whether the node asks its router to map the WireGuard port: yes unless
 * --no-portmap (kept in prefs.json) or PortMapping = no in cfg. */
bool node_ctl_portmap_on(const struct node_ctl_prep *p, const struct config *cfg);

/* Whether the node takes part in birthday probing: yes unless
 * --no-birthday (kept in prefs.json) or BirthdayProbing = no in cfg. */
bool node_ctl_birthday_on(const struct node_ctl_prep *p, const struct config *cfg);

/* Starts the control client. Takes p (freed). */
struct node_ctl *node_ctl_new(struct event_base *base, struct evdns_base *dns,
                              struct node_ctl_prep *p, const struct config *cfg,
                              const struct node_ctl_hooks *hooks, char *err,
                              size_t errlen);
/* Direct for front-ends that do not say (--direct; all when not given). */
enum cfg_direct node_ctl_direct(const struct node_ctl *m);
/* The data plane is up: apply the map to wg, start MagicDNS and expose
 * (never exposing own_ports, the node's own TCP listeners), report our
 * endpoints. */
int node_ctl_attach(struct node_ctl *m, struct wg_device *wg, const struct px_env *env,
                    const uint16_t *own_ports, size_t n_own_ports);
void node_ctl_free(struct node_ctl *m); /* accepts NULL; saves the map */

/* Drops the control connection and reconnects now (SIGHUP). */
void node_ctl_reconnect(struct node_ctl *m);
/* SIGTERM / SIGINT of an ephemeral node: sends LOGOUT (the server removes
 * the node now) and returns 0; hooks.stop(0) follows when the server
 * answers or closes. The caller bounds the wait (NODE_CTL_LOGOUT_WAIT_S).
 * Nonzero, nothing sent: not ephemeral (-EPERM; a persistent node stays
 * registered, offline), no registered session (-ENOTCONN; the server's
 * ephemeral timeout removes it), or sent already (-EALREADY). */
#define NODE_CTL_LOGOUT_WAIT_S 3
int node_ctl_logout(struct node_ctl *m);
/* The host's resolver configuration changed: MagicDNS forwards to its new
 * first nameserver. Accepts NULL. */
void node_ctl_resolv_changed(struct node_ctl *m);

/* Once a second from the node's tick. */
void node_ctl_tick(struct node_ctl *m);

/* The map's access policy (node/acl.h), owned by m; NULL for NULL. */
struct node_acl *node_ctl_acl(const struct node_ctl *m);
/* Whether this node may open port (CTL_FILTER_TCP, _UDP, _ICMP) at a, a
 * map peer's address, under the policy (px_env.reach_ok): true without a
 * policy and for addresses no map peer holds; a refusal is counted. */
bool node_ctl_reach_ok(struct node_ctl *m, int proto, const struct ns_addr *a,
                       uint16_t port);

/* The map's identity of the node holding src (px_env.identify, for the
 * PROXY v2 TLVs): false for an address no map peer holds. */
struct px_identity;
bool node_ctl_identify(struct node_ctl *m, const struct ns_addr *src,
                       struct px_identity *id);

/* Mesh names (px_env.resolve_mesh) and local services (route_ok). */
size_t node_ctl_resolve(const struct node_ctl *m, const char *name, struct ns_addr *out,
                        size_t max);
bool node_ctl_route_local(const struct ns_addr *a);

/* Status (control_status.c) and `mesh-proxy ip`. */
void node_ctl_status_text(const struct node_ctl *m, const struct wg_device *wg,
                          struct api_conn *c);
/* Writes the "mesh" member of status --json: the control runtime's state,
 * then the map's peers one at a time. */
void node_ctl_status_json_write(const struct node_ctl *m, const struct wg_device *wg,
                                struct fmt_jw *w);
/* The map name of the peer with this WireGuard key, or NULL. */
const char *node_ctl_peer_name(const struct node_ctl *m, const uint8_t key[32]);
/* "disco PEER COUNT TIMEOUT_MS INTERVAL_MS FLAGS" (control_ping.c): disco
 * pings to a map peer, one line per probe with its path and latency; m may
 * be NULL (a node from a configuration file: a clear error). */
void node_ctl_disco_ping(struct node_ctl *m, struct api_conn *c, const char *args);
/* "whois [json ]ADDR[:PORT]" (control_whois.c): the node, user and tags
 * holding a mesh address (ours included), and with PORT what the policy
 * allows between it and us. m may be NULL (a clear error). */
void node_ctl_whois(struct node_ctl *m, struct api_conn *c, const char *args);
/* "ip", "ip 4", "ip 6": our mesh addresses, one a line. */
void node_ctl_write_ip(const struct node_ctl *m, struct api_conn *c, int family);

#endif
