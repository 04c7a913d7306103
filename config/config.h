/* The node's configuration: wireproxy-compatible INI (plus a wg-quick file
 * through WGConfig = path), parsed into typed structs and validated. Every
 * error names the file, line, section, key and what was expected. */
#ifndef MESH_CONFIG_H
#define MESH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_KEY_LEN 32

struct cfg_prefix {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t cidr;
};

struct cfg_peer {
	uint8_t public_key[CFG_KEY_LEN];
	uint8_t preshared_key[CFG_KEY_LEN];
	bool has_preshared_key;
	char *endpoint_host; /* as written, NULL if none */
	uint16_t endpoint_port;
	struct sockaddr_storage endpoint; /* resolved at load; ss_family 0 if none */
	struct cfg_prefix *allowed_ips;
	size_t n_allowed_ips;
	uint16_t persistent_keepalive; /* seconds, 0 = off */
	/* Name = web: SOCKS5/HTTP/tunnel targets "web" (any case, optional
	 * trailing dot) resolve to this peer's host AllowedIPs (/32, /128).
	 * NULL if unset. Unique among peers; a DNS label (letters, digits,
	 * '-', 1-63 characters). */
	char *name;
	int name_line; /* line of Name, for messages */
	char *file;    /* where the section starts, for messages */
	int line;
};

/* Limits of a TCP front-end ([Socks5], [http], [TCPClientTunnel],
 * [TCPServerTunnel]); same keys in each, defaults below when unset. */
struct cfg_limits {
	uint32_t max_connections;      /* MaxConnections: open at once, 1-1000000 */
	uint32_t handshake_timeout_ms; /* HandshakeTimeout (seconds, 1-3600) */
	uint32_t idle_timeout_ms;      /* IdleTimeout (seconds, 0 = never) */
	uint32_t buffer_bytes;         /* BufferSize (bytes, 16384-1048576, K/M suffix) */
};
#define CFG_DEFAULT_MAX_CONNECTIONS 8192
#define CFG_DEFAULT_HANDSHAKE_MS    10000
#define CFG_DEFAULT_IDLE_MS         0
#define CFG_DEFAULT_BUFFER_BYTES    (1024 * 1024)
#define CFG_DEFAULT_UDP_IDLE_MS     60000
#define CFG_DEFAULT_UDP_MAX_FLOWS   1024
/* At most this many front-end sections ([Socks5], [http] and the tunnels
 * together) in one configuration: each is a listening socket, and a
 * mistake (a generated file gone wrong) should be an error naming the
 * line, not thousands of listeners. */
#define CFG_MAX_FRONTENDS 1024

/* A listening address such as 127.0.0.1:1080 or [::1]:1080. */
struct cfg_listen {
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

/* Direct: whether a front-end may connect from the host to a destination
 * no mesh peer routes. Never, whatever the setting: loopback, unspecified,
 * link-local and cloud metadata addresses, multicast and broadcast, this
 * mesh's own prefixes, and the IPv4-mapped forms of those. */
enum cfg_direct {
	CFG_DIRECT_UNSET = 0, /* the mode's default: all with `up`, no with --config */
	CFG_DIRECT_NO,        /* refused as having no route (SOCKS5 0x03, HTTP 502) */
	CFG_DIRECT_PUBLIC,    /* public addresses only */
	CFG_DIRECT_ALL,       /* also private ranges (RFC 1918, 100.64/10, fc00::/7) */
};
/* True for 127.0.0.0/8 and ::1 (only this host can connect). */
bool cfg_listen_is_loopback(const struct cfg_listen *l);
/* "no", "public", "all" (for status and logs). */
const char *cfg_direct_name(enum cfg_direct d);
/* "no"/"off"/"false", "public", "all"/"yes"/"on"/"true"; false if none. */
bool cfg_direct_parse(const char *s, enum cfg_direct *out);

struct cfg_socks5 {
	struct cfg_listen bind;
	char *username; /* NULL: no authentication */
	char *password;
	enum cfg_direct direct;
	/* AllowOpen = yes: a BindAddress other hosts can reach may go without
	 * Username/Password (refused otherwise: an open proxy into the host). */
	bool allow_open;
	struct cfg_limits limits;
};

struct cfg_http {
	struct cfg_listen bind;
	char *username; /* NULL: no authentication */
	char *password;
	enum cfg_direct direct; /* as in cfg_socks5 */
	bool allow_open;        /* as in cfg_socks5 */
	struct cfg_limits limits;
	/* Forwarding: how long an origin may take to start its response, and
	 * a body may stall (ms); 0: PX_HTTP_RESPONSE_MS (60 s). Not an INI key
	 * (yet): set by embedders and tests. */
	uint32_t response_timeout_ms;
};

/* [TCPClientTunnel]: a local listener whose connections go to a mesh target. */
struct cfg_tcp_client_tunnel {
	struct cfg_listen bind;
	char *target_host; /* address or name, as written */
	uint16_t target_port;
	struct cfg_limits limits;
};

/* [TCPServerTunnel]: mesh connections to our ListenPort go to a local target. */
struct cfg_tcp_server_tunnel {
	uint16_t listen_port;
	char *target_host;
	uint16_t target_port;
	/* ProxyProtocol = v2: send a PROXY protocol v2 header (mesh source and
	 * destination) to the local target first. off (default): nothing. */
	int proxy_protocol; /* 0 or 2 */
	struct cfg_limits limits;
};

/* [UDPClientTunnel]: datagrams to a local UDP port go to a mesh target;
 * each local sender gets its own mesh source port, and replies go back to
 * it. IdleTimeout (seconds, default 60) ends a quiet sender's flow;
 * MaxFlows (default 1024) bounds them. */
struct cfg_udp_client_tunnel {
	struct cfg_listen bind;
	char *target_host; /* address or name, as written */
	uint16_t target_port;
	uint32_t idle_timeout_ms;
	uint32_t max_flows;
};

/* [UDPServerTunnel]: datagrams to our mesh ListenPort go to a host target;
 * each mesh sender gets its own local socket. */
struct cfg_udp_server_tunnel {
	uint16_t listen_port;
	char *target_host;
	uint16_t target_port;
	uint32_t idle_timeout_ms;
	uint32_t max_flows;
};

struct config {
	char *path;
	uint8_t private_key[CFG_KEY_LEN];
	struct cfg_prefix *addresses; /* [Interface] Address, several allowed */
	size_t n_addresses;
	uint16_t listen_port;   /* 0: not set, kernel picks */
	uint16_t mtu;           /* default 1420 */
	struct cfg_prefix *dns; /* cidr = 32/128 */
	size_t n_dns;
	struct cfg_peer *peers;
	size_t n_peers;
	struct cfg_socks5 *socks5;
	size_t n_socks5;
	struct cfg_http *http;
	size_t n_http;
	struct cfg_tcp_client_tunnel *tcp_client_tunnels;
	size_t n_tcp_client_tunnels;
	struct cfg_tcp_server_tunnel *tcp_server_tunnels;
	size_t n_tcp_server_tunnels;
	struct cfg_udp_client_tunnel *udp_client_tunnels;
	size_t n_udp_client_tunnels;
	struct cfg_udp_server_tunnel *udp_server_tunnels;
	size_t n_udp_server_tunnels;
	/* [Interface] CheckAlive = addr[, addr...] (wireproxy): pinged through
	 * the mesh every CheckAliveInterval seconds (default 5); the last
	 * answer of each is in status. */
	struct cfg_prefix *check_alive; /* cidr = 32/128 */
	size_t n_check_alive;
	uint32_t check_alive_interval_s;
	/* [STDIOTunnel] Target = host:port (wireproxy): the node's stdin and
	 * stdout are one connection to Target through the mesh (ssh's
	 * ProxyCommand); the node exits when it ends. NULL: none. */
	char *stdio_target_host;
	uint16_t stdio_target_port;
	/* Node-wide limits against hostile peers, in [Interface] or before
	 * any section (so that `up --config` files can set them too):
	 * MemoryLimit (bytes, K/M/G suffix, 16M-1T; 0 or unset: a quarter of
	 * the RAM, at most 1 GiB) bounds everything the netstack and the
	 * front-ends buffer; MaxConnectionsPerPeer (0-1000000, 0 = no cap,
	 * default 1024) caps inbound mesh connections (expose, server
	 * tunnels) from one peer address. */
	uint64_t memory_limit;
	uint32_t max_conns_per_peer;
	int memory_limit_line, max_conns_per_peer_line; /* 0: not given */
	/* PortMapping = yes | no (node-wide, like MemoryLimit): whether a
	 * joined node asks the router (UPnP IGD, NAT-PMP, PCP) to map its
	 * WireGuard port. 0: not given (yes), 1 yes, -1 no. */
	int portmap;
	int portmap_line;
	/* BirthdayProbing = yes | no (node-wide): whether a joined node takes
	 * part in birthday-paradox port probing (either side). 0: not given
	 * (yes), 1 yes, -1 no. */
	int birthday;
	int birthday_line;
};
#define CFG_DEFAULT_MAX_CONNS_PER_PEER 1024

/* Loads and validates path. On failure returns -1 and writes one readable
 * line to err, e.g.
 *   node.ini:12: [Peer] AllowedIPs: "100.64.0.300/32" is not an address/prefix
 * On success returns 0; free with config_free(). */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg); /* wipes keys; accepts a zeroed struct */
/* config_load() of a configuration held in memory (`mesh-proxy up` builds
 * its [Interface] from the state directory); name is used in messages and
 * to find a relative WGConfig file. */
int config_load_text(const char *name, const char *buf, size_t len, struct config *cfg,
                     char *err, size_t errlen);

/* Parses a WireGuard base64 key (44 characters). Returns true on success. */
bool config_parse_key(const char *b64, uint8_t key[CFG_KEY_LEN]);

#endif
