/* After a path change: the TCP connections to that peer go on at once.
 *
 * magicsock says when the device's path to a peer changed (relay <->
 * direct, another direct address). The netstack then retransmits what the
 * old path lost on the connections whose remote address the peer routes
 * (its allowed IPs, the longest match), instead of waiting out lwIP's
 * backed-off timer, and ACKs what came in (netstack/kick.c). The work is
 * deferred to a loop callback: magicsock may notice a change from inside
 * the device, which lwIP's output can be inside of. Changes that come
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

struct nctl_kick {
	struct event *ev;
	uint8_t (*keys)[32]; /* peers whose path changed since the last run */
	size_t n, cap;
	bool was_relay, via_relay; /* of the last change (for the log line) */
	bool lost;                 /* a key could not be queued (no memory) */
	bool queued;               /* ev is active */
};

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

struct kick_match {
	struct node_ctl *m;
	struct nctl_kick *k;
};

static bool kick_match(void *ctx, const struct ns_addr *remote)
{
	struct kick_match *km = ctx;
	const uint8_t *key = wg_device_route_key(km->m->wg, remote->family, remote->addr);
	return key && (km->k->lost || bsearch(key, km->k->keys, km->k->n, 32, key_cmp));
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
	if ((!k->n && !k->lost) || !m->wg)
		return;
	qsort(k->keys, k->n, 32, key_cmp);
	struct kick_match km = {m, k};
	struct ns_kick_result r;
	ns_tcp_path_changed(kick_match, &km, &r);
	m->kick_rexmit += r.rexmit;
	m->kick_acked += r.acked;
	char who[CTL_LABEL_MAX + 48];
	if (k->lost) {
		snprintf(who, sizeof(who),
		         "paths changed (not all recorded: out of memory)");
	} else if (k->n == 1) {
		const struct np_entry *e = node_peers_by_key(&m->np, k->keys[0]);
		snprintf(who, sizeof(who), "path to %s: %s -> %s",
		         e && e->p.name[0] ? e->p.name : "a peer",
		         k->was_relay ? "relay" : "direct",
		         k->via_relay ? "relay" : "direct");
	} else {
		snprintf(who, sizeof(who), "paths of %zu peers changed", k->n);
	}
	log_info("%s; TCP: %zu connection(s) retransmit now, %zu ACK(s) sent", who,
	         r.rexmit, r.acked);
	k->n = 0;
	k->lost = false;
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
	if (!k->lost && k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		void *p = realloc(k->keys, cap * 32);
		if (p) {
			k->keys = p;
			k->cap = cap;
		} else {
			k->lost = true; /* then every peer's connections are looked at */
		}
	}
	if (!k->lost)
		memcpy(k->keys[k->n++], key, 32);
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
	free(k->keys);
	free(k);
	m->kick = NULL;
}
