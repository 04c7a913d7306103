/* magicsock (core/magicsock) with the real pieces on loopback, in one
 * process: a mesh-relay server (servers/relay) with its STUN port, two
 * WireGuard devices each with a magicsock fed a network map that lists the
 * relay and the other node.
 *
 *  - No endpoints in the map: netcheck picks the relay as home (STUN from
 *    the device's own socket gives the public address); with UDP then dead
 *    packets flow through the relay both ways; with UDP alive the
 *    CALL_ME_MAYBE through the relay leads both sides to a direct path.
 *  - Endpoints in the map: disco pings validate the direct path, after
 *    which the relay carries nothing more.
 *  - The direct path dies (every UDP datagram from one side dropped): the
 *    relay takes over once the trust runs out, the owner is told once
 *    (on_path), and packets still arrive.
 *  - A peer whose map endpoints no longer list the validated address
 *    (it moved) loses the trust, so a roamed endpoint stays.
 *  - The relay restarts on the same port: the nodes reconnect and packets
 *    flow again.
 *  - Disco from an unknown key is dropped and counted; spoofed pongs (wrong
 *    key, wrong txid, from an address not pinged, replayed) and replayed
 *    pings change no path and move the drop counters; BIRTHDAY by UDP
 *    and a CALL_ME_MAYBE with a cut NAT trailer are dropped and counted.
 *  - magicsock_ping reports the path each pong took; a relayed peer's
 *    direct attempts back off.
 *  - A BIRTHDAY through the relay: probes only the public IP the peer
 *    advertised as hard and that control saw its connection come from
 *    (seen_ip), not another of its map endpoints; another IP, or the same
 *    request again too soon, is refused and counted. The hard side's 256
 *    pings go only to an easy peer at its seen_ip. One peer's requests
 *    leave another peer its share of the probe budget.
 *  - The same with node 0 started with no_birthday (--no-birthday): its
 *    CALL_ME_MAYBE says nothing of its NAT and the request is refused.
 *  - A hard node (0) against an easy one (1), node 0's own UDP cut: its
 *    birthday sockets find node 1, the winner carries WireGuard, and
 *    still does after node 0's wg peer is removed and added again. */
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
#include <sys/socket.h>
#include <unistd.h>

#include "core/control/msg.h"
#include "core/disco/disco.h"
#include "core/magicsock/birthday.h"
#include "core/magicsock/magicsock.h"
#include "core/netcheck/netcheck.h"
#include "core/relay/client.h"
#include "core/util/sockaddr.h"
#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "servers/relay/relay.h"
#include "wg_test_node.h"

static struct event_base *base;
static struct rly_server *srv;
static uint8_t rpub[32], rpriv[32];
static uint16_t rport, sport;
static struct node nodes[2];
static uint8_t dpriv[2][32], dpub[2][32];
static struct magicsock *ms[2];
static unsigned changes[2];
static bool drop_udp[2]; /* every datagram node i sends by UDP is dropped */
/* An extra endpoint node 0's map lists for node 1 (NULL: none). */
static const char *extra_ep;
static uint16_t extra_ep_port;
static bool bd_loopback; /* birthday probing may use 127.0.0.1 */
static bool bd_off;      /* node 0 runs with no_birthday (--no-birthday) */
static bool cmm_loopback; /* a CALL_ME_MAYBE may list 127.0.0.1 (one machine) */
static unsigned many_eps; /* node 0's map lists this many more for node 1 */
/* Where control sees node i's connection (seen_ip in the others' maps;
 * NULL: not said), and a third peer in node 0's map (a key only: the
 * test speaks for it through the relay) seen at seen_ip_2. */
static const char *seen_ip[2], *seen_ip_2;
static uint8_t key2_pub[32], key2_priv[32], disco2_pub[32], disco2_priv[32];
/* Node 0's CALL_ME_MAYBEs to node 1 through the relay: all, and those
 * with a NAT trailer (its NAT kind and public address). */
static unsigned cmm_from_0, cmm_trailer_from_0;

static void on_change(void *ctx)
{
	changes[(struct node *)ctx == &nodes[0] ? 0 : 1]++;
}

/* on_path: the changes of the device's path each node reported. */
static struct {
	unsigned n;
	uint8_t key[32];
	bool was_relay, via_relay;
} paths[2];

static void on_path(void *ctx, const uint8_t key[32], bool was_relay, bool via_relay)
{
	int i = (struct node *)ctx == &nodes[0] ? 0 : 1;
	paths[i].n++;
	memcpy(paths[i].key, key, 32);
	paths[i].was_relay = was_relay;
	paths[i].via_relay = via_relay;
}

static uint16_t free_udp_port(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void relay_start(uint16_t want_port)
{
	struct rly_config cfg = {.base = base, .handshake_ms = 2000, .keepalive_s = 5};
	memcpy(cfg.priv, rpriv, 32);
	memcpy(cfg.pub, rpub, 32);
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg.listen;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(want_port);
	cfg.listen_len = sizeof *sin;
	cfg.region = "lab";
	char err[256];
	srv = rly_server_new(&cfg, err, sizeof err);
	assert_non_null(srv);
	struct sockaddr_storage ss;
	socklen_t len;
	rly_server_local(srv, &ss, &len);
	rport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uint8_t keys[3][32];
	memcpy(keys[0], nodes[0].pub, 32);
	memcpy(keys[1], nodes[1].pub, 32);
	memcpy(keys[2], key2_pub, 32);
	assert_int_equal(rly_server_set_admitted(srv, (const uint8_t(*)[32])keys, 3), 0);
	struct sockaddr_in st = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons(sport)};
	assert_int_equal(rly_server_stun_listen(srv, (struct sockaddr *)&st, sizeof st, err,
	                                        sizeof err),
	                 0);
}

static void drop_hook(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
	/* dropped: the direct path is dead (STUN too: the relay is reached
	 * by TCP only) */
}

/* The map node i sees: the relay, and the other node (with its real UDP
 * endpoint when with_eps). */
static void map_entry(int i, bool with_eps, struct ctl_relay *rp, struct ctl_peer *pp)
{
	struct ctl_relay r;
	memset(&r, 0, sizeof(r));
	r.id = 1;
	r.port = rport;
	r.stun_port = sport;
	r.has_key = true;
	memcpy(r.key, rpub, 32);
	snprintf(r.name, sizeof(r.name), "lab-1");
	snprintf(r.region, sizeof(r.region), "lab");
	snprintf(r.host, sizeof(r.host), "127.0.0.1");
	struct ctl_peer p;
	memset(&p, 0, sizeof(p));
	int o = 1 - i;
	p.id = (uint64_t)o + 1;
	snprintf(p.name, sizeof(p.name), "node%d", o);
	memcpy(p.node_key, nodes[o].pub, 32);
	memcpy(p.disco_key, dpub[o], 32);
	p.home_relay = 1;
	if (with_eps) {
		p.n_eps = 1;
		p.eps[0].family = 4;
		p.eps[0].port = wg_device_port(nodes[o].dev);
		p.eps[0].addr[0] = 127;
		p.eps[0].addr[3] = 1;
	}
	if (extra_ep && i == 0) {
		struct in_addr a;
		assert_int_equal(inet_pton(AF_INET, extra_ep, &a), 1);
		p.eps[p.n_eps].family = 4;
		p.eps[p.n_eps].port = extra_ep_port;
		memcpy(p.eps[p.n_eps].addr, &a, 4);
		p.n_eps++;
	}
	for (unsigned k = 0; i == 0 && k < many_eps && p.n_eps < CTL_ENDPOINTS_MAX; k++) {
		p.eps[p.n_eps].family = 4;
		p.eps[p.n_eps].port = 4000;
		p.eps[p.n_eps].addr[0] = 198;
		p.eps[p.n_eps].addr[1] = 18;
		p.eps[p.n_eps].addr[2] = 78;
		p.eps[p.n_eps].addr[3] = (uint8_t)(k + 1);
		p.n_eps++;
	}
	if (seen_ip[o]) {
		p.seen_ip.family = 4;
		assert_int_equal(inet_pton(AF_INET, seen_ip[o], p.seen_ip.addr), 1);
	}
	*rp = r;
	*pp = p;
}

static void feed_map(int i, bool with_eps)
{
	struct ctl_relay r;
	struct ctl_peer p;
	map_entry(i, with_eps, &r, &p);
	struct ctl_peer two[2] = {p};
	if (seen_ip_2 && i == 0) { /* the third peer, for node 0 */
		struct ctl_peer *q = &two[1];
		q->id = 3;
		snprintf(q->name, sizeof(q->name), "node2");
		memcpy(q->node_key, key2_pub, 32);
		memcpy(q->disco_key, disco2_pub, 32);
		q->home_relay = 1;
		q->seen_ip.family = 4;
		assert_int_equal(inet_pton(AF_INET, seen_ip_2, q->seen_ip.addr), 1);
	}
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 1;
	map.relays = &r;
	map.n_relays = 1;
	map.peers = two;
	map.n_peers = seen_ip_2 && i == 0 ? 2 : 1;
	assert_int_equal(magicsock_set_map(ms[i], &map), 0);
}

/* A map delta to node i (magicsock_update_peers): the other node's entry
 * again, with disco key dk (NULL: as before), or (gone) its key left. */
static void feed_delta(int i, bool with_eps, const uint8_t *dk, bool gone)
{
	struct ctl_relay r;
	struct ctl_peer p;
	map_entry(i, with_eps, &r, &p);
	if (dk)
		memcpy(p.disco_key, dk, 32);
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 2;
	map.relays = &r;
	map.n_relays = 1;
	const struct ctl_peer *pp = &p;
	uint8_t key[1][32];
	memcpy(key[0], p.node_key, 32);
	assert_int_equal(magicsock_update_peers(ms[i], &map, gone ? NULL : &pp, gone ? 0 : 1,
	                                        gone ? (const uint8_t(*)[32])key : NULL,
	                                        gone ? 1 : 0),
	                 0);
}

static void start_nodes(bool with_eps)
{
	for (int i = 0; i < 2; i++) {
		int o = 1 - i;
		struct sockaddr_storage ss;
		if (with_eps)
			sin4(&ss, "127.0.0.1", wg_device_port(nodes[o].dev));
		add_peer(&nodes[i], &nodes[o], o + 1, with_eps ? "127.0.0.1" : NULL,
		         with_eps ? wg_device_port(nodes[o].dev) : 0);
		struct magicsock_config mc = {.base = base,
		                              .wg = nodes[i].dev,
		                              .on_change = on_change,
		                              .on_path = on_path,
		                              .ctx = &nodes[i],
		                              .netcheck_timeout_ms = 1000,
		                              .birthday_loopback_for_tests = bd_loopback,
	                              .disco_loopback_for_tests = cmm_loopback,
		                              .no_birthday = bd_off && i == 0};
		memcpy(mc.node_priv, nodes[i].priv, 32);
		memcpy(mc.node_pub, nodes[i].pub, 32);
		memcpy(mc.disco_priv, dpriv[i], 32);
		memcpy(mc.disco_pub, dpub[i], 32);
		char err[160];
		ms[i] = magicsock_new(&mc, err, sizeof err);
		assert_non_null(ms[i]);
	}
	for (int i = 0; i < 2; i++)
		feed_map(i, with_eps);
}

static int setup(void **state)
{
	base = event_base_new();
	crypto_box_keypair(rpub, rpriv);
	sport = free_udp_port();
	memset(changes, 0, sizeof(changes));
	memset(paths, 0, sizeof(paths));
	memset(drop_udp, 0, sizeof(drop_udp));
	extra_ep = NULL;
	bd_loopback = false;
	bd_off = false;
	cmm_loopback = true;
	many_eps = 0;
	seen_ip[0] = seen_ip[1] = seen_ip_2 = NULL;
	crypto_box_keypair(key2_pub, key2_priv);
	crypto_box_keypair(disco2_pub, disco2_priv);
	cmm_from_0 = cmm_trailer_from_0 = 0;
	for (int i = 0; i < 2; i++) {
		node_init(base, &nodes[i]);
		crypto_box_keypair(dpub[i], dpriv[i]);
	}
	relay_start(0);
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < 2; i++) {
		magicsock_free(ms[i]);
		ms[i] = NULL;
		wg_device_free(nodes[i].dev);
	}
	rly_server_free(srv);
	event_base_free(base);
	return 0;
}

static void spin(int ms_)
{
	unsigned never = 0;
	run_until(base, &never, 1, ms_);
}

static bool wait_home(int ms_)
{
	int64_t end = mono_ms() + ms_;
	while (mono_ms() < end) {
		if (magicsock_home(ms[0]) == 1 && magicsock_home(ms[1]) == 1 &&
		    magicsock_report(ms[0]) && magicsock_report(ms[1])) {
			struct magicsock_conn_status cs[2];
			struct relay_client_status rs[2];
			bool up = true;
			for (int i = 0; i < 2; i++)
				up = up && magicsock_conns(ms[i], cs, rs, 2) >= 1 &&
				     rs[0].state == RELAY_CLIENT_CONNECTED;
			if (up)
				return true;
		}
		spin(20);
	}
	return false;
}

static void send_one(int from)
{
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, from + 1, 2 - from);
	assert_int_equal(wg_device_send(nodes[from].dev, pkt, len), 0);
}

static enum ms_path path_of(int i)
{
	struct magicsock_peer_path pp;
	assert_int_equal(magicsock_peer_path(ms[i], nodes[1 - i].pub, &pp), 0);
	return pp.path;
}

/* No endpoints in the map and UDP dead once the home is chosen: only the
 * relay carries anything. */
static void relay_when_udp_dead(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_hook, NULL);
	assert_true(changes[0] >= 1 && changes[1] >= 1); /* home reported */
	/* STUN from the device's socket: the public address is its port */
	struct sockaddr_storage v4, v6;
	magicsock_public_addrs(ms[0], &v4, &v6);
	assert_int_equal(v4.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&v4)->sin_port),
	                 wg_device_port(nodes[0].dev));
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	send_one(1);
	assert_true(run_until(base, &nodes[0].rx_count, 1, 3000));
	assert_int_equal(path_of(0), MS_PATH_RELAY);
	assert_int_equal(path_of(1), MS_PATH_RELAY);
	struct magicsock_peer_path pp;
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_string_equal(pp.relay_region, "lab");
	struct rly_stats st;
	rly_server_get_stats(srv, &st);
	assert_true(st.packets_relayed >= 2);
}

/* No endpoints in the map, UDP works: CALL_ME_MAYBE through the relay
 * gives each side the other's addresses (local and STUN-seen), the pings
 * that follow find the direct path. */
static void call_me_maybe_finds_direct(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && (path_of(0) != MS_PATH_DIRECT || path_of(1) != MS_PATH_DIRECT)) {
		send_one(0);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	assert_int_equal(path_of(1), MS_PATH_DIRECT);
	struct magicsock_stats st0, st1;
	magicsock_get_stats(ms[0], &st0);
	magicsock_get_stats(ms[1], &st1);
	assert_true(st0.call_me_maybe_tx >= 1);
	assert_true(st1.call_me_maybe_rx >= 1);
	assert_true(st0.pongs_rx >= 1 && st1.pongs_rx >= 1);
}

static void direct_when_validated(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	/* pings went out on the first send; a pong makes the path direct */
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && (path_of(0) != MS_PATH_DIRECT || path_of(1) != MS_PATH_DIRECT)) {
		send_one(0);
		send_one(1);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	assert_int_equal(path_of(1), MS_PATH_DIRECT);
	struct magicsock_peer_path pp;
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_true(pp.trusted && pp.pongs_received >= 1 && pp.latency_us > 0);
	struct wg_peer_info a, b;
	wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &a);
	unsigned before = nodes[1].rx_count;
	for (int i = 0; i < 20; i++)
		send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 20, 3000));
	wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &b);
	assert_int_equal(a.relay_tx_bytes, b.relay_tx_bytes); /* nothing more relayed */
	struct magicsock_stats st;
	magicsock_get_stats(ms[1], &st);
	assert_true(st.pings_rx >= 1 && st.disco_drop_bad == 0);
}

static void direct_dies_relay_takes_over(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && path_of(0) != MS_PATH_DIRECT) {
		send_one(0);
		send_one(1);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	/* Node 0's UDP is cut: its pings and WireGuard datagrams vanish. */
	wg_device_set_tx_hook(nodes[0].dev, drop_hook, NULL);
	int64_t cut = mono_ms();
	memset(paths, 0, sizeof(paths));
	end = cut + MS_TRUST_MS + 4000;
	while (mono_ms() < end && path_of(0) != MS_PATH_RELAY) {
		send_one(0);
		spin(100);
	}
	assert_int_equal(path_of(0), MS_PATH_RELAY);
	int64_t took = mono_ms() - cut;
	print_message("direct path cut: relay after %lld ms\n", (long long)took);
	/* The owner hears of it once, when the trust ran out in the device
	 * (a timer, not the next tick), so its TCP connections can go on. */
	int64_t seen = mono_ms();
	assert_true(run_until(base, &paths[0].n, 1, 300));
	print_message("on_path %lld ms after the device switched\n",
	              (long long)(mono_ms() - seen));
	spin(1500);
	assert_int_equal(paths[0].n, 1);
	assert_memory_equal(paths[0].key, nodes[1].pub, 32);
	assert_false(paths[0].was_relay);
	assert_true(paths[0].via_relay);
	unsigned before = nodes[1].rx_count;
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 1, 3000));
}

/* Node 0's device endpoint for node 1 moved to `to` (as a handshake from
 * a new address does: WireGuard roaming). */
static void roam_to(const char *ip, uint16_t port)
{
	struct wg_peer_config pc;
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, nodes[1].pub, 32);
	struct sockaddr_in *s = (struct sockaddr_in *)&pc.endpoint;
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
	assert_int_equal(wg_device_update_peer(nodes[0].dev, &pc, WG_PEER_UPD_ENDPOINT),
	                 0);
}

static uint16_t endpoint_port_of_node1(void)
{
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi), 0);
	return ntohs(((struct sockaddr_in *)&pi.endpoint)->sin_port);
}

/* A peer that moved (its map endpoints no longer list the address disco
 * validated) is no longer trusted there: its roaming handshake from the
 * new address is kept, not undone for the rest of the 6.5 s trust. A map
 * that still lists the validated address keeps the trust (and moves the
 * endpoint back to it). A list can be cut or stale, though: while pongs
 * still come from the address the trust is only shortened to a
 * heartbeat; once they stop it runs out within about one, not 6.5 s. */
static void moved_peer_loses_trust(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && path_of(0) != MS_PATH_DIRECT) {
		send_one(0);
		send_one(1);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	struct magicsock_peer_path pp;
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_true(pp.trusted);
	uint16_t old_port = wg_device_port(nodes[1].dev);

	/* Still listed (one more endpoint beside it): trusted, endpoint back. */
	extra_ep = "198.18.78.9";
	extra_ep_port = 4000;
	roam_to("198.18.78.9", 4000);
	feed_delta(0, true, NULL, false);
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_true(pp.trusted);
	assert_int_equal(endpoint_port_of_node1(), old_port);

	/* Gone from the map, pongs just came: still trusted, for a
	 * heartbeat at most. */
	roam_to("198.18.78.9", 4000);
	feed_delta(0, false, NULL, false);
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_true(pp.trusted);
	assert_int_equal(endpoint_port_of_node1(), old_port);
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi), 0);
	assert_true(pi.direct_trusted);

	/* The peer really left that address (its pongs stop): the trust ends
	 * within about a heartbeat, and a roamed endpoint stays. */
	wg_device_set_tx_hook(nodes[1].dev, drop_hook, NULL);
	int64_t cut = mono_ms();
	end = cut + MS_TRUST_MS;
	do {
		spin(50);
		magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	} while (pp.trusted && mono_ms() < end);
	int64_t took = mono_ms() - cut;
	print_message("trust of a delisted address ran out after %lld ms\n",
	              (long long)took);
	assert_false(pp.trusted);
	assert_true(took <= MS_HEARTBEAT_MS + 1000);
	roam_to("198.18.78.9", 4000);
	spin(1200);
	assert_int_equal(endpoint_port_of_node1(), 4000);
}

/* Our own network changed (magicsock_network_changed): the direct path was
 * validated from the old one, so its trust ends at once, in magicsock and
 * in the device (the relay carries the next packet), and the probing that
 * follows finds the direct path again. */
static void own_network_change_clears_trust(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && path_of(0) != MS_PATH_DIRECT) {
		send_one(0);
		send_one(1);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	magicsock_network_changed(ms[0]);
	struct magicsock_peer_path pp;
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_false(pp.trusted);
	assert_int_equal(pp.path, MS_PATH_RELAY);
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi), 0);
	assert_false(pi.direct_trusted);
	assert_true(pi.via_relay);
	int64_t t0 = mono_ms();
	end = t0 + 5000;
	while (mono_ms() < end && path_of(0) != MS_PATH_DIRECT) {
		send_one(0);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	print_message("direct again %lld ms after the change\n",
	              (long long)(mono_ms() - t0));
	/* The relay connection, whose local address did not go, was kept. */
	struct magicsock_conn_status cs[2];
	struct relay_client_status rs[2];
	assert_true(magicsock_conns(ms[0], cs, rs, 2) >= 1);
	assert_int_equal(rs[0].reconnects, 0);
}

static bool lost_loopback(void *ctx, const struct sockaddr_storage *ss)
{
	(void)ctx;
	return ss->ss_family == AF_INET &&
	       ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
	           htonl(INADDR_LOOPBACK);
}

static bool lost_other(void *ctx, const struct sockaddr_storage *ss)
{
	(void)ctx;
	(void)ss;
	return false;
}

/* Relay connections are redialled only when their local address is gone. */
static void relay_redialled_only_for_its_address(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	assert_int_equal(magicsock_redial_relays(ms[0], lost_other, NULL), 0);
	assert_int_equal(magicsock_redial_relays(ms[0], lost_loopback, NULL), 1);
	struct magicsock_conn_status cs[2];
	struct relay_client_status rs[2];
	assert_true(magicsock_conns(ms[0], cs, rs, 2) >= 1);
	assert_int_equal(rs[0].state, RELAY_CLIENT_BACKOFF);
	assert_true(rs[0].next_attempt_ms <= 2000);
	assert_true(wait_home(5000));
}

static void relay_restart_reconnects(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	uint16_t p = rport;
	rly_server_free(srv);
	spin(300);
	relay_start(p);
	assert_true(wait_home(5000));
	unsigned before = nodes[1].rx_count;
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && nodes[1].rx_count == before) {
		send_one(0);
		spin(100);
	}
	assert_true(nodes[1].rx_count > before);
	struct magicsock_conn_status cs[2];
	struct relay_client_status rs[2];
	assert_true(magicsock_conns(ms[0], cs, rs, 2) >= 1);
	assert_true(rs[0].reconnects >= 1);
}

/* A home relay that answers STUN but whose connection keeps failing (here:
 * the map pins the wrong key) is left out of the next netcheck, and the
 * node moves to a relay it can use. */
static void unusable_home_is_left(void **state)
{
	start_nodes(false);
	/* node 0's map: relay 1 with a wrong key, and nothing else */
	struct ctl_relay r[2];
	memset(r, 0, sizeof(r));
	r[0].id = 1;
	r[0].port = rport;
	r[0].stun_port = sport;
	r[0].has_key = true;
	randombytes_buf(r[0].key, 32);
	snprintf(r[0].name, sizeof(r[0].name), "lab-1");
	snprintf(r[0].region, sizeof(r[0].region), "lab");
	snprintf(r[0].host, sizeof(r[0].host), "127.0.0.1");
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.relays = r;
	map.n_relays = 1;
	assert_int_equal(magicsock_set_map(ms[0], &map), 0);
	int64_t end = mono_ms() + 2000;
	while (mono_ms() < end && magicsock_home(ms[0]) != 1)
		spin(20);
	assert_int_equal(magicsock_home(ms[0]), 1);
	/* unusable for MS_HOME_DOWN_MS */
	struct magicsock_stats st;
	spin(MS_HOME_DOWN_MS + 1500);
	/* a second relay (same server, its right key, as id 2) appears */
	r[1] = r[0];
	r[1].id = 2;
	memcpy(r[1].key, rpub, 32);
	snprintf(r[1].name, sizeof(r[1].name), "lab-2");
	map.n_relays = 2;
	assert_int_equal(magicsock_set_map(ms[0], &map), 0);
	end = mono_ms() + 3000;
	while (mono_ms() < end && magicsock_home(ms[0]) != 2)
		spin(20);
	assert_int_equal(magicsock_home(ms[0]), 2);
	magicsock_get_stats(ms[0], &st);
	assert_true(st.home_changes >= 2);
}

/* A static [Peer] whose key the map also lists is never steered: no
 * relay, its configured endpoint stays (review: paths H1). */
static void static_peer_left_alone(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, "127.0.0.1", wg_device_port(nodes[1].dev));
	add_peer(&nodes[1], &nodes[0], 1, "127.0.0.1", wg_device_port(nodes[0].dev));
	struct sockaddr_storage cfg_ep;
	sin4(&cfg_ep, "127.0.0.1", wg_device_port(nodes[1].dev));
	for (int i = 0; i < 2; i++) {
		struct magicsock_config mc = {.base = base,
		                              .wg = nodes[i].dev,
		                              .netcheck_timeout_ms = 1000,
		                              .skip_keys = (const uint8_t(*)[32])nodes[1 - i].pub,
		                              .n_skip_keys = 1};
		memcpy(mc.node_priv, nodes[i].priv, 32);
		memcpy(mc.node_pub, nodes[i].pub, 32);
		memcpy(mc.disco_priv, dpriv[i], 32);
		memcpy(mc.disco_pub, dpub[i], 32);
		char err[160];
		ms[i] = magicsock_new(&mc, err, sizeof err);
		assert_non_null(ms[i]);
		feed_map(i, false); /* the map lists the other without endpoints */
	}
	assert_true(wait_home(3000));
	for (int i = 0; i < 5; i++)
		send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 5, 3000));
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi), 0);
	assert_false(pi.relay_ok);
	assert_false(pi.via_relay);
	assert_int_equal(pi.relay_tx_bytes, 0);
	assert_int_equal(memcmp(&pi.endpoint, &cfg_ep, sizeof(struct sockaddr_in)), 0);
	struct magicsock_peer_path pp;
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), -ENOENT);
}

/* A peer that reported no home relay (no magicsock, or still measuring)
 * gets plain WireGuard to its endpoint, not the relay (review: paths H2):
 * here node 1 runs no magicsock at all. */
static void peer_without_home_gets_plain_wireguard(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, "127.0.0.1", wg_device_port(nodes[1].dev));
	add_peer(&nodes[1], &nodes[0], 1, "127.0.0.1", wg_device_port(nodes[0].dev));
	struct magicsock_config mc = {.base = base, .wg = nodes[0].dev, .netcheck_timeout_ms = 1000};
	memcpy(mc.node_priv, nodes[0].priv, 32);
	memcpy(mc.node_pub, nodes[0].pub, 32);
	memcpy(mc.disco_priv, dpriv[0], 32);
	memcpy(mc.disco_pub, dpub[0], 32);
	char err[160];
	ms[0] = magicsock_new(&mc, err, sizeof err);
	assert_non_null(ms[0]);
	feed_map(0, true);
	/* the map says node 1 has no home relay */
	struct ctl_relay r;
	memset(&r, 0, sizeof(r));
	r.id = 1;
	r.port = rport;
	r.stun_port = sport;
	r.has_key = true;
	memcpy(r.key, rpub, 32);
	snprintf(r.region, sizeof(r.region), "lab");
	snprintf(r.host, sizeof(r.host), "127.0.0.1");
	struct ctl_peer p;
	memset(&p, 0, sizeof(p));
	p.id = 2;
	snprintf(p.name, sizeof(p.name), "node1");
	memcpy(p.node_key, nodes[1].pub, 32);
	memcpy(p.disco_key, dpub[1], 32);
	p.n_eps = 1;
	p.eps[0].family = 4;
	p.eps[0].port = wg_device_port(nodes[1].dev);
	p.eps[0].addr[0] = 127;
	p.eps[0].addr[3] = 1;
	struct ctl_map_full map = {.version = 2, .relays = &r, .n_relays = 1, .peers = &p, .n_peers = 1};
	assert_int_equal(magicsock_set_map(ms[0], &map), 0);
	int64_t end = mono_ms() + 2000;
	while (mono_ms() < end && magicsock_home(ms[0]) != 1)
		spin(20);
	assert_int_equal(magicsock_home(ms[0]), 1);
	spin(100);
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	send_one(1);
	assert_true(run_until(base, &nodes[0].rx_count, 1, 3000));
	for (int i = 0; i < 10; i++)
		send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, 11, 3000));
	struct wg_peer_info pi;
	wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi);
	assert_false(pi.relay_ok);
	assert_int_equal(pi.relay_tx_bytes, 0);
}

/* A member that registered another node's disco key cannot take that
 * node's disco away: each message is matched to the peer it names
 * (review: paths M2). */
static void shared_disco_key_matched_by_content(void **state)
{
	start_nodes(true);
	/* node 0's map: node 1, and an impostor X with node 1's disco key */
	struct ctl_relay r;
	memset(&r, 0, sizeof(r));
	r.id = 1;
	r.port = rport;
	r.stun_port = sport;
	r.has_key = true;
	memcpy(r.key, rpub, 32);
	snprintf(r.region, sizeof(r.region), "lab");
	snprintf(r.host, sizeof(r.host), "127.0.0.1");
	struct ctl_peer p[2];
	memset(p, 0, sizeof(p));
	for (int i = 0; i < 2; i++) {
		p[i].id = (uint64_t)i + 10;
		snprintf(p[i].name, sizeof(p[i].name), "p%d", i);
		memcpy(p[i].disco_key, dpub[1], 32);
		p[i].home_relay = 1;
		p[i].n_eps = 1;
		p[i].eps[0].family = 4;
		p[i].eps[0].port = wg_device_port(nodes[1].dev);
		p[i].eps[0].addr[0] = 127;
		p[i].eps[0].addr[3] = 1;
	}
	randombytes_buf(p[0].node_key, 32); /* the impostor sorts anywhere */
	memcpy(p[1].node_key, nodes[1].pub, 32);
	struct ctl_map_full map = {.version = 3, .relays = &r, .n_relays = 1, .peers = p, .n_peers = 2};
	assert_int_equal(magicsock_set_map(ms[0], &map), 0);
	assert_true(wait_home(3000));
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end && (path_of(0) != MS_PATH_DIRECT || path_of(1) != MS_PATH_DIRECT)) {
		send_one(0);
		send_one(1);
		spin(50);
	}
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	assert_int_equal(path_of(1), MS_PATH_DIRECT);
}

/* A relay that said "not here" for a peer (it had not connected yet) does
 * not keep the relay off that peer's path: a few seconds later the relay
 * carries its packets again, with nothing else happening. */
static void peer_gone_expires(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_hook, NULL);
	/* node 1 leaves the relay: its magicsock goes */
	magicsock_free(ms[1]);
	ms[1] = NULL;
	spin(200);
	send_one(0); /* the relay answers PEER_GONE */
	int64_t end = mono_ms() + 2000;
	struct magicsock_stats st;
	do {
		spin(20);
		magicsock_get_stats(ms[0], &st);
	} while (mono_ms() < end && st.peer_gone == 0);
	assert_true(st.peer_gone >= 1);
	struct wg_peer_info pi;
	wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi);
	assert_false(pi.relay_ok);
	/* node 1 comes back on the relay; node 0 hears nothing from it */
	struct magicsock_config mc = {.base = base, .wg = nodes[1].dev, .netcheck_timeout_ms = 1000};
	memcpy(mc.node_priv, nodes[1].priv, 32);
	memcpy(mc.node_pub, nodes[1].pub, 32);
	memcpy(mc.disco_priv, dpriv[1], 32);
	memcpy(mc.disco_pub, dpub[1], 32);
	char err[160];
	ms[1] = magicsock_new(&mc, err, sizeof err);
	assert_non_null(ms[1]);
	feed_map(1, false);
	end = mono_ms() + 6000;
	do {
		spin(50);
		wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi);
	} while (mono_ms() < end && !pi.relay_ok);
	assert_true(pi.relay_ok);
	unsigned before = nodes[1].rx_count;
	send_one(0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 1, 3000));
}

/* Second review L-2: a delta that changes only the relay list and drops
 * node 0's relay closes its connection; the peer that relay reached is
 * told at once (relay_ok false), not at its next send or a connection
 * state change. Before, magicsock_update_peers refreshed only the peers
 * the delta named, and a relay-only delta names none. */
static void relay_only_delta_refreshes_paths(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	struct wg_peer_info pi;
	int64_t end = mono_ms() + 3000;
	do {
		spin(20);
		wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi);
	} while (mono_ms() < end && !pi.relay_ok);
	assert_true(pi.relay_ok);
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 2; /* no relays, no peers changed */
	assert_int_equal(magicsock_update_peers(ms[0], &map, NULL, 0, NULL, 0), 0);
	assert_int_equal(magicsock_relay_count(ms[0]), 0);
	wg_device_peer_info_by_key(nodes[0].dev, nodes[1].pub, &pi);
	assert_false(pi.relay_ok);
}

static void unknown_disco_dropped(void **state)
{
	start_nodes(true);
	uint8_t stranger_pub[32], stranger_priv[32], shared[32];
	crypto_box_keypair(stranger_pub, stranger_priv);
	assert_int_equal(disco_shared(shared, dpub[0], stranger_priv), 0);
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PING;
	m.version = 1;
	randombytes_buf(m.txid, sizeof(m.txid));
	memcpy(m.node_key, nodes[1].pub, 32); /* claims to be node 1 */
	uint8_t buf[DISCO_MAX_LEN];
	size_t n = disco_seal(buf, sizeof(buf), stranger_pub, shared, &m);
	assert_true(n > 0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage to;
	sin4(&to, "127.0.0.1", wg_device_port(nodes[0].dev));
	assert_true(sendto(fd, buf, n, 0, (struct sockaddr *)&to, sizeof(struct sockaddr_in)) > 0);
	/* and a datagram that is neither WireGuard, disco nor STUN */
	assert_true(sendto(fd, "hello", 5, 0, (struct sockaddr *)&to, sizeof(struct sockaddr_in)) > 0);
	spin(300);
	close(fd);
	struct magicsock_stats st;
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.disco_drop_unknown, 1);
	assert_int_equal(st.pings_rx, 0);
	assert_true(st.other_drop >= 1);
}

/* ---- backoff of direct attempts (issue 14) ---- */

/* Drops what node *ctx sends by UDP except STUN to the relay, which goes
 * out from the device's own socket: the path to the peer is dead, but
 * netcheck keeps seeing the same public address (so no endpoint change
 * restarts the backoff). */
static void drop_but_stun_hook(void *ctx, const struct sockaddr *to, const uint8_t *buf,
                               size_t len)
{
	const struct node *n = ctx;
	if (to->sa_family == AF_INET && ntohs(((const struct sockaddr_in *)to)->sin_port) == sport)
		(void)sendto(n->dev->fd4, buf, len, 0, to, sizeof(struct sockaddr_in));
}

/* A peer that stays relayed while traffic flows is re-tried with backoff:
 * the second gap between attempts (each sends a CALL_ME_MAYBE through the
 * relay) is about twice the first, not the same 5 s forever; a new
 * endpoint in the map starts over at once. */
static void relayed_retry_backs_off(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_but_stun_hook, &nodes[i]);
	int64_t t[3];
	int n = 0;
	struct magicsock_stats st;
	magicsock_get_stats(ms[0], &st);
	uint64_t last = st.call_me_maybe_tx;
	int64_t end = mono_ms() + 21000;
	while (mono_ms() < end && n < 3) {
		send_one(0);
		spin(50);
		magicsock_get_stats(ms[0], &st);
		if (st.call_me_maybe_tx != last) {
			last = st.call_me_maybe_tx;
			t[n++] = mono_ms();
		}
	}
	assert_int_equal(n, 3);
	int64_t g1 = t[1] - t[0], g2 = t[2] - t[1];
	print_message("direct attempts on a relayed peer: gaps %lld ms, %lld ms\n",
	              (long long)g1, (long long)g2);
	/* Each gap is the backoff's (+-10 %) plus up to a second: the device
	 * calls the untrusted hook at most once a second. Without backoff both
	 * gaps are 5-6 s; with it the second is at least 9 s. */
	assert_true(g1 >= MS_RETRY_MIN_MS * 9 / 10 - 100);
	assert_true(g1 <= MS_RETRY_MIN_MS * 11 / 10 + 1500);
	assert_true(g2 >= 2 * MS_RETRY_MIN_MS * 9 / 10 - 100);
	assert_true(g2 <= 2 * MS_RETRY_MIN_MS * 11 / 10 + 1500);
	/* The map gives the peer an endpoint: the next send tries at once
	 * (after the 5 s floor between rounds), not 20 s later. */
	while (mono_ms() - t[2] < MS_PING_ALL_MS + 200)
		spin(50);
	/* (Counted by CALL_ME_MAYBEs, which only node 0's own attempts send:
	 * node 1's attempts make node 0 ping the candidates too.) */
	magicsock_get_stats(ms[0], &st);
	uint64_t before = st.call_me_maybe_tx;
	feed_map(0, true);
	int64_t fed = mono_ms();
	end = fed + 2500;
	while (mono_ms() < end && st.call_me_maybe_tx == before) {
		send_one(0);
		spin(50);
		magicsock_get_stats(ms[0], &st);
	}
	assert_true(st.call_me_maybe_tx > before);
	print_message("after the map change: an attempt %lld ms later\n",
	              (long long)(mono_ms() - fed));
}

/* ---- magicsock_ping ---- */

struct pong_box {
	unsigned n;
	struct magicsock_pong r;
};

static void on_test_pong(void *ctx, const struct magicsock_pong *r)
{
	struct pong_box *b = ctx;
	b->r = *r;
	b->n++;
}

/* A probe says which way the pong came: through the relay (region) while
 * UDP is dead, directly (the peer's address) once it works. */
static void ping_reports_path(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	uint8_t stranger[32];
	randombytes_buf(stranger, 32);
	struct pong_box b = {0};
	assert_int_equal(magicsock_ping(ms[0], stranger, 1000, on_test_pong, &b), -ENOENT);
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_hook, NULL);
	assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 2000, on_test_pong, &b), 0);
	assert_true(run_until(base, &b.n, 1, 3000));
	assert_int_equal(b.r.err, 0);
	assert_int_equal(b.r.path, MS_PATH_RELAY);
	assert_string_equal(b.r.relay_region, "lab");
	assert_true(b.r.latency_us > 0);
	assert_int_equal(path_of(0), MS_PATH_RELAY); /* a relayed pong is no direct path */
	/* UDP works again: probes until one comes back directly */
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, NULL, NULL);
	int64_t end = mono_ms() + 8000;
	bool direct = false;
	while (mono_ms() < end && !direct) {
		unsigned want = b.n + 1;
		assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 1000, on_test_pong, &b), 0);
		assert_true(run_until(base, &b.n, want, 2000));
		direct = b.r.err == 0 && b.r.path == MS_PATH_DIRECT;
		spin(200);
	}
	assert_true(direct);
	struct sockaddr_storage want_sa;
	sin4(&want_sa, "127.0.0.1", wg_device_port(nodes[1].dev));
	assert_true(sockaddr_equal(&b.r.from, &want_sa));
	/* a probe that times out: node 1 gone from UDP and from the relay */
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_hook, NULL);
	magicsock_free(ms[1]);
	ms[1] = NULL;
	unsigned want = b.n + 1;
	assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 300, on_test_pong, &b), 0);
	assert_true(run_until(base, &b.n, want, 2000));
	assert_int_equal(b.r.err, -ETIMEDOUT);
	/* freeing magicsock answers outstanding probes */
	want = b.n + 1;
	assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 5000, on_test_pong, &b), 0);
	magicsock_free(ms[0]);
	ms[0] = NULL;
	assert_int_equal(b.n, want);
	assert_int_equal(b.r.err, -ECANCELED);
}

/* ---- spoofed pongs, replayed pings (issue 14) ---- */

#define TAP_MAX 64
struct tap {
	unsigned n;
	struct sockaddr_storage to[TAP_MAX];
	uint8_t buf[TAP_MAX][DISCO_MAX_LEN];
	size_t len[TAP_MAX];
};
static struct tap taps[2];

/* Records every disco datagram a node sends by UDP; nothing is delivered. */
static void tap_hook(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
	struct tap *t = ctx;
	if (!disco_is_message(buf, len) || t->n >= TAP_MAX || len > DISCO_MAX_LEN)
		return;
	memcpy(&t->to[t->n], to,
	       to->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	memcpy(t->buf[t->n], buf, len);
	t->len[t->n++] = len;
}

/* The last datagram node `from` sent to the other whose plaintext is of
 * type; -1 if none. m gets it. */
static int tap_find(int from, uint8_t type, struct disco_msg *m)
{
	uint8_t shared[32];
	assert_int_equal(disco_shared(shared, dpub[from], dpriv[1 - from]), 0);
	for (int i = (int)taps[from].n - 1; i >= 0; i--)
		if (disco_open(taps[from].buf[i], taps[from].len[i], shared, m) == 0 &&
		    m->type == type)
			return i;
	return -1;
}

/* Sends buf to node 0's WireGuard port from fd (a stranger's socket, or
 * node 1's own, whose address node 0 pings). */
static void send_to_node0(int fd, const uint8_t *buf, size_t len)
{
	struct sockaddr_storage to;
	sin4(&to, "127.0.0.1", wg_device_port(nodes[0].dev));
	assert_true(sendto(fd, buf, len, 0, (struct sockaddr *)&to, sizeof(struct sockaddr_in)) ==
	            (ssize_t)len);
}

/* Node 1's disco key seals m to node 0 (what only node 1 could do). */
static size_t seal_as_node1(uint8_t *buf, const struct disco_msg *m)
{
	uint8_t shared[32];
	assert_int_equal(disco_shared(shared, dpub[0], dpriv[1]), 0);
	size_t n = disco_seal(buf, DISCO_MAX_LEN, dpub[1], shared, m);
	assert_true(n > 0);
	return n;
}

static void spoofed_pongs_change_no_path(void **state)
{
	start_nodes(true);
	assert_true(wait_home(3000));
	memset(taps, 0, sizeof(taps));
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, tap_hook, &taps[i]);
	/* Both send: each pings the other's map endpoint (captured, never
	 * delivered); the relay carries the data. */
	send_one(0);
	send_one(1);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	struct disco_msg ping0, ping1, m;
	int i0 = tap_find(0, DISCO_PING, &ping0), i1 = tap_find(1, DISCO_PING, &ping1);
	assert_true(i0 >= 0 && i1 >= 0);
	struct sockaddr_storage a1;
	sin4(&a1, "127.0.0.1", wg_device_port(nodes[1].dev));
	assert_true(sockaddr_equal(&taps[0].to[i0], &a1)); /* node 0 pinged node 1's port */
	assert_int_equal(path_of(0), MS_PATH_RELAY);
	int stranger = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(stranger >= 0);
	int fd1 = nodes[1].dev->fd4; /* node 1's own socket: the address node 0 pinged */
	struct magicsock_stats s0, s1;
	magicsock_get_stats(ms[0], &s0);
	uint8_t buf[DISCO_MAX_LEN];

	/* 1. A PONG for node 0's real txid sealed with another disco key. */
	uint8_t xpub[32], xpriv[32], xshared[32];
	crypto_box_keypair(xpub, xpriv);
	assert_int_equal(disco_shared(xshared, dpub[0], xpriv), 0);
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PONG;
	m.version = 1;
	memcpy(m.txid, ping0.txid, sizeof(m.txid));
	disco_addr_from_sockaddr(&m.src, (struct sockaddr *)&a1);
	size_t n = disco_seal(buf, sizeof(buf), xpub, xshared, &m);
	send_to_node0(fd1, buf, n);
	/* 2. The right key and txid, from an address node 0 never pinged. */
	n = seal_as_node1(buf, &m);
	send_to_node0(stranger, buf, n);
	/* 3. The right key, from the pinged address, a txid never sent. */
	randombytes_buf(m.txid, sizeof(m.txid));
	n = seal_as_node1(buf, &m);
	send_to_node0(fd1, buf, n);
	/* 4. Node 1's captured PING replayed to node 0 from a stranger: it
	 * costs a PONG (to the stranger) and a PING back, and changes no path,
	 * no candidate and no address the peer is said to be seen at. */
	struct magicsock_peer_path pp0;
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp0), 0);
	send_to_node0(stranger, taps[1].buf[i1], taps[1].len[i1]);
	spin(300);
	{
		struct magicsock_peer_path pp4;
		assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp4), 0);
		assert_int_equal(pp4.n_candidates, pp0.n_candidates);
		assert_int_equal(pp4.seen_src.ss_family, pp0.seen_src.ss_family);
		assert_true(pp0.seen_src.ss_family == 0 ||
		            sockaddr_equal(&pp4.seen_src, &pp0.seen_src));
	}
	magicsock_get_stats(ms[0], &s1);
	assert_int_equal(s1.disco_drop_unknown - s0.disco_drop_unknown, 1);
	assert_int_equal(s1.pongs_unmatched - s0.pongs_unmatched, 2);
	assert_int_equal(s1.pongs_rx, s0.pongs_rx);
	assert_int_equal(s1.pings_rx - s0.pings_rx, 1);
	assert_int_equal(path_of(0), MS_PATH_RELAY);
	struct magicsock_peer_path pp;
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), 0);
	assert_false(pp.trusted);
	assert_int_equal(pp.best.ss_family, 0);

	/* The control: the genuine PONG (node 1's key, the real txid, from
	 * the pinged address) does make the path direct, so the checks
	 * above could have failed. */
	memcpy(m.txid, ping0.txid, sizeof(m.txid));
	n = seal_as_node1(buf, &m);
	send_to_node0(fd1, buf, n);
	int64_t end = mono_ms() + 1000;
	while (mono_ms() < end && path_of(0) != MS_PATH_DIRECT)
		spin(20);
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_true(pp.trusted && sockaddr_equal(&pp.best, &a1));
	uint32_t lat = pp.latency_us;
	/* 5. The same PONG replayed: answered once, counted as unmatched now,
	 * and nothing about the path moves. */
	magicsock_get_stats(ms[0], &s0);
	send_to_node0(fd1, buf, n);
	spin(200);
	magicsock_get_stats(ms[0], &s1);
	assert_int_equal(s1.pongs_unmatched - s0.pongs_unmatched, 1);
	assert_int_equal(s1.pongs_rx, s0.pongs_rx);
	magicsock_peer_path(ms[0], nodes[1].pub, &pp);
	assert_int_equal(pp.latency_us, lat);
	close(stranger);
}

/* Birthday signalling from a real peer's key, by UDP rather than through
 * the relay (a BIRTHDAY asks for 1,500 probes: only the relay, which
 * vouches for the sender, may carry it), or a CALL_ME_MAYBE whose NAT
 * trailer is cut short: dropped and counted, no probing starts. */
static void birthday_signalling_refused(void **state)
{
	start_nodes(true);
	uint8_t shared[32];
	assert_int_equal(disco_shared(shared, dpub[0], dpriv[1]), 0);
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_BIRTHDAY;
	m.version = 1;
	m.pub.family = 4;
	m.pub.addr[0] = 127;
	m.pub.addr[3] = 1;
	m.socks = 256;
	m.probes = 1500;
	uint8_t buf[DISCO_OPEN_MAX];
	size_t n = disco_seal(buf, sizeof(buf), dpub[1], shared, &m);
	assert_true(n > 0);
	/* CALL_ME_MAYBE: no endpoints, then a trailer "hard" with half an
	 * address. */
	const uint8_t cmm[] = {DISCO_CALL_ME_MAYBE, 1, 0, DISCO_NAT_HARD, 4, 0x12};
	uint8_t buf2[DISCO_OPEN_MAX];
	size_t n2 = disco_seal_plain(buf2, sizeof(buf2), dpub[1], shared, NULL, cmm,
	                             sizeof(cmm));
	assert_true(n2 > 0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage to;
	sin4(&to, "127.0.0.1", wg_device_port(nodes[0].dev));
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);
	assert_true(sendto(fd, buf, n, 0, (struct sockaddr *)&to, sizeof(struct sockaddr_in)) > 0);
	assert_true(sendto(fd, buf2, n2, 0, (struct sockaddr *)&to, sizeof(struct sockaddr_in)) >
	            0);
	spin(300);
	close(fd);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.disco_drop_bad, st0.disco_drop_bad + 2);
	assert_int_equal(st.birthday_attempts, 0);
	assert_int_equal(st.birthday_probes_sent, 0);
}

/* Node 0's datagrams to node 1's address (198.18.77.1), to the third
 * peer's (198.18.77.2), and to any other but loopback (the extra map
 * endpoint's port aside: plain disco pings go there, probes do not). */
static unsigned to_home_ip, to_home2_ip, to_foreign_ip;

static void count_hook(void *ctx, const struct sockaddr *to, const uint8_t *buf,
                       size_t len)
{
	if (to->sa_family != AF_INET)
		return;
	uint32_t a = ntohl(((const struct sockaddr_in *)to)->sin_addr.s_addr);
	if (a == 0xC6124D01) /* 198.18.77.1 */
		to_home_ip++;
	else if (a == 0xC6124D02) /* 198.18.77.2 */
		to_home2_ip++;
	else if (a >> 24 != 127 &&
	         ntohs(((const struct sockaddr_in *)to)->sin_port) != extra_ep_port)
		to_foreign_ip++;
}

static void rc_packet(void *ctx, struct relay_client *c, const uint8_t *src_key,
                      const uint8_t *data, size_t len)
{
	uint8_t shared[32];
	struct disco_msg m;
	if (memcmp(src_key, nodes[0].pub, 32) != 0 || !disco_is_message(data, len) ||
	    disco_shared(shared, dpub[0], dpriv[1]) != 0 ||
	    disco_open(data, len, shared, &m) != 0 || m.type != DISCO_CALL_ME_MAYBE)
		return;
	cmm_from_0++;
	if (m.nat != DISCO_NAT_UNKNOWN)
		cmm_trailer_from_0++;
}

static void rc_state(void *ctx, struct relay_client *c, enum relay_client_state st,
                     const char *detail)
{
}

/* A disco message m to node 0 sealed with disco key dpub/dpriv, through
 * the relay (c: a relay connection under that peer's node key). */
static void relay_disco_as(struct relay_client *c, const uint8_t *dk_pub,
                           const uint8_t *dk_priv, const struct disco_msg *m)
{
	uint8_t shared[32], buf[DISCO_MAX_LEN];
	assert_int_equal(disco_shared(shared, dpub[0], dk_priv), 0);
	size_t n = disco_seal(buf, sizeof(buf), dk_pub, shared, m);
	assert_true(n > 0);
	assert_int_equal(relay_client_send(c, nodes[0].pub, buf, n), 0);
	spin(300);
}

/* Node 1's disco message m to node 0, through the relay. */
static void relay_disco(struct relay_client *c, const struct disco_msg *m)
{
	relay_disco_as(c, dpub[1], dpriv[1], m);
}

/* A relay connection under node key pub/priv, connected. */
static struct relay_client *relay_as(const uint8_t *pub, const uint8_t *priv)
{
	static const struct relay_client_callbacks cb = {.on_packet = rc_packet,
	                                                 .on_state = rc_state};
	struct relay_client_config rc = {
	    .base = base, .host = "127.0.0.1", .port = rport, .cb = &cb};
	memcpy(rc.relay_key, rpub, 32);
	memcpy(rc.node_priv, priv, 32);
	memcpy(rc.node_pub, pub, 32);
	char err[160];
	struct relay_client *c = relay_client_new(&rc, err, sizeof err);
	assert_non_null(c);
	for (int i = 0; i < 100 && !relay_client_connected(c); i++)
		spin(20);
	assert_true(relay_client_connected(c));
	return c;
}

/* A CALL_ME_MAYBE saying nat, at pub:port (also its one endpoint). */
static void cmm_msg(struct disco_msg *m, uint8_t nat, const char *pub, uint16_t port)
{
	memset(m, 0, sizeof(*m));
	m->type = DISCO_CALL_ME_MAYBE;
	m->version = 1;
	m->n_eps = 1;
	m->eps[0].family = 4;
	m->eps[0].port = port;
	assert_int_equal(inet_pton(AF_INET, pub, m->eps[0].addr), 1);
	m->nat = nat;
	m->pub = m->eps[0];
}

static void birthday_msg(struct disco_msg *m, const char *ip)
{
	memset(m, 0, sizeof(*m));
	m->type = DISCO_BIRTHDAY;
	m->version = 1;
	m->pub.family = 4;
	assert_int_equal(inet_pton(AF_INET, ip, m->pub.addr), 1);
	m->socks = 256;
	m->probes = 1500;
}

/* Node 0 behind an easy NAT (its UDP to a counting hook: nothing leaves
 * the machine), node 1 replaced by c, a relay connection under its key,
 * which has told node 0: hard, at pub (also its map endpoint). Control
 * sees node 1 at 198.18.77.1. */
static struct relay_client *easy_node0_hard_node1_at(const char *pub)
{
	extra_ep = pub;
	extra_ep_port = 4000;
	seen_ip[1] = "198.18.77.1";
	start_nodes(false);
	assert_true(wait_home(5000));
	magicsock_free(ms[1]); /* node 1 speaks through c below */
	ms[1] = NULL;
	struct netcheck_report *r = (struct netcheck_report *)magicsock_report(ms[0]);
	assert_int_equal(r->global_v4.ss_family, AF_INET);
	r->has_mapping_varies = true;
	r->mapping_varies = false; /* easy */
	to_home_ip = to_home2_ip = to_foreign_ip = 0;
	wg_device_set_tx_hook(nodes[0].dev, count_hook, NULL);
	struct relay_client *c = relay_as(nodes[1].pub, nodes[1].priv);
	struct disco_msg m;
	cmm_msg(&m, DISCO_NAT_HARD, pub, 4000);
	relay_disco(c, &m);
	return c;
}

static struct relay_client *easy_node0_hard_node1(void)
{
	return easy_node0_hard_node1_at("198.18.77.1");
}

/* Node 0 behind an easy NAT; node 1 (a hard one at 198.18.77.1, its map
 * endpoint) asks through the relay. A BIRTHDAY naming an IP node 1 never
 * advertised (a third party) sends nothing and is counted refused; one
 * naming its own advertised IP probes it; asking again at once is refused.
 * Node 0's UDP goes to a counting hook: nothing leaves the machine. */
static void birthday_request_checked(void **state)
{
	struct relay_client *c = easy_node0_hard_node1();
	struct disco_msg m;
	/* Node 0 answered node 1's CALL_ME_MAYBE with its own, saying easy. */
	assert_true(cmm_trailer_from_0 >= 1);
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);

	birthday_msg(&m, "198.18.77.77"); /* not node 1's */
	relay_disco(c, &m);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	assert_int_equal(st.birthday_attempts, 0);
	assert_int_equal(st.birthday_probes_sent, 0);
	assert_int_equal(to_foreign_ip, 0);

	unsigned before = to_home_ip;
	birthday_msg(&m, "198.18.77.1");
	relay_disco(c, &m);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	assert_true(st.birthday_probes_sent >= 20);
	assert_true(to_home_ip - before >= st.birthday_probes_sent);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);

	relay_disco(c, &m); /* again, at once */
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 2);
	assert_int_equal(st.birthday_attempts, 1);
	assert_int_equal(to_foreign_ip, 0);
	relay_client_free(c);
}

/* The same, node 0 with --no-birthday: it does not tell node 1 its NAT
 * kind, and refuses node 1's request for its own advertised IP (which
 * the node without the switch probes above). */
static void birthday_off_refuses(void **state)
{
	bd_off = true;
	struct relay_client *c = easy_node0_hard_node1();
	assert_int_equal(cmm_trailer_from_0, 0);
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);
	unsigned before = to_home_ip;
	struct disco_msg m;
	birthday_msg(&m, "198.18.77.1");
	relay_disco(c, &m);
	spin(500);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	assert_int_equal(st.birthday_attempts, 0);
	assert_int_equal(st.birthday_probes_sent, 0);
	assert_int_equal(to_home_ip, before);
	relay_client_free(c);
}

/* Node i's NAT, as if netcheck had measured it (hard: mapping varies). */
static void force_nat(int i, bool hard)
{
	struct netcheck_report *r = (struct netcheck_report *)magicsock_report(ms[i]);
	assert_non_null(r);
	assert_int_equal(r->global_v4.ss_family, AF_INET);
	r->has_mapping_varies = true;
	r->mapping_varies = hard;
}

static uint64_t relay_tx_of(int i)
{
	struct wg_peer_info pi;
	assert_int_equal(wg_device_peer_info_by_key(nodes[i].dev, nodes[1 - i].pub, &pi),
	                 0);
	return pi.relay_tx_bytes;
}

/* A datagram from node 0 reaches node 1 without the relay, within ms_. */
static bool arrives_direct(int ms_)
{
	int64_t end = mono_ms() + ms_;
	while (mono_ms() < end) {
		unsigned before = nodes[1].rx_count;
		uint64_t relay = relay_tx_of(0);
		send_one(0);
		spin(100);
		if (nodes[1].rx_count > before && relay_tx_of(0) == relay)
			return true;
	}
	return false;
}

static void birthday_win_carries_wireguard(void **state)
{
	bd_loopback = true;
	seen_ip[0] = seen_ip[1] = "127.0.0.1";
	start_nodes(false);
	assert_true(wait_home(5000));
	force_nat(0, true);
	force_nat(1, false);
	/* Node 0's WireGuard socket sends nothing any more: only a birthday
	 * socket can reach node 1. */
	wg_device_set_tx_hook(nodes[0].dev, drop_hook, NULL);
	feed_map(0, true);
	feed_map(1, true);
	struct magicsock_stats st;
	int64_t end = mono_ms() + 15000;
	do {
		send_one(0);
		spin(100);
		magicsock_get_stats(ms[0], &st);
	} while (mono_ms() < end &&
	         !(st.birthday_wins >= 1 && path_of(0) == MS_PATH_DIRECT));
	assert_int_equal(st.birthday_wins, 1);
	assert_int_equal(st.birthday_attempts, 1);
	assert_int_equal(st.birthday_socks_opened, 256);
	struct magicsock_peer_path pp;
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), 0);
	assert_int_equal(pp.path, MS_PATH_DIRECT);
	assert_true(pp.birthday);
	/* WireGuard leaves by the won socket, not the relay. */
	assert_true(arrives_direct(3000));
	/* The wg peer removed and added again (a key moved to another id):
	 * the device forgot the socket; the next path update gives it back
	 * rather than sending from the cut socket while disco, still on the
	 * link, keeps the path trusted. */
	assert_int_equal(wg_device_remove_peer(nodes[0].dev, nodes[1].pub), 0);
	add_peer(&nodes[0], &nodes[1], 2, NULL, 0);
	assert_true(arrives_direct(MS_HEARTBEAT_MS * 3));
	assert_int_equal(path_of(0), MS_PATH_DIRECT);
}


/* ---- issue 14 review, node side: CALL_ME_MAYBE, probes, deltas ---- */

/* A relay connection under node 1's key (node 1's magicsock freed). */
static struct relay_client *node1_by_hand(void)
{
	magicsock_free(ms[1]);
	ms[1] = NULL;
	const struct relay_client_callbacks cb = {.on_packet = rc_packet,
	                                          .on_state = rc_state};
	struct relay_client_config rc = {
	    .base = base, .host = "127.0.0.1", .port = rport, .cb = &cb};
	memcpy(rc.relay_key, rpub, 32);
	memcpy(rc.node_priv, nodes[1].priv, 32);
	memcpy(rc.node_pub, nodes[1].pub, 32);
	char err[160];
	struct relay_client *c = relay_client_new(&rc, err, sizeof err);
	assert_non_null(c);
	for (int i = 0; i < 100 && !relay_client_connected(c); i++)
		spin(20);
	assert_true(relay_client_connected(c));
	return c;
}

static uint16_t lo_port;
static unsigned to_lo, to_lan; /* node 0's datagrams to 127.0.0.1:lo_port, 198.18.77.5 */

static void cmm_count_hook(void *ctx, const struct sockaddr *to, const uint8_t *buf,
                           size_t len)
{
	if (to->sa_family != AF_INET || !disco_is_message(buf, len))
		return;
	const struct sockaddr_in *a = (const struct sockaddr_in *)to;
	if (ntohl(a->sin_addr.s_addr) == 0x7f000001 && ntohs(a->sin_port) == lo_port)
		to_lo++;
	else if (ntohl(a->sin_addr.s_addr) == 0xC6124D05)
		to_lan++;
}

/* Node 1's CALL_ME_MAYBEs (through the relay) list 127.0.0.1:P and
 * 198.18.77.5:4000: node 0 never pings the loopback one (its own host's
 * service), pings the other, and the rounds they start back off: sent at
 * 0, 5.2 and 10.4 s, the third is not answered (the gap is 10 s by then). */
static void cmm_loopback_never_pinged(void **state)
{
	cmm_loopback = false;
	start_nodes(false);
	assert_true(wait_home(5000));
	struct relay_client *c = node1_by_hand();
	lo_port = free_udp_port();
	to_lo = to_lan = 0;
	wg_device_set_tx_hook(nodes[0].dev, cmm_count_hook, NULL);
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_CALL_ME_MAYBE;
	m.version = 1;
	m.n_eps = 2;
	m.eps[0].family = 4;
	m.eps[0].port = lo_port;
	m.eps[0].addr[0] = 127;
	m.eps[0].addr[3] = 1;
	m.eps[1].family = 4;
	m.eps[1].port = 4000;
	assert_int_equal(inet_pton(AF_INET, "198.18.77.5", m.eps[1].addr), 1);
	relay_disco(c, &m);
	assert_int_equal(to_lo, 0);
	assert_int_equal(to_lan, 1);
	spin(4900);
	relay_disco(c, &m);
	assert_int_equal(to_lan, 2);
	spin(4900);
	relay_disco(c, &m);
	assert_int_equal(to_lan, 2); /* backing off */
	assert_int_equal(to_lo, 0);
	relay_client_free(c);
}

/* Probes every 120 ms while the peer is reached only through the relay
 * (node 0's UDP captured, nothing delivered), with 16 candidates: the
 * pings of the first probe are still waiting after the third, so node 1's
 * PONG to the first ping to its real address (slower than the relay's)
 * still makes the path direct. */
static void probe_pings_not_overwritten(void **state)
{
	many_eps = 15;
	start_nodes(true);
	assert_true(wait_home(3000));
	memset(taps, 0, sizeof(taps));
	wg_device_set_tx_hook(nodes[0].dev, tap_hook, &taps[0]);
	wg_device_set_tx_hook(nodes[1].dev, drop_hook, NULL);
	struct pong_box b = {0};
	for (unsigned k = 0; k < 3; k++) {
		assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 1000, on_test_pong, &b), 0);
		assert_true(run_until(base, &b.n, k + 1, 2000));
		assert_int_equal(b.r.path, MS_PATH_RELAY);
		spin(120);
	}
	struct sockaddr_storage a1;
	sin4(&a1, "127.0.0.1", wg_device_port(nodes[1].dev));
	uint8_t shared[32];
	assert_int_equal(disco_shared(shared, dpub[0], dpriv[1]), 0);
	struct disco_msg m;
	int first = -1;
	for (unsigned i = 0; i < taps[0].n && first < 0; i++)
		if (sockaddr_equal(&taps[0].to[i], &a1) &&
		    disco_open(taps[0].buf[i], taps[0].len[i], shared, &m) == 0 &&
		    m.type == DISCO_PING)
			first = (int)i;
	assert_true(first >= 0);
	uint8_t txid[DISCO_TXID_LEN];
	memcpy(txid, m.txid, sizeof(txid));
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PONG;
	m.version = 1;
	memcpy(m.txid, txid, sizeof(m.txid));
	disco_addr_from_sockaddr(&m.src, (struct sockaddr *)&a1);
	uint8_t buf[DISCO_MAX_LEN];
	size_t n = seal_as_node1(buf, &m);
	send_to_node0(nodes[1].dev->fd4, buf, n);
	struct magicsock_peer_path pp;
	int64_t end = mono_ms() + 1000;
	do {
		spin(20);
		assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), 0);
	} while (mono_ms() < end && !pp.best.ss_family);
	assert_true(sockaddr_equal(&pp.best, &a1));
}

/* `ping --disco` for 6 s while the peer is relayed leaves the automatic
 * direct attempts' backoff alone: traffic right after still gets an
 * attempt (a CALL_ME_MAYBE) within 8 s. Had each probe's round counted,
 * the gap would be 20 s by then. */
static void probes_leave_backoff_alone(void **state)
{
	start_nodes(false);
	assert_true(wait_home(3000));
	for (int i = 0; i < 2; i++)
		wg_device_set_tx_hook(nodes[i].dev, drop_but_stun_hook, &nodes[i]);
	struct pong_box b = {0};
	int64_t end = mono_ms() + 6000;
	while (mono_ms() < end) {
		unsigned want = b.n + 1;
		assert_int_equal(magicsock_ping(ms[0], nodes[1].pub, 900, on_test_pong, &b), 0);
		assert_true(run_until(base, &b.n, want, 2000));
		spin(1000);
	}
	struct magicsock_stats st;
	magicsock_get_stats(ms[0], &st);
	uint64_t before = st.call_me_maybe_tx;
	end = mono_ms() + 8000;
	while (mono_ms() < end && st.call_me_maybe_tx == before) {
		send_one(0);
		spin(100);
		magicsock_get_stats(ms[0], &st);
	}
	assert_true(st.call_me_maybe_tx > before);
}

/* A delta gives node 1 a new disco key (it restarted) while node 0 probes
 * for its request: the attempt stops at once, and what the old instance
 * said of its NAT is forgotten (a request from the new one is refused
 * until it says again). */
static void delta_disco_change_ends_attempt(void **state)
{
	struct relay_client *c = easy_node0_hard_node1();
	struct disco_msg m;
	birthday_msg(&m, "198.18.77.1");
	relay_disco(c, &m);
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);
	assert_int_equal(st0.birthday_attempts, 1);
	assert_true(st0.birthday_probes_sent >= 20);
	uint8_t npub[32], npriv[32];
	crypto_box_keypair(npub, npriv);
	feed_delta(0, false, npub, false);
	magicsock_get_stats(ms[0], &st0);
	spin(500);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_probes_sent, st0.birthday_probes_sent);
	/* the new instance's request, with no CALL_ME_MAYBE of its own: refused */
	memcpy(dpub[1], npub, 32);
	memcpy(dpriv[1], npriv, 32);
	relay_disco(c, &m);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	relay_client_free(c);
}

/* The birthday link that carries node 1 is removed by a delta (node 1
 * left the map), then node 1 comes back in another: no path to a gone
 * peer, nothing used after it is freed, and the relay carries it again. */
static void delta_removes_live_link(void **state)
{
	bd_loopback = true;
	seen_ip[0] = seen_ip[1] = "127.0.0.1";
	start_nodes(false);
	assert_true(wait_home(5000));
	force_nat(0, true);
	force_nat(1, false);
	wg_device_set_tx_hook(nodes[0].dev, drop_hook, NULL);
	feed_map(0, true);
	feed_map(1, true);
	struct magicsock_stats st;
	int64_t end = mono_ms() + 15000;
	do {
		send_one(0);
		spin(100);
		magicsock_get_stats(ms[0], &st);
	} while (mono_ms() < end && !(st.birthday_wins >= 1 && path_of(0) == MS_PATH_DIRECT));
	assert_int_equal(st.birthday_wins, 1);
	feed_delta(0, true, NULL, true);
	struct magicsock_peer_path pp;
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), -ENOENT);
	spin(300);
	feed_delta(0, true, NULL, false);
	assert_int_equal(magicsock_peer_path(ms[0], nodes[1].pub, &pp), 0);
	assert_false(pp.birthday);
	unsigned before = nodes[1].rx_count;
	end = mono_ms() + 3000;
	while (mono_ms() < end && nodes[1].rx_count == before) {
		send_one(0);
		spin(100);
	}
	assert_true(nodes[1].rx_count > before);
}

/* Peer X's BIRTHDAY waits in node 0's queue behind node 1's attempt; X
 * leaves the map in a delta and comes back in the next (a restarted
 * peer, say) before that attempt ends: the request of the instance that
 * left is gone with it, and no probing for X starts when node 1's ends. */
static void queued_request_leaves_with_peer(void **state)
{
	struct relay_client *c = easy_node0_hard_node1();
	uint8_t xpub[32], xpriv[32], xdpub[32], xdpriv[32];
	crypto_box_keypair(xpub, xpriv);
	crypto_box_keypair(xdpub, xdpriv);
	uint8_t keys[3][32];
	memcpy(keys[0], nodes[0].pub, 32);
	memcpy(keys[1], nodes[1].pub, 32);
	memcpy(keys[2], xpub, 32);
	assert_int_equal(rly_server_set_admitted(srv, (const uint8_t(*)[32])keys, 3), 0);
	/* node 0's map: node 1 as before, and X hard at 198.18.77.2 */
	struct ctl_relay r;
	struct ctl_peer peers[2];
	map_entry(0, false, &r, &peers[0]);
	peers[1] = peers[0];
	peers[1].id = 9;
	snprintf(peers[1].name, sizeof(peers[1].name), "x");
	memcpy(peers[1].node_key, xpub, 32);
	memcpy(peers[1].disco_key, xdpub, 32);
	peers[1].n_eps = 1;
	peers[1].eps[0].family = 4;
	peers[1].eps[0].port = 4000;
	assert_int_equal(inet_pton(AF_INET, "198.18.77.2", peers[1].eps[0].addr), 1);
	peers[1].seen_ip.family = 4; /* control sees X where it says it is */
	assert_int_equal(inet_pton(AF_INET, "198.18.77.2", peers[1].seen_ip.addr), 1);
	struct ctl_map_full map;
	memset(&map, 0, sizeof(map));
	map.version = 3;
	map.relays = &r;
	map.n_relays = 1;
	map.peers = peers;
	map.n_peers = 2;
	assert_int_equal(magicsock_set_map(ms[0], &map), 0);
	const struct relay_client_callbacks cb = {.on_packet = rc_packet,
	                                          .on_state = rc_state};
	struct relay_client_config rc = {
	    .base = base, .host = "127.0.0.1", .port = rport, .cb = &cb};
	memcpy(rc.relay_key, rpub, 32);
	memcpy(rc.node_priv, xpriv, 32);
	memcpy(rc.node_pub, xpub, 32);
	char err[160];
	struct relay_client *cx = relay_client_new(&rc, err, sizeof err);
	assert_non_null(cx);
	for (int i = 0; i < 100 && !relay_client_connected(cx); i++)
		spin(20);
	assert_true(relay_client_connected(cx));
	uint8_t xshared[32], buf[DISCO_MAX_LEN];
	assert_int_equal(disco_shared(xshared, dpub[0], xdpriv), 0);
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_CALL_ME_MAYBE;
	m.version = 1;
	m.n_eps = 1;
	m.eps[0].family = 4;
	m.eps[0].port = 4000;
	assert_int_equal(inet_pton(AF_INET, "198.18.77.2", m.eps[0].addr), 1);
	m.nat = DISCO_NAT_HARD;
	m.pub = m.eps[0];
	size_t n = disco_seal(buf, sizeof(buf), xdpub, xshared, &m);
	assert_int_equal(relay_client_send(cx, nodes[0].pub, buf, n), 0);
	spin(300);
	/* node 1's request runs (200 probes, then the grace time) ... */
	birthday_msg(&m, "198.18.77.1");
	m.probes = 200;
	relay_disco(c, &m);
	struct magicsock_stats st;
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	/* ... X's waits ... */
	birthday_msg(&m, "198.18.77.2");
	m.probes = 200;
	n = disco_seal(buf, sizeof(buf), xdpub, xshared, &m);
	assert_int_equal(relay_client_send(cx, nodes[0].pub, buf, n), 0);
	spin(100);
	struct magicsock_stats st1;
	magicsock_get_stats(ms[0], &st1);
	assert_int_equal(st1.birthday_refused, st.birthday_refused); /* queued */
	/* ... X leaves and comes back */
	const struct ctl_peer *px = &peers[1];
	map.version = 4;
	assert_int_equal(magicsock_update_peers(ms[0], &map, NULL, 0,
	                                        (const uint8_t(*)[32])xpub, 1),
	                 0);
	map.version = 5;
	assert_int_equal(magicsock_update_peers(ms[0], &map, &px, 1, NULL, 0), 0);
	spin(3000);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	relay_client_free(cx);
	relay_client_free(c);
}

/* Review-14 H2: node 1's map entry lists 198.19.77.7:4000 besides its
 * endpoints (it reported it), but control sees its connection at
 * 198.18.77.1. Its CALL_ME_MAYBE "hard, at 198.19.77.7" and a BIRTHDAY
 * for it through the relay send nothing there and are counted refused;
 * the same for the address control sees is probed (the control case). */
static void birthday_target_is_where_control_sees_the_peer(void **state)
{
	struct relay_client *c = easy_node0_hard_node1_at("198.19.77.7");
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);
	assert_true(st0.birthday_refused >= 1); /* the trailer */
	struct disco_msg m;
	birthday_msg(&m, "198.19.77.7");
	relay_disco(c, &m);
	spin(300);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	assert_int_equal(st.birthday_attempts, 0);
	assert_int_equal(st.birthday_probes_sent, 0);
	assert_int_equal(to_foreign_ip, 0);

	cmm_msg(&m, DISCO_NAT_HARD, "198.18.77.1", 4000);
	relay_disco(c, &m);
	birthday_msg(&m, "198.18.77.1");
	relay_disco(c, &m);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	assert_true(to_home_ip >= 20);
	assert_int_equal(to_foreign_ip, 0);
	relay_client_free(c);
}

/* Datagrams on fd from a source port other than not_port. */
static unsigned drain_from_others(int fd, uint16_t not_port)
{
	unsigned n = 0;
	uint8_t b[2048];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	while (recvfrom(fd, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&from, &fl) >= 0) {
		if (ntohs(from.sin_port) != not_port)
			n++;
		fl = sizeof(from);
	}
	return n;
}

static int udp_on(const char *ip, uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage a;
	sin4(&a, ip, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(struct sockaddr_in)), 0);
	socklen_t l = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	*port = ntohs(((struct sockaddr_in *)&a)->sin_port);
	return fd;
}

/* Node 0 hard, sending to node 1 through the relay for 3 s. */
static void hard_node0_sends(void)
{
	int64_t end = mono_ms() + 3000;
	while (mono_ms() < end) {
		send_one(0);
		spin(100);
	}
}

/* The mirror case: node 0 is hard; node 1 (a relay connection under its
 * key) says "easy, at 127.0.0.2:P", an endpoint its map entry lists, but
 * control sees it at 127.0.0.1. Node 0 opens no sockets and 127.0.0.2:P
 * gets none of the 256 pings (only node 0's plain disco pings to a map
 * endpoint, from its WireGuard port). "Easy, at 127.0.0.1:Q" does get
 * them (the control case). */
static void birthday_hard_side_pings_only_where_control_sees_the_peer(void **state)
{
	bd_loopback = true;
	seen_ip[1] = "127.0.0.1";
	uint16_t vport, cport;
	int victim = udp_on("127.0.0.2", &vport), ctrl = udp_on("127.0.0.1", &cport);
	extra_ep = "127.0.0.2";
	extra_ep_port = vport;
	start_nodes(false);
	assert_true(wait_home(5000));
	magicsock_free(ms[1]); /* node 1 speaks through c below */
	ms[1] = NULL;
	force_nat(0, true);
	uint16_t wgport = wg_device_port(nodes[0].dev);
	struct relay_client *c = relay_as(nodes[1].pub, nodes[1].priv);
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);
	struct disco_msg m;
	cmm_msg(&m, DISCO_NAT_EASY, "127.0.0.2", vport);
	relay_disco(c, &m);
	hard_node0_sends();
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	assert_int_equal(st.birthday_socks_opened, 0);
	assert_int_equal(drain_from_others(victim, wgport), 0);

	cmm_msg(&m, DISCO_NAT_EASY, "127.0.0.1", cport);
	relay_disco(c, &m);
	hard_node0_sends();
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_socks_opened, BD_SOCKS);
	assert_true(drain_from_others(ctrl, wgport) >= BD_SOCKS / 2);
	assert_int_equal(drain_from_others(victim, wgport), 0);
	relay_client_free(c);
	close(victim);
	close(ctrl);
}

/* Review-14 M1: hard peers A (node 1, seen at 198.18.77.1) and B (a third
 * key, seen at 198.18.77.2). A's request starts an attempt; B's waits for
 * it, and B asking again meanwhile is no "too soon" (its gap starts only
 * with an attempt); A asking again is. When A's attempt ends, B's starts:
 * A took only its share of the budget. */
static void birthday_budget_leaves_other_peers_their_share(void **state)
{
	seen_ip_2 = "198.18.77.2";
	struct relay_client *a = easy_node0_hard_node1();
	struct relay_client *b = relay_as(key2_pub, key2_priv);
	struct disco_msg m;
	cmm_msg(&m, DISCO_NAT_HARD, "198.18.77.2", 4000);
	relay_disco_as(b, disco2_pub, disco2_priv, &m);
	struct magicsock_stats st0, st;
	magicsock_get_stats(ms[0], &st0);

	birthday_msg(&m, "198.18.77.1");
	relay_disco(a, &m);
	birthday_msg(&m, "198.18.77.2");
	relay_disco_as(b, disco2_pub, disco2_priv, &m); /* waits */
	relay_disco_as(b, disco2_pub, disco2_priv, &m); /* replaces it */
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_attempts, 1);
	assert_int_equal(st.birthday_refused, st0.birthday_refused);
	birthday_msg(&m, "198.18.77.1");
	relay_disco(a, &m); /* too soon */
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);

	int64_t end = mono_ms() + 9000;
	do {
		spin(100);
		magicsock_get_stats(ms[0], &st);
	} while (mono_ms() < end && st.birthday_attempts < 2);
	assert_int_equal(st.birthday_attempts, 2);
	spin(500);
	assert_true(to_home2_ip >= 20);
	assert_int_equal(to_foreign_ip, 0);
	magicsock_get_stats(ms[0], &st);
	assert_int_equal(st.birthday_refused, st0.birthday_refused + 1);
	relay_client_free(a);
	relay_client_free(b);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(relay_when_udp_dead, setup, teardown),
	    cmocka_unit_test_setup_teardown(call_me_maybe_finds_direct, setup, teardown),
	    cmocka_unit_test_setup_teardown(direct_when_validated, setup, teardown),
	    cmocka_unit_test_setup_teardown(direct_dies_relay_takes_over, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(moved_peer_loses_trust, setup, teardown),
	    cmocka_unit_test_setup_teardown(own_network_change_clears_trust, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(relay_redialled_only_for_its_address, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(relay_restart_reconnects, setup, teardown),
	    cmocka_unit_test_setup_teardown(unusable_home_is_left, setup, teardown),
	    cmocka_unit_test_setup_teardown(static_peer_left_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(peer_without_home_gets_plain_wireguard, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(shared_disco_key_matched_by_content, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(peer_gone_expires, setup, teardown),
	    cmocka_unit_test_setup_teardown(relay_only_delta_refreshes_paths, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(unknown_disco_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(spoofed_pongs_change_no_path, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(ping_reports_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(relayed_retry_backs_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(birthday_signalling_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(birthday_request_checked, setup, teardown),
	    cmocka_unit_test_setup_teardown(birthday_off_refuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        birthday_target_is_where_control_sees_the_peer, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        birthday_hard_side_pings_only_where_control_sees_the_peer, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        birthday_budget_leaves_other_peers_their_share, setup, teardown),
	    cmocka_unit_test_setup_teardown(birthday_win_carries_wireguard, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(cmm_loopback_never_pinged, setup, teardown),
	    cmocka_unit_test_setup_teardown(probe_pings_not_overwritten, setup, teardown),
	    cmocka_unit_test_setup_teardown(probes_leave_backoff_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(delta_disco_change_ends_attempt, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(delta_removes_live_link, setup, teardown),
	    cmocka_unit_test_setup_teardown(queued_request_leaves_with_peer, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
