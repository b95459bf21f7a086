/*
 * cache.h - the block cache: a sharded LRU cache with a byte budget.
 *
 * Entries are keyed by (file number, block offset) and charged a byte count
 * chosen by the caller; when the charges in a shard exceed its share of the
 * capacity, the least recently used unpinned entries are evicted. A lookup or
 * insert returns a handle that pins its entry: an entry evicted or erased
 * while pinned leaves the cache at once but is freed (its deleter called)
 * only when its last handle is released. Capacity 0 disables caching: inserts
 * still return a handle, and the value is freed on its release.
 *
 * Thread-safe: 2^shard_bits shards, each behind its own mutex. The deleter
 * runs outside every lock, on whichever thread drops the last reference.
 */
#ifndef KV_LSM_CACHE_H
#define KV_LSM_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct kv_cache;
struct kv_cache_handle;

/* Frees a value the cache no longer references. */
typedef void (*kv_cache_deleter_fn)(void *value);

#define KV_CACHE_SHARD_BITS 4 /* 16 shards */
#define KV_CACHE_MAX_SHARD_BITS 8

/*
 * A new cache of @capacity bytes in 16 shards. Returns 0 or -ENOMEM; on
 * success *out is freed with kv_cache_free().
 */
int kv_cache_new(size_t capacity, struct kv_cache **out);

/* Same with 2^@shard_bits shards (0..KV_CACHE_MAX_SHARD_BITS); for tests. */
int kv_cache_new_sharded(size_t capacity, unsigned shard_bits, struct kv_cache **out);

/* Frees the cache and every value in it. Requires every handle released. */
void kv_cache_free(struct kv_cache *c);

/*
 * The entry for (@file, @offset), pinned, or NULL on a miss (counted). The
 * caller releases the handle with kv_cache_release().
 */
struct kv_cache_handle *kv_cache_lookup(struct kv_cache *c, uint64_t file, uint64_t offset);

/*
 * Inserts @value under (@file, @offset), replacing any entry there (which is
 * freed once unpinned), and evicts as needed. The cache now owns @value and
 * frees it with @deleter. If @out is not NULL, *out is a handle pinning the
 * new entry (release it); otherwise the entry starts unpinned. Returns 0, or
 * -ENOMEM: then nothing changed, the caller still owns @value and *out is
 * NULL.
 */
int kv_cache_insert(struct kv_cache *c, uint64_t file, uint64_t offset, void *value,
		    size_t charge, kv_cache_deleter_fn deleter, struct kv_cache_handle **out);

/* The value a handle pins; valid until the handle is released. */
void *kv_cache_value(const struct kv_cache_handle *h);

/* Unpins @h; @h must not be used afterwards. */
void kv_cache_release(struct kv_cache *c, struct kv_cache_handle *h);

/* Drops the entry for (@file, @offset), if any (freed once unpinned). */
void kv_cache_erase(struct kv_cache *c, uint64_t file, uint64_t offset);

/* Drops every entry of @file (a deleted or quarantined table). */
void kv_cache_erase_file(struct kv_cache *c, uint64_t file);

struct kv_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t inserts;
	uint64_t evictions; /* entries pushed out by the byte budget */
	size_t usage;       /* bytes charged by entries in the cache */
	size_t pinned;      /* of which pinned by handles */
	size_t entries;
	size_t capacity;
};

/* A snapshot of the counters (each shard read under its lock). */
void kv_cache_get_stats(struct kv_cache *c, struct kv_cache_stats *out);

#endif
