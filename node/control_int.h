/* Internal to node/control.c and node/control_status.c (and their tests). */
#ifndef MESH_NODE_CTL_INT_H
#define MESH_NODE_CTL_INT_H

#include "core/control/client.h"
#include "core/util/clock.h"
#include "node/control.h"
#include "node/peers.h"

struct magicdns;
struct magicsock;
struct portmap;
struct px_expose;
struct nctl_save_job;
struct nctl_kick;
struct dping_job;
struct node_acl;

struct node_ctl_prep {
	struct node_ctl_args a;
	struct node_keys keys;
	struct node_server server;
	char auth_key[CTL_TOKEN_AUTH_MAX + 1]; /* from --join; wiped once used */
	char hostname[CTL_DNSNAME_MAX];
	struct expose_spec expose;
	bool have_self;
	struct node_self self;
	bool have_map;
	struct ctl_msg map;      /* netmap.json, MAP_FULL */
	struct node_prefs prefs; /* the settings in effect (a.* point into it) */
	bool prefs_changed;      /* to be saved in prefs.json */
	/* --ephemeral: the state directory made for this run (a.state_dir
	 * points here), removed when the prep is freed; "" otherwise */
	char eph_dir[NODE_STATE_PATH_MAX];
	/* --proxy-open is in effect from prefs.json, not given this run */
	bool open_kept;
	char cfg_abs[1024]; /* a --config path made absolute for this run only */
};

struct node_ctl {
	struct event_base *base;
	struct evdns_base *dns;
	struct node_ctl_prep *p;
	struct node_ctl_hooks hooks;
	struct ctl_client *client;
	struct node_peers np;
	struct wg_device *wg;
	struct magicdns *magicdns;
	struct magicsock *ms; /* paths: relays, home relay, disco (after attach) */
	struct portmap *pm;   /* the router's mapping of our port (after attach) */
	bool portmap_off;     /* --no-portmap, or PortMapping = no */
	bool birthday_off;    /* --no-birthday, or BirthdayProbing = no */
	struct px_expose *expose;
	bool dataplane; /* node_ctl_attach ran */
	bool have_self;
	struct node_self self;        /* the addresses the data plane runs with */
	enum ctl_client_state logged; /* last state logged at info */
	bool np_stale; /* a map update failed: the next one applies the whole map */
	bool map_dirty;
	bool policy_dirty; /* ... with a new policy: saved at the next tick */
	int64_t last_save_ms, last_ep_check_ms;
	struct nctl_save_job *save; /* netmap.json being written, or NULL */
	uint64_t saves;             /* netmap.json writes (done or failed) */
	struct ctl_endpoints eps;
	struct ctl_endpoints
	    local_eps; /* the last local ones: a change re-probes portmap */
	/* control_netchg.c: the local addresses at its last check (its own:
	 * nctl_endpoints also runs from magicsock's and portmap's callbacks),
	 * losses of one so far, and whether machine.key was seen in the state
	 * directory (so its absence means it vanished). */
	struct ctl_endpoints netchg_eps;
	uint64_t net_changes;
	bool state_seen;
	/* Path changes magicsock reported, and what the netstack did about
	 * them (control_kick.c): connections retransmitting, ACKs sent. */
	struct nctl_kick *kick;
	uint64_t path_changes, kick_rexmit, kick_acked;
	struct dping_job *dpings; /* `ping --disco` jobs running (control_ping.c) */
	/* The access policy of the map (node/acl.h): the inbound filter
	 * node.c applies to every packet, and reach for the front-ends. */
	struct node_acl *acl;
};

/* Ends every `ping --disco` job: each client gets its summary and a line
 * saying the node stopped. In node_ctl_free, after magicsock_free. */
void nctl_dping_stop_all(struct node_ctl *m);

static inline int64_t nctl_now_ms(void)
{
	return (int64_t)mono_now_ms();
}
/* The wg port on every non-loopback interface address (IPv4 first, up to
 * 15), then 127.0.0.1. */
void nctl_gather_endpoints(uint16_t port, struct ctl_endpoints *eps);
/* Every NCTL_ENDPOINTS_MS, before nctl_endpoints: our addresses changed ->
 * redial mesh-control and the relays, netcheck, handshakes; the state
 * directory's keys vanished -> the node stops with exit code 1
 * (control_netchg.c). */
void nctl_netchg_check(struct node_ctl *m);
/* magicsock's on_path (control_kick.c): the peer's TCP connections are
 * kicked from the loop, soon after. */
void nctl_kick_on_path(void *ctx, const uint8_t key[32], bool was_relay, bool via_relay);
void nctl_kick_free(struct node_ctl *m);

#endif
