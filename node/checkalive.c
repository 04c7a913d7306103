/* CheckAlive: periodic pings through the mesh; see checkalive.h. A ping
 * in flight cannot be taken back (ns_ping has no cancel), so each one has
 * its own small context that outlives the checker if need be. */
#include "node/checkalive.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/util/clock.h"
#include "core/util/log.h"
#include "netstack/ns.h"
#include "node/api_server.h"
#include "node/format.h"

#define CHECKALIVE_LEEWAY_S 2

struct checkalive_addr {
	struct ns_addr addr;
	char text[INET6_ADDRSTRLEN];
	uint64_t sent, received;
	uint64_t last_pong_ms; /* monotonic: liveness never follows a clock jump */
	time_t last_pong;      /* wall clock, for status --json */
	double rtt_ms;
	bool in_flight;
};

struct checkalive {
	struct event *timer;
	struct event *first; /* the first round, at once */
	unsigned interval_s;
	size_t n;
	struct checkalive_addr *a;
};

struct checkalive_ping {
	struct checkalive *c; /* NULL once the checker is gone */
	size_t i;
	struct checkalive_ping *next;
};

/* Pings whose callback has not come yet, so checkalive_free can orphan
 * them. */
static struct checkalive_ping *g_pings;

static void checkalive_unlink(struct checkalive_ping *p)
{
	for (struct checkalive_ping **pp = &g_pings; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

static void checkalive_on_pong(void *ctx, int err, double rtt_ms)
{
	struct checkalive_ping *p = ctx;
	checkalive_unlink(p);
	struct checkalive *c = p->c;
	if (c) {
		struct checkalive_addr *a = &c->a[p->i];
		a->in_flight = false;
		if (err == 0) {
			if (a->received == 0)
				log_info("CheckAlive %s: answers (%.2f ms)", a->text,
				         rtt_ms);
			a->received++;
			a->last_pong_ms = mono_now_ms();
			a->last_pong = time(NULL);
			a->rtt_ms = rtt_ms;
		}
	}
	free(p);
}

unsigned checkalive_ping_timeout_ms(unsigned interval_s)
{
	/* Room for a loop that runs late: half a second at least. */
	return interval_s <= 2 ? interval_s * 500 : interval_s * 1000 - 1000;
}

static void checkalive_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct checkalive *c = arg;
	(void)fd, (void)what;
	for (size_t i = 0; i < c->n; i++) {
		struct checkalive_addr *a = &c->a[i];
		if (a->in_flight)
			continue;
		struct checkalive_ping *p = calloc(1, sizeof(*p));
		if (!p)
			return;
		p->c = c;
		p->i = i;
		/* The answer is due before the next round: a ping still in
		 * flight then would make a silent target skip every other one. */
		int r = ns_ping(&a->addr, checkalive_ping_timeout_ms(c->interval_s),
		                checkalive_on_pong, p);
		if (r != 0) {
			log_debug("CheckAlive %s: %s", a->text, strerror(-r));
			free(p);
			continue;
		}
		p->next = g_pings;
		g_pings = p;
		a->in_flight = true;
		a->sent++;
	}
}

struct checkalive *checkalive_new(struct event_base *base, const struct cfg_prefix *a,
                                  size_t n, unsigned interval_s)
{
	if (n == 0)
		return NULL;
	struct checkalive *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->a = calloc(n, sizeof(*c->a));
	c->timer = event_new(base, -1, EV_PERSIST, checkalive_on_timer, c);
	c->first = evtimer_new(base, checkalive_on_timer, c);
	if (!c->a || !c->timer || !c->first) {
		checkalive_free(c);
		return NULL;
	}
	c->n = n;
	c->interval_s = interval_s ? interval_s : 5;
	for (size_t i = 0; i < n; i++) {
		c->a[i].addr.family = a[i].family;
		memcpy(c->a[i].addr.addr, a[i].addr, 16);
		inet_ntop(a[i].family, a[i].addr, c->a[i].text, sizeof(c->a[i].text));
	}
	struct timeval tv = {c->interval_s, 0}, now = {0, 0};
	event_add(c->timer, &tv);
	/* The first round now, from its own event: activating the persistent
	 * timer by hand would move its next round to 2 intervals away. */
	evtimer_add(c->first, &now);
	return c;
}

void checkalive_free(struct checkalive *c)
{
	if (!c)
		return;
	for (struct checkalive_ping *p = g_pings; p; p = p->next)
		if (p->c == c)
			p->c = NULL;
	if (c->timer)
		event_free(c->timer);
	if (c->first)
		event_free(c->first);
	free(c->a);
	free(c);
}

static bool checkalive_addr_ok(const struct checkalive *c,
                               const struct checkalive_addr *a, uint64_t now_ms)
{
	return a->received && now_ms - a->last_pong_ms <=
	                          (uint64_t)(c->interval_s + CHECKALIVE_LEEWAY_S) * 1000;
}

static long checkalive_age_s(const struct checkalive_addr *a, uint64_t now_ms)
{
	return (long)((now_ms - a->last_pong_ms) / 1000);
}

void checkalive_write_text(const struct checkalive *c, struct api_conn *conn)
{
	if (!c)
		return;
	uint64_t now = mono_now_ms();
	for (size_t i = 0; i < c->n; i++) {
		const struct checkalive_addr *a = &c->a[i];
		if (checkalive_addr_ok(c, a, now))
			api_conn_printf(
			    conn,
			    "alive  %s  ok  rtt %.2f ms  last answer %lds ago  "
			    "(every %us)\n",
			    a->text, a->rtt_ms, checkalive_age_s(a, now),
			    c->interval_s);
		else if (a->received)
			api_conn_printf(conn,
			                "alive  %s  NOT ANSWERING  last answer %lds ago  "
			                "(every %us)\n",
			                a->text, checkalive_age_s(a, now),
			                c->interval_s);
		else
			api_conn_printf(conn,
			                "alive  %s  NOT ANSWERING  no answer to %" PRIu64
			                " ping(s)  (every %us)\n",
			                a->text, a->sent, c->interval_s);
	}
}

json_t *checkalive_json(const struct checkalive *c)
{
	json_t *o = json_object(), *arr = json_array();
	if (!o || !arr) {
		json_decref(o);
		json_decref(arr);
		return NULL;
	}
	uint64_t now = mono_now_ms();
	bool all_ok = true;
	for (size_t i = 0; i < c->n; i++) {
		const struct checkalive_addr *a = &c->a[i];
		json_t *e = json_object();
		if (!e)
			continue;
		bool ok = checkalive_addr_ok(c, a, now);
		all_ok &= ok;
		fmt_json_set(e, "address", fmt_json_str(a->text));
		fmt_json_set(e, "ok", json_boolean(ok));
		fmt_json_set(e, "sent", fmt_json_u64(a->sent));
		fmt_json_set(e, "received", fmt_json_u64(a->received));
		fmt_json_set(e, "last_pong_unix", fmt_json_u64((uint64_t)a->last_pong));
		fmt_json_set(e, "rtt_ms", json_real(a->rtt_ms));
		arr = fmt_json_append(arr, e);
	}
	fmt_json_set(o, "interval_s", fmt_json_u64(c->interval_s));
	fmt_json_set(o, "ok", json_boolean(all_ok));
	fmt_json_set(o, "addresses", arr);
	return o;
}
