/* `mesh-proxy whois` through the node's local API (node/control_whois.c),
 * answered from a map held by a node_ctl built by hand, over a real
 * api_server socket:
 *  - a peer's address gives its name, full name, id, user and tags;
 *  - our own address says it is this node, with the user and tags the map
 *    gives it;
 *  - with a port, what the policy lets this node reach there (and the
 *    peer reach here); without a policy everything is allowed;
 *  - an address no node in the map holds is an error ("fail", exit 1);
 *  - --json gives the same as one object, errors as {"error": ...}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "node/acl.h"
#include "node/api_server.h"
#include "node/control_int.h"

static struct event_base *base;
static struct node_ctl m;
static struct api_server *srv;
static char path[108];

static void handler(void *ctx, struct api_conn *c, const char *line)
{
	assert_true(strncmp(line, "whois ", 6) == 0);
	node_ctl_whois(ctx, c, line + 6);
	api_conn_finish(c);
}

static void make_peer(struct ctl_peer *p, uint64_t id, const char *name, unsigned k,
                      const char *user, const char *tags)
{
	char buf[64];
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->name, sizeof(p->name), "%s", name);
	uint8_t priv[32];
	memset(priv, (int)k, sizeof(priv));
	crypto_scalarmult_base(p->node_key, priv);
	snprintf(buf, sizeof(buf), "100.64.0.%u", k);
	assert_true(ctl_ip_parse(buf, &p->addrs[0]));
	snprintf(buf, sizeof(buf), "fd7a:115c:a1e0::%u", k);
	assert_true(ctl_ip_parse(buf, &p->addrs[1]));
	p->n_addrs = 2;
	snprintf(buf, sizeof(buf), "100.64.0.%u/32", k);
	assert_true(ctl_prefix_parse(buf, &p->allowed[0]));
	p->n_allowed = 1;
	snprintf(p->user, sizeof(p->user), "%s", user);
	snprintf(p->tags, sizeof(p->tags), "%s", tags);
}

static int setup(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	base = event_base_new();
	memset(&m, 0, sizeof(m));
	uint8_t self_key[1][CTL_KEY_LEN] = {{0}};
	assert_int_equal(
	    node_peers_init(&m.np, (const uint8_t(*)[CTL_KEY_LEN])self_key, 1), 0);
	static struct ctl_peer peers[2];
	make_peer(&peers[0], 7, "web", 7, "alice", "tag:server,tag:db");
	make_peer(&peers[1], 9, "laptop", 9, "bob", "");
	struct ctl_map_full map = {
	    .version = 1, .self_id = 3, .peers = peers, .n_peers = 2};
	snprintf(map.self_name, sizeof(map.self_name), "me");
	snprintf(map.self_user, sizeof(map.self_user), "ops");
	snprintf(map.self_tags, sizeof(map.self_tags), "tag:web,tag:ci");
	snprintf(map.dns_domain, sizeof(map.dns_domain), "mesh.internal");
	assert_true(ctl_ip_parse("100.64.0.3", &map.self_addrs[0]));
	map.n_self_addrs = 1;
	assert_int_equal(node_peers_reconcile(&m.np, NULL, &map, 0, NULL), 0);
	m.have_self = true;
	m.self.node_id = 3;
	snprintf(m.self.name, sizeof(m.self.name), "me");
	snprintf(m.self.fqdn, sizeof(m.self.fqdn), "me.mesh.internal");
	inet_pton(AF_INET, "100.64.0.3", m.self.ipv4);
	m.acl = node_acl_new(NULL, NULL);
	snprintf(path, sizeof(path), "/tmp/mesh-whois-%d.sock", (int)getpid());
	char err[200];
	srv = api_server_new(base, path, handler, &m, err, sizeof(err));
	if (!srv)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	api_server_free(srv);
	node_acl_free(m.acl);
	node_peers_free(&m.np);
	event_base_free(base);
	return 0;
}

/* Sends one request and returns the whole answer (static). */
static const char *ask(const char *req)
{
	static char out[4096];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	char line[300];
	snprintf(line, sizeof(line), "%s\n", req);
	assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	size_t n = 0;
	for (int i = 0; i < 2000; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		ssize_t r = read(fd, out + n, sizeof(out) - 1 - n);
		if (r == 0)
			break;
		if (r > 0)
			n += (size_t)r;
		else
			usleep(1000);
	}
	close(fd);
	out[n] = 0;
	return out;
}

static void peer_owner_and_tags(void **state)
{
	(void)state;
	const char *a = ask("whois 100.64.0.7");
	assert_non_null(strstr(a, "address 100.64.0.7\n"));
	assert_non_null(strstr(a, "node    web  web.mesh.internal  id 7\n"));
	assert_non_null(strstr(a, "user    alice\n"));
	assert_non_null(strstr(a, "tags    tag:server,tag:db\n"));
	assert_non_null(strstr(a, "policy  none\nok\n"));
	/* the IPv6 address, bracketed with a port, is the same node */
	a = ask("whois [fd7a:115c:a1e0::7]:22");
	assert_non_null(strstr(a, "node    web "));
	assert_non_null(strstr(a, "policy  none: everything is allowed\nok\n"));
	/* an IPv4-mapped IPv6 address is the IPv4 address */
	a = ask("whois ::ffff:100.64.0.7");
	assert_non_null(strstr(a, "address 100.64.0.7\n"));
	/* a name works too; a node without tags says so */
	a = ask("whois laptop");
	assert_non_null(strstr(a, "address 100.64.0.9\n"));
	assert_non_null(strstr(a, "user    bob\n"));
	assert_non_null(strstr(a, "tags    (none)\n"));
	/* ourselves */
	a = ask("whois 100.64.0.3");
	assert_non_null(strstr(a, "address 100.64.0.3  (this node)\n"));
	assert_non_null(strstr(a, "node    me  me.mesh.internal  id 3\n"));
	assert_non_null(strstr(a, "user    ops\n"));
	assert_non_null(strstr(a, "tags    tag:web,tag:ci\n"));
	a = ask("whois json 100.64.0.3");
	json_error_t je;
	json_t *o = json_loads(a, 0, &je);
	if (!o)
		fail_msg("not JSON: %s", a);
	assert_true(json_is_true(json_object_get(o, "self")));
	assert_string_equal(json_string_value(json_object_get(o, "user")), "ops");
	json_t *tags = json_object_get(o, "tags");
	assert_int_equal(json_array_size(tags), 2);
	assert_string_equal(json_string_value(json_array_get(tags, 0)), "tag:web");
	json_decref(o);
}

static void unknown_address_fails(void **state)
{
	(void)state;
	const char *a = ask("whois 100.64.0.99");
	assert_non_null(strstr(a, "error: no node in this node's map holds 100.64.0.99"));
	assert_non_null(strstr(a, "\nfail\n"));
	a = ask("whois 100.64.0.7:0");
	assert_non_null(strstr(a, "error: '100.64.0.7:0' is not ADDR"));
	a = ask("whois nosuch");
	assert_non_null(strstr(a, "error: nosuch is not a mesh address"));
	a = ask("whois json 100.64.0.99");
	json_error_t je;
	json_t *o = json_loads(a, 0, &je);
	assert_non_null(o);
	assert_non_null(strstr(json_string_value(json_object_get(o, "error")),
	                       "no node in this node's map holds"));
	json_decref(o);
}

static void port_under_a_policy(void **state)
{
	(void)state;
	/* this node may open tcp 22 on web; laptop may open udp 53 here */
	struct ctl_port_range ssh[] = {{22, 22}}, dns[] = {{53, 53}};
	struct ctl_reach r = {.id = 7, .n_tcp = 1, .tcp = ssh};
	struct ctl_filter_block b = {.ports = dns, .n_ports = 1};
	assert_true(ctl_ip_parse("100.64.0.9", &b.lo));
	b.hi = b.lo;
	struct ctl_filter f = {.n_blocks = {0, 1, 0}, .blocks = {NULL, &b, NULL}};
	assert_int_equal(node_acl_set(m.acl, true, &f, &r, 1), 0);
	const char *a = ask("whois 100.64.0.7:22");
	assert_non_null(strstr(a, "reach   tcp 22: allowed; udp 22: not allowed"));
	assert_non_null(strstr(a, "inbound tcp 22: not allowed; udp 22: not allowed"));
	a = ask("whois 100.64.0.9:53");
	assert_non_null(strstr(a, "reach   tcp 53: not allowed; udp 53: not allowed"));
	assert_non_null(strstr(a, "inbound tcp 53: not allowed; udp 53: allowed"));
	a = ask("whois json 100.64.0.7:22");
	json_error_t je;
	json_t *o = json_loads(a, 0, &je);
	if (!o)
		fail_msg("not JSON: %s", a);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "web");
	assert_string_equal(json_string_value(json_object_get(o, "fqdn")),
	                    "web.mesh.internal");
	assert_string_equal(json_string_value(json_object_get(o, "user")), "alice");
	json_t *tags = json_object_get(o, "tags");
	assert_int_equal(json_array_size(tags), 2);
	assert_string_equal(json_string_value(json_array_get(tags, 1)), "tag:db");
	assert_int_equal(json_integer_value(json_object_get(o, "id")), 7);
	assert_string_equal(json_string_value(json_object_get(o, "policy")), "active");
	json_t *reach = json_object_get(o, "reach");
	assert_true(json_is_true(json_object_get(reach, "tcp")));
	assert_true(json_is_false(json_object_get(reach, "udp")));
	json_decref(o);
	node_acl_set(m.acl, false, NULL, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(peer_owner_and_tags),
	    cmocka_unit_test(unknown_address_fails),
	    cmocka_unit_test(port_under_a_policy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
