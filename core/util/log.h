/* Logging to stderr with a level and a monotonic-ish timestamp. One line per
 * call. Never log key material. */
#ifndef MESH_LOG_H
#define MESH_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                   \
	do {                                                                             \
		if (log_get_level() >= LOG_DEBUG)                                        \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                 \
	} while (0)

#endif
