/* netcheck's report: per relay results, the public addresses, whether the
 * mapping varies by destination, and the home relay with its hysteresis. */
#include "core/netcheck/netcheck_int.h"
#include "core/util/sockaddr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* One family: the public address (from the fastest server) and whether
 * servers at different IP addresses saw us differently. */
static void family_summary(struct netcheck *nc, int f, struct sockaddr_storage *global)
{
	const struct nc_target *best = NULL;
	for (size_t i = 0; i < nc->n; i++) {
		const struct nc_target *t = &nc->rl[i].t[f];
		if (!t->has_mapped)
			continue;
		if (!best || t->best_us < best->best_us)
			best = t;
		for (size_t j = 0; j < i; j++) {
			const struct nc_target *u = &nc->rl[j].t[f];
			if (!u->has_mapped || sockaddr_ip_equal(&t->addr, &u->addr))
				continue;
			nc->rep.has_mapping_varies = true;
			if (!sockaddr_equal(&t->mapped, &u->mapped))
				nc->rep.mapping_varies = true;
		}
	}
	if (best)
		*global = best->mapped;
}

static void relay_result(const struct nc_relay *rl, struct netcheck_relay_result *r)
{
	memset(r, 0, sizeof *r);
	r->id = rl->cfg.id;
	snprintf(r->region, sizeof r->region, "%s", rl->cfg.region);
	snprintf(r->name, sizeof r->name, "%s", rl->cfg.name);
	snprintf(r->host, sizeof r->host, "%s", rl->cfg.host);
	r->port = rl->cfg.port;
	r->stun_port = rl->cfg.stun_port;
	r->resolved = rl->resolved;
	for (int f = NC_FAMILIES - 1; f >= 0; f--) { /* IPv4's mapped wins */
		const struct nc_target *t = &rl->t[f];
		if (!t->n_answered)
			continue;
		if (!r->udp_ok || t->best_us < r->stun_rtt_us)
			r->stun_rtt_us = t->best_us;
		r->udp_ok = true;
		if (t->has_mapped) {
			r->has_mapped = true;
			r->mapped = t->mapped;
		}
	}
	r->tcp_tried = rl->tcp != NC_TCP_NONE;
	r->tcp_ok = rl->tcp == NC_TCP_OK;
	r->tcp_rtt_us = r->tcp_ok ? rl->tcp_rtt_us : 0;
}

void nc_report_build(struct netcheck *nc)
{
	struct netcheck_report *rep = &nc->rep;
	rep->n = nc->n;
	for (size_t i = 0; i < nc->n; i++) {
		relay_result(&nc->rl[i], &rep->r[i]);
		rep->udp |= rep->r[i].udp_ok;
		rep->ipv4 |= nc->rl[i].t[NC_V4].n_answered > 0;
		rep->ipv6 |= nc->rl[i].t[NC_V6].n_answered > 0;
	}
	family_summary(nc, NC_V4, &rep->global_v4);
	family_summary(nc, NC_V6, &rep->global_v6);
	if (!rep->has_mapping_varies)
		rep->mapping_varies = false;
	netcheck_pick_home(rep, nc->cfg.preferred_id);
}

/* A relay's latency: STUN if it answered, else the TCP connect; false if
 * neither. */
static bool relay_latency(const struct netcheck_relay_result *r, uint32_t *us)
{
	if (r->udp_ok)
		*us = r->stun_rtt_us;
	else if (r->tcp_ok)
		*us = r->tcp_rtt_us;
	else
		return false;
	return true;
}

/* The fastest relay of region (index), or -1 if none answered. */
static long region_best(const struct netcheck_report *rep, const char *region)
{
	long best = -1;
	uint32_t best_us = 0, us;
	for (size_t i = 0; i < rep->n; i++)
		if (!strcmp(rep->r[i].region, region) && relay_latency(&rep->r[i], &us) &&
		    (best < 0 || us < best_us)) {
			best = (long)i;
			best_us = us;
		}
	return best;
}

/* Hysteresis as the anchors do it: the current home region stays while
 * it answers, unless the best is faster by more than
 * NETCHECK_SWITCH_MIN_MS and by more than a third (best < 2/3 of it). */
void netcheck_pick_home(struct netcheck_report *rep, uint32_t preferred_id)
{
	rep->home_id = 0;
	rep->home_region[0] = 0;
	rep->home_latency_us = 0;
	long best = -1;
	uint32_t best_us = 0, us;
	for (size_t i = 0; i < rep->n; i++)
		if (relay_latency(&rep->r[i], &us) && (best < 0 || us < best_us)) {
			best = (long)i;
			best_us = us;
		}
	if (best < 0)
		return;
	long pref = -1;
	for (size_t i = 0; preferred_id && i < rep->n; i++)
		if (rep->r[i].id == preferred_id)
			pref = (long)i;
	long home = best;
	if (pref >= 0) {
		long pbest = region_best(rep, rep->r[pref].region);
		uint32_t pref_us;
		if (pbest >= 0 && relay_latency(&rep->r[pbest], &pref_us)) {
			bool clearly =
			    (uint64_t)best_us + NETCHECK_SWITCH_MIN_MS * 1000u <
			        pref_us &&
			    (uint64_t)best_us * 3u < (uint64_t)pref_us * 2u;
			if (!clearly) {
				/* Keep the region, and the relay itself while
				 * it answers: no reconnect for nothing. */
				home = relay_latency(&rep->r[pref], &us) ? pref : pbest;
			}
		}
	}
	rep->home_id = rep->r[home].id;
	snprintf(rep->home_region, sizeof rep->home_region, "%s", rep->r[home].region);
	relay_latency(&rep->r[home], &rep->home_latency_us);
}
