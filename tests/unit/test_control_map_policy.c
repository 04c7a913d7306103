/* core/control/client_map.c + client_policy.c: the policy part of the
 * node's merged map (CTL_CAP_POLICY), fed from decoded messages.
 *  - a full map (single or chunked) keeps its filter and reach entries
 *    sorted by id, only for its peers (not itself, not strangers);
 *  - a delta's filter SET replaces the filter, CLEAR drops it and every
 *    reach entry, and reach that comes while there is no filter is dropped;
 *  - reach entries are set or replaced by id; one for a peer the map does
 *    not hold after the delta is dropped; a removed peer's entry goes
 *    (unless the same delta sends the peer again);
 *  - the "policy changed" answer: filter ops, reach entries that differ,
 *    owners (user, tags) that differ, a dropped entry; not for a delta
 *    that changes none of them;
 *  - a delta that fails leaves the map as it was. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/control/client.h"
#include "core/control/client_int.h"
#include "core/control/msg.h"

#define KEY "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\""

static char *peer_json(uint64_t id, const char *extra)
{
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512,
	         "{\"id\":%llu,\"name\":\"n%llu\",\"node_key\":" KEY ",\"disco_key\":" KEY
	         ",\"addresses\":[],\"allowed_ips\":[]%s%s}",
	         (unsigned long long)id, (unsigned long long)id, extra ? "," : "",
	         extra ? extra : "");
	return b;
}

static void decode(unsigned type, const char *s, struct ctl_msg *m)
{
	struct ctl_msg_err err;
	int r = ctl_msg_decode(type, (const uint8_t *)s, strlen(s), m, &err);
	if (r != 0)
		fail_msg("decode: %d %s\n  %.300s", r, err.text, s);
}

/* A full map at version 1 of node 1 with peers (JSON objects, joined) and
 * the policy fields in extra, taken out of its message and finished. */
static void full_map(struct ctl_map_full *map, const char *peers, const char *extra)
{
	char body[4096];
	struct ctl_msg m;

	snprintf(body, sizeof(body),
	         "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[]},"
	         "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
	         "\"peers\":[%s]%s%s}",
	         peers, extra ? "," : "", extra ? extra : "");
	decode(CTL_MSG_MAP_FULL, body, &m);
	*map = m.u.map;
	memset(&m.u.map, 0, sizeof(m.u.map));
	assert_int_equal(ctl_map_finish(map), 0);
}

/* Applies delta body (version base+1 on base) to map; returns the result
 * and *changed. */
static int apply(struct ctl_map_full *map, const char *fields, bool *changed)
{
	char body[4096];
	struct ctl_msg m;

	snprintf(body, sizeof(body), "{\"version\":%llu,\"base_version\":%llu%s%s}",
	         (unsigned long long)map->version + 1, (unsigned long long)map->version,
	         fields[0] ? "," : "", fields);
	decode(CTL_MSG_MAP_DELTA, body, &m);
	int r = ctl_map_apply_delta_policy(map, &m.u.delta, NULL, changed);
	ctl_msg_free(&m);
	return r;
}

static void assert_reach_ids(const struct ctl_map_full *map, size_t n, ...)
{
	va_list ap;
	if (map->n_reach != n)
		fail_msg("%zu reach entries, want %zu", map->n_reach, n);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		uint64_t id = (uint64_t)va_arg(ap, int);
		if (map->reach[i].id != id)
			fail_msg("reach[%zu].id %llu, want %llu", i,
			         (unsigned long long)map->reach[i].id, (unsigned long long)id);
		assert_ptr_equal(ctl_map_find_reach(map, id), &map->reach[i]);
	}
	va_end(ap);
}

static const char *three_peers(void)
{
	static char b[2048];
	snprintf(b, sizeof(b), "%s,%s,%s", peer_json(4, "\"user\":\"alice\""),
	         peer_json(2, NULL), peer_json(3, "\"tags\":[\"tag:srv\"]"));
	return b;
}

#define FILTER_A "\"filter\":{\"tcp\":[[\"100.64.0.1\",\"100.64.0.9\",\"22\"]]}"
#define FILTER_B "\"filter\":{\"udp\":[[\"fd7a::1\",\"fd7a::2\",\"53\"]]}"

static void test_full_keeps_reach_of_its_peers(void **state)
{
	struct ctl_map_full map;
	(void)state;

	/* 9 is no peer, 1 is the node itself */
	full_map(&map, three_peers(),
	         FILTER_A ",\"reach\":[{\"id\":4,\"tcp\":\"22\"},{\"id\":9,\"icmp\":true},"
	                  "{\"id\":2,\"udp\":\"53\"},{\"id\":1,\"tcp\":\"*\"}]");
	assert_true(map.has_filter);
	assert_int_equal(map.filter.n_blocks[CTL_FILTER_TCP], 1);
	assert_reach_ids(&map, 2, 2, 4);
	assert_null(ctl_map_find_reach(&map, 9));
	assert_null(ctl_map_find_reach(&map, 3));
	assert_int_equal(ctl_map_find_reach(&map, 4)->tcp[0].lo, 22);
	assert_string_equal(ctl_map_find(&map, 4)->user, "alice");
	assert_string_equal(ctl_map_find(&map, 3)->tags, "tag:srv");
	ctl_map_clear(&map);

	/* an older server: no filter, no reach */
	full_map(&map, three_peers(), NULL);
	assert_false(map.has_filter);
	assert_int_equal(map.n_reach, 0);
	assert_null(ctl_map_find_reach(&map, 2));
	ctl_map_clear(&map);
}

/* A chunked map: filter and reach in the first message, the peers they
 * name may come in a later chunk. */
static void test_chunked_map(void **state)
{
	struct ctl_map_full map;
	struct ctl_msg c;
	char body[1024];
	struct ctl_msg_err err;
	(void)state;

	char first[4096];
	snprintf(first, sizeof(first),
	         "{\"version\":3,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[]},"
	         "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
	         "\"peers\":[%s],\"more\":true," FILTER_A
	         ",\"reach\":[{\"id\":7,\"tcp\":\"80\"},{\"id\":2,\"tcp\":\"22\"},"
	         "{\"id\":8,\"tcp\":\"1\"}]}",
	         peer_json(2, NULL));
	struct ctl_msg m;
	decode(CTL_MSG_MAP_FULL, first, &m);
	map = m.u.map;
	memset(&m.u.map, 0, sizeof(m.u.map));
	snprintf(body, sizeof(body), "{\"peers\":[%s],\"more\":false}", peer_json(7, NULL));
	assert_int_equal(ctl_msg_decode(CTL_MSG_MAP_PEERS, (const uint8_t *)body,
	                                strlen(body), &c, &err),
	                 0);
	assert_int_equal(ctl_map_append_chunk(&map, &c.u.chunk), 0);
	ctl_msg_free(&c);
	assert_int_equal(ctl_map_finish(&map), 0);
	assert_true(map.has_filter);
	assert_reach_ids(&map, 2, 2, 7); /* 8 never came */
	ctl_map_clear(&map);
}

static void test_filter_set_and_clear(void **state)
{
	struct ctl_map_full map;
	bool ch;
	(void)state;

	full_map(&map, three_peers(), FILTER_A ",\"reach\":[{\"id\":2,\"tcp\":\"22\"}]");
	/* SET replaces the filter; reach stays */
	assert_int_equal(apply(&map, FILTER_B, &ch), 0);
	assert_true(ch);
	assert_true(map.has_filter);
	assert_int_equal(map.filter.n_blocks[CTL_FILTER_TCP], 0);
	assert_int_equal(map.filter.n_blocks[CTL_FILTER_UDP], 1);
	assert_int_equal(map.filter.blocks[CTL_FILTER_UDP][0].ports[0].lo, 53);
	assert_reach_ids(&map, 1, 2);
	assert_int_equal(map.version, 2);

	/* CLEAR: no policy, no reach */
	assert_int_equal(apply(&map, "\"filter\":null", &ch), 0);
	assert_true(ch);
	assert_false(map.has_filter);
	for (int p = 0; p < CTL_FILTER_NPROTO; p++)
		assert_int_equal(map.filter.n_blocks[p], 0);
	assert_int_equal(map.n_reach, 0);

	/* reach while there is no filter is dropped: nothing changed */
	assert_int_equal(apply(&map, "\"reach\":[{\"id\":2,\"tcp\":\"22\"}]", &ch), 0);
	assert_false(ch);
	assert_int_equal(map.n_reach, 0);

	/* a new policy with reach in the same delta */
	assert_int_equal(apply(&map, FILTER_A ",\"reach\":[{\"id\":3,\"icmp\":true}]", &ch), 0);
	assert_true(ch);
	assert_true(map.has_filter);
	assert_reach_ids(&map, 1, 3);
	assert_true(map.reach[0].icmp);
	ctl_map_clear(&map);
}

static void test_reach_by_id(void **state)
{
	struct ctl_map_full map;
	bool ch;
	char f[1024];
	(void)state;

	full_map(&map, three_peers(),
	         FILTER_A ",\"reach\":[{\"id\":2,\"tcp\":\"22\"},{\"id\":4,\"udp\":\"53\"}]");
	/* 2 replaced, 3 new, 9 unknown (dropped), 5 joins in this delta */
	snprintf(f, sizeof(f),
	         "\"peers\":[%s],\"reach\":[{\"id\":9,\"tcp\":\"1\"},{\"id\":3,\"tcp\":\"80\"},"
	         "{\"id\":2,\"tcp\":\"443\"},{\"id\":5,\"udp\":\"1-9\"}]",
	         peer_json(5, NULL));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_true(ch);
	assert_reach_ids(&map, 4, 2, 3, 4, 5);
	assert_int_equal(ctl_map_find_reach(&map, 2)->tcp[0].lo, 443);
	assert_int_equal(ctl_map_find_reach(&map, 2)->n_udp, 0);
	assert_int_equal(ctl_map_find_reach(&map, 4)->udp[0].lo, 53); /* untouched */

	/* the same entries again: no change */
	assert_int_equal(apply(&map, "\"reach\":[{\"id\":2,\"tcp\":\"443\"},{\"id\":5,"
	                             "\"udp\":\"1-9\"}]",
	                       &ch),
	                 0);
	assert_false(ch);
	/* replacements only are swapped in place: the list and the other
	 * entries stay where they are (a delta costs its entries, not R) */
	const struct ctl_reach *list = map.reach;
	const struct ctl_port_range *udp4 = ctl_map_find_reach(&map, 4)->udp;
	assert_int_equal(apply(&map, "\"reach\":[{\"id\":3,\"tcp\":\"81\"}],"
	                             "\"patches\":[{\"id\":3,\"online\":true}]",
	                       &ch),
	                 0);
	assert_true(ch);
	assert_ptr_equal(map.reach, list);
	assert_ptr_equal(ctl_map_find_reach(&map, 4)->udp, udp4);
	assert_int_equal(ctl_map_find_reach(&map, 3)->tcp[0].lo, 81);
	/* nothing about reach: the list is left alone */
	assert_int_equal(apply(&map, "\"patches\":[{\"id\":2,\"online\":true}]", &ch), 0);
	assert_false(ch);
	assert_ptr_equal(map.reach, list);
	/* an entry without ports takes the reach away (kept as an empty entry) */
	assert_int_equal(apply(&map, "\"reach\":[{\"id\":2}]", &ch), 0);
	assert_true(ch);
	assert_int_equal(ctl_map_find_reach(&map, 2)->n_tcp, 0);
	/* only an unknown id: dropped, nothing changed */
	assert_int_equal(apply(&map, "\"reach\":[{\"id\":77,\"tcp\":\"1\"}]", &ch), 0);
	assert_false(ch);
	assert_reach_ids(&map, 4, 2, 3, 4, 5);
	ctl_map_clear(&map);
}

static void test_removed_peer_drops_reach(void **state)
{
	struct ctl_map_full map;
	bool ch;
	char f[1024];
	(void)state;

	full_map(&map, three_peers(),
	         FILTER_A ",\"reach\":[{\"id\":2,\"tcp\":\"22\"},{\"id\":3,\"tcp\":\"80\"},"
	                  "{\"id\":4,\"udp\":\"53\"}]");
	assert_int_equal(apply(&map, "\"removed\":[3]", &ch), 0);
	assert_true(ch);
	assert_reach_ids(&map, 2, 2, 4);
	/* removed and sent again in one delta: the peer stays, so does its reach */
	snprintf(f, sizeof(f), "\"removed\":[2],\"peers\":[%s]", peer_json(2, NULL));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_false(ch);
	assert_reach_ids(&map, 2, 2, 4);
	/* removed with a new entry for it in the same delta: it goes */
	assert_int_equal(apply(&map, "\"removed\":[4],\"reach\":[{\"id\":4,\"tcp\":\"1\"}]",
	                       &ch),
	                 0);
	assert_true(ch);
	assert_reach_ids(&map, 1, 2);
	ctl_map_clear(&map);
}

static void test_owner_changes(void **state)
{
	struct ctl_map_full map;
	bool ch;
	char f[1024];
	(void)state;

	full_map(&map, three_peers(), NULL);
	/* the same owners, a new name: not a policy change */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(4, "\"user\":\"alice\""));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_false(ch);
	/* a patch: not one either */
	assert_int_equal(apply(&map, "\"patches\":[{\"id\":2,\"online\":true}]", &ch), 0);
	assert_false(ch);
	/* another user */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(4, "\"user\":\"bob\""));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_true(ch);
	assert_string_equal(ctl_map_find(&map, 4)->user, "bob");
	/* tags taken away */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(3, NULL));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_true(ch);
	assert_string_equal(ctl_map_find(&map, 3)->tags, "");
	/* a new peer with an owner */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(6, "\"tags\":[\"tag:ci\"]"));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_true(ch);
	/* a new peer without one */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(7, NULL));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_false(ch);
	/* the node itself named in a delta (a shared delta) is ignored */
	snprintf(f, sizeof(f), "\"peers\":[%s]", peer_json(1, "\"user\":\"me\""));
	assert_int_equal(apply(&map, f, &ch), 0);
	assert_false(ch);
	ctl_map_clear(&map);
}

/* All or nothing: a delta that fails leaves filter and reach as they were. */
static void test_failed_delta_changes_nothing(void **state)
{
	struct ctl_map_full map;
	struct ctl_msg m;
	bool ch = true;
	(void)state;

	full_map(&map, three_peers(), FILTER_A ",\"reach\":[{\"id\":2,\"tcp\":\"22\"}]");
	const struct ctl_reach *before = map.reach;
	/* wrong base */
	decode(CTL_MSG_MAP_DELTA, "{\"version\":9,\"base_version\":8,\"filter\":null}", &m);
	assert_int_equal(ctl_map_apply_delta_policy(&map, &m.u.delta, NULL, &ch), -EINVAL);
	assert_false(ch);
	ctl_msg_free(&m);
	assert_true(map.has_filter);
	assert_ptr_equal(map.reach, before);
	assert_int_equal(map.version, 1);
	/* two entries for one id (the decoder refuses it; a caller might not) */
	decode(CTL_MSG_MAP_DELTA,
	       "{\"version\":2,\"base_version\":1,\"filter\":{},\"reach\":[{\"id\":3,"
	       "\"tcp\":\"1\"},{\"id\":4,\"tcp\":\"2\"}]}",
	       &m);
	m.u.delta.reach[1].id = 3;
	assert_int_equal(ctl_map_apply_delta(&map, &m.u.delta), -EINVAL);
	ctl_msg_free(&m);
	assert_int_equal(map.filter.n_blocks[CTL_FILTER_TCP], 1);
	assert_reach_ids(&map, 1, 2);
	assert_int_equal(map.version, 1);
	/* a peer named twice fails in the peer merge, after the policy part
	 * was prepared: that is dropped too */
	decode(CTL_MSG_MAP_DELTA,
	       "{\"version\":2,\"base_version\":1,\"filter\":null,\"peers\":[" 
	       "{\"id\":5,\"name\":\"a\",\"node_key\":" KEY ",\"disco_key\":" KEY
	       ",\"addresses\":[],\"allowed_ips\":[]}]}",
	       &m);
	struct ctl_peer two[2] = {m.u.delta.peers[0], m.u.delta.peers[0]};
	struct ctl_peer *own = m.u.delta.peers;
	m.u.delta.peers = two;
	m.u.delta.n_peers = 2;
	assert_int_equal(ctl_map_apply_delta(&map, &m.u.delta), -EINVAL);
	m.u.delta.peers = own;
	m.u.delta.n_peers = 1;
	ctl_msg_free(&m);
	assert_true(map.has_filter);
	assert_reach_ids(&map, 1, 2);
	ctl_map_clear(&map);
}

/* The node's own owner: from the full map, then a delta's self (whole:
 * user and tags together), a policy change only when it differs. */
static void test_self_owner(void **state)
{
	struct ctl_map_full map;
	struct ctl_msg m;
	bool ch;
	(void)state;

	decode(CTL_MSG_MAP_FULL,
	       "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[],"
	       "\"user\":\"ops\",\"tags\":[\"tag:web\",\"tag:db\"]},"
	       "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
	       "\"peers\":[]}",
	       &m);
	map = m.u.map;
	memset(&m.u.map, 0, sizeof(m.u.map));
	assert_int_equal(ctl_map_finish(&map), 0);
	assert_string_equal(map.self_user, "ops");
	assert_string_equal(map.self_tags, "tag:web,tag:db");
	/* no self: unchanged */
	assert_int_equal(apply(&map, "\"peers\":[]", &ch), 0);
	assert_false(ch);
	assert_string_equal(map.self_tags, "tag:web,tag:db");
	/* the same owner again: not a change */
	assert_int_equal(
	    apply(&map, "\"self\":{\"user\":\"ops\",\"tags\":[\"tag:web\",\"tag:db\"]}", &ch),
	    0);
	assert_false(ch);
	/* a policy change dropped tag:db */
	assert_int_equal(apply(&map, "\"self\":{\"user\":\"ops\",\"tags\":[\"tag:web\"]}", &ch),
	                 0);
	assert_true(ch);
	assert_string_equal(map.self_user, "ops");
	assert_string_equal(map.self_tags, "tag:web");
	/* a failed delta (wrong base) leaves it */
	decode(CTL_MSG_MAP_DELTA,
	       "{\"version\":9,\"base_version\":8,\"self\":{\"user\":\"bob\"}}", &m);
	assert_int_equal(ctl_map_apply_delta_policy(&map, &m.u.delta, NULL, &ch), -EINVAL);
	ctl_msg_free(&m);
	assert_string_equal(map.self_user, "ops");
	/* self {}: no owner now (both fields) */
	assert_int_equal(apply(&map, "\"self\":{}", &ch), 0);
	assert_true(ch);
	assert_string_equal(map.self_user, "");
	assert_string_equal(map.self_tags, "");
	ctl_map_clear(&map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_keeps_reach_of_its_peers),
	    cmocka_unit_test(test_chunked_map),
	    cmocka_unit_test(test_filter_set_and_clear),
	    cmocka_unit_test(test_reach_by_id),
	    cmocka_unit_test(test_removed_peer_drops_reach),
	    cmocka_unit_test(test_owner_changes),
	    cmocka_unit_test(test_failed_delta_changes_nothing),
	    cmocka_unit_test(test_self_owner),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
