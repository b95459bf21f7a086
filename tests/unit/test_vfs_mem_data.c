/*
 * test_vfs_mem_data.c - how the in-memory VFS (src/lsm/vfs_mem.c) keeps file
 * contents: random operations against a model that keeps two full copies
 * per file, and the costs the storage engine's crash tests rely on
 * (appends and syncs, overwrites of a preallocated log between syncs: undo
 * records, not copies of the file). The rest of the VFS: test_vfs.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/vfs.h"
#include "util/rng.h"

#include "tmpdir_fx.h"
#include "vfs_fx.h"

/* An in-memory VFS with the directory /t. */
struct fx {
	struct kv_vfs *vfs;
};

static int setup_mem(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	fx->vfs = kv_vfs_mem_new();
	assert_non_null(fx->vfs);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, "/t"), 0);
	*state = fx;
	return 0;
}

static int teardown_mem(void **state)
{
	struct fx *fx = *state;
	kv_vfs_destroy(fx->vfs);
	free(fx);
	return 0;
}

/*
 * Random writes, truncates, syncs, tears, failures and crashes on a few
 * files, checked against a naive model that keeps two full copies per file.
 */
#define RM_FILES 3
#define RM_MAX 8192
#define RM_ITERS 30000

struct rm_file {
	uint8_t cur[RM_MAX + 512], dur[RM_MAX + 512];
	size_t cur_n, dur_n;
	struct kv_file *f;
	char path[16];
};

static void rm_check(struct rm_file *m, struct kv_rng *rng, bool full)
{
	uint64_t size = 0;
	assert_int_equal(kv_file_size(m->f, &size), 0);
	assert_int_equal(size, m->cur_n);
	static uint8_t buf[RM_MAX + 512];
	size_t off = full ? 0 : (size_t)kv_rng_below(rng, m->cur_n + 8);
	size_t n = full ? sizeof buf : (size_t)kv_rng_below(rng, 300);
	ssize_t r = kv_file_pread(m->f, buf, n, off);
	size_t want = off >= m->cur_n ? 0 : (m->cur_n - off < n ? m->cur_n - off : n);
	assert_int_equal(r, (ssize_t)want);
	if (want)
		assert_memory_equal(buf, m->cur + off, want);
}

static void rm_apply_write(struct rm_file *m, const uint8_t *p, size_t n, size_t off)
{
	if (n == 0)
		return;
	if (off > m->cur_n)
		memset(m->cur + m->cur_n, 0, off - m->cur_n);
	memcpy(m->cur + off, p, n);
	if (off + n > m->cur_n)
		m->cur_n = off + n;
}

static void test_vfs__mem_random_ops_match_model(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_vfs__mem_random_ops_match_model");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_vfs *v = kv_vfs_mem_new();
	static struct rm_file files[RM_FILES];
	for (int i = 0; i < RM_FILES; i++) {
		struct rm_file *m = &files[i];
		memset(m, 0, sizeof *m);
		snprintf(m->path, sizeof m->path, "/r%d", i);
		assert_int_equal(kv_vfs_open(v, m->path, KV_VFS_WRITE | KV_VFS_CREATE, &m->f), 0);
	}
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	uint8_t data[256];
	for (int it = 0; it < RM_ITERS; it++) {
		struct rm_file *m = &files[kv_rng_below(&rng, RM_FILES)];
		unsigned pick = (unsigned)kv_rng_below(&rng, 100);
		bool crashed = false;
		if (pick < 45) {
			/* append, or pwrite anywhere up to a little past the end */
			size_t n = (size_t)kv_rng_below(&rng, sizeof data + 1);
			for (size_t k = 0; k < n; k++)
				data[k] = (uint8_t)kv_rng_next(&rng);
			bool append = kv_rng_below(&rng, 2);
			size_t off = append ? m->cur_n : (size_t)kv_rng_below(&rng, m->cur_n + 64);
			if (off + n > RM_MAX) {
				assert_int_equal(kv_file_truncate(m->f, 0), 0);
				m->cur_n = 0;
				off = append ? 0 : (size_t)kv_rng_below(&rng, 64);
			}
			bool tear = pick < 4, fail = pick >= 4 && pick < 8;
			size_t keep = (size_t)kv_rng_below(&rng, n + 2);
			int err = kv_rng_below(&rng, 2) ? -EIO : -ENOSPC;
			if (tear)
				kv_vfs_mem_tear_next_write(v, keep);
			if (fail)
				kv_vfs_mem_fail_next(v, 1, err);
			int r = append ? kv_file_append(m->f, data, n) :
					 kv_file_pwrite(m->f, data, n, off);
			if (fail) {
				assert_int_equal(r, err);
			} else if (tear) {
				assert_int_equal(r, -EIO);
				rm_apply_write(m, data, keep < n ? keep : n, off);
				memcpy(m->dur, m->cur, m->cur_n);
				m->dur_n = m->cur_n;
			} else {
				assert_int_equal(r, 0);
				rm_apply_write(m, data, n, off);
			}
		} else if (pick < 55) {
			size_t size = (size_t)kv_rng_below(&rng, m->cur_n + 64);
			if (size > RM_MAX)
				size = RM_MAX;
			assert_int_equal(kv_file_truncate(m->f, size), 0);
			if (size > m->cur_n)
				memset(m->cur + m->cur_n, 0, size - m->cur_n);
			m->cur_n = size;
		} else if (pick < 75) {
			assert_int_equal(kv_file_sync(m->f), 0);
			memcpy(m->dur, m->cur, m->cur_n);
			m->dur_n = m->cur_n;
		} else if (pick < 77) {
			kv_vfs_mem_crash(v);
			crashed = true;
		} else {
			rm_check(m, &rng, false);
			continue;
		}
		if (crashed) {
			for (int i = 0; i < RM_FILES; i++) {
				struct rm_file *c = &files[i];
				assert_int_equal(kv_file_close(c->f), -EIO);
				assert_int_equal(kv_vfs_open(v, c->path, KV_VFS_WRITE, &c->f), 0);
				memcpy(c->cur, c->dur, c->dur_n);
				c->cur_n = c->dur_n;
				rm_check(c, &rng, true);
			}
		} else if (it % 64 == 0) {
			rm_check(m, &rng, true);
		}
	}
	for (int i = 0; i < RM_FILES; i++) {
		rm_check(&files[i], &rng, true);
		assert_int_equal(kv_file_close(files[i].f), 0);
	}
	kv_vfs_destroy(v);
}

static void test_vfs__mem_append_and_sync_stay_linear(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	enum { N = 100000, REC = 64 };
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	assert_int_equal(kv_vfs_open(v, "/t/wal", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	uint8_t rec[REC];
	for (int i = 0; i < N; i++) {
		memset(rec, (uint8_t)i, sizeof rec);
		assert_int_equal(kv_file_append(f, rec, sizeof rec), 0);
		assert_int_equal(kv_file_sync(f), 0);
	}
	assert_int_equal(kv_file_append(f, "tail", 4), 0);
	assert_int_equal(kv_vfs_mem_bytes_written(v), (uint64_t)N * REC + 4);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_int_equal(kv_vfs_open(v, "/t/wal", KV_VFS_READ, &f), 0);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, (uint64_t)N * REC);
	assert_int_equal(kv_file_read_exact(f, rec, REC, (uint64_t)(N - 1) * REC), 0);
	assert_int_equal(rec[0], (uint8_t)(N - 1));
	assert_int_equal(kv_file_close(f), 0);
}

/* Overwrites between syncs keep the durable bytes: the oldest saved copy of
 * a byte wins, a shrink and regrow keep them too, and many overwrites of one
 * spot (more than the file's size) still come back right after a crash. */
static void test_vfs__mem_overwrites_between_syncs_keep_durable_bytes(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/log", "0123456789");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/log", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "ab", 2, 2), 0);
	assert_int_equal(kv_file_pwrite(f, "xyz", 3, 1), 0);
	assert_int_equal(kv_file_truncate(f, 4), 0);
	assert_int_equal(kv_file_truncate(f, 6), 0);
	assert_int_equal(kv_file_pwrite(f, "Q", 1, 8), 0);
	char now[9];
	assert_int_equal(kv_file_read_exact(f, now, sizeof now, 0), 0);
	assert_memory_equal(now, "0xyz\0\0\0\0Q", sizeof now);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/log", "0123456789");
	/* A synced overwrite is the new durable state; then 30 unsynced ones. */
	assert_int_equal(kv_vfs_open(v, "/t/log", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "AB", 2, 4), 0);
	assert_int_equal(kv_file_sync(f), 0);
	for (int i = 0; i < 30; i++)
		assert_int_equal(kv_file_pwrite(f, i % 2 ? "--" : "++", 2, 3), 0);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/log", "0123AB6789");
}

/* A preallocated log overwritten record by record, with a sync after each,
 * copies each record once: 4 MiB of zeros and 100,000 records. */
static void test_vfs__mem_overwriting_a_preallocated_log_stays_linear(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	enum { N = 100000, REC = 40, SIZE = N * REC };
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	assert_int_equal(kv_vfs_open(v, "/t/wal", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_truncate(f, SIZE), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	uint8_t rec[REC];
	for (int i = 0; i < N; i++) {
		memset(rec, (uint8_t)(i + 1), sizeof rec);
		assert_int_equal(kv_file_pwrite(f, rec, sizeof rec, (uint64_t)i * REC), 0);
		if (i < N - 1)
			assert_int_equal(kv_file_sync(f), 0);
	}
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_int_equal(kv_vfs_open(v, "/t/wal", KV_VFS_READ, &f), 0);
	assert_int_equal(kv_file_read_exact(f, rec, REC, (uint64_t)(N - 2) * REC), 0);
	assert_int_equal(rec[0], (uint8_t)(N - 1));
	assert_int_equal(kv_file_read_exact(f, rec, REC, (uint64_t)(N - 1) * REC), 0);
	assert_int_equal(rec[REC - 1], 0); /* the unsynced last record is gone */
	assert_int_equal(kv_file_close(f), 0);
}

#define MEM(fn) cmocka_unit_test_setup_teardown(fn, setup_mem, teardown_mem)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vfs__mem_random_ops_match_model),
		MEM(test_vfs__mem_append_and_sync_stay_linear),
		MEM(test_vfs__mem_overwrites_between_syncs_keep_durable_bytes),
		MEM(test_vfs__mem_overwriting_a_preallocated_log_stays_linear),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
