/* servers/control/cli_store.c: what the command line does with a
 * PostgreSQL URL.
 *  - a store is described by host, port, database and user, never by its
 *    password (URI and key=value forms alike);
 *  - --store checks the form, and warns about a password on the command
 *    line (visible in ps);
 *  - --store-file: refused unless a private (no group/other bits) regular
 *    file of one line; the line without its newline;
 *  - store.url is written 0600, never over an existing file or through a
 *    symbolic link;
 *  - messages are made one line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "servers/control/cli_store.h"
#include "tests/unit/tmpdir_fixture.h"

TMPDIR_FIXTURE("test_control_cli_store")

static void put(char *out, size_t cap, const char *name, const char *text, mode_t mode)
{
	snprintf(out, cap, "%s/%s", root, name);
	FILE *f = fopen(out, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(out, mode), 0);
}

static void test_where_hides_the_password(void **state)
{
	char w[CTL_CLI_WHERE_MAX];
	ctl_cli_pg_where("postgresql://mesh:s3cret@/meshdb?host=/run/pg", w, sizeof w);
	assert_string_equal(w, "postgresql store at host=/run/pg db=meshdb user=mesh");
	ctl_cli_pg_where("postgresql://u:s3cret@db.example:5433/m", w, sizeof w);
	assert_string_equal(w,
	                    "postgresql store at host=db.example port=5433 db=m user=u");
	ctl_cli_pg_where("host=/run/pg dbname=m user=u password=s3cret", w, sizeof w);
	assert_string_equal(w, "postgresql store at host=/run/pg db=m user=u");
	assert_null(strstr(w, "s3cret"));
	ctl_cli_pg_where("postgresql://u:s3cret@/m?bogus=1", w, sizeof w);
	assert_null(strstr(w, "s3cret"));
	assert_non_null(strstr(w, "does not parse"));
}

static void test_url_check(void **state)
{
	assert_int_equal(ctl_cli_url_check("--store", "postgresql://m@/m?host=/x", true),
	                 0);
	assert_int_equal(ctl_cli_url_check("--store", "postgres://m@/m", true), 0);
	assert_int_equal(ctl_cli_url_check("--store", "host=/x dbname=m", true), 0);
	assert_int_equal(ctl_cli_url_check("--store", "", true), 2);
	assert_int_equal(ctl_cli_url_check("--store", "mysql://x", true), 2);
	assert_int_equal(ctl_cli_url_check("--store", "postgresql://m@/m?hots=x", true),
	                 2);
	assert_int_equal(ctl_cli_url_check("--store", "host=/x dbname", true), 2);
}

static void test_url_file(void **state)
{
	char p[512], url[CTL_CLI_URL_MAX + 1];
	put(p, sizeof p, "ok", "postgresql://m:pw@/m?host=/x\n", 0600);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 0);
	assert_string_equal(url, "postgresql://m:pw@/m?host=/x");
	put(p, sizeof p, "crlf", "postgresql://m@/m\r\n\n", 0400);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 0);
	assert_string_equal(url, "postgresql://m@/m");
	put(p, sizeof p, "open", "postgresql://m:pw@/m\n", 0640);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	put(p, sizeof p, "world", "postgresql://m:pw@/m\n", 0604);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	put(p, sizeof p, "two", "postgresql://a@/a\npostgresql://b@/b\n", 0600);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	put(p, sizeof p, "empty", "\n", 0600);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	char big[CTL_CLI_URL_MAX + 40];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	memcpy(big, "postgresql://", 13);
	put(p, sizeof p, "big", big, 0600);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	snprintf(p, sizeof p, "%s/missing", root);
	assert_int_equal(ctl_cli_url_file_read("--store-file", p, url, sizeof url), 1);
	assert_int_equal(ctl_cli_url_file_read("--store-file", root, url, sizeof url), 1);
}

static void test_url_write(void **state)
{
	char p[512], link[512];
	struct stat sb;
	assert_int_equal(ctl_cli_url_write(root, "postgresql://m@/m"), 0);
	snprintf(p, sizeof p, "%s/%s", root, CTL_STORE_URL_FILE);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, (off_t)strlen("postgresql://m@/m\n"));
	assert_int_equal(ctl_cli_url_write(root, "postgresql://x@/x"), -EEXIST);
	/* a symbolic link in its place is not followed */
	assert_int_equal(unlink(p), 0);
	snprintf(link, sizeof link, "%s/elsewhere", root);
	assert_int_equal(symlink(link, p), 0);
	assert_int_equal(ctl_cli_url_write(root, "postgresql://m@/m"), -EEXIST);
	assert_int_equal(access(link, F_OK), -1);
}

static void test_one_line(void **state)
{
	char out[64];
	ctl_cli_one_line(out, sizeof out,
	                 "connection failed:\n\tIs the server running?\n");
	assert_string_equal(out, "connection failed: Is the server running?");
	ctl_cli_one_line(out, 8, "abc\n\ndefghijk");
	assert_string_equal(out, "abc def");
	ctl_cli_one_line(out, sizeof out, "");
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_where_hides_the_password),
	    cmocka_unit_test(test_url_check),
	    cmocka_unit_test(test_url_file),
	    cmocka_unit_test(test_url_write),
	    cmocka_unit_test(test_one_line),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
