/*
 * test_context.c - actors, dots and causal contexts (src/version/dot.h):
 * coverage, folding, merge laws (seeded; KV_SEED=... replays), retirement,
 * and the canonical encoding with its corruption cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/error.h"
#include "util/rng.h"
#include "util/slice.h"
#include "version/dot.h"

static struct kv_dot dot(uint32_t node, uint64_t counter)
{
	return (struct kv_dot){ { node, 1 }, counter };
}

static void add(struct kv_ctx *c, uint32_t node, uint64_t counter)
{
	assert_int_equal(kv_ctx_add(c, dot(node, counter)), 0);
}

static void assert_same_ctx(const struct kv_ctx *a, const struct kv_ctx *b)
{
	struct kv_buf ea = KV_BUF_INIT, eb = KV_BUF_INIT;
	assert_int_equal(kv_ctx_encode(a, &ea), 0);
	assert_int_equal(kv_ctx_encode(b, &eb), 0);
	assert_true(kv_ctx_equal(a, b));
	assert_int_equal(ea.n, eb.n);
	assert_memory_equal(ea.p, eb.p, ea.n);
	kv_buf_release(&ea);
	kv_buf_release(&eb);
}

static void test_context__orders_actors_by_node_then_epoch(void **state)
{
	(void)state;
	struct kv_actor a = { 1, 2 }, b = { 2, 1 }, c = { 1, 3 };
	assert_true(kv_actor_cmp(a, b) < 0);
	assert_true(kv_actor_cmp(a, c) < 0);
	assert_true(kv_actor_cmp(c, b) < 0);
	assert_int_equal(kv_actor_cmp(a, a), 0);
	assert_true(kv_dot_cmp(dot(1, 9), dot(2, 1)) < 0);
	assert_true(kv_dot_cmp(dot(1, 2), dot(1, 10)) < 0);
}

static void test_context__empty_covers_nothing(void **state)
{
	(void)state;
	struct kv_ctx c = KV_CTX_INIT;
	assert_true(kv_ctx_is_empty(&c));
	assert_false(kv_ctx_covers(&c, dot(1, 1)));
	assert_true(kv_ctx_max(&c, dot(1, 1).actor) == 0);
	assert_int_equal(kv_ctx_add(&c, dot(1, 0)), KV_EINVAL);
	assert_true(kv_ctx_is_empty(&c));
	kv_ctx_release(&c);
}

static void test_context__contiguous_dots_fold_into_the_vector(void **state)
{
	(void)state;
	struct kv_ctx c = KV_CTX_INIT;
	add(&c, 1, 3);
	add(&c, 1, 5);
	assert_int_equal(c.nvv, 0);
	assert_int_equal(c.ncloud, 2);
	assert_false(kv_ctx_covers(&c, dot(1, 1)));
	assert_true(kv_ctx_covers(&c, dot(1, 3)));
	assert_false(kv_ctx_covers(&c, dot(1, 4)));
	assert_true(kv_ctx_max(&c, dot(1, 1).actor) == 5);
	add(&c, 1, 1);
	add(&c, 1, 2); /* 1..3 contiguous now; 5 stays in the cloud */
	assert_int_equal(c.nvv, 1);
	assert_true(c.vv[0].max == 3);
	assert_int_equal(c.ncloud, 1);
	add(&c, 1, 4); /* 1..5 */
	assert_int_equal(c.ncloud, 0);
	assert_true(c.vv[0].max == 5);
	for (uint64_t k = 1; k <= 5; k++)
		assert_true(kv_ctx_covers(&c, dot(1, k)));
	assert_false(kv_ctx_covers(&c, dot(1, 6)));
	assert_false(kv_ctx_covers(&c, dot(2, 1)));
	/* Adding a covered dot changes nothing. */
	add(&c, 1, 2);
	assert_true(c.vv[0].max == 5);
	kv_ctx_release(&c);
}

static void test_context__one_dot_covers_exactly_that_dot(void **state)
{
	(void)state;
	struct kv_ctx c = KV_CTX_INIT;
	add(&c, 7, 42);
	assert_true(kv_ctx_covers(&c, dot(7, 42)));
	assert_false(kv_ctx_covers(&c, dot(7, 41)));
	assert_false(kv_ctx_covers(&c, dot(7, 43)));
	assert_false(kv_ctx_covers(&c, (struct kv_dot){ { 7, 2 }, 42 })); /* other epoch */
	kv_ctx_release(&c);
}

static void test_context__merge_absorbs_cloud_into_vector(void **state)
{
	(void)state;
	struct kv_ctx a = KV_CTX_INIT, b = KV_CTX_INIT;
	add(&a, 1, 3);
	add(&a, 2, 5);
	for (uint64_t k = 1; k <= 4; k++)
		add(&b, 1, k);
	add(&b, 3, 1);
	assert_int_equal(kv_ctx_merge(&a, &b), 0);
	assert_int_equal(a.nvv, 2); /* 1 -> 4, 3 -> 1 */
	assert_int_equal(a.ncloud, 1); /* 2:5 */
	assert_true(kv_ctx_covers(&a, dot(1, 4)));
	assert_true(kv_ctx_covers(&a, dot(2, 5)));
	assert_false(kv_ctx_covers(&a, dot(2, 4)));
	/* Self-merge is a no-op. */
	assert_int_equal(kv_ctx_merge(&a, &a), 0);
	assert_int_equal(a.nvv, 2);
	kv_ctx_release(&a);
	kv_ctx_release(&b);
}

static void test_context__advance_jumps_the_vector(void **state)
{
	(void)state;
	struct kv_ctx c = KV_CTX_INIT;
	add(&c, 1, 1);
	add(&c, 1, 50);
	add(&c, 1, 200);
	assert_int_equal(kv_ctx_advance(&c, dot(1, 100)), 0);
	assert_true(c.vv[0].max == 100);
	assert_int_equal(c.ncloud, 1);
	assert_true(c.cloud[0].counter == 200);
	assert_int_equal(kv_ctx_advance(&c, dot(1, 199)), 0); /* folds 200 */
	assert_int_equal(c.ncloud, 0);
	assert_true(c.vv[0].max == 200);
	assert_int_equal(kv_ctx_advance(&c, dot(1, 10)), 0); /* never lowers */
	assert_true(c.vv[0].max == 200);
	assert_int_equal(kv_ctx_advance(&c, dot(1, 0)), KV_EINVAL);
	kv_ctx_release(&c);
}

static void test_context__retire_drops_one_actor(void **state)
{
	(void)state;
	struct kv_ctx c = KV_CTX_INIT;
	add(&c, 1, 1);
	add(&c, 2, 1);
	add(&c, 2, 9);
	add(&c, 3, 4);
	assert_int_equal(kv_ctx_retire(&c, dot(2, 1).actor), 2);
	assert_false(kv_ctx_covers(&c, dot(2, 1)));
	assert_false(kv_ctx_covers(&c, dot(2, 9)));
	assert_true(kv_ctx_covers(&c, dot(1, 1)));
	assert_true(kv_ctx_covers(&c, dot(3, 4)));
	assert_int_equal(kv_ctx_retire(&c, dot(2, 1).actor), 0);
	kv_ctx_release(&c);
}

static uint64_t vv_of(const struct kv_ctx *c, struct kv_actor actor)
{
	for (size_t i = 0; i < c->nvv; i++)
		if (kv_actor_eq(c->vv[i].actor, actor))
			return c->vv[i].max;
	return 0;
}

/* A random context over 4 actors with counters up to 40. */
static void random_ctx(struct kv_rng *rng, struct kv_ctx *c)
{
	kv_ctx_clear(c);
	size_t n = (size_t)kv_rng_below(rng, 30);
	for (size_t k = 0; k < n; k++) {
		uint32_t node = 1 + (uint32_t)kv_rng_below(rng, 4);
		uint64_t counter = 1 + kv_rng_below(rng, 40);
		if (kv_rng_below(rng, 4) == 0)
			assert_int_equal(kv_ctx_advance(c, dot(node, counter)), 0);
		else
			add(c, node, counter);
	}
}

static void test_context__merge_is_a_join(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_context__merge_is_a_join");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_ctx a = KV_CTX_INIT, b = KV_CTX_INIT, c = KV_CTX_INIT;
	struct kv_ctx x = KV_CTX_INIT, y = KV_CTX_INIT;
	for (int round = 0; round < 2000; round++) {
		random_ctx(&rng, &a);
		random_ctx(&rng, &b);
		random_ctx(&rng, &c);
		/* Commutative. */
		assert_int_equal(kv_ctx_copy(&x, &a), 0);
		assert_int_equal(kv_ctx_merge(&x, &b), 0);
		assert_int_equal(kv_ctx_copy(&y, &b), 0);
		assert_int_equal(kv_ctx_merge(&y, &a), 0);
		assert_same_ctx(&x, &y);
		/* It covers exactly the union. */
		for (uint32_t node = 1; node <= 4; node++)
			for (uint64_t k = 1; k <= 41; k++)
				assert_true(kv_ctx_covers(&x, dot(node, k)) ==
					    (kv_ctx_covers(&a, dot(node, k)) ||
					     kv_ctx_covers(&b, dot(node, k))));
		/* Associative. */
		assert_int_equal(kv_ctx_merge(&x, &c), 0);
		assert_int_equal(kv_ctx_copy(&y, &b), 0);
		assert_int_equal(kv_ctx_merge(&y, &c), 0);
		assert_int_equal(kv_ctx_merge(&y, &a), 0);
		assert_same_ctx(&x, &y);
		/* Idempotent. */
		assert_int_equal(kv_ctx_copy(&y, &a), 0);
		assert_int_equal(kv_ctx_merge(&y, &a), 0);
		assert_same_ctx(&y, &a);
		/* Normal form: no cloud dot at or next to the vector. */
		for (size_t k = 0; k < x.ncloud; k++)
			assert_true(x.cloud[k].counter > vv_of(&x, x.cloud[k].actor) + 1);
	}
	kv_ctx_release(&a);
	kv_ctx_release(&b);
	kv_ctx_release(&c);
	kv_ctx_release(&x);
	kv_ctx_release(&y);
}

/*
 * kv_ctx_advance (in place when the context has no cloud) matches the
 * union with a one-entry vector, on random contexts, including into a
 * context whose arrays have room (copies reuse them).
 */
static void test_context__advance_matches_the_union(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_context__advance_matches_the_union");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_ctx a = KV_CTX_INIT, x = KV_CTX_INIT, y = KV_CTX_INIT, e = KV_CTX_INIT;
	for (int round = 0; round < 4000; round++) {
		random_ctx(&rng, &a);
		struct kv_dot through = dot((uint32_t)(1 + kv_rng_below(&rng, 5)),
					    1 + kv_rng_below(&rng, 45));
		assert_int_equal(kv_ctx_copy(&x, &a), 0);
		assert_int_equal(kv_ctx_advance(&x, through), 0);
		kv_ctx_release(&e);
		assert_int_equal(kv_ctx_advance(&e, through), 0);
		assert_int_equal(e.nvv, 1);
		assert_int_equal(kv_ctx_copy(&y, &a), 0);
		assert_int_equal(kv_ctx_merge(&y, &e), 0);
		assert_same_ctx(&x, &y);
		for (uint32_t node = 1; node <= 5; node++)
			for (uint64_t k = 1; k <= 46; k++)
				assert_true(kv_ctx_covers(&x, dot(node, k)) ==
					    (kv_ctx_covers(&a, dot(node, k)) ||
					     (node == through.actor.node && k <= through.counter)));
	}
	kv_ctx_release(&a);
	kv_ctx_release(&x);
	kv_ctx_release(&y);
	kv_ctx_release(&e);
}

static void test_context__encoding_round_trips_canonically(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_context__encoding_round_trips_canonically");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	struct kv_ctx c = KV_CTX_INIT, back = KV_CTX_INIT;
	struct kv_buf enc = KV_BUF_INIT, again = KV_BUF_INIT;
	/* Worked example of doc/versions.md: {1:1 -> 3, cloud 1:1@5, 2:1@7 @8}. */
	add(&c, 1, 1);
	add(&c, 1, 2);
	add(&c, 1, 3);
	add(&c, 1, 5);
	add(&c, 2, 7);
	add(&c, 2, 8);
	assert_int_equal(kv_ctx_encode(&c, &enc), 0);
	const uint8_t expect[] = { 0x01, 0x01, 0x01, 0x03, 0x02, 0x01, 0x01, 0x01, 0x00,
				   0x02, 0x01, 0x02, 0x05, 0x00 };
	assert_int_equal(enc.n, sizeof expect);
	assert_memory_equal(enc.p, expect, sizeof expect);
	for (int round = 0; round < 500; round++) {
		if (round)
			random_ctx(&rng, &c);
		kv_buf_reset(&enc);
		assert_int_equal(kv_ctx_encode(&c, &enc), 0);
		assert_int_equal(kv_ctx_decode(kv_buf_slice(&enc), &back), 0);
		assert_same_ctx(&c, &back);
		/* Prefix decoding reports what it used. */
		assert_int_equal(kv_buf_append_u8(&enc, 0xff), 0);
		assert_int_equal(kv_ctx_decode_prefix(kv_buf_slice(&enc), &back), (int)enc.n - 1);
		assert_int_equal(kv_ctx_decode(kv_buf_slice(&enc), &back), KV_ECORRUPT);
		enc.n--;
		/* Truncations fail; bit flips fail or re-encode to the same bytes. */
		for (size_t n = 0; n < enc.n; n++)
			assert_int_equal(kv_ctx_decode(kv_slice_make(enc.p, n), &back), KV_ECORRUPT);
		for (size_t i = 0; i < enc.n; i++) {
			uint8_t saved = enc.p[i];
			enc.p[i] ^= (uint8_t)(1u << kv_rng_below(&rng, 8));
			if (kv_ctx_decode(kv_buf_slice(&enc), &back) == 0) {
				kv_buf_reset(&again);
				assert_int_equal(kv_ctx_encode(&back, &again), 0);
				assert_int_equal(again.n, enc.n);
				assert_memory_equal(again.p, enc.p, enc.n);
			}
			enc.p[i] = saved;
		}
	}
	kv_ctx_release(&c);
	kv_ctx_release(&back);
	kv_buf_release(&enc);
	kv_buf_release(&again);
}

static int decode_bytes(const uint8_t *p, size_t n)
{
	struct kv_ctx c = KV_CTX_INIT;
	int err = kv_ctx_decode(kv_slice_make(p, n), &c);
	kv_ctx_release(&c);
	return err;
}

static void test_context__decode_rejects_malformed_contexts(void **state)
{
	(void)state;
	/* Good: {1:1 -> 3} and nothing else. */
	const uint8_t good[] = { 1, 1, 1, 3, 0 };
	assert_int_equal(decode_bytes(good, sizeof good), 0);
	/* A vector entry of 0. */
	const uint8_t zero_max[] = { 1, 1, 1, 0, 0 };
	assert_int_equal(decode_bytes(zero_max, sizeof zero_max), KV_ECORRUPT);
	/* Unsorted and duplicate actors. */
	const uint8_t unsorted[] = { 2, 2, 1, 1, 1, 1, 1, 0 };
	assert_int_equal(decode_bytes(unsorted, sizeof unsorted), KV_ECORRUPT);
	const uint8_t dup[] = { 2, 1, 1, 1, 1, 1, 2, 0 };
	assert_int_equal(decode_bytes(dup, sizeof dup), KV_ECORRUPT);
	/* An epoch above 32 bits. */
	const uint8_t wide[] = { 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 0 };
	assert_int_equal(decode_bytes(wide, sizeof wide), KV_ECORRUPT);
	/* A cloud group with no dots; unsorted groups. */
	const uint8_t empty_group[] = { 0, 1, 1, 1, 0, 0 };
	assert_int_equal(decode_bytes(empty_group, sizeof empty_group), KV_ECORRUPT);
	const uint8_t groups[] = { 0, 2, 2, 1, 1, 0, 1, 1, 1, 0 };
	assert_int_equal(decode_bytes(groups, sizeof groups), KV_ECORRUPT);
	const uint8_t groups_ok[] = { 0, 2, 1, 1, 1, 0, 2, 1, 1, 0 };
	assert_int_equal(decode_bytes(groups_ok, sizeof groups_ok), 0);
	/* A cloud above a vector entry of 2^64 - 1: nothing fits above it. */
	const uint8_t full[] = { 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				 0x01, 1, 1, 1, 1, 0 };
	assert_int_equal(decode_bytes(full, sizeof full), KV_ECORRUPT);
	const uint8_t full_ok[] = { 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				    0x01, 0 };
	assert_int_equal(decode_bytes(full_ok, sizeof full_ok), 0);
	/* Gaps that overflow 64 bits. */
	const uint8_t overflow[] = { 0, 1, 1, 1, 2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				     0xff, 0xff, 0x01, 0x05 };
	assert_int_equal(decode_bytes(overflow, sizeof overflow), KV_ECORRUPT);
	/* Counts far above the bytes present. */
	const uint8_t many[] = { 0xff, 0xff, 0x03, 1, 1, 1 };
	assert_int_equal(decode_bytes(many, sizeof many), KV_ECORRUPT);
	const uint8_t many_dots[] = { 0, 1, 1, 1, 0x7f, 0 };
	assert_int_equal(decode_bytes(many_dots, sizeof many_dots), KV_ECORRUPT);
	/* Overlong varints. */
	const uint8_t overlong[] = { 0x81, 0x00, 1, 1, 3, 0 };
	assert_int_equal(decode_bytes(overlong, sizeof overlong), KV_ECORRUPT);
	/* A failed decode leaves the output unchanged. */
	struct kv_ctx c = KV_CTX_INIT;
	assert_int_equal(kv_ctx_decode(kv_slice_make(good, sizeof good), &c), 0);
	assert_int_equal(kv_ctx_decode(kv_slice_make(dup, sizeof dup), &c), KV_ECORRUPT);
	assert_int_equal(c.nvv, 1);
	assert_true(c.vv[0].max == 3);
	kv_ctx_release(&c);
}

static void test_context__dot_encoding_round_trips(void **state)
{
	(void)state;
	struct kv_dot d = { { UINT32_MAX, 7 }, UINT64_MAX }, back;
	struct kv_buf b = KV_BUF_INIT;
	assert_int_equal(kv_dot_encode(d, &b), 0);
	assert_int_equal(kv_dot_decode_prefix(kv_buf_slice(&b), &back), (int)b.n);
	assert_true(kv_dot_eq(d, back));
	for (size_t n = 0; n < b.n; n++)
		assert_int_equal(kv_dot_decode_prefix(kv_slice_make(b.p, n), &back), KV_ECORRUPT);
	const uint8_t zero[] = { 1, 1, 0 };
	assert_int_equal(kv_dot_decode_prefix(kv_slice_make(zero, 3), &back), KV_ECORRUPT);
	kv_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_context__orders_actors_by_node_then_epoch),
		cmocka_unit_test(test_context__empty_covers_nothing),
		cmocka_unit_test(test_context__contiguous_dots_fold_into_the_vector),
		cmocka_unit_test(test_context__one_dot_covers_exactly_that_dot),
		cmocka_unit_test(test_context__merge_absorbs_cloud_into_vector),
		cmocka_unit_test(test_context__advance_jumps_the_vector),
		cmocka_unit_test(test_context__retire_drops_one_actor),
		cmocka_unit_test(test_context__advance_matches_the_union),
		cmocka_unit_test(test_context__merge_is_a_join),
		cmocka_unit_test(test_context__encoding_round_trips_canonically),
		cmocka_unit_test(test_context__decode_rejects_malformed_contexts),
		cmocka_unit_test(test_context__dot_encoding_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
