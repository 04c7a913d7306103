/* Internal to proxy/: the listening socket, the client session shared by
 * the SOCKS5, HTTP and TCPClientTunnel front-ends, direct relays, local
 * dials and SOCKS5 UDP associations. The pure codecs are in
 * proxy/proto/proto.h. Only proxy/ and its tests include this. */
#ifndef MESH_PROXY_INTERNAL_H
#define MESH_PROXY_INTERNAL_H

#include "config/config.h"
#include "netstack/ns.h"
#include "proxy/proto/proto.h"
#include "proxy/proxy.h"

#include <event2/util.h> /* struct evutil_addrinfo is a macro for addrinfo */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cfg_listen;
struct event;
struct evdns_getaddrinfo_request;

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
	PX_E_DENIED, /* Direct may not connect there (SOCKS5 0x02, HTTP 403) */
	PX_E_BUSY,   /* over the memory budget (SOCKS5 0x01, HTTP 503) */
	PX_E_POLICY, /* the mesh policy does not allow it (SOCKS5 0x02, HTTP 403) */
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
	enum cfg_direct direct; /* dial non-mesh destinations from the host? */
	struct cfg_limits lim;  /* copied from the config, defaults filled in */
	struct px_listener *lst;
	struct px_sess *sessions;      /* live sessions, newest first */
	struct px_sess *sessions_tail; /* oldest (MaxConnections eviction) */
	size_t n_sessions;
	size_t n_lookups; /* env.lookup lookups of its sessions in flight */
	struct px_relay *relays; /* direct relays (direct.c), owned */
	size_t n_relays;
	/* Client connections the front-end holds itself between dials (HTTP
	 * forwarding, http_forward.c), counted against MaxConnections. */
	struct px_hfwd *forwards;
	size_t n_forwards;
	const char *kind; /* "socks5", "http", "tcp-client", for the log */
	struct px_local_dial *local_dials; /* local connects in progress */
};

/* Fills f: env copied, kind (a string literal), lim copied with zero
 * fields replaced by the CFG_DEFAULT_* values (a zero handshake timeout
 * takes env->handshake_timeout_ms first; lim NULL: all defaults), direct,
 * and a new f->acct. Returns 0 or -ENOMEM. f must be zeroed before. */
int px_front_init(struct px_front *f, const struct px_env *env, const char *kind,
                  const struct cfg_limits *lim, enum cfg_direct direct);
/* Frees f->lst, closes every session and direct relay, releases f->acct.
 * Does not free f itself. */
void px_front_fini(struct px_front *f);
/* Connections of f counted against MaxConnections: sessions in handshake,
 * resolution or dial, established splices, direct relays and HTTP
 * forwarding connections. */
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
	/* Optional, instead of the splice once the dial succeeded and the
	 * success reply (if any) is written: true if the front-end took the
	 * connection, that is s->fd, s->conn (mesh) or s->direct_fd (Direct)
	 * and the bytes s->buf[s->consumed..s->len), and set those fields to
	 * -1/NULL. s is freed right after. False: the splice goes ahead. */
	bool (*on_established)(struct px_sess *s);
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
	void *lookup; /* env.lookup's handle while dns_pending */
	bool dns_pending, dns_sync;
	int dns_sync_result;
	struct evutil_addrinfo *dns_sync_ai;
	struct px_race *race; /* the connection attempts in flight (race.c) */
	struct ns_tcp *conn;
	/* Direct: the connected host socket, for the relay. -1 when unused. */
	int direct_fd;
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
/* A client connection that a front-end held (HTTP forwarding between
 * requests) goes back to a session to reach a new destination: takes fd
 * (read_eof: the client has half-closed), copies early[0..n) into s->buf
 * (n at most ops->buf_size - ops->buf_reserve) and returns the session in
 * its handshake state without reading or a timer. The caller sets
 * s->target, s->consumed and s->stage, then calls px_sess_connect(). Not
 * counted as a new client nor checked against MaxConnections (it was
 * counted when accepted). NULL on failure (fd closed). */
struct px_sess *px_sess_resume(struct px_front *f, int fd, const struct px_sess_ops *ops,
                               const uint8_t *early, size_t n, bool read_eof);
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

/* ---- connection attempts over several addresses (race.c) ---- */

/* env.lookup ([Interface] DNS) lookups one front-end may have in flight:
 * one client cannot take every lookup of the node (DNSC_LOOKUPS_MAX). */
#define PX_LOOKUPS_MAX 256

#define PX_RACE_MAX      16  /* addresses tried for one destination */
#define PX_RACE_HOST_MAX 4   /* host connects in flight at once */
#define PX_RACE_MESH_MAX 4   /* netstack dials in flight at once */
#define PX_RACE_DELAY_MS 250 /* between attempts (RFC 8305's default) */

struct px_race;
/* The race's one answer: PX_OK with the winner (c through the netstack,
 * or fd, a connected host socket, non-blocking; both taken by the callee),
 * else the most meaningful failure. The race is over when this runs. */
typedef void (*px_race_done_fn)(void *ctx, enum px_err e, struct ns_tcp *c, int fd);
/* Connects to one of a[0..n) port port, RFC 8305 style: the families
 * alternating (from the host IPv6 first, through the mesh a[0]'s family
 * first), a new attempt every PX_RACE_DELAY_MS or as soon as
 * one fails, the first to connect wins. mesh: ns_tcp_dial() (the addresses
 * are routed), else from the host (the addresses are allowed by Direct's
 * policy; self_ok keeps a connection that ends on this host, for unit
 * tests). fn is never called from inside this call, and is called once
 * unless px_race_cancel() comes first. NULL if out of memory. */
struct px_race *px_race_start(struct event_base *base, const char *kind,
                              const struct ns_addr *a, size_t n, uint16_t port, bool mesh,
                              bool self_ok, px_race_done_fn fn, void *ctx);
/* Stops r before it answered (r is not to be used again): host sockets
 * closed, netstack dials cancelled (ns_tcp_dial_cancel). Returns the most
 * meaningful failure so far, PX_E_TIMEOUT if none. */
enum px_err px_race_cancel(struct px_race *r);
/* Puts a[0..n) in the order they are tried (the families alternating,
 * each in its given order; IPv6 first if v6_first, else a[0]'s family)
 * and returns n (other families dropped, at most PX_RACE_MAX). */
size_t px_race_order(struct ns_addr *a, size_t n, bool v6_first);
/* Of two failures, the one that tells the client more: refused, then
 * unreachable, no route, other errors, timed out, not allowed. */
enum px_err px_race_worst(enum px_err have, enum px_err e);
/* Copies at most max of in[0..n) to out; when there are more, the
 * families alternate (from in[0]'s), each in its order, so 16 A records
 * cannot push out every AAAA. Returns how many. */
size_t px_addrs_take(const struct ns_addr *in, size_t n, struct ns_addr *out, size_t max);
/* ::ffff:a.b.c.d becomes a.b.c.d (the netstack and the host stack both
 * reach it as IPv4, so routes and policy must see it as IPv4). */
void px_addr_unmap(struct ns_addr *a);

/* ---- HTTP proxy forwarding (http.c, http_forward.c) ---- */

/* s->stage of an HTTP session whose request is forwarded (not CONNECT). */
#define PX_HTTP_STAGE_FORWARD (-1)
/* Client bytes an HTTP session or forwarding connection reads ahead:
 * a request head and what follows it (a body, pipelined requests). */
#define PX_HTTP_READ_AHEAD (PX_HTTP_MAX_HEADER + 8192)
/* An idle keep-alive client connection (no request under way) is closed
 * after this long, or after IdleTimeout if that is shorter. */
#define PX_HTTP_KEEPALIVE_MS (60 * 1000)
/* A request under way: the origin has this long from the last byte of the
 * request to the response head (then 504), and while a body moves, no byte
 * may stay stuck (to the origin, from it to the client) for this long (then
 * the connection is reset). As nginx's proxy_read_timeout, Go's
 * ResponseHeaderTimeout. cfg_http.response_timeout_ms overrides it. */
#define PX_HTTP_RESPONSE_MS (60 * 1000)
/* The response timeout of the HTTP front-end f (ms, never 0). */
unsigned px_http_response_ms(const struct px_front *f);
/* Parses the request head p[0..len) for the HTTP front-end f and checks
 * its credentials. Returns 0 when more bytes are needed, 200 with *req
 * and *used set, or the status to answer with (400, 407, 431, 501, 505;
 * counted in f's stats). */
int px_http_check(struct px_front *f, const uint8_t *p, size_t len,
                  struct px_http_request *req, size_t *used);
/* The HTTP front-end's on_established for a forwarded request: takes the
 * client and the origin connection of s and forwards requests and
 * responses one after another (http_forward.c). Always true: on failure
 * (out of memory, or s has no front-end any more) both connections are
 * closed (by the caller when they are still in s) and counted. */
bool px_hfwd_take(struct px_sess *s);
/* At MaxConnections: closes the forwarding connection of f idle the
 * longest between requests (counted in err_limit); false if none is idle. */
bool px_hfwd_evict_idle(struct px_front *f);
/* Closes every forwarding connection of f (front-end teardown). */
void px_hfwd_close_all(struct px_front *f);

/* ---- Direct's destination policy (direct_policy.c) ---- */

/* Why Direct d may not connect from the host to a, or NULL if it may.
 * Never: unspecified, loopback, link-local, cloud metadata, multicast,
 * broadcast and reserved addresses, the prefixes in own[0..n_own), and
 * the same behind an IPv4-mapped, IPv4-compatible or NAT64 (64:ff9b::/96)
 * IPv6 address. env gives the mesh's own prefixes (env->own). With
 * CFG_DIRECT_PUBLIC also the private ranges. CFG_DIRECT_NO: never. */
const char *px_direct_refusal(enum cfg_direct d, const struct ns_addr *a,
                              const struct px_env *env);

/* True if a is in the mesh's own prefixes (env->own), or carries such an
 * IPv4 address in one of the embedded forms px_direct_refusal unwraps. */
bool px_in_own_prefixes(const struct ns_addr *a, const struct px_env *env);
/* True if a is one of this host's interface addresses (getifaddrs). */
bool px_host_address(const struct ns_addr *a);

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
/* The PROXY v2 header for a mesh connection from src:sport to our
 * dst:dport, with the source's identity TLVs (name, user, tags; those
 * env->identify knows) into out (PX_PROXYV2_MAX). Returns its length, 0
 * when it cannot be built. */
size_t px_proxyv2_for(const struct px_env *env, uint8_t *out, size_t cap,
                      const struct ns_addr *src, uint16_t sport, const struct ns_addr *dst,
                      uint16_t dport);
/* The addresses of a local target (a name's answers, in the resolver's
 * order). */
#define PX_LOCAL_ADDRS 4
struct px_local_addrs {
	struct sockaddr_storage ss[PX_LOCAL_ADDRS];
	socklen_t len[PX_LOCAL_ADDRS];
	size_t n;
};
/* px_local_dial() over several addresses: each is tried in turn, the next
 * as soon as one fails, all within the handshake timeout; when all fail
 * the most telling failure is counted. */
void px_local_dial_addrs(struct px_front *f, struct ns_tcp *c,
                         const struct px_local_addrs *dst, const uint8_t *head,
                         size_t head_len, const char *desc);
/* Aborts every local connect of f still in progress (both sides). */
void px_local_dial_abort_all(struct px_front *f);

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
