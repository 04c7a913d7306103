/* Token buckets in a fixed, set-associative table. A source (IPv4 address or
 * IPv6 /64) hashes with a secret SipHash key to one set of WG_RL_WAYS
 * entries; a new source takes a free way or the least recently seen one.
 * Tokens are measured in nanoseconds: a packet costs 1 s / PER_SEC and a
 * bucket holds at most BURST packets' worth. An entry idle for longer than
 * that is indistinguishable from a fresh one, so recycling old entries first
 * loses nothing for well-behaved sources. */
#include "core/wg/ratelimiter.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define WG_RL_SETS         1024
#define WG_RL_WAYS         8
#define WG_RL_NSEC_PER_SEC 1000000000ULL
#define WG_RL_PACKET_COST  (WG_RL_NSEC_PER_SEC / WG_RATELIMIT_PER_SEC)
#define WG_RL_TOKEN_MAX    (WG_RL_PACKET_COST * WG_RATELIMIT_BURST)

struct wg_rl_key {
	uint8_t family; /* 4 or 6; 0 marks a free entry */
	uint8_t pad[7];
	uint8_t addr[8]; /* IPv4 address, or the IPv6 /64 prefix */
};

struct wg_rl_entry {
	struct wg_rl_key key;
	uint64_t last_ns;
	uint64_t tokens;
};

struct wg_ratelimiter {
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct wg_rl_entry sets[WG_RL_SETS][WG_RL_WAYS];
};

struct wg_ratelimiter *wg_ratelimiter_new(void)
{
	if (sodium_init() < 0)
		return NULL;
	struct wg_ratelimiter *rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return NULL;
	randombytes_buf(rl->hash_key, sizeof(rl->hash_key));
	return rl;
}

void wg_ratelimiter_free(struct wg_ratelimiter *rl)
{
	if (rl == NULL)
		return;
	sodium_memzero(rl->hash_key, sizeof(rl->hash_key));
	free(rl);
}

static bool key_from_sockaddr(const struct sockaddr *src, struct wg_rl_key *k)
{
	memset(k, 0, sizeof(*k));
	if (src->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)src;
		k->family = 4;
		memcpy(k->addr, &sin->sin_addr, 4);
		return true;
	}
	if (src->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)src;
		k->family = 6;
		memcpy(k->addr, &sin6->sin6_addr, 8);
		return true;
	}
	return false;
}

/* Finds the source's entry, or claims a free or least recently seen way. */
static struct wg_rl_entry *find_or_claim(struct wg_ratelimiter *rl,
                                         const struct wg_rl_key *k, bool *fresh)
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, (const uint8_t *)k, sizeof(*k), rl->hash_key);
	uint64_t hv = 0;
	memcpy(&hv, h, sizeof(hv) < sizeof(h) ? sizeof(hv) : sizeof(h));
	struct wg_rl_entry *set = rl->sets[hv % WG_RL_SETS];

	struct wg_rl_entry *victim = &set[0];
	for (int i = 0; i < WG_RL_WAYS; i++) {
		struct wg_rl_entry *e = &set[i];
		if (e->key.family != 0 && memcmp(&e->key, k, sizeof(*k)) == 0) {
			*fresh = false;
			return e;
		}
		if (victim->key.family == 0)
			continue; /* a free way beats any used one */
		if (e->key.family == 0 || e->last_ns < victim->last_ns)
			victim = e;
	}
	*fresh = true;
	return victim;
}

bool wg_ratelimiter_allow(struct wg_ratelimiter *rl, const struct sockaddr *src,
                          uint64_t now_ns)
{
	struct wg_rl_key k;
	bool fresh;

	if (rl == NULL || src == NULL || !key_from_sockaddr(src, &k))
		return false;
	struct wg_rl_entry *e = find_or_claim(rl, &k, &fresh);
	if (fresh) {
		e->key = k;
		e->last_ns = now_ns;
		e->tokens = WG_RL_TOKEN_MAX - WG_RL_PACKET_COST;
		return true;
	}

	/* A clock that steps backwards earns nothing. */
	uint64_t elapsed = now_ns > e->last_ns ? now_ns - e->last_ns : 0;
	e->last_ns = now_ns > e->last_ns ? now_ns : e->last_ns;
	if (elapsed > WG_RL_TOKEN_MAX)
		elapsed = WG_RL_TOKEN_MAX;
	e->tokens += elapsed;
	if (e->tokens > WG_RL_TOKEN_MAX)
		e->tokens = WG_RL_TOKEN_MAX;
	if (e->tokens < WG_RL_PACKET_COST)
		return false;
	e->tokens -= WG_RL_PACKET_COST;
	return true;
}
