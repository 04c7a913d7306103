/* mesh-control serve: several servers on one store, so that the mesh
 * outlives any one of them.
 *
 * - Each server picks a random nonzero 63-bit id at start and gives it to
 *   the store (ctl_store_set_server): from then on the store records which
 *   server holds each online node, and ignores this server's "offline" for
 *   a node another server holds (it moved there: server 1 closing the old
 *   connection must not take it offline on server 2).
 * - Every beat_ms the server beats (ctl_store_server_beat): it is alive,
 *   and the nodes of servers silent for dead_after_s go offline (a crashed
 *   server leaves them online). At start the first beat does what the
 *   one-server start did with every node: offline those left by a previous
 *   run, but not the nodes of servers that run.
 * - At a clean stop the server takes its own nodes offline and its row out
 *   (ctl_store_server_leave).
 * - A server that was taken for dead (paused, or its beats failed) and
 *   comes back finds its nodes offline: the broadcast's check of each
 *   connection writes them online again (server_map.c).
 * - Changes by the other servers: the store's change notification when it
 *   has one (PostgreSQL LISTEN) schedules a broadcast at once; the poll of
 *   the map version stays, for SQLite and while the notification is down. */
#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util/log.h"
#include "servers/control/server_int.h"

/* Nonzero, and positive as a signed 64-bit number (any database keeps it). */
static int64_t pick_id(void)
{
	uint64_t v = 0;
	while ((v & (uint64_t)INT64_MAX) == 0)
		randombytes_buf(&v, sizeof v);
	return (int64_t)(v & (uint64_t)INT64_MAX);
}

int srv_ha_start(struct ctl_server *s, char *err, size_t errlen)
{
	struct ctl_store *st = s->cfg.store;
	s->server_id = pick_id();
	ctl_store_set_server(st, s->server_id);
	size_t swept = 0;
	if (ctl_store_server_beat(st, (int64_t)time(NULL), s->cfg.dead_after_s, &swept) <
	    0) {
		snprintf(err, errlen, "store: %s", ctl_store_errmsg(st));
		return -1;
	}
	log_info("mesh-control: server id %016llx on a %s store (beat every %u ms, "
	         "others taken for stopped after %u s of silence)",
	         (unsigned long long)s->server_id, ctl_store_kind(st), s->cfg.beat_ms,
	         s->cfg.dead_after_s);
	s->st.nodes_swept += swept;
	if (swept)
		log_info(
		    "mesh-control: %zu nodes online through a stopped server (or the "
		    "last run) marked offline",
		    swept);
	return 0;
}

static void beat_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	size_t swept = 0;
	int r = ctl_store_server_beat(s->cfg.store, (int64_t)time(NULL),
	                              s->cfg.dead_after_s, &swept);
	if (r < 0) {
		/* the others take this server for stopped after dead_after_s
		 * of this: its nodes are written online again when it is back */
		srv_note_write_fail(s);
		s->st.beat_failures++;
		log_warn("mesh-control: server beat: %s; retrying in %u ms",
		         ctl_store_errmsg(s->cfg.store), s->cfg.beat_ms);
		return;
	}
	if (swept) {
		s->st.nodes_swept += swept;
		log_info("mesh-control: %zu nodes of a server silent for %u s marked "
		         "offline",
		         swept, s->cfg.dead_after_s);
		srv_broadcast_schedule(s);
	}
}

static void watch_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct ctl_server *s = arg;
	int r = ctl_store_watch_drain(s->cfg.store);
	if (r == 1) {
		srv_broadcast_schedule(s);
	} else if (r < 0) {
		log_info("mesh-control: the store's change notification was lost (%s); "
		         "polling every %u ms until it is back",
		         ctl_store_errmsg(s->cfg.store), s->cfg.poll_ms);
		event_free(s->watch);
		s->watch = NULL;
		srv_broadcast_schedule(s); /* what it may have missed */
	}
}

void srv_ha_watch_try(struct ctl_server *s)
{
	if (s->watch || !s->cfg.base)
		return;
	int fd = ctl_store_watch_fd(s->cfg.store);
	if (fd < 0)
		return;
	s->watch = event_new(s->cfg.base, fd, EV_READ | EV_PERSIST, watch_cb, s);
	if (!s->watch || event_add(s->watch, NULL) < 0) {
		if (s->watch)
			event_free(s->watch);
		s->watch = NULL;
		return;
	}
	log_debug("mesh-control: listening for the store's change notification");
	/* changes between the last poll and now were not announced to us */
	srv_broadcast_schedule(s);
}

int srv_ha_timers(struct ctl_server *s)
{
	s->beat = event_new(s->cfg.base, -1, EV_PERSIST, beat_cb, s);
	if (!s->beat)
		return -ENOMEM;
	struct timeval tv = {s->cfg.beat_ms / 1000, (s->cfg.beat_ms % 1000) * 1000};
	if (event_add(s->beat, &tv) < 0)
		return -ENOMEM;
	srv_ha_watch_try(s);
	return 0;
}

void srv_ha_stop(struct ctl_server *s)
{
	size_t n = 0;
	if (ctl_store_server_leave(s->cfg.store, (int64_t)time(NULL), &n) < 0)
		log_warn("mesh-control: at stop: marking this server's nodes offline: "
		         "%s (another server's beat does it after %u s, or the next "
		         "start)",
		         ctl_store_errmsg(s->cfg.store), s->cfg.dead_after_s);
	else if (n)
		log_info("mesh-control: at stop: %zu nodes marked offline", n);
}

void srv_ha_free(struct ctl_server *s)
{
	if (s->beat)
		event_free(s->beat);
	if (s->watch)
		event_free(s->watch);
	s->beat = s->watch = NULL;
	/* the handle no longer speaks for a server */
	if (s->server_id)
		ctl_store_set_server(s->cfg.store, 0);
	s->server_id = 0;
}
