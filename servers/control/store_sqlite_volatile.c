/* The SQLite control store's volatile fields (endpoints, home relay, online,
 * last seen) of many nodes in one transaction: the server keeps them in
 * memory and writes them in batches, and marks every node offline at start
 * and stop in one statement. These transactions run with synchronous=NORMAL
 * (in WAL mode: no fsync at commit; a crash of the process loses nothing, a
 * power cut may lose the last batches), everything else stays FULL. */
#include "servers/control/store_sqlite_int.h"

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
 * once per batch on first need). */
static int sq_vol_one(struct sq_store *s, const struct ctl_node_vol *n, int64_t *v,
                      bool *entry)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT endpoints, home_relay, online, "
	                                 "last_seen FROM nodes WHERE id = ?1");
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
	ctl_sq_done(q);
	bool changed = (n->mask & CTL_UPD_ENDPOINTS) && strcmp(eps, n->endpoints) != 0;
	if (n->mask & CTL_UPD_ENDPOINTS)
		snprintf(eps, sizeof eps, "%s", n->endpoints);
	changed = changed || ((n->mask & CTL_UPD_HOME_RELAY) && home != n->home_relay);
	bool on = (n->mask & CTL_UPD_ONLINE) ? n->online : online;
	changed = changed || on != online;
	int64_t ls = (n->mask & CTL_UPD_LAST_SEEN) ? n->last_seen : seen;
	/* last_seen of a node that stays online is in nobody's map */
	*entry = changed || n->touch || (!on && ls != seen);
	if (!*entry && ls == seen)
		return 0;
	if (*entry && !*v) {
		int rc = ctl_sq_bump(s, v);
		if (rc)
			return rc;
	}
	q = ctl_sq_prep(s, "UPDATE nodes SET endpoints = ?2, home_relay = ?3, "
	                   "online = ?4, last_seen = ?5, version = CASE WHEN ?6 > 0 "
	                   "THEN ?6 ELSE version END WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, n->id);
	sqlite3_bind_text(q, 2, eps, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 3, (n->mask & CTL_UPD_HOME_RELAY) ? n->home_relay : home);
	sqlite3_bind_int(q, 4, on);
	sqlite3_bind_int64(q, 5, ls);
	sqlite3_bind_int64(q, 6, *entry ? *v : 0);
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
