/* Which source addresses are shared by many online nodes. A node's
 * seen_ip (its control connection's source, kept in the store by the
 * server holding it) is where peers aim birthday probes (docs/disco.md).
 * Behind a TCP proxy or a carrier NAT every node comes from one address,
 * which is then no node's own: published, it would let any member aim
 * every easy peer's probes at the proxy (control review 3 H1). So an
 * address that more than SRV_SEEN_SHARED_MAX online nodes of the store
 * have as their seen_ip (counted over the snapshot, so that every server
 * counts the nodes of every server) is published for none of them (nodes
 * behind one home NAT stay well under). Counted in an open-addressing
 * table keyed by SipHash of the address; slots whose count fell to 0 stay
 * until the table is rebuilt (at three quarters). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

struct srv_seen_slot {
	struct ctl_ip ip; /* family 0: free */
	uint32_t n;       /* online connections from it */
	bool logged;      /* "shared" said once while it stays in the table */
};

static size_t ip_slot(const struct ctl_server *s, const struct ctl_ip *ip, size_t cap)
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, (const unsigned char *)ip, sizeof *ip, s->seen_key);
	uint64_t v;
	memcpy(&v, h, sizeof v);
	return (size_t)(v % cap);
}

static struct srv_seen_slot *find(struct srv_seen_slot *t, size_t cap,
                                  const struct ctl_server *s, const struct ctl_ip *ip)
{
	size_t i = ip_slot(s, ip, cap);
	for (size_t k = 0; k < cap; k++) {
		struct srv_seen_slot *e = &t[(i + k) % cap];
		if (!e->ip.family || !memcmp(&e->ip, ip, sizeof *ip))
			return e;
	}
	return NULL;
}

/* Rebuilds the table without unused slots, with room for twice the rest. */
static int rebuild(struct ctl_server *s)
{
	size_t live = 0;
	for (size_t i = 0; i < s->seen_cap; i++)
		live += s->seen_tab[i].n > 0;
	size_t cap = 64;
	while (cap < 4 * (live + 1))
		cap *= 2;
	struct srv_seen_slot *nt = calloc(cap, sizeof *nt);
	if (!nt)
		return -1;
	for (size_t i = 0; i < s->seen_cap; i++)
		if (s->seen_tab[i].n)
			*find(nt, cap, s, &s->seen_tab[i].ip) = s->seen_tab[i];
	free(s->seen_tab);
	s->seen_tab = nt;
	s->seen_cap = cap;
	s->seen_used = live;
	return 0;
}

static bool counted(const struct ctl_ip *ip)
{
	return ip->family == 4 || ip->family == 6;
}

/* Withdraws ip from every node it is published for: their versions are
 * bumped, and the refresh that reads them publishes none. */
static void withdraw(struct ctl_server *s, const struct ctl_ip *ip)
{
	for (size_t i = 0; i < s->n_nodes; i++) {
		struct srv_node *n = &s->nodes[i];
		if (n->peer.seen_ip.family && !memcmp(&n->seen, ip, sizeof *ip))
			srv_wb_touch(s, n->id);
	}
}

void srv_seen_up(struct ctl_server *s, const struct ctl_ip *ip)
{
	if (!counted(ip))
		return;
	if (!s->seen_tab) {
		randombytes_buf(s->seen_key, sizeof s->seen_key);
		if (rebuild(s) < 0)
			return;
	}
	struct srv_seen_slot *e = find(s->seen_tab, s->seen_cap, s, ip);
	if (!e->ip.family) {
		if (4 * (s->seen_used + 1) > 3 * s->seen_cap) {
			if (rebuild(s) < 0)
				return;
			e = find(s->seen_tab, s->seen_cap, s, ip);
		}
		e->ip = *ip;
		s->seen_used++;
	}
	if (++e->n != SRV_SEEN_SHARED_MAX + 1)
		return;
	if (!e->logged) {
		char a[CTL_ADDRSTR_MAX];
		ctl_ip_format(ip, a);
		log_info("mesh-control: more than %u nodes online from %s (a proxy "
		         "or a carrier NAT): it is not published as their seen_ip "
		         "(no birthday probing with them)",
		         SRV_SEEN_SHARED_MAX, a);
		e->logged = true;
	}
	withdraw(s, ip);
}

void srv_seen_down(struct ctl_server *s, const struct ctl_ip *ip)
{
	if (!counted(ip) || !s->seen_tab)
		return;
	struct srv_seen_slot *e = find(s->seen_tab, s->seen_cap, s, ip);
	if (e && e->ip.family && e->n)
		e->n--;
}

bool srv_seen_shared(const struct ctl_server *s, const struct ctl_ip *ip)
{
	if (!counted(ip) || !s->seen_tab)
		return false;
	size_t i = ip_slot(s, ip, s->seen_cap);
	for (size_t k = 0; k < s->seen_cap; k++) {
		const struct srv_seen_slot *e = &s->seen_tab[(i + k) % s->seen_cap];
		if (!e->ip.family)
			return false;
		if (!memcmp(&e->ip, ip, sizeof *ip))
			return e->n > SRV_SEEN_SHARED_MAX;
	}
	return false;
}

struct ctl_ip srv_seen_update(struct ctl_server *s, struct srv_node *n,
                              const char *stored, bool online)
{
	struct ctl_ip raw = {0}, pub = {0};
	/* from the database: anything but an address is none */
	if (!stored[0] || !ctl_ip_parse(stored, &raw) || !counted(&raw))
		memset(&raw, 0, sizeof raw);
	bool count = online && raw.family;
	if (n->seen_counted && (!count || memcmp(&n->seen, &raw, sizeof raw) != 0)) {
		srv_seen_down(s, &n->seen);
		n->seen_counted = false;
	}
	n->seen = raw;
	if (count && !n->seen_counted) {
		n->seen_counted = true;
		srv_seen_up(s, &raw);
	}
	if (raw.family && !s->cfg.no_seen_ip && !srv_seen_shared(s, &raw))
		pub = raw;
	return pub;
}

void srv_seen_free(struct ctl_server *s)
{
	free(s->seen_tab);
	s->seen_tab = NULL;
	s->seen_cap = s->seen_used = 0;
}
