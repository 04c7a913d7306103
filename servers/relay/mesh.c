/* The relay mesh: every relay keeps one connection to each sibling relay of
 * its region (learned from mesh-control), as a client with the MESH flag.
 * Over it the sibling announces its clients (PEER_PRESENT / PEER_GONE) and
 * we send FORWARD frames for them. The sibling's SERVER_KEY must be the key
 * mesh-control lists for it. Links are redialled with backoff (1 s doubling
 * to 30 s). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/relay/http.h"
#include "core/util/log.h"
#include "servers/relay/relay_int.h"

#define LINK_BACKOFF_MIN_MS   1000
#define LINK_BACKOFF_MAX_MS   30000
#define LINK_WRITE_TIMEOUT_MS 15000
#define LINK_HANDSHAKE_MS     10000

bool rly_is_sibling(const struct rly_server *s, const uint8_t *key)
{
	for (size_t i = 0; i < s->n_sibs; i++)
		if (sodium_memcmp(s->sibs[i].key, key, 32) == 0)
			return true;
	return false;
}

void rly_mesh_announce(struct rly_server *s, const uint8_t *key, bool present)
{
	uint8_t fr[RELAY_HDR_LEN + 33];
	size_t n = relay_encode_peer(
	    fr, sizeof fr, present ? RELAY_FRAME_PEER_PRESENT : RELAY_FRAME_PEER_GONE,
	    key, RELAY_GONE_DISCONNECTED);
	for (struct rly_conn *c = s->conns; c; c = c->next)
		if (!c->dead && c->mesh && c->state == RC_ACTIVE)
			rly_conn_send_ctl(c, fr, n);
}

static void dial(struct rly_link *l);

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	dial(arg);
}

static void schedule(struct rly_link *l)
{
	uint32_t ms = l->backoff_ms ? l->backoff_ms : LINK_BACKOFF_MIN_MS;
	l->backoff_ms = ms * 2 > LINK_BACKOFF_MAX_MS ? LINK_BACKOFF_MAX_MS : ms * 2;
	/* jitter: 0.5 .. 1.0 of the wait */
	ms = ms / 2 + randombytes_uniform(ms / 2 + 1);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(l->retry, &tv);
}

void rly_link_closed(struct rly_conn *c)
{
	struct rly_link *l = c->link;
	if (!l)
		return;
	l->c = NULL;
	c->link = NULL;
	schedule(l);
}

static void dial(struct rly_link *l)
{
	struct rly_server *s = l->s;
	struct bufferevent *bev;
	if (l->sib.tls) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		SSL *ssl = ctx ? SSL_new(ctx) : NULL;
		if (ctx)
			SSL_CTX_free(ctx); /* the SSL holds a reference */
		if (ssl)
			SSL_set_tlsext_host_name(ssl, l->sib.host);
		bev = ssl ? bufferevent_openssl_socket_new(s->cfg.base, -1, ssl,
		                                           BUFFEREVENT_SSL_CONNECTING,
		                                           BEV_OPT_CLOSE_ON_FREE)
		          : NULL;
		if (!bev && ssl)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(s->cfg.base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	struct rly_conn *c = bev ? rly_conn_alloc(s, bev) : NULL;
	if (c && rly_conn_link_queue(c) < 0) {
		rly_conn_close(c, "out of memory");
		c = NULL;
		bev = NULL; /* freed with c */
	}
	if (!c) {
		if (bev)
			bufferevent_free(bev);
		schedule(l);
		return;
	}
	c->outbound = true;
	c->link = l;
	c->state = RC_CONNECTING;
	memcpy(c->key, l->sib.key, 32);
	snprintf(c->peer, sizeof c->peer, "sibling %.40s:%u", l->sib.host, l->sib.port);
	l->c = c;
	c->deadline_ms = rly_now_ms() + LINK_HANDSHAKE_MS;
	struct timeval hs = {LINK_HANDSHAKE_MS / 1000, 0};
	bufferevent_set_timeouts(bev, &hs, &hs);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	/* Names through evdns: a NULL base would resolve with the blocking
	 * getaddrinfo() on the loop (review M1). */
	if (!s->dns) {
		s->dns =
		    evdns_base_new(s->cfg.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!s->dns) {
			log_warn(
			    "mesh-relay: no DNS servers (/etc/resolv.conf): siblings "
			    "listed by name cannot be reached, addresses still can");
			s->dns =
			    evdns_base_new(s->cfg.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		}
	}
	if (!s->dns || bufferevent_socket_connect_hostname(bev, s->dns, AF_UNSPEC,
	                                                   l->sib.host, l->sib.port) < 0)
		rly_conn_close(c, "connect failed");
}

static bool on_frame(struct rly_conn *c, const struct relay_frame *f)
{
	struct rly_server *s = c->s;
	struct rly_link *l = c->link;
	switch (c->state) {
	case RC_WAIT_KEY: {
		if (f->type != RELAY_FRAME_SERVER_KEY ||
		    sodium_memcmp(f->u.server_key.key, l->sib.key, 32) != 0) {
			log_warn(
			    "mesh-relay: %s: its relay key is not the one mesh-control "
			    "lists; not meshing with it",
			    c->peer);
			rly_conn_close(c, "sibling key mismatch");
			return false;
		}
		uint8_t fr[RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN];
		memcpy(c->peer_chal, f->u.server_key.challenge, 32);
		size_t n =
		    relay_client_info_seal(fr, sizeof fr, s->cfg.pub, s->cfg.priv,
		                           l->sib.key, f->u.server_key.challenge,
		                           RELAY_CLIENT_MESH, c->challenge, c->eph_priv);
		bufferevent_write(c->bev, fr, n);
		c->state = RC_WAIT_SINFO;
		return true;
	}
	case RC_WAIT_SINFO:
		if (f->type == RELAY_FRAME_REFUSED) {
			/* (log_msg makes the sibling's text harmless.) */
			log_warn("mesh-relay: %s refused the mesh link: %.*s", c->peer,
			         (int)f->u.text.text_len, f->u.text.text);
			rly_conn_close(c, "refused");
			return false;
		}
		uint8_t peer_eph[32], settings[RELAY_SETTINGS_LEN];
		if (f->type == RELAY_FRAME_SERVER_INFO)
			relay_server_info_settings(f, settings);
		if (f->type != RELAY_FRAME_SERVER_INFO ||
		    relay_server_info_open(f, s->cfg.priv, l->sib.key, c->challenge,
		                           peer_eph) < 0 ||
		    relay_session_init(&c->sess, true, c->eph_priv, peer_eph, s->cfg.pub,
		                       l->sib.key, c->peer_chal, c->challenge,
		                       settings) < 0) {
			log_warn(
			    "mesh-relay: %s: SERVER_INFO without a valid proof of the "
			    "sibling's key; not meshing with it",
			    c->peer);
			rly_conn_close(c, "no proof of the sibling's key");
			return false;
		}
		c->state = RC_ACTIVE;
		c->sealed = true; /* every frame after SERVER_INFO */
		c->ka_ms = rly_now_ms();
		c->deadline_ms = 0;
		l->backoff_ms = 0;
		s->st.mesh_links_up++;
		{
			struct timeval wt = {LINK_WRITE_TIMEOUT_MS / 1000, 0};
			bufferevent_set_timeouts(c->bev, NULL, &wt);
		}
		log_info("mesh-relay: %s: mesh link up", c->peer);
		return true;
	case RC_ACTIVE:
		if (f->type == RELAY_FRAME_PEER_PRESENT) {
			if (rly_keymap_put(&s->routes, f->u.peer.key, c) < 0)
				s->st.drop_nomem++;
			/* Our own client with that key may be a dead one. */
			rly_client_suspect(s, f->u.peer.key);
		} else if (f->type == RELAY_FRAME_PEER_GONE) {
			rly_keymap_del(&s->routes, f->u.peer.key, c);
		} else if (f->type == RELAY_FRAME_PEERS_RESET) {
			rly_keymap_del_val(&s->routes, c);
		} else if (f->type == RELAY_FRAME_PING) {
			uint8_t fr[RELAY_HDR_LEN + RELAY_PING_LEN];
			size_t n = relay_encode_ping(fr, sizeof fr, RELAY_FRAME_PONG,
			                             f->u.ping.data);
			rly_conn_send(c, fr, n, NULL, 0);
		}
		return true;
	default:
		return true;
	}
}

void rly_link_on_read(struct rly_conn *c)
{
	if (c->state == RC_CONNECTING) {
		char req[512];
		char host[300];
		snprintf(host, sizeof host, "%s:%u", c->link->sib.host,
		         c->link->sib.port);
		size_t n = relay_http_request(req, sizeof req, host);
		bufferevent_write(c->bev, req, n);
		c->state = RC_WAIT_101;
		return;
	}
	if (c->state == RC_WAIT_101) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		size_t len = evbuffer_get_length(in);
		if (len > RELAY_HTTP_HEAD_MAX)
			len = RELAY_HTTP_HEAD_MAX;
		const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
		int r = p ? relay_http_parse_response(p, len) : -1;
		if (r == 0)
			return;
		if (r < 0) {
			log_warn("mesh-relay: %s: not a mesh relay (HTTP answer %d)",
			         c->peer, -r);
			rly_conn_close(c, "upgrade refused");
			return;
		}
		evbuffer_drain(in, (size_t)r);
		c->state = RC_WAIT_KEY;
	}
	rly_conn_read_frames(c, on_frame);
}

static bool same_sib(const struct rly_sibling *a, const struct rly_sibling *b)
{
	return a->port == b->port && a->tls == b->tls && !strcmp(a->host, b->host) &&
	       !memcmp(a->key, b->key, 32);
}

static void link_free(struct rly_link *l)
{
	if (l->c) {
		l->c->link = NULL;
		rly_conn_close(l->c, "sibling no longer listed");
	}
	if (l->retry)
		event_free(l->retry);
	free(l);
}

void rly_links_free(struct rly_server *s)
{
	while (s->links) {
		struct rly_link *l = s->links;
		s->links = l->next;
		link_free(l);
	}
}

int rly_server_set_siblings(struct rly_server *s, const struct rly_sibling *sib, size_t n)
{
	struct rly_sibling *v = n ? malloc(n * sizeof *v) : NULL;
	if (n && !v)
		return -ENOMEM;
	if (n)
		memcpy(v, sib, n * sizeof *v);
	free(s->sibs);
	s->sibs = v;
	s->n_sibs = n;
	/* Drop links to siblings no longer listed. */
	for (struct rly_link **pp = &s->links; *pp;) {
		struct rly_link *l = *pp;
		bool keep = false;
		for (size_t i = 0; i < n && !keep; i++)
			keep = same_sib(&l->sib, &sib[i]);
		if (keep) {
			pp = &l->next;
		} else {
			*pp = l->next;
			link_free(l);
		}
	}
	/* Inbound mesh connections from relays no longer siblings. */
	for (struct rly_conn *c = s->conns; c; c = c->next)
		if (!c->dead && c->mesh && !rly_is_sibling(s, c->key))
			rly_conn_close(c, "no longer a sibling relay");
	/* Dial new ones. */
	for (size_t i = 0; i < n; i++) {
		bool have = false;
		for (struct rly_link *l = s->links; l && !have; l = l->next)
			have = same_sib(&l->sib, &sib[i]);
		if (have)
			continue;
		struct rly_link *l = calloc(1, sizeof *l);
		if (!l)
			return -ENOMEM;
		l->s = s;
		l->sib = sib[i];
		l->retry = evtimer_new(s->cfg.base, retry_cb, l);
		if (!l->retry) {
			free(l);
			return -ENOMEM;
		}
		l->next = s->links;
		s->links = l;
		log_info("mesh-relay: meshing with sibling relay %s:%u", l->sib.host,
		         l->sib.port);
		dial(l);
	}
	return 0;
}
