/* Control messages: struct ctl_msg -> compact JSON.
 *
 * Builders return a new json_t or NULL. A builder that refuses its input
 * says why in the error; a NULL from jansson itself (out of memory, a string
 * that is not UTF-8) is reported by ctl_msg_encode from json_pack's error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
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

static json_t *j_peer(struct ectx *c, const struct ctl_peer *p)
{
	return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:b, s:o}", "id",
	                 j_int(c, p->id, "peer id out of range"), "name", p->name,
	                 "node_key", j_key(p->node_key), "disco_key", j_key(p->disco_key),
	                 "addresses", j_ips(c, p->addrs, p->n_addrs), "allowed_ips",
	                 j_prefixes(c, p->allowed, p->n_allowed), "endpoints",
	                 j_endpoints(c, p->eps, p->n_eps), "home_relay",
	                 (json_int_t)p->home_relay, "online", p->online, "last_seen",
	                 j_int(c, (uint64_t)p->last_seen, "last_seen out of range"));
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

static json_t *j_relays(struct ectx *c, const struct ctl_relay *r, size_t n)
{
	json_t *a;

	if (n > CTL_RELAYS_MAX)
		return refuse(c, "relays: too many");
	if (!(a = json_array()))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *o =
		    json_pack("{s:I, s:s, s:s, s:i}", "id", (json_int_t)r[i].id, "region",
		              r[i].region, "host", r[i].host, "port", (int)r[i].port);
		if (json_array_append_new(a, o) != 0)
			goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
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
	return json_pack("{s:s, s:o, s:o, s:s, s:{s:s, s:s}, s:o}", "auth_key",
	                 m->auth_key, "node_key", j_key(m->node_key), "disco_key",
	                 j_key(m->disco_key), "hostname", m->hostname, "hostinfo", "os",
	                 m->os, "version", m->version, "tags", j_tags(c, m));
}

static json_t *enc_register_resp(struct ectx *c, const struct ctl_register_resp *m)
{
	static const char *const st[] = {"ok", "pending", "refused"};
	struct ctl_ip v4 = {.family = 4}, v6 = {.family = 6};
	char s4[CTL_ADDRSTR_MAX], s6[CTL_ADDRSTR_MAX];

	if ((unsigned)m->status > CTL_REG_REFUSED)
		return refuse(c, "status: not ok, pending or refused");
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

static json_t *enc_map_full(struct ectx *c, const struct ctl_map_full *m)
{
	char mdns[CTL_ADDRSTR_MAX];

	ctl_ip_format(&m->magic_dns, mdns);
	return json_pack("{s:o, s:{s:o, s:s, s:o}, s:{s:s, s:s}, s:o, s:o}", "version",
	                 j_int(c, m->version, "version out of range"), "self", "id",
	                 j_int(c, m->self_id, "self.id out of range"), "name",
	                 m->self_name, "addresses",
	                 j_ips(c, m->self_addrs, m->n_self_addrs), "dns", "domain",
	                 m->dns_domain, "magic_dns", mdns, "relays",
	                 j_relays(c, m->relays, m->n_relays), "peers",
	                 j_peers(c, m->peers, m->n_peers));
}

static json_t *enc_map_delta(struct ectx *c, const struct ctl_map_delta *m)
{
	return json_pack("{s:o, s:o, s:o, s:o}", "version",
	                 j_int(c, m->version, "version out of range"), "base_version",
	                 j_int(c, m->base_version, "base_version out of range"), "peers",
	                 j_peers(c, m->peers, m->n_peers), "removed", j_removed(c, m));
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
		return json_object();
	case CTL_MSG_ERROR:
		return json_pack("{s:I, s:s}", "code", (json_int_t)m->u.error.code,
		                 "text", m->u.error.text);
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
	if (m->type == CTL_MSG_REGISTER_REQ)
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
