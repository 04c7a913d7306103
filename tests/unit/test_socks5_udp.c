/* SOCKS5 UDP ASSOCIATE (proxy/socks5_udp.c) over real sockets, the real
 * netstack (mesh side played by hand-made datagrams, px_udp_test.h) and a
 * real evdns_base (a hosts file answers at once, a small DNS server on
 * loopback later). Proves: the reply names a relay socket next to the
 * control connection; datagrams reach mesh destinations (IPv4, IPv6,
 * mesh names) through the netstack and others directly from the host
 * (Direct = yes only), and answers come back wrapped with their source;
 * FRAG, bad headers, strangers and unroutable destinations are dropped and
 * counted; names resolve through evdns with datagrams waiting for them,
 * or through px_env.lookup ([Interface] DNS) when it is set;
 * the association ends with its control connection, when idle, and with
 * the front-end; MaxConnections bounds associations. Also CONNECT's reply
 * codes against real destinations, and BIND still gets 0x07. */
#include "px_udp_test.h"

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <fcntl.h>
#include <strings.h>

static struct px_env env;
static struct evdns_base *dns;
static struct evdns_server_port *dns_port;
static int dns_fd = -1;

/* 100.64.0.0/24 and fd7a:115c:a1e0::/48 are the mesh. */
static bool route_ok(void *ctx, const struct ns_addr *a)
{
	if (a->family == AF_INET)
		return a->addr[0] == 100 && a->addr[1] == 64;
	return a->addr[0] == 0xfd && a->addr[1] == 0x7a;
}

static size_t mesh_names(void *ctx, const char *name, struct ns_addr *out, size_t max)
{
	if (strcasecmp(name, "peer") != 0 || max < 2)
		return 0;
	assert_true(ns_addr_parse(&out[0], "100.99.0.1")); /* not routed: skipped */
	assert_true(ns_addr_parse(&out[1], PEER4));
	return 2;
}

static void dns_server_cb(struct evdns_server_request *req, void *arg)
{
	int rcode = 3; /* NXDOMAIN */
	for (int i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		if (strncasecmp(q->name, "slow.", 5) == 0) {
			evdns_server_request_drop(req); /* never answered */
			return;
		}
		if (strcasecmp(q->name, "async.test") != 0)
			continue;
		rcode = 0;
		if (q->type == EVDNS_TYPE_A) {
			uint32_t a = htonl(INADDR_LOOPBACK);
			evdns_server_request_add_a_reply(req, q->name, 1, &a, 60);
		}
	}
	evdns_server_request_respond(req, rcode);
}

static int usetup(void **state)
{
	log_set_level(LOG_ERROR);
	setup(state);
	dns = evdns_base_new(base, 0);
	char hosts[] = "/tmp/test_socks5_udp_hosts.XXXXXX";
	int hfd = mkstemp(hosts);
	const char *h =
	    "127.0.0.1 sync.test\n"
	    "169.254.169.254 denied-first.test\n127.0.0.1 denied-first.test\n";
	assert_int_equal(write(hfd, h, strlen(h)), (ssize_t)strlen(h));
	close(hfd);
	assert_int_equal(evdns_base_load_hosts(dns, hosts), 0);
	unlink(hosts);
	uint16_t port;
	dns_fd = host_udp(&port);
	dns_port = evdns_add_server_port_with_base(base, dns_fd, 0, dns_server_cb, NULL);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(evdns_base_nameserver_sockaddr_add(dns, (struct sockaddr *)&sin,
	                                                    sizeof(sin), 0),
	                 0);
	evdns_base_set_option(dns, "timeout:", "1");
	env = (struct px_env){.base = base,
	                      .dns = dns,
	                      .route_ok = route_ok,
	                      .resolve_mesh = mesh_names,
	                      .handshake_timeout_ms = 2000,
	                      /* direct datagrams are tested against 127.0.0.1 */
	                      .direct_loopback_for_tests = true};
	return 0;
}

static int uteardown(void **state)
{
	evdns_base_free(dns, 1);
	evdns_close_server_port(dns_port);
	close(dns_fd);
	spin_ms(1);
	return teardown(state);
}

/* ---- the client side ---- */

static struct px_socks *socks_new(bool direct, const char *user, const char *pass)
{
	struct cfg_socks5 c = {.bind = loopback_listen(),
	                       .username = (char *)user,
	                       .password = (char *)pass,
	                       .direct = direct ? CFG_DIRECT_ALL : CFG_DIRECT_NO};
	char err[200];
	struct px_socks *s = px_socks_new(&env, &c, err, sizeof(err));
	if (!s)
		fail_msg("%s", err);
	return s;
}

static int cli_connect(const struct sockaddr_storage *ss, socklen_t sl)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)ss, sl), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* Reads exactly n bytes within 2 s while the loop runs. */
static void cli_read(int fd, void *p, size_t n)
{
	size_t got = 0;
	for (int waited = 0; got < n && waited < 2000; waited += 5) {
		ssize_t r = recv(fd, (uint8_t *)p + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			fail_msg("closed after %zu of %zu bytes", got, n);
		else
			spin_ms(5);
	}
	if (got != n)
		fail_msg("got %zu of %zu bytes", got, n);
}

/* True once the peer closed fd (within 2 s). */
static bool cli_closed(int fd)
{
	for (int waited = 0; waited < 2000; waited += 5) {
		uint8_t b[64];
		ssize_t r = recv(fd, b, sizeof(b), 0);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return true;
		spin_ms(5);
	}
	return false;
}

/* Greeting (no auth) and UDP ASSOCIATE from src:sport; the relay port. */
static uint16_t associate(struct px_socks *s, int *ctl, const uint8_t src[4],
                          uint16_t sport)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	*ctl = cli_connect(&ss, sl);
	uint8_t m[] = {5,
	               1,
	               0,
	               5,
	               3,
	               0,
	               1,
	               src[0],
	               src[1],
	               src[2],
	               src[3],
	               (uint8_t)(sport >> 8),
	               (uint8_t)sport};
	assert_int_equal(send(*ctl, m, sizeof(m), 0), (ssize_t)sizeof(m));
	uint8_t r[12];
	cli_read(*ctl, r, sizeof(r));
	assert_memory_equal(r, "\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01", 10);
	uint16_t port = (uint16_t)(r[10] << 8 | r[11]);
	assert_int_not_equal(port, 0);
	return port;
}

/* A datagram with a header for dst (an address as text) and port. */
static void udp_to(int fd, uint16_t relay, const char *dst, uint16_t port,
                   const char *payload)
{
	uint8_t b[600];
	struct ns_addr a;
	assert_true(ns_addr_parse(&a, dst));
	size_t h = px_socks5_udp_header(b, &a, port);
	memcpy(b + h, payload, strlen(payload));
	host_sendto(fd, relay, b, h + strlen(payload));
}

static void udp_to_name(int fd, uint16_t relay, const char *name, uint16_t port,
                        const char *payload)
{
	uint8_t b[600] = {0, 0, 0, SOCKS5_ATYP_DOMAIN, (uint8_t)strlen(name)};
	size_t n = 5 + strlen(name);
	memcpy(b + 5, name, strlen(name));
	b[n++] = (uint8_t)(port >> 8);
	b[n++] = (uint8_t)port;
	memcpy(b + n, payload, strlen(payload));
	host_sendto(fd, relay, b, n + strlen(payload));
}

/* The next datagram the client gets: checks its header names src:sport
 * and returns the payload (NUL-terminated). */
static const char *udp_from(int fd, const char *src, uint16_t sport)
{
	static uint8_t b[700];
	ssize_t n = host_recv(fd, b, sizeof(b) - 1, NULL, 1000);
	assert_true(n > 0);
	struct px_target t;
	uint8_t frag;
	size_t hl;
	assert_true(px_socks5_udp_parse(b, (size_t)n, &frag, &t, &hl));
	assert_int_equal(frag, 0);
	assert_false(t.is_name);
	assert_string_equal(t.host, src);
	assert_int_equal(t.port, sport);
	b[n] = 0;
	return (const char *)b + hl;
}

static void expect_mesh(int fam, const char *dst, uint16_t dport, const char *payload,
                        uint16_t *sport)
{
	struct mesh_dgram m;
	assert_true(mesh_udp_out(&m, 1000));
	struct ns_addr a;
	assert_true(ns_addr_parse(&a, dst));
	assert_int_equal(m.fam, fam);
	assert_memory_equal(m.dst, a.addr, fam == AF_INET ? 4 : 16);
	assert_int_equal(m.dport, dport);
	assert_int_equal(m.len, strlen(payload));
	assert_memory_equal(m.data, payload, m.len);
	*sport = m.sport;
}

static void test_udp_mesh_and_direct(void **state)
{
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t echo_port, mport, mport6, from;
	int echo = host_udp(&echo_port);

	/* an IPv4 mesh destination, and its answer */
	udp_to(c, relay, PEER4, 53, "query");
	expect_mesh(AF_INET, PEER4, 53, "query", &mport);
	mesh_udp_in(PEER4, 53, OUR4, mport, "answer", 6);
	assert_string_equal(udp_from(c, PEER4, 53), "answer");
	/* a mesh name: the first routed address; the same mesh port */
	udp_to_name(c, relay, "PEER", 7, "by-name");
	expect_mesh(AF_INET, PEER4, 7, "by-name", &from);
	assert_int_equal(from, mport);
	/* IPv6 through the mesh */
	udp_to(c, relay, PEER6, 5353, "six");
	expect_mesh(AF_INET6, PEER6, 5353, "six", &mport6);
	mesh_udp_in(PEER6, 5353, OUR6, mport6, "six-back", 8);
	assert_string_equal(udp_from(c, PEER6, 5353), "six-back");
	/* not routed by the mesh: direct from the host */
	udp_to(c, relay, "127.0.0.1", echo_port, "direct");
	char b[64];
	assert_int_equal(host_recv(echo, b, sizeof(b), &from, 1000), 6);
	assert_memory_equal(b, "direct", 6);
	host_sendto(echo, from, "direct-back", 11);
	assert_string_equal(udp_from(c, "127.0.0.1", echo_port), "direct-back");

	/* dropped: a fragment, an unknown ATYP, a stranger's port */
	uint8_t frag[] = {0, 0, 1, 1, 100, 64, 0, 2, 0, 53, 'f'};
	host_sendto(c, relay, frag, sizeof(frag));
	uint8_t atyp[] = {0, 0, 0, 9, 100, 64, 0, 2, 0, 53, 'a'};
	host_sendto(c, relay, atyp, sizeof(atyp));
	int other = host_udp(NULL);
	udp_to(other, relay, PEER4, 53, "stranger");
	spin_ms(50);
	struct mesh_dgram m;
	assert_false(mesh_udp_out(&m, 50));

	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.established, 1);
	assert_int_equal(st.active, 1);
	assert_int_equal(st.dgrams_up, 4);
	assert_int_equal(st.bytes_up, 5 + 7 + 3 + 6);
	assert_int_equal(st.dgrams_down, 3);
	assert_int_equal(st.bytes_down, 6 + 8 + 11);
	assert_int_equal(st.dgram_drops, 3);

	/* the control connection closes: so does the association */
	close(ctl);
	spin_ms(50);
	px_socks_get_stats(s, &st);
	assert_int_equal(st.active, 0);
	mesh_udp_in(PEER4, 53, OUR4, mport, "late", 4);
	assert_int_equal(host_recv(c, b, sizeof(b), NULL, 50), -1);
	px_socks_free(s);
	close(c);
	close(echo);
	close(other);
}

/* Greeting, RFC 1929 auth and request in one send: the answers to all
 * three come back in order; Direct = no drops what the mesh does not route. */
static void test_udp_auth_pipelined_direct_off(void **state)
{
	struct px_socks *s = socks_new(false, "alice", "secret");
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	int ctl = cli_connect(&ss, sl);
	const uint8_t m[] = {5,   1, 2,   1,   5,   'a', 'l', 'i', 'c',
	                     'e', 6, 's', 'e', 'c', 'r', 'e', 't', 5,
	                     3,   0, 1,   0,   0,   0,   0,   0,   0};
	assert_int_equal(send(ctl, m, sizeof(m), 0), (ssize_t)sizeof(m));
	uint8_t r[14];
	cli_read(ctl, r, sizeof(r));
	assert_memory_equal(r, "\x05\x02\x01\x00\x05\x00\x00\x01\x7f\x00\x00\x01", 12);
	uint16_t relay = (uint16_t)(r[12] << 8 | r[13]);
	int c = host_udp(NULL);
	uint16_t echo_port;
	int echo = host_udp(&echo_port);
	udp_to(c, relay, "127.0.0.1", echo_port, "nope");
	char b[16];
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 100), -1);
	uint16_t mport;
	udp_to(c, relay, PEER4, 9, "yes");
	expect_mesh(AF_INET, PEER4, 9, "yes", &mport);
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.dgram_drops, 1);
	assert_int_equal(st.dgrams_up, 1);
	/* freeing the front-end ends the association */
	px_socks_free(s);
	assert_true(cli_closed(ctl));
	close(ctl);
	close(c);
	close(echo);
}

/* Direct's policy on the UDP path: without the unit tests' loopback leave,
 * a datagram to 127.0.0.1 (a listening socket) or to the metadata address
 * is dropped and counted as denied; a mesh destination still goes. */
/* Review L12: a datagram to ::ffff:<a peer's IPv4> is for the peer's IPv4
 * address, so it goes through the mesh (before, the route check saw an
 * IPv6 address no peer routes and handed it to Direct). */
static void test_udp_v4_mapped_mesh(void **state)
{
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t mport;
	udp_to(c, relay, "::ffff:" PEER4, 53, "mapped");
	expect_mesh(AF_INET, PEER4, 53, "mapped", &mport);
	mesh_udp_in(PEER4, 53, OUR4, mport, "answer", 6);
	assert_string_equal(udp_from(c, PEER4, 53), "answer");
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.dgrams_up, 1);
	assert_int_equal(st.dgram_drops, 0);
	px_socks_free(s);
	close(ctl);
	close(c);
}

static void test_udp_policy_refuses(void **state)
{
	env.direct_loopback_for_tests = false;
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t echo_port, mport;
	int echo = host_udp(&echo_port);
	udp_to(c, relay, "127.0.0.1", echo_port, "loop");
	udp_to(c, relay, "169.254.169.254", 80, "meta");
	char b[16];
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 100), -1);
	udp_to(c, relay, PEER4, 9, "mesh");
	expect_mesh(AF_INET, PEER4, 9, "mesh", &mport);
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.err_denied, 2);
	assert_int_equal(st.dgram_drops, 2);
	assert_int_equal(st.dgrams_up, 1);
	px_socks_free(s);
	close(ctl);
	close(c);
	close(echo);
	env.direct_loopback_for_tests = true;
}

/* The mesh policy (px_env.reach_ok): a datagram to a peer's UDP port this
 * node may not reach is dropped here and counted as policy; an allowed
 * port goes out. */
static bool reach_dns_only(void *ctx, int proto, const struct ns_addr *a, uint16_t port)
{
	(void)ctx, (void)a;
	return proto == PX_REACH_UDP && port == 53;
}

static void test_udp_mesh_policy_drops(void **state)
{
	env.reach_ok = reach_dns_only;
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t mport;
	udp_to(c, relay, PEER4, 9, "closed");
	udp_to(c, relay, PEER4, 53, "open");
	expect_mesh(AF_INET, PEER4, 53, "open", &mport); /* the first never left */
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.err_policy, 1);
	assert_int_equal(st.dgram_drops, 1);
	assert_int_equal(st.dgrams_up, 1);
	px_socks_free(s);
	close(ctl);
	close(c);
	env.reach_ok = NULL;
}

/* Names through evdns: the hosts file, the DNS server (datagrams wait for
 * the answer), a name that does not exist; the cache answers repeats. */
static void test_udp_names(void **state)
{
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t echo_port;
	int echo = host_udp(&echo_port);
	char b[64];
	udp_to_name(c, relay, "sync.test", echo_port, "s1");
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 1000), 2);
	assert_memory_equal(b, "s1", 2);
	/* the first address is one Direct refuses: the next one is used */
	udp_to_name(c, relay, "denied-first.test", echo_port, "d1");
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 1000), 2);
	assert_memory_equal(b, "d1", 2);
	udp_to_name(c, relay, "async.test", echo_port, "a1");
	udp_to_name(c, relay, "async.test", echo_port, "a2");
	udp_to_name(c, relay, "nx.test", echo_port, "n1");
	const char *want[] = {"a1", "a2"};
	bool seen[2] = {false, false};
	for (int i = 0; i < 2; i++) {
		ssize_t n = host_recv(echo, b, sizeof(b), NULL, 2000);
		assert_int_equal(n, 2);
		for (int j = 0; j < 2; j++)
			if (memcmp(b, want[j], 2) == 0)
				seen[j] = true;
	}
	assert_true(seen[0] && seen[1]);
	spin_ms(100);
	udp_to_name(c, relay, "async.test", echo_port, "a3"); /* cached */
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 1000), 2);
	assert_memory_equal(b, "a3", 2);
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.dgrams_up, 5);
	assert_int_equal(st.dgram_drops, 1); /* nx.test */
	/* a lookup still running when the front-end goes */
	udp_to_name(c, relay, "slow.async.test", echo_port, "x");
	spin_ms(50);
	px_socks_free(s);
	close(ctl);
	close(c);
	close(echo);
}

/* px_env.lookup ([Interface] DNS): names go to it, not to evdns, and its
 * answer (later, from the loop) sends what waited. */
struct fake_lookup {
	void (*cb)(void *arg, int err, const struct ns_addr *a, size_t n);
	void *arg;
	bool found;
	struct event *ev;
};
static int lookup_calls, lookups_live;

static void fake_lookup_answer(evutil_socket_t fd, short what, void *p)
{
	struct fake_lookup *f = p;
	struct ns_addr a = {.family = AF_INET, .addr = {127, 0, 0, 1}};
	(void)fd, (void)what;
	event_free(f->ev);
	lookups_live--;
	f->cb(f->arg, f->found ? 0 : -ENOENT, f->found ? &a : NULL, f->found ? 1 : 0);
	free(f);
}

static int fake_lookup(void *ctx, const char *name,
                       void (*cb)(void *arg, int err, const struct ns_addr *a, size_t n),
                       void *arg, void **handle)
{
	(void)ctx;
	struct fake_lookup *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	*f = (struct fake_lookup){
	    .cb = cb, .arg = arg, .found = !strcmp(name, "tun.test")};
	lookup_calls++;
	lookups_live++;
	struct timeval tv = {0, 20000};
	f->ev = evtimer_new(base, fake_lookup_answer, f);
	assert_int_equal(evtimer_add(f->ev, &tv), 0);
	*handle = f;
	return 0;
}

static void fake_lookup_cancel(void *ctx, void *handle)
{
	struct fake_lookup *f = handle;
	(void)ctx;
	event_free(f->ev);
	lookups_live--;
	free(f);
}

static void test_udp_names_through_lookup(void **state)
{
	env.dns = NULL; /* evdns must not be needed */
	env.lookup = fake_lookup;
	env.lookup_cancel = fake_lookup_cancel;
	lookup_calls = lookups_live = 0;
	struct px_socks *s = socks_new(true, NULL, NULL);
	const uint8_t any[4] = {0};
	int ctl;
	uint16_t relay = associate(s, &ctl, any, 0);
	int c = host_udp(NULL);
	uint16_t echo_port;
	int echo = host_udp(&echo_port);
	char b[64];
	udp_to_name(c, relay, "tun.test", echo_port, "t1");
	udp_to_name(c, relay, "tun.test", echo_port, "t2");
	udp_to_name(c, relay, "nx.test", echo_port, "n1");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 1000), 2);
		assert_true(memcmp(b, "t1", 2) == 0 || memcmp(b, "t2", 2) == 0);
	}
	spin_ms(50);
	assert_int_equal(lookup_calls, 2); /* one per name, not per datagram */
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.dgrams_up, 2);
	assert_int_equal(st.dgram_drops, 1); /* nx.test */
	/* A lookup still running when the front-end goes is taken back. */
	udp_to_name(c, relay, "late.test", echo_port, "x");
	spin_ms(5);
	assert_int_equal(lookups_live, 1);
	px_socks_free(s);
	assert_int_equal(lookups_live, 0);
	spin_ms(60);
	env.lookup = NULL;
	env.lookup_cancel = NULL;
	env.dns = dns;
	close(ctl);
	close(c);
	close(echo);
}

/* The request named the client's source: only that port may send. */
static void test_udp_source_restricted(void **state)
{
	struct px_socks *s = socks_new(true, NULL, NULL);
	uint16_t cport, echo_port;
	int c = host_udp(&cport), other = host_udp(NULL), echo = host_udp(&echo_port);
	const uint8_t lo[4] = {127, 0, 0, 1};
	int ctl;
	uint16_t relay = associate(s, &ctl, lo, cport);
	char b[16];
	udp_to(other, relay, "127.0.0.1", echo_port, "bad");
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 100), -1);
	udp_to(c, relay, "127.0.0.1", echo_port, "good");
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 1000), 4);
	close(ctl);
	/* a source address that is not the control connection's: nobody */
	const uint8_t elsewhere[4] = {192, 0, 2, 1};
	relay = associate(s, &ctl, elsewhere, 0);
	udp_to(c, relay, "127.0.0.1", echo_port, "bad");
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 100), -1);
	struct px_stats st;
	px_socks_get_stats(s, &st);
	assert_int_equal(st.dgram_drops, 2);
	px_socks_free(s);
	close(ctl);
	close(c);
	close(other);
	close(echo);
}

/* px_udp_assoc_start() directly: idle timeout and the association limit. */
static void test_udp_idle_and_limit(void **state)
{
	struct px_front f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(px_front_init(&f, &env, "socks5", NULL, CFG_DIRECT_ALL), 0);
	f.lim.max_connections = 1;
	struct px_udp_assocs l = {.idle_ms = 300};
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct cfg_listen ll = loopback_listen();
	assert_int_equal(bind(lfd, (struct sockaddr *)&ll.addr, ll.addr_len), 0);
	assert_int_equal(listen(lfd, 4), 0);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	int c1 = cli_connect(&ss, sl), c2 = cli_connect(&ss, sl);
	int a1 = accept(lfd, NULL, NULL), a2 = accept(lfd, NULL, NULL);
	px_udp_assoc_start(&f, &l, a1, NULL, (const uint8_t *)"\x05\x00", 2);
	uint8_t r1[12], r[10];
	cli_read(c1, r1, 12);
	assert_memory_equal(r1, "\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01", 10);
	assert_int_equal(l.n, 1);
	px_udp_assoc_start(&f, &l, a2, NULL, NULL, 0);
	cli_read(c2, r, 10);
	assert_int_equal(r[1], SOCKS5_REP_GENERAL);
	assert_true(cli_closed(c2));
	assert_int_equal(f.stats.err_limit, 1);
	/* traffic keeps it alive; silence ends it */
	uint16_t relay = (uint16_t)(r1[10] << 8 | r1[11]), echo_port;
	int c = host_udp(NULL), echo = host_udp(&echo_port);
	for (int i = 0; i < 4; i++) {
		spin_ms(100);
		udp_to(c, relay, "127.0.0.1", echo_port, "tick");
	}
	char b[8];
	assert_int_equal(host_recv(echo, b, sizeof(b), NULL, 100), 4);
	assert_int_equal(l.n, 1); /* 400+ ms old, but not idle */
	assert_true(cli_closed(c1));
	assert_int_equal(l.n, 0);
	assert_int_equal(f.stats.err_idle, 1);
	px_udp_assoc_close_all(&l);
	px_front_fini(&f);
	close(c);
	close(echo);
	close(c1);
	close(c2);
	close(lfd);
}

/* One CONNECT request (after a no-auth greeting); the reply code. */
static uint8_t connect_rep(struct px_socks *s, const uint8_t *req, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	int fd = cli_connect(&ss, sl);
	uint8_t m[300] = {5, 1, 0};
	memcpy(m + 3, req, n);
	assert_int_equal(send(fd, m, 3 + n, 0), (ssize_t)(3 + n));
	uint8_t r[12];
	cli_read(fd, r, sizeof(r));
	assert_true(cli_closed(fd));
	close(fd);
	return r[3];
}

/* CONNECT's RFC 1928 reply codes against real destinations: a closed host
 * port (refused), Direct = no (no route), a name that does not exist (host
 * unreachable), a mesh peer that never answers (TTL expired). */
static void test_connect_reply_codes(void **state)
{
	env.connect_timeout_ms = 300;
	uint16_t port;
	int tmp = socket(AF_INET, SOCK_STREAM, 0);
	struct cfg_listen ll = loopback_listen();
	assert_int_equal(bind(tmp, (struct sockaddr *)&ll.addr, ll.addr_len), 0);
	socklen_t sl = sizeof(ll.addr);
	getsockname(tmp, (struct sockaddr *)&ll.addr, &sl);
	port = ntohs(((struct sockaddr_in *)&ll.addr)->sin_port);
	close(tmp); /* nothing listens there now */
	const uint8_t closed[] = {
	    5, 1, 0, 1, 127, 0, 0, 1, (uint8_t)(port >> 8), (uint8_t)port};
	const uint8_t mesh[] = {5, 1, 0, 1, 100, 64, 0, 2, 0, 80};
	const uint8_t nx[] = {5, 1, 0, 3, 7, 'n', 'x', '.', 't', 'e', 's', 't', 0, 80};
	const uint8_t atyp[] = {5, 1, 0, 9, 1, 2, 3, 4, 0, 80};
	const uint8_t cmd[] = {5, 9, 0, 1, 1, 2, 3, 4, 0, 80};
	struct px_socks *s = socks_new(true, NULL, NULL);
	assert_int_equal(connect_rep(s, closed, sizeof(closed)), SOCKS5_REP_REFUSED);
	assert_int_equal(connect_rep(s, nx, sizeof(nx)), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(connect_rep(s, mesh, sizeof(mesh)), SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(connect_rep(s, atyp, sizeof(atyp)), SOCKS5_REP_ATYP_UNSUPPORTED);
	assert_int_equal(connect_rep(s, cmd, sizeof(cmd)), SOCKS5_REP_CMD_UNSUPPORTED);
	px_socks_free(s);
	s = socks_new(false, NULL, NULL);
	assert_int_equal(connect_rep(s, closed, sizeof(closed)), SOCKS5_REP_NET_UNREACH);
	px_socks_free(s);
}

static void test_bind_still_unsupported(void **state)
{
	struct px_socks *s = socks_new(true, NULL, NULL);
	struct sockaddr_storage ss;
	socklen_t sl;
	px_socks_local_addr(s, &ss, &sl);
	int fd = cli_connect(&ss, sl);
	const uint8_t m[] = {5, 1, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 1};
	assert_int_equal(send(fd, m, sizeof(m), 0), (ssize_t)sizeof(m));
	uint8_t r[12];
	cli_read(fd, r, sizeof(r));
	assert_int_equal(r[3], SOCKS5_REP_CMD_UNSUPPORTED);
	assert_true(cli_closed(fd));
	close(fd);
	px_socks_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_udp_mesh_and_direct, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_v4_mapped_mesh, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_mesh_policy_drops, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_policy_refuses, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_auth_pipelined_direct_off, usetup,
	                                    uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_names, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_names_through_lookup, usetup,
	                                    uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_source_restricted, usetup,
	                                    uteardown),
	    cmocka_unit_test_setup_teardown(test_udp_idle_and_limit, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_connect_reply_codes, usetup, uteardown),
	    cmocka_unit_test_setup_teardown(test_bind_still_unsupported, usetup,
	                                    uteardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
