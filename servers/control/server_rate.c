/* mesh-control serve: how many handshakes it answers. Reading message 1
 * and writing message 2 cost five X25519 (about 0.2 ms of the only
 * thread), and message 1 carries no proof of freshness the server checks
 * (server.c: no replay table), so one saved message 1 sent again and again
 * would keep the loop busy for the price of a TCP connect. Each source
 * (IPv4 address or IPv6 /64) has a token bucket, and so have all sources
 * together (server_int.h: SRV_HS_*); over either, the connection is closed
 * before any X25519.
 *
 * The sources live in a fixed table of SRV_HS_SLOTS (open addressing,
 * keyed SipHash of the source, so no one can aim at a chain). A source
 * whose bucket has refilled is as good as absent: when the table is three
 * quarters full it is swept of those (rebuilt), at most once every
 * SRV_HS_SWEEP_MS, and once a second when a sweep freed nothing: sources
 * that rotate so that each sweep frees a few cannot make every new
 * connection pay for a sweep (a 4,096-slot rebuild; control review 3 M1).
 * A source that finds no room is judged by the global bucket only (a flood
 * from thousands of sources is what that one is for). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "servers/control/server_int.h"

struct srv_hs_slot {
	char src[64]; /* "" = free */
	double tokens;
	uint64_t ms;
};

static double refill(double tokens, uint64_t *ms, uint64_t now, double rate, double burst)
{
	if (*ms == 0 || now < *ms) {
		double t = *ms == 0 ? burst : tokens;
		*ms = now;
		return t;
	}
	double t = tokens + (double)(now - *ms) * rate / 1000.0;
	*ms = now;
	return t > burst ? burst : t;
}

static size_t slot_hash(const struct ctl_server *s, const char *src)
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, (const unsigned char *)src, strlen(src), s->hs_hash_key);
	uint64_t v;
	memcpy(&v, h, sizeof v);
	return (size_t)(v % SRV_HS_SLOTS);
}

/* The slot of src, or the free slot where it would go. */
static struct srv_hs_slot *slot_find(struct ctl_server *s, const char *src)
{
	size_t i = slot_hash(s, src);
	for (size_t k = 0; k < SRV_HS_SLOTS; k++) {
		struct srv_hs_slot *e = &s->hs_slots[(i + k) % SRV_HS_SLOTS];
		if (!e->src[0] || !strcmp(e->src, src))
			return e;
	}
	return NULL; /* full: cannot happen below three quarters */
}

/* Rebuilds the table without the sources whose bucket is full again. */
static void sweep(struct ctl_server *s, uint64_t now)
{
	const uint64_t full_ms = 2001; /* the burst is two seconds' worth */
	struct srv_hs_slot *old = s->hs_slots;
	struct srv_hs_slot *nt = calloc(SRV_HS_SLOTS, sizeof *nt);
	if (!nt)
		return;
	s->hs_slots = nt;
	s->n_hs_slots = 0;
	for (size_t i = 0; i < SRV_HS_SLOTS; i++) {
		if (!old[i].src[0] || now - old[i].ms >= full_ms)
			continue;
		struct srv_hs_slot *e = slot_find(s, old[i].src);
		*e = old[i];
		s->n_hs_slots++;
	}
	free(old);
}

bool srv_hs_allow(struct ctl_server *s, const char *source, uint64_t now)
{
	if (!s->hs_slots) {
		s->hs_slots = calloc(SRV_HS_SLOTS, sizeof *s->hs_slots);
		randombytes_buf(s->hs_hash_key, sizeof s->hs_hash_key);
	}
	struct srv_hs_slot *e = NULL;
	if (s->hs_slots && source[0]) {
		e = slot_find(s, source);
		if (e && !e->src[0] && s->n_hs_slots >= SRV_HS_SLOTS / 4 * 3) {
			e = NULL;
			if (!s->hs_gc_ms || now - s->hs_gc_ms >= s->hs_gc_gap_ms) {
				size_t before = s->n_hs_slots;
				sweep(s, now);
				s->st.hs_sweeps++;
				s->hs_gc_ms = now;
				s->hs_gc_gap_ms =
				    s->n_hs_slots < before ? SRV_HS_SWEEP_MS : 1000;
			}
			if (s->n_hs_slots < SRV_HS_SLOTS / 4 * 3)
				e = slot_find(s, source);
		}
		if (e && !e->src[0]) {
			size_t l = strnlen(source, sizeof e->src - 1);
			memcpy(e->src, source, l);
			e->src[l] = 0;
			e->ms = 0; /* a full bucket */
			s->n_hs_slots++;
		}
	}
	double st = 0;
	if (e) {
		double rate = s->cfg.hs_per_source;
		st = refill(e->tokens, &e->ms, now, rate, 2 * rate);
		e->tokens = st;
		if (st < 1)
			return false; /* the global bucket pays nothing for it */
	}
	double total = s->cfg.hs_total;
	s->hs_tokens = refill(s->hs_tokens, &s->hs_ms, now, total, 2 * total);
	if (s->hs_tokens < 1)
		return false;
	s->hs_tokens -= 1;
	if (e)
		e->tokens -= 1;
	return true;
}

void srv_hs_free(struct ctl_server *s)
{
	free(s->hs_slots);
	s->hs_slots = NULL;
	s->n_hs_slots = 0;
}
