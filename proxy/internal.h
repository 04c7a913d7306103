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
                  const struct cfg_limits *lim, enum cfg_direct direct);
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
	/* Direct: a non-blocking connect from the host in progress
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

/* ---- Direct's destination policy (direct_policy.c) ---- */

/* Why Direct d may not connect from the host to a, or NULL if it may.
 * Never: unspecified, loopback, link-local, cloud metadata, multicast,
 * broadcast and reserved addresses, the prefixes in own[0..n_own), and
 * the same behind an IPv4-mapped, IPv4-compatible or NAT64 (64:ff9b::/96)
 * IPv6 address. env gives the mesh's own prefixes (env->own). With
 * CFG_DIRECT_PUBLIC also the private ranges. CFG_DIRECT_NO: never. */
const char *px_direct_refusal(enum cfg_direct d, const struct ns_addr *a,
                              const struct px_env *env);

/* True if a is in the mesh's own prefixes (env->own). */
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
