/* The WireGuard paper's timers (section 6), one libevent timer each, driven
 * by the events below, as in the Linux module's timers.c. */
#ifndef MESH_WG_TIMERS_H
#define MESH_WG_TIMERS_H

struct wg_peer;

/* Returns 0 or -ENOMEM. */
int wg_timers_init(struct wg_peer *p);
/* Cancels and frees every timer. */
void wg_timers_stop(struct wg_peer *p);

void wg_timers_data_sent(struct wg_peer *p);
void wg_timers_data_received(struct wg_peer *p);
void wg_timers_any_authenticated_packet_sent(struct wg_peer *p);
void wg_timers_any_authenticated_packet_received(struct wg_peer *p);
void wg_timers_handshake_initiated(struct wg_peer *p);
/* Seconds until an unanswered initiation is retried: WG_QUICK_RETRY_TIMEOUT
 * for the first WG_QUICK_RETRIES retries to a peer never reached, else
 * WG_REKEY_TIMEOUT. */
unsigned wg_timers_retry_timeout(const struct wg_peer *p);
void wg_timers_handshake_complete(struct wg_peer *p);
void wg_timers_session_derived(struct wg_peer *p);
void wg_timers_any_authenticated_packet_traversal(struct wg_peer *p);

#endif
