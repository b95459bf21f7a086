/*
 * vfs_fx.h - whole-file helpers for the VFS tests (test_vfs.c,
 * test_vfs_mem_data.c). Include after <cmocka.h>.
 */
#ifndef KV_TEST_VFS_FX_H
#define KV_TEST_VFS_FX_H

#include <stdlib.h>
#include <string.h>

#include "lsm/vfs.h"

/* Creates (or replaces) @path holding @s, fsynced. */
static inline void put_file(struct kv_vfs *v, const char *path, const char *s)
{
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(v, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f), 0);
	assert_int_equal(kv_file_append(f, s, strlen(s)), 0);
	assert_int_equal(kv_file_sync(f), 0);
	assert_int_equal(kv_file_close(f), 0);
}

/* The whole file at @path as a NUL-terminated malloc'd string, or NULL. */
static inline char *get_file(struct kv_vfs *v, const char *path)
{
	struct kv_file *f = NULL;
	if (kv_vfs_open(v, path, KV_VFS_READ, &f))
		return NULL;
	uint64_t size = 0;
	assert_int_equal(kv_file_size(f, &size), 0);
	char *s = malloc((size_t)size + 1);
	assert_non_null(s);
	assert_int_equal(kv_file_read_exact(f, s, (size_t)size, 0), 0);
	s[size] = '\0';
	assert_int_equal(kv_file_close(f), 0);
	return s;
}

static inline void assert_file(struct kv_vfs *v, const char *path, const char *want)
{
	char *got = get_file(v, path);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

#endif
