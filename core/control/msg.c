/* Control messages: names, freeing, address text forms and name syntax.
 * The JSON codec itself is in msg_decode.c and msg_encode.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "core/control/msg_int.h"

const char *ctl_msg_type_name(unsigned type)
{
	switch (type) {
	case CTL_MSG_REGISTER_REQ:
		return "REGISTER_REQ";
	case CTL_MSG_REGISTER_RESP:
		return "REGISTER_RESP";
	case CTL_MSG_ENDPOINTS:
		return "ENDPOINTS";
	case CTL_MSG_MAP_FULL:
		return "MAP_FULL";
	case CTL_MSG_MAP_DELTA:
		return "MAP_DELTA";
	case CTL_MSG_KEEPALIVE:
		return "KEEPALIVE";
	case CTL_MSG_ERROR:
		return "ERROR";
	case CTL_MSG_RELAY_REGISTER:
		return "RELAY_REGISTER";
	case CTL_MSG_RELAY_STATE:
		return "RELAY_STATE";
	case CTL_MSG_MAP_PEERS:
		return "MAP_PEERS";
	case CTL_MSG_ZMAP:
		return "ZMAP";
	case CTL_MSG_LOGOUT:
		return "LOGOUT";
	}
	return NULL;
}

void ctl_msg_free(struct ctl_msg *m)
{
	if (!m)
		return;
	switch (m->type) {
	case CTL_MSG_REGISTER_REQ:
		sodium_memzero(m->u.reg_req.auth_key, sizeof(m->u.reg_req.auth_key));
		break;
	case CTL_MSG_MAP_FULL:
		free(m->u.map.relays);
		free(m->u.map.peers);
		ctl_filter_clear(&m->u.map.filter);
		ctl_reach_free(m->u.map.reach, m->u.map.n_reach);
		break;
	case CTL_MSG_MAP_DELTA:
		free(m->u.delta.peers);
		free(m->u.delta.removed);
		free(m->u.delta.patches);
		free(m->u.delta.relays);
		ctl_filter_clear(&m->u.delta.filter);
		ctl_reach_free(m->u.delta.reach, m->u.delta.n_reach);
		break;
	case CTL_MSG_MAP_PEERS:
		free(m->u.chunk.peers);
		break;
	case CTL_MSG_RELAY_REGISTER:
		sodium_memzero(m->u.relay_reg.auth_key, sizeof(m->u.relay_reg.auth_key));
		break;
	case CTL_MSG_RELAY_STATE:
		free(m->u.relay_state.keys);
		free(m->u.relay_state.relays);
		break;
	default:
		break;
	}
	memset(&m->u, 0, sizeof(m->u));
}

/* The policy parts of a map (msg.h). */

void ctl_filter_clear(struct ctl_filter *f)
{
	if (!f)
		return;
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		for (size_t i = 0; f->blocks[p] && i < f->n_blocks[p]; i++)
			free(f->blocks[p][i].ports);
		free(f->blocks[p]);
	}
	memset(f, 0, sizeof(*f));
}

void ctl_reach_clear(struct ctl_reach *r)
{
	if (!r)
		return;
	free(r->tcp);
	free(r->udp);
	memset(r, 0, sizeof(*r));
}

void ctl_reach_free(struct ctl_reach *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		ctl_reach_clear(&r[i]);
	free(r);
}

static int ranges_dup(struct ctl_port_range **dst, const struct ctl_port_range *src,
                      uint32_t n)
{
	*dst = NULL;
	if (!n)
		return 0;
	if (!src || !(*dst = malloc(n * sizeof(*src))))
		return -ENOMEM;
	memcpy(*dst, src, n * sizeof(*src));
	return 0;
}

int ctl_filter_copy(struct ctl_filter *dst, const struct ctl_filter *src)
{
	memset(dst, 0, sizeof(*dst));
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		size_t n = src->n_blocks[p];
		if (!n)
			continue;
		if (!src->blocks[p] || !(dst->blocks[p] = calloc(n, sizeof(**dst->blocks))))
			goto fail;
		dst->n_blocks[p] = n;
		for (size_t i = 0; i < n; i++) {
			const struct ctl_filter_block *b = &src->blocks[p][i];
			dst->blocks[p][i] = *b;
			if (ranges_dup(&dst->blocks[p][i].ports, b->ports, b->n_ports) < 0) {
				dst->blocks[p][i].n_ports = 0;
				goto fail;
			}
		}
	}
	return 0;
fail:
	ctl_filter_clear(dst);
	return -ENOMEM;
}

int ctl_reach_copy(struct ctl_reach *dst, const struct ctl_reach *src)
{
	*dst = *src;
	dst->tcp = dst->udp = NULL;
	if (ranges_dup(&dst->tcp, src->tcp, src->n_tcp) < 0 ||
	    ranges_dup(&dst->udp, src->udp, src->n_udp) < 0) {
		free(dst->tcp);
		memset(dst, 0, sizeof(*dst));
		return -ENOMEM;
	}
	return 0;
}

void ctl_msg_seterr(struct ctl_msg_err *err, enum ctl_msg_errcode code, const char *fmt,
                    ...)
{
	va_list ap;

	if (!err)
		return;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

void ctl_msg_json_wipe(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	/* jansson owns a mutable copy; const is only its API's promise to callers. */
	if (json_is_string(v))
		sodium_memzero((char *)(uintptr_t)json_string_value(v),
		               json_string_length(v));
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool ctl_label_valid(const char *s, size_t n)
{
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool ctl_dnsname_valid(const char *s, size_t n)
{
	size_t start = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!ctl_label_valid(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

bool ctl_tag_valid(const char *s, size_t n)
{
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != ':' && s[i] != '_' && s[i] != '.' &&
		    s[i] != '-')
			return false;
	return true;
}

bool ctl_text_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

void ctl_key_fpr(const uint8_t key[CTL_KEY_LEN], char out[CTL_KEY_FPR_LEN + 1])
{
	sodium_bin2hex(out, CTL_KEY_FPR_LEN + 1, key, CTL_KEY_FPR_LEN / 2);
}

void ctl_ip_format(const struct ctl_ip *ip, char out[CTL_ADDRSTR_MAX])
{
	if (!inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->addr, out,
	               CTL_ADDRSTR_MAX))
		snprintf(out, CTL_ADDRSTR_MAX, "?");
}

void ctl_prefix_format(const struct ctl_prefix *pf, char out[CTL_ADDRSTR_MAX])
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(pf->family == 4 ? AF_INET : AF_INET6, pf->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	snprintf(out, CTL_ADDRSTR_MAX, "%s/%u", a, pf->bits);
}

void ctl_endpoint_format(const struct ctl_endpoint *ep, char out[CTL_ADDRSTR_MAX])
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(ep->family == 4 ? AF_INET : AF_INET6, ep->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	if (ep->family == 4)
		snprintf(out, CTL_ADDRSTR_MAX, "%s:%u", a, ep->port);
	else
		snprintf(out, CTL_ADDRSTR_MAX, "[%s]:%u", a, ep->port);
}

/* Parses an address of either family from s[0..n); no zone ids, no spaces. */
static bool parse_ip_n(const char *s, size_t n, struct ctl_ip *out)
{
	char buf[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (memchr(buf, ':', n)) {
		if (inet_pton(AF_INET6, buf, out->addr) != 1)
			return false;
		out->family = 6;
	} else {
		if (inet_pton(AF_INET, buf, out->addr) != 1)
			return false;
		out->family = 4;
	}
	return true;
}

/* Decimal without sign or leading zeros, at most max. */
static bool parse_dec(const char *s, size_t n, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

bool ctl_ip_parse(const char *s, struct ctl_ip *out)
{
	return parse_ip_n(s, strlen(s), out);
}

bool ctl_prefix_parse(const char *s, struct ctl_prefix *out)
{
	const char *slash = strchr(s, '/');
	struct ctl_ip ip;
	unsigned bits;

	if (!slash || !parse_ip_n(s, (size_t)(slash - s), &ip))
		return false;
	if (!parse_dec(slash + 1, strlen(slash + 1), ip.family == 4 ? 32 : 128, &bits))
		return false;
	/* Host bits must be zero: "10.0.0.1/24" is a typo or a bug upstream. */
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits > i * 8 ? (bits - i * 8 >= 8 ? 8 : bits - i * 8) : 0;
		uint8_t mask = (uint8_t)(0xff00u >> keep);
		if (ip.addr[i] & (uint8_t)~mask)
			return false;
	}
	memset(out, 0, sizeof(*out));
	out->family = ip.family;
	out->bits = (uint8_t)bits;
	memcpy(out->addr, ip.addr, sizeof(out->addr));
	return true;
}

bool ctl_endpoint_parse(const char *s, struct ctl_endpoint *out)
{
	size_t n = strlen(s);
	const char *host, *port;
	size_t hlen;
	struct ctl_ip ip;
	unsigned p;

	if (n > 0 && s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return false;
		host = s + 1;
		hlen = (size_t)(rb - host);
		port = rb + 2;
	} else {
		const char *colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return false;
		host = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (!parse_ip_n(host, hlen, &ip) || (s[0] == '[') != (ip.family == 6))
		return false;
	if (!parse_dec(port, strlen(port), 65535, &p) || p == 0)
		return false;
	memset(out, 0, sizeof(*out));
	out->family = ip.family;
	out->port = (uint16_t)p;
	memcpy(out->addr, ip.addr, sizeof(out->addr));
	return true;
}
