/*
 * test_vfs_direct.c - KV_VFS_DIRECT (src/lsm/vfs.h): bulk files written
 * with O_DIRECT where the file system allows it read back exactly as
 * written, whatever the alignment of buffer, length and offset, over the
 * POSIX VFS (in a mkdtemp directory, and on tmpfs, which refuses O_DIRECT)
 * and the in-memory one (which ignores the flag). The rest of the VFS
 * contract: test_vfs.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir_fx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lsm/vfs.h"

struct fx {
	struct kv_vfs *vfs;
	char base[128];
	char path[256];
};

/* @rel below the fixture's base directory (valid until the next call). */
static const char *P(struct fx *fx, const char *rel)
{
	snprintf(fx->path, sizeof fx->path, "%s/%s", fx->base, rel);
	return fx->path;
}

static int setup_posix(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	fx->vfs = kv_vfs_posix();
	assert_true(kv_test_mkdtemp(fx->base, sizeof fx->base, "kvfs-test-vfs-direct"));
	*state = fx;
	return 0;
}

static int teardown_posix(void **state)
{
	struct fx *fx = *state;
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "d")), 0);
	assert_int_equal(kv_vfs_remove(fx->vfs, P(fx, "e")), 0);
	assert_int_equal(rmdir(fx->base), 0);
	free(fx);
	return 0;
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

/* The whole file at @path equals @want. */
static void assert_file(struct kv_vfs *v, const char *path, const char *want)
{
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, path, KV_VFS_READ, &f), 0);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, strlen(want));
	char buf[64];
	assert_true(size < sizeof buf);
	assert_int_equal(kv_file_read_exact(f, buf, (size_t)size, 0), 0);
	assert_memory_equal(buf, want, (size_t)size);
	assert_int_equal(kv_file_close(f), 0);
}

/*
 * KV_VFS_DIRECT changes nothing a caller sees: aligned and unaligned
 * buffers, lengths and offsets (direct I/O where allowed, the page cache
 * for the rest, or for all of it on tmpfs) read back byte for byte.
 */
static void test_vfs_direct__writes_read_back(void **state)
{
	struct fx *fx = *state;
	size_t big = (3u << 20) + 4096 + 5;
	uint8_t *src = malloc(big + 4096 + 1), *got = malloc(big + 4096);
	assert_non_null(src);
	assert_non_null(got);
	for (size_t i = 0; i < big + 4096 + 1; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 12));
	struct kv_file *f = NULL;
	int flags = KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_EXCL | KV_VFS_DIRECT;
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "d"), flags, &f), 0);
	/* Unaligned source (bounce buffer, several pieces) with a tail. */
	assert_int_equal(kv_file_pwrite(f, src + 1, big, 0), 0);
	/* Then an unaligned offset, then an append. */
	assert_int_equal(kv_file_pwrite(f, "XYZ", 3, 4097), 0);
	assert_int_equal(kv_file_append(f, "end", 3), 0);
	assert_int_equal(kv_file_sync(f), 0);
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	assert_int_equal(size, big + 3);
	assert_int_equal(kv_file_close(f), 0);
	memcpy(src + 1 + 4097, "XYZ", 3);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "d"), KV_VFS_READ, &f), 0);
	assert_int_equal(kv_file_read_exact(f, got, big + 3, 0), 0);
	assert_memory_equal(got, src + 1, big);
	assert_memory_equal(got + big, "end", 3);
	assert_int_equal(kv_file_close(f), 0);

	/* An aligned source, a whole number of blocks, at an aligned offset. */
	uint8_t *al = NULL;
	assert_int_equal(posix_memalign((void **)&al, 4096, 8192), 0);
	memset(al, 0xa5, 8192);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "e"), flags, &f), 0);
	assert_int_equal(kv_file_pwrite(f, al, 8192, 0), 0);
	assert_int_equal(kv_file_pwrite(f, al, 4096, 8192), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_int_equal(kv_vfs_open(fx->vfs, P(fx, "e"), KV_VFS_READ, &f), 0);
	assert_int_equal(kv_file_read_exact(f, got, 12288, 0), 0);
	for (size_t i = 0; i < 12288; i++)
		assert_int_equal(got[i], 0xa5);
	assert_int_equal(kv_file_close(f), 0);
	free(al);
	free(src);
	free(got);
}

/* Where O_DIRECT is refused at open (tmpfs), the page cache takes over. */
static void test_vfs_direct__falls_back_on_tmpfs(void **state)
{
	(void)state;
	char dir[] = "/dev/shm/kvfs-test-vfs-XXXXXX";
	if (!mkdtemp(dir))
		skip();
	char path[64];
	snprintf(path, sizeof path, "%s/f", dir);
	struct kv_vfs *v = kv_vfs_posix();
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_DIRECT, &f), 0);
	assert_int_equal(kv_file_pwrite(f, "hello", 5, 0), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
	assert_file(v, path, "hello");
	assert_int_equal(kv_vfs_remove(v, path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		{ "test_vfs_direct__writes_read_back/posix", test_vfs_direct__writes_read_back,
		  setup_posix, teardown_posix, NULL },
		{ "test_vfs_direct__writes_read_back/mem", test_vfs_direct__writes_read_back,
		  setup_mem, teardown_mem, NULL },
		cmocka_unit_test(test_vfs_direct__falls_back_on_tmpfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
