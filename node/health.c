/* The node's readiness and health listener; see health.h.
 *
 * Whether a peer answers needs history the device does not keep: when an
 * initiation went out that nothing completed. Once a second we compare
 * each peer's handshake counters with the last look: initiations sent
 * while none completed start a clock, a completed handshake stops it. */
#include "node/health.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/clock.h"
#include "core/util/healthd.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "node/control_int.h"
#include "node/metrics.h"
#include "node/node_int.h"

struct nh_peer {
	uint8_t key[32];
	uint64_t sent, completed; /* the device's counters at the last look */
	int64_t
	    unanswered_since; /* mono ms of the first unanswered initiation; 0: none */
	bool ever;            /* completed a handshake since we know it */
};

struct node_health {
	struct node *n;
	struct event *tick;
	struct healthd *hd;
	struct nh_peer *peers; /* in the device's order */
	size_t n_peers, cap;
};

static void nh_look(struct node_health *h)
{
	struct node *n = h->n;
	size_t np = n->wg ? wg_device_peer_count(n->wg) : 0;
	if (np > h->cap) {
		struct nh_peer *p = realloc(h->peers, np * sizeof(*p));
		if (!p)
			return; /* next second */
		h->peers = p;
		h->cap = np;
	}
	int64_t now = (int64_t)mono_now_ms();
	for (size_t i = 0; i < np; i++) {
		struct wg_peer_info pi;
		struct nh_peer *e = &h->peers[i];
		if (wg_device_peer_info(n->wg, i, &pi) != 0)
			continue;
		if (i >= h->n_peers || memcmp(e->key, pi.public_key, 32) != 0) {
			/* a new peer here (the map changed): start from now */
			*e = (struct nh_peer){.sent = pi.handshakes_sent,
			                      .completed = pi.handshakes_completed,
			                      .ever = pi.last_handshake_unix != 0};
			memcpy(e->key, pi.public_key, 32);
			continue;
		}
		if (pi.handshakes_completed != e->completed) {
			e->unanswered_since = 0;
			e->ever = true;
		} else if (pi.handshakes_sent != e->sent && !e->unanswered_since) {
			e->unanswered_since = now;
		}
		e->sent = pi.handshakes_sent;
		e->completed = pi.handshakes_completed;
	}
	h->n_peers = np;
}

static void nh_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	nh_look(arg);
}

/* Whether the i-th peer answers (health.h); joined: by its last handshake's
 * age, else by any handshake since the start. */
static bool nh_answers(const struct node_health *h, size_t i, bool joined, int64_t now_ms,
                       time_t now)
{
	struct wg_peer_info pi;
	const struct nh_peer *e = &h->peers[i];
	if (!h->n->wg || wg_device_peer_info(h->n->wg, i, &pi) != 0 ||
	    memcmp(e->key, pi.public_key, 32) != 0)
		return false;
	if (e->unanswered_since &&
	    now_ms - e->unanswered_since >= NODE_HEALTH_UNANSWERED_S * 1000)
		return false;
	if (!joined)
		return e->ever || pi.last_handshake_unix != 0;
	return pi.last_handshake_unix != 0 &&
	       now - pi.last_handshake_unix <= NODE_HEALTH_PEER_S;
}

static size_t nh_count_answering(const struct node_health *h, bool joined)
{
	size_t k = 0;
	int64_t now_ms = (int64_t)mono_now_ms();
	time_t now = time(NULL);
	for (size_t i = 0; i < h->n_peers; i++)
		k += nh_answers(h, i, joined, now_ms, now);
	return k;
}

size_t node_health_answering(const struct node_health *h)
{
	return h ? nh_count_answering(h, h->n->ctl != NULL) : 0;
}

static bool nh_ready_joined(const struct node_health *h, char *why, size_t cap)
{
	const struct node_ctl *m = h->n->ctl;
	struct ctl_client_status cs = {0};
	if (m->client)
		ctl_client_get_status(m->client, &cs);
	const char *st = m->client ? ctl_client_state_name(cs.state) : "stopped";
	if (cs.state == CTL_CLIENT_PENDING && !m->have_self) {
		snprintf(why, cap,
		         "waiting for an admin to approve this node in "
		         "mesh-control (mesh-control nodes approve NAME)");
		return false;
	}
	if (!m->have_self) {
		snprintf(why, cap, "not registered with mesh-control yet (control %s)",
		         st);
		return false;
	}
	if (!h->n->dataplane || !h->n->wg) {
		snprintf(why, cap, "the data plane is not up yet");
		return false;
	}
	if (cs.state == CTL_CLIENT_ONLINE || nh_count_answering(h, true) > 0)
		return true;
	snprintf(why, cap,
	         "mesh-control unreachable (control %s) and no peer answered for %d s",
	         st, NODE_HEALTH_PEER_S);
	return false;
}

bool node_health_ready(const struct node_health *h, char *why, size_t cap)
{
	if (h->n->ctl)
		return nh_ready_joined(h, why, cap);
	if (!h->n->dataplane || !h->n->wg) {
		snprintf(why, cap, "the data plane is not up yet");
		return false;
	}
	if (wg_device_peer_count(h->n->wg) == 0 || nh_count_answering(h, false) > 0)
		return true;
	snprintf(why, cap,
	         "no peer answers (%zu configured: none completed a WireGuard handshake, "
	         "or its handshakes go unanswered; see mesh-proxy status)",
	         wg_device_peer_count(h->n->wg));
	return false;
}

static bool nh_ready_cb(void *ctx, char *why, size_t cap)
{
	return node_health_ready(ctx, why, cap);
}

static void nh_metrics_cb(void *ctx, struct prom *p)
{
	struct node_health *h = ctx;
	node_metrics_write(h->n, h, p);
}

struct node_health *node_health_new(struct node *n, const char *listen, char *err,
                                    size_t errlen)
{
	struct node_health *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->n = n;
	h->tick = event_new(n->base, -1, EV_PERSIST, nh_on_tick, h);
	struct timeval sec = {1, 0};
	if (!h->tick || event_add(h->tick, &sec) != 0) {
		snprintf(err, errlen, "out of memory");
		node_health_free(h);
		return NULL;
	}
	if (listen) {
		struct healthd_ops ops = {
		    .ready = nh_ready_cb, .metrics = nh_metrics_cb, .ctx = h};
		h->hd = healthd_new(n->base, listen, "mesh-proxy", &ops, err, errlen);
		if (!h->hd) {
			node_health_free(h);
			return NULL;
		}
	}
	return h;
}

void node_health_free(struct node_health *h)
{
	if (!h)
		return;
	healthd_free(h->hd);
	if (h->tick)
		event_free(h->tick);
	free(h->peers);
	free(h);
}
