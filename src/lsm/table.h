/*
 * table.h - SSTables: immutable sorted files of internal keys and values.
 * Format: doc/storage-format.md#sstables
 *
 *   data blocks ‖ filter block ‖ meta block ‖ index block ‖ 64-byte footer
 *
 * A builder writes one table through a struct kv_file, in key order. A
 * reader opens it, checks the footer, meta, index and filter, keeps the index
 * and filter in memory, and serves point lookups and iterators; data blocks
 * come through the block cache when one is given. Every block read is
 * checksummed; a damaged table answers KV_ECORRUPT, never wrong data.
 *
 * Threads: a builder belongs to one thread. An open table is immutable and
 * reference-counted: any number of threads may call kv_table_get() and
 * kv_table_iter() on it at once, each iterator being used by one thread.
 */
#ifndef KV_LSM_TABLE_H
#define KV_LSM_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/iter.h"
#include "lsm/vfs.h"
#include "util/slice.h"

/* The footer: doc/storage-format.md#sstable-footer */
#define KV_TABLE_FOOTER 64
#define KV_TABLE_MAGIC UINT64_C(0x7473732e7366766b) /* "kvfs.sst" on disk */
#define KV_TABLE_MAJOR 1 /* readers refuse other majors with KV_EVERSION */
#define KV_TABLE_MINOR 0 /* readers accept any minor of their major */

struct kv_table_options {
	size_t block_bytes;          /* data block target before compression;
				      * default 16 KiB, clamped to [256 B, 16 MiB] */
	unsigned bloom_bits_per_key; /* default 10; 0 writes no filter */
	bool compress;               /* lz4 where it saves >= 1/8; default true */
	unsigned restart_interval;   /* data block restart interval; default 16 */
};

/* Fills @o with the defaults above. */
void kv_table_options_init(struct kv_table_options *o);

/* ---- Building ------------------------------------------------------------------ */

struct kv_table_builder;

/*
 * A builder that appends a table to @f, which must be empty. @o may be NULL
 * for the defaults. The builder borrows @f: it never syncs or closes it (the
 * caller does both after kv_table_builder_finish()). Returns 0 or -ENOMEM;
 * on success *out is freed with kv_table_builder_free().
 */
int kv_table_builder_new(struct kv_file *f, const struct kv_table_options *o,
			 struct kv_table_builder **out);

/*
 * Adds an entry. @ikey is an internal key (ikey.h) strictly greater, by
 * kv_ikey_cmp(), than the previous one (asserted: the caller's invariant).
 * The bytes are copied. Returns 0, KV_ETOOBIG for an entry over ~100 MiB,
 * or the write's error (-errno); any error is sticky: later calls return it.
 */
int kv_table_builder_add(struct kv_table_builder *b, struct kv_slice ikey, struct kv_slice value);

/*
 * Writes the last data block, the filter, meta and index blocks and the
 * footer. On success *file_size gets the table's size (the file's size).
 * Returns 0 or an error (sticky). Call at most once.
 */
int kv_table_builder_finish(struct kv_table_builder *b, uint64_t *file_size);

/*
 * Frees the builder. Without a successful finish this abandons the table:
 * nothing more is written and the partial file is the caller's to remove.
 */
void kv_table_builder_free(struct kv_table_builder *b);

/* Entries added so far. */
uint64_t kv_table_builder_entries(const struct kv_table_builder *b);

/*
 * Bytes written so far plus the pending data block (before compression):
 * what the file would take, less filter, index and footer, if finished now.
 */
uint64_t kv_table_builder_file_size(const struct kv_table_builder *b);

/* The first and last internal keys added (empty before the first add). */
struct kv_slice kv_table_builder_smallest(const struct kv_table_builder *b);
struct kv_slice kv_table_builder_largest(const struct kv_table_builder *b);

/* ---- Reading ------------------------------------------------------------------- */

struct kv_table;

/*
 * Counters shared by the tables an engine opens (the caller owns them; they
 * must outlive every table that points at them). Updated with relaxed
 * atomics.
 */
struct kv_table_stats {
	_Atomic uint64_t bloom_checks; /* lookups that consulted a filter */
	_Atomic uint64_t bloom_skips;  /* ... and were answered "absent" by it */
	_Atomic uint64_t block_reads;  /* data blocks read from the file */
	_Atomic uint64_t block_read_bytes;
};

/*
 * Opens the table in @f (@file_size bytes). Checks the footer (magic,
 * checksum, version), then reads and checks the meta, index and filter
 * blocks. @file_number keys the table's blocks in @cache (may be NULL: no
 * caching); @stats may be NULL.
 *
 * Returns 0 and a table holding one reference in *out, which now owns @f
 * (it closes it when the last reference goes); or KV_ECORRUPT, KV_EVERSION
 * (a major version this code does not read), -ENOMEM or a read error, and
 * then *out is NULL and the caller still owns @f.
 */
int kv_table_open(struct kv_file *f, uint64_t file_size, uint64_t file_number,
		  struct kv_cache *cache, struct kv_table_stats *stats, struct kv_table **out);

/* Takes another reference; returns @t. */
struct kv_table *kv_table_ref(struct kv_table *t);

/*
 * Drops a reference; the last one frees the table and closes its file
 * (iterators hold references of their own) and returns true. NULL is a
 * no-op (false).
 */
bool kv_table_unref(struct kv_table *t);

/*
 * Looks up the newest entry for @ukey with sequence <= @snapshot_seq. Returns
 * 1 when found: *type is KV_TYPE_PUT (@value reset and filled with the value)
 * or KV_TYPE_DEL (@value reset to empty). Returns 0 when the table holds no
 * such entry, or a negative error (KV_ECORRUPT, -ENOMEM, a read error); @type
 * and @value are then untouched. Thread-safe.
 */
int kv_table_get(struct kv_table *t, struct kv_slice ukey, uint64_t snapshot_seq,
		 enum kv_entry_type *type, struct kv_buf *value);

/*
 * kv_table_get(), but never reads the file: when the data block that may
 * hold @ukey is not in the block cache, returns -EAGAIN (and changes
 * nothing). The index and the filter are in memory, so a key the filter
 * rules out is answered 0. For callers that must not block on I/O.
 */
int kv_table_get_cached(struct kv_table *t, struct kv_slice ukey, uint64_t snapshot_seq,
			enum kv_entry_type *type, struct kv_buf *value);

/*
 * The same with the key's filter hash computed once by the caller, for a
 * lookup that visits many tables: @hash must be kv_table_key_hash(@ukey).
 */
uint64_t kv_table_key_hash(struct kv_slice ukey);
int kv_table_get_hashed(struct kv_table *t, struct kv_slice ukey, uint64_t hash,
			uint64_t snapshot_seq, enum kv_entry_type *type, struct kv_buf *value);
int kv_table_get_cached_hashed(struct kv_table *t, struct kv_slice ukey, uint64_t hash,
			       uint64_t snapshot_seq, enum kv_entry_type *type,
			       struct kv_buf *value);

/*
 * An iterator over the table's internal keys (kv_ikey_cmp order) and values.
 * Blocks it reads enter the cache only when @fill_cache (those already there
 * are used either way). It holds a reference on @t. NULL when out of memory.
 */
struct kv_iter *kv_table_iter(struct kv_table *t, bool fill_cache);

/* The table's properties, from its meta block. Keys are borrowed from @t. */
struct kv_slice kv_table_smallest(const struct kv_table *t); /* empty if no entries */
struct kv_slice kv_table_largest(const struct kv_table *t);
uint64_t kv_table_entries(const struct kv_table *t);
uint64_t kv_table_deletes(const struct kv_table *t);
uint64_t kv_table_file_number(const struct kv_table *t);
uint64_t kv_table_file_size(const struct kv_table *t);
uint64_t kv_table_raw_key_bytes(const struct kv_table *t);
uint64_t kv_table_raw_value_bytes(const struct kv_table *t);
/* Whether kv_table_get() consults a bloom filter. */
bool kv_table_has_filter(const struct kv_table *t);

/*
 * An estimate of the file offset where @ikey would be: the offset of the
 * data block that would hold it, or the end of the data blocks for keys
 * past the last. For compaction planning and approximate sizes.
 */
uint64_t kv_table_offset_of(const struct kv_table *t, struct kv_slice ikey);

#endif
