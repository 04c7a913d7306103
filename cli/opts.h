/* The command line of mesh-proxy: the options every subcommand shares,
 * parsed into struct cli. Kept apart from main() so that MESH_EXTRA_ARGS
 * (cli/env.c) goes through exactly the same parser as real flags. */
#ifndef MESH_CLI_OPTS_H
#define MESH_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>

struct cli {
	const char *config;
	const char *api;
	const char *state, *join, *hostname, *socks5, *http_proxy, *expose, *direct;
	const char *portmap;             /* --portmap: "yes", --no-portmap: "no" */
	const char *birthday;            /* --birthday: "yes", --no-birthday: "no" */
	const char *health_listen;       /* --health-listen ADDR:PORT */
	const char *forward;             /* --forward SPEC[,SPEC...] */
	const char *proxy_user;          /* --proxy-user NAME */
	const char *proxy_password_file; /* --proxy-password-file FILE */
	const char *proxy_password;      /* MESH_PROXY_PASSWORD, or the file's */
	const char *proxy_open;          /* --proxy-open: "yes", --no-proxy-open: "no" */
	bool ephemeral;                  /* --ephemeral */
	bool sidecar;                    /* the sidecar command (settings from MESH_*) */
	bool live;                       /* health --live */
	const char *metrics_peers; /* --metrics-peers: "yes", --no-metrics-peers: "no" */
	int family;                /* ip -4 / -6 */
	const char *log_level;
	bool json, disco, until_direct;
	unsigned count;
	double wait_s, interval_s;
	const char *target;
	/* Where the options come from, for errors ("MESH_EXTRA_ARGS"); NULL:
	 * the command line. */
	const char *origin;
	/* NODE_ARG_* bits (node/control.h) of the settings a MESH_* variable
	 * (or MESH_EXTRA_ARGS) gave: this run only, never kept. */
	unsigned env_only;
	bool no_ephemeral; /* MESH_EPHEMERAL=no: said, not just unset */
};

/* a as an error may show it: itself, or "(N characters, not shown)" when
 * it may be a secret (from MESH_EXTRA_ARGS, c->origin set, or starting
 * like a join token, "mesh1"); buf holds the latter. c may be NULL. */
const char *cli_arg_shown(const struct cli *c, const char *a, char *buf, size_t cap);

/* Parses argv[i..argc) into c; positional arguments go to c->target (a
 * second one is an error). 0, or 2 (usage) after printing one line. */
int cli_parse_opts(int argc, char **argv, int i, struct cli *c);

/* "mesh-proxy: " fmt (with arg) and the --help hint on stderr; returns 2. */
int cli_die_usage(const char *fmt, const char *arg);

#endif
