/* MagicDNS internals shared by magicdns.c (the pure DNS part),
 * magicdns_svc.c (the service: netstack registration, forwarding) and the
 * tests. Not part of the contract. */
#ifndef MESH_MAGICDNS_INT_H
#define MESH_MAGICDNS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "node/dns/magicdns.h"

/* RFC 1035 4.1.1 */
#define MAGICDNS_HDR_LEN      12
#define MAGICDNS_NAME_MAX     255 /* wire length of a name, length bytes included */
#define MAGICDNS_LABEL_MAX    63
#define MAGICDNS_UDP_MAX      512 /* a DNS message over UDP without EDNS */
#define MAGICDNS_QUESTION_MAX (MAGICDNS_NAME_MAX + 4)

#define MAGICDNS_RCODE_NOERROR  0
#define MAGICDNS_RCODE_FORMERR  1
#define MAGICDNS_RCODE_SERVFAIL 2
#define MAGICDNS_RCODE_NXDOMAIN 3
#define MAGICDNS_RCODE_NOTIMP   4
#define MAGICDNS_RCODE_REFUSED  5

#define MAGICDNS_TYPE_A    1
#define MAGICDNS_TYPE_PTR  12
#define MAGICDNS_TYPE_AAAA 28
#define MAGICDNS_TYPE_ANY  255
#define MAGICDNS_CLASS_IN  1

/* What magicdns_answer_kind decided (for the service's counters). */
enum magicdns_kind {
	MAGICDNS_KIND_DROP,     /* -1 */
	MAGICDNS_KIND_FORWARD,  /* 0 */
	MAGICDNS_KIND_ANSWER,   /* an answer, possibly empty */
	MAGICDNS_KIND_NXDOMAIN, /* NXDOMAIN */
	MAGICDNS_KIND_FORMERR,  /* FORMERR or NOTIMP */
};

/* magicdns_answer() that also says what it did. */
int magicdns_answer_kind(const struct magicdns_config *cfg, const uint8_t *q, size_t qlen,
                         uint8_t *out, size_t cap, enum magicdns_kind *kind);

/* Builds an error response (rcode, RA as given) to query q that
 * magicdns_answer_kind classified as FORWARD (so it parses): header with q's id
 * and RD, the question echoed. Returns the length or -1. */
int magicdns_error_reply(const uint8_t *q, size_t qlen, int rcode, bool ra, uint8_t *out,
                         size_t cap);

/* Length of the question section of a well-formed query (name + 4), or -1. */
int magicdns_question_len(const uint8_t *q, size_t qlen);

/* Test hook: where magicdns_new reads the nameserver (NULL: /etc/resolv.conf),
 * the port used for it (0: 53) and the forward timeout (0: 5000 ms). Applies
 * to later magicdns_new calls. */
void magicdns_int_set_upstream(const char *resolv_path, uint16_t port,
                               unsigned timeout_ms);

/* At most this many forwarded queries wait for an answer; more get SERVFAIL. */
#define MAGICDNS_FWD_MAX 256

#endif
