/* mesh-control's store: the mesh's durable state (meta, auth keys, nodes)
 * behind an interface, so a server database can be added beside SQLite.
 *
 * Every function returns 0 or a negative CTL_STORE_E* code; the store keeps a
 * readable message for the last failure (ctl_store_errmsg). Times are unix
 * seconds passed in by the caller (tests drive the clock).
 *
 * The server's static key: the store keeps only the PUBLIC key (meta). The
 * private key lives in a separate file the caller writes with mode 0600
 * (mesh-control init: DIR/server.key), so a copy of control.db never carries
 * it. control.db itself is still created 0600 in a 0700 directory.
 *
 * Map version: a counter bumped in the same transaction as every change that
 * alters the network map (node added, removed, renamed, approved, expired,
 * keys, endpoints, home relay, hostinfo, online). Each node row remembers the
 * version of its last change and removals leave a tombstone with theirs, so
 * a server can send a client the nodes changed and removed since the
 * version it last saw (ctl_store_node_list / ctl_store_node_removed). */
#ifndef MESH_CTL_STORE_H
#define MESH_CTL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_KEY_LEN             32
#define CTL_MESH_ID_LEN         32 /* hex characters */
#define CTL_DOMAIN_MAX          253
#define CTL_HOSTNAME_MAX        255
#define CTL_NAME_MAX            63 /* one DNS label */
#define CTL_STORE_TAGS_MAX      255
#define CTL_STORE_ENDPOINTS_MAX 1023
#define CTL_STORE_SEEN_MAX      45 /* an IPv6 address as text (INET6_ADDRSTRLEN - 1) */
#define CTL_HOSTINFO_MAX        4095
#define CTL_SECRET_MAX          80 /* "mkey-<id>-<48 hex>" plus NUL fits */
#define CTL_DEFAULT_DOMAIN      "mesh.internal"

/* 100.64.0.0/10 (host order) and the ULA /48 prefix length. */
#define CTL_V4_PREFIX 0x64400000u
#define CTL_V4_BITS   10
#define CTL_V6_BITS   48

enum ctl_store_err {
	CTL_STORE_OK = 0,
	CTL_STORE_EIO = -1,          /* database or file error */
	CTL_STORE_ENOTFOUND = -2,    /* no such node / key / meta */
	CTL_STORE_EEXISTS = -3,      /* name taken, already initialised */
	CTL_STORE_EINVAL = -4,       /* bad argument (too long, bad name, ...) */
	CTL_STORE_ENOMEM = -5,       /* out of memory */
	CTL_STORE_EFULL = -6,        /* address pool exhausted */
	CTL_STORE_EKEY_UNKNOWN = -7, /* no such auth key, or wrong secret */
	CTL_STORE_EKEY_REVOKED = -8,
	CTL_STORE_EKEY_EXPIRED = -9,
	CTL_STORE_EKEY_USED = -10,      /* single-use key already used */
	CTL_STORE_ESCHEMA = -11,        /* database from a newer version */
	CTL_STORE_ECONFLICT = -12,      /* node or disco key belongs to another node */
	CTL_STORE_EAUTH_REQUIRED = -13, /* no auth key and pending is off */
	CTL_STORE_EREMOVED = -14,       /* machine of a removed node, without a key made
	                                 * after the removal */
	CTL_STORE_EPENDING_FULL = -15,  /* no room to wait for approval (the queue
	                                 * or this source's share is full): retry */
	CTL_STORE_EPENDING_BUSY = -16,  /* a pending node holds this node or disco
	                                 * key: retry (not a conflict) */
	CTL_STORE_EEXPIRED = -17,       /* expired node, key older than the expiry */
};

const char *ctl_store_strerror(int err);

/* The checks both engines make on values before they store them (true:
 * acceptable). A user name is what the policy writes before '@': 1..63 of
 * [a-z0-9._-], starting with a letter or a digit. Tags: at most
 * CTL_STORE_TAGS_MAX characters, no spaces or control characters (NULL
 * is none). An API key description: at most CTL_APIKEY_DESC_MAX printable
 * characters (NULL is none). A domain: lowercase letters, digits, '-' and
 * '.', not starting with '.' or '-', at most CTL_DOMAIN_MAX. */
bool ctl_store_user_name_ok(const char *n);
bool ctl_store_tags_ok(const char *t);
bool ctl_store_desc_ok(const char *d);
bool ctl_store_domain_ok(const char *d);

struct ctl_meta {
	char mesh_id[CTL_MESH_ID_LEN + 1]; /* 16 random bytes, hex */
	uint32_t v4_prefix;                /* host order: CTL_V4_PREFIX */
	uint8_t v4_bits;                   /* CTL_V4_BITS */
	uint8_t ula[16];                   /* fdXX:XXXX:XXXX::, random at init */
	uint8_t ula_bits;                  /* CTL_V6_BITS */
	char domain[CTL_DOMAIN_MAX + 1];
	uint8_t server_public[CTL_KEY_LEN];
	int64_t created;
};

struct ctl_init_params {
	const char *domain; /* NULL: CTL_DEFAULT_DOMAIN */
	uint8_t server_public[CTL_KEY_LEN];
	int64_t now;
};

struct ctl_authkey {
	int64_t id;
	bool reusable;
	bool ephemeral;
	bool revoked;
	int64_t expiry; /* unix s, 0 = never */
	int64_t uses;
	int64_t created;
	char tags[CTL_STORE_TAGS_MAX + 1]; /* "tag:a,tag:b" or "" */
	char user[CTL_NAME_MAX + 1];       /* owner of the nodes it joins; "" = none */
};

struct ctl_authkey_params {
	bool reusable;
	bool ephemeral;
	int64_t expiry;   /* unix s, 0 = never */
	const char *tags; /* NULL or comma list */
	const char *user; /* NULL: none; else an existing user (ENOTFOUND if not) */
	int64_t now;
};

/* Users own nodes (through the auth key a node joined with) and, under
 * the policy's tagOwners, tags. A name is what the policy writes before
 * '@' (alice for "alice@"): 1..63 of [a-z0-9._-], starting with a letter or
 * digit. A user who still owns nodes or unrevoked keys cannot be removed. */
struct ctl_user {
	int64_t id;
	char name[CTL_NAME_MAX + 1];
	int64_t created;
	int64_t n_nodes; /* filled by ctl_store_user_list */
};

/* A node as the access policy sees it (ctl_store_node_owners); the
 * pointers are valid during the callback only. */
struct ctl_node_owner {
	int64_t id;
	const char *name;
	const char *user; /* "" = none */
	const char *tags; /* "tag:a,tag:b" or "" */
	uint32_t ipv4;    /* host order */
	const uint8_t *ipv6;
};

/* The access policy (core/policy): the HuJSON text as the admin wrote it,
 * and a revision counted from 1. Setting or clearing it bumps the map
 * version in the same transaction (every node's filter may change). */
struct ctl_policy_rec {
	char *text; /* malloc'ed, NUL-terminated; free() */
	size_t len;
	int64_t revision;
	int64_t set_at; /* unix s */
};

/* API keys for the HTTP admin API (admin.h): a secret "mapi-<id>-<48 hex>",
 * shown once; only its BLAKE2b hash is stored. */
#define CTL_APIKEY_DESC_MAX 255
struct ctl_apikey {
	int64_t id;
	bool revoked;
	int64_t created;
	int64_t last_used; /* unix s, 0 = never; updated at most once a minute */
	char description[CTL_APIKEY_DESC_MAX + 1]; /* "" if none */
};

/* A relay (mesh-relay) registered with its own single-use key
 * ("rkey-<id>-<48 hex>", only the hash stored). Its key is both its Noise
 * static key toward mesh-control and the key its clients seal to. */
#define CTL_RELAY_REGION_DEFAULT "default"
struct ctl_relay_rec {
	int64_t id;
	uint8_t key[CTL_KEY_LEN];
	char name[CTL_NAME_MAX + 1];   /* "<region>-<n>", unique */
	char region[CTL_NAME_MAX + 1]; /* a DNS label */
	char host[CTL_DOMAIN_MAX + 1]; /* what nodes dial: name or IP literal */
	uint16_t port;
	uint16_t stun_port; /* 0: no STUN */
	bool tls;
	int64_t created;
};

struct ctl_relay_reg {
	uint8_t key[CTL_KEY_LEN];
	const char *secret; /* NULL: resume (the key must be registered) */
	const char *region;
	const char *host;
	uint16_t port, stun_port;
	bool tls;
	int64_t now;
};

struct ctl_node {
	int64_t id;
	uint8_t machine_key[CTL_KEY_LEN];
	uint8_t node_key[CTL_KEY_LEN];
	uint8_t disco_key[CTL_KEY_LEN];
	char hostname[CTL_HOSTNAME_MAX + 1]; /* as reported */
	char name[CTL_NAME_MAX + 1];         /* unique DNS label */
	uint32_t ipv4;                       /* host order */
	uint8_t ipv6[16];
	char endpoints[CTL_STORE_ENDPOINTS_MAX + 1]; /* "ip:port,ip:port" */
	int home_relay;                              /* 0 = none */
	char hostinfo[CTL_HOSTINFO_MAX + 1];         /* JSON text or "" */
	int64_t auth_key_id;                         /* 0 = none (admin approved) */
	bool approved;
	bool ephemeral;
	bool online;
	char tags[CTL_STORE_TAGS_MAX + 1];
	char user[CTL_NAME_MAX + 1]; /* from its auth key; "" = none */
	int64_t created;
	int64_t last_seen;
	int64_t expiry;  /* unix s, 0 = never; expired when expiry <= now */
	int64_t version; /* map version of the node's last change */
	/* The server holding it online (ctl_store_set_server; 0: none, from
	 * before, or a store that does not say). Not in any map: a server
	 * compares it with its own id to know whether the store has the node
	 * online through it (server_reg.c). */
	int64_t online_server;
	/* Where its latest control connection came from, as text ("" none),
	 * written by the server that holds it: every server publishes it
	 * (or withholds it) as the node's seen_ip. */
	char seen_ip[CTL_STORE_SEEN_MAX + 1];
};

#define CTL_RECLAIM_MAX 16

struct ctl_store_reg {
	uint8_t machine_key[CTL_KEY_LEN];
	uint8_t node_key[CTL_KEY_LEN];
	uint8_t disco_key[CTL_KEY_LEN];
	const char *hostname;    /* as reported; sanitised into the name */
	const char *auth_secret; /* NULL: pending until an admin approves */
	int64_t now;
	/* Also mark the node online (last_seen = now) in the same transaction
	 * when it ends up approved and not expired. */
	bool set_online;
	/* With set_online: its seen_ip (at most CTL_STORE_SEEN_MAX; NULL:
	 * unchanged), in the same version as the registration, so peers get
	 * the node and where it is in one delta. */
	const char *seen_ip;
	/* A new machine without a secret: refused (EAUTH_REQUIRED) when
	 * no_pending; else stored pending, unless max_pending (0: no limit)
	 * nodes are pending already, or max_per_source (0: no limit) of them
	 * came from this source: then EPENDING_FULL (nothing is dropped). */
	bool no_pending;
	unsigned max_pending;
	unsigned max_per_source;
	/* Where it came from: an IPv4 address or an IPv6 /64 ("" unknown). */
	const char *source;
	/* The node asked to be ephemeral (REGISTER_REQ): stored ephemeral
	 * whatever its auth key says, when it is inserted or re-authorised. */
	bool ephemeral;
	/* Name reuse (an ephemeral container back under its hostname): ids
	 * of nodes holding the name this hostname gives or one of its
	 * suffixed forms, in the order of those names, that the caller found
	 * gone (no live connection, and it left or was last seen long ago:
	 * server_reg.c); none: n_reclaim 0. A new machine that registers
	 * ephemeral (asked, or by its key) with a valid secret takes the
	 * name of the first of them that is still an approved ephemeral node
	 * that registered a hostname giving the same name, and joined with
	 * the same auth key or, both having one, by the same user (the same
	 * users row, not merely the same name): that node is renamed first,
	 * in the same transaction, to the next free suffix of its hostname
	 * (nothing else of it changes: a dead one goes with the ephemeral
	 * timeout, a live one that was only reconnecting comes back under
	 * the new name). Otherwise they are left alone and the name gets a
	 * suffix as usual. */
	int64_t reclaim_ids[CTL_RECLAIM_MAX];
	unsigned n_reclaim;
};

/* Fields for ctl_store_node_update, chosen by mask. */
enum {
	CTL_UPD_ENDPOINTS = 1 << 0,
	CTL_UPD_DISCO = 1 << 1,
	CTL_UPD_HOSTINFO = 1 << 2,
	CTL_UPD_HOME_RELAY = 1 << 3,
	CTL_UPD_LAST_SEEN = 1 << 4,
	CTL_UPD_ONLINE = 1 << 5,
	CTL_UPD_NODE_KEY = 1 << 6,
	/* ctl_node_vol only, with CTL_UPD_ONLINE online: a re-assertion (a
	 * connection of this server that outlived a sweep), not a fresh
	 * registration: it applies only while the row is offline or its
	 * holder has no servers row (stopped, forgotten); a node another live
	 * server holds stays its. Without it, online makes the writer the
	 * holder. */
	CTL_UPD_REASSERT = 1 << 7,
	/* ctl_node_vol only: seen_ip (a change bumps the node's version) */
	CTL_UPD_SEEN = 1 << 8,
};

struct ctl_node_update {
	unsigned mask;
	const char *endpoints;
	uint8_t disco_key[CTL_KEY_LEN];
	uint8_t node_key[CTL_KEY_LEN];
	const char *hostinfo;
	int home_relay;
	int64_t last_seen;
	bool online;
};

/* One node's volatile fields for ctl_store_node_update_many (mask: any of
 * CTL_UPD_ENDPOINTS, CTL_UPD_HOME_RELAY, CTL_UPD_LAST_SEEN, CTL_UPD_ONLINE,
 * CTL_UPD_SEEN, CTL_UPD_REASSERT;
 * touch: bump its version even if nothing changed, say because its expiry
 * passed and others must drop it). */
struct ctl_node_vol {
	int64_t id;
	unsigned mask;
	bool touch;
	char endpoints[CTL_STORE_ENDPOINTS_MAX + 1];
	int home_relay;
	int64_t last_seen;
	bool online;
	char seen_ip[CTL_STORE_SEEN_MAX + 1]; /* "" clears it */
};

enum ctl_node_lookup {
	CTL_NODE_BY_ID,          /* key: const int64_t * */
	CTL_NODE_BY_MACHINE_KEY, /* key: const uint8_t[32] */
	CTL_NODE_BY_NODE_KEY,    /* key: const uint8_t[32] */
	CTL_NODE_BY_NAME,        /* key: const char * */
};

struct ctl_store;

/* Test-only fault point: called inside transactions at named points
 * ("register:before-commit", ...) and before the map-version read
 * ("map_version:read"); a nonzero return fails the operation
 * (rolled back), and the hook may also _exit() to simulate a crash. */
typedef int (*ctl_store_fault_fn)(const char *point, void *arg);

struct ctl_store_ops {
	void (*close)(struct ctl_store *st);
	int (*init)(struct ctl_store *st, const struct ctl_init_params *p);
	int (*get_meta)(struct ctl_store *st, struct ctl_meta *out);
	int (*map_version)(struct ctl_store *st, int64_t *out);
	int (*key_create)(struct ctl_store *st, const struct ctl_authkey_params *p,
	                  char *secret, size_t secretlen, struct ctl_authkey *out);
	int (*key_list)(struct ctl_store *st, struct ctl_authkey **out, size_t *n);
	int (*key_revoke)(struct ctl_store *st, int64_t id);
	int (*key_use)(struct ctl_store *st, const char *secret, int64_t now,
	               struct ctl_authkey *out);
	int (*node_register)(struct ctl_store *st, const struct ctl_store_reg *r,
	                     struct ctl_node *out, bool *created);
	int (*node_get)(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
	                struct ctl_node *out);
	int (*node_list)(struct ctl_store *st, int64_t since_version,
	                 struct ctl_node **out, size_t *n);
	int (*node_approve)(struct ctl_store *st, int64_t id);
	int (*node_rename)(struct ctl_store *st, int64_t id, const char *name);
	int (*node_remove)(struct ctl_store *st, int64_t id);
	int (*node_reap)(struct ctl_store *st, int64_t id, int64_t cutoff);
	int (*node_logout)(struct ctl_store *st, int64_t id);
	int (*node_removed)(struct ctl_store *st, int64_t since_version, int64_t **ids,
	                    size_t *n);
	int (*node_expire)(struct ctl_store *st, int64_t id, int64_t now);
	int (*node_pending_count)(struct ctl_store *st, int64_t *n);
	int (*node_counts)(struct ctl_store *st, int64_t *total, int64_t *approved);
	int (*node_update)(struct ctl_store *st, int64_t id,
	                   const struct ctl_node_update *u);
	void (*set_fault)(struct ctl_store *st, ctl_store_fault_fn fn, void *arg);
	int (*node_update_many)(struct ctl_store *st, const struct ctl_node_vol *v,
	                        size_t n, size_t *changed);
	int (*node_offline_all)(struct ctl_store *st, int64_t now, size_t *n);
	int (*apikey_create)(struct ctl_store *st, const char *description, int64_t now,
	                     char *secret, size_t secretlen, struct ctl_apikey *out);
	int (*apikey_list)(struct ctl_store *st, struct ctl_apikey **out, size_t *n);
	int (*apikey_revoke)(struct ctl_store *st, int64_t id);
	int (*apikey_check)(struct ctl_store *st, const char *secret, int64_t now,
	                    struct ctl_apikey *out);
	int (*relay_key_create)(struct ctl_store *st, int64_t now, char *secret,
	                        size_t secretlen, int64_t *id);
	int (*relay_register)(struct ctl_store *st, const struct ctl_relay_reg *r,
	                      struct ctl_relay_rec *out);
	int (*relay_list)(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n);
	int (*relay_remove)(struct ctl_store *st, const char *name);
	int (*user_create)(struct ctl_store *st, const char *name, int64_t now,
	                   struct ctl_user *out);
	int (*user_list)(struct ctl_store *st, struct ctl_user **out, size_t *n);
	int (*user_remove)(struct ctl_store *st, const char *name);
	int (*policy_get)(struct ctl_store *st, struct ctl_policy_rec *out);
	int (*policy_set)(struct ctl_store *st, const char *text, size_t len, int64_t now,
	                  int64_t *revision);
	int (*policy_clear)(struct ctl_store *st);
	int (*node_owners)(struct ctl_store *st, int64_t now,
	                   int (*fn)(void *arg, const struct ctl_node_owner *o),
	                   void *arg);
	/* Several servers on one store (see ctl_store_set_server). */
	const char *kind; /* "sqlite" or "postgresql" */
	void (*set_server)(struct ctl_store *st, int64_t server_id);
	int (*server_beat)(struct ctl_store *st, int64_t now, int64_t dead_after,
	                   size_t *swept);
	int (*server_leave)(struct ctl_store *st, int64_t now, size_t *n);
	int (*watch_fd)(struct ctl_store *st);
	int (*watch_drain)(struct ctl_store *st);
};

/* Each backend embeds this first; errmsg holds the last failure. */
struct ctl_store {
	const struct ctl_store_ops *ops;
	char errmsg[256];
};

/* Opens (creating if needed) DIR/control.db: DIR made 0700 if missing, the
 * file 0600; WAL, foreign keys, busy timeout; migrates the schema to the
 * current version. NULL on failure with the reason in err. */
struct ctl_store *ctl_store_open_sqlite(const char *dir, char *err, size_t errlen);

/* Opens the PostgreSQL database at url (a libpq URI such as
 * postgresql://USER@/DB?host=SOCKETDIR, or key=value words), creating or
 * migrating the schema (ctl_migrations, store_schema.h) inside one
 * transaction under an advisory lock, so servers started together migrate
 * once. Writers serialise on the meta row (SELECT ... FOR UPDATE at the
 * start of every write transaction), as SQLite's one writer does: a
 * single-use key spent by two servers at once is spent once, and map
 * versions commit in order. NULL on failure with the reason in err (the
 * password, if the URL has one, is not repeated). */
struct ctl_store *ctl_store_open_pg(const char *url, char *err, size_t errlen);

/* The store of a data directory: the PostgreSQL database whose URL DIR/
 * CTL_STORE_URL_FILE holds (written by `init --store`, mode 0600; one
 * line), else DIR/control.db (ctl_store_open_sqlite). */
#define CTL_STORE_URL_FILE "store.url"
struct ctl_store *ctl_store_open(const char *dir, char *err, size_t errlen);
/* Reads DIR/store.url into url (0: found; 1: no such file, the store is
 * SQLite; -1: unreadable, too long, or not 0600-private, err says why). */
int ctl_store_url_read(const char *dir, char *url, size_t cap, char *err,
                       size_t errlen);

/* "sqlite" or "postgresql". */
const char *ctl_store_kind(const struct ctl_store *st);

/* Several `serve` processes on one store. Each picks a random nonzero id
 * at start (ctl_store_set_server); from then on every write that marks a
 * node online also records that server as the node's holder
 * (nodes.online_server), and a write that marks a node offline does so
 * only while that server holds it (a node that moved to another server
 * stays online there). server_beat: records that this server is alive at
 * now (servers table), then marks offline (last_seen = now) every node held
 * by a server not heard from for dead_after seconds or by none (0, rows
 * from before), and forgets those servers: one transaction, one version
 * bump if any node changed; *swept (may be NULL): how many nodes.
 * server_leave: at a clean stop, this server's nodes offline and its row
 * removed. Without set_server the id is 0 and the old one-server
 * behaviour holds.
 * Clocks: PostgreSQL ignores the caller's now in server_beat and uses the
 * database's clock for the beat, the cutoff, last_seen and the forgetting
 * (servers on several hosts need not agree on the time); SQLite, one host,
 * uses now. A beat whose handle's previous successful beat is older than
 * dead_after (this server was paused or cut off) only records the beat and
 * sweeps nothing for dead_after more seconds (the others get a full
 * dead_after to beat again), so a database outage does not make the first
 * server back sweep all the others. Another server's beat more than
 * CTL_BEAT_FUTURE_MAX seconds ahead of the clock is logged once. */
#define CTL_BEAT_FUTURE_MAX 5
void ctl_store_set_server(struct ctl_store *st, int64_t server_id);
int ctl_store_server_beat(struct ctl_store *st, int64_t now, int64_t dead_after,
                          size_t *swept);
int ctl_store_server_leave(struct ctl_store *st, int64_t now, size_t *n);

/* Change notification between servers. watch_fd: -1 when the store has
 * none (SQLite: the caller polls map_version), else a descriptor that
 * becomes readable when another process may have changed the map version
 * (PostgreSQL: LISTEN CTL_STORE_CHANNEL on a second connection; every
 * bump notifies in its transaction, delivered at commit). watch_drain
 * reads what arrived: 1 if a change was announced, 0 if not, <0 if the
 * watch connection was lost (closed: the caller drops its event, polls,
 * and asks watch_fd again later, which reconnects). */
#define CTL_STORE_CHANNEL "mesh_map"
int ctl_store_watch_fd(struct ctl_store *st);
int ctl_store_watch_drain(struct ctl_store *st);

void ctl_store_close(struct ctl_store *st); /* accepts NULL */
const char *ctl_store_errmsg(const struct ctl_store *st);

/* Meta: once, at `mesh-control init` (EEXISTS if already done). get_meta
 * returns ENOTFOUND on a store never initialised. */
int ctl_store_init(struct ctl_store *st, const struct ctl_init_params *p);
int ctl_store_get_meta(struct ctl_store *st, struct ctl_meta *out);
int ctl_store_map_version(struct ctl_store *st, int64_t *out);

/* Auth keys. create writes the secret ("mkey-<id>-<48 hex>") once into
 * secret; only its BLAKE2b hash is stored. list returns a malloc'd array
 * (free()). key_use checks a secret (constant-time hash compare) and counts
 * a use (a single-use key is then spent); register does the same atomically
 * with the node insert. */
int ctl_store_key_create(struct ctl_store *st, const struct ctl_authkey_params *p,
                         char *secret, size_t secretlen, struct ctl_authkey *out);
int ctl_store_key_list(struct ctl_store *st, struct ctl_authkey **out, size_t *n);
int ctl_store_key_revoke(struct ctl_store *st, int64_t id);
int ctl_store_key_use(struct ctl_store *st, const char *secret, int64_t now,
                      struct ctl_authkey *out);

/* Nodes. register: a known machine key returns its node (same id, name and
 * addresses). An approved, unexpired node gets its node/disco keys and
 * hostname updated (the name stays) and its secret, if any, is ignored (not
 * needed, not spent). A pending or expired node with a valid secret is
 * re-authorised (approved, expiry cleared, keys updated, key used); an
 * expired node only with a key created after its expiry (else EEXPIRED);
 * without one nothing is written (nothing is stored before it is
 * authorised) and the caller refuses or holds it. A new machine key needs a
 * valid secret to be approved, else it is stored pending (approved=false;
 * see no_pending, max_pending), and a machine whose node was removed gets
 * EREMOVED unless its key was created after the removal. Node key, disco
 * key and name are unique among approved nodes: one an approved node holds
 * is ECONFLICT (disco keys must be unique: nodes tell peers apart by them);
 * one a pending node holds is taken from it by an authorised registration
 * (a colliding pending row is dropped, a pending row with the name is
 * renamed) and is EPENDING_BUSY for another pending one. Key check, key
 * use and insert are one
 * transaction: a failed registration does not spend a single-use key. A
 * machine retrying with the spent single-use key it registered with resumes
 * (the first answer may have been lost) instead of getting EKEY_USED.
 * *created (may be NULL) says whether a node was inserted. */
int ctl_store_node_register(struct ctl_store *st, const struct ctl_store_reg *r,
                            struct ctl_node *out, bool *created);
int ctl_store_node_get(struct ctl_store *st, enum ctl_node_lookup by, const void *key,
                       struct ctl_node *out);
int ctl_store_node_by_id(struct ctl_store *st, int64_t id, struct ctl_node *out);
int ctl_store_node_by_machine_key(struct ctl_store *st, const uint8_t *mk,
                                  struct ctl_node *out);
int ctl_store_node_by_node_key(struct ctl_store *st, const uint8_t *nk,
                               struct ctl_node *out);
int ctl_store_node_by_name(struct ctl_store *st, const char *name, struct ctl_node *out);
/* Nodes with version > since_version (0: all), by id; malloc'd array. */
int ctl_store_node_list(struct ctl_store *st, int64_t since_version,
                        struct ctl_node **out, size_t *n);
int ctl_store_node_approve(struct ctl_store *st, int64_t id);
int ctl_store_node_rename(struct ctl_store *st, int64_t id, const char *name);
int ctl_store_node_remove(struct ctl_store *st, int64_t id);
/* The ephemeral reaper's removal: as node_remove, but only while the node
 * is still offline with last_seen < cutoff, checked in the removing
 * transaction (under the write lock). A node that came back through
 * another server since the caller looked is kept: ENOTFOUND, with a
 * message that says it changed. */
int ctl_store_node_reap(struct ctl_store *st, int64_t id, int64_t cutoff);
/* The node's own LOGOUT: removed as by node_remove (peers get the removal
 * in deltas) but its machine is not marked removed, so the same machine
 * may join again with the key it had (it throws its keys away anyway). */
int ctl_store_node_logout(struct ctl_store *st, int64_t id);
/* Ids of nodes removed at a map version > since_version (the other half of
 * a delta); malloc'd array. */
int ctl_store_node_removed(struct ctl_store *st, int64_t since_version, int64_t **ids,
                           size_t *n);
int ctl_store_node_expire(struct ctl_store *st, int64_t id, int64_t now);
/* How many nodes wait for approval (their removals leave no tombstone:
 * a reader of deltas that holds pending nodes compares this count). */
int ctl_store_node_pending_count(struct ctl_store *st, int64_t *n);
/* How many nodes there are, and how many of them are approved (one COUNT
 * query: the admin API's status, without loading every node). */
int ctl_store_node_counts(struct ctl_store *st, int64_t *total, int64_t *approved);
int ctl_store_node_update(struct ctl_store *st, int64_t id,
                          const struct ctl_node_update *u);
void ctl_store_set_fault(struct ctl_store *st, ctl_store_fault_fn fn, void *arg);
/* Volatile fields of many nodes in one transaction, written without an
 * fsync of its own (SQLite's synchronous=NORMAL in WAL mode: a crash of the
 * process loses nothing, a power cut may lose this transaction until the
 * next durable commit or checkpoint). A field equal to the stored one is no
 * change; the map version is bumped once, and only if some node's map
 * entry changed (endpoints, home relay, online, or last_seen of a node
 * that is offline) or was touched; each such node gets that version.
 * Unknown ids are skipped. *changed (may be NULL): nodes whose entry
 * changed. */
int ctl_store_node_update_many(struct ctl_store *st, const struct ctl_node_vol *v,
                               size_t n, size_t *changed);
/* Every node still marked online is marked offline (last_seen = now), in
 * one statement and one transaction with one version bump (none if no node
 * was online). *n (may be NULL): how many. */
int ctl_store_node_offline_all(struct ctl_store *st, int64_t now, size_t *n);

/* API keys (admin.h). create writes the secret ("mapi-<id>-<48 hex>", fits
 * CTL_SECRET_MAX) once; description may be NULL (printable, at most
 * CTL_APIKEY_DESC_MAX). list: malloc'd array by id (free()). check compares
 * hashes in constant time: EKEY_UNKNOWN for a malformed, unknown or wrong
 * secret, EKEY_REVOKED for a revoked key's right secret; on success it
 * records last_used (at most one write a minute per key). */
int ctl_store_apikey_create(struct ctl_store *st, const char *description, int64_t now,
                            char *secret, size_t secretlen, struct ctl_apikey *out);
int ctl_store_apikey_list(struct ctl_store *st, struct ctl_apikey **out, size_t *n);
int ctl_store_apikey_revoke(struct ctl_store *st, int64_t id);
int ctl_store_apikey_check(struct ctl_store *st, const char *secret, int64_t now,
                           struct ctl_apikey *out);

/* Users (struct ctl_user). create: EEXISTS if taken, EINVAL for a bad
 * name. list: malloc'd array by name (free()), with n_nodes. remove:
 * ENOTFOUND, or EEXISTS while nodes or unrevoked auth keys belong to it
 * (the message says how many and what to do). */
int ctl_store_user_create(struct ctl_store *st, const char *name, int64_t now,
                          struct ctl_user *out);
int ctl_store_user_list(struct ctl_store *st, struct ctl_user **out, size_t *n);
int ctl_store_user_remove(struct ctl_store *st, const char *name);

/* The policy (struct ctl_policy_rec). get: ENOTFOUND when none is set.
 * set stores text as given (the caller has parsed, compiled and tested it)
 * and bumps the revision and the map version; clear removes it (ENOTFOUND
 * if none) and bumps the map version. */
int ctl_store_policy_get(struct ctl_store *st, struct ctl_policy_rec *out);
int ctl_store_policy_set(struct ctl_store *st, const char *text, size_t len, int64_t now,
                         int64_t *revision);
int ctl_store_policy_clear(struct ctl_store *st);
void ctl_policy_rec_free(struct ctl_policy_rec *r);
/* Calls fn for every node in the network map at now (approved, not
 * expired), by id, from one read that loads no whole node records (what a
 * policy compile needs: about 100 bytes a node, not 6 KB). fn must not use
 * the store; a nonzero return stops the walk and is returned. */
int ctl_store_node_owners(struct ctl_store *st, int64_t now,
                          int (*fn)(void *arg, const struct ctl_node_owner *o),
                          void *arg);

/* Relays. key_create writes a single-use secret "rkey-<id>-<48 hex>" (fits
 * CTL_SECRET_MAX). register: a known key resumes (its fields updated from r,
 * the name kept); a new key needs an unused, unrevoked secret and gets the
 * name "<region>-<n>". EKEY_UNKNOWN for an unknown key without a (valid)
 * secret, EKEY_USED / EKEY_REVOKED for a spent / revoked one, EINVAL for a
 * region that is not a DNS label or a bad host. Every change bumps the map
 * version (the relay map is part of every node's map). list: by id,
 * malloc'd (free()). remove: by name, ENOTFOUND if none. */
int ctl_store_relay_key_create(struct ctl_store *st, int64_t now, char *secret,
                               size_t secretlen, int64_t *id);
int ctl_store_relay_register(struct ctl_store *st, const struct ctl_relay_reg *r,
                             struct ctl_relay_rec *out);
int ctl_store_relay_list(struct ctl_store *st, struct ctl_relay_rec **out, size_t *n);
int ctl_store_relay_remove(struct ctl_store *st, const char *name);

#endif
