/* --forward (MESH_FORWARDS): local listeners into the mesh.
 *
 * A spec is items separated by commas, each "[udp/][ADDR:]PORT=HOST:PORT":
 * connections (or UDP datagrams with udp/) to ADDR:PORT on this host go
 * to HOST:PORT in the mesh, HOST a peer's name, a mesh address or a DNS
 * name the node resolves. ADDR is 127.0.0.1 unless given ([IPv6] in
 * brackets). "off" is no forward. Each item becomes a [TCPClientTunnel] or
 * [UDPClientTunnel] of the node's configuration (node_ctl_build_config). */
#ifndef MESH_NODE_FORWARD_H
#define MESH_NODE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FWD_MAX      32   /* items in one spec */
#define FWD_SPEC_MAX 1023 /* bytes of a spec (prefs.json keeps it) */
/* A target host: a DNS name, but no longer than an INI line of the config
 * parser takes ("Target = " HOST ":65535" within 198 bytes). */
#define FWD_HOST_MAX 180

struct fwd_item {
	bool udp;
	char addr[48]; /* 127.0.0.1, or an address as given ("::1" without []) */
	uint16_t port;
	char host[FWD_HOST_MAX + 1];
	uint16_t host_port;
};

struct fwd_list {
	struct fwd_item item[FWD_MAX];
	size_t n;
};

/* Parses spec (not NULL) into l. false with one line in err naming the
 * item and the expected form. */
bool fwd_parse(const char *spec, struct fwd_list *l, char *err, size_t errlen);

/* The INI sections of l into buf (NUL-terminated): the bytes written, or
 * 0 if cap is too small. */
size_t fwd_ini(const struct fwd_list *l, char *buf, size_t cap);

/* Whether item i listens on a loopback address only. */
bool fwd_loopback(const struct fwd_item *f);

/* A --socks5 / --http-proxy value: "off", PORT, IPV4:PORT or [IPV6]:PORT
 * (ports 1-65535, digits only) and nothing else, so that a value can
 * never carry a line or a section into the generated configuration. */
bool fwd_listen_spec_ok(const char *s);

#endif
