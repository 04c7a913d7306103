/* A WireGuard peer: its handshake, its sessions (current, previous, next, as
 * the Linux module rotates them), its endpoint, the packets waiting for a
 * session and its timers. Internal to core/wg; other modules use
 * core/wg/device.h. */
#ifndef MESH_WG_PEER_H
#define MESH_WG_PEER_H

#include "core/wg/cookie.h"
#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/noise.h"
#include "core/wg/peerlookup.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

struct event;

/* A keypair and its entry in the device's index table. */
struct wg_session {
	struct wg_keypair kp;
	struct wg_index_entry entry;
};

struct wg_staged {
	uint8_t *data;
	size_t len;
};

struct wg_peer {
	struct wg_device *dev;
	struct wg_pubkey_entry pubkey_entry;

	struct wg_handshake hs;
	struct wg_index_entry hs_entry; /* our index for the handshake in flight */
	struct wg_cookie_maker cookie;

	/* current: sending and receiving; previous: receiving only, for the
	 * packets still in flight; next: the responder's new session, not yet
	 * confirmed by the initiator's first data packet. */
	struct wg_session *current, *previous, *next;

	struct sockaddr_storage endpoint; /* ss_family 0: none */
	/* Our address the endpoint's last authenticated datagram arrived on;
	 * we send from it (family 0: the kernel picks). Cleared with a new
	 * configured endpoint and when a handshake goes unanswered. */
	struct wg_src src;

	/* Packets waiting for a session (a ring of WG_MAX_STAGED_PACKETS,
	 * oldest first). Allocated by the first wg_peer_stage() and freed
	 * once empty again (wg_peer_staged_shrink), so that an idle peer does
	 * not carry 2 KiB of empty slots. */
	struct wg_staged *staged;
	size_t staged_head, staged_count;

	/* Made on first use (an idle peer has none), except the persistent
	 * keepalive's, which always exists. */
	struct event *timer_retransmit_handshake;
	struct event *timer_send_keepalive;
	struct event *timer_new_handshake;
	struct event *timer_zero_key_material;
	struct event *timer_persistent_keepalive;
	unsigned handshake_attempts; /* retries since the last new reason */
	/* Initiations sent over the peer's life; the quick retries count
	 * against it, so new data does not start them again (timers.c). One
	 * due with no endpoint to send to is not counted: it sets
	 * handshake_unsent, and the endpoint's arrival sends one at once. */
	unsigned initiations;
	bool handshake_unsent;
	bool need_another_keepalive;
	bool sent_lastminute_handshake;
	uint64_t last_sent_handshake_ns; /* monotonic */
	int64_t walltime_last_handshake; /* unix seconds, 0 = never */
	uint64_t last_handshake_ns;      /* wg_now_ns(), 0 = never */
	uint16_t persistent_keepalive;

	uint64_t rx_bytes, tx_bytes;
	uint64_t handshakes_sent, handshakes_completed;
	size_t n_allowed_ips;

	/* Paths (path.c): set by the owner through wg_device_set_peer_path. */
	bool relay_ok;
	uint64_t direct_trust_until_ns; /* the endpoint alone until then */
	uint64_t untrusted_note_ns;     /* last untrusted hook call */
	uint64_t last_direct_rx_ns, last_relay_rx_ns;
	uint64_t relay_tx_bytes, relay_rx_bytes;
	/* An owner's socket for direct datagrams to side_to (path.c,
	 * wg_device_set_peer_sock); has_side: set. */
	bool has_side;
	int side_fd;
	struct sockaddr_storage side_to;
};

/* path.c: true when the peer's datagrams go through the relay now. */
bool wg_peer_via_relay(const struct wg_peer *p, uint64_t now_ns);
/* Somewhere to send to: an endpoint, or a relay. */
bool wg_peer_reachable(const struct wg_peer *p);
/* Sends one datagram to the peer by its path (send.c's only way out). */
int wg_peer_transmit(struct wg_peer *p, const uint8_t *buf, size_t len);
/* After an authenticated datagram: the path it came by (receive.c). */
void wg_peer_note_rx(struct wg_peer *p, size_t len);

/* Creates the peer (handshake, cookie maker, timers). Does not insert it in
 * any table. Returns NULL with *err set (-EINVAL, -ENOMEM). */
struct wg_peer *wg_peer_new(struct wg_device *d, const struct wg_peer_config *cfg,
                            int *err);
/* Stops the timers, wipes and frees sessions, handshake and staged packets. */
void wg_peer_free(struct wg_peer *p);

static inline struct wg_peer *wg_peer_from_handshake(struct wg_handshake *hs)
{
	return (struct wg_peer *)((char *)hs - offsetof(struct wg_peer, hs));
}

/* Session rotation. The new session replaces current (we initiated) or
 * becomes next (we responded). */
void wg_peer_add_session(struct wg_peer *p, struct wg_session *s);
/* Called for every packet that authenticated under s: promotes next to
 * current. Returns true if it did (the handshake is now complete). */
bool wg_peer_received_with_session(struct wg_peer *p, struct wg_session *s);
/* Derives the session of the completed handshake, gives it the handshake's
 * index and rotates it in. Returns false on failure (handshake cleared). */
bool wg_peer_begin_session(struct wg_peer *p, uint64_t now_ns);
/* Wipes and frees every session and the handshake in flight. */
void wg_peer_clear_sessions(struct wg_peer *p);
/* Removes the handshake's index from the device table and clears it. */
void wg_peer_clear_handshake(struct wg_peer *p);

/* Sets the endpoint and forgets the sticky source (receive.c sets it
 * after this from the datagram that moved the endpoint). */
void wg_peer_set_endpoint(struct wg_peer *p, const struct sockaddr *sa);

/* Staged packets. When the ring is full the oldest packet gives way
 * (counted in tx_drop_queue), as in the kernel: the newest carry the
 * freshest TCP state. stage returns 0 or -ENOMEM. */
int wg_peer_stage(struct wg_peer *p, const uint8_t *pkt, size_t len);
void wg_peer_purge_staged(struct wg_peer *p);
/* Frees the ring when nothing is staged (cheap to call per packet). */
static inline void wg_peer_staged_shrink(struct wg_peer *p)
{
	if (p->staged && !p->staged_count) {
		free(p->staged);
		p->staged = NULL;
		p->staged_head = 0;
	}
}

#endif
