/*
 * test_merge.c - the merging iterator (merge.h): order, ties between
 * sources, seeks, empty children and errors that must not be skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/ikey.h"
#include "lsm/memtable.h"
#include "lsm/merge.h"
#include "util/error.h"
#include "util/rng.h"

static void add(struct kv_memtable *m, const char *k, uint64_t seq, const char *v)
{
	assert_int_equal(kv_memtable_add(m, seq, KV_TYPE_PUT, kv_slice_str(k), kv_slice_str(v)), 0);
}

/* "key@seq" of every entry, comma-separated. */
static void dump(struct kv_iter *it, char *out, size_t n)
{
	size_t len = 0;
	out[0] = 0;
	for (; kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_ikey ik = { .seq = 0 };
		assert_int_equal(kv_ikey_parse(kv_iter_key(it), &ik), 0);
		len += (size_t)snprintf(out + len, n - len, "%s%.*s@%llu", len ? "," : "", (int)ik.ukey.n,
					(const char *)ik.ukey.p, (unsigned long long)ik.seq);
	}
	assert_int_equal(kv_iter_status(it), 0);
}

static void test_merge__yields_union_in_internal_key_order(void **state)
{
	(void)state;
	struct kv_memtable *a = kv_memtable_new(), *b = kv_memtable_new(), *e = kv_memtable_new();
	add(a, "b", 5, "a");
	add(a, "d", 6, "a");
	add(b, "a", 1, "b");
	add(b, "b", 2, "b"); /* older version of b: after b@5 */
	add(b, "e", 3, "b");
	struct kv_iter *kids[3] = { kv_memtable_iter(a), kv_memtable_iter(e), kv_memtable_iter(b) };
	struct kv_iter *m = kv_merge_iter_new(kv_ikey_cmp, kids, 3);
	assert_non_null(m);
	char got[256];
	kv_iter_seek_first(m);
	dump(m, got, sizeof got);
	assert_string_equal(got, "a@1,b@5,b@2,d@6,e@3");

	struct kv_buf t = KV_BUF_INIT;
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("b"), 4, KV_TYPE_SEEK), 0);
	kv_iter_seek(m, kv_buf_slice(&t)); /* b as of 4: skips b@5 */
	dump(m, got, sizeof got);
	assert_string_equal(got, "b@2,d@6,e@3");
	kv_buf_reset(&t);
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("z"), KV_SEQ_MAX, KV_TYPE_SEEK), 0);
	kv_iter_seek(m, kv_buf_slice(&t));
	assert_false(kv_iter_valid(m));
	kv_buf_release(&t);
	kv_iter_destroy(m);
	kv_memtable_unref(a);
	kv_memtable_unref(b);
	kv_memtable_unref(e);
}

static void test_merge__no_children_is_empty(void **state)
{
	(void)state;
	struct kv_iter *m = kv_merge_iter_new(kv_ikey_cmp, NULL, 0);
	assert_non_null(m);
	kv_iter_seek_first(m);
	assert_false(kv_iter_valid(m));
	assert_int_equal(kv_iter_status(m), 0);
	kv_iter_destroy(m);
}

static void test_merge__child_error_stops_the_merge(void **state)
{
	(void)state;
	struct kv_memtable *a = kv_memtable_new();
	add(a, "a", 1, "x");
	struct kv_iter *kids[2] = { kv_memtable_iter(a), kv_empty_iter_new(KV_ECORRUPT) };
	struct kv_iter *m = kv_merge_iter_new(kv_ikey_cmp, kids, 2);
	kv_iter_seek_first(m);
	/* A corrupt source must never be skipped silently. */
	assert_false(kv_iter_valid(m));
	assert_int_equal(kv_iter_status(m), KV_ECORRUPT);
	kv_iter_destroy(m);
	kv_memtable_unref(a);
}

static void test_merge__random_sources_match_sorted_union(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_merge__random_sources_match_sorted_union");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	enum { SOURCES = 7, PER = 300 };
	struct kv_memtable *src[SOURCES];
	struct kv_iter *kids[SOURCES];
	uint64_t seq = 1;
	for (int s = 0; s < SOURCES; s++) {
		src[s] = kv_memtable_new();
		for (int i = 0; i < PER; i++) {
			char k[16];
			snprintf(k, sizeof k, "k%04u", (unsigned)kv_rng_below(&rng, 500));
			add(src[s], k, seq++, "v");
		}
		kids[s] = kv_memtable_iter(src[s]);
	}
	struct kv_iter *m = kv_merge_iter_new(kv_ikey_cmp, kids, SOURCES);
	struct kv_buf prev = KV_BUF_INIT;
	int n = 0;
	for (kv_iter_seek_first(m); kv_iter_valid(m); kv_iter_next(m), n++) {
		if (prev.n)
			assert_true(kv_ikey_cmp(kv_buf_slice(&prev), kv_iter_key(m)) < 0);
		kv_buf_reset(&prev);
		assert_int_equal(kv_buf_append(&prev, kv_iter_key(m).p, kv_iter_key(m).n), 0);
	}
	assert_int_equal(n, SOURCES * PER);
	kv_buf_release(&prev);
	kv_iter_destroy(m);
	for (int s = 0; s < SOURCES; s++)
		kv_memtable_unref(src[s]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge__yields_union_in_internal_key_order),
		cmocka_unit_test(test_merge__no_children_is_empty),
		cmocka_unit_test(test_merge__child_error_stops_the_merge),
		cmocka_unit_test(test_merge__random_sources_match_sorted_union),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
