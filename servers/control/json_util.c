/* JSON shapes shared by mesh-control's CLI and admin API: see json_util.h. */
#include "servers/control/json_util.h"

#include <stdbool.h>
#include <stdio.h>

#include "core/control/msg.h"
#include "servers/control/cli_util.h"

json_t *ctl_json_node(const struct ctl_node *nd, const char *domain, int64_t now)
{
	char v4[16], v6[48], fqdn[CTL_NAME_MAX + CTL_DOMAIN_MAX + 2];
	bool expired = nd->expiry && nd->expiry <= now;
	char fpr[CTL_KEY_FPR_LEN + 1];

	ctl_key_fpr(nd->machine_key, fpr);
	ctl_cli_fmt_v4(v4, sizeof v4, nd->ipv4);
	ctl_cli_fmt_v6(v6, sizeof v6, nd->ipv6);
	snprintf(fqdn, sizeof fqdn, "%s.%s", nd->name, domain);
	return json_pack(
	    "{s:I,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:b,s:b,s:I,s:b,s:s,s:s,s:I,s:s}", "id",
	    (json_int_t)nd->id, "name", nd->name, "fqdn", fqdn, "hostname", nd->hostname,
	    "ipv4", v4, "ipv6", v6, "online", nd->online, "last_seen",
	    (json_int_t)nd->last_seen, "approved", nd->approved, "ephemeral",
	    nd->ephemeral, "expiry", (json_int_t)nd->expiry, "expired", expired, "tags",
	    nd->tags, "user", nd->user, "created", (json_int_t)nd->created, "key", fpr);
}

const char *ctl_json_key_state(const struct ctl_authkey *k, int64_t now)
{
	if (k->revoked)
		return "revoked";
	if (k->expiry && k->expiry <= now)
		return "expired";
	if (!k->reusable && k->uses > 0)
		return "used";
	return "valid";
}

json_t *ctl_json_authkey(const struct ctl_authkey *k, int64_t now)
{
	return json_pack("{s:I,s:b,s:b,s:b,s:I,s:s,s:I,s:I,s:s,s:s}", "id",
	                 (json_int_t)k->id, "reusable", k->reusable, "ephemeral",
	                 k->ephemeral, "revoked", k->revoked, "uses", (json_int_t)k->uses,
	                 "state", ctl_json_key_state(k, now), "expiry",
	                 (json_int_t)k->expiry, "created", (json_int_t)k->created, "tags",
	                 k->tags, "user", k->user);
}

json_t *ctl_json_apikey(const struct ctl_apikey *k)
{
	return json_pack("{s:I,s:s,s:b,s:I,s:I}", "id", (json_int_t)k->id, "description",
	                 k->description, "revoked", k->revoked, "created",
	                 (json_int_t)k->created, "last_used", (json_int_t)k->last_used);
}
