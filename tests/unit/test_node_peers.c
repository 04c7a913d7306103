/* node/peers: the network map applied to a WireGuard device.
 *  - a first map adds every peer with its allowed IPs and first endpoint;
 *  - a second map adds the new, updates the changed (allowed IPs,
 *    endpoints) and removes the gone; static [Peer] keys and our own key
 *    are never touched;
 *  - a peer whose key changed under the same id is replaced;
 *  - an idle peer keeps its endpoint; with handshake attempts and no
 *    answer it moves to the next candidate after NP_CANDIDATE_MS;
 *  - names resolve as "name", "NAME.", "name.<domain>", ours included;
 *    other domains do not; reverse lookup finds the owner. */
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

#include "core/util/hostname.h"
#include "core/wg/device.h"
#include "node/peers.h"

static void make_peer(struct ctl_peer *p, uint64_t id, const char *name, unsigned k)
{
	char buf[64];
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->name, sizeof(p->name), "%s", name);
	uint8_t priv[32];
	memset(priv, (int)k, sizeof(priv));
	crypto_scalarmult_base(p->node_key, priv);
	snprintf(buf, sizeof(buf), "100.64.0.%u", k);
	assert_true(ctl_ip_parse(buf, &p->addrs[0]));
	snprintf(buf, sizeof(buf), "fd00::%u", k);
	assert_true(ctl_ip_parse(buf, &p->addrs[1]));
	p->n_addrs = 2;
	snprintf(buf, sizeof(buf), "100.64.0.%u/32", k);
	assert_true(ctl_prefix_parse(buf, &p->allowed[0]));
	p->n_allowed = 1;
	snprintf(buf, sizeof(buf), "127.0.0.1:%u", 20000 + k);
	assert_true(ctl_endpoint_parse(buf, &p->eps[0]));
	snprintf(buf, sizeof(buf), "127.0.0.2:%u", 20000 + k);
	assert_true(ctl_endpoint_parse(buf, &p->eps[1]));
	p->n_eps = 2;
}

static void make_map(struct ctl_map_full *m, struct ctl_peer *peers, size_t n,
                     uint64_t version)
{
	memset(m, 0, sizeof(*m));
	m->version = version;
	snprintf(m->self_name, sizeof(m->self_name), "me");
	assert_true(ctl_ip_parse("100.64.0.1", &m->self_addrs[0]));
	m->n_self_addrs = 1;
	snprintf(m->dns_domain, sizeof(m->dns_domain), "mesh.internal");
	m->peers = peers;
	m->n_peers = n;
}

static bool has_route(struct wg_device *wg, const char *ip)
{
	uint8_t a[16] = {0};
	assert_int_equal(inet_pton(AF_INET, ip, a), 1);
	return wg_device_has_route(wg, AF_INET, a);
}

static uint16_t endpoint_port(struct wg_device *wg, const uint8_t *key, char *host)
{
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(wg, key, &pi), 0);
	const struct sockaddr_in *s = (const struct sockaddr_in *)&pi.endpoint;
	assert_int_equal(s->sin_family, AF_INET);
	inet_ntop(AF_INET, &s->sin_addr, host, 16);
	return ntohs(s->sin_port);
}

static void test_reconcile(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	uint8_t priv[32], pub[32], spriv[32], spub[32];
	memset(priv, 1, 32);
	crypto_scalarmult_base(pub, priv);
	memset(spriv, 99, 32);
	crypto_scalarmult_base(spub, spriv);
	struct wg_device *wg = wg_device_new(base, priv);
	assert_non_null(wg);
	/* a static [Peer] */
	struct wg_allowed_ip sip = {.family = AF_INET, .cidr = 32};
	inet_pton(AF_INET, "100.73.9.9", sip.addr);
	struct wg_peer_config sc = {.allowed_ips = &sip, .n_allowed_ips = 1};
	memcpy(sc.public_key, spub, 32);
	assert_non_null(wg_device_add_peer(wg, &sc, NULL));

	uint8_t keys[2][32];
	memcpy(keys[0], spub, 32);
	memcpy(keys[1], pub, 32);
	struct node_peers np;
	assert_int_equal(node_peers_init(&np, (const uint8_t(*)[32])keys, 2), 0);

	struct ctl_peer p1[3];
	make_peer(&p1[0], 10, "alpha", 2);
	make_peer(&p1[1], 11, "beta", 3);
	make_peer(&p1[2], 12, "static-twin", 99); /* the static peer's key */
	struct ctl_map_full m;
	make_map(&m, p1, 3, 1);
	struct np_result r;
	assert_int_equal(node_peers_reconcile(&np, wg, &m, 0, &r), 0);
	assert_int_equal(r.added, 2);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(wg_device_peer_count(wg), 3);
	assert_true(has_route(wg, "100.64.0.2"));
	assert_true(has_route(wg, "100.64.0.3"));
	assert_true(has_route(wg, "100.73.9.9"));
	char host[16];
	assert_int_equal(endpoint_port(wg, p1[0].node_key, host), 20002);
	assert_string_equal(host, "127.0.0.1");

	/* v2: alpha gone, beta's allowed IPs change, gamma new, static twin stays */
	struct ctl_peer p2[3];
	p2[0] = p1[1];
	assert_true(ctl_prefix_parse("100.64.7.0/24", &p2[0].allowed[0]));
	make_peer(&p2[1], 12, "static-twin", 99);
	make_peer(&p2[2], 13, "gamma", 4);
	make_map(&m, p2, 3, 2);
	assert_int_equal(node_peers_reconcile(&np, wg, &m, 1000, &r), 0);
	assert_int_equal(r.removed, 1);
	assert_int_equal(r.updated, 1);
	assert_int_equal(r.added, 1);
	assert_int_equal(wg_device_peer_count(wg), 3);
	assert_false(has_route(wg, "100.64.0.2"));
	assert_false(has_route(wg, "100.64.0.3"));
	assert_true(has_route(wg, "100.64.7.5"));
	assert_true(has_route(wg, "100.64.0.4"));
	assert_true(has_route(wg, "100.73.9.9"));

	/* v3: gamma's key changes under the same id */
	struct ctl_peer old_gamma = p2[2];
	make_peer(&p2[2], 13, "gamma", 5);
	make_map(&m, p2, 3, 3);
	assert_int_equal(node_peers_reconcile(&np, wg, &m, 2000, &r), 0);
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(wg, old_gamma.node_key, &pi),
	                 -ENOENT);
	assert_int_equal(wg_device_peer_info_by_key(wg, p2[2].node_key, &pi), 0);
	assert_true(has_route(wg, "100.64.0.5"));

	/* candidates: idle (no handshake attempt) -> stays */
	node_peers_tick(&np, wg, 10000, 1000);
	assert_int_equal(endpoint_port(wg, p2[2].node_key, host), 20005);
	assert_string_equal(host, "127.0.0.1");
	/* attempts without an answer -> next endpoint after 5 s, then wraps */
	assert_int_equal(wg_device_listen(wg, 0), 0);
	wg_device_handshake_all(wg);
	assert_int_equal(wg_device_peer_info_by_key(wg, p2[2].node_key, &pi), 0);
	assert_true(pi.handshakes_sent > 0);
	node_peers_tick(&np, wg, 10000 + NP_CANDIDATE_MS - 1, 1000);
	assert_int_equal(endpoint_port(wg, p2[2].node_key, host), 20005);
	assert_string_equal(host, "127.0.0.1");
	node_peers_tick(&np, wg, 10000 + NP_CANDIDATE_MS, 1000);
	endpoint_port(wg, p2[2].node_key, host);
	assert_string_equal(host, "127.0.0.2");
	/* no new attempt on the new candidate yet: it stays */
	node_peers_tick(&np, wg, 10000 + 2 * NP_CANDIDATE_MS, 1000);
	endpoint_port(wg, p2[2].node_key, host);
	assert_string_equal(host, "127.0.0.2");

	/* names */
	struct ns_addr a[4];
	assert_int_equal(node_peers_resolve(&np, "beta", a, 4), 2);
	assert_int_equal(a[0].family, AF_INET);
	assert_int_equal(a[0].addr[3], 3);
	assert_int_equal(a[1].family, AF_INET6);
	assert_int_equal(node_peers_resolve(&np, "BETA.", a, 4), 2);
	assert_int_equal(node_peers_resolve(&np, "beta.Mesh.Internal.", a, 4), 2);
	assert_int_equal(node_peers_resolve(&np, "beta.example.com", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "alpha", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "me.mesh.internal", a, 4), 1);
	assert_int_equal(node_peers_resolve(&np, "beta", a, 1), 1);
	char name[64];
	assert_true(node_peers_reverse(&np, &a[0], name, sizeof(name)));
	assert_string_equal(name, "beta");
	struct ns_addr self = {.family = AF_INET};
	inet_pton(AF_INET, "100.64.0.1", self.addr);
	assert_true(node_peers_reverse(&np, &self, name, sizeof(name)));
	assert_string_equal(name, "me");
	inet_pton(AF_INET, "100.64.0.77", self.addr);
	assert_false(node_peers_reverse(&np, &self, name, sizeof(name)));

	/* an empty map removes every map peer, the static one stays */
	make_map(&m, NULL, 0, 4);
	assert_int_equal(node_peers_reconcile(&np, wg, &m, 3000, &r), 0);
	assert_int_equal(r.removed, 2);
	assert_int_equal(wg_device_peer_count(wg), 1);
	node_peers_free(&np);
	wg_device_free(wg);
	event_base_free(base);
}

/* Map first (no device yet, as at start before registration), then apply. */
static void test_apply_later(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	uint8_t priv[32];
	memset(priv, 1, 32);
	struct wg_device *wg = wg_device_new(base, priv);
	struct node_peers np;
	assert_int_equal(node_peers_init(&np, NULL, 0), 0);
	struct ctl_peer p[1];
	make_peer(&p[0], 10, "alpha", 2);
	struct ctl_map_full m;
	make_map(&m, p, 1, 1);
	assert_int_equal(node_peers_reconcile(&np, NULL, &m, 0, NULL), 0);
	assert_int_equal(wg_device_peer_count(wg), 0);
	struct np_result r;
	node_peers_apply(&np, wg, 0, &r);
	assert_int_equal(r.added, 1);
	assert_true(has_route(wg, "100.64.0.2"));
	node_peers_free(&np);
	wg_device_free(wg);
	event_base_free(base);
}

/* A map peer named localhost or wpad (an older or hostile server) never
 * answers for those names: they are reserved, so lookups fall through to
 * the system (and its loopback, which Direct refuses anyway). */
static void test_reserved_names_never_from_the_mesh(void **state)
{
	(void)state;
	struct node_peers np;
	assert_int_equal(node_peers_init(&np, NULL, 0), 0);
	struct ctl_peer p[3];
	make_peer(&p[0], 10, "localhost", 2);
	make_peer(&p[1], 11, "wpad", 3);
	make_peer(&p[2], 12, "web", 4);
	struct ctl_map_full m;
	make_map(&m, p, 3, 1);
	assert_int_equal(node_peers_reconcile(&np, NULL, &m, 0, NULL), 0);
	struct ns_addr a[4];
	assert_int_equal(node_peers_resolve(&np, "localhost", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "LOCALHOST.", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "wpad", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "wpad.mesh.internal", a, 4), 0);
	assert_int_equal(node_peers_resolve(&np, "web", a, 4), 2);
	node_peers_free(&np);
	/* The rule itself. */
	assert_true(hostname_reserved("localhost"));
	assert_true(hostname_reserved("WPAD"));
	assert_true(hostname_reserved("app-localhost"));
	assert_true(hostname_reserved("metadata"));
	assert_false(hostname_reserved("web"));
	assert_false(hostname_reserved("localhost2"));
	assert_false(hostname_reserved(NULL));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reconcile),
	    cmocka_unit_test(test_apply_later),
	    cmocka_unit_test(test_reserved_names_never_from_the_mesh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
