/* Internal to core/portmap: the job a worker thread runs (portmap_job.c,
 * UPnP in upnp.c)
 * for the loop side (portmap.c), and the tests. */
#ifndef MESH_PORTMAP_INT_H
#define MESH_PORTMAP_INT_H

#include <stdatomic.h>

#include "core/portmap/pcp.h"
#include "core/portmap/portmap.h"

#define PM_UPNP_URL_MAX     256
#define PM_UPNP_SERVICE_MAX 128

/* One mapping at the router: enough to renew and to delete it. */
struct pm_mapping {
	enum portmap_proto proto;
	uint8_t ext_ip[4];
	uint16_t ext_port;
	uint32_t lease_s;
	uint8_t int_ip[4]; /* our address as the router sees it */
	uint16_t int_port;
	uint32_t epoch_s; /* PCP / NAT-PMP: the router's epoch when granted */
	uint8_t nonce[PCP_NONCE_LEN];            /* PCP */
	char upnp_url[PM_UPNP_URL_MAX];          /* UPnP: the control URL */
	char upnp_service[PM_UPNP_SERVICE_MAX];  /* UPnP: the service type */
	bool upnp_permanent;                     /* the IGD took lease 0 only */
};

/* Owned by the worker thread from start to end; the loop reads it after
 * joining. */
struct pm_job {
	/* in */
	struct portmap_config cfg; /* base and callbacks unused here */
	struct pm_mapping prev;    /* to renew (proto PM_NONE: a fresh probe) */
	struct in_addr prev_gateway; /* where prev is (0: unknown) */
	int wfd;                   /* the loop's socket: one byte when done */
	_Atomic int state;         /* PM_JOB_*: who frees the job */
	/* out */
	int rc; /* 0: got holds the mapping */
	struct pm_mapping got;
	char gateway[INET_ADDRSTRLEN];
	char err[PM_ERR_MAX];
	uint64_t bad_replies;
	bool pcp_refused_port; /* nothing listens at the PCP port */
	bool dropped_prev;     /* prev was deleted (another protocol or router) */
};

/* A job's owner: the loop until it gives up waiting (portmap_free after
 * PM_EXIT_WAIT_MS), then the worker, which frees it when done. */
enum { PM_JOB_RUNNING = 0, PM_JOB_DONE, PM_JOB_ABANDONED };

/* Runs a probe-and-map: PCP, then NAT-PMP, then UPnP (a renewal asks the
 * protocol it renews first). Blocking, bounded: PCP 1.75 s, NAT-PMP 3 s,
 * UPnP cfg.upnp_deadline_ms (a child process killed when it passes). A
 * mapping whose external address is not public is deleted and refused. */
void pm_job_run(struct pm_job *j);
/* Deletes m at the router. Blocking, bounded (about a second for PCP and
 * NAT-PMP, miniupnpc's socket timeouts for UPnP). 0 or -errno. */
int pm_job_delete(const struct portmap_config *cfg, const struct pm_mapping *m,
                  char *err, size_t errlen);
/* The default route's IPv4 gateway from /proc/net/route (the lowest
 * metric). 0 or -ENOENT. */
int pm_default_gateway(struct in_addr *gw);
/* Whether an external address may be advertised: not 0/8, RFC 1918,
 * 100.64/10 (CGNAT), loopback, link-local or multicast/reserved. */
bool pm_addr_public(const uint8_t ip[4]);
/* UPnP (upnp.c), each exchange in a child process with a deadline: map
 * (j->got; errors appended to j->err), delete (bounded to 1.5 s), and
 * netcheck's probe (4 s). */
int pm_try_upnp(struct pm_job *j);
int pm_upnp_delete(const struct pm_mapping *m, char *err, size_t errlen);
bool pm_upnp_probe(const struct portmap_config *c, const char *gw, char *ext, size_t cap);
/* Whether url is "http://<gw>[:port]/...": only the gateway's IGD is used. */
bool pm_url_on_gateway(const char *url, const char *gw);
/* Parses route text as in /proc/net/route (exported for tests). */
int pm_parse_routes(const char *text, struct in_addr *gw);

#endif
