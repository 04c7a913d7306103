/* A node's assembly of a chunked MAP_FULL (ctl_map_append_chunk) under a
 * hostile or huge map (control review B L-4): the peer array grows
 * geometrically instead of being reallocated (and maybe copied whole) for
 * every chunk, and a server cannot keep a map open forever with chunks that
 * carry no peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>

#include "core/control/client_int.h"

static struct ctl_peer *peers_from(uint64_t first, size_t n)
{
	struct ctl_peer *p = calloc(n, sizeof *p);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i].id = first + i;
	return p;
}

/* 4,000 chunks of one peer each (another allocation made between any two,
 * as a node's event loop would): the array moves a few times, not once per
 * chunk. (glibc grows an exact realloc in place or by mremap, so the old
 * code moved it only 4-8 times here; ASan's allocator never grows in place,
 * and there the old code moved it, copying the whole map, 4,000 times.) */
static void chunks_grow_geometrically(void **state)
{
	(void)state;
	enum { N = 4000 };
	struct ctl_map_full map = {.self_id = 999999};
	map.peers = peers_from(1, 1);
	map.n_peers = 1;
	void **other = calloc(N, sizeof *other);
	assert_non_null(other);
	int moves = 0;
	for (size_t i = 0; i < N; i++) {
		struct ctl_peer one = {.id = 2 + i};
		struct ctl_map_peers ch = {.n_peers = 1, .peers = &one, .more = true};
		const struct ctl_peer *before = map.peers;
		assert_int_equal(ctl_map_append_chunk(&map, &ch), 0);
		moves += map.peers != before;
		other[i] = malloc(64);
	}
	print_message("%d chunks: the peer array moved %d times\n", N, moves);
	assert_int_equal(map.n_peers, N + 1);
	assert_true(moves <= 16);
	assert_int_equal(ctl_map_finish(&map), 0);
	assert_int_equal(map.n_peers, N + 1);
	for (size_t i = 0; i < map.n_peers; i++)
		assert_int_equal(map.peers[i].id, i + 1);
	assert_int_equal(map.cap_peers, 0);
	for (size_t i = 0; i < N; i++)
		free(other[i]);
	free(other);
	ctl_map_clear(&map);
}

/* Chunks without peers, "more" set, again and again: an error after a few
 * (they cost the node CPU forever and the map never completes). */
static void empty_chunks_are_bounded(void **state)
{
	(void)state;
	struct ctl_map_full map = {.self_id = 999999};
	map.peers = peers_from(1, 3);
	map.n_peers = 3;
	struct ctl_map_peers ch = {.n_peers = 0, .more = true};
	int r = 0, i;
	for (i = 0; i < 10000 && r == 0; i++)
		r = ctl_map_append_chunk(&map, &ch);
	print_message("empty chunk %d: %s\n", i, r ? strerror(-r) : "still accepted");
	assert_int_equal(r, -EPROTO);
	assert_true(i <= CTL_MAP_EMPTY_CHUNKS_MAX + 1);
	assert_int_equal(map.n_peers, 3);
	ctl_map_clear(&map);
}

/* A map that started with an exactly-sized first chunk (as decoded) takes
 * big chunks after it: every peer is where it belongs. */
static void big_chunks_after_exact_first(void **state)
{
	(void)state;
	struct ctl_map_full map = {.self_id = 999999};
	map.peers = peers_from(1, 7);
	map.n_peers = 7;
	uint64_t next = 8;
	for (int k = 0; k < 20; k++) {
		size_t n = 100 + (size_t)k * 37;
		struct ctl_map_peers ch = {.n_peers = n, .peers = peers_from(next, n)};
		assert_int_equal(ctl_map_append_chunk(&map, &ch), 0);
		free(ch.peers);
		next += n;
	}
	assert_int_equal(ctl_map_finish(&map), 0);
	assert_int_equal(map.n_peers, next - 1);
	for (size_t i = 0; i < map.n_peers; i++)
		assert_int_equal(map.peers[i].id, i + 1);
	ctl_map_clear(&map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(chunks_grow_geometrically),
	    cmocka_unit_test(empty_chunks_are_bounded),
	    cmocka_unit_test(big_chunks_after_exact_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
