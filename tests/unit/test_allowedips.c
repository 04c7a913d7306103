/* Allowed-IPs: longest-prefix-match edge cases, replacement, removal, and a
 * randomized cross-check against a linear scan for IPv4 and IPv6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <sys/socket.h>

#include "core/wg/allowedips.h"

static int peers[64];
#define P(i) ((void *)&peers[i])

static void ins(struct wg_allowedips *t, const char *ip, uint8_t cidr, void *peer)
{
	uint8_t a[16];
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(fam, ip, a), 1);
	assert_int_equal(wg_allowedips_insert(t, fam, a, cidr, peer), 0);
}

static void *look(const struct wg_allowedips *t, const char *ip)
{
	uint8_t a[16];
	int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(fam, ip, a), 1);
	return wg_allowedips_lookup(t, fam, a);
}

static void empty_table_matches_nothing(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	assert_non_null(t);
	assert_null(look(t, "0.0.0.0"));
	assert_null(look(t, "255.255.255.255"));
	assert_null(look(t, "::"));
	assert_null(look(t, "ffff::1"));
	wg_allowedips_remove_by_peer(t, P(1));
	wg_allowedips_free(t);
	wg_allowedips_free(NULL);
}

static void default_routes_catch_all_per_family(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	ins(t, "0.0.0.0", 0, P(1));
	assert_ptr_equal(look(t, "1.2.3.4"), P(1));
	assert_ptr_equal(look(t, "255.255.255.255"), P(1));
	assert_null(look(t, "::1")); /* families are separate */
	ins(t, "::", 0, P(2));
	assert_ptr_equal(look(t, "2001:db8::1"), P(2));
	assert_ptr_equal(look(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), P(2));
	assert_ptr_equal(look(t, "100.64.0.1"), P(1));
	wg_allowedips_free(t);
}

static void host_routes_match_exactly(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	ins(t, "100.65.2.3", 32, P(1));
	ins(t, "2001:db8::7", 128, P(2));
	assert_ptr_equal(look(t, "100.65.2.3"), P(1));
	assert_null(look(t, "100.65.2.2"));
	assert_null(look(t, "100.65.2.4"));
	assert_null(look(t, "138.1.2.3")); /* differs only in the top bit */
	assert_ptr_equal(look(t, "2001:db8::7"), P(2));
	assert_null(look(t, "2001:db8::6"));
	assert_null(look(t, "2001:db8::8"));
	ins(t, "255.255.255.255", 32, P(3));
	ins(t, "0.0.0.0", 32, P(4));
	assert_ptr_equal(look(t, "255.255.255.255"), P(3));
	assert_ptr_equal(look(t, "0.0.0.0"), P(4));
	assert_null(look(t, "0.0.0.1"));
	wg_allowedips_free(t);
}

static void longest_prefix_wins_among_overlaps(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	/* Insert in an order that forces glue nodes and re-parenting. */
	ins(t, "100.65.1.0", 24, P(3));
	ins(t, "100.64.0.0", 10, P(1));
	ins(t, "100.65.0.0", 16, P(2));
	ins(t, "100.65.1.128", 25, P(4));
	ins(t, "100.65.1.7", 32, P(5));
	ins(t, "100.66.0.0", 16, P(6));
	assert_ptr_equal(look(t, "100.73.9.9"), P(1));
	assert_ptr_equal(look(t, "100.65.9.9"), P(2));
	assert_ptr_equal(look(t, "100.65.1.1"), P(3));
	assert_ptr_equal(look(t, "100.65.1.200"), P(4));
	assert_ptr_equal(look(t, "100.65.1.7"), P(5));
	assert_ptr_equal(look(t, "100.66.255.1"), P(6));
	assert_null(look(t, "11.0.0.0"));
	assert_null(look(t, "9.255.255.255"));

	ins(t, "2001:db8::", 32, P(7));
	ins(t, "2001:db8:1::", 48, P(8));
	ins(t, "2001:db8:1:2::", 64, P(9));
	ins(t, "2001:db8:1:2:3::", 80, P(10));
	assert_ptr_equal(look(t, "2001:db8:ffff::1"), P(7));
	assert_ptr_equal(look(t, "2001:db8:1:ffff::1"), P(8));
	assert_ptr_equal(look(t, "2001:db8:1:2:ffff::1"), P(9));
	assert_ptr_equal(look(t, "2001:db8:1:2:3::1"), P(10));
	assert_null(look(t, "2001:db9::1"));
	wg_allowedips_free(t);
}

static void host_bits_are_masked(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	ins(t, "198.19.1.77", 24, P(1));
	assert_ptr_equal(look(t, "198.19.1.1"), P(1));
	/* Same prefix written differently replaces, not duplicates. */
	ins(t, "198.19.1.200", 24, P(2));
	assert_ptr_equal(look(t, "198.19.1.77"), P(2));
	ins(t, "2001:db8::dead:beef", 64, P(3));
	assert_ptr_equal(look(t, "2001:db8::1"), P(3));
	wg_allowedips_free(t);
}

static void insert_replaces_peer(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	ins(t, "100.64.0.0", 10, P(1));
	ins(t, "100.64.0.0", 16, P(2));
	ins(t, "100.64.0.0", 10, P(3));
	assert_ptr_equal(look(t, "100.69.0.0"), P(3));
	assert_ptr_equal(look(t, "100.64.5.0"), P(2));
	/* The old peer has nothing left to remove. */
	wg_allowedips_remove_by_peer(t, P(1));
	assert_ptr_equal(look(t, "100.69.0.0"), P(3));
	wg_allowedips_free(t);
}

static void remove_by_peer_keeps_others(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	ins(t, "0.0.0.0", 0, P(1));
	ins(t, "100.64.0.0", 10, P(2));
	ins(t, "100.65.0.0", 16, P(1));
	ins(t, "100.65.1.0", 24, P(2));
	ins(t, "100.96.0.0", 11, P(3));
	ins(t, "::", 0, P(1));
	ins(t, "fd00::", 8, P(2));
	wg_allowedips_remove_by_peer(t, P(1));
	assert_null(look(t, "8.8.8.8"));
	assert_ptr_equal(look(t, "100.65.2.3"), P(2)); /* falls back to /10 */
	assert_ptr_equal(look(t, "100.65.1.3"), P(2));
	assert_ptr_equal(look(t, "100.100.0.1"), P(3));
	assert_null(look(t, "2001::1"));
	assert_ptr_equal(look(t, "fd00::1"), P(2));
	wg_allowedips_remove_by_peer(t, P(2));
	assert_null(look(t, "100.65.1.3"));
	assert_ptr_equal(look(t, "100.100.0.1"), P(3));
	assert_null(look(t, "fd00::1"));
	wg_allowedips_remove_by_peer(t, P(3));
	assert_null(look(t, "100.100.0.1"));
	/* The emptied table is reusable. */
	ins(t, "100.64.0.0", 10, P(4));
	assert_ptr_equal(look(t, "100.65.1.3"), P(4));
	wg_allowedips_free(t);
}

static void bad_arguments_are_rejected(void **state)
{
	struct wg_allowedips *t = wg_allowedips_new();
	uint8_t a[16] = {0};
	assert_int_equal(wg_allowedips_insert(t, AF_INET, a, 33, P(1)), -EINVAL);
	assert_int_equal(wg_allowedips_insert(t, AF_INET6, a, 129, P(1)), -EINVAL);
	assert_int_equal(wg_allowedips_insert(t, AF_UNIX, a, 8, P(1)), -EINVAL);
	assert_int_equal(wg_allowedips_insert(t, AF_INET, a, 8, NULL), -EINVAL);
	assert_null(wg_allowedips_lookup(t, AF_UNIX, a));
	wg_allowedips_free(t);
}

/* ---- randomized cross-check against a linear scan ---- */

struct ref_entry {
	uint8_t addr[16];
	uint8_t cidr;
	void *peer;
};

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned cidr)
{
	unsigned full = cidr / 8, rem = cidr % 8;
	if (memcmp(a, b, full) != 0)
		return false;
	if (rem == 0)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - rem));
	return (a[full] & m) == (b[full] & m);
}

static void *ref_lookup(const struct ref_entry *r, size_t n, const uint8_t *addr)
{
	int best = -1;
	void *peer = NULL;
	for (size_t i = 0; i < n; i++) {
		if (r[i].peer != NULL && (int)r[i].cidr > best &&
		    prefix_match(r[i].addr, addr, r[i].cidr)) {
			best = r[i].cidr;
			peer = r[i].peer;
		}
	}
	return peer;
}

static void ref_insert(struct ref_entry *r, size_t *n, const uint8_t *addr, size_t alen,
                       uint8_t cidr, void *peer)
{
	struct ref_entry e = {.cidr = cidr, .peer = peer};
	memcpy(e.addr, addr, alen);
	/* Mask host bits so equal prefixes compare equal. */
	for (unsigned bit = cidr; bit < alen * 8; bit++)
		e.addr[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
	for (size_t i = 0; i < *n; i++) {
		if (r[i].cidr == cidr && memcmp(r[i].addr, e.addr, alen) == 0) {
			r[i].peer = peer;
			return;
		}
	}
	r[(*n)++] = e;
}

/* Random addresses clustered under a few top bytes so prefixes overlap. */
static void random_addr(uint8_t *a, size_t alen)
{
	for (size_t i = 0; i < alen; i++)
		a[i] = (uint8_t)rng();
	a[0] = (uint8_t)(rng() % 64);
	if (rng() % 2)
		a[1] = (uint8_t)(rng() % 4);
}

static void cross_check_family(int family, size_t alen, size_t nprefix, size_t nlookup)
{
	struct ref_entry *ref = test_calloc(nprefix, sizeof(*ref));
	size_t nref = 0;
	struct wg_allowedips *t = wg_allowedips_new();
	uint8_t a[16];

	for (size_t i = 0; i < nprefix; i++) {
		random_addr(a, alen);
		/* /6 up to the full length, so that lookups outside 0.0.0.0/2
		 * (or ::/2) miss; /0 and other short ones have their own tests. */
		uint8_t cidr = (uint8_t)(6 + rng() % (alen * 8 - 5));
		void *peer = P(rng() % 16);
		assert_int_equal(wg_allowedips_insert(t, family, a, cidr, peer), 0);
		ref_insert(ref, &nref, a, alen, cidr, peer);
	}

	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < nlookup; i++) {
			if (rng() % 2 && nref > 0) {
				/* Near a stored prefix: its bits plus random host bits.
				 */
				const struct ref_entry *e = &ref[rng() % nref];
				random_addr(a, alen);
				for (unsigned bit = 0; bit < e->cidr; bit++) {
					uint8_t m = (uint8_t)(0x80 >> (bit % 8));
					a[bit / 8] = (uint8_t)((a[bit / 8] & ~m) |
					                       (e->addr[bit / 8] & m));
				}
			} else if (rng() % 2) {
				random_addr(a, alen);
			} else {
				/* Anywhere: mostly outside the clustered prefixes. */
				for (size_t j = 0; j < alen; j++)
					a[j] = (uint8_t)rng();
			}
			assert_ptr_equal(wg_allowedips_lookup(t, family, a),
			                 ref_lookup(ref, nref, a));
		}
		/* Drop a few peers and check again. */
		for (int k = 0; k < 4; k++) {
			void *victim = P(rng() % 16);
			wg_allowedips_remove_by_peer(t, victim);
			for (size_t i = 0; i < nref; i++)
				if (ref[i].peer == victim)
					ref[i].peer = NULL;
		}
	}
	wg_allowedips_free(t);
	test_free(ref);
}

static void random_ipv4_matches_linear_scan(void **state)
{
	cross_check_family(AF_INET, 4, 3000, 12000);
}

static void random_ipv6_matches_linear_scan(void **state)
{
	cross_check_family(AF_INET6, 16, 3000, 12000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(empty_table_matches_nothing),
	    cmocka_unit_test(default_routes_catch_all_per_family),
	    cmocka_unit_test(host_routes_match_exactly),
	    cmocka_unit_test(longest_prefix_wins_among_overlaps),
	    cmocka_unit_test(host_bits_are_masked),
	    cmocka_unit_test(insert_replaces_peer),
	    cmocka_unit_test(remove_by_peer_keeps_others),
	    cmocka_unit_test(bad_arguments_are_rejected),
	    cmocka_unit_test(random_ipv4_matches_linear_scan),
	    cmocka_unit_test(random_ipv6_matches_linear_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
