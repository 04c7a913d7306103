/* The default state directory (see paths.h). */
#include "cli/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cli_path_set(char *out, size_t len, char *err, size_t errlen, const char *a,
                        size_t alen, const char *b)
{
	int n = snprintf(out, len, "%.*s%s", (int)alen, a, b);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen,
		         "the default state directory %.*s%s is too long: pass --state "
		         "DIR",
		         (int)alen, a, b);
		return -ENAMETOOLONG;
	}
	return 0;
}

int cli_state_default(char *out, size_t len, char *err, size_t errlen)
{
	const char *v = getenv("STATE_DIRECTORY");
	if (v && v[0] == '/')
		return cli_path_set(out, len, err, errlen, v, strcspn(v, ":"), "");
	v = getenv("XDG_STATE_HOME");
	if (v && v[0] == '/')
		return cli_path_set(out, len, err, errlen, v, strlen(v), "/mesh-proxy");
	v = getenv("HOME");
	if (v && v[0] == '/')
		return cli_path_set(out, len, err, errlen, v, strlen(v),
		                    "/.local/state/mesh-proxy");
	snprintf(err, errlen,
	         "no state directory: HOME is not set (nor XDG_STATE_HOME or "
	         "STATE_DIRECTORY); pass --state DIR");
	return -ENOENT;
}

/* mkdir -p with mode 0700 for every directory it makes. */
static int cli_mkdirs(const char *dir, char *err, size_t errlen)
{
	char p[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(p)) {
		snprintf(err, errlen, "--state: the directory name is empty or too long");
		return -ENAMETOOLONG;
	}
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		char c = p[i];
		p[i] = 0;
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			int e = errno;
			snprintf(err, errlen, "cannot create %s: %s (pass --state DIR)",
			         p, strerror(e));
			return -e;
		}
		p[i] = c;
	}
	return 0;
}

/* A parent that group or others may write (without the sticky bit, as
 * /tmp has) lets another user rename the state directory away and put
 * their own in its place: refused, naming it. */
static int cli_parents_private(const char *dir, char *err, size_t errlen)
{
	char p[4096];
	size_t n = strlen(dir);
	if (n >= sizeof(p))
		return 0; /* cli_mkdirs refused it already */
	memcpy(p, dir, n + 1);
	for (char *slash = strrchr(p, '/'); slash; slash = strrchr(p, '/')) {
		struct stat st;
		if (slash == p)
			slash[1] = 0; /* "/" itself */
		else
			*slash = 0;
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 022) &&
		    !(st.st_mode & S_ISVTX)) {
			snprintf(err, errlen,
			         "%s: its parent %s may be written by group or others "
			         "(mode %04o), so another user could replace the state "
			         "directory: chmod go-w %s, or pass --state DIR",
			         dir, p, (unsigned)(st.st_mode & 07777), p);
			return -EPERM;
		}
		if (slash == p)
			break;
	}
	return 0;
}

int cli_state_prepare(const char *dir, char *err, size_t errlen)
{
	int r = cli_mkdirs(dir, err, errlen);
	if (r != 0)
		return r;
	r = cli_parents_private(dir, err, errlen);
	if (r != 0)
		return r;
	struct stat st;
	if (stat(dir, &st) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen,
		         "%s is not a directory: remove it or pass --state DIR", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != getuid()) {
		snprintf(err, errlen,
		         "%s belongs to uid %u, not to this user (uid %u): run as its "
		         "owner, or pass --state DIR for a directory of your own",
		         dir, (unsigned)st.st_uid, (unsigned)getuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		snprintf(err, errlen,
		         "%s may be written by group or others (mode %04o), so another "
		         "user could replace the node's keys: chmod 700 %s",
		         dir, (unsigned)(st.st_mode & 07777), dir);
		return -EPERM;
	}
	return 0;
}
