/* mesh-control's command line, private to servers/control/main.c (usage,
 * option parsing, dispatch) and the commands: cli_cmds.c, cli_relays.c,
 * cli_policy.c (policy check) and cli_users.c (users, policy set/get/clear).
 * Not part of any other module's interface. */
#ifndef MESH_CTL_CLI_INT_H
#define MESH_CTL_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "servers/control/store.h"

#define CTL_CLI_DEFAULT_LISTEN "127.0.0.1:7443"

/* Options, by bit; each command says which it accepts. */
enum {
	I_DOMAIN,
	I_LISTEN,
	I_REUSABLE,
	I_EPHEMERAL,
	I_EXPIRY,
	I_TAGS,
	I_NOKEY,
	I_JSON,
	I_RELAY,
	I_KEYFPR,
	I_PENDING,
	I_NODES,
	I_USER,
	I_CONTROL,
	I_STORE,
	I_STOREFILE,
	I_FROM,
	I_TO,
	I_TOFILE,
	O_NOPTS
};
enum {
	O_DOMAIN = 1 << I_DOMAIN,
	O_LISTEN = 1 << I_LISTEN,
	O_REUSABLE = 1 << I_REUSABLE,
	O_EPHEMERAL = 1 << I_EPHEMERAL,
	O_EXPIRY = 1 << I_EXPIRY,
	O_TAGS = 1 << I_TAGS,
	O_NOKEY = 1 << I_NOKEY, /* token --no-key */
	O_JSON = 1 << I_JSON,
	O_RELAY = 1 << I_RELAY,         /* token --relay */
	O_KEYFPR = 1 << I_KEYFPR,       /* nodes approve --key FPR */
	O_PENDING = 1 << I_PENDING,     /* nodes list --pending */
	O_NODES = 1 << I_NODES,         /* policy check --nodes FILE */
	O_USER = 1 << I_USER,           /* token / keys create --user NAME */
	O_STORE = 1 << I_STORE,         /* init --store URL */
	O_STOREFILE = 1 << I_STOREFILE, /* init --store-file FILE */
	O_FROM = 1 << I_FROM,           /* migrate --from DIR */
	O_TO = 1 << I_TO,               /* migrate --to URL */
	O_TOFILE = 1 << I_TOFILE,       /* migrate --to-file FILE */
	O_CONTROL = 1 << I_CONTROL,     /* token --control ADDR[,ADDR...] */
};
/* The KEY OPTIONS of --help (auth key properties). */
#define O_KEY (O_REUSABLE | O_EPHEMERAL | O_EXPIRY | O_TAGS | O_USER)

#define CTL_CLI_MAX_POS 4

/* The parsed command line. */
struct cli {
	const char *data;
	unsigned seen;            /* O_* bits of the options given */
	const char *val[O_NOPTS]; /* their values (NULL for flags) */
	const char *pos[CTL_CLI_MAX_POS];
	int npos;
	bool help, version;
};

/* Prints "mesh-control: " fmt (with arg) and the --help hint to stderr;
 * returns 2, the usage-error exit code. */
int ctl_cli_die_usage(const char *fmt, const char *arg);

/* The commands; each returns the process exit code (0, 1 error, 2 usage)
 * and prints its own messages. dir is the data directory. */
int ctl_cli_cmd_init(const struct cli *c, const char *dir);
/* init's store (cli_init_store.c). ctl_cli_init_url: the PostgreSQL URL
 * of --store or --store-file into url ("" for SQLite); 0, or the exit
 * code after saying why. ctl_cli_init_sqlite_check: 1 (after saying so)
 * when dir already names a PostgreSQL store. ctl_cli_init_pg_open: checks
 * dir (made 0700 if missing; no control.db; a store.url only with this
 * URL: *have_url) and opens the PostgreSQL store (creating its schema);
 * where gets its description; *made_dir: dir was made (a refused init
 * removes it again). ctl_cli_init_pg_joined: the store was
 * initialised already: with dir's server.key matching, writes store.url
 * (and control.conf, conf_text, if missing) and returns 0; else says to
 * copy the first host's data directory and returns 1. */
int ctl_cli_init_url(const struct cli *c, char *url, size_t cap);
int ctl_cli_init_sqlite_check(const char *dir);
struct ctl_store *ctl_cli_init_pg_open(const char *dir, const char *url, char *where,
                                       size_t wcap, bool *have_url, bool *made_dir);
int ctl_cli_init_pg_joined(const char *dir, const char *url, bool have_url, bool made_dir,
                           const char *where, const struct ctl_meta *meta,
                           const char *conf_text);
/* migrate --from DIR --to URL | --to-file FILE (cli_migrate.c); status
 * (cli_status.c). */
int ctl_cli_cmd_migrate(const struct cli *c);
int ctl_cli_cmd_status(const struct cli *c, const char *dir);
/* Opens dir's initialised store (creating nothing), or says why not on
 * stderr and returns NULL. */
struct ctl_store *ctl_cli_open_store(const char *dir, struct ctl_meta *meta);
int ctl_cli_cmd_token(const struct cli *c, const char *dir, struct ctl_store *st,
                      const struct ctl_meta *meta);
int ctl_cli_cmd_keys_create(const struct cli *c, struct ctl_store *st);
int ctl_cli_cmd_keys_list(const struct cli *c, struct ctl_store *st);
int ctl_cli_cmd_keys_revoke(struct ctl_store *st, const char *arg);
int ctl_cli_cmd_nodes_list(const struct cli *c, struct ctl_store *st,
                           const struct ctl_meta *meta);
/* act: "approve", "remove", "expire" or "rename" (with newname). A pending
 * node is approved by its ID, or by its name with keyfpr (its machine key's
 * fingerprint, ctl_key_fpr), never by a bare name. */
int ctl_cli_cmd_nodes_act(struct ctl_store *st, const char *act, const char *arg,
                          const char *newname, const char *keyfpr);
/* relays list [--json] / relays remove NAME (cli_relays.c). */
int ctl_cli_cmd_relays_list(const struct cli *c, struct ctl_store *st);
int ctl_cli_cmd_relays_remove(struct ctl_store *st, const char *name);
/* policy check FILE [--nodes FILE] [--json] (cli_policy.c): the nodes from
 * nodes_file, else from st (the store's nodes in the map) when not NULL,
 * else none. */
int ctl_cli_cmd_policy_check(const char *file, const char *nodes_file,
                             struct ctl_store *st, bool json);
/* Reads a policy file (path, or "-" for stdin) whole; NULL after printing
 * why (it cannot be read, or it is over POLICY_MAX_BYTES) to stderr.
 * free() the result. */
char *ctl_cli_read_policy(const char *path, size_t *len);
/* policy set FILE | get [--json] | clear, and users create NAME | list
 * [--json] | remove NAME (cli_users.c): sub is the subcommand, arg its
 * argument (NULL if none). */
int ctl_cli_cmd_policy_store(const struct cli *c, struct ctl_store *st, const char *sub,
                             const char *arg);
int ctl_cli_cmd_users(const struct cli *c, struct ctl_store *st, const char *sub,
                      const char *arg);
/* Hidden: mesh-control token-decode TOKEN (for tests and support). */
int ctl_cli_cmd_token_decode(const char *s);

#endif
