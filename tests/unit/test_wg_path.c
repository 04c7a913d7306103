/* The WireGuard device's paths (core/wg/path.c) with two real devices on
 * loopback UDP and an in-process relay between them (a queue delivered
 * from the loop, as a relay connection would): a handshake and data over
 * the relay alone; relayed datagrams never move the endpoint; one that
 * authenticates as another peer than the relay named is dropped; a trusted
 * direct path takes over from the relay and the relay takes over again
 * when the trust runs out; handshakes also try the endpoint; the untrusted
 * hook fires at most once a second; non-WireGuard datagrams reach the
 * owner; a peer with packets staged and nowhere to send gets its handshake
 * as soon as a relay reaches it; an owner's side socket carries a peer's
 * datagrams both ways. */
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

#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "wg_test_node.h"

/* The in-process relay: datagrams queued per sender, delivered from a
 * zero-timeout event (never from inside the sender's call). */
#define Q_MAX 256
struct qpkt {
	int to; /* index into nodes */
	uint8_t from_key[32];
	size_t len;
	uint8_t buf[2048];
};
static struct node nodes[2];
static struct qpkt q[Q_MAX];
static size_t qn;
static struct event *deliver_ev;
static unsigned relayed[2], untrusted[2], others[2];
static bool relay_down;
static bool forge_key; /* deliver with the wrong sender key */

static void deliver(evutil_socket_t fd, short ev, void *arg)
{
	size_t n = qn;
	static struct qpkt local[Q_MAX];
	memcpy(local, q, n * sizeof(q[0]));
	qn = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t key[32];
		memcpy(key, local[i].from_key, 32);
		if (forge_key)
			key[0] ^= 1;
		wg_device_receive_relayed(nodes[local[i].to].dev, key, local[i].buf,
		                          local[i].len);
	}
}

static int relay_tx(void *ctx, const uint8_t *peer_key, const uint8_t *buf, size_t len)
{
	struct node *from = ctx;
	if (relay_down)
		return -ENOTCONN;
	int to = memcmp(peer_key, nodes[0].pub, 32) == 0 ? 0 : 1;
	assert_true(qn < Q_MAX && len <= sizeof(q[0].buf));
	q[qn].to = to;
	memcpy(q[qn].from_key, from->pub, 32);
	memcpy(q[qn].buf, buf, len);
	q[qn].len = len;
	qn++;
	relayed[to]++;
	struct timeval zero = {0, 0};
	event_add(deliver_ev, &zero);
	return 0;
}

static void on_untrusted(void *ctx, const uint8_t *key)
{
	untrusted[(struct node *)ctx == &nodes[0] ? 0 : 1]++;
}

static void on_other(void *ctx, const uint8_t *buf, size_t len, const struct sockaddr *src)
{
	others[(struct node *)ctx == &nodes[0] ? 0 : 1]++;
}

static struct event_base *base;

static int setup(void **state)
{
	base = event_base_new();
	deliver_ev = evtimer_new(base, deliver, NULL);
	qn = 0;
	memset(relayed, 0, sizeof(relayed));
	memset(untrusted, 0, sizeof(untrusted));
	memset(others, 0, sizeof(others));
	relay_down = forge_key = false;
	for (int i = 0; i < 2; i++) {
		node_init(base, &nodes[i]);
		struct wg_path_hooks h = {relay_tx, on_untrusted, on_other, &nodes[i]};
		wg_device_set_path_hooks(nodes[i].dev, &h);
	}
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < 2; i++)
		wg_device_free(nodes[i].dev);
	event_free(deliver_ev);
	event_base_free(base);
	return 0;
}

static void peer_info(int i, struct wg_peer_info *pi)
{
	assert_int_equal(wg_device_peer_info_by_key(nodes[i].dev, nodes[1 - i].pub, pi), 0);
}

/* No endpoints at all: everything goes through the relay. */
static void relay_only(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, NULL, 0);
	add_peer(&nodes[1], &nodes[0], 1, NULL, 0);
	assert_int_equal(wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 0), 0);
	assert_int_equal(wg_device_set_peer_path(nodes[1].dev, nodes[0].pub, true, 0), 0);
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	len = ip4_packet(pkt, 2, 1);
	assert_int_equal(wg_device_send(nodes[1].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[0].rx_count, 1, 3000));
	struct wg_peer_info pi;
	peer_info(0, &pi);
	assert_int_equal(pi.endpoint.ss_family, 0); /* never moved by the relay */
	assert_true(pi.via_relay);
	assert_true(pi.relay_tx_bytes > 0 && pi.relay_rx_bytes > 0);
	assert_true(pi.last_relay_rx_ms >= 0);
	assert_int_equal(pi.last_direct_rx_ms, -1);
	assert_int_equal(pi.handshakes_completed, 1);
	assert_true(untrusted[0] >= 1 && untrusted[1] >= 1);
	struct wg_device_stats st;
	wg_device_stats(nodes[1].dev, &st);
	assert_true(st.rx_relayed >= 2);
	assert_int_equal(st.rx_drop_relay_key, 0);
}

/* The relay names the wrong sender: nothing authenticates. */
static void forged_sender_dropped(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, NULL, 0);
	add_peer(&nodes[1], &nodes[0], 1, NULL, 0);
	/* a third key node 1 knows, so the lookup by claimed key finds a peer */
	wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 0);
	wg_device_set_peer_path(nodes[1].dev, nodes[0].pub, true, 0);
	forge_key = true;
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	unsigned never = 0;
	run_until(base, &never, 1, 500);
	assert_int_equal(nodes[1].rx_count, 0);
	struct wg_device_stats st;
	wg_device_stats(nodes[1].dev, &st);
	assert_true(st.rx_relayed >= 1);
	assert_true(st.rx_drop_relay_key >= 1);
	struct wg_peer_info pi;
	peer_info(1, &pi);
	assert_int_equal(pi.handshakes_completed, 0);
}

/* Endpoints known, relay up, no trust: data goes through the relay,
 * handshakes both ways; trusted: the endpoint alone; trust expired: the
 * relay again. */
static void trust_switches_path(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, "127.0.0.1", wg_device_port(nodes[1].dev));
	add_peer(&nodes[1], &nodes[0], 1, "127.0.0.1", wg_device_port(nodes[0].dev));
	wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 0);
	wg_device_set_peer_path(nodes[1].dev, nodes[0].pub, true, 0);
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	struct wg_peer_info pi;
	peer_info(0, &pi);
	assert_true(pi.via_relay);
	/* The initiation went both ways: node 1 answered whichever came
	 * first; the data went through the relay. */
	assert_true(pi.relay_tx_bytes > 0);
	uint64_t relay_before = pi.relay_tx_bytes;

	/* Trust the direct path on both sides. */
	wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 400);
	wg_device_set_peer_path(nodes[1].dev, nodes[0].pub, true, 400);
	unsigned before = nodes[1].rx_count;
	peer_info(1, &pi);
	uint64_t relay_rx_before = pi.relay_rx_bytes, rx_before = pi.rx_bytes;
	for (int i = 0; i < 5; i++)
		assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 5, 3000));
	peer_info(0, &pi);
	assert_false(pi.via_relay);
	assert_true(pi.direct_trusted);
	assert_int_equal(pi.relay_tx_bytes, relay_before);
	/* Node 1 got the five directly (not through the relay), just now. */
	peer_info(1, &pi);
	assert_true(pi.rx_bytes > rx_before);
	assert_int_equal(pi.relay_rx_bytes, relay_rx_before);
	assert_true(pi.last_direct_rx_ms >= 0 && pi.last_direct_rx_ms < 1000);

	/* Trust runs out: back to the relay. */
	unsigned never = 0;
	run_until(base, &never, 1, 500);
	peer_info(0, &pi);
	assert_true(pi.via_relay);
	before = nodes[1].rx_count;
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 1, 3000));
	peer_info(0, &pi);
	assert_true(pi.relay_tx_bytes > relay_before);

	/* No relay for the peer any more: plain WireGuard to the endpoint. */
	wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, false, 0);
	relay_before = pi.relay_tx_bytes;
	before = nodes[1].rx_count;
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 1, 3000));
	peer_info(0, &pi);
	assert_false(pi.via_relay);
	assert_int_equal(pi.relay_tx_bytes, relay_before);
}

/* Without hooks' relay (a plain device) nothing changes: the path calls
 * are harmless and the untrusted hook is rate-limited. */
static void untrusted_rate_limited(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, "127.0.0.1", wg_device_port(nodes[1].dev));
	add_peer(&nodes[1], &nodes[0], 1, "127.0.0.1", wg_device_port(nodes[0].dev));
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	for (int i = 0; i < 50; i++)
		assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, 50, 3000));
	/* over well under a second: at most two calls (the first, and one
	 * more if the run crossed a second) */
	assert_true(untrusted[0] >= 1 && untrusted[0] <= 2);
	assert_int_equal(relayed[0] + relayed[1], 0); /* relay_ok never set */
}

/* Datagrams that are not WireGuard go to the owner, counted. */
static void other_datagrams_to_owner(void **state)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_storage to;
	sin4(&to, "127.0.0.1", wg_device_port(nodes[1].dev));
	const char *disco = "MDSC\xf0\x9f not wireguard";
	assert_true(sendto(fd, disco, strlen(disco), 0, (struct sockaddr *)&to,
	                   sizeof(struct sockaddr_in)) > 0);
	uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
	assert_true(sendto(fd, stun, sizeof(stun), 0, (struct sockaddr *)&to,
	                   sizeof(struct sockaddr_in)) > 0);
	assert_true(run_until(base, &others[1], 2, 2000));
	struct wg_device_stats st;
	wg_device_stats(nodes[1].dev, &st);
	assert_int_equal(st.rx_other, 2);
	/* and the owner can answer from the same socket */
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &ml), 0);
	me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(wg_device_send_raw(nodes[1].dev, (struct sockaddr *)&me,
	                                    (const uint8_t *)"pong", 4),
	                 0);
	char got[8] = {0};
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(recv(fd, got, sizeof(got), 0), 4);
	assert_memory_equal(got, "pong", 4);
	close(fd);
}

/* Staged packets wait while the peer has no endpoint and no relay; the
 * relay's arrival sends the handshake at once. */
static void relay_arrival_sends_staged(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, NULL, 0);
	add_peer(&nodes[1], &nodes[0], 1, NULL, 0);
	wg_device_set_peer_path(nodes[1].dev, nodes[0].pub, true, 0);
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	unsigned never = 0;
	run_until(base, &never, 1, 200);
	assert_int_equal(relayed[1], 0);
	assert_int_equal(wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 0), 0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 2000)); /* well before REKEY_TIMEOUT */
	assert_int_equal(wg_device_set_peer_path(nodes[0].dev, nodes[0].pub, true, 0),
	                 -ENOENT);
}

/* The relay refuses (down): counted, and the peer falls back to nothing
 * (no endpoint) without crashing. */
static void relay_refusal_counted(void **state)
{
	add_peer(&nodes[0], &nodes[1], 2, NULL, 0);
	add_peer(&nodes[1], &nodes[0], 1, NULL, 0);
	wg_device_set_peer_path(nodes[0].dev, nodes[1].pub, true, 0);
	relay_down = true;
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0); /* staged */
	struct wg_device_stats st;
	wg_device_stats(nodes[0].dev, &st);
	assert_true(st.tx_drop_relay >= 1); /* the initiation */
}

/* The owner's side socket (a birthday socket that won) reads into the
 * device and carries the peer's direct datagrams while the endpoint is the
 * address it was set for; cleared, the device's socket takes over. */
static unsigned side_rx_count; /* datagrams the side socket received */

static void side_rx(evutil_socket_t fd, short ev, void *arg)
{
	uint8_t buf[2048];
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	if (n > 0)
		side_rx_count++;
	if (n > 0)
		wg_device_receive_side(nodes[0].dev, buf, (size_t)n, (struct sockaddr *)&from);
}

static uint16_t sa_port(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void side_socket_carries_peer(void **state)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(s >= 0);
	struct sockaddr_storage sa;
	sin4(&sa, "127.0.0.1", 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	struct event *ev = event_new(base, s, EV_READ | EV_PERSIST, side_rx, NULL);
	assert_non_null(ev);
	event_add(ev, NULL);

	add_peer(&nodes[0], &nodes[1], 2, "127.0.0.1", wg_device_port(nodes[1].dev));
	add_peer(&nodes[1], &nodes[0], 1, NULL, 0);
	struct sockaddr_storage to;
	sin4(&to, "127.0.0.1", wg_device_port(nodes[1].dev));
	assert_int_equal(wg_device_set_peer_sock(nodes[0].dev, nodes[1].pub, s, &to), 0);
	uint8_t other[32] = {9};
	assert_int_equal(wg_device_set_peer_sock(nodes[0].dev, other, s, &to), -ENOENT);

	/* Out through the side socket: node 1 sees its port. */
	uint8_t pkt[64];
	size_t len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, 1, 3000));
	struct wg_peer_info pi;
	peer_info(1, &pi);
	assert_int_equal(sa_port(&pi.endpoint), sa_port(&sa));
	/* Back in through it, into the same device. */
	len = ip4_packet(pkt, 2, 1);
	unsigned side_before = side_rx_count;
	assert_int_equal(wg_device_send(nodes[1].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[0].rx_count, 1, 3000));
	peer_info(0, &pi);
	assert_true(pi.last_direct_rx_ms >= 0 && pi.last_direct_rx_ms < 1000);
	assert_true(side_rx_count > side_before); /* it came in by the side socket */

	/* Cleared: the device's own socket again. */
	assert_int_equal(wg_device_set_peer_sock(nodes[0].dev, nodes[1].pub, -1, NULL), 0);
	unsigned before = nodes[1].rx_count;
	len = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(nodes[0].dev, pkt, len), 0);
	assert_true(run_until(base, &nodes[1].rx_count, before + 1, 3000));
	peer_info(1, &pi);
	assert_int_equal(sa_port(&pi.endpoint), wg_device_port(nodes[0].dev));
	event_free(ev);
	close(s);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(relay_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(forged_sender_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(trust_switches_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(untrusted_rate_limited, setup, teardown),
	    cmocka_unit_test_setup_teardown(other_datagrams_to_owner, setup, teardown),
	    cmocka_unit_test_setup_teardown(relay_arrival_sends_staged, setup, teardown),
	    cmocka_unit_test_setup_teardown(relay_refusal_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(side_socket_carries_peer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
