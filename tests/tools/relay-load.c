/* relay-load: many relay clients in one process against a real mesh-relay
 * (and the mesh-control it admits from), for the relay's load test.
 *
 *   relay-load --token NODE_TOKEN --relay IP:PORT -n N [--seconds S]
 *              [--size BYTES] [--pps PER_CLIENT] [--pid RELAY_PID]
 *
 * Registers N nodes with mesh-control (full control clients, 200 a second),
 * waits for the relay to admit them, connects N relay clients (upgrade,
 * CLIENT_INFO, SERVER_INFO, then sealed frames: the node-side codecs), then for S seconds
 * (default 10) every client sends --pps packets a second (default 50) of
 * --size bytes (default 1200) to the next client (i -> i+1 mod N). Prints
 * one line of key=value: n, connected, refused, sent, received, lost,
 * recv_pps, mbit_s; with --pid also the relay's cpu_pct (user+system over
 * the run), rss_kib and hwm_kib. Exit 0 when every client connected. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/control/client.h"
#include "core/control/token.h"
#include "core/relay/frame.h"
#include "core/relay/http.h"
#include "core/relay/session.h"

enum { C_HTTP, C_KEY, C_INFO, C_READY, C_DEAD };

struct cl {
	struct load *ld;
	struct ctl_client *ctl;
	struct bufferevent *bev;
	int idx, state;
	bool online;
	uint8_t pub[32], priv[32];
	uint8_t spub[32], chal[32]; /* the relay's key, our challenge */
	uint8_t schal[32], eph[32]; /* the relay's challenge, our ephemeral key */
	struct relay_session sess;  /* from SERVER_INFO on */
	uint64_t sent, recv;
};

struct load {
	struct event_base *base;
	struct ctl_token tok;
	struct sockaddr_in relay;
	int n, online, ready, refused, started;
	struct cl *cl;
	unsigned size, pps;
	bool traffic;
	uint64_t skipped;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_for(struct load *ld, double s)
{
	struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
	event_base_loopexit(ld->base, &tv);
	event_base_dispatch(ld->base);
}

/* --- registration with mesh-control ------------------------------------ */

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	struct cl *c = ctx;
	if (st == CTL_CLIENT_ONLINE && !c->online) {
		c->online = true;
		c->ld->online++;
	} else if (st == CTL_CLIENT_REFUSED) {
		fprintf(stderr, "relay-load: node %d refused: %s\n", c->idx, detail);
	}
}

static void on_map(void *ctx, const struct ctl_map_full *m,
                   const struct ctl_map_change *ch)
{
}

static const struct ctl_client_callbacks cbs = {.on_state = on_state, .on_map = on_map};

static void start_ctl(struct load *ld, struct cl *c)
{
	struct ctl_client_config cfg = {.base = ld->base,
	                                .host = ld->tok.host,
	                                .port = ld->tok.port,
	                                .auth_key = ld->tok.auth_key,
	                                .cb = &cbs,
	                                .ctx = c,
	                                .connect_timeout_ms = 60000};
	char host[32];
	snprintf(host, sizeof host, "load-%05d", c->idx);
	cfg.hostname = host;
	memcpy(cfg.server_key, ld->tok.server_key, 32);
	randombytes_buf(cfg.machine_priv, 32);
	crypto_box_keypair(c->pub, c->priv);
	memcpy(cfg.node_key, c->pub, 32);
	uint8_t dp[32];
	crypto_box_keypair(cfg.disco_key, dp);
	char err[256];
	c->ctl = ctl_client_new(&cfg, err, sizeof err);
	if (!c->ctl)
		fprintf(stderr, "relay-load: node %d: %s\n", c->idx, err);
}

/* --- relay clients ------------------------------------------------------- */

static void cl_connect(struct cl *c);

static void cl_fail(struct cl *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->state == C_READY)
		c->ld->ready--;
	c->state = C_DEAD;
}

static void cl_read(struct bufferevent *bev, void *arg)
{
	struct cl *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t len = evbuffer_get_length(in);
		if (c->state == C_HTTP) {
			const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
			int r = relay_http_parse_response(p, len);
			if (r == 0)
				return;
			if (r < 0)
				return cl_fail(c);
			evbuffer_drain(in, (size_t)r);
			c->state = C_KEY;
			continue;
		}
		if (len < RELAY_HDR_LEN)
			return;
		uint8_t h[RELAY_HDR_LEN];
		evbuffer_copyout(in, h, sizeof h);
		size_t total = RELAY_HDR_LEN + (size_t)relay_hdr_len(h);
		if (total > RELAY_FRAME_MAX)
			return cl_fail(c);
		if (len < total)
			return;
		uint8_t *p = evbuffer_pullup(in, (ssize_t)total);
		struct relay_frame f;
		size_t used, plain = total;
		if (c->state == C_READY) {
			int o = relay_open(&c->sess, p, total);
			if (o < 0)
				return cl_fail(c);
			plain = (size_t)o;
		}
		if (relay_frame_decode(p, plain, &f, &used, NULL) != RELAY_DECODE_READY)
			return cl_fail(c);
		if (c->state == C_KEY && f.type == RELAY_FRAME_SERVER_KEY) {
			uint8_t fr[RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN];
			memcpy(c->spub, f.u.server_key.key, 32);
			memcpy(c->schal, f.u.server_key.challenge, 32);
			size_t n =
			    relay_client_info_seal(fr, sizeof fr, c->pub, c->priv,
			                           c->spub, c->schal, 0, c->chal, c->eph);
			bufferevent_write(bev, fr, n);
			c->state = C_INFO;
		} else if (c->state == C_INFO && f.type == RELAY_FRAME_SERVER_INFO) {
			uint8_t reph[32], set[RELAY_SETTINGS_LEN];
			relay_server_info_settings(&f, set);
			if (relay_server_info_open(&f, c->priv, c->spub, c->chal, reph) <
			        0 ||
			    relay_session_init(&c->sess, true, c->eph, reph, c->pub,
			                       c->spub, c->schal, c->chal, set) < 0)
				return cl_fail(c);
			c->state = C_READY;
			c->ld->ready++;
		} else if (f.type == RELAY_FRAME_REFUSED) {
			c->ld->refused++;
			evbuffer_drain(in, total);
			return cl_fail(c);
		} else if (f.type == RELAY_FRAME_RECV_PACKET) {
			if (c->ld->traffic)
				c->recv++;
		}
		evbuffer_drain(in, total);
	}
}

static void cl_event(struct bufferevent *bev, short what, void *arg)
{
	struct cl *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		char req[128];
		size_t n = relay_http_request(req, sizeof req, "relay");
		bufferevent_write(bev, req, n);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		cl_fail(c);
}

static void cl_connect(struct cl *c)
{
	c->bev = bufferevent_socket_new(c->ld->base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->state = C_HTTP;
	bufferevent_setcb(c->bev, cl_read, NULL, cl_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->ld->relay,
	                               sizeof c->ld->relay) < 0)
		cl_fail(c);
}

/* Every 10 ms: each ready client sends pps/100 packets (carrying the rest
 * over) to the next client. */
static void tick(evutil_socket_t fd, short ev, void *arg)
{
	struct load *ld = arg;
	static double carry;
	carry += ld->pps / 100.0;
	int k = (int)carry;
	carry -= k;
	static uint8_t fr[RELAY_FRAME_MAX], data[RELAY_PACKET_MAX];
	for (int i = 0; i < ld->n; i++) {
		struct cl *c = &ld->cl[i], *d = &ld->cl[(i + 1) % ld->n];
		if (c->state != C_READY)
			continue;
		for (int j = 0; j < k; j++) {
			if (evbuffer_get_length(bufferevent_get_output(c->bev)) >
			    256 * 1024) {
				ld->skipped++;
				continue;
			}
			size_t n =
			    relay_encode_packet(fr, sizeof fr, RELAY_FRAME_SEND_PACKET,
			                        d->pub, data, ld->size);
			n = relay_seal(&c->sess, fr, n, sizeof fr);
			bufferevent_write(c->bev, fr, n);
			c->sent++;
		}
	}
}

static bool proc_cpu(int pid, double *cpu_s, long *rss, long *hwm)
{
	char p[64], buf[2048];
	snprintf(p, sizeof p, "/proc/%d/stat", pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *e = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (!e || sscanf(e + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	                 &ut, &st) != 2)
		return false;
	*cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	snprintf(p, sizeof p, "/proc/%d/status", pid);
	f = fopen(p, "r");
	if (!f)
		return false;
	while (fgets(buf, sizeof buf, f)) {
		sscanf(buf, "VmRSS: %ld", rss);
		sscanf(buf, "VmHWM: %ld", hwm);
	}
	fclose(f);
	return true;
}

int main(int argc, char **argv)
{
	struct load ld = {.size = 1200, .pps = 50};
	const char *token = NULL, *relay = NULL;
	double seconds = 10;
	int pid = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--token"))
			token = argv[i + 1];
		else if (!strcmp(argv[i], "--relay"))
			relay = argv[i + 1];
		else if (!strcmp(argv[i], "-n"))
			ld.n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--size"))
			ld.size = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--pps"))
			ld.pps = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--pid"))
			pid = atoi(argv[i + 1]);
	}
	char host[64];
	const char *colon = relay ? strrchr(relay, ':') : NULL;
	if (sodium_init() < 0 || !token || !colon || ld.n < 2 || ld.size < 1 ||
	    ld.size > RELAY_PACKET_MAX || (size_t)(colon - relay) >= sizeof host ||
	    ctl_token_decode(token, strlen(token), &ld.tok) < 0) {
		fprintf(stderr,
		        "usage: relay-load --token NODE_TOKEN --relay IP:PORT -n N "
		        "[--seconds S] [--size B] [--pps P] [--pid RELAY_PID]\n");
		return 2;
	}
	memcpy(host, relay, (size_t)(colon - relay));
	host[colon - relay] = 0;
	ld.relay.sin_family = AF_INET;
	ld.relay.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &ld.relay.sin_addr) != 1)
		return 2;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	ld.base = event_base_new();
	ld.cl = calloc((size_t)ld.n, sizeof *ld.cl);
	for (int i = 0; i < ld.n; i++) {
		ld.cl[i].ld = &ld;
		ld.cl[i].idx = i;
	}
	/* 1. Register every node (200 a second), then drop the control links:
	 * registered nodes stay admitted while offline. */
	double t0 = now_s();
	for (int i = 0; i < ld.n; i++) {
		start_ctl(&ld, &ld.cl[i]);
		if (i % 20 == 19)
			run_for(&ld, 0.1);
	}
	while (ld.online < ld.n && now_s() - t0 < 120)
		run_for(&ld, 0.1);
	for (int i = 0; i < ld.n; i++)
		ctl_client_free(ld.cl[i].ctl);
	if (ld.online < ld.n) {
		fprintf(stderr, "relay-load: only %d of %d nodes registered\n", ld.online,
		        ld.n);
		return 1;
	}
	double t_reg = now_s() - t0;
	run_for(&ld, 1.5); /* the relay's next RELAY_STATE */
	/* 2. Connect every client, 20 every 20 ms (the relay caps handshakes
	 * in progress per source address); retry the refused ones a few times. */
	for (int i = 0; i < ld.n; i++) {
		cl_connect(&ld.cl[i]);
		if (i % 20 == 19)
			run_for(&ld, 0.02);
	}
	for (int r = 0; r < 100 && ld.ready < ld.n; r++)
		run_for(&ld, 0.1);
	for (int round = 0; round < 5 && ld.ready < ld.n; round++) {
		run_for(&ld, 1.0);
		int k = 0;
		for (int i = 0; i < ld.n; i++)
			if (ld.cl[i].state == C_DEAD) {
				cl_connect(&ld.cl[i]);
				if (++k % 20 == 0)
					run_for(&ld, 0.02);
			}
		for (int r = 0; r < 100 && ld.ready < ld.n; r++)
			run_for(&ld, 0.1);
	}
	int connected = ld.ready;
	/* 3. Traffic. */
	double cpu0 = 0, cpu1 = 0;
	long rss = 0, hwm = 0;
	if (pid)
		proc_cpu(pid, &cpu0, &rss, &hwm);
	struct event *ev = event_new(ld.base, -1, EV_PERSIST, tick, &ld);
	struct timeval tv = {0, 10000};
	ld.traffic = true;
	double t1 = now_s();
	event_add(ev, &tv);
	run_for(&ld, seconds);
	event_del(ev);
	double dt = now_s() - t1;
	run_for(&ld, 0.5); /* in flight */
	if (pid)
		proc_cpu(pid, &cpu1, &rss, &hwm);
	uint64_t sent = 0, recv = 0;
	for (int i = 0; i < ld.n; i++) {
		sent += ld.cl[i].sent;
		recv += ld.cl[i].recv;
	}
	printf("n=%d registered_s=%.1f connected=%d refused=%d sent=%llu received=%llu "
	       "lost=%llu skipped=%llu recv_pps=%.0f mbit_s=%.1f",
	       ld.n, t_reg, connected, ld.refused, (unsigned long long)sent,
	       (unsigned long long)recv, (unsigned long long)(sent - recv),
	       (unsigned long long)ld.skipped, (double)recv / dt,
	       (double)recv * ld.size * 8 / dt / 1e6);
	if (pid)
		printf(" cpu_pct=%.0f rss_kib=%ld hwm_kib=%ld", (cpu1 - cpu0) / dt * 100,
		       rss, hwm);
	printf("\n");
	for (int i = 0; i < ld.n; i++)
		if (ld.cl[i].bev)
			bufferevent_free(ld.cl[i].bev);
	event_free(ev);
	free(ld.cl);
	event_base_free(ld.base);
	return connected == ld.n ? 0 : 1;
}
