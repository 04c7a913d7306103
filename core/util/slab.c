/* Fixed-size objects from mmap'd chunks; see slab.h.
 *
 * A chunk is PX_SLAB_CHUNK bytes aligned to its size, so an object finds
 * its chunk by masking its address. The chunk's header comes first, then
 * the objects. Free objects form a list through their first bytes;
 * objects never handed out are not on it (carved counts them), so their
 * pages stay untouched. Chunks with a free object sit on s->avail, full
 * ones on s->full; an empty one becomes the spare or is unmapped. */
#include "core/util/slab.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define PX_SLAB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define PX_SLAB_SANITIZED 1
#endif
#endif
#ifndef PX_SLAB_SANITIZED
#define PX_SLAB_SANITIZED 0
#endif

struct px_slab_free_obj {
	struct px_slab_free_obj *next;
};

struct px_slab_chunk {
	struct px_slab *slab;
	struct px_slab_chunk *next, *prev; /* on s->avail or s->full */
	struct px_slab_free_obj *free;     /* freed objects */
	unsigned used;                     /* objects handed out */
	unsigned carved;                   /* objects carved so far */
	size_t clean;                      /* bytes from here on are zero */
	struct px_slab_chunk **list;       /* &s->avail, &s->full or NULL */
};

#define PX_SLAB_ROUND(n)   (((n) + PX_SLAB_ALIGN - 1) & ~(size_t)(PX_SLAB_ALIGN - 1))
#define PX_SLAB_HDR        PX_SLAB_ROUND(sizeof(struct px_slab_chunk))
#define PX_SLAB_SPARE_KEEP (16 * 1024) /* of the spare chunk stays touched */

int px_slab_init(struct px_slab *s, size_t obj_size, unsigned flags)
{
	memset(s, 0, sizeof(*s));
	if (obj_size == 0 || obj_size > SIZE_MAX / 2)
		return -EINVAL;
	s->obj_size = PX_SLAB_ROUND(obj_size);
	if (s->obj_size > PX_SLAB_MAX_OBJ) {
		s->heap = true;
		return 0;
	}
	s->per_chunk = (unsigned)((PX_SLAB_CHUNK - PX_SLAB_HDR) / s->obj_size);
	s->heap = PX_SLAB_SANITIZED && !(flags & PX_SLAB_PAGES);
	return 0;
}

static void px_slab_unlist(struct px_slab_chunk *c)
{
	if (!c->list)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		*c->list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	c->list = NULL;
}

/* Moves c to the head of *list. */
static void px_slab_list(struct px_slab_chunk **list, struct px_slab_chunk *c)
{
	px_slab_unlist(c);
	c->prev = NULL;
	c->next = *list;
	if (*list)
		(*list)->prev = c;
	*list = c;
	c->list = list;
}

/* PX_SLAB_CHUNK bytes aligned to PX_SLAB_CHUNK, or NULL. The kernel
 * usually places a mapping right below the previous one, so a plain
 * mapping is often aligned already; else map twice the size and trim. */
static void *px_slab_map(void)
{
	const size_t sz = PX_SLAB_CHUNK;
	void *p =
	    mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (((uintptr_t)p & (sz - 1)) == 0)
		return p;
	munmap(p, sz);
	p = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
	         0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t a = (uintptr_t)p, al = (a + sz - 1) & ~(uintptr_t)(sz - 1);
	if (al > a)
		munmap(p, al - a);
	if (al + sz < a + 2 * sz)
		munmap((void *)(al + sz), a + 2 * sz - (al + sz));
	return (void *)al;
}

static struct px_slab_chunk *px_slab_chunk_new(struct px_slab *s)
{
	struct px_slab_chunk *c = px_slab_map();
	if (!c)
		return NULL;
	c->slab = s; /* the rest is zero from mmap */
	c->clean = PX_SLAB_HDR;
	s->n_chunks++;
	return c;
}

static void px_slab_chunk_unmap(struct px_slab *s, struct px_slab_chunk *c)
{
	s->n_chunks--;
	munmap(c, PX_SLAB_CHUNK);
}

void *px_slab_alloc(struct px_slab *s)
{
	if (s->heap) {
		void *p = calloc(1, s->obj_size);
		if (p)
			s->n_live++;
		return p;
	}
	struct px_slab_chunk *c = s->avail;
	if (!c) {
		c = s->spare;
		s->spare = NULL;
		if (!c)
			c = px_slab_chunk_new(s);
		if (!c)
			return NULL;
		px_slab_list(&s->avail, c);
	}
	uint8_t *p;
	bool dirty = true;
	if (c->free) {
		p = (uint8_t *)c->free;
		c->free = c->free->next;
	} else {
		size_t off = PX_SLAB_HDR + (size_t)c->carved * s->obj_size;
		p = (uint8_t *)c + off;
		c->carved++;
		/* Never touched: zero already, and left untouched (a big object's
		 * unused tail costs no RSS). */
		dirty = off < c->clean;
		if (off + s->obj_size > c->clean)
			c->clean = off + s->obj_size;
	}
	if (++c->used == s->per_chunk)
		px_slab_list(&s->full, c);
	s->n_live++;
	if (dirty)
		memset(p, 0, s->obj_size);
	return p;
}

void px_slab_free(struct px_slab *s, void *p)
{
	if (!p)
		return;
	s->n_live--;
	if (s->heap) {
		free(p);
		return;
	}
	struct px_slab_chunk *c =
	    (struct px_slab_chunk *)((uintptr_t)p & ~(uintptr_t)(PX_SLAB_CHUNK - 1));
	struct px_slab_free_obj *o = p;
	o->next = c->free;
	c->free = o;
	if (c->used-- == s->per_chunk)
		px_slab_list(&s->avail, c);
	if (c->used)
		return;
	px_slab_unlist(c);
	if (s->spare) {
		px_slab_chunk_unmap(s, c);
		return;
	}
	/* Kept empty: forget its free list and start carving again, so the
	 * next objects come in address order. A burst that filled it leaves
	 * its pages touched: give back all but the first PX_SLAB_SPARE_KEEP
	 * bytes (one system call when a big burst has drained; a chunk that
	 * only ever held a few objects costs none). */
	if (c->clean > PX_SLAB_SPARE_KEEP &&
	    madvise((uint8_t *)c + PX_SLAB_SPARE_KEEP, PX_SLAB_CHUNK - PX_SLAB_SPARE_KEEP,
	            MADV_DONTNEED) == 0)
		c->clean = PX_SLAB_SPARE_KEEP;
	c->free = NULL;
	c->carved = 0;
	s->spare = c;
}

void px_slab_fini(struct px_slab *s)
{
	struct px_slab_chunk **lists[2] = {&s->avail, &s->full};
	for (int i = 0; i < 2; i++) {
		while (*lists[i]) {
			struct px_slab_chunk *c = *lists[i];
			px_slab_unlist(c);
			px_slab_chunk_unmap(s, c);
		}
	}
	if (s->spare)
		px_slab_chunk_unmap(s, s->spare);
	s->spare = NULL;
	s->n_live = 0;
}
