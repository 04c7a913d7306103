/* mesh-control policy check FILE [--nodes NODES.json] [--json]: parses the
 * policy, compiles it against a node list (the JSON of `nodes list --json`,
 * or the store's nodes when a data directory is given without --nodes, or
 * none), runs its tests, and shows what each node would accept and see.
 * Changes nothing; `policy set` (cli_users.c) stores a policy. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "core/policy/policy.h"
#include "core/util/utf8.h"
#include "servers/control/cli_int.h"
#include "servers/control/policy_srv.h"

#define POLICY_CLI_MAX_NODES 65536

/* Reads path ("-": stdin) whole, up to max + 1 bytes (so that the parser
 * can say how big is too big). NULL with a message on stderr. */
static char *read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "mesh-control: cannot open %s: %s\n", path,
		        strerror(errno));
		return NULL;
	}
	char *buf = malloc(max + 2);
	errno = 0;
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	int err = errno;
	bool bad = !buf || ferror(f);
	if (f != stdin)
		fclose(f);
	if (bad) {
		fprintf(stderr, "mesh-control: cannot read %s: %s\n", path,
		        buf ? strerror(err ? err : EIO) : "out of memory");
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

struct nodes {
	struct policy_node *v;
	size_t n;
	char **strs; /* every string we allocated */
	size_t n_strs;
	const char **tagv; /* tag pointer arrays, one block */
};

static void nodes_free(struct nodes *ns)
{
	for (size_t i = 0; i < ns->n_strs; i++)
		free(ns->strs[i]);
	free(ns->strs);
	free(ns->tagv);
	free(ns->v);
}

static char *keep(struct nodes *ns, const char *s, size_t n)
{
	char *d = strndup(s, n);
	if (d)
		ns->strs[ns->n_strs++] = d;
	return d;
}

static int node_err(const char *path, size_t i, const char *what)
{
	fprintf(stderr, "mesh-control: %s: node %zu (counting from 0): %s\n", path, i,
	        what);
	return -1;
}

#define POLICY_CLI_MAX_TAGS 16

/* One tag of a node: "tag:NAME", at most POLICY_CLI_MAX_TAGS. */
static int node_tag(struct nodes *ns, const char *path, size_t i, const char *s,
                    size_t n, const char **tagv, size_t *tag_used)
{
	struct policy_node *nd = &ns->v[i];
	char b[100], shown[100];
	if (n < 5 || strncmp(s, "tag:", 4)) {
		snprintf(b, sizeof b, "%.*s", (int)(n < 60 ? n : 60), s);
		utf8_clean(b, shown, sizeof shown, UTF8_FOR_TERMINAL);
		fprintf(stderr,
		        "mesh-control: %s: node %zu (counting from 0): tag '%s' is not "
		        "tag:NAME\n",
		        path, i, shown);
		return -1;
	}
	if (nd->n_tags == POLICY_CLI_MAX_TAGS)
		return node_err(path, i, "more than 16 tags");
	if (!(tagv[(*tag_used)++] = keep(ns, s, n)))
		return node_err(path, i, "out of memory");
	nd->n_tags++;
	return 0;
}

/* One entry of the node list. */
static int node_parse(struct nodes *ns, const char *path, size_t i, json_t *o,
                      const char **tagv, size_t *tag_used)
{
	struct policy_node *nd = &ns->v[i];
	json_t *v4 = json_object_get(o, "ipv4"), *v6 = json_object_get(o, "ipv6");
	json_t *user = json_object_get(o, "user"), *tags = json_object_get(o, "tags");
	json_t *name = json_object_get(o, "name"), *id = json_object_get(o, "id");
	struct in_addr a4;
	if (!json_is_object(o))
		return node_err(path, i, "not an object");
	nd->id = json_is_integer(id) ? (uint64_t)json_integer_value(id) : i + 1;
	if (name && (!json_is_string(name) ||
	             !(nd->name = keep(ns, json_string_value(name),
	                               strlen(json_string_value(name))))))
		return node_err(path, i, "\"name\" is not a string");
	if (!v4 || !json_is_string(v4) ||
	    inet_pton(AF_INET, json_string_value(v4), &a4) != 1)
		return node_err(path, i,
		                "\"ipv4\" is not an IPv4 address (e.g. \"100.64.0.1\")");
	nd->v4 = ntohl(a4.s_addr);
	if (v6 && json_is_string(v6) && *json_string_value(v6)) {
		if (inet_pton(AF_INET6, json_string_value(v6), nd->v6) != 1)
			return node_err(path, i, "\"ipv6\" is not an IPv6 address");
		nd->has_v6 = true;
	}
	if (user && !json_is_null(user)) {
		if (!json_is_string(user))
			return node_err(path, i, "\"user\" is not a string");
		nd->user =
		    keep(ns, json_string_value(user), strlen(json_string_value(user)));
	}
	nd->tags = tagv + *tag_used;
	if (json_is_string(tags)) { /* "tag:a,tag:b", as nodes list --json has it */
		const char *s = json_string_value(tags);
		while (*s) {
			size_t n = strcspn(s, ",");
			if (node_tag(ns, path, i, s, n, tagv, tag_used))
				return -1;
			s += n + (s[n] == ',');
		}
	} else if (json_is_array(tags)) {
		for (size_t k = 0; k < json_array_size(tags); k++) {
			json_t *t = json_array_get(tags, k);
			if (!json_is_string(t))
				return node_err(path, i,
				                "\"tags\" holds something not a string");
			if (node_tag(ns, path, i, json_string_value(t),
			             strlen(json_string_value(t)), tagv, tag_used))
				return -1;
		}
	} else if (tags && !json_is_null(tags)) {
		return node_err(path, i, "\"tags\" is not a list or a comma list");
	}
	return 0;
}

/* Two nodes with one id or address would be one node to the policy (and
 * one would get the other's source rights). */
struct node_key {
	uint8_t kind; /* 0 id, 1 ipv4, 2 ipv6 */
	uint8_t v[16];
	size_t i;
};

static int node_key_cmp(const void *a, const void *b)
{
	const struct node_key *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	int c = memcmp(x->v, y->v, sizeof x->v);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int nodes_unique(const struct nodes *ns, const char *path)
{
	struct node_key *k = calloc(3 * ns->n + 1, sizeof *k);
	size_t n = 0;
	int rc = 0;
	if (!k) {
		fprintf(stderr, "mesh-control: out of memory\n");
		return -1;
	}
	for (size_t i = 0; i < ns->n; i++) {
		const struct policy_node *nd = &ns->v[i];
		k[n] = (struct node_key){0, {0}, i};
		memcpy(k[n++].v, &nd->id, sizeof nd->id);
		k[n] = (struct node_key){1, {0}, i};
		memcpy(k[n++].v, &nd->v4, sizeof nd->v4);
		if (nd->has_v6) {
			k[n] = (struct node_key){2, {0}, i};
			memcpy(k[n++].v, nd->v6, 16);
		}
	}
	qsort(k, n, sizeof *k, node_key_cmp);
	static const char *const what[] = {"\"id\"", "\"ipv4\"", "\"ipv6\""};
	for (size_t j = 1; j < n && !rc; j++)
		if (k[j].kind == k[j - 1].kind && !memcmp(k[j].v, k[j - 1].v, 16)) {
			fprintf(stderr,
			        "mesh-control: %s: node %zu (counting from 0) has the same %s "
			        "as node %zu; each node needs its own\n",
			        path, k[j].i, what[k[j].kind], k[j - 1].i);
			rc = -1;
		}
	free(k);
	return rc;
}

static int nodes_load(const char *path, struct nodes *ns)
{
	json_error_t je;
	memset(ns, 0, sizeof *ns);
	json_t *root = strcmp(path, "-")
	                   ? json_load_file(path, JSON_REJECT_DUPLICATES, &je)
	                   : json_loadf(stdin, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		fprintf(stderr, "mesh-control: %s: line %d, column %d: %s\n", path,
		        je.line, je.column, je.text);
		return -1;
	}
	int rc = -1;
	size_t n = json_array_size(root);
	if (!json_is_array(root)) {
		fprintf(stderr,
		        "mesh-control: %s: expected a list of nodes, as `mesh-control "
		        "nodes list --json` prints\n",
		        path);
		goto out;
	}
	if (n > POLICY_CLI_MAX_NODES) {
		fprintf(stderr, "mesh-control: %s: %zu nodes; a mesh holds at most %d\n",
		        path, n, POLICY_CLI_MAX_NODES);
		goto out;
	}
	ns->v = calloc(n + 1, sizeof *ns->v);
	ns->strs = calloc(n * 19 + 1, sizeof *ns->strs);
	ns->tagv = calloc(n * 16 + 1, sizeof *ns->tagv);
	if (!ns->v || !ns->strs || !ns->tagv) {
		fprintf(stderr, "mesh-control: out of memory\n");
		goto out;
	}
	size_t tag_used = 0;
	for (size_t i = 0; i < n; i++, ns->n++)
		if (node_parse(ns, path, i, json_array_get(root, i), ns->tagv, &tag_used))
			goto out;
	rc = nodes_unique(ns, path);
out:
	json_decref(root);
	if (rc)
		nodes_free(ns);
	return rc;
}

/* --- printing --------------------------------------------------------- */

static void ip_text(const struct policy_ip *ip, bool v4, char *out, size_t cap)
{
	char b[INET6_ADDRSTRLEN];
	inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? ip->b + 12 : ip->b, b, sizeof b);
	snprintf(out, cap, "%s", b);
}

/* A block as "*", an address, a CIDR, or "FIRST-LAST". */
static void block_text(const struct policy_ip *lo, const struct policy_ip *hi, char *out,
                       size_t cap)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	int common = 0;
	while (common < 128 &&
	       ((lo->b[common / 8] ^ hi->b[common / 8]) >> (7 - common % 8) & 1) == 0)
		common++;
	bool cidr = true;
	for (int k = common; k < 128 && cidr; k++)
		cidr = !((lo->b[k / 8] >> (7 - k % 8)) & 1) &&
		       ((hi->b[k / 8] >> (7 - k % 8)) & 1);
	bool v4 = !memcmp(lo->b, mapped, 12) && !memcmp(hi->b, mapped, 12);
	char a[64], b[64];
	ip_text(lo, v4, a, sizeof a);
	if (cidr && common == 0)
		snprintf(out, cap, "*");
	else if (cidr && common == 128)
		snprintf(out, cap, "%s", a);
	else if (cidr && (!v4 || common >= 96))
		snprintf(out, cap, "%s/%d", a, v4 ? common - 96 : common);
	else {
		ip_text(hi, v4, b, sizeof b);
		snprintf(out, cap, "%s-%s", a, b);
	}
}

/* The ranges as "22,80-90" ("*" for all ports), whole: malloc'ed, NULL
 * on no memory. Each range takes at most 12 bytes ("65534-65535,"). */
static char *ports_text(const struct policy_ports *p, size_t n)
{
	size_t cap = 12 * n + 2, o = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		int w;
		if (p[i].lo <= 1 && p[i].hi == 65535)
			w = snprintf(out + o, cap - o, "%s*", i ? "," : "");
		else if (p[i].lo == p[i].hi)
			w = snprintf(out + o, cap - o, "%s%u", i ? "," : "", p[i].lo);
		else
			w = snprintf(out + o, cap - o, "%s%u-%u", i ? "," : "", p[i].lo,
			             p[i].hi);
		if (w < 0 || (size_t)w >= cap - o)
			break; /* cannot happen: cap counts the widest */
		o += (size_t)w;
	}
	return out;
}

static const uint8_t protos[3] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};
static const char *const proto_names[3] = {"tcp", "udp", "icmp"};

static json_t *error_json(const struct policy_error *e)
{
	return json_pack("{s:i,s:i,s:s}", "line", e->line, "column", e->column, "message",
	                 e->msg);
}

/* One node's filter and peers, as text on stdout or into the JSON. */
static int show_node(const struct policy_compiled *cp, const struct policy_node *nodes,
                     size_t i, json_t *jnodes, struct policy_error *err)
{
	struct policy_filter *f = policy_node_filter(cp, i, err);
	size_t *vis, nvis;
	if (!f)
		return -1;
	if (policy_node_visible(cp, i, &vis, &nvis)) {
		policy_filter_free(f);
		return -1;
	}
	const struct policy_node *nd = &nodes[i];
	char name[100], addr[INET6_ADDRSTRLEN];
	struct policy_ip ip;
	policy_ip_v4(&ip, nd->v4);
	ip_text(&ip, true, addr, sizeof addr);
	utf8_clean(nd->name ? nd->name : "", name, sizeof name,
	           jnodes ? UTF8_REPLACE_INVALID : UTF8_FOR_TERMINAL);
	json_t *jn = NULL, *jf = NULL, *jv = NULL;
	if (jnodes) {
		jn = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)nd->id, "name", name,
		               "ipv4", addr);
		jf = json_object();
		jv = json_array();
		json_object_set_new(jn, "accepts", jf);
		json_object_set_new(jn, "visible", jv);
		json_array_append_new(jnodes, jn);
	} else {
		printf("  %s (%s): accepts", *name ? name : "(no name)", addr);
	}
	bool any = false;
	for (int t = 0; t < 3; t++) {
		json_t *ja = jf ? json_array() : NULL;
		for (size_t k = 0; k < policy_filter_n_blocks(f, protos[t]); k++) {
			struct policy_ip lo, hi;
			const struct policy_ports *pr;
			size_t npr;
			char src[160], *ports;
			policy_filter_block(f, protos[t], k, &lo, &hi, &pr, &npr);
			if (!npr)
				continue;
			/* blocks end at the IPv4 space's edges; shown joined */
			while (k + 1 < policy_filter_n_blocks(f, protos[t])) {
				struct policy_ip lo2, hi2;
				const struct policy_ports *pr2;
				size_t npr2;
				policy_filter_block(f, protos[t], k + 1, &lo2, &hi2, &pr2,
				                    &npr2);
				if (npr2 != npr || memcmp(pr, pr2, npr * sizeof *pr))
					break;
				hi = hi2;
				k++;
			}
			block_text(&lo, &hi, src, sizeof src);
			if (!(ports = ports_text(pr, npr))) {
				if (ja)
					json_decref(ja);
				free(vis);
				policy_filter_free(f);
				snprintf(err->msg, sizeof err->msg, "out of memory");
				err->line = err->column = 0;
				return -1;
			}
			if (ja)
				json_array_append_new(
				    ja,
				    json_pack("{s:s,s:s}", "src", src, "ports",
				              protos[t] == POLICY_ICMP ? "*" : ports));
			else if (protos[t] == POLICY_ICMP)
				printf("%s icmp from %s", any ? ";" : "", src);
			else
				printf("%s %s from %s to %s", any ? ";" : "",
				       proto_names[t], src, ports);
			free(ports);
			any = true;
		}
		if (jf)
			json_object_set_new(jf, proto_names[t], ja);
	}
	if (policy_filter_allows_all(f) && !jn)
		printf(" everything (no policy)");
	else if (!any && !jn)
		printf(" nothing");
	if (!jn)
		printf("\n    sees %zu peer%s%s", nvis, nvis == 1 ? "" : "s",
		       nvis ? ":" : "");
	for (size_t k = 0; k < nvis; k++) {
		const struct policy_node *p = &nodes[vis[k]];
		if (jv) {
			json_array_append_new(jv, json_integer((json_int_t)p->id));
		} else if (k < 20) {
			char pn[100];
			utf8_clean(p->name ? p->name : "?", pn, sizeof pn,
			           UTF8_FOR_TERMINAL);
			printf(" %s", pn);
		} else if (k == 20) {
			printf(" ... (%zu more)", nvis - 20);
		}
	}
	if (!jn)
		printf("\n");
	if (jn)
		json_object_set_new(jn, "allow_all",
		                    json_boolean(policy_filter_allows_all(f)));
	free(vis);
	policy_filter_free(f);
	return 0;
}

/* --- the command ------------------------------------------------------ */

static int fail(const char *file, const struct policy_error *e, bool json)
{
	char msg[700], jfile[512];
	policy_error_format(e, msg, sizeof msg);
	if (json) {
		utf8_clean(file, jfile, sizeof jfile, UTF8_REPLACE_INVALID);
		json_t *o = json_pack("{s:b,s:s,s:o}", "ok", 0, "file", jfile, "error",
		                      error_json(e));
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		printf("\n");
		json_decref(o);
	}
	char clean[800];
	utf8_clean(msg, clean, sizeof clean, UTF8_FOR_TERMINAL);
	fprintf(stderr, "mesh-control: %s: %s\n", file, clean);
	return 1;
}

static void too_big(const char *file, struct policy_error *e)
{
	memset(e, 0, sizeof *e);
	snprintf(e->msg, sizeof e->msg,
	         "the policy is over %d bytes (1 MiB), the limit; say the same with "
	         "groups, tags and hosts",
	         POLICY_MAX_BYTES);
}

char *ctl_cli_read_policy(const char *path, size_t *len)
{
	char *text = read_file(path, POLICY_MAX_BYTES, len);
	if (text && *len > POLICY_MAX_BYTES) {
		struct policy_error big;
		too_big(path, &big);
		fail(path, &big, false);
		free(text);
		return NULL;
	}
	return text;
}

int ctl_cli_cmd_policy_check(const char *file, const char *nodes_file,
                             struct ctl_store *st, bool json)
{
	struct policy_error err;
	struct nodes ns = {0};
	struct ctl_policy_nodes sn = {0};
	size_t len, passed = 0;
	int rc = 1;
	char *text = read_file(file, POLICY_MAX_BYTES, &len);
	if (!text)
		return 1;
	if (len > POLICY_MAX_BYTES) {
		struct policy_error big;
		too_big(file, &big);
		free(text);
		return fail(file, &big, json);
	}
	if (nodes_file && nodes_load(nodes_file, &ns)) {
		free(text);
		return 1;
	}
	if (!nodes_file && st) {
		int r = ctl_policy_nodes_from_store(st, (int64_t)time(NULL), &sn);
		if (r < 0) {
			fprintf(stderr, "mesh-control: %s\n",
			        r == CTL_STORE_ENOMEM ? "out of memory"
			                              : ctl_store_errmsg(st));
			free(text);
			return 1;
		}
	}
	const struct policy_node *nv = nodes_file ? ns.v : sn.v;
	size_t nn = nodes_file ? ns.n : sn.n;
	struct policy *p = policy_parse(text, len, &err);
	free(text);
	struct policy_compiled *cp = NULL;
	if (!p || !(cp = policy_compile(p, nv, nn, &err)) ||
	    policy_run_tests(cp, &passed, &err)) {
		rc = fail(file, &err, json);
		goto out;
	}
	struct policy_stats stt;
	policy_get_stats(p, &stt);
	json_t *out = NULL, *jw = NULL, *jn = NULL;
	char jfile[512];
	if (json) {
		utf8_clean(file, jfile, sizeof jfile, UTF8_REPLACE_INVALID);
		out = json_pack(
		    "{s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "ok", 1, "file", jfile, "groups",
		    (json_int_t)stt.groups, "tags", (json_int_t)stt.tags, "hosts",
		    (json_int_t)stt.hosts, "rules", (json_int_t)stt.rules, "tests",
		    (json_int_t)stt.tests, "test_cases_passed", (json_int_t)passed);
		json_object_set_new(out, "warnings", jw = json_array());
		json_object_set_new(out, "nodes", jn = json_array());
	}
	for (size_t i = 0; i < policy_n_warnings(p); i++) {
		char m[700], c[800];
		if (jw) {
			json_array_append_new(jw, error_json(policy_warning(p, i)));
			continue;
		}
		policy_error_format(policy_warning(p, i), m, sizeof m);
		utf8_clean(m, c, sizeof c, UTF8_FOR_TERMINAL);
		fprintf(stderr, "mesh-control: %s: warning: %s\n", file, c);
	}
	/* what the node list made the compile drop (tags not owned) */
	for (size_t i = 0; i < policy_compiled_n_warnings(cp); i++) {
		char c[800];
		if (jw) {
			json_array_append_new(jw, error_json(policy_compiled_warning(cp, i)));
			continue;
		}
		utf8_clean(policy_compiled_warning(cp, i)->msg, c, sizeof c,
		           UTF8_FOR_TERMINAL);
		fprintf(stderr, "mesh-control: %s: warning: %s\n",
		        nodes_file ? nodes_file : file, c);
	}
	if (!json) {
		printf("%s: OK: %zu group%s, %zu tag%s, %zu host%s, %zu rule%s; %zu test "
		       "check%s "
		       "passed\n",
		       file, stt.groups, stt.groups == 1 ? "" : "s", stt.tags,
		       stt.tags == 1 ? "" : "s", stt.hosts, stt.hosts == 1 ? "" : "s",
		       stt.rules, stt.rules == 1 ? "" : "s", passed,
		       passed == 1 ? "" : "s");
		if (!nodes_file && !st)
			printf("no node list given: tests ran by user, tag and address "
			       "alone; "
			       "pass --nodes FILE (from `mesh-control nodes list "
			       "--json`, with a "
			       "\"user\" per node) or --data DIR (the store's nodes) to "
			       "see what each node would accept\n");
		else
			printf("compiled for %zu node%s (%s):\n", nn, nn == 1 ? "" : "s",
			       nodes_file ? "from the node list"
			                  : "the store's nodes in the network map");
	}
	for (size_t i = 0; i < nn; i++)
		if (show_node(cp, nv, i, jn, &err)) {
			json_decref(out);
			rc = fail(file, &err, json);
			goto out;
		}
	if (out) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		printf("\n");
		json_decref(out);
	}
	rc = 0;
out:
	policy_compiled_free(cp);
	policy_free(p);
	nodes_free(&ns);
	ctl_policy_nodes_free(&sn);
	return rc;
}
