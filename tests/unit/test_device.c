/* core/wg's device end to end on loopback: devices on one event_base, real
 * UDP sockets on 127.0.0.1, each the other's peer. Proves delivery both ways
 * (IPv4 and IPv6 inner packets, padding trimmed), the allowed-IPs source
 * check, endpoint roaming (new port, same key; and a restarted peer), that a
 * stranger's key gets nowhere, session rotation keeping the previous session
 * for packets in flight, data replay, the staging queue bound (the oldest
 * gives way), the cookie
 * path under load, that the receive path survives truncated, oversized
 * and random input with every drop counted, IPv6 endpoints, and (in real
 * time, ~6 s) handshake retransmission and persistent keepalives. */
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

#include "core/util/prom.h"
#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"
#include "node/metrics.h"

struct node {
	struct wg_device *dev;
	uint8_t priv[32], pub[32];
	uint8_t last[70000];
	size_t last_len;
	unsigned rx_count;
};

struct fixture {
	struct event_base *base;
	struct node a, b;
	struct wg_peer *a_peer_b, *b_peer_a;
};

static void on_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	struct node *n = ctx;
	assert_true(len <= sizeof(n->last));
	memcpy(n->last, pkt, len);
	n->last_len = len;
	n->rx_count++;
}

static void node_init(struct event_base *base, struct node *n, const uint8_t *priv)
{
	memset(n, 0, sizeof(*n));
	if (priv)
		memcpy(n->priv, priv, 32);
	else
		randombytes_buf(n->priv, 32);
	n->priv[0] &= 248;
	n->priv[31] = (n->priv[31] & 127) | 64;
	crypto_scalarmult_base(n->pub, n->priv);
	n->dev = wg_device_new(base, n->priv);
	assert_non_null(n->dev);
	wg_device_set_rx(n->dev, on_rx, n);
	assert_int_equal(wg_device_listen(n->dev, 0), 0);
	assert_true(wg_device_port(n->dev) != 0);
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

static void aip6(struct wg_allowed_ip *a, const char *s, uint8_t cidr)
{
	memset(a, 0, sizeof(*a));
	a->family = AF_INET6;
	a->cidr = cidr;
	assert_int_equal(inet_pton(AF_INET6, s, a->addr), 1);
}

/* Adds `to` as a peer of `n`: allowed IPs 100.64.0.<host>/32 and fd00::<host>. */
static struct wg_peer *add_peer(struct node *n, const struct node *to, int host,
                                uint16_t endpoint_port)
{
	struct wg_allowed_ip ips[2];
	struct wg_peer_config pc;
	char s[64];
	struct wg_peer *p;
	int err = 1;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, to->pub, 32);
	snprintf(s, sizeof(s), "100.64.0.%d", host);
	aip4(&ips[0], s, 32);
	snprintf(s, sizeof(s), "fd00::%d", host);
	aip6(&ips[1], s, 128);
	pc.allowed_ips = ips;
	pc.n_allowed_ips = 2;
	if (endpoint_port)
		loopback(&pc.endpoint, endpoint_port);
	p = wg_device_add_peer(n->dev, &pc, &err);
	assert_non_null(p);
	assert_int_equal(err, 0);
	return p;
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.base = event_base_new();
	node_init(f.base, &f.a, NULL);
	node_init(f.base, &f.b, NULL);
	/* a is 100.64.0.1, b is 100.64.0.2; only a knows where b is. */
	f.a_peer_b = add_peer(&f.a, &f.b, 2, wg_device_port(f.b.dev));
	f.b_peer_a = add_peer(&f.b, &f.a, 1, 0);
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

/* Runs the loop until *counter reaches want or ms (wall clock) pass. */
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

static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* A hand-made IPv4/UDP packet with `payload` bytes. */
static size_t ip4_packet(uint8_t *pkt, const char *src, const char *dst, size_t payload)
{
	size_t len = 20 + 8 + payload;
	uint16_t c;

	memset(pkt, 0, len);
	pkt[0] = 0x45;
	pkt[2] = (uint8_t)(len >> 8);
	pkt[3] = (uint8_t)len;
	pkt[8] = 64;
	pkt[9] = 17;
	inet_pton(AF_INET, src, pkt + 12);
	inet_pton(AF_INET, dst, pkt + 16);
	c = csum(pkt, 20);
	pkt[10] = (uint8_t)(c >> 8);
	pkt[11] = (uint8_t)c;
	pkt[20] = 0x30;
	pkt[21] = 0x39;
	pkt[22] = 0x00;
	pkt[23] = 0x35;
	pkt[24] = (uint8_t)((8 + payload) >> 8);
	pkt[25] = (uint8_t)(8 + payload);
	for (size_t i = 0; i < payload; i++)
		pkt[28 + i] = (uint8_t)(i * 7);
	return len;
}

static size_t ip6_packet(uint8_t *pkt, const char *src, const char *dst, size_t payload)
{
	memset(pkt, 0, 40 + payload);
	pkt[0] = 0x60;
	pkt[4] = (uint8_t)(payload >> 8);
	pkt[5] = (uint8_t)payload;
	pkt[6] = 59; /* no next header */
	pkt[7] = 64;
	inet_pton(AF_INET6, src, pkt + 8);
	inet_pton(AF_INET6, dst, pkt + 24);
	for (size_t i = 0; i < payload; i++)
		pkt[40 + i] = (uint8_t)(i ^ 0x5a);
	return 40 + payload;
}

static uint64_t drops(const struct wg_device_stats *s)
{
	return s->rx_drop_short + s->rx_drop_type + s->rx_drop_mac + s->rx_drop_decrypt +
	       s->rx_drop_replay + s->rx_drop_allowedips + s->rx_drop_nokey +
	       s->rx_drop_ratelimit;
}

/* a -> b, then b -> a, so that both have a confirmed session. */
static void establish(struct fixture *f)
{
	uint8_t pkt[128];
	size_t n;
	unsigned a0 = f->a.rx_count, b0 = f->b.rx_count;

	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 10);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 3000));
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.1", 10);
	assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->a.rx_count, a0 + 1, 3000));
}

/* The value of a sample in Prometheus text ("name{labels}"), -1: none. */
static double scrape(const struct wg_device *d, const char *sample)
{
	struct prom p;
	double v = -1;
	prom_init(&p);
	node_metrics_wg_totals(d, &p);
	assert_false(p.oom);
	size_t n = strlen(sample);
	for (const char *l = p.buf; l && *l;
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, sample, n) && l[n] == ' ')
			v = strtod(l + n + 1, NULL);
	prom_free(&p);
	return v;
}

/* meshproxy_handshakes_total and meshproxy_wg_bytes_total never go down:
 * a peer the map removes between two scrapes still counts. */
static void test_removed_peer_totals_monotonic(void **state)
{
	struct fixture *f = *state;
	static const char *const s[] = {
	    "meshproxy_handshakes_total{result=\"initiated\"}",
	    "meshproxy_handshakes_total{result=\"completed\"}",
	    "meshproxy_wg_bytes_total{dir=\"rx\"}",
	    "meshproxy_wg_bytes_total{dir=\"tx\"}"};
	double before[4];
	establish(f);
	for (int i = 0; i < 4; i++) {
		before[i] = scrape(f->a.dev, s[i]);
		assert_true(before[i] > 0);
	}
	assert_int_equal(wg_device_remove_peer(f->a.dev, f->b.pub), 0);
	f->a_peer_b = NULL;
	assert_int_equal(wg_device_peer_count(f->a.dev), 0);
	for (int i = 0; i < 4; i++)
		assert_true(scrape(f->a.dev, s[i]) >= before[i]);
}

static void test_send_receive(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[2000];
	struct wg_peer_info ia, ib;
	struct wg_device_stats sa, sb;
	size_t n;

	/* Queued behind the handshake, delivered once it completes. */
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 33);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, 1, 3000));
	assert_int_equal(f->b.last_len, n); /* padding trimmed */
	assert_memory_equal(f->b.last, pkt, n);

	/* b learnt a's endpoint from the handshake and answers. */
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.1", 1400);
	assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->a.rx_count, 1, 3000));
	assert_int_equal(f->a.last_len, n);
	assert_memory_equal(f->a.last, pkt, n);

	/* IPv6 inside, and sizes around the padding boundary. */
	for (size_t pl = 0; pl < 40; pl += 3) {
		unsigned before = f->b.rx_count;
		n = ip6_packet(pkt, "fd00::1", "fd00::2", pl);
		assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
		assert_true(run_until(f->base, &f->b.rx_count, before + 1, 3000));
		assert_int_equal(f->b.last_len, n);
		assert_memory_equal(f->b.last, pkt, n);
	}

	assert_int_equal(wg_device_peer_count(f->a.dev), 1);
	assert_int_equal(wg_device_peer_info(f->a.dev, 0, &ia), 0);
	assert_int_equal(wg_device_peer_info(f->b.dev, 0, &ib), 0);
	assert_int_equal(wg_device_peer_info(f->b.dev, 1, &ib), -ENOENT);
	assert_int_equal(wg_device_peer_info(f->b.dev, 0, &ib), 0);
	assert_memory_equal(ia.public_key, f->b.pub, 32);
	assert_memory_equal(ib.public_key, f->a.pub, 32);
	assert_int_equal(ia.handshakes_sent, 1);
	assert_int_equal(ia.handshakes_completed, 1);
	assert_int_equal(ib.handshakes_completed, 1);
	assert_true(ia.last_handshake_unix > 1600000000);
	assert_true(ib.last_handshake_unix > 1600000000);
	assert_true(ia.tx_bytes > 0 && ia.rx_bytes > 0 && ib.tx_bytes > 0 &&
	            ib.rx_bytes > 0);
	assert_int_equal(ia.n_allowed_ips, 2);
	assert_int_equal(ib.endpoint.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ib.endpoint)->sin_port),
	                 wg_device_port(f->a.dev));
	wg_device_stats(f->a.dev, &sa);
	wg_device_stats(f->b.dev, &sb);
	assert_int_equal(sb.rx_packets, f->b.rx_count);
	assert_int_equal(sa.tx_packets, f->b.rx_count);
	assert_int_equal(drops(&sa), 0);
	assert_int_equal(drops(&sb), 0);
}

static void test_routes_and_bad_packets(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128], addr[16];
	struct wg_device_stats s;
	size_t n;

	n = ip4_packet(pkt, "100.64.0.1", "100.64.9.9", 4);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), -EHOSTUNREACH);
	wg_device_stats(f->a.dev, &s);
	assert_int_equal(s.tx_drop_noroute, 1);
	assert_int_equal(wg_device_send(f->a.dev, pkt, 19), -EINVAL);
	assert_int_equal(wg_device_send(f->a.dev, pkt, 0), -EINVAL);
	pkt[0] = 0x55;
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), -EINVAL);
	n = ip6_packet(pkt, "fd00::1", "fd00::2", 0);
	assert_int_equal(wg_device_send(f->a.dev, pkt, 39), -EINVAL);

	inet_pton(AF_INET, "100.64.0.2", addr);
	assert_true(wg_device_has_route(f->a.dev, AF_INET, addr));
	inet_pton(AF_INET, "100.64.0.3", addr);
	assert_false(wg_device_has_route(f->a.dev, AF_INET, addr));
	inet_pton(AF_INET6, "fd00::2", addr);
	assert_true(wg_device_has_route(f->a.dev, AF_INET6, addr));
	assert_false(wg_device_has_route(f->a.dev, AF_UNIX, addr));
}

static void test_add_peer_errors(void **state)
{
	struct fixture *f = *state;
	struct wg_peer_config pc;
	struct wg_allowed_ip bad;
	int err = 0;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	assert_null(wg_device_add_peer(f->a.dev, &pc, &err));
	assert_int_equal(err, -EEXIST);
	memcpy(pc.public_key, f->a.pub, 32);
	assert_null(wg_device_add_peer(f->a.dev, &pc, &err));
	assert_int_equal(err, -EINVAL);
	memset(pc.public_key, 0, 32); /* a low-order point */
	assert_null(wg_device_add_peer(f->a.dev, &pc, &err));
	assert_int_equal(err, -EINVAL);
	randombytes_buf(pc.public_key, 32);
	aip4(&bad, "100.65.0.0", 33);
	pc.allowed_ips = &bad;
	pc.n_allowed_ips = 1;
	assert_null(wg_device_add_peer(f->a.dev, &pc, &err));
	assert_int_equal(err, -EINVAL);
	assert_int_equal(wg_device_peer_count(f->a.dev), 1);
	/* An all-zero private key clamps to a usable one, as `wg` treats it. */
	struct wg_device *z = wg_device_new(f->base, (const uint8_t[32]){0});
	assert_non_null(z);
	wg_device_free(z);
	wg_device_free(NULL);
	assert_null(wg_device_new(NULL, f->a.priv));
}

static void test_disallowed_source(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128];
	struct wg_device_stats s;
	size_t n;

	establish(f);
	unsigned before = f->b.rx_count;
	/* a sends with a source b does not allow for a. */
	n = ip4_packet(pkt, "100.64.0.77", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	n = ip6_packet(pkt, "fd00::77", "fd00::2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	run_for(f->base, 100);
	wg_device_stats(f->b.dev, &s);
	assert_int_equal(s.rx_drop_allowedips, 2);
	assert_int_equal(f->b.rx_count, before);
	/* Allowed sources still pass. */
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, before + 1, 2000));
}

static uint16_t endpoint_port(struct wg_device *d)
{
	struct wg_peer_info info;
	assert_int_equal(wg_device_peer_info(d, 0, &info), 0);
	return ntohs(((struct sockaddr_in *)&info.endpoint)->sin_port);
}

static void test_roaming(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128];
	size_t n;
	uint16_t old_port;

	establish(f);
	old_port = wg_device_port(f->a.dev);
	assert_int_equal(endpoint_port(f->b.dev), old_port);

	/* a moves to another port (a new socket, same session). Its next data
	 * packet tells b, and b's answer follows it there. */
	assert_int_equal(wg_device_listen(f->a.dev, 0), 0);
	assert_int_not_equal(wg_device_port(f->a.dev), old_port);
	unsigned b0 = f->b.rx_count, a0 = f->a.rx_count;
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 2000));
	assert_int_equal(endpoint_port(f->b.dev), wg_device_port(f->a.dev));
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.1", 8);
	assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->a.rx_count, a0 + 1, 2000));

	/* a restarts elsewhere with the same key: its handshake moves b. */
	struct node a2;
	node_init(f->base, &a2, f->a.priv);
	add_peer(&a2, &f->b, 2, wg_device_port(f->b.dev));
	usleep(30000); /* newer TAI64N than a's last initiation */
	b0 = f->b.rx_count;
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(a2.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 3000));
	assert_int_equal(endpoint_port(f->b.dev), wg_device_port(a2.dev));
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.1", 8);
	a0 = f->a.rx_count;
	assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	assert_true(run_until(f->base, &a2.rx_count, 1, 2000));
	assert_int_equal(f->a.rx_count, a0);
	wg_device_free(a2.dev);
}

static void test_stranger_cannot_talk(void **state)
{
	struct fixture *f = *state;
	struct node c;
	uint8_t pkt[128];
	struct wg_device_stats sb, sc;
	size_t n;

	/* c knows b's public key, but b does not know c. */
	node_init(f->base, &c, NULL);
	add_peer(&c, &f->b, 2, wg_device_port(f->b.dev));
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(c.dev, pkt, n), 0);
	run_for(f->base, 200);
	wg_device_stats(f->b.dev, &sb);
	wg_device_stats(c.dev, &sc);
	assert_int_equal(f->b.rx_count, 0);
	assert_int_equal(sb.rx_drop_decrypt, 1); /* static key of no peer of ours */
	assert_int_equal(sc.rx_packets, 0);

	/* c claiming to be a (a's public key in its peer list of b is what
	 * matters, not c's) changes nothing: the initiation proves c's key. */
	struct wg_peer_info info;
	assert_int_equal(wg_device_peer_info(c.dev, 0, &info), 0);
	assert_int_equal(info.handshakes_completed, 0);
	wg_device_free(c.dev);
}

static void test_rotation_keeps_previous(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128], buf[256];
	struct wg_session *old;
	size_t n, m;

	establish(f);
	old = f->a_peer_b->current;
	assert_non_null(old);
	assert_true(old->kp.i_am_the_initiator);
	/* A new handshake now (bypassing the once-per-REKEY_TIMEOUT limit). */
	f->a_peer_b->last_sent_handshake_ns = 0;
	usleep(30000);
	wg_device_handshake_all(f->a.dev);
	unsigned done = 2;
	struct wg_peer_info info;
	for (int i = 0; i < 500; i++) {
		run_for(f->base, 4);
		wg_device_peer_info(f->a.dev, 0, &info);
		if (info.handshakes_completed >= done)
			break;
	}
	assert_int_equal(info.handshakes_completed, done);
	assert_ptr_not_equal(f->a_peer_b->current, old);
	assert_ptr_equal(f->a_peer_b->previous, old);
	/* b confirmed the new session from a's keepalive. */
	assert_null(f->b_peer_a->next);
	assert_non_null(f->b_peer_a->previous);

	/* A packet sealed under the old session, arriving late, still counts. */
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	memcpy(buf + WG_MSG_DATA_HEADER_LEN, pkt, n);
	memset(buf + WG_MSG_DATA_HEADER_LEN + n, 0, 16 - n % 16);
	m = wg_noise_seal(&old->kp, old->kp.send_counter++, buf, (n + 15) & ~(size_t)15);
	struct sockaddr_storage src;
	loopback(&src, wg_device_port(f->a.dev));
	unsigned b0 = f->b.rx_count;
	wg_device_receive(f->b.dev, buf, m, (struct sockaddr *)&src);
	assert_int_equal(f->b.rx_count, b0 + 1);
	assert_memory_equal(f->b.last, pkt, n);

	/* The same packet again is a replay. */
	struct wg_device_stats s;
	wg_device_receive(f->b.dev, buf, m, (struct sockaddr *)&src);
	wg_device_stats(f->b.dev, &s);
	assert_int_equal(f->b.rx_count, b0 + 1);
	assert_int_equal(s.rx_drop_replay, 1);
	/* And a packet with a flipped bit does not decrypt. */
	buf[m - 1] ^= 1;
	wg_device_receive(f->b.dev, buf, m, (struct sockaddr *)&src);
	wg_device_stats(f->b.dev, &s);
	assert_int_equal(s.rx_drop_decrypt, 1);
}

/* After our address changed (wg_device_handshake_active): a handshake with
 * the peer in use (a current session), none with an idle one that has an
 * endpoint but no session (wg_device_handshake_all would send it one);
 * once the session is old and nothing came for 2 minutes, none either. */
static void test_handshake_only_active(void **state)
{
	struct fixture *f = *state;
	struct node c;
	struct wg_peer_info bi, ci;

	node_init(f->base, &c, NULL);
	struct wg_peer *a_peer_c = add_peer(&f->a, &c, 3, wg_device_port(c.dev));
	establish(f);
	wg_device_peer_info_by_key(f->a.dev, f->b.pub, &bi);
	uint64_t b_sent = bi.handshakes_sent;
	f->a_peer_b->last_sent_handshake_ns = 0;
	assert_int_equal(wg_device_handshake_active(f->a.dev, 120000), 1);
	wg_device_peer_info_by_key(f->a.dev, f->b.pub, &bi);
	wg_device_peer_info_by_key(f->a.dev, c.pub, &ci);
	assert_int_equal(bi.handshakes_sent, b_sent + 1);
	assert_int_equal(ci.handshakes_sent, 0);
	assert_int_equal(a_peer_c->handshakes_sent, 0);

	/* Old session, last datagram 3 minutes ago: idle now. */
	run_for(f->base, 50);
	uint64_t ago = 200ULL * 1000000000ULL;
	if (f->a_peer_b->current)
		f->a_peer_b->current->kp.birthdate_ns -= ago;
	f->a_peer_b->last_direct_rx_ns -= ago;
	f->a_peer_b->last_relay_rx_ns = 0;
	assert_int_equal(wg_device_handshake_active(f->a.dev, 120000), 0);
	wg_device_free(c.dev);
}

static void test_staging_queue_bound(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128];
	struct wg_device_stats s;
	size_t n;
	int ret = 0, i;

	/* b does not know where a is: packets wait for a to call. */
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.1", 8);
	for (i = 0; i < WG_MAX_STAGED_PACKETS; i++)
		assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	/* Full: the oldest gives way (test_wg_staging checks which). */
	ret = wg_device_send(f->b.dev, pkt, n);
	assert_int_equal(ret, 0);
	wg_device_stats(f->b.dev, &s);
	assert_int_equal(s.tx_drop_queue, 1);
	assert_int_equal(f->b_peer_a->staged_count, WG_MAX_STAGED_PACKETS);
	/* When a calls, the queue drains to it. */
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->a.rx_count, WG_MAX_STAGED_PACKETS, 3000));
	assert_int_equal(f->b_peer_a->staged_count, 0);
}

static void test_cookie_under_load(void **state)
{
	struct fixture *f = *state;
	uint8_t pkt[128];
	struct wg_device_stats sa, sb;
	size_t n;

	wg_device_force_under_load(f->b.dev, 1);
	n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	run_for(f->base, 200);
	wg_device_stats(f->a.dev, &sa);
	wg_device_stats(f->b.dev, &sb);
	assert_int_equal(sb.cookies_sent, 1);
	assert_int_equal(sa.cookies_received, 1);
	assert_int_equal(f->b.rx_count, 0);
	/* The retry (normally REKEY_TIMEOUT later) carries mac2: accepted. */
	f->a_peer_b->last_sent_handshake_ns = 0;
	usleep(30000);
	wg_send_handshake_initiation(f->a_peer_b, true);
	assert_true(run_until(f->base, &f->b.rx_count, 1, 3000));
	wg_device_stats(f->b.dev, &sb);
	assert_int_equal(sb.cookies_sent, 1);
	/* a's response to b is a handshake too; b sends a cookie only if a is
	 * loaded, which it is not. */
	wg_device_force_under_load(f->b.dev, -1);
}

/* Junk of a handshake's size (no valid MAC1: sent without our public key)
 * does not put the device under load: a real handshake right after 2,000
 * of them completes without a cookie round trip. */
static void test_junk_does_not_count_as_load(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_storage src;
	struct wg_device_stats sb;
	uint8_t junk[WG_MSG_INITIATION_LEN], pkt[128];

	loopback(&src, 9);
	for (int i = 0; i < 2000; i++) {
		randombytes_buf(junk, sizeof(junk));
		junk[0] = WG_MSG_HANDSHAKE_INITIATION;
		junk[1] = junk[2] = junk[3] = 0;
		wg_device_receive(f->b.dev, junk, sizeof(junk), (struct sockaddr *)&src);
	}
	wg_device_stats(f->b.dev, &sb);
	assert_int_equal(sb.rx_drop_mac, 2000);
	size_t n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, 1, 3000));
	wg_device_stats(f->b.dev, &sb);
	assert_int_equal(sb.cookies_sent, 0);
}

static void test_garbage_is_counted(void **state)
{
	struct fixture *f = *state;
	struct wg_device_stats s0, s1;
	struct sockaddr_storage src;
	static uint8_t buf[70000];
	uint64_t fed = 0;

	establish(f);
	loopback(&src, 9);
	wg_device_stats(f->b.dev, &s0);

	/* Truncated and oversized messages of every type. */
	for (uint8_t type = 0; type <= 5; type++) {
		for (size_t len = 0; len <= 200; len++) {
			randombytes_buf(buf, len);
			if (len >= 4) {
				buf[0] = type;
				buf[1] = buf[2] = buf[3] = 0;
			}
			wg_device_receive(f->b.dev, buf, len, (struct sockaddr *)&src);
			fed++;
		}
	}
	/* Data messages naming b's real session index, random bodies. */
	for (size_t len = 0; len < 2000; len += 7) {
		randombytes_buf(buf, len);
		if (len >= 8) {
			wg_put_le32(buf, WG_MSG_DATA);
			wg_put_le32(buf + 4, f->b_peer_a->current->kp.local_index);
		}
		wg_device_receive(f->b.dev, buf, len, (struct sockaddr *)&src);
		fed++;
	}
	/* Huge. */
	randombytes_buf(buf, sizeof(buf));
	wg_put_le32(buf, WG_MSG_DATA);
	wg_device_receive(f->b.dev, buf, sizeof(buf), (struct sockaddr *)&src);
	fed++;
	/* Random everything, including reserved bytes. */
	for (int i = 0; i < 20000; i++) {
		size_t len = randombytes_uniform(300);
		randombytes_buf(buf, len);
		if (len && (i & 1))
			buf[0] = (uint8_t)(1 + i % 4);
		wg_device_receive(f->b.dev, buf, len, (struct sockaddr *)&src);
		fed++;
	}
	wg_device_stats(f->b.dev, &s1);
	assert_true(drops(&s1) - drops(&s0) == fed);
	assert_int_equal(s1.rx_packets, s0.rx_packets);

	/* The same through the real socket (datagrams, truncation flags). */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage to;
	loopback(&to, wg_device_port(f->b.dev));
	for (int i = 0; i < 200; i++) {
		size_t len = randombytes_uniform(200);
		randombytes_buf(buf, len);
		sendto(fd, buf, len, 0, (struct sockaddr *)&to,
		       sizeof(struct sockaddr_in));
	}
	close(fd);
	run_for(f->base, 100);
	wg_device_stats(f->b.dev, &s0);
	assert_true(drops(&s0) - drops(&s1) == 200);
	/* And b still works. */
	unsigned b0 = f->b.rx_count;
	uint8_t pkt[64];
	size_t n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, b0 + 1, 2000));
}

/* Bytes a sent to b for one packet of len bytes (the message on the wire). */
static uint64_t wire_bytes(struct fixture *f, size_t len)
{
	uint8_t pkt[2000];
	struct wg_peer_info before, after;
	assert_int_equal(wg_device_peer_info(f->a.dev, 0, &before), 0);
	unsigned seen = f->b.rx_count;
	size_t n = ip4_packet(pkt, "100.64.0.1", "100.64.0.2", len - 28);
	assert_int_equal(n, len);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, seen + 1, 3000));
	assert_int_equal(f->b.last_len, len); /* padding trimmed by the receiver */
	assert_int_equal(wg_device_peer_info(f->a.dev, 0, &after), 0);
	return after.tx_bytes - before.tx_bytes;
}

/* Padding rounds to 16 but stops at the MTU, as the kernel and
 * wireguard-go: at MTU 1420 a full packet is a 1452-byte message (header
 * 16 + 1420 + tag 16), which fits a 1500-byte IPv6 path with its 48 bytes
 * of IPv6 and UDP headers; unpadded past the MTU it would be 1456. */
static void test_padding_stops_at_the_mtu(void **state)
{
	struct fixture *f = *state;
	wire_bytes(f, 100); /* the handshake first */
	assert_int_equal(wire_bytes(f, 1400), 16 + 1408 + 16);
	assert_int_equal(wire_bytes(f, 1420), 16 + 1424 + 16); /* no MTU known yet */
	wg_device_set_mtu(f->a.dev, 1420);
	assert_int_equal(wire_bytes(f, 1420), 16 + 1420 + 16);
	assert_int_equal(wire_bytes(f, 1417), 16 + 1420 + 16);
	assert_int_equal(wire_bytes(f, 1400), 16 + 1408 + 16); /* below: to 16 */
	assert_int_equal(wire_bytes(f, 1405), 16 + 1408 + 16);
	/* The rule itself, as the kernel's calculate_skb_padding. */
	static const struct {
		size_t len;
		uint16_t mtu;
		size_t want;
	} t[] = {
	    {0, 1420, 0},       {1, 1420, 16},      {1410, 1419, 1419},
	    {1419, 1419, 1419}, {1420, 1420, 1420}, {1417, 1420, 1420},
	    {1430, 1420, 1436}, {2840, 1420, 2840}, {100, 0, 112},
	    {1420, 0, 1424},    {0, 0, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(wg_padded_len(t[i].len, t[i].mtu), t[i].want);
}

/* Finds the peer info of `key` on d. */
static void info_for(struct wg_device *d, const uint8_t *key, struct wg_peer_info *info)
{
	for (size_t i = 0; i < wg_device_peer_count(d); i++) {
		assert_int_equal(wg_device_peer_info(d, i, info), 0);
		if (memcmp(info->public_key, key, 32) == 0)
			return;
	}
	fail_msg("no such peer");
}

static void test_ipv6_endpoint(void **state)
{
	struct fixture *f = *state;
	struct wg_peer_config pc;
	struct wg_allowed_ip ip;
	struct wg_peer_info info;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pc.endpoint;
	struct node e;
	uint8_t pkt[128];
	size_t n;
	int err;

	if (f->b.dev->fd6 < 0)
		skip(); /* no IPv6 on this host */
	node_init(f->base, &e, NULL);
	add_peer(&f->b, &e, 4, 0);
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	aip4(&ip, "100.64.0.2", 32);
	pc.allowed_ips = &ip;
	pc.n_allowed_ips = 1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(wg_device_port(f->b.dev));
	sin6->sin6_addr = in6addr_loopback;
	assert_non_null(wg_device_add_peer(e.dev, &pc, &err));

	n = ip4_packet(pkt, "100.64.0.4", "100.64.0.2", 8);
	assert_int_equal(wg_device_send(e.dev, pkt, n), 0);
	assert_true(run_until(f->base, &f->b.rx_count, 1, 3000));
	info_for(f->b.dev, e.pub, &info);
	assert_int_equal(info.endpoint.ss_family, AF_INET6);
	n = ip4_packet(pkt, "100.64.0.2", "100.64.0.4", 8);
	assert_int_equal(wg_device_send(f->b.dev, pkt, n), 0);
	assert_true(run_until(f->base, &e.rx_count, 1, 3000));
	wg_device_free(e.dev);
}

/* Real time: 5.6 s. An unanswered initiation to a peer never reached is
 * retried three times about a second apart (WG_QUICK_RETRIES), then only
 * after REKEY_TIMEOUT (the fifth would come at 8 s or later); a persistent
 * keepalive of 1 s ticks meanwhile. */
static void test_timers_retransmit_and_persistent_keepalive(void **state)
{
	struct fixture *f = *state;
	struct wg_peer_config pc;
	struct wg_allowed_ip ip;
	struct wg_peer_info info;
	struct node d;
	uint8_t pkt[128], sink_buf[256];
	struct sockaddr_storage sink_addr;
	socklen_t sl = sizeof(sink_addr);
	int sink, err, initiations = 0;
	size_t n;

	/* A silent peer: a bound socket that never answers. */
	sink = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	loopback(&sink_addr, 0);
	assert_int_equal(
	    bind(sink, (struct sockaddr *)&sink_addr, sizeof(struct sockaddr_in)), 0);
	assert_int_equal(getsockname(sink, (struct sockaddr *)&sink_addr, &sl), 0);
	memset(&pc, 0, sizeof(pc));
	randombytes_buf(pc.public_key, 32);
	aip4(&ip, "100.64.1.0", 24);
	pc.allowed_ips = &ip;
	pc.n_allowed_ips = 1;
	pc.endpoint = sink_addr;
	assert_non_null(wg_device_add_peer(f->a.dev, &pc, &err));

	/* d keeps itself known to b every second. */
	node_init(f->base, &d, NULL);
	add_peer(&f->b, &d, 3, 0);
	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, f->b.pub, 32);
	aip4(&ip, "100.64.0.2", 32);
	pc.allowed_ips = &ip;
	pc.n_allowed_ips = 1;
	pc.persistent_keepalive = 1;
	loopback(&pc.endpoint, wg_device_port(f->b.dev));
	assert_non_null(wg_device_add_peer(d.dev, &pc, &err)); /* sends at once */

	n = ip4_packet(pkt, "100.64.0.1", "100.64.1.9", 8);
	assert_int_equal(wg_device_send(f->a.dev, pkt, n), 0);
	run_for(f->base, 5600);
	while (recv(sink, sink_buf, sizeof(sink_buf), 0) == WG_MSG_INITIATION_LEN)
		initiations++;
	close(sink);
	assert_int_equal(initiations, 1 + WG_QUICK_RETRIES);
	info_for(f->a.dev, ((struct wg_peer *)f->a.dev->peers[1])->hs.remote_static,
	         &info);
	assert_int_equal(info.handshakes_sent, 1 + WG_QUICK_RETRIES);
	assert_int_equal(info.handshakes_completed, 0);

	/* Handshake (148) + confirming keepalive (32) + one 32-byte keepalive
	 * per second. */
	info_for(f->b.dev, d.pub, &info);
	assert_int_equal(info.handshakes_completed, 1);
	assert_true(info.rx_bytes >= 148 + 32 + 4 * 32);
	wg_device_free(d.dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_padding_stops_at_the_mtu, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_junk_does_not_count_as_load, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_send_receive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_routes_and_bad_packets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_add_peer_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disallowed_source, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roaming, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stranger_cannot_talk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation_keeps_previous, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_handshake_only_active, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_staging_queue_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cookie_under_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_is_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_endpoint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_removed_peer_totals_monotonic, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_timers_retransmit_and_persistent_keepalive, setup, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
