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
	int32_t hnext;      /* bucket chain */
	int32_t prev, next; /* by last use: head newest, tail oldest */
	bool used;
};

struct acl_flows {
	struct acl_flow f[ACL_FLOWS_MAX];
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
		t->bucket[i] = -1;
	t->head = t->tail = t->free_list = -1;
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
	if (t->n == ACL_FLOWS_MAX) {
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
	size_t slot = 0;
	int64_t oldest = INT64_MAX;
	for (size_t i = 0; i < ACL_FRAGS_MAX; i++) {
		if (f->t[i] && acl_frag_eq(&f->k[i], k)) {
			slot = i;
			break;
		}
		int64_t age = f->t[i] ? f->t[i] : INT64_MIN; /* free slots first */
		if (age < oldest) {
			oldest = age;
			slot = i;
		}
	}
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
