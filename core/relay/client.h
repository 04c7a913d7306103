/* The node's relay client: one connection to one mesh-relay, kept up on a
 * libevent loop, that sends and receives WireGuard packets by node key.
 *
 * A connection: name lookup through evdns (never a blocking getaddrinfo),
 * TCP to the first address found (libevent puts IPv4 first and does not
 * try the others: a dual-stack relay is not reached over IPv6 while its A
 * record exists; review M3, left for now), optionally TLS through
 * libevent's OpenSSL bufferevents, the HTTP/1.1 upgrade (http.h),
 * SERVER_KEY, CLIENT_INFO, SERVER_INFO (frame.h), then frames sealed with
 * the session keys (session.h).
 *
 * Authentication is the pinned relay key from the network map, not the TLS
 * certificate: SERVER_KEY must carry the pinned key and SERVER_INFO's proof
 * must open with it, so a relay that does not hold the key's private half
 * cannot be talked to, and an on-path proxy cannot read or alter frames
 * (session.h). The certificate is therefore not verified (a relay may use a
 * self-signed one); TLS only helps the connection through middleboxes. SNI
 * carries the host name (not for an IP literal, which SNI does not allow).
 *
 * States: CONNECTING -> HANDSHAKE -> CONNECTED; any failure -> BACKOFF
 * (exponential, jittered to 0.5..1.0 of the wait, or 0..1.0 for the first
 * wait after a connection was up, so the clients of a relay that died do
 * not return together; a connection that stayed up 60 s resets it) ->
 * CONNECTING. A node the relay refuses as not admitted (or for its version
 * or key) waits at the slow end of the backoff: its admission may arrive
 * later. RESTARTING from the relay: the client reconnects after
 * reconnect_in_ms (plus jitter) and keeps trying for try_for_ms on a short
 * schedule (250 ms doubling to 4 s, each wait jittered over 0..1.0 of it)
 * before falling back to the backoff; a REFUSED (e.g. "not ready") ends
 * that schedule at once: the normal backoff follows.
 *
 * Keepalive: a PING every keepalive_s the relay announced (30 s if it says
 * 0; clamped to 5..60 s whatever it says), the round trip measured from its
 * PONG; no frame that opens for 2.5 times that, or a PING unanswered that
 * long, ends the connection (then BACKOFF). Bytes that do not complete a
 * frame do not count. The relay's PING is answered while the output is
 * within queue_bytes (else the PONG is dropped, counted). HEALTH text from
 * the relay goes into the status detail (logged at most once a minute, no
 * callback).
 *
 * Bounds: before SERVER_INFO only handshake frames of at most
 * RELAY_HANDSHAKE_BODY_MAX bytes are taken; a length over
 * RELAY_FRAME_BODY_MAX closes the connection as soon as the header is in; a
 * frame that does not open or decode closes it; frames of unknown type are
 * skipped. Each is counted. Output: bytes waiting (in the socket's output
 * buffer, sealed, plus packets queued unsealed behind it) stay within
 * queue_bytes; a packet that does not fit drops the oldest queued packets
 * (counted), as the relay does.
 *
 * Callbacks come only from the loop, never from inside a relay_client_*
 * call; the client may be freed (or reconnected) from inside any callback.
 * Single-threaded: call everything from the loop's thread. */
#ifndef MESH_RELAY_CLIENT_H
#define MESH_RELAY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/relay/frame.h" /* RELAY_PACKET_MAX */

struct event_base;
struct evdns_base;
struct relay_client;

enum relay_client_state {
	RELAY_CLIENT_CONNECTING = 1, /* name lookup / TCP / TLS connect */
	RELAY_CLIENT_HANDSHAKE,      /* HTTP upgrade, SERVER_KEY .. SERVER_INFO */
	RELAY_CLIENT_CONNECTED,      /* admitted; packets flow */
	RELAY_CLIENT_BACKOFF,        /* waiting to reconnect */
};

/* "connecting", "handshake", "connected", "backoff". */
const char *relay_client_state_name(enum relay_client_state s);

struct relay_client_callbacks {
	/* A RECV_PACKET: data from the node whose key is src_key (32 bytes).
	 * Both pointers are valid during the call only. */
	void (*on_packet)(void *ctx, struct relay_client *c, const uint8_t *src_key,
	                  const uint8_t *data, size_t len);
	/* Every state change, with a readable detail ("cannot connect to
	 * 198.18.0.1:443: Connection refused; retrying in 412 ms", "refused:
	 * not a node of this mesh ...", "relay key mismatch ...", "relay
	 * restarting; reconnecting in 2000 ms", ...). */
	void (*on_state)(void *ctx, struct relay_client *c, enum relay_client_state st,
	                 const char *detail);
	/* PEER_GONE for a key we sent to (optional, may be NULL): reason is
	 * RELAY_GONE_*. */
	void (*on_peer_gone)(void *ctx, struct relay_client *c, const uint8_t *key,
	                     uint8_t reason);
};

struct relay_client_config {
	struct event_base *base;
	struct evdns_base *dns; /* NULL: host must be an IP literal */
	const char *host;       /* name or IP literal (copied) */
	uint16_t port;
	bool tls;
	/* Pinned (from the network map): SERVER_KEY must carry it and
	 * SERVER_INFO's proof must open with it. */
	uint8_t relay_key[32];
	uint8_t node_priv[32], node_pub[32]; /* the node's X25519 key pair (copied) */
	uint32_t backoff_min_ms;             /* 0: 500 */
	uint32_t backoff_max_ms;             /* 0: 30000 */
	uint32_t connect_timeout_ms; /* 0: 10000: TCP + TLS + upgrade + handshake */
	/* 0: 1 MiB. Bytes waiting to be sent (sealed in the socket's output
	 * buffer plus queued packets) beyond which the oldest queued packets
	 * are dropped (counted). At least RELAY_CLIENT_QUEUE_MIN. */
	uint32_t queue_bytes;
	const struct relay_client_callbacks *cb; /* copied */
	void *ctx;
};

#define RELAY_CLIENT_QUEUE_MIN (2u * RELAY_FRAME_MAX)

/* A client that starts connecting from the loop (no callback before the
 * loop runs). NULL with a readable err on a bad configuration. */
struct relay_client *relay_client_new(const struct relay_client_config *cfg, char *err,
                                      size_t errlen);
/* Accepts NULL; safe from inside a callback (the client stops at once and
 * is freed when the callback returns); wipes the keys. */
void relay_client_free(struct relay_client *c);

/* Sends one packet (1..RELAY_PACKET_MAX bytes) to the node with dst_key.
 *   0          written, or queued behind earlier packets; to make room
 *              the oldest queued packets may have been dropped (counted
 *              in tx_drop_queue)
 *   -ENOTCONN  not connected: dropped (tx_drop_notconn)
 *   -EMSGSIZE  len 0 or over RELAY_PACKET_MAX
 *   -ENOBUFS   this packet was dropped: it does not fit even with every
 *              queued packet dropped (the socket's output holds the rest;
 *              tx_drop_queue)
 * Never blocks, never calls a callback. */
int relay_client_send(struct relay_client *c, const uint8_t *dst_key, const uint8_t *data,
                      size_t len);

struct relay_client_status {
	enum relay_client_state state;
	char detail[128];
	uint32_t rtt_us;         /* last PING/PONG round trip, 0: none yet */
	int64_t connected_since; /* unix s, 0 when not connected */
	uint64_t connects;       /* times admitted */
	uint64_t reconnects;     /* connection attempts after the first */
	uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes;
	uint64_t tx_drop_notconn, tx_drop_queue;
	uint64_t tx_drop_ctl;      /* PING/PONG not sent: the output was full */
	uint32_t keepalive_ms;     /* the PING interval in use (clamped) */
	uint64_t rx_drop_bad;      /* bad input that closed the connection (all below) */
	uint64_t rx_drop_oversize; /* a length over the limit (or over the handshake's) */
	uint64_t rx_drop_seal;     /* a frame that did not open (altered, injected) */
	uint64_t rx_skipped;       /* frames of unknown (or unexpected) type, skipped */
	uint64_t queued_bytes;     /* waiting to be sent now (at most queue_bytes) */
	uint32_t next_attempt_ms;  /* in BACKOFF */
};
void relay_client_get_status(const struct relay_client *c,
                             struct relay_client_status *st);
bool relay_client_connected(const struct relay_client *c);
/* Drops the connection now and reconnects from the loop with the backoff
 * reset (on_state then reports BACKOFF "reconnect requested" and
 * CONNECTING, from the loop). */
void relay_client_reconnect(struct relay_client *c);
/* Our network changed under the connection: drops it and redials after a
 * random 0-2 s, or the wait a failure would have if that is longer (the
 * backoff is not reset: a flapping address redials no faster than a
 * failing relay). on_state reports BACKOFF from the loop. */
void relay_client_redial(struct relay_client *c);
/* The local address of the connection (getsockname): 0, or -ENOTCONN. */
int relay_client_local_addr(const struct relay_client *c, struct sockaddr_storage *ss);

#endif
