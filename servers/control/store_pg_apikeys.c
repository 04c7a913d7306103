/* The PostgreSQL control store: API keys for the HTTP admin API, as
 * store_sqlite_apikeys.c. A secret is "mapi-<id>-<48 hex>"; only its
 * BLAKE2b hash is stored, compared in constant time. */
#include "servers/control/store_pg_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_AHASH_LEN      32
#define PG_ASECRET_RB     24 /* random bytes in a secret */
#define PG_APREFIX        "mapi-"
#define PG_LAST_USED_STEP 60 /* seconds: last_used is written at most this often */

static void pg_ahash(uint8_t out[PG_AHASH_LEN], const char *secret)
{
	crypto_generichash(out, PG_AHASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

/* The id is part of the secret: insert with a placeholder hash, then set
 * the real one in the same transaction. */
static int pg_apikey_insert(struct pg_store *s, const char *description, int64_t now,
                            char *sec, size_t cap, int64_t *id)
{
	static const char *const ins = "INSERT INTO api_keys (hash, description, created)"
	                               " VALUES ($1, $2, $3) RETURNING id";
	static const char *const upd = "UPDATE api_keys SET hash = $2 WHERE id = $1";
	uint8_t rnd[PG_ASECRET_RB], hash[PG_AHASH_LEN] = {0};
	char hex[2 * PG_ASECRET_RB + 1];
	struct pg_params q = {0};
	int rc;

	ctl_pg_p_blob(&q, hash, sizeof hash);
	ctl_pg_p_text(&q, description ? description : "");
	ctl_pg_p_int(&q, now);
	PGresult *r = ctl_pg_query(s, "API key create", ins, &q, &rc);
	if (!r)
		return rc;
	*id = ctl_pg_int(r, 0, 0);
	PQclear(r);

	randombytes_buf(rnd, sizeof rnd);
	sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
	snprintf(sec, cap, PG_APREFIX "%lld-%s", (long long)*id, hex);
	pg_ahash(hash, sec);
	struct pg_params u = {0};
	ctl_pg_p_int(&u, *id);
	ctl_pg_p_blob(&u, hash, sizeof hash);
	rc = ctl_pg_cmd(s, "API key create", upd, &u, NULL);
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

int ctl_pg_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                         char *secret, size_t secretlen, struct ctl_apikey *out)
{
	struct pg_store *s = PG(st);
	char sec[CTL_SECRET_MAX] = "";
	int64_t id = 0;

	if (!ctl_store_desc_ok(description))
		return ctl_pg_fail(s, CTL_STORE_EINVAL,
		                   "description: at most %d characters, no control "
		                   "characters",
		                   CTL_APIKEY_DESC_MAX);
	if (secretlen < CTL_SECRET_MAX)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = pg_apikey_insert(s, description, now, sec, sizeof sec, &id);
	if (rc == 0)
		rc = ctl_pg_fault(s, "apikey_create:before-commit");
	rc = ctl_pg_end(s, rc);
	if (rc == 0) {
		memcpy(secret, sec, strlen(sec) + 1);
		if (out) {
			memset(out, 0, sizeof *out);
			out->id = id;
			out->created = now;
			snprintf(out->description, sizeof out->description, "%s",
			         description ? description : "");
		}
	}
	sodium_memzero(sec, sizeof sec);
	return rc;
}

#define PG_APIKEY_COLS "id, revoked, created, last_used, description, hash"

static void pg_apikey_row(const PGresult *r, int i, struct ctl_apikey *k)
{
	memset(k, 0, sizeof *k);
	k->id = ctl_pg_int(r, i, 0);
	k->revoked = ctl_pg_int(r, i, 1) != 0;
	k->created = ctl_pg_int(r, i, 2);
	k->last_used = ctl_pg_int(r, i, 3);
	ctl_pg_text(k->description, sizeof k->description, r, i, 4);
}

int ctl_pg_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n)
{
	static const char *const sel =
	    "SELECT " PG_APIKEY_COLS " FROM api_keys ORDER BY id";
	struct pg_store *s = PG(st);
	int rc;

	*out = NULL;
	*n = 0;
	PGresult *r = ctl_pg_query(s, "API key list", sel, NULL, &rc);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	struct ctl_apikey *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < rows; i++)
		pg_apikey_row(r, i, &v[i]);
	PQclear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int ctl_pg_apikey_revoke(struct ctl_store *st, int64_t id)
{
	static const char *const upd = "UPDATE api_keys SET revoked = 1 WHERE id = $1";
	struct pg_store *s = PG(st);
	struct pg_params p = {0};
	int64_t rows = 0;
	ctl_pg_p_int(&p, id);
	/* Under the meta lock, as every write: it commits in order with them. */
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_cmd(s, "API key revoke", upd, &p, &rows);
	if (rc == 0 && rows == 0)
		rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "API key %lld: no such key",
		                 (long long)id);
	return ctl_pg_end(s, rc);
}

/* "mapi-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t pg_apisecret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = sizeof PG_APREFIX - 1, nd = 0;

	if (!sec || strncmp(sec, PG_APREFIX, i) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' ||
	    strnlen(sec + i + 1, 2 * PG_ASECRET_RB + 1) != 2 * PG_ASECRET_RB)
		return -1;
	return id;
}

/* Not a transaction: a read, then at most one single-row write (last_used,
 * which two servers may both write; the later value wins either way). */
int ctl_pg_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                        struct ctl_apikey *out)
{
	static const char *const sel =
	    "SELECT " PG_APIKEY_COLS " FROM api_keys WHERE id = $1";
	static const char *const upd = "UPDATE api_keys SET last_used = $2 WHERE id = $1";
	struct pg_store *s = PG(st);
	uint8_t want[PG_AHASH_LEN], have[PG_AHASH_LEN] = {0};
	struct ctl_apikey k;
	int64_t id = pg_apisecret_id(secret);
	int rc;

	if (id < 0)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN, "API key: not a key");
	struct pg_params p = {0};
	ctl_pg_p_int(&p, id);
	PGresult *r = ctl_pg_query(s, "API key", sel, &p, &rc);
	if (!r)
		return rc;
	bool found = PQntuples(r) == 1;
	if (found) {
		pg_apikey_row(r, 0, &k);
		ctl_pg_blob(have, sizeof have, r, 0, 5);
	}
	PQclear(r);
	pg_ahash(want, secret);
	bool match = sodium_memcmp(want, have, sizeof want) == 0;
	sodium_memzero(want, sizeof want);
	if (!found || !match)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN, "API key: unknown key");
	/* Only a holder of the secret learns that it was revoked. */
	if (k.revoked)
		return ctl_pg_fail(s, CTL_STORE_EKEY_REVOKED, "API key %lld: revoked",
		                   (long long)id);
	if (now - k.last_used >= PG_LAST_USED_STEP || now < k.last_used) {
		ctl_pg_p_int(&p, now);
		rc = ctl_pg_cmd(s, "API key last used", upd, &p, NULL);
		if (rc)
			return rc;
		k.last_used = now;
	}
	if (out)
		*out = k;
	return 0;
}
