/* node/health: the readiness rule and its per-peer tracking, driven with
 * an injected monotonic clock and inputs (no node, no sockets).
 *  - joined, idle (no peer, or none answering): ready while mesh-control
 *    is online and for NODE_HEALTH_CTL_GRACE_S after it was last online,
 *    503 past that grace when no peer answers; a peer answering keeps it
 *    ready without mesh-control;
 *  - stopping is 503 "stopping" whatever else holds;
 *  - a peer answers while its last handshake is at most
 *    NODE_HEALTH_PEER_S old, by the device's monotonic age (no wall time
 *    enters); not once an initiation went unanswered for
 *    NODE_HEALTH_UNANSWERED_S;
 *  - the tracking is by public key: a map change that reorders the peers
 *    or drops one keeps the others' unanswered clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/health.h"

#define T0 1000000 /* an arbitrary monotonic start, in ms */

static struct nh_inputs joined_idle(void)
{
	return (struct nh_inputs){.joined = true,
	                          .have_self = true,
	                          .dataplane = true,
	                          .ctl = "backoff",
	                          .ctl_online = false,
	                          .ctl_online_ms = T0};
}

static void control_blip_grace(void **state)
{
	(void)state;
	char why[200];
	struct nh_inputs in = joined_idle();
	in.ctl_online = true;
	assert_true(nh_rule(&in, T0, why, sizeof(why)));
	/* control's TCP drops: still ready within the grace, no peer at all */
	in.ctl_online = false;
	assert_true(nh_rule(&in, T0 + 1000, why, sizeof(why)));
	assert_true(nh_rule(&in, T0 + NODE_HEALTH_CTL_GRACE_S * 1000, why, sizeof(why)));
	/* past it, with no peer answering: 503 naming control */
	assert_false(
	    nh_rule(&in, T0 + NODE_HEALTH_CTL_GRACE_S * 1000 + 1, why, sizeof(why)));
	assert_non_null(strstr(why, "mesh-control unreachable"));
	/* a peer that answers keeps it ready */
	in.peers = 3;
	in.answering = 1;
	assert_true(nh_rule(&in, T0 + 3600 * 1000, why, sizeof(why)));
	/* never online since the start: no grace */
	in = joined_idle();
	in.ctl_online_ms = 0;
	assert_false(nh_rule(&in, T0, why, sizeof(why)));
}

static void registration_and_dataplane(void **state)
{
	(void)state;
	char why[200];
	struct nh_inputs in = joined_idle();
	in.ctl_online = true;
	in.have_self = false;
	in.pending = true;
	assert_false(nh_rule(&in, T0, why, sizeof(why)));
	assert_non_null(strstr(why, "approve"));
	in.pending = false;
	assert_false(nh_rule(&in, T0, why, sizeof(why)));
	assert_non_null(strstr(why, "not registered"));
	in.have_self = true;
	in.dataplane = false;
	assert_false(nh_rule(&in, T0, why, sizeof(why)));
	assert_non_null(strstr(why, "data plane"));
	/* from a file: no peer is ready, peers none answering are not */
	struct nh_inputs f = {.dataplane = true};
	assert_true(nh_rule(&f, T0, why, sizeof(why)));
	f.peers = 2;
	assert_false(nh_rule(&f, T0, why, sizeof(why)));
	assert_non_null(strstr(why, "no peer answers"));
	f.answering = 1;
	assert_true(nh_rule(&f, T0, why, sizeof(why)));
}

static void stopping_is_not_ready(void **state)
{
	(void)state;
	char why[200];
	struct nh_inputs in = joined_idle();
	in.ctl_online = true;
	in.stopping = true;
	assert_false(nh_rule(&in, T0, why, sizeof(why)));
	assert_string_equal(why, "stopping");
	struct nh_inputs f = {.dataplane = true, .stopping = true};
	assert_false(nh_rule(&f, T0, why, sizeof(why)));
}

static struct nh_obs obs(unsigned char k, uint64_t sent, uint64_t done, int64_t hs_ms)
{
	struct nh_obs o = {.sent = sent, .completed = done, .last_hs_ms = hs_ms};
	memset(o.key, k, sizeof(o.key));
	return o;
}

static void handshake_age_monotonic(void **state)
{
	(void)state;
	struct nh_tracker t = {0};
	struct nh_obs o = obs(1, 1, 1, 0);
	assert_int_equal(nh_tracker_look(&t, &o, 1, T0), 0);
	assert_true(nh_tracker_answers(&t, &o, true, T0));
	o.last_hs_ms = NODE_HEALTH_PEER_S * 1000;
	assert_true(nh_tracker_answers(&t, &o, true, T0));
	o.last_hs_ms = NODE_HEALTH_PEER_S * 1000 + 1;
	assert_false(nh_tracker_answers(&t, &o, true, T0));
	/* from a file, an old handshake still counts */
	assert_true(nh_tracker_answers(&t, &o, false, T0));
	o.last_hs_ms = -1; /* never */
	assert_false(nh_tracker_answers(&t, &o, true, T0));
	nh_tracker_clear(&t);
}

static void unanswered_by_key_across_reorder(void **state)
{
	(void)state;
	struct nh_tracker t = {0};
	struct nh_obs a[3] = {obs(1, 1, 1, 0), obs(2, 1, 1, 0), obs(3, 1, 1, 0)};
	assert_int_equal(nh_tracker_look(&t, a, 3, T0), 0);
	/* peer 2 sends an initiation that nothing completes */
	a[1].sent = 2;
	assert_int_equal(nh_tracker_look(&t, a, 3, T0 + 1000), 0);
	assert_true(nh_tracker_answers(&t, &a[1], true, T0 + 5000));
	/* the map changes: peer 1 leaves, the order changes; peer 2's clock
	 * must go on */
	struct nh_obs b[2] = {a[2], a[1]};
	assert_int_equal(nh_tracker_look(&t, b, 2, T0 + 2000), 0);
	int64_t late = T0 + 1000 + NODE_HEALTH_UNANSWERED_S * 1000;
	assert_false(nh_tracker_answers(&t, &b[1], true, late));
	assert_true(nh_tracker_answers(&t, &b[0], true, late));
	/* a completed handshake stops the clock */
	b[1].completed = 2;
	assert_int_equal(nh_tracker_look(&t, b, 2, late + 1000), 0);
	assert_true(nh_tracker_answers(&t, &b[1], true, late + 1000));
	/* a peer never seen is judged by its handshake alone */
	struct nh_obs c = obs(9, 5, 0, -1);
	assert_false(nh_tracker_answers(&t, &c, false, late));
	nh_tracker_clear(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(control_blip_grace),
	    cmocka_unit_test(registration_and_dataplane),
	    cmocka_unit_test(stopping_is_not_ready),
	    cmocka_unit_test(handshake_age_monotonic),
	    cmocka_unit_test(unanswered_by_key_across_reorder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
