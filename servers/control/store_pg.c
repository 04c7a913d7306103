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
#include <time.h>

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
	else if (state && !strcmp(state, "55P03"))
		rc = ctl_pg_fail(s, CTL_STORE_EIO,
		                 "%s: the store is busy: another server has held the "
		                 "write lock for over 2 s (PostgreSQL ends a stalled "
		                 "one's session after 5 s); try again",
		                 what);
	else if (state && !strcmp(state, "57014"))
		rc = ctl_pg_fail(s, CTL_STORE_EIO,
		                 "%s: the store is busy: the statement ran past 4 s "
		                 "and was cancelled; try again",
		                 what);
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

static int pg_session_limits(struct pg_store *s);
static int64_t pg_mono_ms(void);

/* A failed reconnect waits before the next: 1 s, doubling to 5 s. The
 * server calls the store at every poll (500 ms), beat and flush, and each
 * try blocks its event loop for up to connect_timeout (3 s): a database
 * host that drops packets would otherwise stall the loop nearly all the
 * time. 5 s at most, so a database back from a restart is found before
 * the other servers take this one for dead (dead_after is 9 s or more). */
static int pg_reset_failed(struct pg_store *s)
{
	s->reset_delay_s = s->reset_delay_s ? s->reset_delay_s * 2 : 1;
	if (s->reset_delay_s > 5)
		s->reset_delay_s = 5;
	s->reset_next_ms = pg_mono_ms() + s->reset_delay_s * 1000;
	return pg_conn_err(s, "reconnect to PostgreSQL");
}

/* Outside a transaction a lost connection is reset (the server restarted,
 * a proxy dropped it); its prepared statements went with it. Inside one
 * the transaction is lost anyway: the statement fails and the caller's
 * ctl_pg_end rolls back. */
static int pg_ensure_conn(struct pg_store *s)
{
	if (PQstatus(s->db) == CONNECTION_OK && s->limits_set)
		return 0;
	if (PQstatus(s->db) == CONNECTION_OK) /* a reset whose SETs failed */
		return s->in_tx ? 0 : pg_session_limits(s);
	if (s->in_tx)
		return ctl_pg_fail(s, CTL_STORE_EIO,
		                   "connection to PostgreSQL lost in a transaction");
	if (s->reset_delay_s && pg_mono_ms() < s->reset_next_ms)
		return ctl_pg_fail(s, CTL_STORE_EIO,
		                   "the store is unreachable (the last reconnect to "
		                   "PostgreSQL failed); retrying in %d s: check that "
		                   "the database is up and reachable",
		                   s->reset_delay_s);
	pg_cache_forget(s);
	s->limits_set = false;
	PQreset(s->db);
	if (PQstatus(s->db) != CONNECTION_OK)
		return pg_reset_failed(s);
	s->reset_delay_s = 0;
	return pg_session_limits(s);
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

static PGresult *pg_query_once(struct pg_store *s, const char *what, const char *sql,
                               const struct pg_params *p, int *rc, bool *retry)
{
	const char *name;
	int n = p ? p->n : 0;

	*retry = false;
	if ((*rc = pg_ensure_conn(s)) != 0)
		return NULL;
	if (!(name = pg_prepared(s, sql))) {
		*retry = PQstatus(s->db) == CONNECTION_BAD;
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
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	*retry = PQstatus(s->db) == CONNECTION_BAD || (state && !strcmp(state, "26000"));
	*rc = pg_result_err(s, what, r);
	PQclear(r);
	return NULL;
}

/* Outside a transaction a statement that failed because the connection
 * died (the database restarted: libpq notices only now) or because the
 * session lost our prepared statements (26000) runs once more on a fresh
 * connection or cache: the first statement after a restart may be a
 * node's registration. Inside a transaction the transaction is lost
 * anyway and the caller's ctl_pg_end rolls back. */
PGresult *ctl_pg_query(struct pg_store *s, const char *what, const char *sql,
                       const struct pg_params *p, int *rc)
{
	bool retry;
	if ((p ? p->n : 0) > PG_MAXP) {
		*rc = ctl_pg_fail(s, CTL_STORE_EIO, "%s: more than %d parameters", what,
		                  PG_MAXP);
		return NULL;
	}
	PGresult *r = pg_query_once(s, what, sql, p, rc, &retry);
	if (r || !retry || s->in_tx)
		return r;
	pg_cache_forget(s);
	if (PQstatus(s->db) == CONNECTION_OK)
		PQclear(PQexec(s->db, "DEALLOCATE ALL"));
	return pg_query_once(s, what, sql, p, rc, &retry);
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
	PGresult *r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		int rc = pg_ensure_conn(s);
		if (rc)
			return rc;
		PQclear(r);
		r = PQexec(s->db, "BEGIN ISOLATION LEVEL READ COMMITTED;"
		                  " SELECT 1 FROM meta WHERE id = 1 FOR UPDATE");
		/* a connection found dead here did nothing yet: reconnect
		 * (pg_ensure_conn) and try once more */
		if (PQresultStatus(r) == PGRES_TUPLES_OK ||
		    PQstatus(s->db) != CONNECTION_BAD)
			break;
	}
	int rc = 0;
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
 * ASCII or UTF-8). The limits come before the URL, so the URL's own values
 * win (libpq keeps the last of a repeated keyword): a peer that stops
 * answering is noticed in about 10 s (keepalives, TCP user timeout) and a
 * connect gives up after 3 s, instead of blocking the event loop for the
 * kernel's minutes. */
PGconn *ctl_pg_connect(const char *url)
{
	const char *const keys[] = {"connect_timeout",           "keepalives",
	                            "keepalives_idle",           "keepalives_interval",
	                            "keepalives_count",          "tcp_user_timeout",
	                            "fallback_application_name", "dbname",
	                            "client_encoding",           NULL};
	const char *const vals[] = {"3", "1",    "5", "2", "3", "10000", "mesh-control",
	                            url, "UTF8", NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c)
		PQsetNoticeProcessor(c, pg_notice_quiet, NULL);
	return c;
}

int ctl_pg_encoding_check(PGconn *c, char *err, size_t errlen)
{
	const char *enc = PQparameterStatus(c, "server_encoding");
	if (enc && !strcmp(enc, "UTF8"))
		return 0;
	snprintf(err, errlen,
	         "database \"%s\" has encoding %s; mesh-control needs UTF8: create "
	         "the database with `createdb -E UTF8 -T template0 NAME`",
	         PQdb(c) ? PQdb(c) : "?", enc ? enc : "(unknown)");
	return -1;
}

/* The session's limits, on every connection (again after a reset): a
 * write waits at most 2 s for the meta row's lock (another server holds
 * it), no statement runs past 4 s (a beat held up by the lock wait, a slow
 * statement and one beat period stays under serve's smallest dead_after,
 * 9 s; migrations set their own with SET LOCAL), and a session idle inside a
 * transaction for 5 s is ended by PostgreSQL -- a server stopped (SIGSTOP,
 * cut off) in the middle of a write frees the lock that way, instead of
 * freezing every other server's writes for hours. */
static int pg_session_limits(struct pg_store *s)
{
	PGresult *r = PQexec(s->db, "SET lock_timeout = '2s';"
	                            " SET statement_timeout = '4s';"
	                            " SET idle_in_transaction_session_timeout = '5s'");
	int rc = PQresultStatus(r) == PGRES_COMMAND_OK
	             ? 0
	             : pg_result_err(s, "session timeouts", r);
	PQclear(r);
	s->limits_set = rc == 0;
	return rc;
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

/* The schema's version without DDL (0: no schema_version table): a role
 * with only SELECT, INSERT, UPDATE, DELETE on the tables (no CREATE on
 * the schema) opens an up-to-date store. */
static int pg_schema_probe(struct pg_store *s, int *v)
{
	static const char *const probe =
	    "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 "
	    "ELSE 1 END";
	static const char *const get =
	    "SELECT COALESCE(max(version), 0) FROM schema_version";
	int rc;
	*v = 0;
	PGresult *r = ctl_pg_query(s, "schema version", probe, NULL, &rc);
	if (!r)
		return rc;
	bool exists = ctl_pg_int(r, 0, 0) == 1;
	PQclear(r);
	if (!exists)
		return 0;
	r = ctl_pg_query(s, "schema version", get, NULL, &rc);
	if (!r)
		return rc;
	*v = (int)ctl_pg_int(r, 0, 0);
	PQclear(r);
	return 0;
}

/* One transaction under an advisory lock: servers started together wait
 * for the first one's migration and then find nothing to do. An
 * up-to-date schema needs neither the lock nor any DDL. */
static int pg_migrate(struct pg_store *s)
{
	static const char *const lock = "SELECT pg_advisory_xact_lock($1)";
	int v = 0, rc = pg_schema_probe(s, &v);
	if (rc)
		return rc;
	if (v == ctl_schema_version)
		return 0;
	rc = pg_begin_plain(s);
	if (rc)
		return rc;
	/* A migration may rewrite big tables, and servers started together
	 * wait here for the first one's: not the session's write limits. */
	rc = ctl_pg_exec(s, "SET LOCAL lock_timeout = '60s';"
	                    " SET LOCAL statement_timeout = 0");
	if (rc)
		return ctl_pg_end(s, rc);
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
	s->db = ctl_pg_connect(url);
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
	char enc[200];
	if (rc == 0 && ctl_pg_encoding_check(s->db, enc, sizeof enc) < 0)
		rc = ctl_pg_fail(s, CTL_STORE_EIO, "%s", enc);
	if (rc == 0)
		rc = pg_session_limits(s);
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

static int64_t pg_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A failed watch connect waits before the next: 1 s, doubling to 30 s.
 * The server asks at every poll (500 ms) while the watch is down, and each
 * try blocks its loop for up to connect_timeout. */
static int pg_watch_failed(struct pg_store *s)
{
	s->watch_delay_s = s->watch_delay_s ? s->watch_delay_s * 2 : 1;
	if (s->watch_delay_s > 30)
		s->watch_delay_s = 30;
	s->watch_next_ms = pg_mono_ms() + s->watch_delay_s * 1000;
	return -1;
}

/* A second connection that only LISTENs: notifications arrive on it while
 * the first one is busy in a transaction. */
static int pg_watch_fd(struct ctl_store *st)
{
	struct pg_store *s = PG(st);
	if (s->watch)
		return PQsocket(s->watch);
	if (s->watch_delay_s && pg_mono_ms() < s->watch_next_ms) {
		ctl_pg_fail(s, CTL_STORE_EIO,
		            "watch: the last connect failed; next try in %d s",
		            s->watch_delay_s);
		return -1;
	}
	PGconn *w = ctl_pg_connect(s->url);
	if (!w || PQstatus(w) != CONNECTION_OK) {
		pg_err_scrub(s->base.errmsg, sizeof s->base.errmsg,
		             "watch: ", w ? PQerrorMessage(w) : "out of memory", s->url);
		PQfinish(w);
		return pg_watch_failed(s);
	}
	PGresult *r = PQexec(w, "LISTEN " CTL_STORE_CHANNEL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok || PQsetnonblocking(w, 1) != 0) {
		ctl_pg_fail(s, CTL_STORE_EIO, "watch: LISTEN: %s", PQerrorMessage(w));
		pg_chomp(s->base.errmsg);
		PQfinish(w);
		return pg_watch_failed(s);
	}
	s->watch = w;
	s->watch_delay_s = 0;
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

static int pg_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	static const char *const ins =
	    "INSERT INTO meta (id, mesh_id, v4_prefix, v4_bits, ula, ula_bits, domain,"
	    " server_public, created) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)";
	struct pg_store *s = PG(st);
	const char *domain = p->domain ? p->domain : CTL_DEFAULT_DOMAIN;
	uint8_t id[16], ula[16] = {0xfd};
	char hex[CTL_MESH_ID_LEN + 1];

	if (!ctl_store_domain_ok(domain))
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
    .node_reap = ctl_pg_node_reap,
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
