/* mesh-relay's health listener; see health.h. */
#include "servers/relay/health.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util/healthd.h"
#include "core/util/prom.h"
#include "servers/relay/relay.h"

struct rly_health {
	struct healthd *hd;
	const struct rly_server *srv;
	const char *ctl_state;
};

static bool rh_ready(void *ctx, char *why, size_t cap)
{
	struct rly_health *h = ctx;
	struct rly_stats s;
	rly_server_get_stats(h->srv, &s);
	if (s.ready)
		return true;
	snprintf(why, cap, "no admitted key list from mesh-control yet (control %s)",
	         h->ctl_state);
	return false;
}

static void rh_metrics(void *ctx, struct prom *p)
{
	struct rly_health *h = ctx;
	struct rly_stats s;
	rly_server_get_stats(h->srv, &s);
	prom_gauge(p, "meshrelay_ready", "1 when /readyz answers 200.", s.ready);
	prom_gauge(p, "meshrelay_clients", "Client connections now (nodes and relays).",
	           (double)s.clients);
	prom_counter(p, "meshrelay_clients_total", "Client connections admitted in all.",
	             s.clients_total);
	prom_gauge(p, "meshrelay_admitted_keys", "Node keys mesh-control admits.",
	           (double)s.admitted_keys);
	prom_gauge(p, "meshrelay_mesh_links_up", "Links to sibling relays that are up.",
	           (double)s.mesh_links_up);
	prom_gauge(p, "meshrelay_mesh_peers", "Sibling relays connected here.",
	           (double)s.mesh_in);
	prom_gauge(p, "meshrelay_mesh_routes", "Node keys reached through a sibling.",
	           (double)s.mesh_routes);
	prom_gauge(p, "meshrelay_queued_bytes", "Bytes in every packet queue now.",
	           (double)s.queued_bytes);
	prom_family(p, "meshrelay_packets_total", PROM_COUNTER,
	            "Packets relayed to local clients, forwarded to and received from "
	            "sibling relays.");
	PROM_SAMPLE1(p, s.packets_relayed, "kind", "relayed");
	PROM_SAMPLE1(p, s.packets_forwarded, "kind", "to_mesh");
	PROM_SAMPLE1(p, s.packets_from_mesh, "kind", "from_mesh");
	prom_family(p, "meshrelay_bytes_total", PROM_COUNTER,
	            "The bytes of those packets.");
	PROM_SAMPLE1(p, s.bytes_relayed, "kind", "relayed");
	PROM_SAMPLE1(p, s.bytes_forwarded, "kind", "to_mesh");
	PROM_SAMPLE1(p, s.bytes_from_mesh, "kind", "from_mesh");
	prom_family(p, "meshrelay_drops_total", PROM_COUNTER,
	            "Packets dropped, by reason.");
	PROM_SAMPLE1(p, s.drop_unknown_dest, "reason", "unknown_dest");
	PROM_SAMPLE1(p, s.drop_queue_full, "reason", "queue_full");
	PROM_SAMPLE1(p, s.drop_write_timeout, "reason", "write_timeout");
	PROM_SAMPLE1(p, s.drop_bad_frame, "reason", "bad_frame");
	PROM_SAMPLE1(p, s.drop_oversize, "reason", "oversize");
	PROM_SAMPLE1(p, s.drop_nomem, "reason", "nomem");
	PROM_SAMPLE1(p, s.drop_bad_seal, "reason", "bad_seal");
	PROM_SAMPLE1(p, s.drop_budget, "reason", "budget");
	prom_family(p, "meshrelay_refused_total", PROM_COUNTER,
	            "Connections refused or cut, by reason.");
	PROM_SAMPLE1(p, s.refused_not_admitted, "reason", "not_admitted");
	PROM_SAMPLE1(p, s.refused_bad_auth, "reason", "bad_auth");
	PROM_SAMPLE1(p, s.refused_full, "reason", "full");
	PROM_SAMPLE1(p, s.refused_version, "reason", "version");
	PROM_SAMPLE1(p, s.refused_not_ready, "reason", "not_ready");
	PROM_SAMPLE1(p, s.refused_http, "reason", "http");
	PROM_SAMPLE1(p, s.handshake_timeouts, "reason", "handshake_timeout");
	PROM_SAMPLE1(p, s.removed_cut, "reason", "removed");
	PROM_SAMPLE1(p, s.refused_pending, "reason", "pending");
	prom_family(p, "meshrelay_clients_closed_total", PROM_COUNTER,
	            "Clients closed: dead (silent), stale, or replaced by a newer one.");
	PROM_SAMPLE1(p, s.clients_dead, "reason", "dead");
	PROM_SAMPLE1(p, s.clients_stale, "reason", "stale");
	PROM_SAMPLE1(p, s.dup_clients, "reason", "duplicate");
	prom_counter(p, "meshrelay_accept_errors_total", "accept() failures.",
	             s.accept_errors);
	prom_family(p, "meshrelay_stun_total", PROM_COUNTER,
	            "STUN requests, by outcome.");
	PROM_SAMPLE1(p, s.stun_requests, "result", "request");
	PROM_SAMPLE1(p, s.stun_responses, "result", "answered");
	PROM_SAMPLE1(p, s.stun_bad, "result", "bad");
	PROM_SAMPLE1(p, s.stun_limited, "result", "limited");
}

struct rly_health *rly_health_new(struct event_base *base, const char *listen,
                                  const struct rly_server *srv, const char *ctl_state,
                                  char *err, size_t errlen)
{
	struct rly_health *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "--health-listen: out of memory");
		return NULL;
	}
	h->srv = srv;
	h->ctl_state = ctl_state;
	struct healthd_ops ops = {.ready = rh_ready, .metrics = rh_metrics, .ctx = h};
	h->hd = healthd_new(base, listen, "mesh-relay", &ops, err, errlen);
	if (!h->hd) {
		free(h);
		return NULL;
	}
	return h;
}

void rly_health_free(struct rly_health *h)
{
	if (!h)
		return;
	healthd_free(h->hd);
	free(h);
}
