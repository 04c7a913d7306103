/* The node's side of the control channel: one long-lived TCP connection to
 * mesh-control, Noise IK with the server key pinned from the join token,
 * then framed messages (frame.h, msg.h).
 *
 *   node                                   mesh-control
 *   HS1 (Noise msg 1, payload empty)  ->
 *                                     <-   HS2 (Noise msg 2, payload empty)
 *   REGISTER_REQ                      ->
 *                                     <-   REGISTER_RESP (ok | pending | refused)
 *   ENDPOINTS (now and on change)     ->
 *                                     <-   MAP_FULL, then MAP_DELTA ...
 *   KEEPALIVE (either way, when quiet)<->
 *
 * The client keeps the merged network map (a struct ctl_map_full: MAP_FULL,
 * then every MAP_DELTA applied: peers added or replaced by id, removed ids
 * dropped, peers sorted by id) and hands it to the owner after every change,
 * with the ids that changed so the owner can update only those. Under an
 * access policy the map also holds the node's filter and its reach entries
 * (sorted by peer id, only for peers it holds; msg.h says how a delta
 * changes them), and ctl_map_change.policy says when any of that changed.
 *
 * Several control addresses (mesh-control servers on one database): the
 * client starts with the first; when a connection to one fails or drops it
 * tries the next one at once, and only when every address of the list
 * failed in a row (a round) does it wait as below and start over from the
 * first. A session that stayed up for 60 s starts a new round. The
 * machine key is the same on every server, so the node stays the same node.
 *
 * Reconnects: after any failure (connect refused, handshake or frame error,
 * server silent for timeout_ms, connection closed) of the last address of a
 * round, the client waits and tries again: backoff_min_ms doubling up to
 * backoff_max_ms, each wait scaled by a random factor in [0.5, 1.0]
 * (jitter, so a restarted server is not hit by every node at once); a
 * session that stayed up for 60 s resets the backoff. A REGISTER_RESP "refused" stops the
 * client (no retries): the owner decides (a node exits with the reason); except code
 * INTERNAL (a transient server error, not an answer), which retries like a failure.
 * "pending" keeps the connection open; the server sends REGISTER_RESP ok
 * (then the map) once an admin approves.
 *
 * The auth key is sent in every REGISTER_REQ until one is answered "ok";
 * then it is wiped (a known machine key resumes without it).
 *
 * Everything runs on the caller's event_base; nothing blocks (host names are
 * resolved with evdns when dns is given, else the host must be an IP
 * literal). All callbacks run from the loop, never from inside a ctl_client_*
 * call, and may call ctl_client_free (the client then stops at once). */
#ifndef MESH_CTL_CLIENT_H
#define MESH_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/control/msg.h"

struct event_base;
struct evdns_base;
struct ctl_client;

enum ctl_client_state {
	CTL_CLIENT_CONNECTING = 1, /* TCP connect / name lookup in progress */
	CTL_CLIENT_HANDSHAKE,      /* Noise IK in progress */
	CTL_CLIENT_REGISTERING,    /* REGISTER_REQ sent */
	CTL_CLIENT_PENDING,        /* registered, waiting for an admin */
	CTL_CLIENT_ONLINE,         /* registered; maps arrive */
	CTL_CLIENT_BACKOFF,        /* disconnected; waiting to retry */
	CTL_CLIENT_REFUSED,        /* refused by the server; stopped */
	CTL_CLIENT_LOGGED_OUT,     /* ctl_client_logout answered or cut; stopped */
};

const char *ctl_client_state_name(enum ctl_client_state s); /* "online", ... */

/* What changed in one map update. ids point into the client; valid during
 * the callback only. full: a MAP_FULL replaced everything (changed lists
 * every peer, removed lists ids that were in the previous map but not in
 * this one). */
struct ctl_map_change {
	bool full;
	const uint64_t *changed; /* added or modified peers */
	size_t n_changed;
	const uint64_t *removed; /* peer ids no longer in the map */
	size_t n_removed;
	bool relays; /* the relay list changed (always with full) */
	/* The filter or a reach entry changed, or a peer's user or tags
	 * (always with full); map->has_filter, filter, reach hold the result. */
	bool policy;
};

struct ctl_client_callbacks {
	/* State changes, with a readable detail ("connection refused",
	 * "server key mismatch", "auth key expired", ...). For REFUSED,
	 * resp->code holds the enum ctl_reason. resp is NULL except for
	 * PENDING, ONLINE (first registration answer of each session) and
	 * REFUSED. */
	void (*on_state)(void *ctx, enum ctl_client_state st, const char *detail,
	                 const struct ctl_register_resp *resp);
	/* The merged map after each MAP_FULL / MAP_DELTA. map stays valid until
	 * the next callback or ctl_client_free; copy what you keep. */
	void (*on_map)(void *ctx, const struct ctl_map_full *map,
	               const struct ctl_map_change *chg);
	/* Relay role only: every RELAY_STATE (the first one means the relay is
	 * registered: state ONLINE). st is valid during the call. */
	void (*on_relay_state)(void *ctx, const struct ctl_relay_state *st);
};

/* At most this many control addresses (as in a join token). */
#define CTL_CLIENT_ADDRS_MAX 8
/* "[" host "]:" port and its NUL (a host is at most 253 characters). */
#define CTL_CLIENT_ADDR_TEXT (253 + 2 + 6 + 1)

struct ctl_client_addr {
	const char *host;
	uint16_t port;
};

struct ctl_client_config {
	struct event_base *base;
	struct evdns_base *dns; /* NULL: every host must be an IP literal */
	const char *host;       /* control server, from the token */
	uint16_t port;
	/* The token's further addresses, tried in order after host:port
	 * (up to CTL_CLIENT_ADDRS_MAX - 1; NULL/0: host:port alone). */
	const struct ctl_client_addr *more;
	size_t n_more;
	uint8_t server_key[CTL_KEY_LEN]; /* pinned; from the token */
	uint8_t machine_priv[CTL_KEY_LEN];
	uint8_t node_key[CTL_KEY_LEN]; /* WireGuard public key */
	uint8_t disco_key[CTL_KEY_LEN];
	const char *hostname;
	const char *os;       /* NULL: "linux" */
	const char *version;  /* NULL: "unknown" */
	const char *auth_key; /* NULL or "": none (resume, or wait for approval) */
	const char *const *tags;
	size_t n_tags;
	uint32_t keepalive_ms;       /* 0: 25000. Sent when nothing was sent that long */
	uint32_t timeout_ms;         /* 0: 75000. Nothing received that long: reconnect */
	uint32_t backoff_min_ms;     /* 0: 500 */
	uint32_t backoff_max_ms;     /* 0: 15000 */
	uint32_t connect_timeout_ms; /* 0: 10000, TCP connect + handshake */
	const struct ctl_client_callbacks *cb;
	void *ctx;
	/* Relay role (mesh-relay): not NULL sends RELAY_REGISTER with this
	 * relay's region, host, ports and TLS instead of REGISTER_REQ (node_key,
	 * disco_key and tags are then unused; hostname is only for logs). The
	 * server answers with RELAY_STATE; an auth-key refusal or "removed" is
	 * final (REFUSED), as for a node. */
	const struct ctl_relay *relay;
	/* Register as ephemeral (REGISTER_REQ ephemeral: the server removes
	 * the node soon after it goes offline, whatever its auth key says). */
	bool ephemeral;
};

/* Copies what it needs from cfg (strings, keys). Starts connecting from the
 * loop. NULL with err filled on bad config or no memory. */
struct ctl_client *ctl_client_new(const struct ctl_client_config *cfg, char *err,
                                  size_t errlen);
/* Closes the connection, wipes keys, frees the map. Accepts NULL. Safe from
 * inside a callback. */
void ctl_client_free(struct ctl_client *c);

/* Our endpoints (WireGuard UDP ip:port candidates) and home relay. Sent now
 * when online and after every (re)registration; an identical set is not
 * resent. */
int ctl_client_set_endpoints(struct ctl_client *c, const struct ctl_endpoints *eps);

/* The merged map, or NULL before the first one. */
const struct ctl_map_full *ctl_client_map(const struct ctl_client *c);

struct ctl_client_status {
	enum ctl_client_state state;
	char detail[CTL_TEXT_MAX]; /* last state detail / error */
	uint64_t map_version;      /* 0: no map yet */
	uint64_t sessions;         /* successful handshakes */
	uint64_t reconnects;       /* connection attempts after the first */
	uint64_t maps_full, maps_delta;
	uint64_t bytes_in, bytes_out;
	uint64_t zmaps;           /* map messages that came compressed */
	uint64_t zmaps_refused;   /* compressed ones refused (bomb, corrupt) */
	int64_t connected_since;  /* unix s of the current session, 0 if none */
	int64_t last_map;         /* unix s of the last map update, 0 if none */
	uint32_t next_attempt_ms; /* in BACKOFF: time left before the retry */
	/* The control address in use (or tried next): "host:port",
	 * "[v6]:port"; its index in the configured list and the list's size. */
	char addr[CTL_CLIENT_ADDR_TEXT];
	uint8_t addr_index, n_addrs;
};
void ctl_client_get_status(const struct ctl_client *c, struct ctl_client_status *st);

/* Drops the connection and reconnects at once (tests, `mesh-proxy up` on
 * SIGHUP), to the same control address. Resets the backoff. */
void ctl_client_reconnect(struct ctl_client *c);
/* Our network changed under the connection: drops it and redials after a
 * random 0-2 s (a fleet that changed network together does not dial at
 * once), or after the wait a failed connection would have if that is
 * longer: the backoff is not reset, so an address that keeps flapping
 * redials no faster than a failing server. The same control address is
 * dialled again (the list is walked only on failures). */
void ctl_client_redial(struct ctl_client *c);
/* The local address of the connection to mesh-control (getsockname).
 * 0, or -ENOTCONN with none. */
int ctl_client_local_addr(const struct ctl_client *c, struct sockaddr_storage *ss);

/* Leaves the mesh (an ephemeral node stopping): sends LOGOUT when
 * registered (online or pending) and returns 0; on_state then reports
 * LOGGED_OUT from the loop when the server answers LOGOUT (detail "logged
 * out") or closes the connection first (an older server, which does not
 * know LOGOUT, closes it: detail says the node may stay listed until it
 * times out). The client never reconnects after a logout; the caller
 * bounds the wait (a server that says nothing). -ENOTCONN when there is
 * no registered session to log out of (nothing is sent; the server's
 * timeouts handle the node), -EALREADY when LOGOUT was already sent.
 * (Should the send itself fail, out of memory, LOGGED_OUT is reported
 * from inside this call.) */
int ctl_client_logout(struct ctl_client *c);

/* Applies a MAP_DELTA to a map (exported for tests and fuzzing): peers are
 * replaced or inserted by id keeping the array sorted; removed ids dropped;
 * version set. -EINVAL when delta->base_version != map->version (the
 * client then reconnects to get a full map); -E2BIG past CTL_MAP_PEERS_MAX
 * peers; -ENOMEM. On error the map is unchanged.
 *
 * In place: a known peer's entry or patch costs O(log N) and touches that
 * entry only; a join or a removal also moves the entries after it (one
 * memmove per run between changes; no copy of the map, no sort). */
int ctl_map_apply_delta(struct ctl_map_full *map, const struct ctl_map_delta *delta);

/* What one ctl_map_apply_delta_work call did to the map's entries (tests
 * and benches check that a delta costs what it changes, not the map). */
struct ctl_map_work {
	uint64_t peers_written; /* whole entries stored (replaced or new) */
	uint64_t peers_patched; /* entries a patch set fields of */
	uint64_t peers_moved;   /* entries shifted to open or close a gap */
};
/* ctl_map_apply_delta that also fills *work (NULL: not wanted). */
int ctl_map_apply_delta_work(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                             struct ctl_map_work *work);

/* The map's peer with this id (binary search), or NULL. */
const struct ctl_peer *ctl_map_find(const struct ctl_map_full *map, uint64_t id);
/* What this node may open on peer id (CTL_CAP_POLICY), or NULL: nothing
 * under a filter, everything without one (map->has_filter false). The
 * merged map keeps its reach entries sorted by id, one per peer it holds
 * (binary search). */
const struct ctl_reach *ctl_map_find_reach(const struct ctl_map_full *map, uint64_t id);

#endif
