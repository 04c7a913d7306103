/* The control store interface: backend-independent wrappers that dispatch
 * through st->ops, and the error strings. */
#include "servers/control/store.h"

#include <stdlib.h>
#include <string.h>

const char *ctl_store_strerror(int err)
{
	switch (err) {
	case CTL_STORE_OK:
		return "ok";
	case CTL_STORE_EIO:
		return "database error";
	case CTL_STORE_ENOTFOUND:
		return "not found";
	case CTL_STORE_EEXISTS:
		return "already exists";
	case CTL_STORE_EINVAL:
		return "invalid argument";
	case CTL_STORE_ENOMEM:
		return "out of memory";
	case CTL_STORE_EFULL:
		return "address pool exhausted";
	case CTL_STORE_EKEY_UNKNOWN:
		return "unknown auth key";
	case CTL_STORE_EKEY_REVOKED:
		return "auth key revoked";
	case CTL_STORE_EKEY_EXPIRED:
		return "auth key expired";
	case CTL_STORE_EKEY_USED:
		return "single-use auth key already used";
	case CTL_STORE_ESCHEMA:
		return "database schema is newer than this program";
	case CTL_STORE_ECONFLICT:
		return "node or disco key belongs to another node";
	case CTL_STORE_EAUTH_REQUIRED:
		return "an auth key is required";
	case CTL_STORE_EREMOVED:
		return "node was removed";
	case CTL_STORE_EPENDING_FULL:
		return "too many nodes waiting for approval";
	case CTL_STORE_EPENDING_BUSY:
		return "a node waiting for approval holds this key";
	case CTL_STORE_EEXPIRED:
		return "node expired";
	default:
		return "unknown error";
	}
}

void ctl_store_close(struct ctl_store *st)
{
	if (st)
		st->ops->close(st);
}

const char *ctl_store_errmsg(const struct ctl_store *st)
{
	return st->errmsg;
}

int ctl_store_init(struct ctl_store *st, const struct ctl_init_params *p)
{
	return st->ops->init(st, p);
}

int ctl_store_get_meta(struct ctl_store *st, struct ctl_meta *out)
{
	return st->ops->get_meta(st, out);
}

int ctl_store_map_version(struct ctl_store *st, int64_t *out)
{
	return st->ops->map_version(st, out);
}

int ctl_store_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                         char *secret, size_t secretlen, struct ctl_authkey *out)
{
	return st->ops->key_create(st, p, secret, secretlen, out);
}

int ctl_store_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n)
{
	return st->ops->key_list(st, out, n);
}

int ctl_store_key_revoke(struct ctl_store *st, int64_t id)
{
	return st->ops->key_revoke(st, id);
}

int ctl_store_key_use(struct ctl_store *st, const char *secret, int64_t now,
                      struct ctl_authkey *out)
{
	return st->ops->key_use(st, secret, now, out);
}

int ctl_store_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                            struct ctl_node *out, bool *created)
{
	return st->ops->node_register(st, r, out, created);
}

int ctl_store_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                       struct ctl_node *out)
{
	return st->ops->node_get(st, by, key, out);
}

int ctl_store_node_by_id(struct ctl_store *st, int64_t id, struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_ID, &id, out);
}

int ctl_store_node_by_machine_key(struct ctl_store *st, const uint8_t *mk,
                                  struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_MACHINE_KEY, mk, out);
}

int ctl_store_node_by_node_key(struct ctl_store *st, const uint8_t *nk,
                               struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_NODE_KEY, nk, out);
}

int ctl_store_node_by_name(struct ctl_store *st, const char *name, struct ctl_node *out)
{
	return st->ops->node_get(st, CTL_NODE_BY_NAME, name, out);
}

int ctl_store_node_list(struct ctl_store *st, int64_t since_version,
                        struct ctl_node **out, size_t *n)
{
	return st->ops->node_list(st, since_version, out, n);
}

int ctl_store_node_approve(struct ctl_store *st, int64_t id)
{
	return st->ops->node_approve(st, id);
}

int ctl_store_node_rename(struct ctl_store *st, int64_t id, const char *name)
{
	return st->ops->node_rename(st, id, name);
}

int ctl_store_node_remove(struct ctl_store *st, int64_t id)
{
	return st->ops->node_remove(st, id);
}

int ctl_store_node_reap(struct ctl_store *st, int64_t id, int64_t cutoff)
{
	return st->ops->node_reap(st, id, cutoff);
}

int ctl_store_node_logout(struct ctl_store *st, int64_t id)
{
	return st->ops->node_logout(st, id);
}

int ctl_store_node_removed(struct ctl_store *st, int64_t since_version, int64_t **ids,
                           size_t *n)
{
	return st->ops->node_removed(st, since_version, ids, n);
}

int ctl_store_node_pending_count(struct ctl_store *st, int64_t *n)
{
	return st->ops->node_pending_count(st, n);
}

int ctl_store_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved)
{
	return st->ops->node_counts(st, total, approved);
}

int ctl_store_node_expire(struct ctl_store *st, int64_t id, int64_t now)
{
	return st->ops->node_expire(st, id, now);
}

int ctl_store_node_update(struct ctl_store *st, int64_t id,
                          const struct ctl_node_update *u)
{
	return st->ops->node_update(st, id, u);
}

void ctl_store_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg)
{
	st->ops->set_fault(st, fn, arg);
}

int ctl_store_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v,
                               size_t n, size_t *changed)
{
	return st->ops->node_update_many(st, v, n, changed);
}

int ctl_store_node_offline_all(struct ctl_store *st, int64_t now, size_t *n)
{
	return st->ops->node_offline_all(st, now, n);
}

int ctl_store_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                            char *secret, size_t secretlen, struct ctl_apikey *out)
{
	return st->ops->apikey_create(st, description, now, secret, secretlen, out);
}

int ctl_store_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n)
{
	return st->ops->apikey_list(st, out, n);
}

int ctl_store_apikey_revoke(struct ctl_store *st, int64_t id)
{
	return st->ops->apikey_revoke(st, id);
}

int ctl_store_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                           struct ctl_apikey *out)
{
	return st->ops->apikey_check(st, secret, now, out);
}

int ctl_store_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                               size_t secretlen, int64_t *id)
{
	return st->ops->relay_key_create(st, now, secret, secretlen, id);
}

int ctl_store_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                             struct ctl_relay_rec *out)
{
	return st->ops->relay_register(st, r, out);
}

int ctl_store_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n)
{
	return st->ops->relay_list(st, out, n);
}

int ctl_store_relay_remove(struct ctl_store *st, const char *name)
{
	return st->ops->relay_remove(st, name);
}

int ctl_store_user_create(struct ctl_store *st, const char *name, int64_t now,
                          struct ctl_user *out)
{
	return st->ops->user_create(st, name, now, out);
}

int ctl_store_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n)
{
	return st->ops->user_list(st, out, n);
}

int ctl_store_user_remove(struct ctl_store *st, const char *name)
{
	return st->ops->user_remove(st, name);
}

int ctl_store_policy_get(struct ctl_store *st, struct ctl_policy_rec *out)
{
	return st->ops->policy_get(st, out);
}

int ctl_store_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                         int64_t *revision)
{
	return st->ops->policy_set(st, text, len, now, revision);
}

int ctl_store_policy_clear(struct ctl_store *st)
{
	return st->ops->policy_clear(st);
}

int ctl_store_node_owners(struct ctl_store *st, int64_t now,
                          int (*fn)(void *arg, const struct ctl_node_owner *o), void *arg)
{
	return st->ops->node_owners(st, now, fn, arg);
}

void ctl_policy_rec_free(struct ctl_policy_rec *r)
{
	if (!r)
		return;
	free(r->text);
	r->text = NULL;
	r->len = 0;
}

const char *ctl_store_kind(const struct ctl_store *st)
{
	return st->ops->kind;
}

void ctl_store_set_server(struct ctl_store *st, int64_t server_id)
{
	st->ops->set_server(st, server_id);
}

int ctl_store_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                          size_t *swept)
{
	return st->ops->server_beat(st, now, dead_after, swept);
}

int ctl_store_server_leave(struct ctl_store *st, int64_t now, size_t *n)
{
	return st->ops->server_leave(st, now, n);
}

int ctl_store_watch_fd(struct ctl_store *st)
{
	return st->ops->watch_fd ? st->ops->watch_fd(st) : -1;
}

int ctl_store_watch_drain(struct ctl_store *st)
{
	return st->ops->watch_drain ? st->ops->watch_drain(st) : 0;
}

bool ctl_store_user_name_ok(const char *n)
{
	size_t len = n ? strnlen(n, CTL_NAME_MAX + 1) : 0;
	if (len == 0 || len > CTL_NAME_MAX)
		return false;
	if (!((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= '0' && n[0] <= '9')))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* At most max characters, none of them a space or control character
 * (space allowed when spaces is true). */
static bool printable_upto(const char *t, size_t max, bool spaces)
{
	if (t && strnlen(t, max + 1) > max)
		return false;
	for (; t && *t; t++)
		if ((unsigned char)*t < ' ' || (!spaces && *t == ' ') || *t == 0x7f)
			return false;
	return true;
}

bool ctl_store_tags_ok(const char *t)
{
	return printable_upto(t, CTL_STORE_TAGS_MAX, false);
}

bool ctl_store_desc_ok(const char *d)
{
	return printable_upto(d, CTL_APIKEY_DESC_MAX, true);
}

bool ctl_store_domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > CTL_DOMAIN_MAX || d[0] == '.' || d[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '.'))
			return false;
	}
	return true;
}
