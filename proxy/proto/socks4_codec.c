/* SOCKS4 and SOCKS4a wire format: a pure request decoder and the reply
 * encoder. The request is
 *   VN(4) CD DSTPORT(2) DSTIP(4) USERID... NUL [HOST... NUL]
 * where the HOST part (SOCKS4a) follows only when DSTIP is 0.0.0.x with
 * x != 0. Both strings are bounded (SOCKS4_ID_MAX, SOCKS4_NAME_MAX) so a
 * client cannot make us buffer without end while we wait for the NUL. */
#include "proxy/proto/proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* Finds the NUL of a string of at most max bytes starting at p[off].
 * Returns its index, 0 if more bytes are needed, or SIZE_MAX if the string
 * is over-long. */
static size_t px_socks4_nul(const uint8_t *p, size_t len, size_t off, size_t max)
{
	size_t avail = len > off ? len - off : 0;
	size_t lim = avail < max + 1 ? avail : max + 1;
	const uint8_t *z = lim ? memchr(p + off, 0, lim) : NULL;
	if (z)
		return (size_t)(z - p);
	return avail > max ? SIZE_MAX : 0;
}

enum px_parse px_socks4_parse_request(const uint8_t *p, size_t len, uint8_t *cmd,
                                      struct px_target *t, size_t *used)
{
	memset(t, 0, sizeof(*t));
	*cmd = 0;
	if (len < 1)
		return PX_PARSE_MORE;
	if (p[0] != SOCKS4_VER)
		return PX_PARSE_ERROR;
	if (len < 2)
		return PX_PARSE_MORE;
	*cmd = p[1];
	if (*cmd != SOCKS4_CMD_CONNECT && *cmd != SOCKS4_CMD_BIND)
		return PX_PARSE_ERROR;
	if (len < 8)
		return PX_PARSE_MORE;
	uint16_t port = (uint16_t)(p[2] << 8 | p[3]);
	const uint8_t *ip = p + 4;
	/* 0.0.0.0 is no destination; 0.0.0.x (x != 0) announces a name. */
	bool is_4a = ip[0] == 0 && ip[1] == 0 && ip[2] == 0;
	if (port == 0 || (is_4a && ip[3] == 0))
		return PX_PARSE_ERROR;
	size_t id_end = px_socks4_nul(p, len, 8, SOCKS4_ID_MAX);
	if (id_end == SIZE_MAX)
		return PX_PARSE_ERROR;
	if (id_end == 0)
		return PX_PARSE_MORE;
	if (!is_4a) {
		t->addr.family = AF_INET;
		memcpy(t->addr.addr, ip, 4);
		t->port = port;
		inet_ntop(AF_INET, t->addr.addr, t->host, sizeof(t->host));
		*used = id_end + 1;
		return PX_PARSE_OK;
	}
	size_t name_end = px_socks4_nul(p, len, id_end + 1, SOCKS4_NAME_MAX);
	if (name_end == SIZE_MAX)
		return PX_PARSE_ERROR;
	if (name_end == 0)
		return PX_PARSE_MORE;
	size_t nlen = name_end - (id_end + 1);
	/* An empty name or one that is not a plausible host is refused; an
	 * address literal comes back as an address. */
	if (nlen == 0 || !px_target_set(t, (const char *)p + id_end + 1, nlen, port))
		return PX_PARSE_ERROR;
	*used = name_end + 1;
	return PX_PARSE_OK;
}

size_t px_socks4_reply(uint8_t *out, uint8_t rep)
{
	/* VN is 0 in replies; DSTPORT and DSTIP are ignored by CONNECT clients. */
	memset(out, 0, SOCKS4_REPLY_LEN);
	out[1] = rep;
	return SOCKS4_REPLY_LEN;
}
