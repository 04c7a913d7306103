/* Peer life cycle and session rotation (as the Linux module's peer.c and the
 * keypair half of noise.c). */
#include "core/wg/peer.h"

#include "core/wg/device_internal.h"
#include "core/wg/timers.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static bool endpoint_ok(const struct sockaddr_storage *ss)
{
	return ss->ss_family == 0 || ss->ss_family == AF_INET ||
	       ss->ss_family == AF_INET6;
}

struct wg_peer *wg_peer_new(struct wg_device *d, const struct wg_peer_config *cfg,
                            int *err)
{
	struct wg_peer *p;

	if (!endpoint_ok(&cfg->endpoint)) {
		*err = -EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	p->dev = d;
	memcpy(p->pubkey_entry.key, cfg->public_key, WG_KEY_LEN);
	p->pubkey_entry.peer = p;
	if (wg_noise_handshake_init(&p->hs, &d->id, cfg->public_key,
	                            cfg->has_preshared_key ? cfg->preshared_key : NULL) !=
	    0) {
		free(p);
		*err = -EINVAL;
		return NULL;
	}
	p->hs_entry.kind = WG_INDEX_HANDSHAKE;
	p->hs_entry.peer = p;
	wg_cookie_maker_init(&p->cookie, cfg->public_key);
	if (cfg->endpoint.ss_family)
		wg_peer_set_endpoint(p, (const struct sockaddr *)&cfg->endpoint);
	p->persistent_keepalive = cfg->persistent_keepalive;
	if (wg_timers_init(p) != 0) {
		wg_peer_free(p);
		*err = -ENOMEM;
		return NULL;
	}
	*err = 0;
	return p;
}

void wg_peer_free(struct wg_peer *p)
{
	if (!p)
		return;
	wg_timers_stop(p);
	wg_peer_clear_sessions(p);
	wg_peer_purge_staged(p);
	wg_noise_handshake_wipe(&p->hs);
	wg_cookie_maker_wipe(&p->cookie);
	sodium_memzero(p, sizeof(*p));
	free(p);
}

static void session_free(struct wg_peer *p, struct wg_session *s)
{
	if (!s)
		return;
	wg_index_table_remove(p->dev->index, &s->entry);
	wg_noise_keypair_wipe(&s->kp);
	free(s);
}

void wg_peer_add_session(struct wg_peer *p, struct wg_session *s)
{
	if (s->kp.i_am_the_initiator) {
		/* An unconfirmed next session is dropped in favour of ours, but
		 * kept for receiving, as it may already be in use by the peer. */
		if (p->next) {
			session_free(p, p->previous);
			p->previous = p->next;
			p->next = NULL;
			session_free(p, p->current);
		} else {
			session_free(p, p->previous);
			p->previous = p->current;
		}
		p->current = s;
	} else {
		/* Not usable for sending until the initiator confirms it. */
		session_free(p, p->next);
		p->next = s;
		session_free(p, p->previous);
		p->previous = NULL;
	}
}

bool wg_peer_begin_session(struct wg_peer *p, uint64_t now_ns)
{
	struct wg_session *s = calloc(1, sizeof(*s));

	if (!s || wg_noise_begin_session(&p->hs, &s->kp, now_ns) != 0) {
		free(s);
		wg_peer_clear_handshake(p);
		return false;
	}
	s->entry.kind = WG_INDEX_KEYPAIR;
	s->entry.peer = p;
	/* The session answers to the index the peer already knows. */
	wg_index_table_replace(p->dev->index, &p->hs_entry, &s->entry);
	wg_peer_add_session(p, s);
	return true;
}

bool wg_peer_received_with_session(struct wg_peer *p, struct wg_session *s)
{
	if (s != p->next)
		return false;
	session_free(p, p->previous);
	p->previous = p->current;
	p->current = p->next;
	p->next = NULL;
	return true;
}

void wg_peer_clear_handshake(struct wg_peer *p)
{
	wg_index_table_remove(p->dev->index, &p->hs_entry);
	wg_noise_handshake_clear(&p->hs);
}

void wg_peer_clear_sessions(struct wg_peer *p)
{
	session_free(p, p->current);
	session_free(p, p->previous);
	session_free(p, p->next);
	p->current = p->previous = p->next = NULL;
	wg_peer_clear_handshake(p);
}

void wg_peer_set_endpoint(struct wg_peer *p, const struct sockaddr *sa)
{
	memset(&p->src, 0, sizeof(p->src));
	if (sa->sa_family == AF_INET) {
		memset(&p->endpoint, 0, sizeof(p->endpoint));
		memcpy(&p->endpoint, sa, sizeof(struct sockaddr_in));
	} else if (sa->sa_family == AF_INET6) {
		memset(&p->endpoint, 0, sizeof(p->endpoint));
		memcpy(&p->endpoint, sa, sizeof(struct sockaddr_in6));
	}
}

int wg_peer_stage(struct wg_peer *p, const uint8_t *pkt, size_t len)
{
	struct wg_staged *st;
	uint8_t *copy;

	if (!p->staged) {
		p->staged = calloc(WG_MAX_STAGED_PACKETS, sizeof(*p->staged));
		if (!p->staged)
			return -ENOMEM;
		p->staged_head = 0;
	}
	copy = malloc(len ? len : 1);
	if (!copy) {
		wg_peer_staged_shrink(p);
		return -ENOMEM;
	}
	if (len)
		memcpy(copy, pkt, len);
	if (p->staged_count >= WG_MAX_STAGED_PACKETS) {
		st = &p->staged[p->staged_head];
		free(st->data);
		st->data = NULL;
		p->staged_head = (p->staged_head + 1) % WG_MAX_STAGED_PACKETS;
		p->staged_count--;
		p->dev->stats.tx_drop_queue++;
	}
	st = &p->staged[(p->staged_head + p->staged_count) % WG_MAX_STAGED_PACKETS];
	st->data = copy;
	st->len = len;
	p->staged_count++;
	return 0;
}

void wg_peer_purge_staged(struct wg_peer *p)
{
	while (p->staged_count) {
		struct wg_staged *st = &p->staged[p->staged_head];
		free(st->data);
		st->data = NULL;
		p->staged_head = (p->staged_head + 1) % WG_MAX_STAGED_PACKETS;
		p->staged_count--;
	}
	p->staged_head = 0;
	wg_peer_staged_shrink(p);
}
