/* mesh-control command-line helpers: see cli_util.h. */
#include "servers/control/cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/control/token.h"

/* Creates path (must not exist, no symlink followed) with mode 0600 and
 * writes text, fsynced. 0, or -errno (-EEXIST if it exists); nothing is left
 * behind on a failed write. */
int ctl_cli_write_new_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text), off = 0;
	int err = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = w < 0 ? errno : EIO;
			break;
		}
		off += (size_t)w;
	}
	if (!err && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
		err = errno;
	close(fd);
	if (err) {
		unlink(path);
		return -err;
	}
	return 0;
}

/* Splits "host:port" / "[v6]:port" into the token's host (no brackets) and
 * port. False on anything else. */
bool ctl_cli_split_hostport(const char *s, char *host, size_t hostcap, uint16_t *port)
{
	const char *h = s, *colon;
	size_t hl;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return false;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return false; /* none, or an IPv6 literal without brackets */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl > CTL_TOKEN_HOST_MAX || hl >= hostcap)
		return false;
	for (size_t i = 0; i < hl; i++)
		if (h[i] <= ' ' || h[i] > '~')
			return false;
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || colon[1] == '-' || colon[1] == '+' ||
	    p == 0 || p > 65535)
		return false;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (uint16_t)p;
	return true;
}

bool ctl_cli_parse_addrs(const char *list, const char *what, struct ctl_token *tok,
                         char *err, size_t errlen)
{
	const char *p = list, *comma;
	char item[CTL_TOKEN_HOST_MAX + 16], host[CTL_TOKEN_HOST_MAX + 1];
	uint16_t port;

	do {
		comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		while (n > 0 && (*p == ' ' || *p == '\t')) { /* "a:1, b:2" */
			p++;
			n--;
		}
		if (n >= sizeof(item)) {
			snprintf(err, errlen,
			         "%s: \"%.40s...\" is too long for HOST:PORT", what, p);
			return false;
		}
		memcpy(item, p, n);
		item[n] = 0;
		while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
			item[--n] = 0;
		if (!ctl_cli_split_hostport(item, host, sizeof host, &port)) {
			snprintf(err, errlen,
			         "%s %s: expected HOST:PORT, e.g. 198.18.0.1:7443 or "
			         "[fd00::1]:7443 (several separated by commas)",
			         what, item);
			return false;
		}
		for (size_t i = 0; i < ctl_token_addr_count(tok); i++) {
			const char *h;
			uint16_t hp;
			ctl_token_addr_get(tok, i, &h, &hp);
			if (hp == port && !strcmp(h, host)) {
				snprintf(err, errlen, "%s: %s is listed twice", what,
				         item);
				return false;
			}
		}
		if (ctl_token_add_addr(tok, host, port) != 0) {
			snprintf(err, errlen,
			         "%s: more than %d control addresses; a join token holds "
			         "at most %d",
			         what, CTL_TOKEN_ADDRS_MAX, CTL_TOKEN_ADDRS_MAX);
			return false;
		}
		p = comma ? comma + 1 : NULL;
	} while (p);
	return true;
}

void ctl_cli_first_addr(const char *list, char *out, size_t cap)
{
	size_t n = strcspn(list, ",");

	while (n > 0 && (list[n - 1] == ' ' || list[n - 1] == '\t'))
		n--;
	snprintf(out, cap, "%.*s", (int)n, list);
}

bool ctl_cli_conf_listen_add(char *dst, size_t cap, const char *value)
{
	size_t have = strlen(dst), add = strlen(value);

	if (have + (have ? 1 : 0) + add + 1 > cap)
		return false;
	if (have)
		dst[have++] = ',';
	memcpy(dst + have, value, add + 1);
	return true;
}

/* "30s", "10m", "2h", "7d" -> seconds; -1 if malformed. */
int64_t ctl_cli_parse_dur(const char *s)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || !end[0] || end[1] || v == 0)
		return -1;
	unsigned long long mul;
	switch (*end) {
	case 's':
		mul = 1;
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return -1;
	}
	if (v > (3650ull * 86400) / mul) /* ten years */
		return -1;
	return (int64_t)(v * mul);
}

/* "a,b" or "tag:a,tag:b" -> "tag:a,tag:b". False on an empty item. */
bool ctl_cli_norm_tags(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = in;
	out[0] = 0;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n == 0)
			return false;
		bool pre = n > 4 && !strncmp(p, "tag:", 4);
		int w = snprintf(out + o, cap - o, "%s%s%.*s", o ? "," : "",
		                 pre ? "" : "tag:", (int)n, p);
		if (w < 0 || (size_t)w >= cap - o)
			return false;
		o += (size_t)w;
		p += n;
		if (*p == ',' && !*++p)
			return false;
	}
	return o > 0;
}

void ctl_cli_fmt_time(char *out, size_t cap, int64_t t)
{
	if (!t) {
		snprintf(out, cap, "never");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ctl_cli_fmt_v4(char *out, size_t cap, uint32_t a)
{
	snprintf(out, cap, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
	         a & 255);
}

void ctl_cli_fmt_v6(char *out, size_t cap, const uint8_t a[16])
{
	/* RFC 5952 enough for ours: the longest run of zero groups as "::". */
	uint16_t g[8];
	int best = -1, bestlen = 0;
	for (int i = 0; i < 8; i++)
		g[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && !g[j])
			j++;
		if (j - i > bestlen && j - i > 1)
			best = i, bestlen = j - i;
		i = j > i ? j : i + 1;
	}
	size_t o = 0;
	out[0] = 0;
	for (int i = 0; i < 8 && o < cap; i++) {
		if (i == best) {
			o += (size_t)snprintf(out + o, cap - o, "::");
			i += bestlen - 1;
			continue;
		}
		bool sep = i > 0 && i != best + bestlen;
		o += (size_t)snprintf(out + o, cap - o, "%s%x", sep ? ":" : "", g[i]);
	}
}

void ctl_cli_fmt_seen(char *out, size_t cap, const struct ctl_node *nd, int64_t now)
{
	int64_t d = now - nd->last_seen;
	if (nd->online)
		snprintf(out, cap, "online");
	else if (!nd->last_seen)
		snprintf(out, cap, "never seen");
	else if (d < 120)
		snprintf(out, cap, "seen %llds ago", (long long)(d < 0 ? 0 : d));
	else if (d < 7200)
		snprintf(out, cap, "seen %lldm ago", (long long)d / 60);
	else if (d < 172800)
		snprintf(out, cap, "seen %lldh ago", (long long)d / 3600);
	else
		snprintf(out, cap, "seen %lldd ago", (long long)d / 86400);
}
