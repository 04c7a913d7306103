/* What every TCP front-end gets from session.c: MaxConnections with
 * eviction of the oldest handshake, the per-front-end handshake timeout,
 * mesh names before DNS, PX_PARSE_DETACH, and tunnel mode with a reply
 * (as `mesh-proxy nc` uses it). Real sockets and loop, fake netstack
 * (px_test_fake.h). */
#include "px_test_fake.h"

static struct px_http *http_lim(uint32_t max_conn, uint32_t hs_ms, bool direct)
{
	struct cfg_http c = {.bind = loopback_any_port(), .direct = direct ? CFG_DIRECT_ALL : CFG_DIRECT_NO};
	c.limits.max_connections = max_conn;
	c.limits.handshake_timeout_ms = hs_ms;
	char err[200];
	struct px_http *h = px_http_new(&env, &c, err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	return h;
}

static struct px_front *front_of(struct px_http *h)
{
	return (struct px_front *)h; /* the front is its first member */
}

/* True if the proxy has not closed fd (nothing to read, no EOF). */
static bool still_open(int fd)
{
	pump(5);
	uint8_t b;
	ssize_t r = recv(fd, &b, 1, MSG_PEEK);
	return r < 0 && errno == EAGAIN;
}

/* Reads an HTTP response head and returns its status. */
static int http_status(int fd)
{
	char buf[512];
	size_t n = 0;
	while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
		crecv(fd, buf + n, 1);
		n++;
		assert_true(n < sizeof(buf) - 1);
	}
	buf[n] = 0;
	return atoi(buf + 9);
}

static int connect_ok(struct px_http *h, const char *target)
{
	int fd = http_client(h);
	char req[200];
	snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\n\r\n", target);
	csend(fd, req, strlen(req));
	assert_int_equal(http_status(fd), 200);
	return fd;
}

/* At the limit a new client evicts the oldest client still in its
 * handshake; when every slot is established, the new client is closed. */
static void test_max_connections_evicts_oldest_handshake(void **st)
{
	reset_fake();
	struct px_http *h = http_lim(3, 0, false);
	struct px_front *f = front_of(h);
	int a = http_client(h);
	pump(10);
	int b = http_client(h);
	pump(10);
	csend(b, "CONN", 4); /* slow, not silent: still a handshake */
	int c = http_client(h);
	pump(10);
	assert_int_equal(f->n_sessions, 3);
	int d = http_client(h); /* evicts a, the oldest */
	assert_int_equal(cclosed(a), 0);
	assert_true(still_open(b));
	assert_true(still_open(c));
	assert_true(still_open(d));
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 1);
	assert_int_equal(stt.accepted, 4);
	/* d finishes its request: it becomes an established splice. */
	const char *req = "CONNECT 100.64.0.1:80 HTTP/1.1\r\n\r\n";
	csend(d, req, strlen(req));
	assert_int_equal(http_status(d), 200);
	assert_int_equal(f->acct->active, 1);
	assert_int_equal(px_front_open(f), 3); /* b, c and the splice */
	/* The next client evicts b (older than c). */
	int e = connect_ok(h, "100.64.0.1:81");
	assert_int_equal(cclosed(b), 0);
	assert_true(still_open(c));
	int g = connect_ok(h, "100.64.0.1:82"); /* evicts c */
	assert_int_equal(cclosed(c), 0);
	assert_int_equal(f->acct->active, 3);
	assert_int_equal(f->n_sessions, 0);
	/* Everything established: nobody to evict, the newcomer is closed. */
	int x = http_client(h);
	assert_int_equal(cclosed(x), 0);
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 4);
	assert_int_equal(stt.established, 3);
	assert_int_equal(stt.active, 3);
	/* A splice ends: there is room again. */
	f->acct->active--;
	int y = connect_ok(h, "100.64.0.1:83");
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 4);
	assert_int_equal(stt.established, 4);
	int fds[] = {a, b, c, d, e, g, x, y};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
	px_http_free(h);
}

/* A client lingering after an error reply is evicted like a handshake. */
static void test_max_connections_evicts_lingering(void **st)
{
	reset_fake();
	struct px_http *h = http_lim(2, 0, false);
	struct px_front *f = front_of(h);
	int a = http_client(h);
	const char *brew = "BREW /pot HTTP/1.1\r\n\r\n";
	csend(a, brew, strlen(brew));
	assert_int_equal(http_status(a), 501);
	pump(10);
	int b = http_client(h);
	pump(10);
	assert_int_equal(f->n_sessions, 2); /* a lingers, b waits */
	int c = http_client(h);
	pump(10);
	assert_int_equal(f->n_sessions, 2); /* a went, c came */
	assert_true(still_open(b));
	assert_true(still_open(c));
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 1);
	assert_int_equal(stt.err_protocol, 1);
	close(a);
	close(b);
	close(c);
	px_http_free(h);
}

/* Sessions waiting for a dial are not evicted: only handshakes are. */
static void test_max_connections_spares_dials(void **st)
{
	reset_fake();
	struct px_http *h = http_lim(1, 0, false);
	int a = http_client(h);
	const char *req = "CONNECT 100.64.0.5:80 HTTP/1.1\r\n\r\n"; /* never answers */
	csend(a, req, strlen(req));
	pump(20);
	assert_non_null(hung);
	int b = http_client(h);
	assert_int_equal(cclosed(b), 0);
	assert_int_equal(http_status(a), 504); /* a's own timeout */
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_limit, 1);
	assert_int_equal(stt.err_timeout, 1);
	assert_null(hung); /* taken back when a timed out */
	close(a);
	close(b);
	px_http_free(h);
}

/* HandshakeTimeout of the section wins over the environment's. */
static void test_handshake_timeout_from_limits(void **st)
{
	reset_fake();
	unsigned saved = env.handshake_timeout_ms;
	env.handshake_timeout_ms = 60000;
	struct px_http *h = http_lim(0, 150, false);
	assert_int_equal(front_of(h)->lim.handshake_timeout_ms, 150);
	assert_int_equal(front_of(h)->lim.max_connections, CFG_DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(front_of(h)->lim.buffer_bytes, CFG_DEFAULT_BUFFER_BYTES);
	long t0 = now_ms();
	int fd = http_client(h);
	csend(fd, "CONNECT 100.64.0.1:80 HTTP/1.1\r\n", 30); /* no empty line */
	assert_int_equal(cclosed(fd), 0);
	long took = now_ms() - t0;
	assert_true(took >= 140 && took < 2000);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_handshake_timeout, 1);
	assert_int_equal(stt.pending, 0);
	close(fd);
	px_http_free(h);
	/* Without a section value the environment's applies. */
	env.handshake_timeout_ms = 120;
	h = http_lim(0, 0, false);
	assert_int_equal(front_of(h)->lim.handshake_timeout_ms, 120);
	px_http_free(h);
	env.handshake_timeout_ms = saved;
}

/* Mesh names are asked first and never reach DNS; other names do. */
static void test_mesh_names(void **st)
{
	reset_fake();
	env.resolve_mesh = resolve_mesh;
	n_mesh_lookups = 0;
	struct px_http *h = http_lim(0, 0, true);
	int fd = connect_ok(h, "web:8080");
	assert_int_equal(n_dials, 1);
	assert_memory_equal(last_dst.addr, "\x64\x40\x00\x01", 4);
	assert_int_equal(last_port, 8080);
	close(fd);
	/* the routed one of two addresses */
	fd = connect_ok(h, "two:22");
	assert_memory_equal(last_dst.addr, "\x64\x40\x00\x01", 4);
	close(fd);
	/* a mesh name nobody routes: 502, not dialled from the host */
	assert_int_equal(http_try(h, "CONNECT lost:80 HTTP/1.1\r\n\r\n", true), 502);
	assert_int_equal(n_dials, 2);
	/* not a mesh name: DNS (the hosts file) */
	fd = connect_ok(h, "sync.mesh:80");
	assert_int_equal(n_dials, 3);
	close(fd);
	assert_int_equal(n_mesh_lookups, 4);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_no_route, 1);
	assert_int_equal(stt.established, 3);
	/* IP literals never ask */
	fd = connect_ok(h, "100.64.0.1:80");
	assert_int_equal(n_mesh_lookups, 4);
	close(fd);
	px_http_free(h);
	env.resolve_mesh = NULL;
}

/* ---- a bare front-end for DETACH and tunnel mode ---- */

static struct px_front bare;
static int detached_fd = -1;
static char detached_out[64];
static size_t detached_out_len, detached_early;

static enum px_parse detach_on_data(struct px_sess *s)
{
	if (s->len < 2)
		return PX_PARSE_MORE;
	px_sess_send(s, "taken\n", 6);
	s->consumed = 2;
	return PX_PARSE_DETACH;
}

static void detach_on_detach(struct px_sess *s, int fd)
{
	detached_fd = fd;
	detached_out_len = s->out_len - s->out_off;
	memcpy(detached_out, s->out + s->out_off, detached_out_len);
	detached_early = s->len - s->consumed;
}

static const struct px_sess_ops detach_ops = {
    .on_data = detach_on_data,
    .buf_size = 64,
    .on_detach = detach_on_detach,
};

static void test_detach(void **st)
{
	reset_fake();
	memset(&bare, 0, sizeof(bare));
	assert_int_equal(px_front_init(&bare, &env, "bare", NULL, CFG_DIRECT_NO), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct px_sess *s = px_sess_new(&bare, sv[1], &detach_ops);
	assert_non_null(s);
	assert_int_equal(bare.stats.pending, 1);
	csend(sv[0], "U", 1);
	pump(10);
	assert_int_equal(detached_fd, -1);
	csend(sv[0], "Axyz", 4);
	pump(10);
	assert_int_equal(detached_fd, sv[1]);
	assert_int_equal(detached_early, 3);
	/* The reply went out already (a fresh socket takes it at once). */
	assert_int_equal(detached_out_len, 0);
	char r[6];
	crecv(sv[0], r, 6);
	assert_memory_equal(r, "taken\n", 6);
	/* The session is gone; nothing counted but the accept. */
	assert_int_equal(bare.n_sessions, 0);
	assert_null(bare.sessions);
	assert_null(bare.sessions_tail);
	struct px_stats stt;
	px_front_stats(&bare, &stt);
	assert_int_equal(stt.accepted, 1);
	assert_int_equal(stt.pending, 0);
	assert_int_equal(stt.established, 0);
	assert_int_equal(stt.err_protocol + stt.err_client_gone + stt.err_other, 0);
	/* The socket is still open and usable, and no timer touches it. */
	pump(400);
	assert_int_equal(send(detached_fd, "ok", 2, 0), 2);
	crecv(sv[0], r, 2);
	assert_memory_equal(r, "ok", 2);
	close(detached_fd);
	detached_fd = -1;
	close(sv[0]);
	px_front_fini(&bare);
}

/* Tunnel mode with a reply line (the shape of `mesh-proxy nc`). */
static void nc_on_result(struct px_sess *s, enum px_err e)
{
	char line[64];
	int n = e == PX_OK ? snprintf(line, sizeof(line), "ok\n")
	                   : snprintf(line, sizeof(line), "error: %s\n", px_err_str(e));
	px_sess_send(s, line, (size_t)n);
}

static const struct px_sess_ops nc_ops = {.on_result = nc_on_result};

static int nc_try(const char *host, uint16_t port, char *line, size_t len)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct px_sess *s = px_sess_new(&bare, sv[1], &nc_ops);
	assert_non_null(s);
	assert_true(px_target_set(&s->target, host, strlen(host), port));
	px_sess_connect(s);
	size_t n = 0;
	while (n < len - 1) {
		crecv(sv[0], line + n, 1);
		if (line[n++] == '\n')
			break;
	}
	line[n] = 0;
	return sv[0];
}

static void test_tunnel_mode_with_reply(void **st)
{
	reset_fake();
	memset(&bare, 0, sizeof(bare));
	struct cfg_limits lim = {.idle_timeout_ms = 7000, .buffer_bytes = 65536};
	assert_int_equal(px_front_init(&bare, &env, "nc", &lim, CFG_DIRECT_NO), 0);
	char line[80];
	int fd = nc_try("100.64.0.1", 22, line, sizeof(line));
	assert_string_equal(line, "ok\n");
	pump(5);
	assert_int_equal(n_splices, 1);
	assert_int_equal(last_port, 22);
	assert_ptr_equal(last_opts.acct, bare.acct);
	assert_int_equal(last_opts.idle_ms, 7000);
	assert_int_equal(last_opts.buf_limit, 65536);
	csend(spliced_fd, "SSH-2.0\r\n", 9);
	crecv(fd, line, 9);
	assert_memory_equal(line, "SSH-2.0\r\n", 9);
	close(fd);
	fd = nc_try("100.64.0.2", 22, line, sizeof(line));
	assert_string_equal(line, "error: connection refused\n");
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	fd = nc_try("100.73.0.1", 22, line, sizeof(line)); /* Direct off */
	assert_string_equal(line, "error: no mesh route\n");
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	struct px_stats stt;
	px_front_stats(&bare, &stt);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.active, 1); /* the fake splice never ends */
	assert_int_equal(stt.err_refused, 1);
	assert_int_equal(stt.err_no_route, 1);
	assert_int_equal(stt.pending, 0);
	px_front_fini(&bare);
}

/* px_front_stats() merges the splices' byte counters. */
static void test_front_stats_merge(void **st)
{
	memset(&bare, 0, sizeof(bare));
	assert_int_equal(px_front_init(&bare, &env, "bare", NULL, CFG_DIRECT_ALL), 0);
	assert_true(bare.direct);
	bare.stats.bytes_up = 10; /* direct relays */
	bare.stats.bytes_down = 20;
	bare.stats.active = 1;
	bare.acct->bytes_out = 100; /* socket -> mesh: up */
	bare.acct->bytes_in = 200;
	bare.acct->active = 2;
	bare.acct->idle_closed = 3;
	struct px_stats stt;
	px_front_stats(&bare, &stt);
	assert_int_equal(stt.bytes_up, 110);
	assert_int_equal(stt.bytes_down, 220);
	assert_int_equal(stt.active, 3);
	assert_int_equal(stt.err_idle, 3);
	px_front_fini(&bare);
	assert_null(bare.acct);
}

/* Over the node's memory budget (ns_mem_admit says no) a new SOCKS5 or
 * HTTP client gets its protocol's "try later" answer and nothing is
 * dialled: 0x01 general failure, 503; counted as busy. */
static uint8_t socks_refusal(struct px_socks *s, const uint8_t *req, size_t n)
{
	int fd = socks_client(s);
	csend(fd, "\x05\x01\x00", 3);
	csend(fd, req, n);
	uint8_t r[12];
	crecv(fd, r, 12);
	assert_memory_equal(r, "\x05\x00\x05", 3);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	return r[3];
}

static void test_over_memory_budget_refused(void **st)
{
	(void)st;
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	struct px_http *h = http_new(NULL, NULL);
	struct px_stats stt;
	uint8_t m[300];
	fake_mem_full = true;
	assert_int_equal(socks_refusal(s, m, req_v4(m, 1, 80)), SOCKS5_REP_GENERAL);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.1:443 HTTP/1.1\r\n\r\n", true),
	                 503);
	assert_int_equal(n_dials, 0);
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_busy, 1);
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_busy, 1);
	fake_mem_full = false;
	assert_int_equal(socks_refusal(s, m, req_v4(m, 2, 80)), SOCKS5_REP_REFUSED);
	assert_int_equal(n_dials, 1); /* dialled again */
	px_http_free(h);
	px_socks_free(s);
}

/* [Interface] DNS as px_env.lookup: names under "silent" are never
 * answered, "good.test" is 100.64.0.1 (a dial that connects). */
struct t_lookup {
	void (*cb)(void *arg, int err, const struct ns_addr *a, size_t n);
	void *arg;
	struct event *ev;
	bool mixed;
};
static int lookups_live, lookup_calls;

static void t_lookup_answer(evutil_socket_t fd, short what, void *p)
{
	struct t_lookup *l = p;
	struct ns_addr a[17] = {{.family = AF_INET, .addr = {100, 64, 0, 1}}};
	size_t n = 1;
	if (l->mixed) { /* 16 A that time out, then one AAAA that connects */
		for (n = 0; n < 16; n++)
			a[n] =
			    (struct ns_addr){.family = AF_INET, .addr = {100, 64, 0, 3}};
		a[n++] = (struct ns_addr){.family = AF_INET6, .addr = {0xfd, [15] = 1}};
	}
	event_free(l->ev);
	lookups_live--;
	l->cb(l->arg, 0, a, n);
	free(l);
}

static int t_lookup(void *ctx, const char *name,
                    void (*cb)(void *arg, int err, const struct ns_addr *a, size_t n),
                    void *arg, void **handle)
{
	struct t_lookup *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->cb = cb;
	l->arg = arg;
	l->mixed = strstr(name, "mixed") != NULL;
	lookups_live++;
	lookup_calls++;
	if (!strstr(name, "silent")) {
		struct timeval tv = {0, 1000};
		l->ev = evtimer_new(base, t_lookup_answer, l);
		evtimer_add(l->ev, &tv);
	}
	*handle = l;
	return 0;
}

static void t_lookup_cancel(void *ctx, void *handle)
{
	struct t_lookup *l = handle;
	if (l->ev)
		event_free(l->ev);
	lookups_live--;
	free(l);
}

/* Review dns M4: clients that go away take their [Interface] DNS lookups
 * with them, and one front-end has at most PX_LOOKUPS_MAX in flight; a
 * name that answers still resolves afterwards. L6: an answer with more
 * addresses than are tried keeps both families. */
static void test_interface_dns_lookups_bounded(void **st)
{
	reset_fake();
	env.lookup = t_lookup;
	env.lookup_cancel = t_lookup_cancel;
	unsigned saved = env.connect_timeout_ms;
	env.connect_timeout_ms = 10000;
	lookups_live = lookup_calls = 0;
	struct px_socks *s = socks_new(NULL, NULL);
	enum { N = PX_LOOKUPS_MAX + 8 };
	static int fds[N];
	for (int i = 0; i < N; i++) {
		uint8_t m[64] = {5, 1, 0};
		char name[32];
		snprintf(name, sizeof(name), "n%d.silent.test", i);
		fds[i] = socks_client(s);
		csend(fds[i], m, 3 + req_name(m + 3, name, 80));
		if (i % 16 == 15)
			pump(2);
	}
	pump(200);
	assert_int_equal(lookups_live, PX_LOOKUPS_MAX);
	assert_int_equal(lookup_calls, PX_LOOKUPS_MAX); /* the rest: 0x04 */
	for (int i = 0; i < N; i++)
		close(fds[i]);
	pump(100);
	assert_int_equal(lookups_live, 0); /* cancelled with their clients */
	int fd = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	csend(fd, m, 3 + req_name(m + 3, "good.test", 80));
	uint8_t rep[12];
	crecv(fd, rep, sizeof(rep));
	assert_int_equal(rep[3], SOCKS5_REP_SUCCEEDED);
	close(fd);
	/* Review dns L6: 16 A records and one AAAA: the AAAA is still tried. */
	fd = socks_client(s);
	csend(fd, m, 3 + req_name(m + 3, "mixed.test", 80));
	crecv(fd, rep, 4);
	assert_int_equal(rep[3], SOCKS5_REP_SUCCEEDED);
	assert_int_equal(last_dst.family, AF_INET6);
	close(fd);
	px_socks_free(s);
	env.lookup = NULL;
	env.lookup_cancel = NULL;
	env.connect_timeout_ms = saved;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_max_connections_evicts_oldest_handshake),
	    cmocka_unit_test(test_max_connections_evicts_lingering),
	    cmocka_unit_test(test_max_connections_spares_dials),
	    cmocka_unit_test(test_handshake_timeout_from_limits),
	    cmocka_unit_test(test_mesh_names),
	    cmocka_unit_test(test_detach),
	    cmocka_unit_test(test_tunnel_mode_with_reply),
	    cmocka_unit_test(test_front_stats_merge),
	    cmocka_unit_test(test_over_memory_budget_refused),
	    cmocka_unit_test(test_interface_dns_lookups_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
