/* Helpers for the tests of mesh-control's map distribution, on top of
 * ctl_server_fixture.h: joins with caps, whole (chunked) maps, many stored
 * nodes, a small kernel send buffer for the server's connections. */
#ifndef MESH_TESTS_CTL_MAP_FIXTURE_H
#define MESH_TESTS_CTL_MAP_FIXTURE_H

#include "tests/unit/ctl_server_fixture.h"

#include "core/control/client.h"
#include "core/control/client_int.h"

/* REGISTER_REQ announcing caps. */
static void tc_register_caps(struct tc *c, const char *host, const char *key,
                             uint32_t caps)
{
	struct ctl_msg m = {.type = CTL_MSG_REGISTER_REQ};
	struct ctl_register_req *r = &m.u.reg_req;
	snprintf(r->auth_key, sizeof r->auth_key, "%s", key ? key : "");
	memcpy(r->node_key, c->mpub, 32);
	r->node_key[0] ^= 1;
	memcpy(r->disco_key, c->mpub, 32);
	r->disco_key[0] ^= 2;
	snprintf(r->hostname, sizeof r->hostname, "%s", host);
	snprintf(r->os, sizeof r->os, "linux");
	snprintf(r->version, sizeof r->version, "test");
	r->caps = caps;
	tc_send(c, &m);
}

static void tc_join_caps(struct t *t, struct tc *c, const char *host, uint32_t caps,
                         struct ctl_register_resp *resp)
{
	struct ctl_msg m;
	tc_connect(t, c);
	assert_int_equal(tc_handshake(t, c, t->spub), 0);
	tc_register_caps(c, host, t->key, caps);
	tc_expect(t, c, CTL_MSG_REGISTER_RESP, &m);
	*resp = m.u.reg_resp;
	assert_int_equal(resp->status, CTL_REG_OK);
}

/* Receives a whole map (MAP_FULL, and MAP_PEERS while more) into *map. */
static void tc_read_map(struct t *t, struct tc *c, int ms, struct ctl_map_full *map)
{
	struct ctl_msg m;
	tc_expect(t, c, CTL_MSG_MAP_FULL, &m);
	*map = m.u.map;
	memset(&m.u.map, 0, sizeof m.u.map);
	bool more = map->more;
	while (more) {
		int r = tc_recv(t, c, ms, &m);
		if (r != 1)
			fail_msg("map cut off: %s", r ? "close" : "timeout");
		assert_int_equal(m.type, CTL_MSG_MAP_PEERS);
		assert_int_equal(ctl_map_append_chunk(map, &m.u.chunk), 0);
		more = m.u.chunk.more;
		ctl_msg_free(&m);
	}
	assert_int_equal(ctl_map_finish(map), 0);
}

static void free_map(struct ctl_map_full *map)
{
	free(map->peers);
	free(map->relays);
	memset(map, 0, sizeof *map);
}

/* n stored nodes with eps endpoints each, their keys numbered from first
 * (a second call needs a first past the last one's); ids in out (may be
 * NULL). */
static void store_nodes_from(struct t *t, uint32_t first, uint32_t n, int eps,
                             int64_t *out)
{
	char list[CTL_STORE_ENDPOINTS_MAX + 1] = "";
	size_t at = 0;
	for (int k = 0; k < eps; k++)
		at += (size_t)snprintf(list + at, sizeof list - at,
		                       "%s[fd00:1234:%x::%x]:%d", k ? "," : "", k + 1,
		                       k + 7, 41641 + k);
	for (uint32_t i = first; i < first + n; i++) {
		struct ctl_store_reg r = {
		    .hostname = "n", .auth_secret = t->key, .now = time(NULL)};
		memset(r.machine_key, 0x11, 32);
		memset(r.node_key, 0x22, 32);
		memset(r.disco_key, 0x33, 32);
		memcpy(r.machine_key, &i, 4);
		memcpy(r.node_key, &i, 4);
		memcpy(r.disco_key, &i, 4);
		struct ctl_node nd;
		assert_int_equal(ctl_store_node_register(t->st, &r, &nd, NULL), 0);
		if (out)
			out[i - first] = nd.id;
		if (eps) {
			struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS,
			                            .endpoints = list};
			assert_int_equal(ctl_store_node_update(t->st, nd.id, &u), 0);
		}
	}
}

static void store_nodes(struct t *t, uint32_t n, int eps, int64_t *out)
{
	store_nodes_from(t, 0, n, eps, out);
}

/* Gives the server's listening socket (and so every connection it accepts)
 * a small kernel send buffer: what a stalled reader is owed then stays in
 * the server's own queues, as it does at scale once the kernel's TCP memory
 * is under pressure, instead of vanishing into a loopback socket's 4 MB. */
static void server_sndbuf(struct t *t, int bytes)
{
	bool done = false;
	for (int fd = 0; fd < 1024 && !done; fd++) {
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		int lis = 0;
		socklen_t ll = sizeof lis;
		if (getsockname(fd, (struct sockaddr *)&a, &al) < 0 ||
		    a.sin_family != AF_INET || ntohs(a.sin_port) != t->port ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &lis, &ll) < 0 || !lis)
			continue;
		assert_int_equal(
		    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes), 0);
		done = true;
	}
	assert_true(done);
}

#endif
