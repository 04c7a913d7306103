/* The tunnel DNS client's runtime: lookups over the netstack's UDP, with a
 * TCP retry for truncated answers (the TCP connection is spliced to one
 * end of a socketpair, the other end is ours). See dnsc.h. */
#include "node/dns/dnsc.h"

#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/clock.h"
#include "core/util/log.h"

#define DNSC_QUERY_MAX (12 + 255 + 4)
#define DNSC_NAME_TEXT 254 /* a name as text, lowercase, no final dot */

struct dnsc_tcp;

struct dnsc_q {
	uint16_t qtype;
	uint8_t msg[DNSC_QUERY_MAX];
	size_t len;
	bool done;   /* answered (addresses, NXDOMAIN or none) */
	bool failed; /* the current server failed it (SERVFAIL, REFUSED, TCP) */
	struct dnsc_answer ans;
	struct dnsc_tcp *tcp;
};

struct dnsc_lookup {
	struct dnsc *d;
	struct dnsc_lookup *prev, *next;
	dnsc_cb cb;
	void *arg;
	struct ns_udp *u;
	struct event *timer;
	struct dnsc_q q[2]; /* A, AAAA */
	unsigned tries;     /* sends so far; the server is tries - 1 mod n */
	int early_err;      /* deliver this from the timer */
	bool nxdomain, saw_fail;
	bool cached;        /* answered from the cache: deliver from the timer */
	char name[DNSC_NAME_TEXT];
};

struct dnsc_cache_entry {
	char name[DNSC_NAME_TEXT]; /* "": free */
	uint64_t expires_ms;
	bool nxdomain;
	struct dnsc_answer ans[2]; /* A, AAAA (addresses only) */
};

struct dnsc_tcp {
	struct dnsc_lookup *l;
	struct dnsc_q *q;
	struct ns_tcp *dial; /* while dialling: ns_tcp_dial_cancel() takes it back */
	int fd;
	struct event *ev;
	uint8_t hdr[2];  /* the answer's length (RFC 1035 4.2.2) */
	uint8_t *buf;    /* allocated once the length is known */
	size_t have;     /* bytes read: the length's, then the answer's */
};

struct dnsc {
	struct dnsc_config cfg;
	struct dnsc_stats st;
	struct dnsc_lookup *head;
	size_t n;
	struct dnsc_cache_entry *cache; /* DNSC_CACHE_MAX entries */
};

/* ---- the cache ---- */

static struct dnsc_cache_entry *dnsc_cache_find(struct dnsc *d, const char *name,
                                                uint64_t now)
{
	for (size_t i = 0; i < DNSC_CACHE_MAX; i++) {
		struct dnsc_cache_entry *e = &d->cache[i];
		if (!e->name[0] || strcmp(e->name, name) != 0)
			continue;
		if (e->expires_ms > now)
			return e;
		e->name[0] = 0; /* expired */
	}
	return NULL;
}

/* Keeps l's answer when both types were answered (see dnsc.h). */
static void dnsc_cache_put(struct dnsc_lookup *l, int err)
{
	struct dnsc *d = l->d;
	if (l->cached || !l->name[0] || !l->q[0].done || !l->q[1].done ||
	    (err != 0 && err != -ENOENT))
		return;
	uint64_t ttl = err ? DNSC_CACHE_NEG_TTL : DNSC_CACHE_TTL_MAX;
	for (size_t i = 0; err == 0 && i < 2; i++)
		if (l->q[i].ans.ttl < ttl)
			ttl = l->q[i].ans.ttl;
	if (ttl == 0)
		return;
	uint64_t now = mono_now_ms();
	struct dnsc_cache_entry *e = dnsc_cache_find(d, l->name, now);
	for (size_t i = 0; !e && i < DNSC_CACHE_MAX; i++)
		if (!d->cache[i].name[0] || d->cache[i].expires_ms <= now)
			e = &d->cache[i];
	if (!e) { /* full: the entry that expires first makes room */
		e = &d->cache[0];
		for (size_t i = 1; i < DNSC_CACHE_MAX; i++)
			if (d->cache[i].expires_ms < e->expires_ms)
				e = &d->cache[i];
	}
	memset(e, 0, sizeof(*e));
	memcpy(e->name, l->name, sizeof(e->name));
	e->expires_ms = now + ttl * 1000;
	e->nxdomain = l->nxdomain;
	for (size_t i = 0; i < 2; i++) {
		e->ans[i].n = l->q[i].ans.n;
		memcpy(e->ans[i].addrs, l->q[i].ans.addrs, sizeof(e->ans[i].addrs));
	}
}

/* name as the cache keys it: lowercase, no final dot; false if too long. */
static bool dnsc_cache_key(const char *name, char out[DNSC_NAME_TEXT])
{
	size_t len = strlen(name);
	if (len && name[len - 1] == '.')
		len--;
	if (len == 0 || len >= DNSC_NAME_TEXT)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] - 'A' + 'a'
		                                                     : name[i]);
	out[len] = 0;
	return true;
}

static void dnsc_finish(struct dnsc_lookup *l, int err);
static void dnsc_try(struct dnsc_lookup *l);

static const struct ns_addr *dnsc_server(const struct dnsc_lookup *l)
{
	const struct dnsc *d = l->d;
	return &d->cfg.servers[(l->tries - 1) % d->cfg.n_servers];
}

static void dnsc_arm(struct dnsc_lookup *l, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(l->timer, &tv);
}

static void dnsc_tcp_free(struct dnsc_tcp *t)
{
	ns_tcp_dial_cancel(t->dial); /* the callback will not come */
	if (t->ev)
		event_free(t->ev);
	if (t->fd >= 0)
		close(t->fd);
	free(t->buf);
	free(t);
}

static void dnsc_drop_tcp(struct dnsc_q *q)
{
	if (q->tcp) {
		dnsc_tcp_free(q->tcp);
		q->tcp = NULL;
	}
}

/* After an answer or a failure: finish when both queries are answered,
 * ask the next server at once when neither can still be answered by this
 * one (a failure waits for no timer). */
static void dnsc_progress(struct dnsc_lookup *l)
{
	bool all_done = true, all_stuck = true;
	for (size_t i = 0; i < 2; i++) {
		all_done &= l->q[i].done;
		all_stuck &= l->q[i].done || l->q[i].failed;
	}
	if (all_done)
		dnsc_finish(l, 0);
	else if (all_stuck)
		dnsc_try(l);
}

/* The current server failed q (SERVFAIL, REFUSED, TCP trouble): another
 * server may do better. l may be gone afterwards. */
static void dnsc_q_failed(struct dnsc_lookup *l, struct dnsc_q *q)
{
	dnsc_drop_tcp(q);
	q->failed = true;
	l->saw_fail = true;
	dnsc_progress(l);
}

/* One answer (UDP or TCP) for q from the current server. l may be gone
 * afterwards. */
static void dnsc_result(struct dnsc_lookup *l, struct dnsc_q *q,
                        const struct dnsc_answer *a)
{
	if (a->rcode != 0 && a->rcode != 3) {
		dnsc_q_failed(l, q);
		return;
	}
	dnsc_drop_tcp(q);
	q->done = true;
	q->ans = *a;
	l->nxdomain |= a->rcode == 3;
	dnsc_progress(l);
}

/* Reads the 2-byte length, then the answer into a buffer of that size
 * (at most DNSC_TCP_MAX: a longer answer fails this server). */
static void dnsc_tcp_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct dnsc_tcp *t = arg;
	struct dnsc_lookup *l = t->l;
	struct dnsc_q *q = t->q;
	(void)what;
	size_t need = t->buf ? 2 + (size_t)((t->hdr[0] << 8) | t->hdr[1]) : 2;
	ssize_t r = t->have < 2 ? read(fd, t->hdr + t->have, 2 - t->have)
	                        : read(fd, t->buf + t->have - 2, need - t->have);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) { /* closed before a whole answer */
		dnsc_q_failed(l, q);
		return;
	}
	t->have += (size_t)r;
	if (t->have == 2 && !t->buf) {
		size_t alen = (size_t)((t->hdr[0] << 8) | t->hdr[1]);
		if (alen < 12 || alen > DNSC_TCP_MAX) {
			l->d->st.dropped++;
			dnsc_q_failed(l, q);
			return;
		}
		t->buf = malloc(alen);
		if (!t->buf)
			dnsc_q_failed(l, q);
		return;
	}
	if (t->have < need)
		return;
	struct dnsc_answer a;
	if (dnsc_answer_parse(q->msg, q->len, t->buf, need - 2, &a) != 0) {
		l->d->st.dropped++;
		dnsc_q_failed(l, q); /* a malformed answer fails this server */
		return;
	}
	a.truncated = false;
	dnsc_result(l, q, &a);
}

static void dnsc_tcp_on_dial(void *ctx, struct ns_tcp *c, int err)
{
	struct dnsc_tcp *t = ctx;
	t->dial = NULL; /* c, when connected, is ours or the splice's now */
	struct dnsc_q *q = t->q;
	struct dnsc_lookup *l = t->l;
	int sp[2] = {-1, -1};
	if (err == 0 &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) {
		err = -errno; /* before ns_tcp_abort() can change errno */
		ns_tcp_abort(c);
	}
	if (err == 0 && ns_splice_start(c, sp[0], NULL, 0) != 0) {
		close(sp[1]); /* sp[0] and c are gone with the failed splice */
		err = -EIO;
	}
	if (err != 0) {
		dnsc_q_failed(l, q);
		return;
	}
	t->fd = sp[1];
	uint8_t out[2 + DNSC_QUERY_MAX] = {(uint8_t)(q->len >> 8), (uint8_t)q->len};
	memcpy(out + 2, q->msg, q->len);
	t->ev =
	    event_new(l->d->cfg.base, t->fd, EV_READ | EV_PERSIST, dnsc_tcp_on_read, t);
	/* A fresh socketpair takes a few hundred bytes at once. */
	if (!t->ev || write(t->fd, out, 2 + q->len) != (ssize_t)(2 + q->len) ||
	    event_add(t->ev, NULL) != 0) {
		dnsc_q_failed(l, q);
		return;
	}
	l->d->st.queries_tcp++;
}

/* Asks q again over TCP (its UDP answer was truncated). l may be gone
 * afterwards. */
static void dnsc_start_tcp(struct dnsc_lookup *l, struct dnsc_q *q)
{
	if (q->tcp)
		return;
	struct dnsc_tcp *t = calloc(1, sizeof(*t));
	if (!t) {
		dnsc_q_failed(l, q);
		return;
	}
	t->l = l;
	t->q = q;
	t->fd = -1;
	int r = ns_tcp_dial_ex(dnsc_server(l), l->d->cfg.port, dnsc_tcp_on_dial, t,
	                       &t->dial);
	if (r != 0) {
		log_debug("dns: TCP to the tunnel's server failed: %s", strerror(-r));
		free(t);
		dnsc_q_failed(l, q);
		return;
	}
	q->tcp = t;
	dnsc_arm(l, 2 * l->d->cfg.timeout_ms); /* TCP gets a longer try */
}

static bool dnsc_same_addr(const struct ns_addr *a, const struct ns_addr *b)
{
	return a->family == b->family &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static void dnsc_on_udp(void *ctx, struct ns_udp *u, const struct ns_addr *src,
                        uint16_t sport, const struct ns_addr *dst, const uint8_t *data,
                        size_t len)
{
	struct dnsc_lookup *l = ctx;
	struct dnsc *d = l->d;
	(void)u, (void)dst;
	if (l->tries == 0 || sport != d->cfg.port ||
	    !dnsc_same_addr(src, dnsc_server(l))) {
		d->st.dropped++;
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		struct dnsc_q *q = &l->q[i];
		if (q->done || q->failed || q->tcp || len < 2 ||
		    memcmp(data, q->msg, 2) != 0)
			continue;
		struct dnsc_answer a;
		int ok = dnsc_answer_parse(q->msg, q->len, data, len, &a);
		/* TC is set only once id and question matched: whatever
		 * follows (cut records, ANCOUNT too high) is for TCP to fix. */
		if (a.truncated) {
			dnsc_start_tcp(l, q);
			return;
		}
		if (ok != 0)
			continue; /* the other query's? else counted below */
		dnsc_result(l, q, &a);
		return;
	}
	d->st.dropped++;
}

/* Asks the next server every query still open. */
static void dnsc_try(struct dnsc_lookup *l)
{
	struct dnsc *d = l->d;
	if (l->tries >= d->cfg.attempts * d->cfg.n_servers) {
		/* One type answered with addresses, the other failed or
		 * stayed silent everywhere: the addresses are the answer. */
		bool some = (l->q[0].done && l->q[0].ans.n) || (l->q[1].done && l->q[1].ans.n);
		dnsc_finish(l, some ? 0 : l->saw_fail ? -EIO : -ETIMEDOUT);
		return;
	}
	l->tries++;
	const struct ns_addr *srv = dnsc_server(l);
	for (size_t i = 0; i < 2; i++) {
		struct dnsc_q *q = &l->q[i];
		if (q->done)
			continue;
		dnsc_drop_tcp(q);
		q->failed = false;
		uint16_t id = (uint16_t)randombytes_uniform(65536);
		if (i == 1 && id == (uint16_t)(l->q[0].msg[0] << 8 | l->q[0].msg[1]))
			id ^= 1 + (uint16_t)randombytes_uniform(65535); /* distinct ids */
		q->msg[0] = (uint8_t)(id >> 8);
		q->msg[1] = (uint8_t)id;
		int r = ns_udp_send(l->u, srv, d->cfg.port, q->msg, q->len);
		if (r == 0)
			d->st.queries_udp++;
		else
			log_debug("dns: query to the tunnel's server failed: %s",
			          strerror(-r));
	}
	dnsc_arm(l, d->cfg.timeout_ms);
}

static void dnsc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dnsc_lookup *l = arg;
	(void)fd, (void)what;
	if (l->early_err) {
		dnsc_finish(l, l->early_err);
		return;
	}
	if (l->cached) {
		dnsc_finish(l, 0); /* no address: -ENOENT there */
		return;
	}
	l->d->st.timeouts++;
	if (l->q[0].ans.n + l->q[1].ans.n > 0 && (l->q[0].done || l->q[1].done)) {
		dnsc_finish(l, 0); /* A answered, AAAA lost (or the reverse) */
		return;
	}
	dnsc_try(l);
}

static void dnsc_unlink(struct dnsc_lookup *l)
{
	struct dnsc *d = l->d;
	if (l->prev)
		l->prev->next = l->next;
	else
		d->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	d->n--;
}

static void dnsc_lookup_free(struct dnsc_lookup *l)
{
	dnsc_unlink(l);
	for (size_t i = 0; i < 2; i++)
		dnsc_drop_tcp(&l->q[i]);
	if (l->timer)
		event_free(l->timer);
	ns_udp_close(l->u);
	sodium_memzero(l, sizeof(*l));
	free(l);
}

static void dnsc_finish(struct dnsc_lookup *l, int err)
{
	struct ns_addr a[2 * DNSC_ADDRS_MAX];
	size_t n = 0;
	for (size_t i = 0; i < 2; i++)
		for (size_t k = 0; l->q[i].done && k < l->q[i].ans.n; k++)
			a[n++] = l->q[i].ans.addrs[k];
	struct dnsc *d = l->d;
	if (err == 0 && n == 0)
		err = -ENOENT;
	dnsc_cache_put(l, err);
	if (err == 0)
		d->st.answered++;
	else if (err == -ENOENT && l->nxdomain)
		d->st.nxdomain++;
	else
		d->st.failed++;
	dnsc_cb cb = l->cb;
	void *arg = l->arg;
	dnsc_lookup_free(l);
	cb(arg, err, n ? a : NULL, n);
}

struct dnsc_lookup *dnsc_resolve(struct dnsc *d, const char *name, dnsc_cb cb, void *arg)
{
	struct dnsc_lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->d = d;
	l->cb = cb;
	l->arg = arg;
	l->next = d->head;
	if (d->head)
		d->head->prev = l;
	d->head = l;
	d->n++;
	d->st.lookups++;
	l->timer = evtimer_new(d->cfg.base, dnsc_on_timer, l);
	if (!l->timer) {
		dnsc_unlink(l);
		free(l);
		return NULL;
	}
	static const uint16_t types[2] = {DNSC_TYPE_A, DNSC_TYPE_AAAA};
	for (size_t i = 0; i < 2; i++) {
		int len =
		    dnsc_query_build(name, 0, types[i], l->q[i].msg, sizeof(l->q[i].msg));
		l->q[i].qtype = types[i];
		l->q[i].len = len > 0 ? (size_t)len : 0;
		if (len < 0)
			l->early_err = -EINVAL;
	}
	int err = 0;
	struct dnsc_cache_entry *e = NULL;
	if (!l->early_err && dnsc_cache_key(name, l->name) &&
	    (e = dnsc_cache_find(d, l->name, mono_now_ms()))) {
		d->st.cache_hits++;
		l->cached = true;
		l->nxdomain = e->nxdomain;
		for (size_t i = 0; i < 2; i++) {
			l->q[i].done = true;
			l->q[i].ans = e->ans[i];
		}
		dnsc_arm(l, 0);
		return l;
	}
	if (!l->early_err && d->n > DNSC_LOOKUPS_MAX)
		l->early_err = -EAGAIN;
	if (!l->early_err && !(l->u = ns_udp_open(0, dnsc_on_udp, l, &err)))
		l->early_err = err ? err : -ENOMEM;
	if (l->early_err) {
		dnsc_arm(l, 0);
		return l;
	}
	dnsc_try(l);
	return l;
}

void dnsc_cancel(struct dnsc_lookup *l)
{
	if (l)
		dnsc_lookup_free(l);
}

struct dnsc *dnsc_new(const struct dnsc_config *cfg)
{
	if (!cfg->n_servers || cfg->n_servers > DNSC_SERVERS_MAX)
		return NULL;
	struct dnsc *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->cache = calloc(DNSC_CACHE_MAX, sizeof(*d->cache));
	if (!d->cache) {
		free(d);
		return NULL;
	}
	d->cfg = *cfg;
	if (!d->cfg.port)
		d->cfg.port = DNSC_PORT;
	if (!d->cfg.timeout_ms)
		d->cfg.timeout_ms = 2000;
	if (!d->cfg.attempts)
		d->cfg.attempts = 2;
	return d;
}

void dnsc_free(struct dnsc *d)
{
	if (!d)
		return;
	while (d->head)
		dnsc_finish(d->head, -ECANCELED);
	free(d->cache);
	free(d);
}

void dnsc_get_stats(const struct dnsc *d, struct dnsc_stats *st)
{
	*st = d->st;
}
