/* Reading one field of a JSON object, checked: the layer under
 * msg_decode.c. Each reader checks the JSON type and the value and, on
 * failure, writes "<path>.<field>: <why>" into the error; the path of the
 * enclosing object ("peers[3]") is passed down as a string. Readers return 1
 * (found and valid), 0 (absent and optional) or a negative errno. */
#ifndef MESH_CTL_MSG_FIELD_H
#define MESH_CTL_MSG_FIELD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "core/control/msg.h"

#define CTL_MF_PATH_MAX 96

/* snprintf whose truncation is fine (paths and reasons are for people). */
#define CTL_MF_PRINTF(...)                                                               \
	do {                                                                             \
		if (snprintf(__VA_ARGS__) < 0)                                           \
			abort();                                                         \
	} while (0)

struct ctl_mf_ctx {
	struct ctl_msg_err *err;
};

enum ctl_mf_kind {
	CTL_MF_TEXT,     /* any text without control characters, may be empty */
	CTL_MF_TEXT1,    /* same, not empty */
	CTL_MF_SECRET,   /* printable ASCII, may be empty */
	CTL_MF_LABEL,    /* DNS label */
	CTL_MF_DNSNAME,  /* DNS name */
	CTL_MF_HOSTNAME, /* hostname_valid() */
	CTL_MF_TAG,
};

#define CTL_MF_TRY(expr)                                                                 \
	do {                                                                             \
		int try_r_ = (expr);                                                     \
		if (try_r_ < 0)                                                          \
			return try_r_;                                                   \
	} while (0)

/* True if s[0..n) is valid for kind; the refusal text for kind. */
bool ctl_mf_str_ok(enum ctl_mf_kind kind, const char *s, size_t n);
const char *ctl_mf_str_what(enum ctl_mf_kind kind);

void ctl_mf_path(char *out, const char *pre, const char *key);

int ctl_mf_bad(struct ctl_mf_ctx *c, enum ctl_msg_errcode code, const char *pre,
               const char *key, const char *why);

int ctl_mf_get(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, json_type type, json_t **out);

int ctl_mf_int(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, json_int_t max, uint64_t *out);

int ctl_mf_u32(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, uint32_t *out);

int ctl_mf_take_str(struct ctl_mf_ctx *c, json_t *v, const char *pre, const char *key,
                    enum ctl_mf_kind kind, char *buf, size_t cap);

int ctl_mf_str(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               bool required, enum ctl_mf_kind kind, char *buf, size_t cap);

int ctl_mf_key(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               uint8_t out[CTL_KEY_LEN]);

int ctl_mf_ip(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
              int family, struct ctl_ip *out);

int ctl_mf_array(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                 bool required, size_t max, json_t **arr, size_t *n);

int ctl_mf_elem_str(struct ctl_mf_ctx *c, json_t *arr, size_t i, const char *pre,
                    const char *key, const char **s, char elem_name[CTL_MF_PATH_MAX]);

int ctl_mf_ips(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
               struct ctl_ip *out, uint8_t *n_out);

int ctl_mf_prefixes(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                    struct ctl_prefix *out, uint8_t *n_out);

int ctl_mf_endpoints(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                     bool required, struct ctl_endpoint *out, uint8_t *n_out);

int ctl_mf_object(struct ctl_mf_ctx *c, json_t *obj, const char *pre, const char *key,
                  json_t **out);

#endif
