/*
 * test_fs_object.c - the file object (fuse/object.h): the metadata codec
 * (round trips, canonical bytes, the worked example of doc/fs-format.md, a
 * corruption test for each field, seeded mutations), the body check against
 * the metadata, and xattr sections. The mutation test prints its seed;
 * KV_SEED=... replays it. With KV_FS_WRITE_CORPUS=DIR set, the sample
 * encodings are written into DIR (the seed corpus of
 * tests/fuzz/fuzz_fs_meta.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fuse/chunk.h"
#include "fuse/object.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

/* ---- helpers ---- */

static struct kv_fs_meta base_meta(uint8_t type)
{
	struct kv_fs_meta m;
	memset(&m, 0, sizeof m);
	m.type = type;
	m.mode = type == KV_FS_DIR ? 0755 : 0644;
	m.uid = 1000;
	m.gid = 100;
	m.mtime_ns = 1700000000123456789LL;
	m.ctime_ns = 1700000000987654321LL;
	if (type == KV_FS_FILE)
		kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_slice_str("hello\n"), 0);
	if (type == KV_FS_SYMLINK) {
		m.target = kv_slice_str("../target");
		m.size = m.target.n;
	}
	return m;
}

/* An xattr section with user.a = "1" and user.b = "two", built with the helpers. */
static void two_xattrs(struct kv_buf *section)
{
	struct kv_buf tmp = KV_BUF_INIT;
	assert_int_equal(kv_fs_xattr_set(kv_slice_make(NULL, 0), kv_slice_str("user.b"),
					 kv_slice_str("two"), 0, &tmp), 0);
	assert_int_equal(kv_fs_xattr_set(kv_buf_slice(&tmp), kv_slice_str("user.a"),
					 kv_slice_str("1"), 0, section), 0);
	kv_buf_release(&tmp);
}

static void assert_meta_equal(const struct kv_fs_meta *a, const struct kv_fs_meta *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->storage, b->storage);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->mtime_ns, b->mtime_ns);
	assert_int_equal(a->ctime_ns, b->ctime_ns);
	assert_memory_equal(a->content_hash, b->content_hash, KV_FS_HASH_LEN);
	assert_true(kv_slice_eq(a->target, b->target));
	assert_int_equal(kv_fs_xattr_count(a->xattrs), kv_fs_xattr_count(b->xattrs));
}

static void write_corpus(const char *name, struct kv_slice bytes)
{
	const char *dir = getenv("KV_FS_WRITE_CORPUS");
	if (!dir)
		return;
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes.p, 1, bytes.n, f), bytes.n);
	fclose(f);
}

/* Encodes @m, decodes it back, checks equality and canonical bytes. */
static void roundtrip(const struct kv_fs_meta *m, const char *corpus_name)
{
	struct kv_buf enc = KV_BUF_INIT, again = KV_BUF_INIT;
	struct kv_fs_meta back;
	assert_int_equal(kv_fs_meta_encode(m, &enc), 0);
	assert_true(enc.n <= KV_FS_META_MAX);
	assert_int_equal(kv_fs_meta_decode(kv_buf_slice(&enc), &back), 0);
	assert_meta_equal(m, &back);
	assert_int_equal(kv_fs_meta_encode(&back, &again), 0);
	assert_int_equal(again.n, enc.n);
	assert_memory_equal(again.p, enc.p, enc.n);
	write_corpus(corpus_name, kv_buf_slice(&enc));
	kv_buf_release(&enc);
	kv_buf_release(&again);
}

/* ---- metadata ---- */

static void test_fs_object__meta_roundtrips_every_type(void **state)
{
	struct kv_buf xattrs = KV_BUF_INIT;
	two_xattrs(&xattrs);

	struct kv_fs_meta m = base_meta(KV_FS_FILE);
	roundtrip(&m, "file-inline");
	m.xattrs = kv_buf_slice(&xattrs);
	roundtrip(&m, "file-xattrs");
	kv_fs_meta_set_body(&m, KV_FS_STORE_CHUNKED, kv_slice_str("a manifest"), 5u << 30);
	roundtrip(&m, "file-chunked");
	m = base_meta(KV_FS_FILE);
	kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_slice_make(NULL, 0), 0);
	roundtrip(&m, "file-empty");
	m = base_meta(KV_FS_DIR);
	m.mtime_ns = -1; /* before 1970 */
	roundtrip(&m, "dir");
	m = base_meta(KV_FS_SYMLINK);
	m.xattrs = kv_buf_slice(&xattrs);
	roundtrip(&m, "symlink");
	kv_buf_release(&xattrs);
}

/* The worked example of doc/fs-format.md#metadata, to the byte. */
static const char example_hex[] =
	"6b46" "01" "01" "01"    /* magic "kF", format 1, file, inline */
	"00" "a401"              /* reserved, mode 0644 */
	"e8030000" "64000000"    /* uid 1000, gid 100 */
	"0600000000000000"       /* size 6 */
	"15002a36fe9c9717"       /* mtime */
	"31002a36fe9c9717"       /* ctime */
	"93becc6e9882211c3ec3708c95bcd69baab7bb59c7f4bc84ce637b88a534b783" /* BLAKE2b-256("hello\n") */
	"0000"                   /* no target */
	"0100"                   /* one xattr */
	"09" "757365722e6d696d65" /* "user.mime" */
	"0a00" "746578742f706c61696e"; /* "text/plain" */

static void test_fs_object__meta_worked_example(void **state)
{
	struct kv_buf xattrs = KV_BUF_INIT, enc = KV_BUF_INIT;
	struct kv_fs_meta m;
	memset(&m, 0, sizeof m);
	m.type = KV_FS_FILE;
	m.mode = 0644;
	m.uid = 1000;
	m.gid = 100;
	m.mtime_ns = 1700000000000000021LL;
	m.ctime_ns = 1700000000000000049LL;
	kv_fs_meta_set_body(&m, KV_FS_STORE_INLINE, kv_slice_str("hello\n"), 0);
	assert_int_equal(kv_fs_xattr_set(kv_slice_make(NULL, 0), kv_slice_str("user.mime"),
					 kv_slice_str("text/plain"), 0, &xattrs), 0);
	m.xattrs = kv_buf_slice(&xattrs);
	assert_int_equal(kv_fs_meta_encode(&m, &enc), 0);

	char hex[2 * 256 + 1] = "";
	assert_true(enc.n < 256);
	for (size_t i = 0; i < enc.n; i++)
		snprintf(hex + 2 * i, 3, "%02x", enc.p[i]);
	if (getenv("KV_FS_PRINT_EXAMPLE"))
		printf("meta example (%zu bytes): %s\n", enc.n, hex);
	/* The hash bytes depend on BLAKE2b only; the rest is fixed by the layout. */
	assert_int_equal(enc.n, 98);
	assert_string_equal(hex, example_hex);
	kv_buf_release(&xattrs);
	kv_buf_release(&enc);
}

static void test_fs_object__meta_encoder_refuses_broken_rules(void **state)
{
	struct kv_buf enc = KV_BUF_INIT;
	struct kv_fs_meta m;
	char big[KV_FS_TARGET_MAX + 2];
	memset(big, 'x', sizeof big);

#define REFUSED(setup)                                                          \
	do {                                                                    \
		setup;                                                          \
		assert_int_equal(kv_fs_meta_encode(&m, &enc), KV_EINVAL);       \
		assert_int_equal(enc.n, 0);                                     \
	} while (0)

	REFUSED((m = base_meta(KV_FS_FILE), m.type = 0));
	REFUSED((m = base_meta(KV_FS_FILE), m.type = 4));
	REFUSED((m = base_meta(KV_FS_FILE), m.mode = 010644)); /* a type bit */
	REFUSED((m = base_meta(KV_FS_FILE), m.storage = KV_FS_STORE_NONE));
	REFUSED((m = base_meta(KV_FS_FILE), m.storage = 3));
	REFUSED((m = base_meta(KV_FS_FILE), m.size = KV_FS_INLINE_HARD_MAX + 1));
	REFUSED((m = base_meta(KV_FS_FILE), m.storage = KV_FS_STORE_CHUNKED, m.size = 0));
	REFUSED((m = base_meta(KV_FS_FILE), m.storage = KV_FS_STORE_CHUNKED,
		 m.size = KV_FS_FILE_MAX + 1));
	REFUSED((m = base_meta(KV_FS_FILE), m.target = kv_slice_str("x")));
	REFUSED((m = base_meta(KV_FS_DIR), m.size = 1));
	REFUSED((m = base_meta(KV_FS_DIR), m.storage = KV_FS_STORE_INLINE));
	REFUSED((m = base_meta(KV_FS_DIR), m.content_hash[31] = 1));
	REFUSED((m = base_meta(KV_FS_DIR), m.target = kv_slice_str("x"), m.size = 1));
	REFUSED((m = base_meta(KV_FS_SYMLINK), m.size = 3));
	REFUSED((m = base_meta(KV_FS_SYMLINK), m.target = kv_slice_make(NULL, 0), m.size = 0));
	REFUSED((m = base_meta(KV_FS_SYMLINK), m.target = kv_slice_make("a\0b", 3), m.size = 3));
	REFUSED((m = base_meta(KV_FS_SYMLINK), m.target = kv_slice_make(big, KV_FS_TARGET_MAX + 1),
		 m.size = KV_FS_TARGET_MAX + 1));
	REFUSED((m = base_meta(KV_FS_SYMLINK), m.content_hash[0] = 1));
	REFUSED((m = base_meta(KV_FS_FILE), m.xattrs = kv_slice_make("\x01\x00", 2)));
#undef REFUSED

	/* The largest symlink target is fine. */
	m = base_meta(KV_FS_SYMLINK);
	m.target = kv_slice_make(big, KV_FS_TARGET_MAX);
	m.size = KV_FS_TARGET_MAX;
	roundtrip(&m, "symlink-longest");
	kv_buf_release(&enc);
}

static void test_fs_object__meta_largest_fits_the_put_limit(void **state)
{
	struct kv_buf a = KV_BUF_INIT, b = KV_BUF_INIT;
	char target[KV_FS_TARGET_MAX], name[32];
	static char value[4000];
	memset(target, 't', sizeof target);
	memset(value, 'v', sizeof value);
	/* Fill the xattr section until it refuses. */
	int rc = 0;
	for (int i = 0; rc == 0; i++) {
		snprintf(name, sizeof name, "user.%04d", i);
		rc = kv_fs_xattr_set(kv_buf_slice(&a), kv_slice_str(name),
				     kv_slice_make(value, sizeof value), 0, &b);
		if (rc == 0) {
			struct kv_buf t = a;
			a = b;
			b = t;
		}
	}
	assert_int_equal(rc, -ENOSPC);
	assert_true(a.n <= KV_FS_XATTRS_MAX);
	/* Top it up with small values. */
	rc = 0;
	for (int i = 0; rc == 0; i++) {
		snprintf(name, sizeof name, "user.z%05d", i);
		rc = kv_fs_xattr_set(kv_buf_slice(&a), kv_slice_str(name), kv_slice_str(""), 0, &b);
		if (rc == 0) {
			struct kv_buf t = a;
			a = b;
			b = t;
		}
	}
	assert_true(a.n > KV_FS_XATTRS_MAX - 16);

	struct kv_fs_meta m = base_meta(KV_FS_SYMLINK);
	m.target = kv_slice_make(target, sizeof target);
	m.size = sizeof target;
	m.xattrs = kv_buf_slice(&a);
	struct kv_buf enc = KV_BUF_INIT;
	assert_int_equal(kv_fs_meta_encode(&m, &enc), 0);
	assert_true(enc.n <= KV_FS_META_MAX);
	roundtrip(&m, "largest");
	kv_buf_release(&enc);
	kv_buf_release(&a);
	kv_buf_release(&b);
}

/* Decodes @enc with byte @at set to @val. */
static int decode_patched(const struct kv_buf *enc, size_t at, uint8_t val)
{
	struct kv_fs_meta m;
	uint8_t *copy = malloc(enc->n);
	assert_non_null(copy);
	memcpy(copy, enc->p, enc->n);
	copy[at] = val;
	int rc = kv_fs_meta_decode(kv_slice_make(copy, enc->n), &m);
	free(copy);
	return rc;
}

static void test_fs_object__meta_decoder_rejects_each_bad_field(void **state)
{
	struct kv_buf xattrs = KV_BUF_INIT, enc = KV_BUF_INIT;
	two_xattrs(&xattrs);
	struct kv_fs_meta m = base_meta(KV_FS_SYMLINK), out;
	m.xattrs = kv_buf_slice(&xattrs);
	assert_int_equal(kv_fs_meta_encode(&m, &enc), 0);
	/* Layout: fixed 72, target_len 2, target 9 ("../target"), section. */
	const size_t tl = 72, tg = 74, xs = 74 + 9;

	assert_int_equal(decode_patched(&enc, 0, 'K'), KV_ECORRUPT);   /* magic */
	assert_int_equal(decode_patched(&enc, 1, 'f'), KV_ECORRUPT);   /* magic */
	assert_int_equal(decode_patched(&enc, 2, 2), KV_EVERSION);     /* format */
	assert_int_equal(decode_patched(&enc, 2, 0), KV_EVERSION);
	assert_int_equal(decode_patched(&enc, 3, 0), KV_ECORRUPT);     /* type */
	assert_int_equal(decode_patched(&enc, 3, 9), KV_ECORRUPT);
	assert_int_equal(decode_patched(&enc, 3, KV_FS_DIR), KV_ECORRUPT); /* a dir with a target */
	assert_int_equal(decode_patched(&enc, 4, KV_FS_STORE_INLINE), KV_ECORRUPT); /* storage */
	assert_int_equal(decode_patched(&enc, 5, 1), KV_ECORRUPT);     /* reserved */
	assert_int_equal(decode_patched(&enc, 7, 0x10), KV_ECORRUPT);  /* mode beyond 07777 */
	assert_int_equal(decode_patched(&enc, 16, 8), KV_ECORRUPT);    /* size != target length */
	assert_int_equal(decode_patched(&enc, 23, 1), KV_ECORRUPT);    /* size, high byte */
	assert_int_equal(decode_patched(&enc, 40, 1), KV_ECORRUPT);    /* hash must be zero */
	assert_int_equal(decode_patched(&enc, tl, 0), KV_ECORRUPT);    /* target length 0 */
	assert_int_equal(decode_patched(&enc, tl, 200), KV_ECORRUPT);  /* target past the end */
	assert_int_equal(decode_patched(&enc, tl + 1, 0x10), KV_ECORRUPT); /* above 4095 */
	assert_int_equal(decode_patched(&enc, tg + 2, 0), KV_ECORRUPT); /* NUL in target */
	assert_int_equal(decode_patched(&enc, xs, 1), KV_ECORRUPT);    /* xattr count low */
	assert_int_equal(decode_patched(&enc, xs, 3), KV_ECORRUPT);    /* xattr count high */
	assert_int_equal(decode_patched(&enc, xs + 1, 1), KV_ECORRUPT);
	assert_int_equal(decode_patched(&enc, xs + 2, 0), KV_ECORRUPT); /* name length 0 */
	assert_int_equal(decode_patched(&enc, xs + 2, 200), KV_ECORRUPT); /* name past the end */
	assert_int_equal(decode_patched(&enc, xs + 3 + 5, 0), KV_ECORRUPT); /* NUL in a name */
	assert_int_equal(decode_patched(&enc, xs + 3 + 5, 'c'), KV_ECORRUPT); /* user.c > user.b: unsorted */
	assert_int_equal(decode_patched(&enc, xs + 3 + 5, 'b'), KV_ECORRUPT); /* duplicate */
	assert_int_equal(decode_patched(&enc, xs + 3 + 6, 0), KV_ECORRUPT); /* value length short */
	assert_int_equal(decode_patched(&enc, xs + 3 + 6, 9), KV_ECORRUPT); /* value past the end */
	/* A value byte and the times are content: they decode. */
	assert_int_equal(decode_patched(&enc, xs + 3 + 6 + 2, '9'), 0);
	assert_int_equal(decode_patched(&enc, 24, 0xff), 0);

	/* Every truncation and a trailing byte. */
	for (size_t n = 0; n < enc.n; n++)
		assert_int_not_equal(kv_fs_meta_decode(kv_slice_make(enc.p, n), &out), 0);
	assert_int_equal(kv_buf_append_u8(&enc, 0), 0);
	assert_int_equal(kv_fs_meta_decode(kv_buf_slice(&enc), &out), KV_ECORRUPT);
	/* A tombstone's empty metadata is not an object. */
	assert_int_equal(kv_fs_meta_decode(kv_slice_make(NULL, 0), &out), KV_ECORRUPT);
	kv_buf_release(&xattrs);
	kv_buf_release(&enc);
}

static void test_fs_object__meta_mutations_never_crash_and_stay_canonical(void **state)
{
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_fs_object__meta_mutations_never_crash_and_stay_canonical"));
	struct kv_buf xattrs = KV_BUF_INIT, enc = KV_BUF_INIT, again = KV_BUF_INIT;
	two_xattrs(&xattrs);
	struct kv_fs_meta samples[3] = { base_meta(KV_FS_FILE), base_meta(KV_FS_DIR),
					 base_meta(KV_FS_SYMLINK) };
	samples[0].xattrs = kv_buf_slice(&xattrs);
	int accepted = 0;
	for (int iter = 0; iter < 20000; iter++) {
		kv_buf_reset(&enc);
		assert_int_equal(kv_fs_meta_encode(&samples[iter % 3], &enc), 0);
		int flips = 1 + (int)kv_rng_below(&rng, 3);
		for (int f = 0; f < flips; f++)
			enc.p[kv_rng_below(&rng, enc.n)] = (uint8_t)kv_rng_next(&rng);
		size_t n = kv_rng_below(&rng, 8) == 0 ? kv_rng_below(&rng, enc.n + 1) : enc.n;
		/* A heap copy of exactly n bytes, so ASan sees any overread. */
		uint8_t *copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, enc.p, n);
		struct kv_fs_meta m;
		if (kv_fs_meta_decode(kv_slice_make(copy, n), &m) == 0) {
			accepted++;
			kv_buf_reset(&again);
			assert_int_equal(kv_fs_meta_encode(&m, &again), 0);
			assert_int_equal(again.n, n);
			assert_memory_equal(again.p, copy, n);
		}
		free(copy);
	}
	assert_true(accepted > 0);
	kv_buf_release(&xattrs);
	kv_buf_release(&enc);
	kv_buf_release(&again);
}

/* ---- bodies ---- */

static void test_fs_object__body_check_inline(void **state)
{
	struct kv_fs_meta m = base_meta(KV_FS_FILE);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_str("hello\n"), NULL), 0);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_str("hellO\n"), NULL), KV_ECORRUPT);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_str("hello"), NULL), KV_ECORRUPT);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_make(NULL, 0), NULL), KV_ECORRUPT);
	m = base_meta(KV_FS_DIR);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_make(NULL, 0), NULL), 0);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_str("x"), NULL), KV_ECORRUPT);
}

static void test_fs_object__body_check_chunked(void **state)
{
	struct kv_fs_manifest mf, out;
	struct kv_buf body = KV_BUF_INIT;
	uint8_t h[KV_FS_HASH_LEN];
	kv_fs_hash("c0", 2, h);
	kv_fs_manifest_init(&mf, KV_FS_CHUNK_SHIFT);
	kv_fs_manifest_init(&out, 0);
	assert_int_equal(kv_fs_manifest_append(&mf, h, KV_FS_CHUNK_SIZE), 0);
	assert_int_equal(kv_fs_manifest_append(&mf, NULL, 77), 0);
	assert_int_equal(kv_fs_manifest_encode(&mf, &body), 0);

	struct kv_fs_meta m = base_meta(KV_FS_FILE);
	kv_fs_meta_set_body(&m, KV_FS_STORE_CHUNKED, kv_buf_slice(&body), KV_FS_CHUNK_SIZE + 77);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_buf_slice(&body), &out), 0);
	assert_int_equal(out.n, 2);
	assert_int_equal(out.chunks[1].len, 77);
	/* The size must agree with the manifest. */
	m.size++;
	assert_int_equal(kv_fs_meta_check_body(&m, kv_buf_slice(&body), NULL), KV_ECORRUPT);
	m.size--;
	/* A flipped body byte fails the hash. */
	body.p[10] ^= 1;
	assert_int_equal(kv_fs_meta_check_body(&m, kv_buf_slice(&body), NULL), KV_ECORRUPT);
	/* A body whose hash matches but is no manifest. */
	kv_fs_meta_set_body(&m, KV_FS_STORE_CHUNKED, kv_slice_str("junk"), 4);
	assert_int_equal(kv_fs_meta_check_body(&m, kv_slice_str("junk"), NULL), KV_ECORRUPT);

	kv_buf_release(&body);
	kv_fs_manifest_release(&mf);
	kv_fs_manifest_release(&out);
}

/* ---- xattrs ---- */

static void test_fs_object__xattr_set_get_remove_list(void **state)
{
	struct kv_buf a = KV_BUF_INIT, b = KV_BUF_INIT, names = KV_BUF_INIT;
	struct kv_slice v;
	struct kv_slice none = kv_slice_make(NULL, 0);

	assert_int_equal(kv_fs_xattr_get(none, kv_slice_str("user.x"), &v), -ENODATA);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_str("user.x"), kv_slice_str("1"),
					 KV_FS_XATTR_REPLACE, &a), -ENODATA);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_str("user.x"), kv_slice_str("1"),
					 KV_FS_XATTR_CREATE, &a), 0);
	assert_int_equal(kv_fs_xattr_set(kv_buf_slice(&a), kv_slice_str("user.x"), kv_slice_str("2"),
					 KV_FS_XATTR_CREATE, &b), -EEXIST);
	assert_int_equal(kv_fs_xattr_set(kv_buf_slice(&a), kv_slice_str("security.y"),
					 kv_slice_str(""), 0, &b), 0);
	/* Sorted: security.y before user.x. */
	assert_int_equal(kv_fs_xattr_list(kv_buf_slice(&b), &names), 18);
	assert_memory_equal(names.p, "security.y\0user.x\0", 18);
	assert_int_equal(kv_fs_xattr_count(kv_buf_slice(&b)), 2);
	assert_int_equal(kv_fs_xattr_check(kv_buf_slice(&b)), 0);
	/* Replace in place. */
	assert_int_equal(kv_fs_xattr_set(kv_buf_slice(&b), kv_slice_str("user.x"),
					 kv_slice_str("three"), KV_FS_XATTR_REPLACE, &a), 0);
	assert_int_equal(kv_fs_xattr_get(kv_buf_slice(&a), kv_slice_str("user.x"), &v), 0);
	assert_true(kv_slice_eq(v, kv_slice_str("three")));
	assert_int_equal(kv_fs_xattr_get(kv_buf_slice(&a), kv_slice_str("security.y"), &v), 0);
	assert_int_equal(v.n, 0);
	/* Remove. */
	assert_int_equal(kv_fs_xattr_remove(kv_buf_slice(&a), kv_slice_str("user.q"), &b), -ENODATA);
	assert_int_equal(kv_fs_xattr_remove(kv_buf_slice(&a), kv_slice_str("security.y"), &b), 0);
	assert_int_equal(kv_fs_xattr_count(kv_buf_slice(&b)), 1);
	assert_int_equal(kv_fs_xattr_remove(kv_buf_slice(&b), kv_slice_str("user.x"), &a), 0);
	assert_int_equal(kv_fs_xattr_count(kv_buf_slice(&a)), 0);
	assert_int_equal(a.n, 2);

	kv_buf_release(&a);
	kv_buf_release(&b);
	kv_buf_release(&names);
}

static void test_fs_object__xattr_refuses_bad_names(void **state)
{
	struct kv_buf a = KV_BUF_INIT;
	char longname[KV_FS_XATTR_NAME_MAX + 2];
	memset(longname, 'n', sizeof longname);
	struct kv_slice none = kv_slice_make(NULL, 0), val = kv_slice_str("v");
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_str(""), val, 0, &a), -EINVAL);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_make("a\0b", 3), val, 0, &a), -EINVAL);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_str("user.x"), val,
					 KV_FS_XATTR_CREATE | KV_FS_XATTR_REPLACE, &a), -EINVAL);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_make(longname, KV_FS_XATTR_NAME_MAX + 1),
					 val, 0, &a), -ERANGE);
	assert_int_equal(kv_fs_xattr_set(none, kv_slice_make(longname, KV_FS_XATTR_NAME_MAX), val,
					 0, &a), 0);
	/* A corrupt section is reported, not extended. */
	assert_int_equal(kv_fs_xattr_set(kv_slice_make("\x05\x00", 2), kv_slice_str("user.x"), val,
					 0, &a), -EIO);
	kv_buf_release(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fs_object__meta_roundtrips_every_type),
		cmocka_unit_test(test_fs_object__meta_worked_example),
		cmocka_unit_test(test_fs_object__meta_encoder_refuses_broken_rules),
		cmocka_unit_test(test_fs_object__meta_largest_fits_the_put_limit),
		cmocka_unit_test(test_fs_object__meta_decoder_rejects_each_bad_field),
		cmocka_unit_test(test_fs_object__meta_mutations_never_crash_and_stay_canonical),
		cmocka_unit_test(test_fs_object__body_check_inline),
		cmocka_unit_test(test_fs_object__body_check_chunked),
		cmocka_unit_test(test_fs_object__xattr_set_get_remove_list),
		cmocka_unit_test(test_fs_object__xattr_refuses_bad_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
