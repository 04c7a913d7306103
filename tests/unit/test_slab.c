/* core/util/slab: objects are zeroed, aligned, distinct and reused; a chunk
 * goes back to the system when its last object is freed (one spare kept);
 * many objects in mixed alloc/free orders against a plain model; size 0
 * refused, oversized objects from the heap; heap mode (the sanitizer default) hands out
 * working objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util/slab.h"

static unsigned test_rand_state = 12345;

static unsigned test_rand(void)
{
	test_rand_state = test_rand_state * 1103515245u + 12345u;
	return test_rand_state >> 8;
}

static void sizes_zero_big_and_max(void **state)
{
	struct slab s;
	assert_int_not_equal(slab_init(&s, 0, 0), 0);
	/* Too big for chunks: from the heap, and still working. */
	assert_int_equal(slab_init(&s, SLAB_MAX_OBJ + 1, SLAB_PAGES), 0);
	assert_true(s.heap);
	uint8_t *big = slab_alloc(&s);
	assert_non_null(big);
	assert_int_equal(big[SLAB_MAX_OBJ], 0);
	memset(big, 1, SLAB_MAX_OBJ + 1);
	slab_free(&s, big);
	assert_int_equal(s.n_live, 0);
	slab_fini(&s);
	assert_int_equal(slab_init(&s, SLAB_MAX_OBJ, SLAB_PAGES), 0);
	assert_true(s.per_chunk >= 3);
	void *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = slab_alloc(&s);
		assert_non_null(p[i]);
		memset(p[i], 0xab, SLAB_MAX_OBJ);
	}
	assert_int_equal(s.n_chunks, 1);
	for (int i = 0; i < 3; i++)
		slab_free(&s, p[i]);
	slab_fini(&s);
}

static void zeroed_aligned_and_reused(void **state)
{
	struct slab s;
	assert_int_equal(slab_init(&s, 100, SLAB_PAGES), 0);
	assert_int_equal(s.obj_size % SLAB_ALIGN, 0);
	uint8_t *a = slab_alloc(&s), *b = slab_alloc(&s);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal((uintptr_t)a % SLAB_ALIGN, 0);
	assert_int_equal((uintptr_t)b % SLAB_ALIGN, 0);
	assert_true(a + s.obj_size <= b || b + s.obj_size <= a);
	memset(a, 0x5a, 100);
	slab_free(&s, a);
	uint8_t *c = slab_alloc(&s);
	assert_ptr_equal(c, a); /* the freed object comes back first */
	for (int i = 0; i < 100; i++)
		assert_int_equal(c[i], 0);
	assert_int_equal(s.n_live, 2);
	slab_free(&s, b);
	slab_free(&s, c);
	slab_free(&s, NULL);
	assert_int_equal(s.n_live, 0);
	slab_fini(&s);
	assert_int_equal(s.n_chunks, 0);
}

static void chunks_go_back_when_empty(void **state)
{
	struct slab s;
	assert_int_equal(slab_init(&s, 800, SLAB_PAGES), 0);
	size_t n = (size_t)s.per_chunk * 10;
	void **p = calloc(n, sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		p[i] = slab_alloc(&s);
		assert_non_null(p[i]);
		memset(p[i], 0xff, 800);
	}
	assert_int_equal(s.n_chunks, 10);
	assert_null(s.avail); /* all full */
	/* Free every other object: no chunk empties. */
	for (size_t i = 0; i < n; i += 2)
		slab_free(&s, p[i]);
	assert_int_equal(s.n_chunks, 10);
	for (size_t i = 1; i < n; i += 2)
		slab_free(&s, p[i]);
	assert_int_equal(s.n_live, 0);
	assert_int_equal(s.n_chunks, 1); /* the spare */
	assert_non_null(s.spare);
	/* The spare serves the next objects without a new chunk. */
	void *q = slab_alloc(&s);
	assert_non_null(q);
	assert_int_equal(s.n_chunks, 1);
	assert_null(s.spare);
	slab_free(&s, q);
	assert_int_equal(s.n_chunks, 1);
	/* Refilled (from the spare, partly given back), every byte is zero. */
	for (size_t i = 0; i < s.per_chunk; i++) {
		uint8_t *o = p[i] = slab_alloc(&s);
		assert_non_null(o);
		for (size_t k = 0; k < 800; k++)
			assert_int_equal(o[k], 0);
		memset(o, 0xee, 800);
	}
	assert_int_equal(s.n_chunks, 1);
	for (size_t i = 0; i < s.per_chunk; i++)
		slab_free(&s, p[i]);
	free(p);
	slab_fini(&s);
}

static void boundary_oscillation_keeps_chunks(void **state)
{
	struct slab s;
	assert_int_equal(slab_init(&s, 64, SLAB_PAGES), 0);
	size_t n = s.per_chunk;
	void **p = calloc(n, sizeof(*p));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = slab_alloc(&s);
	for (int round = 0; round < 100; round++) {
		void *x = slab_alloc(&s); /* opens a second chunk */
		assert_non_null(x);
		assert_int_equal(s.n_chunks, 2);
		slab_free(&s, x); /* which becomes the spare */
		assert_int_equal(s.n_chunks, 2);
	}
	for (size_t i = 0; i < n; i++)
		slab_free(&s, p[i]);
	assert_int_equal(s.n_chunks, 1);
	free(p);
	slab_fini(&s);
}

/* Random allocs and frees; every live object keeps its own fill byte. */
static void random_against_model(void **state)
{
	enum { N = 5000, SZ = 200 };
	struct slab s;
	assert_int_equal(slab_init(&s, SZ, SLAB_PAGES), 0);
	uint8_t **p = calloc(N, sizeof(*p));
	assert_non_null(p);
	size_t live = 0;
	for (int step = 0; step < 200000; step++) {
		size_t i = test_rand() % N;
		if (p[i]) {
			for (size_t k = 0; k < SZ; k++)
				assert_int_equal(p[i][k], (uint8_t)i);
			slab_free(&s, p[i]);
			p[i] = NULL;
			live--;
		} else {
			p[i] = slab_alloc(&s);
			assert_non_null(p[i]);
			assert_int_equal(p[i][0], 0);
			memset(p[i], (uint8_t)i, SZ);
			live++;
		}
		assert_int_equal(s.n_live, live);
	}
	for (size_t i = 0; i < N; i++)
		slab_free(&s, p[i]);
	assert_int_equal(s.n_live, 0);
	assert_int_equal(s.n_chunks, 1);
	free(p);
	slab_fini(&s);
	assert_int_equal(s.n_chunks, 0);
}

static void fini_unmaps_full_chunks(void **state)
{
	struct slab s;
	assert_int_equal(slab_init(&s, 4096, SLAB_PAGES), 0);
	for (unsigned i = 0; i < 3 * s.per_chunk + 1; i++)
		assert_non_null(slab_alloc(&s));
	assert_int_equal(s.n_chunks, 4);
	slab_fini(&s);
	assert_int_equal(s.n_chunks, 0);
}

static void default_mode_works(void **state)
{
	struct slab s;
	assert_int_equal(slab_init(&s, 300, 0), 0);
	void *p[50];
	for (int i = 0; i < 50; i++) {
		p[i] = slab_alloc(&s);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % SLAB_ALIGN, 0);
		memset(p[i], i, 300);
	}
	for (int i = 0; i < 50; i++)
		slab_free(&s, p[i]);
	assert_int_equal(s.n_live, 0);
	slab_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sizes_zero_big_and_max),
	    cmocka_unit_test(zeroed_aligned_and_reused),
	    cmocka_unit_test(chunks_go_back_when_empty),
	    cmocka_unit_test(boundary_oscillation_keeps_chunks),
	    cmocka_unit_test(random_against_model),
	    cmocka_unit_test(fini_unmaps_full_chunks),
	    cmocka_unit_test(default_mode_works),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
