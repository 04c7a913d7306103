/* Configuration loading: files, sections and the line reader we hand to
 * inih. Values are parsed in config_value.c.
 *
 * Why our own reader: Debian's inih (libinih1 55) is built with
 * INI_MAX_LINE 200, no handler call on a new section and no line numbers for
 * the handler. The reader below returns one real line per call (normalised
 * as "[Section]" or "Key = value"), so:
 *  - it knows the real line number of whatever the handler is processing;
 *  - it sees every "[Section]" line and opens the section itself, so two
 *    [Peer] sections in a row (or an empty one) are two peers;
 *  - an over-long AllowedIPs/Address/DNS line is handed out as several
 *    "Key = a, b" lines that fit inih's buffer (those keys append), and any
 *    other over-long line is an error naming the line instead of being cut.
 * It also strips leading blanks (so inih never sees a continuation line) and
 * inline comments (" ;" or " #"). */
#include "config/config_int.h"

#include "core/util/log.h"

#include <errno.h>
#include <ini.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const sect_names[] = {
    [CFG_SECT_TOP] = "",
    [CFG_SECT_INTERFACE] = "Interface",
    [CFG_SECT_PEER] = "Peer",
    [CFG_SECT_SOCKS5] = "Socks5",
    [CFG_SECT_HTTP] = "http",
    [CFG_SECT_TCP_CLIENT] = "TCPClientTunnel",
    [CFG_SECT_TCP_SERVER] = "TCPServerTunnel",
    [CFG_SECT_UDP_CLIENT] = "UDPClientTunnel",
    [CFG_SECT_UDP_SERVER] = "UDPServerTunnel",
    [CFG_SECT_STDIO] = "STDIOTunnel",
};

static void cfg_limits_default(struct cfg_limits *l)
{
	l->max_connections = CFG_DEFAULT_MAX_CONNECTIONS;
	l->handshake_timeout_ms = CFG_DEFAULT_HANDSHAKE_MS;
	l->idle_timeout_ms = CFG_DEFAULT_IDLE_MS;
	l->buffer_bytes = CFG_DEFAULT_BUFFER_BYTES;
}

const char *cfg_sect_name(enum cfg_sect s)
{
	return sect_names[s];
}

static int cfg_line(const struct cfg_parser *p)
{
	return p->src ? p->src->line : 0;
}

void cfg_errf(struct cfg_parser *p, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	if (!p->err || p->errlen == 0)
		return;
	int n = 0;
	if (p->src && p->src->line > 0)
		n = snprintf(p->err, p->errlen, "%s:%d: ", p->src->name, p->src->line);
	else if (p->src)
		n = snprintf(p->err, p->errlen, "%s: ", p->src->name);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

void cfg_warnf(struct cfg_parser *p, const char *fmt, ...)
{
	if (p->opts.quiet)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("%s:%d: %s", p->src ? p->src->name : "?", cfg_line(p), msg);
}

const char *cfg_quote(const char *s, char *out, size_t outlen)
{
	size_t i = 0, max = outlen > 64 ? 60 : outlen - 1;
	for (; s[i] && i < max; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = 0;
	if (s[i] && outlen > 64)
		strcpy(out + i, "...");
	return out;
}

/* ---- sections ---- */

static void *cfg_append(void *arr, size_t *n, size_t elem)
{
	uint8_t *a = realloc(arr, (*n + 1) * elem);
	if (!a)
		return NULL;
	memset(a + *n * elem, 0, elem);
	(*n)++;
	return a;
}

#define CFG_APPEND(p, arr, n)                                                            \
	do {                                                                             \
		void *na_ = cfg_append((arr), &(n), sizeof(*(arr)));                     \
		if (!na_) {                                                              \
			cfg_errf((p), "out of memory");                                  \
			return -1;                                                       \
		}                                                                        \
		(arr) = na_;                                                             \
	} while (0)

static int cfg_section_begin(struct cfg_parser *p, const char *name)
{
	if (p->sect != CFG_SECT_TOP && cfg_section_check(p) < 0)
		return -1;
	enum cfg_sect s = CFG_SECT_TOP;
	for (size_t i = 1; i < sizeof(sect_names) / sizeof(sect_names[0]); i++)
		if (strcasecmp(name, sect_names[i]) == 0)
			s = (enum cfg_sect)i;
	char q[80];
	if (s == CFG_SECT_TOP) {
		cfg_errf(p,
		         "unknown section [%s] (expected Interface, Peer, Socks5, http, "
		         "TCPClientTunnel, TCPServerTunnel, UDPClientTunnel, "
		         "UDPServerTunnel or STDIOTunnel)",
		         cfg_quote(name, q, sizeof(q)));
		return -1;
	}
	if (p->src->is_include && s != CFG_SECT_INTERFACE && s != CFG_SECT_PEER) {
		cfg_errf(p,
		         "[%s] does not belong in a WGConfig file (only [Interface] and "
		         "[Peer])",
		         sect_names[s]);
		return -1;
	}
	if (!p->src->is_include && p->wgconfig &&
	    (s == CFG_SECT_INTERFACE || s == CFG_SECT_PEER)) {
		cfg_errf(
		    p,
		    "[%s] given here and WGConfig at line %d: put [Interface] and [Peer] "
		    "in one place",
		    sect_names[s], p->wgconfig_line);
		return -1;
	}
	struct config *c = p->cfg;
	size_t n_front = c->n_socks5 + c->n_http + c->n_tcp_client_tunnels +
	                 c->n_tcp_server_tunnels + c->n_udp_client_tunnels +
	                 c->n_udp_server_tunnels;
	if (s != CFG_SECT_INTERFACE && s != CFG_SECT_PEER &&
	    n_front >= CFG_MAX_FRONTENDS) {
		cfg_errf(p,
		         "[%s]: more than %d front-end sections ([Socks5], [http] and "
		         "tunnels together); a node listens on at most %d sockets: "
		         "use fewer sections (one SOCKS5 proxy reaches every port)",
		         sect_names[s], CFG_MAX_FRONTENDS, CFG_MAX_FRONTENDS);
		return -1;
	}
	switch (s) {
	case CFG_SECT_INTERFACE:
		if (p->have_interface) {
			cfg_errf(p, "second [Interface] (the first is at %s)",
			         p->interface_where);
			return -1;
		}
		p->have_interface = true;
		char where[300];
		snprintf(where, sizeof(where), "%s:%d", p->src->name, p->src->line);
		p->interface_where = strdup(where);
		if (!p->interface_where) {
			cfg_errf(p, "out of memory");
			return -1;
		}
		break;
	case CFG_SECT_PEER:
		CFG_APPEND(p, c->peers, c->n_peers);
		struct cfg_peer *peer = &c->peers[c->n_peers - 1];
		peer->line = p->src->line;
		peer->file = strdup(p->src->name);
		if (!peer->file) {
			cfg_errf(p, "out of memory");
			return -1;
		}
		break;
	case CFG_SECT_SOCKS5:
		CFG_APPEND(p, c->socks5, c->n_socks5);
		cfg_limits_default(&c->socks5[c->n_socks5 - 1].limits);
		break;
	case CFG_SECT_HTTP:
		CFG_APPEND(p, c->http, c->n_http);
		cfg_limits_default(&c->http[c->n_http - 1].limits);
		break;
	case CFG_SECT_TCP_CLIENT:
		CFG_APPEND(p, c->tcp_client_tunnels, c->n_tcp_client_tunnels);
		cfg_limits_default(
		    &c->tcp_client_tunnels[c->n_tcp_client_tunnels - 1].limits);
		break;
	case CFG_SECT_TCP_SERVER:
		CFG_APPEND(p, c->tcp_server_tunnels, c->n_tcp_server_tunnels);
		cfg_limits_default(
		    &c->tcp_server_tunnels[c->n_tcp_server_tunnels - 1].limits);
		break;
	case CFG_SECT_UDP_CLIENT:
		CFG_APPEND(p, c->udp_client_tunnels, c->n_udp_client_tunnels);
		c->udp_client_tunnels[c->n_udp_client_tunnels - 1].idle_timeout_ms =
		    CFG_DEFAULT_UDP_IDLE_MS;
		c->udp_client_tunnels[c->n_udp_client_tunnels - 1].max_flows =
		    CFG_DEFAULT_UDP_MAX_FLOWS;
		break;
	case CFG_SECT_UDP_SERVER:
		CFG_APPEND(p, c->udp_server_tunnels, c->n_udp_server_tunnels);
		c->udp_server_tunnels[c->n_udp_server_tunnels - 1].idle_timeout_ms =
		    CFG_DEFAULT_UDP_IDLE_MS;
		c->udp_server_tunnels[c->n_udp_server_tunnels - 1].max_flows =
		    CFG_DEFAULT_UDP_MAX_FLOWS;
		break;
	case CFG_SECT_STDIO:
		if (c->stdio_target_host) {
			cfg_errf(p, "second [STDIOTunnel] (stdin and stdout are one "
			            "connection)");
			return -1;
		}
		break;
	case CFG_SECT_TOP:
		break;
	}
	p->sect = s;
	p->sect_line = p->src->line;
	memset(p->seen, 0, sizeof(p->seen));
	return 0;
}

/* ---- the handler inih calls for each "Key = value" ---- */

static int cfg_handler(void *user, const char *section, const char *name,
                       const char *value)
{
	struct cfg_parser *p = user;
	if (p->failed)
		return 0;
	const struct cfg_keydef *keys = cfg_keys(p->sect);
	const char *sname = sect_names[p->sect];
	char q[80];
	size_t i;
	for (i = 0; keys[i].name; i++)
		if (strcasecmp(keys[i].name, name) == 0)
			break;
	if (!keys[i].name) {
		if (p->sect == CFG_SECT_TOP)
			cfg_errf(p,
			         "unknown key %s before any section (only WGConfig, "
			         "MemoryLimit, MaxConnectionsPerPeer, "
			         "PortMapping and BirthdayProbing may go here)",
			         cfg_quote(name, q, sizeof(q)));
		else
			cfg_errf(p, "[%s] unknown key %s", sname,
			         cfg_quote(name, q, sizeof(q)));
		return 0;
	}
	const struct cfg_keydef *k = &keys[i];
	if (!k->fn) {
		cfg_warnf(p, "[%s] %s is a wg-quick setting; ignored", sname, k->name);
		return 1;
	}
	if (!k->list) {
		if (p->seen[i]) {
			cfg_errf(p, "[%s] %s given twice (first at line %d)", sname,
			         k->name, p->seen[i]);
			return 0;
		}
		p->seen[i] = cfg_line(p);
	}
	/* As in wireproxy: "$NAME" is the value of the environment variable
	 * NAME (PrivateKey = $WG_KEY keeps the key out of the file), and
	 * "$$..." is a literal "$...". */
	if (value[0] == '$' && value[1] == '$') {
		value++;
	} else if (value[0] == '$') {
		const char *e = getenv(value + 1);
		if (!e) {
			cfg_errf(p,
			         "[%s] %s: environment variable %s is not set (write "
			         "$$ for a value that starts with $)",
			         sname, k->name, cfg_quote(value + 1, q, sizeof(q)));
			return 0;
		}
		value = e;
	}
	return k->fn(p, k->name, value) == 0;
}

/* ---- the line reader ---- */

static bool cfg_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool cfg_is_list_key(const char *k)
{
	return strcasecmp(k, "AllowedIPs") == 0 || strcasecmp(k, "Address") == 0 ||
	       strcasecmp(k, "DNS") == 0 || strcasecmp(k, "CheckAlive") == 0;
}

static char *cfg_emit(char *str, size_t num, const char *text)
{
	size_t n = strlen(text);
	if (n + 2 > num)
		return NULL;
	memcpy(str, text, n);
	str[n] = '\n';
	str[n + 1] = 0;
	return str;
}

/* Hands out the next piece of an over-long list line: as many whole items as
 * fit in inih's buffer, as "Key = a,b,c". */
static char *cfg_emit_split(struct cfg_src *s, char *str, size_t num)
{
	size_t klen = strlen(s->split_key);
	size_t budget = num - 2 - klen - 3; /* NUL, '\n', " = " */
	size_t out = 0;
	int n = snprintf(str, num, "%s = ", s->split_key);
	char *val = str + n;
	while (s->split_len > 0) {
		const char *item = s->split_rest;
		const char *comma = memchr(item, ',', s->split_len);
		size_t ilen = comma ? (size_t)(comma - item) : s->split_len;
		size_t used = ilen + (comma ? 1 : 0);
		while (ilen > 0 && cfg_blank(*item))
			item++, ilen--;
		while (ilen > 0 && cfg_blank(item[ilen - 1]))
			ilen--;
		if (ilen > 0 && out + (out ? 1 : 0) + ilen > budget) {
			if (out > 0)
				break; /* next piece */
			char q[80], tmp[64];
			snprintf(tmp, sizeof(tmp), "%.*s", (int)(ilen < 60 ? ilen : 60),
			         item);
			s->split_rest = NULL;
			cfg_errf(s->p, "[%s] %s: item \"%s...\" is too long",
			         sect_names[s->p->sect], s->split_key,
			         cfg_quote(tmp, q, sizeof(q)));
			return NULL;
		}
		if (ilen > 0) {
			if (out)
				val[out++] = ',';
			memcpy(val + out, item, ilen);
			out += ilen;
		}
		s->split_rest += used;
		s->split_len -= used;
	}
	if (s->split_len == 0)
		s->split_rest = NULL;
	val[out++] = '\n';
	val[out] = 0;
	return str;
}

static char *cfg_section_line(struct cfg_src *s, const char *l, size_t n, char *str,
                              size_t num)
{
	const char *close = memchr(l, ']', n);
	if (!close) {
		cfg_errf(s->p, "expected ']' after the section name");
		return NULL;
	}
	const char *a = l + 1, *b = close;
	while (a < b && cfg_blank(*a))
		a++;
	while (b > a && cfg_blank(b[-1]))
		b--;
	for (const char *t = close + 1; t < l + n; t++) {
		if (*t == ';' || *t == '#')
			break;
		if (!cfg_blank(*t)) {
			cfg_errf(s->p, "unexpected text after ']'");
			return NULL;
		}
	}
	char name[64];
	if (a == b || (size_t)(b - a) >= sizeof(name)) {
		cfg_errf(s->p, "%s section name", a == b ? "empty" : "over-long");
		return NULL;
	}
	memcpy(name, a, (size_t)(b - a));
	name[b - a] = 0;
	if (cfg_section_begin(s->p, name) < 0)
		return NULL;
	char norm[80];
	snprintf(norm, sizeof(norm), "[%s]", sect_names[s->p->sect]);
	return cfg_emit(str, num, norm);
}

static bool cfg_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static char *cfg_key_line(struct cfg_src *s, const char *l, size_t n, char *str,
                          size_t num)
{
	struct cfg_parser *p = s->p;
	const char *eq = memchr(l, '=', n);
	if (!eq) {
		cfg_errf(p, "expected \"Key = value\" or \"[Section]\"");
		return NULL;
	}
	size_t klen = (size_t)(eq - l);
	while (klen > 0 && cfg_blank(l[klen - 1]))
		klen--;
	for (size_t i = 0; i < klen; i++)
		if (!cfg_key_char(l[i]))
			klen = 0;
	if (klen == 0 || klen >= sizeof(s->split_key)) {
		cfg_errf(p, "expected \"Key = value\": the key name is not valid");
		return NULL;
	}
	const char *v = eq + 1, *end = l + n;
	while (v < end && cfg_blank(*v))
		v++;
	/* Inline comment: ';' or '#' after a blank (a superset of inih's rule). */
	for (const char *t = v; t < end; t++) {
		if ((*t == ';' || *t == '#') && (t == v || cfg_blank(t[-1]))) {
			end = t;
			break;
		}
	}
	while (end > v && cfg_blank(end[-1]))
		end--;
	size_t vlen = (size_t)(end - v);
	for (size_t i = 0; i < vlen; i++) {
		if ((unsigned char)v[i] < 0x20 && v[i] != '\t') {
			const char *sn = sect_names[p->sect];
			cfg_errf(p, "%s%s%s%.*s: the value contains control characters",
			         *sn ? "[" : "", sn, *sn ? "] " : "", (int)klen, l);
			return NULL;
		}
	}
	if (klen + 3 + vlen + 2 <= num) {
		memcpy(str, l, klen);
		memcpy(str + klen, " = ", 3);
		memcpy(str + klen + 3, v, vlen);
		str[klen + 3 + vlen] = '\n';
		str[klen + 4 + vlen] = 0;
		return str;
	}
	memcpy(s->split_key, l, klen);
	s->split_key[klen] = 0;
	if (!cfg_is_list_key(s->split_key)) {
		const char *sn = sect_names[p->sect];
		cfg_errf(
		    p,
		    "%s%s%s%s: the line is too long (%zu characters; only AllowedIPs, "
		    "Address and DNS may exceed %zu)",
		    *sn ? "[" : "", sn, *sn ? "] " : "", s->split_key, n, num - 2);
		return NULL;
	}
	s->split_rest = v;
	s->split_len = vlen;
	return cfg_emit_split(s, str, num);
}

static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_src *s = stream;
	if (s->p->failed || num < 80)
		return NULL;
	if (s->split_rest)
		return cfg_emit_split(s, str, (size_t)num);
	if (s->pos >= s->len)
		return NULL;
	const char *l = s->buf + s->pos;
	const char *nl = memchr(l, '\n', s->len - s->pos);
	size_t n = nl ? (size_t)(nl - l) : s->len - s->pos;
	s->pos += n + (nl ? 1 : 0);
	s->line++;
	if (memchr(l, 0, n)) {
		cfg_errf(s->p, "the line contains a NUL byte");
		return NULL;
	}
	if (s->line == 1 && n >= 3 && memcmp(l, "\xef\xbb\xbf", 3) == 0)
		l += 3, n -= 3;
	while (n > 0 && cfg_blank(*l))
		l++, n--;
	while (n > 0 && cfg_blank(l[n - 1]))
		n--;
	if (n == 0 || *l == ';' || *l == '#')
		return cfg_emit(str, (size_t)num, "");
	if (*l == '[')
		return cfg_section_line(s, l, n, str, (size_t)num);
	return cfg_key_line(s, l, n, str, (size_t)num);
}

/* Parses one file's text into p->cfg. */
static int cfg_parse_src(struct cfg_parser *p, struct cfg_src *s)
{
	s->p = p;
	p->src = s;
	p->sect = CFG_SECT_TOP;
	memset(p->seen, 0, sizeof(p->seen));
	int r = ini_parse_stream(cfg_reader, s, cfg_handler, p);
	if (!p->failed && r != 0)
		cfg_errf(p, "syntax error (inih, near line %d)", r);
	if (!p->failed && p->sect != CFG_SECT_TOP)
		cfg_section_check(p);
	return p->failed ? -1 : 0;
}

/* ---- files ---- */

static int cfg_read_file(const char *path, char **out, size_t *outlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *buf = malloc(CFG_MAX_FILE + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, CFG_MAX_FILE + 1, f);
	int rerr = ferror(f) ? -EIO : 0;
	fclose(f);
	if (rerr == 0 && n > CFG_MAX_FILE)
		rerr = -EFBIG;
	if (rerr) {
		sodium_memzero(buf, n);
		free(buf);
		return rerr;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

static void cfg_free_file(char *buf, size_t len)
{
	if (buf) {
		sodium_memzero(buf, len); /* it holds the private key */
		free(buf);
	}
}

/* A relative WGConfig path is relative to the directory of the including file. */
static char *cfg_include_path(const char *including, const char *path)
{
	const char *slash = strrchr(including, '/');
	if (path[0] == '/' || !slash) {
		return strdup(path);
	}
	size_t dlen = (size_t)(slash - including) + 1;
	char *r = malloc(dlen + strlen(path) + 1);
	if (r) {
		memcpy(r, including, dlen);
		strcpy(r + dlen, path);
	}
	return r;
}

static int cfg_load_include(struct cfg_parser *p, const char *main_name)
{
	char *path = cfg_include_path(main_name, p->wgconfig);
	if (!path) {
		cfg_errf(p, "out of memory");
		return -1;
	}
	char *buf = NULL;
	size_t len = 0;
	int r = cfg_read_file(path, &buf, &len);
	if (r < 0) {
		char q[80];
		p->src->line = p->wgconfig_line;
		cfg_errf(p, "WGConfig: cannot read \"%s\": %s",
		         cfg_quote(path, q, sizeof(q)),
		         r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		free(path);
		return -1;
	}
	struct cfg_src inc = {.name = path, .buf = buf, .len = len, .is_include = true};
	r = cfg_parse_src(p, &inc);
	/* Messages from the final checks must not point into freed memory. */
	p->src = NULL;
	cfg_free_file(buf, len);
	if (r < 0) {
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

/* Checks that need the whole configuration. */
static int cfg_final_check(struct cfg_parser *p, struct cfg_src *main_src)
{
	struct config *c = p->cfg;
	p->src = main_src;
	main_src->line = 0;
	if (!p->have_interface) {
		cfg_errf(p, "no [Interface] section (it needs PrivateKey and Address)%s",
		         p->wgconfig ? " in the WGConfig file" : "");
		return -1;
	}
	uint8_t pub[CFG_KEY_LEN];
	crypto_scalarmult_curve25519_base(pub, c->private_key);
	for (size_t i = 0; i < c->n_peers; i++) {
		struct cfg_peer *a = &c->peers[i];
		struct cfg_src at = {.name = a->file, .line = a->line};
		if (sodium_memcmp(a->public_key, pub, CFG_KEY_LEN) == 0) {
			p->src = &at;
			cfg_errf(p, "[Peer] PublicKey is this node's own public key");
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (memcmp(a->public_key, c->peers[j].public_key, CFG_KEY_LEN) ==
			    0) {
				p->src = &at;
				cfg_errf(p, "[Peer] PublicKey: the same peer as at %s:%d",
				         c->peers[j].file, c->peers[j].line);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < c->n_peers; i++) {
		struct cfg_peer *a = &c->peers[i];
		struct cfg_src at = {.name = a->file, .line = a->name_line};
		for (size_t j = 0; a->name && j < i; j++) {
			if (c->peers[j].name &&
			    strcasecmp(a->name, c->peers[j].name) == 0) {
				p->src = &at;
				cfg_errf(
				    p,
				    "[Peer] Name: \"%s\" is already the name of the peer "
				    "at %s:%d (names are case-insensitive)",
				    a->name, c->peers[j].file, c->peers[j].line);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < c->n_udp_server_tunnels; i++) {
		for (size_t j = 0; j < i; j++) {
			if (c->udp_server_tunnels[i].listen_port ==
			    c->udp_server_tunnels[j].listen_port) {
				cfg_errf(p,
				         "[UDPServerTunnel] ListenPort %u is used twice",
				         c->udp_server_tunnels[i].listen_port);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < c->n_tcp_server_tunnels; i++) {
		for (size_t j = 0; j < i; j++) {
			if (c->tcp_server_tunnels[i].listen_port ==
			    c->tcp_server_tunnels[j].listen_port) {
				cfg_errf(p,
				         "[TCPServerTunnel] ListenPort %u is used twice",
				         c->tcp_server_tunnels[i].listen_port);
				return -1;
			}
		}
	}
	return 0;
}

int config_load_buffer(const char *name, const char *buf, size_t len, struct config *cfg,
                       const struct cfg_opts *opts, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	if (err && errlen)
		err[0] = 0;
	struct cfg_parser p = {.cfg = cfg, .err = err, .errlen = errlen};
	if (opts)
		p.opts = *opts;
	struct cfg_src main_src = {.name = name, .buf = buf, .len = len};
	cfg->mtu = 1420;
	cfg->check_alive_interval_s = 5;
	cfg->max_conns_per_peer = CFG_DEFAULT_MAX_CONNS_PER_PEER;
	cfg->path = strdup(name);
	if (!cfg->path)
		cfg_errf(&p, "out of memory");
	else if (len > CFG_MAX_FILE)
		cfg_errf(&p, "larger than 1 MiB");
	else if (cfg_parse_src(&p, &main_src) == 0 && p.wgconfig)
		cfg_load_include(&p, name);
	if (!p.failed)
		cfg_final_check(&p, &main_src);
	free(p.wgconfig);
	free(p.interface_where);
	if (p.failed) {
		config_free(cfg);
		return -1;
	}
	return 0;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int r = cfg_read_file(path, &buf, &len);
	if (r < 0) {
		memset(cfg, 0, sizeof(*cfg));
		snprintf(err, errlen, "%s: cannot read: %s", path,
		         r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		return -1;
	}
	r = config_load_buffer(path, buf, len, cfg, NULL, err, errlen);
	cfg_free_file(buf, len);
	return r;
}

int config_load_text(const char *name, const char *buf, size_t len, struct config *cfg,
                     char *err, size_t errlen)
{
	return config_load_buffer(name, buf, len, cfg, NULL, err, errlen);
}

static void cfg_free_secret(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_peers; i++) {
		free(cfg->peers[i].endpoint_host);
		free(cfg->peers[i].allowed_ips);
		free(cfg->peers[i].file);
		free(cfg->peers[i].name);
		sodium_memzero(cfg->peers[i].preshared_key, CFG_KEY_LEN);
	}
	free(cfg->peers);
	for (size_t i = 0; i < cfg->n_socks5; i++) {
		cfg_free_secret(cfg->socks5[i].username);
		cfg_free_secret(cfg->socks5[i].password);
	}
	free(cfg->socks5);
	for (size_t i = 0; i < cfg->n_http; i++) {
		cfg_free_secret(cfg->http[i].username);
		cfg_free_secret(cfg->http[i].password);
	}
	free(cfg->http);
	for (size_t i = 0; i < cfg->n_tcp_client_tunnels; i++)
		free(cfg->tcp_client_tunnels[i].target_host);
	free(cfg->tcp_client_tunnels);
	for (size_t i = 0; i < cfg->n_tcp_server_tunnels; i++)
		free(cfg->tcp_server_tunnels[i].target_host);
	free(cfg->tcp_server_tunnels);
	for (size_t i = 0; i < cfg->n_udp_client_tunnels; i++)
		free(cfg->udp_client_tunnels[i].target_host);
	free(cfg->udp_client_tunnels);
	for (size_t i = 0; i < cfg->n_udp_server_tunnels; i++)
		free(cfg->udp_server_tunnels[i].target_host);
	free(cfg->udp_server_tunnels);
	free(cfg->addresses);
	free(cfg->dns);
	free(cfg->check_alive);
	free(cfg->stdio_target_host);
	free(cfg->path);
	sodium_memzero(cfg, sizeof(*cfg));
}

bool config_parse_key(const char *b64, uint8_t key[CFG_KEY_LEN])
{
	uint8_t tmp[CFG_KEY_LEN + 1];
	size_t n = 0;
	const char *end = NULL;
	if (!b64 || strlen(b64) != 44)
		return false;
	if (sodium_base642bin(tmp, sizeof(tmp), b64, 44, NULL, &n, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n != CFG_KEY_LEN || end != b64 + 44) {
		sodium_memzero(tmp, sizeof(tmp));
		return false;
	}
	memcpy(key, tmp, CFG_KEY_LEN);
	sodium_memzero(tmp, sizeof(tmp));
	return true;
}
