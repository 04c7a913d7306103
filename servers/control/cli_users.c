/* mesh-control's users and stored-policy commands (see cli_int.h):
 *   users create NAME | list [--json] | remove NAME
 *   policy set FILE | get [--json] | clear
 * A policy is validated against the store's nodes before it is stored
 * (policy_srv.c): a rejected one changes nothing. A running `serve` reads
 * the store's map version and picks up the change. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/policy/policy.h"
#include "core/util/utf8.h"
#include "servers/control/cli_int.h"
#include "servers/control/cli_util.h"
#include "servers/control/policy_srv.h"
#include "servers/control/store.h"

static int store_fail(struct ctl_store *st, int r)
{
	fprintf(stderr, "mesh-control: %s\n",
	        r == CTL_STORE_ENOMEM ? "out of memory" : ctl_store_errmsg(st));
	return r == CTL_STORE_EINVAL ? 2 : 1;
}

static int print_json(json_t *j)
{
	int r = j ? json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : -1;
	json_decref(j);
	if (r < 0) {
		fprintf(stderr, "mesh-control: out of memory\n");
		return 1;
	}
	printf("\n");
	return 0;
}

/* A user argument: "alice" or the policy's "alice@". */
static int user_arg(const char *arg, char *out, size_t cap)
{
	if (!ctl_policy_user_arg(arg, out, cap) || !*out)
		return ctl_cli_die_usage(
		    "%s: expected a user name such as alice (1 to 63 "
		    "of a-z, 0-9, '.', '_', '-')",
		    arg);
	return 0;
}

/* --- users -------------------------------------------------------------- */

static int users_create(struct ctl_store *st, const char *arg)
{
	char name[CTL_NAME_MAX + 1], msg[800];
	int r = user_arg(arg, name, sizeof name);
	if (r)
		return r;
	r = ctl_policy_check_new_user(st, name, msg, sizeof msg);
	if (r == CTL_POLICY_REJECTED) {
		char clean[900];
		utf8_clean(msg, clean, sizeof clean, UTF8_FOR_TERMINAL);
		fprintf(
		    stderr,
		    "mesh-control: user %s: %s; change the policy first (`mesh-control "
		    "policy get`, then `policy set`); no user created\n",
		    name, clean);
		return 1;
	}
	if (r < 0)
		return store_fail(st, r);
	struct ctl_user u;
	r = ctl_store_user_create(st, name, (int64_t)time(NULL), &u);
	if (r < 0)
		return store_fail(st, r);
	printf("created user %s\n", u.name);
	fprintf(
	    stderr,
	    "mesh-control: join tokens for %s's devices: mesh-control token --user %s "
	    "(the policy names this user as \"%s@\")\n",
	    u.name, u.name, u.name);
	return 0;
}

static int users_list(const struct cli *c, struct ctl_store *st)
{
	struct ctl_user *us;
	size_t n;
	int r = ctl_store_user_list(st, &us, &n);
	if (r < 0)
		return store_fail(st, r);
	json_t *arr = (c->seen & O_JSON) ? json_array() : NULL;
	if (!arr && n)
		printf("%-24s %-6s %s\n", "NAME", "NODES", "CREATED");
	for (size_t i = 0; i < n; i++) {
		char cre[32];
		ctl_cli_fmt_time(cre, sizeof cre, us[i].created);
		if (arr)
			json_array_append_new(
			    arr, json_pack("{s:s,s:I,s:I}", "name", us[i].name, "nodes",
			                   (json_int_t)us[i].n_nodes, "created",
			                   (json_int_t)us[i].created));
		else
			printf("%-24s %-6lld %s\n", us[i].name, (long long)us[i].n_nodes,
			       cre);
	}
	free(us);
	if (!arr && !n)
		fprintf(stderr,
		        "mesh-control: no users yet; create one with `mesh-control "
		        "users create NAME`\n");
	return arr ? print_json(arr) : 0;
}

static int users_remove(struct ctl_store *st, const char *arg)
{
	char name[CTL_NAME_MAX + 1];
	int r = user_arg(arg, name, sizeof name);
	if (r)
		return r;
	r = ctl_store_user_remove(st, name);
	if (r == CTL_STORE_EEXISTS) {
		fprintf(
		    stderr,
		    "mesh-control: %s (see `mesh-control nodes list` and `mesh-control "
		    "keys list`; `nodes remove ID`, `keys revoke ID`); nothing changed\n",
		    ctl_store_errmsg(st));
		return 1;
	}
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(stderr,
		        "mesh-control: no user %s; see `mesh-control users list`\n",
		        name);
		return 1;
	}
	if (r < 0)
		return store_fail(st, r);
	printf("removed user %s\n", name);
	return 0;
}

int ctl_cli_cmd_users(const struct cli *c, struct ctl_store *st, const char *sub,
                      const char *arg)
{
	if (!strcmp(sub, "create"))
		return users_create(st, arg);
	if (!strcmp(sub, "remove"))
		return users_remove(st, arg);
	return users_list(c, st);
}

/* --- the stored policy --------------------------------------------------- */

static void print_error(const char *file, const struct policy_error *e, const char *what)
{
	char msg[700], clean[800];
	policy_error_format(e, msg, sizeof msg);
	utf8_clean(msg, clean, sizeof clean, UTF8_FOR_TERMINAL);
	fprintf(stderr, "mesh-control: %s: %s%s\n", file, what, clean);
}

/* What is stored now, for "nothing changed" messages. */
static void print_current(struct ctl_store *st)
{
	struct ctl_policy_rec rec;
	if (ctl_store_policy_get(st, &rec) == 0)
		fprintf(stderr,
		        "mesh-control: policy not set; nothing changed (the stored "
		        "policy is still revision %lld)\n",
		        (long long)rec.revision);
	else
		fprintf(stderr,
		        "mesh-control: policy not set; nothing changed (no policy "
		        "is set: every node may reach every other)\n");
	ctl_policy_rec_free(&rec);
}

static int policy_set(struct ctl_store *st, const char *file)
{
	size_t len;
	struct ctl_policy_result res;
	char *text = ctl_cli_read_policy(file, &len);
	if (!text) {
		print_current(st);
		return 1;
	}
	int r = ctl_policy_validate(st, text, len, &res);
	for (size_t i = 0; i < res.n_warnings; i++)
		print_error(file, &res.warnings[i], "warning: ");
	if (r == CTL_POLICY_REJECTED) {
		print_error(file, &res.error, "");
		print_current(st);
	} else if (r < 0) {
		store_fail(st, r);
	}
	int64_t rev = 0;
	if (r == 0 &&
	    (r = ctl_store_policy_set(st, text, len, (int64_t)time(NULL), &rev)))
		store_fail(st, r);
	free(text);
	if (r) {
		ctl_policy_result_free(&res);
		return 1;
	}
	printf("policy set: revision %lld; %zu rule%s, %zu test check%s passed, compiled "
	       "for %zu node%s\n",
	       (long long)rev, res.stats.rules, res.stats.rules == 1 ? "" : "s",
	       res.tests_passed, res.tests_passed == 1 ? "" : "s", res.n_nodes,
	       res.n_nodes == 1 ? "" : "s");
	fprintf(stderr,
	        "mesh-control: every node now reaches only what the policy allows; a "
	        "running `mesh-control serve` sends each node its new filter\n");
	ctl_policy_result_free(&res);
	return 0;
}

static int policy_get(const struct cli *c, struct ctl_store *st)
{
	struct ctl_policy_rec rec;
	int r = ctl_store_policy_get(st, &rec);
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(stderr,
		        "mesh-control: no policy is set (every node may reach every "
		        "other); set one with `mesh-control policy set FILE`\n");
		return 1;
	}
	if (r < 0)
		return store_fail(st, r);
	if (c->seen & O_JSON) {
		r = print_json(json_pack("{s:s%,s:I,s:I}", "policy", rec.text, rec.len,
		                         "revision", (json_int_t)rec.revision, "set_at",
		                         (json_int_t)rec.set_at));
	} else if (fwrite(rec.text, 1, rec.len, stdout) != rec.len || fflush(stdout)) {
		fprintf(stderr,
		        "mesh-control: cannot write the policy to standard output\n");
		r = 1;
	}
	ctl_policy_rec_free(&rec);
	return r;
}

static int policy_clear(struct ctl_store *st)
{
	struct ctl_policy_rec rec;
	int r = ctl_store_policy_get(st, &rec);
	int64_t rev = r == 0 ? rec.revision : 0;
	ctl_policy_rec_free(&rec);
	if (r == 0)
		r = ctl_store_policy_clear(st);
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(stderr, "mesh-control: no policy is set; nothing changed\n");
		return 1;
	}
	if (r < 0)
		return store_fail(st, r);
	printf("policy cleared (it was revision %lld)\n", (long long)rev);
	fprintf(stderr, "mesh-control: with no policy every node may reach every other "
	                "node again\n");
	return 0;
}

int ctl_cli_cmd_policy_store(const struct cli *c, struct ctl_store *st, const char *sub,
                             const char *arg)
{
	if (!strcmp(sub, "set"))
		return policy_set(st, arg);
	if (!strcmp(sub, "get"))
		return policy_get(c, st);
	return policy_clear(st);
}
