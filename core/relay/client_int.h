/* Private to core/relay/client*.c: the relay client's state. */
#ifndef MESH_RELAY_CLIENT_INT_H
#define MESH_RELAY_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/relay/client.h"
#include "core/relay/session.h"

struct bufferevent;
struct evbuffer;
struct event;
struct ssl_ctx_st;

#define RC_STABLE_MS        60000u         /* a connection this long resets the backoff */
#define RC_REDIAL_SPREAD_MS 2000u          /* relay_client_redial spreads a fleet */
#define RC_KEEPALIVE_DFLT_S 30u            /* when SERVER_INFO says 0 */
#define RC_OUT_LOW          (128u * 1024u) /* sealed output kept at most about this */
#define RC_CHUNK            (32u * 1024u)  /* output space taken from libevent at once */
#define RC_RESTART_RETRY_MS 250u  /* the short schedule after RESTARTING starts */
#define RC_RESTART_STEP_MAX 4000u /* ... and doubles up to this */
#define RC_NOT_ADMITTED_QUICK 3u  /* "not a node" refusals on the normal backoff */
#define RC_KEEPALIVE_MIN_S  5u    /* the relay's keepalive_s, clamped */
#define RC_KEEPALIVE_MAX_S  60u
#define RC_HEALTH_LOG_MS    60000u         /* HEALTH changes logged at most this often */
#define RC_RESTART_IN_MAX   60000u         /* bounds on what a relay may ask */
#define RC_RESTART_FOR_MAX  300000u

enum rc_hs {
	RC_HS_101 = 1, /* upgrade sent, waiting for 101 */
	RC_HS_KEY,     /* waiting for SERVER_KEY */
	RC_HS_INFO,    /* CLIENT_INFO sent, waiting for SERVER_INFO */
};

struct relay_client {
	/* configuration (copied) */
	struct event_base *base;
	struct evdns_base *dns;
	char host[256];
	uint16_t port;
	bool tls;
	struct sockaddr_storage addr; /* host as an IP literal, else addr_len 0 */
	socklen_t addr_len;
	uint8_t relay_key[32], node_priv[32], node_pub[32];
	uint32_t backoff_min_ms, backoff_max_ms, connect_timeout_ms;
	uint32_t queue_bytes, out_low;
	struct relay_client_callbacks cb;
	void *ctx;
	struct ssl_ctx_st *ssl_ctx;

	/* the connection */
	enum relay_client_state state;
	char detail[128];
	enum rc_hs hs;
	struct bufferevent *bev;
	uint64_t gen;            /* bumped whenever bev is closed: a callback that closed
	                          * or replaced the connection is noticed */
	uint8_t challenge[32];   /* the relay's, from SERVER_KEY */
	uint8_t client_chal[32]; /* ours, from CLIENT_INFO */
	uint8_t eph_priv[32];    /* until SERVER_INFO */
	struct relay_session sess;
	bool sealed;
	/* Packets waiting behind the socket's output, plain (unsealed: a frame
	 * is sealed when it enters the stream, so dropping one leaves no gap
	 * in the count). pend_bytes counts them sealed. */
	struct evbuffer *pending;
	size_t pend_n, pend_bytes;
	/* Free room after the last frame written into the output / the
	 * queue, as libevent last reported it: while a frame fits, it is
	 * reserved alone (no allocation); else RC_CHUNK at once, so a chain
	 * is allocated per ~20 packets, not per packet. A stale value costs
	 * at most one small chain. */
	size_t out_room, pend_room;

	/* timers */
	struct event *ev_timer; /* BACKOFF: retry; CONNECTING/HANDSHAKE: timeout */
	struct event *ev_tick;  /* CONNECTED: keepalive and silence watchdog */
	uint32_t keepalive_ms;
	uint64_t last_rx_ms, last_ping_ms, ping_sent_us;
	uint8_t ping_data[RELAY_PING_LEN];
	bool ping_out;
	uint64_t session_start_ms, retry_at_ms;
	uint32_t backoff_cur_ms;
	unsigned not_admitted; /* refusals in a row for our key (reset on admission) */
	uint64_t restart_at_ms, restart_until_ms; /* after RESTARTING */
	uint32_t restart_step_ms;                 /* its retry interval, growing */
	uint64_t health_log_ms, health_unlogged;
	bool attempted;
	bool notify; /* relay_client_reconnect: report BACKOFF from the loop */

	/* status */
	uint32_t rtt_us;
	int64_t connected_since;
	uint64_t connects, reconnects;
	uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes;
	uint64_t tx_drop_notconn, tx_drop_queue, tx_drop_ctl;
	uint64_t rx_drop_bad, rx_drop_oversize, rx_drop_seal, rx_skipped;

	/* re-entrancy: relay_client_free from inside a callback */
	int depth;
	bool dead;
};

/* client.c */
uint64_t rc_now_us(void);
/* Ends the connection and schedules a retry (BACKOFF) with a readable
 * reason; slow: at the slow end of the backoff. */
void rc_fail(struct relay_client *c, bool slow, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rc_set_state(struct relay_client *c, enum relay_client_state st, const char *detail);
/* Admitted: the watchdog and keepalive start. */
void rc_session_up(struct relay_client *c, uint16_t keepalive_s);
/* RESTARTING from the relay. */
void rc_plan_restart(struct relay_client *c, uint32_t in_ms, uint32_t for_ms);

/* client_io.c */
void rc_send_upgrade(struct relay_client *c);
/* Reads what the input holds: the upgrade answer, then whole frames. */
void rc_on_read(struct relay_client *c);
/* Moves queued packets into the socket's output while it is short. */
void rc_pump(struct relay_client *c);
/* Seals and writes one small control frame (PING, PONG) ahead of the
 * queued packets; false when it was not written (over queue_bytes: counted
 * in tx_drop_ctl; or the connection failed). */
bool rc_write_ctl(struct relay_client *c, const uint8_t *frame, size_t len);
/* Empties the packet queue (counted as not sent). */
void rc_pending_clear(struct relay_client *c);

#endif
