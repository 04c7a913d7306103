/* The CLI's side of the local API (review M4, M9): the client trusts only
 * a socket served by its own user (SO_PEERCRED), the fallback socket of a
 * node without a state directory lives in a private directory whose owner
 * and mode are checked, and the default state directory follows
 * $STATE_DIRECTORY, $XDG_STATE_HOME, then $HOME. The part with another
 * user needs root (a child drops to nobody); without root it is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/event.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/api_client.h"
#include "cli/paths.h"
#include "node/api_server.h"

#define NOBODY 65534

static char tmp[64];
static char err[1024];

static int setup(void **st)
{
	(void)st;
	snprintf(tmp, sizeof(tmp), "/tmp/mesh-cli-test.XXXXXX");
	assert_non_null(mkdtemp(tmp));
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static int listen_at(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(fd, 4) != 0)
		return -1;
	return fd;
}

static void test_own_socket_trusted(void **st)
{
	(void)st;
	char path[128];
	snprintf(path, sizeof(path), "%s/api.sock", tmp);
	int l = listen_at(path);
	assert_true(l >= 0);
	int fd = api_client_connect(path, err, sizeof(err));
	if (fd < 0)
		fail_msg("refused our own socket: %s", err);
	close(fd);
	close(l);
}

/* A stopped node: its API socket's backlog is full and nothing accepts.
 * `mesh-proxy health` (the binary beside the tests) ends within 6 s each
 * time, saying so in one line; before, its connect() blocked for ever. */
static void test_health_bounded_on_stuck_node(void **st)
{
	(void)st;
	char path[100], exe[512], cmd[1024];
	snprintf(path, sizeof(path), "%s/stuck.sock", tmp);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(l, 0), 0);
	int held[8], n = 0;
	for (; n < 8; n++) { /* fill the backlog */
		held[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(held[n], (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			close(held[n]);
			break;
		}
	}
	assert_true(n < 8);
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(el > 0);
	exe[el] = 0;
	char *slash = strrchr(exe, '/');
	assert_non_null(slash);
	*slash = 0; /* build/tests -> build/mesh-proxy */
	snprintf(cmd, sizeof(cmd), "%s/../mesh-proxy health --api %s 2>&1", exe, path);
	for (int i = 0; i < 3; i++) {
		struct timespec a, b;
		char line[512] = "";
		clock_gettime(CLOCK_MONOTONIC, &a);
		FILE *p = popen(cmd, "r");
		assert_non_null(p);
		if (!fgets(line, sizeof(line), p))
			line[0] = 0;
		int rc = pclose(p);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double s = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
		fprintf(stderr, "health on a stuck node: %.1f s: %s", s, line);
		assert_true(s < 6.0);
		assert_int_not_equal(rc, 0);
		assert_non_null(strstr(line, "did not accept the connection"));
	}
	for (int i = 0; i < n; i++)
		close(held[i]);
	close(l);
}

static void test_missing_socket(void **st)
{
	(void)st;
	char path[128];
	snprintf(path, sizeof(path), "%s/none.sock", tmp);
	assert_int_equal(api_client_connect(path, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
}

/* A socket another user listens on (as an attacker's in /tmp would be) is
 * refused, with a message naming its uid; before the check the client
 * talked to it. */
static void test_other_users_socket_refused(void **st)
{
	(void)st;
	if (getuid() != 0)
		skip();
	char path[128];
	snprintf(path, sizeof(path), "%s/api.sock", tmp);
	assert_int_equal(chmod(tmp, 0777), 0);
	int ready[2], hold[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(hold[1]);
		if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
			_exit(1);
		int l = listen_at(path);
		if (l < 0)
			_exit(2);
		char c = 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(3);
		ssize_t r = read(hold[0], &c, 1); /* until the parent is done */
		(void)r;
		_exit(0);
	}
	close(ready[1]);
	close(hold[0]);
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	int fd = api_client_connect(path, err, sizeof(err));
	if (fd >= 0)
		close(fd);
	close(hold[1]);
	int status;
	waitpid(pid, &status, 0);
	close(ready[0]);
	assert_int_equal(fd, -EPERM);
	assert_non_null(strstr(err, "served by uid 65534"));
	assert_non_null(strstr(err, "not by this user (uid 0)"));
}

/* Without XDG_RUNTIME_DIR: TMPDIR/mesh-proxy-UID/api.sock, the directory
 * made 0700 by the node and refused when it is not private. */
static void test_default_socket_dir(void **st)
{
	(void)st;
	char path[256], dir[128], want[256];
	unsetenv("XDG_RUNTIME_DIR");
	setenv("TMPDIR", tmp, 1);
	snprintf(dir, sizeof(dir), "%s/mesh-proxy-%u", tmp, (unsigned)getuid());
	snprintf(want, sizeof(want), "%s/api.sock", dir);

	/* The client does not create it. */
	assert_int_equal(api_default_path(path, sizeof(path), false, err, sizeof(err)),
	                 -ENOENT);
	assert_int_equal(api_default_path(path, sizeof(path), true, err, sizeof(err)), 0);
	assert_string_equal(path, want);
	struct stat sb;
	assert_int_equal(lstat(dir, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(api_default_path(path, sizeof(path), false, err, sizeof(err)),
	                 0);

	/* Others may enter: refused, and the message says what to do. */
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(api_default_path(path, sizeof(path), true, err, sizeof(err)),
	                 -EPERM);
	assert_non_null(strstr(err, "not a private directory"));
	assert_non_null(strstr(err, "XDG_RUNTIME_DIR"));
	assert_int_equal(chmod(dir, 0700), 0);

	/* A symlink to a private directory is still refused (lstat). */
	char real[160];
	snprintf(real, sizeof(real), "%s/elsewhere", tmp);
	assert_int_equal(rename(dir, real), 0);
	assert_int_equal(symlink(real, dir), 0);
	assert_int_equal(api_default_path(path, sizeof(path), true, err, sizeof(err)),
	                 -EPERM);
	assert_non_null(strstr(err, "a symlink"));
	assert_int_equal(unlink(dir), 0);
	assert_int_equal(rename(real, dir), 0);

	/* Another user's directory (root only: chown). */
	if (getuid() == 0) {
		assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
		assert_int_equal(
		    api_default_path(path, sizeof(path), true, err, sizeof(err)), -EPERM);
		assert_non_null(strstr(err, "owner uid 65534"));
	}

	/* XDG_RUNTIME_DIR wins when set. */
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	assert_int_equal(api_default_path(path, sizeof(path), false, err, sizeof(err)),
	                 0);
	assert_string_equal(path, "/run/user/4242/mesh-proxy.sock");
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("TMPDIR");
}

static void test_state_default_order(void **st)
{
	(void)st;
	char out[512];
	setenv("HOME", "/home/u", 1);
	unsetenv("XDG_STATE_HOME");
	unsetenv("STATE_DIRECTORY");
	assert_int_equal(cli_state_default(out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/home/u/.local/state/mesh-proxy");

	setenv("XDG_STATE_HOME", "relative/state", 1); /* ignored, as XDG says */
	assert_int_equal(cli_state_default(out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/home/u/.local/state/mesh-proxy");
	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	assert_int_equal(cli_state_default(out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/xdg/state/mesh-proxy");

	/* systemd's StateDirectory= (several: the first). */
	setenv("STATE_DIRECTORY", "/var/lib/mesh-proxy:/var/lib/other", 1);
	assert_int_equal(cli_state_default(out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/var/lib/mesh-proxy");

	unsetenv("STATE_DIRECTORY");
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	assert_int_equal(cli_state_default(out, sizeof(out), err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "--state DIR"));
}

static void no_handler(void *ctx, struct api_conn *conn, const char *line)
{
	(void)ctx;
	(void)conn;
	(void)line;
}

/* --api naming a file that is not a socket (the config, by mistake): the
 * node refuses and the file stays. Before, the failed connect was taken
 * for a stale socket and the file was unlinked. A stale socket is still
 * replaced. */
static void test_api_never_replaces_a_file(void **st)
{
	(void)st;
	char path[128];
	struct stat sb;
	struct event_base *base = event_base_new();

	snprintf(path, sizeof(path), "%s/x.ini", tmp);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("[Interface]\n", f);
	fclose(f);
	assert_null(api_server_new(base, path, no_handler, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 12);

	snprintf(path, sizeof(path), "%s/stale.sock", tmp);
	int fd = listen_at(path);
	assert_true(fd >= 0);
	close(fd);
	struct api_server *s =
	    api_server_new(base, path, no_handler, NULL, err, sizeof(err));
	if (!s)
		fail_msg("%s", err);
	api_server_free(s);
	event_base_free(base);
}

static void test_state_prepare(void **st)
{
	(void)st;
	char dir[256], parent[192];
	snprintf(parent, sizeof(parent), "%s/home/.local/state", tmp);
	snprintf(dir, sizeof(dir), "%s/mesh-proxy", parent);
	if (cli_state_prepare(dir, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	struct stat sb;
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(stat(parent, &sb), 0); /* parents made too, private */
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(cli_state_prepare(dir, err, sizeof(err)), 0); /* again */

	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(cli_state_prepare(dir, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 700"));
	assert_int_equal(chmod(dir, 0700), 0);

	if (getuid() == 0) {
		assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
		assert_int_equal(cli_state_prepare(dir, err, sizeof(err)), -EPERM);
		assert_non_null(strstr(err, "belongs to uid 65534"));
	}

	/* A custom XDG_STATE_HOME in a directory anyone may write: another
	 * user could swap the state directory. Refused; with the sticky bit
	 * (as /tmp) it is fine. */
	char shared[128];
	snprintf(shared, sizeof(shared), "%s/shared", tmp);
	assert_int_equal(mkdir(shared, 0700), 0);
	assert_int_equal(chmod(shared, 0777), 0);
	snprintf(dir, sizeof(dir), "%s/xdg/mesh-proxy", shared);
	assert_int_equal(cli_state_prepare(dir, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod go-w"));
	print_message("%s\n", err);
	assert_int_equal(chmod(shared, 01777), 0);
	if (cli_state_prepare(dir, err, sizeof(err)) != 0)
		fail_msg("%s", err);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_own_socket_trusted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_socket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health_bounded_on_stuck_node, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_other_users_socket_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_default_socket_dir, setup, teardown),
	    cmocka_unit_test(test_state_default_order),
	    cmocka_unit_test_setup_teardown(test_state_prepare, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_api_never_replaces_a_file, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
