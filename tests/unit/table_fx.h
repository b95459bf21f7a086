/*
 * table_fx.h - the fixture of the SSTable tests (test_table.c,
 * test_table_corrupt.c; lsm/table.h, doc/storage-format.md#sstables): a
 * model of a table's contents (sorted internal keys, several versions a
 * key, keys with NUL and 0xff bytes, deletes) and an environment that
 * writes it as a table in an in-memory VFS and opens it again.
 *
 * Failures fail the running cmocka test.
 */
#ifndef KV_TESTS_UNIT_TABLE_FX_H
#define KV_TESTS_UNIT_TABLE_FX_H

#include <stddef.h>
#include <stdint.h>

#include "lsm/cache.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/rng.h"
#include "util/slice.h"

/* ---- a model of a table's contents --------------------------------------------- */

struct ent {
	struct kv_buf ikey, value;
};

struct model {
	struct ent *e;
	size_t n;
	uint64_t max_seq;
};

struct shape {
	size_t keys;          /* distinct user keys (before deduplication) */
	unsigned versions;    /* up to this many versions a key */
	size_t max_value;     /* value sizes 0..max_value */
	size_t big_value;     /* and every 97th value this big, if set */
};

/* Appends a random user key to @k: a short directory-like prefix, then up to
 * 16 bytes of a small alphabet that includes NUL and 0xff. */
void make_user_key(struct kv_rng *rng, struct kv_buf *k);

/* A sorted model of @s's shape drawn from @rng; free it with free_model(). */
struct model make_model(struct kv_rng *rng, const struct shape *s);

/* Frees the entries of @m and empties it. */
void free_model(struct model *m);

/* The model's answer to get(ukey, snap): an entry index, or -1. */
long model_get(const struct model *m, struct kv_slice ukey, uint64_t snap);

/* ---- writing and opening tables --------------------------------------------------- */

struct env {
	struct kv_vfs *vfs;
	struct kv_cache *cache;
	struct kv_table_stats stats;
};

/* An in-memory VFS and, with @cache_bytes, a block cache; release with
 * env_release(). */
void env_init(struct env *e, size_t cache_bytes);

/* Frees the cache and the VFS with every file in it. */
void env_release(struct env *e);

/* Writes @m as the table @path with options @o (NULL: defaults), checking
 * the builder's counts, bounds and size on the way; returns the file size. */
uint64_t write_table(struct env *env, const char *path, const struct model *m,
		     const struct kv_table_options *o);

/* Opens the table @path as file @number; returns kv_table_open()'s result,
 * with *@out the caller's (kv_table_unref()) on success, NULL on failure. */
int open_table(struct env *env, const char *path, uint64_t number, struct kv_table **out);

/* Replaces the contents of @out (the caller's) with the bytes of @path. */
void read_file(struct env *env, const char *path, struct kv_buf *out);

#endif
