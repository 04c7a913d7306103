/* Every section and key of wireproxy's configuration format loads
 * (wireproxy's config.go as of 2025: root WGConfig; [Interface] Address,
 * PrivateKey, DNS, MTU, ListenPort, CheckAlive, CheckAliveInterval; [Peer]
 * PublicKey, PreSharedKey, Endpoint, PersistentKeepalive, AllowedIPs;
 * [TCPClientTunnel] BindAddress, Target; [STDIOTunnel] Target;
 * [TCPServerTunnel] ListenPort, Target; [Socks5] and [http] BindAddress,
 * Username, Password; "$NAME" values from the environment), and each lands
 * where the node uses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/config_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRIV "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define PUB2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define PSK  "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="

static char err[512];

static int load(const char *text, struct config *c)
{
	struct cfg_opts o = {.quiet = true};
	err[0] = 0;
	return config_load_buffer("t.ini", text, strlen(text), c, &o, err, sizeof(err));
}

static const char *const every_key = "[Interface]\n"
                                     "Address = 100.64.9.2/32\n"
                                     "PrivateKey = $MESH_TEST_WG_KEY\n"
                                     "DNS = 100.64.9.1\n"
                                     "MTU = 1400\n"
                                     "ListenPort = 51999\n"
                                     "CheckAlive = 100.64.9.1, 198.18.9.9\n"
                                     "CheckAliveInterval = 3\n"
                                     "\n"
                                     "[Peer]\n"
                                     "PublicKey = " PUB2 "\n"
                                     "PreSharedKey = " PSK "\n"
                                     "Endpoint = 198.18.9.1:51820\n"
                                     "PersistentKeepalive = 25\n"
                                     "AllowedIPs = 0.0.0.0/0\n"
                                     "\n"
                                     "[TCPClientTunnel]\n"
                                     "BindAddress = 127.0.0.1:25565\n"
                                     "Target = play.example.net:25565\n"
                                     "\n"
                                     "[STDIOTunnel]\n"
                                     "Target = ssh.example.net:22\n"
                                     "\n"
                                     "[TCPServerTunnel]\n"
                                     "ListenPort = 3422\n"
                                     "Target = localhost:25545\n"
                                     "\n"
                                     "[Socks5]\n"
                                     "BindAddress = 127.0.0.1:25344\n"
                                     "Username = user\n"
                                     "Password = $$ecret\n"
                                     "\n"
                                     "[http]\n"
                                     "BindAddress = 127.0.0.1:25345\n"
                                     "Username = user\n"
                                     "Password = pass\n";

static void test_every_wireproxy_key_loads(void **st)
{
	(void)st;
	setenv("MESH_TEST_WG_KEY", PRIV, 1);
	struct config c;
	if (load(every_key, &c) != 0)
		fail_msg("a wireproxy config does not load: %s", err);
	uint8_t one[32];
	memset(one, 1, sizeof(one));
	assert_memory_equal(c.private_key, one, 32); /* from $MESH_TEST_WG_KEY */
	assert_int_equal(c.n_dns, 1);
	assert_int_equal(c.mtu, 1400);
	assert_int_equal(c.listen_port, 51999);
	assert_int_equal(c.n_check_alive, 2);
	assert_int_equal(c.check_alive[1].family, AF_INET);
	uint8_t a[4] = {198, 18, 9, 9};
	assert_memory_equal(c.check_alive[1].addr, a, 4);
	assert_int_equal(c.check_alive_interval_s, 3);
	assert_int_equal(c.n_peers, 1);
	assert_true(c.peers[0].has_preshared_key);
	assert_int_equal(c.peers[0].persistent_keepalive, 25);
	assert_int_equal(c.n_tcp_client_tunnels, 1);
	assert_string_equal(c.stdio_target_host, "ssh.example.net");
	assert_int_equal(c.stdio_target_port, 22);
	assert_int_equal(c.n_tcp_server_tunnels, 1);
	assert_int_equal(c.n_socks5, 1);
	assert_string_equal(c.socks5[0].password, "$ecret"); /* "$$" is a "$" */
	assert_int_equal(c.n_http, 1);
	config_free(&c);
}

static void test_wireproxy_defaults_and_errors(void **st)
{
	(void)st;
	struct config c;
	const char *base = "[Interface]\nAddress = 100.64.9.2/32\nPrivateKey = " PRIV
	                   "\nCheckAlive = 100.64.9.1\n";
	assert_int_equal(load(base, &c), 0);
	assert_int_equal(c.check_alive_interval_s, 5); /* wireproxy's default */
	assert_null(c.stdio_target_host);
	config_free(&c);

	unsetenv("MESH_TEST_UNSET_VAR");
	assert_int_equal(load("[Interface]\nAddress = 100.64.9.2/32\n"
	                      "PrivateKey = $MESH_TEST_UNSET_VAR\n",
	                      &c),
	                 -1);
	assert_non_null(
	    strstr(err, "environment variable MESH_TEST_UNSET_VAR is not set"));
	char buf[512];
	snprintf(buf, sizeof(buf),
	         "%s[STDIOTunnel]\nTarget = a.example:22\n"
	         "[STDIOTunnel]\nTarget = b.example:22\n",
	         base);
	assert_int_equal(load(buf, &c), -1);
	assert_non_null(strstr(err, "second [STDIOTunnel]"));
	snprintf(buf, sizeof(buf), "%s[STDIOTunnel]\n", base);
	assert_int_equal(load(buf, &c), -1);
	assert_non_null(strstr(err, "[STDIOTunnel] Target is missing"));
	snprintf(buf, sizeof(buf), "%sCheckAliveInterval = 0\n", base);
	assert_int_equal(load(buf, &c), -1);
	assert_non_null(strstr(err, "CheckAliveInterval"));
	snprintf(buf, sizeof(buf), "%sCheckAlive = web\n", base);
	assert_int_equal(load(buf, &c), -1);
	assert_non_null(strstr(err, "is not an IP address"));
}

/* WGConfig = a wg-quick file holding [Interface] and [Peer]. */
static void test_wgconfig_include(void **st)
{
	(void)st;
	char dir[] = "/tmp/mesh-test-wp.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char wg[300], main_ini[300];
	snprintf(wg, sizeof(wg), "%s/wg0.conf", dir);
	snprintf(main_ini, sizeof(main_ini), "%s/wireproxy.conf", dir);
	FILE *f = fopen(wg, "w");
	assert_non_null(f);
	fprintf(f,
	        "[Interface]\nAddress = 100.64.9.2/32\nPrivateKey = %s\n"
	        "DNS = 100.64.9.1\n\n[Peer]\nPublicKey = %s\n"
	        "AllowedIPs = 100.64.9.0/24\n",
	        PRIV, PUB2);
	fclose(f);
	f = fopen(main_ini, "w");
	assert_non_null(f);
	fprintf(f, "WGConfig = wg0.conf\n\n[STDIOTunnel]\nTarget = 100.64.9.1:22\n");
	fclose(f);
	struct config c;
	if (config_load(main_ini, &c, err, sizeof(err)) != 0)
		fail_msg("WGConfig does not load: %s", err);
	assert_int_equal(c.n_peers, 1);
	assert_int_equal(c.n_dns, 1);
	assert_string_equal(c.stdio_target_host, "100.64.9.1");
	config_free(&c);
	unlink(wg);
	unlink(main_ini);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_wireproxy_key_loads),
	    cmocka_unit_test(test_wireproxy_defaults_and_errors),
	    cmocka_unit_test(test_wgconfig_include),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
