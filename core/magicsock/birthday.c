/* Birthday-paradox port probing: see birthday.h. */
#include "core/magicsock/birthday.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"

/* ---- pure parts ---- */

uint32_t bd_pacer_due(const struct bd_pacer *pc, int64_t now_ms)
{
	if (pc->sent >= pc->max)
		return 0;
	int64_t el = now_ms - pc->start_ms;
	if (el < 0)
		el = 0;
	uint64_t allowed = 1 + (uint64_t)el * pc->rate / 1000;
	if (allowed > pc->max)
		allowed = pc->max;
	return allowed > pc->sent ? (uint32_t)(allowed - pc->sent) : 0;
}

bool bd_backoff_allows(const struct bd_backoff *b, int64_t now_ms)
{
	return now_ms >= b->next_ms;
}

void bd_backoff_started(struct bd_backoff *b, int64_t now_ms)
{
	if (b->gap_ms < BD_BACKOFF_MIN_MS)
		b->gap_ms = BD_BACKOFF_MIN_MS;
	b->next_ms = now_ms + b->gap_ms;
	b->gap_ms =
	    b->gap_ms >= BD_BACKOFF_MAX_MS / 2 ? BD_BACKOFF_MAX_MS : b->gap_ms * 2;
}

void bd_backoff_reset(struct bd_backoff *b)
{
	b->gap_ms = 0;
}

void bd_backoff_started_min(struct bd_backoff *b, int64_t now_ms, uint32_t min_ms)
{
	if (b->gap_ms < min_ms)
		b->gap_ms = min_ms;
	b->next_ms = now_ms + b->gap_ms;
	b->gap_ms =
	    b->gap_ms >= BD_BACKOFF_MAX_MS / 2 ? BD_BACKOFF_MAX_MS : b->gap_ms * 2;
}

bool bd_target_ok(const struct sockaddr_storage *ip)
{
	if (ip->ss_family != AF_INET)
		return false;
	uint32_t a = ntohl(((const struct sockaddr_in *)ip)->sin_addr.s_addr);
	uint8_t a0 = (uint8_t)(a >> 24), a1 = (uint8_t)(a >> 16);
	if (a0 == 0 || a0 == 10 || a0 == 127 || a0 >= 224) /* 224/4, 240/4, bcast */
		return false;
	if (a0 == 172 && (a1 & 0xf0) == 16) /* 172.16/12 */
		return false;
	if (a0 == 192 && a1 == 168) /* 192.168/16 */
		return false;
	if (a0 == 169 && a1 == 254) /* link-local, cloud metadata */
		return false;
	if (a0 == 100 && (a1 & 0xc0) == 64) /* 100.64/10: CGNAT */
		return false;
	return true;
}

uint32_t bd_budget_left(const struct bd_budget *b, int64_t now_ms)
{
	uint64_t used = 0;
	bool free_slot = false;
	for (int i = 0; i < BD_BUDGET_SLOTS; i++) {
		if (b->n[i] && now_ms - b->at_ms[i] < BD_BUDGET_MS)
			used += b->n[i];
		else
			free_slot = true;
	}
	if (!free_slot || used >= BD_BUDGET_PROBES)
		return 0;
	return (uint32_t)(BD_BUDGET_PROBES - used);
}

uint32_t bd_budget_left_for(const struct bd_budget *b, int64_t now_ms,
                            const uint8_t peer[32])
{
	uint32_t left = bd_budget_left(b, now_ms);
	uint64_t mine = 0;
	for (int i = 0; i < BD_BUDGET_SLOTS; i++)
		if (b->n[i] && now_ms - b->at_ms[i] < BD_BUDGET_MS &&
		    memcmp(b->peer[i], peer, 32) == 0)
			mine += b->n[i];
	if (mine >= BD_BUDGET_PEER)
		return 0;
	return left < BD_BUDGET_PEER - mine ? left : (uint32_t)(BD_BUDGET_PEER - mine);
}

void bd_budget_take(struct bd_budget *b, int64_t now_ms, const uint8_t peer[32],
                    uint32_t n)
{
	for (int i = 0; i < BD_BUDGET_SLOTS; i++)
		if (!b->n[i] || now_ms - b->at_ms[i] >= BD_BUDGET_MS) {
			b->at_ms[i] = now_ms;
			b->n[i] = n;
			memcpy(b->peer[i], peer, 32);
			return;
		}
}

void bd_ports_init(struct bd_ports *pp)
{
	memset(pp, 0, sizeof(*pp));
}

bool bd_ports_used(const struct bd_ports *pp, uint16_t port)
{
	return pp->used[port >> 3] & (1u << (port & 7));
}

uint16_t bd_ports_pick(struct bd_ports *pp)
{
	const uint32_t span = 65536 - BD_PORT_MIN;
	if (pp->n >= span)
		return 0;
	/* Random tries while few are used; past half, a random start and the
	 * next free one (the rest of an attempt is bounded by BD_PROBES_MAX
	 * anyway, so this is for the bound's sake only). */
	uint16_t port = 0;
	for (int i = 0; i < 16 && !port; i++) {
		uint16_t c = (uint16_t)(BD_PORT_MIN + randombytes_uniform(span));
		if (!bd_ports_used(pp, c))
			port = c;
	}
	if (!port) {
		uint32_t s = randombytes_uniform(span);
		for (uint32_t i = 0; i < span && !port; i++) {
			uint16_t c = (uint16_t)(BD_PORT_MIN + (s + i) % span);
			if (!bd_ports_used(pp, c))
				port = c;
		}
	}
	pp->used[port >> 3] |= (uint8_t)(1u << (port & 7));
	pp->n++;
	return port;
}

/* ---- sockets ---- */

struct bd_sock {
	struct birthday *bd;
	uint32_t id;
	int fd;
	struct event *ev;
	bool link;
	uint8_t peer[32];
};

#define BD_LINKS_MAX 64 /* won sockets kept at once (one per peer) */

struct birthday {
	struct event_base *base;
	struct bd_ops ops;
	uint32_t next_id;
	/* The running attempt: hard (socks) or easy (probes). */
	bool running, hard;
	uint8_t peer[32];
	int64_t start_ms, end_ms;
	struct event *timer;
	struct bd_sock *socks[BD_SOCKS];
	uint32_t n_socks;
	/* easy */
	struct sockaddr_storage ip;
	uint8_t txid[12];
	struct bd_pacer pacer;
	struct bd_ports *ports;
	uint16_t *probe_port;
	int64_t *probe_us;
	/* won */
	struct bd_sock *links[BD_LINKS_MAX];
	uint32_t n_links;
	struct bd_budget budget;
	struct bd_stats st;
	uint8_t rx_buf[BD_RX_MAX];
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sock_free(struct bd_sock *s)
{
	if (!s)
		return;
	if (s->ev)
		event_free(s->ev);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void sock_readable(evutil_socket_t fd, short ev, void *arg)
{
	struct bd_sock *s = arg;
	struct birthday *bd = s->bd;
	uint32_t id = s->id;
	uint8_t *buf = bd->rx_buf; /* as large as the device's: no truncation */
	/* A few per wake-up: the owner may close this socket from rx. */
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		memset(&from, 0, sizeof(from));
		ssize_t n = recvfrom(fd, buf, BD_RX_MAX, MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		bool link = s->link;
		bd->ops.rx(bd->ops.ctx, id, link, buf, (size_t)n, &from);
		if (bd_fd(bd, id) != fd)
			return; /* closed meanwhile */
	}
}

static struct bd_sock *sock_open(struct birthday *bd, int family, const uint8_t *peer)
{
	struct bd_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->bd = bd;
	s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		free(s);
		return NULL;
	}
	if (family == AF_INET6) {
		int one = 1;
		(void)setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	s->id = ++bd->next_id ? bd->next_id : ++bd->next_id;
	memcpy(s->peer, peer, 32);
	s->ev = event_new(bd->base, s->fd, EV_READ | EV_PERSIST, sock_readable, s);
	if (!s->ev || event_add(s->ev, NULL) != 0) {
		sock_free(s);
		return NULL;
	}
	return s;
}

static struct bd_sock *sock_find(const struct birthday *bd, uint32_t id)
{
	if (!id)
		return NULL;
	for (uint32_t i = 0; bd->running && bd->hard && i < bd->n_socks; i++)
		if (bd->socks[i]->id == id)
			return bd->socks[i];
	for (uint32_t i = 0; i < bd->n_links; i++)
		if (bd->links[i]->id == id)
			return bd->links[i];
	return NULL;
}

int bd_fd(const struct birthday *bd, uint32_t sock)
{
	const struct bd_sock *s = sock_find(bd, sock);
	return s ? s->fd : -1;
}

/* ---- attempts ---- */

static void attempt_clear(struct birthday *bd)
{
	for (uint32_t i = 0; i < bd->n_socks; i++)
		sock_free(bd->socks[i]);
	bd->n_socks = 0;
	free(bd->ports);
	free(bd->probe_port);
	free(bd->probe_us);
	bd->ports = NULL;
	bd->probe_port = NULL;
	bd->probe_us = NULL;
	bd->running = false;
	evtimer_del(bd->timer);
}

static void attempt_end(struct birthday *bd)
{
	uint8_t peer[32];
	bool hard = bd->hard;
	memcpy(peer, bd->peer, 32);
	attempt_clear(bd);
	if (bd->ops.ended)
		bd->ops.ended(bd->ops.ctx, peer, hard);
}

static void arm(struct birthday *bd, uint32_t ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(bd->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct birthday *bd = arg;
	int64_t now = (int64_t)mono_now_ms();
	if (!bd->running)
		return;
	if (bd->hard || now >= bd->end_ms) {
		if (now >= bd->end_ms) {
			attempt_end(bd);
			return;
		}
		arm(bd, (uint32_t)(bd->end_ms - now));
		return;
	}
	uint32_t due = bd_pacer_due(&bd->pacer, now);
	if (due > BD_TICK_BURST)
		due = BD_TICK_BURST; /* after a stall: catch up at a bounded rate */
	for (uint32_t i = 0; i < due && bd->running; i++) {
		uint16_t port = bd_ports_pick(bd->ports);
		if (!port)
			break;
		struct sockaddr_storage to = bd->ip;
		if (to.ss_family == AF_INET)
			((struct sockaddr_in *)&to)->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&to)->sin6_port = htons(port);
		uint32_t k = bd->pacer.sent++;
		bd->probe_port[k] = port;
		bd->probe_us[k] = mono_us();
		if (bd->ops.ping(bd->ops.ctx, bd->peer, 0, bd->txid, &to) == 0)
			bd->st.probes_sent++;
	}
	if (!bd->running)
		return;
	if (bd->pacer.sent >= bd->pacer.max) {
		int64_t until = now + BD_GRACE_MS;
		if (until < bd->end_ms)
			bd->end_ms = until;
		arm(bd, (uint32_t)(bd->end_ms - now));
		return;
	}
	arm(bd, BD_TICK_MS);
}

struct birthday *bd_new(struct event_base *base, const struct bd_ops *ops)
{
	struct birthday *bd = calloc(1, sizeof(*bd));
	if (!bd)
		return NULL;
	bd->base = base;
	bd->ops = *ops;
	bd->timer = evtimer_new(base, on_timer, bd);
	if (!bd->timer) {
		free(bd);
		return NULL;
	}
	return bd;
}

void bd_free(struct birthday *bd)
{
	if (!bd)
		return;
	attempt_clear(bd);
	for (uint32_t i = 0; i < bd->n_links; i++)
		sock_free(bd->links[i]);
	event_free(bd->timer);
	free(bd);
}

bool bd_busy(const struct birthday *bd)
{
	return bd->running;
}

const uint8_t *bd_peer(const struct birthday *bd)
{
	return bd->running ? bd->peer : NULL;
}

int bd_hard_start(struct birthday *bd, const uint8_t peer_key[32],
                  const struct sockaddr_storage *to, uint32_t n, char *err, size_t errlen)
{
	if (bd->running) {
		snprintf(err, errlen, "another attempt is running");
		return -EBUSY;
	}
	if (to->ss_family != AF_INET && to->ss_family != AF_INET6) {
		snprintf(err, errlen, "no public address for the peer");
		return -EINVAL;
	}
	if (n > BD_SOCKS)
		n = BD_SOCKS;
	int first_errno = 0;
	/* Descriptors are handed out lowest first: stop BD_FD_HEADROOM below
	 * the limit, so the proxy's accept() and relay reconnects still get
	 * one while these wait. */
	struct rlimit rl;
	int64_t fd_cap =
	    getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
	        ? (int64_t)rl.rlim_cur - BD_FD_HEADROOM
	        : INT64_MAX;
	bd->n_socks = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct bd_sock *s = sock_open(bd, to->ss_family, peer_key);
		if (!s) {
			first_errno = errno ? errno : ENOMEM;
			break; /* out of descriptors: go with what we have */
		}
		if (s->fd >= fd_cap) {
			sock_free(s);
			first_errno = EMFILE;
			break;
		}
		bd->socks[bd->n_socks++] = s;
	}
	if (!bd->n_socks) {
		snprintf(err, errlen,
		         "cannot open a UDP socket: %s (raise the open-files limit)",
		         strerror(first_errno));
		return -first_errno;
	}
	bd->running = true;
	bd->hard = true;
	memcpy(bd->peer, peer_key, 32);
	bd->start_ms = (int64_t)mono_now_ms();
	bd->end_ms = bd->start_ms + BD_HARD_MS;
	bd->st.attempts_hard++;
	bd->st.socks_opened += bd->n_socks;
	uint32_t opened = bd->n_socks;
	for (uint32_t i = 0; i < bd->n_socks && bd->running; i++)
		(void)bd->ops.ping(bd->ops.ctx, peer_key, bd->socks[i]->id, NULL, to);
	if (bd->running)
		arm(bd, BD_HARD_MS);
	return (int)opened;
}

int bd_send(struct birthday *bd, uint32_t sock, const struct sockaddr_storage *to,
            const uint8_t *buf, size_t len)
{
	struct bd_sock *s = sock_find(bd, sock);
	if (!s)
		return -ENOENT;
	socklen_t sl = to->ss_family == AF_INET ? sizeof(struct sockaddr_in)
	                                        : sizeof(struct sockaddr_in6);
	if (sendto(s->fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)to, sl) < 0)
		return -errno;
	return 0;
}

int bd_win(struct birthday *bd, uint32_t sock, const uint8_t peer_key[32])
{
	if (!bd->running || !bd->hard || memcmp(bd->peer, peer_key, 32) != 0)
		return -ENOENT;
	struct bd_sock *won = NULL;
	for (uint32_t i = 0; i < bd->n_socks; i++)
		if (bd->socks[i]->id == sock) {
			won = bd->socks[i];
			bd->socks[i] = bd->socks[--bd->n_socks];
			break;
		}
	if (!won)
		return -ENOENT;
	/* A link for the same peer already? It gives way (the owner moved
	 * off it before calling). */
	for (uint32_t i = 0; i < bd->n_links; i++)
		if (memcmp(bd->links[i]->peer, peer_key, 32) == 0) {
			sock_free(bd->links[i]);
			bd->links[i] = bd->links[--bd->n_links];
			break;
		}
	if (bd->n_links >= BD_LINKS_MAX) {
		sock_free(won);
		attempt_clear(bd);
		return -ENOSPC;
	}
	won->link = true;
	bd->links[bd->n_links++] = won;
	bd->st.wins_hard++;
	attempt_clear(bd); /* the losers close now */
	return won->fd;
}

void bd_link_close(struct birthday *bd, uint32_t sock)
{
	for (uint32_t i = 0; i < bd->n_links; i++)
		if (bd->links[i]->id == sock) {
			sock_free(bd->links[i]);
			bd->links[i] = bd->links[--bd->n_links];
			return;
		}
}

int bd_easy_start(struct birthday *bd, const uint8_t peer_key[32],
                  const struct sockaddr_storage *ip, uint32_t probes,
                  const uint8_t txid[12])
{
	if (bd->running)
		return -EBUSY;
	if (ip->ss_family != AF_INET && ip->ss_family != AF_INET6)
		return -EINVAL;
	if (probes > BD_PROBES_MAX)
		probes = BD_PROBES_MAX;
	if (!probes)
		return -EINVAL;
	int64_t now = (int64_t)mono_now_ms();
	uint32_t left = bd_budget_left_for(&bd->budget, now, peer_key);
	if (left < BD_PROBES_MIN && left < probes)
		return -EAGAIN;
	if (probes > left)
		probes = left;
	bd->ports = malloc(sizeof(*bd->ports));
	bd->probe_port = calloc(probes, sizeof(*bd->probe_port));
	bd->probe_us = calloc(probes, sizeof(*bd->probe_us));
	if (!bd->ports || !bd->probe_port || !bd->probe_us) {
		attempt_clear(bd);
		return -ENOMEM;
	}
	bd_ports_init(bd->ports);
	bd_budget_take(&bd->budget, now, peer_key, probes);
	bd->running = true;
	bd->hard = false;
	memcpy(bd->peer, peer_key, 32);
	memcpy(bd->txid, txid, sizeof(bd->txid));
	bd->ip = *ip;
	bd->start_ms = (int64_t)mono_now_ms();
	/* All probes at the pace, then the grace for the last pongs. */
	bd->end_ms =
	    bd->start_ms + (int64_t)probes * 1000 / BD_PROBES_PER_SEC + BD_GRACE_MS;
	bd->pacer = (struct bd_pacer){
	    .start_ms = bd->start_ms, .rate = BD_PROBES_PER_SEC, .max = probes};
	bd->st.attempts_easy++;
	on_timer(-1, 0, bd);
	return 0;
}

bool bd_easy_match(struct birthday *bd, const uint8_t peer_key[32],
                   const uint8_t txid[12], const struct sockaddr_storage *from,
                   int64_t *sent_us)
{
	if (!bd->running || bd->hard || memcmp(bd->peer, peer_key, 32) != 0 ||
	    sodium_memcmp(bd->txid, txid, sizeof(bd->txid)) != 0 ||
	    !sockaddr_ip_equal(from, &bd->ip))
		return false;
	uint16_t port = from->ss_family == AF_INET
	                    ? ntohs(((const struct sockaddr_in *)from)->sin_port)
	                    : ntohs(((const struct sockaddr_in6 *)from)->sin6_port);
	if (!bd_ports_used(bd->ports, port))
		return false;
	for (uint32_t i = 0; i < bd->pacer.sent; i++)
		if (bd->probe_port[i] == port) {
			*sent_us = bd->probe_us[i];
			bd->st.wins_easy++;
			attempt_clear(bd);
			return true;
		}
	return false;
}

void bd_cancel(struct birthday *bd, const uint8_t peer_key[32])
{
	if (bd->running && memcmp(bd->peer, peer_key, 32) == 0)
		attempt_clear(bd);
}

void bd_refused(struct birthday *bd)
{
	bd->st.requests_refused++;
}

void bd_get_stats(const struct birthday *bd, struct bd_stats *st)
{
	*st = bd->st;
}
