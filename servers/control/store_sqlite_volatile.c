/* The SQLite control store's volatile fields (endpoints, home relay, online,
 * last seen) of many nodes in one transaction: the server keeps them in
 * memory and writes them in batches; and the several-servers state (which
 * server holds each online node, the servers' beats), where a beat or a
 * clean stop marks a server's nodes offline in one statement. These
 * transactions run with synchronous=NORMAL (in WAL mode: no fsync at
 * commit; a crash of the process loses nothing, a power cut may lose the
 * last batches), everything else stays FULL. */
#include "servers/control/store_sqlite_int.h"

#include "core/util/log.h"

#include <stdio.h>
#include <string.h>

static int sq_sync(struct sq_store *s, bool normal)
{
	return ctl_sq_exec(s, normal ? "PRAGMA synchronous = NORMAL"
	                             : "PRAGMA synchronous = FULL");
}

/* Ends the transaction (ctl_sq_end) and puts synchronous back to FULL. */
static int sq_end_normal(struct sq_store *s, int rc)
{
	rc = ctl_sq_end(s, rc);
	int r = sq_sync(s, false);
	return rc ? rc : r;
}

/* One node of a batch: reads what is stored, writes what differs; *entry
 * says whether others' maps change (then the row gets version *v, bumped
 * once per batch on first need). Online makes this server the node's
 * holder (a re-assertion, CTL_UPD_REASSERT, only when the row is offline
 * or its holder has no servers row: a leftover connection does not take
 * back a node that moved); offline applies only while it is (a node that
 * moved to another server stays online there), the rest of the write
 * applies anyway; so does seen_ip (the holder's only). */
static int sq_vol_one(struct sq_store *s, const struct ctl_node_vol *n, int64_t *v,
                      bool *entry)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT endpoints, home_relay, online, "
	                                 "last_seen, online_server, seen_ip, "
	                                 "(SELECT COUNT(*) FROM servers WHERE "
	                                 "servers.id = nodes.online_server) "
	                                 "FROM nodes WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, n->id);
	int r = sqlite3_step(q);
	if (r != SQLITE_ROW) {
		ctl_sq_done(q);
		return r == SQLITE_DONE ? 0 : ctl_sq_dberr(s, "node batch");
	}
	char eps[CTL_STORE_ENDPOINTS_MAX + 1];
	ctl_sq_text(eps, sizeof eps, q, 0);
	int home = sqlite3_column_int(q, 1);
	bool online = sqlite3_column_int(q, 2) != 0;
	int64_t seen = sqlite3_column_int64(q, 3);
	int64_t holder = sqlite3_column_int64(q, 4);
	char sip[CTL_STORE_SEEN_MAX + 1];
	ctl_sq_text(sip, sizeof sip, q, 5);
	bool holder_live = sqlite3_column_int64(q, 6) > 0;
	ctl_sq_done(q);
	bool changed = (n->mask & CTL_UPD_ENDPOINTS) && strcmp(eps, n->endpoints) != 0;
	if (n->mask & CTL_UPD_ENDPOINTS)
		snprintf(eps, sizeof eps, "%s", n->endpoints);
	changed = changed || ((n->mask & CTL_UPD_HOME_RELAY) && home != n->home_relay);
	bool held_elsewhere = online && holder && holder != s->server_id && holder_live;
	bool set_on = (n->mask & CTL_UPD_ONLINE) &&
	              !((n->mask & CTL_UPD_REASSERT) && n->online && held_elsewhere) &&
	              (n->online || !online || !s->server_id || holder == s->server_id);
	bool on = set_on ? n->online : online;
	changed = changed || on != online;
	int64_t hold = !on ? 0 : set_on ? s->server_id : holder;
	/* seen_ip only from the holder (before or after this write) or
	 * without an id: a late batch from a server the node left must not
	 * overwrite where it is seen now */
	bool set_sip = (n->mask & CTL_UPD_SEEN) &&
	               (!s->server_id || holder == s->server_id || hold == s->server_id);
	changed = changed || (set_sip && strcmp(sip, n->seen_ip) != 0);
	if (set_sip)
		snprintf(sip, sizeof sip, "%s", n->seen_ip);
	int64_t ls = (n->mask & CTL_UPD_LAST_SEEN) ? n->last_seen : seen;
	/* last_seen of a node that stays online is in nobody's map */
	*entry = changed || n->touch || (!on && ls != seen);
	if (!*entry && ls == seen && hold == holder)
		return 0;
	if (*entry && !*v) {
		int rc = ctl_sq_bump(s, v);
		if (rc)
			return rc;
	}
	q = ctl_sq_prep(s, "UPDATE nodes SET endpoints = ?2, home_relay = ?3, "
	                   "online = ?4, last_seen = ?5, version = CASE WHEN ?6 > 0 "
	                   "THEN ?6 ELSE version END, online_server = ?7, seen_ip = ?8 "
	                   "WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, n->id);
	sqlite3_bind_text(q, 2, eps, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 3, (n->mask & CTL_UPD_HOME_RELAY) ? n->home_relay : home);
	sqlite3_bind_int(q, 4, on);
	sqlite3_bind_int64(q, 5, ls);
	sqlite3_bind_int64(q, 6, *entry ? *v : 0);
	sqlite3_bind_int64(q, 7, hold);
	sqlite3_bind_text(q, 8, sip, -1, SQLITE_TRANSIENT);
	return ctl_sq_step_done(s, q, "node batch");
}

int ctl_sq_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v, size_t n,
                            size_t *changed)
{
	struct sq_store *s = SQ(st);
	size_t k = 0;
	if (changed)
		*changed = 0;
	for (size_t i = 0; i < n; i++)
		if ((v[i].mask & CTL_UPD_ENDPOINTS) &&
		    !memchr(v[i].endpoints, 0, sizeof v[i].endpoints))
			return ctl_sq_fail(s, CTL_STORE_EINVAL,
			                   "endpoints longer than %d",
			                   CTL_STORE_ENDPOINTS_MAX);
		else if ((v[i].mask & CTL_UPD_SEEN) &&
		         !memchr(v[i].seen_ip, 0, sizeof v[i].seen_ip))
			return ctl_sq_fail(s, CTL_STORE_EINVAL, "seen_ip longer than %d",
			                   CTL_STORE_SEEN_MAX);
	if (n == 0)
		return 0;
	int rc = sq_sync(s, true);
	if (rc == 0)
		rc = ctl_sq_begin(s);
	if (rc) {
		sq_sync(s, false);
		return rc;
	}
	int64_t ver = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool entry = false;
		rc = sq_vol_one(s, &v[i], &ver, &entry);
		k += entry;
	}
	if (rc == 0)
		rc = ctl_sq_fault(s, "update:before-commit");
	rc = sq_end_normal(s, rc);
	if (rc == 0 && changed)
		*changed = k;
	return rc;
}

int ctl_sq_node_offline_all(struct ctl_store *st, int64_t now, size_t *n)
{
	struct sq_store *s = SQ(st);
	if (n)
		*n = 0;
	int rc = sq_sync(s, true);
	if (rc == 0)
		rc = ctl_sq_begin(s);
	if (rc) {
		sq_sync(s, false);
		return rc;
	}
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT COUNT(*) FROM nodes WHERE online = 1");
	int64_t cnt = 0, ver = 0;
	if (!q) {
		rc = CTL_STORE_EIO;
	} else {
		int r = sqlite3_step(q);
		cnt = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
		ctl_sq_done(q);
		if (r != SQLITE_ROW)
			rc = ctl_sq_dberr(s, "offline all");
	}
	if (rc == 0 && cnt > 0)
		rc = ctl_sq_bump(s, &ver);
	q = rc || cnt == 0 ? NULL
	                   : ctl_sq_prep(s, "UPDATE nodes SET online = 0, last_seen = "
	                                    "?1, version = ?2 WHERE online = 1");
	if (q) {
		sqlite3_bind_int64(q, 1, now);
		sqlite3_bind_int64(q, 2, ver);
		rc = ctl_sq_step_done(s, q, "offline all");
	} else if (rc == 0 && cnt > 0) {
		rc = CTL_STORE_EIO;
	}
	if (rc == 0)
		rc = ctl_sq_fault(s, "update:before-commit");
	rc = sq_end_normal(s, rc);
	if (rc == 0 && n)
		*n = (size_t)cnt;
	return rc;
}

/* ---- several servers on one store ------------------------------------- */

void ctl_sq_set_server(struct ctl_store *st, int64_t server_id)
{
	SQ(st)->server_id = server_id;
}

/* Which online nodes a beat sweeps: held by none (rows from before), by a
 * server whose beat is older than ?4, or by one without a row (forgotten
 * by an earlier sweep: it was taken for dead; it writes its row again at
 * its next beat and its nodes online as they talk to it). ?3: this
 * server, alive by definition. */
#define SQ_BEAT_WHERE                                                                    \
	" WHERE online = 1 AND (online_server = 0 OR online_server NOT IN "              \
	"(SELECT id FROM servers WHERE id = ?3 OR beat >= ?4))"
/* What a leave marks offline: this server's nodes (all, without an id). */
#define SQ_LEAVE_WHERE " WHERE online = 1 AND (?3 = 0 OR online_server = ?3)"

static const char sq_beat_count[] = "SELECT COUNT(*) FROM nodes" SQ_BEAT_WHERE;
static const char sq_beat_update[] = "UPDATE nodes SET online = 0, online_server = 0, "
                                     "last_seen = ?1, version = ?2" SQ_BEAT_WHERE;
static const char sq_leave_count[] = "SELECT COUNT(*) FROM nodes" SQ_LEAVE_WHERE;
static const char sq_leave_update[] = "UPDATE nodes SET online = 0, online_server = 0, "
                                      "last_seen = ?1, version = ?2" SQ_LEAVE_WHERE;

/* Binds the server id (?3) and the oldest live beat (?4, if used). */
static void sq_bind_sweep(struct sq_store *s, sqlite3_stmt *q, int64_t live_from)
{
	sqlite3_bind_int64(q, 3, s->server_id);
	if (sqlite3_bind_parameter_count(q) >= 4)
		sqlite3_bind_int64(q, 4, live_from);
}

/* Inside a transaction: marks offline (last_seen now) the online nodes
 * that count_sql / update_sql select, with one version bump if any;
 * *n: how many. */
static int sq_sweep(struct sq_store *s, const char *count_sql, const char *update_sql,
                    int64_t now, int64_t live_from, size_t *n)
{
	sqlite3_stmt *q = ctl_sq_prep(s, count_sql);
	if (!q)
		return CTL_STORE_EIO;
	sq_bind_sweep(s, q, live_from);
	int r = sqlite3_step(q);
	int64_t cnt = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (r != SQLITE_ROW)
		return ctl_sq_dberr(s, "nodes of stopped servers");
	*n = (size_t)cnt;
	if (cnt == 0)
		return 0;
	int64_t ver;
	int rc = ctl_sq_bump(s, &ver);
	if (rc)
		return rc;
	q = ctl_sq_prep(s, update_sql);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, now);
	sqlite3_bind_int64(q, 2, ver);
	sq_bind_sweep(s, q, live_from);
	return ctl_sq_step_done(s, q, "nodes of stopped servers offline");
}

/* Runs a statement with this server's id as ?1 and now as ?2. */
static int sq_server_row(struct sq_store *s, const char *sql, int64_t now,
                         const char *what)
{
	sqlite3_stmt *q = ctl_sq_prep(s, sql);
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, s->server_id);
	if (sqlite3_bind_parameter_count(q) >= 2)
		sqlite3_bind_int64(q, 2, now);
	return ctl_sq_step_done(s, q, what);
}

/* Another server's beat far ahead of now (a host whose clock is ahead;
 * SQLite's servers share a host, so a changed clock): said once. */
static void sq_beat_check_future(struct sq_store *s, int64_t now)
{
	sqlite3_stmt *q;
	if (s->warned_future ||
	    !(q = ctl_sq_prep(s, "SELECT max(beat) FROM servers WHERE id != ?1")))
		return;
	sqlite3_bind_int64(q, 1, s->server_id);
	int64_t newest = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	ctl_sq_done(q);
	if (newest <= now + CTL_BEAT_FUTURE_MAX)
		return;
	s->warned_future = true;
	log_warn("mesh-control: another server's beat is %lld s ahead of this "
	         "host's clock; check the clocks (its nodes may stay online up to "
	         "that long after it stops)",
	         (long long)(newest - now));
}

/* A beat is volatile state, as the node batches: synchronous=NORMAL. A
 * handle whose previous beat is older than dead_after (this server was
 * paused, or the store was away) only beats, and sweeps again only
 * dead_after later: the other servers' beats may have failed as long as
 * this one's did, and each needs up to a beat period to come back; one
 * beat's wait may be shorter than that (ctl_store_server_beat). */
int ctl_sq_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                       size_t *swept)
{
	struct sq_store *s = SQ(st);
	size_t n = 0;
	if (swept)
		*swept = 0;
	if (dead_after < 1)
		return ctl_sq_fail(s, CTL_STORE_EINVAL,
		                   "server beat: dead_after %lld s: must be at least 1 s",
		                   (long long)dead_after);
	int rc = sq_sync(s, true);
	if (rc == 0)
		rc = ctl_sq_begin(s);
	if (rc) {
		sq_sync(s, false);
		return rc;
	}
	if (s->server_id)
		rc = sq_server_row(s,
		                   "INSERT INTO servers (id, beat, started) VALUES (?1, ?2, "
		                   "?2) ON CONFLICT (id) DO UPDATE SET beat = excluded.beat",
		                   now, "server beat");
	bool stale = s->last_beat && s->last_beat < now - dead_after;
	bool hold = stale || now < s->sweep_after;
	if (rc == 0 && !hold)
		rc = sq_sweep(s, sq_beat_count, sq_beat_update, now, now - dead_after, &n);
	if (rc == 0 && !hold)
		rc = sq_server_row(s, "DELETE FROM servers WHERE id != ?1 AND beat < ?2",
		                   now - dead_after, "forgetting stopped servers");
	if (rc == 0)
		rc = ctl_sq_fault(s, "update:before-commit");
	rc = sq_end_normal(s, rc);
	if (rc == 0) {
		s->last_beat = now;
		if (stale)
			s->sweep_after = now + dead_after;
		sq_beat_check_future(s, now);
	}
	if (rc == 0 && swept)
		*swept = n;
	return rc;
}

int ctl_sq_server_leave(struct ctl_store *st, int64_t now, size_t *n)
{
	struct sq_store *s = SQ(st);
	size_t k = 0;
	if (n)
		*n = 0;
	int rc = sq_sync(s, true);
	if (rc == 0)
		rc = ctl_sq_begin(s);
	if (rc) {
		sq_sync(s, false);
		return rc;
	}
	rc = sq_sweep(s, sq_leave_count, sq_leave_update, now, 0, &k);
	if (rc == 0 && s->server_id)
		rc = sq_server_row(s, "DELETE FROM servers WHERE id = ?1", now,
		                   "server leave");
	if (rc == 0)
		rc = ctl_sq_fault(s, "update:before-commit");
	rc = sq_end_normal(s, rc);
	if (rc == 0 && n)
		*n = k;
	return rc;
}
