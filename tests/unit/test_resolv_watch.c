/* resolv_watch (node/resolv_watch.c) on a real directory: rewriting the
 * watched file calls back once (after the debounce); and (review dns L10)
 * when the inotify queue overflows, so that the file's own event may be
 * among those lost, it calls back too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util/log.h"
#include "node/resolv_watch.h"

static int calls;

static void on_change(void *ctx)
{
	(void)ctx;
	calls++;
}

static void run_ms(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_change_and_overflow(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_resolv_watch.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[300];
	snprintf(path, sizeof(path), "%s/resolv.conf", dir);
	write_text(path, "nameserver 198.18.0.53\n");
	struct event_base *base = event_base_new();
	struct resolv_watch *w = resolv_watch_new(base, path, on_change, NULL);
	assert_non_null(w);
	calls = 0;
	write_text(path, "nameserver 198.18.0.54\n");
	run_ms(base, 500);
	assert_int_equal(calls, 1);

	/* Other names in the directory, more events than the queue holds
	 * (fs.inotify.max_queued_events, 16384 by default) while the loop
	 * does not read: the kernel drops the rest and says so. */
	FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	long max = 16384;
	if (q) {
		if (fscanf(q, "%ld", &max) != 1)
			max = 16384;
		fclose(q);
	}
	if (max > 200000)
		skip();
	char other[320];
	for (long i = 0; i < max + 100; i++) {
		snprintf(other, sizeof(other), "%s/o%ld", dir, i);
		FILE *f = fopen(other, "w");
		assert_non_null(f);
		fclose(f);
		unlink(other);
	}
	calls = 0;
	run_ms(base, 1500);
	assert_int_equal(calls, 1);
	resolv_watch_free(w);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_change_and_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
