/* mesh-control serve: what a connection costs before it registers. The
 * connections that have not registered (handshake, WAIT_REG) are capped
 * per source and in all (server.h: max_unreg, max_unreg_per_source), and
 * the listener pauses when accept() fails for lack of descriptors. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>

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

/* The global cap on unregistered connections is reached: close the oldest
 * one of the source that holds the most (a flood from a few addresses pays
 * for itself; a node from elsewhere gets its turn). With heavy_only, only
 * when that source holds at least half its own cap: when no source floods
 * (a join storm of many nodes from many addresses), closing the oldest
 * would close a node about to register for one that has not started, and
 * in a storm every node would go round again (control scale: 10,000 nodes
 * at once made 115,868 reconnects in 38 s and 23 registrations); then the
 * newcomer waits instead (false: closed before any work, it retries). One
 * pass with a small table of sources; runs only at the cap. */
static bool unreg_evict(struct ctl_server *s, bool heavy_only)
{
	struct slot {
		const char *src;
		size_t n;
		struct srv_conn *oldest;
	};
	size_t cap = 2 * s->n_unreg + 1;
	struct slot *t = calloc(cap, sizeof *t);
	struct srv_conn *victim = s->unreg;
	size_t most = 0;
	if (!t)
		goto kill; /* the newest, then: something must give */
	for (struct srv_conn *c = s->unreg; c; c = c->unext) {
		size_t h = 5381;
		for (const char *p = c->source; *p; p++)
			h = h * 33 + (unsigned char)*p;
		struct slot *e = &t[h % cap];
		while (e->src && strcmp(e->src, c->source))
			e = e + 1 < t + cap ? e + 1 : t;
		e->src = c->source;
		e->n++;
		e->oldest = c; /* the list is newest first */
		if (e->n > most || (e->n == most && e->oldest == c)) {
			most = e->n;
			victim = c;
		}
	}
	free(t);
	if (heavy_only && most * 2 < s->cfg.max_unreg_per_source)
		return false;
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
