/* The state directory of a joined node (`mesh-proxy up --state DIR`):
 *
 *   DIR/              mode 0700, created on first use
 *   machine.key       X25519 private key of the machine (Noise IK), base64
 *   node.key          WireGuard private key, base64
 *   disco.key         disco private key, base64
 *   control.json      {host, port, server_key, more}: the mesh this
 *                     directory belongs to (from the join token); more
 *                     (absent with one address) lists the token's further
 *                     control addresses [{host, port}, ...] in order
 *   self.json         {node_id, name, fqdn, ipv4, ipv6, domain}: the last
 *                     registration answer; listen_port: our WireGuard port
 *   netmap.json       the last merged network map (a MAP_FULL body, msg.h):
 *                     a warm-start cache, written at most once a minute
 *                     (node/control.c)
 *   api.sock          the node's local API
 *
 * Every file is mode 0600 and replaced atomically (temporary file, fsync,
 * rename, fsync of the directory), so a crash leaves the old or the new
 * version, never half of one. The auth key is never stored. Errors are
 * returned as negative errno with one readable sentence in err naming the
 * file. */
#ifndef MESH_NODE_STATE_H
#define MESH_NODE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/control/msg.h"
#include "core/control/token.h"

#define NODE_STATE_PATH_MAX 512
#define NODE_STATE_FILE_MAX (CTL_MSG_MAX_LEN + 1024) /* netmap.json */

struct node_keys {
	uint8_t machine[CTL_KEY_LEN]; /* private keys; wipe with node_keys_wipe */
	uint8_t node[CTL_KEY_LEN];
	uint8_t disco[CTL_KEY_LEN];
};

/* The mesh-control server a state directory belongs to (control.json). */
struct node_server {
	char host[CTL_TOKEN_HOST_MAX + 1]; /* the first control address */
	uint16_t port;
	struct ctl_token_addr more[CTL_TOKEN_ADDRS_MAX - 1]; /* the others */
	uint8_t n_more;
	uint8_t server_key[CTL_KEY_LEN];
};

struct node_self {
	uint64_t node_id;
	char name[CTL_LABEL_MAX];
	char fqdn[CTL_DNSNAME_MAX];
	uint8_t ipv4[4];
	uint8_t ipv6[16];
	char domain[CTL_DNSNAME_MAX];
	uint16_t listen_port; /* our WireGuard UDP port, kept across restarts
	                       * (peers know it from the map); 0: none yet */
};

/* Creates dir (mode 0700) if missing; tightens an existing one to 0700.
 * -ENOTDIR, -EACCES, ... with err filled. */
int node_state_open(const char *dir, char *err, size_t errlen);

/* An ephemeral node's state (`up --ephemeral`): a fresh private directory
 * (mkdtemp, mode 0700) under $XDG_RUNTIME_DIR when that is an absolute
 * path, else ${TMPDIR:-/tmp}, named mesh-proxy-eph-XXXXXX; its path in
 * out. node_state_remove removes such a directory and what it holds (the
 * files above, no subdirectories) at exit; NULL or "" does nothing.
 * The directory is held by descriptor from mkdtemp on and removed through
 * it (unlinkat), so swapping its path cannot redirect the deletion; it
 * holds eph.lock, flock'ed while the node runs. Making one first removes
 * this user's mesh-proxy-eph-* directories there whose lock is free (runs
 * that were killed), unless younger than a minute. */
int node_state_make_ephemeral(char *out, size_t cap, char *err, size_t errlen);
void node_state_remove(const char *dir);

/* Loads the three keys; a missing key file is generated (libsodium) and
 * saved. *created (may be NULL) tells whether node.key was new. */
int node_state_keys(const char *dir, struct node_keys *k, bool *created, char *err,
                    size_t errlen);
void node_keys_wipe(struct node_keys *k);

/* control.json. load: 0, -ENOENT (never joined), -EINVAL (corrupt). */
int node_state_load_control(const char *dir, struct node_server *c, char *err,
                            size_t errlen);
int node_state_save_control(const char *dir, const struct node_server *c, char *err,
                            size_t errlen);
/* For a --join: the directory must be new or belong to the same mesh
 * (same server key); the addresses are updated if they moved. -EEXIST with
 * "DIR already belongs to the mesh at HOST:PORT; use another --state
 * directory" otherwise. */
int node_state_bind_control(const char *dir, const struct node_server *want, char *err,
                            size_t errlen);
/* Same control addresses in the same order. */
bool node_server_same_addrs(const struct node_server *a, const struct node_server *b);

/* The settings of `up` (prefs.json), kept so that a restart without flags
 * resumes with the same proxies, expose and Direct. "" means not set. */
struct node_prefs {
	char socks5[128];     /* ADDR:PORT */
	char http_proxy[128]; /* ADDR:PORT */
	char expose[512];     /* an --expose spec */
	char direct[16];      /* public, all, no */
	char portmap[8];      /* yes, no ("": yes) */
	char birthday[8];     /* yes, no ("": yes) */
	char config[1024];    /* an extra configuration file */
	char forwards[1024];  /* a --forward spec */
	char proxy_user[256]; /* --proxy-user of the proxies */
	/* Their password: a secret, but kept like the node's keys (the
	 * directory is 0700, the file 0600); wiped with the prefs. */
	char proxy_password[256];
	char proxy_open[8]; /* yes, no ("": no) */
};
/* prefs.json. load: 0, -ENOENT (none saved yet), -EINVAL. */
int node_state_load_prefs(const char *dir, struct node_prefs *p, char *err,
                          size_t errlen);
int node_state_save_prefs(const char *dir, const struct node_prefs *p, char *err,
                          size_t errlen);

/* self.json. load: 0, -ENOENT, -EINVAL. */
int node_state_load_self(const char *dir, struct node_self *s, char *err, size_t errlen);
int node_state_save_self(const char *dir, const struct node_self *s, char *err,
                         size_t errlen);
void node_self_from_resp(struct node_self *s, const struct ctl_register_resp *r);

/* netmap.json. load fills m (type MAP_FULL; release with ctl_msg_free):
 * 0, -ENOENT, -EINVAL. */
int node_state_load_map(const char *dir, struct ctl_msg *m, char *err, size_t errlen);
int node_state_save_map(const char *dir, const struct ctl_map_full *map, char *err,
                        size_t errlen);

/* Helpers (exported for tests): dir/name into out; atomic 0600 write; read
 * a whole file of at most max bytes (NUL-terminated; free with free()). */
int node_state_path(const char *dir, const char *name, char *out, size_t cap);
int node_state_write(const char *dir, const char *name, const void *data, size_t len,
                     char *err, size_t errlen);
int node_state_read(const char *dir, const char *name, size_t max, char **data,
                    size_t *len, char *err, size_t errlen);

#endif
