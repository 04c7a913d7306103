/* The Prometheus text exposition format (version 0.0.4), written into a
 * growing buffer: the /metrics page of mesh-proxy, mesh-control and
 * mesh-relay. Pure: no I/O.
 *
 * A family is opened once with its name, type and help; its samples
 * follow. The writer refuses what a scraper would choke on or a linter
 * would flag: a bad metric or label name, a counter whose name does not
 * end in _total, a family opened twice, a sample outside a family, a label
 * name used twice in one sample. Label values are escaped (\ " newline)
 * and cleaned to valid UTF-8. A refusal is returned and remembered
 * (prom.refused): tests check it stays 0. */
#ifndef MESH_PROM_H
#define MESH_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Content-Type of the page. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Longest metric or label name accepted, and most labels on a sample. */
#define PROM_NAME_MAX   128
#define PROM_LABELS_MAX 8

enum prom_type { PROM_COUNTER, PROM_GAUGE };

struct prom {
	char *buf; /* NUL-terminated text; NULL until something is written */
	size_t len, cap;
	bool oom;         /* some text was lost to a failed allocation */
	unsigned refused; /* calls refused (bad names, duplicates...) */
	/* Told of each refusal with its family's name (may be NULL). */
	void (*on_refuse)(void *ctx, const char *family);
	void *refuse_ctx;
	char **families; /* names opened so far */
	size_t n_families, cap_families;
	int cur; /* index of the open family, -1: none */
	enum prom_type cur_type;
};

void prom_init(struct prom *p);
/* Frees the text and the family list; p may be reused after prom_init. */
void prom_free(struct prom *p);

bool prom_metric_name_ok(const char *name);
bool prom_label_name_ok(const char *name);

/* Opens a family: writes its HELP and TYPE lines. 0, or -EINVAL (bad name,
 * a counter without _total), -EEXIST (opened before), -ENOMEM; after a
 * refusal the family's samples are refused too. */
int prom_family(struct prom *p, const char *name, enum prom_type type, const char *help);

/* One sample of the open family. labels: n pairs of name, value (NULL
 * when n is 0). 0 or -EINVAL (no family, bad or repeated label name, more
 * than PROM_LABELS_MAX labels), -ENOMEM. */
int prom_sample_u64(struct prom *p, const char *const *labels, size_t n, uint64_t v);
int prom_sample_f64(struct prom *p, const char *const *labels, size_t n, double v);

/* A family with one unlabelled sample. */
/* A sample of the open family with one label, key="val". */
#define PROM_SAMPLE1(p, v, key, val)                                                     \
	prom_sample_u64(p, (const char *const[]){key, val}, 1, v)
int prom_counter(struct prom *p, const char *name, const char *help, uint64_t v);
int prom_gauge(struct prom *p, const char *name, const char *help, double v);

#endif
