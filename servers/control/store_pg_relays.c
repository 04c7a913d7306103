/* TEMPORARY placeholder until store_pg_relays.c is ported: every function
 * fails with EIO. */
#include "servers/control/store_pg_int.h"

int ctl_pg_relay_key_create(struct ctl_store *st, int64_t now, char *secret, size_t secretlen, int64_t *id)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r, struct ctl_relay_rec *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_relay_remove(struct ctl_store *st, const char *name)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}
