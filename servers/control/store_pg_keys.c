/* TEMPORARY placeholder until store_pg_keys.c is ported: every function
 * fails with EIO. */
#include "servers/control/store_pg_int.h"

int ctl_pg_key_create(struct ctl_store *st, const struct ctl_authkey_params *p, char *secret, size_t secretlen, struct ctl_authkey *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_key_revoke(struct ctl_store *st, int64_t id)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_key_use_tx(struct pg_store *s, const char *secret, int64_t now, struct ctl_authkey *k)
{
	return ctl_pg_fail(s, CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_key_use(struct ctl_store *st, const char *secret, int64_t now, struct ctl_authkey *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}
