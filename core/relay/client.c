/* The node's relay client: lifecycle, connecting (TCP or TLS), timers,
 * backoff and status. The upgrade, the handshake and the frames in and out
 * are in client_io.c. See client.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/relay/client_int.h"
#include "core/relay/http.h"
#include "core/util/clock.h"
#include "core/util/log.h"

static void do_connect(struct relay_client *c);

uint64_t rc_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *relay_client_state_name(enum relay_client_state s)
{
	switch (s) {
	case RELAY_CLIENT_CONNECTING:
		return "connecting";
	case RELAY_CLIENT_HANDSHAKE:
		return "handshake";
	case RELAY_CLIENT_CONNECTED:
		return "connected";
	case RELAY_CLIENT_BACKOFF:
		return "backoff";
	}
	return "unknown";
}

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static void destroy(struct relay_client *c);

/* Every entry from the loop goes through enter/leave, so relay_client_free
 * from inside a callback only marks the client dead and the last leave
 * frees it. */
static void enter(struct relay_client *c)
{
	c->depth++;
}

static void leave(struct relay_client *c)
{
	if (--c->depth == 0 && c->dead)
		destroy(c);
}

void rc_set_state(struct relay_client *c, enum relay_client_state st, const char *detail)
{
	c->state = st;
	snprintf(c->detail, sizeof c->detail, "%s", detail ? detail : "");
	log_debug("relay %s:%u: %s%s%s", c->host, c->port, relay_client_state_name(st),
	          c->detail[0] ? ": " : "", c->detail);
	if (c->cb.on_state && !c->dead)
		c->cb.on_state(c->ctx, c, st, c->detail);
}

static void close_conn(struct relay_client *c)
{
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->gen++;
	c->out_room = 0;
	rc_pending_clear(c);
	relay_session_wipe(&c->sess);
	sodium_memzero(c->eph_priv, sizeof c->eph_priv);
	c->sealed = false;
	c->ping_out = false;
	c->connected_since = 0;
	if (c->ev_timer)
		evtimer_del(c->ev_timer);
	if (c->ev_tick)
		evtimer_del(c->ev_tick);
}

/* The next wait: the short schedule inside a RESTARTING window, else the
 * jittered exponential backoff (a connection that lasted RC_STABLE_MS
 * resets it first; slow starts at the top). */
static uint32_t next_wait(struct relay_client *c, uint64_t now, bool slow)
{
	bool after_session = c->session_start_ms != 0;
	if (c->session_start_ms && now - c->session_start_ms >= RC_STABLE_MS)
		c->backoff_cur_ms = c->backoff_min_ms;
	c->session_start_ms = 0;
	if (now < c->restart_until_ms && !slow) {
		if (now < c->restart_at_ms)
			return (uint32_t)(c->restart_at_ms - now);
		/* The short schedule grows, and each wait is spread over the
		 * whole step: a relay that comes back slowly is not stormed. */
		uint32_t step =
		    c->restart_step_ms ? c->restart_step_ms : RC_RESTART_RETRY_MS;
		c->restart_step_ms =
		    step > RC_RESTART_STEP_MAX / 2 ? RC_RESTART_STEP_MAX : step * 2;
		return randombytes_uniform(step + 1);
	}
	if (slow)
		c->backoff_cur_ms = c->backoff_max_ms;
	if (c->backoff_cur_ms < c->backoff_min_ms)
		c->backoff_cur_ms = c->backoff_min_ms;
	/* jitter: a factor in [0.5, 1.0]; in [0, 1.0] when a connection was
	 * just lost (all of a relay's clients lose it at the same moment). */
	uint32_t lo = after_session ? 0 : 500;
	uint32_t wait = (uint32_t)(((uint64_t)c->backoff_cur_ms *
	                            (lo + randombytes_uniform(1000 - lo + 1))) /
	                           1000);
	c->backoff_cur_ms = c->backoff_cur_ms > c->backoff_max_ms / 2
	                        ? c->backoff_max_ms
	                        : c->backoff_cur_ms * 2;
	return wait;
}

/* A detail cut to fit may end inside a UTF-8 character: drop it. */
static void utf8_trim_partial(char *s)
{
	size_t n = strlen(s), i = n;
	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = 0;
}

void rc_fail(struct relay_client *c, bool slow, const char *fmt, ...)
{
	char why[sizeof c->detail], detail[sizeof c->detail];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	close_conn(c);
	uint64_t now = mono_now_ms();
	bool restarting = now < c->restart_until_ms && !slow;
	uint32_t wait = next_wait(c, now, slow);
	c->retry_at_ms = now + wait;
	timer_in(c->ev_timer, wait);
	/* The reason first: it is what a reader needs; the wait fits after. */
	int n = restarting
	            ? snprintf(detail, sizeof detail,
	                       "relay restarting; reconnecting in %u ms (%s)", wait, why)
	            : snprintf(detail, sizeof detail, "%s; retrying in %u ms", why, wait);
	if (n >= (int)sizeof detail)
		utf8_trim_partial(detail);
	rc_set_state(c, RELAY_CLIENT_BACKOFF, detail);
}

void rc_plan_restart(struct relay_client *c, uint32_t in_ms, uint32_t for_ms)
{
	uint64_t now = mono_now_ms();
	if (in_ms > RC_RESTART_IN_MAX)
		in_ms = RC_RESTART_IN_MAX;
	if (for_ms > RC_RESTART_FOR_MAX)
		for_ms = RC_RESTART_FOR_MAX;
	/* Spread the clients of one relay: up to half the wait, at most 1 s. */
	uint32_t spread = in_ms / 2 < 1000 ? in_ms / 2 : 1000;
	c->restart_at_ms = now + in_ms + randombytes_uniform(spread + 1);
	c->restart_until_ms = c->restart_at_ms + for_ms;
	c->restart_step_ms = RC_RESTART_RETRY_MS;
	c->backoff_cur_ms = c->backoff_min_ms;
	log_info("relay %s:%u: the relay is restarting; reconnecting in about %u ms",
	         c->host, c->port, in_ms);
}

void rc_session_up(struct relay_client *c, uint16_t keepalive_s)
{
	uint64_t now = mono_now_ms();
	evtimer_del(c->ev_timer);
	c->connects++;
	c->session_start_ms = now;
	c->connected_since = (int64_t)time(NULL);
	/* Whatever the relay says: a huge value would leave a dead path
	 * unnoticed for hours (review M1), a tiny one is a PING storm. */
	uint32_t ka = keepalive_s ? keepalive_s : RC_KEEPALIVE_DFLT_S;
	if (ka < RC_KEEPALIVE_MIN_S)
		ka = RC_KEEPALIVE_MIN_S;
	if (ka > RC_KEEPALIVE_MAX_S)
		ka = RC_KEEPALIVE_MAX_S;
	c->keepalive_ms = ka * 1000u;
	c->last_rx_ms = now;
	c->last_ping_ms = 0; /* the first PING at once: an RTT early */
	c->restart_until_ms = c->restart_at_ms = 0;
	timer_in(c->ev_tick, 0);
}

static void send_ping(struct relay_client *c, uint64_t now)
{
	uint8_t fr[RELAY_HDR_LEN + RELAY_PING_LEN];
	randombytes_buf(c->ping_data, sizeof c->ping_data);
	size_t n = relay_encode_ping(fr, sizeof fr, RELAY_FRAME_PING, c->ping_data);
	c->ping_sent_us = rc_now_us();
	/* Outstanding even when dropped for a full output: a relay that does
	 * not read is as dead as one that does not answer. */
	c->ping_out = true;
	c->last_ping_ms = now;
	rc_write_ctl(c, fr, n);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct relay_client *c = arg;
	enter(c);
	if (c->state != RELAY_CLIENT_CONNECTED || !c->bev)
		goto out;
	uint64_t now = mono_now_ms();
	uint64_t silence = (uint64_t)c->keepalive_ms * 5 / 2;
	/* last_rx_ms moves only when a frame opens (client_io.c). */
	if (now - c->last_rx_ms >= silence) {
		rc_fail(c, false, "relay silent for %llu ms",
		        (unsigned long long)silence);
		goto out;
	}
	if (c->ping_out && now - c->last_ping_ms >= silence) {
		rc_fail(c, false, "relay did not answer a PING within %llu ms",
		        (unsigned long long)silence);
		goto out;
	}
	/* One PING at a time: its PONG (or the lack of one) is what counts. */
	if (!c->ping_out &&
	    (!c->last_ping_ms || now - c->last_ping_ms >= c->keepalive_ms)) {
		send_ping(c, now);
		if (c->dead || c->state != RELAY_CLIENT_CONNECTED)
			goto out;
	}
	/* The next PING is due at last_ping + keepalive; once that has passed
	 * with the PING still out, its deadline is last_ping + silence. */
	uint64_t next = c->last_ping_ms + c->keepalive_ms;
	if (next <= now)
		next = c->last_ping_ms + silence;
	if (c->last_rx_ms + silence < next)
		next = c->last_rx_ms + silence;
	timer_in(c->ev_tick, next > now ? next - now : 1);
out:
	leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay_client *c = arg;
	enter(c);
	if (c->state == RELAY_CLIENT_BACKOFF) {
		if (c->notify) {
			char detail[sizeof c->detail];
			memcpy(detail, c->detail, sizeof detail);
			c->notify = false;
			rc_set_state(c, RELAY_CLIENT_BACKOFF, detail);
		}
		/* A redial's BACKOFF is reported at once, its wait runs on. */
		uint64_t now = mono_now_ms();
		if (!c->dead && c->state == RELAY_CLIENT_BACKOFF && c->retry_at_ms > now)
			timer_in(c->ev_timer, c->retry_at_ms - now);
		else if (!c->dead && c->state == RELAY_CLIENT_BACKOFF)
			do_connect(c);
	} else if (c->state == RELAY_CLIENT_CONNECTING) {
		rc_fail(c, false, "cannot connect to %s:%u: no answer within %u ms",
		        c->host, c->port, c->connect_timeout_ms);
	} else if (c->state == RELAY_CLIENT_HANDSHAKE) {
		rc_fail(
		    c, false,
		    "relay handshake not done within %u ms (is %s:%u a mesh relay%s?)",
		    c->connect_timeout_ms, c->host, c->port, c->tls ? " with TLS" : "");
	}
	leave(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct relay_client *c = arg;
	enter(c);
	rc_on_read(c);
	leave(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct relay_client *c = arg;
	enter(c);
	rc_pump(c);
	leave(c);
}

/* Why the connection ended, for people. */
static void describe_error(struct relay_client *c, struct bufferevent *bev, short what,
                           char *why, size_t cap)
{
	int e = EVUTIL_SOCKET_ERROR(); /* first: the calls below may change it */
	int dnserr = bufferevent_socket_get_dns_error(bev);
	unsigned long ssl_err = c->tls ? bufferevent_get_openssl_error(bev) : 0;
	if (dnserr)
		snprintf(why, cap, "cannot resolve %.60s: %s", c->host,
		         evutil_gai_strerror(dnserr));
	else if (ssl_err)
		snprintf(why, cap, "TLS failed: %s",
		         ERR_reason_error_string(ssl_err)
		             ? ERR_reason_error_string(ssl_err)
		             : "unknown error");
	else if (what & BEV_EVENT_EOF)
		snprintf(why, cap, "connection closed by the relay");
	else if (e)
		snprintf(why, cap, "%s", evutil_socket_error_to_string(e));
	else
		snprintf(why, cap, "connection lost");
	/* Drain the rest of the thread's OpenSSL error queue. */
	if (c->tls)
		while (bufferevent_get_openssl_error(bev))
			;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay_client *c = arg;
	enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == RELAY_CLIENT_CONNECTING) {
			int one = 1;
			evutil_socket_t fd = bufferevent_getfd(bev);
			if (fd >= 0)
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				           sizeof one);
			rc_set_state(c, RELAY_CLIENT_HANDSHAKE, "");
			if (!c->dead && c->bev == bev &&
			    c->state == RELAY_CLIENT_HANDSHAKE)
				rc_send_upgrade(c);
		}
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		char why[100];
		describe_error(c, bev, what, why, sizeof why);
		if (c->state == RELAY_CLIENT_CONNECTING)
			rc_fail(c, false, "cannot connect to %s:%u: %s", c->host, c->port,
			        why);
		else
			rc_fail(c, false, "%s", why);
	}
	leave(c);
}

static struct bufferevent *new_bev(struct relay_client *c)
{
	if (!c->tls)
		return bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	SSL *ssl = SSL_new(c->ssl_ctx);
	if (!ssl)
		return NULL;
	/* SNI for a name; an IP literal may not be sent as SNI (RFC 6066). */
	if (!c->addr_len)
		SSL_set_tlsext_host_name(ssl, c->host);
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* A relay that goes away without close_notify is an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static void do_connect(struct relay_client *c)
{
	close_conn(c);
	if (c->attempted)
		c->reconnects++;
	c->attempted = true;
	c->bev = new_bev(c);
	if (!c->bev) {
		rc_fail(c, false, "out of memory");
		return;
	}
	struct bufferevent *bev = c->bev;
	uint64_t gen = c->gen;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	/* At most a frame and an upgrade head wait in the input. */
	bufferevent_setwatermark(bev, EV_READ, 0, RELAY_FRAME_MAX + RELAY_HTTP_HEAD_MAX);
	bufferevent_setwatermark(bev, EV_WRITE, c->out_low / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	c->hs = RC_HS_101;
	timer_in(c->ev_timer, c->connect_timeout_ms);
	rc_set_state(c, RELAY_CLIENT_CONNECTING, "");
	if (c->dead || c->gen != gen || c->state != RELAY_CLIENT_CONNECTING)
		return;
	int rc = c->addr_len ? bufferevent_socket_connect(
	                           bev, (struct sockaddr *)&c->addr, (int)c->addr_len)
	                     : bufferevent_socket_connect_hostname(bev, c->dns, AF_UNSPEC,
	                                                           c->host, c->port);
	if (rc < 0 && !c->dead && c->gen == gen && c->state == RELAY_CLIENT_CONNECTING)
		rc_fail(c, false, "cannot connect to %s:%u: %s", c->host, c->port,
		        evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* --- public --------------------------------------------------------------- */

static bool parse_literal(struct relay_client *c)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&c->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->addr;
	memset(&c->addr, 0, sizeof c->addr);
	c->addr_len = 0;
	if (inet_pton(AF_INET, c->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		c->addr_len = sizeof *s4;
	} else if (inet_pton(AF_INET6, c->host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		c->addr_len = sizeof *s6;
	}
	return c->addr_len != 0;
}

static int configure(struct relay_client *c, const struct relay_client_config *cfg,
                     char *err, size_t errlen)
{
	if (!cfg->base || !cfg->host || !cfg->host[0] || !cfg->port) {
		snprintf(err, errlen, "relay client: base, host and port are required");
		return -1;
	}
	if (strlen(cfg->host) >= sizeof c->host || strpbrk(cfg->host, "\r\n ")) {
		snprintf(err, errlen, "relay client: \"%.64s\" is not a host name",
		         cfg->host);
		return -1;
	}
	memcpy(c->host, cfg->host, strlen(cfg->host) + 1);
	c->port = cfg->port;
	if (!parse_literal(c) && !cfg->dns) {
		snprintf(
		    err, errlen,
		    "relay client: host \"%s\" is not an IP address and no resolver was "
		    "given",
		    c->host);
		return -1;
	}
	c->base = cfg->base;
	c->dns = cfg->dns;
	c->tls = cfg->tls;
	memcpy(c->relay_key, cfg->relay_key, 32);
	memcpy(c->node_priv, cfg->node_priv, 32);
	memcpy(c->node_pub, cfg->node_pub, 32);
	c->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
	c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000;
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
	c->backoff_cur_ms = c->backoff_min_ms;
	c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000;
	c->queue_bytes = cfg->queue_bytes ? cfg->queue_bytes : 1024u * 1024u;
	if (c->queue_bytes < RELAY_CLIENT_QUEUE_MIN)
		c->queue_bytes = RELAY_CLIENT_QUEUE_MIN;
	c->out_low = c->queue_bytes / 4 < RC_OUT_LOW ? c->queue_bytes / 4 : RC_OUT_LOW;
	if (cfg->cb)
		c->cb = *cfg->cb;
	c->ctx = cfg->ctx;
	return 0;
}

struct relay_client *relay_client_new(const struct relay_client_config *cfg, char *err,
                                      size_t errlen)
{
	if (!cfg) {
		snprintf(err, errlen, "relay client: no configuration");
		return NULL;
	}
	struct relay_client *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "relay client: out of memory");
		return NULL;
	}
	if (configure(c, cfg, err, errlen) < 0) {
		destroy(c);
		return NULL;
	}
	if (c->tls) {
		/* The relay key pin authenticates the relay (client.h): the
		 * certificate is not verified. */
		c->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (!c->ssl_ctx) {
			snprintf(err, errlen,
			         "relay client: cannot set up TLS (OpenSSL)");
			destroy(c);
			return NULL;
		}
		SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	c->pending = evbuffer_new();
	c->ev_timer = evtimer_new(c->base, on_timer, c);
	c->ev_tick = evtimer_new(c->base, on_tick, c);
	if (!c->pending || !c->ev_timer || !c->ev_tick) {
		snprintf(err, errlen, "relay client: out of memory");
		destroy(c);
		return NULL;
	}
	/* Start from the loop: on_timer in BACKOFF connects. */
	c->state = RELAY_CLIENT_BACKOFF;
	timer_in(c->ev_timer, 0);
	return c;
}

static void destroy(struct relay_client *c)
{
	close_conn(c);
	if (c->ev_timer)
		event_free(c->ev_timer);
	if (c->ev_tick)
		event_free(c->ev_tick);
	if (c->pending)
		evbuffer_free(c->pending);
	if (c->ssl_ctx)
		SSL_CTX_free(c->ssl_ctx);
	sodium_memzero(c, sizeof *c);
	free(c);
}

void relay_client_free(struct relay_client *c)
{
	if (!c)
		return;
	if (c->depth > 0) {
		/* inside a callback: stop now, free when the stack unwinds */
		c->dead = true;
		close_conn(c);
		return;
	}
	destroy(c);
}

bool relay_client_connected(const struct relay_client *c)
{
	return c && !c->dead && c->state == RELAY_CLIENT_CONNECTED && c->bev;
}

void relay_client_get_status(const struct relay_client *c, struct relay_client_status *st)
{
	memset(st, 0, sizeof *st);
	if (!c)
		return;
	st->state = c->state;
	snprintf(st->detail, sizeof st->detail, "%s", c->detail);
	st->rtt_us = c->rtt_us;
	st->connected_since = c->connected_since;
	st->connects = c->connects;
	st->reconnects = c->reconnects;
	st->tx_packets = c->tx_packets;
	st->tx_bytes = c->tx_bytes;
	st->rx_packets = c->rx_packets;
	st->rx_bytes = c->rx_bytes;
	st->tx_drop_notconn = c->tx_drop_notconn;
	st->tx_drop_queue = c->tx_drop_queue;
	st->tx_drop_ctl = c->tx_drop_ctl;
	st->keepalive_ms = c->state == RELAY_CLIENT_CONNECTED ? c->keepalive_ms : 0;
	st->rx_drop_bad = c->rx_drop_bad;
	st->rx_drop_oversize = c->rx_drop_oversize;
	st->rx_drop_seal = c->rx_drop_seal;
	st->rx_skipped = c->rx_skipped;
	st->queued_bytes = c->pend_bytes;
	if (c->bev)
		st->queued_bytes += evbuffer_get_length(bufferevent_get_output(c->bev));
	uint64_t now = mono_now_ms();
	if (c->state == RELAY_CLIENT_BACKOFF && c->retry_at_ms > now)
		st->next_attempt_ms = (uint32_t)(c->retry_at_ms - now);
}

void relay_client_redial(struct relay_client *c)
{
	if (!c || c->dead)
		return;
	uint64_t now = mono_now_ms();
	bool stable = c->session_start_ms && now - c->session_start_ms >= RC_STABLE_MS;
	close_conn(c);
	c->restart_at_ms = c->restart_until_ms = 0;
	/* The backoff moves as a failure would move it (a stable session
	 * starts it over). After a stable session the wait is the spread
	 * alone; else at least backoff_min (next_wait spreads a lost
	 * session's wait from 0: the last redial's must not make this one
	 * immediate). */
	uint32_t wait = next_wait(c, now, false);
	if (!stable && wait < c->backoff_min_ms)
		wait = c->backoff_min_ms;
	uint32_t spread = randombytes_uniform(RC_REDIAL_SPREAD_MS + 1);
	if (stable || spread > wait)
		wait = spread;
	c->state = RELAY_CLIENT_BACKOFF;
	snprintf(c->detail, sizeof c->detail, "our network changed; redialling in %u ms",
	         wait);
	c->notify = true;
	c->retry_at_ms = now + wait;
	timer_in(c->ev_timer, 0); /* on_state from the loop, then the wait */
}

int relay_client_local_addr(const struct relay_client *c, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (!c || c->dead || !c->bev)
		return -ENOTCONN;
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	if (fd < 0 || getsockname(fd, (struct sockaddr *)ss, &len) != 0)
		return -ENOTCONN;
	return 0;
}

void relay_client_reconnect(struct relay_client *c)
{
	if (!c || c->dead)
		return;
	/* No callback from here: drop now, report and reconnect from the loop. */
	close_conn(c);
	c->session_start_ms = 0;
	c->restart_at_ms = c->restart_until_ms = 0;
	c->backoff_cur_ms = c->backoff_min_ms;
	c->state = RELAY_CLIENT_BACKOFF;
	snprintf(c->detail, sizeof c->detail, "reconnect requested");
	c->notify = true;
	c->retry_at_ms = mono_now_ms();
	timer_in(c->ev_timer, 0);
}
