/* Internal to node/control.c and node/control_status.c (and their tests). */
#ifndef MESH_NODE_CTL_INT_H
#define MESH_NODE_CTL_INT_H

#include <sys/types.h>

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

/* An interface address (control_netchg.c): family 4 or 6. */
struct nctl_addr {
	uint8_t family;
	uint8_t addr[16];
};
/* Every usable address of the host, IPv4 first: compared whole (the 15
 * announced are a cut of it), bounded. */
#define NCTL_ADDRS_MAX 256
struct nctl_addrs {
	size_t n;
	struct nctl_addr a[NCTL_ADDRS_MAX];
};

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
	struct ctl_endpoints local_eps; /* the last local ones: a change re-probes portmap */
	/* control_netchg.c: every local address at its last good check
	 * (netchg_have), failed listings in a row; announced addresses lost
	 * so far, connections redialled for a lost local address; whether
	 * machine.key was seen in the state directory (so its absence means
	 * it vanished), the directory then, and the misses since. */
	struct nctl_addrs netchg_addrs;
	bool netchg_have;
	uint64_t netchg_unknown;
	uint64_t net_changes, netchg_ctl_redials, netchg_relay_redials;
	bool state_seen;
	dev_t state_dev;
	ino_t state_ino;
	unsigned state_misses;
	int64_t state_miss_ms;
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
 * 15), then 127.0.0.1. 0, or -errno when the addresses cannot be listed
 * (eps then holds 127.0.0.1 alone: not a list to announce). */
int nctl_gather_endpoints(uint16_t port, struct ctl_endpoints *eps);
/* control_netchg.c. Every usable interface address, IPv4 first: 0;
 * -errno: getifaddrs failed; -E2BIG: more than NCTL_ADDRS_MAX (out holds
 * the first ones). */
int nctl_gather_addrs(struct nctl_addrs *out);
bool nctl_addrs_has(const struct nctl_addrs *s, const struct nctl_addr *a);
/* The addresses of was missing from now, into lost; how many. */
size_t nctl_addrs_lost(const struct nctl_addrs *was, const struct nctl_addrs *now,
                       struct nctl_addrs *lost);
/* Every NCTL_ENDPOINTS_MS, before nctl_endpoints: an address of ours is
 * gone -> what used it is redone (the control or relay connection from it
 * redialled; an announced one: direct paths validated again, netcheck,
 * handshakes with the peers in use); the state directory vanished -> the
 * node stops with exit code 1. */
void nctl_netchg_check(struct node_ctl *m);
/* magicsock's on_path (control_kick.c): the peer's TCP connections are
 * kicked from the loop, soon after. */
void nctl_kick_on_path(void *ctx, const uint8_t key[32], bool was_relay, bool via_relay);
void nctl_kick_free(struct node_ctl *m);

#endif
