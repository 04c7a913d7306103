/* Private to core/control/client*.c (and the tests and fuzzer that poke at
 * the merged map). Not a public interface. */
#ifndef MESH_CTL_CLIENT_INT_H
#define MESH_CTL_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/client.h"
#include "core/control/frame.h"
#include "core/control/noise_ik.h"

struct bufferevent;
struct event;

#define CTL_CLIENT_STABLE_MS 60000 /* a session this long resets the backoff */
/* ctl_client_redial: spread over this much (a fleet changes network together) */
#define CTL_CLIENT_REDIAL_SPREAD_MS 2000

struct ctl_client {
	/* configuration (copied) */
	struct event_base *base;
	struct evdns_base *dns;
	/* The control addresses, in the order they are tried (ctl_client_fail
	 * moves to the next); host/port is the current one, hosts[cur]. */
	char *hosts[CTL_CLIENT_ADDRS_MAX];
	uint16_t ports[CTL_CLIENT_ADDRS_MAX];
	uint8_t n_addrs, cur;
	uint8_t round_fails; /* addresses failed since the last backoff wait
	                      * or stable session: n_addrs of them back off */
	const char *host;
	uint16_t port;
	uint8_t server_key[CTL_KEY_LEN];
	uint8_t machine_priv[CTL_KEY_LEN];
	uint8_t node_key[CTL_KEY_LEN];
	uint8_t disco_key[CTL_KEY_LEN];
	char hostname[CTL_DNSNAME_MAX];
	char os[CTL_OS_MAX];
	char version[CTL_VERSION_MAX];
	char auth_key[CTL_AUTHKEY_MAX]; /* wiped after the first "ok" */
	uint8_t n_tags;
	char tags[CTL_TAGS_MAX][CTL_TAG_MAX];
	uint32_t keepalive_ms, timeout_ms, backoff_min_ms, backoff_max_ms;
	uint32_t connect_timeout_ms;
	struct ctl_client_callbacks cb;
	void *ctx;
	bool relay_role;
	struct ctl_relay relay;
	bool ephemeral; /* REGISTER_REQ ephemeral */

	/* state */
	enum ctl_client_state state;
	char detail[CTL_TEXT_MAX];
	struct bufferevent *bev;
	bool have_hs, have_transport;
	struct ctl_noise_handshake hs;
	struct ctl_noise_transport t;
	struct ctl_frame_decoder dec;
	struct event *ev_timer; /* backoff retry / connect+handshake timeout */
	struct event *ev_tick;  /* keepalive and receive watchdog */
	struct event *ev_eps;   /* send changed endpoints from the loop */
	uint64_t last_rx_ms, last_tx_ms, session_start_ms;
	uint64_t retry_at_ms;
	uint32_t backoff_cur_ms;
	bool notify;     /* a BACKOFF set without on_state: reported from the loop */
	bool attempted;  /* a first connection attempt was made */
	bool registered; /* a REGISTER_RESP ok was seen in this client's life */
	bool have_eps, eps_sent_valid;
	struct ctl_endpoints eps, eps_sent;
	bool have_map;
	struct ctl_map_full map;
	/* A chunked MAP_FULL being received (MAP_PEERS until more is false). */
	bool assembling;
	struct ctl_map_full pending;

	bool logging_out; /* LOGOUT sent: the answer or a close ends it all */

	/* decompresses ZMAP bodies (made at the first one) */
	struct ctl_zdec *zdec;

	/* status counters */
	uint64_t sessions, reconnects, maps_full, maps_delta, bytes_in, bytes_out;
	uint64_t zmaps, zmaps_refused;
	int64_t connected_since, last_map;

	/* callback re-entrancy: ctl_client_free from inside a callback */
	int depth;
	bool dead;
};

uint64_t ctl_client_now_ms(void);

/* client.c */
void ctl_client_set_state(struct ctl_client *c, enum ctl_client_state st,
                          const char *detail, const struct ctl_register_resp *resp);
/* Ends the session and schedules a retry (BACKOFF), with a readable reason. */
void ctl_client_fail(struct ctl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctl_client_stop(struct ctl_client *c); /* closes the connection, no retry */
void ctl_client_session_up(struct ctl_client *c);
/* The next retry wait (jittered) and the doubling; a session that started
 * CTL_CLIENT_STABLE_MS or more before now resets it first. */
uint32_t ctl_client_backoff_next(struct ctl_client *c, uint64_t now);

/* client_proto.c */
void ctl_client_start_handshake(struct ctl_client *c);
void ctl_client_on_read(struct ctl_client *c);
int ctl_client_send(struct ctl_client *c, const struct ctl_msg *m);
void ctl_client_send_endpoints(struct ctl_client *c, bool force);

/* client_map.c */
/* Sorts a decoded full map's peers (and reach entries) by id. */
void ctl_map_sort(struct ctl_map_full *map);
/* Frees what the map owns and zeroes it. */
void ctl_map_clear(struct ctl_map_full *map);
/* Replaces c->map with *full (taken: *full is zeroed) and fills the change
 * lists (allocated; free() them). -ENOMEM leaves everything unchanged. */
int ctl_client_map_replace(struct ctl_client *c, struct ctl_map_full *full,
                           uint64_t **changed, size_t *n_changed, uint64_t **removed,
                           size_t *n_removed);
/* The change lists a delta will produce on map (removed: only ids present). */
int ctl_map_delta_changes(const struct ctl_map_full *map, const struct ctl_map_delta *d,
                          uint64_t **changed, size_t *n_changed, uint64_t **removed,
                          size_t *n_removed);
/* More chunks without peers than this in one map: -EPROTO. */
#define CTL_MAP_EMPTY_CHUNKS_MAX 16
/* Appends a MAP_PEERS chunk's peers to a map being assembled: -E2BIG past
 * CTL_MAP_PEERS_MAX in all, -EPROTO past CTL_MAP_EMPTY_CHUNKS_MAX chunks
 * without peers, -ENOMEM (the map is unchanged then). */
int ctl_map_append_chunk(struct ctl_map_full *map, const struct ctl_map_peers *chunk);
/* Sorts an assembled map; -EINVAL if two chunks named one peer id. Then
 * ctl_map_policy_tidy. */
int ctl_map_finish(struct ctl_map_full *map);
/* ctl_map_apply_delta_work that also says whether the policy part changed
 * (ctl_map_change.policy): the filter was set or cleared, a reach entry
 * came, changed or went, or a peer's user or tags differ. */
int ctl_map_apply_delta_policy(struct ctl_map_full *map, const struct ctl_map_delta *delta,
                               struct ctl_map_work *work, bool *policy_changed);

/* client_policy.c: the filter and reach entries of the merged map. */
/* A whole map (full or assembled, peers sorted): reach sorted by id, one
 * entry per id, only for peers of the map; none without a filter. */
void ctl_map_policy_tidy(struct ctl_map_full *map);
/* One delta's policy change, made before the map is touched (all that can
 * fail), then committed or dropped. */
struct ctl_policy_step {
	int op; /* CTL_FILTER_KEEP, _SET, _CLEAR */
	bool changed;
	/* What happens to map->reach: NONE drops every entry, KEEP leaves it,
	 * INPLACE puts reach[i] at map->reach[at[i]] (replacements only: a
	 * delta costs its entries), REBUILD makes reach the new list. */
	enum { CTL_REACH_NONE, CTL_REACH_KEEP, CTL_REACH_INPLACE, CTL_REACH_REBUILD } mode;
	struct ctl_filter filter; /* the copy for SET */
	struct ctl_reach *reach;
	size_t n_reach;
	size_t *at;     /* INPLACE: where each goes */
	bool *fresh;    /* REBUILD: reach[i] is a copy owned here (else the map's) */
	bool *old_kept; /* REBUILD: map->reach[i] carried over */
};
int ctl_map_policy_prepare(struct ctl_map_full *map, const struct ctl_map_delta *d,
                           struct ctl_policy_step *st);
void ctl_map_policy_commit(struct ctl_map_full *map, struct ctl_policy_step *st);
void ctl_map_policy_abort(struct ctl_policy_step *st);

#endif
