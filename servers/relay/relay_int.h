/* Private to the files of servers/relay: the relay server's state. */
#ifndef MESH_RELAY_INT_H
#define MESH_RELAY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/relay/frame.h"
#include "core/relay/session.h"
#include "servers/relay/keymap.h"
#include "servers/relay/queue.h"
#include "servers/relay/relay.h"

struct bufferevent;
struct evconnlistener;
struct event;
struct evdns_base;

#define RLY_IP_SLOTS 4096
/* Output waiting in a socket's buffer beyond the queue: frames move from
 * the queue into it while it holds less than this. */
#define RLY_OUT_LOW (64u * 1024u)
/* A sibling's control lane, and the packet queue of a link (it carries
 * FORWARD for a whole relay, not one node). */
#define RLY_CTL_MAX            (1024u * 1024u)
#define RLY_LINK_QUEUE_PACKETS 1024u
#define RLY_LINK_QUEUE_BYTES   (4u * 1024u * 1024u)

enum rly_state {
	RC_HTTP = 1,   /* server side: reading the upgrade request */
	RC_WAIT_INFO,  /* server side: SERVER_KEY sent, waiting for CLIENT_INFO */
	RC_ACTIVE,     /* admitted: packets flow */
	RC_CONNECTING, /* link: TCP/TLS connect in progress */
	RC_WAIT_101,   /* link: upgrade request sent */
	RC_WAIT_KEY,   /* link: waiting for SERVER_KEY */
	RC_WAIT_SINFO, /* link: CLIENT_INFO sent, waiting for SERVER_INFO */
	RC_CLOSING,    /* flushing a last frame, then freed */
};

/* One TCP connection: a client (or sibling relay) connected to us, or a
 * link we dialled to a sibling relay (outbound). */
struct rly_conn {
	struct rly_conn *prev, *next;
	struct rly_server *s;
	struct bufferevent *bev;
	enum rly_state state;
	bool outbound; /* a link to a sibling */
	bool mesh;     /* inbound: a sibling relay (CLIENT_INFO flag) */
	bool dead;
	uint8_t key[32];       /* the peer's key (client key, or sibling key) */
	uint8_t challenge[32]; /* ours: sent in SERVER_KEY / checked in SERVER_INFO */
	uint8_t peer_chal[32]; /* server side: the client's, proven in SERVER_INFO;
	                        * link: the sibling's, from SERVER_KEY */
	uint8_t eph_priv[32];  /* link: our ephemeral key until SERVER_INFO */
	uint8_t eph_pub[32];   /* server side: ours, sent in SERVER_INFO */
	struct relay_session sess;
	bool sealed; /* frames both ways go through sess */
	/* Inbound mesh: PEER_PRESENT/PEER_GONE wait here, ahead of the packet
	 * queue and never dropped one by one: past RLY_CTL_MAX the lane is
	 * emptied and replaced by PEERS_RESET and the full set. */
	struct evbuffer *ctl;
	struct rly_queue q;
	uint64_t closing_ms;   /* RC_CLOSING since */
	uint64_t ka_ms;        /* RC_ACTIVE: last KEEPALIVE/PING sent (or admission) */
	uint64_t rx_ms;        /* inbound RC_ACTIVE: last frame from the peer (or
	                        * admission) */
	uint64_t suspect_ms;   /* a node client a sibling also announces: closed
	                        * at this time unless a frame comes first; 0: none */
	uint64_t deadline_ms;  /* handshake must be done by then; 0: done */
	bool pending;          /* counted in s->n_pending / s->pending_ip */
	uint16_t ip_slot;      /* its source address's slot in pending_ip */
	struct rly_link *link; /* outbound: the sibling it serves */
	char peer[64];
};

/* A sibling relay we keep a connection to (redialled with backoff). */
struct rly_link {
	struct rly_link *next;
	struct rly_server *s;
	struct rly_sibling sib;
	struct rly_conn *c; /* NULL while waiting to redial */
	struct event *retry;
	uint32_t backoff_ms;
};

/* The tick runs every second; one later than this after the last means
 * the process stalled (tick_cb judges no one dead then). */
#define RLY_TICK_STALL_MS 1500u

struct rly_server {
	struct rly_config cfg;
	struct evconnlistener *lis;
	struct event *tick, *reap, *stun_ev;
	uint64_t tick_ms; /* when the last tick ran (or the server started) */
	struct event *relisten; /* re-enables the listener after an error */
	struct evdns_base *dns; /* resolves siblings' names (made on use) */
	int stun_fd;
	struct rly_conn *conns;     /* every connection and link */
	size_t n_live;              /* conns not dead */
	size_t n_pending;           /* accepted, not yet admitted */
	uint64_t queued;            /* bytes in every packet queue */
	/* Not-yet-admitted connections per source address, counted in
	 * RLY_IP_SLOTS slots by a keyed hash of the address (a collision can
	 * only make the cap stricter, and an outsider cannot aim one). */
	uint16_t pending_ip[RLY_IP_SLOTS];
	uint8_t ip_hash_key[16];
	/* STUN answers per source prefix (IPv4 /24, IPv6 /48), token buckets
	 * in slots by the same keyed hash, and one for the whole server. */
	struct rly_bucket {
		uint32_t tokens_milli; /* thousandths of an answer */
		uint64_t last_ms;
	} stun_prefix[RLY_IP_SLOTS], stun_all;
	struct rly_keymap admitted; /* node key -> (void *)1 */
	bool ready;
	struct rly_keymap clients; /* node key -> conn (RC_ACTIVE, !mesh) */
	struct rly_keymap routes;  /* node key -> outbound link that has it */
	struct rly_sibling *sibs;
	size_t n_sibs;
	struct rly_link *links;
	char health[RELAY_TEXT_MAX + 1];
	struct rly_stats st;
};

uint64_t rly_now_ms(void);
/* A few lines a second about peers' bad input or refusals (the counters
 * count all): true when this one may be logged. */
bool rly_log_ok(void);

/* server.c and conn.c */
void rly_conn_close(struct rly_conn *c, const char *why);
/* Queues one frame (hdr || body) for c; counts queue drops. */
int rly_conn_send(struct rly_conn *c, const uint8_t *hdr, size_t hdr_len,
                  const uint8_t *body, size_t body_len);
/* A PEER_PRESENT/PEER_GONE (or PEERS_RESET) for an inbound mesh peer:
 * through its control lane (see struct rly_conn). */
void rly_conn_send_ctl(struct rly_conn *c, const uint8_t *frame, size_t len);
/* Every key connected here, as PEER_PRESENT, into c's control lane. */
void rly_conn_full_set(struct rly_conn *c);
/* Gives c (a link or a sibling) the larger queue of a link. */
int rly_conn_link_queue(struct rly_conn *c);
/* Moves queued frames into the socket's output while it is short. */
void rly_conn_pump(struct rly_conn *c);
struct rly_conn *rly_conn_alloc(struct rly_server *s, struct bufferevent *bev);
/* Reads whole frames from c's input and calls fn for each; false when c
 * was closed. */
bool rly_conn_read_frames(struct rly_conn *c,
                          bool (*fn)(struct rly_conn *c, const struct relay_frame *f));

/* mesh.c: links to sibling relays */
void rly_link_closed(struct rly_conn *c); /* schedule a redial */
void rly_link_on_read(struct rly_conn *c);
void rly_links_free(struct rly_server *s);
/* A sibling announced key: a local client with that key may be a dead
 * connection; PING it and close it unless it answers within RLY_SUSPECT_MS
 * (packets for it go to both meanwhile). */
void rly_client_suspect(struct rly_server *s, const uint8_t *key);
/* Tell every inbound mesh peer that key arrived / left. */
void rly_mesh_announce(struct rly_server *s, const uint8_t *key, bool present);
bool rly_is_sibling(const struct rly_server *s, const uint8_t *key);

/* stun.c */
void rly_stun_read_cb(int fd, short ev, void *arg);

#endif
