/* mesh-relay: relays WireGuard packets between nodes by node key over TCP
 * (or TLS), for nodes that cannot reach each other directly; it can read
 * none of them. One libevent loop.
 *
 * Per connection: HTTP/1.1 upgrade (core/relay/http.h), SERVER_KEY with a
 * fresh challenge, CLIENT_INFO (proves the client's key), admission (the
 * key must be a node of the mesh, from mesh-control; a sibling relay of the
 * region for mesh connections), SERVER_INFO or REFUSED, then packets.
 *
 * Bounds: frames up to RELAY_FRAME_MAX (a longer length closes the
 * connection before its body is read); each connection's input buffer is
 * capped at one frame; each client's outgoing queue at queue_packets frames
 * and queue_bytes (the oldest dropped when full, counted); a client whose
 * socket accepts nothing for write_timeout_ms is disconnected (counted).
 * max_clients connections in all, of which at most max_pending (and
 * max_pending_ip from one address) not yet admitted; a connection not
 * admitted within handshake_ms of its accept is closed, however it trickles
 * (more are refused). The relay PINGs every connection it admitted each
 * keepalive_s and closes one that sent no frame for 2.5 x keepalive_s. */
#ifndef MESH_RELAY_H
#define MESH_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct rly_server;
struct ssl_ctx_st;

/* SERVER_INFO carries the queue length in 16 bits, and each admitted
 * client's ring is allocated whole. */
#define RLY_QUEUE_PACKETS_MAX 4096

/* A node client that a sibling relay also announces (PEER_PRESENT) is
 * PINGed and must answer (any frame) within this, or it is closed: its
 * connection may have died without a FIN while the node moved. */
#define RLY_SUSPECT_MS 3000u

struct rly_config {
	struct event_base *base;
	uint8_t priv[32], pub[32]; /* the relay key */
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct ssl_ctx_st *tls;    /* NULL: plain TCP; borrowed */
	uint32_t max_clients;      /* 0: 10000 */
	uint32_t max_pending;      /* not yet admitted, in all; 0: 1024 */
	uint32_t max_pending_ip;   /* not yet admitted, per source IP (IPv6:
	                            * per /64); 0: 64 */
	uint32_t queue_packets;    /* 0: 64; at most RLY_QUEUE_PACKETS_MAX */
	uint32_t queue_bytes;      /* 0: 512 KiB */
	uint64_t queue_budget;     /* every packet queue together; 0: 256 MiB */
	uint32_t write_timeout_ms; /* 0: 5000 */
	uint32_t handshake_ms;     /* 0: 10000 */
	uint32_t keepalive_s;      /* 0: 60 */
	const char *region;        /* this relay's region (for the mesh) */
};

struct rly_stats {
	uint64_t clients, clients_total, mesh_in, mesh_links_up;
	uint64_t refused_not_admitted, refused_bad_auth, refused_full, refused_version,
	    refused_not_ready, refused_http, handshake_timeouts, removed_cut,
	    refused_pending;
	uint64_t packets_relayed, bytes_relayed;
	uint64_t packets_forwarded, bytes_forwarded; /* to sibling relays */
	uint64_t packets_from_mesh, bytes_from_mesh; /* from sibling relays */
	uint64_t drop_unknown_dest, drop_queue_full, drop_write_timeout, drop_bad_frame,
	    drop_oversize, drop_nomem,
	    drop_bad_seal,     /* a sealed frame that did not open: connection closed */
	    drop_budget;       /* a packet that would take the queues past queue_budget */
	uint64_t queued_bytes; /* in every packet queue now */
	uint64_t dup_clients, pings;
	/* Closed as dead: silent for 2.5 x keepalive_s (node clients and
	 * sibling relays connected here), or a node client that did not answer
	 * the PING sent when a sibling relay announced its key. */
	uint64_t clients_dead, clients_stale;
	uint64_t accept_errors; /* accept() failed (out of descriptors...): paused 1 s */
	uint64_t stun_requests, stun_responses, stun_bad;
	uint64_t stun_limited; /* not answered: over the per-prefix or global rate */
	uint64_t admitted_keys;
	uint64_t mesh_routes;  /* keys reachable through a sibling relay */
	uint64_t mesh_resyncs; /* a sibling's announcements overflowed: full set */
	bool ready; /* has an admission list from mesh-control */
};

struct rly_server *rly_server_new(const struct rly_config *cfg, char *err, size_t errlen);
void rly_server_free(struct rly_server *s);
void rly_server_local(const struct rly_server *s, struct sockaddr_storage *ss,
                      socklen_t *len);
void rly_server_get_stats(const struct rly_server *s, struct rly_stats *st);

/* The admitted node keys (replaces the set; n may be 0). Connected clients
 * whose key is no longer admitted are disconnected at once. */
int rly_server_set_admitted(struct rly_server *s, const uint8_t (*keys)[32], size_t n);

/* A sibling relay of this relay's region: the relay keeps a connection to
 * each (host:port, tls, its public key) to forward packets for clients
 * connected there, and admits each as a mesh peer. */
struct rly_sibling {
	char host[256];
	uint16_t port;
	bool tls;
	uint8_t key[32];
};
/* Replaces the sibling set (links to siblings no longer listed are closed;
 * new ones are dialled). */
int rly_server_set_siblings(struct rly_server *s, const struct rly_sibling *sib,
                            size_t n);

/* Tells every client the relay is about to restart (RESTARTING: reconnect
 * in reconnect_ms, keep trying for try_ms), so nodes come back on their
 * own. The caller stops the loop a moment later, once it is written. */
void rly_server_announce_restart(struct rly_server *s, uint32_t reconnect_ms,
                                 uint32_t try_ms);

/* The relay's health for its clients: "" when healthy, else a sentence
 * ("mesh-control unreachable: the admission list may be stale"). Sent as
 * HEALTH to every client when it changes, and to a new client when not "". */
void rly_server_set_health(struct rly_server *s, const char *text);

/* A STUN server on a UDP address. */
int rly_server_stun_listen(struct rly_server *s, const struct sockaddr *sa, socklen_t len,
                           char *err, size_t errlen);

#endif
