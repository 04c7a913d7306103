/* TEMPORARY placeholder until store_pg_apikeys.c is ported: every function
 * fails with EIO. */
#include "servers/control/store_pg_int.h"

int ctl_pg_apikey_create(struct ctl_store *st, const char *description, int64_t now, char *secret, size_t secretlen, struct ctl_apikey *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_apikey_revoke(struct ctl_store *st, int64_t id)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_apikey_check(struct ctl_store *st, const char *secret, int64_t now, struct ctl_apikey *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}
