/* The store a data directory names, for the command line: see cli_store.h.
 *
 * A PostgreSQL URL may carry a password, so this file never prints one:
 * messages describe a store by host, port, database and user only
 * (ctl_cli_pg_where), and buffers that held a URL are wiped. */
#include "servers/control/cli_store.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ctl_cli_one_line(char *dst, size_t cap, const char *src)
{
	size_t o = 0;
	bool space = false;
	if (!cap)
		return;
	for (; *src && o + 1 < cap; src++) {
		if (*src == '\n' || *src == '\t' || *src == '\r' || *src == ' ') {
			space = o > 0;
			continue;
		}
		if (space && o + 2 < cap)
			dst[o++] = ' ';
		space = false;
		dst[o++] = *src;
	}
	dst[o] = 0;
}

/* A libpq option's value, or NULL when unset or empty. */
static const char *opt_val(const PQconninfoOption *o, const char *key)
{
	for (; o && o->keyword; o++)
		if (!strcmp(o->keyword, key))
			return o->val && *o->val ? o->val : NULL;
	return NULL;
}

void ctl_cli_pg_where(const char *url, char *out, size_t cap)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(url, &msg);
	if (msg)
		PQfreemem(msg);
	if (!o) {
		snprintf(out, cap, "postgresql store (its URL does not parse)");
		return;
	}
	const char *host = opt_val(o, "host"), *addr = opt_val(o, "hostaddr");
	const char *port = opt_val(o, "port"), *db = opt_val(o, "dbname");
	const char *user = opt_val(o, "user");
	int n = snprintf(out, cap, "postgresql store at host=%s",
	                 host   ? host
	                 : addr ? addr
	                        : "(libpq default)");
	if (port && n > 0 && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " port=%s", port);
	if (n > 0 && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " db=%s",
		              db     ? db
		              : user ? user
		                     : "?");
	if (user && n > 0 && (size_t)n < cap)
		snprintf(out + n, cap - (size_t)n, " user=%s", user);
	PQconninfoFree(o);
}

const char *ctl_cli_pg_hint(const char *url, const char *msg)
{
	if (strstr(msg, "Is the server running"))
		return ""; /* libpq asked already */
	switch (PQping(url)) {
	case PQPING_NO_RESPONSE:
		return "; is PostgreSQL running, and listening there?";
	case PQPING_REJECT:
		return "; PostgreSQL rejects connections (starting up or shutting "
		       "down?): "
		       "try again shortly";
	default:
		return "";
	}
}

int ctl_cli_url_check(const char *opt, const char *url, bool cmdline)
{
	bool uri = !strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11);
	if (!*url || strlen(url) > CTL_CLI_URL_MAX || (!uri && !strchr(url, '='))) {
		fprintf(stderr,
		        "mesh-control: %s: expected a PostgreSQL URL such as "
		        "postgresql://USER@/DB?host=/run/postgresql (or libpq "
		        "key=value words), at most %d characters\n",
		        opt, CTL_CLI_URL_MAX);
		return 2;
	}
	char *msg = NULL, line[512];
	PQconninfoOption *o = PQconninfoParse(url, &msg);
	if (!o) {
		/* libpq's message may quote part of the URL: only when the URL
		 * is on the command line anyway. */
		ctl_cli_one_line(line, sizeof line, msg && cmdline ? msg : "");
		fprintf(stderr,
		        "mesh-control: %s: libpq cannot parse the URL%s%s; expected "
		        "postgresql://USER@/DB?host=/run/postgresql\n",
		        opt, *line ? ": " : "", line);
		if (msg)
			PQfreemem(msg);
		return 2;
	}
	if (msg)
		PQfreemem(msg);
	if (cmdline && opt_val(o, "password"))
		fprintf(stderr,
		        "mesh-control: warning: %s carries a password, which other "
		        "users of this machine can read in `ps`; put the URL in a "
		        "0600 file and pass %s-file FILE instead (or use ~/.pgpass)\n",
		        opt, opt);
	PQconninfoFree(o);
	return 0;
}

int ctl_cli_url_file_read(const char *opt, const char *path, char *url, size_t cap)
{
	char buf[CTL_CLI_URL_MAX + 2];
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		fprintf(stderr, "mesh-control: %s %s: cannot read it: %s\n", opt, path,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077)) {
		fprintf(stderr,
		        "mesh-control: %s %s: %s; it holds a database URL (perhaps "
		        "with a password): make it a private file with `chmod 600 "
		        "%s`\n",
		        opt, path,
		        S_ISREG(sb.st_mode) ? "other users may read or change it"
		                            : "not a regular file",
		        path);
		close(fd);
		return 1;
	}
	size_t len = 0;
	ssize_t n;
	while (len < sizeof buf - 1 &&
	       (n = read(fd, buf + len, sizeof buf - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mesh-control: %s %s: %s\n", opt, path,
			        strerror(errno));
			close(fd);
			sodium_memzero(buf, sizeof buf);
			return 1;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	size_t line = strcspn(buf, "\r\n");
	size_t rest = line + strspn(buf + line, " \t\r\n");
	int rc = 0;
	if (len > CTL_CLI_URL_MAX || line == 0 || rest != len || memchr(buf, 0, len) ||
	    line >= cap) {
		fprintf(stderr,
		        "mesh-control: %s %s: expected one line with a PostgreSQL URL "
		        "such as postgresql://USER:PASSWORD@/DB?host=/run/postgresql "
		        "(at most %d bytes)\n",
		        opt, path, CTL_CLI_URL_MAX);
		rc = 1;
	} else {
		memcpy(url, buf, line);
		url[line] = 0;
	}
	sodium_memzero(buf, sizeof buf);
	return rc;
}

int ctl_cli_url_write(const char *dir, const char *url)
{
	char path[4200], text[CTL_CLI_URL_MAX + 2];
	if (snprintf(path, sizeof path, "%s/%s", dir, CTL_STORE_URL_FILE) >=
	    (int)sizeof path)
		return -ENAMETOOLONG;
	snprintf(text, sizeof text, "%s\n", url);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int err = fd < 0 ? errno : 0;
	size_t len = strlen(text), off = 0;
	while (!err && off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			err = w < 0 ? errno : EIO;
		else
			off += (size_t)w;
	}
	sodium_memzero(text, sizeof text);
	if (!err && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err && fd >= 0)
		unlink(path);
	return -err;
}

/* Is dir a SQLite data directory? Says what to do when not. */
static bool is_data_dir(const char *dir)
{
	char db[4200];
	struct stat sb;
	snprintf(db, sizeof db, "%s/control.db", dir);
	if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && stat(db, &sb) == 0)
		return true;
	fprintf(stderr,
	        "mesh-control: %s is not a mesh-control data directory; create it "
	        "with `mesh-control --data %s init` (add --store URL for "
	        "PostgreSQL)\n",
	        dir, dir);
	return false;
}

struct ctl_store *ctl_cli_store_open(const char *dir, struct ctl_meta *meta, char *where,
                                     size_t wherecap)
{
	char url[CTL_CLI_URL_MAX + 1], err[512], line[600], w[CTL_CLI_WHERE_MAX];
	const char *hint = "";
	struct stat sb;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		is_data_dir(dir);
		return NULL;
	}
	int u = ctl_store_url_read(dir, url, sizeof url, err, sizeof err);
	if (u < 0) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: %s\n", line);
		return NULL;
	}
	if (u == 1 && !is_data_dir(dir))
		return NULL;
	if (u == 1)
		snprintf(w, sizeof w, "sqlite store %s/control.db", dir);
	else
		ctl_cli_pg_where(url, w, sizeof w);
	if (where)
		snprintf(where, wherecap, "%s", w);
	struct ctl_store *st = ctl_store_open(dir, err, sizeof err);
	if (!st && u == 0)
		hint = ctl_cli_pg_hint(url, line);
	sodium_memzero(url, sizeof url);
	if (!st) {
		ctl_cli_one_line(line, sizeof line, err);
		fprintf(stderr, "mesh-control: cannot open the %s: %s%s\n", w, line,
		        hint);
		return NULL;
	}
	int r = ctl_store_get_meta(st, meta);
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(stderr,
		        "mesh-control: the %s was never initialised; run `mesh-control "
		        "--data %s init%s`\n",
		        w, dir, u == 0 ? " --store-file FILE" : "");
	} else if (r < 0) {
		ctl_cli_one_line(line, sizeof line, ctl_store_errmsg(st));
		fprintf(stderr, "mesh-control: %s: %s\n", w, line);
	}
	if (r < 0) {
		ctl_store_close(st);
		return NULL;
	}
	return st;
}
