/*
 * test_keys.c - the placement key rule and the storage key (src/ring/keys.h):
 * order preservation, directory ranges, token-range spans, strict decoding.
 * Randomized tests print their seed; KV_SEED=... replays them.
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

#include "ring/keys.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"

#define S(lit) kv_slice_make(lit, sizeof(lit) - 1)

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

/* A random key over a small alphabet full of the awkward bytes. */
static size_t random_key(struct kv_rng *rng, uint8_t *key, size_t max_len)
{
	static const uint8_t alphabet[] = { 0x00, 0x01, 0x02, 0xfe, 0xff, '/', 'a', 'b' };
	size_t n = (size_t)kv_rng_below(rng, max_len + 1);
	for (size_t i = 0; i < n; i++)
		key[i] = alphabet[kv_rng_below(rng, sizeof alphabet)];
	return n;
}

static void test_keys__placement_rule(void **state)
{
	(void)state;
	static const struct {
		const char *key;
		size_t key_len;
		const char *placement;
		size_t placement_len;
	} cases[] = {
#define C(k, p) { k, sizeof(k) - 1, p, sizeof(p) - 1 }
		C("/a", ""),                 /* an entry of the root */
		C("/", ""),
		C("/a/b", "/a"),
		C("/a/b/c.txt", "/a/b"),
		C("/a/b/", "/a/b"),          /* a trailing '/' names an empty child */
		C("//x", "/"),
		C("/a\0/b\0", "/a\0"),       /* \0 is an ordinary byte */
		C("/\xff/\xff", "/\xff"),
		C("a/b", "a/b"),             /* not '/'-prefixed: the whole key */
		C("chunk\0/x", "chunk\0/x"),
		C("", ""),
		C("\0/", "\0/"),
#undef C
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct kv_slice key = kv_slice_make(cases[i].key, cases[i].key_len);
		struct kv_slice pk = kv_key_placement(key);
		assert_int_equal(pk.n, cases[i].placement_len);
		assert_memory_equal(pk.p, cases[i].placement, pk.n);
		assert_ptr_equal(pk.p, key.p); /* borrowed from the key */
		assert_true(kv_key_position(key) == kv_hash64(pk.p, pk.n));
	}
	/* Siblings share a position; parent and child usually do not. */
	assert_true(kv_key_position(S("/d/x")) == kv_key_position(S("/d/y")));
	assert_true(kv_key_position(S("/d/x")) != kv_key_position(S("/d/x/y")));
}

static void test_keys__is_child_means_placed_under_dir(void **state)
{
	(void)state;
	assert_true(kv_key_is_child(S(""), S("/a")));
	assert_true(kv_key_is_child(S("/"), S("/a")));
	assert_false(kv_key_is_child(S(""), S("/a/b")));
	assert_true(kv_key_is_child(S("/a"), S("/a/b")));
	assert_true(kv_key_is_child(S("/a"), S("/a/")));
	assert_false(kv_key_is_child(S("/a"), S("/a/b/c")));
	assert_false(kv_key_is_child(S("/a"), S("/ab")));
	assert_false(kv_key_is_child(S("/a"), S("/a")));
	assert_false(kv_key_is_child(S("a"), S("a/b")));
	assert_true(kv_key_is_child(S("/a\0"), S("/a\0/\0")));
}

static void test_keys__escape_preserves_byte_order(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_keys__escape_preserves_byte_order"));
	struct kv_buf ea = KV_BUF_INIT, eb = KV_BUF_INIT;
	uint8_t a[16], b[16];
	for (int i = 0; i < 50000; i++) {
		size_t an = random_key(&rng, a, sizeof a);
		size_t bn = random_key(&rng, b, sizeof b);
		if (i % 4 == 0) { /* often make one a prefix of the other */
			bn = an + (size_t)kv_rng_below(&rng, 3);
			if (bn > sizeof b)
				bn = sizeof b;
			memcpy(b, a, an);
		}
		kv_buf_reset(&ea);
		kv_buf_reset(&eb);
		assert_int_equal(kv_skey_escape(&ea, kv_slice_make(a, an)), 0);
		assert_int_equal(kv_skey_escape(&eb, kv_slice_make(b, bn)), 0);
		int want = sign(kv_slice_cmp(kv_slice_make(a, an), kv_slice_make(b, bn)));
		assert_int_equal(sign(kv_slice_cmp(kv_buf_slice(&ea), kv_buf_slice(&eb))), want);
		/* A suffix after the terminator never changes the order of two
		 * different keys. */
		if (want != 0) {
			assert_int_equal(kv_buf_append(&ea, "\xff\xff", 2), 0);
			assert_int_equal(kv_buf_append(&eb, "\x00", 1), 0);
			assert_int_equal(sign(kv_slice_cmp(kv_buf_slice(&ea), kv_buf_slice(&eb))),
					 want);
		}
	}
	kv_buf_release(&ea);
	kv_buf_release(&eb);
}

static int cmp_pos_key(uint64_t pa, struct kv_slice a, uint64_t pb, struct kv_slice b)
{
	if (pa != pb)
		return pa < pb ? -1 : 1;
	return sign(kv_slice_cmp(a, b));
}

static void test_keys__storage_keys_sort_by_position_then_key(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_keys__storage_keys_sort_by_position_then_key"));
	struct kv_buf sa = KV_BUF_INIT, sb = KV_BUF_INIT;
	uint8_t a[16], b[16];
	for (int i = 0; i < 20000; i++) {
		/* Same directory half the time, so the key order is exercised. */
		a[0] = b[0] = '/';
		a[1] = b[1] = 'd';
		a[2] = b[2] = '/';
		size_t an = 3 + random_key(&rng, a + 3, 8);
		size_t bn = 3 + random_key(&rng, b + 3, 8);
		if (i % 2) {
			for (size_t k = 3; k < an; k++)
				if (a[k] == '/')
					a[k] = 'x';
			for (size_t k = 3; k < bn; k++)
				if (b[k] == '/')
					b[k] = 'x';
		}
		struct kv_slice ka = kv_slice_make(a, an), kb = kv_slice_make(b, bn);
		kv_buf_reset(&sa);
		kv_buf_reset(&sb);
		assert_int_equal(kv_skey_encode(&sa, ka), 0);
		assert_int_equal(kv_skey_encode(&sb, kb), 0);
		assert_int_equal(sa.n, kv_skey_size(ka));
		int want = cmp_pos_key(kv_key_position(ka), ka, kv_key_position(kb), kb);
		assert_int_equal(sign(kv_slice_cmp(kv_buf_slice(&sa), kv_buf_slice(&sb))), want);
	}
	kv_buf_release(&sa);
	kv_buf_release(&sb);
}

static void check_round_trip(struct kv_slice key)
{
	struct kv_buf skey = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&skey, key), 0);
	assert_int_equal(skey.n, kv_skey_size(key));
	assert_true(kv_get_be64(skey.p) == kv_key_position(key));

	static uint8_t dst[KV_SKEY_MAX];
	assert_int_equal(kv_skey_encode_to(dst, sizeof dst, key), (int)skey.n);
	assert_memory_equal(dst, skey.p, skey.n);

	static uint8_t out[KV_KEY_MAX];
	uint64_t pos = 0;
	size_t len = 0;
	assert_int_equal(kv_skey_decode(kv_buf_slice(&skey), &pos, out, &len), (int)skey.n);
	assert_int_equal(len, key.n);
	assert_memory_equal(out, key.p, key.n);
	assert_true(pos == kv_key_position(key));

	/* A suffix may follow (the engine appends its own fields). */
	size_t n = skey.n;
	assert_int_equal(kv_buf_append(&skey, "\x00\x01\xff", 3), 0);
	assert_int_equal(kv_skey_decode(kv_buf_slice(&skey), &pos, out, &len), (int)n);
	assert_int_equal(len, key.n);

	/* Every truncation is an error, never a shorter key. */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(kv_skey_decode(kv_slice_make(skey.p, k), &pos, out, &len),
				 KV_ECORRUPT);
	kv_buf_release(&skey);
}

static void test_keys__odd_bytes_round_trip(void **state)
{
	(void)state;
	check_round_trip(S(""));
	check_round_trip(S("\0"));
	check_round_trip(S("\0\0"));
	check_round_trip(S("\xff"));
	check_round_trip(S("\0\xff"));
	check_round_trip(S("\0\x01"));
	check_round_trip(S("/"));
	check_round_trip(S("//"));
	check_round_trip(S("///a///"));
	check_round_trip(S("/a\0/b\0"));
	check_round_trip(S("/photos/2026/cat.jpg"));
	static uint8_t big[KV_KEY_MAX];
	memset(big, 0, sizeof big); /* the largest storage key */
	check_round_trip(kv_slice_make(big, sizeof big));
	assert_int_equal(kv_skey_size(kv_slice_make(big, sizeof big)), KV_SKEY_MAX);
	memset(big, 0xff, sizeof big);
	big[0] = '/';
	check_round_trip(kv_slice_make(big, sizeof big));
}

/* The worked example of doc/placement.md, byte for byte. */
static void test_keys__worked_example_is_stable(void **state)
{
	(void)state;
	static const uint8_t cat[] = {
		0x98, 0xc2, 0x58, 0xde, 0xe8, 0x93, 0x56, 0x11, /* xxh3("/photos") */
		'/', 'p', 'h', 'o', 't', 'o', 's', '/', 'c', 'a', 't', '.', 'j', 'p', 'g',
		0x00, 0x01,
	};
	static const uint8_t nul[] = {
		0x33, 0xed, 0xc1, 0x7a, 0x2f, 0xef, 0x73, 0xe8, /* xxh3("/a\0b") */
		'/', 'a', 0x00, 0xff, 'b', '/', 'c', 0x00, 0x01,
	};
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_skey_encode(&b, S("/photos/cat.jpg")), 0);
	assert_int_equal(b.n, sizeof cat);
	assert_memory_equal(b.p, cat, sizeof cat);
	kv_buf_reset(&b);
	assert_int_equal(kv_skey_encode(&b, S("/a\0b/c")), 0);
	assert_int_equal(b.n, sizeof nul);
	assert_memory_equal(b.p, nul, sizeof nul);
	assert_true(kv_key_position(S("/")) == 0x2d06800538d394c2ULL); /* xxh3("") */

	struct kv_buf lo = KV_BUF_INIT, hi = KV_BUF_INIT;
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S("/photos"), kv_slice_make(NULL, 0)), 0);
	assert_int_equal(lo.n, 16);
	assert_memory_equal(lo.p, cat, 16);
	assert_memory_equal(hi.p, cat, 15);
	assert_int_equal(hi.p[15], '0');
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S("/photos"), S("cat.jpg")), 0);
	assert_int_equal(lo.n, sizeof cat);
	assert_memory_equal(lo.p, cat, sizeof cat - 1);
	assert_int_equal(lo.p[sizeof cat - 1], 0x02);
	kv_buf_release(&b);
	kv_buf_release(&lo);
	kv_buf_release(&hi);
}

static void test_keys__encode_rejects_oversize_keys(void **state)
{
	(void)state;
	static uint8_t big[KV_KEY_MAX + 1];
	static uint8_t dst[KV_SKEY_MAX + 8];
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_buf_append(&b, "xy", 2), 0);
	assert_int_equal(kv_skey_encode(&b, kv_slice_make(big, sizeof big)), KV_ETOOBIG);
	assert_int_equal(b.n, 2); /* left as it was */
	assert_int_equal(kv_skey_encode_to(dst, sizeof dst, kv_slice_make(big, sizeof big)),
			 KV_ETOOBIG);
	/* Too small a destination. */
	assert_int_equal(kv_skey_encode_to(dst, 11, S("\0")), KV_EINVAL);
	assert_int_equal(kv_skey_encode_to(dst, 12, S("\0")), 12);
	kv_buf_release(&b);
}

static void test_keys__decode_rejects_malformed(void **state)
{
	(void)state;
	uint8_t pos_ab[8];
	kv_put_be64(pos_ab, kv_key_position(S("ab")));
	uint8_t t[32];
	uint8_t out[KV_KEY_MAX];
	uint64_t pos = 7;
	size_t len = 9;

	memcpy(t, pos_ab, 8);
	memcpy(t + 8, "ab\0\x01", 4); /* the valid form */
	assert_int_equal(kv_skey_decode(kv_slice_make(t, 12), &pos, out, &len), 12);
	pos = 7;
	len = 9;

	/* 00 followed by anything but FF or 01. */
	static const uint8_t bad_escapes[] = { 0x00, 0x02, 0x7f, 0xfe };
	for (size_t i = 0; i < sizeof bad_escapes; i++) {
		memcpy(t + 8, "a\0", 2);
		t[10] = bad_escapes[i];
		memcpy(t + 11, "\0\x01", 2);
		assert_int_equal(kv_skey_decode(kv_slice_make(t, 13), &pos, out, &len),
				 KV_ECORRUPT);
	}
	/* A lone 00 at the end; no terminator at all. */
	memcpy(t + 8, "ab\0", 3);
	assert_int_equal(kv_skey_decode(kv_slice_make(t, 11), &pos, out, &len), KV_ECORRUPT);
	assert_int_equal(kv_skey_decode(kv_slice_make(t, 10), &pos, out, &len), KV_ECORRUPT);
	/* Shorter than a position and a terminator. */
	assert_int_equal(kv_skey_decode(kv_slice_make(t, 9), &pos, out, &len), KV_ECORRUPT);
	assert_int_equal(kv_skey_decode(kv_slice_make(NULL, 0), &pos, out, &len), KV_ECORRUPT);
	/* A position that is not the key's own: every bit of it is checked. */
	memcpy(t + 8, "ab\0\x01", 4);
	for (int bit = 0; bit < 64; bit++) {
		t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(kv_skey_decode(kv_slice_make(t, 12), &pos, out, &len),
				 KV_ECORRUPT);
		t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	/* Outputs untouched by every failure above. */
	assert_true(pos == 7);
	assert_int_equal(len, 9);

	/* A key longer than KV_KEY_MAX, escaped or not. */
	static uint8_t big[8 + 2 * (KV_KEY_MAX + 1) + 2];
	memset(big, 'x', 8 + KV_KEY_MAX + 1);
	memcpy(big + 8 + KV_KEY_MAX + 1, "\0\x01", 2);
	assert_int_equal(kv_skey_decode(kv_slice_make(big, 8 + KV_KEY_MAX + 3), &pos, out, &len),
			 KV_ECORRUPT);
	for (size_t i = 0; i < KV_KEY_MAX + 1; i++) {
		big[8 + 2 * i] = 0;
		big[8 + 2 * i + 1] = 0xff;
	}
	memcpy(big + 8 + 2 * (KV_KEY_MAX + 1), "\0\x01", 2);
	assert_int_equal(kv_skey_decode(kv_slice_make(big, sizeof big), &pos, out, &len),
			 KV_ECORRUPT);
}

static void test_keys__decode_of_random_bytes_is_canonical(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_keys__decode_of_random_bytes_is_canonical"));
	struct kv_buf skey = KV_BUF_INIT, again = KV_BUF_INIT;
	uint8_t key[24];
	static uint8_t out[KV_KEY_MAX];
	int decoded = 0;
	for (int i = 0; i < 50000; i++) {
		/* Start from a valid storage key and damage it a little. */
		kv_buf_reset(&skey);
		size_t kn = random_key(&rng, key, sizeof key);
		assert_int_equal(kv_skey_encode(&skey, kv_slice_make(key, kn)), 0);
		int edits = (int)kv_rng_below(&rng, 3);
		for (int e = 0; e < edits; e++) {
			size_t at = 8 + (size_t)kv_rng_below(&rng, skey.n - 8);
			skey.p[at] = (uint8_t)kv_rng_below(&rng, 4) == 0 ? 0 : (uint8_t)kv_rng_next(&rng);
		}
		if (kv_rng_below(&rng, 4) == 0)
			skey.n -= (size_t)kv_rng_below(&rng, skey.n + 1);
		uint64_t pos;
		size_t len;
		int n = kv_skey_decode(kv_buf_slice(&skey), &pos, out, &len);
		if (n < 0) {
			assert_int_equal(n, KV_ECORRUPT);
			continue;
		}
		/* Whatever decodes re-encodes to exactly the bytes it came from. */
		decoded++;
		kv_buf_reset(&again);
		assert_int_equal(kv_skey_encode(&again, kv_slice_make(out, len)), 0);
		assert_int_equal(again.n, (size_t)n);
		assert_memory_equal(again.p, skey.p, (size_t)n);
	}
	assert_true(decoded > 1000);
	kv_buf_release(&skey);
	kv_buf_release(&again);
}

/* ---- directory ranges ------------------------------------------------ */

struct entry {
	struct kv_buf key;
	struct kv_buf skey;
};

static int cmp_entry_skey(const void *a, const void *b)
{
	const struct entry *ea = a, *eb = b;
	return kv_slice_cmp(kv_buf_slice(&ea->skey), kv_buf_slice(&eb->skey));
}

static void add_key(struct entry *entries, size_t *n, struct kv_slice dir, struct kv_slice name)
{
	struct entry *e = &entries[(*n)++];
	kv_buf_init(&e->key);
	kv_buf_init(&e->skey);
	assert_int_equal(kv_buf_append(&e->key, dir.p, dir.n), 0);
	assert_int_equal(kv_buf_append_u8(&e->key, '/'), 0);
	assert_int_equal(kv_buf_append(&e->key, name.p, name.n), 0);
	assert_int_equal(kv_skey_encode(&e->skey, kv_buf_slice(&e->key)), 0);
}

static void test_keys__dir_range_holds_exactly_direct_children(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_keys__dir_range_holds_exactly_direct_children"));
	/* Directories that are prefixes of each other, byte-wise neighbours,
	 * and names full of \0, 0xFF and '/' runs. */
	static const struct kv_slice dirs[] = {
		{ (const uint8_t *)"", 0 },      { (const uint8_t *)"/a", 2 },
		{ (const uint8_t *)"/a/b", 4 },  { (const uint8_t *)"/a/b/c", 6 },
		{ (const uint8_t *)"/ab", 3 },   { (const uint8_t *)"/a\0", 3 },
		{ (const uint8_t *)"/a\xff", 3 }, { (const uint8_t *)"/a/\0", 4 },
		{ (const uint8_t *)"/a.", 3 },   { (const uint8_t *)"/a//b", 5 },
	};
	const size_t n_dirs = sizeof dirs / sizeof dirs[0];
	const size_t per_dir = 40;
	struct entry *entries = calloc(n_dirs * per_dir + 8, sizeof *entries);
	assert_non_null(entries);
	size_t n = 0;
	for (size_t d = 0; d < n_dirs; d++) {
		for (size_t i = 0; i < per_dir; i++) {
			uint8_t name[12];
			size_t nn = random_key(&rng, name, sizeof name);
			/* Most names are children ('/' replaced), some are deeper. */
			if (i % 5)
				for (size_t k = 0; k < nn; k++)
					if (name[k] == '/')
						name[k] = '.';
			add_key(entries, &n, dirs[d], kv_slice_make(name, nn));
		}
	}
	add_key(entries, &n, S("/a"), S(""));   /* "/a/" */
	add_key(entries, &n, S("/a"), S("\0")); /* "/a/\0" */
	add_key(entries, &n, S(""), S(""));     /* "/" */
	qsort(entries, n, sizeof *entries, cmp_entry_skey);

	struct kv_buf lo = KV_BUF_INIT, hi = KV_BUF_INIT;
	for (size_t d = 0; d < n_dirs; d++) {
		assert_int_equal(kv_skey_dir_range(&lo, &hi, dirs[d], kv_slice_make(NULL, 0)), 0);
		assert_true(kv_slice_cmp(kv_buf_slice(&lo), kv_buf_slice(&hi)) < 0);
		size_t first = SIZE_MAX, last = 0, in_range = 0, children = 0;
		for (size_t i = 0; i < n; i++) {
			struct kv_slice sk = kv_buf_slice(&entries[i].skey);
			bool in = kv_slice_cmp(sk, kv_buf_slice(&lo)) >= 0 &&
				  kv_slice_cmp(sk, kv_buf_slice(&hi)) < 0;
			bool child = kv_key_is_child(dirs[d], kv_buf_slice(&entries[i].key));
			assert_int_equal(in, child);
			if (in) {
				in_range++;
				first = first == SIZE_MAX ? i : first;
				last = i;
			}
			children += child;
		}
		assert_true(children > 0);
		/* Contiguous in storage order: one range scan. */
		assert_int_equal(last - first + 1, in_range);
	}
	/* "/" is the root too. */
	struct kv_buf lo2 = KV_BUF_INIT, hi2 = KV_BUF_INIT;
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S(""), kv_slice_make(NULL, 0)), 0);
	assert_int_equal(kv_skey_dir_range(&lo2, &hi2, S("/"), kv_slice_make(NULL, 0)), 0);
	assert_true(kv_slice_eq(kv_buf_slice(&lo), kv_buf_slice(&lo2)));
	assert_true(kv_slice_eq(kv_buf_slice(&hi), kv_buf_slice(&hi2)));

	/* Resuming after a cursor name: exactly the children whose name sorts
	 * after it, whether or not the cursor names a key. */
	for (int round = 0; round < 300; round++) {
		struct kv_slice dir = dirs[kv_rng_below(&rng, n_dirs)];
		uint8_t after[12];
		size_t an;
		const struct entry *pick = &entries[kv_rng_below(&rng, n)];
		if (round % 2 && kv_key_is_child(dir, kv_buf_slice(&pick->key))) {
			an = pick->key.n - dir.n - 1;
			memcpy(after, pick->key.p + dir.n + 1, an);
		} else {
			an = random_key(&rng, after, sizeof after);
		}
		assert_int_equal(kv_skey_dir_range(&lo, &hi, dir, kv_slice_make(after, an)), 0);
		for (size_t i = 0; i < n; i++) {
			struct kv_slice key = kv_buf_slice(&entries[i].key);
			struct kv_slice sk = kv_buf_slice(&entries[i].skey);
			bool in = kv_slice_cmp(sk, kv_buf_slice(&lo)) >= 0 &&
				  kv_slice_cmp(sk, kv_buf_slice(&hi)) < 0;
			bool want = kv_key_is_child(dir, key) &&
				    kv_slice_cmp(kv_slice_make(key.p + dir.n + 1, key.n - dir.n - 1),
						 kv_slice_make(after, an)) > 0;
			assert_int_equal(in, want);
		}
	}
	for (size_t i = 0; i < n; i++) {
		kv_buf_release(&entries[i].key);
		kv_buf_release(&entries[i].skey);
	}
	free(entries);
	kv_buf_release(&lo);
	kv_buf_release(&hi);
	kv_buf_release(&lo2);
	kv_buf_release(&hi2);
}

static void test_keys__dir_range_rejects_bad_dirs(void **state)
{
	(void)state;
	struct kv_buf lo = KV_BUF_INIT, hi = KV_BUF_INIT;
	struct kv_slice none = kv_slice_make(NULL, 0);
	assert_int_equal(kv_buf_append(&lo, "junk", 4), 0);
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S("a"), none), KV_EINVAL);
	assert_int_equal(lo.n, 0);
	assert_int_equal(hi.n, 0);
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S("/a/"), none), KV_EINVAL);
	assert_int_equal(kv_skey_dir_range(&lo, &hi, S("//"), none), KV_EINVAL);
	static uint8_t big[KV_KEY_MAX];
	memset(big, 'x', sizeof big);
	big[0] = '/';
	assert_int_equal(kv_skey_dir_range(&lo, &hi, kv_slice_make(big, KV_KEY_MAX), none),
			 KV_ETOOBIG);
	assert_int_equal(kv_skey_dir_range(&lo, &hi, kv_slice_make(big, KV_KEY_MAX - 1), none), 0);
	assert_int_equal(kv_skey_dir_range(&lo, &hi, kv_slice_make(big, KV_KEY_MAX - 1), S("x")),
			 KV_ETOOBIG);
	assert_int_equal(lo.n, 0);
	kv_buf_release(&lo);
	kv_buf_release(&hi);
}

/* ---- token ranges ------------------------------------------------------ */

static bool in_token_range(uint64_t start, uint64_t end, uint64_t pos)
{
	if (start == end)
		return true;
	if (start < end)
		return pos > start && pos <= end;
	return pos > start || pos <= end;
}

static void check_spans(uint64_t start, uint64_t end, const uint64_t *probes, size_t n_probes)
{
	struct kv_skey_span spans[2];
	int n = kv_skey_token_spans(start, end, spans);
	assert_true(n == 1 || n == 2);
	if (n == 2) /* in storage-key order, disjoint */
		assert_true(memcmp(spans[0].hi, spans[1].lo, 8) <= 0 && !spans[0].hi_unbounded);
	for (size_t i = 0; i < n_probes; i++) {
		/* The smallest and a large storage key at this position. */
		uint8_t sk[12];
		kv_put_be64(sk, probes[i]);
		memcpy(sk + 8, "\0\x01", 2);
		uint8_t sk_big[12];
		kv_put_be64(sk_big, probes[i]);
		memset(sk_big + 8, 0xff, 4);
		bool want = in_token_range(start, end, probes[i]);
		bool got = false, got_big = false;
		for (int s = 0; s < n; s++) {
			got |= kv_skey_span_contains(&spans[s], kv_slice_make(sk, 10));
			got_big |= kv_skey_span_contains(&spans[s], kv_slice_make(sk_big, 12));
		}
		assert_int_equal(got, want);
		assert_int_equal(got_big, want);
	}
}

static void test_keys__token_range_spans(void **state)
{
	(void)state;
	struct kv_rng rng;
	kv_rng_seed(&rng, kv_test_seed("test_keys__token_range_spans"));
	static const uint64_t edges[] = { 0, 1, 2, 1000, UINT64_MAX / 2, UINT64_MAX - 1,
					  UINT64_MAX };
	const size_t n_edges = sizeof edges / sizeof edges[0];
	for (size_t a = 0; a < n_edges; a++)
		for (size_t b = 0; b < n_edges; b++)
			check_spans(edges[a], edges[b], edges, n_edges);
	for (int i = 0; i < 2000; i++) {
		uint64_t start = kv_rng_next(&rng), end = kv_rng_next(&rng);
		uint64_t probes[] = { start, start + 1, start - 1, end, end + 1, end - 1,
				      kv_rng_next(&rng), 0, UINT64_MAX };
		check_spans(start, end, probes, sizeof probes / sizeof probes[0]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys__placement_rule),
		cmocka_unit_test(test_keys__is_child_means_placed_under_dir),
		cmocka_unit_test(test_keys__escape_preserves_byte_order),
		cmocka_unit_test(test_keys__storage_keys_sort_by_position_then_key),
		cmocka_unit_test(test_keys__odd_bytes_round_trip),
		cmocka_unit_test(test_keys__worked_example_is_stable),
		cmocka_unit_test(test_keys__encode_rejects_oversize_keys),
		cmocka_unit_test(test_keys__decode_rejects_malformed),
		cmocka_unit_test(test_keys__decode_of_random_bytes_is_canonical),
		cmocka_unit_test(test_keys__dir_range_holds_exactly_direct_children),
		cmocka_unit_test(test_keys__dir_range_rejects_bad_dirs),
		cmocka_unit_test(test_keys__token_range_spans),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
