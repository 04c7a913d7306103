/* The PostgreSQL control store: relays and their join keys, as
 * store_sqlite_relays.c. A relay key secret is "rkey-<id>-<48 hex>",
 * single-use; only its BLAKE2b hash is stored. */
#include "servers/control/store_pg_int.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/hostname.h"

#define PG_HASH_LEN  32
#define PG_SECRET_RB 24

static void rk_hash(uint8_t out[PG_HASH_LEN], const char *secret)
{
	crypto_generichash(out, PG_HASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

/* Inserts the key with a placeholder hash (the id is part of the secret),
 * then writes the secret into sec and the real hash into the row. */
static int rk_insert(struct pg_store *s, int64_t now, char *sec, size_t cap, int64_t *id)
{
	static const char *const ins =
	    "INSERT INTO relay_keys (hash, created) VALUES ($1, $2) RETURNING id";
	static const char *const upd = "UPDATE relay_keys SET hash = $2 WHERE id = $1";
	uint8_t rnd[PG_SECRET_RB], hash[PG_HASH_LEN] = {0};
	char hex[2 * PG_SECRET_RB + 1];
	struct pg_params q = {0};
	int rc;

	ctl_pg_p_blob(&q, hash, sizeof hash);
	ctl_pg_p_int(&q, now);
	PGresult *r = ctl_pg_query(s, "relay key create", ins, &q, &rc);
	if (!r)
		return rc;
	*id = ctl_pg_int(r, 0, 0);
	PQclear(r);

	randombytes_buf(rnd, sizeof rnd);
	sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
	snprintf(sec, cap, "rkey-%lld-%s", (long long)*id, hex);
	rk_hash(hash, sec);
	struct pg_params u = {0};
	ctl_pg_p_int(&u, *id);
	ctl_pg_p_blob(&u, hash, sizeof hash);
	rc = ctl_pg_cmd(s, "relay key create", upd, &u, NULL);
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

int ctl_pg_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                            size_t secretlen, int64_t *id_out)
{
	struct pg_store *s = PG(st);
	char sec[CTL_SECRET_MAX] = "";
	int64_t id = 0;
	if (secretlen < CTL_SECRET_MAX)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = rk_insert(s, now, sec, sizeof sec, &id);
	rc = ctl_pg_end(s, rc);
	if (rc == 0) {
		memcpy(secret, sec, strlen(sec) + 1);
		if (id_out)
			*id_out = id;
	}
	sodium_memzero(sec, sizeof sec);
	return rc;
}

/* "rkey-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t rk_secret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = 5, nd = 0;

	if (!sec || strncmp(sec, "rkey-", 5) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' ||
	    strnlen(sec + i + 1, 2 * PG_SECRET_RB + 1) != 2 * PG_SECRET_RB)
		return -1;
	return id;
}

/* Inside a transaction (the meta row locked: two servers registering
 * with one key at once spend it once): checks an "rkey-" secret and spends
 * it. */
static int relay_key_use_tx(struct pg_store *s, const char *secret)
{
	static const char *const sel =
	    "SELECT hash, revoked, uses FROM relay_keys WHERE id = $1";
	static const char *const upd =
	    "UPDATE relay_keys SET uses = uses + 1 WHERE id = $1";
	int64_t id = rk_secret_id(secret);
	int rc;
	if (id < 0)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN,
		                   "relay key: not a relay key");
	struct pg_params p = {0};
	ctl_pg_p_int(&p, id);
	PGresult *r = ctl_pg_query(s, "relay key", sel, &p, &rc);
	if (!r)
		return rc;
	uint8_t have[PG_HASH_LEN] = {0}, want[PG_HASH_LEN];
	bool found = PQntuples(r) == 1;
	bool revoked = found && ctl_pg_int(r, 0, 1) != 0;
	int64_t uses = found ? ctl_pg_int(r, 0, 2) : 0;
	if (found)
		ctl_pg_blob(have, sizeof have, r, 0, 0);
	PQclear(r);
	rk_hash(want, secret);
	bool match = sodium_memcmp(want, have, sizeof want) == 0;
	sodium_memzero(want, sizeof want);
	if (!found || !match)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN, "relay key: unknown key");
	if (revoked)
		return ctl_pg_fail(s, CTL_STORE_EKEY_REVOKED, "relay key %lld: revoked",
		                   (long long)id);
	if (uses > 0)
		return ctl_pg_fail(s, CTL_STORE_EKEY_USED, "relay key %lld: already used",
		                   (long long)id);
	return ctl_pg_cmd(s, "relay key use", upd, &p, NULL);
}

#define RL_COLS "id, key, name, region, host, port, stun_port, tls, created"

static void rl_row(const PGresult *res, int i, struct ctl_relay_rec *r)
{
	memset(r, 0, sizeof *r);
	r->id = ctl_pg_int(res, i, 0);
	ctl_pg_blob(r->key, CTL_KEY_LEN, res, i, 1);
	ctl_pg_text(r->name, sizeof r->name, res, i, 2);
	ctl_pg_text(r->region, sizeof r->region, res, i, 3);
	ctl_pg_text(r->host, sizeof r->host, res, i, 4);
	r->port = (uint16_t)ctl_pg_int(res, i, 5);
	r->stun_port = (uint16_t)ctl_pg_int(res, i, 6);
	r->tls = ctl_pg_int(res, i, 7) != 0;
	r->created = ctl_pg_int(res, i, 8);
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

static int rl_get_by_key(struct pg_store *s, const uint8_t *key,
                         struct ctl_relay_rec *out)
{
	static const char *const sel = "SELECT " RL_COLS " FROM relays WHERE key = $1";
	struct pg_params p = {0};
	int rc;
	ctl_pg_p_blob(&p, key, CTL_KEY_LEN);
	PGresult *r = ctl_pg_query(s, "relay", sel, &p, &rc);
	if (!r)
		return rc;
	rc = PQntuples(r) == 1 ? 0 : CTL_STORE_ENOTFOUND;
	if (rc == 0)
		rl_row(r, 0, out);
	PQclear(r);
	return rc;
}

/* A free "<region>-<n>": the lowest n not taken, in one query (SQLite's
 * twin asks name by name; here each question is a round trip). */
static int rl_pick_name(struct pg_store *s, const char *region, char *out, size_t cap)
{
	static const char *const sel =
	    "SELECT n FROM generate_series(1, (SELECT count(*) + 1 FROM relays)) AS n"
	    " WHERE NOT EXISTS (SELECT 1 FROM relays WHERE name = CAST($1 AS TEXT) || "
	    "'-' || n)"
	    " ORDER BY n LIMIT 1";
	struct pg_params p = {0};
	int rc;
	snprintf(out, cap, "%s-%d", region, 1);
	if (strlen(out) > CTL_NAME_MAX)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "region: too long for a name");
	ctl_pg_p_text(&p, region);
	PGresult *r = ctl_pg_query(s, "relay name", sel, &p, &rc);
	if (!r)
		return rc;
	int64_t n = PQntuples(r) == 1 ? ctl_pg_int(r, 0, 0) : 0;
	PQclear(r);
	if (n <= 0 || n >= 100000)
		return ctl_pg_fail(s, CTL_STORE_EFULL, "no free relay name");
	snprintf(out, cap, "%s-%lld", region, (long long)n);
	if (strlen(out) > CTL_NAME_MAX)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "region: too long for a name");
	return 0;
}

/* A known key: its fields from r, the name kept; a version bump only if
 * something nodes see changed. */
static int rl_resume(struct pg_store *s, const struct ctl_relay_rec *cur,
                     const struct ctl_relay_reg *r, const char *region)
{
	static const char *const upd =
	    "UPDATE relays SET region = $2, host = $3, port = $4, stun_port = $5,"
	    " tls = $6, last_seen = $7 WHERE id = $1";
	struct pg_params p = {0};
	int64_t v;
	ctl_pg_p_int(&p, cur->id);
	ctl_pg_p_text(&p, region);
	ctl_pg_p_text(&p, r->host);
	ctl_pg_p_int(&p, r->port);
	ctl_pg_p_int(&p, r->stun_port);
	ctl_pg_p_int(&p, r->tls);
	ctl_pg_p_int(&p, r->now);
	int rc = ctl_pg_cmd(s, "relay update", upd, &p, NULL);
	bool changed = strcmp(cur->region, region) != 0 ||
	               strcmp(cur->host, r->host) != 0 || cur->port != r->port ||
	               cur->stun_port != r->stun_port || cur->tls != r->tls;
	if (rc == 0 && changed)
		rc = ctl_pg_bump(s, &v);
	return rc;
}

/* A new key: spend the secret, pick a name, insert, bump. */
static int rl_insert(struct pg_store *s, const struct ctl_relay_reg *r,
                     const char *region)
{
	static const char *const ins =
	    "INSERT INTO relays (key, name, region, host, port, stun_port, tls,"
	    " created, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";
	char name[CTL_NAME_MAX + 8];
	int64_t v;
	int rc;
	if (!r->secret)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN,
		                   "this relay is not registered (removed?); register it "
		                   "again with a new `mesh-control token --relay`");
	if ((rc = relay_key_use_tx(s, r->secret)) != 0 ||
	    (rc = rl_pick_name(s, region, name, sizeof name)) != 0)
		return rc;
	struct pg_params p = {0};
	ctl_pg_p_blob(&p, r->key, CTL_KEY_LEN);
	ctl_pg_p_text(&p, name);
	ctl_pg_p_text(&p, region);
	ctl_pg_p_text(&p, r->host);
	ctl_pg_p_int(&p, r->port);
	ctl_pg_p_int(&p, r->stun_port);
	ctl_pg_p_int(&p, r->tls);
	ctl_pg_p_int(&p, r->now);
	rc = ctl_pg_cmd(s, "relay insert", ins, &p, NULL);
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	return rc;
}

int ctl_pg_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                          struct ctl_relay_rec *out)
{
	struct pg_store *s = PG(st);
	const char *region =
	    r->region && *r->region ? r->region : CTL_RELAY_REGION_DEFAULT;
	if (!label_ok(region))
		return ctl_pg_fail(
		    s, CTL_STORE_EINVAL,
		    "region \"%.64s\": expected a DNS label (letters, digits, "
		    "'-')",
		    region);
	if (!r->host || !hostname_valid(r->host, strlen(r->host)) || r->port == 0)
		return ctl_pg_fail(s, CTL_STORE_EINVAL,
		                   "address: expected a host name or IPv4 address and a "
		                   "port");
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	struct ctl_relay_rec cur;
	rc = rl_get_by_key(s, r->key, &cur);
	if (rc == 0)
		rc = rl_resume(s, &cur, r, region);
	else if (rc == CTL_STORE_ENOTFOUND)
		rc = rl_insert(s, r, region);
	if (rc == 0)
		rc = rl_get_by_key(s, r->key, out);
	return ctl_pg_end(s, rc);
}

int ctl_pg_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n)
{
	static const char *const sel = "SELECT " RL_COLS " FROM relays ORDER BY id";
	struct pg_store *s = PG(st);
	int rc;
	*out = NULL;
	*n = 0;
	PGresult *r = ctl_pg_query(s, "relay list", sel, NULL, &rc);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	struct ctl_relay_rec *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < rows; i++)
		rl_row(r, i, &v[i]);
	PQclear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int ctl_pg_relay_remove(struct ctl_store *st, const char *name)
{
	static const char *const del = "DELETE FROM relays WHERE name = $1";
	struct pg_store *s = PG(st);
	int64_t rows = 0, v;
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	struct pg_params p = {0};
	ctl_pg_p_text(&p, name);
	rc = ctl_pg_cmd(s, "relay remove", del, &p, &rows);
	if (rc == 0 && rows == 0)
		rc = ctl_pg_fail(
		    s, CTL_STORE_ENOTFOUND,
		    "relay %.64s: no such relay (see `mesh-control relays list`)", name);
	if (rc == 0)
		rc = ctl_pg_bump(s, &v);
	return ctl_pg_end(s, rc);
}
