/* The store a mesh-control data directory names, as the command line sees
 * it: SQLite (DIR/control.db) or PostgreSQL (the URL in DIR/store.url).
 * Opening with readable errors, describing a store without its password,
 * reading a URL from --store-file and writing DIR/store.url. Used by the
 * admin commands (cli_cmds.c, admin_cli.c), serve (server_serve.c), init
 * and migrate. */
#ifndef MESH_CTL_CLI_STORE_H
#define MESH_CTL_CLI_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "servers/control/store.h"

/* A URL is one line of at most 4 KiB (ctl_store_url_read's limit). */
#define CTL_CLI_URL_MAX   4096
#define CTL_CLI_WHERE_MAX 600

/* "postgresql store at host=/run/pg db=mesh user=mesh" (port when given)
 * for messages: never the password, nor the URL itself. */
void ctl_cli_pg_where(const char *url, char *out, size_t cap);

/* Checks a PostgreSQL URL that opt (--store, --to) gave: postgresql://,
 * postgres:// or libpq key=value words that libpq can parse. Warns on
 * stderr when it carries a password (other users see command lines in
 * `ps`: --store-file keeps it out). 0, or 2 (usage error) after saying
 * why. */
int ctl_cli_url_check(const char *opt, const char *url, bool cmdline);

/* Reads the URL of --store-file / --to-file path: a regular file that is
 * neither group nor world readable, one line of at most CTL_CLI_URL_MAX
 * bytes (its newline dropped). 0, or 1 after saying why on stderr. */
int ctl_cli_url_file_read(const char *opt, const char *path, char *url, size_t cap);

/* Writes DIR/store.url (0600, no symlink followed, must not exist): 0,
 * else -errno (-EEXIST if it exists). */
int ctl_cli_url_write(const char *dir, const char *url);

/* Opens dir's initialised store, SQLite or PostgreSQL (ctl_store_open),
 * or says why not on stderr (naming the store, never a password, with
 * what to do) and returns NULL. where (may be NULL) gets the store's
 * description: "sqlite store DIR/control.db" or ctl_cli_pg_where's. */
struct ctl_store *ctl_cli_store_open(const char *dir, struct ctl_meta *meta, char *where,
                                     size_t wherecap);

/* What to check when opening url failed with msg, as a hint to append:
 * "; is PostgreSQL running ...?" when nothing answers there, "" when the
 * server answers (msg says why) or msg asks that already. */
const char *ctl_cli_pg_hint(const char *url, const char *msg);

/* Copies a message onto one line (newlines and tabs as spaces, runs of
 * them as one, trailing ones dropped). */
void ctl_cli_one_line(char *dst, size_t cap, const char *src);

#endif
