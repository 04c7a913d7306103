/* mesh-control's admin API: the access policy and users (see admin.h).
 *
 *   GET    /api/v1/policy        {"policy": TEXT, "revision": N, "set_at": T}
 *                                 or 404 when none is set
 *   PUT    /api/v1/policy        body: the policy text as `policy set` reads
 *                                 it; validated against the store's nodes
 *                                 (policy_srv.c), then stored:
 *                                 {"revision", "tests_passed", "warnings"},
 *                                 or 400 {"error": "line L, column C: ...",
 *                                 "line", "column"} and nothing changed
 *   DELETE /api/v1/policy        {"cleared": true, "revision": N} or 404
 *   POST   /api/v1/policy/check  body: a policy text; validated, not stored:
 *                                 {"ok": true, "tests_passed", "warnings",
 *                                 "rules", "nodes"} or 400 as PUT
 *   GET    /api/v1/users         [{"name", "nodes", "created"}]
 *   POST   /api/v1/users         {"name": "alice"} -> the user
 *   DELETE /api/v1/users/NAME    {"name", "deleted": true}; 409 while the
 *                                 user owns nodes or unrevoked keys
 * Warnings are "line L, column C: text" strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/policy/policy.h"
#include "servers/control/admin_int.h"
#include "servers/control/policy_srv.h"
#include "servers/control/store.h"

static json_t *warnings_json(const struct ctl_policy_result *res)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < res->n_warnings; i++) {
		char m[700];
		policy_error_format(&res->warnings[i], m, sizeof m);
		/* jansson refuses invalid UTF-8: the message quotes the file */
		json_t *w = json_string(m);
		if (!w)
			w = json_string("(a warning that is not valid UTF-8)");
		json_array_append_new(arr, w);
	}
	return arr;
}

static void reply_rejected(struct adm_req *r, const struct ctl_policy_result *res,
                           bool check)
{
	char m[700];
	policy_error_format(&res->error, m, sizeof m);
	json_t *j = json_pack("{s:s,s:i,s:i}", "error", m, "line", res->error.line,
	                      "column", res->error.column);
	if (!j) /* not valid UTF-8 */
		j = json_pack("{s:s,s:i,s:i}", "error",
		              "the policy is refused (its "
		              "message is not valid UTF-8)",
		              "line", res->error.line, "column", res->error.column);
	if (j && check)
		json_object_set_new(j, "ok", json_false());
	if (j)
		json_object_set_new(j, "warnings", warnings_json(res));
	ctl_adm_reply(r->req, 400, j);
}

/* The request body as policy text; NULL after replying 400 when empty. */
static const char *policy_body(struct adm_req *r, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	*len = evbuffer_get_length(in);
	const char *p = *len ? (const char *)evbuffer_pullup(in, -1) : NULL;
	if (!p)
		ctl_adm_error(r->req, 400,
		              *len ? "out of memory"
		                   : "request body: expected the policy text (HuJSON, as "
		                     "`mesh-control policy set FILE` takes it)");
	return p;
}

static void policy_get(struct adm_req *r)
{
	struct ctl_policy_rec rec;
	int rc = ctl_store_policy_get(r->a->cfg.store, &rec);
	if (rc == CTL_STORE_ENOTFOUND) {
		ctl_adm_error(r->req, 404,
		              "no policy is set (every node may reach every other); PUT "
		              "/api/v1/policy sets one");
		return;
	}
	if (rc < 0) {
		ctl_adm_store_error(r, rc);
		return;
	}
	ctl_adm_reply(r->req, 200,
	              json_pack("{s:s%,s:I,s:I}", "policy", rec.text, rec.len, "revision",
	                        (json_int_t)rec.revision, "set_at",
	                        (json_int_t)rec.set_at));
	ctl_policy_rec_free(&rec);
}

/* PUT (store) and POST .../check (validate only). */
static void policy_put(struct adm_req *r, bool check)
{
	struct ctl_store *st = r->a->cfg.store;
	struct ctl_policy_result res;
	size_t len;
	const char *text = policy_body(r, &len);
	if (!text)
		return;
	int rc = ctl_policy_validate(st, text, len, &res);
	int64_t rev = 0;
	if (rc == CTL_POLICY_REJECTED)
		reply_rejected(r, &res, check);
	else if (rc < 0)
		ctl_adm_store_error(r, rc);
	else if (check)
		ctl_adm_reply(r->req, 200,
		              json_pack("{s:b,s:I,s:o,s:I,s:I}", "ok", 1, "tests_passed",
		                        (json_int_t)res.tests_passed, "warnings",
		                        warnings_json(&res), "rules",
		                        (json_int_t)res.stats.rules, "nodes",
		                        (json_int_t)res.n_nodes));
	else if ((rc = ctl_store_policy_set(st, text, len, r->now, &rev)) < 0)
		ctl_adm_store_error(r, rc);
	else {
		ctl_adm_changed(r->a);
		ctl_adm_reply(r->req, 200,
		              json_pack("{s:I,s:I,s:o}", "revision", (json_int_t)rev,
		                        "tests_passed", (json_int_t)res.tests_passed,
		                        "warnings", warnings_json(&res)));
	}
	ctl_policy_result_free(&res);
}

static void policy_delete(struct adm_req *r)
{
	struct ctl_store *st = r->a->cfg.store;
	struct ctl_policy_rec rec;
	int rc = ctl_store_policy_get(st, &rec);
	int64_t rev = rc == 0 ? rec.revision : 0;
	ctl_policy_rec_free(&rec);
	if (rc == 0)
		rc = ctl_store_policy_clear(st);
	if (rc == CTL_STORE_ENOTFOUND) {
		ctl_adm_error(r->req, 404, "no policy is set; nothing changed");
		return;
	}
	if (rc < 0) {
		ctl_adm_store_error(r, rc);
		return;
	}
	ctl_adm_changed(r->a);
	ctl_adm_reply(r->req, 200,
	              json_pack("{s:b,s:I}", "cleared", 1, "revision", (json_int_t)rev));
}

/* ---- users ----------------------------------------------------------- */

static void users_list(struct adm_req *r)
{
	struct ctl_user *us;
	size_t n;
	int rc = ctl_store_user_list(r->a->cfg.store, &us, &n);
	if (rc < 0) {
		ctl_adm_store_error(r, rc);
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(
		        arr, json_pack("{s:s,s:I,s:I}", "name", us[i].name, "nodes",
		                       (json_int_t)us[i].n_nodes, "created",
		                       (json_int_t)us[i].created))) {
			json_decref(arr);
			arr = NULL;
		}
	free(us);
	ctl_adm_reply(r->req, 200, arr);
}

static void users_create(struct adm_req *r)
{
	struct ctl_store *st = r->a->cfg.store;
	json_t *body = ctl_adm_body(r, false);
	const char *arg = NULL;
	char name[CTL_NAME_MAX + 1], msg[800], err[1000];
	json_error_t e;
	struct ctl_user u;

	if (!body)
		return;
	if (json_unpack_ex(body, &e, JSON_STRICT, "{s:s}", "name", &arg) < 0) {
		snprintf(err, sizeof err,
		         "request body: %s (expected {\"name\": \"alice\"})", e.text);
		ctl_adm_error(r->req, 400, err);
	} else if (!ctl_policy_user_arg(arg, name, sizeof name)) {
		ctl_adm_error(r->req, 400, "name: 1 to 63 of a-z, 0-9, '.', '_' and '-'");
	} else {
		int rc = ctl_policy_check_new_user(st, name, msg, sizeof msg);
		if (rc == CTL_POLICY_REJECTED) {
			snprintf(err, sizeof err,
			         "user %s: %s; change the policy first; no user created",
			         name, msg);
			ctl_adm_error(r->req, 409, err);
		} else if (rc < 0 ||
		           (rc = ctl_store_user_create(st, name, r->now, &u)) < 0) {
			ctl_adm_store_error(r, rc);
		} else {
			ctl_adm_reply(r->req, 200,
			              json_pack("{s:s,s:I,s:I}", "name", u.name, "nodes",
			                        (json_int_t)0, "created",
			                        (json_int_t)u.created));
		}
	}
	json_decref(body);
}

static void users_delete(struct adm_req *r)
{
	char name[CTL_NAME_MAX + 1], err[400];
	if (!ctl_policy_user_arg(r->seg[1], name, sizeof name)) {
		snprintf(err, sizeof err, "no user \"%.80s\"", r->seg[1]);
		ctl_adm_error(r->req, 404, err);
		return;
	}
	int rc = ctl_store_user_remove(r->a->cfg.store, name);
	if (rc == CTL_STORE_EINVAL) {
		snprintf(err, sizeof err, "no user \"%s\" (not a user name)", name);
		ctl_adm_error(r->req, 404, err);
	} else if (rc < 0) {
		ctl_adm_store_error(r, rc); /* 404, or 409 with what it still owns */
	} else {
		ctl_adm_reply(r->req, 200,
		              json_pack("{s:s,s:b}", "name", name, "deleted", 1));
	}
}

void ctl_adm_route_policy(struct adm_req *r)
{
	enum evhttp_cmd_type c = r->cmd;
	bool get = c == EVHTTP_REQ_GET || c == EVHTTP_REQ_HEAD;
	bool policy = !strcmp(r->seg[0], "policy");

	if (policy && r->nseg == 1) {
		if (get)
			policy_get(r);
		else if (c == EVHTTP_REQ_PUT)
			policy_put(r, false);
		else if (c == EVHTTP_REQ_DELETE)
			policy_delete(r);
		else
			ctl_adm_method(r, "GET, PUT, DELETE");
	} else if (policy && r->nseg == 2 && !strcmp(r->seg[1], "check")) {
		if (c == EVHTTP_REQ_POST)
			policy_put(r, true);
		else
			ctl_adm_method(r, "POST");
	} else if (!policy && r->nseg == 1) {
		if (get)
			users_list(r);
		else if (c == EVHTTP_REQ_POST)
			users_create(r);
		else
			ctl_adm_method(r, "GET, POST");
	} else if (!policy && r->nseg == 2) {
		if (c == EVHTTP_REQ_DELETE)
			users_delete(r);
		else
			ctl_adm_method(r, "DELETE");
	} else {
		ctl_adm_error(
		    r->req, 404,
		    "no such endpoint (see /api/v1/policy, /api/v1/policy/check, "
		    "/api/v1/users)");
	}
}
