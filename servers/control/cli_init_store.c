/* `mesh-control init --store URL | --store-file FILE`: the PostgreSQL half
 * of init (cli_cmds.c runs init; this file decides which store it opens
 * and what a store that is already initialised means).
 *
 * Several servers share one PostgreSQL mesh: the first host's init creates
 * it; another host joins with a copy of the first one's data directory
 * (server.key, store.url, control.conf), not with a second init, since a
 * second server key would not match the one every join token carries. An
 * init repeated with the same server.key only (re)writes store.url. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/control/noise_ik.h"
#include "servers/control/cli_int.h"
#include "servers/control/cli_store.h"
#include "servers/control/cli_util.h"
#include "servers/control/store.h"

int ctl_cli_init_url(const struct cli *c, char *url, size_t cap)
{
	*url = 0;
	if ((c->seen & O_STORE) && (c->seen & O_STOREFILE))
		return ctl_cli_die_usage("%s",
		                         "--store and --store-file exclude each other "
		                         "(--store-file keeps a password out of ps)");
	if (c->seen & O_STOREFILE)
		return ctl_cli_url_file_read("--store-file", c->val[I_STOREFILE], url,
		                             cap) ||
		               ctl_cli_url_check("--store-file", url, false)
		           ? 1
		           : 0;
	if (!(c->seen & O_STORE))
		return 0;
	int r = ctl_cli_url_check("--store", c->val[I_STORE], true);
	if (r)
		return r;
	snprintf(url, cap, "%s", c->val[I_STORE]);
	return 0;
}

static bool exists(const char *dir, const char *name)
{
	char p[4200];
	struct stat sb;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return lstat(p, &sb) == 0;
}

int ctl_cli_init_sqlite_check(const char *dir)
{
	if (!exists(dir, CTL_STORE_URL_FILE))
		return 0;
	fprintf(stderr,
	        "mesh-control: %s already names a PostgreSQL store (%s/%s); nothing "
	        "changed. Use another --data DIR for a new mesh\n",
	        dir, dir, CTL_STORE_URL_FILE);
	return 1;
}

struct ctl_store *ctl_cli_init_pg_open(const char *dir, const char *url, char *where,
                                       size_t wcap, bool *have_url, bool *made_dir)
{
	char err[512], line[600], old[CTL_CLI_URL_MAX + 1];
	struct stat sb;
	*have_url = *made_dir = false;
	ctl_cli_pg_where(url, where, wcap);
	if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "mesh-control: --data %s: not a directory\n", dir);
		return NULL;
	}
	if (exists(dir, "control.db")) {
		fprintf(stderr,
		        "mesh-control: %s holds a SQLite store (control.db); nothing "
		        "changed. To move that mesh to PostgreSQL run `mesh-control "
		        "migrate --from %s --to-file FILE`; for a new mesh use another "
		        "--data DIR\n",
		        dir, dir);
		return NULL;
	}
	int u = ctl_store_url_read(dir, old, sizeof old, err, sizeof err);
	if (u < 0) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: %s\n", line);
		return NULL;
	}
	bool same = u == 0 && !strcmp(old, url);
	sodium_memzero(old, sizeof old);
	if (u == 0 && !same) {
		fprintf(
		    stderr,
		    "mesh-control: %s already names another PostgreSQL store (%s/%s); "
		    "nothing changed. Use another --data DIR\n",
		    dir, dir, CTL_STORE_URL_FILE);
		return NULL;
	}
	*have_url = same;
	struct ctl_store *st = ctl_store_open_pg(url, err, sizeof err);
	if (!st) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: cannot open the %s: %s%s\n", where, line,
		        ctl_cli_pg_hint(url, line));
		return NULL;
	}
	/* Made only now: a refused init leaves no empty directory behind. */
	if (mkdir(dir, 0700) == 0) {
		*made_dir = true;
	} else if (errno != EEXIST) {
		fprintf(stderr, "mesh-control: cannot create %s: %s\n", dir,
		        strerror(errno));
		ctl_store_close(st);
		return NULL;
	}
	return st;
}

/* DIR/server.key's public key: 0, -ENOENT without one, -EINVAL when it is
 * not a base64 32-byte key. */
static int key_public(const char *dir, uint8_t pub[CTL_KEY_LEN])
{
	char path[4200], buf[128];
	uint8_t priv[CTL_KEY_LEN];
	snprintf(path, sizeof path, "%s/server.key", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -EINVAL;
	size_t bl = 0;
	int r = sodium_base642bin(priv, sizeof priv, buf, (size_t)n, " \t\r\n", &bl, NULL,
	                          sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(buf, sizeof buf);
	if (r == 0 && bl == CTL_KEY_LEN)
		r = ctl_noise_public_key(pub, priv);
	else
		r = -EINVAL;
	sodium_memzero(priv, sizeof priv);
	return r == 0 ? 0 : -EINVAL;
}

int ctl_cli_init_pg_joined(const char *dir, const char *url, bool have_url, bool made_dir,
                           const char *where, const struct ctl_meta *meta,
                           const char *conf_text)
{
	uint8_t pub[CTL_KEY_LEN];
	char p[4200];
	int r = key_public(dir, pub);
	if (r == -ENOENT) {
		fprintf(stderr,
		        "mesh-control: the %s is already initialised (mesh %s); nothing "
		        "changed. Another server of that mesh needs the first host's "
		        "data directory, not a new init: copy its server.key, store.url "
		        "and control.conf into %s (e.g. `scp -rp FIRSTHOST:DIR %s`, "
		        "keeping mode 0600), then run serve\n",
		        where, meta->mesh_id, dir, dir);
		if (made_dir)
			rmdir(dir);
		return 1;
	}
	if (r < 0 || sodium_memcmp(pub, meta->server_public, CTL_KEY_LEN)) {
		fprintf(stderr,
		        "mesh-control: %s/server.key does not belong to the mesh in the "
		        "%s (mesh %s: %s); nothing changed. Copy server.key from the "
		        "data directory of that mesh's first host\n",
		        dir, where, meta->mesh_id,
		        r < 0 ? "the file is not a base64 32-byte key"
		              : "its public key differs from the mesh's");
		return 1;
	}
	if (!have_url && (r = ctl_cli_url_write(dir, url)) < 0) {
		fprintf(stderr, "mesh-control: cannot write %s/%s: %s\n", dir,
		        CTL_STORE_URL_FILE, strerror(-r));
		return 1;
	}
	snprintf(p, sizeof p, "%s/control.conf", dir);
	if ((r = ctl_cli_write_new_file(p, conf_text)) < 0 && r != -EEXIST) {
		fprintf(stderr, "mesh-control: cannot write %s: %s\n", p, strerror(-r));
		return 1;
	}
	printf("%s is a data directory of mesh %s in the %s (its server.key "
	       "matches); %s/%s %s\n",
	       dir, meta->mesh_id, where, dir, CTL_STORE_URL_FILE,
	       have_url ? "names it already: nothing changed" : "written");
	printf("next: mesh-control --data %s serve\n", dir);
	return 0;
}
