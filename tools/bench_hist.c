/*
 * bench_hist.c - the latency histogram of kvfs-bench (see bench.h).
 *
 * Bucket layout, HDR-style: values 0..15 ns have a bucket each; above that,
 * each power of two [2^e, 2^(e+1)) is cut into 16 equal sub-buckets, so a
 * bucket is never wider than 1/16 of the values in it. 16 + 60 * 16 = 976
 * buckets cover every uint64_t.
 */
#include "bench.h"

#include <string.h>

#define SUB_BITS 4
#define SUB_COUNT (1u << SUB_BITS)

static unsigned bucket_of(uint64_t ns)
{
	if (ns < SUB_COUNT)
		return (unsigned)ns;
	unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* >= SUB_BITS */
	unsigned sub = (unsigned)(ns >> (e - SUB_BITS)) & (SUB_COUNT - 1);
	return SUB_COUNT + (e - SUB_BITS) * SUB_COUNT + sub;
}

/* The lowest value of bucket @b and its width. */
static void bucket_range(unsigned b, double *low, double *width)
{
	if (b < SUB_COUNT) {
		*low = b;
		*width = 1;
		return;
	}
	unsigned e = (b - SUB_COUNT) / SUB_COUNT + SUB_BITS;
	unsigned sub = (b - SUB_COUNT) % SUB_COUNT;
	double unit = (double)(1ULL << (e - SUB_BITS));
	*low = (double)(SUB_COUNT + sub) * unit;
	*width = unit;
}

void bench_hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->count++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->buckets[bucket_of(ns)]++;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
	into->count += from->count;
	into->sum_ns += from->sum_ns;
	if (from->min_ns < into->min_ns)
		into->min_ns = from->min_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++)
		into->buckets[b] += from->buckets[b];
}

void bench_hist_since(struct bench_hist *out, const struct bench_hist *now,
		      const struct bench_hist *then)
{
	*out = *now;
	out->count -= then->count;
	out->sum_ns -= then->sum_ns;
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++)
		out->buckets[b] -= then->buckets[b];
}

double bench_hist_quantile(const struct bench_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	double rank = q * (double)h->count;
	double seen = 0;
	for (unsigned b = 0; b < BENCH_HIST_BUCKETS; b++) {
		if (h->buckets[b] == 0)
			continue;
		double next = seen + (double)h->buckets[b];
		if (next >= rank) {
			/* Interpolate within the bucket, clamped to what was seen. */
			double low, width;
			bucket_range(b, &low, &width);
			double v = low + width * ((rank - seen) / (double)h->buckets[b]);
			if (v < (double)h->min_ns)
				v = (double)h->min_ns;
			if (v > (double)h->max_ns)
				v = (double)h->max_ns;
			return v;
		}
		seen = next;
	}
	return (double)h->max_ns;
}
