/*
 * rng.c - xoshiro256** seeded by splitmix64 (see rng.h).
 */
#include "util/rng.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/time.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void kv_rng_seed(struct kv_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t kv_rng_next(struct kv_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t kv_rng_below(struct kv_rng *r, uint64_t bound)
{
	/* Lemire's multiply-shift; the bias is negligible for test use. */
	return (uint64_t)(((unsigned __int128)kv_rng_next(r) * bound) >> 64);
}

double kv_rng_double(struct kv_rng *r)
{
	return (double)(kv_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t kv_test_seed(const char *test_name)
{
	const char *env = getenv("KV_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : kv_now_ns() ^ kv_wall_ns();
	fprintf(stderr, "%s: KV_SEED=%" PRIu64 "\n", test_name, seed);
	return seed;
}
