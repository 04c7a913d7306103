/* The PostgreSQL control store when something goes wrong around it, on a
 * throwaway cluster (store_engines_fixture.h):
 *  - a server stopped in the middle of a write (its transaction holds the
 *    meta row's lock, idle): another server's write fails within a few
 *    seconds with "the store is busy" instead of waiting for ever, and
 *    once PostgreSQL ends the stopped session (idle in transaction for
 *    5 s) writes go through again;
 *  - the connection's limits (connect_timeout, keepalives, TCP user
 *    timeout) are set unless the URL sets them, and the session's lock,
 *    statement and idle-in-transaction timeouts on every connection;
 *  - the change watch does not reconnect at every poll while the database
 *    cannot be reached: it waits 1 s, then 2, 4 ... 30 s;
 *  - a database restart between two calls: the next read and write work;
 *  - the database down: after a failed reconnect calls fail at once for
 *    1 s, then 2, 4, 5 s, instead of each trying to connect again;
 *  - a key revoke waits for a join that is spending the key; a user
 *    create runs in a transaction (it waits for the write lock);
 *  - beats by the database's clock (a host 15 s ahead sweeps nothing), a
 *    server back from a pause sweeps nothing for dead_after (both engines), and
 *    a beat far in the future is logged once (both engines);
 *  - a role with only DML privileges opens an up-to-date store; a LATIN1
 *    database is refused by the store and by migrate. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "servers/control/migrate.h"
#include "servers/control/store_pg_int.h"
#include "store_engines_fixture.h"

/* The value of a connection option of the store's main connection. */
static void conn_opt(struct ctl_store *st, const char *key, char *out, size_t cap)
{
	PQconninfoOption *o = PQconninfo(PG(st)->db);
	out[0] = 0;
	for (PQconninfoOption *p = o; p && p->keyword; p++)
		if (!strcmp(p->keyword, key) && p->val)
			snprintf(out, cap, "%s", p->val);
	PQconninfoFree(o);
}

static void show(struct ctl_store *st, const char *what, char *out, size_t cap)
{
	char sql[96];
	snprintf(sql, sizeof sql, "SHOW %s", what);
	PGresult *r = PQexec(PG(st)->db, sql);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void connection_limits(void **state)
{
	struct t *t = T(state);
	char v[64];
	conn_opt(t->st, "connect_timeout", v, sizeof v);
	assert_string_equal(v, "3");
	conn_opt(t->st, "keepalives_idle", v, sizeof v);
	assert_string_equal(v, "5");
	conn_opt(t->st, "keepalives_count", v, sizeof v);
	assert_string_equal(v, "3");
	conn_opt(t->st, "tcp_user_timeout", v, sizeof v);
	assert_string_equal(v, "10000");
	conn_opt(t->st, "client_encoding", v, sizeof v);
	assert_string_equal(v, "UTF8");
	show(t->st, "lock_timeout", v, sizeof v);
	assert_string_equal(v, "2s");
	show(t->st, "statement_timeout", v, sizeof v);
	assert_string_equal(v, "4s");
	show(t->st, "idle_in_transaction_session_timeout", v, sizeof v);
	assert_string_equal(v, "5s");

	/* what the URL sets stays as the URL says */
	char url[1100], err[256] = "";
	snprintf(url, sizeof url, "%s connect_timeout=7 keepalives_idle=9", t->url);
	struct ctl_store *st = ctl_store_open_pg(url, err, sizeof err);
	if (!st)
		fail_msg("open: %s", err);
	conn_opt(st, "connect_timeout", v, sizeof v);
	assert_string_equal(v, "7");
	conn_opt(st, "keepalives_idle", v, sizeof v);
	assert_string_equal(v, "9");
	conn_opt(st, "keepalives_interval", v, sizeof v);
	assert_string_equal(v, "2");
	ctl_store_close(st);
}

static void alarm_abort(int sig)
{
	(void)sig;
	static const char m[] = "a store write hung (no lock timeout)\n";
	if (write(2, m, sizeof m - 1) < 0)
		_exit(3);
	group_teardown(NULL); /* the cluster must not outlive us */
	_exit(3);
}

/* Server B stops inside a write, holding the meta row's lock. */
static void stalled_writer_does_not_freeze_the_others(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_store *b = open_store(t);
	PGresult *r =
	    PQexec(PG(b)->db, "BEGIN; SELECT 1 FROM meta WHERE id = 1 FOR UPDATE");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	signal(SIGALRM, alarm_abort);
	alarm(30); /* without the timeouts the write below never returns */
	struct ctl_authkey_params p = {.reusable = true, .now = NOW};
	int rc = ctl_store_key_create(t->st, &p, sec, sizeof sec, NULL);
	double took = since(&t0);
	print_message("blocked write: %d after %.1f s: %s\n", rc, took,
	              ctl_store_errmsg(t->st));
	assert_int_equal(rc, CTL_STORE_EIO);
	assert_true(took < 5);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "the store is busy"));
	size_t swept;
	ctl_store_set_server(t->st, 42);
	assert_int_equal(ctl_store_server_beat(t->st, NOW, 10, &swept), CTL_STORE_EIO);

	/* PostgreSQL ends B's session after 5 s idle in its transaction: the
	 * lock is free and A writes again. */
	do {
		rc = ctl_store_key_create(t->st, &p, sec, sizeof sec, NULL);
	} while (rc != 0 && since(&t0) < 15);
	alarm(0);
	print_message("write went through %.1f s after the stall\n", since(&t0));
	assert_int_equal(rc, 0);
	assert_true(since(&t0) >= 4.5);

	/* B's own session is gone; its next write reconnects and works */
	assert_int_equal(ctl_store_key_create(b, &p, sec, sizeof sec, NULL), 0);
	ctl_store_close(b);
}

/* The watch's database cannot be reached: the first try says why, the
 * next ones within the back-off say when it tries again, without trying. */
static void watch_backs_off(void **state)
{
	struct t *t = T(state);
	struct pg_store *s = PG(t->st);
	char bad[200];
	snprintf(bad, sizeof bad, "postgresql://mesh@/mesh?host=/nonexistent-fx");
	free(s->url);
	s->url = strdup(bad);
	assert_int_equal(ctl_store_watch_fd(t->st), -1);
	print_message("first: %s\n", ctl_store_errmsg(t->st));
	assert_null(strstr(ctl_store_errmsg(t->st), "next try in"));
	assert_int_equal(ctl_store_watch_fd(t->st), -1);
	print_message("second: %s\n", ctl_store_errmsg(t->st));
	assert_non_null(strstr(ctl_store_errmsg(t->st), "next try in 1 s"));
	sleep(1);
	usleep(100 * 1000);
	assert_int_equal(ctl_store_watch_fd(t->st), -1); /* tried again: 2 s now */
	assert_int_equal(ctl_store_watch_fd(t->st), -1);
	print_message("fourth: %s\n", ctl_store_errmsg(t->st));
	assert_non_null(strstr(ctl_store_errmsg(t->st), "next try in 2 s"));
}

/* A join spends a key in an open transaction (it holds the meta lock)
 * while `keys revoke` runs on another server: the revoke waits for the
 * join to commit, and no join after the revoke returned gets in. */
static void revoke_waits_for_a_join_in_progress(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_authkey k;
	struct ctl_authkey_params kp = {.reusable = true, .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &kp, sec, sizeof sec, &k), 0);
	struct ctl_store *b = open_store(t);
	assert_int_equal(ctl_pg_begin(PG(b)), 0);

	fflush(NULL);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char err[256];
		struct ctl_store *c = ctl_store_open_pg(t->url, err, sizeof err);
		_exit(c && ctl_store_key_revoke(c, k.id) == 0 ? 0 : 1);
	}
	usleep(800 * 1000);
	int st = 0;
	assert_int_equal(waitpid(child, &st, WNOHANG), 0); /* still waiting */
	struct ctl_authkey used;
	assert_int_equal(ctl_pg_key_use_tx(PG(b), sec, NOW, &used), 0);
	assert_int_equal(ctl_pg_end(PG(b), 0), 0);
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(ctl_store_key_use(b, sec, NOW, &used), CTL_STORE_EKEY_REVOKED);
	ctl_store_close(b);
}

/* A node online through st (which holds it from then on). */
static int64_t node_on(struct t *t, struct ctl_store *st, uint32_t i)
{
	char sec[CTL_SECRET_MAX];
	struct ctl_node n;
	key(t, true, false, NULL, sec);
	assert_int_equal(reg(t, i, "n", sec, &n), 0);
	struct ctl_node_update u = {.mask = CTL_UPD_ONLINE, .online = true};
	assert_int_equal(ctl_store_node_update(st, n.id, &u), 0);
	return n.id;
}

/* Server 1's host clock is 15 s ahead of server 2's. On PostgreSQL both
 * beat by the database's clock: server 2, beating on time, is alive, and
 * its node stays online. */
static void clock_skew_sweeps_nothing(void **state)
{
	struct t *t = T(state);
	size_t n = 99;
	struct ctl_store *s1 = t->st, *s2 = open_store(t);
	ctl_store_set_server(s1, 111);
	ctl_store_set_server(s2, 222);
	int64_t now = (int64_t)time(NULL);
	assert_int_equal(ctl_store_server_beat(s1, now + 15, 10, &n), 0);
	assert_int_equal(ctl_store_server_beat(s2, now, 10, &n), 0);
	int64_t id = node_on(t, s2, 1);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ctl_store_server_beat(s1, now + 15 + 2 * i, 10, &n), 0);
		assert_int_equal(n, 0);
		assert_int_equal(ctl_store_server_beat(s2, now + 2 * i, 10, &n), 0);
		assert_int_equal(n, 0);
	}
	assert_true(node(t, id).online);
	ctl_store_close(s2);
}

/* Server 1 was paused (or the store was away) for longer than dead_after:
 * server 2 looks dead to it, but server 2 may just have failed to beat
 * too. Its first beat back sweeps nothing, nor do its beats for dead_after
 * more seconds (server 2 gets a full dead_after to beat again); then one
 * does. */
static void stale_server_beats_before_sweeping(void **state)
{
	struct t *t = T(state);
	size_t n = 99;
	int64_t dead = t->e->pg ? 3 : 10, gap = t->e->pg ? 4 : 30;
	struct ctl_store *s1 = t->st, *s2 = open_store(t);
	ctl_store_set_server(s1, 111);
	ctl_store_set_server(s2, 222);
	assert_int_equal(ctl_store_server_beat(s1, NOW, dead, &n), 0);
	assert_int_equal(ctl_store_server_beat(s2, NOW, dead, &n), 0);
	int64_t id = node_on(t, s2, 1);
	if (t->e->pg) /* the database's clock: wait for real */
		sleep((unsigned)gap);
	int64_t v = version(t);
	assert_int_equal(ctl_store_server_beat(s1, NOW + gap, dead, &n), 0);
	assert_int_equal(n, 0);
	assert_true(node(t, id).online);
	assert_int_equal(version(t), v);
	/* the next beat, a second later: still nothing */
	if (t->e->pg)
		sleep(1);
	assert_int_equal(ctl_store_server_beat(s1, NOW + gap + 1, dead, &n), 0);
	assert_int_equal(n, 0);
	assert_true(node(t, id).online);
	if (!t->e->pg) { /* just before dead_after is over: nothing either */
		assert_int_equal(ctl_store_server_beat(s1, NOW + gap + dead - 1, dead, &n), 0);
		assert_int_equal(n, 0);
	}
	/* server 2 stays silent: now it is taken for stopped */
	if (t->e->pg)
		sleep((unsigned)dead - 1);
	assert_int_equal(ctl_store_server_beat(s1, NOW + gap + dead, dead, &n), 0);
	assert_int_equal(n, 1);
	assert_false(node(t, id).online);
	ctl_store_close(s2);
}

/* Runs sql on the test's own database. */
static void db_exec(struct t *t, const char *sql)
{
	PGconn *c = PQconnectdb(t->url);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* A role that may only read and write the rows (no CREATE on the schema,
 * as PostgreSQL 15's public schema for anyone but its owner) opens an
 * up-to-date store and writes to it. */
static void dml_only_role_opens_the_store(void **state)
{
	struct t *t = T(state);
	char sql[1024], url[1200], err[256] = "";
	snprintf(sql, sizeof sql,
	         "CREATE ROLE r_%s LOGIN; GRANT CONNECT ON DATABASE %s TO r_%s;"
	         " REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
	         " GRANT USAGE ON SCHEMA public TO r_%s;"
	         " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA"
	         " public TO r_%s; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public"
	         " TO r_%s",
	         t->db, t->db, t->db, t->db, t->db, t->db);
	db_exec(t, sql);
	snprintf(url, sizeof url, "%s user=r_%s", t->url, t->db);
	struct ctl_store *st = ctl_store_open_pg(url, err, sizeof err);
	if (!st)
		fail_msg("open as a role without CREATE: %s", err);
	char sec[CTL_SECRET_MAX];
	struct ctl_authkey_params p = {.reusable = true, .now = NOW};
	int rc = ctl_store_key_create(st, &p, sec, sizeof sec, NULL);
	if (rc)
		fail_msg("write as that role: %s", ctl_store_errmsg(st));
	ctl_store_close(st);
	snprintf(sql, sizeof sql, "DROP OWNED BY r_%s; DROP ROLE r_%s", t->db, t->db);
	db_exec(t, sql);
}

/* A database whose encoding is not UTF8 is refused, by the store's open
 * and by migrate, with how to make one that is. */
static void non_utf8_database_refused(void **state)
{
	struct t *t = T(state);
	char sql[256], db[80], url[1100], err[512] = "";
	snprintf(db, sizeof db, "%s_latin1", t->db);
	snprintf(sql, sizeof sql,
	         "CREATE DATABASE %s ENCODING 'LATIN1' TEMPLATE template0"
	         " LC_COLLATE 'C' LC_CTYPE 'C'",
	         db);
	assert_true(pg_admin(sql));
	pg_url_for(db, url, sizeof url);
	struct ctl_store *st = ctl_store_open_pg(url, err, sizeof err);
	print_message("open: %s\n", err);
	if (st)
		ctl_store_close(st);
	assert_null(st);
	assert_non_null(strstr(err, "LATIN1"));
	assert_non_null(strstr(err, "createdb -E UTF8"));

	/* migrate: a SQLite mesh to copy, the LATIN1 database as the target */
	char tmp[64] = "/tmp/ctlpgn-mig-XXXXXX", dir[96];
	assert_non_null(mkdtemp(tmp));
	snprintf(dir, sizeof dir, "%s/data", tmp);
	struct ctl_store *sq = ctl_store_open_sqlite(dir, err, sizeof err);
	assert_non_null(sq);
	struct ctl_init_params ip = {.now = NOW};
	assert_int_equal(ctl_store_init(sq, &ip), 0);
	ctl_store_close(sq);
	err[0] = 0;
	struct ctl_mig *m = ctl_mig_open(dir, url, err, sizeof err);
	print_message("migrate: %s\n", err);
	ctl_mig_close(m);
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	assert_null(m);
	assert_non_null(strstr(err, "createdb -E UTF8"));
	snprintf(sql, sizeof sql, "DROP DATABASE %s", db);
	pg_admin(sql);
}

/* Runs sql on the test's database (PostgreSQL) or its control.db. */
static void store_sql(struct t *t, const char *sql)
{
	if (t->e->pg) {
		PGconn *c = PQconnectdb(t->url);
		PGresult *r = PQexec(c, sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fail_msg("%s: %s", sql, PQerrorMessage(c));
		PQclear(r);
		PQfinish(c);
		return;
	}
	char cmd[600];
	snprintf(cmd, sizeof cmd, "sqlite3 %s/control.db \"%s\"", t->dir, sql);
	if (system(cmd) != 0)
		skip(); /* no sqlite3 shell here */
}

/* Beats with stderr captured in buf. */
static void beat_captured(struct ctl_store *st, int64_t now, char *buf, size_t cap)
{
	char path[] = "/tmp/ctlpgn-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	size_t n = 99;
	int rc = ctl_store_server_beat(st, now, 10, &n);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(rc, 0);
	lseek(fd, 0, SEEK_SET);
	ssize_t k = read(fd, buf, cap - 1);
	buf[k > 0 ? k : 0] = 0;
	close(fd);
	unlink(path);
}

/* Another server's beat a minute ahead of the clock (an older server
 * that beats by its own host's clock): said once, not at every beat. */
static void future_beat_warned_once(void **state)
{
	struct t *t = T(state);
	char buf[2048];
	int64_t now = t->e->pg ? (int64_t)time(NULL) : NOW;
	char sql[200];
	snprintf(sql, sizeof sql,
	         "INSERT INTO servers (id, beat, started) VALUES (999, %lld, %lld)",
	         (long long)(now + 60), (long long)now);
	store_sql(t, sql);
	ctl_store_set_server(t->st, 111);
	beat_captured(t->st, now, buf, sizeof buf);
	print_message("first beat: %s", buf);
	assert_non_null(strstr(buf, "s ahead of"));
	beat_captured(t->st, now + 2, buf, sizeof buf);
	assert_null(strstr(buf, "s ahead of"));
}

/* Restarts this run's cluster (pg_ctl keeps its options); false when the
 * cluster is not ours (MESH_TEST_PG_URL). */
static bool restart_cluster(void)
{
	if (!g_pgdir[0])
		return false;
	char cmd[800];
	snprintf(cmd, sizeof cmd,
	         "pgctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl | head -n 1); "
	         "if [ \"$(id -u)\" = 0 ]; then run='runuser -u nobody --'; fi; "
	         "$run $pgctl -D %s/data -m fast -w restart >/dev/null",
	         g_pgdir);
	assert_int_equal(system(cmd), 0);
	return true;
}

/* The database restarts between two calls: the next read and the next
 * write (its BEGIN) each find the connection dead, reconnect, re-prepare
 * and succeed -- the first call after a restart may be a registration. */
static void database_restart_between_calls(void **state)
{
	struct t *t = T(state);
	char sec[CTL_SECRET_MAX];
	struct ctl_authkey *keys = NULL;
	size_t n = 0;
	key(t, true, false, NULL, sec);
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), 0);
	free(keys);
	if (!restart_cluster())
		skip();
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), 0);
	assert_int_equal(n, 1);
	free(keys);
	assert_true(restart_cluster());
	struct ctl_authkey_params p = {.reusable = true, .now = NOW};
	int rc = ctl_store_key_create(t->st, &p, sec, sizeof sec, NULL);
	if (rc)
		fail_msg("write after a restart: %s", ctl_store_errmsg(t->st));
}

/* user create runs in a transaction (behind the meta row's lock), not as
 * a bare statement that the retry after a lost connection could run twice
 * (then "exists already" for a user just created): while another session
 * holds the lock it waits and gives up as "busy"; after, it succeeds. */
static void user_create_in_a_transaction(void **state)
{
	struct t *t = T(state);
	PGconn *c = PQconnectdb(t->url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, "BEGIN; SELECT 1 FROM meta WHERE id = 1 FOR UPDATE");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	struct ctl_user u;
	int rc = ctl_store_user_create(t->st, "alice", NOW, &u);
	print_message("under the lock: %d %s\n", rc, ctl_store_errmsg(t->st));
	PQclear(PQexec(c, "ROLLBACK"));
	PQfinish(c);
	assert_int_equal(rc, CTL_STORE_EIO);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "busy"));
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, &u), 0);
	assert_string_equal(u.name, "alice");
	assert_true(u.id > 0);
	assert_int_equal(ctl_store_user_create(t->st, "alice", NOW, &u), CTL_STORE_EEXISTS);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "exists already"));
}

/* Stops (start false) or starts this run's cluster, with tests/pg.sh's
 * options (a start does not keep them, unlike a restart); false when the
 * cluster is not ours (MESH_TEST_PG_URL). */
static bool cluster_ctl(bool start)
{
	if (!g_pgdir[0])
		return false;
	char cmd[1200];
	snprintf(cmd, sizeof cmd,
	         "pgctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl | head -n 1); "
	         "if [ \"$(id -u)\" = 0 ]; then run='runuser -u nobody --'; fi; "
	         "$run $pgctl -D %s/data -m fast -w -l %s/server.log -o \"-c "
	         "listen_addresses='' -k %s/sock -c fsync=off -c "
	         "synchronous_commit=off -c full_page_writes=off -c "
	         "max_connections=200\" %s >/dev/null",
	         g_pgdir, g_pgdir, g_pgdir, start ? "start" : "stop");
	assert_int_equal(system(cmd), 0);
	return true;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The database is down: after a failed reconnect the calls fail at once
 * ("retrying in 1 s") instead of each trying again (each try may block
 * the server's loop for connect_timeout); the wait doubles; once the
 * database is back a call succeeds within the wait, and the wait is
 * forgotten. */
static void reconnect_backs_off(void **state)
{
	struct t *t = T(state);
	struct ctl_authkey *keys = NULL;
	size_t n = 0;
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), 0);
	free(keys);
	if (!cluster_ctl(false))
		skip();
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), CTL_STORE_EIO);
	print_message("first: %s\n", ctl_store_errmsg(t->st));
	int64_t t0 = mono_ms();
	for (int i = 0; i < 20; i++) {
		int rc = ctl_store_key_list(t->st, &keys, &n);
		if (rc != CTL_STORE_EIO || !strstr(ctl_store_errmsg(t->st), "retrying in 1 s")) {
			cluster_ctl(true);
			fail_msg("call %d: %d %s", i, rc, ctl_store_errmsg(t->st));
		}
	}
	int64_t took = mono_ms() - t0;
	print_message("20 calls: %lld ms; %s\n", (long long)took, ctl_store_errmsg(t->st));
	usleep(1100 * 1000);
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), CTL_STORE_EIO);
	assert_int_equal(ctl_store_key_list(t->st, &keys, &n), CTL_STORE_EIO);
	bool doubled = strstr(ctl_store_errmsg(t->st), "retrying in 2 s") != NULL;
	cluster_ctl(true);
	assert_true(took < 500);
	assert_true(doubled);
	t0 = mono_ms();
	int rc;
	while ((rc = ctl_store_key_list(t->st, &keys, &n)) != 0 && mono_ms() - t0 < 5000)
		usleep(100 * 1000);
	if (rc)
		fail_msg("no call succeeded 5 s after the restart: %s", ctl_store_errmsg(t->st));
	free(keys);
	print_message("back after %lld ms\n", (long long)(mono_ms() - t0));
	assert_true(mono_ms() - t0 <= 2200);
	assert_int_equal(PG(t->st)->reset_delay_s, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    STORE_PG_ONLY(connection_limits),
	    STORE_PG_ONLY(stalled_writer_does_not_freeze_the_others),
	    STORE_PG_ONLY(watch_backs_off),
	    STORE_PG_ONLY(database_restart_between_calls),
	    STORE_PG_ONLY(reconnect_backs_off),
	    STORE_PG_ONLY(user_create_in_a_transaction),
	    STORE_PG_ONLY(revoke_waits_for_a_join_in_progress),
	    STORE_PG_ONLY(clock_skew_sweeps_nothing),
	    STORE_BOTH(stale_server_beats_before_sweeping),
	    STORE_PG_ONLY(dml_only_role_opens_the_store),
	    STORE_BOTH(future_beat_warned_once),
	    STORE_PG_ONLY(non_utf8_database_refused),
	};
	return cmocka_run_group_tests_name("control_store_pg_robust", tests, group_setup,
	                                   group_teardown);
}
