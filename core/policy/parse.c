/* The policy's sections, read from jansson's tree of the scanner's strict
 * JSON. Definitions (groups, hosts, tagOwners) are read before what uses
 * them (acls, tests), whatever their order in the file. Every error names
 * the line, the column and the path of the value (acls[2].src[0]). */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy/parse_int.h"

#define POL_MAX_WARNINGS 50

void pol_p_pos_linecol(struct pctx *c, uint32_t pos, bool at_key, int *line, int *col)
{
	size_t off = 0;
	if (pos < c->sc->n_pos) {
		off = c->sc->pos[pos].off;
		if (at_key && c->sc->pos[pos].key_off != POL_NO_KEY)
			off = c->sc->pos[pos].key_off;
	}
	pol_scan_linecol(c->sc, off, line, col);
}

int pol_p_perr(struct pctx *c, uint32_t pos, bool at_key, const char *fmt, ...)
{
	int line, col;
	va_list ap;
	pol_p_pos_linecol(c, pos, at_key, &line, &col);
	va_start(ap, fmt);
	pol_vset_err(c->err, line, col, fmt, ap);
	va_end(ap);
	return -1;
}

__attribute__((format(printf, 3, 4))) static void warn(struct pctx *c, uint32_t pos,
                                                       const char *fmt, ...)
{
	struct policy *p = c->p;
	if (p->n_warnings == POL_MAX_WARNINGS)
		return;
	if (!p->warnings) {
		p->warnings =
		    pol_alloc(&p->arena, POL_MAX_WARNINGS * sizeof *p->warnings);
		if (!p->warnings)
			return;
	}
	int line, col;
	va_list ap;
	pol_p_pos_linecol(c, pos, false, &line, &col);
	va_start(ap, fmt);
	pol_vset_err(&p->warnings[p->n_warnings++], line, col, fmt, ap);
	va_end(ap);
}

size_t pol_p_path_push(struct pctx *c, const char *fmt, const char *s, size_t i)
{
	size_t old = strlen(c->path);
	char buf[100];
	if (s)
		pol_show(s, buf, sizeof buf);
	snprintf(c->path + old, sizeof c->path - old, fmt, s ? buf : "", i);
	return old;
}

void pol_p_path_pop(struct pctx *c, size_t old)
{
	c->path[old] = 0;
}

const char *pol_p_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "true or false";
	default:
		return "null";
	}
}

int pol_p_count_sel(struct pctx *c, uint32_t pos)
{
	if (++c->n_sel > POLICY_MAX_SELECTORS)
		return pol_p_perr(
		    c, pos, false,
		    "the policy holds more than %d selectors, ports and members in all; "
		    "group users and hosts to say the same with fewer",
		    POLICY_MAX_SELECTORS);
	return 0;
}

static char *dup(struct pctx *c, const char *s)
{
	return pol_strndup(&c->p->arena, s, strlen(s));
}

/* A list of strings at pos; *n its length. */
int pol_p_want_strings(struct pctx *c, json_t *v, uint32_t pos)
{
	if (!json_is_array(v))
		return pol_p_perr(c, pos, false, "%s must be a list of strings, not %s",
		                  c->path, pol_p_type_name(v));
	for (size_t i = 0; i < json_array_size(v); i++)
		if (!json_is_string(json_array_get(v, i)))
			return pol_p_perr(c, pol_scan_child(c->sc, pos, i), false,
			                  "%s[%zu] must be a string, not %s", c->path, i,
			                  pol_p_type_name(json_array_get(v, i)));
	return 0;
}

/* --- selectors -------------------------------------------------------- */

static int find_group(const struct policy *p, const char *s)
{
	return pol_names_find(&p->groups_ix, s);
}

static int find_tag(const struct policy *p, const char *s)
{
	return pol_names_find(&p->tags_ix, s);
}

static const struct pol_host *find_host(const struct policy *p, const char *s)
{
	int i = pol_names_find(&p->hosts_ix, s);
	return i < 0 ? NULL : &p->hosts[i];
}

/* The index of a section's names, made once the names are read. */
static int index_names(struct pctx *c, struct pol_names *ix, uint32_t n, uint32_t pos,
                       const char *(*name_of)(const struct policy *, uint32_t))
{
	ix->v = pol_alloc(&c->p->arena, (n + 1) * sizeof *ix->v);
	if (!ix->v)
		return pol_p_perr(c, pos, false, "out of memory");
	for (uint32_t i = 0; i < n; i++)
		ix->v[i] = (struct pol_name_ix){name_of(c->p, i), i};
	ix->n = n;
	pol_names_sort(ix);
	return 0;
}

static const char *group_name(const struct policy *p, uint32_t i)
{
	return p->groups[i].name;
}

static const char *tag_name(const struct policy *p, uint32_t i)
{
	return p->tagowners[i].tag;
}

static const char *host_name(const struct policy *p, uint32_t i)
{
	return p->hosts[i].name;
}

/* Only digits and dots: an IPv4 address, or a broken one ("100.64.0"). */
static bool digits_and_dots(const char *s)
{
	return s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789.") == strlen(s);
}

/* An address or CIDR, not a user: a user's name may start with a digit
 * ("42bob@"), so only what holds ':' or '/' or is all digits and dots is
 * read as an address. */
static bool looks_like_address(const char *s)
{
	return !strchr(s, '@') && (digits_and_dots(s) || strchr(s, ':') || strchr(s, '/'));
}

/* A user written "alice@" (the user alice), "alice@example.com" (that
 * user) or, as *plain, "alice". Returns the user's name or NULL. */
static const char *user_name(struct pctx *c, const char *s, bool *plain)
{
	size_t n = strlen(s);
	*plain = !strchr(s, '@');
	if (n > 1 && s[n - 1] == '@' && !memchr(s, '@', n - 1)) {
		char *u = pol_strndup(&c->p->arena, s, n - 1);
		return u && pol_name_valid(u, n - 1) ? u : NULL;
	}
	return pol_user_valid(s) ? dup(c, s) : NULL;
}

static int plain_user_warning(struct pctx *c, uint32_t pos, const char *s)
{
	char b[100];
	pol_show(s, b, sizeof b);
	for (uint32_t i = 0; i < c->p->n_warnings; i++)
		if (strstr(c->p->warnings[i].msg, "read as the user") &&
		    !strncmp(c->p->warnings[i].msg + 1, b, strlen(b)) &&
		    c->p->warnings[i].msg[1 + strlen(b)] == '\'')
			return 0;
	warn(c, pos,
	     "'%s' is read as the user '%s' (there is no host alias of that name); write "
	     "'%s@' to say it is a user",
	     b, b, b);
	return 0;
}

/* Resolves s (at pos, described by c->path) into *o. */
int pol_p_sel_resolve(struct pctx *c, const char *s, uint32_t pos, struct pol_sel *o)
{
	struct policy *p = c->p;
	char b[100];
	const char *why;
	bool single;
	memset(o, 0, sizeof *o);
	if (!(o->text = dup(c, s)))
		return pol_p_perr(c, pos, false, "out of memory");
	pol_show(s, b, sizeof b);
	if (!strcmp(s, "*")) {
		o->kind = SEL_ANY;
	} else if (!strncmp(s, "group:", 6)) {
		int g = find_group(p, s);
		if (g < 0)
			return pol_p_perr(
			    c, pos, false,
			    "unknown group '%s' in %s: define it under \"groups\"", b,
			    c->path);
		o->kind = SEL_GROUP;
		o->group = (uint32_t)g;
	} else if (!strncmp(s, "tag:", 4)) {
		if (find_tag(p, s) < 0)
			return pol_p_perr(
			    c, pos, false,
			    "unknown tag '%s' in %s: declare it under \"tagOwners\" (who "
			    "may give it to nodes)",
			    b, c->path);
		o->kind = SEL_TAG;
		o->name = o->text;
	} else if (!strncmp(s, "autogroup:", 10)) {
		return pol_p_perr(
		    c, pos, false,
		    "'%s' in %s: autogroups are not supported; use *, users, groups, "
		    "tags, hosts or addresses",
		    b, c->path);
	} else if (find_host(p, s)) {
		o->kind = SEL_PREFIX;
		o->iv = find_host(p, s)->iv;
	} else if (looks_like_address(s)) {
		if ((why = pol_parse_prefix(s, &o->iv, &single)))
			return pol_p_perr(c, pos, false, "'%s' in %s: %s", b, c->path,
			                  why);
		o->kind = SEL_PREFIX;
	} else {
		bool plain;
		if (!(o->name = user_name(c, s, &plain)))
			return pol_p_perr(
			    c, pos, false,
			    "'%s' in %s is not a selector: expected *, a user (alice@), "
			    "group:NAME, tag:NAME, a host alias, or a mesh address or "
			    "CIDR",
			    b, c->path);
		o->kind = SEL_USER;
		if (plain)
			plain_user_warning(c, pos, s);
	}
	return 0;
}

/* "SEL:PORTS" (or "[v6]:PORTS"): splits at the last ':'. */
int pol_p_split_dst(struct pctx *c, const char *s, uint32_t pos, char *sel, size_t cap,
                    const char **ports)
{
	char b[100];
	const char *colon = strrchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : 0;
	if (!colon || n == 0)
		return pol_p_perr(
		    c, pos, false,
		    "'%s' in %s has no port: write SELECTOR:PORTS, e.g. web:443, "
		    "tag:db:5432 or web:* for all ports",
		    pol_show(s, b, sizeof b), c->path);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= cap)
		return pol_p_perr(c, pos, false, "'%s' in %s: the selector is too long",
		                  pol_show(s, b, sizeof b), c->path);
	memcpy(sel, s, n);
	sel[n] = 0;
	*ports = colon + 1;
	return 0;
}

/* --- sections --------------------------------------------------------- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_groups(struct pctx *c, json_t *v, uint32_t pos)
{
	struct policy *p = c->p;
	if (!json_is_object(v))
		return pol_p_perr(c, pos, false, "\"groups\" must be an object, not %s",
		                  pol_p_type_name(v));
	p->groups = pol_alloc(&p->arena, (json_object_size(v) + 1) * sizeof *p->groups);
	if (!p->groups)
		return pol_p_perr(c, pos, false, "out of memory");
	size_t i = 0;
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it), i++) {
		const char *k = json_object_iter_key(it);
		json_t *m = json_object_iter_value(it);
		uint32_t kp = pol_scan_child(c->sc, pos, i);
		char b[100];
		if (strncmp(k, "group:", 6) || !pol_name_valid(k + 6, strlen(k + 6)))
			return pol_p_perr(c, kp, true,
			                  "group name '%s' must be group:NAME (NAME of "
			                  "letters, digits, "
			                  "'.', '_', '-')",
			                  pol_show(k, b, sizeof b));
		size_t old = pol_p_path_push(c, "groups[\"%s\"]", k, 0);
		if (pol_p_want_strings(c, m, kp))
			return -1;
		struct pol_group *g = &p->groups[p->n_groups];
		g->name = dup(c, k);
		g->members =
		    pol_alloc(&p->arena, (json_array_size(m) + 1) * sizeof(char *));
		if (!g->name || !g->members)
			return pol_p_perr(c, kp, false, "out of memory");
		for (size_t j = 0; j < json_array_size(m); j++) {
			const char *s = json_string_value(json_array_get(m, j));
			uint32_t mp = pol_scan_child(c->sc, kp, j);
			bool plain;
			if (pol_p_count_sel(c, mp))
				return -1;
			if (!strncmp(s, "group:", 6) || !strncmp(s, "tag:", 4))
				return pol_p_perr(c, mp, false,
				                  "'%s' in %s[%zu]: a group holds users, "
				                  "not groups or tags",
				                  pol_show(s, b, sizeof b), c->path, j);
			if (!(g->members[g->n++] = user_name(c, s, &plain)))
				return pol_p_perr(c, mp, false,
				                  "'%s' in %s[%zu] is not a user name "
				                  "(alice, alice@ or "
				                  "alice@example.com)",
				                  pol_show(s, b, sizeof b), c->path, j);
		}
		if (!(g->sorted = pol_alloc(&p->arena, (g->n + 1) * sizeof(char *))))
			return pol_p_perr(c, kp, false, "out of memory");
		memcpy(g->sorted, g->members, g->n * sizeof(char *));
		qsort(g->sorted, g->n, sizeof(char *), str_cmp);
		pol_p_path_pop(c, old);
		p->n_groups++;
	}
	return index_names(c, &p->groups_ix, p->n_groups, pos, group_name);
}

static int parse_hosts(struct pctx *c, json_t *v, uint32_t pos)
{
	struct policy *p = c->p;
	if (!json_is_object(v))
		return pol_p_perr(c, pos, false, "\"hosts\" must be an object, not %s",
		                  pol_p_type_name(v));
	p->hosts = pol_alloc(&p->arena, (json_object_size(v) + 1) * sizeof *p->hosts);
	if (!p->hosts)
		return pol_p_perr(c, pos, false, "out of memory");
	size_t i = 0;
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it), i++) {
		const char *k = json_object_iter_key(it);
		json_t *a = json_object_iter_value(it);
		uint32_t kp = pol_scan_child(c->sc, pos, i);
		char b[100], b2[100];
		bool single;
		const char *why;
		if (pol_p_count_sel(c, kp))
			return -1;
		if (!pol_name_valid(k, strlen(k)) || digits_and_dots(k))
			return pol_p_perr(c, kp, true,
			                  "host alias '%s' must be a name of letters, "
			                  "digits, '.', '_', "
			                  "'-' (not an address, nor only digits and dots)",
			                  pol_show(k, b, sizeof b));
		if (!json_is_string(a))
			return pol_p_perr(
			    c, kp, false,
			    "hosts[\"%s\"] must be an address string, not %s",
			    pol_show(k, b, sizeof b), pol_p_type_name(a));
		struct pol_host *h = &p->hosts[p->n_hosts];
		if ((why = pol_parse_prefix(json_string_value(a), &h->iv, &single)))
			return pol_p_perr(c, kp, false, "hosts[\"%s\"]: '%s': %s",
			                  pol_show(k, b, sizeof b),
			                  pol_show(json_string_value(a), b2, sizeof b2),
			                  why);
		if (!(h->name = dup(c, k)))
			return pol_p_perr(c, kp, false, "out of memory");
		pol_p_pos_linecol(c, kp, true, &h->line, &h->col);
		p->n_hosts++;
	}
	return index_names(c, &p->hosts_ix, p->n_hosts, pos, host_name);
}

static int parse_tagowners(struct pctx *c, json_t *v, uint32_t pos)
{
	struct policy *p = c->p;
	if (!json_is_object(v))
		return pol_p_perr(c, pos, false,
		                  "\"tagOwners\" must be an object, not %s",
		                  pol_p_type_name(v));
	p->tagowners =
	    pol_alloc(&p->arena, (json_object_size(v) + 1) * sizeof *p->tagowners);
	if (!p->tagowners)
		return pol_p_perr(c, pos, false, "out of memory");
	/* The tags first: an owner may be another tag declared later. */
	size_t i = 0;
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it), i++) {
		const char *k = json_object_iter_key(it);
		char b[100];
		if (strncmp(k, "tag:", 4) || !pol_name_valid(k + 4, strlen(k + 4)))
			return pol_p_perr(c, pol_scan_child(c->sc, pos, i), true,
			                  "tag '%s' must be tag:NAME (NAME of letters, "
			                  "digits, '.', '_', "
			                  "'-')",
			                  pol_show(k, b, sizeof b));
		if (!(p->tagowners[p->n_tagowners++].tag = dup(c, k)))
			return pol_p_perr(c, pos, false, "out of memory");
	}
	if (index_names(c, &p->tags_ix, p->n_tagowners, pos, tag_name))
		return -1;
	i = 0;
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it), i++) {
		json_t *o = json_object_iter_value(it);
		uint32_t kp = pol_scan_child(c->sc, pos, i);
		struct pol_tagowner *t = &p->tagowners[i];
		char b[100];
		size_t old = pol_p_path_push(c, "tagOwners[\"%s\"]", t->tag, 0);
		if (pol_p_want_strings(c, o, kp))
			return -1;
		t->owners =
		    pol_alloc(&p->arena, (json_array_size(o) + 1) * sizeof *t->owners);
		if (!t->owners)
			return pol_p_perr(c, kp, false, "out of memory");
		for (size_t j = 0; j < json_array_size(o); j++) {
			uint32_t op = pol_scan_child(c->sc, kp, j);
			size_t o2 = pol_p_path_push(c, "[%s%zu]", NULL, j);
			if (pol_p_count_sel(c, op) ||
			    pol_p_sel_resolve(c, json_string_value(json_array_get(o, j)),
			                      op, &t->owners[j]))
				return -1;
			if (t->owners[j].kind == SEL_ANY ||
			    t->owners[j].kind == SEL_PREFIX)
				return pol_p_perr(
				    c, op, false,
				    "%s: a tag is owned by users, groups or tags, not by "
				    "'%s'",
				    c->path, pol_show(t->owners[j].text, b, sizeof b));
			pol_p_path_pop(c, o2);
			t->n++;
		}
		pol_p_path_pop(c, old);
	}
	return 0;
}

static uint8_t proto_bits(const char *s)
{
	if (!strcmp(s, "tcp"))
		return POL_TCP;
	if (!strcmp(s, "udp"))
		return POL_UDP;
	if (!strcmp(s, "icmp"))
		return POL_ICMP;
	return 0;
}

/* The optional "proto" of a rule or test at object pos o, key index ki. */
int pol_p_parse_proto(struct pctx *c, json_t *v, uint32_t vp, uint8_t *out)
{
	char b[100];
	if (!json_is_string(v) || !(*out = proto_bits(json_string_value(v))))
		return pol_p_perr(
		    c, vp, false, "%s.proto must be \"tcp\", \"udp\" or \"icmp\", not %s",
		    c->path,
		    json_is_string(v) ? pol_show(json_string_value(v), b, sizeof b)
		                      : pol_p_type_name(v));
	return 0;
}

static int parse_dst(struct pctx *c, const char *s, uint32_t pos, uint8_t protos,
                     struct pol_dst *d)
{
	struct policy_ports tmp[POL_MAX_PORT_ITEMS];
	char sel[128], b[100];
	const char *ports, *why;
	uint32_t n;
	if (pol_p_split_dst(c, s, pos, sel, sizeof sel, &ports))
		return -1;
	if ((why = pol_parse_ports(ports, tmp, POL_MAX_PORT_ITEMS, &n)))
		return pol_p_perr(
		    c, pos, false,
		    "'%s' in %s: %s (dst entries are SELECTOR:PORTS, e.g. web:443, "
		    "tag:db:5432, web:80,443 or web:8000-8099)",
		    pol_show(s, b, sizeof b), c->path, why);
	if (protos == POL_ICMP && !(n == 1 && tmp[0].lo == 0 && tmp[0].hi == 65535))
		return pol_p_perr(
		    c, pos, false,
		    "'%s' in %s: ICMP has no ports; write the destination with :*",
		    pol_show(s, b, sizeof b), c->path);
	for (uint32_t i = 0; i < n; i++)
		if (pol_p_count_sel(c, pos))
			return -1;
	if (pol_p_sel_resolve(c, sel, pos, &d->sel)) {
		/* "fd7a::9" alone splits into "fd7a:" and port 9. */
		if (strchr(sel, ':') && s[0] != '[' && strncmp(s, "tag:", 4) &&
		    strncmp(s, "group:", 6)) {
			size_t l = strlen(c->err->msg);
			snprintf(c->err->msg + l, sizeof c->err->msg - l,
			         " (an IPv6 destination is written [ADDRESS]:PORTS)");
		}
		return -1;
	}
	d->ports = pol_alloc(&c->p->arena, n * sizeof *d->ports);
	if (!d->ports)
		return pol_p_perr(c, pos, false, "out of memory");
	memcpy(d->ports, tmp, n * sizeof *d->ports);
	d->n_ports = n;
	return 0;
}

static int parse_rule(struct pctx *c, json_t *r, uint32_t rp, struct pol_rule *out)
{
	json_t *src = NULL, *dst = NULL, *action = NULL;
	uint32_t sp = rp, dp = rp, ap = rp;
	char b[100];
	if (!json_is_object(r))
		return pol_p_perr(c, rp, false,
		                  "%s must be an object {\"action\", \"src\", \"dst\"}, "
		                  "not %s",
		                  c->path, pol_p_type_name(r));
	pol_p_pos_linecol(c, rp, false, &out->line, &out->col);
	out->protos = POL_ALLPROTO;
	size_t i = 0;
	for (void *it = json_object_iter(r); it; it = json_object_iter_next(r, it), i++) {
		const char *k = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);
		uint32_t kp = pol_scan_child(c->sc, rp, i);
		if (!strcmp(k, "action")) {
			action = v;
			ap = kp;
		} else if (!strcmp(k, "src")) {
			src = v;
			sp = kp;
		} else if (!strcmp(k, "dst")) {
			dst = v;
			dp = kp;
		} else if (!strcmp(k, "proto")) {
			if (pol_p_parse_proto(c, v, kp, &out->protos))
				return -1;
		} else {
			return pol_p_perr(
			    c, kp, true,
			    "unknown field '%s' in %s: a rule has action, src, dst and "
			    "optionally proto%s",
			    pol_show(k, b, sizeof b), c->path,
			    !strcmp(k, "users") || !strcmp(k, "ports")
			        ? " (write users as src and ports as dst)"
			        : "");
		}
	}
	if (!action || !src || !dst)
		return pol_p_perr(c, rp, false, "%s has no \"%s\"", c->path,
		                  !action ? "action"
		                  : !src  ? "src"
		                          : "dst");
	if (!json_is_string(action) || strcmp(json_string_value(action), "accept"))
		return pol_p_perr(
		    c, ap, false,
		    "%s.action must be \"accept\": rules only accept, and whatever no "
		    "rule accepts is denied",
		    c->path);
	size_t old = pol_p_path_push(c, ".src", NULL, 0);
	if (pol_p_want_strings(c, src, sp))
		return -1;
	out->src = pol_alloc(&c->p->arena, (json_array_size(src) + 1) * sizeof *out->src);
	if (!out->src)
		return pol_p_perr(c, sp, false, "out of memory");
	for (size_t j = 0; j < json_array_size(src); j++) {
		uint32_t ep = pol_scan_child(c->sc, sp, j);
		size_t o2 = pol_p_path_push(c, "[%s%zu]", NULL, j);
		if (pol_p_count_sel(c, ep) ||
		    pol_p_sel_resolve(c, json_string_value(json_array_get(src, j)), ep,
		                      &out->src[j]))
			return -1;
		pol_p_path_pop(c, o2);
		out->n_src++;
	}
	if (!out->n_src)
		warn(c, sp, "%s is empty: the rule matches nothing", c->path);
	pol_p_path_pop(c, old);
	old = pol_p_path_push(c, ".dst", NULL, 0);
	if (pol_p_want_strings(c, dst, dp))
		return -1;
	out->dst = pol_alloc(&c->p->arena, (json_array_size(dst) + 1) * sizeof *out->dst);
	if (!out->dst)
		return pol_p_perr(c, dp, false, "out of memory");
	for (size_t j = 0; j < json_array_size(dst); j++) {
		uint32_t ep = pol_scan_child(c->sc, dp, j);
		size_t o2 = pol_p_path_push(c, "[%s%zu]", NULL, j);
		if (pol_p_count_sel(c, ep) ||
		    parse_dst(c, json_string_value(json_array_get(dst, j)), ep,
		              out->protos, &out->dst[j]))
			return -1;
		pol_p_path_pop(c, o2);
		out->n_dst++;
	}
	if (!out->n_dst)
		warn(c, dp, "%s is empty: the rule matches nothing", c->path);
	pol_p_path_pop(c, old);
	return 0;
}

static int parse_acls(struct pctx *c, json_t *v, uint32_t pos)
{
	struct policy *p = c->p;
	if (!json_is_array(v))
		return pol_p_perr(c, pos, false,
		                  "\"acls\" must be a list of rules, not %s",
		                  pol_p_type_name(v));
	if (json_array_size(v) > POLICY_MAX_RULES)
		return pol_p_perr(
		    c, pos, false,
		    "\"acls\" holds %zu rules; the limit is %d (merge rules with the "
		    "same sources)",
		    json_array_size(v), POLICY_MAX_RULES);
	p->rules = pol_alloc(&p->arena, (json_array_size(v) + 1) * sizeof *p->rules);
	if (!p->rules)
		return pol_p_perr(c, pos, false, "out of memory");
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t old = pol_p_path_push(c, "acls[%s%zu]", NULL, i);
		if (parse_rule(c, json_array_get(v, i), pol_scan_child(c->sc, pos, i),
		               &p->rules[i]))
			return -1;
		pol_p_path_pop(c, old);
		p->n_rules++;
	}
	return 0;
}

/* --- the whole file --------------------------------------------------- */

static const char *const sections[] = {"groups", "hosts", "tagOwners", "acls", "tests"};
#define N_SECTIONS 5

static int parse_root(struct pctx *c, json_t *root)
{
	json_t *sec[N_SECTIONS] = {0};
	uint32_t sp[N_SECTIONS] = {0};
	char b[100];
	if (!json_is_object(root))
		return pol_p_perr(c, 0, false,
		                  "the policy must be a JSON object { ... }, not %s",
		                  pol_p_type_name(root));
	size_t i = 0;
	for (void *it = json_object_iter(root); it;
	     it = json_object_iter_next(root, it), i++) {
		const char *k = json_object_iter_key(it);
		int s;
		for (s = 0; s < N_SECTIONS && strcmp(k, sections[s]); s++)
			;
		if (s == N_SECTIONS)
			return pol_p_perr(c, pol_scan_child(c->sc, 0, i), true,
			                  "unknown section '%s': a policy has groups, "
			                  "tagOwners, hosts, "
			                  "acls and tests",
			                  pol_show(k, b, sizeof b));
		sec[s] = json_object_iter_value(it);
		sp[s] = pol_scan_child(c->sc, 0, i);
	}
	if ((sec[0] && parse_groups(c, sec[0], sp[0])) ||
	    (sec[1] && parse_hosts(c, sec[1], sp[1])) ||
	    (sec[2] && parse_tagowners(c, sec[2], sp[2])) ||
	    (sec[3] && parse_acls(c, sec[3], sp[3])) ||
	    (sec[4] && pol_p_parse_tests(c, sec[4], sp[4])))
		return -1;
	if (!c->p->n_rules)
		warn(c, sec[3] ? sp[3] : 0,
		     "the policy has no acls: every connection between nodes is denied");
	return 0;
}

struct policy *policy_parse(const char *text, size_t len, struct policy_error *err)
{
	struct pol_scan sc;
	json_error_t je;
	memset(err, 0, sizeof *err);
	if (pol_scan_run(text, len, &sc, err))
		return NULL;
	json_t *root = json_loadb(sc.json, sc.len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		int line, col;
		size_t off = je.position > 0 ? (size_t)je.position : 0;
		/* jansson points just past the token it could not take. */
		if (off > 0 && off <= sc.len && je.position > 0)
			off--;
		pol_scan_linecol(&sc, off, &line, &col);
		pol_set_err(err, line, col, "not valid JSON: %s", je.text);
		pol_scan_free(&sc);
		return NULL;
	}
	struct policy *p = calloc(1, sizeof *p);
	struct pctx c = {.p = p, .sc = &sc, .err = err};
	if (!p) {
		pol_set_err(err, 0, 0, "out of memory");
	} else if (parse_root(&c, root)) {
		policy_free(p);
		p = NULL;
	}
	json_decref(root);
	pol_scan_free(&sc);
	return p;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	pol_arena_free(&p->arena);
	free(p);
}

size_t policy_n_warnings(const struct policy *p)
{
	return p->n_warnings;
}

const struct policy_error *policy_warning(const struct policy *p, size_t i)
{
	return i < p->n_warnings ? &p->warnings[i] : NULL;
}

void policy_get_stats(const struct policy *p, struct policy_stats *st)
{
	st->groups = p->n_groups;
	st->tags = p->n_tagowners;
	st->hosts = p->n_hosts;
	st->rules = p->n_rules;
	st->tests = p->n_tests;
}
