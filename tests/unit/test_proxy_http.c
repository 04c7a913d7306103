/* HTTP proxy (CONNECT, plain forwarding, auth) and TCP port forwards over
 * real sockets and a real loop, with the fake netstack of px_test_fake.h. */
#include "px_test_fake.h"

/* ---- HTTP CONNECT ---- */

static void test_http_proxy(void **st)
{
	reset_fake();
	struct px_http *h = http_new(NULL, NULL);
	assert_int_equal(
	    http_try(h, "CONNECT 100.64.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\nEARLY", false),
	    200);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 5);
	assert_memory_equal(spliced_head, "EARLY", 5);
	assert_int_equal(http_try(h, "CONNECT sync.mesh:80 HTTP/1.1\r\n\r\n", false),
	                 200);
	assert_int_equal(http_try(h, "CONNECT [fd00::1]:80 HTTP/1.1\r\n\r\n", false),
	                 200);
	assert_int_equal(last_dst.family, AF_INET6);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.2:80 HTTP/1.1\r\n\r\n", true),
	                 502);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.3:80 HTTP/1.1\r\n\r\n", true),
	                 504);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.4:80 HTTP/1.1\r\n\r\n", true),
	                 502);
	assert_int_equal(http_try(h, "CONNECT 100.73.0.1:80 HTTP/1.1\r\n\r\n", true),
	                 502);
	assert_int_equal(http_try(h, "CONNECT nxdomain.mesh:80 HTTP/1.1\r\n\r\n", true),
	                 502);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.5:80 HTTP/1.1\r\n\r\n", true),
	                 504);
	assert_null(hung); /* the dial was cancelled with the session */
	assert_int_equal(http_try(h, "TRACE http://100.64.0.1/ HTTP/1.1\r\n\r\n", true),
	                 501);
	/* Plain forwarding: no answer of ours; the rewritten head and the body
	 * go to the origin (here the socket the netstack splice was given). */
	int fwd = http_client(h);
	const char *post =
	    "POST http://100.64.0.1:8080/x?y HTTP/1.1\r\nHost: h\r\n"
	    "Proxy-Connection: keep-alive\r\nContent-Length: 4\r\n\r\nBODY";
	const char *sent = "POST /x?y HTTP/1.1\r\nHost: 100.64.0.1:8080\r\n"
	                   "Content-Length: 4\r\nConnection: keep-alive\r\n\r\nBODY";
	int splices = n_splices;
	csend(fwd, post, strlen(post));
	long until = now_ms() + 2000;
	while (n_splices == splices && now_ms() < until)
		pump(5);
	assert_int_equal(spliced_head_len, 0);
	char got[256];
	crecv(spliced_fd, got, strlen(sent));
	assert_memory_equal(got, sent, strlen(sent));
	assert_int_equal(last_port, 8080);
	close(fwd);
	assert_int_equal(http_try(h, "CONNECT 100.64.0.1 HTTP/1.1\r\n\r\n", true), 400);
	char *big = malloc(PX_HTTP_MAX_HEADER + 64);
	size_t n = (size_t)sprintf(big, "CONNECT 100.64.0.1:80 HTTP/1.1\r\nX: ");
	memset(big + n, 'x', PX_HTTP_MAX_HEADER);
	strcpy(big + n + PX_HTTP_MAX_HEADER - 30, "\r\n\r\n"); /* ends past 8 KiB */
	assert_true(strlen(big) > PX_HTTP_MAX_HEADER);
	assert_int_equal(http_try(h, big, true), 431);
	free(big);
	/* byte by byte */
	int fd = http_client(h);
	const char *req = "CONNECT 100.64.0.1:8080 HTTP/1.1\r\n\r\n";
	for (size_t i = 0; req[i]; i++) {
		csend(fd, req + i, 1);
		pump(1);
	}
	char resp[64];
	crecv(fd, resp, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
	assert_memory_equal(resp, "HTTP/1.1 200", 12);
	assert_int_equal(last_port, 8080);
	close(fd);
	/* silence: closed after the handshake timeout */
	fd = http_client(h);
	assert_int_equal(cclosed(fd), 0);
	close(fd);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.established, 5);
	assert_int_equal(stt.err_protocol, 3);
	assert_int_equal(stt.err_handshake_timeout, 1);
	assert_int_equal(stt.err_timeout, 2);
	assert_int_equal(stt.pending, 0);
	px_http_free(h);
}

static void test_http_auth_required(void **st)
{
	reset_fake();
	struct px_http *h = http_new("alice", "secret");
	assert_int_equal(http_try(h, "CONNECT 100.64.0.1:443 HTTP/1.1\r\n\r\n", true),
	                 407);
	assert_int_equal(http_try(h,
	                          "CONNECT 100.64.0.1:443 HTTP/1.1\r\n"
	                          "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n",
	                          true),
	                 407);
	assert_int_equal(http_try(h,
	                          "CONNECT 100.64.0.1:443 HTTP/1.1\r\n"
	                          "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n",
	                          false),
	                 200);
	struct px_stats stt;
	px_http_get_stats(h, &stt);
	assert_int_equal(stt.err_auth, 2);
	assert_int_equal(stt.established, 1);
	px_http_free(h);
}

/* ---- tunnels ---- */

static void test_client_tunnel(void **st)
{
	reset_fake();
	struct cfg_tcp_client_tunnel c = {
	    .bind = loopback_any_port(), .target_host = "100.64.0.1", .target_port = 22};
	char err[200];
	struct px_tunnel *t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	assert_non_null(t);
	char desc[200];
	px_tunnel_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "-> 100.64.0.1:22"));
	struct sockaddr_storage ss;
	socklen_t sl;
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	int fd = client(&ss, sl);
	csend(fd, "SSH-2.0", 7);
	pump(20);
	assert_int_equal(n_splices, 1);
	assert_int_equal(spliced_head_len, 0); /* the data stays in the socket */
	char b[8];
	assert_int_equal(recv(spliced_fd, b, 7, 0), 7);
	assert_memory_equal(b, "SSH-2.0", 7);
	close(fd);
	px_tunnel_free(t);

	/* refused: the local client is reset */
	c.target_host = "100.64.0.2";
	t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	fd = client(&ss, sl);
	assert_int_equal(cclosed(fd), ECONNRESET);
	close(fd);
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.err_refused, 1);
	px_tunnel_free(t);

	/* a name target goes through the resolver */
	c.target_host = "async.mesh";
	t = px_tcp_client_tunnel_new(&env, &c, err, sizeof(err));
	px_listener_addr(((struct px_front *)t)->lst, &ss, &sl);
	fd = client(&ss, sl);
	pump(100);
	assert_int_equal(n_splices, 2);
	close(fd);
	px_tunnel_free(t);
}

static void test_server_tunnel(void **st)
{
	reset_fake();
	/* a local service */
	int srv = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(srv, (struct sockaddr *)&sin, sizeof(sin)), 0);
	listen(srv, 8);
	socklen_t sl = sizeof(sin);
	getsockname(srv, (struct sockaddr *)&sin, &sl);
	struct cfg_tcp_server_tunnel c = {.listen_port = 8080,
	                                  .target_host = "127.0.0.1",
	                                  .target_port = ntohs(sin.sin_port)};
	char err[200];
	struct px_tunnel *t = px_tcp_server_tunnel_new(&env, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	assert_int_equal(listen_port, 8080);
	struct ns_addr src;
	px_addr_parse(&src, "100.64.0.9");
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &src, 40000, 8080);
	pump(20);
	assert_int_equal(n_splices, 1);
	int acc = accept(srv, NULL, NULL);
	assert_true(acc >= 0);
	csend(spliced_fd, "hi", 2);
	char b[2];
	assert_int_equal(recv(acc, b, 2, 0), 2);
	close(acc);
	close(srv); /* now the port refuses */
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &src, 40001, 8080);
	pump(20);
	assert_int_equal(n_aborts, 1); /* the mesh side is reset */
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.accepted, 2);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.err_refused, 1);
	assert_int_equal(stt.pending, 0);
	char desc[200];
	px_tunnel_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "tcp-server mesh:8080 -> 127.0.0.1:"));
	px_tunnel_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http_proxy),
	    cmocka_unit_test(test_http_auth_required),
	    cmocka_unit_test(test_client_tunnel),
	    cmocka_unit_test(test_server_tunnel),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
