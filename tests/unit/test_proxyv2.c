/* PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2): the header
 * bytes for TCP over IPv4 and IPv6, and a TCPServerTunnel with
 * ProxyProtocol = v2 sending it to a real local service before the mesh
 * client's bytes; the tunnel's MaxConnections and ns_tcp_unlisten on free.
 * The mesh side is the fake netstack of px_test_fake.h. */
#include "px_test_fake.h"

#include <poll.h>

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static void test_header_ipv4(void **st)
{
	struct ns_addr src, dst;
	px_addr_parse(&src, "100.64.0.9");
	px_addr_parse(&dst, "100.64.0.2");
	uint8_t out[PX_PROXYV2_MAX];
	size_t n = px_proxyv2_header(out, sizeof(out), &src, 40000, &dst, 8080);
	static const uint8_t want[28] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
	    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
	    0x21,                               /* version 2, PROXY */
	    0x11,                               /* AF_INET, STREAM */
	    0x00, 0x0c,                         /* 12 address bytes follow */
	    100,  64,   0,    9,                /* source */
	    100,  64,   0,    2,                /* destination */
	    0x9c, 0x40,                         /* 40000 */
	    0x1f, 0x90,                         /* 8080 */
	};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	/* one byte short does not fit */
	assert_int_equal(px_proxyv2_header(out, 27, &src, 40000, &dst, 8080), 0);
}

static void test_header_ipv6(void **st)
{
	struct ns_addr src, dst;
	px_addr_parse(&src, "fd00::9");
	px_addr_parse(&dst, "fd00::2");
	uint8_t out[PX_PROXYV2_MAX];
	size_t n = px_proxyv2_header(out, sizeof(out), &src, 1, &dst, 443);
	assert_int_equal(n, 52);
	assert_memory_equal(out, sig, 12);
	assert_int_equal(out[12], 0x21);
	assert_int_equal(out[13], 0x21); /* AF_INET6, STREAM */
	assert_int_equal(out[14], 0);
	assert_int_equal(out[15], 36);
	assert_memory_equal(out + 16, src.addr, 16);
	assert_memory_equal(out + 32, dst.addr, 16);
	assert_memory_equal(out + 48, "\x00\x01\x01\xbb", 4);
	assert_int_equal(px_proxyv2_header(out, 51, &src, 1, &dst, 443), 0);
	/* mixed families and unknown families give nothing */
	struct ns_addr v4;
	px_addr_parse(&v4, "100.64.0.2");
	assert_int_equal(px_proxyv2_header(out, sizeof(out), &src, 1, &v4, 443), 0);
	struct ns_addr none = {0};
	assert_int_equal(px_proxyv2_header(out, sizeof(out), &none, 1, &none, 443), 0);
}

static int local_service(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	socklen_t sl = sizeof(sin);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int accept_pumped(int lfd)
{
	long end = now_ms() + 2000;
	while (now_ms() < end) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1) {
			int fd = accept(lfd, NULL, NULL);
			struct timeval tv = {2, 0}; /* a missing byte fails, not hangs */
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			pump(10); /* the tunnel sees its connect complete */
			return fd;
		}
		pump(1);
	}
	fail_msg("the tunnel did not connect");
	return -1;
}

static struct px_tunnel *server_tunnel(uint16_t local_port, int pp, uint32_t max_conn)
{
	struct cfg_tcp_server_tunnel c = {.listen_port = 8080,
	                                  .target_host = "127.0.0.1",
	                                  .target_port = local_port,
	                                  .proxy_protocol = pp};
	c.limits.max_connections = max_conn;
	c.limits.idle_timeout_ms = 90000;
	c.limits.buffer_bytes = 32768;
	char err[200];
	struct px_tunnel *t = px_tcp_server_tunnel_new(&env, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	return t;
}

static void mesh_connect(const char *src, uint16_t sport)
{
	struct ns_addr a;
	px_addr_parse(&a, src);
	assert_non_null(listen_cb);
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &a, sport, 8080);
}

static void test_server_tunnel_sends_header(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = local_service(&port);
	struct px_tunnel *t = server_tunnel(port, 2, 0);
	char desc[200];
	px_tunnel_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "(PROXY v2)"));
	mesh_connect("100.64.0.9", 40000);
	int srv = accept_pumped(lfd);
	pump(10);
	assert_int_equal(n_splices, 1);
	assert_int_equal(last_opts.idle_ms, 90000);
	assert_int_equal(last_opts.buf_limit, 32768);
	/* The header comes first, then the mesh client's bytes. */
	csend(spliced_fd, "GET /", 5);
	uint8_t b[33];
	assert_int_equal(recv(srv, b, 33, MSG_WAITALL), 33);
	assert_memory_equal(b, sig, 12);
	assert_memory_equal(b + 12, "\x21\x11\x00\x0c", 4);
	assert_memory_equal(b + 16, "\x64\x40\x00\x09\x64\x40\x00\x02", 8);
	assert_memory_equal(b + 24, "\x9c\x40\x1f\x90", 4);
	assert_memory_equal(b + 28, "GET /", 5);
	close(srv);
	/* IPv6 mesh clients get a TCP6 header. */
	fake_local.family = AF_INET6;
	px_addr_parse(&fake_local, "fd00::2");
	mesh_connect("fd00::9", 5555);
	srv = accept_pumped(lfd);
	assert_int_equal(recv(srv, b, 16, MSG_WAITALL), 16);
	assert_memory_equal(b + 12, "\x21\x21\x00\x24", 4);
	close(srv);
	px_addr_parse(&fake_local, "100.64.0.2");
	px_tunnel_free(t);
	assert_null(listen_cb); /* unlistened */
	/* Without ProxyProtocol the service gets the client's bytes only. */
	t = server_tunnel(port, 0, 0);
	mesh_connect("100.64.0.9", 40001);
	srv = accept_pumped(lfd);
	pump(10);
	csend(spliced_fd, "GET /", 5);
	assert_int_equal(recv(srv, b, 5, MSG_WAITALL), 5);
	assert_memory_equal(b, "GET /", 5);
	close(srv);
	px_tunnel_free(t);
	close(lfd);
}

/* MaxConnections counts local connects and established splices; above it
 * the mesh side is reset. */
static void test_server_tunnel_limit(void **st)
{
	reset_fake();
	uint16_t port;
	int lfd = local_service(&port);
	struct px_tunnel *t = server_tunnel(port, 0, 2);
	mesh_connect("100.64.0.9", 1);
	mesh_connect("100.64.0.9", 2);
	int a = accept_pumped(lfd), b = accept_pumped(lfd);
	pump(10);
	assert_int_equal(n_splices, 2);
	mesh_connect("100.64.0.9", 3);
	assert_int_equal(n_aborts, 1);
	struct px_stats stt;
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.accepted, 3);
	assert_int_equal(stt.established, 2);
	assert_int_equal(stt.err_limit, 1);
	assert_int_equal(stt.active, 2);
	/* one splice ends: room again */
	((struct px_front *)t)->acct->active--;
	((struct px_front *)t)->acct->bytes_in = 7;  /* mesh -> service */
	((struct px_front *)t)->acct->bytes_out = 3; /* service -> mesh */
	mesh_connect("100.64.0.9", 4);
	int c = accept_pumped(lfd);
	pump(10);
	px_tunnel_get_stats(t, &stt);
	assert_int_equal(stt.established, 3);
	assert_int_equal(stt.err_limit, 1);
	/* the client is the mesh side: up is towards the service */
	assert_int_equal(stt.bytes_up, 7);
	assert_int_equal(stt.bytes_down, 3);
	close(a);
	close(b);
	close(c);
	px_tunnel_free(t);
	close(lfd);
}

/* TLVs: written after the addresses and counted in the length; the parser
 * (what a receiving service does) reads back what was written. */
static void test_header_tlvs_round_trip(void **st)
{
	struct ns_addr src, dst;
	px_addr_parse(&src, "100.64.0.9");
	px_addr_parse(&dst, "100.64.0.2");
	const char *name = "web.mesh.internal", *user = "alice";
	struct px_pp2_tlv tlv[2] = {
	    {.type = PX_PP2_TYPE_MESH_NAME, .len = 17, .value = (const uint8_t *)name},
	    {.type = PX_PP2_TYPE_MESH_USER, .len = 5, .value = (const uint8_t *)user},
	};
	uint8_t out[PX_PROXYV2_MAX];
	size_t n = px_proxyv2_header_tlv(out, sizeof(out), &src, 1, &dst, 443, tlv, 2);
	assert_int_equal(n, 28 + 3 + 17 + 3 + 5);
	assert_int_equal(out[14] << 8 | out[15], 12 + 3 + 17 + 3 + 5);
	assert_memory_equal(out + 28, "\xe0\x00\x11web.mesh.internal\xe1\x00\x05" "alice", 28);
	struct px_pp2_parsed pp;
	size_t used = 0;
	assert_int_equal(px_proxyv2_parse(out, n, &pp, &used), PX_PARSE_OK);
	assert_int_equal(used, n);
	assert_int_equal(pp.command, 1);
	assert_int_equal(pp.family, 0x11);
	assert_memory_equal(pp.src.addr, src.addr, 4);
	assert_memory_equal(pp.dst.addr, dst.addr, 4);
	assert_int_equal(pp.sport, 1);
	assert_int_equal(pp.dport, 443);
	assert_int_equal(pp.n_tlv, 2);
	assert_int_equal(pp.tlv[0].type, 0xe0);
	assert_int_equal(pp.tlv[0].len, 17);
	assert_memory_equal(pp.tlv[0].value, name, 17);
	assert_int_equal(pp.tlv[1].type, 0xe1);
	assert_memory_equal(pp.tlv[1].value, user, 5);
	/* every strict prefix needs more; trailing bytes are the stream's */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(px_proxyv2_parse(out, k, &pp, &used), PX_PARSE_MORE);
	/* a buffer one byte short, or a value over PX_PP2_VALUE_MAX: nothing */
	assert_int_equal(px_proxyv2_header_tlv(out, n - 1, &src, 1, &dst, 443, tlv, 2), 0);
	uint8_t big[PX_PP2_VALUE_MAX + 1];
	memset(big, 'a', sizeof(big));
	struct px_pp2_tlv over = {.type = 0xe0, .len = sizeof(big), .value = big};
	assert_int_equal(px_proxyv2_header_tlv(out, sizeof(out), &src, 1, &dst, 443, &over, 1),
	                 0);
	over.len = PX_PP2_VALUE_MAX;
	struct px_pp2_tlv three[3] = {over, over, over};
	assert_int_equal(px_proxyv2_header_tlv(out, sizeof(out), &src, 1, &dst, 443, three, 3),
	                 PX_PROXYV2_MAX - 24); /* TCP4: 24 address bytes fewer */
}

static void test_parse_rejects_bad_headers(void **st)
{
	struct ns_addr src, dst;
	px_addr_parse(&src, "fd7a:115c:a1e0::9");
	px_addr_parse(&dst, "fd7a:115c:a1e0::2");
	struct px_pp2_tlv t = {.type = 0xe2, .len = 10, .value = (const uint8_t *)"tag:a,tag:b"};
	uint8_t out[PX_PROXYV2_MAX], b[PX_PROXYV2_MAX];
	size_t n = px_proxyv2_header_tlv(out, sizeof(out), &src, 7, &dst, 8, &t, 1);
	assert_int_equal(n, 52 + 13);
	struct px_pp2_parsed pp;
	size_t used;
	assert_int_equal(px_proxyv2_parse(out, n, &pp, &used), PX_PARSE_OK);
	assert_int_equal(pp.src.family, AF_INET6);
	assert_int_equal(pp.n_tlv, 1);
	memcpy(b, out, n);
	b[3] ^= 1; /* signature */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[12] = 0x11; /* version 1 */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[12] = 0x2f; /* command 15 */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[13] = 0x51; /* family 5 */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[14] = 0;
	b[15] = 35; /* shorter than TCP6's address block */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[52 + 2] = 11; /* the TLV runs one byte past the header */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[15] -= 1; /* the header ends inside the TLV */
	assert_int_equal(px_proxyv2_parse(b, n, &pp, &used), PX_PARSE_ERROR);
	memcpy(b, out, n);
	b[15] = (uint8_t)(b[15] - 12); /* two bytes left: no room for a TLV head */
	b[52] = 0xe2;
	b[15] = 36 + 2;
	assert_int_equal(px_proxyv2_parse(b, 52 + 2, &pp, &used), PX_PARSE_ERROR);
	/* LOCAL with no addresses is a header too */
	memcpy(b, out, 16);
	b[12] = 0x20;
	b[13] = 0x00;
	b[14] = b[15] = 0;
	assert_int_equal(px_proxyv2_parse(b, 16, &pp, &used), PX_PARSE_OK);
	assert_int_equal(used, 16);
	assert_int_equal(pp.command, 0);
}

/* The node's identity of a mesh source (px_env.identify) as TLVs 0xE0-0xE2;
 * an unknown source gets none, a known one only what is known. */
static bool fake_identify(void *ctx, const struct ns_addr *src, struct px_identity *id)
{
	(void)ctx;
	struct ns_addr web;
	px_addr_parse(&web, "100.64.0.9");
	if (src->family == AF_INET && !memcmp(src->addr, web.addr, 4)) {
		snprintf(id->name, sizeof(id->name), "web.mesh.internal");
		snprintf(id->user, sizeof(id->user), "alice");
		snprintf(id->tags, sizeof(id->tags), "tag:server,tag:db");
		return true;
	}
	px_addr_parse(&web, "100.64.0.10");
	if (src->family == AF_INET && !memcmp(src->addr, web.addr, 4)) {
		snprintf(id->name, sizeof(id->name), "ci.mesh.internal");
		return true; /* no user, no tags */
	}
	return false;
}

static size_t read_header(int srv, uint8_t *b, struct px_pp2_parsed *pp)
{
	assert_int_equal(recv(srv, b, 16, MSG_WAITALL), 16);
	size_t body = (size_t)b[14] << 8 | b[15], used = 0;
	assert_int_equal(recv(srv, b + 16, body, MSG_WAITALL), (ssize_t)body);
	assert_int_equal(px_proxyv2_parse(b, 16 + body, pp, &used), PX_PARSE_OK);
	assert_int_equal(used, 16 + body);
	return used;
}

static void test_server_tunnel_identity_tlvs(void **st)
{
	reset_fake();
	env.identify = fake_identify;
	px_addr_parse(&fake_local, "100.64.0.2");
	uint16_t port;
	int lfd = local_service(&port);
	struct px_tunnel *t = server_tunnel(port, 2, 0);
	uint8_t b[PX_PROXYV2_MAX];
	struct px_pp2_parsed pp;
	mesh_connect("100.64.0.9", 40000);
	int srv = accept_pumped(lfd);
	read_header(srv, b, &pp);
	assert_int_equal(pp.sport, 40000);
	assert_int_equal(pp.n_tlv, 3);
	assert_int_equal(pp.tlv[0].type, PX_PP2_TYPE_MESH_NAME);
	assert_int_equal(pp.tlv[0].len, strlen("web.mesh.internal"));
	assert_memory_equal(pp.tlv[0].value, "web.mesh.internal", pp.tlv[0].len);
	assert_int_equal(pp.tlv[1].type, PX_PP2_TYPE_MESH_USER);
	assert_memory_equal(pp.tlv[1].value, "alice", 5);
	assert_int_equal(pp.tlv[2].type, PX_PP2_TYPE_MESH_TAGS);
	assert_int_equal(pp.tlv[2].len, strlen("tag:server,tag:db"));
	assert_memory_equal(pp.tlv[2].value, "tag:server,tag:db", pp.tlv[2].len);
	close(srv);
	mesh_connect("100.64.0.10", 40001);
	srv = accept_pumped(lfd);
	read_header(srv, b, &pp);
	assert_int_equal(pp.n_tlv, 1); /* the name alone */
	assert_int_equal(pp.tlv[0].type, PX_PP2_TYPE_MESH_NAME);
	close(srv);
	mesh_connect("100.64.0.11", 40002); /* a source no map peer holds */
	srv = accept_pumped(lfd);
	assert_int_equal(read_header(srv, b, &pp), 28);
	assert_int_equal(pp.n_tlv, 0);
	close(srv);
	px_tunnel_free(t);
	close(lfd);
	env.identify = NULL;
	px_addr_parse(&fake_local, "100.64.0.2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_ipv4),
	    cmocka_unit_test(test_header_ipv6),
	    cmocka_unit_test(test_server_tunnel_sends_header),
	    cmocka_unit_test(test_server_tunnel_limit),
	    cmocka_unit_test(test_header_tlvs_round_trip),
	    cmocka_unit_test(test_parse_rejects_bad_headers),
	    cmocka_unit_test(test_server_tunnel_identity_tlvs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
