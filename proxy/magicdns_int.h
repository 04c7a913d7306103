/* MagicDNS internals shared by magicdns.c (the pure DNS part),
 * magicdns_svc.c (the service: netstack registration, forwarding) and the
 * tests. Not part of the contract. */
#ifndef MESH_MAGICDNS_INT_H
#define MESH_MAGICDNS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/magicdns.h"

/* RFC 1035 4.1.1 */
#define MDNS_HDR_LEN      12
#define MDNS_NAME_MAX     255 /* wire length of a name, length bytes included */
#define MDNS_LABEL_MAX    63
#define MDNS_UDP_MAX      512 /* a DNS message over UDP without EDNS */
#define MDNS_QUESTION_MAX (MDNS_NAME_MAX + 4)

#define MDNS_RCODE_NOERROR  0
#define MDNS_RCODE_FORMERR  1
#define MDNS_RCODE_SERVFAIL 2
#define MDNS_RCODE_NXDOMAIN 3
#define MDNS_RCODE_NOTIMP   4
#define MDNS_RCODE_REFUSED  5

#define MDNS_TYPE_A    1
#define MDNS_TYPE_PTR  12
#define MDNS_TYPE_AAAA 28
#define MDNS_TYPE_ANY  255
#define MDNS_CLASS_IN  1

/* What mdns_answer_kind decided (for the service's counters). */
enum mdns_kind {
	MDNS_KIND_DROP,     /* -1 */
	MDNS_KIND_FORWARD,  /* 0 */
	MDNS_KIND_ANSWER,   /* an answer, possibly empty */
	MDNS_KIND_NXDOMAIN, /* NXDOMAIN */
	MDNS_KIND_FORMERR,  /* FORMERR or NOTIMP */
};

/* mdns_answer() that also says what it did. */
int mdns_answer_kind(const struct mdns_config *cfg, const uint8_t *q, size_t qlen,
                     uint8_t *out, size_t cap, enum mdns_kind *kind);

/* Builds an error response (rcode, RA as given) to query q that
 * mdns_answer_kind classified as FORWARD (so it parses): header with q's id
 * and RD, the question echoed. Returns the length or -1. */
int mdns_error_reply(const uint8_t *q, size_t qlen, int rcode, bool ra, uint8_t *out,
                     size_t cap);

/* Length of the question section of a well-formed query (name + 4), or -1. */
int mdns_question_len(const uint8_t *q, size_t qlen);

/* Test hook: where mdns_new reads the nameserver (NULL: /etc/resolv.conf),
 * the port used for it (0: 53) and the forward timeout (0: 5000 ms). Applies
 * to later mdns_new calls. */
void mdns_int_set_upstream(const char *resolv_path, uint16_t port, unsigned timeout_ms);

/* At most this many forwarded queries wait for an answer; more get SERVFAIL. */
#define MDNS_FWD_MAX 256

#endif
