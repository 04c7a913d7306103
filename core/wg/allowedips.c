/* Allowed-IPs as a path-compressed binary trie, one per address family.
 *
 * Every node stands for a prefix (key, cidr). A node either carries a peer
 * (a configured prefix) or is "glue": a branching point with exactly two
 * children and no peer. A child's prefix always extends its parent's, and it
 * hangs under child[b] where b is the child's key bit at position
 * parent->cidr. Depth is bounded by 129 since cidr strictly grows downwards.
 *
 * Keys are held as two host-order 64-bit words, most significant bit first,
 * so one code path serves IPv4 (top 32 bits of word 0) and IPv6, and a
 * prefix test is two masked compares. */
#include "core/wg/allowedips.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A hard cap on configured prefixes so a hostile control plane cannot make
 * us allocate without bound. Far above any real mesh. */
#define WG_ALLOWEDIPS_MAX_ENTRIES (1u << 20)

struct wg_aip_node {
	struct wg_aip_node *child[2];
	void *peer;      /* NULL for glue */
	uint64_t key[2]; /* masked to cidr */
	uint64_t mask[2];
	uint8_t cidr;
};

struct wg_allowedips {
	struct wg_aip_node *root4;
	struct wg_aip_node *root6;
	size_t entries;
};

static inline uint64_t load64_be(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Left-aligned 64-bit mask of n bits, n in 0..64. */
static inline uint64_t mask64(unsigned n)
{
	return n == 0 ? 0 : ~(uint64_t)0 << (64 - n);
}

static void make_mask(uint64_t mask[2], unsigned cidr)
{
	mask[0] = mask64(cidr >= 64 ? 64 : cidr);
	mask[1] = mask64(cidr <= 64 ? 0 : cidr - 64);
}

/* Returns the family's address width in bits, or 0 if unsupported; fills
 * key from addr. */
static unsigned load_key(int family, const uint8_t *addr, uint64_t key[2])
{
	if (family == AF_INET) {
		key[0] = ((uint64_t)addr[0] << 56) | ((uint64_t)addr[1] << 48) |
		         ((uint64_t)addr[2] << 40) | ((uint64_t)addr[3] << 32);
		key[1] = 0;
		return 32;
	}
	if (family == AF_INET6) {
		key[0] = load64_be(addr);
		key[1] = load64_be(addr + 8);
		return 128;
	}
	return 0;
}

static inline unsigned key_bit(const uint64_t key[2], unsigned pos)
{
	return pos < 64 ? (unsigned)(key[0] >> (63 - pos)) & 1
	                : (unsigned)(key[1] >> (127 - pos)) & 1;
}

static inline bool node_matches(const struct wg_aip_node *n, const uint64_t key[2])
{
	return ((key[0] & n->mask[0]) == n->key[0]) &
	       ((key[1] & n->mask[1]) == n->key[1]);
}

/* Number of leading bits a and b share (0..128). */
static unsigned common_bits(const uint64_t a[2], const uint64_t b[2])
{
	uint64_t x = a[0] ^ b[0];
	if (x != 0)
		return (unsigned)__builtin_clzll(x);
	x = a[1] ^ b[1];
	if (x != 0)
		return 64 + (unsigned)__builtin_clzll(x);
	return 128;
}

static struct wg_aip_node *node_new(const uint64_t key[2], unsigned cidr, void *peer)
{
	struct wg_aip_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	make_mask(n->mask, cidr);
	n->key[0] = key[0] & n->mask[0];
	n->key[1] = key[1] & n->mask[1];
	n->cidr = (uint8_t)cidr;
	n->peer = peer;
	return n;
}

struct wg_allowedips *wg_allowedips_new(void)
{
	return calloc(1, sizeof(struct wg_allowedips));
}

/* Depth is at most 129, so recursion is bounded. */
static void free_subtree(struct wg_aip_node *n)
{
	if (n == NULL)
		return;
	free_subtree(n->child[0]);
	free_subtree(n->child[1]);
	free(n);
}

void wg_allowedips_free(struct wg_allowedips *t)
{
	if (t == NULL)
		return;
	free_subtree(t->root4);
	free_subtree(t->root6);
	free(t);
}

int wg_allowedips_insert(struct wg_allowedips *t, int family, const uint8_t *addr,
                         uint8_t cidr, void *peer)
{
	uint64_t key[2];
	unsigned bits;

	if (t == NULL || addr == NULL || peer == NULL)
		return -EINVAL;
	bits = load_key(family, addr, key);
	if (bits == 0 || cidr > bits)
		return -EINVAL;

	struct wg_aip_node **slot = family == AF_INET ? &t->root4 : &t->root6;
	for (;;) {
		struct wg_aip_node *n = *slot;
		if (n == NULL)
			break;
		unsigned common = common_bits(key, n->key);
		unsigned limit = cidr < n->cidr ? cidr : n->cidr;
		if (common > limit)
			common = limit;

		if (common == n->cidr) {
			/* n is a prefix of (key, cidr). */
			if (n->cidr == cidr) {
				if (n->peer == NULL) {
					if (t->entries >= WG_ALLOWEDIPS_MAX_ENTRIES)
						return -ENOMEM;
					t->entries++;
				}
				n->peer = peer;
				return 0;
			}
			slot = &n->child[key_bit(key, n->cidr)];
			continue;
		}

		if (t->entries >= WG_ALLOWEDIPS_MAX_ENTRIES)
			return -ENOMEM;
		struct wg_aip_node *leaf = node_new(key, cidr, peer);
		if (leaf == NULL)
			return -ENOMEM;
		if (common == cidr) {
			/* The new prefix contains n: it goes above n. */
			leaf->child[key_bit(n->key, cidr)] = n;
			*slot = leaf;
		} else {
			/* They diverge at bit `common`: join them under glue. */
			struct wg_aip_node *glue = node_new(key, common, NULL);
			if (glue == NULL) {
				free(leaf);
				return -ENOMEM;
			}
			glue->child[key_bit(key, common)] = leaf;
			glue->child[key_bit(n->key, common)] = n;
			*slot = glue;
		}
		t->entries++;
		return 0;
	}

	if (t->entries >= WG_ALLOWEDIPS_MAX_ENTRIES)
		return -ENOMEM;
	*slot = node_new(key, cidr, peer);
	if (*slot == NULL)
		return -ENOMEM;
	t->entries++;
	return 0;
}

void *wg_allowedips_lookup(const struct wg_allowedips *t, int family, const uint8_t *addr)
{
	uint64_t key[2];
	const struct wg_aip_node *n;
	void *best = NULL;

	if (t == NULL || addr == NULL)
		return NULL;
	unsigned bits = load_key(family, addr, key);
	if (bits == 0)
		return NULL;
	n = family == AF_INET ? t->root4 : t->root6;
	while (n != NULL && node_matches(n, key)) {
		if (n->peer != NULL)
			best = n->peer;
		if (n->cidr == bits)
			break;
		n = n->child[key_bit(key, n->cidr)];
	}
	return best;
}

/* Post-order: drop peer's prefixes, then splice out nodes that no longer
 * carry a peer and do not branch. Returns the number of prefixes removed. */
static size_t remove_subtree(struct wg_aip_node **slot, void *peer)
{
	struct wg_aip_node *n = *slot;
	size_t removed;

	if (n == NULL)
		return 0;
	removed = remove_subtree(&n->child[0], peer);
	removed += remove_subtree(&n->child[1], peer);
	if (n->peer != NULL && n->peer == peer) {
		n->peer = NULL;
		removed++;
	}
	if (n->peer == NULL) {
		if (n->child[0] != NULL && n->child[1] != NULL)
			return removed; /* still a branching point: glue */
		*slot = n->child[0] != NULL ? n->child[0] : n->child[1];
		free(n);
	}
	return removed;
}

void wg_allowedips_remove_by_peer(struct wg_allowedips *t, void *peer)
{
	if (t == NULL || peer == NULL)
		return;
	size_t removed = remove_subtree(&t->root4, peer);
	removed += remove_subtree(&t->root6, peer);
	t->entries -= removed;
}

/* Depth is at most 129, so recursion is bounded. Returns false on
 * allocation failure (what was copied so far hangs under *out). */
static bool clone_subtree(const struct wg_aip_node *n, struct wg_aip_node **out)
{
	*out = NULL;
	if (n == NULL)
		return true;
	*out = malloc(sizeof(**out));
	if (*out == NULL)
		return false;
	**out = *n;
	(*out)->child[0] = (*out)->child[1] = NULL;
	return clone_subtree(n->child[0], &(*out)->child[0]) &&
	       clone_subtree(n->child[1], &(*out)->child[1]);
}

struct wg_allowedips *wg_allowedips_clone(const struct wg_allowedips *t)
{
	struct wg_allowedips *c;

	if (t == NULL)
		return NULL;
	c = wg_allowedips_new();
	if (c == NULL)
		return NULL;
	c->entries = t->entries;
	if (!clone_subtree(t->root4, &c->root4) || !clone_subtree(t->root6, &c->root6)) {
		wg_allowedips_free(c);
		return NULL;
	}
	return c;
}

size_t wg_allowedips_count(const struct wg_allowedips *t)
{
	return t ? t->entries : 0;
}
