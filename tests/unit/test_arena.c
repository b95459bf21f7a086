/*
 * test_arena.c - the memtable's bump allocator: alignment, usage accounting,
 * dedicated blocks for big allocations, release.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/arena.h"
#include "util/rng.h"

/* One block's malloc: its data plus a header of at most this much. */
#define HEADER_MAX 64

static void test_arena__empty_uses_nothing(void **state)
{
	(void)state;
	struct kv_arena a;
	kv_arena_init(&a);
	assert_int_equal(kv_arena_memory_usage(&a), 0);
	kv_arena_release(&a);
	assert_int_equal(kv_arena_memory_usage(&a), 0);
}

static void test_arena__allocations_are_aligned_and_disjoint(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed(__func__);
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_arena a;
	kv_arena_init(&a);

	enum { N = 3000 };
	uint8_t **ptrs = calloc(N, sizeof *ptrs);
	size_t *sizes = calloc(N, sizeof *sizes);
	assert_non_null(ptrs);
	assert_non_null(sizes);
	for (int i = 0; i < N; i++) {
		size_t align = (size_t)1 << kv_rng_below(&rng, 13); /* 1 .. 4096 */
		/* Mostly small, sometimes above a quarter block. */
		size_t n = kv_rng_below(&rng, 8) ? kv_rng_below(&rng, 200)
						 : kv_rng_below(&rng, 3 * KV_ARENA_BLOCK);
		uint8_t *p = kv_arena_alloc_aligned(&a, n, align);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % align, 0);
		memset(p, (int)(i & 0xff), n); /* ASan catches overruns */
		ptrs[i] = p;
		sizes[i] = n;
	}
	/* Nothing was overwritten by a later allocation. */
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < sizes[i]; k++)
			assert_int_equal(ptrs[i][k], (uint8_t)(i & 0xff));
	free(ptrs);
	free(sizes);
	kv_arena_release(&a);
}

static void test_arena__usage_counts_every_block(void **state)
{
	(void)state;
	struct kv_arena a;
	kv_arena_init(&a);

	/* The first byte costs one whole block. */
	assert_non_null(kv_arena_alloc(&a, 1));
	size_t one_block = kv_arena_memory_usage(&a);
	assert_true(one_block >= KV_ARENA_BLOCK);
	assert_true(one_block <= KV_ARENA_BLOCK + HEADER_MAX);

	/* The rest of that block is free: no new usage. */
	for (int i = 0; i < 40; i++)
		assert_non_null(kv_arena_alloc(&a, 100));
	assert_int_equal(kv_arena_memory_usage(&a), one_block);

	/* Small allocations fill blocks: usage tracks the bytes handed out. */
	size_t handed = 1 + 40 * 100;
	for (int i = 0; i < 10000; i++) {
		assert_non_null(kv_arena_alloc(&a, 37));
		handed += 37;
	}
	size_t usage = kv_arena_memory_usage(&a);
	assert_true(usage >= handed);
	/* At most one small request (< 1/4 block) wasted per block, plus headers. */
	size_t blocks = usage / one_block;
	assert_int_equal(usage % one_block, 0);
	assert_true(usage - handed <= blocks * (KV_ARENA_BLOCK / 4 + HEADER_MAX));

	/* Zero-byte allocations are valid and distinct. */
	void *z1 = kv_arena_alloc(&a, 0), *z2 = kv_arena_alloc(&a, 0);
	assert_non_null(z1);
	assert_non_null(z2);
	assert_ptr_not_equal(z1, z2);

	kv_arena_release(&a);
	assert_int_equal(kv_arena_memory_usage(&a), 0);
	/* A released arena can be used again. */
	assert_non_null(kv_arena_alloc(&a, 10));
	assert_int_equal(kv_arena_memory_usage(&a), one_block);
	kv_arena_release(&a);
}

static void test_arena__big_allocation_gets_own_block(void **state)
{
	(void)state;
	struct kv_arena a;
	kv_arena_init(&a);

	uint8_t *small = kv_arena_alloc(&a, 100);
	assert_non_null(small);
	size_t before = kv_arena_memory_usage(&a);

	enum { BIG = 1 << 20 };
	uint8_t *big = kv_arena_alloc(&a, BIG);
	assert_non_null(big);
	memset(big, 0xab, BIG);
	size_t grown = kv_arena_memory_usage(&a) - before;
	assert_true(grown >= BIG);
	assert_true(grown <= BIG + HEADER_MAX);

	/* The current small block is kept: the next small request is free. */
	uint8_t *after = kv_arena_alloc(&a, 100);
	assert_non_null(after);
	assert_int_equal(kv_arena_memory_usage(&a), before + grown);
	assert_true(after >= small + 100 && after < small + KV_ARENA_BLOCK);

	/* Just above a quarter block also goes to its own block. */
	size_t mark = kv_arena_memory_usage(&a);
	assert_non_null(kv_arena_alloc(&a, KV_ARENA_BLOCK / 4 + 1));
	assert_true(kv_arena_memory_usage(&a) - mark <= KV_ARENA_BLOCK / 4 + 1 + HEADER_MAX);

	/* A large alignment in a dedicated block. */
	uint8_t *al = kv_arena_alloc_aligned(&a, 5000, 4096);
	assert_non_null(al);
	assert_int_equal((uintptr_t)al % 4096, 0);
	memset(al, 1, 5000);

	kv_arena_release(&a);
}

static void test_arena__impossible_size_fails_cleanly(void **state)
{
	(void)state;
	struct kv_arena a;
	kv_arena_init(&a);
	assert_null(kv_arena_alloc(&a, SIZE_MAX));
	assert_null(kv_arena_alloc_aligned(&a, SIZE_MAX - 8, 64));
	assert_int_equal(kv_arena_memory_usage(&a), 0);
	/* Still usable. */
	assert_non_null(kv_arena_alloc(&a, 8));
	kv_arena_release(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arena__empty_uses_nothing),
		cmocka_unit_test(test_arena__allocations_are_aligned_and_disjoint),
		cmocka_unit_test(test_arena__usage_counts_every_block),
		cmocka_unit_test(test_arena__big_allocation_gets_own_block),
		cmocka_unit_test(test_arena__impossible_size_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
