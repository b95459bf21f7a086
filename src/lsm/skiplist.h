/*
 * skiplist.h - an ordered set of keys in an arena, read without locks while
 * one writer inserts (DESIGN §6; LevelDB's db/skiplist.h in spirit).
 *
 * Each node is one arena allocation holding its tower of next pointers and,
 * after it, a caller-defined payload; the node's key is a slice the caller
 * points anywhere that lives as long as the arena (usually into the
 * payload). Keys are ordered by the kv_cmp_fn given at init. Nodes are never
 * removed; the arena frees them all at once.
 *
 * Threads: inserts (kv_skiplist_alloc_node + kv_skiplist_insert) must be
 * serialized by the caller, one writer at a time. Any number of threads may
 * search and iterate concurrently with that writer and with each other,
 * without locks: a node is linked at each level with a release store after
 * it is fully written, and readers follow next pointers with acquire loads,
 * so a reader that reaches a node sees its key and payload complete. A reader
 * sees every insert that returned before it started, and maybe some of
 * those made while it runs.
 */
#ifndef KV_LSM_SKIPLIST_H
#define KV_LSM_SKIPLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/arena.h"
#include "lsm/iter.h"
#include "util/rng.h"
#include "util/slice.h"

#define KV_SKIPLIST_MAX_HEIGHT 12
#define KV_SKIPLIST_BRANCHING 4 /* a node reaches level k+1 with chance 1/4 */
#define KV_SKIPLIST_MAX_KEY UINT32_MAX

struct kv_skiplist_node; /* private to skiplist.c */

/* Caller-allocated; set up with kv_skiplist_init(). */
struct kv_skiplist {
	kv_cmp_fn cmp;                 /* immutable after init */
	struct kv_arena *arena;        /* borrowed; used by the writer only */
	struct kv_skiplist_node *head; /* sentinel of full height; immutable */
	atomic_int max_height;         /* levels in use; written by the writer,
					* read by anyone (relaxed) */
	struct kv_rng rng;             /* node heights; writer only */
	/* The last node at each level (head when none): writer only. */
	struct kv_skiplist_node *tail[KV_SKIPLIST_MAX_HEIGHT];
};

/*
 * Makes @sl an empty list ordered by @cmp, allocating its nodes (the head
 * now) from @arena, which it borrows: the arena must outlive the list and
 * frees all of it on kv_arena_release(); there is no skiplist release.
 * Node heights are drawn from an rng seeded with @seed, so the same inserts
 * with the same seed build the same structure. Returns 0 or -ENOMEM.
 */
int kv_skiplist_init(struct kv_skiplist *sl, struct kv_arena *arena, kv_cmp_fn cmp,
		     uint64_t seed);

/*
 * First half of an insert (writer only): allocates from the arena a node of
 * random height with @payload bytes of caller space after it, stores the
 * node in *node and returns the payload (pointer-aligned), or returns NULL
 * (with *node untouched) when out of memory. The node is not in the list
 * yet; fill the payload, then pass it to kv_skiplist_insert(). A node that
 * is never inserted stays allocated until the arena is released.
 */
void *kv_skiplist_alloc_node(struct kv_skiplist *sl, size_t payload,
			     struct kv_skiplist_node **node);

/*
 * Second half of an insert (writer only): gives @node (from
 * kv_skiplist_alloc_node() on this list) the key @key and links it in.
 * @key's bytes must stay unchanged for the arena's lifetime, as must the
 * payload once linked. Returns 1 when inserted, or 0 when an equal key is
 * already present: the list is then unchanged and @node is wasted. @key.n is
 * at most KV_SKIPLIST_MAX_KEY.
 */
int kv_skiplist_insert(struct kv_skiplist *sl, struct kv_skiplist_node *node,
		       struct kv_slice key);

/* Whether a key equal to @key is in @sl. Any thread. */
bool kv_skiplist_contains(const struct kv_skiplist *sl, struct kv_slice key);

/*
 * A position in a list, caller-allocated and borrowing the list (which must
 * outlive it). Positions never become invalid: inserts do not move nodes.
 * Use from one thread at a time; any number may exist.
 */
struct kv_skiplist_iter {
	const struct kv_skiplist *list;
	const struct kv_skiplist_node *node; /* NULL: not positioned / at the end */
};

/* Sets @it on @sl, unpositioned (not valid). */
void kv_skiplist_iter_init(struct kv_skiplist_iter *it, const struct kv_skiplist *sl);

static inline bool kv_skiplist_iter_valid(const struct kv_skiplist_iter *it)
{
	return it->node != NULL;
}

/* The key at @it, borrowed from the arena. Requires valid(). */
struct kv_slice kv_skiplist_iter_key(const struct kv_skiplist_iter *it);

/* Moves to the next key; past the last one @it becomes invalid. Requires valid(). */
void kv_skiplist_iter_next(struct kv_skiplist_iter *it);

/* Positions @it at the smallest key (invalid when the list is empty). */
void kv_skiplist_iter_seek_first(struct kv_skiplist_iter *it);

/* Positions @it at the first key >= @target (invalid when there is none). */
void kv_skiplist_iter_seek(struct kv_skiplist_iter *it, struct kv_slice target);

/*
 * Compares a key of the list against a probe that is not itself a key (say,
 * a user key and a sequence number that would make an internal key): <0
 * when @key sorts before the probe, 0 when equal, >0 after. It must agree
 * with the list's order.
 */
typedef int (*kv_skiplist_probe_fn)(struct kv_slice key, const void *probe);

/*
 * Positions @it at the first key for which @fn(key, @probe) >= 0, without
 * building the probe as a key.
 */
void kv_skiplist_iter_seek_probe(struct kv_skiplist_iter *it, kv_skiplist_probe_fn fn,
				 const void *probe);

#endif
