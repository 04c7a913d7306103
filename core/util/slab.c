/* Fixed-size objects from mmap'd chunks; see slab.h.
 *
 * A chunk is SLAB_CHUNK bytes aligned to its size, so an object finds
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
#define SLAB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define SLAB_SANITIZED 1
#endif
#endif
#ifndef SLAB_SANITIZED
#define SLAB_SANITIZED 0
#endif

struct slab_free_obj {
	struct slab_free_obj *next;
};

struct slab_chunk {
	struct slab *slab;
	struct slab_chunk *next, *prev; /* on s->avail or s->full */
	struct slab_free_obj *free;     /* freed objects */
	unsigned used;                     /* objects handed out */
	unsigned carved;                   /* objects carved so far */
	size_t clean;                      /* bytes from here on are zero */
	struct slab_chunk **list;       /* &s->avail, &s->full or NULL */
};

#define SLAB_ROUND(n)   (((n) + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1))
#define SLAB_HDR        SLAB_ROUND(sizeof(struct slab_chunk))
#define SLAB_SPARE_KEEP (16 * 1024) /* of the spare chunk stays touched */

int slab_init(struct slab *s, size_t obj_size, unsigned flags)
{
	memset(s, 0, sizeof(*s));
	if (obj_size == 0 || obj_size > SIZE_MAX / 2)
		return -EINVAL;
	s->obj_size = SLAB_ROUND(obj_size);
	if (s->obj_size > SLAB_MAX_OBJ) {
		s->heap = true;
		return 0;
	}
	s->per_chunk = (unsigned)((SLAB_CHUNK - SLAB_HDR) / s->obj_size);
	s->heap = SLAB_SANITIZED && !(flags & SLAB_PAGES);
	return 0;
}

static void slab_unlist(struct slab_chunk *c)
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
static void slab_list(struct slab_chunk **list, struct slab_chunk *c)
{
	slab_unlist(c);
	c->prev = NULL;
	c->next = *list;
	if (*list)
		(*list)->prev = c;
	*list = c;
	c->list = list;
}

/* SLAB_CHUNK bytes aligned to SLAB_CHUNK, or NULL. The kernel
 * usually places a mapping right below the previous one, so a plain
 * mapping is often aligned already; else map twice the size and trim. */
static void *slab_map(void)
{
	const size_t sz = SLAB_CHUNK;
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

static struct slab_chunk *slab_chunk_new(struct slab *s)
{
	struct slab_chunk *c = slab_map();
	if (!c)
		return NULL;
	c->slab = s; /* the rest is zero from mmap */
	c->clean = SLAB_HDR;
	s->n_chunks++;
	return c;
}

static void slab_chunk_unmap(struct slab *s, struct slab_chunk *c)
{
	s->n_chunks--;
	munmap(c, SLAB_CHUNK);
}

void *slab_alloc(struct slab *s)
{
	if (s->heap) {
		void *p = calloc(1, s->obj_size);
		if (p)
			s->n_live++;
		return p;
	}
	struct slab_chunk *c = s->avail;
	if (!c) {
		c = s->spare;
		s->spare = NULL;
		if (!c)
			c = slab_chunk_new(s);
		if (!c)
			return NULL;
		slab_list(&s->avail, c);
	}
	uint8_t *p;
	bool dirty = true;
	if (c->free) {
		p = (uint8_t *)c->free;
		c->free = c->free->next;
	} else {
		size_t off = SLAB_HDR + (size_t)c->carved * s->obj_size;
		p = (uint8_t *)c + off;
		c->carved++;
		/* Never touched: zero already, and left untouched (a big object's
		 * unused tail costs no RSS). */
		dirty = off < c->clean;
		if (off + s->obj_size > c->clean)
			c->clean = off + s->obj_size;
	}
	if (++c->used == s->per_chunk)
		slab_list(&s->full, c);
	s->n_live++;
	if (dirty)
		memset(p, 0, s->obj_size);
	return p;
}

void slab_free(struct slab *s, void *p)
{
	if (!p)
		return;
	s->n_live--;
	if (s->heap) {
		free(p);
		return;
	}
	struct slab_chunk *c =
	    (struct slab_chunk *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK - 1));
	struct slab_free_obj *o = p;
	o->next = c->free;
	c->free = o;
	if (c->used-- == s->per_chunk)
		slab_list(&s->avail, c);
	if (c->used)
		return;
	slab_unlist(c);
	if (s->spare) {
		slab_chunk_unmap(s, c);
		return;
	}
	/* Kept empty: forget its free list and start carving again, so the
	 * next objects come in address order. A burst that filled it leaves
	 * its pages touched: give back all but the first SLAB_SPARE_KEEP
	 * bytes (one system call when a big burst has drained; a chunk that
	 * only ever held a few objects costs none). */
	if (c->clean > SLAB_SPARE_KEEP &&
	    madvise((uint8_t *)c + SLAB_SPARE_KEEP, SLAB_CHUNK - SLAB_SPARE_KEEP,
	            MADV_DONTNEED) == 0)
		c->clean = SLAB_SPARE_KEEP;
	c->free = NULL;
	c->carved = 0;
	s->spare = c;
}

void slab_fini(struct slab *s)
{
	struct slab_chunk **lists[2] = {&s->avail, &s->full};
	for (int i = 0; i < 2; i++) {
		while (*lists[i]) {
			struct slab_chunk *c = *lists[i];
			slab_unlist(c);
			slab_chunk_unmap(s, c);
		}
	}
	if (s->spare)
		slab_chunk_unmap(s, s->spare);
	s->spare = NULL;
	s->n_live = 0;
}
