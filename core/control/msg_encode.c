/* Control messages: struct ctl_msg -> compact JSON.
 *
 * check_msg() first refuses what the decoder would refuse (names that are
 * not DNS names, control characters, unterminated buffers, prefixes with
 * host bits), naming the field, so a bad value is caught where it is made
 * (the server) rather than by every node that receives the map.
 *
 * Builders return a new json_t or NULL. A builder that refuses its input
 * says why in the error; a NULL from jansson itself (out of memory, a string
 * that is not UTF-8) is reported by ctl_msg_encode from json_pack's error. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "core/control/msg_field.h"
#include "core/control/msg_int.h"

struct ectx {
	struct ctl_msg_err *err;
	bool refused; /* a builder set err */
};

static json_t *refuse(struct ectx *c, const char *what)
{
	if (!c->refused)
		ctl_msg_seterr(c->err, CTL_MSG_E_VALUE, "%s", what);
	c->refused = true;
	return NULL;
}

static json_t *j_key(const uint8_t k[CTL_KEY_LEN])
{
	char b64[64];

	sodium_bin2base64(b64, sizeof(b64), k, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	return json_string(b64);
}

static json_t *j_int(struct ectx *c, uint64_t v, const char *what)
{
	if (v > (uint64_t)INT64_MAX)
		return refuse(c, what);
	return json_integer((json_int_t)v);
}

static json_t *j_ips(struct ectx *c, const struct ctl_ip *ips, size_t n)
{
	json_t *a;

	if (n > CTL_ADDRS_MAX)
		return refuse(c, "addresses: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_ip_format(&ips[i], s);
		if (json_array_append_new(a, json_string(s)) != 0)
			goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *j_prefixes(struct ectx *c, const struct ctl_prefix *pf, size_t n)
{
	json_t *a;

	if (n > CTL_ALLOWED_MAX)
		return refuse(c, "allowed_ips: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_prefix_format(&pf[i], s);
		if (json_array_append_new(a, json_string(s)) != 0)
			goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *j_endpoints(struct ectx *c, const struct ctl_endpoint *ep, size_t n)
{
	json_t *a;

	if (n > CTL_ENDPOINTS_MAX)
		return refuse(c, "endpoints: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char s[CTL_ADDRSTR_MAX];
		ctl_endpoint_format(&ep[i], s);
		if (json_array_append_new(a, json_string(s)) != 0)
			goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}

/* An optional address field: set only when ip has a family. */
static int j_set_ip(json_t *o, const char *key, const struct ctl_ip *ip)
{
	char s[CTL_ADDRSTR_MAX];
	if (ip->family != 4 && ip->family != 6)
		return 0;
	ctl_ip_format(ip, s);
	return json_object_set_new(o, key, json_string(s));
}

static json_t *j_peer(struct ectx *c, const struct ctl_peer *p)
{
	json_t *o = json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:b, s:o}", "id",
	                 j_int(c, p->id, "peer id out of range"), "name", p->name,
	                 "node_key", j_key(p->node_key), "disco_key", j_key(p->disco_key),
	                 "addresses", j_ips(c, p->addrs, p->n_addrs), "allowed_ips",
	                 j_prefixes(c, p->allowed, p->n_allowed), "endpoints",
	                 j_endpoints(c, p->eps, p->n_eps), "home_relay",
	                 (json_int_t)p->home_relay, "online", p->online, "last_seen",
	                 j_int(c, (uint64_t)p->last_seen, "last_seen out of range"));
	if (o && (j_set_ip(o, "seen_ip", &p->seen_ip) != 0 || ctl_mp_set_owner(o, p->user, p->tags) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *j_peers(struct ectx *c, const struct ctl_peer *peers, size_t n)
{
	json_t *a;

	if (n > CTL_PEERS_MAX)
		return refuse(c, "peers: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, j_peer(c, &peers[i])) != 0)
			goto fail;
	return a;
fail:
	json_decref(a);
	return NULL;
}

/* One relay; the optional fields only when set, so a map without relay
 * details reads as before. */
static json_t *j_relay(const struct ctl_relay *r)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:i}", "id", (json_int_t)r->id, "region",
	                      r->region, "host", r->host, "port", (int)r->port);
	if (!o)
		return NULL;
	if ((r->name[0] && json_object_set_new(o, "name", json_string(r->name)) != 0) ||
	    (r->stun_port &&
	     json_object_set_new(o, "stun_port", json_integer(r->stun_port)) != 0) ||
	    (r->tls && json_object_set_new(o, "tls", json_true()) != 0) ||
	    (r->has_key && json_object_set_new(o, "key", j_key(r->key)) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *j_relays(struct ectx *c, const struct ctl_relay *r, size_t n)
{
	json_t *a;

	if (n > CTL_RELAYS_MAX)
		return refuse(c, "relays: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, j_relay(&r[i])) != 0)
			goto fail;
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *enc_relay_state(struct ectx *c, const struct ctl_relay_state *m)
{
	json_t *keys = json_array();
	if (!keys)
		return NULL;
	if (m->n_keys > CTL_RELAY_KEYS_MAX) {
		json_decref(keys);
		return refuse(c, "keys: too many");
	}
	for (size_t i = 0; i < m->n_keys; i++)
		if (json_array_append_new(keys, j_key(m->keys[i])) != 0) {
			json_decref(keys);
			return NULL;
		}
	return json_pack("{s:o, s:o, s:o, s:o}", "version",
	                 j_int(c, m->version, "version out of range"), "self",
	                 j_relay(&m->self), "keys", keys, "relays",
	                 j_relays(c, m->relays, m->n_relays));
}

static json_t *enc_relay_register(const struct ctl_relay_register *m)
{
	json_t *o = json_pack("{s:o}", "relay", j_relay(&m->relay));
	if (o && m->auth_key[0] &&
	    json_object_set_new(o, "auth_key", json_string(m->auth_key)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *j_tags(struct ectx *c, const struct ctl_register_req *m)
{
	json_t *a;

	if (m->n_tags > CTL_TAGS_MAX)
		return refuse(c, "tags: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < m->n_tags; i++)
		if (json_array_append_new(a, json_string(m->tags[i])) != 0)
			goto fail;
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *j_removed(struct ectx *c, const struct ctl_map_delta *m)
{
	json_t *a;

	if (m->n_removed > CTL_REMOVED_MAX)
		return refuse(c, "removed: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < m->n_removed; i++)
		if (json_array_append_new(
		        a, j_int(c, m->removed[i], "removed id out of range")) != 0)
			goto fail;
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *enc_register_req(struct ectx *c, const struct ctl_register_req *m)
{
	json_t *o = json_pack("{s:s, s:o, s:o, s:s, s:{s:s, s:s}, s:o}", "auth_key",
	                      m->auth_key, "node_key", j_key(m->node_key), "disco_key",
	                      j_key(m->disco_key), "hostname", m->hostname, "hostinfo",
	                      "os", m->os, "version", m->version, "tags", j_tags(c, m));
	if (o &&
	    ((m->caps &&
	      json_object_set_new(o, "caps", json_integer((json_int_t)m->caps)) != 0) ||
	     (m->ephemeral && json_object_set_new(o, "ephemeral", json_true()) != 0))) {
		ctl_msg_json_wipe(o, "auth_key");
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *enc_register_resp(struct ectx *c, const struct ctl_register_resp *m)
{
	static const char *const st[] = {"ok", "pending", "refused"};
	struct ctl_ip v4 = {.family = 4}, v6 = {.family = 6};
	char s4[CTL_ADDRSTR_MAX], s6[CTL_ADDRSTR_MAX];

	if ((unsigned)m->status > CTL_REG_REFUSED)
		return refuse(c, "status: not ok, pending or refused");
	if (m->status == CTL_REG_PENDING && m->name[0])
		/* the name and id the server gave it, to be approved by */
		return json_pack("{s:s, s:I, s:s, s:o, s:s}", "status", "pending", "code",
		                 (json_int_t)m->code, "reason", m->reason, "node_id",
		                 j_int(c, m->node_id, "node_id out of range"), "name",
		                 m->name);
	if (m->status != CTL_REG_OK)
		return json_pack("{s:s, s:I, s:s}", "status", st[m->status], "code",
		                 (json_int_t)m->code, "reason", m->reason);
	memcpy(v4.addr, m->ipv4, 4);
	memcpy(v6.addr, m->ipv6, 16);
	ctl_ip_format(&v4, s4);
	ctl_ip_format(&v6, s6);
	return json_pack("{s:s, s:I, s:s, s:o, s:s, s:s, s:s, s:s, s:s}", "status", "ok",
	                 "code", (json_int_t)m->code, "reason", m->reason, "node_id",
	                 j_int(c, m->node_id, "node_id out of range"), "name", m->name,
	                 "fqdn", m->fqdn, "ipv4", s4, "ipv6", s6, "domain", m->domain);
}

/* "more": true on a chunk that others follow; left out otherwise, so a map
 * in one message reads as it always did. */
static json_t *with_more(json_t *o, bool more)
{
	if (o && more && json_object_set_new(o, "more", json_true()) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The node's own owner in o's "self" object (left out when none: what an
 * older server sent). o is released and NULL returned without memory. */
static json_t *with_self_owner(json_t *o, const char *user, const char *tags)
{
	json_t *self = o ? json_object_get(o, "self") : NULL;
	if (o && self && ctl_mp_set_owner(self, user, tags) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *enc_map_full(struct ectx *c, const struct ctl_map_full *m)
{
	char magicdns[CTL_ADDRSTR_MAX];

	ctl_ip_format(&m->magic_dns, magicdns);
	return with_self_owner(ctl_mp_with_policy(
	    with_more(
	        json_pack("{s:o, s:{s:o, s:s, s:o}, s:{s:s, s:s}, s:o, s:o}", "version",
	                  j_int(c, m->version, "version out of range"), "self", "id",
	                  j_int(c, m->self_id, "self.id out of range"), "name",
	                  m->self_name, "addresses",
	                  j_ips(c, m->self_addrs, m->n_self_addrs), "dns", "domain",
	                  m->dns_domain, "magic_dns", magicdns, "relays",
	                  j_relays(c, m->relays, m->n_relays), "peers",
	                  j_peers(c, m->peers, m->n_peers)),
	        m->more),
	    m->has_filter, false, &m->filter, m->reach, m->n_reach), m->self_user,
	    m->self_tags);
}

/* One patch: its id and only the fields it sets. */
static json_t *j_patch(struct ectx *c, const struct ctl_peer_patch *p)
{
	json_t *o = json_pack("{s:o}", "id", j_int(c, p->id, "patch id out of range"));
	if (!o)
		return NULL;
	if (((p->fields & CTL_PATCH_ENDPOINTS) &&
	     json_object_set_new(o, "endpoints", j_endpoints(c, p->eps, p->n_eps)) !=
	         0) ||
	    ((p->fields & CTL_PATCH_HOME_RELAY) &&
	     json_object_set_new(o, "home_relay",
	                         json_integer((json_int_t)p->home_relay)) != 0) ||
	    ((p->fields & CTL_PATCH_ONLINE) &&
	     json_object_set_new(o, "online", json_boolean(p->online)) != 0) ||
	    ((p->fields & CTL_PATCH_LAST_SEEN) &&
	     json_object_set_new(
	         o, "last_seen",
	         j_int(c, (uint64_t)p->last_seen, "last_seen out of range")) != 0) ||
	    ((p->fields & CTL_PATCH_SEEN_IP) && j_set_ip(o, "seen_ip", &p->seen_ip) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *j_patches(struct ectx *c, const struct ctl_peer_patch *p, size_t n)
{
	json_t *a;

	if (n > CTL_PEERS_MAX)
		return refuse(c, "patches: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, j_patch(c, &p[i])) != 0)
			goto fail;
	return a;
fail:
	json_decref(a);
	return NULL;
}

static json_t *enc_map_delta(struct ectx *c, const struct ctl_map_delta *m)
{
	json_t *o =
	    json_pack("{s:o, s:o, s:o, s:o}", "version",
	              j_int(c, m->version, "version out of range"), "base_version",
	              j_int(c, m->base_version, "base_version out of range"), "peers",
	              j_peers(c, m->peers, m->n_peers), "removed", j_removed(c, m));
	if (o && m->n_patches &&
	    json_object_set_new(o, "patches", j_patches(c, m->patches, m->n_patches)) !=
	        0) {
		json_decref(o);
		return NULL;
	}
	if (o && m->has_relays &&
	    json_object_set_new(o, "relays", j_relays(c, m->relays, m->n_relays)) != 0) {
		json_decref(o);
		return NULL;
	}
	json_t *self;
	if (o && m->has_self &&
	    (!(self = json_object()) || json_object_set_new(o, "self", self) != 0 ||
	     ctl_mp_set_owner(self, m->self_user, m->self_tags) != 0)) {
		json_decref(o);
		return NULL;
	}
	return ctl_mp_with_policy(o, m->filter_op == CTL_FILTER_SET,
	                   m->filter_op == CTL_FILTER_CLEAR, &m->filter, m->reach,
	                   m->n_reach);
}

/* Refuses string s (a buffer of cap bytes) unless it is terminated and
 * valid for kind; the field is named by the printf-style path. */
static int check_str(struct ectx *c, const char *s, size_t cap, enum ctl_mf_kind kind,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int check_str(struct ectx *c, const char *s, size_t cap, enum ctl_mf_kind kind,
                     const char *fmt, ...)
{
	size_t n = strnlen(s, cap);
	char path[CTL_MF_PATH_MAX];
	va_list ap;

	if (n < cap && ctl_mf_str_ok(kind, s, n))
		return 0;
	va_start(ap, fmt);
	if (vsnprintf(path, sizeof(path), fmt, ap) < 0)
		path[0] = '\0';
	va_end(ap);
	ctl_msg_seterr(c->err, CTL_MSG_E_VALUE, "%s: %s", path,
	               n == cap ? "not terminated" : ctl_mf_str_what(kind));
	c->refused = true;
	return -EINVAL;
}

static int check_count(struct ectx *c, size_t n, size_t max, const char *pre,
                       const char *what)
{
	if (n <= max)
		return 0;
	ctl_msg_seterr(c->err, CTL_MSG_E_TOO_MANY, "%s%s%s: %zu entries, more than %zu",
	               pre, pre[0] ? "." : "", what, n, max);
	c->refused = true;
	return -EINVAL;
}

/* Family 4/6, prefix length in range and host bits zero, port not 0. */
static int check_peer_addrs(struct ectx *c, const struct ctl_peer *p, const char *pre)
{
	CTL_MF_TRY(check_count(c, p->n_addrs, CTL_ADDRS_MAX, pre, "addresses"));
	CTL_MF_TRY(check_count(c, p->n_allowed, CTL_ALLOWED_MAX, pre, "allowed_ips"));
	CTL_MF_TRY(check_count(c, p->n_eps, CTL_ENDPOINTS_MAX, pre, "endpoints"));
	for (size_t i = 0; i < p->n_allowed; i++) {
		char txt[CTL_ADDRSTR_MAX];
		struct ctl_prefix back;
		ctl_prefix_format(&p->allowed[i], txt);
		if (!ctl_prefix_parse(txt, &back) ||
		    memcmp(&back, &p->allowed[i], sizeof(back)) != 0) {
			ctl_msg_seterr(
			    c->err, CTL_MSG_E_VALUE,
			    "%s.allowed_ips[%zu]: not a prefix (host bits set?)", pre, i);
			c->refused = true;
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < p->n_eps; i++) {
		if (p->eps[i].port == 0) {
			ctl_msg_seterr(c->err, CTL_MSG_E_VALUE,
			               "%s.endpoints[%zu]: port 0", pre, i);
			c->refused = true;
			return -EINVAL;
		}
	}
	return 0;
}

static int check_peers(struct ectx *c, const struct ctl_peer *peers, size_t n)
{
	CTL_MF_TRY(check_count(c, n, CTL_PEERS_MAX, "", "peers"));
	for (size_t i = 0; i < n; i++) {
		char pre[32];
		if (snprintf(pre, sizeof(pre), "peers[%zu]", i) < 0)
			pre[0] = '\0';
		CTL_MF_TRY(check_str(c, peers[i].name, sizeof(peers[i].name),
		                     CTL_MF_LABEL, "%s.name", pre));
		CTL_MF_TRY(check_peer_addrs(c, &peers[i], pre));
		if (ctl_mp_check_owner(peers[i].user, peers[i].tags, pre, c->err) < 0) {
			c->refused = true;
			return -EINVAL;
		}
	}
	return 0;
}

static int check_relays(struct ectx *c, const struct ctl_relay *r, size_t n)
{
	CTL_MF_TRY(check_count(c, n, CTL_RELAYS_MAX, "", "relays"));
	for (size_t i = 0; i < n; i++) {
		CTL_MF_TRY(check_str(c, r[i].region, sizeof(r[i].region), CTL_MF_LABEL,
		                     "relays[%zu].region", i));
		CTL_MF_TRY(check_str(c, r[i].host, sizeof(r[i].host), CTL_MF_HOSTNAME,
		                     "relays[%zu].host", i));
		if (r[i].name[0])
			CTL_MF_TRY(check_str(c, r[i].name, sizeof(r[i].name), CTL_MF_LABEL,
			                     "relays[%zu].name", i));
		if (r[i].port == 0) {
			ctl_msg_seterr(c->err, CTL_MSG_E_VALUE, "relays[%zu]: port 0", i);
			c->refused = true;
			return -EINVAL;
		}
	}
	return 0;
}

static int check_msg(struct ectx *c, const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_MSG_REGISTER_REQ: {
		const struct ctl_register_req *q = &m->u.reg_req;
		CTL_MF_TRY(check_str(c, q->auth_key, sizeof(q->auth_key), CTL_MF_SECRET,
		                     "auth_key"));
		CTL_MF_TRY(check_str(c, q->hostname, sizeof(q->hostname), CTL_MF_HOSTNAME,
		                     "hostname"));
		CTL_MF_TRY(
		    check_str(c, q->os, sizeof(q->os), CTL_MF_TEXT, "hostinfo.os"));
		CTL_MF_TRY(check_str(c, q->version, sizeof(q->version), CTL_MF_TEXT,
		                     "hostinfo.version"));
		CTL_MF_TRY(check_count(c, q->n_tags, CTL_TAGS_MAX, "", "tags"));
		for (size_t i = 0; i < q->n_tags; i++)
			CTL_MF_TRY(check_str(c, q->tags[i], sizeof(q->tags[i]),
			                     CTL_MF_TAG, "tags[%zu]", i));
		return 0;
	}
	case CTL_MSG_REGISTER_RESP: {
		const struct ctl_register_resp *r = &m->u.reg_resp;
		CTL_MF_TRY(
		    check_str(c, r->reason, sizeof(r->reason), CTL_MF_TEXT, "reason"));
		if (r->status != CTL_REG_OK)
			return 0;
		CTL_MF_TRY(check_str(c, r->name, sizeof(r->name), CTL_MF_LABEL, "name"));
		CTL_MF_TRY(
		    check_str(c, r->fqdn, sizeof(r->fqdn), CTL_MF_DNSNAME, "fqdn"));
		return check_str(c, r->domain, sizeof(r->domain), CTL_MF_DNSNAME,
		                 "domain");
	}
	case CTL_MSG_ENDPOINTS:
		CTL_MF_TRY(
		    check_count(c, m->u.endpoints.n, CTL_ENDPOINTS_MAX, "", "endpoints"));
		for (size_t i = 0; i < m->u.endpoints.n; i++) {
			if (m->u.endpoints.ep[i].port == 0) {
				ctl_msg_seterr(c->err, CTL_MSG_E_VALUE,
				               "endpoints[%zu]: port 0", i);
				c->refused = true;
				return -EINVAL;
			}
		}
		return 0;
	case CTL_MSG_MAP_FULL: {
		const struct ctl_map_full *f = &m->u.map;
		CTL_MF_TRY(check_str(c, f->self_name, sizeof(f->self_name), CTL_MF_LABEL,
		                     "self.name"));
		if (ctl_mp_check_owner(f->self_user, f->self_tags, "self", c->err) < 0) {
			c->refused = true;
			return -EINVAL;
		}
		CTL_MF_TRY(
		    check_count(c, f->n_self_addrs, CTL_ADDRS_MAX, "self", "addresses"));
		CTL_MF_TRY(check_str(c, f->dns_domain, sizeof(f->dns_domain),
		                     CTL_MF_DNSNAME, "dns.domain"));
		CTL_MF_TRY(check_relays(c, f->relays, f->n_relays));
		if (ctl_mp_check_policy(f->has_filter, false, &f->filter, f->has_filter,
		                        f->reach, f->n_reach, c->err) < 0) {
			c->refused = true;
			return -EINVAL;
		}
		return check_peers(c, f->peers, f->n_peers);
	}
	case CTL_MSG_MAP_DELTA:
		if ((unsigned)m->u.delta.filter_op > CTL_FILTER_CLEAR) {
			ctl_msg_seterr(c->err, CTL_MSG_E_VALUE, "filter: unknown filter_op");
			c->refused = true;
			return -EINVAL;
		}
		if (ctl_mp_check_policy(m->u.delta.filter_op == CTL_FILTER_SET,
		                        m->u.delta.filter_op == CTL_FILTER_CLEAR,
		                        &m->u.delta.filter,
		                        m->u.delta.filter_op != CTL_FILTER_CLEAR,
		                        m->u.delta.reach, m->u.delta.n_reach, c->err) < 0) {
			c->refused = true;
			return -EINVAL;
		}
		if (m->u.delta.has_self &&
		    ctl_mp_check_owner(m->u.delta.self_user, m->u.delta.self_tags, "self",
		                       c->err) < 0) {
			c->refused = true;
			return -EINVAL;
		}
		if (m->u.delta.has_relays)
			CTL_MF_TRY(
			    check_relays(c, m->u.delta.relays, m->u.delta.n_relays));
		CTL_MF_TRY(
		    check_count(c, m->u.delta.n_patches, CTL_PEERS_MAX, "", "patches"));
		for (size_t i = 0; i < m->u.delta.n_patches; i++) {
			const struct ctl_peer_patch *pp = &m->u.delta.patches[i];
			CTL_MF_TRY(check_count(c, pp->n_eps, CTL_ENDPOINTS_MAX, "patches",
			                       "endpoints"));
			for (size_t k = 0; k < pp->n_eps; k++) {
				if (pp->eps[k].port == 0) {
					ctl_msg_seterr(
					    c->err, CTL_MSG_E_VALUE,
					    "patches[%zu].endpoints[%zu]: port 0", i, k);
					c->refused = true;
					return -EINVAL;
				}
			}
		}
		return check_peers(c, m->u.delta.peers, m->u.delta.n_peers);
	case CTL_MSG_MAP_PEERS:
		return check_peers(c, m->u.chunk.peers, m->u.chunk.n_peers);
	case CTL_MSG_ERROR:
		return check_str(c, m->u.error.text, sizeof(m->u.error.text), CTL_MF_TEXT,
		                 "text");
	case CTL_MSG_RELAY_REGISTER:
		CTL_MF_TRY(check_str(c, m->u.relay_reg.auth_key,
		                     sizeof(m->u.relay_reg.auth_key), CTL_MF_SECRET,
		                     "auth_key"));
		return check_relays(c, &m->u.relay_reg.relay, 1);
	case CTL_MSG_RELAY_STATE:
		CTL_MF_TRY(check_relays(c, &m->u.relay_state.self, 1));
		return check_relays(c, m->u.relay_state.relays, m->u.relay_state.n_relays);
	default:
		return 0;
	}
}

static json_t *enc_body(struct ectx *c, const struct ctl_msg *m)
{
	switch (m->type) {
	case CTL_MSG_REGISTER_REQ:
		return enc_register_req(c, &m->u.reg_req);
	case CTL_MSG_REGISTER_RESP:
		return enc_register_resp(c, &m->u.reg_resp);
	case CTL_MSG_ENDPOINTS:
		return json_pack("{s:o, s:I}", "endpoints",
		                 j_endpoints(c, m->u.endpoints.ep, m->u.endpoints.n),
		                 "home_relay", (json_int_t)m->u.endpoints.home_relay);
	case CTL_MSG_MAP_FULL:
		return enc_map_full(c, &m->u.map);
	case CTL_MSG_MAP_DELTA:
		return enc_map_delta(c, &m->u.delta);
	case CTL_MSG_KEEPALIVE:
	case CTL_MSG_LOGOUT:
		return json_object();
	case CTL_MSG_ERROR:
		return json_pack("{s:I, s:s}", "code", (json_int_t)m->u.error.code,
		                 "text", m->u.error.text);
	case CTL_MSG_RELAY_REGISTER:
		return enc_relay_register(&m->u.relay_reg);
	case CTL_MSG_RELAY_STATE:
		return enc_relay_state(c, &m->u.relay_state);
	case CTL_MSG_MAP_PEERS:
		return with_more(
		    json_pack("{s:o}", "peers",
		              j_peers(c, m->u.chunk.peers, m->u.chunk.n_peers)),
		    m->u.chunk.more);
	case CTL_MSG_ZMAP: /* not JSON: core/control/zmsg.h */
		break;
	}
	return refuse(c, "unknown message type");
}

int ctl_msg_encode(const struct ctl_msg *m, uint8_t **out, size_t *out_len,
                   struct ctl_msg_err *err)
{
	struct ectx c = {.err = err};
	json_t *root;
	char *s;

	*out = NULL;
	*out_len = 0;
	if (err) {
		err->code = CTL_MSG_E_NONE;
		err->text[0] = '\0';
	}
	if (check_msg(&c, m) < 0)
		return -EINVAL;
	root = enc_body(&c, m);
	if (!root) {
		if (c.refused)
			return -EINVAL;
		/* jansson gives no reason here; a string that is not UTF-8 is the
		 * likely one, out of memory the other. */
		ctl_msg_seterr(err, CTL_MSG_E_VALUE, "%s: a string is not valid UTF-8",
		               ctl_msg_type_name(m->type) ? ctl_msg_type_name(m->type)
		                                          : "?");
		return -EINVAL;
	}
	if (c.refused) {
		json_decref(root);
		return -EINVAL;
	}
	s = json_dumps(root, JSON_COMPACT);
	/* The output holds the auth key too: the caller wipes that after sending
	 * (jansson's intermediate dump buffers are not wiped). */
	if (m->type == CTL_MSG_REGISTER_REQ || m->type == CTL_MSG_RELAY_REGISTER)
		ctl_msg_json_wipe(root, "auth_key");
	json_decref(root);
	if (!s) {
		ctl_msg_seterr(err, CTL_MSG_E_NOMEM, "out of memory");
		return -ENOMEM;
	}
	*out = (uint8_t *)s;
	*out_len = strlen(s);
	return 0;
}

/* --- pre-encoded peers --------------------------------------------------- */

int ctl_msg_encode_peer(const struct ctl_peer *p, char **out, size_t *len,
                        struct ctl_msg_err *err)
{
	struct ectx c = {.err = err};
	json_t *o;
	char *s;

	*out = NULL;
	*len = 0;
	if (err) {
		err->code = CTL_MSG_E_NONE;
		err->text[0] = '\0';
	}
	if (check_peers(&c, p, 1) < 0)
		return -EINVAL;
	o = j_peer(&c, p);
	if (!o || c.refused) {
		json_decref(o);
		if (!c.refused)
			ctl_msg_seterr(err, CTL_MSG_E_VALUE,
			               "peer: a string is not valid UTF-8");
		return -EINVAL;
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s) {
		ctl_msg_seterr(err, CTL_MSG_E_NOMEM, "out of memory");
		return -ENOMEM;
	}
	*out = s;
	*len = strlen(s);
	return 0;
}

int ctl_msg_encode_map_texts(const struct ctl_msg *m, const struct ctl_msg_text *peers,
                             size_t n, uint8_t **out, size_t *out_len,
                             struct ctl_msg_err *err)
{
	static const char key[] = "\"peers\":[]";
	const size_t klen = sizeof(key) - 1;
	uint8_t *tmpl = NULL, *buf, *at = NULL, *w;
	size_t tlen = 0, need;
	int r;

	*out = NULL;
	*out_len = 0;
	size_t own = m->type == CTL_MSG_MAP_FULL    ? m->u.map.n_peers
	             : m->type == CTL_MSG_MAP_DELTA ? m->u.delta.n_peers
	             : m->type == CTL_MSG_MAP_PEERS ? m->u.chunk.n_peers
	                                            : 1;
	if (own) {
		ctl_msg_seterr(err, CTL_MSG_E_VALUE, "not a map without peers");
		return -EINVAL;
	}
	if (n > CTL_PEERS_MAX) {
		ctl_msg_seterr(err, CTL_MSG_E_TOO_MANY,
		               "peers: %zu entries, more than %d", n, CTL_PEERS_MAX);
		return -EINVAL;
	}
	r = ctl_msg_encode(m, &tmpl, &tlen, err);
	if (r < 0)
		return r;
	/* Every other string in a map is a DNS name or address: no quote can
	 * occur in them, so the key's text is found only where it is. */
	for (size_t i = 0; i + klen <= tlen && !at; i++)
		if (tmpl[i] == '"' && memcmp(tmpl + i, key, klen) == 0)
			at = tmpl + i + klen - 1; /* at ']' */
	need = tlen + 1;
	for (size_t i = 0; i < n; i++)
		need += peers[i].len + 1;
	if (!at || !(buf = malloc(need))) {
		free(tmpl);
		ctl_msg_seterr(err, at ? CTL_MSG_E_NOMEM : CTL_MSG_E_VALUE, "%s",
		               at ? "out of memory" : "peers: not found");
		return at ? -ENOMEM : -EINVAL;
	}
	w = buf;
	memcpy(w, tmpl, (size_t)(at - tmpl));
	w += at - tmpl;
	for (size_t i = 0; i < n; i++) {
		if (i)
			*w++ = ',';
		memcpy(w, peers[i].p, peers[i].len);
		w += peers[i].len;
	}
	memcpy(w, at, tlen - (size_t)(at - tmpl));
	w += tlen - (size_t)(at - tmpl);
	*w = '\0';
	free(tmpl);
	*out = buf;
	*out_len = (size_t)(w - buf);
	return 0;
}
