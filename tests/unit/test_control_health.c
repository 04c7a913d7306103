/* mesh-control's health listener (servers/control/health.c), in process
 * with the server fixture and real HTTP over 127.0.0.1:
 *  - /metrics: approved, pending and online nodes as separate gauges from
 *    the server's memory; connections accepted and closed in families of
 *    their own; logouts and reclaimed names exported;
 *  - /readyz: 503 "not ready: store unavailable" once a write of the node
 *    batch fails (a full or read-only disk), without the store's error
 *    text in the answer; 200 again as soon as a later batch write
 *    succeeds, not after a one-row write while the batch still fails;
 *  - the store is asked at most about once a second however often the
 *    listener is scraped, and a store that stops answering turns /readyz
 *    503 within about a second. */
#include "tests/unit/ctl_server_fixture.h"

#include "servers/control/health.h"
#include "servers/control/server_int.h"

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t l = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static struct ctl_health *health_start(struct t *t, uint16_t *port)
{
	char listen[32], err[256] = "";
	*port = free_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%u", *port);
	struct ctl_health *h = ctl_health_new(t->base, listen, t->srv, t->st, err, sizeof err);
	if (!h)
		fail_msg("health: %s", err);
	return h;
}

/* GET path: the status code, the body in body (NUL-terminated). */
static int http_get(struct t *t, uint16_t port, const char *path, char *body, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	char req[128];
	int n = snprintf(req, sizeof req,
	                 "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	static char buf[65536];
	size_t have = 0;
	double end = now_ms() + 3000;
	while (now_ms() < end && have < sizeof buf - 1) {
		pump(t, 5);
		ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, MSG_DONTWAIT);
		if (r > 0)
			have += (size_t)r;
		else if (r == 0)
			break;
	}
	close(fd);
	buf[have] = 0;
	int code = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
		fail_msg("no HTTP answer to %s: %s", path, buf);
	const char *b = strstr(buf, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return code;
}

static void join_node(struct t *t, struct tc *c, const char *host, const char *key,
                      uint32_t want)
{
	struct ctl_register_resp r;
	tc_join(t, c, host, key, &r);
	assert_int_equal(r.status, want);
}

static bool has_line(const char *body, const char *line)
{
	size_t l = strlen(line);
	for (const char *p = strstr(body, line); p; p = strstr(p + 1, line))
		if ((p == body || p[-1] == '\n') && (p[l] == '\n' || !p[l]))
			return true;
	return false;
}

static void metrics_separate_node_gauges(void **state)
{
	struct t *t = *state;
	uint16_t port;
	struct ctl_health *h = health_start(t, &port);
	struct tc *a = tc_new(), *b = tc_new(), *p = tc_new();
	join_node(t, a, "alpha", t->key, CTL_REG_OK);
	join_node(t, b, "bravo", t->key, CTL_REG_OK);
	join_node(t, p, "waiting", NULL, CTL_REG_PENDING);
	tc_close(b);
	pump(t, 100);
	static char body[65536];
	assert_int_equal(http_get(t, port, "/metrics", body, sizeof body), 200);
	assert_true(has_line(body, "meshcontrol_nodes 2"));
	assert_true(has_line(body, "meshcontrol_nodes_pending 1"));
	assert_true(has_line(body, "meshcontrol_nodes_online 1"));
	assert_true(has_line(body, "meshcontrol_connections_accepted_total 3"));
	assert_true(has_line(body, "meshcontrol_logouts_total 0"));
	assert_true(has_line(body, "meshcontrol_names_reclaimed_total 0"));
	assert_true(has_line(body, "meshcontrol_connections_closed_total{reason=\"idle\"} 0"));
	assert_true(has_line(body, "meshcontrol_ready 1"));
	/* one meaning per family: no state label on nodes, no result label
	 * mixing accepted connections with closes */
	assert_null(strstr(body, "meshcontrol_nodes{"));
	assert_null(strstr(body, "meshcontrol_connections_total"));
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 200);
	ctl_health_free(h);
	tc_free(a);
	tc_free(b);
	tc_free(p);
}

static int fail_updates(const char *point, void *arg)
{
	(void)arg;
	return !strcmp(point, "update:before-commit");
}

static void readyz_503_after_a_failed_write(void **state)
{
	struct t *t = *state;
	uint16_t port;
	struct ctl_health *h = health_start(t, &port);
	struct tc *a = tc_new();
	static char body[65536];
	join_node(t, a, "alpha", t->key, CTL_REG_OK);
	pump(t, 100);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 200);
	/* the disk fills up: the node's offline state cannot be written */
	ctl_store_set_fault(t->st, fail_updates, NULL);
	tc_close(a);
	pump(t, 300);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 503);
	assert_non_null(strstr(body, "not ready: store unavailable"));
	assert_null(strstr(body, "fault")); /* the store's text stays in the log */
	assert_int_equal(http_get(t, port, "/metrics", body, sizeof body), 200);
	assert_true(has_line(body, "meshcontrol_ready 0"));
	assert_null(strstr(body, "meshcontrol_store_write_failures_total 0\n"));
	/* the disk has room again: the next write that goes through makes
	 * it ready at once, not 30 s after the failure */
	ctl_store_set_fault(t->st, NULL, NULL);
	join_node(t, a, "alpha", NULL, CTL_REG_OK); /* back: its online write */
	pump(t, 1500);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 200);
	ctl_health_free(h);
	tc_free(a);
}

static int fail_while(const char *point, void *arg)
{
	return *(bool *)arg && !strcmp(point, "update:before-commit");
}

/* A node the store has and the snapshot does not yet (no pump since):
 * its offline state goes to the store in a one-row write. */
static int64_t store_only_node(struct t *t)
{
	struct ctl_store_reg r = {.hostname = "direct",
	                          .auth_secret = t->key,
	                          .now = (int64_t)time(NULL),
	                          .set_online = true};
	struct ctl_node nd;
	memset(r.machine_key, 7, CTL_KEY_LEN);
	memset(r.node_key, 8, CTL_KEY_LEN);
	memset(r.disco_key, 9, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
	return nd.id;
}

/* Only the node batch's own success clears its failure: a one-row write
 * that goes through while the batch keeps failing leaves /readyz 503
 * (it would flap between 200 and 503 otherwise). */
static void readyz_one_row_success_keeps_503(void **state)
{
	struct t *t = *state;
	uint16_t port;
	struct ctl_health *h = health_start(t, &port);
	struct tc *a = tc_new();
	static char body[65536];
	bool fail = true;
	join_node(t, a, "alpha", t->key, CTL_REG_OK);
	pump(t, 100);
	ctl_store_set_fault(t->st, fail_while, &fail);
	tc_close(a); /* its offline state in the batch: it fails */
	pump(t, 300);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 503);
	fail = false; /* the one-row write goes through */
	int64_t id = store_only_node(t);
	srv_wb_offline(t->srv, id);
	struct ctl_node nd;
	assert_int_equal(ctl_store_node_by_id(t->st, id, &nd), 0);
	assert_false(nd.online); /* it did go through */
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	assert_true(st.store_write_fail_age_s >= 0); /* still failed */
	fail = true;
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 503);
	/* the batch goes through: ready */
	fail = false;
	pump(t, 1500);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 200);
	ctl_store_set_fault(t->st, NULL, NULL);
	ctl_health_free(h);
	tc_free(a);
}

struct probe_hook {
	int reads;
	bool fail;
};

static int count_probes(const char *point, void *arg)
{
	struct probe_hook *ph = arg;
	if (strcmp(point, "map_version:read") != 0)
		return 0;
	ph->reads++;
	return ph->fail;
}

/* Twenty scrapes and probes in a burst cost the store at most a couple
 * of one-row reads; a store that stops answering turns /readyz 503 once
 * the cached answer is older than a second. */
static void readyz_probe_cached(void **state)
{
	struct t *t = *state;
	uint16_t port;
	struct ctl_health *h = health_start(t, &port);
	static char body[65536];
	struct probe_hook ph = {0};
	ctl_store_set_fault(t->st, count_probes, &ph);
	double t0 = now_ms();
	for (int i = 0; i < 10; i++) {
		assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 200);
		assert_int_equal(http_get(t, port, "/metrics", body, sizeof body), 200);
	}
	double took = now_ms() - t0;
	print_message("20 requests in %.0f ms: %d store reads\n", took, ph.reads);
	assert_true(ph.reads >= 1);
	/* the fixture's server polls the map version every 50 ms too; one
	 * read per request would be 20 more */
	assert_true(ph.reads <= 3 + (int)(took / 50));
	ph.fail = true;
	pump(t, 1100);
	assert_int_equal(http_get(t, port, "/readyz", body, sizeof body), 503);
	assert_non_null(strstr(body, "not ready: store unavailable"));
	assert_null(strstr(body, "fault"));
	ctl_store_set_fault(t->st, NULL, NULL);
	ctl_health_free(h);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(metrics_separate_node_gauges, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(readyz_503_after_a_failed_write, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(readyz_one_row_success_keeps_503, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(readyz_probe_cached, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
