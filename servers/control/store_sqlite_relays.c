/* The SQLite control store: relays and their join keys. A relay key secret
 * is "rkey-<id>-<48 hex>", single-use; only its BLAKE2b hash is stored. */
#include "servers/control/store_sqlite_int.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hostname.h"

#define SQ_HASH_LEN  32
#define SQ_SECRET_RB 24

static void rk_hash(uint8_t out[SQ_HASH_LEN], const char *secret)
{
	crypto_generichash(out, SQ_HASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

int ctl_sq_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                            size_t secretlen, int64_t *id_out)
{
	struct sq_store *s = SQ(st);
	uint8_t rnd[SQ_SECRET_RB], hash[SQ_HASH_LEN] = {0};
	char hex[2 * SQ_SECRET_RB + 1], sec[CTL_SECRET_MAX];
	if (secretlen < CTL_SECRET_MAX)
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q = ctl_sq_prep(s, "INSERT INTO relay_keys (hash, created) "
	                                 "VALUES (?1, ?2)");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 2, now);
	rc = ctl_sq_step_done(s, q, "relay key create");
	int64_t id = sqlite3_last_insert_rowid(s->db);
	if (rc == 0) {
		randombytes_buf(rnd, sizeof rnd);
		sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
		snprintf(sec, sizeof sec, "rkey-%lld-%s", (long long)id, hex);
		rk_hash(hash, sec);
		q = ctl_sq_prep(s, "UPDATE relay_keys SET hash = ?2 WHERE id = ?1");
		rc = q ? 0 : CTL_STORE_EIO;
	}
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_TRANSIENT);
		rc = ctl_sq_step_done(s, q, "relay key create");
	}
	rc = ctl_sq_end(s, rc);
	if (rc == 0) {
		memcpy(secret, sec, strlen(sec) + 1);
		if (id_out)
			*id_out = id;
	}
	sodium_memzero(sec, sizeof sec);
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

/* Inside a transaction: checks an "rkey-" secret and spends it. */
static int relay_key_use_tx(struct sq_store *s, const char *secret)
{
	long long id = 0;
	int end = 0;
	if (!secret || sscanf(secret, "rkey-%lld-%n", &id, &end) != 1 || end == 0 ||
	    strlen(secret + end) != 2 * SQ_SECRET_RB)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN,
		                   "relay key: not a relay key");
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT hash, revoked, uses FROM relay_keys WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	uint8_t have[SQ_HASH_LEN] = {0}, want[SQ_HASH_LEN];
	int revoked = 0;
	int64_t uses = 0;
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		ctl_sq_blob(have, sizeof have, q, 0);
		revoked = sqlite3_column_int(q, 1);
		uses = sqlite3_column_int64(q, 2);
	}
	ctl_sq_done(q);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return ctl_sq_dberr(s, "relay key");
	rk_hash(want, secret);
	if (r == SQLITE_DONE || sodium_memcmp(want, have, sizeof want) != 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "relay key: unknown key");
	if (revoked)
		return ctl_sq_fail(s, CTL_STORE_EKEY_REVOKED, "relay key %lld: revoked",
		                   id);
	if (uses > 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_USED, "relay key %lld: already used",
		                   id);
	q = ctl_sq_prep(s, "UPDATE relay_keys SET uses = uses + 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	return ctl_sq_step_done(s, q, "relay key use");
}

#define RL_COLS "id, key, name, region, host, port, stun_port, tls, created"

static void rl_row(sqlite3_stmt *q, struct ctl_relay_rec *r)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(q, 0);
	ctl_sq_blob(r->key, CTL_KEY_LEN, q, 1);
	ctl_sq_text(r->name, sizeof r->name, q, 2);
	ctl_sq_text(r->region, sizeof r->region, q, 3);
	ctl_sq_text(r->host, sizeof r->host, q, 4);
	r->port = (uint16_t)sqlite3_column_int(q, 5);
	r->stun_port = (uint16_t)sqlite3_column_int(q, 6);
	r->tls = sqlite3_column_int(q, 7);
	r->created = sqlite3_column_int64(q, 8);
}

static bool label_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static int rl_get_by_key(struct sq_store *s, const uint8_t *key,
                         struct ctl_relay_rec *out)
{
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT " RL_COLS " FROM relays WHERE key = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_blob(q, 1, key, CTL_KEY_LEN, SQLITE_TRANSIENT);
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW)
		rl_row(q, out);
	ctl_sq_done(q);
	if (r == SQLITE_ROW)
		return 0;
	return r == SQLITE_DONE ? CTL_STORE_ENOTFOUND : ctl_sq_dberr(s, "relay");
}

/* A free "<region>-<n>" name. */
static int rl_pick_name(struct sq_store *s, const char *region, char *out, size_t cap)
{
	for (int n = 1; n < 100000; n++) {
		snprintf(out, cap, "%s-%d", region, n);
		if (strlen(out) > CTL_NAME_MAX)
			return ctl_sq_fail(s, CTL_STORE_EINVAL,
			                   "region: too long for a name");
		sqlite3_stmt *q = ctl_sq_prep(s, "SELECT 1 FROM relays WHERE name = ?1");
		if (!q)
			return CTL_STORE_EIO;
		sqlite3_bind_text(q, 1, out, -1, SQLITE_TRANSIENT);
		int r = sqlite3_step(q);
		ctl_sq_done(q);
		if (r == SQLITE_DONE)
			return 0;
		if (r != SQLITE_ROW)
			return ctl_sq_dberr(s, "relay name");
	}
	return ctl_sq_fail(s, CTL_STORE_EFULL, "no free relay name");
}

int ctl_sq_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                          struct ctl_relay_rec *out)
{
	struct sq_store *s = SQ(st);
	const char *region =
	    r->region && *r->region ? r->region : CTL_RELAY_REGION_DEFAULT;
	if (!label_ok(region))
		return ctl_sq_fail(
		    s, CTL_STORE_EINVAL,
		    "region \"%.64s\": expected a DNS label (letters, digits, "
		    "'-')",
		    region);
	if (!r->host || !hostname_valid(r->host, strlen(r->host)) || r->port == 0)
		return ctl_sq_fail(s, CTL_STORE_EINVAL,
		                   "address: expected a host name or IPv4 address and a "
		                   "port");
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	struct ctl_relay_rec cur;
	rc = rl_get_by_key(s, r->key, &cur);
	int64_t v;
	if (rc == 0) {
		sqlite3_stmt *q =
		    ctl_sq_prep(s, "UPDATE relays SET region = ?2, host = ?3, port = ?4, "
		                   "stun_port = ?5, "
		                   "tls = ?6, last_seen = ?7 WHERE id = ?1");
		rc = q ? 0 : CTL_STORE_EIO;
		if (rc == 0) {
			sqlite3_bind_int64(q, 1, cur.id);
			sqlite3_bind_text(q, 2, region, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(q, 3, r->host, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(q, 4, r->port);
			sqlite3_bind_int(q, 5, r->stun_port);
			sqlite3_bind_int(q, 6, r->tls);
			sqlite3_bind_int64(q, 7, r->now);
			rc = ctl_sq_step_done(s, q, "relay update");
		}
		bool changed = strcmp(cur.region, region) != 0 ||
		               strcmp(cur.host, r->host) != 0 || cur.port != r->port ||
		               cur.stun_port != r->stun_port || cur.tls != r->tls;
		if (rc == 0 && changed)
			rc = ctl_sq_bump(s, &v);
	} else if (rc == CTL_STORE_ENOTFOUND) {
		if (!r->secret)
			rc = ctl_sq_fail(
			    s, CTL_STORE_EKEY_UNKNOWN,
			    "this relay is not registered (removed?); register it "
			    "again with a new `mesh-control token --relay`");
		else
			rc = relay_key_use_tx(s, r->secret);
		char name[CTL_NAME_MAX + 8];
		if (rc == 0)
			rc = rl_pick_name(s, region, name, sizeof name);
		sqlite3_stmt *q = NULL;
		if (rc == 0) {
			q = ctl_sq_prep(
			    s, "INSERT INTO relays (key, name, region, host, port, "
			       "stun_port, tls, created, last_seen) VALUES (?1, ?2, "
			       "?3, ?4, ?5, ?6, ?7, ?8, ?8)");
			rc = q ? 0 : CTL_STORE_EIO;
		}
		if (rc == 0) {
			sqlite3_bind_blob(q, 1, r->key, CTL_KEY_LEN, SQLITE_TRANSIENT);
			sqlite3_bind_text(q, 2, name, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(q, 3, region, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(q, 4, r->host, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(q, 5, r->port);
			sqlite3_bind_int(q, 6, r->stun_port);
			sqlite3_bind_int(q, 7, r->tls);
			sqlite3_bind_int64(q, 8, r->now);
			rc = ctl_sq_step_done(s, q, "relay insert");
		}
		if (rc == 0)
			rc = ctl_sq_bump(s, &v);
	}
	if (rc == 0)
		rc = rl_get_by_key(s, r->key, out);
	return ctl_sq_end(s, rc);
}

int ctl_sq_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_relay_rec *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	*out = NULL;
	*n = 0;
	sqlite3_stmt *q = ctl_sq_prep(s, "SELECT " RL_COLS " FROM relays ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 8;
			struct ctl_relay_rec *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		rl_row(q, &v[cnt++]);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "relay list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

int ctl_sq_relay_remove(struct ctl_store *st, const char *name)
{
	struct sq_store *s = SQ(st);
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	sqlite3_stmt *q = ctl_sq_prep(s, "DELETE FROM relays WHERE name = ?1");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
	rc = ctl_sq_step_done(s, q, "relay remove");
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = ctl_sq_fail(
		    s, CTL_STORE_ENOTFOUND,
		    "relay %.64s: no such relay (see `mesh-control relays list`)", name);
	int64_t v;
	if (rc == 0)
		rc = ctl_sq_bump(s, &v);
	return ctl_sq_end(s, rc);
}
