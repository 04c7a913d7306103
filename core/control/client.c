/* The node's control client: lifecycle, connection, timers, backoff and
 * status. The protocol (handshake, messages) is in client_proto.c, the map
 * merge in client_map.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/control/client_int.h"
#include "core/control/zmsg.h"
#include "core/util/log.h"

static void client_connect(struct ctl_client *c);
static void client_destroy(struct ctl_client *c);

uint64_t ctl_client_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *ctl_client_state_name(enum ctl_client_state s)
{
	switch (s) {
	case CTL_CLIENT_CONNECTING:
		return "connecting";
	case CTL_CLIENT_HANDSHAKE:
		return "handshake";
	case CTL_CLIENT_REGISTERING:
		return "registering";
	case CTL_CLIENT_PENDING:
		return "pending";
	case CTL_CLIENT_ONLINE:
		return "online";
	case CTL_CLIENT_BACKOFF:
		return "backoff";
	case CTL_CLIENT_REFUSED:
		return "refused";
	case CTL_CLIENT_LOGGED_OUT:
		return "logged out";
	}
	return "unknown";
}

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* Every entry from the loop goes through enter/leave, so ctl_client_free from
 * inside a callback only marks the client dead and the last leave frees it. */
static void enter(struct ctl_client *c)
{
	c->depth++;
}

static void leave(struct ctl_client *c)
{
	if (--c->depth == 0 && c->dead)
		client_destroy(c);
}

void ctl_client_set_state(struct ctl_client *c, enum ctl_client_state st,
                          const char *detail, const struct ctl_register_resp *resp)
{
	c->state = st;
	c->notify = false; /* this report supersedes a pending one */
	if (detail != c->detail)
		snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
	log_debug("control: %s%s%s", ctl_client_state_name(st), c->detail[0] ? ": " : "",
	          c->detail);
	if (c->cb.on_state && !c->dead) {
		c->depth++;
		c->cb.on_state(c->ctx, st, c->detail, resp);
		c->depth--;
	}
}

static void close_conn(struct ctl_client *c)
{
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->have_hs) {
		ctl_noise_handshake_wipe(&c->hs);
		c->have_hs = false;
	}
	ctl_noise_transport_wipe(&c->t);
	c->have_transport = false;
	ctl_frame_decoder_free(&c->dec);
	ctl_frame_decoder_init(&c->dec);
	if (c->ev_timer)
		evtimer_del(c->ev_timer);
	if (c->ev_tick)
		evtimer_del(c->ev_tick);
	if (c->ev_eps)
		evtimer_del(c->ev_eps);
	c->connected_since = 0;
	ctl_map_clear(&c->pending); /* a chunked map cut off by the close */
	c->assembling = false;
}

void ctl_client_stop(struct ctl_client *c)
{
	close_conn(c);
}

uint32_t ctl_client_backoff_next(struct ctl_client *c, uint64_t now)
{
	uint32_t wait;

	if (c->session_start_ms && now - c->session_start_ms >= CTL_CLIENT_STABLE_MS)
		c->backoff_cur_ms = c->backoff_min_ms;
	c->session_start_ms = 0;
	if (c->backoff_cur_ms < c->backoff_min_ms)
		c->backoff_cur_ms = c->backoff_min_ms;
	/* jitter: a factor in [0.5, 1.0] */
	wait =
	    (uint32_t)(((uint64_t)c->backoff_cur_ms * (500 + randombytes_uniform(501))) /
	               1000);
	c->backoff_cur_ms = c->backoff_cur_ms > c->backoff_max_ms / 2
	                        ? c->backoff_max_ms
	                        : c->backoff_cur_ms * 2;
	return wait;
}

/* A string cut to fit may end inside a UTF-8 character (the server's text
 * is UTF-8): drop that character's first bytes, so the detail stays valid
 * UTF-8 for status and its JSON. */
static void utf8_trim_partial(char *s)
{
	size_t n = strlen(s), i = n;
	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--; /* continuation bytes */
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = 0;
}

static void select_addr(struct ctl_client *c, uint8_t i)
{
	c->cur = i;
	c->host = c->hosts[i];
	c->port = c->ports[i];
}

/* The current address failed: the next address of the round at once (a
 * dead server is skipped quickly), or, when all of them failed in a row,
 * the first one after the backoff (a dead list is not hammered). A stable
 * session (CTL_CLIENT_STABLE_MS) before this failure starts a new round
 * and resets the backoff. Says in detail where it goes next. Returns the
 * wait in ms. */
static uint32_t fail_next_addr(struct ctl_client *c, uint64_t now, char *detail,
                               size_t cap)
{
	size_t dl = strlen(detail);

	if (c->session_start_ms && now - c->session_start_ms >= CTL_CLIENT_STABLE_MS) {
		c->round_fails = 0;
		c->backoff_cur_ms = c->backoff_min_ms;
	}
	c->session_start_ms = 0; /* counted: not again on the next failure */
	if (c->n_addrs <= 1)
		return ctl_client_backoff_next(c, now);
	if (++c->round_fails < c->n_addrs) {
		select_addr(c, (uint8_t)((c->cur + 1) % c->n_addrs));
		snprintf(detail + dl, cap - dl, "; trying %s%s%s:%u next",
		         strchr(c->host, ':') ? "[" : "", c->host,
		         strchr(c->host, ':') ? "]" : "", c->port);
		return 0;
	}
	c->round_fails = 0;
	select_addr(c, 0);
	snprintf(detail + dl, cap - dl, "; all %u control addresses failed",
	         (unsigned)c->n_addrs);
	return ctl_client_backoff_next(c, now);
}

void ctl_client_fail(struct ctl_client *c, const char *fmt, ...)
{
	char detail[CTL_TEXT_MAX];
	va_list ap;
	uint32_t wait;

	va_start(ap, fmt);
	int full = vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (full >= (int)sizeof(detail))
		utf8_trim_partial(detail);
	if (c->state == CTL_CLIENT_REFUSED || c->state == CTL_CLIENT_LOGGED_OUT)
		return;
	log_debug("control %s:%u: %s", c->host, c->port, detail);
	close_conn(c);
	if (c->logging_out) { /* no retry: the node is leaving */
		char why[CTL_TEXT_MAX];
		/* mesh-control closes a pending node's LOGOUT unanswered and
		 * keeps its request until it times out (removing it would
		 * free a max_pending slot): until then an admin can approve it */
		if (c->state == CTL_CLIENT_PENDING)
			snprintf(why, sizeof(why),
			         "logged out while pending approval (%.120s): "
			         "mesh-control keeps the request until it times "
			         "out, and an admin could still approve it",
			         detail);
		else
			snprintf(why, sizeof(why),
			         "no answer to LOGOUT (%.120s): an older mesh-control "
			         "keeps the node until its ephemeral timeout",
			         detail);
		ctl_client_set_state(c, CTL_CLIENT_LOGGED_OUT, why, NULL);
		return;
	}
	wait = fail_next_addr(c, ctl_client_now_ms(), detail, sizeof(detail));
	c->retry_at_ms = ctl_client_now_ms() + wait;
	timer_in(c->ev_timer, wait);
	ctl_client_set_state(c, CTL_CLIENT_BACKOFF, detail, NULL);
}

/* The handshake is done: the connect timeout no longer applies; the
 * keepalive / receive watchdog takes over. */
void ctl_client_session_up(struct ctl_client *c)
{
	uint64_t now = ctl_client_now_ms();

	evtimer_del(c->ev_timer);
	c->sessions++;
	c->session_start_ms = now;
	c->connected_since = (int64_t)time(NULL);
	c->last_rx_ms = c->last_tx_ms = now;
	c->eps_sent_valid = false;
	timer_in(c->ev_tick,
	         c->keepalive_ms < c->timeout_ms ? c->keepalive_ms : c->timeout_ms);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_client *c = arg;
	uint64_t now = ctl_client_now_ms(), next_ka, next_to;

	(void)fd;
	(void)what;
	enter(c);
	if (!c->have_transport)
		goto out;
	if (now - c->last_rx_ms >= c->timeout_ms) {
		ctl_client_fail(c, "server silent for %u ms", c->timeout_ms);
		goto out;
	}
	if (now - c->last_tx_ms >= c->keepalive_ms) {
		struct ctl_msg m = {.type = CTL_MSG_KEEPALIVE};
		if (ctl_client_send(c, &m) < 0)
			goto out;
	}
	next_ka = c->last_tx_ms + c->keepalive_ms;
	next_to = c->last_rx_ms + c->timeout_ms;
	next_ka = next_ka < next_to ? next_ka : next_to;
	timer_in(c->ev_tick, next_ka > now ? next_ka - now : 1);
out:
	leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_client *c = arg;

	(void)fd;
	(void)what;
	enter(c);
	if (c->state == CTL_CLIENT_BACKOFF && c->notify) {
		/* a redial's BACKOFF is reported at once, its wait runs on */
		ctl_client_set_state(c, CTL_CLIENT_BACKOFF, c->detail, NULL);
		uint64_t now = ctl_client_now_ms();
		if (!c->dead && c->state == CTL_CLIENT_BACKOFF && c->retry_at_ms > now)
			timer_in(c->ev_timer, (uint32_t)(c->retry_at_ms - now));
		else if (!c->dead && c->state == CTL_CLIENT_BACKOFF)
			client_connect(c);
	} else if (c->state == CTL_CLIENT_BACKOFF)
		client_connect(c);
	else if (c->state == CTL_CLIENT_CONNECTING)
		ctl_client_fail(c, "connect timed out after %u ms",
		                c->connect_timeout_ms);
	else if (c->state == CTL_CLIENT_HANDSHAKE)
		ctl_client_fail(c,
		                "handshake timed out after %u ms (server key mismatch "
		                "or not a mesh-control server?)",
		                c->connect_timeout_ms);
	leave(c);
}

/* Endpoints are sent from the loop, not from ctl_client_set_endpoints: a
 * send failure ends the session, which calls back. */
static void on_eps(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_client *c = arg;

	(void)fd;
	(void)what;
	enter(c);
	if (c->state == CTL_CLIENT_ONLINE && c->have_transport)
		ctl_client_send_endpoints(c, false);
	leave(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;

	(void)bev;
	enter(c);
	ctl_client_on_read(c);
	leave(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client *c = arg;

	enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		ctl_client_start_handshake(c);
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		char why[160];
		int dnserr = bufferevent_socket_get_dns_error(bev);
		if (dnserr)
			snprintf(why, sizeof(why), "cannot resolve %s: %s", c->host,
			         evutil_gai_strerror(dnserr));
		else if (what & BEV_EVENT_EOF)
			snprintf(why, sizeof(why), "connection closed by the server");
		else
			snprintf(why, sizeof(why), "%s",
			         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		if (c->state == CTL_CLIENT_HANDSHAKE)
			ctl_client_fail(
			    c,
			    "handshake failed (%s): server key mismatch or not "
			    "a mesh-control server",
			    why);
		else if (c->state == CTL_CLIENT_CONNECTING)
			ctl_client_fail(c, "cannot connect to %s:%u: %s", c->host,
			                c->port, why);
		else
			ctl_client_fail(c, "%s", why);
	}
	leave(c);
}

static void client_connect(struct ctl_client *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	int rc;

	close_conn(c);
	if (c->attempted)
		c->reconnects++;
	c->attempted = true;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, c->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, c->host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		sl = sizeof(*s6);
	}
	c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		ctl_client_fail(c, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	timer_in(c->ev_timer, c->connect_timeout_ms);
	ctl_client_set_state(c, CTL_CLIENT_CONNECTING, "", NULL);
	if (c->dead || !c->bev || c->state != CTL_CLIENT_CONNECTING)
		return;
	if (sl)
		rc = bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl);
	else
		rc = bufferevent_socket_connect_hostname(c->bev, c->dns, AF_UNSPEC,
		                                         c->host, c->port);
	if (rc < 0 && c->bev && c->state == CTL_CLIENT_CONNECTING)
		ctl_client_fail(c, "cannot connect to %s:%u: %s", c->host, c->port,
		                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static bool is_ip_literal(const char *h)
{
	uint8_t a[16];
	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static int copy_str(char *dst, size_t cap, const char *src, const char *what, char *err,
                    size_t errlen)
{
	if (strlen(src) >= cap) {
		snprintf(err, errlen, "control client: %s too long (max %zu)", what,
		         cap - 1);
		return -1;
	}
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

static int client_configure(struct ctl_client *c, const struct ctl_client_config *cfg,
                            char *err, size_t errlen)
{
	if (!cfg->base || !cfg->host || !cfg->host[0] || !cfg->port || !cfg->hostname) {
		snprintf(err, errlen,
		         "control client: base, host, port and hostname are "
		         "required");
		return -1;
	}
	if (cfg->n_more > CTL_CLIENT_ADDRS_MAX - 1 || (cfg->n_more && !cfg->more)) {
		snprintf(err, errlen, "control client: more than %d control addresses",
		         CTL_CLIENT_ADDRS_MAX);
		return -1;
	}
	for (size_t i = 0; i <= cfg->n_more; i++) {
		const char *h = i ? cfg->more[i - 1].host : cfg->host;
		uint16_t port = i ? cfg->more[i - 1].port : cfg->port;
		if (!h || !h[0] || !port || strlen(h) > 253) {
			snprintf(err, errlen,
			         "control client: control address %zu has no host or "
			         "port, or a host longer than 253 characters",
			         i + 1);
			return -1;
		}
		if (!cfg->dns && !is_ip_literal(h)) {
			snprintf(err, errlen,
			         "control client: host \"%s\" is not an IP address and "
			         "no resolver was given",
			         h);
			return -1;
		}
	}
	if (cfg->n_tags > CTL_TAGS_MAX) {
		snprintf(err, errlen, "control client: more than %d tags", CTL_TAGS_MAX);
		return -1;
	}
	if (copy_str(c->hostname, sizeof(c->hostname), cfg->hostname, "hostname", err,
	             errlen) ||
	    copy_str(c->os, sizeof(c->os), cfg->os ? cfg->os : "linux", "os", err,
	             errlen) ||
	    copy_str(c->version, sizeof(c->version),
	             cfg->version ? cfg->version : "unknown", "version", err, errlen) ||
	    copy_str(c->auth_key, sizeof(c->auth_key), cfg->auth_key ? cfg->auth_key : "",
	             "auth key", err, errlen))
		return -1;
	for (size_t i = 0; i < cfg->n_tags; i++)
		if (copy_str(c->tags[i], sizeof(c->tags[i]), cfg->tags[i], "tag", err,
		             errlen))
			return -1;
	c->n_tags = (uint8_t)cfg->n_tags;
	c->base = cfg->base;
	c->dns = cfg->dns;
	memcpy(c->server_key, cfg->server_key, CTL_KEY_LEN);
	memcpy(c->machine_priv, cfg->machine_priv, CTL_KEY_LEN);
	memcpy(c->node_key, cfg->node_key, CTL_KEY_LEN);
	if (cfg->relay) {
		c->relay_role = true;
		c->relay = *cfg->relay;
	}
	memcpy(c->disco_key, cfg->disco_key, CTL_KEY_LEN);
	c->ephemeral = cfg->ephemeral;
	c->keepalive_ms = cfg->keepalive_ms ? cfg->keepalive_ms : 25000;
	c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 75000;
	c->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
	c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 15000;
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
	c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000;
	c->backoff_cur_ms = c->backoff_min_ms;
	if (cfg->cb)
		c->cb = *cfg->cb;
	c->ctx = cfg->ctx;
	return 0;
}

struct ctl_client *ctl_client_new(const struct ctl_client_config *cfg, char *err,
                                  size_t errlen)
{
	struct ctl_client *c;

	if (!cfg) {
		snprintf(err, errlen, "control client: no configuration");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "control client: out of memory");
		return NULL;
	}
	ctl_frame_decoder_init(&c->dec);
	if (client_configure(c, cfg, err, errlen) < 0) {
		client_destroy(c);
		return NULL;
	}
	bool copied = true;
	for (size_t i = 0; i <= cfg->n_more; i++) {
		c->hosts[i] = strdup(i ? cfg->more[i - 1].host : cfg->host);
		c->ports[i] = i ? cfg->more[i - 1].port : cfg->port;
		copied = copied && c->hosts[i];
	}
	c->n_addrs = (uint8_t)(cfg->n_more + 1);
	select_addr(c, 0);
	c->ev_timer = evtimer_new(c->base, on_timer, c);
	c->ev_tick = evtimer_new(c->base, on_tick, c);
	c->ev_eps = evtimer_new(c->base, on_eps, c);
	if (!copied || !c->ev_timer || !c->ev_tick || !c->ev_eps) {
		snprintf(err, errlen, "control client: out of memory");
		client_destroy(c);
		return NULL;
	}
	/* Start from the loop: on_timer in BACKOFF connects. */
	c->state = CTL_CLIENT_BACKOFF;
	timer_in(c->ev_timer, 0);
	return c;
}

static void client_destroy(struct ctl_client *c)
{
	close_conn(c);
	if (c->ev_timer)
		event_free(c->ev_timer);
	if (c->ev_tick)
		event_free(c->ev_tick);
	if (c->ev_eps)
		event_free(c->ev_eps);
	ctl_map_clear(&c->map);
	ctl_zdec_free(c->zdec);
	for (size_t i = 0; i < CTL_CLIENT_ADDRS_MAX; i++)
		free(c->hosts[i]);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

void ctl_client_free(struct ctl_client *c)
{
	if (!c)
		return;
	if (c->depth > 0) {
		/* inside a callback: stop now, free when the stack unwinds */
		c->dead = true;
		close_conn(c);
		return;
	}
	client_destroy(c);
}

int ctl_client_set_endpoints(struct ctl_client *c, const struct ctl_endpoints *eps)
{
	struct ctl_msg m = {.type = CTL_MSG_ENDPOINTS};
	struct ctl_msg_err err;
	uint8_t *body = NULL;
	size_t len = 0;

	if (!c || !eps || eps->n > CTL_ENDPOINTS_MAX)
		return -EINVAL;
	/* refuse now what the encoder would refuse later (port 0, family) */
	m.u.endpoints = *eps;
	if (ctl_msg_encode(&m, &body, &len, &err) < 0)
		return -EINVAL;
	free(body);
	c->eps = *eps;
	c->have_eps = true;
	if (c->state == CTL_CLIENT_ONLINE && c->have_transport && !c->dead)
		event_active(c->ev_eps, EV_TIMEOUT, 0);
	return 0;
}

const struct ctl_map_full *ctl_client_map(const struct ctl_client *c)
{
	return c && c->have_map ? &c->map : NULL;
}

void ctl_client_get_status(const struct ctl_client *c, struct ctl_client_status *st)
{
	uint64_t now = ctl_client_now_ms();

	memset(st, 0, sizeof(*st));
	if (!c)
		return;
	st->state = c->state;
	snprintf(st->detail, sizeof(st->detail), "%s", c->detail);
	st->map_version = c->have_map ? c->map.version : 0;
	st->sessions = c->sessions;
	st->reconnects = c->reconnects;
	st->maps_full = c->maps_full;
	st->maps_delta = c->maps_delta;
	st->bytes_in = c->bytes_in;
	st->bytes_out = c->bytes_out;
	st->zmaps = c->zmaps;
	st->zmaps_refused = c->zmaps_refused;
	st->connected_since = c->connected_since;
	st->last_map = c->last_map;
	if (c->state == CTL_CLIENT_BACKOFF && c->retry_at_ms > now)
		st->next_attempt_ms = (uint32_t)(c->retry_at_ms - now);
	if (c->host) {
		bool v6 = strchr(c->host, ':') != NULL;
		snprintf(st->addr, sizeof(st->addr), "%s%s%s:%u", v6 ? "[" : "", c->host,
		         v6 ? "]" : "", c->port);
	}
	st->addr_index = c->cur;
	st->n_addrs = c->n_addrs;
}

void ctl_client_reconnect(struct ctl_client *c)
{
	if (!c || c->state == CTL_CLIENT_REFUSED || c->logging_out || c->dead)
		return;
	/* No callbacks from here: drop silently, reconnect from the loop. */
	close_conn(c);
	c->session_start_ms = 0;
	c->round_fails = 0; /* a new round, from the address in use */
	c->backoff_cur_ms = c->backoff_min_ms;
	c->state = CTL_CLIENT_BACKOFF;
	snprintf(c->detail, sizeof(c->detail), "reconnect requested");
	c->retry_at_ms = ctl_client_now_ms();
	timer_in(c->ev_timer, 0);
}

void ctl_client_redial(struct ctl_client *c)
{
	if (!c || c->state == CTL_CLIENT_REFUSED || c->logging_out || c->dead)
		return;
	uint64_t now = ctl_client_now_ms();
	bool stable =
	    c->session_start_ms && now - c->session_start_ms >= CTL_CLIENT_STABLE_MS;
	close_conn(c);
	c->round_fails = 0; /* a new network: a new round, same address first */
	/* The backoff moves as a failure would move it: a session that was
	 * stable starts it over, a young one (the last redial's) or none
	 * grows it. After a stable session the wait is the spread alone;
	 * else the backoff's wait, at least backoff_min (its jitter may
	 * halve it: redials in a row must not come faster than that), or
	 * the spread if that is longer. */
	uint32_t wait = ctl_client_backoff_next(c, now);
	if (!stable && wait < c->backoff_min_ms)
		wait = c->backoff_min_ms;
	uint32_t spread = randombytes_uniform(CTL_CLIENT_REDIAL_SPREAD_MS + 1);
	if (stable || spread > wait)
		wait = spread;
	c->state = CTL_CLIENT_BACKOFF;
	snprintf(c->detail, sizeof(c->detail), "our network changed; redialling in %u ms",
	         wait);
	c->retry_at_ms = now + wait;
	/* No callback from here (the caller may be inside one): on_state
	 * from the loop, then the wait. */
	c->notify = true;
	timer_in(c->ev_timer, 0);
}

int ctl_client_local_addr(const struct ctl_client *c, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (!c || !c->bev)
		return -ENOTCONN;
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	if (fd < 0 || getsockname(fd, (struct sockaddr *)ss, &len) != 0)
		return -ENOTCONN;
	return 0;
}

int ctl_client_logout(struct ctl_client *c)
{
	if (c->logging_out)
		return -EALREADY;
	if (!c->have_transport ||
	    (c->state != CTL_CLIENT_ONLINE && c->state != CTL_CLIENT_PENDING))
		return -ENOTCONN;
	struct ctl_msg m = {.type = CTL_MSG_LOGOUT};
	c->logging_out = true;
	/* A failed send (out of memory) ends the session: ctl_client_fail
	 * then reports LOGGED_OUT from inside this call, the one callback
	 * that may. */
	if (ctl_client_send(c, &m) < 0 && c->state == CTL_CLIENT_LOGGED_OUT)
		return -ENOTCONN;
	return 0;
}
