/*
 * test_memtable.c - the memtable: versions and snapshots, deletes, odd keys,
 * the iterator's order and reference, accounting, and gets running beside
 * the writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <cmocka.h>

#include "lsm/arena.h"
#include "lsm/ikey.h"
#include "lsm/iter.h"
#include "lsm/memtable.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

static void put(struct kv_memtable *mt, uint64_t seq, const char *k, const char *v)
{
	assert_int_equal(kv_memtable_add(mt, seq, KV_TYPE_PUT, kv_slice_str(k), kv_slice_str(v)), 0);
}

static void del(struct kv_memtable *mt, uint64_t seq, const char *k)
{
	assert_int_equal(kv_memtable_add(mt, seq, KV_TYPE_DEL, kv_slice_str(k), kv_slice_make(NULL, 0)),
			 0);
}

/* Asserts that @k as of @snap is a put of @want (NULL: a delete). */
static void expect(struct kv_memtable *mt, struct kv_slice k, uint64_t snap, const char *want)
{
	enum kv_entry_type type = (enum kv_entry_type)99;
	struct kv_slice v = { NULL, 12345 };
	assert_int_equal(kv_memtable_get(mt, k, snap, &type, &v), 1);
	if (want) {
		assert_int_equal(type, KV_TYPE_PUT);
		assert_true(kv_slice_eq(v, kv_slice_str(want)));
	} else {
		assert_int_equal(type, KV_TYPE_DEL);
		assert_int_equal(v.n, 0);
	}
}

static void expect_absent(struct kv_memtable *mt, struct kv_slice k, uint64_t snap)
{
	enum kv_entry_type type = (enum kv_entry_type)99;
	struct kv_slice v = { NULL, 12345 };
	assert_int_equal(kv_memtable_get(mt, k, snap, &type, &v), 0);
	/* Untouched on a miss. */
	assert_int_equal(type, 99);
	assert_int_equal(v.n, 12345);
}

static void test_memtable__get_returns_newest_version_at_or_below_snapshot(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	put(mt, 5, "k", "v5");
	put(mt, 1, "k", "v1");
	put(mt, 9, "k", "v9");
	put(mt, 3, "j", "j3");
	put(mt, 4, "l", "l4");

	struct kv_slice k = kv_slice_str("k");
	expect_absent(mt, k, 0);
	for (uint64_t s = 1; s < 5; s++)
		expect(mt, k, s, "v1");
	for (uint64_t s = 5; s < 9; s++)
		expect(mt, k, s, "v5");
	expect(mt, k, 9, "v9");
	expect(mt, k, 1000, "v9");
	expect(mt, k, KV_SEQ_MAX, "v9");
	expect(mt, k, UINT64_MAX, "v9"); /* above KV_SEQ_MAX: everything */
	expect(mt, kv_slice_str("j"), 100, "j3");
	expect(mt, kv_slice_str("l"), 100, "l4");
	expect_absent(mt, kv_slice_str("m"), 100);
	expect_absent(mt, kv_slice_str("a"), 100);
	expect_absent(mt, kv_slice_str("kk"), 100);

	/* Type and value may be left out. */
	assert_int_equal(kv_memtable_get(mt, k, 2, NULL, NULL), 1);
	assert_int_equal(kv_memtable_count(mt), 5);
	kv_memtable_unref(mt);
}

static void test_memtable__delete_hides_older_puts(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	struct kv_slice k = kv_slice_str("key");
	put(mt, 1, "key", "one");
	del(mt, 3, "key");
	expect(mt, k, 1, "one");
	expect(mt, k, 2, "one");
	expect(mt, k, 3, NULL);
	expect(mt, k, 100, NULL);
	/* A later put shows through again; the delete still rules its range. */
	put(mt, 7, "key", "seven");
	expect(mt, k, 6, NULL);
	expect(mt, k, 7, "seven");
	/* A delete and a put may share a sequence (distinct internal keys): the
	 * put (higher type) is the newer. */
	del(mt, 9, "key");
	put(mt, 9, "key", "nine");
	expect(mt, k, 9, "nine");
	kv_memtable_unref(mt);
}

static void test_memtable__snapshot_hides_newer_entries(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	put(mt, 10, "new", "x");
	put(mt, 2, "old", "y");
	expect_absent(mt, kv_slice_str("new"), 9);
	expect(mt, kv_slice_str("new"), 10, "x");
	expect(mt, kv_slice_str("old"), 9, "y");
	expect_absent(mt, kv_slice_str("old"), 1);
	/* The largest sequence number. */
	put(mt, KV_SEQ_MAX, "max", "m");
	expect_absent(mt, kv_slice_str("max"), KV_SEQ_MAX - 1);
	expect(mt, kv_slice_str("max"), KV_SEQ_MAX, "m");
	expect(mt, kv_slice_str("max"), UINT64_MAX, "m");
	kv_memtable_unref(mt);
}

static void test_memtable__empty_key_and_empty_value(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	assert_int_equal(kv_memtable_add(mt, 1, KV_TYPE_PUT, kv_slice_make(NULL, 0),
					 kv_slice_str("for the empty key")), 0);
	put(mt, 2, "a", "");
	assert_int_equal(kv_memtable_add(mt, 3, KV_TYPE_PUT, kv_slice_str("b"),
					 kv_slice_make(NULL, 0)), 0);
	expect(mt, kv_slice_str(""), 5, "for the empty key");
	expect(mt, kv_slice_make(NULL, 0), 5, "for the empty key");
	expect(mt, kv_slice_str("a"), 5, "");
	expect(mt, kv_slice_str("b"), 5, "");
	expect_absent(mt, kv_slice_str(""), 0);

	/* The empty key sorts first. */
	struct kv_iter *it = kv_memtable_iter(mt);
	assert_non_null(it);
	kv_iter_seek_first(it);
	assert_true(kv_iter_valid(it));
	struct kv_ikey ik = { 0 };
	assert_int_equal(kv_ikey_parse(kv_iter_key(it), &ik), 0);
	assert_int_equal(ik.ukey.n, 0);
	assert_true(ik.seq == 1);
	kv_iter_destroy(it);
	kv_memtable_unref(mt);
}

static void test_memtable__keys_with_nul_bytes_stay_distinct(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	static const struct {
		const char *k;
		size_t n;
		const char *v;
	} keys[] = {
		{ "\0", 1, "nul" }, { "a", 1, "a" },	     { "a\0", 2, "a-nul" },
		{ "a\0\0", 3, "a-nul-nul" }, { "a\0b", 3, "a-nul-b" }, { "a\xff", 2, "a-ff" },
	};
	enum { NKEYS = sizeof keys / sizeof keys[0] };
	/* Insert in reverse so the order comes from the list, not from us. */
	for (int i = NKEYS - 1; i >= 0; i--)
		assert_int_equal(kv_memtable_add(mt, (uint64_t)(10 + i), KV_TYPE_PUT,
						 kv_slice_make(keys[i].k, keys[i].n),
						 kv_slice_str(keys[i].v)), 0);
	for (int i = 0; i < NKEYS; i++)
		expect(mt, kv_slice_make(keys[i].k, keys[i].n), 100, keys[i].v);
	expect_absent(mt, kv_slice_make("a\0c", 3), 100);
	expect_absent(mt, kv_slice_make("\0\0", 2), 100);
	expect_absent(mt, kv_slice_make("", 0), 100);
	/* A user key that equals another's key plus part of a trailer. */
	expect_absent(mt, kv_slice_make("a\0\0\0", 4), 100);

	struct kv_iter *it = kv_memtable_iter(mt);
	assert_non_null(it);
	int i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
		assert_true(i < NKEYS);
		struct kv_ikey ik = { 0 };
		assert_int_equal(kv_ikey_parse(kv_iter_key(it), &ik), 0);
		assert_true(kv_slice_eq(ik.ukey, kv_slice_make(keys[i].k, keys[i].n)));
		assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str(keys[i].v)));
	}
	assert_int_equal(i, NKEYS);
	assert_int_equal(kv_iter_status(it), 0);
	kv_iter_destroy(it);
	kv_memtable_unref(mt);
}

/* ---- Against a model ----------------------------------------------------- */

struct mentry {
	struct kv_buf ikey;
	uint8_t value[16];
	size_t value_n;
};

static int mentry_cmp(const void *a, const void *b)
{
	const struct mentry *x = a, *y = b;
	return kv_ikey_cmp(kv_buf_slice(&x->ikey), kv_buf_slice(&y->ikey));
}

static void test_memtable__iterator_and_get_match_model(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed(__func__);
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);

	enum { N = 4000, KEYS = 300 };
	struct mentry *model = calloc(N, sizeof *model);
	assert_non_null(model);
	/* Sequences are a shuffled 1..N: adds arrive out of order. */
	uint64_t *seqs = malloc(N * sizeof *seqs);
	assert_non_null(seqs);
	for (int i = 0; i < N; i++)
		seqs[i] = (uint64_t)i + 1;
	for (int i = N - 1; i > 0; i--) {
		int j = (int)kv_rng_below(&rng, (uint64_t)i + 1);
		uint64_t t = seqs[i];
		seqs[i] = seqs[j];
		seqs[j] = t;
	}
	for (int i = 0; i < N; i++) {
		uint8_t uk[4];
		uint32_t kn = (uint32_t)kv_rng_below(&rng, KEYS);
		kv_put_le32(uk, kn); /* little-endian: bytewise order is not numeric */
		struct kv_slice ukey = kv_slice_make(uk, 1 + kn % 4);
		enum kv_entry_type type = kv_rng_below(&rng, 4) ? KV_TYPE_PUT : KV_TYPE_DEL;
		struct mentry *e = &model[i];
		e->value_n = type == KV_TYPE_PUT ? (size_t)kv_rng_below(&rng, sizeof e->value + 1) : 0;
		for (size_t b = 0; b < e->value_n; b++)
			e->value[b] = (uint8_t)kv_rng_next(&rng);
		assert_int_equal(kv_ikey_append(&e->ikey, ukey, seqs[i], type), 0);
		assert_int_equal(kv_memtable_add(mt, seqs[i], type, ukey,
						 kv_slice_make(e->value, e->value_n)), 0);
	}
	assert_int_equal(kv_memtable_count(mt), N);
	qsort(model, N, sizeof *model, mentry_cmp);

	/* The iterator walks the model in order. */
	struct kv_iter *it = kv_memtable_iter(mt);
	assert_non_null(it);
	assert_false(kv_iter_valid(it)); /* unpositioned */
	int i = 0;
	for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it), i++) {
		assert_true(i < N);
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&model[i].ikey)));
		assert_true(kv_slice_eq(kv_iter_value(it),
					kv_slice_make(model[i].value, model[i].value_n)));
	}
	assert_int_equal(i, N);

	/* seek(ikey) lands on that entry; get agrees with a model scan. */
	for (int round = 0; round < 2000; round++) {
		int m = (int)kv_rng_below(&rng, N);
		kv_iter_seek(it, kv_buf_slice(&model[m].ikey));
		assert_true(kv_iter_valid(it));
		assert_true(kv_slice_eq(kv_iter_key(it), kv_buf_slice(&model[m].ikey)));

		struct kv_ikey want = { 0 };
		assert_int_equal(kv_ikey_parse(kv_buf_slice(&model[m].ikey), &want), 0);
		uint64_t snap = kv_rng_below(&rng, N + 2);
		/* The model's answer: the first entry of the key with seq <= snap. */
		int found = -1;
		for (int j = 0; j < N; j++) {
			struct kv_ikey e = { 0 };
			assert_int_equal(kv_ikey_parse(kv_buf_slice(&model[j].ikey), &e), 0);
			if (kv_slice_eq(e.ukey, want.ukey) && e.seq <= snap) {
				found = j;
				break;
			}
		}
		enum kv_entry_type type;
		struct kv_slice v;
		int r = kv_memtable_get(mt, want.ukey, snap, &type, &v);
		if (found < 0) {
			assert_int_equal(r, 0);
			continue;
		}
		assert_int_equal(r, 1);
		struct kv_ikey e = { 0 };
		assert_int_equal(kv_ikey_parse(kv_buf_slice(&model[found].ikey), &e), 0);
		assert_int_equal(type, e.type);
		assert_true(kv_slice_eq(v, kv_slice_make(model[found].value, model[found].value_n)));
	}
	kv_iter_destroy(it);

	for (int j = 0; j < N; j++)
		kv_buf_release(&model[j].ikey);
	free(model);
	free(seqs);
	kv_memtable_unref(mt);
}

static void test_memtable__iterator_seek_by_internal_key(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	put(mt, 3, "b", "b3");
	put(mt, 8, "b", "b8");
	put(mt, 5, "d", "d5");
	struct kv_iter *it = kv_memtable_iter(mt);
	assert_non_null(it);
	struct kv_buf t = KV_BUF_INIT;

	/* ikey(b, 5, SEEK): the newest b at or below 5 is b3. */
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("b"), 5, KV_TYPE_SEEK), 0);
	kv_iter_seek(it, kv_buf_slice(&t));
	assert_true(kv_iter_valid(it));
	assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str("b3")));
	kv_iter_next(it);
	assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str("d5")));
	kv_iter_next(it);
	assert_false(kv_iter_valid(it));

	/* Before everything, between keys, after everything. */
	kv_buf_reset(&t);
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("a"), KV_SEQ_MAX, KV_TYPE_SEEK), 0);
	kv_iter_seek(it, kv_buf_slice(&t));
	assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str("b8")));
	kv_buf_reset(&t);
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("c"), KV_SEQ_MAX, KV_TYPE_SEEK), 0);
	kv_iter_seek(it, kv_buf_slice(&t));
	assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str("d5")));
	kv_buf_reset(&t);
	assert_int_equal(kv_ikey_append(&t, kv_slice_str("d"), 4, KV_TYPE_SEEK), 0);
	kv_iter_seek(it, kv_buf_slice(&t));
	assert_false(kv_iter_valid(it));
	/* A target shorter than a trailer still gets a total order. */
	kv_iter_seek(it, kv_slice_str("c"));
	assert_true(kv_iter_valid(it));
	kv_iter_seek(it, kv_slice_str(""));
	assert_true(kv_slice_eq(kv_iter_value(it), kv_slice_str("b8")));

	kv_buf_release(&t);
	kv_iter_destroy(it);
	kv_memtable_unref(mt);
}

static void test_memtable__iterator_holds_a_reference(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	put(mt, 1, "x", "survives");
	kv_memtable_ref(mt);
	kv_memtable_unref(mt); /* back to one */

	struct kv_iter *a = kv_memtable_iter(mt);
	struct kv_iter *b = kv_memtable_iter(mt);
	assert_non_null(a);
	assert_non_null(b);
	kv_memtable_unref(mt); /* the iterators keep it alive */

	kv_iter_seek_first(a);
	assert_true(kv_iter_valid(a));
	assert_true(kv_slice_eq(kv_iter_value(a), kv_slice_str("survives")));
	kv_iter_destroy(a);
	/* Still alive for b; ASan reports a use after free otherwise, and
	 * LeakSanitizer a leak if the last destroy did not free it. */
	kv_iter_seek_first(b);
	assert_true(kv_slice_eq(kv_iter_value(b), kv_slice_str("survives")));
	kv_iter_destroy(b);
	kv_iter_destroy(NULL);
	kv_memtable_unref(NULL);
}

static void test_memtable__duplicate_internal_key_is_refused(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	put(mt, 4, "k", "first");
	assert_int_equal(kv_memtable_add(mt, 4, KV_TYPE_PUT, kv_slice_str("k"),
					 kv_slice_str("second")), KV_EINVAL);
	assert_int_equal(kv_memtable_count(mt), 1);
	expect(mt, kv_slice_str("k"), 4, "first");
	kv_memtable_unref(mt);
}

static void test_memtable__bytes_and_count_track_adds(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	size_t empty = kv_memtable_bytes(mt);
	assert_int_equal(kv_memtable_count(mt), 0);

	uint8_t v[100];
	memset(v, 'v', sizeof v);
	size_t payload = 0;
	for (uint64_t i = 0; i < 1000; i++) {
		uint8_t k[16];
		kv_put_be64(k, i);
		kv_put_be64(k + 8, ~i);
		assert_int_equal(kv_memtable_add(mt, i + 1, KV_TYPE_PUT, kv_slice_make(k, 16),
						 kv_slice_make(v, sizeof v)), 0);
		payload += 16 + KV_IKEY_TRAILER + sizeof v;
	}
	assert_int_equal(kv_memtable_count(mt), 1000);
	size_t bytes = kv_memtable_bytes(mt);
	assert_true(bytes >= empty + payload);
	/* Node overhead is small: well under 2x the payload. */
	assert_true(bytes < empty + 2 * payload);

	/* A value far larger than a block. */
	size_t big_n = 300 * 1024;
	uint8_t *big = malloc(big_n);
	assert_non_null(big);
	for (size_t i = 0; i < big_n; i++)
		big[i] = (uint8_t)(i * 31);
	assert_int_equal(kv_memtable_add(mt, 5000, KV_TYPE_PUT, kv_slice_str("big"),
					 kv_slice_make(big, big_n)), 0);
	assert_true(kv_memtable_bytes(mt) >= bytes + big_n);
	struct kv_slice got;
	enum kv_entry_type type;
	assert_int_equal(kv_memtable_get(mt, kv_slice_str("big"), 5000, &type, &got), 1);
	assert_int_equal(type, KV_TYPE_PUT);
	assert_int_equal(got.n, big_n);
	assert_memory_equal(got.p, big, big_n);
	free(big);
	kv_memtable_unref(mt);
}

/* ---- Gets beside the writer ---------------------------------------------- */

/*
 * The writer adds sequence s = 1..N to key (s % KEYS), as a delete when
 * s % 7 == 0, else a put whose value is le64(s). So the newest entry of key
 * k at snapshot S is computable: the largest s <= S with s % KEYS == k.
 */
enum { CG_N = 60000, CG_KEYS = 97, CG_READERS = 2 };

struct cget {
	struct kv_memtable *mt;
	_Atomic uint64_t published; /* every seq <= published has been added */
	atomic_bool done;
	uint64_t seed;
};

struct cget_reader {
	struct cget *c;
	int id;
	uint64_t gets;
	const char *failure; /* set instead of asserting: cmocka is not thread-safe */
};

static void cg_key(uint8_t *k, uint64_t kn)
{
	k[0] = 'k';
	kv_put_be64(k + 1, kn);
}

static void *cget_reader_main(void *arg)
{
	struct cget_reader *r = arg;
	struct cget *c = r->c;
	struct kv_rng rng;
	kv_rng_seed(&rng, c->seed + 100 + (uint64_t)r->id);
	while (!atomic_load(&c->done) || r->gets < 1000) {
		uint64_t snap = atomic_load_explicit(&c->published, memory_order_acquire);
		uint64_t kn = kv_rng_below(&rng, CG_KEYS);
		uint8_t k[9];
		cg_key(k, kn);
		uint64_t first = kn ? kn : CG_KEYS; /* smallest s >= 1 with s % KEYS == kn */
		enum kv_entry_type type;
		struct kv_slice v;
		int found = kv_memtable_get(c->mt, kv_slice_make(k, 9), snap, &type, &v);
		r->gets++;
		if (snap < first) {
			if (found != 0) {
				r->failure = "found a key not yet published";
				return NULL;
			}
			continue;
		}
		uint64_t want = snap - (snap - kn) % CG_KEYS;
		if (found != 1) {
			r->failure = "missed a published key";
			return NULL;
		}
		if (want % 7 == 0) {
			if (type != KV_TYPE_DEL)
				r->failure = "expected a delete";
		} else if (type != KV_TYPE_PUT || v.n != 8 || kv_get_le64(v.p) != want) {
			r->failure = "wrong version";
		}
		if (r->failure)
			return NULL;
	}
	return NULL;
}

/*
 * The key filter never hides a key that was added, even loaded far past its
 * design (400 Ki keys in 2^15 words), through get and get_hashed alike; and
 * it rules out most keys that were never added while lightly loaded.
 */
static void test_memtable__key_filter_never_hides_an_added_key(void **state)
{
	(void)state;
	struct kv_memtable *mt = kv_memtable_new();
	assert_non_null(mt);
	char key[32];
	const unsigned n = 400 * 1024;
	for (unsigned i = 0; i < n; i++) {
		int len = snprintf(key, sizeof key, "k%u", i * 7919u);
		assert_int_equal(kv_memtable_add(mt, i + 1, KV_TYPE_PUT,
						 kv_slice_make(key, (size_t)len), kv_slice_str("v")),
				 0);
	}
	for (unsigned i = 0; i < n; i++) {
		int len = snprintf(key, sizeof key, "k%u", i * 7919u);
		struct kv_slice k = kv_slice_make(key, (size_t)len);
		enum kv_entry_type t = KV_TYPE_DEL;
		assert_int_equal(kv_memtable_get(mt, k, KV_SEQ_MAX, &t, NULL), 1);
		assert_int_equal(t, KV_TYPE_PUT);
		assert_int_equal(kv_memtable_get_hashed(mt, k, kv_hash64(key, (size_t)len), KV_SEQ_MAX,
							NULL, NULL),
				 1);
	}
	kv_memtable_unref(mt);

	/* Lightly loaded (16 Ki keys): absent keys are answered by the filter. A
	 * wrong hash stands in for "never added": it must miss the same way. */
	mt = kv_memtable_new();
	assert_non_null(mt);
	for (unsigned i = 0; i < 16384; i++) {
		int len = snprintf(key, sizeof key, "k%u", i);
		assert_int_equal(kv_memtable_add(mt, i + 1, KV_TYPE_PUT,
						 kv_slice_make(key, (size_t)len), kv_slice_str("v")),
				 0);
	}
	unsigned passed = 0;
	for (unsigned i = 0; i < 16384; i++) {
		int len = snprintf(key, sizeof key, "k%u", i);
		/* The right key with another key's hash: found only if the filter lets it through. */
		char other[32];
		int olen = snprintf(other, sizeof other, "absent%u", i);
		passed += (unsigned)kv_memtable_get_hashed(mt, kv_slice_make(key, (size_t)len),
							   kv_hash64(other, (size_t)olen),
							   KV_SEQ_MAX, NULL, NULL);
	}
	assert_true(passed < 16384 / 100); /* under 1% false positives */
	kv_memtable_unref(mt);
}

static void test_memtable__get_runs_concurrently_with_add(void **state)
{
	(void)state;
	struct cget *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->seed = kv_test_seed(__func__);
	c->mt = kv_memtable_new();
	assert_non_null(c->mt);
	atomic_init(&c->published, 0);
	atomic_init(&c->done, false);

	struct cget_reader readers[CG_READERS];
	pthread_t threads[CG_READERS];
	for (int r = 0; r < CG_READERS; r++) {
		readers[r] = (struct cget_reader){ .c = c, .id = r };
		assert_int_equal(pthread_create(&threads[r], NULL, cget_reader_main, &readers[r]), 0);
	}
	for (uint64_t s = 1; s <= CG_N; s++) {
		uint8_t k[9], v[8];
		cg_key(k, s % CG_KEYS);
		kv_put_le64(v, s);
		enum kv_entry_type type = s % 7 == 0 ? KV_TYPE_DEL : KV_TYPE_PUT;
		struct kv_slice value = type == KV_TYPE_PUT ? kv_slice_make(v, 8) : kv_slice_make(NULL, 0);
		assert_int_equal(kv_memtable_add(c->mt, s, type, kv_slice_make(k, 9), value), 0);
		atomic_store_explicit(&c->published, s, memory_order_release);
		if (s % 2048 == 0)
			sched_yield();
	}
	atomic_store(&c->done, true);
	uint64_t gets = 0;
	for (int r = 0; r < CG_READERS; r++) {
		assert_int_equal(pthread_join(threads[r], NULL), 0);
		if (readers[r].failure)
			fail_msg("reader %d: %s", r, readers[r].failure);
		gets += readers[r].gets;
	}
	print_message("readers: %llu gets during %d adds\n", (unsigned long long)gets, CG_N);
	assert_int_equal(kv_memtable_count(c->mt), CG_N);
	kv_memtable_unref(c->mt);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memtable__get_returns_newest_version_at_or_below_snapshot),
		cmocka_unit_test(test_memtable__delete_hides_older_puts),
		cmocka_unit_test(test_memtable__snapshot_hides_newer_entries),
		cmocka_unit_test(test_memtable__empty_key_and_empty_value),
		cmocka_unit_test(test_memtable__keys_with_nul_bytes_stay_distinct),
		cmocka_unit_test(test_memtable__iterator_and_get_match_model),
		cmocka_unit_test(test_memtable__iterator_seek_by_internal_key),
		cmocka_unit_test(test_memtable__iterator_holds_a_reference),
		cmocka_unit_test(test_memtable__duplicate_internal_key_is_refused),
		cmocka_unit_test(test_memtable__bytes_and_count_track_adds),
		cmocka_unit_test(test_memtable__key_filter_never_hides_an_added_key),
		cmocka_unit_test(test_memtable__get_runs_concurrently_with_add),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
