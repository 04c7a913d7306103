/* Control messages: JSON body -> struct ctl_msg, strictly validated.
 *
 * Each getter reads one field of an object, checks its JSON type and its
 * value, and on failure writes "<path>.<field>: <why>" into the error. The
 * path of the enclosing object ("peers[3]") is passed down as a string. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "core/control/msg_int.h"
#include "core/util/hostname.h"

#define PATH_MAX_LEN 96

/* snprintf whose truncation is fine (paths and reasons are for people). */
#define PATHF(...)                                                                       \
	do {                                                                             \
		if (snprintf(__VA_ARGS__) < 0)                                           \
			abort();                                                         \
	} while (0)

struct dctx {
	struct ctl_msg_err *err;
};

enum strkind {
	S_TEXT,     /* any text without control characters, may be empty */
	S_TEXT1,    /* same, not empty */
	S_SECRET,   /* printable ASCII, may be empty */
	S_LABEL,    /* DNS label */
	S_DNSNAME,  /* DNS name */
	S_HOSTNAME, /* hostname_valid() */
	S_TAG,
};

/* "pre.key" or "key" (or "pre[i]" when key is NULL). */
static void field_path(char *out, const char *pre, const char *key)
{
	if (pre[0])
		PATHF(out, PATH_MAX_LEN, "%s.%s", pre, key);
	else
		PATHF(out, PATH_MAX_LEN, "%s", key);
}

static int bad(struct dctx *c, enum ctl_msg_errcode code, const char *pre,
               const char *key, const char *why)
{
	char path[PATH_MAX_LEN];

	field_path(path, pre, key);
	ctl_msg_seterr(c->err, code, "%s: %s", path, why);
	return code == CTL_MSG_E_NOMEM ? -ENOMEM : -EBADMSG;
}

/* Looks up key in obj. Returns 1 (found, right type), 0 (absent and optional)
 * or a negative errno. */
static int get(struct dctx *c, json_t *obj, const char *pre, const char *key,
               bool required, json_type type, json_t **out)
{
	static const char *const names[] = {
	    [JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array",
	    [JSON_STRING] = "a string",  [JSON_INTEGER] = "an integer",
	    [JSON_TRUE] = "a boolean",   [JSON_FALSE] = "a boolean",
	    [JSON_REAL] = "a number",    [JSON_NULL] = "null",
	};
	char why[32];
	json_t *v = json_object_get(obj, key);

	if (!v) {
		if (required)
			return bad(c, CTL_MSG_E_MISSING, pre, key, "missing");
		return 0;
	}
	bool ok =
	    json_typeof(v) == type || (type == JSON_TRUE && json_typeof(v) == JSON_FALSE);
	if (!ok) {
		PATHF(why, sizeof(why), "not %s", names[type]);
		return bad(c, CTL_MSG_E_FIELD_TYPE, pre, key, why);
	}
	*out = v;
	return 1;
}

static int get_int(struct dctx *c, json_t *obj, const char *pre, const char *key,
                   bool required, json_int_t max, uint64_t *out)
{
	json_t *v;
	int r = get(c, obj, pre, key, required, JSON_INTEGER, &v);

	if (r <= 0) {
		if (r == 0)
			*out = 0;
		return r;
	}
	json_int_t i = json_integer_value(v);
	if (i < 0 || i > max)
		return bad(c, CTL_MSG_E_VALUE, pre, key, "out of range");
	*out = (uint64_t)i;
	return 1;
}

static int get_u32(struct dctx *c, json_t *obj, const char *pre, const char *key,
                   bool required, uint32_t *out)
{
	uint64_t v = 0;
	int r = get_int(c, obj, pre, key, required, UINT32_MAX, &v);
	*out = (uint32_t)v;
	return r;
}

static bool str_ok(enum strkind kind, const char *s, size_t n)
{
	switch (kind) {
	case S_TEXT:
		return ctl_text_valid(s, n);
	case S_TEXT1:
		return n > 0 && ctl_text_valid(s, n);
	case S_SECRET:
		for (size_t i = 0; i < n; i++)
			if (s[i] < 0x21 || s[i] > 0x7e)
				return false;
		return true;
	case S_LABEL:
		return ctl_label_valid(s, n);
	case S_DNSNAME:
		return ctl_dnsname_valid(s, n);
	case S_HOSTNAME:
		return hostname_valid(s, n);
	case S_TAG:
		return ctl_tag_valid(s, n);
	}
	return false;
}

static const char *str_what(enum strkind kind)
{
	switch (kind) {
	case S_LABEL:
		return "not a DNS label";
	case S_DNSNAME:
		return "not a DNS name";
	case S_HOSTNAME:
		return "not a host name";
	case S_TAG:
		return "not a tag";
	case S_TEXT1:
		return "empty or has control characters";
	default:
		return "has control characters";
	}
}

/* Checks a string value v against kind and copies it into buf[cap]. */
static int take_str(struct dctx *c, json_t *v, const char *pre, const char *key,
                    enum strkind kind, char *buf, size_t cap)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (n >= cap)
		return bad(c, CTL_MSG_E_VALUE, pre, key, "too long");
	/* jansson refuses \u0000 unless asked, so strlen(s) == n here. */
	if (!str_ok(kind, s, n))
		return bad(c, CTL_MSG_E_VALUE, pre, key, str_what(kind));
	memcpy(buf, s, n);
	buf[n] = '\0';
	return 1;
}

static int get_str(struct dctx *c, json_t *obj, const char *pre, const char *key,
                   bool required, enum strkind kind, char *buf, size_t cap)
{
	json_t *v;
	int r = get(c, obj, pre, key, required, JSON_STRING, &v);

	buf[0] = '\0';
	if (r <= 0)
		return r;
	return take_str(c, v, pre, key, kind, buf, cap);
}

/* A 32-byte key in canonical, padded standard base64 (44 characters). */
static int get_key(struct dctx *c, json_t *obj, const char *pre, const char *key,
                   uint8_t out[CTL_KEY_LEN])
{
	json_t *v;
	int r = get(c, obj, pre, key, true, JSON_STRING, &v);
	size_t bin_len = 0;
	const char *end = NULL;
	char again[64];

	if (r <= 0)
		return r;
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n != 44 ||
	    sodium_base642bin(out, CTL_KEY_LEN, s, n, NULL, &bin_len, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != CTL_KEY_LEN || end != s + n)
		return bad(c, CTL_MSG_E_VALUE, pre, key, "not 32 bytes of base64");
	/* Refuse non-canonical spellings (stray low bits in the last character),
	 * so one key has one text form. */
	sodium_bin2base64(again, sizeof(again), out, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	if (memcmp(again, s, n) != 0)
		return bad(c, CTL_MSG_E_VALUE, pre, key, "not canonical base64");
	return 1;
}

static int get_ip(struct dctx *c, json_t *obj, const char *pre, const char *key,
                  int family, struct ctl_ip *out)
{
	json_t *v;
	int r = get(c, obj, pre, key, true, JSON_STRING, &v);

	if (r <= 0)
		return r;
	if (!ctl_ip_parse(json_string_value(v), out) || (family && out->family != family))
		return bad(c, CTL_MSG_E_VALUE, pre, key,
		           family == 4   ? "not an IPv4 address"
		           : family == 6 ? "not an IPv6 address"
		                         : "not an IP address");
	return 1;
}

/* An array field with at most max elements; *n = its length. */
static int get_array(struct dctx *c, json_t *obj, const char *pre, const char *key,
                     bool required, size_t max, json_t **arr, size_t *n)
{
	int r = get(c, obj, pre, key, required, JSON_ARRAY, arr);

	*n = 0;
	if (r <= 0)
		return r;
	*n = json_array_size(*arr);
	if (*n > max) {
		char why[48];
		PATHF(why, sizeof(why), "more than %zu entries", max);
		bad(c, CTL_MSG_E_TOO_MANY, pre, key, why);
		return -EBADMSG;
	}
	return 1;
}

/* Element i of an array of strings, each checked by parse(). */
static int elem_str(struct dctx *c, json_t *arr, size_t i, const char *pre,
                    const char *key, const char **s, char elem_name[PATH_MAX_LEN])
{
	char p[PATH_MAX_LEN];
	json_t *v = json_array_get(arr, i);

	field_path(p, pre, key);
	PATHF(elem_name, PATH_MAX_LEN, "%s[%zu]", p, i);
	if (!json_is_string(v))
		return bad(c, CTL_MSG_E_FIELD_TYPE, "", elem_name, "not a string");
	*s = json_string_value(v);
	return 1;
}

static int get_ips(struct dctx *c, json_t *obj, const char *pre, const char *key,
                   struct ctl_ip *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = get_array(c, obj, pre, key, true, CTL_ADDRS_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[PATH_MAX_LEN];
		const char *s;
		if ((r = elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_ip_parse(s, &out[i]))
			return bad(c, CTL_MSG_E_VALUE, "", name, "not an IP address");
	}
	*n_out = (uint8_t)n;
	return r;
}

static int get_prefixes(struct dctx *c, json_t *obj, const char *pre, const char *key,
                        struct ctl_prefix *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = get_array(c, obj, pre, key, true, CTL_ALLOWED_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[PATH_MAX_LEN];
		const char *s;
		if ((r = elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_prefix_parse(s, &out[i]))
			return bad(c, CTL_MSG_E_VALUE, "", name,
			           "not a prefix (address/bits, host bits zero)");
	}
	*n_out = (uint8_t)n;
	return r;
}

static int get_endpoints(struct dctx *c, json_t *obj, const char *pre, const char *key,
                         bool required, struct ctl_endpoint *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = get_array(c, obj, pre, key, required, CTL_ENDPOINTS_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[PATH_MAX_LEN];
		const char *s;
		if ((r = elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_endpoint_parse(s, &out[i]))
			return bad(c, CTL_MSG_E_VALUE, "", name,
			           "not ip:port or [ip6]:port");
	}
	*n_out = (uint8_t)n;
	return r;
}

static int get_object(struct dctx *c, json_t *obj, const char *pre, const char *key,
                      json_t **out)
{
	return get(c, obj, pre, key, true, JSON_OBJECT, out);
}

#define TRY(expr)                                                                        \
	do {                                                                             \
		int try_r_ = (expr);                                                     \
		if (try_r_ < 0)                                                          \
			return try_r_;                                                   \
	} while (0)

static int dec_register_req(struct dctx *c, json_t *o, struct ctl_register_req *m)
{
	json_t *hi, *tags;
	size_t n;

	TRY(get_str(c, o, "", "auth_key", false, S_SECRET, m->auth_key,
	            sizeof(m->auth_key)));
	TRY(get_key(c, o, "", "node_key", m->node_key));
	TRY(get_key(c, o, "", "disco_key", m->disco_key));
	TRY(get_str(c, o, "", "hostname", true, S_HOSTNAME, m->hostname,
	            sizeof(m->hostname)));
	TRY(get_object(c, o, "", "hostinfo", &hi));
	TRY(get_str(c, hi, "hostinfo", "os", true, S_TEXT, m->os, sizeof(m->os)));
	TRY(get_str(c, hi, "hostinfo", "version", true, S_TEXT, m->version,
	            sizeof(m->version)));
	int r = get_array(c, o, "", "tags", false, CTL_TAGS_MAX, &tags, &n);
	TRY(r);
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[PATH_MAX_LEN];
		const char *s;
		TRY(elem_str(c, tags, i, "", "tags", &s, name));
		TRY(take_str(c, json_array_get(tags, i), "", name, S_TAG, m->tags[i],
		             sizeof(m->tags[i])));
	}
	m->n_tags = (uint8_t)n;
	return 0;
}

static int dec_register_resp(struct dctx *c, json_t *o, struct ctl_register_resp *m)
{
	char status[16];
	struct ctl_ip ip;

	TRY(get_str(c, o, "", "status", true, S_TEXT, status, sizeof(status)));
	if (strcmp(status, "ok") == 0)
		m->status = CTL_REG_OK;
	else if (strcmp(status, "pending") == 0)
		m->status = CTL_REG_PENDING;
	else if (strcmp(status, "refused") == 0)
		m->status = CTL_REG_REFUSED;
	else
		return bad(c, CTL_MSG_E_VALUE, "", "status",
		           "not ok, pending or refused");
	TRY(get_u32(c, o, "", "code", false, &m->code));
	TRY(get_str(c, o, "", "reason", false, S_TEXT, m->reason, sizeof(m->reason)));
	if (m->status != CTL_REG_OK)
		return 0;
	TRY(get_int(c, o, "", "node_id", true, INT64_MAX, &m->node_id));
	TRY(get_str(c, o, "", "name", true, S_LABEL, m->name, sizeof(m->name)));
	TRY(get_str(c, o, "", "fqdn", true, S_DNSNAME, m->fqdn, sizeof(m->fqdn)));
	TRY(get_ip(c, o, "", "ipv4", 4, &ip));
	memcpy(m->ipv4, ip.addr, 4);
	TRY(get_ip(c, o, "", "ipv6", 6, &ip));
	memcpy(m->ipv6, ip.addr, 16);
	TRY(get_str(c, o, "", "domain", true, S_DNSNAME, m->domain, sizeof(m->domain)));
	return 0;
}

static int dec_endpoints(struct dctx *c, json_t *o, struct ctl_endpoints *m)
{
	TRY(get_endpoints(c, o, "", "endpoints", true, m->ep, &m->n));
	TRY(get_u32(c, o, "", "home_relay", false, &m->home_relay));
	return 0;
}

static int dec_peer(struct dctx *c, json_t *o, const char *pre, struct ctl_peer *p)
{
	uint64_t u;
	json_t *v;

	if (!json_is_object(o))
		return bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
	TRY(get_int(c, o, pre, "id", true, INT64_MAX, &p->id));
	TRY(get_str(c, o, pre, "name", true, S_LABEL, p->name, sizeof(p->name)));
	TRY(get_key(c, o, pre, "node_key", p->node_key));
	TRY(get_key(c, o, pre, "disco_key", p->disco_key));
	TRY(get_ips(c, o, pre, "addresses", p->addrs, &p->n_addrs));
	TRY(get_prefixes(c, o, pre, "allowed_ips", p->allowed, &p->n_allowed));
	TRY(get_endpoints(c, o, pre, "endpoints", false, p->eps, &p->n_eps));
	TRY(get_u32(c, o, pre, "home_relay", false, &p->home_relay));
	int r = get(c, o, pre, "online", false, JSON_TRUE, &v);
	TRY(r);
	p->online = r > 0 && json_is_true(v);
	TRY(get_int(c, o, pre, "last_seen", false, INT64_MAX, &u));
	p->last_seen = (int64_t)u;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Two entries for one peer id in one message would make the result depend
 * on the order the receiver applies them; refuse instead. */
static int check_unique_ids(struct dctx *c, const char *key, const struct ctl_peer *peers,
                            size_t n)
{
	uint64_t *ids = malloc(n * sizeof(*ids));
	char why[64];

	if (!ids)
		return bad(c, CTL_MSG_E_NOMEM, "", key, "out of memory");
	for (size_t i = 0; i < n; i++)
		ids[i] = peers[i].id;
	qsort(ids, n, sizeof(*ids), cmp_u64);
	for (size_t i = 1; i < n; i++) {
		if (ids[i] == ids[i - 1]) {
			PATHF(why, sizeof(why), "id %llu appears twice",
			      (unsigned long long)ids[i]);
			free(ids);
			return bad(c, CTL_MSG_E_VALUE, "", key, why);
		}
	}
	free(ids);
	return 1;
}

/* Allocates and decodes the "peers" array (optional if !required). */
static int dec_peers(struct dctx *c, json_t *o, const char *key, bool required,
                     struct ctl_peer **out, size_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = get_array(c, o, "", key, required, CTL_PEERS_MAX, &arr, &n);

	if (r <= 0 || n == 0)
		return r;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return bad(c, CTL_MSG_E_NOMEM, "", key, "out of memory");
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		char pre[PATH_MAX_LEN];
		PATHF(pre, sizeof(pre), "%s[%zu]", key, i);
		TRY(dec_peer(c, json_array_get(arr, i), pre, &(*out)[i]));
	}
	return check_unique_ids(c, key, *out, n);
}

static int dec_relays(struct dctx *c, json_t *o, struct ctl_map_full *m)
{
	json_t *arr;
	size_t n;
	int r = get_array(c, o, "", "relays", false, CTL_RELAYS_MAX, &arr, &n);

	if (r <= 0 || n == 0)
		return r;
	m->relays = calloc(n, sizeof(*m->relays));
	if (!m->relays)
		return bad(c, CTL_MSG_E_NOMEM, "", "relays", "out of memory");
	m->n_relays = n;
	for (size_t i = 0; i < n; i++) {
		char pre[PATH_MAX_LEN];
		json_t *e = json_array_get(arr, i);
		struct ctl_relay *rl = &m->relays[i];
		uint64_t port;
		PATHF(pre, sizeof(pre), "relays[%zu]", i);
		if (!json_is_object(e))
			return bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
		TRY(get_u32(c, e, pre, "id", true, &rl->id));
		TRY(get_str(c, e, pre, "region", true, S_LABEL, rl->region,
		            sizeof(rl->region)));
		TRY(get_str(c, e, pre, "host", true, S_HOSTNAME, rl->host,
		            sizeof(rl->host)));
		TRY(get_int(c, e, pre, "port", true, 65535, &port));
		if (port == 0)
			return bad(c, CTL_MSG_E_VALUE, pre, "port", "out of range");
		rl->port = (uint16_t)port;
	}
	return 1;
}

static int dec_map_full(struct dctx *c, json_t *o, struct ctl_map_full *m)
{
	json_t *self, *dns;

	TRY(get_int(c, o, "", "version", true, INT64_MAX, &m->version));
	TRY(get_object(c, o, "", "self", &self));
	TRY(get_int(c, self, "self", "id", true, INT64_MAX, &m->self_id));
	TRY(get_str(c, self, "self", "name", true, S_LABEL, m->self_name,
	            sizeof(m->self_name)));
	TRY(get_ips(c, self, "self", "addresses", m->self_addrs, &m->n_self_addrs));
	TRY(get_object(c, o, "", "dns", &dns));
	TRY(get_str(c, dns, "dns", "domain", true, S_DNSNAME, m->dns_domain,
	            sizeof(m->dns_domain)));
	TRY(get_ip(c, dns, "dns", "magic_dns", 4, &m->magic_dns));
	TRY(dec_relays(c, o, m));
	TRY(dec_peers(c, o, "peers", true, &m->peers, &m->n_peers));
	return 0;
}

static int dec_map_delta(struct dctx *c, json_t *o, struct ctl_map_delta *m)
{
	json_t *arr;
	size_t n;

	TRY(get_int(c, o, "", "version", true, INT64_MAX, &m->version));
	TRY(get_int(c, o, "", "base_version", true, INT64_MAX, &m->base_version));
	TRY(dec_peers(c, o, "peers", false, &m->peers, &m->n_peers));
	int r = get_array(c, o, "", "removed", false, CTL_REMOVED_MAX, &arr, &n);
	if (r <= 0 || n == 0)
		return r;
	m->removed = calloc(n, sizeof(*m->removed));
	if (!m->removed)
		return bad(c, CTL_MSG_E_NOMEM, "", "removed", "out of memory");
	m->n_removed = n;
	for (size_t i = 0; i < n; i++) {
		char name[PATH_MAX_LEN];
		json_t *v = json_array_get(arr, i);
		PATHF(name, sizeof(name), "removed[%zu]", i);
		if (!json_is_integer(v))
			return bad(c, CTL_MSG_E_FIELD_TYPE, "", name, "not an integer");
		if (json_integer_value(v) < 0)
			return bad(c, CTL_MSG_E_VALUE, "", name, "out of range");
		m->removed[i] = (uint64_t)json_integer_value(v);
	}
	return 0;
}

static int dec_error(struct dctx *c, json_t *o, struct ctl_error *m)
{
	TRY(get_u32(c, o, "", "code", true, &m->code));
	TRY(get_str(c, o, "", "text", true, S_TEXT, m->text, sizeof(m->text)));
	return 0;
}

/* Nesting depth of [ and { outside strings, checked before jansson parses
 * (its own limit is 2048 levels, each a recursion). Stops early once over. */
static bool depth_ok(const uint8_t *p, size_t len)
{
	size_t depth = 0;
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
		} else if (ch == '[' || ch == '{') {
			if (++depth > CTL_MSG_MAX_DEPTH)
				return false;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return true;
}

static int dec_body(struct dctx *c, unsigned type, json_t *o, struct ctl_msg *m)
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
		return 0;
	case CTL_MSG_ERROR:
		return dec_error(c, o, &m->u.error);
	}
	return -EPROTO;
}

int ctl_msg_decode(unsigned type, const uint8_t *p, size_t len, struct ctl_msg *m,
                   struct ctl_msg_err *err)
{
	struct dctx c = {.err = err};
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
	if (len > CTL_MSG_MAX_LEN) {
		ctl_msg_seterr(err, CTL_MSG_E_TOO_BIG, "%s: %zu bytes, more than %d",
		               ctl_msg_type_name(type), len, CTL_MSG_MAX_LEN);
		return -EMSGSIZE;
	}
	if (!depth_ok(p, len)) {
		ctl_msg_seterr(err, CTL_MSG_E_DEPTH, "%s: nested deeper than %d",
		               ctl_msg_type_name(type), CTL_MSG_MAX_DEPTH);
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
	if (type == CTL_MSG_REGISTER_REQ)
		ctl_msg_json_wipe(root, "auth_key");
	json_decref(root);
	if (r < 0)
		ctl_msg_free(m);
	return r < 0 ? r : 0;
}
