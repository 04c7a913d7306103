/* Internal to core/portmap: the job a worker thread runs (portmap_job.c)
 * for the loop side (portmap.c), and the tests. */
#ifndef MESH_PORTMAP_INT_H
#define MESH_PORTMAP_INT_H

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
	/* out */
	int rc; /* 0: got holds the mapping */
	struct pm_mapping got;
	char gateway[INET_ADDRSTRLEN];
	char err[PM_ERR_MAX];
	uint64_t bad_replies;
};

/* Runs a probe-and-map: PCP, then NAT-PMP, then UPnP. Blocking, bounded. */
void pm_job_run(struct pm_job *j);
/* Deletes m at the router. Blocking, bounded (about a second for PCP and
 * NAT-PMP, miniupnpc's socket timeouts for UPnP). 0 or -errno. */
int pm_job_delete(const struct portmap_config *cfg, const struct pm_mapping *m,
                  char *err, size_t errlen);
/* The default route's IPv4 gateway from /proc/net/route (the lowest
 * metric). 0 or -ENOENT. */
int pm_default_gateway(struct in_addr *gw);
/* Parses route text as in /proc/net/route (exported for tests). */
int pm_parse_routes(const char *text, struct in_addr *gw);

#endif
