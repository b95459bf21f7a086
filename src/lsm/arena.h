/*
 * arena.h - a bump allocator for the memtable (DESIGN §6).
 *
 * Memory is carved out of KV_ARENA_BLOCK-byte blocks; an allocation larger
 * than a quarter block gets a block of its own, so little is wasted at the
 * end of a block. Nothing is freed one by one: kv_arena_release() frees
 * every block at once. LevelDB's util/arena.cc in spirit.
 *
 * Threads: one thread allocates at a time (the memtable's single writer);
 * kv_arena_memory_usage() may be called from any thread at any time.
 */
#ifndef KV_LSM_ARENA_H
#define KV_LSM_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Size of a regular block (its data part; each block also has a header). */
#define KV_ARENA_BLOCK 4096u

struct kv_arena_block;

/* Caller-allocated; initialize with kv_arena_init(). */
struct kv_arena {
	uint8_t *ptr;                  /* next free byte of the current block; writer only */
	size_t remaining;              /* bytes left after ptr; writer only */
	struct kv_arena_block *blocks; /* every block, newest first; writer only */
	atomic_size_t usage;           /* bytes malloc'd for blocks; written by
					* the writer, read by anyone (relaxed) */
};

/* Makes @a an empty arena. Allocates nothing; cannot fail. */
void kv_arena_init(struct kv_arena *a);

/*
 * Frees every block of @a; every pointer it handed out becomes invalid. @a is
 * left empty and may be used again.
 */
void kv_arena_release(struct kv_arena *a);

/*
 * Returns @n bytes aligned to @align (a power of two, at most KV_ARENA_BLOCK),
 * or NULL when out of memory (or when @n is absurdly large). The memory is
 * uninitialized and belongs to the arena: it lives until kv_arena_release().
 * @n may be 0 (a valid, unique pointer is still returned).
 */
void *kv_arena_alloc_aligned(struct kv_arena *a, size_t n, size_t align);

/* kv_arena_alloc_aligned() with no alignment requirement (byte strings). */
static inline void *kv_arena_alloc(struct kv_arena *a, size_t n)
{
	return kv_arena_alloc_aligned(a, n, 1);
}

/*
 * Bytes @a has obtained from malloc, block headers included: every regular
 * and dedicated block counts in full, even its unused tail. Safe to call
 * from any thread while another allocates (the figure may then lag by the
 * block being added).
 */
static inline size_t kv_arena_memory_usage(const struct kv_arena *a)
{
	return atomic_load_explicit(&a->usage, memory_order_relaxed);
}

#endif
