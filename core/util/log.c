#include "core/util/log.h"
#include "core/util/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level cur_level = LOG_INFO;

void log_set_level(enum log_level lvl)
{
	cur_level = lvl;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

int log_level_parse(const char *s)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *tags[] = {"error", "warn", "info", "debug"};
	if (lvl > cur_level)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %-5s ", tm.tm_hour,
	                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, tags[lvl]);
	char msg[sizeof(line)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote what others wrote (a server's refusal, a peer's
	 * name): no control or bidirectional character reaches the terminal,
	 * and no message can forge a second log line. */
	utf8_clean(msg, line + n, sizeof(line) - (size_t)n, UTF8_FOR_TERMINAL);
	fprintf(stderr, "%s\n", line);
}
