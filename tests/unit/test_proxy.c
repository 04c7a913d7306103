/* SOCKS5 and SOCKS4a front-end over real sockets and a real loop, with
 * the fake netstack of px_test_fake.h. */
#include "px_test_fake.h"

/* ---- SOCKS5 ---- */

static void test_socks5_connect_pipelined(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_v4(m + 3, 1, 8080);
	memcpy(m + n, "hello", 5);
	csend(fd, m, n + 5); /* greeting, request and data in one segment */
	uint8_t r[12];
	crecv(fd, r, 12);
	assert_memory_equal(r, "\x05\x00", 2);
	assert_memory_equal(r + 2, "\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "hello", 5);
	assert_int_equal(last_port, 8080);
	assert_memory_equal(last_dst.addr, "\x64\x40\x00\x01", 4);
	/* the spliced socket is the client's connection */
	csend(spliced_fd, "pong", 4);
	crecv(fd, r, 4);
	assert_memory_equal(r, "pong", 4);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.accepted, 1);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.head_bytes, 5);
	assert_int_equal(stt.pending, 0);
	close(fd);
	px_socks_free(s);
}

static void test_socks5_byte_by_byte(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_name(m + 3, "async.mesh", 443);
	uint8_t r[2];
	for (size_t i = 0; i < n; i++) {
		csend(fd, m + i, 1);
		pump(2);
		if (i == 2) {
			crecv(fd, r, 2);
			assert_memory_equal(r, "\x05\x00", 2);
		}
	}
	uint8_t rep[10];
	crecv(fd, rep, 10);
	assert_int_equal(rep[1], SOCKS5_REP_SUCCEEDED);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 0);
	assert_memory_equal(last_dst.addr, "\x64\x40\x00\x01", 4);
	assert_int_equal(last_port, 443);
	close(fd);
	px_socks_free(s);
}

/* Sends a no-auth CONNECT (request bytes in m) and returns the reply code. */
static uint8_t socks_try(struct px_socks *s, const uint8_t *req, size_t n)
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

static void test_socks5_reply_codes(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	uint8_t m[300];
	assert_int_equal(socks_try(s, m, req_v4(m, 2, 80)), SOCKS5_REP_REFUSED);
	assert_int_equal(socks_try(s, m, req_v4(m, 3, 80)), SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(socks_try(s, m, req_v4(m, 4, 80)), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks_try(s, m, req_v4(m, 9, 80)), SOCKS5_REP_NET_UNREACH);
	assert_int_equal(n_dials, 3); /* no dial without a route */
	/* names: synchronous (hosts) and asynchronous (DNS server) answers */
	assert_int_equal(socks_try(s, m, req_name(m, "refused.mesh", 80)),
	                 SOCKS5_REP_REFUSED);
	assert_int_equal(socks_try(s, m, req_name(m, "offmesh.mesh", 80)),
	                 SOCKS5_REP_NET_UNREACH);
	assert_int_equal(socks_try(s, m, req_name(m, "noroute.mesh", 80)),
	                 SOCKS5_REP_NET_UNREACH);
	assert_int_equal(socks_try(s, m, req_name(m, "nxdomain.mesh", 80)),
	                 SOCKS5_REP_HOST_UNREACH);
	/* protocol */
	const uint8_t bind[] = {5, 2, 0, 1, 100, 64, 0, 1, 0, 80};
	assert_int_equal(socks_try(s, bind, sizeof(bind)), SOCKS5_REP_CMD_UNSUPPORTED);
	const uint8_t atyp[] = {5, 1, 0, 9};
	assert_int_equal(socks_try(s, atyp, sizeof(atyp)), SOCKS5_REP_ATYP_UNSUPPORTED);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_refused, 2);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.err_unreachable, 1);
	assert_int_equal(stt.err_no_route, 3);
	assert_int_equal(stt.err_resolve, 1);
	assert_int_equal(stt.err_protocol, 2);
	assert_int_equal(stt.established, 0);
	assert_int_equal(stt.pending, 0);
	/* without a resolver names fail with 0x04 */
	struct evdns_base *dns = env.dns;
	env.dns = NULL;
	struct px_socks *s2 = socks_new(NULL, NULL);
	assert_int_equal(socks_try(s2, m, req_name(m, "sync.mesh", 80)),
	                 SOCKS5_REP_HOST_UNREACH);
	env.dns = dns;
	px_socks_free(s2);
	px_socks_free(s);
}

static void test_socks5_auth(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new("alice", "secret");
	uint8_t r[12];
	/* a client without username/password support */
	int fd = socks_client(s);
	csend(fd, "\x05\x01\x00", 3);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\xff", 2);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	/* wrong password: 0x01 and close */
	fd = socks_client(s);
	csend(fd, "\x05\x02\x00\x02", 4);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\x02", 2);
	csend(fd,
	      "\x01\x05"
	      "alice"
	      "\x06"
	      "secreT",
	      14);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x01\x01", 2);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	/* right: everything in one go */
	fd = socks_client(s);
	uint8_t m[64];
	memcpy(m,
	       "\x05\x01\x02"
	       "\x01\x05"
	       "alice"
	       "\x06"
	       "secret",
	       17);
	size_t n = 17 + req_v4(m + 17, 1, 22);
	csend(fd, m, n);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x05\x02", 2);
	crecv(fd, r, 2);
	assert_memory_equal(r, "\x01\x00", 2);
	crecv(fd, r, 10);
	assert_int_equal(r[1], 0);
	assert_int_equal(n_splices, 1);
	close(fd);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_auth, 2);
	assert_int_equal(stt.established, 1);
	px_socks_free(s);
}

/* SOCKS4a on the SOCKS5 port, byte by byte with early data; BIND and
 * SOCKS4 under configured credentials get 91. */
static void test_socks4(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	const uint8_t req[] = {4,   1,   0x1f, 0x90, 0,   0,   0,   1,
	                       'u', 0,   '1',  '0',  '.', '0', '.', '0',
	                       '.', '1', 0,    'E',  'A', 'R', 'L', 'Y'};
	for (size_t i = 0; i + 6 < sizeof(req); i++) {
		csend(fd, req + i, 1);
		pump(1);
	}
	csend(fd, req + sizeof(req) - 6, 6); /* the last NUL and early data */
	uint8_t r[8];
	crecv(fd, r, 8);
	assert_int_equal(r[0], 0);
	assert_int_equal(r[1], SOCKS4_REP_GRANTED);
	assert_int_equal(last_port, 8080);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "EARLY", 5);
	close(fd);
	fd = socks_client(s);
	csend(fd, "\x04\x02\x00\x50\x64\x40\x00\x01\x00", 9); /* BIND */
	crecv(fd, r, 8);
	assert_int_equal(r[1], SOCKS4_REP_REJECTED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	px_socks_free(s);
	s = socks_new("alice", "secret");
	fd = socks_client(s);
	csend(fd, "\x04\x01\x00\x50\x64\x40\x00\x01alice\x00", 14);
	crecv(fd, r, 8);
	assert_int_equal(r[1], SOCKS4_REP_REJECTED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_auth, 1);
	assert_int_equal(n_splices, 1);
	px_socks_free(s);
}

static void test_socks5_timeouts(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	/* a client that says nothing */
	int idle = socks_client(s);
	/* a client that stops halfway */
	int half = socks_client(s);
	csend(half, "\x05\x01\x00\x05\x01", 5);
	/* not SOCKS5 at all */
	int http = socks_client(s);
	csend(http, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_int_equal(cclosed(http), 0);
	assert_int_equal(cclosed(idle), 0);
	uint8_t r[2];
	crecv(half, r, 2);
	assert_int_equal(cclosed(half), 0);
	close(idle);
	close(half);
	close(http);
	/* a dial that never answers: 0x06 after connect_timeout_ms, and the
	 * late connection is reset */
	int fd = socks_client(s);
	uint8_t m[16] = {5, 1, 0};
	csend(fd, m, 3 + req_v4(m + 3, 5, 80));
	uint8_t rep[12];
	crecv(fd, rep, 12);
	assert_int_equal(rep[3], SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	assert_null(hung); /* the dial was taken back with the session */
	assert_int_equal(n_cancels, 1);
	assert_int_equal(n_splices, 0);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_handshake_timeout, 2); /* idle and half */
	assert_int_equal(stt.err_protocol, 1);
	assert_int_equal(stt.err_timeout, 1);
	assert_int_equal(stt.pending, 0);
	px_socks_free(s);
}

/* Front-end freed while a dial and a name lookup are outstanding. */
static void test_socks5_free_while_pending(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int a = socks_client(s), b = socks_client(s), c = socks_client(s);
	uint8_t m[64] = {5, 1, 0};
	csend(a, m, 3 + req_v4(m + 3, 5, 80));
	csend(b, m, 3 + req_name(m + 3, "async.mesh", 80));
	csend(c, "\x05", 1);
	/* b's lookup goes out; free before the answer is processed */
	for (int i = 0; i < 20 && !hung; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	assert_non_null(hung);
	uint8_t r[2];
	crecv(a, r, 2);
	crecv(b, r, 2);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.pending, 3);
	px_socks_free(s);
	assert_int_equal(cclosed(a), 0);
	assert_int_equal(cclosed(c), 0);
	pump(50); /* the DNS answer or the cancellation arrives */
	assert_null(hung); /* a's dial was taken back with the front-end */
	assert_true(n_cancels >= 1);
	pump(20);
	assert_int_equal(n_splices, 0);
	close(a);
	close(b);
	close(c);
}

/* A resolver that never answers: the connect timer answers 0x06, and
 * closing (or freeing the front-end) cancels the lookups. */
static void test_socks5_dns_cancel(void **st)
{
	reset_fake();
	int hole = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(hole, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t sl = sizeof(sin);
	getsockname(hole, (struct sockaddr *)&sin, &sl);
	struct evdns_base *dns = env.dns;
	env.dns = evdns_base_new(base, 0);
	evdns_base_nameserver_sockaddr_add(env.dns, (struct sockaddr *)&sin, sl, 0);
	struct px_socks *s = socks_new(NULL, NULL);
	uint8_t m[64] = {5, 1, 0};
	size_t n = 3 + req_name(m + 3, "silent.mesh", 80);
	int a = socks_client(s);
	csend(a, m, n);
	uint8_t r[12];
	crecv(a, r, 12);
	assert_int_equal(r[3], SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(cclosed(a), 0);
	close(a);
	pump(20);
	int b = socks_client(s);
	csend(b, m, n);
	crecv(b, r, 2);
	pump(20);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.pending, 1);
	px_socks_free(s); /* b is still resolving */
	assert_int_equal(cclosed(b), 0);
	close(b);
	pump(20);
	assert_int_equal(n_dials, 0);
	evdns_base_free(env.dns, 1);
	env.dns = dns;
	close(hole);
}

/* Out of descriptors: the listener pauses instead of spinning, and
 * accepts the waiting connections once descriptors are free again. */
static void test_emfile(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = socks_client(s);
	struct rlimit old, low;
	getrlimit(RLIMIT_NOFILE, &old);
	int probe = dup(0); /* the lowest free descriptor */
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe; /* no new descriptor can be made */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	pump(250);
	setrlimit(RLIMIT_NOFILE, &old);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_true(stt.err_accept >= 1 && stt.err_accept <= 5); /* ~1 per 100 ms */
	assert_int_equal(stt.accepted, 0);
	pump(200);
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.accepted, 8);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	px_socks_free(s);
}

static void test_bind_error(void **st)
{
	struct px_socks *s = socks_new(NULL, NULL);
	struct cfg_socks5 c = {.bind = loopback_any_port()};
	px_socks_local_addr(s, &c.bind.addr, &c.bind.addr_len);
	char err[200];
	assert_null(px_socks_new(&env, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "127.0.0.1:"));
	assert_non_null(strstr(err, "Address already in use"));
	px_socks_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socks5_connect_pipelined),
	    cmocka_unit_test(test_socks5_byte_by_byte),
	    cmocka_unit_test(test_socks5_reply_codes),
	    cmocka_unit_test(test_socks5_auth),
	    cmocka_unit_test(test_socks5_timeouts),
	    cmocka_unit_test(test_socks4),
	    cmocka_unit_test(test_socks5_free_while_pending),
	    cmocka_unit_test(test_socks5_dns_cancel),
	    cmocka_unit_test(test_emfile),
	    cmocka_unit_test(test_bind_error),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
