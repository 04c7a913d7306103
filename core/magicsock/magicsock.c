/* magicsock: relay connections, home relay, disco path validation. See
 * magicsock.h for the rules. */
#include "core/magicsock/magicsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/disco/disco.h"
#include "core/magicsock/birthday.h"
#include "core/netcheck/netcheck.h"
#include "core/relay/client.h"
#include "core/stun/stun.h"
#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "core/wg/device.h"

#define MS_CANDS_MAX (CTL_ENDPOINTS_MAX + MS_LEARNED_MAX)
#define MS_PINGS_MAX (MS_CANDS_MAX + 8) /* a round to every candidate, and heartbeats */
#define MS_CAND_GAP_MS 1000 /* one candidate is pinged at most this often */
#define MS_PUNCH_GAP_MS 100 /* ... except back to a peer that pings us */
#define MS_NETCHECK_MIN_MS 20000
#define MS_NETCHECK_JITTER_MS 6000
#define MS_UPGRADE_MS 60000 /* a trusted peer's other candidates re-probed this often */
#define MS_HEARD_MS 60000   /* replies go back through the relay a peer was heard on */
#define MS_GONE_MS 3000     /* a relay said the peer is not there: not through it */
#define MS_NETCHG_NETCHECK_SPREAD_MS 1000     /* netcheck after our network changed */
#define MS_BD_QUEUE_MAX       8 /* birthday requests waiting for the running attempt */

struct ms_cand {
	struct sockaddr_storage sa;
	bool learned;
	int64_t last_ping_ms, last_pong_ms;
	uint32_t lat_us;
};

struct ms_ping {
	uint8_t txid[DISCO_TXID_LEN];
	struct sockaddr_storage to; /* family 0: through the relay */
	int64_t sent_us;
	uint32_t sock;  /* the birthday socket it left from, 0: the device's */
	uint32_t probe; /* the magicsock_ping probe it answers, 0: none */
};

/* A probe of magicsock_ping: answered by the first pong to any of its
 * pings, or by its timer. */
struct ms_probe {
	struct magicsock *ms;
	uint32_t id;
	uint8_t key[32];
	magicsock_pong_fn fn;
	void *ctx;
	struct event *timer;
	struct ms_probe *next;
};

struct ms_peer {
	uint8_t key[32], disco_key[32], shared[32];
	bool shared_ok;
	bool in_map; /* reconcile mark */
	uint32_t home_relay;
	struct ms_cand cand[MS_CANDS_MAX];
	size_t n_map_cand, n_cand; /* map candidates first, then learned */
	struct ms_ping ping[MS_PINGS_MAX];
	size_t ping_next;
	bool has_best;
	struct sockaddr_storage best;
	uint32_t best_lat_us;
	int64_t trust_until_ms, last_ping_all_ms, last_heartbeat_ms, last_cmm_ms;
	/* Direct attempts while untrusted: the next round no earlier than
	 * next_try_ms; the gap doubles from MS_RETRY_MIN_MS to MS_RETRY_MAX_MS
	 * (retry_gap_ms 0: the minimum) and resets on a pong or a change of
	 * endpoints. */
	int64_t next_try_ms;
	uint32_t retry_gap_ms;
	int64_t last_cmm_rx_ms;
	/* The rounds of pings its CALL_ME_MAYBEs start back off the same
	 * way (a member cannot make us ping its list every 5 s); reset with
	 * the retry above. */
	int64_t cmm_next_ms;
	uint32_t cmm_gap_ms;
	uint32_t heard_relay_id; /* the relay its last relayed packet came through */
	int64_t heard_ms;
	int64_t gone_until_ms; /* a relay answered PEER_GONE (not here) for it */
	uint64_t seen_bytes;
	int64_t active_ms; /* last time WireGuard moved bytes for it */
	unsigned pongs_this_sec;
	int64_t pong_sec;
	int64_t last_punch_ms; /* a PING back to a source not a candidate */
	uint64_t pings_sent, pongs_received;
	/* Birthday probing (birthday.h): the peer's NAT kind and public
	 * address (from its CALL_ME_MAYBE); link: the won socket of ours that
	 * reaches best (0: none); best_by_probe: best was found by our
	 * probes; punching without a path since; its last request to us. */
	uint8_t nat;
	struct sockaddr_storage pub;
	uint32_t link;
	bool best_by_probe;
	int64_t punch_since_ms, last_cmm_reply_ms;
	struct bd_backoff backoff;     /* hard side: our attempts for it */
	struct bd_backoff req_backoff; /* easy side: its attempts for it */
	/* Where control saw its control connection come from (the map's
	 * seen_ip, port 0; family 0: not said): the only IP a birthday
	 * attempt with it sends to. noseen_logged: "not said" was logged. */
	struct sockaddr_storage seen_ip;
	bool noseen_logged;
	/* The last source address a disco message from it came from by UDP
	 * (authenticated): an address the peer is seen at, family 0: none. */
	struct sockaddr_storage seen_src;
	/* The device's path as last told to cfg.on_path (path_note): 0 none
	 * yet, 1 direct to path_ep, 2 relay. */
	uint8_t path_seen;
	struct sockaddr_storage path_ep;
};

struct ms_conn {
	struct magicsock *ms;
	struct ctl_relay info;
	struct relay_client *c;
	int64_t last_use_ms;
	bool home;
	int64_t down_since_ms; /* first failure since the last success, 0: up */
	bool avoided;          /* reported to netcheck as unusable */
};

/* A home relay that stays unusable for MS_HOME_DOWN_MS (TCP refused, key
 * mismatch, not admitted) is left out of netcheck's candidates for
 * MS_AVOID_MS, so a relay that answers STUN but cannot be used does not
 * stay home. */
#define MS_AVOID_MS     60000
#define MS_AVOID_MAX   8
struct ms_avoid {
	uint32_t id;
	int64_t until_ms;
};

struct magicsock {
	struct magicsock_config cfg;
	struct ms_peer **by_key;   /* sorted by key */
	struct ms_peer **by_disco; /* same peers, sorted by disco key */
	size_t n_peers;
	struct ctl_relay *relays;
	size_t n_relays;
	struct ms_conn *conns[MS_CONNS_MAX];
	size_t n_conns;
	uint32_t home_id;
	struct netcheck *nc;
	struct netcheck_report *report; /* the last one, or NULL */
	struct event *tick, *nc_timer;
	/* A direct path's trust runs out before the next tick. */
	struct event *trust_timer;
	struct ctl_endpoints local_eps;
	struct ms_avoid avoid[MS_AVOID_MAX];
	uint8_t (*skip)[32]; /* static [Peer] keys: never steered */
	size_t n_skip;
	struct ms_probe *probes; /* magicsock_ping's, outstanding */
	uint32_t next_probe;
	struct birthday *bd;
	/* Peers' birthday requests that came while another attempt ran, in
	 * the order they came (one per peer: a newer one from the same peer
	 * takes its place): each starts when the one before ends, if that
	 * peer's sockets still wait. Full: refused. */
	struct {
		uint8_t key[32];
		struct sockaddr_storage ip;
		uint32_t probes;
		int64_t at_ms;
	} bd_queue[MS_BD_QUEUE_MAX];
	size_t n_bd_queue;
	struct magicsock_stats st;
};

static int64_t now_ms(void)
{
	return (int64_t)mono_now_ms();
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *ms_path_name(enum ms_path p)
{
	switch (p) {
	case MS_PATH_DIRECT:
		return "direct";
	case MS_PATH_RELAY:
		return "relay";
	default:
		return NULL;
	}
}

/* ---- lookups ---- */

static int cmp_key(const void *a, const void *b)
{
	return memcmp((*(struct ms_peer *const *)a)->key, (*(struct ms_peer *const *)b)->key,
	              32);
}

static int cmp_disco(const void *a, const void *b)
{
	return memcmp((*(struct ms_peer *const *)a)->disco_key,
	              (*(struct ms_peer *const *)b)->disco_key, 32);
}

static struct ms_peer *find(struct ms_peer **arr, size_t n, const uint8_t *key,
                            bool disco)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(disco ? arr[mid]->disco_key : arr[mid]->key, key, 32);
		if (c == 0)
			return arr[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct ms_peer *peer_by_key(const struct magicsock *ms, const uint8_t *key)
{
	return find(ms->by_key, ms->n_peers, key, false);
}

const struct ctl_relay *magicsock_relay(const struct magicsock *ms, uint32_t id)
{
	for (size_t i = 0; id && i < ms->n_relays; i++)
		if (ms->relays[i].id == id)
			return &ms->relays[i];
	return NULL;
}

static void sa_from_ctl(struct sockaddr_storage *ss, const struct ctl_endpoint *e)
{
	memset(ss, 0, sizeof(*ss));
	if (e->family == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(e->port);
		memcpy(&s->sin_addr, e->addr, 4);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(e->port);
		memcpy(&s->sin6_addr, e->addr, 16);
	}
}

/* ---- relay connections ---- */

static void push_all_paths(struct magicsock *ms);
static void set_home(struct magicsock *ms, uint32_t id);
static void push_path(struct magicsock *ms, struct ms_peer *p);
static void path_note(struct magicsock *ms, struct ms_peer *p,
                      const struct wg_peer_info *pi);
static struct ms_peer *peer_by_key(const struct magicsock *ms, const uint8_t *key);
static void schedule_netcheck(struct magicsock *ms, uint32_t ms_from_now);
static void retry_reset_all(struct magicsock *ms);

static void conn_on_packet(void *ctx, struct relay_client *c, const uint8_t *src_key,
                           const uint8_t *data, size_t len);

static void conn_on_state(void *ctx, struct relay_client *c, enum relay_client_state st,
                          const char *detail)
{
	struct ms_conn *k = ctx;
	struct magicsock *ms = k->ms;
	const char *what = relay_client_state_name(st);
	if (st == RELAY_CLIENT_CONNECTED) {
		k->down_since_ms = 0;
		k->avoided = false;
		/* what a relay said before this connection no longer holds */
		for (size_t i = 0; i < ms->n_peers; i++)
			ms->by_key[i]->gone_until_ms = 0;
	} else if (st == RELAY_CLIENT_BACKOFF && !k->down_since_ms) {
		k->down_since_ms = now_ms();
	}
	if (st == RELAY_CLIENT_CONNECTED)
		log_info("relay %s (%s, %s:%u)%s: connected", k->info.name[0] ? k->info.name : "?",
		         k->info.region, k->info.host, k->info.port, k->home ? " [home]" : "");
	else if (st == RELAY_CLIENT_BACKOFF)
		log_info("relay %s (%s:%u): %s%s%s", k->info.name[0] ? k->info.name : "?",
		         k->info.host, k->info.port, what ? what : "?", detail && *detail ? ": " : "",
		         detail ? detail : "");
	push_all_paths(ms);
}

/* The relay has no client with this key (the peer moved to another
 * relay, or has none): not through this relay for a while; the peer's
 * next map entry (its new home) or its next packet says where it is. */
static void conn_on_peer_gone(void *ctx, struct relay_client *c, const uint8_t *key,
                              uint8_t reason)
{
	struct ms_conn *k = ctx;
	struct ms_peer *p = peer_by_key(k->ms, key);
	if (!p || reason != RELAY_GONE_NOT_HERE)
		return;
	if (p->heard_relay_id == k->info.id)
		p->heard_relay_id = 0;
	p->gone_until_ms = now_ms() + MS_GONE_MS;
	k->ms->st.peer_gone++;
	push_path(k->ms, p);
}

static const struct relay_client_callbacks conn_cb = {
    .on_packet = conn_on_packet,
    .on_state = conn_on_state,
    .on_peer_gone = conn_on_peer_gone,
};

static struct ms_conn *conn_find(struct magicsock *ms, uint32_t id)
{
	for (size_t i = 0; i < ms->n_conns; i++)
		if (ms->conns[i]->info.id == id)
			return ms->conns[i];
	return NULL;
}

static void conn_close(struct magicsock *ms, size_t i)
{
	struct ms_conn *k = ms->conns[i];
	struct relay_client_status rs;
	relay_client_get_status(k->c, &rs);
	ms->st.relay_closed_rx_bytes += rs.rx_bytes;
	ms->st.relay_closed_tx_bytes += rs.tx_bytes;
	relay_client_free(k->c);
	sodium_memzero(k, sizeof(*k));
	free(k);
	ms->conns[i] = ms->conns[--ms->n_conns];
}

static struct ms_conn *conn_open(struct magicsock *ms, const struct ctl_relay *r)
{
	struct ms_conn *k = conn_find(ms, r->id);
	if (k)
		return k;
	if (ms->n_conns >= MS_CONNS_MAX || !r->has_key)
		return NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->ms = ms;
	k->info = *r;
	k->last_use_ms = now_ms();
	struct relay_client_config rc = {
	    .base = ms->cfg.base,
	    .dns = ms->cfg.dns,
	    .host = r->host,
	    .port = r->port,
	    .tls = r->tls,
	    .cb = &conn_cb,
	    .ctx = k,
	};
	memcpy(rc.relay_key, r->key, 32);
	memcpy(rc.node_priv, ms->cfg.node_priv, 32);
	memcpy(rc.node_pub, ms->cfg.node_pub, 32);
	char err[160];
	k->c = relay_client_new(&rc, err, sizeof(err));
	sodium_memzero(rc.node_priv, sizeof(rc.node_priv));
	if (!k->c) {
		log_warn("relay %s:%u: %s", r->host, r->port, err);
		free(k);
		return NULL;
	}
	ms->conns[ms->n_conns++] = k;
	return k;
}

static struct ms_conn *home_conn(struct magicsock *ms)
{
	return ms->home_id ? conn_find(ms, ms->home_id) : NULL;
}

/* The connection that reaches p: its home relay's, unless that is in our
 * home region (the relays of one region forward to each other) or unknown.
 * open: make it if it does not exist. */
static struct ms_conn *conn_for(struct magicsock *ms, struct ms_peer *p, bool open)
{
	/* The relay its packets last came through answers best (its home may
	 * just have changed, or be one we cannot reach). */
	if (p->heard_relay_id && now_ms() - p->heard_ms < MS_HEARD_MS) {
		struct ms_conn *k = conn_find(ms, p->heard_relay_id);
		if (k && relay_client_connected(k->c))
			return k;
	}
	/* A peer that reported no home relay is on none: nothing reaches it
	 * that way (a node without paths, or one still measuring). */
	if (!p->home_relay)
		return NULL;
	struct ms_conn *home = home_conn(ms);
	const struct ctl_relay *theirs = magicsock_relay(ms, p->home_relay);
	if (!theirs || !home || strcmp(theirs->region, home->info.region) == 0)
		return home;
	struct ms_conn *k = conn_find(ms, theirs->id);
	if (!k && open)
		k = conn_open(ms, theirs);
	return k;
}

/* ---- telling the device ---- */

static void push_path(struct magicsock *ms, struct ms_peer *p)
{
	struct ms_conn *k = conn_for(ms, p, false);
	int64_t now = now_ms();
	bool relay_ok = k && relay_client_connected(k->c) && p->gone_until_ms <= now;
	uint32_t trust = p->has_best && p->trust_until_ms > now
	                     ? (uint32_t)(p->trust_until_ms - now)
	                     : 0;
	/* Trust is for the address disco validated: the device's endpoint
	 * (which roaming or the map may have moved) goes back to it. */
	struct wg_peer_info pi;
	if (trust && wg_device_peer_info_by_key(ms->cfg.wg, p->key, &pi) == 0 &&
	    !sockaddr_equal(&pi.endpoint, &p->best)) {
		struct wg_peer_config pc;
		memset(&pc, 0, sizeof(pc));
		memcpy(pc.public_key, p->key, 32);
		pc.endpoint = p->best;
		(void)wg_device_update_peer(ms->cfg.wg, &pc, WG_PEER_UPD_ENDPOINT);
	}
	/* A birthday link carries p's datagrams to best, wherever best moved
	 * on it (a pong on the link from a new address) and whatever the
	 * device forgot (a wg peer removed and added again). */
	if (p->link && p->has_best)
		(void)wg_device_set_peer_sock(ms->cfg.wg, p->key, bd_fd(ms->bd, p->link),
		                              &p->best);
	(void)wg_device_set_peer_path(ms->cfg.wg, p->key, relay_ok, trust);
	if (ms->cfg.on_path && wg_device_peer_info_by_key(ms->cfg.wg, p->key, &pi) == 0)
		path_note(ms, p, &pi);
}

/* Tells the owner when the device's path to p changed (pi: the device's
 * view of p now), so connections stalled on the old path go on at once. */
static void path_note(struct magicsock *ms, struct ms_peer *p,
                      const struct wg_peer_info *pi)
{
	uint8_t now = pi->via_relay ? 2 : pi->endpoint.ss_family ? 1 : 0;
	uint8_t was = p->path_seen;
	if (!now || !ms->cfg.on_path)
		return;
	bool moved =
	    now != was || (now == 1 && !sockaddr_equal(&pi->endpoint, &p->path_ep));
	p->path_seen = now;
	if (now == 1)
		p->path_ep = pi->endpoint;
	if (moved && was)
		ms->cfg.on_path(ms->cfg.ctx, p->key, was == 2, now == 2);
}

static void push_all_paths(struct magicsock *ms)
{
	for (size_t i = 0; i < ms->n_peers; i++)
		push_path(ms, ms->by_key[i]);
}

/* ---- disco ---- */

/* The socket that reaches `to` for p: its birthday link when `to` is the
 * address the link validated, else the device's (0). */
static uint32_t sock_for(const struct ms_peer *p, const struct sockaddr_storage *to)
{
	return p->link && to && p->has_best && sockaddr_equal(to, &p->best) ? p->link : 0;
}

/* m to p: at `to` from birthday socket sock (0: the device's socket), or
 * through the relay (to NULL). */
static int disco_send_on(struct magicsock *ms, struct ms_peer *p, uint32_t sock,
                         const struct sockaddr_storage *to, const struct disco_msg *m)
{
	uint8_t buf[DISCO_MAX_LEN];
	if (!p->shared_ok)
		return -EINVAL;
	size_t n = disco_seal(buf, sizeof(buf), ms->cfg.disco_pub, p->shared, m);
	if (!n)
		return -EINVAL;
	int r;
	if (to && sock) {
		r = bd_send(ms->bd, sock, to, buf, n);
	} else if (to) {
		r = wg_device_send_raw(ms->cfg.wg, (const struct sockaddr *)to, buf, n);
	} else {
		struct ms_conn *k = conn_for(ms, p, true);
		r = k ? relay_client_send(k->c, p->key, buf, n) : -ENOTCONN;
		if (k)
			k->last_use_ms = now_ms();
	}
	if (r == 0)
		ms->st.disco_tx++;
	return r;
}

static int disco_send(struct magicsock *ms, struct ms_peer *p,
                      const struct sockaddr_storage *to, const struct disco_msg *m)
{
	return disco_send_on(ms, p, sock_for(p, to), to, m);
}

/* Where the next PING of p is kept: a free or expired slot (an answered
 * one is cleared), else the one sent longest ago; a ping that may still
 * be answered is never overwritten while another slot is free. */
static struct ms_ping *ping_slot(struct ms_peer *p)
{
	int64_t now = now_us();
	size_t slot = p->ping_next, oldest = p->ping_next;
	bool found = false;
	for (size_t k = 0; k < MS_PINGS_MAX && !found; k++) {
		size_t i = (p->ping_next + k) % MS_PINGS_MAX;
		const struct ms_ping *pg = &p->ping[i];
		if (!pg->sent_us || now - pg->sent_us > (int64_t)MS_PING_TIMEOUT_MS * 1000) {
			slot = i;
			found = true;
		} else if (pg->sent_us < p->ping[oldest].sent_us) {
			oldest = i;
		}
	}
	if (!found)
		slot = oldest;
	p->ping_next = (slot + 1) % MS_PINGS_MAX;
	memset(&p->ping[slot], 0, sizeof(p->ping[slot]));
	return &p->ping[slot];
}

/* A PING to candidate c from socket sock (see disco_send_on), or through
 * the relay when c is NULL (sock 0; only magicsock_ping's probes go that
 * way: a relayed PONG measures the relay, it never makes a direct path).
 * probe: the probe it belongs to, 0: none. True if it went out. */
static bool send_ping_on(struct magicsock *ms, struct ms_peer *p, struct ms_cand *c,
                         uint32_t sock, uint32_t probe)
{
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PING;
	m.version = 1;
	randombytes_buf(m.txid, sizeof(m.txid));
	memcpy(m.node_key, ms->cfg.node_pub, 32);
	if (disco_send_on(ms, p, c ? sock : 0, c ? &c->sa : NULL, &m) != 0)
		return false;
	struct ms_ping *pg = ping_slot(p);
	memcpy(pg->txid, m.txid, sizeof(pg->txid));
	if (c)
		pg->to = c->sa;
	pg->sent_us = now_us();
	pg->sock = c ? sock : 0;
	pg->probe = probe;
	if (c)
		c->last_ping_ms = now_ms();
	p->pings_sent++;
	return true;
}

/* The wait before the next direct attempt on a peer that is still not
 * reached directly: MS_RETRY_MIN_MS doubling to MS_RETRY_MAX_MS, each
 * with +-10 % jitter (peers that failed together do not retry in step). */
static void retry_schedule(struct ms_peer *p, int64_t now)
{
	uint32_t gap = p->retry_gap_ms ? p->retry_gap_ms : MS_RETRY_MIN_MS;
	p->next_try_ms = now + gap - gap / 10 + randombytes_uniform(gap / 5 + 1);
	p->retry_gap_ms = gap >= MS_RETRY_MAX_MS / 2 ? MS_RETRY_MAX_MS : gap * 2;
}

/* Something that may make a direct path work changed (a pong came, the
 * peer's or our endpoints moved): the next attempt is due at once, and
 * the backoff starts again from its minimum. */
static void retry_reset(struct ms_peer *p)
{
	p->retry_gap_ms = 0;
	p->next_try_ms = 0;
	p->cmm_gap_ms = 0;
	p->cmm_next_ms = 0;
}

/* After a round of pings a peer's CALL_ME_MAYBE started: the next one no
 * earlier than 80 % of the gap retry_schedule would give (the peer's own
 * rounds, which send its CALL_ME_MAYBEs, follow that schedule with +-10 %
 * jitter: an honest peer's are all answered). */
static void cmm_schedule(struct ms_peer *p, int64_t now)
{
	uint32_t gap = p->cmm_gap_ms ? p->cmm_gap_ms : MS_RETRY_MIN_MS;
	p->cmm_next_ms = now + gap - gap / 5;
	p->cmm_gap_ms = gap >= MS_RETRY_MAX_MS / 2 ? MS_RETRY_MAX_MS : gap * 2;
}

static bool retry_due(const struct ms_peer *p, int64_t now)
{
	return now >= p->next_try_ms && now - p->last_ping_all_ms >= MS_PING_ALL_MS;
}

/* A PING to c (NULL: through the relay) from the socket that reaches it. */
static bool send_ping(struct magicsock *ms, struct ms_peer *p, struct ms_cand *c,
                      uint32_t probe)
{
	return send_ping_on(ms, p, c, c ? sock_for(p, &c->sa) : 0, probe);
}

/* Our endpoints: the local ones and what STUN saw. */
static void our_endpoints(const struct magicsock *ms, struct disco_msg *m)
{
	m->n_eps = 0;
	for (size_t i = 0; i < ms->local_eps.n && m->n_eps < DISCO_CALLMEMAYBE_MAX; i++) {
		struct sockaddr_storage ss;
		sa_from_ctl(&ss, &ms->local_eps.ep[i]);
		if (disco_addr_from_sockaddr(&m->eps[m->n_eps], (struct sockaddr *)&ss))
			m->n_eps++;
	}
	if (ms->report) {
		const struct sockaddr_storage *g[2] = {&ms->report->global_v4,
		                                       &ms->report->global_v6};
		for (int i = 0; i < 2 && m->n_eps < DISCO_CALLMEMAYBE_MAX; i++)
			if (g[i]->ss_family &&
			    disco_addr_from_sockaddr(&m->eps[m->n_eps], (const struct sockaddr *)g[i]))
				m->n_eps++;
		/* Our NAT kind and public IPv4 address, for birthday probing
		 * (not sent when it is off here: no peer asks us then). */
		const struct netcheck_report *r = ms->report;
		if (!ms->cfg.no_birthday && r->has_mapping_varies && r->global_v4.ss_family == AF_INET &&
		    disco_addr_from_sockaddr(&m->pub, (const struct sockaddr *)&r->global_v4))
			m->nat = r->mapping_varies ? DISCO_NAT_HARD : DISCO_NAT_EASY;
	}
}

static bool ping_all(struct magicsock *ms, struct ms_peer *p, bool call_me)
{
	int64_t now = now_ms();
	bool sent = false;
	for (size_t i = 0; i < p->n_cand; i++)
		if (now - p->cand[i].last_ping_ms >= MS_CAND_GAP_MS)
			sent |= send_ping(ms, p, &p->cand[i], 0);
	/* Ask the peer, through the relay, to ping our endpoints now too: both
	 * NATs open their mappings at about the same time. */
	struct ms_conn *k = conn_for(ms, p, true);
	if (call_me && k && relay_client_connected(k->c) &&
	    now - p->last_cmm_ms >= MS_PING_ALL_MS) {
		struct disco_msg m;
		memset(&m, 0, sizeof(m));
		m.type = DISCO_CALL_ME_MAYBE;
		m.version = 1;
		our_endpoints(ms, &m);
		if (m.n_eps && disco_send(ms, p, NULL, &m) == 0) {
			p->last_cmm_ms = now;
			ms->st.call_me_maybe_tx++;
			sent = true;
		}
	}
	/* A round that sent nothing (no candidates, no endpoints of ours yet,
	 * no relay yet) does not count: the next send tries again. A direct
	 * attempt (call_me: no trusted path) backs off until one works. */
	if (sent) {
		p->last_ping_all_ms = now;
		if (call_me)
			retry_schedule(p, now);
	}
	return sent;
}

/* Worth pinging: a unicast address and a port (what a peer's CALL_ME_MAYBE
 * lists is its word only; never 0.0.0.0, multicast, broadcast or port 0). */
static bool cand_ok(const struct sockaddr_storage *sa)
{
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		uint32_t a = ntohl(s->sin_addr.s_addr);
		return s->sin_port && a != 0 && a != 0xffffffffu && (a >> 28) != 0xe &&
		       (a >> 16) != 0xa9fe; /* 169.254/16: link-local, cloud metadata */
	}
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;
		return s->sin6_port && !IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr) &&
		       !IN6_IS_ADDR_MULTICAST(&s->sin6_addr) &&
		       !IN6_IS_ADDR_LINKLOCAL(&s->sin6_addr);
	}
	return false;
}

/* What a peer's CALL_ME_MAYBE lists may also not be a loopback address:
 * that would make us ping our own host's services (127.0.0.0/8, ::1,
 * ::ffff:127.0.0.0/104). Private addresses stay: peers behind one NAT
 * need them. Loopback only in tests on one machine. */
static bool cand_ok_learned(const struct magicsock *ms, const struct sockaddr_storage *sa)
{
	if (!cand_ok(sa))
		return false;
	if (ms->cfg.disco_loopback_for_tests)
		return true;
	if (sa->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) != 127;
	const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return !IN6_IS_ADDR_LOOPBACK(a) && !(IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* A candidate address for p (learned ones replace the oldest learned). */
static struct ms_cand *add_candidate(struct ms_peer *p, const struct sockaddr_storage *sa)
{
	for (size_t i = 0; i < p->n_cand; i++)
		if (sockaddr_equal(&p->cand[i].sa, sa))
			return &p->cand[i];
	size_t slot;
	if (p->n_cand < MS_CANDS_MAX) {
		slot = p->n_cand++;
	} else {
		/* the learned one heard from (pong) or tried (ping) longest ago */
		slot = p->n_map_cand;
		for (size_t i = p->n_map_cand + 1; i < p->n_cand; i++) {
			const struct ms_cand *c = &p->cand[i], *o = &p->cand[slot];
			int64_t ci = c->last_pong_ms > c->last_ping_ms ? c->last_pong_ms
			                                                : c->last_ping_ms;
			int64_t oi = o->last_pong_ms > o->last_ping_ms ? o->last_pong_ms
			                                                : o->last_ping_ms;
			if (ci < oi)
				slot = i;
		}
	}
	memset(&p->cand[slot], 0, sizeof(p->cand[slot]));
	p->cand[slot].sa = *sa;
	p->cand[slot].learned = true;
	return &p->cand[slot];
}

static void probe_answer(struct magicsock *ms, uint32_t id, struct ms_peer *p,
                         const struct sockaddr_storage *from, uint32_t lat,
                         const struct disco_msg *m);
static bool bd_use_link(struct magicsock *ms, struct ms_peer *p, uint32_t sock);
static void bd_kick(struct magicsock *ms);
static const char *bd_addr_refusal(const struct magicsock *ms, const struct ms_peer *p,
                                   const struct sockaddr_storage *ip);

static void on_pong(struct magicsock *ms, struct ms_peer *p, const struct disco_msg *m,
                    const struct sockaddr_storage *from, uint32_t sock)
{
	struct ms_ping *pg = NULL;
	for (size_t i = 0; i < MS_PINGS_MAX; i++)
		if (p->ping[i].sent_us &&
		    sodium_memcmp(p->ping[i].txid, m->txid, DISCO_TXID_LEN) == 0) {
			pg = &p->ping[i];
			break;
		}
	int64_t now = now_us(), bd_us = 0;
	/* Ours, to exactly where it came from (a PING through the relay is
	 * answered through the relay, from == NULL), on the socket it left
	 * from, and not stale; or the answer to one of our birthday probes
	 * (always to the device's socket). */
	bool bd_hit =
	    !pg && from && !sock && bd_easy_match(ms->bd, p->key, m->txid, from, &bd_us);
	if (bd_hit)
		bd_kick(ms);
	bool where = pg && pg->sock == sock &&
	             (from ? sockaddr_equal(&pg->to, from) : pg->to.ss_family == 0);
	if (!bd_hit && (!where || now - pg->sent_us > (int64_t)MS_PING_TIMEOUT_MS * 1000)) {
		ms->st.pongs_unmatched++;
		return;
	}
	uint32_t lat = (uint32_t)(now - (bd_hit ? bd_us : pg->sent_us));
	uint32_t probe = pg ? pg->probe : 0;
	if (pg)
		memset(pg, 0, sizeof(*pg)); /* answered: a replayed pong finds nothing */
	p->pongs_received++;
	ms->st.pongs_rx++;
	if (probe)
		probe_answer(ms, probe, p, from, lat, m);
	if (!from)
		return; /* the relay works; that says nothing about a direct path */
	retry_reset(p);
	p->seen_src = *from;
	struct ms_cand *c = add_candidate(p, from);
	c->last_pong_ms = now / 1000;
	c->lat_us = lat;
	/* The best path: the current one again, or one clearly faster, or any
	 * when the current one is no longer trusted. */
	bool take = bd_hit || !p->has_best || sockaddr_equal(&p->best, from) ||
	            p->trust_until_ms <= now / 1000 ||
	            (uint64_t)lat * 100 < (uint64_t)p->best_lat_us * 99;
	if (!take)
		return;
	bool changed = !p->has_best || !sockaddr_equal(&p->best, from) || sock != p->link;
	if (changed)
		p->best_by_probe = bd_hit;
	p->has_best = true;
	p->best = *from;
	p->best_lat_us = lat;
	p->trust_until_ms = now / 1000 + MS_TRUST_MS;
	p->punch_since_ms = 0;
	bd_backoff_reset(&p->backoff);
	/* Only our probes' win resets the gap between its requests: a peer
	 * that answers a ping now and then must not ask every 20 s. */
	if (bd_hit)
		bd_backoff_reset(&p->req_backoff);
	if (sock != p->link && !bd_use_link(ms, p, sock)) {
		/* That socket is closed: nothing reaches best any more. */
		p->has_best = false;
		p->trust_until_ms = 0;
		push_path(ms, p);
		return;
	}
	if (changed) {
		char a[64];
		sockaddr_format(from, a, sizeof(a));
		log_info("path: direct to a peer at %s (%.1f ms)%s", a, lat / 1000.0,
		         p->link || p->best_by_probe ? ", found by birthday probing" : "");
	}
	push_path(ms, p);
}

/* The peers with this disco key: [*lo, *hi) in by_disco. Control should
 * never hand out one disco key twice, but a member could register another
 * node's: then every message is matched to the right one of them by what it
 * carries (the PING's node key, the relay's sender key, the PONG's txid). */
static bool disco_range(const struct magicsock *ms, const uint8_t *dk, size_t *lo,
                        size_t *hi)
{
	size_t a = 0, b = ms->n_peers;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (memcmp(ms->by_disco[mid]->disco_key, dk, 32) < 0)
			a = mid + 1;
		else
			b = mid;
	}
	size_t e = a;
	while (e < ms->n_peers && memcmp(ms->by_disco[e]->disco_key, dk, 32) == 0)
		e++;
	*lo = a;
	*hi = e;
	return a < e;
}

static bool has_ping(const struct ms_peer *p, const uint8_t *txid)
{
	for (size_t i = 0; i < MS_PINGS_MAX; i++)
		if (p->ping[i].sent_us &&
		    sodium_memcmp(p->ping[i].txid, txid, DISCO_TXID_LEN) == 0)
			return true;
	return false;
}

static void bd_on_request(struct magicsock *ms, struct ms_peer *p, const struct disco_msg *m);
static void bd_on_call_me_maybe(struct magicsock *ms, struct ms_peer *p,
                                const struct disco_msg *m);

/* A disco datagram: from the relay (relay_src), or from `from` on the
 * device's socket (sock 0) or on birthday socket sock. */
static void on_disco(struct magicsock *ms, const uint8_t *buf, size_t len,
                     const struct sockaddr_storage *from, const uint8_t *relay_src,
                     uint32_t sock)
{
	ms->st.disco_rx++;
	size_t lo, hi;
	if (!disco_range(ms, disco_sender_key(buf), &lo, &hi) || !ms->by_disco[lo]->shared_ok) {
		ms->st.disco_drop_unknown++;
		return;
	}
	struct disco_msg m;
	if (disco_open(buf, len, ms->by_disco[lo]->shared, &m) != 0) {
		ms->st.disco_drop_bad++;
		return;
	}
	/* Which peer: the one the message itself names. */
	struct ms_peer *p = NULL;
	for (size_t i = lo; i < hi && !p; i++) {
		struct ms_peer *q = ms->by_disco[i];
		if (relay_src && sodium_memcmp(relay_src, q->key, 32) != 0)
			continue;
		if (m.type == DISCO_PING && sodium_memcmp(m.node_key, q->key, 32) != 0)
			continue;
		if (m.type == DISCO_PONG && hi - lo > 1 && !has_ping(q, m.txid))
			continue;
		p = q;
	}
	if (!p) {
		ms->st.disco_drop_bad++;
		return;
	}
	int64_t now = now_ms();
	switch (m.type) {
	case DISCO_PING: {
		ms->st.pings_rx++;
		/* Not p->seen_src, nor a candidate: anyone may replay a PING it
		 * captured, from any source (a PONG, which answers our own
		 * txid, sets both in on_pong). */
		if (now / 1000 != p->pong_sec) {
			p->pong_sec = now / 1000;
			p->pongs_this_sec = 0;
		}
		if (++p->pongs_this_sec > MS_PONGS_PER_SEC) {
			ms->st.disco_drop_rate++;
			return;
		}
		struct disco_msg pong;
		memset(&pong, 0, sizeof(pong));
		pong.type = DISCO_PONG;
		pong.version = 1;
		memcpy(pong.txid, m.txid, sizeof(pong.txid));
		if (from) {
			disco_addr_from_sockaddr(&pong.src, (const struct sockaddr *)from);
		} else {
			pong.src.family = 4; /* through the relay: no address */
		}
		(void)disco_send_on(ms, p, sock ? sock : sock_for(p, from), from, &pong);
		/* Its source is a way to the peer; with no trusted path, try it
		 * (and the others) now: the peer is punching towards us. */
		if (from && !(p->has_best && p->trust_until_ms > now)) {
			/* The peer is punching towards us right now: its NAT
			 * holds a mapping for us, so ping back at once (our own
			 * earlier punch to this address may have been dropped by
			 * its filter); its PONG makes the address a candidate.
			 * Bounded by the peer's pings (PONG budget above) and
			 * MS_PUNCH_GAP_MS per peer for an address that is not a
			 * candidate yet. */
			struct ms_cand tmp, *c = NULL;
			for (size_t i = 0; i < p->n_cand && !c; i++)
				if (sockaddr_equal(&p->cand[i].sa, from))
					c = &p->cand[i];
			int64_t last = c ? c->last_ping_ms : p->last_punch_ms;
			if (!c) {
				memset(&tmp, 0, sizeof(tmp));
				tmp.sa = *from;
				c = &tmp;
			}
			if ((now - last >= MS_PUNCH_GAP_MS || sock) &&
			    send_ping_on(ms, p, c, sock ? sock : sock_for(p, from), 0) &&
			    c == &tmp)
				p->last_punch_ms = now;
		}
		break;
	}
	case DISCO_PONG:
		on_pong(ms, p, &m, from, sock);
		break;
	case DISCO_CALL_ME_MAYBE:
		ms->st.call_me_maybe_rx++;
		if (from) { /* only meaningful through the relay */
			ms->st.disco_drop_bad++;
			return;
		}
		/* Its NAT kind and address always (a BIRTHDAY right behind it
		 * is checked against them; the reply is rate-limited there);
		 * one round of pings per MS_PING_ALL_MS however often it asks. */
		bd_on_call_me_maybe(ms, p, &m);
		if (p->last_cmm_rx_ms && now - p->last_cmm_rx_ms < MS_PING_ALL_MS) {
			ms->st.disco_drop_rate++;
			return;
		}
		p->last_cmm_rx_ms = now;
		if (now < p->cmm_next_ms) {
			ms->st.disco_drop_rate++; /* backing off (cmm_schedule) */
			break;
		}
		for (size_t i = 0; i < m.n_eps; i++) {
			struct sockaddr_storage ss;
			if (disco_addr_to_sockaddr(&m.eps[i], &ss) && cand_ok_learned(ms, &ss))
				add_candidate(p, &ss);
		}
		if (!(p->has_best && p->trust_until_ms > now) && ping_all(ms, p, false))
			cmm_schedule(p, now);
		break;
	case DISCO_BIRTHDAY:
		if (from) { /* only meaningful through the relay */
			ms->st.disco_drop_bad++;
			return;
		}
		bd_on_request(ms, p, &m);
		break;
	default:
		ms->st.disco_drop_bad++;
	}
}

static void conn_on_packet(void *ctx, struct relay_client *c, const uint8_t *src_key,
                           const uint8_t *data, size_t len)
{
	struct ms_conn *k = ctx;
	struct magicsock *ms = k->ms;
	k->last_use_ms = now_ms();
	struct ms_peer *p = peer_by_key(ms, src_key);
	if (p && p->heard_relay_id != k->info.id) {
		/* the relay vouches for the sender's key: answer through it */
		p->heard_relay_id = k->info.id;
		p->heard_ms = k->last_use_ms;
		p->gone_until_ms = 0;
		push_path(ms, p);
	} else if (p) {
		p->heard_ms = k->last_use_ms;
	}
	if (disco_is_message(data, len)) {
		on_disco(ms, data, len, NULL, src_key, 0);
		return;
	}
	if (!p)
		ms->st.relay_rx_unknown++; /* the device drops what it cannot open */
	wg_device_receive_relayed(ms->cfg.wg, src_key, data, len);
}

/* ---- magicsock_ping: probes for `mesh-proxy ping --disco` ---- */

static struct ms_probe **probe_slot(struct magicsock *ms, uint32_t id)
{
	struct ms_probe **pp = &ms->probes;
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* Unlinks and frees probe id after telling its owner r (r NULL: silently). */
static void probe_end(struct magicsock *ms, uint32_t id, const struct magicsock_pong *r)
{
	struct ms_probe **pp = probe_slot(ms, id), *pr = *pp;
	if (!pr)
		return;
	*pp = pr->next;
	magicsock_pong_fn fn = pr->fn;
	void *ctx = pr->ctx;
	event_free(pr->timer);
	free(pr);
	if (r)
		fn(ctx, r);
}

static void probe_answer(struct magicsock *ms, uint32_t id, struct ms_peer *p,
                         const struct sockaddr_storage *from, uint32_t lat,
                         const struct disco_msg *m)
{
	struct magicsock_pong r;
	memset(&r, 0, sizeof(r));
	r.latency_us = lat;
	if (from) {
		r.path = MS_PATH_DIRECT;
		r.from = *from;
		(void)disco_addr_to_sockaddr(&m->src, &r.seen_as);
	} else {
		r.path = MS_PATH_RELAY;
		struct ms_conn *k = conn_for(ms, p, false);
		if (k) {
			r.relay_id = k->info.id;
			snprintf(r.relay_region, sizeof(r.relay_region), "%s", k->info.region);
			snprintf(r.relay_name, sizeof(r.relay_name), "%s", k->info.name);
		}
	}
	probe_end(ms, id, &r);
}

static void probe_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct ms_probe *pr = arg;
	struct magicsock_pong r;
	memset(&r, 0, sizeof(r));
	r.err = -ETIMEDOUT;
	probe_end(pr->ms, pr->id, &r);
}

static void send_cmm(struct magicsock *ms, struct ms_peer *p);

/* A ping to `to` (NULL: through the relay) from socket sock that went out
 * less than MS_CAND_GAP_MS ago and is not answered yet answers probe id
 * now: a probe every 100 ms re-sends nothing then, so the pings of one
 * probe never push out those of the one before, whose answers may simply
 * be slower than the relay's. */
static bool probe_adopt(struct ms_peer *p, const struct sockaddr_storage *to, uint32_t sock,
                        uint32_t id)
{
	int64_t now = now_us();
	for (size_t i = 0; i < MS_PINGS_MAX; i++) {
		struct ms_ping *pg = &p->ping[i];
		if (pg->sent_us && now - pg->sent_us < (int64_t)MS_CAND_GAP_MS * 1000 &&
		    pg->sock == sock &&
		    (to ? sockaddr_equal(&pg->to, to) : pg->to.ss_family == 0)) {
			pg->probe = id;
			return true;
		}
	}
	return false;
}

int magicsock_ping(struct magicsock *ms, const uint8_t key[32], uint32_t timeout_ms,
                   magicsock_pong_fn fn, void *ctx)
{
	struct ms_peer *p = peer_by_key(ms, key);
	if (!p)
		return -ENOENT;
	if (!p->shared_ok)
		return -EINVAL;
	struct ms_probe *pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pr->timer = evtimer_new(ms->cfg.base, probe_timeout, pr);
	if (!pr->timer) {
		free(pr);
		return -ENOMEM;
	}
	pr->ms = ms;
	pr->id = ++ms->next_probe ? ms->next_probe : ++ms->next_probe;
	memcpy(pr->key, key, 32);
	pr->fn = fn;
	pr->ctx = ctx;
	int64_t now = now_ms();
	bool sent = false;
	if (p->has_best && p->trust_until_ms > now) {
		/* A trusted direct path: that is the one to measure. */
		sent = send_ping(ms, p, add_candidate(p, &p->best), pr->id);
	} else {
		/* As a send with no trusted path does, and through the relay
		 * too, so the answer says which way the peer is reached now. */
		for (size_t i = 0; i < p->n_cand; i++) {
			struct ms_cand *c = &p->cand[i];
			if (!cand_ok(&c->sa))
				continue;
			if (probe_adopt(p, &c->sa, sock_for(p, &c->sa), pr->id))
				sent = true;
			else if (now - c->last_ping_ms >= MS_PUNCH_GAP_MS)
				sent |= send_ping(ms, p, c, pr->id);
		}
		struct ms_conn *k = conn_for(ms, p, true);
		if (k && relay_client_connected(k->c) && p->gone_until_ms <= now)
			sent |= probe_adopt(p, NULL, 0, pr->id) ||
			        send_ping(ms, p, NULL, pr->id);
		/* and ask the peer to punch towards us (at most every 5 s: an
		 * explicit probe does not wait for the backoff, and does not
		 * move it either: the diagnostic leaves alone what it
		 * measures) */
		if (now - p->last_cmm_ms >= MS_PING_ALL_MS)
			send_cmm(ms, p);
	}
	if (!sent) {
		event_free(pr->timer);
		free(pr);
		return -ENOTCONN;
	}
	pr->next = ms->probes;
	ms->probes = pr;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(pr->timer, &tv);
	return 0;
}

/* ---- the device's hooks ---- */

static int hook_relay_tx(void *ctx, const uint8_t *key, const uint8_t *buf, size_t len)
{
	struct magicsock *ms = ctx;
	struct ms_peer *p = peer_by_key(ms, key);
	if (!p)
		return -ENOENT;
	struct ms_conn *k = conn_for(ms, p, true);
	if (!k)
		return -ENOTCONN;
	k->last_use_ms = now_ms();
	return relay_client_send(k->c, key, buf, len);
}

static void hook_untrusted(void *ctx, const uint8_t *key)
{
	struct magicsock *ms = ctx;
	struct ms_peer *p = peer_by_key(ms, key);
	if (!p)
		return;
	int64_t now = now_ms();
	p->active_ms = now;
	if (!p->punch_since_ms)
		p->punch_since_ms = now; /* birthday probing may follow (bd_tick) */
	/* A peer in another region: its relay connection opens now. */
	struct ms_conn *k = conn_for(ms, p, true);
	if (k)
		k->last_use_ms = now;
	if (retry_due(p, now))
		ping_all(ms, p, true);
}

static void hook_other_rx(void *ctx, const uint8_t *buf, size_t len,
                          const struct sockaddr *src)
{
	struct magicsock *ms = ctx;
	struct sockaddr_storage from;
	memset(&from, 0, sizeof(from));
	memcpy(&from, src, src->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                               : sizeof(struct sockaddr_in));
	if (disco_is_message(buf, len)) {
		on_disco(ms, buf, len, &from, NULL, 0);
	} else if (stun_is_message(buf, len)) {
		if (ms->nc && netcheck_input(ms->nc, buf, len, src))
			ms->st.stun_rx++;
		else
			ms->st.stun_drop++;
	} else {
		ms->st.other_drop++;
	}
}

/* ---- netcheck and the home relay ---- */

static void schedule_netcheck(struct magicsock *ms, uint32_t ms_from_now)
{
	struct timeval tv = {ms_from_now / 1000, (ms_from_now % 1000) * 1000};
	evtimer_add(ms->nc_timer, &tv);
}

static void set_home(struct magicsock *ms, uint32_t id)
{
	if (id == ms->home_id)
		return;
	const struct ctl_relay *r = magicsock_relay(ms, id);
	if (!r)
		return;
	if (!conn_find(ms, id) && ms->n_conns >= MS_CONNS_MAX) {
		/* make room: the least recently used connection that is not home */
		size_t victim = MS_CONNS_MAX;
		for (size_t i = 0; i < ms->n_conns; i++)
			if (ms->conns[i]->info.id != ms->home_id &&
			    (victim == MS_CONNS_MAX ||
			     ms->conns[i]->last_use_ms < ms->conns[victim]->last_use_ms))
				victim = i;
		if (victim != MS_CONNS_MAX)
			conn_close(ms, victim);
	}
	struct ms_conn *k = conn_open(ms, r);
	if (!k)
		return; /* logged; the current home stays */
	struct ms_conn *old = home_conn(ms);
	if (old)
		old->home = false; /* closes when idle */
	ms->home_id = id;
	k->home = true;
	k->last_use_ms = now_ms();
	ms->st.home_changes++;
	log_info("home relay: %s (region %s, %s:%u)", r->name[0] ? r->name : "?", r->region,
	         r->host, r->port);
	push_all_paths(ms);
	if (ms->cfg.on_change)
		ms->cfg.on_change(ms->cfg.ctx);
}

static void netcheck_done(void *ctx, const struct netcheck_report *r)
{
	struct magicsock *ms = ctx;
	struct netcheck_report *keep = ms->report ? ms->report : malloc(sizeof(*keep));
	bool addrs_changed = true;
	if (keep) {
		if (ms->report)
			addrs_changed = !sockaddr_equal(&keep->global_v4, &r->global_v4) ||
			                !sockaddr_equal(&keep->global_v6, &r->global_v6);
		*keep = *r;
		ms->report = keep;
	}
	ms->st.netchecks++;
	/* The netcheck is freed from the loop, after this call returns. */
	uint32_t prev = ms->home_id;
	if (r->home_id)
		set_home(ms, r->home_id);
	else if (!ms->home_id && ms->n_relays)
		/* Nothing answered (UDP blocked and TCP slow?): try the first
		 * relay; its client keeps reconnecting with backoff. */
		set_home(ms, ms->relays[0].id);
	if (addrs_changed)
		retry_reset_all(ms);
	if (addrs_changed && prev == ms->home_id && ms->cfg.on_change)
		ms->cfg.on_change(ms->cfg.ctx);
	schedule_netcheck(ms, MS_NETCHECK_MIN_MS + randombytes_uniform(MS_NETCHECK_JITTER_MS));
}

static int nc_send(void *ctx, const struct sockaddr *to, socklen_t tolen, const uint8_t *buf,
                   size_t len)
{
	struct magicsock *ms = ctx;
	return wg_device_send_raw(ms->cfg.wg, to, buf, len);
}

static void run_netcheck(evutil_socket_t fd, short ev, void *arg)
{
	struct magicsock *ms = arg;
	netcheck_free(ms->nc);
	ms->nc = NULL;
	if (!ms->n_relays)
		return;
	struct netcheck_relay *nr = calloc(ms->n_relays, sizeof(*nr));
	if (!nr) {
		schedule_netcheck(ms, MS_NETCHECK_MIN_MS);
		return;
	}
	size_t n = 0;
	bool home_avoided = false;
	int64_t now = now_ms();
	for (int pass = 0; pass < 2 && n == 0; pass++) {
		for (size_t i = 0; i < ms->n_relays; i++) {
			const struct ctl_relay *r = &ms->relays[i];
			bool avoided = false;
			for (size_t a = 0; pass == 0 && a < MS_AVOID_MAX; a++)
				avoided |= ms->avoid[a].id == r->id && ms->avoid[a].until_ms > now;
			if (avoided) {
				home_avoided |= r->id == ms->home_id;
				continue; /* (all avoided: the second pass takes them all) */
			}
			nr[n].id = r->id;
			snprintf(nr[n].region, sizeof(nr[n].region), "%s", r->region);
			snprintf(nr[n].host, sizeof(nr[n].host), "%s", r->host);
			snprintf(nr[n].name, sizeof(nr[n].name), "%s", r->name);
			nr[n].port = r->port;
			nr[n].stun_port = r->stun_port;
			nr[n].tls = r->tls;
			n++;
		}
	}
	struct netcheck_config nc = {
	    .base = ms->cfg.base,
	    .dns = ms->cfg.dns,
	    .relays = nr,
	    .n_relays = n,
	    .send = nc_send,
	    .send_ctx = ms,
	    .timeout_ms = ms->cfg.netcheck_timeout_ms,
	    .done = netcheck_done,
	    .ctx = ms,
	    .preferred_id = home_avoided ? 0 : ms->home_id,
	};
	char err[160];
	ms->nc = netcheck_start(&nc, err, sizeof(err));
	free(nr);
	if (!ms->nc) {
		log_warn("netcheck: %s", err);
		schedule_netcheck(ms, MS_NETCHECK_MIN_MS);
	}
}

/* ---- birthday probing (the mechanism: birthday.h) ---- */

/* Our NAT kind, as the last netcheck measured it, for CALL_ME_MAYBE;
 * unknown when birthday probing is off here (so no side of it starts). */
static uint8_t our_nat(const struct magicsock *ms)
{
	const struct netcheck_report *r = ms->report;
	if (ms->cfg.no_birthday || !r || !r->has_mapping_varies || r->global_v4.ss_family != AF_INET)
		return DISCO_NAT_UNKNOWN;
	return r->mapping_varies ? DISCO_NAT_HARD : DISCO_NAT_EASY;
}

/* p's direct datagrams and disco to best leave from birthday socket sock
 * from now on (0: from the device's socket again). A socket of the running
 * attempt wins it: the others close now. False: sock could not become a
 * link (it is closed). */
static bool bd_use_link(struct magicsock *ms, struct ms_peer *p, uint32_t sock)
{
	if (p->link) {
		/* The device lets go of the fd before it closes. */
		(void)wg_device_set_peer_sock(ms->cfg.wg, p->key, -1, NULL);
		bd_link_close(ms->bd, p->link);
		p->link = 0;
	}
	if (!sock)
		return true;
	int fd = bd_win(ms->bd, sock, p->key);
	if (fd < 0) {
		log_warn(
		    "birthday probing: a probing socket found a path but cannot be kept "
		    "(%s); the relay carries the peer",
		    fd == -ENOSPC ? "too many birthday links" : "the attempt ended");
		return false;
	}
	p->link = sock;
	(void)wg_device_set_peer_sock(ms->cfg.wg, p->key, fd, &p->best);
	return true;
}

/* ip (its port aside) is where p is: the address mesh-control saw its
 * control connection come from (the map's seen_ip). Not its endpoints,
 * which the peer reports itself, nor the source of its disco by UDP,
 * which a captured PING replayed from anywhere sets: a member could aim
 * our probes (or our 256 pings) at any host with either. */
static bool bd_peer_at(const struct ms_peer *p, const struct sockaddr_storage *ip)
{
	return p->seen_ip.ss_family && sockaddr_ip_equal(&p->seen_ip, ip);
}

static const char bd_no_seen_ip[] =
    "mesh-control does not say where the peer's connection comes from (no seen_ip in "
    "the map: upgrade mesh-control)";

/* The public address a peer's trailer or request names is one we may
 * send to: public unicast IPv4 (bd_target_ok) where the peer is. */
static const char *bd_addr_refusal(const struct magicsock *ms, const struct ms_peer *p,
                                   const struct sockaddr_storage *ip)
{
	bool lo = ms->cfg.birthday_loopback_for_tests && ip->ss_family == AF_INET &&
	          (ntohl(((const struct sockaddr_in *)ip)->sin_addr.s_addr) >> 24) == 127;
	if (!lo && !bd_target_ok(ip))
		return "not a public IPv4 address";
	if (!p->seen_ip.ss_family)
		return bd_no_seen_ip;
	if (!bd_peer_at(p, ip))
		return "not the address mesh-control sees the peer at";
	return NULL;
}

/* The map's seen_ip of p (none: family 0). */
static void bd_seen_from_map(struct ms_peer *p, const struct ctl_peer *cp)
{
	struct ctl_endpoint e = {.family = cp->seen_ip.family};
	memcpy(e.addr, cp->seen_ip.addr, sizeof(e.addr));
	if (e.family == 4 || e.family == 6)
		sa_from_ctl(&p->seen_ip, &e);
	else
		memset(&p->seen_ip, 0, sizeof(p->seen_ip));
}

static void send_cmm(struct magicsock *ms, struct ms_peer *p)
{
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_CALL_ME_MAYBE;
	m.version = 1;
	our_endpoints(ms, &m);
	if (m.n_eps && disco_send(ms, p, NULL, &m) == 0) {
		p->last_cmm_ms = now_ms();
		ms->st.call_me_maybe_tx++;
	}
}

/* A CALL_ME_MAYBE told us p's NAT kind. A hard peer needs ours (and our
 * address) to start probing: an easy node answers with its own
 * CALL_ME_MAYBE, if it sent none lately. */
static void bd_on_call_me_maybe(struct magicsock *ms, struct ms_peer *p,
                                const struct disco_msg *m)
{
	p->nat = DISCO_NAT_UNKNOWN; /* a trailer-less CALL_ME_MAYBE: no more */
	memset(&p->pub, 0, sizeof(p->pub));
	if (m->nat == DISCO_NAT_UNKNOWN)
		return;
	struct sockaddr_storage pub;
	if (!disco_addr_to_sockaddr(&m->pub, &pub))
		return;
	const char *why = bd_addr_refusal(ms, p, &pub);
	if (!why && m->nat == DISCO_NAT_EASY && !((struct sockaddr_in *)&pub)->sin_port)
		why = "no port";
	if (why) {
		bd_refused(ms->bd);
		if (why == bd_no_seen_ip && !p->noseen_logged) {
			p->noseen_logged = true; /* once per peer: it asks every 5 s */
			log_info("birthday probing: not with a peer: %s", why);
		} else {
			log_debug("birthday probing: a peer's public address ignored: %s", why);
		}
		return;
	}
	p->nat = m->nat;
	p->pub = pub;
	int64_t now = now_ms();
	if (p->nat == DISCO_NAT_HARD && our_nat(ms) == DISCO_NAT_EASY &&
	    !(p->has_best && p->trust_until_ms > now) &&
	    now - p->last_cmm_ms >= MS_PING_ALL_MS &&
	    now - p->last_cmm_reply_ms >= MS_PING_ALL_MS) {
		p->last_cmm_reply_ms = now;
		send_cmm(ms, p);
	}
}

/* Starts probing for p: 0, or -EBUSY (another attempt runs). */
static int bd_probe(struct magicsock *ms, struct ms_peer *p, const struct sockaddr_storage *ip,
                    uint32_t probes)
{
	uint8_t txid[DISCO_TXID_LEN];
	randombytes_buf(txid, sizeof(txid));
	int r = bd_easy_start(ms->bd, p->key, ip, probes, txid);
	if (r == 0) {
		char a[INET6_ADDRSTRLEN] = "?";
		inet_ntop(ip->ss_family,
		          ip->ss_family == AF_INET
		              ? (const void *)&((const struct sockaddr_in *)ip)->sin_addr
		              : (const void *)&((const struct sockaddr_in6 *)ip)->sin6_addr,
		          a, sizeof(a));
		log_info("birthday probing: a peer behind a hard NAT asks; probing %s at up to "
		         "%u random ports, %d a second",
		         a, probes < BD_PROBES_MAX ? probes : BD_PROBES_MAX, BD_PROBES_PER_SEC);
	}
	return r;
}

/* The requests that waited for the last attempt to end, in order: the
 * first whose peer's sockets are still open (BD_HARD_MS from its request)
 * starts, with as many probes as fit in what is left of that time. */
static void bd_kick(struct magicsock *ms)
{
	int64_t now = now_ms();
	while (ms->n_bd_queue && !bd_busy(ms->bd)) {
		struct sockaddr_storage ip = ms->bd_queue[0].ip;
		uint8_t key[32];
		memcpy(key, ms->bd_queue[0].key, 32);
		uint32_t probes = ms->bd_queue[0].probes;
		int64_t left = ms->bd_queue[0].at_ms + BD_HARD_MS - 500 - now;
		memmove(&ms->bd_queue[0], &ms->bd_queue[1],
		        (ms->n_bd_queue - 1) * sizeof(ms->bd_queue[0]));
		ms->n_bd_queue--;
		struct ms_peer *p = peer_by_key(ms, key);
		uint64_t fit = left > 0 ? (uint64_t)left * BD_PROBES_PER_SEC / 1000 : 0;
		if (!p || (p->has_best && p->trust_until_ms > now))
			continue; /* gone, or direct another way */
		if (fit < BD_PROBES_MIN ||
		    bd_probe(ms, p, &ip, fit < probes ? (uint32_t)fit : probes) != 0) {
			bd_refused(ms->bd);
			log_debug(
			    "birthday probing: a peer's request waited too long or the "
			    "probe budget is spent; dropped");
		} else {
			bd_backoff_started_min(&p->req_backoff, now, BD_REQ_GAP_MS);
		}
	}
}

/* Easy side: p (hard) opened its sockets and asks us to probe its IP. */
static void bd_on_request(struct magicsock *ms, struct ms_peer *p, const struct disco_msg *m)
{
	int64_t now = now_ms();
	struct sockaddr_storage ip;
	const char *why = NULL;
	if (ms->cfg.no_birthday)
		why = "birthday probing is off here (--no-birthday or BirthdayProbing = no)";
	else if (our_nat(ms) != DISCO_NAT_EASY)
		why = "our NAT is not endpoint-independent";
	else if (p->has_best && p->trust_until_ms > now)
		why = "a direct path works";
	else if (p->nat != DISCO_NAT_HARD)
		why = "the peer did not say its NAT is hard";
	else if (!disco_addr_to_sockaddr(&m->pub, &ip) || !m->probes)
		why = "no address or no probes";
	else if (!sockaddr_ip_equal(&ip, &p->pub))
		why = "not the public address the peer advertised";
	else
		why = bd_addr_refusal(ms, p, &ip);
	if (!why && !bd_backoff_allows(&p->req_backoff, now))
		why = "asked again too soon";
	if (why) {
		bd_refused(ms->bd);
		log_debug("birthday probing: a peer's request refused: %s", why);
		return;
	}
	/* An attempt for it once per BD_REQ_GAP_MS, the gap doubling while
	 * none wins: counted from when one starts (here or from the queue),
	 * so a request that is refused or dropped costs it nothing. */
	int r = bd_probe(ms, p, &ip, m->probes);
	if (r == 0)
		bd_backoff_started_min(&p->req_backoff, now, BD_REQ_GAP_MS);
	if (r == -EBUSY) {
		/* Another runs: this one after those before it, if its time has
		 * not run out; a peer's newer request replaces its older one. */
		size_t i = 0;
		while (i < ms->n_bd_queue && memcmp(ms->bd_queue[i].key, p->key, 32) != 0)
			i++;
		if (i == MS_BD_QUEUE_MAX) {
			bd_refused(ms->bd);
			log_debug("birthday probing: a peer's request refused: %zu wait "
			          "already",
			          ms->n_bd_queue);
			return;
		}
		if (i == ms->n_bd_queue)
			ms->n_bd_queue++;
		memcpy(ms->bd_queue[i].key, p->key, 32);
		ms->bd_queue[i].ip = ip;
		ms->bd_queue[i].probes = m->probes;
		ms->bd_queue[i].at_ms = now;
		log_debug("birthday probing: a peer's request waits for the running attempt");
	} else if (r != 0) {
		bd_refused(ms->bd);
		log_info("birthday probing: a peer's request refused: the budget of %d "
		         "probes a minute (%d for one peer) is spent",
		         BD_BUDGET_PROBES, BD_BUDGET_PEER);
	}
}

/* Hard side, each tick: start an attempt for p when plain punching found
 * nothing for BD_AFTER_MS while traffic flows through the relay, the pair
 * is hard (us) and easy (it), and its backoff allows; and close a won
 * socket whose path died. */
static void bd_tick(struct magicsock *ms, struct ms_peer *p, int64_t now)
{
	bool trusted = p->has_best && p->trust_until_ms > now;
	if (p->link && !trusted && now - p->trust_until_ms >= BD_LINK_DEAD_MS) {
		log_info("birthday probing: the path through our probing socket died; closed");
		bd_use_link(ms, p, 0);
		push_path(ms, p);
	}
	if (trusted)
		bd_cancel(ms->bd, p->key); /* found another way */
	if (trusted || now - p->active_ms > MS_ACTIVE_MS) {
		p->punch_since_ms = 0;
		return;
	}
	if (!p->punch_since_ms || now - p->punch_since_ms < BD_AFTER_MS ||
	    our_nat(ms) != DISCO_NAT_HARD || p->nat != DISCO_NAT_EASY ||
	    p->pub.ss_family != AF_INET || bd_busy(ms->bd) ||
	    !bd_backoff_allows(&p->backoff, now) ||
	    bd_addr_refusal(ms, p, &p->pub) != NULL)
		return;
	struct ms_conn *k = conn_for(ms, p, false);
	if (!k || !relay_client_connected(k->c) || p->gone_until_ms > now)
		return; /* only for a peer the relay carries */
	bd_backoff_started(&p->backoff, now);
	char err[128], a[64];
	int n = bd_hard_start(ms->bd, p->key, &p->pub, BD_SOCKS, err, sizeof(err));
	if (n < 0) {
		log_warn("birthday probing: %s", err);
		return;
	}
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_BIRTHDAY;
	m.version = 1;
	m.socks = (uint16_t)n;
	m.probes = BD_PROBES_MAX;
	/* Our CALL_ME_MAYBE first, on the same relay connection: the easy side
	 * probes only the address our latest trailer advertised as hard. */
	send_cmm(ms, p);
	if (!disco_addr_from_sockaddr(&m.pub, (const struct sockaddr *)&ms->report->global_v4) ||
	    disco_send_on(ms, p, 0, NULL, &m) != 0) {
		bd_cancel(ms->bd, p->key);
		return;
	}
	sockaddr_format(&p->pub, a, sizeof(a));
	log_info("birthday probing: no direct path after %d ms of punching; %d sockets sent "
	         "to the peer at %s, asked it to probe our ports",
	         BD_AFTER_MS, n, a);
}

static void bd_rx(void *ctx, uint32_t sock, bool link, const uint8_t *buf, size_t len,
                  const struct sockaddr_storage *from)
{
	struct magicsock *ms = ctx;
	if (disco_is_message(buf, len))
		on_disco(ms, buf, len, from, NULL, sock);
	else if (link)
		wg_device_receive_side(ms->cfg.wg, buf, len, (const struct sockaddr *)from);
	else
		ms->st.other_drop++;
}

static int bd_ping(void *ctx, const uint8_t key[32], uint32_t sock, const uint8_t txid[12],
                   const struct sockaddr_storage *to)
{
	struct magicsock *ms = ctx;
	struct ms_peer *p = peer_by_key(ms, key);
	if (!p)
		return -ENOENT;
	struct disco_msg m;
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PING;
	m.version = 1;
	if (txid)
		memcpy(m.txid, txid, sizeof(m.txid));
	else
		randombytes_buf(m.txid, sizeof(m.txid));
	memcpy(m.node_key, ms->cfg.node_pub, 32);
	return disco_send_on(ms, p, sock, to, &m);
}

static void bd_ended(void *ctx, const uint8_t key[32], bool hard)
{
	struct magicsock *ms = ctx;
	struct ms_peer *p = peer_by_key(ms, key);
	if (hard && p)
		log_info("birthday probing: no probe got through; sockets closed, next try in "
		         "%lld s at the earliest",
		         (long long)((p->backoff.next_ms - now_ms()) / 1000));
	else if (!hard)
		log_info("birthday probing: all probes sent, none answered");
	bd_kick(ms);
}

/* ---- the tick: heartbeats, idle relay connections ---- */

/* A direct path whose trust ran out: the device sends through the relay
 * from that moment, so the owner hears of it then, not at the next tick
 * (TCP connections stalled on the dead path wait for it). */
static void on_trust_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct magicsock *ms = arg;
	int64_t now = now_ms();
	struct wg_peer_info pi;
	for (size_t i = 0; i < ms->n_peers; i++) {
		struct ms_peer *p = ms->by_key[i];
		if (p->path_seen == 1 && p->has_best && p->trust_until_ms <= now &&
		    wg_device_peer_info_by_key(ms->cfg.wg, p->key, &pi) == 0)
			path_note(ms, p, &pi);
	}
}

/* Arms trust_timer for the first direct path told to the owner whose
 * trust runs out before the next tick (none while pongs come: a
 * heartbeat renews the trust long before). */
static void arm_trust_timer(struct magicsock *ms, int64_t now)
{
	int64_t first = 0;
	if (!ms->cfg.on_path)
		return;
	for (size_t i = 0; i < ms->n_peers; i++) {
		struct ms_peer *p = ms->by_key[i];
		int64_t t = p->trust_until_ms;
		if (p->path_seen == 1 && p->has_best && t > now && t <= now + 1000 &&
		    (!first || t < first))
			first = t;
	}
	if (first) {
		int64_t d = first - now + 2; /* the device's deadline, rounded */
		struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};
		evtimer_add(ms->trust_timer, &tv);
	}
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct magicsock *ms = arg;
	int64_t now = now_ms();
	for (size_t i = 0; i < ms->n_peers; i++) {
		struct ms_peer *p = ms->by_key[i];
		/* A relay's "not here" has run out: through it again. */
		if (p->gone_until_ms && p->gone_until_ms <= now) {
			p->gone_until_ms = 0;
			push_path(ms, p);
		}
		bd_tick(ms, p, now);
		bd_kick(ms);
		if (!p->has_best)
			continue;
		struct wg_peer_info pi;
		if (wg_device_peer_info_by_key(ms->cfg.wg, p->key, &pi) != 0)
			continue;
		path_note(ms, p, &pi); /* trust that ran out, roaming */
		uint64_t bytes = pi.rx_bytes + pi.tx_bytes;
		if (bytes != p->seen_bytes) {
			p->seen_bytes = bytes;
			p->active_ms = now;
		}
		if (now - p->active_ms > MS_ACTIVE_MS)
			continue; /* idle: no heartbeats; the next send re-validates */
		if (now - p->last_heartbeat_ms >= MS_HEARTBEAT_MS) {
			p->last_heartbeat_ms = now;
			struct ms_cand *c = add_candidate(p, &p->best);
			send_ping(ms, p, c, 0);
		}
		/* Now and then every other candidate too: a better path (a LAN
		 * that appeared) is found while this one works. */
		if (now - p->last_ping_all_ms >= MS_UPGRADE_MS)
			ping_all(ms, p, false);
		/* Trust ran out (pongs stopped): look for a path again. */
		if (p->trust_until_ms <= now && retry_due(p, now))
			ping_all(ms, p, true);
	}
	arm_trust_timer(ms, now);
	struct ms_conn *hk = home_conn(ms);
	if (hk && hk->down_since_ms && !hk->avoided &&
	    now - hk->down_since_ms >= MS_HOME_DOWN_MS) {
		/* The home relay cannot be used: measure again without it. */
		size_t slot = 0;
		for (size_t i = 1; i < MS_AVOID_MAX; i++)
			if (ms->avoid[i].until_ms < ms->avoid[slot].until_ms)
				slot = i;
		ms->avoid[slot].id = hk->info.id;
		ms->avoid[slot].until_ms = now + MS_AVOID_MS;
		hk->avoided = true;
		log_warn("home relay %s (%s:%u) unusable for %d s; looking for another",
		         hk->info.name[0] ? hk->info.name : "?", hk->info.host, hk->info.port,
		         MS_HOME_DOWN_MS / 1000);
		schedule_netcheck(ms, 0);
	}
	for (size_t i = 0; i < ms->n_conns;) {
		struct ms_conn *k = ms->conns[i];
		if (!k->home && k->info.id != ms->home_id &&
		    now - k->last_use_ms > MS_RELAY_IDLE_MS) {
			log_info("relay %s:%u: idle, closed", k->info.host, k->info.port);
			conn_close(ms, i);
			push_all_paths(ms);
			continue;
		}
		i++;
	}
}

/* ---- the map ---- */

static bool relays_equal(const struct ctl_relay *a, size_t na, const struct ctl_relay *b,
                         size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].id != b[i].id || a[i].port != b[i].port ||
		    a[i].stun_port != b[i].stun_port || a[i].tls != b[i].tls ||
		    a[i].has_key != b[i].has_key || memcmp(a[i].key, b[i].key, 32) != 0 ||
		    strcmp(a[i].host, b[i].host) != 0 || strcmp(a[i].region, b[i].region) != 0)
			return false;
	return true;
}

/* 1 when the list changed (connections to relays that left or changed
 * are closed: the caller refreshes the paths through them), 0 when not,
 * -ENOMEM. */
static int set_relays(struct magicsock *ms, const struct ctl_relay *r, size_t n)
{
	if (relays_equal(ms->relays, ms->n_relays, r, n)) {
		/* names may change without mattering to connections */
		for (size_t i = 0; i < n; i++)
			ms->relays[i] = r[i];
		return 0;
	}
	struct ctl_relay *copy = NULL;
	if (n) {
		copy = calloc(n, sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, r, n * sizeof(*copy));
	}
	free(ms->relays);
	ms->relays = copy;
	ms->n_relays = n;
	/* Connections to relays that left or changed close. */
	for (size_t i = 0; i < ms->n_conns;) {
		const struct ctl_relay *now = magicsock_relay(ms, ms->conns[i]->info.id);
		if (!now || !relays_equal(now, 1, &ms->conns[i]->info, 1)) {
			if (ms->conns[i]->info.id == ms->home_id)
				ms->home_id = 0;
			conn_close(ms, i);
			continue;
		}
		i++;
	}
	log_info("relay map: %zu relay(s)", n);
	schedule_netcheck(ms, 0); /* a new map: measure now */
	/* No home yet: connect to the first relay now, so a node whose UDP is
	 * blocked (netcheck then waits for its STUN timeout and times TCP)
	 * is reachable at once; netcheck moves the home if another is nearer. */
	if (!ms->home_id && n)
		set_home(ms, ms->relays[0].id);
	return 1;
}

/* The peer with this key left the map or restarted (new disco key): its
 * running attempt ends without a callback and its queued request goes (it
 * was checked against the instance that asked). */
static void bd_forget(struct magicsock *ms, const uint8_t *key)
{
	if (ms->bd)
		bd_cancel(ms->bd, key);
	size_t k = 0;
	for (size_t i = 0; i < ms->n_bd_queue; i++)
		if (memcmp(ms->bd_queue[i].key, key, 32) != 0)
			ms->bd_queue[k++] = ms->bd_queue[i];
	ms->n_bd_queue = k;
}

/* A map entry into a peer: disco key (and the shared secret when it
 * changed), home relay, the map's endpoints as the first candidates (what
 * was learned about them kept), then the learned ones that still fit. */
static bool sa_in(const struct ms_cand *c, size_t n, const struct sockaddr_storage *sa)
{
	for (size_t i = 0; i < n; i++)
		if (sockaddr_equal(&c[i].sa, sa))
			return true;
	return false;
}

/* See the caller: the last pong from best within a heartbeat (and a
 * little) keeps one heartbeat of trust; an older one none. */
static void trust_shorten(struct ms_peer *p, const struct ms_cand *old, size_t nold)
{
	int64_t now = now_ms(), last = 0;
	for (size_t k = 0; k < nold; k++)
		if (sockaddr_equal(&old[k].sa, &p->best))
			last = old[k].last_pong_ms;
	if (last && now - last <= MS_HEARTBEAT_MS + MS_CAND_GAP_MS) {
		if (p->trust_until_ms > now + MS_HEARTBEAT_MS)
			p->trust_until_ms = now + MS_HEARTBEAT_MS;
	} else {
		p->trust_until_ms = 0;
	}
}

static void peer_from_map(struct magicsock *ms, struct ms_peer *p,
                          const struct ctl_peer *cp)
{
	if (!p->shared_ok || memcmp(p->disco_key, cp->disco_key, 32) != 0) {
		memcpy(p->disco_key, cp->disco_key, 32);
		p->shared_ok =
		    disco_shared(p->shared, cp->disco_key, ms->cfg.disco_priv) == 0;
		memset(p->ping, 0, sizeof(p->ping));
		retry_reset(p);
		/* A new peer, or one that restarted: what an instance before
		 * said of its NAT or asked us is not this one's word. */
		bd_forget(ms, p->key);
		p->nat = DISCO_NAT_UNKNOWN;
		memset(&p->pub, 0, sizeof(p->pub));
	}
	p->home_relay = cp->home_relay;
	bd_seen_from_map(p, cp);
	/* Map candidates first, then the learned ones that still fit. */
	struct ms_cand learned[MS_LEARNED_MAX];
	size_t nl = 0;
	for (size_t j = p->n_map_cand; j < p->n_cand && nl < MS_LEARNED_MAX; j++)
		learned[nl++] = p->cand[j];
	struct ms_cand old[MS_CANDS_MAX];
	size_t nold = p->n_map_cand;
	memcpy(old, p->cand, nold * sizeof(old[0]));
	p->n_cand = 0;
	for (size_t j = 0; j < cp->n_eps && p->n_cand < CTL_ENDPOINTS_MAX; j++) {
		struct ms_cand c;
		memset(&c, 0, sizeof(c));
		sa_from_ctl(&c.sa, &cp->eps[j]);
		for (size_t k = 0; k < nold; k++)
			if (sockaddr_equal(&old[k].sa, &c.sa))
				c = old[k];
		p->cand[p->n_cand++] = c;
	}
	p->n_map_cand = p->n_cand;
	bool eps_changed = nold != p->n_map_cand;
	for (size_t j = 0; j < nold && !eps_changed; j++)
		eps_changed = !sockaddr_equal(&old[j].sa, &p->cand[j].sa);
	if (eps_changed)
		retry_reset(p); /* new endpoints: try them now */
	/* The peer no longer lists the address disco validated (its address
	 * changed: a new pod address, another network): stop trusting it, or
	 * push_path would take the device back to it from the address the
	 * peer's handshakes now come from (roaming) until the trust ran out.
	 * But a list can be cut (15 endpoints) or stale: while pongs still
	 * come from that address, it is shortened to one heartbeat (the next
	 * pong renews it, a peer that left lets it run out within seconds). */
	if (eps_changed && p->has_best && !p->link &&
	    sa_in(old, nold, &p->best) && !sa_in(p->cand, p->n_map_cand, &p->best))
		trust_shorten(p, old, nold);
	/* The peer moved (its public IP is no longer where control sees it;
	 * a symmetric NAT's ports change all the time, its IP does not): what
	 * it said of its NAT is stale until its next CALL_ME_MAYBE. */
	if (p->nat != DISCO_NAT_UNKNOWN && bd_addr_refusal(ms, p, &p->pub)) {
		p->nat = DISCO_NAT_UNKNOWN;
		memset(&p->pub, 0, sizeof(p->pub));
	}
	for (size_t j = 0; j < nl && p->n_cand < MS_CANDS_MAX; j++) {
		bool seen = false;
		for (size_t k = 0; k < p->n_cand; k++)
			seen |= sockaddr_equal(&p->cand[k].sa, &learned[j].sa);
		if (!seen)
			p->cand[p->n_cand++] = learned[j];
	}
}

/* Position of p in arr (sorted by key, or by disco key where several peers
 * may share one), or n. */
static size_t slot_of(struct ms_peer **arr, size_t n, const struct ms_peer *p, bool disco)
{
	const uint8_t *k = disco ? p->disco_key : p->key;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(disco ? arr[mid]->disco_key : arr[mid]->key, k, 32) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && memcmp(disco ? arr[lo]->disco_key : arr[lo]->key, k, 32) == 0;
	     lo++)
		if (arr[lo] == p)
			return lo;
	return n;
}

static void slot_remove(struct ms_peer **arr, size_t n, size_t i)
{
	memmove(&arr[i], &arr[i + 1], (n - i - 1) * sizeof(*arr));
}

/* Inserts p into arr[0..n) (room for one more) at its sorted place. */
static void slot_insert(struct ms_peer **arr, size_t n, struct ms_peer *p, bool disco)
{
	const uint8_t *k = disco ? p->disco_key : p->key;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(disco ? arr[mid]->disco_key : arr[mid]->key, k, 32) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&arr[lo + 1], &arr[lo], (n - lo) * sizeof(*arr));
	arr[lo] = p;
}

static bool key_skipped(const struct magicsock *ms, const uint8_t *key)
{
	if (memcmp(key, ms->cfg.node_pub, 32) == 0)
		return true;
	for (size_t j = 0; j < ms->n_skip; j++)
		if (memcmp(key, ms->skip[j], 32) == 0)
			return true;
	return false;
}

int magicsock_update_peers(struct magicsock *ms, const struct ctl_map_full *map,
                           const struct ctl_peer *const *peers, size_t n,
                           const uint8_t (*gone)[32], size_t n_gone)
{
	/* The relays (cheap when unchanged: a delta may carry a new list). */
	int relays = set_relays(ms, map->relays, map->n_relays);
	if (relays < 0)
		return -ENOMEM;
	/* Room first: nothing changes on -ENOMEM. */
	size_t cap = ms->n_peers + n + 1;
	struct ms_peer **nk = realloc(ms->by_key, cap * sizeof(*nk));
	if (nk)
		ms->by_key = nk;
	struct ms_peer **nd = nk ? realloc(ms->by_disco, cap * sizeof(*nd)) : NULL;
	if (nd)
		ms->by_disco = nd;
	if (!nk || !nd)
		return -ENOMEM;
	/* Gone first, unless a peer of this update keeps the key. */
	for (size_t i = 0; i < n_gone; i++) {
		bool kept = false;
		for (size_t j = 0; j < n && !kept; j++)
			kept = memcmp(peers[j]->node_key, gone[i], 32) == 0;
		struct ms_peer *p = kept ? NULL : peer_by_key(ms, gone[i]);
		if (!p)
			continue;
		slot_remove(ms->by_key, ms->n_peers,
		            slot_of(ms->by_key, ms->n_peers, p, false));
		slot_remove(ms->by_disco, ms->n_peers,
		            slot_of(ms->by_disco, ms->n_peers, p, true));
		ms->n_peers--;
		bd_use_link(ms, p, 0);
		bd_forget(ms, p->key);
		sodium_memzero(p, sizeof(*p));
		free(p);
	}
	for (size_t i = 0; i < n; i++) {
		const struct ctl_peer *cp = peers[i];
		if (key_skipped(ms, cp->node_key))
			continue;
		struct ms_peer *p = peer_by_key(ms, cp->node_key);
		if (!p) {
			if (!(p = calloc(1, sizeof(*p))))
				return -ENOMEM; /* the peers before it are in */
			memcpy(p->key, cp->node_key, 32);
			memcpy(p->disco_key, cp->disco_key, 32);
			slot_insert(ms->by_key, ms->n_peers, p, false);
			slot_insert(ms->by_disco, ms->n_peers, p, true);
			ms->n_peers++;
		} else if (memcmp(p->disco_key, cp->disco_key, 32) != 0) {
			/* re-sorted under its new disco key */
			slot_remove(ms->by_disco, ms->n_peers,
			            slot_of(ms->by_disco, ms->n_peers, p, true));
			memcpy(p->disco_key, cp->disco_key, 32);
			p->shared_ok = false;
			slot_insert(ms->by_disco, ms->n_peers - 1, p, true);
		}
		peer_from_map(ms, p, cp);
		p->in_map = true;
		push_path(ms, p);
	}
	/* a relay closed or changed: the peers reached through it, not only
	 * the ones this update names (a relay-only delta names none) */
	if (relays > 0)
		push_all_paths(ms);
	return 0;
}

static int cmp_peer_key_ptr(const void *a, const void *b)
{
	const struct ctl_peer *x = *(const struct ctl_peer *const *)a,
	                      *y = *(const struct ctl_peer *const *)b;
	int c = memcmp(x->node_key, y->node_key, 32);
	return c ? c : (x > y) - (x < y); /* then map order */
}

/* twice[i]: map->peers[i] has the node key of a peer before it in the map
 * (sorted once, O(N log N), instead of comparing every pair). NULL: no
 * memory. */
static bool *map_twice(const struct ctl_map_full *map)
{
	bool *twice = calloc(map->n_peers + 1, sizeof(*twice));
	const struct ctl_peer **ord = calloc(map->n_peers + 1, sizeof(*ord));
	if (!twice || !ord) {
		free(twice);
		free(ord);
		return NULL;
	}
	for (size_t i = 0; i < map->n_peers; i++)
		ord[i] = &map->peers[i];
	qsort(ord, map->n_peers, sizeof(*ord), cmp_peer_key_ptr);
	for (size_t k = 1; k < map->n_peers; k++)
		if (memcmp(ord[k]->node_key, ord[k - 1]->node_key, 32) == 0)
			twice[ord[k] - map->peers] = true;
	free(ord);
	return twice;
}

int magicsock_set_map(struct magicsock *ms, const struct ctl_map_full *map)
{
	if (set_relays(ms, map->relays, map->n_relays) < 0)
		return -ENOMEM;
	struct ms_peer **nk = calloc(map->n_peers + 1, sizeof(*nk));
	struct ms_peer **nd = calloc(map->n_peers + 1, sizeof(*nd));
	bool *twice = map_twice(map);
	if (!nk || !nd || !twice) {
		free(nk);
		free(nd);
		free(twice);
		return -ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < ms->n_peers; i++)
		ms->by_key[i]->in_map = false;
	for (size_t i = 0; i < map->n_peers; i++) {
		const struct ctl_peer *cp = &map->peers[i];
		if (memcmp(cp->node_key, ms->cfg.node_pub, 32) == 0)
			continue;
		bool skip = false;
		for (size_t j = 0; j < ms->n_skip; j++)
			skip |= memcmp(cp->node_key, ms->skip[j], 32) == 0;
		skip |= twice[i]; /* a key listed twice: the first one wins */
		if (skip)
			continue;
		struct ms_peer *p = peer_by_key(ms, cp->node_key);
		if (!p) {
			p = calloc(1, sizeof(*p));
			if (!p) {
				for (size_t j = 0; j < n; j++)
					if (!peer_by_key(ms, nk[j]->key))
						free(nk[j]);
				free(nk);
				free(nd);
				free(twice);
				return -ENOMEM;
			}
			memcpy(p->key, cp->node_key, 32);
		}
		peer_from_map(ms, p, cp);
		p->in_map = true;
		nk[n++] = p;
	}
	free(twice);
	for (size_t i = 0; i < ms->n_peers; i++)
		if (!ms->by_key[i]->in_map) {
			bd_use_link(ms, ms->by_key[i], 0);
			bd_forget(ms, ms->by_key[i]->key);
			sodium_memzero(ms->by_key[i], sizeof(*ms->by_key[i]));
			free(ms->by_key[i]);
		}
	free(ms->by_key);
	free(ms->by_disco);
	qsort(nk, n, sizeof(*nk), cmp_key);
	memcpy(nd, nk, n * sizeof(*nd));
	qsort(nd, n, sizeof(*nd), cmp_disco);
	ms->by_key = nk;
	ms->by_disco = nd;
	ms->n_peers = n;
	push_all_paths(ms);
	return 0;
}

static void retry_reset_all(struct magicsock *ms)
{
	for (size_t i = 0; i < ms->n_peers; i++)
		retry_reset(ms->by_key[i]);
}

void magicsock_set_local_endpoints(struct magicsock *ms, const struct ctl_endpoints *eps)
{
	bool same = ms->local_eps.n == eps->n;
	for (size_t i = 0; same && i < eps->n; i++)
		same = ms->local_eps.ep[i].family == eps->ep[i].family &&
		       ms->local_eps.ep[i].port == eps->ep[i].port &&
		       memcmp(ms->local_eps.ep[i].addr, eps->ep[i].addr, 16) == 0;
	ms->local_eps = *eps;
	if (!same)
		retry_reset_all(ms); /* ours moved: a direct path may work now */
}

/* An address we announced is gone (a new pod address, another network).
 * Every direct path was validated from the old network: a pong that came
 * to an address we no longer have says nothing of the new one, and the
 * peer's NAT may map us elsewhere now. So no trust is kept: the relay
 * carries the packets until a pong validates a path again (the next tick
 * probes, the retry gaps reset), and the network is measured again soon
 * (new public address, maybe another home), not at once: a fleet that
 * changed network together does not STUN in step. */
void magicsock_network_changed(struct magicsock *ms)
{
	if (!ms)
		return;
	for (size_t i = 0; i < ms->n_peers; i++) {
		struct ms_peer *p = ms->by_key[i];
		p->trust_until_ms = 0;
		push_path(ms, p);
	}
	retry_reset_all(ms);
	if (ms->n_relays)
		schedule_netcheck(ms,
		                  randombytes_uniform(MS_NETCHG_NETCHECK_SPREAD_MS + 1));
}

size_t magicsock_redial_relays(struct magicsock *ms, magicsock_lost_fn lost, void *ctx)
{
	size_t n = 0;
	if (!ms)
		return 0;
	for (size_t i = 0; i < ms->n_conns; i++) {
		struct sockaddr_storage ss;
		if (relay_client_local_addr(ms->conns[i]->c, &ss) == 0 &&
		    lost(ctx, &ss)) {
			relay_client_redial(ms->conns[i]->c);
			n++;
		}
	}
	return n;
}

/* ---- life ---- */

struct magicsock *magicsock_new(const struct magicsock_config *cfg, char *err,
                                size_t errlen)
{
	struct magicsock *ms = calloc(1, sizeof(*ms));
	if (!ms) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ms->cfg = *cfg;
	ms->cfg.skip_keys = NULL;
	if (cfg->n_skip_keys) {
		ms->skip = calloc(cfg->n_skip_keys, 32);
		if (!ms->skip) {
			snprintf(err, errlen, "out of memory");
			free(ms);
			return NULL;
		}
		memcpy(ms->skip, cfg->skip_keys, cfg->n_skip_keys * 32);
		ms->n_skip = cfg->n_skip_keys;
	}
	if (!ms->cfg.netcheck_timeout_ms)
		ms->cfg.netcheck_timeout_ms = 3000;
	ms->tick = event_new(cfg->base, -1, EV_PERSIST, on_tick, ms);
	ms->nc_timer = evtimer_new(cfg->base, run_netcheck, ms);
	ms->trust_timer = evtimer_new(cfg->base, on_trust_timer, ms);
	if (!ms->tick || !ms->nc_timer || !ms->trust_timer) {
		snprintf(err, errlen, "out of memory");
		magicsock_free(ms);
		return NULL;
	}
	const struct bd_ops bo = {.rx = bd_rx, .ping = bd_ping, .ended = bd_ended, .ctx = ms};
	ms->bd = bd_new(cfg->base, &bo);
	if (!ms->bd) {
		snprintf(err, errlen, "out of memory");
		magicsock_free(ms);
		return NULL;
	}
	struct timeval sec = {1, 0};
	event_add(ms->tick, &sec);
	struct wg_path_hooks h = {
	    .relay_tx = hook_relay_tx,
	    .untrusted = hook_untrusted,
	    .other_rx = hook_other_rx,
	    .ctx = ms,
	};
	wg_device_set_path_hooks(cfg->wg, &h);
	return ms;
}

void magicsock_free(struct magicsock *ms)
{
	if (!ms)
		return;
	if (ms->cfg.wg)
		wg_device_set_path_hooks(ms->cfg.wg, NULL);
	while (ms->probes) {
		struct magicsock_pong r = {.err = -ECANCELED};
		probe_end(ms, ms->probes->id, &r);
	}
	netcheck_free(ms->nc);
	while (ms->n_conns)
		conn_close(ms, ms->n_conns - 1);
	for (size_t i = 0; ms->bd && i < ms->n_peers; i++)
		bd_use_link(ms, ms->by_key[i], 0);
	bd_free(ms->bd);
	for (size_t i = 0; i < ms->n_peers; i++) {
		sodium_memzero(ms->by_key[i], sizeof(*ms->by_key[i]));
		free(ms->by_key[i]);
	}
	free(ms->by_key);
	free(ms->by_disco);
	free(ms->relays);
	free(ms->report);
	free(ms->skip);
	if (ms->tick)
		event_free(ms->tick);
	if (ms->nc_timer)
		event_free(ms->nc_timer);
	if (ms->trust_timer)
		event_free(ms->trust_timer);
	sodium_memzero(ms, sizeof(*ms));
	free(ms);
}

/* ---- status ---- */

uint32_t magicsock_home(const struct magicsock *ms)
{
	return ms->home_id;
}

void magicsock_public_addrs(const struct magicsock *ms, struct sockaddr_storage *v4,
                            struct sockaddr_storage *v6)
{
	memset(v4, 0, sizeof(*v4));
	memset(v6, 0, sizeof(*v6));
	if (ms->report) {
		*v4 = ms->report->global_v4;
		*v6 = ms->report->global_v6;
	}
}

int magicsock_peer_path(const struct magicsock *ms, const uint8_t key[32],
                        struct magicsock_peer_path *pp)
{
	memset(pp, 0, sizeof(*pp));
	struct ms_peer *p = peer_by_key(ms, key);
	if (!p)
		return -ENOENT;
	struct wg_peer_info pi;
	if (wg_device_peer_info_by_key(ms->cfg.wg, key, &pi) != 0)
		return -ENOENT;
	pp->trusted = pi.direct_trusted;
	pp->pings_sent = p->pings_sent;
	pp->pongs_received = p->pongs_received;
	pp->n_candidates = (unsigned)p->n_cand;
	pp->seen_src = p->seen_src;
	if (p->has_best) {
		pp->best = p->best;
		pp->latency_us = p->best_lat_us;
		pp->birthday = p->link || p->best_by_probe;
	}
	if (pi.via_relay) {
		struct ms_conn *k = conn_for((struct magicsock *)ms, p, false);
		pp->path = MS_PATH_RELAY;
		if (k) {
			pp->relay_id = k->info.id;
			snprintf(pp->relay_region, sizeof(pp->relay_region), "%s", k->info.region);
		}
	} else if (pi.endpoint.ss_family &&
	           (pi.direct_trusted || (pi.last_direct_rx_ms >= 0 &&
	                                  pi.last_direct_rx_ms < 180 * 1000))) {
		pp->path = MS_PATH_DIRECT;
	}
	return 0;
}

void magicsock_get_stats(const struct magicsock *ms, struct magicsock_stats *st)
{
	*st = ms->st;
	struct bd_stats b;
	bd_get_stats(ms->bd, &b);
	st->birthday_attempts = b.attempts_hard + b.attempts_easy;
	st->birthday_wins = b.wins_hard + b.wins_easy;
	st->birthday_probes_sent = b.probes_sent;
	st->birthday_socks_opened = b.socks_opened;
	st->birthday_refused = b.requests_refused;
}

size_t magicsock_conns(const struct magicsock *ms, struct magicsock_conn_status *cs,
                       struct relay_client_status *rs, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < ms->n_conns && n < max; i++, n++) {
		const struct ms_conn *k = ms->conns[i];
		memset(&cs[n], 0, sizeof(cs[n]));
		cs[n].relay_id = k->info.id;
		cs[n].home = k->info.id == ms->home_id;
		snprintf(cs[n].region, sizeof(cs[n].region), "%s", k->info.region);
		snprintf(cs[n].name, sizeof(cs[n].name), "%s", k->info.name);
		snprintf(cs[n].host, sizeof(cs[n].host), "%s", k->info.host);
		cs[n].port = k->info.port;
		relay_client_get_status(k->c, &rs[n]);
	}
	return n;
}

size_t magicsock_peer_count(const struct magicsock *ms)
{
	return ms->n_peers;
}

size_t magicsock_relay_count(const struct magicsock *ms)
{
	return ms->n_relays;
}

const struct netcheck_report *magicsock_report(const struct magicsock *ms)
{
	return ms->report;
}
