/* `mesh-control migrate --from DIR --to URL | --to-file FILE`: moves a
 * SQLite mesh into an empty PostgreSQL database (the copy: migrate.c), then
 * makes DIR name it: DIR/store.url written, control.db renamed
 * control.db.migrated (kept, unused). Nodes notice nothing: the same server
 * key, node ids, names and addresses. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "servers/control/cli_int.h"
#include "servers/control/cli_store.h"
#include "servers/control/migrate.h"
#include "servers/control/store.h"

static void progress(void *arg, const char *table, int64_t done, int64_t total)
{
	fprintf(stderr, "mesh-control: migrate: %s: %lld of %lld rows\n", table,
	        (long long)done, (long long)total);
}

/* The source: --from, else --data / $MESH_CONTROL_DATA. */
static const char *source_dir(const struct cli *c)
{
	const char *d = c->val[I_FROM];
	if (!d || !*d)
		d = c->data;
	if (!d || !*d)
		d = getenv("MESH_CONTROL_DATA");
	return d && *d ? d : NULL;
}

static int target_url(const struct cli *c, char *url, size_t cap)
{
	if ((c->seen & O_TO) && (c->seen & O_TOFILE))
		return ctl_cli_die_usage("%s", "--to and --to-file exclude each other");
	if (c->seen & O_TOFILE)
		return ctl_cli_url_file_read("--to-file", c->val[I_TOFILE], url, cap) ||
		               ctl_cli_url_check("--to-file", url, false)
		           ? 1
		           : 0;
	if (!(c->seen & O_TO))
		return ctl_cli_die_usage("%s",
		                         "migrate needs --to URL or --to-file FILE (the "
		                         "empty PostgreSQL database)");
	int r = ctl_cli_url_check("--to", c->val[I_TO], true);
	if (!r)
		snprintf(url, cap, "%s", c->val[I_TO]);
	return r;
}

/* Both stores opened once through their own open functions: each brings
 * its schema to this program's version (and PostgreSQL's is created), so
 * the copy sees the same tables on both sides. */
static int open_both(const char *dir, const char *url, const char *where)
{
	char err[512], line[600];
	struct ctl_meta meta;
	struct ctl_store *st = ctl_store_open_sqlite(dir, err, sizeof err);
	if (!st) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: cannot open the store in %s: %s\n", dir,
		        line);
		return 1;
	}
	int r = ctl_store_get_meta(st, &meta);
	ctl_store_close(st);
	if (r < 0) {
		fprintf(stderr,
		        "mesh-control: the store in %s was never initialised: nothing "
		        "to migrate\n",
		        dir);
		return 1;
	}
	if (!(st = ctl_store_open_pg(url, err, sizeof err))) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: cannot open the %s: %s%s\n", where, line,
		        ctl_cli_pg_hint(url, line));
		return 1;
	}
	r = ctl_store_get_meta(st, &meta);
	ctl_store_close(st);
	if (r == 0) {
		fprintf(stderr,
		        "mesh-control: the %s already holds mesh %s: migrate copies "
		        "into an empty database only; nothing changed. Create a new "
		        "database (createdb) and migrate into that\n",
		        where, meta.mesh_id);
		return 1;
	}
	return 0;
}

static int check_dir(const char *dir)
{
	char p[4200];
	struct stat sb;
	snprintf(p, sizeof p, "%s/%s", dir, CTL_STORE_URL_FILE);
	if (lstat(p, &sb) == 0) {
		fprintf(stderr,
		        "mesh-control: %s already names a PostgreSQL store (%s): "
		        "nothing to migrate\n",
		        dir, p);
		return 1;
	}
	snprintf(p, sizeof p, "%s/control.db", dir);
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode) || stat(p, &sb) < 0) {
		fprintf(stderr,
		        "mesh-control: --from %s: not a mesh-control data directory "
		        "with a SQLite store (no %s)\n",
		        dir, p);
		return 1;
	}
	return 0;
}

/* While the SQLite file is still locked: DIR names the new store from now
 * on, and the old file moves aside. */
static int switch_dir(const char *dir, const char *url, const char *where)
{
	char from[4200], to[4200];
	int r = ctl_cli_url_write(dir, url);
	if (r < 0) {
		fprintf(stderr,
		        "mesh-control: the mesh is copied into the %s, but %s/%s "
		        "cannot be written (%s): write the URL there yourself (one "
		        "line, mode 0600) before starting serve\n",
		        where, dir, CTL_STORE_URL_FILE, strerror(-r));
		return 1;
	}
	snprintf(from, sizeof from, "%s/control.db", dir);
	snprintf(to, sizeof to, "%s/control.db.migrated", dir);
	if (rename(from, to) < 0)
		fprintf(stderr,
		        "mesh-control: warning: cannot rename %s to %s (%s); it is no "
		        "longer used (store.url comes first)\n",
		        from, to, strerror(errno));
	return 0;
}

/* After the SQLite connection closed: a write-ahead log or shared-memory
 * file it left follows the database to its new name. */
static void move_leftovers(const char *dir)
{
	static const char *const ext[] = {"-wal", "-shm"};
	char from[4200], to[4200];
	for (size_t i = 0; i < 2; i++) {
		snprintf(from, sizeof from, "%s/control.db%s", dir, ext[i]);
		snprintf(to, sizeof to, "%s/control.db.migrated%s", dir, ext[i]);
		if (access(from, F_OK) == 0 && rename(from, to) < 0)
			fprintf(stderr, "mesh-control: warning: cannot rename %s: %s\n",
			        from, strerror(errno));
	}
}

static void summary(const char *dir, const char *where, const struct ctl_mig_result *res)
{
	printf("migrated mesh %s from %s/control.db to the %s: %lld rows in %.2f s\n",
	       res->mesh_id, dir, where, (long long)res->rows, res->seconds);
	for (int i = 0; i < res->n; i++)
		printf("  %-18s %lld\n", res->t[i].name, (long long)res->t[i].rows);
	printf("%s now names the PostgreSQL store (%s/%s); the SQLite store stays as "
	       "%s/control.db.migrated, no longer used (delete it once the new store "
	       "has proven itself)\n",
	       dir, dir, CTL_STORE_URL_FILE, dir);
	printf("next: mesh-control --data %s serve\n", dir);
}

int ctl_cli_cmd_migrate(const struct cli *c)
{
	char url[CTL_CLI_URL_MAX + 1], where[CTL_CLI_WHERE_MAX], err[600];
	const char *dir = source_dir(c);
	if (!dir)
		return ctl_cli_die_usage("%s",
		                         "migrate needs --from DIR (the data directory "
		                         "of the SQLite mesh)");
	if (strlen(dir) > 3000)
		return ctl_cli_die_usage("--from %s: path too long", dir);
	int r = target_url(c, url, sizeof url);
	if (r)
		return r;
	ctl_cli_pg_where(url, where, sizeof where);
	struct ctl_mig *m = NULL;
	struct ctl_mig_result res;
	r = check_dir(dir) || open_both(dir, url, where) ? 1 : 0;
	if (r == 0 && !(m = ctl_mig_open(dir, url, err, sizeof err))) {
		fprintf(stderr, "mesh-control: migrate: %s; nothing changed\n", err);
		r = 1;
	}
	if (r == 0 && ctl_mig_copy(m, progress, NULL, &res, err, sizeof err) < 0) {
		fprintf(stderr, "mesh-control: migrate: %s; nothing changed\n", err);
		r = 1;
	}
	if (r == 0)
		r = switch_dir(dir, url, where);
	sodium_memzero(url, sizeof url);
	ctl_mig_close(m);
	if (r == 0) {
		move_leftovers(dir);
		summary(dir, where, &res);
	}
	return r;
}
