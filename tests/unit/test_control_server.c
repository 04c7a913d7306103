/* mesh-control's node protocol server, in process on 127.0.0.1:0 with a
 * temporary SQLite store, against a small test client written here (Noise
 * IK + frames + messages over a plain non-blocking socket; the test pumps
 * the server's event loop while it waits). Covers registration (reusable,
 * single-use, bad, pending + approve, resume), MAP_FULL / MAP_DELTA with
 * latency, endpoints, removal by another store handle, wrong server key,
 * replayed handshake, garbage / zero / oversized frames, and MAP_FULL build
 * time for 2,000 nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "core/util/log.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

struct t {
	char tmp[64];
	char dir[96];
	struct ctl_store *st;
	struct event_base *base;
	struct ctl_server *srv;
	uint8_t spriv[32], spub[32];
	uint16_t port;
	char key[CTL_SECRET_MAX];      /* reusable */
	struct ctl_server_config over; /* nonzero limits override the defaults */
};

struct tc {
	int fd;
	uint8_t mpriv[32], mpub[32];
	struct ctl_noise_handshake hs;
	struct ctl_noise_transport tr;
	struct ctl_frame_decoder dec;
	uint8_t *buf;
	size_t have;
	uint8_t hs1[256];
	size_t hs1_len;
	bool eof;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pump(struct t *t, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(t->base, &tv);
	event_base_dispatch(t->base);
}

static void start_server(struct t *t)
{
	struct ctl_server_config cfg = {.base = t->base,
	                                .store = t->st,
	                                .poll_ms = 50,
	                                .coalesce_ms = 10,
	                                .handshake_ms = 2000};
	if (t->over.max_conns)
		cfg.max_conns = t->over.max_conns;
	if (t->over.handshake_ms)
		cfg.handshake_ms = t->over.handshake_ms;
	cfg.idle_ms = t->over.idle_ms;
	cfg.keepalive_ms = t->over.keepalive_ms;
	cfg.ephemeral_timeout_s = t->over.ephemeral_timeout_s;
	memcpy(cfg.server_priv, t->spriv, 32);
	struct sockaddr_in *a = (struct sockaddr_in *)&cfg.listen;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfg.listen_len = sizeof *a;
	char err[256] = "";
	t->srv = ctl_server_new(&cfg, err, sizeof err);
	if (!t->srv)
		fail_msg("server: %s", err);
	struct sockaddr_storage ss;
	socklen_t sl;
	ctl_server_local(t->srv, &ss, &sl);
	t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	strcpy(t->tmp, "/tmp/ctlsrv-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	char err[256] = "";
	t->st = ctl_store_open_sqlite(t->dir, err, sizeof err);
	if (!t->st)
		fail_msg("open: %s", err);
	ctl_noise_keypair(t->spriv, t->spub);
	struct ctl_init_params p = {.now = time(NULL)};
	memcpy(p.server_public, t->spub, 32);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	struct ctl_authkey_params kp = {.reusable = true, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, t->key, sizeof t->key, NULL),
	                 0);
	t->base = event_base_new();
	start_server(t);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_server_free(t->srv);
	event_base_free(t->base);
	ctl_store_close(t->st);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* --- the test client ---------------------------------------------------- */

static struct tc *tc_new(void)
{
	struct tc *c = calloc(1, sizeof *c);
	ctl_noise_keypair(c->mpriv, c->mpub);
	c->fd = -1;
	return c;
}

static void tc_close(struct tc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	ctl_frame_decoder_free(&c->dec);
	free(c->buf);
	c->buf = NULL;
	c->have = 0;
	c->eof = false;
}

static void tc_free(struct tc *c)
{
	tc_close(c);
	free(c);
}

static int tc_rcvbuf; /* nonzero: SO_RCVBUF of the next connections */

static void tc_connect(struct t *t, struct tc *c)
{
	tc_close(c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (tc_rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &tc_rcvbuf, sizeof tc_rcvbuf);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(t->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
	ctl_frame_decoder_init(&c->dec);
	c->buf = malloc(CTL_FRAME_MAX + 64);
	pump(t, 5);
}

static void tc_raw(struct tc *c, const void *p, size_t n)
{
	assert_int_equal(send(c->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Next frame, pumping the server meanwhile. 1 frame, 0 timeout, -1 closed,
 * -2 bad frame. */
static int tc_frame(struct t *t, struct tc *c, int ms, struct ctl_frame *f)
{
	double end = now_ms() + ms;
	for (;;) {
		if (c->have > 0) {
			size_t used = 0;
			int r = ctl_frame_decode(&c->dec, c->buf, c->have, &used, f);
			if (r < 0)
				return -2;
			if (r == CTL_FRAME_READY) {
				/* body points into the decoder; safe to shift ours */
				memmove(c->buf, c->buf + used, c->have - used);
				c->have -= used;
				return 1;
			}
			c->have = 0;
		}
		if (c->eof)
			return -1;
		ssize_t n = recv(c->fd, c->buf + c->have, 65536, MSG_DONTWAIT);
		if (n > 0) {
			c->have += (size_t)n;
			continue;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			c->eof = true;
			continue;
		}
		if (now_ms() > end)
			return 0;
		pump(t, 2);
	}
}

static int tc_handshake(struct t *t, struct tc *c, const uint8_t *server_pub)
{
	uint8_t m1[CTL_NOISE_MSG1_MIN];
	size_t m1l = 0;
	assert_int_equal(ctl_noise_init_initiator(&c->hs, c->mpriv, server_pub, NULL, 0),
	                 0);
	assert_int_equal(ctl_noise_write_msg1(&c->hs, NULL, 0, m1, sizeof m1, &m1l), 0);
	assert_int_equal(ctl_frame_encode_handshake(CTL_FRAME_HS1, m1, m1l, c->hs1,
	                                            sizeof c->hs1, &c->hs1_len),
	                 0);
	tc_raw(c, c->hs1, c->hs1_len);
	struct ctl_frame f;
	int r = tc_frame(t, c, 2000, &f);
	if (r != 1)
		return -1;
	assert_int_equal(f.type, CTL_FRAME_HS2);
	size_t pl = 0;
	assert_int_equal(ctl_noise_read_msg2(&c->hs, f.body, f.len, NULL, 0, &pl), 0);
	assert_int_equal(ctl_noise_split(&c->hs, &c->tr), 0);
	ctl_frame_decoder_set_transport(&c->dec, &c->tr);
	return 0;
}

static void tc_send(struct tc *c, const struct ctl_msg *m)
{
	uint8_t *body = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	assert_int_equal(ctl_msg_encode(m, &body, &len, &me), 0);
	size_t cap = ctl_frame_sealed_size(len), n = 0;
	uint8_t *fr = malloc(cap);
	assert_int_equal(ctl_frame_seal(&c->tr, (uint8_t)m->type, body, len, fr, cap, &n),
	                 0);
	tc_raw(c, fr, n);
	free(fr);
	free(body);
}

/* Next message (skipping keepalives): 1, 0 timeout, -1 closed. */
static int tc_recv(struct t *t, struct tc *c, int ms, struct ctl_msg *m)
{
	for (;;) {
		struct ctl_frame f;
		int r = tc_frame(t, c, ms, &f);
		if (r != 1)
			return r < 0 ? -1 : 0;
		struct ctl_msg_err me;
		assert_int_equal(ctl_msg_decode(f.type, f.body, f.len, m, &me), 0);
		if (m->type != CTL_MSG_KEEPALIVE)
			return 1;
		ctl_msg_free(m);
	}
}

static void tc_expect(struct t *t, struct tc *c, enum ctl_msg_type type,
                      struct ctl_msg *m)
{
	int r = tc_recv(t, c, 3000, m);
	if (r != 1)
		fail_msg("expected %s, got %s", ctl_msg_type_name(type),
		         r ? "close" : "timeout");
	if (m->type != type)
		fail_msg("expected %s, got %s", ctl_msg_type_name(type),
		         ctl_msg_type_name(m->type));
}

static void tc_register_send(struct tc *c, const char *host, const char *key)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *r = &m.u.reg_req;
	snprintf(r->auth_key, sizeof r->auth_key, "%s", key ? key : "");
	memcpy(r->node_key, c->mpub, 32);
	r->node_key[0] ^= 1;
	memcpy(r->disco_key, c->mpub, 32);
	r->disco_key[0] ^= 2;
	snprintf(r->hostname, sizeof r->hostname, "%s", host);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "test");
	tc_send(c, &m);
}

/* Connect, handshake, register: returns the REGISTER_RESP in *resp. */
static void tc_join(struct t *t, struct tc *c, const char *host, const char *key,
                    struct ctl_register_resp *resp)
{
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_send(c, host, key);
	struct ctl_msg m;
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &m);
	*resp = m.u.reg_resp;
}

static void expect_full(struct t *t, struct tc *c, size_t n_peers, struct ctl_msg *m)
{
	tc_expect(t, c, CTL_MSG_MAP_FULL, m);
	assert_int_equal(m->u.map.n_peers, n_peers);
}

/* --- tests -------------------------------------------------------------- */

static void join_delta_endpoints_remove(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new();
	struct ctl_register_resp ra, rb;
	struct ctl_msg m;

	tc_join(t, a, "alpha", t->key, &ra);
	assert_int_equal(ra.status, CTL_REG_OK);
	assert_string_equal(ra.name, "alpha");
	assert_string_equal(ra.fqdn, "alpha.mesh.internal");
	assert_int_equal(ra.ipv4[0], 100);
	expect_full(t, a, 0, &m);
	assert_string_equal(m.u.map.dns_domain, "mesh.internal");
	assert_int_equal(m.u.map.magic_dns.addr[0], 100);
	assert_int_equal(m.u.map.self_id, ra.node_id);
	uint64_t va = m.u.map.version;
	ctl_msg_free(&m);

	double t0 = now_ms();
	tc_join(t, b, "bravo", t->key, &rb);
	assert_int_equal(rb.status, CTL_REG_OK);
	expect_full(t, b, 1, &m);
	assert_int_equal(m.u.map.peers[0].id, ra.node_id);
	assert_true(m.u.map.peers[0].online);
	assert_int_equal(m.u.map.peers[0].n_allowed, 2);
	assert_int_equal(m.u.map.peers[0].allowed[0].bits, 32);
	ctl_msg_free(&m);

	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	double lat = now_ms() - t0;
	print_message("join -> delta to the other node: %.1f ms\n", lat);
	assert_true(lat < 1000);
	assert_int_equal(m.u.delta.base_version, va);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, rb.node_id);
	assert_true(m.u.delta.peers[0].online);
	ctl_msg_free(&m);

	/* endpoints from b reach a */
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	ep.u.endpoints.n = 2;
	assert_true(ctl_endpoint_parse("198.18.0.2:41641", &ep.u.endpoints.ep[0]));
	assert_true(ctl_endpoint_parse("[fd00::2]:41641", &ep.u.endpoints.ep[1]));
	ep.u.endpoints.home_relay = 3;
	t0 = now_ms();
	tc_send(b, &ep);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	print_message("endpoints -> delta: %.1f ms\n", now_ms() - t0);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].n_eps, 2);
	assert_int_equal(m.u.delta.peers[0].eps[0].port, 41641);
	assert_int_equal(m.u.delta.peers[0].home_relay, 3);
	ctl_msg_free(&m);
	/* b does not see itself (its own change alone sends it nothing) */
	assert_int_equal(tc_recv(t, b, 150, &m), 0);

	/* removed from outside (another store handle, as the admin CLI) */
	char err[256];
	struct ctl_store *st2 = ctl_store_open_sqlite(t->dir, err, sizeof err);
	assert_non_null(st2);
	assert_int_equal(ctl_store_node_remove(st2, (int64_t)rb.node_id), 0);
	ctl_store_close(st2);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], rb.node_id);
	ctl_msg_free(&m);
	tc_expect(t, b, CTL_MSG_ERROR, &m);
	assert_int_equal(m.u.error.code, CTL_REASON_NODE_REMOVED);
	assert_int_equal(tc_recv(t, b, 1000, &m), -1);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.registrations_ok, 2);
	assert_int_equal(s.nodes_online, 1);
	assert_true(s.maps_delta >= 3);
	tc_free(a);
	tc_free(b);
}

static void wrong_server_key_fails(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	uint8_t bogus_priv[32], bogus_pub[32];
	ctl_noise_keypair(bogus_priv, bogus_pub);
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, bogus_pub), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.handshakes_failed, 1);
	assert_int_equal(s.handshakes_ok, 0);
	tc_free(c);
}

static void replayed_hs1_refused(void **state)
{
	struct t *t = *state;
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	tc_join(t, c, "alpha", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	uint8_t saved[256];
	size_t n = c->hs1_len;
	memcpy(saved, c->hs1, n);
	struct tc *e = tc_new();
	tc_connect(t, e);
	tc_raw(e, saved, n);
	struct ctl_frame f;
	assert_int_equal(tc_frame(t, e, 1000, &f), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.replays, 1);
	assert_int_equal(s.handshakes_ok, 1);
	tc_free(c);
	tc_free(e);
}

static void bad_frames_close(void **state)
{
	struct t *t = *state;
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	struct tc *c = tc_new();
	struct ctl_frame f;

	tc_connect(t, c); /* garbage */
	tc_raw(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* zero length */
	tc_raw(c, "\0\0\0\0", 4);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* oversized, after the handshake */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_raw(c, "\xff\xff\xff\xff", 4);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* a frame that does not decrypt */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	uint8_t junk[4 + 40] = {0, 0, 0, 40};
	tc_raw(c, junk, sizeof junk);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	tc_connect(t, c); /* valid frame, a message out of order */
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	tc_send(c, &ep);
	assert_int_equal(tc_frame(t, c, 1000, &f), -1);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.bad_frames, 4);
	assert_int_equal(s.bad_messages, 1);
	assert_int_equal(s.conns_active, 0);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v0, v1);
	tc_free(c);
}

static void bad_and_used_keys_refused(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new(), *c = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_join(t, a, "alpha", "mkey-99-000000000000000000000000000000000000000000000000",
	        &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_AUTH_KEY_UNKNOWN);
	assert_int_equal(tc_recv(t, a, 1000, &m), -1);

	char once[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, once, sizeof once, NULL), 0);
	tc_join(t, b, "bravo", once, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_join(t, c, "charlie", once, &r);
	assert_int_equal(r.status, CTL_REG_REFUSED);
	assert_int_equal(r.code, CTL_REASON_AUTH_KEY_USED);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.registrations_refused, 2);
	tc_free(a);
	tc_free(b);
	tc_free(c);
}

static void pending_then_approved(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *p = tc_new();
	struct ctl_register_resp r, rp;
	struct ctl_msg m;
	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, p, "pend", NULL, &rp);
	assert_int_equal(rp.status, CTL_REG_PENDING);
	/* a may hear that the pending id is not in its map; never as a peer */
	int got = tc_recv(t, a, 200, &m);
	if (got == 1) {
		assert_int_equal(m.type, CTL_MSG_MAP_DELTA);
		assert_int_equal(m.u.delta.n_peers, 0);
		ctl_msg_free(&m);
	}

	struct ctl_node nd;
	uint8_t mk[32];
	memcpy(mk, p->mpub, 32);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, mk, &nd), 0);
	assert_false(nd.approved);
	assert_int_equal(ctl_store_node_approve(t->st, nd.id), 0);
	ctl_server_notify(t->srv);
	tc_expect(t, p, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	assert_int_equal(m.u.reg_resp.node_id, nd.id);
	expect_full(t, p, 1, &m);
	ctl_msg_free(&m);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_int_equal(m.u.delta.peers[0].id, nd.id);
	ctl_msg_free(&m);
	tc_free(a);
	tc_free(p);
}

static void reconnect_resumes_without_key(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *o = tc_new();
	struct ctl_register_resp r1, r2, ro;
	struct ctl_msg m;
	tc_join(t, o, "other", t->key, &ro);
	expect_full(t, o, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, a, "alpha", t->key, &r1);
	expect_full(t, a, 1, &m);
	ctl_msg_free(&m);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* a online */
	ctl_msg_free(&m);
	tc_close(a);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* a offline */
	assert_int_equal(m.u.delta.n_peers, 1);
	assert_false(m.u.delta.peers[0].online);
	ctl_msg_free(&m);

	tc_join(t, a, "alpha", NULL, &r2);
	assert_int_equal(r2.status, CTL_REG_OK);
	assert_int_equal(r2.node_id, r1.node_id);
	assert_string_equal(r2.name, r1.name);
	assert_memory_equal(r2.ipv4, r1.ipv4, 4);
	assert_memory_equal(r2.ipv6, r1.ipv6, 16);
	expect_full(t, a, 1, &m);
	ctl_msg_free(&m);

	/* A second connection of the same machine replaces the first. */
	struct tc *a2 = tc_new();
	memcpy(a2->mpriv, a->mpriv, 32);
	memcpy(a2->mpub, a->mpub, 32);
	tc_join(t, a2, "alpha", NULL, &r2);
	assert_int_equal(r2.node_id, r1.node_id);
	assert_int_equal(tc_recv(t, a, 1000, &m), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.nodes_online, 2);
	tc_free(a);
	tc_free(a2);
	tc_free(o);
}

static void restart_with(struct t *t, const struct ctl_server_config *over)
{
	ctl_server_free(t->srv);
	t->over = *over;
	start_server(t);
}

static void ephemeral_removed_after_offline(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.ephemeral_timeout_s = 1});
	char eph[CTL_SECRET_MAX];
	struct ctl_authkey_params kp = {.ephemeral = true, .now = time(NULL)};
	assert_int_equal(ctl_store_key_create(t->st, &kp, eph, sizeof eph, NULL), 0);
	struct tc *o = tc_new(), *e = tc_new();
	struct ctl_register_resp ro, re;
	struct ctl_msg m;
	tc_join(t, o, "other", t->key, &ro);
	expect_full(t, o, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, e, "eph", eph, &re);
	assert_int_equal(re.status, CTL_REG_OK);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* online */
	ctl_msg_free(&m);
	tc_close(e);
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* offline */
	assert_false(m.u.delta.peers[0].online);
	ctl_msg_free(&m);
	double t0 = now_ms();
	tc_expect(t, o, CTL_MSG_MAP_DELTA, &m); /* removed after 1-2 s */
	assert_int_equal(m.u.delta.n_removed, 1);
	assert_int_equal(m.u.delta.removed[0], re.node_id);
	ctl_msg_free(&m);
	print_message("ephemeral node removed %.0f ms after going offline\n",
	              now_ms() - t0);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)re.node_id, &nd),
	                 CTL_STORE_ENOTFOUND);
	tc_free(o);
	tc_free(e);
}

static void limits_keepalive_idle_handshake(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_conns = 2,
	                                            .handshake_ms = 300,
	                                            .keepalive_ms = 100,
	                                            .idle_ms = 600});
	struct tc *a = tc_new(), *b = tc_new(), *x = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	struct ctl_frame f;
	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_connect(t, b); /* silent: closed at the handshake deadline */
	tc_connect(t, x); /* third: over max_conns */
	assert_int_equal(tc_frame(t, x, 500, &f), -1);
	assert_int_equal(tc_frame(t, b, 1000, &f), -1);
	/* a sends nothing: keepalives arrive, then idle close */
	int kas = 0;
	double t0 = now_ms();
	for (;;) {
		int rr = tc_frame(t, a, 2000, &f);
		if (rr != 1)
			break;
		if (f.type == CTL_MSG_KEEPALIVE)
			kas++;
	}
	double idle = now_ms() - t0;
	print_message("idle close after %.0f ms, %d keepalives\n", idle, kas);
	assert_true(kas >= 2);
	assert_true(idle < 1500);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_refused_limit, 1);
	assert_int_equal(s.idle_closed, 2);
	assert_int_equal(s.nodes_online, 0);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, (int64_t)r.node_id, &nd), 0);
	assert_false(nd.online);
	tc_free(a);
	tc_free(b);
	tc_free(x);
}

/* 2,000 nodes in the store; one client joins and gets them all. */
static void map_full_2000_nodes(void **state)
{
	struct t *t = *state;
	for (uint32_t i = 0; i < 2000; i++) {
		struct ctl_store_reg r = {
		    .hostname = "n", .auth_secret = t->key, .now = time(NULL)};
		memset(r.machine_key, 0x11, 32);
		memset(r.node_key, 0x22, 32);
		memset(r.disco_key, 0x33, 32);
		memcpy(r.machine_key, &i, 4);
		memcpy(r.node_key, &i, 4);
		memcpy(r.disco_key, &i, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
		                            .endpoints =
		                                "198.18.0.9:41641,[fd00::9]:41641"};
		assert_int_equal(ctl_store_node_update(t->st, nd.id, &u), 0);
	}
	struct tc *c = tc_new(), *d = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	double t0 = now_ms();
	tc_join(t, c, "big", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	expect_full(t, c, 2000, &m);
	ctl_msg_free(&m);
	double total = now_ms() - t0;
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	print_message("MAP_FULL of 2000 peers: build+encode %.1f ms, %zu bytes; join "
	              "round trip %.1f ms\n",
	              s.last_full_ms, s.last_full_bytes, total);
	t0 = now_ms();
	tc_join(t, d, "big2", t->key, &r);
	tc_expect(t, c, CTL_MSG_MAP_DELTA, &m);
	ctl_msg_free(&m);
	ctl_server_get_stats(t->srv, &s);
	print_message("second join -> delta: %.1f ms (broadcast %.2f ms)\n",
	              now_ms() - t0, s.last_broadcast_ms);
	tc_free(c);
	tc_free(d);
}

/* A node that does not read while the whole map changes 20 times (each a
 * map-sized update): the server queues nothing more for it once it is
 * behind (no pile of updates), and when it reads it gets its MAP_FULL,
 * then fewer updates that bring it to the current version. */
static void slow_reader_catches_up(void **state)
{
	struct t *t = *state;
	enum { N = 1000, ROUNDS = 20 };
	int64_t *ids = calloc(N, sizeof *ids);
	for (uint32_t i = 0; i < N; i++) {
		struct ctl_store_reg r = {
		    .hostname = "n", .auth_secret = t->key, .now = time(NULL)};
		memset(r.machine_key, 0x11, 32);
		memset(r.node_key, 0x22, 32);
		memset(r.disco_key, 0x33, 32);
		memcpy(r.machine_key, &i, 4);
		memcpy(r.node_key, &i, 4);
		memcpy(r.disco_key, &i, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		ids[i] = nd.id;
	}
	struct tc *c = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	tc_rcvbuf = 4096;
	tc_join(t, c, "slow", t->key, &r);
	tc_rcvbuf = 0;
	assert_int_equal(r.status, CTL_REG_OK);
	/* not reading: every node changes, ROUNDS times, each broadcast */
	for (int k = 0; k < ROUNDS; k++) {
		char ep[64];
		snprintf(ep, sizeof ep, "198.18.0.%d:41641,[fd00::%d]:41641", k + 1,
		         k + 1);
		for (int i = 0; i < N; i++) {
			struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
			                            .endpoints = ep};
			assert_int_equal(ctl_store_node_update(t->st, ids[i], &u), 0);
		}
		ctl_server_notify(t->srv);
		pump(t, 30);
	}
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	expect_full(t, c, N, &m);
	uint64_t v = m.u.map.version;
	ctl_msg_free(&m);
	int n_upd = 0;
	while (tc_recv(t, c, 300, &m) == 1) {
		if (m.type == CTL_MSG_MAP_DELTA) {
			assert_int_equal(m.u.delta.base_version, v);
			v = m.u.delta.version;
		} else {
			assert_int_equal(m.type, CTL_MSG_MAP_FULL);
			assert_int_equal(m.u.map.n_peers, N);
			v = m.u.map.version;
		}
		n_upd++;
		ctl_msg_free(&m);
	}
	ctl_server_get_stats(t->srv, &s);
	print_message("slow reader: %d update(s) after its first full map for %d "
	              "map-wide changes\n",
	              n_upd, ROUNDS);
	assert_int_equal(v, s.map_version);
	assert_true(n_upd >= 1 && n_upd <= ROUNDS - 5);
	tc_free(c);
	free(ids);
}

/* 200 live connections join one after another; then one node's endpoints
 * change and every other node gets the delta. */
static void two_hundred_live_nodes(void **state)
{
	struct t *t = *state;
	enum { N = 200 };
	struct tc **c = calloc(N, sizeof *c);
	struct ctl_register_resp r;
	struct ctl_msg m;
	double t0 = now_ms();
	for (int i = 0; i < N; i++) {
		char host[32];
		snprintf(host, sizeof host, "n%d", i);
		c[i] = tc_new();
		tc_join(t, c[i], host, t->key, &r);
		assert_int_equal(r.status, CTL_REG_OK);
		expect_full(t, c[i], (size_t)i, &m);
		ctl_msg_free(&m);
	}
	pump(t, 100);
	double join = now_ms() - t0;
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	print_message("%d nodes joined in %.0f ms (%.2f ms each); last MAP_FULL %.2f ms "
	              "%zu bytes; %llu deltas sent\n",
	              N, join, join / N, s.last_full_ms, s.last_full_bytes,
	              (unsigned long long)s.maps_delta);
	/* drain what the first node has queued, then one change */
	while (tc_recv(t, c[0], 50, &m) == 1)
		ctl_msg_free(&m);
	struct ctl_msg ep = {.type = CTL_MSG_ENDPOINTS};
	ep.u.endpoints.n = 1;
	assert_true(ctl_endpoint_parse("198.18.0.7:41641", &ep.u.endpoints.ep[0]));
	t0 = now_ms();
	tc_send(c[N - 1], &ep);
	tc_expect(t, c[0], CTL_MSG_MAP_DELTA, &m);
	assert_int_equal(m.u.delta.n_peers, 1);
	ctl_msg_free(&m);
	ctl_server_get_stats(t->srv, &s);
	print_message("endpoints -> delta at node 0 of %d: %.1f ms (broadcast to all "
	              "%.2f ms)\n",
	              N, now_ms() - t0, s.last_broadcast_ms);
	assert_int_equal(s.nodes_online, N);
	for (int i = 0; i < N; i++)
		tc_free(c[i]);
	free(c);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(join_delta_endpoints_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(wrong_server_key_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(replayed_hs1_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_frames_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_and_used_keys_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(pending_then_approved, setup, teardown),
	    cmocka_unit_test_setup_teardown(reconnect_resumes_without_key, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(ephemeral_removed_after_offline, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(limits_keepalive_idle_handshake, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(map_full_2000_nodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(two_hundred_live_nodes, setup, teardown),
	    cmocka_unit_test_setup_teardown(slow_reader_catches_up, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
