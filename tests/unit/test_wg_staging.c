/* Packets waiting for a handshake, and how often a peer never reached is
 * asked, on real UDP sockets:
 * - a full staging ring drops its oldest packet, not the new one (as the
 *   kernel: the newest carry the freshest TCP state), counted;
 * - a peer with no endpoint still runs the retransmit timer, so its
 *   staged packets are dropped when the attempts run out (before, nothing
 *   ever dropped them and they went out stale whenever the peer called);
 * - steady traffic to a peer that never answers gets the quick (1 s)
 *   retries only the first three times, then one initiation per
 *   REKEY_TIMEOUT (before: one every second for as long as traffic came). */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_ring_drops_the_oldest_and_expires),
	    cmocka_unit_test(test_quick_retries_only_the_first_three),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
