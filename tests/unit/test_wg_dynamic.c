/* core/wg peers that change at run time (wg_device_remove_peer,
 * wg_device_update_peer, wg_device_peer_info_by_key), on loopback with two
 * devices on one event_base: removal with sessions, staged packets, a
 * handshake in flight and armed timers (nothing left in any table, packets
 * from the removed peer dropped and counted), re-adding the same key (a
 * fresh handshake), endpoint changes taking effect for the next packet,
 * allowed IPs replaced as a whole (and refused updates changing nothing),
 * keepalive changes, insertion order after removal, and 1000 peers added and
 * removed in a loop. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include "core/wg/allowedips.h"
#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"

struct node {
	struct wg_device *dev;
	uint8_t priv[32], pub[32];
	uint8_t last[2048];
	size_t last_len;
	unsigned rx_count;
};

struct fixture {
	struct event_base *base;
	struct node a, b;
};

static void on_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;
	assert_true(len <= sizeof(n->last));
	memcpy(n->last, pkt, len);
	n->last_len = len;
	n->rx_count++;
}

static void make_key(uint8_t priv[32], uint8_t pub[32])
{
	randombytes_buf(priv, 32);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
	crypto_scalarmult_base(pub, priv);
}

static void node_init(struct event_base *base, struct node *n)
{
	memset(n, 0, sizeof(*n));
	make_key(n->priv, n->pub);
	n->dev = wg_device_new(base, n->priv);
	assert_non_null(n->dev);
	wg_device_set_rx(n->dev, on_rx, n);
	assert_int_equal(wg_device_listen(n->dev, 0), 0);
}

static void loopback(struct sockaddr_storage *ss, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void aip4(struct wg_allowed_ip *a, const char *s, uint8_t cidr)
{
	memset(a, 0, sizeof(*a));
	a->family = AF_INET;
	a->cidr = cidr;
	assert_int_equal(inet_pton(AF_INET, s, a->addr), 1);
}

/* Adds `key` as a peer of n with allowed IP 100.64.0.<host>/32. */
static struct wg_peer *add_key(struct wg_device *d, const uint8_t *key, int host,
                               uint16_t endpoint_port)
{
	struct wg_allowed_ip ip;
	struct wg_peer_config pc;
	char s[32];
	struct wg_peer *p;
	int err = 1;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, key, 32);
	snprintf(s, sizeof(s), "100.64.0.%d", host);
	aip4(&ip, s, 32);
	pc.allowed_ips = &ip;
	pc.n_allowed_ips = 1;
	if (endpoint_port)
		loopback(&pc.endpoint, endpoint_port);
	p = wg_device_add_peer(d, &pc, &err);
	assert_non_null(p);
	assert_int_equal(err, 0);
	return p;
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.base = event_base_new();
	node_init(f.base, &f.a);
	node_init(f.base, &f.b);
	/* a is 100.64.0.1, b is 100.64.0.2; only a knows where b is. */
	add_key(f.a.dev, f.b.pub, 2, wg_device_port(f.b.dev));
	add_key(f.b.dev, f.a.pub, 1, 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	wg_device_free(f->a.dev);
	wg_device_free(f->b.dev);
	event_base_free(f->base);
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool run_until(struct event_base *base, const unsigned *counter, unsigned want,
                      int ms)
{
	struct timeval tick = {0, 2000};
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		if (*counter >= want)
			return true;
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	return *counter >= want;
}

static void run_for(struct event_base *base, int ms)
{
	unsigned never = 0;
	run_until(base, &never, 1, ms);
}

static size_t ip4_packet(uint8_t *pkt, const char *src, const char *dst, size_t payload)
{
	size_t len = 20 + payload;

	memset(pkt, 0, len);
	pkt[0] = 0x45;
	pkt[2] = (uint8_t)(len >> 8);
	pkt[3] = (uint8_t)len;
	pkt[8] = 64;
	pkt[9] = 253; /* experimental */
	inet_pton(AF_INET, src, pkt + 12);
	inet_pton(AF_INET, dst, pkt + 16);
	for (size_t i = 0; i < payload; i++)
		pkt[20 + i] = (uint8_t)(i * 13);
	return len;
}

static int send4(struct wg_device *d, const char *src, const char *dst)
{
	uint8_t pkt[64];
	size_t n = ip4_packet(pkt, src, dst, 12);
	return wg_device_send(d, pkt, n);
}

/* a -> b, then b -> a, so that both have a confirmed session. */
static void establish(struct fixture *f)
{
	unsigned a0 = f->a.rx_count, b0 = f->b.rx_count;

	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 3000));
	assert_int_equal(send4(f->b.dev, "100.64.0.2", "100.64.0.1"), 0);
	assert_true(run_until(f->base, &f->a.rx_count, a0 + 1, 3000));
}

static bool route4(struct wg_device *d, const char *s)
{
	uint8_t addr[4];
	assert_int_equal(inet_pton(AF_INET, s, addr), 1);
	return wg_device_has_route(d, AF_INET, addr);
}

static struct wg_peer *peer_of(struct wg_device *d, const uint8_t *key)
{
	return wg_pubkey_table_lookup(d->pubkeys, key);
}

/* A plain UDP socket on 127.0.0.1 that nobody answers from. */
static int quiet_socket(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Waits up to ms for one datagram on fd; returns its WireGuard type or 0. */
static uint8_t recv_type(int fd, int ms)
{
	uint8_t buf[2048];
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n >= 4)
			return buf[0];
		usleep(1000);
	}
	return 0;
}

static void test_remove_and_readd(void **state)
{
	struct fixture *f = *state;
	struct wg_device_stats s0, s1;
	struct wg_peer_info info;
	unsigned a0;

	establish(f);
	assert_true(wg_index_table_count(f->a.dev->index) > 0);
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), 0);
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), -ENOENT);
	assert_int_equal(wg_device_peer_count(f->a.dev), 0);
	assert_int_equal(wg_device_peer_info(f->a.dev, 0, &info), -ENOENT);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), -ENOENT);
	assert_int_equal(wg_index_table_count(f->a.dev->index), 0);
	assert_int_equal(wg_pubkey_table_count(f->a.dev->pubkeys), 0);
	assert_int_equal(wg_allowedips_count(f->a.dev->aips), 0);
	assert_false(route4(f->a.dev, "100.64.0.2"));
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), -EHOSTUNREACH);

	/* b still has its session: its packets reach a and are dropped. */
	wg_device_stats(f->a.dev, &s0);
	a0 = f->a.rx_count;
	for (int i = 0; i < 3; i++)
		assert_int_equal(send4(f->b.dev, "100.64.0.2", "100.64.0.1"), 0);
	run_for(f->base, 100);
	wg_device_stats(f->a.dev, &s1);
	assert_int_equal(f->a.rx_count, a0);
	assert_int_equal(s1.rx_drop_nokey, s0.rx_drop_nokey + 3);

	/* Added again: a fresh handshake, data both ways. */
	usleep(30000); /* past b's initiation flood guard */
	add_key(f->a.dev, f->b.pub, 2, wg_device_port(f->b.dev));
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.handshakes_sent, 0);
	assert_int_equal(info.handshakes_completed, 0);
	establish(f);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.handshakes_sent, 1);
	assert_int_equal(info.handshakes_completed, 1);
}

/* Removed while packets wait for a handshake that is in flight: the
 * response arrives for an index that is gone. */
static void test_remove_during_handshake(void **state)
{
	struct fixture *f = *state;
	struct wg_device_stats s0, s1;
	struct wg_peer *p = peer_of(f->a.dev, f->b.pub);

	for (int i = 0; i < 5; i++)
		assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_int_equal(p->staged_count, 5);
	assert_true(evtimer_pending(p->timer_retransmit_handshake, NULL));
	assert_true(p->hs_entry.in_table);
	wg_device_stats(f->a.dev, &s0);
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), 0);
	wg_device_stats(f->a.dev, &s1);
	assert_int_equal(s1.tx_drop_queue, s0.tx_drop_queue + 5);
	assert_int_equal(wg_index_table_count(f->a.dev->index), 0);
	run_for(f->base, 150);
	wg_device_stats(f->a.dev, &s1);
	assert_int_equal(s1.rx_drop_nokey, s0.rx_drop_nokey + 1); /* the response */
	assert_int_equal(f->b.rx_count, 0);
}

/* Removed with no endpoint to reach (the retransmit timer and the staging
 * queue armed), and with every timer of an established session armed. */
static void test_remove_with_timers_armed(void **state)
{
	struct fixture *f = *state;
	struct wg_peer *pa, *pb;
	uint8_t priv[32], pub[32];
	uint16_t qport;
	int qfd = quiet_socket(&qport);

	make_key(priv, pub);
	pa = add_key(f->a.dev, pub, 9, qport);
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.9"), 0);
	assert_int_equal(recv_type(qfd, 500), 1); /* the initiation */
	assert_true(evtimer_pending(pa->timer_retransmit_handshake, NULL));
	assert_int_equal(pa->staged_count, 1);

	establish(f);
	/* One more b -> a data packet arms a's passive keepalive. */
	assert_int_equal(send4(f->b.dev, "100.64.0.2", "100.64.0.1"), 0);
	run_until(f->base, &f->a.rx_count, 2, 1000);
	pb = peer_of(f->a.dev, f->b.pub);
	assert_true(evtimer_pending(pb->timer_send_keepalive, NULL));
	assert_true(evtimer_pending(pb->timer_zero_key_material, NULL));
	/* And an a -> b data packet arms a's new-handshake timer. */
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_true(evtimer_pending(pb->timer_new_handshake, NULL));

	struct wg_peer_config pc;
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	pc.persistent_keepalive = 1;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_KEEPALIVE), 0);
	assert_true(evtimer_pending(pb->timer_persistent_keepalive, NULL));

	assert_int_equal(wg_device_remove_peer(f->a.dev, pub), 0);
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), 0);
	assert_int_equal(wg_device_remove_peer(f->b.dev, f->a.pub), 0);
	assert_int_equal(wg_index_table_count(f->a.dev->index), 0);
	assert_int_equal(wg_index_table_count(f->b.dev->index), 0);
	/* Past the persistent keepalive: nothing fires on freed peers. */
	run_for(f->base, 1300);
	assert_int_equal(recv_type(qfd, 10), 0);
	close(qfd);
}

static void test_update_endpoint(void **state)
{
	struct fixture *f = *state;
	struct wg_peer_config pc;
	struct wg_peer_info info;
	struct wg_device_stats s0, s1;
	uint16_t qport;
	int qfd = quiet_socket(&qport);
	unsigned b0;

	establish(f);
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	loopback(&pc.endpoint, qport);
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ENDPOINT), 0);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(ntohs(((struct sockaddr_in *)&info.endpoint)->sin_port), qport);
	/* The next packet goes to the new place, on the same session. */
	b0 = f->b.rx_count;
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_int_equal(recv_type(qfd, 500), 4);
	run_for(f->base, 30);
	assert_int_equal(f->b.rx_count, b0);

	/* Forgotten: nowhere to send (counted). */
	memset(&pc.endpoint, 0, sizeof(pc.endpoint));
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ENDPOINT), 0);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.endpoint.ss_family, 0);
	wg_device_stats(f->a.dev, &s0);
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	wg_device_stats(f->a.dev, &s1);
	assert_int_equal(s1.tx_drop_sock, s0.tx_drop_sock + 1);

	/* A bad family is refused and changes nothing. */
	pc.endpoint.ss_family = AF_UNIX;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ENDPOINT),
	                 -EINVAL);

	/* b moves to another port; told so, a follows at once. */
	assert_int_equal(wg_device_listen(f->b.dev, 0), 0);
	loopback(&pc.endpoint, wg_device_port(f->b.dev));
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ENDPOINT), 0);
	b0 = f->b.rx_count;
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 1000));

	memcpy(pc.public_key, f->a.pub, 32); /* a is not its own peer */
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ENDPOINT),
	                 -ENOENT);
	close(qfd);
}

static void test_update_allowed_ips(void **state)
{
	struct fixture *f = *state;
	struct wg_allowed_ip ips[2];
	struct wg_peer_config pc;
	struct wg_peer_info info;
	struct wg_device_stats s0, s1;
	unsigned a0, b0;

	establish(f);
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	aip4(&ips[0], "100.64.1.0", 24);
	aip4(&ips[1], "100.64.2.7", 32);
	pc.allowed_ips = ips;
	pc.n_allowed_ips = 2;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ALLOWED_IPS),
	                 0);
	assert_false(route4(f->a.dev, "100.64.0.2"));
	assert_true(route4(f->a.dev, "100.64.1.200"));
	assert_true(route4(f->a.dev, "100.64.2.7"));
	assert_false(route4(f->a.dev, "100.64.2.8"));
	assert_int_equal(wg_allowedips_count(f->a.dev->aips), 2);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.n_allowed_ips, 2);

	/* Sending follows the new set. */
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), -EHOSTUNREACH);
	b0 = f->b.rx_count;
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.1.5"), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 1000));

	/* So does the source check on receive. */
	wg_device_stats(f->a.dev, &s0);
	a0 = f->a.rx_count;
	assert_int_equal(send4(f->b.dev, "100.64.0.2", "100.64.0.1"), 0);
	run_for(f->base, 50);
	wg_device_stats(f->a.dev, &s1);
	assert_int_equal(f->a.rx_count, a0);
	assert_int_equal(s1.rx_drop_allowedips, s0.rx_drop_allowedips + 1);
	assert_int_equal(send4(f->b.dev, "100.64.1.9", "100.64.0.1"), 0);
	assert_true(run_until(f->base, &f->a.rx_count, a0 + 1, 1000));

	/* A bad prefix anywhere in the set: refused, the old set stays. */
	aip4(&ips[1], "100.64.3.0", 24);
	ips[1].cidr = 33;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ALLOWED_IPS),
	                 -EINVAL);
	ips[1].family = AF_UNIX;
	ips[1].cidr = 8;
	assert_int_equal(
	    wg_device_update_peer(f->a.dev, &pc,
	                          WG_PEER_UPD_ALLOWED_IPS | WG_PEER_UPD_KEEPALIVE),
	    -EINVAL);
	assert_true(route4(f->a.dev, "100.64.2.7"));
	assert_false(route4(f->a.dev, "100.64.3.1"));
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.n_allowed_ips, 2);
	assert_int_equal(info.persistent_keepalive, 0);

	/* Another peer's prefixes are not touched. */
	uint8_t priv[32], pub[32];
	make_key(priv, pub);
	add_key(f->a.dev, pub, 77, 0);
	pc.n_allowed_ips = 0;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_ALLOWED_IPS),
	                 0);
	assert_false(route4(f->a.dev, "100.64.1.5"));
	assert_true(route4(f->a.dev, "100.64.0.77"));
	assert_int_equal(wg_allowedips_count(f->a.dev->aips), 1);
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.1.5"), -EHOSTUNREACH);
}

static void test_update_keepalive(void **state)
{
	struct fixture *f = *state;
	struct wg_peer_config pc;
	struct wg_peer_info info;
	struct wg_peer *p;
	unsigned b0;

	/* a turns on a persistent keepalive: it announces itself to b at once
	 * (a handshake, as there is no session yet). */
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	pc.persistent_keepalive = 25;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_KEEPALIVE), 0);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.persistent_keepalive, 25);
	assert_int_equal(info.handshakes_sent, 1);
	p = peer_of(f->a.dev, f->b.pub);
	run_for(f->base, 100);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.handshakes_completed, 1);
	assert_true(evtimer_pending(p->timer_persistent_keepalive, NULL));

	pc.persistent_keepalive = 0;
	assert_int_equal(wg_device_update_peer(f->a.dev, &pc, WG_PEER_UPD_KEEPALIVE), 0);
	assert_false(evtimer_pending(p->timer_persistent_keepalive, NULL));
	/* Sessions survived the updates. */
	b0 = f->b.rx_count;
	assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 1000));
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, f->b.pub, &info), 0);
	assert_int_equal(info.handshakes_sent, 1);
}

static void test_order_after_removal(void **state)
{
	struct fixture *f = *state;
	uint8_t priv[4][32], pub[4][32];
	struct wg_peer_info info;

	for (int i = 0; i < 4; i++) {
		make_key(priv[i], pub[i]);
		add_key(f->a.dev, pub[i], 20 + i, 0);
	}
	/* b, 0, 1, 2, 3 -> remove 1 and b -> 0, 2, 3 */
	assert_int_equal(wg_device_remove_peer(f->a.dev, pub[1]), 0);
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), 0);
	assert_int_equal(wg_device_peer_count(f->a.dev), 3);
	const int want[3] = {0, 2, 3};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(wg_device_peer_info(f->a.dev, i, &info), 0);
		assert_memory_equal(info.public_key, pub[want[i]], 32);
		assert_int_equal(
		    wg_device_peer_info_by_key(f->a.dev, pub[want[i]], &info), 0);
		assert_int_equal(info.n_allowed_ips, 1);
	}
	assert_int_equal(wg_device_peer_info(f->a.dev, 3, &info), -ENOENT);
	assert_int_equal(wg_device_peer_info_by_key(f->a.dev, pub[1], &info), -ENOENT);
	assert_false(route4(f->a.dev, "100.64.0.21"));
	assert_true(route4(f->a.dev, "100.64.0.22"));
}

/* The contract asks callers not to do this, but a network-map update that
 * lands inside the rx callback must still not touch freed memory: the
 * receive path holds nothing after the callback, and the next datagrams of
 * the same batch look the peer up afresh. */
static struct fixture *cb_fixture;

static void on_rx_remove(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;
	struct wg_peer_config pc;

	on_rx(ctx, pkt, len);
	if (n->rx_count == 1) {
		memset(&pc, 0, sizeof(pc));
		memcpy(pc.public_key, cb_fixture->a.pub, 32);
		assert_int_equal(
		    wg_device_update_peer(n->dev, &pc, WG_PEER_UPD_ALLOWED_IPS), 0);
		assert_int_equal(wg_device_remove_peer(n->dev, cb_fixture->a.pub), 0);
	}
}

static void test_remove_from_rx_callback(void **state)
{
	struct fixture *f = *state;
	struct wg_device_stats s;

	cb_fixture = f;
	establish(f);
	f->b.rx_count = 0;
	wg_device_set_rx(f->b.dev, on_rx_remove, &f->b);
	for (int i = 0; i < 8; i++)
		assert_int_equal(send4(f->a.dev, "100.64.0.1", "100.64.0.2"), 0);
	run_for(f->base, 100);
	assert_int_equal(f->b.rx_count, 1);
	assert_int_equal(wg_device_peer_count(f->b.dev), 0);
	wg_device_stats(f->b.dev, &s);
	assert_int_equal(s.rx_drop_nokey, 7);
}

#define MANY 1000

static void test_many_peers(void **state)
{
	struct fixture *f = *state;
	static uint8_t pubs[MANY][32];
	uint8_t priv[32];
	struct wg_peer_config pc;
	struct wg_allowed_ip ip;
	struct wg_device *d = f->b.dev;
	size_t base_count = wg_device_peer_count(d);

	assert_int_equal(wg_device_remove_peer(d, f->a.pub), 0);
	base_count = wg_device_peer_count(d);
	for (int i = 0; i < MANY; i++)
		make_key(priv, pubs[i]);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < MANY; i++) {
			int err;
			memset(&pc, 0, sizeof(pc));
			memcpy(pc.public_key, pubs[i], 32);
			memset(&ip, 0, sizeof(ip));
			ip.family = AF_INET;
			ip.cidr = 32;
			ip.addr[0] = 100; /* 100.65.x.y */
			ip.addr[1] = 65;
			ip.addr[2] = (uint8_t)(i >> 8);
			ip.addr[3] = (uint8_t)i;
			pc.allowed_ips = &ip;
			pc.n_allowed_ips = 1;
			pc.persistent_keepalive = (uint16_t)(round * 10);
			loopback(&pc.endpoint, 9); /* discard; nobody answers */
			assert_non_null(wg_device_add_peer(d, &pc, &err));
		}
		assert_int_equal(wg_device_peer_count(d), base_count + MANY);
		assert_int_equal(wg_allowedips_count(d->aips), MANY);
		/* Removed in a different order each round. */
		for (int k = 0; k < MANY; k++) {
			int i = round == 0   ? k
			        : round == 1 ? MANY - 1 - k
			                     : (k * 7) % MANY;
			assert_int_equal(wg_device_remove_peer(d, pubs[i]), 0);
		}
		assert_int_equal(wg_device_peer_count(d), base_count);
		assert_int_equal(wg_pubkey_table_count(d->pubkeys), base_count);
		assert_int_equal(wg_index_table_count(d->index), 0);
		assert_int_equal(wg_allowedips_count(d->aips), 0);
	}
	run_for(f->base, 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_remove_and_readd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_during_handshake, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_remove_with_timers_armed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_update_endpoint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_allowed_ips, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_keepalive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_order_after_removal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_from_rx_callback, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_many_peers, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
