/* Internal to proxy/: the pure request parsers (SOCKS4/4a, SOCKS5, HTTP), the
 * listening socket, and the client session shared by the SOCKS5, HTTP and
 * TCPClientTunnel front-ends. Tests and fuzzers use the parsers. */
#ifndef MESH_PROXY_INT_H
#define MESH_PROXY_INT_H

#include "config/config.h"
#include "netstack/ns.h"
#include "proxy/proxy.h"

#include <event2/util.h> /* struct evutil_addrinfo is a macro for addrinfo */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cfg_listen;
struct event;
struct evdns_getaddrinfo_request;

/* ---- parsers: (const uint8_t *p, size_t len), no I/O, no allocation ---- */

enum px_parse {
	PX_PARSE_ERROR = -1, /* malformed: reply with the code given, then close */
	PX_PARSE_MORE = 0,   /* a prefix of a valid message: read more */
	PX_PARSE_OK = 1,     /* complete; *used bytes belong to it */
	/* on_data only: the front-end takes the client socket over (SOCKS5
	 * UDP ASSOCIATE); session.c calls ops->on_detach and frees itself. */
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
/* px_http_rewrite() output is at most this much longer than its input. */
#define PX_HTTP_REWRITE_SLACK 64

struct px_http_request {
	struct px_target target;
	const uint8_t *auth; /* Proxy-Authorization value inside p, or NULL */
	size_t auth_len;
	/* false: CONNECT. true: GET/HEAD/POST/PUT/DELETE/OPTIONS/PATCH with
	 * an http:// absolute URI (port 80 unless given), to be rewritten with
	 * px_http_rewrite() and forwarded. */
	bool forward;
};
/* Parses the request head up to and including the empty line. On ERROR
 * *status is 400 (malformed; also https:// or origin-form targets, and
 * userinfo in the URI), 431 (head over PX_HTTP_MAX_HEADER), 501 (another
 * method) or 505 (not HTTP/1.x). */
enum px_parse px_http_parse_request(const uint8_t *p, size_t len,
                                    struct px_http_request *r, size_t *used, int *status);
/* Rewrites a forward request head p[0..head_len) (one that
 * px_http_parse_request() accepted, head_len its *used) for the origin
 * server: the request line in origin-form ("GET /path HTTP/1.1", the
 * version kept), "Host: " the URI's authority, the client's headers minus
 * hop-by-hop ones (Connection and the options it names, Proxy-Connection,
 * Keep-Alive, Proxy-Authorization, TE, Trailer, Upgrade, Host), then
 * "Connection: close" and the empty line. Header lines are copied as they
 * came. Returns the length written into out, or 0 if out is too small
 * (outlen >= head_len + PX_HTTP_REWRITE_SLACK always fits) or Connection
 * names more than 64 options. */
size_t px_http_rewrite(const uint8_t *p, size_t head_len, uint8_t *out, size_t outlen);
/* True if value is "Basic base64(user:pass)" for these credentials
 * (constant time in the credential bytes). */
bool px_http_auth_ok(const uint8_t *value, size_t len, const char *user,
                     const char *pass);
/* The response head for status (200, 400, 407, 431, 501, 502, 504, 505).
 * Returns its length (< 256), written into out. */
size_t px_http_response(char *out, size_t outlen, int status);

/* ---- listening sockets ---- */

typedef void (*px_accept_fn)(void *ctx, int fd);
struct px_listener;
/* Non-blocking, SO_REUSEADDR, accept4() until EAGAIN; on EMFILE/ENFILE the
 * listener pauses 100 ms instead of spinning and counts *err_accept. */
struct px_listener *px_listener_new(struct event_base *base,
                                    const struct cfg_listen *addr, px_accept_fn fn,
                                    void *ctx, uint64_t *err_accept, char *err,
                                    size_t errlen);
void px_listener_free(struct px_listener *l);
void px_listener_addr(const struct px_listener *l, struct sockaddr_storage *ss,
                      socklen_t *len);
/* "127.0.0.1:1080" / "[::1]:1080". */
void px_sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t len);

/* ---- client sessions (session.c) ---- */

/* Why a connection could not be made. */
enum px_err {
	PX_OK = 0,
	PX_E_GENERAL,
	PX_E_NO_ROUTE,
	PX_E_RESOLVE,
	PX_E_UNREACHABLE,
	PX_E_REFUSED,
	PX_E_TIMEOUT,
};
const char *px_err_str(enum px_err e);
/* Maps ns_tcp_dial()'s -errno. */
enum px_err px_err_from_errno(int neg_errno);

/* What SOCKS5, HTTP and the client tunnel have in common. */
struct px_front {
	struct px_env env;
	struct px_stats stats;
	/* Byte counters of this front-end's splices (mesh and direct); may
	 * outlive the front-end (see ns_acct). px_front_stats() merges it. */
	struct ns_acct *acct;
	bool direct;           /* dial non-mesh destinations from the host */
	struct cfg_limits lim; /* copied from the config, defaults filled in */
	struct px_listener *lst;
	struct px_sess *sessions;      /* live sessions, newest first */
	struct px_sess *sessions_tail; /* oldest (MaxConnections eviction) */
	size_t n_sessions;
	struct px_relay *relays; /* direct relays (direct.c), owned */
	size_t n_relays;
	const char *kind; /* "socks5", "http", "tcp-client", for the log */
	struct px_local_dial *local_dials; /* local connects in progress */
};

/* Fills f: env copied, kind (a string literal), lim copied with zero
 * fields replaced by the CFG_DEFAULT_* values (a zero handshake timeout
 * takes env->handshake_timeout_ms first; lim NULL: all defaults), direct,
 * and a new f->acct. Returns 0 or -ENOMEM. f must be zeroed before. */
int px_front_init(struct px_front *f, const struct px_env *env, const char *kind,
                  const struct cfg_limits *lim, bool direct);
/* Frees f->lst, closes every session and direct relay, releases f->acct.
 * Does not free f itself. */
void px_front_fini(struct px_front *f);
/* Connections of f counted against MaxConnections: sessions in handshake,
 * resolution or dial, established splices and direct relays. */
size_t px_front_open(const struct px_front *f);

#define PX_DEFAULT_HANDSHAKE_MS 10000
#define PX_CONNECT_TIMEOUT_MS   30000 /* resolution + dial, a safety net */
#define PX_LINGER_MS            2000  /* reading leftovers before closing */

struct px_sess_ops {
	/* New bytes in s->buf[0..s->len): parse from s->consumed on; may call
	 * px_sess_send(). MORE: keep reading. OK: s->target is set and
	 * s->consumed covers the whole handshake (the rest is early data). ERROR:
	 * the reply is queued and counted; the session closes after sending it. */
	enum px_parse (*on_data)(struct px_sess *s);
	/* The dial result: queue the reply (PX_OK: success). NULL: no reply. */
	void (*on_result)(struct px_sess *s, enum px_err e);
	size_t buf_size; /* handshake + early data bound */
	/* Bytes at the end of buf that reads leave free, so that on_data may
	 * rewrite the handshake into something longer (HTTP forwarding). */
	size_t buf_reserve;
	/* After on_data returned PX_PARSE_DETACH: fd is the front-end's now
	 * (events removed, still non-blocking); s is freed right after. s is
	 * readable during the call: s->out[s->out_off..s->out_len) holds
	 * queued bytes not yet written (send them yourself), and
	 * s->buf[s->consumed..s->len) any client bytes after the request.
	 * The session counts neither as established nor as an error. */
	void (*on_detach)(struct px_sess *s, int fd);
};

enum px_sess_state {
	PX_S_HANDSHAKE,
	PX_S_CONNECT,     /* resolving and dialling */
	PX_S_REPLY_OK,    /* flushing the success reply, then splice */
	PX_S_REPLY_CLOSE, /* flushing an error reply, then linger */
	PX_S_LINGER,      /* write side shut; discarding input until EOF */
	PX_S_DEAD,        /* closed; waiting for an async callback to free it */
};

struct px_sess {
	struct px_front *front; /* NULL once its front-end is gone */
	struct px_sess *next, *prev;
	const struct px_sess_ops *ops;
	enum px_sess_state state;
	int fd;
	struct event *rev, *wev, *timer;
	uint8_t *buf;
	size_t len, consumed;
	uint8_t out[320];
	size_t out_len, out_off;
	bool broken;      /* a write failed: close at the next check */
	bool read_eof;    /* the client half-closed during connect */
	bool rst_on_fail; /* tunnels: reset the client when the dial fails */
	bool pending;     /* counted in stats.pending (until an error reply) */
	struct px_target target;
	struct evdns_getaddrinfo_request *dns_req;
	bool dns_pending, dns_sync, dial_pending;
	int dns_sync_result;
	struct evutil_addrinfo *dns_sync_ai;
	struct ns_tcp *conn;
	/* Direct = yes: a non-blocking connect from the host in progress
	 * (direct_fd >= 0, direct_ev waits for it), then the relay's host
	 * side. -1 when unused. */
	int direct_fd;
	struct event *direct_ev;
	int stage; /* protocol-specific */
};

#define PX_STAT(s, field)                                                                \
	do {                                                                             \
		if ((s)->front)                                                          \
			(s)->front->stats.field++;                                       \
	} while (0)

/* Takes fd. With ops->on_data NULL the target must be set and
 * px_sess_connect() called right away (tunnel mode). NULL on failure (fd
 * closed). */
struct px_sess *px_sess_new(struct px_front *f, int fd, const struct px_sess_ops *ops);
/* Queues bytes for the client (<= sizeof(out) in total) and tries to write. */
void px_sess_send(struct px_sess *s, const void *p, size_t n);
/* Resolves, route-checks and dials s->target; the result goes to
 * ops->on_result and then to the splice or a close. */
void px_sess_connect(struct px_sess *s);
/* Closes every session of f (front-end teardown). */
void px_front_close_all(struct px_front *f);
void px_front_count_err(struct px_front *f, enum px_err e);
/* f->stats plus the byte counters of f->acct. */
void px_front_stats(const struct px_front *f, struct px_stats *st);

/* ---- direct relays (direct.c): client socket <-> host socket ---- */

struct px_relay;
/* Relays client_fd and host_fd (both connected, non-blocking; taken) with
 * head (early client bytes, copied) sent to the host first. Bounded
 * buffers (f->lim.buffer_bytes each way), half-close and RST propagation,
 * IdleTimeout; bytes counted in f->stats. Returns 0, or -ENOMEM with
 * both descriptors closed. */
int px_relay_start(struct px_front *f, int client_fd, int host_fd, const uint8_t *head,
                   size_t head_len);
/* Closes every relay of f (front-end teardown). */
void px_relay_close_all(struct px_front *f);
/* Starts a non-blocking connect from the host to a:port. Returns the
 * socket (connected or in progress) or -errno. */
int px_direct_connect(const struct ns_addr *a, uint16_t port);
/* Maps a host connect()'s errno (SO_ERROR): ECONNREFUSED refused,
 * ENETUNREACH/EHOSTUNREACH unreachable, ETIMEDOUT timeout. */
enum px_err px_err_from_host_errno(int e);

/* ---- mesh connections to a local service (local_dial.c) ---- */

/* Connects a non-blocking socket to dst and splices it with the mesh
 * connection c under f's limits and counters: head (a PROXY v2 header, at
 * most PX_PROXYV2_MAX bytes; may be empty) goes to the local side first;
 * the connect counts in f->stats.pending and is bounded by the handshake
 * timeout; a failure resets c and counts by errno (refused, timeout,
 * unreachable). Takes c in every case. desc names it in the log. */
void px_local_dial(struct px_front *f, struct ns_tcp *c, const struct sockaddr *dst,
                   socklen_t dst_len, const uint8_t *head, size_t head_len,
                   const char *desc);
/* Aborts every local connect of f still in progress (both sides). */
void px_local_dial_abort_all(struct px_front *f);

/* ---- PROXY protocol v2 (proxyv2.c; haproxy's proxy-protocol.txt) ---- */

#define PX_PROXYV2_SIG_LEN 12
#define PX_PROXYV2_MAX     (16 + 36) /* header + TCP6 addresses */
/* Writes the v2 header for a proxied TCP connection from src:sport to
 * dst:dport (same family): signature, 0x21 (v2, PROXY), 0x11 (TCP4) or
 * 0x21 (TCP6), length, addresses and ports. Returns its length (28 or
 * 52), or 0 if outlen is too small or the families differ. */
size_t px_proxyv2_header(uint8_t *out, size_t outlen, const struct ns_addr *src,
                         uint16_t sport, const struct ns_addr *dst, uint16_t dport);

/* ---- SOCKS5 UDP ASSOCIATE (socks5_udp.c) ---- */

struct px_udp_assoc;
/* The associations of one SOCKS5 front-end. */
struct px_udp_assocs {
	struct px_udp_assoc *head;
	size_t n;
	unsigned idle_ms; /* 0: PX_UDP_ASSOC_IDLE_MS (tests set less) */
};
#define PX_UDP_ASSOC_IDLE_MS (5 * 60 * 1000)
/* Takes the control connection ctl once the UDP ASSOCIATE request is read.
 * pre[0..pre_len) are reply bytes still unsent (greeting/auth answers),
 * written ahead of ours. req is the request's DST (the client's expected
 * source; zero address or port: any). Binds a relay socket on ctl's local
 * address, answers 0x00 with it as BND, and relays until ctl closes, no
 * datagram moved for the idle time, or px_udp_assoc_close_all(). At the
 * limit (f->lim.max_connections) or on failure it answers 0x01 and closes
 * ctl. Counts into f->stats. */
void px_udp_assoc_start(struct px_front *f, struct px_udp_assocs *l, int ctl,
                        const struct px_target *req, const uint8_t *pre, size_t pre_len);
void px_udp_assoc_close_all(struct px_udp_assocs *l);

#endif
