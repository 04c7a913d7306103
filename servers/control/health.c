/* mesh-control's health listener; see health.h. */
#include "servers/control/health.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util/healthd.h"
#include "core/util/prom.h"
#include "servers/control/server.h"
#include "servers/control/server_policy.h"
#include "servers/control/store.h"

struct ctl_health {
	struct healthd *hd;
	struct ctl_server *srv;
	struct ctl_store *st;
	uint64_t store_errors; /* failed store queries of /readyz and /metrics */
};

/* The store answers: a query of the node counts. */
static int ch_counts(struct ctl_health *h, int64_t *total, int64_t *approved)
{
	int r = ctl_store_node_counts(h->st, total, approved);
	if (r < 0)
		h->store_errors++;
	return r;
}

static bool ch_ready(void *ctx, char *why, size_t cap)
{
	struct ctl_health *h = ctx;
	int64_t total, approved;
	if (ch_counts(h, &total, &approved) >= 0)
		return true;
	snprintf(why, cap, "the store does not answer: %s", ctl_store_errmsg(h->st));
	return false;
}

#define SAMPLE1(p, v, k, val) prom_sample_u64(p, (const char *const[]){k, val}, 1, v)

static void ch_metrics(void *ctx, struct prom *p)
{
	struct ctl_health *h = ctx;
	struct ctl_server_stats s;
	struct ctl_server_policy_stats ps;
	int64_t total = 0, approved = 0;
	bool store_ok = ch_counts(h, &total, &approved) >= 0;
	ctl_server_get_stats(h->srv, &s);
	ctl_server_policy_get_stats(h->srv, &ps);
	prom_gauge(p, "meshcontrol_ready", "1 when /readyz answers 200.", store_ok);
	if (store_ok) {
		prom_family(p, "meshcontrol_nodes", PROM_GAUGE,
		            "Nodes in the store, and those online now.");
		SAMPLE1(p, (uint64_t)total, "state", "registered");
		SAMPLE1(p, (uint64_t)approved, "state", "approved");
		SAMPLE1(p, s.nodes_online, "state", "online");
	}
	prom_counter(p, "meshcontrol_store_errors_total",
	             "Store queries of the health listener that failed.",
	             h->store_errors);
	prom_gauge(p, "meshcontrol_connections", "Node connections open now.",
	           (double)s.conns_active);
	prom_family(p, "meshcontrol_connections_total", PROM_COUNTER,
	            "Node connections accepted, and those refused or closed, by reason.");
	SAMPLE1(p, s.conns_total, "result", "accepted");
	SAMPLE1(p, s.conns_refused_limit, "result", "refused_limit");
	SAMPLE1(p, s.conns_refused_source, "result", "refused_source");
	SAMPLE1(p, s.conns_refused_busy, "result", "refused_busy");
	SAMPLE1(p, s.conns_evicted, "result", "evicted");
	SAMPLE1(p, s.idle_closed, "result", "idle_closed");
	SAMPLE1(p, s.slow_closed, "result", "slow_closed");
	prom_family(p, "meshcontrol_handshakes_total", PROM_COUNTER,
	            "Noise handshakes with nodes, by result.");
	SAMPLE1(p, s.handshakes_ok, "result", "ok");
	SAMPLE1(p, s.handshakes_failed, "result", "failed");
	SAMPLE1(p, s.handshakes_limited, "result", "limited");
	prom_family(p, "meshcontrol_registrations_total", PROM_COUNTER,
	            "Registrations, by result.");
	SAMPLE1(p, s.registrations_ok, "result", "ok");
	SAMPLE1(p, s.registrations_pending, "result", "pending");
	SAMPLE1(p, s.registrations_refused, "result", "refused");
	SAMPLE1(p, s.registrations_retry, "result", "retry");
	SAMPLE1(p, s.registrations_throttled, "result", "throttled");
	prom_family(p, "meshcontrol_maps_sent_total", PROM_COUNTER,
	            "Network maps sent to nodes, by kind.");
	SAMPLE1(p, s.maps_full, "kind", "full");
	SAMPLE1(p, s.maps_delta, "kind", "delta");
	prom_counter(p, "meshcontrol_broadcasts_total",
	             "Map changes pushed to the nodes.", s.broadcasts);
	prom_gauge(p, "meshcontrol_map_version", "The map's version.",
	           (double)s.map_version);
	prom_family(p, "meshcontrol_bad_input_total", PROM_COUNTER,
	            "Frames and messages from nodes refused, by kind.");
	SAMPLE1(p, s.bad_frames, "kind", "frame");
	SAMPLE1(p, s.bad_messages, "kind", "message");
	prom_family(p, "meshcontrol_bytes_total", PROM_COUNTER,
	            "Bytes on node connections, by direction.");
	SAMPLE1(p, s.bytes_in, "dir", "in");
	SAMPLE1(p, s.bytes_out, "dir", "out");
	prom_gauge(p, "meshcontrol_output_queued_bytes",
	           "Bytes waiting in the output queues now.", (double)s.out_queued);
	prom_gauge(p, "meshcontrol_policy_active", "1 when an access policy is in force.",
	           ps.active);
	prom_family(p, "meshcontrol_policy_compiles_total", PROM_COUNTER,
	            "Compiles of the access policy, by result.");
	SAMPLE1(p, ps.compiles, "result", "ok");
	SAMPLE1(p, ps.compile_failures, "result", "failed");
	SAMPLE1(p, ps.compiles_deferred, "result", "deferred");
	prom_counter(p, "meshcontrol_policy_filters_denied_total",
	             "Node filters sent as deny-all (fail closed).", ps.filters_denied);
	prom_gauge(p, "meshcontrol_policy_last_compile_seconds",
	           "How long the last compile took.", ps.last_compile_ms / 1000.0);
}

struct ctl_health *ctl_health_new(struct event_base *base, const char *listen,
                                  struct ctl_server *srv, struct ctl_store *st, char *err,
                                  size_t errlen)
{
	struct ctl_health *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "--health-listen: out of memory");
		return NULL;
	}
	h->srv = srv;
	h->st = st;
	struct healthd_ops ops = {.ready = ch_ready, .metrics = ch_metrics, .ctx = h};
	h->hd = healthd_new(base, listen, "mesh-control", &ops, err, errlen);
	if (!h->hd) {
		free(h);
		return NULL;
	}
	return h;
}

void ctl_health_free(struct ctl_health *h)
{
	if (!h)
		return;
	healthd_free(h->hd);
	free(h);
}
