/* The monotonic clock in milliseconds, for timeouts and idle times (never
 * the wall clock, which can jump). */
#ifndef MESH_CLOCK_H
#define MESH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
