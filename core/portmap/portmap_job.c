/* The worker side of the port mapper: every exchange with the router, run
 * on a thread of its own (portmap.c says how it is handed over). Each
 * function here blocks, for a bounded time. */
#include "core/portmap/portmap_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
#define ENABLE_STRNATPMPERR 1 /* Debian builds it in; the header hides it */
#include <natpmp.h>

#define PM_PCP_TRIES      3   /* 250, 500, 1000 ms (RFC 6887 section 8.1.1: start at 3 s; a LAN router answers in microseconds) */
#define PM_PCP_FIRST_MS   250
#define PM_PMP_WAIT_MS    1500
#define PM_DELETE_WAIT_MS 300
#define PM_UPNP_WAIT_MS   1000
#define PM_UPNP_DESC      "meshproxy"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pm_parse_routes(const char *text, struct in_addr *gw)
{
	unsigned long best_metric = ~0ul;
	bool found = false;
	const char *line = strchr(text, '\n'); /* skip the header */
	while (line && *++line) {
		char ifname[64];
		unsigned long dst, via, flags, refcnt, use, metric, mask;
		if (sscanf(line, "%63s %lx %lx %lx %lu %lu %lu %lx", ifname, &dst, &via,
		           &flags, &refcnt, &use, &metric, &mask) == 8 &&
		    dst == 0 && mask == 0 && (flags & 0x3) == 0x3 /* RTF_UP|RTF_GATEWAY */ &&
		    via != 0 && metric < best_metric) {
			best_metric = metric;
			gw->s_addr = (in_addr_t)via; /* the file holds network order in host hex */
			found = true;
		}
		line = strchr(line, '\n');
	}
	return found ? 0 : -ENOENT;
}

int pm_default_gateway(struct in_addr *gw)
{
	char buf[8192];
	FILE *f = fopen("/proc/net/route", "re");
	if (!f)
		return -ENOENT;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return pm_parse_routes(buf, gw);
}

/* A UDP socket connected to the router's PCP / NAT-PMP port; *local gets
 * our address on the way there. */
static int pm_socket(const struct portmap_config *cfg, uint8_t local[4])
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in to = {.sin_family = AF_INET,
	                         .sin_port = htons(cfg->server_port ? cfg->server_port
	                                                            : PCP_PORT),
	                         .sin_addr = cfg->gateway};
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&me, &ml) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	memcpy(local, &me.sin_addr, 4);
	return fd;
}

/* Waits up to ms for one PCP answer matching req on fd. 0 (got filled),
 * -EAGAIN (nothing in time), -EPROTONOSUPPORT (the server speaks NAT-PMP
 * only), -ECONNREFUSED (nothing listens: ICMP port unreachable), -EPERM
 * (a refusal; j->err says which). */
static int pcp_wait(struct pm_job *j, int fd, int ms, const struct pcp_map *req,
                    struct pcp_map_response *resp)
{
	int64_t end = now_ms() + ms;
	for (;;) {
		int left = (int)(end - now_ms());
		if (left <= 0)
			return -EAGAIN;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EAGAIN;
		uint8_t buf[PCP_MAX_MSG + 1];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == ECONNREFUSED)
				return -ECONNREFUSED;
			continue;
		}
		int d = pcp_map_response_decode(buf, (size_t)n, resp);
		if (d == PCP_DEC_VERSION && n >= 4 && buf[0] == 0)
			return -EPROTONOSUPPORT;
		if (d == PCP_DEC_ERROR_RESULT) {
			if (resp->result == PCP_UNSUPP_VERSION)
				return -EPROTONOSUPPORT;
			snprintf(j->err, sizeof(j->err), "PCP: the router refused: %s",
			         pcp_result_name(resp->result));
			return -EPERM;
		}
		if (d != PCP_DEC_OK || memcmp(resp->map.nonce, req->nonce, PCP_NONCE_LEN) ||
		    resp->map.protocol != PCP_PROTO_UDP ||
		    resp->map.internal_port != req->internal_port) {
			j->bad_replies++;
			continue;
		}
		return 0;
	}
}

static int pm_try_pcp(struct pm_job *j)
{
	const struct portmap_config *c = &j->cfg;
	uint8_t local[4], client[16], msg[PCP_MAP_MSG_LEN];
	int fd = pm_socket(c, local);
	if (fd < 0) {
		snprintf(j->err, sizeof(j->err), "PCP: %s", strerror(-fd));
		return fd;
	}
	struct pcp_map req = {.protocol = PCP_PROTO_UDP, .internal_port = c->port};
	if (j->prev.proto == PM_PCP) {
		memcpy(req.nonce, j->prev.nonce, PCP_NONCE_LEN);
		req.external_port = j->prev.ext_port;
		pcp_v4_mapped(j->prev.ext_ip, req.external_ip);
	} else {
		if (getrandom(req.nonce, sizeof(req.nonce), 0) != sizeof(req.nonce)) {
			close(fd);
			return -EIO;
		}
		req.external_port = c->port;
	}
	pcp_v4_mapped(local, client);
	size_t n = pcp_map_request(msg, sizeof(msg), c->lease_s, client, &req);
	struct pcp_map_response resp;
	int r = -EAGAIN;
	for (int t = 0; t < PM_PCP_TRIES && r == -EAGAIN; t++) {
		if (send(fd, msg, n, 0) < 0 && errno != ECONNREFUSED) {
			r = -errno;
			break;
		}
		r = pcp_wait(j, fd, PM_PCP_FIRST_MS << t, &req, &resp);
	}
	close(fd);
	if (r == -EAGAIN)
		snprintf(j->err, sizeof(j->err), "PCP: no answer from %s", j->gateway);
	else if (r == -ECONNREFUSED)
		snprintf(j->err, sizeof(j->err), "PCP: nothing listens at %s:%u", j->gateway,
		         c->server_port ? c->server_port : PCP_PORT);
	else if (r == -EPROTONOSUPPORT)
		snprintf(j->err, sizeof(j->err), "PCP: the router speaks NAT-PMP only");
	if (r != 0)
		return r;
	struct pm_mapping *m = &j->got;
	if (pcp_v4_unmapped(resp.map.external_ip, m->ext_ip) != 0 || !resp.map.external_port ||
	    !resp.lifetime_s) {
		snprintf(j->err, sizeof(j->err), "PCP: the router granted no IPv4 mapping");
		return -EPERM;
	}
	m->proto = PM_PCP;
	m->ext_port = resp.map.external_port;
	m->lease_s = resp.lifetime_s;
	memcpy(m->int_ip, local, 4);
	m->int_port = c->port;
	memcpy(m->nonce, req.nonce, PCP_NONCE_LEN);
	return 0;
}

#define PMP_TIMEOUT 1 /* pmp_wait: nothing in time */
#define PMP_OTHER   2 /* pmp_wait: an answer of another type */

/* One NAT-PMP answer of the given type within ms: 0, PMP_TIMEOUT,
 * PMP_OTHER, or one of libnatpmp's negative codes (strnatpmperr). */
static int pmp_wait(natpmp_t *n, int type, int ms, natpmpresp_t *resp)
{
	int64_t end = now_ms() + ms;
	for (;;) {
		int r = readnatpmpresponseorretry(n, resp);
		if (r >= 0)
			return resp->type == type ? 0 : PMP_OTHER;
		if (r != NATPMP_TRYAGAIN)
			return r;
		int left = (int)(end - now_ms());
		if (left <= 0)
			return PMP_TIMEOUT;
		struct timeval tv;
		int wait = left;
		if (getnatpmprequesttimeout(n, &tv) == 0) {
			int64_t t = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
			if (t < wait)
				wait = t > 0 ? (int)t : 1;
		}
		struct pollfd pfd = {.fd = n->s, .events = POLLIN};
		poll(&pfd, 1, wait);
	}
}

static int pm_try_pmp(struct pm_job *j)
{
	const struct portmap_config *c = &j->cfg;
	natpmp_t n;
	natpmpresp_t resp;
	if (initnatpmp(&n, 1, c->gateway.s_addr) != 0) {
		snprintf(j->err, sizeof(j->err), "NAT-PMP: cannot open a socket");
		return -EIO;
	}
	memset(&resp, 0, sizeof(resp));
	int r = sendpublicaddressrequest(&n) < 0
	            ? NATPMP_ERR_SENDERR
	            : pmp_wait(&n, NATPMP_RESPTYPE_PUBLICADDRESS, PM_PMP_WAIT_MS, &resp);
	if (r == 0) {
		uint32_t ip = resp.pnu.publicaddress.addr.s_addr;
		memcpy(j->got.ext_ip, &ip, 4);
		uint16_t want = j->prev.proto == PM_PMP ? j->prev.ext_port : c->port;
		r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, c->port, want,
		                              c->lease_s) < 0
		        ? NATPMP_ERR_SENDERR
		        : pmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, PM_PMP_WAIT_MS, &resp);
	}
	closenatpmp(&n);
	if (r != 0) {
		if (r == PMP_TIMEOUT)
			snprintf(j->err, sizeof(j->err), "NAT-PMP: no answer from %s", j->gateway);
		else if (r == PMP_OTHER)
			snprintf(j->err, sizeof(j->err), "NAT-PMP: an answer of another kind");
		else
			snprintf(j->err, sizeof(j->err), "NAT-PMP: %s", strnatpmperr(r));
		return -EPERM;
	}
	if (!resp.pnu.newportmapping.mappedpublicport || !resp.pnu.newportmapping.lifetime) {
		snprintf(j->err, sizeof(j->err), "NAT-PMP: the router granted no mapping");
		return -EPERM;
	}
	uint8_t local[4] = {0};
	int fd = pm_socket(c, local);
	if (fd >= 0)
		close(fd);
	struct pm_mapping *m = &j->got;
	m->proto = PM_PMP;
	m->ext_port = resp.pnu.newportmapping.mappedpublicport;
	m->lease_s = resp.pnu.newportmapping.lifetime;
	memcpy(m->int_ip, local, 4);
	m->int_port = c->port;
	return 0;
}

/* SSDP: M-SEARCH for both IGD versions at once, one wait of wait_ms
 * (upnpDiscover tries four device types one after another, four waits). */
static struct UPNPDev *upnp_discover(const struct portmap_config *c)
{
	static const char *const types[] = {
	    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
	    NULL,
	};
	int e = 0;
	return upnpDiscoverDevices(types, (int)(c->upnp_wait_ms ? c->upnp_wait_ms : PM_UPNP_WAIT_MS),
	                           NULL, NULL, UPNP_LOCAL_PORT_ANY, 0, 2, &e, 1);
}

static int upnp_add(const struct pm_mapping *m, uint16_t ext, const char *lan,
                    uint32_t lease)
{
	char e[8], i[8], l[16];
	snprintf(e, sizeof(e), "%u", ext);
	snprintf(i, sizeof(i), "%u", m->int_port);
	snprintf(l, sizeof(l), "%u", lease);
	return UPNP_AddPortMapping(m->upnp_url, m->upnp_service, e, i, lan, PM_UPNP_DESC,
	                           "UDP", NULL, l);
}

static int pm_try_upnp(struct pm_job *j)
{
	const struct portmap_config *c = &j->cfg;
	struct UPNPDev *devs = upnp_discover(c);
	if (!devs) {
		snprintf(j->err + strlen(j->err), sizeof(j->err) - strlen(j->err),
		         "%sUPnP: no IGD answered", j->err[0] ? "; " : "");
		return -ENOENT;
	}
	struct UPNPUrls urls;
	struct IGDdatas data;
	char lan[64] = "";
	int v = UPNP_GetValidIGD(devs, &urls, &data, lan, sizeof(lan));
	freeUPNPDevlist(devs);
	if (v != 1 && v != 2) {
		if (v)
			FreeUPNPUrls(&urls);
		snprintf(j->err + strlen(j->err), sizeof(j->err) - strlen(j->err),
		         "%sUPnP: no Internet gateway device found", j->err[0] ? "; " : "");
		return -ENOENT;
	}
	struct pm_mapping *m = &j->got;
	snprintf(m->upnp_url, sizeof(m->upnp_url), "%s", urls.controlURL ? urls.controlURL : "");
	snprintf(m->upnp_service, sizeof(m->upnp_service), "%s", data.first.servicetype);
	FreeUPNPUrls(&urls);
	m->int_port = c->port;
	if (inet_pton(AF_INET, lan, m->int_ip) != 1) {
		snprintf(j->err, sizeof(j->err), "UPnP: no IPv4 address toward the IGD");
		return -ENOENT;
	}
	char ext[40] = "";
	if (UPNP_GetExternalIPAddress(m->upnp_url, m->upnp_service, ext) != 0 ||
	    inet_pton(AF_INET, ext, m->ext_ip) != 1) {
		snprintf(j->err, sizeof(j->err), "UPnP: the IGD at %s has no external address",
		         lan);
		return -ENOENT;
	}
	/* The port we had, our own, then a few random ones (another host on
	 * the LAN may hold ours). */
	uint16_t tries[5] = {j->prev.proto == PM_UPNP ? j->prev.ext_port : c->port, c->port};
	for (int t = 2; t < 5; t++) {
		uint16_t r;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint16_t)now_ms();
		tries[t] = (uint16_t)(20000 + r % 40000);
	}
	int r = -1;
	for (int t = 0; t < 5 && r != 0; t++) {
		if (t == 1 && tries[1] == tries[0])
			continue;
		r = upnp_add(m, tries[t], lan, c->lease_s);
		if (r == 725) { /* OnlyPermanentLeasesSupported: delete on exit, renew anyway */
			m->upnp_permanent = true;
			r = upnp_add(m, tries[t], lan, 0);
		}
		if (r == 0)
			m->ext_port = tries[t];
	}
	if (r != 0) {
		snprintf(j->err, sizeof(j->err), "UPnP: the IGD refused the mapping: %d %s", r,
		         strupnperror(r) ? strupnperror(r) : "");
		return -EPERM;
	}
	m->proto = PM_UPNP;
	m->lease_s = c->lease_s;
	return 0;
}

void pm_job_run(struct pm_job *j)
{
	struct portmap_config *c = &j->cfg;
	memset(&j->got, 0, sizeof(j->got));
	j->err[0] = 0;
	j->rc = -ENOENT;
	if (!c->gateway.s_addr && pm_default_gateway(&c->gateway) != 0)
		snprintf(j->err, sizeof(j->err), "no IPv4 default gateway");
	if (c->gateway.s_addr)
		inet_ntop(AF_INET, &c->gateway, j->gateway, sizeof(j->gateway));
	if (c->gateway.s_addr && !c->no_pcp) {
		j->rc = pm_try_pcp(j);
		if (j->rc == 0)
			return;
	}
	/* NAT-PMP shares PCP's port: when nothing listens there, skip it. */
	if (c->gateway.s_addr && !c->no_pmp && (!c->server_port || c->server_port == PCP_PORT) &&
	    (c->no_pcp || j->rc != -ECONNREFUSED)) {
		memset(&j->got, 0, sizeof(j->got));
		j->rc = pm_try_pmp(j);
		if (j->rc == 0)
			return;
	}
	/* Without a default route SSDP's multicast cannot leave (and
	 * miniupnpc would print its sendto error on our stderr). */
	if (!c->no_upnp && c->gateway.s_addr) {
		memset(&j->got, 0, sizeof(j->got));
		j->rc = pm_try_upnp(j);
	}
}

int pm_job_delete(const struct portmap_config *cfg, const struct pm_mapping *m, char *err,
                  size_t errlen)
{
	err[0] = 0;
	if (m->proto == PM_PCP) {
		uint8_t local[4], client[16], msg[PCP_MAP_MSG_LEN];
		int fd = pm_socket(cfg, local);
		if (fd < 0)
			return fd;
		struct pcp_map req = {.protocol = PCP_PROTO_UDP, .internal_port = m->int_port};
		memcpy(req.nonce, m->nonce, PCP_NONCE_LEN);
		pcp_v4_mapped(m->int_ip, client);
		size_t n = pcp_map_request(msg, sizeof(msg), 0, client, &req);
		int r = send(fd, msg, n, 0) < 0 ? -errno : 0;
		if (r == 0) {
			struct pm_job j = {.cfg = *cfg};
			struct pcp_map_response resp;
			r = pcp_wait(&j, fd, PM_DELETE_WAIT_MS, &req, &resp);
			if (r == -EAGAIN)
				r = 0; /* sent; the lease runs out anyway */
			if (r)
				snprintf(err, errlen, "%s", j.err[0] ? j.err : strerror(-r));
		}
		close(fd);
		return r;
	}
	if (m->proto == PM_PMP) {
		natpmp_t n;
		natpmpresp_t resp;
		if (initnatpmp(&n, 1, cfg->gateway.s_addr) != 0)
			return -EIO;
		int r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, m->int_port,
		                                  m->ext_port, 0) < 0
		            ? NATPMP_ERR_SENDERR
		            : pmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, PM_DELETE_WAIT_MS,
		                       &resp);
		closenatpmp(&n);
		if (r < 0)
			snprintf(err, errlen, "NAT-PMP: %s", strnatpmperr(r));
		return r < 0 ? -EIO : 0; /* no answer: sent; the lease runs out anyway */
	}
	if (m->proto == PM_UPNP) {
		char e[8];
		snprintf(e, sizeof(e), "%u", m->ext_port);
		int r = UPNP_DeletePortMapping(m->upnp_url, m->upnp_service, e, "UDP", NULL);
		if (r != 0) {
			snprintf(err, errlen, "UPnP: %d %s", r,
			         strupnperror(r) ? strupnperror(r) : "");
			return -EIO;
		}
	}
	return 0;
}

/* ---- probing without mapping (mesh-proxy netcheck) ---- */

#define PM_PROBE_PCP_MS 500
#define PM_PROBE_PMP_MS 750

static bool probe_pcp(const struct portmap_config *c)
{
	uint8_t local[4], client[16], msg[PCP_MAP_MSG_LEN];
	int fd = pm_socket(c, local);
	if (fd < 0)
		return false;
	struct pcp_map req = {.protocol = PCP_PROTO_UDP, .internal_port = c->port};
	if (getrandom(req.nonce, sizeof(req.nonce), 0) != sizeof(req.nonce)) {
		close(fd);
		return false;
	}
	pcp_v4_mapped(local, client);
	size_t n = pcp_map_request(msg, sizeof(msg), 0, client, &req);
	struct pm_job j = {.cfg = *c};
	struct pcp_map_response resp;
	int r = -EAGAIN;
	for (int t = 0; t < 2 && r == -EAGAIN; t++) {
		if (send(fd, msg, n, 0) < 0 && errno != ECONNREFUSED)
			break;
		r = pcp_wait(&j, fd, (PM_PROBE_PCP_MS / 3) << t, &req, &resp);
	}
	close(fd);
	return r == 0 || r == -EPERM; /* a refusal is spoken in PCP too */
}

static bool probe_pmp(const struct portmap_config *c, char *ext, size_t cap)
{
	natpmp_t n;
	natpmpresp_t resp;
	if (initnatpmp(&n, 1, c->gateway.s_addr) != 0)
		return false;
	memset(&resp, 0, sizeof(resp));
	int r = sendpublicaddressrequest(&n) < 0
	            ? NATPMP_ERR_SENDERR
	            : pmp_wait(&n, NATPMP_RESPTYPE_PUBLICADDRESS, PM_PROBE_PMP_MS, &resp);
	closenatpmp(&n);
	if (r == 0)
		inet_ntop(AF_INET, &resp.pnu.publicaddress.addr, ext, (socklen_t)cap);
	return r == 0;
}

static bool probe_upnp(const struct portmap_config *c, char *ext, size_t cap)
{
	struct UPNPDev *devs = upnp_discover(c);
	if (!devs)
		return false;
	struct UPNPUrls urls;
	struct IGDdatas data;
	char lan[64] = "", ip[40] = "";
	int v = UPNP_GetValidIGD(devs, &urls, &data, lan, sizeof(lan));
	freeUPNPDevlist(devs);
	if (v != 1 && v != 2) {
		if (v)
			FreeUPNPUrls(&urls);
		return false;
	}
	struct in_addr a;
	if (UPNP_GetExternalIPAddress(urls.controlURL, data.first.servicetype, ip) == 0 &&
	    inet_pton(AF_INET, ip, &a) == 1)
		snprintf(ext, cap, "%s", ip);
	FreeUPNPUrls(&urls);
	return true;
}

void portmap_probe_blocking(const struct portmap_config *cfg, struct portmap_probe *out)
{
	struct portmap_config c = *cfg;
	memset(out, 0, sizeof(*out));
	if (!c.port)
		c.port = 9; /* any: nothing is mapped */
	if (!c.gateway.s_addr)
		pm_default_gateway(&c.gateway);
	if (c.gateway.s_addr) {
		inet_ntop(AF_INET, &c.gateway, out->gateway, sizeof(out->gateway));
		out->pcp = probe_pcp(&c);
		if (!c.server_port || c.server_port == PCP_PORT)
			out->pmp = probe_pmp(&c, out->pmp_ext, sizeof(out->pmp_ext));
	}
	if (!c.no_upnp && c.gateway.s_addr) /* as in pm_job_run */
		out->upnp = probe_upnp(&c, out->upnp_ext, sizeof(out->upnp_ext));
}
