/* Selector text: port lists, mesh addresses and CIDRs, names. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/policy_int.h"

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool pol_name_valid(const char *s, size_t n)
{
	if (n == 0 || n > POLICY_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(s[i]))
			return false;
	return true;
}

bool pol_user_valid(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at)
		return pol_name_valid(s, strlen(s));
	size_t n = strlen(s);
	return n <= POLICY_MAX_NAME && pol_name_valid(s, (size_t)(at - s)) &&
	       pol_name_valid(at + 1, n - (size_t)(at - s) - 1);
}

/* One decimal port 0..65535 in s[0..n). */
static bool port_num(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static int ports_cmp(const void *a, const void *b)
{
	const struct policy_ports *x = a, *y = b;
	return x->lo != y->lo ? (x->lo < y->lo ? -1 : 1)
	                      : (x->hi > y->hi) - (x->hi < y->hi);
}

const char *pol_parse_ports(const char *s, struct policy_ports *out, uint32_t cap,
                            uint32_t *n)
{
	*n = 0;
	if (!strcmp(s, "*")) {
		out[0] = (struct policy_ports){0, 65535};
		*n = 1;
		return NULL;
	}
	if (!*s)
		return "no ports after the ':' (write * for all ports)";
	while (*s) {
		size_t len = strcspn(s, ",");
		const char *dash = memchr(s, '-', len);
		uint16_t lo, hi;
		if (len == 0)
			return "an empty entry in the port list";
		if (*n == cap)
			return "too many entries in one port list";
		if (dash) {
			if (!port_num(s, (size_t)(dash - s), &lo) ||
			    !port_num(dash + 1, len - (size_t)(dash - s) - 1, &hi))
				return "a port range is not FIRST-LAST with ports "
				       "1-65535";
			if (lo > hi)
				return "a port range ends before it starts";
		} else if (!port_num(s, len, &lo)) {
			return "a port is not a number from 1 to 65535 (or *)";
		} else {
			hi = lo;
		}
		if (lo == 0)
			return "port 0 is not a port (ports are 1-65535; * means all)";
		out[(*n)++] = (struct policy_ports){lo, hi};
		s += len;
		if (*s == ',' && !*++s)
			return "the port list ends with a ','";
	}
	qsort(out, *n, sizeof *out, ports_cmp);
	uint32_t o = 0;
	for (uint32_t i = 1; i < *n; i++) {
		if ((uint32_t)out[i].lo <= (uint32_t)out[o].hi + 1) {
			if (out[i].hi > out[o].hi)
				out[o].hi = out[i].hi;
		} else {
			out[++o] = out[i];
		}
	}
	*n = o + 1;
	return NULL;
}

/* 100.64.0.0/10 and fd00::/8 as 128-bit intervals. */
static bool in_mesh(const struct pol_iv *iv)
{
	struct policy_ip a;
	uint8_t v6[16] = {0xfd};
	policy_ip_v4(&a, 0x64400000u);
	struct pol_iv m4 = pol_iv_prefix(&a, 96 + 10);
	policy_ip_v6(&a, v6);
	struct pol_iv m6 = pol_iv_prefix(&a, 8);
	return (pol_iv_contains(&m4, iv->lo) && pol_iv_contains(&m4, iv->hi)) ||
	       (pol_iv_contains(&m6, iv->lo) && pol_iv_contains(&m6, iv->hi));
}

const char *pol_parse_prefix(const char *s, struct pol_iv *iv, bool *single)
{
	char buf[64];
	size_t n = strcspn(s, "/");
	if (n >= sizeof buf)
		return "not an address";
	memcpy(buf, s, n);
	buf[n] = 0;
	struct policy_ip ip;
	unsigned bits, max;
	struct in_addr a4;
	uint8_t a6[16];
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		policy_ip_v4(&ip, ntohl(a4.s_addr));
		max = 32;
	} else if (inet_pton(AF_INET6, buf, a6) == 1) {
		policy_ip_v6(&ip, a6);
		max = 128;
	} else {
		return "not an address";
	}
	*single = s[n] == 0;
	bits = max;
	if (!*single) {
		const char *b = s + n + 1;
		if (!*b || strlen(b) > 3 || strspn(b, "0123456789") != strlen(b))
			return "the prefix length after '/' is not a number";
		bits = (unsigned)atoi(b);
		if (bits > max)
			return max == 32 ? "the prefix length is over 32"
			                 : "the prefix length is over 128";
	}
	if (bits == 0)
		return "a /0 prefix means every address: write * for everyone";
	unsigned bits128 = max == 32 ? bits + 96 : bits;
	*iv = pol_iv_prefix(&ip, bits128);
	if (pol_u128_cmp(iv->lo, pol_u128_from_ip(&ip)) != 0)
		return "the address has bits set after the prefix length (write the "
		       "network "
		       "address, e.g. 100.64.1.0/24)";
	if (!in_mesh(iv))
		return "not in the mesh's addresses (100.64.0.0/10, or fd00::/8 where "
		       "each "
		       "mesh's IPv6 /48 lies); the mesh carries no others";
	return NULL;
}
