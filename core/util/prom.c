/* The Prometheus text format; see prom.h. */
#include "core/util/prom.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/utf8.h"

void prom_init(struct prom *p)
{
	memset(p, 0, sizeof(*p));
	p->cur = -1;
}

void prom_free(struct prom *p)
{
	if (!p)
		return;
	free(p->buf);
	for (size_t i = 0; i < p->n_families; i++)
		free(p->families[i]);
	free(p->families);
	prom_init(p);
}

static bool prom_reserve(struct prom *p, size_t more)
{
	if (p->oom)
		return false;
	if (p->len + more + 1 <= p->cap)
		return true;
	size_t cap = p->cap ? p->cap : 4096;
	while (cap < p->len + more + 1)
		cap *= 2;
	char *b = realloc(p->buf, cap);
	if (!b) {
		p->oom = true;
		return false;
	}
	p->buf = b;
	p->cap = cap;
	return true;
}

static void prom_put(struct prom *p, const char *s, size_t n)
{
	if (!prom_reserve(p, n))
		return;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = 0;
}

static void prom_puts(struct prom *p, const char *s)
{
	prom_put(p, s, strlen(s));
}

/* s with \ and newline escaped, and " too in label values (HELP text
 * keeps its quotes, as the format says). Invalid UTF-8 becomes U+FFFD. */
static void prom_put_escaped(struct prom *p, const char *s, bool quote)
{
	size_t n = strlen(s), cap = n * 3 + 1;
	char *clean = malloc(cap);
	if (!clean) {
		p->oom = true;
		return;
	}
	utf8_clean(s, clean, cap, UTF8_REPLACE_INVALID);
	for (const char *c = clean; *c; c++) {
		if (*c == '\\')
			prom_put(p, "\\\\", 2);
		else if (*c == '\n')
			prom_put(p, "\\n", 2);
		else if (*c == '"' && quote)
			prom_put(p, "\\\"", 2);
		else
			prom_put(p, c, 1);
	}
	free(clean);
}

static bool name_ok(const char *s, bool colon)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > PROM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		             c == '_' || (colon && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

bool prom_metric_name_ok(const char *name)
{
	return name_ok(name, true);
}

/* Names starting with __ are Prometheus's own. */
bool prom_label_name_ok(const char *name)
{
	return name_ok(name, false) && strncmp(name, "__", 2) != 0;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n > t && strcmp(s + n - t, tail) == 0;
}

static int prom_refuse(struct prom *p, const char *family, int err)
{
	p->refused++;
	if (p->on_refuse)
		p->on_refuse(p->refuse_ctx, family ? family : "(no family)");
	return err;
}

int prom_family(struct prom *p, const char *name, enum prom_type type, const char *help)
{
	p->cur = -1;
	if (!prom_metric_name_ok(name) ||
	    (type == PROM_COUNTER) != ends_with(name, "_total"))
		return prom_refuse(p, name, -EINVAL);
	for (size_t i = 0; i < p->n_families; i++)
		if (strcmp(p->families[i], name) == 0)
			return prom_refuse(p, name, -EEXIST);
	if (p->n_families == p->cap_families) {
		size_t cap = p->cap_families ? p->cap_families * 2 : 64;
		char **f = realloc(p->families, cap * sizeof(*f));
		if (!f) {
			p->oom = true;
			return -ENOMEM;
		}
		p->families = f;
		p->cap_families = cap;
	}
	char *copy = strdup(name);
	if (!copy) {
		p->oom = true;
		return -ENOMEM;
	}
	p->families[p->n_families] = copy;
	p->cur = (int)p->n_families++;
	p->cur_type = type;
	prom_puts(p, "# HELP ");
	prom_puts(p, name);
	prom_puts(p, " ");
	prom_put_escaped(p, help ? help : "", false);
	prom_puts(p, "\n# TYPE ");
	prom_puts(p, name);
	prom_puts(p, type == PROM_COUNTER ? " counter\n" : " gauge\n");
	return p->oom ? -ENOMEM : 0;
}

/* Checks the label names (valid, at most PROM_LABELS_MAX, none twice). */
static bool labels_ok(const char *const *labels, size_t n)
{
	if (n > PROM_LABELS_MAX || (n && !labels))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!prom_label_name_ok(labels[2 * i]) || !labels[2 * i + 1])
			return false;
		for (size_t k = 0; k < i; k++)
			if (strcmp(labels[2 * k], labels[2 * i]) == 0)
				return false;
	}
	return true;
}

static int prom_sample(struct prom *p, const char *const *labels, size_t n,
                       const char *value)
{
	if (p->cur < 0 || !labels_ok(labels, n))
		return prom_refuse(p, p->cur >= 0 ? p->families[p->cur] : NULL, -EINVAL);
	prom_puts(p, p->families[p->cur]);
	for (size_t i = 0; i < n; i++) {
		prom_puts(p, i ? "," : "{");
		prom_puts(p, labels[2 * i]);
		prom_puts(p, "=\"");
		prom_put_escaped(p, labels[2 * i + 1], true);
		prom_puts(p, "\"");
	}
	prom_puts(p, n ? "} " : " ");
	prom_puts(p, value);
	prom_puts(p, "\n");
	return p->oom ? -ENOMEM : 0;
}

int prom_sample_u64(struct prom *p, const char *const *labels, size_t n, uint64_t v)
{
	char s[32];
	snprintf(s, sizeof(s), "%" PRIu64, v);
	return prom_sample(p, labels, n, s);
}

int prom_sample_f64(struct prom *p, const char *const *labels, size_t n, double v)
{
	char s[48];
	if (p->cur >= 0 && p->cur_type == PROM_COUNTER && !(v >= 0))
		return prom_refuse(p, p->families[p->cur],
		                   -EINVAL); /* a counter never goes below 0 */
	if (isnan(v))
		snprintf(s, sizeof(s), "NaN");
	else if (isinf(v))
		snprintf(s, sizeof(s), v > 0 ? "+Inf" : "-Inf");
	else
		snprintf(s, sizeof(s), "%.17g", v);
	return prom_sample(p, labels, n, s);
}

int prom_counter(struct prom *p, const char *name, const char *help, uint64_t v)
{
	int r = prom_family(p, name, PROM_COUNTER, help);
	return r ? r : prom_sample_u64(p, NULL, 0, v);
}

int prom_gauge(struct prom *p, const char *name, const char *help, double v)
{
	int r = prom_family(p, name, PROM_GAUGE, help);
	return r ? r : prom_sample_f64(p, NULL, 0, v);
}
