/* The loop side of the port mapper (portmap.h): when to probe and renew,
 * the hand-off to and from the worker thread, the mapping in effect. */
#include "core/portmap/portmap_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/util/clock.h"
#include "core/util/log.h"

struct portmap {
	struct portmap_config cfg;
	struct event *timer; /* the next probe or renewal */
	struct event *done;  /* the worker's pipe */
	int pipe[2]; /* a socketpair: the worker sends without SIGPIPE */
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
	int ann_fd;               /* 224.0.0.1:5350: the router's ANNOUNCE */
	struct event *ann;
	int64_t last_announce_ms;
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

/* The worker owns nothing of pm: its job (with its own copy of the
 * loop's socket) is all it touches, so the loop may stop waiting for it at
 * exit and free pm while it still runs. */
static void *pm_worker(void *arg)
{
	struct pm_job *j = arg;
	pm_job_run(j);
	int wfd = j->wfd;
	int running = PM_JOB_RUNNING;
	if (atomic_compare_exchange_strong(&j->state, &running, PM_JOB_DONE)) {
		char b = 1;
		while (send(wfd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR)
			;
	} else {
		free(j); /* the loop gave up on us (PM_JOB_ABANDONED) */
	}
	close(wfd);
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
	inet_pton(AF_INET, pm->gateway, &j->prev_gateway);
	atomic_init(&j->state, PM_JOB_RUNNING);
	j->wfd = fcntl(pm->pipe[1], F_DUPFD_CLOEXEC, 0);
	if (j->wfd < 0) {
		free(j);
		pm_schedule(pm, PM_RETRY_MIN_MS);
		return;
	}
	pm->job = j;
	pm->st.probes++;
	pm->last_probe_ms = pm_now();
	pm->probe_again = false;
	/* The worker takes no signals (they are the loop's), so none
	 * interrupts miniupnpc or libnatpmp halfway. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&pm->thread, NULL, pm_worker, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warn("portmap: cannot start a thread; trying again in %d s",
		         PM_RETRY_MIN_MS / 1000);
		close(j->wfd);
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

/* A later answer with an epoch smaller than the last one's plus 7/8 of
 * the time since (less 2 s) means the router restarted and lost its
 * mappings (RFC 6887 section 8.5, RFC 6886 section 3.6). */
static bool pm_router_restarted(const struct pm_mapping *was, int64_t was_ms,
                                const struct pm_mapping *now)
{
	if (was->proto != now->proto || (was->proto != PM_PCP && was->proto != PM_PMP) ||
	    !was->epoch_s)
		return false;
	int64_t since_s = (pm_now() - was_ms) / 1000;
	return (int64_t)now->epoch_s + 2 < (int64_t)was->epoch_s + since_s * 7 / 8;
}

static void pm_took(struct portmap *pm, struct pm_job *j, const char *was, bool *changed)
{
	char now[64];
	pm_describe_mapping(&j->got, now, sizeof(now));
	*changed = strcmp(was, now) != 0;
	bool restarted = pm->cur.proto && pm_router_restarted(&pm->cur, pm->granted_ms, &j->got);
	bool renewal = !*changed && pm->cur.proto;
	if (j->dropped_prev && was[0])
		log_info("portmap: %s deleted (now %s)", was, now);
	pm->cur = j->got;
	pm->granted_ms = pm_now();
	pm->expires_ms = pm->granted_ms + (int64_t)pm->cur.lease_s * 1000;
	pm->retry_ms = 0;
	pm->last_error[0] = 0;
	if (restarted) {
		/* The router lost its mappings: this answer made ours again. */
		pm->st.mapped++;
		log_info("portmap: the router %s restarted; %s mapped again", pm->gateway, now);
	} else if (renewal) {
		pm->st.renewed++;
		log_debug("portmap: %s renewed, lease %u s", now, pm->cur.lease_s);
	} else {
		pm->st.mapped++;
		log_info("portmap: %s -> %u (via %s, lease %u s)", now, pm->cur.int_port,
		         pm->gateway, pm->cur.lease_s);
		if (pm->cur.upnp_permanent)
			log_warn("portmap: the router %s grants only permanent UPnP mappings: "
			         "this one is deleted on a clean exit, but a crash or power loss "
			         "leaves it open until the router restarts",
			         pm->gateway);
	}
	/* Renew at half the lease (RFC 6886 section 3.3). */
	int64_t half = (int64_t)pm->cur.lease_s * 500;
	pm_schedule(pm, half > PM_RENEW_MIN_MS ? half : PM_RENEW_MIN_MS);
}

/* A probe or renewal failed. A mapping still in its lease is kept (and
 * still advertised): the renewal is tried again, with the same nonce,
 * before the lease ends. */
static void pm_failed(struct portmap *pm, struct pm_job *j, const char *was, bool *changed)
{
	pm->st.failures++;
	pm->retry_ms = pm->retry_ms ? pm->retry_ms * 2 : PM_RETRY_MIN_MS;
	if (pm->retry_ms > PM_RETRY_MAX_MS)
		pm->retry_ms = PM_RETRY_MAX_MS;
	bool same_error = strcmp(pm->last_error, j->err) == 0;
	snprintf(pm->last_error, sizeof(pm->last_error), "%s", j->err);
	int64_t left = pm->cur.proto ? pm->expires_ms - pm_now() : 0;
	if (left > PM_RENEW_MIN_MS) {
		int64_t next = left / 2 > PM_RENEW_MIN_MS ? left / 2 : PM_RENEW_MIN_MS;
		if (next > pm->retry_ms)
			next = pm->retry_ms;
		log_warn("portmap: %s not renewed (%s); kept until its lease ends in %lld s, "
		         "trying again in %lld s",
		         was, j->err, (long long)(left / 1000), (long long)(next / 1000));
		pm_schedule(pm, next);
		*changed = false;
		return;
	}
	*changed = pm->cur.proto != PM_NONE;
	if (*changed)
		log_warn("portmap: %s could not be renewed and its lease ended: %s", was, j->err);
	else if (!same_error || pm->st.failures == 1)
		log_info("portmap: none (%s)", j->err);
	memset(&pm->cur, 0, sizeof(pm->cur));
	pm_schedule(pm, pm->retry_ms);
}

/* The worker ended: take its result, decide the next probe. */
static void pm_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct portmap *pm = arg;
	char b[16];
	if (recv(fd, b, sizeof(b), 0) <= 0 || !pm->job)
		return;
	pthread_join(pm->thread, NULL);
	struct pm_job *j = pm->job;
	pm->job = NULL;
	pm->st.bad_replies += j->bad_replies;
	if (j->gateway[0])
		snprintf(pm->gateway, sizeof(pm->gateway), "%s", j->gateway);
	bool changed = false;
	char was[64] = "";
	if (pm->cur.proto)
		pm_describe_mapping(&pm->cur, was, sizeof(was));
	if (j->rc == 0)
		pm_took(pm, j, was, &changed);
	else
		pm_failed(pm, j, was, &changed);
	free(j);
	if (pm->probe_again)
		portmap_network_changed(pm);
	if (changed && pm->cfg.on_change)
		pm->cfg.on_change(pm->cfg.ctx);
}

/* A router that restarts (and lost its mappings) says so to 224.0.0.1:5350:
 * a PCP ANNOUNCE (RFC 6887 section 14.1.3) or NAT-PMP's public address
 * notice (RFC 6886 section 3.2.1). One from the gateway maps again at once
 * (at most every PM_ANNOUNCE_MIN_MS); anything else there is counted. */
static void pm_on_announce(evutil_socket_t fd, short what, void *arg)
{
	struct portmap *pm = arg;
	for (int i = 0; i < 16; i++) {
		uint8_t buf[PCP_MAX_MSG + 1];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		struct in_addr gw = pm->cfg.gateway;
		if (!gw.s_addr && pm->gateway[0])
			inet_pton(AF_INET, pm->gateway, &gw);
		bool pcp = n >= PCP_HDR_LEN && n <= PCP_MAX_MSG && buf[0] == PCP_VERSION &&
		           buf[1] == (PCP_R_BIT | PCP_OP_ANNOUNCE);
		bool pmp = n >= 12 && buf[0] == 0 && buf[1] == 128;
		if ((!pcp && !pmp) || !gw.s_addr || from.sin_addr.s_addr != gw.s_addr) {
			pm->st.bad_replies++;
			continue;
		}
		int64_t now = pm_now();
		if (pm->last_announce_ms && now - pm->last_announce_ms < PM_ANNOUNCE_MIN_MS)
			continue;
		pm->last_announce_ms = now;
		log_info("portmap: the router %s announced a restart (%s); mapping again",
		         pm->gateway[0] ? pm->gateway : "(gateway)", pcp ? "PCP" : "NAT-PMP");
		if (pm->job) {
			pm->probe_again = true;
		} else {
			pm->retry_ms = 0;
			pm_schedule(pm, 0);
		}
	}
}

/* The ANNOUNCE listener; without it (the port is taken, no multicast)
 * restarts are still seen in the epoch at the next renewal. */
static void pm_listen_announce(struct portmap *pm)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(pm->cfg.announce_port ? pm->cfg.announce_port
	                                                                : PM_ANNOUNCE_PORT)};
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		log_debug("portmap: cannot listen for router announcements on port %u: %s",
		          ntohs(a.sin_port), strerror(errno));
		close(fd);
		return;
	}
	struct ip_mreq mr = {.imr_multiaddr.s_addr = htonl(0xe0000001)}; /* 224.0.0.1 */
	setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr)); /* best effort */
	pm->ann = event_new(pm->cfg.base, fd, EV_READ | EV_PERSIST, pm_on_announce, pm);
	if (!pm->ann || event_add(pm->ann, NULL) != 0) {
		if (pm->ann)
			event_free(pm->ann);
		pm->ann = NULL;
		close(fd);
		return;
	}
	pm->ann_fd = fd;
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
	pm->ann_fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pm->pipe) != 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
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
	pm_listen_announce(pm);
	pm_schedule(pm, 0);
	return pm;
}

void portmap_free(struct portmap *pm)
{
	if (!pm)
		return;
	if (pm->job) {
		/* Exit never waits long on the router: after PM_EXIT_WAIT_MS the
		 * worker is left to itself (it owns its job, and dies with the
		 * process); whatever it maps then lapses with its lease. */
		struct pollfd pfd = {.fd = pm->pipe[0], .events = POLLIN};
		int64_t end = pm_now() + PM_EXIT_WAIT_MS;
		while (poll(&pfd, 1, (int)(end - pm_now() > 0 ? end - pm_now() : 0)) < 0 &&
		       errno == EINTR)
			;
		int running = PM_JOB_RUNNING;
		if (atomic_compare_exchange_strong(&pm->job->state, &running, PM_JOB_ABANDONED)) {
			pthread_detach(pm->thread);
			log_warn("portmap: the router %s has not finished answering after %d ms; not "
			         "waiting for it (a mapping it makes or keeps lapses with its "
			         "lease)",
			         pm->gateway[0] ? pm->gateway : "(unknown)", PM_EXIT_WAIT_MS);
			if (pm->cur.proto) { /* the mapping we had stays at the router */
				char what[64];
				int64_t left = pm->expires_ms - pm_now();
				pm_describe_mapping(&pm->cur, what, sizeof(what));
				log_warn("portmap: %s not deleted (the router is not "
				         "answering); it lapses in %lld s, with its lease "
				         "(%u s granted, %d s asked for)",
				         what, (long long)(left > 0 ? left / 1000 : 0),
				         pm->cur.lease_s, PM_LEASE_S);
			}
			pm->cur.proto = PM_NONE; /* a delete would wait on it too */
		} else {
			pthread_join(pm->thread, NULL);
			if (pm->job->rc == 0) {
				pm->cur = pm->job->got;
				snprintf(pm->gateway, sizeof(pm->gateway), "%s", pm->job->gateway);
			}
			free(pm->job);
		}
		pm->job = NULL;
	}
	if (pm->cur.proto) {
		char what[64], err[PM_ERR_MAX];
		pm_describe_mapping(&pm->cur, what, sizeof(what));
		struct portmap_config c = pm->cfg;
		if (pm->gateway[0]) /* where the mapping is */
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
	if (pm->ann)
		event_free(pm->ann);
	if (pm->ann_fd >= 0)
		close(pm->ann_fd);
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
