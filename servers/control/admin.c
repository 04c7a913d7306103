/* mesh-control's HTTP admin API (see admin.h): libevent's evhttp on the
 * configured address, JSON via jansson, every request authenticated with an
 * API key from the store before anything else is looked at.
 *
 * Before authentication: libevent's evhttp reads a request's headers and
 * body before it calls us, so both are bounded (16 KiB of headers, 64 KiB
 * of body: a longer Content-Length gets libevent's 413 before any of the
 * body is read, a chunked body is cut off there), and so are the
 * connections (CTL_ADMIN_MAX_CONNS, http_conns.c): at most about 5 MiB
 * for anyone who can reach the port. A request with two Content-Lengths,
 * or with one and Transfer-Encoding, is refused (400, connection closed):
 * a proxy in front might frame it differently than libevent does.
 *
 * Replies (200 unless an error): nodes list -> [node...]; node get,
 * approve, rename, expire -> the node after the change; node DELETE ->
 * {"id","name","deleted":true}; keys list -> [key...] (ctl_json_authkey);
 * keys POST -> {"key": {...}, "secret": "mkey-...", "token": "mesh1..."}
 * (token null if no control_host/port is configured; it lists every
 * control address, control_more after control_host); keys DELETE ->
 * {"id","revoked":true}; status -> {"map_version","nodes","nodes_approved",
 * "server": ctl_server_stats fields or null}. A node in the path is its ID
 * or its name. HEAD is answered like GET. */
#include "servers/control/admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <netdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/control/msg.h"
#include "core/control/token.h"
#include "core/util/http_conns.h"
#include "servers/control/admin_int.h"
#include "servers/control/cli_util.h"
#include "servers/control/json_util.h"
#include "servers/control/policy_srv.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

/* ---- replies --------------------------------------------------------- */

/* Sends j (reference stolen) with code; a NULL j (out of memory) is a 500. */
static void adm_reply(struct evhttp_request *req, int code, json_t *j)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (!text) {
		code = 500;
		text = strdup("{\"error\":\"out of memory\"}");
	}
	if (b && text) {
		evbuffer_add(b, text, strlen(text));
		evbuffer_add(b, "\n", 1);
	}
	if (text) {
		/* Replies may carry a secret (POST /api/v1/keys). */
		sodium_memzero(text, strlen(text));
		free(text);
	}
	evhttp_send_reply(req, code, NULL, b);
	if (b)
		evbuffer_free(b);
}

static void adm_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void adm_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (code == 401)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "WWW-Authenticate", "Bearer realm=\"mesh-control\"");
	adm_reply(req, code, json_pack("{s:s}", "error", msg));
}

static void adm_store_error(struct adm_req *r, int rc)
{
	struct ctl_store *st = r->a->cfg.store;
	if (rc == CTL_STORE_EINVAL)
		adm_error(r->req, 400, "%s", ctl_store_errmsg(st));
	else if (rc == CTL_STORE_ENOTFOUND)
		adm_error(r->req, 404, "%s", ctl_store_errmsg(st));
	else if (rc == CTL_STORE_EEXISTS)
		adm_error(r->req, 409, "%s", ctl_store_errmsg(st));
	else
		adm_error(r->req, 500, "store: %s", ctl_store_errmsg(st));
}

static void adm_method(struct adm_req *r, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", allow);
	adm_error(r->req, 405, "method not allowed here; allowed: %s", allow);
}

/* Weak: a program that links the admin API without the node server (its
 * unit test, server = NULL) does not pull server.o out of libmesh.a. */
extern void ctl_server_notify(struct ctl_server *s) __attribute__((weak));
extern void ctl_server_get_stats(const struct ctl_server *s,
                                 struct ctl_server_stats *st) __attribute__((weak));

static void adm_changed(struct ctl_admin *a)
{
	if (a->cfg.server && ctl_server_notify)
		ctl_server_notify(a->cfg.server);
}

/* ---- request parsing ------------------------------------------------- */

/* The body as a JSON object: NULL after replying 400 if it is not one. An
 * empty body is {} when empty_ok. */
static json_t *adm_body(struct adm_req *r, bool empty_ok)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	json_error_t e;

	if (len == 0) {
		if (empty_ok)
			return json_object();
		adm_error(r->req, 400, "request body: expected a JSON object");
		return NULL;
	}
	const char *p = (const char *)evbuffer_pullup(in, -1);
	json_t *j = p ? json_loadb(p, len, JSON_REJECT_DUPLICATES, &e) : NULL;
	if (!j) {
		adm_error(r->req, 400, "request body: bad JSON at line %d column %d: %s",
		          e.line, e.column, e.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		adm_error(r->req, 400, "request body: expected a JSON object");
		return NULL;
	}
	return j;
}

/* For admin_policy.c (admin_int.h). */
void ctl_adm_reply(struct evhttp_request *req, int code, json_t *j)
{
	adm_reply(req, code, j);
}

void ctl_adm_error(struct evhttp_request *req, int code, const char *msg)
{
	adm_error(req, code, "%s", msg);
}

void ctl_adm_store_error(struct adm_req *r, int rc)
{
	adm_store_error(r, rc);
}

void ctl_adm_method(struct adm_req *r, const char *allow)
{
	adm_method(r, allow);
}

void ctl_adm_changed(struct ctl_admin *a)
{
	adm_changed(a);
}

json_t *ctl_adm_body(struct adm_req *r, bool empty_ok)
{
	return adm_body(r, empty_ok);
}

/* "Bearer <secret>" -> secret (cap bytes); false if absent or malformed. */
static bool adm_bearer(struct evhttp_request *req, char *out, size_t cap)
{
	const char *h =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	size_t n = strcspn(h, " \t\r\n");
	if (n == 0 || n >= cap || h[n + strspn(h + n, " \t")] != 0)
		return false;
	memcpy(out, h, n);
	out[n] = 0;
	return true;
}

/* Splits "/api/v1/a/b/c" into segments; false if not under /api/v1 or
 * too deep or long (a 404). */
static bool adm_split(struct adm_req *r)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->req);
	const char *p = u ? evhttp_uri_get_path(u) : NULL;
	static const char prefix[] = "/api/v1/";

	if (!p || strncmp(p, prefix, sizeof prefix - 1) != 0)
		return false;
	p += sizeof prefix - 1;
	r->nseg = 0;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n > ADM_SEG_MAX || r->nseg == ADM_MAX_SEGS)
			return false;
		memcpy(r->seg[r->nseg], p, n);
		r->seg[r->nseg++][n] = 0;
		p += n;
		if (*p == '/')
			p++; /* a trailing slash is tolerated */
	}
	return r->nseg > 0;
}

static bool adm_id(const char *s, int64_t *id)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s || v <= 0 || s[0] == '+' || s[0] == ' ')
		return false;
	*id = (int64_t)v;
	return true;
}

/* ---- nodes ----------------------------------------------------------- */

static json_t *adm_node_json(struct adm_req *r, const struct ctl_node *nd)
{
	struct ctl_meta m;
	const char *domain = CTL_DEFAULT_DOMAIN;
	if (ctl_store_get_meta(r->a->cfg.store, &m) == 0)
		domain = m.domain;
	return ctl_json_node(nd, domain, r->now);
}

static void adm_nodes_list(struct adm_req *r)
{
	struct ctl_store *st = r->a->cfg.store;
	struct ctl_meta m;
	struct ctl_node *ns;
	size_t n;
	int rc = ctl_store_get_meta(st, &m);
	if (rc == 0)
		rc = ctl_store_node_list(st, 0, &ns, &n);
	if (rc < 0) {
		adm_store_error(r, rc);
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, ctl_json_node(&ns[i], m.domain, r->now))) {
			json_decref(arr);
			arr = NULL;
		}
	free(ns);
	adm_reply(r->req, 200, arr);
}

/* The node named by seg[1] (an ID, or a name as in the CLI); false after
 * replying 404 / 500. */
static bool adm_find_node(struct adm_req *r, struct ctl_node *nd)
{
	struct ctl_store *st = r->a->cfg.store;
	const char *arg = r->seg[1];
	int64_t id;
	int rc = CTL_STORE_ENOTFOUND;

	if (adm_id(arg, &id))
		rc = ctl_store_node_by_id(st, id, nd);
	if (rc == CTL_STORE_ENOTFOUND && strlen(arg) <= CTL_NAME_MAX)
		rc = ctl_store_node_by_name(st, arg, nd);
	if (rc == CTL_STORE_ENOTFOUND || rc == CTL_STORE_EINVAL) {
		adm_error(r->req, 404, "no node with ID or name \"%s\"", arg);
		return false;
	}
	if (rc < 0) {
		adm_store_error(r, rc);
		return false;
	}
	return true;
}

/* As `nodes approve`: a pending node (by ID or name) only with the key
 * fingerprint its device printed; false after replying 409. */
static bool adm_approve_ok(struct adm_req *r, const struct ctl_node *nd, const char *fpr)
{
	char want[CTL_KEY_FPR_LEN + 1];
	ctl_key_fpr(nd->machine_key, want);
	if (fpr && strcasecmp(fpr, want) != 0) {
		adm_error(r->req, 409,
		          "node %lld (%s) has a different key than %s: not the device "
		          "that printed it; nothing approved",
		          (long long)nd->id, nd->name, fpr);
		return false;
	}
	if (nd->approved || fpr)
		return true;
	adm_error(r->req, 409,
	          "node %lld (%s) is waiting for approval: approve it with "
	          "{\"key\": \"<the key its device printed>\"} (GET "
	          "/api/v1/nodes/%lld shows it)",
	          (long long)nd->id, nd->name, (long long)nd->id);
	return false;
}

static void adm_node_action(struct adm_req *r, const char *act)
{
	struct ctl_store *st = r->a->cfg.store;
	struct ctl_node *nd = malloc(sizeof *nd);
	json_t *body = NULL;
	const char *name = NULL, *fpr = NULL;
	json_error_t e;
	int rc;

	if (!nd) {
		adm_error(r->req, 500, "out of memory");
		return;
	}
	if (!strcmp(act, "approve")) { /* optional {"key": "<fingerprint>"} */
		if (!(body = adm_body(r, true)))
			goto out;
		if (json_unpack_ex(body, &e, JSON_STRICT, "{s?s}", "key", &fpr) < 0) {
			adm_error(r->req, 400,
			          "request body: %s (expected nothing, or {\"key\": "
			          "\"<the key the node printed>\"})",
			          e.text);
			goto out;
		}
	}
	if (!strcmp(act, "rename")) {
		if (!(body = adm_body(r, false)))
			goto out;
		if (json_unpack_ex(body, &e, JSON_STRICT, "{s:s}", "name", &name) < 0) {
			adm_error(r->req, 400,
			          "request body: %s (expected {\"name\": \"web\"})",
			          e.text);
			goto out;
		}
	}
	if (!adm_find_node(r, nd))
		goto out;
	if (!strcmp(act, "approve") && !adm_approve_ok(r, nd, fpr))
		goto out;
	if (!strcmp(act, "approve"))
		rc = ctl_store_node_approve(st, nd->id);
	else if (!strcmp(act, "expire"))
		rc = ctl_store_node_expire(st, nd->id, r->now);
	else if (!strcmp(act, "delete"))
		rc = ctl_store_node_remove(st, nd->id);
	else
		rc = ctl_store_node_rename(st, nd->id, name);
	if (rc == CTL_STORE_EEXISTS) {
		adm_error(r->req, 409, "the name %s is taken; pick another", name);
		goto out;
	}
	if (rc < 0) {
		adm_store_error(r, rc);
		goto out;
	}
	adm_changed(r->a);
	if (!strcmp(act, "delete")) {
		adm_reply(r->req, 200,
		          json_pack("{s:I,s:s,s:b}", "id", (json_int_t)nd->id, "name",
		                    nd->name, "deleted", 1));
		goto out;
	}
	rc = ctl_store_node_by_id(st, nd->id, nd);
	if (rc < 0)
		adm_store_error(r, rc);
	else
		adm_reply(r->req, 200, adm_node_json(r, nd));
out:
	json_decref(body);
	free(nd);
}

static void adm_node_get(struct adm_req *r)
{
	struct ctl_node *nd = malloc(sizeof *nd);
	if (!nd)
		adm_error(r->req, 500, "out of memory");
	else if (adm_find_node(r, nd))
		adm_reply(r->req, 200, adm_node_json(r, nd));
	free(nd);
}

/* ---- auth keys ------------------------------------------------------- */

static void adm_keys_list(struct adm_req *r)
{
	struct ctl_authkey *ks;
	size_t n;
	int rc = ctl_store_key_list(r->a->cfg.store, &ks, &n);
	if (rc < 0) {
		adm_store_error(r, rc);
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, ctl_json_authkey(&ks[i], r->now))) {
			json_decref(arr);
			arr = NULL;
		}
	free(ks);
	adm_reply(r->req, 200, arr);
}

/* tags: a JSON array of strings or a comma list -> "tag:a,tag:b". */
static bool adm_tags(json_t *v, char *out, size_t cap)
{
	char joined[CTL_STORE_TAGS_MAX + 1] = "";
	size_t len = 0, i;
	json_t *it;

	if (json_is_string(v)) {
		if (json_string_length(v) >= sizeof joined)
			return false;
		snprintf(joined, sizeof joined, "%s", json_string_value(v));
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, it)
		{
			if (!json_is_string(it))
				return false;
			int w = snprintf(joined + len, sizeof joined - len, "%s%s",
			                 i ? "," : "", json_string_value(it));
			if (w < 0 || (size_t)w >= sizeof joined - len)
				return false;
			len += (size_t)w;
		}
	} else {
		return false;
	}
	if (!joined[0]) {
		out[0] = 0;
		return true;
	}
	return ctl_cli_norm_tags(joined, out, cap) && !strpbrk(out, " \t");
}

/* Under a stored policy, a key's tags must be owned by its user; false
 * after replying 409 (or 500). */
static bool adm_key_owner(struct adm_req *r, const char *user, const char *tags)
{
	char msg[800];
	int rc = ctl_policy_check_key_tags(r->a->cfg.store, user, tags, msg, sizeof msg);
	if (rc == CTL_POLICY_REJECTED)
		adm_error(r->req, 409, "%s; no key made", msg);
	else if (rc < 0)
		adm_store_error(r, rc);
	return rc == 0;
}

static void adm_keys_create(struct adm_req *r)
{
	struct ctl_admin *a = r->a;
	json_t *body = adm_body(r, true), *exp = NULL, *tags = NULL, *reply;
	int reusable = 0, ephemeral = 0, rc;
	char tagbuf[CTL_STORE_TAGS_MAX + 1], tokstr[CTL_TOKEN_STR_MAX] = "";
	struct ctl_authkey_params p = {.now = r->now};
	struct ctl_token tok = {0};
	struct ctl_authkey k;
	json_error_t e;
	json_t *user = NULL;
	char userbuf[CTL_NAME_MAX + 1];

	if (!body)
		return;
	if (json_unpack_ex(body, &e, JSON_STRICT, "{s?b,s?b,s?o,s?o,s?o}", "reusable",
	                   &reusable, "ephemeral", &ephemeral, "expiry", &exp, "tags",
	                   &tags, "user", &user) < 0) {
		adm_error(r->req, 400, "request body: %s", e.text);
		goto out;
	}
	if (exp && !json_is_null(exp)) {
		int64_t d =
		    json_is_string(exp) ? ctl_cli_parse_dur(json_string_value(exp)) : -1;
		if (d < 0) {
			adm_error(r->req, 400,
			          "expiry: expected a duration such as \"30s\", \"10m\", "
			          "\"2h\" or \"7d\" (at most 3650d), or null for never");
			goto out;
		}
		p.expiry = r->now + d;
	}
	if (tags && !json_is_null(tags)) {
		if (!adm_tags(tags, tagbuf, sizeof tagbuf)) {
			adm_error(
			    r->req, 400,
			    "tags: expected a list such as [\"tag:web\", \"tag:ci\"] "
			    "(no spaces, at most 255 characters in all)");
			goto out;
		}
		p.tags = tagbuf;
	}
	if (user && !json_is_null(user)) {
		if (!json_is_string(user) ||
		    !ctl_policy_user_arg(json_string_value(user), userbuf,
		                         sizeof userbuf) ||
		    !userbuf[0]) {
			adm_error(r->req, 400,
			          "user: expected a user name such as \"alice\" (GET "
			          "/api/v1/users lists them)");
			goto out;
		}
		p.user = userbuf;
	}
	if (!adm_key_owner(r, p.user, p.tags))
		goto out;
	p.reusable = reusable;
	p.ephemeral = ephemeral;
	rc =
	    ctl_store_key_create(a->cfg.store, &p, tok.auth_key, sizeof tok.auth_key, &k);
	if (rc == CTL_STORE_ENOTFOUND && p.user) {
		adm_error(r->req, 400,
		          "user %s: no such user; create it first (POST /api/v1/users "
		          "{\"name\": \"%s\"})",
		          p.user, p.user);
		goto out;
	}
	if (rc < 0) {
		adm_store_error(r, rc);
		goto out;
	}
	if (a->cfg.control_host[0] && a->cfg.control_port) {
		snprintf(tok.host, sizeof tok.host, "%.253s", a->cfg.control_host);
		tok.port = a->cfg.control_port;
		for (size_t i = 0;
		     i < a->cfg.n_control_more && i < CTL_TOKEN_ADDRS_MAX - 1; i++)
			tok.more[tok.n_more++] = a->cfg.control_more[i];
		memcpy(tok.server_key, a->cfg.server_public, CTL_TOKEN_KEY_LEN);
		rc = ctl_token_encode(&tok, tokstr, sizeof tokstr);
		if (rc < 0) {
			ctl_store_key_revoke(a->cfg.store, k.id);
			adm_error(r->req, 500, "%s", ctl_token_strerror(rc));
			goto out;
		}
	}
	reply = json_pack("{s:o,s:s,s:s?}", "key", ctl_json_authkey(&k, r->now), "secret",
	                  tok.auth_key, "token", tokstr[0] ? tokstr : NULL);
	adm_changed(a);
	adm_reply(r->req, 200, reply);
out:
	ctl_token_wipe(&tok);
	sodium_memzero(tokstr, sizeof tokstr);
	json_decref(body);
}

static void adm_keys_revoke(struct adm_req *r)
{
	int64_t id;
	if (!adm_id(r->seg[1], &id)) {
		adm_error(r->req, 404, "no auth key \"%s\" (expected a key ID)",
		          r->seg[1]);
		return;
	}
	int rc = ctl_store_key_revoke(r->a->cfg.store, id);
	if (rc == CTL_STORE_ENOTFOUND) {
		adm_error(r->req, 404, "no auth key %lld", (long long)id);
		return;
	}
	if (rc < 0) {
		adm_store_error(r, rc);
		return;
	}
	adm_changed(r->a);
	adm_reply(r->req, 200,
	          json_pack("{s:I,s:b}", "id", (json_int_t)id, "revoked", 1));
}

/* ---- status ---------------------------------------------------------- */

static json_t *adm_stats_json(const struct ctl_server_stats *s)
{
	return json_pack(
	    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
	    "s:I,s:I,s:f,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "conns_active", (json_int_t)s->conns_active, "conns_total",
	    (json_int_t)s->conns_total, "conns_refused_limit",
	    (json_int_t)s->conns_refused_limit, "nodes_online",
	    (json_int_t)s->nodes_online, "handshakes_ok", (json_int_t)s->handshakes_ok,
	    "handshakes_failed", (json_int_t)s->handshakes_failed, "registrations_ok",
	    (json_int_t)s->registrations_ok, "registrations_pending",
	    (json_int_t)s->registrations_pending, "registrations_refused",
	    (json_int_t)s->registrations_refused, "maps_full", (json_int_t)s->maps_full,
	    "maps_delta", (json_int_t)s->maps_delta, "broadcasts",
	    (json_int_t)s->broadcasts, "bad_frames", (json_int_t)s->bad_frames,
	    "bad_messages", (json_int_t)s->bad_messages, "idle_closed",
	    (json_int_t)s->idle_closed, "slow_closed", (json_int_t)s->slow_closed,
	    "bytes_in", (json_int_t)s->bytes_in, "bytes_out", (json_int_t)s->bytes_out,
	    "map_version", (json_int_t)s->map_version, "last_full_ms", s->last_full_ms,
	    "last_full_bytes", (json_int_t)s->last_full_bytes, "last_broadcast_ms",
	    s->last_broadcast_ms, "registrations_retry",
	    (json_int_t)s->registrations_retry, "pending_ignored",
	    (json_int_t)s->pending_ignored, "frames_too_big",
	    (json_int_t)s->frames_too_big, "conns_refused_source",
	    (json_int_t)s->conns_refused_source, "conns_evicted",
	    (json_int_t)s->conns_evicted, "accept_paused", (json_int_t)s->accept_paused);
}

/* What node-driven writes cost: ENDPOINTS that changed nothing, writes
 * replaced before they were written, and the store transactions (and
 * nodes) they took. */
static void adm_stats_writes(json_t *j, const struct ctl_server_stats *s)
{
	if (!j)
		return;
	json_object_set_new(j, "writes_unchanged",
	                    json_integer((json_int_t)s->writes_unchanged));
	json_object_set_new(j, "writes_coalesced",
	                    json_integer((json_int_t)s->writes_coalesced));
	json_object_set_new(j, "store_batches",
	                    json_integer((json_int_t)s->store_batches));
	json_object_set_new(j, "store_batch_nodes",
	                    json_integer((json_int_t)s->store_batch_nodes));
	/* what repeating itself gets a peer: handshakes closed unanswered
	 * (over the rate), registrations told to slow down, and reconnects
	 * that cost no transaction of their own */
	json_object_set_new(j, "handshakes_limited",
	                    json_integer((json_int_t)s->handshakes_limited));
	json_object_set_new(j, "registrations_throttled",
	                    json_integer((json_int_t)s->registrations_throttled));
	json_object_set_new(j, "registrations_batched",
	                    json_integer((json_int_t)s->registrations_batched));
	/* several servers on one store: which one answers, its beats */
	json_object_set_new(j, "server_id", json_integer((json_int_t)s->server_id));
	json_object_set_new(j, "beat_failures", json_integer((json_int_t)s->beat_failures));
	json_object_set_new(j, "nodes_swept", json_integer((json_int_t)s->nodes_swept));
}

static void adm_status(struct adm_req *r)
{
	int64_t v = 0, n = 0, approved = 0;
	int rc = ctl_store_map_version(r->a->cfg.store, &v);
	if (rc == 0) /* counts only: not every node's 6 KB record */
		rc = ctl_store_node_counts(r->a->cfg.store, &n, &approved);
	if (rc < 0) {
		adm_store_error(r, rc);
		return;
	}
	json_t *srv = NULL;
	if (r->a->cfg.server && ctl_server_get_stats) {
		struct ctl_server_stats s;
		memset(&s, 0, sizeof s);
		ctl_server_get_stats(r->a->cfg.server, &s);
		srv = adm_stats_json(&s);
		adm_stats_writes(srv, &s);
	}
	adm_reply(r->req, 200,
	          json_pack("{s:I,s:I,s:I,s:o?}", "map_version", (json_int_t)v, "nodes",
	                    (json_int_t)n, "nodes_approved", (json_int_t)approved,
	                    "server", srv));
}

/* ---- dispatch -------------------------------------------------------- */

static bool adm_auth(struct adm_req *r)
{
	char secret[CTL_SECRET_MAX];
	if (!adm_bearer(r->req, secret, sizeof secret)) {
		adm_error(r->req, 401,
		          "missing or malformed API key: send Authorization: Bearer "
		          "mapi-... (make one with `mesh-control apikeys create`)");
		return false;
	}
	int rc = ctl_store_apikey_check(r->a->cfg.store, secret, r->now, NULL);
	sodium_memzero(secret, sizeof secret);
	if (rc == CTL_STORE_EKEY_UNKNOWN)
		adm_error(r->req, 401, "unknown API key");
	else if (rc == CTL_STORE_EKEY_REVOKED)
		adm_error(r->req, 401, "API key revoked");
	else if (rc < 0)
		adm_store_error(r, rc);
	return rc == 0;
}

static void adm_route(struct adm_req *r)
{
	bool get = r->cmd == EVHTTP_REQ_GET || r->cmd == EVHTTP_REQ_HEAD;
	bool post = r->cmd == EVHTTP_REQ_POST, del = r->cmd == EVHTTP_REQ_DELETE;
	const char *s0 = r->seg[0];

	if (!strcmp(s0, "policy") || !strcmp(s0, "users")) {
		ctl_adm_route_policy(r); /* admin_policy.c */
	} else if (!strcmp(s0, "nodes") && r->nseg == 1) {
		if (get)
			adm_nodes_list(r);
		else
			adm_method(r, "GET");
	} else if (!strcmp(s0, "nodes") && r->nseg == 2) {
		if (get)
			adm_node_get(r);
		else if (del)
			adm_node_action(r, "delete");
		else
			adm_method(r, "GET, DELETE");
	} else if (!strcmp(s0, "nodes") && r->nseg == 3 &&
	           (!strcmp(r->seg[2], "approve") || !strcmp(r->seg[2], "rename") ||
	            !strcmp(r->seg[2], "expire"))) {
		if (post)
			adm_node_action(r, r->seg[2]);
		else
			adm_method(r, "POST");
	} else if (!strcmp(s0, "keys") && r->nseg == 1) {
		if (get)
			adm_keys_list(r);
		else if (post)
			adm_keys_create(r);
		else
			adm_method(r, "GET, POST");
	} else if (!strcmp(s0, "keys") && r->nseg == 2) {
		if (del)
			adm_keys_revoke(r);
		else
			adm_method(r, "DELETE");
	} else if (!strcmp(s0, "status") && r->nseg == 1) {
		if (get)
			adm_status(r);
		else
			adm_method(r, "GET");
	} else {
		adm_error(r->req, 404,
		          "no such endpoint (see GET /api/v1/nodes, "
		          "/api/v1/keys, /api/v1/users, /api/v1/policy, /api/v1/status)");
	}
}

/* Two Content-Lengths, or one with Transfer-Encoding: libevent took the
 * first length, or chunked; a proxy in front may have framed the request
 * otherwise (request smuggling). Refused with 400 and the connection
 * closed, before authentication. */
static bool adm_framing_ok(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	int cl = 0, te = 0;
	for (kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
		cl += !strcasecmp(kv->key, "Content-Length");
		te += !strcasecmp(kv->key, "Transfer-Encoding");
	}
	if (cl <= 1 && !(cl && te))
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	adm_error(req, 400,
	          cl > 1 ? "more than one Content-Length header"
	                 : "both Content-Length and Transfer-Encoding; send one");
	return false;
}

static void adm_request(struct evhttp_request *req, void *arg)
{
	struct adm_req *r = calloc(1, sizeof *r);
	if (!r) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	r->a = arg;
	r->req = req;
	struct evhttp_connection *hc = evhttp_request_get_connection(req);
	struct bufferevent *bev = hc ? evhttp_connection_get_bufferevent(hc) : NULL;
	if (bev) /* its deadline for the next request starts again */
		http_conns_served(r->a->conns, (int)bufferevent_getfd(bev));
	r->cmd = evhttp_request_get_command(req);
	r->now = (int64_t)time(NULL);
	if (!adm_framing_ok(req))
		goto out;
	if (!adm_auth(r))
		goto out;
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > ADM_MAX_BODY)
		adm_error(req, 413, "request body over %d bytes", ADM_MAX_BODY);
	else if (!adm_split(r))
		adm_error(req, 404, "no such endpoint (the API is under /api/v1/)");
	else
		adm_route(r);
out:
	free(r);
}

/* ---- lifecycle ------------------------------------------------------- */

static void adm_fmt_addr(const struct sockaddr_storage *ss, socklen_t len, char *out,
                         size_t cap)
{
	char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
	getnameinfo((const struct sockaddr *)ss, len, host, sizeof host, port,
	            sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(out, cap, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

struct ctl_admin *ctl_admin_new(const struct ctl_admin_config *cfg, char *err,
                                size_t errlen)
{
	char where[NI_MAXHOST + NI_MAXSERV + 4];
	int one = 1;

	adm_fmt_addr(&cfg->listen, cfg->listen_len, where, sizeof where);
	if (!cfg->base || !cfg->store || !cfg->listen_len) {
		snprintf(err, errlen, "admin API: missing event base, store or address");
		return NULL;
	}
	struct ctl_admin *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "admin API: out of memory");
		return NULL;
	}
	a->cfg = *cfg;
	int fd =
	    socket(cfg->listen.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (const struct sockaddr *)&cfg->listen, cfg->listen_len) < 0 ||
	    listen(fd, 128) < 0) {
		int e = errno;
		snprintf(err, errlen, "admin API %s: %s%s", where, strerror(e),
		         e == EADDRINUSE ? " (is another mesh-control running?)" : "");
		if (fd >= 0)
			close(fd);
		free(a);
		return NULL;
	}
	a->local_len = sizeof a->local;
	getsockname(fd, (struct sockaddr *)&a->local, &a->local_len);
	a->http = evhttp_new(cfg->base);
	struct evhttp_bound_socket *bound =
	    a->http ? evhttp_accept_socket_with_handle(a->http, fd) : NULL;
	if (bound)
		a->conns =
		    http_conns_new(cfg->base, evhttp_bound_socket_get_listener(bound),
		                  CTL_ADMIN_MAX_CONNS, "mesh-control: admin API");
	if (!a->http || !bound || !a->conns) {
		snprintf(err, errlen, "admin API %s: cannot start the HTTP server",
		         where);
		if (!bound)
			close(fd);
		http_conns_free(a->conns);
		if (a->http)
			evhttp_free(a->http);
		free(a);
		return NULL;
	}
	evhttp_set_bevcb(a->http, http_conns_bevcb, a->conns);
	evhttp_set_allowed_methods(
	    a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                 EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(a->http, ADM_MAX_BODY);
	evhttp_set_max_headers_size(a->http, ADM_MAX_HEADER);
	evhttp_set_timeout(a->http, ADM_TIMEOUT_S);
	http_conns_set_write_timeout(a->conns, ADM_TIMEOUT_S);
	evhttp_set_gencb(a->http, adm_request, a);
	return a;
}

void ctl_admin_free(struct ctl_admin *a)
{
	if (!a)
		return;
	http_conns_free(a->conns);
	evhttp_free(a->http);
	free(a);
}

void ctl_admin_local(const struct ctl_admin *a, struct sockaddr_storage *ss,
                     socklen_t *len)
{
	memcpy(ss, &a->local, sizeof *ss);
	*len = a->local_len;
}
