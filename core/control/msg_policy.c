/* Control messages: the access-policy parts of a map (CTL_CAP_POLICY) --
 * a peer's owner (user, tags), the node's inbound filter and its reach on
 * each peer -- read from and written to JSON, checked the same way both
 * ways (msg.h has the shapes and the rules).
 *
 * Port lists are text: "22,80-90" (ascending, disjoint; adjacent ranges
 * are merged), "*" for every port (1-65535 for TCP and UDP; an ICMP block
 * says "*" only, held as 0-65535). Addresses in filter blocks are ordered
 * as core/policy orders them: one 128-bit space where IPv4 a.b.c.d is
 * ::ffff:a.b.c.d, so a node can hand the blocks to the policy matcher in
 * the order they came. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/control/msg.h"
#include "core/control/msg_field.h"
#include "core/control/msg_int.h"

static const char *const proto_key[CTL_FILTER_NPROTO] = {"tcp", "udp", "icmp"};

/* --- names ---------------------------------------------------------------- */

bool ctl_user_valid(const char *s, size_t n)
{
	if (n == 0 || n >= CTL_USER_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* "tag:NAME", NAME of [A-Za-z0-9._-], 63 bytes in all at most. */
bool ctl_peer_tag_valid(const char *s, size_t n)
{
	return n > 4 && n < CTL_TAG_MAX && memcmp(s, "tag:", 4) == 0 &&
	       ctl_tag_valid(s, n) && !memchr(s + 4, ':', n - 4);
}

/* --- addresses --------------------------------------------------------------- */

/* ip as 16 bytes in core/policy's order (IPv4 as ::ffff:a.b.c.d). */
static void ip_key(const struct ctl_ip *ip, uint8_t k[16])
{
	if (ip->family == 4) {
		memset(k, 0, 10);
		k[10] = k[11] = 0xff;
		memcpy(k + 12, ip->addr, 4);
	} else {
		memcpy(k, ip->addr, 16);
	}
}

static bool ip_v4mapped(const struct ctl_ip *ip)
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return ip->family == 6 && memcmp(ip->addr, pre, sizeof(pre)) == 0;
}

static int ip_cmp(const struct ctl_ip *a, const struct ctl_ip *b)
{
	uint8_t x[16], y[16];
	ip_key(a, x);
	ip_key(b, y);
	return memcmp(x, y, 16);
}

/* Why block [lo, hi] cannot follow the block that ended at prev (NULL:
 * first), or NULL. */
static const char *block_bad(const struct ctl_ip *lo, const struct ctl_ip *hi,
                             const struct ctl_ip *prev)
{
	if ((lo->family != 4 && lo->family != 6) || lo->family != hi->family)
		return "first and last address are not the same family";
	if (ip_v4mapped(lo) || ip_v4mapped(hi))
		return "an IPv4-mapped IPv6 address (write IPv4 sources as IPv4)";
	if (ip_cmp(lo, hi) > 0)
		return "first address after the last";
	if (prev && ip_cmp(prev, lo) >= 0)
		return "not after the block before it (blocks must be ascending and "
		       "disjoint)";
	return NULL;
}

/* --- port lists --------------------------------------------------------------- */

/* Ranges r[0..n) as they go on the wire: TCP/UDP ranges start at 1 (0 is
 * not a port: core/policy's "*" is 0-65535, sent as 1-65535; 0-0 is left
 * out), ascending and disjoint, adjacent ones merged; an ICMP block is the
 * one range 0-65535. Writes the result to out (room for n; NULL: count
 * only) and its length to *n_out (0: nothing left). NULL, or why not. */
static const char *ports_norm(const struct ctl_port_range *r, uint32_t n, bool icmp,
                              struct ctl_port_range *out, uint32_t *n_out)
{
	uint32_t k = 0;
	uint32_t prev_hi = 0;

	*n_out = 0;
	if (icmp) {
		if (n == 0)
			return NULL;
		if (n != 1 || r[0].lo != 0 || r[0].hi != 65535)
			return "an ICMP block is the one range 0-65535 (\"*\")";
		if (out)
			out[0] = r[0];
		*n_out = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t lo = r[i].lo ? r[i].lo : 1, hi = r[i].hi;
		if (r[i].lo > r[i].hi)
			return "a port range ends before it starts";
		if (hi == 0)
			continue;
		if (k && lo <= prev_hi)
			return "port ranges are not ascending and disjoint";
		if (k && lo == prev_hi + 1) {
			if (out)
				out[k - 1].hi = (uint16_t)hi;
		} else {
			if (out)
				out[k] = (struct ctl_port_range){(uint16_t)lo, (uint16_t)hi};
			k++;
		}
		prev_hi = hi;
	}
	*n_out = k;
	return NULL;
}

/* The text of normalized ranges r[0..n) (n > 0): malloc'ed. */
static char *ports_text(const struct ctl_port_range *r, uint32_t n, bool icmp)
{
	if (icmp || (n == 1 && r[0].lo <= 1 && r[0].hi == 65535))
		return strdup("*");
	char *s = malloc((size_t)n * 12 + 1), *w = s;
	if (!s)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		int len = r[i].lo == r[i].hi
		              ? sprintf(w, "%s%u", i ? "," : "", (unsigned)r[i].lo)
		              : sprintf(w, "%s%u-%u", i ? "," : "", (unsigned)r[i].lo,
		                        (unsigned)r[i].hi);
		w += len;
	}
	*w = '\0';
	return s;
}

/* Decimal 1..65535 in s[0..n), no sign, no leading zeros. */
static bool port_dec(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = v;
	return true;
}

/* Parses the port list s[0..len) into a new array; at most max entries
 * (before merging). 1 on success, else a negative errno with the error
 * naming path. */
static int ports_parse(struct ctl_mf_ctx *c, const char *s, size_t len, bool icmp,
                       size_t max, const char *path, struct ctl_port_range **out,
                       uint32_t *n_out)
{
	size_t items = 1;
	char why[96];

	*out = NULL;
	*n_out = 0;
	if (len == 1 && s[0] == '*') {
		if (!(*out = malloc(sizeof(**out))))
			return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", path, "out of memory");
		**out = (struct ctl_port_range){icmp ? 0 : 1, 65535};
		*n_out = 1;
		return 1;
	}
	if (icmp)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", path,
		                  "an ICMP block's ports are \"*\"");
	if (len == 0)
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", path, "no ports");
	for (size_t i = 0; i < len; i++)
		items += s[i] == ',';
	if (items > max) {
		CTL_MF_PRINTF(why, sizeof(why), "more than %zu port ranges", max);
		return ctl_mf_bad(c, CTL_MSG_E_TOO_MANY, "", path, why);
	}
	struct ctl_port_range *r = malloc(items * sizeof(*r));
	if (!r)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", path, "out of memory");
	uint32_t k = 0;
	size_t at = 0;
	for (size_t i = 0; i < items; i++) {
		const char *e = s + at;
		size_t elen = 0;
		while (at + elen < len && s[at + elen] != ',')
			elen++;
		at += elen + 1;
		const char *dash = memchr(e, '-', elen);
		unsigned lo, hi;
		const char *bad = NULL;
		if (dash ? !port_dec(e, (size_t)(dash - e), &lo) ||
		               !port_dec(dash + 1, elen - (size_t)(dash - e) - 1, &hi)
		         : !port_dec(e, elen, &lo))
			bad = "not a port 1-65535 or a range FIRST-LAST";
		else if (!dash)
			hi = lo;
		if (!bad && lo > hi)
			bad = "a range ends before it starts";
		if (!bad && k && lo <= r[k - 1].hi)
			bad = "not ascending and disjoint";
		if (bad) {
			/* the entry as printable ASCII only: it goes to logs */
			char show[17];
			size_t sn = elen < 16 ? elen : 16;
			for (size_t q = 0; q < sn; q++)
				show[q] = e[q] > 0x20 && e[q] < 0x7f && e[q] != '"' ? e[q] : '?';
			show[sn] = '\0';
			CTL_MF_PRINTF(why, sizeof(why), "entry %zu (\"%s\"): %s", i + 1, show,
			              bad);
			free(r);
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", path, why);
		}
		if (k && lo == (unsigned)r[k - 1].hi + 1)
			r[k - 1].hi = (uint16_t)hi;
		else
			r[k++] = (struct ctl_port_range){(uint16_t)lo, (uint16_t)hi};
	}
	*out = r;
	*n_out = k;
	return 1;
}

/* --- decoding ----------------------------------------------------------------- */

int ctl_mp_dec_owner(struct ctl_mf_ctx *c, json_t *o, const char *pre,
                     char user[CTL_USER_MAX], char tags[CTL_PEER_TAGS_MAX])
{
	json_t *v, *arr;
	size_t n, used = 0;
	int r = ctl_mf_get(c, o, pre, "user", false, JSON_STRING, &v);

	if (r < 0)
		return r;
	if (r > 0) {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		if (!ctl_user_valid(s, len))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, "user",
			                  "not a user name (1-63 of a-z 0-9 . _ -, "
			                  "starting with a letter or digit)");
		memcpy(user, s, len + 1);
	}
	r = ctl_mf_array(c, o, pre, "tags", false, CTL_TAGS_MAX, &arr, &n);
	if (r <= 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		char name[CTL_MF_PATH_MAX];
		const char *s;
		CTL_MF_TRY(ctl_mf_elem_str(c, arr, i, pre, "tags", &s, name));
		size_t len = json_string_length(json_array_get(arr, i));
		if (!ctl_peer_tag_valid(s, len))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", name,
			                  "not a tag (tag:NAME, NAME of A-Z a-z 0-9 . _ -)");
		if (used + (i ? 1 : 0) + len >= CTL_PEER_TAGS_MAX)
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, pre, "tags",
			                  "more than 255 bytes in all");
		if (i)
			tags[used++] = ',';
		memcpy(tags + used, s, len);
		used += len;
		tags[used] = '\0';
	}
	return 1;
}

/* The blocks of one protocol: ["LO", "HI", "PORTS"] each. *budget_blocks
 * and *budget_ranges are what the filter may still hold. */
static int dec_blocks(struct ctl_mf_ctx *c, json_t *f, const char *fkey, int proto,
                      struct ctl_filter *out, size_t *budget_blocks,
                      size_t *budget_ranges)
{
	char pre[CTL_MF_PATH_MAX], path[CTL_MF_PATH_MAX], why[64];
	json_t *arr;
	size_t n;
	int r = ctl_mf_get(c, f, fkey, proto_key[proto], false, JSON_ARRAY, &arr);

	if (r <= 0)
		return r;
	ctl_mf_path(pre, fkey, proto_key[proto]);
	n = json_array_size(arr);
	if (n > *budget_blocks) {
		CTL_MF_PRINTF(why, sizeof(why), "more than %d blocks in the filter",
		              CTL_FILTER_BLOCKS_MAX);
		return ctl_mf_bad(c, CTL_MSG_E_TOO_MANY, "", pre, why);
	}
	*budget_blocks -= n;
	if (!n)
		return 1;
	if (!(out->blocks[proto] = calloc(n, sizeof(*out->blocks[proto]))))
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", pre, "out of memory");
	out->n_blocks[proto] = n;
	for (size_t i = 0; i < n; i++) {
		struct ctl_filter_block *b = &out->blocks[proto][i];
		json_t *e = json_array_get(arr, i);
		CTL_MF_PRINTF(path, sizeof(path), "%s[%zu]", pre, i);
		if (!json_is_array(e) || json_array_size(e) != 3)
			return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", path,
			                  "not [first address, last address, ports]");
		for (size_t k = 0; k < 3; k++) {
			if (json_is_string(json_array_get(e, k)))
				continue;
			CTL_MF_PRINTF(path, sizeof(path), "%s[%zu][%zu]", pre, i, k);
			return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", path, "not a string");
		}
		if (!ctl_ip_parse(json_string_value(json_array_get(e, 0)), &b->lo) ||
		    !ctl_ip_parse(json_string_value(json_array_get(e, 1)), &b->hi))
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", path,
			                  "first or last is not an IP address");
		const char *bad = block_bad(&b->lo, &b->hi, i ? &out->blocks[proto][i - 1].hi
		                                              : NULL);
		if (bad)
			return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", path, bad);
		json_t *pv = json_array_get(e, 2);
		CTL_MF_PRINTF(path, sizeof(path), "%s[%zu][2]", pre, i);
		r = ports_parse(c, json_string_value(pv), json_string_length(pv),
		                proto == CTL_FILTER_ICMP, *budget_ranges, path, &b->ports,
		                &b->n_ports);
		if (r < 0) {
			if (c->err && c->err->code == CTL_MSG_E_TOO_MANY)
				ctl_msg_seterr(c->err, CTL_MSG_E_TOO_MANY,
				               "%s: more than %d port ranges in the filter",
				               path, CTL_FILTER_RANGES_MAX);
			return r;
		}
		*budget_ranges -= b->n_ports;
	}
	return 1;
}

int ctl_mp_dec_filter(struct ctl_mf_ctx *c, json_t *f, const char *key,
                      struct ctl_filter *out)
{
	size_t budget_blocks = CTL_FILTER_BLOCKS_MAX, budget_ranges = CTL_FILTER_RANGES_MAX;

	if (!json_is_object(f))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", key, "not an object");
	for (int p = 0; p < CTL_FILTER_NPROTO; p++)
		CTL_MF_TRY(dec_blocks(c, f, key, p, out, &budget_blocks, &budget_ranges));
	return 1;
}

static int cmp_reach_id(const void *a, const void *b)
{
	uint64_t x = (*(const struct ctl_reach *const *)a)->id,
	         y = (*(const struct ctl_reach *const *)b)->id;
	return x < y ? -1 : x > y;
}

/* Two entries for one id: a message that says two things about one peer. */
static int reach_dup(struct ctl_reach *r, size_t n, uint64_t *dup)
{
	const struct ctl_reach **s;

	if (n < 2)
		return 0;
	if (!(s = malloc(n * sizeof(*s))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		s[i] = &r[i];
	qsort(s, n, sizeof(*s), cmp_reach_id);
	int rc = 0;
	for (size_t i = 1; i < n && !rc; i++)
		if (s[i]->id == s[i - 1]->id) {
			*dup = s[i]->id;
			rc = 1;
		}
	free(s);
	return rc;
}

static int dec_reach_one(struct ctl_mf_ctx *c, json_t *e, const char *pre,
                         struct ctl_reach *r)
{
	json_t *v;
	struct {
		const char *key;
		struct ctl_port_range **ports;
		uint32_t *n;
	} pp[2] = {{"tcp", &r->tcp, &r->n_tcp}, {"udp", &r->udp, &r->n_udp}};

	if (!json_is_object(e))
		return ctl_mf_bad(c, CTL_MSG_E_FIELD_TYPE, "", pre, "not an object");
	CTL_MF_TRY(ctl_mf_int(c, e, pre, "id", true, INT64_MAX, &r->id));
	for (int k = 0; k < 2; k++) {
		char path[CTL_MF_PATH_MAX];
		int rc = ctl_mf_get(c, e, pre, pp[k].key, false, JSON_STRING, &v);
		if (rc <= 0) {
			CTL_MF_TRY(rc);
			continue;
		}
		ctl_mf_path(path, pre, pp[k].key);
		CTL_MF_TRY(ports_parse(c, json_string_value(v), json_string_length(v), false,
		                       CTL_REACH_RANGES_MAX, path, pp[k].ports, pp[k].n));
	}
	int rc = ctl_mf_get(c, e, pre, "icmp", false, JSON_TRUE, &v);
	CTL_MF_TRY(rc);
	r->icmp = rc > 0 && json_is_true(v);
	return 1;
}

int ctl_mp_dec_reach(struct ctl_mf_ctx *c, json_t *o, struct ctl_reach **out,
                     size_t *n_out)
{
	json_t *arr;
	size_t n;
	uint64_t dup = 0;
	char why[64];
	int r = ctl_mf_array(c, o, "", "reach", false, CTL_MAP_PEERS_MAX, &arr, &n);

	*out = NULL;
	*n_out = 0;
	if (r <= 0 || n == 0)
		return r;
	if (!(*out = calloc(n, sizeof(**out))))
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "reach", "out of memory");
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		char pre[CTL_MF_PATH_MAX];
		CTL_MF_PRINTF(pre, sizeof(pre), "reach[%zu]", i);
		CTL_MF_TRY(dec_reach_one(c, json_array_get(arr, i), pre, &(*out)[i]));
	}
	r = reach_dup(*out, n, &dup);
	if (r < 0)
		return ctl_mf_bad(c, CTL_MSG_E_NOMEM, "", "reach", "out of memory");
	if (r > 0) {
		CTL_MF_PRINTF(why, sizeof(why), "id %llu appears twice",
		              (unsigned long long)dup);
		return ctl_mf_bad(c, CTL_MSG_E_VALUE, "", "reach", why);
	}
	return 1;
}

/* --- checking before encoding ------------------------------------------------ */

static int refuse(struct ctl_msg_err *err, enum ctl_msg_errcode code, const char *path,
                  const char *why)
{
	ctl_msg_seterr(err, code, "%s: %s", path, why);
	return -EINVAL;
}

int ctl_mp_check_owner(const char *user, const char *tags, const char *pre,
                       struct ctl_msg_err *err)
{
	char path[CTL_MF_PATH_MAX];
	size_t n = strnlen(user, CTL_USER_MAX);

	if (n == CTL_USER_MAX || (n && !ctl_user_valid(user, n))) {
		ctl_mf_path(path, pre, "user");
		return refuse(err, CTL_MSG_E_VALUE, path,
		              n == CTL_USER_MAX ? "not terminated" : "not a user name");
	}
	n = strnlen(tags, CTL_PEER_TAGS_MAX);
	ctl_mf_path(path, pre, "tags");
	if (n == CTL_PEER_TAGS_MAX)
		return refuse(err, CTL_MSG_E_VALUE, path, "not terminated");
	size_t count = 0;
	for (size_t at = 0; n && at <= n;) {
		size_t len = strcspn(tags + at, ",");
		if (!ctl_peer_tag_valid(tags + at, len))
			return refuse(err, CTL_MSG_E_VALUE, path,
			              "not a comma-joined list of tag:NAME");
		if (++count > CTL_TAGS_MAX)
			return refuse(err, CTL_MSG_E_TOO_MANY, path, "more than 16 tags");
		at += len + 1;
	}
	return 0;
}

int ctl_mp_check_filter(const struct ctl_filter *f, const char *key,
                        struct ctl_msg_err *err)
{
	size_t blocks = 0, ranges = 0;
	char path[CTL_MF_PATH_MAX];

	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		const struct ctl_ip *prev = NULL;
		if (f->n_blocks[p] && !f->blocks[p]) {
			CTL_MF_PRINTF(path, sizeof(path), "%s.%s", key, proto_key[p]);
			return refuse(err, CTL_MSG_E_VALUE, path, "no blocks array");
		}
		for (size_t i = 0; i < f->n_blocks[p]; i++) {
			const struct ctl_filter_block *b = &f->blocks[p][i];
			uint32_t k;
			CTL_MF_PRINTF(path, sizeof(path), "%s.%s[%zu]", key, proto_key[p], i);
			if (b->n_ports && !b->ports)
				return refuse(err, CTL_MSG_E_VALUE, path, "no ports array");
			const char *bad =
			    ports_norm(b->ports, b->n_ports, p == CTL_FILTER_ICMP, NULL, &k);
			if (bad)
				return refuse(err, CTL_MSG_E_VALUE, path, bad);
			if (k == 0) /* opens nothing: left out */
				continue;
			if ((bad = block_bad(&b->lo, &b->hi, prev)))
				return refuse(err, CTL_MSG_E_VALUE, path, bad);
			prev = &b->hi;
			if (++blocks > CTL_FILTER_BLOCKS_MAX)
				return refuse(err, CTL_MSG_E_TOO_MANY, path,
				              "more blocks than a filter may hold");
			if ((ranges += k) > CTL_FILTER_RANGES_MAX)
				return refuse(err, CTL_MSG_E_TOO_MANY, path,
				              "more port ranges than a filter may hold");
		}
	}
	return 0;
}

int ctl_mp_check_reach(const struct ctl_reach *r, size_t n, struct ctl_msg_err *err)
{
	char path[CTL_MF_PATH_MAX];
	uint64_t dup;

	if (n > CTL_MAP_PEERS_MAX)
		return refuse(err, CTL_MSG_E_TOO_MANY, "reach", "more entries than a map "
		                                                "has peers");
	if (n && !r)
		return refuse(err, CTL_MSG_E_VALUE, "reach", "no array");
	for (size_t i = 0; i < n; i++) {
		const struct ctl_port_range *pr[2] = {r[i].tcp, r[i].udp};
		uint32_t pn[2] = {r[i].n_tcp, r[i].n_udp}, k;
		if (r[i].id > (uint64_t)INT64_MAX) {
			CTL_MF_PRINTF(path, sizeof(path), "reach[%zu].id", i);
			return refuse(err, CTL_MSG_E_VALUE, path, "out of range");
		}
		for (int j = 0; j < 2; j++) {
			CTL_MF_PRINTF(path, sizeof(path), "reach[%zu].%s", i, proto_key[j]);
			if (pn[j] && !pr[j])
				return refuse(err, CTL_MSG_E_VALUE, path, "no ports array");
			const char *bad = ports_norm(pr[j], pn[j], false, NULL, &k);
			if (bad)
				return refuse(err, CTL_MSG_E_VALUE, path, bad);
			if (k > CTL_REACH_RANGES_MAX)
				return refuse(err, CTL_MSG_E_TOO_MANY, path,
				              "more port ranges than a reach entry may hold");
		}
	}
	int rc = reach_dup((struct ctl_reach *)(uintptr_t)r, n, &dup);
	if (rc < 0) {
		ctl_msg_seterr(err, CTL_MSG_E_NOMEM, "out of memory");
		return -ENOMEM;
	}
	if (rc > 0) {
		CTL_MF_PRINTF(path, sizeof(path), "id %llu appears twice",
		              (unsigned long long)dup);
		return refuse(err, CTL_MSG_E_VALUE, "reach", path);
	}
	return 0;
}

/* The policy fields of a MAP_FULL (filter: has_filter) or a MAP_DELTA
 * (filter: SET; cleared: CLEAR); reach_ok: reach may come with it. */
int ctl_mp_check_policy(bool filter, bool cleared, const struct ctl_filter *f,
                        bool reach_ok, const struct ctl_reach *r, size_t n_reach,
                        struct ctl_msg_err *err)
{
	if ((filter && ctl_mp_check_filter(f, "filter", err) < 0) ||
	    ctl_mp_check_reach(r, n_reach, err) < 0)
		return -EINVAL;
	if (n_reach && !reach_ok)
		return refuse(err, CTL_MSG_E_VALUE, "reach",
		              cleared ? "with filter null (a cleared policy drops every entry)"
		                      : "without a filter (no policy: nothing to reach)");
	return 0;
}

/* --- encoding (after the checks above: only memory can fail) --------------- */

int ctl_mp_set_owner(json_t *o, const char *user, const char *tags)
{
	if (user[0] && json_object_set_new(o, "user", json_string(user)) != 0)
		return -1;
	if (!tags[0])
		return 0;
	json_t *a = json_array();
	if (!a || json_object_set_new(o, "tags", a) != 0)
		return -1;
	for (const char *s = tags; *s;) {
		size_t len = strcspn(s, ",");
		if (json_array_append_new(a, json_stringn(s, len)) != 0)
			return -1;
		s += len;
		if (*s == ',')
			s++;
	}
	return 0;
}

/* The text of ranges r[0..n) after ports_norm; NULL: nothing left (*empty)
 * or out of memory. */
static char *norm_text(const struct ctl_port_range *r, uint32_t n, bool icmp, bool *empty)
{
	struct ctl_port_range *tmp;
	uint32_t k;

	*empty = false;
	if (!(tmp = malloc((n ? n : 1) * sizeof(*tmp))))
		return NULL;
	if (ports_norm(r, n, icmp, tmp, &k) || k == 0) {
		free(tmp);
		*empty = true;
		return NULL;
	}
	char *s = ports_text(tmp, k, icmp);
	free(tmp);
	return s;
}

json_t *ctl_mp_filter_json(const struct ctl_filter *f)
{
	json_t *o = json_object();

	for (int p = 0; o && p < CTL_FILTER_NPROTO; p++) {
		json_t *a = json_array();
		if (!a || json_object_set_new(o, proto_key[p], a) != 0)
			goto fail;
		for (size_t i = 0; i < f->n_blocks[p]; i++) {
			const struct ctl_filter_block *b = &f->blocks[p][i];
			char lo[CTL_ADDRSTR_MAX], hi[CTL_ADDRSTR_MAX];
			bool empty;
			char *ports = norm_text(b->ports, b->n_ports, p == CTL_FILTER_ICMP,
			                        &empty);
			if (empty)
				continue;
			if (!ports)
				goto fail;
			ctl_ip_format(&b->lo, lo);
			ctl_ip_format(&b->hi, hi);
			json_t *e = json_pack("[s, s, s]", lo, hi, ports);
			free(ports);
			if (json_array_append_new(a, e) != 0)
				goto fail;
		}
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

json_t *ctl_mp_reach_json(const struct ctl_reach *r, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		const struct ctl_port_range *pr[2] = {r[i].tcp, r[i].udp};
		uint32_t pn[2] = {r[i].n_tcp, r[i].n_udp};
		json_t *e = json_pack("{s:I}", "id", (json_int_t)r[i].id);
		if (json_array_append_new(a, e) != 0)
			goto fail;
		for (int j = 0; j < 2; j++) {
			bool empty;
			char *s = norm_text(pr[j], pn[j], false, &empty);
			if (empty)
				continue;
			if (!s || json_object_set_new(e, proto_key[j], json_string(s)) != 0) {
				free(s);
				goto fail;
			}
			free(s);
		}
		if (r[i].icmp && json_object_set_new(e, "icmp", json_true()) != 0)
			goto fail;
	}
	return a;
fail:
	json_decref(a);
	return NULL;
}

/* The policy fields of a map (checked already): filter (SET), null
 * (clear_filter), reach when it has entries. */
json_t *ctl_mp_with_policy(json_t *o, bool filter, bool clear_filter,
                           const struct ctl_filter *f, const struct ctl_reach *r,
                           size_t n_reach)
{
	if (o && ((filter && json_object_set_new(o, "filter", ctl_mp_filter_json(f)) != 0) ||
	          (clear_filter && json_object_set_new(o, "filter", json_null()) != 0) ||
	          (n_reach &&
	           json_object_set_new(o, "reach", ctl_mp_reach_json(r, n_reach)) != 0))) {
		json_decref(o);
		return NULL;
	}
	return o;
}
