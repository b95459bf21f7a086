/*
 * test_chunkhash.c - chunk names (src/proto/chunkhash.h, doc/fs-format.md
 * §4): SHA-256 by its published test vectors, and a check that accepts a
 * chunk named by SHA-256 or, stored before it, by BLAKE2b-256, and nothing
 * else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "proto/chunkhash.h"

static void from_hex(const char *hex, uint8_t out[KV_CHUNK_HASH_LEN])
{
	for (size_t i = 0; i < KV_CHUNK_HASH_LEN; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* FIPS 180-2 examples, and the empty input. */
static void test_chunkhash__is_sha256(void **state)
{
	(void)state;
	uint8_t got[KV_CHUNK_HASH_LEN], want[KV_CHUNK_HASH_LEN];
	assert_int_equal(kv_chunk_hash("abc", 3, got), 0);
	from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
	assert_memory_equal(got, want, sizeof got);
	assert_int_equal(kv_chunk_hash(NULL, 0, got), 0);
	from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
	assert_memory_equal(got, want, sizeof got);
	size_t n = 1000000;
	char *a = malloc(n);
	assert_non_null(a);
	memset(a, 'a', n);
	assert_int_equal(kv_chunk_hash(a, n, got), 0);
	from_hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", want);
	assert_memory_equal(got, want, sizeof got);
	free(a);
}

static void test_chunkhash__check_takes_sha256_or_an_older_blake2b_name(void **state)
{
	(void)state;
	size_t n = 4u << 20;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 12));
	uint8_t sha[KV_CHUNK_HASH_LEN], blake[KV_CHUNK_HASH_LEN];
	assert_int_equal(kv_chunk_hash(data, n, sha), 0);
	crypto_generichash(blake, sizeof blake, data, n, NULL, 0);
	assert_memory_not_equal(sha, blake, sizeof sha);
	assert_int_equal(kv_chunk_hash_check(sha, data, n), 1);
	assert_int_equal(kv_chunk_hash_check(blake, data, n), 1);
	/* One flipped bit, in the bytes or in either name: refused. */
	data[n / 2] ^= 0x10;
	assert_int_equal(kv_chunk_hash_check(sha, data, n), 0);
	assert_int_equal(kv_chunk_hash_check(blake, data, n), 0);
	data[n / 2] ^= 0x10;
	sha[0] ^= 1;
	blake[31] ^= 0x80;
	assert_int_equal(kv_chunk_hash_check(sha, data, n), 0);
	assert_int_equal(kv_chunk_hash_check(blake, data, n), 0);
	/* The empty chunk, both ways. */
	assert_int_equal(kv_chunk_hash(NULL, 0, sha), 0);
	crypto_generichash(blake, sizeof blake, (const uint8_t *)"", 0, NULL, 0);
	assert_int_equal(kv_chunk_hash_check(sha, NULL, 0), 1);
	assert_int_equal(kv_chunk_hash_check(blake, NULL, 0), 1);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunkhash__is_sha256),
		cmocka_unit_test(test_chunkhash__check_takes_sha256_or_an_older_blake2b_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
