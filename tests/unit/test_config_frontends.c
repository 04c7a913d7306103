/* Config of the front-ends added for issue 3: limits (MaxConnections,
 * HandshakeTimeout, IdleTimeout, BufferSize) in every TCP front-end,
 * Direct, ProxyProtocol, the UDP tunnel sections and peer names: values,
 * defaults and the wording of errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRIV  "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define PUB2  "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define PUB3  "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define IFACE "[Interface]\nPrivateKey = " PRIV "\nAddress = 100.64.0.2/32\n"

static char err[512];

static int load(const char *text, struct config *c)
{
	struct cfg_opts o = {.quiet = true};
	err[0] = 0;
	return config_load_buffer("t.ini", text, strlen(text), c, &o, err, sizeof(err));
}

static void expect_err(const char *text, const char *want)
{
	struct config c;
	int r = load(text, &c);
	if (r == 0 || strncmp(err, want, strlen(want)) != 0)
		fail_msg("want error \"%s\", got r=%d \"%s\"", want, r, err);
	assert_null(c.path);
}

static void ok(const char *text, struct config *c)
{
	if (load(text, c) != 0)
		fail_msg("unexpected error: %s", err);
}

static void check_default_limits(const struct cfg_limits *l)
{
	assert_int_equal(l->max_connections, CFG_DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(l->handshake_timeout_ms, CFG_DEFAULT_HANDSHAKE_MS);
	assert_int_equal(l->idle_timeout_ms, CFG_DEFAULT_IDLE_MS);
	assert_int_equal(l->buffer_bytes, CFG_DEFAULT_BUFFER_BYTES);
}

static void test_limit_defaults(void **st)
{
	struct config c;
	ok(IFACE
	   "[Socks5]\nBindAddress = 127.0.0.1:1080\n"
	   "[http]\nBindAddress = 127.0.0.1:8118\n"
	   "[TCPClientTunnel]\nBindAddress = 127.0.0.1:2222\nTarget = 100.64.0.1:22\n"
	   "[TCPServerTunnel]\nListenPort = 80\nTarget = 127.0.0.1:8080\n",
	   &c);
	check_default_limits(&c.socks5[0].limits);
	check_default_limits(&c.http[0].limits);
	check_default_limits(&c.tcp_client_tunnels[0].limits);
	check_default_limits(&c.tcp_server_tunnels[0].limits);
	/* Unset: the node applies its mode's default. */
	assert_int_equal(c.socks5[0].direct, CFG_DIRECT_UNSET);
	assert_int_equal(c.http[0].direct, CFG_DIRECT_UNSET);
	assert_int_equal(c.tcp_server_tunnels[0].proxy_protocol, 0);
	config_free(&c);
}

/* The same four keys in each TCP front-end section, any case. */
static void test_limit_values(void **st)
{
	static const char *const heads[] = {
	    "[Socks5]\nBindAddress = 127.0.0.1:1080\n",
	    "[http]\nBindAddress = 127.0.0.1:8118\n",
	    "[TCPClientTunnel]\nBindAddress = 127.0.0.1:2222\nTarget = 100.64.0.1:22\n",
	    "[TCPServerTunnel]\nListenPort = 80\nTarget = 127.0.0.1:8080\n",
	};
	static const struct {
		const char *buf;
		uint32_t bytes;
	} sizes[] = {{"65536", 65536}, {"64K", 65536},   {"64k", 65536},
	             {"1M", 1048576},  {"16384", 16384}, {"1048576", 1048576},
	             {"16K", 16384},   {"512K", 524288}};
	for (size_t i = 0; i < 4; i++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			char text[1024];
			snprintf(text, sizeof(text),
			         IFACE "%smaxconnections = 100\nHandshakeTimeout = 5\n"
			               "IdleTimeout = 300\nBufferSize = %s\n",
			         heads[i], sizes[k].buf);
			struct config c;
			ok(text, &c);
			const struct cfg_limits *l =
			    i == 0   ? &c.socks5[0].limits
			    : i == 1 ? &c.http[0].limits
			    : i == 2 ? &c.tcp_client_tunnels[0].limits
			             : &c.tcp_server_tunnels[0].limits;
			assert_int_equal(l->max_connections, 100);
			assert_int_equal(l->handshake_timeout_ms, 5000);
			assert_int_equal(l->idle_timeout_ms, 300000);
			assert_int_equal(l->buffer_bytes, sizes[k].bytes);
			config_free(&c);
		}
	}
	struct config c;
	ok(IFACE "[Socks5]\nBindAddress = 127.0.0.1:1080\nIdleTimeout = 0\n"
	         "MaxConnections = 1\nHandshakeTimeout = 3600\n",
	   &c);
	assert_int_equal(c.socks5[0].limits.idle_timeout_ms, 0);
	assert_int_equal(c.socks5[0].limits.max_connections, 1);
	assert_int_equal(c.socks5[0].limits.handshake_timeout_ms, 3600000);
	config_free(&c);
}

static void test_limit_errors(void **st)
{
#define S5 IFACE "[Socks5]\nBindAddress = 127.0.0.1:1080\n"
	expect_err(S5 "MaxConnections = 0\n",
	           "t.ini:6: [Socks5] MaxConnections: \"0\" is not a number of "
	           "connections (1-1000000)");
	expect_err(S5 "MaxConnections = 1000001\n",
	           "t.ini:6: [Socks5] MaxConnections: \"1000001\" is not a number");
	expect_err(S5 "MaxConnections = many\n",
	           "t.ini:6: [Socks5] MaxConnections: \"many\" is not a number");
	expect_err(S5 "HandshakeTimeout = 0\n",
	           "t.ini:6: [Socks5] HandshakeTimeout: \"0\" is not a number of "
	           "seconds (1-3600)");
	expect_err(S5 "HandshakeTimeout = 3601\n",
	           "t.ini:6: [Socks5] HandshakeTimeout: \"3601\" is not a number");
	expect_err(S5 "IdleTimeout = -1\n",
	           "t.ini:6: [Socks5] IdleTimeout: \"-1\" is not a number of seconds "
	           "(0-604800; 0 = never)");
	expect_err(S5 "IdleTimeout = 604801\n",
	           "t.ini:6: [Socks5] IdleTimeout: \"604801\" is not");
	expect_err(S5 "BufferSize = 16383\n",
	           "t.ini:6: [Socks5] BufferSize: \"16383\" is not a buffer size "
	           "(16384-1048576 bytes, or with K or M: 16K-1M)");
	expect_err(S5 "BufferSize = 2M\n", "t.ini:6: [Socks5] BufferSize: \"2M\" is not");
	expect_err(S5 "BufferSize = 1025K\n",
	           "t.ini:6: [Socks5] BufferSize: \"1025K\" is not");
	expect_err(S5 "BufferSize = 15K\n",
	           "t.ini:6: [Socks5] BufferSize: \"15K\" is not");
	expect_err(S5 "BufferSize = K\n", "t.ini:6: [Socks5] BufferSize: \"K\" is not");
	expect_err(S5 "BufferSize = 64KB\n",
	           "t.ini:6: [Socks5] BufferSize: \"64KB\" is not");
	expect_err(S5 "MaxConnections = 5\nMaxConnections = 6\n",
	           "t.ini:7: [Socks5] MaxConnections given twice (first at line 6)");
	expect_err(IFACE "[TCPServerTunnel]\nListenPort = 80\nTarget = 127.0.0.1:1\n"
	                 "BufferSize = 1\n",
	           "t.ini:7: [TCPServerTunnel] BufferSize: \"1\" is not a buffer size");
	expect_err(IFACE "[http]\nBindAddress = 127.0.0.1:1\nHandshakeTimeout = x\n",
	           "t.ini:6: [http] HandshakeTimeout: \"x\" is not a number");
#undef S5
}

static void test_direct(void **st)
{
	static const struct {
		const char *v;
		enum cfg_direct d;
	} vals[] = {{"yes", CFG_DIRECT_ALL},       {"no", CFG_DIRECT_NO},
	            {"true", CFG_DIRECT_ALL},      {"false", CFG_DIRECT_NO},
	            {"on", CFG_DIRECT_ALL},        {"off", CFG_DIRECT_NO},
	            {"YES", CFG_DIRECT_ALL},       {"Off", CFG_DIRECT_NO},
	            {"public", CFG_DIRECT_PUBLIC}, {"All", CFG_DIRECT_ALL}};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text),
		         IFACE "[Socks5]\nBindAddress = 127.0.0.1:1\nDirect = %s\n"
		               "[http]\nBindAddress = 127.0.0.1:2\nDirect = %s\n",
		         vals[i].v, vals[i].v);
		struct config c;
		ok(text, &c);
		assert_int_equal(c.socks5[0].direct, vals[i].d);
		assert_int_equal(c.http[0].direct, vals[i].d);
		config_free(&c);
	}
	expect_err(IFACE "[Socks5]\nBindAddress = 127.0.0.1:1\nDirect = maybe\n",
	           "t.ini:6: [Socks5] Direct: \"maybe\" is not public, all or no");
	expect_err(IFACE "[http]\nBindAddress = 127.0.0.1:1\nDirect = 1\n",
	           "t.ini:6: [http] Direct: \"1\" is not public, all or no");
	/* Direct belongs to the proxies only. */
	/* A proxy other hosts can reach needs a login or an explicit AllowOpen. */
	expect_err(IFACE "[Socks5]\nBindAddress = 0.0.0.0:1080\n",
	           "t.ini:5: [Socks5] BindAddress can be reached from other hosts and no "
	           "Username/Password is set");
	expect_err(IFACE "[http]\nBindAddress = [::]:3128\n",
	           "t.ini:5: [http] BindAddress can be reached from other hosts");
	expect_err(IFACE "[http]\nBindAddress = 198.18.0.1:3128\nAllowOpen = no\n",
	           "t.ini:6: [http] BindAddress can be reached from other hosts");
	struct config c;
	ok(IFACE
	   "[Socks5]\nBindAddress = 0.0.0.0:1080\nAllowOpen = yes\n"
	   "[http]\nBindAddress = [::]:3128\nUsername = u\nPassword = p\n"
	   "[Socks5]\nBindAddress = [::1]:1081\n[Socks5]\nBindAddress = 127.1.2.3:1082\n",
	   &c);
	assert_true(c.socks5[0].allow_open);
	config_free(&c);
	expect_err(IFACE "[TCPClientTunnel]\nBindAddress = 127.0.0.1:1\nTarget = "
	                 "100.64.0.1:1\nDirect = yes\n",
	           "t.ini:7: [TCPClientTunnel] unknown key Direct");
}

static void test_proxy_protocol(void **st)
{
	struct config c;
	ok(IFACE "[TCPServerTunnel]\nListenPort = 80\nTarget = 127.0.0.1:8080\n"
	         "ProxyProtocol = v2\n"
	         "[TCPServerTunnel]\nListenPort = 81\nTarget = 127.0.0.1:8081\n"
	         "proxyprotocol = OFF\n",
	   &c);
	assert_int_equal(c.tcp_server_tunnels[0].proxy_protocol, 2);
	assert_int_equal(c.tcp_server_tunnels[1].proxy_protocol, 0);
	config_free(&c);
	expect_err(IFACE "[TCPServerTunnel]\nListenPort = 80\nTarget = 127.0.0.1:1\n"
	                 "ProxyProtocol = v1\n",
	           "t.ini:7: [TCPServerTunnel] ProxyProtocol: \"v1\" is not v2 or off");
	expect_err(IFACE "[Socks5]\nBindAddress = 127.0.0.1:1\nProxyProtocol = v2\n",
	           "t.ini:6: [Socks5] unknown key ProxyProtocol");
}

static void test_udp_sections(void **st)
{
	struct config c;
	ok(IFACE
	   "[UDPClientTunnel]\nBindAddress = 127.0.0.1:5353\nTarget = 100.64.0.1:53\n"
	   "[udpclienttunnel]\nBindAddress = [::1]:5354\nTarget = dns:53\n"
	   "IdleTimeout = 5\nMaxFlows = 10\n"
	   "[UDPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:5300\n"
	   "IdleTimeout = 86400\nMaxFlows = 16384\n"
	   "[UDPServerTunnel]\nListenPort = 54\nTarget = [::1]:5301\n",
	   &c);
	assert_int_equal(c.n_udp_client_tunnels, 2);
	assert_int_equal(c.n_udp_server_tunnels, 2);
	const struct cfg_udp_client_tunnel *u = &c.udp_client_tunnels[0];
	struct sockaddr_in *sin = (struct sockaddr_in *)&u->bind.addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 5353);
	assert_string_equal(u->target_host, "100.64.0.1");
	assert_int_equal(u->target_port, 53);
	assert_int_equal(u->idle_timeout_ms, CFG_DEFAULT_UDP_IDLE_MS);
	assert_int_equal(u->max_flows, CFG_DEFAULT_UDP_MAX_FLOWS);
	u = &c.udp_client_tunnels[1];
	assert_int_equal(u->bind.addr.ss_family, AF_INET6);
	assert_string_equal(u->target_host, "dns");
	assert_int_equal(u->idle_timeout_ms, 5000);
	assert_int_equal(u->max_flows, 10);
	const struct cfg_udp_server_tunnel *v = &c.udp_server_tunnels[0];
	assert_int_equal(v->listen_port, 53);
	assert_string_equal(v->target_host, "127.0.0.1");
	assert_int_equal(v->target_port, 5300);
	assert_int_equal(v->idle_timeout_ms, 86400000);
	assert_int_equal(v->max_flows, 16384);
	v = &c.udp_server_tunnels[1];
	assert_string_equal(v->target_host, "::1");
	assert_int_equal(v->idle_timeout_ms, CFG_DEFAULT_UDP_IDLE_MS);
	assert_int_equal(v->max_flows, CFG_DEFAULT_UDP_MAX_FLOWS);
	config_free(&c);
	/* The same ListenPort may serve TCP and UDP. */
	ok(IFACE "[TCPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:53\n"
	         "[UDPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:53\n",
	   &c);
	config_free(&c);
}

static void test_udp_errors(void **st)
{
	expect_err(IFACE "[UDPClientTunnel]\nTarget = 100.64.0.1:53\n",
	           "t.ini:4: [UDPClientTunnel] BindAddress is missing (e.g. "
	           "127.0.0.1:5353)");
	expect_err(IFACE "[UDPClientTunnel]\nBindAddress = 127.0.0.1:5353\n",
	           "t.ini:4: [UDPClientTunnel] Target is missing");
	expect_err(IFACE "[UDPServerTunnel]\nTarget = 127.0.0.1:53\n",
	           "t.ini:4: [UDPServerTunnel] ListenPort is missing");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 53\n",
	           "t.ini:4: [UDPServerTunnel] Target is missing");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 0\nTarget = 127.0.0.1:53\n",
	           "t.ini:5: [UDPServerTunnel] ListenPort: \"0\" is not a port number");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 53\nTarget = a:1\n"
	                 "[UDPServerTunnel]\nListenPort = 53\nTarget = b:1\n",
	           "t.ini: [UDPServerTunnel] ListenPort 53 is used twice");
	expect_err(IFACE "[UDPClientTunnel]\nBindAddress = 127.0.0.1:1\nTarget = "
	                 "100.64.0.1\n",
	           "t.ini:6: [UDPClientTunnel] Target: \"100.64.0.1\" is not host:port");
	expect_err(IFACE "[UDPClientTunnel]\nBindAddress = 127.0.0.1:1\nTarget = "
	                 "100.64.0.1:53\nIdleTimeout = 0\n",
	           "t.ini:7: [UDPClientTunnel] IdleTimeout: \"0\" is not a number of "
	           "seconds (1-86400)");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:53\n"
	                 "MaxFlows = 0\n",
	           "t.ini:7: [UDPServerTunnel] MaxFlows: \"0\" is not a number of "
	           "flows (1-16384)");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:53\n"
	                 "MaxFlows = 16385\n",
	           "t.ini:7: [UDPServerTunnel] MaxFlows: \"16385\" is not");
	expect_err(IFACE "[UDPServerTunnel]\nListenPort = 53\nTarget = 127.0.0.1:53\n"
	                 "MaxConnections = 5\n",
	           "t.ini:7: [UDPServerTunnel] unknown key MaxConnections");
	expect_err(IFACE "[UDPTunnel]\n", "t.ini:4: unknown section [UDPTunnel]");
}

static void test_peer_name(void **st)
{
	struct config c;
	ok(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = web\n"
	         "[Peer]\nPublicKey = " PUB3 "\n",
	   &c);
	assert_string_equal(c.peers[0].name, "web");
	assert_int_equal(c.peers[0].name_line, 6);
	assert_null(c.peers[1].name);
	config_free(&c);
	char label[80];
	memset(label, 'a', 63);
	label[63] = 0;
	char text[512];
	snprintf(text, sizeof(text), IFACE "[Peer]\nPublicKey = " PUB2 "\nName = %s\n",
	         label);
	ok(text, &c);
	assert_int_equal(strlen(c.peers[0].name), 63);
	config_free(&c);
	ok(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = Db-1\n", &c);
	assert_string_equal(c.peers[0].name, "Db-1");
	config_free(&c);
	label[63] = 'a';
	label[64] = 0;
	snprintf(text, sizeof(text), IFACE "[Peer]\nPublicKey = " PUB2 "\nName = %s\n",
	         label);
	expect_err(text, "t.ini:6: [Peer] Name: \"aaaa");
	assert_non_null(strstr(err, "is not a host name label (1-63 letters"));
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = web.mesh\n",
	           "t.ini:6: [Peer] Name: \"web.mesh\" is not a host name label");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = -web\n",
	           "t.ini:6: [Peer] Name: \"-web\" is not a host name label");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = web-\n",
	           "t.ini:6: [Peer] Name: \"web-\" is not a host name label");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = we_b\n",
	           "t.ini:6: [Peer] Name: \"we_b\" is not a host name label");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nName = web\n"
	                 "[Peer]\nPublicKey = " PUB3 "\n\nName = WEB\n",
	           "t.ini:10: [Peer] Name: \"WEB\" is already the name of the peer at "
	           "t.ini:4 (names are case-insensitive)");
}

/* config/example.ini documents every section and loads. */
static void test_example_ini_sections(void **st)
{
	struct config c;
	if (access("config/example.ini", R_OK) != 0)
		skip();
	if (config_load("config/example.ini", &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.peers[0].name, "gateway");
	assert_int_equal(c.n_udp_client_tunnels, 1);
	assert_int_equal(c.n_udp_server_tunnels, 1);
	assert_int_equal(c.socks5[0].direct, CFG_DIRECT_UNSET);
	assert_int_equal(c.socks5[0].limits.max_connections, CFG_DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(c.tcp_server_tunnels[0].proxy_protocol, 0);
	config_free(&c);
}

/* review M8: many front-end sections all load (the node starts every one
 * of them); past CFG_MAX_FRONTENDS the error names the file and line. */
static char *many_tunnels(size_t n)
{
	static const char one[] = "[TCPClientTunnel]\nBindAddress = 127.0.0.1:%zu\n"
	                          "Target = 100.64.0.1:22\n";
	size_t cap = sizeof(IFACE) + n * (sizeof(one) + 8);
	char *t = malloc(cap);
	assert_non_null(t);
	size_t len = (size_t)snprintf(t, cap, "%s", IFACE);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(t + len, cap - len, one, 20000 + i);
	return t;
}

static void test_many_frontends(void **st)
{
	(void)st;
	struct config c;
	char *t = many_tunnels(70);
	ok(t, &c);
	assert_int_equal(c.n_tcp_client_tunnels, 70);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c.tcp_client_tunnels[69].bind.addr)->sin_port), 20069);
	config_free(&c);
	free(t);

	t = many_tunnels(CFG_MAX_FRONTENDS);
	ok(t, &c);
	assert_int_equal(c.n_tcp_client_tunnels, CFG_MAX_FRONTENDS);
	config_free(&c);
	free(t);

	/* IFACE is 3 lines, each section 3: the extra one starts at line 3 *
	 * 1024 + 4. */
	t = many_tunnels(CFG_MAX_FRONTENDS + 1);
	char want[128];
	snprintf(want, sizeof(want),
	         "t.ini:%d: [TCPClientTunnel]: more than %d front-end sections",
	         3 * CFG_MAX_FRONTENDS + 4, CFG_MAX_FRONTENDS);
	expect_err(t, want);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limit_defaults),
	    cmocka_unit_test(test_limit_values),
	    cmocka_unit_test(test_limit_errors),
	    cmocka_unit_test(test_direct),
	    cmocka_unit_test(test_proxy_protocol),
	    cmocka_unit_test(test_udp_sections),
	    cmocka_unit_test(test_udp_errors),
	    cmocka_unit_test(test_peer_name),
	    cmocka_unit_test(test_example_ini_sections),
	    cmocka_unit_test(test_many_frontends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
