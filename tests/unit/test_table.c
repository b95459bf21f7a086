/*
 * test_table.c - SSTables written and read back: round trips of many shapes
 * (0 to 100k entries, values up to 1 MiB, keys with NUL bytes, several
 * versions a key), reads at snapshots, iterator seeks, the bloom filter and
 * the block cache in use, the builder's size tracking and sticky write
 * errors, many readers at once.
 * Format: doc/storage-format.md#sstables
 *
 * The model and the environment: table_fx.h. Damaged tables:
 * test_table_corrupt.c.
 *
 * With KV_CORPUS_OUT=DIR set, the seed corpus for tests/fuzz/fuzz_table.c is
 * (re)written into DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/slice.h"

#include "table_fx.h"

/* ---- checking a table against its model ------------------------------------------ */

static void check_scan(struct kv_table *t, const struct model *m, bool fill_cache)
{
	struct kv_iter *it = kv_table_iter(t, fill_cache);
	assert_non_null(it);
	assert_false(kv_iter_valid(it));
	size_t i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
		assert_true(i < m->n);
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m->e[i].ikey)));
		assert_true(kv_slice_eq(kv_iter_value(it), kv_buf_slice(&m->e[i].value)));
	}
	assert_int_equal(kv_iter_status(it), 0);
	assert_int_equal(i, m->n);
	kv_iter_destroy(it);
}

static void check_get(struct kv_table *t, const struct model *m, struct kv_slice ukey,
		      uint64_t snap)
{
	enum kv_entry_type type = (enum kv_entry_type)7;
	struct kv_buf v = KV_BUF_INIT;
	kv_buf_append(&v, "junk", 4);
	int r = kv_table_get(t, ukey, snap, &type, &v);
	long want = model_get(m, ukey, snap);
	if (want < 0) {
		assert_int_equal(r, 0);
		assert_int_equal(type, 7);
		assert_int_equal(v.n, 4);
	} else {
		assert_int_equal(r, 1);
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		assert_int_equal(kv_ikey_parse(kv_buf_slice(&m->e[want].ikey), &k), 0);
		assert_int_equal(type, k.type);
		assert_true(kv_slice_eq(kv_buf_slice(&v), kv_buf_slice(&m->e[want].value)));
	}
	kv_buf_release(&v);
}

/* Gets every key at its versions' sequences and around them, plus absent keys. */
static void check_gets(struct kv_table *t, const struct model *m, struct kv_rng *rng,
		       size_t max_checks)
{
	size_t step = m->n > max_checks ? m->n / max_checks : 1;
	for (size_t i = 0; i < m->n; i += step) {
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		assert_int_equal(kv_ikey_parse(kv_buf_slice(&m->e[i].ikey), &k), 0);
		check_get(t, m, k.ukey, KV_SEQ_MAX);
		check_get(t, m, k.ukey, k.seq);
		check_get(t, m, k.ukey, k.seq - 1);
		check_get(t, m, k.ukey, k.seq + 1);
		check_get(t, m, k.ukey, 0);
		/* Neighbours: a prefix and an extension of the key. */
		if (k.ukey.n)
			check_get(t, m, kv_slice_make(k.ukey.p, k.ukey.n - 1), KV_SEQ_MAX);
		struct kv_buf ext = KV_BUF_INIT;
		kv_buf_append(&ext, k.ukey.p, k.ukey.n);
		kv_buf_append_u8(&ext, 0);
		check_get(t, m, kv_buf_slice(&ext), KV_SEQ_MAX);
		kv_buf_release(&ext);
	}
	for (size_t i = 0; i < 200; i++) {
		struct kv_buf k = KV_BUF_INIT;
		make_user_key(rng, &k);
		check_get(t, m, kv_buf_slice(&k), kv_rng_below(rng, 2) ? KV_SEQ_MAX
								    : kv_rng_below(rng, 1000000));
		kv_buf_release(&k);
	}
	check_get(t, m, kv_slice_make(NULL, 0), KV_SEQ_MAX);
	check_get(t, m, kv_slice_str("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), KV_SEQ_MAX);
}

static void check_seeks(struct kv_table *t, const struct model *m, struct kv_rng *rng,
			size_t max_checks)
{
	struct kv_iter *it = kv_table_iter(t, true);
	assert_non_null(it);
	size_t step = m->n > max_checks ? m->n / max_checks : 1;
	for (size_t i = 0; i < m->n; i += step) {
		/* To a key, then walk a few. */
		kv_iter_seek(it, kv_buf_slice(&m->e[i].ikey));
		for (size_t j = i; j < i + 3 && j < m->n; j++) {
			assert_true(kv_iter_valid(it));
			assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m->e[j].ikey)));
			assert_true(kv_slice_eq(kv_iter_value(it), kv_buf_slice(&m->e[j].value)));
			kv_iter_next(it);
		}
		/* To a user key at a random snapshot: the first version <= it. */
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		kv_ikey_parse(kv_buf_slice(&m->e[i].ikey), &k);
		struct kv_buf target = KV_BUF_INIT;
		uint64_t snap = kv_rng_below(rng, 1000002);
		kv_ikey_append(&target, k.ukey, snap, KV_TYPE_SEEK);
		kv_iter_seek(it, kv_buf_slice(&target));
		size_t lo = 0, hi = m->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (kv_ikey_cmp(kv_buf_slice(&m->e[mid].ikey), kv_buf_slice(&target)) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < m->n) {
			assert_true(kv_iter_valid(it));
			assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m->e[lo].ikey)));
		} else {
			assert_false(kv_iter_valid(it));
		}
		kv_buf_release(&target);
	}
	/* Before everything and past everything. */
	kv_iter_seek(it, kv_slice_make(NULL, 0));
	assert_int_equal(kv_iter_valid(it), m->n > 0);
	if (m->n)
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m->e[0].ikey)));
	uint8_t past[40];
	memset(past, 0xff, sizeof past);
	kv_iter_seek(it, kv_slice_make(past, sizeof past));
	assert_false(kv_iter_valid(it));
	/* A seek after reaching the end works again. */
	kv_iter_seek_first(it);
	assert_int_equal(kv_iter_valid(it), m->n > 0);
	assert_int_equal(kv_iter_status(it), 0);
	kv_iter_destroy(it);
}

static void check_table(struct kv_table *t, const struct model *m, struct kv_rng *rng,
			size_t max_checks)
{
	assert_int_equal(kv_table_entries(t), m->n);
	if (m->n) {
		assert_true(kv_slice_eq(kv_table_smallest(t), kv_buf_slice(&m->e[0].ikey)));
		assert_true(kv_slice_eq(kv_table_largest(t), kv_buf_slice(&m->e[m->n - 1].ikey)));
	} else {
		assert_int_equal(kv_table_smallest(t).n, 0);
		assert_int_equal(kv_table_largest(t).n, 0);
	}
	uint64_t dels = 0, kbytes = 0, vbytes = 0;
	for (size_t i = 0; i < m->n; i++) {
		dels += (kv_ikey_trailer(kv_buf_slice(&m->e[i].ikey)) & 0xff) == KV_TYPE_DEL;
		kbytes += m->e[i].ikey.n;
		vbytes += m->e[i].value.n;
	}
	assert_int_equal(kv_table_deletes(t), dels);
	assert_int_equal(kv_table_raw_key_bytes(t), kbytes);
	assert_int_equal(kv_table_raw_value_bytes(t), vbytes);
	check_scan(t, m, true);
	check_scan(t, m, false);
	check_gets(t, m, rng, max_checks);
	check_seeks(t, m, rng, max_checks);
}

/* Writes @m with @o, opens it, checks everything. */
static void round_trip(const char *name, const struct shape *s, const struct kv_table_options *o,
		       size_t cache_bytes, size_t max_checks)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(name));
	struct model m = make_model(&rng, s);
	struct env env;
	env_init(&env, cache_bytes);
	uint64_t size = write_table(&env, "t.sst", &m, o);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 42, &t), 0);
	assert_int_equal(kv_table_file_number(t), 42);
	assert_int_equal(kv_table_file_size(t), size);
	assert_int_equal(kv_table_has_filter(t), !o || o->bloom_bits_per_key > 0);
	check_table(t, &m, &rng, max_checks);
	kv_table_unref(t);
	env_release(&env);
	free_model(&m);
}

/* ---- round trips --------------------------------------------------------------------- */

static void test_table__empty_table_round_trips(void **state)
{
	(void)state;
	struct shape s = { 0, 1, 0, 0 };
	round_trip("test_table__empty_table_round_trips", &s, NULL, 1 << 20, 1000);
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.bloom_bits_per_key = 0;
	round_trip("test_table__empty_table_round_trips", &s, &o, 0, 1000);
}

static void test_table__single_entry_round_trips(void **state)
{
	(void)state;
	struct shape s = { 1, 1, 100, 0 };
	round_trip("test_table__single_entry_round_trips", &s, NULL, 1 << 20, 1000);
	s.versions = 3;
	round_trip("test_table__single_entry_round_trips", &s, NULL, 0, 1000);
}

static void test_table__thousand_entries_round_trip_in_every_configuration(void **state)
{
	(void)state;
	struct shape s = { 1000, 3, 300, 0 };
	for (int compress = 0; compress < 2; compress++) {
		for (int cache = 0; cache < 2; cache++) {
			for (int bloom = 0; bloom < 2; bloom++) {
				struct kv_table_options o;
				kv_table_options_init(&o);
				o.compress = compress;
				o.bloom_bits_per_key = bloom ? 10 : 0;
				o.block_bytes = 1024; /* many blocks */
				round_trip("test_table__thousand_entries_round_trip_in_every_configuration",
					   &s, &o, cache ? 1 << 20 : 0, 100000);
			}
		}
	}
	/* Restart interval 1 and the default block size. */
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.restart_interval = 1;
	round_trip("test_table__thousand_entries_round_trip_in_every_configuration", &s, &o,
		   1 << 20, 100000);
}

static void test_table__hundred_thousand_entries_round_trip(void **state)
{
	(void)state;
	struct shape s = { 100000, 2, 64, 0 };
	round_trip("test_table__hundred_thousand_entries_round_trip", &s, NULL, 4 << 20, 20000);
}

static void test_table__values_up_to_one_mebibyte_round_trip(void **state)
{
	(void)state;
	struct shape s = { 300, 2, 5000, 1 << 20 };
	round_trip("test_table__values_up_to_one_mebibyte_round_trip", &s, NULL, 8 << 20, 100000);
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.compress = false;
	round_trip("test_table__values_up_to_one_mebibyte_round_trip", &s, &o, 0, 100000);
}

static void test_table__get_honours_snapshots(void **state)
{
	(void)state;
	/* "k" at 10 (put "a"), 20 (delete), 30 (put "c"). */
	struct model m = { calloc(3, sizeof(struct ent)), 3, 30 };
	const uint64_t seqs[] = { 30, 20, 10 };
	const char *vals[] = { "c", "", "a" };
	for (int i = 0; i < 3; i++) {
		kv_ikey_append(&m.e[i].ikey, kv_slice_str("k"), seqs[i],
			       i == 1 ? KV_TYPE_DEL : KV_TYPE_PUT);
		kv_buf_append(&m.e[i].value, vals[i], strlen(vals[i]));
	}
	struct env env;
	env_init(&env, 0);
	write_table(&env, "t.sst", &m, NULL);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	struct kv_buf v = KV_BUF_INIT;
	enum kv_entry_type type;
	assert_int_equal(kv_table_get(t, kv_slice_str("k"), 9, &type, &v), 0);
	assert_int_equal(kv_table_get(t, kv_slice_str("k"), 10, &type, &v), 1);
	assert_int_equal(type, KV_TYPE_PUT);
	assert_true(kv_slice_eq(kv_buf_slice(&v), kv_slice_str("a")));
	assert_int_equal(kv_table_get(t, kv_slice_str("k"), 25, &type, &v), 1);
	assert_int_equal(type, KV_TYPE_DEL);
	assert_int_equal(v.n, 0);
	assert_int_equal(kv_table_get(t, kv_slice_str("k"), 30, &type, &v), 1);
	assert_true(kv_slice_eq(kv_buf_slice(&v), kv_slice_str("c")));
	assert_int_equal(kv_table_get(t, kv_slice_str("k"), UINT64_MAX, &type, &v), 1);
	assert_true(kv_slice_eq(kv_buf_slice(&v), kv_slice_str("c")));
	assert_int_equal(kv_table_get(t, kv_slice_str("j"), UINT64_MAX, &type, &v), 0);
	assert_int_equal(kv_table_get(t, kv_slice_make("k\0", 2), UINT64_MAX, &type, &v), 0);
	kv_buf_release(&v);
	kv_table_unref(t);
	env_release(&env);
	free_model(&m);
}

static void test_table__bloom_filter_skips_absent_keys(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_table__bloom_filter_skips_absent_keys"));
	struct shape s = { 5000, 1, 10, 0 };
	struct model m = make_model(&rng, &s);
	struct env env;
	env_init(&env, 1 << 20);
	write_table(&env, "t.sst", &m, NULL);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	struct kv_buf v = KV_BUF_INIT;
	enum kv_entry_type type;
	long absent = 0;
	for (int i = 0; i < 10000; i++) {
		char k[32];
		int n = snprintf(k, sizeof k, "absent-%d", i);
		assert_int_equal(kv_table_get(t, kv_slice_make(k, (size_t)n), KV_SEQ_MAX, &type, &v), 0);
		absent++;
	}
	uint64_t skips = atomic_load(&env.stats.bloom_skips);
	printf("# bloom skipped %llu of %ld absent keys\n", (unsigned long long)skips, absent);
	assert_true(skips >= (uint64_t)absent * 97 / 100);
	assert_int_equal(atomic_load(&env.stats.bloom_checks), absent);
	/* Present keys are never skipped, hashed here or by the caller. */
	for (size_t i = 0; i < m.n; i++) {
		struct kv_slice u = kv_ikey_user(kv_buf_slice(&m.e[i].ikey));
		assert_int_equal(kv_table_get(t, u, KV_SEQ_MAX, &type, &v), 1);
		assert_int_equal(kv_table_get_hashed(t, u, kv_table_key_hash(u), KV_SEQ_MAX,
						     &type, &v), 1);
	}
	assert_int_equal(atomic_load(&env.stats.bloom_skips), skips);
	assert_int_equal(kv_table_get_hashed(t, kv_slice_str("absent-1"),
					     kv_table_key_hash(kv_slice_str("absent-1")),
					     KV_SEQ_MAX, &type, &v), 0);
	kv_buf_release(&v);
	kv_table_unref(t);
	env_release(&env);
	free_model(&m);
}

static void test_table__cache_serves_repeated_reads(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_table__cache_serves_repeated_reads"));
	struct shape s = { 3000, 1, 100, 0 };
	struct model m = make_model(&rng, &s);
	struct env env;
	env_init(&env, 16 << 20);
	write_table(&env, "t.sst", &m, NULL);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	/* A scan without fill_cache leaves the cache empty. */
	check_scan(t, &m, false);
	struct kv_cache_stats cs;
	kv_cache_get_stats(env.cache, &cs);
	assert_int_equal(cs.entries, 0);
	uint64_t blocks = atomic_load(&env.stats.block_reads);
	assert_true(blocks > 1);
	/* Gets fill it; a second round reads nothing from the file. */
	struct kv_buf v = KV_BUF_INIT;
	enum kv_entry_type type;
	for (size_t i = 0; i < m.n; i++)
		kv_table_get(t, kv_ikey_user(kv_buf_slice(&m.e[i].ikey)), KV_SEQ_MAX, &type, &v);
	kv_cache_get_stats(env.cache, &cs);
	assert_int_equal(cs.entries, blocks);
	uint64_t after_first = atomic_load(&env.stats.block_reads);
	for (size_t i = 0; i < m.n; i++)
		kv_table_get(t, kv_ikey_user(kv_buf_slice(&m.e[i].ikey)), KV_SEQ_MAX, &type, &v);
	check_scan(t, &m, false);
	assert_int_equal(atomic_load(&env.stats.block_reads), after_first);
	/* Dropping the file's blocks sends reads back to the file. */
	kv_cache_erase_file(env.cache, 1);
	kv_table_get(t, kv_ikey_user(kv_buf_slice(&m.e[0].ikey)), KV_SEQ_MAX, &type, &v);
	assert_int_equal(atomic_load(&env.stats.block_reads), after_first + 1);
	kv_buf_release(&v);
	kv_table_unref(t);
	env_release(&env);
	free_model(&m);
}

static void test_table__iterator_keeps_the_table_alive(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_table__iterator_keeps_the_table_alive"));
	struct shape s = { 500, 2, 50, 0 };
	struct model m = make_model(&rng, &s);
	struct env env;
	env_init(&env, 0);
	write_table(&env, "t.sst", &m, NULL);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	struct kv_iter *it = kv_table_iter(t, false);
	kv_table_unref(t); /* the iterator's reference remains */
	size_t i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it))
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&m.e[i++].ikey)));
	assert_int_equal(i, m.n);
	kv_iter_destroy(it);
	env_release(&env);
	free_model(&m);
}

static void test_table__builder_tracks_size_and_separators_stay_short(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env.vfs, "t.sst", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.block_bytes = 4096;
	o.compress = false;
	struct kv_table_builder *b;
	assert_int_equal(kv_table_builder_new(f, &o, &b), 0);
	assert_int_equal(kv_table_builder_file_size(b), 0);
	assert_int_equal(kv_table_builder_smallest(b).n, 0);
	uint8_t value[100] = { 0 };
	uint64_t last = 0;
	for (int i = 0; i < 2000; i++) {
		/* Long keys with long shared prefixes: separators cut them short. */
		char k[128];
		int n = snprintf(k, sizeof k, "some/rather/long/common/prefix/of/a/path/%08d", i * 7);
		struct kv_buf ik = KV_BUF_INIT;
		kv_ikey_append(&ik, kv_slice_make(k, (size_t)n), 5, KV_TYPE_PUT);
		assert_int_equal(kv_table_builder_add(b, kv_buf_slice(&ik), kv_slice_make(value, 100)), 0);
		kv_buf_release(&ik);
		uint64_t sz = kv_table_builder_file_size(b);
		assert_true(sz >= last);
		last = sz;
	}
	uint64_t size;
	assert_int_equal(kv_table_builder_finish(b, &size), 0);
	kv_table_builder_free(b);
	kv_file_close(f);
	assert_true(size >= last);
	assert_true(size < last + 8192);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	/* offset_of grows with the key. */
	uint64_t prev = 0;
	for (int i = 0; i < 2000; i += 50) {
		char k[128];
		int n = snprintf(k, sizeof k, "some/rather/long/common/prefix/of/a/path/%08d", i * 7);
		struct kv_buf ik = KV_BUF_INIT;
		kv_ikey_append(&ik, kv_slice_make(k, (size_t)n), 5, KV_TYPE_PUT);
		uint64_t off = kv_table_offset_of(t, kv_buf_slice(&ik));
		assert_true(off >= prev);
		prev = off;
		kv_buf_release(&ik);
	}
	assert_true(prev > 200000);
	kv_table_unref(t);
	env_release(&env);
}

static void test_table__write_errors_are_sticky(void **state)
{
	(void)state;
	struct env env;
	env_init(&env, 0);
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(env.vfs, "t.sst", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	struct kv_table_options o;
	kv_table_options_init(&o);
	o.block_bytes = 256;
	struct kv_table_builder *b;
	assert_int_equal(kv_table_builder_new(f, &o, &b), 0);
	kv_vfs_mem_fail_next(env.vfs, 1, -ENOSPC);
	int r = 0;
	/* Blocks reach the file 64 KiB at a time: the first write is a few
	 * thousand entries in. */
	for (int i = 0; i < 20000 && !r; i++) {
		struct kv_buf ik = KV_BUF_INIT;
		char k[16];
		int n = snprintf(k, sizeof k, "k%05d", i);
		kv_ikey_append(&ik, kv_slice_make(k, (size_t)n), 1, KV_TYPE_PUT);
		r = kv_table_builder_add(b, kv_buf_slice(&ik), kv_slice_str("0123456789abcdef"));
		kv_buf_release(&ik);
	}
	assert_int_equal(r, -ENOSPC);
	uint64_t size = 12345;
	assert_int_equal(kv_table_builder_finish(b, &size), -ENOSPC);
	assert_int_equal(size, 12345);
	kv_table_builder_free(b);
	kv_file_close(f);
	env_release(&env);
}

/* ---- many readers at once ---------------------------------------------------------- */

struct reader {
	struct kv_table *t;
	const struct model *m;
	uint64_t seed;
	long wrong;
};

static void *read_many(void *arg)
{
	struct reader *r = arg;
	struct kv_rng rng;
	kv_rng_seed(&rng, r->seed);
	struct kv_buf v = KV_BUF_INIT;
	for (int i = 0; i < 20000; i++) {
		size_t j = (size_t)kv_rng_below(&rng, r->m->n);
		const struct ent *e = &r->m->e[j];
		struct kv_ikey k = { { NULL, 0 }, 0, KV_TYPE_DEL };
		kv_ikey_parse(kv_buf_slice(&e->ikey), &k);
		enum kv_entry_type type;
		long want = model_get(r->m, k.ukey, k.seq);
		int got = kv_table_get(r->t, k.ukey, k.seq, &type, &v);
		if (got != 1 || want != (long)j || type != k.type ||
		    (type == KV_TYPE_PUT && !kv_slice_eq(kv_buf_slice(&v), kv_buf_slice(&e->value))))
			r->wrong++;
		if (i % 1000 == 0) { /* and a short scan now and then */
			struct kv_iter *it = kv_table_iter(r->t, i % 2000 == 0);
			kv_iter_seek(it, kv_buf_slice(&e->ikey));
			for (size_t n = j; n < j + 50 && n < r->m->n; n++, kv_iter_next(it))
				if (!kv_iter_valid(it) ||
				    !kv_slice_eq(kv_iter_key(it), kv_buf_slice(&r->m->e[n].ikey)))
					r->wrong++;
			kv_iter_destroy(it);
		}
	}
	kv_buf_release(&v);
	return NULL;
}

static void test_table__many_threads_read_one_table(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_table__many_threads_read_one_table");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct shape s = { 20000, 2, 100, 0 };
	struct model m = make_model(&rng, &s);
	struct env env;
	env_init(&env, 256 << 10); /* smaller than the table: evictions while reading */
	write_table(&env, "t.sst", &m, NULL);
	struct kv_table *t;
	assert_int_equal(open_table(&env, "t.sst", 1, &t), 0);
	enum { N = 4 };
	pthread_t th[N];
	struct reader r[N];
	for (int i = 0; i < N; i++) {
		r[i] = (struct reader){ t, &m, seed + 1 + (uint64_t)i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, read_many, &r[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].wrong, 0);
	}
	struct kv_cache_stats cs;
	kv_cache_get_stats(env.cache, &cs);
	assert_true(cs.hits > 0);
	assert_true(cs.evictions > 0);
	assert_int_equal(cs.pinned, 0);
	kv_table_unref(t);
	env_release(&env);
	free_model(&m);
}

/* ---- the fuzz seed corpus ---------------------------------------------------------- */

static void write_seed(struct env *env, const char *dir, const char *name, const struct model *m,
		       const struct kv_table_options *o)
{
	write_table(env, "seed.sst", m, o);
	struct kv_buf bytes = KV_BUF_INIT;
	read_file(env, "seed.sst", &bytes);
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes.p, 1, bytes.n, f), bytes.n);
	assert_int_equal(fclose(f), 0);
	kv_buf_release(&bytes);
}

static void test_table__writes_fuzz_seed_corpus(void **state)
{
	(void)state;
	const char *dir = getenv("KV_CORPUS_OUT");
	if (!dir)
		skip();
	struct env env;
	env_init(&env, 0);
	struct kv_rng rng;
	kv_rng_seed(&rng, 2024);
	struct kv_table_options o;
	kv_table_options_init(&o);
	struct shape s = { 0, 1, 0, 0 };
	struct model m = make_model(&rng, &s);
	write_seed(&env, dir, "empty.sst", &m, &o);
	free_model(&m);
	s = (struct shape){ 1, 1, 8, 0 };
	m = make_model(&rng, &s);
	write_seed(&env, dir, "one.sst", &m, &o);
	free_model(&m);
	/* Several small blocks of each kind. */
	s = (struct shape){ 24, 3, 24, 0 };
	m = make_model(&rng, &s);
	o.block_bytes = 256;
	write_seed(&env, dir, "small-lz4.sst", &m, &o);
	o.compress = false;
	o.bloom_bits_per_key = 0;
	write_seed(&env, dir, "small-raw-nofilter.sst", &m, &o);
	o.restart_interval = 1;
	o.bloom_bits_per_key = 4;
	write_seed(&env, dir, "small-restart1.sst", &m, &o);
	free_model(&m);
	env_release(&env);
}

int main(void)
{
	/* Only errors reach the log, as in test_table_corrupt.c. */
	kv_log_set_level(KV_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table__empty_table_round_trips),
		cmocka_unit_test(test_table__single_entry_round_trips),
		cmocka_unit_test(test_table__thousand_entries_round_trip_in_every_configuration),
		cmocka_unit_test(test_table__hundred_thousand_entries_round_trip),
		cmocka_unit_test(test_table__values_up_to_one_mebibyte_round_trip),
		cmocka_unit_test(test_table__get_honours_snapshots),
		cmocka_unit_test(test_table__bloom_filter_skips_absent_keys),
		cmocka_unit_test(test_table__cache_serves_repeated_reads),
		cmocka_unit_test(test_table__iterator_keeps_the_table_alive),
		cmocka_unit_test(test_table__builder_tracks_size_and_separators_stay_short),
		cmocka_unit_test(test_table__write_errors_are_sticky),
		cmocka_unit_test(test_table__many_threads_read_one_table),
		cmocka_unit_test(test_table__writes_fuzz_seed_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
