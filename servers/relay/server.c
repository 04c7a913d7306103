/* mesh-relay's server: listener, the upgrade and handshake, admission,
 * packet routing and the timers (see relay.h); a connection's queues and
 * its frames in and out are in conn.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/relay/http.h"
#include "core/util/clock.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "servers/relay/relay_int.h"

uint64_t rly_now_ms(void)
{
	return mono_now_ms();
}

/* Lines about one peer's bad input or refusal, at most a few a second, so
 * a flood of bad connections cannot flood the log (the counters count all). */
bool rly_log_ok(void)
{
	static uint64_t window;
	static unsigned n;
	uint64_t now = rly_now_ms() / 1000;
	if (now != window) {
		window = now;
		n = 0;
	}
	return ++n <= 5;
}

static void key_short(const uint8_t *k, char out[12])
{
	char b64[48];
	sodium_bin2base64(b64, sizeof b64, k, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, 12, "%.8s", b64);
}

/* --- connections ---------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

struct rly_conn *rly_conn_alloc(struct rly_server *s, struct bufferevent *bev)
{
	struct rly_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	/* One slot until admitted (nothing is queued before): the client's
	 * ring is allocated at admission. */
	if (rly_queue_init(&c->q, 1, s->cfg.queue_bytes) < 0) {
		free(c);
		return NULL;
	}
	c->s = s;
	c->bev = bev;
	c->deadline_ms = rly_now_ms() + s->cfg.handshake_ms;
	s->n_live++;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, RLY_OUT_LOW / 2, 0);
	/* At most one frame (and an upgrade head) waits in the input. */
	bufferevent_setwatermark(bev, EV_READ, 0, RELAY_FRAME_MAX + RELAY_HTTP_HEAD_MAX);
	return c;
}

/* The source address's slot in s->pending_ip: IPv4 by address, IPv6 by
 * its /64 (one host usually holds a whole /64). */
static uint16_t ip_slot(const struct rly_server *s, const struct sockaddr *sa)
{
	uint8_t a[16] = {0}, h[crypto_shorthash_BYTES];
	size_t n = 0;
	if (sa->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		n = 4;
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *v6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		bool mapped =
		    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
		memcpy(a, mapped ? v6 + 12 : v6, mapped ? 4 : 8);
		n = mapped ? 4 : 8;
	}
	crypto_shorthash(h, a, n, s->ip_hash_key);
	return (uint16_t)((h[0] | h[1] << 8) % RLY_IP_SLOTS);
}

/* c leaves the not-yet-admitted count (admitted or closed). */
static void pending_done(struct rly_conn *c)
{
	if (!c->pending)
		return;
	c->pending = false;
	c->s->n_pending--;
	c->s->pending_ip[c->ip_slot]--;
}

/* Removes c from the lookup tables (and tells siblings a client left). */
static void unlink_maps(struct rly_conn *c)
{
	struct rly_server *s = c->s;
	pending_done(c);
	if (c->state == RC_ACTIVE && !c->mesh && !c->outbound &&
	    rly_keymap_get(&s->clients, c->key) == c) {
		rly_keymap_del(&s->clients, c->key, c);
		s->st.clients--;
		rly_mesh_announce(s, c->key, false);
	}
	if (c->state == RC_ACTIVE && c->mesh)
		s->st.mesh_in--;
	if (c->outbound) {
		/* Routes through this link are gone: one pass (review M7). */
		rly_keymap_del_val(&s->routes, c);
		if (c->state == RC_ACTIVE)
			s->st.mesh_links_up--;
	}
}

void rly_conn_close(struct rly_conn *c, const char *why)
{
	if (c->dead)
		return;
	if (why)
		log_debug("mesh-relay: %s: closing: %s", c->peer, why);
	unlink_maps(c);
	c->dead = true;
	c->s->n_live--;
	c->state = RC_CLOSING;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	if (c->outbound)
		rly_link_closed(c);
	event_active(c->s->reap, 0, 0);
}

/* Sends a last frame, then closes once it is written (or at the next tick
 * after 2 s). */
static void close_after(struct rly_conn *c, const uint8_t *frame, size_t len)
{
	unlink_maps(c);
	c->state = RC_CLOSING;
	c->closing_ms = rly_now_ms();
	bufferevent_disable(c->bev, EV_READ);
	uint8_t sealed[RELAY_HDR_LEN + 1 + RELAY_TEXT_MAX + RELAY_TAG_LEN];
	if (len && c->sealed) {
		/* After the handshake even the last word is sealed. */
		if (len > sizeof sealed - RELAY_TAG_LEN)
			len = 0;
		memcpy(sealed, frame, len);
		len = len ? relay_seal(&c->sess, sealed, len, sizeof sealed) : 0;
		frame = sealed;
	}
	if (len)
		bufferevent_write(c->bev, frame, len);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		rly_conn_close(c, NULL);
}

static void free_conn(struct rly_conn *c)
{
	struct rly_server *s = c->s;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->ctl)
		evbuffer_free(c->ctl);
	s->queued -= c->q.bytes;
	rly_queue_free(&c->q);
	sodium_memzero(c, sizeof *c);
	free(c);
}

static void reap_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct rly_server *s = arg;
	for (struct rly_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->dead)
			free_conn(c);
	}
}

/* --- the server side of a connection -------------------------------------- */

static void refuse(struct rly_conn *c, uint8_t reason, const char *text,
                   uint64_t *counter)
{
	uint8_t fr[RELAY_HDR_LEN + 1 + RELAY_TEXT_MAX];
	size_t n = relay_encode_refused(fr, sizeof fr, reason, text);
	char ks[12];
	key_short(c->key, ks);
	if (rly_log_ok())
		log_info("mesh-relay: %s: key %s… refused: %s", c->peer, ks, text);
	(*counter)++;
	close_after(c, fr, n);
}

static bool deliver(struct rly_server *s, struct rly_conn *dst, const uint8_t *src,
                    const uint8_t *data, size_t len)
{
	uint8_t hdr[RELAY_HDR_LEN + 32];
	relay_encode_header(hdr, sizeof hdr, RELAY_FRAME_RECV_PACKET, 32 + len);
	memcpy(hdr + RELAY_HDR_LEN, src, 32);
	return rly_conn_send(dst, hdr, sizeof hdr, data, len) == 0;
}

static bool forward(struct rly_server *s, struct rly_conn *link, const uint8_t *src,
                    const uint8_t *dst, const uint8_t *data, size_t len)
{
	uint8_t hdr[RELAY_HDR_LEN + 64];
	relay_encode_header(hdr, sizeof hdr, RELAY_FRAME_FORWARD, 64 + len);
	memcpy(hdr + RELAY_HDR_LEN, src, 32);
	memcpy(hdr + RELAY_HDR_LEN + 32, dst, 32);
	if (rly_conn_send(link, hdr, sizeof hdr, data, len) < 0)
		return false;
	s->st.packets_forwarded++;
	s->st.bytes_forwarded += len;
	return true;
}

/* A local client wins over a sibling's route for its key, unless it is
 * suspect (a sibling announced the key too, and it has not answered the
 * PING yet): then both get the packet, and the node drops the duplicate
 * (WireGuard's replay window). */
static void on_send_packet(struct rly_conn *c, const struct relay_frame *f)
{
	struct rly_server *s = c->s;
	const uint8_t *dst = f->u.packet.key;
	size_t len = f->u.packet.data_len;
	struct rly_conn *d = rly_keymap_get(&s->clients, dst);
	if (d && deliver(s, d, c->key, f->u.packet.data, len)) {
		s->st.packets_relayed++;
		s->st.bytes_relayed += len;
	}
	struct rly_conn *link =
	    !d || d->suspect_ms ? rly_keymap_get(&s->routes, dst) : NULL;
	if (link)
		forward(s, link, c->key, dst, f->u.packet.data, len);
	if (d || link)
		return;
	s->st.drop_unknown_dest++;
	uint8_t fr[RELAY_HDR_LEN + 33];
	size_t n = relay_encode_peer(fr, sizeof fr, RELAY_FRAME_PEER_GONE, dst,
	                             RELAY_GONE_NOT_HERE);
	rly_conn_send(c, fr, n, NULL, 0);
}

static void send_ping(struct rly_conn *c)
{
	uint8_t data[RELAY_PING_LEN], fr[RELAY_HDR_LEN + RELAY_PING_LEN];
	randombytes_buf(data, sizeof data);
	size_t n = relay_encode_ping(fr, sizeof fr, RELAY_FRAME_PING, data);
	rly_conn_send(c, fr, n, NULL, 0);
}

void rly_client_suspect(struct rly_server *s, const uint8_t *key)
{
	struct rly_conn *d = rly_keymap_get(&s->clients, key);
	if (!d || d->dead || d->suspect_ms)
		return;
	d->suspect_ms = rly_now_ms() + RLY_SUSPECT_MS;
	send_ping(d);
}

static void admit(struct rly_conn *c, bool mesh)
{
	struct rly_server *s = c->s;
	char ks[12];
	key_short(c->key, ks);
	c->mesh = mesh;
	pending_done(c);
	c->deadline_ms = 0;
	if (!mesh) {
		struct rly_conn *old = rly_keymap_get(&s->clients, c->key);
		if (old) {
			s->st.dup_clients++;
			rly_conn_close(old,
			               "replaced by a newer connection of the same key");
		}
		/* Its ring, now that it is admitted. */
		struct rly_queue q;
		bool ok =
		    rly_queue_init(&q, s->cfg.queue_packets, s->cfg.queue_bytes) == 0;
		if (ok) {
			s->queued -= c->q.bytes;
			rly_queue_free(&c->q);
			c->q = q;
		}
		if (!ok || rly_keymap_put(&s->clients, c->key, c) < 0) {
			s->st.drop_nomem++;
			rly_conn_close(c, "out of memory");
			return;
		}
	}
	c->state = RC_ACTIVE;
	c->ka_ms = c->rx_ms = rly_now_ms();
	struct timeval wt = {s->cfg.write_timeout_ms / 1000,
	                     (s->cfg.write_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	/* SERVER_INFO goes out as it is (its settings as on_client_info bound
	 * them into the session); every frame after it is sealed. */
	uint8_t fr[RELAY_HDR_LEN + RELAY_SERVER_INFO_LEN];
	size_t n = relay_encode_server_info(
	    fr, sizeof fr, 0, (uint16_t)s->cfg.queue_packets,
	    (uint16_t)s->cfg.keepalive_s, s->cfg.priv, c->key, c->peer_chal, c->eph_pub);
	bufferevent_write(c->bev, fr, n);
	c->sealed = true;
	if (mesh) {
		s->st.mesh_in++;
		log_info("mesh-relay: %s: sibling relay %s… connected", c->peer, ks);
		/* Tell it every client we have, through the control lane: never
		 * lost to the packet queue's drops (review H3). */
		c->ctl = evbuffer_new();
		if (!c->ctl || rly_conn_link_queue(c) < 0) {
			s->st.drop_nomem++;
			rly_conn_close(c, "out of memory");
			return;
		}
		rly_conn_full_set(c);
		rly_conn_pump(c);
	} else {
		s->st.clients++;
		s->st.clients_total++;
		if (s->health[0]) {
			uint8_t hf[RELAY_HDR_LEN + RELAY_TEXT_MAX];
			size_t hn = relay_encode_health(hf, sizeof hf, s->health);
			rly_conn_send(c, hf, hn, NULL, 0);
		}
		log_debug("mesh-relay: %s: node %s… connected", c->peer, ks);
		rly_mesh_announce(s, c->key, true);
	}
}

static bool on_client_info(struct rly_conn *c, const struct relay_frame *f)
{
	struct rly_server *s = c->s;
	if (f->type != RELAY_FRAME_CLIENT_INFO) {
		s->st.drop_bad_frame++;
		rly_conn_close(c, "expected CLIENT_INFO");
		return false;
	}
	memcpy(c->key, f->u.client_info.key, 32);
	uint8_t ver = 0, flags = 0, peer_eph[32];
	if (relay_client_info_open(f, s->cfg.priv, c->challenge, &ver, &flags,
	                           c->peer_chal, peer_eph) < 0) {
		refuse(c, RELAY_REFUSED_BAD_AUTH,
		       "CLIENT_INFO did not open: the client does not hold the key it "
		       "names, or it answered another challenge",
		       &s->st.refused_bad_auth);
		return false;
	}
	if (ver != RELAY_PROTO_VERSION) {
		refuse(c, RELAY_REFUSED_VERSION,
		       "unsupported relay protocol version (this relay speaks 2: "
		       "update the client)",
		       &s->st.refused_version);
		return false;
	}
	/* The session: our ephemeral key against the client's, bound to the
	 * settings SERVER_INFO will carry (admit sends the same). */
	uint8_t eph_priv[32], settings[RELAY_SETTINGS_LEN];
	crypto_box_keypair(c->eph_pub, eph_priv);
	relay_encode_settings(settings, RELAY_PROTO_VERSION, 0,
	                      (uint16_t)s->cfg.queue_packets,
	                      (uint16_t)s->cfg.keepalive_s);
	if (relay_session_init(&c->sess, false, eph_priv, peer_eph, c->key, s->cfg.pub,
	                       c->challenge, c->peer_chal, settings) < 0) {
		refuse(c, RELAY_REFUSED_BAD_AUTH,
		       "CLIENT_INFO carries an unusable ephemeral key",
		       &s->st.refused_bad_auth);
		return false;
	}
	if (flags & RELAY_CLIENT_MESH) {
		if (!rly_is_sibling(s, c->key)) {
			refuse(
			    c, RELAY_REFUSED_NOT_ADMITTED,
			    "not a relay of this region (see mesh-control relays list)",
			    &s->st.refused_not_admitted);
			return false;
		}
		admit(c, true);
		return !c->dead;
	}
	if (!s->ready) {
		refuse(c, RELAY_REFUSED_NOT_READY,
		       "this relay has not heard from mesh-control yet; retry shortly",
		       &s->st.refused_not_ready);
		return false;
	}
	if (!rly_keymap_get(&s->admitted, c->key)) {
		refuse(c, RELAY_REFUSED_NOT_ADMITTED,
		       "this key is not a node of the mesh (never joined, or removed)",
		       &s->st.refused_not_admitted);
		return false;
	}
	admit(c, false);
	return !c->dead;
}

static bool on_frame(struct rly_conn *c, const struct relay_frame *f)
{
	struct rly_server *s = c->s;
	if (c->state == RC_WAIT_INFO)
		return on_client_info(c, f);
	/* Any frame shows the connection is alive. */
	c->rx_ms = rly_now_ms();
	c->suspect_ms = 0;
	switch (f->type) {
	case RELAY_FRAME_SEND_PACKET:
		if (c->mesh)
			s->st.drop_bad_frame++;
		else
			on_send_packet(c, f);
		break;
	case RELAY_FRAME_FORWARD: {
		if (!c->mesh) {
			s->st.drop_bad_frame++;
			break;
		}
		struct rly_conn *d = rly_keymap_get(&s->clients, f->u.packet.dst);
		if (d && deliver(s, d, f->u.packet.src, f->u.packet.data,
		                 f->u.packet.data_len)) {
			s->st.packets_from_mesh++;
			s->st.bytes_from_mesh += f->u.packet.data_len;
		} else if (!d) {
			s->st.drop_unknown_dest++;
		}
		break;
	}
	case RELAY_FRAME_PING: {
		uint8_t fr[RELAY_HDR_LEN + RELAY_PING_LEN];
		size_t n =
		    relay_encode_ping(fr, sizeof fr, RELAY_FRAME_PONG, f->u.ping.data);
		s->st.pings++;
		rly_conn_send(c, fr, n, NULL, 0);
		break;
	}
	case RELAY_FRAME_KEEPALIVE:
	case RELAY_FRAME_PONG:
	case RELAY_FRAME_HEALTH:
		break;
	default:
		/* Frames only a server sends, or types from a newer client. */
		s->st.drop_bad_frame++;
		break;
	}
	return true;
}

static void on_http(struct rly_conn *c)
{
	struct rly_server *s = c->s;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in);
	if (len > RELAY_HTTP_HEAD_MAX)
		len = RELAY_HTTP_HEAD_MAX;
	const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
	int r = p ? relay_http_parse_request(p, len) : -400;
	if (r == 0)
		return;
	if (r < 0) {
		const char *ans = relay_http_error(-r);
		s->st.refused_http++;
		log_debug("mesh-relay: %s: HTTP %d", c->peer, -r);
		close_after(c, (const uint8_t *)ans, strlen(ans));
		return;
	}
	evbuffer_drain(in, (size_t)r);
	bufferevent_write(c->bev, relay_http_101, strlen(relay_http_101));
	randombytes_buf(c->challenge, sizeof c->challenge);
	uint8_t fr[RELAY_HDR_LEN + RELAY_SERVER_KEY_LEN];
	size_t n = relay_encode_server_key(fr, sizeof fr, s->cfg.pub, c->challenge);
	bufferevent_write(c->bev, fr, n);
	c->state = RC_WAIT_INFO;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct rly_conn *c = arg;
	if (c->outbound) {
		rly_link_on_read(c);
		return;
	}
	if (c->state == RC_HTTP) {
		on_http(c);
		if (c->dead || c->state != RC_WAIT_INFO)
			return;
	}
	rly_conn_read_frames(c, on_frame);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct rly_conn *c = arg;
	if (c->state == RC_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			rly_conn_close(c, NULL);
		return;
	}
	rly_conn_pump(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rly_conn *c = arg;
	struct rly_server *s = c->s;
	if (c->outbound && (what & BEV_EVENT_CONNECTED)) {
		rly_link_on_read(c); /* sends the upgrade request */
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (what & BEV_EVENT_WRITING) {
			s->st.drop_write_timeout++;
			if (rly_log_ok())
				log_info(
				    "mesh-relay: %s: not reading for %u ms; disconnected",
				    c->peer, s->cfg.write_timeout_ms);
			rly_conn_close(c, "write timeout");
		} else {
			s->st.handshake_timeouts++;
			rly_conn_close(c, "handshake timeout");
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		rly_conn_close(c, (what & BEV_EVENT_EOF) ? "closed by peer"
		                                         : "socket error");
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct rly_server *s = arg;
	if (s->n_live >= s->cfg.max_clients) {
		s->st.refused_full++;
		evutil_closesocket(fd);
		return;
	}
	uint16_t slot = ip_slot(s, sa);
	if (s->n_pending >= s->cfg.max_pending ||
	    s->pending_ip[slot] >= s->cfg.max_pending_ip) {
		s->st.refused_pending++;
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct bufferevent *bev;
	if (s->cfg.tls) {
		SSL *ssl = SSL_new(s->cfg.tls);
		bev = ssl ? bufferevent_openssl_socket_new(s->cfg.base, fd, ssl,
		                                           BUFFEREVENT_SSL_ACCEPTING,
		                                           BEV_OPT_CLOSE_ON_FREE)
		          : NULL;
		if (!bev && ssl)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(s->cfg.base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!bev) {
		evutil_closesocket(fd);
		s->st.drop_nomem++;
		return;
	}
	struct rly_conn *c = rly_conn_alloc(s, bev);
	if (!c) {
		bufferevent_free(bev);
		s->st.drop_nomem++;
		return;
	}
	c->state = RC_HTTP;
	c->pending = true;
	c->ip_slot = slot;
	s->n_pending++;
	s->pending_ip[slot]++;
	sockaddr_format((const struct sockaddr_storage *)sa, c->peer, sizeof c->peer);
	struct timeval hs = {s->cfg.handshake_ms / 1000,
	                     (s->cfg.handshake_ms % 1000) * 1000};
	bufferevent_set_timeouts(bev, &hs, &hs);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void relisten_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct rly_server *s = arg;
	evconnlistener_enable(s->lis);
}

/* accept() failed for a reason that will not go away by itself at once
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending connection stays in the
 * backlog and the listener would be readable again at once, spinning the
 * loop. Pause accepting for a second instead (review M6). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct rly_server *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	s->st.accept_errors++;
	if (rly_log_ok())
		log_warn("mesh-relay: accept: %s; not accepting for a second%s",
		         evutil_socket_error_to_string(e),
		         e == EMFILE || e == ENFILE
		             ? " (out of file descriptors: raise the limit, or lower "
		               "--max-clients)"
		             : "");
	evconnlistener_disable(l);
	struct timeval one = {1, 0};
	evtimer_add(s->relisten, &one);
}

/* An inbound connection that must go: silent for 2.5 x keepalive_s (its
 * own PINGs, or its PONGs to ours, stopped), or suspect and silent past its
 * deadline. Its socket may look fine: a peer that vanished without a FIN
 * (firewall, lost NAT state, a laptop on another network) leaves light
 * traffic queued in the kernel, which never trips the write deadline. */
static bool drop_dead(struct rly_conn *c, uint64_t now, uint64_t silence)
{
	struct rly_server *s = c->s;
	if (c->state != RC_ACTIVE || c->outbound)
		return false;
	if (c->suspect_ms && now >= c->suspect_ms) {
		s->st.clients_stale++;
		if (rly_log_ok())
			log_info("mesh-relay: %s: a sibling relay has this node and it "
			         "did not answer a PING in %u ms; disconnected as stale",
			         c->peer, RLY_SUSPECT_MS);
		rly_conn_close(c, "stale: the node is on a sibling relay");
		return true;
	}
	if (now - c->rx_ms < silence)
		return false;
	s->st.clients_dead++;
	if (rly_log_ok())
		log_info("mesh-relay: %s: no frame for %llu ms (PINGed every %u s); "
		         "disconnected as dead",
		         c->peer, (unsigned long long)(now - c->rx_ms),
		         s->cfg.keepalive_s);
	rly_conn_close(c, "dead: silent past 2.5 keepalives");
	return true;
}

/* Every second: stuck closers, handshakes past their deadline (absolute
 * from accept: the libevent timeouts only catch idle peers, and one byte
 * now and then resets them), dead and stale connections, keepalives: a
 * PING to whoever connected to us (the answer proves it alive), KEEPALIVE
 * on our links to siblings. */
static void tick_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct rly_server *s = arg;
	static const uint8_t ka[RELAY_HDR_LEN] = {RELAY_FRAME_KEEPALIVE, 0, 0, 0, 0};
	uint64_t now = rly_now_ms();
	/* Per connection, from its own last one: a tick that comes late
	 * cannot skip a keepalive, and they do not all go out at once. */
	uint64_t ka_every = (uint64_t)s->cfg.keepalive_s * 1000u;
	uint64_t silence = ka_every * 5 / 2;
	/* A tick far behind its second means this process did not run (a
	 * stall, a loaded machine, a paused VM): its clients were not PINGed
	 * meanwhile and what they sent may still wait in the sockets, so this
	 * tick judges no one dead; it PINGs, and the next one judges. */
	bool stalled = now - s->tick_ms > RLY_TICK_STALL_MS;
	s->tick_ms = now;
	for (struct rly_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->dead)
			continue;
		if (c->state == RC_CLOSING && now - c->closing_ms > 2000) {
			rly_conn_close(c, "closing timed out");
		} else if (c->state != RC_CLOSING && c->deadline_ms &&
		           now >= c->deadline_ms) {
			s->st.handshake_timeouts++;
			rly_conn_close(c, "handshake not done in time");
		} else if (!stalled && drop_dead(c, now, silence)) {
			continue;
		} else if (c->state == RC_ACTIVE && now - c->ka_ms >= ka_every) {
			c->ka_ms = now;
			if (c->outbound)
				rly_conn_send(c, ka, sizeof ka, NULL, 0);
			else
				send_ping(c);
		}
	}
}

/* --- public ------------------------------------------------------------- */

int rly_server_set_admitted(struct rly_server *s, const uint8_t (*keys)[32], size_t n)
{
	struct rly_keymap m;
	rly_keymap_init(&m);
	for (size_t i = 0; i < n; i++)
		if (rly_keymap_put(&m, keys[i], (void *)1) < 0) {
			rly_keymap_free(&m);
			return -ENOMEM;
		}
	rly_keymap_free(&s->admitted);
	s->admitted = m;
	s->ready = true;
	s->st.admitted_keys = n;
	for (struct rly_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->dead || c->state != RC_ACTIVE || c->mesh || c->outbound ||
		    rly_keymap_get(&s->admitted, c->key))
			continue;
		refuse(c, RELAY_REFUSED_NOT_ADMITTED, "removed from the mesh",
		       &s->st.removed_cut);
	}
	return 0;
}

/* One frame to every admitted node client. */
static void to_clients(struct rly_server *s, const uint8_t *fr, size_t n)
{
	for (struct rly_conn *c = s->conns; c; c = c->next)
		if (!c->dead && c->state == RC_ACTIVE && !c->mesh && !c->outbound)
			rly_conn_send(c, fr, n, NULL, 0);
}

void rly_server_announce_restart(struct rly_server *s, uint32_t reconnect_ms,
                                 uint32_t try_ms)
{
	uint8_t fr[RELAY_HDR_LEN + 8];
	size_t n = relay_encode_restarting(fr, sizeof fr, reconnect_ms, try_ms);
	to_clients(s, fr, n);
}

void rly_server_set_health(struct rly_server *s, const char *text)
{
	if (!strcmp(s->health, text))
		return;
	snprintf(s->health, sizeof s->health, "%s", text);
	uint8_t fr[RELAY_HDR_LEN + RELAY_TEXT_MAX];
	size_t n = relay_encode_health(fr, sizeof fr, s->health);
	if (n)
		to_clients(s, fr, n);
}

static uint32_t dflt(uint32_t v, uint32_t d)
{
	return v ? v : d;
}

struct rly_server *rly_server_new(const struct rly_config *cfg, char *err, size_t errlen)
{
	struct rly_server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	s->cfg.max_clients = dflt(cfg->max_clients, 10000);
	s->cfg.max_pending = dflt(cfg->max_pending, 1024);
	s->cfg.max_pending_ip = dflt(cfg->max_pending_ip, 64);
	if (s->cfg.max_pending_ip > UINT16_MAX)
		s->cfg.max_pending_ip = UINT16_MAX;
	randombytes_buf(s->ip_hash_key, sizeof s->ip_hash_key);
	s->cfg.queue_packets = dflt(cfg->queue_packets, 64);
	if (s->cfg.queue_packets > RLY_QUEUE_PACKETS_MAX)
		s->cfg.queue_packets = RLY_QUEUE_PACKETS_MAX;
	s->cfg.queue_bytes = dflt(cfg->queue_bytes, 512 * 1024);
	if (s->cfg.queue_bytes < RELAY_FRAME_MAX)
		s->cfg.queue_bytes = RELAY_FRAME_MAX;
	if (!s->cfg.queue_budget)
		s->cfg.queue_budget = (uint64_t)256 << 20;
	s->cfg.write_timeout_ms = dflt(cfg->write_timeout_ms, 5000);
	s->cfg.handshake_ms = dflt(cfg->handshake_ms, 10000);
	s->cfg.keepalive_s = dflt(cfg->keepalive_s, 60);
	s->stun_fd = -1;
	rly_keymap_init(&s->admitted);
	rly_keymap_init(&s->clients);
	rly_keymap_init(&s->routes);
	s->lis = evconnlistener_new_bind(
	    cfg->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	    (const struct sockaddr *)&cfg->listen, (int)cfg->listen_len);
	if (!s->lis) {
		char a[64];
		int e = errno;
		sockaddr_format(&cfg->listen, a, sizeof a);
		snprintf(err, errlen, "--listen %s: %s%s", a, strerror(e),
		         e == EADDRINUSE ? " (is another mesh-relay running?)" : "");
		rly_server_free(s);
		return NULL;
	}
	s->tick = event_new(cfg->base, -1, EV_PERSIST, tick_cb, s);
	s->tick_ms = rly_now_ms();
	s->reap = event_new(cfg->base, -1, 0, reap_cb, s);
	s->relisten = evtimer_new(cfg->base, relisten_cb, s);
	evconnlistener_set_error_cb(s->lis, accept_error_cb);
	struct timeval one = {1, 0};
	if (!s->tick || !s->reap || !s->relisten || event_add(s->tick, &one) < 0) {
		snprintf(err, errlen, "out of memory");
		rly_server_free(s);
		return NULL;
	}
	return s;
}

void rly_server_free(struct rly_server *s)
{
	if (!s)
		return;
	rly_links_free(s);
	while (s->conns)
		free_conn(s->conns);
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->tick)
		event_free(s->tick);
	if (s->reap)
		event_free(s->reap);
	if (s->relisten)
		event_free(s->relisten);
	if (s->dns)
		evdns_base_free(s->dns, 0);
	if (s->stun_ev)
		event_free(s->stun_ev);
	if (s->stun_fd >= 0)
		close(s->stun_fd);
	rly_keymap_free(&s->admitted);
	rly_keymap_free(&s->clients);
	rly_keymap_free(&s->routes);
	free(s->sibs);
	sodium_memzero(s->cfg.priv, sizeof s->cfg.priv);
	free(s);
}

void rly_server_local(const struct rly_server *s, struct sockaddr_storage *ss,
                      socklen_t *len)
{
	*len = sizeof *ss;
	getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)ss, len);
}

void rly_server_get_stats(const struct rly_server *s, struct rly_stats *st)
{
	*st = s->st;
	st->ready = s->ready;
	st->mesh_routes = s->routes.n;
	st->queued_bytes = s->queued;
}
