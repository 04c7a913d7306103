/* The relay's HTTP/1.1 upgrade: see http.h. */
#include "core/relay/http.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char relay_http_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: " RELAY_HTTP_UPGRADE "\r\n"
                              "Connection: Upgrade\r\n\r\n";

/* Length of the head up to and including the blank line, 0 if not yet
 * complete. Bare LF line ends are accepted. */
static size_t head_len(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < len && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Next line of the head [*pos, end): sets *line, *n without CR LF. */
static bool next_line(const uint8_t *p, size_t end, size_t *pos, const char **line,
                      size_t *n)
{
	if (*pos >= end)
		return false;
	size_t s = *pos, e = s;
	while (e < end && p[e] != '\n')
		e++;
	*pos = e < end ? e + 1 : end;
	size_t m = e - s;
	if (m && p[s + m - 1] == '\r')
		m--;
	*line = (const char *)p + s;
	*n = m;
	return true;
}

static bool token_eq(const char *s, size_t n, const char *want)
{
	return n == strlen(want) && strncasecmp(s, want, n) == 0;
}

/* Trims spaces and tabs around [*s, *s+*n). */
static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

/* True when the comma list v contains tok (case-insensitive). */
static bool list_has(const char *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i <= n) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		const char *t = v + i;
		size_t tn = j - i;
		trim(&t, &tn);
		if (token_eq(t, tn, tok))
			return true;
		i = j + 1;
	}
	return false;
}

/* Walks the header lines after the first: sets *upgrade when an Upgrade
 * header names meshrelay and *conn when Connection lists upgrade. false on
 * a line that is not "name: value". */
static bool scan_headers(const uint8_t *p, size_t end, size_t pos, bool *upgrade,
                         bool *conn)
{
	const char *line;
	size_t n;
	*upgrade = *conn = false;
	while (next_line(p, end, &pos, &line, &n)) {
		if (n == 0)
			break;
		const char *colon = memchr(line, ':', n);
		if (!colon || colon == line)
			return false;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
				return false;
		const char *name = line, *val = colon + 1;
		size_t nn = (size_t)(colon - line), vn = n - nn - 1;
		trim(&val, &vn);
		if (token_eq(name, nn, "Upgrade") &&
		    list_has(val, vn, RELAY_HTTP_UPGRADE))
			*upgrade = true;
		else if (token_eq(name, nn, "Connection") && list_has(val, vn, "upgrade"))
			*conn = true;
	}
	return true;
}

int relay_http_parse_request(const uint8_t *p, size_t len)
{
	size_t h = head_len(p, len < RELAY_HTTP_HEAD_MAX ? len : RELAY_HTTP_HEAD_MAX);
	if (h == 0)
		return len >= RELAY_HTTP_HEAD_MAX ? -431 : 0;
	size_t pos = 0;
	const char *line;
	size_t n;
	next_line(p, h, &pos, &line, &n);
	/* METHOD SP PATH SP HTTP/1.x */
	const char *sp1 = memchr(line, ' ', n);
	if (!sp1)
		return -400;
	const char *path = sp1 + 1;
	const char *sp2 = memchr(path, ' ', n - (size_t)(path - line));
	if (!sp2)
		return -400;
	size_t pn = (size_t)(sp2 - path);
	const char *ver = sp2 + 1;
	size_t vn = n - (size_t)(ver - line);
	if (!(vn == 8 &&
	      (memcmp(ver, "HTTP/1.1", 8) == 0 || memcmp(ver, "HTTP/1.0", 8) == 0)))
		return -400;
	bool upgrade, conn;
	if (!scan_headers(p, h, pos, &upgrade, &conn))
		return -400;
	if (!((size_t)(sp1 - line) == 3 && memcmp(line, "GET", 3) == 0))
		return -405;
	/* The path, without a query. */
	const char *q = memchr(path, '?', pn);
	if (q)
		pn = (size_t)(q - path);
	if (!(pn == strlen(RELAY_HTTP_PATH) && memcmp(path, RELAY_HTTP_PATH, pn) == 0))
		return -404;
	if (!upgrade || !conn)
		return -426;
	return (int)h;
}

int relay_http_parse_response(const uint8_t *p, size_t len)
{
	size_t h = head_len(p, len < RELAY_HTTP_HEAD_MAX ? len : RELAY_HTTP_HEAD_MAX);
	if (h == 0)
		return len >= RELAY_HTTP_HEAD_MAX ? -1 : 0;
	size_t pos = 0;
	const char *line;
	size_t n;
	next_line(p, h, &pos, &line, &n);
	/* A malformed status line is an error now, never "incomplete". */
	if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
	    (n > 12 && line[12] != ' '))
		return -1;
	int status = 0;
	for (int i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		status = status * 10 + (line[i] - '0');
	}
	if (status < 100) /* -status would read as "incomplete" */
		return -1;
	if (status != 101)
		return -status;
	bool upgrade, conn;
	if (!scan_headers(p, h, pos, &upgrade, &conn) || !upgrade)
		return -101;
	return (int)h;
}

size_t relay_http_request(char *out, size_t cap, const char *host)
{
	if (strpbrk(host, "\r\n"))
		return 0;
	int n = snprintf(out, cap,
	                 "GET " RELAY_HTTP_PATH " HTTP/1.1\r\nHost: %s\r\n"
	                 "Upgrade: " RELAY_HTTP_UPGRADE "\r\nConnection: Upgrade\r\n\r\n",
	                 host);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

#define ANSWER(code, text, body)                                                         \
	"HTTP/1.1 " code " " text                                                        \
	"\r\nContent-Type: text/plain\r\nConnection: close\r\n"                          \
	"Content-Length: " body "\r\n\r\n"

const char *relay_http_error(int status)
{
	switch (status) {
	case 404:
		return ANSWER("404", "Not Found",
		              "45") "mesh-relay: the relay protocol is at /relay\n\n";
	case 405:
		return ANSWER("405", "Method Not Allowed",
		              "45") "mesh-relay: the relay protocol is at /relay\n\n";
	case 426:
		return "HTTP/1.1 426 Upgrade Required\r\nUpgrade: " RELAY_HTTP_UPGRADE
		       "\r\nConnection: Upgrade, close\r\nContent-Type: text/plain\r\n"
		       "Content-Length: 45\r\n\r\nmesh-relay: the relay protocol is at "
		       "/relay\n\n";
	case 431:
		return ANSWER("431", "Request Header Fields Too Large", "0");
	}
	return ANSWER("400", "Bad Request", "0");
}
