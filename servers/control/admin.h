/* mesh-control's HTTP admin API (serve --admin-listen ADDR:PORT), JSON in
 * and out, every request authenticated with an API key:
 *
 *   Authorization: Bearer mapi-<id>-<secret>
 *
 * API keys are made with `mesh-control --data DIR apikeys create` (printed
 * once; only a hash is stored), listed and revoked with `apikeys list` and
 * `apikeys revoke ID`. A missing, unknown or revoked key gets 401 with a JSON
 * error; nothing else is revealed.
 *
 *   GET    /api/v1/nodes                    list (same fields as nodes list --json)
 *   GET    /api/v1/nodes/ID
 *   POST   /api/v1/nodes/ID/approve         a pending node (ID or NAME) only
 *                                            with {"key": "<fingerprint>"},
 *                                            its machine key's as the node
 *                                            printed
 *   POST   /api/v1/nodes/ID/rename          {"name": "web"}
 *   POST   /api/v1/nodes/ID/expire
 *   DELETE /api/v1/nodes/ID
 *   GET    /api/v1/keys                     auth keys (never secrets)
 *   POST   /api/v1/keys                     {"reusable":bool,"ephemeral":bool,
 *                                            "expiry":"24h","tags":["tag:a"]}
 *                                           -> the key with its secret, once,
 *                                           and a join token
 *   DELETE /api/v1/keys/ID                  revoke
 *   GET    /api/v1/status                   server stats (ctl_server_stats)
 *   GET    /api/v1/policy                   the stored access policy
 *   PUT    /api/v1/policy                   body: policy text; validated, stored
 *   DELETE /api/v1/policy                   clear
 *   POST   /api/v1/policy/check             body: policy text; validated only
 *   GET    /api/v1/users                    users with their node counts
 *   POST   /api/v1/users                    {"name": "alice"}
 *   DELETE /api/v1/users/NAME               refused (409) while it owns nodes
 *                                            or unrevoked keys
 *   (admin_policy.c has the replies; POST /api/v1/keys also takes
 *   "user": "alice".)
 *
 * Errors: {"error": "readable text"} with 400 (bad JSON or field; a
 * refused policy, with "line" and "column"; two Content-Lengths, or one with
 * Transfer-Encoding), 401, 404, 405, 409 (name taken, a user who still owns
 * something, tags the key's user does not own under the policy), 500; a
 * body over 64 KiB gets libevent's 413 from its length, before it is read
 * or the key is checked.
 *
 * Plain HTTP: `serve` binds it to a loopback address unless given
 * --admin-insecure. At most CTL_ADMIN_MAX_CONNS connections at once, each
 * closed when it completes no request within HTTP_CONNS_REQUEST_S (10 s) of
 * opening or of its previous one (http_conns.h). */
#ifndef MESH_CTL_ADMIN_H
#define MESH_CTL_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/control/token.h"

struct event_base;
struct ctl_store;
struct ctl_server;
struct ctl_admin;

struct ctl_admin_config {
	struct event_base *base;
	struct ctl_store *store;   /* borrowed */
	struct ctl_server *server; /* borrowed; may be NULL (tests): notify + stats */
	struct sockaddr_storage listen;
	socklen_t listen_len;
	/* For join tokens minted by POST /api/v1/keys: where nodes reach the
	 * node protocol (control_host/port first, then control_more in
	 * order: every mesh-control server on the store), and the server's
	 * public key. */
	char control_host[256];
	uint16_t control_port;
	struct ctl_token_addr control_more[CTL_TOKEN_ADDRS_MAX - 1];
	size_t n_control_more;
	uint8_t server_public[32];
};

/* Admin API connections open at once; more wait in the listen backlog. */
#define CTL_ADMIN_MAX_CONNS 64

struct ctl_admin *ctl_admin_new(const struct ctl_admin_config *cfg, char *err,
                                size_t errlen);
void ctl_admin_free(struct ctl_admin *a); /* accepts NULL */
void ctl_admin_local(const struct ctl_admin *a, struct sockaddr_storage *ss,
                     socklen_t *len);

/* `mesh-control --data DIR apikeys create|list|revoke ID [--json]`:
 * argv[0] is "apikeys". Returns the process exit code (0, 1 error, 2
 * usage) and prints results / readable errors itself. */
int ctl_admin_cli_apikeys(const char *data_dir, int argc, char **argv, int json);

#endif
