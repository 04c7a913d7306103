/* The PostgreSQL control store's volatile fields (endpoints, home relay,
 * online, last seen) of many nodes in one transaction, and the
 * several-servers bookkeeping (ctl_store_set_server: who holds each online
 * node, the servers' heartbeats, the sweep of a dead server's nodes).
 *
 * A batch is a few statements whatever its size: the nodes' values travel
 * as arrays (one parameter per column) and one UPDATE ... FROM unnest()
 * compares and writes them all, so 10,000 nodes cost one round trip, not
 * 10,000. Like SQLite's synchronous=NORMAL for these transactions they
 * commit with synchronous_commit off: a crash of the database server may
 * lose the last batches (never half of one); everything else waits for
 * its WAL flush. */
#include "servers/control/store_pg_int.h"

#include "core/util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- array parameters ------------------------------------------------ */

/* A PostgreSQL array literal ("{1,NULL,\"a\\\"b\"}") built in memory. */
struct pg_arr {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void arr_put(struct pg_arr *a, const char *s, size_t n)
{
	if (a->oom)
		return;
	if (a->len + n + 1 > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		while (cap < a->len + n + 1)
			cap *= 2;
		char *nb = realloc(a->buf, cap);
		if (!nb) {
			a->oom = true;
			return;
		}
		a->buf = nb;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, s, n);
	a->len += n;
	a->buf[a->len] = 0;
}

static void arr_sep(struct pg_arr *a)
{
	arr_put(a, a->len ? "," : "{", 1);
}

static void arr_int(struct pg_arr *a, bool null, int64_t v)
{
	char num[24];
	arr_sep(a);
	if (null)
		arr_put(a, "NULL", 4);
	else
		arr_put(a, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)v));
}

/* A quoted element: every '"' and '\' escaped, so no value can end the
 * element or the array early. */
static void arr_text(struct pg_arr *a, bool null, const char *s)
{
	arr_sep(a);
	if (null) {
		arr_put(a, "NULL", 4);
		return;
	}
	arr_put(a, "\"", 1);
	for (const char *p = s; *p; p++) {
		size_t run = strcspn(p, "\"\\");
		arr_put(a, p, run);
		p += run;
		if (!*p)
			break;
		arr_put(a, "\\", 1);
		arr_put(a, p, 1);
	}
	arr_put(a, "\"", 1);
}

static void arr_end(struct pg_arr *a)
{
	if (a->len == 0)
		arr_put(a, "{", 1);
	arr_put(a, "}", 1);
}

static void arr_free(struct pg_arr *a)
{
	free(a->buf);
	memset(a, 0, sizeof *a);
}

/* ---- batches ------------------------------------------------------- */

/* Begins a volatile transaction (see the top of the file) and reads the
 * version a map change in it will get: the meta row is locked by
 * ctl_pg_begin, so nobody else can bump in between. */
static int pg_vol_begin(struct pg_store *s, int64_t *next)
{
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_exec(s, "SET LOCAL synchronous_commit TO off");
	PGresult *q =
	    rc ? NULL
	       : ctl_pg_query(s, "map version",
	                      "SELECT map_version FROM meta WHERE id = 1", NULL, &rc);
	if (q) {
		if (PQntuples(q) == 1)
			*next = ctl_pg_int(q, 0, 0) + 1;
		else
			rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND,
			                 "store not initialised (run init)");
		PQclear(q);
	}
	if (rc)
		return ctl_pg_end(s, rc);
	return 0;
}

/* Bumps the map version to next when something changed (the rows already
 * carry next), then commits; rc != 0 rolls back. */
static int pg_vol_end(struct pg_store *s, int rc, bool changed, int64_t next,
                      const char *point)
{
	if (rc == 0 && changed) {
		int64_t v = 0;
		rc = ctl_pg_bump(s, &v);
		if (rc == 0 && v != next)
			rc = ctl_pg_fail(s, CTL_STORE_EIO,
			                 "map version moved from %lld to %lld inside a "
			                 "locked batch",
			                 (long long)(next - 1), (long long)v);
	}
	if (rc == 0)
		rc = ctl_pg_fault(s, point);
	return ctl_pg_end(s, rc);
}

/* One statement for a chunk of a batch (no id twice): per node, the new
 * values are the given ones where the mask has them, else the stored ones.
 * Online makes this server ($7) the holder (a re-assertion, onl 2, only
 * when the row is offline or its holder has no servers row: "w" turns a
 * blocked one into no online write), offline makes it none, and an
 * offline write applies only while this server holds the node (or without
 * an id): one that moved to another server stays online there, the rest
 * of the write applies anyway. seen_ip is written only by the node's
 * holder (before or after this write) or without an id: a late batch from
 * a server the node left must not overwrite where it is now seen. "entry"
 * is whether others' maps change
 * (endpoints, home relay, online, seen_ip, the last_seen of a node that
 * is offline, or touched): those rows get version $8. A row is written when
 * its entry, its last_seen or its holder changes. The result: how many
 * entries. */
static const char pg_batch_sql[] =
    "WITH v0 AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], "
    "$4::bigint[], $5::int[], $6::int[], $9::text[]) "
    "AS v0(id, eps, home, seen, onl, touch, sip)), "
    "v AS (SELECT v0.id, v0.eps, v0.home, v0.seen, v0.touch, v0.sip, "
    "CASE WHEN v0.onl = 2 AND n.online <> 0 AND n.online_server NOT IN "
    "(0, $7::bigint) AND EXISTS (SELECT 1 FROM servers sv WHERE sv.id = "
    "n.online_server) THEN NULL WHEN v0.onl = 2 THEN 1 ELSE v0.onl END AS onl "
    "FROM v0 JOIN nodes n ON n.id = v0.id), "
    "c AS (SELECT n.id, v.touch, v.onl AS w_on, n.endpoints AS o_eps, "
    "n.home_relay AS o_home, n.online AS o_on, n.last_seen AS o_seen, "
    "n.online_server AS o_srv, n.seen_ip AS o_sip, "
    "COALESCE(v.eps, n.endpoints) AS eps, COALESCE(v.home, n.home_relay) AS home, "
    "COALESCE(v.seen, n.last_seen) AS seen, CASE WHEN v.sip IS NOT NULL AND "
    "($7::bigint = 0 OR n.online_server = $7::bigint OR COALESCE(v.onl, 0) <> 0) "
    "THEN v.sip ELSE n.seen_ip END AS sip, "
    "CASE WHEN v.onl IS NULL THEN n.online WHEN v.onl <> 0 THEN 1 "
    "WHEN n.online = 0 OR $7::bigint = 0 OR n.online_server = $7::bigint THEN 0 "
    "ELSE n.online END AS onl "
    "FROM v JOIN nodes n ON n.id = v.id), "
    "d AS (SELECT *, (eps <> o_eps OR home <> o_home OR onl <> o_on OR touch <> 0 "
    "OR sip <> o_sip OR (onl = 0 AND seen <> o_seen)) AS entry, "
    "CASE WHEN onl = 0 THEN 0 WHEN w_on <> 0 THEN $7::bigint ELSE o_srv END AS srv "
    "FROM c), "
    "u AS (UPDATE nodes n SET endpoints = d.eps, home_relay = d.home, "
    "online = d.onl, last_seen = d.seen, online_server = d.srv, seen_ip = d.sip, "
    "version = CASE WHEN d.entry THEN $8::bigint ELSE n.version END "
    "FROM d WHERE n.id = d.id AND (d.entry OR d.seen <> d.o_seen OR "
    "d.srv <> d.o_srv) RETURNING d.entry) "
    "SELECT COUNT(*) FILTER (WHERE entry) FROM u";

static int pg_batch_chunk(struct pg_store *s, const struct ctl_node_vol *v, size_t n,
                          int64_t next, size_t *entries)
{
	struct pg_arr a[7] = {{0}};
	struct pg_params p = {.n = 0};
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned m = v[i].mask;
		arr_int(&a[0], false, v[i].id);
		arr_text(&a[1], !(m & CTL_UPD_ENDPOINTS), v[i].endpoints);
		arr_int(&a[2], !(m & CTL_UPD_HOME_RELAY), v[i].home_relay);
		arr_int(&a[3], !(m & CTL_UPD_LAST_SEEN), v[i].last_seen);
		/* 2: online as a re-assertion (see the statement) */
		arr_int(&a[4], !(m & CTL_UPD_ONLINE),
		        v[i].online ? ((m & CTL_UPD_REASSERT) ? 2 : 1) : 0);
		arr_int(&a[5], false, v[i].touch);
		arr_text(&a[6], !(m & CTL_UPD_SEEN), v[i].seen_ip);
	}
	for (int i = 0; i < 7; i++) {
		arr_end(&a[i]);
		if (a[i].oom)
			rc = ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < 6; i++)
		ctl_pg_p_text(&p, a[i].buf);
	ctl_pg_p_int(&p, s->server_id);
	ctl_pg_p_int(&p, next);
	ctl_pg_p_text(&p, a[6].buf); /* $9 */
	PGresult *q = rc ? NULL : ctl_pg_query(s, "node batch", pg_batch_sql, &p, &rc);
	if (q) {
		*entries += PQntuples(q) == 1 ? (size_t)ctl_pg_int(q, 0, 0) : 0;
		PQclear(q);
	}
	for (int i = 0; i < 7; i++)
		arr_free(&a[i]);
	return rc;
}

/* How many of v[0..n) (at most max) hold no id twice: one UPDATE cannot
 * write a row twice, so a batch that names a node again continues in the
 * next statement, which sees the first write (as SQLite's loop does). */
static size_t pg_chunk_len(const struct ctl_node_vol *v, size_t n, size_t max,
                           int64_t *set, size_t setcap)
{
	size_t i;
	memset(set, 0, setcap * sizeof *set);
	for (i = 0; i < n && i < max; i++) {
		int64_t id = v[i].id;
		if (id <= 0) /* matches no row: twice is harmless */
			continue;
		size_t j =
		    (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 32) & (setcap - 1);
		while (set[j] && set[j] != id)
			j = (j + 1) & (setcap - 1);
		if (set[j])
			break;
		set[j] = id;
	}
	return i;
}

#define PG_BATCH_CHUNK 8192

int ctl_pg_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v, size_t n,
                            size_t *changed)
{
	struct pg_store *s = PG(st);
	size_t k = 0;
	int64_t next = 0;

	if (changed)
		*changed = 0;
	for (size_t i = 0; i < n; i++)
		if ((v[i].mask & CTL_UPD_ENDPOINTS) &&
		    !memchr(v[i].endpoints, 0, sizeof v[i].endpoints))
			return ctl_pg_fail(s, CTL_STORE_EINVAL,
			                   "endpoints longer than %d",
			                   CTL_STORE_ENDPOINTS_MAX);
		else if ((v[i].mask & CTL_UPD_SEEN) &&
		         !memchr(v[i].seen_ip, 0, sizeof v[i].seen_ip))
			return ctl_pg_fail(s, CTL_STORE_EINVAL, "seen_ip longer than %d",
			                   CTL_STORE_SEEN_MAX);
	if (n == 0)
		return 0;
	size_t setcap = 2 * PG_BATCH_CHUNK; /* a power of two, at most half full */
	int64_t *set = malloc(setcap * sizeof *set);
	if (!set)
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	int rc = pg_vol_begin(s, &next);
	if (rc) {
		free(set);
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0;) {
		size_t len = pg_chunk_len(v + i, n - i, PG_BATCH_CHUNK, set, setcap);
		rc = pg_batch_chunk(s, v + i, len, next, &k);
		i += len;
	}
	free(set);
	rc = pg_vol_end(s, rc, k > 0, next, "update:before-commit");
	if (rc == 0 && changed)
		*changed = k;
	return rc;
}

/* Marks offline (last_seen = $1, version = $2, held by none) the online
 * nodes the statement's WHERE picks, in one statement; *n: how many. The
 * arguments after those two: $3, and $4 when nargs is 4. */
static int pg_offline_where(struct pg_store *s, const char *sql, int64_t now,
                            int64_t next, int nargs, int64_t a3, int64_t a4, size_t *n)
{
	struct pg_params p = {.n = 0};
	int rc;
	ctl_pg_p_int(&p, now);
	ctl_pg_p_int(&p, next);
	if (nargs >= 3)
		ctl_pg_p_int(&p, a3);
	if (nargs >= 4)
		ctl_pg_p_int(&p, a4);
	PGresult *q = ctl_pg_query(s, "nodes offline", sql, &p, &rc);
	if (!q)
		return rc;
	*n = PQntuples(q) == 1 ? (size_t)ctl_pg_int(q, 0, 0) : 0;
	PQclear(q);
	return 0;
}

int ctl_pg_node_offline_all(struct ctl_store *st, int64_t now, size_t *n)
{
	struct pg_store *s = PG(st);
	int64_t next = 0;
	size_t cnt = 0;
	if (n)
		*n = 0;
	int rc = pg_vol_begin(s, &next);
	if (rc)
		return rc;
	rc = pg_offline_where(s,
	                      "WITH u AS (UPDATE nodes SET online = 0, last_seen = $1, "
	                      "version = $2, online_server = 0 WHERE online = 1 "
	                      "RETURNING 1) SELECT COUNT(*) FROM u",
	                      now, next, 2, 0, 0, &cnt);
	rc = pg_vol_end(s, rc, cnt > 0, next, "update:before-commit");
	if (rc == 0 && n)
		*n = cnt;
	return rc;
}

/* ---- several servers ----------------------------------------------- */

void ctl_pg_set_server(struct ctl_store *st, int64_t server_id)
{
	PG(st)->server_id = server_id;
}

/* Which online nodes a beat sweeps: held by none (rows from before), by a
 * server whose beat is older than $4 = now - dead_after, or by one without
 * a row (forgotten by an earlier sweep: it was taken for dead; it writes
 * its row again at its next beat and its nodes online as they talk to
 * it). $3: this server, alive by definition. The same rule as SQLite's
 * (store_sqlite_volatile.c). */
static const char pg_beat_sweep[] =
    "WITH u AS (UPDATE nodes SET online = 0, online_server = 0, last_seen = $1, "
    "version = $2 WHERE online = 1 AND (online_server = 0 OR online_server NOT IN "
    "(SELECT id FROM servers WHERE id = $3 OR beat >= $4)) RETURNING 1) "
    "SELECT COUNT(*) FROM u";

/* The database's clock (every server's beat is written and judged by it,
 * so the hosts' clocks need not agree) and the newest other server's beat
 * (0: none). */
static const char pg_beat_clock[] =
    "SELECT extract(epoch FROM clock_timestamp())::bigint, "
    "COALESCE((SELECT max(beat) FROM servers WHERE id <> $1), 0)";

static int pg_beat_read_clock(struct pg_store *s, int64_t *now, int64_t *newest)
{
	struct pg_params p = {.n = 0};
	int rc;
	ctl_pg_p_int(&p, s->server_id);
	PGresult *q = ctl_pg_query(s, "database clock", pg_beat_clock, &p, &rc);
	if (!q)
		return rc;
	*now = ctl_pg_int(q, 0, 0);
	*newest = ctl_pg_int(q, 0, 1);
	PQclear(q);
	return *now > 0 ? 0 : ctl_pg_fail(s, CTL_STORE_EIO, "database clock: no answer");
}

/* A beat far in the future of the database clock comes from a server
 * that writes its own host's clock (an older version): say so once. */
static void pg_beat_check_future(struct pg_store *s, int64_t now, int64_t newest)
{
	if (newest <= now + CTL_BEAT_FUTURE_MAX || s->warned_future)
		return;
	s->warned_future = true;
	log_warn("mesh-control: another server's beat is %lld s ahead of the "
	         "database's clock: it runs an older mesh-control that beats by "
	         "its own clock; upgrade it (its nodes may stay online up to "
	         "that long after it stops)",
	         (long long)(newest - now));
}

/* The caller's now is not used: beats, the cutoff, the swept nodes'
 * last_seen and the forgetting all use the database's clock (one clock for
 * all servers; a skew of a few seconds between hosts would otherwise make
 * one server sweep another's live nodes at every beat). A server whose own
 * previous successful beat is older than dead_after (it was paused, or cut
 * off from the database; the others may have forgotten it) only beats this
 * time: the others' beats failed too if the database was away, so it
 * sweeps again only dead_after later (by the database's clock), when each
 * of them has had a full dead_after to beat again -- one beat's wait is
 * not enough when they beat at a slower pace or came back later. */
int ctl_pg_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                       size_t *swept)
{
	struct pg_store *s = PG(st);
	int64_t next = 0, newest = 0;
	size_t cnt = 0;

	(void)now;
	if (swept)
		*swept = 0;
	if (dead_after < 1)
		return ctl_pg_fail(s, CTL_STORE_EINVAL,
		                   "server beat: dead_after %lld s: must be at least 1 s",
		                   (long long)dead_after);
	int rc = pg_vol_begin(s, &next);
	if (rc)
		return rc;
	rc = pg_beat_read_clock(s, &now, &newest);
	bool stale = s->last_beat && s->last_beat < now - dead_after;
	bool hold = stale || now < s->sweep_after;
	struct pg_params p = {.n = 0};
	ctl_pg_p_int(&p, s->server_id);
	ctl_pg_p_int(&p, now);
	if (rc == 0 && s->server_id)
		rc = ctl_pg_cmd(
		    s, "server beat",
		    "INSERT INTO servers (id, beat, started) VALUES ($1, $2, $2) "
		    "ON CONFLICT (id) DO UPDATE SET beat = EXCLUDED.beat",
		    &p, NULL);
	if (rc == 0 && !hold)
		rc = pg_offline_where(s, pg_beat_sweep, now, next, 4, s->server_id,
		                      now - dead_after, &cnt);
	if (rc == 0 && !hold) {
		struct pg_params d = {.n = 0};
		ctl_pg_p_int(&d, s->server_id);
		ctl_pg_p_int(&d, now - dead_after);
		rc = ctl_pg_cmd(s, "forgetting stopped servers",
		                "DELETE FROM servers WHERE id <> $1 AND beat < $2", &d,
		                NULL);
	}
	rc = pg_vol_end(s, rc, cnt > 0, next, "update:before-commit");
	if (rc == 0) {
		s->last_beat = now;
		if (stale)
			s->sweep_after = now + dead_after;
		pg_beat_check_future(s, now, newest);
	}
	if (rc == 0 && swept)
		*swept = cnt;
	return rc;
}

/* This server's nodes offline (every online node without an id: one
 * server), and its row gone. */
int ctl_pg_server_leave(struct ctl_store *st, int64_t now, size_t *n)
{
	struct pg_store *s = PG(st);
	int64_t next = 0;
	size_t cnt = 0;

	if (n)
		*n = 0;
	int rc = pg_vol_begin(s, &next);
	if (rc)
		return rc;
	rc =
	    pg_offline_where(s,
	                     "WITH u AS (UPDATE nodes SET online = 0, online_server = 0, "
	                     "last_seen = $1, version = $2 WHERE online = 1 AND "
	                     "($3::bigint = 0 OR online_server = $3::bigint) "
	                     "RETURNING 1) SELECT COUNT(*) FROM u",
	                     now, next, 3, s->server_id, 0, &cnt);
	if (rc == 0 && s->server_id) {
		struct pg_params p = {.n = 0};
		ctl_pg_p_int(&p, s->server_id);
		rc = ctl_pg_cmd(s, "server leave", "DELETE FROM servers WHERE id = $1",
		                &p, NULL);
	}
	rc = pg_vol_end(s, rc, cnt > 0, next, "update:before-commit");
	if (rc == 0 && n)
		*n = cnt;
	return rc;
}
