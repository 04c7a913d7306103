#include "node/state.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/log.h"

#define KEY_B64_LEN sodium_base64_ENCODED_LEN(CTL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)

int node_state_path(const char *dir, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* The ephemeral directories this process made: held by descriptor, so
 * that removing one never follows a path someone swapped meanwhile. */
#define EPH_MAX 4
static struct eph_dir {
	char path[NODE_STATE_PATH_MAX];
	int parent_fd; /* the directory it was made in */
	int dir_fd;
	int lock_fd; /* EPH_LOCK, flock'ed for the node's life */
	char name[64];
} eph_dirs[EPH_MAX];
static size_t eph_n;

/* Stale directories of SIGKILLed runs are found by their lock file: one
 * whose lock can be taken belongs to no running node. A younger one may
 * be a node between mkdtemp and flock: left alone. */
#define EPH_LOCK    "eph.lock"
#define EPH_PREFIX  "mesh-proxy-eph-"
#define EPH_YOUNG_S 60

/* Unlinks dfd's entries (files; a link is removed, never followed) and
 * then name in parent_fd: by descriptors only. */
static int eph_remove_at(int parent_fd, const char *name, int dfd, const char *shown)
{
	int d2 = dup(dfd);
	DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
	if (!d) {
		if (d2 >= 0)
			close(d2);
		log_warn("%s: cannot list the ephemeral state: %s", shown,
		         strerror(errno));
		return -1;
	}
	rewinddir(d);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
		    unlinkat(dfd, e->d_name, 0) != 0)
			log_warn("%s/%s: cannot remove: %s", shown, e->d_name,
			         strerror(errno));
	closedir(d);
	struct stat a, b; /* the name still ours? else it was swapped: leave it */
	if (fstat(dfd, &a) != 0 ||
	    fstatat(parent_fd, name, &b, AT_SYMLINK_NOFOLLOW) != 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		log_warn("%s: no longer the ephemeral directory made at start (moved?); "
		         "its files are removed, the directory is left",
		         shown);
		return -1;
	}
	if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0) {
		log_warn("%s: cannot remove the ephemeral state: %s", shown,
		         strerror(errno));
		return -1;
	}
	return 0;
}

/* Removes base's EPH_PREFIX directories of this user that no running
 * node holds (their lock is free). */
static void eph_remove_stale(int base_fd, const char *base)
{
	int d2 = dup(base_fd);
	DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
	if (!d) {
		if (d2 >= 0)
			close(d2);
		return;
	}
	struct dirent *e;
	time_t now = time(NULL);
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, EPH_PREFIX, strlen(EPH_PREFIX)) != 0)
			continue;
		int dfd = openat(base_fd, e->d_name,
		                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st, lst;
		if (dfd < 0)
			continue;
		int lfd = openat(dfd, EPH_LOCK, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		bool stale = fstat(dfd, &st) == 0 && st.st_uid == getuid() && lfd >= 0 &&
		             fstat(lfd, &lst) == 0 && lst.st_mtime + EPH_YOUNG_S < now &&
		             flock(lfd, LOCK_EX | LOCK_NB) == 0;
		if (stale) {
			char shown[NODE_STATE_PATH_MAX + 64];
			snprintf(shown, sizeof(shown), "%s/%s", base, e->d_name);
			if (eph_remove_at(base_fd, e->d_name, dfd, shown) == 0)
				log_info(
				    "%s: removed the state of an ephemeral node that "
				    "did not exit (killed?)",
				    shown);
		}
		if (lfd >= 0)
			close(lfd);
		close(dfd);
	}
	closedir(d);
}

int node_state_make_ephemeral(char *out, size_t cap, char *err, size_t errlen)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	if (!base || base[0] != '/')
		base = getenv("TMPDIR");
	if (!base || base[0] != '/')
		base = "/tmp";
	int n = snprintf(out, cap, "%s/" EPH_PREFIX "XXXXXX", base);
	if (n < 0 || (size_t)n >= cap || (size_t)n > NODE_STATE_PATH_MAX - 32) {
		snprintf(err, errlen, "--ephemeral: %s: the path is too long", base);
		out[0] = 0;
		return -ENAMETOOLONG;
	}
	if (eph_n == EPH_MAX) {
		snprintf(err, errlen, "--ephemeral: too many ephemeral directories");
		out[0] = 0;
		return -EMFILE;
	}
	struct eph_dir *x = &eph_dirs[eph_n];
	x->parent_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (x->parent_fd >= 0)
		eph_remove_stale(x->parent_fd, base);
	if (x->parent_fd < 0 || !mkdtemp(out)) { /* mode 0700 */
		int e = errno;
		snprintf(err, errlen,
		         "--ephemeral: cannot make a directory in %s: %s (set "
		         "XDG_RUNTIME_DIR or TMPDIR to a writable directory)",
		         base, strerror(e));
		if (x->parent_fd >= 0)
			close(x->parent_fd);
		out[0] = 0;
		return -e;
	}
	snprintf(x->name, sizeof(x->name), "%s", strrchr(out, '/') + 1);
	x->dir_fd = openat(x->parent_fd, x->name,
	                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	x->lock_fd =
	    x->dir_fd < 0
	        ? -1
	        : openat(x->dir_fd, EPH_LOCK,
	                 O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (x->lock_fd < 0 || flock(x->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		snprintf(err, errlen, "--ephemeral: %s: cannot lock it: %s", out,
		         strerror(e));
		if (x->lock_fd >= 0)
			close(x->lock_fd), unlinkat(x->dir_fd, EPH_LOCK, 0);
		if (x->dir_fd >= 0)
			close(x->dir_fd);
		unlinkat(x->parent_fd, x->name, AT_REMOVEDIR);
		close(x->parent_fd);
		out[0] = 0;
		return -e;
	}
	snprintf(x->path, sizeof(x->path), "%s", out);
	eph_n++;
	return 0;
}

/* The files only: a state directory has no subdirectories, and a link
 * planted in it is removed, never followed. A directory of
 * node_state_make_ephemeral goes by its descriptors. */
void node_state_remove(const char *dir)
{
	if (!dir || !dir[0])
		return;
	for (size_t i = 0; i < eph_n; i++) {
		struct eph_dir *x = &eph_dirs[i];
		if (strcmp(x->path, dir) != 0)
			continue;
		eph_remove_at(x->parent_fd, x->name, x->dir_fd, dir);
		close(x->lock_fd); /* after: the lock guards it to the end */
		close(x->dir_fd);
		close(x->parent_fd);
		eph_dirs[i] = eph_dirs[--eph_n];
		return;
	}
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
			    unlinkat(dirfd(d), e->d_name, 0) != 0)
				log_warn("%s/%s: cannot remove: %s", dir, e->d_name,
				         strerror(errno));
		closedir(d);
	}
	if (rmdir(dir) != 0)
		log_warn("%s: cannot remove the ephemeral state: %s", dir,
		         strerror(errno));
}

int node_state_open(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (!dir || !*dir || strlen(dir) > NODE_STATE_PATH_MAX - 32) {
		snprintf(err, errlen, "--state: the directory name is empty or too long");
		return -EINVAL;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot create the state directory: %s", dir,
		         strerror(e));
		return -e;
	}
	if (stat(dir, &st) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory (--state needs a directory)",
		         dir);
		return -ENOTDIR;
	}
	/* Someone else's directory is not ours to chmod and fill with keys
	 * (root could, and would take it over). */
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen,
		         "%s belongs to uid %u, not to this user (uid %u): run as its "
		         "owner, or pass --state DIR for a directory of your own",
		         dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot set mode 0700: %s", dir, strerror(e));
		return -e;
	}
	if (access(dir, R_OK | W_OK | X_OK) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: not writable by this user: %s", dir,
		         strerror(e));
		return -e;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int node_state_write(const char *dir, const char *name, const void *data, size_t len,
                     char *err, size_t errlen)
{
	char path[NODE_STATE_PATH_MAX], tmp[NODE_STATE_PATH_MAX + 8];
	if (node_state_path(dir, name, path, sizeof(path)) != 0) {
		snprintf(err, errlen, "%s/%s: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(e));
		return -e;
	}
	int r = fchmod(fd, 0600) != 0 ? -errno : 0;
	if (r == 0)
		r = write_all(fd, data, len);
	if (r == 0 && fsync(fd) != 0)
		r = -errno;
	if (close(fd) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) != 0)
		r = -errno;
	if (r != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-r));
		unlink(tmp);
		return r;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) { /* make the rename itself durable */
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int node_state_read(const char *dir, const char *name, size_t max, char **data,
                    size_t *len, char *err, size_t errlen)
{
	char path[NODE_STATE_PATH_MAX];
	*data = NULL;
	*len = 0;
	if (node_state_path(dir, name, path, sizeof(path)) != 0) {
		snprintf(err, errlen, "%s/%s: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path,
		         max);
		close(fd);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		log_warn("%s: mode %03o is too open; setting 0600", path,
		         (unsigned)(st.st_mode & 0777));
		if (fchmod(fd, 0600) != 0)
			log_warn("%s: chmod: %s", path, strerror(errno));
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *buf = malloc(n + 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = 0;
	*data = buf;
	*len = got;
	return 0;
}

/* ---- keys ---- */

static void key_b64(const uint8_t k[CTL_KEY_LEN], char out[KEY_B64_LEN])
{
	sodium_bin2base64(out, KEY_B64_LEN, k, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
}

static bool key_parse(const char *s, uint8_t k[CTL_KEY_LEN])
{
	size_t bin_len = 0;
	const char *end = NULL;
	uint8_t tmp[CTL_KEY_LEN + 4];
	if (sodium_base642bin(tmp, sizeof(tmp), s, strlen(s), " \t\r\n", &bin_len, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != CTL_KEY_LEN || (end && *end)) {
		sodium_memzero(tmp, sizeof(tmp));
		return false;
	}
	memcpy(k, tmp, CTL_KEY_LEN);
	sodium_memzero(tmp, sizeof(tmp));
	return true;
}

/* One key file: load it, or make and save a new key when it is missing. */
static int key_file(const char *dir, const char *name, uint8_t k[CTL_KEY_LEN],
                    bool *created, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	char line[KEY_B64_LEN + 1];
	*created = false;
	int r = node_state_read(dir, name, 1024, &data, &len, err, errlen);
	if (r == 0) {
		bool ok = key_parse(data, k);
		sodium_memzero(data, len);
		free(data);
		if (!ok) {
			snprintf(
			    err, errlen,
			    "%s/%s: not a base64 key of 32 bytes (corrupt? restore it, "
			    "or use a new --state directory and join again)",
			    dir, name);
			return -EINVAL;
		}
		return 0;
	}
	if (r != -ENOENT)
		return r;
	randombytes_buf(k, CTL_KEY_LEN);
	k[0] &= 248; /* a clamped Curve25519 scalar, as `wg genkey` */
	k[31] = (k[31] & 127) | 64;
	key_b64(k, line);
	size_t n = strlen(line);
	line[n++] = '\n';
	r = node_state_write(dir, name, line, n, err, errlen);
	sodium_memzero(line, sizeof(line));
	if (r == 0)
		*created = true;
	return r;
}

int node_state_keys(const char *dir, struct node_keys *k, bool *created, char *err,
                    size_t errlen)
{
	bool c1, c2, c3;
	int r = key_file(dir, "machine.key", k->machine, &c1, err, errlen);
	if (r == 0)
		r = key_file(dir, "node.key", k->node, &c2, err, errlen);
	if (r == 0)
		r = key_file(dir, "disco.key", k->disco, &c3, err, errlen);
	if (r != 0) {
		node_keys_wipe(k);
		return r;
	}
	if (created)
		*created = c2;
	return 0;
}

void node_keys_wipe(struct node_keys *k)
{
	sodium_memzero(k, sizeof(*k));
}

/* ---- JSON files ---- */

static int json_load(const char *dir, const char *name, json_t **out, char *err,
                     size_t errlen)
{
	char *data;
	size_t len;
	*out = NULL;
	int r = node_state_read(dir, name, 64 * 1024, &data, &len, err, errlen);
	if (r != 0)
		return r;
	json_error_t je;
	json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	free(data);
	if (!j || !json_is_object(j)) {
		snprintf(err, errlen, "%s/%s: not a JSON object (line %d: %s)", dir, name,
		         j ? 1 : je.line, j ? "not an object" : je.text);
		json_decref(j);
		return -EINVAL;
	}
	*out = j;
	return 0;
}

static int json_save(const char *dir, const char *name, json_t *j, char *err,
                     size_t errlen)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s) {
		snprintf(err, errlen, "%s/%s: out of memory", dir, name);
		return -ENOMEM;
	}
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (t) {
		s = t;
		s[n++] = '\n';
		s[n] = 0;
	}
	int r = node_state_write(dir, name, s, n, err, errlen);
	free(s);
	return r;
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int bad_field(const char *dir, const char *name, const char *field, char *err,
                     size_t errlen)
{
	snprintf(err, errlen, "%s/%s: field \"%s\" is missing or malformed (corrupt?)",
	         dir, name, field);
	return -EINVAL;
}

static bool copy_str(char *dst, size_t cap, const char *s)
{
	if (!s || strlen(s) >= cap)
		return false;
	memcpy(dst, s, strlen(s) + 1);
	return true;
}

#define PREF_FIELDS(X)                                                                   \
	X(socks5)                                                                        \
	X(http_proxy)                                                                    \
	X(expose)                                                                        \
	X(direct)                                                                        \
	X(portmap)                                                                       \
	X(birthday)                                                                      \
	X(config)                                                                        \
	X(forwards)                                                                      \
	X(proxy_user)                                                                    \
	X(proxy_password)                                                                \
	X(proxy_open)

int node_state_load_prefs(const char *dir, struct node_prefs *p, char *err, size_t errlen)
{
	static const char f[] = "prefs.json";
	json_t *j;
	memset(p, 0, sizeof(*p));
	int r = json_load(dir, f, &j, err, errlen);
	if (r != 0)
		return r;
		/* Each field is a string or absent; anything else is corruption. */
#define LOAD(name)                                                                       \
	{                                                                                \
		json_t *v = json_object_get(j, #name);                                   \
		if (v && (!json_is_string(v) ||                                          \
		          !copy_str(p->name, sizeof(p->name), json_string_value(v)))) {  \
			json_decref(j);                                                  \
			memset(p, 0, sizeof(*p)); /* all or nothing */                   \
			return bad_field(dir, f, #name, err, errlen);                    \
		}                                                                        \
	}
	PREF_FIELDS(LOAD)
#undef LOAD
	json_decref(j);
	return 0;
}

int node_state_save_prefs(const char *dir, const struct node_prefs *p, char *err,
                          size_t errlen)
{
	json_t *j = json_object();
	if (!j) {
		snprintf(err, errlen, "%s/prefs.json: out of memory", dir);
		return -ENOMEM;
	}
#define SAVE(name)                                                                       \
	if (p->name[0])                                                                  \
		json_object_set_new(j, #name, json_string(p->name));
	PREF_FIELDS(SAVE)
#undef SAVE
	int r = json_save(dir, "prefs.json", j, err, errlen);
	json_decref(j);
	return r;
}

/* control.json's "more": absent (a file from before several addresses, or
 * a token with one), or an array of 1..CTL_TOKEN_ADDRS_MAX - 1 objects
 * {host, port}. */
static int load_more_addrs(const char *dir, const char *f, json_t *more,
                           struct node_server *c, char *err, size_t errlen)
{
	size_t i;
	json_t *a;

	if (!more)
		return 0;
	if (!json_is_array(more) || json_array_size(more) == 0 ||
	    json_array_size(more) > CTL_TOKEN_ADDRS_MAX - 1)
		return bad_field(dir, f, "more", err, errlen);
	json_array_foreach(more, i, a)
	{
		struct ctl_token_addr *m = &c->more[i];
		json_t *port = json_object_get(a, "port");
		if (!copy_str(m->host, sizeof(m->host), jstr(a, "host")) || !m->host[0] ||
		    !json_is_integer(port) || json_integer_value(port) < 1 ||
		    json_integer_value(port) > 65535)
			return bad_field(dir, f, "more", err, errlen);
		m->port = (uint16_t)json_integer_value(port);
	}
	c->n_more = (uint8_t)json_array_size(more);
	return 0;
}

int node_state_load_control(const char *dir, struct node_server *c, char *err,
                            size_t errlen)
{
	static const char f[] = "control.json";
	json_t *j;
	memset(c, 0, sizeof(*c));
	int r = json_load(dir, f, &j, err, errlen);
	if (r != 0)
		return r;
	json_t *port = json_object_get(j, "port");
	const char *key = jstr(j, "server_key");
	if (!copy_str(c->host, sizeof(c->host), jstr(j, "host")) || !c->host[0])
		r = bad_field(dir, f, "host", err, errlen);
	else if (!json_is_integer(port) || json_integer_value(port) < 1 ||
	         json_integer_value(port) > 65535)
		r = bad_field(dir, f, "port", err, errlen);
	else if (!key || !key_parse(key, c->server_key))
		r = bad_field(dir, f, "server_key", err, errlen);
	else
		c->port = (uint16_t)json_integer_value(port);
	if (r == 0)
		r = load_more_addrs(dir, f, json_object_get(j, "more"), c, err, errlen);
	json_decref(j);
	if (r != 0)
		memset(c, 0, sizeof(*c)); /* all or nothing */
	return r;
}

int node_state_save_control(const char *dir, const struct node_server *c, char *err,
                            size_t errlen)
{
	char key[KEY_B64_LEN];
	key_b64(c->server_key, key);
	json_t *j = json_pack("{s:s, s:i, s:s}", "host", c->host, "port", (int)c->port,
	                      "server_key", key);
	json_t *more = c->n_more ? json_array() : NULL;
	for (size_t i = 0; more && i < c->n_more && i < CTL_TOKEN_ADDRS_MAX - 1; i++)
		json_array_append_new(more,
		                      json_pack("{s:s, s:i}", "host", c->more[i].host,
		                                "port", (int)c->more[i].port));
	if (j && more)
		json_object_set_new(j, "more", more);
	else
		json_decref(more);
	if (!j || (c->n_more && !more)) {
		json_decref(j);
		snprintf(err, errlen, "%s/control.json: out of memory", dir);
		return -ENOMEM;
	}
	int r = json_save(dir, "control.json", j, err, errlen);
	json_decref(j);
	return r;
}

bool node_server_same_addrs(const struct node_server *a, const struct node_server *b)
{
	if (strcmp(a->host, b->host) != 0 || a->port != b->port || a->n_more != b->n_more)
		return false;
	for (size_t i = 0; i < a->n_more && i < CTL_TOKEN_ADDRS_MAX - 1; i++)
		if (strcmp(a->more[i].host, b->more[i].host) != 0 ||
		    a->more[i].port != b->more[i].port)
			return false;
	return true;
}

int node_state_bind_control(const char *dir, const struct node_server *want, char *err,
                            size_t errlen)
{
	struct node_server have;
	int r = node_state_load_control(dir, &have, err, errlen);
	if (r == -ENOENT)
		return node_state_save_control(dir, want, err, errlen);
	if (r != 0)
		return r;
	if (sodium_memcmp(have.server_key, want->server_key, CTL_KEY_LEN) != 0) {
		snprintf(err, errlen,
		         "%s already belongs to the mesh at %s:%u; use another --state "
		         "directory",
		         dir, have.host, have.port);
		return -EEXIST;
	}
	if (!node_server_same_addrs(&have, want))
		return node_state_save_control(dir, want, err, errlen);
	return 0;
}

void node_self_from_resp(struct node_self *s, const struct ctl_register_resp *r)
{
	memset(s, 0, sizeof(*s));
	s->node_id = r->node_id;
	snprintf(s->name, sizeof(s->name), "%s", r->name);
	snprintf(s->fqdn, sizeof(s->fqdn), "%s", r->fqdn);
	memcpy(s->ipv4, r->ipv4, 4);
	memcpy(s->ipv6, r->ipv6, 16);
	snprintf(s->domain, sizeof(s->domain), "%s", r->domain);
}

int node_state_load_self(const char *dir, struct node_self *s, char *err, size_t errlen)
{
	static const char f[] = "self.json";
	json_t *j;
	memset(s, 0, sizeof(*s));
	int r = json_load(dir, f, &j, err, errlen);
	if (r != 0)
		return r;
	json_t *id = json_object_get(j, "node_id");
	const char *v4 = jstr(j, "ipv4"), *v6 = jstr(j, "ipv6");
	if (!json_is_integer(id) || json_integer_value(id) < 0)
		r = bad_field(dir, f, "node_id", err, errlen);
	else if (!copy_str(s->name, sizeof(s->name), jstr(j, "name")) || !s->name[0])
		r = bad_field(dir, f, "name", err, errlen);
	else if (!copy_str(s->fqdn, sizeof(s->fqdn), jstr(j, "fqdn")))
		r = bad_field(dir, f, "fqdn", err, errlen);
	else if (!copy_str(s->domain, sizeof(s->domain), jstr(j, "domain")))
		r = bad_field(dir, f, "domain", err, errlen);
	else if (!v4 || inet_pton(AF_INET, v4, s->ipv4) != 1)
		r = bad_field(dir, f, "ipv4", err, errlen);
	else if (!v6 || inet_pton(AF_INET6, v6, s->ipv6) != 1)
		r = bad_field(dir, f, "ipv6", err, errlen);
	else
		s->node_id = (uint64_t)json_integer_value(id);
	json_t *port = json_object_get(j, "listen_port");
	if (r == 0 && port && json_is_integer(port) && json_integer_value(port) > 0 &&
	    json_integer_value(port) <= 65535)
		s->listen_port = (uint16_t)json_integer_value(port);
	json_decref(j);
	return r;
}

int node_state_save_self(const char *dir, const struct node_self *s, char *err,
                         size_t errlen)
{
	char v4[INET_ADDRSTRLEN], v6[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET, s->ipv4, v4, sizeof(v4));
	inet_ntop(AF_INET6, s->ipv6, v6, sizeof(v6));
	json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:i}", "node_id",
	                      (json_int_t)s->node_id, "name", s->name, "fqdn", s->fqdn,
	                      "ipv4", v4, "ipv6", v6, "domain", s->domain, "listen_port",
	                      (int)s->listen_port);
	if (!j) {
		snprintf(err, errlen, "%s/self.json: out of memory", dir);
		return -ENOMEM;
	}
	int r = json_save(dir, "self.json", j, err, errlen);
	json_decref(j);
	return r;
}

/* ---- netmap.json ---- */

int node_state_load_map(const char *dir, struct ctl_msg *m, char *err, size_t errlen)
{
	char *data;
	size_t len;
	memset(m, 0, sizeof(*m));
	m->type = CTL_MSG_MAP_FULL;
	int r = node_state_read(dir, "netmap.json", NODE_STATE_FILE_MAX, &data, &len, err,
	                        errlen);
	if (r != 0)
		return r;
	struct ctl_msg_err me = {0};
	r = ctl_msg_decode(CTL_MSG_MAP_FULL, (const uint8_t *)data, len, m, &me);
	free(data);
	if (r != 0) {
		snprintf(err, errlen,
		         "%s/netmap.json: not a network map (%s); it is "
		         "fetched again from mesh-control",
		         dir, me.text[0] ? me.text : strerror(-r));
		m->type = CTL_MSG_MAP_FULL;
		return -EINVAL;
	}
	return 0;
}

int node_state_save_map(const char *dir, const struct ctl_map_full *map, char *err,
                        size_t errlen)
{
	struct ctl_msg m = {.type = CTL_MSG_MAP_FULL};
	m.u.map = *map; /* shallow: the encoder only reads */
	uint8_t *out = NULL;
	size_t len = 0;
	struct ctl_msg_err me = {0};
	int r = ctl_msg_encode(&m, &out, &len, &me);
	if (r == 0 && len > CTL_MSG_MAX_LEN) { /* what the loader refuses */
		free(out);
		snprintf(me.text, sizeof me.text, "%zu bytes, more than %d", len,
		         CTL_MSG_MAX_LEN);
		r = -E2BIG;
	}
	if (r != 0) {
		/* An older, smaller map must not be loaded at the next start: it
		 * may hold removed nodes' keys. Without it the node waits for
		 * mesh-control's map. */
		char path[NODE_STATE_PATH_MAX];
		bool gone = node_state_path(dir, "netmap.json", path, sizeof path) == 0 &&
		            (unlink(path) == 0 || errno == ENOENT);
		snprintf(err, errlen,
		         "%s/netmap.json: the map (%zu peers) cannot be cached: %s; %s",
		         dir, map->n_peers, me.text[0] ? me.text : strerror(-r),
		         gone ? "without a cached map, a restart waits for mesh-control's"
		              : "and the older cached map could not be removed: delete "
		                "it before a restart");
		return r;
	}
	r = node_state_write(dir, "netmap.json", out, len, err, errlen);
	free(out);
	return r;
}
