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
 * overflows and leaks (SLAB_PAGES forces chunks there too: the allocator's
 * own tests). One event loop: not thread-safe. */
#ifndef MESH_SLAB_H
#define MESH_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#define SLAB_CHUNK   (64 * 1024) /* bytes per chunk, aligned to its size */
#define SLAB_ALIGN   16          /* every object's alignment */
#define SLAB_MAX_OBJ (20 * 1024) /* so that a chunk holds >= 3 */

/* slab_init flags */
#define SLAB_PAGES 1u /* chunks even under sanitizers */

struct slab_chunk;

struct slab {
	size_t obj_size;             /* rounded up to SLAB_ALIGN */
	unsigned per_chunk;          /* objects per chunk */
	bool heap;                   /* calloc/free instead of chunks */
	struct slab_chunk *avail; /* chunks with a free object (not spare) */
	struct slab_chunk *full;  /* chunks without one */
	struct slab_chunk *spare; /* one empty chunk kept for reuse */
	size_t n_chunks;             /* mapped, the spare included */
	size_t n_live;               /* objects handed out */
};

/* Sets up s for objects of obj_size bytes; 0 or -EINVAL (size 0). Objects
 * over SLAB_MAX_OBJ come from calloc/free (heap set). A zeroed struct
 * slab is not ready: call this first. */
int slab_init(struct slab *s, size_t obj_size, unsigned flags);

/* Unmaps every chunk (objects still live are gone too; meant for tests
 * and shutdown; in heap mode live objects are not freed). s may be initialised again
 * afterwards. */
void slab_fini(struct slab *s);

/* A zeroed object, or NULL when out of memory. */
void *slab_alloc(struct slab *s);

/* Returns p (from slab_alloc on s; NULL is ignored). */
void slab_free(struct slab *s, void *p);

#endif
