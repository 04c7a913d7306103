/* The control store on PostgreSQL (libpq), so several mesh-control servers
 * can share one database. Every write transaction starts by locking the
 * meta row (SELECT ... FOR UPDATE): writers run one at a time, as SQLite's
 * one writer does, and each statement after the lock sees every earlier
 * commit (READ COMMITTED takes a fresh snapshot per statement), so the
 * store_pg_*.c files can keep the logic of their SQLite twins. Statements
 * are prepared once per connection (cached by their SQL text's address)
 * and only ever see values through parameters.
 *
 * After a failed statement inside a transaction PostgreSQL refuses every
 * other statement until ROLLBACK: code in a transaction must not try a
 * statement "to see if it fails" and carry on; it checks first (the meta
 * lock makes check-then-write safe) and ends the transaction on an error.
 *
 * This file: plumbing, open, migrations, meta, the change watch and the
 * ops table; auth keys are in store_pg_keys.c, API keys in
 * store_pg_apikeys.c, relays in store_pg_relays.c, users and the policy in
 * store_pg_users.c, nodes in store_pg_nodes.c, batches and server beats in
 * store_pg_volatile.c. */
#include "servers/control/store_pg_int.h"
#include "servers/control/store_schema.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_xact_lock key that serialises schema migrations ("mesh"). */
#define PG_MIGRATE_LOCK 0x6d657368

/* ---- parameters ------------------------------------------------------ */

/* A statement with more than PG_MAXP parameters is a programming error:
 * the count goes past PG_MAXP and ctl_pg_query refuses to run it. */
static int pg_p_slot(struct pg_params *p)
{
	return p->n < PG_MAXP ? p->n++ : (p->n = PG_MAXP + 1, -1);
}

void ctl_pg_p_int(struct pg_params *p, int64_t v)
{
	int i = pg_p_slot(p);
	if (i < 0)
		return;
	snprintf(p->num[i], sizeof p->num[i], "%" PRId64, v);
	p->v[i] = p->num[i];
	p->len[i] = 0;
	p->fmt[i] = 0;
}

void ctl_pg_p_text(struct pg_params *p, const char *s)
{
	int i = pg_p_slot(p);
	if (i < 0)
		return;
	p->v[i] = s;
	p->len[i] = 0;
	p->fmt[i] = 0;
}

void ctl_pg_p_blob(struct pg_params *p, const uint8_t *b, size_t n)
{
	int i = pg_p_slot(p);
	if (i < 0)
		return;
	/* Binary format: the bytes as they are; an empty blob still needs a
	 * non-NULL pointer (NULL would be SQL NULL). */
	p->v[i] = n ? (const char *)b : "";
	p->len[i] = (int)n;
	p->fmt[i] = 1;
}

/* ---- errors ---------------------------------------------------------- */

int ctl_pg_fail(struct pg_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->base.errmsg, sizeof s->base.errmsg, fmt, ap);
	va_end(ap);
	return code;
}

/* libpq's messages end with a newline; keep one line. */
static void pg_chomp(char *m)
{
	size_t n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == '\r' || m[n - 1] == ' '))
		m[--n] = '\0';
}

static int pg_conn_err(struct pg_store *s, const char *what)
{
	int rc = ctl_pg_fail(s, CTL_STORE_EIO, "%s: %s", what,
	                     s->db ? PQerrorMessage(s->db) : "no connection");
	pg_chomp(s->base.errmsg);
	return rc;
}

/* Maps a failed result to a store code: a unique violation (SQLSTATE
 * 23505) is EEXISTS, or ECONFLICT when its constraint is on node_key (as
 * SQLite's "UNIQUE constraint failed: nodes.node_key"); anything else EIO. */
static int pg_result_err(struct pg_store *s, const char *what, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	int rc;

	if (!msg)
		msg = PQerrorMessage(s->db);
	if (state && !strcmp(state, "23505") && cons && strstr(cons, "node_key"))
		return ctl_pg_fail(s, CTL_STORE_ECONFLICT, "%s: node key in use", what);
	if (state && !strcmp(state, "23505"))
		rc = ctl_pg_fail(s, CTL_STORE_EEXISTS, "%s: %s", what, msg);
	else
		rc = ctl_pg_fail(s, CTL_STORE_EIO, "%s: %s", what, msg);
	pg_chomp(s->base.errmsg);
	return rc;
}

/* ---- statements ------------------------------------------------------ */

static void pg_cache_forget(struct pg_store *s)
{
	for (int i = 0; i < PG_CACHE; i++)
		s->cache[i].sql = NULL;
}

/* Outside a transaction a lost connection is reset (the server restarted,
 * a proxy dropped it); its prepared statements went with it. Inside one
 * the transaction is lost anyway: the statement fails and the caller's
 * ctl_pg_end rolls back. */
static int pg_ensure_conn(struct pg_store *s)
{
	if (PQstatus(s->db) == CONNECTION_OK)
		return 0;
	if (s->in_tx)
		return ctl_pg_fail(s, CTL_STORE_EIO,
		                   "connection to PostgreSQL lost in a transaction");
	pg_cache_forget(s);
	PQreset(s->db);
	if (PQstatus(s->db) != CONNECTION_OK)
		return pg_conn_err(s, "reconnect to PostgreSQL");
	return 0;
}

/* The name of sql's prepared statement on this connection, preparing it
 * the first time; NULL with the message set on failure. */
static const char *pg_prepared(struct pg_store *s, const char *sql)
{
	int i;
	for (i = 0; i < PG_CACHE && s->cache[i].sql; i++)
		if (s->cache[i].sql == sql)
			return s->cache[i].name;
	if (i == PG_CACHE) { /* a programming error: raise PG_CACHE */
		ctl_pg_fail(s, CTL_STORE_EIO, "statement cache full");
		return NULL;
	}
	snprintf(s->cache[i].name, sizeof s->cache[i].name, "s%d", i);
	PGresult *r = PQprepare(s->db, s->cache[i].name, sql, 0, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_result_err(s, "prepare", r);
		PQclear(r);
		return NULL;
	}
	PQclear(r);
	s->cache[i].sql = sql;
	return s->cache[i].name;
}

PGresult *ctl_pg_query(struct pg_store *s, const char *what, const char *sql,
                       const struct pg_params *p, int *rc)
{
	const char *name;
	int n = p ? p->n : 0;

	if (n > PG_MAXP) {
		*rc = ctl_pg_fail(s, CTL_STORE_EIO, "%s: more than %d parameters", what,
		                  PG_MAXP);
		return NULL;
	}
	if ((*rc = pg_ensure_conn(s)) != 0)
		return NULL;
	if (!(name = pg_prepared(s, sql))) {
		*rc = CTL_STORE_EIO;
		return NULL;
	}
	PGresult *r = PQexecPrepared(s->db, name, n, p ? p->v : NULL, p ? p->len : NULL,
	                             p ? p->fmt : NULL, 0);
	ExecStatusType t = PQresultStatus(r);
	if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK) {
		*rc = 0;
		return r;
	}
	*rc = pg_result_err(s, what, r);
	PQclear(r);
	return NULL;
}

int ctl_pg_cmd(struct pg_store *s, const char *what, const char *sql,
               const struct pg_params *p, int64_t *rows)
{
	int rc;
	PGresult *r = ctl_pg_query(s, what, sql, p, &rc);
	if (!r)
		return rc;
	if (rows) {
		const char *t = PQcmdTuples(r);
		*rows = t && *t ? strtoll(t, NULL, 10) : 0;
	}
	PQclear(r);
	return 0;
}

int ctl_pg_exec(struct pg_store *s, const char *sql)
{
	int rc = pg_ensure_conn(s);
	if (rc)
		return rc;
	PGresult *r = PQexec(s->db, sql);
	ExecStatusType t = PQresultStatus(r);
	rc = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK ? 0 : pg_result_err(s, sql, r);
	PQclear(r);
	return rc;
}

/* ---- values ---------------------------------------------------------- */

int64_t ctl_pg_int(const PGresult *r, int row, int col)
{
	if (row >= PQntuples(r) || col >= PQnfields(r) || PQgetisnull(r, row, col))
		return 0;
	const char *v = PQgetvalue(r, row, col);
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	return errno || end == v || *end ? 0 : (int64_t)x;
}

void ctl_pg_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
	const char *v = "";
	if (row < PQntuples(r) && col < PQnfields(r) && !PQgetisnull(r, row, col))
		v = PQgetvalue(r, row, col);
	snprintf(dst, cap, "%s", v);
}

static int pg_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* bytea's hex output: "\x" then two hex digits a byte. Anything else (the
 * old escape format, a wrong length, a stray character) gives zeros, as a
 * wrong-sized blob does in ctl_sq_blob. */
void ctl_pg_blob(uint8_t *dst, size_t len, const PGresult *r, int row, int col)
{
	memset(dst, 0, len);
	if (row >= PQntuples(r) || col >= PQnfields(r) || PQgetisnull(r, row, col))
		return;
	const char *v = PQgetvalue(r, row, col);
	size_t n = (size_t)PQgetlength(r, row, col);
	if (n != 2 + 2 * len || v[0] != '\\' || v[1] != 'x')
		return;
	for (size_t i = 0; i < len; i++) {
		int hi = pg_hexval(v[2 + 2 * i]), lo = pg_hexval(v[3 + 2 * i]);
		if (hi < 0 || lo < 0) {
			memset(dst, 0, len);
			return;
		}
		dst[i] = (uint8_t)(hi << 4 | lo);
	}
}

bool ctl_pg_len_ok(const char *t, size_t max)
{
	return !t || strnlen(t, max + 1) <= max;
}

/* ---- transactions ---------------------------------------------------- */

/* READ COMMITTED whatever the server's default: with the meta row locked
 * first, each later statement sees every commit before ours (REPEATABLE
 * READ would keep the snapshot from before the wait and fail instead). */
static int pg_begin_plain(struct pg_store *s)
{
	int rc = ctl_pg_exec(s, "BEGIN ISOLATION LEVEL READ COMMITTED");
	if (rc == 0)
		s->in_tx = true;
	return rc;
}

/* BEGIN and the lock in one round trip (two statements in one simple
 * query): every write pays for it. */
int ctl_pg_begin(struct pg_store *s)
{
	int rc = pg_ensure_conn(s);
	if (rc)
		return rc;
	PGresult *r = PQexec(s->db, "BEGIN ISOLATION LEVEL READ COMMITTED;"
	                            " SELECT 1 FROM meta WHERE id = 1 FOR UPDATE");
	s->in_tx = PQtransactionStatus(s->db) == PQTRANS_INTRANS ||
	           PQtransactionStatus(s->db) == PQTRANS_INERROR;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg_result_err(s, "lock meta", r);
	else if (PQntuples(r) == 0)
		rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                 "store not initialised (run init)");
	PQclear(r);
	return rc ? ctl_pg_end(s, rc) : 0;
}

int ctl_pg_end(struct pg_store *s, int rc)
{
	if (!s->in_tx)
		return rc;
	s->in_tx = false;
	if (rc == 0) {
		PGresult *r = PQexec(s->db, "COMMIT");
		/* COMMIT of a transaction that failed earlier answers
		 * "ROLLBACK" with success: that is a failure here. */
		if (PQresultStatus(r) == PGRES_COMMAND_OK &&
		    !strcmp(PQcmdStatus(r), "COMMIT")) {
			PQclear(r);
			return 0;
		}
		rc =
		    PQresultStatus(r) == PGRES_COMMAND_OK
		        ? ctl_pg_fail(s, CTL_STORE_EIO, "commit: transaction was aborted")
		        : pg_result_err(s, "commit", r);
		PQclear(r);
	}
	if (PQstatus(s->db) == CONNECTION_OK &&
	    PQtransactionStatus(s->db) != PQTRANS_IDLE)
		PQclear(PQexec(s->db, "ROLLBACK"));
	return rc;
}

int ctl_pg_fault(struct pg_store *s, const char *point)
{
	if (s->fault && s->fault(point, s->fault_arg))
		return ctl_pg_fail(s, CTL_STORE_EIO, "fault injected at %s", point);
	return 0;
}

int ctl_pg_bump(struct pg_store *s, int64_t *v)
{
	static const char *const bump = "UPDATE meta SET map_version = map_version + 1 "
	                                "WHERE id = 1 RETURNING map_version";
	static const char *const notify = "SELECT pg_notify('" CTL_STORE_CHANNEL "', $1)";
	int rc;
	PGresult *r = ctl_pg_query(s, "map version", bump, NULL, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	}
	*v = ctl_pg_int(r, 0, 0);
	PQclear(r);
	/* Delivered to the other servers' LISTEN connections at commit, and
	 * not at all on rollback. */
	struct pg_params p = {0};
	ctl_pg_p_int(&p, *v);
	return ctl_pg_cmd(s, "notify", notify, &p, NULL);
}

/* ---- open / migrate -------------------------------------------------- */

/* The server's notices ("relation already exists, skipping") are not
 * errors; libpq would print them on stderr. */
static void pg_notice_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Connects to url: the URI or key=value words as given, our application
 * name unless the URL sets one, and UTF-8 text (the texts we store are
 * ASCII or UTF-8). */
static PGconn *pg_connect(const char *url)
{
	const char *const keys[] = {"dbname", "fallback_application_name",
	                            "client_encoding", NULL};
	const char *const vals[] = {url, "mesh-control", "UTF8", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c)
		PQsetNoticeProcessor(c, pg_notice_quiet, NULL);
	return c;
}

/* The password in url (malloc'ed), or NULL. A URI libpq cannot parse
 * (its message may quote the bad part) gives the raw text between ':'
 * and '@' of its user part. */
static char *pg_url_password(const char *url)
{
	char *pw = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password") && o->val && *o->val)
			pw = strdup(o->val);
	PQconninfoFree(opts);
	if (opts || pw)
		return pw;
	const char *u = strstr(url, "://");
	if (!u)
		return NULL;
	u += 3;
	size_t user = strcspn(u, "/?#");
	const char *at = memchr(u, '@', user);
	const char *colon = at ? memchr(u, ':', (size_t)(at - u)) : NULL;
	if (!colon || at - colon < 2)
		return NULL;
	return strndup(colon + 1, (size_t)(at - colon - 1));
}

/* Copies prefix and libpq's message into err with the URL's password, if
 * it has one, written as "***": some messages quote connection options. */
static void pg_err_scrub(char *err, size_t errlen, const char *prefix, const char *msg,
                         const char *url)
{
	char *pw = pg_url_password(url);

	size_t n = pw ? strlen(pw) : 0, o = 0;
	int w = snprintf(err, errlen, "%s", prefix);
	o = w < 0 ? 0 : (size_t)w < errlen ? (size_t)w : errlen - 1;
	while (*msg && o + 1 < errlen) {
		if (n && !strncmp(msg, pw, n)) {
			for (const char *m = "***"; *m && o + 1 < errlen; m++)
				err[o++] = *m;
			msg += n;
		} else {
			err[o++] = *msg++;
		}
	}
	err[o] = '\0';
	pg_chomp(err);
	if (pw) {
		sodium_memzero(pw, n);
		free(pw);
	}
}

/* The schema's version: the highest row of schema_version (one row per
 * migration applied, with when), 0 for a database we never touched. */
static int pg_schema_version(struct pg_store *s, int *v)
{
	static const char *const create =
	    "CREATE TABLE IF NOT EXISTS schema_version ("
	    " version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)";
	static const char *const get =
	    "SELECT COALESCE(max(version), 0) FROM schema_version";
	int rc = ctl_pg_exec(s, create);
	if (rc)
		return rc;
	PGresult *r = ctl_pg_query(s, "schema version", get, NULL, &rc);
	if (!r)
		return rc;
	*v = (int)ctl_pg_int(r, 0, 0);
	PQclear(r);
	return 0;
}

/* Runs one version's text (several statements: the simple protocol);
 * a failure names the version, not the long SQL text. */
static int pg_migration_exec(struct pg_store *s, int to, const char *sql)
{
	PGresult *r = PQexec(s->db, sql);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK) {
		char what[48];
		snprintf(what, sizeof what, "schema version %d", to);
		rc = pg_result_err(s, what, r);
	}
	PQclear(r);
	return rc;
}

static int pg_migrate_to(struct pg_store *s, int v)
{
	static const char *const rec =
	    "INSERT INTO schema_version (version, applied)"
	    " VALUES ($1, CAST(extract(epoch FROM now()) AS BIGINT))";
	int rc = 0;
	for (; rc == 0 && v < ctl_schema_version; v++) {
		rc = pg_migration_exec(s, v + 1, ctl_migrations[v].pg);
		struct pg_params p = {0};
		ctl_pg_p_int(&p, v + 1);
		if (rc == 0)
			rc = ctl_pg_cmd(s, "schema version", rec, &p, NULL);
	}
	return rc;
}

/* One transaction under an advisory lock: servers started together wait
 * for the first one's migration and then find nothing to do. */
static int pg_migrate(struct pg_store *s)
{
	static const char *const lock = "SELECT pg_advisory_xact_lock($1)";
	int v = 0, rc = pg_begin_plain(s);
	if (rc)
		return rc;
	struct pg_params p = {0};
	ctl_pg_p_int(&p, PG_MIGRATE_LOCK);
	rc = ctl_pg_cmd(s, "migration lock", lock, &p, NULL);
	if (rc == 0)
		rc = pg_schema_version(s, &v);
	if (rc == 0 && v > ctl_schema_version)
		rc = ctl_pg_fail(s, CTL_STORE_ESCHEMA,
		                 "schema version %d is newer than this program's %d", v,
		                 ctl_schema_version);
	if (rc == 0)
		rc = pg_migrate_to(s, v);
	return ctl_pg_end(s, rc);
}

static const struct ctl_store_ops pg_ops;

static void pg_close(struct ctl_store *st)
{
	struct pg_store *s = PG(st);
	PQfinish(s->db);
	PQfinish(s->watch);
	if (s->url) {
		sodium_memzero(s->url, strlen(s->url));
		free(s->url);
	}
	free(s);
}

struct ctl_store *ctl_store_open_pg(const char *url, char *err, size_t errlen)
{
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium init failed");
		return NULL;
	}
	struct pg_store *s = calloc(1, sizeof *s);
	if (!s || !(s->url = strdup(url))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base.ops = &pg_ops;
	s->db = pg_connect(url);
	if (!s->db || PQstatus(s->db) != CONNECTION_OK) {
		pg_err_scrub(err, errlen, "PostgreSQL: ",
		             s->db ? PQerrorMessage(s->db) : "out of memory", url);
		pg_close(&s->base);
		return NULL;
	}
	int rc = 0;
	if (PQserverVersion(s->db) < 100000) /* identity columns */
		rc = ctl_pg_fail(s, CTL_STORE_EIO,
		                 "PostgreSQL %d.%d is too old: use version 10 or newer",
		                 PQserverVersion(s->db) / 10000,
		                 PQserverVersion(s->db) % 10000 / 100);
	if (rc == 0)
		rc = pg_migrate(s);
	if (rc) {
		pg_err_scrub(err, errlen, "PostgreSQL: ", s->base.errmsg, url);
		pg_close(&s->base);
		return NULL;
	}
	return &s->base;
}

/* ---- change watch ---------------------------------------------------- */

/* A second connection that only LISTENs: notifications arrive on it while
 * the first one is busy in a transaction. */
static int pg_watch_fd(struct ctl_store *st)
{
	struct pg_store *s = PG(st);
	if (s->watch)
		return PQsocket(s->watch);
	PGconn *w = pg_connect(s->url);
	if (!w || PQstatus(w) != CONNECTION_OK) {
		pg_err_scrub(s->base.errmsg, sizeof s->base.errmsg,
		             "watch: ", w ? PQerrorMessage(w) : "out of memory", s->url);
		PQfinish(w);
		return -1;
	}
	PGresult *r = PQexec(w, "LISTEN " CTL_STORE_CHANNEL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok || PQsetnonblocking(w, 1) != 0) {
		ctl_pg_fail(s, CTL_STORE_EIO, "watch: LISTEN: %s", PQerrorMessage(w));
		pg_chomp(s->base.errmsg);
		PQfinish(w);
		return -1;
	}
	s->watch = w;
	return PQsocket(w);
}

/* Reads what arrived; while the socket stays readable, reads again (a few
 * times at most): a server that ends the connection sends an error first
 * and the end after it, and the loss shows only on the second read. */
static int pg_watch_drain(struct ctl_store *st)
{
	struct pg_store *s = PG(st);
	int seen = 0;
	if (!s->watch)
		return 0;
	for (int i = 0; i < 4; i++) {
		if (!PQconsumeInput(s->watch) || PQstatus(s->watch) != CONNECTION_OK) {
			ctl_pg_fail(s, CTL_STORE_EIO, "watch: %s",
			            PQerrorMessage(s->watch));
			pg_chomp(s->base.errmsg);
			PQfinish(s->watch);
			s->watch = NULL;
			return CTL_STORE_EIO;
		}
		PGnotify *n;
		while ((n = PQnotifies(s->watch)) != NULL) {
			seen = 1;
			PQfreemem(n);
		}
		struct pollfd pfd = {.fd = PQsocket(s->watch), .events = POLLIN};
		if (poll(&pfd, 1, 0) <= 0)
			break;
	}
	return seen;
}

/* ---- meta ------------------------------------------------------------ */

static bool pg_domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > CTL_DOMAIN_MAX || d[0] == '.' || d[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int pg_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	static const char *const ins =
	    "INSERT INTO meta (id, mesh_id, v4_prefix, v4_bits, ula, ula_bits, domain,"
	    " server_public, created) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)";
	struct pg_store *s = PG(st);
	const char *domain = p->domain ? p->domain : CTL_DEFAULT_DOMAIN;
	uint8_t id[16], ula[16] = {0xfd};
	char hex[CTL_MESH_ID_LEN + 1];

	if (!pg_domain_ok(domain))
		return ctl_pg_fail(
		    s, CTL_STORE_EINVAL,
		    "domain \"%.64s\": use lowercase letters, digits, '-', '.'", domain);
	randombytes_buf(id, sizeof id);
	randombytes_buf(ula + 1, 5);
	sodium_bin2hex(hex, sizeof hex, id, sizeof id);

	/* No meta row to lock yet: two servers initialising at once meet on
	 * meta's primary key (the second waits for the first, then fails). */
	int rc = pg_begin_plain(s);
	if (rc)
		return rc;
	struct pg_params q = {0};
	ctl_pg_p_text(&q, hex);
	ctl_pg_p_int(&q, CTL_V4_PREFIX);
	ctl_pg_p_int(&q, CTL_V4_BITS);
	ctl_pg_p_blob(&q, ula, sizeof ula);
	ctl_pg_p_int(&q, CTL_V6_BITS);
	ctl_pg_p_text(&q, domain);
	ctl_pg_p_blob(&q, p->server_public, CTL_KEY_LEN);
	ctl_pg_p_int(&q, p->now);
	rc = ctl_pg_cmd(s, "init", ins, &q, NULL);
	if (rc == CTL_STORE_EEXISTS)
		ctl_pg_fail(s, rc, "store already initialised");
	return ctl_pg_end(s, rc);
}

int ctl_pg_get_meta(struct ctl_store *st, struct ctl_meta *m)
{
	static const char *const sel =
	    "SELECT mesh_id, v4_prefix, v4_bits, ula, ula_bits, domain, server_public,"
	    " created FROM meta WHERE id = 1";
	struct pg_store *s = PG(st);
	int rc;
	PGresult *r = ctl_pg_query(s, "meta", sel, NULL, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
		                   "store not initialised (run init)");
	}
	memset(m, 0, sizeof *m);
	ctl_pg_text(m->mesh_id, sizeof m->mesh_id, r, 0, 0);
	m->v4_prefix = (uint32_t)ctl_pg_int(r, 0, 1);
	m->v4_bits = (uint8_t)ctl_pg_int(r, 0, 2);
	ctl_pg_blob(m->ula, sizeof m->ula, r, 0, 3);
	m->ula_bits = (uint8_t)ctl_pg_int(r, 0, 4);
	ctl_pg_text(m->domain, sizeof m->domain, r, 0, 5);
	ctl_pg_blob(m->server_public, CTL_KEY_LEN, r, 0, 6);
	m->created = ctl_pg_int(r, 0, 7);
	PQclear(r);
	return 0;
}

static int pg_map_version(struct ctl_store *st, int64_t *out)
{
	static const char *const sel = "SELECT map_version FROM meta WHERE id = 1";
	struct pg_store *s = PG(st);
	int rc;
	if (ctl_pg_fault(s, "map_version:read") < 0)
		return CTL_STORE_EIO;
	PGresult *r = ctl_pg_query(s, "map version", sel, NULL, &rc);
	if (!r)
		return rc;
	*out = ctl_pg_int(r, 0, 0);
	PQclear(r);
	return 0;
}

static void pg_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg)
{
	PG(st)->fault = fn;
	PG(st)->fault_arg = arg;
}

static const struct ctl_store_ops pg_ops = {
    .close = pg_close,
    .init = pg_init,
    .get_meta = ctl_pg_get_meta,
    .map_version = pg_map_version,
    .key_create = ctl_pg_key_create,
    .key_list = ctl_pg_key_list,
    .key_revoke = ctl_pg_key_revoke,
    .key_use = ctl_pg_key_use,
    .node_register = ctl_pg_node_register,
    .node_get = ctl_pg_node_get,
    .node_list = ctl_pg_node_list,
    .node_approve = ctl_pg_node_approve,
    .node_rename = ctl_pg_node_rename,
    .node_remove = ctl_pg_node_remove,
    .node_logout = ctl_pg_node_logout,
    .node_removed = ctl_pg_node_removed,
    .node_pending_count = ctl_pg_node_pending_count,
    .node_counts = ctl_pg_node_counts,
    .node_expire = ctl_pg_node_expire,
    .node_update = ctl_pg_node_update,
    .set_fault = pg_set_fault,
    .node_update_many = ctl_pg_node_update_many,
    .node_offline_all = ctl_pg_node_offline_all,
    .apikey_create = ctl_pg_apikey_create,
    .apikey_list = ctl_pg_apikey_list,
    .apikey_revoke = ctl_pg_apikey_revoke,
    .apikey_check = ctl_pg_apikey_check,
    .relay_key_create = ctl_pg_relay_key_create,
    .relay_register = ctl_pg_relay_register,
    .relay_list = ctl_pg_relay_list,
    .relay_remove = ctl_pg_relay_remove,
    .user_create = ctl_pg_user_create,
    .user_list = ctl_pg_user_list,
    .user_remove = ctl_pg_user_remove,
    .policy_get = ctl_pg_policy_get,
    .policy_set = ctl_pg_policy_set,
    .policy_clear = ctl_pg_policy_clear,
    .node_owners = ctl_pg_node_owners,
    .kind = "postgresql",
    .set_server = ctl_pg_set_server,
    .server_beat = ctl_pg_server_beat,
    .server_leave = ctl_pg_server_leave,
    .watch_fd = pg_watch_fd,
    .watch_drain = pg_watch_drain,
};
