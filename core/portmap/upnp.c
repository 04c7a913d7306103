/* UPnP IGD for the port mapper (portmap_job.c runs it on the worker):
 * SSDP discovery, the gateway's description, SOAP AddPortMapping /
 * DeletePortMapping through miniupnpc, each in a child process. */
#include "core/portmap/portmap_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>

#define PM_UPNP_WAIT_MS   1000
#define PM_UPNP_DESC      "meshproxy"
#define PM_UPNP_DEVS_MAX  2    /* IGD descriptions fetched from the gateway */
#define PM_UPNP_DELETE_MS 1500 /* a UPnP delete at exit */
#define PM_PROBE_UPNP_MS  4000 /* netcheck's UPnP probe, all of it */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- UPnP, in a child process ----
 *
 * miniupnpc reads whatever the LAN sends: its HTTP client waits 5 s per
 * read, not per request, and grows its buffers with no cap, so one host on
 * the LAN that answers SSDP and then trickles bytes would hold a thread for
 * ever, or fill memory. So every UPnP exchange runs in a forked child with
 * a deadline (killed when it passes), a memory limit, and stderr on
 * /dev/null (miniupnpc perror()s socket errors); the result comes back as
 * one fixed-size record on a pipe. And only the default gateway's IGD is
 * used: a description or control URL on any other host is ignored. */

struct upnp_res {
	int rc;
	struct pm_mapping m;
	char ext[INET_ADDRSTRLEN]; /* probe: the IGD's external address */
	char err[PM_ERR_MAX];
};

/* The host of an "http://host[:port]/..." URL is the gateway's address. */
bool pm_url_on_gateway(const char *url, const char *gw)
{
	static const char scheme[] = "http://";
	size_t gl = strlen(gw);
	if (!url || !gl || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
		return false;
	const char *h = url + sizeof(scheme) - 1;
	return strncmp(h, gw, gl) == 0 && (h[gl] == ':' || h[gl] == '/' || h[gl] == 0);
}

/* Runs fn(arg, out) in a child, waiting at most deadline_ms. 0 (out
 * filled by the child), or -ETIMEDOUT / -errno. */
static int upnp_in_child(uint32_t deadline_ms, void (*fn)(const void *, struct upnp_res *),
                         const void *arg, struct upnp_res *out)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	int64_t end = now_ms() + deadline_ms;
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(p[0]);
		close(p[1]);
		return e;
	}
	if (pid == 0) {
		close(p[0]);
		sigset_t all;
		sigemptyset(&all);
		/* The node's handlers (libevent's write to a socket the parent's
		 * loop reads) are not the child's: a signal here must not look
		 * like one to the node. */
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, sig == SIGPIPE ? SIG_IGN : SIG_DFL);
		sigprocmask(SIG_SETMASK, &all, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* the parent thread died: stop */
		alarm(deadline_ms / 1000 + 2);     /* a backstop to the parent's kill */
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (null >= 0)
			dup2(null, 2);
		/* Memory: what we have now (copy-on-write) plus 64 MiB. */
		FILE *f = fopen("/proc/self/statm", "re");
		unsigned long pages = 0;
		if (f) {
			if (fscanf(f, "%lu", &pages) != 1)
				pages = 0;
			fclose(f);
		}
		if (pages) {
			rlim_t lim = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20);
			struct rlimit rl = {lim, lim};
			setrlimit(RLIMIT_AS, &rl);
		}
		struct upnp_res r;
		memset(&r, 0, sizeof(r));
		fn(arg, &r);
		ssize_t w = write(p[1], &r, sizeof(r)); /* < PIPE_BUF: one piece */
		_exit(w == (ssize_t)sizeof(r) ? 0 : 1);
	}
	close(p[1]);
	size_t got = 0;
	int rc = -ETIMEDOUT;
	for (;;) {
		int left = (int)(end - now_ms());
		if (left <= 0)
			break;
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t n = read(p[0], (char *)out + got, sizeof(*out) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -EIO; /* the child died (the memory limit, say) */
			break;
		}
		got += (size_t)n;
		if (got == sizeof(*out)) {
			rc = 0;
			break;
		}
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	close(p[0]);
	if (rc == 0)
		out->err[sizeof(out->err) - 1] = 0;
	return rc;
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

/* Finds the gateway's IGD: its control URL, service and our LAN address
 * into m. Only descriptions on the gateway are fetched (at most
 * PM_UPNP_DEVS_MAX of them), and only a control URL on the gateway is
 * taken. 0, or -ENOENT with err set. */
static int upnp_find_igd(const struct portmap_config *c, const char *gw,
                         struct pm_mapping *m, char *err, size_t errlen)
{
	struct UPNPDev *devs = NULL;
	const char *only = c->upnp_desc_url;
	if (!only) {
		devs = upnp_discover(c);
		if (!devs) {
			snprintf(err, errlen, "UPnP: no IGD answered");
			return -ENOENT;
		}
	}
	int tried = 0, rc = -ENOENT;
	bool elsewhere = false;
	for (struct UPNPDev *d = devs; (only || d) && tried < PM_UPNP_DEVS_MAX;
	     d = d ? d->pNext : NULL) {
		const char *url = only ? only : d->descURL;
		if (!pm_url_on_gateway(url, gw)) {
			elsewhere = true;
			if (only)
				break;
			continue;
		}
		tried++;
		struct UPNPUrls urls;
		struct IGDdatas data;
		char lan[64] = "";
		memset(&urls, 0, sizeof(urls));
		if (UPNP_GetIGDFromUrl(url, &urls, &data, lan, sizeof(lan)) == 1) {
			bool ok = pm_url_on_gateway(urls.controlURL, gw) &&
			          strlen(urls.controlURL) < sizeof(m->upnp_url) &&
			          inet_pton(AF_INET, lan, m->int_ip) == 1;
			if (ok) {
				snprintf(m->upnp_url, sizeof(m->upnp_url), "%s", urls.controlURL);
				snprintf(m->upnp_service, sizeof(m->upnp_service), "%s",
				         data.first.servicetype);
				rc = 0;
			} else {
				elsewhere = true;
			}
		}
		FreeUPNPUrls(&urls);
		if (rc == 0 || only)
			break;
	}
	if (devs)
		freeUPNPDevlist(devs);
	if (rc != 0)
		snprintf(err, errlen, "UPnP: %s",
		         elsewhere && !tried ? "an IGD answered, but not on the gateway (ignored)"
		                             : "no Internet gateway device found on the gateway");
	return rc;
}

static int upnp_add(const struct pm_mapping *m, uint16_t ext, uint32_t lease)
{
	char e[8], i[8], l[16], lan[INET_ADDRSTRLEN];
	snprintf(e, sizeof(e), "%u", ext);
	snprintf(i, sizeof(i), "%u", m->int_port);
	snprintf(l, sizeof(l), "%u", lease);
	inet_ntop(AF_INET, m->int_ip, lan, sizeof(lan));
	return UPNP_AddPortMapping(m->upnp_url, m->upnp_service, e, i, lan, PM_UPNP_DESC,
	                           "UDP", NULL, l);
}

struct upnp_map_arg {
	const struct portmap_config *c;
	const struct pm_mapping *prev;
	const char *gw;
};

/* In the child: find the IGD (or reuse the control URL we renew at), ask
 * its external address, map. */
static void upnp_map_child(const void *arg, struct upnp_res *out)
{
	const struct upnp_map_arg *a = arg;
	const struct portmap_config *c = a->c;
	struct pm_mapping *m = &out->m;
	out->rc = -ENOENT;
	char ext[40] = "";
	bool have = false;
	if (a->prev->proto == PM_UPNP && pm_url_on_gateway(a->prev->upnp_url, a->gw)) {
		memcpy(m->upnp_url, a->prev->upnp_url, sizeof(m->upnp_url));
		memcpy(m->upnp_service, a->prev->upnp_service, sizeof(m->upnp_service));
		memcpy(m->int_ip, a->prev->int_ip, 4);
		have = UPNP_GetExternalIPAddress(m->upnp_url, m->upnp_service, ext) == 0;
	}
	if (!have) {
		if (upnp_find_igd(c, a->gw, m, out->err, sizeof(out->err)) != 0)
			return;
		if (UPNP_GetExternalIPAddress(m->upnp_url, m->upnp_service, ext) != 0) {
			snprintf(out->err, sizeof(out->err),
			         "UPnP: the IGD at %s has no external address", a->gw);
			return;
		}
	}
	if (inet_pton(AF_INET, ext, m->ext_ip) != 1) {
		snprintf(out->err, sizeof(out->err),
		         "UPnP: the IGD at %s has no external IPv4 address", a->gw);
		return;
	}
	m->int_port = c->port;
	/* The port we had, our own, then a few random ones (another host on
	 * the LAN may hold ours). */
	uint16_t tries[5] = {a->prev->proto == PM_UPNP ? a->prev->ext_port : c->port, c->port};
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
		r = upnp_add(m, tries[t], c->lease_s);
		if (r == 725) { /* OnlyPermanentLeasesSupported: deleted on a clean exit */
			m->upnp_permanent = true;
			r = upnp_add(m, tries[t], 0);
		}
		if (r == 0)
			m->ext_port = tries[t];
	}
	if (r != 0) {
		snprintf(out->err, sizeof(out->err), "UPnP: the IGD refused the mapping: %d %s", r,
		         strupnperror(r) ? strupnperror(r) : "");
		out->rc = -EPERM;
		return;
	}
	m->proto = PM_UPNP;
	m->lease_s = c->lease_s;
	out->rc = 0;
}

static uint32_t upnp_deadline(const struct portmap_config *c)
{
	return c->upnp_deadline_ms ? c->upnp_deadline_ms : PM_UPNP_DEADLINE_MS;
}

static void upnp_append_err(struct pm_job *j, const char *e)
{
	size_t l = strlen(j->err);
	snprintf(j->err + l, sizeof(j->err) - l, "%s%s", l ? "; " : "", e);
}

int pm_try_upnp(struct pm_job *j)
{
	struct upnp_map_arg a = {.c = &j->cfg, .prev = &j->prev, .gw = j->gateway};
	struct upnp_res res;
	memset(&res, 0, sizeof(res));
	int r = upnp_in_child(upnp_deadline(&j->cfg), upnp_map_child, &a, &res);
	if (r == -ETIMEDOUT) {
		char e[PM_ERR_MAX];
		snprintf(e, sizeof(e), "UPnP: the IGD at %s did not finish answering within %u ms",
		         j->gateway, upnp_deadline(&j->cfg));
		upnp_append_err(j, e);
		return r;
	}
	if (r != 0) {
		char e[PM_ERR_MAX];
		snprintf(e, sizeof(e), "UPnP: %s", strerror(-r));
		upnp_append_err(j, e);
		return r;
	}
	if (res.rc != 0) {
		if (res.rc == -ENOENT)
			upnp_append_err(j, res.err);
		else
			snprintf(j->err, sizeof(j->err), "%s", res.err);
		return res.rc;
	}
	j->got = res.m;
	return 0;
}

struct upnp_del_arg {
	const struct pm_mapping *m;
};

static void upnp_delete_child(const void *arg, struct upnp_res *out)
{
	const struct pm_mapping *m = ((const struct upnp_del_arg *)arg)->m;
	char e[8];
	snprintf(e, sizeof(e), "%u", m->ext_port);
	int r = UPNP_DeletePortMapping(m->upnp_url, m->upnp_service, e, "UDP", NULL);
	out->rc = r;
	if (r != 0)
		snprintf(out->err, sizeof(out->err), "UPnP: %d %s", r,
		         strupnperror(r) ? strupnperror(r) : "");
}

int pm_upnp_delete(const struct pm_mapping *m, char *err, size_t errlen)
{
	struct upnp_del_arg a = {.m = m};
	struct upnp_res res;
	memset(&res, 0, sizeof(res));
	int r = upnp_in_child(PM_UPNP_DELETE_MS, upnp_delete_child, &a, &res);
	if (r != 0) {
		snprintf(err, errlen, "UPnP: %s",
		         r == -ETIMEDOUT ? "the IGD did not answer in time" : strerror(-r));
		return r;
	}
	if (res.rc != 0) {
		snprintf(err, errlen, "%s", res.err);
		return -EIO;
	}
	return 0;
}

struct upnp_probe_arg {
	const struct portmap_config *c;
	const char *gw;
};

static void upnp_probe_child(const void *arg, struct upnp_res *out)
{
	const struct upnp_probe_arg *a = arg;
	out->rc = upnp_find_igd(a->c, a->gw, &out->m, out->err, sizeof(out->err));
	char ip[40] = "";
	struct in_addr x;
	if (out->rc == 0 &&
	    UPNP_GetExternalIPAddress(out->m.upnp_url, out->m.upnp_service, ip) == 0 &&
	    inet_pton(AF_INET, ip, &x) == 1)
		inet_ntop(AF_INET, &x, out->ext, sizeof(out->ext));
}

bool pm_upnp_probe(const struct portmap_config *c, const char *gw, char *ext, size_t cap)
{
	struct upnp_probe_arg a = {.c = c, .gw = gw};
	struct upnp_res res;
	memset(&res, 0, sizeof(res));
	if (upnp_in_child(PM_PROBE_UPNP_MS, upnp_probe_child, &a, &res) != 0 || res.rc != 0)
		return false;
	res.ext[sizeof(res.ext) - 1] = 0;
	snprintf(ext, cap, "%s", res.ext);
	return true;
}
