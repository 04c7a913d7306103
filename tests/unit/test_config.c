/* Config parser: wireproxy/wg-quick compatibility, the inih workarounds
 * (long lines, consecutive sections, real line numbers) and the wording of
 * errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_int.h"
#include "core/util/log.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PRIV     "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define PRIV_PUB "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=" /* wg pubkey of PRIV */
#define PUB2     "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define PUB3     "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define PSK4     "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="

static char err[512];

static int load(const char *text, struct config *c)
{
	struct cfg_opts o = {.quiet = true};
	err[0] = 0;
	return config_load_buffer("t.ini", text, strlen(text), c, &o, err, sizeof(err));
}

/* Expects a load failure whose message starts with want. */
static void expect_err(const char *text, const char *want)
{
	struct config c;
	int r = load(text, &c);
	if (r == 0 || strncmp(err, want, strlen(want)) != 0)
		fail_msg("want error \"%s\", got r=%d \"%s\"", want, r, err);
	/* A failed load leaves nothing to free. */
	assert_null(c.peers);
	assert_null(c.path);
}

static void ok(const char *text, struct config *c)
{
	if (load(text, c) != 0)
		fail_msg("unexpected error: %s", err);
}

static void check_v4(const struct cfg_prefix *p, const char *addr, int cidr)
{
	uint8_t want[4];
	assert_int_equal(inet_pton(AF_INET, addr, want), 1);
	assert_int_equal(p->family, AF_INET);
	assert_memory_equal(p->addr, want, 4);
	assert_int_equal(p->cidr, cidr);
}

#define IFACE "[Interface]\nPrivateKey = " PRIV "\nAddress = 100.64.0.2/32\n"

static void test_wireproxy_example(void **st)
{
	struct config c;
	ok("# wireproxy config\n"
	   "[Interface]\n"
	   "Address = 100.64.200.2/32, fd00::2/128\n"
	   "PrivateKey = " PRIV "\n"
	   "DNS = 100.64.200.1\n"
	   "MTU = 1280\n"
	   "ListenPort = 51820\n"
	   "\n"
	   "[Peer]\n"
	   "PublicKey = " PUB2 "\n"
	   "PresharedKey = " PSK4 "\n"
	   "Endpoint = 198.18.0.1:51820\n"
	   "AllowedIPs = 100.64.200.0/24\n"
	   "PersistentKeepalive = 25\n"
	   "\n"
	   "[Socks5]\n"
	   "BindAddress = 127.0.0.1:25344\n"
	   "Username = alice\n"
	   "Password = s3cret\n"
	   "\n"
	   "[http]\n"
	   "BindAddress = [::1]:25345\n"
	   "\n"
	   "[TCPClientTunnel]\n"
	   "BindAddress = 127.0.0.1:25565\n"
	   "Target = 100.64.200.1:25565\n"
	   "\n"
	   "[TCPServerTunnel]\n"
	   "ListenPort = 3422\n"
	   "Target = localhost:25545\n",
	   &c);
	uint8_t k[32];
	memset(k, 1, 32);
	assert_memory_equal(c.private_key, k, 32);
	assert_int_equal(c.n_addresses, 2);
	check_v4(&c.addresses[0], "100.64.200.2", 32);
	assert_int_equal(c.addresses[1].family, AF_INET6);
	assert_int_equal(c.addresses[1].cidr, 128);
	assert_int_equal(c.n_dns, 1);
	check_v4(&c.dns[0], "100.64.200.1", 32);
	assert_int_equal(c.mtu, 1280);
	assert_int_equal(c.listen_port, 51820);
	assert_int_equal(c.n_peers, 1);
	memset(k, 2, 32);
	assert_memory_equal(c.peers[0].public_key, k, 32);
	assert_true(c.peers[0].has_preshared_key);
	memset(k, 4, 32);
	assert_memory_equal(c.peers[0].preshared_key, k, 32);
	assert_string_equal(c.peers[0].endpoint_host, "198.18.0.1");
	assert_int_equal(c.peers[0].endpoint_port, 51820);
	struct sockaddr_in *sin = (struct sockaddr_in *)&c.peers[0].endpoint;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 51820);
	assert_int_equal(c.peers[0].n_allowed_ips, 1);
	check_v4(&c.peers[0].allowed_ips[0], "100.64.200.0", 24);
	assert_int_equal(c.peers[0].persistent_keepalive, 25);
	assert_string_equal(c.peers[0].file, "t.ini");
	assert_int_equal(c.peers[0].line, 9);
	assert_int_equal(c.n_socks5, 1);
	assert_string_equal(c.socks5[0].username, "alice");
	assert_string_equal(c.socks5[0].password, "s3cret");
	sin = (struct sockaddr_in *)&c.socks5[0].bind.addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 25344);
	assert_int_equal(c.socks5[0].bind.addr_len, sizeof(struct sockaddr_in));
	assert_int_equal(c.n_http, 1);
	assert_null(c.http[0].username);
	assert_int_equal(c.http[0].bind.addr.ss_family, AF_INET6);
	assert_int_equal(c.n_tcp_client_tunnels, 1);
	assert_string_equal(c.tcp_client_tunnels[0].target_host, "100.64.200.1");
	assert_int_equal(c.tcp_client_tunnels[0].target_port, 25565);
	assert_int_equal(c.n_tcp_server_tunnels, 1);
	assert_int_equal(c.tcp_server_tunnels[0].listen_port, 3422);
	assert_string_equal(c.tcp_server_tunnels[0].target_host, "localhost");
	assert_int_equal(c.tcp_server_tunnels[0].target_port, 25545);
	config_free(&c);
	config_free(&c); /* a freed (zeroed) config may be freed again */
}

static void test_defaults_and_case(void **st)
{
	struct config c;
	ok("[interface]\nprivatekey=" PRIV
	   "\nADDRESS = 100.64.0.2\n[PEER]\npublickey = " PUB2
	   "\n[SOCKS5]\nbindaddress = :1080\nallowopen = "
	   "yes\n[HTTP]\nBindAddress=127.0.0.1:0\n",
	   &c);
	assert_int_equal(c.mtu, 1420);
	assert_int_equal(c.listen_port, 0);
	check_v4(&c.addresses[0], "100.64.0.2", 32); /* no /prefix: a host address */
	assert_int_equal(c.n_peers, 1);
	assert_int_equal(c.peers[0].endpoint.ss_family, 0);
	assert_null(c.peers[0].endpoint_host);
	assert_false(c.peers[0].has_preshared_key);
	struct sockaddr_in *sin = (struct sockaddr_in *)&c.socks5[0].bind.addr;
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(sin->sin_port), 1080);
	assert_int_equal(c.n_http, 1);
	config_free(&c);
}

/* MemoryLimit and MaxConnectionsPerPeer: in [Interface] or before any
 * section (where `up --config` files can have them), once, with clear
 * errors. */
#define IFACE_CGNAT "[Interface]\nPrivateKey = " PRIV "\nAddress = 100.64.0.2/32\n"
static void test_memory_limit_keys(void **st)
{
	(void)st;
	struct config c;
	ok(IFACE_CGNAT, &c);
	assert_int_equal(c.memory_limit, 0); /* the netstack's default */
	assert_int_equal(c.max_conns_per_peer, CFG_DEFAULT_MAX_CONNS_PER_PEER);
	config_free(&c);
	ok(IFACE_CGNAT "MemoryLimit = 512M\nMaxConnectionsPerPeer = 0\n", &c);
	assert_int_equal(c.memory_limit, 512u << 20);
	assert_int_equal(c.max_conns_per_peer, 0);
	config_free(&c);
	ok("MemoryLimit = 2G\nMaxConnectionsPerPeer = 50\n" IFACE_CGNAT, &c);
	assert_int_equal(c.memory_limit, (uint64_t)2 << 30);
	assert_int_equal(c.max_conns_per_peer, 50);
	config_free(&c);
	ok(IFACE_CGNAT "MemoryLimit = 67108864\n", &c);
	assert_int_equal(c.memory_limit, 64u << 20);
	config_free(&c);
	/* Bytes past nine digits (the documented range goes to 1T). */
	ok(IFACE_CGNAT "MemoryLimit = 2147483648\n", &c);
	assert_int_equal(c.memory_limit, (uint64_t)2 << 30);
	config_free(&c);
	ok(IFACE_CGNAT "MemoryLimit = 1099511627776\n", &c);
	assert_int_equal(c.memory_limit, (uint64_t)1 << 40);
	config_free(&c);
	expect_err(IFACE_CGNAT "MemoryLimit = 1099511627777\n",
	           "t.ini:4: [Interface] MemoryLimit: \"1099511627777\" is not a memory "
	           "size (16M-1T");
	expect_err(IFACE_CGNAT "MemoryLimit = 99999999999999999999999G\n",
	           "t.ini:4: [Interface] MemoryLimit: \"99999999999999999999999G\" is not "
	           "a memory size");
	/* A key before any section names no section. */
	expect_err("MemoryLimit = 2T\n" IFACE_CGNAT,
	           "t.ini:1: MemoryLimit: \"2T\" is not a memory size");
	expect_err(
	    IFACE_CGNAT "MemoryLimit = 1M\n",
	    "t.ini:4: [Interface] MemoryLimit: \"1M\" is not a memory size (16M-1T");
	expect_err(IFACE_CGNAT "MemoryLimit = lots\n",
	           "t.ini:4: [Interface] MemoryLimit: \"lots\" is not a memory size");
	expect_err("MemoryLimit = 64M\n" IFACE_CGNAT "MemoryLimit = 64M\n",
	           "t.ini:5: MemoryLimit given twice (first at line 1)");
	expect_err(
	    IFACE_CGNAT "MaxConnectionsPerPeer = -1\n",
	    "t.ini:4: [Interface] MaxConnectionsPerPeer: \"-1\" is not a number of "
	    "connections");
}

/* PortMapping: yes or no, node-wide (in [Interface] or before any
 * section), once. */
static void test_portmapping_key(void **st)
{
	(void)st;
	struct config c;
	ok(IFACE_CGNAT, &c);
	assert_int_equal(c.portmap, 0); /* not given: on */
	config_free(&c);
	ok(IFACE_CGNAT "PortMapping = no\n", &c);
	assert_int_equal(c.portmap, -1);
	config_free(&c);
	ok("PortMapping = yes\n" IFACE_CGNAT, &c);
	assert_int_equal(c.portmap, 1);
	config_free(&c);
	expect_err(IFACE_CGNAT "PortMapping = maybe\n",
	           "t.ini:4: [Interface] PortMapping: \"maybe\" is not yes or no");
	expect_err("PortMapping = no\n" IFACE_CGNAT "PortMapping = yes\n",
	           "t.ini:5: PortMapping given twice (first at line 1)");
}

/* BirthdayProbing: yes or no, node-wide (in [Interface] or before any
 * section), once; the error names the key and what it switches. */
static void test_birthday_probing_key(void **st)
{
	(void)st;
	struct config c;
	ok(IFACE_CGNAT, &c);
	assert_int_equal(c.birthday, 0); /* not given: on */
	config_free(&c);
	ok(IFACE_CGNAT "BirthdayProbing = no\n", &c);
	assert_int_equal(c.birthday, -1);
	assert_int_equal(c.portmap, 0); /* the other switch untouched */
	config_free(&c);
	ok("BirthdayProbing = off\nPortMapping = no\n" IFACE_CGNAT, &c);
	assert_int_equal(c.birthday, -1);
	assert_int_equal(c.portmap, -1);
	config_free(&c);
	ok(IFACE_CGNAT "BirthdayProbing = Yes\n", &c);
	assert_int_equal(c.birthday, 1);
	config_free(&c);
	expect_err(IFACE_CGNAT "BirthdayProbing = sometimes\n",
	           "t.ini:4: [Interface] BirthdayProbing: \"sometimes\" is not yes or no "
	           "(whether to try birthday-paradox port probing against a symmetric NAT)");
	expect_err("BirthdayProbing = no\n" IFACE_CGNAT "BirthdayProbing = no\n",
	           "t.ini:5: BirthdayProbing given twice (first at line 1)");
}

static void test_two_peers_in_a_row(void **st)
{
	struct config c;
	ok(IFACE "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = 100.64.0.1/32\n"
	         "[Peer]\nPublicKey = " PUB3 "\nAllowedIPs = 100.64.0.3/32\n",
	   &c);
	assert_int_equal(c.n_peers, 2);
	assert_int_equal(c.peers[0].public_key[0], 2);
	assert_int_equal(c.peers[1].public_key[0], 3);
	assert_int_equal(c.peers[0].n_allowed_ips, 1);
	assert_int_equal(c.peers[1].n_allowed_ips, 1);
	check_v4(&c.peers[1].allowed_ips[0], "100.64.0.3", 32);
	assert_int_equal(c.peers[0].line, 4);
	assert_int_equal(c.peers[1].line, 7);
	config_free(&c);
}

static void test_empty_peer_is_missing_key(void **st)
{
	/* Without our reader the empty section would be invisible. */
	expect_err(IFACE "[Peer]\n[Peer]\nPublicKey = " PUB2 "\n",
	           "t.ini:4: [Peer] PublicKey is missing");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\n[Peer]\n",
	           "t.ini:6: [Peer] PublicKey is missing");
}

/* A 2,000-character AllowedIPs line: every prefix arrives, none is cut. */
static void test_long_allowed_ips_line(void **st)
{
	char *text = malloc(8192);
	int n = sprintf(text, IFACE "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = ");
	int count = 0, start = (int)strlen(IFACE "[Peer]\nPublicKey = " PUB2 "\n");
	while (n - start < 2000) {
		n += sprintf(text + n, "%s100.%d.%d.0/24", count ? ", " : "",
		             64 + count / 250, count % 250);
		count++;
	}
	assert_true(n - start >= 2000 && count > 100);
	/* and the line numbers after it are still right */
	sprintf(text + n, "\nAllowedIPs = fd00::/64\nPersistentKeepalive = 7\n");
	struct config c;
	ok(text, &c);
	assert_int_equal(c.peers[0].n_allowed_ips, count + 1);
	for (int i = 0; i < count; i++) {
		char want[32];
		sprintf(want, "100.%d.%d.0", 64 + i / 250, i % 250);
		check_v4(&c.peers[0].allowed_ips[i], want, 24);
	}
	assert_int_equal(c.peers[0].allowed_ips[count].family, AF_INET6);
	assert_int_equal(c.peers[0].persistent_keepalive, 7);
	config_free(&c);

	sprintf(text + n, "\nAllowedIPs = fd00::/64\nPersistentKeepalive = x\n");
	expect_err(text, "t.ini:8: [Peer] PersistentKeepalive: \"x\" is not a number");
	/* an error inside the long line names that line */
	sprintf(text + n, ", 100.64.0.300/32\n");
	expect_err(text,
	           "t.ini:6: [Peer] AllowedIPs: \"100.64.0.300/32\" is not an IP prefix");
	free(text);
}

static void test_long_other_line_is_error(void **st)
{
	char text[1024];
	char pad[400];
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = 0;
	snprintf(text, sizeof(text),
	         IFACE "[Socks5]\nBindAddress = 127.0.0.1:1\nPassword = %s\n", pad);
	expect_err(text, "t.ini:6: [Socks5] Password: the line is too long");
	/* A single list item that cannot fit is an error too. */
	snprintf(text, sizeof(text),
	         IFACE "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = %s\n", pad);
	expect_err(text, "t.ini:6: [Peer] AllowedIPs: item \"xxxx");
}

static void test_error_messages(void **st)
{
	expect_err(
	    IFACE "[Peer]\nPublicKey = " PUB2
	          "\n\n\n\n\n\nAllowedIPs = 100.64.0.300/32\n",
	    "t.ini:11: [Peer] AllowedIPs: \"100.64.0.300/32\" is not an IP prefix");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = 100.64.0.0/33\n",
	           "t.ini:6: [Peer] AllowedIPs: \"100.64.0.0/33\" is not an IP prefix");
	expect_err(IFACE "Colour = blue\n", "t.ini:4: [Interface] unknown key Colour");
	expect_err(IFACE "[Peers]\n", "t.ini:4: unknown section [Peers]");
	expect_err("Foo = 1\n" IFACE, "t.ini:1: unknown key Foo before any section");
	expect_err(IFACE "MTU = 1280\nmtu = 1300\n",
	           "t.ini:5: [Interface] MTU given twice (first at line 4)");
	expect_err(IFACE "MTU = 100\n",
	           "t.ini:4: [Interface] MTU: \"100\" is not an MTU");
	expect_err("[Interface]\nAddress = 100.64.0.2\n",
	           "t.ini:1: [Interface] PrivateKey is missing");
	expect_err("[Interface]\nPrivateKey = " PRIV "\n\n[Peer]\nPublicKey = " PUB2 "\n",
	           "t.ini:1: [Interface] Address is missing");
	expect_err("[Peer]\nPublicKey = " PUB2 "\n", "t.ini: no [Interface] section");
	expect_err(IFACE "[Interface]\n",
	           "t.ini:4: second [Interface] (the first is at t.ini:1)");
	expect_err(IFACE "junk\n", "t.ini:4: expected \"Key = value\" or \"[Section]\"");
	expect_err(IFACE "[Peer\n", "t.ini:4: expected ']'");
	expect_err(IFACE "Address = 100.64.0.2/24, 10.0.0.x\n",
	           "t.ini:4: [Interface] Address: \"10.0.0.x\" is not an IP address");
	/* Secrets are never echoed. */
	expect_err("[Interface]\nPrivateKey = notakey\n",
	           "t.ini:2: [Interface] PrivateKey: not a WireGuard key");
	assert_null(strstr(err, "notakey"));
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nPresharedKey = abc\n",
	           "t.ini:6: [Peer] PresharedKey: not a WireGuard key");
	assert_null(strstr(err, "abc"));
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nEndpoint = 1.2.3.4\n",
	           "t.ini:6: [Peer] Endpoint: \"1.2.3.4\" is not host:port");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nEndpoint = fd00::1:51820\n",
	           "t.ini:6: [Peer] Endpoint: \"fd00::1:51820\" is not host:port");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\nEndpoint = 1.2.3.4:65536\n",
	           "t.ini:6: [Peer] Endpoint: \"1.2.3.4:65536\" is not host:port");
	expect_err(IFACE "[Peer]\nPublicKey = " PRIV_PUB "\n",
	           "t.ini:4: [Peer] PublicKey is this node's own public key");
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2 "\n[Peer]\nPublicKey = " PUB2 "\n",
	           "t.ini:6: [Peer] PublicKey: the same peer as at t.ini:4");
	expect_err(IFACE "[Socks5]\nBindAddress = 127.0.0.1:1080\nUsername = u\n",
	           "t.ini:4: [Socks5] Password is missing (Username is set)");
	expect_err(IFACE "[Socks5]\nUsername = u\nPassword = p\n",
	           "t.ini:4: [Socks5] BindAddress is missing");
	expect_err(IFACE "[TCPClientTunnel]\nBindAddress = 127.0.0.1:1\n",
	           "t.ini:4: [TCPClientTunnel] Target is missing");
	expect_err(IFACE "[TCPServerTunnel]\nTarget = 127.0.0.1:1\n",
	           "t.ini:4: [TCPServerTunnel] ListenPort is missing");
	expect_err(IFACE "[TCPServerTunnel]\nListenPort = 0\nTarget = 127.0.0.1:1\n",
	           "t.ini:5: [TCPServerTunnel] ListenPort: \"0\" is not a port number");
	expect_err(IFACE "[TCPServerTunnel]\nListenPort = 80\nTarget = a:1\n"
	                 "[TCPServerTunnel]\nListenPort = 80\nTarget = b:1\n",
	           "t.ini: [TCPServerTunnel] ListenPort 80 is used twice");
	expect_err(IFACE
	           "[TCPClientTunnel]\nBindAddress = 127.0.0.1:1\nTarget = bad host:1\n",
	           "t.ini:6: [TCPClientTunnel] Target: \"bad host:1\" is not host:port");
	expect_err(IFACE "[Socks5]\nBindAddress = 127.0.0.1\n",
	           "t.ini:5: [Socks5] BindAddress: \"127.0.0.1\" is not address:port");
	expect_err(IFACE "DNS = 1.1.1.1, bad/name\n",
	           "t.ini:4: [Interface] DNS: \"bad/name\" is not an IP address");
	expect_err(IFACE "MTU = 1\x01\n",
	           "t.ini:4: [Interface] MTU: the value contains control");
	static const char nul[] = IFACE "MTU = 1\0 2\n";
	struct config c;
	struct cfg_opts o = {.quiet = true};
	assert_int_equal(
	    config_load_buffer("t.ini", nul, sizeof(nul) - 1, &c, &o, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "t.ini:4: the line contains a NUL byte");
}

static void test_line_numbers_with_comments_and_crlf(void **st)
{
	expect_err("\xef\xbb\xbf; comment\r\n"
	           "# another\r\n"
	           "\r\n"
	           "[Interface] ; trailing comment\r\n"
	           "PrivateKey = " PRIV " ; inline\r\n"
	           "Address = 100.64.0.2/32 # inline too\r\n"
	           "MTU = abc\r\n",
	           "t.ini:7: [Interface] MTU: \"abc\" is not an MTU");
	struct config c;
	ok("\xef\xbb\xbf[Interface]\r\n\tPrivateKey = " PRIV
	   " ; c\r\n  Address = 100.64.0.2\r\n",
	   &c);
	check_v4(&c.addresses[0], "100.64.0.2", 32);
	config_free(&c);
}

/* Indented lines are ordinary lines here, not inih continuation lines. */
static void test_indented_lines_are_keys(void **st)
{
	struct config c;
	ok("[Interface]\n  PrivateKey = " PRIV
	   "\n  Address = 100.64.0.2/32\n    MTU = 1300\n",
	   &c);
	assert_int_equal(c.mtu, 1300);
	config_free(&c);
}

static void test_lists_append(void **st)
{
	struct config c;
	ok("[Interface]\nPrivateKey = " PRIV
	   "\nAddress = 100.64.0.2/24\nAddress = fd00::2, \n"
	   "DNS = 1.1.1.1, 2606:4700:4700::1111, example.com\n"
	   "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = 0.0.0.0/0\nAllowedIPs = ::/0\n"
	   "AllowedIPs = 100.65.2.3/10\nAllowedIPs =\n",
	   &c);
	assert_int_equal(c.n_addresses, 2);
	check_v4(&c.addresses[0], "100.64.0.2", 24); /* host bits kept in Address */
	assert_int_equal(c.n_dns, 2);
	assert_int_equal(c.dns[1].family, AF_INET6);
	assert_int_equal(c.dns[1].cidr, 128);
	assert_int_equal(c.peers[0].n_allowed_ips, 3);
	check_v4(&c.peers[0].allowed_ips[0], "0.0.0.0", 0);
	assert_int_equal(c.peers[0].allowed_ips[1].family, AF_INET6);
	check_v4(&c.peers[0].allowed_ips[2], "100.64.0.0", 10); /* host bits cleared */
	config_free(&c);
}

/* True if this host resolves "localhost" (a minimal chroot without
 * /etc/hosts does not; the name part of the test is then skipped). */
static bool localhost_resolves(void)
{
	struct addrinfo *ai = NULL;
	if (getaddrinfo("localhost", "7", NULL, &ai) != 0)
		return false;
	freeaddrinfo(ai);
	return true;
}

static void test_endpoints(void **st)
{
	struct config c;
	if (!localhost_resolves()) {
		print_message("note: \"localhost\" does not resolve here (no "
		              "/etc/hosts?): host-name Endpoint not tested\n");
		ok(IFACE "[Peer]\nPublicKey = " PUB2
		         "\nEndpoint = [fd00::1]:51820\nPersistentKeepalive = off\n",
		   &c);
		assert_int_equal(c.peers[0].endpoint.ss_family, AF_INET6);
		config_free(&c);
		return;
	}
	ok(IFACE "[Peer]\nPublicKey = " PUB2
	         "\nEndpoint = [fd00::1]:51820\nPersistentKeepalive = off\n"
	         "[Peer]\nPublicKey = " PUB3 "\nEndpoint = localhost:7\n",
	   &c);
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c.peers[0].endpoint;
	assert_int_equal(s6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(s6->sin6_port), 51820);
	assert_string_equal(c.peers[0].endpoint_host, "fd00::1");
	assert_int_equal(c.peers[0].persistent_keepalive, 0);
	assert_string_equal(c.peers[1].endpoint_host, "localhost");
	assert_true(c.peers[1].endpoint.ss_family == AF_INET ||
	            c.peers[1].endpoint.ss_family == AF_INET6);
	config_free(&c);
	expect_err(IFACE "[Peer]\nPublicKey = " PUB2
	                 "\nEndpoint = no-such-host.invalid:1\n",
	           "t.ini:6: [Peer] Endpoint: cannot resolve \"no-such-host.invalid\"");
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int load_file(const char *name, struct config *c)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return config_load(path, c, err, sizeof(err));
}

static void test_wgconfig_include(void **st)
{
	strcpy(tmpdir, "/tmp/test_config.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/wg", tmpdir);
	mkdir(sub, 0700);
	write_file("wg/wg0.conf",
	           "[Interface]\nPrivateKey = " PRIV "\nAddress = 100.64.0.2/24\n"
	           "PostUp = iptables -A FORWARD\nTable = off\nSaveConfig = true\n"
	           "DNS = 100.64.0.1, corp.example\n"
	           "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = 100.64.0.0/24\n"
	           "[Peer]\nPublicKey = " PUB3 "\n");
	write_file("node.ini",
	           "WGConfig = wg/wg0.conf\n\n[Socks5]\nBindAddress = 127.0.0.1:1080\n");
	struct config c;
	log_set_level(LOG_ERROR); /* the wg-quick keys warn */
	if (load_file("node.ini", &c) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.n_peers, 2);
	assert_int_equal(c.n_addresses, 1);
	assert_int_equal(c.n_dns, 1);
	assert_int_equal(c.n_socks5, 1);
	assert_non_null(strstr(c.peers[1].file, "/wg/wg0.conf"));
	assert_int_equal(c.peers[1].line, 11);
	config_free(&c);

	/* errors inside the included file name that file */
	write_file("wg/bad.conf",
	           "[Interface]\nPrivateKey = " PRIV "\nAddress = 100.64.0.2/24\n"
	           "[Peer]\nPublicKey = " PUB2 "\nAllowedIPs = 100.64.0.0/99\n");
	write_file("node2.ini", "WGConfig = wg/bad.conf\n");
	assert_int_equal(load_file("node2.ini", &c), -1);
	assert_non_null(
	    strstr(err, "/wg/bad.conf:6: [Peer] AllowedIPs: \"100.64.0.0/99\""));

	write_file("node3.ini", "WGConfig = missing.conf\n");
	assert_int_equal(load_file("node3.ini", &c), -1);
	assert_non_null(strstr(err, "node3.ini:1: WGConfig: cannot read \""));
	assert_non_null(strstr(err, "No such file"));

	write_file("node4.ini", "WGConfig = wg/wg0.conf\n" IFACE);
	assert_int_equal(load_file("node4.ini", &c), -1);
	assert_non_null(
	    strstr(err, "node4.ini:2: [Interface] given here and WGConfig at line 1"));

	write_file("wg/proxy.conf", IFACE "[Socks5]\nBindAddress = 127.0.0.1:1\n");
	write_file("node5.ini", "WGConfig = wg/proxy.conf\n");
	assert_int_equal(load_file("node5.ini", &c), -1);
	assert_non_null(
	    strstr(err, "/wg/proxy.conf:4: [Socks5] does not belong in a WGConfig"));

	write_file("wg/nested.conf", "WGConfig = wg0.conf\n");
	write_file("node6.ini", "WGConfig = wg/nested.conf\n");
	assert_int_equal(load_file("node6.ini", &c), -1);
	assert_non_null(strstr(err, "/wg/nested.conf:1: WGConfig is not allowed inside"));

	assert_int_equal(load_file("nonexistent.ini", &c), -1);
	assert_non_null(strstr(err, "nonexistent.ini: cannot read: No such file"));

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
}

/* The documented example must stay loadable (run from the top of the tree). */
static void test_example_ini_loads(void **st)
{
	struct config c;
	if (access("config/example.ini", R_OK) != 0)
		skip();
	if (config_load("config/example.ini", &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.n_peers, 1);
	assert_int_equal(c.peers[0].n_allowed_ips, 3);
	assert_int_equal(c.n_socks5, 1);
	assert_int_equal(c.n_http, 1);
	assert_int_equal(c.n_tcp_client_tunnels, 1);
	assert_int_equal(c.n_tcp_server_tunnels, 1);
	config_free(&c);
}

static void test_parse_key(void **st)
{
	uint8_t k[32], want[32];
	memset(want, 2, 32);
	assert_true(config_parse_key(PUB2, k));
	assert_memory_equal(k, want, 32);
	assert_true(config_parse_key(PRIV_PUB, k));
	assert_false(config_parse_key(NULL, k));
	assert_false(config_parse_key("", k));
	assert_false(
	    config_parse_key("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI", k)); /* 43 */
	assert_false(
	    config_parse_key("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI==", k));
	assert_false(config_parse_key("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgJ=",
	                              k)); /* bits */
	assert_false(config_parse_key("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg==",
	                              k)); /* 31 B */
	assert_false(config_parse_key("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg-I",
	                              k)); /* url */
	assert_false(
	    config_parse_key("AgICAgICAgICAgICAgICAgIC AgICAgICAgICAgICAgI=", k));
}

static void test_value_helpers(void **st)
{
	struct cfg_prefix p;
	assert_true(cfg_parse_prefix("1.2.3.4/0", 9, &p));
	assert_false(cfg_parse_prefix("1.2.3.4/", 8, &p));
	assert_false(cfg_parse_prefix("1.2.3.4/+1", 10, &p));
	assert_false(cfg_parse_prefix("1.2.3.4/0032", 12, &p));
	assert_false(cfg_parse_prefix("01.2.3.4", 8, &p));
	assert_false(cfg_parse_prefix("fe80::1%eth0", 12, &p));
	assert_true(cfg_parse_prefix("::ffff:1.2.3.4/128", 18, &p));
	assert_int_equal(p.family, AF_INET6);
	char host[64];
	uint16_t port;
	assert_true(
	    cfg_split_hostport("[::1]:80", host, sizeof(host), &port, false, false));
	assert_string_equal(host, "::1");
	assert_false(cfg_split_hostport("[]:80", host, sizeof(host), &port, true, false));
	assert_false(
	    cfg_split_hostport("[::1]80", host, sizeof(host), &port, false, false));
	assert_false(cfg_split_hostport(":80", host, sizeof(host), &port, false, false));
	assert_true(cfg_split_hostport(":0", host, sizeof(host), &port, true, true));
	assert_false(cfg_split_hostport("a:0", host, sizeof(host), &port, true, false));
	assert_false(cfg_split_hostport("a:-1", host, sizeof(host), &port, true, true));
	assert_true(cfg_is_hostname("a-b.example_1.com"));
	assert_false(cfg_is_hostname("a..b"));
	assert_false(cfg_is_hostname(".a"));
	unsigned long v;
	assert_false(cfg_parse_uint("4294967297", 0, 65535, &v));
	assert_false(cfg_parse_uint("1 ", 0, 65535, &v));
	assert_true(cfg_parse_uint("65535", 0, 65535, &v));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wireproxy_example),
	    cmocka_unit_test(test_defaults_and_case),
	    cmocka_unit_test(test_memory_limit_keys),
	    cmocka_unit_test(test_two_peers_in_a_row),
	    cmocka_unit_test(test_empty_peer_is_missing_key),
	    cmocka_unit_test(test_long_allowed_ips_line),
	    cmocka_unit_test(test_long_other_line_is_error),
	    cmocka_unit_test(test_error_messages),
	    cmocka_unit_test(test_line_numbers_with_comments_and_crlf),
	    cmocka_unit_test(test_indented_lines_are_keys),
	    cmocka_unit_test(test_lists_append),
	    cmocka_unit_test(test_endpoints),
	    cmocka_unit_test(test_wgconfig_include),
	    cmocka_unit_test(test_example_ini_loads),
	    cmocka_unit_test(test_parse_key),
	    cmocka_unit_test(test_portmapping_key),
	    cmocka_unit_test(test_birthday_probing_key),
	    cmocka_unit_test(test_value_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
