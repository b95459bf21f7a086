/*
 * version.h - the set of live SSTables, level by level, as one immutable,
 * reference-counted snapshot (a "version", as in LevelDB's VersionSet).
 *
 * Readers take a reference on the current version and read its tables
 * without holding the engine's lock; flushes and compactions install new
 * versions. A table file is deleted from disk only when it is no longer part
 * of the current version (it is marked obsolete) and the last version that
 * names it is gone.
 *
 * Level 0 holds flushed memtables, which may overlap; they are kept newest
 * first. Levels 1.. hold tables with disjoint key ranges, sorted by key.
 */
#ifndef KV_LSM_VERSION_H
#define KV_LSM_VERSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/iter.h"
#include "lsm/lsm.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/slice.h"

/* What a table needs to delete itself; owned by the engine, outlives tables. */
struct kv_table_env {
	struct kv_vfs *vfs;
	const char *dir;
	struct kv_cache *cache;        /* may be NULL */
	/*
	 * May be NULL: how an obsolete table's file is deleted once nothing
	 * maps it any more (the engine queues it; NULL: removed at once).
	 */
	void (*trash)(struct kv_table_env *env, const char *path);
};

struct kv_file_meta {
	atomic_int refs;
	uint64_t number;
	uint64_t size;
	uint64_t entries;
	struct kv_buf smallest; /* internal keys */
	struct kv_buf largest;
	struct kv_table *table; /* the open reader; owned */
	struct kv_table_env *env;
	atomic_bool obsolete;   /* delete the file at the last unref */
};

/*
 * A new file meta with one reference, taking ownership of @table (may be
 * NULL only in tests). Copies the keys. Returns NULL on allocation failure
 * (and then frees @table).
 */
struct kv_file_meta *kv_file_meta_new(struct kv_table_env *env, uint64_t number, uint64_t size,
				      uint64_t entries, struct kv_slice smallest,
				      struct kv_slice largest, struct kv_table *table);
void kv_file_meta_ref(struct kv_file_meta *f);
/* Drops a reference; the last one closes the table (and deletes the file
 * if it was marked obsolete). */
void kv_file_meta_unref(struct kv_file_meta *f);

/* The name of table @number in @dir ("%s/%06llu.sst"), into @out. */
void kv_table_path(char *out, size_t n, const char *dir, uint64_t number);

struct kv_version {
	atomic_int refs;
	struct kv_file_meta **files[KV_LSM_LEVELS];
	size_t nfiles[KV_LSM_LEVELS];
};

struct kv_version *kv_version_new(void);
void kv_version_ref(struct kv_version *v);
void kv_version_unref(struct kv_version *v);

/* A change to a version: tables removed (by level and number) and added. */
struct kv_version_edit {
	struct {
		int level;
		uint64_t number;
	} *removed;
	size_t nremoved;
	struct {
		int level;
		struct kv_file_meta *file; /* the edit holds a reference */
	} *added;
	size_t nadded;
};

void kv_version_edit_init(struct kv_version_edit *e);
void kv_version_edit_release(struct kv_version_edit *e);
int kv_version_edit_remove(struct kv_version_edit *e, int level, uint64_t number);
/* Adds @f at @level; the edit takes its own reference. */
int kv_version_edit_add(struct kv_version_edit *e, int level, struct kv_file_meta *f);

/*
 * A new version: @base with @edit applied (files sorted as the levels
 * require). Files removed by the edit are not marked obsolete here; the
 * caller does that once the new version is durable. Returns NULL on
 * allocation failure.
 */
struct kv_version *kv_version_apply(const struct kv_version *base, const struct kv_version_edit *edit);

uint64_t kv_version_level_bytes(const struct kv_version *v, int level);

/*
 * Looks @ukey up as of @seq in the tables of @v, newest data first.
 * Returns 1 (found: *type says put or delete; a put's value is in @value),
 * 0 (no table has it), or an error; on KV_ECORRUPT *bad_file names the
 * table that failed. With @cached_only no file is read: a data block the
 * block cache does not hold makes it -EAGAIN. @hash is kv_table_key_hash(@ukey).
 */
int kv_version_get(struct kv_version *v, struct kv_slice ukey, uint64_t hash, uint64_t seq,
		   bool cached_only, enum kv_entry_type *type, struct kv_buf *value,
		   uint64_t *bad_file);

/*
 * Appends to @out (room for nfiles[0] + KV_LSM_LEVELS entries) iterators
 * over the internal keys of @v: one per level-0 table, newest first, then one
 * concatenating iterator per non-empty deeper level. Each iterator holds a
 * reference on what it reads. Returns the count, or -ENOMEM (after
 * destroying any it made).
 */
int kv_version_iters(struct kv_version *v, bool fill_cache, struct kv_iter **out);

/*
 * An iterator over the given sorted, disjoint tables (one level), opening
 * each table's iterator only when it is reached. Holds references on the
 * files. NULL on allocation failure.
 */
struct kv_iter *kv_level_iter_new(struct kv_file_meta **files, size_t n, bool fill_cache);

/*
 * Collects into *out (malloc'd; caller frees the array, not the files) the
 * tables of @level whose user-key range intersects [lo, hi]; an empty lo or
 * hi slice with NULL pointer means unbounded. Returns the count or -ENOMEM.
 */
int kv_version_overlapping(const struct kv_version *v, int level, struct kv_slice lo, struct kv_slice hi,
			   struct kv_file_meta ***out);

#endif
