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
 * Our own addresses: node_ctl_tick lists every interface address (up to
 * NCTL_ADDRS_MAX, not only the 15 announced) every NCTL_ENDPOINTS_MS. An
 * address that is gone costs only what used it: the TCP connection to
 * mesh-control, or to a relay, whose local address it was (nothing tells
 * their sockets: they would hang until their keepalive timeouts, 75 s for
 * control) is redialled, within 0-2 s; an address we announced ends the
 * trust in every direct path (validated from the old network), netcheck
 * runs again and the peers in use get a handshake from the new address,
 * which they learn from (WireGuard roaming) before our new endpoints reach
 * them through mesh-control. A docker bridge removed, an expired IPv6
 * temporary address or another VPN's tun going down costs nothing. A list
 * that could not be read (getifaddrs failed: EMFILE, ENOMEM) or that is
 * too long says nothing: the last one is kept.
 *
 * The state directory: when the keys this node joined with vanish from it
 * (the volume was unmounted, the directory removed), the node could run on
 * but would come back from its next restart as a stranger (and a spent
 * single-use key cannot join again): better to stop now with one clear
 * line, while the orchestrator can still do something about it. Only when
 * the directory itself is gone or another (not a key file moved away for a
 * moment), on two checks in a row, and never for an ephemeral node. */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
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
/* A peer we exchanged a datagram with this recently gets a handshake. */
#define NCTL_ACTIVE_MS 120000
/* The key file missing on this many checks in a row, this far apart. */
#define NCTL_STATE_MISSES  2
#define NCTL_STATE_MISS_MS 2000

/* Addresses a peer cannot reach us on, nor a connection come from that
 * matters: loopback, link-local, unspecified, v4-mapped. */
static bool nctl_skip_addr(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const uint8_t *a =
		    (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return a[0] == 127 || (a[0] == 169 && a[1] == 254) || a[0] == 0;
	}
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return IN6_IS_ADDR_LINKLOCAL(a6) || IN6_IS_ADDR_LOOPBACK(a6) ||
	       IN6_IS_ADDR_V4MAPPED(a6) || IN6_IS_ADDR_UNSPECIFIED(a6);
}

/* 4 or 6 and the address of sa; false for another family. */
static bool nctl_addr_of(const struct sockaddr *sa, struct nctl_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		a->family = 4;
		memcpy(a->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		a->family = 6;
		memcpy(a->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		return false;
	}
	return true;
}

bool nctl_addrs_has(const struct nctl_addrs *s, const struct nctl_addr *a)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->a[i].family == a->family && memcmp(s->a[i].addr, a->addr, 16) == 0)
			return true;
	return false;
}

int nctl_gather_addrs(struct nctl_addrs *out)
{
	struct ifaddrs *ifa = NULL;
	bool over = false;

	out->n = 0;
	if (getifaddrs(&ifa) != 0)
		return errno ? -errno : -EIO;
	for (int pass = 0; pass < 2; pass++) {
		int fam = pass == 0 ? AF_INET : AF_INET6;
		for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
			struct nctl_addr a;
			if (!i->ifa_addr || i->ifa_addr->sa_family != fam ||
			    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK) ||
			    nctl_skip_addr(i->ifa_addr) ||
			    !nctl_addr_of(i->ifa_addr, &a) || nctl_addrs_has(out, &a))
				continue;
			if (out->n == NCTL_ADDRS_MAX) {
				over = true;
				break;
			}
			out->a[out->n++] = a;
		}
	}
	freeifaddrs(ifa);
	return over ? -E2BIG : 0;
}

size_t nctl_addrs_lost(const struct nctl_addrs *was, const struct nctl_addrs *now,
                       struct nctl_addrs *lost)
{
	lost->n = 0;
	for (size_t i = 0; i < was->n; i++)
		if (!nctl_addrs_has(now, &was->a[i]))
			lost->a[lost->n++] = was->a[i];
	return lost->n;
}

static bool nctl_lost_has(void *ctx, const struct sockaddr_storage *ss)
{
	struct nctl_addr a;
	return nctl_addr_of((const struct sockaddr *)ss, &a) &&
	       nctl_addrs_has((const struct nctl_addrs *)ctx, &a);
}

/* True if an endpoint we announced (m->local_eps) is among the lost. */
static bool nctl_announced_lost(const struct node_ctl *m, const struct nctl_addrs *lost)
{
	for (size_t i = 0; i < m->local_eps.n; i++) {
		struct nctl_addr a = {.family = m->local_eps.ep[i].family};
		memcpy(a.addr, m->local_eps.ep[i].addr, 16);
		if (nctl_addrs_has(lost, &a))
			return true;
	}
	return false;
}

static void nctl_addrs_gone(struct node_ctl *m, const struct nctl_addrs *lost)
{
	struct sockaddr_storage ss;
	bool ctl = m->client && ctl_client_local_addr(m->client, &ss) == 0 &&
	           nctl_lost_has((void *)lost, &ss);
	if (ctl) {
		ctl_client_redial(m->client);
		m->netchg_ctl_redials++;
	}
	size_t relays = magicsock_redial_relays(m->ms, nctl_lost_has, (void *)lost);
	m->netchg_relay_redials += relays;
	bool announced = nctl_announced_lost(m, lost);
	size_t peers = 0;
	if (announced) {
		magicsock_network_changed(m->ms);
		if (m->wg)
			peers = wg_device_handshake_active(m->wg, NCTL_ACTIVE_MS);
		m->net_changes++;
	}
	if (ctl || relays || announced)
		log_info(
		    "this host's addresses changed (%zu gone): %s%zu relay connection(s) "
		    "redialled%s, %zu peer handshake(s)",
		    lost->n, ctl ? "mesh-control redialled, " : "", relays,
		    announced ? ", direct paths validated again, network measured again"
		              : "",
		    peers);
	else
		log_debug("%zu address(es) of this host gone: none of ours used them",
		          lost->n);
}

/* Whether the node should stop because its identity left the state
 * directory (see the top). *why: the errno of the miss. */
static bool nctl_state_lost(struct node_ctl *m, int *why)
{
	const char *dir = m->p->a.state_dir;
	char path[NODE_STATE_PATH_MAX + sizeof(NCTL_KEY_FILE) + 1];
	struct stat sb, db;

	/* An ephemeral node's keys die with it anyway: nothing to protect. */
	if (!dir || !dir[0] || m->p->a.ephemeral || m->p->eph_dir[0])
		return false;
	snprintf(path, sizeof(path), "%s/%s", dir, NCTL_KEY_FILE);
	if (stat(path, &sb) == 0) {
		if (!m->state_seen && stat(dir, &db) == 0) {
			m->state_seen = true;
			m->state_dev = db.st_dev;
			m->state_ino = db.st_ino;
		}
		m->state_misses = 0;
		return false;
	}
	*why = errno;
	/* Only a file that is gone; EACCES or EIO may pass. */
	if (!m->state_seen || (errno != ENOENT && errno != ENOTDIR)) {
		m->state_misses = 0;
		return false;
	}
	int64_t now = nctl_now_ms();
	if (!m->state_misses++)
		m->state_miss_ms = now;
	if (m->state_misses < NCTL_STATE_MISSES ||
	    now - m->state_miss_ms < NCTL_STATE_MISS_MS)
		return false;
	/* The same directory, the file alone missing (moved away by hand):
	 * the node's keys are in memory, it runs on. */
	return stat(dir, &db) != 0 || db.st_dev != m->state_dev ||
	       db.st_ino != m->state_ino;
}

void nctl_netchg_check(struct node_ctl *m)
{
	struct nctl_addrs now;
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
	int r = nctl_gather_addrs(&now);
	if (r < 0) {
		/* No information: not "every address gone". */
		if (!m->netchg_unknown++)
			log_warn("cannot list this host's addresses (%s): keeping the "
			         "last list",
			         r == -E2BIG ? "more than 256" : strerror(-r));
		return;
	}
	m->netchg_unknown = 0;
	struct nctl_addrs lost;
	if (m->netchg_have && nctl_addrs_lost(&m->netchg_addrs, &now, &lost))
		nctl_addrs_gone(m, &lost);
	m->netchg_addrs = now;
	m->netchg_have = true;
}
