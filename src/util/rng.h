/*
 * rng.h - a small seeded pseudo-random generator (xoshiro256**).
 *
 * Deterministic for a given seed, so tests and the simulator replay exactly.
 * Not for cryptography.
 */
#ifndef KV_UTIL_RNG_H
#define KV_UTIL_RNG_H

#include <stdint.h>

struct kv_rng {
	uint64_t s[4];
};

void kv_rng_seed(struct kv_rng *r, uint64_t seed);
uint64_t kv_rng_next(struct kv_rng *r);
/* Uniform in [0, bound); bound > 0. */
uint64_t kv_rng_below(struct kv_rng *r, uint64_t bound);
/* Uniform in [0, 1). */
double kv_rng_double(struct kv_rng *r);

/*
 * The seed for a randomized test: $KV_SEED when set, otherwise one drawn from
 * the clock. Either way it is printed to stderr so a failure can be replayed.
 */
uint64_t kv_test_seed(const char *test_name);

#endif
