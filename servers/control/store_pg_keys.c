/* The PostgreSQL control store: auth keys, as store_sqlite_keys.c. A secret
 * is "mkey-<id>-<48 hex>"; only its BLAKE2b hash is stored. */
#include "servers/control/store_pg_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_HASH_LEN  32
#define PG_SECRET_RB 24 /* random bytes in a secret */

static void pg_hash(uint8_t out[PG_HASH_LEN], const char *secret)
{
	crypto_generichash(out, PG_HASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

/* Inserts the key with a placeholder hash (the id is part of the secret),
 * then writes the secret into sec and the real hash into the row. */
static int pg_key_insert(struct pg_store *s, const struct ctl_authkey_params *p,
                         char *sec, size_t cap, int64_t *id)
{
	static const char *const ins =
	    "INSERT INTO auth_keys (hash, reusable, ephemeral, expiry, tags, created,"
	    " \"user\") VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
	static const char *const upd = "UPDATE auth_keys SET hash = $2 WHERE id = $1";
	uint8_t rnd[PG_SECRET_RB], hash[PG_HASH_LEN] = {0};
	char hex[2 * PG_SECRET_RB + 1];
	struct pg_params q = {0};
	int rc;

	ctl_pg_p_blob(&q, hash, sizeof hash);
	ctl_pg_p_int(&q, p->reusable);
	ctl_pg_p_int(&q, p->ephemeral);
	ctl_pg_p_int(&q, p->expiry);
	ctl_pg_p_text(&q, p->tags ? p->tags : "");
	ctl_pg_p_int(&q, p->now);
	ctl_pg_p_text(&q, p->user ? p->user : "");
	PGresult *r = ctl_pg_query(s, "key create", ins, &q, &rc);
	if (!r)
		return rc;
	*id = ctl_pg_int(r, 0, 0);
	PQclear(r);

	randombytes_buf(rnd, sizeof rnd);
	sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
	snprintf(sec, cap, "mkey-%lld-%s", (long long)*id, hex);
	pg_hash(hash, sec);
	struct pg_params u = {0};
	ctl_pg_p_int(&u, *id);
	ctl_pg_p_blob(&u, hash, sizeof hash);
	rc = ctl_pg_cmd(s, "key create", upd, &u, NULL);
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

int ctl_pg_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                      char *secret, size_t secretlen, struct ctl_authkey *out)
{
	struct pg_store *s = PG(st);
	char sec[CTL_SECRET_MAX] = "";
	int64_t id = 0;

	if (!ctl_store_tags_ok(p->tags))
		return ctl_pg_fail(s, CTL_STORE_EINVAL,
		                   "tags: at most %d characters, no spaces",
		                   CTL_STORE_TAGS_MAX);
	if (secretlen < CTL_SECRET_MAX)
		return ctl_pg_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	/* Under the meta lock: a node removal records the largest key id
	 * issued (removed_machines.key_seq) and must not miss one being
	 * made at the same time. */
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	/* The user exists when the key is made; removing it later is
	 * refused while this key is not revoked (ctl_pg_user_remove). */
	if (p->user && (rc = ctl_pg_user_exists_tx(s, p->user)) != 0)
		return ctl_pg_end(s, rc);
	rc = pg_key_insert(s, p, sec, sizeof sec, &id);
	rc = ctl_pg_end(s, rc);
	if (rc == 0) {
		memcpy(secret, sec, strlen(sec) + 1);
		if (out) {
			memset(out, 0, sizeof *out);
			out->id = id;
			out->reusable = p->reusable;
			out->ephemeral = p->ephemeral;
			out->expiry = p->expiry;
			out->created = p->now;
			snprintf(out->tags, sizeof out->tags, "%s",
			         p->tags ? p->tags : "");
			snprintf(out->user, sizeof out->user, "%s",
			         p->user ? p->user : "");
		}
	}
	sodium_memzero(sec, sizeof sec);
	return rc;
}

#define PG_KEY_COLS                                                                      \
	"id, reusable, ephemeral, revoked, expiry, uses, created, tags, hash, \"user\""

static void pg_key_row(const PGresult *r, int i, struct ctl_authkey *k)
{
	memset(k, 0, sizeof *k);
	k->id = ctl_pg_int(r, i, 0);
	k->reusable = ctl_pg_int(r, i, 1) != 0;
	k->ephemeral = ctl_pg_int(r, i, 2) != 0;
	k->revoked = ctl_pg_int(r, i, 3) != 0;
	k->expiry = ctl_pg_int(r, i, 4);
	k->uses = ctl_pg_int(r, i, 5);
	k->created = ctl_pg_int(r, i, 6);
	ctl_pg_text(k->tags, sizeof k->tags, r, i, 7);
	ctl_pg_text(k->user, sizeof k->user, r, i, 9);
}

int ctl_pg_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	static const char *const sel =
	    "SELECT " PG_KEY_COLS " FROM auth_keys ORDER BY id";
	struct pg_store *s = PG(st);
	int rc;

	*out = NULL;
	*n = 0;
	PGresult *r = ctl_pg_query(s, "key list", sel, NULL, &rc);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	struct ctl_authkey *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return ctl_pg_fail(s, CTL_STORE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < rows; i++)
		pg_key_row(r, i, &v[i]);
	PQclear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int ctl_pg_key_revoke(struct ctl_store *st, int64_t id)
{
	static const char *const upd = "UPDATE auth_keys SET revoked = 1 WHERE id = $1";
	struct pg_store *s = PG(st);
	struct pg_params p = {0};
	int64_t rows = 0;
	ctl_pg_p_int(&p, id);
	/* Under the meta lock: a join that is spending this key right now
	 * (ctl_pg_key_use_tx, which holds the lock) commits first, and every
	 * join after this returns sees the key revoked. */
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_cmd(s, "key revoke", upd, &p, &rows);
	if (rc == 0 && rows == 0)
		rc = ctl_pg_fail(s, CTL_STORE_ENOTFOUND, "auth key %lld: no such key",
		                 (long long)id);
	return ctl_pg_end(s, rc);
}

/* "mkey-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t pg_secret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = 5, nd = 0;

	if (!sec || strncmp(sec, "mkey-", 5) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' ||
	    strnlen(sec + i + 1, 2 * PG_SECRET_RB + 1) != 2 * PG_SECRET_RB)
		return -1;
	return id;
}

/* Inside a transaction (the meta row locked, so two servers spending one
 * single-use key at once spend it once): check the secret, count a use. */
int ctl_pg_key_use_tx(struct pg_store *s, const char *secret, int64_t now,
                      struct ctl_authkey *k)
{
	static const char *const sel =
	    "SELECT " PG_KEY_COLS " FROM auth_keys WHERE id = $1 FOR UPDATE";
	static const char *const upd =
	    "UPDATE auth_keys SET uses = uses + 1 WHERE id = $1";
	uint8_t want[PG_HASH_LEN], have[PG_HASH_LEN] = {0};
	int64_t id = pg_secret_id(secret);
	int rc;

	if (id < 0)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: not a key");
	struct pg_params p = {0};
	ctl_pg_p_int(&p, id);
	PGresult *r = ctl_pg_query(s, "auth key", sel, &p, &rc);
	if (!r)
		return rc;
	bool found = PQntuples(r) == 1;
	if (found) {
		pg_key_row(r, 0, k);
		ctl_pg_blob(have, sizeof have, r, 0, 8);
	}
	PQclear(r);
	pg_hash(want, secret);
	bool match = sodium_memcmp(want, have, sizeof want) == 0;
	sodium_memzero(want, sizeof want);
	if (!found || !match)
		return ctl_pg_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: unknown key");
	/* Only a holder of the secret learns the key's state. */
	if (k->revoked)
		return ctl_pg_fail(s, CTL_STORE_EKEY_REVOKED, "auth key %lld: revoked",
		                   (long long)id);
	if (k->expiry && k->expiry <= now)
		return ctl_pg_fail(s, CTL_STORE_EKEY_EXPIRED, "auth key %lld: expired",
		                   (long long)id);
	if (!k->reusable && k->uses > 0)
		return ctl_pg_fail(s, CTL_STORE_EKEY_USED, "auth key %lld: already used",
		                   (long long)id);
	k->uses++;
	return ctl_pg_cmd(s, "auth key use", upd, &p, NULL);
}

int ctl_pg_key_use(struct ctl_store *st, const char *secret, int64_t now,
                   struct ctl_authkey *out)
{
	struct pg_store *s = PG(st);
	struct ctl_authkey k;
	int rc = ctl_pg_begin(s);
	if (rc)
		return rc;
	rc = ctl_pg_key_use_tx(s, secret, now, &k);
	rc = ctl_pg_end(s, rc);
	if (rc == 0 && out)
		*out = k;
	return rc;
}
