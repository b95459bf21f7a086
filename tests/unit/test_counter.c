/*
 * test_counter.c - the node-wide dot counter with leased blocks
 * (src/version/counter.h): leases, restarts, and a seeded crash simulation
 * (KV_SEED=... replays) showing that no counter is ever handed out twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdbool.h>
#include <cmocka.h>

#include "util/rng.h"
#include "version/counter.h"

static void test_counter__hands_out_nothing_before_a_lease(void **state)
{
	(void)state;
	struct kv_counter c;
	kv_counter_init(&c, 0, 10);
	uint64_t v = 99, lease = 0;
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
	assert_true(v == 99);
	assert_true(kv_counter_available(&c) == 0);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	assert_true(lease == 10);
	/* Not durable yet: still nothing. */
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
	kv_counter_lease_durable(&c, lease);
	assert_true(kv_counter_available(&c) == 10);
	assert_int_equal(kv_counter_peek(&c, &v), 0);
	assert_true(v == 1);
	for (uint64_t k = 1; k <= 10; k++) {
		assert_int_equal(kv_counter_next(&c, &v), 0);
		assert_true(v == k);
	}
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
}

static void test_counter__asks_for_the_next_lease_at_half_a_block(void **state)
{
	(void)state;
	struct kv_counter c;
	uint64_t v, lease;
	kv_counter_init(&c, 0, 10);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	kv_counter_lease_durable(&c, lease);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 0);
	for (int k = 0; k < 5; k++)
		assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 0); /* 5 left */
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1); /* 4 left */
	assert_true(lease == 20);
	/* One lease write at a time. */
	for (int k = 0; k < 4; k++)
		assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 0);
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
	kv_counter_lease_durable(&c, 20);
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_true(v == 11);
	/* A stale report changes nothing. */
	kv_counter_lease_durable(&c, 10);
	assert_true(kv_counter_available(&c) == 9);
}

static void test_counter__failed_lease_is_asked_again(void **state)
{
	(void)state;
	struct kv_counter c;
	uint64_t lease, again;
	kv_counter_init(&c, 500, 100);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	assert_true(lease == 600);
	assert_int_equal(kv_counter_lease_request(&c, &again), 0);
	kv_counter_lease_failed(&c, lease);
	assert_int_equal(kv_counter_lease_request(&c, &again), 1);
	assert_true(again == 600);
}

static void test_counter__restart_resumes_above_the_persisted_lease(void **state)
{
	(void)state;
	struct kv_counter c;
	uint64_t v, lease;
	kv_counter_init(&c, 0, 10000);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	kv_counter_lease_durable(&c, lease);
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_true(v == 1);
	/* Crash; the disk says 10000. */
	kv_counter_init(&c, lease, 10000);
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	assert_true(lease == 20000);
	kv_counter_lease_durable(&c, lease);
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_true(v == 10001);
}

static void test_counter__exhausted_space_overflows(void **state)
{
	(void)state;
	struct kv_counter c;
	uint64_t v, lease;
	kv_counter_init(&c, KV_COUNTER_MAX - 3, 10);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 1);
	assert_true(lease == KV_COUNTER_MAX);
	kv_counter_lease_durable(&c, lease);
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_int_equal(kv_counter_lease_request(&c, &lease), 0); /* 2 left */
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_int_equal(kv_counter_next(&c, &v), 0);
	assert_true(v == KV_COUNTER_MAX);
	assert_int_equal(kv_counter_next(&c, &v), -EAGAIN);
	assert_int_equal(kv_counter_lease_request(&c, &lease), -EOVERFLOW);
}

static void test_counter__never_repeats_across_restarts(void **state)
{
	(void)state;
	uint64_t seed = kv_test_seed("test_counter__never_repeats_across_restarts");
	struct kv_rng rng;
	kv_rng_seed(&rng, seed);
	size_t handed_out = 0, crashes = 0;
	for (int run = 0; run < 50; run++) {
		uint64_t block = 1 + kv_rng_below(&rng, 30);
		uint64_t disk = 0;    /* the lease on disk */
		uint64_t writing = 0; /* a lease write in flight, 0 when none */
		uint64_t last = 0;    /* the highest counter handed out, ever */
		struct kv_counter c;
		kv_counter_init(&c, disk, block);
		for (int step = 0; step < 4000; step++) {
			uint64_t lease, v;
			switch (kv_rng_below(&rng, 8)) {
			case 0:
			case 1:
				if (kv_counter_lease_request(&c, &lease) == 1) {
					assert_true(writing == 0);
					writing = lease;
				}
				break;
			case 2: /* the write lands and is reported */
				if (writing) {
					disk = writing;
					kv_counter_lease_durable(&c, writing);
					writing = 0;
				}
				break;
			case 3: /* the write fails */
				if (writing && kv_rng_below(&rng, 4) == 0) {
					kv_counter_lease_failed(&c, writing);
					writing = 0;
				}
				break;
			case 4: /* crash; a write in flight may or may not have landed */
				if (kv_rng_below(&rng, 8) == 0) {
					if (writing && kv_rng_below(&rng, 2))
						disk = writing;
					writing = 0;
					kv_counter_init(&c, disk, block);
					crashes++;
				}
				break;
			default:
				if (kv_counter_next(&c, &v) == 0) {
					assert_true(v > last);
					assert_true(v <= disk);
					last = v;
					handed_out++;
				}
				break;
			}
		}
	}
	assert_true(handed_out > 10000);
	assert_true(crashes > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter__hands_out_nothing_before_a_lease),
		cmocka_unit_test(test_counter__asks_for_the_next_lease_at_half_a_block),
		cmocka_unit_test(test_counter__failed_lease_is_asked_again),
		cmocka_unit_test(test_counter__restart_resumes_above_the_persisted_lease),
		cmocka_unit_test(test_counter__exhausted_space_overflows),
		cmocka_unit_test(test_counter__never_repeats_across_restarts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
