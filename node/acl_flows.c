/* Flows this node started and fragments whose first part passed
 * (acl_flows.h says what and why). */
#include "node/acl_flows.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ACL_BUCKETS 8192 /* a power of two, twice ACL_FLOWS_MAX */

struct acl_flow {
	struct acl_flow_key k;
	int64_t last_ms;
	int32_t ri;         /* its remote's count (acl_flows.r) */
	int32_t hnext;      /* bucket chain */
	int32_t prev, next; /* by last use: head newest, tail oldest */
	bool used;
};

/* How many flows one remote address holds: at most ACL_FLOWS_PER_REMOTE. */
struct acl_remote {
	uint8_t addr[16];
	uint32_t n;
	int32_t hnext; /* bucket chain, or the free list */
};

struct acl_flows {
	struct acl_flow f[ACL_FLOWS_MAX];
	struct acl_remote r[ACL_FLOWS_MAX]; /* never more remotes than flows */
	int32_t rbucket[ACL_BUCKETS];
	int32_t rfree_next, rfree_list;
	int32_t bucket[ACL_BUCKETS];
	int32_t head, tail; /* -1: empty */
	int32_t free_next;  /* slots never used yet: free_next..ACL_FLOWS_MAX */
	int32_t free_list;  /* slots used and released, chained by hnext */
	size_t n;
	uint64_t evicted;
	uint8_t key[crypto_shorthash_KEYBYTES];
};

struct acl_flows *acl_flows_new(void)
{
	struct acl_flows *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	for (size_t i = 0; i < ACL_BUCKETS; i++)
		t->bucket[i] = t->rbucket[i] = -1;
	t->head = t->tail = t->free_list = t->rfree_list = -1;
	crypto_shorthash_keygen(t->key);
	return t;
}

void acl_flows_free(struct acl_flows *t)
{
	free(t);
}

static uint32_t acl_flow_hash(const struct acl_flows *t, const struct acl_flow_key *k)
{
	uint8_t buf[37], h[crypto_shorthash_BYTES];
	memcpy(buf, k->local, 16);
	memcpy(buf + 16, k->remote, 16);
	buf[32] = (uint8_t)(k->lport >> 8);
	buf[33] = (uint8_t)k->lport;
	buf[34] = (uint8_t)(k->rport >> 8);
	buf[35] = (uint8_t)k->rport;
	buf[36] = k->proto;
	crypto_shorthash(h, buf, sizeof(buf), t->key);
	uint32_t v;
	memcpy(&v, h, 4);
	return v & (ACL_BUCKETS - 1);
}

static uint32_t acl_remote_hash(const struct acl_flows *t, const uint8_t addr[16])
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, addr, 16, t->key);
	uint32_t v;
	memcpy(&v, h, 4);
	return v & (ACL_BUCKETS - 1);
}

/* The count of addr's flows, made (at 0) when there is none. */
static int32_t acl_remote_get(struct acl_flows *t, const uint8_t addr[16])
{
	uint32_t b = acl_remote_hash(t, addr);
	int32_t i;
	for (i = t->rbucket[b]; i >= 0; i = t->r[i].hnext)
		if (memcmp(t->r[i].addr, addr, 16) == 0)
			return i;
	if (t->rfree_list >= 0) {
		i = t->rfree_list;
		t->rfree_list = t->r[i].hnext;
	} else {
		i = t->rfree_next++;
	}
	memcpy(t->r[i].addr, addr, 16);
	t->r[i].n = 0;
	t->r[i].hnext = t->rbucket[b];
	t->rbucket[b] = i;
	return i;
}

static uint32_t acl_remote_count(const struct acl_flows *t, const uint8_t addr[16])
{
	for (int32_t i = t->rbucket[acl_remote_hash(t, addr)]; i >= 0; i = t->r[i].hnext)
		if (memcmp(t->r[i].addr, addr, 16) == 0)
			return t->r[i].n;
	return 0;
}

static void acl_remote_put(struct acl_flows *t, int32_t i)
{
	if (--t->r[i].n > 0)
		return;
	int32_t *pp = &t->rbucket[acl_remote_hash(t, t->r[i].addr)];
	while (*pp != i)
		pp = &t->r[*pp].hnext;
	*pp = t->r[i].hnext;
	t->r[i].hnext = t->rfree_list;
	t->rfree_list = i;
}

static bool acl_key_eq(const struct acl_flow_key *a, const struct acl_flow_key *b)
{
	return a->lport == b->lport && a->rport == b->rport && a->proto == b->proto &&
	       memcmp(a->remote, b->remote, 16) == 0 &&
	       memcmp(a->local, b->local, 16) == 0;
}

static void acl_lru_unlink(struct acl_flows *t, int32_t i)
{
	struct acl_flow *e = &t->f[i];
	if (e->prev >= 0)
		t->f[e->prev].next = e->next;
	else
		t->head = e->next;
	if (e->next >= 0)
		t->f[e->next].prev = e->prev;
	else
		t->tail = e->prev;
}

static void acl_lru_push(struct acl_flows *t, int32_t i)
{
	struct acl_flow *e = &t->f[i];
	e->prev = -1;
	e->next = t->head;
	if (t->head >= 0)
		t->f[t->head].prev = i;
	t->head = i;
	if (t->tail < 0)
		t->tail = i;
}

/* Takes slot i out of the table (its bucket chain, the LRU list). */
static void acl_flow_drop(struct acl_flows *t, int32_t i)
{
	struct acl_flow *e = &t->f[i];
	int32_t *pp = &t->bucket[acl_flow_hash(t, &e->k)];
	while (*pp != i)
		pp = &t->f[*pp].hnext;
	*pp = e->hnext;
	acl_lru_unlink(t, i);
	acl_remote_put(t, e->ri);
	e->used = false;
	e->hnext = t->free_list;
	t->free_list = i;
	t->n--;
}

static int32_t acl_flow_find(struct acl_flows *t, const struct acl_flow_key *k,
                             uint32_t b)
{
	for (int32_t i = t->bucket[b]; i >= 0; i = t->f[i].hnext)
		if (acl_key_eq(&t->f[i].k, k))
			return i;
	return -1;
}

void acl_flows_note(struct acl_flows *t, const struct acl_flow_key *k, int64_t now_ms)
{
	uint32_t b = acl_flow_hash(t, k);
	int32_t i = acl_flow_find(t, k, b);
	if (i >= 0) {
		t->f[i].last_ms = now_ms;
		acl_lru_unlink(t, i);
		acl_lru_push(t, i);
		return;
	}
	/* Idle flows at the old end go first; then, if still full, the
	 * oldest live one. */
	while (t->tail >= 0 && now_ms - t->f[t->tail].last_ms > ACL_FLOW_IDLE_MS)
		acl_flow_drop(t, t->tail);
	/* A remote at its share makes room from its own flows (its oldest),
	 * so that no one peer pushes out the flows to the others. */
	if (acl_remote_count(t, k->remote) >= ACL_FLOWS_PER_REMOTE) {
		int32_t j = t->tail;
		while (memcmp(t->f[j].k.remote, k->remote, 16) != 0)
			j = t->f[j].prev;
		acl_flow_drop(t, j);
		t->evicted++;
	} else if (t->n == ACL_FLOWS_MAX) {
		acl_flow_drop(t, t->tail);
		t->evicted++;
	}
	if (t->free_list >= 0) {
		i = t->free_list;
		t->free_list = t->f[i].hnext;
	} else {
		i = t->free_next++;
	}
	struct acl_flow *e = &t->f[i];
	e->k = *k;
	e->last_ms = now_ms;
	e->ri = acl_remote_get(t, k->remote);
	t->r[e->ri].n++;
	e->used = true;
	e->hnext = t->bucket[b];
	t->bucket[b] = i;
	acl_lru_push(t, i);
	t->n++;
}

bool acl_flows_match(struct acl_flows *t, const struct acl_flow_key *k, int64_t now_ms)
{
	int32_t i = acl_flow_find(t, k, acl_flow_hash(t, k));
	if (i < 0)
		return false;
	if (now_ms - t->f[i].last_ms > ACL_FLOW_IDLE_MS) {
		acl_flow_drop(t, i);
		return false;
	}
	t->f[i].last_ms = now_ms;
	acl_lru_unlink(t, i);
	acl_lru_push(t, i);
	return true;
}

size_t acl_flows_count(const struct acl_flows *t)
{
	return t ? t->n : 0;
}

uint64_t acl_flows_evicted(const struct acl_flows *t)
{
	return t ? t->evicted : 0;
}

/* ---- fragments ---- */

static bool acl_frag_eq(const struct acl_frag_key *a, const struct acl_frag_key *b)
{
	return a->id == b->id && a->proto == b->proto &&
	       memcmp(a->src, b->src, 16) == 0 && memcmp(a->dst, b->dst, 16) == 0;
}

void acl_frags_note(struct acl_frags *f, const struct acl_frag_key *k, int64_t now_ms)
{
	size_t slot = 0, mine_slot = 0, mine = 0;
	int64_t oldest = INT64_MAX, mine_oldest = INT64_MAX;
	for (size_t i = 0; i < ACL_FRAGS_MAX; i++) {
		bool live = f->t[i] && now_ms - f->t[i] <= ACL_FRAG_MS;
		if (live && acl_frag_eq(&f->k[i], k)) {
			f->t[i] = now_ms ? now_ms : 1;
			return;
		}
		int64_t age = live ? f->t[i] : INT64_MIN; /* free slots first */
		if (age < oldest) {
			oldest = age;
			slot = i;
		}
		if (live && memcmp(f->k[i].src, k->src, 16) == 0) {
			mine++;
			if (f->t[i] < mine_oldest) {
				mine_oldest = f->t[i];
				mine_slot = i;
			}
		}
	}
	/* A source at its share replaces its own oldest: one peer's
	 * fragments cannot push out the others'. */
	if (mine >= ACL_FRAGS_PER_SRC)
		slot = mine_slot;
	f->k[slot] = *k;
	f->t[slot] = now_ms ? now_ms : 1;
}

bool acl_frags_match(const struct acl_frags *f, const struct acl_frag_key *k,
                     int64_t now_ms)
{
	for (size_t i = 0; i < ACL_FRAGS_MAX; i++)
		if (f->t[i] && now_ms - f->t[i] <= ACL_FRAG_MS &&
		    acl_frag_eq(&f->k[i], k))
			return true;
	return false;
}
