/* lwIP platform glue for meshproxy (Linux, glibc, gcc or clang). */
#ifndef MESH_LWIP_ARCH_CC_H
#define MESH_LWIP_ARCH_CC_H

#include <endian.h> /* BYTE_ORDER, LITTLE_ENDIAN, BIG_ENDIAN */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h> /* abort, arc4random (glibc >= 2.36) */
#include <time.h>   /* clock_gettime, localtime_r */

/* lwIP passes a parenthesised printf argument list: LWIP_PLATFORM_DIAG(("%d", n)). */
static inline void ns_lwip_diag(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline void ns_lwip_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("lwip: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}
#define LWIP_PLATFORM_DIAG(x)                                                            \
	do {                                                                             \
		ns_lwip_diag x;                                                          \
	} while (0)

/* An lwIP assertion is a bug in lwIP or in our use of it, and some are
 * reachable from packets (the fuzzers found five, third_party/README.md).
 * It still stops the process rather than log and continue: the checks sit
 * in front of pbuf chain and PCB list updates, and running on past one
 * means running on with corrupted memory in a process that holds the
 * WireGuard keys. A crash loses the node's connections; the service
 * manager restarts it. So: one log line that says where and what to do
 * (in the log's own format), then abort(). Production builds keep the
 * checks; the fuzzers must too (lwipopts.h refuses NDEBUG there). */
static inline void ns_lwip_assert_failed(const char *what, const char *file, int line)
    __attribute__((noreturn));
static inline void ns_lwip_assert_failed(const char *what, const char *file, int line)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	fprintf(stderr,
	        "%02d:%02d:%02d.%03ld error lwip: assertion \"%s\" failed at %s:%d; "
	        "the netstack is inconsistent, so the node stops instead of running "
	        "on with it (restart it, and report this line)\n",
	        tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, what, file,
	        line);
	fflush(stderr);
	abort();
}
#define LWIP_PLATFORM_ASSERT(x) ns_lwip_assert_failed((x), __FILE__, __LINE__)

/* Random numbers for ports, IP IDs and (through LWIP_HOOK_TCP_ISN in
 * lwipopts.h) initial sequence numbers. */
#define LWIP_RAND() ((u32_t)arc4random())

/* Byte order from glibc (<endian.h>), so that lwIP headers and the system's
 * <arpa/inet.h> can be included in the same file. */
#define LWIP_DONT_PROVIDE_BYTEORDER_FUNCTIONS 1
#define lwip_htons(x)                         htobe16(x)
#define lwip_htonl(x)                         htobe32(x)

/* glibc provides the errno values. */
#define LWIP_ERRNO_STDINCLUDE 1

#endif
