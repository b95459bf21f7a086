/*
 * bloom.h - the bloom filter of an SSTable, over user keys.
 * Format: doc/storage-format.md#sstable-filter-block
 *
 * Cache-line blocked: each key hashes (one kv_hash64) to one 512-bit line and
 * sets k = round(bits_per_key * ln 2) bits in it, all derived from the same
 * hash, so a query touches one cache line.
 * A builder collects key hashes and writes the filter when the table is
 * finished; a reader parses the filter once (kv_bloom_init) and probes it.
 */
#ifndef KV_LSM_BLOOM_H
#define KV_LSM_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

#define KV_BLOOM_LINE_BYTES 64 /* 512 bits, one cache line */
#define KV_BLOOM_TAIL 6	       /* le32 lines, u8 k, u8 layout */
#define KV_BLOOM_LAYOUT_BLOCKED512 1
#define KV_BLOOM_MAX_K 30

/* The hash every filter function takes: kv_hash64 of the user key. */
uint64_t kv_bloom_hash(struct kv_slice ukey);

/* ---- Building -------------------------------------------------------------- */

/* Caller-owned; kv_bloom_builder_init() then kv_bloom_builder_release(). */
struct kv_bloom_builder {
	uint64_t *hashes; /* one per key added, in order */
	size_t n, cap;
	unsigned bits_per_key;
};

/* Prepares @b for a filter of about @bits_per_key bits a key (>= 1). */
void kv_bloom_builder_init(struct kv_bloom_builder *b, unsigned bits_per_key);

/* Frees the hashes collected so far; @b can be initialised again. */
void kv_bloom_builder_release(struct kv_bloom_builder *b);

/*
 * Adds one key, given by its kv_bloom_hash(). Adding the same key twice is
 * harmless (but costs bits). Returns 0 or -ENOMEM.
 */
int kv_bloom_builder_add_hash(struct kv_bloom_builder *b, uint64_t hash);

/* Keys added so far. */
static inline size_t kv_bloom_builder_count(const struct kv_bloom_builder *b)
{
	return b->n;
}

/*
 * Appends the filter over every key added to @out (the bytes described in
 * the format doc). Returns 0 or -ENOMEM (then @out holds its old bytes).
 * @b keeps its keys.
 */
int kv_bloom_builder_finish(const struct kv_bloom_builder *b, struct kv_buf *out);

/* ---- Reading ---------------------------------------------------------------- */

/*
 * A parsed filter. It borrows the filter bytes, which must outlive it. A
 * malformed filter parses as "invalid" and then answers "may contain" for
 * every key, never reading outside its bytes.
 */
struct kv_bloom {
	const uint8_t *bits; /* lines * 64 bytes */
	uint32_t lines;      /* 0: invalid or absent, every key may be present */
	uint32_t k;
};

/*
 * Parses @filter into @out. Returns 0, or KV_ECORRUPT when the bytes are not
 * a filter this code understands; @out is then the permissive filter.
 */
int kv_bloom_init(struct kv_bloom *out, struct kv_slice filter);

/* False only if no key with this kv_bloom_hash() was added. */
bool kv_bloom_may_contain_hash(const struct kv_bloom *f, uint64_t hash);

static inline bool kv_bloom_may_contain(const struct kv_bloom *f, struct kv_slice ukey)
{
	return kv_bloom_may_contain_hash(f, kv_bloom_hash(ukey));
}

#endif
