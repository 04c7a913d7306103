/* Settings of `mesh-proxy up` and `mesh-proxy sidecar` from the
 * environment (containers, systemd EnvironmentFile=): each MESH_* variable
 * mirrors a flag.
 *
 *   MESH_STATE_DIR --state        MESH_JOIN --join (MESH_JOIN_FILE: a file)
 *   MESH_HOSTNAME --hostname      MESH_SOCKS5 --socks5
 *   MESH_HTTP_PROXY --http-proxy  MESH_EXPOSE --expose
 *   MESH_FORWARDS --forward       MESH_CONFIG --config
 *   MESH_DIRECT --direct          MESH_HEALTH_LISTEN --health-listen
 *   MESH_LOG_LEVEL --log-level    MESH_API --api
 *   MESH_PROXY_USER --proxy-user
 *   MESH_PROXY_PASSWORD (MESH_PROXY_PASSWORD_FILE --proxy-password-file)
 *   MESH_PROXY_OPEN, MESH_PORTMAP, MESH_BIRTHDAY, MESH_EPHEMERAL: yes/no,
 *     true/false, 1/0, on/off
 *   MESH_EXTRA_ARGS: more flags, split as cli_env_split says
 *
 * An empty variable counts as unset. A variable and a flag (or
 * MESH_EXTRA_ARGS) that set one setting to different values, and a secret
 * given both as X and X_FILE, are conflicts: the node does not start. */
#ifndef MESH_CLI_ENV_H
#define MESH_CLI_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cli/opts.h"

/* What cli_env_apply allocated: secrets read from files (wiped on
 * release) and the split MESH_EXTRA_ARGS that struct cli points into. */
struct cli_env {
	char *join;     /* MESH_JOIN_FILE's token */
	char *password; /* the proxy password file's */
	char *xbuf;     /* MESH_EXTRA_ARGS, split in place */
	size_t xbuf_len; /* its allocation (NULs between the words) */
	char **xargv;
	char *env_join;     /* MESH_JOIN's value, copied out of the environment */
	char *env_password; /* MESH_PROXY_PASSWORD's */
	bool extra_join;    /* MESH_EXTRA_ARGS held a --join */
};

/* Applies envp (NULL-terminated "NAME=value" strings) to c, which holds
 * the command line's flags, then reads the secret files (MESH_JOIN_FILE,
 * --proxy-password-file / MESH_PROXY_PASSWORD_FILE). 0, or 2 (usage) with
 * one line in err; err is empty when the option parser already printed
 * it (a bad flag in MESH_EXTRA_ARGS). Nothing is touched on disk. */
int cli_env_apply(struct cli *c, char *const *envp, struct cli_env *e, char *err,
                  size_t errlen);

/* Reads only the secret files of c (for `up` without the environment). */
int cli_env_secrets(struct cli *c, struct cli_env *e, char *err, size_t errlen);

void cli_env_release(struct cli_env *e); /* wipes the secrets */
/* Wipes them without freeing (cli_env_release does it first). */
void cli_env_wipe(struct cli_env *e);

/* After cli_env_apply: the secrets' bytes in the environment block
 * (MESH_JOIN, MESH_PROXY_PASSWORD, MESH_EXTRA_ARGS when it held a --join)
 * wiped in place, so /proc/PID/environ no longer shows them, and the
 * variables unset. c points at e's copies, not at envp. */
void cli_env_scrub(char **envp, const struct cli_env *e);

/* Splits s into words at blanks (space, tab, newline). 'single quotes'
 * keep everything inside; "double quotes" too, but for \" and \\; outside
 * quotes a backslash keeps the next character. The words live in *buf
 * (*argv[0] is "mesh-proxy", then the words, then NULL); free both with
 * free(). 0, or -1 with err (an unterminated quote, over 64 words or
 * 4096 bytes). */
int cli_env_split(const char *s, char **buf, char ***argv, int *argc, char *err,
                  size_t errlen);

/* Reads the first line of a secret file (Docker and Kubernetes secrets):
 * at most 4095 bytes, the line end stripped, not empty. what names the
 * setting in errors. 0, or -1 with err. */
int cli_secret_read(const char *path, const char *what, char **out, char *err,
                    size_t errlen);

/* Warns on f once per MESH_* variable that no part of the node reads
 * (likely a typo), ignoring the build and test harness's variables.
 * Returns how many. */
size_t cli_env_warn_unknown(char *const *envp, FILE *f);

#endif
