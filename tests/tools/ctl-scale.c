/* ctl-scale: many nodes in one process against a real mesh-control, for
 * the control plane's scale test (bench/control_scale.sh and
 * tests/e2e/control_scale.sh).
 *
 *   ctl-scale --token TOKEN -n N [--rate PER_SECOND] [--timeout SECONDS]
 *             [--full K] [--sources S] [--server-pid PID[,PID...]]
 *             [--connect HOST:PORT[,HOST:PORT...]] [--db-pid PID]
 *             [--admin HOST:PORT --api-key KEY] [--no-zstd] [--verbose]
 *             [--seed HEX] [--skip I] [--peers P] [--linger SECONDS]
 *
 * Each simulated node has its own machine, node and disco keys and its own
 * TCP connection: Noise IK, REGISTER_REQ with the token's auth key, one
 * endpoint report, then the map stream. The first K nodes (--full, default
 * 100) are full ctl_clients (core/control/client.h) that decode and merge
 * every map; the others are light nodes (below) that speak the same
 * protocol and decrypt (and decompress) every frame but track their map as
 * a set of ids (--no-zstd: light nodes ask for plain JSON maps, as nodes
 * from before compressed maps do).
 * Nodes start at --rate per second (0: all at once, a join storm); light
 * nodes connect from S loopback addresses 127.1.x.y (--sources, default
 * 250; 1: the kernel's choice). The run ends when every node is
 * registered and every node's map holds the other N-1 nodes (converged),
 * then one endpoint change and (with --admin) one rename, or at --timeout
 * (exit 1).
 *
 * Prints one line of key=value results: n, registered_s (start to last
 * registration), converged_s, maps_full, maps_delta, bytes_in (all nodes),
 * map_bytes (a final MAP_FULL body for one node, encoded), reconnects,
 * change_ms / change_bytes (node 0 moves its endpoint: the time until every
 * other node's map shows it, and what all nodes received meanwhile,
 * keepalives included), rename_ms / rename_bytes (the same for an admin
 * API rename of node 0; rename_api_ms: until the API answered), with
 * --server-pid the server's CPU seconds (user + system) for the join storm
 * and CPU ms for each change, its RSS when converged and its peak, and
 * rss_kib (this process), refused, bad_maps (light nodes' map messages
 * that did not scan or unwrap), zmaps (compressed map messages the light
 * nodes took), zmaps_shared (of them, bodies this process had already
 * unwrapped and scanned for another node: the same bytes, compared whole),
 * ok.
 * Each change waits until nothing arrived for 0.5 s (at most 30 s).
 *
 * Several servers of one mesh (issue 18): --connect lists their addresses
 * (IPv4) and node i connects to address i mod their count (default: the
 * token's first address), so node 0, whose endpoint moves, is on the first
 * and the others learn its change through their own server. --server-pid
 * lists their pids: the srv_ figures are sums over them (CPU, RSS, peaks)
 * and `servers` says how many. --db-pid is the PostgreSQL postmaster's
 * pid: db_cpu_storm_s, db_cpu_change_ms and db_cpu_rename_ms are the CPU
 * of it and its children (backends, live and exited), db_mem_conv_kib
 * their proportional set size (Pss; RSS where smaps_rollup is not
 * readable) when converged.
 *
 * The same machines again (issue 18: after `migrate`, every node
 * reconnects): --seed HEX (32 to 128 hex digits) derives node i's machine,
 * node and disco private keys from the seed, i and a label per key, so a
 * second run with the same seed is the same 1,000 machines, not 1,000 new
 * ones (without --seed the keys are random, as a fresh node's are).
 * --skip I leaves node I out (its node was removed: the server would refuse
 * it); --peers P is the map size that counts as converged (default N-1, less
 * one with --skip; more when real nodes share the mesh). --linger SECONDS
 * keeps every node connected that long after the result line (printed and
 * flushed first), so a test can see them online. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/control/client.h"
#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "core/control/token.h"
#include "core/control/zmsg.h"

struct sim {
	struct scale *sc;
	struct ctl_client *c; /* a full node; NULL: a light one */
	int idx;
	bool online, complete, saw_change;
	uint64_t node_id;
	size_t n_peers;
	/* light node */
	struct bufferevent *bev;
	struct ctl_frame_decoder dec;
	struct ctl_noise_handshake hs;
	struct ctl_noise_transport tr;
	bool transport, streaming;
	uint8_t machine_priv[CTL_KEY_LEN], node_key[CTL_KEY_LEN], disco_key[CTL_KEY_LEN];
	uint64_t *bits; /* peer ids in its map */
	size_t nbits, count;
	uint64_t bytes_in, maps_full, maps_delta, reconnects;
	double last_tx;
	struct event *ev_retry;
};

/* What one map message says: the ids it adds (peers), the ids it removes,
 * and whether more chunks follow. */
struct scan {
	uint64_t *on, *off;
	size_t n_on, n_off, cap_on, cap_off;
	bool more;
};

/* A distinct ZMAP body and what it says (lite_zmap). */
struct zcache {
	uint8_t *z;
	size_t zlen;
	uint8_t type;
	struct scan r;
};
#define ZCACHE_N      96
#define ZCACHE_CHUNKS 64 /* of them for MAP_PEERS: 24,576 ids' worth */

enum phase { PH_STORM, PH_SETTLE, PH_CHANGE, PH_RENAME, PH_DONE };

#define SCALE_SERVERS_MAX 8

struct scale {
	struct event_base *base;
	struct ctl_token tok;
	struct sockaddr_in server[SCALE_SERVERS_MAX]; /* node i: i mod n_server */
	char server_host[SCALE_SERVERS_MAX][INET_ADDRSTRLEN];
	int n_server;
	int n, n_full, started, online, converged, refused, bad_maps;
	struct ctl_zdec *zdec; /* light nodes' ZMAP bodies, one at a time */
	uint64_t zmaps, zcache_hits;
	struct zcache *zc; /* ZCACHE_N distinct ZMAP bodies, scanned */
	size_t zc_next, zc_next_other;
	unsigned sources;
	uint64_t reconnects;
	bool verbose;
	bool no_zstd; /* light nodes leave out CTL_CAP_ZSTD (plain JSON maps) */
	/* --seed: the keys derive from it (seed_len 0: random keys) */
	uint8_t seed[64];
	size_t seed_len;
	int skip;          /* --skip: the node not started, or -1 */
	int n_live;        /* the nodes started: n, less the skipped one */
	size_t peers_want; /* --peers: a map this big is converged */
	double linger_s;
	double t0, t_registered, t_converged;
	enum phase phase, next; /* next: the change PH_SETTLE leads to */
	char marker[64];        /* what a map shows once the change is in */
	int saw_change;
	double t_change0, t_settle;
	uint64_t bytes0, settle_bytes;
	double change_ms, rename_ms, rename_api_ms;
	uint64_t change_bytes, rename_bytes;
	/* the servers' CPU (s) at the start and per phase, summed */
	int server_pid[SCALE_SERVERS_MAX], n_server_pid;
	double cpu0, cpu_storm, cpu_mark, cpu_change, cpu_rename;
	long srv_rss_conv, srv_hwm;
	/* the database's (PostgreSQL: the postmaster and its children) */
	int db_pid;
	double db_cpu0, db_cpu_storm, db_cpu_mark, db_cpu_change, db_cpu_rename;
	long db_mem_conv;
	/* admin API for the rename */
	const char *admin, *api_key;
	struct evhttp_connection *http;
	int http_status;
	struct sim *sims;
	struct event *ev_start, *ev_check, *ev_keepalive;
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

/* A key pair for node idx: random, or with --seed the private key
 * BLAKE2b-256(seed || idx (4 bytes, little-endian) || label [|| attempt]);
 * the attempt byte is added only in the (2^-250) case that the key gives
 * an all-zero public key, so a key derives the same way in every run. */
static void sim_keypair(const struct scale *sc, int idx, const char *label,
                        uint8_t priv[CTL_KEY_LEN], uint8_t pub[CTL_KEY_LEN])
{
	if (!sc->seed_len) {
		ctl_noise_keypair(priv, pub);
		return;
	}
	uint8_t le[4] = {(uint8_t)idx, (uint8_t)(idx >> 8), (uint8_t)(idx >> 16),
	                 (uint8_t)(idx >> 24)};
	for (uint8_t attempt = 0;; attempt++) {
		crypto_generichash_state st;
		crypto_generichash_init(&st, NULL, 0, CTL_KEY_LEN);
		crypto_generichash_update(&st, sc->seed, sc->seed_len);
		crypto_generichash_update(&st, le, sizeof le);
		crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
		if (attempt)
			crypto_generichash_update(&st, &attempt, 1);
		crypto_generichash_final(&st, priv, CTL_KEY_LEN);
		sodium_memzero(&st, sizeof st);
		if (ctl_noise_public_key(pub, priv) == 0)
			return;
	}
}

/* One endpoint in the simulated public range, unique per node. */
static void sim_endpoints(int idx, struct ctl_endpoints *eps)
{
	memset(eps, 0, sizeof *eps);
	eps->n = 1;
	eps->ep[0].family = 4;
	eps->ep[0].port = 41641;
	eps->ep[0].addr[0] = 198;
	eps->ep[0].addr[1] = 18 + (uint8_t)((idx >> 16) & 1);
	eps->ep[0].addr[2] = (uint8_t)(idx >> 8);
	eps->ep[0].addr[3] = (uint8_t)idx;
}

/* --- full nodes (ctl_client) -------------------------------------------- */

static void sim_state(void *ctx, enum ctl_client_state st, const char *detail,
                      const struct ctl_register_resp *resp)
{
	struct sim *s = ctx;
	if (st == CTL_CLIENT_ONLINE && !s->online) {
		s->online = true;
		if (resp)
			s->node_id = resp->node_id;
		if (++s->sc->online == s->sc->n_live && !s->sc->t_registered)
			s->sc->t_registered = now_s() - s->sc->t0;
	} else if (st != CTL_CLIENT_ONLINE && s->online) {
		s->online = false; /* lost its session; it comes back */
		s->sc->online--;
	}
	if (st == CTL_CLIENT_REFUSED) {
		s->sc->refused++;
		fprintf(stderr, "ctl-scale: node %d refused: %s\n", s->idx, detail);
	}
}

static void sim_map(void *ctx, const struct ctl_map_full *map,
                    const struct ctl_map_change *chg)
{
	struct sim *s = ctx;
	struct scale *sc = s->sc;
	(void)chg;
	s->n_peers = map->n_peers;
	bool is = s->n_peers == sc->peers_want;
	if (is && !s->complete)
		sc->converged++;
	else if (!is && s->complete)
		sc->converged--;
	s->complete = is;
	if ((sc->phase != PH_CHANGE && sc->phase != PH_RENAME) || s->saw_change ||
	    s == &sc->sims[0])
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
	if (lo >= map->n_peers || map->peers[lo].id != id)
		return;
	const struct ctl_peer *p = &map->peers[lo];
	if (sc->phase == PH_CHANGE ? p->n_eps > 0 && p->eps[0].port == 41642
	                           : !strcmp(p->name, "sim-renamed")) {
		s->saw_change = true;
		sc->saw_change++;
	}
}

static const struct ctl_client_callbacks sim_cb = {.on_state = sim_state,
                                                   .on_map = sim_map};

static int full_start(struct scale *sc, struct sim *s)
{
	const struct sockaddr_in *to = &sc->server[s->idx % sc->n_server];
	struct ctl_client_config cfg = {
	    .base = sc->base,
	    .host = sc->server_host[s->idx % sc->n_server],
	    .port = ntohs(to->sin_port),
	    .auth_key = sc->tok.auth_key,
	    .os = "linux",
	    .version = "ctl-scale",
	    .cb = &sim_cb,
	    .ctx = s,
	    .keepalive_ms = 20000,
	    .timeout_ms = 180000,
	    .connect_timeout_ms = 60000,
	};
	char host[32];
	snprintf(host, sizeof(host), "sim-%05d", s->idx);
	cfg.hostname = host;
	memcpy(cfg.server_key, sc->tok.server_key, CTL_KEY_LEN);
	uint8_t pub[CTL_KEY_LEN], priv[CTL_KEY_LEN];
	sim_keypair(sc, s->idx, "ctl-scale machine", cfg.machine_priv, pub);
	sim_keypair(sc, s->idx, "ctl-scale node", priv, cfg.node_key);
	sim_keypair(sc, s->idx, "ctl-scale disco", priv, cfg.disco_key);
	sodium_memzero(priv, sizeof(priv));
	char err[256];
	s->c = ctl_client_new(&cfg, err, sizeof(err));
	sodium_memzero(cfg.machine_priv, sizeof(cfg.machine_priv));
	if (!s->c) {
		fprintf(stderr, "ctl-scale: node %d: %s\n", s->idx, err);
		return -1;
	}
	struct ctl_endpoints eps;
	sim_endpoints(s->idx, &eps);
	ctl_client_set_endpoints(s->c, &eps);
	return 0;
}
/* --- light nodes -------------------------------------------------------- */

/* A light node speaks the same protocol on its own TCP connection (Noise
 * IK, REGISTER_REQ with every capability, ENDPOINTS, keepalives) and
 * decrypts every frame, but does not decode maps into peer structs: it
 * scans the JSON of MAP_FULL, MAP_PEERS and MAP_DELTA for the peers' ids and
 * the removed ids and keeps the set as a bitmap. That is what lets one
 * process stand in for 20,000 nodes (20,000 decoded maps of 20,000 peers
 * would take hundreds of GiB); the first --full nodes are full clients
 * that decode and merge everything, as a check on the scan. */

static double lite_now(void)
{
	return now_s();
}

static void lite_connect(struct sim *s);

static void lite_reset(struct sim *s)
{
	if (s->bev)
		bufferevent_free(s->bev);
	s->bev = NULL;
	ctl_frame_decoder_free(&s->dec);
	ctl_noise_handshake_wipe(&s->hs);
	ctl_noise_transport_wipe(&s->tr);
	s->transport = false;
	s->streaming = false;
}

static void lite_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	lite_connect(arg);
}

/* Lost the connection: try again in a second, as a node would (its
 * registration is kept: same machine key, same auth key). */
static void lite_fail(struct sim *s, const char *why)
{
	struct scale *sc = s->sc;
	if (sc->verbose)
		fprintf(stderr, "ctl-scale: node %d: %s; reconnecting\n", s->idx, why);
	lite_reset(s);
	if (s->online) {
		s->online = false;
		sc->online--;
	}
	if (s->complete) {
		s->complete = false;
		sc->converged--;
	}
	s->reconnects++;
	sc->reconnects++;
	struct timeval tv = {1, (suseconds_t)(randombytes_uniform(500000))};
	if (!s->ev_retry)
		s->ev_retry = evtimer_new(sc->base, lite_retry_cb, s);
	if (s->ev_retry)
		evtimer_add(s->ev_retry, &tv);
}

static int lite_send(struct sim *s, const struct ctl_msg *m)
{
	uint8_t *body = NULL, *frame = NULL;
	size_t blen = 0, flen = 0;
	struct ctl_msg_err err;
	int r = ctl_msg_encode(m, &body, &blen, &err);
	if (r == 0 && !(frame = malloc(ctl_frame_sealed_size(blen))))
		r = -ENOMEM;
	if (r == 0)
		r = ctl_frame_seal(&s->tr, (uint8_t)m->type, body, blen, frame,
		                   ctl_frame_sealed_size(blen), &flen);
	if (r == 0 && bufferevent_write(s->bev, frame, flen) < 0)
		r = -EIO;
	if (body)
		sodium_memzero(body, blen);
	free(body);
	free(frame);
	if (r == 0)
		s->last_tx = lite_now();
	return r;
}

static void lite_register(struct sim *s)
{
	struct ctl_msg m;
	memset(&m, 0, sizeof m);
	m.type = CTL_MSG_REGISTER_REQ;
	struct ctl_register_req *r = &m.u.reg_req;
	size_t kl = strnlen(s->sc->tok.auth_key, sizeof r->auth_key - 1);
	memcpy(r->auth_key, s->sc->tok.auth_key, kl);
	memcpy(r->node_key, s->node_key, CTL_KEY_LEN);
	memcpy(r->disco_key, s->disco_key, CTL_KEY_LEN);
	snprintf(r->hostname, sizeof r->hostname, "sim-%05d", s->idx);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "ctl-scale");
	r->caps = s->sc->no_zstd ? CTL_CAPS_ALL & ~CTL_CAP_ZSTD : CTL_CAPS_ALL;
	int rc = lite_send(s, &m);
	sodium_memzero(&m, sizeof m);
	if (rc == 0) {
		memset(&m, 0, sizeof m);
		m.type = CTL_MSG_ENDPOINTS;
		sim_endpoints(s->idx, &m.u.endpoints);
		rc = lite_send(s, &m);
	}
	if (rc < 0)
		lite_fail(s, "cannot send REGISTER_REQ");
}

/* The value of the JSON array that follows key (`"peers":[`), or NULL. The
 * keys scanned for are top-level keys of the map messages that no peer
 * entry contains. */
static const uint8_t *json_array_at(const uint8_t *p, size_t len, const char *key,
                                    const uint8_t **end)
{
	*end = p + len;
	const uint8_t *k = memmem(p, len, key, strlen(key));
	return k ? k + strlen(key) : NULL;
}

static bool lite_has(const struct sim *s, uint64_t id)
{
	return id < s->nbits && (s->bits[id / 64] >> (id % 64) & 1);
}

static int lite_set(struct sim *s, uint64_t id, bool on)
{
	if (id >= s->nbits)
		return -ERANGE;
	if (id == s->node_id)
		return 0; /* a node ignores itself */
	bool was = lite_has(s, id);
	if (on && !was) {
		s->bits[id / 64] |= 1ull << (id % 64);
		s->count++;
	} else if (!on && was) {
		s->bits[id / 64] &= ~(1ull << (id % 64));
		s->count--;
	}
	return 0;
}

static void scan_free(struct scan *r)
{
	free(r->on);
	free(r->off);
	memset(r, 0, sizeof *r);
}

static int scan_push(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 512;
		uint64_t *nv = realloc(*v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = id;
	return 0;
}

/* Each element of the array at p: an object whose first key is "id" (peers,
 * patches) when objects, else a plain id (removed). Strings are skipped
 * whole, so no byte inside a name or an address is taken for structure. */
static int scan_ids(struct scan *r, const uint8_t *p, const uint8_t *end, bool on)
{
	uint64_t **v = on ? &r->on : &r->off;
	size_t *n = on ? &r->n_on : &r->n_off, *cap = on ? &r->cap_on : &r->cap_off;
	int depth = 0;
	for (; p < end; p++) {
		uint8_t ch = *p;
		if (ch == '"') {
			/* most of a map's bytes are strings (keys, names,
			 * addresses): skip to the closing quote at once */
			const uint8_t *q = p + 1;
			for (;;) {
				q = memchr(q, '"', (size_t)(end - q));
				if (!q)
					return -EBADMSG;
				size_t bs = 0;
				while (q - bs - 1 > p && q[-1 - (ptrdiff_t)bs] == '\\')
					bs++;
				if (bs % 2 == 0)
					break;
				q++;
			}
			p = q;
		} else if (ch == '{' || ch == '[') {
			if (depth == 0 && ch == '{') {
				if ((size_t)(end - p) < 7 ||
				    memcmp(p, "{\"id\":", 6) != 0)
					return -EBADMSG;
				uint64_t id = strtoull((const char *)p + 6, NULL, 10);
				if (scan_push(v, n, cap, id) < 0)
					return -ENOMEM;
			}
			depth++;
		} else if (ch == '}' || ch == ']') {
			if (depth == 0)
				return 0; /* the array's own ']' */
			depth--;
		} else if (depth == 0 && ch >= '0' && ch <= '9') {
			char *e;
			uint64_t id = strtoull((const char *)p, &e, 10);
			if (scan_push(v, n, cap, id) < 0)
				return -ENOMEM;
			p = (const uint8_t *)e - 1;
		}
	}
	return -EBADMSG;
}

static int scan_map(uint8_t type, const uint8_t *body, size_t len, struct scan *r)
{
	const uint8_t *end, *a;
	int rc = 0;
	memset(r, 0, sizeof *r);
	if (type != CTL_MSG_MAP_DELTA)
		r->more = memmem(body, len, "\"more\":true", 11) != NULL;
	if ((a = json_array_at(body, len, "\"peers\":[", &end)))
		rc = scan_ids(r, a, end, true);
	if (rc == 0 && type == CTL_MSG_MAP_DELTA &&
	    (a = json_array_at(body, len, "\"removed\":[", &end)))
		rc = scan_ids(r, a, end, false);
	if (rc < 0)
		scan_free(r);
	return rc;
}

static void lite_map(struct sim *s, uint8_t type, const struct scan *r, bool marker)
{
	struct scale *sc = s->sc;
	int rc = 0;
	if (type == CTL_MSG_MAP_FULL) {
		memset(s->bits, 0, (s->nbits / 64) * sizeof *s->bits);
		s->count = 0;
		s->maps_full++;
	} else if (type == CTL_MSG_MAP_DELTA) {
		s->maps_delta++;
	}
	if (type != CTL_MSG_MAP_DELTA)
		s->streaming = r->more;
	for (size_t i = 0; i < r->n_on && rc == 0; i++)
		rc = lite_set(s, r->on[i], true);
	for (size_t i = 0; i < r->n_off && rc == 0; i++)
		rc = lite_set(s, r->off[i], false);
	if (rc < 0) {
		sc->bad_maps++;
		fprintf(stderr,
		        "ctl-scale: node %d: %s map message names id out of range\n",
		        s->idx, ctl_msg_type_name(type));
	}
	bool is = !s->streaming && s->count == sc->peers_want;
	if (is && !s->complete)
		sc->converged++;
	else if (!is && s->complete)
		sc->converged--;
	s->complete = is;
	/* the change under way: its marker in any map message (a delta, or a
	 * full map to a node that fell behind) */
	if (marker && !s->saw_change) {
		s->saw_change = true;
		sc->saw_change++;
	}
}

/* A plain map message: scanned, then applied. */
static void lite_map_plain(struct sim *s, uint8_t type, const uint8_t *body, size_t len)
{
	struct scale *sc = s->sc;
	struct scan r;
	int rc = scan_map(type, body, len, &r);
	if (rc < 0) {
		sc->bad_maps++;
		fprintf(stderr,
		        "ctl-scale: node %d: %s map message it cannot scan (%s)\n",
		        s->idx, ctl_msg_type_name(type), strerror(-rc));
		return;
	}
	bool marker =
	    sc->marker[0] && memmem(body, len, sc->marker, strlen(sc->marker)) != NULL;
	lite_map(s, type, &r, marker);
	scan_free(&r);
}

/* A ZMAP: the server sends the same compressed bytes to every node that
 * needs that chunk (or delta), so one process standing in for thousands
 * of nodes unwraps and scans each distinct body once and applies its ids
 * to every node that receives exactly those bytes (compared whole). Each
 * node still decrypts its own frames; what the real nodes do for it is
 * what the --full nodes do (decode and merge every map). */
static void lite_zmap(struct sim *s, const struct ctl_frame *f)
{
	struct scale *sc = s->sc;
	struct zcache *zc = NULL;
	for (size_t i = 0; i < ZCACHE_N && !sc->marker[0]; i++)
		if (sc->zc[i].z && sc->zc[i].zlen == f->len &&
		    !memcmp(sc->zc[i].z, f->body, f->len)) {
			zc = &sc->zc[i];
			break;
		}
	if (zc) {
		sc->zcache_hits++;
		sc->zmaps++;
		lite_map(s, zc->type, &zc->r, false);
		return;
	}
	struct ctl_frame inner;
	uint8_t *buf = NULL;
	struct ctl_msg_err err;
	if (ctl_zmsg_unwrap(sc->zdec, f->body, f->len, CTL_FRAME_BODY_MAX, &inner.type,
	                    &buf, &inner.len, &err) < 0) {
		sc->bad_maps++;
		lite_fail(s, err.text);
		return;
	}
	sc->zmaps++;
	struct scan r;
	int rc = scan_map(inner.type, buf, inner.len, &r);
	if (rc < 0) {
		sc->bad_maps++;
		fprintf(stderr, "ctl-scale: node %d: compressed %s it cannot scan (%s)\n",
		        s->idx, ctl_msg_type_name(inner.type), strerror(-rc));
		free(buf);
		return;
	}
	bool marker = sc->marker[0] &&
	              memmem(buf, inner.len, sc->marker, strlen(sc->marker)) != NULL;
	free(buf);
	lite_map(s, inner.type, &r, marker);
	uint8_t *copy = sc->marker[0] ? NULL : malloc(f->len);
	if (!copy) {
		scan_free(&r);
		return;
	}
	memcpy(copy, f->body, f->len);
	/* chunks (a map has one per 384 ids) and deltas in their own slots,
	 * so a burst of deltas does not push the map's chunks out */
	if (inner.type == CTL_MSG_MAP_PEERS) {
		zc = &sc->zc[sc->zc_next];
		sc->zc_next = (sc->zc_next + 1) % ZCACHE_CHUNKS;
	} else {
		zc = &sc->zc[ZCACHE_CHUNKS + sc->zc_next_other];
		sc->zc_next_other = (sc->zc_next_other + 1) % (ZCACHE_N - ZCACHE_CHUNKS);
	}
	free(zc->z);
	scan_free(&zc->r);
	zc->z = copy;
	zc->zlen = f->len;
	zc->type = inner.type;
	zc->r = r;
}

static void lite_message(struct sim *s, const struct ctl_frame *f)
{
	struct scale *sc = s->sc;
	if (f->type == CTL_MSG_ZMAP) {
		if (s->online)
			lite_zmap(s, f);
		return;
	}
	if (f->type == CTL_MSG_MAP_FULL || f->type == CTL_MSG_MAP_PEERS ||
	    f->type == CTL_MSG_MAP_DELTA) {
		if (s->online)
			lite_map_plain(s, f->type, f->body, f->len);
		return;
	}
	if (f->type != CTL_MSG_REGISTER_RESP && f->type != CTL_MSG_ERROR)
		return; /* KEEPALIVE */
	struct ctl_msg m;
	struct ctl_msg_err err;
	if (ctl_msg_decode(f->type, f->body, f->len, &m, &err) < 0) {
		lite_fail(s, err.text);
		return;
	}
	if (m.type == CTL_MSG_ERROR) {
		char why[CTL_TEXT_MAX + 32];
		snprintf(why, sizeof why, "server error %u: %s", m.u.error.code,
		         m.u.error.text);
		ctl_msg_free(&m);
		lite_fail(s, why);
		return;
	}
	const struct ctl_register_resp *rr = &m.u.reg_resp;
	if (rr->status == CTL_REG_OK && !s->online) {
		s->online = true;
		s->node_id = rr->node_id;
		if (++sc->online == sc->n_live && !sc->t_registered)
			sc->t_registered = now_s() - sc->t0;
	} else if (rr->status != CTL_REG_OK) {
		sc->refused++;
		fprintf(stderr, "ctl-scale: node %d refused: %s\n", s->idx, rr->reason);
	}
	ctl_msg_free(&m);
}

static void lite_read_cb(struct bufferevent *bev, void *arg)
{
	struct sim *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (s->bev == bev && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		struct ctl_frame f;
		size_t used = 0;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		int rc = ctl_frame_decode(&s->dec, v.iov_base, v.iov_len, &used, &f);
		s->bytes_in += used;
		evbuffer_drain(in, used);
		if (rc < 0) {
			lite_fail(s, "bad frame from the server");
			return;
		}
		if (rc != CTL_FRAME_READY)
			continue;
		if (s->transport) {
			lite_message(s, &f);
			continue;
		}
		size_t plen = 0;
		if (f.type != CTL_FRAME_HS2 ||
		    ctl_noise_read_msg2(&s->hs, f.body, f.len, NULL, 0, &plen) < 0 ||
		    ctl_noise_split(&s->hs, &s->tr) < 0) {
			lite_fail(s, "handshake failed");
			return;
		}
		s->transport = true;
		ctl_frame_decoder_set_transport(&s->dec, &s->tr);
		lite_register(s);
	}
}

static void lite_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sim *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		uint8_t msg[CTL_NOISE_MSG1_MIN], frame[CTL_NOISE_MSG1_MIN + 8];
		size_t mlen, flen;
		int rc = ctl_noise_init_initiator(&s->hs, s->machine_priv,
		                                  s->sc->tok.server_key, NULL, 0);
		if (rc == 0)
			rc =
			    ctl_noise_write_msg1(&s->hs, NULL, 0, msg, sizeof msg, &mlen);
		if (rc == 0)
			rc = ctl_frame_encode_handshake(CTL_FRAME_HS1, msg, mlen, frame,
			                                sizeof frame, &flen);
		if (rc == 0 && bufferevent_write(s->bev, frame, flen) < 0)
			rc = -EIO;
		if (rc < 0)
			lite_fail(s, "cannot start the handshake");
		s->last_tx = lite_now();
		return;
	}
	lite_fail(s, what & BEV_EVENT_EOF ? "closed by the server" : "connection error");
}

static void lite_connect(struct sim *s)
{
	struct scale *sc = s->sc;
	ctl_frame_decoder_init(&s->dec);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		lite_fail(s, strerror(errno));
		return;
	}
	/* A modest receive window, as each node's own would be: with the
	 * kernel's autotuned megabytes per connection, thousands of
	 * connections read by one process would sit on gigabytes the
	 * server counts as delivered, and each would drain its queue at the
	 * server only every few seconds. */
	int rcvbuf = 128 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (sc->sources > 1) {
		/* 127.1.x.y: spread over sc->sources loopback addresses, so
		 * per-source limits and ephemeral ports do not bite */
		unsigned k = (unsigned)s->idx % sc->sources;
		struct sockaddr_in src = {.sin_family = AF_INET};
		src.sin_addr.s_addr =
		    htonl(0x7f010000u | ((k / 250) << 8) | (1 + k % 250));
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
			close(fd);
			lite_fail(s, strerror(errno));
			return;
		}
	}
	s->bev = bufferevent_socket_new(sc->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev) {
		close(fd);
		lite_fail(s, "out of memory");
		return;
	}
	bufferevent_setcb(s->bev, lite_read_cb, NULL, lite_event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	const struct sockaddr_in *to = &sc->server[s->idx % sc->n_server];
	if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)to, sizeof *to) <
	    0)
		lite_fail(s, "connect failed");
}

static int lite_start(struct scale *sc, struct sim *s)
{
	uint8_t pub[CTL_KEY_LEN], priv[CTL_KEY_LEN];
	sim_keypair(sc, s->idx, "ctl-scale machine", s->machine_priv, pub);
	sim_keypair(sc, s->idx, "ctl-scale node", priv, s->node_key);
	sim_keypair(sc, s->idx, "ctl-scale disco", priv, s->disco_key);
	sodium_memzero(priv, sizeof priv);
	/* ids of a fresh store run from 1; room for re-registrations */
	s->nbits = ((size_t)sc->n * 2 + 64 + 63) / 64 * 64;
	s->bits = calloc(s->nbits / 64, sizeof *s->bits);
	if (!s->bits)
		return -1;
	lite_connect(s);
	return 0;
}

/* Every 20 s: a KEEPALIVE from each light node that sent nothing for 20 s
 * (the server closes a connection silent for its idle time). */
static void lite_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scale *sc = arg;
	(void)fd, (void)what;
	double now = lite_now();
	for (int i = 0; i < sc->started; i++) {
		struct sim *s = &sc->sims[i];
		if (s->c || !s->bev || !s->transport || now - s->last_tx < 20)
			continue;
		struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
		if (lite_send(s, &m) < 0)
			lite_fail(s, "cannot send KEEPALIVE");
	}
}

static void lite_free(struct sim *s)
{
	lite_reset(s);
	if (s->ev_retry)
		event_free(s->ev_retry);
	free(s->bits);
	sodium_memzero(s->machine_priv, sizeof s->machine_priv);
}

/* --- the run ------------------------------------------------------------ */

static uint64_t bytes_in_all(const struct scale *sc)
{
	uint64_t bytes = 0;
	for (int i = 0; i < sc->started; i++) {
		const struct sim *s = &sc->sims[i];
		if (s->c) {
			struct ctl_client_status st;
			ctl_client_get_status(s->c, &st);
			bytes += st.bytes_in;
		} else {
			bytes += s->bytes_in;
		}
	}
	return bytes;
}

/* One process's /proc/PID/stat: its parent, and its CPU time (user +
 * system, s), with the CPU of its children that ended and were waited for
 * when `reaped` (a postmaster's exited backends). -1: no such process. */
static int proc_stat(int pid, bool reaped, int *ppid, double *cpu)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the name may hold spaces */
	unsigned long ut = 0, st = 0;
	long cut = 0, cst = 0;
	int pp = 0;
	if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld",
	                 &pp, &ut, &st, &cut, &cst) != 5)
		return -1;
	*ppid = pp;
	*cpu = (double)(ut + st + (reaped ? (unsigned long)(cut + cst) : 0)) /
	       (double)sysconf(_SC_CLK_TCK);
	return 0;
}

/* The servers' CPU time (user + system, s) from /proc, summed, or 0. */
static double server_cpu(const struct scale *sc)
{
	double sum = 0, cpu;
	int ppid;
	for (int i = 0; i < sc->n_server_pid; i++)
		if (proc_stat(sc->server_pid[i], false, &ppid, &cpu) == 0)
			sum += cpu;
	return sum;
}

/* Calls fn for every process whose parent is `parent`. */
static void proc_children(int parent, void (*fn)(int pid, void *arg), void *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		int ppid;
		double cpu;
		if (*end || pid <= 0 || pid > INT32_MAX)
			continue;
		if (proc_stat((int)pid, false, &ppid, &cpu) == 0 && ppid == parent)
			fn((int)pid, arg);
	}
	closedir(d);
}

static void add_cpu(int pid, void *arg)
{
	int ppid;
	double cpu;
	if (proc_stat(pid, false, &ppid, &cpu) == 0)
		*(double *)arg += cpu;
}

/* The database's CPU time: the postmaster, its live children and the
 * children it reaped, or 0 without --db-pid. */
static double db_cpu(const struct scale *sc)
{
	double sum = 0;
	int ppid;
	if (!sc->db_pid || proc_stat(sc->db_pid, true, &ppid, &sum) < 0)
		return 0;
	proc_children(sc->db_pid, add_cpu, &sum);
	return sum;
}

static long proc_kib(int pid, const char *key)
{
	char path[64], line[256];
	if (pid)
		snprintf(path, sizeof path, "/proc/%d/status", pid);
	else
		snprintf(path, sizeof path, "/proc/self/status");
	FILE *f = fopen(path, "r");
	long v = -1;
	size_t kl = strlen(key);
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = atol(line + kl + 1);
			break;
		}
	fclose(f);
	return v;
}

/* The servers' VmRSS or VmHWM, summed (KiB), or -1 without --server-pid. */
static long servers_kib(const struct scale *sc, const char *key)
{
	long sum = -1;
	for (int i = 0; i < sc->n_server_pid; i++) {
		long v = proc_kib(sc->server_pid[i], key);
		if (v >= 0)
			sum = (sum < 0 ? 0 : sum) + v;
	}
	return sum;
}

/* A process's proportional set size (KiB): PostgreSQL's processes share
 * its buffers, which RSS would count once per process. VmRSS where
 * smaps_rollup cannot be read. */
static long proc_pss_kib(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	if (!f)
		return proc_kib(pid, "VmRSS");
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Pss:", 4)) {
			v = atol(line + 4);
			break;
		}
	fclose(f);
	return v >= 0 ? v : proc_kib(pid, "VmRSS");
}

static void add_pss(int pid, void *arg)
{
	long v = proc_pss_kib(pid);
	if (v > 0)
		*(long *)arg += v;
}

/* The database's memory (KiB), or -1 without --db-pid. */
static long db_mem_kib(const struct scale *sc)
{
	if (!sc->db_pid)
		return -1;
	long sum = proc_pss_kib(sc->db_pid);
	if (sum < 0)
		return -1;
	proc_children(sc->db_pid, add_pss, &sum);
	return sum;
}

static void http_done(struct evhttp_request *req, void *arg)
{
	struct scale *sc = arg;
	sc->http_status = req ? evhttp_request_get_response_code(req) : -1;
	sc->rename_api_ms = (now_s() - sc->t_change0) * 1e3;
	if (sc->http_status != 200) {
		fprintf(stderr, "ctl-scale: rename through the admin API: HTTP %d\n",
		        sc->http_status);
		sc->done = -1;
		event_base_loopbreak(sc->base);
	}
}

/* POST /api/v1/nodes/sim-00000/rename {"name": "sim-renamed"}. */
static int rename_start(struct scale *sc)
{
	char host[64];
	snprintf(host, sizeof host, "%s", sc->admin);
	char *colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = 0;
	sc->http =
	    evhttp_connection_base_new(sc->base, NULL, host, (uint16_t)atoi(colon + 1));
	struct evhttp_request *req = evhttp_request_new(http_done, sc);
	if (!sc->http || !req)
		return -1;
	char auth[160];
	snprintf(auth, sizeof auth, "Bearer %s", sc->api_key);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", host);
	evhttp_add_header(h, "Authorization", auth);
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add_printf(evhttp_request_get_output_buffer(req),
	                    "{\"name\": \"sim-renamed\"}");
	return evhttp_make_request(sc->http, req, EVHTTP_REQ_POST,
	                           "/api/v1/nodes/sim-00000/rename");
}

/* Starts the change PH_SETTLE waited for. */
static void change_start(struct scale *sc)
{
	for (int i = 0; i < sc->n; i++)
		sc->sims[i].saw_change = false;
	sc->saw_change = 0;
	sc->bytes0 = bytes_in_all(sc);
	sc->cpu_mark = server_cpu(sc);
	sc->db_cpu_mark = db_cpu(sc);
	sc->phase = sc->next;
	sc->t_change0 = now_s();
	if (sc->phase == PH_CHANGE) {
		/* node 0 moves its endpoint to port 41642 */
		struct ctl_endpoints eps = {.n = 1};
		eps.ep[0].family = 4;
		eps.ep[0].port = 41642;
		memcpy(eps.ep[0].addr, (const uint8_t[]){198, 18, 0, 0}, 4);
		snprintf(sc->marker, sizeof sc->marker, "\"198.18.0.0:41642\"");
		ctl_client_set_endpoints(sc->sims[0].c, &eps);
	} else {
		snprintf(sc->marker, sizeof sc->marker, "\"sim-renamed\"");
		if (rename_start(sc) != 0) {
			fprintf(stderr, "ctl-scale: cannot reach the admin API at %s\n",
			        sc->admin);
			sc->done = -1;
			event_base_loopbreak(sc->base);
		}
	}
}

static void settle(struct scale *sc, enum phase next)
{
	sc->phase = PH_SETTLE;
	sc->next = next;
	sc->marker[0] = 0;
	sc->settle_bytes = bytes_in_all(sc);
	sc->t_settle = now_s();
}

static int sim_start(struct scale *sc, struct sim *s)
{
	return s->idx < sc->n_full ? full_start(sc, s) : lite_start(sc, s);
}

/* Every 10 ms: start the nodes due by now at --rate (all with rate 0). */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
	struct scale *sc = arg;
	(void)fd, (void)what;
	double el = now_s() - sc->t0;
	int due = sc->rate ? (int)(el * sc->rate) + 1 : sc->n;
	if (due > sc->n)
		due = sc->n;
	while (sc->started < due) {
		struct sim *s = &sc->sims[sc->started];
		s->sc = sc;
		s->idx = sc->started++;
		if (s->idx == sc->skip)
			continue; /* a removed node's machine: left out */
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
	if (sc->phase == PH_STORM && sc->online == sc->n_live &&
	    sc->converged == sc->n_live) {
		sc->t_converged = el;
		sc->cpu_storm = server_cpu(sc) - sc->cpu0;
		sc->srv_rss_conv = servers_kib(sc, "VmRSS");
		sc->db_cpu_storm = db_cpu(sc) - sc->db_cpu0;
		sc->db_mem_conv = db_mem_kib(sc);
		settle(sc, PH_CHANGE);
	}
	if (sc->phase == PH_SETTLE) {
		/* the change waits until the updates in flight are through */
		uint64_t b = bytes_in_all(sc);
		if (b != sc->settle_bytes) {
			sc->settle_bytes = b;
			sc->t_settle = now_s();
		} else if (now_s() - sc->t_settle >= 0.5 || now_s() - sc->t_settle > 30) {
			change_start(sc);
		}
	}
	if ((sc->phase == PH_CHANGE || sc->phase == PH_RENAME) &&
	    sc->saw_change == sc->n_live - 1) {
		double ms = (now_s() - sc->t_change0) * 1e3;
		uint64_t bytes = bytes_in_all(sc) - sc->bytes0;
		double cpu = (server_cpu(sc) - sc->cpu_mark) * 1e3;
		double dbc = (db_cpu(sc) - sc->db_cpu_mark) * 1e3;
		if (sc->phase == PH_CHANGE) {
			sc->change_ms = ms, sc->change_bytes = bytes,
			sc->cpu_change = cpu, sc->db_cpu_change = dbc;
			if (sc->admin) {
				settle(sc, PH_RENAME);
				goto again;
			}
		} else {
			sc->rename_ms = ms, sc->rename_bytes = bytes,
			sc->cpu_rename = cpu, sc->db_cpu_rename = dbc;
		}
		sc->phase = PH_DONE;
		sc->done = sc->bad_maps ? -1 : 1;
		event_base_loopbreak(sc->base);
		return;
	}
	if (el > sc->timeout_s) {
		fprintf(
		    stderr,
		    "ctl-scale: timeout after %.0f s: %d of %d started, %d online, %d "
		    "converged, %d saw the change\n",
		    el, sc->started, sc->n, sc->online, sc->converged, sc->saw_change);
		sc->done = -1;
		event_base_loopbreak(sc->base);
		return;
	}
	static double last_report;
	if (el - last_report >= 5) {
		last_report = el;
		fprintf(stderr,
		        "ctl-scale: %.0f s: %d started, %d online, %d converged, %" PRIu64
		        " reconnects\n",
		        el, sc->started, sc->online, sc->converged, sc->reconnects);
	}
again:;
	struct timeval tv = {0, sc->phase == PH_STORM ? 20000 : 1000};
	evtimer_add(sc->ev_check, &tv);
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
	fprintf(stderr,
	        "usage: ctl-scale --token TOKEN -n N [--rate PER_SECOND] "
	        "[--timeout SECONDS] [--full K] [--sources S] [--server-pid "
	        "PID[,PID...]] [--connect HOST:PORT[,HOST:PORT...]] [--db-pid PID] "
	        "[--admin HOST:PORT --api-key KEY] [--no-zstd] [--verbose] "
	        "[--seed HEX] [--skip I] [--peers P] [--linger SECONDS]\n"
	        "  --seed HEX     derive node i's keys from HEX (32 to 128 hex "
	        "digits) and i:\n"
	        "                 a second run with the same seed reconnects the "
	        "same machines\n"
	        "  --skip I       do not start node I (1 to N-1; say, its node was "
	        "removed)\n"
	        "  --peers P      a map of P peers is complete (default N-1, less "
	        "one with --skip)\n"
	        "  --linger S     keep every node connected S seconds after the "
	        "result line\n");
	return 2;
}

/* --seed HEX: 32 to 128 hex digits (16 to 64 bytes), an even number. */
static int parse_seed(const char *hex, struct scale *sc)
{
	size_t len = strlen(hex), bin_len = 0;
	if (len < 32 || len > 2 * sizeof sc->seed || len % 2 ||
	    sodium_hex2bin(sc->seed, sizeof sc->seed, hex, len, NULL, &bin_len, NULL) !=
	        0 ||
	    bin_len != len / 2) {
		fprintf(stderr, "ctl-scale: --seed: expected 32 to 128 hex digits (an "
		                "even number), e.g. from `openssl rand -hex 16`\n");
		return -1;
	}
	sc->seed_len = bin_len;
	return 0;
}

/* --server-pid PID[,PID...] */
static int parse_pids(const char *list, struct scale *sc)
{
	const char *p = list;
	sc->n_server_pid = 0;
	while (*p) {
		char *end;
		long pid = strtol(p, &end, 10);
		if (end == p || pid <= 0 || pid > INT32_MAX || (*end && *end != ',') ||
		    sc->n_server_pid == SCALE_SERVERS_MAX) {
			fprintf(stderr, "ctl-scale: --server-pid %s: expected 1 to %d pids "
			                "separated by commas\n",
			        list, SCALE_SERVERS_MAX);
			return -1;
		}
		sc->server_pid[sc->n_server_pid++] = (int)pid;
		p = *end ? end + 1 : end;
	}
	return sc->n_server_pid ? 0 : -1;
}

static int add_server(struct scale *sc, const char *host, unsigned port)
{
	if (sc->n_server == SCALE_SERVERS_MAX || port == 0 || port > 65535)
		return -1;
	struct sockaddr_in *a = &sc->server[sc->n_server];
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return -1;
	snprintf(sc->server_host[sc->n_server], sizeof sc->server_host[0], "%s", host);
	sc->n_server++;
	return 0;
}

/* --connect HOST:PORT[,HOST:PORT...]: IPv4 addresses of the servers. */
static int parse_servers(const char *list, struct scale *sc)
{
	char item[64];
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *colon, *end;
		unsigned long port = 0;
		if (len < sizeof item) {
			memcpy(item, p, len);
			item[len] = 0;
		}
		colon = len < sizeof item ? strrchr(item, ':') : NULL;
		if (colon) {
			*colon = 0;
			port = strtoul(colon + 1, &end, 10);
			if (*end || end == colon + 1)
				port = 0;
		}
		if (!colon || add_server(sc, item, (unsigned)port) < 0) {
			fprintf(stderr, "ctl-scale: --connect %s: expected 1 to %d IPv4 "
			                "HOST:PORT separated by commas\n",
			        list, SCALE_SERVERS_MAX);
			return -1;
		}
		p = comma ? comma + 1 : p + len;
	}
	return sc->n_server ? 0 : -1;
}

static void print_results(struct scale *sc)
{
	uint64_t full = 0, delta = 0, bytes = 0;
	size_t map_bytes = 0;
	for (int i = 0; i < sc->started; i++) {
		const struct sim *s = &sc->sims[i];
		if (s->c) {
			struct ctl_client_status st;
			ctl_client_get_status(s->c, &st);
			full += st.maps_full;
			delta += st.maps_delta;
			bytes += st.bytes_in;
			sc->reconnects += st.reconnects;
		} else {
			full += s->maps_full;
			delta += s->maps_delta;
			bytes += s->bytes_in;
		}
	}
	if (sc->started > 0 && sc->sims[0].c) {
		const struct ctl_map_full *m = ctl_client_map(sc->sims[0].c);
		if (m) {
			struct ctl_msg msg = {.type = CTL_MSG_MAP_FULL, .u.map = *m};
			uint8_t *out = NULL;
			if (ctl_msg_encode(&msg, &out, &map_bytes, NULL) != 0)
				map_bytes = 0;
			free(out);
		}
	}
	printf("n=%d registered_s=%.3f converged_s=%.3f maps_full=%" PRIu64
	       " maps_delta=%" PRIu64 " bytes_in=%" PRIu64 " map_bytes=%zu"
	       " reconnects=%" PRIu64 " change_ms=%.1f change_bytes=%" PRIu64
	       " rename_ms=%.1f rename_api_ms=%.1f rename_bytes=%" PRIu64
	       " srv_cpu_storm_s=%.2f srv_cpu_change_ms=%.0f srv_cpu_rename_ms=%.0f"
	       " srv_rss_conv_kib=%ld srv_hwm_kib=%ld rss_kib=%ld refused=%d"
	       " bad_maps=%d zmaps=%" PRIu64 " zmaps_shared=%" PRIu64 " servers=%d"
	       " db_cpu_storm_s=%.2f db_cpu_change_ms=%.0f db_cpu_rename_ms=%.0f"
	       " db_mem_conv_kib=%ld ok=%d\n",
	       sc->n, sc->t_registered, sc->t_converged, full, delta, bytes, map_bytes,
	       sc->reconnects, sc->change_ms, sc->change_bytes, sc->rename_ms,
	       sc->rename_api_ms, sc->rename_bytes, sc->cpu_storm, sc->cpu_change,
	       sc->cpu_rename, sc->srv_rss_conv,
	       servers_kib(sc, "VmHWM"), proc_kib(0, "VmRSS"), sc->refused,
	       sc->bad_maps, sc->zmaps, sc->zcache_hits, sc->n_server, sc->db_cpu_storm,
	       sc->db_cpu_change, sc->db_cpu_rename, sc->db_mem_conv, sc->done == 1);
}

int main(int argc, char **argv)
{
	struct scale sc = {
	    .rate = 500, .timeout_s = 600, .n_full = 100, .sources = 250, .skip = -1};
	const char *token = NULL, *connect_list = NULL;
	long peers = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--verbose")) {
			sc.verbose = true;
			continue;
		}
		if (!strcmp(argv[i], "--no-zstd")) {
			sc.no_zstd = true;
			continue;
		}
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
		else if (!strcmp(argv[i], "--full"))
			sc.n_full = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sources"))
			sc.sources = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--server-pid")) {
			if (parse_pids(argv[++i], &sc) < 0)
				return usage();
		} else if (!strcmp(argv[i], "--connect"))
			connect_list = argv[++i];
		else if (!strcmp(argv[i], "--db-pid"))
			sc.db_pid = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--admin"))
			sc.admin = argv[++i];
		else if (!strcmp(argv[i], "--api-key"))
			sc.api_key = argv[++i];
		else if (!strcmp(argv[i], "--seed")) {
			if (parse_seed(argv[++i], &sc) < 0)
				return 2;
		} else if (!strcmp(argv[i], "--skip"))
			sc.skip = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--peers"))
			peers = atol(argv[++i]);
		else if (!strcmp(argv[i], "--linger"))
			sc.linger_s = atof(argv[++i]);
		else
			return usage();
	}
	/* node 0 moves its endpoint at the end: it cannot be left out */
	if (sc.skip != -1 && (sc.skip < 1 || sc.skip >= sc.n)) {
		fprintf(stderr, "ctl-scale: --skip %d: expected a node from 1 to N-1 "
		                "(node 0 makes the endpoint change)\n",
		        sc.skip);
		return 2;
	}
	sc.n_live = sc.n - (sc.skip != -1);
	if (peers < 0 || peers > 2L * sc.n || !(sc.linger_s >= 0 && sc.linger_s <= 3600)) {
		fprintf(stderr, "ctl-scale: --peers: 1 to 2N; --linger: 0 to 3600 s\n");
		return 2;
	}
	sc.peers_want = peers ? (size_t)peers : (size_t)sc.n_live - 1;
	if (!token || sc.n < 2 || sc.n_full < 1 || sc.sources < 1 ||
	    sc.sources > 250 * 256 || (sc.admin && !sc.api_key))
		return usage();
	if (sc.n_full > sc.n)
		sc.n_full = sc.n;
	if (sodium_init() < 0)
		return 1;
	int r = ctl_token_decode(token, strlen(token), &sc.tok);
	if (r != 0) {
		fprintf(stderr, "ctl-scale: %s\n", ctl_token_strerror(r));
		return 2;
	}
	if (connect_list) {
		if (parse_servers(connect_list, &sc) < 0)
			return 2;
	} else if (add_server(&sc, sc.tok.host, sc.tok.port) < 0) {
		fprintf(stderr, "ctl-scale: the token's host %s is not an IPv4 address\n",
		        sc.tok.host);
		return 2;
	}
	raise_nofile();
	sc.sims = calloc((size_t)sc.n, sizeof(*sc.sims));
	sc.base = event_base_new();
	sc.zdec = ctl_zdec_new();
	sc.zc = calloc(ZCACHE_N, sizeof *sc.zc);
	if (!sc.sims || !sc.base || !sc.zdec || !sc.zc)
		return 1;
	sc.ev_start = evtimer_new(sc.base, on_start, &sc);
	sc.ev_check = evtimer_new(sc.base, on_check, &sc);
	sc.ev_keepalive = event_new(sc.base, -1, EV_PERSIST, lite_keepalive_cb, &sc);
	struct timeval ka = {5, 0};
	evtimer_add(sc.ev_keepalive, &ka);
	sc.cpu0 = server_cpu(&sc);
	sc.db_cpu0 = db_cpu(&sc);
	sc.t0 = now_s();
	struct timeval zero = {0, 0};
	evtimer_add(sc.ev_start, &zero);
	evtimer_add(sc.ev_check, &zero);
	event_base_dispatch(sc.base);

	print_results(&sc);
	fflush(stdout);
	if (sc.done == 1 && sc.linger_s > 0) {
		/* the nodes stay connected (keepalives, maps) for the caller */
		fprintf(stderr, "ctl-scale: keeping the %d nodes connected for %.0f s\n",
		        sc.n_live, sc.linger_s);
		struct timeval tv = {(time_t)sc.linger_s,
		                     (suseconds_t)((sc.linger_s - (time_t)sc.linger_s) * 1e6)};
		event_base_loopexit(sc.base, &tv);
		event_base_dispatch(sc.base);
	}
	for (int i = 0; i < sc.started; i++) {
		ctl_client_free(sc.sims[i].c);
		lite_free(&sc.sims[i]);
	}
	if (sc.http)
		evhttp_connection_free(sc.http);
	event_free(sc.ev_start);
	event_free(sc.ev_check);
	event_free(sc.ev_keepalive);
	event_base_free(sc.base);
	ctl_zdec_free(sc.zdec);
	for (size_t i = 0; i < ZCACHE_N; i++) {
		free(sc.zc[i].z);
		scan_free(&sc.zc[i].r);
	}
	free(sc.zc);
	free(sc.sims);
	ctl_token_wipe(&sc.tok);
	return sc.done == 1 ? 0 : 1;
}
