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

#define ENABLE_STRNATPMPERR 1 /* Debian builds it in; the header hides it */
#include <natpmp.h>

#define PM_PCP_TRIES      3   /* 250, 500, 1000 ms (RFC 6887 section 8.1.1: start at 3 s; a LAN router answers in microseconds) */
#define PM_PCP_FIRST_MS   250
#define PM_PMP_WAIT_MS    1500
#define PM_DELETE_WAIT_MS 300

/* ::ffff:0.0.0.0, "no wish" for an IPv4 external address (RFC 6887
 * section 5: the all-zeros address of the family; :: would ask for IPv6). */
static const uint8_t pm_any4[4];

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
	/* A host with many routes has a long file: read all of it (up to
	 * 1 MiB, about 8000 routes). */
	FILE *f = fopen("/proc/net/route", "re");
	if (!f)
		return -ENOENT;
	size_t cap = 0, n = 0;
	char *buf = NULL;
	for (;;) {
		if (n + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb = ncap <= (1u << 20) ? realloc(buf, ncap) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap = ncap;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	if (!buf)
		return -ENOENT;
	buf[n] = 0;
	int rc = pm_parse_routes(buf, gw);
	free(buf);
	return rc;
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
		/* An error answer may be cut to its header (RFC 6887 section
		 * 7.2); when it carries the MAP data, that must be ours. */
		if (d == PCP_DEC_ERROR_RESULT && (size_t)n >= PCP_MAP_MSG_LEN &&
		    memcmp(buf + PCP_HDR_LEN, req->nonce, PCP_NONCE_LEN) != 0) {
			j->bad_replies++;
			continue;
		}
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
		pcp_v4_mapped(pm_any4, req.external_ip);
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
	j->pcp_refused_port = r == -ECONNREFUSED;
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
	m->epoch_s = resp.epoch_s;
	memcpy(m->int_ip, local, 4);
	m->int_port = c->port;
	memcpy(m->nonce, req.nonce, PCP_NONCE_LEN);
	return 0;
}

#define PMP_TIMEOUT 1 /* pmp_wait: nothing in time */

/* libnatpmp's socket toward the gateway. initnatpmp leaves its socket open
 * when connect or fcntl fails: closed here. 0 or -1. */
static int pmp_open(natpmp_t *n, const struct portmap_config *c)
{
	memset(n, 0, sizeof(*n));
	n->s = -1;
	if (initnatpmp(n, 1, c->gateway.s_addr) == 0)
		return 0;
	if (n->s >= 0)
		close(n->s);
	n->s = -1;
	return -1;
}

/* One NAT-PMP answer of the given type within ms: 0, PMP_TIMEOUT, or one
 * of libnatpmp's negative codes (strnatpmperr) for a refusal. Answers of
 * another type and ones libnatpmp cannot read are counted in *bad and
 * dropped. */
static int pmp_wait(natpmp_t *n, int type, int ms, natpmpresp_t *resp, uint64_t *bad)
{
	int64_t end = now_ms() + ms;
	for (;;) {
		memset(resp, 0, sizeof(*resp));
		int r = readnatpmpresponseorretry(n, resp);
		if (r >= 0 && resp->type == type)
			return 0;
		if (r < 0 && r != NATPMP_TRYAGAIN) {
			/* Junk ends nothing: it is counted and the wait goes on. */
			if (r != NATPMP_ERR_UNSUPPORTEDOPCODE && r != NATPMP_ERR_WRONGPACKETSOURCE &&
			    r != NATPMP_ERR_UNDEFINEDERROR)
				return r;
			if (bad)
				(*bad)++;
		} else if (r >= 0 && bad) {
			(*bad)++; /* an answer of another type */
		}
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
	if (pmp_open(&n, c) != 0) {
		snprintf(j->err, sizeof(j->err), "NAT-PMP: cannot open a socket to %s", j->gateway);
		return -EIO;
	}
	int r = sendpublicaddressrequest(&n) < 0
	            ? NATPMP_ERR_SENDERR
	            : pmp_wait(&n, NATPMP_RESPTYPE_PUBLICADDRESS, PM_PMP_WAIT_MS, &resp,
	                       &j->bad_replies);
	if (r == 0) {
		uint32_t ip = resp.pnu.publicaddress.addr.s_addr;
		memcpy(j->got.ext_ip, &ip, 4);
		uint16_t want = j->prev.proto == PM_PMP ? j->prev.ext_port : c->port;
		r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, c->port, want,
		                              c->lease_s) < 0
		        ? NATPMP_ERR_SENDERR
		        : pmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, PM_PMP_WAIT_MS, &resp,
		                   &j->bad_replies);
	}
	closenatpmp(&n);
	if (r != 0) {
		if (r == PMP_TIMEOUT)
			snprintf(j->err, sizeof(j->err), "NAT-PMP: no answer from %s", j->gateway);
		else
			snprintf(j->err, sizeof(j->err), "NAT-PMP: %s", strnatpmperr(r));
		return -EPERM;
	}
	if (resp.pnu.newportmapping.privateport != c->port ||
	    !resp.pnu.newportmapping.mappedpublicport || !resp.pnu.newportmapping.lifetime) {
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
	m->epoch_s = resp.epoch;
	memcpy(m->int_ip, local, 4);
	m->int_port = c->port;
	return 0;
}

bool pm_addr_public(const uint8_t ip[4])
{
	uint32_t a = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3];
	static const struct {
		uint32_t net, mask;
	} not_public[] = {
	    {0x00000000, 0xff000000}, /* 0/8 "this network" (a disconnected IGD says 0.0.0.0) */
	    {0x0a000000, 0xff000000}, /* RFC 1918 */
	    {0x64400000, 0xffc00000}, /* 100.64/10: carrier-grade NAT (RFC 6598) */
	    {0x7f000000, 0xff000000}, /* loopback */
	    {0xa9fe0000, 0xffff0000}, /* link-local */
	    {0xac100000, 0xfff00000}, /* RFC 1918 */
	    {0xc0a80000, 0xffff0000}, /* RFC 1918 */
	    {0xe0000000, 0xe0000000}, /* multicast and 240/4 */
	};
	for (size_t i = 0; i < sizeof(not_public) / sizeof(not_public[0]); i++)
		if ((a & not_public[i].mask) == not_public[i].net)
			return false;
	return true; /* 198.18.0.0/15 too: a benchmark range, the lab's Internet */
}

static int pm_try(struct pm_job *j, enum portmap_proto p)
{
	struct portmap_config *c = &j->cfg;
	memset(&j->got, 0, sizeof(j->got));
	switch (p) {
	case PM_PCP:
		return c->no_pcp ? -ENOENT : pm_try_pcp(j);
	case PM_PMP:
		/* NAT-PMP shares PCP's port: when nothing listens there, skip it. */
		if (c->no_pmp || (c->server_port && c->server_port != PCP_PORT) ||
		    (j->pcp_refused_port && !c->no_pcp))
			return -ENOENT;
		return pm_try_pmp(j);
	case PM_UPNP:
		return c->no_upnp ? -ENOENT : pm_try_upnp(j);
	default:
		return -ENOENT;
	}
}

/* The mapping we had and the one we got are different ones at the router
 * (another protocol, or another router): delete the old one, best effort. */
static void pm_drop_prev(struct pm_job *j)
{
	const struct pm_mapping *p = &j->prev;
	if (!p->proto)
		return;
	bool same_gw = !j->prev_gateway.s_addr || j->prev_gateway.s_addr == j->cfg.gateway.s_addr;
	if (p->proto == j->got.proto && same_gw)
		return;
	struct portmap_config c = j->cfg;
	if (j->prev_gateway.s_addr)
		c.gateway = j->prev_gateway;
	char err[PM_ERR_MAX];
	pm_job_delete(&c, p, err, sizeof(err));
	j->dropped_prev = true;
}

void pm_job_run(struct pm_job *j)
{
	struct portmap_config *c = &j->cfg;
	memset(&j->got, 0, sizeof(j->got));
	j->err[0] = 0;
	j->rc = -ENOENT;
	j->pcp_refused_port = false;
	if (!c->gateway.s_addr && pm_default_gateway(&c->gateway) != 0)
		snprintf(j->err, sizeof(j->err), "no IPv4 default gateway");
	/* Without a default route SSDP's multicast cannot leave either. */
	if (!c->gateway.s_addr)
		return;
	inet_ntop(AF_INET, &c->gateway, j->gateway, sizeof(j->gateway));
	/* A renewal asks the protocol that made the mapping first. */
	enum portmap_proto order[4] = {PM_PCP, PM_PMP, PM_UPNP, PM_NONE};
	if (j->prev.proto && j->prev.proto != PM_PCP) {
		order[0] = j->prev.proto;
		order[1] = PM_PCP;
		order[2] = j->prev.proto == PM_PMP ? PM_UPNP : PM_PMP;
	}
	for (int i = 0; order[i]; i++) {
		int r = pm_try(j, order[i]);
		if (r == -ENOENT && j->rc != -ENOENT)
			continue; /* skipped or nothing there: keep the more telling error */
		j->rc = r;
		if (r == 0)
			break;
	}
	if (j->rc != 0)
		return;
	if (!pm_addr_public(j->got.ext_ip)) {
		char ip[INET_ADDRSTRLEN], err[PM_ERR_MAX];
		inet_ntop(AF_INET, j->got.ext_ip, ip, sizeof(ip));
		snprintf(j->err, sizeof(j->err),
		         "%s: the router's external address %s is not public (another NAT in "
		         "front of it?); not advertised",
		         portmap_proto_name(j->got.proto), ip);
		pm_job_delete(c, &j->got, err, sizeof(err));
		memset(&j->got, 0, sizeof(j->got));
		j->rc = -EADDRNOTAVAIL;
		return;
	}
	pm_drop_prev(j);
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
		pcp_v4_mapped(pm_any4, req.external_ip);
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
		if (pmp_open(&n, cfg) != 0)
			return -EIO;
		/* RFC 6886 section 3.4: a delete has lifetime 0 and external port 0. */
		int r = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, m->int_port, 0, 0) < 0
		            ? NATPMP_ERR_SENDERR
		            : pmp_wait(&n, NATPMP_RESPTYPE_UDPPORTMAPPING, PM_DELETE_WAIT_MS,
		                       &resp, NULL);
		closenatpmp(&n);
		if (r < 0)
			snprintf(err, errlen, "NAT-PMP: %s", strnatpmperr(r));
		return r < 0 ? -EIO : 0; /* no answer: sent; the lease runs out anyway */
	}
	if (m->proto == PM_UPNP)
		return pm_upnp_delete(m, err, errlen);
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
	pcp_v4_mapped(pm_any4, req.external_ip);
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
	if (pmp_open(&n, c) != 0)
		return false;
	int r = sendpublicaddressrequest(&n) < 0
	            ? NATPMP_ERR_SENDERR
	            : pmp_wait(&n, NATPMP_RESPTYPE_PUBLICADDRESS, PM_PROBE_PMP_MS, &resp, NULL);
	closenatpmp(&n);
	if (r == 0)
		inet_ntop(AF_INET, &resp.pnu.publicaddress.addr, ext, (socklen_t)cap);
	return r == 0;
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
		out->upnp = pm_upnp_probe(&c, out->gateway, out->upnp_ext, sizeof(out->upnp_ext));
}
