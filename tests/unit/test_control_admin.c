/* mesh-control's HTTP admin API (admin.h) on 127.0.0.1:0 with a temporary
 * store and no node server: authentication (missing, wrong, malformed and
 * revoked keys get 401 before any routing), nodes (list, get, approve,
 * rename with 409 on a taken name, expire, delete), auth keys (create with a
 * join token that decodes to the secret, list without secrets, revoke),
 * status, and the errors (404, 405, 413, 400). Also the apikeys CLI's exit
 * codes. The client is a raw blocking socket; the server's event loop is
 * run until the reply is complete. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/control/msg.h"
#include "core/control/token.h"
#include "servers/control/admin.h"
#include "servers/control/store.h"
#include "store_fixture.h"

struct t {
	char tmp[64];
	char dir[96];
	struct test_store ts; /* SQLite, or PostgreSQL under MESH_TEST_PG_URL */
	struct ctl_store *st;
	struct event_base *base;
	struct ctl_admin *adm;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char key[CTL_SECRET_MAX];  /* a valid API key */
	char auth[CTL_SECRET_MAX]; /* an auth key nodes register with */
	int64_t n1, n2, n3;        /* nodes: two approved, one pending */
};

struct resp {
	int code;
	char head[4096];
	json_t *j; /* parsed body (NULL if not JSON) */
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static int64_t add_node(struct t *t, uint8_t i, const char *host, const char *secret)
{
	struct ctl_store_reg r = {
	    .hostname = host, .auth_secret = secret, .now = (int64_t)time(NULL)};
	struct ctl_node *nd = malloc(sizeof *nd);
	memset(r.machine_key, i, CTL_KEY_LEN);
	memset(r.node_key, i + 100, CTL_KEY_LEN);
	memset(r.disco_key, i + 200, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &r, nd, NULL), 0);
	int64_t id = nd->id;
	free(nd);
	return id;
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	char err[256] = "";
	strcpy(t->tmp, "/tmp/ctladmin-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	t->st = test_store_open_fresh(&t->ts, t->dir);
	test_store_write_dir(&t->ts); /* the CLI opens by directory */
	struct ctl_init_params ip = {.now = (int64_t)time(NULL)};
	memset(ip.server_public, 0x5a, sizeof ip.server_public);
	assert_int_equal(ctl_store_init(t->st, &ip), 0);
	assert_int_equal(
	    ctl_store_apikey_create(t->st, "test", ip.now, t->key, sizeof t->key, NULL),
	    0);
	struct ctl_authkey_params kp = {.reusable = true, .now = ip.now};
	assert_int_equal(ctl_store_key_create(t->st, &kp, t->auth, sizeof t->auth, NULL),
	                 0);
	t->n1 = add_node(t, 1, "alpha", t->auth);
	t->n2 = add_node(t, 2, "beta", t->auth);
	t->n3 = add_node(t, 3, "gamma", NULL);

	t->base = event_base_new();
	struct ctl_admin_config c = {.base = t->base, .store = t->st, .server = NULL};
	struct sockaddr_in *sin = (struct sockaddr_in *)&c.listen;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c.listen_len = sizeof *sin;
	snprintf(c.control_host, sizeof c.control_host, "198.18.0.1");
	c.control_port = 7443;
	memset(c.server_public, 0x5a, sizeof c.server_public);
	t->adm = ctl_admin_new(&c, err, sizeof err);
	if (!t->adm)
		fail_msg("ctl_admin_new: %s", err);
	ctl_admin_local(t->adm, &t->addr, &t->addrlen);
	assert_int_not_equal(((struct sockaddr_in *)&t->addr)->sin_port, 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_admin_free(t->adm);
	event_base_free(t->base);
	ctl_store_close(t->st);
	test_store_drop(&t->ts);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* Sends raw bytes, runs the loop until the server closes, parses. */
static void raw(struct t *t, const char *req, size_t len, struct resp *out)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&t->addr, t->addrlen), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	size_t sent = 0, got = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (sent < len) {
			ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
			if (w > 0)
				sent += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				sent = len; /* the server may close early (413) */
		}
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
		ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		if (r > 0) {
			got += (size_t)r;
			if (got + 1 == cap)
				buf = realloc(buf, cap *= 2);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 5)
			fail_msg("no complete reply in 5 s");
		if (r < 0)
			usleep(200);
	}
	close(fd);
	buf[got] = 0;
	memset(out, 0, sizeof *out);
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &out->code), 1);
	char *body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	snprintf(out->head, sizeof out->head, "%.*s", (int)(body - buf), buf);
	out->j = json_loads(body + 4, 0, NULL);
	free(buf);
}

/* A request with Connection: close; auth NULL sends no Authorization. */
static int req(struct t *t, const char *method, const char *path, const char *auth,
               const char *body, struct resp *out)
{
	size_t blen = body ? strlen(body) : 0;
	char *r = malloc(blen + 1024);
	int n = snprintf(r, 1024,
	                 "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                 "%s%s%sContent-Length: %zu\r\n\r\n",
	                 method, path, auth ? "Authorization: " : "", auth ? auth : "",
	                 auth ? "\r\n" : "", blen);
	if (body)
		memcpy(r + n, body, blen);
	raw(t, r, (size_t)n + blen, out);
	free(r);
	return out->code;
}

/* An authenticated request; returns the status. */
static int call(struct t *t, const char *method, const char *path, const char *body,
                struct resp *out)
{
	char auth[CTL_SECRET_MAX + 16];
	snprintf(auth, sizeof auth, "Bearer %s", t->key);
	return req(t, method, path, auth, body, out);
}

static const char *err_text(const struct resp *r)
{
	json_t *e = json_object_get(r->j, "error");
	assert_true(json_is_string(e));
	return json_string_value(e);
}

static void done(struct resp *r)
{
	json_decref(r->j);
	r->j = NULL;
}

static void auth_is_required(void **state)
{
	struct t *t = *state;
	struct resp r;
	char a[CTL_SECRET_MAX + 16];

	assert_int_equal(req(t, "GET", "/api/v1/nodes", NULL, NULL, &r), 401);
	assert_non_null(strstr(err_text(&r), "API key"));
	assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
	assert_non_null(strstr(r.head, "application/json"));
	done(&r);
	/* Unknown routes are not revealed without a key. */
	assert_int_equal(req(t, "GET", "/nope", NULL, NULL, &r), 401);
	done(&r);
	assert_int_equal(req(t, "GET", "/api/v1/nodes", "Basic dXNlcjpwYXNz", NULL, &r),
	                 401);
	done(&r);
	assert_int_equal(req(t, "GET", "/api/v1/nodes", "Bearer", NULL, &r), 401);
	done(&r);
	snprintf(a, sizeof a, "Bearer %s", t->key);
	a[strlen(a) - 1] ^= 1;
	assert_int_equal(req(t, "GET", "/api/v1/nodes", a, NULL, &r), 401);
	assert_string_equal(err_text(&r), "unknown API key");
	done(&r);
	snprintf(a, sizeof a, "Bearer %s", t->auth); /* an auth key is no API key */
	assert_int_equal(req(t, "GET", "/api/v1/nodes", a, NULL, &r), 401);
	done(&r);
	snprintf(a, sizeof a, "bearer  %s", t->key); /* scheme is case-blind */
	assert_int_equal(req(t, "GET", "/api/v1/nodes", a, NULL, &r), 200);
	done(&r);

	/* A second key works until revoked; then 401 "revoked". */
	char k2[CTL_SECRET_MAX];
	struct ctl_apikey info;
	assert_int_equal(ctl_store_apikey_create(t->st, NULL, 0, k2, sizeof k2, &info),
	                 0);
	snprintf(a, sizeof a, "Bearer %s", k2);
	assert_int_equal(req(t, "GET", "/api/v1/status", a, NULL, &r), 200);
	done(&r);
	assert_int_equal(ctl_store_apikey_revoke(t->st, info.id), 0);
	assert_int_equal(req(t, "GET", "/api/v1/status", a, NULL, &r), 401);
	assert_non_null(strstr(err_text(&r), "revoked"));
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/status", NULL, &r), 200);
	done(&r);
}

static json_t *find_id(json_t *arr, int64_t id)
{
	size_t i;
	json_t *it;
	json_array_foreach(arr, i, it) if (json_integer_value(json_object_get(
	                                       it, "id")) == id) return it;
	return NULL;
}

static void nodes_endpoints(void **state)
{
	struct t *t = *state;
	struct resp r;
	char path[128];
	int64_t v0, v1;

	assert_int_equal(call(t, "GET", "/api/v1/nodes", NULL, &r), 200);
	assert_true(json_is_array(r.j));
	assert_int_equal(json_array_size(r.j), 3);
	json_t *a = find_id(r.j, t->n1);
	assert_non_null(a);
	const char *fields[] = {"id",       "name",      "fqdn",    "hostname",
	                        "ipv4",     "ipv6",      "online",  "last_seen",
	                        "approved", "ephemeral", "expiry",  "expired",
	                        "tags",     "user",      "created", "key"};
	assert_int_equal(json_object_size(a), sizeof fields / sizeof *fields);
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
		assert_non_null(json_object_get(a, fields[i]));
	assert_string_equal(json_string_value(json_object_get(a, "name")), "alpha");
	assert_string_equal(json_string_value(json_object_get(a, "fqdn")),
	                    "alpha.mesh.internal");
	assert_true(json_is_true(json_object_get(a, "approved")));
	assert_true(json_is_false(json_object_get(find_id(r.j, t->n3), "approved")));
	done(&r);

	/* Get by ID and by name; unknown is 404. */
	snprintf(path, sizeof path, "/api/v1/nodes/%lld", (long long)t->n2);
	assert_int_equal(call(t, "GET", path, NULL, &r), 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "name")), "beta");
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/nodes/gamma", NULL, &r), 200);
	assert_int_equal(json_integer_value(json_object_get(r.j, "id")), t->n3);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/nodes/999", NULL, &r), 404);
	assert_non_null(strstr(err_text(&r), "999"));
	done(&r);

	/* A pending node by bare name or bare ID: refused (409), as with a
	 * key that is not its own; with its key: approved (below). */
	assert_int_equal(call(t, "POST", "/api/v1/nodes/gamma/approve", NULL, &r), 409);
	assert_non_null(strstr(err_text(&r), "waiting for approval"));
	done(&r);
	snprintf(path, sizeof path, "/api/v1/nodes/%lld/approve", (long long)t->n3);
	assert_int_equal(call(t, "POST", path, NULL, &r), 409);
	assert_non_null(strstr(err_text(&r), "\"key\""));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/nodes/gamma/approve",
	                      "{\"key\": \"0000000000000000\"}", &r),
	                 409);
	done(&r);
	struct ctl_node g;
	char fb[CTL_KEY_FPR_LEN + 1], body[64];
	assert_int_equal(ctl_store_node_by_id(t->st, t->n3, &g), 0);
	assert_false(g.approved);
	ctl_key_fpr(g.machine_key, fb);
	assert_int_equal(call(t, "GET", "/api/v1/nodes/gamma", NULL, &r), 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "key")), fb);
	done(&r);

	/* Approve the pending node; the map version moves. */
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	snprintf(body, sizeof body, "{\"key\": \"%s\"}", fb);
	assert_int_equal(call(t, "POST", "/api/v1/nodes/gamma/approve", body, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "approved")));
	done(&r);
	snprintf(path, sizeof path, "/api/v1/nodes/%lld/approve", (long long)t->n3);
	assert_int_equal(call(t, "POST", path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "approved")));
	done(&r);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_true(v1 > v0);
	assert_int_equal(call(t, "POST", "/api/v1/nodes/999/approve", NULL, &r), 404);
	done(&r);

	/* Rename: ok, taken (409), bad name, bad bodies (400). */
	snprintf(path, sizeof path, "/api/v1/nodes/%lld/rename", (long long)t->n3);
	assert_int_equal(call(t, "POST", path, "{\"name\": \"web\"}", &r), 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "name")), "web");
	assert_string_equal(json_string_value(json_object_get(r.j, "fqdn")),
	                    "web.mesh.internal");
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"name\": \"alpha\"}", &r), 409);
	assert_non_null(strstr(err_text(&r), "taken"));
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"name\": \"Not A Label!\"}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"name\": 5}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"nom\": \"x\"}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"name\": \"x\", \"extra\": 1}", &r),
	                 400);
	done(&r);
	assert_int_equal(call(t, "POST", path, "{\"name\": ", &r), 400);
	assert_non_null(strstr(err_text(&r), "bad JSON"));
	done(&r);
	assert_int_equal(call(t, "POST", path, "[1,2]", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", path, NULL, &r), 400);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/nodes/web", NULL, &r), 200);
	done(&r);

	/* Expire. */
	snprintf(path, sizeof path, "/api/v1/nodes/%lld/expire", (long long)t->n2);
	assert_int_equal(call(t, "POST", path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "expired")));
	done(&r);

	/* Delete; then it is gone. */
	snprintf(path, sizeof path, "/api/v1/nodes/%lld", (long long)t->n1);
	assert_int_equal(call(t, "DELETE", path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "deleted")));
	done(&r);
	assert_int_equal(call(t, "GET", path, NULL, &r), 404);
	done(&r);
	assert_int_equal(call(t, "DELETE", path, NULL, &r), 404);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/nodes", NULL, &r), 200);
	assert_int_equal(json_array_size(r.j), 2);
	done(&r);
}

static void keys_endpoints(void **state)
{
	struct t *t = *state;
	struct resp r;
	char path[64], secret[CTL_SECRET_MAX];

	assert_int_equal(call(t, "POST", "/api/v1/keys",
	                      "{\"reusable\": true, \"ephemeral\": false, "
	                      "\"expiry\": \"24h\", \"tags\": [\"tag:a\", \"b\"]}",
	                      &r),
	                 200);
	json_t *k = json_object_get(r.j, "key");
	assert_true(json_is_object(k));
	int64_t id = json_integer_value(json_object_get(k, "id"));
	assert_true(id > 0);
	assert_true(json_is_true(json_object_get(k, "reusable")));
	assert_string_equal(json_string_value(json_object_get(k, "tags")), "tag:a,tag:b");
	int64_t exp = json_integer_value(json_object_get(k, "expiry"));
	assert_true(exp > (int64_t)time(NULL) + 86000 && exp <= time(NULL) + 86400);
	snprintf(secret, sizeof secret, "%s",
	         json_string_value(json_object_get(r.j, "secret")));
	assert_int_equal(strncmp(secret, "mkey-", 5), 0);
	const char *tokstr = json_string_value(json_object_get(r.j, "token"));
	assert_non_null(tokstr);
	struct ctl_token tok;
	assert_int_equal(ctl_token_decode(tokstr, strlen(tokstr), &tok), 0);
	assert_string_equal(tok.host, "198.18.0.1");
	assert_int_equal(tok.port, 7443);
	assert_string_equal(tok.auth_key, secret);
	for (int i = 0; i < 32; i++)
		assert_int_equal(tok.server_key[i], 0x5a);
	done(&r);
	struct ctl_authkey ak;
	assert_int_equal(ctl_store_key_use(t->st, secret, (int64_t)time(NULL), &ak), 0);
	assert_int_equal(ak.id, id);

	/* Defaults: an empty body is a single-use key. */
	assert_int_equal(call(t, "POST", "/api/v1/keys", NULL, &r), 200);
	k = json_object_get(r.j, "key");
	assert_true(json_is_false(json_object_get(k, "reusable")));
	assert_int_equal(json_integer_value(json_object_get(k, "expiry")), 0);
	done(&r);

	/* Refusals. */
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"expiry\": \"soon\"}", &r),
	                 400);
	assert_non_null(strstr(err_text(&r), "expiry"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"tags\": [\"a b\"]}", &r),
	                 400);
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"tags\": [1]}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"reusable\": \"yes\"}", &r),
	                 400);
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"colour\": \"red\"}", &r),
	                 400);
	done(&r);

	/* List: never a secret. */
	assert_int_equal(call(t, "GET", "/api/v1/keys", NULL, &r), 200);
	assert_true(json_is_array(r.j));
	assert_int_equal(json_array_size(r.j), 3); /* setup's key and two here */
	char *dump = json_dumps(r.j, 0);
	assert_null(strstr(dump, secret + 5));
	assert_null(strstr(dump, "secret"));
	free(dump);
	json_t *mine = find_id(r.j, id);
	assert_non_null(mine);
	assert_int_equal(json_integer_value(json_object_get(mine, "uses")), 1);
	assert_string_equal(json_string_value(json_object_get(mine, "state")), "valid");
	done(&r);

	/* Revoke. */
	snprintf(path, sizeof path, "/api/v1/keys/%lld", (long long)id);
	assert_int_equal(call(t, "DELETE", path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "revoked")));
	done(&r);
	assert_int_equal(ctl_store_key_use(t->st, secret, (int64_t)time(NULL), NULL),
	                 CTL_STORE_EKEY_REVOKED);
	assert_int_equal(call(t, "DELETE", "/api/v1/keys/999", NULL, &r), 404);
	done(&r);
	assert_int_equal(call(t, "DELETE", "/api/v1/keys/abc", NULL, &r), 404);
	done(&r);
	ctl_token_wipe(&tok);
}

/* A policy through the API: the tags of alpha's key make it a tag:web
 * server of alice's; bob owns nothing. */
static const char api_policy[] =
    "// web servers\n"
    "{\n"
    "  \"tagOwners\": {\"tag:web\": [\"alice@\"]},\n"
    "  \"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": "
    "[\"tag:web:443\"]}],\n"
    "  \"tests\": [{\"src\": \"alice@\", \"accept\": [\"tag:web:443\"], \"deny\": "
    "[\"tag:web:22\"]}],\n"
    "}\n";

static void policy_and_users_endpoints(void **state)
{
	struct t *t = *state;
	struct resp r;
	int64_t v0, v1;

	/* Users: create (also as "bob@"), list, refusals. */
	assert_int_equal(call(t, "GET", "/api/v1/users", NULL, &r), 200);
	assert_int_equal(json_array_size(r.j), 0);
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", "{\"name\": \"alice\"}", &r),
	                 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "name")), "alice");
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", "{\"name\": \"bob@\"}", &r),
	                 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "name")), "bob");
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", "{\"name\": \"alice\"}", &r),
	                 409);
	assert_non_null(strstr(err_text(&r), "exists"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", "{\"name\": \"Al Ice\"}", &r),
	                 400);
	assert_non_null(strstr(err_text(&r), "starting with a letter"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", "{\"nom\": \"x\"}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/users", NULL, &r), 400);
	done(&r);

	/* Keys with a user: the node registered with it is the user's. */
	assert_int_equal(call(t, "POST", "/api/v1/keys",
	                      "{\"user\": \"alice@\", \"tags\": [\"web\"]}", &r),
	                 200);
	json_t *k = json_object_get(r.j, "key");
	assert_string_equal(json_string_value(json_object_get(k, "user")), "alice");
	char secret[CTL_SECRET_MAX];
	snprintf(secret, sizeof secret, "%s",
	         json_string_value(json_object_get(r.j, "secret")));
	done(&r);
	int64_t web = add_node(t, 9, "web", secret);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"user\": \"carol\"}", &r),
	                 400);
	assert_non_null(strstr(err_text(&r), "no such user"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"user\": 7}", &r), 400);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/users", NULL, &r), 200);
	assert_int_equal(json_array_size(r.j), 2);
	json_t *u0 = json_array_get(r.j, 0);
	assert_string_equal(json_string_value(json_object_get(u0, "name")), "alice");
	assert_int_equal(json_integer_value(json_object_get(u0, "nodes")), 1);
	assert_true(json_integer_value(json_object_get(u0, "created")) > 0);
	done(&r);
	char path[64];
	snprintf(path, sizeof path, "/api/v1/nodes/%lld", (long long)web);
	assert_int_equal(call(t, "GET", path, NULL, &r), 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "user")), "alice");
	done(&r);

	/* No policy yet. */
	assert_int_equal(call(t, "GET", "/api/v1/policy", NULL, &r), 404);
	assert_non_null(strstr(err_text(&r), "no policy is set"));
	done(&r);
	assert_int_equal(call(t, "DELETE", "/api/v1/policy", NULL, &r), 404);
	done(&r);

	/* A failing test is refused with its place, and nothing changes. */
	char bad[sizeof api_policy + 8];
	const char *at = strstr(api_policy, "tag:web:22");
	snprintf(bad, sizeof bad, "%.*stag:web:443%s", (int)(at - api_policy), api_policy,
	         at + 10); /* denies what it accepts */
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	assert_int_equal(call(t, "PUT", "/api/v1/policy", bad, &r), 400);
	assert_int_equal(json_integer_value(json_object_get(r.j, "line")), 5);
	assert_true(json_integer_value(json_object_get(r.j, "column")) > 0);
	assert_non_null(strstr(err_text(&r), "line 5, column "));
	assert_non_null(strstr(err_text(&r), "tests[0]"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/policy/check", bad, &r), 400);
	assert_true(json_is_false(json_object_get(r.j, "ok")));
	assert_int_equal(json_integer_value(json_object_get(r.j, "line")), 5);
	done(&r);
	assert_int_equal(call(t, "PUT", "/api/v1/policy", "{\n  \"acls\": [1,,2]\n}", &r),
	                 400);
	assert_int_equal(json_integer_value(json_object_get(r.j, "line")), 2);
	done(&r);
	assert_int_equal(call(t, "PUT", "/api/v1/policy", NULL, &r), 400);
	assert_non_null(strstr(err_text(&r), "policy text"));
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/policy", NULL, &r), 404);
	done(&r);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0);

	/* Check, then set: byte for byte back, the map version bumped. */
	assert_int_equal(call(t, "POST", "/api/v1/policy/check", api_policy, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "ok")));
	assert_int_equal(json_integer_value(json_object_get(r.j, "tests_passed")), 2);
	assert_int_equal(json_integer_value(json_object_get(r.j, "nodes")), 3);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/policy", NULL, &r), 404);
	done(&r);
	assert_int_equal(call(t, "PUT", "/api/v1/policy", api_policy, &r), 200);
	assert_int_equal(json_integer_value(json_object_get(r.j, "revision")), 1);
	assert_int_equal(json_integer_value(json_object_get(r.j, "tests_passed")), 2);
	assert_true(json_is_array(json_object_get(r.j, "warnings")));
	done(&r);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0 + 1);
	assert_int_equal(call(t, "GET", "/api/v1/policy", NULL, &r), 200);
	assert_string_equal(json_string_value(json_object_get(r.j, "policy")),
	                    api_policy);
	assert_int_equal(json_integer_value(json_object_get(r.j, "revision")), 1);
	assert_true(json_integer_value(json_object_get(r.j, "set_at")) > 0);
	done(&r);

	/* Under the policy a key's tags need their owner. */
	assert_int_equal(call(t, "POST", "/api/v1/keys", "{\"tags\": [\"web\"]}", &r),
	                 409);
	assert_non_null(strstr(err_text(&r), "tagOwners"));
	done(&r);
	assert_int_equal(call(t, "POST", "/api/v1/keys",
	                      "{\"user\": \"alice\", \"tags\": [\"web\"]}", &r),
	                 200);
	done(&r);

	/* A user who owns nodes or keys stays (409, says what), then goes. */
	assert_int_equal(call(t, "DELETE", "/api/v1/users/alice", NULL, &r), 409);
	assert_non_null(strstr(err_text(&r), "still owns 1 node and 2 auth keys"));
	done(&r);
	assert_int_equal(call(t, "DELETE", "/api/v1/users/bob@", NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "deleted")));
	done(&r);
	assert_int_equal(call(t, "DELETE", "/api/v1/users/bob", NULL, &r), 404);
	done(&r);
	assert_int_equal(call(t, "DELETE", "/api/v1/users/B%20B", NULL, &r), 404);
	done(&r);

	/* Clear. */
	assert_int_equal(call(t, "DELETE", "/api/v1/policy", NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.j, "cleared")));
	assert_int_equal(json_integer_value(json_object_get(r.j, "revision")), 1);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/policy", NULL, &r), 404);
	done(&r);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_int_equal(v1, v0 + 2);
	/* Without a key, nothing of it. */
	assert_int_equal(req(t, "GET", "/api/v1/policy", NULL, NULL, &r), 401);
	done(&r);
	assert_int_equal(req(t, "PUT", "/api/v1/policy", NULL, api_policy, &r), 401);
	done(&r);
}

static void status_and_errors(void **state)
{
	struct t *t = *state;
	struct resp r;

	assert_int_equal(call(t, "GET", "/api/v1/status", NULL, &r), 200);
	assert_true(json_integer_value(json_object_get(r.j, "map_version")) > 0);
	assert_int_equal(json_integer_value(json_object_get(r.j, "nodes")), 3);
	assert_int_equal(json_integer_value(json_object_get(r.j, "nodes_approved")), 2);
	assert_true(json_is_null(json_object_get(r.j, "server"))); /* no server */
	done(&r);

	const char *nf[] = {"/",
	                    "/api/v1",
	                    "/api/v1/",
	                    "/api/v2/nodes",
	                    "/api/v1/groups",
	                    "/api/v1/users/alice/x",
	                    "/api/v1/policy/x",
	                    "/api/v1/nodes/1/reboot",
	                    "/api/v1/nodes/1/approve/x",
	                    "/api/v1/status/x",
	                    "/api/v1//nodes"};
	for (size_t i = 0; i < sizeof nf / sizeof *nf; i++) {
		assert_int_equal(call(t, "GET", nf[i], NULL, &r), 404);
		assert_non_null(err_text(&r));
		done(&r);
	}
	struct {
		const char *m, *p, *allow;
	} na[] = {
	    {"PUT", "/api/v1/nodes", "GET"},
	    {"POST", "/api/v1/nodes", "GET"},
	    {"POST", "/api/v1/nodes/1", "GET, DELETE"},
	    {"GET", "/api/v1/nodes/1/approve", "POST"},
	    {"DELETE", "/api/v1/keys", "GET, POST"},
	    {"GET", "/api/v1/keys/1", "DELETE"},
	    {"POST", "/api/v1/status", "GET"},
	    {"PATCH", "/api/v1/status", "GET"},
	    {"POST", "/api/v1/policy", "GET, PUT, DELETE"},
	    {"GET", "/api/v1/policy/check", "POST"},
	    {"PUT", "/api/v1/users", "GET, POST"},
	    {"GET", "/api/v1/users/alice", "DELETE"},
	};
	for (size_t i = 0; i < sizeof na / sizeof *na; i++) {
		char allow[64];
		assert_int_equal(call(t, na[i].m, na[i].p, NULL, &r), 405);
		snprintf(allow, sizeof allow, "Allow: %s\r\n", na[i].allow);
		assert_non_null(strstr(r.head, allow));
		assert_non_null(err_text(&r));
		done(&r);
	}

	/* 413 over 64 KiB (libevent's, from the length, before the body is
	 * read); exactly 64 KiB is read (and is bad JSON). */
	size_t big = 64 * 1024 + 1;
	char *b = malloc(big + 1);
	memset(b, ' ', big);
	b[big] = 0;
	assert_int_equal(call(t, "POST", "/api/v1/keys", b, &r), 413);
	done(&r);
	b[big - 1] = 0;
	b[0] = '{';
	assert_int_equal(call(t, "POST", "/api/v1/keys", b, &r), 400);
	done(&r);
	free(b);
	/* Far over: libevent refuses it itself, still 413. */
	char *huge = malloc(4 << 20);
	int n = snprintf(huge, 1024,
	                 "POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                 "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
	                 t->key, 2 << 20);
	memset(huge + n, 'x', (size_t)(2 << 20));
	raw(t, huge, (size_t)n + (2 << 20), &r);
	assert_int_equal(r.code, 413);
	done(&r);
	free(huge);

	/* Garbage instead of HTTP: refused, the server carries on. */
	raw(t, "HELLO\r\n\r\n", 9, &r);
	assert_int_equal(r.code, 400);
	done(&r);
	assert_int_equal(call(t, "GET", "/api/v1/status", NULL, &r), 200);
	done(&r);
}

/* Sends req on a connected socket and runs the loop until the reply is
 * complete (the server closes) or ms pass: the status, 0 on timeout. */
static int reply_within(struct t *t, int fd, const char *rq, int ms)
{
	char buf[4096];
	size_t got = 0;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	assert_int_equal(send(fd, rq, strlen(rq), MSG_NOSIGNAL), (ssize_t)strlen(rq));
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
		ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 +
		        (now.tv_nsec - t0.tv_nsec) / 1000000 >
		    ms)
			return 0;
		usleep(500);
	}
	buf[got] = 0;
	int code = 0;
	return sscanf(buf, "HTTP/1.%*d %d", &code) == 1 ? code : -1;
}

static int tcp_to(struct t *t)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&t->addr, t->addrlen), 0);
	return fd;
}

/* A body announced over 64 KiB is refused from its Content-Length, with
 * no key and before a byte of it is sent; before, up to 1 MiB was read
 * first, then the request was refused for lack of a key. */
static void body_not_read_before_auth(void **state)
{
	struct t *t = *state;
	int fd = tcp_to(t);
	int code = reply_within(t, fd,
	                        "POST /api/v1/keys HTTP/1.1\r\nHost: x\r\n"
	                        "Content-Length: 1048576\r\n\r\n",
	                        2000);
	close(fd);
	assert_int_equal(code, 413);
}

/* Two Content-Lengths, or Content-Length with Transfer-Encoding: 400, with
 * a valid key too (before, libevent picked one framing and it was run). */
static void ambiguous_framing_refused(void **state)
{
	struct t *t = *state;
	char rq[512];
	snprintf(rq, sizeof rq,
	         "POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
	         "%s\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
	         t->key);
	int fd = tcp_to(t);
	assert_int_equal(reply_within(t, fd, rq, 2000), 400);
	close(fd);
	snprintf(rq, sizeof rq,
	         "POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
	         "%s\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n"
	         "2\r\n{}\r\n0\r\n\r\n",
	         t->key);
	fd = tcp_to(t);
	assert_int_equal(reply_within(t, fd, rq, 2000), 400);
	close(fd);
}

/* At CTL_ADMIN_MAX_CONNS open connections (idle ones here) the next waits
 * in the backlog, unserved, and is served once some close. Before, every
 * connection was taken, without limit. */
static void connections_capped(void **state)
{
	struct t *t = *state;
	int idle[CTL_ADMIN_MAX_CONNS + 6];
	size_t n = sizeof idle / sizeof *idle;
	for (size_t i = 0; i < n; i++)
		idle[i] = tcp_to(t);
	for (int i = 0; i < 50; i++)
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	char rq[512];
	snprintf(rq, sizeof rq,
	         "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Authorization: Bearer %s\r\n\r\n",
	         t->key);
	int fd = tcp_to(t);
	assert_int_equal(reply_within(t, fd, rq, 400), 0); /* waits */
	for (size_t i = 0; i < 16; i++)
		close(idle[i]);
	int code = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) { /* the request is already sent: wait for the reply */
		char buf[512];
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
		ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
		if (r > 0) {
			buf[r] = 0;
			assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &code), 1);
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 3)
			break;
		usleep(500);
	}
	assert_int_equal(code, 200);
	close(fd);
	for (size_t i = 16; i < n; i++)
		close(idle[i]);
}

/* All the connections taken by clients that trickle a byte a second and
 * never complete a request: each is shut down 10 s after it opened, and a
 * request waiting in the backlog is answered. Before, libevent's timeout
 * (per read, re-armed by each byte) never fired and the 65th request got
 * no answer. */
static void trickling_connections_expire(void **state)
{
	struct t *t = *state;
	int slow[CTL_ADMIN_MAX_CONNS];
	size_t n = sizeof slow / sizeof *slow;
	for (size_t i = 0; i < n; i++) {
		slow[i] = tcp_to(t);
		fcntl(slow[i], F_SETFL, O_NONBLOCK);
		assert_int_equal(send(slow[i], "G", 1, MSG_NOSIGNAL), 1);
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	}
	for (int i = 0; i < 50; i++)
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	char rq[512];
	snprintf(rq, sizeof rq,
	         "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	         "Authorization: Bearer %s\r\n\r\n",
	         t->key);
	int fd = tcp_to(t);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	assert_int_equal(send(fd, rq, strlen(rq), MSG_NOSIGNAL), (ssize_t)strlen(rq));
	int code = 0;
	struct timespec t0, now, last;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	last = t0;
	for (;;) {
		char buf[512];
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
		ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
		if (r > 0) {
			buf[r] = 0;
			assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &code), 1);
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - last.tv_sec >= 1) { /* a byte a second each */
			last = now;
			for (size_t i = 0; i < n; i++)
				(void)!send(slow[i], "E", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		if (now.tv_sec - t0.tv_sec > 20)
			break;
		usleep(500);
	}
	print_message("the 65th request answered after %ld s\n",
	              (long)(now.tv_sec - t0.tv_sec));
	assert_int_equal(code, 200);
	/* the rest within a few seconds (they opened over a moment) */
	int closed = 0;
	bool shut[CTL_ADMIN_MAX_CONNS] = {false};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (closed < (int)n) {
		event_base_loop(t->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
		for (size_t i = 0; i < n; i++) {
			char c;
			ssize_t r = shut[i] ? 0 : recv(slow[i], &c, 1, MSG_DONTWAIT);
			if (!shut[i] &&
			    (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))) {
				shut[i] = true;
				closed++;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 5)
			break;
		usleep(1000);
	}
	for (size_t i = 0; i < n; i++)
		close(slow[i]);
	assert_int_equal(closed, (int)n);
	close(fd);
}

/* Exit codes of `apikeys`; output goes to the test's stdout/stderr. */
static void cli_exit_codes(void **state)
{
	struct t *t = *state;
	char *create[] = {"apikeys", "create", "deploy bot"};
	char *list[] = {"apikeys", "list"};
	char *rev[] = {"apikeys", "revoke", "2"};
	char *rev_bad[] = {"apikeys", "revoke", "x"};
	char *rev_none[] = {"apikeys", "revoke", "99"};
	char *bad[] = {"apikeys", "frobnicate"};
	char *extra[] = {"apikeys", "list", "more"};
	char *none[] = {"apikeys"};
	char nodir[128];

	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, create, 0), 0);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 2, list, 0), 0);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 2, list, 1), 0);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, rev, 0), 0);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, rev_bad, 0), 2);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, rev_none, 0), 1);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 2, bad, 0), 2);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, extra, 0), 2);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 1, none, 0), 2);
	assert_int_equal(ctl_admin_cli_apikeys(t->dir, 3, create, 1), 2);
	snprintf(nodir, sizeof nodir, "%s/missing", t->tmp);
	assert_int_equal(ctl_admin_cli_apikeys(nodir, 2, list, 0), 1);

	struct ctl_apikey *v;
	size_t n;
	assert_int_equal(ctl_store_apikey_list(t->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[1].description, "deploy bot");
	assert_true(v[1].revoked);
	free(v);
}

static void bind_error_is_readable(void **state)
{
	struct t *t = *state;
	char err[256] = "";
	struct ctl_admin_config c = {.base = t->base, .store = t->st};
	memcpy(&c.listen, &t->addr, sizeof c.listen);
	c.listen_len = t->addrlen;
	assert_null(ctl_admin_new(&c, err, sizeof err));
	assert_non_null(strstr(err, "127.0.0.1:"));
	assert_non_null(strstr(err, "in use"));
	ctl_admin_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(auth_is_required, setup, teardown),
	    cmocka_unit_test_setup_teardown(nodes_endpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(keys_endpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(status_and_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(policy_and_users_endpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(cli_exit_codes, setup, teardown),
	    cmocka_unit_test_setup_teardown(body_not_read_before_auth, setup, teardown),
	    cmocka_unit_test_setup_teardown(ambiguous_framing_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(connections_capped, setup, teardown),
	    cmocka_unit_test_setup_teardown(trickling_connections_expire, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(bind_error_is_readable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
