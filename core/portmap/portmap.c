/* The loop side of the port mapper (portmap.h): when to probe and renew,
 * the hand-off to and from the worker thread, the mapping in effect. */
#include "core/portmap/portmap_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/util/clock.h"
#include "core/util/log.h"

struct portmap {
	struct portmap_config cfg;
	struct event *timer; /* the next probe or renewal */
	struct event *done;  /* the worker's pipe */
	int pipe[2];
	pthread_t thread;
	struct pm_job *job; /* non-NULL while a worker runs */
	bool probe_again;   /* the network changed while a worker ran */
	struct pm_mapping cur;
	int64_t granted_ms, expires_ms; /* mono ms of cur */
	uint32_t retry_ms;
	int64_t last_probe_ms;
	char gateway[INET_ADDRSTRLEN];
	char last_error[PM_ERR_MAX];
	struct portmap_status st; /* counters */
};

const char *portmap_proto_name(enum portmap_proto p)
{
	switch (p) {
	case PM_PCP:
		return "pcp";
	case PM_PMP:
		return "nat-pmp";
	case PM_UPNP:
		return "upnp";
	default:
		return "none";
	}
}

static int64_t pm_now(void)
{
	return (int64_t)mono_now_ms();
}

static void pm_schedule(struct portmap *pm, int64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(pm->timer, &tv);
}

static void *pm_worker(void *arg)
{
	struct portmap *pm = arg;
	pm_job_run(pm->job);
	char b = 1;
	ssize_t w;
	do
		w = write(pm->pipe[1], &b, 1);
	while (w < 0 && errno == EINTR);
	return NULL;
}

static void pm_start(struct portmap *pm)
{
	if (pm->job)
		return;
	struct pm_job *j = calloc(1, sizeof(*j));
	if (!j) {
		pm_schedule(pm, PM_RETRY_MIN_MS);
		return;
	}
	j->cfg = pm->cfg;
	j->prev = pm->cur;
	pm->job = j;
	pm->st.probes++;
	pm->last_probe_ms = pm_now();
	pm->probe_again = false;
	if (pthread_create(&pm->thread, NULL, pm_worker, pm) != 0) {
		log_warn("portmap: cannot start a thread; trying again in %d s",
		         PM_RETRY_MIN_MS / 1000);
		free(j);
		pm->job = NULL;
		pm_schedule(pm, PM_RETRY_MIN_MS);
	}
}

static void pm_on_timer(evutil_socket_t fd, short what, void *arg)
{
	pm_start(arg);
}

static void pm_describe_mapping(const struct pm_mapping *m, char *out, size_t cap)
{
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, m->ext_ip, ip, sizeof(ip));
	snprintf(out, cap, "%s %s:%u", portmap_proto_name(m->proto), ip, m->ext_port);
}

/* The worker ended: take its result, decide the next probe. */
static void pm_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct portmap *pm = arg;
	char b[16];
	if (read(fd, b, sizeof(b)) <= 0 || !pm->job)
		return;
	pthread_join(pm->thread, NULL);
	struct pm_job *j = pm->job;
	pm->job = NULL;
	pm->st.bad_replies += j->bad_replies;
	snprintf(pm->gateway, sizeof(pm->gateway), "%s", j->gateway);
	bool changed = false;
	char was[64] = "", now[64] = "";
	if (pm->cur.proto)
		pm_describe_mapping(&pm->cur, was, sizeof(was));
	if (j->rc == 0) {
		pm_describe_mapping(&j->got, now, sizeof(now));
		changed = strcmp(was, now) != 0;
		bool renewal = !changed && pm->cur.proto;
		pm->cur = j->got;
		pm->granted_ms = pm_now();
		pm->expires_ms = pm->granted_ms + (int64_t)pm->cur.lease_s * 1000;
		pm->retry_ms = 0;
		pm->last_error[0] = 0;
		if (renewal) {
			pm->st.renewed++;
			log_debug("portmap: %s renewed, lease %u s", now, pm->cur.lease_s);
		} else {
			pm->st.mapped++;
			log_info("portmap: %s -> %u (via %s, lease %u s)", now, pm->cur.int_port,
			         pm->gateway, pm->cur.lease_s);
		}
		/* Renew at half the lease (RFC 6886 section 3.3). */
		int64_t half = (int64_t)pm->cur.lease_s * 500;
		pm_schedule(pm, half > 1000 ? half : 1000);
	} else {
		pm->st.failures++;
		changed = pm->cur.proto != PM_NONE;
		if (changed)
			log_warn("portmap: %s could not be renewed: %s", was, j->err);
		else if (strcmp(pm->last_error, j->err) != 0)
			log_info("portmap: none (%s)", j->err);
		memset(&pm->cur, 0, sizeof(pm->cur));
		snprintf(pm->last_error, sizeof(pm->last_error), "%s", j->err);
		pm->retry_ms = pm->retry_ms ? pm->retry_ms * 2 : PM_RETRY_MIN_MS;
		if (pm->retry_ms > PM_RETRY_MAX_MS)
			pm->retry_ms = PM_RETRY_MAX_MS;
		pm_schedule(pm, pm->retry_ms);
	}
	free(j);
	if (pm->probe_again)
		portmap_network_changed(pm);
	if (changed && pm->cfg.on_change)
		pm->cfg.on_change(pm->cfg.ctx);
}

struct portmap *portmap_new(const struct portmap_config *cfg, char *err, size_t errlen)
{
	struct portmap *pm = calloc(1, sizeof(*pm));
	if (!pm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pm->cfg = *cfg;
	if (!pm->cfg.lease_s)
		pm->cfg.lease_s = PM_LEASE_S;
	pm->pipe[0] = pm->pipe[1] = -1;
	if (pipe2(pm->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		free(pm);
		return NULL;
	}
	pm->timer = evtimer_new(cfg->base, pm_on_timer, pm);
	pm->done = event_new(cfg->base, pm->pipe[0], EV_READ | EV_PERSIST, pm_on_done, pm);
	if (!pm->timer || !pm->done || event_add(pm->done, NULL) != 0) {
		snprintf(err, errlen, "out of memory");
		portmap_free(pm);
		return NULL;
	}
	pm_schedule(pm, 0);
	return pm;
}

void portmap_free(struct portmap *pm)
{
	if (!pm)
		return;
	if (pm->job) { /* bounded: the worker's exchanges all time out */
		pthread_join(pm->thread, NULL);
		if (pm->job->rc == 0)
			pm->cur = pm->job->got;
		free(pm->job);
	}
	if (pm->cur.proto) {
		char what[64], err[PM_ERR_MAX];
		pm_describe_mapping(&pm->cur, what, sizeof(what));
		struct portmap_config c = pm->cfg;
		if (!c.gateway.s_addr && pm->gateway[0])
			inet_pton(AF_INET, pm->gateway, &c.gateway);
		if (pm_job_delete(&c, &pm->cur, err, sizeof(err)) == 0)
			log_info("portmap: %s deleted", what);
		else
			log_warn("portmap: %s not deleted (%s); the router drops it when "
			         "its lease ends",
			         what, err);
	}
	if (pm->timer)
		event_free(pm->timer);
	if (pm->done)
		event_free(pm->done);
	if (pm->pipe[0] >= 0)
		close(pm->pipe[0]);
	if (pm->pipe[1] >= 0)
		close(pm->pipe[1]);
	free(pm);
}

void portmap_network_changed(struct portmap *pm)
{
	if (!pm)
		return;
	if (pm->job) {
		pm->probe_again = true;
		return;
	}
	int64_t since = pm_now() - pm->last_probe_ms;
	pm->retry_ms = 0;
	pm_schedule(pm, since >= PM_REPROBE_MIN_MS ? 1000 : PM_REPROBE_MIN_MS - since);
}

bool portmap_endpoint(const struct portmap *pm, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (!pm || !pm->cur.proto)
		return false;
	struct sockaddr_in *s = (struct sockaddr_in *)out;
	s->sin_family = AF_INET;
	s->sin_port = htons(pm->cur.ext_port);
	memcpy(&s->sin_addr, pm->cur.ext_ip, 4);
	return true;
}

void portmap_get_status(const struct portmap *pm, struct portmap_status *st)
{
	*st = pm->st;
	st->proto = pm->cur.proto;
	portmap_endpoint(pm, &st->external);
	st->lease_s = pm->cur.proto ? pm->cur.lease_s : 0;
	st->expires_ms = pm->cur.proto ? pm->expires_ms - pm_now() : 0;
	snprintf(st->gateway, sizeof(st->gateway), "%s", pm->gateway);
	st->probing = pm->job != NULL;
	snprintf(st->last_error, sizeof(st->last_error), "%s", pm->last_error);
}

void portmap_describe(const struct portmap_status *st, char *out, size_t cap)
{
	if (!st->proto) {
		snprintf(out, cap, "none (%s)",
		         st->last_error[0] ? st->last_error
		         : st->probing     ? "probing"
		                           : "not probed yet");
		return;
	}
	const struct sockaddr_in *s = (const struct sockaddr_in *)&st->external;
	char ip[INET_ADDRSTRLEN], lease[32];
	inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
	uint32_t l = st->lease_s;
	if (l >= 3600 && l % 3600 == 0)
		snprintf(lease, sizeof(lease), "%uh", l / 3600);
	else if (l >= 60 && l % 60 == 0)
		snprintf(lease, sizeof(lease), "%um", l / 60);
	else
		snprintf(lease, sizeof(lease), "%us", l);
	snprintf(out, cap, "%s %s:%u, lease %s", portmap_proto_name(st->proto), ip,
	         ntohs(s->sin_port), lease);
}

void portmap_probe_describe(const struct portmap_probe *p, char *out, size_t cap)
{
	char router[64] = "no default route";
	if (p->gateway[0])
		snprintf(router, sizeof(router), "router %s", p->gateway);
	if (!p->pcp && !p->pmp && !p->upnp) {
		snprintf(out, cap, "none (%s)", router);
		return;
	}
	snprintf(out, cap, "%s%s%s%s%s (%s)", p->pcp ? "pcp" : "",
	         p->pcp && (p->pmp || p->upnp) ? ", " : "", p->pmp ? "nat-pmp" : "",
	         p->pmp && p->upnp ? ", " : "", p->upnp ? "upnp" : "", router);
}
