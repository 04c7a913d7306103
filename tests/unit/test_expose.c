/* Expose: the --expose spec (parse, lookup, describe) and the front-end
 * bridging mesh connections to 127.0.0.1, driven by the mesh peer of
 * ns_test_peer.h. */
#include "ns_test_peer.h"

#include "proxy/expose.h"

#include <poll.h>

/* ---- the spec ---- */

static void parse_ok(const char *s, const char *describe)
{
	struct expose_spec sp;
	char err[256] = "", d[512];

	if (!expose_parse(s, &sp, err, sizeof(err)))
		fail_msg("\"%s\": %s", s, err);
	expose_describe(&sp, d, sizeof(d));
	assert_string_equal(d, describe);
}

static void parse_bad(const char *s, const char *needle)
{
	struct expose_spec sp;
	char err[256] = "";

	assert_false(expose_parse(s, &sp, err, sizeof(err)));
	if (strstr(err, needle) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, needle);
}

static void test_expose_parse(void **state)
{
	struct expose_spec sp;
	char err[128], many[1024];
	size_t off = 0;

	(void)state;
	parse_ok("all", "all");
	parse_ok("none", "none");
	parse_ok("22", "22");
	parse_ok("8000-8100", "8000-8100");
	parse_ok("80=8080", "80=8080");
	parse_ok("22,80=8080,8000-8100", "22,80=8080,8000-8100");
	parse_ok("22, 443 ,1-10", "22,443,1-10");
	parse_ok("65535,1", "65535,1");
	parse_ok("5-5", "5");
	parse_ok("22:pp2", "22:pp2");
	parse_ok("22:PP2,80=8080:pp2,9000-9010:pp2,443",
	         "22:pp2,80=8080:pp2,9000-9010:pp2,443");
	parse_ok("all:pp2", "all:pp2");
	assert_true(expose_parse("all", &sp, err, sizeof(err)));
	assert_true(sp.all);
	assert_true(expose_parse("none", &sp, err, sizeof(err)));
	assert_false(sp.all);
	assert_int_equal(sp.n, 0);

	parse_bad("", "empty item");
	parse_bad(NULL, "empty item");
	parse_bad("22,", "empty item");
	parse_bad(",22", "empty item");
	parse_bad("22,,23", "empty item");
	parse_bad("0", "not a port");
	parse_bad("65536", "not a port");
	parse_bad("ssh", "not a port");
	parse_bad("-1", "LO-HI");
	parse_bad("+22", "not a port");
	parse_bad("22 23", "not a port");
	parse_bad("100-10", "backwards");
	parse_bad("10-", "LO-HI");
	parse_bad("0-10", "LO-HI");
	parse_bad("80=", "MESHPORT=LOCALPORT");
	parse_bad("=80", "MESHPORT=LOCALPORT");
	parse_bad("80=0", "MESHPORT=LOCALPORT");
	parse_bad("80=8080=1", "MESHPORT=LOCALPORT");
	parse_bad("80-90=8080", "same ports");
	parse_bad("all,22", "must stand alone");
	parse_bad("22,none", "must stand alone");
	parse_bad("ALL", "not a port");
	parse_bad("22,22", "port 22 is already exposed");
	parse_bad("22:pp1", "the only option after ':' is pp2");
	parse_bad("22:", "the only option after ':' is pp2");
	parse_bad(":pp2", "not a port");
	parse_bad("all:pp2,22", "must stand alone");
	parse_bad("22:pp2:pp2", "the only option");
	parse_bad("8000-8100,8050", "port 8050 is already exposed");
	parse_bad("10-20,15-30", "port 15 is already exposed");
	parse_bad("80=8080,80", "port 80 is already exposed");
	parse_bad("80=8080,80=9090", "port 80 is already exposed");
	/* 64 items fit, 65 do not. */
	for (int i = 1; i <= 65; i++)
		off += (size_t)snprintf(many + off, sizeof(many) - off, "%s%d",
		                        i > 1 ? "," : "", i);
	parse_bad(many, "more than 64");
	*strrchr(many, ',') = '\0';
	assert_true(expose_parse(many, &sp, err, sizeof(err)));
	assert_int_equal(sp.n, 64);
}

static void test_expose_lookup_describe(void **state)
{
	struct expose_spec sp;
	char err[128], d[8];

	(void)state;
	assert_true(expose_parse("22,80=8080,8000-8100", &sp, err, sizeof(err)));
	assert_int_equal(expose_lookup(&sp, 22, NULL), 22);
	assert_int_equal(expose_lookup(&sp, 80, NULL), 8080);
	assert_int_equal(expose_lookup(&sp, 8000, NULL), 8000);
	assert_int_equal(expose_lookup(&sp, 8100, NULL), 8100);
	assert_int_equal(expose_lookup(&sp, 8101, NULL), 0);
	assert_int_equal(expose_lookup(&sp, 9000, NULL), 0);
	assert_int_equal(expose_lookup(&sp, 81, NULL), 0);
	assert_int_equal(expose_lookup(&sp, 0, NULL), 0);
	assert_int_equal(expose_lookup(NULL, 22, NULL), 0);
	assert_true(expose_parse("all", &sp, err, sizeof(err)));
	assert_int_equal(expose_lookup(&sp, 1, NULL), 1);
	assert_int_equal(expose_lookup(&sp, 65535, NULL), 65535);
	assert_int_equal(expose_lookup(&sp, 0, NULL), 0);
	assert_true(expose_parse("none", &sp, err, sizeof(err)));
	assert_int_equal(expose_lookup(&sp, 22, NULL), 0);
	bool pp2 = true;
	assert_true(expose_parse("22:pp2,80", &sp, err, sizeof(err)));
	assert_int_equal(expose_lookup(&sp, 22, &pp2), 22);
	assert_true(pp2);
	assert_int_equal(expose_lookup(&sp, 80, &pp2), 80);
	assert_false(pp2);
	/* A short buffer is truncated, never overrun. */
	assert_true(expose_parse("22,80=8080,8000-8100", &sp, err, sizeof(err)));
	expose_describe(&sp, d, sizeof(d));
	assert_string_equal(d, "22,80=8");
}

/* ---- mesh connections to exposed ports ---- */

static int local_listener(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return l;
}

/* The handshake with lwIP (the any-port handler accepts at its end). */
static void mesh_connect(struct peer *pr, int fam, uint16_t port)
{
	struct pkt *k;
	struct seg s;

	peer_init(pr, fam, port);
	peer_send(pr, F_SYN, NULL, 0);
	k = cap_pop();
	assert_non_null(k);
	assert_true(parse(k, &s));
	assert_int_equal(s.flags, F_SYN | F_ACK);
	peer_take(pr, &s);
	free(k);
	peer_send(pr, F_ACK, NULL, 0);
}

static void test_expose_mesh_to_local(void **state)
{
	struct px_env env = {0};
	struct expose_spec sp;
	struct px_expose *x;
	struct px_stats st;
	struct peer pr;
	char spec[64], err[256];
	uint16_t lport, dead_port;
	uint8_t buf[32];
	int l, fd, dead;

	(void)state;
	env.base = base;
	l = local_listener(&lport);
	dead = local_listener(&dead_port);
	close(dead); /* nothing listens there now */
	snprintf(spec, sizeof(spec), "%u,7001=%u,7000", lport, dead_port);
	assert_true(expose_parse(spec, &sp, err, sizeof(err)));
	x = px_expose_new(&env, &sp, NULL, NULL, err, sizeof(err));
	assert_non_null(x);

	/* Exposed, same port, IPv6 destination: reaches 127.0.0.1:lport. */
	mesh_connect(&pr, AF_INET6, lport);
	for (int i = 0; i < 100; i++)
		spin_ms(1);
	fd = accept(l, NULL, NULL);
	assert_true(fd >= 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	peer_poll(&pr, true);
	peer_send(&pr, F_ACK | F_PSH, "hello", 5);
	assert_int_equal(read_all(fd, buf, sizeof(buf), 500), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(write(fd, "world!", 6), 6);
	for (int i = 0; i < 500 && pr.rx_len < 6; i++) {
		spin_ms(1);
		peer_poll(&pr, true);
	}
	assert_int_equal(pr.rx_len, 6);
	assert_memory_equal(pr.rx, "world!", 6);
	px_expose_get_stats(x, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.established, 1);
	assert_int_equal(st.active, 1);
	assert_true(st.bytes_up >= 5);
	close(fd);
	for (int i = 0; i < 50; i++) {
		spin_ms(1);
		peer_poll(&pr, true);
	}
	assert_true(pr.got_fin || pr.got_rst);
	peer_free(&pr);
	cap_clear();

	/* Not exposed: RST to the SYN. */
	peer_init(&pr, AF_INET, 7002);
	peer_send(&pr, F_SYN, NULL, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	assert_false(pr.synack);

	/* Exposed, nothing listening locally: accepted, then reset. */
	mesh_connect(&pr, AF_INET, 7001);
	for (int i = 0; i < 200 && !pr.got_rst; i++) {
		spin_ms(1);
		peer_poll(&pr, false);
	}
	assert_true(pr.got_rst);
	px_expose_get_stats(x, &st);
	assert_int_equal(st.accepted, 2);
	assert_int_equal(st.err_refused, 1);
	assert_int_equal(st.established, 1);
	assert_int_equal(st.pending, 0);

	/* Freed: the handler goes, exposed ports get RST again. */
	px_expose_free(x);
	peer_init(&pr, AF_INET, lport);
	peer_send(&pr, F_SYN, NULL, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	close(l);
}

static int conns_seen;
static uint16_t conn_port;
static void on_conn(void *ctx, const struct ns_addr *src, uint16_t port, uint16_t local)
{
	(void)ctx, (void)src;
	conns_seen++;
	conn_port = local;
	assert_int_equal(port, local);
}

/* The node's own listeners are never exposed, even with "all"; a port
 * with :pp2 hands the local service a PROXY v2 header (the caller's
 * address) before the bytes; each connection is reported to the node. */
static void test_expose_never_own_ports_and_pp2(void **state)
{
	struct px_env env = {0};
	struct expose_spec sp;
	struct px_stats st;
	struct peer pr;
	char err[256];
	uint16_t own_port, svc_port;
	uint8_t buf[128];

	(void)state;
	env.base = base;
	int own = local_listener(&own_port); /* "our SOCKS5" */
	int svc = local_listener(&svc_port); /* a service */
	assert_true(expose_parse("all:pp2", &sp, err, sizeof(err)));
	struct px_expose_opts opts = {.n_never = 1, .on_conn = on_conn};
	opts.never[0] = own_port;
	conns_seen = 0;
	struct px_expose *x = px_expose_new(&env, &sp, NULL, &opts, err, sizeof(err));
	assert_non_null(x);

	/* Our own listener: RST, counted as denied, not reported. */
	peer_init(&pr, AF_INET, own_port);
	peer_send(&pr, F_SYN, NULL, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	assert_false(pr.synack);
	px_expose_get_stats(x, &st);
	assert_int_equal(st.err_denied, 1);
	assert_int_equal(st.accepted, 0);
	assert_int_equal(conns_seen, 0);
	struct pollfd p = {.fd = own, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0); /* nothing reached it */
	peer_free(&pr);
	cap_clear();

	/* A rule that maps another mesh port onto our listener: refused too. */
	px_expose_free(x);
	char spec[64];
	snprintf(spec, sizeof(spec), "7777=%u,%u:pp2", own_port, svc_port);
	assert_true(expose_parse(spec, &sp, err, sizeof(err)));
	x = px_expose_new(&env, &sp, NULL, &opts, err, sizeof(err));
	assert_non_null(x);
	peer_init(&pr, AF_INET, 7777);
	peer_send(&pr, F_SYN, NULL, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	assert_false(pr.synack);
	px_expose_get_stats(x, &st);
	assert_int_equal(st.err_denied, 1);
	assert_int_equal(poll(&p, 1, 0), 0);
	peer_free(&pr);
	cap_clear();

	/* The service: a PROXY v2 header, then the bytes. */
	mesh_connect(&pr, AF_INET, svc_port);
	for (int i = 0; i < 100; i++)
		spin_ms(1);
	int fd = accept(svc, NULL, NULL);
	assert_true(fd >= 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	peer_poll(&pr, true);
	peer_send(&pr, F_ACK | F_PSH, "hello", 5);
	assert_int_equal(read_all(fd, buf, 28 + 5, 500), 28 + 5);
	assert_memory_equal(buf, "\r\n\r\n\0\r\nQUIT\n", 12);
	assert_int_equal(buf[12], 0x21);                      /* v2, PROXY */
	assert_int_equal(buf[13], 0x11);                      /* TCP over IPv4 */
	assert_int_equal((buf[26] << 8) | buf[27], svc_port); /* destination port */
	assert_memory_equal(buf + 28, "hello", 5);
	assert_int_equal(conns_seen, 1);
	assert_int_equal(conn_port, svc_port);
	close(fd);
	peer_free(&pr);
	cap_clear();
	px_expose_free(x);
	close(own);
	close(svc);
}

/* A spec exposing nothing installs no handler (a specific ns_tcp_listen_any
 * caller is not disturbed either way) and frees cleanly. */
static void test_expose_none(void **state)
{
	struct px_env env = {0};
	struct expose_spec sp;
	struct px_expose *x;
	struct px_stats st;
	struct peer pr;
	char err[128];

	(void)state;
	env.base = base;
	assert_true(expose_parse("none", &sp, err, sizeof(err)));
	x = px_expose_new(&env, &sp, NULL, NULL, err, sizeof(err));
	assert_non_null(x);
	peer_init(&pr, AF_INET, 22);
	peer_send(&pr, F_SYN, NULL, 0);
	peer_poll(&pr, false);
	assert_true(pr.got_rst);
	px_expose_get_stats(x, &st);
	assert_int_equal(st.accepted, 0);
	px_expose_free(x);
	px_expose_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expose_parse),
	    cmocka_unit_test(test_expose_lookup_describe),
	    cmocka_unit_test_setup_teardown(test_expose_never_own_ports_and_pp2, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_expose_mesh_to_local, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expose_none, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
