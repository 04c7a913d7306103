/* Process metrics; see procmetrics.h. Everything comes from /proc/self,
 * read at each scrape (a few small files). */
#include "core/util/procmetrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/util/prom.h"
#include "core/util/version.h"

/* Reads a small file whole; its length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	ssize_t r;
	while (got + 1 < cap && (r = read(fd, buf + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

/* The next space-separated unsigned number at *s (bounded by end). */
static bool next_u64(const char **s, const char *end, uint64_t *v)
{
	const char *c = *s;
	while (c < end && *c == ' ')
		c++;
	if (c >= end || *c < '0' || *c > '9')
		return false;
	uint64_t x = 0;
	for (; c < end && *c >= '0' && *c <= '9'; c++) {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*c - '0');
	}
	*s = c;
	*v = x;
	return true;
}

/* Skips one space-separated field. */
static bool skip_field(const char **s, const char *end)
{
	const char *c = *s;
	while (c < end && *c == ' ')
		c++;
	if (c >= end)
		return false;
	while (c < end && *c != ' ')
		c++;
	*s = c;
	return true;
}

int procmetrics_parse_stat(const char *buf, size_t len, struct proc_stat *st)
{
	/* "pid (comm) state ppid ...": fields from 3 on follow the last ')' */
	const char *end = buf + len, *c = NULL;
	for (const char *q = buf; q < end; q++)
		if (*q == ')')
			c = q + 1;
	if (!c)
		return -1;
	uint64_t v[21]; /* fields 4..24, after the state (field 3) */
	if (!skip_field(&c, end))
		return -1;
	for (int i = 0; i < 21; i++) {
		const char *t = c;
		while (t < end && *t == ' ')
			t++;
		/* some fields are signed (tpgid is -1 without a terminal);
		 * none of those is one we read */
		if (t < end && *t == '-' && i != 10 && i != 11 && i < 18) {
			c = t + 1;
			if (!next_u64(&c, end, &v[i]))
				return -1;
			v[i] = 0;
		} else if (!next_u64(&c, end, &v[i])) {
			return -1;
		}
	}
	/* field N is v[N - 4]: utime 14, stime 15, starttime 22, vsize 23,
	 * rss 24 */
	st->utime = v[10];
	st->stime = v[11];
	st->starttime = v[18];
	st->vsize = v[19];
	st->rss = v[20];
	return 0;
}

/* The boot time (unix seconds) from /proc/stat's btime line; 0: unknown. */
static uint64_t boot_time(void)
{
	char buf[8192];
	ssize_t n = read_small("/proc/stat", buf, sizeof(buf));
	if (n <= 0)
		return 0;
	const char *b = strstr(buf, "\nbtime ");
	uint64_t v = 0;
	if (!b)
		return 0;
	b += 7;
	return next_u64(&b, buf + n, &v) ? v : 0;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

void procmetrics_write(struct prom *p, const char *program)
{
	char buf[1024];
	struct proc_stat st;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	ssize_t n = read_small("/proc/self/stat", buf, sizeof(buf));
	if (n > 0 && tck > 0 && procmetrics_parse_stat(buf, (size_t)n, &st) == 0) {
		prom_family(p, "process_cpu_seconds_total", PROM_COUNTER,
		            "Total user and system CPU time spent in seconds.");
		prom_sample_f64(p, NULL, 0, (double)(st.utime + st.stime) / (double)tck);
		prom_gauge(p, "process_virtual_memory_bytes",
		           "Virtual memory size in bytes.", (double)st.vsize);
		if (page > 0)
			prom_gauge(p, "process_resident_memory_bytes",
			           "Resident memory size in bytes.",
			           (double)st.rss * (double)page);
		uint64_t bt = boot_time();
		if (bt)
			prom_gauge(
			    p, "process_start_time_seconds",
			    "Start time of the process since unix epoch in seconds.",
			    (double)bt + (double)st.starttime / (double)tck);
	}
	long fds = open_fds();
	if (fds >= 0)
		prom_gauge(p, "process_open_fds", "Number of open file descriptors.",
		           (double)fds);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		prom_gauge(p, "process_max_fds",
		           "Maximum number of open file descriptors.",
		           (double)rl.rlim_cur);
	prom_family(p, "meshproxy_build_info", PROM_GAUGE,
	            "Always 1: the program and its version, as labels.");
	const char *lab[] = {"program", program, "version", MESH_VERSION};
	prom_sample_u64(p, lab, 2, 1);
}
