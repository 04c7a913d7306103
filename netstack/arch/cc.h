/* lwIP platform glue for meshproxy (Linux, glibc, gcc or clang). */
#ifndef MESH_LWIP_ARCH_CC_H
#define MESH_LWIP_ARCH_CC_H

#include <endian.h> /* BYTE_ORDER, LITTLE_ENDIAN, BIG_ENDIAN */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h> /* abort, arc4random (glibc >= 2.36) */

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

/* An lwIP assertion is a bug in lwIP or in our use of it: say where and stop
 * rather than run on with corrupted state. */
#define LWIP_PLATFORM_ASSERT(x)                                                          \
	do {                                                                             \
		fprintf(stderr, "lwip: assertion \"%s\" failed at %s:%d\n", x, __FILE__, \
		        __LINE__);                                                       \
		fflush(stderr);                                                          \
		abort();                                                                 \
	} while (0)

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
