/* netcheck's run: resolving the relays, the schedule of probes, when a
 * relay is settled, and the single call of done. */
#include "core/netcheck/netcheck_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t nc_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool target_has_answers(const struct nc_relay *rl)
{
	for (int f = 0; f < NC_FAMILIES; f++)
		if (rl->t[f].n_answered)
			return true;
	return false;
}

/* Sends the probes that are due; returns when the next one is (0: none). */
static uint64_t send_due(struct netcheck *nc, struct nc_relay *rl, uint64_t now)
{
	uint64_t next = 0;
	for (int f = 0; f < NC_FAMILIES; f++) {
		struct nc_target *t = &rl->t[f];
		while (t->active && !t->dead && t->n_sent < NETCHECK_PROBES &&
		       now >= rl->start_us +
		                  (uint64_t)t->n_sent * NETCHECK_PROBE_GAP_MS * 1000u)
			nc_stun_send(nc, rl, t);
		if (t->active && !t->dead && t->n_sent < NETCHECK_PROBES) {
			uint64_t due = rl->start_us + (uint64_t)t->n_sent *
			                                  NETCHECK_PROBE_GAP_MS * 1000u;
			if (!next || due < next)
				next = due;
		}
	}
	return next;
}

/* Whether target t has nothing more to tell us by now; else *due (if
 * nonzero) is when to look again. */
static bool target_done(const struct netcheck *nc, const struct nc_relay *rl,
                        const struct nc_target *t, uint64_t now, uint64_t *due)
{
	*due = 0;
	if (!t->active || t->dead)
		return true;
	if (t->n_answered == 0) { /* UDP presumed blocked after tcp_after */
		*due = rl->start_us + nc->tcp_after_us;
		return now >= *due;
	}
	if (t->n_sent < NETCHECK_PROBES)
		return false;
	if (t->n_answered == t->n_sent)
		return true;
	uint64_t grace = 2u * (uint64_t)t->best_us;
	if (grace < NC_LATE_GRACE_US)
		grace = NC_LATE_GRACE_US;
	*due = t->sent_us[t->n_sent - 1] + grace;
	return now >= *due;
}

static void later(uint64_t *next, uint64_t due)
{
	if (due && (!*next || due < *next))
		*next = due;
}

/* Moves one probing relay on: sends what is due, starts TCP when it is
 * wanted, and settles the relay when nothing more can be learnt. Returns
 * the time it next needs attention (0: none). */
static uint64_t relay_step(struct netcheck *nc, struct nc_relay *rl, uint64_t now)
{
	if (rl->state != NC_PROBING)
		return 0;
	uint64_t next = send_due(nc, rl, now), due;
	bool answered = target_has_answers(rl);
	bool stun_alive = false;
	for (int f = 0; f < NC_FAMILIES; f++)
		if (rl->t[f].active && !rl->t[f].dead)
			stun_alive = true;
	if (rl->tcp == NC_TCP_NONE && !answered) {
		uint64_t at = stun_alive ? rl->start_us + nc->tcp_after_us : now;
		if (now >= at)
			nc_tcp_start(nc, rl);
		else
			later(&next, at);
	}
	bool done = true;
	for (int f = 0; f < NC_FAMILIES; f++)
		if (!target_done(nc, rl, &rl->t[f], now, &due)) {
			done = false;
			later(&next, due);
		}
	if (rl->tcp == NC_TCP_RUNNING || (rl->tcp == NC_TCP_NONE && !answered))
		done = false;
	if (done) {
		rl->state = NC_SETTLED;
		return 0;
	}
	return next;
}

static bool all_settled(const struct netcheck *nc)
{
	for (size_t i = 0; i < nc->n; i++)
		if (nc->rl[i].state != NC_SETTLED)
			return false;
	return true;
}

/* Runs every relay's step and sets the tick for the earliest next need. */
static void step_all(struct netcheck *nc)
{
	if (nc->finished)
		return;
	uint64_t now = nc_now_us(), next = 0;
	for (size_t i = 0; i < nc->n; i++)
		later(&next, relay_step(nc, &nc->rl[i], now));
	if (all_settled(nc)) {
		event_active(nc->finish_ev, EV_TIMEOUT, 0);
		return;
	}
	if (next) {
		uint64_t d = next > now ? next - now : 0;
		struct timeval tv = {.tv_sec = (time_t)(d / 1000000u),
		                     .tv_usec = (suseconds_t)(d % 1000000u)};
		evtimer_add(nc->tick_ev, &tv);
	}
}

void nc_relay_poke(struct netcheck *nc, struct nc_relay *rl)
{
	(void)rl;
	step_all(nc);
}

static void tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	step_all(arg);
}

/* Probing starts once the relay's addresses are known. */
static void relay_begin(struct netcheck *nc, struct nc_relay *rl)
{
	rl->state = NC_PROBING;
	rl->start_us = nc_now_us();
	static const int fam[NC_FAMILIES] = {AF_INET, AF_INET6};
	for (int f = 0; f < NC_FAMILIES; f++) {
		struct nc_target *t = &rl->t[f];
		if (!rl->cfg.stun_port || rl->ip[f].ss_family != fam[f] || !nc->can[f])
			continue;
		t->active = true;
		t->addr = rl->ip[f];
		if (f == NC_V4) {
			((struct sockaddr_in *)&t->addr)->sin_port =
			    htons(rl->cfg.stun_port);
			t->alen = sizeof(struct sockaddr_in);
		} else {
			((struct sockaddr_in6 *)&t->addr)->sin6_port =
			    htons(rl->cfg.stun_port);
			t->alen = sizeof(struct sockaddr_in6);
		}
	}
	if (nc->cfg.tcp_always)
		nc_tcp_start(nc, rl);
}

static void relay_unresolved(struct nc_relay *rl)
{
	rl->resolved = false;
	rl->state = NC_SETTLED;
}

static void dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct nc_dns_ticket *tk = arg;
	struct nc_relay *rl = tk->rl;
	free(tk);
	if (!rl) { /* the run is gone (cancelled) */
		if (ai)
			evutil_freeaddrinfo(ai);
		return;
	}
	rl->ticket = NULL;
	rl->dns_req = NULL;
	for (struct evutil_addrinfo *a = ai; result == 0 && a; a = a->ai_next) {
		int f = a->ai_family == AF_INET    ? NC_V4
		        : a->ai_family == AF_INET6 ? NC_V6
		                                   : -1;
		if (f < 0 || rl->ip[f].ss_family || a->ai_addrlen > sizeof rl->ip[f])
			continue;
		memcpy(&rl->ip[f], a->ai_addr, a->ai_addrlen);
		rl->resolved = true;
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	struct netcheck *nc = rl->nc;
	if (rl->resolved)
		relay_begin(nc, rl);
	else
		relay_unresolved(rl);
	/* Also when called from netcheck_start (a name in the hosts file):
	 * a step never calls done itself. */
	step_all(nc);
}

/* An IP literal needs no resolver; a name goes to evdns (if given). */
static void relay_resolve(struct netcheck *nc, struct nc_relay *rl)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&rl->ip[NC_V4];
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&rl->ip[NC_V6];
	if (inet_pton(AF_INET, rl->cfg.host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		rl->resolved = true;
		relay_begin(nc, rl);
		return;
	}
	if (inet_pton(AF_INET6, rl->cfg.host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		rl->resolved = true;
		relay_begin(nc, rl);
		return;
	}
	if (!nc->cfg.dns) {
		relay_unresolved(rl);
		return;
	}
	struct nc_dns_ticket *tk = calloc(1, sizeof *tk);
	if (!tk) {
		relay_unresolved(rl);
		return;
	}
	tk->rl = rl;
	rl->ticket = tk;
	/* No AI_ADDRCONFIG: it counts no loopback address, so a host (or a
	 * test namespace) with only loopback would resolve nothing; a family
	 * we cannot send on is skipped later anyway. */
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
	                                .ai_socktype = SOCK_STREAM};
	struct evdns_getaddrinfo_request *req =
	    evdns_getaddrinfo(nc->cfg.dns, rl->cfg.host, NULL, &hints, dns_cb, tk);
	/* NULL: answered already (dns_cb ran and cleared rl->ticket). */
	if (rl->ticket)
		rl->dns_req = req;
}

static void relay_cancel_dns(struct nc_relay *rl)
{
	if (!rl->ticket)
		return;
	rl->ticket->rl = NULL; /* dns_cb frees it whenever libevent calls */
	rl->ticket = NULL;
	if (rl->dns_req)
		evdns_getaddrinfo_cancel(rl->dns_req);
	rl->dns_req = NULL;
}

static void finish_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct netcheck *nc = arg;
	if (nc->finished)
		return;
	nc->finished = true;
	evtimer_del(nc->tick_ev);
	evtimer_del(nc->deadline_ev);
	for (size_t i = 0; i < nc->n; i++) {
		relay_cancel_dns(&nc->rl[i]);
		nc_tcp_stop(&nc->rl[i]);
	}
	nc_report_build(nc);
	/* Last: done may free nc. */
	nc->cfg.done(nc->cfg.ctx, &nc->rep);
}

const struct netcheck_report *netcheck_report(const struct netcheck *nc)
{
	return &nc->rep;
}

static int check_config(const struct netcheck_config *cfg, char *err, size_t errlen)
{
	if (!cfg->base || !cfg->done) {
		snprintf(err, errlen, "netcheck: no event base or done callback");
		return -EINVAL;
	}
	if (cfg->n_relays > NETCHECK_RELAYS_MAX) {
		snprintf(err, errlen, "netcheck: %zu relays, at most %d are probed",
		         cfg->n_relays, NETCHECK_RELAYS_MAX);
		return -E2BIG;
	}
	for (size_t i = 0; i < cfg->n_relays; i++) {
		const struct netcheck_relay *r = &cfg->relays[i];
		if (!r->id || !r->port || !memchr(r->host, 0, sizeof r->host) ||
		    !r->host[0] || !memchr(r->region, 0, sizeof r->region) ||
		    !memchr(r->name, 0, sizeof r->name)) {
			snprintf(err, errlen,
			         "netcheck: relay %zu of the map has no id, host or port",
			         i);
			return -EINVAL;
		}
	}
	return 0;
}

struct netcheck *netcheck_start(const struct netcheck_config *cfg, char *err,
                                size_t errlen)
{
	if (check_config(cfg, err, errlen) < 0)
		return NULL;
	struct netcheck *nc = calloc(1, sizeof *nc);
	if (!nc) {
		snprintf(err, errlen, "netcheck: out of memory");
		return NULL;
	}
	nc->cfg = *cfg;
	nc->cfg.relays = NULL;
	if (!nc->cfg.timeout_ms)
		nc->cfg.timeout_ms = NETCHECK_TIMEOUT_MS;
	nc->tcp_after_us = NETCHECK_TCP_AFTER_MS * 1000u;
	if (nc->tcp_after_us > (uint64_t)nc->cfg.timeout_ms * 1000u / 3u)
		nc->tcp_after_us = (uint32_t)((uint64_t)nc->cfg.timeout_ms * 1000u / 3u);
	nc->fd[NC_V4] = nc->fd[NC_V6] = -1;
	nc->n = cfg->n_relays;
	nc->rl = calloc(nc->n ? nc->n : 1, sizeof *nc->rl);
	nc->tick_ev = evtimer_new(cfg->base, tick_cb, nc);
	nc->deadline_ev = evtimer_new(cfg->base, finish_cb, nc);
	nc->finish_ev = event_new(cfg->base, -1, 0, finish_cb, nc);
	if (!nc->rl || !nc->tick_ev || !nc->deadline_ev || !nc->finish_ev) {
		snprintf(err, errlen, "netcheck: out of memory");
		netcheck_free(nc);
		return NULL;
	}
	if (cfg->send) {
		nc->can[NC_V4] = nc->can[NC_V6] = true;
	} else if (nc_sockets_open(nc, err, errlen) < 0) {
		netcheck_free(nc);
		return NULL;
	}
	struct timeval tv = {.tv_sec = nc->cfg.timeout_ms / 1000,
	                     .tv_usec = (suseconds_t)(nc->cfg.timeout_ms % 1000) * 1000};
	evtimer_add(nc->deadline_ev, &tv);
	nc->start_us = nc_now_us();
	nc->rep.n = nc->n;
	for (size_t i = 0; i < nc->n; i++) {
		struct nc_relay *rl = &nc->rl[i];
		rl->nc = nc;
		rl->cfg = cfg->relays[i];
		rl->tcp_fd = -1;
	}
	for (size_t i = 0; i < nc->n; i++)
		relay_resolve(nc, &nc->rl[i]);
	/* The first step (and done, for zero relays or none resolvable) runs
	 * from the loop, never from here. */
	struct timeval now = {0, 0};
	evtimer_add(nc->tick_ev, &now);
	return nc;
}

bool netcheck_input(struct netcheck *nc, const uint8_t *p, size_t len,
                    const struct sockaddr *from)
{
	return nc_stun_answer(nc, p, len, from);
}

void netcheck_free(struct netcheck *nc)
{
	if (!nc)
		return;
	for (size_t i = 0; nc->rl && i < nc->n; i++) {
		relay_cancel_dns(&nc->rl[i]);
		nc_tcp_stop(&nc->rl[i]);
	}
	nc_sockets_close(nc);
	if (nc->tick_ev)
		event_free(nc->tick_ev);
	if (nc->deadline_ev)
		event_free(nc->deadline_ev);
	if (nc->finish_ev)
		event_free(nc->finish_ev);
	free(nc->rl);
	free(nc);
}
