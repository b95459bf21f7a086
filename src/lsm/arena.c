/*
 * arena.c - bump allocation in blocks, freed all at once (see arena.h).
 *
 * A block is one malloc: a header that links it into the arena's list, then
 * its data, aligned for any type. Small requests are cut from the current
 * block; when it cannot hold one, its tail is abandoned and a fresh block
 * starts. Requests above a quarter block get a dedicated block and leave the
 * current one in place, so at most a quarter block is ever wasted per block.
 */
#include "lsm/arena.h"

#include <assert.h>
#include <stdalign.h>
#include <stdlib.h>

struct kv_arena_block {
	struct kv_arena_block *next;
	alignas(max_align_t) uint8_t data[];
};

#define BLOCK_HEADER offsetof(struct kv_arena_block, data)
/* Requests at least this large (size plus worst-case padding) get their own block. */
#define DEDICATED_MIN (KV_ARENA_BLOCK / 4)

void kv_arena_init(struct kv_arena *a)
{
	a->ptr = NULL;
	a->remaining = 0;
	a->blocks = NULL;
	atomic_init(&a->usage, 0);
}

void kv_arena_release(struct kv_arena *a)
{
	struct kv_arena_block *b = a->blocks;
	while (b) {
		struct kv_arena_block *next = b->next;
		free(b);
		b = next;
	}
	kv_arena_init(a);
}

/* Allocates a block with @size data bytes and links it in. NULL on ENOMEM. */
static struct kv_arena_block *new_block(struct kv_arena *a, size_t size)
{
	struct kv_arena_block *b = malloc(BLOCK_HEADER + size);
	if (!b)
		return NULL;
	b->next = a->blocks;
	a->blocks = b;
	/* Only this thread writes usage: a plain load and store suffice. */
	size_t usage = atomic_load_explicit(&a->usage, memory_order_relaxed);
	atomic_store_explicit(&a->usage, usage + BLOCK_HEADER + size, memory_order_relaxed);
	return b;
}

static inline uint8_t *align_up(uint8_t *p, size_t align)
{
	return p + ((size_t)(-(uintptr_t)p) & (align - 1));
}

/* The slow path: the current block cannot hold @n bytes at @align. */
static void *alloc_fallback(struct kv_arena *a, size_t n, size_t align)
{
	/* Worst-case padding inside a block whose data is max_align_t aligned. */
	size_t pad = align > alignof(max_align_t) ? align - alignof(max_align_t) : 0;

	if (pad >= DEDICATED_MIN || n >= DEDICATED_MIN - pad) {
		if (n > SIZE_MAX - BLOCK_HEADER - pad)
			return NULL;
		struct kv_arena_block *b = new_block(a, n + pad);
		return b ? align_up(b->data, align) : NULL;
	}

	struct kv_arena_block *b = new_block(a, KV_ARENA_BLOCK);
	if (!b)
		return NULL;
	uint8_t *p = align_up(b->data, align);
	a->ptr = p + n;
	a->remaining = KV_ARENA_BLOCK - (size_t)(a->ptr - b->data);
	return p;
}

void *kv_arena_alloc_aligned(struct kv_arena *a, size_t n, size_t align)
{
	assert(align && (align & (align - 1)) == 0 && align <= KV_ARENA_BLOCK);
	if (n == 0)
		n = 1; /* keep pointers unique and inside a block */
	size_t pad = (size_t)(-(uintptr_t)a->ptr) & (align - 1);
	if (n <= a->remaining && pad <= a->remaining - n) {
		uint8_t *p = a->ptr + pad;
		a->ptr = p + n;
		a->remaining -= pad + n;
		return p;
	}
	return alloc_fallback(a, n, align);
}
