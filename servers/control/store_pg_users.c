/* TEMPORARY placeholder until store_pg_users.c is ported: every function
 * fails with EIO. */
#include "servers/control/store_pg_int.h"

int ctl_pg_user_create(struct ctl_store *st, const char *name, int64_t now, struct ctl_user *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_user_remove(struct ctl_store *st, const char *name)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_user_exists_tx(struct pg_store *s, const char *name)
{
	return ctl_pg_fail(s, CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_policy_get(struct ctl_store *st, struct ctl_policy_rec *out)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now, int64_t *revision)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_policy_clear(struct ctl_store *st)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}

int ctl_pg_node_owners(struct ctl_store *st, int64_t now, int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "not implemented on PostgreSQL yet");
}
