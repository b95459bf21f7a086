/*
 * test_util.c - slices, buffers, varints, checksums, the rng.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

static void test_util__slice_order_puts_prefix_first(void **state)
{
	(void)state;
	assert_true(kv_slice_cmp(kv_slice_str("ab"), kv_slice_str("abc")) < 0);
	assert_true(kv_slice_cmp(kv_slice_str("abd"), kv_slice_str("abc")) > 0);
	assert_int_equal(kv_slice_cmp(kv_slice_str(""), kv_slice_make(NULL, 0)), 0);
	assert_true(kv_slice_has_prefix(kv_slice_str("/a/b"), kv_slice_str("/a/")));
	assert_false(kv_slice_has_prefix(kv_slice_str("/a"), kv_slice_str("/a/")));
}

static void test_util__buf_grows_and_detaches(void **state)
{
	(void)state;
	struct kv_buf b = KV_BUF_INIT;
	for (int i = 0; i < 10000; i++)
		assert_int_equal(kv_buf_append_u8(&b, (uint8_t)i), 0);
	assert_int_equal(b.n, 10000);
	assert_int_equal(b.p[9999], (uint8_t)9999);
	size_t n;
	uint8_t *p = kv_buf_detach(&b, &n);
	assert_int_equal(n, 10000);
	assert_null(b.p);
	assert_int_equal(b.n, 0);
	free(p);
	assert_int_equal(kv_buf_reserve(&b, SIZE_MAX), -ENOMEM);
	kv_buf_release(&b);
}

static void test_util__varint_round_trips(void **state)
{
	(void)state;
	const uint64_t vals[] = { 0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX,
				  (uint64_t)1 << 56, UINT64_MAX };
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		uint8_t t[KV_VARINT64_MAX];
		size_t n = kv_varint_encode(t, vals[i]);
		assert_int_equal(n, kv_varint_len(vals[i]));
		uint64_t out = 0;
		assert_int_equal(kv_varint_decode(t, n, &out), (int)n);
		assert_true(out == vals[i]);
		/* Every truncation is an error, never a misread. */
		for (size_t k = 0; k < n; k++)
			assert_int_equal(kv_varint_decode(t, k, &out), KV_ECORRUPT);
	}
}

static void test_util__varint_rejects_overlong(void **state)
{
	(void)state;
	uint8_t t[11];
	memset(t, 0xff, sizeof t);
	uint64_t out;
	assert_int_equal(kv_varint_decode(t, sizeof t, &out), KV_ECORRUPT);
	/* Ten bytes whose last carries more than the 64th bit. */
	memset(t, 0x80, 9);
	t[9] = 0x02;
	assert_int_equal(kv_varint_decode(t, 10, &out), KV_ECORRUPT);
	t[9] = 0x01;
	assert_int_equal(kv_varint_decode(t, 10, &out), 10);
	assert_true(out == (uint64_t)1 << 63);
}

static void test_util__fixed_width_is_little_endian(void **state)
{
	(void)state;
	uint8_t t[8];
	kv_put_le32(t, 0x01020304);
	assert_int_equal(t[0], 4);
	assert_int_equal(kv_get_le32(t), 0x01020304);
	kv_put_le64(t, 0x0102030405060708ULL);
	assert_int_equal(t[0], 8);
	assert_true(kv_get_le64(t) == 0x0102030405060708ULL);
	kv_put_be64(t, 0x0102030405060708ULL);
	assert_int_equal(t[0], 1);
	assert_true(kv_get_be64(t) == 0x0102030405060708ULL);
}

static void test_util__checksum_of_parts_equals_whole(void **state)
{
	(void)state;
	const char *s = "hello, world";
	assert_int_equal(kv_checksum32(s, 12), kv_checksum32_2(s, 5, s + 5, 7));
	assert_int_not_equal(kv_checksum32(s, 12), kv_checksum32(s, 11));
}

static void test_util__rng_replays_from_seed(void **state)
{
	(void)state;
	struct kv_rng a, b;
	kv_rng_seed(&a, 42);
	kv_rng_seed(&b, 42);
	for (int i = 0; i < 100; i++)
		assert_true(kv_rng_next(&a) == kv_rng_next(&b));
	for (int i = 0; i < 1000; i++) {
		assert_true(kv_rng_below(&a, 7) < 7);
		double d = kv_rng_double(&a);
		assert_true(d >= 0 && d < 1);
	}
}

static void test_util__strerror_names_every_code(void **state)
{
	(void)state;
	for (int e = KV_EEND; e <= KV_EBASE; e++)
		assert_string_not_equal(kv_strerror(e), "unknown error");
	assert_string_equal(kv_strerror(-ENOENT), strerror(ENOENT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_util__slice_order_puts_prefix_first),
		cmocka_unit_test(test_util__buf_grows_and_detaches),
		cmocka_unit_test(test_util__varint_round_trips),
		cmocka_unit_test(test_util__varint_rejects_overlong),
		cmocka_unit_test(test_util__fixed_width_is_little_endian),
		cmocka_unit_test(test_util__checksum_of_parts_equals_whole),
		cmocka_unit_test(test_util__rng_replays_from_seed),
		cmocka_unit_test(test_util__strerror_names_every_code),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
