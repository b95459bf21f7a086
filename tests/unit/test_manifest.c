/*
 * test_manifest.c - the manifest: round trips, the helpers, a corruption test
 * for every field (every truncation, every bit flip, each rule), the version
 * rule, and crash safety of the atomic replace on the in-memory VFS.
 *
 * Format: doc/storage-format.md#manifest
 *
 * With KV_CORPUS_OUT=DIR set, the seed corpus for tests/fuzz/fuzz_manifest.c
 * is (re)written into DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lsm/ikey.h"
#include "lsm/manifest.h"
#include "lsm/vfs.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/slice.h"

/* Offsets in the encoding (doc/storage-format.md#manifest). */
#define OFF_MAJOR 8
#define OFF_MINOR 10
#define OFF_BODY_LEN 12
#define OFF_NPROPS (16 + 24)
#define OFF_NTABLES (16 + 28)
#define OFF_FIRST_PROP (16 + 32)

static void ikey(struct kv_buf *b, const char *user, uint64_t seq)
{
	kv_buf_reset(b);
	assert_int_equal(kv_ikey_append(b, kv_slice_str(user), seq, KV_TYPE_PUT), 0);
}

static void add(struct kv_manifest *m, unsigned level, uint64_t number, const char *lo,
		const char *hi)
{
	struct kv_buf a = KV_BUF_INIT, b = KV_BUF_INIT;
	ikey(&a, lo, 100);
	ikey(&b, hi, 5);
	assert_int_equal(kv_manifest_add_table(m, level, number, number * 1000 + 1, number * 10,
					       kv_buf_slice(&a), kv_buf_slice(&b)),
			 0);
	kv_buf_release(&a);
	kv_buf_release(&b);
}

/* A small manifest with one property and three tables. */
static void sample(struct kv_manifest *m)
{
	kv_manifest_init(m);
	m->next_file_number = 20;
	m->last_sequence = 12345;
	m->log_number = 17;
	assert_int_equal(kv_manifest_set_prop(m, "epoch", 3), 0);
	add(m, 0, 12, "a", "m");
	add(m, 1, 9, "b", "c");
	add(m, 6, 4, "x", "zz");
}

static void encode(const struct kv_manifest *m, struct kv_buf *out)
{
	kv_buf_reset(out);
	assert_int_equal(kv_manifest_encode(m, out), 0);
}

static void assert_manifest_eq(const struct kv_manifest *a, const struct kv_manifest *b)
{
	assert_true(a->next_file_number == b->next_file_number);
	assert_true(a->last_sequence == b->last_sequence);
	assert_true(a->log_number == b->log_number);
	assert_int_equal(a->nprops, b->nprops);
	for (size_t i = 0; i < a->nprops; i++) {
		assert_string_equal(a->props[i].name, b->props[i].name);
		assert_true(a->props[i].value == b->props[i].value);
	}
	assert_int_equal(a->ntables, b->ntables);
	for (size_t i = 0; i < a->ntables; i++) {
		const struct kv_manifest_table *x = &a->tables[i], *y = &b->tables[i];
		assert_int_equal(x->level, y->level);
		assert_true(x->file_number == y->file_number);
		assert_true(x->file_size == y->file_size);
		assert_true(x->entries == y->entries);
		assert_true(kv_slice_eq(kv_buf_slice(&x->smallest), kv_buf_slice(&y->smallest)));
		assert_true(kv_slice_eq(kv_buf_slice(&x->largest), kv_buf_slice(&y->largest)));
	}
}

/* Recomputes the checksum after a test edited the bytes. */
static void reseal(struct kv_buf *b)
{
	kv_put_le32(b->p + b->n - 4, kv_checksum32(b->p, b->n - 4));
}

static int decode(const struct kv_buf *b)
{
	struct kv_manifest m;
	int rc = kv_manifest_decode(kv_buf_slice(b), &m);
	if (rc) {
		/* Left empty on failure. */
		assert_int_equal(m.ntables, 0);
		assert_int_equal(m.nprops, 0);
		assert_null(m.tables);
	}
	kv_manifest_release(&m);
	return rc;
}

/* ---- Round trips and helpers ----------------------------------------------- */

static void test_manifest__empty_round_trips(void **state)
{
	(void)state;
	struct kv_manifest m, back;
	struct kv_buf b = KV_BUF_INIT;
	kv_manifest_init(&m);
	encode(&m, &b);
	assert_int_equal(b.n, 16 + 32 + 4);
	assert_memory_equal(b.p, "KVFS-MAN", 8);
	assert_int_equal(kv_get_le16(b.p + OFF_MAJOR), KV_MANIFEST_MAJOR);
	assert_int_equal(kv_get_le32(b.p + OFF_BODY_LEN), 32);
	assert_int_equal(kv_manifest_decode(kv_buf_slice(&b), &back), 0);
	assert_manifest_eq(&m, &back);
	kv_manifest_release(&back);
	kv_manifest_release(&m);
	kv_buf_release(&b);
}

static void test_manifest__round_trips(void **state)
{
	(void)state;
	struct kv_manifest m, back;
	struct kv_buf b = KV_BUF_INIT;
	sample(&m);
	encode(&m, &b);
	assert_int_equal(kv_manifest_decode(kv_buf_slice(&b), &back), 0);
	assert_manifest_eq(&m, &back);
	assert_int_equal(back.minor_version, KV_MANIFEST_MINOR);
	/* Re-encoding gives the same bytes. */
	struct kv_buf again = KV_BUF_INIT;
	encode(&back, &again);
	assert_true(kv_slice_eq(kv_buf_slice(&b), kv_buf_slice(&again)));
	kv_manifest_release(&back);
	kv_manifest_release(&m);
	kv_buf_release(&b);
	kv_buf_release(&again);
}

static void test_manifest__random_manifests_round_trip(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(__func__));
	struct kv_buf b = KV_BUF_INIT, lo = KV_BUF_INIT, hi = KV_BUF_INIT;
	for (int round = 0; round < 50; round++) {
		struct kv_manifest m, back, copy;
		kv_manifest_init(&m);
		m.next_file_number = 1 + kv_rng_below(&rng, 1u << 20) + 3000;
		m.last_sequence = kv_rng_next(&rng) & KV_SEQ_MAX;
		m.log_number = kv_rng_next(&rng);
		size_t nprops = kv_rng_below(&rng, 20);
		for (size_t i = 0; i < nprops; i++) {
			char name[33];
			snprintf(name, sizeof name, "p%zu.%llx", i,
				 (unsigned long long)kv_rng_below(&rng, 1u << 30));
			assert_int_equal(kv_manifest_set_prop(&m, name, kv_rng_next(&rng)), 0);
		}
		size_t ntables = kv_rng_below(&rng, 300);
		for (size_t i = 0; i < ntables; i++) {
			size_t kn = kv_rng_below(&rng, 2000);
			kv_buf_reset(&lo);
			for (size_t k = 0; k < kn; k++)
				kv_buf_append_u8(&lo, (uint8_t)kv_rng_next(&rng));
			kv_buf_reset(&hi);
			kv_buf_append(&hi, lo.p, lo.n);
			kv_buf_append_u8(&hi, 0xff);
			kv_buf_append_le64(&lo, kv_ikey_pack(kv_rng_below(&rng, 1000), KV_TYPE_PUT));
			kv_buf_append_le64(&hi, kv_ikey_pack(kv_rng_below(&rng, 1000), KV_TYPE_DEL));
			assert_int_equal(kv_manifest_add_table(&m, (unsigned)kv_rng_below(&rng, 7),
							       1 + i * 3, kv_rng_next(&rng),
							       kv_rng_next(&rng), kv_buf_slice(&lo),
							       kv_buf_slice(&hi)),
					 0);
		}
		encode(&m, &b);
		assert_int_equal(kv_manifest_decode(kv_buf_slice(&b), &back), 0);
		assert_manifest_eq(&m, &back);
		assert_int_equal(kv_manifest_copy(&copy, &back), 0);
		assert_manifest_eq(&m, &copy);
		kv_manifest_release(&copy);
		kv_manifest_release(&back);
		kv_manifest_release(&m);
	}
	kv_buf_release(&b);
	kv_buf_release(&lo);
	kv_buf_release(&hi);
}

static void test_manifest__helpers_add_find_remove(void **state)
{
	(void)state;
	struct kv_manifest m;
	sample(&m);
	assert_non_null(kv_manifest_find_table(&m, 9));
	assert_null(kv_manifest_find_table(&m, 10));
	assert_int_equal(kv_manifest_remove_table(&m, 12), 0);
	assert_int_equal(kv_manifest_remove_table(&m, 12), KV_ENOTFOUND);
	assert_int_equal(m.ntables, 2);
	assert_true(m.tables[0].file_number == 9); /* order kept */
	assert_true(m.tables[1].file_number == 4);

	uint64_t v = 0;
	assert_int_equal(kv_manifest_get_prop(&m, "epoch", &v), 0);
	assert_true(v == 3);
	assert_int_equal(kv_manifest_set_prop(&m, "epoch", 4), 0);
	assert_int_equal(kv_manifest_get_prop(&m, "epoch", &v), 0);
	assert_true(v == 4);
	assert_int_equal(m.nprops, 1);
	assert_int_equal(kv_manifest_get_prop(&m, "nope", &v), KV_ENOTFOUND);
	assert_true(v == 4);
	assert_int_equal(kv_manifest_set_prop(&m, "", 1), KV_EINVAL);
	assert_int_equal(kv_manifest_set_prop(&m, "has space", 1), KV_EINVAL);
	assert_int_equal(kv_manifest_set_prop(&m, "123456789012345678901234567890123", 1),
			 KV_EINVAL);
	assert_int_equal(kv_manifest_set_prop(&m, "12345678901234567890123456789012", 1), 0);
	kv_manifest_release(&m);
	assert_int_equal(m.ntables, 0);
	kv_manifest_release(&m); /* twice is fine */
}

static void test_manifest__add_table_refuses_bad_input(void **state)
{
	(void)state;
	struct kv_manifest m;
	sample(&m);
	struct kv_buf a = KV_BUF_INIT, b = KV_BUF_INIT;
	ikey(&a, "k", 1);
	ikey(&b, "l", 1);
	struct kv_slice lo = kv_buf_slice(&a), hi = kv_buf_slice(&b);
	assert_int_equal(kv_manifest_add_table(&m, 7, 13, 1, 1, lo, hi), KV_EINVAL);
	assert_int_equal(kv_manifest_add_table(&m, 0, 9, 1, 1, lo, hi), KV_EINVAL); /* dup */
	assert_int_equal(kv_manifest_add_table(&m, 0, 13, 1, 1, hi, lo), KV_EINVAL);
	assert_int_equal(kv_manifest_add_table(&m, 0, 13, 1, 1, kv_slice_str("short"), hi),
			 KV_EINVAL);
	uint8_t badtype[9] = { 'k', 9, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(kv_manifest_add_table(&m, 0, 13, 1, 1, lo,
					       kv_slice_make(badtype, sizeof badtype)),
			 KV_EINVAL);
	assert_int_equal(m.ntables, 3);
	assert_int_equal(kv_manifest_add_table(&m, 0, 13, 1, 1, lo, lo), 0);

	/* Encode refuses what decode would: a file number not below next. */
	struct kv_buf out = KV_BUF_INIT;
	m.next_file_number = 13;
	assert_int_equal(kv_manifest_encode(&m, &out), KV_EINVAL);
	assert_int_equal(out.n, 0);
	m.next_file_number = 14;
	assert_int_equal(kv_manifest_encode(&m, &out), 0);
	kv_manifest_release(&m);
	kv_buf_release(&a);
	kv_buf_release(&b);
	kv_buf_release(&out);
}

/* ---- Corruption: every byte, every field ------------------------------------ */

static void test_manifest__truncation_at_every_offset_is_corrupt(void **state)
{
	(void)state;
	struct kv_manifest m;
	struct kv_buf b = KV_BUF_INIT;
	sample(&m);
	encode(&m, &b);
	size_t n = b.n;
	for (size_t cut = 0; cut < n; cut++) {
		b.n = cut;
		assert_int_equal(decode(&b), KV_ECORRUPT);
	}
	/* Extra bytes after the checksum too. */
	b.n = n;
	kv_buf_append_u8(&b, 0);
	assert_int_equal(decode(&b), KV_ECORRUPT);
	kv_manifest_release(&m);
	kv_buf_release(&b);
}

static void test_manifest__every_bit_flip_is_rejected(void **state)
{
	(void)state;
	struct kv_manifest m;
	struct kv_buf b = KV_BUF_INIT;
	sample(&m);
	encode(&m, &b);
	for (size_t off = 0; off < b.n; off++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			b.p[off] ^= (uint8_t)(1u << bit);
			assert_int_equal(decode(&b), KV_ECORRUPT);
			b.p[off] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(decode(&b), 0);
	kv_manifest_release(&m);
	kv_buf_release(&b);
}

/*
 * With the checksum recomputed, each field's own rule must catch a bad
 * value: the decoder never trusts a count, a length or a level.
 */
static void test_manifest__every_field_is_checked(void **state)
{
	(void)state;
	struct kv_manifest m;
	struct kv_buf good = KV_BUF_INIT, b = KV_BUF_INIT;
	sample(&m);
	encode(&m, &good);
	/* Layout of sample(): prop "epoch" (1+5+8), then tables of 33 + keys. */
	const size_t prop = OFF_FIRST_PROP;
	const size_t t0 = prop + 14;
	const size_t t0_lo = t0 + 25;            /* le32 length of smallest */
	const size_t t0_hi = t0_lo + 4 + 9;      /* smallest is "a" + 8 */
	const size_t t1 = t0_hi + 4 + 9;         /* largest is "m" + 8 */
	struct {
		size_t off;
		unsigned width;
		uint64_t value;
		int want;
	} cases[] = {
		{ 0, 1, 'k', KV_ECORRUPT },              /* magic */
		{ OFF_MAJOR, 2, 0, KV_ECORRUPT },        /* major 0 */
		{ OFF_MAJOR, 2, 2, KV_EVERSION },        /* newer major */
		{ OFF_MAJOR, 2, 0xffff, KV_EVERSION },
		{ OFF_MINOR, 2, 7, 0 },                  /* newer minor: fine */
		{ OFF_BODY_LEN, 4, 0, KV_ECORRUPT },
		{ OFF_BODY_LEN, 4, 0xffffffff, KV_ECORRUPT },
		{ OFF_NPROPS, 4, 0, KV_ECORRUPT },       /* leaves bytes unread */
		{ OFF_NPROPS, 4, 2, KV_ECORRUPT },
		{ OFF_NPROPS, 4, 0xffffffff, KV_ECORRUPT },
		{ OFF_NTABLES, 4, 2, KV_ECORRUPT },
		{ OFF_NTABLES, 4, 4, KV_ECORRUPT },
		{ OFF_NTABLES, 4, 0x7fffffff, KV_ECORRUPT },
		{ prop, 1, 0, KV_ECORRUPT },             /* empty name */
		{ prop, 1, 33, KV_ECORRUPT },            /* long name */
		{ prop, 1, 255, KV_ECORRUPT },
		{ prop + 1, 1, ' ', KV_ECORRUPT },       /* bad name byte */
		{ prop + 1, 1, 0, KV_ECORRUPT },
		{ t0, 1, 7, KV_ECORRUPT },               /* level */
		{ t0, 1, 255, KV_ECORRUPT },
		{ t0 + 1, 8, 20, KV_ECORRUPT },          /* file number == next */
		{ t0 + 1, 8, 9, KV_ECORRUPT },           /* duplicate of table 1 */
		{ t0 + 1, 8, 19, 0 },
		{ t0 + 9, 8, UINT64_MAX, 0 },            /* size: any value */
		{ t0 + 17, 8, 0, 0 },                    /* entries: any value */
		{ t0_lo, 4, 8, KV_ECORRUPT },            /* key lengths shift the rest */
		{ t0_lo, 4, 0, KV_ECORRUPT },
		{ t0_lo, 4, 0xffffffff, KV_ECORRUPT },
		{ t0_lo, 4, KV_MANIFEST_MAX_KEY + 1, KV_ECORRUPT },
		{ t0_lo + 4, 1, 'z', KV_ECORRUPT },      /* smallest > largest */
		{ t0_lo + 4 + 1, 1, 9, KV_ECORRUPT },    /* bad ikey type byte */
		{ t0_hi, 4, 10, KV_ECORRUPT },
		{ t0_hi + 4 + 1, 1, 5, KV_ECORRUPT },
		{ t1, 1, 6, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		kv_buf_reset(&b);
		kv_buf_append(&b, good.p, good.n);
		uint64_t v = cases[i].value;
		for (unsigned k = 0; k < cases[i].width; k++)
			b.p[cases[i].off + k] = (uint8_t)(v >> (8 * k));
		reseal(&b);
		int rc = decode(&b);
		if (rc != cases[i].want)
			fail_msg("case %zu (offset %zu): got %d, want %d", i, cases[i].off, rc,
				 cases[i].want);
	}
	/* Trailing bytes inside the body (body length and checksum fixed up). */
	kv_buf_reset(&b);
	kv_buf_append(&b, good.p, good.n - 4);
	kv_buf_append_u8(&b, 0);
	kv_put_le32(b.p + OFF_BODY_LEN, kv_get_le32(b.p + OFF_BODY_LEN) + 1);
	kv_buf_append_le32(&b, 0);
	reseal(&b);
	assert_int_equal(decode(&b), KV_ECORRUPT);
	/* A duplicate property name. */
	struct kv_manifest d;
	kv_manifest_init(&d);
	assert_int_equal(kv_manifest_set_prop(&d, "aa", 1), 0);
	assert_int_equal(kv_manifest_set_prop(&d, "ab", 2), 0);
	encode(&d, &b);
	b.p[OFF_FIRST_PROP + 11 + 2] = 'a'; /* "ab" -> "aa" */
	reseal(&b);
	assert_int_equal(decode(&b), KV_ECORRUPT);
	kv_manifest_release(&d);
	kv_manifest_release(&m);
	kv_buf_release(&good);
	kv_buf_release(&b);
}

static void test_manifest__unknown_properties_survive(void **state)
{
	(void)state;
	struct kv_manifest m, back;
	struct kv_buf b = KV_BUF_INIT, again = KV_BUF_INIT;
	sample(&m);
	assert_int_equal(kv_manifest_set_prop(&m, "from.the.future", 99), 0);
	encode(&m, &b);
	kv_put_le16(b.p + OFF_MINOR, KV_MANIFEST_MINOR + 1);
	reseal(&b);
	assert_int_equal(kv_manifest_decode(kv_buf_slice(&b), &back), 0);
	assert_int_equal(back.minor_version, KV_MANIFEST_MINOR + 1);
	encode(&back, &again);
	struct kv_manifest third;
	assert_int_equal(kv_manifest_decode(kv_buf_slice(&again), &third), 0);
	uint64_t v;
	assert_int_equal(kv_manifest_get_prop(&third, "from.the.future", &v), 0);
	assert_true(v == 99);
	kv_manifest_release(&third);
	kv_manifest_release(&back);
	kv_manifest_release(&m);
	kv_buf_release(&b);
	kv_buf_release(&again);
}

static void test_manifest__random_garbage_never_crashes(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed(__func__));
	struct kv_manifest m;
	struct kv_buf good = KV_BUF_INIT, b = KV_BUF_INIT;
	sample(&m);
	encode(&m, &good);
	for (int i = 0; i < 20000; i++) {
		kv_buf_reset(&b);
		kv_buf_append(&b, good.p, good.n);
		unsigned edits = 1 + (unsigned)kv_rng_below(&rng, 6);
		for (unsigned k = 0; k < edits; k++)
			b.p[16 + kv_rng_below(&rng, b.n - 20)] = (uint8_t)kv_rng_next(&rng);
		if (kv_rng_below(&rng, 2))
			b.n = 20 + kv_rng_below(&rng, b.n - 20);
		kv_put_le32(b.p + OFF_BODY_LEN, (uint32_t)(b.n - 20));
		reseal(&b);
		int rc = decode(&b);
		assert_true(rc == 0 || rc == KV_ECORRUPT);
	}
	kv_manifest_release(&m);
	kv_buf_release(&good);
	kv_buf_release(&b);
}

/* ---- Store and load ----------------------------------------------------------- */

static void test_manifest__load_of_a_fresh_directory_is_notfound(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
	struct kv_manifest m;
	assert_int_equal(kv_manifest_load(vfs, "db", &m), KV_ENOTFOUND);
	assert_int_equal(m.ntables, 0);
	kv_manifest_release(&m);
	kv_vfs_destroy(vfs);
}

static void test_manifest__store_then_load_on_posix(void **state)
{
	(void)state;
	char dir[] = "/tmp/kvfs-test-manifest-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct kv_vfs *vfs = kv_vfs_posix();
	struct kv_manifest m, back;
	sample(&m);
	uint64_t bytes = 0;
	assert_int_equal(kv_manifest_store(vfs, dir, &m, &bytes), 0);
	assert_true(bytes > 0);
	assert_int_equal(kv_manifest_load(vfs, dir, &back), 0);
	assert_manifest_eq(&m, &back);
	kv_manifest_release(&back);
	/* Replace it; no temporary file is left behind. */
	add(&m, 2, 19, "q", "r");
	assert_int_equal(kv_manifest_store(vfs, dir, &m, NULL), 0);
	assert_int_equal(kv_manifest_load(vfs, dir, &back), 0);
	assert_manifest_eq(&m, &back);
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, KV_MANIFEST_TMP_NAME);
	assert_int_equal(kv_vfs_exists(vfs, path), -ENOENT);
	kv_manifest_release(&back);
	kv_manifest_release(&m);
	snprintf(path, sizeof path, "%s/%s", dir, KV_MANIFEST_NAME);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_manifest__leftover_tmp_is_ignored_and_removed(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
	struct kv_manifest m, back;
	sample(&m);
	assert_int_equal(kv_manifest_store(vfs, "db", &m, NULL), 0);
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(vfs, "db/" KV_MANIFEST_TMP_NAME,
				     KV_VFS_WRITE | KV_VFS_CREATE, &f),
			 0);
	assert_int_equal(kv_file_append(f, "half a manifest", 15), 0);
	kv_file_close(f);
	assert_int_equal(kv_manifest_load(vfs, "db", &back), 0);
	assert_manifest_eq(&m, &back);
	assert_int_equal(kv_vfs_exists(vfs, "db/" KV_MANIFEST_TMP_NAME), -ENOENT);
	kv_manifest_release(&back);
	kv_manifest_release(&m);
	kv_vfs_destroy(vfs);
}

static void test_manifest__damaged_file_fails_to_load(void **state)
{
	(void)state;
	struct kv_vfs *vfs = kv_vfs_mem_new();
	assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
	struct kv_manifest m, back;
	sample(&m);
	assert_int_equal(kv_manifest_store(vfs, "db", &m, NULL), 0);
	assert_int_equal(kv_vfs_mem_flip_bit(vfs, "db/MANIFEST", 50, 3), 0);
	assert_int_equal(kv_manifest_load(vfs, "db", &back), KV_ECORRUPT);
	assert_int_equal(back.ntables, 0);
	assert_int_equal(kv_vfs_mem_flip_bit(vfs, "db/MANIFEST", 50, 3), 0);
	assert_int_equal(kv_vfs_mem_truncate_file(vfs, "db/MANIFEST", 30), 0);
	assert_int_equal(kv_manifest_load(vfs, "db", &back), KV_ECORRUPT);
	assert_int_equal(kv_vfs_mem_truncate_file(vfs, "db/MANIFEST", 0), 0);
	assert_int_equal(kv_manifest_load(vfs, "db", &back), KV_ECORRUPT);
	/* A huge file is refused before anything is read or allocated. */
	struct kv_file *f;
	assert_int_equal(kv_vfs_open(vfs, "db/MANIFEST", KV_VFS_WRITE, &f), 0);
	assert_int_equal(kv_file_truncate(f, (uint64_t)KV_MANIFEST_MAX_BYTES + 1), 0);
	kv_file_close(f);
	assert_int_equal(kv_manifest_load(vfs, "db", &back), KV_ECORRUPT);
	kv_manifest_release(&m);
	kv_vfs_destroy(vfs);
}

/*
 * Crash at every modifying operation of a store (and after its last one):
 * the reloaded manifest is the old one or the new one, never anything else.
 */
static void test_manifest__crash_at_any_point_yields_old_or_new(void **state)
{
	(void)state;
	struct kv_manifest old_m, new_m;
	sample(&old_m);
	assert_int_equal(kv_manifest_copy(&new_m, &old_m), 0);
	assert_int_equal(kv_manifest_remove_table(&new_m, 12), 0);
	add(&new_m, 1, 19, "d", "e");
	new_m.last_sequence++;

	for (int first = 0; first < 2; first++) {
		/* first: the store into an empty directory ("old" is none). */
		bool saw_old = false, saw_new = false;
		for (uint64_t nth = 1;; nth++) {
			struct kv_vfs *vfs = kv_vfs_mem_new();
			assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
			assert_int_equal(kv_vfs_sync_dir(vfs, "/"), 0);
			if (!first)
				assert_int_equal(kv_manifest_store(vfs, "db", &old_m, NULL), 0);
			kv_vfs_mem_crash_after(vfs, nth);
			int rc = kv_manifest_store(vfs, "db", &new_m, NULL);
			bool tripped = kv_vfs_mem_tripped(vfs);
			assert_true(tripped ? rc != 0 : rc == 0);
			kv_vfs_mem_crash(vfs);
			kv_vfs_mem_recover(vfs);

			struct kv_manifest got;
			rc = kv_manifest_load(vfs, "db", &got);
			if (rc == KV_ENOTFOUND) {
				assert_true(first);
				saw_old = true;
			} else {
				assert_int_equal(rc, 0);
				bool is_new = got.ntables == new_m.ntables &&
					      got.last_sequence == new_m.last_sequence;
				assert_manifest_eq(&got, is_new ? &new_m : &old_m);
				if (is_new)
					saw_new = true;
				else
					saw_old = true;
				/* Once a store returned 0, it is the new one. */
				if (!tripped)
					assert_true(is_new);
			}
			kv_manifest_release(&got);
			/* A store after the crash works and wins. */
			assert_int_equal(kv_manifest_store(vfs, "db", &new_m, NULL), 0);
			assert_int_equal(kv_manifest_load(vfs, "db", &got), 0);
			assert_manifest_eq(&got, &new_m);
			kv_manifest_release(&got);
			kv_vfs_destroy(vfs);
			if (!tripped)
				break; /* past the store's last operation */
		}
		assert_true(saw_old && saw_new);
	}
	kv_manifest_release(&old_m);
	kv_manifest_release(&new_m);
}

/*
 * A store whose n-th operation fails with EIO (no crash): it returns the
 * error, the manifest on disk is still the old or the new one, and the next
 * store succeeds.
 */
static void test_manifest__failed_store_leaves_old_or_new(void **state)
{
	(void)state;
	struct kv_manifest old_m, new_m, got;
	sample(&old_m);
	assert_int_equal(kv_manifest_copy(&new_m, &old_m), 0);
	add(&new_m, 3, 18, "f", "g");
	for (uint64_t nth = 1;; nth++) {
		struct kv_vfs *vfs = kv_vfs_mem_new();
		assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
		assert_int_equal(kv_manifest_store(vfs, "db", &old_m, NULL), 0);
		kv_vfs_mem_crash_after(vfs, nth);
		int rc = kv_manifest_store(vfs, "db", &new_m, NULL);
		bool tripped = kv_vfs_mem_tripped(vfs);
		kv_vfs_mem_recover(vfs);
		assert_true(tripped ? rc == -EIO : rc == 0);
		assert_int_equal(kv_manifest_load(vfs, "db", &got), 0);
		assert_true(got.ntables == old_m.ntables || got.ntables == new_m.ntables);
		assert_manifest_eq(&got, got.ntables == old_m.ntables ? &old_m : &new_m);
		kv_manifest_release(&got);
		assert_int_equal(kv_manifest_store(vfs, "db", &new_m, NULL), 0);
		kv_vfs_destroy(vfs);
		if (!tripped)
			break;
	}
	/* ENOSPC on the store's first operation: nothing changes. */
	struct kv_vfs *vfs = kv_vfs_mem_new();
	assert_int_equal(kv_vfs_mkdir(vfs, "db"), 0);
	assert_int_equal(kv_manifest_store(vfs, "db", &old_m, NULL), 0);
	kv_vfs_mem_fail_next(vfs, 1, -ENOSPC);
	assert_int_equal(kv_manifest_store(vfs, "db", &new_m, NULL), -ENOSPC);
	assert_int_equal(kv_manifest_load(vfs, "db", &got), 0);
	assert_manifest_eq(&got, &old_m);
	kv_manifest_release(&got);
	kv_vfs_destroy(vfs);
	kv_manifest_release(&old_m);
	kv_manifest_release(&new_m);
}

/* ---- Seed corpus for tests/fuzz/fuzz_manifest.c -------------------------- */

static void write_seed(const char *dir, const char *name, const struct kv_buf *b)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(b->p, 1, b->n, fp), b->n);
	assert_int_equal(fclose(fp), 0);
}

static void test_manifest__seed_corpus(void **state)
{
	(void)state;
	const char *dir = getenv("KV_CORPUS_OUT");
	if (!dir)
		skip();
	struct kv_manifest m;
	struct kv_buf b = KV_BUF_INIT;
	kv_manifest_init(&m);
	encode(&m, &b);
	write_seed(dir, "empty.manifest", &b);
	sample(&m);
	encode(&m, &b);
	write_seed(dir, "sample.manifest", &b);
	kv_put_le16(b.p + OFF_MAJOR, 2);
	reseal(&b);
	write_seed(dir, "newer-major.manifest", &b);
	kv_manifest_release(&m);

	/* The doc's worked example (doc/storage-format.md#manifest). */
	kv_manifest_init(&m);
	m.next_file_number = 8;
	m.last_sequence = 42;
	m.log_number = 7;
	assert_int_equal(kv_manifest_set_prop(&m, "epoch", 2), 0);
	struct kv_buf lo = KV_BUF_INIT, hi = KV_BUF_INIT;
	ikey(&lo, "a", 1);
	ikey(&hi, "z", 42);
	assert_int_equal(kv_manifest_add_table(&m, 0, 5, 4096, 42, kv_buf_slice(&lo),
					       kv_buf_slice(&hi)),
			 0);
	encode(&m, &b);
	write_seed(dir, "example.manifest", &b);
	kv_manifest_release(&m);
	kv_buf_release(&lo);
	kv_buf_release(&hi);
	kv_buf_release(&b);
}

static void quiet_sink(enum kv_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)msg;
	(void)arg;
}

int main(void)
{
	/* The tests provoke every error the module logs: keep them quiet. */
	if (!getenv("KV_LOG_LEVEL"))
		kv_log_set_sink(quiet_sink, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest__empty_round_trips),
		cmocka_unit_test(test_manifest__round_trips),
		cmocka_unit_test(test_manifest__random_manifests_round_trip),
		cmocka_unit_test(test_manifest__helpers_add_find_remove),
		cmocka_unit_test(test_manifest__add_table_refuses_bad_input),
		cmocka_unit_test(test_manifest__truncation_at_every_offset_is_corrupt),
		cmocka_unit_test(test_manifest__every_bit_flip_is_rejected),
		cmocka_unit_test(test_manifest__every_field_is_checked),
		cmocka_unit_test(test_manifest__unknown_properties_survive),
		cmocka_unit_test(test_manifest__random_garbage_never_crashes),
		cmocka_unit_test(test_manifest__load_of_a_fresh_directory_is_notfound),
		cmocka_unit_test(test_manifest__store_then_load_on_posix),
		cmocka_unit_test(test_manifest__leftover_tmp_is_ignored_and_removed),
		cmocka_unit_test(test_manifest__damaged_file_fails_to_load),
		cmocka_unit_test(test_manifest__crash_at_any_point_yields_old_or_new),
		cmocka_unit_test(test_manifest__failed_store_leaves_old_or_new),
		cmocka_unit_test(test_manifest__seed_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
