/* Packets waiting for a handshake, and how often a peer never reached is
 * asked, on real UDP sockets:
 * - a full staging ring drops its oldest packet, not the new one (as the
 *   kernel: the newest carry the freshest TCP state), counted;
 * - a peer with no endpoint still runs the retransmit timer, so its
 *   staged packets are dropped when the attempts run out (before, nothing
 *   ever dropped them and they went out stale whenever the peer called);
 * - steady traffic to a peer that never answers gets the quick (1 s)
 *   retries only the first three times, then one initiation per
 *   REKEY_TIMEOUT (before: one every second for as long as traffic came);
 * - the packets a responder held go to the port the confirming packet came
 *   from (the endpoint moves before they leave);
 * - an endpoint that arrives late for staged traffic gets an initiation at
 *   once, and the quick retries after it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/messages.h"
#include "core/wg/peer.h"
#include "wg_test_node.h"

static struct wg_peer *peer_of(struct wg_device *d, size_t i)
{
	assert_true(i < d->n_peers);
	return d->peers[i];
}

static void test_full_ring_drops_the_oldest_and_expires(void **state)
{
	struct event_base *base = event_base_new();
	struct wg_device_stats st;
	struct node a, b;
	struct wg_peer *p;
	uint8_t pkt[64];
	size_t n;

	(void)state;
	node_init(base, &a);
	node_init(base, &b);
	add_peer(&a, &b, 2, NULL, 0); /* a does not know where b is */
	p = peer_of(a.dev, 0);
	n = ip4_packet(pkt, 1, 2);
	for (unsigned i = 0; i < WG_MAX_STAGED_PACKETS + 2; i++) {
		pkt[n - 1] = (uint8_t)i; /* the packet's number, in its last byte */
		assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	}
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_drop_queue, 2);
	assert_int_equal(p->staged_count, WG_MAX_STAGED_PACKETS);
	/* Packets 0 and 1 gave way: the ring runs from 2 to the last. */
	assert_int_equal(p->staged[p->staged_head].data[n - 1], 2);
	assert_int_equal(
	    p->staged[(p->staged_head + p->staged_count - 1) % WG_MAX_STAGED_PACKETS]
	        .data[n - 1],
	    (uint8_t)(WG_MAX_STAGED_PACKETS + 1));

	/* No endpoint, yet the retransmit timer runs. Its attempts would run
	 * out after REKEY_ATTEMPT_TIME (about 90 s); skip to the last one. */
	assert_non_null(p->timer_retransmit_handshake);
	assert_true(evtimer_pending(p->timer_retransmit_handshake, NULL));
	p->handshake_attempts = WG_MAX_TIMER_HANDSHAKES + 1;
	unsigned never = 0;
	run_until(base, &never, 1, 7000); /* the timer fires within 5.4 s */
	assert_int_equal(p->staged_count, 0);
	wg_device_stats(a.dev, &st);
	assert_int_equal(st.tx_drop_queue, WG_MAX_STAGED_PACKETS + 2);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

/* Real time: 7 s. One packet every 100 ms to a peer that never answers:
 * initiations at about 0, 1, 2 and 3 s, the next not before ~7.6 s. */
static void test_quick_retries_only_the_first_three(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct node a, b;
	uint8_t pkt[64], buf[256];
	int sink, initiations = 0;
	size_t n;

	(void)state;
	node_init(base, &a);
	node_init(base, &b); /* only for its key: it never hears anything */
	sink = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	sin4(&ss, "127.0.0.1", 0);
	assert_int_equal(bind(sink, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)),
	                 0);
	assert_int_equal(getsockname(sink, (struct sockaddr *)&ss, &sl), 0);
	add_peer(&a, &b, 2, "127.0.0.1", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	n = ip4_packet(pkt, 1, 2);
	for (int i = 0; i < 70; i++) {
		unsigned never = 0;

		assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
		run_until(base, &never, 1, 100);
	}
	while (recv(sink, buf, sizeof(buf), 0) == WG_MSG_INITIATION_LEN)
		initiations++;
	close(sink);
	print_message("%d initiations in 7 s of steady traffic\n", initiations);
	assert_int_equal(initiations, 1 + WG_QUICK_RETRIES);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

/* A plain UDP socket on 127.0.0.1 (non-blocking); its port in *port. */
static int udp_sock(uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	sin4(&ss, "127.0.0.1", 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Waits up to ms for a datagram on fd; returns its length or -1. */
static ssize_t recv_wait(int fd, uint8_t *buf, size_t len, int ms)
{
	int64_t end = mono_ms() + ms;

	do {
		ssize_t r = recv(fd, buf, len, 0);

		if (r >= 0)
			return r;
		usleep(2000);
	} while (mono_ms() < end);
	return -1;
}

struct captured {
	uint8_t buf[4][256];
	size_t len[4];
	unsigned n;
};

static void capture(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
	struct captured *c = ctx;

	(void)to;
	if (c->n < 4 && len <= sizeof(c->buf[0])) {
		memcpy(c->buf[c->n], buf, len);
		c->len[c->n++] = len;
	}
}

/* The responder holds a packet for the initiator until the initiator's
 * first data packet confirms the session; that packet comes from a new
 * port (the initiator's NAT rebound). The held packet goes to the new
 * port, as in the kernel, which moves the endpoint before it sends. Before,
 * it went to the old one. a's datagrams are captured and handed to b by
 * hand, from whichever port the test says. */
static void test_staged_go_where_the_confirmation_came_from(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_storage from1, from2, from_b;
	struct captured cap;
	struct node a, b;
	uint8_t pkt[64], buf[256];
	uint16_t p1, p2;
	ssize_t r;
	size_t n;
	int s1, s2;

	(void)state;
	memset(&cap, 0, sizeof(cap));
	node_init(base, &a);
	node_init(base, &b);
	wg_device_set_tx_hook(a.dev, capture, &cap);
	s1 = udp_sock(&p1);
	s2 = udp_sock(&p2);
	sin4(&from1, "127.0.0.1", p1);
	sin4(&from2, "127.0.0.1", p2);
	sin4(&from_b, "127.0.0.1", wg_device_port(b.dev));
	add_peer(&a, &b, 2, "127.0.0.1", wg_device_port(b.dev));
	add_peer(&b, &a, 1, NULL, 0);

	/* a's initiation reaches b from port 1; b's response goes there. */
	n = ip4_packet(pkt, 1, 2);
	assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
	assert_int_equal(cap.n, 1);
	assert_int_equal(cap.len[0], WG_MSG_INITIATION_LEN);
	wg_device_receive(b.dev, cap.buf[0], cap.len[0], (struct sockaddr *)&from1);
	r = recv_wait(s1, buf, sizeof(buf), 2000);
	assert_int_equal(r, WG_MSG_RESPONSE_LEN);
	/* b has something for a before the session is confirmed: held. */
	n = ip4_packet(pkt, 2, 1);
	assert_int_equal(wg_device_send(b.dev, pkt, n), 0);
	assert_int_equal(peer_of(b.dev, 0)->staged_count, 1);
	/* a completes and sends its packet; it reaches b from port 2. */
	wg_device_receive(a.dev, buf, (size_t)r, (struct sockaddr *)&from_b);
	assert_int_equal(cap.n, 2);
	assert_int_equal(cap.buf[1][0], WG_MSG_DATA);
	wg_device_receive(b.dev, cap.buf[1], cap.len[1], (struct sockaddr *)&from2);
	assert_int_equal(b.rx_count, 1);
	r = recv_wait(s2, buf, sizeof(buf), 1000);
	print_message("at the new port: %zd bytes\n", r);
	assert_true(r > 0);
	assert_int_equal(buf[0], WG_MSG_DATA);
	assert_int_equal(recv(s1, buf, sizeof(buf), 0), -1);
	close(s1);
	close(s2);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

/* Real time: about 6.5 s. Traffic for a peer whose endpoint is not known
 * yet; the endpoint arrives 4 s later (a slow map). An initiation leaves at
 * once, and the quick 1 s retries are still there: the initiations that
 * were due while there was nowhere to send them do not use them up. Before,
 * the next initiation waited for the timer, up to 5 s. */
static void test_endpoint_arriving_late_gets_a_handshake_at_once(void **state)
{
	struct event_base *base = event_base_new();
	struct wg_peer_config pc;
	struct node a, b;
	uint8_t pkt[64], buf[256];
	uint16_t port;
	int sink, initiations = 0;
	int64_t t0;
	size_t n;

	(void)state;
	node_init(base, &a);
	node_init(base, &b); /* only for its key */
	sink = udp_sock(&port);
	add_peer(&a, &b, 2, NULL, 0);
	n = ip4_packet(pkt, 1, 2);
	for (int i = 0; i < 40; i++) {
		unsigned never = 0;

		assert_int_equal(wg_device_send(a.dev, pkt, n), 0);
		run_until(base, &never, 1, 100);
	}
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, b.pub, 32);
	sin4(&pc.endpoint, "127.0.0.1", port);
	assert_int_equal(wg_device_update_peer(a.dev, &pc, WG_PEER_UPD_ENDPOINT), 0);
	t0 = mono_ms();
	while (mono_ms() - t0 < 2500) {
		unsigned never = 0;

		run_until(base, &never, 1, 50);
		while (recv(sink, buf, sizeof(buf), 0) == WG_MSG_INITIATION_LEN) {
			initiations++;
			print_message("initiation %d after %lld ms\n", initiations,
			              (long long)(mono_ms() - t0));
		}
	}
	close(sink);
	assert_true(initiations >= 2);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_ring_drops_the_oldest_and_expires),
	    cmocka_unit_test(test_quick_retries_only_the_first_three),
	    cmocka_unit_test(test_staged_go_where_the_confirmation_came_from),
	    cmocka_unit_test(test_endpoint_arriving_late_gets_a_handshake_at_once),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
