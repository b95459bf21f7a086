/*
 * test_chunkstore.c - chunk bodies in files (node/chunkstore.h;
 * doc/storage-format.md "Chunk store"), over the in-memory, fault-injecting
 * VFS: put/get/exists/delete, both stored forms ("KVC2" and the old
 * "KVCK"), put-if-absent, damaged files answered with
 * KV_ECORRUPT and never a crash, temp files removed at open, and a crash at
 * every modifying operation of a put and of a delete, checked against the
 * rules: an acknowledged body survives whole; an unacknowledged one is
 * whole or absent, never damaged; no temp file outlives a reopen.
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
#include "node/chunkstore.h"
#include "node/node.h"
#include "ring/keys.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/slice.h"

#define DIR "data/chunks"
#define MAX_BYTES (64u * 1024)

/* A stored form of @n pattern bytes, and a hash (any 32 bytes: the store
 * never hashes): "KVC2" ‖ le32 n ‖ le64 XXH3-64 ‖ n bytes, or with @kvck
 * the old form "KVCK" ‖ le32 n ‖ n bytes. */
static void make_body_form(struct kv_buf *stored, uint8_t hash[KV_CHUNKSTORE_HASH_LEN], size_t n,
			   unsigned seed, bool kvck)
{
	kv_buf_init(stored);
	assert_int_equal(kv_buf_append(stored, kvck ? "KVCK" : "KVC2", 4), 0);
	assert_int_equal(kv_buf_append_le32(stored, (uint32_t)n), 0);
	size_t hdr = kvck ? KV_NODE_CHUNK_HEADER_KVCK : KV_NODE_CHUNK_HEADER;
	if (!kvck)
		assert_int_equal(kv_buf_append_le64(stored, 0), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(kv_buf_append_u8(stored, (uint8_t)(seed * 7 + i * 13 + (i >> 8))), 0);
	if (!kvck)
		kv_put_le64(stored->p + 8, kv_hash64(stored->p + hdr, n));
	for (size_t i = 0; i < KV_CHUNKSTORE_HASH_LEN; i++)
		hash[i] = (uint8_t)(seed * 31 + i);
}

static void make_body(struct kv_buf *stored, uint8_t hash[KV_CHUNKSTORE_HASH_LEN], size_t n,
		      unsigned seed)
{
	make_body_form(stored, hash, n, seed, false);
}

static void body_path(char *dst, size_t cap, const uint8_t *hash)
{
	int k = snprintf(dst, cap, "%s/%02x/", DIR, hash[0]);
	for (size_t i = 0; i < KV_CHUNKSTORE_HASH_LEN; i++)
		k += snprintf(dst + k, cap - (size_t)k, "%02x", hash[i]);
}

static struct kv_chunkstore *open_store(struct kv_vfs *vfs, struct kv_chunkstore_open_report *rep)
{
	struct kv_chunkstore *cs = NULL;
	int rc = kv_vfs_mkdir(vfs, "data");
	assert_true(rc == 0 || rc == -EEXIST);
	assert_int_equal(kv_vfs_sync_dir(vfs, "/"), 0); /* the data directory is durable */
	assert_int_equal(kv_chunkstore_open(vfs, DIR, MAX_BYTES, &cs, rep), 0);
	assert_non_null(cs);
	return cs;
}

static void expect_body(struct kv_chunkstore *cs, const uint8_t *hash, const struct kv_buf *want)
{
	struct kv_buf got = KV_BUF_INIT;
	assert_int_equal(kv_chunkstore_get(cs, hash, &got), 0);
	assert_int_equal(got.n, want->n);
	assert_memory_equal(got.p, want->p, want->n);
	kv_buf_release(&got);
}

static int count_one(void *arg, const uint8_t hash[KV_CHUNKSTORE_HASH_LEN])
{
	(void)hash;
	(*(int *)arg)++;
	return 0;
}

static int count_bodies(struct kv_chunkstore *cs)
{
	int n = 0;
	assert_int_equal(kv_chunkstore_each(cs, count_one, &n), 0);
	return n;
}

static void test_chunkstore__put_get_exists_delete(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a, b;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN], hb[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 5000, 1);
	make_body(&b, hb, 0, 2); /* an empty chunk is a chunk */
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	struct kv_buf got = KV_BUF_INIT;
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ENOTFOUND);
	assert_int_equal(got.n, 0);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	assert_int_equal(kv_chunkstore_put(cs, hb, kv_buf_slice(&b)), 0);
	assert_int_equal(kv_chunkstore_exists(cs, ha), 0);
	expect_body(cs, ha, &a);
	expect_body(cs, hb, &b);
	char path[256];
	body_path(path, sizeof path, ha);
	assert_int_equal(kv_vfs_exists(vfs, path), 0);
	assert_int_equal(count_bodies(cs), 2);
	assert_int_equal(kv_chunkstore_delete(cs, ha), 0);
	assert_int_equal(kv_chunkstore_delete(cs, ha), KV_ENOTFOUND);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ENOTFOUND);
	expect_body(cs, hb, &b);
	assert_int_equal(count_bodies(cs), 1);
	struct kv_chunkstore_stats st;
	kv_chunkstore_get_stats(cs, &st);
	assert_int_equal(st.puts, 2);
	assert_int_equal(st.bytes_written, a.n + b.n);
	assert_int_equal(st.deletes, 1);
	/* Everything acknowledged survives a power cut. */
	kv_chunkstore_close(cs);
	kv_vfs_mem_crash(vfs);
	cs = open_store(vfs, NULL);
	expect_body(cs, hb, &b);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	kv_buf_release(&got);
	kv_buf_release(&a);
	kv_buf_release(&b);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

/*
 * Under the node's sync=none a put is answered from the page cache: it
 * reads back at once, and a power cut may take it (no fsync was made).
 */
static void test_chunkstore__nosync_put_skips_every_fsync(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	kv_chunkstore_set_sync(cs, false);
	struct kv_buf a;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 3000, 7);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	expect_body(cs, ha, &a);
	kv_chunkstore_close(cs);
	kv_vfs_mem_crash(vfs);
	cs = open_store(vfs, NULL);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	/* Back to the default: acknowledged means durable again. */
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	kv_chunkstore_close(cs);
	kv_vfs_mem_crash(vfs);
	cs = open_store(vfs, NULL);
	expect_body(cs, ha, &a);
	kv_chunkstore_close(cs);
	kv_buf_release(&a);
	kv_vfs_destroy(vfs);
}

static void test_chunkstore__put_is_idempotent(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 4096, 3);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	uint64_t written = kv_vfs_mem_bytes_written(vfs);
	for (int i = 0; i < 3; i++)
		assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 1);
	assert_int_equal(kv_vfs_mem_bytes_written(vfs), written); /* nothing rewritten */
	struct kv_chunkstore_stats st;
	kv_chunkstore_get_stats(cs, &st);
	assert_int_equal(st.puts, 1);
	assert_int_equal(st.puts_existing, 3);
	expect_body(cs, ha, &a);
	kv_buf_release(&a);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

static void test_chunkstore__both_stored_forms_are_accepted(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a, b, c, d;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN], hb[KV_CHUNKSTORE_HASH_LEN];
	uint8_t hc[KV_CHUNKSTORE_HASH_LEN], hd[KV_CHUNKSTORE_HASH_LEN];
	/* Each form, at the limit and empty. */
	make_body_form(&a, ha, MAX_BYTES, 11, false);
	make_body_form(&b, hb, MAX_BYTES, 12, true);
	make_body_form(&c, hc, 0, 13, false);
	make_body_form(&d, hd, 0, 14, true);
	assert_int_equal(a.n, KV_NODE_CHUNK_HEADER + MAX_BYTES);
	assert_int_equal(b.n, KV_NODE_CHUNK_HEADER_KVCK + MAX_BYTES);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	assert_int_equal(kv_chunkstore_put(cs, hb, kv_buf_slice(&b)), 0);
	assert_int_equal(kv_chunkstore_put(cs, hc, kv_buf_slice(&c)), 0);
	assert_int_equal(kv_chunkstore_put(cs, hd, kv_buf_slice(&d)), 0);
	expect_body(cs, ha, &a);
	expect_body(cs, hb, &b);
	expect_body(cs, hc, &c);
	expect_body(cs, hd, &d);
	/* The header parser itself: the header's size and the bytes. */
	struct kv_slice bytes;
	assert_int_equal(kv_node_chunk_body_split(kv_buf_slice(&a), &bytes), KV_NODE_CHUNK_HEADER);
	assert_ptr_equal(bytes.p, a.p + KV_NODE_CHUNK_HEADER);
	assert_int_equal(bytes.n, MAX_BYTES);
	assert_int_equal(kv_node_chunk_body_split(kv_buf_slice(&b), &bytes),
			 KV_NODE_CHUNK_HEADER_KVCK);
	assert_ptr_equal(bytes.p, b.p + KV_NODE_CHUNK_HEADER_KVCK);
	assert_int_equal(bytes.n, MAX_BYTES);
	assert_int_equal(kv_node_chunk_body_split(kv_slice_make(a.p, 12), &bytes), KV_ECORRUPT);
	assert_int_equal(bytes.n, 0);
	assert_int_equal(count_bodies(cs), 4);
	kv_buf_release(&a);
	kv_buf_release(&b);
	kv_buf_release(&c);
	kv_buf_release(&d);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

static void test_chunkstore__bad_stored_form_is_refused(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 100, 4);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_slice_make(a.p, 7)), KV_EINVAL);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_slice_make(a.p, a.n - 1)), KV_EINVAL);
	a.p[0] = 'X';
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), KV_EINVAL);
	kv_buf_release(&a);
	make_body(&a, ha, MAX_BYTES + 1, 4);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), KV_EINVAL);
	kv_buf_release(&a);
	make_body_form(&a, ha, MAX_BYTES + 1, 4, true);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), KV_EINVAL);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_slice_make(a.p, 5)), KV_EINVAL);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	assert_int_equal(count_bodies(cs), 0);
	kv_buf_release(&a);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

/* Writes @bytes as the file at @path (a hand-made body). */
static void write_file(struct kv_vfs *vfs, const char *path, const void *bytes, size_t n)
{
	struct kv_file *f = NULL;
	assert_int_equal(kv_vfs_open(vfs, path, KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f), 0);
	if (n)
		assert_int_equal(kv_file_pwrite(f, bytes, n, 0), 0);
	assert_int_equal(kv_file_close(f), 0);
}

static void test_chunkstore__damaged_file_is_corrupt_not_a_crash(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a, got = KV_BUF_INIT;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	char path[256];
	make_body(&a, ha, 3000, 5);
	body_path(path, sizeof path, ha);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	/* Truncated: shorter than the length it claims. */
	assert_int_equal(kv_vfs_mem_truncate_file(vfs, path, 1000), 0);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	assert_int_equal(got.n, 0);
	/* Put-if-absent replaces a body of the wrong size. */
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	expect_body(cs, ha, &a);
	/* Each header field the store checks: the magic, and the length (the
	 * checksum is the node's to check: test_node_chunk.c). */
	for (uint64_t off = 0; off < 8; off++) {
		assert_int_equal(kv_vfs_mem_flip_bit(vfs, path, off, 2), 0);
		assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
		assert_int_equal(kv_vfs_mem_flip_bit(vfs, path, off, 2), 0);
	}
	expect_body(cs, ha, &a);
	/* The same for the old form. */
	struct kv_buf old;
	uint8_t hold[KV_CHUNKSTORE_HASH_LEN];
	char opath[256];
	make_body_form(&old, hold, 3000, 9, true);
	body_path(opath, sizeof opath, hold);
	assert_int_equal(kv_chunkstore_put(cs, hold, kv_buf_slice(&old)), 0);
	for (uint64_t off = 0; off < KV_NODE_CHUNK_HEADER_KVCK; off++) {
		assert_int_equal(kv_vfs_mem_flip_bit(vfs, opath, off, 2), 0);
		assert_int_equal(kv_chunkstore_get(cs, hold, &got), KV_ECORRUPT);
		assert_int_equal(kv_vfs_mem_flip_bit(vfs, opath, off, 2), 0);
	}
	expect_body(cs, hold, &old);
	assert_int_equal(kv_vfs_mem_truncate_file(vfs, opath, 1000), 0);
	assert_int_equal(kv_chunkstore_get(cs, hold, &got), KV_ECORRUPT);
	kv_buf_release(&old);
	/* Shorter than a header, empty, longer than it claims, above the limit. */
	const uint8_t tiny[5] = { 'K', 'V', 'C', 'K', 0 };
	write_file(vfs, path, tiny, sizeof tiny);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	/* Past the old form's 8-byte header, short of its own 16. */
	const uint8_t tiny2[12] = { 'K', 'V', 'C', '2', 0, 0, 0, 0 };
	write_file(vfs, path, tiny2, sizeof tiny2);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	write_file(vfs, path, NULL, 0);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	assert_int_equal(kv_buf_append_u8(&a, 0), 0);
	write_file(vfs, path, a.p, a.n);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	struct kv_buf big;
	make_body(&big, ha, MAX_BYTES + 10, 5);
	write_file(vfs, path, big.p, big.n);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	assert_int_equal(got.n, 0);
	kv_buf_release(&big);
	/* One byte above the limit, in the old form: within the new form's
	 * file size, refused by the length. */
	make_body_form(&big, ha, MAX_BYTES + 1, 5, true);
	write_file(vfs, path, big.p, big.n);
	assert_int_equal(kv_chunkstore_get(cs, ha, &got), KV_ECORRUPT);
	assert_int_equal(got.n, 0);
	/* A directory where a body should be. */
	assert_int_equal(kv_chunkstore_delete(cs, ha), 0);
	assert_int_equal(kv_vfs_mkdir(vfs, path), 0);
	assert_true(kv_chunkstore_get(cs, ha, &got) < 0);
	kv_buf_release(&big);
	kv_buf_release(&got);
	kv_buf_release(&a);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

static void test_chunkstore__open_removes_temp_files(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	char path[256], tmp[300], stray[300];
	make_body(&a, ha, 100, 6);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	kv_chunkstore_close(cs);
	body_path(path, sizeof path, ha);
	snprintf(tmp, sizeof tmp, "%s.7.tmp", path);
	snprintf(stray, sizeof stray, "%s/%02x/README", DIR, ha[0]);
	write_file(vfs, tmp, a.p, 20);
	write_file(vfs, stray, "hi", 2);
	struct kv_chunkstore_open_report rep;
	cs = open_store(vfs, &rep);
	assert_int_equal(rep.temps_removed, 1);
	assert_int_equal(rep.strays, 1);
	assert_int_equal(kv_vfs_exists(vfs, tmp), -ENOENT);
	assert_int_equal(kv_vfs_exists(vfs, stray), 0);
	expect_body(cs, ha, &a);
	assert_int_equal(count_bodies(cs), 1);
	kv_buf_release(&a);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

static void test_chunkstore__failed_write_leaves_no_body(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	struct kv_buf a;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 2000, 7);
	/* ENOSPC, then a torn write: an error and no body. */
	kv_vfs_mem_fail_next(vfs, 1, -ENOSPC);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), -ENOSPC);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	kv_vfs_mem_tear_next_write(vfs, 100);
	assert_true(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)) < 0);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	kv_vfs_mem_crash(vfs);
	kv_chunkstore_close(cs);
	struct kv_chunkstore_open_report rep;
	cs = open_store(vfs, &rep);
	assert_int_equal(kv_chunkstore_exists(cs, ha), KV_ENOTFOUND);
	assert_int_equal(count_bodies(cs), 0);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	expect_body(cs, ha, &a);
	kv_buf_release(&a);
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
}

/* Counts temp files left in the whole store (none after an open). */
static int count_temps(struct kv_vfs *vfs)
{
	int n = 0;
	char sub[64];
	for (unsigned d = 0; d < 256; d++) {
		char **names = NULL;
		size_t count = 0;
		snprintf(sub, sizeof sub, "%s/%02x", DIR, d);
		assert_int_equal(kv_vfs_list(vfs, sub, &names, &count), 0);
		for (size_t i = 0; i < count; i++)
			n += strstr(names[i], ".tmp") != NULL;
		kv_vfs_names_free(names, count);
	}
	return n;
}

/*
 * The machine dies at the nth modifying operation of a put (and then of a
 * delete), for every n: after the power cut and a reopen, an acknowledged
 * put is whole, an unacknowledged one is whole or absent (never damaged),
 * an acknowledged delete is gone, and no temp file is left.
 */
static void test_chunkstore__crash_at_every_step(void **state)
{
	(void)state;
	struct kv_buf a, old;
	uint8_t ha[KV_CHUNKSTORE_HASH_LEN], hold[KV_CHUNKSTORE_HASH_LEN];
	make_body(&a, ha, 9000, 8);
	make_body(&old, hold, 500, 9);
	/* A clean run: how many operations a put and a delete take. */
	struct kv_vfs *vfs = kv_vfs_mem_new();
	struct kv_chunkstore *cs = open_store(vfs, NULL);
	uint64_t o0 = kv_vfs_mem_ops(vfs);
	assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
	uint64_t put_ops = kv_vfs_mem_ops(vfs) - o0;
	o0 = kv_vfs_mem_ops(vfs);
	assert_int_equal(kv_chunkstore_delete(cs, ha), 0);
	uint64_t del_ops = kv_vfs_mem_ops(vfs) - o0;
	kv_chunkstore_close(cs);
	kv_vfs_destroy(vfs);
	assert_true(put_ops >= 4); /* create, write, sync, rename, sync dir */
	assert_true(del_ops >= 2); /* remove, sync dir */

	for (int phase = 0; phase < 2; phase++) {
		uint64_t steps = phase == 0 ? put_ops : del_ops;
		for (uint64_t nth = 1; nth <= steps + 1; nth++) {
			vfs = kv_vfs_mem_new();
			cs = open_store(vfs, NULL);
			/* Another body, durable before: it must never suffer. */
			assert_int_equal(kv_chunkstore_put(cs, hold, kv_buf_slice(&old)), 0);
			if (phase == 1)
				assert_int_equal(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)), 0);
			kv_vfs_mem_crash_after(vfs, nth);
			int rc = phase == 0 ? kv_chunkstore_put(cs, ha, kv_buf_slice(&a))
					    : kv_chunkstore_delete(cs, ha);
			kv_chunkstore_close(cs);
			kv_vfs_mem_crash(vfs);
			cs = open_store(vfs, NULL);
			assert_int_equal(count_temps(vfs), 0);
			expect_body(cs, hold, &old);
			struct kv_buf got = KV_BUF_INIT;
			int g = kv_chunkstore_get(cs, ha, &got);
			if (phase == 0 && rc == 0)
				assert_int_equal(g, 0);
			if (phase == 1 && rc == 0)
				assert_int_equal(g, KV_ENOTFOUND);
			if (g != KV_ENOTFOUND) {
				if (g != 0)
					print_message("phase %d, crash at op %llu: get %d\n", phase,
						      (unsigned long long)nth, g);
				assert_int_equal(g, 0);
				assert_int_equal(got.n, a.n);
				assert_memory_equal(got.p, a.p, a.n);
			}
			/* After recovery the store works again. */
			assert_true(kv_chunkstore_put(cs, ha, kv_buf_slice(&a)) >= 0);
			expect_body(cs, ha, &a);
			kv_buf_release(&got);
			kv_chunkstore_close(cs);
			kv_vfs_destroy(vfs);
		}
	}
	kv_buf_release(&a);
	kv_buf_release(&old);
}

/* The driver routes by kv_node_chunk_skey_hash(): bodies only, strictly. */
static void test_chunkstore__only_body_keys_go_to_the_store(void **state)
{
	(void)state;
	uint8_t key[KV_NODE_CHUNK_KEY_LEN] = { 0, 'c' }, hash[KV_NODE_CHUNK_HASH_LEN];
	for (size_t i = 0; i < KV_NODE_CHUNK_HASH_LEN; i++)
		key[2 + i] = (uint8_t)(i * 37 + 1);
	key[5] = 0; /* an escaped 00 inside the hash */
	struct kv_buf skey = KV_BUF_INIT, rkey = KV_BUF_INIT, rval = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, kv_slice_make(key, sizeof key)), 0);
	assert_true(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	assert_memory_equal(hash, key + 2, sizeof hash);
	/* A suffix, a cut, another position: not a body key. */
	assert_int_equal(kv_buf_append_u8(&skey, 0), 0);
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	assert_false(kv_node_chunk_skey_hash(kv_slice_make(skey.p, skey.n - 2), hash));
	skey.n--;
	skey.p[0] ^= 1;
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	/* The record of the same chunk, a path, a hole, a short chunk key. */
	assert_int_equal(kv_node_chunk_record_encode(key + 2, 5, 1, &rkey, &rval), 0);
	assert_int_equal(rkey.n, KV_NODE_CHUNK_RECORD_KEY_LEN);
	assert_int_equal(rval.n, KV_NODE_CHUNK_RECORD_SIZE);
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&rkey), hash));
	kv_buf_reset(&skey);
	assert_int_equal(kv_skey_encode(&skey, kv_slice_str("/a/b")), 0);
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	uint8_t hole[KV_NODE_CHUNK_KEY_LEN] = { 0, 'c' };
	kv_buf_reset(&skey);
	assert_int_equal(kv_skey_encode(&skey, kv_slice_make(hole, sizeof hole)), 0);
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	kv_buf_reset(&skey);
	assert_int_equal(kv_skey_encode(&skey, kv_slice_make(key, sizeof key - 1)), 0);
	assert_false(kv_node_chunk_skey_hash(kv_buf_slice(&skey), hash));
	assert_false(kv_node_chunk_skey_hash(kv_slice_make(NULL, 0), hash));
	kv_buf_release(&skey);
	kv_buf_release(&rkey);
	kv_buf_release(&rval);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunkstore__put_get_exists_delete),
		cmocka_unit_test(test_chunkstore__put_is_idempotent),
		cmocka_unit_test(test_chunkstore__nosync_put_skips_every_fsync),
		cmocka_unit_test(test_chunkstore__both_stored_forms_are_accepted),
		cmocka_unit_test(test_chunkstore__bad_stored_form_is_refused),
		cmocka_unit_test(test_chunkstore__damaged_file_is_corrupt_not_a_crash),
		cmocka_unit_test(test_chunkstore__open_removes_temp_files),
		cmocka_unit_test(test_chunkstore__failed_write_leaves_no_body),
		cmocka_unit_test(test_chunkstore__crash_at_every_step),
		cmocka_unit_test(test_chunkstore__only_body_keys_go_to_the_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
