/* Where Direct may connect from the host. A front-end that dials a
 * destination no mesh peer routes does so from this host, with this host's
 * rights: its loopback services, its cloud metadata endpoint and its LAN
 * answer as they would to a local program. So some destinations are never
 * allowed, whatever Direct says (this host's own addresses included: a
 * connection to its LAN address reaches whatever listens on 0.0.0.0), and
 * the private ranges only with Direct = all. Embedded IPv4 (::ffff:a.b.c.d,
 * ::ffff:0:a.b.c.d, ::a.b.c.d, 64:ff9b::/96, 64:ff9b:1::/48, 2002::/16) is
 * judged as the IPv4 address it reaches. */
#include "proxy/internal.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

struct range {
	uint8_t addr[16];
	uint8_t bits;
	const char *why;
};

/* Never, in any mode (IPv4). */
static const struct range never4[] = {
    {{0, 0, 0, 0}, 8, "an unspecified address"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 169, 254}, 32, "the cloud metadata service"},
    {{100, 100, 100, 200}, 32, "the cloud metadata service"},
    {{168, 63, 129, 16}, 32, "the cloud metadata service"}, /* Azure WireServer */
    {{169, 254, 0, 0}, 16, "link-local"},
    {{224, 0, 0, 0}, 4, "multicast"},
    {{240, 0, 0, 0}, 4, "a reserved or broadcast address"},
};
/* Only with Direct = all (IPv4). 198.18.0.0/15 (benchmarking) counts as
 * public: test labs use it for their public addresses. */
static const struct range private4[] = {
    {{10, 0, 0, 0}, 8, NULL},
    {{172, 16, 0, 0}, 12, NULL},
    {{192, 168, 0, 0}, 16, NULL},
    {{100, 64, 0, 0}, 10, NULL}, /* carrier-grade NAT, RFC 6598 */
};
static const struct range never6[] = {
    {{0}, 128, "an unspecified address"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
      0x54}, /* fd00:ec2::254 */
     128,
     "the cloud metadata service"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xff}, 8, "multicast"},
};
static const struct range private6[] = {
    {{0xfc}, 7, NULL},              /* unique local */
    {{0xfe, 0xc0}, 10, NULL},       /* site-local (deprecated) */
    {{0x20, 0x01, 0, 0}, 32, NULL}, /* Teredo: a tunnel to who knows where */
};

static bool in_prefix(const uint8_t *a, const uint8_t *p, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a, p, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (p[whole] & mask);
}

static const char *match(const uint8_t *a, const struct range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (in_prefix(a, r[i].addr, r[i].bits))
			return r[i].why ? r[i].why : "a private range (Direct = public)";
	return NULL;
}

/* The IPv4 address an IPv6 address carries, if it is one of the forms a
 * host, a translator (SIIT, NAT64, also the local-use 64:ff9b:1::/48) or a
 * 6to4 relay turns into IPv4. */
static bool embedded_v4(const uint8_t *a, uint8_t out[4])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
	static const uint8_t compat[12] = {0};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
	static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 1};
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, siit, 12) == 0 ||
	    memcmp(a, nat64, 12) == 0 || memcmp(a, nat64_local, 6) == 0 ||
	    (memcmp(a, compat, 12) == 0 && (a[12] | a[13]) != 0)) {
		memcpy(out, a + 12, 4);
		return true;
	}
	if (a[0] == 0x20 && a[1] == 0x02) { /* 6to4: 2002:AABB:CCDD::/48 */
		memcpy(out, a + 2, 4);
		return true;
	}
	return false;
}

bool px_host_address(const struct ns_addr *a)
{
	struct ifaddrs *ifa = NULL;
	bool found = false;
	if (getifaddrs(&ifa) != 0)
		return false;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != a->family)
			continue;
		if (a->family == AF_INET)
			found = memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr,
			               a->addr, 4) == 0;
		else
			found = memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
			               a->addr, 16) == 0;
	}
	freeifaddrs(ifa);
	return found;
}

bool px_in_own_prefixes(const struct ns_addr *a, const struct px_env *env)
{
	for (size_t i = 0; i < env->n_own; i++)
		if (env->own[i].family == a->family &&
		    in_prefix(a->addr, env->own[i].addr, env->own[i].bits))
			return true;
	uint8_t v4[4];
	if (a->family == AF_INET6 && embedded_v4(a->addr, v4)) {
		/* ::a.b.c.d, NAT64, 6to4...: reach the IPv4 address inside. */
		struct ns_addr inner = {.family = AF_INET};
		memcpy(inner.addr, v4, 4);
		return px_in_own_prefixes(&inner, env);
	}
	return false;
}

static const char *own_range(int family, const uint8_t *a, const struct px_prefix *own,
                             size_t n_own)
{
	for (size_t i = 0; i < n_own; i++)
		if (own[i].family == family && in_prefix(a, own[i].addr, own[i].bits))
			return "this mesh's own addresses";
	return NULL;
}

const char *px_direct_refusal(enum cfg_direct d, const struct ns_addr *a,
                              const struct px_env *env)
{
	const struct px_prefix *own = env->own;
	size_t n_own = env->n_own;
	if (d != CFG_DIRECT_PUBLIC && d != CFG_DIRECT_ALL)
		return "Direct = no";
	const char *why = NULL;
	if (a->family == AF_INET6) {
		uint8_t v4[4];
		if (embedded_v4(a->addr, v4)) {
			struct ns_addr inner = {.family = AF_INET};
			memcpy(inner.addr, v4, 4);
			if ((why = own_range(AF_INET6, a->addr, own, n_own)))
				return why;
			return px_direct_refusal(d, &inner, env);
		}
		if (env->direct_loopback_for_tests && IN6_IS_ADDR_LOOPBACK(a->addr))
			return NULL;
		if ((why = match(a->addr, never6, sizeof(never6) / sizeof(never6[0]))) ||
		    (why = own_range(AF_INET6, a->addr, own, n_own)))
			return why;
		if (px_host_address(a))
			return "this host's own address";
		if (d == CFG_DIRECT_PUBLIC)
			return match(a->addr, private6,
			             sizeof(private6) / sizeof(private6[0]));
		return NULL;
	}
	if (a->family != AF_INET)
		return "an unknown address family";
	if (env->direct_loopback_for_tests && a->addr[0] == 127)
		return NULL;
	if ((why = match(a->addr, never4, sizeof(never4) / sizeof(never4[0]))) ||
	    (why = own_range(AF_INET, a->addr, own, n_own)))
		return why;
	if (px_host_address(a))
		return "this host's own address";
	if (d == CFG_DIRECT_PUBLIC)
		return match(a->addr, private4, sizeof(private4) / sizeof(private4[0]));
	return NULL;
}
