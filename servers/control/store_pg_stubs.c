/* TEMPORARY: placeholders for the PostgreSQL store's nodes, batches and
 * server beats (store_pg_nodes.c, store_pg_volatile.c) until they land, so
 * the ops table in store_pg.c links. Each one fails with EIO. Delete a
 * function here when its real one exists, and this file with the last. */
#include "servers/control/store_pg_int.h"

static int pg_stub(struct ctl_store *st, const char *what)
{
	return ctl_pg_fail(PG(st), CTL_STORE_EIO, "%s: not implemented on PostgreSQL yet",
	                   what);
}

int ctl_pg_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                         struct ctl_node *out, bool *created)
{
	return pg_stub(st, "node register");
}

int ctl_pg_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                    struct ctl_node *out)
{
	return pg_stub(st, "node get");
}

int ctl_pg_node_list(struct ctl_store *st, int64_t since, struct ctl_node **out,
                     size_t *n)
{
	return pg_stub(st, "node list");
}

int ctl_pg_node_approve(struct ctl_store *st, int64_t id)
{
	return pg_stub(st, "node approve");
}

int ctl_pg_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	return pg_stub(st, "node rename");
}

int ctl_pg_node_remove(struct ctl_store *st, int64_t id)
{
	return pg_stub(st, "node remove");
}

int ctl_pg_node_logout(struct ctl_store *st, int64_t id)
{
	return pg_stub(st, "node logout");
}

int ctl_pg_node_removed(struct ctl_store *st, int64_t since, int64_t **out, size_t *n)
{
	return pg_stub(st, "node removed");
}

int ctl_pg_node_pending_count(struct ctl_store *st, int64_t *n)
{
	return pg_stub(st, "node pending count");
}

int ctl_pg_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved)
{
	return pg_stub(st, "node counts");
}

int ctl_pg_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return pg_stub(st, "node expire");
}

int ctl_pg_node_update(struct ctl_store *st, int64_t id, const struct ctl_node_update *u)
{
	return pg_stub(st, "node update");
}

int ctl_pg_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v, size_t n,
                            size_t *changed)
{
	return pg_stub(st, "node update many");
}

int ctl_pg_node_offline_all(struct ctl_store *st, int64_t now, size_t *n)
{
	return pg_stub(st, "node offline all");
}

void ctl_pg_set_server(struct ctl_store *st, int64_t server_id)
{
	PG(st)->server_id = server_id;
}

int ctl_pg_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                       size_t *swept)
{
	return pg_stub(st, "server beat");
}

int ctl_pg_server_leave(struct ctl_store *st, int64_t now, size_t *n)
{
	return pg_stub(st, "server leave");
}
