/* mesh-control serve: what a connection costs before it registers. The
 * connections that have not registered (handshake, WAIT_REG) are capped
 * per source and in all (server.h: max_unreg, max_unreg_per_source), and
 * the listener pauses when accept() fails for lack of descriptors. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

void srv_unreg_unlink(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	if (!c->in_unreg)
		return;
	if (c->uprev)
		c->uprev->unext = c->unext;
	else
		s->unreg = c->unext;
	if (c->unext)
		c->unext->uprev = c->uprev;
	c->uprev = c->unext = NULL;
	c->in_unreg = false;
	s->n_unreg--;
}

void srv_unreg_add(struct srv_conn *c)
{
	struct ctl_server *s = c->s;
	c->uprev = NULL;
	c->unext = s->unreg;
	if (s->unreg)
		s->unreg->uprev = c;
	s->unreg = c;
	c->in_unreg = true;
	s->n_unreg++;
}

/* Drops from s->unreg the connections that registered (or are closing)
 * since; returns how many of those left come from source. */
static size_t unreg_prune_count(struct ctl_server *s, const char *source)
{
	size_t n = 0;
	for (struct srv_conn *c = s->unreg, *nx; c; c = nx) {
		nx = c->unext;
		if (c->dead || (c->state != SRV_HANDSHAKE && c->state != SRV_WAIT_REG))
			srv_unreg_unlink(c);
		else if (!strcmp(c->source, source))
			n++;
	}
	return n;
}

/* Slot of c's source in a small open-addressing table of cap slots. */
struct unreg_slot {
	const char *src;
	size_t n;
};

static struct unreg_slot *unreg_slot(struct unreg_slot *t, size_t cap,
                                     const char *source)
{
	size_t h = 5381;
	for (const char *p = source; *p; p++)
		h = h * 33 + (unsigned char)*p;
	struct unreg_slot *e = &t[h % cap];
	while (e->src && strcmp(e->src, source))
		e = e + 1 < t + cap ? e + 1 : t;
	return e;
}

/* Whether c may be chosen: those still in the handshake go before any
 * that finished it (those proved a Noise handshake, which a bare TCP flood
 * cannot); only when none is left in the handshake is one of those taken. */
static bool unreg_class(const struct srv_conn *c, bool handshake)
{
	if (c->dead)
		return false;
	return handshake ? c->state == SRV_HANDSHAKE : c->state == SRV_WAIT_REG;
}

/* The global cap on unregistered connections is reached: close one of the
 * sources holding the most, chosen at random among all their connections
 * (a flood from a few addresses pays for itself; a node from elsewhere
 * gets its turn). Not the oldest: that is the one closest to finishing its
 * registration, an honest node's as likely as not; not the newest either:
 * then a flood keeps its old connections and pushes out every honest
 * newcomer from a busy source (a NAT). At random, a flooder's share of the
 * victims is its share of the connections. With heavy_only, only when that
 * source holds at least half its own cap: when no source floods (a join
 * storm of many nodes from many addresses), closing one would close a node
 * about to register for one that has not started, and in a storm every
 * node would go round again (control scale: 10,000 nodes at once made
 * 115,868 reconnects in 38 s and 23 registrations); then the newcomer
 * waits instead (false: it is closed before any work, and retries). One
 * pass with a small table of sources, one to pick; runs only at the cap. */
static bool unreg_evict(struct ctl_server *s, bool heavy_only)
{
	size_t cap = 2 * s->n_unreg + 1;
	struct unreg_slot *t = calloc(cap, sizeof *t);
	struct srv_conn *victim = s->unreg;
	size_t most = 0;
	if (!t)
		goto kill; /* the newest, then: something must give */
	bool hs = false;
	for (struct srv_conn *c = s->unreg; c && !hs; c = c->unext)
		hs = unreg_class(c, true);
	size_t heavy = 0; /* connections of the sources holding most */
	for (struct srv_conn *c = s->unreg; c; c = c->unext) {
		if (!unreg_class(c, hs))
			continue;
		struct unreg_slot *e = unreg_slot(t, cap, c->source);
		e->src = c->source;
		if (++e->n > most) {
			most = e->n;
			heavy = 0;
		}
		if (e->n == most)
			heavy += most; /* a source reaching most brings all its own */
	}
	if (t && heavy_only && most * 2 < s->cfg.max_unreg_per_source) {
		free(t);
		return false;
	}
	if (heavy) {
		uint32_t pick = randombytes_uniform((uint32_t)heavy);
		for (struct srv_conn *c = s->unreg; c; c = c->unext) {
			if (!unreg_class(c, hs) || unreg_slot(t, cap, c->source)->n != most)
				continue;
			victim = c;
			if (!pick--)
				break;
		}
	}
	free(t);
kill:
	s->st.conns_evicted++;
	log_debug("mesh-control: %s: unregistered connection closed for a newer "
	          "one (%zu unregistered from %s)",
	          victim->peer, most, victim->source);
	srv_unreg_unlink(victim);
	srv_conn_kill(victim);
	return true;
}

/* Whether one more unregistered connection from source fits; makes room
 * at the global cap. */
bool srv_unreg_admit(struct ctl_server *s, const char *source)
{
	if (unreg_prune_count(s, source) >= s->cfg.max_unreg_per_source) {
		s->st.conns_refused_source++;
		return false;
	}
	/* all max_conns taken: an unregistered one makes room, never a node */
	if (s->st.conns_active - s->n_dying >= s->cfg.max_conns) {
		if (!s->unreg) {
			s->st.conns_refused_limit++;
			return false;
		}
		unreg_evict(s, false);
	}
	while (s->n_unreg >= s->cfg.max_unreg && s->unreg)
		if (!unreg_evict(s, true)) {
			s->st.conns_refused_busy++;
			return false;
		}
	return true;
}

void srv_accept_resume_cb(int fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	evconnlistener_enable(s->lis);
}

/* accept() failed with something other than EAGAIN / EINTR /
 * ECONNABORTED. Out of file descriptors (or buffers) the listening socket
 * stays readable: without a pause the loop would spin on it. Stop
 * accepting for 100 ms, and say so at most once a minute. */
void srv_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct ctl_server *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	uint64_t now = srv_now_ms();
	s->st.accept_paused++;
	if (!s->accept_log_ms || now - s->accept_log_ms >= 60000) {
		s->accept_log_ms = now;
		log_warn("mesh-control: accepting node connections: %s; pausing "
		         "100 ms at a time (%zu connections open%s)",
		         strerror(e), (size_t)s->st.conns_active,
		         e == EMFILE || e == ENFILE
		             ? ": raise the open-file limit, e.g. LimitNOFILE= in "
		               "the systemd unit"
		             : "");
	}
	evconnlistener_disable(l);
	struct timeval tv = {0, 100 * 1000};
	event_add(s->accept_resume, &tv);
}
