#include "node/peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/control/client.h"
#include "core/util/hostname.h"
#include "core/util/log.h"
#include "core/wg/device.h"

int node_peers_init(struct node_peers *np, const uint8_t (*keys)[CTL_KEY_LEN],
                    size_t n_keys)
{
	memset(np, 0, sizeof(*np));
	np->static_keys = calloc(n_keys + 1, CTL_KEY_LEN);
	if (!np->static_keys)
		return -ENOMEM;
	if (n_keys)
		memcpy(np->static_keys, keys, n_keys * CTL_KEY_LEN);
	np->n_static = n_keys;
	return 0;
}

void node_peers_free(struct node_peers *np)
{
	free(np->e);
	free(np->static_keys);
	memset(np, 0, sizeof(*np));
}

static bool np_is_static(const struct node_peers *np, const uint8_t *key)
{
	for (size_t i = 0; i < np->n_static; i++)
		if (memcmp(np->static_keys[i], key, CTL_KEY_LEN) == 0)
			return true;
	return false;
}

static void np_endpoint(const struct ctl_endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->family == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(ep->port);
		memcpy(&s->sin_addr, ep->addr, 4);
	} else if (ep->family == 6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(ep->port);
		memcpy(&s->sin6_addr, ep->addr, 16);
	}
}

/* The device config of an entry: allowed IPs into ips (CTL_ALLOWED_MAX),
 * endpoint = the current candidate. */
static void np_config(const struct np_entry *e, struct wg_peer_config *pc,
                      struct wg_allowed_ip *ips)
{
	memset(pc, 0, sizeof(*pc));
	memcpy(pc->public_key, e->p.node_key, WG_KEY_LEN);
	for (size_t i = 0; i < e->p.n_allowed; i++) {
		const struct ctl_prefix *a = &e->p.allowed[i];
		ips[i].family = a->family == 4 ? AF_INET : AF_INET6;
		memcpy(ips[i].addr, a->addr, 16);
		ips[i].cidr = a->bits;
	}
	pc->allowed_ips = ips;
	pc->n_allowed_ips = e->p.n_allowed;
	if (e->p.n_eps)
		np_endpoint(&e->p.eps[e->cand < e->p.n_eps ? e->cand : 0], &pc->endpoint);
}

static void np_add(struct node_peers *np, struct wg_device *wg, struct np_entry *e,
                   int64_t now_ms, struct np_result *res)
{
	struct wg_allowed_ip ips[CTL_ALLOWED_MAX];
	struct wg_peer_config pc;
	e->in_wg = false;
	e->working = false;
	e->cand = 0;
	e->cand_since_ms = now_ms;
	if (np_is_static(np, e->p.node_key)) {
		log_debug("map peer %s: same key as a static [Peer] or ours; left alone",
		          e->p.name);
		res->skipped++;
		return;
	}
	if (!wg)
		return;
	np_config(e, &pc, ips);
	int err = 0;
	if (!wg_device_add_peer(wg, &pc, &err)) {
		log_warn("map peer %s: cannot add: %s", e->p.name, strerror(-err));
		res->failed++;
		return;
	}
	e->in_wg = true;
	res->added++;
}

static bool np_same_eps(const struct ctl_peer *a, const struct ctl_peer *b)
{
	return a->n_eps == b->n_eps &&
	       memcmp(a->eps, b->eps, a->n_eps * sizeof(a->eps[0])) == 0;
}

static bool np_same_allowed(const struct ctl_peer *a, const struct ctl_peer *b)
{
	return a->n_allowed == b->n_allowed &&
	       memcmp(a->allowed, b->allowed, a->n_allowed * sizeof(a->allowed[0])) == 0;
}

/* old -> e (same id and key): updates what changed in the device. */
static void np_update(struct wg_device *wg, const struct np_entry *old,
                      struct np_entry *e, int64_t now_ms, struct np_result *res)
{
	e->in_wg = old->in_wg;
	e->working = old->working;
	e->cand = old->cand;
	e->cand_since_ms = old->cand_since_ms;
	e->hs_sent_mark = old->hs_sent_mark;
	e->exposed = old->exposed;
	if (!e->in_wg || !wg)
		return;
	unsigned mask = 0;
	if (!np_same_allowed(&old->p, &e->p))
		mask |= WG_PEER_UPD_ALLOWED_IPS;
	if (!np_same_eps(&old->p, &e->p)) {
		/* Keep the candidate in use if it is still listed. */
		bool found = false;
		for (uint8_t i = 0; old->cand < old->p.n_eps && i < e->p.n_eps; i++) {
			if (memcmp(&e->p.eps[i], &old->p.eps[old->cand],
			           sizeof(e->p.eps[i])) == 0) {
				e->cand = i;
				found = true;
			}
		}
		if (!found && !e->working) {
			e->cand = 0;
			e->cand_since_ms = now_ms;
			if (e->p.n_eps)
				mask |= WG_PEER_UPD_ENDPOINT;
		} else if (!found) {
			e->cand = 0; /* working on a roamed endpoint: keep it */
		}
	}
	if (!mask)
		return;
	struct wg_allowed_ip ips[CTL_ALLOWED_MAX];
	struct wg_peer_config pc;
	np_config(e, &pc, ips);
	int r = wg_device_update_peer(wg, &pc, mask);
	if (r != 0) {
		log_warn("map peer %s: cannot update: %s", e->p.name, strerror(-r));
		res->failed++;
		return;
	}
	res->updated++;
}

static const struct np_entry *np_find_id(const struct np_entry *a, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a[mid].p.id == id)
			return &a[mid];
		if (a[mid].p.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int np_cmp_id(const void *x, const void *y)
{
	const struct np_entry *a = x, *b = y;
	return a->p.id < b->p.id ? -1 : a->p.id > b->p.id;
}

static void np_view(struct node_peers *np, const struct ctl_map_full *map)
{
	np->version = map->version;
	snprintf(np->domain, sizeof(np->domain), "%s", map->dns_domain);
	snprintf(np->self_name, sizeof(np->self_name), "%s", map->self_name);
	snprintf(np->self_user, sizeof(np->self_user), "%s", map->self_user);
	snprintf(np->self_tags, sizeof(np->self_tags), "%s", map->self_tags);
	np->n_self_addrs = map->n_self_addrs;
	memcpy(np->self_addrs, map->self_addrs, sizeof(np->self_addrs));
}

int node_peers_reconcile(struct node_peers *np, struct wg_device *wg,
                         const struct ctl_map_full *map, int64_t now_ms,
                         struct np_result *res)
{
	struct np_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	struct np_entry *ne = calloc(map->n_peers + 1, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	for (size_t i = 0; i < map->n_peers; i++)
		ne[i].p = map->peers[i];
	qsort(ne, map->n_peers, sizeof(*ne), np_cmp_id);
	/* Removals first, so a key that moved to another id can be re-added. */
	for (size_t i = 0; i < np->n; i++) {
		const struct np_entry *o = &np->e[i];
		const struct np_entry *n = np_find_id(ne, map->n_peers, o->p.id);
		if (o->in_wg && wg &&
		    (!n || memcmp(n->p.node_key, o->p.node_key, CTL_KEY_LEN) != 0)) {
			wg_device_remove_peer(wg, o->p.node_key);
			res->removed++;
		}
	}
	for (size_t i = 0; i < map->n_peers; i++) {
		const struct np_entry *o = np_find_id(np->e, np->n, ne[i].p.id);
		if (o && memcmp(o->p.node_key, ne[i].p.node_key, CTL_KEY_LEN) == 0 &&
		    (o->in_wg || !wg))
			np_update(wg, o, &ne[i], now_ms, res);
		else
			np_add(np, wg, &ne[i], now_ms, res);
	}
	free(np->e);
	np->e = ne;
	np->n = map->n_peers;
	np_view(np, map);
	return 0;
}

static int np_cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static size_t np_lower_bound(const struct np_entry *a, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a[mid].p.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Takes the entries whose ids are in gone (sorted) out of np->e: one
 * memmove for a single id, else one pass. */
static void np_drop(struct node_peers *np, const uint64_t *gone, size_t n_gone)
{
	if (n_gone == 1) {
		size_t i = np_lower_bound(np->e, np->n, gone[0]);
		if (i == np->n || np->e[i].p.id != gone[0])
			return;
		memmove(&np->e[i], &np->e[i + 1], (np->n - i - 1) * sizeof(*np->e));
		np->moved += np->n - i - 1;
		np->n--;
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < np->n; i++) {
		if (bsearch(&np->e[i].p.id, gone, n_gone, sizeof(*gone), np_cmp_u64))
			continue;
		if (k != i) {
			np->e[k] = np->e[i];
			np->moved++;
		}
		k++;
	}
	np->n = k;
}

/* Inserts fresh[0..k) (ascending ids, none held; room allocated) from the
 * back: each run of entries moves once. */
static void np_insert(struct node_peers *np, const struct np_entry *fresh, size_t k)
{
	size_t src = np->n;
	for (size_t j = k; j-- > 0;) {
		size_t at = np_lower_bound(np->e, src, fresh[j].p.id);
		memmove(&np->e[at + j + 1], &np->e[at], (src - at) * sizeof(*np->e));
		np->moved += src - at;
		np->e[at + j] = fresh[j];
		src = at;
	}
	np->n += k;
}

/* The key an entry leaves the device with when the map no longer holds it
 * (or holds another key under its id). */
static bool np_key_goes(const struct np_entry *o, const struct ctl_peer *now)
{
	return !now || memcmp(now->node_key, o->p.node_key, CTL_KEY_LEN) != 0;
}

size_t node_peers_gone_keys(const struct node_peers *np, const struct ctl_map_full *map,
                            const struct ctl_map_change *chg, uint8_t (*out)[CTL_KEY_LEN])
{
	size_t k = 0;
	for (size_t i = 0; i < chg->n_removed; i++) {
		const struct np_entry *o = np_find_id(np->e, np->n, chg->removed[i]);
		if (o && np_key_goes(o, ctl_map_find(map, o->p.id)))
			memcpy(out[k++], o->p.node_key, CTL_KEY_LEN);
	}
	for (size_t i = 0; i < chg->n_changed; i++) {
		const struct np_entry *o = np_find_id(np->e, np->n, chg->changed[i]);
		if (o && np_key_goes(o, ctl_map_find(map, o->p.id)))
			memcpy(out[k++], o->p.node_key, CTL_KEY_LEN);
	}
	return k;
}

int node_peers_update(struct node_peers *np, struct wg_device *wg,
                      const struct ctl_map_full *map, const struct ctl_map_change *chg,
                      int64_t now_ms, struct np_result *res)
{
	struct np_result dummy;
	if (!res)
		res = &dummy;
	if (chg->full)
		return node_peers_reconcile(np, wg, map, now_ms, res);
	memset(res, 0, sizeof(*res));
	/* Everything that can fail first: room for the joins, the lists. */
	size_t n_new = 0;
	for (size_t i = 0; i < chg->n_changed; i++)
		if (!np_find_id(np->e, np->n, chg->changed[i]))
			n_new++;
	uint64_t *gone = calloc(chg->n_removed + chg->n_changed + 1, sizeof(*gone));
	struct np_entry *fresh = calloc(n_new + 1, sizeof(*fresh));
	if (!gone || !fresh) {
		free(gone);
		free(fresh);
		return -ENOMEM;
	}
	if (n_new) {
		struct np_entry *ne = realloc(np->e, (np->n + n_new) * sizeof(*ne));
		if (!ne) {
			free(gone);
			free(fresh);
			return -ENOMEM;
		}
		np->e = ne;
	}
	/* Removals first, so a key that moved to another id can be re-added. */
	size_t n_gone = 0;
	for (size_t i = 0; i < chg->n_removed; i++) {
		const struct np_entry *o = np_find_id(np->e, np->n, chg->removed[i]);
		if (!o || ctl_map_find(map, o->p.id))
			continue;
		if (o->in_wg && wg) {
			wg_device_remove_peer(wg, o->p.node_key);
			res->removed++;
		}
		gone[n_gone++] = o->p.id;
	}
	for (size_t i = 0; i < chg->n_changed; i++) {
		const struct np_entry *o = np_find_id(np->e, np->n, chg->changed[i]);
		const struct ctl_peer *p = ctl_map_find(map, chg->changed[i]);
		if (o && o->in_wg && wg && np_key_goes(o, p)) {
			wg_device_remove_peer(wg, o->p.node_key);
			res->removed++;
		}
		if (o && !p)
			gone[n_gone++] = o->p.id; /* not in the map after all */
	}
	if (n_gone > 1)
		qsort(gone, n_gone, sizeof(*gone), np_cmp_u64);
	if (n_gone)
		np_drop(np, gone, n_gone);
	/* Then the changed: updated where they are, or new. */
	size_t nf = 0;
	for (size_t i = 0; i < chg->n_changed; i++) {
		const struct ctl_peer *p = ctl_map_find(map, chg->changed[i]);
		if (!p)
			continue;
		struct np_entry *o = (struct np_entry *)np_find_id(np->e, np->n, p->id);
		struct np_entry ne;
		memset(&ne, 0, sizeof(ne));
		ne.p = *p;
		np->touched++;
		if (o && !np_key_goes(o, p) && (o->in_wg || !wg)) {
			np_update(wg, o, &ne, now_ms, res);
			*o = ne;
		} else if (o) {
			np_add(np, wg, &ne, now_ms, res);
			*o = ne;
		} else {
			np_add(np, wg, &ne, now_ms, res);
			fresh[nf++] = ne;
		}
	}
	if (nf > 1) {
		qsort(fresh, nf, sizeof(*fresh), np_cmp_id);
		size_t k = 1; /* an id listed twice (never from the client) */
		for (size_t j = 1; j < nf; j++)
			if (fresh[j].p.id != fresh[k - 1].p.id)
				fresh[k++] = fresh[j];
		nf = k;
	}
	if (nf)
		np_insert(np, fresh, nf);
	free(gone);
	free(fresh);
	np_view(np, map);
	return 0;
}

void node_peers_apply(struct node_peers *np, struct wg_device *wg, int64_t now_ms,
                      struct np_result *res)
{
	memset(res, 0, sizeof(*res));
	for (size_t i = 0; i < np->n; i++)
		if (!np->e[i].in_wg)
			np_add(np, wg, &np->e[i], now_ms, res);
}

void node_peers_tick(struct node_peers *np, struct wg_device *wg, int64_t now_ms,
                     int64_t now_unix)
{
	if (!wg)
		return;
	for (size_t i = 0; i < np->n; i++) {
		struct np_entry *e = &np->e[i];
		if (!e->in_wg)
			continue;
		struct wg_peer_info pi;
		if (wg_device_peer_info_by_key(wg, e->p.node_key, &pi) != 0)
			continue;
		bool fresh = pi.last_handshake_unix &&
		             now_unix - pi.last_handshake_unix < NP_SESSION_S;
		if (fresh) {
			e->working = true;
			continue;
		}
		e->working = false;
		if (pi.handshakes_sent <= e->hs_sent_mark) {
			e->cand_since_ms = now_ms; /* idle: not trying to reach it */
			e->hs_sent_mark = pi.handshakes_sent;
			continue;
		}
		if (e->p.n_eps < 2 || now_ms - e->cand_since_ms < NP_CANDIDATE_MS)
			continue;
		e->cand = (uint8_t)((e->cand + 1) % e->p.n_eps);
		e->cand_since_ms = now_ms;
		e->hs_sent_mark = pi.handshakes_sent;
		struct wg_peer_config pc = {0};
		memcpy(pc.public_key, e->p.node_key, WG_KEY_LEN);
		np_endpoint(&e->p.eps[e->cand], &pc.endpoint);
		if (wg_device_update_peer(wg, &pc, WG_PEER_UPD_ENDPOINT) == 0) {
			char ep[CTL_ADDRSTR_MAX];
			ctl_endpoint_format(&e->p.eps[e->cand], ep);
			log_debug("peer %s: no handshake in %d s; trying endpoint %s",
			          e->p.name, NP_CANDIDATE_MS / 1000, ep);
			np->rotations++;
		}
	}
}

/* The label of name if it is a mesh name: "x", "x.", "x.<domain>[.]". */
static bool np_label(const struct node_peers *np, const char *name, char *label,
                     size_t cap)
{
	size_t len = strlen(name);
	if (len && name[len - 1] == '.')
		len--;
	size_t dl = strlen(np->domain);
	const char *dot = memchr(name, '.', len);
	if (dot) {
		size_t ll = (size_t)(dot - name);
		if (!dl || len - ll - 1 != dl ||
		    strncasecmp(dot + 1, np->domain, dl) != 0)
			return false;
		len = ll;
	}
	if (len == 0 || len >= cap)
		return false;
	memcpy(label, name, len);
	label[len] = 0;
	return true;
}

static size_t np_addrs(const struct ctl_ip *a, size_t n, struct ns_addr *out, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < max; i++) {
		out[k].family = a[i].family == 4 ? AF_INET : AF_INET6;
		memset(out[k].addr, 0, sizeof(out[k].addr));
		memcpy(out[k].addr, a[i].addr, a[i].family == 4 ? 4 : 16);
		k++;
	}
	return k;
}

size_t node_peers_resolve(const struct node_peers *np, const char *name,
                          struct ns_addr *out, size_t max)
{
	char label[CTL_LABEL_MAX];
	if (!np_label(np, name, label, sizeof(label)))
		return 0;
	/* Reserved names (localhost, wpad...) never come from the mesh, even
	 * from an older server that let a node take one. */
	if (hostname_reserved(label))
		return 0;
	if (np->self_name[0] && strcasecmp(label, np->self_name) == 0)
		return np_addrs(np->self_addrs, np->n_self_addrs, out, max);
	for (size_t i = 0; i < np->n; i++)
		if (strcasecmp(label, np->e[i].p.name) == 0)
			return np_addrs(np->e[i].p.addrs, np->e[i].p.n_addrs, out, max);
	return 0;
}

static bool np_has_addr(const struct ctl_ip *a, size_t n, const struct ns_addr *x)
{
	int fam = x->family == AF_INET ? 4 : 6;
	for (size_t i = 0; i < n; i++)
		if (a[i].family == fam &&
		    memcmp(a[i].addr, x->addr, fam == 4 ? 4 : 16) == 0)
			return true;
	return false;
}

bool node_peers_reverse(const struct node_peers *np, const struct ns_addr *addr,
                        char *out, size_t cap)
{
	const char *name = NULL;
	if (np_has_addr(np->self_addrs, np->n_self_addrs, addr))
		name = np->self_name;
	for (size_t i = 0; !name && i < np->n; i++)
		if (np_has_addr(np->e[i].p.addrs, np->e[i].p.n_addrs, addr))
			name = np->e[i].p.name;
	if (!name || !name[0])
		return false;
	snprintf(out, cap, "%s", name);
	return true;
}

struct np_entry *node_peers_by_addr(struct node_peers *np, const struct ns_addr *addr)
{
	for (size_t i = 0; i < np->n; i++)
		if (np_has_addr(np->e[i].p.addrs, np->e[i].p.n_addrs, addr))
			return &np->e[i];
	return NULL;
}

const struct np_entry *node_peers_by_key(const struct node_peers *np,
                                         const uint8_t key[CTL_KEY_LEN])
{
	for (size_t i = 0; i < np->n; i++)
		if (memcmp(np->e[i].p.node_key, key, CTL_KEY_LEN) == 0)
			return &np->e[i];
	return NULL;
}
