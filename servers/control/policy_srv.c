/* mesh-control's side of the access policy: node lists for the compiler,
 * validation against the store, and the user and tag checks (see
 * policy_srv.h). */
#include "servers/control/policy_srv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "servers/control/server_int.h"

/* ---- node lists ------------------------------------------------------ */

int ctl_policy_nodes_add(struct ctl_policy_nodes *ns, uint64_t id, const char *name,
                         uint32_t v4, const uint8_t *v6, const char *user,
                         const char *tags)
{
	size_t ln = name ? strlen(name) + 1 : 0,
	       lu = user && *user ? strlen(user) + 1 : 0;
	size_t lt = tags ? strlen(tags) + 1 : 0, nt = 0;
	for (const char *p = tags; p && *p; p++)
		nt += *p == ',';
	nt += lt > 1;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 64;
		struct policy_node *nv = realloc(ns->v, cap * sizeof *nv);
		if (!nv)
			return -1;
		ns->v = nv;
		void **nm = realloc(ns->mem, cap * sizeof *nm);
		if (!nm)
			return -1;
		ns->mem = nm;
		ns->cap = cap;
	}
	/* One block: the tag pointers, then name, user and the tag text. */
	char *blk = malloc(nt * sizeof(char *) + ln + lu + lt + 1);
	if (!blk)
		return -1;
	const char **tagv = (const char **)blk;
	char *s = blk + nt * sizeof(char *);
	struct policy_node *nd = &ns->v[ns->n];
	memset(nd, 0, sizeof *nd);
	nd->id = id;
	nd->v4 = v4;
	if (v6) {
		nd->has_v6 = true;
		memcpy(nd->v6, v6, 16);
	}
	if (ln) {
		memcpy(s, name, ln);
		nd->name = s;
		s += ln;
	}
	if (lu) {
		memcpy(s, user, lu);
		nd->user = s;
		s += lu;
	}
	if (lt) {
		memcpy(s, tags, lt);
		for (char *t = s; *t;) {
			size_t k = strcspn(t, ",");
			bool last = t[k] == 0;
			t[k] = 0;
			/* only "tag:NAME": anything else would make the node
			 * "tagged" (no longer matched as its user) for nothing */
			if (k > 4 && !strncmp(t, "tag:", 4))
				tagv[nd->n_tags++] = t;
			t += k + !last;
		}
	}
	nd->tags = nd->n_tags ? tagv : NULL;
	ns->mem[ns->n++] = blk;
	return 0;
}

void ctl_policy_nodes_free(struct ctl_policy_nodes *ns)
{
	if (!ns)
		return;
	for (size_t i = 0; i < ns->n; i++)
		free(ns->mem[i]);
	free(ns->mem);
	free(ns->v);
	memset(ns, 0, sizeof *ns);
}

static int add_owner(void *arg, const struct ctl_node_owner *o)
{
	return ctl_policy_nodes_add(arg, (uint64_t)o->id, o->name, o->ipv4, o->ipv6,
	                            o->user, o->tags)
	           ? CTL_STORE_ENOMEM
	           : 0;
}

int ctl_policy_nodes_from_store(struct ctl_store *st, int64_t now,
                                struct ctl_policy_nodes *out)
{
	memset(out, 0, sizeof *out);
	int rc = ctl_store_node_owners(st, now, add_owner, out);
	if (rc)
		ctl_policy_nodes_free(out);
	return rc;
}

/* ---- validation ------------------------------------------------------ */

static void set_err(struct policy_error *e, const char *fmt, const char *a, const char *b)
{
	e->line = e->column = 0;
	snprintf(e->msg, sizeof e->msg, fmt, a, b);
}

static int copy_warnings(const struct policy *p, struct ctl_policy_result *res)
{
	size_t n = policy_n_warnings(p);
	if (!n)
		return 0;
	res->warnings = calloc(n, sizeof *res->warnings);
	if (!res->warnings)
		return -1;
	for (size_t i = 0; i < n; i++)
		res->warnings[i] = *policy_warning(p, i);
	res->n_warnings = n;
	return 0;
}

/* Adds the compile's warnings (tags a node carries that its user does not
 * own, dropped) after the parser's. */
static int add_compiled_warnings(const struct policy_compiled *cp,
                                 struct ctl_policy_result *res)
{
	size_t n = policy_compiled_n_warnings(cp);
	if (!n)
		return 0;
	struct policy_error *w =
	    realloc(res->warnings, (res->n_warnings + n) * sizeof *res->warnings);
	if (!w)
		return -1;
	res->warnings = w;
	for (size_t i = 0; i < n; i++)
		w[res->n_warnings + i] = *policy_compiled_warning(cp, i);
	res->n_warnings += n;
	return 0;
}

/* Every node's filter builds (within POLICY_FILTER_MAX_RANGES) and fits
 * in a map as the server sends it (CTL_FILTER_BLOCKS_MAX,
 * CTL_FILTER_RANGES_MAX, SRV_FILTER_BYTES_MAX: srv_filter_convert), so
 * that a policy the server would send as deny-all is refused here
 * (control review H3). A filter shared by many nodes is one object
 * (core/policy): checked once. */
static int build_filters(const struct policy_compiled *cp,
                         const struct policy_node *nodes, size_t n,
                         struct policy_error *err)
{
	const struct policy_filter **seen = calloc(n ? n : 1, sizeof *seen);
	struct policy_filter **held = calloc(n ? n : 1, sizeof *held);
	size_t n_seen = 0, n_over = 0, first_over = 0;
	int rc = 0;
	if (!seen || !held) {
		set_err(err, "%sout of memory%s", "", "");
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct policy_filter *f = policy_node_filter(cp, i, err);
		if (!f) {
			rc = -1;
			break;
		}
		bool met = false;
		for (size_t k = n_seen; k-- > 0 && !met;) /* few distinct filters */
			met = seen[k] == f;
		if (met) {
			policy_filter_free(f);
			continue;
		}
		struct ctl_filter cf;
		memset(&cf, 0, sizeof cf);
		int r = srv_filter_convert(f, &cf);
		srv_filter_clear(&cf);
		seen[n_seen] = f;
		held[n_seen++] = f; /* kept: a pointer stays unique */
		if (r == -ENOMEM) {
			set_err(err, "%sout of memory%s", "", "");
			rc = -1;
		} else if (r < 0 && !n_over++) {
			first_over = i;
		}
	}
	if (rc == 0 && n_over) {
		err->line = err->column = 0;
		char more[80] = "";
		if (n_over > 1)
			snprintf(more, sizeof more, " (and %zu other filters)", n_over - 1);
		snprintf(err->msg, sizeof err->msg,
		         "the filter of node %s%s would be more than a map carries (%u "
		         "source blocks, %u port ranges, %u bytes as sent): the server "
		         "would send it as deny-all. Name the sources of the rules that "
		         "reach it with fewer, wider selectors (a CIDR or a tag rather "
		         "than many users' nodes spread over the address range)",
		         nodes[first_over].name ? nodes[first_over].name : "?", more,
		         CTL_FILTER_BLOCKS_MAX, CTL_FILTER_RANGES_MAX, SRV_FILTER_BYTES_MAX);
		rc = -1;
	}
	for (size_t k = 0; held && k < n_seen; k++)
		policy_filter_free(held[k]);
	free(held);
	free(seen);
	return rc;
}

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds a made-up node (no address) for every user of the store that owns
 * no node in ns, so that the policy is checked against every user that
 * may join later, not only those with nodes: a host alias named like such
 * a user is refused now rather than when the user's first node joins
 * (control review M1). */
static int add_nodeless_users(struct ctl_store *st, struct ctl_policy_nodes *ns)
{
	struct ctl_user *us = NULL;
	size_t nu = 0;
	int rc = ctl_store_user_list(st, &us, &nu);
	if (rc < 0)
		return rc;
	const char **have = malloc((ns->n ? ns->n : 1) * sizeof *have);
	if (!have) {
		free(us);
		return CTL_STORE_ENOMEM;
	}
	size_t nh = 0;
	for (size_t i = 0; i < ns->n; i++)
		if (ns->v[i].user)
			have[nh++] = ns->v[i].user;
	qsort(have, nh, sizeof *have, cmp_cstr);
	for (size_t i = 0; i < nu && rc == 0; i++) {
		const char *name = us[i].name;
		if (bsearch(&name, have, nh, sizeof *have, cmp_cstr))
			continue;
		char label[CTL_NAME_MAX + 40];
		snprintf(label, sizeof label, "none yet: user %s has no node", name);
		if (ctl_policy_nodes_add(ns, UINT64_MAX - i, label, 0, NULL, name, NULL) <
		    0)
			rc = CTL_STORE_ENOMEM;
	}
	free(have);
	free(us);
	return rc;
}

int ctl_policy_validate(struct ctl_store *st, const char *text, size_t len,
                        struct ctl_policy_result *res)
{
	struct ctl_policy_nodes ns;
	memset(res, 0, sizeof *res);
	if (len > POLICY_MAX_BYTES) {
		snprintf(res->error.msg, sizeof res->error.msg,
		         "the policy is %zu bytes, over the limit of %d (1 MiB); say the "
		         "same with groups, tags and hosts",
		         len, POLICY_MAX_BYTES);
		return CTL_POLICY_REJECTED;
	}
	int rc = ctl_policy_nodes_from_store(st, (int64_t)time(NULL), &ns);
	if (rc < 0)
		return rc;
	res->n_nodes = ns.n;
	size_t n_real = ns.n;
	if ((rc = add_nodeless_users(st, &ns)) < 0) {
		ctl_policy_nodes_free(&ns);
		return rc;
	}
	struct policy *p = policy_parse(text, len, &res->error);
	struct policy_compiled *cp = NULL;
	rc = CTL_POLICY_REJECTED;
	if (!p)
		goto out;
	policy_get_stats(p, &res->stats);
	if (copy_warnings(p, res)) {
		set_err(&res->error, "%sout of memory%s", "", "");
		goto out;
	}
	cp = policy_compile(p, ns.v, ns.n, &res->error);
	if (!cp || policy_run_tests(cp, &res->tests_passed, &res->error) ||
	    build_filters(cp, ns.v, n_real, &res->error))
		goto out;
	if (add_compiled_warnings(cp, res)) {
		set_err(&res->error, "%sout of memory%s", "", "");
		goto out;
	}
	rc = 0;
out:
	policy_compiled_free(cp);
	policy_free(p);
	ctl_policy_nodes_free(&ns);
	return rc;
}

void ctl_policy_result_free(struct ctl_policy_result *res)
{
	if (!res)
		return;
	free(res->warnings);
	res->warnings = NULL;
	res->n_warnings = 0;
}

/* ---- users and tags -------------------------------------------------- */

/* The stored policy compiled for one made-up node of user with tags
 * (addresses from the mesh's range, never compared with real ones).
 * 0 with *p and *cp set (both NULL when no policy is set);
 * CTL_POLICY_REJECTED with msg when it does not compile; <0 store error. */
static int compile_one(struct ctl_store *st, const char *user, const char *tags,
                       struct policy **p, struct policy_compiled **cp, int64_t *rev,
                       char *msg, size_t cap)
{
	struct ctl_policy_rec rec;
	struct ctl_policy_nodes ns = {0};
	struct policy_error err;
	char e[700];
	*p = NULL;
	*cp = NULL;
	int rc = ctl_store_policy_get(st, &rec);
	if (rc == CTL_STORE_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	*rev = rec.revision;
	*p = policy_parse(rec.text, rec.len, &err);
	ctl_policy_rec_free(&rec);
	if (*p && ctl_policy_nodes_add(&ns, 1, "new-node", CTL_V4_PREFIX + 1, NULL, user,
	                               tags) < 0) {
		policy_free(*p);
		*p = NULL;
		return CTL_STORE_ENOMEM;
	}
	if (*p)
		*cp = policy_compile(*p, ns.v, ns.n, &err);
	ctl_policy_nodes_free(&ns);
	if (*cp)
		return 0;
	policy_error_format(&err, e, sizeof e);
	snprintf(msg, cap, "the stored policy (revision %lld) %s: %s", (long long)*rev,
	         *p ? "would not compile with it" : "does not parse", e);
	policy_free(*p);
	*p = NULL;
	return CTL_POLICY_REJECTED;
}

int ctl_policy_check_key_tags(struct ctl_store *st, const char *user, const char *tags,
                              char *msg, size_t cap)
{
	struct policy *p;
	struct policy_compiled *cp;
	int64_t rev = 0;
	if (!tags || !*tags)
		return 0;
	int rc = compile_one(st, user, tags, &p, &cp, &rev, msg, cap);
	if (rc || !p)
		return rc;
	size_t want = strcspn(tags, ","); /* the first tag, for the messages */
	if (!user || !*user) {
		snprintf(msg, cap,
		         "%.*s: under the policy (revision %lld) a tag counts only on a "
		         "node whose user owns it (tagOwners), and a key without a user "
		         "owns none: give the key a user who owns its tags",
		         (int)want, tags, (long long)rev);
		rc = CTL_POLICY_REJECTED;
	} else {
		const char *const *ok;
		size_t n_ok = policy_node_tags(cp, 0, &ok);
		for (const char *t = tags; *t && rc == 0;) {
			size_t k = strcspn(t, ",");
			bool owned = k == 0;
			for (size_t i = 0; i < n_ok && !owned; i++)
				owned = strlen(ok[i]) == k && !strncmp(ok[i], t, k);
			if (!owned) {
				snprintf(
				    msg, cap,
				    "%.*s: user %s does not own it under the policy's "
				    "tagOwners (revision %lld): add \"%s@\" (or a "
				    "group %s is in) to \"%.*s\" in tagOwners and set "
				    "the policy again, or leave the tag out",
				    (int)k, t, user, (long long)rev, user, user, (int)k,
				    t);
				rc = CTL_POLICY_REJECTED;
			}
			t += k + (t[k] == ',');
		}
	}
	policy_compiled_free(cp);
	policy_free(p);
	return rc;
}

int ctl_policy_check_new_user(struct ctl_store *st, const char *name, char *msg,
                              size_t cap)
{
	struct policy *p;
	struct policy_compiled *cp;
	int64_t rev = 0;
	int rc = compile_one(st, name, NULL, &p, &cp, &rev, msg, cap);
	policy_compiled_free(cp);
	policy_free(p);
	return rc;
}

bool ctl_policy_user_arg(const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	if (n && name[n - 1] == '@')
		n--;
	if (n > CTL_NAME_MAX || n >= cap)
		return false;
	memcpy(out, name, n);
	out[n] = 0;
	return true;
}
