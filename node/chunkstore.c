/*
 * chunkstore.c - chunk bodies in files, outside the LSM (chunkstore.h).
 *
 * Format and crash rules: doc/storage-format.md "Chunk store". A body is
 * DIR/XX/<64 lowercase hex>; a write goes through DIR/XX/<hex>.<n>.tmp:
 * write, fdatasync, rename onto the final name, fsync of DIR/XX. So a name
 * without ".tmp" always holds bytes that were durable before the name
 * appeared, and a crash leaves at worst a temp file, removed at open.
 */
#include "node/chunkstore.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "util/error.h"

#define NSUBDIRS 256
#define HEX_LEN (2 * KV_CHUNKSTORE_HASH_LEN)
#define TMP_SUFFIX ".tmp"

struct kv_chunkstore {
	struct kv_vfs *vfs; /* borrowed */
	char *dir;
	size_t max_bytes;
	atomic_bool nosync; /* the node's sync=none: no fdatasync, no directory fsync */
	atomic_uint_fast64_t tmp_seq; /* unique temp names within this run */
	atomic_uint_fast64_t puts, puts_existing, bytes_written, gets, deletes;
};

/* ---- Names ------------------------------------------------------------ */

static void hex_of(const uint8_t *hash, char out[HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < KV_CHUNKSTORE_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[HEX_LEN] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parses a body name (exactly 64 lowercase hex digits) into @hash. */
static bool hash_of_name(const char *name, uint8_t hash[KV_CHUNKSTORE_HASH_LEN])
{
	if (strlen(name) != HEX_LEN)
		return false;
	for (size_t i = 0; i < KV_CHUNKSTORE_HASH_LEN; i++) {
		int hi = hex_digit(name[2 * i]), lo = hex_digit(name[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool is_temp_name(const char *name)
{
	size_t n = strlen(name), k = strlen(TMP_SUFFIX);
	return n > HEX_LEN + k && strcmp(name + n - k, TMP_SUFFIX) == 0;
}

static int subdir_path(const struct kv_chunkstore *cs, unsigned sub, char *dst, size_t cap)
{
	int k = snprintf(dst, cap, "%s/%02x", cs->dir, sub);
	return k < 0 || (size_t)k >= cap ? -ENAMETOOLONG : 0;
}

static int body_path(const struct kv_chunkstore *cs, const uint8_t *hash, char *dst, size_t cap)
{
	char hex[HEX_LEN + 1];
	hex_of(hash, hex);
	int k = snprintf(dst, cap, "%s/%02x/%s", cs->dir, hash[0], hex);
	return k < 0 || (size_t)k >= cap ? -ENAMETOOLONG : 0;
}

/* ---- Open and close ----------------------------------------------------- */

static int mkdir_if_missing(struct kv_vfs *vfs, const char *path, bool *created)
{
	int rc = kv_vfs_mkdir(vfs, path);
	if (rc == 0) {
		*created = true;
		return 0;
	}
	return rc == -EEXIST ? 0 : rc;
}

/* The directory holding @path ("." when it has no '/'), into @dst. */
static void parent_of(const char *path, char *dst, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL) {
		snprintf(dst, cap, ".");
		return;
	}
	size_t n = (size_t)(slash - path);
	if (n == 0)
		n = 1; /* "/x": the root */
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, path, n);
	dst[n] = '\0';
}

/* Removes the temp files of one subdirectory; counts what it saw. */
static int clean_subdir(struct kv_chunkstore *cs, const char *sub,
			struct kv_chunkstore_open_report *rep)
{
	char **names = NULL;
	size_t count = 0;
	int rc = kv_vfs_list(cs->vfs, sub, &names, &count);
	if (rc != 0)
		return rc;
	bool removed = false;
	char path[4200];
	uint8_t hash[KV_CHUNKSTORE_HASH_LEN];
	for (size_t i = 0; rc == 0 && i < count; i++) {
		if (hash_of_name(names[i], hash))
			continue;
		if (!is_temp_name(names[i])) {
			rep->strays++;
			continue;
		}
		int k = snprintf(path, sizeof path, "%s/%s", sub, names[i]);
		if (k < 0 || (size_t)k >= sizeof path)
			continue;
		rc = kv_vfs_remove(cs->vfs, path);
		if (rc == -ENOENT)
			rc = 0;
		removed = true;
		rep->temps_removed++;
	}
	kv_vfs_names_free(names, count);
	if (rc == 0 && removed)
		rc = kv_vfs_sync_dir(cs->vfs, sub);
	return rc;
}

int kv_chunkstore_open(struct kv_vfs *vfs, const char *dir, size_t max_bytes,
		       struct kv_chunkstore **out, struct kv_chunkstore_open_report *rep)
{
	struct kv_chunkstore_open_report local;
	struct kv_chunkstore *cs = NULL;
	char path[4200];
	bool created = false, sub_created = false;
	int rc;
	*out = NULL;
	if (rep == NULL)
		rep = &local;
	memset(rep, 0, sizeof *rep);
	if (strlen(dir) + 4 >= sizeof path - HEX_LEN - 32) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	cs = calloc(1, sizeof *cs);
	if (cs == NULL || (cs->dir = strdup(dir)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	cs->vfs = vfs;
	cs->max_bytes = max_bytes;
	rc = mkdir_if_missing(vfs, dir, &created);
	if (rc != 0)
		goto out;
	for (unsigned sub = 0; sub < NSUBDIRS; sub++) {
		rc = subdir_path(cs, sub, path, sizeof path);
		if (rc == 0)
			rc = mkdir_if_missing(vfs, path, &sub_created);
		if (rc == 0)
			rc = clean_subdir(cs, path, rep);
		if (rc != 0)
			goto out;
	}
	/* New directories are durable before any body goes into them. */
	if (sub_created && (rc = kv_vfs_sync_dir(vfs, dir)) != 0)
		goto out;
	if (created) {
		parent_of(dir, path, sizeof path);
		if ((rc = kv_vfs_sync_dir(vfs, path)) != 0)
			goto out;
	}
	*out = cs;
	cs = NULL;
out:
	kv_chunkstore_close(cs);
	return rc;
}

void kv_chunkstore_close(struct kv_chunkstore *cs)
{
	if (cs == NULL)
		return;
	free(cs->dir);
	free(cs);
}

/* ---- Bodies ------------------------------------------------------------- */

/* A well-formed stored form ("KVC2" or "KVCK", node/node.h) within the limit? */
static bool stored_valid(const struct kv_chunkstore *cs, struct kv_slice stored)
{
	struct kv_slice bytes;
	return kv_node_chunk_body_split(stored, &bytes) > 0 && bytes.n <= cs->max_bytes;
}

/* The size of the body file at @path: 0, or -ENOENT, or an error. */
static int file_size_of(struct kv_chunkstore *cs, const char *path, uint64_t *size)
{
	struct kv_file *f = NULL;
	int rc = kv_vfs_open(cs->vfs, path, KV_VFS_READ, &f);
	if (rc == 0)
		rc = kv_file_size(f, size);
	kv_file_close(f);
	return rc;
}

int kv_chunkstore_put(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN],
		      struct kv_slice stored)
{
	char dst[4200], tmp[4300], sub[4200];
	struct kv_file *f = NULL;
	bool tmp_made = false;
	uint64_t size = 0;
	if (!stored_valid(cs, stored))
		return KV_EINVAL;
	int rc = body_path(cs, hash, dst, sizeof dst);
	if (rc == 0)
		rc = subdir_path(cs, hash[0], sub, sizeof sub);
	if (rc != 0)
		return rc;
	/* Put-if-absent. A final name only ever holds bytes that were durable
	 * before it appeared, so the size is the check; one of another size
	 * (damaged) is replaced below. */
	rc = file_size_of(cs, dst, &size);
	if (rc == 0 && size == stored.n) {
		atomic_fetch_add_explicit(&cs->puts_existing, 1, memory_order_relaxed);
		return 1;
	}
	if (rc != 0 && rc != -ENOENT)
		return rc;
	uint64_t seq = atomic_fetch_add_explicit(&cs->tmp_seq, 1, memory_order_relaxed);
	int k = snprintf(tmp, sizeof tmp, "%s.%llu%s", dst, (unsigned long long)seq, TMP_SUFFIX);
	if (k < 0 || (size_t)k >= sizeof tmp)
		return -ENAMETOOLONG;
	/* Written once, read rarely and then whole: not worth the page cache
	 * (filling fresh cache pages cost more CPU than the rest of a put). */
	rc = kv_vfs_open(cs->vfs, tmp,
			 KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_EXCL | KV_VFS_TRUNC | KV_VFS_DIRECT, &f);
	if (rc != 0)
		goto out;
	tmp_made = true;
	bool sync = !atomic_load_explicit(&cs->nosync, memory_order_relaxed);
	rc = kv_file_pwrite(f, stored.p, stored.n, 0);
	if (rc == 0 && sync)
		rc = kv_file_sync(f);
	int crc = kv_file_close(f);
	f = NULL;
	if (rc == 0)
		rc = crc;
	if (rc != 0)
		goto out;
	rc = kv_vfs_rename(cs->vfs, tmp, dst);
	if (rc != 0)
		goto out;
	tmp_made = false;
	/* The name is durable once the directory is: only then is the body
	 * acknowledged (and its record written, doc/storage-format.md). */
	if (sync)
		rc = kv_vfs_sync_dir(cs->vfs, sub);
	if (rc == 0) {
		atomic_fetch_add_explicit(&cs->puts, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&cs->bytes_written, stored.n, memory_order_relaxed);
	}
out:
	kv_file_close(f);
	if (tmp_made)
		(void)kv_vfs_remove(cs->vfs, tmp); /* best effort; open removes the rest */
	return rc;
}

int kv_chunkstore_get(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN],
		      struct kv_buf *out)
{
	char path[4200];
	struct kv_file *f = NULL;
	uint64_t size = 0;
	kv_buf_reset(out);
	int rc = body_path(cs, hash, path, sizeof path);
	if (rc != 0)
		return rc;
	atomic_fetch_add_explicit(&cs->gets, 1, memory_order_relaxed);
	rc = kv_vfs_open(cs->vfs, path, KV_VFS_READ, &f);
	if (rc == -ENOENT) {
		rc = KV_ENOTFOUND;
		goto out;
	}
	if (rc == 0)
		rc = kv_file_size(f, &size);
	if (rc != 0)
		goto out;
	/* Bounded before any allocation: a file from disk is input. */
	if (size < KV_NODE_CHUNK_HEADER_KVCK ||
	    size > (uint64_t)cs->max_bytes + KV_NODE_CHUNK_HEADER) {
		rc = KV_ECORRUPT;
		goto out;
	}
	rc = kv_buf_reserve(out, (size_t)size);
	if (rc == 0)
		rc = kv_file_read_exact(f, out->p, (size_t)size, 0);
	if (rc != 0)
		goto out;
	out->n = (size_t)size;
	if (!stored_valid(cs, kv_buf_slice(out)))
		rc = KV_ECORRUPT;
out:
	kv_file_close(f);
	if (rc != 0)
		kv_buf_reset(out);
	return rc;
}

void kv_chunkstore_set_sync(struct kv_chunkstore *cs, bool sync)
{
	atomic_store_explicit(&cs->nosync, !sync, memory_order_relaxed);
}

int kv_chunkstore_exists(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN])
{
	char path[4200];
	int rc = body_path(cs, hash, path, sizeof path);
	if (rc == 0)
		rc = kv_vfs_exists(cs->vfs, path);
	return rc == -ENOENT ? KV_ENOTFOUND : rc;
}

int kv_chunkstore_delete(struct kv_chunkstore *cs, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN])
{
	char path[4200], sub[4200];
	int rc = body_path(cs, hash, path, sizeof path);
	if (rc == 0)
		rc = subdir_path(cs, hash[0], sub, sizeof sub);
	if (rc == 0)
		rc = kv_vfs_remove(cs->vfs, path);
	if (rc == -ENOENT)
		return KV_ENOTFOUND;
	if (rc == 0 && !atomic_load_explicit(&cs->nosync, memory_order_relaxed))
		rc = kv_vfs_sync_dir(cs->vfs, sub);
	if (rc == 0)
		atomic_fetch_add_explicit(&cs->deletes, 1, memory_order_relaxed);
	return rc;
}

int kv_chunkstore_each(struct kv_chunkstore *cs,
		       int (*fn)(void *arg, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN]), void *arg)
{
	char path[4200];
	uint8_t hash[KV_CHUNKSTORE_HASH_LEN];
	int rc = 0;
	for (unsigned sub = 0; rc == 0 && sub < NSUBDIRS; sub++) {
		char **names = NULL;
		size_t count = 0;
		rc = subdir_path(cs, sub, path, sizeof path);
		if (rc == 0)
			rc = kv_vfs_list(cs->vfs, path, &names, &count);
		if (rc == -ENOENT)
			rc = 0; /* removed by hand: nothing in it */
		for (size_t i = 0; rc == 0 && i < count; i++)
			if (hash_of_name(names[i], hash) && hash[0] == sub)
				rc = fn(arg, hash);
		kv_vfs_names_free(names, count);
	}
	return rc;
}

void kv_chunkstore_get_stats(struct kv_chunkstore *cs, struct kv_chunkstore_stats *out)
{
	out->puts = atomic_load_explicit(&cs->puts, memory_order_relaxed);
	out->puts_existing = atomic_load_explicit(&cs->puts_existing, memory_order_relaxed);
	out->bytes_written = atomic_load_explicit(&cs->bytes_written, memory_order_relaxed);
	out->gets = atomic_load_explicit(&cs->gets, memory_order_relaxed);
	out->deletes = atomic_load_explicit(&cs->deletes, memory_order_relaxed);
}
