/* Shared between msg.c, msg_decode.c and msg_encode.c; not a public API. */
#ifndef MESH_CTL_MSG_INT_H
#define MESH_CTL_MSG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/control/msg.h"

/* Sets err (if not NULL) to code and a printf-formatted text. */
void ctl_msg_seterr(struct ctl_msg_err *err, enum ctl_msg_errcode code, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

/* Overwrites the bytes of string member key of obj (if it is one) with zeros. */
void ctl_msg_json_wipe(json_t *obj, const char *key);

/* Syntax checks on NUL-terminated strings of length n. */
bool ctl_label_valid(const char *s, size_t n);   /* 1..63 of [A-Za-z0-9-], no edge '-' */
bool ctl_dnsname_valid(const char *s, size_t n); /* dot-separated labels, 1..253 */
bool ctl_tag_valid(const char *s, size_t n);     /* 1..63 of [A-Za-z0-9:_.-] */
bool ctl_text_valid(const char *s, size_t n);    /* no control characters */
bool ctl_user_valid(const char *s, size_t n);     /* 1..63 of [a-z0-9._-], first [a-z0-9] */
bool ctl_peer_tag_valid(const char *s, size_t n); /* tag:NAME, NAME of [A-Za-z0-9._-] */

/* The policy parts of a map (msg_policy.c). Decoders take the JSON value
 * and return 1 or a negative errno with the error naming the field;
 * checks refuse (-EINVAL, err set) what the decoder would refuse; the
 * JSON builders run after the checks and fail only without memory. */
struct ctl_mf_ctx;
/* owner: a user and comma-joined tags (a peer's, or the node's own) */
int ctl_mp_dec_owner(struct ctl_mf_ctx *c, json_t *o, const char *pre,
                     char user[CTL_USER_MAX], char tags[CTL_PEER_TAGS_MAX]);
int ctl_mp_dec_filter(struct ctl_mf_ctx *c, json_t *f, const char *key,
                      struct ctl_filter *out);
int ctl_mp_dec_reach(struct ctl_mf_ctx *c, json_t *o, struct ctl_reach **out,
                     size_t *n_out);
int ctl_mp_check_owner(const char *user, const char *tags, const char *pre,
                       struct ctl_msg_err *err);
int ctl_mp_check_filter(const struct ctl_filter *f, const char *key,
                        struct ctl_msg_err *err);
int ctl_mp_check_reach(const struct ctl_reach *r, size_t n, struct ctl_msg_err *err);
int ctl_mp_check_policy(bool filter, bool cleared, const struct ctl_filter *f,
                        bool reach_ok, const struct ctl_reach *r, size_t n_reach,
                        struct ctl_msg_err *err);
int ctl_mp_set_owner(json_t *o, const char *user, const char *tags);
json_t *ctl_mp_filter_json(const struct ctl_filter *f);
json_t *ctl_mp_reach_json(const struct ctl_reach *r, size_t n);
/* Adds filter (SET), "filter": null (clear_filter) and reach (when it has
 * entries) to o; o is released and NULL returned without memory. */
json_t *ctl_mp_with_policy(json_t *o, bool filter, bool clear_filter,
                           const struct ctl_filter *f, const struct ctl_reach *r,
                           size_t n_reach);

#endif
