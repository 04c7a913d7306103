/* A fresh directory under /tmp for each test (cmocka setup/teardown),
 * removed with everything in it afterwards: `root` holds its path.
 * TMPDIR_FIXTURE("test_name") defines root, setup() and teardown(). */
#ifndef MESH_TEST_TMPDIR_FIXTURE_H
#define MESH_TEST_TMPDIR_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#define TMPDIR_FIXTURE(NAME)                                                             \
	static char root[256];                                                           \
                                                                                         \
	static int setup(void **state)                                                   \
	{                                                                                \
		(void)state;                                                             \
		snprintf(root, sizeof(root), "/tmp/" NAME ".XXXXXX");                    \
		assert_non_null(mkdtemp(root));                                          \
		return 0;                                                                \
	}                                                                                \
                                                                                         \
	static int teardown(void **state)                                                \
	{                                                                                \
		(void)state;                                                             \
		char cmd[300];                                                           \
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);                         \
		assert_int_equal(system(cmd), 0);                                        \
		return 0;                                                                \
	}

#endif
