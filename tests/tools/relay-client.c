/* relay-client: a small blocking client of mesh-relay for tests, built on
 * the node-side codecs (core/relay/frame.h, http.h) and the control client.
 *
 *   relay-client register TOKEN            register a fresh node with
 *                                          mesh-control; prints its private
 *                                          key (hex), name and the relay map
 *                                          of its first network map
 *   relay-client watch TOKEN SECONDS       register, then stay online and
 *                                          print "map RELAYS" for the first
 *                                          map and every update
 *   relay-client pub PRIV                  the public key (base64) of PRIV
 *   relay-client connect ADDR PRIV [--tls] upgrade and handshake; prints
 *                                          "admitted" (exit 0) or "refused:
 *                                          TEXT" (exit 3)
 *   relay-client send ADDR PRIV DSTPUB N SIZE [--tls]
 *                                          send N packets of SIZE bytes
 *                                          (numbered) to DSTPUB, 1 ms apart
 *                                          every 64
 *   relay-client recv ADDR PRIV N TIMEOUT_MS [--tls]
 *                                          print "ready", then count packets
 *                                          until N or the timeout; prints
 *                                          "received K" (exit 0 if K >= N)
 *   relay-client hold ADDR PRIV SECONDS    stay connected (reading); when the
 *                                          server closes or refuses, print
 *                                          "cut at UNIX_MS: TEXT" (exit 0;
 *                                          a RESTARTING frame prints
 *                                          "restarting: ..." first);
 *                                          exit 1 if still connected
 *   relay-client noread ADDR PRIV SECONDS  handshake, then never read
 *   relay-client garbage ADDR MODE         after the upgrade: MODE oversize
 *                                          (a 4 GiB length), junk (a frame
 *                                          of random bytes before CLIENT_INFO),
 *                                          short (a CLIENT_INFO too
 *                                          short); prints how the server
 *                                          answered
 * ADDR is IPv4:PORT; PRIV 64 hex digits. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/control/client.h"
#include "core/control/token.h"
#include "core/relay/frame.h"
#include "core/relay/http.h"
#include "core/relay/session.h"

static int fd = -1;
static SSL *ssl;
static uint8_t rbuf[RELAY_FRAME_MAX * 2];
static size_t rlen;
/* After SERVER_INFO every frame both ways is sealed. */
static struct relay_session sess;
static bool sealed;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void die(const char *m)
{
	fprintf(stderr, "relay-client: %s\n", m);
	exit(2);
}

static void put_all(const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = ssl ? SSL_write(ssl, b, (int)n) : write(fd, b, n);
		if (w <= 0)
			die("write failed");
		b += w;
		n -= (size_t)w;
	}
}

/* One whole frame of n bytes in fr (cap bytes of room), sealed once the
 * session is up. */
static void put_frame(uint8_t *fr, size_t n, size_t cap)
{
	if (sealed && !(n = relay_seal(&sess, fr, n, cap)))
		die("cannot seal a frame");
	put_all(fr, n);
}

/* Reads more into rbuf; -1 closed/error, 0 timeout, 1 got bytes. */
static int fill(int timeout_ms)
{
	if (!(ssl && SSL_pending(ssl))) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, timeout_ms);
		if (r <= 0)
			return r;
	}
	ssize_t n = ssl ? SSL_read(ssl, rbuf + rlen, (int)(sizeof rbuf - rlen))
	                : read(fd, rbuf + rlen, sizeof rbuf - rlen);
	if (n <= 0)
		return -1;
	rlen += (size_t)n;
	return 1;
}

/* Next frame within timeout_ms: 1 got (f points into rbuf until the next
 * call), 0 timeout, -1 closed. */
static size_t last_used;
static int next_frame(struct relay_frame *f, int timeout_ms)
{
	if (last_used) {
		memmove(rbuf, rbuf + last_used, rlen - last_used);
		rlen -= last_used;
		last_used = 0;
	}
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		size_t used;
		size_t total = rlen >= RELAY_HDR_LEN
		                   ? RELAY_HDR_LEN + (size_t)relay_hdr_len(rbuf)
		                   : 0;
		if (sealed && total && total <= rlen) {
			int o = relay_open(&sess, rbuf, total);
			if (o < 0)
				die("a frame from the relay failed authentication");
			if (relay_frame_decode(rbuf, (size_t)o, f, &used, NULL) !=
			    RELAY_DECODE_READY)
				die("bad frame from the relay");
			last_used = total;
			return 1;
		}
		int r = sealed ? RELAY_DECODE_MORE
		               : relay_frame_decode(rbuf, rlen, f, &used, NULL);
		if (r == RELAY_DECODE_READY) {
			last_used = used;
			return 1;
		}
		if (r < 0)
			die("bad frame from the relay");
		uint64_t t = now_ms();
		if (t >= end)
			return 0;
		int k = fill((int)(end - t));
		if (k <= 0)
			return k;
	}
}

static void dial(const char *addr, bool tls)
{
	char host[64];
	const char *c = strrchr(addr, ':');
	if (!c || (size_t)(c - addr) >= sizeof host)
		die("ADDR: expected IPv4:PORT");
	memcpy(host, addr, (size_t)(c - addr));
	host[c - addr] = 0;
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)atoi(c + 1))};
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		die("ADDR: expected IPv4:PORT");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
		die("connect failed");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (tls) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) != 1)
			die("TLS handshake failed");
	}
	char req[256];
	size_t n = relay_http_request(req, sizeof req, addr);
	put_all(req, n);
	for (;;) {
		int r = relay_http_parse_response(rbuf, rlen);
		if (r > 0) {
			memmove(rbuf, rbuf + r, rlen - (size_t)r);
			rlen -= (size_t)r;
			return;
		}
		if (r < 0) {
			fprintf(stderr, "relay-client: upgrade refused (HTTP %d)\n", -r);
			exit(3);
		}
		if (fill(5000) <= 0)
			die("no upgrade answer");
	}
}

static void parse_priv(const char *hex, uint8_t priv[32], uint8_t pub[32])
{
	size_t bl = 0;
	if (sodium_hex2bin(priv, 32, hex, strlen(hex), NULL, &bl, NULL) != 0 || bl != 32)
		die("PRIV: expected 64 hex digits");
	crypto_scalarmult_base(pub, priv);
}

/* Upgrade and handshake; returns 0 admitted, 3 refused (text printed). */
static int handshake(const char *addr, const char *privhex, bool tls, bool quiet)
{
	uint8_t priv[32], pub[32];
	parse_priv(privhex, priv, pub);
	dial(addr, tls);
	struct relay_frame f;
	if (next_frame(&f, 5000) != 1 || f.type != RELAY_FRAME_SERVER_KEY)
		die("no SERVER_KEY");
	uint8_t fr[RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN], cchal[32], spub[32], chal[32],
	    eph[32], reph[32];
	memcpy(spub, f.u.server_key.key, 32);
	memcpy(chal, f.u.server_key.challenge, 32);
	size_t n =
	    relay_client_info_seal(fr, sizeof fr, pub, priv, spub, chal, 0, cchal, eph);
	put_all(fr, n);
	int r = next_frame(&f, 5000);
	if (r == 1 && f.type == RELAY_FRAME_SERVER_INFO) {
		if (relay_server_info_open(&f, priv, spub, cchal, reph) < 0)
			die("SERVER_INFO does not prove the relay's key");
		uint8_t set[RELAY_SETTINGS_LEN];
		relay_server_info_settings(&f, set);
		if (relay_session_init(&sess, true, eph, reph, pub, spub, chal, cchal,
		                       set) < 0)
			die("the relay's ephemeral key is unusable");
		sealed = true;
		if (!quiet)
			printf("admitted\n");
		return 0;
	}
	if (r == 1 && f.type == RELAY_FRAME_REFUSED) {
		printf("refused: %.*s\n", (int)f.u.text.text_len, f.u.text.text);
		return 3;
	}
	die("no SERVER_INFO");
	return 2;
}

static char reg_name[64];

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	if (st == CTL_CLIENT_ONLINE && resp)
		snprintf(reg_name, sizeof reg_name, "%s", resp->name);
	if (st == CTL_CLIENT_ONLINE || st == CTL_CLIENT_REFUSED) {
		*(int *)ctx = st == CTL_CLIENT_ONLINE ? 1 : -1;
		if (st == CTL_CLIENT_REFUSED)
			fprintf(stderr, "relay-client: refused: %s\n", detail);
	}
}

/* The relay map as the node got it: "eu-1=127.0.0.1:8443/stun=3478/tls,...". */
static char reg_relays[1024] = "-";
static bool reg_map;

static void on_map(void *ctx, const struct ctl_map_full *map,
                   const struct ctl_map_change *chg)
{
	size_t off = 0;
	reg_relays[0] = 0;
	for (size_t i = 0; i < map->n_relays && off < sizeof reg_relays - 1; i++) {
		const struct ctl_relay *r = &map->relays[i];
		int n = snprintf(reg_relays + off, sizeof reg_relays - off,
		                 "%s%s=%s:%u/stun=%u%s%s", i ? "," : "", r->name, r->host,
		                 r->port, r->stun_port, r->tls ? "/tls" : "",
		                 r->has_key ? "/key" : "");
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (!map->n_relays)
		snprintf(reg_relays, sizeof reg_relays, "-");
	reg_map = true;
	if (*(int *)ctx == 2) { /* watch: every map update */
		printf("map %s\n", reg_relays);
		fflush(stdout);
	}
}

/* register, or with watch_s > 0 stay online that long printing "map
 * RELAYS" on every map update. */
static int cmd_register(const char *token, int watch_s)
{
	struct ctl_token tok;
	if (ctl_token_decode(token, strlen(token), &tok) < 0)
		die("bad token");
	uint8_t mpriv[32], npriv[32], npub[32], dpub[32], dpriv[32];
	randombytes_buf(mpriv, 32);
	crypto_box_keypair(npub, npriv);
	crypto_box_keypair(dpub, dpriv);
	struct event_base *base = event_base_new();
	int done = 0;
	static const struct ctl_client_callbacks cb = {.on_state = on_state,
	                                               .on_map = on_map};
	char host[8];
	snprintf(host, sizeof host, "rc%04u", randombytes_uniform(10000));
	struct ctl_client_config cc = {.base = base,
	                               .host = tok.host,
	                               .port = tok.port,
	                               .hostname = host,
	                               .auth_key = tok.auth_key,
	                               .cb = &cb,
	                               .ctx = &done};
	memcpy(cc.server_key, tok.server_key, 32);
	memcpy(cc.machine_priv, mpriv, 32);
	memcpy(cc.node_key, npub, 32);
	memcpy(cc.disco_key, dpub, 32);
	char err[256];
	struct ctl_client *c = ctl_client_new(&cc, err, sizeof err);
	if (!c)
		die(err);
	uint64_t end = now_ms() + 10000;
	while (!(done < 0 || (done == 1 && reg_map)) && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(2000);
	if (watch_s > 0 && done == 1) {
		printf("map %s\n", reg_relays);
		fflush(stdout);
		done = 2;
		end = now_ms() + (uint64_t)watch_s * 1000;
		while (now_ms() < end)
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK),
			    usleep(2000);
		done = 1;
	}
	ctl_client_free(c);
	event_base_free(base);
	if (done != 1)
		die("registration failed");
	char hex[65];
	sodium_bin2hex(hex, sizeof hex, npriv, 32);
	printf("%s %s %s\n", hex, reg_name, reg_relays);
	return 0;
}

static unsigned long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_sec * 1000 +
	       (unsigned long long)ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0 || argc < 2)
		die("usage: see the comment at the top of tests/tools/relay-client.c");
	bool tls = argc > 2 && !strcmp(argv[argc - 1], "--tls");
	if (tls)
		argc--;
	const char *cmd = argv[1];
	if (!strcmp(cmd, "register") && argc == 3)
		return cmd_register(argv[2], 0);
	if (!strcmp(cmd, "watch") && argc == 4)
		return cmd_register(argv[2], atoi(argv[3]));
	if (!strcmp(cmd, "pub") && argc == 3) {
		uint8_t priv[32], pub[32];
		char b64[64];
		parse_priv(argv[2], priv, pub);
		sodium_bin2base64(b64, sizeof b64, pub, 32,
		                  sodium_base64_VARIANT_ORIGINAL);
		printf("%s\n", b64);
		return 0;
	}
	if (!strcmp(cmd, "connect") && argc == 4)
		return handshake(argv[2], argv[3], tls, false);
	if (!strcmp(cmd, "send") && argc == 7) {
		int r = handshake(argv[2], argv[3], tls, true);
		if (r)
			return r;
		uint8_t dst[32];
		size_t bl = 0;
		if (sodium_base642bin(dst, 32, argv[4], strlen(argv[4]), NULL, &bl, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    bl != 32)
			die("DSTPUB: expected base64 of 32 bytes");
		long n = atol(argv[5]), size = atol(argv[6]);
		if (size < 8 || size > RELAY_PACKET_MAX)
			die("SIZE: 8..65535");
		static uint8_t pkt[RELAY_PACKET_MAX], fr[RELAY_FRAME_MAX];
		for (long i = 0; i < n; i++) {
			memset(pkt, (int)(i & 0xff), (size_t)size);
			memcpy(pkt, &i, sizeof i);
			size_t fl =
			    relay_encode_packet(fr, sizeof fr, RELAY_FRAME_SEND_PACKET,
			                        dst, pkt, (size_t)size);
			put_frame(fr, fl, sizeof fr);
			if (i % 64 == 63)
				usleep(1000);
		}
		/* Let the relay read everything before we close. */
		usleep(300000);
		return 0;
	}
	if (!strcmp(cmd, "recv") && argc == 6) {
		int r = handshake(argv[2], argv[3], tls, true);
		if (r)
			return r;
		printf("ready\n");
		fflush(stdout);
		long want = atol(argv[4]), got = 0;
		uint64_t end = now_ms() + (uint64_t)atol(argv[5]);
		struct relay_frame f;
		while (got < want && now_ms() < end) {
			int k = next_frame(&f, (int)(end - now_ms()));
			if (k <= 0)
				break;
			got += f.type == RELAY_FRAME_RECV_PACKET;
		}
		printf("received %ld\n", got);
		return got >= want ? 0 : 1;
	}
	if (!strcmp(cmd, "hold") && argc == 5) {
		int r = handshake(argv[2], argv[3], tls, true);
		if (r)
			return r;
		printf("ready\n");
		fflush(stdout);
		uint64_t end = now_ms() + (uint64_t)atol(argv[4]) * 1000;
		struct relay_frame f;
		while (now_ms() < end) {
			int k = next_frame(&f, (int)(end - now_ms()));
			if (k < 0) {
				printf("cut at %llu: connection closed\n", wall_ms());
				return 0;
			}
			if (k == 1 && f.type == RELAY_FRAME_RESTARTING) {
				printf("restarting: reconnect in %u ms\n",
				       f.u.restarting.reconnect_in_ms);
				fflush(stdout);
			}
			if (k == 1 && f.type == RELAY_FRAME_REFUSED) {
				printf("cut at %llu: %.*s\n", wall_ms(),
				       (int)f.u.text.text_len, f.u.text.text);
				return 0;
			}
		}
		printf("still connected\n");
		return 1;
	}
	if (!strcmp(cmd, "noread") && argc == 5) {
		int r = handshake(argv[2], argv[3], tls, true);
		if (r)
			return r;
		int small = 4096;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
		printf("ready\n");
		fflush(stdout);
		sleep((unsigned)atoi(argv[4]));
		return 0;
	}
	if (!strcmp(cmd, "garbage") && argc == 4) {
		dial(argv[2], tls);
		struct relay_frame f;
		if (next_frame(&f, 5000) != 1 || f.type != RELAY_FRAME_SERVER_KEY)
			die("no SERVER_KEY");
		const char *mode = argv[3];
		if (!strcmp(mode, "oversize")) {
			uint8_t h[5] = {RELAY_FRAME_SEND_PACKET, 0xff, 0xff, 0xff, 0xff};
			put_all(h, 5);
		} else if (!strcmp(mode, "short")) {
			uint8_t h[10] = {RELAY_FRAME_CLIENT_INFO, 0, 0, 0, 5};
			put_all(h, 10);
		} else {
			/* A whole frame of random bytes where CLIENT_INFO belongs. */
			uint8_t junk[4096];
			randombytes_buf(junk, sizeof junk);
			relay_encode_header(junk, sizeof junk, RELAY_FRAME_SEND_PACKET,
			                    sizeof junk - RELAY_HDR_LEN);
			put_all(junk, sizeof junk);
		}
		int k = next_frame(&f, 3000);
		printf("%s\n", k < 0 ? "closed" : k == 0 ? "no answer" : "answered");
		return k < 0 ? 0 : 1;
	}
	die("usage: see the comment at the top of tests/tools/relay-client.c");
	return 2;
}
