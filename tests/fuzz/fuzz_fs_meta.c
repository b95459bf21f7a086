/*
 * fuzz_fs_meta.c - libFuzzer target for the file object's decoders
 * (fuse/object.h metadata and xattr sections, fuse/chunk.h manifests;
 * format: doc/fs-format.md).
 *
 * Any input must be rejected cleanly or decode to an object whose encoding
 * is exactly the input (both encodings are canonical); the xattr helpers
 * must answer every name the decoded section lists. Seed corpus:
 * tests/fuzz/corpus/fs_meta/ (regenerate the metadata samples with
 * KV_FS_WRITE_CORPUS=DIR build/tests/unit/test_fs_object).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/chunk.h"
#include "fuse/object.h"
#include "util/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same_bytes(const struct kv_buf *enc, const uint8_t *data, size_t size)
{
	if (enc->n != size || (size && memcmp(enc->p, data, size) != 0))
		abort();
}

static void fuzz_meta(struct kv_slice in)
{
	struct kv_fs_meta m;
	struct kv_buf enc = KV_BUF_INIT, names = KV_BUF_INIT, edited = KV_BUF_INIT;

	if (kv_fs_meta_decode(in, &m) != 0)
		return;
	if (kv_fs_meta_encode(&m, &enc) != 0)
		abort();
	check_same_bytes(&enc, in.p, in.n);

	/* Every listed name is found; removing it gives a valid, smaller section. */
	int listed = kv_fs_xattr_list(m.xattrs, &names);
	if (listed < 0)
		abort();
	size_t count = 0;
	for (size_t at = 0; at < names.n; count++) {
		size_t len = strlen((const char *)names.p + at);
		struct kv_slice name = kv_slice_make(names.p + at, len), value;
		if (kv_fs_xattr_get(m.xattrs, name, &value) != 0)
			abort();
		if (kv_fs_xattr_remove(m.xattrs, name, &edited) != 0 ||
		    kv_fs_xattr_check(kv_buf_slice(&edited)) != 0 ||
		    kv_fs_xattr_count(kv_buf_slice(&edited)) + 1 != kv_fs_xattr_count(m.xattrs))
			abort();
		at += len + 1;
	}
	if (count != kv_fs_xattr_count(m.xattrs))
		abort();
	kv_buf_release(&enc);
	kv_buf_release(&names);
	kv_buf_release(&edited);
}

static void fuzz_manifest(struct kv_slice in)
{
	struct kv_fs_manifest m;
	struct kv_buf enc = KV_BUF_INIT;
	kv_fs_manifest_init(&m, 0);
	if (kv_fs_manifest_decode(in, &m) == 0) {
		if (kv_fs_manifest_encode(&m, &enc) != 0)
			abort();
		check_same_bytes(&enc, in.p, in.n);
	}
	kv_buf_release(&enc);
	kv_fs_manifest_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A heap copy of exactly @size bytes, so ASan catches any overread. */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	fuzz_meta(kv_slice_make(copy, size));
	fuzz_manifest(kv_slice_make(copy, size));
	free(copy);
	return 0;
}
