/*
 * counter.h - the node-wide dot counter, persisted in leased blocks.
 *
 * DESIGN §4 "Actors": counters come from one counter per node and epoch, so
 * a counter never repeats within an epoch — not after a key is purged and
 * written again, not after a crash. The counter hands out values only below
 * a lease high-water mark that the caller has made durable; on restart it
 * resumes above the persisted lease, skipping what the old process may have
 * used. Sans I/O: it never writes anything itself. It tells the caller which
 * lease to persist, and the caller reports back when the write is durable:
 *
 *     uint64_t lease;
 *     if (kv_counter_lease_request(&c, &lease) == 1)
 *         emit a storage effect that writes (epoch, lease) and syncs it;
 *     ...
 *     on its completion: kv_counter_lease_durable(&c, lease);
 *     on its failure:    kv_counter_lease_failed(&c, lease);
 *
 * A put that finds no durable counter (-EAGAIN) waits for the completion. At
 * most one lease write is outstanding, so a late write can never leave an
 * older lease on disk after a newer one. Details: doc/versions.md §4.
 */
#ifndef KV_VERSION_COUNTER_H
#define KV_VERSION_COUNTER_H

#include <stdint.h>

#define KV_COUNTER_BLOCK_DEFAULT 10000
/* The largest counter ever handed out; the one above stays unused. */
#define KV_COUNTER_MAX (UINT64_MAX - 1)

/*
 * Caller-owned, plain data (no _release needed). Guarded by whoever owns the
 * node state (the single-threaded core).
 */
struct kv_counter {
	uint64_t next;      /* the next counter to hand out (>= 1) */
	uint64_t durable;   /* counters <= durable may be used: the durable lease */
	uint64_t pending;   /* the lease being persisted, 0 when none */
	uint64_t block;     /* how far each lease reaches beyond the last */
	uint64_t low_water; /* ask for a lease when fewer than this remain */
};

/*
 * Starts a counter from @persisted_lease, the lease last made durable for
 * this actor (0 for a new epoch). Counters up to it may have been used by an
 * earlier process, so the first counter handed out is persisted_lease + 1,
 * and only once a new lease is durable. @block is the lease size (0 for
 * KV_COUNTER_BLOCK_DEFAULT); a new lease is requested when fewer than half a
 * block remain, so a busy node rarely waits.
 */
void kv_counter_init(struct kv_counter *c, uint64_t persisted_lease, uint64_t block);

/*
 * Returns 1 and sets *lease when the caller must now persist *lease (and
 * call kv_counter_lease_durable() or kv_counter_lease_failed() with it
 * later); 0 when nothing is needed (enough counters remain, or a lease write
 * is already outstanding); -EOVERFLOW when the counter space of this epoch is
 * used up (the node must take a new epoch). *lease is set only on 1.
 */
int kv_counter_lease_request(struct kv_counter *c, uint64_t *lease);

/*
 * Reports that @lease, from kv_counter_lease_request(), is durable: counters
 * up to it may now be handed out. Reporting an older lease changes nothing.
 */
void kv_counter_lease_durable(struct kv_counter *c, uint64_t lease);

/* Reports that persisting @lease failed; a later request asks again. */
void kv_counter_lease_failed(struct kv_counter *c, uint64_t lease);

/*
 * Sets *out to the counter kv_counter_next() would hand out, without taking
 * it. Returns 0, or -EAGAIN when no durable counter is left (then *out is
 * unset): persist a lease first.
 */
int kv_counter_peek(const struct kv_counter *c, uint64_t *out);

/* As kv_counter_peek(), but takes the counter: it is never handed out again. */
int kv_counter_next(struct kv_counter *c, uint64_t *out);

/* How many counters can be handed out before the next lease is durable. */
uint64_t kv_counter_available(const struct kv_counter *c);

#endif
