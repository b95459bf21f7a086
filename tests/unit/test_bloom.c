/*
 * test_bloom.c - the SSTable bloom filter: no false negatives, about 1%
 * false positives at 10 bits a key, malformed filters never misread.
 * Format: doc/storage-format.md#sstable-filter-block
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/bloom.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

/* Key i of a set: "key-<i>" with some binary noise, so keys vary in length. */
static struct kv_slice make_key(uint8_t *buf, uint64_t set, uint64_t i)
{
	int n = snprintf((char *)buf, 64, "key-%llu-%llu", (unsigned long long)set,
			 (unsigned long long)i);
	buf[n++] = 0; /* a NUL inside the key */
	buf[n++] = (uint8_t)(i * 7);
	return kv_slice_make(buf, (size_t)n);
}

static void build(struct kv_buf *out, unsigned bits, uint64_t set, uint64_t count)
{
	struct kv_bloom_builder b;
	kv_bloom_builder_init(&b, bits);
	uint8_t kb[64];
	for (uint64_t i = 0; i < count; i++)
		assert_int_equal(kv_bloom_builder_add_hash(&b, kv_bloom_hash(make_key(kb, set, i))), 0);
	assert_int_equal(kv_bloom_builder_count(&b), count);
	assert_int_equal(kv_bloom_builder_finish(&b, out), 0);
	kv_bloom_builder_release(&b);
}

static void test_bloom__has_no_false_negatives(void **state)
{
	(void)state;
	const uint64_t counts[] = { 1, 2, 10, 100, 1000, 10000 };
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
		for (unsigned bits = 1; bits <= 20; bits += 3) {
			struct kv_buf f = KV_BUF_INIT;
			build(&f, bits, c, counts[c]);
			struct kv_bloom bloom;
			assert_int_equal(kv_bloom_init(&bloom, kv_buf_slice(&f)), 0);
			uint8_t kb[64];
			for (uint64_t i = 0; i < counts[c]; i++)
				assert_true(kv_bloom_may_contain(&bloom, make_key(kb, c, i)));
			kv_buf_release(&f);
		}
	}
}

static double fp_rate(unsigned bits, uint64_t keys, uint64_t probes)
{
	struct kv_buf f = KV_BUF_INIT;
	build(&f, bits, 1, keys);
	struct kv_bloom bloom;
	assert_int_equal(kv_bloom_init(&bloom, kv_buf_slice(&f)), 0);
	uint64_t hits = 0;
	uint8_t kb[64];
	for (uint64_t i = 0; i < probes; i++)
		hits += kv_bloom_may_contain(&bloom, make_key(kb, 2, i));
	kv_buf_release(&f);
	return (double)hits / (double)probes;
}

static void test_bloom__false_positive_rate_is_about_one_percent_at_10_bits(void **state)
{
	(void)state;
	double r = fp_rate(10, 100000, 200000);
	printf("# 10 bits/key, 100k keys: false positives %.3f%%\n", 100 * r);
	assert_true(r < 0.015);
	assert_true(r > 0.002); /* sanity: not accidentally a huge filter */
	/* Small filters do as well. */
	r = fp_rate(10, 1000, 100000);
	printf("# 10 bits/key, 1k keys: false positives %.3f%%\n", 100 * r);
	assert_true(r < 0.02);
	/* More bits, fewer false positives. */
	r = fp_rate(16, 100000, 200000);
	printf("# 16 bits/key, 100k keys: false positives %.3f%%\n", 100 * r);
	assert_true(r < 0.002);
}

static void test_bloom__filter_size_follows_bits_per_key(void **state)
{
	(void)state;
	struct kv_buf f = KV_BUF_INIT;
	build(&f, 10, 0, 10000);
	/* ceil(10000 * 10 / 512) lines of 64 bytes, then the 6-byte tail. */
	assert_int_equal(f.n, 196 * 64 + KV_BLOOM_TAIL);
	assert_int_equal(kv_get_le32(f.p + f.n - 6), 196);
	assert_int_equal(f.p[f.n - 2], 7); /* k = round(10 ln 2) */
	assert_int_equal(f.p[f.n - 1], KV_BLOOM_LAYOUT_BLOCKED512);
	kv_buf_release(&f);
}

static void test_bloom__empty_filter_matches_nothing(void **state)
{
	(void)state;
	struct kv_buf f = KV_BUF_INIT;
	build(&f, 10, 0, 0);
	assert_int_equal(f.n, 64 + KV_BLOOM_TAIL);
	struct kv_bloom bloom;
	assert_int_equal(kv_bloom_init(&bloom, kv_buf_slice(&f)), 0);
	uint8_t kb[64];
	for (uint64_t i = 0; i < 1000; i++)
		assert_false(kv_bloom_may_contain(&bloom, make_key(kb, 0, i)));
	kv_buf_release(&f);
}

static void expect_permissive(struct kv_slice filter)
{
	struct kv_bloom bloom;
	assert_int_equal(kv_bloom_init(&bloom, filter), KV_ECORRUPT);
	uint8_t kb[64];
	for (uint64_t i = 0; i < 100; i++)
		assert_true(kv_bloom_may_contain(&bloom, make_key(kb, 9, i)));
}

static void test_bloom__malformed_filter_may_contain_everything(void **state)
{
	(void)state;
	struct kv_buf f = KV_BUF_INIT;
	build(&f, 10, 0, 100);
	size_t n = f.n;
	uint8_t *tail = f.p + n - KV_BLOOM_TAIL;
	/* Too short, or not lines * 64 + 6 bytes. */
	for (size_t len = 0; len < 70; len++)
		expect_permissive(kv_slice_make(f.p, len));
	expect_permissive(kv_slice_make(f.p + 1, n - 1));
	/* Line count disagreeing with the size, including huge ones. */
	const uint32_t bad_lines[] = { 0, 1, 3, 5, UINT32_MAX, UINT32_MAX / 64 + 1 };
	for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
		uint32_t keep = kv_get_le32(tail);
		kv_put_le32(tail, bad_lines[i]);
		expect_permissive(kv_buf_slice(&f));
		kv_put_le32(tail, keep);
	}
	/* k out of range, unknown layout. */
	const uint8_t bad_k[] = { 0, KV_BLOOM_MAX_K + 1, 255 };
	for (size_t i = 0; i < sizeof bad_k; i++) {
		uint8_t keep = tail[4];
		tail[4] = bad_k[i];
		expect_permissive(kv_buf_slice(&f));
		tail[4] = keep;
	}
	tail[5] = 2;
	expect_permissive(kv_buf_slice(&f));
	tail[5] = 0;
	expect_permissive(kv_buf_slice(&f));
	kv_buf_release(&f);
}

static void test_bloom__random_bytes_never_read_out_of_bounds(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_bloom__random_bytes_never_read_out_of_bounds"));
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)kv_rng_below(&rng, 300);
		/* An exact-size heap copy, so ASan catches any overread. */
		uint8_t *p = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)kv_rng_next(&rng);
		if (n >= KV_BLOOM_TAIL && kv_rng_below(&rng, 2)) {
			/* Make the tail plausible so probing really happens. */
			kv_put_le32(p + n - 6, (uint32_t)((n - 6) / 64));
			p[n - 2] = (uint8_t)(1 + kv_rng_below(&rng, 40));
			p[n - 1] = KV_BLOOM_LAYOUT_BLOCKED512;
		}
		struct kv_bloom bloom;
		kv_bloom_init(&bloom, kv_slice_make(p, n));
		for (int i = 0; i < 20; i++)
			kv_bloom_may_contain_hash(&bloom, kv_rng_next(&rng));
		free(p);
	}
}

/* The hash and the bit layout are on disk: they must never change. */
static void test_bloom__layout_is_stable(void **state)
{
	(void)state;
	struct kv_bloom_builder b;
	kv_bloom_builder_init(&b, 10);
	const char *keys[] = { "", "a", "b", "hello", "kvfs" };
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(kv_bloom_builder_add_hash(&b, kv_bloom_hash(kv_slice_str(keys[i]))), 0);
	struct kv_buf f = KV_BUF_INIT;
	assert_int_equal(kv_bloom_builder_finish(&b, &f), 0);
	kv_bloom_builder_release(&b);
	assert_int_equal(f.n, 70);
	printf("# filter checksum %08x\n", kv_checksum32(f.p, f.n));
	assert_int_equal(kv_checksum32(f.p, f.n), 0x429d5120u);
	kv_buf_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bloom__has_no_false_negatives),
		cmocka_unit_test(test_bloom__false_positive_rate_is_about_one_percent_at_10_bits),
		cmocka_unit_test(test_bloom__filter_size_follows_bits_per_key),
		cmocka_unit_test(test_bloom__empty_filter_matches_nothing),
		cmocka_unit_test(test_bloom__malformed_filter_may_contain_everything),
		cmocka_unit_test(test_bloom__random_bytes_never_read_out_of_bounds),
		cmocka_unit_test(test_bloom__layout_is_stable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
