/*
 * test_block.c - block contents (prefix compression, restarts, seeks) and
 * the on-disk envelope (lz4, trailer, checksum). Malformed blocks give
 * KV_ECORRUPT, never a crash or a read outside the block.
 * Format: doc/storage-format.md#sstable-blocks
 *
 * With KV_CORPUS_OUT=DIR set, the seed corpus for tests/fuzz/fuzz_block.c is
 * (re)written into DIR.
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

#include "lsm/block.h"
#include "lsm/ikey.h"
#include "lsm/vfs.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

/* ---- helpers --------------------------------------------------------------------- */

struct kvs {
	struct kv_buf *keys, *values;
	size_t n;
};

static int cmp_buf(const void *a, const void *b)
{
	return kv_slice_cmp(kv_buf_slice(a), kv_buf_slice(b));
}

/*
 * @n distinct sorted keys with long shared prefixes, NUL bytes, and a few
 * longer than the cursor's inline buffer.
 */
static struct kvs make_kvs(struct kv_rng *rng, size_t n, size_t max_value)
{
	struct kvs s = { calloc(n, sizeof(struct kv_buf)), calloc(n, sizeof(struct kv_buf)), 0 };
	assert_non_null(s.keys);
	for (size_t i = 0; i < n; i++) {
		struct kv_buf *k = &s.keys[i];
		char head[48];
		int hn = snprintf(head, sizeof head, "dir/%03u/file-", (unsigned)kv_rng_below(rng, 20));
		kv_buf_append(k, head, (size_t)hn);
		size_t tail = 1 + kv_rng_below(rng, kv_rng_below(rng, 50) == 0 ? 300 : 12);
		for (size_t j = 0; j < tail; j++)
			kv_buf_append_u8(k, (uint8_t)kv_rng_below(rng, 4)); /* 0..3: many NULs */
	}
	qsort(s.keys, n, sizeof *s.keys, cmp_buf);
	/* Drop duplicates. */
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w && kv_slice_eq(kv_buf_slice(&s.keys[w - 1]), kv_buf_slice(&s.keys[i]))) {
			kv_buf_release(&s.keys[i]);
			continue;
		}
		s.keys[w++] = s.keys[i];
	}
	s.n = w;
	for (size_t i = 0; i < s.n; i++) {
		size_t vn = max_value ? (size_t)kv_rng_below(rng, max_value + 1) : 0;
		for (size_t j = 0; j < vn; j++)
			kv_buf_append_u8(&s.values[i], (uint8_t)kv_rng_next(rng));
	}
	return s;
}

static void free_kvs(struct kvs *s)
{
	for (size_t i = 0; i < s->n; i++) {
		kv_buf_release(&s->keys[i]);
		kv_buf_release(&s->values[i]);
	}
	free(s->keys);
	free(s->values);
}

/* Builds the block contents of @s into @out (a copy owned by the caller). */
static void build_contents(const struct kvs *s, unsigned interval, struct kv_buf *out)
{
	struct kv_block_builder b;
	kv_block_builder_init(&b, interval);
	for (size_t i = 0; i < s->n; i++)
		assert_int_equal(kv_block_builder_add(&b, kv_buf_slice(&s->keys[i]),
						      kv_buf_slice(&s->values[i])), 0);
	size_t estimate = kv_block_builder_size(&b);
	struct kv_slice c;
	assert_int_equal(kv_block_builder_finish(&b, &c), 0);
	assert_int_equal(c.n, estimate);
	kv_buf_reset(out);
	kv_buf_append(out, c.p, c.n);
	kv_block_builder_release(&b);
}

/* Iterates a block fully; returns the entries seen, or -1 on error. */
static long drain(const struct kv_block *b, kv_cmp_fn cmp)
{
	struct kv_iter *it;
	assert_int_equal(kv_block_iter_new(b, cmp, false, &it), 0);
	long n = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice k = kv_iter_key(it), v = kv_iter_value(it);
		/* Touch every byte so ASan sees any overread. */
		volatile uint8_t sink = 0;
		for (size_t i = 0; i < k.n; i++)
			sink ^= k.p[i];
		for (size_t i = 0; i < v.n; i++)
			sink ^= v.p[i];
		(void)sink;
		n++;
	}
	int st = kv_iter_status(it);
	kv_iter_destroy(it);
	return st ? -1 : n;
}

/* ---- contents -------------------------------------------------------------------- */

static void test_block__round_trips_with_prefix_compression(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_block__round_trips_with_prefix_compression"));
	const unsigned intervals[] = { 1, 2, 16, 1000 };
	for (size_t t = 0; t < 4; t++) {
		struct kvs s = make_kvs(&rng, 500, 40);
		struct kv_buf c = KV_BUF_INIT;
		build_contents(&s, intervals[t], &c);
		struct kv_block b;
		assert_int_equal(kv_block_init(&b, kv_buf_slice(&c)), 0);
		assert_int_equal(b.nrestarts, (s.n + intervals[t] - 1) / intervals[t]);
		struct kv_iter *it;
		assert_int_equal(kv_block_iter_new(&b, kv_slice_cmp, false, &it), 0);
		size_t i = 0;
		for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
			assert_true(i < s.n);
			assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&s.keys[i])));
			assert_true(kv_slice_eq(kv_iter_value(it), kv_buf_slice(&s.values[i])));
		}
		assert_int_equal(i, s.n);
		assert_int_equal(kv_iter_status(it), 0);
		kv_iter_destroy(it);
		kv_buf_release(&c);
		free_kvs(&s);
	}
}

static void test_block__prefix_compression_saves_space(void **state)
{
	(void)state;
	struct kv_block_builder b;
	kv_block_builder_init(&b, 16);
	size_t raw = 0;
	for (int i = 0; i < 100; i++) {
		char k[64];
		int n = snprintf(k, sizeof k, "/a/long/shared/directory/name/file%04d", i);
		raw += (size_t)n;
		assert_int_equal(kv_block_builder_add(&b, kv_slice_make(k, (size_t)n),
						      kv_slice_make(NULL, 0)), 0);
	}
	struct kv_slice c;
	assert_int_equal(kv_block_builder_finish(&b, &c), 0);
	assert_true(c.n < raw / 3);
	kv_block_builder_release(&b);
}

static void test_block__seek_finds_first_key_at_or_after_target(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_block__seek_finds_first_key_at_or_after_target"));
	struct kvs s = make_kvs(&rng, 300, 8);
	struct kv_buf c = KV_BUF_INIT;
	build_contents(&s, 16, &c);
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, kv_buf_slice(&c)), 0);
	struct kv_block_cursor cur;
	kv_block_cursor_init(&cur, &b, kv_slice_cmp);
	for (size_t i = 0; i < s.n; i++) {
		/* Exactly a key. */
		kv_block_cursor_seek(&cur, kv_buf_slice(&s.keys[i]));
		assert_true(kv_block_cursor_valid(&cur));
		assert_true(kv_slice_eq(kv_block_cursor_key(&cur), kv_buf_slice(&s.keys[i])));
		/* Just after it (key ‖ 0x00 sorts right after key). */
		struct kv_buf t = KV_BUF_INIT;
		kv_buf_append(&t, s.keys[i].p, s.keys[i].n);
		kv_buf_append_u8(&t, 0);
		kv_block_cursor_seek(&cur, kv_buf_slice(&t));
		if (i + 1 < s.n) {
			assert_true(kv_block_cursor_valid(&cur));
			assert_true(kv_slice_eq(kv_block_cursor_key(&cur), kv_buf_slice(&s.keys[i + 1])));
			/* next() continues from a seek. */
			kv_block_cursor_next(&cur);
			assert_int_equal(kv_block_cursor_valid(&cur), i + 2 < s.n);
		} else {
			assert_false(kv_block_cursor_valid(&cur));
		}
		kv_buf_release(&t);
	}
	/* Before everything; after everything. */
	kv_block_cursor_seek(&cur, kv_slice_make(NULL, 0));
	assert_true(kv_block_cursor_valid(&cur));
	assert_true(kv_slice_eq(kv_block_cursor_key(&cur), kv_buf_slice(&s.keys[0])));
	kv_block_cursor_seek(&cur, kv_slice_str("\xff"));
	assert_false(kv_block_cursor_valid(&cur));
	assert_int_equal(cur.status, 0);
	kv_block_cursor_release(&cur);
	kv_buf_release(&c);
	free_kvs(&s);
}

static void test_block__orders_internal_keys_by_ikey_cmp(void **state)
{
	(void)state;
	/* Three versions of "k" (newest first), then "k\0". */
	struct kv_buf keys[4];
	const uint64_t seqs[] = { 30, 20, 10 };
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 2);
	for (int i = 0; i < 4; i++) {
		kv_buf_init(&keys[i]);
		if (i < 3)
			kv_ikey_append(&keys[i], kv_slice_str("k"), seqs[i], KV_TYPE_PUT);
		else
			kv_ikey_append(&keys[i], kv_slice_make("k\0", 2), 5, KV_TYPE_DEL);
		if (i)
			assert_true(kv_ikey_cmp(kv_buf_slice(&keys[i - 1]), kv_buf_slice(&keys[i])) < 0);
		assert_int_equal(kv_block_builder_add(&bb, kv_buf_slice(&keys[i]),
						      kv_slice_str("v")), 0);
	}
	struct kv_slice c;
	assert_int_equal(kv_block_builder_finish(&bb, &c), 0);
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, c), 0);
	struct kv_block_cursor cur;
	kv_block_cursor_init(&cur, &b, kv_ikey_cmp);
	/* "k" as of 25 finds seq 20; as of 5 finds nothing of "k". */
	struct kv_buf t = KV_BUF_INIT;
	kv_ikey_append(&t, kv_slice_str("k"), 25, KV_TYPE_SEEK);
	kv_block_cursor_seek(&cur, kv_buf_slice(&t));
	assert_true(kv_slice_eq(kv_block_cursor_key(&cur), kv_buf_slice(&keys[1])));
	kv_buf_reset(&t);
	kv_ikey_append(&t, kv_slice_str("k"), 5, KV_TYPE_SEEK);
	kv_block_cursor_seek(&cur, kv_buf_slice(&t));
	assert_true(kv_slice_eq(kv_block_cursor_key(&cur), kv_buf_slice(&keys[3])));
	kv_block_cursor_release(&cur);
	kv_buf_release(&t);
	for (int i = 0; i < 4; i++)
		kv_buf_release(&keys[i]);
	kv_block_builder_release(&bb);
}

static void test_block__empty_block_iterates_nothing(void **state)
{
	(void)state;
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 16);
	struct kv_slice c;
	assert_int_equal(kv_block_builder_finish(&bb, &c), 0);
	assert_int_equal(c.n, 8); /* restart[0] = 0, count = 1 */
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, c), 0);
	assert_int_equal(drain(&b, kv_slice_cmp), 0);
	struct kv_block_cursor cur;
	kv_block_cursor_init(&cur, &b, kv_slice_cmp);
	kv_block_cursor_seek(&cur, kv_slice_str("a"));
	assert_false(kv_block_cursor_valid(&cur));
	assert_int_equal(cur.status, 0);
	kv_block_cursor_release(&cur);
	kv_block_builder_release(&bb);
}

static void test_block__long_keys_and_values_round_trip(void **state)
{
	(void)state;
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 16);
	uint8_t *big = malloc(1 << 20);
	for (size_t i = 0; i < 1 << 20; i++)
		big[i] = (uint8_t)(i * 31);
	/* Keys of 1 KiB sharing 1000 bytes; a 1 MiB value. */
	uint8_t key[1024];
	memset(key, 'x', sizeof key);
	for (int i = 0; i < 40; i++) {
		key[1020] = (uint8_t)i;
		assert_int_equal(kv_block_builder_add(&bb, kv_slice_make(key, sizeof key),
						      kv_slice_make(big, i == 7 ? 1u << 20 : 10)), 0);
	}
	struct kv_slice c;
	assert_int_equal(kv_block_builder_finish(&bb, &c), 0);
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, c), 0);
	struct kv_block_cursor cur;
	kv_block_cursor_init(&cur, &b, kv_slice_cmp);
	key[1020] = 7;
	kv_block_cursor_seek(&cur, kv_slice_make(key, sizeof key));
	assert_true(kv_block_cursor_valid(&cur));
	assert_int_equal(cur.key_len, 1024);
	assert_int_equal(cur.value_len, 1u << 20);
	assert_memory_equal(cur.value, big, 1u << 20);
	kv_block_cursor_release(&cur);
	kv_block_builder_release(&bb);
	free(big);
}

/* ---- envelope -------------------------------------------------------------------- */

static void seal_and_check(struct kv_slice contents, bool compress, uint8_t want_type)
{
	struct kv_buf out = KV_BUF_INIT;
	kv_buf_append(&out, "prefix", 6); /* seal appends */
	uint64_t psize;
	assert_int_equal(kv_block_seal(contents, compress, &out, &psize), 0);
	assert_int_equal(out.n, 6 + psize + KV_BLOCK_TRAILER);
	const uint8_t *t = out.p + 6 + psize;
	assert_int_equal(t[0], want_type);
	assert_int_equal(kv_get_le32(t + 1), psize);
	assert_int_equal(kv_get_le32(t + 5), contents.n);
	struct kv_block *b;
	assert_int_equal(kv_block_decode(kv_slice_make(out.p + 6, out.n - 6), &b), 0);
	assert_int_equal(b->size, contents.n);
	assert_memory_equal(b->data, contents.p, contents.n);
	kv_block_free(b);
	kv_buf_release(&out);
}

static void test_block__seal_uses_lz4_only_when_it_pays(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, 7);
	struct kvs s = make_kvs(&rng, 200, 100); /* random values: incompressible */
	struct kv_buf c = KV_BUF_INIT;
	build_contents(&s, 16, &c);
	seal_and_check(kv_buf_slice(&c), true, KV_BLOCK_RAW);
	seal_and_check(kv_buf_slice(&c), false, KV_BLOCK_RAW);
	free_kvs(&s);
	/* Repetitive contents compress. */
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 16);
	for (int i = 0; i < 200; i++) {
		char k[32];
		int n = snprintf(k, sizeof k, "key%05d", i);
		kv_block_builder_add(&bb, kv_slice_make(k, (size_t)n),
				     kv_slice_str("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	}
	struct kv_slice cs;
	assert_int_equal(kv_block_builder_finish(&bb, &cs), 0);
	seal_and_check(cs, true, KV_BLOCK_LZ4);
	seal_and_check(cs, false, KV_BLOCK_RAW);
	kv_block_builder_release(&bb);
	kv_buf_release(&c);
}

/* Recomputes the checksum of a sealed block after a test edited it. */
static void reseal(uint8_t *stored, size_t n)
{
	size_t payload = n - KV_BLOCK_TRAILER;
	kv_put_le32(stored + payload + 9, kv_checksum32(stored, payload + 9));
}

static void make_sealed(bool compressible, struct kv_buf *out)
{
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 4);
	struct kv_rng rng;
	kv_rng_seed(&rng, 99);
	for (int i = 0; i < 50; i++) {
		char k[32];
		uint8_t v[32];
		int n = snprintf(k, sizeof k, "key%05d", i);
		for (size_t j = 0; j < sizeof v; j++) /* repetitive, or random bytes */
			v[j] = compressible ? (uint8_t)'v' : (uint8_t)kv_rng_next(&rng);
		kv_block_builder_add(&bb, kv_slice_make(k, (size_t)n), kv_slice_make(v, sizeof v));
	}
	struct kv_slice cs;
	assert_int_equal(kv_block_builder_finish(&bb, &cs), 0);
	uint64_t psize;
	kv_buf_reset(out);
	assert_int_equal(kv_block_seal(cs, true, out, &psize), 0);
	kv_block_builder_release(&bb);
}

static void expect_decode_fails(struct kv_buf *stored)
{
	struct kv_block *b = (struct kv_block *)1;
	/* An exact-size copy, so ASan sees overreads. */
	uint8_t *copy = malloc(stored->n ? stored->n : 1);
	memcpy(copy, stored->p, stored->n);
	assert_int_equal(kv_block_decode(kv_slice_make(copy, stored->n), &b), KV_ECORRUPT);
	assert_null(b);
	free(copy);
}

static void test_block__every_bit_flip_in_an_envelope_is_caught(void **state)
{
	(void)state;
	for (int compressible = 0; compressible < 2; compressible++) {
		struct kv_buf s = KV_BUF_INIT;
		make_sealed(compressible, &s);
		assert_int_equal(s.p[s.n - KV_BLOCK_TRAILER], compressible ? KV_BLOCK_LZ4 : KV_BLOCK_RAW);
		for (size_t i = 0; i < s.n; i++) {
			for (unsigned bit = 0; bit < 8; bit += 3) {
				s.p[i] ^= (uint8_t)(1u << bit);
				expect_decode_fails(&s);
				s.p[i] ^= (uint8_t)(1u << bit);
			}
		}
		/* Truncations. */
		size_t n = s.n;
		for (size_t len = 0; len < n; len++) {
			s.n = len;
			expect_decode_fails(&s);
		}
		kv_buf_release(&s);
	}
}

static void test_block__trailer_fields_are_checked_before_use(void **state)
{
	(void)state;
	for (int compressible = 0; compressible < 2; compressible++) {
		struct kv_buf s = KV_BUF_INIT;
		make_sealed(compressible, &s);
		uint8_t *t = s.p + s.n - KV_BLOCK_TRAILER;
		uint8_t keep[KV_BLOCK_TRAILER];
		memcpy(keep, t, sizeof keep);
		/* Each edit below carries a valid checksum: the field checks must catch it. */
		const uint8_t types[] = { 2, 3, 0x80, 0xff, compressible ? KV_BLOCK_RAW : KV_BLOCK_LZ4 };
		for (size_t i = 0; i < sizeof types; i++) {
			t[0] = types[i];
			reseal(s.p, s.n);
			expect_decode_fails(&s);
			memcpy(t, keep, sizeof keep);
		}
		const uint32_t sizes[] = { 0, 1, kv_get_le32(keep + 1) - 1, kv_get_le32(keep + 1) + 1,
					   KV_BLOCK_MAX_RAW + 1, UINT32_MAX };
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			kv_put_le32(t + 1, sizes[i]); /* payload size */
			reseal(s.p, s.n);
			expect_decode_fails(&s);
			memcpy(t, keep, sizeof keep);
			kv_put_le32(t + 5, sizes[i]); /* raw size */
			reseal(s.p, s.n);
			expect_decode_fails(&s);
			memcpy(t, keep, sizeof keep);
		}
		kv_buf_release(&s);
	}
}

/* A block with a valid envelope around @contents. */
static void expect_contents_corrupt(const uint8_t *contents, size_t n)
{
	struct kv_buf s = KV_BUF_INIT;
	uint64_t psize;
	assert_int_equal(kv_block_seal(kv_slice_make(contents, n), false, &s, &psize), 0);
	struct kv_block *b;
	int r = kv_block_decode(kv_buf_slice(&s), &b);
	if (r == 0) {
		/* The restart array parsed: the entries must then fail to. */
		assert_int_equal(drain(b, kv_slice_cmp), -1);
		kv_block_free(b);
	} else {
		assert_int_equal(r, KV_ECORRUPT);
	}
	kv_buf_release(&s);
}

static void test_block__malformed_contents_give_ecorrupt(void **state)
{
	(void)state;
	uint8_t c[64] = { 0 };
	/* Too short for a restart count. */
	expect_contents_corrupt(c, 0);
	expect_contents_corrupt((const uint8_t *)"\1\0\0", 3);
	/* Zero restarts; more restarts than fit. */
	memset(c, 0, sizeof c);
	expect_contents_corrupt(c, 4);
	kv_put_le32(c + 4, 2);
	expect_contents_corrupt(c, 8);
	kv_put_le32(c + 4, UINT32_MAX);
	expect_contents_corrupt(c, 8);
	/* A restart offset past the entries. */
	kv_put_le32(c, 9);
	kv_put_le32(c + 4, 1);
	expect_contents_corrupt(c, 8);
	/* An entry whose unshared length runs past the entries. */
	uint8_t e1[] = { 0, 200, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e1, sizeof e1);
	/* An entry whose value length runs past the entries. */
	uint8_t e2[] = { 0, 1, 9, 'a', 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e2, sizeof e2);
	/* The first entry claims a shared prefix with nothing. */
	uint8_t e3[] = { 3, 1, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e3, sizeof e3);
	/* A second entry shares more than the first key has. */
	uint8_t e4[] = { 0, 1, 0, 'a', 2, 1, 0, 'b', 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e4, sizeof e4);
	/* Lengths that are huge, overlong or truncated varints. */
	uint8_t e5[] = { 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e5, sizeof e5);
	uint8_t e6[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0,
			 0, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e6, sizeof e6);
	uint8_t e7[] = { 0, 0x81, 0, 0, 0, 1, 0, 0, 0 };
	expect_contents_corrupt(e7, sizeof e7);
	/* A restart point whose entry is not a full key (seek path). */
	uint8_t e8[] = { 0, 1, 0, 'a', 1, 1, 0, 'b', 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0 };
	struct kv_block b;
	assert_int_equal(kv_block_init(&b, kv_slice_make(e8, sizeof e8)), 0);
	struct kv_block_cursor cur;
	kv_block_cursor_init(&cur, &b, kv_slice_cmp);
	kv_block_cursor_seek(&cur, kv_slice_str("b"));
	assert_false(kv_block_cursor_valid(&cur));
	assert_int_equal(cur.status, KV_ECORRUPT);
	kv_block_cursor_release(&cur);
}

static void test_block__random_contents_never_crash(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_block__random_contents_never_crash"));
	struct kvs s = make_kvs(&rng, 60, 6);
	struct kv_buf good = KV_BUF_INIT;
	build_contents(&s, 4, &good);
	for (int round = 0; round < 20000; round++) {
		size_t n;
		uint8_t *p;
		if (round % 2) { /* mutate a real block */
			n = good.n;
			p = malloc(n);
			memcpy(p, good.p, n);
			for (int k = 1 + (int)kv_rng_below(&rng, 4); k > 0; k--)
				p[kv_rng_below(&rng, n)] ^= (uint8_t)(1 + kv_rng_below(&rng, 255));
		} else {
			n = (size_t)kv_rng_below(&rng, 100);
			p = malloc(n ? n : 1);
			for (size_t i = 0; i < n; i++)
				p[i] = (uint8_t)kv_rng_below(&rng, 8);
		}
		struct kv_block b;
		if (kv_block_init(&b, kv_slice_make(p, n)) == 0) {
			drain(&b, kv_slice_cmp);
			struct kv_block_cursor cur;
			kv_block_cursor_init(&cur, &b, kv_slice_cmp);
			for (int i = 0; i < 4; i++) {
				kv_block_cursor_seek(&cur, kv_buf_slice(&s.keys[kv_rng_below(&rng, s.n)]));
				while (kv_block_cursor_valid(&cur))
					kv_block_cursor_next(&cur);
			}
			kv_block_cursor_release(&cur);
		}
		free(p);
	}
	kv_buf_release(&good);
	free_kvs(&s);
}

/* ---- reading from a file ----------------------------------------------------------- */

static void test_block__read_verifies_what_the_file_holds(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	assert_non_null(vfs);
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(vfs, "b", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	struct kv_buf s = KV_BUF_INIT;
	kv_buf_append(&s, "0123456789", 10);
	make_sealed(true, &s); /* resets s */
	struct kv_buf file = KV_BUF_INIT;
	kv_buf_append(&file, "0123456789", 10);
	kv_buf_append(&file, s.p, s.n);
	assert_int_equal(kv_file_append(f, file.p, file.n), 0);
	uint64_t psize = s.n - KV_BLOCK_TRAILER;
	struct kv_block *b;
	assert_int_equal(kv_block_read(f, 10, psize, &b), 0);
	assert_int_equal(drain(b, kv_slice_cmp), 50);
	kv_block_free(b);
	/* Wrong offset or size: the envelope does not check out. */
	assert_int_equal(kv_block_read(f, 9, psize, &b), KV_ECORRUPT);
	assert_null(b);
	assert_int_equal(kv_block_read(f, 10, psize - 1, &b), KV_ECORRUPT);
	/* Past the end of the file, or absurdly large. */
	assert_int_equal(kv_block_read(f, 10, psize + 1, &b), KV_ECORRUPT);
	assert_int_equal(kv_block_read(f, 1u << 30, psize, &b), KV_ECORRUPT);
	assert_int_equal(kv_block_read(f, 10, (uint64_t)KV_BLOCK_MAX_RAW + 1, &b), KV_ECORRUPT);
	assert_int_equal(kv_block_read(f, 10, UINT64_MAX - 5, &b), KV_ECORRUPT);
	/* A flipped bit in the file. */
	assert_int_equal(kv_vfs_mem_flip_bit(vfs, "b", 20, 3), 0);
	assert_int_equal(kv_block_read(f, 10, psize, &b), KV_ECORRUPT);
	kv_file_close(f);
	kv_buf_release(&s);
	kv_buf_release(&file);
	kv_vfs_destroy(vfs);
}

/* ---- the fuzz seed corpus -------------------------------------------------------- */

/* Writes @mode ‖ @bytes to DIR/@name (fuzz_block.c's input format). */
static void write_seed(const char *dir, const char *name, uint8_t mode, struct kv_slice bytes)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(&mode, 1, 1, f), 1);
	if (bytes.n)
		assert_int_equal(fwrite(bytes.p, 1, bytes.n, f), bytes.n);
	assert_int_equal(fclose(f), 0);
}

static void test_block__writes_fuzz_seed_corpus(void **state)
{
	(void)state;
	const char *dir = getenv("KV_CORPUS_OUT");
	if (!dir)
		skip();
	struct kv_rng rng;
	kv_rng_seed(&rng, 2024);
	struct kvs s = make_kvs(&rng, 12, 6);
	struct kv_buf c = KV_BUF_INIT;
	build_contents(&s, 4, &c);
	write_seed(dir, "bytewise.blk", 0, kv_buf_slice(&c));
	build_contents(&s, 1, &c);
	write_seed(dir, "restart1.blk", 0, kv_buf_slice(&c));
	free_kvs(&s);
	/* Internal keys, several versions of one user key. */
	struct kv_block_builder bb;
	kv_block_builder_init(&bb, 2);
	for (int i = 0; i < 6; i++) {
		struct kv_buf k = KV_BUF_INIT;
		kv_ikey_append(&k, kv_slice_str(i < 3 ? "a" : "b\0c"), 10 - (uint64_t)i % 3,
			       i % 2 ? KV_TYPE_DEL : KV_TYPE_PUT);
		kv_block_builder_add(&bb, kv_buf_slice(&k), kv_slice_str(i % 2 ? "" : "value"));
		kv_buf_release(&k);
	}
	struct kv_slice ic;
	assert_int_equal(kv_block_builder_finish(&bb, &ic), 0);
	write_seed(dir, "ikeys.blk", 1, ic);
	kv_block_builder_release(&bb);
	kv_block_builder_init(&bb, 16);
	struct kv_slice empty;
	assert_int_equal(kv_block_builder_finish(&bb, &empty), 0);
	write_seed(dir, "empty.blk", 0, empty);
	kv_block_builder_release(&bb);
	/* Sealed: raw and lz4. */
	struct kv_buf sealed = KV_BUF_INIT;
	make_sealed(false, &sealed);
	write_seed(dir, "sealed-raw.blk", 2, kv_buf_slice(&sealed));
	make_sealed(true, &sealed);
	write_seed(dir, "sealed-lz4.blk", 2, kv_buf_slice(&sealed));
	kv_buf_release(&sealed);
	kv_buf_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block__round_trips_with_prefix_compression),
		cmocka_unit_test(test_block__prefix_compression_saves_space),
		cmocka_unit_test(test_block__seek_finds_first_key_at_or_after_target),
		cmocka_unit_test(test_block__orders_internal_keys_by_ikey_cmp),
		cmocka_unit_test(test_block__empty_block_iterates_nothing),
		cmocka_unit_test(test_block__long_keys_and_values_round_trip),
		cmocka_unit_test(test_block__seal_uses_lz4_only_when_it_pays),
		cmocka_unit_test(test_block__every_bit_flip_in_an_envelope_is_caught),
		cmocka_unit_test(test_block__trailer_fields_are_checked_before_use),
		cmocka_unit_test(test_block__malformed_contents_give_ecorrupt),
		cmocka_unit_test(test_block__random_contents_never_crash),
		cmocka_unit_test(test_block__read_verifies_what_the_file_holds),
		cmocka_unit_test(test_block__writes_fuzz_seed_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
