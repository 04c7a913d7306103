/* wg-ping: ICMP echo over WireGuard using core/wg alone (no lwIP, no TUN),
 * to prove interoperability with other WireGuard implementations.
 *
 *   wg-ping --key PRIV --peer PUB [--endpoint IP:PORT] --local A --remote B
 *           [--psk KEY] [--port N] [--count N] [--timeout S] [--serve S]
 *           [--keepalive S] [--under-load]
 *
 * Keys are base64 (as `wg genkey`), given inline or as a file name. Sends
 * --count echo requests (one per second) from --local to --remote and exits
 * 0 once that many replies came back. It answers echo requests addressed to
 * --local at all times; with --serve S it only answers, for S seconds, and
 * exits 0 if it answered at least one. --under-load makes the device act as
 * if flooded with handshakes (it demands mac2 and answers with cookie
 * replies), to prove the cookie exchange with another implementation. */
#include "core/wg/device.h"
#include "core/wg/device_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ping {
	struct event_base *base;
	struct wg_device *dev;
	struct in_addr local, remote;
	uint16_t ident;
	unsigned count, sent, received, answered;
	double sent_at[4096];
	bool serve;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int read_key(const char *arg, uint8_t out[WG_KEY_LEN])
{
	char buf[256];
	const char *s = arg;
	FILE *f = fopen(arg, "r");
	size_t n;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		while (n &&
		       (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
			buf[--n] = 0;
		s = buf;
	}
	if (sodium_base642bin(out, WG_KEY_LEN, s, strlen(s), NULL, &n, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n != WG_KEY_LEN)
		return -1;
	return 0;
}

static int parse_endpoint(const char *s, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* A 20-byte IPv4 header + ICMP echo (type 8 or 0) with 56 bytes of data. */
static size_t build_icmp(uint8_t *pkt, struct in_addr src, struct in_addr dst,
                         uint8_t type, uint16_t ident, uint16_t seq, const uint8_t *data,
                         size_t dlen)
{
	size_t len = 20 + 8 + dlen;
	uint16_t c;

	memset(pkt, 0, 28);
	pkt[0] = 0x45;
	pkt[2] = (uint8_t)(len >> 8);
	pkt[3] = (uint8_t)len;
	pkt[4] = (uint8_t)(seq >> 8);
	pkt[5] = (uint8_t)seq;
	pkt[6] = 0x40; /* DF */
	pkt[8] = 64;
	pkt[9] = 1; /* ICMP */
	memcpy(pkt + 12, &src, 4);
	memcpy(pkt + 16, &dst, 4);
	c = csum(pkt, 20);
	pkt[10] = (uint8_t)(c >> 8);
	pkt[11] = (uint8_t)c;
	pkt[20] = type;
	pkt[24] = (uint8_t)(ident >> 8);
	pkt[25] = (uint8_t)ident;
	pkt[26] = (uint8_t)(seq >> 8);
	pkt[27] = (uint8_t)seq;
	memcpy(pkt + 28, data, dlen);
	c = csum(pkt + 20, 8 + dlen);
	pkt[22] = (uint8_t)(c >> 8);
	pkt[23] = (uint8_t)c;
	return len;
}

static void on_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	struct ping *pg = ctx;
	uint8_t out[2048];
	struct in_addr src, dst;
	size_t ihl;
	uint16_t ident, seq;

	if (len < 20 || pkt[0] >> 4 != 4 || pkt[9] != 1)
		return;
	ihl = (size_t)(pkt[0] & 15) * 4;
	if (ihl < 20 || len < ihl + 8)
		return;
	memcpy(&src, pkt + 12, 4);
	memcpy(&dst, pkt + 16, 4);
	if (dst.s_addr != pg->local.s_addr)
		return;
	ident = (uint16_t)(pkt[ihl + 4] << 8 | pkt[ihl + 5]);
	seq = (uint16_t)(pkt[ihl + 6] << 8 | pkt[ihl + 7]);
	if (pkt[ihl] == 8 && len - ihl - 8 <= sizeof(out) - 28) {
		size_t n = build_icmp(out, pg->local, src, 0, ident, seq, pkt + ihl + 8,
		                      len - ihl - 8);
		int ret = wg_device_send(pg->dev, out, n);
		pg->answered++;
		printf("echo request from %s seq=%u: %s\n", inet_ntoa(src), seq,
		       ret == 0 ? "answered" : strerror(-ret));
		fflush(stdout);
	} else if (pkt[ihl] == 0 && ident == pg->ident &&
	           src.s_addr == pg->remote.s_addr) {
		double rtt = seq < 4096 ? now_ms() - pg->sent_at[seq] : 0;
		pg->received++;
		printf("echo reply from %s seq=%u time=%.2f ms\n", inet_ntoa(src), seq,
		       rtt);
		fflush(stdout);
		if (!pg->serve && pg->received >= pg->count)
			event_base_loopexit(pg->base, NULL);
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ping *pg = arg;
	uint8_t pkt[128], data[56];
	size_t n;
	int ret;

	if (pg->serve || pg->sent >= pg->count + 60 || pg->sent >= 4095)
		return;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	pg->sent++;
	n = build_icmp(pkt, pg->local, pg->remote, 8, pg->ident, (uint16_t)pg->sent, data,
	               sizeof(data));
	pg->sent_at[pg->sent] = now_ms();
	ret = wg_device_send(pg->dev, pkt, n);
	if (ret != 0)
		fprintf(stderr, "wg-ping: send seq=%u: %s\n", pg->sent, strerror(-ret));
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: wg-ping --key PRIV --peer PUB [--endpoint IP:PORT] --local A "
	        "--remote B [--psk KEY] [--port N] [--count N] [--timeout S] "
	        "[--serve S] [--keepalive S] [--under-load]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"key", required_argument, 0, 'k'},
	    {"peer", required_argument, 0, 'p'},
	    {"endpoint", required_argument, 0, 'e'},
	    {"local", required_argument, 0, 'l'},
	    {"remote", required_argument, 0, 'r'},
	    {"psk", required_argument, 0, 's'},
	    {"port", required_argument, 0, 'P'},
	    {"count", required_argument, 0, 'c'},
	    {"timeout", required_argument, 0, 't'},
	    {"serve", required_argument, 0, 'S'},
	    {"keepalive", required_argument, 0, 'K'},
	    {"under-load", no_argument, 0, 'L'},
	    {0, 0, 0, 0},
	};
	uint8_t priv[WG_KEY_LEN];
	struct wg_peer_config pc;
	struct wg_allowed_ip aip = {.family = AF_INET, .cidr = 32};
	struct ping pg = {.count = 1};
	struct wg_device_stats st;
	struct wg_peer_info info;
	struct timeval one = {1, 0}, limit = {20, 0};
	struct event *tick, *sigint, *sigterm, *stop;
	bool have_key = false, have_peer = false, under_load = false;
	unsigned port = 0;
	int c, err, rc;

	memset(&pc, 0, sizeof(pc));
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			have_key = read_key(optarg, priv) == 0;
			if (!have_key)
				usage();
			break;
		case 'p':
			have_peer = read_key(optarg, pc.public_key) == 0;
			if (!have_peer)
				usage();
			break;
		case 's':
			if (read_key(optarg, pc.preshared_key))
				usage();
			pc.has_preshared_key = true;
			break;
		case 'e':
			if (parse_endpoint(optarg, &pc.endpoint))
				usage();
			break;
		case 'l':
			if (inet_pton(AF_INET, optarg, &pg.local) != 1)
				usage();
			break;
		case 'r':
			if (inet_pton(AF_INET, optarg, &pg.remote) != 1)
				usage();
			break;
		case 'P':
			port = (unsigned)atoi(optarg);
			break;
		case 'c':
			pg.count = (unsigned)atoi(optarg);
			break;
		case 't':
			limit.tv_sec = atoi(optarg);
			break;
		case 'S':
			pg.serve = true;
			limit.tv_sec = atoi(optarg);
			break;
		case 'L':
			under_load = true;
			break;
		case 'K':
			pc.persistent_keepalive = (uint16_t)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (!have_key || !have_peer || !pg.local.s_addr || !pg.remote.s_addr ||
	    port > 65535)
		usage();
	signal(SIGPIPE, SIG_IGN);
	memcpy(aip.addr, &pg.remote, 4);
	pc.allowed_ips = &aip;
	pc.n_allowed_ips = 1;
	pg.ident = (uint16_t)(getpid() & 0xffff);

	pg.base = event_base_new();
	pg.dev = wg_device_new(pg.base, priv);
	sodium_memzero(priv, sizeof(priv));
	if (!pg.dev) {
		fprintf(stderr, "wg-ping: bad private key\n");
		return 2;
	}
	wg_device_set_rx(pg.dev, on_rx, &pg);
	if (under_load)
		wg_device_force_under_load(pg.dev, 1);
	if (!wg_device_add_peer(pg.dev, &pc, &err)) {
		fprintf(stderr, "wg-ping: add peer: %s\n", strerror(-err));
		return 2;
	}
	sodium_memzero(&pc, sizeof(pc));
	err = wg_device_listen(pg.dev, (uint16_t)port);
	if (err) {
		fprintf(stderr, "wg-ping: listen on port %u: %s\n", port, strerror(-err));
		return 2;
	}
	printf("wg-ping: listening on UDP port %u\n", wg_device_port(pg.dev));
	fflush(stdout);

	tick = event_new(pg.base, -1, EV_PERSIST, on_tick, &pg);
	event_add(tick, &one);
	stop = evtimer_new(pg.base, on_stop, pg.base);
	event_add(stop, &limit);
	sigint = evsignal_new(pg.base, SIGINT, on_stop, pg.base);
	sigterm = evsignal_new(pg.base, SIGTERM, on_stop, pg.base);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	if (!pg.serve)
		on_tick(-1, 0, &pg);
	event_base_dispatch(pg.base);

	wg_device_stats(pg.dev, &st);
	wg_device_peer_info(pg.dev, 0, &info);
	fprintf(
	    stderr,
	    "wg-ping: sent %u, replies %u, answered %u; handshakes sent %llu completed "
	    "%llu; "
	    "rx %llu tx %llu bytes; drops: short %llu type %llu mac %llu decrypt %llu "
	    "replay %llu allowedips %llu nokey %llu; cookies %llu/%llu\n",
	    pg.sent, pg.received, pg.answered, (unsigned long long)info.handshakes_sent,
	    (unsigned long long)info.handshakes_completed,
	    (unsigned long long)info.rx_bytes, (unsigned long long)info.tx_bytes,
	    (unsigned long long)st.rx_drop_short, (unsigned long long)st.rx_drop_type,
	    (unsigned long long)st.rx_drop_mac, (unsigned long long)st.rx_drop_decrypt,
	    (unsigned long long)st.rx_drop_replay,
	    (unsigned long long)st.rx_drop_allowedips,
	    (unsigned long long)st.rx_drop_nokey, (unsigned long long)st.cookies_sent,
	    (unsigned long long)st.cookies_received);
	rc = pg.serve ? (pg.answered > 0 ? 0 : 1) : (pg.received >= pg.count ? 0 : 1);
	event_free(tick);
	event_free(stop);
	event_free(sigint);
	event_free(sigterm);
	wg_device_free(pg.dev);
	event_base_free(pg.base);
	return rc;
}
