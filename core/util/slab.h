/* Fixed-size objects for long-lived per-connection state (direct relays,
 * session blocks), carved from 64 KiB chunks of mmap'd pages.
 *
 * Why: connections come in bursts, and what a burst leaves in malloc's heap
 * (freed relays between libevent's small per-descriptor entries, which are
 * never freed) cannot go back to the system. Here each chunk holds objects of
 * one size only; a chunk whose objects are all free is unmapped (one is kept
 * as a spare, so steady traffic around a chunk boundary makes no system
 * calls; after a big burst all but its first 16 KiB go back too). Objects are carved
 * lazily, so an unused part of a chunk is never touched and costs no RSS.
 *
 * Sanitizer builds take every object from calloc/free, so ASan still sees
 * overflows and leaks (PX_SLAB_PAGES forces chunks there too: the allocator's
 * own tests). One event loop: not thread-safe. */
#ifndef PX_SLAB_H
#define PX_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#define PX_SLAB_CHUNK   (64 * 1024) /* bytes per chunk, aligned to its size */
#define PX_SLAB_ALIGN   16          /* every object's alignment */
#define PX_SLAB_MAX_OBJ (20 * 1024) /* so that a chunk holds >= 3 */

/* px_slab_init flags */
#define PX_SLAB_PAGES 1u /* chunks even under sanitizers */

struct px_slab_chunk;

struct px_slab {
	size_t obj_size;             /* rounded up to PX_SLAB_ALIGN */
	unsigned per_chunk;          /* objects per chunk */
	bool heap;                   /* calloc/free instead of chunks */
	struct px_slab_chunk *avail; /* chunks with a free object (not spare) */
	struct px_slab_chunk *full;  /* chunks without one */
	struct px_slab_chunk *spare; /* one empty chunk kept for reuse */
	size_t n_chunks;             /* mapped, the spare included */
	size_t n_live;               /* objects handed out */
};

/* Sets up s for objects of obj_size bytes; 0 or -EINVAL (size 0). Objects
 * over PX_SLAB_MAX_OBJ come from calloc/free (heap set). A zeroed struct
 * px_slab is not ready: call this first. */
int px_slab_init(struct px_slab *s, size_t obj_size, unsigned flags);

/* Unmaps every chunk (objects still live are gone too; meant for tests
 * and shutdown; in heap mode live objects are not freed). s may be initialised again
 * afterwards. */
void px_slab_fini(struct px_slab *s);

/* A zeroed object, or NULL when out of memory. */
void *px_slab_alloc(struct px_slab *s);

/* Returns p (from px_slab_alloc on s; NULL is ignored). */
void px_slab_free(struct px_slab *s, void *p);

#endif
