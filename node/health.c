/* The node's readiness and health listener; see health.h.
 *
 * Whether a peer answers needs history the device does not keep: when an
 * initiation went out that nothing completed. Once a second we compare
 * each peer's handshake counters with the last look, found by its public
 * key: initiations sent while none completed start a clock, a completed
 * handshake stops it. The same tick notes whether mesh-control is online,
 * for its grace. The rule (nh_rule) takes its inputs and the clock as
 * values, so the unit test drives it without a node. */
#include "node/health.h"

#include <errno.h>
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
	struct nh_tracker tr;
	int64_t ctl_online_ms; /* the last tick that saw control online; 0: never */
	bool stopping;
	bool metrics_peers;
};

static int nh_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32); /* the key is each struct's first member */
}

static struct nh_peer *nh_find(const struct nh_tracker *t, const uint8_t *key)
{
	return t->n ? bsearch(key, t->peers, t->n, sizeof(*t->peers), nh_cmp) : NULL;
}

/* A peer seen again: initiations sent while none completed start its
 * clock, a completed handshake stops it. */
static void nh_update(struct nh_peer *e, const struct nh_obs *o, int64_t now_ms)
{
	if (o->completed != e->completed) {
		e->unanswered_since = 0;
		e->ever = true;
	} else if (o->sent != e->sent && !e->unanswered_since) {
		e->unanswered_since = now_ms;
	}
	e->sent = o->sent;
	e->completed = o->completed;
}

int nh_tracker_look(struct nh_tracker *t, const struct nh_obs *obs, size_t n,
                    int64_t now_ms)
{
	struct nh_peer *np = n ? malloc(n * sizeof(*np)) : NULL;
	if (n && !np)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct nh_obs *o = &obs[i];
		const struct nh_peer *old = nh_find(t, o->key);
		if (old) {
			np[i] = *old;
			nh_update(&np[i], o, now_ms);
			continue;
		}
		/* new here (the map changed): start from now */
		np[i] = (struct nh_peer){.sent = o->sent,
		                         .completed = o->completed,
		                         .ever = o->last_hs_ms >= 0};
		memcpy(np[i].key, o->key, 32);
	}
	if (n)
		qsort(np, n, sizeof(*np), nh_cmp);
	free(t->peers);
	t->peers = np;
	t->n = t->cap = n;
	return 0;
}

void nh_tracker_clear(struct nh_tracker *t)
{
	free(t->peers);
	memset(t, 0, sizeof(*t));
}

/* Joined: by its last handshake's age; else by any handshake since the
 * start. Either way not while an initiation went unanswered too long. */
bool nh_tracker_answers(const struct nh_tracker *t, const struct nh_obs *o, bool joined,
                        int64_t now_ms)
{
	const struct nh_peer *e = nh_find(t, o->key);
	if (e && e->unanswered_since &&
	    now_ms - e->unanswered_since >= NODE_HEALTH_UNANSWERED_S * 1000)
		return false;
	if (!joined)
		return (e && e->ever) || o->last_hs_ms >= 0;
	return o->last_hs_ms >= 0 && o->last_hs_ms <= NODE_HEALTH_PEER_S * 1000;
}

static bool nh_ready_joined(const struct nh_inputs *in, int64_t now_ms, char *why,
                            size_t cap)
{
	if (in->pending && !in->have_self) {
		snprintf(why, cap,
		         "waiting for an admin to approve this node in "
		         "mesh-control (mesh-control nodes approve NAME)");
		return false;
	}
	if (!in->have_self) {
		snprintf(why, cap, "not registered with mesh-control yet (control %s)",
		         in->ctl);
		return false;
	}
	if (!in->dataplane) {
		snprintf(why, cap, "the data plane is not up yet");
		return false;
	}
	bool ctl_answers = in->ctl_online ||
	                   (in->ctl_online_ms &&
	                    now_ms - in->ctl_online_ms <= NODE_HEALTH_CTL_GRACE_S * 1000);
	if (ctl_answers || in->answering > 0)
		return true;
	snprintf(why, cap,
	         "mesh-control unreachable for more than %d s (control %s) and no peer "
	         "answered for %d s",
	         NODE_HEALTH_CTL_GRACE_S, in->ctl, NODE_HEALTH_PEER_S);
	return false;
}

bool nh_rule(const struct nh_inputs *in, int64_t now_ms, char *why, size_t cap)
{
	if (in->stopping) {
		snprintf(why, cap, "stopping");
		return false;
	}
	if (in->joined)
		return nh_ready_joined(in, now_ms, why, cap);
	if (!in->dataplane) {
		snprintf(why, cap, "the data plane is not up yet");
		return false;
	}
	if (in->peers == 0 || in->answering > 0)
		return true;
	snprintf(why, cap,
	         "no peer answers (%zu configured: none completed a WireGuard handshake, "
	         "or its handshakes go unanswered; see mesh-proxy status)",
	         in->peers);
	return false;
}

/* ---- the node's side ---- */

static bool nh_obs_of(const struct wg_device *wg, size_t i, struct nh_obs *o)
{
	struct wg_peer_info pi;
	if (wg_device_peer_info(wg, i, &pi) != 0)
		return false;
	memcpy(o->key, pi.public_key, 32);
	o->sent = pi.handshakes_sent;
	o->completed = pi.handshakes_completed;
	o->last_hs_ms = pi.last_handshake_ms;
	return true;
}

static bool nh_ctl_online(const struct node *n)
{
	struct ctl_client_status cs = {0};
	if (!n->ctl || !n->ctl->client)
		return false;
	ctl_client_get_status(n->ctl->client, &cs);
	return cs.state == CTL_CLIENT_ONLINE;
}

static void nh_look(struct node_health *h)
{
	struct node *n = h->n;
	int64_t now = (int64_t)mono_now_ms();
	if (nh_ctl_online(n))
		h->ctl_online_ms = now;
	size_t np = n->wg ? wg_device_peer_count(n->wg) : 0, k = 0;
	struct nh_obs *obs = np ? malloc(np * sizeof(*obs)) : NULL;
	if (np && !obs)
		return; /* next second */
	for (size_t i = 0; i < np; i++)
		k += nh_obs_of(n->wg, i, &obs[k]);
	(void)nh_tracker_look(&h->tr, obs, k, now);
	free(obs);
}

static void nh_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	nh_look(arg);
}

static size_t nh_count_answering(const struct node_health *h, bool joined, int64_t now_ms)
{
	size_t k = 0, np = h->n->wg ? wg_device_peer_count(h->n->wg) : 0;
	for (size_t i = 0; i < np; i++) {
		struct nh_obs o;
		if (nh_obs_of(h->n->wg, i, &o))
			k += nh_tracker_answers(&h->tr, &o, joined, now_ms);
	}
	return k;
}

size_t node_health_answering(const struct node_health *h)
{
	return h ? nh_count_answering(h, h->n->ctl != NULL, (int64_t)mono_now_ms()) : 0;
}

void node_health_set_stopping(struct node_health *h)
{
	if (h)
		h->stopping = true;
}

bool node_health_ready(const struct node_health *h, char *why, size_t cap)
{
	const struct node *n = h->n;
	int64_t now = (int64_t)mono_now_ms();
	struct nh_inputs in = {.stopping = h->stopping,
	                       .joined = n->ctl != NULL,
	                       .dataplane = n->dataplane && n->wg,
	                       .ctl = "stopped",
	                       .ctl_online_ms = h->ctl_online_ms};
	if (n->ctl) {
		struct ctl_client_status cs = {0};
		if (n->ctl->client) {
			ctl_client_get_status(n->ctl->client, &cs);
			in.ctl = ctl_client_state_name(cs.state);
		}
		in.pending = cs.state == CTL_CLIENT_PENDING;
		in.have_self = n->ctl->have_self;
		in.ctl_online = cs.state == CTL_CLIENT_ONLINE;
	}
	if (in.dataplane) {
		in.peers = wg_device_peer_count(n->wg);
		in.answering = nh_count_answering(h, in.joined, now);
	}
	return nh_rule(&in, now, why, cap);
}

static bool nh_ready_cb(void *ctx, char *why, size_t cap)
{
	return node_health_ready(ctx, why, cap);
}

static void nh_metrics_cb(void *ctx, struct prom *p)
{
	struct node_health *h = ctx;
	node_metrics_write(h->n, h, h->metrics_peers, p);
}

struct node_health *node_health_new(struct node *n, const char *listen,
                                    bool metrics_peers, char *err, size_t errlen)
{
	struct node_health *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->n = n;
	h->metrics_peers = metrics_peers;
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
	nh_tracker_clear(&h->tr);
	free(h);
}
