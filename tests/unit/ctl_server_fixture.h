/* Test fixture for mesh-control's node protocol server: the server in
 * process on 127.0.0.1:0 with a temporary SQLite store, and a small test
 * client (Noise IK + frames + messages over a plain non-blocking socket;
 * the test pumps the server's event loop while it waits). Shared by
 * test_control_server.c and test_control_server_scale.c. */
#ifndef MESH_TEST_CTL_SERVER_FIXTURE_H
#define MESH_TEST_CTL_SERVER_FIXTURE_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include <sqlite3.h>
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
#include "core/control/zmsg.h"
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
	if (t->over.poll_ms)
		cfg.poll_ms = t->over.poll_ms;
	if (t->over.handshake_ms)
		cfg.handshake_ms = t->over.handshake_ms;
	if (t->over.coalesce_ms) /* UINT32_MAX: the server's default */
		cfg.coalesce_ms =
		    t->over.coalesce_ms == UINT32_MAX ? 0 : t->over.coalesce_ms;
	cfg.idle_ms = t->over.idle_ms;
	cfg.keepalive_ms = t->over.keepalive_ms;
	cfg.behind_ms = t->over.behind_ms;
	cfg.ephemeral_timeout_s = t->over.ephemeral_timeout_s;
	cfg.reclaim_after_s = t->over.reclaim_after_s;
	cfg.no_pending = t->over.no_pending;
	cfg.max_pending = t->over.max_pending;
	cfg.max_pending_per_source = t->over.max_pending_per_source;
	cfg.max_outbuf = t->over.max_outbuf;
	cfg.out_budget = t->over.out_budget;
	cfg.sndbuf = t->over.sndbuf;
	cfg.max_nodes = t->over.max_nodes;
	cfg.max_unreg = t->over.max_unreg;
	cfg.max_unreg_per_source = t->over.max_unreg_per_source;
	cfg.no_seen_ip = t->over.no_seen_ip;
	cfg.beat_ms = t->over.beat_ms;
	cfg.dead_after_s = t->over.dead_after_s;
	/* hundreds of test nodes come from 127.0.0.1: no handshake rate
	 * unless a test asks (UINT32_MAX: the server's default) */
	cfg.hs_per_source = t->over.hs_per_source == UINT32_MAX ? 0
	                    : t->over.hs_per_source        ? t->over.hs_per_source
	                                                   : 1000000;
	cfg.hs_total = t->over.hs_total ? t->over.hs_total : 1000000;
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
	/* On tmpfs when there is one: these tests store thousands of nodes,
	 * each an fsync'd transaction, which on a disk is most of their time
	 * (what they test is the server, not the disk). */
	strcpy(t->tmp, "/dev/shm/ctlsrv-XXXXXX");
	if (!mkdtemp(t->tmp)) {
		strcpy(t->tmp, "/tmp/ctlsrv-XXXXXX");
		assert_non_null(mkdtemp(t->tmp));
	}
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
static uint32_t tc_src; /* nonzero: source IPv4 (host order) of the next */

static void tc_connect(struct t *t, struct tc *c)
{
	tc_close(c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (tc_rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &tc_rcvbuf, sizeof tc_rcvbuf);
	if (tc_src) {
		struct sockaddr_in b = {.sin_family = AF_INET};
		b.sin_addr.s_addr = htonl(tc_src);
		assert_int_equal(bind(c->fd, (struct sockaddr *)&b, sizeof b), 0);
	}
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
		if (f.type == CTL_MSG_ZMAP) { /* compressed (CTL_CAP_ZSTD) */
			uint8_t *body = NULL, type = 0;
			size_t len = 0;
			assert_int_equal(ctl_zmsg_unwrap(NULL, f.body, f.len,
			                                 CTL_FRAME_BODY_MAX, &type, &body,
			                                 &len, &me),
			                 0);
			assert_int_equal(ctl_msg_decode(type, body, len, m, &me), 0);
			free(body);
			return 1;
		}
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

static void restart_with(struct t *t, const struct ctl_server_config *over)
{
	ctl_server_free(t->srv);
	t->over = *over;
	start_server(t);
}

/* n approved nodes straight into control.db in one transaction (as many
 * registrations would leave them, but without n fsyncs), online or not,
 * each with a few endpoints so that its map entry is a few hundred bytes. */
static void bulk_nodes(struct t *t, int n, bool online)
{
	char path[160], sql[1024];
	snprintf(path, sizeof path, "%s/control.db", t->dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	snprintf(sql, sizeof sql,
	         "BEGIN IMMEDIATE;"
	         "UPDATE meta SET map_version = map_version + 1;"
	         "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name,"
	         " ipv4, ipv6, endpoints, approved, ephemeral, online, created,"
	         " last_seen, version)"
	         " WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
	         " WHERE i < %d)"
	         " SELECT randomblob(32), randomblob(32), randomblob(32), 'bulk',"
	         " 'bulk-' || hex(randomblob(6)), 1681915904 + 4096 + i +"
	         " (SELECT COUNT(*) FROM nodes), randomblob(16),"
	         " '198.18.1.1:41641,198.18.1.2:41641,[fd00:1::1]:41641,"
	         "[fd00:1::2]:41641', 1, 0, %d, strftime('%%s','now'),"
	         " strftime('%%s','now'), (SELECT map_version FROM meta) FROM c;"
	         "COMMIT;",
	         n, online ? 1 : 0);
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("bulk insert: %s", err);
	sqlite3_close(db);
}

#endif
