/* Timers of the WireGuard paper (section 6), as the Linux module arranges
 * them:
 *  - retransmit_handshake: REKEY_TIMEOUT + jitter after each initiation
 *    (1 s for the first WG_QUICK_RETRIES retries to a peer never reached,
 *    see messages.h); retries until REKEY_ATTEMPT_TIME is spent, then
 *    gives up.
 *  - send_keepalive: KEEPALIVE_TIMEOUT after receiving data with nothing
 *    sent back (passive keepalive).
 *  - new_handshake: KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter after sending
 *    data with nothing heard back: the session is probably dead.
 *  - zero_key_material: 3 * REJECT_AFTER_TIME after the last session was
 *    derived, all keys are wiped.
 *  - persistent_keepalive: the configured interval after any packet. */
#include "core/wg/timers.h"

#include "core/util/log.h"
#include "core/wg/device_internal.h"
#include "core/wg/peer.h"

#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

static void expired_zero_key_material(evutil_socket_t fd, short what, void *arg);

static void mod_timer(struct event *ev, unsigned sec, unsigned ms)
{
	struct timeval tv = {.tv_sec = sec + ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

static unsigned jitter_ms(void)
{
	return randombytes_uniform(WG_REKEY_TIMEOUT_JITTER_MAX_MS);
}

/* A timer that may not exist yet (NULL: never armed, so not pending). */
static bool pending(struct event *ev)
{
	return ev && evtimer_pending(ev, NULL);
}

static void del_timer(struct event *ev)
{
	if (ev)
		evtimer_del(ev);
}

/* Arms *slot, making the event on first use: an idle peer owns no timer
 * events (about 150 bytes each). Made once per peer, never per packet.
 * Without memory the timer is not armed (and logged). */
static void arm(struct wg_peer *p, struct event **slot, event_callback_fn cb,
                unsigned sec, unsigned ms)
{
	if (!*slot) {
		*slot = evtimer_new(p->dev->base, cb, p);
		if (!*slot) {
			log_warn("wg: out of memory for a peer timer");
			return;
		}
	}
	mod_timer(*slot, sec, ms);
}

static void expired_retransmit_handshake(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	if (p->handshake_attempts > WG_MAX_TIMER_HANDSHAKES) {
		log_debug("wg: handshake did not complete after %u attempts, giving up",
		          WG_MAX_TIMER_HANDSHAKES + 2);
		del_timer(p->timer_send_keepalive);
		/* Nothing will carry the staged packets now. */
		p->dev->stats.tx_drop_queue += p->staged_count;
		wg_peer_purge_staged(p);
		if (!pending(p->timer_zero_key_material))
			arm(p, &p->timer_zero_key_material, expired_zero_key_material,
			    WG_REJECT_AFTER_TIME * 3, 0);
	} else {
		unsigned waited = wg_timers_retry_timeout(p);
		p->handshake_attempts++;
		/* Perhaps our sticky source is the trouble (as the kernel). */
		memset(&p->src, 0, sizeof(p->src));
		log_debug(
		    "wg: handshake did not complete after %u s, retrying (attempt %u)",
		    waited, p->handshake_attempts + 1);
		wg_send_handshake_initiation(p, true);
	}
}

static void expired_send_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	wg_send_keepalive(p);
	if (p->need_another_keepalive) {
		p->need_another_keepalive = false;
		arm(p, &p->timer_send_keepalive, expired_send_keepalive,
		    WG_KEEPALIVE_TIMEOUT, 0);
	}
}

static void expired_new_handshake(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	log_debug("wg: no reply for %d s after sending data, starting a handshake",
	          WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT);
	memset(&p->src, 0, sizeof(p->src)); /* as on a retry */
	wg_send_handshake_initiation(p, false);
}

static void expired_zero_key_material(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	log_debug("wg: zeroing the keys of an idle peer");
	wg_peer_clear_sessions(p);
}

static void expired_persistent_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	if (p->persistent_keepalive)
		wg_send_keepalive(p);
}

int wg_timers_init(struct wg_peer *p)
{
	/* The others are made when first armed (see arm). This one always
	 * exists: the device stops it when the keepalive is turned off. */
	p->timer_persistent_keepalive =
	    evtimer_new(p->dev->base, expired_persistent_keepalive, p);
	return p->timer_persistent_keepalive ? 0 : -ENOMEM;
}

static void free_timer(struct event **ev)
{
	if (*ev) {
		event_free(*ev);
		*ev = NULL;
	}
}

void wg_timers_stop(struct wg_peer *p)
{
	free_timer(&p->timer_retransmit_handshake);
	free_timer(&p->timer_send_keepalive);
	free_timer(&p->timer_new_handshake);
	free_timer(&p->timer_zero_key_material);
	free_timer(&p->timer_persistent_keepalive);
}

/* Data (not a keepalive) went out: expect something back. */
void wg_timers_data_sent(struct wg_peer *p)
{
	if (!pending(p->timer_new_handshake))
		arm(p, &p->timer_new_handshake, expired_new_handshake,
		    WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT, jitter_ms());
}

/* Data came in: answer with a keepalive unless we send something first. */
void wg_timers_data_received(struct wg_peer *p)
{
	if (!pending(p->timer_send_keepalive))
		arm(p, &p->timer_send_keepalive, expired_send_keepalive,
		    WG_KEEPALIVE_TIMEOUT, 0);
	else
		p->need_another_keepalive = true;
}

void wg_timers_any_authenticated_packet_sent(struct wg_peer *p)
{
	del_timer(p->timer_send_keepalive);
	/* Anything staged went out (wg_send_staged empties the ring before
	 * new data is sent): give the ring back. */
	wg_peer_staged_shrink(p);
}

void wg_timers_any_authenticated_packet_received(struct wg_peer *p)
{
	del_timer(p->timer_new_handshake);
}

/* 1 s after each of the first WG_QUICK_RETRIES + 1 initiations to a peer
 * never reached, counted over the peer's life: data that keeps coming does
 * not start the quick retries again (it did, and a peer never reached got
 * an initiation every second for as long as traffic lasted). */
unsigned wg_timers_retry_timeout(const struct wg_peer *p)
{
	/* With no endpoint nothing is sent: the full pace, so that what is
	 * staged still waits REKEY_ATTEMPT_TIME for the peer. */
	if (!wg_peer_reachable(p))
		return WG_REKEY_TIMEOUT;
	if (p->handshakes_completed == 0 && p->initiations <= WG_QUICK_RETRIES)
		return WG_QUICK_RETRY_TIMEOUT;
	return WG_REKEY_TIMEOUT;
}

void wg_timers_handshake_initiated(struct wg_peer *p)
{
	arm(p, &p->timer_retransmit_handshake, expired_retransmit_handshake,
	    wg_timers_retry_timeout(p), jitter_ms());
}

void wg_timers_handshake_complete(struct wg_peer *p)
{
	struct timespec ts;

	del_timer(p->timer_retransmit_handshake);
	p->handshake_attempts = 0;
	p->sent_lastminute_handshake = false;
	p->handshakes_completed++;
	clock_gettime(CLOCK_REALTIME, &ts);
	p->walltime_last_handshake = ts.tv_sec;
	p->last_handshake_ns = wg_now_ns();
}

void wg_timers_session_derived(struct wg_peer *p)
{
	arm(p, &p->timer_zero_key_material, expired_zero_key_material,
	    WG_REJECT_AFTER_TIME * 3, 0);
}

void wg_timers_any_authenticated_packet_traversal(struct wg_peer *p)
{
	if (p->persistent_keepalive)
		mod_timer(p->timer_persistent_keepalive, p->persistent_keepalive, 0);
}
