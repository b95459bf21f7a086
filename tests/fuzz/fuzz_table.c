/*
 * fuzz_table.c - libFuzzer target: arbitrary bytes as an SSTable file.
 * Format: doc/storage-format.md#sstables
 *
 * The input is written to a file in the in-memory VFS, opened as a table
 * (with a small block cache, so hits, misses and evictions all happen), then
 * scanned, and every key the scan yields is looked up again at its sequence,
 * plus a few keys taken from the input. Opening and reading must never crash
 * or read outside a buffer; the only errors allowed are KV_ECORRUPT and
 * -ENOMEM.
 *
 * Each input is tried twice: as it is, and "fixed up" - the footer's magic
 * and checksum, and every block envelope the footer and the index point at,
 * made valid - so the fuzzer gets past the checksums to the parsers behind.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/cache.h"
#include "lsm/ikey.h"
#include "lsm/table.h"
#include "lsm/vfs.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(struct kv_slice s)
{
	for (size_t i = 0; i < s.n; i++)
		sink ^= s.p[i];
}

static void lookups(struct kv_table *t, const uint8_t *data, size_t size)
{
	struct kv_buf v = KV_BUF_INIT, keys = KV_BUF_INIT;
	enum kv_entry_type type;
	/* Scan, remembering up to 64 keys (length-prefixed in @keys). */
	struct kv_iter *it = kv_table_iter(t, size % 2);
	if (!it)
		return;
	size_t n = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it) && n < 100000; kv_iter_next(it), n++) {
		struct kv_slice k = kv_iter_key(it);
		touch(k);
		touch(kv_iter_value(it));
		if (n < 64)
			kv_buf_append_lenbytes(&keys, k);
	}
	int scan = kv_iter_status(it);
	if (scan != 0 && scan != KV_ECORRUPT && scan != -ENOMEM)
		abort();
	/* Seeks to input slices. */
	for (size_t i = 0; i + 1 < size && i < 256; i += 37) {
		size_t len = data[i] % 40;
		if (len > size - i - 1)
			len = size - i - 1;
		kv_iter_seek(it, kv_slice_make(data + i + 1, len));
		if (kv_iter_valid(it))
			touch(kv_iter_key(it));
		kv_table_get(t, kv_slice_make(data + i + 1, len), KV_SEQ_MAX, &type, &v);
	}
	kv_iter_destroy(it);
	/* Every scanned key is found again at its own sequence. */
	for (size_t off = 0; off < keys.n;) {
		uint64_t len;
		int r = kv_varint_decode(keys.p + off, keys.n - off, &len);
		if (r < 0)
			abort();
		struct kv_slice k = kv_slice_make(keys.p + off + r, (size_t)len);
		off += (size_t)r + (size_t)len;
		struct kv_ikey ik;
		if (kv_ikey_parse(k, &ik))
			continue; /* the scan shows bad keys; get reports them */
		/*
		 * Not asserted found: a table with valid checksums may still hold
		 * keys out of order, which a lookup cannot find.
		 */
		int g = kv_table_get(t, ik.ukey, ik.seq, &type, &v);
		if (g == 1 && type == KV_TYPE_PUT)
			touch(kv_buf_slice(&v));
		else if (g < 0 && g != KV_ECORRUPT && g != -ENOMEM)
			abort(); /* the only errors an in-memory table can give */
	}
	kv_buf_release(&keys);
	kv_buf_release(&v);
}

/* Makes the envelope of the block at @off (payload @size) valid, if it fits. */
static bool fix_block(uint8_t *p, size_t n, uint64_t off, uint64_t size)
{
	if (off > n || size > n - off || KV_BLOCK_TRAILER > n - off - size)
		return false;
	uint8_t *t = p + off + size;
	t[0] &= 1; /* raw or lz4 */
	kv_put_le32(t + 1, (uint32_t)size);
	if (t[0] == KV_BLOCK_RAW)
		kv_put_le32(t + 5, (uint32_t)size);
	kv_put_le32(t + 9, kv_checksum32(p + off, (size_t)size + 9));
	return true;
}

static void fixup(uint8_t *p, size_t n)
{
	if (n < KV_TABLE_FOOTER)
		return;
	uint8_t *ft = p + n - KV_TABLE_FOOTER;
	kv_put_le16(ft + 48, KV_TABLE_MAJOR);
	kv_put_le64(ft + 56, KV_TABLE_MAGIC);
	kv_put_le32(ft + 52, kv_checksum32(ft, 52));
	size_t body = n - KV_TABLE_FOOTER;
	fix_block(p, body, kv_get_le64(ft + 16), kv_get_le64(ft + 24)); /* filter */
	fix_block(p, body, kv_get_le64(ft + 32), kv_get_le64(ft + 40)); /* meta */
	uint64_t io = kv_get_le64(ft), is = kv_get_le64(ft + 8);
	if (!fix_block(p, body, io, is))
		return;
	/* Then the data blocks the index points at. */
	struct kv_block *index;
	if (kv_block_decode(kv_slice_make(p + io, (size_t)is + KV_BLOCK_TRAILER), &index))
		return;
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, index, kv_ikey_cmp);
	int blocks = 0;
	for (kv_block_cursor_seek_first(&c); c.valid && blocks < 1000; kv_block_cursor_next(&c)) {
		struct kv_slice v = kv_block_cursor_value(&c);
		uint64_t off, size;
		int a = kv_varint_decode(v.p, v.n, &off);
		if (a < 0 || kv_varint_decode(v.p + a, v.n - (size_t)a, &size) < 0)
			break;
		fix_block(p, body, off, size);
		blocks++;
	}
	kv_block_cursor_release(&c);
	kv_block_free(index);
}

static void try_table(struct kv_vfs *vfs, struct kv_cache *cache, const uint8_t *data,
		      size_t size)
{
	struct kv_file *f;
	if (kv_vfs_open(vfs, "t.sst", KV_VFS_WRITE | KV_VFS_CREATE | KV_VFS_TRUNC, &f))
		abort();
	if (size && kv_file_append(f, data, size))
		abort();
	struct kv_table *t;
	/* A fresh file number each run, so cached blocks never leak across inputs. */
	static uint64_t number;
	number++;
	int r = kv_table_open(f, size, number, size % 3 ? cache : NULL, NULL, &t);
	if (r) {
		kv_file_close(f);
		return;
	}
	lookups(t, data, size);
	(void)kv_table_entries(t);
	(void)kv_table_offset_of(t, kv_slice_make(data, size < 16 ? size : 16));
	kv_table_unref(t);
	kv_cache_erase_file(cache, number);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kv_vfs *vfs;
	static struct kv_cache *cache;
	if (!vfs) {
		kv_log_set_level(KV_LOG_ERROR);
		vfs = kv_vfs_mem_new();
		if (!vfs || kv_cache_new_sharded(8 * 1024, 1, &cache))
			abort();
	}
	try_table(vfs, cache, data, size);
	uint8_t *fixed = malloc(size ? size : 1);
	if (!fixed)
		abort();
	if (size)
		memcpy(fixed, data, size);
	fixup(fixed, size);
	try_table(vfs, cache, fixed, size);
	free(fixed);
	return 0;
}
