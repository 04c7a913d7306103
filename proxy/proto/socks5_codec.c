/* SOCKS5 wire format (RFC 1928, RFC 1929 username/password): pure decoders
 * and the reply encoder. Every decoder takes (p, len), checks len before it
 * reads, and tells a short prefix (MORE) from a malformed message (ERROR),
 * so the session can feed it bytes as they arrive. */
#include "proxy/proto/proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

enum px_parse px_socks5_parse_greeting(const uint8_t *p, size_t len,
                                       struct px_socks5_greeting *g, size_t *used)
{
	memset(g, 0, sizeof(*g));
	if (len < 1)
		return PX_PARSE_MORE;
	if (p[0] != SOCKS5_VER)
		return PX_PARSE_ERROR;
	if (len < 2)
		return PX_PARSE_MORE;
	size_t n = p[1];
	if (n == 0)
		return PX_PARSE_ERROR;
	if (len < 2 + n)
		return PX_PARSE_MORE;
	for (size_t i = 0; i < n; i++) {
		if (p[2 + i] == SOCKS5_METHOD_NONE)
			g->no_auth = true;
		else if (p[2 + i] == SOCKS5_METHOD_USERPASS)
			g->userpass = true;
	}
	*used = 2 + n;
	return PX_PARSE_OK;
}

enum px_parse px_socks5_parse_auth(const uint8_t *p, size_t len, struct px_socks5_auth *a,
                                   size_t *used)
{
	memset(a, 0, sizeof(*a));
	if (len < 1)
		return PX_PARSE_MORE;
	if (p[0] != SOCKS5_AUTH_VER)
		return PX_PARSE_ERROR;
	if (len < 2)
		return PX_PARSE_MORE;
	size_t ulen = p[1];
	if (len < 2 + ulen + 1)
		return PX_PARSE_MORE;
	size_t plen = p[2 + ulen];
	if (len < 3 + ulen + plen)
		return PX_PARSE_MORE;
	a->ulen = (uint8_t)ulen;
	a->plen = (uint8_t)plen;
	memcpy(a->user, p + 2, ulen);
	memcpy(a->pass, p + 3 + ulen, plen);
	*used = 3 + ulen + plen;
	return PX_PARSE_OK;
}

static enum px_parse px_socks5_fail(uint8_t *rep, uint8_t code)
{
	*rep = code;
	return PX_PARSE_ERROR;
}

enum px_parse px_socks5_parse_request(const uint8_t *p, size_t len, uint8_t *cmd,
                                      struct px_target *t, size_t *used, uint8_t *rep)
{
	memset(t, 0, sizeof(*t));
	*rep = SOCKS5_REP_GENERAL;
	if (len < 1)
		return PX_PARSE_MORE;
	if (p[0] != SOCKS5_VER)
		return px_socks5_fail(rep, SOCKS5_REP_GENERAL);
	if (len < 2)
		return PX_PARSE_MORE;
	*cmd = p[1];
	if (*cmd != SOCKS5_CMD_CONNECT && *cmd != SOCKS5_CMD_BIND &&
	    *cmd != SOCKS5_CMD_UDP_ASSOCIATE)
		return px_socks5_fail(rep, SOCKS5_REP_CMD_UNSUPPORTED);
	if (len < 4)
		return PX_PARSE_MORE; /* RSV is ignored, as most servers do */
	size_t alen, aoff = 4;
	switch (p[3]) {
	case SOCKS5_ATYP_IPV4:
		alen = 4;
		break;
	case SOCKS5_ATYP_IPV6:
		alen = 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		if (len < 5)
			return PX_PARSE_MORE;
		alen = p[4];
		aoff = 5;
		if (alen == 0)
			return px_socks5_fail(rep, SOCKS5_REP_GENERAL);
		break;
	default:
		return px_socks5_fail(rep, SOCKS5_REP_ATYP_UNSUPPORTED);
	}
	if (len < aoff + alen + 2)
		return PX_PARSE_MORE;
	uint16_t port = (uint16_t)(p[aoff + alen] << 8 | p[aoff + alen + 1]);
	/* UDP ASSOCIATE names the client's source, often 0.0.0.0:0 ("any"). */
	if (port == 0 && *cmd != SOCKS5_CMD_UDP_ASSOCIATE)
		return px_socks5_fail(rep, SOCKS5_REP_GENERAL);
	if (p[3] == SOCKS5_ATYP_DOMAIN) {
		/* curl --socks5-hostname sends addresses as names too. */
		if (!px_target_set(t, (const char *)p + aoff, alen, port))
			return px_socks5_fail(rep, SOCKS5_REP_HOST_UNREACH);
	} else {
		t->addr.family = p[3] == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
		memcpy(t->addr.addr, p + aoff, alen);
		t->port = port;
		inet_ntop(t->addr.family, t->addr.addr, t->host, sizeof(t->host));
	}
	*used = aoff + alen + 2;
	return PX_PARSE_OK;
}

size_t px_socks5_reply(uint8_t *out, uint8_t rep, const struct sockaddr_storage *bnd)
{
	out[0] = SOCKS5_VER;
	out[1] = rep;
	out[2] = 0;
	if (bnd && bnd->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)bnd;
		out[3] = SOCKS5_ATYP_IPV6;
		memcpy(out + 4, &s6->sin6_addr, 16);
		memcpy(out + 20, &s6->sin6_port, 2);
		return 22;
	}
	out[3] = SOCKS5_ATYP_IPV4;
	if (bnd && bnd->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)bnd;
		memcpy(out + 4, &s4->sin_addr, 4);
		memcpy(out + 8, &s4->sin_port, 2);
	} else {
		memset(out + 4, 0, 6);
	}
	return 10;
}

/* ---- UDP ASSOCIATE datagrams (RFC 1928 section 7) ---- */

bool px_socks5_udp_parse(const uint8_t *p, size_t len, uint8_t *frag, struct px_target *t,
                         size_t *hdr_len)
{
	memset(t, 0, sizeof(*t));
	if (len < 4)
		return false;
	*frag = p[2];
	size_t alen, aoff = 4;
	switch (p[3]) {
	case SOCKS5_ATYP_IPV4:
		alen = 4;
		break;
	case SOCKS5_ATYP_IPV6:
		alen = 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		if (len < 5)
			return false;
		alen = p[4];
		aoff = 5;
		if (alen == 0)
			return false;
		break;
	default:
		return false;
	}
	if (len < aoff + alen + 2)
		return false;
	uint16_t port = (uint16_t)(p[aoff + alen] << 8 | p[aoff + alen + 1]);
	if (port == 0)
		return false;
	if (p[3] == SOCKS5_ATYP_DOMAIN) {
		if (!px_target_set(t, (const char *)p + aoff, alen, port))
			return false;
	} else {
		t->addr.family = p[3] == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
		memcpy(t->addr.addr, p + aoff, alen);
		t->port = port;
		inet_ntop(t->addr.family, t->addr.addr, t->host, sizeof(t->host));
	}
	*hdr_len = aoff + alen + 2;
	return true;
}

size_t px_socks5_udp_header(uint8_t *out, const struct ns_addr *a, uint16_t port)
{
	size_t alen = a->family == AF_INET6 ? 16 : 4;
	out[0] = out[1] = out[2] = 0;
	out[3] = a->family == AF_INET6 ? SOCKS5_ATYP_IPV6 : SOCKS5_ATYP_IPV4;
	memcpy(out + 4, a->addr, alen);
	out[4 + alen] = (uint8_t)(port >> 8);
	out[5 + alen] = (uint8_t)port;
	return 6 + alen;
}
