/* UDP flow tables: a chained hash (seeded, so that remote senders cannot
 * aim at one bucket) plus a doubly linked list from newest to oldest. */
#include "proxy/udp_flow.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int px_flows_init(struct px_flows *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	size_t nb = 16;
	while (nb < max && nb < ((size_t)1 << 20))
		nb <<= 1;
	t->buckets = calloc(nb, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->mask = nb - 1;
	t->seed = randombytes_random();
	return 0;
}

void px_flows_fini(struct px_flows *t)
{
	free(t->buckets);
	t->buckets = NULL;
}

static size_t px_flows_hash(const struct px_flows *t, const struct ns_addr *a,
                            uint16_t port)
{
	/* FNV-1a over family, address and port, started from the seed. */
	uint32_t h = 2166136261u ^ t->seed;
	size_t alen = a->family == AF_INET ? 4 : 16;
	h = (h ^ (uint32_t)a->family) * 16777619u;
	for (size_t i = 0; i < alen; i++)
		h = (h ^ a->addr[i]) * 16777619u;
	h = (h ^ (port >> 8)) * 16777619u;
	h = (h ^ (port & 0xff)) * 16777619u;
	h ^= h >> 15;
	return h & t->mask;
}

static bool px_flows_eq(const struct px_flow *f, const struct ns_addr *a, uint16_t port)
{
	return f->port == port && f->addr.family == a->family &&
	       memcmp(f->addr.addr, a->addr, a->family == AF_INET ? 4 : 16) == 0;
}

struct px_flow *px_flows_find(const struct px_flows *t, const struct ns_addr *a,
                              uint16_t port)
{
	struct px_flow *f = t->buckets[px_flows_hash(t, a, port)];
	while (f && !px_flows_eq(f, a, port))
		f = f->hnext;
	return f;
}

static void px_flows_lru_unlink(struct px_flows *t, struct px_flow *f)
{
	if (f->newer)
		f->newer->older = f->older;
	else
		t->newest = f->older;
	if (f->older)
		f->older->newer = f->newer;
	else
		t->oldest = f->newer;
	f->newer = f->older = NULL;
}

static void px_flows_lru_push(struct px_flows *t, struct px_flow *f)
{
	f->newer = NULL;
	f->older = t->newest;
	if (t->newest)
		t->newest->newer = f;
	else
		t->oldest = f;
	t->newest = f;
}

void px_flows_insert(struct px_flows *t, struct px_flow *f, uint64_t now)
{
	size_t b = px_flows_hash(t, &f->addr, f->port);
	f->hnext = t->buckets[b];
	t->buckets[b] = f;
	f->last = now;
	px_flows_lru_push(t, f);
	t->n++;
}

void px_flows_touch(struct px_flows *t, struct px_flow *f, uint64_t now)
{
	f->last = now;
	if (t->newest == f)
		return;
	px_flows_lru_unlink(t, f);
	px_flows_lru_push(t, f);
}

void px_flows_remove(struct px_flows *t, struct px_flow *f)
{
	struct px_flow **pp = &t->buckets[px_flows_hash(t, &f->addr, f->port)];
	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = f->hnext;
	f->hnext = NULL;
	px_flows_lru_unlink(t, f);
	t->n--;
}
