/* The policy's part of `mesh-proxy status` (node/status.c), over a real
 * local API socket: "policy none" without a policy; "policy active" with
 * the filter's size, the drop counters by reason and the fast-fail count
 * (which move when packets are dropped and connections refused); "DENYING
 * ALL" when the map's filter could not be used; the same in JSON. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "acl_pkt.h"
#include "node/acl.h"
#include "node/api_server.h"
#include "node/status.h"

static struct event_base *base;
static struct api_server *srv;
static struct node_acl *acl;
static char path[108];

static void handler(void *ctx, struct api_conn *c, const char *line)
{
	(void)ctx;
	if (!strcmp(line, "json")) {
		json_t *o = status_policy_json(acl);
		char *s = json_dumps(o, JSON_COMPACT);
		api_conn_printf(c, "%s\n", s);
		free(s);
		json_decref(o);
	} else {
		status_write_policy_text(acl, c);
	}
	api_conn_finish(c);
}

static int setup(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	base = event_base_new();
	acl = node_acl_new(NULL, NULL);
	snprintf(path, sizeof(path), "/tmp/mesh-status-policy-%d.sock", (int)getpid());
	char err[200];
	srv = api_server_new(base, path, handler, NULL, err, sizeof(err));
	if (!srv)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	api_server_free(srv);
	node_acl_free(acl);
	event_base_free(base);
	return 0;
}

static const char *ask(const char *req)
{
	static char out[4096];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	char line[64];
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

static void none_then_active_with_counters(void **state)
{
	(void)state;
	const char *a = ask("text");
	assert_non_null(strstr(a, "policy none (mesh-control has no policy: every peer "
	                          "may reach every exposed port)\n"));
	json_error_t je;
	json_t *o = json_loads(ask("json"), 0, &je);
	assert_non_null(o);
	assert_true(json_is_false(json_object_get(o, "active")));
	json_decref(o);

	struct ctl_port_range ssh[] = {{22, 22}};
	struct ctl_filter_block b = {.ports = ssh, .n_ports = 1};
	assert_true(ctl_ip_parse("100.64.0.2", &b.lo));
	b.hi = b.lo;
	struct ctl_filter f = {.n_blocks = {1, 0, 0}, .blocks = {&b, NULL, NULL}};
	struct ctl_reach r = {.id = 5};
	assert_int_equal(node_acl_set(acl, true, &f, &r, 1), 0);
	struct pkt k;
	pkt_tcp(&k, "100.64.0.3", 1, "100.64.0.1", 22, TCP_SYN);
	assert_false(node_acl_inbound(acl, k.b, k.len, 0)); /* tcp_syn */
	pkt_udp(&k, "100.64.0.2", 1, "100.64.0.1", 53);
	assert_false(node_acl_inbound(acl, k.b, k.len, 0)); /* udp */
	assert_false(node_acl_inbound(acl, k.b, 10, 0));    /* malformed */
	assert_false(node_acl_reach(acl, 5, CTL_FILTER_TCP, 80));
	node_acl_count_fastfail(acl);
	node_acl_count_revoked(acl, 2);
	a = ask("text");
	assert_non_null(strstr(a,
	                       "policy active  inbound filter tcp 1 udp 0 icmp 0 source "
	                       "block(s)  reach 1 peer(s)"));
	assert_non_null(strstr(a,
	                       "dropped tcp_syn 1 tcp_no_conn 0 udp 1 icmp 0 fragment 0 "
	                       "malformed 1 proto 0  fast-fail 1  revoked 2\n"));
	o = json_loads(ask("json"), 0, &je);
	assert_non_null(o);
	assert_true(json_is_true(json_object_get(o, "active")));
	json_t *d = json_object_get(o, "dropped");
	assert_int_equal(json_integer_value(json_object_get(d, "tcp_syn")), 1);
	assert_int_equal(json_integer_value(json_object_get(d, "udp")), 1);
	assert_int_equal(json_integer_value(json_object_get(d, "malformed")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "fast_fail")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "revoked")), 2);
	assert_int_equal(json_integer_value(
	                     json_object_get(json_object_get(o, "filter_blocks"), "tcp")),
	                 1);
	json_decref(o);

	/* a filter that cannot be used: status says the node denies all */
	struct ctl_filter_block two[2] = {b, b};
	f.blocks[CTL_FILTER_TCP] = two;
	f.n_blocks[CTL_FILTER_TCP] = 2;
	assert_int_equal(node_acl_set(acl, true, &f, NULL, 0), -EINVAL);
	a = ask("text");
	assert_non_null(strstr(a, "policy active, DENYING ALL"));
	o = json_loads(ask("json"), 0, &je);
	assert_true(json_is_true(json_object_get(o, "failed_closed")));
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(none_then_active_with_counters),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
