/* The section reader's context and helpers, shared by parse.c (the
 * definitions and acls) and parse_tests.c (tests). Private to core/policy. */
#ifndef MESH_POLICY_PARSE_INT_H
#define MESH_POLICY_PARSE_INT_H

#include <jansson.h>

#include "core/policy/policy_int.h"

#define POL_MAX_PORT_ITEMS 256

struct pctx {
	struct policy *p;
	struct pol_scan *sc;
	struct policy_error *err;
	char path[160];
	uint32_t n_sel;
};

/* line and column of value pos (of its key if at_key and it has one) */
void pol_p_pos_linecol(struct pctx *c, uint32_t pos, bool at_key, int *line, int *col);
/* Fills c->err at pos; returns -1. */
int pol_p_perr(struct pctx *c, uint32_t pos, bool at_key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Appends fmt (with s shown cleaned, and i) to c->path; returns the old
 * length for pol_p_path_pop. */
size_t pol_p_path_push(struct pctx *c, const char *fmt, const char *s, size_t i);
void pol_p_path_pop(struct pctx *c, size_t old);
const char *pol_p_type_name(const json_t *v);
/* One more selector against POLICY_MAX_SELECTORS: -1 past it. */
int pol_p_count_sel(struct pctx *c, uint32_t pos);
/* v at pos is a list of strings, or -1. */
int pol_p_want_strings(struct pctx *c, json_t *v, uint32_t pos);
/* Resolves selector text s (at pos, described by c->path) into *o. */
int pol_p_sel_resolve(struct pctx *c, const char *s, uint32_t pos, struct pol_sel *o);
/* "SEL:PORTS" or "[v6]:PORTS" -> sel (cap bytes) and *ports. */
int pol_p_split_dst(struct pctx *c, const char *s, uint32_t pos, char *sel, size_t cap,
                    const char **ports);
/* "tcp", "udp" or "icmp" at vp into *out (a POL_* bit). */
int pol_p_parse_proto(struct pctx *c, json_t *v, uint32_t vp, uint8_t *out);
/* The tests section (parse_tests.c). */
int pol_p_parse_tests(struct pctx *c, json_t *v, uint32_t pos);

#endif
