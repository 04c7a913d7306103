/* The 33rd node online from one address (SRV_SEEN_SHARED_MAX: a proxy or
 * a carrier NAT) withdraws that address from every node it is published
 * for (server_seen.c withdraw). That walk runs while the new node's
 * snapshot entry is being made (server_map.c snap_upsert), so the entry
 * must already be whole: a slot left with the bytes malloc gave it made
 * the walk touch a write-back entry at a garbage index, and the server
 * crashed (seen under load in test_control_storm_cost, 200 nodes from
 * 127.0.0.1). glibc is told to fill new memory with a fixed non-zero byte
 * (M_PERTURB, and no mmap) so the crash does not depend on what the heap held; under
 * ASan, whose allocator ignores it, the test still runs the path. */
#include "tests/unit/ctl_server_fixture.h"

#include <malloc.h>

#include "servers/control/server_int.h"

static void node_past_shared_cap_from_one_address(void **state)
{
	struct t *t = *state;
	enum { N = SRV_SEEN_SHARED_MAX + 2 };
	struct tc *c[N];
	struct ctl_register_resp r;
	char host[16];
	tc_src = 0x7f000015; /* 127.0.0.21, for all of them */
	for (int i = 0; i < N; i++) {
		c[i] = tc_new();
		snprintf(host, sizeof host, "p%d", i);
		tc_join(t, c[i], host, t->key, &r);
		assert_int_equal(r.status, CTL_REG_OK);
	}
	tc_src = 0;
	pump(t, 200);
	struct ctl_server_stats st;
	ctl_server_get_stats(t->srv, &st);
	assert_int_equal(st.nodes_online, N);
	for (int i = 0; i < N; i++)
		tc_free(c[i]);
}

int main(void)
{
#ifdef M_PERTURB
	/* Memory malloc hands out reads 0xc0c0..., memory it took back reads
	 * 0x3f3f... (a big id, a non-zero family), and all of it comes from
	 * the heap (no mmap's zeroed pages), whose top is such memory: a node
	 * array that grows in place gets the 0x3f bytes. */
	mallopt(M_PERTURB, 0x3f);
	mallopt(M_MMAP_MAX, 0);
	free(malloc(16u << 20));
#endif
	log_set_level(LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(node_past_shared_cap_from_one_address, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
