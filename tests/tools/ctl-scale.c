/* ctl-scale: many light nodes in one process against a real mesh-control,
 * for the control plane's scale test (bench/control_scale.sh and
 * tests/e2e/control_scale.sh).
 *
 *   ctl-scale --token TOKEN -n N [--rate PER_SECOND] [--timeout SECONDS]
 *
 * Each simulated node is a full ctl_client (core/control/client.h) with its
 * own machine, node and disco keys and its own TCP connection: Noise IK,
 * REGISTER_REQ with the token's auth key, one endpoint report, then the map
 * stream. Nodes start at --rate per second. The run ends when every node is
 * registered and every node's map holds the other N-1 nodes (converged), or
 * at --timeout (exit 1). Prints one line of key=value results:
 *   n, registered_s (start to last registration), converged_s, maps_full,
 *   maps_delta, bytes_in (all nodes), map_bytes (a final MAP_FULL body for
 *   one node, encoded), rss_kib (this process), refused, failed.
 * After converging and once nothing arrives for 0.5 s (at most 30 s), node 0
 * changes its endpoint once; change_ms is the time
 * until every other node's map shows it and change_bytes what all nodes
 * received meanwhile (the cost of one change, keepalives included). */
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/control/client.h"
#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "core/control/token.h"

struct sim {
	struct scale *sc;
	struct ctl_client *c;
	int idx;
	bool online;
	bool saw_change;
	uint64_t node_id;
	size_t n_peers;
};

struct scale {
	struct event_base *base;
	struct ctl_token tok;
	int n, started, online, converged, refused;
	double t0, t_registered, t_converged;
	/* one endpoint change by node 0 after convergence */
	bool changing;
	int saw_change;
	double t_change0, t_change;
	uint64_t change_bytes0;
	uint64_t settle_bytes;
	double t_settle;
	struct sim *sims;
	struct event *ev_start, *ev_check;
	unsigned rate;
	double timeout_s;
	int done;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sim_state(void *ctx, enum ctl_client_state st, const char *detail,
                      const struct ctl_register_resp *resp)
{
	struct sim *s = ctx;
	if (st == CTL_CLIENT_ONLINE && !s->online) {
		s->online = true;
		if (resp)
			s->node_id = resp->node_id;
		if (++s->sc->online == s->sc->n)
			s->sc->t_registered = now_s() - s->sc->t0;
	} else if (st == CTL_CLIENT_REFUSED) {
		s->sc->refused++;
		fprintf(stderr, "ctl-scale: node %d refused: %s\n", s->idx, detail);
	}
}

static void sim_map(void *ctx, const struct ctl_map_full *map,
                    const struct ctl_map_change *chg)
{
	struct sim *s = ctx;
	(void)chg;
	bool was = s->n_peers == (size_t)s->sc->n - 1;
	s->n_peers = map->n_peers;
	bool is = s->n_peers == (size_t)s->sc->n - 1;
	if (is && !was)
		s->sc->converged++;
	else if (was && !is)
		s->sc->converged--;
	struct scale *sc = s->sc;
	if (!sc->changing || s->saw_change || s == &sc->sims[0])
		return;
	size_t lo = 0, hi = map->n_peers;
	uint64_t id = sc->sims[0].node_id;
	while (lo < hi) { /* peers are sorted by id */
		size_t mid = lo + (hi - lo) / 2;
		if (map->peers[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < map->n_peers && map->peers[lo].id == id && map->peers[lo].n_eps > 0 &&
	    map->peers[lo].eps[0].port == 41642) {
		s->saw_change = true;
		sc->saw_change++;
	}
}

static uint64_t bytes_in_all(const struct scale *sc)
{
	uint64_t bytes = 0;
	for (int i = 0; i < sc->started; i++) {
		struct ctl_client_status st;
		ctl_client_get_status(sc->sims[i].c, &st);
		bytes += st.bytes_in;
	}
	return bytes;
}

/* Node 0 moves its endpoint to port 41642. */
static void change_start(struct scale *sc)
{
	struct ctl_endpoints eps = {.n = 1};
	eps.ep[0].family = 4;
	eps.ep[0].port = 41642;
	memcpy(eps.ep[0].addr, (const uint8_t[]){198, 18, 0, 0}, 4);
	sc->changing = true;
	sc->change_bytes0 = bytes_in_all(sc);
	sc->t_change0 = now_s();
	ctl_client_set_endpoints(sc->sims[0].c, &eps);
}

static const struct ctl_client_callbacks sim_cb = {.on_state = sim_state,
                                                   .on_map = sim_map};

static int sim_start(struct scale *sc, struct sim *s)
{
	struct ctl_client_config cfg = {
	    .base = sc->base,
	    .host = sc->tok.host,
	    .port = sc->tok.port,
	    .auth_key = sc->tok.auth_key,
	    .os = "linux",
	    .version = "ctl-scale",
	    .cb = &sim_cb,
	    .ctx = s,
	    .keepalive_ms = 60000,
	    .timeout_ms = 180000,
	    .connect_timeout_ms = 60000,
	};
	char host[32];
	snprintf(host, sizeof(host), "sim-%05d", s->idx);
	cfg.hostname = host;
	memcpy(cfg.server_key, sc->tok.server_key, CTL_KEY_LEN);
	uint8_t pub[CTL_KEY_LEN], priv[CTL_KEY_LEN];
	ctl_noise_keypair(cfg.machine_priv, pub);
	ctl_noise_keypair(priv, cfg.node_key);
	ctl_noise_keypair(priv, cfg.disco_key);
	sodium_memzero(priv, sizeof(priv));
	char err[256];
	s->c = ctl_client_new(&cfg, err, sizeof(err));
	sodium_memzero(cfg.machine_priv, sizeof(cfg.machine_priv));
	if (!s->c) {
		fprintf(stderr, "ctl-scale: node %d: %s\n", s->idx, err);
		return -1;
	}
	/* One endpoint in the simulated public range, unique per node. */
	struct ctl_endpoints eps = {.n = 1};
	eps.ep[0].family = 4;
	eps.ep[0].port = 41641;
	eps.ep[0].addr[0] = 198;
	eps.ep[0].addr[1] = 18 + (uint8_t)((s->idx >> 16) & 1);
	eps.ep[0].addr[2] = (uint8_t)(s->idx >> 8);
	eps.ep[0].addr[3] = (uint8_t)s->idx;
	ctl_client_set_endpoints(s->c, &eps);
	return 0;
}

/* Every 10 ms: start the nodes due by now at --rate. */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
	struct scale *sc = arg;
	(void)fd, (void)what;
	double el = now_s() - sc->t0;
	int due = (int)(el * sc->rate) + 1;
	if (due > sc->n)
		due = sc->n;
	while (sc->started < due) {
		struct sim *s = &sc->sims[sc->started];
		s->sc = sc;
		s->idx = sc->started++;
		if (sim_start(sc, s) != 0) {
			sc->done = -1;
			event_base_loopbreak(sc->base);
			return;
		}
	}
	if (sc->started < sc->n) {
		struct timeval tv = {0, 10000};
		evtimer_add(sc->ev_start, &tv);
	}
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
	struct scale *sc = arg;
	(void)fd, (void)what;
	double el = now_s() - sc->t0;
	if (!sc->changing && sc->online == sc->n && sc->converged == sc->n) {
		if (sc->t_converged == 0) {
			sc->t_converged = el;
			sc->settle_bytes = bytes_in_all(sc);
			sc->t_settle = now_s();
		}
		/* the change waits until the updates in flight are through
		 * (nothing received for 0.5 s, at most 30 s) */
		uint64_t b = bytes_in_all(sc);
		if (b != sc->settle_bytes) {
			sc->settle_bytes = b;
			sc->t_settle = now_s();
		} else if (now_s() - sc->t_settle >= 0.5 || el - sc->t_converged > 30) {
			change_start(sc);
		}
	}
	if (sc->changing && sc->saw_change == sc->n - 1) {
		sc->t_change = now_s() - sc->t_change0;
		sc->change_bytes0 = bytes_in_all(sc) - sc->change_bytes0;
		sc->done = 1;
		event_base_loopbreak(sc->base);
		return;
	}
	if (el > sc->timeout_s) {
		fprintf(stderr,
		        "ctl-scale: timeout after %.0f s: %d of %d started, %d online, %d "
		        "converged\n",
		        el, sc->started, sc->n, sc->online, sc->converged);
		sc->done = -1;
		event_base_loopbreak(sc->base);
		return;
	}
	static double last_report;
	if (el - last_report >= 5) {
		last_report = el;
		fprintf(stderr, "ctl-scale: %.0f s: %d started, %d online, %d converged\n",
		        el, sc->started, sc->online, sc->converged);
	}
	struct timeval tv = {0, sc->changing ? 1000 : 20000};
	evtimer_add(sc->ev_check, &tv);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: ctl-scale --token TOKEN -n N [--rate PER_SECOND] "
	                "[--timeout SECONDS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct scale sc = {.rate = 500, .timeout_s = 600};
	const char *token = NULL;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--token"))
			token = argv[++i];
		else if (!strcmp(argv[i], "-n"))
			sc.n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rate"))
			sc.rate = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--timeout"))
			sc.timeout_s = atof(argv[++i]);
		else
			return usage();
	}
	if (!token || sc.n < 2 || sc.rate == 0)
		return usage();
	if (sodium_init() < 0)
		return 1;
	int r = ctl_token_decode(token, strlen(token), &sc.tok);
	if (r != 0) {
		fprintf(stderr, "ctl-scale: %s\n", ctl_token_strerror(r));
		return 2;
	}
	raise_nofile();
	sc.sims = calloc((size_t)sc.n, sizeof(*sc.sims));
	sc.base = event_base_new();
	if (!sc.sims || !sc.base)
		return 1;
	sc.ev_start = evtimer_new(sc.base, on_start, &sc);
	sc.ev_check = evtimer_new(sc.base, on_check, &sc);
	sc.t0 = now_s();
	struct timeval zero = {0, 0};
	evtimer_add(sc.ev_start, &zero);
	evtimer_add(sc.ev_check, &zero);
	event_base_dispatch(sc.base);

	uint64_t full = 0, delta = 0, bytes = 0;
	size_t map_bytes = 0;
	for (int i = 0; i < sc.started; i++) {
		struct ctl_client_status st;
		ctl_client_get_status(sc.sims[i].c, &st);
		full += st.maps_full;
		delta += st.maps_delta;
		bytes += st.bytes_in;
	}
	if (sc.started > 0) {
		const struct ctl_map_full *m = ctl_client_map(sc.sims[0].c);
		if (m) {
			struct ctl_msg msg = {.type = CTL_MSG_MAP_FULL, .u.map = *m};
			uint8_t *out = NULL;
			if (ctl_msg_encode(&msg, &out, &map_bytes, NULL) != 0)
				map_bytes = 0;
			free(out);
		}
	}
	printf("n=%d registered_s=%.3f converged_s=%.3f maps_full=%" PRIu64
	       " maps_delta=%" PRIu64 " bytes_in=%" PRIu64
	       " map_bytes=%zu change_ms=%.1f change_bytes=%" PRIu64
	       " rss_kib=%ld refused=%d ok=%d\n",
	       sc.n, sc.t_registered, sc.t_converged, full, delta, bytes, map_bytes,
	       sc.t_change * 1e3, sc.done == 1 ? sc.change_bytes0 : 0, rss_kib(),
	       sc.refused, sc.done == 1);
	for (int i = 0; i < sc.started; i++)
		ctl_client_free(sc.sims[i].c);
	event_free(sc.ev_start);
	event_free(sc.ev_check);
	event_base_free(sc.base);
	free(sc.sims);
	ctl_token_wipe(&sc.tok);
	return sc.done == 1 ? 0 : 1;
}
