/*
 * test_fs_chunk.c - chunking helpers of the mount (fuse/chunk.h): content
 * hashes, chunk keys, verification, byte ranges onto chunks, and the chunk
 * manifest encoding with a corruption test for each field. The range test
 * is randomized: it prints its seed, KV_SEED=... replays it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fuse/chunk.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* ---- hashes and keys ---- */

static void test_fs_chunk__hash_is_blake2b_256(void **state)
{
	uint8_t got[KV_FS_HASH_LEN], want[KV_FS_HASH_LEN];
	kv_fs_hash("", 0, got);
	hex_to("0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8", want, 32);
	assert_memory_equal(got, want, 32);
	kv_fs_hash("abc", 3, got);
	hex_to("bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319", want, 32);
	assert_memory_equal(got, want, 32);
}

static void test_fs_chunk__streamed_hash_equals_one_shot(void **state)
{
	enum { N = 100000 };
	uint8_t *data = malloc(N);
	assert_non_null(data);
	for (size_t i = 0; i < N; i++)
		data[i] = (uint8_t)(i * 131 + 7);
	uint8_t one[KV_FS_HASH_LEN], streamed[KV_FS_HASH_LEN];
	kv_fs_hash(data, N, one);
	struct kv_fs_hasher h;
	kv_fs_hasher_init(&h);
	for (size_t at = 0, step = 1; at < N; at += step, step = step * 3 + 1)
		kv_fs_hasher_update(&h, data + at, at + step > N ? N - at : step);
	kv_fs_hasher_final(&h, streamed);
	assert_memory_equal(one, streamed, KV_FS_HASH_LEN);
	free(data);
}

static void test_fs_chunk__key_is_reserved_and_parses_back(void **state)
{
	uint8_t hash[KV_FS_HASH_LEN], key[KV_FS_CHUNK_KEY_LEN], back[KV_FS_HASH_LEN];
	kv_fs_hash("chunk", 5, hash);
	kv_fs_chunk_key(hash, key);
	assert_int_equal(key[0], 0x00);
	assert_int_equal(key[1], 'c');
	assert_true(kv_fs_key_is_chunk(kv_slice_make(key, sizeof key)));
	assert_int_equal(kv_fs_chunk_key_parse(kv_slice_make(key, sizeof key), back), 0);
	assert_memory_equal(back, hash, KV_FS_HASH_LEN);

	/* Paths are never chunk keys. */
	assert_false(kv_fs_key_is_chunk(kv_slice_str("/a/b")));
	assert_false(kv_fs_key_is_chunk(kv_slice_str("")));
}

static void test_fs_chunk__key_parse_rejects_malformed(void **state)
{
	uint8_t hash[KV_FS_HASH_LEN], key[KV_FS_CHUNK_KEY_LEN + 1], out[KV_FS_HASH_LEN];
	kv_fs_hash("x", 1, hash);
	kv_fs_chunk_key(hash, key);
	memset(out, 0x55, sizeof out);
	/* Too short, too long. */
	assert_int_equal(kv_fs_chunk_key_parse(kv_slice_make(key, KV_FS_CHUNK_KEY_LEN - 1), out), KV_EINVAL);
	key[KV_FS_CHUNK_KEY_LEN] = 0;
	assert_int_equal(kv_fs_chunk_key_parse(kv_slice_make(key, KV_FS_CHUNK_KEY_LEN + 1), out), KV_EINVAL);
	/* Wrong prefix. */
	key[1] = 'd';
	assert_int_equal(kv_fs_chunk_key_parse(kv_slice_make(key, KV_FS_CHUNK_KEY_LEN), out), KV_EINVAL);
	/* The hole hash names no chunk. */
	uint8_t zero[KV_FS_HASH_LEN] = { 0 };
	kv_fs_chunk_key(zero, key);
	assert_int_equal(kv_fs_chunk_key_parse(kv_slice_make(key, KV_FS_CHUNK_KEY_LEN), out), KV_EINVAL);
	/* Output untouched on failure. */
	for (size_t i = 0; i < sizeof out; i++)
		assert_int_equal(out[i], 0x55);
}

static void test_fs_chunk__verify_rejects_any_flipped_bit(void **state)
{
	uint8_t data[300], hash[KV_FS_HASH_LEN];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)i;
	kv_fs_hash(data, sizeof data, hash);
	assert_int_equal(kv_fs_chunk_verify(hash, kv_slice_make(data, sizeof data)), 0);
	for (size_t i = 0; i < sizeof data; i += 37) {
		data[i] ^= 0x10;
		assert_int_equal(kv_fs_chunk_verify(hash, kv_slice_make(data, sizeof data)),
				 KV_ECORRUPT);
		data[i] ^= 0x10;
	}
	/* A truncated read fails too. */
	assert_int_equal(kv_fs_chunk_verify(hash, kv_slice_make(data, sizeof data - 1)),
			 KV_ECORRUPT);
}

static void test_fs_chunk__count_rounds_up(void **state)
{
	const uint64_t c = KV_FS_CHUNK_SIZE;
	assert_int_equal(kv_fs_chunk_count(0, KV_FS_CHUNK_SHIFT), 0);
	assert_int_equal(kv_fs_chunk_count(1, KV_FS_CHUNK_SHIFT), 1);
	assert_int_equal(kv_fs_chunk_count(c, KV_FS_CHUNK_SHIFT), 1);
	assert_int_equal(kv_fs_chunk_count(c + 1, KV_FS_CHUNK_SHIFT), 2);
	assert_int_equal(kv_fs_chunk_count((uint64_t)1 << 30, KV_FS_CHUNK_SHIFT), 256);
	assert_int_equal(kv_fs_chunk_count(UINT64_MAX, 20), ((uint64_t)1 << 44));
}

/* ---- byte ranges ---- */

static size_t spans_of(uint64_t off, uint64_t len, uint64_t limit, unsigned shift,
		       struct kv_fs_span *out, size_t max)
{
	struct kv_fs_range r;
	struct kv_fs_span sp;
	size_t n = 0;
	kv_fs_range_init(&r, off, len, limit, shift);
	while (kv_fs_range_next(&r, &sp)) {
		assert_true(n < max);
		out[n++] = sp;
	}
	return n;
}

static void test_fs_chunk__range_maps_onto_chunks(void **state)
{
	const uint32_t c = KV_FS_CHUNK_SIZE;
	struct kv_fs_span s[8];

	/* Inside one chunk. */
	assert_int_equal(spans_of(10, 20, UINT64_MAX, KV_FS_CHUNK_SHIFT, s, 8), 1);
	assert_int_equal(s[0].index, 0);
	assert_int_equal(s[0].offset, 10);
	assert_int_equal(s[0].len, 20);
	assert_int_equal(s[0].file_offset, 10);

	/* Across a boundary. */
	assert_int_equal(spans_of(c - 5, 10, UINT64_MAX, KV_FS_CHUNK_SHIFT, s, 8), 2);
	assert_int_equal(s[0].index, 0);
	assert_int_equal(s[0].offset, c - 5);
	assert_int_equal(s[0].len, 5);
	assert_int_equal(s[1].index, 1);
	assert_int_equal(s[1].offset, 0);
	assert_int_equal(s[1].len, 5);
	assert_int_equal(s[1].file_offset, c);

	/* Exactly one whole chunk, the third. */
	assert_int_equal(spans_of(2 * (uint64_t)c, c, UINT64_MAX, KV_FS_CHUNK_SHIFT, s, 8), 1);
	assert_int_equal(s[0].index, 2);
	assert_int_equal(s[0].offset, 0);
	assert_int_equal(s[0].len, c);

	/* Three chunks, the middle one whole. */
	assert_int_equal(spans_of(c - 1, (uint64_t)c + 2, UINT64_MAX, KV_FS_CHUNK_SHIFT, s, 8), 3);
	assert_int_equal(s[1].len, c);
	assert_int_equal(s[2].len, 1);
}

static void test_fs_chunk__read_range_stops_at_file_end(void **state)
{
	const uint32_t c = KV_FS_CHUNK_SIZE;
	struct kv_fs_span s[4];
	/* A read past the end is cut at the size. */
	assert_int_equal(spans_of(c - 10, 100, (uint64_t)c + 3, KV_FS_CHUNK_SHIFT, s, 4), 2);
	assert_int_equal(s[0].len, 10);
	assert_int_equal(s[1].len, 3);
	/* Starting at or past the end, or empty: nothing. */
	assert_int_equal(spans_of(500, 10, 500, KV_FS_CHUNK_SHIFT, s, 4), 0);
	assert_int_equal(spans_of(900, 10, 500, KV_FS_CHUNK_SHIFT, s, 4), 0);
	assert_int_equal(spans_of(10, 0, 500, KV_FS_CHUNK_SHIFT, s, 4), 0);
	/* An overflowing range is clamped, not wrapped. */
	assert_int_equal(spans_of(UINT64_MAX - 5, 100, UINT64_MAX, KV_FS_CHUNK_SHIFT, s, 4), 1);
	assert_int_equal(s[0].len, 5);
	assert_int_equal(s[0].index, UINT64_MAX >> KV_FS_CHUNK_SHIFT);
}

static void test_fs_chunk__random_ranges_tile_exactly(void **state)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_fs_chunk__random_ranges_tile_exactly"));
	for (int iter = 0; iter < 2000; iter++) {
		unsigned shift = KV_FS_CHUNK_SHIFT_MIN +
				 (unsigned)kv_rng_below(&rng, KV_FS_CHUNK_SHIFT_MAX - KV_FS_CHUNK_SHIFT_MIN + 1);
		uint64_t chunk = (uint64_t)1 << shift;
		uint64_t off = kv_rng_below(&rng, 20 * chunk);
		uint64_t len = kv_rng_below(&rng, 5 * chunk);
		uint64_t limit = kv_rng_below(&rng, 2) ? UINT64_MAX : kv_rng_below(&rng, 25 * chunk);
		uint64_t end = off + len < limit ? off + len : limit;
		struct kv_fs_range r;
		struct kv_fs_span sp;
		uint64_t pos = off;
		kv_fs_range_init(&r, off, len, limit, shift);
		while (kv_fs_range_next(&r, &sp)) {
			assert_int_equal(sp.file_offset, pos);
			assert_int_equal(sp.index, pos / chunk);
			assert_int_equal(sp.offset, pos % chunk);
			assert_true(sp.len >= 1 && sp.offset + sp.len <= chunk);
			pos += sp.len;
		}
		assert_int_equal(pos, off < end ? end : off);
	}
}

/* ---- manifests ---- */

static void fill_manifest(struct kv_fs_manifest *m, uint64_t size)
{
	uint32_t full = (uint32_t)1 << m->shift;
	for (uint64_t i = 0; size; i++) {
		uint32_t len = size > full ? full : (uint32_t)size;
		uint8_t hash[KV_FS_HASH_LEN];
		kv_fs_hash(&i, sizeof i, hash);
		/* Every third chunk is a hole. */
		assert_int_equal(kv_fs_manifest_append(m, i % 3 == 2 ? NULL : hash, len), 0);
		size -= len;
	}
}

static void test_fs_chunk__manifest_roundtrips(void **state)
{
	struct kv_fs_manifest m, back;
	struct kv_buf enc = KV_BUF_INIT;
	kv_fs_manifest_init(&m, 20);
	kv_fs_manifest_init(&back, 0);
	uint64_t size = 7 * ((uint64_t)1 << 20) + 12345;
	fill_manifest(&m, size);
	assert_int_equal(m.n, 8);
	assert_int_equal(kv_fs_manifest_size(&m), size);
	assert_true(kv_fs_hash_is_hole(m.chunks[2].hash));
	assert_false(kv_fs_hash_is_hole(m.chunks[1].hash));

	assert_int_equal(kv_fs_manifest_encode(&m, &enc), 0);
	assert_int_equal(enc.n, KV_FS_MANIFEST_HEADER + 8 * KV_FS_MANIFEST_ENTRY);
	assert_memory_equal(enc.p, "kM\x01\x14\x08\x00\x00\x00", 8);
	assert_int_equal(kv_fs_manifest_decode(kv_buf_slice(&enc), &back), 0);
	assert_int_equal(back.shift, 20);
	assert_int_equal(back.n, m.n);
	assert_memory_equal(back.chunks, m.chunks, m.n * sizeof *m.chunks);

	struct kv_buf again = KV_BUF_INIT;
	assert_int_equal(kv_fs_manifest_encode(&back, &again), 0);
	assert_int_equal(again.n, enc.n);
	assert_memory_equal(again.p, enc.p, enc.n);

	kv_buf_release(&again);
	kv_buf_release(&enc);
	kv_fs_manifest_release(&m);
	kv_fs_manifest_release(&back);
}

static void test_fs_chunk__manifest_append_keeps_fixed_sizes(void **state)
{
	struct kv_fs_manifest m;
	kv_fs_manifest_init(&m, KV_FS_CHUNK_SHIFT);
	assert_int_equal(kv_fs_manifest_append(&m, NULL, 0), KV_EINVAL);
	assert_int_equal(kv_fs_manifest_append(&m, NULL, KV_FS_CHUNK_SIZE + 1), KV_EINVAL);
	assert_int_equal(kv_fs_manifest_check(&m), KV_EINVAL); /* empty */
	assert_int_equal(kv_fs_manifest_append(&m, NULL, 100), 0);
	/* After a short chunk nothing more may come. */
	assert_int_equal(kv_fs_manifest_append(&m, NULL, 100), KV_EINVAL);
	assert_int_equal(m.n, 1);
	assert_int_equal(kv_fs_manifest_check(&m), 0);
	kv_fs_manifest_release(&m);

	kv_fs_manifest_init(&m, 19); /* below the smallest chunk size */
	assert_int_equal(kv_fs_manifest_append(&m, NULL, 1), KV_EINVAL);
	kv_fs_manifest_release(&m);
}

static void test_fs_chunk__manifest_limit_is_enforced(void **state)
{
	struct kv_fs_manifest m;
	kv_fs_manifest_init(&m, 20);
	for (uint32_t i = 0; i < KV_FS_MANIFEST_MAX_CHUNKS; i++)
		assert_int_equal(kv_fs_manifest_append(&m, NULL, 1u << 20), 0);
	assert_int_equal(kv_fs_manifest_append(&m, NULL, 1u << 20), KV_ETOOBIG);
	assert_int_equal(kv_fs_manifest_size(&m), (uint64_t)KV_FS_MANIFEST_MAX_CHUNKS << 20);
	kv_fs_manifest_release(&m);
}

/* Decodes @enc with byte @at set to @val; returns the decoder's result. */
static int decode_patched(const struct kv_buf *enc, size_t at, uint8_t val)
{
	struct kv_fs_manifest m;
	kv_fs_manifest_init(&m, 0);
	uint8_t *copy = malloc(enc->n);
	assert_non_null(copy);
	memcpy(copy, enc->p, enc->n);
	copy[at] = val;
	int rc = kv_fs_manifest_decode(kv_slice_make(copy, enc->n), &m);
	if (rc == 0)
		kv_fs_manifest_release(&m);
	free(copy);
	return rc;
}

static void test_fs_chunk__manifest_decoder_rejects_each_bad_field(void **state)
{
	struct kv_fs_manifest m, out;
	struct kv_buf enc = KV_BUF_INIT;
	kv_fs_manifest_init(&m, 20);
	kv_fs_manifest_init(&out, 0);
	fill_manifest(&m, 3 * ((uint64_t)1 << 20) + 5); /* 4 chunks, the last 5 bytes */
	assert_int_equal(kv_fs_manifest_encode(&m, &enc), 0);
	const size_t e0 = KV_FS_MANIFEST_HEADER, len_of = KV_FS_HASH_LEN;

	assert_int_equal(decode_patched(&enc, 0, 'x'), KV_ECORRUPT);    /* magic */
	assert_int_equal(decode_patched(&enc, 1, 'x'), KV_ECORRUPT);    /* magic */
	assert_int_equal(decode_patched(&enc, 2, 2), KV_EVERSION);      /* format */
	assert_int_equal(decode_patched(&enc, 3, 19), KV_ECORRUPT);     /* shift too small */
	assert_int_equal(decode_patched(&enc, 3, 23), KV_ECORRUPT);     /* shift too large */
	assert_int_equal(decode_patched(&enc, 3, 21), KV_ECORRUPT);     /* full chunks now short */
	assert_int_equal(decode_patched(&enc, 3, 22), KV_ECORRUPT);
	assert_int_equal(decode_patched(&enc, 4, 0), KV_ECORRUPT);      /* count 0 */
	assert_int_equal(decode_patched(&enc, 4, 3), KV_ECORRUPT);      /* count below the bytes */
	assert_int_equal(decode_patched(&enc, 4, 5), KV_ECORRUPT);      /* count above the bytes */
	assert_int_equal(decode_patched(&enc, 7, 0x80), KV_ECORRUPT);   /* huge count */
	/* A full chunk made short, the last made empty or longer than a chunk. */
	assert_int_equal(decode_patched(&enc, e0 + len_of, 0xff), KV_ECORRUPT);
	assert_int_equal(decode_patched(&enc, e0 + 3 * KV_FS_MANIFEST_ENTRY + len_of, 0), KV_ECORRUPT);
	assert_int_equal(decode_patched(&enc, e0 + 3 * KV_FS_MANIFEST_ENTRY + len_of + 2, 0x20),
			 KV_ECORRUPT);
	/* A hash byte is content, not structure: it decodes. */
	assert_int_equal(decode_patched(&enc, e0 + 5, 0x42), 0);

	/* Truncated anywhere, or a trailing byte. */
	for (size_t n = 0; n < enc.n; n++)
		assert_int_equal(kv_fs_manifest_decode(kv_slice_make(enc.p, n), &out), KV_ECORRUPT);
	assert_int_equal(kv_buf_append_u8(&enc, 0), 0);
	assert_int_equal(kv_fs_manifest_decode(kv_buf_slice(&enc), &out), KV_ECORRUPT);
	assert_int_equal(out.n, 0); /* untouched */

	kv_buf_release(&enc);
	kv_fs_manifest_release(&m);
	kv_fs_manifest_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fs_chunk__hash_is_blake2b_256),
		cmocka_unit_test(test_fs_chunk__streamed_hash_equals_one_shot),
		cmocka_unit_test(test_fs_chunk__key_is_reserved_and_parses_back),
		cmocka_unit_test(test_fs_chunk__key_parse_rejects_malformed),
		cmocka_unit_test(test_fs_chunk__verify_rejects_any_flipped_bit),
		cmocka_unit_test(test_fs_chunk__count_rounds_up),
		cmocka_unit_test(test_fs_chunk__range_maps_onto_chunks),
		cmocka_unit_test(test_fs_chunk__read_range_stops_at_file_end),
		cmocka_unit_test(test_fs_chunk__random_ranges_tile_exactly),
		cmocka_unit_test(test_fs_chunk__manifest_roundtrips),
		cmocka_unit_test(test_fs_chunk__manifest_append_keeps_fixed_sizes),
		cmocka_unit_test(test_fs_chunk__manifest_limit_is_enforced),
		cmocka_unit_test(test_fs_chunk__manifest_decoder_rejects_each_bad_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
