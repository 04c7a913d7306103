/* HuJSON to strict JSON: comments (// and block comments) and trailing commas become
 * spaces, so the output has the input's length and line breaks and a byte
 * offset names the same place in both. The same pass checks nesting depth
 * and the number of values, and records where each value (and its key)
 * starts, in document order, so that errors found later on jansson's tree
 * can name a line and a column. The scanner only needs to be right for
 * input jansson accepts; on anything else jansson reports the error. */
#include <stdlib.h>
#include <string.h>

#include "core/policy/policy_int.h"

enum { ST_VALUE, ST_KEY, ST_COLON, ST_AFTER };

struct frame {
	uint32_t pos; /* index of the container's entry */
	char type;    /* '{' or '[' */
	uint8_t state;
	uint32_t key_off;
};

struct scanner {
	const char *in;
	size_t len;
	struct pol_scan *sc;
	struct policy_error *err;
	uint32_t cap_pos;
	struct frame stk[POLICY_MAX_DEPTH + 1];
	int depth; /* frames in use; stk[0] is the top level */
};

static int fail(struct scanner *s, size_t off, const char *fmt, const char *arg)
{
	int line, col;
	pol_scan_linecol(s->sc, off, &line, &col);
	pol_set_err(s->err, line, col, fmt, arg);
	return -1;
}

static int build_lines(struct pol_scan *sc, const char *in, size_t len)
{
	uint32_t n = 1;
	for (size_t i = 0; i < len; i++)
		n += in[i] == '\n';
	sc->lines = malloc(n * sizeof *sc->lines);
	if (!sc->lines)
		return -1;
	sc->lines[0] = 0;
	sc->n_lines = 1;
	for (size_t i = 0; i < len; i++)
		if (in[i] == '\n')
			sc->lines[sc->n_lines++] = (uint32_t)(i + 1);
	return 0;
}

void pol_scan_linecol(struct pol_scan *sc, size_t off, int *line, int *col)
{
	if (!sc->lines || off > sc->len) {
		*line = *col = 1;
		return;
	}
	uint32_t lo = 0, hi = sc->n_lines; /* last line start <= off */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (sc->lines[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	size_t from = sc->lines[lo];
	int c = 1;
	if (sc->col && sc->col_line == lo && sc->col_off <= off) {
		from = sc->col_off;
		c = sc->col;
	}
	/* A byte order mark is no column an editor shows. */
	if (lo == 0 && from < 3 && off >= 3 && sc->len >= 3 &&
	    !memcmp(sc->src, "\xef\xbb\xbf", 3)) {
		from = 3;
		c = 1;
	}
	for (size_t i = from; i < off; i++)
		c += ((unsigned char)sc->src[i] & 0xc0) != 0x80;
	sc->col_line = lo;
	sc->col_off = off;
	sc->col = c;
	*line = (int)lo + 1;
	*col = c;
}

uint32_t pol_scan_child(struct pol_scan *sc, uint32_t k, size_t i)
{
	uint32_t c = k + 1;
	size_t at = 0;
	int slot = -1, lru = 0;
	for (int s = 0; s < POL_SCAN_CURSORS; s++) {
		if (sc->cur[s].used && sc->cur[s].k == k) {
			slot = s;
			break;
		}
		if (sc->cur[s].used < sc->cur[lru].used)
			lru = s;
	}
	if (slot >= 0 && sc->cur[slot].i <= i) {
		c = sc->cur[slot].child;
		at = sc->cur[slot].i;
	}
	for (; at < i && c < sc->n_pos; at++)
		c = sc->pos[c].next;
	if (c >= sc->n_pos)
		return k;
	if (slot < 0)
		slot = lru;
	sc->cur[slot].k = k;
	sc->cur[slot].i = i;
	sc->cur[slot].child = c;
	sc->cur[slot].used = ++sc->cur_clock;
	return c;
}

/* A value starts at off: record it under the innermost container. */
static int value_start(struct scanner *s, size_t off)
{
	struct pol_scan *sc = s->sc;
	struct frame *f = &s->stk[s->depth - 1];
	if (sc->n_pos >= POLICY_MAX_VALUES)
		return fail(s, off, "the policy holds more than %s JSON values",
		            "200000");
	if (sc->n_pos == s->cap_pos) {
		uint32_t cap = s->cap_pos ? s->cap_pos * 2 : 256;
		struct pol_pos *p = realloc(sc->pos, cap * sizeof *p);
		if (!p)
			return fail(s, off, "%s", "out of memory");
		sc->pos = p;
		s->cap_pos = cap;
	}
	struct pol_pos *p = &sc->pos[sc->n_pos];
	p->off = (uint32_t)off;
	p->key_off = f->type == '{' ? f->key_off : POL_NO_KEY;
	p->next = sc->n_pos + 1;
	sc->n_pos++;
	f->state = ST_AFTER;
	return 0;
}

/* The end of the string starting at in[i] == '"': the index of its
 * closing quote. */
static int string_end(struct scanner *s, size_t i, size_t *end)
{
	for (size_t j = i + 1; j < s->len; j++) {
		char c = s->in[j];
		if (c == '"') {
			*end = j;
			return 0;
		}
		if (c == '\n')
			return fail(s, i, "%s", "a string is not closed on its line");
		if (c == '\\')
			j++;
	}
	return fail(s, i, "%s", "a string is not closed");
}

static bool is_delim(char c)
{
	return strchr(" \t\r\n{}[],:\"/", c) != NULL || c == 0;
}

static int comment(struct scanner *s, size_t *ip)
{
	size_t i = *ip;
	char *o = s->sc->json;
	if (i + 1 < s->len && s->in[i + 1] == '/') {
		while (i < s->len && s->in[i] != '\n')
			o[i++] = ' ';
	} else if (i + 1 < s->len && s->in[i + 1] == '*') {
		size_t start = i;
		o[i] = o[i + 1] = ' ';
		i += 2;
		for (;;) {
			if (i + 1 >= s->len)
				return fail(s, start, "%s",
				            "a /* comment is not closed with */");
			if (s->in[i] == '*' && s->in[i + 1] == '/')
				break;
			if (s->in[i] != '\n' && s->in[i] != '\r')
				o[i] = ' ';
			i++;
		}
		o[i] = o[i + 1] = ' ';
		i += 2;
	} else {
		return fail(s, i, "%s",
		            "a '/' that starts no comment (comments are // and /* */)");
	}
	*ip = i;
	return 0;
}

static int scan(struct scanner *s)
{
	char *o = s->sc->json;
	size_t comma = SIZE_MAX; /* a comma after a value, not yet followed */
	s->stk[0] = (struct frame){0, 0, ST_VALUE, POL_NO_KEY};
	s->depth = 1;
	size_t i = 0;
	/* A UTF-8 byte order mark is not JSON. */
	if (s->len >= 3 && !memcmp(s->in, "\xef\xbb\xbf", 3)) {
		memset(o, ' ', 3);
		i = 3;
	}
	while (i < s->len) {
		char c = s->in[i];
		struct frame *f = &s->stk[s->depth - 1];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			i++;
			continue;
		}
		if (c == '/') {
			if (comment(s, &i))
				return -1;
			continue;
		}
		if (c == ',') {
			comma = f->state == ST_AFTER ? i : SIZE_MAX;
			if (f->state == ST_AFTER)
				f->state = f->type == '{' ? ST_KEY : ST_VALUE;
			i++;
			continue;
		}
		if (c == '}' || c == ']') {
			if (comma != SIZE_MAX)
				o[comma] = ' '; /* a trailing comma */
			comma = SIZE_MAX;
			if (s->depth > 1) {
				s->sc->pos[f->pos].next = s->sc->n_pos;
				s->depth--;
				s->stk[s->depth - 1].state = ST_AFTER;
			}
			i++;
			continue;
		}
		comma = SIZE_MAX;
		if (c == ':') {
			if (f->state == ST_COLON)
				f->state = ST_VALUE;
			i++;
			continue;
		}
		if (c == '"') {
			size_t end;
			if (string_end(s, i, &end))
				return -1;
			if (f->type == '{' && f->state == ST_KEY) {
				f->key_off = (uint32_t)i;
				f->state = ST_COLON;
			} else if (value_start(s, i)) {
				return -1;
			}
			i = end + 1;
			continue;
		}
		if (c == '{' || c == '[') {
			if (s->depth > POLICY_MAX_DEPTH)
				return fail(s, i,
				            "nesting deeper than %s levels of [ and {",
				            "16");
			if (value_start(s, i))
				return -1;
			s->stk[s->depth++] =
			    (struct frame){s->sc->n_pos - 1, c,
			                   c == '{' ? ST_KEY : ST_VALUE, POL_NO_KEY};
			i++;
			continue;
		}
		/* A number, true, false, null, or garbage for jansson to name. */
		if (value_start(s, i))
			return -1;
		do /* at least one byte: a NUL is a delimiter too */
			i++;
		while (i < s->len && !is_delim(s->in[i]));
		if (i < s->len && s->in[i] == '"')
			i++; /* garbage such as x"...: let jansson say so */
	}
	return 0;
}

int pol_scan_run(const char *in, size_t len, struct pol_scan *sc,
                 struct policy_error *err)
{
	memset(sc, 0, sizeof *sc);
	sc->src = in;
	sc->len = len;
	if (len > POLICY_MAX_BYTES) {
		pol_set_err(err, 0, 0, "the policy is %zu bytes; the limit is %d (1 MiB)",
		            len, POLICY_MAX_BYTES);
		return -1;
	}
	if (build_lines(sc, in, len) || !(sc->json = malloc(len + 1))) {
		pol_scan_free(sc);
		pol_set_err(err, 0, 0, "out of memory");
		return -1;
	}
	memcpy(sc->json, in, len);
	sc->json[len] = 0;
	struct scanner s = {.in = in, .len = len, .sc = sc, .err = err};
	if (scan(&s)) {
		pol_scan_free(sc);
		return -1;
	}
	return 0;
}

void pol_scan_free(struct pol_scan *sc)
{
	free(sc->json);
	free(sc->pos);
	free(sc->lines);
	sc->json = NULL;
	sc->pos = NULL;
	sc->lines = NULL;
	sc->n_pos = 0;
}
