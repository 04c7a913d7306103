/* mesh-control serve: the node protocol server (see core/control/client.h
 * for the message flow and docs/control-protocol.md).
 *
 * One libevent listener; per connection: Noise IK responder with the
 * server's static key (message 1's TAI64N is not checked: a replay yields
 * no usable session, and a check locked out nodes whose clock went back),
 * then REGISTER_REQ -> ctl_store_node_register -> REGISTER_RESP, and from
 * then on the network map: MAP_FULL first, MAP_DELTA after each change.
 *
 * Who sees whom: without an access policy every approved, unexpired node
 * sees every other approved, unexpired node; under one, the peers it may
 * talk to or that may talk to it, with its filter and reach
 * (server_policy.c; server_policy.h puts a policy in force). A peer in a
 * map: id, name, node key, disco key, addresses (v4, v6), allowed IPs
 * (/32, /128), endpoints, home relay, online, last_seen, user, tags.
 *
 * Changes reach nodes through the store's map version: after its own
 * writes, and every poll_ms for writes by other processes (the admin CLI,
 * which opens the same SQLite file), the server compares the store's map
 * version with the last it broadcast; when it moved it reads the changed
 * nodes and tombstones once (ctl_store_node_list / node_removed since that
 * version) and sends each online node one MAP_DELTA (a connection that fell
 * behind gets one update from its version when its own queue drains, or a
 * MAP_FULL when the delta is over half the map or one frame). Deltas carry
 * whole entries for what changed as a whole and patches for endpoints and
 * online (to nodes that announce CTL_CAP_PEER_PATCH); a full map goes in
 * chunks to nodes that announce CTL_CAP_MAP_CHUNKS. Broadcasts are
 * coalesced: at most one every coalesce_ms. A removed or expired node's own connection is
 * told (ERROR, then closed); a pending node is sent REGISTER_RESP ok and its map when
 * approved.
 *
 * Online: a node is online while its connection is up (store updated on
 * register and close, bumping the version; a reconnect that changes nothing
 * else, and every close, through the write batch, server_writes.c). Ephemeral nodes are removed
 * ephemeral_timeout_s after they go offline (checked each poll).
 *
 * Several servers on one store (server_ha.c): each picks a random id at
 * start; the store records which server holds each online node, and a
 * server's offline write does not touch a node another server holds now
 * (it moved). Each server beats every beat_ms; a beat marks offline the
 * nodes of servers silent for dead_after_s. Changes by the others arrive
 * through the store's change notification when it has one (PostgreSQL),
 * and through the poll of the map version in any case.
 *
 * Limits: max_conns connections (of them at most max_unreg not yet
 * registered, max_unreg_per_source from one source; see below for who
 * makes room for a new one), handshakes answered at most hs_per_source a
 * second per source and hs_total in all (server_rate.c; more are closed
 * before any X25519), a known node's REGISTER_REQs at most 5 at once and
 * then one a second (more are told to slow down), handshake must
 * finish within handshake_ms, a connection silent for idle_ms is closed
 * (nodes send keepalives), the server sends KEEPALIVE when it sent nothing
 * for keepalive_ms, frames from nodes of at most CTL_FRAME_NODE_MAX bytes
 * (a longer one closes the connection before any of it is read; messages a
 * connection's state does not take are refused before they are parsed, and
 * the rest parsed with a budget of SRV_NODE_MAX_TOKENS values), output queued
 * to a slow reader beyond max_outbuf bytes closes it. When accept() fails
 * (EMFILE...) the listener pauses 100 ms. Bad input (garbage,
 * bad frames, unknown types, messages out of order) closes that connection
 * and is counted; it never touches the store. */
#ifndef MESH_CTL_SERVER_H
#define MESH_CTL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct ctl_store;
struct ctl_server;

struct ctl_server_config {
	struct event_base *base;
	struct ctl_store *store; /* borrowed; outlives the server */
	uint8_t server_priv[32];
	struct sockaddr_storage listen;
	socklen_t listen_len;
	uint32_t max_conns;           /* 0: 10000 */
	uint32_t handshake_ms;        /* 0: 10000 */
	uint32_t idle_ms;             /* 0: 90000 */
	uint32_t keepalive_ms;        /* 0: 25000 */
	uint32_t poll_ms;             /* 0: 500 */
	uint32_t coalesce_ms;         /* 0: 100 */
	uint32_t ephemeral_timeout_s; /* 0: 300 */
	uint32_t reclaim_after_s;     /* 0: 60; name reuse (server_reg.c) */
	size_t max_outbuf;            /* 0: 64 MiB */
	/* All output queues together: over this, maps wait (0: 64 MiB). */
	size_t out_budget;
	/* SO_SNDBUF of node connections (0: the kernel's, which on a fast
	 * link grows to MBs); a small one keeps a slow reader's bytes in the
	 * server's queue, where the stall rules and the budget see them. */
	int sndbuf;
	/* A node whose output queue stays over 16 KiB this long (it does not
	 * read its map updates) is closed, whatever it sends; while all the
	 * queues together are over their budget, one from which nothing
	 * drained for a fifth of it is closed. 0: 2 x keepalive_ms (50 s,
	 * and 10 s of nothing drained). */
	uint32_t behind_ms;
	/* New machines are refused (told to retry) once the mesh has this
	 * many nodes: 0 or more than CTL_MAP_PEERS_MAX (what a node's map and
	 * a relay's key list hold) means CTL_MAP_PEERS_MAX. */
	uint32_t max_nodes;
	/* Registrations without an auth key: refused when no_pending; else
	 * at most max_pending (0: 100) nodes wait for approval, at most
	 * max_pending_per_source (0: 8) of them from one IPv4 address or IPv6
	 * /64; a new one beyond either is told to retry later (nothing that
	 * waits is dropped to make room). */
	bool no_pending;
	uint32_t max_pending;
	uint32_t max_pending_per_source;
	/* Connections that have not registered yet (handshake, waiting for
	 * REGISTER_REQ): at most max_unreg (0: 1024, and at most half of
	 * max_conns) in all and max_unreg_per_source (0: 256) from one IPv4
	 * address or IPv6 /64. One more from a source at its cap is closed at
	 * accept; at the global cap the oldest unregistered connection of the
	 * source holding the most is closed to make room if that source holds
	 * at least half its cap (a flood from a few addresses can't keep nodes
	 * from connecting), else the new connection is closed and retries (a
	 * join storm from many addresses: those connected first register
	 * first, instead of each closing an older one); with all max_conns
	 * taken the oldest of the heaviest source always makes room.
	 * Registered nodes are never closed for it (when all max_conns are
	 * registered nodes, a new connection is refused). */
	uint32_t max_unreg;
	uint32_t max_unreg_per_source;
	/* Handshakes answered per second from one IPv4 address or IPv6 /64,
	 * after a burst of twice as many (0: 32, so a burst of 64); over it
	 * (or over 2,000 a second from all sources, after a burst of 4,000) a
	 * connection is closed before any X25519 and the node retries. Raise
	 * it for many nodes behind one NAT. */
	uint32_t hs_per_source;
	/* The same from all sources together (0: 2,000 a second, a burst of
	 * 4,000): what a flood from many addresses can make the loop spend. */
	uint32_t hs_total;
	/* Publish no seen_ip at all (no birthday probing in this mesh): for a
	 * server whose node connections come from addresses that are not the
	 * nodes' own (a TCP proxy without client-IP preservation). Without
	 * it, an address shared by more than 32 online nodes is not
	 * published either. */
	bool no_seen_ip;
	/* Several servers on one store (ctl_store_set_server): this one
	 * records that it is alive every beat_ms (0: 2000), and each beat
	 * marks offline the nodes of any server not heard from for
	 * dead_after_s (0: 10) seconds (one that crashed: its nodes come back
	 * online as they reconnect to a server that runs). */
	uint32_t beat_ms;
	uint32_t dead_after_s;
};

/* Binds and listens. NULL with err filled ("127.0.0.1:7443: address in use
 * (is another mesh-control running?)"). */
struct ctl_server *ctl_server_new(const struct ctl_server_config *cfg, char *err,
                                  size_t errlen);
/* Closes every connection (nodes are marked offline in the store) and the
 * listener; wipes the key. Accepts NULL. */
void ctl_server_free(struct ctl_server *s);

/* The bound address (port 0 in the config picks one). */
void ctl_server_local(const struct ctl_server *s, struct sockaddr_storage *ss,
                      socklen_t *len);

/* Something changed in the store (admin API): broadcast soon, without
 * waiting for the poll. */
void ctl_server_notify(struct ctl_server *s);

struct ctl_server_stats {
	uint64_t conns_active, conns_total, conns_refused_limit;
	uint64_t nodes_online;
	/* From the snapshot in memory (no store query): nodes in the map's
	 * store, and of them approved ones; pending = known - approved. */
	uint64_t nodes_known, nodes_approved;
	/* Writes of the node write batch (online state, endpoints) that
	 * failed (a full or read-only disk, a locked database), and how long
	 * ago the last did (seconds; -1: none since the start). */
	uint64_t store_write_failures;
	double store_write_fail_age_s;
	uint64_t handshakes_ok, handshakes_failed;
	uint64_t registrations_ok, registrations_pending, registrations_refused;
	uint64_t registrations_retry; /* told to retry (busy store, queue full) */
	uint64_t logouts;             /* nodes removed by their own LOGOUT */
	uint64_t names_reclaimed;     /* names taken back from offline ephemeral nodes */
	uint64_t pending_ignored;     /* frames of pending nodes not acted on */
	uint64_t maps_full, maps_delta, broadcasts;
	uint64_t writes_unchanged;  /* ENDPOINTS equal to what the node had */
	uint64_t writes_coalesced;  /* replaced by a newer one before written */
	uint64_t store_batches;     /* transactions of node-driven writes */
	uint64_t store_batch_nodes; /* nodes written in them */
	uint64_t bad_frames, bad_messages, idle_closed, slow_closed;
	uint64_t frames_too_big;       /* of bad_frames: over the limit, not read */
	uint64_t conns_refused_source; /* unregistered, over the per-source cap */
	uint64_t conns_evicted;        /* unregistered, closed for a newer one */
	uint64_t conns_refused_busy;   /* at the unregistered cap, none flooding */
	uint64_t accept_paused;        /* accept failed (EMFILE...): paused 100 ms */
	uint64_t handshakes_limited;   /* closed before message 1 was read: over
	                                * the per-source or global handshake rate */
	uint64_t hs_sweeps;            /* sweeps of the full table of handshake sources */
	uint64_t registrations_throttled; /* a known node registering too often:
	                                   * told to slow down (it retries) */
	uint64_t registrations_batched; /* known node, nothing changed: its
	                                 * online state went to the write batch */
	uint64_t bytes_in, bytes_out;
	uint64_t delta_nodes_visited; /* nodes looked at to build deltas */
	uint64_t conns_walked; /* connections looked at for a node's others */
	/* CTL_CAP_ZSTD: compressed map messages sent, their JSON and wire
	 * bytes, shared chunks compressed and sent again from the cache */
	uint64_t zmaps_sent, zbytes_raw, zbytes_sent;
	uint64_t zchunks_built, zchunks_reused;
	size_t zchunk_bytes;    /* compressed chunk bodies cached now */
	uint64_t deltas_reused; /* deltas sent from one built for another node */
	int64_t map_version;
	/* Several servers on one store (server_ha.c): this one's id, beats
	 * that failed, and nodes of stopped servers its beats marked offline. */
	int64_t server_id;
	uint64_t beat_failures, nodes_swept;
	double last_full_ms;      /* time to build+encode the last MAP_FULL */
	size_t last_full_bytes;   /* its size */
	double last_broadcast_ms; /* time to build and queue the last broadcast */
	size_t out_queued;        /* bytes in all output queues now */
};
void ctl_server_get_stats(const struct ctl_server *s, struct ctl_server_stats *st);

/* `mesh-control [--data DIR] serve [OPTIONS]` (servers/control/server_serve.c):
 * argc/argv are main's; parses them itself (serve --help prints its
 * options) and returns the exit code. */
int ctl_serve_main(int argc, char **argv);

#endif
