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

#endif
