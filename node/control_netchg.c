/* A changed network, recovered without a restart; and the cases the node
 * cannot recover from, where it exits non-zero so that whoever runs it (an
 * orchestrator, systemd) starts it again (issue 17: a sidecar whose pod
 * moves).
 *
 * Names: mesh-control's host (the join token) and the relays' hosts (the
 * map) are resolved at every connect by evdns, which keeps no answer cache,
 * so a server moved behind its name is found at the next reconnect; the
 * resolver configuration is re-read when it changes (node_dns.c).
 *
 * Our own address: node_ctl_tick lists the interface addresses every
 * NCTL_ENDPOINTS_MS (getifaddrs is one netlink dump). When the list differs
 * from the last one by an address that is gone, the TCP connections to
 * mesh-control and the relays may come from it; nothing tells their
 * sockets, so they would hang until their keepalive timeouts (75 s for
 * control). They are redialled at once, netcheck runs again, and every peer gets a
 * handshake from the new address, which it learns from (WireGuard roaming) before our new
 * endpoints reach it through mesh-control.
 *
 * The state directory: when the keys this node joined with vanish from it
 * (the volume was unmounted, the directory removed), the node could run on
 * but would come back from its next restart as a stranger (and a spent
 * single-use key cannot join again): better to stop now with one clear
 * line, while the orchestrator can still do something about it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/magicsock/magicsock.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "node/control_int.h"
#include "node/state.h"

/* The node's identity in its state directory: present once it joined. */
#define NCTL_KEY_FILE "machine.key"

static void nctl_addrs_changed(struct node_ctl *m)
{
	log_info("this host's addresses changed: reconnecting to mesh-control and the "
	         "relays, measuring the network again, new handshakes with the peers");
	if (m->client)
		ctl_client_reconnect(m->client);
	magicsock_network_changed(m->ms);
	if (m->wg)
		wg_device_handshake_all(m->wg);
	m->net_changes++;
}

/* True if an address of `was` is not in `now`: a connection from it is
 * dead. A new address alone breaks nothing (nctl_endpoints announces it);
 * so IPv6 temporary addresses coming, or a container bridge appearing,
 * do not cost a reconnect. */
static bool nctl_addr_lost(const struct ctl_endpoints *was,
                           const struct ctl_endpoints *now)
{
	for (size_t i = 0; i < was->n; i++) {
		bool found = false;
		for (size_t j = 0; j < now->n && !found; j++)
			found = was->ep[i].family == now->ep[j].family &&
			        memcmp(was->ep[i].addr, now->ep[j].addr, 16) == 0;
		if (!found)
			return true;
	}
	return false;
}

/* True if the key file is missing now, having been there before. */
static bool nctl_state_lost(struct node_ctl *m, int *why)
{
	const char *dir = m->p->a.state_dir;
	char path[NODE_STATE_PATH_MAX + sizeof(NCTL_KEY_FILE) + 1];
	struct stat sb;

	if (!dir || !dir[0])
		return false; /* an ephemeral node keeps its keys in memory */
	snprintf(path, sizeof(path), "%s/%s", dir, NCTL_KEY_FILE);
	if (stat(path, &sb) == 0) {
		m->state_seen = true;
		return false;
	}
	*why = errno;
	/* Only a file that is gone; EACCES or EIO may pass. */
	return m->state_seen && (errno == ENOENT || errno == ENOTDIR);
}

void nctl_netchg_check(struct node_ctl *m)
{
	struct ctl_endpoints now;
	int why = 0;

	if (nctl_state_lost(m, &why)) {
		log_error("state directory %s: %s/%s is gone (%s): the node's identity "
		          "can no longer be kept; exiting so that it is restarted with "
		          "its state directory in place",
		          m->p->a.state_dir, m->p->a.state_dir, NCTL_KEY_FILE,
		          strerror(why));
		m->hooks.stop(m->hooks.ctx, 1);
		return;
	}
	if (!m->wg)
		return;
	nctl_gather_endpoints(wg_device_port(m->wg), &now);
	if (m->netchg_eps.n && nctl_addr_lost(&m->netchg_eps, &now))
		nctl_addrs_changed(m);
	m->netchg_eps = now;
}
