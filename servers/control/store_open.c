/* Which store a data directory uses: DIR/store.url names a PostgreSQL
 * database (written by `mesh-control init --store`), else DIR/control.db is
 * SQLite. The URL may carry a password, so the file must be private. */
#include "servers/control/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_URL_MAX 4096 /* bytes in the file, newline included */

/* A libpq URI, or key=value words ("host=/run/pg dbname=mesh"): the first
 * word is a keyword followed by '='. libpq checks the rest when it
 * connects. */
static bool url_form_ok(const char *u)
{
	if (!strncmp(u, "postgresql://", 13) || !strncmp(u, "postgres://", 11))
		return true;
	size_t i = 0;
	while ((u[i] >= 'a' && u[i] <= 'z') || u[i] == '_')
		i++;
	while (u[i] == ' ' || u[i] == '\t')
		i++;
	return i > 0 && u[i] == '=';
}

/* The file's bytes as one line without its newline; -1 with err set. */
static int url_line(const char *path, char *buf, size_t n, char *err, size_t errlen)
{
	if (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n && buf[n - 1] == '\r')
		buf[--n] = '\0';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < ' ' && c != '\t') {
			snprintf(err, errlen,
			         "%s: more than one line or a control character; write "
			         "the URL alone on one line",
			         path);
			return -1;
		}
	}
	if (n == 0 || !url_form_ok(buf)) {
		snprintf(err, errlen,
		         "%s: not a PostgreSQL URL; expected postgresql://USER@HOST/DB "
		         "or libpq key=value words (host=... dbname=...)",
		         path);
		return -1;
	}
	return 0;
}

/* A regular file of ours that no one else may read or write. */
static int url_file_ok(const char *path, int fd, char *err, size_t errlen)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return -1;
	}
	if (sb.st_uid != geteuid()) {
		snprintf(err, errlen,
		         "%s: owned by uid %u, not by this user (uid %u); chown it to "
		         "the user that runs mesh-control",
		         path, (unsigned)sb.st_uid, (unsigned)geteuid());
		return -1;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
		         "%s: mode %03o lets other users read the database URL (and "
		         "any password in it); run chmod 600 %s",
		         path, (unsigned)(sb.st_mode & 0777), path);
		return -1;
	}
	return 0;
}

int ctl_store_url_read(const char *dir, char *url, size_t cap, char *err, size_t errlen)
{
	char path[4096], buf[STORE_URL_MAX + 2];
	ssize_t n = 0, got;

	if (snprintf(path, sizeof path, "%s/" CTL_STORE_URL_FILE, dir) >=
	    (int)sizeof path) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0 && errno == ENOENT)
		return 1;
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path,
		         errno == ELOOP ? "a symbolic link; make it a regular file"
		                        : strerror(errno));
		return -1;
	}
	int rc = url_file_ok(path, fd, err, errlen);
	while (rc == 0 && (size_t)n < sizeof buf - 1 &&
	       (got = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			rc = -1;
		} else {
			n += got;
		}
	}
	close(fd);
	buf[n] = '\0';
	if (rc == 0 && (size_t)n > STORE_URL_MAX) {
		snprintf(err, errlen, "%s: longer than %d bytes; write only the URL",
		         path, STORE_URL_MAX);
		rc = -1;
	}
	if (rc == 0 && memchr(buf, '\0', (size_t)n)) {
		snprintf(err, errlen, "%s: contains a NUL byte; write only the URL",
		         path);
		rc = -1;
	}
	if (rc == 0)
		rc = url_line(path, buf, (size_t)n, err, errlen);
	if (rc == 0 && strlen(buf) >= cap) {
		snprintf(err, errlen, "%s: URL too long", path);
		rc = -1;
	}
	if (rc == 0)
		memcpy(url, buf, strlen(buf) + 1);
	sodium_memzero(buf, sizeof buf);
	return rc;
}

struct ctl_store *ctl_store_open(const char *dir, char *err, size_t errlen)
{
	char url[STORE_URL_MAX + 1], e[512];
	int rc = ctl_store_url_read(dir, url, sizeof url, err, errlen);
	if (rc < 0)
		return NULL;
	if (rc == 1)
		return ctl_store_open_sqlite(dir, err, errlen);
	struct ctl_store *st = ctl_store_open_pg(url, e, sizeof e);
	sodium_memzero(url, sizeof url);
	if (!st)
		snprintf(err, errlen, "%s/" CTL_STORE_URL_FILE ": %s", dir, e);
	return st;
}
