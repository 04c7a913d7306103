/* Map deltas on the node at scale (control review H6, "on every node, for
 * every delta"):
 *  - 1,000 single-peer deltas (whole entries for known peers, endpoint and
 *    online patches) on a 10,000-peer map: the control client's map and
 *    node/peers.c's view touch the one entry each delta names and move
 *    nothing (work counters, and the arrays are not reallocated); a join or
 *    a removal moves at most the entries after it; the map stays equal to
 *    a plain model;
 *  - a random mix of deltas (joins, removals, key changes, allowed IPs,
 *    endpoints, patches, several peers at once, a static [Peer]'s key):
 *    the peers the WireGuard device holds, their allowed IPs and
 *    endpoints, and the peers magicsock manages match a from-scratch
 *    rebuild from the same map after every delta; a new relay list in the
 *    map reaches magicsock with the delta;
 *  - a full map naming one key twice gives magicsock one peer for it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>

#include "core/control/client.h"
#include "core/control/client_int.h"
#include "core/magicsock/magicsock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "core/wg/device.h"
#include "node/peers.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Keys: a seed -> a deterministic key pair (public only is kept). */
static void key_of(uint32_t seed, uint8_t out[32])
{
	uint8_t priv[32] = {0};
	memcpy(priv + 8, &seed, sizeof(seed)); /* clamping spares these bytes */
	priv[31] = 0x5a;
	crypto_scalarmult_base(out, priv);
}

/* Mesh addresses in 100.64.0.0/10 (the 2 * id-th, so a /31 of one peer
 * never covers another's), endpoints in 198.18.0.0/15. */
static void make_peer(struct ctl_peer *p, uint64_t id, uint32_t keyseed, unsigned port)
{
	uint64_t a = 2 * id;
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->name, sizeof(p->name), "n%llu", (unsigned long long)id);
	key_of(keyseed, p->node_key);
	key_of(keyseed ^ 0x80000000u, p->disco_key);
	p->n_addrs = 1;
	p->addrs[0].family = 4;
	p->addrs[0].addr[0] = 100;
	p->addrs[0].addr[1] = (uint8_t)(64 + ((a >> 16) & 63));
	p->addrs[0].addr[2] = (uint8_t)(a >> 8);
	p->addrs[0].addr[3] = (uint8_t)a;
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

/* One delta through the client's merge and node/peers.c, as nctl_on_map
 * does. */
static void apply(struct ctl_map_full *map, const struct ctl_map_delta *d,
                  struct node_peers *np, struct wg_device *wg, struct ctl_map_work *w,
                  struct magicsock *ms)
{
	uint64_t *ch, *rm;
	size_t nch, nrm;
	assert_int_equal(ctl_map_delta_changes(map, d, &ch, &nch, &rm, &nrm), 0);
	assert_int_equal(ctl_map_apply_delta_work(map, d, w), 0);
	struct ctl_map_change chg = {
	    .changed = ch, .n_changed = nch, .removed = rm, .n_removed = nrm};
	uint8_t(*gone)[32] = calloc(nch + nrm + 1, 32);
	assert_non_null(gone);
	size_t n_gone = node_peers_gone_keys(np, map, &chg, gone);
	assert_int_equal(node_peers_update(np, wg, map, &chg, 0, NULL), 0);
	if (ms) {
		const struct ctl_peer **peers = calloc(nch + 1, sizeof(*peers));
		assert_non_null(peers);
		size_t n = 0;
		for (size_t i = 0; i < nch; i++)
			if ((peers[n] = ctl_map_find(map, ch[i])))
				n++;
		assert_int_equal(magicsock_update_peers(ms, map, peers, n,
		                                        (const uint8_t(*)[32])gone,
		                                        n_gone),
		                 0);
		assert_int_equal(magicsock_relay_count(ms), map->n_relays);
		free(peers);
	}
	free(gone);
	free(ch);
	free(rm);
}

#define BIG 10000

static void test_single_peer_deltas_cost_what_they_change(void **state)
{
	(void)state;
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 1;
	map.self_id = 1;
	map.peers = calloc(BIG, sizeof(*map.peers));
	/* the model: the ids present (2 + 2i; odd ids are free for joins) */
	bool *present = calloc(2 * BIG + 4000, sizeof(*present));
	assert_non_null(map.peers);
	assert_non_null(present);
	for (size_t i = 0; i < BIG; i++) {
		make_peer(&map.peers[i], 2 + 2 * i, (uint32_t)i + 1, 51820);
		present[2 + 2 * i] = true;
	}
	map.n_peers = BIG;
	struct node_peers np;
	uint8_t self[32];
	key_of(0, self);
	assert_int_equal(node_peers_init(&np, (const uint8_t(*)[32])self, 1), 0);
	struct ctl_map_change full = {.full = true};
	assert_int_equal(node_peers_update(&np, NULL, &map, &full, 0, NULL), 0);
	assert_int_equal(np.n, BIG);

	for (int i = 0; i < 1000; i++) {
		struct ctl_map_delta d = {.base_version = map.version,
		                          .version = map.version + 1};
		struct ctl_peer peer;
		struct ctl_peer_patch patch;
		uint64_t gone;
		size_t at = rnd() % map.n_peers;
		const struct ctl_peer *victim = &map.peers[at];
		int kind = i % 10; /* 0-3 entries, 4-7 patches, 8 join, 9 leave */
		if (kind < 4) {
			peer = *victim;
			peer.eps[0].port = (uint16_t)(1024 + rnd() % 60000);
			peer.online = !peer.online;
			if (kind == 3) /* a new allowed prefix too */
				peer.allowed[0].bits = 31,
				peer.allowed[0].addr[3] &= 0xfe;
			d.peers = &peer;
			d.n_peers = 1;
		} else if (kind < 8) {
			memset(&patch, 0, sizeof(patch));
			patch.id = victim->id;
			if (kind & 1) {
				patch.fields = CTL_PATCH_ENDPOINTS | CTL_PATCH_HOME_RELAY;
				patch.n_eps = 1;
				patch.eps[0] = victim->eps[1];
				patch.eps[0].port = (uint16_t)(1024 + rnd() % 60000);
				patch.home_relay = 7;
			} else {
				patch.fields = CTL_PATCH_ONLINE | CTL_PATCH_LAST_SEEN;
				patch.online = !victim->online;
				patch.last_seen = 1700000000 + i;
			}
			d.patches = &patch;
			d.n_patches = 1;
		} else if (kind == 8) {
			make_peer(&peer, 2 * BIG + 3 + 2 * (uint64_t)i,
			          50000u + (uint32_t)i, 51820);
			d.peers = &peer;
			d.n_peers = 1;
		} else {
			gone = victim->id;
			d.removed = &gone;
			d.n_removed = 1;
		}
		const struct ctl_peer *before = map.peers;
		const struct np_entry *np_before = np.e;
		uint64_t touched = np.touched, moved = np.moved;
		size_t n_before = map.n_peers;
		struct ctl_map_work w;
		apply(&map, &d, &np, NULL, &w, NULL);
		if (kind < 8) {
			/* a known peer: its own entry, in place, nothing else */
			assert_ptr_equal(map.peers, before);
			assert_ptr_equal(np.e, np_before);
			assert_int_equal(w.peers_written + w.peers_patched, 1);
			assert_int_equal(w.peers_moved, 0);
			assert_int_equal(np.touched - touched, 1);
			assert_int_equal(np.moved - moved, 0);
		} else {
			/* a join or a removal: the entries after it move once */
			assert_int_equal(w.peers_written, kind == 8 ? 1 : 0);
			assert_true(w.peers_moved <= n_before);
			assert_true(np.moved - moved <= n_before);
			assert_int_equal(np.touched - touched, kind == 8 ? 1 : 0);
		}
		if (kind == 8)
			present[peer.id] = true;
		if (kind == 9)
			present[gone] = false;
		/* the changed entry is what the delta says */
		if (kind < 4 || kind == 8) {
			const struct ctl_peer *p = ctl_map_find(&map, peer.id);
			assert_non_null(p);
			assert_memory_equal(p, &peer, sizeof(peer));
		}
		if (kind >= 4 && kind < 8) {
			const struct ctl_peer *p = ctl_map_find(&map, patch.id);
			assert_non_null(p);
			if (kind & 1) {
				assert_int_equal(p->n_eps, 1);
				assert_int_equal(p->eps[0].port, patch.eps[0].port);
				assert_int_equal(p->home_relay, 7);
			} else {
				assert_int_equal(p->online, patch.online);
				assert_int_equal(p->last_seen, patch.last_seen);
			}
		}
	}
	/* sorted, exactly the ids the model holds, and the view matches */
	size_t k = 0;
	for (uint64_t id = 0; id < 2 * BIG + 4000; id++) {
		if (!present[id])
			continue;
		assert_true(k < map.n_peers);
		assert_int_equal(map.peers[k].id, id);
		assert_int_equal(np.e[k].p.id, id);
		assert_memory_equal(&np.e[k].p, &map.peers[k], sizeof(map.peers[k]));
		k++;
	}
	assert_int_equal(k, map.n_peers);
	assert_int_equal(np.n, map.n_peers);
	assert_int_equal(np.version, map.version);
	node_peers_free(&np);
	ctl_map_clear(&map);
	free(present);
}

/* ---- the device against a rebuild ---- */

#define SMALL       120
#define ID_SPACE    200
#define KEY_SPACE   400
#define STATIC_SEED 9999

static void check_same_device(struct wg_device *inc, const struct node_peers *np,
                              struct wg_device *ref, const struct ctl_map_full *map,
                              struct magicsock *ms)
{
	assert_int_equal(wg_device_peer_count(inc), wg_device_peer_count(ref));
	for (size_t i = 0; i < wg_device_peer_count(ref); i++) {
		struct wg_peer_info a, b;
		assert_int_equal(wg_device_peer_info(ref, i, &b), 0);
		assert_int_equal(wg_device_peer_info_by_key(inc, b.public_key, &a), 0);
		assert_int_equal(a.n_allowed_ips, b.n_allowed_ips);
	}
	size_t managed = 0;
	for (size_t i = 0; i < map->n_peers; i++) {
		const struct ctl_peer *p = &map->peers[i];
		uint8_t st[32];
		key_of(STATIC_SEED, st);
		bool is_static = memcmp(p->node_key, st, 32) == 0;
		struct wg_peer_info a;
		if (is_static)
			continue; /* left alone: the device holds it as configured */
		managed++;
		assert_int_equal(wg_device_peer_info_by_key(inc, p->node_key, &a), 0);
		assert_int_equal(a.n_allowed_ips, p->n_allowed);
		for (size_t j = 0; j < p->n_allowed; j++)
			assert_true(
			    wg_device_has_route(inc, AF_INET, p->allowed[j].addr));
		/* the endpoint is one of the peer's, the candidate the view holds */
		const struct np_entry *e = node_peers_by_key(np, p->node_key);
		assert_non_null(e);
		assert_memory_equal(&e->p, p, sizeof(*p));
		if (p->n_eps) {
			const struct ctl_endpoint *want = &p->eps[e->cand];
			const struct sockaddr_in *s =
			    (const struct sockaddr_in *)&a.endpoint;
			assert_int_equal(s->sin_family, AF_INET);
			assert_int_equal(ntohs(s->sin_port), want->port);
			assert_memory_equal(&s->sin_addr, want->addr, 4);
		}
		struct magicsock_peer_path pp;
		assert_int_equal(magicsock_peer_path(ms, p->node_key, &pp), 0);
	}
	assert_int_equal(np->n, map->n_peers);
	/* magicsock holds exactly the map's peers (each checked above) */
	assert_int_equal(magicsock_peer_count(ms), managed);
}

static void test_device_matches_rebuild(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	uint8_t priv[32], pub[32], st[32];
	memset(priv, 3, 32);
	crypto_scalarmult_base(pub, priv);
	key_of(STATIC_SEED, st);
	struct wg_device *wg = wg_device_new(base, priv);
	assert_non_null(wg);
	assert_int_equal(wg_device_listen(wg, 0), 0);
	/* a static [Peer]: never touched, even when the map lists its key */
	struct wg_allowed_ip sip = {.family = AF_INET, .cidr = 32};
	inet_pton(AF_INET, "198.19.255.1", sip.addr);
	struct wg_peer_config sc = {.allowed_ips = &sip, .n_allowed_ips = 1};
	memcpy(sc.public_key, st, 32);
	assert_non_null(wg_device_add_peer(wg, &sc, NULL));
	uint8_t keys[2][32];
	memcpy(keys[0], st, 32);
	memcpy(keys[1], pub, 32);
	struct node_peers np;
	assert_int_equal(node_peers_init(&np, (const uint8_t(*)[32])keys, 2), 0);
	struct magicsock_config mc = {.base = base, .wg = wg};
	memcpy(mc.node_priv, priv, 32);
	memcpy(mc.node_pub, pub, 32);
	memset(mc.disco_priv, 4, 32);
	crypto_scalarmult_base(mc.disco_pub, mc.disco_priv);
	mc.skip_keys = (const uint8_t(*)[32])st;
	mc.n_skip_keys = 1;
	char err[160];
	struct magicsock *ms = magicsock_new(&mc, err, sizeof(err));
	assert_non_null(ms);

	/* key seeds in use, so two ids never share a key */
	uint32_t key_of_id[ID_SPACE] = {0};
	bool key_used[KEY_SPACE + 1] = {0};
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 1;
	map.self_id = 1;
	map.peers = calloc(SMALL, sizeof(*map.peers));
	assert_non_null(map.peers);
	for (size_t i = 0; i < SMALL; i++) {
		uint64_t id = 2 + i;
		key_of_id[id] = (uint32_t)i + 1;
		key_used[i + 1] = true;
		make_peer(&map.peers[i], id, key_of_id[id], 40000);
	}
	map.n_peers = SMALL;
	struct ctl_map_change full = {.full = true};
	assert_int_equal(node_peers_update(&np, wg, &map, &full, 0, NULL), 0);
	assert_int_equal(magicsock_set_map(ms, &map), 0);

	struct ctl_relay relays[2];
	memset(relays, 0, sizeof(relays));
	for (int i = 0; i < 2; i++) {
		relays[i].id = (uint32_t)i + 1;
		relays[i].port = 443;
		snprintf(relays[i].name, sizeof(relays[i].name), "r%d", i + 1);
		snprintf(relays[i].region, sizeof(relays[i].region), "lab");
		snprintf(relays[i].host, sizeof(relays[i].host), "198.18.99.%d", i + 1);
	}
	for (int round = 0; round < 400; round++) {
		struct ctl_map_delta d = {.base_version = map.version,
		                          .version = map.version + 1};
		/* now and then a new relay list comes with a delta (the merged
		 * map holds it): the paths follow it */
		if (round % 50 == 25) {
			free(map.relays);
			map.n_relays = (size_t)(round / 50) % 3;
			map.relays = map.n_relays
			                 ? calloc(map.n_relays, sizeof(*map.relays))
			                 : NULL;
			if (map.n_relays)
				memcpy(map.relays, relays,
				       map.n_relays * sizeof(*relays));
		}
		struct ctl_peer peers[4];
		struct ctl_peer_patch patches[3];
		uint64_t removed[3];
		bool used[ID_SPACE] = {0};
		int n_ops = 1 + (int)(rnd() % 4);
		for (int op = 0; op < n_ops; op++) {
			uint64_t id =
			    1 + rnd() % (ID_SPACE - 1); /* 1 is the node itself */
			if (used[id])
				continue;
			used[id] = true;
			const struct ctl_peer *cur = ctl_map_find(&map, id);
			unsigned what = (unsigned)(rnd() % 8);
			if (id == 1 && d.n_peers < 4) { /* self in a delta: ignored */
				make_peer(&peers[d.n_peers++], 1, KEY_SPACE, 40000);
				continue;
			}
			if (!cur && d.n_peers < 4) { /* join, maybe with a freed key */
				uint32_t seed = 0;
				for (int t = 0; t < 20 && !seed; t++) {
					uint32_t s =
					    1 + (uint32_t)(rnd() % (KEY_SPACE - 1));
					if (!key_used[s])
						seed = s;
				}
				if (!seed)
					continue;
				if (rnd() % 16 == 0)
					seed = STATIC_SEED; /* the static peer's twin */
				else
					key_used[seed] = true;
				key_of_id[id] = seed;
				make_peer(&peers[d.n_peers++], id, seed,
				          40000 + (unsigned)(rnd() % 50));
			} else if (cur && what == 0 && d.n_removed < 3) {
				removed[d.n_removed++] = id;
				if (key_of_id[id] != STATIC_SEED)
					key_used[key_of_id[id]] = false;
			} else if (cur && what <= 3 && d.n_peers < 4) {
				struct ctl_peer *p = &peers[d.n_peers++];
				*p = *cur;
				if (what == 1) { /* new key under the same id */
					uint32_t s =
					    1 + (uint32_t)(rnd() % (KEY_SPACE - 1));
					if (!key_used[s] &&
					    key_of_id[id] != STATIC_SEED) {
						key_used[key_of_id[id]] = false;
						key_used[s] = true;
						key_of_id[id] = s;
						key_of(s, p->node_key);
					}
				} else if (what == 2) { /* allowed IPs */
					p->allowed[0].bits =
					    p->allowed[0].bits == 32 ? 31 : 32;
					p->allowed[0].addr[3] &= 0xfe;
				} else if (p->n_eps >= 2) { /* reordered, maybe one new */
					struct ctl_endpoint e0 = p->eps[0];
					p->eps[0] = p->eps[1];
					p->eps[1] = e0;
					if (rnd() & 1)
						p->eps[1].port =
						    (uint16_t)(41000 + rnd() % 50);
				} else if (p->n_eps == 1) {
					p->eps[0].port = (uint16_t)(41000 + rnd() % 50);
				}
			} else if (cur && d.n_patches < 3) {
				struct ctl_peer_patch *pp = &patches[d.n_patches++];
				memset(pp, 0, sizeof(*pp));
				pp->id = id;
				if (what & 1) {
					pp->fields =
					    CTL_PATCH_ENDPOINTS | CTL_PATCH_HOME_RELAY;
					pp->n_eps = (uint8_t)(rnd() % 3);
					for (int k = 0; k < pp->n_eps; k++) {
						pp->eps[k].family = 4;
						pp->eps[k].addr[0] = 198;
						pp->eps[k].addr[1] = 18;
						pp->eps[k].addr[3] = (uint8_t)id;
						pp->eps[k].port =
						    (uint16_t)(42000 + rnd() % 50);
					}
				} else {
					pp->fields = CTL_PATCH_ONLINE;
					pp->online = !cur->online;
				}
			}
		}
		d.peers = peers;
		d.removed = removed;
		d.patches = patches;
		apply(&map, &d, &np, wg, NULL, ms);

		/* the rebuild: a fresh device and view from the same map */
		struct wg_device *ref = wg_device_new(base, priv);
		assert_non_null(ref);
		assert_non_null(wg_device_add_peer(ref, &sc, NULL));
		struct node_peers rnp;
		assert_int_equal(node_peers_init(&rnp, (const uint8_t(*)[32])keys, 2), 0);
		assert_int_equal(node_peers_reconcile(&rnp, ref, &map, 0, NULL), 0);
		check_same_device(wg, &np, ref, &map, ms);
		node_peers_free(&rnp);
		wg_device_free(ref);
	}
	magicsock_free(ms);
	node_peers_free(&np);
	wg_device_free(wg);
	ctl_map_clear(&map);
	event_base_free(base);
}

/* A full map that lists one node key under two ids: magicsock keeps one
 * peer for it (the first), however big the map (the check is a sort, not a
 * comparison of every pair). */
static void test_full_map_key_twice(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	uint8_t priv[32], pub[32];
	memset(priv, 5, 32);
	crypto_scalarmult_base(pub, priv);
	struct wg_device *wg = wg_device_new(base, priv);
	assert_non_null(wg);
	assert_int_equal(wg_device_listen(wg, 0), 0);
	struct magicsock_config mc = {.base = base, .wg = wg};
	memcpy(mc.node_priv, priv, 32);
	memcpy(mc.node_pub, pub, 32);
	memset(mc.disco_priv, 6, 32);
	crypto_scalarmult_base(mc.disco_pub, mc.disco_priv);
	char err[160];
	struct magicsock *ms = magicsock_new(&mc, err, sizeof(err));
	assert_non_null(ms);
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.peers = calloc(4, sizeof(*map.peers));
	assert_non_null(map.peers);
	make_peer(&map.peers[0], 2, 1, 40000);
	make_peer(&map.peers[1], 3, 2, 40000);
	make_peer(&map.peers[2], 4, 1, 40000); /* peer 2's key again */
	make_peer(&map.peers[3], 5, 3, 40000);
	memcpy(map.peers[3].node_key, pub, 32); /* our own key: never a peer */
	map.n_peers = 4;
	assert_int_equal(magicsock_set_map(ms, &map), 0);
	assert_int_equal(magicsock_peer_count(ms), 2);
	assert_int_equal(magicsock_set_map(ms, &map), 0); /* again: the same */
	assert_int_equal(magicsock_peer_count(ms), 2);
	magicsock_free(ms);
	wg_device_free(wg);
	ctl_map_clear(&map);
	event_base_free(base);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_peer_deltas_cost_what_they_change),
	    cmocka_unit_test(test_device_matches_rebuild),
	    cmocka_unit_test(test_full_map_key_twice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
