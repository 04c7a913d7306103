/* The pure codecs of the proxy front-ends: SOCKS4/4a, SOCKS5 (TCP and the
 * UDP header), HTTP proxy requests, PROXY protocol v2 headers, and client
 * destinations. Every function works on (const uint8_t *p, size_t len) or
 * writes into a buffer it is given: no I/O, no allocation, no event loop.
 * The front-ends in proxy/, the unit tests and the fuzzers use them. */
#ifndef MESH_PROXY_PROTO_H
#define MESH_PROXY_PROTO_H

#include "netstack/ns.h" /* struct ns_addr only */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum px_parse {
	PX_PARSE_ERROR = -1, /* malformed: reply with the code given, then close */
	PX_PARSE_MORE = 0,   /* a prefix of a valid message: read more */
	PX_PARSE_OK = 1,     /* complete; *used bytes belong to it */
	/* Not a codec result: a front-end's session handler returns it when
	 * it takes the client socket over (SOCKS5 UDP ASSOCIATE). */
	PX_PARSE_DETACH = 2,
};

/* Where a client wants to go. */
struct px_target {
	bool is_name;   /* host is a name to resolve; addr unset */
	char host[256]; /* NUL-terminated: the name, or the address as text */
	struct ns_addr addr;
	uint16_t port;
};

/* Parses "1.2.3.4" or "fd00::1" (no brackets) into a. */
bool px_addr_parse(struct ns_addr *a, const char *s);
/* Fills t from a host as written (IP literal or name) and a port; false if
 * host is neither an address nor a plausible DNS name. */
bool px_target_set(struct px_target *t, const char *host, size_t hostlen, uint16_t port);
/* "1.2.3.4:80", "[fd00::1]:80" or "name:80". */
void px_target_format(const struct px_target *t, char *buf, size_t len);

/* SOCKS5, RFC 1928 and RFC 1929. */
#define SOCKS5_VER                  0x05
#define SOCKS5_AUTH_VER             0x01
#define SOCKS5_METHOD_NONE          0x00
#define SOCKS5_METHOD_USERPASS      0x02
#define SOCKS5_METHOD_UNACCEPTABLE  0xff
#define SOCKS5_CMD_CONNECT          0x01
#define SOCKS5_CMD_BIND             0x02
#define SOCKS5_CMD_UDP_ASSOCIATE    0x03
#define SOCKS5_ATYP_IPV4            0x01
#define SOCKS5_ATYP_DOMAIN          0x03
#define SOCKS5_ATYP_IPV6            0x04
#define SOCKS5_REP_SUCCEEDED        0x00
#define SOCKS5_REP_GENERAL          0x01
#define SOCKS5_REP_NOT_ALLOWED      0x02
#define SOCKS5_REP_NET_UNREACH      0x03
#define SOCKS5_REP_HOST_UNREACH     0x04
#define SOCKS5_REP_REFUSED          0x05
#define SOCKS5_REP_TTL_EXPIRED      0x06
#define SOCKS5_REP_CMD_UNSUPPORTED  0x07
#define SOCKS5_REP_ATYP_UNSUPPORTED 0x08
/* Longest messages: greeting 2+255, auth 3+255+255, request 7+255. */
#define SOCKS5_GREETING_MAX 257
#define SOCKS5_AUTH_MAX     513
#define SOCKS5_REQUEST_MAX  262
#define SOCKS5_REPLY_MAX    22

struct px_socks5_greeting {
	bool no_auth;  /* method 0x00 offered */
	bool userpass; /* method 0x02 offered */
};
/* VER NMETHODS METHODS. ERROR if VER is not 5 or NMETHODS is 0. */
enum px_parse px_socks5_parse_greeting(const uint8_t *p, size_t len,
                                       struct px_socks5_greeting *g, size_t *used);

struct px_socks5_auth {
	uint8_t ulen, plen;
	char user[256], pass[256]; /* NUL-terminated copies (may contain NULs) */
};
/* VER(1) ULEN UNAME PLEN PASSWD. ERROR if VER is not 1. */
enum px_parse px_socks5_parse_auth(const uint8_t *p, size_t len, struct px_socks5_auth *a,
                                   size_t *used);

/* VER CMD RSV ATYP DST.ADDR DST.PORT. On ERROR *rep is the reply code:
 * 0x01 bad version/port/name, 0x07 unknown command, 0x08 unknown ATYP.
 * A domain that is an IP literal comes back as an address (is_name false).
 * BIND and UDP ASSOCIATE parse fine (UDP ASSOCIATE also with port 0). */
enum px_parse px_socks5_parse_request(const uint8_t *p, size_t len, uint8_t *cmd,
                                      struct px_target *t, size_t *used, uint8_t *rep);

/* Writes a reply (VER REP RSV ATYP BND.ADDR BND.PORT) into out (at least
 * SOCKS5_REPLY_MAX bytes); bnd NULL means 0.0.0.0:0. Returns its length. */
size_t px_socks5_reply(uint8_t *out, uint8_t rep, const struct sockaddr_storage *bnd);

/* SOCKS5 UDP request header (RFC 1928 section 7), in front of every
 * datagram between client and relay: RSV(2) FRAG ATYP DST.ADDR DST.PORT. */
#define SOCKS5_UDP_HDR_IPV4 10
#define SOCKS5_UDP_HDR_IPV6 22
#define SOCKS5_UDP_HDR_MAX  (4 + 1 + 255 + 2)
/* Parses the header of one whole datagram p[0..len): FRAG into *frag, the
 * destination into t (a domain that is an IP literal comes back as an
 * address), the offset of DATA into *hdr_len. false if it is truncated,
 * ATYP is unknown, the name is empty or not a plausible host, or the port
 * is 0. RSV is not checked; FRAG is returned, the caller drops non-zero. */
bool px_socks5_udp_parse(const uint8_t *p, size_t len, uint8_t *frag, struct px_target *t,
                         size_t *hdr_len);
/* Writes RSV RSV FRAG=0 ATYP ADDR PORT for a (IPv4 or IPv6) into out (at
 * least SOCKS5_UDP_HDR_IPV6 bytes); returns its length (10 or 22). */
size_t px_socks5_udp_header(uint8_t *out, const struct ns_addr *a, uint16_t port);

/* SOCKS4 and SOCKS4a, served on the SOCKS5 port (the first byte tells). */
#define SOCKS4_VER          0x04
#define SOCKS4_CMD_CONNECT  0x01
#define SOCKS4_CMD_BIND     0x02
#define SOCKS4_REP_GRANTED  90
#define SOCKS4_REP_REJECTED 91  /* also: failed, no route, timed out */
#define SOCKS4_ID_MAX       255 /* USERID bytes before its NUL */
#define SOCKS4_NAME_MAX     255 /* SOCKS4a host name bytes before its NUL */
#define SOCKS4_REQUEST_MAX  (8 + SOCKS4_ID_MAX + 1 + SOCKS4_NAME_MAX + 1)
#define SOCKS4_REPLY_LEN    8

/* VN(4) CD DSTPORT DSTIP USERID NUL [HOST NUL]. The user id is skipped.
 * ERROR (reply 91) for a bad version, a command other than CONNECT/BIND,
 * port 0, DSTIP 0.0.0.0, an over-long user id or name, or a name that is
 * not a plausible host. BIND parses fine; the caller refuses it. A SOCKS4a
 * name that is an IP literal comes back as an address. */
enum px_parse px_socks4_parse_request(const uint8_t *p, size_t len, uint8_t *cmd,
                                      struct px_target *t, size_t *used);
/* Writes the 8-byte reply (VN 0, CD rep, zero port and address) into out;
 * returns SOCKS4_REPLY_LEN. */
size_t px_socks4_reply(uint8_t *out, uint8_t rep);

/* HTTP proxy: CONNECT, and absolute-form requests to http:// URIs. */
#define PX_HTTP_MAX_HEADER 8192
/* Response heads from origin servers may be longer (cookies). */
#define PX_HTTP_MAX_RESPONSE_HEADER 16384
/* px_http_rewrite() and px_http_rewrite_response() output is at most this
 * much longer than their input when its lines end in CR LF (a line that
 * ended in a bare LF gains its CR). */
#define PX_HTTP_REWRITE_SLACK 64

/* How a message body is framed (RFC 9112 section 6.3). */
enum px_http_body {
	PX_HTTP_BODY_NONE,    /* no body */
	PX_HTTP_BODY_LENGTH,  /* exactly .length bytes (Content-Length) */
	PX_HTTP_BODY_CHUNKED, /* chunked, up to the last chunk and the trailers */
	PX_HTTP_BODY_CLOSE,   /* responses only: until the server closes */
};

struct px_http_request {
	struct px_target target;
	const uint8_t *auth; /* Proxy-Authorization value inside p, or NULL */
	size_t auth_len;
	/* false: CONNECT. true: GET/HEAD/POST/PUT/DELETE/OPTIONS/PATCH with
	 * an http:// absolute URI (port 80 unless given), to be rewritten with
	 * px_http_rewrite() and forwarded. */
	bool forward;
	bool head;              /* HEAD: the response has no body */
	bool keep_alive;        /* HTTP/1.1 without "Connection: close" */
	uint8_t minor;          /* HTTP/1.minor */
	enum px_http_body body; /* NONE, LENGTH or CHUNKED */
	uint64_t length;        /* LENGTH: the body's size */
	bool expect_continue;   /* "Expect: 100-continue": a 100 may go back */
	/* GET, HEAD or OPTIONS, or the request carries Idempotency-Key or
	 * X-Idempotency-Key: it may be sent again when a reused connection
	 * closes before any answer (RFC 9110 section 9.2.2; Go's rule). */
	bool replayable;
};
/* Parses the request head up to and including the empty line. On ERROR
 * *status is 400 (malformed; also https:// or origin-form targets,
 * userinfo in the URI, Content-Length and Transfer-Encoding together,
 * Content-Length values that disagree or are not numbers, chunked not the
 * last transfer coding or given twice, Transfer-Encoding in HTTP/1.0, and
 * Connection naming Content-Length or Transfer-Encoding, a transfer coding
 * with parameters or an empty one), 431 (head over
 * PX_HTTP_MAX_HEADER), 501 (another method, or a transfer coding other
 * than chunked) or 505 (not HTTP/1.x). */
enum px_parse px_http_parse_request(const uint8_t *p, size_t len,
                                    struct px_http_request *r, size_t *used, int *status);
/* Rewrites a forward request head p[0..head_len) (one that
 * px_http_parse_request() accepted, head_len its *used) for the origin
 * server: the request line in origin-form ("GET /path HTTP/1.1", the
 * version kept), "Host: " the URI's authority, the client's headers minus
 * hop-by-hop ones (Connection and the options it names, Proxy-Connection,
 * Keep-Alive, Proxy-Authorization, Proxy-Authenticate,
 * Proxy-Authentication-Info, TE, Trailer, Upgrade, Host), one normalised
 * Content-Length or Transfer-Encoding line, then "Connection: keep-alive"
 * or "Connection: close" and the empty line. Every line ends in CR LF.
 * OPTIONS to "http://host" (no path, no query) becomes "OPTIONS *". Returns
 * the length written into out, or 0 if out is too small (outlen >=
 * head_len + PX_HTTP_REWRITE_SLACK fits a head with CR LF line ends) or
 * Connection names more than 64 options. */
size_t px_http_rewrite(const uint8_t *p, size_t head_len, bool keep_alive, uint8_t *out,
                       size_t outlen);

/* A response head from an origin server (RFC 9112 sections 4 and 6.3). */
struct px_http_resp {
	int status;             /* 100..599 */
	uint8_t minor;          /* HTTP/1.minor */
	bool keep_alive;        /* the server keeps the connection (1.1 without
	                         * "Connection: close", 1.0 with "keep-alive") */
	enum px_http_body body; /* NONE for 1xx, 204, 304 and answers to HEAD */
	uint64_t length;
};
/* Parses a response head up to and including the empty line; head_request
 * says the request was HEAD (no body whatever the headers say). ERROR: not
 * "HTTP/1.x NNN ...", a malformed header line (also obs-fold, NUL, bare
 * CR), Content-Length and Transfer-Encoding together, Content-Length
 * values that disagree, Connection naming Content-Length or
 * Transfer-Encoding, a transfer coding with parameters or an empty one,
 * or a head over PX_HTTP_MAX_RESPONSE_HEADER. A Transfer-Encoding whose
 * last coding is not chunked is BODY_CLOSE, as is a response with neither
 * header, and an HTTP/1.0 response with Transfer-Encoding (faulty framing,
 * RFC 9112 section 6.1: read up to the close, keep_alive false). */
enum px_parse px_http_parse_response(const uint8_t *p, size_t len, bool head_request,
                                     struct px_http_resp *r, size_t *used);
/* Rewrites a response head (one px_http_parse_response() accepted) for the
 * client: the status line as it came, the headers minus the hop-by-hop ones
 * and the framing normalised (as for requests), then, for a final response
 * (status >= 200), "Connection: keep-alive" or "Connection: close", and
 * the empty line; every line ends in CR LF. Returns the length, or 0 if
 * out is too small (head_len + PX_HTTP_REWRITE_SLACK fits a head with CR
 * LF line ends) or Connection names over 64 options. */
size_t px_http_rewrite_response(const uint8_t *p, size_t head_len, bool keep_alive,
                                uint8_t *out, size_t outlen);

/* Finds the end of a chunked body (RFC 9112 section 7.1) in a stream
 * without changing it: chunk-size lines (hex, at most 16 digits and a size
 * under 2^62, with extensions, at most PX_HTTP_CHUNK_LINE_MAX bytes),
 * chunk data, each followed by CR LF, the last chunk, then trailer lines
 * ("name:value", at most PX_HTTP_MAX_HEADER bytes in all) and the empty
 * line. Strict: every line ends with CR LF. */
#define PX_HTTP_CHUNK_LINE_MAX 1024
struct px_http_chunked {
	uint8_t state;
	uint8_t digits;
	uint16_t line;     /* bytes of the current size or trailer line */
	uint32_t trailers; /* bytes of the trailer section */
	uint64_t left;     /* chunk data still to come */
};
void px_http_chunked_init(struct px_http_chunked *c);
/* Scans p[0..len), the next bytes of the body. MORE: all len bytes belong
 * to it (*used = len). OK: the body ends after *used bytes (the rest is
 * not part of it). ERROR: malformed. */
enum px_parse px_http_chunked_scan(struct px_http_chunked *c, const uint8_t *p,
                                   size_t len, size_t *used);

/* True if value is "Basic base64(user:pass)" for these credentials
 * (constant time in the credential bytes). */
bool px_http_auth_ok(const uint8_t *value, size_t len, const char *user,
                     const char *pass);
/* The response head for status (200, 400, 403, 407, 431, 501, 502, 504, 505),
 * with "Content-Length: 0" and "Connection: close" (but for 200, the
 * answer to CONNECT). Returns its length (< 256), written into out. */
size_t px_http_response(char *out, size_t outlen, int status);

/* ---- PROXY protocol v2 (proxyv2.c; haproxy's proxy-protocol.txt) ---- */

#define PX_PROXYV2_SIG_LEN 12
/* TLVs (section 2.2.7) in the range the specification leaves to
 * applications (PP2_TYPE_MIN_CUSTOM 0xE0 .. 0xEF): the mesh identity of
 * the connection's source, from the map (docs/node-policy.md). Each
 * is sent only when known. */
#define PX_PP2_TYPE_MESH_NAME 0xE0 /* the source node's full name (FQDN) */
#define PX_PP2_TYPE_MESH_USER 0xE1 /* the user who owns it */
#define PX_PP2_TYPE_MESH_TAGS 0xE2 /* its tags, comma-joined ("tag:a,tag:b") */
#define PX_PP2_VALUE_MAX      255  /* longest value we send (a DNS name) */
#define PX_PP2_TLVS_MAX       3    /* TLVs we send */
#define PX_PP2_PARSE_TLVS_MAX 16   /* TLVs px_proxyv2_parse reports */
/* header + TCP6 addresses + our TLVs */
#define PX_PROXYV2_MAX (16 + 36 + PX_PP2_TLVS_MAX * (3 + PX_PP2_VALUE_MAX))

struct px_pp2_tlv {
	uint8_t type;
	uint16_t len;
	const uint8_t *value; /* len bytes, not NUL-terminated */
};

/* Writes the v2 header for a proxied TCP connection from src:sport to
 * dst:dport (same family): signature, 0x21 (v2, PROXY), 0x11 (TCP4) or
 * 0x21 (TCP6), length, addresses and ports. Returns its length (28 or
 * 52), or 0 if outlen is too small or the families differ. */
size_t px_proxyv2_header(uint8_t *out, size_t outlen, const struct ns_addr *src,
                         uint16_t sport, const struct ns_addr *dst, uint16_t dport);
/* The same followed by tlv[0..n) (each value at most PX_PP2_VALUE_MAX
 * bytes, else 0), counted in the header's length. */
size_t px_proxyv2_header_tlv(uint8_t *out, size_t outlen, const struct ns_addr *src,
                             uint16_t sport, const struct ns_addr *dst, uint16_t dport,
                             const struct px_pp2_tlv *tlv, size_t n);

/* A v2 header as a receiver reads it (for tests, fuzzing and services
 * written against this node). */
struct px_pp2_parsed {
	uint8_t command; /* 0 LOCAL, 1 PROXY */
	uint8_t family;  /* the fam byte: 0x11 TCP4, 0x21 TCP6, 0x00 UNSPEC... */
	struct ns_addr src, dst; /* TCP4/UDP4, TCP6/UDP6 only */
	uint16_t sport, dport;
	size_t n_tlv; /* TLVs found (the first PX_PP2_PARSE_TLVS_MAX in tlv) */
	struct px_pp2_tlv tlv[PX_PP2_PARSE_TLVS_MAX]; /* values point into p */
};
/* Parses a v2 header at the start of p[0..len): PX_PARSE_OK with *used
 * (the whole header, TLVs included), PX_PARSE_MORE when p is a strict
 * prefix of one, PX_PARSE_ERROR when it is not a v2 header (bad
 * signature, version, command, an address block shorter than its family
 * needs, a TLV running past the header). */
enum px_parse px_proxyv2_parse(const uint8_t *p, size_t len, struct px_pp2_parsed *out,
                               size_t *used);

#endif
