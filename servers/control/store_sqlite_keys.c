/* The SQLite control store: auth keys. A secret is "mkey-<id>-<48 hex>";
 * only its BLAKE2b hash is stored. */
#include "servers/control/store_sqlite_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQ_HASH_LEN  32
#define SQ_SECRET_RB 24 /* random bytes in a secret */

/* ---- auth keys ------------------------------------------------------- */

static void sq_hash(uint8_t out[SQ_HASH_LEN], const char *secret)
{
	crypto_generichash(out, SQ_HASH_LEN, (const uint8_t *)secret, strlen(secret),
	                   NULL, 0);
}

int ctl_sq_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                      char *secret, size_t secretlen, struct ctl_authkey *out)
{
	struct sq_store *s = SQ(st);
	uint8_t rnd[SQ_SECRET_RB], hash[SQ_HASH_LEN] = {0};
	char hex[2 * SQ_SECRET_RB + 1];
	char sec[CTL_SECRET_MAX];
	int64_t id = 0;

	if (!ctl_store_tags_ok(p->tags))
		return ctl_sq_fail(s, CTL_STORE_EINVAL,
		                   "tags: at most %d characters, no spaces",
		                   CTL_STORE_TAGS_MAX);
	if (secretlen < CTL_SECRET_MAX)
		return ctl_sq_fail(s, CTL_STORE_EINVAL, "secret buffer too small");
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	/* The user exists when the key is made; removing it later is
	 * refused while this key is not revoked (ctl_sq_user_remove). */
	if (p->user && (rc = ctl_sq_user_exists_tx(s, p->user)) != 0)
		return ctl_sq_end(s, rc);
	sqlite3_stmt *q = ctl_sq_prep(
	    s, "INSERT INTO auth_keys (hash, reusable, ephemeral, "
	       "expiry, tags, created, user) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	if (!q)
		return ctl_sq_end(s, CTL_STORE_EIO);
	sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_TRANSIENT);
	sqlite3_bind_int(q, 2, p->reusable);
	sqlite3_bind_int(q, 3, p->ephemeral);
	sqlite3_bind_int64(q, 4, p->expiry);
	sqlite3_bind_text(q, 5, p->tags ? p->tags : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 6, p->now);
	sqlite3_bind_text(q, 7, p->user ? p->user : "", -1, SQLITE_TRANSIENT);
	rc = ctl_sq_step_done(s, q, "key create");
	if (rc == 0) {
		id = sqlite3_last_insert_rowid(s->db);
		randombytes_buf(rnd, sizeof rnd);
		sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
		snprintf(sec, sizeof sec, "mkey-%lld-%s", (long long)id, hex);
		sq_hash(hash, sec);
		q = ctl_sq_prep(s, "UPDATE auth_keys SET hash = ?2 WHERE id = ?1");
		rc = q ? 0 : CTL_STORE_EIO;
	}
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_TRANSIENT);
		rc = ctl_sq_step_done(s, q, "key create");
	}
	rc = ctl_sq_end(s, rc);
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
	sodium_memzero(hex, sizeof hex);
	sodium_memzero(rnd, sizeof rnd);
	return rc;
}

#define SQ_KEY_COLS                                                                      \
	"id, reusable, ephemeral, revoked, expiry, uses, created, tags, hash, user"

static void sq_key_row(sqlite3_stmt *q, struct ctl_authkey *k)
{
	memset(k, 0, sizeof *k);
	k->id = sqlite3_column_int64(q, 0);
	k->reusable = sqlite3_column_int(q, 1);
	k->ephemeral = sqlite3_column_int(q, 2);
	k->revoked = sqlite3_column_int(q, 3);
	k->expiry = sqlite3_column_int64(q, 4);
	k->uses = sqlite3_column_int64(q, 5);
	k->created = sqlite3_column_int64(q, 6);
	ctl_sq_text(k->tags, sizeof k->tags, q, 7);
	ctl_sq_text(k->user, sizeof k->user, q, 9);
}

int ctl_sq_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	struct sq_store *s = SQ(st);
	struct ctl_authkey *v = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT " SQ_KEY_COLS " FROM auth_keys ORDER BY id");
	if (!q)
		return CTL_STORE_EIO;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			struct ctl_authkey *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				ctl_sq_done(q);
				free(v);
				return ctl_sq_fail(s, CTL_STORE_ENOMEM, "out of memory");
			}
			v = nv;
		}
		sq_key_row(q, &v[cnt++]);
	}
	ctl_sq_done(q);
	if (r != SQLITE_DONE) {
		free(v);
		return ctl_sq_dberr(s, "key list");
	}
	*out = v;
	*n = cnt;
	return 0;
}

int ctl_sq_key_revoke(struct ctl_store *st, int64_t id)
{
	struct sq_store *s = SQ(st);
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "UPDATE auth_keys SET revoked = 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	int rc = ctl_sq_step_done(s, q, "key revoke");
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = ctl_sq_fail(s, CTL_STORE_ENOTFOUND, "auth key %lld: no such key",
		                 (long long)id);
	return rc;
}

/* "mkey-<decimal id>-<48 hex>" -> id, or -1. */
static int64_t sq_secret_id(const char *sec)
{
	int64_t id = 0;
	size_t i = 5, nd = 0;

	if (!sec || strncmp(sec, "mkey-", 5) != 0)
		return -1;
	for (; sec[i] >= '0' && sec[i] <= '9' && nd < 18; i++, nd++)
		id = id * 10 + (sec[i] - '0');
	if (nd == 0 || sec[i] != '-' || strlen(sec + i + 1) != 2 * SQ_SECRET_RB)
		return -1;
	return id;
}

/* Inside a transaction: check the secret and count a use. */
int ctl_sq_key_use_tx(struct sq_store *s, const char *secret, int64_t now,
                      struct ctl_authkey *k)
{
	uint8_t want[SQ_HASH_LEN], have[SQ_HASH_LEN];
	int64_t id = sq_secret_id(secret);
	int r;

	if (id < 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: not a key");
	sqlite3_stmt *q =
	    ctl_sq_prep(s, "SELECT " SQ_KEY_COLS " FROM auth_keys WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	r = sqlite3_step(q);
	if (r == SQLITE_ROW) {
		sq_key_row(q, k);
		ctl_sq_blob(have, sizeof have, q, 8);
	}
	ctl_sq_done(q);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return ctl_sq_dberr(s, "auth key");
	sq_hash(want, secret);
	if (r == SQLITE_DONE || sodium_memcmp(want, have, sizeof want) != 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_UNKNOWN, "auth key: unknown key");
	/* Only a holder of the secret learns the key's state. */
	if (k->revoked)
		return ctl_sq_fail(s, CTL_STORE_EKEY_REVOKED, "auth key %lld: revoked",
		                   (long long)id);
	if (k->expiry && k->expiry <= now)
		return ctl_sq_fail(s, CTL_STORE_EKEY_EXPIRED, "auth key %lld: expired",
		                   (long long)id);
	if (!k->reusable && k->uses > 0)
		return ctl_sq_fail(s, CTL_STORE_EKEY_USED, "auth key %lld: already used",
		                   (long long)id);
	q = ctl_sq_prep(s, "UPDATE auth_keys SET uses = uses + 1 WHERE id = ?1");
	if (!q)
		return CTL_STORE_EIO;
	sqlite3_bind_int64(q, 1, id);
	k->uses++;
	return ctl_sq_step_done(s, q, "auth key use");
}

int ctl_sq_key_use(struct ctl_store *st, const char *secret, int64_t now,
                   struct ctl_authkey *out)
{
	struct sq_store *s = SQ(st);
	struct ctl_authkey k;
	int rc = ctl_sq_begin(s);
	if (rc)
		return rc;
	rc = ctl_sq_key_use_tx(s, secret, now, &k);
	rc = ctl_sq_end(s, rc);
	if (rc == 0 && out)
		*out = k;
	return rc;
}
