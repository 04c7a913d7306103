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
	char *endpoint_host;		  /* as written, NULL if none */
	uint16_t endpoint_port;
	struct sockaddr_storage endpoint; /* resolved at load; ss_family 0 if none */
	struct cfg_prefix *allowed_ips;
	size_t n_allowed_ips;
	uint16_t persistent_keepalive; /* seconds, 0 = off */
	char *file;			  /* where the section starts, for messages */
	int line;
};

/* A listening address such as 127.0.0.1:1080 or [::1]:1080. */
struct cfg_listen {
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

struct cfg_socks5 {
	struct cfg_listen bind;
	char *username; /* NULL: no authentication */
	char *password;
};

struct cfg_http {
	struct cfg_listen bind;
	char *username; /* NULL: no authentication */
	char *password;
};

/* [TCPClientTunnel]: a local listener whose connections go to a mesh target. */
struct cfg_tcp_client_tunnel {
	struct cfg_listen bind;
	char *target_host; /* address or name, as written */
	uint16_t target_port;
};

/* [TCPServerTunnel]: mesh connections to our ListenPort go to a local target. */
struct cfg_tcp_server_tunnel {
	uint16_t listen_port;
	char *target_host;
	uint16_t target_port;
};

struct config {
	char *path;
	uint8_t private_key[CFG_KEY_LEN];
	struct cfg_prefix *addresses; /* [Interface] Address, several allowed */
	size_t n_addresses;
	uint16_t listen_port; /* 0: not set, kernel picks */
	uint16_t mtu;	      /* default 1420 */
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
};

/* Loads and validates path. On failure returns -1 and writes one readable
 * line to err, e.g.
 *   node.ini:12: [Peer] AllowedIPs: "10.0.0.300/32" is not an address/prefix
 * On success returns 0; free with config_free(). */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg); /* wipes keys; accepts a zeroed struct */

/* Parses a WireGuard base64 key (44 characters). Returns true on success. */
bool config_parse_key(const char *b64, uint8_t key[CFG_KEY_LEN]);

#endif
