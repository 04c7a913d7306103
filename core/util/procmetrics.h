/* The standard process metrics of a Prometheus client (process_*: CPU,
 * memory, descriptors, start time, from /proc/self) and a build-info gauge,
 * for the /metrics page of mesh-proxy, mesh-control and mesh-relay. */
#ifndef MESH_PROCMETRICS_H
#define MESH_PROCMETRICS_H

#include <stddef.h>
#include <stdint.h>

struct prom;

/* What /proc/self/stat says, in its units. */
struct proc_stat {
	uint64_t utime, stime; /* clock ticks */
	uint64_t starttime;    /* clock ticks after boot */
	uint64_t vsize;        /* bytes */
	uint64_t rss;          /* pages */
};

/* Parses the text of /proc/PID/stat (the command name in parentheses may
 * hold anything, spaces and ')' too). 0, or -1 when it is not that. */
int procmetrics_parse_stat(const char *buf, size_t len, struct proc_stat *st);

/* Writes process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds and meshproxy_build_info{program, version} 1.
 * A value /proc does not give is left out (not written as 0). */
void procmetrics_write(struct prom *p, const char *program);

#endif
