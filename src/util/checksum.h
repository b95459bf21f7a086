/*
 * checksum.h - checksums and fast hashes, all from xxHash's XXH3.
 *
 * kv_checksum32() guards records and blocks on disk (the low 32 bits of
 * XXH3-64). kv_hash64() is for placement and bloom filters. Neither is
 * collision-resistant: content addressing uses a crypto hash instead.
 */
#ifndef KV_UTIL_CHECKSUM_H
#define KV_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t kv_hash64(const void *p, size_t n);
uint64_t kv_hash64_seed(const void *p, size_t n, uint64_t seed);
uint32_t kv_checksum32(const void *p, size_t n);

/* Checksum of the concatenation a ‖ b, without copying. */
uint32_t kv_checksum32_2(const void *a, size_t an, const void *b, size_t bn);

#endif
