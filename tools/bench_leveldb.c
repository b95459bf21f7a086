/*
 * bench_leveldb.c - LevelDB (Debian libleveldb-dev, its C API leveldb/c.h)
 * behind kvfs-bench's engine interface (bench.h), so `kvfs-bench leveldb`
 * measures it with exactly the loop that measures kvfs.
 *
 * Settings: --write_buffer_size, an LRU block cache of --cache_size (LevelDB
 * falls back to its own 8 MiB cache for 0), a bloom filter policy of
 * --bloom_bits, snappy or no compression (LevelDB has no lz4), and the sync
 * write option for --sync. Everything else is LevelDB's default (4 KiB
 * blocks, 2 MiB tables). Built only when meson finds LevelDB.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include <leveldb/c.h>

struct bench_db {
	leveldb_t *db;
	leveldb_options_t *options;
	leveldb_cache_t *cache;           /* NULL: LevelDB's default */
	leveldb_filterpolicy_t *filter;   /* NULL: no bloom filter */
	leveldb_writeoptions_t *write_options;
	leveldb_readoptions_t *read_options;
};

struct bench_iter {
	leveldb_iterator_t *it;
};

/* Prints and frees a LevelDB error; returns -1 if there was one. */
static int check(const char *what, char *err)
{
	if (!err)
		return 0;
	fprintf(stderr, "kvfs-bench: leveldb %s: %s\n", what, err);
	leveldb_free(err);
	return -1;
}

static void free_db(struct bench_db *db)
{
	if (db->db)
		leveldb_close(db->db);
	if (db->options)
		leveldb_options_destroy(db->options);
	if (db->cache)
		leveldb_cache_destroy(db->cache);
	if (db->filter)
		leveldb_filterpolicy_destroy(db->filter);
	if (db->write_options)
		leveldb_writeoptions_destroy(db->write_options);
	if (db->read_options)
		leveldb_readoptions_destroy(db->read_options);
	free(db);
}

static int ldb_open(const struct bench_flags *f, struct bench_db **out)
{
	*out = NULL;
	struct bench_db *db = calloc(1, sizeof(*db));
	if (!db) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return -1;
	}
	db->options = leveldb_options_create();
	leveldb_options_set_create_if_missing(db->options, 1);
	leveldb_options_set_write_buffer_size(db->options, (size_t)f->write_buffer_size);
	if (f->cache_size > 0) {
		db->cache = leveldb_cache_create_lru((size_t)f->cache_size);
		leveldb_options_set_cache(db->options, db->cache);
	}
	if (f->block_size > 0)
		leveldb_options_set_block_size(db->options, (size_t)f->block_size);
	if (f->bloom_bits > 0) {
		db->filter = leveldb_filterpolicy_create_bloom((int)f->bloom_bits);
		leveldb_options_set_filter_policy(db->options, db->filter);
	}
	leveldb_options_set_compression(db->options, strcmp(f->compression, "snappy") == 0
							     ? leveldb_snappy_compression
							     : leveldb_no_compression);
	db->write_options = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(db->write_options, f->sync ? 1 : 0);
	db->read_options = leveldb_readoptions_create();

	char *err = NULL;
	db->db = leveldb_open(db->options, f->db, &err);
	if (check("open", err) < 0 || !db->db) {
		db->db = NULL;
		free_db(db);
		return -1;
	}
	*out = db;
	return 0;
}

static int ldb_close(struct bench_db *db)
{
	free_db(db);
	return 0;
}

static int ldb_put(struct bench_db *db, struct kv_slice key, struct kv_slice value)
{
	char *err = NULL;
	leveldb_put(db->db, db->write_options, (const char *)key.p, key.n, (const char *)value.p,
		    value.n, &err);
	return check("put", err);
}

static int ldb_get(struct bench_db *db, struct kv_slice key, size_t *value_len)
{
	char *err = NULL;
	size_t n = 0;
	char *v = leveldb_get(db->db, db->read_options, (const char *)key.p, key.n, &n, &err);
	if (check("get", err) < 0)
		return -1;
	if (!v)
		return 0;
	leveldb_free(v);
	*value_len = n;
	return 1;
}

static struct bench_iter *ldb_iter_new(struct bench_db *db)
{
	struct bench_iter *it = malloc(sizeof(*it));
	if (!it) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return NULL;
	}
	it->it = leveldb_create_iterator(db->db, db->read_options);
	return it;
}

static void ldb_iter_seek_first(struct bench_iter *it)
{
	leveldb_iter_seek_to_first(it->it);
}

static void ldb_iter_seek(struct bench_iter *it, struct kv_slice target)
{
	leveldb_iter_seek(it->it, (const char *)target.p, target.n);
}

static bool ldb_iter_valid(struct bench_iter *it)
{
	return leveldb_iter_valid(it->it) != 0;
}

static void ldb_iter_next(struct bench_iter *it)
{
	leveldb_iter_next(it->it);
}

static struct kv_slice ldb_iter_key(struct bench_iter *it)
{
	size_t n = 0;
	const char *p = leveldb_iter_key(it->it, &n);
	return kv_slice_make(p, n);
}

static struct kv_slice ldb_iter_value(struct bench_iter *it)
{
	size_t n = 0;
	const char *p = leveldb_iter_value(it->it, &n);
	return kv_slice_make(p, n);
}

static int ldb_iter_status(struct bench_iter *it)
{
	char *err = NULL;
	leveldb_iter_get_error(it->it, &err);
	return check("iterator", err);
}

static void ldb_iter_free(struct bench_iter *it)
{
	leveldb_iter_destroy(it->it);
	free(it);
}

static int ldb_compact(struct bench_db *db)
{
	leveldb_compact_range(db->db, NULL, 0, NULL, 0);
	return 0;
}

/* Level-0 tables at LevelDB's compaction trigger (4) mean work is queued. */
static bool ldb_busy(struct bench_db *db)
{
	char *v = leveldb_property_value(db->db, "leveldb.num-files-at-level0");
	bool busy = v && atoi(v) >= 4;
	leveldb_free(v);
	return busy;
}

static void ldb_print_stats(struct bench_db *db, FILE *out)
{
	char *v = leveldb_property_value(db->db, "leveldb.stats");
	fprintf(out, "stats        :\n%s", v ? v : "(none)\n");
	leveldb_free(v);
}

const struct bench_engine bench_engine_leveldb = {
	.name = "leveldb",
	.open = ldb_open,
	.close = ldb_close,
	.put = ldb_put,
	.get = ldb_get,
	.iter_new = ldb_iter_new,
	.iter_seek_first = ldb_iter_seek_first,
	.iter_seek = ldb_iter_seek,
	.iter_valid = ldb_iter_valid,
	.iter_next = ldb_iter_next,
	.iter_key = ldb_iter_key,
	.iter_value = ldb_iter_value,
	.iter_status = ldb_iter_status,
	.iter_free = ldb_iter_free,
	.compact = ldb_compact,
	.busy = ldb_busy,
	.print_stats = ldb_print_stats,
};
