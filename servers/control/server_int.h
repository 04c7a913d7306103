/* Private to server*.c: the node-protocol server's state. */
#ifndef MESH_CTL_SERVER_INT_H
#define MESH_CTL_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

struct sockaddr;

struct bufferevent;
struct evbuffer_cb_entry;
struct evconnlistener;
struct event;

enum srv_conn_state {
	SRV_HANDSHAKE = 1, /* waiting for HS1 */
	SRV_WAIT_REG,      /* transport up, waiting for REGISTER_REQ */
	SRV_PENDING,       /* registered, not approved */
	SRV_ONLINE,        /* registered, maps flowing */
	SRV_RELAY,         /* a mesh-relay: RELAY_STATE flowing */
	SRV_CLOSING,       /* flushing a last ERROR, then freed */
};

struct srv_pclass;

struct srv_conn {
	struct srv_conn *prev, *next;
	struct ctl_server *s;
	struct bufferevent *bev;
	enum srv_conn_state state;
	struct ctl_frame_decoder dec;
	struct ctl_noise_handshake hs;
	struct ctl_noise_transport tr;
	uint8_t machine_key[CTL_KEY_LEN];
	int64_t node_id;                  /* 0 until registered */
	int64_t sent_version;             /* map version this node has */
	uint64_t bcast_gen;               /* last broadcast that looked at it */
	struct evbuffer_cb_entry *out_cb; /* counts its queue into out_total */
	uint32_t caps;                    /* CTL_CAP_* from its REGISTER_REQ */
	bool legacy; /* no CTL_CAP_MAP_CHUNKS: its queue counts into out_legacy */
	bool streaming;                   /* a chunked MAP_FULL is under way */
	bool relays_stale; /* the relay list changed after its map: its next
	                    * delta carries it (CTL_CAP_RELAYS_DELTA) */
	bool stream_first;                /* its MAP_FULL itself is still due */
	bool fresh_full;                  /* a chunked map just ended: its
	                                   * catch-up goes as a delta if it fits */
	int64_t stream_cursor;            /* its peers up to this id are sent */
	double stream_ms;                 /* time spent building its chunks */
	size_t stream_bytes;              /* bytes of its chunks so far */
	bool dead;                        /* freed by the reaper, from the loop */
	bool peer_closed;                 /* ended by the node's FIN or RST (event_cb) */
	uint64_t behind_ms;               /* its queue went over SRV_OUT_LOW (0: not) */
	uint64_t drained_ms;              /* bytes last left its queue */
	uint64_t drained_bytes;           /* bytes that left its queue */
	uint64_t behind_drained;          /* drained_bytes when it fell behind */
	int64_t relay_id;                 /* SRV_RELAY: its row in the store */
	uint8_t relay_sent[32];           /* hash of the last RELAY_STATE sent */
	uint64_t opened_ms, last_recv_ms, last_send_ms;
	struct srv_conn *uprev, *unext; /* s->unreg: not registered yet */
	struct srv_conn *id_next;       /* s->byid: same slot (server_byid.c) */
	struct srv_conn **id_pprev;     /* NULL: not in s->byid */
	bool in_unreg;
	/* Access policy (server_policy.c): what its map holds. pol_sent: a
	 * filter was sent (the map is under a policy); pol_cls: the peers it
	 * was sent, itself included (a reference; NULL: none); pol_fhash: the
	 * filter it has; pol_gen: the s->pol_gen its map is current with. */
	bool pol_sent;
	struct srv_pclass *pol_cls;
	uint8_t pol_fhash[32];
	uint64_t pol_gen;
	/* Chunks of its map went out under a class other than pol_cls (a
	 * compile during the stream): it may hold any peer, so the catch-up
	 * removes every node it does not see now and resends all it does. */
	bool pol_mixed;
	/* its last policy delta, for tests (ctl_server_policy_node_get):
	 * filter_op, reach entries and the first one's peer */
	uint8_t pol_last_op;
	uint32_t pol_last_reach;
	int64_t pol_last_reach_id;
	/* The node's own user and tags as its map holds them (MAP_FULL's
	 * self, then MAP_DELTA's self when they change). */
	char own_user[CTL_USER_MAX];
	char own_tags[CTL_PEER_TAGS_MAX];
	struct ctl_ip ip; /* the address it comes from (v4-mapped: IPv4) */
	char peer[64];   /* "ip:port" for logs */
	char source[64]; /* IPv4 address or IPv6 /64: limits per source */
};

/* One node in the in-memory snapshot (sorted by id). */
struct srv_change {
	int64_t version;
	int64_t id;
};

struct srv_node {
	int64_t id;
	int64_t version;
	int64_t expiry;
	bool approved, ephemeral;
	/* The server the store had holding it online at the row's last
	 * version (ctl_node.online_server): a hint only, as a move between
	 * servers while online bumps no version; what decides is read from
	 * the store (server_reg.c) or checked by it (name reuse). */
	int64_t online_server;
	uint8_t machine_key[CTL_KEY_LEN];
	struct ctl_peer peer; /* as sent to others */
	/* Map versions at which, last, the entry changed as a whole (new,
	 * renamed, keys, addresses, approval, expiry), its endpoints or home
	 * relay changed, or it went online or offline. A delta from base sends
	 * the whole entry if v_full > base, else a patch of the fields newer
	 * than base, else nothing: a write that changed nothing sends nothing. */
	int64_t v_full, v_eps, v_online, v_seen;
	/* Where its latest online connection came from (family 0: it has not
	 * been online since this server started): published as the entry's
	 * seen_ip, with a version of its own (v_seen), at the next snapshot
	 * refresh after srv_go_online touched it. Memory only. */
	struct ctl_ip seen;
	bool shown;           /* visible to others when last read */
	double tokens;        /* its write bucket (server_writes.c) */
	uint64_t tok_ms;      /* when tokens was last refilled (0: full) */
	size_t wb_idx;        /* 1 + its waiting write in s->wb, 0 none */
	double reg_tokens;    /* its REGISTER bucket (server_reg.c) */
	uint64_t reg_ms;      /* when reg_tokens was last refilled (0: full) */
	/* How its last connection on this server ended (memory only; name
	 * reuse, server_reg.c): closed_by_node_ms is when the node itself
	 * closed it (FIN or RST: it left or its process died), 0 when it was
	 * closed otherwise (timeout, error, by us) or is still open;
	 * gone_s is when it went (unix s, 0: not since this server
	 * started). */
	uint64_t closed_by_node_ms;
	int64_t gone_s;
	/* Renamed by a name reuse and not online since (memory only): never
	 * renamed again, or each newcomer would rename the same absent node
	 * (app-2, app-3...), a whole-entry change to every peer each time. */
	bool reclaimed;
	/* The name its registered hostname gives (ctl_alloc_name_from_host):
	 * name reuse matches on what a node asked for, not on its name. */
	char host_base[64];
	char *pj;             /* peer's JSON entry (ctl_msg_encode_peer); NULL
	                       * if it did not encode */
	char *stags;          /* its tags as stored (NULL: none); peer.tags
	                       * are the published ones (server_policy.c) */
	size_t pj_len;
};

/* A connection whose output queue holds more than this gets no map update
 * until it drains below it (then one update from what it has: a delta, or
 * a full map when the delta is over half the map or over one frame); one
 * that stays over it too long is closed (cfg.behind_ms). Each connection
 * is judged by its own queue only: a node that stops reading never holds
 * back the others. */
#define SRV_OUT_LOW (16u * 1024u)
/* A chunked MAP_FULL is built this many bytes at a time, each chunk when
 * the connection's queue drained below SRV_OUT_LOW: a map of any size
 * costs a slow reader at most about SRV_OUT_LOW + SRV_CHUNK_BYTES. A
 * catch-up delta bigger than this goes as such a map too. */
#define SRV_CHUNK_BYTES (128u * 1024u)
/* All output queues together: over this, no map chunks and no catch-up
 * deltas over SRV_CHUNK_BYTES are built until they drain below half (a join
 * or reconnect storm is paced by it). Older nodes' single maps have half
 * of it to themselves and count for the others only up to that half
 * (srv_over_budget), so they never keep a current node's map waiting. Small deltas never wait for it, and
 * a node that stops reading holds at most about SRV_OUT_LOW +
 * SRV_CHUNK_BYTES of it, so it takes hundreds of those to pause maps, and
 * none to delay a change reaching the nodes that read. */
#define SRV_OUT_BUDGET ((size_t)64 << 20)
/* What a node sends is small: at most this many JSON values in one
 * message (REGISTER_REQ has about 40; counted before parsing), and a
 * KEEPALIVE body (it is {}, never parsed) of at most this many bytes.
 * Frames from nodes are limited to CTL_FRAME_NODE_MAX. */
#define SRV_NODE_MAX_TOKENS 1024
#define SRV_KEEPALIVE_MAX   256
/* Per-node token bucket of endpoint writes: a burst of this many, then one
 * every SRV_WB_REFILL_MS; the rest wait and coalesce (server_writes.c). */
#define SRV_WB_BURST     5.0
#define SRV_WB_REFILL_MS 1000.0
/* Per-machine token bucket of REGISTER_REQs of a known node: a burst of
 * this many, then one every SRV_REG_REFILL_MS; one over it is told to slow
 * down (ERROR INTERNAL: the node retries with backoff). */
#define SRV_REG_BURST     5.0
#define SRV_REG_REFILL_MS 1000.0
/* Handshakes answered (message 1 read, message 2 written: five X25519,
 * about 0.2 ms of the only thread): per source (IPv4 address or IPv6 /64)
 * a burst of twice cfg.hs_per_source (0: SRV_HS_SOURCE_RATE), then that
 * many a second; from all sources together a burst of twice cfg.hs_total
 * (0: SRV_HS_RATE), then that many a second.
 * Over either, the connection is closed before any X25519 (counted in
 * handshakes_limited); the node retries with backoff. Sources are tracked
 * in a table of SRV_HS_SLOTS (server_rate.c). */
#define SRV_HS_SOURCE_RATE  32u
#define SRV_HS_RATE         2000u
#define SRV_HS_SLOTS        4096u
/* An address more online connections than this come from (a proxy, a
 * carrier NAT) is published as nobody's seen_ip (server_seen.c). */
#define SRV_SEEN_SHARED_MAX 32u
/* Sweeps of a full table at most this often (server_rate.c). */
#define SRV_HS_SWEEP_MS 100u
/* Why a node without CTL_CAP_POLICY is refused (or closed) while a policy
 * is set: it could not enforce it. */
#define SRV_POLICY_UPGRADE                                                               \
	"this mesh has an access policy and this node's version of meshproxy cannot "     \
	"enforce it; upgrade meshproxy on this node and start it again"
/* sent_version of an online node still waiting for its first MAP_FULL. */
#define SRV_NEED_FULL (-1)

struct delta_set;
/* Deltas kept for the snapshot's version (distinct bases at once). */
#define SRV_DSETS 16

struct srv_tomb {
	int64_t id, version;
};

/* For nodes with CTL_CAP_ZSTD a map's chunks are the same for everyone:
 * chunk k is the visible nodes with ids in [k * SRV_ZCHUNK_IDS + 1,
 * (k + 1) * SRV_ZCHUNK_IDS] (about 130 KiB of JSON, 32 KiB compressed),
 * compressed once and kept until a node in its range changes
 * (server_zmap.c). */
#define SRV_ZCHUNK_IDS 384
struct srv_zchunk {
	uint64_t gen_changed; /* bumped by every change in the range */
	uint64_t gen_built;   /* gen_changed when body was built */
	uint8_t *body;        /* ZMAP body of a MAP_PEERS; NULL: none */
	size_t len, raw_len;  /* compressed and JSON bytes */
	size_t n_peers;
	bool more; /* nodes with higher ids existed when built */
};

struct ctl_server {
	struct ctl_server_config cfg;
	struct evconnlistener *lis;
	struct event *tick, *poll, *bcast, *reap;
	/* Several servers on one store (server_ha.c): this one's id (random,
	 * nonzero), its beat timer, and the store's change notification
	 * (NULL: none now; the poll asks for one again). */
	int64_t server_id;
	struct event *beat, *watch;
	uint64_t bcast_gen;
	struct srv_conn *conns; /* list head */
	/* Connections that have not registered (handshake, WAIT_REG), newest
	 * first; entries that moved on are pruned at the next accept. */
	struct srv_conn *unreg;
	size_t n_unreg;
	size_t n_dying; /* killed, not yet freed by the reaper */
	/* Message 1 is read from a copy of this: the responder's state after
	 * the pre-message, the server's public key computed once. */
	struct ctl_noise_handshake hs_template;
	struct event *accept_resume; /* re-enables the listener after EMFILE */
	uint64_t accept_log_ms;      /* last "out of file descriptors" line */
	size_t out_total;       /* bytes in all output queues */
	bool out_waiting;       /* big updates wait for out_total to drop */
	/* Of out_total, the queues of older nodes (one MAP_FULL each): their
	 * maps have half the budget to themselves, and what they hold counts
	 * for the others' maps only up to that half (srv_over_budget). */
	size_t out_legacy;
	bool legacy_waiting;    /* older nodes' maps wait for out_legacy */
	struct event *resume;   /* runs them when it did */
	struct ctl_server_stats st;
	uint64_t write_fail_ms; /* srv_now_ms of the last failed write; 0 none, or
	                         * a later write succeeded */
	struct ctl_meta meta;
	/* snapshot */
	struct srv_node *nodes;
	size_t n_nodes, cap_nodes;
	int64_t snap_version;
	int64_t last_poll_s; /* srv_poll_cb's last run (unix s), for expiries */
	int64_t start_s;     /* when this server started (unix s): name reuse */
	struct srv_tomb *tombs;
	size_t n_tombs, cap_tombs;
	int64_t tomb_floor; /* tombstones at or below this were dropped */
	/* Change log: (version, id) of each change of a node that others see,
	 * in version order, so that a delta from base visits only the changes
	 * after it instead of every node (server_map.c). A node changed again
	 * has an older entry too; it counts only at its newest version. */
	struct srv_change *chlog;
	size_t n_chlog, cap_chlog;
	size_t map_bytes; /* sum of the nodes' entries (pj_len + 1) */
	/* deltas built for the snapshot's version, by base (server_map.c) */
	struct delta_set *dsets;
	size_t n_dsets, dset_next;
	/* shared compressed chunks by id range (server_zmap.c) */
	struct srv_zchunk *zc;
	size_t n_zc;
	struct ctl_zenc *zenc;
	/* connections with a node id, by it (server_byid.c) */
	struct srv_conn **byid;
	size_t nb_byid, n_byid;
	/* relays, as every node's map lists them (server_relay.c) */
	struct ctl_relay *relays;
	size_t n_relays;
	uint8_t relays_hash[32];      /* of s->relays */
	uint8_t nodes_relays_hash[32]; /* of the list the nodes' maps last carried */
	/* node-driven writes waiting for the next flush (server_writes.c) */
	struct ctl_node_vol *wb;
	size_t n_wb, cap_wb;
	struct event *wb_timer; /* the first node over its bucket gets a token */
	bool stopping;          /* ctl_server_free: one offline write for all */
	/* handshake buckets (server_rate.c) */
	struct srv_hs_slot *hs_slots; /* SRV_HS_SLOTS, open addressing */
	size_t n_hs_slots;            /* in use */
	uint64_t hs_gc_ms;            /* last sweep of the source table */
	uint64_t hs_gc_gap_ms;        /* till the next one may run */
	double hs_tokens;             /* all sources together */
	uint64_t hs_ms;               /* when hs_tokens was refilled (0: full) */
	uint8_t hs_hash_key[16];      /* of the sources' hash */
	/* A node registering, not yet in the snapshot: its connection's
	 * address, for snap_upsert (seen_hint_id 0: none). */
	int64_t seen_hint_id;
	struct ctl_ip seen_hint;
	/* Online connections per source address (server_seen.c). */
	struct srv_seen_slot *seen_tab;
	size_t seen_cap, seen_used;
	uint8_t seen_key[16];
	/* The access policy (server_policy.c; NULL: none was ever set),
	 * bumped generation of its compiled state (every node's map is
	 * brought to it), whether the nodes it compiles changed since, and
	 * the map version the store's policy was last read at. */
	struct srv_policy *pol;
	uint64_t pol_gen;
	bool pol_dirty;
	int64_t pol_checked_v;
};

/* server.c */
uint64_t srv_now_ms(void);
/* A write of the node batch failed: counted, and /readyz answers 503 for
 * a while (health.c). */
void srv_note_write_fail(struct ctl_server *s);
/* A node batch write went through: /readyz no longer holds the last
 * failure. Only the batch clears it: a one-row write that succeeds while
 * the batch keeps failing would make /readyz flap. */
void srv_note_write_ok(struct ctl_server *s);
int srv_send_msg(struct srv_conn *c, const struct ctl_msg *m);
int srv_send_body(struct srv_conn *c, uint8_t type, const uint8_t *body, size_t len);
void srv_conn_free(struct srv_conn *c);
/* Closes c without marking its node offline and frees it from the loop:
 * safe while another connection's callback or a list walk is running. */
void srv_conn_kill(struct srv_conn *c);
/* srv_conn_kill, marking its node offline first if c was its online
 * connection (srv_conn_free's bookkeeping, without the free). */
void srv_conn_drop(struct srv_conn *c);
/* The pending limit's source of a peer: its IPv4 address (also from a
 * v4-mapped IPv6), else its IPv6 /64 ("2001:db8:1:2::/64"). */
void srv_source_of(const struct sockaddr *sa, char out[64]);
/* A peer's IP address (a v4-mapped IPv6 as IPv4; family 0: neither). */
void srv_ip_of(const struct sockaddr *sa, struct ctl_ip *out);
void srv_conn_error_close(struct srv_conn *c, uint32_t code, const char *text);
/* srv_conn_error_close with any message: sends m, then closes. */
void srv_conn_send_close(struct srv_conn *c, const struct ctl_msg *m);
void srv_set_offline(struct ctl_server *s, int64_t node_id);

/* server_zmap.c */
/* A node in id's chunk range changed: its cached chunk is stale. */
void srv_zc_touch(struct ctl_server *s, int64_t id);
size_t srv_zc_bytes(const struct ctl_server *s); /* cached chunk bodies */
void srv_zc_free(struct ctl_server *s);
/* Sends c a map body: compressed (ZMAP) when c has CTL_CAP_ZSTD and the
 * body is CTL_ZMSG_MIN_LEN or more, else plain. For one receiver; a body
 * many receive is compressed once by its owner (srv_send_zbody). */
int srv_send_map_body(struct srv_conn *c, uint8_t type, const uint8_t *body, size_t len);
/* Sends c the ZMAP body z (compressed from raw_len bytes). */
int srv_send_zbody(struct srv_conn *c, const uint8_t *z, size_t len, size_t raw_len);
/* One step of a chunked map to a node with CTL_CAP_ZSTD: the MAP_FULL
 * header first (no peers, more), then the shared chunk of the next
 * non-empty id range after c->stream_cursor. */
int srv_stream_chunk_z(struct srv_conn *c, bool first);
/* Compresses body into *z (ZMAP) at zstd level `level`; -errno. */
int srv_zwrap(struct ctl_server *s, int level, uint8_t type, const uint8_t *body,
              size_t len, uint8_t **z, size_t *zlen);

/* server_byid.c */
int srv_byid_init(struct ctl_server *s);
void srv_byid_free(struct ctl_server *s);
/* Sets c's node id (0: none), keeping s->byid current: every assignment
 * of c->node_id goes through it. */
void srv_conn_set_node(struct srv_conn *c, int64_t id);
/* The connections whose node id is id, in no order (any state). */
struct srv_conn *srv_conn_first_of(const struct ctl_server *s, int64_t id);
struct srv_conn *srv_conn_next_of(const struct srv_conn *c);

/* server_accept.c */
/* Adds c (just accepted) to s->unreg / takes it out (no-op if not in it). */
void srv_unreg_add(struct srv_conn *c);
void srv_unreg_unlink(struct srv_conn *c);
/* Whether a new connection from source may stay: false (counted) at the
 * per-source cap, or at max_conns when every connection is registered; at
 * max_conns or the unregistered cap, closes the oldest unregistered one of
 * the source holding the most to make room. */
bool srv_unreg_admit(struct ctl_server *s, const char *source);
/* The listener's error callback (pauses it 100 ms) and the timer that
 * enables it again. */
void srv_accept_error_cb(struct evconnlistener *l, void *arg);
void srv_accept_resume_cb(int fd, short ev, void *arg);

/* server_map.c */
int srv_snap_refresh(struct ctl_server *s);
/* Index of id in the snapshot, or where it would go. */
size_t srv_snap_index(const struct ctl_server *s, int64_t id, bool *found);
double srv_ms_since(const struct timespec *t0);
const struct srv_node *srv_snap_find(const struct ctl_server *s, int64_t id);
bool srv_node_visible(const struct srv_node *n, int64_t now);
/* server_full.c */
/* Sends c the whole map: one MAP_FULL, or (a node with CTL_CAP_MAP_CHUNKS)
 * a MAP_FULL with more and MAP_PEERS chunks, each built when c's queue has
 * drained (srv_stream_pump from its write callback). */
int srv_send_full(struct srv_conn *c);
int srv_stream_pump(struct srv_conn *c);
/* The MAP_FULL header for c (version, self, DNS, relays; no peers). */
int srv_full_header(struct srv_conn *c, struct ctl_msg *m);

/* server_map.c */
/* c (online) has map updates due: a newer version, a relay list, or (a
 * node that takes a policy) a policy change. */
static inline bool srv_conn_needs_update(const struct srv_conn *c)
{
	return c->sent_version < c->s->snap_version || c->relays_stale ||
	       ((c->caps & CTL_CAP_POLICY) && c->pol_gen != c->s->pol_gen);
}
/* True when c should get no map update now (its own queue is full, or a
 * chunked map is still going out); it gets one when it drains. */
bool srv_conn_behind(struct srv_conn *c);
/* Brings c's map from c->sent_version to the snapshot's: one MAP_DELTA, or a
 * MAP_FULL when the delta would be larger or tombstones do not reach back. */
int srv_send_update(struct srv_conn *c);
void srv_broadcast_schedule(struct ctl_server *s);
void srv_broadcast_cb(int fd, short ev, void *arg);
/* The output queues drained below half the budget: maps and catch-ups that
 * waited for it go out now. */
void srv_resume_cb(int fd, short ev, void *arg);
/* True (and the waiting flag of c's kind set) when a map or a big
 * catch-up for c must wait for the queues to drain: for an older node
 * (c->legacy), when older nodes' queues hold over half the budget; for any
 * other, when the others' queues hold over the budget less what older
 * nodes hold of their half, so older nodes never keep a current node's
 * map waiting. */
bool srv_over_budget(struct srv_conn *c);
/* Whether c's queue counts as an older node's (out_legacy); set at
 * registration, before its first map. */
void srv_conn_set_legacy(struct srv_conn *c, bool legacy);
void srv_poll_cb(int fd, short ev, void *arg);
void srv_snap_free(struct ctl_server *s);
/* Drops the deltas kept for the snapshot (before it changes) / frees them. */
void srv_dsets_clear(struct ctl_server *s);
void srv_dsets_free(struct ctl_server *s);
void srv_node_to_peer(const struct ctl_node *nd, struct ctl_peer *p);

/* server_reg.c */
int srv_on_register(struct srv_conn *c, struct ctl_register_req *req);
int srv_on_endpoints(struct srv_conn *c, const struct ctl_endpoints *eps);
/* LOGOUT from a node on this (its own, authenticated) connection: the
 * node is removed as `nodes remove` does (peers get the removal), the
 * server answers LOGOUT and closes. A pending node's row goes too. */
int srv_on_logout(struct srv_conn *c);
int srv_go_online(struct srv_conn *c, const struct srv_node *n);
/* Node id's control connection comes from ip: its map entry's seen_ip
 * from the next snapshot refresh on. stored_version: the version of its
 * row as the store returned it just now (0: unknown), so that a row the
 * refresh reads anyway needs no version bump of its own. */
void srv_note_seen(struct ctl_server *s, int64_t id, const struct ctl_ip *ip,
                   int64_t stored_version);

/* server_seen.c: online connections per source address. up when one goes
 * online (withdraws the address from every node once it is shared by
 * more than SRV_SEEN_SHARED_MAX), down when it leaves; shared: whether
 * the address is published as nobody's seen_ip. */
struct srv_seen_slot;
void srv_seen_up(struct ctl_server *s, const struct ctl_ip *ip);
void srv_seen_down(struct ctl_server *s, const struct ctl_ip *ip);
bool srv_seen_shared(const struct ctl_server *s, const struct ctl_ip *ip);
void srv_seen_free(struct ctl_server *s);

/* server_writes.c */
/* Node id's endpoints and home relay, from its ENDPOINTS: dropped when
 * equal to what it has, else written at the next flush its bucket allows.
 * -ENOENT if id is not in the snapshot. */
int srv_wb_endpoints(struct ctl_server *s, int64_t id, const struct ctl_endpoints *eps);
/* Node id went offline (last_seen now), written at the next flush. */
void srv_wb_offline(struct ctl_server *s, int64_t id);
/* Node id is online again (the store says so): a waiting offline is void. */
void srv_wb_online(struct ctl_server *s, int64_t id);
/* Node id came online (the store does not say so yet): online and
 * last_seen now, written at the next flush (a waiting offline is void). */
void srv_wb_set_online(struct ctl_server *s, int64_t id);
/* Node id's version is bumped at the next flush (its expiry passed). */
void srv_wb_touch(struct ctl_server *s, int64_t id);
/* Writes the waiting writes in one transaction: those whose bucket allows,
 * or all. Before every broadcast's snapshot refresh. */
int srv_wb_flush(struct ctl_server *s, bool all);
void srv_wb_timer_cb(int fd, short ev, void *arg);
void srv_wb_free(struct ctl_server *s);

/* server_ha.c: several servers on one store. start: picks the id, tells
 * the store, and beats once (the nodes of stopped servers, and any left
 * online by a previous run, go offline); -1 with err filled on failure.
 * timers: the beat and the change notification, once the loop's events
 * exist. watch_try: asks the store for its change notification if there
 * is none now (from the poll). stop: at a clean stop, this server's nodes
 * offline and its row gone. */
int srv_ha_start(struct ctl_server *s, char *err, size_t errlen);
int srv_ha_timers(struct ctl_server *s);
void srv_ha_watch_try(struct ctl_server *s);
void srv_ha_stop(struct ctl_server *s);
void srv_ha_free(struct ctl_server *s);

/* server_rate.c */
/* Whether a handshake (message 1) from source may be answered now: takes
 * one token from the source's bucket and one from the global one, or none
 * (false) when either is empty. */
bool srv_hs_allow(struct ctl_server *s, const char *source, uint64_t now_ms);
void srv_hs_free(struct ctl_server *s);

/* server_relay.c */
int srv_on_relay_register(struct srv_conn *c, struct ctl_relay_register *req);
/* Re-reads the relays from the store; true when the list nodes see changed
 * (every node then gets a MAP_FULL). */
bool srv_relays_refresh(struct ctl_server *s);
/* Sends each relay connection its RELAY_STATE when it changed; closes the
 * connection of a relay that was removed. */
void srv_relays_broadcast(struct ctl_server *s);
/* Sends relay connection c the current RELAY_STATE if it changed and c's
 * queue has drained (from its write callback: a relay that was behind
 * when the state changed gets it then). */
int srv_relay_update(struct srv_conn *c);
void srv_relays_free(struct ctl_server *s);

/* What changed since one base version. */
struct delta_set {
	int64_t base;
	const struct srv_node **whole; /* whole entries (new or changed) */
	size_t n_whole;
	const struct srv_node **part; /* only endpoints / online changed */
	size_t n_part;
	uint64_t *removed;
	size_t n_removed;
	size_t est_bytes; /* at most what the delta's body takes */
	size_t map_bytes; /* about what a full map takes */
	/* bodies shared by every receiver of this base (NULL: not built) */
	uint8_t *patch_body, *legacy_body, *rel_body; /* rel: patches + relays */
	size_t patch_len, legacy_len, rel_len;
	/* the body does not fit a frame (or did not encode): every receiver
	 * of this base gets a full map instead (decided once per base) */
	bool patch_full, legacy_full, rel_full;
	/* patch_body and rel_body compressed, for nodes with CTL_CAP_ZSTD
	 * (once per base too; NULL: not built, or sent plain) */
	uint8_t *patch_z, *rel_z;
	size_t patch_zlen, rel_zlen;
	bool patch_zfail, rel_zfail;
	/* in s->dsets: built at this snapshot version; too_big: every
	 * receiver gets a full map (delta_too_big) */
	bool used, too_big;
	int64_t snap;
};

/* The patch that brings n from base to now: the fields changed after it. */
void srv_make_patch(const struct srv_node *n, int64_t base, struct ctl_peer_patch *pp);
/* Publishes tags as node i's tags in maps (the policy's effective tags):
 * its entry is encoded again and counts as changed now. */
void srv_snap_set_tags(struct ctl_server *s, size_t i, const char *tags);

/* server_policy.c: the access policy's compiled state (DESIGN.md, Access
 * control). A visibility class: the nodes one node sees, itself included,
 * shared by every node that sees the same (its content decides: equal ids,
 * equal hash); a node's inbound filter as its map carries it, shared the
 * same way. */
struct srv_pclass {
	size_t refs;
	uint8_t hash[16];
	size_t n;
	int64_t *ids; /* ascending */
};
struct srv_pfilter {
	size_t refs;
	uint8_t hash[32];
	struct ctl_filter f;
};
struct srv_pnode {
	int64_t id;
	struct srv_pclass *cls;     /* NULL: sees nobody */
	struct srv_pfilter *filter; /* never NULL */
	/* s->pol_gen at which its filter (what others may reach on it) or
	 * its published tags last changed */
	uint64_t gen_filter, gen_entry;
	char *src_tags, *eff_tags; /* stored tags it was compiled with, and the
	                            * tags the policy accepts (NULL: "") */
};
/* server_pfilter.c: a filter in map form. convert: core/policy's filter
 * (f) into out (its blocks with ports, one family each); -E2BIG past
 * CTL_FILTER_BLOCKS_MAX, CTL_FILTER_RANGES_MAX or SRV_FILTER_BYTES_MAX of
 * text (out empty then), -ENOMEM. */
#define SRV_FILTER_BYTES_MAX (2u * 1024u * 1024u)
struct policy_filter;
int srv_filter_convert(const struct policy_filter *f, struct ctl_filter *out);
void srv_filter_clear(struct ctl_filter *f);
void srv_pfilter_hash(struct srv_pfilter *pf);
struct srv_pfilter *srv_pfilter_ref(struct srv_pfilter *f);
void srv_pfilter_unref(struct srv_pfilter *f);

/* A policy is set: every node's map is filtered by it. */
bool srv_policy_on(const struct ctl_server *s);
/* Node id's compiled state; NULL when it was not compiled (it joined after
 * the last compile, or none succeeded): it sees nobody and its filter
 * denies everything until the next one (fail closed). */
const struct srv_pnode *srv_policy_node(const struct ctl_server *s, int64_t id);
/* The filter node id's map carries under the policy (never NULL). */
const struct srv_pfilter *srv_policy_filter_of(const struct ctl_server *s, int64_t id);
bool srv_pclass_has(const struct srv_pclass *cl, int64_t id);
struct srv_pclass *srv_pclass_ref(struct srv_pclass *cl);
void srv_pclass_unref(struct srv_pclass *cl);
/* What self may open on peer_id under peer_id's filter (either of self's
 * addresses): 1 with *out filled (free with srv_reach_clear), 0 nothing,
 * -ENOMEM. */
int srv_policy_reach(const struct ctl_server *s, const struct srv_node *self,
                     int64_t peer_id, struct ctl_reach *out);
void srv_reach_clear(struct ctl_reach *r);
/* A MAP_FULL's policy part for c (filter, reach; nothing without a
 * policy), recorded as what c's map holds; srv_policy_full_done frees what
 * it allocated. */
int srv_policy_full(struct srv_conn *c, struct ctl_map_full *mf);
void srv_policy_full_done(struct ctl_map_full *mf);
/* Records c's map as current with the policy's state (class, filter). */
void srv_policy_conn_record(struct srv_conn *c);
void srv_policy_conn_free(struct srv_conn *c);
/* After a snapshot refresh, from the broadcast: reads the store's policy
 * when the map version moved (a new revision is applied, a removed one
 * cleared), and compiles again when the nodes changed. */
void srv_policy_refresh(struct ctl_server *s);
/* The nodes whose filter or published tags the latest compile changed
 * (ascending), for a map current with gen: false when gen is older than
 * the state before that compile (look at every peer then). */
bool srv_policy_changed_since(const struct ctl_server *s, uint64_t gen,
                              const int64_t **ids, size_t *n);
/* The ids in n and not in o (added), and in o and not in n (removed),
 * both ascending; the last pair asked for is kept (every node of a class
 * asks for the same pair after a join). -ENOMEM. */
int srv_policy_class_diff(struct ctl_server *s, struct srv_pclass *o, struct srv_pclass *n,
                          const int64_t **add, size_t *n_add, const int64_t **rm,
                          size_t *n_rm);
/* The tags node id's map entry publishes, given its stored tags. */
const char *srv_policy_pub_tags(const struct ctl_server *s, int64_t id,
                                const char *stored);
void srv_policy_free(struct ctl_server *s);

/* server_pmap.c: a MAP_DELTA for a node under a policy (or whose map still
 * holds one): d filtered by what it sees, peers it now sees whole, ids it
 * no longer sees removed, its filter and changed reach entries; encoded
 * for it alone. As send_delta: 0 sent or nothing to send, 1 a full map
 * instead, or a negative errno. */
int srv_policy_send_delta(struct srv_conn *c, struct delta_set *d);
/* The node's own user or tags (its entry in the snapshot: tags as the
 * policy accepts them) differ from what its map holds (c->own_*). */
bool srv_own_owner_changed(const struct srv_conn *c);

#endif
