/*
 * checksum.c - XXH3 hashes and checksums (see checksum.h).
 */
#include "util/checksum.h"

#define XXH_STATIC_LINKING_ONLY /* for XXH3_state_t on the stack */
#include <xxhash.h>

uint64_t kv_hash64(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

uint64_t kv_hash64_seed(const void *p, size_t n, uint64_t seed)
{
	return XXH3_64bits_withSeed(p, n, seed);
}

uint32_t kv_checksum32(const void *p, size_t n)
{
	return (uint32_t)XXH3_64bits(p, n);
}

uint32_t kv_checksum32_2(const void *a, size_t an, const void *b, size_t bn)
{
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, a, an);
	XXH3_64bits_update(&st, b, bn);
	return (uint32_t)XXH3_64bits_digest(&st);
}
