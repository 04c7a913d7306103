/* Control protocol messages: the bodies carried in transport frames between a
 * node and mesh-control (see frame.h: type byte || body). Each body is one
 * compact JSON object; this module turns it into C structs and back.
 *
 * Decoding treats the body as hostile: the length is checked before parsing
 * (CTL_MSG_MAX_LEN), nesting is bounded (CTL_MSG_MAX_DEPTH) and, for a
 * caller that asks (ctl_msg_decode_limited), so is the count of values before jansson
 * sees it, duplicate keys are refused, every known field is type- and
 * range-checked, and unknown fields are ignored (newer peers may add some).
 * Keys are 32 bytes in canonical base64; addresses and prefixes are parsed
 * with inet_pton; names are DNS labels / names.
 *
 * JSON shapes (field: JSON type), "?" = optional on decode:
 *   REGISTER_REQ  {auth_key?: str, node_key: b64, disco_key: b64,
 *                  hostname: str, hostinfo: {os: str, version: str},
 *                  tags?: [str], caps?: int}
 *                 (caps: CTL_CAP_* bits the node understands; an older
 *                  node sends none and gets single MAP_FULLs and whole
 *                  peer entries in deltas)
 *                 (ephemeral?: bool, absent = false: the node keeps no
 *                  state (a container); the server stores it ephemeral
 *                  whatever its auth key says. Sent only when true; an
 *                  older server ignores it)
 *   REGISTER_RESP {status: "ok"|"pending"|"refused", code?: int, reason?: str,
 *                  and when ok: node_id: int, name: label, fqdn: name,
 *                  ipv4: str, ipv6: str, domain: name;
 *                  when pending (optional): node_id, name (the name the
 *                  server gave, which an admin approves)}
 *   ENDPOINTS     {endpoints: ["ip:port" | "[ip6]:port"], home_relay?: int}
 *   MAP_FULL      {version: int, self: {id, name, addresses, user?, tags?},
 *                  dns: {domain: name, magic_dns: ipv4},
 *                  relays?: [relay], peers: [peer], more?: bool,
 *                  filter?: filter, reach?: [reach]}
 *                 (more: true only to a node with CTL_CAP_MAP_CHUNKS: the
 *                  rest of the peers follow in MAP_PEERS messages, the
 *                  last one with more false; no other map message comes
 *                  between, a KEEPALIVE or an ERROR may)
 *                 (filter, reach: only to a node with CTL_CAP_POLICY, and
 *                  only in the first message of a chunked map. No filter:
 *                  no policy, everything is allowed; reach without a
 *                  filter is refused. A reach entry for an id that is not
 *                  a peer of the assembled map is dropped by the node.)
 *                 (self.user, self.tags: the node's own owner, with the
 *                  syntax and limits of a peer's user and tags (below):
 *                  its user, and its tags as the policy accepts them, or
 *                  its stored tags without a policy; absent when none or
 *                  from an older server; an older node ignores them)
 *   MAP_PEERS     {peers: [peer], more?: bool}
 *   ZMAP          not JSON: a MAP_FULL, MAP_PEERS or MAP_DELTA body
 *                 compressed (zmsg.h), to a node with CTL_CAP_ZSTD
 *   MAP_DELTA     {version: int, base_version: int, peers?: [peer],
 *                  removed?: [int], patches?: [patch], relays?: [relay],
 *                  filter?: filter | null, reach?: [reach],
 *                  self?: {user?: str, tags?: [str]}}
 *                 (self: the node's own owner changed (a policy change
 *                  dropped one of its tags, an admin retagged it): the
 *                  whole new user and tags, a field absent = none; self
 *                  absent = unchanged. Sent to a node with CTL_CAP_POLICY
 *                  only, in a delta of its own; an older node ignores it)
 *                 (CTL_CAP_POLICY: filter an object = SET, the node's
 *                  whole new filter; filter null = CLEAR, the policy is
 *                  gone: allow all, every reach entry dropped (reach in
 *                  the same delta is refused); absent = KEEP. reach:
 *                  entries set or replaced by id (an entry without ports
 *                  and icmp takes away what the peer's entry allowed); a
 *                  removed peer's entry goes with it, and the node drops
 *                  entries for ids that are not its peers after the delta
 *                  or that come while it has no filter)
 *                 (relays: the whole new relay list, only to a node with
 *                  CTL_CAP_RELAYS_DELTA; version may equal base_version
 *                  when only the relays changed)
 *                 (patches only to a node with CTL_CAP_PEER_PATCH; a
 *                  delta to such a node may name the node itself, which
 *                  it ignores)
 *   patch         {id: int, endpoints?: [ip:port], home_relay?: int,
 *                  online?: bool, last_seen?: int, seen_ip?: ip}  (the
 *                  fields that changed; the others keep their values)
 *   KEEPALIVE     {}
 *   LOGOUT        {} (node -> server: remove me now, as `nodes remove`
 *                  does; the server answers LOGOUT {} and closes the
 *                  connection. An older server closes it unanswered.)
 *   ERROR         {code: int, text: str}
 *   RELAY_REGISTER {auth_key?: str, relay: relay} (a mesh-relay, after the
 *                  handshake with its relay key, instead of REGISTER_REQ)
 *   RELAY_STATE   {version: int, self: relay, keys: [b64], relays: [relay]}
 *                  (to a relay: the node keys it admits and every relay,
 *                  its siblings included; sent whole on every change)
 *   relay         {id: int, region: label, host: name, port: int,
 *                  name?: label, stun_port?: int (0 = none), tls?: bool,
 *                  key?: b64}  (the optional fields came with mesh-relay;
 *                  an older server sends none and an older node ignores them)
 *   peer          {id: int, name: label, node_key: b64, disco_key: b64,
 *                  addresses: [ip], allowed_ips: [prefix],
 *                  endpoints?: [ip:port], home_relay?: int, online?: bool,
 *                  last_seen?: int (unix seconds, 0 = never),
 *                  seen_ip?: ip}
 *                 (seen_ip: the source address of the node's latest
 *                  control connection as the server saw it, unlike
 *                  endpoints, which the node reports itself; absent until
 *                  the node connected to this server process. An older
 *                  node ignores it.)
 *                 (CTL_CAP_POLICY, absent when none: user?: str, the
 *                  owner's name, 1..63 of [a-z0-9._-] starting with a
 *                  letter or digit; tags?: [str], at most CTL_TAGS_MAX of
 *                  "tag:NAME" (NAME of [A-Za-z0-9._-], 63 bytes in all),
 *                  held comma-joined in ctl_peer.tags, under 256 bytes)
 *   filter        {tcp?: [blk], udp?: [blk], icmp?: [blk]} (a protocol
 *                  absent or [] : nothing of it is accepted)
 *   blk           [LO: ip, HI: ip, PORTS: str]  sources LO..HI may open
 *                  PORTS; LO and HI of one family, LO <= HI, IPv4 written
 *                  as IPv4 (never ::ffff:a.b.c.d). Blocks of one protocol
 *                  are ascending and disjoint in core/policy's address
 *                  order: one 128-bit space where IPv4 a.b.c.d sits at
 *                  ::ffff:a.b.c.d (so an IPv6 block that spans
 *                  ::ffff:0:0/96 holds those IPv4 sources too). At most
 *                  CTL_FILTER_BLOCKS_MAX blocks and CTL_FILTER_RANGES_MAX
 *                  port ranges in one filter.
 *   PORTS         "22,80-90": ports 1..65535 and ranges FIRST-LAST, in
 *                  ascending order, disjoint (adjacent ones are merged),
 *                  or "*" (TCP/UDP: 1-65535); an ICMP block's is "*"
 *                  (held as 0-65535). The encoder sends a TCP/UDP range
 *                  starting at 0 from 1 (core/policy's "*" is 0-65535)
 *                  and leaves out blocks without ports.
 *   reach         {id: int, tcp?: PORTS, udp?: PORTS, icmp?: bool}: what
 *                  this node may open on peer id; ids unique in one
 *                  message, at most CTL_MAP_PEERS_MAX entries and
 *                  CTL_REACH_RANGES_MAX ranges per protocol
 * Peer ids are unique within one message's peers and patches together, and
 * within one map's chunks together.
 * Integers are 0..INT64_MAX unless narrower (ports 1..65535, relay ids and
 * codes 0..UINT32_MAX). */
#ifndef MESH_CTL_MSG_H
#define MESH_CTL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_MSG_MAX_LEN   (4 * 1024 * 1024) /* body bytes accepted by decode */
#define CTL_MSG_MAX_DEPTH 16                /* nesting of [ and { */
#define CTL_KEY_LEN       32

/* String buffers include the terminating NUL. */
#define CTL_LABEL_MAX   64  /* a DNS label: 1..63 */
#define CTL_DNSNAME_MAX 254 /* a DNS name: 1..253 */
#define CTL_AUTHKEY_MAX 128
#define CTL_OS_MAX      32
#define CTL_VERSION_MAX 64
#define CTL_TAG_MAX     64
#define CTL_USER_MAX    64  /* a user name: 1..63, policy syntax (NAME) */
#define CTL_PEER_TAGS_MAX 256 /* a peer's tags, comma-joined: "tag:a,tag:b" */
#define CTL_TEXT_MAX    256

#define CTL_TAGS_MAX      16
#define CTL_ENDPOINTS_MAX 16
#define CTL_ADDRS_MAX     4  /* mesh addresses of one node (v4 + v6 today) */
#define CTL_ALLOWED_MAX   32 /* allowed-IP prefixes of one peer */
#define CTL_PEERS_MAX     10000 /* peers (or patches) in one message */
#define CTL_REMOVED_MAX   CTL_PEERS_MAX
#define CTL_RELAYS_MAX    256
/* Peers in one map assembled from a MAP_FULL and its MAP_PEERS chunks
 * (about 1.1 KB each in memory on the node). */
#define CTL_MAP_PEERS_MAX 65536
/* Policy in a map: filter blocks (all protocols) and their port ranges,
 * and port ranges in one reach entry (per protocol). A node's filter that
 * needs more is sent as deny-all by the server (fail closed), and logged. */
#define CTL_FILTER_BLOCKS_MAX 65536
#define CTL_FILTER_RANGES_MAX 262144
#define CTL_REACH_RANGES_MAX  4096
/* Node keys in one RELAY_STATE (a relay admits every node; 47 bytes each
 * on the wire, so this fits a frame). */
#define CTL_RELAY_KEYS_MAX 65536

/* REGISTER_REQ caps: what a node understands beyond the first protocol. */
#define CTL_CAP_MAP_CHUNKS 0x1u /* MAP_FULL with more, then MAP_PEERS */
#define CTL_CAP_PEER_PATCH 0x2u /* MAP_DELTA patches; itself in deltas */
#define CTL_CAP_RELAYS_DELTA 0x4u /* a changed relay list in MAP_DELTA */
/* Map bodies may come compressed (CTL_MSG_ZMAP, core/control/zmsg.h), and
 * a map's MAP_PEERS chunks name every node of their id range, the node
 * itself too (it drops itself), so the server compresses each chunk once
 * for every node. Used with CTL_CAP_MAP_CHUNKS and CTL_CAP_PEER_PATCH. */
#define CTL_CAP_ZSTD 0x8u
/* Access policy (core/policy, DESIGN.md "Access control"): the map carries
 * the node's own inbound filter, what it may reach on each peer, and each
 * peer's user and (effective) tags; a node under a policy sees only the
 * peers it may talk to or that may talk to it. Under a policy the server
 * refuses a node without this cap (it could not enforce anything). */
#define CTL_CAP_POLICY 0x10u
#define CTL_CAPS_ALL                                                                     \
	(CTL_CAP_MAP_CHUNKS | CTL_CAP_PEER_PATCH | CTL_CAP_RELAYS_DELTA | CTL_CAP_ZSTD |     \
	 CTL_CAP_POLICY)

/* Values are the transport frame's type byte: stable, never reused. */
enum ctl_msg_type {
	CTL_MSG_REGISTER_REQ = 0x10,
	CTL_MSG_REGISTER_RESP = 0x11,
	CTL_MSG_ENDPOINTS = 0x12,
	CTL_MSG_MAP_FULL = 0x13,
	CTL_MSG_MAP_DELTA = 0x14,
	CTL_MSG_KEEPALIVE = 0x15,
	CTL_MSG_ERROR = 0x16,
	CTL_MSG_RELAY_REGISTER = 0x17,
	CTL_MSG_RELAY_STATE = 0x18,
	CTL_MSG_MAP_PEERS = 0x19,
	/* a map body compressed with zstd: inner type byte || one zstd frame
	 * (core/control/zmsg.h); only to a node with CTL_CAP_ZSTD. Not JSON:
	 * ctl_msg_decode refuses it (-EPROTO); unwrap it first. */
	CTL_MSG_ZMAP = 0x1A,
	/* node -> server, and the server's answer: the node leaves the mesh
	 * (an ephemeral node stopping); empty body. */
	CTL_MSG_LOGOUT = 0x1B,
};

/* Kinds of decode/encode failure (struct ctl_msg_err.code). */
enum ctl_msg_errcode {
	CTL_MSG_E_NONE = 0,
	CTL_MSG_E_TYPE_UNKNOWN, /* not a type this module knows */
	CTL_MSG_E_TOO_BIG,      /* body longer than CTL_MSG_MAX_LEN */
	CTL_MSG_E_DEPTH,        /* nesting deeper than CTL_MSG_MAX_DEPTH */
	CTL_MSG_E_SYNTAX,       /* not JSON, not an object, or a duplicate key */
	CTL_MSG_E_MISSING,      /* a required field is absent */
	CTL_MSG_E_FIELD_TYPE,   /* a field has the wrong JSON type */
	CTL_MSG_E_VALUE,        /* a field's value is out of range or malformed */
	CTL_MSG_E_TOO_MANY,     /* an array is longer than its cap */
	CTL_MSG_E_NOMEM,
	CTL_MSG_E_TOKENS, /* more JSON values than the caller allows */
};

struct ctl_msg_err {
	enum ctl_msg_errcode code;
	char text[192]; /* "peers[3].node_key: not 32 bytes of base64" */
};

/* Registration status and refusal reasons (REGISTER_RESP). Unknown codes
 * from a newer server decode as they are. */
enum ctl_reg_status {
	CTL_REG_OK = 0,
	CTL_REG_PENDING = 1, /* waiting for an admin to approve */
	CTL_REG_REFUSED = 2,
};
enum ctl_reason {
	CTL_REASON_NONE = 0,
	CTL_REASON_AUTH_KEY_UNKNOWN = 1,
	CTL_REASON_AUTH_KEY_EXPIRED = 2,
	CTL_REASON_AUTH_KEY_REVOKED = 3,
	CTL_REASON_AUTH_KEY_USED = 4, /* single-use key already used */
	CTL_REASON_NODE_REMOVED = 5,
	CTL_REASON_NODE_EXPIRED = 6,
	CTL_REASON_AUTH_REQUIRED = 7, /* no key, and the server holds none
	                               * for approval (serve --no-pending) */
	CTL_REASON_INTERNAL = 8,      /* transient: the node retries */
	CTL_REASON_KEY_CONFLICT = 9,  /* node or disco key is another node's */
	/* the map is too big for one message: the node must be upgraded to
	 * a version that takes it in chunks (CTL_CAP_MAP_CHUNKS) */
	CTL_REASON_UPGRADE_REQUIRED = 10,
};

struct ctl_ip {
	uint8_t family; /* 4 or 6 */
	uint8_t addr[16];
};
struct ctl_prefix {
	uint8_t family; /* 4 or 6 */
	uint8_t bits;
	uint8_t addr[16]; /* host bits are zero */
};
struct ctl_endpoint {
	uint8_t family; /* 4 or 6 */
	uint16_t port;  /* 1..65535 */
	uint8_t addr[16];
};

struct ctl_register_req {
	char auth_key[CTL_AUTHKEY_MAX]; /* secret; "" = none; wiped by ctl_msg_free */
	uint8_t node_key[CTL_KEY_LEN];
	uint8_t disco_key[CTL_KEY_LEN];
	char hostname[CTL_DNSNAME_MAX]; /* hostname_valid() syntax */
	char os[CTL_OS_MAX];            /* hostinfo.os */
	char version[CTL_VERSION_MAX];  /* hostinfo.version */
	uint8_t n_tags;
	char tags[CTL_TAGS_MAX][CTL_TAG_MAX]; /* requested tags ("tag:web") */
	uint32_t caps;                        /* CTL_CAP_* */
	bool ephemeral;                       /* remove me soon once offline */
};

struct ctl_register_resp {
	enum ctl_reg_status status;
	uint32_t code;             /* enum ctl_reason */
	char reason[CTL_TEXT_MAX]; /* readable text; may be empty */
	/* Set when status is OK: */
	uint64_t node_id;
	char name[CTL_LABEL_MAX];
	char fqdn[CTL_DNSNAME_MAX];
	uint8_t ipv4[4];
	uint8_t ipv6[16];
	char domain[CTL_DNSNAME_MAX];
};

struct ctl_endpoints {
	uint8_t n;
	struct ctl_endpoint ep[CTL_ENDPOINTS_MAX];
	uint32_t home_relay; /* 0 = none */
};

struct ctl_peer {
	uint64_t id;
	char name[CTL_LABEL_MAX];
	uint8_t node_key[CTL_KEY_LEN];
	uint8_t disco_key[CTL_KEY_LEN];
	uint8_t n_addrs;
	uint8_t n_allowed;
	uint8_t n_eps;
	bool online;
	struct ctl_ip addrs[CTL_ADDRS_MAX];
	struct ctl_prefix allowed[CTL_ALLOWED_MAX];
	struct ctl_endpoint eps[CTL_ENDPOINTS_MAX];
	uint32_t home_relay; /* 0 = none */
	int64_t last_seen;   /* unix seconds, 0 = never */
	/* Where the server saw its control connection come from (family 0:
	 * not sent): observed, not claimed by the node. */
	struct ctl_ip seen_ip;
	/* Owner (CTL_CAP_POLICY; "" = none or not sent): the node's user, and
	 * its tags as the policy accepts them (tagOwners), comma-joined. */
	char user[CTL_USER_MAX];
	char tags[CTL_PEER_TAGS_MAX];
};

/* An inclusive port range (1..65535; 0-65535 for ICMP "any"). */
struct ctl_port_range {
	uint16_t lo, hi;
};

/* One source block of a node's inbound filter: sources lo..hi (both the
 * same family; IPv4 as family 4) may open the listed ports. */
struct ctl_filter_block {
	struct ctl_ip lo, hi;
	uint32_t n_ports;
	struct ctl_port_range *ports; /* owned; ascending, disjoint, merged */
};

/* The node's inbound filter (CTL_CAP_POLICY). Per protocol, blocks in
 * ascending source order, disjoint; a source in no block is denied. For
 * ICMP a block's ports are 0-65535 (accepted). On the wire:
 *   filter {tcp: [blk], udp: [blk], icmp: [blk]}
 *   blk    ["LO", "HI", "PORTS"]  ("100.64.0.1", "100.64.0.9", "22,80-90";
 *          ICMP: "*") */
enum { CTL_FILTER_TCP = 0, CTL_FILTER_UDP = 1, CTL_FILTER_ICMP = 2, CTL_FILTER_NPROTO = 3 };
struct ctl_filter {
	size_t n_blocks[CTL_FILTER_NPROTO];
	struct ctl_filter_block *blocks[CTL_FILTER_NPROTO]; /* owned */
};

/* What this node may open on peer id (CTL_CAP_POLICY): the ports its
 * addresses may reach under the peer's filter (either of its addresses).
 * On the wire: {id: int, tcp?: "PORTS", udp?: "PORTS", icmp?: bool}
 * (absent = none). A visible peer without an entry: nothing. */
struct ctl_reach {
	uint64_t id;
	bool icmp;
	uint32_t n_tcp, n_udp;
	struct ctl_port_range *tcp, *udp; /* owned */
};

struct ctl_relay {
	uint32_t id;
	uint16_t port;
	uint16_t stun_port; /* 0: no STUN */
	bool tls;
	bool has_key;
	uint8_t key[CTL_KEY_LEN]; /* the relay's public key (clients seal to it) */
	char name[CTL_LABEL_MAX]; /* "" if not sent */
	char region[CTL_LABEL_MAX];
	char host[CTL_DNSNAME_MAX];
};

struct ctl_relay_register {
	char auth_key[CTL_AUTHKEY_MAX]; /* "rkey-..."; "" = resume; wiped */
	struct ctl_relay relay;         /* id 0 and name "" from the relay */
};

struct ctl_relay_state {
	uint64_t version;
	struct ctl_relay self;
	size_t n_keys;
	uint8_t (*keys)[CTL_KEY_LEN]; /* owned */
	size_t n_relays;
	struct ctl_relay *relays; /* owned */
};

struct ctl_map_full {
	uint64_t version;
	uint64_t self_id;
	char self_name[CTL_LABEL_MAX];
	/* The node's own owner ("" = none or not sent): as a peer's user and
	 * tags (struct ctl_peer), comma-joined tags. */
	char self_user[CTL_USER_MAX];
	char self_tags[CTL_PEER_TAGS_MAX];
	uint8_t n_self_addrs;
	struct ctl_ip self_addrs[CTL_ADDRS_MAX];
	char dns_domain[CTL_DNSNAME_MAX];
	struct ctl_ip magic_dns; /* IPv4, 100.100.100.100 */
	size_t n_relays;
	struct ctl_relay *relays; /* owned; freed by ctl_msg_free */
	size_t n_peers;
	struct ctl_peer *peers; /* owned; freed by ctl_msg_free */
	bool more;              /* MAP_PEERS chunks follow */
	/* Access policy (CTL_CAP_POLICY; only in the first message of a
	 * chunked map). has_filter false: no policy, everything is allowed and
	 * reach is empty. */
	bool has_filter;
	struct ctl_filter filter; /* owned */
	size_t n_reach;
	struct ctl_reach *reach; /* owned; ids unique, each a peer of this map */
	/* While chunks are appended (ctl_map_append_chunk): peers allocated
	 * (0: exactly n_peers) and empty chunks so far. */
	size_t cap_peers;
	unsigned n_empty_chunks;
};

/* The rest of a chunked MAP_FULL. */
struct ctl_map_peers {
	size_t n_peers;
	struct ctl_peer *peers; /* owned */
	bool more;              /* false: the map is complete */
};

/* Which fields of a peer a patch sets (struct ctl_peer_patch.fields). */
#define CTL_PATCH_ENDPOINTS  0x1u
#define CTL_PATCH_HOME_RELAY 0x2u
#define CTL_PATCH_ONLINE     0x4u
#define CTL_PATCH_LAST_SEEN  0x8u
#define CTL_PATCH_SEEN_IP    0x10u

/* Some fields of a peer the node already has. */
struct ctl_peer_patch {
	uint64_t id;
	uint8_t fields; /* CTL_PATCH_* */
	uint8_t n_eps;
	bool online;
	struct ctl_endpoint eps[CTL_ENDPOINTS_MAX];
	uint32_t home_relay;
	int64_t last_seen;
	struct ctl_ip seen_ip;
};

struct ctl_map_delta {
	uint64_t version;
	uint64_t base_version;
	size_t n_peers;
	struct ctl_peer *peers; /* added or changed; owned */
	size_t n_removed;
	uint64_t *removed; /* peer ids; owned */
	size_t n_patches;
	struct ctl_peer_patch *patches; /* owned */
	/* Access policy (CTL_CAP_POLICY): filter_op SET replaces the filter
	 * with filter, CLEAR drops it (the policy was removed: allow all, and
	 * every reach entry goes). reach: entries set or replaced by id; a
	 * removed peer's entry goes with it. */
	enum { CTL_FILTER_KEEP = 0, CTL_FILTER_SET = 1, CTL_FILTER_CLEAR = 2 } filter_op;
	struct ctl_filter filter; /* owned; with SET */
	size_t n_reach;
	struct ctl_reach *reach; /* owned */
	/* The node's own owner changed (CTL_CAP_POLICY): has_self, and the
	 * whole new user and tags ("" = none), as in struct ctl_map_full. */
	bool has_self;
	char self_user[CTL_USER_MAX];
	char self_tags[CTL_PEER_TAGS_MAX];
	bool has_relays;                /* the relay list changed: */
	size_t n_relays;                /* the whole new list (may be empty) */
	struct ctl_relay *relays;       /* owned */
};

struct ctl_error {
	uint32_t code;
	char text[CTL_TEXT_MAX];
};

struct ctl_msg {
	enum ctl_msg_type type;
	union {
		struct ctl_register_req reg_req;
		struct ctl_register_resp reg_resp;
		struct ctl_endpoints endpoints;
		struct ctl_map_full map;
		struct ctl_map_delta delta;
		struct ctl_map_peers chunk;
		struct ctl_error error;
		struct ctl_relay_register relay_reg;
		struct ctl_relay_state relay_state;
	} u;
};

/* "REGISTER_REQ", ..., or NULL for a type byte this module does not know. */
const char *ctl_msg_type_name(unsigned type);

/* Decodes body p[0..len) of a message of the given type (the frame's type
 * byte) into *m (overwritten; zeroed first). Returns 0, or a negative errno
 * (-EPROTO unknown type, -EMSGSIZE too big, -EBADMSG invalid, -ENOMEM) with
 * err (may be NULL) saying which field and why. On success the caller owns
 * *m and releases it with ctl_msg_free; on failure nothing is left to free
 * (calling ctl_msg_free anyway is harmless). */
int ctl_msg_decode(unsigned type, const uint8_t *p, size_t len, struct ctl_msg *m,
                   struct ctl_msg_err *err);
/* ctl_msg_decode for a body from a sender that gets a smaller budget (the
 * server, for what nodes send): at most max_tokens JSON values, counted
 * (with the nesting) in one pass over the bytes before jansson builds
 * anything, else -EBADMSG with CTL_MSG_E_TOKENS. A value is each object,
 * array and scalar; {"a":[1,2]} is 4 (counted as one plus each [, { and ,
 * outside strings, which errs high only for empty containers). Bounds the parse's memory:
 * jansson spends a few hundred bytes per value, so 64 KiB of {},{},... would otherwise
 * cost about 5 MiB (a 4 MiB body about 300 MiB). */
int ctl_msg_decode_limited(unsigned type, const uint8_t *p, size_t len, size_t max_tokens,
                           struct ctl_msg *m, struct ctl_msg_err *err);

/* Encodes *m as compact JSON into a new buffer *out of *out_len bytes (also
 * NUL-terminated), released with free() (wipe it first for REGISTER_REQ: it
 * holds the auth key). Refuses, with -EINVAL and err naming the field, what
 * ctl_msg_decode would refuse: counts above the caps, integers out of range,
 * names that are not DNS names, control characters, strings that are not
 * terminated in their buffer or not UTF-8, prefixes with host bits, port 0.
 * -ENOMEM when out of memory. On failure *out is NULL. */
int ctl_msg_encode(const struct ctl_msg *m, uint8_t **out, size_t *out_len,
                   struct ctl_msg_err *err);

/* Pre-encoded peers, for a server that sends one map to many nodes: encode
 * each peer once, then build each MAP_FULL / MAP_DELTA body around them.
 * ctl_msg_encode_peer writes the text of one "peers" entry exactly as
 * ctl_msg_encode would (same checks; *out NUL-terminated, free()).
 * ctl_msg_encode_map_texts encodes m (a MAP_FULL, MAP_PEERS or MAP_DELTA
 * whose own n_peers is 0) with peers[0..n) as its "peers" array, each a text
 * from ctl_msg_encode_peer; the result decodes as if m had held those
 * peers. */
struct ctl_msg_text {
	const char *p;
	size_t len;
};
int ctl_msg_encode_peer(const struct ctl_peer *p, char **out, size_t *len,
                        struct ctl_msg_err *err);
int ctl_msg_encode_map_texts(const struct ctl_msg *m, const struct ctl_msg_text *peers,
                             size_t n, uint8_t **out, size_t *out_len,
                             struct ctl_msg_err *err);

/* Frees what *m owns, wipes secrets, and zeroes *m (type stays). Accepts NULL. */
void ctl_msg_free(struct ctl_msg *m);

/* The policy parts of a map, for code that keeps or copies them (the
 * node's merged map): _clear frees what one owns and zeroes it (NULL is
 * fine); ctl_reach_free clears r[0..n) and frees r; _copy makes a deep
 * copy into *dst (overwritten), -ENOMEM leaving *dst empty. */
void ctl_filter_clear(struct ctl_filter *f);
void ctl_reach_clear(struct ctl_reach *r);
void ctl_reach_free(struct ctl_reach *r, size_t n);
int ctl_filter_copy(struct ctl_filter *dst, const struct ctl_filter *src);
int ctl_reach_copy(struct ctl_reach *dst, const struct ctl_reach *src);

/* Text forms used on the wire: "100.64.0.1", "fd00::/48", "[fd00::1]:41641". */
#define CTL_ADDRSTR_MAX 56
void ctl_ip_format(const struct ctl_ip *ip, char out[CTL_ADDRSTR_MAX]);
/* A key's fingerprint for people: its first 8 bytes in hex. A pending node
 * prints its machine key's, `mesh-control nodes list --pending` shows it and
 * `nodes approve NAME --key FPR` checks it, so an approval lands on the
 * device the admin means. */
#define CTL_KEY_FPR_LEN 16
void ctl_key_fpr(const uint8_t key[CTL_KEY_LEN], char out[CTL_KEY_FPR_LEN + 1]);
void ctl_prefix_format(const struct ctl_prefix *pf, char out[CTL_ADDRSTR_MAX]);
void ctl_endpoint_format(const struct ctl_endpoint *ep, char out[CTL_ADDRSTR_MAX]);
/* Parse a NUL-terminated string; true on success. */
bool ctl_ip_parse(const char *s, struct ctl_ip *out);
bool ctl_prefix_parse(const char *s, struct ctl_prefix *out);
bool ctl_endpoint_parse(const char *s, struct ctl_endpoint *out);

#endif
