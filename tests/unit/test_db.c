/*
 * test_db.c - the storage engine through its public API (lsm.h): writes,
 * reads, batches, iterators, snapshots, flushes, compactions, reopen,
 * asynchronous writes, and what open reports about damaged files.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tmpdir_fx.h"

#include "lsm/lsm.h"
#include "util/error.h"
#include "util/rng.h"

struct fixture {
	struct kv_vfs *vfs;
	struct kv_lsm_options opt;
	struct kv_lsm *db;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	f->vfs = kv_vfs_mem_new();
	kv_lsm_options_init(&f->opt);
	f->opt.vfs = f->vfs;
	f->opt.memtable_bytes = 64 << 10;
	f->opt.block_bytes = 1024;
	f->opt.table_bytes = 64 << 10;
	f->opt.level1_bytes = 256 << 10;
	f->opt.block_cache_bytes = 256 << 10;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->db)
		assert_int_equal(kv_lsm_close(f->db), 0);
	kv_vfs_destroy(f->vfs);
	free(f);
	return 0;
}

static void db_open(struct fixture *f)
{
	assert_int_equal(kv_lsm_open("/db", &f->opt, &f->db, NULL), 0);
}

static void db_reopen(struct fixture *f)
{
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	db_open(f);
}

static struct kv_slice S(const char *s)
{
	return kv_slice_str(s);
}

static void put(struct kv_lsm *db, const char *k, const char *v)
{
	assert_int_equal(kv_lsm_put(db, S(k), S(v)), 0);
}

static void expect(struct kv_lsm *db, const char *k, const char *v)
{
	struct kv_buf b = KV_BUF_INIT;
	int r = kv_lsm_get(db, NULL, S(k), &b);
	if (!v) {
		assert_int_equal(r, KV_ENOTFOUND);
	} else {
		assert_int_equal(r, 0);
		assert_int_equal(b.n, strlen(v));
		assert_memory_equal(b.p, v, b.n);
	}
	kv_buf_release(&b);
}

static void test_db__put_get_delete(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	expect(f->db, "a", NULL);
	put(f->db, "a", "1");
	put(f->db, "b", "2");
	expect(f->db, "a", "1");
	put(f->db, "a", "3");
	expect(f->db, "a", "3");
	assert_int_equal(kv_lsm_delete(f->db, S("a")), 0);
	expect(f->db, "a", NULL);
	expect(f->db, "b", "2");
	/* An empty key and an empty value are ordinary. */
	assert_int_equal(kv_lsm_put(f->db, kv_slice_make(NULL, 0), S("")), 0);
	expect(f->db, "", "");
}

/*
 * kv_lsm_get_cached never reads a file: what needs an uncached block is
 * -EAGAIN; everything it does answer is what kv_lsm_get answers.
 */
static void test_db__cached_get_answers_from_memory_or_says_eagain(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	char k[16], v[32];
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof k, "k%04d", i);
		snprintf(v, sizeof v, "value-%d", i);
		put(f->db, k, v);
	}
	assert_int_equal(kv_lsm_delete(f->db, S("k0007")), 0);
	assert_int_equal(kv_lsm_flush(f->db), 0);
	db_reopen(f); /* an empty block cache */
	put(f->db, "mem", "m");
	struct kv_buf b = KV_BUF_INIT;
	/* In the memtable: answered. */
	assert_int_equal(kv_lsm_get_cached(f->db, S("mem"), &b), 0);
	assert_int_equal(b.n, 1);
	/* In a table whose block is not cached: -EAGAIN, value empty. */
	assert_int_equal(kv_lsm_get_cached(f->db, S("k0100"), &b), -EAGAIN);
	assert_int_equal(b.n, 0);
	/* A blocking read brings the block in; then it is answered. */
	expect(f->db, "k0100", "value-100");
	assert_int_equal(kv_lsm_get_cached(f->db, S("k0100"), &b), 0);
	assert_int_equal(b.n, strlen("value-100"));
	assert_memory_equal(b.p, "value-100", b.n);
	/* Every answer it gives equals kv_lsm_get's. */
	int answered = 0;
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof k, "k%04d", i);
		int r = kv_lsm_get_cached(f->db, S(k), &b);
		if (r == -EAGAIN) {
			assert_int_equal(b.n, 0);
			continue;
		}
		answered++;
		snprintf(v, sizeof v, "value-%d", i);
		expect(f->db, k, i == 7 ? NULL : v);
		if (i == 7) {
			assert_int_equal(r, KV_ENOTFOUND);
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(b.n, strlen(v));
			assert_memory_equal(b.p, v, b.n);
		}
	}
	assert_true(answered > 0);
	/* After a full pass of blocking reads, every key is answered. */
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof k, "k%04d", i);
		snprintf(v, sizeof v, "value-%d", i);
		expect(f->db, k, i == 7 ? NULL : v);
		assert_int_not_equal(kv_lsm_get_cached(f->db, S(k), &b), -EAGAIN);
	}
	kv_buf_release(&b);
}

static void test_db__survives_reopen_from_wal_and_tables(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	put(f->db, "in-table", "t");
	assert_int_equal(kv_lsm_flush(f->db), 0);
	put(f->db, "in-wal", "w");
	assert_int_equal(kv_lsm_delete(f->db, S("in-table")), 0);
	db_reopen(f);
	expect(f->db, "in-table", NULL);
	expect(f->db, "in-wal", "w");
	db_reopen(f);
	expect(f->db, "in-wal", "w");
}

static void test_db__oversize_is_refused(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	size_t n = KV_LSM_MAX_KEY + 1;
	char *big = calloc(1, n);
	assert_int_equal(kv_lsm_put(f->db, kv_slice_make(big, n), S("v")), KV_ETOOBIG);
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	assert_int_equal(kv_lsm_batch_put(b, kv_slice_make(big, n), S("v")), KV_ETOOBIG);
	assert_int_equal(kv_lsm_batch_count(b), 0);
	kv_lsm_batch_free(b);
	free(big);
}

static void test_db__batch_is_atomic_across_reopen(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	struct kv_lsm_batch *b = kv_lsm_batch_new();
	put(f->db, "gone", "x");
	assert_int_equal(kv_lsm_batch_put(b, S("k1"), S("v1")), 0);
	assert_int_equal(kv_lsm_batch_put(b, S("k2"), S("v2")), 0);
	assert_int_equal(kv_lsm_batch_delete(b, S("gone")), 0);
	assert_int_equal(kv_lsm_batch_put(b, S("k1"), S("v1b")), 0); /* later wins */
	assert_int_equal(kv_lsm_batch_count(b), 4);
	assert_int_equal(kv_lsm_write(f->db, b), 0);
	kv_lsm_batch_free(b);
	expect(f->db, "k1", "v1b");
	expect(f->db, "k2", "v2");
	expect(f->db, "gone", NULL);
	db_reopen(f);
	expect(f->db, "k1", "v1b");
	expect(f->db, "gone", NULL);
}

/* Collects the iterator's keys into one comma-separated string. */
static void scan(struct kv_lsm *db, const struct kv_lsm_iter_options *o, const char *seek, char *out, size_t n)
{
	struct kv_iter *it = kv_lsm_iter(db, o);
	assert_non_null(it);
	if (seek)
		kv_iter_seek(it, S(seek));
	else
		kv_iter_seek_first(it);
	out[0] = 0;
	size_t len = 0;
	for (; kv_iter_valid(it); kv_iter_next(it)) {
		struct kv_slice k = kv_iter_key(it);
		len += (size_t)snprintf(out + len, n - len, "%s%.*s", len ? "," : "", (int)k.n, (const char *)k.p);
	}
	assert_int_equal(kv_iter_status(it), 0);
	kv_iter_destroy(it);
}

static void test_db__iterator_bounds_prefix_and_deletes(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	const char *keys[] = { "a", "b/1", "b/2", "b/3", "c", "d" };
	for (size_t i = 0; i < 6; i++)
		put(f->db, keys[i], "v");
	assert_int_equal(kv_lsm_flush(f->db), 0);
	assert_int_equal(kv_lsm_delete(f->db, S("b/2")), 0);
	put(f->db, "b/4", "v");
	char got[256];
	scan(f->db, NULL, NULL, got, sizeof got);
	assert_string_equal(got, "a,b/1,b/3,b/4,c,d");
	struct kv_lsm_iter_options o = { .prefix = S("b/") };
	scan(f->db, &o, NULL, got, sizeof got);
	assert_string_equal(got, "b/1,b/3,b/4");
	scan(f->db, &o, "b/2", got, sizeof got);
	assert_string_equal(got, "b/3,b/4");
	scan(f->db, &o, "a", got, sizeof got); /* below the prefix: clamped */
	assert_string_equal(got, "b/1,b/3,b/4");
	struct kv_lsm_iter_options r = { .lower = S("b/3"), .upper = S("d") };
	scan(f->db, &r, NULL, got, sizeof got);
	assert_string_equal(got, "b/3,b/4,c");
}

static void test_db__snapshot_sees_a_fixed_past(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	put(f->db, "k", "old");
	put(f->db, "x", "1");
	const struct kv_lsm_snapshot *snap = kv_lsm_snapshot(f->db);
	assert_non_null(snap);
	put(f->db, "k", "new");
	assert_int_equal(kv_lsm_delete(f->db, S("x")), 0);
	put(f->db, "y", "2");
	/* Flushing and compacting must keep what the snapshot sees. */
	assert_int_equal(kv_lsm_compact(f->db), 0);
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_lsm_get(f->db, snap, S("k"), &b), 0);
	assert_memory_equal(b.p, "old", 3);
	assert_int_equal(kv_lsm_get(f->db, snap, S("x"), &b), 0);
	assert_int_equal(kv_lsm_get(f->db, snap, S("y"), &b), KV_ENOTFOUND);
	char got[64];
	struct kv_lsm_iter_options o = { .snapshot = snap };
	scan(f->db, &o, NULL, got, sizeof got);
	assert_string_equal(got, "k,x");
	kv_buf_release(&b);
	kv_lsm_snapshot_release(f->db, snap);
	expect(f->db, "k", "new");
	expect(f->db, "x", NULL);
}

static void test_db__many_writes_flush_and_compact_into_levels(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	char k[32], v[128];
	for (int i = 0; i < 20000; i++) {
		snprintf(k, sizeof k, "key%08d", (i * 7919) % 20000);
		snprintf(v, sizeof v, "value-%d-%0100d", i, 0);
		put(f->db, k, v);
	}
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_true(st.flushes > 0);
	assert_int_equal(kv_lsm_compact(f->db), 0);
	kv_lsm_get_stats(f->db, &st);
	assert_int_equal(st.tables[0], 0);
	assert_true(st.compactions > 0);
	assert_true(st.live_bytes > 0);
	for (int i = 0; i < 20000; i += 97) {
		snprintf(k, sizeof k, "key%08d", (i * 7919) % 20000);
		snprintf(v, sizeof v, "value-%d-%0100d", i, 0);
		expect(f->db, k, v);
	}
	db_reopen(f);
	snprintf(k, sizeof k, "key%08d", (19999 * 7919) % 20000);
	snprintf(v, sizeof v, "value-%d-%0100d", 19999, 0);
	expect(f->db, k, v);
	/* Everything once, in order. */
	struct kv_iter *it = kv_lsm_iter(f->db, NULL);
	int n = 0;
	char prev[32] = "";
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), n++) {
		struct kv_slice key = kv_iter_key(it);
		assert_true(key.n < sizeof prev);
		char cur[32];
		memcpy(cur, key.p, key.n);
		cur[key.n] = 0;
		assert_true(strcmp(prev, cur) < 0);
		memcpy(prev, cur, sizeof cur);
	}
	assert_int_equal(kv_iter_status(it), 0);
	kv_iter_destroy(it);
	assert_int_equal(n, 20000);
}

static void test_db__compaction_drops_deleted_and_overwritten(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	char k[32];
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 2000; i++) {
			snprintf(k, sizeof k, "k%06d", i);
			put(f->db, k, "0123456789012345678901234567890123456789");
		}
	for (int i = 0; i < 2000; i += 2) {
		snprintf(k, sizeof k, "k%06d", i);
		assert_int_equal(kv_lsm_delete(f->db, S(k)), 0);
	}
	assert_int_equal(kv_lsm_compact(f->db), 0);
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	/* 1000 live keys of ~48 bytes: far below three copies of 2000. */
	assert_true(st.live_bytes < 1000 * 48 * 2);
	expect(f->db, "k000000", NULL);
	expect(f->db, "k000001", "0123456789012345678901234567890123456789");
}

struct async_state {
	pthread_mutex_t mu;
	int done, failed;
};

static void on_durable(void *arg, int status)
{
	struct async_state *s = arg;
	pthread_mutex_lock(&s->mu);
	s->done++;
	if (status)
		s->failed++;
	pthread_mutex_unlock(&s->mu);
}

static void test_db__async_writes_complete_once_each(void **state)
{
	struct fixture *f = *state;
	for (int det = 0; det < 2; det++) {
		f->opt.deterministic = det;
		db_open(f);
		struct async_state s = { .done = 0 };
		pthread_mutex_init(&s.mu, NULL);
		char k[32];
		for (int i = 0; i < 1000; i++) {
			struct kv_lsm_batch *b = kv_lsm_batch_new();
			snprintf(k, sizeof k, "async%04d", i);
			assert_int_equal(kv_lsm_batch_put(b, S(k), S("v")), 0);
			assert_int_equal(kv_lsm_write_async(f->db, b, on_durable, &s), 0);
		}
		/* close() waits for queued writes. */
		assert_int_equal(kv_lsm_close(f->db), 0);
		f->db = NULL;
		assert_int_equal(s.done, 1000);
		assert_int_equal(s.failed, 0);
		db_open(f);
		expect(f->db, "async0999", "v");
		struct kv_lsm_stats st;
		kv_lsm_get_stats(f->db, &st);
		assert_int_equal(kv_lsm_close(f->db), 0);
		f->db = NULL;
		pthread_mutex_destroy(&s.mu);
	}
}

struct here_state {
	pthread_t caller;
	int done, elsewhere, failed;
	pthread_mutex_t mu;
};

static void on_durable_here(void *arg, int status)
{
	struct here_state *s = arg;
	pthread_mutex_lock(&s->mu);
	s->done++;
	if (!pthread_equal(pthread_self(), s->caller))
		s->elsewhere++;
	if (status)
		s->failed++;
	pthread_mutex_unlock(&s->mu);
}

/* Queues @n deferred puts of @value under keys PREFIX0000... */
static void queue_deferred(struct kv_lsm *db, const char *prefix, int n, const char *value,
			   struct here_state *s)
{
	char k[32];
	for (int i = 0; i < n; i++) {
		struct kv_lsm_batch *b = kv_lsm_batch_new();
		snprintf(k, sizeof k, "%s%04d", prefix, i);
		assert_int_equal(kv_lsm_batch_put(b, S(k), S(value)), 0);
		assert_int_equal(kv_lsm_write_deferred(db, b, on_durable_here, s), 0);
	}
}

/* Waits (5 s at most) until @n callbacks have run. */
static void wait_done(struct here_state *s, int n)
{
	for (int i = 0; i < 5000; i++) {
		pthread_mutex_lock(&s->mu);
		int d = s->done;
		pthread_mutex_unlock(&s->mu);
		if (d == n)
			return;
		usleep(1000);
	}
}

/* Deferred writes are committed by the caller's kv_lsm_commit_here(), as
 * one group, with the callbacks on the caller's thread; kicked ones by the
 * commit thread. */
static void test_db__deferred_writes_commit_on_the_caller(void **state)
{
	struct fixture *f = *state;
	f->opt.sync = KV_SYNC_ALWAYS;
	db_open(f);
	struct here_state s = { .caller = pthread_self() };
	pthread_mutex_init(&s.mu, NULL);
	assert_int_equal(kv_lsm_commit_here(f->db), 0); /* nothing queued */
	struct kv_lsm_stats before, after;
	kv_lsm_get_stats(f->db, &before);
	queue_deferred(f->db, "here", 100, "v", &s);
	assert_int_equal(kv_lsm_commit_here(f->db), 1);
	/* Done before it returned, here, in one group and one sync. */
	assert_int_equal(s.done, 100);
	assert_int_equal(s.elsewhere, 0);
	assert_int_equal(s.failed, 0);
	kv_lsm_get_stats(f->db, &after);
	assert_int_equal(after.writes - before.writes, 100);
	assert_int_equal(after.write_groups - before.write_groups, 1);
	assert_int_equal(after.wal_syncs - before.wal_syncs, 1);
	expect(f->db, "here0000", "v");
	expect(f->db, "here0099", "v");

	/* Kicked: the commit thread takes them. */
	queue_deferred(f->db, "kick", 10, "w", &s);
	kv_lsm_commit_kick(f->db);
	wait_done(&s, 110);
	assert_int_equal(s.done, 110);
	assert_int_equal(s.elsewhere, 10);
	expect(f->db, "kick0009", "w");
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	pthread_mutex_destroy(&s.mu);
}

/* A deferred write nobody committed is committed by close, not lost or
 * waited for forever. */
static void test_db__close_commits_deferred_writes(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	struct here_state s = { .caller = pthread_self() };
	pthread_mutex_init(&s.mu, NULL);
	queue_deferred(f->db, "left", 20, "x", &s);
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	assert_int_equal(s.done, 20);
	assert_int_equal(s.failed, 0);
	db_open(f);
	expect(f->db, "left0019", "x");
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	pthread_mutex_destroy(&s.mu);
}

/* Under the batch policy the group waits for other writers, who may be on
 * the caller's thread: kv_lsm_commit_here() hands it to the commit thread. */
static void test_db__commit_here_declines_under_batch_sync(void **state)
{
	struct fixture *f = *state;
	f->opt.sync = KV_SYNC_BATCH;
	f->opt.sync_batch_ms = 1;
	db_open(f);
	struct here_state s = { .caller = pthread_self() };
	pthread_mutex_init(&s.mu, NULL);
	queue_deferred(f->db, "batched", 1, "v", &s);
	assert_int_equal(kv_lsm_commit_here(f->db), 0);
	wait_done(&s, 1);
	assert_int_equal(s.done, 1);
	assert_int_equal(s.elsewhere, 1);
	assert_int_equal(s.failed, 0);
	expect(f->db, "batched0000", "v");
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	pthread_mutex_destroy(&s.mu);
}

struct writer_arg {
	struct kv_lsm *db;
	int id;
};

static void *writer_main(void *p)
{
	struct writer_arg *a = p;
	char k[32];
	for (int i = 0; i < 500; i++) {
		snprintf(k, sizeof k, "t%d-%04d", a->id, i);
		if (kv_lsm_put(a->db, S(k), S(k)))
			return (void *)1;
	}
	return NULL;
}

static void test_db__concurrent_writers_share_syncs(void **state)
{
	struct fixture *f = *state;
	f->opt.sync = KV_SYNC_ALWAYS;
	db_open(f);
	pthread_t t[8];
	struct writer_arg a[8];
	for (int i = 0; i < 8; i++) {
		a[i] = (struct writer_arg){ f->db, i };
		pthread_create(&t[i], NULL, writer_main, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		assert_null(ret);
	}
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_int_equal(st.writes, 4000);
	assert_true(st.write_groups <= 4000);
	assert_true(st.wal_syncs == st.write_groups);
	expect(f->db, "t7-0499", "t7-0499");
}

static void test_db__second_open_is_refused(void **state)
{
	struct fixture *f = *state;
	db_open(f);
	struct kv_lsm *other = NULL;
	assert_int_equal(kv_lsm_open("/db", &f->opt, &other, NULL), KV_EBUSY);
	assert_null(other);
}

static void test_db__parse_sync_policy(void **state)
{
	(void)state;
	enum kv_sync_mode m;
	unsigned ms = 0;
	assert_int_equal(kv_lsm_parse_sync("always", &m, &ms), 0);
	assert_int_equal(m, KV_SYNC_ALWAYS);
	assert_int_equal(kv_lsm_parse_sync("none", &m, &ms), 0);
	assert_int_equal(m, KV_SYNC_NONE);
	assert_int_equal(kv_lsm_parse_sync("batch:5", &m, &ms), 0);
	assert_int_equal(m, KV_SYNC_BATCH);
	assert_int_equal(ms, 5);
	assert_int_equal(kv_lsm_parse_sync("batch:", &m, &ms), KV_EINVAL);
	assert_int_equal(kv_lsm_parse_sync("batch:x", &m, &ms), KV_EINVAL);
	assert_int_equal(kv_lsm_parse_sync("sometimes", &m, &ms), KV_EINVAL);
}

static void test_db__corrupt_table_is_quarantined_not_served(void **state)
{
	struct fixture *f = *state;
	f->opt.block_cache_bytes = 0;
	db_open(f);
	put(f->db, "a", "in a table that will rot");
	assert_int_equal(kv_lsm_flush(f->db), 0);
	put(f->db, "b", "in the log");
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
	/* Rot a byte in the middle of every table. */
	char **names;
	size_t n;
	assert_int_equal(kv_vfs_list(f->vfs, "/db", &names, &n), 0);
	int rotted = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		if (len > 4 && !strcmp(names[i] + len - 4, ".sst")) {
			char path[256];
			snprintf(path, sizeof path, "/db/%s", names[i]);
			assert_int_equal(kv_vfs_mem_flip_bit(f->vfs, path, 10, 3), 0);
			rotted++;
		}
	}
	kv_vfs_names_free(names, n);
	assert_true(rotted > 0);
	struct kv_lsm_open_report rep;
	assert_int_equal(kv_lsm_open("/db", &f->opt, &f->db, &rep), 0);
	expect(f->db, "b", "in the log");
	/* Either open found it (quarantined) or the read does (KV_ECORRUPT);
	 * the rotten value is never returned. */
	struct kv_buf b = KV_BUF_INIT;
	int r = kv_lsm_get(f->db, NULL, S("a"), &b);
	assert_true(r == KV_ECORRUPT || r == KV_ENOTFOUND);
	if (r == KV_ENOTFOUND)
		assert_true(rep.tables_quarantined > 0 && rep.possible_loss);
	kv_buf_release(&b);
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_true(st.quarantined > 0 || rep.tables_quarantined > 0);
	assert_int_equal(kv_vfs_exists(f->vfs, "/db/quarantine"), 0);
}

/* A fresh directory on the real file system, under $TMPDIR or /tmp. */
static void posix_dir_make(char *dir, size_t n)
{
	assert_true(kv_test_mkdtemp(dir, n, "kvfs-test-db"));
}

static void posix_dir_remove(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* On the real file system tables are read through mmap: same checks. */
static void test_db__mapped_blocks_in_memory_answer_cached_gets(void **state)
{
	(void)state;
	char dir[512];
	posix_dir_make(dir, sizeof dir);
	struct kv_lsm_options o;
	kv_lsm_options_init(&o);
	o.block_bytes = 512;
	o.block_cache_bytes = 0; /* no block cache: only the page cache holds blocks */
	struct kv_lsm *db = NULL;
	assert_int_equal(kv_lsm_open(dir, &o, &db, NULL), 0);
	char k[32], v[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof k, "key%05d", i);
		snprintf(v, sizeof v, "value%05d", i);
		assert_int_equal(kv_lsm_put(db, S(k), S(v)), 0);
	}
	assert_int_equal(kv_lsm_flush(db), 0);
	assert_int_equal(kv_lsm_close(db), 0);
	assert_int_equal(kv_lsm_open(dir, &o, &db, NULL), 0);
	/* The table was just written: its pages are in memory, so cached gets
	 * answer from it (before, with no block cache, all were -EAGAIN), and
	 * every answer is kv_lsm_get's. */
	struct kv_buf b = KV_BUF_INIT;
	int answered = 0;
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof k, "key%05d", i);
		snprintf(v, sizeof v, "value%05d", i);
		int r = kv_lsm_get_cached(db, S(k), &b);
		if (r == -EAGAIN) {
			assert_int_equal(b.n, 0);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(b.n, strlen(v));
		assert_memory_equal(b.p, v, b.n);
		answered++;
	}
	assert_true(answered > 1000);
	assert_int_equal(kv_lsm_get_cached(db, S("key99999"), &b), KV_ENOTFOUND);
	kv_buf_release(&b);
	assert_int_equal(kv_lsm_close(db), 0);
	posix_dir_remove(dir);
}

static void test_db__mapped_tables_read_and_reject_rot(void **state)
{
	(void)state;
	char dir[512];
	posix_dir_make(dir, sizeof dir);
	struct kv_lsm_options o;
	kv_lsm_options_init(&o);
	o.block_bytes = 512;
	struct kv_lsm *db = NULL;
	assert_int_equal(kv_lsm_open(dir, &o, &db, NULL), 0);
	char k[32], v[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof k, "key%05d", i);
		snprintf(v, sizeof v, "value%05d-%020d", i, i);
		assert_int_equal(kv_lsm_put(db, S(k), S(v)), 0);
	}
	assert_int_equal(kv_lsm_flush(db), 0);
	expect(db, "key01234", "value01234-00000000000000001234");
	assert_int_equal(kv_lsm_close(db), 0);

	/* Rot one byte in the middle of the (only) table. */
	char **names;
	size_t n;
	char path[1024] = "";
	assert_int_equal(kv_vfs_list(kv_vfs_posix(), dir, &names, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strstr(names[i], ".sst"))
			snprintf(path, sizeof path, "%s/%s", dir, names[i]);
	kv_vfs_names_free(names, n);
	assert_true(path[0]);
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 4000, SEEK_SET), 0);
	int c = fgetc(fp);
	assert_int_equal(fseek(fp, 4000, SEEK_SET), 0);
	fputc(c ^ 0x10, fp);
	fclose(fp);

	struct kv_lsm_open_report rep;
	assert_int_equal(kv_lsm_open(dir, &o, &db, &rep), 0);
	int bad = 0, good = 0;
	struct kv_buf b = KV_BUF_INIT;
	for (int i = 0; i < 2000; i++) {
		snprintf(k, sizeof k, "key%05d", i);
		snprintf(v, sizeof v, "value%05d-%020d", i, i);
		int r = kv_lsm_get(db, NULL, S(k), &b);
		if (r == 0) {
			assert_int_equal(b.n, strlen(v)); /* never a wrong value */
			assert_memory_equal(b.p, v, b.n);
			good++;
		} else {
			assert_true(r == KV_ECORRUPT || r == KV_ENOTFOUND);
			bad++;
		}
	}
	kv_buf_release(&b);
	assert_true(bad > 0);
	assert_int_equal(kv_lsm_close(db), 0);
	posix_dir_remove(dir);
	(void)good;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_db__put_get_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__cached_get_answers_from_memory_or_says_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__survives_reopen_from_wal_and_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__oversize_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__batch_is_atomic_across_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__iterator_bounds_prefix_and_deletes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__snapshot_sees_a_fixed_past, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__many_writes_flush_and_compact_into_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__compaction_drops_deleted_and_overwritten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__async_writes_complete_once_each, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__concurrent_writers_share_syncs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__deferred_writes_commit_on_the_caller, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__commit_here_declines_under_batch_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__close_commits_deferred_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db__second_open_is_refused, setup, teardown),
		cmocka_unit_test(test_db__parse_sync_policy),
		cmocka_unit_test_setup_teardown(test_db__corrupt_table_is_quarantined_not_served, setup, teardown),
		cmocka_unit_test(test_db__mapped_blocks_in_memory_answer_cached_gets),
		cmocka_unit_test(test_db__mapped_tables_read_and_reject_rot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
