/* mesh-control's front door: what a peer that holds only the server's
 * public key can make the server spend before it has registered. Frames
 * from nodes over 64 KiB are refused before they are read; a message the
 * connection's state does not take, or with more values than the budget,
 * is never parsed; unregistered connections are capped per source and in
 * all (a connection of the heaviest source makes room); and out of file
 * descriptors the listener pauses instead of spinning. The server runs in
 * process (ctl_server_fixture.h), or, for the descriptor limit, in a child
 * process with a small RLIMIT_NOFILE. */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "tests/unit/ctl_server_fixture.h"

static long maxrss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Sends n bytes without blocking the test (the server runs on this thread):
 * pumps it while the socket is full. Stops early when the server closed. */
static void send_pumping(struct t *t, struct tc *c, const uint8_t *p, size_t n)
{
	size_t off = 0;
	double end = now_ms() + 20000;
	while (off < n && now_ms() < end) {
		ssize_t w = send(c->fd, p + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return; /* closed by the server */
		pump(t, 2);
	}
}

/* A sealed frame of type || body, sent while the server runs. */
static void send_sealed(struct t *t, struct tc *c, uint8_t type, const uint8_t *body,
                        size_t len)
{
	size_t cap = ctl_frame_sealed_size(len), n = 0;
	uint8_t *fr = malloc(cap);
	assert_non_null(fr);
	assert_int_equal(ctl_frame_seal(&c->tr, type, body, len, fr, cap, &n), 0);
	send_pumping(t, c, fr, n);
	free(fr);
}

/* {"x":[{},{},...]} of exactly len bytes (len >= 16). */
static uint8_t *amplifier(size_t len)
{
	uint8_t *b = malloc(len);
	assert_non_null(b);
	memcpy(b, "{\"x\":[", 6);
	size_t i = 6;
	while (i + 3 + 2 <= len - 2) {
		memcpy(b + i, "{},", 3);
		i += 3;
	}
	memcpy(b + i, "{}", 2);
	i += 2;
	while (i < len - 2)
		b[i++] = ' ';
	memcpy(b + i, "]}", 2);
	return b;
}

/* H5: before the fix a 4 MiB KEEPALIVE of {},{},... was accepted (frames
 * from nodes had the 4 MiB limit of maps) and built by jansson: about
 * 300 MiB and a second on the only thread, from a peer that never
 * registered. Now it is refused at its length, before any of it is read,
 * and a node that is online gets a change as promptly as ever. */
static void huge_frame_before_register_is_not_read(void **state)
{
	struct t *t = *state;
	struct tc *a = tc_new(), *b = tc_new(), *x = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	struct ctl_frame f;

	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);

	size_t len = CTL_FRAME_BODY_MAX - 64;
	uint8_t *body = amplifier(len);
	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	long rss0 = maxrss_kib();
	double t0 = now_ms();
	send_sealed(t, x, CTL_MSG_KEEPALIVE, body, len);
	int closed = tc_frame(t, x, 2000, &f);
	double took = now_ms() - t0;
	long grew = maxrss_kib() - rss0;
	print_message("4 MiB KEEPALIVE: %s after %.0f ms, peak RSS +%ld KiB\n",
	              closed == -1 ? "closed" : "still open", took, grew);
	assert_true(grew < 32 * 1024);
	assert_int_equal(closed, -1);
	free(body);

	/* a join right after: the online node hears of it promptly */
	t0 = now_ms();
	tc_join(t, b, "bravo", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	double lat = now_ms() - t0;
	print_message("join -> delta to the online node: %.1f ms\n", lat);
	assert_true(lat < 1000);
	ctl_msg_free(&m);

	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.frames_too_big, 1);
	assert_int_equal(s.bad_frames, 1);
	assert_int_equal(s.nodes_online, 2);
	tc_free(a);
	tc_free(b);
	tc_free(x);
}

/* The limit is the frame's length: 64 KiB passes the framing (and is then
 * judged as a message), a byte more does not. */
static void node_frame_limit_is_64k(void **state)
{
	struct t *t = *state;
	struct tc *x = tc_new();
	struct ctl_frame f;
	size_t at = CTL_FRAME_NODE_PLAIN_MAX - 1; /* body: type byte + this */
	uint8_t *body = calloc(1, at + 1);
	assert_non_null(body);

	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	send_sealed(t, x, CTL_MSG_KEEPALIVE, body, at + 1);
	assert_int_equal(tc_frame(t, x, 1000, &f), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.frames_too_big, 1);

	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	send_sealed(t, x, CTL_MSG_KEEPALIVE, body, at);
	assert_int_equal(tc_frame(t, x, 1000, &f), -1); /* a KEEPALIVE is {} */
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.frames_too_big, 1);
	assert_int_equal(s.bad_messages, 1);
	free(body);
	tc_free(x);
}

/* A REGISTER_REQ that is valid but carries 2,000 values in a field the
 * server does not know: before, jansson built all of it and the node was
 * registered (unknown fields are ignored); now the count is over the
 * budget before parsing and the connection is closed. A REGISTER_REQ with
 * a small unknown field still registers (newer nodes may add fields). */
static void register_over_value_budget_is_not_parsed(void **state)
{
	struct t *t = *state;
	struct tc *x = tc_new(), *y = tc_new();
	struct ctl_frame f;
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *rq = &m.u.reg_req;
	snprintf(rq->auth_key, sizeof rq->auth_key, "%s", t->key);
	memcpy(rq->node_key, x->mpub, 32);
	rq->node_key[0] ^= 1;
	memcpy(rq->disco_key, x->mpub, 32);
	rq->disco_key[0] ^= 2;
	snprintf(rq->hostname, sizeof rq->hostname, "fat");
	snprintf(rq->os, sizeof rq->os, "linux");
	snprintf(rq->version, sizeof rq->version, "test");
	uint8_t *enc = NULL;
	size_t len = 0;
	struct ctl_msg_err me;
	assert_int_equal(ctl_msg_encode(&m, &enc, &len, &me), 0);

	/* ...,"future":[0,0,...]} with n zeros */
	size_t n = 2000, cap = len + 16 + 2 * n;
	uint8_t *body = malloc(cap);
	memcpy(body, enc, len - 1);
	size_t i = len - 1;
	i += (size_t)sprintf((char *)body + i, ",\"future\":[");
	for (size_t k = 0; k < n; k++)
		i += (size_t)sprintf((char *)body + i, k ? ",0" : "0");
	i += (size_t)sprintf((char *)body + i, "]}");
	assert_true(i < CTL_FRAME_NODE_PLAIN_MAX);

	tc_connect(t, x);
	assert_int_equal(tc_handshake(t, x, t->spub), 0);
	send_sealed(t, x, CTL_MSG_REGISTER_REQ, body, i);
	assert_int_equal(tc_frame(t, x, 1000, &f), -1);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.bad_messages, 1);
	assert_int_equal(s.registrations_ok, 0);

	/* a few values more than today's fields: fine */
	memcpy(rq->node_key, y->mpub, 32);
	rq->node_key[0] ^= 1;
	snprintf(rq->hostname, sizeof rq->hostname, "newer");
	sodium_memzero(enc, len);
	free(enc);
	assert_int_equal(ctl_msg_encode(&m, &enc, &len, &me), 0);
	memcpy(body, enc, len - 1);
	i = len - 1;
	i += (size_t)sprintf((char *)body + i, ",\"future\":[1,2,3]}");
	tc_connect(t, y);
	assert_int_equal(tc_handshake(t, y, t->spub), 0);
	send_sealed(t, y, CTL_MSG_REGISTER_REQ, body, i);
	tc_expect(t, y, CTL_MSG_REGISTER_RESP, &m);
	assert_int_equal(m.u.reg_resp.status, CTL_REG_OK);
	sodium_memzero(enc, len);
	free(enc);
	free(body);
	tc_free(x);
	tc_free(y);
}

/* The value count of ctl_msg_decode_limited: each object, array and
 * scalar; strings' commas and brackets do not count. */
static void value_budget_counts_values(void **state)
{
	(void)state;
	struct ctl_msg m;
	struct ctl_msg_err me;
	const char *ka = "{\"a\":[1,2],\"s\":\"[{,,}]\"}"; /* 5 values */
	size_t n = strlen(ka);
	assert_int_equal(
	    ctl_msg_decode_limited(CTL_MSG_KEEPALIVE, (const uint8_t *)ka, n, 5, &m, &me),
	    0);
	assert_int_equal(
	    ctl_msg_decode_limited(CTL_MSG_KEEPALIVE, (const uint8_t *)ka, n, 4, &m, &me),
	    -EBADMSG);
	assert_int_equal(me.code, CTL_MSG_E_TOKENS);
	assert_string_equal(me.text, "KEEPALIVE: more than 4 JSON values");
}

/* Nothing a pending node sends is parsed: its ENDPOINTS are dropped from
 * the type byte (and counted), whatever the body; before, they were decoded
 * and a bad body closed the connection. Its KEEPALIVE still works. */
static void pending_node_endpoints_not_parsed(void **state)
{
	struct t *t = *state;
	struct tc *x = tc_new();
	struct ctl_register_resp r;
	struct ctl_frame f;
	tc_join(t, x, "waiting", NULL, &r);
	assert_int_equal(r.status, CTL_REG_PENDING);
	send_sealed(t, x, CTL_MSG_ENDPOINTS, (const uint8_t *)"not json", 8);
	send_sealed(t, x, CTL_MSG_KEEPALIVE, (const uint8_t *)"{}", 2);
	assert_int_equal(tc_frame(t, x, 300, &f), 0); /* still open */
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.pending_ignored, 1);
	assert_int_equal(s.bad_messages, 0);
	/* a type the state does not take at all: closed */
	send_sealed(t, x, CTL_MSG_MAP_FULL, (const uint8_t *)"{}", 2);
	assert_int_equal(tc_frame(t, x, 1000, &f), -1);
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.bad_messages, 1);
	tc_free(x);
}

/* M3: connections that have not registered are capped per source; at the
 * global cap the oldest from the heaviest source is closed for a new one;
 * registered nodes are never touched, and a node from elsewhere joins. */
static void unregistered_capped_per_source_and_in_all(void **state)
{
	struct t *t = *state;
	restart_with(t, &(struct ctl_server_config){.max_unreg = 8,
	                                            .max_unreg_per_source = 4,
	                                            .handshake_ms = 10000});
	struct tc *a = tc_new(), *b = tc_new(), *fl[10];
	struct ctl_register_resp r;
	struct ctl_msg m;
	struct ctl_frame f;

	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);

	tc_src = 0x7f000007;
	for (int i = 0; i < 6; i++) {
		fl[i] = tc_new();
		tc_connect(t, fl[i]);
	}
	pump(t, 20);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_refused_source, 2);
	assert_int_equal(s.conns_active, 1 + 4);
	assert_int_equal(tc_frame(t, fl[4], 500, &f), -1);
	assert_int_equal(tc_frame(t, fl[5], 500, &f), -1);
	assert_int_equal(tc_frame(t, fl[0], 50, &f), 0); /* still held */

	tc_src = 0x7f000008;
	for (int i = 6; i < 10; i++) {
		fl[i] = tc_new();
		tc_connect(t, fl[i]);
	}
	pump(t, 20);
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_active, 1 + 8);
	assert_int_equal(s.conns_evicted, 0);

	/* at the global cap: a node from a third source still gets in */
	tc_src = 0x7f000009;
	tc_join(t, b, "bravo", t->key, &r);
	assert_int_equal(r.status, CTL_REG_OK);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_evicted, 1);
	assert_int_equal(s.nodes_online, 2);
	tc_src = 0;
	/* the registered node was left alone and hears of bravo */
	tc_expect(t, a, CTL_MSG_MAP_DELTA, &m);
	ctl_msg_free(&m);
	for (int i = 0; i < 10; i++)
		tc_free(fl[i]);
	tc_free(a);
	tc_free(b);
}

/* With all max_conns taken, an unregistered connection makes room for a
 * new one (a node reconnecting while a flood holds the slots gets in); when
 * every connection is a registered node, a new one is refused. Before, the
 * newcomer was refused whenever max_conns were open. */
static void full_server_makes_room_from_unregistered(void **state)
{
	struct t *t = *state;
	/* 4 slots, of them at most 2 unregistered */
	restart_with(t,
	             &(struct ctl_server_config){.max_conns = 4, .handshake_ms = 10000});
	struct tc *a = tc_new(), *b = tc_new(), *c = tc_new(), *d = tc_new(),
	          *fl = tc_new();
	struct ctl_register_resp r;
	struct ctl_msg m;
	struct ctl_frame f;
	tc_join(t, a, "alpha", t->key, &r);
	expect_full(t, a, 0, &m);
	ctl_msg_free(&m);
	tc_join(t, b, "bravo", t->key, &r);
	expect_full(t, b, 1, &m);
	ctl_msg_free(&m);
	tc_src = 0x7f000007;
	tc_connect(t, fl); /* holds a slot, never registers */
	tc_src = 0;
	tc_join(t, d, "delta", t->key, &r); /* the fourth slot */
	expect_full(t, d, 2, &m);
	ctl_msg_free(&m);
	struct ctl_server_stats s;
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_evicted, 0);

	tc_join(t, c, "charlie", t->key, &r); /* full: fl makes room */
	assert_int_equal(r.status, CTL_REG_OK);
	assert_int_equal(tc_frame(t, fl, 500, &f), -1);
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_evicted, 1);
	assert_int_equal(s.conns_refused_limit, 0);
	assert_int_equal(s.nodes_online, 4);

	tc_connect(t, fl); /* four nodes online: refused */
	assert_int_equal(tc_frame(t, fl, 500, &f), -1);
	ctl_server_get_stats(t->srv, &s);
	assert_int_equal(s.conns_refused_limit, 1);
	assert_int_equal(s.nodes_online, 4);
	tc_free(d);
	tc_free(a);
	tc_free(b);
	tc_free(c);
	tc_free(fl);
}

/* --- out of file descriptors ---------------------------------------------- */

struct fd_report {
	uint16_t port;
	uint64_t cpu_ms, paused, active_full, active_after;
};

static double cpu_ms_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int fill_fds[256];
static int n_fill;
static struct ctl_server *child_srv;
static struct fd_report child_rep;

static void child_free_fds(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_server_stats s;
	ctl_server_get_stats(child_srv, &s);
	child_rep.active_full = s.conns_active;
	for (int i = 0; i < n_fill; i++)
		close(fill_fds[i]);
	n_fill = 0;
}

/* The child: a server under RLIMIT_NOFILE 64 whose spare descriptors are
 * taken but 4; the test connects 30 times. 1.5 s later the descriptors are
 * given back; after 2.5 s the child reports and exits. */
static void fd_child(const char *dir, const uint8_t priv[32], int report_fd,
                     const char *log_path)
{
	int lf = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(lf, 2);
	close(lf);
	struct rlimit rl = {64, 64};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		_exit(3);
	char err[256];
	struct ctl_store *st = ctl_store_open(dir, err, sizeof err); /* either engine */
	struct event_base *base = event_base_new();
	if (!st || !base)
		_exit(4);
	struct ctl_server_config cfg = {.base = base, .store = st, .poll_ms = 50};
	memcpy(cfg.server_priv, priv, 32);
	struct sockaddr_in *a = (struct sockaddr_in *)&cfg.listen;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfg.listen_len = sizeof *a;
	child_srv = ctl_server_new(&cfg, err, sizeof err);
	if (!child_srv)
		_exit(5);
	struct sockaddr_storage ss;
	socklen_t sl;
	ctl_server_local(child_srv, &ss, &sl);
	child_rep.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	int fd;
	while (n_fill < 256 && (fd = open("/dev/null", O_RDONLY)) >= 0)
		fill_fds[n_fill++] = fd;
	for (int i = 0; i < 4 && n_fill > 0; i++)
		close(fill_fds[--n_fill]);
	struct timeval give = {1, 500000}, stop = {2, 500000};
	struct event *ev = evtimer_new(base, child_free_fds, NULL);
	evtimer_add(ev, &give);
	event_base_loopexit(base, &stop);
	double c0 = cpu_ms_self();
	if (write(report_fd, &child_rep, sizeof child_rep) != sizeof child_rep)
		_exit(6);
	event_base_dispatch(base);
	child_rep.cpu_ms = (uint64_t)(cpu_ms_self() - c0);
	struct ctl_server_stats s;
	ctl_server_get_stats(child_srv, &s);
	child_rep.paused = s.accept_paused;
	child_rep.active_after = s.conns_active;
	if (write(report_fd, &child_rep, sizeof child_rep) != sizeof child_rep)
		_exit(7);
	_exit(0);
}

/* M3: out of descriptors, accept() fails with EMFILE and the listening
 * socket stays readable. Before, the listener had no error callback: the
 * loop spun on it at 100% CPU and libevent logged every attempt. Now it
 * pauses 100 ms at a time, logs once, and accepts again when descriptors
 * are free. */
static void emfile_pauses_instead_of_spinning(void **state)
{
	struct t *t = *state;
	char log_path[128];
	snprintf(log_path, sizeof log_path, "%s/child.log", t->tmp);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		fd_child(t->dir, t->spriv, p[1], log_path);
	}
	close(p[1]);
	struct fd_report rep;
	assert_int_equal(read(p[0], &rep, sizeof rep), (ssize_t)sizeof rep);
	int fds[30];
	for (int i = 0; i < 30; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_port = htons(rep.port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
	}
	assert_int_equal(read(p[0], &rep, sizeof rep), (ssize_t)sizeof rep);
	int status = 0;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (int i = 0; i < 30; i++)
		close(fds[i]);
	close(p[0]);
	FILE *lf = fopen(log_path, "r");
	assert_non_null(lf);
	int lines = 0, ch;
	while ((ch = fgetc(lf)) != EOF)
		lines += ch == '\n';
	fclose(lf);
	print_message("EMFILE: %llu ms CPU in 2.5 s, %llu pauses, %d log lines, "
	              "%llu connections while full, %llu after\n",
	              (unsigned long long)rep.cpu_ms, (unsigned long long)rep.paused,
	              lines, (unsigned long long)rep.active_full,
	              (unsigned long long)rep.active_after);
	assert_true(rep.paused >= 1);
	assert_true(rep.cpu_ms < 500);
	assert_true(lines <= 3);
	assert_true(rep.active_full <= 4);
	assert_true(rep.active_after >= 20);
}

int main(void)
{
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(huge_frame_before_register_is_not_read, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(node_frame_limit_is_64k, setup, teardown),
	    cmocka_unit_test_setup_teardown(register_over_value_budget_is_not_parsed,
	                                    setup, teardown),
	    cmocka_unit_test(value_budget_counts_values),
	    cmocka_unit_test_setup_teardown(pending_node_endpoints_not_parsed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(unregistered_capped_per_source_and_in_all,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(full_server_makes_room_from_unregistered,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(emfile_pauses_instead_of_spinning, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
