/* The SQLite control store: API keys for the HTTP admin API. A secret is
 * "mapi-<id>-<48 hex>"; only its BLAKE2b hash is stored, compared in
 * constant time. */
#include "servers/control/store_sqlite_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQ_AHASH_LEN      32
#define SQ_ASECRET_RB     24 /* random bytes in a secret */
#define SQ_APREFIX        "mapi-"
#define SQ_LAST_USED_STEP 60 /* seconds: last_used is written at most this often */

static void sq_ahash(uint8_t out[SQ_AHASH_LEN], const char *secret)
{
	crypto_generichash(out, SQ_AHASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

int ctl_sq_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                         char *secret, size_t secretlen, struct ctl_apikey *out)
{
	struct sq_store *s = SQ(st);
	uint8_t rnd[SQ_ASECRET_RB], hash[SQ_AHASH_LEN] = {0};
	char hex[2 * SQ_ASECRET_RB + 1];
	char sec[CTL_SECRET_MAX];
	int64_t id = 0;

	if (!ctl_store_desc_ok(description))
		return ctl_sq_fail(s, CTL_STORE_EINVAL,
		                   "description: at most %d characters, no control "
		                   "characters",
		                   CTL_APIKEY_DESC_MAX);
	if (secretlen < CTL_SECRET_MAX)
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	/* The id is part of the secret: insert with a placeholder hash, then
	 * set the real one in the same transaction. */
	sqlite3_stmt *q = ctl_sq_prep(s, "INSERT INTO api_keys (hash, description, "
	                                 "created) VALUES (?1, ?2, ?3)");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 2, description ? description : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 3, now);
	rc = ctl_sq_step_done(s, q, "API key create");
	if (rc == 0) {
		id = sqlite3_last_insert_rowid(s->db);
		randombytes_buf(rnd, sizeof rnd);
		sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
		snprintf(sec, sizeof sec, SQ_APREFIX "%lld-%s", (long long)id, hex);
		sq_ahash(hash, sec);
		q = ctl_sq_prep(s, "UPDATE api_keys SET hash = ?2 WHERE id = ?1");
		rc = q ? 0 : CTL_STORE_EIO;
	}
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_TRANSIENT);
		rc = ctl_sq_step_done(s, q, "API key create");
	}
	if (rc == 0)
		rc = ctl_sq_fault(s, "apikey_create:before-commit");
	rc = ctl_sq_end(s, rc);
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
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

#define SQ_APIKEY_COLS "id, revoked, created, last_used, description, hash"

static void sq_apikey_row(sqlite3_stmt *q, struct ctl_apikey *k)
{
	memset(k, 0, sizeof *k);
	k->id = sqlite3_column_int64(q, 0);
	k->revoked = sqlite3_column_int(q, 1);
	k->created = sqlite3_column_int64(q, 2);
	k->last_used = sqlite3_column_int64(q, 3);
	ctl_sq_text(k->description, sizeof k->description, q, 4);
}

int ctl_sq_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_apikey *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT " SQ_APIKEY_COLS " FROM api_keys ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			struct ctl_apikey *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		sq_apikey_row(q, &v[cnt++]);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "API key list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

int ctl_sq_apikey_revoke(struct ctl_store *st, int64_t id)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q = ctl_sq_prep(s, "UPDATE api_keys SET revoked = 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	int rc = ctl_sq_step_done(s, q, "API key revoke");
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "API key %lld: no such key",
		                 (long long)id);
	return rc;
}

/* "mapi-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t sq_apisecret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = sizeof SQ_APREFIX - 1, nd = 0;

	if (!sec || strncmp(sec, SQ_APREFIX, i) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' ||
	    strnlen(sec + i + 1, 2 * SQ_ASECRET_RB + 1) != 2 * SQ_ASECRET_RB)
		return -1;
	return id;
}

int ctl_sq_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                        struct ctl_apikey *out)
{
	struct sq_store *s = SQ(st);
	uint8_t want[SQ_AHASH_LEN], have[SQ_AHASH_LEN] = {0};
	struct ctl_apikey k;
	int64_t id = sq_apisecret_id(secret);
	int r;

	if (id < 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "API key: not a key");
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT " SQ_APIKEY_COLS " FROM api_keys WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		sq_apikey_row(q, &k);
		ctl_sq_blob(have, sizeof have, q, 5);
	}
	ctl_sq_done(q);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return ctl_sq_dberr(s, "API key");
	sq_ahash(want, secret);
	bool match = sodium_memcmp(want, have, sizeof want) == 0;
	sodium_memzero(want, sizeof want);
	if (r == SQLITE_DONE || !match)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "API key: unknown key");
	/* Only a holder of the secret learns that it was revoked. */
	if (k.revoked)
		return ctl_sq_fail(s, CTL_STORE_EKEY_REVOKED, "API key %lld: revoked",
		                   (long long)id);
	if (now - k.last_used >= SQ_LAST_USED_STEP || now < k.last_used) {
		q = ctl_sq_prep(s, "UPDATE api_keys SET last_used = ?2 WHERE id = ?1");
		if (!q)
			return CTL_STORE_EIO;
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_int64(q, 2, now);
		int rc = ctl_sq_step_done(s, q, "API key last used");
		if (rc)
			return rc;
		k.last_used = now;
	}
	if (out)
		*out = k;
	return 0;
}
