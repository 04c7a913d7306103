/* The node's change lists for a delta (ctl_map_delta_changes): what they
 * hold (removals only of peers it has, once, not of one the same delta
 * brings back, never itself; patches of removed peers dropped) and what a
 * big delta costs: each removed id was checked against every peer of the
 * delta and every earlier removal, O(R * (P + R)). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/control/client_int.h"
#include "core/control/msg.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A map of peers 1..n (only ids matter here), self_id 0. */
static void map_of(struct ctl_map_full *m, size_t n)
{
	memset(m, 0, sizeof *m);
	m->peers = calloc(n, sizeof *m->peers);
	assert_non_null(m->peers);
	for (size_t i = 0; i < n; i++)
		m->peers[i].id = i + 1;
	m->n_peers = n;
}

/* What the lists hold: a removal of a peer it does not have, of one the
 * delta brings back, of itself and a repeated one; a patch of a removed
 * peer. */
static void lists_hold_what_changes(void **state)
{
	(void)state;
	struct ctl_map_full m;
	map_of(&m, 10);
	m.self_id = 7;
	struct ctl_peer peers[2] = {{.id = 3}, {.id = 7}};
	uint64_t removed[] = {5, 99, 3, 5, 7, 2, 2};
	struct ctl_peer_patch patches[2] = {{.id = 2}, {.id = 4}};
	struct ctl_map_delta d = {.n_peers = 2,
	                          .peers = peers,
	                          .n_removed = sizeof removed / sizeof removed[0],
	                          .removed = removed,
	                          .n_patches = 2,
	                          .patches = patches};
	uint64_t *ch, *rm;
	size_t nch, nrm;
	assert_int_equal(ctl_map_delta_changes(&m, &d, &ch, &nch, &rm, &nrm), 0);
	/* peers but itself, then the patch of a peer not removed */
	assert_int_equal(nch, 2);
	assert_int_equal(ch[0], 3);
	assert_int_equal(ch[1], 4);
	/* 5 and 2 once each, in the delta's order; 99 it does not have, 3 is
	 * back, 7 is itself (in the map here, and named as a peer: not kept
	 * as a peer, so its removal stands as before) */
	assert_int_equal(nrm, 3);
	assert_int_equal(rm[0], 5);
	assert_int_equal(rm[1], 7);
	assert_int_equal(rm[2], 2);
	free(ch);
	free(rm);
	free(m.peers);
}

/* Second review L-3: 20,000 removals and 20,000 peers in one delta on a
 * 40,000-peer map were about 6 * 10^8 compares on every node (about half
 * a second here); now they are sorted once. */
static void big_delta_lists_are_not_quadratic(void **state)
{
	(void)state;
	enum { N = 40000, R = 20000 };
	struct ctl_map_full m;
	map_of(&m, N);
	struct ctl_map_delta d = {.n_peers = N - R, .n_removed = R};
	d.peers = calloc(N - R, sizeof *d.peers);
	d.removed = calloc(R, sizeof *d.removed);
	assert_non_null(d.peers);
	assert_non_null(d.removed);
	for (size_t i = 0; i < R; i++)
		d.removed[i] = i + 1;
	for (size_t i = 0; i < N - R; i++)
		d.peers[i].id = R + 1 + i;
	uint64_t *ch, *rm;
	size_t nch, nrm;
	double t0 = now_ms();
	assert_int_equal(ctl_map_delta_changes(&m, &d, &ch, &nch, &rm, &nrm), 0);
	double ms = now_ms() - t0;
	print_message("%d removals and %d peers: change lists in %.1f ms\n", R, N - R,
	              ms);
	assert_int_equal(nrm, R);
	assert_int_equal(nch, N - R);
	for (size_t i = 0; i < R; i++)
		assert_int_equal(rm[i], i + 1);
	assert_true(ms < 150);
	free(ch);
	free(rm);
	free(d.peers);
	free(d.removed);
	free(m.peers);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lists_hold_what_changes),
	    cmocka_unit_test(big_delta_lists_are_not_quadratic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
