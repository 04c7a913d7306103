/* Control messages: JSON body -> struct ctl_msg, strictly validated. The
 * shapes of the messages live here; reading and checking single fields is in
 * msg_field.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "core/control/msg_field.h"
#include "core/control/msg_int.h"

static int dec_register_req(struct ctl_mf_ctx *c, json_t *o, struct ctl_register_req *m)
{
	json_t *hi, *tags;
	size_t n;

	CTL_MF_TRY(ctl_mf_str(c, o, "", "auth_key", false, CTL_MF_SECRET, m->auth_key,
	                      sizeof(m->auth_key)));
	CTL_MF_TRY(ctl_mf_key(c, o, "", "node_key", m->node_key));
	CTL_MF_TRY(ctl_mf_key(c, o, "", "disco_key", m->disco_key));
	CTL_MF_TRY(ctl_mf_str(c, o, "", "hostname", true, CTL_MF_HOSTNAME, m->hostname,
	                      sizeof(m->hostname)));
	CTL_MF_TRY(ctl_mf_object(c, o, "", "hostinfo", &hi));
	CTL_MF_TRY(
	    ctl_mf_str(c, hi, "hostinfo", "os", true, CTL_MF_TEXT, m->os, sizeof(m->os)));
	CTL_MF_TRY(ctl_mf_str(c, hi, "hostinfo", "version", true, CTL_MF_TEXT, m->version,
	                      sizeof(m->version)));
	int r = ctl_mf_array(c, o, "", "tags", false, CTL_TAGS_MAX, &tags, &n);
	CTL_MF_TRY(r);
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		const char *s;
		CTL_MF_TRY(ctl_mf_elem_str(c, tags, i, "", "tags", &s, name));
		CTL_MF_TRY(ctl_mf_take_str(c, json_array_get(tags, i), "", name,
		                           CTL_MF_TAG, m->tags[i], sizeof(m->tags[i])));
	}
	m->n_tags = (uint8_t)n;
	CTL_MF_TRY(ctl_mf_u32(c, o, "", "caps", false, &m->caps));
	json_t *eph;
	r = ctl_mf_get(c, o, "", "ephemeral", false, JSON_TRUE, &eph);
	CTL_MF_TRY(r);
	m->ephemeral = r > 0 && json_is_true(eph);
	return 0;
}

static int dec_register_resp(struct ctl_mf_ctx *c, json_t *o, struct ctl_register_resp *m)
{
	char status[16];
	struct ctl_ip ip;

	CTL_MF_TRY(
	    ctl_mf_str(c, o, "", "status", true, CTL_MF_TEXT, status, sizeof(status)));
	if (strcmp(status, "ok") == 0)
		m->status = CTL_REG_OK;
	else if (strcmp(status, "pending") == 0)
		m->status = CTL_REG_PENDING;
	else if (strcmp(status, "refused") == 0)
		m->status = CTL_REG_REFUSED;
	else
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", "status",
		                  "not ok, pending or refused");
	CTL_MF_TRY(ctl_mf_u32(c, o, "", "code", false, &m->code));
	CTL_MF_TRY(ctl_mf_str(c, o, "", "reason", false, CTL_MF_TEXT, m->reason,
	                      sizeof(m->reason)));
	if (m->status == CTL_REG_PENDING) { /* older servers send neither */
		CTL_MF_TRY(
		    ctl_mf_int(c, o, "", "node_id", false, INT64_MAX, &m->node_id));
		return ctl_mf_str(c, o, "", "name", false, CTL_MF_LABEL, m->name,
		                  sizeof(m->name));
	}
	if (m->status != CTL_REG_OK)
		return 0;
	CTL_MF_TRY(ctl_mf_int(c, o, "", "node_id", true, INT64_MAX, &m->node_id));
	CTL_MF_TRY(
	    ctl_mf_str(c, o, "", "name", true, CTL_MF_LABEL, m->name, sizeof(m->name)));
	CTL_MF_TRY(
	    ctl_mf_str(c, o, "", "fqdn", true, CTL_MF_DNSNAME, m->fqdn, sizeof(m->fqdn)));
	CTL_MF_TRY(ctl_mf_ip(c, o, "", "ipv4", 4, &ip));
	memcpy(m->ipv4, ip.addr, 4);
	CTL_MF_TRY(ctl_mf_ip(c, o, "", "ipv6", 6, &ip));
	memcpy(m->ipv6, ip.addr, 16);
	CTL_MF_TRY(ctl_mf_str(c, o, "", "domain", true, CTL_MF_DNSNAME, m->domain,
	                      sizeof(m->domain)));
	return 0;
}

static int dec_endpoints(struct ctl_mf_ctx *c, json_t *o, struct ctl_endpoints *m)
{
	CTL_MF_TRY(ctl_mf_endpoints(c, o, "", "endpoints", true, m->ep, &m->n));
	CTL_MF_TRY(ctl_mf_u32(c, o, "", "home_relay", false, &m->home_relay));
	return 0;
}

static int dec_peer(struct ctl_mf_ctx *c, json_t *o, const char *pre, struct ctl_peer *p)
{
	uint64_t u;
	json_t *v;

	if (!json_is_object(o))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
	CTL_MF_TRY(ctl_mf_int(c, o, pre, "id", true, INT64_MAX, &p->id));
	CTL_MF_TRY(
	    ctl_mf_str(c, o, pre, "name", true, CTL_MF_LABEL, p->name, sizeof(p->name)));
	CTL_MF_TRY(ctl_mf_key(c, o, pre, "node_key", p->node_key));
	CTL_MF_TRY(ctl_mf_key(c, o, pre, "disco_key", p->disco_key));
	CTL_MF_TRY(ctl_mf_ips(c, o, pre, "addresses", p->addrs, &p->n_addrs));
	CTL_MF_TRY(ctl_mf_prefixes(c, o, pre, "allowed_ips", p->allowed, &p->n_allowed));
	CTL_MF_TRY(ctl_mf_endpoints(c, o, pre, "endpoints", false, p->eps, &p->n_eps));
	CTL_MF_TRY(ctl_mf_u32(c, o, pre, "home_relay", false, &p->home_relay));
	int r = ctl_mf_get(c, o, pre, "online", false, JSON_TRUE, &v);
	CTL_MF_TRY(r);
	p->online = r > 0 && json_is_true(v);
	CTL_MF_TRY(ctl_mf_int(c, o, pre, "last_seen", false, INT64_MAX, &u));
	p->last_seen = (int64_t)u;
	if (json_object_get(o, "seen_ip"))
		CTL_MF_TRY(ctl_mf_ip(c, o, pre, "seen_ip", 0, &p->seen_ip));
	CTL_MF_TRY(ctl_mp_dec_owner(c, o, pre, p->user, p->tags));
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Two entries for one peer id in one message (peers and patches together)
 * would make the result depend on the order the receiver applies them;
 * refuse instead. */
static int check_unique_ids(struct ctl_mf_ctx *c, const char *key,
                            const struct ctl_peer *peers, size_t n,
                            const struct ctl_peer_patch *patches, size_t np)
{
	uint64_t *ids = malloc((n + np ? n + np : 1) * sizeof(*ids));
	char why[64];

	if (!ids)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", key, "out of memory");
	for (size_t i = 0; i < n; i++)
		ids[i] = peers[i].id;
	for (size_t i = 0; i < np; i++)
		ids[n + i] = patches[i].id;
	n += np;
	qsort(ids, n, sizeof(*ids), cmp_u64);
	for (size_t i = 1; i < n; i++) {
		if (ids[i] == ids[i - 1]) {
			CTL_MF_PRINTF(why, sizeof(why), "id %llu appears twice",
			              (unsigned long long)ids[i]);
			free(ids);
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", key, why);
		}
	}
	free(ids);
	return 1;
}

/* Allocates and decodes the "peers" array (optional if !required). */
static int dec_peers(struct ctl_mf_ctx *c, json_t *o, const char *key, bool required,
                     struct ctl_peer **out, size_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, o, "", key, required, CTL_PEERS_MAX, &arr, &n);

	if (r <= 0 || n == 0)
		return r;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", key, "out of memory");
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		char pre[CTL_MF_PATH_MAX];
		CTL_MF_PRINTF(pre, sizeof(pre), "%s[%zu]", key, i);
		CTL_MF_TRY(dec_peer(c, json_array_get(arr, i), pre, &(*out)[i]));
	}
	return check_unique_ids(c, key, *out, n, NULL, 0);
}

/* "more": absent or a boolean. */
static int dec_more(struct ctl_mf_ctx *c, json_t *o, bool *more)
{
	json_t *v;
	int r = ctl_mf_get(c, o, "", "more", false, JSON_TRUE, &v);
	if (r < 0)
		return r;
	*more = r > 0 && json_is_true(v);
	return 0;
}

static int dec_patch(struct ctl_mf_ctx *c, json_t *o, const char *pre,
                     struct ctl_peer_patch *p)
{
	uint64_t u;
	json_t *v;
	int r;

	if (!json_is_object(o))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
	CTL_MF_TRY(ctl_mf_int(c, o, pre, "id", true, INT64_MAX, &p->id));
	r = ctl_mf_endpoints(c, o, pre, "endpoints", false, p->eps, &p->n_eps);
	CTL_MF_TRY(r);
	if (r > 0)
		p->fields |= CTL_PATCH_ENDPOINTS;
	r = ctl_mf_u32(c, o, pre, "home_relay", false, &p->home_relay);
	CTL_MF_TRY(r);
	if (r > 0)
		p->fields |= CTL_PATCH_HOME_RELAY;
	r = ctl_mf_get(c, o, pre, "online", false, JSON_TRUE, &v);
	CTL_MF_TRY(r);
	if (r > 0) {
		p->fields |= CTL_PATCH_ONLINE;
		p->online = json_is_true(v);
	}
	r = ctl_mf_int(c, o, pre, "last_seen", false, INT64_MAX, &u);
	CTL_MF_TRY(r);
	if (r > 0) {
		p->fields |= CTL_PATCH_LAST_SEEN;
		p->last_seen = (int64_t)u;
	}
	if (json_object_get(o, "seen_ip")) {
		CTL_MF_TRY(ctl_mf_ip(c, o, pre, "seen_ip", 0, &p->seen_ip));
		p->fields |= CTL_PATCH_SEEN_IP;
	}
	return 0;
}

static int dec_patches(struct ctl_mf_ctx *c, json_t *o, struct ctl_map_delta *m)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, o, "", "patches", false, CTL_PEERS_MAX, &arr, &n);

	if (r <= 0 || n == 0)
		return r;
	m->patches = calloc(n, sizeof(*m->patches));
	if (!m->patches)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "patches", "out of memory");
	m->n_patches = n;
	for (size_t i = 0; i < n; i++) {
		char pre[CTL_MF_PATH_MAX];
		CTL_MF_PRINTF(pre, sizeof(pre), "patches[%zu]", i);
		CTL_MF_TRY(dec_patch(c, json_array_get(arr, i), pre, &m->patches[i]));
	}
	return 1;
}

/* One relay object at path pre. */
static int dec_relay(struct ctl_mf_ctx *c, json_t *e, const char *pre, struct ctl_relay *rl)
{
	uint64_t port, stun = 0;
	json_t *tls;
	if (!json_is_object(e))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
	CTL_MF_TRY(ctl_mf_u32(c, e, pre, "id", true, &rl->id));
	CTL_MF_TRY(ctl_mf_str(c, e, pre, "region", true, CTL_MF_LABEL, rl->region,
	                      sizeof(rl->region)));
	CTL_MF_TRY(ctl_mf_str(c, e, pre, "host", true, CTL_MF_HOSTNAME, rl->host,
	                      sizeof(rl->host)));
	CTL_MF_TRY(ctl_mf_int(c, e, pre, "port", true, 65535, &port));
	if (port == 0)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, "port", "out of range");
	rl->port = (uint16_t)port;
	CTL_MF_TRY(ctl_mf_str(c, e, pre, "name", false, CTL_MF_LABEL, rl->name,
	                      sizeof(rl->name)));
	CTL_MF_TRY(ctl_mf_int(c, e, pre, "stun_port", false, 65535, &stun));
	rl->stun_port = (uint16_t)stun;
	int r = ctl_mf_get(c, e, pre, "tls", false, JSON_TRUE, &tls);
	if (r < 0)
		return r;
	rl->tls = r > 0 && json_is_true(tls);
	r = json_object_get(e, "key") ? ctl_mf_key(c, e, pre, "key", rl->key) : 0;
	if (r < 0)
		return r;
	rl->has_key = r > 0;
	return 1;
}

static int dec_relay_array(struct ctl_mf_ctx *c, json_t *o, bool required,
                           struct ctl_relay **out, size_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, o, "", "relays", required, CTL_RELAYS_MAX, &arr, &n);

	if (r <= 0 || n == 0)
		return r;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "relays", "out of memory");
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		char pre[CTL_MF_PATH_MAX];
		CTL_MF_PRINTF(pre, sizeof(pre), "relays[%zu]", i);
		CTL_MF_TRY(dec_relay(c, json_array_get(arr, i), pre, &(*out)[i]));
	}
	return 1;
}

static int dec_relays(struct ctl_mf_ctx *c, json_t *o, struct ctl_map_full *m)
{
	return dec_relay_array(c, o, false, &m->relays, &m->n_relays);
}

static int dec_relay_register(struct ctl_mf_ctx *c, json_t *o, struct ctl_relay_register *m)
{
	CTL_MF_TRY(ctl_mf_str(c, o, "", "auth_key", false, CTL_MF_SECRET, m->auth_key,
	                      sizeof(m->auth_key)));
	json_t *rl = json_object_get(o, "relay");
	if (!rl)
		return ctl_mf_bad(c, CTL_MSG_E_MISSING, "", "relay", "missing");
	CTL_MF_TRY(dec_relay(c, rl, "relay", &m->relay));
	return 0;
}

static int dec_relay_state(struct ctl_mf_ctx *c, json_t *o, struct ctl_relay_state *m)
{
	json_t *arr;
	size_t n;
	CTL_MF_TRY(ctl_mf_int(c, o, "", "version", true, INT64_MAX, &m->version));
	json_t *self = json_object_get(o, "self");
	if (!self)
		return ctl_mf_bad(c, CTL_MSG_E_MISSING, "", "self", "missing");
	CTL_MF_TRY(dec_relay(c, self, "self", &m->self));
	CTL_MF_TRY(dec_relay_array(c, o, false, &m->relays, &m->n_relays));
	int r = ctl_mf_array(c, o, "", "keys", true, CTL_RELAY_KEYS_MAX, &arr, &n);
	if (r <= 0 || n == 0)
		return r < 0 ? r : 0;
	m->keys = calloc(n, sizeof(*m->keys));
	if (!m->keys)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "keys", "out of memory");
	m->n_keys = n;
	for (size_t i = 0; i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		json_t *v = json_array_get(arr, i);
		size_t bl = 0;
		CTL_MF_PRINTF(name, sizeof(name), "keys[%zu]", i);
		if (!json_is_string(v) ||
		    sodium_base642bin(m->keys[i], CTL_KEY_LEN, json_string_value(v),
		                      json_string_length(v), NULL, &bl, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    bl != CTL_KEY_LEN)
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name,
			                  "not 32 bytes of base64");
	}
	return 0;
}

static int dec_map_full(struct ctl_mf_ctx *c, json_t *o, struct ctl_map_full *m)
{
	json_t *self, *dns;

	CTL_MF_TRY(ctl_mf_int(c, o, "", "version", true, INT64_MAX, &m->version));
	CTL_MF_TRY(ctl_mf_object(c, o, "", "self", &self));
	CTL_MF_TRY(ctl_mf_int(c, self, "self", "id", true, INT64_MAX, &m->self_id));
	CTL_MF_TRY(ctl_mf_str(c, self, "self", "name", true, CTL_MF_LABEL, m->self_name,
	                      sizeof(m->self_name)));
	CTL_MF_TRY(
	    ctl_mf_ips(c, self, "self", "addresses", m->self_addrs, &m->n_self_addrs));
	CTL_MF_TRY(ctl_mp_dec_owner(c, self, "self", m->self_user, m->self_tags));
	CTL_MF_TRY(ctl_mf_object(c, o, "", "dns", &dns));
	CTL_MF_TRY(ctl_mf_str(c, dns, "dns", "domain", true, CTL_MF_DNSNAME,
	                      m->dns_domain, sizeof(m->dns_domain)));
	CTL_MF_TRY(ctl_mf_ip(c, dns, "dns", "magic_dns", 4, &m->magic_dns));
	CTL_MF_TRY(dec_relays(c, o, m));
	CTL_MF_TRY(dec_peers(c, o, "peers", true, &m->peers, &m->n_peers));
	json_t *f = json_object_get(o, "filter");
	if (f) {
		CTL_MF_TRY(ctl_mp_dec_filter(c, f, "filter", &m->filter));
		m->has_filter = true;
	}
	CTL_MF_TRY(ctl_mp_dec_reach(c, o, &m->reach, &m->n_reach));
	if (m->n_reach && !m->has_filter)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", "reach",
		                  "without a filter (no policy: nothing to reach)");
	return dec_more(c, o, &m->more);
}

static int dec_map_peers(struct ctl_mf_ctx *c, json_t *o, struct ctl_map_peers *m)
{
	CTL_MF_TRY(dec_peers(c, o, "peers", true, &m->peers, &m->n_peers));
	return dec_more(c, o, &m->more);
}

static int dec_map_delta(struct ctl_mf_ctx *c, json_t *o, struct ctl_map_delta *m)
{
	json_t *arr;
	size_t n;

	CTL_MF_TRY(ctl_mf_int(c, o, "", "version", true, INT64_MAX, &m->version));
	CTL_MF_TRY(
	    ctl_mf_int(c, o, "", "base_version", true, INT64_MAX, &m->base_version));
	CTL_MF_TRY(dec_peers(c, o, "peers", false, &m->peers, &m->n_peers));
	CTL_MF_TRY(dec_patches(c, o, m));
	if (m->n_patches)
		CTL_MF_TRY(check_unique_ids(c, "patches", m->peers, m->n_peers,
		                            m->patches, m->n_patches));
	if (json_object_get(o, "relays")) {
		CTL_MF_TRY(dec_relay_array(c, o, true, &m->relays, &m->n_relays));
		m->has_relays = true;
	}
	/* self: the node's own new owner, whole */
	json_t *self;
	int rs = ctl_mf_get(c, o, "", "self", false, JSON_OBJECT, &self);
	if (rs < 0)
		return rs;
	if (rs > 0) {
		CTL_MF_TRY(ctl_mp_dec_owner(c, self, "self", m->self_user, m->self_tags));
		m->has_self = true;
	}
	/* filter: an object sets the node's filter, null clears it */
	json_t *f = json_object_get(o, "filter");
	if (json_is_null(f)) {
		m->filter_op = CTL_FILTER_CLEAR;
	} else if (f) {
		CTL_MF_TRY(ctl_mp_dec_filter(c, f, "filter", &m->filter));
		m->filter_op = CTL_FILTER_SET;
	}
	CTL_MF_TRY(ctl_mp_dec_reach(c, o, &m->reach, &m->n_reach));
	if (m->n_reach && m->filter_op == CTL_FILTER_CLEAR)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", "reach",
		                  "with filter null (a cleared policy drops every entry)");
	int r = ctl_mf_array(c, o, "", "removed", false, CTL_REMOVED_MAX, &arr, &n);
	if (r <= 0 || n == 0)
		return r;
	m->removed = calloc(n, sizeof(*m->removed));
	if (!m->removed)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "removed", "out of memory");
	m->n_removed = n;
	for (size_t i = 0; i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		json_t *v = json_array_get(arr, i);
		CTL_MF_PRINTF(name, sizeof(name), "removed[%zu]", i);
		if (!json_is_integer(v))
			return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", name,
			                  "not an integer");
		if (json_integer_value(v) < 0)
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name, "out of range");
		m->removed[i] = (uint64_t)json_integer_value(v);
	}
	return 0;
}

static int dec_error(struct ctl_mf_ctx *c, json_t *o, struct ctl_error *m)
{
	CTL_MF_TRY(ctl_mf_u32(c, o, "", "code", true, &m->code));
	CTL_MF_TRY(
	    ctl_mf_str(c, o, "", "text", true, CTL_MF_TEXT, m->text, sizeof(m->text)));
	return 0;
}

/* One pass over the body before jansson parses it: the nesting depth of
 * [ and { outside strings (jansson's own limit is 2048 levels, each a
 * recursion) and the number of values (each [, { and , outside strings
 * starts one; an empty container's one is counted too, which only errs
 * high). Stops early once either is over. 0, or the CTL_MSG_E_* code. */
static int prescan(const uint8_t *p, size_t len, size_t max_tokens)
{
	size_t depth = 0, tokens = 1;
	bool in_str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		uint8_t ch = p[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{' || ch == ',') {
			if (++tokens > max_tokens)
				return CTL_MSG_E_TOKENS;
			if (ch != ',' && ++depth > CTL_MSG_MAX_DEPTH)
				return CTL_MSG_E_DEPTH;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

static int dec_body(struct ctl_mf_ctx *c, unsigned type, json_t *o, struct ctl_msg *m)
{
	switch (type) {
	case CTL_MSG_REGISTER_REQ:
		return dec_register_req(c, o, &m->u.reg_req);
	case CTL_MSG_REGISTER_RESP:
		return dec_register_resp(c, o, &m->u.reg_resp);
	case CTL_MSG_ENDPOINTS:
		return dec_endpoints(c, o, &m->u.endpoints);
	case CTL_MSG_MAP_FULL:
		return dec_map_full(c, o, &m->u.map);
	case CTL_MSG_MAP_DELTA:
		return dec_map_delta(c, o, &m->u.delta);
	case CTL_MSG_KEEPALIVE:
	case CTL_MSG_LOGOUT:
		return 0;
	case CTL_MSG_ERROR:
		return dec_error(c, o, &m->u.error);
	case CTL_MSG_RELAY_REGISTER:
		return dec_relay_register(c, o, &m->u.relay_reg);
	case CTL_MSG_RELAY_STATE:
		return dec_relay_state(c, o, &m->u.relay_state);
	case CTL_MSG_MAP_PEERS:
		return dec_map_peers(c, o, &m->u.chunk);
	}
	ctl_msg_seterr(c->err, CTL_MSG_E_TYPE_UNKNOWN, "%s: no JSON body to decode",
	               ctl_msg_type_name(type));
	return -EPROTO;
}

int ctl_msg_decode(unsigned type, const uint8_t *p, size_t len, struct ctl_msg *m,
                   struct ctl_msg_err *err)
{
	return ctl_msg_decode_limited(type, p, len, SIZE_MAX, m, err);
}

int ctl_msg_decode_limited(unsigned type, const uint8_t *p, size_t len, size_t max_tokens,
                           struct ctl_msg *m, struct ctl_msg_err *err)
{
	struct ctl_mf_ctx c = {.err = err};
	json_error_t jerr;
	json_t *root;
	int r;

	memset(m, 0, sizeof(*m));
	if (err) {
		err->code = CTL_MSG_E_NONE;
		err->text[0] = '\0';
	}
	if (!ctl_msg_type_name(type)) {
		ctl_msg_seterr(err, CTL_MSG_E_TYPE_UNKNOWN, "unknown message type 0x%02x",
		               type);
		return -EPROTO;
	}
	m->type = (enum ctl_msg_type)type;
	if (type == CTL_MSG_ZMAP) {
		/* A compressed body: ctl_zmsg_unwrap (zmsg.h) gives the message
		 * inside, which is decoded as its own type. */
		ctl_msg_seterr(err, CTL_MSG_E_TYPE_UNKNOWN,
		               "ZMAP: a compressed map, not JSON: unwrap it first");
		return -EPROTO;
	}
	if (len > CTL_MSG_MAX_LEN) {
		ctl_msg_seterr(err, CTL_MSG_E_TOO_BIG, "%s: %zu bytes, more than %d",
		               ctl_msg_type_name(type), len, CTL_MSG_MAX_LEN);
		return -EMSGSIZE;
	}
	r = prescan(p, len, max_tokens);
	if (r == CTL_MSG_E_DEPTH) {
		ctl_msg_seterr(err, CTL_MSG_E_DEPTH, "%s: nested deeper than %d",
		               ctl_msg_type_name(type), CTL_MSG_MAX_DEPTH);
		return -EBADMSG;
	}
	if (r == CTL_MSG_E_TOKENS) {
		ctl_msg_seterr(err, CTL_MSG_E_TOKENS, "%s: more than %zu JSON values",
		               ctl_msg_type_name(type), max_tokens);
		return -EBADMSG;
	}
	root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		ctl_msg_seterr(err, CTL_MSG_E_SYNTAX, "%s: byte %d: %s",
		               ctl_msg_type_name(type), jerr.position, jerr.text);
		return -EBADMSG;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		ctl_msg_seterr(err, CTL_MSG_E_SYNTAX, "%s: not a JSON object",
		               ctl_msg_type_name(type));
		return -EBADMSG;
	}
	r = dec_body(&c, type, root, m);
	/* The auth key also sits in jansson's copy of the body; wipe it there
	 * (the caller owns p and wipes that). */
	if (type == CTL_MSG_REGISTER_REQ || type == CTL_MSG_RELAY_REGISTER)
		ctl_msg_json_wipe(root, "auth_key");
	json_decref(root);
	if (r < 0)
		ctl_msg_free(m);
	return r < 0 ? r : 0;
}
