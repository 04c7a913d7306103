/* After a path change: the TCP connections to that peer go on at once.
 *
 * magicsock says when the device's path to a peer changed (relay <->
 * direct, another direct address). The netstack then retransmits what the
 * old path lost on the connections whose remote address the peer routes
 * (its allowed IPs, the longest match), instead of waiting out lwIP's
 * backed-off timer, and ACKs what came in (netstack/kick.c); leaving a
 * direct path for the relay, everything in flight on it counts as lost.
 * The work is deferred to a loop callback: magicsock may notice a change
 * from inside the device, which lwIP's output can be inside of. Changes that come
 * together (a relay that went down moves every relayed peer) are done in
 * one walk of the connections, each peer once. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "core/wg/device.h"
#include "netstack/ns.h"
#include "node/control_int.h"

/* The peers whose path changed since the last run, by what became of
 * the old path. */
struct kick_keys {
	uint8_t (*keys)[32];
	size_t n, cap;
	bool lost; /* a key could not be recorded (no memory): take every peer */
};

struct nctl_kick {
	struct event *ev;
	struct kick_keys dead;     /* direct -> relay: the direct path was given up */
	struct kick_keys other;    /* relay -> direct, another direct address */
	bool was_relay, via_relay; /* of the last change (for the log line) */
	bool queued;               /* ev is active */
};

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

struct kick_match {
	struct node_ctl *m;
	const struct kick_keys *ks;
};

static bool kick_match(void *ctx, const struct ns_addr *remote)
{
	struct kick_match *km = ctx;
	const uint8_t *key = wg_device_route_key(km->m->wg, remote->family, remote->addr);
	return key &&
	       (km->ks->lost || bsearch(key, km->ks->keys, km->ks->n, 32, key_cmp));
}

/* One walk for these peers; their list is emptied. */
static void kick_keys_run(struct node_ctl *m, struct kick_keys *ks, bool old_path_dead,
                          struct ns_kick_result *sum)
{
	if (!ks->n && !ks->lost)
		return;
	qsort(ks->keys, ks->n, 32, key_cmp);
	struct kick_match km = {m, ks};
	struct ns_kick_result r;
	ns_tcp_path_changed(kick_match, &km, old_path_dead, &r);
	sum->rexmit += r.rexmit;
	sum->acked += r.acked;
	ks->n = 0;
	ks->lost = false;
}

static void kick_run(evutil_socket_t fd, short what, void *arg)
{
	struct node_ctl *m = arg;
	struct nctl_kick *k = m->kick;
	(void)fd;
	(void)what;
	if (!k)
		return;
	k->queued = false;
	if (!m->wg)
		return;
	size_t n = k->dead.n + k->other.n;
	bool lost = k->dead.lost || k->other.lost;
	char who[CTL_LABEL_MAX + 48];
	if (lost) {
		snprintf(who, sizeof(who),
		         "paths changed (not all recorded: out of memory)");
	} else if (n == 1) {
		const uint8_t *key = k->dead.n ? k->dead.keys[0] : k->other.keys[0];
		const struct np_entry *e = node_peers_by_key(&m->np, key);
		snprintf(who, sizeof(who), "path to %s: %s -> %s",
		         e && e->p.name[0] ? e->p.name : "a peer",
		         k->was_relay ? "relay" : "direct",
		         k->via_relay ? "relay" : "direct");
	} else {
		snprintf(who, sizeof(who), "paths of %zu peers changed", n);
	}
	struct ns_kick_result r = {0, 0};
	kick_keys_run(m, &k->dead, true, &r);
	kick_keys_run(m, &k->other, false, &r);
	m->kick_rexmit += r.rexmit;
	m->kick_acked += r.acked;
	if (n || lost)
		log_info("%s; TCP: %zu connection(s) retransmit now, %zu ACK(s) sent",
		         who, r.rexmit, r.acked);
}

static void kick_keys_add(struct kick_keys *ks, const uint8_t key[32])
{
	if (ks->lost)
		return;
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 8;
		void *p = realloc(ks->keys, cap * 32);
		if (!p) {
			ks->lost = true; /* then every peer's connections are looked at */
			return;
		}
		ks->keys = p;
		ks->cap = cap;
	}
	memcpy(ks->keys[ks->n++], key, 32);
}

void nctl_kick_on_path(void *ctx, const uint8_t key[32], bool was_relay, bool via_relay)
{
	struct node_ctl *m = ctx;
	struct nctl_kick *k = m->kick;
	m->path_changes++;
	if (!k) {
		if (!(k = calloc(1, sizeof(*k))) ||
		    !(k->ev = event_new(m->base, -1, 0, kick_run, m))) {
			free(k);
			return;
		}
		m->kick = k;
	}
	k->was_relay = was_relay;
	k->via_relay = via_relay;
	kick_keys_add(!was_relay && via_relay ? &k->dead : &k->other, key);
	if (!k->queued) {
		k->queued = true;
		event_active(k->ev, 0, 0);
	}
}

void nctl_kick_free(struct node_ctl *m)
{
	struct nctl_kick *k = m->kick;
	if (!k)
		return;
	if (k->ev)
		event_free(k->ev);
	free(k->dead.keys);
	free(k->other.keys);
	free(k);
	m->kick = NULL;
}
