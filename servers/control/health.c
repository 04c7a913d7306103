/* mesh-control's health listener; see health.h. Nothing here scans the
 * store: the metrics come from what the server keeps in memory, and
 * readiness asks the store one trivial query at most once a second. */
#include "servers/control/health.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util/clock.h"
#include "core/util/healthd.h"
#include "core/util/log.h"
#include "core/util/prom.h"
#include "servers/control/server.h"
#include "servers/control/server_policy.h"
#include "servers/control/store.h"

/* The store is asked whether it answers at most this often; probes and
 * scrapes in between get the last answer. */
#define CH_PROBE_MS 1000
/* A failed write of the node batch keeps /readyz at 503 until a later
 * write succeeds, or this long if none is tried: failures that keep
 * happening keep it at 503, one that a retry fixed does not. */
#define CH_WRITE_FAIL_S 30.0

struct ctl_health {
	struct healthd *hd;
	struct ctl_server *srv;
	struct ctl_store *st;
	uint64_t probe_ms; /* when the store was last asked (0: never) */
	bool probe_ok;
	uint64_t probe_failures;
};

/* A one-row read (the map version): whether the store answers at all. */
static bool ch_store_answers(struct ctl_health *h)
{
	uint64_t now = mono_now_ms();
	if (h->probe_ms && now - h->probe_ms < CH_PROBE_MS)
		return h->probe_ok;
	int64_t v;
	bool ok = ctl_store_map_version(h->st, &v) >= 0;
	if (!ok) {
		h->probe_failures++;
		/* the text is for the log, never for the HTTP answer */
		log_warn("mesh-control: health: the store does not answer: %s",
		         ctl_store_errmsg(h->st));
	}
	h->probe_ok = ok;
	h->probe_ms = now ? now : 1;
	return ok;
}

static bool ch_is_ready(struct ctl_health *h, const struct ctl_server_stats *s)
{
	if (!ch_store_answers(h))
		return false;
	/* a full or read-only disk: reads work, writes do not */
	return !(s->store_write_fail_age_s >= 0 &&
	         s->store_write_fail_age_s < CH_WRITE_FAIL_S);
}

static bool ch_ready(void *ctx, char *why, size_t cap)
{
	struct ctl_health *h = ctx;
	struct ctl_server_stats s;
	ctl_server_get_stats(h->srv, &s);
	if (ch_is_ready(h, &s))
		return true;
	snprintf(why, cap, "store unavailable");
	return false;
}

static void ch_metrics_nodes(struct prom *p, const struct ctl_server_stats *s)
{
	uint64_t pending =
	    s->nodes_known > s->nodes_approved ? s->nodes_known - s->nodes_approved : 0;
	prom_gauge(p, "meshcontrol_nodes", "Approved nodes (in the network map).",
	           (double)s->nodes_approved);
	prom_gauge(p, "meshcontrol_nodes_pending",
	           "Nodes waiting for an admin's approval.", (double)pending);
	prom_gauge(p, "meshcontrol_nodes_online",
	           "Approved nodes with a connection to this server now.",
	           (double)s->nodes_online);
	prom_counter(p, "meshcontrol_logouts_total",
	             "Nodes removed by their own LOGOUT (an ephemeral node stopping).",
	             s->logouts);
	prom_counter(p, "meshcontrol_names_reclaimed_total",
	             "Names taken back from a gone ephemeral node by its successor.",
	             s->names_reclaimed);
}

static void ch_metrics_conns(struct prom *p, const struct ctl_server_stats *s)
{
	prom_gauge(p, "meshcontrol_connections", "Node connections open now.",
	           (double)s->conns_active);
	prom_counter(p, "meshcontrol_connections_accepted_total",
	             "Node connections accepted.", s->conns_total);
	prom_family(p, "meshcontrol_connections_refused_total", PROM_COUNTER,
	            "Node connections refused at once, by reason.");
	PROM_SAMPLE1(p, s->conns_refused_limit, "reason", "limit");
	PROM_SAMPLE1(p, s->conns_refused_source, "reason", "source");
	PROM_SAMPLE1(p, s->conns_refused_busy, "reason", "busy");
	prom_family(p, "meshcontrol_connections_closed_total", PROM_COUNTER,
	            "Node connections closed by the server, by reason.");
	PROM_SAMPLE1(p, s->conns_evicted, "reason", "evicted");
	PROM_SAMPLE1(p, s->idle_closed, "reason", "idle");
	PROM_SAMPLE1(p, s->slow_closed, "reason", "slow");
	prom_family(p, "meshcontrol_handshakes_total", PROM_COUNTER,
	            "Noise handshakes with nodes, by result.");
	PROM_SAMPLE1(p, s->handshakes_ok, "result", "ok");
	PROM_SAMPLE1(p, s->handshakes_failed, "result", "failed");
	PROM_SAMPLE1(p, s->handshakes_limited, "result", "limited");
	prom_family(p, "meshcontrol_registrations_total", PROM_COUNTER,
	            "Registrations, by result.");
	PROM_SAMPLE1(p, s->registrations_ok, "result", "ok");
	PROM_SAMPLE1(p, s->registrations_pending, "result", "pending");
	PROM_SAMPLE1(p, s->registrations_refused, "result", "refused");
	PROM_SAMPLE1(p, s->registrations_retry, "result", "retry");
	PROM_SAMPLE1(p, s->registrations_throttled, "result", "throttled");
}

static void ch_metrics_maps(struct prom *p, const struct ctl_server_stats *s)
{
	prom_family(p, "meshcontrol_maps_sent_total", PROM_COUNTER,
	            "Network maps sent to nodes, by kind.");
	PROM_SAMPLE1(p, s->maps_full, "kind", "full");
	PROM_SAMPLE1(p, s->maps_delta, "kind", "delta");
	prom_counter(p, "meshcontrol_broadcasts_total",
	             "Map changes pushed to the nodes.", s->broadcasts);
	prom_gauge(p, "meshcontrol_map_version", "The map's version.",
	           (double)s->map_version);
	prom_family(p, "meshcontrol_bad_input_total", PROM_COUNTER,
	            "Frames and messages from nodes refused, by kind.");
	PROM_SAMPLE1(p, s->bad_frames, "kind", "frame");
	PROM_SAMPLE1(p, s->bad_messages, "kind", "message");
	prom_family(p, "meshcontrol_bytes_total", PROM_COUNTER,
	            "Bytes on node connections, by direction.");
	PROM_SAMPLE1(p, s->bytes_in, "dir", "in");
	PROM_SAMPLE1(p, s->bytes_out, "dir", "out");
	prom_gauge(p, "meshcontrol_output_queued_bytes",
	           "Bytes waiting in the output queues now.", (double)s->out_queued);
}

static void ch_metrics(void *ctx, struct prom *p)
{
	struct ctl_health *h = ctx;
	struct ctl_server_stats s;
	struct ctl_server_policy_stats ps;
	ctl_server_get_stats(h->srv, &s);
	ctl_server_policy_get_stats(h->srv, &ps);
	prom_gauge(p, "meshcontrol_ready", "1 when /readyz answers 200.",
	           ch_is_ready(h, &s));
	prom_counter(p, "meshcontrol_store_probe_failures_total",
	             "Readiness queries the store did not answer.", h->probe_failures);
	prom_counter(p, "meshcontrol_store_write_failures_total",
	             "Writes of the node batch (online state, endpoints) that failed.",
	             s.store_write_failures);
	prom_counter(p, "meshcontrol_beat_failures_total",
	             "Beats of this server (it is alive) the store did not take.",
	             s.beat_failures);
	prom_counter(p, "meshcontrol_nodes_swept_total",
	             "Nodes of stopped servers (or the last run) this server marked "
	             "offline.",
	             s.nodes_swept);
	ch_metrics_nodes(p, &s);
	ch_metrics_conns(p, &s);
	ch_metrics_maps(p, &s);
	prom_gauge(p, "meshcontrol_policy_active", "1 when an access policy is in force.",
	           ps.active);
	prom_family(p, "meshcontrol_policy_compiles_total", PROM_COUNTER,
	            "Compiles of the access policy, by result.");
	PROM_SAMPLE1(p, ps.compiles, "result", "ok");
	PROM_SAMPLE1(p, ps.compile_failures, "result", "failed");
	PROM_SAMPLE1(p, ps.compiles_deferred, "result", "deferred");
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
