/* node/control_netchg.c: what the node does when its addresses change or
 * its state directory goes, on a node_ctl built by hand. getifaddrs is
 * wrapped (-Wl,--wrap=getifaddrs, Makefile) so that the host's "interfaces"
 * are what each test says, and so that it can fail as it does under
 * EMFILE or ENOMEM.
 *
 *  - A failed listing is no information: no loss acted on, the last list
 *    kept, no endpoints announced from it (nctl_gather_endpoints fails).
 *  - The whole set is compared, not the 15 announced: a 16th IPv4 address
 *    pushes no IPv6 one out into a false loss; a loss past the 15th is
 *    seen; more than NCTL_ADDRS_MAX is no information.
 *  - A lost address nothing of ours used (not announced, no connection
 *    from it) costs nothing; an announced one lost is acted on.
 *  - The state directory: a key file moved away and back, or missing from
 *    the same directory, does not stop the node; the directory replaced
 *    does, after two misses 2 s apart; an ephemeral node never stops. */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/control_int.h"

/* ---- the wrapped getifaddrs: a list of "198.18.x.y" / IPv6 strings ---- */

#define FAKE_MAX 320
static const char *fake[FAKE_MAX];
static size_t n_fake;
static int fake_errno; /* non-zero: getifaddrs fails with it */
static unsigned listings;

struct fake_ifa {
	struct ifaddrs ifa;
	struct sockaddr_storage ss;
};

int __wrap_getifaddrs(struct ifaddrs **out);
void __wrap_freeifaddrs(struct ifaddrs *ifa);

int __wrap_getifaddrs(struct ifaddrs **out)
{
	listings++;
	if (fake_errno) {
		errno = fake_errno;
		return -1;
	}
	struct ifaddrs *head = NULL;
	for (size_t i = n_fake; i-- > 0;) {
		struct fake_ifa *f = calloc(1, sizeof(*f));
		assert_non_null(f);
		f->ifa.ifa_name = "eth0";
		f->ifa.ifa_flags = IFF_UP;
		f->ifa.ifa_addr = (struct sockaddr *)&f->ss;
		if (strchr(fake[i], ':')) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->ss;
			s6->sin6_family = AF_INET6;
			assert_int_equal(inet_pton(AF_INET6, fake[i], &s6->sin6_addr), 1);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&f->ss;
			s4->sin_family = AF_INET;
			assert_int_equal(inet_pton(AF_INET, fake[i], &s4->sin_addr), 1);
		}
		f->ifa.ifa_next = head;
		head = &f->ifa;
	}
	*out = head;
	return 0;
}

void __wrap_freeifaddrs(struct ifaddrs *ifa)
{
	while (ifa) {
		struct ifaddrs *next = ifa->ifa_next;
		free(ifa); /* the fake_ifa starts with it */
		ifa = next;
	}
}

/* ---- a node_ctl by hand ---- */

static struct node_ctl *m;
static struct node_ctl_prep *prep;
static int stopped_rc = -1;
static char dir[64], keyfile[96];

static void on_stop(void *ctx, int rc)
{
	(void)ctx;
	stopped_rc = rc;
}

/* The announced endpoints as nctl_endpoints would set them. */
static void announce(void)
{
	assert_int_equal(nctl_gather_endpoints(41641, &m->local_eps), 0);
}

static int setup(void **state)
{
	(void)state;
	m = calloc(1, sizeof(*m));
	prep = calloc(1, sizeof(*prep));
	assert_true(m && prep);
	m->p = prep;
	m->hooks.stop = on_stop;
	stopped_rc = -1;
	n_fake = 0;
	fake_errno = 0;
	dir[0] = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (dir[0]) {
		unlink(keyfile);
		rmdir(dir);
	}
	free(m);
	free(prep);
	return 0;
}

static void failed_listing_is_no_information(void **state)
{
	fake[0] = "198.18.5.1";
	fake[1] = "2001:db8::1";
	n_fake = 2;
	announce();
	nctl_netchg_check(m);
	assert_true(m->netchg_have);
	assert_int_equal(m->netchg_addrs.n, 2);

	fake_errno = EMFILE;
	struct ctl_endpoints eps;
	assert_int_equal(nctl_gather_endpoints(41641, &eps), -EMFILE);
	nctl_netchg_check(m);
	fake_errno = ENOMEM;
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 0);
	assert_int_equal(m->netchg_addrs.n, 2); /* the last list kept */
	assert_int_equal(m->netchg_unknown, 2);

	fake_errno = 0;
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 0);
	assert_int_equal(m->netchg_unknown, 0);

	/* A real loss after all that is still seen. */
	n_fake = 1;
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 1);
}

static char v4[FAKE_MAX][48];

static void set_v4(size_t n, size_t first)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(v4[i], sizeof(v4[i]), "198.18.%zu.%zu", (first + i) / 200,
		         (first + i) % 200 + 1);
		fake[i] = v4[i];
	}
	n_fake = n;
}

static void whole_set_compared(void **state)
{
	/* 14 IPv4 and one IPv6: all 15 announced. */
	set_v4(14, 0);
	fake[n_fake++] = "2001:db8::1";
	announce();
	assert_int_equal(m->local_eps.n, 16); /* and 127.0.0.1 */
	nctl_netchg_check(m);
	/* A 15th IPv4 one: the IPv6 one leaves the announced cut, but it is
	 * not gone. */
	set_v4(15, 0);
	fake[n_fake++] = "2001:db8::1";
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 0);
	announce();

	/* 40 addresses; the 30th goes: seen as lost, but nothing announced
	 * nor connected used it. */
	set_v4(40, 100);
	nctl_netchg_check(m); /* the first 15 gone: announced ones */
	assert_int_equal(m->net_changes, 1);
	announce();
	struct nctl_addrs was = m->netchg_addrs, lost;
	fake[29] = "198.18.99.99";
	nctl_netchg_check(m);
	struct nctl_addrs now = m->netchg_addrs;
	assert_int_equal(nctl_addrs_lost(&was, &now, &lost), 1);
	assert_int_equal(lost.a[0].family, 4);
	assert_int_equal(m->net_changes, 1); /* not announced: nothing redone */

	/* Over the bound: no information, the last list kept. */
	set_v4(NCTL_ADDRS_MAX + 10, 0);
	nctl_netchg_check(m);
	assert_int_equal(m->netchg_unknown, 1);
	assert_int_equal(m->netchg_addrs.n, 40);
	assert_int_equal(m->net_changes, 1);
	/* ... though the first 15 are still announced */
	struct ctl_endpoints eps;
	assert_int_equal(nctl_gather_endpoints(41641, &eps), 0);
	assert_int_equal(eps.n, 16);
}

static void unrelated_loss_costs_nothing(void **state)
{
	/* A docker bridge's address past the announced 15 goes, then
	 * another VPN's: nothing of ours used them. */
	set_v4(15, 0);
	fake[n_fake++] = "198.18.200.1";
	fake[n_fake++] = "2001:db8::99";
	announce();
	nctl_netchg_check(m);
	n_fake -= 2;
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 0);
	assert_int_equal(m->netchg_ctl_redials, 0);
	assert_int_equal(m->netchg_relay_redials, 0);
	/* An announced one goes: acted on. */
	n_fake--;
	nctl_netchg_check(m);
	assert_int_equal(m->net_changes, 1);
}

static void state_dir_made(void)
{
	snprintf(dir, sizeof(dir), "/tmp/netchg-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(keyfile, sizeof(keyfile), "%s/machine.key", dir);
	FILE *f = fopen(keyfile, "w");
	assert_non_null(f);
	fputs("k\n", f);
	fclose(f);
	prep->a.state_dir = dir;
}

/* As if the second check came 2 s after the first (the tick's period). */
static void two_checks(void)
{
	nctl_netchg_check(m);
	m->state_miss_ms -= 2000;
	nctl_netchg_check(m);
}

static void state_dir_rules(void **state)
{
	char moved[128];
	state_dir_made();
	nctl_netchg_check(m);
	assert_true(m->state_seen);

	/* The key moved away and back between two checks: runs on. */
	snprintf(moved, sizeof(moved), "%s.away", dir);
	assert_int_equal(rename(keyfile, moved), 0);
	nctl_netchg_check(m);
	assert_int_equal(rename(moved, keyfile), 0);
	nctl_netchg_check(m);
	m->state_miss_ms -= 2000;
	nctl_netchg_check(m);
	assert_int_equal(stopped_rc, -1);

	/* Missing for long, the directory the same: runs on. */
	assert_int_equal(rename(keyfile, moved), 0);
	two_checks();
	nctl_netchg_check(m);
	assert_int_equal(stopped_rc, -1);

	/* Two misses, but not 2 s apart: runs on. */
	m->state_misses = 0;
	assert_int_equal(rmdir(dir), 0);
	nctl_netchg_check(m);
	nctl_netchg_check(m);
	assert_int_equal(stopped_rc, -1);
	/* The directory gone, 2 s on: stops. */
	m->state_miss_ms -= 2000;
	nctl_netchg_check(m);
	assert_int_equal(stopped_rc, 1);
	unlink(moved);
	dir[0] = 0;
}

static void state_dir_replaced_stops(void **state)
{
	state_dir_made();
	nctl_netchg_check(m);
	/* Another, empty directory at the same path (a volume remounted
	 * empty): made while the old one lives, so another inode. */
	char other[64];
	snprintf(other, sizeof(other), "/tmp/netchg-test-XXXXXX");
	assert_non_null(mkdtemp(other));
	unlink(keyfile);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(rename(other, dir), 0);
	two_checks();
	assert_int_equal(stopped_rc, 1);
}

static void ephemeral_never_stops(void **state)
{
	state_dir_made();
	prep->a.ephemeral = true;
	nctl_netchg_check(m);
	unlink(keyfile);
	assert_int_equal(rmdir(dir), 0);
	two_checks();
	nctl_netchg_check(m);
	assert_int_equal(stopped_rc, -1);
	dir[0] = 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(failed_listing_is_no_information, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(whole_set_compared, setup, teardown),
	    cmocka_unit_test_setup_teardown(unrelated_loss_costs_nothing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(state_dir_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(state_dir_replaced_stops, setup, teardown),
	    cmocka_unit_test_setup_teardown(ephemeral_never_stops, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
