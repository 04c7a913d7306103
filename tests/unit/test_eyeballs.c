/* A name with several addresses, connected from the host (Direct): every
 * address is tried, RFC 8305 style (IPv6 first, families interleaved, the
 * next attempt 250 ms after the last unless it failed sooner; the first
 * to connect wins). Real listening sockets on 127.0.0.1, 127.0.0.2 and ::1;
 * a "blackhole" is a listener whose accept queue is full, so the kernel
 * drops further SYNs and the connect hangs. Names come from a hosts file
 * loaded into the test's evdns_base. The mesh side is the fake netstack of
 * px_test_fake.h (the mesh variant with the real netstack is
 * test_eyeballs_mesh.c). */
#include "px_test_fake.h"

#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* As root the tests run in a network namespace of their own with only
 * loopback: 198.18.0.0/15 has no route there (a connect fails at once,
 * "network unreachable"), and nothing can leave the machine. And in a
 * mount namespace of their own, where /etc/hosts (what getaddrinfo reads
 * for a server tunnel's Target) is ours. */
static bool private_net, private_hosts;

static void private_etc_hosts(void)
{
	char hosts[] = "/tmp/test_eyeballs_etc_hosts.XXXXXX";
	int fd = mkstemp(hosts);
	const char *h = "127.0.0.1 localhost\n::1 both.test\n127.0.0.1 both.test\n";
	assert_int_equal(write(fd, h, strlen(h)), (ssize_t)strlen(h));
	close(fd);
	chmod(hosts, 0644);
	private_hosts = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
	                mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) == 0;
	unlink(hosts); /* the mount keeps it */
}

static void private_netns(void)
{
	if (geteuid() != 0)
		return;
	if (unshare(CLONE_NEWNS) == 0)
		private_etc_hosts();
	if (unshare(CLONE_NEWNET) != 0)
		return;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		private_net = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
	}
	close(fd);
	if (!private_net)
		fail_msg("a network namespace without loopback");
}

/* ---- host listeners ---- */

static void sa_of(const char *ip, uint16_t port, struct sockaddr_storage *ss,
                  socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		*sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
		*sl = sizeof(*s4);
	}
}

/* A listening socket on ip:port (port 0: any; the port in *port). */
static int listener(const char *ip, uint16_t *port, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	sa_of(ip, *port, &ss, &sl);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	int one = 1;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0)
		fail_msg("bind %s:%u: %s", ip, *port, strerror(errno));
	assert_int_equal(listen(fd, backlog), 0);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* A listener on ip:port that never completes another handshake: its accept
 * queue is full, so the kernel drops new SYNs. Fillers go to fill[]. */
struct hole {
	int lfd;
	int fill[8];
	int n;
};

static void blackhole(struct hole *h, const char *ip, uint16_t port)
{
	h->lfd = listener(ip, &port, 0);
	h->n = 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	sa_of(ip, port, &ss, &sl);
	for (;;) {
		assert_true(h->n < 8);
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
		h->fill[h->n++] = fd;
		connect(fd, (struct sockaddr *)&ss, sl);
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, 100) == 0)
			return; /* this SYN was dropped: the queue is full */
	}
}

static void hole_close(struct hole *h)
{
	for (int i = 0; i < h->n; i++)
		close(h->fill[i]);
	close(h->lfd);
}

/* The connection the proxy made to lfd, waited for while the loop runs. */
static int accepted(int lfd, int ms)
{
	long end = now_ms() + ms;
	do {
		int fd = accept(lfd, NULL, NULL);
		if (fd >= 0)
			return fd;
		pump(1);
	} while (now_ms() < end);
	return -1;
}

/* ---- the proxy ---- */

static struct px_socks *socks_direct(void)
{
	struct cfg_socks5 c = {.bind = loopback_any_port(), .direct = CFG_DIRECT_ALL};
	char err[200];
	struct px_socks *s = px_socks_new(&env, &c, err, sizeof(err));
	if (!s)
		fail_msg("%s", err);
	return s;
}

/* SOCKS5 CONNECT name:port; returns the reply code, the time it took in
 * *ms, and the client socket in *fdp (closed if fdp is NULL). */
static int connect_name(struct px_socks *s, const char *name, uint16_t port, long *ms,
                        int *fdp)
{
	int fd = socks_client(s);
	uint8_t m[300] = {5, 1, 0};
	long t0 = now_ms();
	csend(fd, m, 3 + req_name(m + 3, name, port));
	uint8_t rep[12];
	crecv(fd, rep, 2);
	size_t got = 0;
	long end = now_ms() + 5000;
	while (got < 10 && now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		ssize_t r = recv(fd, rep + 2 + got, 10 - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			fail_msg("closed after %zu reply bytes", got);
		else
			usleep(500);
	}
	if (got != 10)
		fail_msg("no reply to CONNECT %s:%u", name, port);
	if (ms)
		*ms = now_ms() - t0;
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return rep[3];
}

/* The mesh here: 100.64.0.0/10 and fd7a:115c:a1e0::/48 only, so that the
 * loopback addresses (IPv6 too) are Direct's. */
static bool eb_route_ok(void *ctx, const struct ns_addr *a)
{
	static const uint8_t ula[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
	if (a->family == AF_INET6)
		return memcmp(a->addr, ula, 6) == 0;
	return a->addr[0] == 100 && (a->addr[1] & 0xc0) == 64;
}

/* The hosts file of these tests; evdns answers a name with its lines in
 * the file's order, so each name lists its addresses as the test needs. */
static int eb_setup(void **st)
{
	setup(st);
	char hosts[] = "/tmp/test_eyeballs_hosts.XXXXXX";
	int hfd = mkstemp(hosts);
	const char *h =
	    "127.0.0.2 hole-good.test\n127.0.0.1 hole-good.test\n"
	    "127.0.0.3 refused-good.test\n127.0.0.1 refused-good.test\n"
	    "127.0.0.3 refused-refused.test\n127.0.0.4 refused-refused.test\n"
	    "127.0.0.2 hole-refused.test\n127.0.0.3 hole-refused.test\n"
	    "127.0.0.1 v4-v6.test\n::1 v4-v6.test\n"
	    "127.0.0.2 hole4-good6.test\n::1 hole4-good6.test\n"
	    "::1 hole6-good4.test\n127.0.0.1 hole6-good4.test\n"
	    "169.254.169.254 denied-good.test\n127.0.0.1 denied-good.test\n"
	    "169.254.169.254 denied-denied.test\n169.254.1.1 denied-denied.test\n"
	    "198.18.0.1 unreach-good.test\n127.0.0.1 unreach-good.test\n"
	    "198.18.0.1 unreach-refused.test\n127.0.0.3 unreach-refused.test\n"
	    "198.18.0.1 unreach-unreach.test\n198.18.0.2 unreach-unreach.test\n";
	assert_int_equal(write(hfd, h, strlen(h)), (ssize_t)strlen(h));
	close(hfd);
	assert_int_equal(evdns_base_load_hosts(env.dns, hosts), 0);
	unlink(hosts);
	env.connect_timeout_ms = 3000;
	env.route_ok = eb_route_ok;
	return 0;
}

/* [blackholed, good]: the good one is tried 250 ms later and wins. */
static void test_eyeballs_blackhole_then_good(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int good = listener("127.0.0.1", &port, 8);
	struct hole h;
	blackhole(&h, "127.0.0.2", port);
	struct px_socks *s = socks_direct();
	long ms;
	int fd;
	assert_int_equal(connect_name(s, "hole-good.test", port, &ms, &fd),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms >= 200 && ms < 1000);
	int srv = accepted(good, 500);
	assert_true(srv >= 0);
	csend(fd, "hi", 2);
	char b[2];
	crecv(srv, b, 2);
	assert_memory_equal(b, "hi", 2);
	assert_int_equal(n_dials, 0); /* all from the host */
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.established, 1);
	assert_int_equal(stt.direct, 1);
	assert_int_equal(stt.pending, 0);
	close(fd);
	close(srv);
	px_socks_free(s);
	hole_close(&h);
	close(good);
}

/* [refused, good]: a refusal moves on at once, not after 250 ms. */
static void test_eyeballs_refused_then_good(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int good = listener("127.0.0.1", &port, 8);
	struct px_socks *s = socks_direct();
	long ms;
	int fd;
	assert_int_equal(connect_name(s, "refused-good.test", port, &ms, &fd),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms < 200);
	int srv = accepted(good, 500);
	assert_true(srv >= 0);
	close(fd);
	close(srv);
	px_socks_free(s);
	close(good);
}

/* Every address refuses: 0x05. A blackhole and a refusal: refused is the
 * more meaningful answer, given when the connect timeout ends the wait. */
static void test_eyeballs_all_fail(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int lfd = listener("127.0.0.1", &port, 8);
	close(lfd); /* port now free everywhere on loopback */
	struct px_socks *s = socks_direct();
	long ms;
	assert_int_equal(connect_name(s, "refused-refused.test", port, &ms, NULL),
	                 SOCKS5_REP_REFUSED);
	assert_true(ms < 200);
	struct hole h;
	blackhole(&h, "127.0.0.2", port);
	assert_int_equal(connect_name(s, "hole-refused.test", port, &ms, NULL),
	                 SOCKS5_REP_REFUSED);
	assert_true(ms >= 2500);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_refused, 2);
	assert_int_equal(stt.err_timeout, 0);
	assert_int_equal(stt.established, 0);
	assert_int_equal(stt.pending, 0);
	px_socks_free(s);
	hole_close(&h);
}

/* IPv6 first (RFC 8305, RFC 6724): with both families working the
 * connection is made over IPv6, although the resolver listed IPv4 first. */
static void test_eyeballs_ipv6_first(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int l4 = listener("127.0.0.1", &port, 8);
	int l6 = listener("::1", &port, 8);
	struct px_socks *s = socks_direct();
	long ms;
	assert_int_equal(connect_name(s, "v4-v6.test", port, &ms, NULL),
	                 SOCKS5_REP_SUCCEEDED);
	int a6 = accepted(l6, 300);
	assert_true(a6 >= 0);
	assert_int_equal(accept(l4, NULL, NULL), -1);
	close(a6);
	px_socks_free(s);
	close(l4);
	close(l6);
}

/* One family blackholed, the other good, both ways round. */
static void test_eyeballs_one_family_dead(void **st)
{
	reset_fake();
	/* IPv4 blackholed, IPv6 good */
	uint16_t port = 0;
	int l6 = listener("::1", &port, 8);
	struct hole h;
	blackhole(&h, "127.0.0.2", port);
	struct px_socks *s = socks_direct();
	long ms;
	assert_int_equal(connect_name(s, "hole4-good6.test", port, &ms, NULL),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms < 1000);
	int a = accepted(l6, 300);
	assert_true(a >= 0);
	close(a);
	hole_close(&h);
	close(l6);
	/* IPv6 blackholed, IPv4 good: IPv4 250 ms later */
	port = 0;
	int l4 = listener("127.0.0.1", &port, 8);
	blackhole(&h, "::1", port);
	assert_int_equal(connect_name(s, "hole6-good4.test", port, &ms, NULL),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms >= 200 && ms < 1000);
	a = accepted(l4, 300);
	assert_true(a >= 0);
	close(a);
	hole_close(&h);
	close(l4);
	px_socks_free(s);
}

/* Direct's policy is asked for every address: a refused one is skipped
 * (never connected), and when all are refused the answer is 0x02. */
static void test_eyeballs_policy_each_address(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int good = listener("127.0.0.1", &port, 8);
	struct px_socks *s = socks_direct();
	long ms;
	assert_int_equal(connect_name(s, "denied-good.test", port, &ms, NULL),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms < 200);
	int a = accepted(good, 300);
	assert_true(a >= 0);
	close(a);
	assert_int_equal(connect_name(s, "denied-denied.test", port, &ms, NULL),
	                 SOCKS5_REP_NOT_ALLOWED);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.err_denied, 1);
	assert_int_equal(stt.established, 1);
	px_socks_free(s);
	close(good);
}

/* The client goes away while attempts are in flight, and the front-end is
 * freed while others are: nothing leaks or is used after it is freed
 * (ASan), and the good listener sees no connection after the close. */
static void test_eyeballs_close_while_racing(void **st)
{
	reset_fake();
	uint16_t port = 0;
	int l4 = listener("127.0.0.1", &port, 8);
	struct hole h;
	blackhole(&h, "::1", port);
	struct px_socks *s = socks_direct();
	int fd = socks_client(s);
	uint8_t m[300] = {5, 1, 0};
	csend(fd, m, 3 + req_name(m + 3, "hole6-good4.test", port));
	pump(50); /* the IPv6 attempt is in flight, IPv4 not yet started */
	close(fd);
	pump(400);
	assert_int_equal(accept(l4, NULL, NULL), -1);
	fd = socks_client(s);
	csend(fd, m, 3 + req_name(m + 3, "hole6-good4.test", port));
	uint8_t r[2];
	crecv(fd, r, 2); /* the method reply */
	pump(50);
	px_socks_free(s);
	assert_int_equal(cclosed(fd), 0);
	pump(400);
	assert_int_equal(accept(l4, NULL, NULL), -1);
	close(fd);
	hole_close(&h);
	close(l4);
}

/* [no route, good]: the next address at once; [no route, refused]:
 * refused, the more meaningful; [no route, no route]: host unreachable.
 * Root only (a namespace where 198.18.0.0/15 has no route). */
static void test_eyeballs_unreachable(void **st)
{
	if (!private_net)
		skip();
	reset_fake();
	uint16_t port = 0;
	int good = listener("127.0.0.1", &port, 8);
	struct px_socks *s = socks_direct();
	long ms;
	assert_int_equal(connect_name(s, "unreach-good.test", port, &ms, NULL),
	                 SOCKS5_REP_SUCCEEDED);
	assert_true(ms < 200);
	int a = accepted(good, 300);
	assert_true(a >= 0);
	close(a);
	assert_int_equal(connect_name(s, "unreach-refused.test", port, &ms, NULL),
	                 SOCKS5_REP_REFUSED);
	assert_true(ms < 200);
	assert_int_equal(connect_name(s, "unreach-unreach.test", port, &ms, NULL),
	                 SOCKS5_REP_HOST_UNREACH);
	assert_true(ms < 200);
	px_socks_free(s);
	close(good);
}

/* UDP ASSOCIATE to a name whose first address the host has no route to:
 * the datagram goes to the next one. Root only, as above. */
static void test_eyeballs_udp_unreachable(void **st)
{
	if (!private_net)
		skip();
	reset_fake();
	struct px_socks *s = socks_direct();
	int ctl = socks_client(s);
	const uint8_t req[] = {5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
	csend(ctl, req, sizeof(req));
	uint8_t rep[12];
	crecv(ctl, rep, sizeof(rep));
	assert_int_equal(rep[3], SOCKS5_REP_SUCCEEDED);
	uint16_t relay = (uint16_t)(rep[10] << 8 | rep[11]);
	int echo = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(echo, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t sl = sizeof(sin);
	getsockname(echo, (struct sockaddr *)&sin, &sl);
	uint16_t echo_port = ntohs(sin.sin_port);
	int c = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	const char *name = "unreach-good.test";
	uint8_t d[64] = {0, 0, 0, 3, (uint8_t)strlen(name)};
	size_t n = 5;
	memcpy(d + n, name, strlen(name));
	n += strlen(name);
	d[n++] = (uint8_t)(echo_port >> 8);
	d[n++] = (uint8_t)echo_port;
	memcpy(d + n, "ping", 4);
	n += 4;
	sin.sin_port = htons(relay);
	assert_int_equal(sendto(c, d, n, 0, (struct sockaddr *)&sin, sizeof(sin)),
	                 (ssize_t)n);
	char b[16];
	ssize_t got = -1;
	for (long end = now_ms() + 1000; got < 0 && now_ms() < end;) {
		pump(1);
		got = recv(echo, b, sizeof(b), 0);
	}
	assert_int_equal(got, 4);
	assert_memory_equal(b, "ping", 4);
	struct px_stats stt;
	px_socks_get_stats(s, &stt);
	assert_int_equal(stt.dgram_drops, 0);
	close(c);
	close(echo);
	close(ctl);
	px_socks_free(s);
}

/* A [TCPServerTunnel] Target whose name has two addresses, the first
 * with nothing listening (as "localhost" is ::1 first on many hosts while
 * the service listens on 127.0.0.1): the mesh connection reaches the
 * second. Root only (a private /etc/hosts). */
static void test_eyeballs_server_tunnel_target(void **st)
{
	if (!private_hosts)
		skip();
	reset_fake();
	uint16_t port = 0;
	int lfd = listener("127.0.0.1", &port, 8);
	struct cfg_tcp_server_tunnel c = {
	    .listen_port = 8080, .target_host = (char *)"both.test", .target_port = port};
	char err[200];
	struct px_tunnel *t = px_tcp_server_tunnel_new(&env, &c, err, sizeof(err));
	if (!t)
		fail_msg("%s", err);
	assert_non_null(listen_cb);
	struct ns_addr src;
	px_addr_parse(&src, "100.64.0.9");
	listen_cb(listen_ctx, calloc(1, sizeof(struct ns_tcp)), &src, 40000, 8080);
	int a = accepted(lfd, 1000);
	assert_true(a >= 0);
	pump(10);
	assert_int_equal(n_splices, 1);
	assert_int_equal(n_aborts, 0);
	close(a);
	px_tunnel_free(t);
	close(lfd);
}

int main(void)
{
	private_netns();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_eyeballs_blackhole_then_good),
	    cmocka_unit_test(test_eyeballs_refused_then_good),
	    cmocka_unit_test(test_eyeballs_all_fail),
	    cmocka_unit_test(test_eyeballs_ipv6_first),
	    cmocka_unit_test(test_eyeballs_one_family_dead),
	    cmocka_unit_test(test_eyeballs_policy_each_address),
	    cmocka_unit_test(test_eyeballs_close_while_racing),
	    cmocka_unit_test(test_eyeballs_unreachable),
	    cmocka_unit_test(test_eyeballs_udp_unreachable),
	    cmocka_unit_test(test_eyeballs_server_tunnel_target),
	};
	return cmocka_run_group_tests(tests, eb_setup, teardown);
}
