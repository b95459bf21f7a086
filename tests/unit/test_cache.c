/*
 * test_cache.c - the sharded LRU block cache: eviction order, byte budget,
 * pinned entries, erasure, a disabled cache, and many threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/cache.h"
#include "util/rng.h"

/* Values are heap integers; the deleter counts what it frees. */
static atomic_long freed;

static void deleter(void *v)
{
	atomic_fetch_add(&freed, 1);
	free(v);
}

static void *val(long x)
{
	long *p = malloc(sizeof *p);
	assert_non_null(p);
	*p = x;
	return p;
}

static long value_of(const struct kv_cache_handle *h)
{
	return *(const long *)kv_cache_value(h);
}

static void put(struct kv_cache *c, uint64_t file, uint64_t off, long x, size_t charge)
{
	assert_int_equal(kv_cache_insert(c, file, off, val(x), charge, deleter, NULL), 0);
}

/* The value under (file, off), or -1 on a miss. */
static long get(struct kv_cache *c, uint64_t file, uint64_t off)
{
	struct kv_cache_handle *h = kv_cache_lookup(c, file, off);
	if (!h)
		return -1;
	long x = value_of(h);
	kv_cache_release(c, h);
	return x;
}

static int setup(void **state)
{
	(void)state;
	atomic_store(&freed, 0);
	return 0;
}

static void test_cache__finds_what_was_inserted(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(1 << 20, &c), 0);
	assert_int_equal(get(c, 1, 0), -1);
	put(c, 1, 0, 100, 10);
	put(c, 1, 4096, 101, 10);
	put(c, 2, 0, 200, 10);
	assert_int_equal(get(c, 1, 0), 100);
	assert_int_equal(get(c, 1, 4096), 101);
	assert_int_equal(get(c, 2, 0), 200);
	assert_int_equal(get(c, 2, 4096), -1);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.inserts, 3);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.usage, 30);
	assert_int_equal(st.pinned, 0);
	assert_int_equal(st.capacity, 1 << 20);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), 3);
}

static void test_cache__evicts_least_recently_used_first(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new_sharded(3, 0, &c), 0);
	put(c, 1, 1, 1, 1);
	put(c, 1, 2, 2, 1);
	put(c, 1, 3, 3, 1);
	assert_int_equal(get(c, 1, 1), 1); /* 1 is now the most recent */
	put(c, 1, 4, 4, 1);                /* evicts 2, the oldest */
	assert_int_equal(get(c, 1, 2), -1);
	assert_int_equal(get(c, 1, 3), 3);
	put(c, 1, 5, 5, 1);                /* evicts 1 (3 was just used) */
	assert_int_equal(get(c, 1, 1), -1);
	assert_int_equal(get(c, 1, 3), 3);
	assert_int_equal(get(c, 1, 4), 4);
	assert_int_equal(get(c, 1, 5), 5);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(atomic_load(&freed), 2);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), 5);
}

static void test_cache__stays_within_its_byte_budget(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_cache__stays_within_its_byte_budget"));
	struct kv_cache *c;
	const size_t cap = 64 * 1024;
	assert_int_equal(kv_cache_new_sharded(cap, 2, &c), 0);
	for (long i = 0; i < 20000; i++) {
		put(c, kv_rng_below(&rng, 4), kv_rng_below(&rng, 1000) * 4096, i,
		    1 + kv_rng_below(&rng, 2000));
		struct kv_cache_stats st;
		kv_cache_get_stats(c, &st);
		/* Each of the 4 shards keeps within cap / 4. */
		assert_true(st.usage <= cap);
	}
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_true(st.usage > cap / 2); /* and uses it */
	assert_int_equal(atomic_load(&freed) + (long)st.entries, 20000);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), 20000);
}

static void test_cache__pinned_entry_outlives_its_eviction(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new_sharded(10, 0, &c), 0);
	struct kv_cache_handle *h;
	assert_int_equal(kv_cache_insert(c, 7, 0, val(70), 5, deleter, &h), 0);
	assert_int_equal(value_of(h), 70);
	/* Fill well past the budget: the pinned entry stays, the others go. */
	for (long i = 1; i <= 10; i++)
		put(c, 7, (uint64_t)i, i, 5);
	assert_int_equal(value_of(h), 70);
	assert_int_equal(get(c, 7, 0), 70); /* still findable: it is in the cache */
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.pinned, 5);
	assert_true(st.usage <= 10);
	kv_cache_release(c, h);
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.pinned, 0);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), 11);
}

static void test_cache__oversized_entry_is_freed_when_released(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new_sharded(10, 0, &c), 0);
	struct kv_cache_handle *h;
	assert_int_equal(kv_cache_insert(c, 1, 0, val(1), 100, deleter, &h), 0);
	assert_int_equal(value_of(h), 1);
	assert_int_equal(atomic_load(&freed), 0);
	kv_cache_release(c, h); /* over budget once unpinned: evicted */
	assert_int_equal(atomic_load(&freed), 1);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.usage, 0);
	kv_cache_free(c);
}

static void test_cache__erased_entry_is_freed_after_its_last_handle(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(1000, &c), 0);
	put(c, 3, 0, 30, 1);
	struct kv_cache_handle *h1 = kv_cache_lookup(c, 3, 0);
	struct kv_cache_handle *h2 = kv_cache_lookup(c, 3, 0);
	assert_non_null(h1);
	assert_ptr_equal(h1, h2);
	kv_cache_erase(c, 3, 0);
	assert_int_equal(get(c, 3, 0), -1); /* gone from the cache... */
	assert_int_equal(value_of(h1), 30); /* ...but alive while pinned */
	kv_cache_release(c, h1);
	assert_int_equal(atomic_load(&freed), 0);
	kv_cache_release(c, h2);
	assert_int_equal(atomic_load(&freed), 1);
	kv_cache_erase(c, 3, 0); /* erasing a missing key is fine */
	kv_cache_free(c);
}

static void test_cache__insert_replaces_the_entry_under_a_key(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(1000, &c), 0);
	put(c, 1, 0, 1, 10);
	struct kv_cache_handle *old = kv_cache_lookup(c, 1, 0);
	put(c, 1, 0, 2, 20);
	assert_int_equal(get(c, 1, 0), 2);
	assert_int_equal(value_of(old), 1);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.usage, 20);
	kv_cache_release(c, old);
	assert_int_equal(atomic_load(&freed), 1);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), 2);
}

static void test_cache__erase_file_drops_only_that_file(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(1 << 20, &c), 0);
	for (long i = 0; i < 500; i++) {
		put(c, 1, (uint64_t)i * 100, i, 1);
		put(c, 2, (uint64_t)i * 100, 1000 + i, 1);
	}
	struct kv_cache_handle *pinned = kv_cache_lookup(c, 1, 0);
	kv_cache_erase_file(c, 1);
	for (long i = 0; i < 500; i++) {
		assert_int_equal(get(c, 1, (uint64_t)i * 100), -1);
		assert_int_equal(get(c, 2, (uint64_t)i * 100), 1000 + i);
	}
	assert_int_equal(atomic_load(&freed), 499);
	assert_int_equal(value_of(pinned), 0);
	kv_cache_release(c, pinned);
	assert_int_equal(atomic_load(&freed), 500);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 500);
	kv_cache_free(c);
}

static void test_cache__zero_capacity_still_works(void **state)
{
	(void)state;
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(0, &c), 0);
	struct kv_cache_handle *h;
	assert_int_equal(kv_cache_insert(c, 1, 0, val(5), 100, deleter, &h), 0);
	assert_int_equal(value_of(h), 5);
	assert_int_equal(get(c, 1, 0), -1); /* nothing is kept */
	kv_cache_release(c, h);
	assert_int_equal(atomic_load(&freed), 1);
	put(c, 1, 0, 6, 1); /* unpinned insert: freed at once */
	assert_int_equal(atomic_load(&freed), 2);
	kv_cache_erase_file(c, 1);
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.usage, 0);
	assert_int_equal(st.entries, 0);
	kv_cache_free(c);
}

struct worker {
	struct kv_cache *c;
	uint64_t seed;
	long inserted;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct kv_rng rng;
	kv_rng_seed(&rng, w->seed);
	struct kv_cache_handle *held[8] = { 0 };
	for (int i = 0; i < 100000; i++) {
		uint64_t file = kv_rng_below(&rng, 4), off = kv_rng_below(&rng, 512);
		unsigned op = (unsigned)kv_rng_below(&rng, 100);
		unsigned slot = (unsigned)kv_rng_below(&rng, 8);
		if (op < 60) {
			struct kv_cache_handle *h = kv_cache_lookup(w->c, file, off);
			if (h) {
				/* Values encode their key: a wrong one means a mixup. */
				if (value_of(h) / 1000000 != (long)(file * 1000 + off))
					abort();
				if (held[slot])
					kv_cache_release(w->c, held[slot]);
				held[slot] = h;
			}
		} else if (op < 95) {
			long v = (long)(file * 1000 + off) * 1000000 + i % 1000000;
			struct kv_cache_handle *h = NULL;
			if (kv_cache_insert(w->c, file, off, val(v), 1 + kv_rng_below(&rng, 100),
					    deleter, op < 80 ? &h : NULL))
				abort();
			w->inserted++;
			if (h)
				kv_cache_release(w->c, h);
		} else if (op < 99) {
			kv_cache_erase(w->c, file, off);
		} else {
			kv_cache_erase_file(w->c, file);
		}
	}
	for (int s = 0; s < 8; s++)
		if (held[s])
			kv_cache_release(w->c, held[s]);
	return NULL;
}

static void test_cache__many_threads_share_it_safely(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_cache__many_threads_share_it_safely");
	struct kv_cache *c;
	assert_int_equal(kv_cache_new(20000, &c), 0);
	enum { N = 4 };
	pthread_t th[N];
	struct worker w[N];
	for (int i = 0; i < N; i++) {
		w[i] = (struct worker){ c, seed + (uint64_t)i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	long inserted = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		inserted += w[i].inserted;
	}
	struct kv_cache_stats st;
	kv_cache_get_stats(c, &st);
	assert_int_equal(st.pinned, 0);
	assert_true(st.usage <= 20000 + 16 * 100);
	assert_int_equal(atomic_load(&freed) + (long)st.entries, inserted);
	kv_cache_free(c);
	assert_int_equal(atomic_load(&freed), inserted);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cache__finds_what_was_inserted, setup),
		cmocka_unit_test_setup(test_cache__evicts_least_recently_used_first, setup),
		cmocka_unit_test_setup(test_cache__stays_within_its_byte_budget, setup),
		cmocka_unit_test_setup(test_cache__pinned_entry_outlives_its_eviction, setup),
		cmocka_unit_test_setup(test_cache__oversized_entry_is_freed_when_released, setup),
		cmocka_unit_test_setup(test_cache__erased_entry_is_freed_after_its_last_handle, setup),
		cmocka_unit_test_setup(test_cache__insert_replaces_the_entry_under_a_key, setup),
		cmocka_unit_test_setup(test_cache__erase_file_drops_only_that_file, setup),
		cmocka_unit_test_setup(test_cache__zero_capacity_still_works, setup),
		cmocka_unit_test_setup(test_cache__many_threads_share_it_safely, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
