/*
 * test_db_recycle.c - the files the engine is done with (db_recycle.c) and
 * the background pace (db.c): obsolete tables and logs are deleted by the
 * flush thread, old logs come back as spares that later logs overwrite,
 * a fresh store gets a spare of zeros, reopening after all that is clean,
 * and a pace however slow never leaves writers waiting for good.
 * Threaded engine (deterministic mode keeps none of this), in-memory VFS.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tmpdir_fx.h"

#include "lsm/lsm.h"
#include "lsm/wal.h"
#include "util/error.h"

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

static void db_open(struct fixture *f, struct kv_lsm_open_report *rep)
{
	assert_int_equal(kv_lsm_open("/db", &f->opt, &f->db, rep), 0);
}

static void db_close(struct fixture *f)
{
	assert_int_equal(kv_lsm_close(f->db), 0);
	f->db = NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* How many files in /db end in @ext; *bytes (if not NULL) gets their size. */
static size_t count_files(struct fixture *f, const char *ext, uint64_t *bytes)
{
	char **names = NULL;
	size_t n = 0, found = 0;
	assert_int_equal(kv_vfs_list(f->vfs, "/db", &names, &n), 0);
	if (bytes)
		*bytes = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]), el = strlen(ext);
		if (len <= el || strcmp(names[i] + len - el, ext) != 0)
			continue;
		found++;
		if (bytes) {
			char path[256];
			snprintf(path, sizeof path, "/db/%s", names[i]);
			struct kv_file *file = NULL;
			uint64_t size = 0;
			assert_int_equal(kv_vfs_open(f->vfs, path, KV_VFS_READ, &file), 0);
			assert_int_equal(kv_file_size(file, &size), 0);
			kv_file_close(file);
			*bytes += size;
		}
	}
	kv_vfs_names_free(names, n);
	return found;
}

/* Closes and reopens the store; the reopen must find clean logs. */
static struct kv_lsm_open_report reopen_clean(struct fixture *f)
{
	struct kv_lsm_open_report rep;
	db_close(f);
	db_open(f, &rep);
	assert_false(rep.wal_torn_tail);
	assert_false(rep.possible_loss);
	assert_int_equal(rep.wal_bad_regions, 0);
	return rep;
}

static void key_of(char *out, size_t n, unsigned i)
{
	snprintf(out, n, "key-%06u", i);
}

/* Writes keys [from, to) with values that tell them (and @round) apart. */
static void write_range(struct kv_lsm *db, unsigned from, unsigned to, unsigned round)
{
	char k[32], v[300];
	for (unsigned i = from; i < to; i++) {
		key_of(k, sizeof k, i);
		int vn = snprintf(v, sizeof v, "%u/%u/", i, round);
		memset(v + vn, 'a' + (int)(i % 26), sizeof v - (size_t)vn);
		assert_int_equal(kv_lsm_put(db, kv_slice_str(k), kv_slice_make(v, sizeof v)), 0);
	}
}

static void check_range(struct kv_lsm *db, unsigned from, unsigned to, unsigned round)
{
	char k[32], want[32];
	struct kv_buf b = KV_BUF_INIT;
	for (unsigned i = from; i < to; i++) {
		key_of(k, sizeof k, i);
		assert_int_equal(kv_lsm_get(db, NULL, kv_slice_str(k), &b), 0);
		int wn = snprintf(want, sizeof want, "%u/%u/", i, round);
		assert_true(b.n == 300 && memcmp(b.p, want, (size_t)wn) == 0);
	}
	kv_buf_release(&b);
}

static bool next_log_ready(struct fixture *f)
{
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	return st.next_log_ready;
}

/*
 * Waits (at most 10 s) until the store has a ready log beside its own: named,
 * written and synced, not only created (the file shows before its END does).
 */
static void wait_ready_log(struct fixture *f)
{
	for (int i = 0; i < 1000 && !next_log_ready(f); i++)
		sleep_ms(10);
	assert_true(next_log_ready(f));
	assert_int_equal(count_files(f, ".log", NULL), 2);
}

/*
 * An idle store names its next log ahead of time (no spare yet in a fresh
 * store: an empty file holding only its END), and the next switch starts in
 * it; a ready log left unused by a close reads as an empty, finished log.
 */
static void test_db_recycle__next_log_is_ready_before_the_switch(void **state)
{
	struct fixture *f = *state;
	db_open(f, NULL);
	wait_ready_log(f);
	assert_int_equal(count_files(f, ".spare", NULL), 0); /* no zeros written */
	write_range(f->db, 0, 300, 1); /* ~90 KiB: past a 64 KiB memtable */
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_true(st.logs_ready >= 1);
	check_range(f->db, 0, 300, 1);
	/* The next one is readied from the spare the old log became. */
	assert_int_equal(kv_lsm_flush(f->db), 0);
	wait_ready_log(f);
	reopen_clean(f);
	check_range(f->db, 0, 300, 1);
}

/*
 * A fresh store's first log has no spare to start in: it is written ahead of
 * its records instead (an eighth of a memtable at a time), and the zeros past
 * the last record read as its end at reopen.
 */
static void test_db_recycle__first_log_is_written_ahead(void **state)
{
	struct fixture *f = *state;
	f->opt.memtable_bytes = 1u << 20; /* a step of 128 KiB */
	db_open(f, NULL);
	wait_ready_log(f); /* (an END fragment: 11 bytes) */
	write_range(f->db, 0, 1, 1); /* a few hundred bytes */
	uint64_t bytes = 0;
	assert_int_equal(count_files(f, ".log", &bytes), 2);
	assert_int_equal(bytes, (128u << 10) + KV_WAL_HEADER);
	write_range(f->db, 1, 500, 1); /* ~160 KiB: past the first step */
	assert_int_equal(count_files(f, ".log", &bytes), 2);
	assert_int_equal(bytes, (256u << 10) + KV_WAL_HEADER);
	assert_true(reopen_clean(f).wal_records >= 1);
	check_range(f->db, 0, 500, 1);
}

/*
 * Replicas get the same writes: their memtables are switched at sizes drawn
 * between 3/4 and 5/4 of memtable_bytes, so they do not all flush at once.
 */
static void test_db_recycle__memtable_switches_are_staggered(void **state)
{
	struct fixture *f = *state;
	db_open(f, NULL);
	size_t m = f->opt.memtable_bytes, last = 0, lo = SIZE_MAX, hi = 0;
	unsigned switches = 0;
	for (unsigned i = 0; i < 4000 && switches < 12; i++) {
		write_range(f->db, i, i + 1, 1);
		struct kv_lsm_stats st;
		kv_lsm_get_stats(f->db, &st);
		if (st.memtable_bytes < last) { /* switched after the previous write */
			switches++;
			lo = last < lo ? last : lo;
			hi = last > hi ? last : hi;
		}
		last = st.memtable_bytes;
	}
	assert_true(switches >= 12);
	assert_true(lo >= m - m / 4);
	assert_true(hi <= m + m / 4 + 1024); /* (plus the write that crossed it) */
	assert_true(hi - lo >= m / 16);       /* not one size: 12 draws */
	check_range(f->db, 0, 100, 1);
}

static void test_db_recycle__logs_come_back_and_reopen_is_clean(void **state)
{
	struct fixture *f = *state;
	db_open(f, NULL);
	unsigned round = 0;
	for (; round < 12; round++) {
		write_range(f->db, 0, 400, round); /* ~120 KiB: a switch or two each */
		assert_int_equal(kv_lsm_flush(f->db), 0);
	}
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_true(st.logs_recycled >= 6);
	assert_true(count_files(f, ".spare", NULL) <= 2);
	/* Unflushed writes in a recycled log, then a clean close. Records of
	 * another size, so the log ends inside one of the old log's. */
	write_range(f->db, 0, 50, round);
	for (unsigned i = 0; i < 37; i++) {
		char k[32], v[1000];
		snprintf(k, sizeof k, "tail-%u", i);
		memset(v, 't', sizeof v);
		assert_int_equal(kv_lsm_put(f->db, kv_slice_str(k), kv_slice_make(v, i * 27)), 0);
	}
	assert_true(reopen_clean(f).wal_records >= 1);
	check_range(f->db, 0, 50, round);
	check_range(f->db, 50, 400, round - 1);
}

static void test_db_recycle__obsolete_files_are_deleted(void **state)
{
	struct fixture *f = *state;
	db_open(f, NULL);
	for (unsigned round = 0; round < 8; round++)
		write_range(f->db, 0, 600, round);
	assert_int_equal(kv_lsm_compact(f->db), 0);
	/* The flush thread deletes what compaction left, by and by. */
	struct kv_lsm_stats st;
	size_t tables = 0, live = 0;
	for (int i = 0; i < 500; i++) {
		kv_lsm_get_stats(f->db, &st);
		live = 0;
		for (int l = 0; l < KV_LSM_LEVELS; l++)
			live += st.tables[l];
		tables = count_files(f, ".sst", NULL);
		if (tables == live)
			break;
		sleep_ms(10);
	}
	assert_int_equal(tables, live);
	/* The log, the immutables' logs, and the ready one. */
	assert_true(count_files(f, ".log", NULL) <= 2 + st.immutables);
	check_range(f->db, 0, 600, 7);
	db_close(f);
	assert_int_equal(count_files(f, ".sst", NULL), live);
	db_open(f, NULL);
	check_range(f->db, 0, 600, 7);
}

static void test_db_recycle__slow_pace_never_stops_writers(void **state)
{
	struct fixture *f = *state;
	/* 1 KiB/s: a MiB step of a flush would wait 17 minutes, unless the
	 * pace gives way once writers are about to wait. */
	f->opt.background_bytes_per_sec = 1024;
	f->opt.memtable_bytes = 2 << 20;
	f->opt.table_bytes = 4 << 20;
	f->opt.level1_bytes = 64 << 20;
	db_open(f, NULL);
	for (unsigned round = 0; round < 4; round++)
		write_range(f->db, round * 7000, (round + 1) * 7000, round);
	for (unsigned round = 0; round < 4; round++)
		check_range(f->db, round * 7000, (round + 1) * 7000, round);
	struct kv_lsm_stats st;
	kv_lsm_get_stats(f->db, &st);
	assert_true(st.flushes >= 1);
	db_close(f); /* closing ends every wait */
	db_open(f, NULL);
	for (unsigned round = 0; round < 4; round++)
		check_range(f->db, round * 7000, (round + 1) * 7000, round);
}

static void test_db_recycle__posix_file_goes_a_step_at_a_time(void **state)
{
	(void)state;
	char dir[512], path[600];
	assert_true(kv_test_mkdtemp(dir, sizeof dir, "kvfs-test-recycle"));
	snprintf(path, sizeof path, "%s/f", dir);
	struct kv_vfs *vfs = kv_vfs_posix();
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f), 0);
	static uint8_t buf[(7u << 20) / 2];
	memset(buf, 'x', sizeof buf);
	assert_int_equal(kv_file_append(f, buf, sizeof buf), 0);
	/* The writeback hint starts I/O and changes nothing else. */
	assert_int_equal(kv_file_writeback(f, 0, sizeof buf), 0);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, sizeof buf);
	kv_file_close(f);
	assert_int_equal(kv_vfs_remove_gently(vfs, path), 0);
	assert_int_equal(kv_vfs_open(vfs, path, KV_VFS_READ, &f), -ENOENT);
	assert_int_equal(kv_vfs_remove_gently(vfs, path), -ENOENT);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_db_recycle__next_log_is_ready_before_the_switch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_recycle__first_log_is_written_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_recycle__memtable_switches_are_staggered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_recycle__logs_come_back_and_reopen_is_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_recycle__obsolete_files_are_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_recycle__slow_pace_never_stops_writers, setup, teardown),
		cmocka_unit_test(test_db_recycle__posix_file_goes_a_step_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
