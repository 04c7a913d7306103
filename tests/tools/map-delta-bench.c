/* map-delta-bench: what one map delta costs a node at scale, on the real
 * code path of node/control.c's map callback: the control client's merge
 * (ctl_map_delta_changes, ctl_map_apply_delta), then the WireGuard peers
 * (node/peers.c) and the paths (core/magicsock) brought up to date.
 *
 *   map-delta-bench [-n PEERS] [-d DELTAS] [--full] [--seed S]
 *
 * A map of PEERS peers (default 10000) is loaded into a real WireGuard
 * device and magicsock, then DELTAS (default 1000) single-peer deltas are
 * applied, a mix like a live mesh's: 40% endpoint patches, 20% online
 * patches, 20% whole entries for a known peer, 10% joins, 10% removals.
 * Prints one line of key=value results: the mean and worst time per delta
 * in microseconds, per kind and overall. --full: the node side as for a
 * full map (node_peers_reconcile, magicsock_set_map), as every delta was
 * handled before the change lists reached node/peers.c. */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/control/client.h"
#include "core/control/client_int.h"
#include "core/magicsock/magicsock.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "node/peers.h"

enum kind { K_EPS, K_ONLINE, K_ENTRY, K_JOIN, K_LEAVE, K_N };
static const char *kind_name[K_N] = {"patch_eps", "patch_online", "entry", "join",
                                     "leave"};

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Peer id -> a mesh address in 100.64.0.0/10 and an endpoint in
 * 198.18.0.0/15. */
static void make_peer(struct ctl_peer *p, uint64_t id, unsigned port)
{
	uint8_t priv[32];
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->name, sizeof(p->name), "n%" PRIu64, id);
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(p->node_key, priv);
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(p->disco_key, priv);
	p->n_addrs = 1;
	p->addrs[0].family = 4;
	p->addrs[0].addr[0] = 100;
	p->addrs[0].addr[1] = (uint8_t)(64 + ((id >> 16) & 63));
	p->addrs[0].addr[2] = (uint8_t)(id >> 8);
	p->addrs[0].addr[3] = (uint8_t)id;
	p->n_allowed = 1;
	p->allowed[0].family = 4;
	memcpy(p->allowed[0].addr, p->addrs[0].addr, 4);
	p->allowed[0].bits = 32;
	p->n_eps = 2;
	for (int i = 0; i < 2; i++) {
		p->eps[i].family = 4;
		p->eps[i].addr[0] = 198;
		p->eps[i].addr[1] = (uint8_t)(18 + i);
		p->eps[i].addr[2] = (uint8_t)(id >> 8);
		p->eps[i].addr[3] = (uint8_t)id;
		p->eps[i].port = (uint16_t)port;
	}
	p->online = true;
}

struct bench {
	struct ctl_map_full map;
	struct node_peers np;
	struct wg_device *wg;
	struct magicsock *ms;
	uint64_t next_id;
	int64_t sum_us[K_N], max_us[K_N];
	size_t count[K_N];
};

static bool full_path;

/* What node/control.c does with one map update (nctl_on_map): the keys
 * that leave, the WireGuard peers, the paths. --full: what it did before
 * (and still does for a full map): everything from the whole map. */
static int node_side(struct bench *b, const struct ctl_map_change *chg)
{
	struct np_result r;
	if (full_path) {
		if (node_peers_reconcile(&b->np, b->wg, &b->map, 0, &r) != 0)
			return -ENOMEM;
		return magicsock_set_map(b->ms, &b->map);
	}
	uint8_t(*gone)[32] = calloc(chg->n_changed + chg->n_removed + 1, 32);
	const struct ctl_peer **peers = calloc(chg->n_changed + 1, sizeof(*peers));
	int rc = -ENOMEM;
	if (!gone || !peers)
		goto out;
	size_t n_gone = node_peers_gone_keys(&b->np, &b->map, chg, gone);
	if (node_peers_update(&b->np, b->wg, &b->map, chg, 0, &r) != 0)
		goto out;
	size_t n = 0;
	for (size_t i = 0; i < chg->n_changed; i++)
		if ((peers[n] = ctl_map_find(&b->map, chg->changed[i])))
			n++;
	rc = magicsock_update_peers(b->ms, &b->map, peers, n, (const uint8_t(*)[32])gone,
	                            n_gone);
out:
	free(gone);
	free(peers);
	return rc;
}

static int one_delta(struct bench *b, enum kind k)
{
	struct ctl_map_delta d;
	struct ctl_peer peer;
	struct ctl_peer_patch patch;
	uint64_t gone;
	memset(&d, 0, sizeof(d));
	d.base_version = b->map.version;
	d.version = b->map.version + 1;
	const struct ctl_peer *victim = &b->map.peers[rnd() % b->map.n_peers];
	switch (k) {
	case K_EPS:
	case K_ONLINE:
		memset(&patch, 0, sizeof(patch));
		patch.id = victim->id;
		if (k == K_EPS) {
			patch.fields = CTL_PATCH_ENDPOINTS;
			patch.n_eps = 1;
			patch.eps[0] = victim->eps[0];
			patch.eps[0].port = (uint16_t)(1024 + rnd() % 60000);
		} else {
			patch.fields = CTL_PATCH_ONLINE | CTL_PATCH_LAST_SEEN;
			patch.online = !victim->online;
			patch.last_seen = (int64_t)time(NULL);
		}
		d.patches = &patch;
		d.n_patches = 1;
		break;
	case K_ENTRY:
		peer = *victim;
		peer.eps[1].port = (uint16_t)(1024 + rnd() % 60000);
		peer.online = !peer.online;
		d.peers = &peer;
		d.n_peers = 1;
		break;
	case K_JOIN:
		make_peer(&peer, b->next_id++, 51820);
		d.peers = &peer;
		d.n_peers = 1;
		break;
	default:
		gone = victim->id;
		d.removed = &gone;
		d.n_removed = 1;
		break;
	}
	uint64_t *ch, *rm;
	size_t nch, nrm;
	int64_t t0 = now_us();
	if (ctl_map_delta_changes(&b->map, &d, &ch, &nch, &rm, &nrm) != 0)
		return -ENOMEM;
	int r = ctl_map_apply_delta(&b->map, &d);
	struct ctl_map_change chg = {
	    .changed = ch, .n_changed = nch, .removed = rm, .n_removed = nrm};
	if (r == 0)
		r = node_side(b, &chg);
	int64_t dt = now_us() - t0;
	free(ch);
	free(rm);
	b->sum_us[k] += dt;
	if (dt > b->max_us[k])
		b->max_us[k] = dt;
	b->count[k]++;
	return r;
}

int main(int argc, char **argv)
{
	size_t n = 10000, deltas = 1000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
			deltas = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--full") == 0)
			full_path = true;
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			rng_state = strtoull(argv[++i], NULL, 10) | 1;
		else {
			fprintf(stderr, "usage: map-delta-bench [-n PEERS] [-d DELTAS] "
			                "[--full] [--seed S]\n");
			return 2;
		}
	}
	if (sodium_init() < 0 || n < 2)
		return 1;
	log_set_level(LOG_ERROR);
	static struct bench b;
	struct event_base *base = event_base_new();
	uint8_t priv[32], dpriv[32];
	randombytes_buf(priv, 32);
	randombytes_buf(dpriv, 32);
	b.wg = wg_device_new(base, priv);
	if (!b.wg || wg_device_listen(b.wg, 0) != 0) {
		fprintf(stderr, "map-delta-bench: cannot start a WireGuard device\n");
		return 1;
	}
	uint8_t pub[32];
	crypto_scalarmult_base(pub, priv);
	if (node_peers_init(&b.np, (const uint8_t(*)[32])pub, 1) != 0)
		return 1;
	struct magicsock_config mc = {.base = base, .wg = b.wg};
	memcpy(mc.node_priv, priv, 32);
	memcpy(mc.node_pub, pub, 32);
	memcpy(mc.disco_priv, dpriv, 32);
	crypto_scalarmult_base(mc.disco_pub, dpriv);
	char err[160];
	b.ms = magicsock_new(&mc, err, sizeof(err));
	if (!b.ms) {
		fprintf(stderr, "map-delta-bench: magicsock: %s\n", err);
		return 1;
	}
	b.map.version = 1;
	b.map.self_id = 1;
	b.map.peers = calloc(n, sizeof(*b.map.peers));
	if (!b.map.peers)
		return 1;
	for (size_t i = 0; i < n; i++)
		make_peer(&b.map.peers[i], i + 2, 51820);
	b.map.n_peers = n;
	b.next_id = n + 2;
	int64_t t0 = now_us();
	if (node_peers_reconcile(&b.np, b.wg, &b.map, 0, NULL) != 0 ||
	    magicsock_set_map(b.ms, &b.map) != 0)
		return 1;
	int64_t load_us = now_us() - t0;
	static const enum kind mix[10] = {K_EPS,    K_EPS,   K_EPS,   K_EPS,  K_ONLINE,
	                                  K_ONLINE, K_ENTRY, K_ENTRY, K_JOIN, K_LEAVE};
	for (size_t i = 0; i < deltas; i++) {
		if (one_delta(&b, mix[rnd() % 10]) != 0) {
			fprintf(stderr, "map-delta-bench: delta %zu failed\n", i);
			return 1;
		}
	}
	int64_t all = 0, worst = 0;
	size_t cnt = 0;
	printf("peers=%zu deltas=%zu load_ms=%.1f", n, deltas, load_us / 1000.0);
	for (int k = 0; k < K_N; k++) {
		all += b.sum_us[k];
		cnt += b.count[k];
		if (b.max_us[k] > worst)
			worst = b.max_us[k];
		printf(" %s_us=%.1f", kind_name[k],
		       b.count[k] ? (double)b.sum_us[k] / (double)b.count[k] : 0.0);
	}
	printf(" mean_us=%.1f worst_us=%" PRId64 "\n",
	       cnt ? (double)all / (double)cnt : 0.0, worst);
	magicsock_free(b.ms);
	node_peers_free(&b.np);
	wg_device_free(b.wg);
	ctl_map_clear(&b.map);
	event_base_free(base);
	return 0;
}
