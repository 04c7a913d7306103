/* netcheck on real loopback sockets: STUN responders in the test (answering
 * with core/stun; one can lie about the mapped port, one can drop
 * everything, one surrounds each answer with garbage, a wrong transaction
 * id and a forged source) and TCP listeners stand in for relays at
 * 127.0.0.1 and 127.0.0.2.
 *
 * Proves: RTTs and the mapped address (the engine's own socket, and the
 * node's socket through send/netcheck_input); mapping_varies false for
 * truthful servers, true when one lies, unknown with one server; a relay
 * whose STUN drops everything is measured over TCP; a relay without a STUN
 * port too; a relay name through evdns (hosts file); no relays: done from
 * the loop with no home; the home relay's hysteresis (live: kept when
 * close, left when it answers 60 ms late; and a table);
 * garbage, wrong txids and wrong sources ignored and counted; netcheck_free
 * mid-run (also with a name lookup in flight) calls no done and leaks
 * nothing. The text and JSON reports: test_netcheck_fmt.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/netcheck/netcheck.h"
#include "core/stun/stun.h"

/* --- in-test STUN responders and TCP listeners ---------------------------- */

enum resp_mode { R_TRUTH, R_LIE, R_DROP, R_HOSTILE, R_SLOW, R_BADMAP };
#define SLOW_MS 60 /* R_SLOW answers this much later */

struct responder {
	int fd, fd2; /* fd2: another port of the same address (forged source) */
	struct event *ev;
	enum resp_mode mode;
	struct event_base *base;
	int requests;
	struct sockaddr_in addr, from;
};

static struct sockaddr_in lo(const char *ip, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static int bound_socket(int type, const char *ip, struct sockaddr_in *out)
{
	int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = lo(ip, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t l = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	if (out)
		*out = a;
	return fd;
}

static void reply(int fd, const struct stun_msg *m, const struct sockaddr_in *to,
                  uint16_t port)
{
	struct stun_addr a = {.family = 4, .port = port};
	memcpy(a.addr, &to->sin_addr, 4);
	uint8_t out[256];
	size_t n = stun_binding_response(out, sizeof out, m, &a, NULL);
	assert_true(n > 0);
	sendto(fd, out, n, 0, (const struct sockaddr *)to, sizeof *to);
}

/* R_BADMAP: answers with the right txid from the right source, but a
 * mapped address that is not usable, each ahead of the true answer. */
static void reply_badmaps(int fd, const struct stun_msg *m, const struct sockaddr_in *to)
{
	struct stun_addr bad[5] = {
	    {.family = 4, .port = 0},                   /* port 0 */
	    {.family = 4, .port = 4000},                /* 0.0.0.0 */
	    {.family = 4, .port = 4000, .addr = {224, 0, 0, 1}}, /* multicast */
	    {.family = 6, .port = 4000, .addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}},
	    {.family = 4, .port = 4000, .addr = {255, 255, 255, 255}},
	};
	memcpy(bad[0].addr, &to->sin_addr, 4);
	for (int i = 0; i < 5; i++) {
		uint8_t out[256];
		size_t n = stun_binding_response(out, sizeof out, m, &bad[i], NULL);
		assert_true(n > 0);
		sendto(fd, out, n, 0, (const struct sockaddr *)to, sizeof *to);
	}
}

/* An answer R_SLOW sends later (all of them fire before done). */
struct later {
	int fd;
	struct stun_msg m;
	struct sockaddr_in to;
	uint16_t port;
};

static void later_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct later *l = arg;
	reply(l->fd, &l->m, &l->to, l->port);
	free(l);
}

static void responder_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct responder *r = arg;
	uint8_t buf[1600];
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	ssize_t n;
	while ((n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) >
	       0) {
		struct stun_msg m;
		if (stun_parse(buf, (size_t)n, &m) < 0 || m.type != STUN_BINDING_REQUEST)
			continue;
		r->requests++;
		r->from = from;
		uint16_t port = ntohs(from.sin_port);
		if (r->mode == R_DROP)
			continue;
		if (r->mode == R_LIE) /* endpoint-dependent mapping */
			port = (uint16_t)(port + 1000);
		if (r->mode == R_HOSTILE) {
			static const uint8_t junk[] = "\x01\x01\x00\x00 not stun at all";
			sendto(fd, junk, sizeof junk - 1, 0, (struct sockaddr *)&from,
			       sizeof from);
			struct stun_msg wrong = m;
			wrong.id[15] ^= 0x5a;
			reply(fd, &wrong, &from, port);
			reply(r->fd2, &m, &from, 9); /* right txid, wrong source */
		}
		if (r->mode == R_BADMAP)
			reply_badmaps(fd, &m, &from);
		if (r->mode == R_SLOW) {
			struct later *l = malloc(sizeof *l);
			assert_non_null(l);
			*l = (struct later){.fd = fd, .m = m, .to = from, .port = port};
			struct timeval tv = {0, SLOW_MS * 1000};
			/* from now, not from the loop's cached time (on a loaded
			 * machine that can be tens of ms old: the answer then
			 * came early and the RTT fell under SLOW_MS) */
			event_base_update_cache_time(r->base);
			event_base_once(r->base, -1, EV_TIMEOUT, later_cb, l, &tv);
		} else {
			reply(fd, &m, &from, port);
		}
		fl = sizeof from;
	}
}

static void responder_start(struct event_base *b, struct responder *r, const char *ip,
                            enum resp_mode mode)
{
	memset(r, 0, sizeof *r);
	r->mode = mode;
	r->base = b;
	r->fd = bound_socket(SOCK_DGRAM, ip, &r->addr);
	r->fd2 = bound_socket(SOCK_DGRAM, ip, NULL);
	r->ev = event_new(b, r->fd, EV_READ | EV_PERSIST, responder_cb, r);
	event_add(r->ev, NULL);
}

static void responder_stop(struct responder *r)
{
	event_free(r->ev);
	close(r->fd);
	close(r->fd2);
}

/* A listening TCP socket: the kernel completes handshakes from its backlog. */
static int tcp_listener(const char *ip, uint16_t *port)
{
	struct sockaddr_in a;
	int fd = bound_socket(SOCK_STREAM, ip, &a);
	assert_int_equal(listen(fd, 16), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* --- running the engine ---------------------------------------------------- */

struct run {
	struct event_base *base;
	int done;
	struct netcheck_report rep; /* a copy */
};

static void done_cb(void *ctx, const struct netcheck_report *r)
{
	struct run *x = ctx;
	x->done++;
	x->rep = *r;
	event_base_loopbreak(x->base);
}

static struct netcheck_relay relay(uint32_t id, const char *region, const char *host,
                                   uint16_t port, uint16_t stun_port)
{
	struct netcheck_relay r = {.id = id, .port = port, .stun_port = stun_port};
	snprintf(r.region, sizeof r.region, "%s", region);
	snprintf(r.name, sizeof r.name, "%s-%u", region, (unsigned)id);
	snprintf(r.host, sizeof r.host, "%s", host);
	return r;
}

/* Runs the loop until done (or max_ms): returns the time it took. */
static uint64_t wait_done(struct run *x, unsigned max_ms)
{
	struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	event_base_loopexit(x->base, &tv);
	event_base_dispatch(x->base);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	int64_t ns =
	    (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
	return (uint64_t)(ns / 1000000);
}

static struct netcheck *start(struct run *x, struct netcheck_config *cfg)
{
	char err[256] = "";
	cfg->base = x->base;
	cfg->done = done_cb;
	cfg->ctx = x;
	struct netcheck *nc = netcheck_start(cfg, err, sizeof err);
	if (!nc)
		fail_msg("netcheck_start: %s", err);
	assert_int_equal(x->done, 0); /* never from start */
	return nc;
}

static uint16_t sin_port(const struct sockaddr_storage *ss)
{
	assert_int_equal(ss->ss_family, AF_INET);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool sin_ip_is(const struct sockaddr_storage *ss, const char *ip)
{
	struct sockaddr_in want = lo(ip, 0);
	return ss->ss_family == AF_INET &&
	       ((const struct sockaddr_in *)ss)->sin_addr.s_addr == want.sin_addr.s_addr;
}

struct fixture {
	struct run x;
	struct responder a, b;
	int ta, tb;
	uint16_t tpa, tpb;
	struct netcheck_relay relays[2];
};

static void fixture_up(struct fixture *f, enum resp_mode ma, enum resp_mode mb)
{
	memset(f, 0, sizeof *f);
	f->x.base = event_base_new();
	responder_start(f->x.base, &f->a, "127.0.0.1", ma);
	responder_start(f->x.base, &f->b, "127.0.0.2", mb);
	f->ta = tcp_listener("127.0.0.1", &f->tpa);
	f->tb = tcp_listener("127.0.0.2", &f->tpb);
	f->relays[0] = relay(1, "a", "127.0.0.1", f->tpa, ntohs(f->a.addr.sin_port));
	f->relays[1] = relay(2, "b", "127.0.0.2", f->tpb, ntohs(f->b.addr.sin_port));
}

static void fixture_down(struct fixture *f)
{
	responder_stop(&f->a);
	responder_stop(&f->b);
	close(f->ta);
	close(f->tb);
	event_base_free(f->x.base);
}

/* --- tests ------------------------------------------------------------------ */

static void two_truthful_servers(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_TRUTH);
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 2, .tcp_always = true};
	struct netcheck *nc = start(&f.x, &cfg);
	uint64_t ms = wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_true(ms < 2000); /* all answered: no need to wait for the timeout */
	const struct netcheck_report *r = &f.x.rep;
	assert_true(r->udp && r->ipv4);
	assert_false(r->ipv6);
	assert_int_equal(f.a.requests, NETCHECK_PROBES);
	assert_int_equal(f.b.requests, NETCHECK_PROBES);
	assert_int_equal(r->n, 2);
	for (int i = 0; i < 2; i++) {
		const struct netcheck_relay_result *x = &r->r[i];
		assert_int_equal(x->id, i + 1);
		assert_true(x->udp_ok && x->stun_rtt_us > 0 && x->stun_rtt_us < 500000);
		assert_true(x->tcp_tried && x->tcp_ok && x->tcp_rtt_us > 0);
		assert_true(x->has_mapped);
		/* The mapped address is the engine's socket as the server saw it. */
		struct responder *resp = i == 0 ? &f.a : &f.b;
		assert_true(sin_ip_is(&x->mapped, i == 0 ? "127.0.0.1" : "127.0.0.2") ||
		            sin_ip_is(&x->mapped, "127.0.0.1"));
		assert_int_equal(sin_port(&x->mapped), ntohs(resp->from.sin_port));
	}
	/* One socket: both servers saw the same port. */
	assert_int_equal(ntohs(f.a.from.sin_port), ntohs(f.b.from.sin_port));
	assert_true(r->has_mapping_varies);
	assert_false(r->mapping_varies);
	assert_int_equal(sin_port(&r->global_v4), ntohs(f.a.from.sin_port));
	assert_true(r->home_id == 1 || r->home_id == 2);
	assert_string_equal(r->home_region, r->home_id == 1 ? "a" : "b");
	assert_int_equal(r->home_latency_us, r->r[r->home_id - 1].stun_rtt_us);
	assert_int_equal(r->ignored_bad + r->ignored_source + r->ignored_txid, 0);
	netcheck_free(nc);
	fixture_down(&f);
}

static void lying_server_means_mapping_varies(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_LIE);
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 2};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_true(f.x.rep.has_mapping_varies);
	assert_true(f.x.rep.mapping_varies);
	assert_int_equal(sin_port(&f.x.rep.r[1].mapped),
	                 (uint16_t)(ntohs(f.b.from.sin_port) + 1000));
	/* Without tcp_always, a relay that answers STUN gets no TCP connect. */
	assert_false(f.x.rep.r[0].tcp_tried);
	netcheck_free(nc);
	fixture_down(&f);
}

static void one_server_leaves_mapping_unknown(void **state)
{
	struct fixture f;
	fixture_up(&f, R_LIE, R_TRUTH);
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 1};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_true(f.x.rep.udp);
	assert_false(f.x.rep.has_mapping_varies);
	assert_false(f.x.rep.mapping_varies);
	netcheck_free(nc);
	fixture_down(&f);
}

/* The node's way: STUN leaves through its socket (send) and the answers
 * come back through netcheck_input. */
struct node_sock {
	int fd;
	struct netcheck *nc;
	int ours, others;
};

static int node_send(void *ctx, const struct sockaddr *to, socklen_t tolen,
                     const uint8_t *buf, size_t len)
{
	struct node_sock *s = ctx;
	return sendto(s->fd, buf, len, 0, to, tolen) < 0 ? -errno : 0;
}

static void node_read(evutil_socket_t fd, short ev, void *arg)
{
	struct node_sock *s = arg;
	uint8_t buf[1600];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	ssize_t n;
	while ((n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl)) >
	       0) {
		if (stun_is_message(buf, (size_t)n) &&
		    netcheck_input(s->nc, buf, (size_t)n, (struct sockaddr *)&from))
			s->ours++;
		else
			s->others++;
		fl = sizeof from;
	}
}

static void node_socket_mode(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_TRUTH);
	struct node_sock s = {0};
	struct sockaddr_in me;
	s.fd = bound_socket(SOCK_DGRAM, "127.0.0.1", &me);
	struct event *ev = event_new(f.x.base, s.fd, EV_READ | EV_PERSIST, node_read, &s);
	event_add(ev, NULL);
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 2, .send = node_send, .send_ctx = &s};
	s.nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_int_equal(s.ours, 2 * NETCHECK_PROBES);
	assert_int_equal(s.others, 0);
	/* The mapped address is exactly the node's socket. */
	const struct netcheck_relay_result *x = &f.x.rep.r[0];
	assert_true(x->has_mapped && sin_ip_is(&x->mapped, "127.0.0.1"));
	assert_int_equal(sin_port(&x->mapped), ntohs(me.sin_port));
	assert_int_equal(sin_port(&f.x.rep.global_v4), ntohs(me.sin_port));
	assert_false(f.x.rep.mapping_varies);
	/* After done, an answer is late: not ours, counted. */
	uint8_t req[64], resp[128], txid[STUN_TXID_LEN] = {1};
	struct stun_msg m;
	size_t n = stun_binding_request(req, sizeof req, txid, NULL);
	assert_int_equal(stun_parse(req, n, &m), 0);
	struct stun_addr a = {.family = 4, .port = 1, .addr = {127, 0, 0, 1}};
	n = stun_binding_response(resp, sizeof resp, &m, &a, NULL);
	uint64_t before = netcheck_report(s.nc)->ignored_txid;
	assert_false(netcheck_input(s.nc, resp, n, (struct sockaddr *)&f.a.addr));
	assert_int_equal(netcheck_report(s.nc)->ignored_txid, before + 1);
	netcheck_free(s.nc);
	event_free(ev);
	close(s.fd);
	fixture_down(&f);
}

static void udp_blocked_uses_tcp(void **state)
{
	struct fixture f;
	fixture_up(&f, R_DROP, R_TRUTH);
	f.relays[1].stun_port = 0; /* and one relay without STUN at all */
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 2, .timeout_ms = 1500};
	struct netcheck *nc = start(&f.x, &cfg);
	uint64_t ms = wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	const struct netcheck_report *r = &f.x.rep;
	assert_int_equal(f.a.requests, NETCHECK_PROBES);
	assert_false(r->udp);
	assert_false(r->r[0].udp_ok);
	assert_true(r->r[0].tcp_ok && r->r[0].tcp_rtt_us > 0);
	assert_true(r->r[1].tcp_ok && !r->r[1].udp_ok);
	assert_int_equal(f.b.requests, 0);
	assert_false(r->has_mapping_varies);
	assert_int_equal(r->global_v4.ss_family, 0);
	/* TCP starts a third of the timeout in (500 ms), then the run ends. */
	if (!(ms >= 450 && ms < 1400))
		fail_msg("took %llu ms", (unsigned long long)ms);
	assert_true(r->home_id == 1 || r->home_id == 2);
	assert_int_equal(r->home_latency_us, r->r[r->home_id - 1].tcp_rtt_us);
	netcheck_free(nc);
	fixture_down(&f);
}

static void nothing_answers(void **state)
{
	struct fixture f;
	fixture_up(&f, R_DROP, R_DROP);
	close(f.ta); /* TCP refused */
	f.ta = socket(AF_INET, SOCK_DGRAM, 0);
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 1, .timeout_ms = 600};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 3000);
	assert_int_equal(f.x.done, 1);
	assert_false(f.x.rep.udp);
	assert_true(f.x.rep.r[0].tcp_tried);
	assert_false(f.x.rep.r[0].tcp_ok);
	assert_int_equal(f.x.rep.home_id, 0);
	netcheck_free(nc);
	fixture_down(&f);
}

static void no_relays(void **state)
{
	struct run x = {.base = event_base_new()};
	struct netcheck_config cfg = {0};
	struct netcheck *nc = start(&x, &cfg);
	uint64_t ms = wait_done(&x, 3000);
	assert_int_equal(x.done, 1);
	assert_true(ms < 500);
	assert_int_equal(x.rep.n, 0);
	assert_int_equal(x.rep.home_id, 0);
	assert_false(x.rep.udp);
	netcheck_free(nc);
	event_base_free(x.base);
}

static void hostile_answers_ignored_and_counted(void **state)
{
	struct fixture f;
	fixture_up(&f, R_HOSTILE, R_TRUTH);
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 1};
	struct netcheck *nc = start(&f.x, &cfg);
	/* Before any probe: a datagram from nowhere, and garbage. */
	uint8_t g[32] = {0};
	assert_false(netcheck_input(nc, g, sizeof g, (struct sockaddr *)&f.b.addr));
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	const struct netcheck_report *r = &f.x.rep;
	assert_true(r->r[0].udp_ok);
	/* The forged answer (mapped port 9) never counted. */
	assert_int_equal(sin_port(&r->r[0].mapped), ntohs(f.a.from.sin_port));
	assert_true(r->ignored_bad >= NETCHECK_PROBES + 1);
	assert_true(r->ignored_txid >= NETCHECK_PROBES);
	assert_true(r->ignored_source >= NETCHECK_PROBES);
	netcheck_free(nc);
	fixture_down(&f);
}

/* Review L5: answers whose mapped address has port 0, is unspecified,
 * multicast, broadcast or of the other family are not the node's address:
 * ignored (counted); the true answer behind them is taken. */
static void unusable_mapped_ignored(void **state)
{
	struct fixture f;
	fixture_up(&f, R_BADMAP, R_TRUTH);
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 1};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	const struct netcheck_report *r = &f.x.rep;
	assert_true(r->r[0].udp_ok);
	assert_int_equal(r->r[0].mapped.ss_family, AF_INET);
	assert_int_equal(sin_port(&r->r[0].mapped), ntohs(f.a.from.sin_port));
	const struct sockaddr_in *m = (const struct sockaddr_in *)&r->r[0].mapped;
	assert_int_equal(m->sin_addr.s_addr, htonl(INADDR_LOOPBACK)); /* loopback kept */
	print_message("%llu bad answers ignored for %d requests\n",
	              (unsigned long long)r->ignored_bad, f.a.requests);
	assert_true(f.a.requests >= 1);
	assert_true(r->ignored_bad >= 5);
	netcheck_free(nc);
	fixture_down(&f);
}

static void unknown_source_counted(void **state)
{
	struct fixture f;
	fixture_up(&f, R_DROP, R_DROP);
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 1, .timeout_ms = 400};
	struct netcheck *nc = start(&f.x, &cfg);
	uint8_t req[64], resp[128], txid[STUN_TXID_LEN] = {7};
	struct stun_msg m;
	size_t n = stun_binding_request(req, sizeof req, txid, NULL);
	assert_int_equal(stun_parse(req, n, &m), 0);
	struct stun_addr a = {.family = 4, .port = 1, .addr = {127, 0, 0, 1}};
	n = stun_binding_response(resp, sizeof resp, &m, &a, NULL);
	struct sockaddr_in nowhere = lo("127.0.0.9", 3478);
	assert_false(netcheck_input(nc, resp, n, (struct sockaddr *)&nowhere));
	assert_int_equal(netcheck_report(nc)->ignored_source, 1);
	/* A request (not an answer), and a response cut short: bad. */
	assert_false(netcheck_input(nc, req, n - 4, (struct sockaddr *)&f.a.addr));
	assert_false(netcheck_input(nc, resp, n - 1, (struct sockaddr *)&f.a.addr));
	assert_int_equal(netcheck_report(nc)->ignored_bad, 2);
	wait_done(&f.x, 3000);
	assert_int_equal(f.x.done, 1);
	netcheck_free(nc);
	fixture_down(&f);
}

/* Loopback relays differ by far less than 10 ms: whichever is preferred
 * stays home. */
static void hysteresis_keeps_home_live(void **state)
{
	for (uint32_t pref = 1; pref <= 2; pref++) {
		struct fixture f;
		fixture_up(&f, R_TRUTH, R_TRUTH);
		struct netcheck_config cfg = {
		    .relays = f.relays, .n_relays = 2, .preferred_id = pref};
		struct netcheck *nc = start(&f.x, &cfg);
		wait_done(&f.x, 5000);
		assert_int_equal(f.x.done, 1);
		assert_int_equal(f.x.rep.home_id, pref);
		netcheck_free(nc);
		fixture_down(&f);
	}
}

/* The home relay answers SLOW_MS late, the other at once: better by more
 * than 10 ms and by more than a third, so the home moves. */
static void hysteresis_leaves_slow_home_live(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_SLOW);
	struct netcheck_config cfg = {
	    .relays = f.relays, .n_relays = 2, .preferred_id = 2};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_true(f.x.rep.r[1].udp_ok);
	assert_true(f.x.rep.r[1].stun_rtt_us >= SLOW_MS * 1000);
	assert_int_equal(f.x.rep.home_id, 1);
	netcheck_free(nc);
	fixture_down(&f);
}

static void set_lat(struct netcheck_report *r, size_t i, uint32_t id, const char *region,
                    long stun_ms, long tcp_ms)
{
	struct netcheck_relay_result *x = &r->r[i];
	memset(x, 0, sizeof *x);
	x->id = id;
	snprintf(x->region, sizeof x->region, "%s", region);
	x->udp_ok = stun_ms >= 0;
	x->stun_rtt_us = stun_ms >= 0 ? (uint32_t)(stun_ms * 1000) : 0;
	x->tcp_ok = tcp_ms >= 0;
	x->tcp_rtt_us = tcp_ms >= 0 ? (uint32_t)(tcp_ms * 1000) : 0;
	if (i >= r->n)
		r->n = i + 1;
}

static uint32_t home_of(long a1, long a2, long b1, uint32_t pref)
{
	static struct netcheck_report r;
	memset(&r, 0, sizeof r);
	set_lat(&r, 0, 1, "a", a1, -1);
	set_lat(&r, 1, 2, "a", a2, -1);
	set_lat(&r, 2, 3, "b", b1, -1);
	netcheck_pick_home(&r, pref);
	return r.home_id;
}

static void hysteresis_table(void **state)
{
	/* No preference: the fastest relay. */
	assert_int_equal(home_of(20, 30, 15, 0), 3);
	assert_int_equal(home_of(20, 30, -1, 0), 1);
	assert_int_equal(home_of(-1, -1, -1, 0), 0);
	/* Home in a (20 ms): b at 15 (5 ms better) or 12 (8 ms) stays a. */
	assert_int_equal(home_of(20, 30, 15, 1), 1);
	assert_int_equal(home_of(20, 30, 12, 1), 1);
	/* b at 5 ms: better by 15 ms and by 3/4: switch. */
	assert_int_equal(home_of(20, 30, 5, 1), 3);
	/* 100 vs 70: 30 ms better but not by a third: stay; 60: switch. */
	assert_int_equal(home_of(100, 300, 70, 1), 1);
	assert_int_equal(home_of(100, 300, 60, 1), 3);
	/* The home relay (2) is slower than its sibling: it stays, no
	 * reconnect within the region for nothing. */
	assert_int_equal(home_of(20, 25, 30, 2), 2);
	/* The home relay is silent, its sibling answers: the sibling. */
	assert_int_equal(home_of(20, -1, 18, 2), 1);
	/* The whole home region is silent: the best elsewhere. */
	assert_int_equal(home_of(-1, -1, 80, 1), 3);
	/* A preferred id not in the map: the best. */
	assert_int_equal(home_of(20, 30, 15, 99), 3);
	/* TCP counts when STUN did not answer. */
	static struct netcheck_report r;
	memset(&r, 0, sizeof r);
	set_lat(&r, 0, 1, "a", -1, 40);
	set_lat(&r, 1, 2, "b", -1, -1);
	netcheck_pick_home(&r, 2);
	assert_int_equal(r.home_id, 1);
	assert_int_equal(r.home_latency_us, 40000);
}

/* A relay given by name, resolved through evdns (from a hosts file, as
 * the test has no DNS server to ask). */
static void name_through_evdns(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_TRUTH);
	char path[] = "/tmp/netcheck-hosts-XXXXXX";
	int hfd = mkstemp(path);
	assert_true(hfd >= 0);
	dprintf(hfd, "127.0.0.2 relay-b.test\n");
	close(hfd);
	struct evdns_base *dns = evdns_base_new(f.x.base, 0);
	assert_int_equal(evdns_base_load_hosts(dns, path), 0);
	unlink(path);
	snprintf(f.relays[1].host, sizeof f.relays[1].host, "relay-b.test");
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 2, .dns = dns};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 5000);
	assert_int_equal(f.x.done, 1);
	assert_true(f.x.rep.r[1].resolved && f.x.rep.r[1].udp_ok);
	assert_int_equal(f.b.requests, NETCHECK_PROBES);
	netcheck_free(nc);
	/* Without a resolver a name is reported unresolved, not an error. */
	struct run y = {.base = f.x.base};
	cfg.dns = NULL;
	nc = start(&y, &cfg);
	wait_done(&y, 5000);
	assert_int_equal(y.done, 1);
	assert_false(y.rep.r[1].resolved);
	assert_true(y.rep.r[0].udp_ok);
	netcheck_free(nc);
	evdns_base_free(dns, 0);
	fixture_down(&f);
}

/* A DNS server that never answers: the lookup stays in flight. */
static void free_mid_run(void **state)
{
	struct fixture f;
	fixture_up(&f, R_DROP, R_DROP);
	struct sockaddr_in ns;
	int nsfd = bound_socket(SOCK_DGRAM, "127.0.0.1", &ns);
	struct evdns_base *dns = evdns_base_new(f.x.base, 0);
	char nsaddr[64];
	snprintf(nsaddr, sizeof nsaddr, "127.0.0.1:%u", ntohs(ns.sin_port));
	assert_int_equal(evdns_base_nameserver_ip_add(dns, nsaddr), 0);
	snprintf(f.relays[1].host, sizeof f.relays[1].host, "never.answers.test");
	struct netcheck_config cfg = {.relays = f.relays, .n_relays = 2, .dns = dns};
	struct netcheck *nc = start(&f.x, &cfg);
	wait_done(&f.x, 250);
	assert_int_equal(f.x.done, 0);
	assert_true(f.a.requests >= 2);
	netcheck_free(nc);
	/* Nothing of it may fire now (ASan would see a use after free; the
	 * cancelled lookup's callback runs and frees its ticket). */
	wait_done(&f.x, 300);
	assert_int_equal(f.x.done, 0);
	evdns_base_free(dns, 0);
	close(nsfd);
	fixture_down(&f);
}

static void done_may_free(void *ctx, const struct netcheck_report *r)
{
	struct netcheck **pnc = ctx;
	netcheck_free(*pnc);
	*pnc = NULL;
}

static void free_from_done(void **state)
{
	struct fixture f;
	fixture_up(&f, R_TRUTH, R_TRUTH);
	struct netcheck *nc;
	char err[128];
	struct netcheck_config cfg = {.base = f.x.base,
	                              .relays = f.relays,
	                              .n_relays = 2,
	                              .done = done_may_free,
	                              .ctx = &nc};
	nc = netcheck_start(&cfg, err, sizeof err);
	assert_non_null(nc);
	wait_done(&f.x, 1500);
	assert_null(nc);
	fixture_down(&f);
}

static void bad_config(void **state)
{
	struct event_base *b = event_base_new();
	static struct netcheck_relay many[NETCHECK_RELAYS_MAX + 1];
	for (size_t i = 0; i < NETCHECK_RELAYS_MAX + 1; i++)
		many[i] = relay((uint32_t)i + 1, "a", "127.0.0.1", 1, 2);
	struct run x = {.base = b};
	char err[128] = "";
	struct netcheck_config cfg = {.base = b,
	                              .relays = many,
	                              .n_relays = NETCHECK_RELAYS_MAX + 1,
	                              .done = done_cb,
	                              .ctx = &x};
	assert_null(netcheck_start(&cfg, err, sizeof err));
	assert_non_null(strstr(err, "at most 256"));
	cfg.n_relays = 1;
	many[0].id = 0;
	assert_null(netcheck_start(&cfg, err, sizeof err));
	assert_non_null(strstr(err, "no id"));
	/* The full cap is fine (nothing listens: TCP refused, STUN silent). */
	many[0].id = 1;
	cfg.n_relays = NETCHECK_RELAYS_MAX;
	cfg.timeout_ms = 300;
	struct netcheck *nc = netcheck_start(&cfg, err, sizeof err);
	assert_non_null(nc);
	wait_done(&x, 3000);
	assert_int_equal(x.done, 1);
	assert_int_equal(x.rep.n, NETCHECK_RELAYS_MAX);
	netcheck_free(nc);
	event_base_free(b);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(two_truthful_servers),
	    cmocka_unit_test(lying_server_means_mapping_varies),
	    cmocka_unit_test(one_server_leaves_mapping_unknown),
	    cmocka_unit_test(node_socket_mode),
	    cmocka_unit_test(udp_blocked_uses_tcp),
	    cmocka_unit_test(nothing_answers),
	    cmocka_unit_test(no_relays),
	    cmocka_unit_test(hostile_answers_ignored_and_counted),
	    cmocka_unit_test(unknown_source_counted),
	    cmocka_unit_test(unusable_mapped_ignored),
	    cmocka_unit_test(hysteresis_keeps_home_live),
	    cmocka_unit_test(hysteresis_leaves_slow_home_live),
	    cmocka_unit_test(hysteresis_table),
	    cmocka_unit_test(name_through_evdns),
	    cmocka_unit_test(free_mid_run),
	    cmocka_unit_test(free_from_done),
	    cmocka_unit_test(bad_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
