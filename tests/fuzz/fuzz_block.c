/*
 * fuzz_block.c - libFuzzer target: arbitrary bytes as an SSTable block.
 * Format: doc/storage-format.md#sstable-blocks
 *
 * The first input byte picks what the rest is:
 *   0  block contents, bytewise order      1  block contents, internal keys
 *   2  a sealed block (payload ‖ trailer), decoded and then iterated
 * Every entry is read in full, and seeks go to keys taken from the input, so
 * any read outside the block shows up under ASan. Parsing must never crash;
 * errors are fine.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/ikey.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(struct kv_slice s)
{
	for (size_t i = 0; i < s.n; i++)
		sink ^= s.p[i];
}

static void exercise(const struct kv_block *b, kv_cmp_fn cmp, const uint8_t *data, size_t size)
{
	struct kv_block_cursor c;
	kv_block_cursor_init(&c, b, cmp);
	size_t n = 0;
	for (kv_block_cursor_seek_first(&c); kv_block_cursor_valid(&c) && n < 100000;
	     kv_block_cursor_next(&c), n++) {
		touch(kv_block_cursor_key(&c));
		touch(kv_block_cursor_value(&c));
	}
	/* Seek to slices of the input, and to nothing. */
	kv_block_cursor_seek(&c, kv_slice_make(NULL, 0));
	for (size_t i = 0; i + 1 < size && i < 64; i += 7) {
		size_t len = data[i] % 24;
		if (len > size - i - 1)
			len = size - i - 1;
		kv_block_cursor_seek(&c, kv_slice_make(data + i + 1, len));
		for (int k = 0; k < 4 && kv_block_cursor_valid(&c); k++) {
			touch(kv_block_cursor_key(&c));
			kv_block_cursor_next(&c);
		}
	}
	kv_block_cursor_release(&c);

	/* The same through the kv_iter wrapper. */
	struct kv_iter *it;
	if (kv_block_iter_new(b, cmp, false, &it) == 0) {
		kv_iter_seek(it, kv_slice_make(data, size < 9 ? size : 9));
		if (kv_iter_valid(it))
			touch(kv_iter_value(it));
		(void)kv_iter_status(it);
		kv_iter_destroy(it);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 3;
	/* An exact-size heap copy: ASan guards both of its ends. */
	size_t n = size - 1;
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, n);
	if (mode < 2) {
		struct kv_block b;
		if (kv_block_init(&b, kv_slice_make(copy, n)) == 0)
			exercise(&b, mode ? kv_ikey_cmp : kv_slice_cmp, copy, n);
	} else {
		struct kv_block *b;
		if (kv_block_decode(kv_slice_make(copy, n), &b) == 0) {
			exercise(b, kv_ikey_cmp, copy, n);
			kv_block_free(b);
		}
		if (kv_block_decode_unparsed(kv_slice_make(copy, n), &b) == 0) {
			touch(kv_slice_make(b->data, b->size));
			kv_block_free(b);
		}
	}
	free(copy);
	return 0;
}
