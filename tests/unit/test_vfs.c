/*
 * test_vfs.c - the VFS contract, run over the POSIX VFS (in a mkdtemp
 * directory) and the in-memory one, then the in-memory VFS's crash model and
 * fault injection (DESIGN §6, §8; src/lsm/vfs.h). How the in-memory VFS
 * keeps file contents (against a model, and at what cost): test_vfs_mem_data.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir_fx.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lsm/vfs.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

/* ---- fixtures: one vfs and a base directory to work in ------------------ */

struct fx {
	struct kv_vfs *vfs;
	bool posix;
	char base[128];
	char paths[8][512];
	unsigned next;
};

/* @rel below the fixture's base directory (a few results stay valid at once). */
static const char *P(struct fx *fx, const char *rel)
{
	char *b = fx->paths[fx->next++ % 8];
	snprintf(b, sizeof fx->paths[0], "%s/%s", fx->base, rel);
	return b;
}

static int setup_posix(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	fx->vfs = kv_vfs_posix();
	fx->posix = true;
	assert_true(kv_test_mkdtemp(fx->base, sizeof fx->base, "kvfs-test-vfs"));
	*state = fx;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int teardown_posix(void **state)
{
	struct fx *fx = *state;
	int r = nftw(fx->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return r;
}

static int setup_mem(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	fx->vfs = kv_vfs_mem_new();
	assert_non_null(fx->vfs);
	snprintf(fx->base, sizeof fx->base, "/t");
	assert_int_equal(kv_vfs_mkdir(fx->vfs, fx->base), 0);
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

/* ---- helpers ----------------------------------------------------------- */

#include "vfs_fx.h" /* put_file, get_file, assert_file */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in @dir, sorted and joined with ',' into @out. */
static void list_joined(struct kv_vfs *v, const char *dir, char *out, size_t cap)
{
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(kv_vfs_list(v, dir, &names, &n), 0);
	if (n)
		qsort(names, n, sizeof *names, cmp_names);
	size_t w = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		w += (size_t)snprintf(out + w, cap - w, "%s%s", i ? "," : "", names[i]);
	assert_true(w < cap);
	kv_vfs_names_free(names, n);
}

/*
 * Appends a description of the tree under @dir to @out: "path/" for each
 * directory, "path=contents" for each file, sorted. Reads only.
 */
static void snapshot_into(struct kv_vfs *v, const char *dir, struct kv_buf *out)
{
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(kv_vfs_list(v, dir, &names, &n), 0);
	if (n)
		qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", names[i]);
		char **sub = NULL;
		size_t nsub = 0;
		if (kv_vfs_list(v, path, &sub, &nsub) == 0) {
			kv_vfs_names_free(sub, nsub);
			assert_int_equal(kv_buf_append(out, path, strlen(path)), 0);
			assert_int_equal(kv_buf_append(out, "/\n", 2), 0);
			snapshot_into(v, path, out);
			continue;
		}
		char *s = get_file(v, path);
		assert_non_null(s);
		assert_int_equal(kv_buf_append(out, path, strlen(path)), 0);
		assert_int_equal(kv_buf_append(out, "=", 1), 0);
		assert_int_equal(kv_buf_append(out, s, strlen(s)), 0);
		assert_int_equal(kv_buf_append(out, "\n", 1), 0);
		free(s);
	}
	kv_vfs_names_free(names, n);
}

/* The whole tree as a malloc'd string. */
static char *snapshot(struct kv_vfs *v)
{
	struct kv_buf b = KV_BUF_INIT;
	snapshot_into(v, "/", &b);
	assert_int_equal(kv_buf_append_u8(&b, 0), 0);
	size_t n;
	return (char *)kv_buf_detach(&b, &n);
}

/* ---- the contract, for both VFSs --------------------------------------- */

static void test_vfs__open_missing_file_fails(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "nope"), KV_VFS_READ, &f), -ENOENT);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "nope"), KV_VFS_WRITE, &f), -ENOENT);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "nodir/x"), KV_VFS_WRITE | KV_VFS_CREATE, &f),
			 -ENOENT);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "nope")), -ENOENT);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "nodir/x")), -ENOENT);
}

static void test_vfs__create_excl_refuses_existing(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	int excl = KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_EXCL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), excl, &f), 0);
	assert_int_equal(kv_file_append(f, "abc", 3), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), excl, &f), -EEXIST);
	/* CREATE alone opens the existing file and keeps its bytes. */
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_file(fx->vfs, P(fx, "a"), "abc");
}

static void test_vfs__trunc_empties_file(void **state)
{
	struct fx *fx = *state;
	put_file(fx->vfs, P(fx, "a"), "hello");
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_TRUNC, &f), 0);
	uint64_t size = 99;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_file(fx->vfs, P(fx, "a"), "");
}

static void test_vfs__pwrite_pread_round_trip(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "hello", 5, 0), 0);
	assert_int_equal(kv_file_pwrite(f, "XY", 2, 1), 0);
	assert_int_equal(kv_file_pwrite(f, "end", 3, 8), 0); /* leaves a hole */
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, 11);
	char buf[32];
	assert_int_equal(kv_file_pread(f, buf, sizeof buf, 0), 11);
	assert_memory_equal(buf, "hXYlo\0\0\0end", 11);
	assert_int_equal(kv_file_pread(f, buf, 4, 9), 2); /* short at the end */
	assert_memory_equal(buf, "nd", 2);
	assert_int_equal(kv_file_pread(f, buf, 4, 11), 0);
	assert_int_equal(kv_file_pread(f, buf, 4, 1000), 0);
	assert_int_equal(kv_file_pread(f, buf, 0, 0), 0);
	assert_int_equal(kv_file_close(f), 0);
}

static void test_vfs__append_writes_at_end(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "ab", 2), 0);
	assert_int_equal(kv_file_pwrite(f, "cd", 2, 2), 0);
	assert_int_equal(kv_file_append(f, "ef", 2), 0);
	assert_int_equal(kv_file_truncate(f, 3), 0);
	assert_int_equal(kv_file_append(f, "gh", 2), 0); /* after the new end */
	assert_int_equal(kv_file_close(f), 0);
	assert_file(fx->vfs, P(fx, "a"), "abcgh");
	/* A new handle appends at the end of what is there. */
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_append(f, "ij", 2), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_file(fx->vfs, P(fx, "a"), "abcghij");
}

static void test_vfs__truncate_shrinks_and_extends_with_zeros(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "abcdef", 6), 0);
	assert_int_equal(kv_file_truncate(f, 2), 0);
	assert_int_equal(kv_file_truncate(f, 5), 0);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, 5);
	char buf[8];
	assert_int_equal(kv_file_pread(f, buf, sizeof buf, 0), 5);
	assert_memory_equal(buf, "ab\0\0\0", 5);
	assert_int_equal(kv_file_close(f), 0);
}

static void test_vfs__read_exact_past_end_is_corrupt(void **state)
{
	struct fx *fx = *state;
	put_file(fx->vfs, P(fx, "a"), "0123456789");
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_READ, &f), 0);
	char buf[16];
	assert_int_equal(kv_file_read_exact(f, buf, 10, 0), 0);
	assert_int_equal(kv_file_read_exact(f, buf, 4, 6), 0);
	assert_memory_equal(buf, "6789", 4);
	assert_int_equal(kv_file_read_exact(f, buf, 5, 6), KV_ECORRUPT);
	assert_int_equal(kv_file_read_exact(f, buf, 1, 10), KV_ECORRUPT);
	assert_int_equal(kv_file_read_exact(f, buf, 0, 10), 0);
	assert_int_equal(kv_file_close(f), 0);
}

static void test_vfs__read_only_handle_refuses_writes(void **state)
{
	struct fx *fx = *state;
	put_file(fx->vfs, P(fx, "a"), "abc");
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_READ, &f), 0);
	assert_true(kv_file_pwrite(f, "x", 1, 0) < 0);
	assert_true(kv_file_append(f, "x", 1) < 0);
	assert_true(kv_file_truncate(f, 0) < 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_file(fx->vfs, P(fx, "a"), "abc");
}

static void test_vfs__rename_replaces_target(void **state)
{
	struct fx *fx = *state;
	put_file(fx->vfs, P(fx, "new"), "new contents");
	put_file(fx->vfs, P(fx, "cur"), "old contents");
	struct kv_file *old = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "cur"), KV_VFS_READ, &old), 0);
	assert_int_equal(kv_vfs_rename(fx->vfs, P(fx, "new"), P(fx, "cur")), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "new")), -ENOENT);
	assert_file(fx->vfs, P(fx, "cur"), "new contents");
	/* A handle on the replaced file still reads the replaced bytes. */
	char buf[16];
	assert_int_equal(kv_file_pread(old, buf, sizeof buf, 0), 12);
	assert_memory_equal(buf, "old contents", 12);
	assert_int_equal(kv_file_close(old), 0);
	/* Into a subdirectory, and to a fresh name. */
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "sub")), 0);
	assert_int_equal(kv_vfs_rename(fx->vfs, P(fx, "cur"), P(fx, "sub/moved")), 0);
	assert_file(fx->vfs, P(fx, "sub/moved"), "new contents");
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, P(fx, "sub")), 0);
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, fx->base), 0);
}

static void test_vfs__rename_missing_fails(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_rename(fx->vfs, P(fx, "nope"), P(fx, "x")), -ENOENT);
	put_file(fx->vfs, P(fx, "a"), "a");
	assert_int_equal(kv_vfs_rename(fx->vfs, P(fx, "a"), P(fx, "nodir/x")), -ENOENT);
	assert_file(fx->vfs, P(fx, "a"), "a");
}

static void test_vfs__remove_drops_entry(void **state)
{
	struct fx *fx = *state;
	put_file(fx->vfs, P(fx, "a"), "a");
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "a")), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "a")), -ENOENT);
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "a")), -ENOENT);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d")), 0);
	put_file(fx->vfs, P(fx, "d/x"), "x");
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "d")), -ENOTEMPTY);
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "d/x")), 0);
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "d")), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "d")), -ENOENT);
}

static void test_vfs__open_handle_survives_remove(void **state)
{
	struct fx *fx = *state;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "a"), KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "abc", 3), 0);
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "a")), 0);
	assert_int_equal(kv_file_append(f, "def", 3), 0);
	char buf[8];
	assert_int_equal(kv_file_pread(f, buf, sizeof buf, 0), 6);
	assert_memory_equal(buf, "abcdef", 6);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "a")), -ENOENT);
}

static void test_vfs__list_returns_files_and_dirs(void **state)
{
	struct fx *fx = *state;
	char got[256];
	list_joined(fx->vfs, fx->base, got, sizeof got);
	assert_string_equal(got, "");
	put_file(fx->vfs, P(fx, "b"), "");
	put_file(fx->vfs, P(fx, "a"), "");
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "dir")), 0);
	put_file(fx->vfs, P(fx, "dir/inner"), "");
	list_joined(fx->vfs, fx->base, got, sizeof got);
	assert_string_equal(got, "a,b,dir");
	list_joined(fx->vfs, P(fx, "dir"), got, sizeof got);
	assert_string_equal(got, "inner");
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(kv_vfs_list(fx->vfs, P(fx, "nope"), &names, &n), -ENOENT);
	assert_int_equal(kv_vfs_list(fx->vfs, P(fx, "a"), &names, &n), -ENOTDIR);
}

static void test_vfs__exists_sees_files_and_dirs(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_exists(fx->vfs, fx->base), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "f")), -ENOENT);
	put_file(fx->vfs, P(fx, "f"), "");
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d")), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "f")), 0);
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "d")), 0);
}

static void test_vfs__mkdir_creates_and_refuses_existing(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d")), 0);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d")), -EEXIST);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d/e")), 0);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "x/y")), -ENOENT);
	put_file(fx->vfs, P(fx, "d/e/f"), "deep");
	assert_file(fx->vfs, P(fx, "d/e/f"), "deep");
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d/e/f")), -EEXIST);
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d/e/f/g")), -ENOTDIR);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "d"), KV_VFS_WRITE, &f), -EISDIR);
}

static void test_vfs__sync_dir_accepts_dirs_only(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, fx->base), 0);
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, P(fx, "nope")), -ENOENT);
	put_file(fx->vfs, P(fx, "f"), "");
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, P(fx, "f")), -ENOTDIR);
}

static void test_vfs__lock_conflicts_until_close(void **state)
{
	struct fx *fx = *state;
	struct kv_file *a = NULL, *b = NULL;
	assert_int_equal(kv_vfs_lock(fx->vfs, P(fx, "LOCK"), &a), 0); /* creates it */
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "LOCK")), 0);
	assert_int_equal(kv_vfs_lock(fx->vfs, P(fx, "LOCK"), &b), -EBUSY);
	assert_int_equal(kv_vfs_lock(fx->vfs, P(fx, "OTHER"), &b), 0);
	assert_int_equal(kv_file_close(b), 0);
	assert_int_equal(kv_file_close(a), 0);
	assert_int_equal(kv_vfs_lock(fx->vfs, P(fx, "LOCK"), &b), 0);
	assert_int_equal(kv_file_close(b), 0);
}

static void test_vfs__duplicate_slashes_are_ignored(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_mkdir(fx->vfs, P(fx, "d")), 0);
	put_file(fx->vfs, P(fx, "d//f"), "x");
	assert_file(fx->vfs, P(fx, "d/f"), "x");
	assert_int_equal(kv_vfs_exists(fx->vfs, P(fx, "/d/")), 0);
	assert_int_equal(kv_vfs_sync_dir(fx->vfs, P(fx, "d/")), 0);
}

/* One writer appends a known pattern while two readers check what they see. */
#define CC_RECORDS 20000
#define CC_RECORD 16

struct cc {
	struct kv_vfs *vfs;
	const char *path;
	atomic_bool done;
	uint64_t seed;
	atomic_ulong checked;
};

static uint8_t cc_byte(uint64_t off)
{
	return (uint8_t)(off * 31 + (off >> 9));
}

static void *cc_reader(void *arg)
{
	struct cc *cc = arg;
	struct kv_file *f = NULL;
	struct kv_rng rng;
	kv_rng_seed(&rng, cc->seed);
	if (kv_vfs_open(cc->vfs, cc->path, KV_VFS_READ, &f))
		return (void *)1;
	uint8_t buf[256];
	void *bad = NULL;
	bool last = false;
	while (!last) {
		last = atomic_load(&cc->done);
		uint64_t size = 0;
		if (kv_file_size(f, &size) || size % CC_RECORD) {
			/* size is always whole records: append writes a record at once */
			bad = (void *)2;
			break;
		}
		if (size == 0)
			continue;
		uint64_t off = kv_rng_below(&rng, size);
		size_t n = (size_t)kv_rng_below(&rng, sizeof buf) + 1;
		ssize_t r = kv_file_pread(f, buf, n, off);
		if (r <= 0) {
			bad = (void *)3;
			break;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != cc_byte(off + (uint64_t)i))
				bad = (void *)4;
		atomic_fetch_add(&cc->checked, 1);
	}
	kv_file_close(f);
	return bad;
}

static void test_vfs__concurrent_pread_during_append(void **state)
{
	struct fx *fx = *state;
	struct cc cc = { .vfs = fx->vfs, .path = P(fx, "log") };
	atomic_init(&cc.done, false);
	atomic_init(&cc.checked, 0);
	cc.seed = kv_test_seed("test_vfs__concurrent_pread_during_append");
	struct kv_file *w = NULL;
	assert_int_equal(kv_vfs_open(fx->vfs, cc.path, KV_VFS_WRITE | KV_VFS_CREATE, &w), 0);
	pthread_t t[2];
	for (int i = 0; i < 2; i++) {
		struct cc *arg = &cc;
		assert_int_equal(pthread_create(&t[i], NULL, cc_reader, arg), 0);
	}
	uint8_t rec[CC_RECORD];
	for (uint64_t i = 0; i < CC_RECORDS; i++) {
		for (size_t k = 0; k < CC_RECORD; k++)
			rec[k] = cc_byte(i * CC_RECORD + k);
		assert_int_equal(kv_file_append(w, rec, sizeof rec), 0);
	}
	atomic_store(&cc.done, true);
	for (int i = 0; i < 2; i++) {
		void *res = (void *)-1;
		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	assert_true(atomic_load(&cc.checked) >= 2);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(w, &size), 0);
	assert_int_equal(size, (uint64_t)CC_RECORDS * CC_RECORD);
	assert_int_equal(kv_file_close(w), 0);
}

/* ---- the in-memory model: crash semantics ------------------------------ */

static void test_vfs__mem_paths_normalize(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	put_file(v, "a", "rel");
	assert_file(v, "/a", "rel");
	assert_file(v, "//a/", "rel");
	assert_file(v, "./a", "rel");
	assert_file(v, "/t/../a", "rel");
	assert_int_equal(kv_vfs_exists(v, "/"), 0);
	assert_int_equal(kv_vfs_exists(v, "."), 0);
	assert_int_equal(kv_vfs_exists(v, ""), -ENOENT);
	char got[64];
	list_joined(v, ".", got, sizeof got);
	assert_string_equal(got, "a,t");
	list_joined(v, "/", got, sizeof got);
	assert_string_equal(got, "a,t");
	/* The parent of "t/b/c" is "t/b". */
	assert_int_equal(kv_vfs_mkdir(v, "t/b"), 0);
	put_file(v, "t/b/c", "c");
	list_joined(v, "/t/b/", got, sizeof got);
	assert_string_equal(got, "c");
	assert_int_equal(kv_vfs_remove(v, "/"), -EBUSY);
	assert_int_equal(kv_vfs_mkdir(v, "."), -EEXIST);
	assert_int_equal(kv_vfs_rename(v, "t", "t/b/inside"), -EINVAL);
}

static void test_vfs__mem_unsynced_bytes_vanish_on_crash(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	assert_int_equal(kv_vfs_open(v, "/t/log", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_file_append(f, "hello", 5), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_append(f, " world", 6), 0);
	assert_file(v, "/t/log", "hello world");
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/log", "hello");
}

static void test_vfs__mem_synced_bytes_survive_crash(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "abc");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "B", 1, 1), 0); /* overwrites a durable byte */
	assert_int_equal(kv_file_append(f, "d", 1), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_pwrite(f, "XYZ", 3, 0), 0); /* not synced */
	assert_int_equal(kv_file_truncate(f, 1), 0);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/a", "aBcd");
}

static void test_vfs__mem_unsynced_file_with_durable_entry_comes_back_empty(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "never synced", 12), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_int_equal(kv_vfs_exists(v, "/t/a"), 0);
	assert_file(v, "/t/a", "");
}

static void test_vfs__mem_created_file_vanishes_without_sync_dir(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "fsynced"); /* the file's bytes, not its name */
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_exists(v, "/t/a"), -ENOENT);
	assert_int_equal(kv_vfs_exists(v, "/t"), 0);
}

static void test_vfs__mem_created_file_survives_with_sync_dir(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "fsynced");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/a", "fsynced");
}

static void test_vfs__mem_mkdir_needs_parent_sync_dir(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	/* The fixture's /t was never made durable in "/". */
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), 0);
	put_file(v, "/t/d/f", "x");
	assert_int_equal(kv_vfs_sync_dir(v, "/t/d"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_exists(v, "/t"), -ENOENT);
	/* The same again, with every level synced. */
	assert_int_equal(kv_vfs_mkdir(v, "/t"), 0);
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), 0);
	put_file(v, "/t/d/f", "x");
	assert_int_equal(kv_vfs_sync_dir(v, "/t/d"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/d/f", "x");
}

/* /t durable, holding durable files cur="old" and tmp="new". */
static void durable_pair(struct kv_vfs *v)
{
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/cur", "old");
	put_file(v, "/t/tmp", "new");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
}

static void test_vfs__mem_rename_without_sync_dir_is_undone(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	assert_int_equal(kv_vfs_rename(v, "/t/tmp", "/t/cur"), 0);
	assert_file(v, "/t/cur", "new");
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/cur", "old");
	assert_file(v, "/t/tmp", "new");
	/* A rename onto a fresh name: the new name is gone after the crash. */
	assert_int_equal(kv_vfs_rename(v, "/t/tmp", "/t/fresh"), 0);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_exists(v, "/t/fresh"), -ENOENT);
	assert_file(v, "/t/tmp", "new");
}

static void test_vfs__mem_rename_with_sync_dir_survives(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	assert_int_equal(kv_vfs_rename(v, "/t/tmp", "/t/cur"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/cur", "new");
	assert_int_equal(kv_vfs_exists(v, "/t/tmp"), -ENOENT);
	char got[64];
	list_joined(v, "/t", got, sizeof got);
	assert_string_equal(got, "cur");
}

static void test_vfs__mem_rename_across_dirs_needs_both_synced(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	assert_int_equal(kv_vfs_mkdir(v, "/t/sub"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t/sub"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_vfs_rename(v, "/t/cur", "/t/sub/moved"), 0);
	/* Only the target directory synced: the source name comes back too. */
	assert_int_equal(kv_vfs_sync_dir(v, "/t/sub"), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/sub/moved", "old");
	assert_file(v, "/t/cur", "old");
	/* Both synced: moved. */
	assert_int_equal(kv_vfs_rename(v, "/t/tmp", "/t/sub/moved"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t/sub"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/sub/moved", "new");
	assert_int_equal(kv_vfs_exists(v, "/t/tmp"), -ENOENT);
}

static void test_vfs__mem_remove_without_sync_dir_is_undone(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	assert_int_equal(kv_vfs_remove(v, "/t/cur"), 0);
	assert_int_equal(kv_vfs_exists(v, "/t/cur"), -ENOENT);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/cur", "old");
	assert_int_equal(kv_vfs_remove(v, "/t/cur"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_exists(v, "/t/cur"), -ENOENT);
	/* An empty directory removed without a sync of its parent comes back. */
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_vfs_remove(v, "/t/d"), 0);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_exists(v, "/t/d"), 0);
}

static void test_vfs__mem_removed_open_file_keeps_durable_link(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/cur", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_vfs_remove(v, "/t/cur"), 0);
	assert_int_equal(kv_file_append(f, "+more", 5), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
	/* The durable entry still names the inode, which got the fsynced bytes. */
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/cur", "old+more");
}

static void test_vfs__mem_overwrite_after_sync_keeps_durable_copy(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/cur", KV_VFS_WRITE | KV_VFS_TRUNC, &f), 0);
	assert_int_equal(kv_file_append(f, "replacement", 11), 0);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/cur", "old");
	assert_int_equal(kv_vfs_open(v, "/t/cur", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_truncate(f, 1), 0);
	assert_int_equal(kv_file_append(f, "ne", 2), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_pwrite(f, "X", 1, 2), 0);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/cur", "one");
}

/* ---- the in-memory model: fault injection ------------------------------ */

static void test_vfs__mem_torn_append_keeps_exact_prefix(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	durable_pair(v);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/cur", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_append(f, "-unsynced", 9), 0);
	kv_vfs_mem_tear_next_write(v, 3);
	assert_int_equal(kv_file_append(f, "ABCDEF", 6), -EIO);
	assert_file(v, "/t/cur", "old-unsyncedABC");
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/cur", "old-unsyncedABC");
	/* Keeping nothing, or more than the write: exactly what was asked. */
	assert_int_equal(kv_vfs_open(v, "/t/cur", KV_VFS_WRITE, &f), 0);
	kv_vfs_mem_tear_next_write(v, 0);
	assert_int_equal(kv_file_append(f, "zzz", 3), -EIO);
	kv_vfs_mem_tear_next_write(v, 100);
	assert_int_equal(kv_file_append(f, "!", 1), -EIO);
	assert_int_equal(kv_file_append(f, "?", 1), 0); /* the tear is used up */
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/cur", "old-unsyncedABC!");
}

static void test_vfs__mem_torn_pwrite_keeps_exact_prefix(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "0123456789");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	/* An injected failure stops the write before the tear is used. */
	kv_vfs_mem_tear_next_write(v, 2);
	kv_vfs_mem_fail_next(v, 1, -EIO);
	assert_int_equal(kv_file_pwrite(f, "ab", 2, 0), -EIO);
	assert_file(v, "/t/a", "0123456789");
	assert_int_equal(kv_file_pwrite(f, "WXYZ", 4, 3), -EIO);
	assert_file(v, "/t/a", "012WX56789");
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/a", "012WX56789");
}

/*
 * A state with something pending of every kind: /d durable; /d/f durable
 * with "durable" fsynced and "+cur" not; /d/g created but not dir-synced.
 * Returns a write handle on /d/f.
 */
static struct kv_file *pending_state(struct kv_vfs *v)
{
	struct kv_file *f = NULL, *g = NULL;
	assert_int_equal(kv_vfs_mkdir(v, "/d"), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	assert_int_equal(kv_vfs_open(v, "/d/f", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "durable", 7), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/d"), 0);
	assert_int_equal(kv_file_append(f, "+cur", 4), 0);
	assert_int_equal(kv_vfs_open(v, "/d/g", KV_VFS_WRITE | KV_VFS_CREATE, &g), 0);
	assert_int_equal(kv_file_append(g, "g", 1), 0);
	assert_int_equal(kv_file_close(g), 0);
	return f;
}

enum { FAULT_PWRITE, FAULT_APPEND, FAULT_SYNC, FAULT_TRUNCATE, FAULT_OPEN_CREATE,
       FAULT_OPEN_TRUNC, FAULT_RENAME, FAULT_REMOVE, FAULT_MKDIR, FAULT_SYNC_DIR,
       FAULT_LOCK, FAULT_KINDS };

/* One modifying call of each kind, on the pending state. */
static int fault_call(struct kv_vfs *v, struct kv_file *f, int kind)
{
	struct kv_file *h = NULL;
	int r;
	switch (kind) {
	case FAULT_PWRITE: return kv_file_pwrite(f, "XX", 2, 0);
	case FAULT_APPEND: return kv_file_append(f, "XX", 2);
	case FAULT_SYNC: return kv_file_sync(f);
	case FAULT_TRUNCATE: return kv_file_truncate(f, 1);
	case FAULT_OPEN_CREATE:
		r = kv_vfs_open(v, "/d/new", KV_VFS_WRITE | KV_VFS_CREATE, &h);
		break;
	case FAULT_OPEN_TRUNC:
		r = kv_vfs_open(v, "/d/f", KV_VFS_WRITE | KV_VFS_TRUNC, &h);
		break;
	case FAULT_RENAME: return kv_vfs_rename(v, "/d/g", "/d/f");
	case FAULT_REMOVE: return kv_vfs_remove(v, "/d/f");
	case FAULT_MKDIR: return kv_vfs_mkdir(v, "/d/sub");
	case FAULT_SYNC_DIR: return kv_vfs_sync_dir(v, "/d");
	case FAULT_LOCK:
		r = kv_vfs_lock(v, "/d/LOCK", &h);
		break;
	default: return -EINVAL;
	}
	if (r)
		assert_null(h);
	kv_file_close(h);
	return r;
}

static void test_vfs__mem_fail_next_changes_nothing(void **state)
{
	(void)state;
	const int errs[] = { -EIO, -ENOSPC };
	for (size_t e = 0; e < 2; e++) {
		for (int kind = 0; kind < FAULT_KINDS; kind++) {
			/* The reference: the same state, never touched, then crashed. */
			struct kv_vfs *ref = kv_vfs_mem_new();
			struct kv_file *rf = pending_state(ref);
			char *want_now = snapshot(ref);
			kv_vfs_mem_crash(ref);
			char *want_durable = snapshot(ref);
			kv_file_close(rf);

			struct kv_vfs *v = kv_vfs_mem_new();
			struct kv_file *f = pending_state(v);
			uint64_t ops = kv_vfs_mem_ops(v);
			kv_vfs_mem_fail_next(v, 2, errs[e]);
			assert_int_equal(fault_call(v, f, kind), errs[e]);
			assert_int_equal(fault_call(v, f, kind), errs[e]);
			assert_int_equal(kv_vfs_mem_ops(v), ops + 2);
			assert_int_equal(kv_vfs_mem_bytes_written(v), 7 + 4 + 1);
			char *now = snapshot(v);
			assert_string_equal(now, want_now);
			/* The third call is no longer failed. */
			assert_int_equal(fault_call(v, f, kind), 0);
			kv_vfs_mem_crash(v);
			kv_file_close(f);
			if (kind != FAULT_SYNC && kind != FAULT_SYNC_DIR) {
				char *durable = snapshot(v);
				assert_string_equal(durable, want_durable);
				free(durable);
			}
			free(now);
			free(want_now);
			free(want_durable);
			kv_vfs_destroy(v);
			kv_vfs_destroy(ref);
		}
	}
}

/* A fixed script, one modifying operation per step, for crash sweeps. */
struct script {
	struct kv_file *a, *tmp, *lock;
};

#define SCRIPT_STEPS 19

static int script_step(struct kv_vfs *v, struct script *s, int step)
{
	switch (step) {
	case 0: return kv_vfs_mkdir(v, "/db");
	case 1: return kv_vfs_sync_dir(v, "/");
	case 2: return kv_vfs_lock(v, "/db/LOCK", &s->lock);
	case 3: return kv_vfs_open(v, "/db/a", KV_VFS_WRITE | KV_VFS_CREATE, &s->a);
	case 4: return s->a ? kv_file_append(s->a, "one", 3) : -EIO;
	case 5: return s->a ? kv_file_sync(s->a) : -EIO;
	case 6: return kv_vfs_sync_dir(v, "/db");
	case 7: return s->a ? kv_file_append(s->a, "two", 3) : -EIO;
	case 8: return s->a ? kv_file_pwrite(s->a, "X", 1, 0) : -EIO;
	case 9: return s->a ? kv_file_truncate(s->a, 5) : -EIO;
	case 10: return kv_vfs_open(v, "/db/tmp", KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC,
				    &s->tmp);
	case 11: return s->tmp ? kv_file_append(s->tmp, "manifest", 8) : -EIO;
	case 12: return s->tmp ? kv_file_sync(s->tmp) : -EIO;
	case 13: return kv_vfs_rename(v, "/db/tmp", "/db/CURRENT");
	case 14: return kv_vfs_sync_dir(v, "/db");
	case 15: return kv_vfs_remove(v, "/db/a");
	case 16: return kv_vfs_mkdir(v, "/db/sub");
	case 17: return s->a ? kv_file_sync(s->a) : -EIO;
	case 18: return kv_vfs_sync_dir(v, "/db");
	default: return -EINVAL;
	}
}

static void script_close(struct script *s)
{
	kv_file_close(s->a);
	kv_file_close(s->tmp);
	kv_file_close(s->lock);
	*s = (struct script){ NULL, NULL, NULL };
}

static void test_vfs__mem_crash_after_sweep(void **state)
{
	(void)state;
	/* A clean run: every step succeeds and counts once. */
	struct kv_vfs *v = kv_vfs_mem_new();
	struct script s = { NULL, NULL, NULL };
	for (int i = 0; i < SCRIPT_STEPS; i++)
		assert_int_equal(script_step(v, &s, i), 0);
	assert_int_equal(kv_vfs_mem_ops(v), SCRIPT_STEPS);
	script_close(&s);
	kv_vfs_destroy(v);

	for (int nth = 1; nth <= SCRIPT_STEPS + 1; nth++) {
		/* The reference stops by itself before step nth-1. */
		struct kv_vfs *ref = kv_vfs_mem_new();
		put_file(ref, "/warmup", "x");
		for (int i = 0; i < nth - 1 && i < SCRIPT_STEPS; i++)
			assert_int_equal(script_step(ref, &s, i), 0);
		char *want_now = snapshot(ref);
		kv_vfs_mem_crash(ref);
		char *want_durable = snapshot(ref);
		script_close(&s);
		kv_vfs_destroy(ref);

		v = kv_vfs_mem_new();
		put_file(v, "/warmup", "x"); /* crash_after counts from now */
		kv_vfs_mem_crash_after(v, (uint64_t)nth);
		for (int i = 0; i < SCRIPT_STEPS; i++) {
			int r = script_step(v, &s, i);
			if (i < nth - 1)
				assert_int_equal(r, 0);
			else
				assert_int_equal(r, -EIO);
		}
		assert_int_equal(kv_vfs_mem_tripped(v), nth <= SCRIPT_STEPS);
		/* One call past the script: the machine is dead, or dies now. */
		assert_int_equal(kv_vfs_remove(v, "/warmup"), -EIO);
		assert_true(kv_vfs_mem_tripped(v));
		char *now = snapshot(v); /* reads still work, and see current state */
		kv_vfs_mem_crash(v);
		assert_false(kv_vfs_mem_tripped(v));
		char *durable = snapshot(v);
		assert_string_equal(now, want_now);
		assert_string_equal(durable, want_durable);
		script_close(&s);
		/* The machine is back up. */
		assert_int_equal(kv_vfs_mkdir(v, "/after"), 0);
		free(now);
		free(durable);
		free(want_now);
		free(want_durable);
		kv_vfs_destroy(v);
	}
}

static void test_vfs__mem_reads_work_after_trip_and_recover_clears_it(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	put_file(v, "/t/a", "abc");
	kv_vfs_mem_crash_after(v, 1);
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), -EIO);
	assert_true(kv_vfs_mem_tripped(v));
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), -EIO);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), -EIO);
	assert_null(f);
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_READ, &f), 0);
	assert_file(v, "/t/a", "abc");
	assert_int_equal(kv_vfs_exists(v, "/t/a"), 0);
	assert_int_equal(kv_file_sync(f), -EIO);
	kv_vfs_mem_recover(v);
	assert_false(kv_vfs_mem_tripped(v));
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_int_equal(kv_vfs_mkdir(v, "/t/d"), 0);
	/* Nothing was crashed: unsynced state is still there. */
	assert_file(v, "/t/a", "abc");
	/* crash_after(0) disables a pending trip. */
	kv_vfs_mem_crash_after(v, 2);
	kv_vfs_mem_crash_after(v, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_false(kv_vfs_mem_tripped(v));
}

static void test_vfs__mem_crash_clears_faults(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	kv_vfs_mem_tear_next_write(v, 1);
	kv_vfs_mem_fail_next(v, 5, ENOSPC);
	kv_vfs_mem_crash_after(v, 7);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	for (int i = 0; i < 10; i++)
		put_file(v, "/a", "whole");
	assert_false(kv_vfs_mem_tripped(v));
	assert_file(v, "/a", "whole");
	/* A positive errno is taken as its negative. */
	kv_vfs_mem_fail_next(v, 1, ENOSPC);
	assert_int_equal(kv_vfs_mkdir(v, "/x"), -ENOSPC);
}

static void test_vfs__mem_ops_counts_modifying_calls_only(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	put_file(v, "/t/a", "abc"); /* open, append, sync */
	uint64_t ops = kv_vfs_mem_ops(v);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_READ, &f), 0);
	char buf[4];
	uint64_t size;
	assert_int_equal(kv_file_pread(f, buf, 3, 0), 3);
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_int_equal(kv_vfs_exists(v, "/t/a"), 0);
	char got[16];
	list_joined(v, "/t", got, sizeof got);
	assert_int_equal(kv_vfs_mem_ops(v), ops);
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_vfs_mem_ops(v), ops + 1);
	assert_int_equal(kv_file_close(f), 0);
	/* A call that fails on its own still counts. */
	assert_int_equal(kv_vfs_remove(v, "/t/nope"), -ENOENT);
	assert_int_equal(kv_vfs_mem_ops(v), ops + 2);
}

static void test_vfs__mem_flip_bit_changes_current_and_durable(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "aaaa");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t/a", 1, 0), 0); /* 'a' ^ 1 = '`' */
	assert_file(v, "/t/a", "a`aa");
	/* Current and durable held apart by an unsynced overwrite. */
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "bbbb", 4, 0), 0);
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t/a", 2, 1), 0); /* 'b'^2='`', 'a'^2='c' */
	assert_file(v, "/t/a", "bb`b");
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t/a", 4, 0), -EINVAL);
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t/a", 0, 8), -EINVAL);
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t/nope", 0, 0), -ENOENT);
	assert_int_equal(kv_vfs_mem_flip_bit(v, "/t", 0, 0), -EISDIR);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/a", "a`ca");
}

static void test_vfs__mem_truncate_file_cuts_current_and_durable(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "0123456789");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_append(f, "abc", 3), 0);
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/a", 11), 0);
	assert_file(v, "/t/a", "0123456789a");
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/a", 100), 0); /* never extends */
	assert_file(v, "/t/a", "0123456789a");
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/a", 4), 0);
	assert_file(v, "/t/a", "0123");
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/nope", 4), -ENOENT);
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/a", "0123");
	/* With current and durable held apart. */
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "AB", 2, 0), 0);
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/a", 1), 0);
	assert_file(v, "/t/a", "A");
	kv_vfs_mem_crash(v);
	kv_file_close(f);
	assert_file(v, "/t/a", "0");
	assert_int_equal(kv_vfs_mem_truncate_file(v, "/t/a", 0), 0);
	kv_vfs_mem_crash(v);
	assert_file(v, "/t/a", "");
}

static void test_vfs__mem_stale_handles_after_crash(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	put_file(v, "/t/a", "abc");
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	struct kv_file *f = NULL, *g = NULL;
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_vfs_open(v, "/t/b", KV_VFS_WRITE | KV_VFS_CREATE, &g), 0);
	kv_vfs_mem_crash(v);
	uint64_t ops = kv_vfs_mem_ops(v);
	char buf[4];
	uint64_t size;
	assert_int_equal(kv_file_pread(f, buf, 3, 0), -EIO);
	assert_int_equal(kv_file_pwrite(f, "x", 1, 0), -EIO);
	assert_int_equal(kv_file_append(f, "x", 1), -EIO);
	assert_int_equal(kv_file_sync(f), -EIO);
	assert_int_equal(kv_file_size(f, &size), -EIO);
	assert_int_equal(kv_file_truncate(f, 0), -EIO);
	assert_int_equal(kv_file_close(f), -EIO);
	/* g's file is gone; its stale handle is still freed cleanly. */
	assert_int_equal(kv_file_append(g, "x", 1), -EIO);
	assert_int_equal(kv_file_close(g), -EIO);
	assert_int_equal(kv_vfs_mem_ops(v), ops);
	assert_file(v, "/t/a", "abc");
}

static void test_vfs__mem_lock_released_on_crash(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	assert_int_equal(kv_vfs_sync_dir(v, "/"), 0);
	struct kv_file *a = NULL, *b = NULL;
	assert_int_equal(kv_vfs_lock(v, "/t/LOCK", &a), 0);
	assert_int_equal(kv_vfs_sync_dir(v, "/t"), 0);
	assert_int_equal(kv_vfs_lock(v, "/t/LOCK", &b), -EBUSY);
	/* Locks belong to the inode: a renamed lock file stays locked. */
	assert_int_equal(kv_vfs_rename(v, "/t/LOCK", "/t/LOCK2"), 0);
	assert_int_equal(kv_vfs_lock(v, "/t/LOCK2", &b), -EBUSY);
	kv_vfs_mem_crash(v);
	assert_int_equal(kv_vfs_lock(v, "/t/LOCK", &b), 0);
	assert_int_equal(kv_file_close(a), -EIO); /* stale: must not unlock b */
	struct kv_file *c = NULL;
	assert_int_equal(kv_vfs_lock(v, "/t/LOCK", &c), -EBUSY);
	assert_int_equal(kv_file_close(b), 0);
}

static void test_vfs__mem_bytes_written_counts_accepted_bytes(void **state)
{
	struct fx *fx = *state;
	struct kv_vfs *v = fx->vfs;
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_mem_bytes_written(v), 0);
	assert_int_equal(kv_vfs_open(v, "/t/a", KV_VFS_WRITE | KV_VFS_CREATE, &f), 0);
	assert_int_equal(kv_file_append(f, "abcd", 4), 0);
	assert_int_equal(kv_file_pwrite(f, "xy", 2, 1), 0);
	kv_vfs_mem_fail_next(v, 1, -ENOSPC);
	assert_int_equal(kv_file_append(f, "nope", 4), -ENOSPC);
	kv_vfs_mem_tear_next_write(v, 1);
	assert_int_equal(kv_file_append(f, "torn", 4), -EIO);
	assert_int_equal(kv_vfs_mem_bytes_written(v), 7);
	assert_int_equal(kv_file_close(f), 0);
}

/* ---- registration ------------------------------------------------------ */

#define BOTH(fn)                                                               \
	{ #fn "/posix", fn, setup_posix, teardown_posix, NULL },               \
	{ #fn "/mem", fn, setup_mem, teardown_mem, NULL }
#define MEM(fn) { #fn, fn, setup_mem, teardown_mem, NULL }

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_vfs__open_missing_file_fails),
		BOTH(test_vfs__create_excl_refuses_existing),
		BOTH(test_vfs__trunc_empties_file),
		BOTH(test_vfs__pwrite_pread_round_trip),
		BOTH(test_vfs__append_writes_at_end),
		BOTH(test_vfs__truncate_shrinks_and_extends_with_zeros),
		BOTH(test_vfs__read_exact_past_end_is_corrupt),
		BOTH(test_vfs__read_only_handle_refuses_writes),
		BOTH(test_vfs__rename_replaces_target),
		BOTH(test_vfs__rename_missing_fails),
		BOTH(test_vfs__remove_drops_entry),
		BOTH(test_vfs__open_handle_survives_remove),
		BOTH(test_vfs__list_returns_files_and_dirs),
		BOTH(test_vfs__exists_sees_files_and_dirs),
		BOTH(test_vfs__mkdir_creates_and_refuses_existing),
		BOTH(test_vfs__sync_dir_accepts_dirs_only),
		BOTH(test_vfs__lock_conflicts_until_close),
		BOTH(test_vfs__duplicate_slashes_are_ignored),
		BOTH(test_vfs__concurrent_pread_during_append),
		MEM(test_vfs__mem_paths_normalize),
		MEM(test_vfs__mem_unsynced_bytes_vanish_on_crash),
		MEM(test_vfs__mem_synced_bytes_survive_crash),
		MEM(test_vfs__mem_unsynced_file_with_durable_entry_comes_back_empty),
		MEM(test_vfs__mem_created_file_vanishes_without_sync_dir),
		MEM(test_vfs__mem_created_file_survives_with_sync_dir),
		MEM(test_vfs__mem_mkdir_needs_parent_sync_dir),
		MEM(test_vfs__mem_rename_without_sync_dir_is_undone),
		MEM(test_vfs__mem_rename_with_sync_dir_survives),
		MEM(test_vfs__mem_rename_across_dirs_needs_both_synced),
		MEM(test_vfs__mem_remove_without_sync_dir_is_undone),
		MEM(test_vfs__mem_removed_open_file_keeps_durable_link),
		MEM(test_vfs__mem_overwrite_after_sync_keeps_durable_copy),
		MEM(test_vfs__mem_torn_append_keeps_exact_prefix),
		MEM(test_vfs__mem_torn_pwrite_keeps_exact_prefix),
		MEM(test_vfs__mem_fail_next_changes_nothing),
		MEM(test_vfs__mem_crash_after_sweep),
		MEM(test_vfs__mem_reads_work_after_trip_and_recover_clears_it),
		MEM(test_vfs__mem_crash_clears_faults),
		MEM(test_vfs__mem_ops_counts_modifying_calls_only),
		MEM(test_vfs__mem_flip_bit_changes_current_and_durable),
		MEM(test_vfs__mem_truncate_file_cuts_current_and_durable),
		MEM(test_vfs__mem_stale_handles_after_crash),
		MEM(test_vfs__mem_lock_released_on_crash),
		MEM(test_vfs__mem_bytes_written_counts_accepted_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
