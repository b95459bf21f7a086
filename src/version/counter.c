/*
 * counter.c - the node-wide dot counter with leased blocks (see counter.h).
 *
 * Invariants: every counter handed out is <= durable, durable only grows, and
 * next <= durable + 1. After a crash the disk holds the last confirmed lease
 * or the one in flight (larger, since only one is ever outstanding), so a
 * counter restarted from it never hands out a used value again.
 */
#include "version/counter.h"

#include <errno.h>

void kv_counter_init(struct kv_counter *c, uint64_t persisted_lease, uint64_t block)
{
	if (block == 0)
		block = KV_COUNTER_BLOCK_DEFAULT;
	if (persisted_lease > KV_COUNTER_MAX)
		persisted_lease = KV_COUNTER_MAX;
	c->next = persisted_lease + 1;
	c->durable = persisted_lease;
	c->pending = 0;
	c->block = block;
	c->low_water = block / 2 ? block / 2 : 1;
}

uint64_t kv_counter_available(const struct kv_counter *c)
{
	return c->next > c->durable ? 0 : c->durable - c->next + 1;
}

int kv_counter_lease_request(struct kv_counter *c, uint64_t *lease)
{
	if (c->pending)
		return 0;
	if (kv_counter_available(c) >= c->low_water)
		return 0;
	if (c->durable >= KV_COUNTER_MAX)
		return kv_counter_available(c) ? 0 : -EOVERFLOW;
	uint64_t want = c->durable + (c->block < KV_COUNTER_MAX - c->durable
					   ? c->block : KV_COUNTER_MAX - c->durable);
	c->pending = want;
	*lease = want;
	return 1;
}

void kv_counter_lease_durable(struct kv_counter *c, uint64_t lease)
{
	if (lease > KV_COUNTER_MAX)
		lease = KV_COUNTER_MAX;
	if (lease > c->durable)
		c->durable = lease;
	if (c->pending && c->pending <= c->durable)
		c->pending = 0;
}

void kv_counter_lease_failed(struct kv_counter *c, uint64_t lease)
{
	if (c->pending == lease)
		c->pending = 0;
}

int kv_counter_peek(const struct kv_counter *c, uint64_t *out)
{
	if (c->next > c->durable)
		return -EAGAIN;
	*out = c->next;
	return 0;
}

int kv_counter_next(struct kv_counter *c, uint64_t *out)
{
	int err = kv_counter_peek(c, out);
	if (err)
		return err;
	c->next++;
	return 0;
}
