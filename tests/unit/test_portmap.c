/* Port mapping (core/portmap): the PCP MAP codec against RFC 6887's layout
 * and hostile answers, the default-gateway parser, and the port mapper on
 * a real event loop against a PCP server on a real UDP socket: a mapping
 * is made (answers that are not ours counted and dropped), renewed at half
 * its lease with the same nonce, deleted on free; a refusal and a router
 * where nothing listens leave no mapping and say why. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "core/portmap/pcp.h"
#include "core/portmap/portmap.h"
#include "core/portmap/portmap_int.h"

static const uint8_t ext_ip[4] = {198, 18, 10, 8};

/* ---- the codec ---- */

static void request_layout(void **state)
{
	uint8_t client[16], out[PCP_MAP_MSG_LEN + 4];
	const uint8_t me[4] = {198, 19, 8, 2};
	pcp_v4_mapped(me, client);
	struct pcp_map m = {.protocol = PCP_PROTO_UDP, .internal_port = 41641,
	                    .external_port = 41641};
	for (int i = 0; i < PCP_NONCE_LEN; i++)
		m.nonce[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(pcp_map_request(out, PCP_MAP_MSG_LEN - 1, 7200, client, &m), 0);
	assert_int_equal(pcp_map_request(out, sizeof(out), 7200, client, &m), 60);
	static const uint8_t want[60] = {
	    2, 1, 0, 0, 0, 0, 0x1c, 0x20,                       /* version, MAP, lifetime */
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 19, 8, 2, /* client IP */
	    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
	    17, 0, 0, 0, 0xa2, 0xa9, 0xa2, 0xa9,                /* UDP, ports */
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, /* no wish: ::ffff:0.0.0.0 */
	};
	static const uint8_t any4[4];
	pcp_v4_mapped(any4, m.external_ip); /* as pm_try_pcp sets it */
	assert_int_equal(pcp_map_request(out, sizeof(out), 7200, client, &m), 60);
	assert_memory_equal(out, want, 60);
}

static uint32_t srv_epoch = 1234;
static const uint8_t *srv_ext_ip = ext_ip;

static size_t good_response(uint8_t *out, size_t cap, const uint8_t nonce[12],
                            uint16_t internal, uint16_t ext, uint32_t lifetime)
{
	struct pcp_map_response r = {.result = PCP_SUCCESS, .lifetime_s = lifetime,
	                             .epoch_s = srv_epoch};
	memcpy(r.map.nonce, nonce, PCP_NONCE_LEN);
	r.map.protocol = PCP_PROTO_UDP;
	r.map.internal_port = internal;
	r.map.external_port = ext;
	pcp_v4_mapped(srv_ext_ip, r.map.external_ip);
	return pcp_map_response_encode(out, cap, &r);
}

static void response_round_trip(void **state)
{
	uint8_t nonce[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, buf[PCP_MAX_MSG + 1];
	size_t n = good_response(buf, sizeof(buf), nonce, 41641, 50000, 3600);
	assert_int_equal(n, 60);
	struct pcp_map_response r;
	assert_int_equal(pcp_map_response_decode(buf, n, &r), PCP_DEC_OK);
	assert_int_equal(r.result, 0);
	assert_int_equal(r.lifetime_s, 3600);
	assert_int_equal(r.epoch_s, 1234);
	assert_memory_equal(r.map.nonce, nonce, 12);
	assert_int_equal(r.map.internal_port, 41641);
	assert_int_equal(r.map.external_port, 50000);
	uint8_t v4[4];
	assert_int_equal(pcp_v4_unmapped(r.map.external_ip, v4), 0);
	assert_memory_equal(v4, ext_ip, 4);
	/* Options after the MAP data are allowed (and not read). */
	memset(buf + n, 0, 40);
	assert_int_equal(pcp_map_response_decode(buf, n + 40, &r), PCP_DEC_OK);
}

static void hostile_responses(void **state)
{
	uint8_t nonce[12] = {0}, buf[PCP_MAX_MSG + 8];
	struct pcp_map_response r;
	size_t n = good_response(buf, sizeof(buf), nonce, 1, 2, 3);
	/* Every truncation is refused, never read past. */
	for (size_t k = 0; k < n; k++)
		assert_int_not_equal(pcp_map_response_decode(buf, k, &r), PCP_DEC_OK);
	assert_int_equal(pcp_map_response_decode(buf, 23, &r), PCP_DEC_SHORT);
	assert_int_equal(pcp_map_response_decode(buf, 59, &r), PCP_DEC_SHORT);
	assert_int_equal(pcp_map_response_decode(buf, 0, &r), PCP_DEC_SHORT);
	/* Longer than any PCP message. */
	memset(buf + n, 0, sizeof(buf) - n);
	assert_int_equal(pcp_map_response_decode(buf, PCP_MAX_MSG + 1, &r), PCP_DEC_SHORT);
	/* A NAT-PMP server's answer (version 0), or another version. */
	buf[0] = 0;
	assert_int_equal(pcp_map_response_decode(buf, 8, &r), PCP_DEC_VERSION);
	buf[0] = 1;
	assert_int_equal(pcp_map_response_decode(buf, n, &r), PCP_DEC_VERSION);
	buf[0] = 2;
	/* Our own request reflected back (R bit clear). */
	buf[1] = PCP_OP_MAP;
	assert_int_equal(pcp_map_response_decode(buf, n, &r), PCP_DEC_NOT_RESP);
	/* An answer to PEER (opcode 2), or ANNOUNCE (0). */
	buf[1] = PCP_R_BIT | 2;
	assert_int_equal(pcp_map_response_decode(buf, n, &r), PCP_DEC_OPCODE);
	buf[1] = PCP_R_BIT | 0;
	assert_int_equal(pcp_map_response_decode(buf, n, &r), PCP_DEC_OPCODE);
	buf[1] = PCP_R_BIT | PCP_OP_MAP;
	/* An error answer needs only the header, and says which error. */
	buf[3] = PCP_NOT_AUTHORIZED;
	assert_int_equal(pcp_map_response_decode(buf, 24, &r), PCP_DEC_ERROR_RESULT);
	assert_int_equal(r.result, PCP_NOT_AUTHORIZED);
	assert_string_equal(pcp_result_name(r.result), "NOT_AUTHORIZED");
	assert_string_equal(pcp_result_name(200), "unknown");
	/* Not IPv4-mapped: refused by pcp_v4_unmapped. */
	uint8_t six[16] = {0x20, 0x01, 0x0d, 0xb8}, v4[4];
	assert_int_equal(pcp_v4_unmapped(six, v4), -1);
}

static void default_gateway_from_routes(void **state)
{
	static const char routes[] =
	    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	    "eth1\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
	    "eth0\t00000000\t010813C6\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
	    "eth0\t000813C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
	struct in_addr gw;
	char s[INET_ADDRSTRLEN];
	assert_int_equal(pm_parse_routes(routes, &gw), 0);
	assert_string_equal(inet_ntop(AF_INET, &gw, s, sizeof(s)), "198.19.8.1");
	/* No default route, a default route without a gateway, garbage. */
	static const char none[] =
	    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
	    "eth0\t000813C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
	    "eth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n"
	    "eth0\tzz\n\n\t\n";
	assert_int_equal(pm_parse_routes(none, &gw), -ENOENT);
	assert_int_equal(pm_parse_routes("", &gw), -ENOENT);
	assert_int_equal(pm_parse_routes("header only", &gw), -ENOENT);
}

/* ---- the port mapper against a PCP server on a real socket ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum srv_mode {
	SRV_GRANT,
	SRV_REFUSE,
	SRV_DROP_RENEWAL, /* no answer to the first renewal (3 sends) */
	SRV_RESTART,      /* the epoch goes back at the first renewal */
};

struct srv {
	struct event_base *base;
	int fd;
	uint16_t port;
	enum srv_mode mode;
	uint32_t lease;
	int requests;
	uint8_t first_nonce[12];
	bool renewal_same_nonce;
	uint16_t renewal_suggested;
	int changes;
	int deletes;
	int requests_dropped;
	time_t started_s;
	int not_v4_wish; /* requests whose suggested address was not IPv4-mapped */
};

static void srv_read(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	uint8_t req[200], out[PCP_MAP_MSG_LEN];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(fd, req, sizeof(req), 0, (struct sockaddr *)&from, &fl);
	if (n != PCP_MAP_MSG_LEN || req[0] != 2 || req[1] != PCP_OP_MAP)
		return;
	const uint8_t *nonce = req + 24;
	uint16_t internal = (uint16_t)(req[24 + 16] << 8 | req[24 + 17]);
	uint16_t suggested = (uint16_t)(req[24 + 18] << 8 | req[24 + 19]);
	/* RFC 6887 sections 5 and 11.1: an IPv4 mapping suggests an
	 * IPv4-mapped address (::ffff:0.0.0.0 for no wish); a strict server
	 * refuses anything else. */
	static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(req + 24 + 20, v4_prefix, 12) != 0) {
		s->not_v4_wish++;
		good_response(out, sizeof(out), nonce, internal, 0, 0);
		out[3] = PCP_MALFORMED_REQUEST;
		sendto(fd, out, PCP_MAP_MSG_LEN, 0, (struct sockaddr *)&from, fl);
		return;
	}
	if (req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] == 0) {
		s->deletes++;
		return;
	}
	s->requests++;
	if (s->mode == SRV_DROP_RENEWAL && s->requests >= 2 && s->requests <= 4) {
		/* the renewal and both its retransmissions */
		s->requests_dropped += 1;
		return;
	}
	/* The epoch counts seconds since the "router" started. */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (s->requests == 1)
		s->started_s = now.tv_sec;
	srv_epoch = s->mode == SRV_RESTART && s->requests >= 2
	                ? 3
	                : (uint32_t)(100000 + now.tv_sec - s->started_s);
	if (s->requests == 1) {
		memcpy(s->first_nonce, nonce, 12);
	} else {
		s->renewal_same_nonce = memcmp(s->first_nonce, nonce, 12) == 0;
		s->renewal_suggested = suggested;
	}
	if (s->mode == SRV_REFUSE) {
		size_t k = good_response(out, sizeof(out), nonce, internal, 0, 0);
		out[3] = PCP_NOT_AUTHORIZED;
		sendto(fd, out, 24, 0, (struct sockaddr *)&from, fl);
		(void)k;
		return;
	}
	/* First junk, an answer for another nonce and one for another port:
	 * each is counted and dropped; then the real answer. */
	static const uint8_t junk[7] = {2, 0x81, 0, 0, 0, 0, 1};
	sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&from, fl);
	uint8_t other[12];
	memcpy(other, nonce, 12);
	other[0] ^= 1;
	size_t k = good_response(out, sizeof(out), other, internal, 50000, s->lease);
	sendto(fd, out, k, 0, (struct sockaddr *)&from, fl);
	k = good_response(out, sizeof(out), nonce, (uint16_t)(internal + 1), 50000, s->lease);
	sendto(fd, out, k, 0, (struct sockaddr *)&from, fl);
	k = good_response(out, sizeof(out), nonce, internal, 50000, s->lease);
	sendto(fd, out, k, 0, (struct sockaddr *)&from, fl);
}

static int srv_open(struct srv *s)
{
	s->fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(s->fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	return s->fd;
}

static void on_change(void *ctx)
{
	struct srv *s = ctx;
	s->changes++;
	event_base_loopbreak(s->base);
}

static void run_for(struct event_base *base, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static struct portmap *pm_for(struct srv *s, uint32_t lease, uint16_t port)
{
	struct portmap_config c = {
	    .base = s->base,
	    .port = port,
	    .on_change = on_change,
	    .ctx = s,
	    .lease_s = lease,
	    .server_port = s->port,
	    .no_pmp = true,
	    .no_upnp = true,
	};
	c.gateway.s_addr = htonl(INADDR_LOOPBACK);
	char err[160];
	struct portmap *pm = portmap_new(&c, err, sizeof(err));
	assert_non_null(pm);
	return pm;
}

static void maps_renews_deletes(void **state)
{
	struct srv s = {.base = event_base_new(), .mode = SRV_GRANT, .lease = 4};
	srv_open(&s);
	struct event *ev = event_new(s.base, s.fd, EV_READ | EV_PERSIST, srv_read, &s);
	event_add(ev, NULL);
	struct portmap *pm = pm_for(&s, 4, 41641);
	struct portmap_status st;
	portmap_get_status(pm, &st);
	assert_int_equal(st.proto, PM_NONE);
	run_for(s.base, 3000); /* on_change breaks out */
	assert_int_equal(s.changes, 1);
	struct sockaddr_storage ss;
	assert_true(portmap_endpoint(pm, &ss));
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	assert_int_equal(ntohs(sin->sin_port), 50000);
	assert_memory_equal(&sin->sin_addr, ext_ip, 4);
	portmap_get_status(pm, &st);
	assert_int_equal(st.proto, PM_PCP);
	assert_int_equal(st.lease_s, 4);
	assert_int_equal(s.not_v4_wish, 0);
	assert_int_equal(st.bad_replies, 3);
	assert_string_equal(st.gateway, "127.0.0.1");
	char d[200];
	portmap_describe(&st, d, sizeof(d));
	assert_string_equal(d, "pcp 198.18.10.8:50000, lease 4s");
	/* Renewed at half the lease: same nonce, asking for the port we have;
	 * nothing changed, so no on_change. */
	run_for(s.base, 2600);
	assert_true(s.requests >= 2);
	assert_int_equal(s.not_v4_wish, 0);
	assert_true(s.renewal_same_nonce);
	assert_int_equal(s.renewal_suggested, 50000);
	portmap_get_status(pm, &st);
	assert_true(st.renewed >= 1);
	assert_int_equal(s.changes, 1);
	/* Freed: a delete (lifetime 0, the same nonce) reaches the server. */
	event_del(ev);
	portmap_free(pm);
	uint8_t buf[200];
	bool got_delete = false;
	struct pollfd pfd = {.fd = s.fd, .events = POLLIN};
	while (poll(&pfd, 1, 0) == 1) {
		ssize_t n = recv(s.fd, buf, sizeof(buf), 0);
		if (n == PCP_MAP_MSG_LEN && buf[4] == 0 && buf[5] == 0 && buf[6] == 0 &&
		    buf[7] == 0 && memcmp(buf + 24, s.first_nonce, 12) == 0)
			got_delete = true;
	}
	assert_true(got_delete);
	event_free(ev);
	close(s.fd);
	event_base_free(s.base);
}

static void refused_says_why(void **state)
{
	struct srv s = {.base = event_base_new(), .mode = SRV_REFUSE};
	srv_open(&s);
	struct event *ev = event_new(s.base, s.fd, EV_READ | EV_PERSIST, srv_read, &s);
	event_add(ev, NULL);
	struct portmap *pm = pm_for(&s, 60, 41641);
	struct portmap_status st;
	for (int i = 0; i < 30; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures)
			break;
	}
	assert_int_equal(st.failures, 1);
	assert_int_equal(st.proto, PM_NONE);
	assert_non_null(strstr(st.last_error, "NOT_AUTHORIZED"));
	char d[200];
	portmap_describe(&st, d, sizeof(d));
	assert_string_equal(d, "none (PCP: the router refused: NOT_AUTHORIZED)");
	assert_int_equal(s.changes, 0);
	portmap_free(pm); /* nothing to delete */
	event_free(ev);
	close(s.fd);
	event_base_free(s.base);
}

static void nothing_listens(void **state)
{
	struct srv s = {.base = event_base_new()};
	srv_open(&s);
	close(s.fd); /* the port is now closed: ICMP port unreachable */
	struct portmap *pm = pm_for(&s, 60, 41641);
	struct portmap_status st;
	for (int i = 0; i < 30; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures)
			break;
	}
	assert_int_equal(st.failures, 1);
	assert_non_null(strstr(st.last_error, "nothing listens"));
	portmap_free(pm);
	event_base_free(s.base);
}

/* Freed while a worker waits for a router that never answers: the free
 * waits for the worker (bounded) and returns. */
static void free_while_probing(void **state)
{
	struct srv s = {.base = event_base_new()};
	srv_open(&s); /* bound, never read: no answer */
	struct portmap *pm = pm_for(&s, 60, 41641);
	run_for(s.base, 50);
	struct portmap_status st;
	portmap_get_status(pm, &st);
	assert_true(st.probing);
	portmap_free(pm);
	close(s.fd);
	event_base_free(s.base);
}

static void srv_start(struct srv *s, struct event **ev)
{
	srv_open(s);
	*ev = event_new(s->base, s->fd, EV_READ | EV_PERSIST, srv_read, s);
	event_add(*ev, NULL);
}

static void srv_stop(struct srv *s, struct event *ev)
{
	event_free(ev);
	close(s->fd);
	event_base_free(s->base);
}

/* One renewal goes unanswered: the mapping is kept (still advertised, no
 * on_change), the renewal is tried again with the same nonce before the
 * lease ends, and the retry renews it. */
static void renewal_failure_keeps_mapping(void **state)
{
	struct srv s = {.base = event_base_new(), .mode = SRV_DROP_RENEWAL, .lease = 10};
	struct event *ev;
	srv_start(&s, &ev);
	struct portmap *pm = pm_for(&s, 10, 41641);
	run_for(s.base, 2000);
	assert_int_equal(s.changes, 1);
	/* Renewal at 5 s, unanswered until 6.75 s; the retry 2 s later. */
	struct portmap_status st;
	struct sockaddr_storage ss;
	int64_t t0 = mono_ms();
	while (mono_ms() - t0 < 12000) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures)
			break;
	}
	assert_int_equal(st.failures, 1);
	assert_int_equal(s.requests_dropped, 3);
	assert_int_equal(st.proto, PM_PCP);
	assert_true(portmap_endpoint(pm, &ss));
	assert_int_equal(s.changes, 1);
	t0 = mono_ms();
	while (!st.renewed && mono_ms() - t0 < 5000) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
	}
	assert_int_equal(st.renewed, 1);
	assert_true(s.renewal_same_nonce);
	assert_int_equal(s.renewal_suggested, 50000);
	assert_int_equal(s.changes, 1);
	assert_true(portmap_endpoint(pm, &ss));
	portmap_free(pm);
	srv_stop(&s, ev);
}

/* The router's epoch goes back at a renewal: it restarted and lost its
 * mappings; the answer made ours again, and it is counted as a new
 * mapping, not a renewal. */
static void router_restart_seen_in_epoch(void **state)
{
	struct srv s = {.base = event_base_new(), .mode = SRV_RESTART, .lease = 4};
	struct event *ev;
	srv_start(&s, &ev);
	struct portmap *pm = pm_for(&s, 4, 41641);
	run_for(s.base, 2000);
	assert_int_equal(s.changes, 1);
	struct portmap_status st;
	for (int i = 0; i < 50; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.mapped + st.renewed >= 2)
			break;
	}
	assert_true(s.requests >= 2);
	assert_int_equal(st.mapped, 2);
	assert_int_equal(st.renewed, 0);
	portmap_free(pm);
	srv_stop(&s, ev);
}

/* Addresses that are not public are not advertised; 198.18.0.0/15 (the
 * lab's Internet) is. */
static void public_addresses(void **state)
{
	static const uint8_t no[][4] = {{0, 0, 0, 0},       {100, 64, 0, 1},  {100, 127, 255, 254},
	                                {127, 0, 0, 1},     {169, 254, 3, 4}, {224, 0, 0, 1},
	                                {255, 255, 255, 255}};
	static const uint8_t yes[][4] = {{198, 18, 10, 8}, {198, 19, 255, 1}, {100, 128, 0, 1},
	                                 {100, 63, 255, 255}, {1, 1, 1, 1}};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(pm_addr_public(no[i]));
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(pm_addr_public(yes[i]));
}

/* A router behind a carrier-grade NAT grants 100.64.x.y: no mapping is
 * advertised, the status says why, and the mapping is deleted. */
static void cgnat_address_not_advertised(void **state)
{
	static const uint8_t cgnat[4] = {100, 64, 7, 9};
	struct srv s = {.base = event_base_new(), .mode = SRV_GRANT, .lease = 60};
	struct event *ev;
	srv_start(&s, &ev);
	srv_ext_ip = cgnat;
	struct portmap *pm = pm_for(&s, 60, 41641);
	struct portmap_status st;
	for (int i = 0; i < 30; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures || st.mapped)
			break;
	}
	srv_ext_ip = ext_ip;
	assert_int_equal(st.mapped, 0);
	assert_int_equal(st.proto, PM_NONE);
	assert_int_equal(s.changes, 0);
	assert_non_null(strstr(st.last_error, "100.64.7.9 is not public"));
	run_for(s.base, 100);
	assert_int_equal(s.deletes, 1);
	portmap_free(pm);
	srv_stop(&s, ev);
}

static void gateway_urls(void **state)
{
	assert_true(pm_url_on_gateway("http://198.19.8.1:5000/rootDesc.xml", "198.19.8.1"));
	assert_true(pm_url_on_gateway("http://198.19.8.1/ctl", "198.19.8.1"));
	assert_false(pm_url_on_gateway("http://198.19.8.10:5000/d.xml", "198.19.8.1"));
	assert_false(pm_url_on_gateway("http://198.19.8.2:5000/d.xml", "198.19.8.1"));
	assert_false(pm_url_on_gateway("https://198.19.8.1/d.xml", "198.19.8.1"));
	assert_false(pm_url_on_gateway("http://198.19.8.1@198.19.8.9/", "198.19.8.1"));
	assert_false(pm_url_on_gateway(NULL, "198.19.8.1"));
	assert_false(pm_url_on_gateway("http://198.19.8.1/", ""));
}

/* ---- a UPnP "gateway" that answers one byte at a time ---- */

struct drip {
	struct event_base *base;
	int lfd;
	uint16_t port;
	int conns[8];
	int nconns;
	struct event *accept_ev, *tick;
};

static void drip_accept(evutil_socket_t fd, short what, void *arg)
{
	struct drip *d = arg;
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		return;
	if (d->nconns == 8) {
		close(c);
		return;
	}
	d->conns[d->nconns++] = c;
	static const char head[] = "HTTP/1.1 200 OK\r\n";
	(void)!write(c, head, sizeof(head) - 1);
}

static void drip_tick(evutil_socket_t fd, short what, void *arg)
{
	struct drip *d = arg;
	for (int i = 0; i < d->nconns; i++)
		(void)!send(d->conns[i], "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void drip_open(struct drip *d, struct event_base *base)
{
	memset(d, 0, sizeof(*d));
	d->base = base;
	d->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(d->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(d->lfd, 8), 0);
	assert_int_equal(getsockname(d->lfd, (struct sockaddr *)&a, &al), 0);
	d->port = ntohs(a.sin_port);
	d->accept_ev = event_new(base, d->lfd, EV_READ | EV_PERSIST, drip_accept, d);
	event_add(d->accept_ev, NULL);
	d->tick = event_new(base, -1, EV_PERSIST, drip_tick, d);
	struct timeval tv = {0, 300000}; /* well inside miniupnpc's 5 s per read */
	event_add(d->tick, &tv);
}

static void drip_close(struct drip *d)
{
	event_free(d->accept_ev);
	event_free(d->tick);
	for (int i = 0; i < d->nconns; i++)
		close(d->conns[i]);
	close(d->lfd);
}

static struct portmap *pm_upnp_for(struct srv *s, const char *url, uint32_t deadline_ms)
{
	struct portmap_config c = {
	    .base = s->base,
	    .port = 41641,
	    .on_change = on_change,
	    .ctx = s,
	    .no_pcp = true,
	    .no_pmp = true,
	    .upnp_deadline_ms = deadline_ms,
	    .upnp_desc_url = url,
	};
	c.gateway.s_addr = htonl(INADDR_LOOPBACK);
	char err[160];
	struct portmap *pm = portmap_new(&c, err, sizeof(err));
	assert_non_null(pm);
	return pm;
}


/* The gateway's IGD trickles its description a byte at a time (each read
 * well inside miniupnpc's per-read timeout): the UPnP attempt ends at its
 * deadline, the port mapper says why and keeps probing. */
static void upnp_trickle_ends_at_deadline(void **state)
{
	struct srv s = {.base = event_base_new()};
	struct drip d;
	drip_open(&d, s.base);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/rootDesc.xml", d.port);
	int64_t t0 = mono_ms();
	struct portmap *pm = pm_upnp_for(&s, url, 1500);
	struct portmap_status st;
	for (int i = 0; i < 60; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures)
			break;
	}
	assert_int_equal(st.failures, 1);
	assert_true(mono_ms() - t0 < 3000);
	assert_true(d.nconns >= 1); /* it did talk to the trickling IGD */
	assert_false(st.probing);
	assert_non_null(strstr(st.last_error, "did not finish answering within 1500 ms"));
	portmap_free(pm);
	drip_close(&d);
	event_base_free(s.base);
}

/* Freed while the worker is stuck on that IGD (its own deadline far
 * away): the free returns within PM_EXIT_WAIT_MS and a little. */
static void free_while_upnp_trickles(void **state)
{
	struct srv s = {.base = event_base_new()};
	struct drip d;
	drip_open(&d, s.base);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/rootDesc.xml", d.port);
	struct portmap *pm = pm_upnp_for(&s, url, 60000);
	run_for(s.base, 500);
	assert_true(d.nconns >= 1);
	struct portmap_status st;
	portmap_get_status(pm, &st);
	assert_true(st.probing);
	int64_t t0 = mono_ms();
	portmap_free(pm);
	int64_t took = mono_ms() - t0;
	assert_true(took >= PM_EXIT_WAIT_MS - 100);
	assert_true(took < PM_EXIT_WAIT_MS + 500);
	drip_close(&d); /* the child sees its connection close and ends */
	event_base_free(s.base);
}

/* A description URL on another host than the gateway is never fetched. */
static void upnp_only_from_gateway(void **state)
{
	struct srv s = {.base = event_base_new()};
	struct drip d;
	drip_open(&d, s.base);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.2:%u/rootDesc.xml", d.port);
	struct portmap *pm = pm_upnp_for(&s, url, 1500);
	struct portmap_status st;
	for (int i = 0; i < 30; i++) {
		run_for(s.base, 100);
		portmap_get_status(pm, &st);
		if (st.failures)
			break;
	}
	assert_int_equal(st.failures, 1);
	assert_int_equal(d.nconns, 0);
	assert_non_null(strstr(st.last_error, "not on the gateway"));
	portmap_free(pm);
	drip_close(&d);
	event_base_free(s.base);
}

/* ---- a UPnP IGD on the "gateway": description and SOAP over real HTTP ---- */

struct igd_conn {
	int fd;
	struct event *ev;
	char buf[8192];
	size_t len;
	struct igd *igd;
};

struct igd {
	struct event_base *base;
	int lfd;
	uint16_t port;
	struct event *accept_ev;
	int desc_gets, ext_calls, adds, deletes;
	bool refuse_adds; /* AddPortMapping answers error 718 */
	char add_lease[16];
	struct igd_conn *conns[32];
	int nconns;
};

static const char igd_desc[] =
    "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\">"
    "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>"
    "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>"
    "<serviceList><service><serviceType>urn:schemas-upnp-org:service:"
    "WANCommonInterfaceConfig:1</serviceType><controlURL>/cic</controlURL>"
    "<eventSubURL>/e</eventSubURL><SCPDURL>/s.xml</SCPDURL></service></serviceList>"
    "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1"
    "</deviceType><serviceList><service><serviceType>urn:schemas-upnp-org:service:"
    "WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL>"
    "<eventSubURL>/e</eventSubURL><SCPDURL>/s.xml</SCPDURL></service></serviceList>"
    "</device></deviceList></device></deviceList></device></root>";

static void igd_reply(struct igd_conn *c, const char *body)
{
	char out[4096];
	int n = snprintf(out, sizeof(out),
	                 "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n%s",
	                 strlen(body), body);
	(void)!write(c->fd, out, (size_t)n);
}

static void igd_conn_free(struct igd_conn *c)
{
	event_free(c->ev);
	close(c->fd);
	c->fd = -1;
}

static void igd_read(evutil_socket_t fd, short what, void *arg)
{
	struct igd_conn *c = arg;
	struct igd *g = c->igd;
	ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n <= 0) {
		igd_conn_free(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = 0;
	char *end = strstr(c->buf, "\r\n\r\n");
	if (!end)
		return;
	const char *cl = strcasestr(c->buf, "Content-Length:");
	size_t body = cl && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
	if (c->len < (size_t)(end + 4 - c->buf) + body)
		return;
	static const char env_head[] =
	    "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/"
	    "envelope/\"><s:Body>";
	static const char env_tail[] = "</s:Body></s:Envelope>";
	char resp[2048];
	if (strncmp(c->buf, "GET ", 4) == 0) {
		g->desc_gets++;
		igd_reply(c, igd_desc);
	} else if (strstr(c->buf, "#GetExternalIPAddress")) {
		g->ext_calls++;
		snprintf(resp, sizeof(resp),
		         "%s<u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:"
		         "WANIPConnection:1\"><NewExternalIPAddress>198.18.10.8</NewExternalIPAddress>"
		         "</u:GetExternalIPAddressResponse>%s",
		         env_head, env_tail);
		igd_reply(c, resp);
	} else if (strstr(c->buf, "#AddPortMapping")) {
		g->adds++;
		const char *l = strstr(c->buf, "<NewLeaseDuration>");
		if (l)
			sscanf(l + 18, "%15[0-9]", g->add_lease);
		if (g->refuse_adds)
			snprintf(resp, sizeof(resp),
			         "%s<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError"
			         "</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">"
			         "<errorCode>718</errorCode><errorDescription>ConflictInMappingEntry"
			         "</errorDescription></UPnPError></detail></s:Fault>%s",
			         env_head, env_tail);
		else
			snprintf(resp, sizeof(resp),
			         "%s<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:"
			         "WANIPConnection:1\"/>%s",
			         env_head, env_tail);
		igd_reply(c, resp);
	} else if (strstr(c->buf, "#DeletePortMapping")) {
		g->deletes++;
		snprintf(resp, sizeof(resp),
		         "%s<u:DeletePortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:"
		         "WANIPConnection:1\"/>%s",
		         env_head, env_tail);
		igd_reply(c, resp);
	} else {
		igd_reply(c, "");
	}
	igd_conn_free(c);
}

static void igd_accept(evutil_socket_t fd, short what, void *arg)
{
	struct igd *g = arg;
	int cfd = accept(fd, NULL, NULL);
	if (cfd < 0)
		return;
	if (g->nconns == 32) {
		close(cfd);
		return;
	}
	struct igd_conn *c = calloc(1, sizeof(*c));
	c->fd = cfd;
	c->igd = g;
	c->ev = event_new(g->base, cfd, EV_READ | EV_PERSIST, igd_read, c);
	event_add(c->ev, NULL);
	g->conns[g->nconns++] = c;
}

static void igd_open(struct igd *g, struct event_base *base)
{
	memset(g, 0, sizeof(*g));
	g->base = base;
	g->lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(g->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(g->lfd, 16), 0);
	assert_int_equal(getsockname(g->lfd, (struct sockaddr *)&a, &al), 0);
	g->port = ntohs(a.sin_port);
	g->accept_ev = event_new(base, g->lfd, EV_READ | EV_PERSIST, igd_accept, g);
	event_add(g->accept_ev, NULL);
}

static void igd_close(struct igd *g)
{
	event_free(g->accept_ev);
	for (int i = 0; i < g->nconns; i++) {
		if (g->conns[i]->fd >= 0)
			igd_conn_free(g->conns[i]);
		free(g->conns[i]);
	}
	close(g->lfd);
}

/* The run of a test's event loop while a portmap worker (and its UPnP
 * child) talks to the IGD, until cond or ms. */
#define RUN_UNTIL(base, cond, ms)                                                  \
	do {                                                                       \
		int64_t t0_ = mono_ms();                                           \
		while (!(cond) && mono_ms() - t0_ < (ms))                          \
			run_for((base), 50);                                       \
	} while (0)

/* UPnP end to end against the gateway's IGD: mapped with a finite lease
 * on the stored control URL; the renewal reuses that URL (no second
 * description fetch); when the IGD then refuses and PCP answers, the new
 * PCP mapping replaces the UPnP one, which is deleted at the IGD: one
 * mapping left. */
static void upnp_maps_renews_then_pcp_replaces_it(void **state)
{
	struct srv s = {.base = event_base_new(), .mode = SRV_GRANT, .lease = 60};
	struct igd g;
	igd_open(&g, s.base);
	srv_open(&s); /* PCP: bound but not read yet (no answer) */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/rootDesc.xml", g.port);
	struct portmap_config c = {
	    .base = s.base,
	    .port = 41641,
	    .on_change = on_change,
	    .ctx = &s,
	    .lease_s = 4,
	    .server_port = s.port,
	    .no_pmp = true,
	    .upnp_deadline_ms = 5000,
	    .upnp_desc_url = url,
	};
	c.gateway.s_addr = htonl(INADDR_LOOPBACK);
	char err[160];
	struct portmap *pm = portmap_new(&c, err, sizeof(err));
	assert_non_null(pm);
	struct portmap_status st;
	RUN_UNTIL(s.base, s.changes >= 1, 8000);
	portmap_get_status(pm, &st);
	assert_int_equal(st.proto, PM_UPNP);
	assert_int_equal(g.desc_gets, 1);
	assert_string_equal(g.add_lease, "4");
	/* Renewed at 2 s, UPnP first, on the stored control URL. */
	RUN_UNTIL(s.base, (portmap_get_status(pm, &st), st.renewed >= 1), 6000);
	assert_int_equal(st.renewed, 1);
	assert_int_equal(st.proto, PM_UPNP);
	assert_int_equal(g.desc_gets, 1);
	assert_true(g.adds >= 2);
	/* Now the IGD refuses and a PCP server answers. */
	g.refuse_adds = true;
	struct event *ev = event_new(s.base, s.fd, EV_READ | EV_PERSIST, srv_read, &s);
	event_add(ev, NULL);
	RUN_UNTIL(s.base, s.changes >= 2, 8000);
	portmap_get_status(pm, &st);
	assert_int_equal(st.proto, PM_PCP);
	assert_int_equal(g.deletes, 1); /* the UPnP mapping, deleted */
	portmap_free(pm);
	event_free(ev);
	igd_close(&g);
	close(s.fd);
	event_base_free(s.base);
}

static void send_from(const char *src, uint16_t port, const uint8_t *msg, size_t len)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, src, &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(sendto(fd, msg, len, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)len);
	close(fd);
}

/* The router announces a restart (a PCP ANNOUNCE to port 5350): the
 * mapping is made again at once. The same datagram from another host is
 * counted and changes nothing. */
static void router_announce_maps_again(void **state)
{
	int probe = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	assert_int_equal(bind(probe, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(probe, (struct sockaddr *)&a, &al), 0);
	uint16_t ann_port = ntohs(a.sin_port);
	close(probe);

	struct srv s = {.base = event_base_new(), .mode = SRV_GRANT, .lease = 60};
	struct event *ev;
	srv_start(&s, &ev);
	struct portmap_config c = {
	    .base = s.base,
	    .port = 41641,
	    .on_change = on_change,
	    .ctx = &s,
	    .lease_s = 60,
	    .server_port = s.port,
	    .no_pmp = true,
	    .no_upnp = true,
	    .announce_port = ann_port,
	};
	c.gateway.s_addr = htonl(INADDR_LOOPBACK);
	char err[160];
	struct portmap *pm = portmap_new(&c, err, sizeof(err));
	assert_non_null(pm);
	RUN_UNTIL(s.base, s.changes >= 1, 3000);
	assert_int_equal(s.requests, 1);
	struct portmap_status st;
	portmap_get_status(pm, &st);
	uint64_t bad0 = st.bad_replies;
	/* version 2, R|ANNOUNCE, result 0, lifetime 0, epoch 0: a restart */
	uint8_t ann[24] = {2, 0x80};
	send_from("127.0.0.2", ann_port, ann, sizeof(ann));
	RUN_UNTIL(s.base, 0, 500);
	portmap_get_status(pm, &st);
	assert_int_equal(st.bad_replies, bad0 + 1);
	assert_int_equal(s.requests, 1);
	send_from("127.0.0.1", ann_port, ann, sizeof(ann));
	RUN_UNTIL(s.base, s.requests >= 2, 1500);
	assert_int_equal(s.requests, 2);
	assert_true(s.renewal_same_nonce);
	portmap_free(pm);
	srv_stop(&s, ev);
}

/* ---- NAT-PMP against a server on 127.0.0.1:5351, in a network namespace
 * of the test's own (NAT-PMP has no port knob; the namespace keeps the
 * well-known port from clashing with anything on the host) ---- */

struct pmp_srv {
	int fd;
	int maps, deletes;
	int delete_ext_port; /* what the delete asked for: RFC 6886 3.4 wants 0 */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void pmp_read(evutil_socket_t fd, short what, void *arg)
{
	struct pmp_srv *s = arg;
	uint8_t req[64], out[16];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(fd, req, sizeof(req), 0, (struct sockaddr *)&from, &fl);
	if (n < 2 || req[0] != 0)
		return;
	/* First junk: an answer to an opcode nobody asked (counted, dropped). */
	memset(out, 0, sizeof(out));
	out[1] = 200;
	sendto(fd, out, 12, 0, (struct sockaddr *)&from, fl);
	memset(out, 0, sizeof(out));
	put32(out + 4, 100000); /* epoch */
	if (req[1] == 0) {
		out[1] = 128;
		memcpy(out + 8, ext_ip, 4);
		sendto(fd, out, 12, 0, (struct sockaddr *)&from, fl);
		return;
	}
	if (req[1] != 1 || n < 12)
		return;
	uint16_t priv = (uint16_t)(req[4] << 8 | req[5]);
	uint16_t pub = (uint16_t)(req[6] << 8 | req[7]);
	uint32_t life = (uint32_t)req[8] << 24 | (uint32_t)req[9] << 16 | (uint32_t)req[10] << 8 | req[11];
	out[1] = 129;
	put16(out + 8, priv);
	if (life == 0) {
		s->deletes++;
		s->delete_ext_port = pub;
		put16(out + 10, 0);
	} else {
		s->maps++;
		put16(out + 10, 50001);
		put32(out + 12, life);
	}
	sendto(fd, out, 16, 0, (struct sockaddr *)&from, fl);
}

static void nat_pmp_maps_counts_junk_deletes_with_port_0(void **state)
{
	if (unshare(CLONE_NEWNET) != 0) {
		print_message("no network namespace (%s): skipped\n", strerror(errno));
		skip();
	}
	int ctl = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	assert_int_equal(ioctl(ctl, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(ctl, SIOCSIFFLAGS, &ifr), 0);
	close(ctl);

	struct srv s = {.base = event_base_new()};
	struct pmp_srv p = {.delete_ext_port = -1};
	p.fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5351),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(p.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct event *ev = event_new(s.base, p.fd, EV_READ | EV_PERSIST, pmp_read, &p);
	event_add(ev, NULL);
	struct portmap_config c = {
	    .base = s.base,
	    .port = 41641,
	    .on_change = on_change,
	    .ctx = &s,
	    .lease_s = 60,
	    .no_pcp = true,
	    .no_upnp = true,
	};
	c.gateway.s_addr = htonl(INADDR_LOOPBACK);
	char err[160];
	struct portmap *pm = portmap_new(&c, err, sizeof(err));
	assert_non_null(pm);
	RUN_UNTIL(s.base, s.changes >= 1, 4000);
	struct portmap_status st;
	portmap_get_status(pm, &st);
	assert_int_equal(st.proto, PM_PMP);
	assert_int_equal(p.maps, 1);
	assert_int_equal(st.bad_replies, 2); /* one junk answer before each */
	char d[200];
	portmap_describe(&st, d, sizeof(d));
	assert_string_equal(d, "nat-pmp 198.18.10.8:50001, lease 1m");
	/* The delete at free: lifetime 0 and external port 0. */
	event_del(ev);
	portmap_free(pm);
	struct pollfd pfd = {.fd = p.fd, .events = POLLIN};
	while (poll(&pfd, 1, 0) == 1)
		pmp_read(p.fd, EV_READ, &p);
	assert_true(p.deletes >= 1); /* libnatpmp resends after 250 ms */
	assert_int_equal(p.delete_ext_port, 0);
	event_free(ev);
	close(p.fd);
	event_base_free(s.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(request_layout),
	    cmocka_unit_test(response_round_trip),
	    cmocka_unit_test(hostile_responses),
	    cmocka_unit_test(default_gateway_from_routes),
	    cmocka_unit_test(maps_renews_deletes),
	    cmocka_unit_test(refused_says_why),
	    cmocka_unit_test(nothing_listens),
	    cmocka_unit_test(free_while_probing),
	    cmocka_unit_test(renewal_failure_keeps_mapping),
	    cmocka_unit_test(router_restart_seen_in_epoch),
	    cmocka_unit_test(public_addresses),
	    cmocka_unit_test(cgnat_address_not_advertised),
	    cmocka_unit_test(gateway_urls),
	    cmocka_unit_test(upnp_trickle_ends_at_deadline),
	    cmocka_unit_test(free_while_upnp_trickles),
	    cmocka_unit_test(upnp_only_from_gateway),
	    cmocka_unit_test(upnp_maps_renews_then_pcp_replaces_it),
	    cmocka_unit_test(router_announce_maps_again),
	    /* last: it moves the process into a network namespace of its own */
	    cmocka_unit_test(nat_pmp_maps_counts_junk_deletes_with_port_0),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
