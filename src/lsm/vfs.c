/*
 * vfs.c - helpers shared by every VFS implementation (see vfs.h).
 */
#include "lsm/vfs.h"

#include <stdlib.h>
#include <time.h>

#include "util/error.h"

void kv_vfs_names_free(char **names, size_t count)
{
	if (!names)
		return;
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int kv_file_read_exact(struct kv_file *f, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = kv_file_pread(f, p, n, off);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return KV_ECORRUPT; /* the file ends before the data it claims */
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int kv_vfs_remove_gently(struct kv_vfs *v, const char *path)
{
	struct kv_file *f = NULL;
	uint64_t size = 0;
	if (kv_vfs_open(v, path, KV_VFS_WRITE, &f) == 0) {
		if (kv_file_size(f, &size) == 0) {
			while (size > KV_VFS_REMOVE_STEP) {
				size -= KV_VFS_REMOVE_STEP;
				if (kv_file_truncate(f, size) != 0)
					break;
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
		}
		kv_file_close(f);
	}
	return kv_vfs_remove(v, path);
}
