/*
 * bench_kvfs.c - the kvfs storage engine (src/lsm/lsm.h) behind kvfs-bench's
 * engine interface (bench.h).
 *
 * --sync 1 is KV_SYNC_ALWAYS, --sync 0 KV_SYNC_NONE; --sync_policy overrides
 * both. Concurrent synced writers share WAL writes and fsyncs (group
 * commit); --inflight keeps many kv_lsm_write_async() writes in flight from
 * each thread instead.
 */
#include "bench.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/lsm.h"
#include "util/error.h"

struct bench_db {
	struct kv_lsm *lsm;
};

struct bench_iter {
	struct kv_iter *it;
};

/*
 * One reusable read buffer per thread for kv_lsm_get(), freed by the key's
 * destructor when the thread exits.
 */
static pthread_key_t get_buf_key;
static pthread_once_t get_buf_once = PTHREAD_ONCE_INIT;

static void free_get_buf(void *p)
{
	kv_buf_release(p);
	free(p);
}

static void make_get_buf_key(void)
{
	pthread_key_create(&get_buf_key, free_get_buf);
}

static struct kv_buf *thread_get_buf(void)
{
	struct kv_buf *b = pthread_getspecific(get_buf_key);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (b && pthread_setspecific(get_buf_key, b) != 0) {
			free(b);
			b = NULL;
		}
	}
	return b;
}

static int kvfs_open(const struct bench_flags *f, struct bench_db **out)
{
	struct kv_lsm_options o;
	kv_lsm_options_init(&o);
	o.memtable_bytes = (size_t)f->write_buffer_size;
	o.block_cache_bytes = (size_t)f->cache_size;
	o.bloom_bits_per_key = (unsigned)f->bloom_bits;
	if (f->block_size > 0)
		o.block_bytes = (size_t)f->block_size;
	o.compress = strcmp(f->compression, "lz4") == 0;
	o.create_if_missing = true;
	o.sync = f->sync ? KV_SYNC_ALWAYS : KV_SYNC_NONE;
	if (f->sync_policy[0] &&
	    kv_lsm_parse_sync(f->sync_policy, &o.sync, &o.sync_batch_ms) < 0) {
		fprintf(stderr, "kvfs-bench: --sync_policy %s: not a sync policy\n", f->sync_policy);
		return -1;
	}

	*out = NULL;
	pthread_once(&get_buf_once, make_get_buf_key);
	struct bench_db *db = calloc(1, sizeof(*db));
	if (!db) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return -1;
	}
	struct kv_lsm_open_report report;
	int rc = kv_lsm_open(f->db, &o, &db->lsm, &report);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: cannot open %s: %s\n", f->db, kv_strerror(rc));
		free(db);
		return -1;
	}
	if (report.possible_loss || report.wal_torn_tail)
		fprintf(stderr, "kvfs-bench: note: recovery of %s skipped %llu damaged WAL bytes%s\n",
			f->db, (unsigned long long)report.wal_bytes_skipped,
			report.wal_torn_tail ? " (torn tail)" : "");
	*out = db;
	return 0;
}

static int kvfs_close(struct bench_db *db)
{
	int rc = kv_lsm_close(db->lsm);
	free(db);
	struct kv_buf *b = pthread_getspecific(get_buf_key);
	if (b) {
		free_get_buf(b);
		pthread_setspecific(get_buf_key, NULL);
	}
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: close: %s\n", kv_strerror(rc));
		return -1;
	}
	return 0;
}

static int kvfs_put(struct bench_db *db, struct kv_slice key, struct kv_slice value)
{
	int rc = kv_lsm_put(db->lsm, key, value);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: put: %s\n", kv_strerror(rc));
		return -1;
	}
	return 0;
}

static int kvfs_put_async(struct bench_db *db, struct kv_slice key, struct kv_slice value,
			  bench_write_cb cb, void *arg)
{
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	if (!b) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return -1;
	}
	int rc = kv_lsm_batch_put(b, key, value);
	if (rc == 0)
		rc = kv_lsm_write_async(db->lsm, b, cb, arg);
	if (rc < 0) {
		kv_lsm_batch_free(b); /* still ours: the callback will not run */
		fprintf(stderr, "kvfs-bench: write_async: %s\n", kv_strerror(rc));
		return -1;
	}
	return 0;
}

static int kvfs_get(struct bench_db *db, struct kv_slice key, size_t *value_len)
{
	struct kv_buf *buf = thread_get_buf();
	if (!buf) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return -1;
	}
	int rc = kv_lsm_get(db->lsm, NULL, key, buf);
	if (rc == KV_ENOTFOUND)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: get: %s\n", kv_strerror(rc));
		return -1;
	}
	*value_len = buf->n;
	return 1;
}

static struct bench_iter *kvfs_iter_new(struct bench_db *db)
{
	struct bench_iter *it = malloc(sizeof(*it));
	if (!it) {
		fprintf(stderr, "kvfs-bench: out of memory\n");
		return NULL;
	}
	it->it = kv_lsm_iter(db->lsm, NULL);
	if (!it->it) {
		fprintf(stderr, "kvfs-bench: cannot create an iterator\n");
		free(it);
		return NULL;
	}
	return it;
}

static void kvfs_iter_seek_first(struct bench_iter *it)
{
	kv_iter_seek_first(it->it);
}

static void kvfs_iter_seek(struct bench_iter *it, struct kv_slice target)
{
	kv_iter_seek(it->it, target);
}

static bool kvfs_iter_valid(struct bench_iter *it)
{
	return kv_iter_valid(it->it);
}

static void kvfs_iter_next(struct bench_iter *it)
{
	kv_iter_next(it->it);
}

static struct kv_slice kvfs_iter_key(struct bench_iter *it)
{
	return kv_iter_key(it->it);
}

static struct kv_slice kvfs_iter_value(struct bench_iter *it)
{
	return kv_iter_value(it->it);
}

static int kvfs_iter_status(struct bench_iter *it)
{
	int rc = kv_iter_status(it->it);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: iterator: %s\n", kv_strerror(rc));
		return -1;
	}
	return 0;
}

static void kvfs_iter_free(struct bench_iter *it)
{
	kv_iter_destroy(it->it);
	free(it);
}

static int kvfs_compact(struct bench_db *db)
{
	int rc = kv_lsm_compact(db->lsm);
	if (rc < 0) {
		fprintf(stderr, "kvfs-bench: compact: %s\n", kv_strerror(rc));
		return -1;
	}
	return 0;
}

static void kvfs_engine_io(struct bench_db *db, struct bench_engine_io *out)
{
	struct kv_lsm_stats s;
	kv_lsm_get_stats(db->lsm, &s);
	out->valid = true;
	out->user = s.user_bytes;
	out->wal = s.wal_bytes;
	out->flush = s.flush_bytes;
	out->compaction = s.compaction_bytes_written;
	out->manifest = s.manifest_bytes;
}

static bool kvfs_busy(struct bench_db *db)
{
	struct kv_lsm_stats s;
	kv_lsm_get_stats(db->lsm, &s);
	return s.immutables > 0;
}

static void kvfs_print_stats(struct bench_db *db, FILE *out)
{
	struct kv_lsm_stats s;
	kv_lsm_get_stats(db->lsm, &s);
	fprintf(out, "stats        : user %llu wal %llu flush %llu compaction read %llu written %llu "
		"manifest %llu live %llu bytes\n",
		(unsigned long long)s.user_bytes, (unsigned long long)s.wal_bytes,
		(unsigned long long)s.flush_bytes, (unsigned long long)s.compaction_bytes_read,
		(unsigned long long)s.compaction_bytes_written, (unsigned long long)s.manifest_bytes,
		(unsigned long long)s.live_bytes);
	fprintf(out, "  levels     :");
	for (int l = 0; l < KV_LSM_LEVELS; l++)
		fprintf(out, " L%d %u/%.1fMB", l, s.tables[l], (double)s.level_bytes[l] / 1048576.0);
	fprintf(out, "\n  writes     : %llu in %llu groups, %llu WAL syncs; %llu stalls (%.3f s); "
		"%llu flushes, %llu compactions\n",
		(unsigned long long)s.writes, (unsigned long long)s.write_groups,
		(unsigned long long)s.wal_syncs, (unsigned long long)s.stalls, (double)s.stall_ns / 1e9,
		(unsigned long long)s.flushes, (unsigned long long)s.compactions);
	fprintf(out, "  reads      : cache %llu hits %llu misses; %llu bloom skips\n",
		(unsigned long long)s.cache_hits, (unsigned long long)s.cache_misses,
		(unsigned long long)s.bloom_skips);
}

const struct bench_engine bench_engine_kvfs = {
	.name = "kvfs",
	.open = kvfs_open,
	.close = kvfs_close,
	.put = kvfs_put,
	.get = kvfs_get,
	.put_async = kvfs_put_async,
	.iter_new = kvfs_iter_new,
	.iter_seek_first = kvfs_iter_seek_first,
	.iter_seek = kvfs_iter_seek,
	.iter_valid = kvfs_iter_valid,
	.iter_next = kvfs_iter_next,
	.iter_key = kvfs_iter_key,
	.iter_value = kvfs_iter_value,
	.iter_status = kvfs_iter_status,
	.iter_free = kvfs_iter_free,
	.compact = kvfs_compact,
	.engine_io = kvfs_engine_io,
	.busy = kvfs_busy,
	.print_stats = kvfs_print_stats,
};
