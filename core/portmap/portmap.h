/* portmap: asks the router for an inbound mapping of the node's WireGuard
 * UDP port, so that a peer behind any NAT reaches us at the router's
 * public address even when our NAT is symmetric. Three protocols, tried in
 * this order against the default gateway: PCP (RFC 6887, pcp.c), NAT-PMP
 * (RFC 6886, Debian's libnatpmp) and UPnP IGD (SSDP discovery and SOAP,
 * Debian's libminiupnpc).
 *
 * miniupnpc's discovery and SOAP calls block, and so does waiting for a
 * router that does not answer; none of it may block the node's event loop.
 * So every exchange with the router runs on one worker thread at a time
 * (portmap_job.c, upnp.c), handed a private job; when it ends it sends a byte on a
 * socketpair the loop watches, and the loop joins it and takes the result.
 * Nothing else is shared. The job is bounded: PCP 1.75 s, NAT-PMP 3 s, and
 * UPnP in a child process killed at its deadline (miniupnpc's own timeouts
 * are per read, so a device that trickles bytes would hold it for ever).
 *
 * Timing (the lease and its renewal as in Tailscale's portmapper and RFC
 * 6886 section 3.3): a 2 h lease is asked for; the mapping is renewed at
 * half the lease the router granted; a failed probe is repeated after 60 s,
 * backing off to 10 min; a network change (our local addresses moved)
 * probes again within a second, at most every PM_REPROBE_MIN_MS. The
 * mapping is deleted when the port mapper is freed (a clean exit). */
#ifndef MESH_PORTMAP_H
#define MESH_PORTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct event_base;
struct portmap;

#define PM_LEASE_S        7200  /* asked for */
#define PM_RETRY_MIN_MS   60000 /* after a probe found nothing */
#define PM_RETRY_MAX_MS   600000
#define PM_REPROBE_MIN_MS 10000 /* network changes probe at most this often */
#define PM_ERR_MAX        160
#define PM_UPNP_DEADLINE_MS 10000 /* a UPnP job in its child process, all of it */
#define PM_EXIT_WAIT_MS   500   /* portmap_free waits this long for a worker */
#define PM_RENEW_MIN_MS   2000  /* the soonest renewal, whatever the lease */
#define PM_ANNOUNCE_PORT  5350  /* 224.0.0.1: PCP ANNOUNCE, NAT-PMP notices */
#define PM_ANNOUNCE_MIN_MS 2000 /* re-maps on announcements at most this often */

enum portmap_proto {
	PM_NONE = 0,
	PM_PCP,
	PM_PMP,
	PM_UPNP,
};
const char *portmap_proto_name(enum portmap_proto p); /* "pcp", "nat-pmp", "upnp", "none" */

struct portmap_config {
	struct event_base *base;
	uint16_t port; /* the local UDP port to map (the WireGuard port) */
	/* The mapping appeared, moved or went away (read portmap_endpoint). */
	void (*on_change)(void *ctx);
	void *ctx;
	/* For tests: 0 means the defaults. */
	uint32_t lease_s;            /* PM_LEASE_S */
	struct in_addr gateway;      /* the default route's gateway */
	uint16_t server_port;        /* PCP_PORT; NAT-PMP is tried on 5351 only */
	uint32_t upnp_wait_ms;       /* SSDP discovery: 1000 */
	uint32_t upnp_deadline_ms;   /* all of a UPnP map: PM_UPNP_DEADLINE_MS */
	const char *upnp_desc_url;   /* skip SSDP, fetch this description */
	uint16_t announce_port;      /* the router's restart notices: PM_ANNOUNCE_PORT */
	bool no_pcp, no_pmp, no_upnp; /* skip a protocol */
};

struct portmap *portmap_new(const struct portmap_config *cfg, char *err, size_t errlen);
/* Deletes the mapping at the router, then frees. Blocking, but bounded
 * (a node's exit must not add seconds after its logout wait): a running
 * worker is waited for at most PM_EXIT_WAIT_MS and then left to itself,
 * and then no delete is tried (the router is not answering: a mapping
 * made before stays until its lease ends, at most PM_LEASE_S = 2 h after
 * its last renewal, and the log says when); a delete takes at most 1.5 s, and only
 * when a mapping exists. Accepts NULL. */
void portmap_free(struct portmap *pm);

/* Our addresses changed: probe again soon (rate-limited). */
void portmap_network_changed(struct portmap *pm);

/* The mapped public address and port (IPv4), or false when there is none. */
bool portmap_endpoint(const struct portmap *pm, struct sockaddr_storage *out);

struct portmap_status {
	enum portmap_proto proto; /* PM_NONE: no mapping now */
	struct sockaddr_storage external;
	uint32_t lease_s;    /* granted */
	int64_t expires_ms;  /* from now; 0 when none */
	char gateway[INET_ADDRSTRLEN]; /* "" when not known */
	bool probing;        /* a worker is talking to the router now */
	uint64_t probes, mapped, renewed, failures, deleted;
	uint64_t bad_replies; /* datagrams from the router that were not our answer */
	char last_error[PM_ERR_MAX]; /* why the last probe found no mapping */
};
void portmap_get_status(const struct portmap *pm, struct portmap_status *st);

/* "upnp 198.18.10.8:41641, lease 2h" or "none (why)" into out. */
void portmap_describe(const struct portmap_status *st, char *out, size_t cap);

/* Which protocols the router speaks, found without mapping anything: PCP
 * (a MAP delete for a nonce never used: any PCP answer counts), NAT-PMP
 * (the public address request), UPnP (SSDP discovery of an IGD). For
 * `mesh-proxy netcheck`. Blocking, about 5.5 s at most (UPnP in a child
 * killed after 4 s): call it on a thread
 * of its own, never on a loop. cfg: gateway, server_port and
 * upnp_wait_ms as in portmap_config (0: the defaults); the rest unused. */
struct portmap_probe {
	bool pcp, pmp, upnp;
	char gateway[INET_ADDRSTRLEN]; /* "" when there is no default route */
	char upnp_ext[INET_ADDRSTRLEN]; /* the IGD's external address, if it says */
	char pmp_ext[INET_ADDRSTRLEN];  /* NAT-PMP's public address, if any */
};
void portmap_probe_blocking(const struct portmap_config *cfg, struct portmap_probe *out);
/* "pcp, nat-pmp, upnp (router 198.19.8.1)" or "none (router ...)". */
void portmap_probe_describe(const struct portmap_probe *p, char *out, size_t cap);

#endif
