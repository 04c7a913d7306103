/* Timers of the WireGuard paper (section 6), as the Linux module arranges
 * them:
 *  - retransmit_handshake: REKEY_TIMEOUT + jitter after each initiation;
 *    retries until REKEY_ATTEMPT_TIME is spent, then gives up.
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
#include <time.h>

static void mod_timer(struct event *ev, unsigned sec, unsigned ms)
{
	struct timeval tv = {.tv_sec = sec + ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

static unsigned jitter_ms(void)
{
	return randombytes_uniform(WG_REKEY_TIMEOUT_JITTER_MAX_MS);
}

static bool pending(struct event *ev)
{
	return evtimer_pending(ev, NULL);
}

static void expired_retransmit_handshake(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	if (p->handshake_attempts > WG_MAX_TIMER_HANDSHAKES) {
		log_debug("wg: handshake did not complete after %u attempts, giving up",
		          WG_MAX_TIMER_HANDSHAKES + 2);
		evtimer_del(p->timer_send_keepalive);
		/* Nothing will carry the staged packets now. */
		p->dev->stats.tx_drop_queue += p->staged_count;
		wg_peer_purge_staged(p);
		if (!pending(p->timer_zero_key_material))
			mod_timer(p->timer_zero_key_material, WG_REJECT_AFTER_TIME * 3,
			          0);
	} else {
		p->handshake_attempts++;
		log_debug(
		    "wg: handshake did not complete after %d s, retrying (attempt %u)",
		    WG_REKEY_TIMEOUT, p->handshake_attempts + 1);
		wg_send_handshake_initiation(p, true);
	}
}

static void expired_send_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	wg_send_keepalive(p);
	if (p->need_another_keepalive) {
		p->need_another_keepalive = false;
		mod_timer(p->timer_send_keepalive, WG_KEEPALIVE_TIMEOUT, 0);
	}
}

static void expired_new_handshake(evutil_socket_t fd, short what, void *arg)
{
	struct wg_peer *p = arg;

	log_debug("wg: no reply for %d s after sending data, starting a handshake",
	          WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT);
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
	struct event_base *b = p->dev->base;

	p->timer_retransmit_handshake = evtimer_new(b, expired_retransmit_handshake, p);
	p->timer_send_keepalive = evtimer_new(b, expired_send_keepalive, p);
	p->timer_new_handshake = evtimer_new(b, expired_new_handshake, p);
	p->timer_zero_key_material = evtimer_new(b, expired_zero_key_material, p);
	p->timer_persistent_keepalive = evtimer_new(b, expired_persistent_keepalive, p);
	if (!p->timer_retransmit_handshake || !p->timer_send_keepalive ||
	    !p->timer_new_handshake || !p->timer_zero_key_material ||
	    !p->timer_persistent_keepalive)
		return -ENOMEM;
	return 0;
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
		mod_timer(p->timer_new_handshake, WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT,
		          jitter_ms());
}

/* Data came in: answer with a keepalive unless we send something first. */
void wg_timers_data_received(struct wg_peer *p)
{
	if (!pending(p->timer_send_keepalive))
		mod_timer(p->timer_send_keepalive, WG_KEEPALIVE_TIMEOUT, 0);
	else
		p->need_another_keepalive = true;
}

void wg_timers_any_authenticated_packet_sent(struct wg_peer *p)
{
	evtimer_del(p->timer_send_keepalive);
}

void wg_timers_any_authenticated_packet_received(struct wg_peer *p)
{
	evtimer_del(p->timer_new_handshake);
}

void wg_timers_handshake_initiated(struct wg_peer *p)
{
	mod_timer(p->timer_retransmit_handshake, WG_REKEY_TIMEOUT, jitter_ms());
}

void wg_timers_handshake_complete(struct wg_peer *p)
{
	struct timespec ts;

	evtimer_del(p->timer_retransmit_handshake);
	p->handshake_attempts = 0;
	p->sent_lastminute_handshake = false;
	p->handshakes_completed++;
	clock_gettime(CLOCK_REALTIME, &ts);
	p->walltime_last_handshake = ts.tv_sec;
}

void wg_timers_session_derived(struct wg_peer *p)
{
	mod_timer(p->timer_zero_key_material, WG_REJECT_AFTER_TIME * 3, 0);
}

void wg_timers_any_authenticated_packet_traversal(struct wg_peer *p)
{
	if (p->persistent_keepalive)
		mod_timer(p->timer_persistent_keepalive, p->persistent_keepalive, 0);
}
