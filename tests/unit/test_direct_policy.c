/* proxy/direct_policy: where Direct may connect from the host. Never
 * loopback, unspecified, link-local, cloud metadata, multicast, broadcast
 * or reserved addresses, nor the mesh's own prefixes, in any mode and
 * behind any IPv6 form that carries IPv4; private ranges only with
 * Direct = all; nothing with Direct = no. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include "proxy/internal.h"

static struct px_env env;

static struct ns_addr addr(const char *s)
{
	struct ns_addr a = {0};
	if (inet_pton(AF_INET, s, a.addr) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, s, a.addr) == 1)
		a.family = AF_INET6;
	else
		fail_msg("bad address in the test: %s", s);
	return a;
}

/* The refusal for s under d, "" when allowed. */
static const char *why(enum cfg_direct d, const char *s)
{
	struct ns_addr a = addr(s);
	const char *w = px_direct_refusal(d, &a, &env);
	return w ? w : "";
}

static void test_never(void **st)
{
	static const struct {
		const char *a, *why;
	} cases[] = {
	    {"127.0.0.1", "loopback"},
	    {"127.1.2.3", "loopback"},
	    {"::1", "loopback"},
	    {"::ffff:127.0.0.1", "loopback"}, /* IPv4-mapped */
	    {"::127.0.0.1", "loopback"},      /* IPv4-compatible */
	    {"64:ff9b::7f00:1", "loopback"},  /* NAT64 */
	    {"0.0.0.0", "an unspecified address"},
	    {"::", "an unspecified address"},
	    {"169.254.169.254", "the cloud metadata service"},
	    {"::ffff:169.254.169.254", "the cloud metadata service"},
	    {"fd00:ec2::254", "the cloud metadata service"},
	    {"100.100.100.200", "the cloud metadata service"},
	    {"169.254.1.1", "link-local"},
	    {"fe80::1", "link-local"},
	    {"febf::1", "link-local"},
	    {"224.0.0.1", "multicast"},
	    {"239.255.255.250", "multicast"},
	    {"ff02::1", "multicast"},
	    {"255.255.255.255", "a reserved or broadcast address"},
	    {"240.0.0.1", "a reserved or broadcast address"},
	};
	(void)st;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_string_equal(why(CFG_DIRECT_ALL, cases[i].a), cases[i].why);
		assert_string_equal(why(CFG_DIRECT_PUBLIC, cases[i].a), cases[i].why);
		assert_string_equal(why(CFG_DIRECT_NO, cases[i].a), "Direct = no");
	}
}

static void test_private_only_with_all(void **st)
{
	/* RFC 1918 on purpose: the test is about private ranges */
	static const char *const priv[] = {
	    "10.0.0.1",     "10.255.255.255", "172.16.0.1",      "172.31.255.254",
	    "192.168.1.1",  "100.64.0.1",     "100.127.1.1",     "fc00::1",
	    "fd12:3456::1", "fec0::1",        "::ffff:10.1.2.3",
	};
	(void)st;
	for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
		assert_string_equal(why(CFG_DIRECT_ALL, priv[i]), "");
		assert_string_equal(why(CFG_DIRECT_PUBLIC, priv[i]),
		                    "a private range (Direct = public)");
	}
	/* Just outside the private ranges: public. */
	static const char *const pub[] = {
	    "11.0.0.1",       "172.15.255.255",  "172.32.0.1",     "192.169.0.1",
	    "100.63.255.255", "100.128.0.1",     "198.18.0.1",     "2001:db8::1",
	    "8.8.8.8",        "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
	};
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++) {
		assert_string_equal(why(CFG_DIRECT_PUBLIC, pub[i]), "");
		assert_string_equal(why(CFG_DIRECT_ALL, pub[i]), "");
		assert_string_equal(why(CFG_DIRECT_NO, pub[i]), "Direct = no");
		assert_string_equal(why(CFG_DIRECT_UNSET, pub[i]), "Direct = no");
	}
}

static void test_own_prefixes(void **st)
{
	(void)st;
	struct ns_addr a = addr("198.18.7.0");
	env.own[0] = (struct px_prefix){.family = AF_INET, .bits = 24};
	memcpy(env.own[0].addr, a.addr, 4);
	a = addr("fd7a:115c:a1e0::");
	env.own[1] = (struct px_prefix){.family = AF_INET6, .bits = 48};
	memcpy(env.own[1].addr, a.addr, 16);
	env.n_own = 2;
	assert_string_equal(why(CFG_DIRECT_ALL, "198.18.7.9"),
	                    "this mesh's own addresses");
	assert_string_equal(why(CFG_DIRECT_ALL, "::ffff:198.18.7.9"),
	                    "this mesh's own addresses");
	assert_string_equal(why(CFG_DIRECT_ALL, "198.18.8.1"), "");
	assert_string_equal(why(CFG_DIRECT_ALL, "fd7a:115c:a1e0:ab12::1"),
	                    "this mesh's own addresses");
	assert_string_equal(why(CFG_DIRECT_ALL, "fd7a:115c:a1e1::1"), "");
	/* Review dns L7: the filter for the host's DNS answers sees the same
	 * embedded forms the policy unwraps. */
	const char *in[] = {"198.18.7.9",         "::ffff:198.18.7.9",
	                    "64:ff9b::198.18.7.9", "64:ff9b:1::c612:709",
	                    "::198.18.7.9",        "2002:c612:709::1",
	                    "::ffff:0:198.18.7.9", "fd7a:115c:a1e0::5"};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct ns_addr x = addr(in[i]);
		if (!px_in_own_prefixes(&x, &env))
			fail_msg("%s: not seen as our own", in[i]);
	}
	const char *out[] = {"198.18.8.1", "64:ff9b::198.18.8.1", "2002:c612:801::1",
	                     "fd7a:115c:a1e1::1", "2001:db8::c612:709"};
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
		struct ns_addr x = addr(out[i]);
		if (px_in_own_prefixes(&x, &env))
			fail_msg("%s: seen as our own", out[i]);
	}
	env.n_own = 0;
}

/* This host's own addresses reach what listens on 0.0.0.0: refused like
 * loopback (each non-loopback interface address of the test machine). */
static void test_host_addresses(void **st)
{
	(void)st;
	struct ifaddrs *ifa = NULL, *i;
	assert_int_equal(getifaddrs(&ifa), 0);
	int seen = 0;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
		                     i->ifa_addr->sa_family != AF_INET6))
			continue;
		struct ns_addr a = {.family = i->ifa_addr->sa_family};
		if (a.family == AF_INET)
			memcpy(a.addr, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
		else
			memcpy(a.addr, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
			       16);
		const char *w = px_direct_refusal(CFG_DIRECT_ALL, &a, &env);
		assert_non_null(w); /* loopback, link-local, or this host's own */
		if (strcmp(w, "this host's own address") == 0)
			seen++;
	}
	freeifaddrs(ifa);
	if (seen == 0)
		print_message("note: no global interface address here to try\n");
}

/* The unit tests' leave covers 127/8 and ::1 only: metadata and
 * link-local stay refused. */
static void test_loopback_leave_is_narrow(void **st)
{
	(void)st;
	env.direct_loopback_for_tests = true;
	assert_string_equal(why(CFG_DIRECT_ALL, "127.0.0.1"), "");
	assert_string_equal(why(CFG_DIRECT_ALL, "::1"), "");
	assert_string_equal(why(CFG_DIRECT_ALL, "fe80::1"), "link-local");
	assert_string_equal(why(CFG_DIRECT_NO, "::1"), "Direct = no");
	assert_string_equal(why(CFG_DIRECT_ALL, "169.254.169.254"),
	                    "the cloud metadata service");
	assert_string_equal(why(CFG_DIRECT_NO, "127.0.0.1"), "Direct = no");
	env.direct_loopback_for_tests = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_never),
	    cmocka_unit_test(test_private_only_with_all),
	    cmocka_unit_test(test_own_prefixes),
	    cmocka_unit_test(test_loopback_leave_is_narrow),
	    cmocka_unit_test(test_host_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
