/* Outbound fast-fail under the mesh policy (px_env.reach_ok): a destination
 * a mesh peer routes but the policy does not let this node reach fails at
 * once, with no dial: SOCKS5 answers 0x02 (not allowed by ruleset), the
 * HTTP proxy 403 with a line naming PEER:PORT, nc an error line, a client
 * tunnel resets its client; SOCKS5 UDP drops the datagram. Allowed ports
 * connect as before, and the refusals are counted (err_policy). */
#include "px_test_fake.h"

#include <poll.h>

static int n_reach;

/* 100.64.0.1 may be reached on TCP 22 only; everything else routed is
 * closed. */
static bool fake_reach(void *ctx, int proto, const struct ns_addr *a, uint16_t port)
{
	(void)ctx;
	n_reach++;
	struct ns_addr open;
	px_addr_parse(&open, "100.64.0.1");
	return proto == PX_REACH_TCP && port == 22 && a->family == AF_INET &&
	       !memcmp(a->addr, open.addr, 4);
}

static int policy_setup(void **st)
{
	int r = setup(st);
	env.reach_ok = fake_reach;
	return r;
}

static size_t socks_req(uint8_t *m, uint16_t port)
{
	const uint8_t r[] = {
	    5, 1, 0, 5, 1, 0, 1, 100, 64, 0, 1, (uint8_t)(port >> 8), (uint8_t)port};
	memcpy(m, r, sizeof(r));
	return sizeof(r);
}

static void socks5_refused_with_0x02_without_a_dial(void **st)
{
	reset_fake();
	struct px_socks *s = socks_new(NULL, NULL);
	int fd = socks_client(s);
	uint8_t m[32], r[12];
	csend(fd, m, socks_req(m, 80));
	crecv(fd, r, 12);
	assert_memory_equal(r, "\x05\x00", 2);
	assert_int_equal(r[2 + 1], 0x02); /* connection not allowed by ruleset */
	assert_int_equal(n_dials, 0);
	close(fd);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_policy, 1);
	assert_int_equal(stt.err_timeout + stt.err_refused + stt.err_no_route, 0);
	/* the allowed port connects */
	fd = socks_client(s);
	csend(fd, m, socks_req(m, 22));
	crecv(fd, r, 12);
	assert_int_equal(r[3], 0x00);
	assert_int_equal(n_dials, 1);
	assert_int_equal(last_port, 22);
	close(fd);
	px_socks_free(s);
}

static void http_refused_with_403_naming_the_destination(void **st)
{
	reset_fake();
	struct px_http *h = http_new(NULL, NULL);
	int fd = http_client(h);
	const char *req = "CONNECT 100.64.0.1:8080 HTTP/1.1\r\nHost: x\r\n\r\n";
	csend(fd, req, strlen(req));
	char buf[400];
	size_t n = 0;
	while (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) {
		crecv(fd, buf + n, 1);
		n++;
		assert_true(n < sizeof(buf) - 1);
	}
	buf[n] = 0;
	assert_int_equal(atoi(buf + 9), 403);
	char *cl = strstr(buf, "Content-Length: ");
	assert_non_null(cl);
	size_t len = (size_t)atoi(cl + 16);
	const char *want = "the mesh policy does not allow 100.64.0.1:8080\n";
	assert_int_equal(len, strlen(want));
	crecv(fd, buf, len);
	assert_memory_equal(buf, want, len);
	assert_int_equal(n_dials, 0);
	close(fd);
	/* an absolute-URI request too */
	fd = http_client(h);
	req = "GET http://100.64.0.1:9000/x HTTP/1.1\r\nHost: 100.64.0.1:9000\r\n\r\n";
	csend(fd, req, strlen(req));
	crecv(fd, buf, 12);
	assert_memory_equal(buf, "HTTP/1.1 403", 12);
	close(fd);
	assert_int_equal(n_dials, 0);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_policy, 2);
	px_http_free(h);
}

static void nc_and_client_tunnel_told(void **st)
{
	reset_fake();
	struct px_nc *nc = px_nc_new(&env, CFG_DIRECT_NO);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	px_nc_accept(nc, sv[0], "100.64.0.1", 443);
	const char *want = "error: the mesh policy does not allow this node to reach "
	                   "100.64.0.1:443\n";
	char buf[200];
	crecv(sv[1], buf, strlen(want));
	assert_memory_equal(buf, want, strlen(want));
	close(sv[1]);
	assert_int_equal(n_dials, 0);
	px_nc_free(nc);
	/* a TCP client tunnel: the local client is reset at once */
	struct cfg_tcp_client_tunnel c = {.bind = loopback_any_port(),
	                                  .target_host = "100.64.0.1",
	                                  .target_port = 3306};
	char err[200];
	struct px_tunnel *t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	assert_non_null(t);
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(px_tunnel_local_port(t));
	int fd = client(&ss, sizeof(*sin));
	assert_int_not_equal(cclosed(fd), -1);
	close(fd);
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.err_policy, 1);
	assert_int_equal(n_dials, 0);
	px_tunnel_free(t);
}

/* A UDP client tunnel to a port the policy closes: each datagram is dropped
 * before a mesh flow is made for it, counted as policy. */
static void udp_client_tunnel_drops(void **st)
{
	reset_fake();
	struct cfg_udp_client_tunnel c = {
	    .bind = loopback_any_port(), .target_host = "100.64.0.1", .target_port = 53};
	char err[200];
	struct px_udp_tunnel *t = px_udp_client_tunnel_new(&env, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	char desc[200];
	px_udp_tunnel_describe(t, desc, sizeof(desc));
	uint16_t port = (uint16_t)atoi(strstr(desc, "127.0.0.1:") + 10);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                          .sin_port = htons(port)};
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    sendto(fd, "q", 1, 0, (struct sockaddr *)&sin, sizeof(sin)), 1);
	struct px_stats stt = {0};
	for (int i = 0; i < 200 && stt.dgram_drops < 2; i++) {
		pump(5);
		px_udp_tunnel_get_stats(t, &stt);
	}
	assert_int_equal(stt.err_policy, 2);
	assert_int_equal(stt.dgram_drops, 2);
	assert_int_equal(stt.err_other, 0); /* no mesh flow was tried */
	close(fd);
	px_udp_tunnel_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(socks5_refused_with_0x02_without_a_dial),
	    cmocka_unit_test(http_refused_with_403_naming_the_destination),
	    cmocka_unit_test(nc_and_client_tunnel_told),
	    cmocka_unit_test(udp_client_tunnel_drops),
	};
	return cmocka_run_group_tests(tests, policy_setup, teardown);
}
