/*
 * test_skiplist.c - the skiplist: order against a sorted model, seek
 * semantics, duplicates, in-order appends, and lock-free readers running
 * beside a writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <cmocka.h>

#include "lsm/arena.h"
#include "lsm/skiplist.h"
#include "util/coding.h"
#include "util/rng.h"
#include "util/slice.h"

/* Copies @n bytes of @k into a new node and inserts it; returns insert's result. */
static int insert_key(struct kv_skiplist *sl, const void *k, size_t n)
{
	struct kv_skiplist_node *node;
	uint8_t *p = kv_skiplist_alloc_node(sl, n, &node);
	assert_non_null(p);
	if (n)
		memcpy(p, k, n);
	return kv_skiplist_insert(sl, node, kv_slice_make(p, n));
}

static int insert_str(struct kv_skiplist *sl, const char *s)
{
	return insert_key(sl, s, strlen(s));
}

static void assert_at(const struct kv_skiplist_iter *it, const char *want)
{
	assert_true(kv_skiplist_iter_valid(it));
	struct kv_slice k = kv_skiplist_iter_key(it);
	assert_true(kv_slice_eq(k, kv_slice_str(want)));
}

/* ---- The sorted model ---------------------------------------------------- */

#define MODEL_KEY_MAX 12

struct mkey {
	uint8_t b[MODEL_KEY_MAX];
	size_t n;
};

static struct kv_slice mkey_slice(const struct mkey *k)
{
	return kv_slice_make(k->b, k->n);
}

/* Index of the first model key >= @k (lower bound). */
static size_t model_lower_bound(const struct mkey *m, size_t count, struct kv_slice k)
{
	size_t lo = 0, hi = count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (kv_slice_cmp(mkey_slice(&m[mid]), k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void random_key(struct kv_rng *rng, struct mkey *k, size_t max_len, unsigned alphabet)
{
	/* A small alphabet with \0 in it gives many duplicates and prefixes. */
	static const uint8_t sym[] = { 0, 1, 'a', 'b', 0xff, 'z', 'c', 'd' };
	k->n = (size_t)kv_rng_below(rng, max_len + 1);
	for (size_t i = 0; i < k->n; i++)
		k->b[i] = sym[kv_rng_below(rng, alphabet)];
}

static void check_against_model(struct kv_skiplist *sl, const struct mkey *m, size_t count,
				 struct kv_rng *rng, size_t max_len, unsigned alphabet)
{
	/* A full scan equals the model. */
	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, sl);
	assert_false(kv_skiplist_iter_valid(&it));
	kv_skiplist_iter_seek_first(&it);
	for (size_t i = 0; i < count; i++) {
		assert_true(kv_skiplist_iter_valid(&it));
		assert_true(kv_slice_eq(kv_skiplist_iter_key(&it), mkey_slice(&m[i])));
		kv_skiplist_iter_next(&it);
	}
	assert_false(kv_skiplist_iter_valid(&it));

	/* Seeks and membership agree with the model's lower bound. */
	for (int i = 0; i < 2000; i++) {
		struct mkey t;
		random_key(rng, &t, max_len, alphabet);
		size_t lb = model_lower_bound(m, count, mkey_slice(&t));
		kv_skiplist_iter_seek(&it, mkey_slice(&t));
		if (lb == count) {
			assert_false(kv_skiplist_iter_valid(&it));
		} else {
			assert_true(kv_skiplist_iter_valid(&it));
			assert_true(kv_slice_eq(kv_skiplist_iter_key(&it), mkey_slice(&m[lb])));
		}
		bool present = lb < count && kv_slice_eq(mkey_slice(&m[lb]), mkey_slice(&t));
		assert_int_equal(kv_skiplist_contains(sl, mkey_slice(&t)), present);
	}
}

static void run_model(uint64_t seed, int inserts, size_t max_len, unsigned alphabet)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, seed), 0);

	struct mkey *model = calloc((size_t)inserts, sizeof *model);
	assert_non_null(model);
	size_t count = 0;
	for (int i = 0; i < inserts; i++) {
		struct mkey k;
		random_key(&rng, &k, max_len, alphabet);
		size_t lb = model_lower_bound(model, count, mkey_slice(&k));
		bool dup = lb < count && kv_slice_eq(mkey_slice(&model[lb]), mkey_slice(&k));
		assert_int_equal(insert_key(&sl, k.b, k.n), dup ? 0 : 1);
		if (!dup) {
			memmove(&model[lb + 1], &model[lb], (count - lb) * sizeof *model);
			model[lb] = k;
			count++;
		}
	}
	check_against_model(&sl, model, count, &rng, max_len, alphabet);
	free(model);
	kv_arena_release(&arena);
}

static void test_skiplist__matches_sorted_model_with_duplicates(void **state)
{
	(void)state;
	/* Short keys over 4 symbols: most inserts are duplicates or prefixes. */
	run_model(kv_test_seed(__func__), 6000, 5, 4);
}

static void test_skiplist__matches_sorted_model_large(void **state)
{
	(void)state;
	/* Long keys over 8 symbols: tall towers, few duplicates. */
	run_model(kv_test_seed(__func__), 30000, MODEL_KEY_MAX, 8);
}

static void test_skiplist__empty_list_has_no_position(void **state)
{
	(void)state;
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, 1), 0);
	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, &sl);
	kv_skiplist_iter_seek_first(&it);
	assert_false(kv_skiplist_iter_valid(&it));
	kv_skiplist_iter_seek(&it, kv_slice_str(""));
	assert_false(kv_skiplist_iter_valid(&it));
	kv_skiplist_iter_seek(&it, kv_slice_str("x"));
	assert_false(kv_skiplist_iter_valid(&it));
	assert_false(kv_skiplist_contains(&sl, kv_slice_str("")));
	kv_arena_release(&arena);
}

static void test_skiplist__seek_before_between_and_after(void **state)
{
	(void)state;
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, 7), 0);
	assert_int_equal(insert_str(&sl, "d"), 1);
	assert_int_equal(insert_str(&sl, "b"), 1);
	assert_int_equal(insert_str(&sl, "f"), 1);

	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, &sl);
	kv_skiplist_iter_seek(&it, kv_slice_str(""));   /* before the first */
	assert_at(&it, "b");
	kv_skiplist_iter_seek(&it, kv_slice_str("a"));
	assert_at(&it, "b");
	kv_skiplist_iter_seek(&it, kv_slice_str("b"));  /* exact */
	assert_at(&it, "b");
	kv_skiplist_iter_seek(&it, kv_slice_make("b\0", 2)); /* just after "b" */
	assert_at(&it, "d");
	kv_skiplist_iter_seek(&it, kv_slice_str("c"));  /* between */
	assert_at(&it, "d");
	kv_skiplist_iter_next(&it);
	assert_at(&it, "f");
	kv_skiplist_iter_seek(&it, kv_slice_str("f"));  /* the last */
	assert_at(&it, "f");
	kv_skiplist_iter_next(&it);
	assert_false(kv_skiplist_iter_valid(&it));
	kv_skiplist_iter_seek(&it, kv_slice_str("fa")); /* after the last */
	assert_false(kv_skiplist_iter_valid(&it));
	/* An invalid iterator can be positioned again. */
	kv_skiplist_iter_seek_first(&it);
	assert_at(&it, "b");
	kv_arena_release(&arena);
}

/* Probe: a number compared against keys that hold it as big-endian u64. */
static int be64_probe(struct kv_slice key, const void *probe)
{
	uint64_t k = kv_get_be64(key.p), p = *(const uint64_t *)probe;
	return k < p ? -1 : k > p;
}

static void test_skiplist__seek_probe_agrees_with_seek(void **state)
{
	(void)state;
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, 3), 0);
	for (uint64_t v = 10; v <= 1000; v += 10) {
		uint8_t k[8];
		kv_put_be64(k, v);
		assert_int_equal(insert_key(&sl, k, 8), 1);
	}
	struct kv_skiplist_iter a, b;
	kv_skiplist_iter_init(&a, &sl);
	kv_skiplist_iter_init(&b, &sl);
	for (uint64_t v = 0; v <= 1010; v++) {
		uint8_t k[8];
		kv_put_be64(k, v);
		kv_skiplist_iter_seek(&a, kv_slice_make(k, 8));
		kv_skiplist_iter_seek_probe(&b, be64_probe, &v);
		assert_int_equal(kv_skiplist_iter_valid(&a), kv_skiplist_iter_valid(&b));
		if (kv_skiplist_iter_valid(&a)) {
			assert_true(kv_slice_eq(kv_skiplist_iter_key(&a), kv_skiplist_iter_key(&b)));
			uint64_t want = v < 10 ? 10 : (v + 9) / 10 * 10;
			assert_true(kv_get_be64(kv_skiplist_iter_key(&a).p) == want);
		} else {
			assert_true(v > 1000);
		}
	}
	kv_arena_release(&arena);
}

static void test_skiplist__appends_in_order_then_fills_gaps(void **state)
{
	(void)state;
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, 11), 0);
	enum { N = 5000 };
	/* Even numbers ascending (the append path), then odd ones (searches). */
	for (uint64_t v = 0; v < N; v += 2) {
		uint8_t k[8];
		kv_put_be64(k, v);
		assert_int_equal(insert_key(&sl, k, 8), 1);
	}
	for (uint64_t v = 1; v < N; v += 2) {
		uint8_t k[8];
		kv_put_be64(k, v);
		assert_int_equal(insert_key(&sl, k, 8), 1);
	}
	/* Duplicates of the last, the first and a middle key are refused. */
	const uint64_t dups[] = { N - 1, N - 2, 0, N / 2 };
	for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
		uint8_t k[8];
		kv_put_be64(k, dups[i]);
		assert_int_equal(insert_key(&sl, k, 8), 0);
	}
	/* Appends after gaps were filled still land at the end. */
	for (uint64_t v = N; v < N + 100; v++) {
		uint8_t k[8];
		kv_put_be64(k, v);
		assert_int_equal(insert_key(&sl, k, 8), 1);
	}
	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, &sl);
	uint64_t want = 0;
	for (kv_skiplist_iter_seek_first(&it); kv_skiplist_iter_valid(&it);
	     kv_skiplist_iter_next(&it), want++) {
		struct kv_slice k = kv_skiplist_iter_key(&it);
		assert_int_equal(k.n, 8);
		assert_true(kv_get_be64(k.p) == want);
	}
	assert_true(want == N + 100);
	kv_arena_release(&arena);
}

/*
 * Node heights, read back from the arena: nodes allocated one after another
 * in a block lie 16 + 8 * height bytes apart (an empty payload, LP64).
 */
static void node_heights(uint64_t seed, int *heights, int n)
{
	struct kv_arena arena;
	kv_arena_init(&arena);
	struct kv_skiplist sl;
	assert_int_equal(kv_skiplist_init(&sl, &arena, kv_slice_cmp, seed), 0);
	struct kv_skiplist_node *node;
	uint8_t *prev = kv_skiplist_alloc_node(&sl, 0, &node);
	assert_non_null(prev);
	for (int i = 0; i < n; i++) {
		uint8_t *p = kv_skiplist_alloc_node(&sl, 0, &node);
		assert_non_null(p);
		ptrdiff_t delta = p - prev;
		/* 0 marks a node that starts a new block (height unknown). */
		heights[i] = delta >= 24 && delta <= 16 + 8 * KV_SKIPLIST_MAX_HEIGHT
				     ? (int)(delta - 16) / 8 : 0;
		prev = p;
	}
	kv_arena_release(&arena);
}

static void test_skiplist__heights_are_seeded_with_branching_four(void **state)
{
	(void)state;
	if (sizeof(void *) != 8)
		skip();
	enum { N = 40000 };
	int *a = calloc(N, sizeof *a), *b = calloc(N, sizeof *b);
	assert_non_null(a);
	assert_non_null(b);
	uint64_t seed = kv_test_seed(__func__);
	node_heights(seed, a, N);
	node_heights(seed, b, N);
	assert_memory_equal(a, b, N * sizeof *a); /* deterministic for a seed */

	int known = 0, tall = 0, max = 0;
	for (int i = 0; i < N; i++) {
		if (!a[i])
			continue;
		known++;
		tall += a[i] >= 2;
		max = a[i] > max ? a[i] : max;
	}
	assert_true(known > N * 9 / 10);
	assert_true(max <= KV_SKIPLIST_MAX_HEIGHT && max >= 5);
	/* P(height >= 2) = 1/4; 40000 draws put it well within 0.22..0.28. */
	double frac = (double)tall / known;
	assert_true(frac > 0.22 && frac < 0.28);
	free(a);
	free(b);
}

/* ---- Concurrent readers -------------------------------------------------- */

/*
 * Key i is be64(mix(i)) ‖ be32(i): random order, unique (mix is a
 * bijection), and self-checking, so a reader can tell a torn key.
 */
#define CKEY_LEN 12

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void make_ckey(uint8_t *k, uint32_t i)
{
	kv_put_be64(k, mix(i));
	k[8] = (uint8_t)(i >> 24);
	k[9] = (uint8_t)(i >> 16);
	k[10] = (uint8_t)(i >> 8);
	k[11] = (uint8_t)i;
}

static bool ckey_ok(struct kv_slice k)
{
	if (k.n != CKEY_LEN)
		return false;
	uint32_t i = (uint32_t)k.p[8] << 24 | (uint32_t)k.p[9] << 16 | (uint32_t)k.p[10] << 8 |
		     k.p[11];
	return kv_get_be64(k.p) == mix(i);
}

enum { CONC_KEYS = 60000, CONC_READERS = 3 };

struct conc {
	struct kv_skiplist sl;
	atomic_uint inserted; /* keys 0..inserted-1 are in the list */
	atomic_bool done;
	uint64_t seed;
};

struct reader {
	struct conc *c;
	int id;
	unsigned scans;
	unsigned lookups;
	const char *failure; /* set instead of asserting: cmocka is not thread-safe */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct conc *c = r->c;
	struct kv_rng rng;
	kv_rng_seed(&rng, c->seed + (uint64_t)r->id);
	struct kv_skiplist_iter it;
	kv_skiplist_iter_init(&it, &c->sl);

	/* Keep reading until the writer is done, and at least a few rounds. */
	for (unsigned round = 0; !atomic_load(&c->done) || round < 3; round++) {
		unsigned before = atomic_load_explicit(&c->inserted, memory_order_acquire);

		/* Scans are strictly ascending, complete and untorn. */
		unsigned n = 0;
		struct kv_slice prev = { NULL, 0 };
		for (kv_skiplist_iter_seek_first(&it); kv_skiplist_iter_valid(&it);
		     kv_skiplist_iter_next(&it)) {
			struct kv_slice k = kv_skiplist_iter_key(&it);
			if (!ckey_ok(k)) {
				r->failure = "torn or foreign key";
				return NULL;
			}
			if (n && kv_slice_cmp(prev, k) >= 0) {
				r->failure = "scan not strictly ascending";
				return NULL;
			}
			prev = k;
			n++;
		}
		if (n < before) {
			r->failure = "scan missed keys inserted before it started";
			return NULL;
		}
		r->scans++;

		/* Every key inserted before now is found by seek and contains. */
		before = atomic_load_explicit(&c->inserted, memory_order_acquire);
		for (int j = 0; before && j < 200; j++) {
			uint8_t k[CKEY_LEN];
			make_ckey(k, (uint32_t)kv_rng_below(&rng, before));
			struct kv_slice ks = kv_slice_make(k, CKEY_LEN);
			kv_skiplist_iter_seek(&it, ks);
			if (!kv_skiplist_iter_valid(&it) ||
			    !kv_slice_eq(kv_skiplist_iter_key(&it), ks) ||
			    !kv_skiplist_contains(&c->sl, ks)) {
				r->failure = "an inserted key was not found";
				return NULL;
			}
			r->lookups++;
		}
	}
	return NULL;
}

static void test_skiplist__concurrent_readers_see_sorted_complete_list(void **state)
{
	(void)state;
	struct conc *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->seed = kv_test_seed(__func__);
	struct kv_arena arena;
	kv_arena_init(&arena);
	assert_int_equal(kv_skiplist_init(&c->sl, &arena, kv_slice_cmp, c->seed), 0);
	atomic_init(&c->inserted, 0);
	atomic_init(&c->done, false);

	/* A head start, so readers begin on a non-trivial list. */
	uint32_t i = 0;
	for (; i < 1000; i++) {
		uint8_t k[CKEY_LEN];
		make_ckey(k, i);
		assert_int_equal(insert_key(&c->sl, k, CKEY_LEN), 1);
	}
	atomic_store_explicit(&c->inserted, i, memory_order_release);

	struct reader readers[CONC_READERS];
	pthread_t threads[CONC_READERS];
	for (int r = 0; r < CONC_READERS; r++) {
		readers[r] = (struct reader){ .c = c, .id = r };
		assert_int_equal(pthread_create(&threads[r], NULL, reader_main, &readers[r]), 0);
	}

	for (; i < CONC_KEYS; i++) {
		uint8_t k[CKEY_LEN];
		make_ckey(k, i);
		assert_int_equal(insert_key(&c->sl, k, CKEY_LEN), 1);
		atomic_store_explicit(&c->inserted, i + 1, memory_order_release);
		if (i % 2048 == 0)
			sched_yield(); /* let readers interleave on a busy machine */
	}
	atomic_store(&c->done, true);

	unsigned scans = 0, lookups = 0;
	for (int r = 0; r < CONC_READERS; r++) {
		assert_int_equal(pthread_join(threads[r], NULL), 0);
		if (readers[r].failure)
			fail_msg("reader %d: %s", r, readers[r].failure);
		scans += readers[r].scans;
		lookups += readers[r].lookups;
	}
	print_message("readers: %u scans, %u lookups during %d inserts\n", scans, lookups,
		      CONC_KEYS);
	kv_arena_release(&arena);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_skiplist__empty_list_has_no_position),
		cmocka_unit_test(test_skiplist__seek_before_between_and_after),
		cmocka_unit_test(test_skiplist__seek_probe_agrees_with_seek),
		cmocka_unit_test(test_skiplist__matches_sorted_model_with_duplicates),
		cmocka_unit_test(test_skiplist__matches_sorted_model_large),
		cmocka_unit_test(test_skiplist__appends_in_order_then_fills_gaps),
		cmocka_unit_test(test_skiplist__heights_are_seeded_with_branching_four),
		cmocka_unit_test(test_skiplist__concurrent_readers_see_sorted_complete_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
