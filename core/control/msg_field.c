/* Reading one field of a JSON object, checked (see msg_field.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "core/control/msg_field.h"
#include "core/control/msg_int.h"
#include "core/util/hostname.h"

/* "pre.key" or "key" (or "pre[i]" when key is NULL). */
void ctl_mf_path(char *out, const char *pre, const char *key)
{
	if (pre[0])
		CTL_MF_PRINTF(out, CTL_MF_PATH_MAX, "%s.%s", pre, key);
	else
		CTL_MF_PRINTF(out, CTL_MF_PATH_MAX, "%s", key);
}

int ctl_mf_bad(struct ctl_mf_ctx *c, enum ctl_msg_errcode code, const char *pre,
               const char *key, const char *why)
{
	char path[CTL_MF_PATH_MAX];

	ctl_mf_path(path, pre, key);
	ctl_msg_seterr(c->err, code, "%s: %s", path, why);
	return code == CTL_MSG_E_NOMEM ? -ENOMEM : -EBADMSG;
}

/* Looks up key in obj. Returns 1 (found, right type), 0 (absent and optional)
 * or a negative errno. */
int ctl_mf_get(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
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
			return ctl_mf_bad(c, CTL_MSG_E_MISSING, pre, key, "missing");
		return 0;
	}
	bool ok =
	    json_typeof(v) == type || (type == JSON_TRUE && json_typeof(v) == JSON_FALSE);
	if (!ok) {
		CTL_MF_PRINTF(why, sizeof(why), "not %s", names[type]);
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, pre, key, why);
	}
	*out = v;
	return 1;
}

int ctl_mf_int(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, json_int_t max, uint64_t *out)
{
	json_t *v;
	int r = ctl_mf_get(c, obj, pre, key, required, JSON_INTEGER, &v);

	if (r <= 0) {
		if (r == 0)
			*out = 0;
		return r;
	}
	json_int_t i = json_integer_value(v);
	if (i < 0 || i > max)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key, "out of range");
	*out = (uint64_t)i;
	return 1;
}

int ctl_mf_u32(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, uint32_t *out)
{
	uint64_t v = 0;
	int r = ctl_mf_int(c, obj, pre, key, required, UINT32_MAX, &v);
	*out = (uint32_t)v;
	return r;
}

bool ctl_mf_str_ok(enum ctl_mf_kind kind, const char *s, size_t n)
{
	switch (kind) {
	case CTL_MF_TEXT:
		return ctl_text_valid(s, n);
	case CTL_MF_TEXT1:
		return n > 0 && ctl_text_valid(s, n);
	case CTL_MF_SECRET:
		for (size_t i = 0; i < n; i++)
			if (s[i] < 0x21 || s[i] > 0x7e)
				return false;
		return true;
	case CTL_MF_LABEL:
		return ctl_label_valid(s, n);
	case CTL_MF_DNSNAME:
		return ctl_dnsname_valid(s, n);
	case CTL_MF_HOSTNAME:
		return hostname_valid(s, n);
	case CTL_MF_TAG:
		return ctl_tag_valid(s, n);
	}
	return false;
}

const char *ctl_mf_str_what(enum ctl_mf_kind kind)
{
	switch (kind) {
	case CTL_MF_LABEL:
		return "not a DNS label";
	case CTL_MF_DNSNAME:
		return "not a DNS name";
	case CTL_MF_HOSTNAME:
		return "not a host name";
	case CTL_MF_TAG:
		return "not a tag";
	case CTL_MF_TEXT1:
		return "empty or has control characters";
	default:
		return "has control characters";
	}
}

/* Checks a string value v against kind and copies it into buf[cap]. */
int ctl_mf_take_str(struct ctl_mf_ctx *c, json_t *v, const char *pre, const char *key,
                    enum ctl_mf_kind kind, char *buf, size_t cap)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (n >= cap)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key, "too long");
	/* jansson refuses \u0000 unless asked, so strlen(s) == n here. */
	if (!ctl_mf_str_ok(kind, s, n))
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key, ctl_mf_str_what(kind));
	memcpy(buf, s, n);
	buf[n] = '\0';
	return 1;
}

int ctl_mf_str(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, enum ctl_mf_kind kind, char *buf, size_t cap)
{
	json_t *v;
	int r = ctl_mf_get(c, obj, pre, key, required, JSON_STRING, &v);

	buf[0] = '\0';
	if (r <= 0)
		return r;
	return ctl_mf_take_str(c, v, pre, key, kind, buf, cap);
}

/* A 32-byte key in canonical, padded standard base64 (44 characters). */
int ctl_mf_key(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               uint8_t out[CTL_KEY_LEN])
{
	json_t *v;
	int r = ctl_mf_get(c, obj, pre, key, true, JSON_STRING, &v);
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
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key, "not 32 bytes of base64");
	/* Refuse non-canonical spellings (stray low bits in the last character),
	 * so one key has one text form. */
	sodium_bin2base64(again, sizeof(again), out, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	if (memcmp(again, s, n) != 0)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key, "not canonical base64");
	return 1;
}

int ctl_mf_ip(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
              int family, struct ctl_ip *out)
{
	json_t *v;
	int r = ctl_mf_get(c, obj, pre, key, true, JSON_STRING, &v);

	if (r <= 0)
		return r;
	if (!ctl_ip_parse(json_string_value(v), out) || (family && out->family != family))
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, key,
		                  family == 4   ? "not an IPv4 address"
		                  : family == 6 ? "not an IPv6 address"
		                                : "not an IP address");
	return 1;
}

/* An array field with at most max elements; *n = its length. */
int ctl_mf_array(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                 bool required, size_t max, json_t **arr, size_t *n)
{
	int r = ctl_mf_get(c, obj, pre, key, required, JSON_ARRAY, arr);

	*n = 0;
	if (r <= 0)
		return r;
	*n = json_array_size(*arr);
	if (*n > max) {
		char why[48];
		CTL_MF_PRINTF(why, sizeof(why), "more than %zu entries", max);
		ctl_mf_bad(c, CTL_MSG_E_TOO_MANY, pre, key, why);
		return -EBADMSG;
	}
	return 1;
}

/* Element i of an array of strings, each checked by parse(). */
int ctl_mf_elem_str(struct ctl_mf_ctx *c, json_t *arr, size_t i, const char *pre,
                    const char *key, const char **s, char elem_name[CTL_MF_PATH_MAX])
{
	char p[CTL_MF_PATH_MAX];
	json_t *v = json_array_get(arr, i);

	ctl_mf_path(p, pre, key);
	CTL_MF_PRINTF(elem_name, CTL_MF_PATH_MAX, "%s[%zu]", p, i);
	if (!json_is_string(v))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", elem_name, "not a string");
	*s = json_string_value(v);
	return 1;
}

int ctl_mf_ips(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               struct ctl_ip *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, obj, pre, key, true, CTL_ADDRS_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		const char *s;
		if ((r = ctl_mf_elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_ip_parse(s, &out[i]))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name,
			                  "not an IP address");
	}
	*n_out = (uint8_t)n;
	return r;
}

int ctl_mf_prefixes(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                    struct ctl_prefix *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, obj, pre, key, true, CTL_ALLOWED_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		const char *s;
		if ((r = ctl_mf_elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_prefix_parse(s, &out[i]))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name,
			                  "not a prefix (address/bits, host bits zero)");
	}
	*n_out = (uint8_t)n;
	return r;
}

int ctl_mf_endpoints(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                     bool required, struct ctl_endpoint *out, uint8_t *n_out)
{
	json_t *arr;
	size_t n;
	int r = ctl_mf_array(c, obj, pre, key, required, CTL_ENDPOINTS_MAX, &arr, &n);

	*n_out = 0;
	for (size_t i = 0; r > 0 && i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		const char *s;
		if ((r = ctl_mf_elem_str(c, arr, i, pre, key, &s, name)) < 0)
			return r;
		if (!ctl_endpoint_parse(s, &out[i]))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name,
			                  "not ip:port or [ip6]:port");
	}
	*n_out = (uint8_t)n;
	return r;
}

int ctl_mf_object(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                  json_t **out)
{
	return ctl_mf_get(c, obj, pre, key, true, JSON_OBJECT, out);
}
