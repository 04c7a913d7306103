/* Internal to config/: the parser state shared by config.c (files, sections,
 * the line reader fed to inih) and config_value.c (one function per value
 * kind). Not for use outside config/ except by tests and the fuzzer. */
#ifndef MESH_CONFIG_INT_H
#define MESH_CONFIG_INT_H

#include "config/config.h"

#include <stdarg.h>

/* Options for config_load_buffer(). Zero means the normal behaviour. */
struct cfg_opts {
	bool no_include; /* WGConfig is an error (the fuzzer must not open files) */
	bool no_resolve; /* host names are errors instead of getaddrinfo() calls */
	bool quiet;      /* no warnings on the log */
};

/* Parses a whole configuration held in memory; name is used in messages and
 * to find a relative WGConfig file. Same contract as config_load(). */
int config_load_buffer(const char *name, const char *buf, size_t len, struct config *cfg,
                       const struct cfg_opts *opts, char *err, size_t errlen);

/* Files larger than this are refused (a config is a few KiB). */
#define CFG_MAX_FILE (1u << 20)

enum cfg_sect {
	CFG_SECT_TOP = 0, /* keys before the first [section] */
	CFG_SECT_INTERFACE,
	CFG_SECT_PEER,
	CFG_SECT_SOCKS5,
	CFG_SECT_HTTP,
	CFG_SECT_TCP_CLIENT,
	CFG_SECT_TCP_SERVER,
	CFG_SECT_UDP_CLIENT,
	CFG_SECT_UDP_SERVER,
	CFG_SECT_STDIO,
};

#define CFG_MAX_KEYS 16 /* keys per section table */

/* One file being read (the main file, then the WGConfig file). */
struct cfg_src {
	const char *name; /* as shown in messages */
	const char *buf;
	size_t len, pos;
	int line; /* real line number of the line last handed to inih */
	bool is_include;
	/* An over-long list line being handed out in pieces. */
	char split_key[32];
	const char *split_rest; /* NULL when nothing is pending */
	size_t split_len;
	struct cfg_parser *p;
};

struct cfg_parser {
	struct config *cfg;
	struct cfg_opts opts;
	struct cfg_src *src; /* the file being read */
	enum cfg_sect sect;
	int sect_line;
	int seen[CFG_MAX_KEYS]; /* line where each single-valued key was set */
	bool have_interface;
	char *interface_where; /* "file:line" of [Interface], for messages */
	char *wgconfig;        /* WGConfig value as written */
	int wgconfig_line;
	bool failed;
	char *err;
	size_t errlen;
};

/* Records the first error as "file:line: message"; later ones are dropped. */
void cfg_errf(struct cfg_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A warning naming file and line (silent with opts.quiet). */
void cfg_warnf(struct cfg_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies s into out (size outlen) for quoting in a message: at most ~60
 * characters, non-printable bytes as '?'. */
const char *cfg_quote(const char *s, char *out, size_t outlen);

/* Canonical name of a section, e.g. "Peer". */
const char *cfg_sect_name(enum cfg_sect s);

/* ---- config_value.c: value parsers (all return 0 or -1 after cfg_errf) ---- */

/* One handler per key. v is the whole value (already trimmed). */
typedef int (*cfg_value_fn)(struct cfg_parser *p, const char *key, const char *v);

struct cfg_keydef {
	const char *name;
	cfg_value_fn fn; /* NULL: wg-quick-only key, ignored with a warning */
	bool list;       /* may repeat; values append */
};

/* The key table of a section, terminated by a NULL name. */
const struct cfg_keydef *cfg_keys(enum cfg_sect s);

/* Parses "a.b.c.d[/n]" or "v6[/n]"; without /n the prefix is the full
 * length. Returns false if not an address or prefix. */
bool cfg_parse_prefix(const char *s, size_t len, struct cfg_prefix *out);
/* Strict decimal in [min, max]. */
bool cfg_parse_uint(const char *s, unsigned long min, unsigned long max,
                    unsigned long *out);
/* Splits "host:port" or "[v6]:port" (host may be empty when allow_empty).
 * host is copied without brackets into host (size hostlen). */
bool cfg_split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
                        bool allow_empty_host, bool allow_port0);
/* True for a plausible DNS name: labels of [A-Za-z0-9_-], dots, <= 253. */
bool cfg_is_hostname(const char *s);

/* "[Section] Key: "value" what" for a bad value. */
void cfg_value_err(struct cfg_parser *p, const char *key, const char *v,
                   const char *what);

/* config_limits.c: front-end keys (see there). */
int cfg_v_max_connections(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_handshake_timeout(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_idle_timeout(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_buffer_size(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_direct(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_allow_open(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_proxy_protocol(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_max_flows(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_memory_limit(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_max_conns_per_peer(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_portmap(struct cfg_parser *p, const char *key, const char *v);
int cfg_v_birthday(struct cfg_parser *p, const char *key, const char *v);

/* Checks a section's required keys when it ends (or the file does). */
int cfg_section_check(struct cfg_parser *p);

#endif
