/* core/policy internals shared by its files: the arena, the HuJSON scanner
 * and its position table, the parsed policy, 128-bit address intervals. */
#ifndef MESH_POLICY_INT_H
#define MESH_POLICY_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/policy/policy.h"

/* --- arena: everything a parsed policy holds, freed at once ----------- */
struct pol_chunk;
struct pol_arena {
	struct pol_chunk *head;
};
void *pol_alloc(struct pol_arena *a, size_t n); /* zeroed; NULL on no memory */
char *pol_strndup(struct pol_arena *a, const char *s, size_t n);
void pol_arena_free(struct pol_arena *a);

/* --- addresses as 128-bit numbers, intervals of them ------------------ */
struct pol_u128 {
	uint64_t hi, lo;
};
struct pol_iv {
	struct pol_u128 lo, hi; /* inclusive */
};
int pol_u128_cmp(struct pol_u128 a, struct pol_u128 b);
struct pol_u128 pol_u128_from_ip(const struct policy_ip *ip);
void pol_u128_to_ip(struct pol_u128 v, struct policy_ip *ip);
/* The interval of prefix ip/bits (bits of the 128-bit form). */
struct pol_iv pol_iv_prefix(const struct policy_ip *ip, unsigned bits);
bool pol_iv_contains(const struct pol_iv *iv, struct pol_u128 v);
/* Sorts and merges iv[0..*n) in place (overlapping and adjacent ones). */
void pol_iv_normalize(struct pol_iv *iv, size_t *n);

/* --- the HuJSON scanner ------------------------------------------------- */
#define POL_NO_KEY UINT32_MAX
#define POL_SCAN_CURSORS 8
/* One JSON value in document order (pre-order): where it starts, where its
 * key starts (members of objects), and the index after its subtree. */
struct pol_pos {
	uint32_t off, key_off, next;
};
struct pol_scan {
	char *json; /* strict JSON, same length and line breaks as the input */
	size_t len;
	struct pol_pos *pos;
	uint32_t n_pos;
	uint32_t *lines; /* offset where each line starts */
	uint32_t n_lines;
	const char *src; /* the input, for columns */
	/* The last pol_scan_child answers, one per container recently
	 * walked (a section and the list inside it alternate), so that
	 * walking a container's children in order costs one hop each, not a
	 * walk from the first. */
	struct {
		uint32_t k, child;
		size_t i;
		uint32_t used; /* when last used; 0: empty */
	} cur[POL_SCAN_CURSORS];
	uint32_t cur_clock;
	/* The last pol_scan_linecol answer: places asked for in file order
	 * on one long line cost the bytes between them, not the line each. */
	size_t col_off;
	uint32_t col_line;
	int col;
};
/* Comments and trailing commas become spaces; checks depth and value
 * count. -1 with *err on a problem or no memory (then nothing to free). */
int pol_scan_run(const char *in, size_t len, struct pol_scan *sc,
                 struct policy_error *err);
void pol_scan_free(struct pol_scan *sc);
void pol_scan_linecol(struct pol_scan *sc, size_t off, int *line, int *col);
/* The index of the i-th child of container k (i < its size). */
uint32_t pol_scan_child(struct pol_scan *sc, uint32_t k, size_t i);

/* --- the parsed policy -------------------------------------------------- */
enum { POL_TCP = 1, POL_UDP = 2, POL_ICMP = 4, POL_ALLPROTO = 7 };

enum pol_sel_kind { SEL_ANY, SEL_USER, SEL_GROUP, SEL_TAG, SEL_PREFIX };
struct pol_sel {
	uint8_t kind;
	const char *text; /* as written */
	const char *name; /* SEL_USER: the user; SEL_TAG: "tag:NAME" */
	uint32_t group;   /* SEL_GROUP: index into groups */
	struct pol_iv iv; /* SEL_PREFIX */
};
struct pol_dst {
	struct pol_sel sel;
	struct policy_ports *ports; /* sorted, merged */
	uint32_t n_ports;
};
struct pol_rule {
	uint8_t protos; /* POL_* bits */
	struct pol_sel *src;
	uint32_t n_src;
	struct pol_dst *dst;
	uint32_t n_dst;
	int line, col;
};
struct pol_group {
	const char *name; /* "group:NAME" */
	const char **members;
	const char **sorted; /* the members sorted, for pol_group_has */
	uint32_t n;
};
struct pol_tagowner {
	const char *tag; /* "tag:NAME" */
	struct pol_sel *owners;
	uint32_t n;
};
struct pol_host {
	const char *name;
	struct pol_iv iv;
	int line, col; /* of its name */
};
struct pol_case {
	bool accept; /* expected */
	struct pol_sel dst;
	uint16_t port;
	int line, col;
};
struct pol_test {
	struct pol_sel src;
	uint8_t proto; /* one POL_* bit */
	struct pol_case *cases;
	uint32_t n_cases;
	int line, col;
};
/* A section's names sorted, for binary search: idx into its array. */
struct pol_name_ix {
	const char *name;
	uint32_t idx;
};
struct pol_names {
	struct pol_name_ix *v;
	uint32_t n;
};
/* Sorts v[0..n) by name (names are unique: jansson refuses duplicate
 * keys). */
void pol_names_sort(struct pol_names *ix);
/* The idx of name, or -1. */
int pol_names_find(const struct pol_names *ix, const char *name);

struct policy {
	struct pol_arena arena;
	struct pol_names groups_ix, tags_ix, hosts_ix;
	struct pol_group *groups;
	uint32_t n_groups;
	struct pol_tagowner *tagowners;
	uint32_t n_tagowners;
	struct pol_host *hosts;
	uint32_t n_hosts;
	struct pol_rule *rules;
	uint32_t n_rules;
	struct pol_test *tests;
	uint32_t n_tests;
	struct policy_error *warnings;
	uint32_t n_warnings, cap_warnings;
};

/* Sets *e to line/col and the formatted message. */
void pol_set_err(struct policy_error *e, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pol_vset_err(struct policy_error *e, int line, int col, const char *fmt, va_list ap);
/* s cleaned for a terminal and cut to about 80 bytes, into buf. */
const char *pol_show(const char *s, char *buf, size_t cap);

/* Selector and port text (sel.c). Each returns NULL on success or a
 * static description of what is wrong. */
const char *pol_parse_ports(const char *s, struct policy_ports *out, uint32_t cap,
                            uint32_t *n);
/* A mesh address or CIDR (100.64.0.0/10, fd00::/8); *single if no /N. */
const char *pol_parse_prefix(const char *s, struct pol_iv *iv, bool *single);
bool pol_name_valid(const char *s, size_t n); /* [A-Za-z0-9._-], 1..64 */
bool pol_user_valid(const char *s);           /* NAME or NAME@DOMAIN */

#endif
