/* MESH_* settings for `up` and `sidecar` (cli/env.h). */
#include "cli/env.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/util/hostname.h"
#include "core/util/log.h"
#include "node/control.h"
#include "node/forward.h"

#define ENV_SECRET_MAX 4096
#define ENV_ARGS_MAX   4096
#define ENV_WORDS_MAX  64

enum env_kind {
	ENV_STR,       /* a string flag */
	ENV_SECRET,    /* a string flag whose value is never printed */
	ENV_YESNO,     /* --X / --no-X: "yes" / "no" */
	ENV_EPHEMERAL, /* the bool --ephemeral */
};

struct env_setting {
	const char *var;
	const char *flag;
	size_t off; /* of the const char * in struct cli (not ENV_EPHEMERAL) */
	enum env_kind kind;
	unsigned pref; /* its NODE_ARG_* bit: a setting prefs.json keeps */
};

#define S(v, f, field, k, b)                                                             \
	{                                                                                \
		v, f, offsetof(struct cli, field), k, b                                  \
	}
static const struct env_setting env_settings[] = {
    S("MESH_STATE_DIR", "--state", state, ENV_STR, 0),
    S("MESH_JOIN", "--join", join, ENV_SECRET, 0),
    S("MESH_HOSTNAME", "--hostname", hostname, ENV_STR, 0),
    S("MESH_SOCKS5", "--socks5", socks5, ENV_STR, NODE_ARG_SOCKS5),
    S("MESH_HTTP_PROXY", "--http-proxy", http_proxy, ENV_STR, NODE_ARG_HTTP_PROXY),
    S("MESH_EXPOSE", "--expose", expose, ENV_STR, NODE_ARG_EXPOSE),
    S("MESH_FORWARDS", "--forward", forward, ENV_STR, NODE_ARG_FORWARDS),
    S("MESH_CONFIG", "--config", config, ENV_STR, NODE_ARG_CONFIG),
    S("MESH_DIRECT", "--direct", direct, ENV_STR, NODE_ARG_DIRECT),
    S("MESH_HEALTH_LISTEN", "--health-listen", health_listen, ENV_STR, 0),
    S("MESH_METRICS_PEERS", "--metrics-peers", metrics_peers, ENV_YESNO, 0),
    S("MESH_LOG_LEVEL", "--log-level", log_level, ENV_STR, 0),
    S("MESH_API", "--api", api, ENV_STR, 0),
    S("MESH_PROXY_USER", "--proxy-user", proxy_user, ENV_STR, NODE_ARG_PROXY_USER),
    S("MESH_PROXY_PASSWORD_FILE", "--proxy-password-file", proxy_password_file, ENV_STR,
      NODE_ARG_PROXY_PASSWORD),
    S("MESH_PROXY_PASSWORD", "MESH_PROXY_PASSWORD", proxy_password, ENV_SECRET,
      NODE_ARG_PROXY_PASSWORD),
    S("MESH_PROXY_OPEN", "--proxy-open", proxy_open, ENV_YESNO, NODE_ARG_PROXY_OPEN),
    S("MESH_PORTMAP", "--portmap", portmap, ENV_YESNO, NODE_ARG_PORTMAP),
    S("MESH_BIRTHDAY", "--birthday", birthday, ENV_YESNO, NODE_ARG_BIRTHDAY),
    {"MESH_EPHEMERAL", "--ephemeral", 0, ENV_EPHEMERAL, 0},
};
#undef S
#define N_SETTINGS (sizeof(env_settings) / sizeof(env_settings[0]))

/* Read by the node or its servers, not settings of struct cli. */
static const char *const env_other[] = {
    "MESH_JOIN_FILE",
    "MESH_EXTRA_ARGS",
    "MESH_CONTROL_DATA",
    "MESH_RELAY_JOIN",
};
/* The build and the test harness's: not typos, not the node's. */
static const char *const env_harness[] = {
    "MESH_SKIP_DEPS", "MESH_ARTIFACTS", "MESH_FUZZING", "MESH_CHECKSUM_CHECK",
    "MESH_BUILD",     "MESH_PROXY",     "MESH_TCP_BUF", "MESH_OUTAGE_S",
};
static const char *const env_harness_prefix[] = {"MESH_TEST_", "MESH_E2E_", "MESH_UNIT_",
                                                 "MESH_BUILD_"};

static const char **env_field(struct cli *c, const struct env_setting *s)
{
	return (const char **)(void *)((char *)c + s->off);
}

/* The value of name in envp; NULL when unset or empty. */
static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return (*envp)[n + 1] ? *envp + n + 1 : NULL;
	return NULL;
}

static const char *env_yesno(const char *v)
{
	static const char *const yes[] = {"yes", "true", "1", "on"};
	static const char *const no[] = {"no", "false", "0", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]))
			return "yes";
		if (!strcasecmp(v, no[i]))
			return "no";
	}
	return NULL;
}

/* The current value of a setting in c, as a string (NULL: unset). */
static const char *env_current(struct cli *c, const struct env_setting *s)
{
	if (s->kind == ENV_EPHEMERAL)
		return c->ephemeral ? "yes" : NULL;
	return *env_field(c, s);
}

/* How the setting reads on the command line, for messages. */
static void env_flag_text(const struct env_setting *s, const char *v, char *out,
                          size_t cap)
{
	if (s->kind == ENV_YESNO || s->kind == ENV_EPHEMERAL)
		snprintf(out, cap, "--%s%s", !strcmp(v, "no") ? "no-" : "", s->flag + 2);
	else if (s->kind == ENV_SECRET)
		snprintf(out, cap, "%s (value hidden)", s->flag);
	else
		snprintf(out, cap, "%s %s", s->flag, v);
}

/* Sets s to v in c unless c has another value already (a conflict). who
 * names the new value's source, was the old one's. */
static int env_set(struct cli *c, const struct env_setting *s, const char *v,
                   const char *who, const char *was, char *err, size_t errlen)
{
	const char *cur = env_current(c, s);
	if (cur && strcmp(cur, v) != 0) {
		char f[300];
		env_flag_text(s, cur, f, sizeof(f));
		snprintf(err, errlen,
		         "%s%s%.200s conflicts with %s from %s: set it in one place "
		         "(or to the same value in both)",
		         who, s->kind == ENV_SECRET ? "" : "=",
		         s->kind == ENV_SECRET ? "" : v, f, was);
		return 2;
	}
	if (s->kind == ENV_EPHEMERAL) {
		c->ephemeral = !strcmp(v, "yes");
		c->no_ephemeral = !c->ephemeral;
	} else {
		*env_field(c, s) = v;
	}
	/* the same value given as a flag too sticks as the flag does */
	if (!cur)
		c->env_only |= s->pref;
	return 0;
}

/* Checks what can be checked of one variable's value without the state
 * directory, so the error names the variable; the rest is checked where
 * the flags are (node_ctl_prepare) before anything is written. */
static int env_check(const struct env_setting *s, const char *raw, const char **v,
                     char *err, size_t errlen)
{
	*v = raw;
	if (s->kind == ENV_YESNO || s->kind == ENV_EPHEMERAL) {
		if (!(*v = env_yesno(raw))) {
			snprintf(err, errlen,
			         "%s=%.100s: want yes or no (true/false, 1/0)", s->var,
			         raw);
			return 2;
		}
		return 0;
	}
	enum cfg_direct d;
	struct fwd_list fl;
	char ferr[200];
	bool listen =
	    !strcmp(s->var, "MESH_SOCKS5") || !strcmp(s->var, "MESH_HTTP_PROXY");
	for (const char *q = raw; s->kind != ENV_SECRET && *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f) {
			snprintf(err, errlen,
			         "%s holds a control character (a line end?): one value "
			         "on one line, please",
			         s->var);
			return 2;
		}
	if (listen && !fwd_listen_spec_ok(raw))
		snprintf(err, errlen,
		         "%s=%.100s: want PORT, IPV4:PORT, [IPV6]:PORT or off (ports "
		         "1-65535)",
		         s->var, raw);
	else if (!strcmp(s->var, "MESH_DIRECT") && !cfg_direct_parse(raw, &d))
		snprintf(err, errlen, "MESH_DIRECT=%.100s: want public, all or no", raw);
	else if (!strcmp(s->var, "MESH_LOG_LEVEL") && log_level_parse(raw) < 0)
		snprintf(err, errlen,
		         "MESH_LOG_LEVEL=%.100s: want error, warn, info or debug", raw);
	else if (!strcmp(s->var, "MESH_HOSTNAME") && !hostname_valid(raw, strlen(raw)))
		snprintf(err, errlen,
		         "MESH_HOSTNAME=%.100s: not a host name (letters, digits, '-', "
		         "at most 63)",
		         raw);
	else if (!strcmp(s->var, "MESH_FORWARDS") &&
	         !fwd_parse(raw, &fl, ferr, sizeof(ferr)))
		snprintf(err, errlen, "MESH_FORWARDS: %s", ferr);
	else
		return 0;
	return 2;
}

int cli_secret_read(const char *path, const char *what, char **out, char *err,
                    size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen,
		         "%s %s: %s (a file holding the secret on its first line)", what,
		         path, strerror(errno));
		return -1;
	}
	char *buf = calloc(1, ENV_SECRET_MAX + 1);
	size_t n = 0;
	ssize_t r = 0;
	while (buf && n < ENV_SECRET_MAX &&
	       (r = read(fd, buf + n, ENV_SECRET_MAX - n)) > 0)
		n += (size_t)r;
	int e = errno;
	close(fd);
	if (!buf || r < 0) {
		snprintf(err, errlen, "%s %s: %s", what, path,
		         buf ? strerror(e) : "out of memory");
		free(buf);
		return -1;
	}
	size_t line = strcspn(buf, "\r\n");
	if (line == n && n == ENV_SECRET_MAX) {
		snprintf(err, errlen, "%s %s: the first line is longer than %d bytes",
		         what, path, ENV_SECRET_MAX - 1);
	} else if (line == 0) {
		snprintf(err, errlen,
		         "%s %s: the first line is empty (write the secret "
		         "there)",
		         what, path);
	} else if (memchr(buf, 0, n)) { /* strcspn stops at a NUL: look at all */
		snprintf(err, errlen, "%s %s: holds a NUL byte (not a text secret)", what,
		         path);
	} else {
		sodium_memzero(buf + line, ENV_SECRET_MAX + 1 - line);
		*out = buf;
		return 0;
	}
	sodium_memzero(buf, ENV_SECRET_MAX + 1);
	free(buf);
	return -1;
}

int cli_env_split(const char *s, char **bufp, char ***argvp, int *argcp, char *err,
                  size_t errlen)
{
	size_t len = strlen(s);
	*bufp = NULL, *argvp = NULL, *argcp = 0;
	if (len > ENV_ARGS_MAX) {
		snprintf(err, errlen, "%zu bytes long (at most %d)", len, ENV_ARGS_MAX);
		return -1;
	}
	char *buf = malloc(len + 1);
	char **argv = calloc(ENV_WORDS_MAX + 2, sizeof(*argv));
	if (!buf || !argv) {
		free(buf), free(argv);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int argc = 0;
	argv[argc++] = "mesh-proxy";
	size_t o = 0;
	const char *p = s;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		if (argc == ENV_WORDS_MAX + 1) {
			snprintf(err, errlen, "more than %d words", ENV_WORDS_MAX);
			goto fail;
		}
		argv[argc++] = buf + o;
		char q = 0;
		for (; *p && (q || !strchr(" \t\n\r", *p)); p++) {
			if (q == '\'' && *p == '\'') {
				q = 0;
			} else if (q == '"' && *p == '"') {
				q = 0;
			} else if (q == '"' && *p == '\\' &&
			           (p[1] == '"' || p[1] == '\\')) {
				buf[o++] = *++p;
			} else if (q) {
				buf[o++] = *p;
			} else if (*p == '\'' || *p == '"') {
				q = *p;
			} else if (*p == '\\' && p[1]) {
				buf[o++] = *++p;
			} else {
				buf[o++] = *p;
			}
		}
		if (q) {
			snprintf(err, errlen, "a %s quote is not closed",
			         q == '"' ? "double" : "single");
			goto fail;
		}
		buf[o++] = 0;
	}
	*bufp = buf, *argvp = argv, *argcp = argc;
	return 0;
fail:
	sodium_memzero(buf, len + 1);
	free(buf), free(argv);
	return -1;
}

/* MESH_EXTRA_ARGS: parsed as flags into a struct of its own, then merged
 * into c like variables, so a flag given twice with two values is a
 * conflict and not "the last one wins". */
static int env_extra(struct cli *c, const char *s, struct cli_env *e, const char **from,
                     char *err, size_t errlen)
{
	int argc;
	char serr[160];
	if (cli_env_split(s, &e->xbuf, &e->xargv, &argc, serr, sizeof(serr)) != 0) {
		snprintf(err, errlen, "MESH_EXTRA_ARGS: %s", serr);
		return 2;
	}
	e->xbuf_len = strlen(s) + 1; /* cli_env_split's allocation */
	struct cli x = {.origin = "MESH_EXTRA_ARGS"};
	if (cli_parse_opts(argc, e->xargv, 1, &x) != 0) {
		err[0] = 0; /* printed */
		return 2;
	}
	if (x.target) { /* may be a token given without --join: not shown */
		snprintf(err, errlen,
		         "MESH_EXTRA_ARGS: unexpected argument (%zu characters, not "
		         "shown; only flags belong there)",
		         strlen(x.target));
		return 2;
	}
	e->extra_join = x.join != NULL;
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct env_setting *st = &env_settings[i];
		const char *v = env_current(&x, st);
		if (!v)
			continue;
		char who[300];
		env_flag_text(st, v, who, sizeof(who));
		const char *cur = env_current(c, st);
		if (cur && strcmp(cur, v) != 0) {
			char f[300];
			env_flag_text(st, cur, f, sizeof(f));
			snprintf(
			    err, errlen,
			    "MESH_EXTRA_ARGS %s conflicts with %s from the command "
			    "line: set it in one place (or to the same value in both)",
			    who, f);
			return 2;
		}
		if (st->kind == ENV_EPHEMERAL)
			c->ephemeral = true;
		else
			*env_field(c, st) = v;
		if (!cur)
			c->env_only |= st->pref;
		from[i] = "MESH_EXTRA_ARGS";
	}
	return 0;
}

/* MESH_JOIN_FILE: the token, compared with --join / MESH_JOIN like any
 * value. */
static int env_join_file(struct cli *c, char *const *envp, struct cli_env *e,
                         const char *was, char *err, size_t errlen)
{
	const char *path = env_get(envp, "MESH_JOIN_FILE");
	if (!path)
		return 0;
	if (env_get(envp, "MESH_JOIN")) {
		snprintf(err, errlen,
		         "MESH_JOIN and MESH_JOIN_FILE are both set: keep one of them");
		return 2;
	}
	char rerr[400];
	if (cli_secret_read(path, "MESH_JOIN_FILE", &e->join, rerr, sizeof(rerr)) != 0) {
		snprintf(err, errlen, "%s", rerr);
		return 2;
	}
	return env_set(c, &env_settings[1], e->join, "MESH_JOIN_FILE", was, err, errlen);
}

int cli_env_secrets(struct cli *c, struct cli_env *e, char *err, size_t errlen)
{
	if (!c->proxy_password_file)
		return 0;
	if (c->proxy_password) {
		snprintf(err, errlen,
		         "MESH_PROXY_PASSWORD and a password file (--proxy-password-file "
		         "or MESH_PROXY_PASSWORD_FILE) are both set: keep one of them");
		return 2;
	}
	char rerr[400];
	if (cli_secret_read(c->proxy_password_file, "proxy password file", &e->password,
	                    rerr, sizeof(rerr)) != 0) {
		snprintf(err, errlen, "%s", rerr);
		return 2;
	}
	c->proxy_password = e->password;
	return 0;
}

int cli_env_apply(struct cli *c, char *const *envp, struct cli_env *e, char *err,
                  size_t errlen)
{
	const char *from[N_SETTINGS];
	for (size_t i = 0; i < N_SETTINGS; i++)
		from[i] = "the command line";
	const char *xa = env_get(envp, "MESH_EXTRA_ARGS");
	int r = xa ? env_extra(c, xa, e, from, err, errlen) : 0;
	if (r)
		return r;
	if (env_get(envp, "MESH_PROXY_PASSWORD") &&
	    env_get(envp, "MESH_PROXY_PASSWORD_FILE")) {
		snprintf(err, errlen,
		         "MESH_PROXY_PASSWORD and MESH_PROXY_PASSWORD_FILE are "
		         "both set: keep one of them");
		return 2;
	}
	if ((r = env_join_file(c, envp, e, from[1], err, errlen)))
		return r;
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct env_setting *s = &env_settings[i];
		const char *raw = env_get(envp, s->var), *v;
		if (!raw)
			continue;
		if ((r = env_check(s, raw, &v, err, errlen)))
			return r;
		/* a secret moves to private memory: cli_env_scrub wipes the
		 * environment's copy (/proc/PID/environ) */
		char **own = s->kind != ENV_SECRET          ? NULL
		             : !strcmp(s->var, "MESH_JOIN") ? &e->env_join
		                                            : &e->env_password;
		if (own && !*own && !(v = *own = strdup(v))) {
			snprintf(err, errlen, "out of memory");
			return 1;
		}
		if ((r = env_set(c, s, v, s->var, from[i], err, errlen)))
			return r;
	}
	return cli_env_secrets(c, e, err, errlen);
}

/* Wipes the value bytes of NAME=value in place (where /proc/PID/environ
 * reads them) and drops the variable. */
static void env_wipe(char **envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			sodium_memzero(*envp + n + 1, strlen(*envp + n + 1));
	unsetenv(name);
}

void cli_env_scrub(char **envp, const struct cli_env *e)
{
	if (e->env_join)
		env_wipe(envp, "MESH_JOIN");
	if (e->env_password)
		env_wipe(envp, "MESH_PROXY_PASSWORD");
	if (e->extra_join) /* the flags were copied by cli_env_split */
		env_wipe(envp, "MESH_EXTRA_ARGS");
}

void cli_env_wipe(struct cli_env *e)
{
	char *own[] = {e->join, e->password, e->env_join, e->env_password};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (own[i])
			sodium_memzero(own[i], strlen(own[i]));
	/* the split words are NUL-separated: strlen would stop at the first */
	if (e->xbuf)
		sodium_memzero(e->xbuf, e->xbuf_len);
}

void cli_env_release(struct cli_env *e)
{
	cli_env_wipe(e);
	free(e->join);
	free(e->password);
	free(e->env_join);
	free(e->env_password);
	free(e->xbuf);
	free(e->xargv);
	memset(e, 0, sizeof(*e));
}

static bool env_known(const char *name, size_t n)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strlen(env_settings[i].var) == n &&
		    !strncmp(env_settings[i].var, name, n))
			return true;
	for (size_t i = 0; i < sizeof(env_other) / sizeof(env_other[0]); i++)
		if (strlen(env_other[i]) == n && !strncmp(env_other[i], name, n))
			return true;
	for (size_t i = 0; i < sizeof(env_harness) / sizeof(env_harness[0]); i++)
		if (strlen(env_harness[i]) == n && !strncmp(env_harness[i], name, n))
			return true;
	for (size_t i = 0; i < sizeof(env_harness_prefix) / sizeof(env_harness_prefix[0]);
	     i++)
		if (!strncmp(env_harness_prefix[i], name, strlen(env_harness_prefix[i])))
			return true;
	return false;
}

size_t cli_env_warn_unknown(char *const *envp, FILE *f)
{
	size_t warned = 0;
	for (char *const *p = envp; p && *p; p++) {
		const char *eq = strchr(*p, '=');
		size_t n = eq ? (size_t)(eq - *p) : strlen(*p);
		if (n < 5 || strncmp(*p, "MESH_", 5) != 0 || env_known(*p, n))
			continue;
		bool seen = false; /* environ may hold a name twice */
		for (char *const *q = envp; q < p && !seen; q++)
			seen = !strncmp(*q, *p, n) && (*q)[n] == '=';
		if (seen)
			continue;
		fprintf(f,
		        "mesh-proxy: warning: %.*s is not a setting of mesh-proxy "
		        "(a typo?); ignored\n",
		        (int)(n > 100 ? 100 : n), *p);
		warned++;
	}
	return warned;
}
